/* The durable log and the replica: entries are reported durable in order, results come only
 * after that, entries durable but not yet applied are applied at the next start (the crash
 * case), a log with a hole refuses to start, and a full disk makes the replica read-only. */
#include "fixture.h"
#include "replica.h"
#include "flog.h"
#include "sys_clock.h"

#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stdlib.h>
#include <string.h>

typedef struct {
    int answered;
    kyu_code_t last_code;
} waiters_t;

static void on_done(void *arg, void *waiter, kyu_result_t *res)
{
    waiters_t *w = arg;
    (void)waiter;
    w->answered++;
    w->last_code = res->code;
}

/* Waits (bounded) for the storage thread's next report and hands it to the replica. */
static void pump_one(kyu_log_t *log, kyu_replica_t *r)
{
    zpoller_t *p = zpoller_new(kyu_log_sock(log), NULL);
    void *which = zpoller_wait(p, 10000);
    zpoller_destroy(&p);
    if (!which)
        fail_msg("no report from the storage thread within 10 s");
    kyu_log_event_t ev;
    kyu_err_t err;
    assert_int_equal(kyu_log_recv(log, &ev, &err), KYU_OK);
    assert_false(ev.failed);
    kyu_replica_on_log_event(r, &ev);
}

/* Waits (bounded) until the storage thread reports write number `index` durable, without a
 * replica. */
static void wait_durable(kyu_log_t *log, uint64_t index)
{
    kyu_log_event_t ev = {0};
    kyu_err_t err;
    while (ev.index < index) {
        zpoller_t *p = zpoller_new(kyu_log_sock(log), NULL);
        void *which = zpoller_wait(p, 10000);
        zpoller_destroy(&p);
        if (!which)
            fail_msg("entry %llu not durable within 10 s", (unsigned long long)index);
        assert_int_equal(kyu_log_recv(log, &ev, &err), KYU_OK);
        assert_false(ev.failed);
    }
}

/* A replica over the real log (the storage thread's ops); cfg may be NULL (one voter). */
static kyu_replica_t *open_replica(fixture_t *f, kyu_log_t *log, const kyu_replica_config_t *cfg,
                                   waiters_t *w, kyu_err_t *err)
{
    kyu_replica_config_t c = cfg ? *cfg : (kyu_replica_config_t){0};
    c.log = &kyu_log_ops;
    c.log_arg = log;
    c.clock = &kyu_sys_clock;
    return kyu_replica_new(f->store, f->sm, &c, on_done, w, err);
}

/* A log and a replica over it (cfg as open_replica's); fails the test unless the replica opens. */
static kyu_replica_t *open_log_and_replica(fixture_t *f, kyu_log_t **log,
                                           const kyu_replica_config_t *cfg, waiters_t *w)
{
    kyu_err_t err;
    *log = kyu_log_new(f->store, &err);
    kyu_replica_t *r = open_replica(f, *log, cfg, w, &err);
    if (!r)
        fail_msg("expected a replica, got none: %s", err.msg);
    return r;
}

/* The storage thread's ops without write_now: every write handed to the thread, as a
 * cluster's are (a lone voter writes a small round itself, tests below). */
static kyu_log_ops_t thread_ops;

static void test_results_come_after_durability_and_in_order(void **state)
{
    fixture_t *f = *state;
    kyu_err_t err;
    waiters_t w = {0};
    kyu_log_t *log = kyu_log_new(f->store, &err);
    thread_ops = kyu_log_ops;
    thread_ops.write_now = NULL;
    kyu_replica_config_t cfg = {.log = &thread_ops, .log_arg = log, .clock = &kyu_sys_clock};
    kyu_replica_t *r = kyu_replica_new(f->store, f->sm, &cfg, on_done, &w, &err);
    assert_non_null(r);
    kyu_command_t c = cmd_create("orders", -1);
    assert_int_equal(kyu_replica_propose(r, &c, NULL, &err), KYU_OK);
    for (int i = 0; i < 50; i++) {
        c = cmd_send("orders", 1000, "m");
        assert_int_equal(kyu_replica_propose(r, &c, NULL, &err), KYU_OK);
    }
    /* Nothing is answered before the storage thread says the entry is durable. */
    assert_int_equal(w.answered, 0);
    kyu_replica_flush(r);
    assert_int_equal(w.answered, 0);
    while (w.answered < 51)
        pump_one(log, r);
    assert_int_equal(w.last_code, KYU_OK);
    kyu_queue_attrs_t a = fixture_attrs(f, "orders", 2000);
    assert_int_equal(a.visible, 50);
    kyu_replica_destroy(&r);
    kyu_log_destroy(&log);
}

static void test_durable_entries_not_applied_are_applied_at_restart(void **state)
{
    fixture_t *f = *state;
    kyu_err_t err;
    /* Write entries straight to the log, as a crash after the fsync and before apply leaves
     * them. */
    kyu_log_t *log = kyu_log_new(f->store, &err);
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    kyu_command_t c = cmd_create("orders", -1);
    kyu_command_encode(&c, &b);
    assert_int_equal(kyu_log_append(log, 1, 1, b.data, b.size, &err), KYU_OK);
    msgpack_sbuffer_clear(&b);
    c = cmd_send("orders", 1000, "kept");
    kyu_command_encode(&c, &b);
    assert_int_equal(kyu_log_append(log, 2, 1, b.data, b.size, &err), KYU_OK);
    msgpack_sbuffer_destroy(&b);
    wait_durable(log, 2);
    kyu_log_destroy(&log);
    assert_int_equal(kyu_sm_applied_index(f->sm), 0);

    fixture_reopen(f);
    waiters_t w = {0};
    kyu_replica_t *r = open_log_and_replica(f, &log, NULL, &w);
    assert_int_equal(kyu_sm_applied_index(f->sm), 2);
    kyu_queue_attrs_t a = fixture_attrs(f, "orders", 2000);
    assert_int_equal(a.visible, 1);
    /* New proposals continue after the replayed entries. */
    c = cmd_send("orders", 1000, "next");
    assert_int_equal(kyu_replica_propose(r, &c, NULL, &err), KYU_OK);
    kyu_replica_flush(r);
    /* Index 3 is the no-op the restarted node appends as leader of a new term; it is
     * written (and applied) first, then the open entry. */
    for (int i = 0; i < 10 && kyu_sm_applied_index(f->sm) < 4; i++)
        pump_one(log, r);
    assert_int_equal(kyu_sm_applied_index(f->sm), 4);
    kyu_replica_destroy(&r);
    kyu_log_destroy(&log);
}

static void test_log_with_a_hole_refuses_to_start(void **state)
{
    fixture_t *f = *state;
    kyu_err_t err;
    kyu_log_t *log = kyu_log_new(f->store, &err);
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    kyu_command_t c = cmd_create("orders", -1);
    kyu_command_encode(&c, &b);
    assert_int_equal(kyu_log_append(log, 1, 1, b.data, b.size, &err), KYU_OK);
    assert_int_equal(kyu_log_append(log, 3, 1, b.data, b.size, &err), KYU_OK);
    msgpack_sbuffer_destroy(&b);
    wait_durable(log, 2); /* the second write */
    kyu_log_destroy(&log);
    fixture_reopen(f);
    waiters_t w = {0};
    log = kyu_log_new(f->store, &err);
    kyu_err_clear(&err);
    kyu_replica_t *r = open_replica(f, log, NULL, &w, &err);
    assert_null(r);
    assert_int_equal(err.code, KYU_ERR_STORAGE);
    assert_non_null(strstr(err.msg, "corrupt"));
    kyu_log_destroy(&log);
}

static void test_backpressure_refuses_with_busy(void **state)
{
    fixture_t *f = *state;
    kyu_err_t err;
    waiters_t w = {0};
    kyu_log_t *log = kyu_log_new(f->store, &err);
    kyu_replica_t *r = open_replica(f, log, NULL, &w, &err);
    kyu_command_t c = cmd_create("orders", -1);
    for (int i = 0; i < KYU_REPLICA_PENDING_MAX; i++)
        assert_int_equal(kyu_replica_propose(r, &c, NULL, &err), KYU_OK);
    assert_int_equal(kyu_replica_propose(r, &c, NULL, &err), KYU_ERR_BUSY);
    kyu_replica_flush(r);
    while (w.answered < KYU_REPLICA_PENDING_MAX)
        pump_one(log, r);
    assert_int_equal(kyu_replica_propose(r, &c, NULL, &err), KYU_OK);
    kyu_replica_destroy(&r); /* answers the waiting proposal with an error */
    assert_int_equal(w.last_code, KYU_ERR_STORAGE);
    kyu_log_destroy(&log);
}

/* Proposes c through the replica and pumps until it is answered. */
static void propose_and_wait(kyu_log_t *log, kyu_replica_t *r, waiters_t *w, kyu_command_t c)
{
    kyu_err_t err;
    int before = w->answered;
    assert_int_equal(kyu_replica_propose(r, &c, NULL, &err), KYU_OK);
    kyu_replica_flush(r);
    while (w->answered == before)
        pump_one(log, r);
}

/* Proposes one send and pumps until it is answered (one Raft round per entry). */
static void send_one_entry(kyu_log_t *log, kyu_replica_t *r, waiters_t *w)
{
    propose_and_wait(log, r, w, cmd_send("orders", 1000, "m"));
}

/* open_log_and_replica, then queue "orders" created through the replica. */
static kyu_replica_t *open_with_orders(fixture_t *f, kyu_log_t **log,
                                       const kyu_replica_config_t *cfg, waiters_t *w)
{
    kyu_replica_t *r = open_log_and_replica(f, log, cfg, w);
    propose_and_wait(*log, r, w, cmd_create("orders", -1));
    return r;
}

static void
test_log_is_compacted_behind_a_window_and_restarts_from_the_snapshot_record(void **state)
{
    fixture_t *f = *state;
    kyu_err_t err;
    waiters_t w = {0};
    kyu_replica_config_t cfg = {.log_window = 16};
    kyu_log_t *log;
    kyu_replica_t *r = open_with_orders(f, &log, &cfg, &w);
    for (int i = 0; i < 100; i++) {
        send_one_entry(log, r, &w);
        /* the state database holds every entry: its write-behind never holds compaction
         * back here (that case is the crash test below) */
        assert_int_equal(kyu_sm_flush(f->sm, &err), KYU_OK);
    }
    uint64_t applied = kyu_sm_applied_index(f->sm);
    kyu_replica_destroy(&r);
    kyu_log_destroy(&log); /* finishes the compaction handed over last */

    uint64_t first = 0;
    assert_int_equal(kyu_log_first_index(f->store, &first, &err), KYU_OK);
    assert_true(first > 1);
    /* the files keep up to KYU_REPLICA_DURABLE_LAG windows more, past the state's tables */
    assert_true(applied - first < 16 * (KYU_REPLICA_DURABLE_LAG + 1) + 16 + 16);

    fixture_reopen(f);
    r = open_log_and_replica(f, &log, &cfg, &w);
    assert_int_equal(kyu_sm_applied_index(f->sm), applied);
    send_one_entry(log, r, &w);
    kyu_queue_attrs_t a = fixture_attrs(f, "orders", 2000);
    assert_int_equal(a.visible, 101);
    kyu_replica_destroy(&r);
    kyu_log_destroy(&log);
}

/* A node without peers has no follower to keep a window for: the core drops its applied
 * entries once the state database holds them (a few dozen at a time), where a cluster node
 * keeps the last KYU_REPLICA_LOG_WINDOW (replica.c, maybe_compact). */
static void test_a_node_without_peers_keeps_no_window_in_memory(void **state)
{
    fixture_t *f = *state;
    kyu_err_t err;
    waiters_t w = {0};
    kyu_replica_config_t cfg = {0}; /* the default window, 16,384 entries */
    kyu_log_t *log;
    kyu_replica_t *r = open_with_orders(f, &log, &cfg, &w);
    for (int i = 0; i < 200; i++) {
        send_one_entry(log, r, &w);
        assert_int_equal(kyu_sm_flush(f->sm, &err), KYU_OK);
    }
    uint64_t applied = kyu_sm_applied_index(f->sm);
    uint64_t first = kyu_raft_first_index(kyu_replica_raft(r));
    assert_true(first > 64);
    assert_true(applied - first < 64);
    kyu_replica_destroy(&r);
    kyu_log_destroy(&log);
}

#define T(name) cmocka_unit_test_setup_teardown(name, fixture_setup, fixture_teardown)

static kyu_code_t count_entry(void *arg, uint64_t index, uint64_t term, int type,
                              const void *payload, size_t len, kyu_err_t *err)
{
    (void)index;
    (void)err;
    if (term == 2 && type == KYU_ENTRY_NOOP && len == 3 && memcmp(payload, "abc", 3) == 0)
        ++*(int *)arg;
    return KYU_OK;
}

/* The state machine writes behind (sm_buffer.c): after a crash its database is at an
 * earlier index, and the log must still hold every entry after it, however small the log's
 * window. */
static void test_a_crash_loses_no_entry_the_state_database_had_not_written(void **state)
{
    fixture_t *f = *state;
    kyu_err_t err;
    waiters_t w = {0};
    kyu_replica_config_t cfg = {.log_window = 16};
    kyu_log_t *log;
    kyu_replica_t *r = open_with_orders(f, &log, &cfg, &w);
    for (int i = 0; i < 100; i++)
        send_one_entry(log, r, &w);
    uint64_t applied = kyu_sm_applied_index(f->sm);
    assert_true(kyu_sm_persisted_index(f->sm) < applied);
    kyu_replica_destroy(&r);
    kyu_log_destroy(&log);
    uint64_t first = 0;
    assert_int_equal(kyu_log_first_index(f->store, &first, &err), KYU_OK);
    assert_true(first <= kyu_sm_persisted_index(f->sm) + 1);

    fixture_crash(f);
    assert_true(kyu_sm_applied_index(f->sm) < applied);
    r = open_log_and_replica(f, &log, &cfg, &w);
    /* Replayed up to the commit index the log holds; the last entry's commit is known once
     * the restarted node commits an entry of its own term (its no-op, then this send). */
    send_one_entry(log, r, &w);
    assert_int_equal(kyu_sm_applied_index(f->sm), applied + 2);
    kyu_queue_attrs_t a = fixture_attrs(f, "orders", 2000);
    assert_int_equal(a.visible, 101);
    kyu_replica_destroy(&r);
    kyu_log_destroy(&log);
}

/* The state database's writes carry no WAL (store.h): a kill -9 or a power loss takes it
 * back to what its tables hold, behind what it had written, and the log must still hold every
 * entry after that: the log is compacted only up to the tables' index, and the replica asks
 * for them to be flushed when it wants to compact further. */
static void test_a_kill_loses_no_entry_the_state_tables_do_not_hold(void **state)
{
    fixture_t *f = *state;
    kyu_err_t err;
    waiters_t w = {0};
    kyu_replica_config_t cfg = {.log_window = 16};
    kyu_log_t *log;
    kyu_replica_t *r = open_with_orders(f, &log, &cfg, &w);
    for (int i = 0; i < 100; i++)
        send_one_entry(log, r, &w);
    uint64_t applied = kyu_sm_applied_index(f->sm);
    uint64_t durable = kyu_sm_durable_index(f->sm), tables = 0;
    assert_true(durable > 1); /* the replica asked for flushes to compact its log */
    assert_true(durable <= kyu_sm_persisted_index(f->sm));
    assert_int_equal(kyu_store_state_durable(f->store, &tables, &err), KYU_OK);
    assert_true(tables >= durable);
    kyu_replica_destroy(&r);
    kyu_log_destroy(&log);
    uint64_t first = 0;
    assert_int_equal(kyu_log_first_index(f->store, &first, &err), KYU_OK);
    assert_true(first > 1);
    assert_true(first <= tables + 1);

    fixture_kill(f);
    assert_int_equal(kyu_sm_applied_index(f->sm), tables);
    r = open_log_and_replica(f, &log, &cfg, &w);
    send_one_entry(log, r, &w);
    assert_int_equal(kyu_sm_applied_index(f->sm), applied + 2);
    kyu_queue_attrs_t a = fixture_attrs(f, "orders", 2000);
    assert_int_equal(a.visible, 101);
    kyu_replica_destroy(&r);
    kyu_log_destroy(&log);
}

/* The storage thread compacts the log only up to the state's tables, whatever it is asked:
 * a compaction past them is not made. */
static void test_the_log_is_never_compacted_past_the_state_tables(void **state)
{
    fixture_t *f = *state;
    kyu_err_t err;
    waiters_t w = {0};
    kyu_log_t *log;
    kyu_replica_t *r = open_with_orders(f, &log, NULL, &w);
    for (int i = 0; i < 5; i++)
        send_one_entry(log, r, &w);
    assert_int_equal(kyu_sm_flush(f->sm, &err), KYU_OK); /* written, not in the tables */
    uint64_t tables = 0;
    assert_int_equal(kyu_store_state_durable(f->store, &tables, &err), KYU_OK);
    assert_int_equal(tables, 0);
    kyu_replica_destroy(&r);
    kyu_log_snapshot_t snap = {.found = true, .index = 3, .term = 2};
    kyu_log_compact(log, &snap);
    kyu_log_destroy(&log); /* finishes the compaction handed over */
    uint64_t first = 0;
    assert_int_equal(kyu_log_first_index(f->store, &first, &err), KYU_OK);
    assert_int_equal(first, 1);
}

/* Below the broker's free-space minimum (main.c) the replica is read-only: proposals get
 * READ_ONLY with the reason, what waited in the open entry is answered READ_ONLY (it was
 * never proposed), the status says why, and nothing is written until it is lifted; then it
 * goes on with the same log. */
static void test_a_full_disk_makes_the_replica_read_only_until_space_is_freed(void **state)
{
    fixture_t *f = *state;
    kyu_err_t err;
    waiters_t w = {0};
    kyu_log_t *log;
    kyu_replica_t *r = open_with_orders(f, &log, NULL, &w);
    assert_null(kyu_replica_read_only(r));

    kyu_command_t c = cmd_send("orders", 1000, "waits in the open entry");
    assert_int_equal(kyu_replica_propose(r, &c, NULL, &err), KYU_OK);
    int before = w.answered;
    kyu_replica_set_disk_low(r, "the disk is almost full: 1.0 MiB free in test");
    assert_int_equal(w.answered, before + 1);
    assert_int_equal(w.last_code, KYU_ERR_READ_ONLY);
    assert_string_equal(kyu_replica_read_only(r), "the disk is almost full: 1.0 MiB free in test");
    c = cmd_send("orders", 1000, "refused");
    assert_int_equal(kyu_replica_propose(r, &c, NULL, &err), KYU_ERR_READ_ONLY);
    assert_non_null(strstr(err.msg, "almost full"));
    kyu_node_status_t st;
    kyu_replica_status(r, &st);
    assert_non_null(strstr(st.read_only, "almost full"));
    uint64_t last = 0;
    kyu_replica_flush(r);
    kyu_replica_tick(r);
    assert_int_equal(kyu_log_last_index(f->store, &last, &err), KYU_OK);
    uint64_t applied = kyu_sm_applied_index(f->sm);
    assert_int_equal(last, applied); /* nothing written beyond what was applied */

    kyu_replica_set_disk_low(r, NULL);
    assert_null(kyu_replica_read_only(r));
    kyu_replica_status(r, &st);
    assert_string_equal(st.read_only, "");
    send_one_entry(log, r, &w);
    assert_int_equal(w.last_code, KYU_OK);
    kyu_queue_attrs_t a = fixture_attrs(f, "orders", 2000);
    assert_int_equal(a.visible, 1); /* only the send made after */
    kyu_replica_destroy(&r);
    kyu_log_destroy(&log);
}

/* A failed write (the fault seam of flog.h) is reported once, kept, and written again by the
 * storage thread (after RETRY_MS, the disk having room): then reported durable, with the writes
 * that came meanwhile; what was durable before is there after a restart, and writes go on. */
static void test_a_failed_write_is_written_again_and_then_reported_durable(void **state)
{
    fixture_t *f = *state;
    kyu_err_t err;
    kyu_log_t *log = kyu_log_new(f->store, &err);
    assert_int_equal(kyu_log_append(log, 1, 1, "a", 1, &err), KYU_OK);
    wait_durable(log, 1);
    kyu_flog_fail_next(kyu_store_flog(f->store), ENOSPC, 0, 1);
    assert_int_equal(kyu_log_append(log, 2, 1, "b", 1, &err), KYU_OK);
    zpoller_t *p = zpoller_new(kyu_log_sock(log), NULL);
    assert_non_null(zpoller_wait(p, 10000));
    kyu_log_event_t ev;
    assert_int_equal(kyu_log_recv(log, &ev, &err), KYU_OK);
    assert_true(ev.failed);
    assert_non_null(strstr(ev.error, "No space left on device"));
    assert_int_equal(kyu_log_append(log, 3, 1, "c", 1, &err), KYU_OK);
    assert_non_null(zpoller_wait(p, 10000));
    assert_int_equal(kyu_log_recv(log, &ev, &err), KYU_OK);
    assert_false(ev.failed);
    assert_int_equal(ev.index, 3);
    zpoller_destroy(&p);
    kyu_log_destroy(&log);
    fixture_reopen(f);
    uint64_t last = 0;
    assert_int_equal(kyu_log_last_index(f->store, &last, &err), KYU_OK);
    assert_int_equal(last, 3);
    log = kyu_log_new(f->store, &err);
    assert_int_equal(kyu_log_append(log, 4, 1, "d", 1, &err), KYU_OK);
    wait_durable(log, 1);
    kyu_log_destroy(&log);
    fixture_reopen(f);
    assert_int_equal(kyu_log_last_index(f->store, &last, &err), KYU_OK);
    assert_int_equal(last, 4);
}

/* Whether the storage thread has a report waiting (it has none for a write made on the
 * loop). */
static bool report_waiting(kyu_log_t *log)
{
    return (zsock_events(kyu_log_sock(log)) & ZMQ_POLLIN) != 0;
}

/* The messages visible in "orders" after a crash and a restart of log and replica (the
 * state rebuilt from the state database and the log). */
static uint64_t visible_after_a_crash(fixture_t *f, kyu_log_t **log, kyu_replica_t **r,
                                      waiters_t *w)
{
    kyu_replica_destroy(r);
    kyu_log_destroy(log);
    fixture_crash(f);
    *r = open_log_and_replica(f, log, NULL, w);
    /* The entries after the durable commit index commit with the new term's first entry. */
    zpoller_t *p = zpoller_new(kyu_log_sock(*log), NULL);
    for (int i = 0; i < 4; i++) {
        kyu_replica_flush(*r);
        if (zpoller_wait(p, 100))
            pump_one(*log, *r);
    }
    zpoller_destroy(&p);
    kyu_queue_attrs_t a = fixture_attrs(f, "orders", 2000);
    return a.visible;
}

/* One voter, a small round: the event loop writes and syncs it itself (no hand-off to the
 * storage thread, no report), and answers only after that; what it answered is there after
 * a crash. */
static void test_a_lone_voter_writes_a_small_round_itself_before_answering(void **state)
{
    fixture_t *f = *state;
    kyu_err_t err;
    waiters_t w = {0};
    kyu_log_t *log;
    kyu_replica_t *r = open_with_orders(f, &log, NULL, &w);
    uint64_t last = 0, before = 0;
    assert_int_equal(kyu_log_last_index(f->store, &before, &err), KYU_OK);
    for (int i = 1; i <= 3; i++) {
        kyu_command_t c = cmd_send("orders", 1000, "small");
        assert_int_equal(kyu_replica_propose(r, &c, NULL, &err), KYU_OK);
        kyu_replica_flush(r);
        assert_int_equal(w.answered, 1 + i); /* answered in the flush: durable already */
        assert_int_equal(w.last_code, KYU_OK);
        assert_false(report_waiting(log));
        assert_int_equal(kyu_log_last_index(f->store, &last, &err), KYU_OK);
        assert_int_equal(last, before + (uint64_t)i); /* on disk when answered */
    }
    assert_int_equal(visible_after_a_crash(f, &log, &r, &w), 3);
    kyu_replica_destroy(&r);
    kyu_log_destroy(&log);
}

/* A round over KYU_REPLICA_WRITE_HERE_MAX goes to the storage thread (its apply overlaps the
 * next round's fsync there): answered only after the thread's report. */
static void test_a_large_round_goes_to_the_storage_thread(void **state)
{
    fixture_t *f = *state;
    kyu_err_t err;
    waiters_t w = {0};
    kyu_log_t *log;
    kyu_replica_t *r = open_with_orders(f, &log, NULL, &w);
    static char body[KYU_REPLICA_WRITE_HERE_MAX + 1];
    memset(body, 'x', sizeof body - 1);
    kyu_command_t c = cmd_send("orders", 1000, body);
    assert_int_equal(kyu_replica_propose(r, &c, NULL, &err), KYU_OK);
    kyu_replica_flush(r);
    assert_int_equal(w.answered, 1);
    pump_one(log, r);
    assert_int_equal(w.answered, 2);
    assert_int_equal(w.last_code, KYU_OK);
    assert_int_equal(visible_after_a_crash(f, &log, &r, &w), 1);
    kyu_replica_destroy(&r);
    kyu_log_destroy(&log);
}

/* ---- a follower of a three-node cluster over the real log ---- */

typedef struct {
    size_t n;
    kyu_raft_msg_t last; /* the last acknowledgement sent (its entries not kept) */
} acks_t;

static void record_ack(void *arg, const kyu_raft_msg_t *m)
{
    acks_t *a = arg;
    if (m->type != KYU_RAFT_MSG_APPEND_RESP)
        return;
    a->n++;
    a->last = *m;
    a->last.entries = NULL;
    a->last.n_entries = 0;
}

/* Node 1 of nodes 1-3, over the real log, its acknowledgements recorded. */
static kyu_replica_t *open_follower(fixture_t *f, kyu_log_t **log, acks_t *acks, waiters_t *w)
{
    static kyu_peers_t peers;
    static kyu_replica_transport_t net;
    memset(&peers, 0, sizeof peers);
    for (size_t i = 0; i < 3; i++) {
        peers.peers[i].id = i + 1;
        snprintf(peers.peers[i].raft, sizeof peers.peers[i].raft, "tcp://127.0.0.1:%zu", 7000 + i);
        snprintf(peers.peers[i].client, sizeof peers.peers[i].client, "tcp://127.0.0.1:%zu",
                 8000 + i);
    }
    peers.n = 3;
    net = (kyu_replica_transport_t){.send = record_ack};
    kyu_replica_config_t cfg = {.peers = &peers, .transport = &net, .transport_arg = acks};
    return open_log_and_replica(f, log, &cfg, w);
}

/* Leader 2 (term 1) appends one entry of len bytes at index, after index - 1. */
static void append_from_leader(kyu_replica_t *r, uint64_t index, size_t len)
{
    static char data[2 * KYU_REPLICA_WRITE_HERE_MAX];
    KYU_ASSERT(len <= sizeof data);
    memset(data, 'e', len);
    kyu_raft_entry_t e = {.index = index,
                          .term = 1,
                          .type = KYU_RAFT_ENTRY_NORMAL,
                          .data = (uint8_t *)data,
                          .len = len};
    kyu_raft_msg_t m = {.type = KYU_RAFT_MSG_APPEND,
                        .group = KYU_GROUP_ID,
                        .from = 2,
                        .to = 1,
                        .term = 1,
                        .log_term = index > 1 ? 1 : 0,
                        .index = index - 1,
                        .entries = &e,
                        .n_entries = 1};
    kyu_replica_step(r, &m);
    kyu_replica_flush(r);
}

/* A follower writes a small append on the loop and acknowledges it in the same flush (no
 * hand-off to the storage thread, no report), only once it is on disk; a large one goes to
 * the storage thread and is acknowledged after its report. An acknowledgement still means
 * durable here. */
static void test_a_follower_acknowledges_a_small_append_once_it_wrote_it_itself(void **state)
{
    fixture_t *f = *state;
    kyu_err_t err;
    waiters_t w = {0};
    acks_t acks = {0};
    kyu_log_t *log;
    kyu_replica_t *r = open_follower(f, &log, &acks, &w);
    uint64_t last = 0;
    for (uint64_t i = 1; i <= 3; i++) {
        append_from_leader(r, i, 1100); /* a LAT round: one send and the receive it serves */
        assert_int_equal(acks.n, i);    /* acknowledged in the flush */
        assert_false(acks.last.reject);
        assert_int_equal(acks.last.to, 2);
        assert_int_equal(acks.last.index, i);
        assert_false(report_waiting(log));
        assert_int_equal(kyu_log_last_index(f->store, &last, &err), KYU_OK);
        assert_int_equal(last, i); /* on disk when acknowledged */
    }
    append_from_leader(r, 4, KYU_REPLICA_WRITE_HERE_MAX + 1);
    assert_int_equal(acks.n, 3); /* handed to the storage thread: not yet */
    pump_one(log, r);
    assert_int_equal(acks.n, 4);
    assert_int_equal(acks.last.index, 4);
    assert_int_equal(kyu_log_last_index(f->store, &last, &err), KYU_OK);
    assert_int_equal(last, 4);
    append_from_leader(r, 5, 100); /* and the loop writes the next small one again */
    assert_int_equal(acks.n, 5);
    assert_false(report_waiting(log));
    assert_int_equal(w.answered, 0); /* a follower has no waiters */
    kyu_replica_destroy(&r);
    kyu_log_destroy(&log);
}

/* A small round whose write (skip 0) or fdatasync (skip 1) fails on the loop is handed to
 * the storage thread, which writes it again, whole: answered once that is durable, never
 * before; after a crash the log holds it once, and writes go on from there. */
static void test_a_round_failing_on_the_loop_is_written_again_by_the_storage_thread(void **state)
{
    fixture_t *f = *state;
    kyu_err_t err;
    waiters_t w = {0};
    kyu_log_t *log;
    kyu_replica_t *r = open_with_orders(f, &log, NULL, &w);
    for (int skip = 0; skip <= 1; skip++) {
        int before = w.answered;
        kyu_flog_fail_next(kyu_store_flog(f->store), EIO, skip, 1);
        kyu_command_t c = cmd_send("orders", 1000, "fails once");
        assert_int_equal(kyu_replica_propose(r, &c, NULL, &err), KYU_OK);
        kyu_replica_flush(r);
        assert_int_equal(w.answered, before); /* not durable: not answered */
        pump_one(log, r);                     /* the storage thread's write succeeds */
        assert_int_equal(w.answered, before + 1);
        assert_int_equal(w.last_code, KYU_OK);
        send_one_entry(log, r, &w); /* and the loop writes the next round itself again */
        assert_false(report_waiting(log));
    }
    assert_int_equal(visible_after_a_crash(f, &log, &r, &w), 4);
    send_one_entry(log, r, &w);
    assert_int_equal(visible_after_a_crash(f, &log, &r, &w), 5);
    kyu_replica_destroy(&r);
    kyu_log_destroy(&log);
}

/* The write fails on the loop and again in the storage thread (a full disk): the replica
 * goes read-only (the request answered READ_ONLY: it may or may not be applied), the thread
 * writes it again once it can, and then it is applied and writes are taken again. */
static void test_a_round_failing_on_the_loop_and_in_the_thread_turns_read_only(void **state)
{
    fixture_t *f = *state;
    kyu_err_t err;
    waiters_t w = {0};
    kyu_log_t *log;
    kyu_replica_t *r = open_with_orders(f, &log, NULL, &w);
    kyu_flog_fail_next(kyu_store_flog(f->store), ENOSPC, 0, 2);
    kyu_command_t c = cmd_send("orders", 1000, "fails twice");
    assert_int_equal(kyu_replica_propose(r, &c, NULL, &err), KYU_OK);
    kyu_replica_flush(r);
    assert_int_equal(w.answered, 1);
    zpoller_t *p = zpoller_new(kyu_log_sock(log), NULL);
    kyu_log_event_t ev;
    for (int reports = 0; reports < 2; reports++) { /* FAILED, then DURABLE (after ~1 s) */
        if (!zpoller_wait(p, 10000))
            fail_msg("no report from the storage thread within 10 s");
        assert_int_equal(kyu_log_recv(log, &ev, &err), KYU_OK);
        assert_true(ev.failed == (reports == 0));
        kyu_replica_on_log_event(r, &ev);
        if (reports == 0) {
            assert_int_equal(w.answered, 2);
            assert_int_equal(w.last_code, KYU_ERR_READ_ONLY);
            assert_non_null(kyu_replica_read_only(r));
        }
    }
    zpoller_destroy(&p);
    assert_null(kyu_replica_read_only(r));
    kyu_queue_attrs_t a = fixture_attrs(f, "orders", 2000);
    assert_int_equal(a.visible, 1); /* applied once written */
    send_one_entry(log, r, &w);
    assert_int_equal(w.last_code, KYU_OK);
    assert_int_equal(visible_after_a_crash(f, &log, &r, &w), 2);
    kyu_replica_destroy(&r);
    kyu_log_destroy(&log);
}

/* A data directory of an earlier broker keeps its log in RocksDB (DIR/log: key group(4)
 * index(8) -> term(8) type(1) payload, and 0xff "hard"/"snap" group(4)): it is migrated into
 * the segment log at open, and DIR/log removed. */
static void test_a_rocksdb_log_of_an_earlier_broker_is_migrated_at_open(void **state)
{
    fixture_t *f = *state;
    kyu_err_t err;
    kyu_sm_destroy(&f->sm);
    kyu_store_close(&f->store);
    char path[400];
    snprintf(path, sizeof path, "%s/rlog", f->dir);
    kyu_store_remove_tree(path); /* the directory as an earlier broker left it */
    snprintf(path, sizeof path, "%s/log", f->dir);
    kyu_store_remove_tree(path);
    rocksdb_options_t *o = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(o, 1);
    rocksdb_options_set_create_missing_column_families(o, 1);
    const char *names[2] = {"default", "log"};
    const rocksdb_options_t *opts[2] = {o, o};
    rocksdb_column_family_handle_t *h[2];
    char *rerr = NULL;
    rocksdb_t *db = rocksdb_open_column_families(o, path, 2, names, opts, h, &rerr);
    assert_null(rerr);
    rocksdb_writeoptions_t *w = rocksdb_writeoptions_create();
    for (uint64_t i = 5; i <= 7; i++) {
        uint8_t k[12], v[12];
        kyu_put_be32(k, 1);
        kyu_put_be64(k + 4, i);
        kyu_put_be64(v, 2);
        v[8] = KYU_ENTRY_NOOP;
        memcpy(v + 9, "abc", 3);
        rocksdb_put_cf(db, w, h[1], (char *)k, 12, (char *)v, 12, &rerr);
        assert_null(rerr);
    }
    uint8_t hk[9] = {0xff, 'h', 'a', 'r', 'd'}, sk[9] = {0xff, 's', 'n', 'a', 'p'}, hv[24], sv[17];
    kyu_put_be32(hk + 5, 1);
    kyu_put_be32(sk + 5, 1);
    kyu_put_be64(hv, 2);
    kyu_put_be64(hv + 8, 1);
    kyu_put_be64(hv + 16, 6);
    kyu_put_be64(sv, 4);
    kyu_put_be64(sv + 8, 1);
    sv[16] = 9;
    rocksdb_put_cf(db, w, h[1], (char *)hk, 9, (char *)hv, 24, &rerr);
    rocksdb_put_cf(db, w, h[1], (char *)sk, 9, (char *)sv, 17, &rerr);
    assert_null(rerr);
    rocksdb_writeoptions_destroy(w);
    rocksdb_column_family_handle_destroy(h[0]);
    rocksdb_column_family_handle_destroy(h[1]);
    rocksdb_close(db);
    rocksdb_options_destroy(o);

    /* a copy an earlier attempt left half-made (a crash before its rename): made again */
    char tmp[400];
    snprintf(tmp, sizeof tmp, "%s/rlog.new", f->dir);
    assert_int_equal(mkdir(tmp, 0755), 0);
    snprintf(tmp, sizeof tmp, "%s/rlog.new/meta", f->dir);
    FILE *junk = fopen(tmp, "w");
    assert_non_null(junk);
    fputs("half a meta file", junk);
    fclose(junk);

    f->store = kyu_store_open(f->dir, &err);
    assert_non_null(f->store);
    /* DIR/log is now a file that an earlier broker cannot open as its log database */
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    snprintf(tmp, sizeof tmp, "%s/rlog.new", f->dir);
    assert_int_equal(access(tmp, F_OK), -1);
    uint64_t first = 0, last = 0;
    assert_int_equal(kyu_log_first_index(f->store, &first, &err), KYU_OK);
    assert_int_equal(kyu_log_last_index(f->store, &last, &err), KYU_OK);
    assert_int_equal(first, 5);
    assert_int_equal(last, 7);
    kyu_log_hard_state_t hs;
    kyu_log_snapshot_t snap;
    assert_int_equal(kyu_log_load_state(f->store, &hs, &snap, &err), KYU_OK);
    assert_true(hs.found);
    assert_int_equal(hs.term, 2);
    assert_int_equal(hs.vote, 1);
    assert_int_equal(hs.commit, 6);
    assert_true(snap.found);
    assert_int_equal(snap.index, 4);
    assert_int_equal(snap.conf_len, 1);
    assert_int_equal(snap.conf[0], 9);
    int n = 0;
    assert_int_equal(kyu_log_replay(f->store, 5, count_entry, &n, &err), KYU_OK);
    assert_int_equal(n, 3);
    f->sm = kyu_sm_open(f->store, &err);
    assert_non_null(f->sm);
}

int main(void)
{
    zsys_init();
    zsys_set_logstream(NULL);
    const struct CMUnitTest tests[] = {
        T(test_results_come_after_durability_and_in_order),
        T(test_durable_entries_not_applied_are_applied_at_restart),
        T(test_log_with_a_hole_refuses_to_start),
        T(test_backpressure_refuses_with_busy),
        T(test_log_is_compacted_behind_a_window_and_restarts_from_the_snapshot_record),
        T(test_a_node_without_peers_keeps_no_window_in_memory),
        T(test_a_kill_loses_no_entry_the_state_tables_do_not_hold),
        T(test_the_log_is_never_compacted_past_the_state_tables),
        T(test_a_crash_loses_no_entry_the_state_database_had_not_written),
        T(test_a_full_disk_makes_the_replica_read_only_until_space_is_freed),
        T(test_a_failed_write_is_written_again_and_then_reported_durable),
        T(test_a_lone_voter_writes_a_small_round_itself_before_answering),
        T(test_a_large_round_goes_to_the_storage_thread),
        T(test_a_follower_acknowledges_a_small_append_once_it_wrote_it_itself),
        T(test_a_round_failing_on_the_loop_is_written_again_by_the_storage_thread),
        T(test_a_round_failing_on_the_loop_and_in_the_thread_turns_read_only),
        T(test_a_rocksdb_log_of_an_earlier_broker_is_migrated_at_open),
    };
    return cmocka_run_group_tests_name("log and replica", tests, NULL, NULL);
}
