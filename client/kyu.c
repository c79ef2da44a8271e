/* kyu: libkyu's connection: endpoints, the socket, HELLO, failover and sending requests
 * (kyu.h explains the model; replies.c is the receiving half).
 *
 * The client keeps a table of the requests in flight (id, op, expected counts, deadline)
 * that replies.c matches replies against. */
#include "kyu_internal.h"

#include <errno.h>
#include <stddef.h>
#include <sys/random.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#define DEFAULT_TIMEOUT_MS 10000
#define DEFAULT_MAX_INFLIGHT 1024
#define DEFAULT_MAX_FRAME                                                                          \
    (64 * 1024 * 1024 + KYU_HEADER_MAX) /* the largest body a broker allows                        \
                                         */
#define HEARTBEAT_IVL_MS 1000
#define HEARTBEAT_TIMEOUT_MS 5000
/* A live broker answers HELLO from its event loop, without touching the disk: when there
 * are others to try, an endpoint silent this long is taken for dead (and avoided for as
 * long). */
#define HELLO_TIMEOUT_MS 1000

int64_t kyu_client_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void kyu_client_set_deadline(kyu_client_t *c, kyu_pending_t *p, int64_t deadline_ms)
{
    p->deadline_ms = deadline_ms;
    if (deadline_ms < c->min_deadline_ms)
        c->min_deadline_ms = deadline_ms;
}

int64_t kyu_client_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
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

/* libzmq's defaults fail open: bound frame sizes, queues and handshakes,
 * notice a dead broker by ZMTP heartbeats, never block on send or close. */
static kyu_code_t open_socket(kyu_client_t *c, const char *endpoint, void **out, kyu_err_t *err)
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
    *out = s;
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
            kyu_client_set_deadline(c, &c->pending[i], now);
}

/* Connects to endpoint i and exchanges HELLO: the broker must speak our version. */
static kyu_code_t connect_endpoint(kyu_client_t *c, size_t i, kyu_err_t *err)
{
    close_socket(c);
    c->current = i;
    kyu_code_t rc = open_socket(c, c->endpoints[i], &c->sock, err);
    if (rc != KYU_OK)
        return rc;
    kyu_request_t req = {
        .op = KYU_OP_HELLO, .fields = KYU_F_VERSION, .version = KYU_PROTOCOL_VERSION};
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    /* Alone, a broker gets the whole timeout (it may still be starting). */
    int wait = c->n_endpoints > 1 && c->opts.timeout_ms > HELLO_TIMEOUT_MS ? HELLO_TIMEOUT_MS
                                                                           : c->opts.timeout_ms;
    rc = kyu_client_call_once_within(c, &req, NULL, NULL, 0, &rep, NULL, wait, err);
    if (rc == KYU_ERR_TIMEOUT || rc == KYU_ERR_CONNECTION) {
        c->silent = i;
        c->silent_until_ms = kyu_client_now_ms() + HELLO_TIMEOUT_MS;
    }
    if (rc == KYU_OK && rep.version != KYU_PROTOCOL_VERSION)
        rc = kyu_err_set(err, KYU_ERR_VERSION,
                         "broker at %s speaks protocol version %u, this client %d", c->endpoints[i],
                         rep.version, KYU_PROTOCOL_VERSION);
    if (rc == KYU_OK)
        c->max_body = rep.max_body ? rep.max_body : KYU_BODY_MAX_DEFAULT;
    kyu_reply_reset(&rep);
    return rc;
}

/* Asks every endpoint but `skip` at once, a HELLO on a socket of its own, and returns the
 * index of the first that answers (SIZE_MAX when none does within the timeout): a dead node
 * in the list costs nothing when another is alive. */
static size_t probe_endpoints(kyu_client_t *c, size_t skip)
{
    size_t n = c->n_endpoints, found = SIZE_MAX;
    void **socks = calloc(n, sizeof *socks);
    zmq_pollitem_t *items = calloc(n, sizeof *items);
    size_t *index = calloc(n, sizeof *index);
    size_t live = 0;
    if (!socks || !items || !index)
        goto done;
    kyu_request_t req = {.op = KYU_OP_HELLO,
                         .fields = KYU_F_VERSION,
                         .version = KYU_PROTOCOL_VERSION,
                         .id = 1,
                         .has_id = true};
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    kyu_request_encode(&req, &sb);
    for (size_t i = 0; i < n; i++) {
        if (i == skip || open_socket(c, c->endpoints[i], &socks[live], NULL) != KYU_OK)
            continue;
        if (zmq_send(socks[live], sb.data, sb.size, ZMQ_DONTWAIT) < 0) {
            zmq_close(socks[live]);
            continue;
        }
        items[live] = (zmq_pollitem_t){socks[live], 0, ZMQ_POLLIN, 0};
        index[live++] = i;
    }
    msgpack_sbuffer_destroy(&sb);
    int64_t deadline = kyu_client_now_ms() + c->opts.timeout_ms;
    while (found == SIZE_MAX && live > 0) {
        int64_t wait = deadline - kyu_client_now_ms();
        if (wait <= 0)
            break;
        int rc = zmq_poll(items, (int)live, (long)wait);
        if (rc < 0 && errno != EINTR)
            break;
        for (size_t k = 0; rc > 0 && k < live && found == SIZE_MAX; k++) {
            if (!(items[k].revents & ZMQ_POLLIN))
                continue;
            zmq_msg_t f;
            zmq_msg_init(&f);
            if (zmq_msg_recv(&f, socks[k], ZMQ_DONTWAIT) >= 0) {
                kyu_reply_t rep;
                kyu_reply_init(&rep);
                if (kyu_reply_decode(zmq_msg_data(&f), zmq_msg_size(&f), &rep, NULL) == KYU_OK &&
                    rep.status == KYU_OK)
                    found = index[k];
                kyu_reply_reset(&rep);
            }
            zmq_msg_close(&f);
        }
    }
done:
    for (size_t k = 0; k < live; k++)
        zmq_close(socks[k]);
    free(socks);
    free(items);
    free(index);
    return found;
}

/* The one place that decides where to go next: the leader named by a NOT_LEADER reply (added
 * to the list when it is not in it yet, up to KYU_CLIENT_ENDPOINTS_MAX: a cluster may have
 * members the user did not list), else the next endpoint of the list. */
static size_t pick_endpoint(kyu_client_t *c, const char *leader)
{
    if (leader && *leader && strlen(leader) < KYU_ENDPOINT_MAX) {
        for (size_t i = 0; i < c->n_endpoints; i++)
            if (strcmp(c->endpoints[i], leader) == 0)
                return i;
        if (c->n_endpoints < KYU_CLIENT_ENDPOINTS_MAX) {
            char(*more)[KYU_ENDPOINT_MAX] =
                realloc(c->endpoints, (c->n_endpoints + 1) * sizeof c->endpoints[0]);
            if (more) {
                c->endpoints = more;
                snprintf(c->endpoints[c->n_endpoints], KYU_ENDPOINT_MAX, "%s", leader);
                return c->n_endpoints++;
            }
        }
    }
    return (c->current + 1) % c->n_endpoints;
}

kyu_code_t kyu_client_failover(kyu_client_t *self, const char *leader, kyu_err_t *err)
{
    if (leader && *leader && self->silent_until_ms > kyu_client_now_ms() &&
        strcmp(leader, self->endpoints[self->silent]) == 0) {
        /* Named by a follower that has not noticed it died: give the election time. */
        leader = NULL;
        kyu_client_pause_ms(100);
    }
    if ((!leader || !*leader) && self->n_endpoints > 2) {
        /* No leader named: the first other node that answers, not the next in the list. */
        size_t i = probe_endpoints(self, self->current);
        if (i != SIZE_MAX)
            return connect_endpoint(self, i, err);
    }
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
    c->min_deadline_ms = INT64_MAX;
    c->next_key = 1;
    /* A random client id keeps request keys of different clients apart; 0 is reserved. */
    while (c->client_id == 0)
        if (getrandom(&c->client_id, sizeof c->client_id, 0) != sizeof c->client_id) {
            kyu_err_set(err, KYU_ERR_INTERNAL, "getrandom failed");
            goto fail;
        }
    c->max_body = KYU_BODY_MAX_DEFAULT;
    msgpack_sbuffer_init(&c->sb);
    c->pending = calloc((size_t)c->opts.max_inflight, sizeof c->pending[0]);
    c->scratch = calloc(1, sizeof *c->scratch);
    if (!c->pending || !c->scratch) {
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
    if (c->n_endpoints > 1) {
        size_t first = probe_endpoints(c, SIZE_MAX);
        if (first != SIZE_MAX && connect_endpoint(c, first, &last) == KYU_OK)
            return c;
    }
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
    if (c->scratch)
        kyu_reply_reset(c->scratch);
    free(c->scratch);
    msgpack_sbuffer_destroy(&c->sb);
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

/* Sends r, which the caller lets us change: its id, and a request key for a write that has
 * none. kyu_client_request_async copies its caller's request for this; libkyu's own sends
 * build theirs on the stack and pass it straight here (a request is 12 KB). */
static kyu_code_t send_request(kyu_client_t *self, kyu_request_t *r, const void *const *bodies,
                               const size_t *lens, size_t n, uint64_t *req_id, kyu_err_t *err)
{
    if (!self->sock)
        return kyu_err_set(err, KYU_ERR_CONNECTION, "not connected (a failover failed)");
    if (self->n_pending >= (size_t)self->opts.max_inflight)
        return kyu_err_set(err, KYU_ERR_BUSY, "%d requests in flight already",
                           self->opts.max_inflight);
    if (n > KYU_BATCH_MAX || r->n_handles > KYU_BATCH_MAX)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "at most %d bodies or handles",
                           KYU_BATCH_MAX);
    for (size_t i = 0; i < n; i++)
        if (lens[i] > self->max_body)
            return kyu_err_set(err, KYU_ERR_TOO_LARGE,
                               "message of %zu bytes is over the broker's maximum of %llu", lens[i],
                               (unsigned long long)self->max_body);
    kyu_client_key_request(self, r);
    r->id = self->next_id++;
    r->has_id = true;
    /* The client's buffer, kept: as large as the largest header sent (a SEND's some 60 bytes,
     * tags' some 20 KB; kyu_request_t bounds it). */
    msgpack_sbuffer_clear(&self->sb);
    kyu_request_encode(r, &self->sb);
    int rc = zmq_send(self->sock, self->sb.data, self->sb.size, n ? ZMQ_SNDMORE : 0);
    /* After the first frame libzmq accepts the rest of a message without blocking. */
    for (size_t i = 0; rc >= 0 && i < n; i++)
        rc = zmq_send(self->sock, bodies[i], lens[i], i + 1 < n ? ZMQ_SNDMORE : 0);
    if (rc < 0)
        return kyu_err_set(err, errno == EAGAIN ? KYU_ERR_TIMEOUT : KYU_ERR_CONNECTION,
                           "cannot queue a request to %s: %s", kyu_client_endpoint(self),
                           zmq_strerror(errno));
    kyu_pending_t *p = &self->pending[self->n_pending++];
    p->id = r->id;
    p->op = r->op;
    p->expect = expected_count(r, n);
    kyu_client_set_deadline(
        self, p, kyu_client_now_ms() + self->opts.timeout_ms + kyu_client_request_wait_ms(r));
    if (req_id)
        *req_id = r->id;
    return KYU_OK;
}

kyu_code_t kyu_client_request_async(kyu_client_t *self, const kyu_request_t *req,
                                    const void *const *bodies, const size_t *lens, size_t n,
                                    uint64_t *req_id, kyu_err_t *err)
{
    /* Not the tags' 20 KB unless there are any (kyu_request_t: most requests are sends). */
    kyu_request_t r;
    memcpy(&r, req, req->qx.tags.n ? sizeof r : offsetof(kyu_request_t, qx.tags.keys));
    return send_request(self, &r, bodies, lens, n, req_id, err);
}

int kyu_client_request_wait_ms(const kyu_request_t *req)
{
    return req->op == KYU_OP_RECEIVE && (req->fields & KYU_F_WAIT) ? (int)req->wait * 1000 : 0;
}

void kyu_client_key_request(kyu_client_t *c, kyu_request_t *req)
{
    bool keyed = req->op == KYU_OP_DELETE_QUEUE || req->op == KYU_OP_SEND ||
                 req->op == KYU_OP_RECEIVE || req->op == KYU_OP_DELETE ||
                 req->op == KYU_OP_CHANGE_VISIBILITY || req->op == KYU_OP_PURGE_QUEUE ||
                 req->op == KYU_OP_START_MOVE_TASK || req->op == KYU_OP_CANCEL_MOVE_TASK ||
                 req->op == KYU_OP_UNTAG_QUEUE || req->op == KYU_OP_DELETE_TOPIC ||
                 req->op == KYU_OP_SUBSCRIBE || req->op == KYU_OP_UNSUBSCRIBE ||
                 req->op == KYU_OP_PUBLISH || req->op == KYU_OP_SET_SUBSCRIPTION_ATTRIBUTES;
    if (keyed && !(req->fields & KYU_F_RQ)) {
        req->rq_client = c->client_id;
        req->rq_key = c->next_key++;
        req->fields |= KYU_F_RQ;
    }
}

/* The start of every send of kyu.h: a SEND request of queue for n (at least 1) bodies. */
static kyu_code_t start_send(kyu_request_t *req, const char *queue, size_t n, kyu_err_t *err)
{
    kyu_request_prepare_send(req);
    if (n < 1)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "send needs 1 to %d bodies",
                           KYU_BATCH_MAX);
    if (kyu_client_set_queue(req, queue, err) != KYU_OK)
        return err ? err->code : KYU_ERR_INVALID_NAME;
    return KYU_OK;
}

void kyu_client_use_key(kyu_client_t *c, kyu_request_t *req, uint64_t *key)
{
    if (*key == 0)
        *key = c->next_key++;
    req->rq_client = c->client_id;
    req->rq_key = *key;
    req->fields |= KYU_F_RQ;
}

kyu_code_t kyu_client_send_async_keyed(kyu_client_t *self, const char *queue,
                                       const void *const *bodies, const size_t *lens, size_t n,
                                       uint64_t *key, uint64_t *req_id, kyu_err_t *err)
{
    kyu_request_t req;
    kyu_code_t rc = start_send(&req, queue, n, err);
    if (rc != KYU_OK)
        return rc;
    kyu_client_use_key(self, &req, key);
    return send_request(self, &req, bodies, lens, n, req_id, err);
}

void kyu_send_options_init(kyu_send_options_t *o)
{
    o->delay_seconds = -1;
    o->deliver_at_ms = -1;
    o->attrs = NULL;
    o->group_ids = o->dedup_ids = NULL;
}

kyu_code_t kyu_client_set_fifo_ids(kyu_request_t *req, size_t i, const char *group,
                                   const char *dedup, kyu_err_t *err)
{
    const char *ids[2] = {group, dedup};
    char *out[2] = {req->group_ids[i], req->dedup_ids[i]};
    const char *names[2] = {"MessageGroupId", "MessageDeduplicationId"};
    for (int j = 0; j < 2; j++) {
        out[j][0] = '\0';
        if (!ids[j])
            continue;
        if (!kyu_fifo_id_valid(ids[j], strlen(ids[j]), KYU_GROUP_ID_MAX))
            return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                               "message %zu: %s is 1 to %d characters of ASCII letters, digits "
                               "and punctuation",
                               i + 1, names[j], KYU_GROUP_ID_MAX);
        snprintf(out[j], KYU_GROUP_ID_MAX + 1, "%s", ids[j]);
        req->fields |= KYU_F_GROUPS;
    }
    if (i + 1 > req->n_group_msgs)
        req->n_group_msgs = i + 1;
    return KYU_OK;
}

/* The attributes of n bodies (checked) into req; none at all leaves the field out, so that
 * a broker older than attributes takes the send. */
static kyu_code_t set_attrs(kyu_request_t *req, const kyu_msg_attrs_t *attrs, size_t n,
                            kyu_err_t *err)
{
    bool any = false;
    for (size_t i = 0; attrs && i < n && i < KYU_BATCH_MAX; i++) {
        kyu_err_t e = {0};
        if (kyu_msg_attrs_check(&attrs[i], &e) != KYU_OK)
            return kyu_err_set(err, e.code, "message %zu: %s", i + 1, e.msg);
        any = any || attrs[i].n > 0;
    }
    if (!any)
        return KYU_OK;
    req->fields |= KYU_F_MSG_ATTRS;
    req->n_attr_msgs = n;
    memcpy(req->attrs, attrs, n * sizeof attrs[0]);
    return KYU_OK;
}

kyu_code_t kyu_client_set_send_options(kyu_request_t *req, const kyu_send_options_t *o, size_t n,
                                       kyu_err_t *err)
{
    if (!o)
        return KYU_OK;
    if (o->delay_seconds >= 0 && o->deliver_at_ms >= 0)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "give a delay or a deliver-at time, not both");
    if (o->delay_seconds > KYU_DELAY_MAX || o->delay_seconds < -1)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "DelaySeconds must be 0 to %d seconds, not %d", KYU_DELAY_MAX,
                           o->delay_seconds);
    if (o->deliver_at_ms < -1 ||
        o->deliver_at_ms > kyu_client_wall_ms() + KYU_DELIVER_AT_MAX_S * 1000ll)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "deliver-at must be at most %d seconds (14 days, the longest "
                           "retention period) after the send",
                           KYU_DELIVER_AT_MAX_S);
    if (o->delay_seconds >= 0) {
        req->fields |= KYU_F_DELAY;
        req->delay = (uint32_t)o->delay_seconds;
    }
    if (o->deliver_at_ms >= 0) {
        req->fields |= KYU_F_DELIVER_AT;
        req->deliver_at_ms = (uint64_t)o->deliver_at_ms;
    }
    for (size_t i = 0; (o->group_ids || o->dedup_ids) && i < n && i < KYU_BATCH_MAX; i++)
        if (kyu_client_set_fifo_ids(req, i, o->group_ids ? o->group_ids[i] : NULL,
                                    o->dedup_ids ? o->dedup_ids[i] : NULL, err) != KYU_OK)
            return err->code;
    return set_attrs(req, o->attrs, n, err);
}

kyu_code_t kyu_client_send_async_with(kyu_client_t *self, const char *queue,
                                      const void *const *bodies, const size_t *lens, size_t n,
                                      const kyu_send_options_t *o, uint64_t *key, uint64_t *req_id,
                                      kyu_err_t *err)
{
    kyu_request_t req;
    kyu_code_t rc = start_send(&req, queue, n, err);
    if (rc != KYU_OK)
        return rc;
    if (n > KYU_BATCH_MAX)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "send needs 1 to %d bodies",
                           KYU_BATCH_MAX);
    if (kyu_client_set_send_options(&req, o, n, err) != KYU_OK)
        return KYU_ERR_INVALID_ARGUMENT;
    if (key)
        kyu_client_use_key(self, &req, key);
    return send_request(self, &req, bodies, lens, n, req_id, err);
}

kyu_code_t kyu_client_send_async(kyu_client_t *self, const char *queue, const void *const *bodies,
                                 const size_t *lens, size_t n, uint64_t *req_id, kyu_err_t *err)
{
    kyu_request_t req;
    kyu_code_t rc = start_send(&req, queue, n, err);
    if (rc != KYU_OK)
        return rc;
    return send_request(self, &req, bodies, lens, n, req_id, err);
}

void kyu_request_prepare_send(kyu_request_t *req)
{
    /* All but the per-message arrays (handles, attrs, entry_ids, group_ids, dedup_ids: 10 of
     * the 12.8 KB kyu_request_prepare clears), whose counts are cleared. */
    KYU_CLEAR_RANGE(kyu_request_t, req, id, handles);
    KYU_CLEAR_RANGE(kyu_request_t, req, rq_client, attrs);
    KYU_CLEAR_RANGE(kyu_request_t, req, n_entries, entry_ids);
    KYU_CLEAR_RANGE(kyu_request_t, req, entry_delay, group_ids);
    KYU_CLEAR_RANGE(kyu_request_t, req, attempt_id, qx.tags.keys);
    req->op = KYU_OP_SEND;
    req->fields = KYU_F_QUEUE;
}

void kyu_request_prepare(kyu_request_t *req, uint32_t op, uint64_t fields)
{
    memset(req, 0, offsetof(kyu_request_t, qx.tags.keys));
    req->op = op;
    req->fields = fields;
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
