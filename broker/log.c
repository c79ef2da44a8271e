#include "log.h"

#include <stdlib.h>
#include <string.h>

#define LOG_KEY 12
#define LOG_HDR 9
#define STATE_KEY 9

struct kyu_log {
    kyu_store_t *store; /* startup reads go to it directly */
    zactor_t *actor;
    uint64_t token; /* numbers the writes handed to the thread */
};

typedef struct {
    kyu_store_t *store;
} storage_args_t;

static void log_key(uint8_t k[LOG_KEY], uint64_t index)
{
    kyu_put_be32(k, KYU_GROUP_ID);
    kyu_put_be64(k + 4, index);
}

static void report(zsock_t *pipe, bool ok, uint64_t token, const char *error)
{
    uint8_t b[8];
    kyu_put_be64(b, token);
    zsock_send(pipe, "sbs", ok ? "DURABLE" : "FAILED", b, (size_t)8, error ? error : "");
}

static void state_key(uint8_t k[STATE_KEY], const char *what)
{
    k[0] = 0xff;
    memcpy(k + 1, what, 4);
    kyu_put_be32(k + 5, KYU_GROUP_ID);
}

/* Adds one WRITE message (["WRITE", token, hard state (0 or 24 bytes), truncate (1 byte),
 * entries...], each entry frame index(8) term(8) type(1) payload) to the batch. */
static bool add_write(rocksdb_writebatch_t *wb, rocksdb_column_family_handle_t *cf, zmsg_t *m,
                      uint64_t *token)
{
    zframe_t *ft = zmsg_next(m), *fh = zmsg_next(m), *fx = zmsg_next(m);
    if (!ft || !fh || !fx || zframe_size(ft) != 8 || zframe_size(fx) != 1 ||
        (zframe_size(fh) != 0 && zframe_size(fh) != 24))
        return false;
    *token = kyu_get_be64(zframe_data(ft));
    bool first = zframe_data(fx)[0] != 0;
    for (zframe_t *f = zmsg_next(m); f; f = zmsg_next(m)) {
        if (zframe_size(f) < 8 + LOG_HDR)
            return false;
        const uint8_t *p = zframe_data(f);
        uint8_t k[LOG_KEY];
        log_key(k, kyu_get_be64(p));
        if (first) {
            /* Raft: a new entry at index i replaces every stored entry from i on. */
            uint8_t hi[LOG_KEY];
            log_key(hi, UINT64_MAX);
            rocksdb_writebatch_delete_range_cf(wb, cf, (char *)k, LOG_KEY, (char *)hi, LOG_KEY);
            first = false;
        }
        rocksdb_writebatch_put_cf(wb, cf, (char *)k, LOG_KEY, (const char *)p + 8,
                                  zframe_size(f) - 8);
    }
    if (zframe_size(fh) == 24) {
        uint8_t k[STATE_KEY];
        state_key(k, "hard");
        rocksdb_writebatch_put_cf(wb, cf, (char *)k, STATE_KEY, (const char *)zframe_data(fh), 24);
    }
    return true;
}

/* The writes of an install: every entry goes, then the snapshot record (index(8) term(8)
 * conf) and the hard state (24 bytes, or none). */
static void add_install_frames(rocksdb_writebatch_t *wb, rocksdb_column_family_handle_t *cf,
                               const uint8_t *snap, size_t snap_len, const uint8_t *hs,
                               size_t hs_len)
{
    uint8_t lo[LOG_KEY], hi[LOG_KEY], sk[STATE_KEY], hk[STATE_KEY];
    log_key(lo, 0);
    log_key(hi, UINT64_MAX);
    rocksdb_writebatch_delete_range_cf(wb, cf, (char *)lo, LOG_KEY, (char *)hi, LOG_KEY);
    state_key(sk, "snap");
    rocksdb_writebatch_put_cf(wb, cf, (char *)sk, STATE_KEY, (const char *)snap, snap_len);
    if (hs_len == 24) {
        state_key(hk, "hard");
        rocksdb_writebatch_put_cf(wb, cf, (char *)hk, STATE_KEY, (const char *)hs, 24);
    }
}

/* ["INSTALL", token, snapshot record, hard state (0 or 24 bytes)]. */
static bool add_install(rocksdb_writebatch_t *wb, rocksdb_column_family_handle_t *cf, zmsg_t *m,
                        uint64_t *token)
{
    zframe_t *ft = zmsg_next(m), *fs = zmsg_next(m), *fh = zmsg_next(m);
    if (!ft || !fs || !fh || zframe_size(ft) != 8 || zframe_size(fs) < 16 ||
        (zframe_size(fh) != 0 && zframe_size(fh) != 24))
        return false;
    *token = kyu_get_be64(zframe_data(ft));
    add_install_frames(wb, cf, zframe_data(fs), zframe_size(fs), zframe_data(fh), zframe_size(fh));
    return true;
}

/* ["COMPACT", snapshot descriptor]: records where the log now starts and drops the entries
 * up to it, once the state they produced is durable too. */
static void compact(storage_args_t *args, rocksdb_t *db, rocksdb_column_family_handle_t *cf,
                    rocksdb_writeoptions_t *nosync, zmsg_t *m)
{
    zframe_t *f = zmsg_first(m);
    kyu_err_t serr;
    if (!f || zframe_size(f) < 16 || kyu_store_sync_state(args->store, &serr) != KYU_OK)
        return; /* compaction is an optimisation: retried next time */
    uint8_t lo[LOG_KEY], hi[LOG_KEY], sk[STATE_KEY];
    log_key(lo, 0);
    log_key(hi, kyu_get_be64(zframe_data(f)) + 1);
    state_key(sk, "snap");
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    rocksdb_writebatch_put_cf(wb, cf, (char *)sk, STATE_KEY, (const char *)zframe_data(f),
                              zframe_size(f));
    rocksdb_writebatch_delete_range_cf(wb, cf, (char *)lo, LOG_KEY, (char *)hi, LOG_KEY);
    char *rerr = NULL;
    rocksdb_write(db, nosync, wb, &rerr); /* made durable by the next synced write */
    free(rerr);
    rocksdb_writebatch_destroy(wb);
}

/* Free space the storage thread waits for before it reopens the log database after a
 * failed write: reopening writes RocksDB's LOG header, a new WAL and MANIFEST, and flushes
 * what the old WAL held (up to a memtable, 16 MiB) into a table. */
#define REOPEN_FREE_MIN (32ull << 20)
#define RETRY_MS 1000      /* between two looks at the free space after a failed write */
#define RETRY_MAX_MS 16000 /* attempts that fail (an I/O error that stays) back off to this */

/* The storage thread's state: the log database (reopened after a failure) and the batch of
 * the round being written, kept when its write failed. */
typedef struct {
    storage_args_t *args;
    zsock_t *pipe;
    rocksdb_t *db; /* NULL while the log database is closed (a reopen failed) */
    rocksdb_column_family_handle_t *cf;
    rocksdb_writeoptions_t *sync, *nosync;
    rocksdb_writebatch_t *wb;
    zlist_t *deferred; /* WRITE and INSTALL messages that came while the database was closed */
    bool have;         /* wb holds writes (their last token: token) */
    bool failed;       /* wb's write failed: it is written again, nothing after it meanwhile */
    uint64_t token;    /* the last write token in wb */
    int64_t retry_at, backoff_ms;
} storage_t;

/* Adds a WRITE or INSTALL message (its command popped) to the round's batch; kept for later
 * while the log database is closed (a reopen after a failure did not succeed yet). */
static void add_message(storage_t *st, const char *cmd, zmsg_t **m_p)
{
    if (!st->cf) {
        zmsg_pushstr(*m_p, cmd);
        KYU_ASSERT(zlist_append(st->deferred, *m_p) == 0);
        *m_p = NULL;
        return;
    }
    bool ok = streq(cmd, "WRITE") ? add_write(st->wb, st->cf, *m_p, &st->token)
                                  : add_install(st->wb, st->cf, *m_p, &st->token);
    KYU_ASSERT(ok);
    st->have = true;
}

/* Writes wb with sync and reports it: durable, or failed (once: the batch is kept and
 * written again by retry). */
static void write_round(storage_t *st)
{
    char *rerr = NULL;
    rocksdb_write(st->db, st->sync, st->wb, &rerr);
    if (rerr) {
        /* Nothing in wb may be reported durable, nor anything after it: after a failed
         * write or fsync what reached the disk is unknown (PostgreSQL's "fsyncgate"), and
         * RocksDB refuses every later write. The batch is kept and written again, whole,
         * into a reopened database (retry). */
        st->failed = true;
        st->backoff_ms = RETRY_MS;
        st->retry_at = zclock_mono() + RETRY_MS;
        report(st->pipe, false, st->token, rerr);
        free(rerr);
        return;
    }
    report(st->pipe, true, st->token, NULL);
    rocksdb_writebatch_clear(st->wb);
    st->have = false;
}

/* After a failed write: once there is room (looked at every second), reopens the log database
 * (RocksDB recovers its WAL up to the last complete record: everything reported durable, perhaps
 * part or all of the failed batch) and writes the failed batch again. Its puts and range deletions
 * give the same log whether or not part of it had reached the disk. */
static void retry(storage_t *st)
{
    st->retry_at = zclock_mono() + RETRY_MS;
    const char *dir = kyu_store_dir(st->args->store);
    if (kyu_store_free_bytes(dir) < REOPEN_FREE_MIN)
        return;
    /* An attempt: if it fails the next one waits longer (up to RETRY_MAX_MS). */
    st->retry_at = zclock_mono() + st->backoff_ms;
    st->backoff_ms = st->backoff_ms * 2 < RETRY_MAX_MS ? st->backoff_ms * 2 : RETRY_MAX_MS;
    kyu_err_t err;
    st->db = NULL;
    st->cf = NULL;
    if (kyu_store_reopen_log(st->args->store, &err) != KYU_OK)
        return;
    st->db = kyu_store_db(st->args->store, KYU_CF_LOG);
    st->cf = kyu_store_cf(st->args->store, KYU_CF_LOG);
    for (zmsg_t *m = zlist_pop(st->deferred); m; m = zlist_pop(st->deferred)) {
        char *cmd = zmsg_popstr(m);
        add_message(st, cmd, &m);
        free(cmd);
        zmsg_destroy(&m);
    }
    char *rerr = NULL;
    rocksdb_write(st->db, st->sync, st->wb, &rerr);
    if (rerr) {
        free(rerr);
        return;
    }
    st->failed = false;
    report(st->pipe, true, st->token, NULL);
    rocksdb_writebatch_clear(st->wb);
    st->have = false;
}

/* The storage thread: Raft writes with fsync, many per fsync. */
static void storage_actor(zsock_t *pipe, void *arg)
{
    storage_t st = {.args = arg, .pipe = pipe};
    st.db = kyu_store_db(st.args->store, KYU_CF_LOG);
    st.cf = kyu_store_cf(st.args->store, KYU_CF_LOG);
    st.sync = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(st.sync, 1);
    st.nosync = rocksdb_writeoptions_create();
    st.wb = rocksdb_writebatch_create();
    st.deferred = zlist_new();
    KYU_ASSERT(st.deferred);
    zpoller_t *poller = zpoller_new(pipe, NULL);
    KYU_ASSERT(poller);
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
            char *cmd = zmsg_popstr(m);
            if (cmd && (streq(cmd, "WRITE") || streq(cmd, "INSTALL"))) {
                add_message(&st, cmd, &m);
            } else if (cmd && streq(cmd, "COMPACT")) {
                /* Earlier writes of this round go first: the range must not cover them.
                 * Dropped while writes fail (compaction is an optimisation). */
                if (st.have && !st.failed)
                    write_round(&st);
                if (!st.failed)
                    compact(st.args, st.db, st.cf, st.nosync, m);
            } else {
                stop = true; /* $TERM */
            }
            free(cmd);
            zmsg_destroy(&m);
            if (stop || !(zsock_events(pipe) & ZMQ_POLLIN))
                break;
            m = zmsg_recv(pipe);
        }
        if (st.have && !st.failed)
            write_round(&st);
    }
    zpoller_destroy(&poller);
    for (zmsg_t *m = zlist_pop(st.deferred); m; m = zlist_pop(st.deferred))
        zmsg_destroy(&m);
    zlist_destroy(&st.deferred);
    rocksdb_writebatch_destroy(st.wb);
    rocksdb_writeoptions_destroy(st.sync);
    rocksdb_writeoptions_destroy(st.nosync);
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

kyu_code_t kyu_log_reset(kyu_store_t *store, const kyu_log_snapshot_t *snap,
                         const kyu_log_hard_state_t *hs, kyu_err_t *err)
{
    uint8_t bs[16 + sizeof snap->conf], bh[24];
    size_t ls = snap_record(snap, bs), lh = hs_record(hs, bh);
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    add_install_frames(wb, kyu_store_cf(store, KYU_CF_LOG), bs, ls, bh, lh);
    rocksdb_writeoptions_t *w = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(w, 1);
    char *rerr = NULL;
    rocksdb_write(kyu_store_db(store, KYU_CF_LOG), w, wb, &rerr);
    rocksdb_writeoptions_destroy(w);
    rocksdb_writebatch_destroy(wb);
    if (rerr) {
        kyu_err_set(err, KYU_ERR_STORAGE, "resetting the log: %s", rerr);
        free(rerr);
        return KYU_ERR_STORAGE;
    }
    return KYU_OK;
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

/* The index of the group's first (or last) stored entry; 0 when the log is empty. */
static kyu_code_t log_end_index(kyu_store_t *store, bool last, uint64_t *index, kyu_err_t *err)
{
    uint8_t key[LOG_KEY];
    log_key(key, last ? UINT64_MAX : 0);
    rocksdb_iterator_t *it =
        rocksdb_create_iterator_cf(kyu_store_db(store, KYU_CF_LOG), kyu_store_readopts(store),
                                   kyu_store_cf(store, KYU_CF_LOG));
    if (last)
        rocksdb_iter_seek_for_prev(it, (char *)key, LOG_KEY);
    else
        rocksdb_iter_seek(it, (char *)key, LOG_KEY);
    *index = 0;
    if (rocksdb_iter_valid(it)) {
        size_t klen = 0;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &klen);
        if (klen == LOG_KEY && kyu_get_be32(k) == KYU_GROUP_ID)
            *index = kyu_get_be64(k + 4);
    }
    char *rerr = NULL;
    rocksdb_iter_get_error(it, &rerr);
    rocksdb_iter_destroy(it);
    if (rerr) {
        kyu_err_set(err, KYU_ERR_STORAGE, "reading the log: %s", rerr);
        free(rerr);
        return KYU_ERR_STORAGE;
    }
    return KYU_OK;
}

kyu_code_t kyu_log_last_index(kyu_store_t *store, uint64_t *index, kyu_err_t *err)
{
    return log_end_index(store, true, index, err);
}

kyu_code_t kyu_log_replay(kyu_store_t *store, uint64_t from, kyu_log_visit_fn visit, void *arg,
                          kyu_err_t *err)
{
    uint8_t lo[LOG_KEY];
    log_key(lo, from);
    rocksdb_iterator_t *it =
        rocksdb_create_iterator_cf(kyu_store_db(store, KYU_CF_LOG), kyu_store_readopts(store),
                                   kyu_store_cf(store, KYU_CF_LOG));
    kyu_code_t rc = KYU_OK;
    uint64_t expect = from;
    for (rocksdb_iter_seek(it, (char *)lo, LOG_KEY); rocksdb_iter_valid(it) && rc == KYU_OK;
         rocksdb_iter_next(it)) {
        size_t klen = 0, vlen = 0;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &klen);
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vlen);
        if (klen != LOG_KEY || kyu_get_be32(k) != KYU_GROUP_ID)
            break;
        uint64_t index = kyu_get_be64(k + 4);
        if (index != expect || vlen < LOG_HDR) {
            rc = kyu_err_set(err, KYU_ERR_STORAGE,
                             "the log is corrupt at index %llu (expected entry %llu): refusing "
                             "to start",
                             (unsigned long long)index, (unsigned long long)expect);
            break;
        }
        rc = visit(arg, index, kyu_get_be64(v), v[8], v + LOG_HDR, vlen - LOG_HDR, err);
        expect++;
    }
    char *rerr = NULL;
    rocksdb_iter_get_error(it, &rerr);
    rocksdb_iter_destroy(it);
    if (rerr) {
        rc = kyu_err_set(err, KYU_ERR_STORAGE, "reading the log: %s", rerr);
        free(rerr);
    }
    return rc;
}

kyu_code_t kyu_log_first_index(kyu_store_t *store, uint64_t *index, kyu_err_t *err)
{
    return log_end_index(store, false, index, err);
}

/* Reads the value of a state key into buf (at most cap bytes); *len 0 when absent. */
static kyu_code_t get_state(kyu_store_t *store, const char *what, uint8_t *buf, size_t cap,
                            size_t *len, kyu_err_t *err)
{
    uint8_t k[STATE_KEY];
    state_key(k, what);
    char *rerr = NULL;
    size_t vlen = 0;
    char *v = rocksdb_get_cf(kyu_store_db(store, KYU_CF_LOG), kyu_store_readopts(store),
                             kyu_store_cf(store, KYU_CF_LOG), (char *)k, STATE_KEY, &vlen, &rerr);
    *len = 0;
    if (rerr) {
        kyu_err_set(err, KYU_ERR_STORAGE, "reading the raft %s state: %s", what, rerr);
        free(rerr);
        return KYU_ERR_STORAGE;
    }
    if (v && vlen > cap) {
        free(v);
        return kyu_err_set(err, KYU_ERR_STORAGE, "the raft %s state is corrupt (%zu bytes)", what,
                           vlen);
    }
    if (v) {
        memcpy(buf, v, vlen);
        *len = vlen;
    }
    free(v);
    return KYU_OK;
}

kyu_code_t kyu_log_load_state(kyu_store_t *store, kyu_log_hard_state_t *hs,
                              kyu_log_snapshot_t *snap, kyu_err_t *err)
{
    memset(hs, 0, sizeof *hs);
    memset(snap, 0, sizeof *snap);
    uint8_t buf[16 + sizeof snap->conf];
    size_t len = 0;
    if (get_state(store, "hard", buf, sizeof buf, &len, err))
        return KYU_ERR_STORAGE;
    if (len != 0 && len != 24)
        return kyu_err_set(err, KYU_ERR_STORAGE, "the raft hard state is corrupt");
    if (len == 24)
        *hs = (kyu_log_hard_state_t){true, kyu_get_be64(buf), kyu_get_be64(buf + 8),
                                     kyu_get_be64(buf + 16)};
    if (get_state(store, "snap", buf, sizeof buf, &len, err))
        return KYU_ERR_STORAGE;
    if (len != 0 && len < 16)
        return kyu_err_set(err, KYU_ERR_STORAGE, "the raft snapshot record is corrupt");
    if (len >= 16) {
        snap->found = true;
        snap->index = kyu_get_be64(buf);
        snap->term = kyu_get_be64(buf + 8);
        snap->conf_len = len - 16;
        memcpy(snap->conf, buf + 16, snap->conf_len);
    }
    return KYU_OK;
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
    .install = ops_install,
    .compact = ops_compact,
};
