/* flog: the Raft log in segment files (DIR/rlog), written by kyu itself.
 *
 * DIR/rlog/meta holds two 4 KiB slots written alternately (pwrite + fdatasync; the valid slot
 * with the higher sequence number wins): the hard state and the snapshot the log starts after
 * as of the last meta write, the first live segment, and the generation. DIR/rlog/seg-N
 * (N hex) are segments of a fixed size, zero-filled when created, so that a write overwrites
 * blocks the file already has and its fdatasync writes data only (no inode). Each write is a
 * run of records then an END record (overwritten by the next write), in one pwritev and one
 * fdatasync. A record is a 48-byte header {crc32, kind, entry type, len, segment number,
 * generation, index, term} and its payload; the crc (zlib) covers everything after it.
 *
 * Reading (at open) walks the live segments from the first one and stops at END, at a record
 * that does not check (short, bad crc, another segment's number: a recycled file's old
 * records) or one of a lower generation than the one before it (records left behind a
 * truncation or a crash). An entry that checks but does not follow the one before it is a
 * corrupt log (refused, as a gap was with RocksDB). The generation goes up at every meta write
 * (the first write after an open, a truncation, a compaction, an install), durably before a
 * record of the new generation is written: nothing that was not the log's tail can be read as
 * part of it. Hard state records (kind HS) ride with entries; those of a generation below the
 * meta's are older than the meta's own copy.
 *
 * Segments freed by compaction (below the meta's first segment), or left beyond the tail by a
 * truncation, are recycled: renamed to the next segment's name, their old records shut out by
 * the segment number. One file per 16 MiB of log is created in steady state only while the
 * log grows beyond what compaction frees.
 *
 * Threads: every function takes the flog's lock: the storage thread writes, the event loop
 * reads at startup (and tests read while the thread runs); a backup copies under it. */
#ifndef KYU_FLOG_H
#define KYU_FLOG_H

#include "kyu_err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KYU_FLOG_SEGMENT_BYTES (16u << 20)
#define KYU_FLOG_CONF_MAX (8 + 8 * 2 * 9)

typedef struct kyu_flog kyu_flog_t;

typedef struct {
    bool found;
    uint64_t term, vote, commit;
} kyu_flog_hs_t;

typedef struct {
    bool found;
    uint64_t index, term;
    uint8_t conf[KYU_FLOG_CONF_MAX];
    size_t conf_len;
} kyu_flog_snap_t;

enum { KYU_FLOG_ENTRY = 1, KYU_FLOG_HS = 2 };

/* One record of a write: an entry (index, term, type, payload; the payload is not copied) or
 * a hard state (kind HS, in hs). */
typedef struct {
    int kind;
    uint64_t index, term;
    int type;
    const void *payload;
    size_t len;
    kyu_flog_hs_t hs; /* kind HS */
} kyu_flog_rec_t;

/* Opens (creating when missing) the log in dir and reads it. seg_bytes 0: the default. A log
 * that is corrupt opens (the error is given by kyu_flog_check and refuses writes). */
kyu_flog_t *kyu_flog_open(const char *dir, uint64_t seg_bytes, kyu_err_t *err);
void kyu_flog_close(kyu_flog_t **self_p);

/* Whether the log read at open is sound (STORAGE with the reason otherwise). */
kyu_code_t kyu_flog_check(kyu_flog_t *self, kyu_err_t *err);
void kyu_flog_state(kyu_flog_t *self, kyu_flog_hs_t *hs, kyu_flog_snap_t *snap);
/* The first and last entries after the snapshot (0, 0 when none). */
void kyu_flog_range(kyu_flog_t *self, uint64_t *first, uint64_t *last);

typedef kyu_code_t (*kyu_flog_visit_fn)(void *arg, uint64_t index, uint64_t term, int type,
                                        const void *payload, size_t len, kyu_err_t *err);
/* Calls visit for every entry from index `from` on, in order. */
kyu_code_t kyu_flog_replay(kyu_flog_t *self, uint64_t from, kyu_flog_visit_fn visit, void *arg,
                           kyu_err_t *err);

/* Makes the tail segment's file ready (zero-filled), so that the first write is data-only. */
kyu_code_t kyu_flog_prepare(kyu_flog_t *self, kyu_err_t *err);
/* Writes recs (entries in order, each following the log's last) and syncs. On failure
 * nothing is taken as written: the same records (and more) are written again by the next
 * call, at the same offsets. */
kyu_code_t kyu_flog_write(kyu_flog_t *self, const kyu_flog_rec_t *recs, size_t n, kyu_err_t *err);
/* The same, only when the records fit in the tail segment and its file is ready: otherwise
 * KYU_ERR_BUSY and nothing is done (a roll to a new segment may have to zero-fill one: the
 * event loop, which writes a small round itself on one node, leaves that to the storage
 * thread). A failure is as kyu_flog_write's. */
kyu_code_t kyu_flog_write_in_tail(kyu_flog_t *self, const kyu_flog_rec_t *recs, size_t n,
                                  kyu_err_t *err);
/* Drops every entry from index on (a new leader's tail replaces it): a new generation. */
kyu_code_t kyu_flog_truncate(kyu_flog_t *self, uint64_t index, kyu_err_t *err);
/* Records snap as the log's start; segments wholly before it are recycled. */
kyu_code_t kyu_flog_compact(kyu_flog_t *self, const kyu_flog_snap_t *snap, kyu_err_t *err);
/* Replaces the whole log by snap and hs (synced). */
kyu_code_t kyu_flog_install(kyu_flog_t *self, const kyu_flog_snap_t *snap, const kyu_flog_hs_t *hs,
                            kyu_err_t *err);
/* Copies the log into out (which must not exist) as it is, synced; writes wait meanwhile. */
kyu_code_t kyu_flog_backup(kyu_flog_t *self, const char *out, kyu_err_t *err);

/* Tests: after skip data writes or syncs that succeed, the next n fail with errno e. */
void kyu_flog_fail_next(kyu_flog_t *self, int e, int skip, int n);

#endif
