/* log: the durable command log and its storage thread.
 *
 * Entries live in the store's segment files (DIR/rlog, flog.h). Appends are made durable by a
 * storage thread, so the event loop never waits on disk: the loop hands entries over and goes
 * on serving; the thread writes every entry that has arrived since its last write in one
 * pwritev, straight from the messages it was handed, and one fdatasync (group commit: while
 * one fsync runs, the next batch gathers) and then reports "durable up to write N" on the
 * pipe. Nothing that depends on an entry (a reply, for one) may happen before that report.
 * The one exception to "the loop never waits on disk": a small round of a lone voter or of a
 * follower, which the loop writes itself (kyu_log_write_now) when nothing else is being
 * written, since it would only wait for the report anyway; two thread hand-offs fewer per
 * durable round trip (on a follower, before its acknowledgement leaves).
 *
 * Reads (replay at startup) happen on the caller's thread before the loop starts.
 */
#ifndef KYU_LOG_H
#define KYU_LOG_H

#include "store.h"

#include <czmq.h>

#define KYU_GROUP_ID 1

/* Entry types are the Raft core's (kyu_raft_entry_type_t): normal, no-op, conf. */
typedef enum { KYU_ENTRY_NORMAL = 0, KYU_ENTRY_NOOP = 1, KYU_ENTRY_CONF = 2 } kyu_entry_type_t;

typedef struct kyu_log kyu_log_t;

/* Starts the storage thread over store (which must outlive the log). */
kyu_log_t *kyu_log_new(kyu_store_t *store, kyu_err_t *err);
/* Stops the storage thread after it finishes the write under way. */
void kyu_log_destroy(kyu_log_t **self_p);

/* The socket on which the thread reports; readable when kyu_log_recv has an event. */
zsock_t *kyu_log_sock(kyu_log_t *self);

/* Raft's durable state besides the entries (flog.h: hard state records in the stream and the
 * meta file): the hard state, and the snapshot the log starts after. */
typedef struct {
    bool found;
    uint64_t term, vote, commit;
} kyu_log_hard_state_t;

typedef struct {
    bool found;
    uint64_t index, term;
    uint8_t conf[8 + 8 * 2 * 9]; /* kyu_raft_conf_encode form */
    size_t conf_len;
} kyu_log_snapshot_t;

typedef struct {
    uint64_t index, term;
    int type;
    const void *payload;
    size_t len;
} kyu_log_entry_t;

/* Hands one Raft write to the storage thread (copies everything): hs when not NULL, and the
 * entries, after deleting every stored entry from entries[0].index on when truncate is set
 * (a new leader's log replaces a conflicting tail: kyu_flog_truncate). *token numbers the write; a
 * report "durable up to token T" covers every write up to T. */
kyu_code_t kyu_log_write(kyu_log_t *self, const kyu_log_hard_state_t *hs,
                         const kyu_log_entry_t *entries, size_t n, bool truncate, uint64_t *token,
                         kyu_err_t *err);
/* Writes hs (when not NULL) and the entries on the caller's thread and returns once they are
 * durable (one pwritev and one fdatasync, the payloads not copied): on one node the event loop
 * writes a small round itself, without the two thread hand-offs of kyu_log_write
 * (docs/ARCHITECTURE.md, "The Raft log's files"). Only while no write handed to the storage
 * thread is waiting to be reported durable, and never a truncation. KYU_ERR_BUSY: nothing was
 * done (the write would need a new segment, whose file may have to be zero-filled first: that
 * is the storage thread's). Any other error: the write failed and the log is as it was; the
 * caller hands the same write to kyu_log_write, which writes it again, whole. */
kyu_code_t kyu_log_write_now(kyu_log_t *self, const kyu_log_hard_state_t *hs,
                             const kyu_log_entry_t *entries, size_t n, kyu_err_t *err);
/* One normal entry, no hard state (tests write logs as a crash leaves them with this). */
kyu_code_t kyu_log_append(kyu_log_t *self, uint64_t index, uint64_t term, const void *payload,
                          size_t len, kyu_err_t *err);
/* Asks the storage thread to record snap as the log's start and drop the entries up to
 * snap->index (they are applied, and the state is synced first). */
void kyu_log_compact(kyu_log_t *self, const kyu_log_snapshot_t *snap);

/* Snapshot install: replaces the whole log by snap (every entry goes, the record says where
 * the log starts) and writes hs, synced; reported durable under *token like a write. */
kyu_code_t kyu_log_install(kyu_log_t *self, const kyu_log_snapshot_t *snap,
                           const kyu_log_hard_state_t *hs, uint64_t *token, kyu_err_t *err);
/* The same at startup, on the caller's thread (before the storage thread runs). */
kyu_code_t kyu_log_reset(kyu_store_t *store, const kyu_log_snapshot_t *snap,
                         const kyu_log_hard_state_t *hs, kyu_err_t *err);

/* A failed write (ENOSPC, EIO from the write or its fsync) is reported once, failed set:
 * the storage thread keeps the batch and, once the data directory has room (32 MiB; looked
 * at every second; attempts that fail back off from 1 s to 16 s), writes it again, whole, at
 * the same offsets, and fdatasyncs; later writes join it. Its DURABLE report follows when
 * that succeeds. Nothing is reported durable that was not written by a
 * write and fsync that succeeded (docs/ARCHITECTURE.md, "A full or failing disk"). */
typedef struct {
    bool failed;    /* the write failed: nothing past the last durable index is on disk */
    uint64_t index; /* durable up to this write token */
    char error[KYU_ERR_MSG_MAX];
} kyu_log_event_t;

/* Reads one report of the storage thread (call when kyu_log_sock is readable). */
kyu_code_t kyu_log_recv(kyu_log_t *self, kyu_log_event_t *ev, kyu_err_t *err);

/* Startup: the last index stored in the log (0 when empty). */
kyu_code_t kyu_log_last_index(kyu_store_t *store, uint64_t *index, kyu_err_t *err);
/* Startup: the first index stored in the log (0 when empty). */
kyu_code_t kyu_log_first_index(kyu_store_t *store, uint64_t *index, kyu_err_t *err);
/* Startup: the stored hard state and snapshot descriptor (found = false when absent). */
kyu_code_t kyu_log_load_state(kyu_store_t *store, kyu_log_hard_state_t *hs,
                              kyu_log_snapshot_t *snap, kyu_err_t *err);

typedef kyu_code_t (*kyu_log_visit_fn)(void *arg, uint64_t index, uint64_t term, int type,
                                       const void *payload, size_t len, kyu_err_t *err);
/* Startup: calls visit for every entry from index `from` to the end, in order. Refuses a log
 * with a gap or a record that does not parse (a corrupt log must not start). */
kyu_code_t kyu_log_replay(kyu_store_t *store, uint64_t from, kyu_log_visit_fn visit, void *arg,
                          kyu_err_t *err);

/* The seam between the replica and its log storage (replica.h), as nng and libuv make their
 * transports and file systems pluggable: the broker plugs in this file's storage thread over
 * the segment files (kyu_log_ops, with a kyu_log_t as `log`), kyu-sim-kyu a simulated
 * disk. Every callback runs on the replica's thread (the event loop); `log` is the argument
 * given with the ops. Records are copied before a callback returns: the caller keeps
 * ownership of everything it passes. */
typedef struct {
    /* Startup reads (may block on the disk; called before any write). Idempotent. As
     * kyu_log_load_state, kyu_log_first_index, kyu_log_last_index and kyu_log_replay. */
    kyu_code_t (*load_state)(void *log, kyu_log_hard_state_t *hs, kyu_log_snapshot_t *snap,
                             kyu_err_t *err);
    kyu_code_t (*first_index)(void *log, uint64_t *index, kyu_err_t *err);
    kyu_code_t (*last_index)(void *log, uint64_t *index, kyu_err_t *err);
    kyu_code_t (*replay)(void *log, uint64_t from, kyu_log_visit_fn visit, void *arg,
                         kyu_err_t *err);
    /* Startup only: replaces the log by snap and hs and returns once that is durable
     * (blocks). Idempotent. */
    kyu_code_t (*reset)(void *log, const kyu_log_snapshot_t *snap, const kyu_log_hard_state_t *hs,
                        kyu_err_t *err);
    /* Hands one write over (kyu_log_write) and returns at once: never blocks on the disk.
     * Writes become durable in the order given; durability is reported later, by a
     * kyu_log_event_t the owner hands to kyu_replica_on_log_event ("durable up to token
     * T" covers every write and install up to T). Not idempotent: each call is one more
     * write. An error means nothing was handed over. */
    kyu_code_t (*write)(void *log, const kyu_log_hard_state_t *hs, const kyu_log_entry_t *entries,
                        size_t n, bool truncate, uint64_t *token, kyu_err_t *err);
    /* Snapshot install (kyu_log_install): like write, reported under *token. */
    kyu_code_t (*install)(void *log, const kyu_log_snapshot_t *snap, const kyu_log_hard_state_t *hs,
                          uint64_t *token, kyu_err_t *err);
    /* Compaction (kyu_log_compact): records snap as the log's start and drops the entries up
     * to it, after making the state database durable; in order with the writes, never
     * blocks, never reported (an optimisation: a lost one leaves a longer log). */
    void (*compact)(void *log, const kyu_log_snapshot_t *snap);
    /* Optional (NULL: every write goes through write). As kyu_log_write_now: writes a small
     * write of one voter at once, blocking on the disk, and returns KYU_OK once it is
     * durable (no report follows); KYU_ERR_BUSY when it did nothing; another error when it
     * failed with the log left as it was (the caller then hands the write to write). Called
     * only when every earlier write is reported durable, never with a truncation. */
    kyu_code_t (*write_now)(void *log, const kyu_log_hard_state_t *hs,
                            const kyu_log_entry_t *entries, size_t n, kyu_err_t *err);
} kyu_log_ops_t;

/* The storage thread's ops; their `log` argument is a kyu_log_t. */
extern const kyu_log_ops_t kyu_log_ops;

#endif
