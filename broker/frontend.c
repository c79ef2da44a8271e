/* frontend: requests in, replies out. Which way a request takes, and what it does, is its
 * row in the table of operations (ops.c); this file only moves frames. The receives that wait
 * for a message (long polling) are held and woken by frontend_wait.c. */
#include "frontend_internal.h"
#include "recv_bounded.h"

#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define DRAIN_MAX 1024 /* requests per readable event, so the storage pipe is served too */

/* A read waiting for early receives (defer_read) */
struct deferred {
    zframe_t *identity;
    uint64_t mark, deadline;
    struct deferred *next;
    kyu_request_t req;
};

kyu_frontend_t *kyu_frontend_new(const kyu_frontend_config_t *cfg, kyu_sm_t *sm, kyu_err_t *err)
{
    kyu_frontend_t *self = calloc(1, sizeof *self);
    if (!self) {
        kyu_err_set(err, KYU_ERR_INTERNAL, "out of memory");
        return NULL;
    }
    self->ctx.sm = sm;
    self->ctx.max_body = cfg->max_body;
    self->ctx.max_inflight = cfg->max_inflight;
    self->timer_id = -1;
    self->timer_at = UINT64_MAX;
    self->lp = kyu_longpoll_new(cfg->max_waiting, 0);
    if (!self->lp) {
        kyu_err_set(err, KYU_ERR_INTERNAL, "out of memory");
        kyu_frontend_destroy(&self);
        return NULL;
    }
    self->ahead = zhashx_new();
    if (!self->ahead) {
        kyu_err_set(err, KYU_ERR_INTERNAL, "out of memory");
        kyu_frontend_destroy(&self);
        return NULL;
    }
    zhashx_set_destructor(self->ahead, NULL); /* the values are counts, not pointers */
    kyu_sm_watch_visible(sm); /* its list of woken queues: kyu_frontend_serve_waiting */
    self->workers = kyu_frontend_workers_new(self);
    if (!self->workers) {
        kyu_err_set(err, KYU_ERR_INTERNAL, "out of memory");
        kyu_frontend_destroy(&self);
        return NULL;
    }
    self->ctx.workers = self->workers;
    snprintf(self->endpoint, sizeof self->endpoint, "%s", cfg->endpoint);
    self->ctx.endpoint = self->endpoint;
    msgpack_sbuffer_init(&self->buf);
    self->in = kyu_parts_new(KYU_REQUEST_PARTS_MAX);
    if (!self->in) {
        kyu_err_set(err, KYU_ERR_INTERNAL, "out of memory");
        kyu_frontend_destroy(&self);
        return NULL;
    }
    if (sodium_init() < 0) {
        kyu_err_set(err, KYU_ERR_INTERNAL, "libsodium cannot be initialized");
        kyu_frontend_destroy(&self);
        return NULL;
    }
    if (getrandom(self->ctx.rng, sizeof self->ctx.rng, 0) != sizeof self->ctx.rng) {
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
    kyu_endpoint_for_bind(cfg->bind ? cfg->bind : cfg->endpoint, bind, sizeof bind);
    if (zsock_bind(self->sock, "%s", bind) < 0) {
        kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "cannot listen on %s (%s): %s",
                    cfg->bind ? cfg->bind : cfg->endpoint, bind, zmq_strerror(zmq_errno()));
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
    while (self->deferred) {
        struct deferred *d = self->deferred;
        self->deferred = d->next;
        zframe_destroy(&d->identity);
        free(d);
    }
    zsock_destroy(&self->sock);
    kyu_workers_destroy(&self->workers);
    kyu_longpoll_destroy(&self->lp);
    zhashx_destroy(&self->ahead);
    msgpack_sbuffer_destroy(&self->buf);
    kyu_parts_destroy(&self->in);
    free(self);
    *self_p = NULL;
}

void kyu_frontend_set_replica(kyu_frontend_t *self, kyu_replica_t *replica)
{
    self->ctx.replica = replica;
}

void kyu_frontend_set_membership(kyu_frontend_t *self, kyu_membership_t *membership)
{
    self->ctx.membership = membership;
}

zsock_t *kyu_frontend_sock(kyu_frontend_t *self)
{
    return self->sock;
}

uint64_t kyu_frontend_replies(const kyu_frontend_t *self)
{
    return self->replies;
}

/* One part of a reply; a signal does not leave a message half sent (its next part would
 * then go out as a part of this one), it is retried. */
static bool send_part(void *sock, const void *data, size_t len, int flags)
{
    for (int i = 0; i < 100; i++) {
        if (zmq_send(sock, data, len, flags) >= 0)
            return true;
        if (zmq_errno() != EINTR)
            return false;
    }
    return false;
}

bool kyu_frontend_send_reply(kyu_frontend_t *self, zframe_t *identity, const kyu_reply_t *rep,
                             const void *const *bodies, const size_t *lens, size_t n_bodies)
{
    self->replies++;
    msgpack_sbuffer_clear(&self->buf);
    kyu_reply_encode(rep, &self->buf);
    /* Straight to libzmq, part by part (each copied into its own zmq_msg_t): no zmsg, its
     * list and a zframe per part to allocate and free for every reply. ROUTER_MANDATORY
     * fails the routing part when the client is gone or its queue is full; once that part
     * is taken, the router takes (or, at worst, drops whole) the rest of the message. */
    void *sock = zsock_resolve(self->sock);
    if (!send_part(sock, zframe_data(identity), zframe_size(identity), ZMQ_SNDMORE)) {
        /* The client is gone or not reading: the write already happened; it will retry. */
        self->dropped_replies++;
        return false;
    }
    bool ok = send_part(sock, self->buf.data, self->buf.size, n_bodies ? ZMQ_SNDMORE : 0);
    for (size_t i = 0; i < n_bodies && ok; i++)
        ok = send_part(sock, bodies[i], lens[i], i + 1 < n_bodies ? ZMQ_SNDMORE : 0);
    if (!ok)
        self->dropped_replies++;
    return ok;
}

void kyu_frontend_send_error(kyu_frontend_t *self, zframe_t *identity, uint64_t id, kyu_code_t code,
                             const char *text)
{
    kyu_reply_t rep;
    kyu_reply_init_lean(&rep);
    rep.id = id;
    rep.status = code;
    snprintf(rep.error, sizeof rep.error, "%s", text);
    if (code == KYU_ERR_NOT_LEADER && self->ctx.replica)
        snprintf(rep.leader, sizeof rep.leader, "%s",
                 kyu_replica_leader_endpoint(self->ctx.replica));
    kyu_frontend_send_reply(self, identity, &rep, NULL, NULL, 0);
}

/* Reads and immediate admin ops: the row answers from the state at once. */
static void answer_now(kyu_frontend_t *self, zframe_t *identity, const kyu_op_row_t *row,
                       const kyu_request_t *req)
{
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    rep.id = req->id;
    kyu_err_t err;
    kyu_err_clear(&err);
    kyu_result_t bodies; /* an answer's body frames (PEEK) */
    memset(&bodies, 0, sizeof bodies);
    self->ctx.answer_bodies = &bodies;
    if (row->answer(&self->ctx, req, &rep, &err) != KYU_OK)
        kyu_frontend_send_error(self, identity, req->id, err.code, err.msg);
    else
        kyu_frontend_send_reply(self, identity, &rep, bodies.bodies, bodies.body_lens,
                                bodies.n_msgs);
    self->ctx.answer_bodies = NULL;
    kyu_result_clear(&bodies);
    kyu_reply_reset(&rep);
}

/* A read that waits for the early receives answered before it (replica_early.c): their
 * leases are not applied yet, and a client that received and then looks (PEEK, attributes)
 * must see its receive. Bounded in number (past it, answered at once) and in time. */
#define DEFERRED_MAX 1000
#define DEFERRED_WAIT_MS 1000

/* Takes identity when the read waits. */
static bool defer_read(kyu_frontend_t *self, zframe_t **identity, const kyu_request_t *req)
{
    uint64_t qid = req->queue[0] ? kyu_sm_queue_id(self->ctx.sm, req->queue) : 0;
    if (!qid || self->n_deferred >= DEFERRED_MAX ||
        kyu_replica_early_leases(self->ctx.replica, qid) == 0)
        return false;
    struct deferred *d = malloc(sizeof *d);
    if (!d)
        return false;
    d->identity = *identity;
    d->mark = kyu_replica_early_mark(self->ctx.replica);
    d->deadline = kyu_replica_now(self->ctx.replica) + DEFERRED_WAIT_MS;
    d->next = NULL;
    d->req = *req;
    *identity = NULL;
    if (self->deferred_tail)
        self->deferred_tail->next = d;
    else
        self->deferred = d;
    self->deferred_tail = d;
    self->n_deferred++;
    kyu_replica_propose_lazy(self->ctx.replica);
    return true;
}

void kyu_frontend_serve_deferred(kyu_frontend_t *self)
{
    while (self->deferred) {
        struct deferred *d = self->deferred;
        bool serving = kyu_replica_serving(self->ctx.replica);
        if (serving && !kyu_replica_early_reached(self->ctx.replica, d->mark) &&
            kyu_replica_now(self->ctx.replica) < d->deadline)
            return; /* the reads after it came later: they wait too */
        self->deferred = d->next;
        if (!self->deferred)
            self->deferred_tail = NULL;
        self->n_deferred--;
        if (serving)
            answer_now(self, d->identity, kyu_ops_row(d->req.op), &d->req);
        else
            kyu_frontend_send_error(self, d->identity, d->req.id, KYU_ERR_NOT_LEADER,
                                    "this node stopped leading while the read waited; retry");
        zframe_destroy(&d->identity);
        free(d);
    }
}

/* Admin ops a driver answers later (membership changes): takes identity when started. */
static void start_later(kyu_frontend_t *self, zframe_t **identity, const kyu_op_row_t *row,
                        const kyu_request_t *req)
{
    kyu_err_t err;
    kyu_err_clear(&err);
    waiter_t *w = malloc(sizeof *w);
    if (!w) {
        kyu_frontend_send_error(self, *identity, req->id, KYU_ERR_BUSY, "out of memory");
        return;
    }
    *w = (waiter_t){.identity = *identity, .id = req->id, .row = row};
    if (row->start(&self->ctx, req, w, &err) == KYU_OK) {
        *identity = NULL;
        return;
    }
    free(w);
    kyu_frontend_send_error(self, *identity, req->id, err.code, err.msg);
}

/* Receipt handles need the replicated handle key (sm_handle.c), and the state machine draws
 * no random numbers: a serving leader whose state has no key yet proposes one, ahead of the
 * write that asked, so it is applied before any handle is made. Once at a time: the flag is
 * cleared when the command's entry is applied or lost (kyu_frontend_on_result), and a lost
 * one is proposed again by the next write. */
void kyu_frontend_ensure_handle_key(kyu_frontend_t *self)
{
    if (self->key_proposed || kyu_sm_has_handle_key(self->ctx.sm))
        return;
    const kyu_op_row_t *row = kyu_ops_row(KYU_OP_SET_HANDLE_KEY);
    kyu_command_t cmd;
    memset(&cmd, 0, sizeof cmd);
    cmd.type = row->cmd;
    cmd.vt = -1;
    cmd.now_ms = kyu_replica_now(self->ctx.replica);
    kyu_op_handle_key_build(&cmd);
    waiter_t *w = malloc(sizeof *w);
    if (!w)
        return; /* the next write tries again */
    *w = (waiter_t){.identity = NULL, .row = row, .own = &self->key_proposed};
    kyu_err_t err;
    if (kyu_replica_propose(self->ctx.replica, &cmd, w, &err) == KYU_OK)
        self->key_proposed = true;
    else
        free(w);
    sodium_memzero(cmd.key, sizeof cmd.key);
}

/* Proposes the broker's own command cmd (no client waits for it); *own is set while it is
 * in flight and cleared when it is applied or lost (kyu_frontend_on_result). */
static void propose_own(kyu_frontend_t *self, const kyu_op_row_t *row, kyu_command_t *cmd,
                        bool *own)
{
    waiter_t *w = malloc(sizeof *w);
    if (!w)
        return; /* the next tick tries again */
    *w = (waiter_t){.identity = NULL, .row = row, .own = own};
    kyu_err_t err;
    if (kyu_replica_propose(self->ctx.replica, cmd, w, &err) == KYU_OK)
        *own = true;
    else
        free(w);
}

/* Message move tasks (broker/op_redrive.c): the leader drives the running ones, one
 * REDRIVE_STEP in flight at a time, proposed when a task has messages to move at its rate (or
 * none left). Its state is replicated: a new leader goes on where the old one stopped. */
static void redrive_tick(kyu_frontend_t *self)
{
    if (self->redrive_proposed)
        return;
    kyu_command_t cmd;
    memset(&cmd, 0, sizeof cmd);
    cmd.now_ms = kyu_replica_now(self->ctx.replica);
    if (!kyu_sm_redrive_due(self->ctx.sm, cmd.now_ms, cmd.queue, &cmd.move_task, &cmd.move_max))
        return;
    const kyu_op_row_t *row = kyu_ops_row(KYU_OP_REDRIVE_STEP);
    cmd.type = row->cmd;
    cmd.vt = -1;
    propose_own(self, row, &cmd, &self->redrive_proposed);
}

/* Retention (broker/sm_expiry.c): once a second at most, the leader looks whether a queue
 * holds messages past its MessageRetentionPeriod, and proposes one EXPIRE_MESSAGES with its
 * time when one does (one at a time). And the message move tasks' steps (redrive_tick). */
void kyu_frontend_tick(kyu_frontend_t *self)
{
    if (!self->ctx.replica || !kyu_replica_serving(self->ctx.replica))
        return;
    redrive_tick(self);
    if (self->expiry_proposed)
        return;
    uint64_t now = kyu_replica_now(self->ctx.replica);
    if (now < self->expiry_checked_at + 1000 && now >= self->expiry_checked_at)
        return;
    self->expiry_checked_at = now;
    if (!kyu_sm_expiry_due(self->ctx.sm, now))
        return;
    const kyu_op_row_t *row = kyu_ops_row(KYU_OP_EXPIRE_MESSAGES);
    kyu_command_t cmd;
    memset(&cmd, 0, sizeof cmd);
    cmd.type = row->cmd;
    cmd.vt = -1;
    cmd.now_ms = now;
    propose_own(self, row, &cmd, &self->expiry_proposed);
}

void kyu_frontend_send_empty(kyu_frontend_t *self, zframe_t *identity, uint64_t id)
{
    kyu_reply_t rep;
    kyu_reply_init_lean(&rep);
    rep.id = id;
    kyu_frontend_send_reply(self, identity, &rep, NULL, NULL, 0);
}

/* An early receive (kyu_replica_receive_early): answered here, its waiter NULL (nobody waits
 * for its entry). False: not answered, cmd unchanged but for its early fields. */
static bool answer_early(kyu_frontend_t *self, zframe_t *identity, const kyu_request_t *req,
                         kyu_command_t *cmd)
{
    kyu_result_t *res = &self->early_res;
    kyu_result_init(res);
    if (!kyu_replica_receive_early(self->ctx.replica, cmd, NULL, res))
        return false;
    kyu_reply_t rep;
    kyu_reply_init_lean(&rep);
    rep.id = req->id;
    size_t n_bodies = 0;
    kyu_op_receive_reply(res, &rep, &n_bodies);
    kyu_frontend_send_reply(self, identity, &rep, res->bodies, res->body_lens, n_bodies);
    kyu_result_clear(res);
    self->early_answers++;
    return true;
}

/* Writes: checked against the state and the limits, built into a command and proposed; the
 * reply goes when the command is applied (kyu_frontend_on_result). Takes identity when
 * proposed or parked. lp: a long poll woken (taken, whatever happens), or NULL for a new
 * request, which gets one when its row lets it wait. */
void kyu_frontend_propose(kyu_frontend_t *self, zframe_t **identity, const kyu_op_row_t *row,
                          const kyu_request_t *req, const kyu_bodies_t *bodies,
                          kyu_longpoll_waiter_t *lp)
{
    kyu_err_t err;
    kyu_err_clear(&err);
    if (row->validate && row->validate(&self->ctx, req, bodies, &err) != KYU_OK) {
        kyu_longpoll_waiter_destroy(&lp);
        kyu_frontend_send_error(self, *identity, req->id, err.code, err.msg);
        return;
    }
    bool woken = lp != NULL;
    if (!lp && row->wait_ms)
        lp = kyu_frontend_wait_new(self, req, row->wait_ms(&self->ctx, req));
    /* A new long poll waits behind those of its queue that came first, even when a message
     * is visible: they are woken in order of arrival (serve_waiting). Not a retry the state
     * machine remembers: it is answered with what its first attempt leased, at once. */
    bool behind = lp && !woken && kyu_longpoll_waiting(self->lp, req->queue) > 0 &&
                  !((req->fields & KYU_F_RQ) &&
                    kyu_sm_knows_request(self->ctx.sm, req->rq_client, req->rq_key,
                                         kyu_replica_now(self->ctx.replica)));
    /* Woken for messages of a send not applied yet (serving in the send's entry): proposed
     * although it would find nothing now. */
    bool ahead = woken && self->waking_ahead;
    if (behind || (!ahead && row->answer_empty && row->answer_empty(&self->ctx, req))) {
        if (lp && kyu_replica_now(self->ctx.replica) < lp->deadline_ms) {
            if (kyu_frontend_park(self, identity, lp, &err) == KYU_OK) {
                if (behind)
                    kyu_longpoll_mark(self->lp, req->queue);
                return;
            }
            kyu_longpoll_waiter_destroy(&lp);
            kyu_frontend_send_error(self, *identity, req->id, err.code, err.msg);
            return;
        }
        kyu_longpoll_waiter_destroy(&lp);
        kyu_frontend_send_empty(self, *identity, req->id);
        return;
    }
    kyu_frontend_ensure_handle_key(self);
    kyu_command_t cmd;
    kyu_command_init(&cmd);
    cmd.type = row->cmd;
    snprintf(cmd.queue, sizeof cmd.queue, "%s", req->queue);
    cmd.vt = (req->fields & KYU_F_VT) ? (int64_t)req->vt : -1;
    cmd.max = (req->fields & KYU_F_MAX) ? req->max : 1;
    if (req->fields & KYU_F_RQ) { /* the codec allows it only on ops that take it */
        cmd.rq_client = req->rq_client;
        cmd.rq_key = req->rq_key;
    }
    cmd.now_ms = kyu_replica_now(self->ctx.replica); /* before build: SEND's deliver-at */
    if (row->build)
        row->build(&self->ctx, req, bodies, &cmd);
    /* A receive that finds messages now is answered now, its lease proposed behind the
     * answer (replica_early.c; the durable way when the leader cannot be sure apply will
     * record exactly that answer). Not a woken long poll's: those keep their order. */
    if (row->op == KYU_OP_RECEIVE && !woken && answer_early(self, *identity, req, &cmd)) {
        kyu_longpoll_waiter_destroy(&lp);
        return;
    }
    waiter_t *w = malloc(sizeof *w);
    if (!w) {
        kyu_longpoll_waiter_destroy(&lp);
        kyu_frontend_send_error(self, *identity, req->id, KYU_ERR_BUSY, "out of memory");
        return;
    }
    *w = (waiter_t){.identity = *identity, .id = req->id, .row = row, .lp = lp};
    if (row->op == KYU_OP_SEND || row->op == KYU_OP_PUBLISH)
        kyu_frontend_note_sent(self, req, &cmd, w); /* before: w is the replica's after */
    if (kyu_replica_propose(self->ctx.replica, &cmd, w, &err) != KYU_OK) {
        kyu_frontend_sent_done(self, w);
        free(w);
        kyu_longpoll_waiter_destroy(&lp);
        kyu_frontend_send_error(self, *identity, req->id, err.code, err.msg);
        return;
    }
    if (lp)
        kyu_longpoll_add_pending(self->lp, lp->queue, 1);
    *identity = NULL;
}

static void propose(kyu_frontend_t *self, zframe_t **identity, const kyu_op_row_t *row,
                    const kyu_request_t *req, const kyu_bodies_t *bodies)
{
    kyu_frontend_propose(self, identity, row, req, bodies, NULL);
}

/* The request in self->in: [identity, header, bodies...]. Its parts stay in self->in (the
 * bodies borrowed from there while it is handled); only the identity, which a waiter keeps
 * past the request, is copied into a frame of its own. */
static void handle_request(kyu_frontend_t *self)
{
    kyu_parts_t *in = self->in;
    if (in->n == 0)
        return;
    zframe_t *identity = zframe_new(kyu_part_data(in, 0), kyu_part_size(in, 0));
    if (!identity)
        return; /* out of memory: the client times out and retries */
    kyu_err_t err;
    kyu_err_clear(&err);
    kyu_request_t req;
    if (in->n < 2) {
        kyu_frontend_send_error(self, identity, 0, KYU_ERR_MALFORMED,
                                "request has no header frame");
        zframe_destroy(&identity);
        return;
    }
    kyu_bodies_t bodies = {.b = self->in_bodies, .n = in->n - 2};
    for (size_t i = 0; i < bodies.n; i++)
        self->in_bodies[i] = (kyu_body_t){kyu_part_data(in, i + 2), kyu_part_size(in, i + 2)};
    if (kyu_request_decode(kyu_part_data(in, 1), kyu_part_size(in, 1), bodies.n, &req, &err) !=
        KYU_OK) {
        kyu_frontend_send_error(self, identity, req.has_id ? req.id : 0, err.code, err.msg);
    } else {
        const kyu_op_row_t *row = kyu_ops_row(req.op);
        if (!row) { /* a wire op without a row: tests/unit/test_ops.c keeps this from happening */
            kyu_frontend_send_error(self, identity, req.id, KYU_ERR_UNKNOWN_OP,
                                    "this broker has no such op");
        } else if (!(row->flags & KYU_ROW_ANY_ROLE) && !kyu_replica_serving(self->ctx.replica) &&
                   !*kyu_replica_leader_endpoint(self->ctx.replica) &&
                   kyu_replica_read_only(self->ctx.replica)) {
            /* No leader known and this node's disk is full: say that, not "an election is
             * under way" (every node of a cluster whose disks are full is here). */
            kyu_frontend_send_error(self, identity, req.id, KYU_ERR_READ_ONLY,
                                    kyu_replica_read_only(self->ctx.replica));
        } else if (!(row->flags & KYU_ROW_ANY_ROLE) && !kyu_replica_serving(self->ctx.replica)) {
            /* Only a leader that has applied an entry of its own term holds every committed
             * write: followers (and a leader still catching up) refuse reads too, so no
             * client ever sees state older than one it saw before. */
            kyu_frontend_send_error(
                self, identity, req.id, KYU_ERR_NOT_LEADER,
                *kyu_replica_leader_endpoint(self->ctx.replica)
                    ? "this node is not the leader; the leader is named in the reply"
                    : "no leader is known yet (an election is under way); retry shortly");
        } else if (row->answer) {
            if (!defer_read(self, &identity, &req))
                answer_now(self, identity, row, &req);
        } else if (row->start) {
            start_later(self, &identity, row, &req);
        } else if (row->session) {
            /* The peer's address (libzmq's metadata of the received message), for
             * LIST_WORKERS */
            const char *host = zmq_msg_gets(&in->part[1], "Peer-Address");
            kyu_frontend_session(self, &identity, row, &req, host ? host : "");
        } else {
            propose(self, &identity, row, &req, &bodies);
        }
    }
    zframe_destroy(&identity);
}

void kyu_frontend_on_readable(kyu_frontend_t *self)
{
    for (int i = 0; i < DRAIN_MAX; i++) {
        if (!kyu_recv_request(self->sock, self->ctx.max_body, self->in))
            break;
        handle_request(self);
    }
    kyu_parts_clear(self->in);     /* the last request's parts, not held until the next */
    kyu_frontend_serve_sent(self); /* into the open entry, with the sends */
    kyu_replica_flush(self->ctx.replica);
    kyu_frontend_serve_waiting(self);
}

void kyu_frontend_on_result(void *arg, void *waiter, kyu_result_t *res)
{
    kyu_frontend_t *self = arg;
    waiter_t *w = waiter;
    if (!w)
        return;
    kyu_frontend_sent_done(self, w);
    if (w->sid) { /* a worker session's push or release */
        kyu_frontend_workers_result(self, w, res);
        free(w);
        return;
    }
    if (!w->identity) { /* our own command: applied, or to be proposed again */
        *w->own = false;
        free(w);
        return;
    }
    if (w->lp) {
        /* A long poll's receive: its queue is looked at again (more messages may be there
         * for the waiters behind it), and it waits again if it found nothing (another
         * receive took the message) and time is left. The attempt was applied: its request
         * key is spent (a RECEIVE with the same key would replay this empty attempt). */
        kyu_longpoll_waiter_t *lp = w->lp;
        w->lp = NULL;
        kyu_longpoll_add_pending(self->lp, lp->queue, -1);
        kyu_err_t err;
        lp->fields &= ~KYU_F_RQ;
        bool again = res->code == KYU_OK && res->n_msgs == 0 &&
                     kyu_replica_serving(self->ctx.replica) &&
                     kyu_replica_now(self->ctx.replica) < lp->deadline_ms &&
                     kyu_frontend_park(self, &w->identity, lp, &err) == KYU_OK;
        self->rearm |= kyu_longpoll_mark(self->lp, lp->queue);
        if (again) {
            free(w);
            return;
        }
        kyu_longpoll_waiter_destroy(&lp);
    }
    if (res->code != KYU_OK) {
        kyu_frontend_send_error(self, w->identity, w->id, res->code, res->error);
        zframe_destroy(&w->identity);
        free(w);
        return;
    }
    kyu_reply_t rep;
    kyu_reply_init_lean(&rep); /* the rows' reply functions fill what they count */
    rep.id = w->id;
    size_t n_bodies = 0;
    if (w->row->reply)
        w->row->reply(res, &rep, &n_bodies);
    kyu_frontend_send_reply(self, w->identity, &rep, res->bodies, res->body_lens, n_bodies);
    /* what a row's reply allocated (START_MOVE_TASK's task: it leaked before); not
     * kyu_reply_reset, which would clear the whole reply again */
    free(rep.queues);
    free(rep.tags);
    free(rep.tasks);
    free(rep.header);
    zframe_destroy(&w->identity);
    free(w);
}
