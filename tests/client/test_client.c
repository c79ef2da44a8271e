/* libkyu against an in-process fake broker: HELLO, pipelining, timeouts, errors, frames,
 * failover. Each test states one behaviour of kyu.h. */
#include "fake_broker.h"
#include "kyu.h"
#include "kyu_internal.h" /* kyu_request_prepare, kyu_client_set_send_options */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#define SHORT_TIMEOUT_MS 300

static kyu_client_t *connect_to(const char *endpoints, int timeout_ms, kyu_err_t *err)
{
    kyu_client_opts_t o = kyu_client_opts_default();
    o.timeout_ms = timeout_ms;
    return kyu_client_new_opts(endpoints, &o, err);
}

/* ---- HELLO ---- */

static void hello_handler(fake_broker_t *fb, void *arg, const kyu_request_t *req,
                          const void *const *bodies, const size_t *lens, size_t n)
{
    (void)bodies, (void)lens, (void)n;
    const kyu_reply_t *templ = arg;
    if (req->op != KYU_OP_HELLO) {
        fake_default(fb, req);
        return;
    }
    kyu_reply_t rep = *templ;
    rep.id = req->id;
    fake_reply(fb, &rep, NULL, NULL, 0);
}

static void test_hello_learns_max_body(void **state)
{
    (void)state;
    kyu_reply_t templ = {.version = 1, .max_body = 1234};
    fake_broker_t *fb = fake_broker_new(hello_handler, &templ);
    kyu_err_t err = {0};
    kyu_client_t *c = connect_to(fake_broker_endpoint(fb), 5000, &err);
    assert_non_null(c);
    assert_int_equal(kyu_client_max_body(c), 1234);
    assert_string_equal(kyu_client_endpoint(c), fake_broker_endpoint(fb));
    /* A body over the broker's limit is refused before it is sent. */
    static char big[1235];
    const void *bodies[] = {big};
    size_t lens[] = {sizeof big};
    assert_int_equal(kyu_client_send(c, "q", bodies, lens, 1, NULL, &err), KYU_ERR_TOO_LARGE);
    assert_int_equal(err.code, KYU_ERR_TOO_LARGE);
    kyu_client_destroy(&c);
    assert_null(c);
    fake_broker_destroy(&fb);
}

static void test_hello_version_refused(void **state)
{
    (void)state;
    kyu_reply_t templ = {.status = KYU_ERR_VERSION};
    snprintf(templ.error, sizeof templ.error, "protocol version 1 not supported");
    fake_broker_t *fb = fake_broker_new(hello_handler, &templ);
    kyu_err_t err = {0};
    kyu_client_t *c = connect_to(fake_broker_endpoint(fb), 5000, &err);
    assert_null(c);
    assert_int_equal(err.code, KYU_ERR_VERSION);
    assert_string_equal(err.msg, "protocol version 1 not supported");
    fake_broker_destroy(&fb);
}

static void test_hello_with_other_version_is_refused(void **state)
{
    (void)state;
    kyu_reply_t templ = {.version = 2, .max_body = 10};
    fake_broker_t *fb = fake_broker_new(hello_handler, &templ);
    kyu_err_t err = {0};
    kyu_client_t *c = connect_to(fake_broker_endpoint(fb), 5000, &err);
    assert_null(c);
    assert_int_equal(err.code, KYU_ERR_VERSION);
    fake_broker_destroy(&fb);
}

static void test_no_broker_is_a_connection_error(void **state)
{
    (void)state;
    kyu_err_t err = {0};
    /* A fake that never answers stands for an unreachable broker. */
    fake_broker_t *fb = fake_broker_new(NULL, NULL);
    char ep[300];
    snprintf(ep, sizeof ep, "%s", fake_broker_endpoint(fb));
    fake_broker_destroy(&fb);
    kyu_client_t *c = connect_to(ep, SHORT_TIMEOUT_MS, &err);
    assert_null(c);
    assert_int_equal(err.code, KYU_ERR_CONNECTION);
    assert_non_null(strstr(err.msg, ep));
}

static void test_bad_endpoint_list_is_refused(void **state)
{
    (void)state;
    kyu_err_t err = {0};
    assert_null(kyu_client_new("tcp://127.0.0.1:1,,tcp://127.0.0.1:2", &err));
    assert_int_equal(err.code, KYU_ERR_INVALID_ARGUMENT);
    assert_null(kyu_client_new("", &err));
    assert_int_equal(err.code, KYU_ERR_INVALID_ARGUMENT);
}

/* ---- pipelining ---- */

#define HELD 5
typedef struct {
    kyu_request_t reqs[HELD];
    size_t n;
} hold_t;

/* Holds SENDs until HELD arrived, then answers them last first, each with id "m<req id>". */
static void reverse_handler(fake_broker_t *fb, void *arg, const kyu_request_t *req,
                            const void *const *bodies, const size_t *lens, size_t n)
{
    (void)bodies, (void)lens, (void)n;
    hold_t *h = arg;
    if (req->op != KYU_OP_SEND) {
        fake_default(fb, req);
        return;
    }
    h->reqs[h->n++] = *req;
    if (h->n < HELD)
        return;
    for (size_t i = HELD; i-- > 0;) {
        kyu_reply_t rep;
        kyu_reply_init(&rep);
        rep.id = h->reqs[i].id;
        rep.n_ids = 1;
        snprintf(rep.ids[0], sizeof rep.ids[0], "m%llu", (unsigned long long)rep.id);
        fake_reply(fb, &rep, NULL, NULL, 0);
    }
    h->n = 0;
}

static void test_pipelined_replies_out_of_order_are_matched_by_id(void **state)
{
    (void)state;
    hold_t hold = {0};
    fake_broker_t *fb = fake_broker_new(reverse_handler, &hold);
    kyu_err_t err = {0};
    kyu_client_t *c = connect_to(fake_broker_endpoint(fb), 5000, &err);
    assert_non_null(c);
    uint64_t ids[HELD];
    for (size_t i = 0; i < HELD; i++) {
        const void *body[] = {"hello"};
        size_t len[] = {5};
        assert_int_equal(kyu_client_send_async(c, "q", body, len, 1, &ids[i], &err), KYU_OK);
        for (size_t j = 0; j < i; j++)
            assert_true(ids[j] != ids[i]);
    }
    assert_int_equal(kyu_client_inflight(c), HELD);
    for (size_t i = 0; i < HELD; i++) {
        kyu_reply_t rep;
        kyu_reply_init(&rep);
        assert_int_equal(kyu_client_poll_reply(c, -1, &rep, NULL, &err), KYU_OK);
        assert_int_equal(rep.status, KYU_OK);
        /* The replies come last first: the 5th request's reply first. */
        assert_int_equal(rep.id, ids[HELD - 1 - i]);
        char want[32];
        snprintf(want, sizeof want, "m%llu", (unsigned long long)rep.id);
        assert_string_equal(rep.ids[0], want);
        kyu_reply_reset(&rep);
    }
    assert_int_equal(kyu_client_inflight(c), 0);
    kyu_client_destroy(&c);
    fake_broker_destroy(&fb);
}

/* Answers HELLO; holds the first SEND until LIST_QUEUES comes, answers the SEND first. */
static void interleave_handler(fake_broker_t *fb, void *arg, const kyu_request_t *req,
                               const void *const *bodies, const size_t *lens, size_t n)
{
    (void)bodies, (void)lens, (void)n;
    kyu_request_t *held = arg;
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    if (req->op == KYU_OP_SEND) {
        *held = *req;
        return;
    }
    if (req->op != KYU_OP_LIST_QUEUES) {
        fake_default(fb, req);
        return;
    }
    rep.id = held->id;
    rep.n_ids = 1;
    snprintf(rep.ids[0], sizeof rep.ids[0], "async-id");
    fake_reply(fb, &rep, NULL, NULL, 0);
    rep.id = req->id;
    rep.n_ids = 0;
    char(names)[2][KYU_NAME_MAX + 1] = {"alpha", "beta"};
    rep.queues = names;
    rep.n_queues = 2;
    fake_reply(fb, &rep, NULL, NULL, 0);
}

static void test_sync_call_keeps_async_replies_for_poll(void **state)
{
    (void)state;
    kyu_request_t held = {0};
    fake_broker_t *fb = fake_broker_new(interleave_handler, &held);
    kyu_err_t err = {0};
    kyu_client_t *c = connect_to(fake_broker_endpoint(fb), 5000, &err);
    assert_non_null(c);
    const void *body[] = {"x"};
    size_t len[] = {1};
    uint64_t id = 0;
    assert_int_equal(kyu_client_send_async(c, "q", body, len, 1, &id, &err), KYU_OK);
    char **names = NULL;
    size_t n = 0;
    assert_int_equal(kyu_client_list_queues(c, &names, &n, &err), KYU_OK);
    assert_int_equal(n, 2);
    assert_string_equal(names[0], "alpha");
    assert_string_equal(names[1], "beta");
    kyu_queue_names_destroy(&names);
    assert_null(names);
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    assert_int_equal(kyu_client_poll_reply(c, 0, &rep, NULL, &err), KYU_OK);
    assert_int_equal(rep.id, id);
    assert_string_equal(rep.ids[0], "async-id");
    kyu_reply_reset(&rep);
    kyu_client_destroy(&c);
    fake_broker_destroy(&fb);
}

/* ---- timeouts and errors ---- */

static void silent_handler(fake_broker_t *fb, void *arg, const kyu_request_t *req,
                           const void *const *bodies, const size_t *lens, size_t n)
{
    (void)arg, (void)bodies, (void)lens, (void)n;
    if (req->op == KYU_OP_HELLO)
        fake_default(fb, req);
}

static void test_unanswered_request_times_out(void **state)
{
    (void)state;
    fake_broker_t *fb = fake_broker_new(silent_handler, NULL);
    kyu_err_t err = {0};
    kyu_client_t *c = connect_to(fake_broker_endpoint(fb), SHORT_TIMEOUT_MS, &err);
    assert_non_null(c);
    const void *body[] = {"x"};
    size_t len[] = {1};
    uint64_t id = 0;
    assert_int_equal(kyu_client_send_async(c, "q", body, len, 1, &id, &err), KYU_OK);
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    assert_int_equal(kyu_client_poll_reply(c, -1, &rep, NULL, &err), KYU_OK);
    assert_int_equal(rep.id, id);
    assert_int_equal(rep.status, KYU_ERR_TIMEOUT);
    kyu_reply_reset(&rep);
    assert_int_equal(kyu_client_inflight(c), 0);
    /* Nothing in flight: poll says so at once. */
    assert_int_equal(kyu_client_poll_reply(c, 1000, &rep, NULL, &err), KYU_ERR_TIMEOUT);
    assert_int_equal(kyu_client_create_queue(c, "q", -1, &err), KYU_ERR_TIMEOUT);
    assert_int_equal(err.code, KYU_ERR_TIMEOUT);
    assert_non_null(strstr(err.msg, "no reply"));
    kyu_client_destroy(&c);
    fake_broker_destroy(&fb);
}

static void error_handler(fake_broker_t *fb, void *arg, const kyu_request_t *req,
                          const void *const *bodies, const size_t *lens, size_t n)
{
    (void)arg, (void)bodies, (void)lens, (void)n;
    if (req->op == KYU_OP_HELLO) {
        fake_default(fb, req);
        return;
    }
    char text[200];
    snprintf(text, sizeof text, "queue '%s' does not exist", req->queue);
    fake_reply_error(fb, req->id, KYU_ERR_NO_SUCH_QUEUE, text);
}

static void test_broker_error_code_and_text_are_surfaced(void **state)
{
    (void)state;
    fake_broker_t *fb = fake_broker_new(error_handler, NULL);
    kyu_err_t err = {0};
    kyu_client_t *c = connect_to(fake_broker_endpoint(fb), 5000, &err);
    assert_non_null(c);
    const void *body[] = {"x"};
    size_t len[] = {1};
    assert_int_equal(kyu_client_send(c, "nope", body, len, 1, NULL, &err), KYU_ERR_NO_SUCH_QUEUE);
    assert_int_equal(err.code, KYU_ERR_NO_SUCH_QUEUE);
    assert_string_equal(err.msg, "queue 'nope' does not exist");
    kyu_queue_attrs_t attrs;
    assert_int_equal(kyu_client_get_queue_attributes(c, "other", &attrs, &err),
                     KYU_ERR_NO_SUCH_QUEUE);
    assert_string_equal(err.msg, "queue 'other' does not exist");
    kyu_client_destroy(&c);
    fake_broker_destroy(&fb);
}

/* ---- BUSY ---- */

typedef struct {
    int busy_sends; /* SENDs still to answer BUSY */
    int sends;
    uint64_t keys[8];
} busy_state_t;

static void busy_handler(fake_broker_t *fb, void *arg, const kyu_request_t *req,
                         const void *const *bodies, const size_t *lens, size_t n)
{
    (void)bodies, (void)lens, (void)n;
    busy_state_t *st = arg;
    if (req->op == KYU_OP_SEND) {
        if (st->sends < 8)
            st->keys[st->sends] = req->rq_key;
        st->sends++;
        if (st->busy_sends > 0) {
            st->busy_sends--;
            fake_reply_error(fb, req->id, KYU_ERR_BUSY, "leadership is being handed over");
            return;
        }
        kyu_reply_t rep;
        kyu_reply_init(&rep);
        rep.id = req->id;
        rep.n_ids = 1;
        snprintf(rep.ids[0], sizeof rep.ids[0], "m1");
        fake_reply(fb, &rep, NULL, NULL, 0);
        return;
    } else if (req->op == KYU_OP_CLUSTER_REMOVE) {
        fake_reply_error(fb, req->id, KYU_ERR_BUSY, "another membership change runs");
        return;
    }
    fake_default(fb, req);
}

/* A leader refuses proposals for a moment while it hands leadership over (and when it is
 * saturated): a synchronous call waits a little and asks again, with the same request key,
 * within its timeout. A membership change's BUSY (another change runs) is the answer. */
static void test_a_sync_call_answered_busy_is_retried_with_its_key(void **state)
{
    (void)state;
    busy_state_t st = {.busy_sends = 2};
    fake_broker_t *fb = fake_broker_new(busy_handler, &st);
    kyu_err_t err = {0};
    kyu_client_t *c = connect_to(fake_broker_endpoint(fb), 5000, &err);
    assert_non_null(c);
    const void *body[] = {"x"};
    size_t len[] = {1};
    assert_int_equal(kyu_client_send(c, "q", body, len, 1, NULL, &err), KYU_OK);
    assert_int_equal(st.sends, 3);
    assert_true(st.keys[0] != 0);
    assert_true(st.keys[1] == st.keys[0] && st.keys[2] == st.keys[0]);
    assert_int_equal(kyu_client_cluster_remove(c, 2, &err), KYU_ERR_BUSY);
    assert_string_equal(err.msg, "another membership change runs");
    kyu_client_destroy(&c);
    fake_broker_destroy(&fb);
}

static void test_invalid_queue_name_is_refused_locally(void **state)
{
    (void)state;
    fake_broker_t *fb = fake_broker_new(NULL, NULL);
    kyu_err_t err = {0};
    kyu_client_t *c = connect_to(fake_broker_endpoint(fb), 5000, &err);
    assert_non_null(c);
    size_t before = fake_broker_requests(fb);
    assert_int_equal(kyu_client_create_queue(c, "a/b", -1, &err), KYU_ERR_INVALID_NAME);
    assert_int_equal(kyu_client_create_queue(c, "", -1, &err), KYU_ERR_INVALID_NAME);
    assert_int_equal(kyu_client_create_queue(c, "ok", 43201, &err), KYU_ERR_INVALID_ARGUMENT);
    kyu_message_t *msgs = NULL;
    size_t n = 0;
    assert_int_equal(kyu_client_receive(c, "ok", 11, -1, &msgs, &n, &err),
                     KYU_ERR_INVALID_ARGUMENT);
    assert_int_equal(fake_broker_requests(fb), before);
    kyu_client_destroy(&c);
    fake_broker_destroy(&fb);
}

/* Keeps the last non-HELLO request in arg and answers it with an id per body. */
static void record_handler(fake_broker_t *fb, void *arg, const kyu_request_t *req,
                           const void *const *bodies, const size_t *lens, size_t n)
{
    (void)bodies, (void)lens;
    if (req->op == KYU_OP_HELLO) {
        fake_default(fb, req);
        return;
    }
    *(kyu_request_t *)arg = *req;
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    rep.id = req->id;
    rep.n_ids = n;
    for (size_t i = 0; i < n; i++)
        snprintf(rep.ids[i], sizeof rep.ids[i], "id-%zu", i);
    fake_reply(fb, &rep, NULL, NULL, 0);
}

static void test_send_options_carry_a_delay_or_a_delivery_time(void **state)
{
    (void)state;
    kyu_request_t seen;
    memset(&seen, 0, sizeof seen);
    fake_broker_t *fb = fake_broker_new(record_handler, &seen);
    kyu_err_t err = {0};
    kyu_client_t *c = connect_to(fake_broker_endpoint(fb), 5000, &err);
    assert_non_null(c);
    const void *body[] = {"x", "y"};
    size_t len[] = {1, 1};
    kyu_send_options_t o;
    kyu_send_options_init(&o);
    assert_int_equal(kyu_client_send_with(c, "q", body, len, 2, &o, NULL, &err), KYU_OK);
    assert_int_equal(seen.fields & (KYU_F_DELAY | KYU_F_DELIVER_AT), 0);
    o.delay_seconds = 0;
    assert_int_equal(kyu_client_send_with(c, "q", body, len, 2, &o, NULL, &err), KYU_OK);
    assert_true(seen.fields & KYU_F_DELAY);
    assert_int_equal(seen.delay, 0);
    o.delay_seconds = 900;
    assert_int_equal(kyu_client_send_with(c, "q", body, len, 1, &o, NULL, &err), KYU_OK);
    assert_int_equal(seen.delay, 900);
    kyu_send_options_init(&o);
    o.deliver_at_ms = (int64_t)time(NULL) * 1000 + 3600 * 1000;
    assert_int_equal(kyu_client_send_with(c, "q", body, len, 1, &o, NULL, &err), KYU_OK);
    assert_true(seen.fields & KYU_F_DELIVER_AT);
    assert_false(seen.fields & KYU_F_DELAY);
    assert_int_equal(seen.deliver_at_ms, (uint64_t)o.deliver_at_ms);
    /* Refused here, before anything is sent. */
    size_t before = fake_broker_requests(fb);
    o.deliver_at_ms = (int64_t)time(NULL) * 1000 + 15 * 86400 * 1000LL;
    assert_int_equal(kyu_client_send_with(c, "q", body, len, 1, &o, NULL, &err),
                     KYU_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.msg, "at most 1209600 seconds"));
    o.deliver_at_ms = 1;
    o.delay_seconds = 1;
    assert_int_equal(kyu_client_send_with(c, "q", body, len, 1, &o, NULL, &err),
                     KYU_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.msg, "not both"));
    kyu_send_options_init(&o);
    o.delay_seconds = 901;
    assert_int_equal(kyu_client_send_with(c, "q", body, len, 1, &o, NULL, &err),
                     KYU_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.msg, "DelaySeconds must be 0 to 900"));
    uint64_t key = 0, id = 0;
    assert_int_equal(kyu_client_send_async_with(c, "q", body, len, 1, &o, &key, &id, &err),
                     KYU_ERR_INVALID_ARGUMENT);
    assert_int_equal(fake_broker_requests(fb), before);
    kyu_client_destroy(&c);
    fake_broker_destroy(&fb);
}

/* A send's request prepared over whatever the stack held (here: 0xa5 everywhere) encodes as
 * one built on a zeroed request: kyu_request_prepare_send leaves the per-message arrays as
 * they are, and every writer of a count fills the entries below it. */
static void test_a_prepared_send_encodes_as_one_built_on_a_zeroed_request(void **state)
{
    (void)state;
    static kyu_request_t dirty, clean;
    const char *groups[3] = {"g0", "g1", "g2"}, *dedups[3] = {"d0", NULL, "d2"};
    kyu_msg_attrs_t attrs[3] = {{0}};
    attrs[1].n = 1;
    attrs[1].a[0] = (kyu_msg_attr_t){"colour", 6, "String", 6, "red", 3, false};
    kyu_send_options_t opts[5];
    for (int k = 0; k < 5; k++)
        kyu_send_options_init(&opts[k]);
    opts[1].delay_seconds = 5;
    opts[2].group_ids = groups;
    opts[3].group_ids = groups;
    opts[3].dedup_ids = dedups;
    opts[4].attrs = attrs;
    for (int k = 0; k < 5; k++) {
        for (size_t n = 1; n <= 3; n++) {
            msgpack_sbuffer a, b;
            msgpack_sbuffer_init(&a);
            msgpack_sbuffer_init(&b);
            memset(&dirty, 0xa5, sizeof dirty);
            memset(&clean, 0, sizeof clean);
            kyu_request_t *reqs[2] = {&dirty, &clean};
            msgpack_sbuffer *out[2] = {&a, &b};
            for (int j = 0; j < 2; j++) {
                kyu_err_t err = {0};
                kyu_request_prepare_send(reqs[j]);
                assert_int_equal(kyu_client_set_queue(reqs[j], "q", &err), KYU_OK);
                assert_int_equal(kyu_client_set_send_options(reqs[j], &opts[k], n, &err), KYU_OK);
                reqs[j]->id = 7;
                kyu_request_encode(reqs[j], out[j]);
            }
            if (a.size != b.size || memcmp(a.data, b.data, a.size) != 0)
                fprintf(stderr,
                        "options %d, %zu bodies: %zu bytes over a dirty request, %zu over "
                        "a zeroed one\n",
                        k, n, a.size, b.size);
            assert_int_equal(a.size, b.size);
            assert_memory_equal(a.data, b.data, a.size);
            msgpack_sbuffer_destroy(&a);
            msgpack_sbuffer_destroy(&b);
        }
    }
}

/* Records the op, queue and tag count of every request but HELLO, and answers each. */
typedef struct {
    size_t n;
    uint32_t op[8];
    char queue[8][KYU_NAME_MAX + 1];
    size_t n_tags[8], n_bodies[8];
} trail_t;

static void trail_handler(fake_broker_t *fb, void *arg, const kyu_request_t *req,
                          const void *const *bodies, const size_t *lens, size_t n)
{
    (void)bodies, (void)lens;
    trail_t *t = arg;
    if (req->op == KYU_OP_HELLO) {
        fake_default(fb, req);
        return;
    }
    if (t->n < 8) {
        t->op[t->n] = req->op;
        snprintf(t->queue[t->n], sizeof t->queue[0], "%s", req->queue);
        t->n_tags[t->n] = req->qx.tags.n;
        t->n_bodies[t->n++] = n;
    }
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    rep.id = req->id;
    rep.n_ids = req->op == KYU_OP_SEND ? n : 0;
    for (size_t i = 0; i < rep.n_ids; i++)
        snprintf(rep.ids[i], sizeof rep.ids[i], "id-%zu", i);
    fake_reply(fb, &rep, NULL, NULL, 0);
}

/* The client encodes every header into one buffer it keeps: a small one after a large one
 * (50 tags, some 20 KB) goes out alone and whole. */
static void test_a_small_header_after_a_large_one_is_sent_whole(void **state)
{
    (void)state;
    static trail_t trail;
    memset(&trail, 0, sizeof trail);
    fake_broker_t *fb = fake_broker_new(trail_handler, &trail);
    kyu_err_t err = {0};
    kyu_client_t *c = connect_to(fake_broker_endpoint(fb), 5000, &err);
    assert_non_null(c);
    kyu_queue_settings_t qs;
    kyu_queue_settings_init(&qs);
    static char keys[KYU_TAGS_MAX][KYU_TAG_KEY_MAX + 1], value[KYU_TAG_VALUE_MAX + 1];
    memset(value, 'v', KYU_TAG_VALUE_MAX);
    qs.n_tags = KYU_TAGS_MAX;
    for (size_t i = 0; i < KYU_TAGS_MAX; i++) {
        memset(keys[i], 'k', KYU_TAG_KEY_MAX);
        snprintf(keys[i], 8, "%05zu", i);
        keys[i][5] = 'k';
        qs.tag_keys[i] = keys[i];
        qs.tag_values[i] = value;
    }
    assert_int_equal(kyu_client_set_queue_attributes(c, "tagged", &qs, &err), KYU_OK);
    const void *body[] = {"x"};
    size_t len[] = {1};
    for (int i = 0; i < 2; i++) {
        uint64_t id = 0;
        assert_int_equal(kyu_client_send_async(c, "small", body, len, 1, &id, &err), KYU_OK);
        kyu_reply_t rep;
        kyu_reply_init(&rep);
        assert_int_equal(kyu_client_poll_reply(c, -1, &rep, NULL, &err), KYU_OK);
        assert_int_equal(rep.status, KYU_OK);
        assert_int_equal(rep.id, id);
        kyu_reply_reset(&rep);
    }
    assert_int_equal(trail.n, 3);
    assert_int_equal(trail.op[0], KYU_OP_SET_QUEUE_ATTRIBUTES);
    assert_int_equal(trail.n_tags[0], KYU_TAGS_MAX);
    for (size_t i = 1; i < 3; i++) {
        assert_int_equal(trail.op[i], KYU_OP_SEND);
        assert_string_equal(trail.queue[i], "small");
        assert_int_equal(trail.n_tags[i], 0);
        assert_int_equal(trail.n_bodies[i], 1);
    }
    kyu_client_destroy(&c);
    fake_broker_destroy(&fb);
}

/* What batch_handler saw of the last SEND (the request's bytes are gone after the handler). */
typedef struct {
    uint64_t fields;
    size_t n_entries;
    char entry_ids[KYU_BATCH_MAX][KYU_ENTRY_ID_MAX + 1];
    int64_t entry_delay[KYU_BATCH_MAX];
    size_t n_attrs[KYU_BATCH_MAX];
    char first_attr[KYU_BATCH_MAX][32];
} batch_seen_t;

/* Answers a SEND: entry "bad" (if any) failed TOO_LARGE, the others sent. */
static void batch_handler(fake_broker_t *fb, void *arg, const kyu_request_t *req,
                          const void *const *bodies, const size_t *lens, size_t n)
{
    (void)bodies, (void)lens;
    if (req->op == KYU_OP_HELLO) {
        fake_default(fb, req);
        return;
    }
    batch_seen_t *seen = arg;
    memset(seen, 0, sizeof *seen);
    seen->fields = req->fields;
    seen->n_entries = req->n_entries;
    memcpy(seen->entry_ids, req->entry_ids, sizeof seen->entry_ids);
    memcpy(seen->entry_delay, req->entry_delay, sizeof seen->entry_delay);
    for (size_t i = 0; i < n && (req->fields & KYU_F_MSG_ATTRS); i++) {
        seen->n_attrs[i] = req->attrs[i].n;
        if (req->attrs[i].n)
            snprintf(seen->first_attr[i], sizeof seen->first_attr[i], "%.*s",
                     (int)req->attrs[i].a[0].name_len, req->attrs[i].a[0].name);
    }
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    rep.id = req->id;
    rep.n_ids = n;
    bool failed = false;
    for (size_t i = 0; i < n; i++) {
        bool bad = (req->fields & KYU_F_ENTRY_IDS) && strcmp(req->entry_ids[i], "bad") == 0;
        failed = failed || bad;
        if (!bad) {
            snprintf(rep.ids[i], sizeof rep.ids[i], "id-%zu", i);
            snprintf(rep.md5_body[i], sizeof rep.md5_body[i], "%032zu", i);
        }
        rep.results[i] = bad ? KYU_ERR_TOO_LARGE : KYU_OK;
        snprintf(rep.errors[i], sizeof rep.errors[i], "%s", bad ? "message 3 is too large" : "");
    }
    rep.n_results = rep.n_errors = failed ? n : 0;
    fake_reply(fb, &rep, NULL, NULL, 0);
}

static void test_a_send_batch_carries_its_entries_and_maps_their_results(void **state)
{
    (void)state;
    batch_seen_t seen;
    fake_broker_t *fb = fake_broker_new(batch_handler, &seen);
    kyu_err_t err = {0};
    kyu_client_t *c = connect_to(fake_broker_endpoint(fb), 5000, &err);
    assert_non_null(c);
    kyu_msg_attrs_t attrs = {.n = 1};
    attrs.a[0] = (kyu_msg_attr_t){
        .name = "k", .name_len = 1, .type = "String", .type_len = 6, .value = "v", .value_len = 1};
    kyu_batch_entry_t e[3] = {
        {.id = "a", .body = "x", .len = 1, .delay_seconds = -1},
        {.id = "b-2", .body = "y", .len = 1, .delay_seconds = 5, .attrs = &attrs},
        {.id = "bad", .body = "z", .len = 1, .delay_seconds = -1},
    };
    kyu_batch_result_t out[3];
    assert_int_equal(kyu_client_send_batch(c, "q", e, 3, out, &err), KYU_ERR_TOO_LARGE);
    assert_non_null(strstr(err.msg, "entry 'bad': message 3 is too large"));
    assert_true(seen.fields & KYU_F_ENTRY_IDS);
    assert_true(seen.fields & KYU_F_ENTRY_DELAYS);
    assert_true(seen.fields & KYU_F_MSG_ATTRS);
    assert_int_equal(seen.n_entries, 3);
    assert_string_equal(seen.entry_ids[1], "b-2");
    assert_int_equal(seen.entry_delay[0], -1);
    assert_int_equal(seen.entry_delay[1], 5);
    assert_int_equal(seen.n_attrs[0], 0);
    assert_string_equal(seen.first_attr[1], "k");
    assert_int_equal(out[0].code, KYU_OK);
    assert_string_equal(out[0].sent.message_id, "id-0");
    assert_string_equal(out[1].sent.md5_body, "00000000000000000000000000000001");
    assert_int_equal(out[2].code, KYU_ERR_TOO_LARGE);
    assert_string_equal(out[2].error, "message 3 is too large");
    /* every entry sent: KYU_OK, and no delay or attribute fields when none is given */
    e[1].delay_seconds = -1;
    e[1].attrs = NULL;
    e[2].id = "c";
    assert_int_equal(kyu_client_send_batch(c, "q", e, 3, out, &err), KYU_OK);
    assert_int_equal(seen.fields & (KYU_F_ENTRY_DELAYS | KYU_F_MSG_ATTRS), 0);
    assert_string_equal(out[2].sent.message_id, "id-2");
    /* refused here, nothing sent: repeated or invalid ids, a count out of range */
    size_t before = fake_broker_requests(fb);
    e[2].id = "a";
    assert_int_equal(kyu_client_send_batch(c, "q", e, 3, out, &err), KYU_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.msg, "BatchEntryIdsNotDistinct"));
    assert_int_equal(out[0].code, KYU_ERR_INVALID_ARGUMENT);
    e[2].id = "no spaces";
    assert_int_equal(kyu_client_send_batch(c, "q", e, 3, out, &err), KYU_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.msg, "InvalidBatchEntryId"));
    assert_int_equal(kyu_client_send_batch(c, "q", e, 0, out, &err), KYU_ERR_INVALID_ARGUMENT);
    assert_int_equal(fake_broker_requests(fb), before);
    kyu_client_destroy(&c);
    fake_broker_destroy(&fb);
}

/* PUBLISH batches (PublishBatch): the entries go with their ids and attributes, never a delay;
 * the results map back; TooManyEntriesInBatchRequest, EmptyBatchRequest, BatchRequestTooLong
 * (256 KiB together) and the ids' rules are refused before anything is sent. */
static void test_a_publish_batch_carries_its_entries_and_refuses_locally(void **state)
{
    (void)state;
    batch_seen_t seen;
    fake_broker_t *fb = fake_broker_new(batch_handler, &seen);
    kyu_err_t err = {0};
    kyu_client_t *c = connect_to(fake_broker_endpoint(fb), 5000, &err);
    assert_non_null(c);
    kyu_batch_entry_t e[KYU_BATCH_MAX + 1];
    for (size_t i = 0; i < KYU_BATCH_MAX + 1; i++)
        e[i] = (kyu_batch_entry_t){.id = "x", .body = "m", .len = 1, .delay_seconds = 7};
    e[0].id = "a";
    e[1].id = "bad";
    kyu_batch_result_t out[KYU_BATCH_MAX + 1];
    assert_int_equal(kyu_client_publish_batch(c, "t", e, 2, out, &err), KYU_ERR_TOO_LARGE);
    assert_true(seen.fields & KYU_F_ENTRY_IDS);
    assert_false(seen.fields & KYU_F_ENTRY_DELAYS); /* topics have no delays */
    assert_int_equal(seen.n_entries, 2);
    assert_string_equal(seen.entry_ids[1], "bad");
    assert_int_equal(out[0].code, KYU_OK);
    assert_string_equal(out[0].sent.message_id, "id-0");
    assert_int_equal(out[1].code, KYU_ERR_TOO_LARGE);
    size_t before = fake_broker_requests(fb);
    assert_int_equal(kyu_client_publish_batch(c, "t", e, KYU_BATCH_MAX + 1, out, &err),
                     KYU_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.msg, "TooManyEntriesInBatchRequest"));
    assert_int_equal(kyu_client_publish_batch(c, "t", e, 0, out, &err), KYU_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.msg, "EmptyBatchRequest"));
    e[1].id = "a";
    assert_int_equal(kyu_client_publish_batch(c, "t", e, 2, out, &err), KYU_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.msg, "BatchEntryIdsNotDistinct"));
    static char big[200 * 1024];
    memset(big, 'b', sizeof big);
    e[1] = (kyu_batch_entry_t){.id = "b", .body = big, .len = sizeof big};
    e[2] = (kyu_batch_entry_t){.id = "c", .body = big, .len = sizeof big};
    assert_int_equal(kyu_client_publish_batch(c, "t", e, 3, out, &err), KYU_ERR_TOO_LARGE);
    assert_non_null(strstr(err.msg, "BatchRequestTooLong"));
    assert_int_equal(out[2].code, KYU_ERR_TOO_LARGE);
    assert_int_equal(fake_broker_requests(fb), before);
    kyu_client_destroy(&c);
    fake_broker_destroy(&fb);
}

static void test_send_options_carry_attributes_checked_first(void **state)
{
    (void)state;
    batch_seen_t seen;
    fake_broker_t *fb = fake_broker_new(batch_handler, &seen);
    kyu_err_t err = {0};
    kyu_client_t *c = connect_to(fake_broker_endpoint(fb), 5000, &err);
    assert_non_null(c);
    const void *body[] = {"x", "y"};
    size_t len[] = {1, 1};
    kyu_msg_attrs_t attrs[2] = {{.n = 0}, {.n = 1}};
    attrs[1].a[0] = (kyu_msg_attr_t){
        .name = "n", .name_len = 1, .type = "Number", .type_len = 6, .value = "12", .value_len = 2};
    kyu_send_options_t o;
    kyu_send_options_init(&o);
    o.attrs = attrs;
    kyu_sent_message_t sent[2];
    assert_int_equal(kyu_client_send_messages(c, "q", body, len, 2, &o, sent, &err), KYU_OK);
    assert_true(seen.fields & KYU_F_MSG_ATTRS);
    assert_int_equal(seen.n_attrs[0], 0);
    assert_string_equal(seen.first_attr[1], "n");
    assert_string_equal(sent[1].message_id, "id-1");
    size_t before = fake_broker_requests(fb);
    attrs[1].a[0].value = "twelve";
    attrs[1].a[0].value_len = 6;
    assert_int_equal(kyu_client_send_messages(c, "q", body, len, 2, &o, sent, &err),
                     KYU_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.msg, "message 2: message attribute 'n' has Number value"));
    assert_int_equal(fake_broker_requests(fb), before);
    kyu_client_destroy(&c);
    fake_broker_destroy(&fb);
}

/* The other queue attributes travel as their fields; bad ones are refused before sending. */
static void test_queue_settings_carry_the_other_attributes(void **state)
{
    (void)state;
    kyu_request_t *seen = calloc(1, sizeof *seen);
    assert_non_null(seen);
    fake_broker_t *fb = fake_broker_new(record_handler, seen);
    kyu_err_t err = {0};
    kyu_client_t *c = connect_to(fake_broker_endpoint(fb), 5000, &err);
    assert_non_null(c);
    kyu_queue_settings_t s;
    kyu_queue_settings_init(&s);
    assert_int_equal(kyu_client_create_queue_with(c, "q", &s, &err), KYU_OK);
    assert_int_equal(seen->fields & KYU_F_QUEUE_EXT_, 0);
    s.retention_seconds = 60;
    s.receive_wait_seconds = 20;
    s.dead_letter_queue = "dlq";
    s.redrive_allow = KYU_REDRIVE_BY_QUEUE;
    s.n_redrive_sources = 2;
    s.redrive_sources[0] = "a";
    s.redrive_sources[1] = "b";
    s.n_tags = 2;
    s.tag_keys[0] = "team";
    s.tag_values[0] = "core";
    s.tag_keys[1] = "empty";
    s.tag_values[1] = "";
    assert_int_equal(kyu_client_create_queue_with(c, "q", &s, &err), KYU_OK);
    assert_int_equal(seen->fields & KYU_F_QUEUE_EXT_,
                     KYU_F_QUEUE_EXT_ &
                         ~(KYU_F_FIFO | KYU_F_CBD | KYU_F_DEDUP_SCOPE | KYU_F_THROUGHPUT));
    assert_int_equal(seen->qx.retention, 60);
    assert_int_equal(seen->qx.receive_wait, 20);
    assert_string_equal(seen->qx.dlq, "dlq");
    assert_int_equal(seen->qx.max_receive_count, 10); /* the default */
    assert_int_equal(seen->qx.allow, KYU_REDRIVE_BY_QUEUE);
    assert_int_equal(seen->qx.n_sources, 2);
    assert_string_equal(seen->qx.sources[1], "b");
    assert_int_equal(seen->qx.tags.n, 2);
    assert_string_equal(seen->qx.tags.keys[0], "team");
    assert_string_equal(seen->qx.tags.values[1], "");
    kyu_queue_settings_init(&s);
    s.dead_letter_queue = ""; /* removes the RedrivePolicy */
    assert_int_equal(kyu_client_set_queue_attributes(c, "q", &s, &err), KYU_OK);
    assert_int_equal(seen->fields & KYU_F_QUEUE_EXT_, KYU_F_REDRIVE);
    assert_string_equal(seen->qx.dlq, "");
    /* Refused here, before anything is sent. */
    size_t before = fake_broker_requests(fb);
    const struct {
        int retention, wait, mrc;
        const char *dlq;
        int allow;
        size_t n_sources, n_tags;
        const char *text;
    } bad[] = {
        {59, -1, -1, NULL, -1, 0, 0, "MessageRetentionPeriod must be 60 to 1209600"},
        {-1, 21, -1, NULL, -1, 0, 0, "ReceiveMessageWaitTimeSeconds must be 0 to 20"},
        {-1, -1, 1001, "dlq", -1, 0, 0, "maxReceiveCount must be 1 to 1000"},
        {-1, -1, 5, NULL, -1, 0, 0, "goes with a dead-letter queue"},
        {-1, -1, -1, "a/b", -1, 0, 0, "queue names are 1 to 80"},
        {-1, -1, -1, NULL, KYU_REDRIVE_BY_QUEUE, 0, 0, "byQueue with 1 to 10"},
        {-1, -1, -1, NULL, KYU_REDRIVE_DENY_ALL, 1, 0, "byQueue with 1 to 10"},
        {-1, -1, -1, NULL, -1, 0, KYU_TAGS_MAX + 1, "at most 50 tags"},
        {-1, -1, -1, NULL, -1, 0, 2, "given twice"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kyu_queue_settings_init(&s);
        s.retention_seconds = bad[i].retention;
        s.receive_wait_seconds = bad[i].wait;
        s.max_receive_count = bad[i].mrc;
        s.dead_letter_queue = bad[i].dlq;
        s.redrive_allow = bad[i].allow;
        s.n_redrive_sources = bad[i].n_sources;
        s.redrive_sources[0] = "a";
        s.n_tags = bad[i].n_tags;
        for (size_t t = 0; t < KYU_TAGS_MAX; t++) {
            s.tag_keys[t] = "same";
            s.tag_values[t] = "v";
        }
        kyu_err_clear(&err);
        kyu_code_t rc = kyu_client_create_queue_with(c, "q", &s, &err);
        if (rc == KYU_OK || !strstr(err.msg, bad[i].text))
            fail_msg("case %zu: expected '%s', got %s: %s", i, bad[i].text, kyu_code_name(rc),
                     err.msg);
    }
    assert_int_equal(fake_broker_requests(fb), before);
    kyu_client_destroy(&c);
    fake_broker_destroy(&fb);
    free(seen);
}

/* ---- message move tasks ---- */

/* Answers START_MOVE_TASK with a task made of the request (it checks what travelled), and
 * LIST_MOVE_TASKS with two. */
static void move_handler(fake_broker_t *fb, void *arg, const kyu_request_t *req,
                         const void *const *bodies, const size_t *lens, size_t n)
{
    (void)arg, (void)bodies, (void)lens, (void)n;
    kyu_move_task_t t[2] = {{.id = 42, .status = KYU_MOVE_RUNNING, .to_move = 9}, {.id = 41}};
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    rep.id = req->id;
    if (req->op == KYU_OP_START_MOVE_TASK) {
        /* what travelled: the queue, dst, mps and a request key */
        if (!(req->fields & KYU_F_RQ) || !(req->fields & KYU_F_DEST) || req->rate != 7) {
            fake_reply_error(fb, req->id, KYU_ERR_INVALID_ARGUMENT, "fields missing");
            return;
        }
        snprintf(t[0].source, sizeof t[0].source, "%s", req->queue);
        snprintf(t[0].destination, sizeof t[0].destination, "%s", req->dest);
        t[0].rate = req->rate;
        rep.n_tasks = 1;
    } else if (req->op == KYU_OP_LIST_MOVE_TASKS) {
        t[1].status = KYU_MOVE_COMPLETED;
        rep.n_tasks = req->max < 2 ? req->max : 2;
    } else {
        fake_default(fb, req);
        return;
    }
    rep.tasks = t;
    fake_reply(fb, &rep, NULL, NULL, 0);
}

static void test_move_tasks_carry_their_fields_and_bad_ones_are_refused_before_sending(void **state)
{
    (void)state;
    fake_broker_t *fb = fake_broker_new(move_handler, NULL);
    kyu_err_t err;
    kyu_client_t *c = connect_to(fake_broker_endpoint(fb), 5000, &err);
    assert_non_null(c);
    kyu_move_task_t t;
    assert_int_equal(kyu_client_start_move_task(c, "dlq", "jobs", 7, &t, &err), KYU_OK);
    assert_int_equal(t.id, 42);
    assert_int_equal(t.status, KYU_MOVE_RUNNING);
    assert_string_equal(t.source, "dlq");
    assert_string_equal(t.destination, "jobs");
    assert_int_equal(t.rate, 7);
    kyu_move_task_t list[KYU_MOVE_TASKS_MAX];
    size_t n = 0;
    assert_int_equal(kyu_client_list_move_tasks(c, "dlq", 10, list, &n, &err), KYU_OK);
    assert_int_equal(n, 2);
    assert_int_equal(list[1].status, KYU_MOVE_COMPLETED);
    assert_int_equal(kyu_client_list_move_tasks(c, "dlq", 1, list, &n, &err), KYU_OK);
    assert_int_equal(n, 1);
    size_t before = fake_broker_requests(fb);
    assert_int_equal(kyu_client_start_move_task(c, "dlq", NULL, 0, &t, &err),
                     KYU_ERR_INVALID_ARGUMENT);
    assert_int_equal(kyu_client_start_move_task(c, "dlq", NULL, 501, &t, &err),
                     KYU_ERR_INVALID_ARGUMENT);
    assert_int_equal(kyu_client_start_move_task(c, "dlq", "no/slash", -1, &t, &err),
                     KYU_ERR_INVALID_NAME);
    assert_int_equal(kyu_client_list_move_tasks(c, "dlq", 11, list, &n, &err),
                     KYU_ERR_INVALID_ARGUMENT);
    assert_int_equal(kyu_client_cancel_move_task(c, "bad name", &t, &err), KYU_ERR_INVALID_NAME);
    assert_int_equal(fake_broker_requests(fb), before);
    /* A reply without the task it must name is MALFORMED, not a task of zeros. */
    assert_int_equal(kyu_client_cancel_move_task(c, "dlq", &t, &err), KYU_ERR_MALFORMED);
    kyu_client_destroy(&c);
    fake_broker_destroy(&fb);
}

/* ---- replies on the stack ---- */

#define SUB_ID "0f2c5a2e-6f0b-4c53-9a43-1d5f8e2b7c10"

/* Leaves the stack below the caller dirty (0xa5), where the next call's locals will be. */
static __attribute__((noinline)) void dirty_stack(void)
{
    volatile unsigned char junk[128 * 1024];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = 0xa5;
}

static void subscribe_handler(fake_broker_t *fb, void *arg, const kyu_request_t *req,
                              const void *const *bodies, const size_t *lens, size_t n)
{
    (void)arg, (void)bodies, (void)lens, (void)n;
    if (req->op != KYU_OP_SUBSCRIBE) {
        fake_default(fb, req);
        return;
    }
    kyu_reply_t *rep = calloc(1, sizeof *rep);
    assert_non_null(rep);
    rep->id = req->id;
    rep->n_ids = 1;
    strcpy(rep->ids[0], SUB_ID);
    fake_reply(fb, rep, NULL, NULL, 0);
    free(rep);
}

/* The subscription calls answer from a reply of their own that starts cleared, whatever their
 * stack held before (it held a reply's heap pointers, freed as such). */
static void test_subscription_calls_work_over_a_dirty_stack(void **state)
{
    (void)state;
    fake_broker_t *fb = fake_broker_new(subscribe_handler, NULL);
    kyu_err_t err = {0};
    kyu_client_t *c = connect_to(fake_broker_endpoint(fb), 5000, &err);
    assert_non_null(c);
    char id[KYU_SUB_ID_LEN + 1] = "";
    dirty_stack();
    assert_int_equal(kyu_client_subscribe(c, "t", "q", true, id, &err), KYU_OK);
    assert_string_equal(id, SUB_ID);
    kyu_sub_change_t change = {.raw = 0, .policy = NULL, .no_policy = true, .body_scope = -1};
    dirty_stack();
    assert_int_equal(kyu_client_set_subscription_attributes(c, SUB_ID, &change, &err), KYU_OK);
    kyu_client_destroy(&c);
    fake_broker_destroy(&fb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hello_learns_max_body),
        cmocka_unit_test(
            test_move_tasks_carry_their_fields_and_bad_ones_are_refused_before_sending),
        cmocka_unit_test(test_hello_version_refused),
        cmocka_unit_test(test_hello_with_other_version_is_refused),
        cmocka_unit_test(test_no_broker_is_a_connection_error),
        cmocka_unit_test(test_bad_endpoint_list_is_refused),
        cmocka_unit_test(test_pipelined_replies_out_of_order_are_matched_by_id),
        cmocka_unit_test(test_sync_call_keeps_async_replies_for_poll),
        cmocka_unit_test(test_unanswered_request_times_out),
        cmocka_unit_test(test_broker_error_code_and_text_are_surfaced),
        cmocka_unit_test(test_a_sync_call_answered_busy_is_retried_with_its_key),
        cmocka_unit_test(test_invalid_queue_name_is_refused_locally),
        cmocka_unit_test(test_send_options_carry_a_delay_or_a_delivery_time),
        cmocka_unit_test(test_a_prepared_send_encodes_as_one_built_on_a_zeroed_request),
        cmocka_unit_test(test_a_small_header_after_a_large_one_is_sent_whole),
        cmocka_unit_test(test_a_send_batch_carries_its_entries_and_maps_their_results),
        cmocka_unit_test(test_a_publish_batch_carries_its_entries_and_refuses_locally),
        cmocka_unit_test(test_send_options_carry_attributes_checked_first),
        cmocka_unit_test(test_queue_settings_carry_the_other_attributes),
        cmocka_unit_test(test_subscription_calls_work_over_a_dirty_stack),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
