/* store: the broker's data directory: the state machine's RocksDB database and the Raft log.
 *
 * DIR/state is a RocksDB database with the state machine's tables (written without sync by the
 * apply path: the log is the durable record, and entries past the stored applied index are
 * applied again after a crash). DIR/rlog is the Raft log in segment files kyu writes itself
 * (flog.h; the storage thread of log.h writes it, data-only fdatasyncs). The state's
 * writes carry no WAL, and its column families are flushed together (atomic_flush): its
 * tables always hold the state of a whole write, at kyu_store_state_durable's index, and the
 * log is only compacted up to that index, so neither a kill -9 (the memtables lost) nor a
 * power loss can leave the state behind the first entry still in the log. Threads: the event
 * loop owns the store and alone replaces the state handle (kyu_store_replace_state); the
 * storage thread writes the log and calls kyu_store_state_durable, which a lock serializes
 * with the replacement; the snapshot server
 * thread is paused around it (snapshot.h).
 *
 * Format: the meta column family holds "format_version". Version 1 is the layout documented
 * in broker/sm.c and broker/flog.h. A directory whose log is the RocksDB database DIR/log of
 * earlier brokers is migrated at open (store.c, migrate_log). A future layout change bumps the
 * version and adds a migration step here; a database of an unknown version is refused.
 */
#ifndef KYU_STORE_H
#define KYU_STORE_H

#include "kyu_err.h"

#include <rocksdb/c.h>
#include <stdbool.h>
#include <stdint.h>

#define KYU_STORE_FORMAT_VERSION 1
/* The meta column family (universal compaction) starts a compaction at this many sorted
 * runs, not RocksDB's 4: with atomic_flush its tables are small and many (store.c). */
#define KYU_STORE_META_RUNS 8
/* Bytes read ahead by a load's scans (kyu_store_scan_readopts_create). */
#define KYU_STORE_SCAN_READAHEAD (2 << 20)

typedef enum {
    KYU_CF_DEFAULT,    /* unused; RocksDB requires it */
    KYU_CF_META,       /* small named values: format_version, applied_index, next_seq, ... */
    KYU_CF_QUEUES,     /* queue name -> queue record */
    KYU_CF_MESSAGES,   /* qid(8) seq(8) -> message record (id, sent time, body) */
    KYU_CF_LEASES,     /* qid(8) seq(8) -> lease record (visible_at, receive count, gen) */
    KYU_CF_VISIBILITY, /* qid(8) visible_at(8) seq(8) -> "" */
    KYU_CF_COUNT
} kyu_cf_t;

typedef struct kyu_store kyu_store_t;

/* Opens (creating when missing) the database in dir. NULL with err set on failure. */
kyu_store_t *kyu_store_open(const char *dir, kyu_err_t *err);
void kyu_store_close(kyu_store_t **self_p);

/* Snapshot install: DIR/state.incoming holds a complete state database (a checkpoint of
 * another member's, fsynced); this closes the state database, puts the new one in its place
 * and opens it. Crash-safe: the swap is two renames, and kyu_store_open finishes or undoes
 * an interrupted one (DIR/state.old) and drops an incomplete DIR/state.incoming. Column
 * family handles and the state database handle change: callers take them again.
 * On failure (STORAGE, err says why) the state machine must not use the store's state again:
 * an incoming state that does not open as a state database of this format is refused before
 * anything changes; a swap that fails half-way is undone on disk, and the old state reopened
 * if possible, else the state database stays closed (kyu_store_db gives NULL for its column
 * families, kyu_store_state_durable an error) until a restart. */
kyu_code_t kyu_store_replace_state(kyu_store_t *self, kyu_err_t *err);
/* The data directory (for the snapshot transfer's files). */
const char *kyu_store_dir(const kyu_store_t *self);
/* Removes a directory tree (best effort; for snapshot scratch directories). */
void kyu_store_remove_tree(const char *path);
/* fsyncs a file or directory by path. */
kyu_code_t kyu_store_fsync_path(const char *path, kyu_err_t *err);

/* Backup: a copy of the Raft log into out/rlog (kyu_flog_backup) and a RocksDB checkpoint of
 * the state into out/state (hard links to the table files where out is on the same file
 * system, copies otherwise), synced. out must
 * not exist (INVALID_ARGUMENT otherwise). A data directory that is a copy of out is a node's
 * data as it was: `kyu-broker --backup` (docs/OPERATIONS.md). */
kyu_code_t kyu_store_backup(kyu_store_t *self, const char *out, kyu_err_t *err);
/* Bytes free for an unprivileged writer on dir's file system (UINT64_MAX when unknown). */
uint64_t kyu_store_free_bytes(const char *dir);

/* The database that holds column family cf (the state's). */
rocksdb_t *kyu_store_db(kyu_store_t *self, kyu_cf_t cf);
/* The Raft log (DIR/rlog, flog.h), opened with the store. */
struct kyu_flog *kyu_store_flog(kyu_store_t *self);
/* The applied index the state database holds durably: the one its tables hold (the state's
 * writes carry no WAL; what is in the memtables a crash loses). The log is compacted only up
 * to it. Any thread (a lock serializes it with kyu_store_replace_state). */
kyu_code_t kyu_store_state_durable(kyu_store_t *self, uint64_t *index, kyu_err_t *err);
/* Puts the state's mark into wb: every batch of state writes carries it (kyu_store_flush_state
 * needs it in the memtable to flush it). */
void kyu_store_mark_batch(kyu_store_t *self, rocksdb_writebatch_t *wb);
/* Flushes the memtables of every state column family to tables, in one atomic step, waits
 * for it, and says what the tables hold then (kyu_store_state_durable): at least the applied
 * index of every marked write made before, unless the flush failed. Called by the state's
 * writer, as its writes are (never during kyu_store_replace_state); may take as long as a
 * flush of the memtables. */
kyu_code_t kyu_store_flush_state(kyu_store_t *self, uint64_t *durable, kyu_err_t *err);
/* Closes the store and leaves its state as a kill -9 would: what the tables hold, the
 * memtables dropped (tests and kyu-sim-kyu; a clean close flushes them). */
void kyu_store_crash(kyu_store_t **self_p);
rocksdb_column_family_handle_t *kyu_store_cf(kyu_store_t *self, kyu_cf_t cf);
const rocksdb_readoptions_t *kyu_store_readopts(kyu_store_t *self);
/* New read options for a scan of many records at a load (sm_walk.c, sm_dedup.c): blocks read
 * ahead in large reads and kept out of the block cache (a start's scans of 10^7 records would
 * fill it with blocks no request reads again). Destroyed by the caller. */
rocksdb_readoptions_t *kyu_store_scan_readopts_create(void);

/* Reads a meta value stored as a big-endian u64; *found says whether it existed. */
kyu_code_t kyu_store_get_u64(kyu_store_t *self, kyu_cf_t cf, const char *key, size_t keylen,
                             uint64_t *value, bool *found, kyu_err_t *err);

/* Big-endian integer encoding for keys, so that byte order is numeric order. */
void kyu_put_be64(uint8_t *p, uint64_t v);
uint64_t kyu_get_be64(const uint8_t *p);
void kyu_put_be32(uint8_t *p, uint32_t v);
uint32_t kyu_get_be32(const uint8_t *p);

#endif
