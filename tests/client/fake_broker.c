/* fake_broker: see fake_broker.h. */
#include "fake_broker.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#define MAX_FRAMES 32

struct fake_broker {
    void *ctx, *sock;
    pthread_t thread;
    atomic_bool stop;
    atomic_size_t requests;
    atomic_size_t calls; /* requests other than HELLO */
    fake_handler_fn *handler;
    void *arg;
    char endpoint[256];
    unsigned char identity[256];
    size_t identity_len;
};

static void die(const char *what)
{
    fprintf(stderr, "fake_broker: %s: %s\n", what, zmq_strerror(zmq_errno()));
    abort();
}

static void send_identity(fake_broker_t *fb)
{
    if (zmq_send(fb->sock, fb->identity, fb->identity_len, ZMQ_SNDMORE) < 0)
        die("send identity");
}

void fake_reply_raw(fake_broker_t *fb, const void *header, size_t len, size_t n_extra_frames)
{
    send_identity(fb);
    if (zmq_send(fb->sock, header, len, n_extra_frames ? ZMQ_SNDMORE : 0) < 0)
        die("send header");
    for (size_t i = 0; i < n_extra_frames; i++)
        if (zmq_send(fb->sock, "x", 1, i + 1 < n_extra_frames ? ZMQ_SNDMORE : 0) < 0)
            die("send frame");
}

void fake_reply(fake_broker_t *fb, const kyu_reply_t *rep, const void *const *bodies,
                const size_t *lens, size_t n)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    kyu_reply_encode(rep, &sb);
    send_identity(fb);
    if (zmq_send(fb->sock, sb.data, sb.size, n ? ZMQ_SNDMORE : 0) < 0)
        die("send reply");
    msgpack_sbuffer_destroy(&sb);
    for (size_t i = 0; i < n; i++)
        if (zmq_send(fb->sock, bodies[i], lens[i], i + 1 < n ? ZMQ_SNDMORE : 0) < 0)
            die("send body");
}

void fake_reply_error(fake_broker_t *fb, uint64_t id, kyu_code_t code, const char *text)
{
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    rep.id = id;
    rep.status = code;
    snprintf(rep.error, sizeof rep.error, "%s", text);
    fake_reply(fb, &rep, NULL, NULL, 0);
}

void fake_default(fake_broker_t *fb, const kyu_request_t *req)
{
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    rep.id = req->id;
    if (req->op == KYU_OP_HELLO) {
        rep.version = KYU_PROTOCOL_VERSION;
        rep.max_body = KYU_BODY_MAX_DEFAULT;
    }
    fake_reply(fb, &rep, NULL, NULL, 0);
}

static void handle(fake_broker_t *fb, zmq_msg_t *frames, size_t n)
{
    if (n < 2)
        return;
    fb->identity_len = zmq_msg_size(&frames[0]);
    memcpy(fb->identity, zmq_msg_data(&frames[0]), fb->identity_len);
    kyu_request_t req;
    kyu_err_t err = {0};
    size_t n_bodies = n - 2;
    atomic_fetch_add(&fb->requests, 1);
    if (kyu_request_decode(zmq_msg_data(&frames[1]), zmq_msg_size(&frames[1]), n_bodies, &req,
                           &err) != KYU_OK) {
        fake_reply_error(fb, req.id, err.code, err.msg);
        return;
    }
    if (req.op != KYU_OP_HELLO)
        atomic_fetch_add(&fb->calls, 1);
    const void *bodies[MAX_FRAMES];
    size_t lens[MAX_FRAMES];
    for (size_t i = 0; i < n_bodies; i++) {
        bodies[i] = zmq_msg_data(&frames[2 + i]);
        lens[i] = zmq_msg_size(&frames[2 + i]);
    }
    if (fb->handler)
        fb->handler(fb, fb->arg, &req, bodies, lens, n_bodies);
    else
        fake_default(fb, &req);
}

static void *run(void *arg)
{
    fake_broker_t *fb = arg;
    while (!atomic_load(&fb->stop)) {
        zmq_pollitem_t item = {fb->sock, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&item, 1, 20) <= 0)
            continue;
        zmq_msg_t frames[MAX_FRAMES];
        size_t n = 0;
        int more = 1;
        while (more && n < MAX_FRAMES) {
            zmq_msg_init(&frames[n]);
            if (zmq_msg_recv(&frames[n], fb->sock, 0) < 0)
                die("recv");
            more = zmq_msg_more(&frames[n]);
            n++;
        }
        handle(fb, frames, n);
        for (size_t i = 0; i < n; i++)
            zmq_msg_close(&frames[i]);
    }
    return NULL;
}

fake_broker_t *fake_broker_new(fake_handler_fn *handler, void *arg)
{
    fake_broker_t *fb = calloc(1, sizeof *fb);
    if (!fb)
        abort();
    fb->handler = handler;
    fb->arg = arg;
    fb->ctx = zmq_ctx_new();
    fb->sock = fb->ctx ? zmq_socket(fb->ctx, ZMQ_ROUTER) : NULL;
    if (!fb->sock)
        die("socket");
    int linger = 0;
    size_t len = sizeof fb->endpoint;
    if (zmq_setsockopt(fb->sock, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
        zmq_bind(fb->sock, "tcp://127.0.0.1:*") != 0 ||
        zmq_getsockopt(fb->sock, ZMQ_LAST_ENDPOINT, fb->endpoint, &len) != 0)
        die("bind");
    if (pthread_create(&fb->thread, NULL, run, fb) != 0)
        abort();
    return fb;
}

void fake_broker_destroy(fake_broker_t **self_p)
{
    fake_broker_t *fb = *self_p;
    if (!fb)
        return;
    atomic_store(&fb->stop, true);
    pthread_join(fb->thread, NULL);
    zmq_close(fb->sock);
    zmq_ctx_term(fb->ctx);
    free(fb);
    *self_p = NULL;
}

const char *fake_broker_endpoint(const fake_broker_t *self)
{
    return self->endpoint;
}

size_t fake_broker_requests(const fake_broker_t *self)
{
    return atomic_load(&self->requests);
}

size_t fake_broker_calls(const fake_broker_t *self)
{
    return atomic_load(&self->calls);
}
