/* Dead-letter queues (broker/op_deadletter.c) and the other queue attributes
 * (broker/queue_attrs.c, op_queue.c): RedrivePolicy checked against the state, a receive
 * past maxReceiveCount moving the message (exactly once, whole, with its history, counters
 * right), chains, a deleted dead-letter queue, DELETE_QUEUE's force, the sources listed. */
#include "command.h"
#include "fixture.h"
#include "ops.h"
#include "queue_attrs.h"
#include "store.h"

#include <stdlib.h>
#include <string.h>

#define T0 1000000 /* a command time, ms */

/* The attributes a command built here points to (borrowed until apply_entry encodes it). */
static kyu_queue_ext_t given[4];

static kyu_command_t create_with_dlq(const char *q, const char *dlq, uint32_t mrc)
{
    return cmd_with_redrive(cmd_create(q, -1), &given[0], dlq, mrc);
}

static kyu_command_t set_redrive(const char *q, const char *dlq, uint32_t mrc)
{
    kyu_command_t c = cmd_with_redrive(cmd_create(q, -1), &given[1], dlq, mrc);
    c.type = KYU_CMD_SET_QUEUE_ATTRIBUTES;
    return c;
}

static kyu_command_t create_allowing(const char *q, uint32_t allow, const char *source)
{
    kyu_command_t c = cmd_create(q, -1);
    kyu_qattrs_defaults(&given[2]);
    given[2].allow = allow;
    if (source) {
        given[2].n_sources = 1;
        snprintf(given[2].sources[0], sizeof given[2].sources[0], "%s", source);
    }
    c.qx = &given[2];
    c.qx_set = KYU_F_REDRIVE_ALLOW;
    return c;
}

/* Sends body to q and receives it n times (a lease of 0 s each: visible again at once). */
static void send_and_receive(fixture_t *f, const char *q, const char *body, int n, uint64_t *now)
{
    ok(apply1(f, cmd_send(q, (*now)++, body)));
    for (int i = 0; i < n; i++) {
        kyu_result_t r = apply1(f, cmd_receive(q, (*now)++, 1, 0));
        if (r.n_msgs != 1 || r.msgs[0].receive_count != (uint32_t)i + 1)
            fail_msg("receive %d of %s: %zu messages, count %u", i + 1, q, r.n_msgs,
                     r.n_msgs ? r.msgs[0].receive_count : 0);
        kyu_result_clear(&r);
    }
}

static void expect_messages(fixture_t *f, const char *q, uint64_t now, int64_t n)
{
    kyu_queue_attrs_t a = fixture_attrs(f, q, now);
    int64_t all = a.visible + a.not_visible + a.delayed;
    if (all != n)
        fail_msg("queue %s: expected %lld messages, has %lld", q, (long long)n, (long long)all);
}

/* ---- the move ---- */

/* A purge of the dead-letter queue and a move into it in one entry: the moved message keeps
 * its seq, below the purge's, and the range delete after the entry keeps its records (they
 * went with the purged ones: a receive then found no record, and a restart lost it). */
static void test_a_move_after_a_purge_of_the_dead_letter_queue_in_one_entry_stays(void **state)
{
    fixture_t *f = *state;
    uint64_t now = T0;
    ok(apply1(f, cmd_create("dlq", -1)));
    ok(apply1(f, create_with_dlq("src", "dlq", 1)));
    send_and_receive(f, "src", "poison", 1, &now);
    ok(apply1(f, cmd_send("dlq", now++, "purged")));
    kyu_command_t entry[2] = {cmd_receive("src", now, 1, 0), cmd_receive("src", now, 1, 0)};
    entry[0].type = KYU_CMD_PURGE_QUEUE;
    entry[0].max = 0;
    snprintf(entry[0].queue, sizeof entry[0].queue, "dlq");
    kyu_result_t res[2];
    apply_entry(f, entry, 2, res);
    ok(res[0]);
    assert_int_equal(res[1].n_msgs, 0); /* moved, not leased */
    ok(res[1]);
    expect_messages(f, "dlq", now, 1);
    for (int restart = 0; restart < 2; restart++) {
        if (restart)
            fixture_reopen(f);
        kyu_result_t r = apply1(f, cmd_receive("dlq", ++now, 1, 0));
        if (r.code != KYU_OK || r.n_msgs != 1)
            fail_msg("%s: expected the moved message from dlq, got %s (%zu messages): %s",
                     restart ? "after a restart" : "at once", kyu_code_name(r.code), r.n_msgs,
                     r.error);
        assert_int_equal(r.body_lens[0], 6);
        assert_memory_equal(r.bodies[0], "poison", 6);
        assert_string_equal(r.msgs[0].dlq_source, "src");
        kyu_result_clear(&r);
    }
}

static void test_a_receive_past_max_receive_count_moves_the_message_whole(void **state)
{
    fixture_t *f = *state;
    uint64_t now = T0;
    ok(apply1(f, cmd_create("dlq", -1)));
    ok(apply1(f, create_with_dlq("src", "dlq", 2)));
    send_and_receive(f, "src", "poison", 2, &now);
    /* The third receive: the count has reached 2, so the message moves and nothing is leased. */
    kyu_result_t r = apply1(f, cmd_receive("src", now, 10, 30));
    assert_int_equal(r.code, KYU_OK);
    assert_int_equal(r.n_msgs, 0);
    kyu_result_clear(&r);
    expect_messages(f, "src", now, 0);
    assert_int_equal(fixture_attrs(f, "dlq", now).visible, 1);
    r = apply1(f, cmd_receive("dlq", now + 5, 1, 30));
    assert_int_equal(r.n_msgs, 1);
    assert_int_equal(r.body_lens[0], 6);
    assert_memory_equal(r.bodies[0], "poison", 6);
    assert_int_equal(r.msgs[0].receive_count, 3); /* its history goes on */
    assert_int_equal(r.msgs[0].first_receive_ms, T0 + 1);
    assert_int_equal(r.msgs[0].sent_ms, T0);
    assert_string_equal(r.msgs[0].dlq_source, "src");
    assert_int_equal(r.msgs[0].dlq_receive_count, 2);
    assert_int_equal(r.msgs[0].dlq_first_receive_ms, T0 + 1);
    assert_int_equal(r.msgs[0].dlq_last_receive_ms, T0 + 2);
    assert_int_equal(r.msgs[0].dlq_moved_ms, now);
    kyu_result_clear(&r);
}

static void test_a_moved_message_keeps_its_id(void **state)
{
    fixture_t *f = *state;
    uint64_t now = T0;
    ok(apply1(f, cmd_create("dlq", -1)));
    ok(apply1(f, create_with_dlq("src", "dlq", 1)));
    kyu_command_t send = cmd_send("src", now++, "m");
    char id[KYU_UUID_LEN + 1];
    memcpy(id, send.ids[0], sizeof id);
    ok(apply1(f, send));
    kyu_result_t r = apply1(f, cmd_receive("src", now++, 1, 0));
    assert_string_equal(r.msgs[0].message_id, id);
    kyu_result_clear(&r);
    r = apply1(f, cmd_receive("src", now++, 1, 0));
    assert_int_equal(r.n_msgs, 0);
    kyu_result_clear(&r);
    r = apply1(f, cmd_receive("dlq", now++, 1, 0));
    assert_int_equal(r.n_msgs, 1);
    assert_string_equal(r.msgs[0].message_id, id);
    /* Its handle in the dead-letter queue deletes it there, once. */
    ok(apply1(f, cmd_delete("dlq", now++, r.msgs[0].handle)));
    expect_messages(f, "dlq", now, 0);
    kyu_result_clear(&r);
}

/* A moved message keeps the digests stored with it at its send (here made up, so that a
 * digest computed again would show), in the dead-letter queue and after a restart. */
static void test_a_moved_message_keeps_its_digests(void **state)
{
    fixture_t *f = *state;
    uint64_t now = T0;
    ok(apply1(f, cmd_create("dlq", -1)));
    ok(apply1(f, create_with_dlq("src", "dlq", 1)));
    kyu_command_t send = cmd_send("src", now++, "m");
    send.has_md5 = true;
    for (int i = 0; i < 16; i++)
        send.md5_body[0][i] = (uint8_t)(0x10 + i);
    ok(apply1(f, send));
    kyu_result_t r = apply1(f, cmd_receive("src", now++, 1, 0));
    assert_string_equal(r.msgs[0].md5_body, "101112131415161718191a1b1c1d1e1f");
    kyu_result_clear(&r);
    r = apply1(f, cmd_receive("src", now++, 1, 0)); /* moves it */
    assert_int_equal(r.n_msgs, 0);
    kyu_result_clear(&r);
    kyu_err_t err;
    assert_int_equal(kyu_sm_flush(f->sm, &err), KYU_OK);
    fixture_reopen(f);
    r = apply1(f, cmd_receive("dlq", now++, 1, 0));
    assert_int_equal(r.n_msgs, 1);
    assert_string_equal(r.msgs[0].dlq_source, "src");
    assert_string_equal(r.msgs[0].md5_body, "101112131415161718191a1b1c1d1e1f");
    assert_string_equal(r.msgs[0].md5_attrs, "");
    kyu_result_clear(&r);
}

/* Every message sent is, after any number of receives, in exactly one of the two queues,
 * and the counters say so; a receive takes the next message when one moves. */
static void test_moves_are_exactly_once_and_never_lose_a_message(void **state)
{
    fixture_t *f = *state;
    uint64_t now = T0;
    ok(apply1(f, cmd_create("dlq", -1)));
    ok(apply1(f, create_with_dlq("src", "dlq", 3)));
    for (int i = 0; i < 30; i++)
        ok(apply1(f, cmd_send("src", now++, "x")));
    size_t leased_last = 0;
    for (int round = 0; round < 6; round++) {
        kyu_result_t r = apply1(f, cmd_receive("src", now++, 10, 0));
        leased_last = r.n_msgs;
        kyu_result_clear(&r);
        expect_messages(f, "src", now, 30 - (int64_t)fixture_attrs(f, "dlq", now).visible);
    }
    (void)leased_last;
    /* 30 messages, 10 per receive: after 3 receives each, the next ones move them. */
    for (int round = 0; round < 20; round++) {
        kyu_result_t r = apply1(f, cmd_receive("src", now++, 10, 0));
        kyu_result_clear(&r);
    }
    expect_messages(f, "src", now, 0);
    assert_int_equal(fixture_attrs(f, "dlq", now).visible, 30);
    /* Draining the dead-letter queue gives 30 distinct messages. */
    kyu_result_t r = apply1(f, cmd_receive("dlq", now++, 10, 600));
    size_t got = r.n_msgs;
    kyu_result_clear(&r);
    for (int i = 0; i < 5; i++) {
        r = apply1(f, cmd_receive("dlq", now++, 10, 600));
        got += r.n_msgs;
        kyu_result_clear(&r);
    }
    assert_int_equal(got, 30);
}

static void test_a_move_and_a_receive_of_the_dead_letter_queue_in_one_entry(void **state)
{
    fixture_t *f = *state;
    uint64_t now = T0;
    ok(apply1(f, cmd_create("dlq", -1)));
    ok(apply1(f, create_with_dlq("src", "dlq", 1)));
    send_and_receive(f, "src", "m", 1, &now);
    kyu_command_t cmds[2] = {cmd_receive("src", now, 1, 0), cmd_receive("dlq", now, 1, 30)};
    kyu_result_t res[2];
    apply_entry(f, cmds, 2, res);
    assert_int_equal(res[0].n_msgs, 0);
    assert_int_equal(res[1].n_msgs, 1);
    assert_string_equal(res[1].msgs[0].dlq_source, "src");
    kyu_result_clear(&res[0]);
    kyu_result_clear(&res[1]);
    expect_messages(f, "src", now, 0);
    assert_int_equal(fixture_attrs(f, "dlq", now).not_visible, 1);
}

static void test_a_moved_message_and_its_provenance_survive_a_restart_and_a_crash(void **state)
{
    fixture_t *f = *state;
    uint64_t now = T0;
    ok(apply1(f, cmd_create("dlq", -1)));
    ok(apply1(f, create_with_dlq("src", "dlq", 1)));
    send_and_receive(f, "src", "m", 1, &now);
    kyu_result_t r = apply1(f, cmd_receive("src", now++, 1, 0));
    kyu_result_clear(&r);
    fixture_reopen(f);
    expect_messages(f, "src", now, 0);
    assert_int_equal(fixture_attrs(f, "dlq", now).visible, 1);
    r = apply1(f, cmd_receive("dlq", now++, 1, 0));
    assert_int_equal(r.n_msgs, 1);
    assert_string_equal(r.msgs[0].dlq_source, "src");
    assert_int_equal(r.msgs[0].dlq_receive_count, 1);
    assert_int_equal(r.msgs[0].dlq_last_receive_ms, T0 + 1);
    assert_int_equal(r.msgs[0].receive_count, 2);
    kyu_result_clear(&r);
}

/* A dead-letter queue whose own RedrivePolicy sends it on: the count goes on, so a message
 * at B's maxReceiveCount moves on at its first receive there. */
static void test_a_dead_letter_queue_with_its_own_redrive_policy_sends_messages_on(void **state)
{
    fixture_t *f = *state;
    uint64_t now = T0;
    ok(apply1(f, cmd_create("c", -1)));
    ok(apply1(f, create_with_dlq("b", "c", 3)));
    ok(apply1(f, create_with_dlq("a", "b", 1)));
    send_and_receive(f, "a", "m", 1, &now);
    kyu_result_t r = apply1(f, cmd_receive("a", now++, 1, 0)); /* a -> b */
    assert_int_equal(r.n_msgs, 0);
    kyu_result_clear(&r);
    r = apply1(f, cmd_receive("b", now++, 1, 0)); /* count 2 in b */
    assert_int_equal(r.n_msgs, 1);
    assert_int_equal(r.msgs[0].receive_count, 2);
    kyu_result_clear(&r);
    r = apply1(f, cmd_receive("b", now++, 1, 0)); /* count 3 */
    assert_int_equal(r.n_msgs, 1);
    kyu_result_clear(&r);
    r = apply1(f, cmd_receive("b", now++, 1, 0)); /* b -> c */
    assert_int_equal(r.n_msgs, 0);
    kyu_result_clear(&r);
    r = apply1(f, cmd_receive("c", now++, 1, 0));
    assert_int_equal(r.n_msgs, 1);
    assert_string_equal(r.msgs[0].dlq_source, "b");
    assert_int_equal(r.msgs[0].dlq_receive_count, 3);
    assert_int_equal(r.msgs[0].receive_count, 4);
    kyu_result_clear(&r);
    expect_messages(f, "a", now, 0);
    expect_messages(f, "b", now, 0);
    expect_messages(f, "c", now, 1);
}

static void test_messages_stay_in_the_source_when_its_dead_letter_queue_is_gone(void **state)
{
    fixture_t *f = *state;
    uint64_t now = T0;
    ok(apply1(f, cmd_create("dlq", -1)));
    ok(apply1(f, create_with_dlq("src", "dlq", 1)));
    kyu_command_t del = cmd_delete_queue("dlq");
    expect_result(apply1(f, del), KYU_ERR_QUEUE_IN_USE, "dead-letter queue of 'src'");
    del.force = true;
    ok(apply1(f, del));
    send_and_receive(f, "src", "m", 3, &now);                     /* leased past maxReceiveCount */
    assert_string_equal(fixture_attrs(f, "src", now).dlq, "dlq"); /* the policy stays (as SQS) */
    /* A queue of that name again: the moves go on. */
    ok(apply1(f, cmd_create("dlq", -1)));
    kyu_result_t r = apply1(f, cmd_receive("src", now++, 1, 0));
    assert_int_equal(r.n_msgs, 0);
    kyu_result_clear(&r);
    expect_messages(f, "dlq", now, 1);
}

static void test_a_receive_moves_at_most_a_bounded_number_of_messages(void **state)
{
    fixture_t *f = *state;
    uint64_t now = T0;
    ok(apply1(f, cmd_create("dlq", -1)));
    ok(apply1(f, create_with_dlq("src", "dlq", 1)));
    int n = KYU_DLQ_MOVES_MAX + 20;
    for (int i = 0; i < n; i++)
        ok(apply1(f, cmd_send("src", now, "x")));
    for (int i = 0; i < n; i += 10) { /* each received once, leased for 1 s */
        kyu_result_t r = apply1(f, cmd_receive("src", now, 10, 1));
        assert_int_equal(r.n_msgs, 10);
        kyu_result_clear(&r);
    }
    now += 1000;
    kyu_result_t r = apply1(f, cmd_receive("src", now, 10, 0));
    assert_int_equal(r.n_msgs, 0);
    kyu_result_clear(&r);
    expect_messages(f, "dlq", now, KYU_DLQ_MOVES_MAX);
    expect_messages(f, "src", now, 20);
    r = apply1(f, cmd_receive("src", now, 10, 0));
    assert_int_equal(r.n_msgs, 0); /* the other 20 move */
    kyu_result_clear(&r);
    expect_messages(f, "dlq", now, n);
}

/* A message leased by a receive with a visibility timeout of 0 is due again at once: the
 * same receive, taking more to make up for moved ones, must not take it twice. */
static void test_a_receive_with_a_zero_timeout_takes_each_message_once(void **state)
{
    fixture_t *f = *state;
    uint64_t now = T0;
    ok(apply1(f, cmd_create("dlq", -1)));
    ok(apply1(f, create_with_dlq("src", "dlq", 2)));
    for (int i = 0; i < 5; i++)
        ok(apply1(f, cmd_send("src", now, "x")));
    kyu_result_t r = apply1(f, cmd_receive("src", now + 1, 10, 0));
    assert_int_equal(r.n_msgs, 5);
    for (size_t i = 0; i < r.n_msgs; i++)
        assert_int_equal(r.msgs[i].receive_count, 1);
    kyu_result_clear(&r);
    r = apply1(f, cmd_receive("src", now + 2, 10, 0));
    assert_int_equal(r.n_msgs, 5);
    kyu_result_clear(&r);
    r = apply1(f, cmd_receive("src", now + 3, 10, 0)); /* all five move */
    assert_int_equal(r.n_msgs, 0);
    kyu_result_clear(&r);
    expect_messages(f, "dlq", now + 3, 5);
}

/* A lease record of 24 bytes (before the latest receive was recorded) loads, and its
 * message moves with a last receive of 0 (not known). */
static void test_a_24_byte_lease_record_loads_and_moves_with_an_unknown_last_receive(void **state)
{
    fixture_t *f = *state;
    uint64_t now = T0;
    ok(apply1(f, cmd_create("dlq", -1)));
    ok(apply1(f, create_with_dlq("src", "dlq", 1)));
    send_and_receive(f, "src", "m", 1, &now);
    fixture_reopen(f);
    /* The message is seq 1 of queue 2 (src): rewrite its lease as 24 bytes. */
    uint8_t k[16], v[24];
    kyu_put_be64(k, 2);
    kyu_put_be64(k + 8, 1);
    kyu_put_be64(v, now - 1); /* visible_at: the lease of 0 s */
    kyu_put_be32(v + 8, 1);
    kyu_put_be32(v + 12, 1);
    kyu_put_be64(v + 16, T0 + 1);
    char *rerr = NULL;
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    rocksdb_put_cf(kyu_store_db(f->store, KYU_CF_LEASES), wo, kyu_store_cf(f->store, KYU_CF_LEASES),
                   (const char *)k, sizeof k, (const char *)v, sizeof v, &rerr);
    rocksdb_writeoptions_destroy(wo);
    assert_null(rerr);
    fixture_reopen(f);
    expect_messages(f, "src", now, 1);
    kyu_result_t r = apply1(f, cmd_receive("src", now++, 1, 0));
    assert_int_equal(r.n_msgs, 0);
    kyu_result_clear(&r);
    r = apply1(f, cmd_receive("dlq", now++, 1, 0));
    assert_int_equal(r.n_msgs, 1);
    assert_int_equal(r.msgs[0].dlq_first_receive_ms, T0 + 1);
    assert_int_equal(r.msgs[0].dlq_last_receive_ms, 0);
    kyu_result_clear(&r);
}

/* ---- RedrivePolicy against the state ---- */

static void test_a_redrive_policy_needs_an_existing_other_queue_and_no_cycle(void **state)
{
    fixture_t *f = *state;
    expect_result(apply1(f, create_with_dlq("a", "missing", 5)), KYU_ERR_INVALID_ARGUMENT,
                  "dead-letter queue 'missing' does not exist");
    assert_false(kyu_sm_queue_exists(f->sm, "a"));
    ok(apply1(f, cmd_create("a", -1)));
    expect_result(apply1(f, set_redrive("a", "a", 5)), KYU_ERR_INVALID_ARGUMENT,
                  "its own dead-letter queue");
    ok(apply1(f, create_with_dlq("b", "a", 5)));
    ok(apply1(f, create_with_dlq("c", "b", 5)));
    expect_result(apply1(f, set_redrive("a", "c", 5)), KYU_ERR_INVALID_ARGUMENT, "cycle");
    assert_string_equal(fixture_attrs(f, "a", T0).dlq, "");
    ok(apply1(f, set_redrive("a", "", 0))); /* removing it is always fine */
}

static void test_the_dead_letter_queues_redrive_allow_policy_is_honoured(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, create_allowing("closed", KYU_REDRIVE_DENY_ALL, NULL)));
    ok(apply1(f, create_allowing("picky", KYU_REDRIVE_BY_QUEUE, "friend")));
    expect_result(apply1(f, create_with_dlq("x", "closed", 5)), KYU_ERR_INVALID_ARGUMENT,
                  "denyAll");
    expect_result(apply1(f, create_with_dlq("x", "picky", 5)), KYU_ERR_INVALID_ARGUMENT,
                  "does not list it");
    ok(apply1(f, create_with_dlq("friend", "picky", 5)));
}

static void test_list_dead_letter_source_queues_names_them_in_order(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, cmd_create("dlq", -1)));
    ok(apply1(f, create_with_dlq("zeta", "dlq", 5)));
    ok(apply1(f, create_with_dlq("alpha", "dlq", 5)));
    ok(apply1(f, cmd_create("other", -1)));
    kyu_op_ctx_t ctx = {.sm = f->sm};
    kyu_request_t req;
    memset(&req, 0, sizeof req);
    req.op = KYU_OP_LIST_DEAD_LETTER_SOURCE_QUEUES;
    snprintf(req.queue, sizeof req.queue, "dlq");
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    kyu_err_t err;
    assert_int_equal(kyu_ops_row(req.op)->answer(&ctx, &req, &rep, &err), KYU_OK);
    assert_int_equal(rep.n_queues, 2);
    assert_string_equal(rep.queues[0], "alpha");
    assert_string_equal(rep.queues[1], "zeta");
    kyu_reply_reset(&rep);
    snprintf(req.queue, sizeof req.queue, "nope");
    assert_int_equal(kyu_ops_row(req.op)->answer(&ctx, &req, &rep, &err), KYU_ERR_NO_SUCH_QUEUE);
    kyu_reply_reset(&rep);
}

static void test_delete_queue_of_a_dead_letter_queue_is_refused_before_proposing(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, cmd_create("dlq", -1)));
    ok(apply1(f, create_with_dlq("src", "dlq", 5)));
    kyu_op_ctx_t ctx = {.sm = f->sm};
    kyu_request_t req;
    memset(&req, 0, sizeof req);
    req.op = KYU_OP_DELETE_QUEUE;
    req.fields = KYU_F_QUEUE;
    snprintf(req.queue, sizeof req.queue, "dlq");
    kyu_err_t err;
    kyu_err_clear(&err);
    assert_int_equal(kyu_ops_row(req.op)->validate(&ctx, &req, NULL, &err), KYU_ERR_QUEUE_IN_USE);
    assert_non_null(strstr(err.msg, "'src'"));
    req.fields |= KYU_F_FORCE;
    assert_int_equal(kyu_ops_row(req.op)->validate(&ctx, &req, NULL, &err), KYU_OK);
    /* force travels in the command */
    kyu_command_t c = cmd_delete_queue("dlq");
    kyu_ops_row(req.op)->build(&ctx, &req, NULL, &c);
    assert_true(c.force);
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    kyu_command_encode(&c, &b);
    size_t off = 0;
    kyu_command_t d;
    assert_int_equal(kyu_command_decode(b.data, b.size, &off, &d, &err), KYU_OK);
    assert_true(d.force);
    msgpack_sbuffer_destroy(&b);
}

#define T(name) cmocka_unit_test_setup_teardown(name, fixture_setup, fixture_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_a_receive_past_max_receive_count_moves_the_message_whole),
        T(test_a_move_after_a_purge_of_the_dead_letter_queue_in_one_entry_stays),
        T(test_a_moved_message_keeps_its_id),
        T(test_a_moved_message_keeps_its_digests),
        T(test_moves_are_exactly_once_and_never_lose_a_message),
        T(test_a_move_and_a_receive_of_the_dead_letter_queue_in_one_entry),
        T(test_a_moved_message_and_its_provenance_survive_a_restart_and_a_crash),
        T(test_a_dead_letter_queue_with_its_own_redrive_policy_sends_messages_on),
        T(test_messages_stay_in_the_source_when_its_dead_letter_queue_is_gone),
        T(test_a_receive_moves_at_most_a_bounded_number_of_messages),
        T(test_a_receive_with_a_zero_timeout_takes_each_message_once),
        T(test_a_24_byte_lease_record_loads_and_moves_with_an_unknown_last_receive),
        T(test_a_redrive_policy_needs_an_existing_other_queue_and_no_cycle),
        T(test_the_dead_letter_queues_redrive_allow_policy_is_honoured),
        T(test_list_dead_letter_source_queues_names_them_in_order),
        T(test_delete_queue_of_a_dead_letter_queue_is_refused_before_proposing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
