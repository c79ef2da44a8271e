#include "log.h"

#include <stdlib.h>
#include <string.h>

#define LOG_KEY 12
#define LOG_HDR 9

struct kyu_log {
    zactor_t *actor;
};

typedef struct {
    kyu_store_t *store;
} storage_args_t;

static void log_key(uint8_t k[LOG_KEY], uint64_t index)
{
    kyu_put_be32(k, KYU_GROUP_ID);
    kyu_put_be64(k + 4, index);
}

static void report(zsock_t *pipe, bool ok, uint64_t index, const char *error)
{
    uint8_t b[8];
    kyu_put_be64(b, index);
    zsock_send(pipe, "sbs", ok ? "DURABLE" : "FAILED", b, (size_t)8, error ? error : "");
}

/* Adds one APPEND message (["APPEND", index, term, payload]) to the batch. */
static bool add_append(rocksdb_writebatch_t *wb, rocksdb_column_family_handle_t *cf, zmsg_t *m,
                       uint64_t *last)
{
    zframe_t *fi = zmsg_next(m), *ft = zmsg_next(m), *fp = zmsg_next(m);
    if (!fi || !ft || !fp || zframe_size(fi) != 8 || zframe_size(ft) != 8)
        return false;
    uint8_t k[LOG_KEY];
    *last = kyu_get_be64(zframe_data(fi));
    log_key(k, *last);
    size_t plen = zframe_size(fp);
    uint8_t hdr[LOG_HDR];
    memcpy(hdr, zframe_data(ft), 8);
    hdr[8] = KYU_ENTRY_NORMAL;
    const char *parts[2] = {(const char *)hdr, (const char *)zframe_data(fp)};
    size_t sizes[2] = {LOG_HDR, plen};
    const char *kparts[1] = {(const char *)k};
    size_t ksizes[1] = {LOG_KEY};
    rocksdb_writebatch_putv_cf(wb, cf, 1, kparts, ksizes, 2, parts, sizes);
    return true;
}

/* The storage thread: appends with fsync, many entries per fsync. */
static void storage_actor(zsock_t *pipe, void *arg)
{
    storage_args_t *args = arg;
    rocksdb_t *db = kyu_store_db(args->store, KYU_CF_LOG);
    rocksdb_column_family_handle_t *cf = kyu_store_cf(args->store, KYU_CF_LOG);
    rocksdb_writeoptions_t *sync = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(sync, 1);
    rocksdb_writeoptions_t *nosync = rocksdb_writeoptions_create();
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    bool failed = false;
    zsock_signal(pipe, 0);
    while (true) {
        zmsg_t *m = zmsg_recv(pipe);
        if (!m)
            break;
        uint64_t last = 0;
        bool stop = false, have = false;
        rocksdb_writebatch_clear(wb);
        /* Take every message already waiting: they share this write and its fsync. */
        while (m) {
            char *cmd = zmsg_popstr(m);
            if (cmd && streq(cmd, "APPEND")) {
                KYU_ASSERT(add_append(wb, cf, m, &last));
                have = true;
            } else if (cmd && streq(cmd, "COMPACT")) {
                zframe_t *f = zmsg_first(m);
                kyu_err_t serr;
                /* Entries may go only once the state they produced is durable too. */
                if (f && zframe_size(f) == 8 &&
                    kyu_store_sync_state(args->store, &serr) == KYU_OK) {
                    uint8_t lo[LOG_KEY], hi[LOG_KEY];
                    log_key(lo, 0);
                    log_key(hi, kyu_get_be64(zframe_data(f)));
                    char *rerr = NULL;
                    rocksdb_delete_range_cf(db, nosync, cf, (char *)lo, LOG_KEY, (char *)hi,
                                            LOG_KEY, &rerr);
                    free(rerr); /* compaction is an optimisation: retried next time */
                }
            } else {
                stop = true; /* $TERM */
            }
            free(cmd);
            zmsg_destroy(&m);
            if (stop || !(zsock_events(pipe) & ZMQ_POLLIN))
                break;
            m = zmsg_recv(pipe);
        }
        if (have) {
            char *rerr = NULL;
            if (!failed)
                rocksdb_write(db, sync, wb, &rerr);
            if (failed || rerr) {
                /* After a failed fsync nothing later may be reported durable. */
                failed = true;
                report(pipe, false, last, rerr ? rerr : "an earlier log write failed");
                free(rerr);
            } else {
                report(pipe, true, last, NULL);
            }
        }
        if (stop)
            break;
    }
    rocksdb_writebatch_destroy(wb);
    rocksdb_writeoptions_destroy(sync);
    rocksdb_writeoptions_destroy(nosync);
    free(args);
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
    self->actor = zactor_new(storage_actor, args);
    if (!self->actor) {
        free(args);
        free(self);
        kyu_err_set(err, KYU_ERR_INTERNAL, "cannot start the storage thread");
        return NULL;
    }
    /* The replica keeps at most KYU_REPLICA_INFLIGHT entries (plus a compaction request)
     * in this pipe, far below these marks, so a send never blocks the loop or drops. */
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

kyu_code_t kyu_log_append(kyu_log_t *self, uint64_t index, uint64_t term, const void *payload,
                          size_t len, kyu_err_t *err)
{
    uint8_t bi[8], bt[8];
    kyu_put_be64(bi, index);
    kyu_put_be64(bt, term);
    zmsg_t *m = zmsg_new();
    if (!m || zmsg_addstr(m, "APPEND") || zmsg_addmem(m, bi, 8) || zmsg_addmem(m, bt, 8) ||
        zmsg_addmem(m, payload, len) || zmsg_send(&m, zactor_sock(self->actor))) {
        zmsg_destroy(&m);
        return kyu_err_set(err, KYU_ERR_INTERNAL, "cannot hand entry %llu to the storage thread",
                           (unsigned long long)index);
    }
    return KYU_OK;
}

void kyu_log_compact(kyu_log_t *self, uint64_t before_index)
{
    uint8_t b[8];
    kyu_put_be64(b, before_index);
    zsock_send(zactor_sock(self->actor), "sb", "COMPACT", b, (size_t)8);
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
    uint8_t hi[LOG_KEY];
    log_key(hi, UINT64_MAX);
    rocksdb_iterator_t *it =
        rocksdb_create_iterator_cf(kyu_store_db(store, KYU_CF_LOG), kyu_store_readopts(store),
                                   kyu_store_cf(store, KYU_CF_LOG));
    rocksdb_iter_seek_for_prev(it, (char *)hi, LOG_KEY);
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
