/* libkyu's consumer (kyu.h) against the in-process fake broker: what it sends for the
 * results of a batch, a handler past its timeout, and a session that ends (a "closed" push,
 * a silent broker). Each test states one behaviour; every wait is bounded. */
#include "fake_broker.h"
#include "kyu.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

enum { MODE_PUSH, MODE_CLOSE_FIRST, MODE_SILENT_FIRST };
#define REC_MAX 64

typedef struct {
    pthread_mutex_t mu;
    int mode;
    const char *bodies[3];
    size_t n_bodies;
    int opens, closes, heartbeats;
    uint64_t sid, open_id;
    bool pushed, closed_sent;
    size_t n_deleted, n_released;
    char deleted[REC_MAX][KYU_HANDLE_MAX + 1];
    char released[REC_MAX][KYU_HANDLE_MAX + 1];
    uint32_t released_vt[REC_MAX];
} fake_state_t;

static void ok_results(fake_broker_t *fb, const kyu_request_t *req)
{
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    rep.id = req->id;
    rep.n_results = req->n_handles;
    fake_reply(fb, &rep, NULL, NULL, 0);
}

static void push_messages(fake_broker_t *fb, fake_state_t *s)
{
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    rep.id = s->open_id;
    rep.sid = s->sid;
    rep.ev = KYU_EV_MSGS;
    rep.n_msgs = s->n_bodies;
    const void *bodies[3];
    size_t lens[3];
    for (size_t i = 0; i < s->n_bodies; i++) {
        snprintf(rep.msgs[i].message_id, sizeof rep.msgs[i].message_id, "m-%zu", i);
        snprintf(rep.msgs[i].handle, sizeof rep.msgs[i].handle, "rh-%zu", i);
        rep.msgs[i].receive_count = 1;
        rep.msgs[i].sent_ms = 1700000000000;
        rep.msgs[i].first_receive_ms = 1700000000001;
        bodies[i] = s->bodies[i];
        lens[i] = strlen(s->bodies[i]);
    }
    fake_reply(fb, &rep, bodies, lens, s->n_bodies);
}

static void handler(fake_broker_t *fb, void *arg, const kyu_request_t *req,
                    const void *const *bodies, const size_t *lens, size_t n)
{
    (void)bodies, (void)lens, (void)n;
    fake_state_t *s = arg;
    pthread_mutex_lock(&s->mu);
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    rep.id = req->id;
    switch (req->op) {
    case KYU_OP_GET_QUEUE_ATTRIBUTES:
        rep.has_attrs = true;
        rep.attrs.visibility_timeout = 30;
        fake_reply(fb, &rep, NULL, NULL, 0);
        break;
    case KYU_OP_WORKER_OPEN:
        s->opens++;
        s->sid = 100 + (uint64_t)s->opens;
        s->open_id = req->id;
        rep.sid = s->sid;
        rep.hb_ms = req->hb_ms;
        rep.liveness = req->liveness;
        fake_reply(fb, &rep, NULL, NULL, 0);
        if (s->mode == MODE_PUSH && !s->pushed) {
            s->pushed = true;
            push_messages(fb, s);
        }
        break;
    case KYU_OP_WORKER_HEARTBEAT:
        s->heartbeats++;
        if (s->mode == MODE_SILENT_FIRST && s->opens == 1)
            break; /* the first session's broker says nothing */
        if (req->sid != s->sid) {
            fake_reply_error(fb, req->id, KYU_ERR_NO_SESSION, "no such session");
            break;
        }
        fake_reply(fb, &rep, NULL, NULL, 0);
        if (s->mode == MODE_CLOSE_FIRST && s->opens == 1 && !s->closed_sent) {
            s->closed_sent = true;
            kyu_reply_t closed;
            kyu_reply_init(&closed);
            closed.id = s->open_id;
            closed.sid = s->sid;
            closed.ev = KYU_EV_CLOSED;
            closed.status = KYU_ERR_NO_SESSION;
            snprintf(closed.error, sizeof closed.error, "declared dead");
            fake_reply(fb, &closed, NULL, NULL, 0);
        }
        break;
    case KYU_OP_DELETE:
        for (size_t i = 0; i < req->n_handles && s->n_deleted < REC_MAX; i++)
            snprintf(s->deleted[s->n_deleted++], KYU_HANDLE_MAX + 1, "%s", req->handles[i]);
        ok_results(fb, req);
        break;
    case KYU_OP_CHANGE_VISIBILITY:
        for (size_t i = 0; i < req->n_handles && s->n_released < REC_MAX; i++) {
            s->released_vt[s->n_released] = req->vt;
            snprintf(s->released[s->n_released++], KYU_HANDLE_MAX + 1, "%s", req->handles[i]);
        }
        ok_results(fb, req);
        break;
    case KYU_OP_WORKER_CLOSE:
        s->closes++;
        fake_reply(fb, &rep, NULL, NULL, 0);
        break;
    default:
        fake_default(fb, req);
    }
    pthread_mutex_unlock(&s->mu);
}

/* ---- the consumer, run on a thread of its own ---- */

typedef struct {
    kyu_consumer_t *c;
    kyu_code_t rc;
    pthread_t thread;
} runner_t;

static void *run(void *arg)
{
    runner_t *r = arg;
    kyu_err_t err = {0};
    r->rc = kyu_consumer_run(r->c, &err);
    if (r->rc != KYU_OK)
        print_error("kyu_consumer_run: %s\n", err.msg);
    return NULL;
}

static void quiet(void *arg, const char *line)
{
    (void)arg, (void)line;
}

static bool fail_the_fail_body(kyu_batch_t *b, void *arg)
{
    (void)arg;
    for (size_t i = 0; i < b->n; i++)
        if (strcmp((const char *)b->msgs[i].body, "fail") == 0)
            b->results[i] = KYU_ITEM_FAILED;
    return true;
}

static bool wait_for_cancel(kyu_batch_t *b, void *arg)
{
    (void)arg;
    for (int i = 0; i < 1000 && !kyu_batch_cancelled(b); i++) {
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return true;
}

static void start(runner_t *r, fake_broker_t *fb, kyu_batch_handler_fn *h, int timeout_ms)
{
    kyu_consumer_opts_t o = kyu_consumer_opts_default();
    o.queue = "q";
    o.heartbeat_ms = 100;
    o.liveness = 3;
    o.handler_timeout_ms = timeout_ms;
    o.client_timeout_ms = 1000;
    o.log = quiet;
    kyu_err_t err = {0};
    r->c = kyu_consumer_new(fake_broker_endpoint(fb), &o, h, NULL, &err);
    if (!r->c)
        fail_msg("kyu_consumer_new: %s", err.msg);
    assert_int_equal(pthread_create(&r->thread, NULL, run, r), 0);
}

static void stop(runner_t *r)
{
    kyu_consumer_drain(r->c);
    assert_int_equal(pthread_join(r->thread, NULL), 0);
    assert_int_equal(r->rc, KYU_OK);
    kyu_consumer_destroy(&r->c);
}

/* Waits (bounded, 10 s) until cond holds under the state's lock. */
#define WAIT_FOR(s, cond)                                                                          \
    do {                                                                                           \
        bool met_ = false;                                                                         \
        for (int i_ = 0; i_ < 1000 && !met_; i_++) {                                               \
            pthread_mutex_lock(&(s)->mu);                                                          \
            met_ = (cond);                                                                         \
            pthread_mutex_unlock(&(s)->mu);                                                        \
            if (!met_) {                                                                           \
                struct timespec ts_ = {0, 10 * 1000000L};                                          \
                nanosleep(&ts_, NULL);                                                             \
            }                                                                                      \
        }                                                                                          \
        if (!met_)                                                                                 \
            fail_msg("not within 10 s: %s", #cond);                                                \
    } while (0)

static fake_state_t *new_state(int mode)
{
    static fake_state_t s;
    memset(&s, 0, sizeof s);
    pthread_mutex_init(&s.mu, NULL);
    s.mode = mode;
    s.bodies[0] = "a";
    s.bodies[1] = "fail";
    s.bodies[2] = "c";
    s.n_bodies = 3;
    return &s;
}

static void test_consumer_deletes_successes_and_releases_failures_with_backoff(void **state)
{
    (void)state;
    fake_state_t *s = new_state(MODE_PUSH);
    fake_broker_t *fb = fake_broker_new(handler, s);
    runner_t r;
    start(&r, fb, fail_the_fail_body, 5000);
    WAIT_FOR(s, s->n_deleted == 2 && s->n_released == 1);
    pthread_mutex_lock(&s->mu);
    bool d0 = strcmp(s->deleted[0], "rh-0") == 0 || strcmp(s->deleted[1], "rh-0") == 0;
    bool d2 = strcmp(s->deleted[0], "rh-2") == 0 || strcmp(s->deleted[1], "rh-2") == 0;
    assert_true(d0 && d2);
    assert_string_equal(s->released[0], "rh-1");
    /* the first retry's back-off: 1 s (base 1 s, half of it jitter, rounded up) */
    assert_int_equal(s->released_vt[0], 1);
    pthread_mutex_unlock(&s->mu);
    kyu_consumer_stats_t st;
    kyu_consumer_stats(r.c, &st);
    assert_int_equal(st.batches, 1);
    assert_int_equal(st.succeeded, 2);
    assert_int_equal(st.failed, 1);
    stop(&r);
    assert_int_equal(s->closes, 1); /* the drain closed the session */
    fake_broker_destroy(&fb);
}

static void test_consumer_releases_a_batch_past_its_handler_timeout(void **state)
{
    (void)state;
    fake_state_t *s = new_state(MODE_PUSH);
    fake_broker_t *fb = fake_broker_new(handler, s);
    runner_t r;
    start(&r, fb, wait_for_cancel, 200);
    WAIT_FOR(s, s->n_released == 3);
    pthread_mutex_lock(&s->mu);
    assert_int_equal(s->n_deleted, 0);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(s->released_vt[i], 1);
    pthread_mutex_unlock(&s->mu);
    kyu_consumer_stats_t st;
    kyu_consumer_stats(r.c, &st);
    assert_int_equal(st.timeouts, 1);
    stop(&r);
    fake_broker_destroy(&fb);
}

static void test_consumer_opens_a_new_session_after_a_closed_push(void **state)
{
    (void)state;
    fake_state_t *s = new_state(MODE_CLOSE_FIRST);
    fake_broker_t *fb = fake_broker_new(handler, s);
    runner_t r;
    start(&r, fb, fail_the_fail_body, 5000);
    WAIT_FOR(s, s->opens >= 2);
    stop(&r);
    fake_broker_destroy(&fb);
}

static void test_consumer_reconnects_when_the_broker_is_silent(void **state)
{
    (void)state;
    fake_state_t *s = new_state(MODE_SILENT_FIRST);
    fake_broker_t *fb = fake_broker_new(handler, s);
    runner_t r;
    start(&r, fb, fail_the_fail_body, 5000);
    /* no reply to its heartbeats for 3 x 100 ms: a new session */
    WAIT_FOR(s, s->opens >= 2);
    kyu_consumer_stats_t st;
    kyu_consumer_stats(r.c, &st);
    assert_true(st.sessions >= 2);
    stop(&r);
    fake_broker_destroy(&fb);
}

static void test_consumer_refuses_bad_options(void **state)
{
    (void)state;
    kyu_err_t err = {0};
    kyu_consumer_opts_t o = kyu_consumer_opts_default();
    o.queue = "q";
    o.batch_size = 20; /* over 10 without a window: Lambda's rule */
    assert_null(kyu_consumer_new("tcp://127.0.0.1:1", &o, fail_the_fail_body, NULL, &err));
    assert_int_equal(err.code, KYU_ERR_INVALID_ARGUMENT);
    o = kyu_consumer_opts_default();
    o.queue = "bad name";
    assert_null(kyu_consumer_new("tcp://127.0.0.1:1", &o, fail_the_fail_body, NULL, &err));
    assert_int_equal(err.code, KYU_ERR_INVALID_NAME);
    o = kyu_consumer_opts_default();
    o.queue = "q";
    o.backoff_max_ms = 10;
    assert_null(kyu_consumer_new("tcp://127.0.0.1:1", &o, fail_the_fail_body, NULL, &err));
    assert_int_equal(err.code, KYU_ERR_INVALID_ARGUMENT);
    o = kyu_consumer_opts_default();
    o.queue = "q";
    assert_null(kyu_consumer_new("tcp://127.0.0.1:1", &o, NULL, NULL, &err));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_consumer_deletes_successes_and_releases_failures_with_backoff),
        cmocka_unit_test(test_consumer_releases_a_batch_past_its_handler_timeout),
        cmocka_unit_test(test_consumer_opens_a_new_session_after_a_closed_push),
        cmocka_unit_test(test_consumer_reconnects_when_the_broker_is_silent),
        cmocka_unit_test(test_consumer_refuses_bad_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
