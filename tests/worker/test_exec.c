/* kyu-worker's --exec runner (worker/exec.c): input on stdin, output captured, exit status,
 * and a handler past its deadline stopped (its whole process group). */
#include "handler.h"

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* A batch as the consumer gives it, with a deadline ms from now (priv_ points at a cancel
 * flag laid out as the consumer's: kyu_batch_cancelled reads it). */
#include "consumer_internal.h"

static kyu_cbatch_t cb;

static kyu_batch_t *batch_due_in(int ms)
{
    memset(&cb, 0, sizeof cb);
    atomic_store(&cb.cancel, 0);
    cb.pub.priv_ = &cb;
    cb.pub.deadline_ms = kyu_consumer_now_ms() + ms;
    return &cb.pub;
}

static void test_exec_feeds_stdin_and_captures_stdout(void **state)
{
    (void)state;
    kyu_run_result_t r;
    kyu_exec_run("tr a-z A-Z", "hello", 5, true, batch_due_in(10000), &r);
    assert_true(r.ran);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.out_len, 5);
    assert_string_equal(r.out, "HELLO");
    free(r.out);
}

static void test_exec_reports_the_exit_status(void **state)
{
    (void)state;
    kyu_run_result_t r;
    kyu_exec_run("cat >/dev/null; exit 3", "x", 1, false, batch_due_in(10000), &r);
    assert_true(r.ran);
    assert_int_equal(r.status, 3);
    free(r.out);
}

static void test_exec_survives_a_handler_that_reads_nothing(void **state)
{
    (void)state;
    /* 1 MiB of input to a handler that exits at once: EPIPE, not a crash or a hang */
    signal(SIGPIPE, SIG_IGN);
    size_t n = 1 << 20;
    char *big = malloc(n);
    memset(big, 'x', n);
    kyu_run_result_t r;
    kyu_exec_run("exit 0", big, n, true, batch_due_in(10000), &r);
    assert_true(r.ran);
    assert_int_equal(r.status, 0);
    free(r.out);
    free(big);
}

static void test_exec_stops_a_handler_past_its_deadline(void **state)
{
    (void)state;
    int64_t start = kyu_consumer_now_ms();
    kyu_run_result_t r;
    /* the shell's child ignores nothing: SIGTERM to the group ends both */
    kyu_exec_run("sleep 30", "", 0, true, batch_due_in(300), &r);
    int64_t took = kyu_consumer_now_ms() - start;
    assert_false(r.ran);
    assert_true(r.timed_out);
    assert_true(took < 10000);
    free(r.out);
}

static void test_exec_kills_a_handler_that_ignores_sigterm(void **state)
{
    (void)state;
    int64_t start = kyu_consumer_now_ms();
    kyu_run_result_t r;
    kyu_exec_run("trap '' TERM; while :; do sleep 0.1; done", "", 0, false, batch_due_in(200), &r);
    int64_t took = kyu_consumer_now_ms() - start;
    assert_true(r.timed_out);
    assert_true(took >= KYU_HANDLER_KILL_GRACE_MS && took < 15000);
    free(r.out);
}

static void test_exec_stops_when_cancelled(void **state)
{
    (void)state;
    kyu_batch_t *b = batch_due_in(60000);
    atomic_store(&cb.cancel, 1);
    kyu_run_result_t r;
    kyu_exec_run("sleep 30", "", 0, false, b, &r);
    assert_true(r.timed_out);
    free(r.out);
}

static void test_exec_sees_a_quick_handler_exit_at_once(void **state)
{
    (void)state;
    /* A handler's exit is seen when it happens, not at the next tick of the poll (50 ms): 60
     * batches of a handler that exits at once took about 2.2 s before (37 ms each), 50 ms
     * after; allow 1.2 s. */
    int64_t start = kyu_consumer_now_ms();
    for (int i = 0; i < 60; i++) {
        kyu_run_result_t r;
        kyu_exec_run("true", "{}", 2, false, batch_due_in(10000), &r);
        assert_true(r.ran);
        assert_int_equal(r.status, 0);
        free(r.out);
    }
    assert_true(kyu_consumer_now_ms() - start < 1200);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exec_feeds_stdin_and_captures_stdout),
        cmocka_unit_test(test_exec_reports_the_exit_status),
        cmocka_unit_test(test_exec_survives_a_handler_that_reads_nothing),
        cmocka_unit_test(test_exec_stops_a_handler_past_its_deadline),
        cmocka_unit_test(test_exec_kills_a_handler_that_ignores_sigterm),
        cmocka_unit_test(test_exec_stops_when_cancelled),
        cmocka_unit_test(test_exec_sees_a_quick_handler_exit_at_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
