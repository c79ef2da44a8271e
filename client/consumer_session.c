/* consumer_session: the consumer's wire side (consumer_internal.h): the worker session
 * (WORKER_OPEN, heartbeats with credit, pushes, a silent broker, NOT_LEADER), and the
 * requests that finish messages (DELETE), release them (CHANGE_VISIBILITY to a back-off) and
 * extend their leases (CHANGE_VISIBILITY to the visibility timeout).
 *
 * Requests are asynchronous (kyu_client_request_async) and tracked in c->reqs; a request that
 * got no answer (timeout, failover, NOT_LEADER, BUSY) is sent again with its request key, a
 * few times, so a delete applied by a leader that died before answering is not applied
 * twice. A result the broker refuses because the lease is gone (RECEIPT_STALE, or INVALID
 * after the message moved on) is logged: the message will be, or was, received again. */
#include "consumer_internal.h"

#include <stdlib.h>
#include <string.h>

#define RETRIES_MAX 3
#define RECONNECT_MIN_MS 200
#define RECONNECT_MAX_MS 3000

/* ---- held messages ---- */

void kyu_held_free(kyu_consumer_t *c, kyu_held_t *h)
{
    if (h->prev)
        h->prev->next = h->next;
    else
        c->held_head = h->next;
    if (h->next)
        h->next->prev = h->prev;
    c->n_held--;
    kyu_chunk_unref(h->chunk);
    free(h);
}

void kyu_chunk_unref(kyu_chunk_t *chunk)
{
    if (--chunk->live == 0) {
        kyu_messages_destroy(&chunk->msgs);
        free(chunk);
    }
}

/* A message the session let go of: credit comes back when it was the current session's. */
static void held_done(kyu_consumer_t *c, kyu_held_t *h)
{
    if (h->sid == c->sid && c->sid)
        c->finished++;
    kyu_held_free(c, h);
}

static size_t held_other(const kyu_consumer_t *c)
{
    size_t n = 0;
    for (const kyu_held_t *h = c->held_head; h; h = h->next)
        n += h->sid != c->sid;
    return n;
}

/* Takes the n messages of a push (one allocation, ours now). */
static void take_push(kyu_consumer_t *c, uint64_t sid, kyu_message_t *msgs, size_t n, int64_t now)
{
    if (!msgs || n == 0) {
        kyu_messages_destroy(&msgs);
        return;
    }
    kyu_chunk_t *chunk = calloc(1, sizeof *chunk);
    if (!chunk) {
        kyu_consumer_log(c, "out of memory for %zu pushed messages: their leases run out", n);
        kyu_messages_destroy(&msgs);
        return;
    }
    chunk->msgs = msgs;
    bool draining = atomic_load(&c->draining);
    for (size_t i = 0; i < n; i++) {
        kyu_held_t *h = calloc(1, sizeof *h);
        if (!h) {
            kyu_consumer_log(c, "out of memory for message %s: its lease runs out",
                             msgs[i].message_id);
            continue;
        }
        chunk->live++;
        h->chunk = chunk;
        h->msg = &msgs[i];
        h->sid = sid;
        h->received_ms = now;
        h->lease_until_ms = now + (int64_t)c->vt * 1000;
        h->next = c->held_head;
        if (c->held_head)
            c->held_head->prev = h;
        c->held_head = h;
        c->n_held++;
        if (draining) {
            kyu_session_finish(c, h, false, 0);
            continue;
        }
        if (c->o.filter && !c->o.filter(h->msg, c->o.filter_arg)) {
            /* Lambda's event filtering: dropped (deleted) before any batch, or given back */
            atomic_fetch_add(&c->st[ST_FILTERED], 1);
            kyu_session_finish(c, h, !c->o.filter_keep, 0);
            continue;
        }
        h->state = HELD_BUFFERED;
        if (c->buf_tail)
            c->buf_tail->bnext = h;
        else
            c->buf_head = h;
        c->buf_tail = h;
        c->n_buf++;
        c->buf_bytes += h->msg->body_len;
    }
    if (chunk->live == 0) {
        kyu_messages_destroy(&chunk->msgs);
        free(chunk);
    }
}

/* ---- the session ---- */

static void session_lost(kyu_consumer_t *c, const char *leader, const char *why)
{
    if (c->sid)
        kyu_consumer_log(c, "session %llu ended: %s", (unsigned long long)c->sid, why);
    c->sid = 0;
    c->open_id = 0;
    c->client->push_id = 0;
    c->reconnect = true;
    c->hb_inflight = false;
    snprintf(c->leader, sizeof c->leader, "%s", leader ? leader : "");
}

bool kyu_session_ensure(kyu_consumer_t *c, int64_t now, kyu_err_t *err)
{
    if (c->sid || now < c->reconnect_at_ms)
        return true;
    kyu_err_t e = {0};
    if (c->reconnect) {
        /* Somewhere else: the leader named, or the next endpoint that answers. */
        if (kyu_client_failover(c->client, c->leader, &e) != KYU_OK) {
            if (c->down_since_ms < 0)
                c->down_since_ms = now;
            c->leader[0] = '\0';
            c->reconnect_at_ms = now + RECONNECT_MIN_MS;
            kyu_consumer_log(c, "cannot reach a broker: %s", e.msg);
            return true;
        }
    }
    /* A total for the current concurrency: each heartbeat sets a new one (ct) as it scales. */
    int64_t total = kyu_consumer_credit_total(c, (int64_t)held_other(c));
    uint32_t credit = (uint32_t)(total > 0 ? total : 1);
    kyu_request_t req;
    kyu_request_prepare(&req, KYU_OP_WORKER_OPEN,
                        KYU_F_QUEUE | KYU_F_CREDIT | KYU_F_HB | KYU_F_LIVENESS | KYU_F_VT |
                            KYU_F_WORKER_NAME);
    snprintf(req.queue, sizeof req.queue, "%s", c->queue);
    req.credit = credit;
    req.hb_ms = (uint32_t)c->o.heartbeat_ms;
    req.liveness = (uint32_t)c->o.liveness;
    req.vt = (uint32_t)c->vt;
    snprintf(req.worker_name, sizeof req.worker_name, "%s", c->name);
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    kyu_code_t rc = kyu_client_call(c->client, &req, NULL, NULL, 0, &rep, NULL, &e);
    now = kyu_client_now_ms();
    if (rc == KYU_OK && rep.sid == 0)
        rc = kyu_err_set(&e, KYU_ERR_MALFORMED, "WORKER_OPEN reply without a session id");
    if (rc != KYU_OK) {
        kyu_reply_reset(&rep);
        if (rc == KYU_ERR_NO_SUCH_QUEUE || rc == KYU_ERR_INVALID_ARGUMENT ||
            rc == KYU_ERR_INVALID_NAME || rc == KYU_ERR_UNKNOWN_OP || rc == KYU_ERR_VERSION) {
            kyu_err_set(err, rc, "cannot open a worker session on %s: %s", c->queue, e.msg);
            return false;
        }
        if (c->down_since_ms < 0)
            c->down_since_ms = now;
        int64_t down = now - c->down_since_ms;
        int64_t pause = down < RECONNECT_MIN_MS   ? RECONNECT_MIN_MS
                        : down > RECONNECT_MAX_MS ? RECONNECT_MAX_MS
                                                  : down;
        c->reconnect_at_ms = now + pause;
        c->reconnect = true;
        c->leader[0] = '\0';
        kyu_consumer_log(c, "cannot open a worker session (%s): %s; retrying", kyu_code_name(rc),
                         e.msg);
        return true;
    }
    c->sid = rep.sid;
    c->open_id = rep.id;
    c->client->push_id = rep.id;
    c->hb_ms = rep.hb_ms ? (int)rep.hb_ms : c->o.heartbeat_ms;
    c->liveness = rep.liveness ? (int)rep.liveness : c->o.liveness;
    c->total = credit;
    c->finished = c->returned = 0;
    c->last_heard_ms = now;
    c->last_hb_ms = now;
    c->hb_inflight = false;
    c->reconnect = false;
    c->leader[0] = '\0';
    c->down_since_ms = -1;
    atomic_fetch_add(&c->st[ST_SESSIONS], 1);
    kyu_consumer_log(c,
                     "session %llu opened on %s: queue %s, credit %u, heartbeat %d ms, "
                     "liveness %d, %zu messages held from earlier sessions",
                     (unsigned long long)c->sid, kyu_client_endpoint(c->client), c->queue, credit,
                     c->hb_ms, c->liveness, c->n_held);
    kyu_reply_reset(&rep);
    return true;
}

static kyu_creq_t *find_req(kyu_consumer_t *c, uint64_t id)
{
    for (size_t i = 0; i < c->n_reqs; i++)
        if (c->reqs[i].id == id)
            return &c->reqs[i];
    return NULL;
}

static bool retry_code(uint32_t st)
{
    return st == KYU_ERR_TIMEOUT || st == KYU_ERR_CONNECTION || st == KYU_ERR_NOT_LEADER ||
           st == KYU_ERR_BUSY || st == KYU_ERR_STORAGE || st == KYU_ERR_INTERNAL ||
           st == KYU_ERR_READ_ONLY;
}

static const char *what_of(int kind)
{
    return kind == REQ_DELETE ? "its success (delete)" : "its failure (release)";
}

/* A DELETE or release answered: each handle's result. */
static void finish_reply(kyu_consumer_t *c, kyu_creq_t *r, const kyu_reply_t *rep, int64_t now)
{
    for (size_t i = 0; i < r->n; i++) {
        kyu_held_t *h = r->h[i];
        uint32_t st = rep->status != KYU_OK ? rep->status
                      : i < rep->n_results  ? rep->results[i]
                                            : KYU_ERR_MALFORMED;
        if (st == KYU_OK) {
            atomic_fetch_add(&c->st[r->kind == REQ_DELETE ? ST_DELETED : ST_RELEASED], 1);
        } else if (st == KYU_ERR_RECEIPT_STALE || st == KYU_ERR_RECEIPT_INVALID) {
            atomic_fetch_add(&c->st[ST_STALE], 1);
            kyu_consumer_log(c,
                             "message %s: lease lost, %s could not be applied (%s: the broker "
                             "released the lease, it is or was received again)",
                             h->msg->message_id, what_of(r->kind), kyu_code_name((int)st));
        } else {
            kyu_consumer_log(c, "message %s: %s failed: %s %s", h->msg->message_id,
                             what_of(r->kind), kyu_code_name((int)st), rep->error);
        }
        held_done(c, h);
    }
    (void)now;
}

static void extend_reply(kyu_consumer_t *c, kyu_creq_t *r, const kyu_reply_t *rep, int64_t now)
{
    for (size_t i = 0; i < r->n; i++) {
        kyu_held_t *h = r->h[i];
        h->extending = false;
        uint32_t st = rep->status != KYU_OK ? rep->status
                      : i < rep->n_results  ? rep->results[i]
                                            : KYU_ERR_MALFORMED;
        if (st == KYU_OK) {
            h->lease_until_ms = now + (int64_t)c->vt * 1000;
            atomic_fetch_add(&c->st[ST_EXTENDED], 1);
        } else if (st == KYU_ERR_RECEIPT_STALE || st == KYU_ERR_RECEIPT_INVALID) {
            if (!h->lost)
                kyu_consumer_log(c, "message %s: lease lost while held (%s): cannot extend it",
                                 h->msg->message_id, kyu_code_name((int)st));
            h->lost = true;
        }
    }
}

/* One reply to one of our requests. */
static void on_reply(kyu_consumer_t *c, kyu_reply_t *rep, int64_t now)
{
    kyu_creq_t *r = find_req(c, rep->id);
    if (!r)
        return;
    if (rep->status == KYU_ERR_NOT_LEADER && c->sid)
        session_lost(c, rep->leader, "the broker is not the leader any more");
    if (r->kind == REQ_HEARTBEAT) {
        c->hb_inflight = false;
        if (rep->status == KYU_ERR_NO_SESSION && c->sid)
            session_lost(c, NULL, "the broker does not know it (NO_SESSION)");
        else if (rep->status != KYU_OK) { /* probably not received: give and set it again */
            c->returned -= c->returned >= r->credit ? r->credit : c->returned;
            if (r->total)
                c->total = -1;
        }
        *r = c->reqs[--c->n_reqs];
        return;
    }
    if (rep->status != KYU_OK && retry_code(rep->status) && r->id && r->kind != REQ_EXTEND) {
        if (++r->attempts < RETRIES_MAX) {
            r->id = 0; /* resend with the same request key (kyu_session_flush) */
            return;
        }
        kyu_consumer_log(c, "%zu messages: %s not sent after %d attempts: %s", r->n,
                         r->kind == REQ_DELETE ? "delete" : "release", RETRIES_MAX,
                         rep->error[0] ? rep->error : kyu_code_name((int)rep->status));
    }
    if (r->kind == REQ_EXTEND)
        extend_reply(c, r, rep, now);
    else
        finish_reply(c, r, rep, now);
    *r = c->reqs[--c->n_reqs];
}

static bool on_push(kyu_consumer_t *c, kyu_reply_t *rep, kyu_message_t **msgs, int64_t now,
                    kyu_err_t *err)
{
    if (rep->ev == KYU_EV_MSGS) {
        take_push(c, rep->sid, *msgs, rep->n_msgs, now);
        *msgs = NULL;
        return true;
    }
    if (rep->ev != KYU_EV_CLOSED || rep->sid != c->sid)
        return true; /* "hb": a sign of life, already noted */
    if (rep->status == KYU_ERR_NO_SUCH_QUEUE) {
        kyu_err_set(err, KYU_ERR_NO_SUCH_QUEUE, "queue %s was deleted", c->queue);
        return false;
    }
    char why[KYU_ERR_MSG_MAX + 64];
    snprintf(why, sizeof why, "closed by the broker: %s %s", kyu_code_name((int)rep->status),
             rep->error);
    session_lost(c, rep->status == KYU_ERR_NOT_LEADER ? rep->leader : NULL, why);
    return true;
}

bool kyu_session_read(kyu_consumer_t *c, kyu_err_t *err)
{
    for (int i = 0; i < 1000; i++) {
        kyu_reply_t rep;
        kyu_message_t *msgs = NULL;
        kyu_reply_init(&rep);
        kyu_err_t e = {0};
        if (kyu_client_poll_reply(c->client, 0, &rep, &msgs, &e) != KYU_OK)
            break;
        int64_t now = kyu_client_now_ms();
        if (rep.status != KYU_ERR_TIMEOUT || rep.error[0] == '\0' ||
            strncmp(rep.error, "no reply", 8) != 0)
            c->last_heard_ms = now; /* anything from the broker is a sign of life */
        bool ok = true;
        if (c->open_id && rep.id == c->open_id && rep.ev)
            ok = on_push(c, &rep, &msgs, now, err);
        else
            on_reply(c, &rep, now);
        kyu_messages_destroy(&msgs);
        kyu_reply_reset(&rep);
        if (!ok)
            return false;
    }
    return true;
}

/* ---- requests ---- */

/* Sends r (a DELETE or CHANGE_VISIBILITY of its handles, or a resend with its key). */
static bool send_req(kyu_consumer_t *c, kyu_creq_t *r, int delay_s)
{
    kyu_request_t req;
    kyu_request_prepare(&req, r->kind == REQ_DELETE ? KYU_OP_DELETE : KYU_OP_CHANGE_VISIBILITY,
                        KYU_F_QUEUE | KYU_F_HANDLES);
    snprintf(req.queue, sizeof req.queue, "%s", c->queue);
    req.n_handles = r->n;
    for (size_t i = 0; i < r->n; i++)
        snprintf(req.handles[i], sizeof req.handles[i], "%s", r->h[i]->msg->receipt_handle);
    if (r->kind != REQ_DELETE) {
        req.fields |= KYU_F_VT;
        req.vt = (uint32_t)delay_s;
    }
    if (r->rq_key) {
        req.fields |= KYU_F_RQ;
        req.rq_client = r->rq_client;
        req.rq_key = r->rq_key;
    } else {
        kyu_client_key_request(c->client, &req);
        r->rq_client = req.rq_client;
        r->rq_key = req.rq_key;
    }
    kyu_err_t e = {0};
    return kyu_client_request_async(c->client, &req, NULL, NULL, 0, &r->id, &e) == KYU_OK;
}

void kyu_session_finish(kyu_consumer_t *c, kyu_held_t *h, bool success, int delay_s)
{
    h->state = HELD_FINISHING;
    h->success = success;
    h->delay_s = delay_s;
    h->bnext = NULL;
    if (c->todo_tail)
        c->todo_tail->bnext = h;
    else
        c->todo_head = h;
    c->todo_tail = h;
}

void kyu_session_flush(kyu_consumer_t *c, int64_t now)
{
    (void)now;
    if (!c->client->sock)
        return;
    /* Resends first: requests that got no answer. */
    for (size_t i = 0; i < c->n_reqs; i++) {
        kyu_creq_t *r = &c->reqs[i];
        if (r->id == 0 && !send_req(c, r, r->h[0]->delay_s))
            return;
    }
    while (c->todo_head && c->n_reqs + 1 < KYU_CONSUMER_REQS_MAX) {
        /* Up to 10 of the same kind (and delay) as the first waiting, not waiting for an
         * extension in flight (its reply would come after the delete's). */
        kyu_creq_t *r = &c->reqs[c->n_reqs];
        memset(r, 0, sizeof *r);
        kyu_held_t *first = NULL, *prev = NULL, *keep_head = NULL, *keep_tail = NULL;
        for (kyu_held_t *h = c->todo_head, *next; h; h = next) {
            next = h->bnext;
            bool take = !h->extending && r->n < KYU_BATCH_MAX &&
                        (!first || (h->success == first->success &&
                                    (h->success || h->delay_s == first->delay_s)));
            if (take) {
                if (!first)
                    first = h;
                r->h[r->n++] = h;
                h->bnext = NULL;
            } else {
                h->bnext = NULL;
                if (keep_tail)
                    keep_tail->bnext = h;
                else
                    keep_head = h;
                keep_tail = h;
            }
            prev = h;
        }
        (void)prev;
        c->todo_head = keep_head;
        c->todo_tail = keep_tail;
        if (r->n == 0)
            return; /* all wait for extensions */
        r->kind = first->success ? REQ_DELETE : REQ_RELEASE;
        if (!send_req(c, r, first->delay_s)) {
            /* Back to the front of the list; try again on the next tick. */
            for (size_t i = r->n; i-- > 0;) {
                r->h[i]->bnext = c->todo_head;
                c->todo_head = r->h[i];
                if (!c->todo_tail)
                    c->todo_tail = r->h[i];
            }
            return;
        }
        c->n_reqs++;
    }
}

/* Extends the leases about to run out (a third of the visibility timeout left), while the
 * message is within max_extension_s of its receipt. */
static void extend_due(kyu_consumer_t *c, int64_t now)
{
    if (c->o.max_extension_s == 0 || !c->client->sock)
        return;
    int64_t vt_ms = (int64_t)c->vt * 1000;
    int64_t margin = vt_ms / 3;
    kyu_creq_t *r = NULL;
    for (kyu_held_t *h = c->held_head; h; h = h->next) {
        if (c->n_reqs + 1 >= KYU_CONSUMER_REQS_MAX)
            break;
        if (h->lost || h->extending || h->state == HELD_FINISHING ||
            now < h->lease_until_ms - margin ||
            h->lease_until_ms >= h->received_ms + (int64_t)c->o.max_extension_s * 1000)
            continue;
        if (!r) {
            r = &c->reqs[c->n_reqs];
            memset(r, 0, sizeof *r);
            r->kind = REQ_EXTEND;
        }
        r->h[r->n++] = h;
        h->extending = true;
        if (r->n == KYU_BATCH_MAX) {
            if (send_req(c, r, c->vt))
                c->n_reqs++;
            else
                for (size_t i = 0; i < r->n; i++)
                    r->h[i]->extending = false;
            r = NULL;
        }
    }
    if (r) {
        if (send_req(c, r, c->vt))
            c->n_reqs++;
        else
            for (size_t i = 0; i < r->n; i++)
                r->h[i]->extending = false;
    }
}

static void heartbeat(kyu_consumer_t *c, int64_t now)
{
    if (!c->sid || c->n_reqs + 1 >= KYU_CONSUMER_REQS_MAX)
        return;
    /* Draining: nothing given back and the total kept, so nothing more is pushed. */
    int64_t total = kyu_consumer_credit_total(c, (int64_t)held_other(c));
    uint32_t give = total < 0 ? 0 : kyu_credit_to_give(c->finished, c->returned);
    bool set_total = total > 0 && total != c->total;
    bool due = now - c->last_hb_ms >= c->hb_ms;
    if (!due && ((give == 0 && !set_total) || c->hb_inflight))
        return;
    kyu_request_t req;
    kyu_request_prepare(&req, KYU_OP_WORKER_HEARTBEAT,
                        KYU_F_SID | KYU_F_CREDIT | (set_total ? KYU_F_CREDIT_TOTAL : 0));
    req.sid = c->sid;
    req.credit = give;
    req.credit_total = set_total ? (uint32_t)total : 0;
    kyu_creq_t *r = &c->reqs[c->n_reqs];
    memset(r, 0, sizeof *r);
    r->kind = REQ_HEARTBEAT;
    r->credit = give;
    r->total = req.credit_total;
    kyu_err_t e = {0};
    if (kyu_client_request_async(c->client, &req, NULL, NULL, 0, &r->id, &e) != KYU_OK)
        return;
    c->n_reqs++;
    c->returned += give;
    if (set_total)
        c->total = total;
    c->hb_inflight = true;
    c->last_hb_ms = now;
}

void kyu_session_tick(kyu_consumer_t *c, int64_t now)
{
    if (c->sid && now - c->last_heard_ms > (int64_t)c->hb_ms * c->liveness) {
        char why[96];
        snprintf(why, sizeof why, "the broker was silent for %lld ms",
                 (long long)(now - c->last_heard_ms));
        session_lost(c, NULL, why);
    }
    heartbeat(c, now);
    extend_due(c, now);
}

void kyu_session_close(kyu_consumer_t *c)
{
    if (!c->sid || !c->client->sock)
        return;
    kyu_request_t req;
    kyu_request_prepare(&req, KYU_OP_WORKER_CLOSE, KYU_F_SID);
    req.sid = c->sid;
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    kyu_err_t e = {0};
    if (kyu_client_call_once(c->client, &req, NULL, NULL, 0, &rep, NULL, &e) != KYU_OK &&
        e.code != KYU_ERR_NO_SESSION)
        kyu_consumer_log(c, "closing session %llu: %s", (unsigned long long)c->sid, e.msg);
    kyu_reply_reset(&rep);
    c->sid = 0;
    c->open_id = 0;
    c->client->push_id = 0;
}
