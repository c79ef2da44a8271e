/* The consumer's decisions (client/consumer_policy.c): back-off, batch readiness, scaling and
 * credit, as pure functions of what the consumer saw. */
#include "consumer_policy.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

static void test_backoff_doubles_with_the_receive_count(void **state)
{
    (void)state;
    /* rand 1: the whole delay, base * 2^(count-1) */
    assert_int_equal(kyu_backoff_seconds(1, 1000, 300000, 1.0), 1);
    assert_int_equal(kyu_backoff_seconds(2, 1000, 300000, 1.0), 2);
    assert_int_equal(kyu_backoff_seconds(3, 1000, 300000, 1.0), 4);
    assert_int_equal(kyu_backoff_seconds(6, 1000, 300000, 1.0), 32);
}

static void test_backoff_is_capped_at_its_maximum(void **state)
{
    (void)state;
    assert_int_equal(kyu_backoff_seconds(30, 1000, 300000, 1.0), 300);
    assert_int_equal(kyu_backoff_seconds(UINT32_MAX, 1000, 300000, 1.0), 300);
    assert_int_equal(kyu_backoff_seconds(1000, 43200000, 43200000, 1.0), 43200);
}

static void test_backoff_jitter_keeps_half_of_the_delay(void **state)
{
    (void)state;
    /* rand 0: half the delay; anything between for rand in (0, 1) */
    assert_int_equal(kyu_backoff_seconds(4, 1000, 300000, 0.0), 4);
    for (int i = 0; i <= 100; i++) {
        int s = kyu_backoff_seconds(4, 1000, 300000, i / 100.0);
        assert_true(s >= 4 && s <= 8);
    }
}

static void test_backoff_zero_base_retries_at_once(void **state)
{
    (void)state;
    assert_int_equal(kyu_backoff_seconds(5, 0, 0, 0.5), 0);
    assert_int_equal(kyu_backoff_seconds(5, 0, 1000, 0.5), 0);
}

static void test_backoff_never_rounds_to_zero(void **state)
{
    (void)state;
    assert_int_equal(kyu_backoff_seconds(1, 100, 300000, 0.0), 1);
}

static void test_batch_waits_for_its_window_unless_full(void **state)
{
    (void)state;
    /* nothing buffered: never ready */
    assert_false(kyu_batch_ready(0, 0, 10, 1000, 0, 0, 100));
    /* window 0: whatever is there goes at once */
    assert_true(kyu_batch_ready(1, 5, 10, 1000, 100, 0, 100));
    /* window 2 s: not before it has passed since the oldest arrived */
    assert_false(kyu_batch_ready(3, 5, 10, 1000, 1000, 2000, 2999));
    assert_true(kyu_batch_ready(3, 5, 10, 1000, 1000, 2000, 3000));
    /* full by count or by bytes: at once */
    assert_true(kyu_batch_ready(10, 5, 10, 1000, 1000, 2000, 1001));
    assert_true(kyu_batch_ready(2, 1000, 10, 1000, 1000, 2000, 1001));
}

static kyu_scale_input_t load(size_t buffered, size_t running, size_t failures)
{
    kyu_scale_input_t in = {
        .buffered = buffered, .running = running, .batch_size = 10, .failures = failures};
    return in;
}

static void test_scaler_grows_while_a_backlog_remains(void **state)
{
    (void)state;
    kyu_scaler_t s;
    char why[128];
    kyu_scaler_init(&s, 5, 20, 0);
    kyu_scale_input_t in = load(50, 5, 0);
    /* at most one decision a second */
    assert_int_equal(kyu_scaler_step(&s, &in, 500, why, sizeof why), 5);
    assert_string_equal(why, "");
    assert_int_equal(kyu_scaler_step(&s, &in, 1000, why, sizeof why), 7);
    assert_non_null(strstr(why, "backlog"));
    int64_t t = 1000;
    for (int i = 0; i < 20; i++) {
        t += 1000;
        in.running = (size_t)s.current;
        kyu_scaler_step(&s, &in, t, why, sizeof why);
    }
    assert_int_equal(s.current, 20); /* never above the maximum */
}

static void test_scaler_does_not_grow_without_a_backlog(void **state)
{
    (void)state;
    kyu_scaler_t s;
    char why[128];
    kyu_scaler_init(&s, 5, 20, 0);
    /* every slot busy but nothing waiting: no growth */
    kyu_scale_input_t in = load(0, 5, 0);
    assert_int_equal(kyu_scaler_step(&s, &in, 1000, why, sizeof why), 5);
    /* a waiting batch while a slot is free: no growth either */
    in = load(20, 3, 0);
    assert_int_equal(kyu_scaler_step(&s, &in, 2000, why, sizeof why), 5);
}

static void test_scaler_shrinks_when_idle(void **state)
{
    (void)state;
    kyu_scaler_t s;
    char why[128];
    kyu_scaler_init(&s, 8, 8, 0);
    kyu_scale_input_t in = load(0, 0, 0);
    int64_t t = 0;
    /* idle for less than KYU_SCALE_IDLE_MS: unchanged */
    for (t = 1000; t < KYU_SCALE_IDLE_MS; t += 1000)
        assert_int_equal(kyu_scaler_step(&s, &in, t, why, sizeof why), 8);
    int before = s.current;
    for (int i = 0; i < 40; i++, t += 1000)
        kyu_scaler_step(&s, &in, t, why, sizeof why);
    assert_true(s.current < before);
    assert_int_equal(s.current, 1); /* down to one, never zero */
}

static void test_scaler_halves_on_failures_and_calms_down(void **state)
{
    (void)state;
    kyu_scaler_t s;
    char why[128];
    kyu_scaler_init(&s, 8, 16, 0);
    kyu_scale_input_t in = load(100, 8, 2);
    assert_int_equal(kyu_scaler_step(&s, &in, 1000, why, sizeof why), 4);
    assert_non_null(strstr(why, "failed"));
    /* a backlog right after: no growth during the calm period */
    in = load(100, 4, 0);
    assert_int_equal(kyu_scaler_step(&s, &in, 2000, why, sizeof why), 4);
    assert_int_equal(kyu_scaler_step(&s, &in, 1000 + KYU_SCALE_CALM_MS, why, sizeof why), 6);
}

static void test_credit_target_is_one_batch_more_than_running(void **state)
{
    (void)state;
    assert_int_equal(kyu_credit_target(5, 10), 60);
    assert_int_equal(kyu_credit_target(1, 1), 2);
    assert_int_equal(kyu_credit_target(1000, 10000), 10000);
}

static void test_credit_total_follows_the_concurrency(void **state)
{
    (void)state;
    /* (concurrency + 1) batches: scaling up and down moves the total */
    assert_int_equal(kyu_credit_total(1, 10, 0), 20);
    assert_int_equal(kyu_credit_total(5, 10, 0), 60);
    assert_int_equal(kyu_credit_total(2, 10, 0), 30);
    /* messages held from an earlier session count against it, down to 1 */
    assert_int_equal(kyu_credit_total(5, 10, 15), 45);
    assert_int_equal(kyu_credit_total(1, 10, 500), 1);
    /* never more than the broker takes */
    assert_int_equal(kyu_credit_total(1000, 10000, 0), 10000);
}

static void test_every_finished_message_goes_back_as_credit(void **state)
{
    (void)state;
    assert_int_equal(kyu_credit_to_give(0, 0), 0);
    assert_int_equal(kyu_credit_to_give(30, 10), 20);
    assert_int_equal(kyu_credit_to_give(10, 10), 0);
    /* a failed heartbeat lowered returned below finished: given again */
    assert_int_equal(kyu_credit_to_give(25, 5), 20);
    /* never more than a heartbeat may carry */
    assert_int_equal(kyu_credit_to_give(20000, 0), 10000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff_doubles_with_the_receive_count),
        cmocka_unit_test(test_backoff_is_capped_at_its_maximum),
        cmocka_unit_test(test_backoff_jitter_keeps_half_of_the_delay),
        cmocka_unit_test(test_backoff_zero_base_retries_at_once),
        cmocka_unit_test(test_backoff_never_rounds_to_zero),
        cmocka_unit_test(test_batch_waits_for_its_window_unless_full),
        cmocka_unit_test(test_scaler_grows_while_a_backlog_remains),
        cmocka_unit_test(test_scaler_does_not_grow_without_a_backlog),
        cmocka_unit_test(test_scaler_shrinks_when_idle),
        cmocka_unit_test(test_scaler_halves_on_failures_and_calms_down),
        cmocka_unit_test(test_credit_target_is_one_batch_more_than_running),
        cmocka_unit_test(test_credit_total_follows_the_concurrency),
        cmocka_unit_test(test_every_finished_message_goes_back_as_credit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
