#include "replica.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct entry {
    uint64_t index;
    msgpack_sbuffer payload;
    void **waiters; /* one per command, in order; NULL for none */
    size_t n, cap;
    struct entry *next;
} entry_t;

struct kyu_replica {
    kyu_sm_t *sm;
    kyu_log_t *log;
    kyu_replica_done_fn done;
    void *done_arg;
    uint64_t last_index; /* last index handed to the log */
    uint64_t last_now;
    entry_t *open;                     /* gathering proposals */
    entry_t *inflight, *inflight_tail; /* handed to the log, oldest first */
    size_t n_inflight;
    size_t pending; /* commands proposed, not yet answered */
    uint64_t compacted_before;
    bool failed;
    char failure[KYU_ERR_MSG_MAX];
};

static entry_t *entry_new(void)
{
    entry_t *e = calloc(1, sizeof *e);
    KYU_ASSERT(e);
    msgpack_sbuffer_init(&e->payload);
    return e;
}

static void entry_destroy(entry_t **e_p)
{
    entry_t *e = *e_p;
    if (!e)
        return;
    msgpack_sbuffer_destroy(&e->payload);
    free(e->waiters);
    free(e);
    *e_p = NULL;
}

/* Answers every waiter of e with an error result. */
static void fail_waiters(kyu_replica_t *self, entry_t *e, kyu_code_t code, const char *why)
{
    for (size_t i = 0; i < e->n; i++) {
        kyu_result_t res = {.code = code};
        snprintf(res.error, sizeof res.error, "%s", why);
        self->done(self->done_arg, e->waiters[i], &res);
    }
    self->pending -= e->n;
}

static void fail(kyu_replica_t *self, const char *why)
{
    if (!self->failed) {
        self->failed = true;
        snprintf(self->failure, sizeof self->failure, "writes refused: %s", why);
        fprintf(stderr, "kyu-broker: %s\n", self->failure);
    }
    while (self->inflight) {
        entry_t *e = self->inflight;
        self->inflight = e->next;
        fail_waiters(self, e, KYU_ERR_STORAGE, self->failure);
        entry_destroy(&e);
    }
    self->inflight_tail = NULL;
    self->n_inflight = 0;
    if (self->open) {
        fail_waiters(self, self->open, KYU_ERR_STORAGE, self->failure);
        entry_destroy(&self->open);
    }
}

static kyu_code_t replay_one(void *arg, uint64_t index, uint64_t term, int type,
                             const void *payload, size_t len, kyu_err_t *err)
{
    (void)term;
    kyu_replica_t *self = arg;
    self->last_index = index;
    if (type != KYU_ENTRY_NORMAL)
        return kyu_err_set(err, KYU_ERR_STORAGE, "log entry %llu has unknown type %d",
                           (unsigned long long)index, type);
    return kyu_sm_apply(self->sm, index, payload, len, NULL, 0, NULL, err);
}

kyu_replica_t *kyu_replica_new(kyu_store_t *store, kyu_sm_t *sm, kyu_log_t *log,
                               kyu_replica_done_fn done, void *done_arg, kyu_err_t *err)
{
    kyu_replica_t *self = calloc(1, sizeof *self);
    if (!self) {
        kyu_err_set(err, KYU_ERR_INTERNAL, "out of memory");
        return NULL;
    }
    self->sm = sm;
    self->log = log;
    self->done = done;
    self->done_arg = done_arg;
    uint64_t applied = kyu_sm_applied_index(sm), last = 0;
    self->last_index = applied;
    if (kyu_log_last_index(store, &last, err) ||
        kyu_log_replay(store, applied + 1, replay_one, self, err)) {
        kyu_replica_destroy(&self);
        return NULL;
    }
    if (self->last_index != (last > applied ? last : applied)) {
        kyu_err_set(err, KYU_ERR_STORAGE, "log ends at %llu but replay stopped at %llu",
                    (unsigned long long)last, (unsigned long long)self->last_index);
        kyu_replica_destroy(&self);
        return NULL;
    }
    self->last_now = kyu_sm_last_now(sm);
    self->compacted_before = 0;
    return self;
}

void kyu_replica_destroy(kyu_replica_t **self_p)
{
    kyu_replica_t *self = *self_p;
    if (!self)
        return;
    if (self->inflight || self->open)
        fail(self, "the broker is shutting down");
    free(self);
    *self_p = NULL;
}

uint64_t kyu_replica_now(kyu_replica_t *self)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t wall = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    if (wall > self->last_now)
        self->last_now = wall;
    return self->last_now;
}

const char *kyu_replica_failure(kyu_replica_t *self)
{
    return self->failed ? self->failure : NULL;
}

kyu_code_t kyu_replica_propose(kyu_replica_t *self, const kyu_command_t *cmd, void *waiter,
                               kyu_err_t *err)
{
    if (self->failed)
        return kyu_err_set(err, KYU_ERR_STORAGE, "%s", self->failure);
    if (self->pending >= KYU_REPLICA_PENDING_MAX)
        return kyu_err_set(err, KYU_ERR_BUSY, "%d requests are waiting for the disk; retry later",
                           KYU_REPLICA_PENDING_MAX);
    if (!self->open)
        self->open = entry_new();
    entry_t *e = self->open;
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 64;
        void **w = realloc(e->waiters, cap * sizeof *w);
        if (!w)
            return kyu_err_set(err, KYU_ERR_BUSY, "out of memory");
        e->waiters = w;
        e->cap = cap;
    }
    kyu_command_encode(cmd, &e->payload);
    e->waiters[e->n++] = waiter;
    self->pending++;
    if (e->payload.size >= KYU_ENTRY_BYTES_MAX)
        kyu_replica_flush(self);
    return KYU_OK;
}

void kyu_replica_flush(kyu_replica_t *self)
{
    if (!self->open || self->failed || self->n_inflight >= KYU_REPLICA_INFLIGHT)
        return;
    entry_t *e = self->open;
    self->open = NULL;
    e->index = self->last_index + 1;
    kyu_err_t err;
    if (kyu_log_append(self->log, e->index, 1, e->payload.data, e->payload.size, &err)) {
        self->open = e;
        fail(self, err.msg);
        return;
    }
    self->last_index = e->index;
    if (self->inflight_tail)
        self->inflight_tail->next = e;
    else
        self->inflight = e;
    self->inflight_tail = e;
    self->n_inflight++;
}

static void apply_entry(kyu_replica_t *self, entry_t *e)
{
    size_t n = 0;
    kyu_err_t err;
    kyu_result_t *results = calloc(e->n, sizeof *results);
    KYU_ASSERT(results);
    if (kyu_sm_apply(self->sm, e->index, e->payload.data, e->payload.size, results, e->n, &n,
                     &err) != KYU_OK) {
        free(results);
        /* The failed entry is no longer in flight: answer its waiters here. */
        fail_waiters(self, e, KYU_ERR_STORAGE, err.msg);
        fail(self, err.msg);
        return;
    }
    KYU_ASSERT(n == e->n);
    for (size_t i = 0; i < n; i++) {
        self->done(self->done_arg, e->waiters[i], &results[i]);
        kyu_result_clear(&results[i]);
    }
    free(results);
    self->pending -= e->n;
}

void kyu_replica_on_log_event(kyu_replica_t *self, const kyu_log_event_t *ev)
{
    if (ev->failed) {
        fail(self, ev->error);
        return;
    }
    /* One voter: durable is committed. Apply in order, answer, forget. */
    while (self->inflight && self->inflight->index <= ev->index && !self->failed) {
        entry_t *e = self->inflight;
        self->inflight = e->next;
        if (!self->inflight)
            self->inflight_tail = NULL;
        self->n_inflight--;
        apply_entry(self, e);
        entry_destroy(&e);
    }
    uint64_t applied = kyu_sm_applied_index(self->sm);
    if (applied >= self->compacted_before + 256) {
        /* Applied entries are in the state machine; a single node needs them no more. */
        kyu_log_compact(self->log, applied);
        self->compacted_before = applied;
    }
    kyu_replica_flush(self);
}
