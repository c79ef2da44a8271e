/* frontend: requests in, replies out. Which way a request takes, and what it does, is its
 * row in the table of operations (ops.c); this file only moves frames, and holds back the
 * receives that wait for a message (long polling: "Long polling" below). */
#include "frontend.h"
#include "longpoll.h"
#include "ops.h"
#include "recv_bounded.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define DRAIN_MAX 1024 /* requests per readable event, so the storage pipe is served too */

struct kyu_frontend {
    zsock_t *sock;
    kyu_op_ctx_t ctx; /* what the rows' functions work with */
    msgpack_sbuffer buf;
    bool key_proposed; /* a SET_HANDLE_KEY waits for its entry (see ensure_handle_key) */
    /* Retention: an EXPIRE_MESSAGES waits for its entry; when queues were last looked at
     * (cluster time; see kyu_frontend_tick) */
    bool expiry_proposed;
    uint64_t expiry_checked_at;
    uint64_t dropped_replies;
    char endpoint[KYU_ENDPOINT_MAX];
    /* Long polling: the parked receives, their order of arrival, and the one timer that
     * wakes the loop at the earliest deadline or end of a lease or delay on a queue that has
     * waiters (timer_at, in cluster time; UINT64_MAX: none). */
    kyu_longpoll_t *lp;
    uint64_t arrivals;
    zloop_t *loop;
    int timer_id; /* -1: none */
    uint64_t timer_at;
    bool timer_fired;
    bool rearm; /* something changed that may move the timer */
};

typedef struct {
    zframe_t *identity;
    uint64_t id;
    const kyu_op_row_t *row;
    kyu_longpoll_waiter_t *lp; /* a receive that may wait: parked when it finds nothing */
    bool *own; /* the broker's own command (no identity): the flag cleared once it is done */
} waiter_t;

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
    self->lp = kyu_longpoll_new(cfg->max_waiting);
    if (!self->lp) {
        kyu_err_set(err, KYU_ERR_INTERNAL, "out of memory");
        kyu_frontend_destroy(&self);
        return NULL;
    }
    kyu_sm_watch_visible(sm); /* its list of woken queues: kyu_frontend_serve_waiting */
    snprintf(self->endpoint, sizeof self->endpoint, "%s", cfg->endpoint);
    self->ctx.endpoint = self->endpoint;
    msgpack_sbuffer_init(&self->buf);
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
    kyu_longpoll_destroy(&self->lp);
    msgpack_sbuffer_destroy(&self->buf);
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
    if (code == KYU_ERR_NOT_LEADER && self->ctx.replica)
        snprintf(rep.leader, sizeof rep.leader, "%s",
                 kyu_replica_leader_endpoint(self->ctx.replica));
    send_reply(self, identity, &rep, NULL, NULL, 0);
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
        send_error(self, identity, req->id, err.code, err.msg);
    else
        send_reply(self, identity, &rep, bodies.bodies, bodies.body_lens, bodies.n_msgs);
    self->ctx.answer_bodies = NULL;
    kyu_result_clear(&bodies);
    kyu_reply_reset(&rep);
}

/* Admin ops a driver answers later (membership changes): takes identity when started. */
static void start_later(kyu_frontend_t *self, zframe_t **identity, const kyu_op_row_t *row,
                        const kyu_request_t *req)
{
    kyu_err_t err;
    kyu_err_clear(&err);
    waiter_t *w = malloc(sizeof *w);
    if (!w) {
        send_error(self, *identity, req->id, KYU_ERR_BUSY, "out of memory");
        return;
    }
    *w = (waiter_t){.identity = *identity, .id = req->id, .row = row};
    if (row->start(&self->ctx, req, w, &err) == KYU_OK) {
        *identity = NULL;
        return;
    }
    free(w);
    send_error(self, *identity, req->id, err.code, err.msg);
}

/* Receipt handles need the replicated handle key (sm_handle.c), and the state machine draws
 * no random numbers: a serving leader whose state has no key yet proposes one, ahead of the
 * write that asked, so it is applied before any handle is made. Once at a time: the flag is
 * cleared when the command's entry is applied or lost (kyu_frontend_on_result), and a lost
 * one is proposed again by the next write. */
static void ensure_handle_key(kyu_frontend_t *self)
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

/* Retention (broker/sm_expiry.c): once a second at most, the leader looks whether a queue
 * holds messages past its MessageRetentionPeriod, and proposes one EXPIRE_MESSAGES with its
 * time when one does (one at a time). */
void kyu_frontend_tick(kyu_frontend_t *self)
{
    if (!self->ctx.replica || self->expiry_proposed || !kyu_replica_serving(self->ctx.replica))
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
    waiter_t *w = malloc(sizeof *w);
    if (!w)
        return; /* the next tick tries again */
    *w = (waiter_t){.identity = NULL, .row = row, .own = &self->expiry_proposed};
    kyu_err_t err;
    if (kyu_replica_propose(self->ctx.replica, &cmd, w, &err) == KYU_OK)
        self->expiry_proposed = true;
    else
        free(w);
}

/* ---- Long polling ----
 * A RECEIVE whose row says it may wait (its "wt", or its queue's default) and that would find
 * nothing is parked (longpoll.h) instead of answered empty. After each event the loop calls
 * kyu_frontend_serve_waiting, which takes the state machine's list of queues that may have
 * visible messages (sm_wake.c: sends, leases set or released, delays, deletions), and wakes
 * the first waiters of each such queue, as many as its visible messages can serve (less the
 * receives already proposed for its waiters). A woken waiter goes the normal way: its RECEIVE
 * is proposed, applied and answered; one that finds nothing (another took the message) is
 * parked again in its place while time is left. Leases that run out and delays that end
 * need no command: one zloop timer is set to the earliest deadline or visible_at among the
 * queues with waiters, so idle waiters cost nothing. A waiter whose deadline passes is
 * answered empty; when this node stops serving (leadership lost or handed over) every waiter
 * is answered NOT_LEADER, so that its client asks the new leader; a deleted queue's waiters
 * get NO_SUCH_QUEUE. */

/* A long poll's record for a request that may wait wait_ms (NULL when it may not or when out
 * of memory: it is then answered like a receive without a wait). */
static kyu_longpoll_waiter_t *new_waiter(kyu_frontend_t *self, const kyu_request_t *req,
                                         uint64_t wait_ms)
{
    kyu_longpoll_waiter_t *lp = wait_ms ? kyu_longpoll_waiter_new() : NULL;
    if (!lp)
        return NULL;
    lp->id = req->id;
    snprintf(lp->queue, sizeof lp->queue, "%s", req->queue);
    lp->qid = kyu_sm_queue_id(self->ctx.sm, req->queue);
    lp->fields = req->fields & (KYU_F_VT | KYU_F_MAX | KYU_F_RQ);
    lp->vt = req->vt;
    lp->max = req->max;
    lp->rq_client = req->rq_client;
    lp->rq_key = req->rq_key;
    lp->deadline_ms = kyu_replica_now(self->ctx.replica) + wait_ms;
    lp->arrival = ++self->arrivals;
    return lp;
}

/* The request a parked receive stands for (its wait is its deadline now). */
static void waiter_request(const kyu_longpoll_waiter_t *lp, kyu_request_t *req)
{
    memset(req, 0, sizeof *req);
    req->op = KYU_OP_RECEIVE;
    req->id = lp->id;
    req->has_id = true;
    req->fields = KYU_F_QUEUE | lp->fields;
    snprintf(req->queue, sizeof req->queue, "%s", lp->queue);
    req->vt = lp->vt;
    req->max = lp->max;
    req->rq_client = lp->rq_client;
    req->rq_key = lp->rq_key;
}

/* Parks lp with the client's identity (taken): KYU_OK, or BUSY past the limit (then both
 * stay the caller's). */
static kyu_code_t park(kyu_frontend_t *self, zframe_t **identity, kyu_longpoll_waiter_t *lp,
                       kyu_err_t *err)
{
    lp->identity = *identity;
    if (kyu_longpoll_park(self->lp, lp, err) != KYU_OK) {
        lp->identity = NULL;
        return err->code;
    }
    *identity = NULL;
    self->rearm = true;
    return KYU_OK;
}

static void send_empty(kyu_frontend_t *self, zframe_t *identity, uint64_t id)
{
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    rep.id = id;
    send_reply(self, identity, &rep, NULL, NULL, 0);
}

/* Writes: checked against the state and the limits, built into a command and proposed; the
 * reply goes when the command is applied (kyu_frontend_on_result). Takes identity when
 * proposed or parked. lp: a long poll woken (taken, whatever happens), or NULL for a new
 * request, which gets one when its row lets it wait. */
static void propose_or_park(kyu_frontend_t *self, zframe_t **identity, const kyu_op_row_t *row,
                            const kyu_request_t *req, zmsg_t *bodies, kyu_longpoll_waiter_t *lp)
{
    kyu_err_t err;
    kyu_err_clear(&err);
    if (row->validate && row->validate(&self->ctx, req, bodies, &err) != KYU_OK) {
        kyu_longpoll_waiter_destroy(&lp);
        send_error(self, *identity, req->id, err.code, err.msg);
        return;
    }
    bool woken = lp != NULL;
    if (!lp && row->wait_ms)
        lp = new_waiter(self, req, row->wait_ms(&self->ctx, req));
    /* A new long poll waits behind those of its queue that came first, even when a message
     * is visible: they are woken in order of arrival (serve_waiting). Not a retry the state
     * machine remembers: it is answered with what its first attempt leased, at once. */
    bool behind = lp && !woken && kyu_longpoll_waiting(self->lp, req->queue) > 0 &&
                  !((req->fields & KYU_F_RQ) &&
                    kyu_sm_knows_request(self->ctx.sm, req->rq_client, req->rq_key,
                                         kyu_replica_now(self->ctx.replica)));
    if (behind || (row->answer_empty && row->answer_empty(&self->ctx, req))) {
        if (lp && kyu_replica_now(self->ctx.replica) < lp->deadline_ms) {
            if (park(self, identity, lp, &err) == KYU_OK) {
                if (behind)
                    kyu_longpoll_mark(self->lp, req->queue);
                return;
            }
            kyu_longpoll_waiter_destroy(&lp);
            send_error(self, *identity, req->id, err.code, err.msg);
            return;
        }
        kyu_longpoll_waiter_destroy(&lp);
        send_empty(self, *identity, req->id);
        return;
    }
    ensure_handle_key(self);
    kyu_command_t cmd;
    memset(&cmd, 0, sizeof cmd);
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
    waiter_t *w = malloc(sizeof *w);
    if (!w) {
        kyu_longpoll_waiter_destroy(&lp);
        send_error(self, *identity, req->id, KYU_ERR_BUSY, "out of memory");
        return;
    }
    *w = (waiter_t){.identity = *identity, .id = req->id, .row = row, .lp = lp};
    if (kyu_replica_propose(self->ctx.replica, &cmd, w, &err) != KYU_OK) {
        free(w);
        kyu_longpoll_waiter_destroy(&lp);
        send_error(self, *identity, req->id, err.code, err.msg);
        return;
    }
    if (lp)
        kyu_longpoll_add_pending(self->lp, lp->queue, 1);
    *identity = NULL;
}

static void propose(kyu_frontend_t *self, zframe_t **identity, const kyu_op_row_t *row,
                    const kyu_request_t *req, zmsg_t *bodies)
{
    propose_or_park(self, identity, row, req, bodies, NULL);
}

/* Proposes a parked receive again (taken): the normal path, which parks it again if it would
 * still find nothing. A queue deleted meanwhile (or deleted and created again: another id)
 * answers NO_SUCH_QUEUE. */
static void wake(kyu_frontend_t *self, kyu_longpoll_waiter_t *lp)
{
    zframe_t *identity = lp->identity;
    lp->identity = NULL;
    if (kyu_sm_queue_id(self->ctx.sm, lp->queue) != lp->qid) {
        send_error(self, identity, lp->id, KYU_ERR_NO_SUCH_QUEUE,
                   "the queue was deleted while the receive waited");
        kyu_longpoll_waiter_destroy(&lp);
    } else {
        kyu_request_t req;
        waiter_request(lp, &req);
        propose_or_park(self, &identity, kyu_ops_row(KYU_OP_RECEIVE), &req, NULL, lp);
    }
    zframe_destroy(&identity);
}

/* Wakes the first waiters of queue, as many as its visible messages serve beyond the
 * receives already proposed for its waiters; each takes up to its max. A deleted queue's
 * waiters are all woken (and answered NO_SUCH_QUEUE). Returns true when it woke any. */
static bool serve_queue(kyu_frontend_t *self, const char *queue, uint64_t now)
{
    /* The waiters of a deleted queue (also one created again since: another id) came before
     * any waiter of the queue now under that name: they are first in the list. */
    uint64_t qid = kyu_sm_queue_id(self->ctx.sm, queue);
    const kyu_longpoll_waiter_t *first;
    while ((first = kyu_longpoll_first(self->lp, queue)) != NULL && first->qid != qid)
        wake(self, kyu_longpoll_take_first(self->lp, queue)); /* NO_SUCH_QUEUE */
    size_t n = kyu_longpoll_waiting(self->lp, queue);
    if (n == 0)
        return false;
    /* As many as the visible messages serve; those proposed already take from the same
     * messages first (their commands come earlier). */
    uint64_t pending = kyu_longpoll_pending(self->lp, queue);
    uint64_t budget =
        kyu_sm_visible_upto(self->ctx.sm, queue, now, KYU_BATCH_MAX * (uint64_t)n + pending);
    budget = budget > pending ? budget - pending : 0;
    bool woke = false;
    while (budget > 0) {
        kyu_longpoll_waiter_t *lp = kyu_longpoll_take_first(self->lp, queue);
        if (!lp)
            break;
        uint32_t max = (lp->fields & KYU_F_MAX) ? lp->max : 1;
        budget = budget > max ? budget - max : 0;
        wake(self, lp);
        woke = true;
    }
    return woke;
}

/* Answers every parked receive: NOT_LEADER (its client asks the leader) or, with code
 * KYU_OK, empty (the broker stops). */
static size_t answer_all(kyu_frontend_t *self, kyu_code_t code, const char *why)
{
    size_t n = 0;
    for (kyu_longpoll_waiter_t *lp; (lp = kyu_longpoll_take_any(self->lp)) != NULL; n++) {
        if (code == KYU_OK)
            send_empty(self, lp->identity, lp->id);
        else
            send_error(self, lp->identity, lp->id, code, why);
        kyu_longpoll_waiter_destroy(&lp);
    }
    return n;
}

/* kyu_longpoll_mark_idle_if's test: a message of queue is visible by now (a lease or a
 * delay ended). */
static bool visible_by_now(void *arg, const char *queue)
{
    kyu_frontend_t *self = arg;
    return kyu_sm_next_visible_at(self->ctx.sm, queue) <= kyu_replica_now(self->ctx.replica);
}

static int on_timer(zloop_t *loop, int timer_id, void *arg)
{
    (void)loop, (void)timer_id;
    kyu_frontend_t *self = arg;
    self->timer_id = -1; /* a one-shot timer: zloop drops it */
    self->timer_at = UINT64_MAX;
    self->timer_fired = true;
    kyu_frontend_serve_waiting(self);
    return 0;
}

/* Sets the timer to the earliest deadline, or time a lease or delay ends on a queue whose
 * waiters have no receive pending (those with one are looked at again when it is answered). */
static void set_timer(kyu_frontend_t *self, uint64_t now)
{
    uint64_t at = kyu_longpoll_next_deadline(self->lp);
    for (const char *q = kyu_longpoll_first_idle(self->lp); q;
         q = kyu_longpoll_next_idle(self->lp)) {
        uint64_t v = kyu_sm_next_visible_at(self->ctx.sm, q);
        at = v < at ? v : at;
    }
    if (at == self->timer_at || !self->loop)
        return;
    if (self->timer_id >= 0)
        zloop_timer_end(self->loop, self->timer_id);
    self->timer_id = -1;
    self->timer_at = at;
    if (at == UINT64_MAX)
        return;
    /* A ms late rather than early: the loop's clock and the cluster's time may differ by
     * rounding; a timer that fires early finds nothing due and is set again. */
    size_t delay = at > now ? (size_t)(at - now) + 1 : 1;
    self->timer_id = zloop_timer(self->loop, delay, 1, on_timer, self);
    KYU_ASSERT(self->timer_id >= 0);
}

void kyu_frontend_serve_waiting(kyu_frontend_t *self)
{
    char names[64][KYU_NAME_MAX + 1];
    size_t n;
    do {
        n = kyu_sm_take_woken(self->ctx.sm, names, 64);
        for (size_t i = 0; i < n; i++)
            self->rearm |= kyu_longpoll_mark(self->lp, names[i]);
    } while (n == 64);
    /* The common case, also with a thousand idle waiters: nothing changed, nothing to do. */
    bool changed = self->rearm || self->timer_fired;
    if (!changed && kyu_longpoll_count(self->lp) == 0)
        return;
    bool serving = kyu_replica_serving(self->ctx.replica);
    if (!changed && serving &&
        kyu_longpoll_next_deadline(self->lp) > kyu_replica_now(self->ctx.replica))
        return;
    if (!serving) {
        answer_all(self, KYU_ERR_NOT_LEADER,
                   "this node stopped leading while the receive waited; ask the leader again");
    } else {
        uint64_t now = kyu_replica_now(self->ctx.replica);
        for (kyu_longpoll_waiter_t *lp; (lp = kyu_longpoll_take_expired(self->lp, now)) != NULL;) {
            send_empty(self, lp->identity, lp->id);
            kyu_longpoll_waiter_destroy(&lp);
        }
        if (self->timer_fired) /* a lease or a delay may have ended on a queue with waiters */
            kyu_longpoll_mark_idle_if(self->lp, visible_by_now, self);
        bool woke = false;
        for (char q[KYU_NAME_MAX + 1]; kyu_longpoll_take_marked(self->lp, q);)
            woke |= serve_queue(self, q, now);
        if (woke)
            kyu_replica_flush(self->ctx.replica);
    }
    self->timer_fired = false;
    self->rearm = false;
    set_timer(self, kyu_replica_now(self->ctx.replica));
}

void kyu_frontend_set_loop(kyu_frontend_t *self, zloop_t *loop)
{
    if (self->loop && self->timer_id >= 0 && loop == self->loop)
        return;
    self->loop = loop; /* a loop that is gone took its timers with it */
    self->timer_id = -1;
    self->timer_at = UINT64_MAX;
    self->rearm = true;
}

size_t kyu_frontend_stop_waiting(kyu_frontend_t *self)
{
    size_t n = answer_all(self, KYU_OK, "");
    if (n > 0)
        zsock_set_linger(self->sock, 500); /* let the empty replies go before the socket closes */
    return n;
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
    } else {
        const kyu_op_row_t *row = kyu_ops_row(req.op);
        if (!row) { /* a wire op without a row: tests/unit/test_ops.c keeps this from happening */
            send_error(self, identity, req.id, KYU_ERR_UNKNOWN_OP, "this broker has no such op");
        } else if (!(row->flags & KYU_ROW_ANY_ROLE) && !kyu_replica_serving(self->ctx.replica)) {
            /* Only a leader that has applied an entry of its own term holds every committed
             * write: followers (and a leader still catching up) refuse reads too, so no
             * client ever sees state older than one it saw before. */
            send_error(self, identity, req.id, KYU_ERR_NOT_LEADER,
                       *kyu_replica_leader_endpoint(self->ctx.replica)
                           ? "this node is not the leader; the leader is named in the reply"
                           : "no leader is known yet (an election is under way); retry shortly");
        } else if (row->answer) {
            answer_now(self, identity, row, &req);
        } else if (row->start) {
            start_later(self, &identity, row, &req);
        } else {
            propose(self, &identity, row, &req, msg);
        }
    }
    zframe_destroy(&identity);
    zframe_destroy(&header);
    zmsg_destroy(msg_p);
}

void kyu_frontend_on_readable(kyu_frontend_t *self)
{
    for (int i = 0; i < DRAIN_MAX; i++) {
        zmsg_t *msg = kyu_recv_request(self->sock, self->ctx.max_body);
        if (!msg)
            break;
        handle_request(self, &msg);
    }
    kyu_replica_flush(self->ctx.replica);
    kyu_frontend_serve_waiting(self);
}

void kyu_frontend_on_result(void *arg, void *waiter, kyu_result_t *res)
{
    kyu_frontend_t *self = arg;
    waiter_t *w = waiter;
    if (!w)
        return;
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
        lp->fields &= ~(unsigned)KYU_F_RQ;
        bool again = res->code == KYU_OK && res->n_msgs == 0 &&
                     kyu_replica_serving(self->ctx.replica) &&
                     kyu_replica_now(self->ctx.replica) < lp->deadline_ms &&
                     park(self, &w->identity, lp, &err) == KYU_OK;
        self->rearm |= kyu_longpoll_mark(self->lp, lp->queue);
        if (!again)
            kyu_longpoll_waiter_destroy(&lp);
        if (again) {
            free(w);
            return;
        }
    }
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
    if (w->row->reply)
        w->row->reply(res, &rep, &n_bodies);
    send_reply(self, w->identity, &rep, res->bodies, res->body_lens, n_bodies);
    zframe_destroy(&w->identity);
    free(w);
}
