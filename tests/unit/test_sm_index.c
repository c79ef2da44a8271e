/* The receive index's counters (broker/sm_index.c, "Counters"): ApproximateNumberOfMessages,
 * ...NotVisible and ...Delayed kept exact by every change (send, delayed send, receive,
 * delete, change-visibility, lease expiry and delays ending as seen at a command's time or
 * at a read's, purge, queue deletion), across restarts, and equal to a scan of the leases
 * under a random workload. */
#include "command.h"
#include "fixture.h"
#include "sm_internal.h"

#include <stdlib.h>
#include <string.h>

#define T0 1000000 /* a command time, ms */

/* Receives one message at now for vt seconds; its handle in h. */
static void receive1(fixture_t *f, uint64_t now, int64_t vt, char h[KYU_HANDLE_MAX + 1])
{
    kyu_result_t r = apply1(f, cmd_receive("q", now, 1, vt));
    assert_int_equal(r.code, KYU_OK);
    assert_int_equal(r.n_msgs, 1);
    snprintf(h, KYU_HANDLE_MAX + 1, "%s", r.msgs[0].handle);
    kyu_result_clear(&r);
}

static void handle_ok(fixture_t *f, kyu_command_t c)
{
    kyu_result_t r = apply1(f, c);
    assert_int_equal(r.code, KYU_OK);
    assert_int_equal(r.results[0], KYU_OK);
    kyu_result_clear(&r);
}

/* Every kind of change, the counts after each, then the same after a restart. */
static void check_every_change(fixture_t *f, bool restart)
{
    char a[KYU_HANDLE_MAX + 1], b[KYU_HANDLE_MAX + 1];
    ok(apply1(f, cmd_create("q", 10)));
    ok(apply1(f, cmd_send("q", T0, "a")));
    ok(apply1(f, cmd_send("q", T0, "b")));
    expect_counts(f, T0, 2, 0, 0);
    ok(apply1(f, cmd_send_delayed("q", T0, "late", 5000)));
    expect_counts(f, T0, 2, 0, 1);
    receive1(f, T0 + 1, -1, a); /* until T0 + 10001 */
    receive1(f, T0 + 1, 20, b); /* until T0 + 20001 */
    expect_counts(f, T0 + 1, 0, 2, 1);
    if (restart)
        fixture_reopen(f);
    /* The delay ends at T0 + 5000: seen by a read, with no command since. */
    expect_counts(f, T0 + 4999, 0, 2, 1);
    expect_counts(f, T0 + 5000, 1, 2, 0);
    /* change-visibility 0: visible at once; then again in flight. */
    handle_ok(f, cmd_change_visibility("q", T0 + 6000, a, 0));
    expect_counts(f, T0 + 6000, 2, 1, 0);
    receive1(f, T0 + 6001, -1, a); /* the earliest due: "late", until T0 + 16001 */
    expect_counts(f, T0 + 6001, 1, 2, 0);
    /* change-visibility that extends a lease */
    handle_ok(f, cmd_change_visibility("q", T0 + 7000, b, 100)); /* until T0 + 107000 */
    if (restart)
        fixture_reopen(f);
    expect_counts(f, T0 + 7000, 1, 2, 0);
    /* a lease that ran out, as a command sees it, then as reads see it */
    ok(apply1(f, cmd_send("q", T0 + 16001, "c")));
    expect_counts(f, T0 + 16001, 3, 1, 0);
    expect_counts(f, T0 + 106999, 3, 1, 0);
    expect_counts(f, T0 + 107000, 4, 0, 0);
    /* delete of an in-flight message */
    handle_ok(f, cmd_delete("q", T0 + 20000, b));
    expect_counts(f, T0 + 20000, 3, 0, 0);
    /* purge */
    receive1(f, T0 + 20001, -1, a);
    ok(apply1(f, cmd_send_delayed("q", T0 + 20001, "later", 60000)));
    expect_counts(f, T0 + 20001, 2, 1, 1);
    kyu_command_t p = cmd_delete_queue("q");
    p.type = KYU_CMD_PURGE_QUEUE;
    p.now_ms = T0 + 20002;
    ok(apply1(f, p));
    expect_counts(f, T0 + 20002, 0, 0, 0);
    /* queue deletion: a new queue of the name counts from zero */
    ok(apply1(f, cmd_send("q", T0 + 20003, "d")));
    receive1(f, T0 + 20003, -1, a);
    ok(apply1(f, cmd_delete_queue("q")));
    ok(apply1(f, cmd_create("q", 10)));
    expect_counts(f, T0 + 20004, 0, 0, 0);
    if (restart)
        fixture_reopen(f);
    expect_counts(f, T0 + 20004, 0, 0, 0);
}

static void test_counts_follow_every_kind_of_change(void **state)
{
    check_every_change(*state, false);
}

static void test_counts_are_the_same_after_restarts(void **state)
{
    check_every_change(*state, true);
}

/* A read at a time before the queue's last command sees the counts of that command's time
 * (the counters never go back), and a read changes nothing a later command sees. */
static void test_a_read_changes_no_count(void **state)
{
    fixture_t *f = *state;
    char h[KYU_HANDLE_MAX + 1];
    ok(apply1(f, cmd_create("q", 10)));
    ok(apply1(f, cmd_send("q", T0, "a")));
    receive1(f, T0, -1, h); /* until T0 + 10000 */
    expect_counts(f, T0 + 20000, 1, 0, 0);
    expect_counts(f, T0 + 5000, 0, 1, 0);
    ok(apply1(f, cmd_send("q", T0 + 5000, "b")));
    expect_counts(f, T0 + 5000, 1, 1, 0);
    expect_counts(f, T0, 1, 1, 0);
}

/* A lease moved to the end it already had leaves two entries for one lease: a read past
 * that end subtracts it once, and so does the command that passes it. */
static void test_a_lease_moved_to_its_own_end_ends_once(void **state)
{
    fixture_t *f = *state;
    char h[KYU_HANDLE_MAX + 1];
    ok(apply1(f, cmd_create("q", 10)));
    ok(apply1(f, cmd_send("q", T0, "a")));
    ok(apply1(f, cmd_send("q", T0, "b")));
    receive1(f, T0, -1, h);                                    /* until T0 + 10000 */
    handle_ok(f, cmd_change_visibility("q", T0 + 5000, h, 5)); /* the same end */
    expect_counts(f, T0 + 5000, 1, 1, 0);
    expect_counts(f, T0 + 20000, 2, 0, 0);
    ok(apply1(f, cmd_send("q", T0 + 20000, "c")));
    expect_counts(f, T0 + 20000, 3, 0, 0);
}

/* The counts the index keeps, against a scan of its leases (what GET_QUEUE_ATTRIBUTES did
 * before), under a random workload: leases moved away and back to the same end, many dead
 * entries (ends rebuilt), reads between commands, restarts. */
static void scan_counts(fixture_t *f, uint64_t now, uint64_t *inflight, uint64_t *delayed)
{
    queue_t *q = zhashx_lookup(((kyu_sm_t *)f->sm)->queues, "q");
    assert_non_null(q);
    uint64_t t = now > q->counted_at ? now : q->counted_at; /* the counters never go back */
    *inflight = *delayed = 0;
    for (lease_t *l = zhashx_first(q->leases); l; l = zhashx_next(q->leases))
        if (l->visible_at > t)
            (*(l->gen == 0 ? delayed : inflight))++;
}

static void test_counts_match_a_scan_under_a_random_workload(void **state)
{
    fixture_t *f = *state;
    uint64_t seed = 0x9e3779b97f4a7c15ULL;
    char handles[64][KYU_HANDLE_MAX + 1];
    size_t n_handles = 0;
    uint64_t now = T0;
    ok(apply1(f, cmd_create("q", 2)));
    for (int step = 0; step < 6000; step++) {
        seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
        unsigned r = (unsigned)(seed % 100);
        now += (seed >> 8) % 400; /* times in steps of 0-399 ms: ends collide */
        kyu_command_t c;
        if (r < 30) {
            c = (seed >> 20) % 3 ? cmd_send("q", now, "m")
                                 : cmd_send_delayed("q", now, "m", ((seed >> 24) % 4) * 1000);
        } else if (r < 60) {
            c = cmd_receive("q", now, 1 + (uint32_t)((seed >> 20) % 3),
                            (int64_t)((seed >> 24) % 3));
        } else if (r < 95 && n_handles > 0) {
            const char *h = handles[(seed >> 20) % n_handles];
            c = r < 75 ? cmd_delete("q", now, h)
                       : cmd_change_visibility("q", now, h, (int64_t)((seed >> 24) % 3));
        } else {
            c = cmd_send("q", now, "m");
        }
        kyu_result_t res = apply1(f, c);
        assert_int_equal(res.code, KYU_OK);
        for (size_t i = 0; i < res.n_msgs; i++)
            snprintf(handles[n_handles++ % 64], KYU_HANDLE_MAX + 1, "%s", res.msgs[i].handle);
        if (n_handles > 64)
            n_handles = 64;
        kyu_result_clear(&res);
        if (step % 1500 == 1499)
            fixture_reopen(f);
        uint64_t at[] = {now, now + 500, now + 2500, now - 100};
        for (size_t i = 0; i < 4; i++) {
            uint64_t inflight, delayed;
            scan_counts(f, at[i], &inflight, &delayed);
            kyu_queue_attrs_t a = fixture_attrs(f, "q", at[i]);
            if ((uint64_t)a.not_visible != inflight || (uint64_t)a.delayed != delayed)
                fail_msg("step %d at %llu: counted %lld in flight / %lld delayed, a scan finds "
                         "%llu / %llu",
                         step, (unsigned long long)at[i], (long long)a.not_visible,
                         (long long)a.delayed, (unsigned long long)inflight,
                         (unsigned long long)delayed);
        }
    }
}

/* ---- the fresh seqs' ring (seqs and runs of consecutive ones) ---- */

/* The ring against a model (a sorted array) under random adds (mostly consecutive, so runs
 * start, grow and end), takes, put-backs, drops below a seq and peeks. */
static void test_fresh_ring_matches_a_model(void **state)
{
    (void)state;
    queue_t *q = calloc(1, sizeof *q);
    assert_non_null(q);
    kyu_sm_index_init(q);
    enum { MODEL_MAX = 40000 };
    uint64_t *model = malloc(MODEL_MAX * sizeof *model);
    assert_non_null(model);
    size_t first = 0, len = 0; /* model[first .. first + len) */
    uint64_t seed = 0x2545f4914f6cdd1dULL, next = 5;
    for (int step = 0; step < 30000; step++) {
        seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
        unsigned r = (unsigned)(seed % 100);
        if (r < 55 && first + len < MODEL_MAX) { /* add: consecutive 4 times in 5 */
            next += (seed >> 8) % 5 == 0 ? 2 + (seed >> 12) % 3 : 1;
            kyu_sm_index_add_fresh(q, next);
            model[first + len++] = next;
        } else if (r < 80) { /* take up to 3, then maybe put some back */
            uint64_t seqs[3];
            lease_t leases[3];
            uint32_t n = kyu_sm_index_take(q, T0, 1 + (uint32_t)((seed >> 8) % 3), seqs, leases);
            assert_true(n <= len);
            for (uint32_t i = 0; i < n; i++)
                assert_int_equal(seqs[i], model[first + i]);
            first += n, len -= n;
            uint32_t back = (uint32_t)((seed >> 16) % (n + 1)); /* the last ones taken first */
            for (uint32_t i = 0; i < back; i++) {
                kyu_sm_index_put_back(q, seqs[n - 1 - i], &leases[n - 1 - i]);
                first--, len++;
            }
        } else if (r < 85 && len > 0) { /* drop below a seq in or past the first runs */
            uint64_t below = model[first] + (seed >> 8) % 12;
            uint64_t expect = 0;
            while (expect < len && model[first + expect] < below)
                expect++;
            assert_int_equal(kyu_sm_index_drop_fresh_below(q, below), expect);
            first += expect, len -= expect;
        } else if (len > 0) { /* peek from a seq in or between runs */
            uint64_t from = model[first + (seed >> 8) % len] - (seed >> 24) % 2;
            uint64_t seqs[KYU_BATCH_MAX + 1];
            lease_t leases[KYU_BATCH_MAX + 1];
            bool fresh[KYU_BATCH_MAX + 1];
            size_t max = 1 + (seed >> 32) % (KYU_BATCH_MAX + 1);
            size_t n = kyu_sm_index_peek(q, from, max, seqs, leases, fresh);
            size_t i = 0;
            while (i < len && model[first + i] < from)
                i++;
            assert_int_equal(n, len - i < max ? len - i : max);
            for (size_t j = 0; j < n; j++) {
                assert_true(fresh[j]);
                assert_int_equal(seqs[j], model[first + i + j]);
            }
        }
        assert_int_equal(q->fresh_len, len);
        if (len == 0)
            first = 0;
        else if (first > MODEL_MAX / 2) { /* room for more adds */
            memmove(model, model + first, len * sizeof *model);
            first = 0;
        }
    }
    free(model);
    kyu_sm_index_free(q);
    free(q);
}

/* A backlog of consecutive seqs is a run: a million of them take one chunk, not 8 MB, and are
 * taken in order. */
static void test_a_consecutive_backlog_is_one_run(void **state)
{
    (void)state;
    queue_t *q = calloc(1, sizeof *q);
    assert_non_null(q);
    kyu_sm_index_init(q);
    for (uint64_t seq = 100; seq < 100 + 1000000; seq++)
        kyu_sm_index_add_fresh(q, seq);
    assert_int_equal(q->fresh_len, 1000000);
    assert_true(kyu_sm_index_fresh_bytes(q) <= 16384);
    uint64_t seqs[10];
    lease_t leases[10];
    assert_int_equal(kyu_sm_index_take(q, T0, 10, seqs, leases), 10);
    for (int i = 0; i < 10; i++)
        assert_int_equal(seqs[i], 100 + (uint64_t)i);
    assert_int_equal(kyu_sm_index_drop_fresh_below(q, 500000), 500000 - 110);
    assert_int_equal(kyu_sm_index_take(q, T0, 1, seqs, leases), 1);
    assert_int_equal(seqs[0], 500000);
    assert_true(kyu_sm_index_fresh_bytes(q) <= 16384);
    kyu_sm_index_free(q);
    free(q);
}

/* A restart rebuilds the ring from the leases as runs: a backlog sent alone stays small, and
 * receives take it in order, around the messages received before the restart. */
static void test_a_restart_rebuilds_the_backlog_as_runs(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, cmd_create("q", 30)));
    for (int i = 0; i < 3000; i++)
        ok(apply1(f, cmd_send("q", T0, "m")));
    char h[KYU_HANDLE_MAX + 1];
    receive1(f, T0, 30, h); /* the first one leased */
    fixture_reopen(f);
    queue_t *q = zhashx_lookup(((kyu_sm_t *)f->sm)->queues, "q");
    assert_non_null(q);
    assert_int_equal(q->fresh_len, 2999);
    assert_true(kyu_sm_index_fresh_bytes(q) <= 16384);
    expect_counts(f, T0, 2999, 1, 0);
    kyu_result_t r = apply1(f, cmd_receive("q", T0 + 1, 10, 30));
    assert_int_equal(r.code, KYU_OK);
    assert_int_equal(r.n_msgs, 10);
    kyu_result_clear(&r);
    expect_counts(f, T0 + 1, 2989, 11, 0);
    r = apply1(f, cmd_receive("q", T0 + 31000, 10, 30)); /* the first lease, due again, first */
    assert_int_equal(r.code, KYU_OK);
    assert_int_equal(r.n_msgs, 10);
    assert_int_equal(r.msgs[0].receive_count, 2);
    kyu_result_clear(&r);
}

#define T(name) cmocka_unit_test_setup_teardown(name, fixture_setup, fixture_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_counts_follow_every_kind_of_change),
        T(test_counts_are_the_same_after_restarts),
        T(test_a_read_changes_no_count),
        T(test_a_lease_moved_to_its_own_end_ends_once),
        T(test_counts_match_a_scan_under_a_random_workload),
        cmocka_unit_test(test_fresh_ring_matches_a_model),
        cmocka_unit_test(test_a_consecutive_backlog_is_one_run),
        T(test_a_restart_rebuilds_the_backlog_as_runs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
