/* libkyu's handling of what a broker answers: RECEIVE and PEEK frames, per-handle results,
 * malformed and stray replies, failover. Against the in-process fake broker. */
#include "fake_broker.h"
#include "kyu.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#define SHORT_TIMEOUT_MS 300 /* where the answer expected is a timeout */
/* Where an answer must come before the timeout but a dead endpoint must also time out: long
 * enough for a loaded machine (ASan, other jobs), short enough to keep the test quick. */
#define FAILOVER_TIMEOUT_MS 1500

static kyu_client_t *connect_to(const char *endpoints, int timeout_ms)
{
    kyu_client_opts_t o = kyu_client_opts_default();
    o.timeout_ms = timeout_ms;
    kyu_err_t err = {0};
    kyu_client_t *c = kyu_client_new_opts(endpoints, &o, &err);
    if (!c)
        fprintf(stderr, "connect to %s: %s %s\n", endpoints, kyu_code_name(err.code), err.msg);
    return c;
}

/* RECEIVE: two messages; arg says how many body frames to really send. */
static void receive_handler(fake_broker_t *fb, void *arg, const kyu_request_t *req,
                            const void *const *bodies, const size_t *lens, size_t n)
{
    (void)bodies, (void)lens, (void)n;
    size_t frames = *(size_t *)arg;
    if (req->op != KYU_OP_RECEIVE) {
        fake_default(fb, req);
        return;
    }
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    rep.id = req->id;
    rep.n_msgs = 2;
    for (size_t i = 0; i < 2; i++) {
        snprintf(rep.msgs[i].message_id, sizeof rep.msgs[i].message_id, "mid-%zu", i);
        snprintf(rep.msgs[i].handle, sizeof rep.msgs[i].handle, "rh-%zu", i);
        rep.msgs[i].receive_count = (uint32_t)i + 1;
        rep.msgs[i].sent_ms = 1000 + i;
        rep.msgs[i].first_receive_ms = 2000 + i;
    }
    const void *out[] = {"first", "second\0bin", "third"};
    size_t out_lens[] = {5, 10, 5};
    fake_reply(fb, &rep, out, out_lens, frames);
}

static void test_receive_returns_bodies_and_metadata(void **state)
{
    (void)state;
    size_t frames = 2;
    fake_broker_t *fb = fake_broker_new(receive_handler, &frames);
    kyu_client_t *c = connect_to(fake_broker_endpoint(fb), 5000);
    assert_non_null(c);
    kyu_err_t err = {0};
    kyu_message_t *msgs = NULL;
    size_t n = 0;
    assert_int_equal(kyu_client_receive(c, "q", 10, 60, &msgs, &n, &err), KYU_OK);
    assert_int_equal(n, 2);
    assert_string_equal(msgs[0].message_id, "mid-0");
    assert_string_equal(msgs[0].receipt_handle, "rh-0");
    assert_int_equal(msgs[0].receive_count, 1);
    assert_int_equal(msgs[0].sent_ms, 1000);
    assert_int_equal(msgs[0].first_receive_ms, 2000);
    assert_int_equal(msgs[0].body_len, 5);
    assert_string_equal((char *)msgs[0].body, "first");
    assert_int_equal(msgs[1].body_len, 10);
    assert_memory_equal(msgs[1].body, "second\0bin", 10);
    assert_int_equal(msgs[1].receive_count, 2);
    kyu_messages_destroy(&msgs);
    assert_null(msgs);
    kyu_client_destroy(&c);
    fake_broker_destroy(&fb);
}

static void test_receive_with_wrong_frame_count_is_malformed(void **state)
{
    (void)state;
    size_t counts[] = {0, 1, 3};
    for (size_t k = 0; k < 3; k++) {
        fake_broker_t *fb = fake_broker_new(receive_handler, &counts[k]);
        kyu_client_t *c = connect_to(fake_broker_endpoint(fb), 5000);
        assert_non_null(c);
        kyu_err_t err = {0};
        kyu_message_t *msgs = NULL;
        size_t n = 0;
        assert_int_equal(kyu_client_receive(c, "q", 10, -1, &msgs, &n, &err), KYU_ERR_MALFORMED);
        assert_null(msgs);
        assert_int_equal(n, 0);
        kyu_client_destroy(&c);
        fake_broker_destroy(&fb);
    }
}

/* PEEK: two messages (the second delayed, moved from "src" by a RedrivePolicy, with an
 * attribute and digests), more to come; arg: body frames to really send, or 99: a first
 * message without a state. The request's from and max are checked. */
static void peek_handler(fake_broker_t *fb, void *arg, const kyu_request_t *req,
                         const void *const *bodies, const size_t *lens, size_t n)
{
    (void)bodies, (void)lens, (void)n;
    size_t frames = *(size_t *)arg;
    if (req->op != KYU_OP_PEEK) {
        fake_default(fb, req);
        return;
    }
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    rep.id = req->id;
    rep.n_msgs = 2;
    for (size_t i = 0; i < 2; i++) {
        snprintf(rep.msgs[i].message_id, sizeof rep.msgs[i].message_id, "mid-%zu", i);
        rep.msgs[i].state = i == 0 ? KYU_MSG_VISIBLE : KYU_MSG_DELAYED;
        rep.msgs[i].position = req->from + i;
    }
    rep.msgs[1].visible_at_ms = 5000;
    kyu_msg_meta_t *moved = &rep.msgs[1];
    snprintf(moved->dlq_source, sizeof moved->dlq_source, "src");
    moved->dlq_receive_count = 3;
    moved->dlq_first_receive_ms = 100;
    moved->dlq_last_receive_ms = 200;
    moved->dlq_moved_ms = 300;
    moved->attrs.n = 1;
    moved->attrs.a[0] = (kyu_msg_attr_t){
        .name = "k", .name_len = 1, .type = "String", .type_len = 6, .value = "v", .value_len = 1};
    snprintf(moved->md5_body, sizeof moved->md5_body, "%s", "b8a9f715dbb64fd5c56e7783c6820a61");
    snprintf(moved->md5_attrs, sizeof moved->md5_attrs, "%s", "0123456789abcdef0123456789abcdef");
    if (frames == 99) {
        rep.msgs[0].state = 0;
        frames = 2;
    }
    rep.has_next = req->max == 2 && (req->fields & KYU_F_FROM);
    rep.next = req->from + 2;
    const void *out[] = {"one", "two", "three"};
    size_t out_lens[] = {3, 3, 5};
    fake_reply(fb, &rep, out, out_lens, frames);
}

static void test_peek_returns_states_positions_and_the_next_page(void **state)
{
    (void)state;
    size_t frames = 2;
    fake_broker_t *fb = fake_broker_new(peek_handler, &frames);
    kyu_client_t *c = connect_to(fake_broker_endpoint(fb), 5000);
    assert_non_null(c);
    kyu_err_t err = {0};
    kyu_message_t *msgs = NULL;
    size_t n = 0;
    uint64_t next = 0;
    assert_int_equal(kyu_client_peek(c, "q", 2, 40, &msgs, &n, &next, &err), KYU_OK);
    assert_int_equal(n, 2);
    assert_int_equal(next, 42);
    assert_int_equal(msgs[0].state, KYU_MSG_VISIBLE);
    assert_int_equal(msgs[0].position, 40);
    assert_string_equal(msgs[0].receipt_handle, "");
    assert_int_equal(msgs[1].state, KYU_MSG_DELAYED);
    assert_int_equal(msgs[1].visible_at_ms, 5000);
    assert_string_equal((char *)msgs[1].body, "two");
    /* A moved message's provenance, its attributes and digests, as a receive gives them. */
    assert_string_equal(msgs[0].dlq_source, "");
    assert_string_equal(msgs[1].dlq_source, "src");
    assert_int_equal(msgs[1].dlq_receive_count, 3);
    assert_int_equal(msgs[1].dlq_first_receive_ms, 100);
    assert_int_equal(msgs[1].dlq_last_receive_ms, 200);
    assert_int_equal(msgs[1].dlq_moved_ms, 300);
    assert_int_equal(msgs[1].attrs.n, 1);
    assert_string_equal(msgs[1].attrs.a[0].name, "k");
    assert_string_equal(msgs[1].attrs.a[0].type, "String");
    assert_string_equal((const char *)msgs[1].attrs.a[0].value, "v");
    assert_string_equal(msgs[1].md5_body, "b8a9f715dbb64fd5c56e7783c6820a61");
    assert_string_equal(msgs[1].md5_attrs, "0123456789abcdef0123456789abcdef");
    assert_int_equal(msgs[0].attrs.n, 0);
    kyu_messages_destroy(&msgs);
    assert_int_equal(kyu_client_peek(c, "q", 10, 0, &msgs, &n, &next, &err), KYU_OK);
    assert_int_equal(next, 0); /* the last page */
    kyu_messages_destroy(&msgs);
    assert_int_equal(kyu_client_peek(c, "q", 11, 0, &msgs, &n, &next, &err),
                     KYU_ERR_INVALID_ARGUMENT);
    kyu_client_destroy(&c);
    fake_broker_destroy(&fb);
}

static void test_peek_with_wrong_frames_or_no_state_is_malformed(void **state)
{
    (void)state;
    size_t counts[] = {0, 1, 3, 99};
    for (size_t k = 0; k < 4; k++) {
        fake_broker_t *fb = fake_broker_new(peek_handler, &counts[k]);
        kyu_client_t *c = connect_to(fake_broker_endpoint(fb), 5000);
        assert_non_null(c);
        kyu_err_t err = {0};
        kyu_message_t *msgs = NULL;
        size_t n = 0;
        uint64_t next = 0;
        assert_int_equal(kyu_client_peek(c, "q", 10, 0, &msgs, &n, &next, &err), KYU_ERR_MALFORMED);
        assert_null(msgs);
        assert_int_equal(n, 0);
        kyu_client_destroy(&c);
        fake_broker_destroy(&fb);
    }
}

/* DELETE / CHANGE_VISIBILITY: OK for handles starting with "ok", else RECEIPT_STALE. */
static void handles_handler(fake_broker_t *fb, void *arg, const kyu_request_t *req,
                            const void *const *bodies, const size_t *lens, size_t n)
{
    (void)arg, (void)bodies, (void)lens, (void)n;
    if (req->op != KYU_OP_DELETE && req->op != KYU_OP_CHANGE_VISIBILITY) {
        fake_default(fb, req);
        return;
    }
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    rep.id = req->id;
    rep.n_results = req->n_handles;
    for (size_t i = 0; i < req->n_handles; i++)
        rep.results[i] = strncmp(req->handles[i], "ok", 2) == 0 ? KYU_OK : KYU_ERR_RECEIPT_STALE;
    fake_reply(fb, &rep, NULL, NULL, 0);
}

static void test_delete_reports_a_result_per_handle(void **state)
{
    (void)state;
    fake_broker_t *fb = fake_broker_new(handles_handler, NULL);
    kyu_client_t *c = connect_to(fake_broker_endpoint(fb), 5000);
    assert_non_null(c);
    kyu_err_t err = {0};
    const char *handles[] = {"ok-1", "old-2", "ok-3"};
    kyu_code_t res[3];
    assert_int_equal(kyu_client_delete(c, "q", handles, 3, res, &err), KYU_ERR_RECEIPT_STALE);
    assert_int_equal(res[0], KYU_OK);
    assert_int_equal(res[1], KYU_ERR_RECEIPT_STALE);
    assert_int_equal(res[2], KYU_OK);
    assert_non_null(strstr(err.msg, "receipt handle 2 of 3"));
    const char *good[] = {"ok-1"};
    assert_int_equal(kyu_client_change_visibility(c, "q", good, 1, 0, res, &err), KYU_OK);
    assert_int_equal(res[0], KYU_OK);
    kyu_client_destroy(&c);
    fake_broker_destroy(&fb);
}

/* Answers every non-HELLO request with a reply of the wrong shape, chosen by arg. */
typedef enum { BAD_GARBAGE, BAD_STRAY_ID, BAD_TOO_MANY_FRAMES, BAD_WRONG_COUNT } bad_t;

static void bad_handler(fake_broker_t *fb, void *arg, const kyu_request_t *req,
                        const void *const *bodies, const size_t *lens, size_t n)
{
    (void)bodies, (void)lens, (void)n;
    bad_t how = *(bad_t *)arg;
    if (req->op == KYU_OP_HELLO) {
        fake_default(fb, req);
        return;
    }
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    rep.id = req->id;
    switch (how) {
    case BAD_GARBAGE:
        fake_reply_raw(fb, "\xc1\xde\xff", 3, 0);
        fake_reply_raw(fb, "\x81\xa2id", 4, 0); /* a map cut short */
        break;
    case BAD_STRAY_ID:
        rep.id = req->id + 1000;
        fake_reply(fb, &rep, NULL, NULL, 0);
        break;
    case BAD_TOO_MANY_FRAMES: {
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        rep.n_ids = 1;
        kyu_reply_encode(&rep, &sb);
        fake_reply_raw(fb, sb.data, sb.size, 20);
        msgpack_sbuffer_destroy(&sb);
        break;
    }
    case BAD_WRONG_COUNT:
        rep.n_ids = 3; /* for one body */
        fake_reply(fb, &rep, NULL, NULL, 0);
        break;
    }
}

static void test_malformed_and_stray_replies_do_not_crash(void **state)
{
    (void)state;
    const struct {
        bad_t how;
        kyu_code_t want;
    } cases[] = {{BAD_GARBAGE, KYU_ERR_TIMEOUT},
                 {BAD_STRAY_ID, KYU_ERR_TIMEOUT},
                 {BAD_TOO_MANY_FRAMES, KYU_ERR_MALFORMED},
                 {BAD_WRONG_COUNT, KYU_ERR_MALFORMED}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        bad_t how = cases[k].how;
        fake_broker_t *fb = fake_broker_new(bad_handler, &how);
        kyu_client_t *c = connect_to(fake_broker_endpoint(fb),
                                     cases[k].want == KYU_ERR_TIMEOUT ? SHORT_TIMEOUT_MS : 5000);
        assert_non_null(c);
        kyu_err_t err = {0};
        const void *body[] = {"x"};
        size_t len[] = {1};
        kyu_code_t rc = kyu_client_send(c, "q", body, len, 1, NULL, &err);
        if (rc != cases[k].want)
            fprintf(stderr, "case %zu: expected %s, got %s (%s)\n", k, kyu_code_name(cases[k].want),
                    kyu_code_name(rc), err.msg);
        assert_int_equal(rc, cases[k].want);
        kyu_client_destroy(&c);
        fake_broker_destroy(&fb);
    }
}

/* ---- one reply for many polls ---- */

/* LIST_QUEUES: two names (a heap array in the client's reply); RECEIVE: one message with an
 * attribute (its reply owns a copy of the header); SEND: an id per body, or an error when the
 * first body is "err"; PURGE_QUEUE: a reply with a stray id (to no request); DELETE: a
 * result per handle. */
static void mixed_handler(fake_broker_t *fb, void *arg, const kyu_request_t *req,
                          const void *const *bodies, const size_t *lens, size_t n)
{
    (void)arg;
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    rep.id = req->id;
    char names[2][KYU_NAME_MAX + 1] = {"alpha", "beta"};
    switch (req->op) {
    case KYU_OP_LIST_QUEUES:
        rep.queues = names;
        rep.n_queues = 2;
        fake_reply(fb, &rep, NULL, NULL, 0);
        break;
    case KYU_OP_RECEIVE: {
        rep.n_msgs = 1;
        snprintf(rep.msgs[0].message_id, sizeof rep.msgs[0].message_id, "mid");
        snprintf(rep.msgs[0].handle, sizeof rep.msgs[0].handle, "rh");
        snprintf(rep.msgs[0].md5_attrs, sizeof rep.msgs[0].md5_attrs, "%032d", 7);
        rep.msgs[0].attrs.n = 1;
        rep.msgs[0].attrs.a[0] = (kyu_msg_attr_t){"colour", 6, "String", 6, "red", 3, false};
        const void *out[] = {"body"};
        size_t out_lens[] = {4};
        fake_reply(fb, &rep, out, out_lens, 1);
        break;
    }
    case KYU_OP_SEND:
        if (n > 0 && lens[0] == 3 && memcmp(bodies[0], "err", 3) == 0) {
            fake_reply_error(fb, req->id, KYU_ERR_TOO_LARGE, "the first body is too large");
            break;
        }
        rep.n_ids = n;
        for (size_t i = 0; i < n; i++)
            snprintf(rep.ids[i], sizeof rep.ids[i], "id-%zu", i);
        fake_reply(fb, &rep, NULL, NULL, 0);
        break;
    case KYU_OP_PURGE_QUEUE:
        rep.id = req->id + 1000;
        fake_reply(fb, &rep, NULL, NULL, 0);
        break;
    case KYU_OP_DELETE:
        rep.n_results = req->n_handles;
        fake_reply(fb, &rep, NULL, NULL, 0);
        break;
    default:
        fake_default(fb, req);
    }
}

static uint64_t send_one(kyu_client_t *c, const char *body)
{
    const void *bodies[] = {body};
    size_t lens[] = {strlen(body)};
    uint64_t id = 0;
    kyu_err_t err = {0};
    assert_int_equal(kyu_client_send_async(c, "q", bodies, lens, 1, &id, &err), KYU_OK);
    return id;
}

/* Polls the next reply into rep (the same one each time) and checks it answers id. */
static void poll_into(kyu_client_t *c, kyu_reply_t *rep, kyu_message_t **msgs, uint64_t id)
{
    kyu_err_t err = {0};
    assert_int_equal(kyu_client_poll_reply(c, 5000, rep, msgs, &err), KYU_OK);
    if (rep->id != id)
        fprintf(stderr, "expected the reply to request %llu, got one to %llu\n",
                (unsigned long long)id, (unsigned long long)rep->id);
    assert_int_equal(rep->id, id);
}

/* One kyu_reply_t given to poll_reply again and again (a pipelined producer's or consumer's
 * loop) holds each reply alone: nothing of the one before (its owned arrays freed, its
 * counts, messages and error gone), an error in the middle of a pipelined batch included. */
static void test_one_reply_polled_many_times_holds_each_reply_alone(void **state)
{
    (void)state;
    fake_broker_t *fb = fake_broker_new(mixed_handler, NULL);
    kyu_client_t *c = connect_to(fake_broker_endpoint(fb), 5000);
    assert_non_null(c);
    kyu_err_t err = {0};
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    kyu_message_t *msgs = NULL;

    kyu_request_t list = {.op = KYU_OP_LIST_QUEUES};
    uint64_t id = 0;
    assert_int_equal(kyu_client_request_async(c, &list, NULL, NULL, 0, &id, &err), KYU_OK);
    poll_into(c, &rep, NULL, id);
    assert_int_equal(rep.n_queues, 2);
    assert_string_equal(rep.queues[1], "beta");

    kyu_request_t recv = {.op = KYU_OP_RECEIVE, .fields = KYU_F_QUEUE | KYU_F_MAX, .max = 1};
    snprintf(recv.queue, sizeof recv.queue, "q");
    assert_int_equal(kyu_client_request_async(c, &recv, NULL, NULL, 0, &id, &err), KYU_OK);
    poll_into(c, &rep, &msgs, id);
    assert_int_equal(rep.n_queues, 0);
    assert_null(rep.queues);
    assert_int_equal(rep.n_msgs, 1);
    assert_non_null(msgs);
    assert_int_equal(msgs[0].attrs.n, 1);
    assert_memory_equal(msgs[0].attrs.a[0].value, "red", 3);
    kyu_messages_destroy(&msgs);

    /* Pipelined sends, the second refused: the replies around it are whole. */
    uint64_t ids[4] = {send_one(c, "a"), send_one(c, "err"), send_one(c, "b"), 0};
    kyu_request_t del = {.op = KYU_OP_DELETE, .fields = KYU_F_QUEUE | KYU_F_HANDLES};
    snprintf(del.queue, sizeof del.queue, "q");
    del.n_handles = 2;
    snprintf(del.handles[0], sizeof del.handles[0], "rh");
    snprintf(del.handles[1], sizeof del.handles[1], "rh2");
    assert_int_equal(kyu_client_request_async(c, &del, NULL, NULL, 0, &ids[3], &err), KYU_OK);
    for (size_t i = 0; i < 4; i++) {
        poll_into(c, &rep, &msgs, ids[i]);
        assert_null(msgs);
        assert_int_equal(rep.n_msgs, 0);
        assert_null(rep.header);
        if (i == 1) {
            assert_int_equal(rep.status, KYU_ERR_TOO_LARGE);
            assert_string_equal(rep.error, "the first body is too large");
            assert_int_equal(rep.n_ids, 0);
        } else {
            assert_int_equal(rep.status, KYU_OK);
            assert_string_equal(rep.error, "");
            assert_int_equal(rep.n_ids, i == 3 ? 0 : 1);
            assert_int_equal(rep.n_results, i == 3 ? 2 : 0);
        }
    }
    kyu_reply_reset(&rep);
    kyu_client_destroy(&c);
    fake_broker_destroy(&fb);
}

/* A reply to no request in flight is dropped, and a poll that then times out leaves the
 * caller's reply as it was (kyu.h: "*rep is untouched"), the previous reply's owned array
 * included. */
static void test_a_stray_reply_leaves_the_callers_reply_untouched(void **state)
{
    (void)state;
    fake_broker_t *fb = fake_broker_new(mixed_handler, NULL);
    kyu_client_t *c = connect_to(fake_broker_endpoint(fb), 5000);
    assert_non_null(c);
    kyu_err_t err = {0};
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    kyu_request_t list = {.op = KYU_OP_LIST_QUEUES};
    uint64_t id = 0;
    assert_int_equal(kyu_client_request_async(c, &list, NULL, NULL, 0, &id, &err), KYU_OK);
    poll_into(c, &rep, NULL, id);
    kyu_request_t purge = {.op = KYU_OP_PURGE_QUEUE, .fields = KYU_F_QUEUE};
    snprintf(purge.queue, sizeof purge.queue, "q");
    assert_int_equal(kyu_client_request_async(c, &purge, NULL, NULL, 0, NULL, &err), KYU_OK);
    assert_int_equal(kyu_client_poll_reply(c, SHORT_TIMEOUT_MS, &rep, NULL, &err), KYU_ERR_TIMEOUT);
    assert_int_equal(rep.id, id);
    assert_int_equal(rep.n_queues, 2);
    assert_string_equal(rep.queues[0], "alpha");
    /* The next reply still lands whole. */
    uint64_t sid = send_one(c, "x");
    poll_into(c, &rep, NULL, sid);
    assert_int_equal(rep.n_ids, 1);
    assert_null(rep.queues);
    kyu_reply_reset(&rep);
    kyu_client_destroy(&c);
    fake_broker_destroy(&fb);
}

/* Of pipelined requests, one the broker never answers comes back as TIMEOUT once its
 * deadline passes, after the answered ones, the table's other entries coming and going. */
static void test_an_unanswered_request_among_answered_ones_times_out(void **state)
{
    (void)state;
    fake_broker_t *fb = fake_broker_new(mixed_handler, NULL);
    kyu_client_t *c = connect_to(fake_broker_endpoint(fb), SHORT_TIMEOUT_MS);
    assert_non_null(c);
    kyu_err_t err = {0};
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    uint64_t first = send_one(c, "a");
    kyu_request_t purge = {.op = KYU_OP_PURGE_QUEUE, .fields = KYU_F_QUEUE};
    snprintf(purge.queue, sizeof purge.queue, "q");
    uint64_t lost = 0;
    assert_int_equal(kyu_client_request_async(c, &purge, NULL, NULL, 0, &lost, &err), KYU_OK);
    uint64_t last = send_one(c, "b");
    poll_into(c, &rep, NULL, first);
    assert_int_equal(rep.status, KYU_OK);
    poll_into(c, &rep, NULL, last);
    assert_int_equal(rep.status, KYU_OK);
    assert_int_equal(kyu_client_poll_reply(c, -1, &rep, NULL, &err), KYU_OK);
    assert_int_equal(rep.id, lost);
    assert_int_equal(rep.status, KYU_ERR_TIMEOUT);
    assert_int_equal(kyu_client_inflight(c), 0);
    kyu_reply_reset(&rep);
    kyu_client_destroy(&c);
    fake_broker_destroy(&fb);
}

/* ---- failover ---- */

/* The first node: answers HELLO, says NOT_LEADER (naming arg) to everything else. */
static void follower_handler(fake_broker_t *fb, void *arg, const kyu_request_t *req,
                             const void *const *bodies, const size_t *lens, size_t n)
{
    (void)bodies, (void)lens, (void)n;
    if (req->op == KYU_OP_HELLO) {
        fake_default(fb, req);
        return;
    }
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    rep.id = req->id;
    rep.status = KYU_ERR_NOT_LEADER;
    snprintf(rep.error, sizeof rep.error, "not the leader");
    snprintf(rep.leader, sizeof rep.leader, "%s", (const char *)arg);
    fake_reply(fb, &rep, NULL, NULL, 0);
}

static void test_not_leader_moves_to_the_named_leader(void **state)
{
    (void)state;
    fake_broker_t *leader = fake_broker_new(NULL, NULL);
    char leader_ep[300];
    snprintf(leader_ep, sizeof leader_ep, "%s", fake_broker_endpoint(leader));
    fake_broker_t *other = fake_broker_new(follower_handler, leader_ep);
    fake_broker_t *follower = fake_broker_new(follower_handler, leader_ep);
    char list[1000];
    snprintf(list, sizeof list, "%s,%s,%s", fake_broker_endpoint(follower),
             fake_broker_endpoint(other), leader_ep);
    kyu_client_t *c = connect_to(list, 5000);
    assert_non_null(c);
    /* The client starts on whichever node answered HELLO first. */
    fake_broker_t *start = strcmp(kyu_client_endpoint(c), leader_ep) == 0 ? leader
                           : strcmp(kyu_client_endpoint(c), fake_broker_endpoint(other)) == 0
                               ? other
                               : follower;
    fake_broker_t *bystander = start == other ? follower : other;
    size_t before = fake_broker_calls(bystander);
    kyu_err_t err = {0};
    assert_int_equal(kyu_client_create_queue(c, "q", 30, &err), KYU_OK);
    /* It went straight to the named leader, skipping the other follower. */
    assert_string_equal(kyu_client_endpoint(c), leader_ep);
    assert_int_equal(fake_broker_calls(bystander), before);
    kyu_client_destroy(&c);
    fake_broker_destroy(&follower);
    fake_broker_destroy(&other);
    fake_broker_destroy(&leader);
}

static void test_dead_first_endpoint_moves_to_the_next(void **state)
{
    (void)state;
    fake_broker_t *dead = fake_broker_new(NULL, NULL);
    char dead_ep[300];
    snprintf(dead_ep, sizeof dead_ep, "%s", fake_broker_endpoint(dead));
    fake_broker_destroy(&dead);
    fake_broker_t *live = fake_broker_new(NULL, NULL);
    char list[700];
    snprintf(list, sizeof list, "%s,%s", dead_ep, fake_broker_endpoint(live));
    kyu_client_t *c = connect_to(list, FAILOVER_TIMEOUT_MS);
    assert_non_null(c);
    assert_string_equal(kyu_client_endpoint(c), fake_broker_endpoint(live));
    kyu_err_t err = {0};
    assert_int_equal(kyu_client_delete_queue(c, "q", &err), KYU_OK);
    kyu_client_destroy(&c);
    fake_broker_destroy(&live);
}

/* A leader that took the request and died: it answers HELLO (it was alive when the client
 * connected) and nothing after. */
typedef struct {
    uint64_t rq_client, rq_key;
} seen_key_t;

static void mute_handler(fake_broker_t *fb, void *arg, const kyu_request_t *req,
                         const void *const *bodies, const size_t *lens, size_t n)
{
    (void)bodies, (void)lens, (void)n;
    seen_key_t *seen = arg;
    if (req->op == KYU_OP_HELLO) {
        fake_default(fb, req);
        return;
    }
    seen->rq_client = req->rq_client;
    seen->rq_key = req->rq_key;
}

/* The next leader: slow to answer HELLO, so that the client starts on the mute one. */
static void slow_hello_handler(fake_broker_t *fb, void *arg, const kyu_request_t *req,
                               const void *const *bodies, const size_t *lens, size_t n)
{
    (void)bodies, (void)lens, (void)n;
    seen_key_t *seen = arg;
    if (req->op == KYU_OP_HELLO) {
        struct timespec ts = {0, 200 * 1000 * 1000};
        nanosleep(&ts, NULL);
    } else {
        seen->rq_client = req->rq_client;
        seen->rq_key = req->rq_key;
    }
    fake_default(fb, req);
}

static void test_a_leader_silent_after_taking_the_request_is_left_within_the_timeout(void **state)
{
    (void)state;
    seen_key_t on_mute = {0}, on_live = {0};
    fake_broker_t *mute = fake_broker_new(mute_handler, &on_mute);
    fake_broker_t *live = fake_broker_new(slow_hello_handler, &on_live);
    char list[700];
    snprintf(list, sizeof list, "%s,%s", fake_broker_endpoint(mute), fake_broker_endpoint(live));
    kyu_client_t *c = connect_to(list, 4000);
    assert_non_null(c);
    assert_string_equal(kyu_client_endpoint(c), fake_broker_endpoint(mute));
    kyu_err_t err = {0};
    /* A keyed write: the resend to the next leader carries the same request key. */
    assert_int_equal(kyu_client_delete_queue(c, "q", &err), KYU_OK);
    assert_string_equal(kyu_client_endpoint(c), fake_broker_endpoint(live));
    assert_true(on_mute.rq_key != 0);
    assert_true(on_live.rq_client == on_mute.rq_client);
    assert_true(on_live.rq_key == on_mute.rq_key);
    kyu_client_destroy(&c);
    fake_broker_destroy(&live);
    fake_broker_destroy(&mute);
}

/* ---- long polling ---- */

/* What a long-polling fake broker saw, and how it answers: every RECEIVE after hold_ms; the
 * first one NOT_LEADER (no leader named) when first_not_leader. */
typedef struct {
    int hold_ms;
    bool first_not_leader;
    int n;
    uint64_t fields[4];
    uint32_t waits[4];
} poll_fake_t;

static void poll_handler(fake_broker_t *fb, void *arg, const kyu_request_t *req,
                         const void *const *bodies, const size_t *lens, size_t n)
{
    (void)bodies, (void)lens, (void)n;
    poll_fake_t *pf = arg;
    if (req->op != KYU_OP_RECEIVE) {
        fake_default(fb, req);
        return;
    }
    int k = pf->n++;
    if (k < 4) {
        pf->fields[k] = req->fields;
        pf->waits[k] = req->wait;
    }
    struct timespec ts = {pf->hold_ms / 1000, (long)(pf->hold_ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
    if (k == 0 && pf->first_not_leader) {
        fake_reply_error(fb, req->id, KYU_ERR_NOT_LEADER, "leadership moved while it waited");
        return;
    }
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    rep.id = req->id;
    fake_reply(fb, &rep, NULL, NULL, 0);
}

/* A long poll is answered up to its wait later than other requests: the client waits that
 * much longer for it (here 1.5 s with a 1 s timeout and a 1 s wait), and asks once. */
static void test_a_long_polls_reply_may_come_its_wait_after_the_timeout(void **state)
{
    (void)state;
    poll_fake_t pf = {.hold_ms = 1500};
    fake_broker_t *fb = fake_broker_new(poll_handler, &pf);
    kyu_client_t *c = connect_to(fake_broker_endpoint(fb), 1000);
    assert_non_null(c);
    kyu_receive_options_t o;
    kyu_receive_options_init(&o);
    o.wait_seconds = 1;
    kyu_err_t err = {0};
    kyu_message_t *msgs = NULL;
    size_t n = 99;
    kyu_code_t rc = kyu_client_receive_with(c, "q", &o, &msgs, &n, &err);
    if (rc != KYU_OK)
        fail_msg("expected OK, got %s: %s", kyu_code_name(rc), err.msg);
    assert_int_equal(n, 0);
    assert_null(msgs);
    kyu_client_destroy(&c);
    fake_broker_destroy(&fb);
    assert_int_equal(pf.n, 1);
    assert_int_equal(pf.fields[0], KYU_F_QUEUE | KYU_F_MAX | KYU_F_WAIT | KYU_F_RQ);
    assert_int_equal(pf.waits[0], 1);
}

/* A long poll answered NOT_LEADER after it waited a while is asked again (here of the same
 * endpoint) for what is left of its wait, not the whole wait again. */
static void test_a_retried_long_poll_asks_for_what_is_left_of_its_wait(void **state)
{
    (void)state;
    poll_fake_t pf = {.hold_ms = 1100, .first_not_leader = true};
    fake_broker_t *fb = fake_broker_new(poll_handler, &pf);
    kyu_client_t *c = connect_to(fake_broker_endpoint(fb), 5000);
    assert_non_null(c);
    kyu_receive_options_t o;
    kyu_receive_options_init(&o);
    o.wait_seconds = 3;
    kyu_err_t err = {0};
    kyu_message_t *msgs = NULL;
    size_t n = 0;
    kyu_code_t rc = kyu_client_receive_with(c, "q", &o, &msgs, &n, &err);
    if (rc != KYU_OK)
        fail_msg("expected OK, got %s: %s", kyu_code_name(rc), err.msg);
    kyu_client_destroy(&c);
    fake_broker_destroy(&fb);
    assert_int_equal(pf.n, 2);
    assert_int_equal(pf.waits[0], 3);
    assert_true(pf.fields[1] & KYU_F_WAIT);
    if (pf.waits[1] >= 3)
        fail_msg("the retry asked for a wait of %u s after 1.1 s of a 3 s wait", pf.waits[1]);
}

static void test_a_wait_out_of_range_is_refused_locally(void **state)
{
    (void)state;
    poll_fake_t pf = {0};
    fake_broker_t *fb = fake_broker_new(poll_handler, &pf);
    kyu_client_t *c = connect_to(fake_broker_endpoint(fb), 5000);
    assert_non_null(c);
    kyu_receive_options_t o;
    kyu_receive_options_init(&o);
    o.wait_seconds = 21;
    kyu_err_t err = {0};
    kyu_message_t *msgs = NULL;
    size_t n = 0;
    assert_int_equal(kyu_client_receive_with(c, "q", &o, &msgs, &n, &err),
                     KYU_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.msg, "WaitTimeSeconds"));
    kyu_client_destroy(&c);
    fake_broker_destroy(&fb);
    assert_int_equal(pf.n, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_receive_returns_bodies_and_metadata),
        cmocka_unit_test(test_receive_with_wrong_frame_count_is_malformed),
        cmocka_unit_test(test_delete_reports_a_result_per_handle),
        cmocka_unit_test(test_malformed_and_stray_replies_do_not_crash),
        cmocka_unit_test(test_one_reply_polled_many_times_holds_each_reply_alone),
        cmocka_unit_test(test_a_stray_reply_leaves_the_callers_reply_untouched),
        cmocka_unit_test(test_an_unanswered_request_among_answered_ones_times_out),
        cmocka_unit_test(test_peek_returns_states_positions_and_the_next_page),
        cmocka_unit_test(test_peek_with_wrong_frames_or_no_state_is_malformed),
        cmocka_unit_test(test_not_leader_moves_to_the_named_leader),
        cmocka_unit_test(test_dead_first_endpoint_moves_to_the_next),
        cmocka_unit_test(test_a_leader_silent_after_taking_the_request_is_left_within_the_timeout),
        cmocka_unit_test(test_a_long_polls_reply_may_come_its_wait_after_the_timeout),
        cmocka_unit_test(test_a_retried_long_poll_asks_for_what_is_left_of_its_wait),
        cmocka_unit_test(test_a_wait_out_of_range_is_refused_locally),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
