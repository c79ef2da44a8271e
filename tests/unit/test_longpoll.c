/* The parked receives of long polling (broker/longpoll.c): per queue in order of arrival, a
 * waiter woken and parked again keeps its place, deadlines come out earliest first, the
 * bound is kept, pending receives and marks per queue. */
#include "longpoll.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <string.h>

static kyu_longpoll_waiter_t *waiter(const char *queue, uint64_t arrival, uint64_t deadline)
{
    kyu_longpoll_waiter_t *w = kyu_longpoll_waiter_new();
    assert_non_null(w);
    snprintf(w->queue, sizeof w->queue, "%s", queue);
    w->id = arrival;
    w->arrival = arrival;
    w->deadline_ms = deadline;
    w->identity = zframe_new("client", 6);
    return w;
}

static void park(kyu_longpoll_t *lp, kyu_longpoll_waiter_t *w)
{
    kyu_err_t err;
    if (kyu_longpoll_park(lp, w, &err) != KYU_OK)
        fail_msg("park refused: %s", err.msg);
}

/* Takes the first waiter of queue and checks it is the one that arrived `arrival`-th. */
static void expect_first(kyu_longpoll_t *lp, const char *queue, uint64_t arrival)
{
    kyu_longpoll_waiter_t *w = kyu_longpoll_take_first(lp, queue);
    if (!w)
        fail_msg("expected waiter %llu on %s, got none", (unsigned long long)arrival, queue);
    if (w->arrival != arrival)
        fail_msg("expected waiter %llu on %s first, got %llu", (unsigned long long)arrival, queue,
                 (unsigned long long)w->arrival);
    kyu_longpoll_waiter_destroy(&w);
}

static void test_waiters_of_a_queue_come_out_in_order_of_arrival(void **state)
{
    (void)state;
    kyu_longpoll_t *lp = kyu_longpoll_new(0, 0);
    for (uint64_t i = 1; i <= 5; i++)
        park(lp, waiter(i % 2 ? "a" : "b", i, 1000 - i)); /* later deadlines first: irrelevant */
    assert_int_equal(kyu_longpoll_count(lp), 5);
    assert_int_equal(kyu_longpoll_waiting(lp, "a"), 3);
    assert_int_equal(kyu_longpoll_waiting(lp, "b"), 2);
    expect_first(lp, "a", 1);
    expect_first(lp, "b", 2);
    expect_first(lp, "a", 3);
    expect_first(lp, "a", 5);
    expect_first(lp, "b", 4);
    assert_null(kyu_longpoll_take_first(lp, "a"));
    assert_int_equal(kyu_longpoll_count(lp), 0);
    kyu_longpoll_destroy(&lp);
    assert_null(lp);
}

/* A waiter woken that found nothing goes back before those that came after it: no waiter
 * starves behind later ones. */
static void test_a_waiter_parked_again_keeps_its_place(void **state)
{
    (void)state;
    kyu_longpoll_t *lp = kyu_longpoll_new(0, 0);
    for (uint64_t i = 1; i <= 4; i++)
        park(lp, waiter("q", i, 5000));
    kyu_longpoll_waiter_t *first = kyu_longpoll_take_first(lp, "q");
    kyu_longpoll_waiter_t *second = kyu_longpoll_take_first(lp, "q");
    park(lp, waiter("q", 5, 5000)); /* a new one meanwhile */
    park(lp, second);               /* both woken found nothing: back in their places */
    park(lp, first);
    for (uint64_t i = 1; i <= 5; i++)
        expect_first(lp, "q", i);
    kyu_longpoll_destroy(&lp);
}

static void test_expired_waiters_come_out_earliest_deadline_first(void **state)
{
    (void)state;
    kyu_longpoll_t *lp = kyu_longpoll_new(0, 0);
    uint64_t deadlines[] = {500, 100, 900, 300, 700, 200};
    for (uint64_t i = 0; i < 6; i++)
        park(lp, waiter(i % 3 ? "x" : "y", i + 1, deadlines[i]));
    assert_int_equal(kyu_longpoll_next_deadline(lp), 100);
    /* One taken from the middle by its queue keeps the heap right. */
    expect_first(lp, "y", 1); /* deadline 500 */
    assert_null(kyu_longpoll_take_expired(lp, 99));
    uint64_t want[] = {100, 200, 300};
    for (size_t i = 0; i < 3; i++) {
        kyu_longpoll_waiter_t *w = kyu_longpoll_take_expired(lp, 350);
        assert_non_null(w);
        if (w->deadline_ms != want[i])
            fail_msg("expected deadline %llu, got %llu", (unsigned long long)want[i],
                     (unsigned long long)w->deadline_ms);
        kyu_longpoll_waiter_destroy(&w);
    }
    assert_null(kyu_longpoll_take_expired(lp, 350));
    assert_int_equal(kyu_longpoll_next_deadline(lp), 700);
    assert_int_equal(kyu_longpoll_count(lp), 2);
    kyu_longpoll_destroy(&lp); /* frees the two left */
}

static void test_parking_past_the_bound_is_refused_with_busy(void **state)
{
    (void)state;
    kyu_longpoll_t *lp = kyu_longpoll_new(3, 0);
    for (uint64_t i = 1; i <= 3; i++)
        park(lp, waiter("q", i, 100));
    kyu_longpoll_waiter_t *w = waiter("q", 4, 100);
    kyu_err_t err;
    assert_int_equal(kyu_longpoll_park(lp, w, &err), KYU_ERR_BUSY);
    assert_non_null(strstr(err.msg, "3 receives are already waiting"));
    assert_int_equal(kyu_longpoll_count(lp), 3);
    expect_first(lp, "q", 1); /* room again */
    park(lp, w);
    assert_int_equal(kyu_longpoll_count(lp), 3);
    kyu_longpoll_destroy(&lp);
}

/* One connection cannot take every place: past per_client its long polls get BUSY, while
 * another connection's are still parked; a place taken out is free again. */
static void test_one_connection_is_bounded_apart(void **state)
{
    (void)state;
    kyu_longpoll_t *lp = kyu_longpoll_new(10, 2);
    park(lp, waiter("q", 1, 100));
    park(lp, waiter("r", 2, 100));
    kyu_longpoll_waiter_t *w = waiter("q", 3, 100);
    kyu_err_t err;
    assert_int_equal(kyu_longpoll_park(lp, w, &err), KYU_ERR_BUSY);
    assert_non_null(strstr(err.msg, "this connection already has 2 receives waiting"));
    kyu_longpoll_waiter_t *other = waiter("q", 4, 100);
    zframe_reset(other->identity, "other\0", 6); /* binary routing frames too */
    park(lp, other);
    assert_int_equal(kyu_longpoll_count(lp), 3);
    expect_first(lp, "r", 2);
    park(lp, w);
    assert_int_equal(kyu_longpoll_count(lp), 3);
    kyu_longpoll_destroy(&lp);
}

static void test_take_any_empties_every_queue(void **state)
{
    (void)state;
    kyu_longpoll_t *lp = kyu_longpoll_new(0, 0);
    for (uint64_t i = 1; i <= 50; i++)
        park(lp, waiter(i % 7 ? "a" : "b", i, i * 13 % 17));
    size_t n = 0;
    for (kyu_longpoll_waiter_t *w; (w = kyu_longpoll_take_any(lp)) != NULL; n++)
        kyu_longpoll_waiter_destroy(&w);
    assert_int_equal(n, 50);
    assert_int_equal(kyu_longpoll_waiting(lp, "a") + kyu_longpoll_waiting(lp, "b"), 0);
    assert_int_equal(kyu_longpoll_next_deadline(lp), UINT64_MAX);
    kyu_longpoll_destroy(&lp);
}

/* Marks: only queues with waiters, each once, in the order marked. */
static void test_marks_name_each_queue_with_waiters_once(void **state)
{
    (void)state;
    kyu_longpoll_t *lp = kyu_longpoll_new(0, 0);
    park(lp, waiter("a", 1, 100));
    park(lp, waiter("b", 2, 100));
    assert_false(kyu_longpoll_mark(lp, "nobody-waits"));
    assert_true(kyu_longpoll_mark(lp, "b"));
    assert_true(kyu_longpoll_mark(lp, "a"));
    assert_true(kyu_longpoll_mark(lp, "b"));
    char q[KYU_NAME_MAX + 1];
    assert_true(kyu_longpoll_take_marked(lp, q));
    assert_string_equal(q, "b");
    assert_true(kyu_longpoll_take_marked(lp, q));
    assert_string_equal(q, "a");
    assert_false(kyu_longpoll_take_marked(lp, q));
    expect_first(lp, "a", 1);
    assert_false(kyu_longpoll_mark(lp, "a")); /* its last waiter is gone */
    kyu_longpoll_destroy(&lp);
}

/* Pending receives: counted per queue; a queue whose waiters all have one pending is not
 * idle (the timer leaves it to their results). */
static void test_queues_with_a_pending_receive_are_not_idle(void **state)
{
    (void)state;
    kyu_longpoll_t *lp = kyu_longpoll_new(0, 0);
    park(lp, waiter("a", 1, 100));
    park(lp, waiter("b", 2, 100));
    kyu_longpoll_add_pending(lp, "a", 1);
    kyu_longpoll_add_pending(lp, "c", 2); /* no waiter parked there (all proposed) */
    assert_int_equal(kyu_longpoll_pending(lp, "a"), 1);
    assert_int_equal(kyu_longpoll_pending(lp, "c"), 2);
    const char *idle = kyu_longpoll_first_idle(lp);
    assert_non_null(idle);
    assert_string_equal(idle, "b");
    assert_null(kyu_longpoll_next_idle(lp));
    kyu_longpoll_add_pending(lp, "a", -1);
    kyu_longpoll_add_pending(lp, "c", -2);
    assert_int_equal(kyu_longpoll_pending(lp, "c"), 0);
    size_t n = 0;
    for (const char *q = kyu_longpoll_first_idle(lp); q; q = kyu_longpoll_next_idle(lp))
        n++;
    assert_int_equal(n, 2);
    kyu_longpoll_destroy(&lp);
}

static bool due_b(void *arg, const char *queue)
{
    (*(int *)arg)++;
    return strcmp(queue, "b") == 0;
}

/* The timer's marks: only idle queues (waiters, nothing pending) that are due. */
static void test_mark_idle_if_marks_the_due_idle_queues(void **state)
{
    (void)state;
    kyu_longpoll_t *lp = kyu_longpoll_new(0, 0);
    park(lp, waiter("a", 1, 100));
    park(lp, waiter("b", 2, 100));
    park(lp, waiter("c", 3, 100));
    kyu_longpoll_add_pending(lp, "c", 1);
    int asked = 0;
    kyu_longpoll_mark_idle_if(lp, due_b, &asked);
    assert_int_equal(asked, 2); /* a and b; c has a receive pending */
    char q[KYU_NAME_MAX + 1];
    assert_true(kyu_longpoll_take_marked(lp, q));
    assert_string_equal(q, "b");
    assert_false(kyu_longpoll_take_marked(lp, q));
    kyu_longpoll_destroy(&lp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_waiters_of_a_queue_come_out_in_order_of_arrival),
        cmocka_unit_test(test_a_waiter_parked_again_keeps_its_place),
        cmocka_unit_test(test_expired_waiters_come_out_earliest_deadline_first),
        cmocka_unit_test(test_parking_past_the_bound_is_refused_with_busy),
        cmocka_unit_test(test_one_connection_is_bounded_apart),
        cmocka_unit_test(test_take_any_empties_every_queue),
        cmocka_unit_test(test_marks_name_each_queue_with_waiters_once),
        cmocka_unit_test(test_queues_with_a_pending_receive_are_not_idle),
        cmocka_unit_test(test_mark_idle_if_marks_the_due_idle_queues),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
