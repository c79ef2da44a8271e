/* kyu: libkyu's connection, the asynchronous layer and HELLO (kyu.h explains the model).
 *
 * The client keeps a table of the requests in flight (id, op, expected counts, deadline).
 * A reply is matched to its request by id, checked against what the request expects (frame
 * count, number of ids or results) and then handed out; a reply to no request in flight
 * (late, after its deadline, or from a confused broker) is dropped. Replies that arrive while
 * a synchronous call waits for its own go to a FIFO (the stash) that poll_reply empties
 * first, so the two layers can be mixed. */
#include "kyu_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#define DEFAULT_TIMEOUT_MS 10000
#define DEFAULT_MAX_INFLIGHT 1024
#define DEFAULT_MAX_FRAME (16 * 1024 * 1024)
#define HEARTBEAT_IVL_MS 1000
#define HEARTBEAT_TIMEOUT_MS 5000
#define MAX_FRAMES (1 + KYU_BATCH_MAX)

int64_t kyu_client_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

kyu_client_opts_t kyu_client_opts_default(void)
{
    kyu_client_opts_t o = {DEFAULT_TIMEOUT_MS, DEFAULT_MAX_INFLIGHT, DEFAULT_MAX_FRAME};
    return o;
}

const char *kyu_client_endpoint(const kyu_client_t *self)
{
    return self->endpoints[self->current];
}

uint64_t kyu_client_max_body(const kyu_client_t *self)
{
    return self->max_body;
}

size_t kyu_client_inflight(const kyu_client_t *self)
{
    return self->n_pending;
}

void kyu_messages_destroy(kyu_message_t **msgs_p)
{
    if (msgs_p) {
        free(*msgs_p);
        *msgs_p = NULL;
    }
}

/* ---- endpoints and the socket ---- */

static kyu_code_t parse_endpoints(kyu_client_t *c, const char *list, kyu_err_t *err)
{
    if (!list || !*list)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "no broker endpoint given");
    size_t n = 1;
    for (const char *p = list; *p; p++)
        n += *p == ',';
    c->endpoints = calloc(n, sizeof c->endpoints[0]);
    if (!c->endpoints)
        return kyu_err_set(err, KYU_ERR_INTERNAL, "out of memory");
    const char *p = list;
    while (c->n_endpoints < n) {
        size_t len = strcspn(p, ",");
        if (len == 0 || len >= KYU_ENDPOINT_MAX)
            return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                               "bad endpoint list '%s': empty entry or one over %d characters",
                               list, KYU_ENDPOINT_MAX - 1);
        memcpy(c->endpoints[c->n_endpoints++], p, len);
        p += len + (p[len] == ',');
    }
    return KYU_OK;
}

static int set_int(void *sock, int opt, int v)
{
    return zmq_setsockopt(sock, opt, &v, sizeof v);
}

/* libzmq's defaults fail open (HARDENING.md): bound frame sizes, queues and handshakes,
 * notice a dead broker by ZMTP heartbeats, never block on send or close. */
static kyu_code_t open_socket(kyu_client_t *c, const char *endpoint, kyu_err_t *err)
{
    void *s = zmq_socket(c->ctx, ZMQ_DEALER);
    if (!s)
        return kyu_err_set(err, KYU_ERR_CONNECTION, "zmq_socket: %s", zmq_strerror(errno));
    int64_t maxmsg = c->opts.max_frame_size;
    int hwm = c->opts.max_inflight + 16;
    if (zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg) != 0 ||
        set_int(s, ZMQ_SNDHWM, hwm) != 0 || set_int(s, ZMQ_RCVHWM, hwm) != 0 ||
        set_int(s, ZMQ_LINGER, 0) != 0 || set_int(s, ZMQ_HANDSHAKE_IVL, c->opts.timeout_ms) ||
        set_int(s, ZMQ_SNDTIMEO, c->opts.timeout_ms) != 0 ||
        set_int(s, ZMQ_HEARTBEAT_IVL, HEARTBEAT_IVL_MS) != 0 ||
        set_int(s, ZMQ_HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS) != 0 ||
        set_int(s, ZMQ_HEARTBEAT_TTL, HEARTBEAT_TIMEOUT_MS) != 0 ||
        set_int(s, ZMQ_RECONNECT_IVL_MAX, 1000) != 0) {
        kyu_err_set(err, KYU_ERR_CONNECTION, "zmq_setsockopt: %s", zmq_strerror(errno));
        zmq_close(s);
        return err ? err->code : KYU_ERR_CONNECTION;
    }
    if (zmq_connect(s, endpoint) != 0) {
        kyu_err_set(err, KYU_ERR_CONNECTION, "cannot connect to '%s': %s", endpoint,
                    zmq_strerror(errno));
        zmq_close(s);
        return KYU_ERR_CONNECTION;
    }
    c->sock = s;
    return KYU_OK;
}

/* Requests in flight on a closed socket can get no reply any more: they are answered as
 * TIMEOUT by the next poll_reply (their deadline is moved to now). */
static void close_socket(kyu_client_t *c)
{
    if (c->sock) {
        zmq_close(c->sock);
        c->sock = NULL;
    }
    int64_t now = kyu_client_now_ms();
    for (size_t i = 0; i < c->n_pending; i++)
        if (c->pending[i].deadline_ms > now)
            c->pending[i].deadline_ms = now;
}

/* Connects to endpoint i and exchanges HELLO: the broker must speak our version. */
static kyu_code_t connect_endpoint(kyu_client_t *c, size_t i, kyu_err_t *err)
{
    close_socket(c);
    c->current = i;
    kyu_code_t rc = open_socket(c, c->endpoints[i], err);
    if (rc != KYU_OK)
        return rc;
    kyu_request_t req = {
        .op = KYU_OP_HELLO, .fields = KYU_F_VERSION, .version = KYU_PROTOCOL_VERSION};
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    rc = kyu_client_call_once(c, &req, NULL, NULL, 0, &rep, NULL, err);
    if (rc == KYU_OK && rep.version != KYU_PROTOCOL_VERSION)
        rc = kyu_err_set(err, KYU_ERR_VERSION,
                         "broker at %s speaks protocol version %u, this client %d", c->endpoints[i],
                         rep.version, KYU_PROTOCOL_VERSION);
    if (rc == KYU_OK)
        c->max_body = rep.max_body ? rep.max_body : KYU_BODY_MAX_DEFAULT;
    kyu_reply_reset(&rep);
    return rc;
}

/* The one place that decides where to go next: the leader named by a NOT_LEADER reply when
 * it is one of ours, else the next endpoint of the list. (Following a leader outside the
 * list is the cluster work's addition.) */
static size_t pick_endpoint(const kyu_client_t *c, const char *leader)
{
    if (leader && *leader)
        for (size_t i = 0; i < c->n_endpoints; i++)
            if (strcmp(c->endpoints[i], leader) == 0)
                return i;
    return (c->current + 1) % c->n_endpoints;
}

kyu_code_t kyu_client_failover(kyu_client_t *self, const char *leader, kyu_err_t *err)
{
    return connect_endpoint(self, pick_endpoint(self, leader), err);
}

kyu_client_t *kyu_client_new(const char *endpoints, kyu_err_t *err)
{
    return kyu_client_new_opts(endpoints, NULL, err);
}

kyu_client_t *kyu_client_new_opts(const char *endpoints, const kyu_client_opts_t *opts,
                                  kyu_err_t *err)
{
    kyu_client_t *c = calloc(1, sizeof *c);
    if (!c) {
        kyu_err_set(err, KYU_ERR_INTERNAL, "out of memory");
        return NULL;
    }
    c->opts = opts ? *opts : kyu_client_opts_default();
    if (c->opts.timeout_ms <= 0 || c->opts.max_inflight <= 0 ||
        c->opts.max_frame_size < KYU_HEADER_MAX) {
        kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                    "client options: timeout and max_inflight must be positive, max_frame_size "
                    "at least %d",
                    KYU_HEADER_MAX);
        goto fail;
    }
    c->next_id = 1;
    c->max_body = KYU_BODY_MAX_DEFAULT;
    c->pending = calloc((size_t)c->opts.max_inflight, sizeof c->pending[0]);
    if (!c->pending) {
        kyu_err_set(err, KYU_ERR_INTERNAL, "out of memory");
        goto fail;
    }
    if (parse_endpoints(c, endpoints, err) != KYU_OK)
        goto fail;
    c->ctx = zmq_ctx_new();
    if (!c->ctx) {
        kyu_err_set(err, KYU_ERR_CONNECTION, "zmq_ctx_new: %s", zmq_strerror(errno));
        goto fail;
    }
    kyu_err_t last = {0};
    for (size_t i = 0; i < c->n_endpoints; i++) {
        kyu_code_t rc = connect_endpoint(c, i, &last);
        if (rc == KYU_OK)
            return c;
        if (rc != KYU_ERR_TIMEOUT && rc != KYU_ERR_NOT_LEADER && rc != KYU_ERR_CONNECTION)
            break; /* e.g. VERSION: another node of the cluster would say the same */
    }
    if (last.code == KYU_ERR_TIMEOUT)
        kyu_err_set(err, KYU_ERR_CONNECTION, "no broker answered: %s", last.msg);
    else if (err)
        *err = last;
fail:
    kyu_client_destroy(&c);
    return NULL;
}

static void stash_clear(kyu_client_t *c)
{
    while (c->stash_head) {
        kyu_stash_t *s = c->stash_head;
        c->stash_head = s->next;
        kyu_reply_reset(&s->rep);
        kyu_messages_destroy(&s->msgs);
        free(s);
    }
    c->stash_tail = NULL;
}

void kyu_client_destroy(kyu_client_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    kyu_client_t *c = *self_p;
    if (c->sock)
        zmq_close(c->sock);
    if (c->ctx)
        zmq_ctx_term(c->ctx);
    stash_clear(c);
    free(c->pending);
    free(c->endpoints);
    free(c);
    *self_p = NULL;
}

/* ---- sending ---- */

static uint32_t expected_count(const kyu_request_t *req, size_t n_bodies)
{
    if (req->op == KYU_OP_SEND)
        return (uint32_t)n_bodies;
    if (req->op == KYU_OP_DELETE || req->op == KYU_OP_CHANGE_VISIBILITY)
        return (uint32_t)req->n_handles;
    return 0;
}

kyu_code_t kyu_client_request_async(kyu_client_t *self, const kyu_request_t *req,
                                    const void *const *bodies, const size_t *lens, size_t n,
                                    uint64_t *req_id, kyu_err_t *err)
{
    if (!self->sock)
        return kyu_err_set(err, KYU_ERR_CONNECTION, "not connected (a failover failed)");
    if (self->n_pending >= (size_t)self->opts.max_inflight)
        return kyu_err_set(err, KYU_ERR_BUSY, "%d requests in flight already",
                           self->opts.max_inflight);
    if (n > KYU_BATCH_MAX || req->n_handles > KYU_BATCH_MAX)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "at most %d bodies or handles",
                           KYU_BATCH_MAX);
    for (size_t i = 0; i < n; i++)
        if (lens[i] > self->max_body)
            return kyu_err_set(err, KYU_ERR_TOO_LARGE,
                               "message of %zu bytes is over the broker's maximum of %llu", lens[i],
                               (unsigned long long)self->max_body);
    kyu_request_t r = *req;
    r.id = self->next_id++;
    r.has_id = true;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    kyu_request_encode(&r, &sb);
    int rc = zmq_send(self->sock, sb.data, sb.size, n ? ZMQ_SNDMORE : 0);
    msgpack_sbuffer_destroy(&sb);
    /* After the first frame libzmq accepts the rest of a message without blocking. */
    for (size_t i = 0; rc >= 0 && i < n; i++)
        rc = zmq_send(self->sock, bodies[i], lens[i], i + 1 < n ? ZMQ_SNDMORE : 0);
    if (rc < 0)
        return kyu_err_set(err, errno == EAGAIN ? KYU_ERR_TIMEOUT : KYU_ERR_CONNECTION,
                           "cannot queue a request to %s: %s", kyu_client_endpoint(self),
                           zmq_strerror(errno));
    kyu_pending_t *p = &self->pending[self->n_pending++];
    p->id = r.id;
    p->op = r.op;
    p->expect = expected_count(&r, n);
    p->deadline_ms = kyu_client_now_ms() + self->opts.timeout_ms;
    if (req_id)
        *req_id = r.id;
    return KYU_OK;
}

kyu_code_t kyu_client_send_async(kyu_client_t *self, const char *queue, const void *const *bodies,
                                 const size_t *lens, size_t n, uint64_t *req_id, kyu_err_t *err)
{
    kyu_request_t req = {.op = KYU_OP_SEND, .fields = KYU_F_QUEUE};
    if (n < 1)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "send needs 1 to %d bodies",
                           KYU_BATCH_MAX);
    if (kyu_client_set_queue(&req, queue, err) != KYU_OK)
        return err ? err->code : KYU_ERR_INVALID_NAME;
    return kyu_client_request_async(self, &req, bodies, lens, n, req_id, err);
}

kyu_code_t kyu_client_set_queue(kyu_request_t *req, const char *queue, kyu_err_t *err)
{
    size_t len = queue ? strlen(queue) : 0;
    if (!kyu_queue_name_valid(queue ? queue : "", len))
        return kyu_err_set(err, KYU_ERR_INVALID_NAME,
                           "invalid queue name '%s': 1 to %d characters of letters, digits, - "
                           "and _",
                           queue ? queue : "", KYU_NAME_MAX);
    memcpy(req->queue, queue, len + 1);
    req->fields |= KYU_F_QUEUE;
    return KYU_OK;
}

/* ---- receiving ---- */

static kyu_pending_t *find_pending(kyu_client_t *c, uint64_t id)
{
    for (size_t i = 0; i < c->n_pending; i++)
        if (c->pending[i].id == id)
            return &c->pending[i];
    return NULL;
}

/* Removes a table entry, returning a copy (the table stays compact: swap with the last). */
static kyu_pending_t take_pending(kyu_client_t *c, kyu_pending_t *p)
{
    kyu_pending_t out = *p;
    *p = c->pending[--c->n_pending];
    return out;
}

/* Turns rep into a client-made error reply to request id. */
static void make_error(kyu_reply_t *rep, uint64_t id, kyu_code_t code, const char *text)
{
    kyu_reply_reset(rep);
    rep->id = id;
    rep->status = code;
    snprintf(rep->error, sizeof rep->error, "%s", text);
}

/* Checks a decoded reply against its request (counts, frames) and builds the messages of a
 * RECEIVE. On a mismatch the reply becomes a MALFORMED error: never trust the broker's
 * counts to index the frames. */
static void check_reply(const kyu_pending_t *p, kyu_reply_t *rep, zmq_msg_t *frames,
                        size_t n_bodies, kyu_message_t **msgs)
{
    char why[160] = "";
    if (rep->status != KYU_OK)
        return;
    if (p->op == KYU_OP_RECEIVE && rep->n_msgs != n_bodies)
        snprintf(why, sizeof why, "RECEIVE reply has %zu body frames for %zu messages", n_bodies,
                 rep->n_msgs);
    else if (p->op != KYU_OP_RECEIVE && n_bodies != 0)
        snprintf(why, sizeof why, "reply has %zu unexpected body frames", n_bodies);
    else if (p->op == KYU_OP_SEND && rep->n_ids != p->expect)
        snprintf(why, sizeof why, "SEND reply has %zu ids for %u messages", rep->n_ids, p->expect);
    else if ((p->op == KYU_OP_DELETE || p->op == KYU_OP_CHANGE_VISIBILITY) &&
             rep->n_results != p->expect)
        snprintf(why, sizeof why, "reply has %zu results for %u handles", rep->n_results,
                 p->expect);
    else if (p->op == KYU_OP_GET_QUEUE_ATTRIBUTES && !rep->has_attrs)
        snprintf(why, sizeof why, "GET_QUEUE_ATTRIBUTES reply without attrs");
    for (size_t i = 0; !why[0] && p->op == KYU_OP_RECEIVE && i < rep->n_msgs; i++)
        if (!rep->msgs[i].handle[0] || !rep->msgs[i].message_id[0])
            snprintf(why, sizeof why, "RECEIVE reply: message %zu lacks an id or handle", i);
    if (why[0]) {
        make_error(rep, p->id, KYU_ERR_MALFORMED, why);
        return;
    }
    if (p->op != KYU_OP_RECEIVE || !msgs || rep->n_msgs == 0)
        return;
    size_t total = rep->n_msgs * sizeof(kyu_message_t);
    for (size_t i = 0; i < n_bodies; i++)
        total += zmq_msg_size(&frames[i]) + 1;
    kyu_message_t *m = malloc(total);
    if (!m) {
        make_error(rep, p->id, KYU_ERR_INTERNAL, "out of memory for received messages");
        return;
    }
    unsigned char *data = (unsigned char *)(m + rep->n_msgs);
    for (size_t i = 0; i < rep->n_msgs; i++) {
        const kyu_msg_meta_t *meta = &rep->msgs[i];
        memcpy(m[i].message_id, meta->message_id, sizeof m[i].message_id);
        memcpy(m[i].receipt_handle, meta->handle, sizeof m[i].receipt_handle);
        m[i].receive_count = meta->receive_count;
        m[i].sent_ms = meta->sent_ms;
        m[i].first_receive_ms = meta->first_receive_ms;
        m[i].body_len = zmq_msg_size(&frames[i]);
        m[i].body = data;
        memcpy(data, zmq_msg_data(&frames[i]), m[i].body_len);
        data[m[i].body_len] = '\0';
        data += m[i].body_len + 1;
    }
    *msgs = m;
}

/* Reads one multipart message (waiting up to timeout_ms) and, when it answers a request in
 * flight, fills rep (and msgs) and removes the request from the table: returns KYU_OK.
 * Returns KYU_ERR_TIMEOUT when nothing came, KYU_ERR_MALFORMED when a message was read but
 * answers no request in flight (dropped), KYU_ERR_CONNECTION on a socket failure. */
kyu_code_t kyu_client_recv_one(kyu_client_t *c, int timeout_ms, kyu_reply_t *rep,
                               kyu_message_t **msgs, kyu_err_t *err)
{
    if (!c->sock)
        return KYU_ERR_TIMEOUT;
    zmq_pollitem_t item = {c->sock, 0, ZMQ_POLLIN, 0};
    int n = zmq_poll(&item, 1, timeout_ms);
    if (n < 0 && errno != EINTR)
        return kyu_err_set(err, KYU_ERR_CONNECTION, "zmq_poll: %s", zmq_strerror(errno));
    if (n <= 0)
        return KYU_ERR_TIMEOUT;
    zmq_msg_t frames[MAX_FRAMES];
    size_t n_frames = 0, extra = 0;
    int more = 1;
    while (more) {
        zmq_msg_t f;
        zmq_msg_init(&f);
        if (zmq_msg_recv(&f, c->sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&f);
            break; /* parts of a message arrive together: only on close */
        }
        more = zmq_msg_more(&f);
        if (n_frames < MAX_FRAMES)
            frames[n_frames++] = f;
        else {
            extra++;
            zmq_msg_close(&f);
        }
    }
    kyu_code_t rc = KYU_ERR_MALFORMED;
    if (n_frames > 0) {
        kyu_reply_t tmp;
        kyu_reply_init(&tmp);
        kyu_err_t derr = {0};
        kyu_pending_t *p = NULL;
        if (kyu_reply_decode(zmq_msg_data(&frames[0]), zmq_msg_size(&frames[0]), &tmp, &derr) ==
                KYU_OK &&
            (p = find_pending(c, tmp.id)) != NULL) {
            kyu_pending_t req = take_pending(c, p);
            if (extra)
                make_error(&tmp, req.id, KYU_ERR_MALFORMED, "reply has too many frames");
            else
                check_reply(&req, &tmp, frames + 1, n_frames - 1, msgs);
            kyu_reply_reset(rep);
            *rep = tmp; /* moves the queues array */
            rc = KYU_OK;
        } else {
            kyu_reply_reset(&tmp);
        }
    }
    for (size_t i = 0; i < n_frames; i++)
        zmq_msg_close(&frames[i]);
    return rc;
}

/* The earliest deadline among requests in flight (INT64_MAX when none). */
static kyu_pending_t *earliest(kyu_client_t *c)
{
    kyu_pending_t *best = NULL;
    for (size_t i = 0; i < c->n_pending; i++)
        if (!best || c->pending[i].deadline_ms < best->deadline_ms)
            best = &c->pending[i];
    return best;
}

static kyu_code_t expire_one(kyu_client_t *c, int64_t now, kyu_reply_t *rep)
{
    kyu_pending_t *p = earliest(c);
    if (!p || p->deadline_ms > now)
        return KYU_ERR_TIMEOUT;
    kyu_pending_t req = take_pending(c, p);
    char text[KYU_ERR_MSG_MAX];
    snprintf(text, sizeof text, "no reply from %s within %d ms", kyu_client_endpoint(c),
             c->opts.timeout_ms);
    make_error(rep, req.id, KYU_ERR_TIMEOUT, text);
    return KYU_OK;
}

kyu_code_t kyu_client_poll_reply(kyu_client_t *self, int timeout_ms, kyu_reply_t *rep,
                                 kyu_message_t **msgs, kyu_err_t *err)
{
    if (msgs)
        *msgs = NULL;
    if (self->stash_head) {
        kyu_stash_t *s = self->stash_head;
        self->stash_head = s->next;
        if (!self->stash_head)
            self->stash_tail = NULL;
        kyu_reply_reset(rep);
        *rep = s->rep;
        if (msgs)
            *msgs = s->msgs;
        else
            kyu_messages_destroy(&s->msgs);
        free(s);
        return KYU_OK;
    }
    int64_t start = kyu_client_now_ms();
    for (;;) {
        int64_t now = kyu_client_now_ms();
        if (expire_one(self, now, rep) == KYU_OK)
            return KYU_OK;
        kyu_pending_t *first = earliest(self);
        if (!first)
            return kyu_err_set(err, KYU_ERR_TIMEOUT, "no request in flight");
        int64_t wait = first->deadline_ms - now;
        if (timeout_ms >= 0 && start + timeout_ms - now < wait)
            wait = start + timeout_ms - now;
        if (wait < 0)
            wait = 0;
        kyu_code_t rc = kyu_client_recv_one(self, (int)wait, rep, msgs, err);
        if (rc == KYU_OK || rc == KYU_ERR_CONNECTION)
            return rc;
        if (rc == KYU_ERR_TIMEOUT && timeout_ms >= 0 && kyu_client_now_ms() >= start + timeout_ms)
            return kyu_err_set(err, KYU_ERR_TIMEOUT, "no reply within %d ms", timeout_ms);
    }
}

static kyu_code_t stash_push(kyu_client_t *c, kyu_reply_t *rep, kyu_message_t **msgs)
{
    kyu_stash_t *s = calloc(1, sizeof *s);
    if (!s)
        return KYU_ERR_INTERNAL;
    s->rep = *rep; /* moves the queues array */
    kyu_reply_init(rep);
    s->msgs = *msgs;
    *msgs = NULL;
    if (c->stash_tail)
        c->stash_tail->next = s;
    else
        c->stash_head = s;
    c->stash_tail = s;
    return KYU_OK;
}

kyu_code_t kyu_client_call_once(kyu_client_t *c, const kyu_request_t *req,
                                const void *const *bodies, const size_t *lens, size_t n,
                                kyu_reply_t *rep, kyu_message_t **msgs, kyu_err_t *err)
{
    uint64_t id = 0;
    if (msgs)
        *msgs = NULL;
    kyu_code_t rc = kyu_client_request_async(c, req, bodies, lens, n, &id, err);
    if (rc != KYU_OK)
        return rc;
    for (;;) {
        kyu_pending_t *p = find_pending(c, id);
        int64_t now = kyu_client_now_ms();
        if (!p || p->deadline_ms <= now) {
            if (p)
                take_pending(c, p);
            return kyu_err_set(err, KYU_ERR_TIMEOUT, "no reply from %s within %d ms",
                               kyu_client_endpoint(c), c->opts.timeout_ms);
        }
        kyu_reply_t tmp;
        kyu_message_t *tmp_msgs = NULL;
        kyu_reply_init(&tmp);
        rc = kyu_client_recv_one(c, (int)(p->deadline_ms - now), &tmp, &tmp_msgs, err);
        if (rc == KYU_ERR_CONNECTION) {
            if ((p = find_pending(c, id)) != NULL)
                take_pending(c, p);
            return rc;
        }
        if (rc != KYU_OK)
            continue;
        if (tmp.id != id) {
            /* A reply to an asynchronous request: keep it for poll_reply. */
            if (stash_push(c, &tmp, &tmp_msgs) != KYU_OK) {
                kyu_reply_reset(&tmp);
                kyu_messages_destroy(&tmp_msgs);
            }
            continue;
        }
        kyu_reply_reset(rep);
        *rep = tmp;
        if (msgs)
            *msgs = tmp_msgs;
        else
            kyu_messages_destroy(&tmp_msgs);
        if (rep->status == KYU_OK)
            return KYU_OK;
        kyu_code_t code =
            rep->status < KYU_ERR_CODE_COUNT ? (kyu_code_t)rep->status : KYU_ERR_INTERNAL;
        return kyu_err_set(err, code, "%s",
                           rep->error[0] ? rep->error : kyu_code_name((int)rep->status));
    }
}
