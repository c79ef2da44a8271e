#include "store.h"
#include "flog.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

static const char *const cf_names[KYU_CF_COUNT] = {
    "default", "meta", "queues", "messages", "leases", "visibility",
};

struct kyu_store {
    char dir[4096];
    /* The state handle is replaced by a snapshot install (event loop) while the storage
     * thread may read its durable index (kyu_store_state_durable, before it compacts the log): this
     * lock serializes the two, and db is NULL while no state database is open. The event loop's own
     * reads and writes need no lock (it is the thread that replaces the handle); the snapshot
     * server thread is paused around a replacement (snapshot.h). */
    pthread_mutex_t state_lock;
    rocksdb_t *db;                 /* state */
    kyu_flog_t *flog;              /* the Raft log (DIR/rlog) */
    rocksdb_options_t *opts;       /* the base options */
    rocksdb_options_t *state_opts; /* the state's: opts with a WAL written on demand */
    rocksdb_options_t *meta_opts;  /* the meta column family's: state_opts, universal */
    rocksdb_cache_t *cache;
    rocksdb_block_based_table_options_t *table;
    rocksdb_readoptions_t *ropts;
    rocksdb_readoptions_t *durable_ropts; /* the tables only (kPersistedTier) */
    rocksdb_compactoptions_t *mark_copts; /* kyu_store_flush_state's */
    rocksdb_column_family_handle_t *cfs[KYU_CF_COUNT];
};

/* A key of the default column family (otherwise unused) that every state write puts
 * (kyu_store_mark_batch): a manual compaction of it is how kyu_store_flush_state asks RocksDB
 * for a flush of every column family at once. */
static const char state_mark[] = "state_mark";

void kyu_put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

uint64_t kyu_get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

void kyu_put_be32(uint8_t *p, uint32_t v)
{
    for (int i = 3; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

uint32_t kyu_get_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

kyu_code_t kyu_store_get_u64(kyu_store_t *self, kyu_cf_t cf, const char *key, size_t keylen,
                             uint64_t *value, bool *found, kyu_err_t *err)
{
    char *rerr = NULL;
    size_t len = 0;
    char *v = rocksdb_get_cf(kyu_store_db(self, cf), self->ropts, self->cfs[cf], key, keylen, &len,
                             &rerr);
    if (rerr) {
        kyu_err_set(err, KYU_ERR_STORAGE, "reading %.*s: %s", (int)keylen, key, rerr);
        free(rerr);
        return KYU_ERR_STORAGE;
    }
    *found = v != NULL;
    if (v && len != 8) {
        free(v);
        return kyu_err_set(err, KYU_ERR_STORAGE, "value of %.*s has %zu bytes, not 8", (int)keylen,
                           key, len);
    }
    if (v)
        *value = kyu_get_be64((const uint8_t *)v);
    free(v);
    return KYU_OK;
}

static kyu_code_t check_format(kyu_store_t *self, kyu_err_t *err)
{
    static const char key[] = "format_version";
    uint64_t version = 0;
    bool found = false;
    if (kyu_store_get_u64(self, KYU_CF_META, key, sizeof key - 1, &version, &found, err))
        return KYU_ERR_STORAGE;
    if (found && version != KYU_STORE_FORMAT_VERSION)
        return kyu_err_set(err, KYU_ERR_STORAGE,
                           "data format version %llu is not supported (this broker reads %d)",
                           (unsigned long long)version, KYU_STORE_FORMAT_VERSION);
    if (!found) {
        uint8_t v[8];
        kyu_put_be64(v, KYU_STORE_FORMAT_VERSION);
        rocksdb_writeoptions_t *w = rocksdb_writeoptions_create();
        rocksdb_writeoptions_set_sync(w, 1);
        char *rerr = NULL;
        rocksdb_put_cf(self->db, w, self->cfs[KYU_CF_META], key, sizeof key - 1, (char *)v, 8,
                       &rerr);
        rocksdb_writeoptions_destroy(w);
        if (rerr) {
            kyu_err_set(err, KYU_ERR_STORAGE, "writing format version: %s", rerr);
            free(rerr);
            return KYU_ERR_STORAGE;
        }
    }
    return KYU_OK;
}

/* The options of a state column family. */
static const rocksdb_options_t *state_cf_opts(const kyu_store_t *self, int cf)
{
    return cf == KYU_CF_META ? self->meta_opts : self->state_opts;
}

/* Opens DIR/sub with the state's column families. */
static kyu_code_t open_db(kyu_store_t *self, const char *dir, const char *sub, rocksdb_t **db,
                          kyu_err_t *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, sub);
    const rocksdb_options_t *opts[KYU_CF_COUNT];
    rocksdb_column_family_handle_t *handles[KYU_CF_COUNT];
    for (int i = 0; i < KYU_CF_COUNT; i++)
        opts[i] = state_cf_opts(self, i);
    char *rerr = NULL;
    *db = rocksdb_open_column_families(self->state_opts, path, KYU_CF_COUNT,
                                       (const char *const *)cf_names, opts, handles, &rerr);
    if (rerr) {
        kyu_err_set(err, KYU_ERR_STORAGE, "cannot open %s: %s", path, rerr);
        free(rerr);
        *db = NULL;
        return KYU_ERR_STORAGE;
    }
    for (int i = 0; i < KYU_CF_COUNT; i++)
        self->cfs[i] = handles[i];
    return KYU_OK;
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

void kyu_store_remove_tree(const char *path)
{
    nftw(path, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

kyu_code_t kyu_store_fsync_path(const char *path, kyu_err_t *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0) {
        kyu_err_set(err, KYU_ERR_STORAGE, "cannot sync %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return KYU_ERR_STORAGE;
    }
    close(fd);
    return KYU_OK;
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Finishes or undoes a state swap a crash interrupted (kyu_store_replace_state): state.old
 * without state means the new one was not moved in yet, so the old one comes back; a
 * leftover incoming directory is an incomplete transfer. */
static kyu_code_t finish_swap(const char *dir, kyu_err_t *err)
{
    char state[4200], old[4200], incoming[4200];
    snprintf(state, sizeof state, "%s/state", dir);
    snprintf(old, sizeof old, "%s/state.old", dir);
    snprintf(incoming, sizeof incoming, "%s/state.incoming", dir);
    if (exists(old) && !exists(state) && rename(old, state) != 0)
        return kyu_err_set(err, KYU_ERR_STORAGE, "cannot restore %s: %s", old, strerror(errno));
    kyu_store_remove_tree(old);
    kyu_store_remove_tree(incoming);
    return KYU_OK;
}

const char *kyu_store_dir(const kyu_store_t *self)
{
    return self->dir;
}

static void close_state(kyu_store_t *self)
{
    for (int i = 0; i < KYU_CF_COUNT; i++)
        if (self->cfs[i]) {
            rocksdb_column_family_handle_destroy(self->cfs[i]);
            self->cfs[i] = NULL;
        }
    if (self->db) {
        rocksdb_cancel_all_background_work(self->db, 1);
        rocksdb_close(self->db);
        self->db = NULL;
    }
}

/* Opens DIR/state.incoming read-only and checks it is a state database of this format, so
 * that a broken or incomplete transfer is refused before the current state is given up. */
static kyu_code_t check_incoming(kyu_store_t *self, const char *path, kyu_err_t *err)
{
    const char *names[KYU_CF_COUNT];
    const rocksdb_options_t *opts[KYU_CF_COUNT];
    rocksdb_column_family_handle_t *handles[KYU_CF_COUNT];
    int n = 0, meta = -1;
    for (int i = 0; i < KYU_CF_COUNT; i++) {
        if (i == KYU_CF_META)
            meta = n;
        names[n] = cf_names[i];
        opts[n++] = state_cf_opts(self, i);
    }
    char *rerr = NULL;
    rocksdb_t *db = rocksdb_open_for_read_only_column_families(self->state_opts, path, n, names,
                                                               opts, handles, 0, &rerr);
    if (rerr) {
        kyu_err_set(err, KYU_ERR_STORAGE, "the fetched snapshot does not open: %s", rerr);
        free(rerr);
        return KYU_ERR_STORAGE;
    }
    static const char key[] = "format_version";
    size_t len = 0;
    char *v = rocksdb_get_cf(db, self->ropts, handles[meta], key, sizeof key - 1, &len, &rerr);
    kyu_code_t rc = KYU_OK;
    if (rerr || !v || len != 8 || kyu_get_be64((const uint8_t *)v) != KYU_STORE_FORMAT_VERSION)
        rc = kyu_err_set(err, KYU_ERR_STORAGE,
                         "the fetched snapshot is not a state database of format %d%s%s",
                         KYU_STORE_FORMAT_VERSION, rerr ? ": " : "", rerr ? rerr : "");
    free(rerr);
    free(v);
    for (int i = 0; i < n; i++)
        rocksdb_column_family_handle_destroy(handles[i]);
    rocksdb_close(db);
    return rc;
}

/* Moves the current state aside and the incoming one in, durably, and opens it. On failure
 * the old state is put back and reopened; db stays NULL only if that fails too. Called with
 * state_lock held and the state closed. */
static kyu_code_t swap_in(kyu_store_t *self, const char *state, const char *old,
                          const char *incoming, kyu_err_t *err)
{
    kyu_store_remove_tree(old);
    if (rename(state, old) != 0 || rename(incoming, state) != 0)
        kyu_err_set(err, KYU_ERR_STORAGE, "cannot put the snapshot in place: %s", strerror(errno));
    else if (kyu_store_fsync_path(self->dir, err) == KYU_OK &&
             open_db(self, self->dir, "state", &self->db, err) == KYU_OK &&
             check_format(self, err) == KYU_OK) {
        kyu_store_remove_tree(old);
        return KYU_OK;
    }
    /* Undo: a new state that moved in but does not work goes, and the old one comes back (as
     * after a crash: finish_swap) and is reopened. */
    close_state(self);
    if (exists(old) && exists(state))
        kyu_store_remove_tree(state);
    kyu_err_t again;
    if (finish_swap(self->dir, &again) != KYU_OK ||
        open_db(self, self->dir, "state", &self->db, &again) != KYU_OK) {
        char first[KYU_ERR_MSG_MAX];
        snprintf(first, sizeof first, "%s", err->msg);
        kyu_err_set(err, KYU_ERR_STORAGE,
                    "%.200s; and the state database cannot be reopened (%.200s): restart the "
                    "broker",
                    first, again.msg);
    }
    return KYU_ERR_STORAGE;
}

kyu_code_t kyu_store_replace_state(kyu_store_t *self, kyu_err_t *err)
{
    char state[4200], old[4200], incoming[4200];
    snprintf(state, sizeof state, "%s/state", self->dir);
    snprintf(old, sizeof old, "%s/state.old", self->dir);
    snprintf(incoming, sizeof incoming, "%s/state.incoming", self->dir);
    kyu_err_clear(err);
    if (check_incoming(self, incoming, err) != KYU_OK) {
        kyu_store_remove_tree(incoming);
        return KYU_ERR_STORAGE;
    }
    KYU_ASSERT(pthread_mutex_lock(&self->state_lock) == 0);
    close_state(self);
    kyu_code_t rc = swap_in(self, state, old, incoming, err);
    KYU_ASSERT(pthread_mutex_unlock(&self->state_lock) == 0);
    return rc;
}

/* Reads one value of the RocksDB log's state keys (0xff what group(4)) into buf. */
static size_t old_state(rocksdb_t *db, rocksdb_column_family_handle_t *cf,
                        const rocksdb_readoptions_t *ro, const char *what, uint8_t *buf, size_t cap,
                        char **rerr)
{
    uint8_t k[9] = {0xff};
    memcpy(k + 1, what, 4);
    kyu_put_be32(k + 5, 1);
    size_t len = 0;
    char *v = rocksdb_get_cf(db, ro, cf, (char *)k, sizeof k, &len, rerr);
    if (!v)
        return 0;
    if (len > cap)
        len = 0;
    memcpy(buf, v, len);
    free(v);
    return len;
}

/* Copies the RocksDB log (DIR/log) into the segment log in tmp: the snapshot record and hard
 * state, then every entry, in writes of up to 1024 entries. */
static kyu_code_t copy_old_log(kyu_store_t *self, const char *old, const char *tmp, kyu_err_t *err)
{
    const char *names[2] = {"default", "log"};
    const rocksdb_options_t *opts[2] = {self->opts, self->opts};
    rocksdb_column_family_handle_t *h[2];
    char *rerr = NULL;
    rocksdb_t *db =
        rocksdb_open_for_read_only_column_families(self->opts, old, 2, names, opts, h, 0, &rerr);
    if (rerr) {
        kyu_err_set(err, KYU_ERR_STORAGE, "cannot open the old log %s to migrate it: %s", old,
                    rerr);
        free(rerr);
        return KYU_ERR_STORAGE;
    }
    kyu_flog_t *fl = kyu_flog_open(tmp, 0, err);
    kyu_code_t rc = fl ? KYU_OK : KYU_ERR_STORAGE;
    uint8_t hb[24], sb[16 + KYU_FLOG_CONF_MAX];
    size_t hl = old_state(db, h[1], self->ropts, "hard", hb, sizeof hb, &rerr);
    size_t sl = rerr ? 0 : old_state(db, h[1], self->ropts, "snap", sb, sizeof sb, &rerr);
    kyu_flog_hs_t hs = {hl == 24, hl == 24 ? kyu_get_be64(hb) : 0,
                        hl == 24 ? kyu_get_be64(hb + 8) : 0, hl == 24 ? kyu_get_be64(hb + 16) : 0};
    if (rc == KYU_OK && !rerr && sl >= 16) {
        kyu_flog_snap_t snap = {
            .found = true, .index = kyu_get_be64(sb), .term = kyu_get_be64(sb + 8)};
        snap.conf_len = sl - 16;
        memcpy(snap.conf, sb + 16, snap.conf_len);
        rc = kyu_flog_install(fl, &snap, hs.found ? &hs : NULL, err);
    }
    enum { BATCH = 1024 };
    kyu_flog_rec_t *recs = calloc(BATCH + 1, sizeof *recs);
    char **vals = calloc(BATCH, sizeof *vals);
    KYU_ASSERT(recs && vals);
    size_t n = 0;
    if (hs.found)
        recs[n++] = (kyu_flog_rec_t){.kind = KYU_FLOG_HS, .hs = hs};
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(db, self->ropts, h[1]);
    uint8_t lo[12];
    kyu_put_be32(lo, 1);
    kyu_put_be64(lo + 4, 0);
    size_t nv = 0;
    for (rocksdb_iter_seek(it, (char *)lo, sizeof lo);
         rc == KYU_OK && !rerr && rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t klen = 0, vlen = 0;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &klen);
        const char *v = rocksdb_iter_value(it, &vlen);
        if (klen != 12 || kyu_get_be32(k) != 1)
            break;
        if (vlen < 9) {
            rc = kyu_err_set(err, KYU_ERR_STORAGE, "the old log is corrupt at index %llu",
                             (unsigned long long)kyu_get_be64(k + 4));
            break;
        }
        vals[nv] = malloc(vlen);
        KYU_ASSERT(vals[nv]);
        memcpy(vals[nv], v, vlen);
        const uint8_t *p = (const uint8_t *)vals[nv++];
        recs[n++] = (kyu_flog_rec_t){.kind = KYU_FLOG_ENTRY,
                                     .index = kyu_get_be64(k + 4),
                                     .term = kyu_get_be64(p),
                                     .type = p[8],
                                     .payload = p + 9,
                                     .len = vlen - 9};
        if (nv == BATCH) {
            rc = kyu_flog_write(fl, recs, n, err);
            for (size_t i = 0; i < nv; i++)
                free(vals[i]);
            n = nv = 0;
        }
    }
    if (!rerr)
        rocksdb_iter_get_error(it, &rerr);
    rocksdb_iter_destroy(it);
    if (rc == KYU_OK && !rerr && n > 0)
        rc = kyu_flog_write(fl, recs, n, err);
    for (size_t i = 0; i < nv; i++)
        free(vals[i]);
    free(vals);
    free(recs);
    if (rerr) {
        rc = kyu_err_set(err, KYU_ERR_STORAGE, "reading the old log %s: %s", old, rerr);
        free(rerr);
    }
    kyu_flog_close(&fl);
    rocksdb_column_family_handle_destroy(h[0]);
    rocksdb_column_family_handle_destroy(h[1]);
    rocksdb_close(db);
    return rc;
}

/* Format 1 kept the Raft log in a RocksDB database (DIR/log); it now lives in segment files
 * (DIR/rlog, flog.h). A data directory of the old layout is migrated at open: the log is copied
 * into DIR/rlog.new, synced, renamed DIR/rlog (the commit point), and DIR/log removed. A crash
 * before the rename leaves the old log (rlog.new is dropped and the copy made again), one after
 * it the new log (DIR/log is then only removed). DIR/log is then a small file saying why, which
 * an older broker cannot open as its log database. */
static kyu_code_t migrate_log(kyu_store_t *self, kyu_err_t *err)
{
    char old[4200], rlog[4200], tmp[4200];
    snprintf(old, sizeof old, "%s/log", self->dir);
    snprintf(rlog, sizeof rlog, "%s/rlog", self->dir);
    snprintf(tmp, sizeof tmp, "%s/rlog.new", self->dir);
    struct stat st;
    if (stat(old, &st) == 0 && S_ISDIR(st.st_mode) && !exists(rlog)) {
        kyu_store_remove_tree(tmp);
        if (copy_old_log(self, old, tmp, err) != KYU_OK) {
            kyu_store_remove_tree(tmp);
            return KYU_ERR_STORAGE;
        }
        if (kyu_store_fsync_path(tmp, err) != KYU_OK)
            return KYU_ERR_STORAGE;
        if (rename(tmp, rlog) != 0)
            return kyu_err_set(err, KYU_ERR_STORAGE, "cannot rename %s: %s", tmp, strerror(errno));
        if (kyu_store_fsync_path(self->dir, err) != KYU_OK)
            return KYU_ERR_STORAGE;
    }
    if (stat(old, &st) == 0 && S_ISDIR(st.st_mode)) {
        kyu_store_remove_tree(old);
        if (kyu_store_fsync_path(self->dir, err) != KYU_OK)
            return KYU_ERR_STORAGE;
    }
    if (stat(old, &st) == 0)
        return KYU_OK;
    /* In DIR/log's place a file, so that an older broker (which would open an empty log
     * database there and start without the log) refuses the directory instead. */
    static const char why[] = "kyu: the Raft log is in rlog/ (segment files) since branch "
                              "filelog; a broker that keeps it in this RocksDB database is too "
                              "old for this data directory\n";
    int fd = open(old, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
    bool ok =
        fd >= 0 && write(fd, why, sizeof why - 1) == (ssize_t)(sizeof why - 1) && fsync(fd) == 0;
    if (fd >= 0)
        close(fd);
    if (!ok)
        return kyu_err_set(err, KYU_ERR_STORAGE, "cannot create %s: %s", old, strerror(errno));
    return kyu_store_fsync_path(self->dir, err);
}

kyu_store_t *kyu_store_open(const char *dir, kyu_err_t *err)
{
    kyu_store_t *self = calloc(1, sizeof *self);
    if (!self || pthread_mutex_init(&self->state_lock, NULL) != 0) {
        free(self);
        kyu_err_set(err, KYU_ERR_INTERNAL, "out of memory");
        return NULL;
    }
    self->opts = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(self->opts, 1);
    rocksdb_options_set_create_missing_column_families(self->opts, 1);
    rocksdb_options_increase_parallelism(self->opts, 2);
    rocksdb_options_set_max_background_jobs(self->opts, 2);
    /* Restart time is the time to replay what the WAL holds beyond the flushed tables:
     * bound it (and so restart and shutdown time) whatever the backlog, by flushing
     * memtables once the WAL passes 64 MiB. The backlog itself lives in SST files. */
    rocksdb_options_set_write_buffer_size(self->opts, 16 << 20);
    rocksdb_options_set_max_total_wal_size(self->opts, 64 << 20);
    /* Memtables take their memory in blocks of 512 KiB (RocksDB's default is an eighth of
     * the write buffer, 2 MiB): under malloc's mmap threshold (1 MiB, main.c), so a new
     * memtable reuses the heap's blocks of the flushed ones instead of mapping fresh pages,
     * which the state writer faulted in and the kernel zeroed: ~0.8 us a message of its ~3
     * under a send load (docs/BENCHMARKS.md, "Branch sendcpu (2026-12-05)"). */
    rocksdb_options_set_arena_block_size(self->opts, 512 << 10);
    /* RocksDB's own info log (DIR/log/LOG, DIR/state/LOG) only at open (its header): the
     * writer of that file in Debian's librocksdb (assertions on) aborts the process on the
     * line after one that failed, so a full disk would kill the broker the moment RocksDB
     * logs its own write error (tests/integration/test_disk_full.py). Failures reach the
     * broker's log through the statuses of the writes instead. */
    rocksdb_options_set_info_log_level(self->opts, 4 /* FATAL */);
    self->cache = rocksdb_cache_create_lru(64 << 20);
    self->table = rocksdb_block_based_options_create();
    rocksdb_block_based_options_set_block_cache(self->table, self->cache);
    /* Receives and deletes look messages and leases up by key: a bloom filter lets a lookup
     * skip the tables that do not hold the key instead of reading a block of each. */
    rocksdb_block_based_options_set_filter_policy(self->table,
                                                  rocksdb_filterpolicy_create_bloom(10));
    rocksdb_block_based_options_set_cache_index_and_filter_blocks(self->table, 1);
    /* Level 0's index and filter partitions are not pinned: a table keeps its pins when it
     * is moved down whole (the messages and leases tables, whose keys arrive in order, only
     * ever move), so the pinned blocks were every backlog table's whole index and filter,
     * charged to the cache past its size: 100 MiB with 10^7 messages queued, growing with
     * the backlog (docs/BENCHMARKS.md, "Branch depth2"). They compete in the cache now, at
     * its high priority; only the top levels stay pinned. */
    rocksdb_block_based_options_set_pin_l0_filter_and_index_blocks_in_cache(self->table, 0);
    /* Filters and indexes in partitions of 4 KiB under a small top level that stays in the
     * cache. A table's whole filter is megabytes under a backlog (10 bits per key), more
     * than a shard of the cache holds: every lookup that missed (a new request key, checked
     * for a retry) read and checksummed it again from the file; W2 beside a backlog of 10^6
     * messages spent 89% of the broker's time there (docs/BENCHMARKS.md, issue 12). */
    rocksdb_block_based_options_set_partition_filters(self->table, 1);
    rocksdb_block_based_options_set_index_type(
        self->table, rocksdb_block_based_table_index_type_two_level_index_search);
    rocksdb_block_based_options_set_metadata_block_size(self->table, 4096);
    rocksdb_block_based_options_set_pin_top_level_index_and_filter(self->table, 1);
    rocksdb_options_set_block_based_table_factory(self->opts, self->table);
    /* The state's writes carry no WAL (the log is the record, store.h; sm.c's write options
     * disable it): a write goes to the memtables only, and what the database holds durably is
     * what its flushes wrote. With atomic_flush every flush takes the memtables of all column
     * families at once and commits their tables in one MANIFEST record, so the tables always
     * hold the state of a whole batch: RocksDB's own flushes (a memtable full) and the one
     * kyu_store_flush_state asks for. The WAL's records, their CRC and copy, were a fifth of
     * the state writer under a send load, ~1 us a message (docs/BENCHMARKS.md, "statecpu"). */
    self->state_opts = rocksdb_options_create_copy(self->opts);
    rocksdb_options_set_atomic_flush(self->state_opts, 1);
    /* The meta column family holds the request keys' records ("rq" client key, and "rx" time
     * client key, sm_dedup.c: two per keyed write, deleted 5 minutes later) beside the small
     * named values written at every buffer write (applied_index, next_seq). Every table a
     * flush makes there spans from "applied_index" to the newest "rx" key, so under levelled
     * compaction each one overlapped all of level 1, which was rewritten whole every 4
     * flushes: with 3x10^6 messages sent in the last minutes that was 140 MB per compaction
     * and half of the broker's CPU while W2 ran beside the backlog (docs/BENCHMARKS.md,
     * "depth"). Universal compaction merges sorted runs of like sizes instead: each record is
     * rewritten O(log n) times, not once per flush.
     * It starts a compaction at KYU_STORE_META_RUNS sorted runs, not RocksDB's 4: with
     * atomic_flush (no WAL) meta is flushed at every flush of any family (the messages' 16
     * MiB memtable fills about 3 times as often as meta's), so its new tables are small and
     * many. At 4 runs the few large runs a backlog's request keys make were enough to be at
     * the trigger, and every new table was merged at once into the smallest large run (a
     * compaction "to reduce the number of sorted runs", which ignores sizes): that run was
     * rewritten at every flush, twice the compaction work of the broker before statecpu
     * beside 3x10^6 queued messages, while W2 ran beside them (docs/BENCHMARKS.md, "Branch
     * depthfix"). With room for more runs the small tables merge among themselves first,
     * by size. Reads of meta are a request key's (the key filter passes only retries and
     * rare false positives, sm_dedup.c) and applied_index (the newest run has it). */
    self->meta_opts = rocksdb_options_create_copy(self->state_opts);
    rocksdb_options_set_compaction_style(self->meta_opts, rocksdb_universal_compaction);
    rocksdb_options_set_level0_file_num_compaction_trigger(self->meta_opts, KYU_STORE_META_RUNS);
    self->ropts = rocksdb_readoptions_create();
    self->durable_ropts = rocksdb_readoptions_create();
    rocksdb_readoptions_set_read_tier(self->durable_ropts, 2 /* kPersistedTier */);
    self->mark_copts = rocksdb_compactoptions_create();
    /* not exclusive: an exclusive manual compaction first waits for the automatic ones (a
     * universal compaction of meta may take seconds under a backlog) */
    rocksdb_compactoptions_set_exclusive_manual_compaction(self->mark_copts, 0);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        kyu_err_set(err, KYU_ERR_STORAGE, "cannot create data directory %s: %s", dir,
                    strerror(errno));
        kyu_store_close(&self);
        return NULL;
    }

    snprintf(self->dir, sizeof self->dir, "%s", dir);
    if (finish_swap(dir, err) != KYU_OK) {
        kyu_store_close(&self);
        return NULL;
    }
    if (open_db(self, dir, "state", &self->db, err) != KYU_OK || migrate_log(self, err) != KYU_OK) {
        kyu_store_close(&self);
        return NULL;
    }
    char rlog[4200];
    snprintf(rlog, sizeof rlog, "%s/rlog", dir);
    /* KYU_LOG_SEGMENT_BYTES: tests make segments small so that they roll and recycle. */
    const char *seg = getenv("KYU_LOG_SEGMENT_BYTES");
    self->flog = kyu_flog_open(rlog, seg ? strtoull(seg, NULL, 10) : 0, err);
    if (!self->flog) {
        kyu_store_close(&self);
        return NULL;
    }
    if (check_format(self, err) != KYU_OK) {
        kyu_store_close(&self);
        return NULL;
    }
    return self;
}

void kyu_store_close(kyu_store_t **self_p)
{
    kyu_store_t *self = *self_p;
    if (!self)
        return;
    for (int i = 0; i < KYU_CF_COUNT; i++)
        if (self->cfs[i])
            rocksdb_column_family_handle_destroy(self->cfs[i]);
    /* A compaction under way would hold up a clean stop for seconds; it is safe to abandon
     * (nothing is lost; it runs again later). */
    if (self->db) {
        rocksdb_cancel_all_background_work(self->db, 1);
        rocksdb_close(self->db);
    }
    kyu_flog_close(&self->flog);
    rocksdb_readoptions_destroy(self->ropts);
    rocksdb_readoptions_destroy(self->durable_ropts);
    rocksdb_compactoptions_destroy(self->mark_copts);
    rocksdb_block_based_options_destroy(self->table);
    rocksdb_cache_destroy(self->cache);
    rocksdb_options_destroy(self->opts);
    rocksdb_options_destroy(self->state_opts);
    rocksdb_options_destroy(self->meta_opts);
    pthread_mutex_destroy(&self->state_lock);
    free(self);
    *self_p = NULL;
}

/* A RocksDB checkpoint of db into path (which must not exist), its memtables flushed first
 * so that the checkpoint needs no WAL. */
static kyu_code_t checkpoint_one(rocksdb_t *db, const char *path, kyu_err_t *err)
{
    char *rerr = NULL;
    rocksdb_checkpoint_t *cp = rocksdb_checkpoint_object_create(db, &rerr);
    if (!rerr)
        rocksdb_checkpoint_create(cp, path, 0, &rerr);
    if (cp)
        rocksdb_checkpoint_object_destroy(cp);
    if (rerr) {
        kyu_err_set(err, KYU_ERR_STORAGE, "checkpoint into %s: %s", path, rerr);
        free(rerr);
        return KYU_ERR_STORAGE;
    }
    return KYU_OK;
}

kyu_code_t kyu_store_backup(kyu_store_t *self, const char *out, kyu_err_t *err)
{
    char path[4200];
    if (mkdir(out, 0755) != 0)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "cannot create the backup directory %s: %s (it must not exist; its "
                           "parent must)",
                           out, strerror(errno));
    /* The log first: the state, taken after, is at least as far as the log's start (the log
     * is compacted only behind a synced state), so no entry the state lacks is missing from
     * the log; a state ahead of the log's end is fine (the log is reset to it at startup,
     * as after an interrupted snapshot install). */
    snprintf(path, sizeof path, "%s/rlog", out);
    if (kyu_flog_backup(self->flog, path, err) != KYU_OK)
        return KYU_ERR_STORAGE;
    snprintf(path, sizeof path, "%s/state", out);
    if (checkpoint_one(self->db, path, err) != KYU_OK)
        return KYU_ERR_STORAGE;
    if (kyu_store_fsync_path(out, err) != KYU_OK)
        return KYU_ERR_STORAGE;
    char parent[4200];
    snprintf(parent, sizeof parent, "%s", out);
    for (size_t n = strlen(parent); n > 1 && parent[n - 1] == '/'; n--)
        parent[n - 1] = '\0'; /* "OUT/": its parent is that of OUT */
    char *slash = strrchr(parent, '/');
    if (slash == parent)
        parent[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        snprintf(parent, sizeof parent, ".");
    return kyu_store_fsync_path(parent, err);
}

uint64_t kyu_store_free_bytes(const char *dir)
{
    struct statvfs st;
    if (statvfs(dir, &st) != 0)
        return UINT64_MAX; /* unknown: the writes themselves will tell */
    return (uint64_t)st.f_bavail * (uint64_t)st.f_frsize;
}

rocksdb_t *kyu_store_db(kyu_store_t *self, kyu_cf_t cf)
{
    (void)cf;
    return self->db;
}

kyu_flog_t *kyu_store_flog(kyu_store_t *self)
{
    return self->flog;
}

kyu_code_t kyu_store_state_durable(kyu_store_t *self, uint64_t *index, kyu_err_t *err)
{
    char *rerr = NULL, *v = NULL;
    size_t len = 0;
    KYU_ASSERT(pthread_mutex_lock(&self->state_lock) == 0);
    /* kPersistedTier: the tables, not the memtables (once a write without WAL was made;
     * before it the memtables hold only what a synced write put there, or nothing) */
    if (self->db)
        v = rocksdb_get_cf(self->db, self->durable_ropts, self->cfs[KYU_CF_META], "applied_index",
                           13, &len, &rerr);
    else
        rerr = strdup("the state database is not open (a snapshot install could not reopen it)");
    KYU_ASSERT(pthread_mutex_unlock(&self->state_lock) == 0);
    if (rerr || (v && len != 8)) {
        kyu_err_set(err, KYU_ERR_STORAGE, "reading the state's durable index: %s",
                    rerr ? rerr : "not 8 bytes");
        free(rerr);
        free(v);
        return KYU_ERR_STORAGE;
    }
    *index = v ? kyu_get_be64((const uint8_t *)v) : 0;
    free(v);
    return KYU_OK;
}

void kyu_store_mark_batch(kyu_store_t *self, rocksdb_writebatch_t *wb)
{
    rocksdb_writebatch_put_cf(wb, self->cfs[KYU_CF_DEFAULT], state_mark, sizeof state_mark - 1, "",
                              0);
}

kyu_code_t kyu_store_flush_state(kyu_store_t *self, uint64_t *durable, kyu_err_t *err)
{
    /* A manual compaction whose range is in a memtable flushes first, and with atomic_flush
     * that flush takes every column family (DBImpl::CompactRange selects them all); the C API
     * of RocksDB 7.8 has no flush of several families at once (rocksdb_flush_cf flushes the
     * one given). The range is the mark every write puts, so a write since the last flush is
     * always flushed; the compaction itself is of the default family's few one-key tables.
     * The C call returns no status: what the tables hold afterwards is the answer. */
    rocksdb_compact_range_cf_opt(self->db, self->cfs[KYU_CF_DEFAULT], self->mark_copts, state_mark,
                                 sizeof state_mark - 1, state_mark, sizeof state_mark - 1);
    return kyu_store_state_durable(self, durable, err);
}

void kyu_store_crash(kyu_store_t **self_p)
{
    kyu_store_t *self = *self_p;
    if (!self || !self->db) {
        kyu_store_close(self_p);
        return;
    }
    /* What a kill -9 leaves is the tables (the state's writes carry no WAL): a checkpoint
     * without a flush (hard links to the live tables, in one consistent version), put in the
     * state's place once the database is closed. */
    char state[4200], tables[4200];
    snprintf(state, sizeof state, "%s/state", self->dir);
    snprintf(tables, sizeof tables, "%s/state.crash", self->dir);
    kyu_store_remove_tree(tables);
    char *rerr = NULL;
    rocksdb_checkpoint_t *cp = rocksdb_checkpoint_object_create(self->db, &rerr);
    if (!rerr)
        rocksdb_checkpoint_create(cp, tables, UINT64_MAX, &rerr);
    if (cp)
        rocksdb_checkpoint_object_destroy(cp);
    if (rerr)
        fprintf(stderr, "kyu: a crash's checkpoint into %s: %s\n", tables, rerr);
    KYU_ASSERT(!rerr);
    kyu_store_close(self_p);
    kyu_store_remove_tree(state);
    KYU_ASSERT(rename(tables, state) == 0);
}

rocksdb_column_family_handle_t *kyu_store_cf(kyu_store_t *self, kyu_cf_t cf)
{
    return self->cfs[cf];
}

const rocksdb_readoptions_t *kyu_store_readopts(kyu_store_t *self)
{
    return self->ropts;
}

rocksdb_readoptions_t *kyu_store_scan_readopts_create(void)
{
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    KYU_ASSERT(ro);
    rocksdb_readoptions_set_fill_cache(ro, 0);
    rocksdb_readoptions_set_readahead_size(ro, KYU_STORE_SCAN_READAHEAD);
    return ro;
}
