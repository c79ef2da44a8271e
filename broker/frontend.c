#include "frontend.h"
#include "recv_bounded.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define DRAIN_MAX 1024 /* requests per readable event, so the storage pipe is served too */

struct kyu_frontend {
    zsock_t *sock;
    kyu_sm_t *sm;
    kyu_replica_t *replica;
    kyu_membership_t *membership;
    size_t max_body;
    uint64_t rng[4]; /* xoshiro256** state for message ids, seeded from getrandom */
    msgpack_sbuffer buf;
    uint64_t dropped_replies;
    char endpoint[KYU_ENDPOINT_MAX];
};

typedef struct {
    zframe_t *identity;
    uint64_t id;
    uint32_t op;
} waiter_t;

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t next_random(uint64_t s[4])
{
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* A random (version 4) UUID, made by the leader and carried in the command. */
static void make_message_id(kyu_frontend_t *self, char out[KYU_UUID_LEN + 1])
{
    uint64_t a = next_random(self->rng), b = next_random(self->rng);
    a = (a & ~0xf000ULL) | 0x4000ULL;
    b = (b & ~(3ULL << 62)) | (2ULL << 62);
    snprintf(out, KYU_UUID_LEN + 1, "%08x-%04x-%04x-%04x-%012llx", (unsigned)(a >> 32),
             (unsigned)((a >> 16) & 0xffff), (unsigned)(a & 0xffff), (unsigned)(b >> 48),
             (unsigned long long)(b & 0xffffffffffffULL));
}

kyu_frontend_t *kyu_frontend_new(const kyu_frontend_config_t *cfg, kyu_sm_t *sm, kyu_err_t *err)
{
    kyu_frontend_t *self = calloc(1, sizeof *self);
    if (!self) {
        kyu_err_set(err, KYU_ERR_INTERNAL, "out of memory");
        return NULL;
    }
    self->sm = sm;
    self->max_body = cfg->max_body;
    snprintf(self->endpoint, sizeof self->endpoint, "%s", cfg->endpoint);
    msgpack_sbuffer_init(&self->buf);
    if (getrandom(self->rng, sizeof self->rng, 0) != sizeof self->rng) {
        kyu_err_set(err, KYU_ERR_INTERNAL, "getrandom failed");
        kyu_frontend_destroy(&self);
        return NULL;
    }
    self->sock = zsock_new(ZMQ_ROUTER);
    if (!self->sock) {
        kyu_err_set(err, KYU_ERR_INTERNAL, "cannot create the client socket");
        kyu_frontend_destroy(&self);
        return NULL;
    }
    /* libzmq's defaults fail open: bound frames, queues, handshakes; notice dead peers. */
    zsock_set_maxmsgsize(self->sock, (int64_t)(2 * cfg->max_body + KYU_HEADER_MAX));
    zsock_set_rcvhwm(self->sock, 10000);
    zsock_set_sndhwm(self->sock, 10000);
    zsock_set_handshake_ivl(self->sock, 5000);
    zsock_set_heartbeat_ivl(self->sock, 5000);
    zsock_set_heartbeat_timeout(self->sock, 15000);
    zsock_set_linger(self->sock, 0);
    /* A reply to a gone or saturated peer fails at once instead of blocking the loop. */
    zsock_set_router_mandatory(self->sock, 1);
    zsock_set_sndtimeo(self->sock, 0);
    char bind[KYU_ENDPOINT_MAX];
    kyu_endpoint_for_bind(cfg->endpoint, bind, sizeof bind);
    if (zsock_bind(self->sock, "%s", bind) < 0) {
        kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "cannot listen on %s (%s): %s", cfg->endpoint,
                    bind, zmq_strerror(zmq_errno()));
        kyu_frontend_destroy(&self);
        return NULL;
    }
    return self;
}

void kyu_frontend_destroy(kyu_frontend_t **self_p)
{
    kyu_frontend_t *self = *self_p;
    if (!self)
        return;
    zsock_destroy(&self->sock);
    msgpack_sbuffer_destroy(&self->buf);
    free(self);
    *self_p = NULL;
}

void kyu_frontend_set_replica(kyu_frontend_t *self, kyu_replica_t *replica)
{
    self->replica = replica;
}

void kyu_frontend_set_membership(kyu_frontend_t *self, kyu_membership_t *membership)
{
    self->membership = membership;
}

zsock_t *kyu_frontend_sock(kyu_frontend_t *self)
{
    return self->sock;
}

/* Sends rep (and body frames) to identity; identity and bodies are copied. */
static void send_reply(kyu_frontend_t *self, zframe_t *identity, const kyu_reply_t *rep,
                       const void *const *bodies, const size_t *lens, size_t n_bodies)
{
    msgpack_sbuffer_clear(&self->buf);
    kyu_reply_encode(rep, &self->buf);
    zmsg_t *m = zmsg_new();
    zframe_t *to = zframe_dup(identity);
    KYU_ASSERT(m && to);
    zmsg_append(m, &to);
    zmsg_addmem(m, self->buf.data, self->buf.size);
    for (size_t i = 0; i < n_bodies; i++)
        zmsg_addmem(m, bodies[i], lens[i]);
    if (zmsg_send(&m, self->sock) != 0) {
        /* The client is gone or not reading: the write already happened; it will retry. */
        self->dropped_replies++;
        zmsg_destroy(&m);
    }
}

static void send_error(kyu_frontend_t *self, zframe_t *identity, uint64_t id, kyu_code_t code,
                       const char *text)
{
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    rep.id = id;
    rep.status = code;
    snprintf(rep.error, sizeof rep.error, "%s", text);
    if (code == KYU_ERR_NOT_LEADER && self->replica)
        snprintf(rep.leader, sizeof rep.leader, "%s", kyu_replica_leader_endpoint(self->replica));
    send_reply(self, identity, &rep, NULL, NULL, 0);
}

static void answer_read(kyu_frontend_t *self, zframe_t *identity, const kyu_request_t *req)
{
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    rep.id = req->id;
    kyu_err_t err;
    kyu_err_clear(&err);
    switch (req->op) {
    case KYU_OP_HELLO:
        if (req->version != KYU_PROTOCOL_VERSION) {
            kyu_err_set(&err, KYU_ERR_VERSION,
                        "protocol version %u is not supported; this broker speaks %d", req->version,
                        KYU_PROTOCOL_VERSION);
            break;
        }
        rep.version = KYU_PROTOCOL_VERSION;
        rep.max_body = self->max_body;
        break;
    case KYU_OP_CLUSTER_STATUS:
        kyu_replica_status(self->replica, &rep.node);
        if (!rep.node.endpoint[0])
            snprintf(rep.node.endpoint, sizeof rep.node.endpoint, "%s", self->endpoint);
        rep.has_node = true;
        break;
    case KYU_OP_LIST_QUEUES:
        if (kyu_sm_list_queues(self->sm, &rep.queues, &rep.n_queues, &err) == KYU_OK)
            break;
        break;
    case KYU_OP_GET_QUEUE_ATTRIBUTES:
        rep.has_attrs =
            kyu_sm_queue_attributes(self->sm, req->queue, kyu_replica_now(self->replica),
                                    &rep.attrs, &err) == KYU_OK;
        break;
    }
    if (err.code) {
        kyu_reply_reset(&rep);
        send_error(self, identity, req->id, err.code, err.msg);
        return;
    }
    send_reply(self, identity, &rep, NULL, NULL, 0);
    kyu_reply_reset(&rep);
}

/* Checks a write against the current state and limits, and builds its command. */
static kyu_code_t build_command(kyu_frontend_t *self, const kyu_request_t *req, zmsg_t *bodies,
                                kyu_command_t *cmd, kyu_err_t *err)
{
    memset(cmd, 0, sizeof *cmd);
    if (req->op != KYU_OP_CREATE_QUEUE && !kyu_sm_queue_exists(self->sm, req->queue))
        return kyu_err_set(err, KYU_ERR_NO_SUCH_QUEUE, "queue '%s' does not exist", req->queue);
    snprintf(cmd->queue, sizeof cmd->queue, "%s", req->queue);
    cmd->vt = (req->fields & KYU_F_VT) ? (int64_t)req->vt : -1;
    cmd->max = (req->fields & KYU_F_MAX) ? req->max : 1;
    if (req->fields & KYU_F_RQ) { /* the codec allows it on writes but CREATE_QUEUE */
        cmd->rq_client = req->rq_client;
        cmd->rq_key = req->rq_key;
    }
    switch (req->op) {
    case KYU_OP_CREATE_QUEUE:
        cmd->type = KYU_CMD_CREATE_QUEUE;
        break;
    case KYU_OP_DELETE_QUEUE:
        cmd->type = KYU_CMD_DELETE_QUEUE;
        break;
    case KYU_OP_RECEIVE:
        cmd->type = KYU_CMD_RECEIVE;
        break;
    case KYU_OP_SEND:
        cmd->type = KYU_CMD_SEND;
        for (zframe_t *f = zmsg_first(bodies); f; f = zmsg_next(bodies)) {
            size_t i = cmd->n++;
            if (zframe_size(f) == 0)
                return kyu_err_set(err, KYU_ERR_EMPTY_BODY, "message %zu has an empty body", i + 1);
            if (zframe_size(f) > self->max_body)
                return kyu_err_set(err, KYU_ERR_TOO_LARGE,
                                   "message %zu has %zu bytes; the maximum is %zu", i + 1,
                                   zframe_size(f), self->max_body);
            cmd->bodies[i] = zframe_data(f);
            cmd->body_lens[i] = zframe_size(f);
            make_message_id(self, cmd->ids[i]);
        }
        break;
    case KYU_OP_DELETE:
    case KYU_OP_CHANGE_VISIBILITY:
        cmd->type = req->op == KYU_OP_DELETE ? KYU_CMD_DELETE : KYU_CMD_CHANGE_VISIBILITY;
        cmd->n = req->n_handles;
        memcpy(cmd->handles, req->handles, sizeof cmd->handles);
        break;
    default:
        return kyu_err_set(err, KYU_ERR_INTERNAL, "op %u is not a write", req->op);
    }
    cmd->now_ms = kyu_replica_now(self->replica);
    return KYU_OK;
}

/* CLUSTER_ADD, CLUSTER_REMOVE: the membership driver answers once the change is committed
 * (or failed); takes identity when the change started. */
static void start_membership_change(kyu_frontend_t *self, zframe_t **identity,
                                    const kyu_request_t *req)
{
    kyu_err_t err;
    kyu_err_clear(&err);
    waiter_t *w = malloc(sizeof *w);
    if (!w) {
        send_error(self, *identity, req->id, KYU_ERR_BUSY, "out of memory");
        return;
    }
    *w = (waiter_t){.identity = *identity, .id = req->id, .op = req->op};
    kyu_code_t rc = !self->membership
                        ? kyu_err_set(&err, KYU_ERR_INVALID_ARGUMENT,
                                      "this broker runs without a peer list: start it with "
                                      "--node-id and --peer to change its membership")
                    : req->op == KYU_OP_CLUSTER_ADD
                        ? kyu_membership_add(self->membership, req->to, req->raft, req->ep, w, &err)
                        : kyu_membership_remove(self->membership, req->to, w, &err);
    if (rc == KYU_OK) {
        *identity = NULL;
        return;
    }
    free(w);
    send_error(self, *identity, req->id, rc, err.msg);
}

/* Takes the message: [identity, header, bodies...]. */
static void handle_request(kyu_frontend_t *self, zmsg_t **msg_p)
{
    zmsg_t *msg = *msg_p;
    zframe_t *identity = zmsg_pop(msg);
    zframe_t *header = zmsg_pop(msg);
    kyu_err_t err;
    kyu_err_clear(&err);
    kyu_request_t req;
    if (!identity) {
        zmsg_destroy(msg_p);
        return;
    }
    if (!header) {
        send_error(self, identity, 0, KYU_ERR_MALFORMED, "request has no header frame");
        zmsg_destroy(msg_p);
        return;
    }
    if (kyu_request_decode(zframe_data(header), zframe_size(header), zmsg_size(msg), &req, &err) !=
        KYU_OK) {
        send_error(self, identity, req.has_id ? req.id : 0, err.code, err.msg);
    } else if (req.op != KYU_OP_HELLO && req.op != KYU_OP_CLUSTER_STATUS &&
               !kyu_replica_serving(self->replica)) {
        /* Only a leader that has applied an entry of its own term holds every committed
         * write: followers (and a leader still catching up) refuse reads too, so no client
         * ever sees state older than one it saw before. */
        send_error(self, identity, req.id, KYU_ERR_NOT_LEADER,
                   *kyu_replica_leader_endpoint(self->replica)
                       ? "this node is not the leader; the leader is named in the reply"
                       : "no leader is known yet (an election is under way); retry shortly");
    } else if (req.op == KYU_OP_CLUSTER_TRANSFER) {
        kyu_code_t rc = kyu_replica_transfer_to(self->replica, req.to);
        if (rc == KYU_OK) {
            kyu_reply_t rep;
            kyu_reply_init(&rep);
            rep.id = req.id;
            send_reply(self, identity, &rep, NULL, NULL, 0);
        } else {
            send_error(self, identity, req.id, rc,
                       rc == KYU_ERR_NOT_LEADER ? "this node is not the leader"
                                                : "the target is not another voter of this cluster "
                                                  "(the leader itself, unknown, or a "
                                                  "node alone)");
        }
    } else if (req.op == KYU_OP_CLUSTER_ADD || req.op == KYU_OP_CLUSTER_REMOVE) {
        start_membership_change(self, &identity, &req);
    } else if (kyu_op_info(req.op)->flags & KYU_OPF_READ) {
        answer_read(self, identity, &req);
    } else if (req.op == KYU_OP_RECEIVE && kyu_sm_queue_exists(self->sm, req.queue) &&
               !kyu_sm_has_visible(self->sm, req.queue, kyu_replica_now(self->replica))) {
        /* Nothing to lease: answer empty without a command. A receive that finds nothing
         * changes nothing, and every acknowledged send is already applied. */
        kyu_reply_t rep;
        kyu_reply_init(&rep);
        rep.id = req.id;
        send_reply(self, identity, &rep, NULL, NULL, 0);
    } else {
        kyu_command_t cmd;
        waiter_t *w = NULL;
        if (build_command(self, &req, msg, &cmd, &err) == KYU_OK) {
            w = malloc(sizeof *w);
            if (!w)
                kyu_err_set(&err, KYU_ERR_BUSY, "out of memory");
        }
        if (w) {
            *w = (waiter_t){.identity = identity, .id = req.id, .op = req.op};
            if (kyu_replica_propose(self->replica, &cmd, w, &err) != KYU_OK)
                free(w);
            else
                identity = NULL;
        }
        if (identity)
            send_error(self, identity, req.id, err.code, err.msg);
    }
    zframe_destroy(&identity);
    zframe_destroy(&header);
    zmsg_destroy(msg_p);
}

void kyu_frontend_on_readable(kyu_frontend_t *self)
{
    for (int i = 0; i < DRAIN_MAX && (zsock_events(self->sock) & ZMQ_POLLIN); i++) {
        zmsg_t *msg = kyu_recv_request(self->sock, self->max_body);
        if (!msg)
            break;
        handle_request(self, &msg);
    }
    kyu_replica_flush(self->replica);
}

void kyu_frontend_on_result(void *arg, void *waiter, kyu_result_t *res)
{
    kyu_frontend_t *self = arg;
    waiter_t *w = waiter;
    if (!w)
        return;
    if (res->code != KYU_OK) {
        send_error(self, w->identity, w->id, res->code, res->error);
        zframe_destroy(&w->identity);
        free(w);
        return;
    }
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    rep.id = w->id;
    size_t n_bodies = 0;
    if (w->op == KYU_OP_SEND) {
        rep.n_ids = res->n_ids;
        for (size_t i = 0; i < res->n_ids; i++)
            snprintf(rep.ids[i], sizeof rep.ids[i], "%s", res->ids[i]);
    } else if (w->op == KYU_OP_RECEIVE) {
        rep.n_msgs = res->n_msgs;
        memcpy(rep.msgs, res->msgs, sizeof rep.msgs);
        n_bodies = res->n_msgs;
    } else if (w->op == KYU_OP_DELETE || w->op == KYU_OP_CHANGE_VISIBILITY) {
        rep.n_results = res->n_results;
        memcpy(rep.results, res->results, sizeof rep.results);
    }
    send_reply(self, w->identity, &rep, res->bodies, res->body_lens, n_bodies);
    zframe_destroy(&w->identity);
    free(w);
}
