#include "log.h"

#include <stdlib.h>
#include <string.h>

#include "flog.h"

#define LOG_HDR 9

struct kyu_log {
    kyu_store_t *store; /* startup reads go to it directly */
    zactor_t *actor;
    uint64_t token; /* numbers the writes handed to the thread */
};

typedef struct {
    kyu_store_t *store;
} storage_args_t;

static void report(zsock_t *pipe, bool ok, uint64_t token, const char *error)
{
    uint8_t b[8];
    kyu_put_be64(b, token);
    zsock_send(pipe, "sbs", ok ? "DURABLE" : "FAILED", b, (size_t)8, error ? error : "");
}

/* Free space the storage thread waits for before it writes a failed batch again: room for a
 * new segment (KYU_FLOG_SEGMENT_BYTES) and then some. */
#define RETRY_FREE_MIN (32ull << 20)
#define RETRY_MS 1000      /* between two looks at the free space after a failed write */
#define RETRY_MAX_MS 16000 /* attempts that fail (an I/O error that stays) back off to this */

/* The storage thread's state. Messages (WRITE, INSTALL, COMPACT; their command first) wait in
 * pending until what they ask is durable; the records of a write point into their frames (no
 * copy: the batch is written from the messages themselves). */
typedef struct {
    storage_args_t *args;
    kyu_flog_t *flog;
    zsock_t *pipe;
    zlist_t *pending;
    kyu_flog_rec_t *recs;
    size_t nrec, caprec;
    bool failed; /* a write failed: pending is written again by retry, nothing after it */
    int64_t retry_at, backoff_ms;
} storage_t;

static void add_rec(storage_t *st, kyu_flog_rec_t r)
{
    if (st->nrec == st->caprec) {
        st->caprec = st->caprec ? 2 * st->caprec : 256;
        st->recs = realloc(st->recs, st->caprec * sizeof *st->recs);
        KYU_ASSERT(st->recs);
    }
    st->recs[st->nrec++] = r;
}

/* A WRITE message (["WRITE", token, hard state (0 or 24 bytes), truncate (1 byte), entries...],
 * each entry frame index(8) term(8) type(1) payload) into the records of the round; a
 * truncation drops the round's own entries from its index on and, when some may be on disk,
 * the log's (kyu_flog_truncate). */
static kyu_code_t add_write(storage_t *st, zmsg_t *m, uint64_t *token, kyu_err_t *err)
{
    zframe_t *ft = zmsg_next(m), *fh = zmsg_next(m), *fx = zmsg_next(m);
    KYU_ASSERT(ft && fh && fx && zframe_size(ft) == 8 && zframe_size(fx) == 1 &&
               (zframe_size(fh) == 0 || zframe_size(fh) == 24));
    *token = kyu_get_be64(zframe_data(ft));
    bool first = zframe_data(fx)[0] != 0;
    for (zframe_t *f = zmsg_next(m); f; f = zmsg_next(m)) {
        KYU_ASSERT(zframe_size(f) >= 8 + LOG_HDR);
        const uint8_t *p = zframe_data(f);
        uint64_t index = kyu_get_be64(p);
        if (first) {
            /* Raft: a new entry at index i replaces every stored entry from i on. */
            size_t keep = 0;
            for (size_t i = 0; i < st->nrec; i++)
                if (st->recs[i].kind != KYU_FLOG_ENTRY || st->recs[i].index < index)
                    st->recs[keep++] = st->recs[i];
            st->nrec = keep;
            if (kyu_flog_truncate(st->flog, index, err) != KYU_OK)
                return KYU_ERR_STORAGE;
            first = false;
        }
        add_rec(st, (kyu_flog_rec_t){.kind = KYU_FLOG_ENTRY,
                                     .index = index,
                                     .term = kyu_get_be64(p + 8),
                                     .type = p[16],
                                     .payload = p + 8 + LOG_HDR,
                                     .len = zframe_size(f) - 8 - LOG_HDR});
    }
    if (zframe_size(fh) == 24) {
        const uint8_t *h = zframe_data(fh);
        add_rec(st, (kyu_flog_rec_t){
                        .kind = KYU_FLOG_HS,
                        .hs = {true, kyu_get_be64(h), kyu_get_be64(h + 8), kyu_get_be64(h + 16)}});
    }
    return KYU_OK;
}

static void decode_snap(const uint8_t *b, size_t len, kyu_flog_snap_t *snap)
{
    memset(snap, 0, sizeof *snap);
    snap->found = true;
    snap->index = kyu_get_be64(b);
    snap->term = kyu_get_be64(b + 8);
    snap->conf_len = len - 16 < sizeof snap->conf ? len - 16 : sizeof snap->conf;
    memcpy(snap->conf, b + 16, snap->conf_len);
}

/* Pops the messages up to (not including) stop: they are durable. */
static void pop_until(storage_t *st, zmsg_t *stop)
{
    for (zmsg_t *m = zlist_first(st->pending); m && m != stop; m = zlist_first(st->pending)) {
        zlist_remove(st->pending, m);
        zmsg_destroy(&m);
    }
}

/* Writes the round's records (one pwritev and one fdatasync) and reports the messages they
 * cover durable. */
static kyu_code_t flush(storage_t *st, zmsg_t *upto, bool have, uint64_t token, kyu_err_t *err)
{
    if (st->nrec > 0 && kyu_flog_write(st->flog, st->recs, st->nrec, err) != KYU_OK)
        return KYU_ERR_STORAGE;
    st->nrec = 0;
    pop_until(st, upto);
    if (have)
        report(st->pipe, true, token, NULL);
    return KYU_OK;
}

/* Writes everything pending, in order: writes in one round, an install or a compaction after
 * the writes before it. On failure the messages not yet durable stay pending. */
static kyu_code_t drain(storage_t *st, kyu_err_t *err)
{
    st->nrec = 0;
    uint64_t token = 0;
    bool have = false; /* messages with a token since the last report */
    zmsg_t *m = zlist_first(st->pending);
    while (m) {
        zframe_t *cmd = zmsg_first(m);
        if (zframe_streq(cmd, "WRITE")) {
            if (add_write(st, m, &token, err) != KYU_OK)
                return KYU_ERR_STORAGE;
            have = true;
            m = zlist_next(st->pending);
            continue;
        }
        if (flush(st, m, have, token, err) != KYU_OK)
            return KYU_ERR_STORAGE;
        have = false;
        if (zframe_streq(cmd, "INSTALL")) {
            /* ["INSTALL", token, snapshot record, hard state (0 or 24 bytes)] */
            zframe_t *ft = zmsg_next(m), *fs = zmsg_next(m), *fh = zmsg_next(m);
            KYU_ASSERT(ft && fs && fh && zframe_size(ft) == 8 && zframe_size(fs) >= 16 &&
                       (zframe_size(fh) == 0 || zframe_size(fh) == 24));
            kyu_flog_snap_t snap;
            decode_snap(zframe_data(fs), zframe_size(fs), &snap);
            const uint8_t *h = zframe_data(fh);
            kyu_flog_hs_t hs = {true, 0, 0, 0};
            if (zframe_size(fh) == 24)
                hs = (kyu_flog_hs_t){true, kyu_get_be64(h), kyu_get_be64(h + 8),
                                     kyu_get_be64(h + 16)};
            if (kyu_flog_install(st->flog, &snap, zframe_size(fh) ? &hs : NULL, err) != KYU_OK)
                return KYU_ERR_STORAGE;
            token = kyu_get_be64(zframe_data(ft));
            have = true;
        } else {
            /* ["COMPACT", snapshot descriptor]: the log starts after it if the state's tables
             * hold it (the replica asks for no more; checked here, where entries go). An
             * optimisation: not retried when it fails. */
            zframe_t *f = zmsg_next(m);
            kyu_err_t serr;
            uint64_t durable = 0;
            if (f && zframe_size(f) >= 16 &&
                kyu_store_state_durable(st->args->store, &durable, &serr) == KYU_OK) {
                kyu_flog_snap_t snap;
                decode_snap(zframe_data(f), zframe_size(f), &snap);
                if (snap.index <= durable)
                    kyu_flog_compact(st->flog, &snap, &serr);
            }
        }
        m = zlist_next(st->pending);
        pop_until(st, m);
        if (have)
            report(st->pipe, true, token, NULL);
        have = false;
    }
    return flush(st, NULL, have, token, err);
}

/* A round: everything pending written; a failure is reported once (writes are then refused)
 * and the batch kept, written again (at the same offsets) by retry. Nothing is reported
 * durable that was not written by a write and fdatasync that succeeded, after a failure too:
 * a failed fsync's pages may be dropped (PostgreSQL's "fsyncgate"), so they are written again,
 * never just synced again. */
static void write_round(storage_t *st)
{
    kyu_err_t err;
    if (drain(st, &err) == KYU_OK)
        return;
    st->failed = true;
    st->backoff_ms = RETRY_MS;
    st->retry_at = zclock_mono() + RETRY_MS;
    report(st->pipe, false, 0, err.msg);
}

/* After a failed write: once there is room (looked at every second), writes what is pending
 * again. */
static void retry(storage_t *st)
{
    st->retry_at = zclock_mono() + RETRY_MS;
    if (kyu_store_free_bytes(kyu_store_dir(st->args->store)) < RETRY_FREE_MIN)
        return;
    /* An attempt: if it fails the next one waits longer (up to RETRY_MAX_MS). */
    st->retry_at = zclock_mono() + st->backoff_ms;
    st->backoff_ms = st->backoff_ms * 2 < RETRY_MAX_MS ? st->backoff_ms * 2 : RETRY_MAX_MS;
    kyu_err_t err;
    if (drain(st, &err) == KYU_OK)
        st->failed = false;
}

/* The storage thread: Raft writes with fsync, many per fsync. */
static void storage_actor(zsock_t *pipe, void *arg)
{
    storage_t st = {.args = arg, .pipe = pipe};
    st.flog = kyu_store_flog(st.args->store);
    st.pending = zlist_new();
    KYU_ASSERT(st.pending);
    zpoller_t *poller = zpoller_new(pipe, NULL);
    KYU_ASSERT(poller);
    /* The tail segment ready (zero-filled) before the first write: that write's fdatasync is
     * then data-only too. A failure here is met again by the first write. */
    kyu_err_t perr;
    kyu_flog_prepare(st.flog, &perr);
    zsock_signal(pipe, 0);
    bool stop = false;
    while (!stop) {
        if (st.failed) {
            int64_t wait = st.retry_at - zclock_mono();
            if (!zpoller_wait(poller, wait > 0 ? (int)wait : 0)) {
                if (zpoller_terminated(poller))
                    break;
                if (zclock_mono() >= st.retry_at)
                    retry(&st);
                continue;
            }
        }
        zmsg_t *m = zmsg_recv(pipe);
        if (!m)
            break;
        /* Take every message already waiting: they share this write and its fsync. While a
         * failed batch waits to be written again, new writes join it (in order). */
        while (m) {
            zframe_t *cmd = zmsg_first(m);
            if (cmd && (zframe_streq(cmd, "WRITE") || zframe_streq(cmd, "INSTALL") ||
                        zframe_streq(cmd, "COMPACT"))) {
                KYU_ASSERT(zlist_append(st.pending, m) == 0);
            } else {
                zmsg_destroy(&m);
                stop = true; /* $TERM */
            }
            if (stop || !(zsock_events(pipe) & ZMQ_POLLIN))
                break;
            m = zmsg_recv(pipe);
        }
        if (!st.failed && zlist_size(st.pending) > 0)
            write_round(&st);
    }
    zpoller_destroy(&poller);
    for (zmsg_t *m = zlist_pop(st.pending); m; m = zlist_pop(st.pending))
        zmsg_destroy(&m);
    zlist_destroy(&st.pending);
    free(st.recs);
    free(st.args);
}

kyu_log_t *kyu_log_new(kyu_store_t *store, kyu_err_t *err)
{
    kyu_log_t *self = calloc(1, sizeof *self);
    storage_args_t *args = calloc(1, sizeof *args);
    if (!self || !args) {
        free(self);
        free(args);
        kyu_err_set(err, KYU_ERR_INTERNAL, "out of memory");
        return NULL;
    }
    args->store = store;
    self->store = store;
    self->actor = zactor_new(storage_actor, args);
    if (!self->actor) {
        free(args);
        free(self);
        kyu_err_set(err, KYU_ERR_INTERNAL, "cannot start the storage thread");
        return NULL;
    }
    /* The replica hands over one Ready's write at a time and waits for it to be durable
     * before the next (plus compaction and install requests), far below these marks, so a
     * send never blocks the loop or drops. */
    zsock_set_sndhwm(zactor_sock(self->actor), 1000);
    zsock_set_rcvhwm(zactor_sock(self->actor), 1000);
    return self;
}

void kyu_log_destroy(kyu_log_t **self_p)
{
    kyu_log_t *self = *self_p;
    if (!self)
        return;
    zactor_destroy(&self->actor);
    free(self);
    *self_p = NULL;
}

zsock_t *kyu_log_sock(kyu_log_t *self)
{
    return zactor_sock(self->actor);
}

kyu_code_t kyu_log_write(kyu_log_t *self, const kyu_log_hard_state_t *hs,
                         const kyu_log_entry_t *entries, size_t n, bool truncate, uint64_t *token,
                         kyu_err_t *err)
{
    uint8_t bt[8], bh[24], bx = truncate;
    kyu_put_be64(bt, self->token + 1);
    if (hs) {
        kyu_put_be64(bh, hs->term);
        kyu_put_be64(bh + 8, hs->vote);
        kyu_put_be64(bh + 16, hs->commit);
    }
    zmsg_t *m = zmsg_new();
    bool ok = m && !zmsg_addstr(m, "WRITE") && !zmsg_addmem(m, bt, 8) &&
              !zmsg_addmem(m, bh, hs ? 24 : 0) && !zmsg_addmem(m, &bx, 1);
    for (size_t i = 0; ok && i < n; i++) {
        zframe_t *f = zframe_new(NULL, 8 + LOG_HDR + entries[i].len);
        ok = f != NULL;
        if (ok) {
            uint8_t *p = zframe_data(f);
            kyu_put_be64(p, entries[i].index);
            kyu_put_be64(p + 8, entries[i].term);
            p[16] = (uint8_t)entries[i].type;
            if (entries[i].len)
                memcpy(p + 8 + LOG_HDR, entries[i].payload, entries[i].len);
            ok = zmsg_append(m, &f) == 0;
        }
    }
    if (!ok || zmsg_send(&m, zactor_sock(self->actor))) {
        zmsg_destroy(&m);
        return kyu_err_set(err, KYU_ERR_INTERNAL, "cannot hand a write to the storage thread");
    }
    *token = ++self->token;
    return KYU_OK;
}

kyu_code_t kyu_log_write_now(kyu_log_t *self, const kyu_log_hard_state_t *hs,
                             const kyu_log_entry_t *entries, size_t n, kyu_err_t *err)
{
    kyu_flog_rec_t stack[17], *recs = stack;
    if (n + 1 > sizeof stack / sizeof stack[0]) {
        recs = malloc((n + 1) * sizeof *recs);
        if (!recs)
            return kyu_err_set(err, KYU_ERR_BUSY, "out of memory");
    }
    /* The records point at the entries' payloads (no copy); the hard state after the
     * entries, as a round of the storage thread has it (add_write). */
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        recs[k++] = (kyu_flog_rec_t){.kind = KYU_FLOG_ENTRY,
                                     .index = entries[i].index,
                                     .term = entries[i].term,
                                     .type = entries[i].type,
                                     .payload = entries[i].payload,
                                     .len = entries[i].len};
    if (hs)
        recs[k++] =
            (kyu_flog_rec_t){.kind = KYU_FLOG_HS, .hs = {true, hs->term, hs->vote, hs->commit}};
    kyu_code_t rc = kyu_flog_write_in_tail(kyu_store_flog(self->store), recs, k, err);
    if (recs != stack)
        free(recs);
    return rc;
}

kyu_code_t kyu_log_append(kyu_log_t *self, uint64_t index, uint64_t term, const void *payload,
                          size_t len, kyu_err_t *err)
{
    kyu_log_entry_t e = {index, term, KYU_ENTRY_NORMAL, payload, len};
    uint64_t token;
    return kyu_log_write(self, NULL, &e, 1, false, &token, err);
}

static size_t snap_record(const kyu_log_snapshot_t *snap, uint8_t *b)
{
    kyu_put_be64(b, snap->index);
    kyu_put_be64(b + 8, snap->term);
    memcpy(b + 16, snap->conf, snap->conf_len);
    return 16 + snap->conf_len;
}

static size_t hs_record(const kyu_log_hard_state_t *hs, uint8_t b[24])
{
    if (!hs)
        return 0;
    kyu_put_be64(b, hs->term);
    kyu_put_be64(b + 8, hs->vote);
    kyu_put_be64(b + 16, hs->commit);
    return 24;
}

kyu_code_t kyu_log_install(kyu_log_t *self, const kyu_log_snapshot_t *snap,
                           const kyu_log_hard_state_t *hs, uint64_t *token, kyu_err_t *err)
{
    uint8_t bt[8], bs[16 + sizeof snap->conf], bh[24];
    kyu_put_be64(bt, self->token + 1);
    size_t ls = snap_record(snap, bs), lh = hs_record(hs, bh);
    if (zsock_send(zactor_sock(self->actor), "sbbb", "INSTALL", bt, (size_t)8, bs, ls, bh, lh))
        return kyu_err_set(err, KYU_ERR_INTERNAL, "cannot hand a write to the storage thread");
    *token = ++self->token;
    return KYU_OK;
}

static kyu_flog_snap_t to_flog_snap(const kyu_log_snapshot_t *snap)
{
    kyu_flog_snap_t s = {.found = true, .index = snap->index, .term = snap->term};
    s.conf_len = snap->conf_len < sizeof s.conf ? snap->conf_len : sizeof s.conf;
    memcpy(s.conf, snap->conf, s.conf_len);
    return s;
}

kyu_code_t kyu_log_reset(kyu_store_t *store, const kyu_log_snapshot_t *snap,
                         const kyu_log_hard_state_t *hs, kyu_err_t *err)
{
    kyu_flog_snap_t s = to_flog_snap(snap);
    kyu_flog_hs_t h = {true, hs ? hs->term : 0, hs ? hs->vote : 0, hs ? hs->commit : 0};
    return kyu_flog_install(kyu_store_flog(store), &s, hs ? &h : NULL, err);
}

void kyu_log_compact(kyu_log_t *self, const kyu_log_snapshot_t *snap)
{
    uint8_t b[16 + sizeof snap->conf];
    kyu_put_be64(b, snap->index);
    kyu_put_be64(b + 8, snap->term);
    memcpy(b + 16, snap->conf, snap->conf_len);
    zsock_send(zactor_sock(self->actor), "sb", "COMPACT", b, 16 + snap->conf_len);
}

kyu_code_t kyu_log_recv(kyu_log_t *self, kyu_log_event_t *ev, kyu_err_t *err)
{
    char *kind = NULL, *text = NULL;
    zframe_t *idx = NULL;
    memset(ev, 0, sizeof *ev);
    if (zsock_recv(zactor_sock(self->actor), "sfs", &kind, &idx, &text) != 0 || !kind || !idx ||
        zframe_size(idx) != 8) {
        free(kind);
        free(text);
        zframe_destroy(&idx);
        return kyu_err_set(err, KYU_ERR_INTERNAL, "bad report from the storage thread");
    }
    ev->failed = !streq(kind, "DURABLE");
    ev->index = kyu_get_be64(zframe_data(idx));
    snprintf(ev->error, sizeof ev->error, "%s", text ? text : "");
    free(kind);
    free(text);
    zframe_destroy(&idx);
    return KYU_OK;
}

kyu_code_t kyu_log_last_index(kyu_store_t *store, uint64_t *index, kyu_err_t *err)
{
    uint64_t first;
    kyu_flog_range(kyu_store_flog(store), &first, index);
    return kyu_flog_check(kyu_store_flog(store), err);
}

kyu_code_t kyu_log_first_index(kyu_store_t *store, uint64_t *index, kyu_err_t *err)
{
    uint64_t last;
    kyu_flog_range(kyu_store_flog(store), index, &last);
    return kyu_flog_check(kyu_store_flog(store), err);
}

kyu_code_t kyu_log_replay(kyu_store_t *store, uint64_t from, kyu_log_visit_fn visit, void *arg,
                          kyu_err_t *err)
{
    return kyu_flog_replay(kyu_store_flog(store), from, visit, arg, err);
}

kyu_code_t kyu_log_load_state(kyu_store_t *store, kyu_log_hard_state_t *hs,
                              kyu_log_snapshot_t *snap, kyu_err_t *err)
{
    memset(hs, 0, sizeof *hs);
    memset(snap, 0, sizeof *snap);
    kyu_flog_hs_t h;
    kyu_flog_snap_t s;
    kyu_flog_state(kyu_store_flog(store), &h, &s);
    *hs = (kyu_log_hard_state_t){h.found, h.term, h.vote, h.commit};
    snap->found = s.found;
    snap->index = s.index;
    snap->term = s.term;
    snap->conf_len = s.conf_len < sizeof snap->conf ? s.conf_len : sizeof snap->conf;
    memcpy(snap->conf, s.conf, snap->conf_len);
    return kyu_flog_check(kyu_store_flog(store), err);
}

/* ---- the ops the replica reaches this log through (log.h) ---- */

static kyu_code_t ops_load_state(void *log, kyu_log_hard_state_t *hs, kyu_log_snapshot_t *snap,
                                 kyu_err_t *err)
{
    return kyu_log_load_state(((kyu_log_t *)log)->store, hs, snap, err);
}

static kyu_code_t ops_first_index(void *log, uint64_t *index, kyu_err_t *err)
{
    return kyu_log_first_index(((kyu_log_t *)log)->store, index, err);
}

static kyu_code_t ops_last_index(void *log, uint64_t *index, kyu_err_t *err)
{
    return kyu_log_last_index(((kyu_log_t *)log)->store, index, err);
}

static kyu_code_t ops_replay(void *log, uint64_t from, kyu_log_visit_fn visit, void *arg,
                             kyu_err_t *err)
{
    return kyu_log_replay(((kyu_log_t *)log)->store, from, visit, arg, err);
}

static kyu_code_t ops_reset(void *log, const kyu_log_snapshot_t *snap,
                            const kyu_log_hard_state_t *hs, kyu_err_t *err)
{
    return kyu_log_reset(((kyu_log_t *)log)->store, snap, hs, err);
}

static kyu_code_t ops_write(void *log, const kyu_log_hard_state_t *hs,
                            const kyu_log_entry_t *entries, size_t n, bool truncate,
                            uint64_t *token, kyu_err_t *err)
{
    return kyu_log_write(log, hs, entries, n, truncate, token, err);
}

static kyu_code_t ops_write_now(void *log, const kyu_log_hard_state_t *hs,
                                const kyu_log_entry_t *entries, size_t n, kyu_err_t *err)
{
    return kyu_log_write_now(log, hs, entries, n, err);
}

static kyu_code_t ops_install(void *log, const kyu_log_snapshot_t *snap,
                              const kyu_log_hard_state_t *hs, uint64_t *token, kyu_err_t *err)
{
    return kyu_log_install(log, snap, hs, token, err);
}

static void ops_compact(void *log, const kyu_log_snapshot_t *snap)
{
    kyu_log_compact(log, snap);
}

const kyu_log_ops_t kyu_log_ops = {
    .load_state = ops_load_state,
    .first_index = ops_first_index,
    .last_index = ops_last_index,
    .replay = ops_replay,
    .reset = ops_reset,
    .write = ops_write,
    .write_now = ops_write_now,
    .install = ops_install,
    .compact = ops_compact,
};
