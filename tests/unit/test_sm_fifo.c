/* FIFO queues in the state machine (broker/sm_fifo.c, op_message.c): order within a group,
 * a group locked while a message of it is in flight, a receive filling from one group first,
 * deduplication (also after a delete, the window's edge, scope messageGroup), the sequence
 * numbers, ReceiveRequestAttemptId's request key, FIFO dead-letter queues, purge, and all of
 * it across restarts (the state rebuilt from the store). */
#include "command.h"
#include "fixture.h"
#include "ops.h"
#include "queue_attrs.h"

#include <stdlib.h>
#include <string.h>

#define T0 1000000 /* a command time, ms */
#define WINDOW KYU_FIFO_DEDUP_WINDOW_MS

static void ok(kyu_result_t r)
{
    if (r.code != KYU_OK)
        fail_msg("expected OK, got %s: %s", kyu_code_name(r.code), r.error);
    kyu_result_clear(&r);
}

/* A FIFO queue; cbd: ContentBasedDeduplication; scope: DeduplicationScope. */
static kyu_command_t create_fifo(const char *name, bool cbd, uint32_t scope, const char *dlq)
{
    static kyu_queue_ext_t x;
    kyu_qattrs_defaults(&x);
    x.fifo = true;
    x.cbd = cbd;
    x.dedup_scope = scope;
    kyu_command_t c = cmd_create(name, -1);
    c.now_ms = T0;
    c.qx = &x;
    c.qx_set = KYU_F_FIFO | KYU_F_CBD | KYU_F_DEDUP_SCOPE;
    if (dlq) {
        snprintf(x.dlq, sizeof x.dlq, "%s", dlq);
        x.max_receive_count = 2;
        c.qx_set |= KYU_F_REDRIVE;
    }
    return c;
}

static kyu_command_t send_fifo(const char *q, uint64_t now, const char *body, const char *group,
                               const char *did)
{
    kyu_command_t c = cmd_send(q, now, body);
    snprintf(c.group_ids[0], sizeof c.group_ids[0], "%s", group ? group : "");
    snprintf(c.dedup_ids[0], sizeof c.dedup_ids[0], "%s", did ? did : "");
    kyu_md5_body(c.bodies[0], c.body_lens[0], c.md5_body[0]);
    c.has_md5 = true;
    return c;
}

/* Sends body in group with dedup id did (NULL: the body is the id); returns its id. */
static void send1(fixture_t *f, const char *q, uint64_t now, const char *body, const char *group,
                  const char *did, char id[KYU_UUID_LEN + 1], uint64_t *seq)
{
    kyu_result_t r = apply1(f, send_fifo(q, now, body, group, did ? did : body));
    if (r.code != KYU_OK)
        fail_msg("send %s: %s", body, r.error);
    assert_int_equal(r.n_ids, 1);
    if (id)
        memcpy(id, r.ids[0], KYU_UUID_LEN + 1);
    if (seq)
        *seq = r.sequences[0];
    kyu_result_clear(&r);
}

typedef struct {
    size_t n;
    char bodies[KYU_BATCH_MAX][32];
    char handles[KYU_BATCH_MAX][KYU_HANDLE_MAX + 1];
    char groups[KYU_BATCH_MAX][KYU_GROUP_ID_MAX + 1];
    uint64_t seqs[KYU_BATCH_MAX];
} got_t;

static got_t receive(fixture_t *f, const char *q, uint64_t now, uint32_t max, int64_t vt)
{
    got_t g = {0};
    kyu_result_t r = apply1(f, cmd_receive(q, now, max, vt));
    if (r.code != KYU_OK)
        fail_msg("receive: %s", r.error);
    g.n = r.n_msgs;
    for (size_t i = 0; i < r.n_msgs; i++) {
        snprintf(g.bodies[i], sizeof g.bodies[i], "%.*s", (int)r.body_lens[i],
                 (const char *)r.bodies[i]);
        memcpy(g.handles[i], r.msgs[i].handle, sizeof g.handles[i]);
        memcpy(g.groups[i], r.msgs[i].group_id, sizeof g.groups[i]);
        g.seqs[i] = r.msgs[i].sequence;
    }
    kyu_result_clear(&r);
    return g;
}

/* The bodies received, space-separated ("" for none). */
static const char *bodies(const got_t *g)
{
    static char out[512];
    out[0] = '\0';
    for (size_t i = 0; i < g->n; i++)
        snprintf(out + strlen(out), sizeof out - strlen(out), "%s%s", i ? " " : "", g->bodies[i]);
    return out;
}

static void expect(fixture_t *f, const char *q, uint64_t now, uint32_t max, const char *want,
                   got_t *out)
{
    got_t g = receive(f, q, now, max, -1);
    if (strcmp(bodies(&g), want) != 0)
        fail_msg("receive at %llu: expected '%s', got '%s'", (unsigned long long)now, want,
                 bodies(&g));
    if (out)
        *out = g;
}

static void delete_all(fixture_t *f, const char *q, uint64_t now, const got_t *g)
{
    for (size_t i = 0; i < g->n; i++)
        ok(apply1(f, cmd_delete(q, now, g->handles[i])));
}

static uint64_t visible(fixture_t *f, const char *q, uint64_t now)
{
    kyu_queue_attrs_t a;
    kyu_err_t err;
    assert_int_equal(kyu_sm_queue_attributes(f->sm, q, now, &a, &err), KYU_OK);
    return (uint64_t)a.visible;
}

static void test_a_group_is_in_order_and_locked_while_in_flight(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, create_fifo("f.fifo", false, KYU_DEDUP_SCOPE_QUEUE, NULL)));
    send1(f, "f.fifo", T0, "a1", "g1", NULL, NULL, NULL);
    send1(f, "f.fifo", T0, "a2", "g1", NULL, NULL, NULL);
    send1(f, "f.fifo", T0, "b1", "g2", NULL, NULL, NULL);
    send1(f, "f.fifo", T0, "a3", "g1", NULL, NULL, NULL);
    got_t a;
    expect(f, "f.fifo", T0, 1, "a1", &a); /* the group waiting longest first */
    assert_string_equal(a.groups[0], "g1");
    /* g1 is locked while a1 is in flight: only g2's */
    assert_true(kyu_sm_has_visible(f->sm, "f.fifo", T0));
    assert_int_equal(kyu_sm_visible_upto(f->sm, "f.fifo", T0, 10), 1);
    got_t b;
    expect(f, "f.fifo", T0, 10, "b1", &b);
    expect(f, "f.fifo", T0, 10, "", NULL);
    assert_false(kyu_sm_has_visible(f->sm, "f.fifo", T0));
    /* deleted: the rest of g1, in order, together */
    delete_all(f, "f.fifo", T0, &a);
    assert_int_equal(kyu_sm_visible_upto(f->sm, "f.fifo", T0, 10), 2);
    expect(f, "f.fifo", T0, 10, "a2 a3", NULL);
}

static void test_a_receive_fills_from_one_group_then_the_next(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, create_fifo("f.fifo", false, KYU_DEDUP_SCOPE_QUEUE, NULL)));
    const char *sends[][2] = {{"a1", "g1"}, {"b1", "g2"}, {"a2", "g1"},
                              {"c1", "g3"}, {"b2", "g2"}, {"a3", "g1"}};
    for (size_t i = 0; i < 6; i++)
        send1(f, "f.fifo", T0, sends[i][0], sends[i][1], NULL, NULL, NULL);
    expect(f, "f.fifo", T0, 4, "a1 a2 a3 b1", NULL);
    expect(f, "f.fifo", T0, 10, "c1", NULL); /* g1 and g2 in flight */
}

static void test_a_lease_that_runs_out_unlocks_its_group_in_order(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, create_fifo("f.fifo", false, KYU_DEDUP_SCOPE_QUEUE, NULL)));
    send1(f, "f.fifo", T0, "a1", "g1", NULL, NULL, NULL);
    send1(f, "f.fifo", T0, "a2", "g1", NULL, NULL, NULL);
    got_t g = receive(f, "f.fifo", T0, 1, 30);
    assert_string_equal(bodies(&g), "a1");
    assert_int_equal(kyu_sm_next_visible_at(f->sm, "f.fifo"), T0 + 30000);
    expect(f, "f.fifo", T0 + 29999, 10, "", NULL);
    /* a1 again first (its second receive), then a2 */
    expect(f, "f.fifo", T0 + 30000, 10, "a1 a2", NULL);
}

static void test_a_message_made_visible_early_keeps_its_group_locked(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, create_fifo("f.fifo", false, KYU_DEDUP_SCOPE_QUEUE, NULL)));
    send1(f, "f.fifo", T0, "a1", "g1", NULL, NULL, NULL);
    send1(f, "f.fifo", T0, "a2", "g1", NULL, NULL, NULL);
    got_t g;
    expect(f, "f.fifo", T0, 10, "a1 a2", &g);
    /* a2 visible again while a1 is in flight: nothing of g1 is delivered */
    ok(apply1(f, cmd_change_visibility("f.fifo", T0, g.handles[1], 0)));
    expect(f, "f.fifo", T0 + 1, 10, "", NULL);
    ok(apply1(f, cmd_delete("f.fifo", T0 + 1, g.handles[0])));
    expect(f, "f.fifo", T0 + 2, 10, "a2", NULL);
}

static void test_a_duplicate_is_answered_as_the_first_also_after_its_delete(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, create_fifo("f.fifo", false, KYU_DEDUP_SCOPE_QUEUE, NULL)));
    char id1[KYU_UUID_LEN + 1], id2[KYU_UUID_LEN + 1];
    uint64_t s1 = 0, s2 = 0;
    send1(f, "f.fifo", T0, "one", "g1", "d1", id1, &s1);
    assert_true(s1 > 0);
    send1(f, "f.fifo", T0 + 10, "other body", "g2", "d1", id2, &s2); /* scope queue */
    assert_string_equal(id1, id2);
    assert_int_equal(s1, s2);
    assert_int_equal(visible(f, "f.fifo", T0 + 10), 1);
    got_t g;
    expect(f, "f.fifo", T0 + 20, 10, "one", &g);
    assert_int_equal(g.seqs[0], s1);
    delete_all(f, "f.fifo", T0 + 20, &g);
    /* deleted: a duplicate is still answered with its id and not enqueued */
    send1(f, "f.fifo", T0 + WINDOW - 1, "one", "g1", "d1", id2, &s2);
    assert_string_equal(id1, id2);
    assert_int_equal(s1, s2);
    expect(f, "f.fifo", T0 + WINDOW - 1, 10, "", NULL);
    /* the window's edge: 5 minutes after the first send it is a new message */
    send1(f, "f.fifo", T0 + WINDOW, "one", "g1", "d1", id2, &s2);
    assert_string_not_equal(id1, id2);
    assert_true(s2 > s1);
    expect(f, "f.fifo", T0 + WINDOW, 10, "one", NULL);
}

static void test_scope_message_group_deduplicates_within_a_group(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, create_fifo("f.fifo", false, KYU_DEDUP_SCOPE_GROUP, NULL)));
    char a[KYU_UUID_LEN + 1], b[KYU_UUID_LEN + 1], c[KYU_UUID_LEN + 1];
    send1(f, "f.fifo", T0, "x1", "g1", "d", a, NULL);
    send1(f, "f.fifo", T0, "x2", "g2", "d", b, NULL); /* another group: another message */
    send1(f, "f.fifo", T0, "x3", "g1", "d", c, NULL); /* the same group: a duplicate */
    assert_string_not_equal(a, b);
    assert_string_equal(a, c);
    expect(f, "f.fifo", T0, 10, "x1 x2", NULL);
}

static void test_a_batch_deduplicates_its_own_entries_and_numbers_them(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, create_fifo("f.fifo", true, KYU_DEDUP_SCOPE_QUEUE, NULL)));
    kyu_command_t c = send_fifo("f.fifo", T0, "same", "g1", "k1");
    c.n = 3;
    const char *bs[3] = {"same", "same", "third"}, *ds[3] = {"k1", "k1", "k3"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(c.ids[i], sizeof c.ids[i], "00000000-0000-4000-8000-00000000010%zu", i);
        c.bodies[i] = bs[i];
        c.body_lens[i] = strlen(bs[i]);
        kyu_md5_body(bs[i], strlen(bs[i]), c.md5_body[i]);
        snprintf(c.group_ids[i], sizeof c.group_ids[i], "g1");
        snprintf(c.dedup_ids[i], sizeof c.dedup_ids[i], "%s", ds[i]);
    }
    kyu_result_t r = apply1(f, c);
    assert_int_equal(r.code, KYU_OK);
    assert_int_equal(r.n_ids, 3);
    assert_string_equal(r.ids[0], r.ids[1]);
    assert_int_equal(r.sequences[0], r.sequences[1]);
    assert_true(r.sequences[2] > r.sequences[0]);
    kyu_result_clear(&r);
    expect(f, "f.fifo", T0, 10, "same third", NULL);
}

/* ReceiveRequestAttemptId: the frontend gives the RECEIVE a request key of its own; the state
 * machine answers a retry with the same leases, and an attempt that leased nothing keeps no
 * record. */
static kyu_command_t attempt(const char *q, uint64_t now, uint32_t max, uint64_t key)
{
    kyu_command_t c = cmd_receive(q, now, max, -1);
    c.rq_client = 77;
    c.rq_key = key;
    c.attempt = true;
    return c;
}

static void test_an_attempt_id_answers_a_retry_with_the_same_messages(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, create_fifo("f.fifo", false, KYU_DEDUP_SCOPE_QUEUE, NULL)));
    kyu_result_t r = apply1(f, attempt("f.fifo", T0, 10, 1));
    assert_int_equal(r.n_msgs, 0); /* empty: not remembered */
    kyu_result_clear(&r);
    send1(f, "f.fifo", T0, "a1", "g1", NULL, NULL, NULL);
    send1(f, "f.fifo", T0, "a2", "g1", NULL, NULL, NULL);
    r = apply1(f, attempt("f.fifo", T0 + 1, 10, 1));
    assert_int_equal(r.n_msgs, 2);
    char h0[KYU_HANDLE_MAX + 1];
    memcpy(h0, r.msgs[0].handle, sizeof h0);
    kyu_result_clear(&r);
    r = apply1(f, attempt("f.fifo", T0 + 2, 10, 1));
    assert_int_equal(r.n_msgs, 2);
    assert_string_equal(r.msgs[0].handle, h0);
    assert_int_equal(r.msgs[0].receive_count, 1); /* not received again */
    kyu_result_clear(&r);
}

static void test_fifo_state_survives_a_restart_and_a_crash(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, create_fifo("f.fifo", false, KYU_DEDUP_SCOPE_GROUP, NULL)));
    char id1[KYU_UUID_LEN + 1], id2[KYU_UUID_LEN + 1];
    uint64_t s1 = 0, s2 = 0;
    send1(f, "f.fifo", T0, "a1", "g1", "d1", id1, &s1);
    send1(f, "f.fifo", T0, "a2", "g1", "d2", NULL, NULL);
    send1(f, "f.fifo", T0, "b1", "g2", "d1", NULL, NULL);
    got_t a;
    expect(f, "f.fifo", T0, 1, "a1", &a);
    for (int round = 0; round < 2; round++) {
        fixture_reopen(f);
        /* g1 still locked by a1's lease; the dedup record still there */
        send1(f, "f.fifo", T0 + 10, "a1", "g1", "d1", id2, &s2);
        assert_string_equal(id1, id2);
        assert_int_equal(s1, s2);
        assert_int_equal(kyu_sm_visible_upto(f->sm, "f.fifo", T0 + 10, 10), 1);
    }
    expect(f, "f.fifo", T0 + 10, 10, "b1", NULL);
    delete_all(f, "f.fifo", T0 + 10, &a);
    fixture_reopen(f);
    expect(f, "f.fifo", T0 + 20, 10, "a2", NULL);
}

static void
test_a_fifo_queue_takes_only_a_fifo_dead_letter_queue_and_moves_keep_groups(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, cmd_create("std", -1)));
    kyu_result_t r = apply1(f, create_fifo("f.fifo", false, KYU_DEDUP_SCOPE_QUEUE, "std"));
    assert_int_equal(r.code, KYU_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(r.error, "FIFO"));
    kyu_result_clear(&r);
    assert_false(kyu_sm_queue_exists(f->sm, "f.fifo"));
    ok(apply1(f, create_fifo("d.fifo", false, KYU_DEDUP_SCOPE_QUEUE, NULL)));
    ok(apply1(f, create_fifo("f.fifo", false, KYU_DEDUP_SCOPE_QUEUE, "d.fifo")));
    send1(f, "f.fifo", T0, "a1", "g1", NULL, NULL, NULL);
    send1(f, "f.fifo", T0, "a2", "g1", NULL, NULL, NULL);
    /* maxReceiveCount 2: a1 received twice (lease 0), then moved; a2 comes next */
    for (int i = 0; i < 2; i++) {
        got_t g = receive(f, "f.fifo", T0 + 1 + i, 1, 0);
        assert_string_equal(bodies(&g), "a1");
    }
    expect(f, "f.fifo", T0 + 3, 1, "a2", NULL);
    got_t d;
    expect(f, "d.fifo", T0 + 3, 10, "a1", &d);
    assert_string_equal(d.groups[0], "g1");
    /* in the dead-letter queue too, its group is locked while it is in flight */
    fixture_reopen(f);
    assert_int_equal(kyu_sm_visible_upto(f->sm, "d.fifo", T0 + 4, 10), 0);
}

static void test_a_purge_forgets_the_groups_not_the_deduplication(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, create_fifo("f.fifo", false, KYU_DEDUP_SCOPE_QUEUE, NULL)));
    char id1[KYU_UUID_LEN + 1], id2[KYU_UUID_LEN + 1];
    send1(f, "f.fifo", T0, "a1", "g1", "d1", id1, NULL);
    expect(f, "f.fifo", T0, 10, "a1", NULL);
    kyu_command_t p = cmd_receive("f.fifo", T0 + 1, 1, -1);
    p.type = KYU_CMD_PURGE_QUEUE;
    ok(apply1(f, p));
    send1(f, "f.fifo", T0 + 2, "a1", "g1", "d1", id2, NULL);
    assert_string_equal(id1, id2);
    send1(f, "f.fifo", T0 + 2, "a2", "g1", "d2", NULL, NULL);
    expect(f, "f.fifo", T0 + 3, 10, "a2", NULL); /* g1 not locked by the purged a1 */
}

static void test_a_queue_deleted_and_created_again_forgets_its_deduplication(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, create_fifo("f.fifo", false, KYU_DEDUP_SCOPE_QUEUE, NULL)));
    char id1[KYU_UUID_LEN + 1], id2[KYU_UUID_LEN + 1];
    send1(f, "f.fifo", T0, "a1", "g1", "d1", id1, NULL);
    ok(apply1(f, cmd_delete_queue("f.fifo")));
    ok(apply1(f, create_fifo("f.fifo", false, KYU_DEDUP_SCOPE_QUEUE, NULL)));
    fixture_reopen(f);
    send1(f, "f.fifo", T0 + 1, "a1", "g1", "d1", id2, NULL);
    assert_string_not_equal(id1, id2);
    expect(f, "f.fifo", T0 + 2, 10, "a1", NULL);
}

static void test_a_standard_queue_keeps_a_group_id_and_ignores_order(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, cmd_create("q", -1)));
    ok(apply1(f, send_fifo("q", T0, "a1", "g1", NULL)));
    ok(apply1(f, send_fifo("q", T0, "a2", "g1", NULL)));
    got_t g;
    expect(f, "q", T0, 1, "a1", &g);
    assert_string_equal(g.groups[0], "g1");
    assert_int_equal(g.seqs[0], 0); /* no SequenceNumber on a standard queue */
    expect(f, "q", T0, 1, "a2", NULL);
}

/* A delete that ends a group's lock wakes the receives parked on the queue (sm_wake.c). */
static void test_a_delete_that_unlocks_a_group_wakes_its_queue(void **state)
{
    fixture_t *f = *state;
    kyu_sm_watch_visible(f->sm);
    ok(apply1(f, create_fifo("f.fifo", false, KYU_DEDUP_SCOPE_QUEUE, NULL)));
    send1(f, "f.fifo", T0, "a1", "g1", NULL, NULL, NULL);
    send1(f, "f.fifo", T0, "a2", "g1", NULL, NULL, NULL);
    got_t g;
    expect(f, "f.fifo", T0, 1, "a1", &g);
    char names[4][KYU_NAME_MAX + 1];
    while (kyu_sm_take_woken(f->sm, names, 4) == 4)
        ;
    assert_false(kyu_sm_has_visible(f->sm, "f.fifo", T0));
    delete_all(f, "f.fifo", T0, &g);
    assert_int_equal(kyu_sm_take_woken(f->sm, names, 4), 1);
    assert_string_equal(names[0], "f.fifo");
    assert_true(kyu_sm_has_visible(f->sm, "f.fifo", T0));
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, fixture_setup, fixture_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_a_group_is_in_order_and_locked_while_in_flight),
        T(test_a_receive_fills_from_one_group_then_the_next),
        T(test_a_lease_that_runs_out_unlocks_its_group_in_order),
        T(test_a_message_made_visible_early_keeps_its_group_locked),
        T(test_a_duplicate_is_answered_as_the_first_also_after_its_delete),
        T(test_scope_message_group_deduplicates_within_a_group),
        T(test_a_batch_deduplicates_its_own_entries_and_numbers_them),
        T(test_an_attempt_id_answers_a_retry_with_the_same_messages),
        T(test_fifo_state_survives_a_restart_and_a_crash),
        T(test_a_fifo_queue_takes_only_a_fifo_dead_letter_queue_and_moves_keep_groups),
        T(test_a_purge_forgets_the_groups_not_the_deduplication),
        T(test_a_queue_deleted_and_created_again_forgets_its_deduplication),
        T(test_a_standard_queue_keeps_a_group_id_and_ignores_order),
        T(test_a_delete_that_unlocks_a_group_wakes_its_queue),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
