/* bench_run: kyu-bench's producer and consumer threads, one libkyu client each.
 * W1 and LAT: one request in flight per thread (LAT paces the producers). W2 and send:
 * pipelined sends (--inflight outstanding); the W2 consumer keeps --recv-inflight receives
 * of 10 outstanding and deletes in batches of up to 10, pipelined too. PUSH: W2's producers;
 * the consumer opens a worker session and deletes what the broker pushes (below). */
#include "bench.h"
#include "kyu_internal.h" /* PUSH: kyu_request_prepare, the client's push_id */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BACKOFF_MIN_NS 20000LL  /* polling an empty queue without --wait */
#define BACKOFF_MAX_NS 200000LL /* keep it under the latency being measured */

static void sleep_until(int64_t t_ns)
{
    struct timespec ts = {t_ns / 1000000000, t_ns % 1000000000};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) != 0) {
    }
}

static void fill(unsigned char *buf, uint64_t seq)
{
    int64_t t = bench_now_ns();
    memcpy(buf, &t, 8);
    memcpy(buf + 8, &seq, 8);
}

/* --groups: message seq's MessageGroupId ("g" and seq % groups) into o, NULL without. */
static const kyu_send_options_t *group_options(const bench_t *b, const uint64_t *seqs, size_t n,
                                               char (*names)[24], const char **ptrs,
                                               kyu_send_options_t *o)
{
    if (b->groups <= 0)
        return NULL;
    kyu_send_options_init(o);
    for (size_t i = 0; i < n; i++) {
        snprintf(names[i], sizeof names[i], "g%llu",
                 (unsigned long long)(seqs[i] % (uint64_t)b->groups));
        ptrs[i] = names[i];
    }
    o->group_ids = ptrs;
    return o;
}

/* Sends sequences first, first + step, ... below end (or'ed with flag), keeping
 * b->inflight requests outstanding. */
static void send_pipelined(bench_t *b, kyu_client_t *c, uint64_t first, uint64_t step, uint64_t end,
                           uint64_t flag)
{
    size_t per = b->batch > 0 ? (size_t)b->batch : 1; /* messages per request */
    unsigned char *buf = malloc(b->size * per);
    if (!buf) {
        bench_fail(b, "out of memory", NULL);
        return;
    }
    memset(buf, 'k', b->size * per);
    uint64_t seq = first;
    kyu_reply_t rep; /* every reply in turn (poll_reply frees what the one before held) */
    kyu_reply_init(&rep);
    while ((seq < end || kyu_client_inflight(c) > 0) && !atomic_load(&b->failed)) {
        while (seq < end && kyu_client_inflight(c) < (size_t)b->inflight) {
            const void *bodies[KYU_BATCH_MAX];
            size_t lens[KYU_BATCH_MAX], n = 0;
            uint64_t seqs[KYU_BATCH_MAX];
            for (; n < per && seq < end; n++, seq += step) {
                if (b->workload != BENCH_PUBLISH) /* a publish is text: all 'k' */
                    fill(buf + n * b->size, seq | flag);
                bodies[n] = buf + n * b->size;
                lens[n] = b->size;
                seqs[n] = seq;
            }
            kyu_err_t err = {0};
            char names[KYU_BATCH_MAX][24];
            const char *ptrs[KYU_BATCH_MAX];
            kyu_send_options_t o;
            kyu_code_t rc = b->workload == BENCH_PUBLISH
                                ? kyu_client_publish_async(c, b->topic, bodies[0], lens[0], NULL,
                                                           NULL, NULL, &err)
                                : kyu_client_send_async_with(
                                      c, b->queue, bodies, lens, n,
                                      group_options(b, seqs, n, names, ptrs, &o), NULL, NULL, &err);
            if (rc != KYU_OK) {
                bench_fail(b, "send", &err);
                kyu_reply_reset(&rep);
                free(buf);
                return;
            }
        }
        /* Every reply already here, then the window refilled at once (as hiredis's pipeline
         * does): the sends go out in a burst, waking libzmq's I/O thread once rather than
         * once per reply. */
        int wait = -1;
        for (;;) {
            kyu_err_t err = {0};
            kyu_code_t rc = kyu_client_poll_reply(c, wait, &rep, NULL, &err);
            if (rc == KYU_ERR_TIMEOUT && wait == 0)
                break;
            if (rc != KYU_OK) {
                bench_fail(b, "send", &err);
                break;
            }
            if (rep.status != KYU_OK) {
                kyu_err_t e = {(kyu_code_t)rep.status, ""};
                snprintf(e.msg, sizeof e.msg, "%s", rep.error);
                atomic_fetch_add(&b->send_errors, 1);
                bench_fail(b, "send", &e);
                break;
            }
            wait = 0;
        }
    }
    kyu_reply_reset(&rep);
    free(buf);
}

static void send_one_at_a_time(bench_t *b, kyu_client_t *c, int p)
{
    unsigned char *buf = malloc(b->size);
    if (!buf) {
        bench_fail(b, "out of memory", NULL);
        return;
    }
    memset(buf, 'k', b->size);
    /* LAT: each producer sends at rate / producers, on a fixed schedule (no drift). */
    double interval = b->rate > 0 ? 1e9 * b->producers / b->rate : 0;
    int64_t t0 = bench_now_ns();
    uint64_t k = 0;
    for (uint64_t seq = (uint64_t)p; seq < b->count && !atomic_load(&b->failed);
         seq += (uint64_t)b->producers, k++) {
        if (interval > 0)
            sleep_until(t0 + (int64_t)(interval * (double)k));
        const void *bodies[] = {buf};
        size_t lens[] = {b->size};
        kyu_err_t err = {0};
        fill(buf, seq);
        char names[1][24];
        const char *ptrs[1];
        kyu_send_options_t o;
        if (kyu_client_send_with(c, b->queue, bodies, lens, 1,
                                 group_options(b, &seq, 1, names, ptrs, &o), NULL, &err) != KYU_OK)
            bench_fail(b, "send", &err);
    }
    free(buf);
}

void *bench_producer(void *arg)
{
    bench_thread_t *t = arg;
    bench_t *b = t->b;
    kyu_client_t *c = bench_connect(b);
    if (c) {
        if (b->workload == BENCH_W2 || b->workload == BENCH_SEND || b->workload == BENCH_PUSH ||
            b->workload == BENCH_PUBLISH)
            send_pipelined(b, c, (uint64_t)t->index, (uint64_t)b->producers, b->count, 0);
        else
            send_one_at_a_time(b, c, t->index);
        kyu_client_destroy(&c);
    }
    if (atomic_fetch_sub(&b->producers_left, 1) == 1) {
        pthread_mutex_lock(&b->lock);
        b->produced_ns = bench_now_ns();
        pthread_mutex_unlock(&b->lock);
    }
    return NULL;
}

bool bench_preload(bench_t *b)
{
    kyu_client_t *c = bench_connect(b);
    if (!c)
        return false;
    send_pipelined(b, c, 0, 1, b->preload, BENCH_PRELOAD_FLAG);
    kyu_client_destroy(&c);
    return !atomic_load(&b->failed);
}

/* ---- consumers ---- */

static bool all_consumed(bench_t *b)
{
    return atomic_load(&b->consumed) >= b->count && atomic_load(&b->preload_seen) >= b->preload;
}

/* Marks a message seen; returns false when the run must stop (a foreign message). */
static bool record(bench_t *b, const kyu_message_t *m, int64_t now)
{
    uint64_t seq;
    int64_t sent;
    if (m->body_len < 16) {
        bench_fail(b, "receive: a message without kyu-bench's 16-byte header", NULL);
        return false;
    }
    memcpy(&sent, m->body, 8);
    memcpy(&seq, m->body + 8, 8);
    if (seq & BENCH_PRELOAD_FLAG) {
        atomic_fetch_add(&b->preload_seen, 1);
        return true;
    }
    if (seq >= b->count) {
        bench_fail(b, "receive: a message with a sequence number out of range", NULL);
        return false;
    }
    if (atomic_exchange(&b->seen[seq], 1)) {
        atomic_fetch_add(&b->duplicates, 1);
        return true;
    }
    b->latency_ns[seq] = (uint64_t)(now - sent);
    b->sent_ns[seq] = sent;
    atomic_fetch_add(&b->consumed, 1);
    return true;
}

/* True (after bench_fail) when nothing new arrived for idle_timeout_s. */
static bool idle_too_long(bench_t *b, int64_t last_progress)
{
    if (bench_now_ns() - last_progress < (int64_t)b->idle_timeout_s * 1000000000LL)
        return false;
    char text[128];
    snprintf(text, sizeof text, "no new message for %d s; %llu of %llu seen", b->idle_timeout_s,
             (unsigned long long)atomic_load(&b->consumed), (unsigned long long)b->count);
    bench_fail(b, text, NULL);
    return true;
}

static void consume_one_at_a_time(bench_t *b, kyu_client_t *c)
{
    int64_t last = bench_now_ns(), backoff = BACKOFF_MIN_NS;
    while (!all_consumed(b) && !atomic_load(&b->failed)) {
        kyu_message_t *msgs = NULL;
        size_t n = 0;
        kyu_err_t err = {0};
        kyu_receive_options_t o;
        kyu_receive_options_init(&o);
        o.wait_seconds = b->wait;
        if (kyu_client_receive_with(c, b->queue, &o, &msgs, &n, &err) != KYU_OK) {
            bench_fail(b, "receive", &err);
            break;
        }
        int64_t now = bench_now_ns();
        if (n == 0) {
            if (idle_too_long(b, last))
                break;
            if (b->wait > 0)
                continue; /* the broker waited for us */
            sleep_until(now + backoff);
            backoff = backoff * 2 > BACKOFF_MAX_NS ? BACKOFF_MAX_NS : backoff * 2;
            continue;
        }
        last = now;
        backoff = BACKOFF_MIN_NS;
        bool ok = record(b, &msgs[0], now);
        const char *h[] = {msgs[0].receipt_handle};
        kyu_code_t res[1];
        if (ok && kyu_client_delete(c, b->queue, h, 1, res, &err) != KYU_OK) {
            atomic_fetch_add(&b->delete_errors, 1);
            bench_fail(b, "delete", &err);
        }
        kyu_messages_destroy(&msgs);
    }
}

/* W2's consumer state: the receives in flight and the batch of handles to delete. */
typedef struct {
    uint64_t recv_ids[KYU_BATCH_MAX * 10];
    int n_recv;
    kyu_request_t del; /* the open delete batch */
} w2_state_t;

static void flush_deletes(bench_t *b, kyu_client_t *c, w2_state_t *s)
{
    if (s->del.n_handles == 0)
        return;
    kyu_err_t err = {0};
    if (kyu_client_request_async(c, &s->del, NULL, NULL, 0, NULL, &err) != KYU_OK)
        bench_fail(b, "delete", &err);
    s->del.n_handles = 0;
}

static bool take_recv_id(w2_state_t *s, uint64_t id)
{
    for (int i = 0; i < s->n_recv; i++) {
        if (s->recv_ids[i] == id) {
            s->recv_ids[i] = s->recv_ids[--s->n_recv];
            return true;
        }
    }
    return false;
}

static void consume_pipelined(bench_t *b, kyu_client_t *c)
{
    w2_state_t s = {.n_recv = 0};
    s.del.op = KYU_OP_DELETE;
    s.del.fields = KYU_F_QUEUE | KYU_F_HANDLES;
    snprintf(s.del.queue, sizeof s.del.queue, "%s", b->queue);
    kyu_request_t recv = {
        .op = KYU_OP_RECEIVE, .fields = KYU_F_QUEUE | KYU_F_MAX, .max = KYU_BATCH_MAX};
    snprintf(recv.queue, sizeof recv.queue, "%s", b->queue);
    if (b->wait >= 0) {
        recv.fields |= KYU_F_WAIT;
        recv.wait = (uint32_t)b->wait;
    }
    int limit = b->recv_inflight > KYU_BATCH_MAX * 10 ? KYU_BATCH_MAX * 10 : b->recv_inflight;
    int target = limit; /* 1 while the queue looks empty, so as not to spin the broker */
    int64_t last = bench_now_ns(), backoff = BACKOFF_MIN_NS;
    kyu_reply_t rep; /* every reply in turn (poll_reply frees what the one before held) */
    kyu_reply_init(&rep);
    while (!atomic_load(&b->failed)) {
        bool done = all_consumed(b);
        while (!done && s.n_recv < target) {
            kyu_err_t err = {0};
            uint64_t id = 0;
            if (kyu_client_request_async(c, &recv, NULL, NULL, 0, &id, &err) != KYU_OK) {
                bench_fail(b, "receive", &err);
                break;
            }
            s.recv_ids[s.n_recv++] = id;
        }
        if (atomic_load(&b->failed))
            break;
        if (done)
            flush_deletes(b, c, &s);
        /* Done: the deletes answered; long polls left in flight would only wait out their
         * wait on the empty queue. */
        if (done && kyu_client_inflight(c) == (b->wait > 0 ? (size_t)s.n_recv : 0))
            break;
        kyu_message_t *msgs = NULL;
        kyu_err_t err = {0};
        if (kyu_client_poll_reply(c, -1, &rep, &msgs, &err) != KYU_OK) {
            bench_fail(b, "receive", &err);
            break;
        }
        bool is_recv = take_recv_id(&s, rep.id), stop = false;
        if (rep.status != KYU_OK) {
            kyu_err_t e = {(kyu_code_t)rep.status, ""};
            snprintf(e.msg, sizeof e.msg, "%s", rep.error);
            if (!is_recv)
                atomic_fetch_add(&b->delete_errors, 1);
            bench_fail(b, is_recv ? "receive" : "delete", &e);
        } else if (!is_recv) {
            for (size_t i = 0; i < rep.n_results; i++)
                if (rep.results[i] != KYU_OK)
                    atomic_fetch_add(&b->delete_errors, 1);
        } else if (rep.n_msgs == 0) {
            target = 1;
            flush_deletes(b, c, &s);
            stop = idle_too_long(b, last);
            if (b->wait <= 0)
                sleep_until(bench_now_ns() + backoff);
            backoff = backoff * 2 > BACKOFF_MAX_NS ? BACKOFF_MAX_NS : backoff * 2;
        } else {
            int64_t now = bench_now_ns();
            last = now;
            target = limit;
            backoff = BACKOFF_MIN_NS;
            for (size_t i = 0; i < rep.n_msgs && record(b, &msgs[i], now); i++) {
                snprintf(s.del.handles[s.del.n_handles++], sizeof s.del.handles[0], "%s",
                         msgs[i].receipt_handle);
                if (s.del.n_handles == KYU_BATCH_MAX)
                    flush_deletes(b, c, &s);
            }
            if (rep.n_msgs < KYU_BATCH_MAX) /* the queue ran short: do not hold handles */
                flush_deletes(b, c, &s);
        }
        kyu_messages_destroy(&msgs);
        if (stop)
            break;
    }
    kyu_reply_reset(&rep);
}

/* PUSH's consumer, on raw requests through libkyu rather than the consumer API (kyu.h's
 * kyu_consumer_*), so that what is measured is the broker's leasing and pushing: the consumer
 * API sizes its credit to its handler pool, hands batches to threads and extends leases,
 * which would be measured too. Here: WORKER_OPEN with --credit; each push's messages (up to
 * 10) are recorded and deleted in one DELETE at once; the credit they took goes back with a
 * WORKER_HEARTBEAT (one in flight at a time: what comes back meanwhile waits for the next)
 * once the delete is answered (--early-credit: once it is sent), and a heartbeat goes at
 * least every interval the broker asked for. When every message is seen and deleted,
 * WORKER_CLOSE. */
typedef struct {
    uint64_t id;
    uint32_t n; /* messages it deletes: their credit */
} push_delete_t;

typedef struct {
    uint64_t sid, open_id, hb_id, close_id;
    int64_t hb_ms, last_hb_ns;
    uint64_t to_give;    /* credit of finished messages not given back yet */
    push_delete_t *dels; /* the deletes in flight */
    size_t n_dels, cap_dels;
} push_state_t;

static bool push_open(bench_t *b, kyu_client_t *c, int index, push_state_t *s)
{
    kyu_request_t req;
    kyu_request_prepare(&req, KYU_OP_WORKER_OPEN, KYU_F_QUEUE | KYU_F_CREDIT | KYU_F_WORKER_NAME);
    snprintf(req.queue, sizeof req.queue, "%s", b->queue);
    req.credit = (uint32_t)b->credit;
    snprintf(req.worker_name, sizeof req.worker_name, "kyu-bench-%d", index);
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    kyu_err_t err = {0};
    kyu_code_t rc = kyu_client_call(c, &req, NULL, NULL, 0, &rep, NULL, &err);
    if (rc == KYU_OK && rep.sid == 0)
        rc = kyu_err_set(&err, KYU_ERR_MALFORMED, "WORKER_OPEN reply without a session id");
    if (rc == KYU_OK) {
        s->sid = rep.sid;
        s->open_id = rep.id;
        s->hb_ms = rep.hb_ms ? rep.hb_ms : KYU_WORKER_HB_DEFAULT_MS;
        s->last_hb_ns = bench_now_ns();
        c->push_id = rep.id; /* poll_reply hands out the pushes */
    } else {
        bench_fail(b, "worker-open", &err);
    }
    kyu_reply_reset(&rep);
    return rc == KYU_OK;
}

/* Sends a heartbeat giving back what finished, when none is in flight and there is credit
 * to give or the interval is up. */
static bool push_heartbeat(bench_t *b, kyu_client_t *c, push_state_t *s)
{
    int64_t now = bench_now_ns();
    bool due = now - s->last_hb_ns >= s->hb_ms * 1000000 / 2;
    /* --early-credit: none while the credit's worth of deletes is in flight (so at most twice
     * that are) */
    uint64_t give = b->early_credit && s->n_dels >= (size_t)b->credit ? 0 : s->to_give;
    give = give > KYU_WORKER_CREDIT_MAX ? KYU_WORKER_CREDIT_MAX : give;
    if (s->hb_id || (give == 0 && !due))
        return true;
    kyu_request_t req;
    kyu_request_prepare(&req, KYU_OP_WORKER_HEARTBEAT, KYU_F_SID | KYU_F_CREDIT);
    req.sid = s->sid;
    req.credit = (uint32_t)give;
    kyu_err_t err = {0};
    if (kyu_client_request_async(c, &req, NULL, NULL, 0, &s->hb_id, &err) != KYU_OK) {
        bench_fail(b, "worker-heartbeat", &err);
        return false;
    }
    s->to_give -= give;
    s->last_hb_ns = now;
    return true;
}

/* A push of messages: record them and delete them in one request. */
static void push_take(bench_t *b, kyu_client_t *c, push_state_t *s, const kyu_reply_t *rep,
                      const kyu_message_t *msgs)
{
    int64_t now = bench_now_ns();
    kyu_request_t del;
    kyu_request_prepare(&del, KYU_OP_DELETE, KYU_F_QUEUE | KYU_F_HANDLES);
    snprintf(del.queue, sizeof del.queue, "%s", b->queue);
    for (size_t i = 0; i < rep->n_msgs && record(b, &msgs[i], now); i++)
        snprintf(del.handles[del.n_handles++], sizeof del.handles[0], "%s", msgs[i].receipt_handle);
    if (del.n_handles == 0)
        return;
    if (s->n_dels == s->cap_dels) { /* --early-credit lets more than the credit wait */
        push_delete_t *more = realloc(s->dels, 2 * s->cap_dels * sizeof *more);
        if (!more) {
            bench_fail(b, "out of memory", NULL);
            return;
        }
        s->dels = more;
        s->cap_dels *= 2;
    }
    kyu_err_t err = {0};
    uint64_t id = 0;
    if (kyu_client_request_async(c, &del, NULL, NULL, 0, &id, &err) != KYU_OK) {
        bench_fail(b, "delete", &err);
        return;
    }
    s->dels[s->n_dels++] = (push_delete_t){id, (uint32_t)rep->n_msgs};
    if (b->early_credit)
        s->to_give += rep->n_msgs;
}

/* A reply to one of our deletes: true when it was one. */
static bool push_deleted(bench_t *b, push_state_t *s, const kyu_reply_t *rep)
{
    for (size_t i = 0; i < s->n_dels; i++) {
        if (s->dels[i].id != rep->id)
            continue;
        if (!b->early_credit)
            s->to_give += s->dels[i].n;
        s->dels[i] = s->dels[--s->n_dels];
        if (rep->status != KYU_OK) {
            kyu_err_t e = {(kyu_code_t)rep->status, ""};
            snprintf(e.msg, sizeof e.msg, "%s", rep->error);
            atomic_fetch_add(&b->delete_errors, 1);
            bench_fail(b, "delete", &e);
        }
        for (size_t k = 0; k < rep->n_results; k++)
            if (rep->results[k] != KYU_OK)
                atomic_fetch_add(&b->delete_errors, 1);
        return true;
    }
    return false;
}

static void consume_pushed(bench_t *b, kyu_client_t *c, int index)
{
    push_state_t s = {.n_dels = 0};
    s.cap_dels = (size_t)b->credit; /* a delete per push at most, a push per credit at most */
    s.dels = calloc(s.cap_dels, sizeof *s.dels);
    if (!s.dels) {
        bench_fail(b, "out of memory", NULL);
        return;
    }
    if (!push_open(b, c, index, &s)) {
        free(s.dels);
        return;
    }
    int64_t last = bench_now_ns();
    while (!atomic_load(&b->failed)) {
        if (!s.close_id && all_consumed(b) && s.n_dels == 0) {
            kyu_request_t req;
            kyu_request_prepare(&req, KYU_OP_WORKER_CLOSE, KYU_F_SID);
            req.sid = s.sid;
            kyu_err_t err = {0};
            if (kyu_client_request_async(c, &req, NULL, NULL, 0, &s.close_id, &err) != KYU_OK) {
                bench_fail(b, "worker-close", &err);
                break;
            }
        }
        if (!s.close_id && !push_heartbeat(b, c, &s))
            break;
        kyu_reply_t rep;
        kyu_message_t *msgs = NULL;
        kyu_err_t err = {0};
        kyu_reply_init(&rep);
        kyu_code_t rc = kyu_client_poll_reply(c, (int)(s.hb_ms / 4), &rep, &msgs, &err);
        bool stop = false;
        if (rc == KYU_ERR_TIMEOUT) {
            stop = idle_too_long(b, last);
        } else if (rc != KYU_OK) {
            bench_fail(b, "receive a push", &err);
            stop = true;
        } else if (rep.id == s.open_id && rep.ev) {
            if (rep.ev == KYU_EV_MSGS && rep.n_msgs > 0) {
                last = bench_now_ns();
                push_take(b, c, &s, &rep, msgs);
            } else if (rep.ev == KYU_EV_CLOSED && !s.close_id) {
                kyu_err_t e = {(kyu_code_t)rep.status, ""};
                snprintf(e.msg, sizeof e.msg, "%s", rep.error);
                bench_fail(b, "the broker closed the worker session", &e);
                stop = true;
            } else if (rep.ev == KYU_EV_HB) {
                stop = idle_too_long(b, last);
            }
        } else if (rep.id == s.hb_id) {
            s.hb_id = 0;
            if (rep.status != KYU_OK) {
                kyu_err_t e = {(kyu_code_t)rep.status, ""};
                snprintf(e.msg, sizeof e.msg, "%s", rep.error);
                bench_fail(b, "worker-heartbeat", &e);
            }
        } else if (s.close_id && rep.id == s.close_id) {
            if (rep.status != KYU_OK) {
                kyu_err_t e = {(kyu_code_t)rep.status, ""};
                snprintf(e.msg, sizeof e.msg, "%s", rep.error);
                bench_fail(b, "worker-close", &e);
            }
            stop = true;
        } else {
            push_deleted(b, &s, &rep);
        }
        kyu_reply_reset(&rep);
        kyu_messages_destroy(&msgs);
        if (stop)
            break;
    }
    c->push_id = 0;
    free(s.dels);
}

void *bench_consumer(void *arg)
{
    bench_thread_t *t = arg;
    bench_t *b = t->b;
    kyu_client_t *c = bench_connect(b);
    if (!c)
        return NULL;
    if (b->workload == BENCH_W2)
        consume_pipelined(b, c);
    else if (b->workload == BENCH_PUSH)
        consume_pushed(b, c, t->index);
    else
        consume_one_at_a_time(b, c);
    kyu_client_destroy(&c);
    return NULL;
}
