/* FIFO queues in the state machine (broker/sm_fifo.c, op_message.c): order within a group,
 * a group locked while a message of it is in flight, a receive filling from one group first,
 * deduplication (also after a delete, the window's edge, scope messageGroup), the sequence
 * numbers, ReceiveRequestAttemptId's request key, FIFO dead-letter queues, purge, and all of
 * it across restarts (the state rebuilt from the store); the ready groups' index (many groups,
 * every path that changes a group, checked against a scan of every group). */
#include "command.h"
#include "fixture.h"
#include "ops.h"
#include "queue_attrs.h"
#include "sm_internal.h"

#include <stdlib.h>
#include <string.h>

#define T0 1000000 /* a command time, ms */
#define WINDOW KYU_FIFO_DEDUP_WINDOW_MS

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

/* Sends body in group with dedup id did (NULL: the body is the id); returns its id. */
static void send1(fixture_t *f, const char *q, uint64_t now, const char *body, const char *group,
                  const char *did, char id[KYU_UUID_LEN + 1], uint64_t *seq)
{
    kyu_result_t r = apply1(f, cmd_send_fifo(q, now, body, group, did ? did : body));
    if (r.code != KYU_OK)
        fail_msg("send %s: %s", body, r.error);
    assert_int_equal(r.n_ids, 1);
    if (id)
        memcpy(id, r.ids[0], KYU_UUID_LEN + 1);
    if (seq)
        *seq = r.sequences[0];
    kyu_result_clear(&r);
}

static void expect(fixture_t *f, const char *q, uint64_t now, uint32_t max, const char *want,
                   got_t *out)
{
    got_t g = fixture_receive(f, q, now, max, -1);
    if (strcmp(got_bodies(&g), want) != 0)
        fail_msg("receive at %llu: expected '%s', got '%s'", (unsigned long long)now, want,
                 got_bodies(&g));
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
    return (uint64_t)fixture_attrs(f, q, now).visible;
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
    got_t g = fixture_receive(f, "f.fifo", T0, 1, 30);
    assert_string_equal(got_bodies(&g), "a1");
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
    kyu_command_t c = cmd_send_fifo("f.fifo", T0, "same", "g1", "k1");
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
        got_t g = fixture_receive(f, "f.fifo", T0 + 1 + i, 1, 0);
        assert_string_equal(got_bodies(&g), "a1");
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
    ok(apply1(f, cmd_send_fifo("q", T0, "a1", "g1", NULL)));
    ok(apply1(f, cmd_send_fifo("q", T0, "a2", "g1", NULL)));
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

/* ---- the ready groups' index (sm_fifo.c's top) ---- */

static queue_t *queue_of(fixture_t *f, const char *name)
{
    return zhashx_lookup(f->sm->queues, name);
}

/* The index agrees with a scan of every group of q (if it exists), at now and later. */
static void check_index(fixture_t *f, const char *name, uint64_t now)
{
    queue_t *q = queue_of(f, name);
    if (!q)
        return;
    const uint64_t at[] = {now, now + 999, now + 5000, now + 600000};
    for (size_t i = 0; i < sizeof at / sizeof at[0]; i++)
        if (!kyu_sm_fifo_check(q, at[i]))
            fail_msg("%s: the ready index differs from a scan at %llu (+%llu)", name,
                     (unsigned long long)now, (unsigned long long)(at[i] - now));
}

#define MANY 3000

/* Many groups, each sent in an order its name does not give: receives take them in the
 * order of their first message, one group locked while in flight, also after a restart. */
static void test_many_groups_are_taken_in_order_of_their_first_message(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, create_fifo("f.fifo", false, KYU_DEDUP_SCOPE_QUEUE, NULL)));
    char body[32], group[32];
    for (int i = 0; i < MANY; i++) { /* group (i * 7919) % MANY: a permutation */
        int g = (i * 7919) % MANY;
        snprintf(body, sizeof body, "m%d", g);
        snprintf(group, sizeof group, "g%d", g);
        send1(f, "f.fifo", T0, body, group, NULL, NULL, NULL);
        snprintf(body, sizeof body, "n%d", g);
        send1(f, "f.fifo", T0, body, group, NULL, NULL, NULL);
    }
    assert_int_equal(kyu_sm_fifo_groups(queue_of(f, "f.fifo")), MANY);
    check_index(f, "f.fifo", T0);
    /* each receive of 3: the i-th group's two messages and the next one's first; the next
     * one is then locked (in flight), so the next receive starts at the group after it */
    for (int i = 0, round = 0; i < MANY; i += 2, round++) {
        got_t g = fixture_receive(f, "f.fifo", T0, 3, 60);
        char want[3][32];
        snprintf(want[0], sizeof want[0], "m%d", (i * 7919) % MANY);
        snprintf(want[1], sizeof want[1], "n%d", (i * 7919) % MANY);
        snprintf(want[2], sizeof want[2], "m%d", ((i + 1) * 7919) % MANY);
        assert_int_equal(g.n, 3);
        for (size_t k = 0; k < 3; k++)
            if (strcmp(g.bodies[k], want[k]) != 0)
                fail_msg("receive %d: message %zu is %s, expected %s", round, k, g.bodies[k],
                         want[k]);
        if (round % 300 == 0) { /* the index rebuilt at load makes the same choices */
            fixture_reopen(f);
            check_index(f, "f.fifo", T0);
        }
    }
    /* all in flight: nothing ready until the leases end, then the groups again, in order */
    assert_false(kyu_sm_has_visible(f->sm, "f.fifo", T0 + 59999));
    assert_int_equal(kyu_sm_next_visible_at(f->sm, "f.fifo"), T0 + 60000);
    fixture_reopen(f);
    check_index(f, "f.fifo", T0 + 60000);
    got_t g = fixture_receive(f, "f.fifo", T0 + 60000, 2, 60);
    snprintf(body, sizeof body, "m%d", 0);
    assert_string_equal(g.bodies[0], body);
    assert_int_equal(kyu_sm_visible_upto(f->sm, "f.fifo", T0 + 60000, 100000), 2 * MANY - 2);
}

/* A delayed head keeps its group back until its delay ends; a group's place is its first
 * message's seq, not the time it became ready. */
static void test_a_delayed_first_message_holds_its_group_back_until_it_is_due(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, create_fifo("f.fifo", false, KYU_DEDUP_SCOPE_QUEUE, NULL)));
    kyu_command_t c = cmd_send_fifo("f.fifo", T0, "a1", "g1", "a1");
    c.has_msg_delay[0] = true;
    c.msg_delay_ms[0] = 5000;
    ok(apply1(f, c));
    send1(f, "f.fifo", T0, "a2", "g1", NULL, NULL, NULL);
    send1(f, "f.fifo", T0, "b1", "g2", NULL, NULL, NULL);
    send1(f, "f.fifo", T0, "c1", "g3", NULL, NULL, NULL);
    check_index(f, "f.fifo", T0);
    assert_int_equal(kyu_sm_visible_upto(f->sm, "f.fifo", T0, 10), 2);
    got_t b;
    expect(f, "f.fifo", T0, 1, "b1", &b);
    fixture_reopen(f);
    check_index(f, "f.fifo", T0 + 1);
    assert_int_equal(kyu_sm_next_visible_at(f->sm, "f.fifo"), 0); /* g3 ready */
    expect(f, "f.fifo", T0 + 1, 1, "c1", NULL);
    assert_false(kyu_sm_has_visible(f->sm, "f.fifo", T0 + 4999));
    assert_int_equal(kyu_sm_next_visible_at(f->sm, "f.fifo"), T0 + 5000);
    ok(apply1(f, cmd_change_visibility("f.fifo", T0 + 2, b.handles[0], 0)));
    check_index(f, "f.fifo", T0 + 2);
    /* both ready at the delay's end: g1 first (its first message is the oldest) */
    expect(f, "f.fifo", T0 + 5000, 10, "a1 a2 b1", NULL);
}

/* A tiny PRNG: the same run every time. */
static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

#define POOL 64

/* Every path that changes a group, at random over many groups, the index checked against a
 * scan of every group after each step: sends (some delayed), receives, deletes,
 * change-visibility, leases running out, dead-letter moves (both queues), purges, a queue
 * deleted and made again, restarts, crashes and the state loaded again in place (as a
 * snapshot's install does). */
static void test_the_ready_index_agrees_with_a_scan_through_every_path(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, create_fifo("d.fifo", false, KYU_DEDUP_SCOPE_QUEUE, NULL)));
    ok(apply1(f, create_fifo("f.fifo", false, KYU_DEDUP_SCOPE_QUEUE, "d.fifo")));
    uint64_t rs = 0x9e3779b97f4a7c15ULL, now = T0;
    char pool[POOL][KYU_HANDLE_MAX + 1];
    char pool_q[POOL][8];
    size_t np = 0;
    uint64_t sent = 0, taken = 0;
    size_t most = 0, reloads = 0;
    bool moved_groups = false;
    for (int step = 0; step < 4000; step++) {
        uint64_t r = rng_next(&rs);
        unsigned op = (unsigned)(r % 1000);
        char body[32], group[32];
        if (op < 450) { /* a send, 1 in 8 delayed */
            snprintf(body, sizeof body, "s%llu", (unsigned long long)sent++);
            snprintf(group, sizeof group, "g%llu", (unsigned long long)((r >> 10) % 2000));
            kyu_command_t c = cmd_send_fifo("f.fifo", now, body, group, body);
            if ((r >> 20) % 8 == 0) {
                c.has_msg_delay[0] = true;
                c.msg_delay_ms[0] = (r >> 24) % 4000;
            }
            ok(apply1(f, c));
        } else if (op < 650) { /* a receive, from either queue */
            const char *qn = (r >> 10) % 5 == 0 ? "d.fifo" : "f.fifo";
            got_t g = fixture_receive(f, qn, now, 1 + (uint32_t)((r >> 14) % 10),
                                      (int64_t)((r >> 20) % 4));
            taken += g.n;
            for (size_t k = 0; k < g.n; k++) {
                size_t at = np < POOL ? np++ : (size_t)((r >> (k + 30)) % POOL);
                memcpy(pool[at], g.handles[k], sizeof pool[at]);
                snprintf(pool_q[at], sizeof pool_q[at], "%s", qn);
            }
        } else if (op < 800 && np > 0) { /* a delete (a stale handle: refused, no change) */
            size_t at = (size_t)((r >> 10) % np);
            kyu_result_t res = apply1(f, cmd_delete(pool_q[at], now, pool[at]));
            kyu_result_clear(&res);
            memcpy(pool[at], pool[--np], sizeof pool[at]);
            memcpy(pool_q[at], pool_q[np], sizeof pool_q[at]);
        } else if (op < 880 && np > 0) { /* change-visibility, 0..2 s */
            size_t at = (size_t)((r >> 10) % np);
            kyu_result_t res = apply1(
                f, cmd_change_visibility(pool_q[at], now, pool[at], (int64_t)((r >> 20) % 3)));
            kyu_result_clear(&res);
        } else if (op < 990) { /* time goes on: leases and delays run out */
            now += (r >> 10) % 1500;
        } else if (op < 992) { /* a purge */
            kyu_command_t p = cmd_receive((r >> 10) % 2 ? "f.fifo" : "d.fifo", now, 1, -1);
            p.type = KYU_CMD_PURGE_QUEUE;
            ok(apply1(f, p));
        } else if (op < 993) { /* a queue deleted and made again */
            kyu_command_t d = cmd_delete_queue((r >> 10) % 2 ? "f.fifo" : "d.fifo");
            d.force = true;
            ok(apply1(f, d));
            if ((r >> 10) % 2)
                ok(apply1(f, create_fifo("f.fifo", false, KYU_DEDUP_SCOPE_QUEUE, "d.fifo")));
            else
                ok(apply1(f, create_fifo("d.fifo", false, KYU_DEDUP_SCOPE_QUEUE, NULL)));
        } else if (op < 996) {
            fixture_reopen(f);
        } else if (op < 998) { /* the state loaded again in place, as a snapshot's install */
            kyu_err_t err = {0};
            assert_int_equal(kyu_sm_flush(f->sm, &err), KYU_OK);
            assert_int_equal(kyu_sm_reload(f->sm, &err), KYU_OK);
            reloads++;
        } else {
            fixture_crash(f); /* the entries not written are lost: applied again from there */
            f->index = kyu_sm_applied_index(f->sm);
        }
        check_index(f, "f.fifo", now);
        check_index(f, "d.fifo", now);
        size_t ng = kyu_sm_fifo_groups(queue_of(f, "f.fifo"));
        most = ng > most ? ng : most;
        moved_groups = moved_groups || kyu_sm_fifo_groups(queue_of(f, "d.fifo")) > 0;
    }
    assert_true(sent > 1000);
    assert_true(taken > 500);
    assert_true(most > 60);    /* many groups at once (99 in this run) */
    assert_true(moved_groups); /* dead-letter moves happened */
    assert_true(reloads > 0);
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
        T(test_many_groups_are_taken_in_order_of_their_first_message),
        T(test_a_delayed_first_message_holds_its_group_back_until_it_is_due),
        T(test_the_ready_index_agrees_with_a_scan_through_every_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
