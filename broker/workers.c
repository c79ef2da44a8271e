/* workers: the leader's worker sessions (workers.h says how they work). */
#include "workers.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

typedef struct wq wq_t;

typedef struct {
    uint64_t sid;
    char key[17]; /* sid in hex: its key in the table */
    zframe_t *identity;
    uint64_t open_id; /* the WORKER_OPEN's request id: every push carries it */
    char queue[KYU_NAME_MAX + 1];
    uint64_t qid;
    char name[KYU_WORKER_NAME_MAX + 1];
    char host[KYU_ENDPOINT_MAX];
    int64_t vt; /* -1: the queue's */
    /* credit_total: the worker's (WORKER_OPEN's cr, then each heartbeat's ct); the credit it
     * has now is what the total leaves after reserved and held (credit_of) */
    uint32_t credit_total, reserved, held, pushes;
    uint32_t hb_ms, liveness;
    uint64_t opened_at, last_hb, served;
    /* The leases pushed that a release would look at (KYU_RELEASE_REC each): those given
     * back are pruned once their lease is over (deleted, run out, received again). */
    uint8_t *recs;
    size_t n_recs, cap_recs;
    int timer_id;
    bool ended;
    uint32_t releases; /* RELEASE_LEASES in flight */
    bool release_due;  /* ended with leases to release, a proposal failed: retried */
    /* A WORKER_CLOSE answered once the session's leases are released */
    zframe_t *close_identity;
    uint64_t close_id;
    kyu_code_t close_code;
    wq_t *wq; /* its queue's entry while live */
    kyu_workers_t *owner;
} session_t;

struct wq {
    char name[KYU_NAME_MAX + 1];
    uint64_t qid;
    zlistx_t *sessions; /* session_t*, live, not owned */
    uint64_t pending;   /* messages asked for by RECEIVEs in flight */
    bool marked;
    /* A RECEIVE for it was refused (the in-flight limit, BUSY): the timer leaves it alone
     * (it would fire at once again and again) until a heartbeat or a wake marks it. */
    bool blocked;
};

struct kyu_workers {
    kyu_sm_t *sm;
    kyu_workers_io_t io;
    zhashx_t *sessions; /* key (sid hex) -> session_t (owned), live and ended */
    zhashx_t *queues;   /* name -> wq_t (owned) */
    uint64_t next_sid, served;
    size_t n_live, n_marked, n_release_due;
    bool timers_on;
};

static void session_free(session_t **s_p)
{
    session_t *s = *s_p;
    if (!s)
        return;
    zframe_destroy(&s->identity);
    zframe_destroy(&s->close_identity);
    free(s->recs);
    free(s);
    *s_p = NULL;
}

static void session_destructor(void **item)
{
    session_free((session_t **)item);
}

static void wq_destructor(void **item)
{
    wq_t *q = *item;
    if (q) {
        zlistx_destroy(&q->sessions);
        free(q);
    }
    *item = NULL;
}

kyu_workers_t *kyu_workers_new(kyu_sm_t *sm, const kyu_workers_io_t *io)
{
    kyu_workers_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->sm = sm;
    self->io = *io;
    self->sessions = zhashx_new();
    self->queues = zhashx_new();
    if (!self->sessions || !self->queues) {
        kyu_workers_destroy(&self);
        return NULL;
    }
    zhashx_set_destructor(self->sessions, session_destructor);
    zhashx_set_destructor(self->queues, wq_destructor);
    /* Session ids start at a random place: a worker still holding the id of a session on
     * an earlier leader does not name one of this leader's. */
    uint64_t r = 0;
    if (getrandom(&r, sizeof r, 0) != sizeof r)
        r = (uint64_t)zclock_time();
    self->next_sid = (r >> 2) | 1;
    self->timers_on = true;
    return self;
}

void kyu_workers_destroy(kyu_workers_t **self_p)
{
    kyu_workers_t *self = *self_p;
    if (!self)
        return;
    zhashx_destroy(&self->queues);
    zhashx_destroy(&self->sessions);
    free(self);
    *self_p = NULL;
}

/* The credit s has now: its total less what is asked for and held (0 while a lowered total
 * is below them: nothing is pushed until enough is given back). */
static uint32_t credit_of(const session_t *s)
{
    uint64_t out = (uint64_t)s->reserved + s->held;
    return out < s->credit_total ? s->credit_total - (uint32_t)out : 0;
}

static session_t *lookup(kyu_workers_t *self, uint64_t sid)
{
    char key[17];
    snprintf(key, sizeof key, "%016llx", (unsigned long long)sid);
    return zhashx_lookup(self->sessions, key);
}

size_t kyu_workers_count(const kyu_workers_t *self)
{
    return self->n_live;
}

bool kyu_workers_view(const kyu_workers_t *self, uint64_t sid, kyu_session_view_t *v)
{
    const session_t *s = lookup((kyu_workers_t *)self, sid);
    if (!s)
        return false;
    *v = (kyu_session_view_t){.sid = s->sid,
                              .credit_total = s->credit_total,
                              .credit = credit_of(s),
                              .reserved = s->reserved,
                              .held = s->held,
                              .pushes = s->pushes,
                              .n_leases = s->n_recs,
                              .ended = s->ended,
                              .last_hb = s->last_hb,
                              .hb_ms = s->hb_ms,
                              .liveness = s->liveness};
    return true;
}

/* ---- leases pushed ---- */

static bool add_rec(session_t *s, uint64_t seq, uint32_t gen)
{
    if (s->n_recs == s->cap_recs) {
        size_t cap = s->cap_recs ? s->cap_recs * 2 : 16;
        uint8_t *r = realloc(s->recs, cap * KYU_RELEASE_REC);
        if (!r)
            return false;
        s->recs = r;
        s->cap_recs = cap;
    }
    uint8_t *p = s->recs + s->n_recs++ * KYU_RELEASE_REC;
    kyu_put_be64(p, seq);
    kyu_put_be32(p + 8, gen);
    return true;
}

static void read_rec(const uint8_t *p, uint64_t *seq, uint32_t *gen)
{
    *seq = kyu_get_be64(p);
    *gen = kyu_get_be32(p + 8);
}

/* Forgets the leases that are over (deleted, run out, received again): a release would not
 * touch them. */
static void prune(kyu_workers_t *self, session_t *s)
{
    uint64_t now = self->io.cluster_ms(self->io.arg);
    size_t kept = 0;
    for (size_t i = 0; i < s->n_recs; i++) {
        uint64_t seq;
        uint32_t gen;
        const uint8_t *p = s->recs + i * KYU_RELEASE_REC;
        read_rec(p, &seq, &gen);
        if (kyu_sm_lease_held(self->sm, s->queue, seq, gen, now))
            memmove(s->recs + kept++ * KYU_RELEASE_REC, p, KYU_RELEASE_REC);
    }
    s->n_recs = kept;
}

/* ---- ending sessions ---- */

static void push_closed(kyu_workers_t *self, session_t *s, kyu_code_t code, const char *why)
{
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    rep.id = s->open_id;
    rep.sid = s->sid;
    rep.ev = KYU_EV_CLOSED;
    rep.status = code;
    snprintf(rep.error, sizeof rep.error, "%s", why);
    if (code == KYU_ERR_NOT_LEADER)
        snprintf(rep.leader, sizeof rep.leader, "%s", self->io.leader(self->io.arg));
    self->io.send(self->io.arg, s->identity, &rep, NULL, NULL, 0);
}

static void set_release_due(kyu_workers_t *self, session_t *s, bool due)
{
    if (s->release_due != due)
        self->n_release_due += due ? 1 : (size_t)-1;
    s->release_due = due;
}

/* Proposes the release of every lease the ended session s may still hold, in commands of
 * KYU_RELEASE_MAX; what fails to be proposed is tried again by kyu_workers_serve. Not
 * serving, nothing can be proposed: the leases run out by themselves. */
static void release(kyu_workers_t *self, session_t *s)
{
    if (!self->io.serving(self->io.arg)) {
        if (s->n_recs > 0)
            s->close_code = KYU_ERR_NOT_LEADER;
        s->n_recs = 0;
        set_release_due(self, s, false);
        return;
    }
    prune(self, s);
    while (s->n_recs > 0) {
        size_t n = s->n_recs < KYU_RELEASE_MAX ? s->n_recs : KYU_RELEASE_MAX;
        size_t from = s->n_recs - n;
        kyu_err_t err;
        if (self->io.propose_release(self->io.arg, s->sid, s->queue,
                                     s->recs + from * KYU_RELEASE_REC, n, &err) != KYU_OK)
            break;
        s->releases++;
        s->n_recs = from;
    }
    set_release_due(self, s, s->n_recs > 0);
}

/* Frees an ended session once nothing of it is in flight, answering its WORKER_CLOSE. */
static void maybe_free(kyu_workers_t *self, session_t *s)
{
    if (!s->ended || s->pushes || s->releases || s->release_due)
        return;
    if (s->close_identity) {
        kyu_reply_t rep;
        kyu_reply_init(&rep);
        rep.id = s->close_id;
        rep.status = s->close_code;
        if (s->close_code != KYU_OK) {
            snprintf(rep.error, sizeof rep.error,
                     "the session ended, but its leases could not all be released (this node "
                     "stopped leading): they become visible when their visibility timeout ends");
            snprintf(rep.leader, sizeof rep.leader, "%s", self->io.leader(self->io.arg));
        }
        self->io.send(self->io.arg, s->close_identity, &rep, NULL, NULL, 0);
    }
    zhashx_delete(self->sessions, s->key);
}

/* Takes s out of its queue's entry (freed with its last session); what its RECEIVEs in
 * flight asked for no longer counts there. */
static void detach(kyu_workers_t *self, session_t *s)
{
    wq_t *q = s->wq;
    if (!q)
        return;
    q->pending -= s->reserved <= q->pending ? s->reserved : q->pending;
    void *h = zlistx_find(q->sessions, s);
    if (h)
        zlistx_delete(q->sessions, h);
    s->wq = NULL;
    if (zlistx_size(q->sessions) == 0) {
        if (q->marked)
            self->n_marked--;
        zhashx_delete(self->queues, q->name);
    }
}

/* Ends live session s: no more pushes; a push ev "closed" with code when why is given; its
 * leases are released when release_leases (a dead or closed session), else forgotten (the
 * queue is gone, or this node no longer leads). */
static void end_session(kyu_workers_t *self, session_t *s, kyu_code_t code, const char *why,
                        bool release_leases)
{
    if (s->ended)
        return;
    s->ended = true;
    self->n_live--;
    if (s->timer_id >= 0)
        self->io.timer_end(self->io.arg, s->timer_id);
    s->timer_id = -1;
    detach(self, s);
    if (why)
        push_closed(self, s, code, why);
    if (release_leases)
        release(self, s);
    else
        s->n_recs = 0;
    maybe_free(self, s);
}

void kyu_workers_end_all(kyu_workers_t *self, kyu_code_t code, const char *why)
{
    if (self->n_live == 0)
        return;
    session_t **all = malloc(self->n_live * sizeof *all);
    KYU_ASSERT(all);
    size_t n = 0;
    for (session_t *s = zhashx_first(self->sessions); s; s = zhashx_next(self->sessions))
        if (!s->ended)
            all[n++] = s;
    for (size_t i = 0; i < n; i++)
        end_session(self, all[i], code, why, false);
    free(all);
}

/* ---- the ops ---- */

static uint64_t serve_queue(kyu_workers_t *self, wq_t *q, uint64_t fresh);

static void mark(kyu_workers_t *self, wq_t *q)
{
    if (q && !q->marked) {
        q->marked = true;
        self->n_marked++;
    }
}

kyu_code_t kyu_workers_open(kyu_workers_t *self, const kyu_request_t *req, zframe_t *identity,
                            const char *host, kyu_reply_t *rep, kyu_err_t *err)
{
    uint64_t qid = kyu_sm_queue_id(self->sm, req->queue);
    if (qid == 0)
        return kyu_err_set(err, KYU_ERR_NO_SUCH_QUEUE, "queue '%s' does not exist", req->queue);
    if (self->n_live >= KYU_WORKERS_MAX)
        return kyu_err_set(err, KYU_ERR_LIMIT_EXCEEDED,
                           "this leader holds %d worker sessions, its limit", KYU_WORKERS_MAX);
    wq_t *q = zhashx_lookup(self->queues, req->queue);
    if (q && q->qid != qid) /* a queue deleted and created again: its sessions end */
        serve_queue(self, q, 0);
    session_t *s = calloc(1, sizeof *s);
    if (!s)
        return kyu_err_set(err, KYU_ERR_BUSY, "out of memory");
    s->identity = zframe_dup(identity);
    q = zhashx_lookup(self->queues, req->queue);
    if (!q) {
        q = calloc(1, sizeof *q);
        if (q) {
            snprintf(q->name, sizeof q->name, "%s", req->queue);
            q->qid = qid;
            q->sessions = zlistx_new();
        }
        if (!q || !q->sessions || zhashx_insert(self->queues, q->name, q) != 0) {
            wq_destructor((void **)&q);
            session_free(&s);
            return kyu_err_set(err, KYU_ERR_BUSY, "out of memory");
        }
    }
    if (!s->identity || !zlistx_add_end(q->sessions, s)) {
        session_free(&s);
        if (zlistx_size(q->sessions) == 0 && q->pending == 0)
            zhashx_delete(self->queues, q->name);
        return kyu_err_set(err, KYU_ERR_BUSY, "out of memory");
    }
    s->wq = q;
    s->sid = self->next_sid++;
    snprintf(s->key, sizeof s->key, "%016llx", (unsigned long long)s->sid);
    s->open_id = req->id;
    snprintf(s->queue, sizeof s->queue, "%s", req->queue);
    s->qid = qid;
    snprintf(s->name, sizeof s->name, "%s",
             (req->fields & KYU_F_WORKER_NAME) ? req->worker_name : "");
    snprintf(s->host, sizeof s->host, "%s", host ? host : "");
    s->vt = (req->fields & KYU_F_VT) ? (int64_t)req->vt : -1;
    s->credit_total = req->credit;
    s->hb_ms = (req->fields & KYU_F_HB) ? req->hb_ms : KYU_WORKER_HB_DEFAULT_MS;
    s->liveness = (req->fields & KYU_F_LIVENESS) ? req->liveness : KYU_WORKER_LIVENESS_DEFAULT;
    s->opened_at = s->last_hb = self->io.mono_ms(self->io.arg);
    s->owner = self;
    s->timer_id = self->timers_on ? self->io.timer_add(self->io.arg, s->hb_ms, s) : -1;
    zhashx_insert(self->sessions, s->key, s);
    self->n_live++;
    mark(self, q);
    rep->sid = s->sid;
    rep->hb_ms = s->hb_ms;
    rep->liveness = s->liveness;
    return KYU_OK;
}

/* The live session sid of this connection, or NULL with NO_SESSION. */
static session_t *live_session(kyu_workers_t *self, uint64_t sid, zframe_t *identity,
                               kyu_err_t *err)
{
    session_t *s = lookup(self, sid);
    if (s && !s->ended && zframe_eq(s->identity, identity))
        return s;
    kyu_err_set(err, KYU_ERR_NO_SESSION,
                "session %llu is not open on this broker (declared dead, closed, or opened on "
                "another leader or connection): open a new one",
                (unsigned long long)sid);
    return NULL;
}

kyu_code_t kyu_workers_heartbeat(kyu_workers_t *self, const kyu_request_t *req, zframe_t *identity,
                                 kyu_err_t *err)
{
    session_t *s = live_session(self, req->sid, identity, err);
    if (!s)
        return err->code;
    s->last_hb = self->io.mono_ms(self->io.arg);
    /* Credit comes back for messages pushed; more than that is not credit the worker had. */
    uint32_t back = (req->fields & KYU_F_CREDIT) ? req->credit : 0;
    back = back < s->held ? back : s->held;
    s->held -= back;
    /* A new total (the worker scaled): lowered below what is out, pushes stop until enough
     * comes back; the broker never has more than the total outstanding. */
    if (req->fields & KYU_F_CREDIT_TOTAL)
        s->credit_total = req->credit_total;
    if (s->n_recs > 2 * (size_t)s->credit_total + 64)
        prune(self, s); /* the leases given back whose lease is over */
    if (credit_of(s) > 0)
        mark(self, s->wq); /* also after a refusal (the in-flight limit): try again */
    return KYU_OK;
}

kyu_code_t kyu_workers_close(kyu_workers_t *self, const kyu_request_t *req, zframe_t **identity,
                             kyu_err_t *err)
{
    session_t *s = live_session(self, req->sid, *identity, err);
    if (!s)
        return err->code;
    /* Answered once its RECEIVEs in flight are back and its leases released (maybe_free). */
    s->close_identity = *identity;
    s->close_id = req->id;
    s->close_code = KYU_OK;
    *identity = NULL;
    end_session(self, s, KYU_OK, NULL, true);
    return KYU_OK;
}

static int by_sid(const void *a, const void *b)
{
    const kyu_worker_info_t *x = a, *y = b;
    return x->sid < y->sid ? -1 : x->sid > y->sid;
}

kyu_code_t kyu_workers_list(kyu_workers_t *self, const char *queue, kyu_reply_t *rep,
                            kyu_err_t *err)
{
    rep->workers = calloc(self->n_live ? self->n_live : 1, sizeof *rep->workers);
    if (!rep->workers)
        return kyu_err_set(err, KYU_ERR_BUSY, "out of memory");
    uint64_t now = self->io.mono_ms(self->io.arg);
    size_t n = 0;
    for (session_t *s = zhashx_first(self->sessions); s; s = zhashx_next(self->sessions)) {
        if (s->ended || (queue && strcmp(queue, s->queue) != 0))
            continue;
        kyu_worker_info_t *w = &rep->workers[n++];
        w->sid = s->sid;
        snprintf(w->name, sizeof w->name, "%s", s->name);
        snprintf(w->host, sizeof w->host, "%s", s->host);
        snprintf(w->queue, sizeof w->queue, "%s", s->queue);
        w->credit = credit_of(s);
        w->credit_total = s->credit_total;
        w->held = s->held; /* pushed, not given back (those being leased: not yet) */
        w->hb_ago_ms = now > s->last_hb ? now - s->last_hb : 0;
        w->age_ms = now > s->opened_at ? now - s->opened_at : 0;
    }
    qsort(rep->workers, n, sizeof *rep->workers, by_sid);
    rep->n_workers = n;
    return KYU_OK;
}

/* ---- timers and results ---- */

void kyu_workers_on_timer(void *token)
{
    session_t *s = token; /* its timer ends before it is freed */
    kyu_workers_t *self = s->owner;
    if (s->ended)
        return;
    uint64_t now = self->io.mono_ms(self->io.arg);
    uint64_t limit = (uint64_t)s->hb_ms * s->liveness;
    if (now - s->last_hb >= limit) {
        char why[KYU_ERR_MSG_MAX];
        snprintf(why, sizeof why,
                 "no heartbeat for %llu ms (hb %u ms x lv %u): the session was declared dead and "
                 "its leases released",
                 (unsigned long long)(now - s->last_hb), s->hb_ms, s->liveness);
        end_session(self, s, KYU_ERR_NO_SESSION, why, true);
        return;
    }
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    rep.id = s->open_id;
    rep.sid = s->sid;
    rep.ev = KYU_EV_HB;
    self->io.send(self->io.arg, s->identity, &rep, NULL, NULL, 0);
}

void kyu_workers_on_receive(kyu_workers_t *self, uint64_t sid, uint32_t asked,
                            const kyu_result_t *res)
{
    session_t *s = lookup(self, sid);
    if (!s)
        return;
    s->pushes--;
    s->reserved -= asked <= s->reserved ? asked : s->reserved;
    if (s->wq)
        s->wq->pending -= asked <= s->wq->pending ? asked : s->wq->pending;
    size_t got = res->code == KYU_OK ? res->n_msgs : 0;
    for (size_t i = 0; i < got; i++) {
        uint64_t seq;
        uint32_t gen;
        if (kyu_handle_parse(res->msgs[i].handle, &seq, &gen) && !add_rec(s, seq, gen))
            break; /* out of memory: that lease runs out by itself */
    }
    if (s->ended) { /* closed or dead meanwhile: what it leased goes back at once */
        if (got)
            release(self, s);
        maybe_free(self, s);
        return;
    }
    s->held += (uint32_t)got; /* the rest of what was asked is credit again */
    if (res->code == KYU_ERR_NO_SUCH_QUEUE) {
        end_session(self, s, KYU_ERR_NO_SUCH_QUEUE, "the queue was deleted", false);
        return;
    }
    if (got > 0) {
        kyu_reply_t rep;
        kyu_reply_init(&rep);
        rep.id = s->open_id;
        rep.sid = s->sid;
        rep.ev = KYU_EV_MSGS;
        rep.n_msgs = got;
        memcpy(rep.msgs, res->msgs, got * sizeof rep.msgs[0]);
        if (!self->io.send(self->io.arg, s->identity, &rep, res->bodies, res->body_lens, got)) {
            /* The worker is gone or not reading: its session ends, its leases go back. */
            end_session(self, s, KYU_ERR_NO_SESSION,
                        "a push could not be delivered: the session ended", true);
            return;
        }
    }
    /* Its queue is looked at again (more may be visible); a refusal (the in-flight limit) is
     * tried again at the next heartbeat, not at once (nor by the timer). */
    if (res->code == KYU_OK)
        mark(self, s->wq);
    else if (s->wq)
        s->wq->blocked = true;
}

void kyu_workers_on_release(kyu_workers_t *self, uint64_t sid, const kyu_result_t *res)
{
    session_t *s = lookup(self, sid);
    if (!s)
        return;
    s->releases--;
    /* A lost proposal (leadership moved) is not tried again: the leases run out. */
    if (res->code != KYU_OK && res->code != KYU_ERR_NO_SUCH_QUEUE)
        s->close_code = res->code == KYU_ERR_NOT_LEADER ? KYU_ERR_NOT_LEADER : res->code;
    maybe_free(self, s);
}

/* ---- serving the queues ---- */

void kyu_workers_mark(kyu_workers_t *self, const char *queue)
{
    mark(self, zhashx_lookup(self->queues, queue));
}

/* The live session of q with credit served longest ago (the oldest first), or NULL. */
static session_t *next_session(wq_t *q)
{
    session_t *best = NULL;
    for (session_t *s = zlistx_first(q->sessions); s; s = zlistx_next(q->sessions))
        if (credit_of(s) > 0 && (!best || s->served < best->served ||
                                 (s->served == best->served && s->sid < best->sid)))
            best = s;
    return best;
}

/* Serves q: its visible messages, and fresh more (those of a send proposed and not applied
 * yet), less what its RECEIVEs in flight asked for. Returns how many messages it asked for. */
static uint64_t serve_queue(kyu_workers_t *self, wq_t *q, uint64_t fresh)
{
    if (kyu_sm_queue_id(self->sm, q->name) != q->qid) { /* deleted (maybe created again) */
        for (size_t left = zlistx_size(q->sessions); left > 0; left--) /* q goes with the last */
            end_session(self, zlistx_first(q->sessions), KYU_ERR_NO_SUCH_QUEUE,
                        "the queue was deleted", false);
        return 0;
    }
    /* As many as the credit takes, ten to a RECEIVE: a session with much credit has several
     * in flight (pipelined), as a consumer with many receives would. */
    uint64_t want = 0;
    for (session_t *s = zlistx_first(q->sessions); s; s = zlistx_next(q->sessions))
        want += credit_of(s);
    if (want == 0)
        return 0;
    uint64_t now = self->io.cluster_ms(self->io.arg);
    uint64_t budget = kyu_sm_visible_upto(self->sm, q->name, now, want + q->pending) + fresh;
    budget = budget > q->pending ? budget - q->pending : 0;
    uint64_t asked = 0;
    while (budget > 0) {
        session_t *s = next_session(q);
        if (!s)
            break;
        uint32_t credit = credit_of(s);
        uint32_t n = credit < KYU_BATCH_MAX ? credit : KYU_BATCH_MAX;
        n = n < budget ? n : (uint32_t)budget;
        kyu_err_t err;
        if (self->io.propose_receive(self->io.arg, s->sid, s->queue, s->vt, n, &err) != KYU_OK) {
            q->blocked = true; /* BUSY or the in-flight limit: the next heartbeat tries again */
            break;
        }
        q->blocked = false;
        s->reserved += n;
        s->pushes++;
        s->served = ++self->served;
        q->pending += n;
        budget -= n;
        asked += n;
    }
    return asked;
}

bool kyu_workers_serves(kyu_workers_t *self, const char *queue)
{
    return zhashx_size(self->queues) > 0 && zhashx_lookup(self->queues, queue) != NULL;
}

uint64_t kyu_workers_serve_sent(kyu_workers_t *self, const char *queue, uint64_t fresh)
{
    wq_t *q = zhashx_lookup(self->queues, queue);
    /* Only a queue with no RECEIVE in flight (its sessions wait for work: the latency that
     * counts); a busy one is served when they come back, in larger RECEIVEs. A deleted
     * queue's sessions are ended the normal way. */
    if (!q || q->pending > 0 || !self->io.serving(self->io.arg) ||
        kyu_sm_queue_id(self->sm, queue) != q->qid)
        return 0;
    return serve_queue(self, q, fresh);
}

/* Releases what the ended sessions could not release before (a proposal refused: BUSY), or
 * forgets it when this node no longer leads. */
static void retry_releases(kyu_workers_t *self)
{
    session_t **due = malloc(self->n_release_due * sizeof *due);
    KYU_ASSERT(due);
    size_t n = 0;
    for (session_t *s = zhashx_first(self->sessions); s && n < self->n_release_due;
         s = zhashx_next(self->sessions))
        if (s->release_due)
            due[n++] = s;
    for (size_t i = 0; i < n; i++) {
        release(self, due[i]);
        maybe_free(self, due[i]);
    }
    free(due);
}

bool kyu_workers_serve(kyu_workers_t *self, bool timer_fired)
{
    if (zhashx_size(self->sessions) == 0)
        return false;
    if (!self->io.serving(self->io.arg)) {
        bool any = self->n_live > 0 || self->n_release_due > 0;
        kyu_workers_end_all(self, KYU_ERR_NOT_LEADER,
                            "this node stopped leading: open a new session at the leader");
        if (self->n_release_due)
            retry_releases(self);
        return any;
    }
    if (self->n_release_due)
        retry_releases(self);
    if (timer_fired) { /* a lease or a delay may have ended on a queue with sessions */
        uint64_t now = self->io.cluster_ms(self->io.arg);
        for (wq_t *q = zhashx_first(self->queues); q; q = zhashx_next(self->queues))
            if (!q->marked && !q->blocked && q->pending == 0 &&
                kyu_sm_next_visible_at(self->sm, q->name) <= now)
                mark(self, q);
    }
    if (self->n_marked == 0)
        return timer_fired;
    size_t n = 0;
    char(*names)[KYU_NAME_MAX + 1] = malloc(self->n_marked * sizeof *names);
    KYU_ASSERT(names);
    for (wq_t *q = zhashx_first(self->queues); q; q = zhashx_next(self->queues))
        if (q->marked) {
            q->marked = false;
            memcpy(names[n++], q->name, sizeof names[0]);
        }
    self->n_marked = 0;
    for (size_t i = 0; i < n; i++) {
        wq_t *q = zhashx_lookup(self->queues, names[i]);
        if (q)
            serve_queue(self, q, 0);
    }
    free(names);
    return true;
}

uint64_t kyu_workers_next_visible(kyu_workers_t *self)
{
    uint64_t at = UINT64_MAX;
    for (wq_t *q = zhashx_first(self->queues); q; q = zhashx_next(self->queues)) {
        if (q->pending > 0 || q->blocked)
            continue; /* looked at again when its RECEIVEs come back, or marked */
        bool credit = false;
        for (session_t *s = zlistx_first(q->sessions); s && !credit; s = zlistx_next(q->sessions))
            credit = credit_of(s) > 0;
        if (!credit)
            continue;
        uint64_t v = kyu_sm_next_visible_at(self->sm, q->name);
        at = v < at ? v : at;
    }
    return at;
}

void kyu_workers_set_timers(kyu_workers_t *self, bool on)
{
    self->timers_on = on;
    for (session_t *s = zhashx_first(self->sessions); s; s = zhashx_next(self->sessions)) {
        if (!on)
            s->timer_id = -1; /* gone with the loop */
        else if (!s->ended && s->timer_id < 0)
            s->timer_id = self->io.timer_add(self->io.arg, s->hb_ms, s);
    }
}
