/* frontend_wait: the receives the frontend holds for long polling, and what wakes them.
 *
 * A RECEIVE whose row says it may wait (its "wt", or its queue's default) and that would find
 * nothing is parked (longpoll.h) instead of answered empty. After each event the loop calls
 * kyu_frontend_serve_waiting, which takes the state machine's list of queues that may have
 * visible messages (sm_wake.c: sends, leases set or released, delays, deletions), and wakes
 * the first waiters of each such queue, as many as its visible messages can serve (less the
 * receives already proposed for its waiters). A woken waiter goes the normal way: its RECEIVE
 * is proposed, applied and answered; one that finds nothing (another took the message) is
 * parked again in its place while time is left. A SEND to a queue with waiters is served in
 * its own entry: its messages a receive would find are counted ahead (kyu_frontend_note_sent)
 * and the queue is served before the open entry is proposed (kyu_frontend_serve_sent), so
 * the woken RECEIVEs follow the SEND in the same entry (one fsync, not two); a PUBLISH does
 * the same for each subscribed queue its copies will reach (kyu_sm_publish_visible_at_once);
 * a wrong guess is a RECEIVE that finds nothing and parks again. Leases that run out and
 * delays that end need no command: one zloop timer is set to the earliest deadline or
 * visible_at among the queues with waiters, so idle waiters cost nothing. A waiter whose deadline
 * passes is answered empty; when this node stops serving (leadership lost or handed over) every
 * waiter is answered NOT_LEADER, so that its client asks the new leader; a deleted queue's waiters
 * get NO_SUCH_QUEUE. The design: docs/ARCHITECTURE.md, "Long polling". */
#include "frontend_internal.h"

#include <stdlib.h>
#include <string.h>

/* A long poll's record for a request that may wait wait_ms (NULL when it may not or when out
 * of memory: it is then answered like a receive without a wait). */
kyu_longpoll_waiter_t *kyu_frontend_wait_new(kyu_frontend_t *self, const kyu_request_t *req,
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
kyu_code_t kyu_frontend_park(kyu_frontend_t *self, zframe_t **identity, kyu_longpoll_waiter_t *lp,
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

/* Proposes a parked receive again (taken): the normal path, which parks it again if it would
 * still find nothing. A queue deleted meanwhile (or deleted and created again: another id)
 * answers NO_SUCH_QUEUE. */
static void wake(kyu_frontend_t *self, kyu_longpoll_waiter_t *lp)
{
    zframe_t *identity = lp->identity;
    lp->identity = NULL;
    if (kyu_sm_queue_id(self->ctx.sm, lp->queue) != lp->qid) {
        kyu_frontend_send_error(self, identity, lp->id, KYU_ERR_NO_SUCH_QUEUE,
                                "the queue was deleted while the receive waited");
        kyu_longpoll_waiter_destroy(&lp);
    } else {
        kyu_request_t req;
        waiter_request(lp, &req);
        kyu_frontend_propose(self, &identity, kyu_ops_row(KYU_OP_RECEIVE), &req, NULL, lp);
    }
    zframe_destroy(&identity);
}

/* The messages of queue's SENDs proposed and not applied yet that a receive would find. */
static uint64_t ahead_of(kyu_frontend_t *self, const char *queue)
{
    return self->ahead ? (uint64_t)(uintptr_t)zhashx_lookup(self->ahead, queue) : 0;
}

static void ahead_add(kyu_frontend_t *self, const char *queue, int64_t delta)
{
    uint64_t n = ahead_of(self, queue);
    KYU_ASSERT(delta >= 0 || n >= (uint64_t)-delta);
    n = (uint64_t)((int64_t)n + delta);
    if (n == 0)
        zhashx_delete(self->ahead, queue);
    else
        zhashx_update(self->ahead, queue, (void *)(uintptr_t)n);
}

/* Wakes the first waiters of queue, as many as its visible messages and those of its sends
 * proposed and not applied yet (less taken: asked for by worker sessions meanwhile) serve
 * beyond the receives already proposed for its waiters; each takes up to its max. A deleted
 * queue's waiters are all woken (and answered NO_SUCH_QUEUE). Returns true when it woke
 * any. */
static bool serve_queue(kyu_frontend_t *self, const char *queue, uint64_t now, uint64_t taken)
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
    uint64_t ahead = ahead_of(self, queue);
    ahead = ahead > taken ? ahead - taken : 0;
    uint64_t budget =
        kyu_sm_visible_upto(self->ctx.sm, queue, now, KYU_BATCH_MAX * (uint64_t)n + pending) +
        ahead;
    budget = budget > pending ? budget - pending : 0;
    bool woke = false;
    /* Messages ahead are not applied yet: a receive woken for them is proposed even though
     * it would find nothing now (its command follows their send's). */
    self->waking_ahead = ahead > 0;
    while (budget > 0) {
        kyu_longpoll_waiter_t *lp = kyu_longpoll_take_first(self->lp, queue);
        if (!lp)
            break;
        uint32_t max = (lp->fields & KYU_F_MAX) ? lp->max : 1;
        budget = budget > max ? budget - max : 0;
        wake(self, lp);
        woke = true;
    }
    self->waking_ahead = false;
    return woke;
}

/* The queues of one SEND or PUBLISH with messages a receive would find, as they are found */
typedef struct {
    kyu_frontend_t *self;
    size_t n;
    struct {
        uint64_t n;
        const char *queue; /* the state machine's (a topic's subscription's), or the request's */
    } q[KYU_TOPIC_SUBS_MAX];
} found_t;

/* A queue that has long polls or worker sessions to serve */
static bool has_waiters(void *arg, const char *queue)
{
    kyu_frontend_t *self = ((found_t *)arg)->self;
    return kyu_longpoll_waiting(self->lp, queue) > 0 || kyu_workers_serves(self->workers, queue);
}

/* n more messages for queue (a queue subscribed twice is found twice) */
static void found(void *arg, const char *queue, uint64_t n)
{
    found_t *f = arg;
    for (size_t i = 0; i < f->n; i++)
        if (strcmp(f->q[i].queue, queue) == 0) {
            f->q[i].n += n;
            return;
        }
    KYU_ASSERT(f->n < KYU_TOPIC_SUBS_MAX);
    f->q[f->n].queue = queue;
    f->q[f->n++].n = n;
}

static bool in_sent(const kyu_frontend_t *self, const char *queue)
{
    for (size_t i = 0; i < self->n_sent; i++)
        if (strcmp(self->sent[i], queue) == 0)
            return true;
    return false;
}

void kyu_frontend_note_sent(kyu_frontend_t *self, const kyu_request_t *req,
                            const kyu_command_t *cmd, waiter_t *w)
{
    /* The common case: nobody waits anywhere */
    if (!self->ahead ||
        (kyu_longpoll_count(self->lp) == 0 && kyu_workers_count(self->workers) == 0))
        return;
    found_t f = {.self = self};
    if (cmd->type == KYU_CMD_PUBLISH) {
        kyu_sm_publish_visible_at_once(self->ctx.sm, cmd, has_waiters, found, &f);
    } else if (has_waiters(&f, req->queue)) {
        uint64_t n = kyu_sm_send_visible_at_once(self->ctx.sm, cmd);
        if (n > 0)
            found(&f, req->queue, n);
    }
    if (f.n == 0)
        return;
    /* A retry is answered from its first attempt's record: it stores nothing. */
    if ((req->fields & KYU_F_RQ) &&
        kyu_sm_knows_request(self->ctx.sm, req->rq_client, req->rq_key, cmd->now_ms))
        return;
    kyu_ahead_t *a = malloc(sizeof *a + f.n * sizeof a->q[0]);
    if (!a)
        return; /* served after it is applied, as before */
    a->n = f.n;
    /* This command's queues are served together, after it is proposed: the queues of earlier
     * ones first when they would not all fit. */
    size_t fresh = 0;
    for (size_t i = 0; i < f.n; i++)
        fresh += !in_sent(self, f.q[i].queue);
    if (self->n_sent + fresh > sizeof self->sent / sizeof self->sent[0])
        kyu_frontend_serve_sent(self);
    for (size_t i = 0; i < f.n; i++) {
        a->q[i].n = f.q[i].n;
        snprintf(a->q[i].queue, sizeof a->q[i].queue, "%s", f.q[i].queue);
        ahead_add(self, a->q[i].queue, (int64_t)a->q[i].n);
        if (!in_sent(self, a->q[i].queue))
            snprintf(self->sent[self->n_sent++], sizeof self->sent[0], "%s", a->q[i].queue);
    }
    w->ahead = a;
}

void kyu_frontend_serve_sent(kyu_frontend_t *self)
{
    if (self->n_sent == 0)
        return;
    size_t n = self->n_sent;
    self->n_sent = 0;
    if (!kyu_replica_serving(self->ctx.replica))
        return;
    uint64_t now = kyu_replica_now(self->ctx.replica);
    for (size_t i = 0; i < n; i++) {
        const char *q = self->sent[i];
        uint64_t taken = kyu_workers_serve_sent(self->workers, q, ahead_of(self, q));
        if (kyu_longpoll_waiting(self->lp, q) > 0)
            serve_queue(self, q, now, taken);
    }
    self->rearm = true;
}

void kyu_frontend_sent_done(kyu_frontend_t *self, waiter_t *w)
{
    if (!w->ahead)
        return;
    for (size_t i = 0; i < w->ahead->n; i++)
        ahead_add(self, w->ahead->q[i].queue, -(int64_t)w->ahead->q[i].n);
    free(w->ahead);
    w->ahead = NULL;
}

/* Answers every parked receive: NOT_LEADER (its client asks the leader) or, with code
 * KYU_OK, empty (the broker stops). */
static size_t answer_all(kyu_frontend_t *self, kyu_code_t code, const char *why)
{
    size_t n = 0;
    for (kyu_longpoll_waiter_t *lp; (lp = kyu_longpoll_take_any(self->lp)) != NULL; n++) {
        if (code == KYU_OK)
            kyu_frontend_send_empty(self, lp->identity, lp->id);
        else
            kyu_frontend_send_error(self, lp->identity, lp->id, code, why);
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
    if (now) { /* and on the queues that worker sessions with credit wait on (workers.h) */
        uint64_t w = kyu_workers_next_visible(self->workers);
        at = w < at ? w : at;
    }
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
    kyu_frontend_serve_deferred(self); /* reads behind early receives (frontend.c) */
    do {
        n = kyu_sm_take_woken(self->ctx.sm, names, 64);
        for (size_t i = 0; i < n; i++) {
            self->rearm |= kyu_longpoll_mark(self->lp, names[i]);
            kyu_workers_mark(self->workers, names[i]); /* and push to worker sessions */
        }
    } while (n == 64);
    /* Worker sessions: their queues served (RECEIVEs proposed for them), or all of them
     * ended when this node stopped serving. */
    if (kyu_workers_serve(self->workers, self->timer_fired)) {
        self->rearm = true;
        kyu_replica_flush(self->ctx.replica);
    }
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
            kyu_frontend_send_empty(self, lp->identity, lp->id);
            kyu_longpoll_waiter_destroy(&lp);
        }
        if (self->timer_fired) /* a lease or a delay may have ended on a queue with waiters */
            kyu_longpoll_mark_idle_if(self->lp, visible_by_now, self);
        bool woke = false;
        for (char q[KYU_NAME_MAX + 1]; kyu_longpoll_take_marked(self->lp, q);)
            woke |= serve_queue(self, q, now, 0);
        if (woke)
            kyu_replica_flush(self->ctx.replica);
    }
    self->timer_fired = false;
    self->rearm = false;
    /* Not serving, nothing waits (all were answered): the timer ends without a time. Only a
     * leader asks for the cluster's time: kyu_replica_now is the time of a new command, and
     * on a follower it would take this node's clock before the cluster's time is learned (a
     * node whose clock is ahead would then never see its skew: test_clock_skew). */
    set_timer(self, serving ? kyu_replica_now(self->ctx.replica) : 0);
}

void kyu_frontend_set_loop(kyu_frontend_t *self, zloop_t *loop)
{
    if (self->loop && self->timer_id >= 0 && loop == self->loop)
        return;
    kyu_workers_set_timers(self->workers, false); /* a loop that is gone took its timers */
    self->loop = loop;                            /* a loop that is gone took its timers with it */
    if (loop)
        kyu_workers_set_timers(self->workers, true);
    self->timer_id = -1;
    self->timer_at = UINT64_MAX;
    self->rearm = true;
}

size_t kyu_frontend_stop_waiting(kyu_frontend_t *self)
{
    /* Worker sessions end (their leases run out, or a next leader's workers take them). */
    size_t sessions = kyu_workers_count(self->workers);
    kyu_workers_end_all(self->workers, KYU_ERR_NOT_LEADER,
                        "the broker is stopping: open a new session at the leader");
    size_t n = answer_all(self, KYU_OK, "") + sessions;
    if (n > 0)
        zsock_set_linger(self->sock, 500); /* let the empty replies go before the socket closes */
    return n;
}
