/* Retention (broker/sm_expiry.c): EXPIRE_MESSAGES deletes every message sent more than its
 * queue's MessageRetentionPeriod before the command's time, visible, in flight or delayed,
 * and none younger; the marks it decides by are replicated state (kept across restarts,
 * merged when many), so the same entries expire the same messages everywhere. */
#include "command.h"
#include "fixture.h"
#include "ops.h"
#include "queue_attrs.h"
#include "sm_internal.h"

#include <stdlib.h>
#include <string.h>

#define T0 1000000 /* a command time, ms */
#define RET 60000  /* the shortest retention period, ms */

static kyu_queue_ext_t ext; /* borrowed by the create command until it is applied */

/* Queue name with a retention period of retention_s seconds. */
static void create(fixture_t *f, const char *name, uint32_t retention_s)
{
    kyu_command_t c = cmd_create(name, -1);
    c.now_ms = T0;
    kyu_qattrs_defaults(&ext);
    ext.retention = retention_s;
    c.qx = &ext;
    c.qx_set = KYU_F_RETENTION;
    ok(apply1(f, c));
}

static kyu_command_t cmd_expire(uint64_t now)
{
    kyu_command_t c;
    memset(&c, 0, sizeof c);
    c.type = KYU_CMD_EXPIRE_MESSAGES;
    c.vt = -1;
    c.now_ms = now;
    return c;
}

static void send_at(fixture_t *f, const char *q, uint64_t now, const char *body)
{
    ok(apply1(f, cmd_send(q, now, body)));
}

static void expect_total(fixture_t *f, const char *q, uint64_t now, int64_t total)
{
    kyu_queue_attrs_t a = fixture_attrs(f, q, now);
    if (a.visible + a.not_visible + a.delayed != total)
        fail_msg("queue %s at %llu: expected %lld messages, got %lld visible + %lld in flight + "
                 "%lld delayed",
                 q, (unsigned long long)now, (long long)total, (long long)a.visible,
                 (long long)a.not_visible, (long long)a.delayed);
}

/* The bodies a receive at now gets from q (up to 10), NULL-terminated in want. */
static void expect_bodies(fixture_t *f, const char *q, uint64_t now, const char *const *want)
{
    kyu_result_t r = apply1(f, cmd_receive(q, now, 10, 30));
    assert_int_equal(r.code, KYU_OK);
    size_t n = 0;
    while (want[n])
        n++;
    if (r.n_msgs != n)
        fail_msg("expected %zu messages from %s at %llu, got %zu", n, q, (unsigned long long)now,
                 r.n_msgs);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(r.body_lens[i], strlen(want[i]));
        assert_memory_equal(r.bodies[i], want[i], strlen(want[i]));
    }
    kyu_result_clear(&r);
}

static void test_messages_past_the_retention_period_expire_and_younger_ones_stay(void **state)
{
    fixture_t *f = *state;
    create(f, "q", 60);
    send_at(f, "q", T0, "old");
    send_at(f, "q", T0 + 30000, "young");
    /* Not yet: the first is 60 s old only at T0 + 60000 (and its mark's second after). */
    assert_false(kyu_sm_expiry_due(f->sm, T0 + RET));
    ok(apply1(f, cmd_expire(T0 + RET)));
    expect_total(f, "q", T0 + RET, 2);
    /* Past it by a mark's span: the first goes, the second stays. */
    assert_true(kyu_sm_expiry_due(f->sm, T0 + RET + 1000));
    ok(apply1(f, cmd_expire(T0 + RET + 1000)));
    expect_total(f, "q", T0 + RET + 1000, 1);
    assert_false(kyu_sm_expiry_due(f->sm, T0 + RET + 1000));
    expect_bodies(f, "q", T0 + RET + 1000, (const char *[]){"young", NULL});
}

static void test_leased_and_delayed_messages_expire_too(void **state)
{
    fixture_t *f = *state;
    create(f, "q", 60);
    send_at(f, "q", T0, "leased");
    ok(apply1(f, cmd_send_delayed("q", T0, "delayed", 900000)));
    kyu_result_t r = apply1(f, cmd_receive("q", T0 + 1, 1, 43200));
    assert_int_equal(r.n_msgs, 1);
    char h[KYU_HANDLE_MAX + 1];
    snprintf(h, sizeof h, "%s", r.msgs[0].handle);
    kyu_result_clear(&r);
    send_at(f, "q", T0 + 5000, "fresh");
    kyu_queue_attrs_t a = fixture_attrs(f, "q", T0 + 5000);
    assert_int_equal(a.visible, 1);
    assert_int_equal(a.not_visible, 1);
    assert_int_equal(a.delayed, 1);
    ok(apply1(f, cmd_expire(T0 + RET + 1000)));
    a = fixture_attrs(f, "q", T0 + RET + 1000);
    assert_int_equal(a.visible, 1);
    assert_int_equal(a.not_visible, 0);
    assert_int_equal(a.delayed, 0);
    /* The expired lease's handle finds nothing. */
    r = apply1(f, cmd_delete("q", T0 + RET + 2000, h));
    assert_int_equal(r.results[0], KYU_ERR_RECEIPT_INVALID);
    kyu_result_clear(&r);
    /* Nothing comes back when the lease and the delay would have ended. */
    expect_bodies(f, "q", T0 + 2000000, (const char *[]){"fresh", NULL});
}

/* Each queue by its own period; one command expires them all. */
static void test_each_queue_expires_by_its_own_period(void **state)
{
    fixture_t *f = *state;
    create(f, "short", 60);
    create(f, "long", 120);
    send_at(f, "short", T0, "s");
    send_at(f, "long", T0, "l");
    ok(apply1(f, cmd_expire(T0 + RET + 1000)));
    expect_total(f, "short", T0 + RET + 1000, 0);
    expect_total(f, "long", T0 + RET + 1000, 1);
    assert_false(kyu_sm_expiry_due(f->sm, T0 + RET + 1000));
    assert_true(kyu_sm_expiry_due(f->sm, T0 + 2 * RET + 1000));
    ok(apply1(f, cmd_expire(T0 + 2 * RET + 1000)));
    expect_total(f, "long", T0 + 2 * RET + 1000, 0);
}

/* The marks are state: after a restart the same sends expire at the same time. */
/* A dead-letter move keeps the message's seq, which may be below what the dead-letter
 * queue's last expiry went up to: the next expiry must still take it once its period has
 * passed (kyu-sim-kyu found a replica that had run the earlier expiry keeping it, while a
 * restarted one dropped it). */
static void test_a_message_moved_below_an_earlier_expiry_expires_by_the_next(void **state)
{
    fixture_t *f = *state;
    create(f, "dlq", 60);
    kyu_command_t c = cmd_with_redrive(cmd_create("src", -1), &ext, "dlq", 1);
    c.now_ms = T0;
    ok(apply1(f, c));
    send_at(f, "src", T0, "old");
    send_at(f, "dlq", T0 + 2000, "young"); /* a second mark */
    kyu_result_t r = apply1(f, cmd_receive("src", T0 + 1, 1, 0));
    assert_int_equal(r.n_msgs, 1);
    kyu_result_clear(&r);
    /* The dead-letter queue expires up to the second mark: nothing of its own to take. */
    ok(apply1(f, cmd_expire(T0 + RET + 1000)));
    expect_total(f, "dlq", T0 + RET + 1000, 1);
    /* Received past maxReceiveCount: "old" moves to the dead-letter queue, 61 s old. */
    r = apply1(f, cmd_receive("src", T0 + RET + 1200, 1, 0));
    assert_int_equal(r.n_msgs, 0);
    kyu_result_clear(&r);
    expect_total(f, "dlq", T0 + RET + 1200, 2);
    assert_true(kyu_sm_expiry_due(f->sm, T0 + RET + 1500));
    ok(apply1(f, cmd_expire(T0 + RET + 1500)));
    expect_total(f, "dlq", T0 + RET + 1500, 1);
    expect_bodies(f, "dlq", T0 + RET + 1500, (const char *[]){"young", NULL});
}

/* An expiry and a move into the expired queue in one entry: the moved message (older than
 * the period, but moved in after the expiry ran) keeps its records through the range delete
 * after the entry, and across a restart; the next expiry takes it. */
static void test_a_move_after_an_expiry_in_one_entry_keeps_the_moved_message(void **state)
{
    fixture_t *f = *state;
    create(f, "dlq", 60);
    kyu_command_t c = cmd_with_redrive(cmd_create("src", -1), &ext, "dlq", 1);
    c.now_ms = T0;
    ok(apply1(f, c));
    send_at(f, "src", T0, "moved");
    send_at(f, "dlq", T0 + 1, "expired"); /* the same mark */
    kyu_result_t r = apply1(f, cmd_receive("src", T0 + 2, 1, 0));
    assert_int_equal(r.n_msgs, 1);
    kyu_result_clear(&r);
    kyu_command_t entry[2] = {cmd_expire(T0 + RET + 1000),
                              cmd_receive("src", T0 + RET + 1000, 1, 0)};
    kyu_result_t res[2];
    apply_entry(f, entry, 2, res);
    ok(res[0]);
    assert_int_equal(res[1].n_msgs, 0); /* moved */
    ok(res[1]);
    expect_total(f, "dlq", T0 + RET + 1000, 1);
    fixture_reopen(f);
    expect_total(f, "dlq", T0 + RET + 1001, 1);
    expect_bodies(f, "dlq", T0 + RET + 1001, (const char *[]){"moved", NULL});
    /* Past its period in the dead-letter queue too (counted from its send): the next expiry
     * takes it. */
    assert_true(kyu_sm_expiry_due(f->sm, T0 + RET + 1002));
    ok(apply1(f, cmd_expire(T0 + RET + 1002)));
    expect_total(f, "dlq", T0 + RET + 1002, 0);
}

static void test_marks_survive_a_restart(void **state)
{
    fixture_t *f = *state;
    create(f, "q", 60);
    send_at(f, "q", T0, "old");
    send_at(f, "q", T0 + 30000, "young");
    fixture_reopen(f);
    assert_false(kyu_sm_expiry_due(f->sm, T0 + RET));
    ok(apply1(f, cmd_expire(T0 + RET + 1000)));
    expect_total(f, "q", T0 + RET + 1000, 1);
    fixture_reopen(f);
    expect_total(f, "q", T0 + RET + 1000, 1);
    expect_bodies(f, "q", T0 + RET + 1000, (const char *[]){"young", NULL});
}

/* Many marks are merged, oldest first: an old message still expires (later by at most the
 * merged span), a recent one exactly as before, and none early. */
static void test_merged_marks_never_expire_a_message_early(void **state)
{
    fixture_t *f = *state;
    kyu_sm_set_marks_max(f->sm, 8);
    create(f, "q", 60);
    char body[16];
    for (int i = 0; i < 40; i++) {
        snprintf(body, sizeof body, "m%d", i);
        send_at(f, "q", T0 + (uint64_t)i * 1000, body); /* one a second: a mark each */
    }
    /* At each second past the period, at most the messages sent more than 60 s before. */
    uint64_t prev_total = 40;
    for (int s = 0; s <= 45; s++) {
        uint64_t now = T0 + RET + (uint64_t)s * 1000;
        ok(apply1(f, cmd_expire(now)));
        kyu_queue_attrs_t a = fixture_attrs(f, "q", now);
        uint64_t total = (uint64_t)(a.visible + a.not_visible + a.delayed);
        /* messages sent at T0 + i*1000 with i*1000 + 60000 >= now - ... must stay: */
        uint64_t younger = 0;
        for (int i = 0; i < 40; i++)
            younger += T0 + (uint64_t)i * 1000 + RET >= now;
        if (total < younger)
            fail_msg("at +%d s: %llu messages left but %llu are not 60 s old", s,
                     (unsigned long long)total, (unsigned long long)younger);
        assert_true(total <= prev_total);
        prev_total = total;
    }
    assert_int_equal(prev_total, 0); /* the last went within the merged span */
    assert_true(f->sm->marks_n <= 8);
}

/* A purge and an expiry in one entry: the purge's range delete is not cut short. */
static void test_an_expiry_after_a_purge_in_one_entry_keeps_the_purge(void **state)
{
    fixture_t *f = *state;
    create(f, "q", 60);
    send_at(f, "q", T0, "old");
    send_at(f, "q", T0 + 50000, "young");
    kyu_command_t purge = cmd_delete_queue("q");
    purge.type = KYU_CMD_PURGE_QUEUE;
    purge.now_ms = T0 + RET + 1000;
    kyu_command_t cmds[] = {purge, cmd_expire(T0 + RET + 1000)};
    kyu_result_t res[2];
    apply_entry(f, cmds, 2, res);
    for (int i = 0; i < 2; i++)
        ok(res[i]);
    fixture_reopen(f);
    expect_total(f, "q", T0 + RET + 1000, 0);
    expect_bodies(f, "q", T0 + 10 * RET, (const char *[]){NULL});
}

/* A purge, a move into the purged queue, then an expiry of that queue, in one entry: the
 * expiry's range (up to its mark) does not replace the purge's (up to the purge's seq), so a
 * message the purge dropped does not come back after the entry is written, nor after a
 * restart (found by kyu-sim-kyu seed 160, branch w1lease). */
static void test_an_expiry_after_a_purge_and_a_move_in_one_entry_keeps_the_purge(void **state)
{
    fixture_t *f = *state;
    create(f, "dlq", 60);
    kyu_command_t c = cmd_with_redrive(cmd_create("src", -1), &ext, "dlq", 1);
    c.now_ms = T0;
    ok(apply1(f, c));
    send_at(f, "src", T0, "moved");
    send_at(f, "dlq", T0 + 50000, "purged"); /* young: not expired, but purged */
    kyu_result_t r = apply1(f, cmd_receive("src", T0 + 2, 1, 0));
    assert_int_equal(r.n_msgs, 1);
    kyu_result_clear(&r);
    kyu_command_t purge = cmd_delete_queue("dlq");
    purge.type = KYU_CMD_PURGE_QUEUE;
    purge.now_ms = T0 + RET + 1000;
    kyu_command_t entry[3] = {purge, cmd_receive("src", T0 + RET + 1000, 1, 0),
                              cmd_expire(T0 + RET + 1000)};
    kyu_result_t res[3];
    apply_entry(f, entry, 3, res);
    ok(res[0]);
    assert_int_equal(res[1].n_msgs, 0); /* moved into the purged queue, 61 s old */
    ok(res[1]);
    ok(res[2]);
    expect_total(f, "dlq", T0 + RET + 1000, 0);
    fixture_reopen(f);
    expect_total(f, "dlq", T0 + RET + 1001, 0);
    expect_bodies(f, "dlq", T0 + RET + 1001, (const char *[]){NULL});
}

/* An EXPIRE_MESSAGES entry goes through the log's encoding like any command. */
static void test_expire_round_trips_through_the_log_encoding(void **state)
{
    (void)state;
    kyu_command_t c = cmd_expire(T0);
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    kyu_command_encode(&c, &b);
    kyu_command_t d;
    size_t off = 0;
    kyu_err_t err;
    assert_int_equal(kyu_command_decode(b.data, b.size, &off, &d, &err), KYU_OK);
    assert_int_equal(d.type, KYU_CMD_EXPIRE_MESSAGES);
    assert_int_equal(d.now_ms, T0);
    msgpack_sbuffer_destroy(&b);
}

#define T(name) cmocka_unit_test_setup_teardown(name, fixture_setup, fixture_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_messages_past_the_retention_period_expire_and_younger_ones_stay),
        T(test_leased_and_delayed_messages_expire_too),
        T(test_each_queue_expires_by_its_own_period),
        T(test_a_message_moved_below_an_earlier_expiry_expires_by_the_next),
        T(test_a_move_after_an_expiry_in_one_entry_keeps_the_moved_message),
        T(test_marks_survive_a_restart),
        T(test_merged_marks_never_expire_a_message_early),
        T(test_an_expiry_after_a_purge_in_one_entry_keeps_the_purge),
        T(test_an_expiry_after_a_purge_and_a_move_in_one_entry_keeps_the_purge),
        cmocka_unit_test(test_expire_round_trips_through_the_log_encoding),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
