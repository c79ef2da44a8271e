/* SEND and RECEIVE (broker/op_message.c).
 * Per-message delay: a message's own DelaySeconds or deliver-at replaces the queue's
 * DelaySeconds both ways, is range checked before it is proposed, becomes a delay relative to
 * the command's time at the leader, is encoded in the log (and SEND entries written before it
 * decode as before), and survives a restart.
 * Message attributes: checked per message before anything is proposed (and counted in the
 * message size), sorted by name by the leader, kept in the message record (a record without
 * attributes is as before them), returned by RECEIVE with the MD5s SQS computes, across
 * restarts and crashes.
 * The in-flight limit on RECEIVE: in apply, before proposing, and in the log. */
#include "command.h"
#include "fixture.h"
#include "ops.h"
#include "store.h"

#include <rocksdb/c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define T0 1000000 /* a command time, ms */

/* A queue with DelaySeconds delay (0: none). */
static kyu_command_t cmd_create_delayed(const char *q, uint32_t delay)
{
    kyu_command_t c = cmd_create(q, -1);
    c.now_ms = T0;
    c.has_delay = true;
    c.delay = delay;
    return c;
}

/* Receives at now, expects exactly the bodies given (NULL-terminated), in order, and deletes
 * them. */
static void receive_bodies(fixture_t *f, uint64_t now, uint32_t max, const char *const *bodies)
{
    expect_first_receive(f, now, max, bodies, true);
}

static int64_t delayed(fixture_t *f, uint64_t now)
{
    return fixture_attrs(f, "q", now).delayed;
}

/* ---- apply ---- */

static void test_a_message_delay_hides_it_until_it_ends(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, cmd_create_delayed("q", 0)));
    ok(apply1(f, cmd_send_delayed("q", T0, "late", 30000)));
    ok(apply1(f, cmd_send("q", T0, "now")));
    assert_int_equal(delayed(f, T0), 1);
    receive_bodies(f, T0, 10, (const char *[]){"now", NULL});
    receive_bodies(f, T0 + 29999, 10, (const char *[]){NULL});
    receive_bodies(f, T0 + 30000, 10, (const char *[]){"late", NULL});
}

static void test_a_message_delay_overrides_a_longer_queue_delay(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, cmd_create_delayed("q", 60)));
    ok(apply1(f, cmd_send_delayed("q", T0, "five", 5000)));
    receive_bodies(f, T0 + 5000, 10, (const char *[]){"five", NULL});
}

static void test_a_message_delay_overrides_a_shorter_queue_delay(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, cmd_create_delayed("q", 5)));
    ok(apply1(f, cmd_send_delayed("q", T0, "sixty", 60000)));
    ok(apply1(f, cmd_send("q", T0, "queue")));
    receive_bodies(f, T0 + 5000, 10, (const char *[]){"queue", NULL});
    receive_bodies(f, T0 + 59999, 10, (const char *[]){NULL});
    receive_bodies(f, T0 + 60000, 10, (const char *[]){"sixty", NULL});
}

/* SQS: a per-message DelaySeconds of 0 on a delayed queue delivers the message at once. */
static void test_an_explicit_zero_delay_on_a_delayed_queue_is_visible_at_once(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, cmd_create_delayed("q", 900)));
    ok(apply1(f, cmd_send_delayed("q", T0, "zero", 0)));
    ok(apply1(f, cmd_send("q", T0, "queue")));
    assert_int_equal(delayed(f, T0), 1);
    receive_bodies(f, T0, 10, (const char *[]){"zero", NULL});
}

static void check_delays_across(fixture_t *f, bool restart)
{
    ok(apply1(f, cmd_create_delayed("q", 0)));
    ok(apply1(f, cmd_send_delayed("q", T0, "d4", 4 * 86400 * 1000ull)));
    ok(apply1(f, cmd_send_delayed("q", T0, "d10", 10000)));
    if (restart)
        fixture_reopen(f);
    assert_int_equal(delayed(f, T0 + 1), 2);
    receive_bodies(f, T0 + 9999, 10, (const char *[]){NULL});
    receive_bodies(f, T0 + 10000, 10, (const char *[]){"d10", NULL});
    receive_bodies(f, T0 + 4 * 86400 * 1000ull - 1, 10, (const char *[]){NULL});
    receive_bodies(f, T0 + 4 * 86400 * 1000ull, 10, (const char *[]){"d4", NULL});
}

static void test_message_delays_up_to_four_days_hold(void **state)
{
    check_delays_across(*state, false);
}

static void test_message_delays_survive_a_restart(void **state)
{
    check_delays_across(*state, true);
}

/* ---- the log encoding ---- */

/* command_round_trip, the decoded command pointing into b (bodies, attributes): the caller destroys
 * b once done with it. */
static kyu_command_t round_trip_in(const kyu_command_t *c, msgpack_sbuffer *b)
{
    msgpack_sbuffer_init(b);
    kyu_command_encode(c, b);
    size_t off = 0;
    kyu_err_t err;
    kyu_command_t d;
    assert_int_equal(kyu_command_decode(b->data, b->size, &off, &d, &err), KYU_OK);
    assert_int_equal(off, b->size);
    return d;
}

static void test_message_delays_round_trip_through_the_log_encoding(void **state)
{
    (void)state;
    kyu_command_t c = cmd_send_delayed("q", T0, "a", 0);
    c.n = 3;
    memcpy(c.ids[1], c.ids[0], sizeof c.ids[0]);
    memcpy(c.ids[2], c.ids[0], sizeof c.ids[0]);
    c.bodies[1] = c.bodies[2] = "b";
    c.body_lens[1] = c.body_lens[2] = 1;
    c.has_msg_delay[1] = true;
    c.msg_delay_ms[1] = KYU_DELIVER_AT_MAX_S * 1000ull;
    kyu_command_t d = command_round_trip(&c);
    assert_int_equal(d.n, 3);
    assert_true(d.has_msg_delay[0]);
    assert_int_equal(d.msg_delay_ms[0], 0);
    assert_true(d.has_msg_delay[1]);
    assert_int_equal(d.msg_delay_ms[1], KYU_DELIVER_AT_MAX_S * 1000ull);
    assert_false(d.has_msg_delay[2]);
}

/* A SEND entry: items [[id, body]] as written before per-message delays, or with a delay. */
static void pack_send(msgpack_sbuffer *b, int with_delay, uint64_t delay_ms)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, b, msgpack_sbuffer_write);
    pack_command_head(&pk, KYU_CMD_SEND, T0, "q", -1, 1);
    msgpack_pack_array(&pk, 1);
    msgpack_pack_array(&pk, with_delay ? 3 : 2);
    kyu_mp_pack_str(&pk, "00000000-0000-4000-8000-000000000001");
    msgpack_pack_bin(&pk, 3);
    msgpack_pack_bin_body(&pk, "old", 3);
    if (with_delay)
        msgpack_pack_uint64(&pk, delay_ms);
}

static void test_an_old_send_entry_decodes_and_takes_the_queues_delay(void **state)
{
    fixture_t *f = *state;
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    pack_send(&b, 0, 0);
    size_t off = 0;
    kyu_err_t err;
    kyu_command_t d;
    assert_int_equal(kyu_command_decode(b.data, b.size, &off, &d, &err), KYU_OK);
    assert_int_equal(d.n, 1);
    assert_false(d.has_msg_delay[0]);
    ok(apply1(f, cmd_create_delayed("q", 10)));
    ok(apply1(f, d));
    msgpack_sbuffer_destroy(&b);
    receive_bodies(f, T0 + 9999, 10, (const char *[]){NULL});
    receive_bodies(f, T0 + 10000, 10, (const char *[]){"old", NULL});
}

static void test_a_send_entry_with_a_delay_over_the_cap_is_malformed(void **state)
{
    (void)state;
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    pack_send(&b, 1, KYU_DELIVER_AT_MAX_S * 1000ull + 1);
    size_t off = 0;
    kyu_err_t err;
    kyu_command_t d;
    assert_int_equal(kyu_command_decode(b.data, b.size, &off, &d, &err), KYU_ERR_MALFORMED);
    msgpack_sbuffer_destroy(&b);
}

/* ---- validation and the leader's conversion ---- */

static kyu_request_t send_request(const char *q)
{
    kyu_request_t r;
    memset(&r, 0, sizeof r);
    r.op = KYU_OP_SEND;
    r.fields = KYU_F_QUEUE;
    snprintf(r.queue, sizeof r.queue, "%s", q);
    return r;
}

static kyu_code_t validate(fixture_t *f, const kyu_request_t *req, kyu_err_t *err)
{
    kyu_op_ctx_t ctx = {.sm = f->sm, .max_body = 1 << 20};
    kyu_body_t b[] = {{"x", 1}};
    kyu_bodies_t bodies = {b, 1};
    kyu_err_clear(err);
    return kyu_ops_row(req->op)->validate(&ctx, req, &bodies, err);
}

static void test_a_message_delay_over_900_is_refused_naming_the_field(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, cmd_create_delayed("q", 0)));
    kyu_err_t err;
    kyu_request_t r = send_request("q");
    r.fields |= KYU_F_DELAY;
    r.delay = 901;
    expect_error(validate(f, &r, &err), err.msg, KYU_ERR_INVALID_ARGUMENT,
                 "DelaySeconds must be 0 to 900 seconds, not 901");
    r.delay = 900;
    assert_int_equal(validate(f, &r, &err), KYU_OK);
}

/* Past the queue's MessageRetentionPeriod (4 days by default) it would expire first. */
static void test_a_deliver_at_past_four_days_is_refused(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, cmd_create_delayed("q", 0))); /* the state machine's time: T0 */
    kyu_err_t err;
    kyu_request_t r = send_request("q");
    r.fields |= KYU_F_DELIVER_AT;
    r.deliver_at_ms = T0 + KYU_RETENTION_DEFAULT * 1000ull + 1000;
    expect_error(validate(f, &r, &err), err.msg, KYU_ERR_INVALID_ARGUMENT,
                 "deliver-at must be at most 345600 seconds after the send (queue 'q's "
                 "MessageRetentionPeriod)");
    r.deliver_at_ms = T0 + KYU_RETENTION_DEFAULT * 1000ull;
    assert_int_equal(validate(f, &r, &err), KYU_OK);
    r.deliver_at_ms = 1; /* the past: at once */
    assert_int_equal(validate(f, &r, &err), KYU_OK);
    r.fields |= KYU_F_DELAY;
    expect_error(validate(f, &r, &err), err.msg, KYU_ERR_INVALID_ARGUMENT, "not both");
}

static kyu_command_t build(const kyu_request_t *req, uint64_t now, size_t n)
{
    kyu_op_ctx_t ctx = {.rng = {1, 2, 3, 4}};
    kyu_body_t b[KYU_BATCH_MAX];
    for (size_t i = 0; i < n; i++)
        b[i] = (kyu_body_t){"x", 1};
    kyu_bodies_t bodies = {b, n};
    kyu_command_t c;
    memset(&c, 0, sizeof c);
    c.type = KYU_CMD_SEND;
    c.now_ms = now;
    kyu_ops_row(KYU_OP_SEND)->build(&ctx, req, &bodies, &c);
    return c;
}

static void test_the_leader_turns_deliver_at_into_a_delay_from_its_time(void **state)
{
    (void)state;
    kyu_request_t r = send_request("q");
    kyu_command_t c = build(&r, T0, 2);
    assert_false(c.has_msg_delay[0] || c.has_msg_delay[1]);
    r.fields |= KYU_F_DELIVER_AT;
    r.deliver_at_ms = T0 + 7200 * 1000;
    c = build(&r, T0 + 500, 2);
    for (size_t i = 0; i < 2; i++) {
        assert_true(c.has_msg_delay[i]);
        assert_int_equal(c.msg_delay_ms[i], 7200 * 1000 - 500);
    }
    c = build(&r, T0 + 7200 * 1000 + 1, 1); /* already past: at once */
    assert_true(c.has_msg_delay[0]);
    assert_int_equal(c.msg_delay_ms[0], 0);
    r.deliver_at_ms = T0 + KYU_DELIVER_AT_MAX_S * 1000ull + 5; /* validated a little earlier */
    c = build(&r, T0, 1);
    assert_int_equal(c.msg_delay_ms[0], KYU_DELIVER_AT_MAX_S * 1000ull);
    r = send_request("q");
    r.fields |= KYU_F_DELAY;
    r.delay = 0;
    c = build(&r, T0, 1);
    assert_true(c.has_msg_delay[0]);
    assert_int_equal(c.msg_delay_ms[0], 0);
    r.delay = 900;
    c = build(&r, T0, 1);
    assert_int_equal(c.msg_delay_ms[0], 900000);
}

/* ---- the in-flight limit ---- */

static kyu_command_t receive_limited(uint64_t now, uint32_t max, uint32_t limit)
{
    kyu_command_t c = cmd_receive("q", now, max, 10);
    c.max_inflight = limit;
    return c;
}

static void counts(fixture_t *f, uint64_t now, int64_t visible, int64_t not_visible)
{
    kyu_queue_attrs_t a = fixture_attrs(f, "q", now);
    if (a.visible != visible || a.not_visible != not_visible)
        fail_msg("expected %lld visible / %lld in flight, got %lld / %lld", (long long)visible,
                 (long long)not_visible, (long long)a.visible, (long long)a.not_visible);
}

/* A queue of n messages "m". */
static void fill(fixture_t *f, int n)
{
    ok(apply1(f, cmd_create_delayed("q", 0)));
    for (int i = 0; i < n; i++)
        ok(apply1(f, cmd_send("q", T0, "m")));
}

static void test_a_receive_leases_no_more_than_the_limit_allows(void **state)
{
    fixture_t *f = *state;
    fill(f, 5);
    kyu_result_t r = apply1(f, receive_limited(T0, 2, 3));
    assert_int_equal(r.n_msgs, 2);
    kyu_result_clear(&r);
    r = apply1(f, receive_limited(T0, 10, 3)); /* room for one */
    assert_int_equal(r.code, KYU_OK);
    assert_int_equal(r.n_msgs, 1);
    kyu_result_clear(&r);
    counts(f, T0, 2, 3);
}

static void test_a_receive_at_the_limit_is_over_limit_and_changes_nothing(void **state)
{
    fixture_t *f = *state;
    fill(f, 3);
    kyu_result_t r = apply1(f, receive_limited(T0, 2, 2));
    assert_int_equal(r.n_msgs, 2);
    char h[KYU_HANDLE_MAX + 1];
    snprintf(h, sizeof h, "%s", r.msgs[0].handle);
    kyu_result_clear(&r);
    r = apply1(f, receive_limited(T0 + 1, 1, 2));
    expect_error(r.code, r.error, KYU_ERR_LIMIT_EXCEEDED,
                 "OverLimit: queue 'q' has 2 messages in flight, its limit is 2");
    assert_int_equal(r.n_msgs, 0);
    kyu_result_clear(&r);
    counts(f, T0 + 1, 1, 2);
    /* A delete makes room. */
    r = apply1(f, cmd_delete("q", T0 + 2, h));
    assert_int_equal(r.results[0], KYU_OK);
    kyu_result_clear(&r);
    r = apply1(f, receive_limited(T0 + 3, 1, 2));
    assert_int_equal(r.n_msgs, 1);
    kyu_result_clear(&r);
    counts(f, T0 + 3, 0, 2);
}

/* A lease that ran out by the command's time is no longer in flight: room again. */
static void test_a_lease_that_ran_out_makes_room(void **state)
{
    fixture_t *f = *state;
    fill(f, 2);
    kyu_result_t r = apply1(f, receive_limited(T0, 1, 1)); /* for 10 s */
    assert_int_equal(r.n_msgs, 1);
    kyu_result_clear(&r);
    r = apply1(f, receive_limited(T0 + 9999, 1, 1));
    assert_int_equal(r.code, KYU_ERR_LIMIT_EXCEEDED);
    kyu_result_clear(&r);
    r = apply1(f, receive_limited(T0 + 10000, 1, 1));
    assert_int_equal(r.code, KYU_OK);
    assert_int_equal(r.n_msgs, 1);
    kyu_result_clear(&r);
}

/* With nothing to lease, a receive at the limit passes nothing: an empty answer. Old RECEIVE
 * entries (no limit in the command) lease past it. */
static void
test_at_the_limit_an_empty_queue_answers_empty_and_old_entries_have_no_limit(void **state)
{
    fixture_t *f = *state;
    fill(f, 1);
    kyu_result_t r = apply1(f, receive_limited(T0, 1, 1));
    assert_int_equal(r.n_msgs, 1);
    kyu_result_clear(&r);
    r = apply1(f, receive_limited(T0, 1, 1));
    assert_int_equal(r.code, KYU_OK);
    assert_int_equal(r.n_msgs, 0);
    kyu_result_clear(&r);
    ok(apply1(f, cmd_send("q", T0, "m")));
    r = apply1(f, receive_limited(T0, 1, 0));
    assert_int_equal(r.n_msgs, 1);
    kyu_result_clear(&r);
    counts(f, T0, 0, 2);
}

static kyu_code_t validate_receive(fixture_t *f, uint32_t limit, bool keyed, kyu_err_t *err)
{
    kyu_op_ctx_t ctx = {.sm = f->sm, .max_body = 1 << 20, .max_inflight = limit};
    kyu_request_t r;
    memset(&r, 0, sizeof r);
    r.op = KYU_OP_RECEIVE;
    r.fields = KYU_F_QUEUE | (keyed ? KYU_F_RQ : 0);
    snprintf(r.queue, sizeof r.queue, "q");
    kyu_err_clear(err);
    return kyu_ops_row(KYU_OP_RECEIVE)->validate(&ctx, &r, NULL, err);
}

/* Refused before it is proposed too (no log write for a consumer polling a full queue),
 * but not a retry, which its record answers. */
static void test_a_receive_over_the_limit_is_refused_before_it_is_proposed(void **state)
{
    fixture_t *f = *state;
    kyu_err_t err;
    fill(f, 2);
    assert_int_equal(validate_receive(f, 1, false, &err), KYU_OK);
    kyu_result_t r = apply1(f, receive_limited(T0, 1, 1));
    kyu_result_clear(&r);
    expect_error(validate_receive(f, 1, false, &err), err.msg, KYU_ERR_LIMIT_EXCEEDED, "OverLimit");
    assert_int_equal(validate_receive(f, 2, false, &err), KYU_OK);
    assert_int_equal(validate_receive(f, 1, true, &err), KYU_OK);
    assert_int_equal(validate_receive(f, 0, false, &err), KYU_OK);
}

static void test_the_limit_round_trips_through_the_log_and_bad_ones_are_malformed(void **state)
{
    (void)state;
    kyu_command_t c = receive_limited(T0, 3, 120000);
    kyu_command_t d = command_round_trip(&c);
    assert_int_equal(d.max_inflight, 120000);
    c.max_inflight = 0;
    d = command_round_trip(&c);
    assert_int_equal(d.max_inflight, 0);
    /* [0], [2^32], ["x"], [1, 2] */
    for (int bad = 0; bad < 4; bad++) {
        msgpack_sbuffer b;
        msgpack_sbuffer_init(&b);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
        pack_command_head(&pk, KYU_CMD_RECEIVE, T0, "q", -1, 1);
        msgpack_pack_array(&pk, bad == 3 ? 2 : 1);
        if (bad == 0)
            msgpack_pack_uint64(&pk, 0);
        else if (bad == 1)
            msgpack_pack_uint64(&pk, 1ull << 32);
        else if (bad == 2)
            kyu_mp_pack_str(&pk, "x");
        else
            msgpack_pack_uint64(&pk, 1), msgpack_pack_uint64(&pk, 2);
        size_t off = 0;
        kyu_err_t err;
        assert_int_equal(kyu_command_decode(b.data, b.size, &off, &d, &err), KYU_ERR_MALFORMED);
        msgpack_sbuffer_destroy(&b);
    }
}

/* ---- message attributes ---- */

/* A send of body with the three attributes of AWS's example, sorted as the leader sorts. */
static kyu_command_t send_with_attrs(uint64_t now, const char *body)
{
    kyu_command_t c = cmd_send("q", now, body);
    c.attrs[0].n = 3;
    c.attrs[0].a[0] = msg_attr("attribName1", "String", "attribValue 1");
    c.attrs[0].a[1] = msg_attr("binaryAttribute", "Binary", "Hello binary world!");
    c.attrs[0].a[2] =
        msg_attr("customNumberTypeAttrib", "Number.float", "4563442423554324324264524243.32543234");
    return c;
}

static void expect_example_attrs(const kyu_msg_meta_t *m)
{
    assert_int_equal(m->attrs.n, 3);
    const char *names[] = {"attribName1", "binaryAttribute", "customNumberTypeAttrib"};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(m->attrs.a[i].name_len, strlen(names[i]));
        assert_memory_equal(m->attrs.a[i].name, names[i], strlen(names[i]));
    }
    assert_true(m->attrs.a[1].binary);
    assert_int_equal(m->attrs.a[2].type_len, strlen("Number.float"));
    assert_memory_equal(m->attrs.a[1].value, "Hello binary world!", 19);
    assert_string_equal(m->md5_attrs, "c932db14a896c663f83c260297d594ff"); /* AWS's value */
}

static void receive_one_with_attrs(fixture_t *f, uint64_t now, const char *body)
{
    kyu_result_t r = apply1(f, cmd_receive("q", now, 10, -1));
    assert_int_equal(r.code, KYU_OK);
    assert_int_equal(r.n_msgs, 2);
    assert_int_equal(r.body_lens[0], strlen(body));
    assert_memory_equal(r.bodies[0], body, strlen(body));
    expect_example_attrs(&r.msgs[0]);
    assert_string_equal(r.msgs[0].md5_body, "5d41402abc4b2a76b9719d911017c592");
    /* the message beside it has none */
    assert_int_equal(r.msgs[1].attrs.n, 0);
    assert_string_equal(r.msgs[1].md5_attrs, "");
    assert_string_equal(r.msgs[1].md5_body, "ac7938d40cfc2307e2bf325d28e7884e"); /* "plain" */
    kyu_result_clear(&r);
}

static void test_attributes_are_returned_with_the_message_and_its_digests(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, cmd_create_delayed("q", 0)));
    kyu_result_t r = apply1(f, send_with_attrs(T0, "hello"));
    assert_int_equal(r.code, KYU_OK);
    assert_string_equal(r.md5_body[0], "5d41402abc4b2a76b9719d911017c592");
    assert_string_equal(r.md5_attrs[0], "c932db14a896c663f83c260297d594ff");
    kyu_result_clear(&r);
    ok(apply1(f, cmd_send("q", T0, "plain")));
    receive_one_with_attrs(f, T0, "hello");
}

static void test_attributes_survive_a_restart(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, cmd_create_delayed("q", 0)));
    ok(apply1(f, send_with_attrs(T0, "hello")));
    ok(apply1(f, cmd_send("q", T0, "plain")));
    kyu_err_t err;
    assert_int_equal(kyu_sm_flush(f->sm, &err), KYU_OK);
    fixture_reopen(f);
    receive_one_with_attrs(f, T0, "hello");
}

/* A message record holds the digests after the id (MSG_REC_DIGESTS), MD5OfMessageBody and,
 * with attributes, MD5OfMessageAttributes, raw; the attributes and the body follow. */
static void test_a_message_record_holds_its_digests_after_the_id(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, cmd_create_delayed("q", 0)));
    kyu_command_t c = cmd_send("q", T0, "plain");
    ok(apply1(f, c));
    ok(apply1(f, send_with_attrs(T0, "hello")));
    kyu_err_t err;
    assert_int_equal(kyu_sm_flush(f->sm, &err), KYU_OK);
    rocksdb_t *db = kyu_store_db(f->store, KYU_CF_MESSAGES);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(db, kyu_store_readopts(f->store),
                                                        kyu_store_cf(f->store, KYU_CF_MESSAGES));
    rocksdb_iter_seek_to_first(it);
    assert_true(rocksdb_iter_valid(it));
    size_t vl = 0;
    const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vl);
    assert_int_equal(vl, 8 + 1 + KYU_UUID_LEN + 16 + 5);
    assert_int_equal(kyu_get_be64(v), T0);
    assert_int_equal(v[8], 0x40 | KYU_UUID_LEN);
    assert_memory_equal(v + 9, c.ids[0], KYU_UUID_LEN);
    char hex[KYU_MD5_HEX_LEN + 1];
    kyu_md5_hex(v + 9 + KYU_UUID_LEN, hex);
    assert_string_equal(hex, "ac7938d40cfc2307e2bf325d28e7884e"); /* python: md5(b"plain") */
    assert_memory_equal(v + 9 + KYU_UUID_LEN + 16, "plain", 5);
    rocksdb_iter_next(it);
    assert_true(rocksdb_iter_valid(it));
    v = (const uint8_t *)rocksdb_iter_value(it, &vl);
    assert_int_equal(v[8], 0xc0 | KYU_UUID_LEN); /* digests and attributes follow the id */
    kyu_md5_hex(v + 9 + KYU_UUID_LEN, hex);
    assert_string_equal(hex, "5d41402abc4b2a76b9719d911017c592"); /* python: md5(b"hello") */
    kyu_md5_hex(v + 9 + KYU_UUID_LEN + 16, hex);
    assert_string_equal(hex, "c932db14a896c663f83c260297d594ff"); /* AWS's value */
    assert_memory_equal(v + vl - 5, "hello", 5);
    rocksdb_iter_destroy(it);
}

/* Records written before the digests were stored (no MSG_REC_DIGESTS: the id, then the
 * attributes or the body) still load, and a receive and a peek compute the digests. */
static void test_a_record_without_digests_still_gives_the_right_md5s(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, cmd_create_delayed("q", 0)));
    ok(apply1(f, send_with_attrs(T0, "hello")));
    ok(apply1(f, cmd_send("q", T0, "plain")));
    kyu_err_t err;
    assert_int_equal(kyu_sm_flush(f->sm, &err), KYU_OK);
    /* Rewrite both records as a broker before the digests wrote them. */
    rocksdb_t *db = kyu_store_db(f->store, KYU_CF_MESSAGES);
    rocksdb_column_family_handle_t *cf = kyu_store_cf(f->store, KYU_CF_MESSAGES);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(db, kyu_store_readopts(f->store), cf);
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    size_t rewritten = 0;
    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl = 0, vl = 0;
        const char *k = rocksdb_iter_key(it, &kl);
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vl);
        if (kl != 16)
            continue;
        assert_true(v[8] & 0x40);
        size_t idlen = v[8] & 0x3f, md5_len = (v[8] & 0x80) ? 32 : 16;
        uint8_t *old = malloc(vl);
        assert_non_null(old);
        memcpy(old, v, 9 + idlen);
        old[8] = (uint8_t)(v[8] & ~0x40);
        memcpy(old + 9 + idlen, v + 9 + idlen + md5_len, vl - 9 - idlen - md5_len);
        char *rerr = NULL;
        rocksdb_put_cf(db, wo, cf, k, kl, (const char *)old, vl - md5_len, &rerr);
        assert_null(rerr);
        free(old);
        rewritten++;
    }
    assert_int_equal(rewritten, 2);
    rocksdb_writeoptions_destroy(wo);
    rocksdb_iter_destroy(it);
    fixture_reopen(f);
    receive_one_with_attrs(f, T0, "hello");
}

/* The digests are computed once, by the leader, carried in the entry and stored: the state
 * machine answers the send, receives and restarts with the ones the command carries (here
 * made up, so that a digest computed again would show). */
static void test_the_digests_the_entry_carries_are_stored_and_returned(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, cmd_create_delayed("q", 0)));
    kyu_command_t c = send_with_attrs(T0, "hello");
    c.has_md5 = true;
    for (int i = 0; i < 16; i++) {
        c.md5_body[0][i] = (uint8_t)i;
        c.md5_attrs[0][i] = (uint8_t)(0xf0 | i);
    }
    kyu_result_t r = apply1(f, c);
    assert_string_equal(r.md5_body[0], "000102030405060708090a0b0c0d0e0f");
    assert_string_equal(r.md5_attrs[0], "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff");
    kyu_result_clear(&r);
    kyu_err_t err;
    assert_int_equal(kyu_sm_flush(f->sm, &err), KYU_OK);
    fixture_reopen(f);
    r = apply1(f, cmd_receive("q", T0, 10, -1));
    assert_int_equal(r.n_msgs, 1);
    assert_string_equal(r.msgs[0].md5_body, "000102030405060708090a0b0c0d0e0f");
    assert_string_equal(r.msgs[0].md5_attrs, "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff");
    kyu_result_clear(&r);
}

/* The leader's SEND carries its digests in the entry (5 elements); an entry written before
 * (2 to 4 elements) decodes with them computed; a digest of the wrong length is malformed. */
static void test_digests_round_trip_through_the_log_and_old_entries_get_them(void **state)
{
    (void)state;
    kyu_command_t c = send_with_attrs(T0, "hello");
    c.n = 2;
    memcpy(c.ids[1], c.ids[0], sizeof c.ids[0]);
    c.bodies[1] = "plain";
    c.body_lens[1] = 5;
    msgpack_sbuffer b;
    kyu_command_t d = round_trip_in(&c, &b); /* has_md5 false: the old forms */
    char hex[KYU_MD5_HEX_LEN + 1];
    assert_true(d.has_md5);
    kyu_md5_hex(d.md5_body[0], hex);
    assert_string_equal(hex, "5d41402abc4b2a76b9719d911017c592");
    kyu_md5_hex(d.md5_attrs[0], hex);
    assert_string_equal(hex, "c932db14a896c663f83c260297d594ff");
    kyu_md5_hex(d.md5_body[1], hex);
    assert_string_equal(hex, "ac7938d40cfc2307e2bf325d28e7884e");
    msgpack_sbuffer_destroy(&b);
    c.has_md5 = true; /* made-up digests travel as they are */
    memset(c.md5_body, 0xab, sizeof c.md5_body);
    memset(c.md5_attrs, 0xcd, sizeof c.md5_attrs);
    d = round_trip_in(&c, &b);
    assert_true(d.has_md5);
    assert_memory_equal(d.md5_body, c.md5_body, 2 * 16);
    assert_memory_equal(d.md5_attrs[0], c.md5_attrs[0], 16);
    assert_int_equal(d.attrs[0].n, 3);
    assert_int_equal(d.attrs[1].n, 0);
    assert_false(d.has_msg_delay[0]);
    assert_int_equal(d.body_lens[1], 5);
    msgpack_sbuffer_destroy(&b);
    /* [id, body, nil, nil, md5] with 32 bytes for a message without attributes: malformed */
    msgpack_sbuffer_init(&b);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
    pack_command_head(&pk, KYU_CMD_SEND, T0, "q", -1, 1);
    msgpack_pack_array(&pk, 1);
    msgpack_pack_array(&pk, 5);
    kyu_mp_pack_str(&pk, c.ids[0]);
    msgpack_pack_bin(&pk, 1);
    msgpack_pack_bin_body(&pk, "x", 1);
    msgpack_pack_nil(&pk);
    msgpack_pack_nil(&pk);
    msgpack_pack_bin(&pk, 32);
    msgpack_pack_bin_body(&pk, c.md5_attrs, 32);
    size_t off = 0;
    kyu_err_t err;
    assert_int_equal(kyu_command_decode(b.data, b.size, &off, &d, &err), KYU_ERR_MALFORMED);
    msgpack_sbuffer_destroy(&b);
}

static void test_attributes_round_trip_through_the_log_encoding(void **state)
{
    (void)state;
    kyu_command_t c = send_with_attrs(T0, "a");
    c.n = 3;
    memcpy(c.ids[1], c.ids[0], sizeof c.ids[0]);
    memcpy(c.ids[2], c.ids[0], sizeof c.ids[0]);
    c.bodies[1] = c.bodies[2] = "b";
    c.body_lens[1] = c.body_lens[2] = 1;
    c.has_msg_delay[1] = true; /* a delay and attributes */
    c.msg_delay_ms[1] = 5000;
    c.attrs[1] = c.attrs[0];
    msgpack_sbuffer b;
    kyu_command_t d = round_trip_in(&c, &b);
    assert_int_equal(d.n, 3);
    assert_false(d.has_msg_delay[0]); /* nil: the queue's */
    assert_true(d.has_msg_delay[1]);
    assert_int_equal(d.msg_delay_ms[1], 5000);
    for (size_t i = 0; i < 2; i++) {
        kyu_msg_meta_t m = {.attrs = d.attrs[i]};
        kyu_md5_attrs_hex(&d.attrs[i], m.md5_attrs);
        expect_example_attrs(&m);
    }
    assert_int_equal(d.attrs[2].n, 0);
    msgpack_sbuffer_destroy(&b);
}

static kyu_code_t validate_bodies(fixture_t *f, const kyu_request_t *req, const char *const *bodies,
                                  size_t n, kyu_err_t *err)
{
    kyu_op_ctx_t ctx = {.sm = f->sm, .max_body = 1 << 20};
    kyu_body_t b[KYU_BATCH_MAX];
    for (size_t i = 0; i < n; i++)
        b[i] = (kyu_body_t){bodies[i], strlen(bodies[i])};
    kyu_bodies_t z = {b, n};
    kyu_err_clear(err);
    return kyu_ops_row(req->op)->validate(&ctx, req, &z, err);
}

static void test_bad_attributes_are_refused_naming_the_message(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, cmd_create_delayed("q", 0)));
    kyu_err_t err;
    kyu_request_t r = send_request("q");
    r.fields |= KYU_F_MSG_ATTRS;
    r.n_attr_msgs = 2;
    r.attrs[0].n = 1;
    r.attrs[0].a[0] = msg_attr("ok", "String", "v");
    r.attrs[1].n = 1;
    r.attrs[1].a[0] = msg_attr("Amazon.x", "String", "v");
    const char *bodies[] = {"a", "b"};
    expect_error(validate_bodies(f, &r, bodies, 2, &err), err.msg, KYU_ERR_INVALID_ARGUMENT,
                 "message 2: message attribute name 'Amazon.x' is reserved");
    r.attrs[1].a[0] = msg_attr("n", "Number", "twelve");
    expect_error(validate_bodies(f, &r, bodies, 2, &err), err.msg, KYU_ERR_INVALID_ARGUMENT,
                 "message 2: message attribute 'n' has Number value 'twelve'");
    r.attrs[1].a[0] = msg_attr("n", "Number", "12");
    assert_int_equal(validate_bodies(f, &r, bodies, 2, &err), KYU_OK);
}

static void test_attributes_count_toward_the_maximum_message_size(void **state)
{
    fixture_t *f = *state;
    kyu_command_t create = cmd_create_delayed("q", 0);
    create.max_size = 1024;
    ok(apply1(f, create));
    char body[1025];
    memset(body, 'x', 1000);
    body[1000] = '\0';
    kyu_err_t err;
    kyu_request_t r = send_request("q");
    r.fields |= KYU_F_MSG_ATTRS;
    r.n_attr_msgs = 1;
    r.attrs[0].n = 1;
    r.attrs[0].a[0] = msg_attr("k", "String", "12345678901234567"); /* 1000 + 1 + 6 + 17 = 1024 */
    const char *bodies[] = {body};
    assert_int_equal(validate_bodies(f, &r, bodies, 1, &err), KYU_OK);
    r.attrs[0].a[0] = msg_attr("k", "String", "123456789012345678");
    expect_error(validate_bodies(f, &r, bodies, 1, &err), err.msg, KYU_ERR_TOO_LARGE,
                 "message 1 has 1025 bytes (body and attributes); queue 'q' takes at most 1024");
}

static void test_the_leader_sorts_attributes_by_name(void **state)
{
    (void)state;
    kyu_request_t r = send_request("q");
    r.fields |= KYU_F_MSG_ATTRS;
    r.n_attr_msgs = 1;
    r.attrs[0].n = 3;
    r.attrs[0].a[0] = msg_attr("zeta", "String", "1");
    r.attrs[0].a[1] = msg_attr("Alpha", "String", "2");
    r.attrs[0].a[2] = msg_attr("beta", "String", "3");
    kyu_command_t c = build(&r, T0, 1);
    const char *want[] = {"Alpha", "beta", "zeta"};
    for (size_t i = 0; i < 3; i++)
        assert_string_equal(c.attrs[0].a[i].name, want[i]);
}

/* ---- send batches ---- */

/* The command the leader builds for a batch of bodies (entry ids e0, e1, ...) against f's
 * state: entries that fail their checks are failures in it. */
static kyu_command_t build_batch(fixture_t *f, kyu_request_t *r, const char *const *bodies,
                                 size_t n)
{
    kyu_op_ctx_t ctx = {.sm = f->sm, .max_body = 1 << 20, .rng = {1, 2, 3, 4}};
    r->fields |= KYU_F_ENTRY_IDS;
    r->n_entries = n;
    for (size_t i = 0; i < n; i++)
        snprintf(r->entry_ids[i], sizeof r->entry_ids[i], "e%zu", i);
    kyu_body_t b[KYU_BATCH_MAX];
    for (size_t i = 0; i < n; i++)
        b[i] = (kyu_body_t){bodies[i], strlen(bodies[i])};
    kyu_bodies_t z = {b, n};
    kyu_err_t err;
    kyu_err_clear(&err);
    assert_int_equal(kyu_ops_row(KYU_OP_SEND)->validate(&ctx, r, &z, &err), KYU_OK);
    kyu_command_t c;
    memset(&c, 0, sizeof c);
    c.type = KYU_CMD_SEND;
    c.now_ms = T0;
    c.vt = -1;
    snprintf(c.queue, sizeof c.queue, "%s", r->queue);
    kyu_ops_row(KYU_OP_SEND)->build(&ctx, r, &z, &c);
    /* the bodies are borrowed from the request's (here: the caller's strings) */
    for (size_t i = 0; i < n; i++)
        c.bodies[i] = c.entry_code[i] ? NULL : bodies[i];
    return c;
}

static void test_a_bad_batch_entry_fails_alone(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, cmd_create_delayed("q", 0)));
    kyu_request_t r = send_request("q");
    r.fields |= KYU_F_ENTRY_DELAYS | KYU_F_MSG_ATTRS;
    r.n_entry_delays = r.n_attr_msgs = 4;
    r.entry_delay[0] = r.entry_delay[1] = r.entry_delay[3] = -1;
    r.entry_delay[2] = 901;
    r.attrs[3].n = 1;
    r.attrs[3].a[0] = msg_attr("AWS.k", "String", "v");
    const char *bodies[] = {"good", "", "late", "attrs"};
    kyu_command_t c = build_batch(f, &r, bodies, 4);
    assert_int_equal(c.n, 4);
    assert_int_equal(c.entry_code[0], 0);
    assert_int_equal(c.entry_code[1], KYU_ERR_EMPTY_BODY);
    assert_int_equal(c.entry_code[2], KYU_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(c.entry_error[2], "DelaySeconds must be 0 to 900 seconds, not 901"));
    assert_int_equal(c.entry_code[3], KYU_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(c.entry_error[3], "reserved"));
    msgpack_sbuffer b;
    kyu_command_t d = round_trip_in(&c, &b); /* as the log carries it */
    assert_memory_equal(d.entry_code, c.entry_code, 4);
    assert_string_equal(d.entry_error[3], c.entry_error[3]);
    kyu_result_t res = apply1(f, d);
    assert_int_equal(res.code, KYU_OK);
    assert_int_equal(res.n_ids, 4);
    assert_int_equal(strlen(res.ids[0]), KYU_UUID_LEN);
    assert_string_equal(res.ids[1], "");
    assert_int_equal(res.n_results, 4);
    assert_int_equal(res.results[0], KYU_OK);
    assert_int_equal(res.results[1], KYU_ERR_EMPTY_BODY);
    assert_string_equal(res.entry_errors[3], c.entry_error[3]);
    kyu_result_clear(&res);
    msgpack_sbuffer_destroy(&b);
    receive_bodies(f, T0, 10, (const char *[]){"good", NULL});
}

static void test_a_batch_entry_takes_its_own_delay(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, cmd_create_delayed("q", 0)));
    kyu_request_t r = send_request("q");
    r.fields |= KYU_F_ENTRY_DELAYS;
    r.n_entry_delays = 2;
    r.entry_delay[0] = 30;
    r.entry_delay[1] = -1;
    const char *bodies[] = {"later", "now"};
    kyu_result_t res = apply1(f, build_batch(f, &r, bodies, 2));
    assert_int_equal(res.n_results, 0); /* every entry sent: no per-entry results */
    kyu_result_clear(&res);
    receive_bodies(f, T0, 10, (const char *[]){"now", NULL});
    receive_bodies(f, T0 + 30000, 10, (const char *[]){"later", NULL});
}

/* A retry with the same request key answers every entry as the first attempt did, even when
 * the entries would fare otherwise now (the queue's limit changed between). */
static void test_a_retried_batch_answers_as_the_first_attempt(void **state)
{
    fixture_t *f = *state;
    kyu_command_t create = cmd_create_delayed("q", 0);
    create.max_size = 1024;
    ok(apply1(f, create));
    static char big[2001];
    memset(big, 'b', 2000);
    kyu_request_t r = send_request("q");
    const char *bodies[] = {"fits", big};
    kyu_command_t c = build_batch(f, &r, bodies, 2);
    c.rq_client = 9;
    c.rq_key = 99;
    kyu_result_t first = apply1(f, c);
    assert_int_equal(first.results[1], KYU_ERR_TOO_LARGE);
    kyu_command_t set = cmd_create_delayed("q", 0);
    set.type = KYU_CMD_SET_QUEUE_ATTRIBUTES;
    set.has_delay = false;
    set.max_size = 4096;
    ok(apply1(f, set));
    kyu_command_t retry = build_batch(f, &r, bodies, 2); /* both fit now */
    assert_int_equal(retry.entry_code[1], 0);
    retry.rq_client = 9;
    retry.rq_key = 99;
    kyu_result_t again = apply1(f, retry);
    assert_int_equal(again.code, KYU_OK);
    assert_string_equal(again.ids[0], first.ids[0]);
    assert_string_equal(again.ids[1], "");
    assert_int_equal(again.n_results, 2);
    assert_int_equal(again.results[1], KYU_ERR_TOO_LARGE);
    assert_non_null(strstr(again.entry_errors[1], "first attempt"));
    kyu_result_clear(&first);
    kyu_result_clear(&again);
    kyu_err_t err;
    assert_int_equal(kyu_sm_flush(f->sm, &err), KYU_OK);
    fixture_reopen(f); /* the record, read back from the database */
    retry.now_ms = T0 + 1000;
    again = apply1(f, retry);
    assert_int_equal(again.results[1], KYU_ERR_TOO_LARGE);
    kyu_result_clear(&again);
    receive_bodies(f, T0 + 1000, 10, (const char *[]){"fits", NULL});
}

static void test_a_failed_batch_entry_in_the_log_is_checked(void **state)
{
    (void)state;
    kyu_command_t c = cmd_send("q", T0, "x");
    c.n = 2;
    c.entry_code[1] = KYU_ERR_CODE_COUNT; /* not a code */
    snprintf(c.entry_error[1], sizeof c.entry_error[1], "why");
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    kyu_command_encode(&c, &b);
    size_t off = 0;
    kyu_err_t err;
    kyu_command_t d;
    assert_int_equal(kyu_command_decode(b.data, b.size, &off, &d, &err), KYU_ERR_MALFORMED);
    msgpack_sbuffer_destroy(&b);
}

/* The reference: xoshiro256** as op_message.c draws it, formatted by snprintf. */
static uint64_t ref_rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t ref_next(uint64_t s[4])
{
    uint64_t result = ref_rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = ref_rotl(s[3], 45);
    return result;
}

static void test_message_ids_are_version_4_uuids_as_printf_writes_them(void **state)
{
    (void)state;
    kyu_op_ctx_t ctx = {.rng = {1, 2, 3, 4}};
    uint64_t s[4] = {1, 2, 3, 4};
    for (int i = 0; i < 1000; i++) {
        char id[KYU_UUID_LEN + 1], want[KYU_UUID_LEN + 1];
        memset(id, 'z', sizeof id);
        kyu_op_make_uuid(&ctx, id);
        uint64_t a = ref_next(s), b = ref_next(s);
        a = (a & ~0xf000ULL) | 0x4000ULL;
        b = (b & ~(3ULL << 62)) | (2ULL << 62);
        snprintf(want, sizeof want, "%08x-%04x-%04x-%04x-%012llx", (unsigned)(a >> 32),
                 (unsigned)((a >> 16) & 0xffff), (unsigned)(a & 0xffff), (unsigned)(b >> 48),
                 (unsigned long long)(b & 0xffffffffffffULL));
        assert_string_equal(id, want);
        assert_int_equal(id[14], '4');
        assert_non_null(strchr("89ab", id[19]));
    }
}

#define T(name) cmocka_unit_test_setup_teardown(name, fixture_setup, fixture_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_a_message_delay_hides_it_until_it_ends),
        T(test_a_message_delay_overrides_a_longer_queue_delay),
        T(test_a_message_delay_overrides_a_shorter_queue_delay),
        T(test_an_explicit_zero_delay_on_a_delayed_queue_is_visible_at_once),
        T(test_message_delays_up_to_four_days_hold),
        T(test_message_delays_survive_a_restart),
        cmocka_unit_test(test_message_delays_round_trip_through_the_log_encoding),
        T(test_an_old_send_entry_decodes_and_takes_the_queues_delay),
        cmocka_unit_test(test_a_send_entry_with_a_delay_over_the_cap_is_malformed),
        T(test_a_message_delay_over_900_is_refused_naming_the_field),
        T(test_a_deliver_at_past_four_days_is_refused),
        cmocka_unit_test(test_the_leader_turns_deliver_at_into_a_delay_from_its_time),
        T(test_a_receive_leases_no_more_than_the_limit_allows),
        T(test_a_receive_at_the_limit_is_over_limit_and_changes_nothing),
        T(test_a_lease_that_ran_out_makes_room),
        T(test_at_the_limit_an_empty_queue_answers_empty_and_old_entries_have_no_limit),
        T(test_a_receive_over_the_limit_is_refused_before_it_is_proposed),
        cmocka_unit_test(test_the_limit_round_trips_through_the_log_and_bad_ones_are_malformed),
        T(test_attributes_are_returned_with_the_message_and_its_digests),
        T(test_attributes_survive_a_restart),
        T(test_a_message_record_holds_its_digests_after_the_id),
        T(test_a_record_without_digests_still_gives_the_right_md5s),
        T(test_the_digests_the_entry_carries_are_stored_and_returned),
        cmocka_unit_test(test_digests_round_trip_through_the_log_and_old_entries_get_them),
        cmocka_unit_test(test_attributes_round_trip_through_the_log_encoding),
        T(test_bad_attributes_are_refused_naming_the_message),
        T(test_attributes_count_toward_the_maximum_message_size),
        cmocka_unit_test(test_the_leader_sorts_attributes_by_name),
        T(test_a_bad_batch_entry_fails_alone),
        T(test_a_batch_entry_takes_its_own_delay),
        T(test_a_retried_batch_answers_as_the_first_attempt),
        cmocka_unit_test(test_a_failed_batch_entry_in_the_log_is_checked),
        cmocka_unit_test(test_message_ids_are_version_4_uuids_as_printf_writes_them),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
