/* consumer: libkyu's consumer (kyu.h): options, the fixed pool of handler threads,
 * batching, scaling, handler timeouts, drain, and the event loop that ties them to the
 * session (consumer_session.c).
 *
 * The loop runs in kyu_consumer_run's thread and owns everything; it sleeps in zmq_poll on
 * the client's socket and a pipe that pool threads and kyu_consumer_drain write a byte to,
 * and wakes at least every TICK_MS for timers (heartbeats, extensions, timeouts, scaling). */
#include "consumer_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#define TICK_MS 100
#define DOWN_FATAL_MS 60000 /* no broker reachable this long: kyu_consumer_run fails */
#define BATCH_SIZE_MAX 10000
#define WINDOW_MAX_MS 300000
#define CONCURRENCY_MAX 1000
#define TIMEOUT_MAX_MS 900000
#define BACKOFF_MAX_MS 43200000 /* 12 hours: the longest visibility timeout */
#define DRAIN_MAX_MS 3600000
#define TIMEOUT_GRACE_MS 1000 /* a handler may take this long past its deadline to report */
#define DRAIN_GIVE_UP_MS                                                                           \
    30000 /* a drain stops waiting for the broker this long after its deadline */

int64_t kyu_consumer_now_ms(void)
{
    return kyu_client_now_ms();
}

kyu_consumer_opts_t kyu_consumer_opts_default(void)
{
    kyu_consumer_opts_t o = {0};
    o.batch_size = 10;
    o.batch_window_ms = 0;
    o.max_concurrency = 10;
    o.initial_concurrency = 0;
    o.handler_timeout_ms = 30000;
    o.visibility_timeout = -1;
    o.max_extension_s = 900;
    o.backoff_base_ms = 1000;
    o.backoff_max_ms = 300000;
    o.heartbeat_ms = 1000;
    o.liveness = 3;
    o.drain_timeout_ms = -1;
    o.max_batch_bytes = 6u << 20;
    o.client_timeout_ms = 5000;
    return o;
}

static void log_stderr(void *arg, const char *line)
{
    (void)arg;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[32];
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    fprintf(stderr, "%s.%03ldZ %s\n", when, ts.tv_nsec / 1000000, line);
}

void kyu_consumer_log(kyu_consumer_t *c, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    c->o.log(c->o.log_arg, line);
}

void kyu_consumer_wake(kyu_consumer_t *c)
{
    char b = 1;
    ssize_t rc = write(c->wake[1], &b, 1); /* full pipe: a wake-up is pending anyway */
    (void)rc;
}

double kyu_consumer_rand01(kyu_consumer_t *c)
{
    return (double)rand_r(&c->rnd) / RAND_MAX;
}

static bool in_range(int v, int lo, int hi)
{
    return v >= lo && v <= hi;
}

/* Fills defaults and checks every option; err names the first one out of range. */
static kyu_code_t check_opts(kyu_consumer_opts_t *o, kyu_err_t *err)
{
#define BAD(...) kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, __VA_ARGS__)
    if (!o->queue || !kyu_queue_name_valid(o->queue, strlen(o->queue)))
        return kyu_err_set(err, KYU_ERR_INVALID_NAME,
                           "queue '%s': 1 to %d characters of letters, digits, - and _",
                           o->queue ? o->queue : "", KYU_NAME_MAX);
    if (!in_range(o->batch_size, 1, BATCH_SIZE_MAX))
        return BAD("batch size must be 1 to %d, not %d", BATCH_SIZE_MAX, o->batch_size);
    if (!in_range(o->batch_window_ms, 0, WINDOW_MAX_MS))
        return BAD("batch window must be 0 to %d ms, not %d", WINDOW_MAX_MS, o->batch_window_ms);
    if (o->batch_size > 10 && o->batch_window_ms < 1000)
        return BAD("a batch size over 10 needs a batch window of at least 1 second (Lambda's "
                   "rule), not %d ms",
                   o->batch_window_ms);
    if (!in_range(o->max_concurrency, 1, CONCURRENCY_MAX))
        return BAD("max concurrency must be 1 to %d, not %d", CONCURRENCY_MAX, o->max_concurrency);
    if (o->initial_concurrency == 0)
        o->initial_concurrency = o->max_concurrency < 5 ? o->max_concurrency : 5;
    if (!in_range(o->initial_concurrency, 1, o->max_concurrency))
        return BAD("initial concurrency must be 1 to the max concurrency (%d), not %d",
                   o->max_concurrency, o->initial_concurrency);
    if (!in_range(o->handler_timeout_ms, 100, TIMEOUT_MAX_MS))
        return BAD("handler timeout must be 100 to %d ms, not %d", TIMEOUT_MAX_MS,
                   o->handler_timeout_ms);
    if (o->visibility_timeout != -1 && !in_range(o->visibility_timeout, 1, KYU_VISIBILITY_MAX))
        return BAD("visibility timeout must be 1 to %d seconds, not %d", KYU_VISIBILITY_MAX,
                   o->visibility_timeout);
    if (!in_range(o->max_extension_s, 0, KYU_VISIBILITY_MAX))
        return BAD("max extension must be 0 to %d seconds, not %d", KYU_VISIBILITY_MAX,
                   o->max_extension_s);
    if (!in_range(o->backoff_base_ms, 0, BACKOFF_MAX_MS))
        return BAD("back-off base must be 0 to %d ms, not %d", BACKOFF_MAX_MS, o->backoff_base_ms);
    if (!in_range(o->backoff_max_ms, o->backoff_base_ms, BACKOFF_MAX_MS))
        return BAD("back-off maximum must be the base (%d) to %d ms, not %d", o->backoff_base_ms,
                   BACKOFF_MAX_MS, o->backoff_max_ms);
    if (!in_range(o->heartbeat_ms, 100, 60000))
        return BAD("heartbeat interval must be 100 to 60000 ms, not %d", o->heartbeat_ms);
    if (!in_range(o->liveness, 1, 100))
        return BAD("liveness must be 1 to 100 heartbeats, not %d", o->liveness);
    if (o->drain_timeout_ms == -1)
        o->drain_timeout_ms = o->handler_timeout_ms;
    if (!in_range(o->drain_timeout_ms, 0, DRAIN_MAX_MS))
        return BAD("drain timeout must be 0 to %d ms, not %d", DRAIN_MAX_MS, o->drain_timeout_ms);
    if (o->max_batch_bytes == 0)
        return BAD("max batch bytes must be positive");
    if (o->name) {
        size_t len = strlen(o->name);
        bool printable = len >= 1 && len <= 64;
        for (size_t i = 0; printable && i < len; i++)
            printable = o->name[i] > 0x20 && o->name[i] < 0x7f;
        if (!printable)
            return BAD("worker name must be 1 to 64 printable characters without spaces");
    }
    if (o->client_timeout_ms <= 0)
        return BAD("client timeout must be positive, not %d", o->client_timeout_ms);
    if (!o->log)
        o->log = log_stderr;
    return KYU_OK;
#undef BAD
}

bool kyu_batch_cancelled(const kyu_batch_t *batch)
{
    const kyu_cbatch_t *b = batch->priv_;
    return atomic_load(&b->cancel) != 0;
}

/* ---- the pool ---- */

static void *pool_main(void *arg)
{
    kyu_consumer_t *c = arg;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (!c->jobs_head && !c->stopping)
            pthread_cond_wait(&c->cv, &c->mu);
        if (!c->jobs_head)
            break; /* stopping, and nothing left to run */
        kyu_cbatch_t *b = c->jobs_head;
        c->jobs_head = b->next;
        if (!c->jobs_head)
            c->jobs_tail = NULL;
        b->state = BATCH_RUNNING;
        pthread_mutex_unlock(&c->mu);
        bool ok = c->handler(&b->pub, c->arg);
        pthread_mutex_lock(&c->mu);
        b->ok = ok;
        b->state = BATCH_DONE;
        b->next = c->done_head;
        c->done_head = b;
        kyu_consumer_wake(c);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

static void batch_free(kyu_cbatch_t *b)
{
    if (!b)
        return;
    for (size_t i = 0; b->chunks && i < b->pub.n; i++)
        kyu_chunk_unref(b->chunks[i]);
    free(b->chunks);
    free(b->held);
    free(b->copies);
    free(b->pub.results);
    free(b);
}

/* ---- lifecycle ---- */

kyu_consumer_t *kyu_consumer_new(const char *endpoints, const kyu_consumer_opts_t *opts,
                                 kyu_batch_handler_fn *handler, void *arg, kyu_err_t *err)
{
    kyu_consumer_opts_t o = opts ? *opts : kyu_consumer_opts_default();
    if (!handler) {
        kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "a consumer needs a handler");
        return NULL;
    }
    if (check_opts(&o, err) != KYU_OK)
        return NULL;
    kyu_consumer_t *c = calloc(1, sizeof *c);
    if (!c) {
        kyu_err_set(err, KYU_ERR_INTERNAL, "out of memory");
        return NULL;
    }
    c->o = o;
    c->wake[0] = c->wake[1] = -1;
    snprintf(c->queue, sizeof c->queue, "%s", o.queue);
    c->o.queue = c->queue;
    if (o.name)
        snprintf(c->name, sizeof c->name, "%s", o.name);
    else {
        char host[48] = "";
        gethostname(host, sizeof host - 1);
        for (char *p = host; *p; p++)
            if (*p <= 0x20 || *p >= 0x7f)
                *p = '_';
        snprintf(c->name, sizeof c->name, "%.48s:%ld", host[0] ? host : "host", (long)getpid());
    }
    c->o.name = c->name;
    c->handler = handler;
    c->arg = arg;
    c->down_since_ms = -1;
    c->drain_deadline_ms = -1;
    c->next_batch = 1;
    if (getrandom(&c->rnd, sizeof c->rnd, 0) != sizeof c->rnd)
        c->rnd = (unsigned)getpid();
    c->reqs = calloc(KYU_CONSUMER_REQS_MAX, sizeof *c->reqs);
    c->running = calloc((size_t)o.max_concurrency, sizeof *c->running);
    c->threads = calloc((size_t)o.max_concurrency, sizeof *c->threads);
    if (!c->reqs || !c->running || !c->threads) {
        kyu_err_set(err, KYU_ERR_INTERNAL, "out of memory");
        goto fail;
    }
    if (pipe2(c->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
        kyu_err_set(err, KYU_ERR_INTERNAL, "pipe: %s", strerror(errno));
        goto fail;
    }
    kyu_client_opts_t co = kyu_client_opts_default();
    co.timeout_ms = o.client_timeout_ms;
    co.max_inflight = KYU_CONSUMER_REQS_MAX + 8;
    c->client = kyu_client_new_opts(endpoints, &co, err);
    if (!c->client)
        goto fail;
    /* The queue must exist; its visibility timeout is every lease's unless given. */
    kyu_queue_attrs_t qa;
    if (kyu_client_get_queue_attributes(c->client, c->queue, &qa, err) != KYU_OK)
        goto fail;
    c->vt = o.visibility_timeout > 0 ? o.visibility_timeout : (int)qa.visibility_timeout;
    if (c->vt < 1) {
        kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                    "queue %s has a visibility timeout of 0: give the consumer one of at least "
                    "1 second",
                    c->queue);
        goto fail;
    }
    kyu_scaler_init(&c->scaler, o.initial_concurrency, o.max_concurrency, kyu_client_now_ms());
    atomic_store(&c->st_conc, c->scaler.current);
    if (pthread_mutex_init(&c->mu, NULL) != 0 || pthread_cond_init(&c->cv, NULL) != 0) {
        kyu_err_set(err, KYU_ERR_INTERNAL, "pthread init failed");
        goto fail;
    }
    for (int i = 0; i < o.max_concurrency; i++) {
        if (pthread_create(&c->threads[i], NULL, pool_main, c) != 0) {
            kyu_err_set(err, KYU_ERR_INTERNAL, "cannot start handler thread %d of %d", i + 1,
                        o.max_concurrency);
            goto fail;
        }
        c->n_threads++;
    }
    return c;
fail:
    kyu_consumer_destroy(&c);
    return NULL;
}

void kyu_consumer_drain(kyu_consumer_t *self)
{
    atomic_store(&self->draining, 1);
    kyu_consumer_wake(self);
}

void kyu_consumer_destroy(kyu_consumer_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    kyu_consumer_t *c = *self_p;
    if (c->n_threads) {
        pthread_mutex_lock(&c->mu);
        c->stopping = true;
        for (size_t i = 0; i < c->n_running; i++)
            atomic_store(&c->running[i]->cancel, 1);
        pthread_cond_broadcast(&c->cv);
        pthread_mutex_unlock(&c->mu);
        for (size_t i = 0; i < c->n_threads; i++)
            pthread_join(c->threads[i], NULL);
    }
    if (c->threads) {
        pthread_mutex_destroy(&c->mu);
        pthread_cond_destroy(&c->cv);
    }
    /* Batches still queued never ran: free them with what they hold. */
    while (c->jobs_head) {
        kyu_cbatch_t *b = c->jobs_head;
        c->jobs_head = b->next;
        batch_free(b);
    }
    for (kyu_cbatch_t *b = c->done_head, *next; b; b = next) {
        next = b->next;
        batch_free(b);
    }
    for (size_t i = 0; i < c->n_running; i++)
        batch_free(c->running[i]);
    while (c->held_head)
        kyu_held_free(c, c->held_head);
    kyu_client_destroy(&c->client);
    if (c->wake[0] >= 0)
        close(c->wake[0]);
    if (c->wake[1] >= 0)
        close(c->wake[1]);
    free(c->threads);
    free(c->running);
    free(c->reqs);
    free(c);
    *self_p = NULL;
}

void kyu_consumer_stats(const kyu_consumer_t *self, kyu_consumer_stats_t *out)
{
    kyu_consumer_t *c = (kyu_consumer_t *)self;
    out->batches = atomic_load(&c->st[ST_BATCHES]);
    out->messages = atomic_load(&c->st[ST_MESSAGES]);
    out->succeeded = atomic_load(&c->st[ST_SUCCEEDED]);
    out->failed = atomic_load(&c->st[ST_FAILED]);
    out->deleted = atomic_load(&c->st[ST_DELETED]);
    out->released = atomic_load(&c->st[ST_RELEASED]);
    out->extended = atomic_load(&c->st[ST_EXTENDED]);
    out->stale = atomic_load(&c->st[ST_STALE]);
    out->timeouts = atomic_load(&c->st[ST_TIMEOUTS]);
    out->sessions = atomic_load(&c->st[ST_SESSIONS]);
    out->filtered = atomic_load(&c->st[ST_FILTERED]);
    out->concurrency = atomic_load(&c->st_conc);
}

int64_t kyu_consumer_credit_total(const kyu_consumer_t *c, int64_t held_other)
{
    if (atomic_load(&c->draining))
        return -1;
    return kyu_credit_total(c->scaler.current, c->o.batch_size, held_other);
}

/* ---- batches ---- */

/* Takes up to batch_size buffered messages (and max_batch_bytes, but at least one) into a
 * new batch and queues it for the pool. */
static void start_batch(kyu_consumer_t *c, int64_t now)
{
    size_t n = 0, bytes = 0;
    for (kyu_held_t *h = c->buf_head; h && n < (size_t)c->o.batch_size; h = h->bnext) {
        if (n > 0 && bytes + h->msg->body_len > c->o.max_batch_bytes)
            break;
        bytes += h->msg->body_len;
        n++;
    }
    kyu_cbatch_t *b = calloc(1, sizeof *b);
    if (b) {
        b->held = calloc(n, sizeof *b->held);
        b->copies = calloc(n, sizeof *b->copies);
        b->chunks = calloc(n, sizeof *b->chunks);
        b->pub.results = calloc(n, 1);
    }
    if (!b || !b->held || !b->copies || !b->chunks || !b->pub.results) {
        batch_free(b);
        kyu_consumer_log(c, "out of memory for a batch of %zu messages: retrying", n);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        kyu_held_t *h = c->buf_head;
        c->buf_head = h->bnext;
        h->bnext = NULL;
        h->state = HELD_RUNNING;
        b->held[i] = h;
        b->copies[i] = *h->msg;
        b->chunks[i] = h->chunk;
        h->chunk->live++;
    }
    if (!c->buf_head)
        c->buf_tail = NULL;
    c->n_buf -= n;
    c->buf_bytes -= bytes;
    b->pub.msgs = b->copies;
    b->pub.n = n;
    b->pub.queue = c->queue;
    b->pub.id = c->next_batch++;
    b->pub.deadline_ms = now + c->o.handler_timeout_ms;
    b->pub.priv_ = b;
    b->started_ms = now;
    b->bytes = bytes;
    b->state = BATCH_QUEUED;
    c->running[c->n_running++] = b;
    atomic_fetch_add(&c->st[ST_BATCHES], 1);
    atomic_fetch_add(&c->st[ST_MESSAGES], n);
    pthread_mutex_lock(&c->mu);
    if (c->jobs_tail)
        c->jobs_tail->next = b;
    else
        c->jobs_head = b;
    c->jobs_tail = b;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

/* Releases a batch's messages with the back-off of each (a timeout, or a failure) or at once
 * (drain: delay_override >= 0). */
static void release_all(kyu_consumer_t *c, kyu_cbatch_t *b, int delay_override)
{
    for (size_t i = 0; i < b->pub.n; i++) {
        kyu_held_t *h = b->held[i];
        int d = delay_override >= 0
                    ? delay_override
                    : kyu_backoff_seconds(h->msg->receive_count, c->o.backoff_base_ms,
                                          c->o.backoff_max_ms, kyu_consumer_rand01(c));
        kyu_session_finish(c, h, false, d);
    }
}

static void remove_running(kyu_consumer_t *c, kyu_cbatch_t *b)
{
    for (size_t i = 0; i < c->n_running; i++)
        if (c->running[i] == b) {
            c->running[i] = c->running[--c->n_running];
            return;
        }
}

/* A handler returned: apply its results (unless the batch was abandoned), log the line. */
static void batch_done(kyu_consumer_t *c, kyu_cbatch_t *b, int64_t now)
{
    int64_t took = now - b->started_ms;
    if (b->abandoned) {
        size_t failed = 0;
        for (size_t i = 0; b->ok && i < b->pub.n; i++)
            failed += b->pub.results[i] != KYU_ITEM_OK;
        kyu_consumer_log(c,
                         "batch %llu: handler returned after %lld ms, past its timeout: its "
                         "result (%s, %zu of %zu failed) is dropped, the messages were "
                         "released already",
                         (unsigned long long)b->pub.id, (long long)took,
                         b->ok ? "ok" : "batch failed", b->ok ? failed : b->pub.n, b->pub.n);
        remove_running(c, b);
        batch_free(b);
        return;
    }
    size_t failed = 0;
    for (size_t i = 0; i < b->pub.n; i++) {
        kyu_held_t *h = b->held[i];
        bool ok = b->ok && b->pub.results[i] == KYU_ITEM_OK;
        if (ok)
            kyu_session_finish(c, h, true, 0);
        else {
            failed++;
            kyu_session_finish(c, h, false,
                               kyu_backoff_seconds(h->msg->receive_count, c->o.backoff_base_ms,
                                                   c->o.backoff_max_ms, kyu_consumer_rand01(c)));
        }
    }
    atomic_fetch_add(&c->st[ST_SUCCEEDED], b->pub.n - failed);
    atomic_fetch_add(&c->st[ST_FAILED], failed);
    /* Scaling backs off when handlers fail (the whole batch: an error, a dependency down), not
     * for the messages a handler reports failed on their own (a poison message). */
    if (!b->ok || failed == b->pub.n)
        c->failed_since++;
    else
        c->ok_since++;
    kyu_consumer_log(c, "batch %llu: %zu messages, %lld ms, %zu failed%s",
                     (unsigned long long)b->pub.id, b->pub.n, (long long)took, failed,
                     b->ok ? "" : " (the handler failed the batch)");
    remove_running(c, b);
    batch_free(b);
}

/* Batches past their timeout (or the drain deadline): cancel the handler and release their
 * messages now; the batch stays until its thread gives it back. */
static void check_deadlines(kyu_consumer_t *c, int64_t now)
{
    bool drain_cut = c->drain_deadline_ms >= 0 && now >= c->drain_deadline_ms;
    for (size_t i = 0; i < c->n_running; i++) {
        kyu_cbatch_t *b = c->running[i];
        if (b->abandoned)
            continue;
        bool timed_out = now >= b->pub.deadline_ms + TIMEOUT_GRACE_MS;
        if (!timed_out && !drain_cut)
            continue;
        b->abandoned = true;
        atomic_store(&b->cancel, 1);
        if (timed_out) {
            atomic_fetch_add(&c->st[ST_TIMEOUTS], 1);
            atomic_fetch_add(&c->st[ST_FAILED], b->pub.n);
            c->failed_since++;
            kyu_consumer_log(c,
                             "batch %llu: %zu messages, handler timed out after %d ms: "
                             "releasing them with back-off",
                             (unsigned long long)b->pub.id, b->pub.n, c->o.handler_timeout_ms);
        } else {
            kyu_consumer_log(c,
                             "batch %llu: %zu messages still running at the drain deadline: "
                             "releasing them",
                             (unsigned long long)b->pub.id, b->pub.n);
        }
        release_all(c, b, timed_out ? -1 : 0);
    }
}

static size_t active_batches(const kyu_consumer_t *c)
{
    size_t n = 0;
    for (size_t i = 0; i < c->n_running; i++)
        n += !c->running[i]->abandoned;
    return n;
}

/* Collects what the pool finished. */
static void collect_done(kyu_consumer_t *c, int64_t now)
{
    char drain[64];
    while (read(c->wake[0], drain, sizeof drain) > 0)
        ;
    pthread_mutex_lock(&c->mu);
    kyu_cbatch_t *done = c->done_head;
    c->done_head = NULL;
    pthread_mutex_unlock(&c->mu);
    while (done) {
        kyu_cbatch_t *b = done;
        done = b->next;
        batch_done(c, b, now);
    }
}

static void dispatch(kyu_consumer_t *c, int64_t now)
{
    if (atomic_load(&c->draining))
        return;
    /* An abandoned batch still occupies its thread: it counts against the pool, not against
     * the concurrency the scaler allows. */
    while (c->n_buf > 0 && active_batches(c) < (size_t)c->scaler.current &&
           c->n_running < c->n_threads &&
           kyu_batch_ready(c->n_buf, c->buf_bytes, c->o.batch_size, c->o.max_batch_bytes,
                           c->buf_head->received_ms, c->o.batch_window_ms, now)) {
        size_t before = c->n_buf;
        start_batch(c, now);
        if (c->n_buf == before)
            break; /* out of memory: try again on the next tick */
    }
}

static void scale(kyu_consumer_t *c, int64_t now)
{
    kyu_scale_input_t in = {.buffered = c->n_buf,
                            .running = active_batches(c),
                            .batch_size = c->o.batch_size,
                            .failures = c->failed_since,
                            .successes = c->ok_since};
    int before = c->scaler.current;
    char why[160];
    kyu_scaler_step(&c->scaler, &in, now, why, sizeof why);
    if (now - c->scaler.last_step_ms == 0) {
        c->failed_since = 0;
        c->ok_since = 0;
    }
    if (c->scaler.current != before) {
        atomic_store(&c->st_conc, c->scaler.current);
        kyu_consumer_log(c, "scaling %s from %d to %d concurrent batches: %s",
                         c->scaler.current > before ? "up" : "down", before, c->scaler.current,
                         why);
    }
}

/* Drain: release what has not started, once; the session closes when nothing is held. */
static void drain_step(kyu_consumer_t *c, int64_t now)
{
    if (c->drain_deadline_ms < 0) {
        c->drain_deadline_ms = now + c->o.drain_timeout_ms;
        kyu_consumer_log(c, "draining: %zu batches running, %zu messages not started released",
                         active_batches(c), c->n_buf);
    }
    while (c->buf_head) {
        kyu_held_t *h = c->buf_head;
        c->buf_head = h->bnext;
        h->bnext = NULL;
        kyu_session_finish(c, h, false, 0);
    }
    c->buf_tail = NULL;
    c->n_buf = 0;
    c->buf_bytes = 0;
}

kyu_code_t kyu_consumer_run(kyu_consumer_t *self, kyu_err_t *err)
{
    kyu_consumer_t *c = self;
    kyu_consumer_log(c,
                     "consumer %s on queue %s: batch size %d, window %d ms, concurrency %d "
                     "(max %d), handler timeout %d ms, visibility timeout %d s",
                     c->name, c->queue, c->o.batch_size, c->o.batch_window_ms, c->scaler.current,
                     c->o.max_concurrency, c->o.handler_timeout_ms, c->vt);
    for (;;) {
        int64_t now = kyu_client_now_ms();
        bool draining = atomic_load(&c->draining);
        if (draining)
            drain_step(c, now);
        if (draining && c->n_running == 0 && !c->todo_head && c->n_reqs == 0) {
            kyu_session_close(c);
            kyu_consumer_log(c, "drained: session closed");
            return KYU_OK;
        }
        if (!draining && !kyu_session_ensure(c, now, err))
            return err ? err->code : KYU_ERR_INTERNAL;
        if (c->down_since_ms >= 0 && now - c->down_since_ms > DOWN_FATAL_MS && !draining)
            return kyu_err_set(err, KYU_ERR_CONNECTION, "no broker reachable for %d s: %s",
                               DOWN_FATAL_MS / 1000, kyu_client_endpoint(c->client));
        collect_done(c, now);
        check_deadlines(c, now);
        scale(c, now);
        dispatch(c, now);
        kyu_session_tick(c, now);
        kyu_session_flush(c, now);
        if (draining && c->drain_deadline_ms >= 0 &&
            now >= c->drain_deadline_ms + DRAIN_GIVE_UP_MS) {
            /* No broker to finish with: what is left is released when its leases run out. */
            kyu_consumer_log(c,
                             "drain: giving up %d s after the deadline: %zu handlers running, "
                             "%zu requests unanswered",
                             DRAIN_GIVE_UP_MS / 1000, c->n_running, c->n_reqs);
            return KYU_OK;
        }
        if (draining && c->drain_deadline_ms >= 0 && now >= c->drain_deadline_ms + 5000 &&
            c->n_reqs == 0 && !c->todo_head) {
            /* Handlers that ignore their cancellation: stop waiting for them. */
            kyu_session_close(c);
            kyu_consumer_log(c, "drained at the deadline: %zu handlers still running",
                             c->n_running);
            return KYU_OK;
        }
        zmq_pollitem_t items[2] = {{NULL, c->wake[0], ZMQ_POLLIN, 0},
                                   {c->client->sock, 0, ZMQ_POLLIN, 0}};
        int n_items = c->client->sock ? 2 : 1;
        long wait = TICK_MS;
        if (c->n_buf && c->o.batch_window_ms > 0) {
            int64_t due = c->buf_head->received_ms + c->o.batch_window_ms - now;
            if (due >= 0 && due < wait)
                wait = (long)due + 1;
        }
        int rc = zmq_poll(items, n_items, wait);
        if (rc < 0 && errno != EINTR)
            return kyu_err_set(err, KYU_ERR_CONNECTION, "zmq_poll: %s", zmq_strerror(errno));
        /* Also when the socket is quiet: requests past their deadline are answered as
         * TIMEOUT by the read (a drain waits for them when the broker is gone). */
        if (!kyu_session_read(c, err))
            return err ? err->code : KYU_ERR_INTERNAL;
    }
}
