/*
 * raft_log.h - the Raft log kept by the core: entries after the last snapshot, in memory.
 *
 * Indexes: (snap_index, snap_term) is the last entry covered by the snapshot; ents[i] has
 * index snap_index + 1 + i. stable is the last index the caller has said is durable; entries
 * above it are "unstable" and go out in the next Ready. commit and applied are the usual
 * Raft indexes; handed_out is the last committed index already given to the caller to apply.
 * Invariants: snap_index <= applied <= handed_out <= commit <= last; snap_index <= stable.
 * The log owns every entry's data.
 */
#ifndef KYU_RAFT_LOG_H
#define KYU_RAFT_LOG_H

#include "raft.h"

typedef struct {
    uint64_t snap_index;
    uint64_t snap_term;
    kyu_raft_entry_t *ents;
    size_t n;
    size_t cap;
    uint64_t stable;
    uint64_t commit;
    uint64_t applied;
    uint64_t handed_out;
} kyu_raft_log_t;

bool kyu_raft_log_init(kyu_raft_log_t *log, uint64_t snap_index, uint64_t snap_term,
                       const kyu_raft_entry_t *ents, size_t n);
void kyu_raft_log_free(kyu_raft_log_t *log);

uint64_t kyu_raft_log_first(const kyu_raft_log_t *log);
uint64_t kyu_raft_log_last(const kyu_raft_log_t *log);
uint64_t kyu_raft_log_last_term(const kyu_raft_log_t *log);
/* True and *term set if the term of index is known (snapshot boundary included). */
bool kyu_raft_log_term(const kyu_raft_log_t *log, uint64_t index, uint64_t *term);
bool kyu_raft_log_match(const kyu_raft_log_t *log, uint64_t index, uint64_t term);
const kyu_raft_entry_t *kyu_raft_log_entry(const kyu_raft_log_t *log, uint64_t index);
/* Election restriction (thesis 3.6.1): is (last_index, last_term) at least as up to date? */
bool kyu_raft_log_up_to_date(const kyu_raft_log_t *log, uint64_t last_index, uint64_t last_term);

/* Appends copies of ents; ents[0].index may be <= last, which truncates our suffix from
 * there (never below commit). Returns false when out of memory (log unchanged). */
bool kyu_raft_log_append(kyu_raft_log_t *log, const kyu_raft_entry_t *ents, size_t n);
/* AppendEntries consistency check and append. Returns false if (prev_index, prev_term) does
 * not match. Entries already present with the same term are kept (a stale or duplicated
 * message must not truncate what a newer one appended). *new_last = prev_index + n. */
bool kyu_raft_log_maybe_append(kyu_raft_log_t *log, uint64_t prev_index, uint64_t prev_term,
                               const kyu_raft_entry_t *ents, size_t n, uint64_t *new_last,
                               bool *nomem);
void kyu_raft_log_commit_to(kyu_raft_log_t *log, uint64_t index);
/* Fast back-off: the largest index <= index whose term is <= term (or whose term is no
 * longer known). Lets one rejection skip a whole term of conflicting entries. */
uint64_t kyu_raft_log_find_conflict_by_term(const kyu_raft_log_t *log, uint64_t index,
                                            uint64_t term);
/* The caller made entries up to index durable, as they were when handed out with term. */
void kyu_raft_log_stable_to(kyu_raft_log_t *log, uint64_t index, uint64_t term);
/* Drops entries <= index (index <= applied and <= stable). */
void kyu_raft_log_compact(kyu_raft_log_t *log, uint64_t index);
/* Replaces the whole log by a snapshot boundary (InstallSnapshot). */
void kyu_raft_log_restore(kyu_raft_log_t *log, uint64_t index, uint64_t term);

/* An entry with a block of its own (malloc: given to the core, or in a message). */
void kyu_raft_entry_free(kyu_raft_entry_t *e);
/* dst gets a block of its own with src's bytes (a message's entries, which leave the core). */
bool kyu_raft_entry_copy(kyu_raft_entry_t *dst, const kyu_raft_entry_t *src);
/* The log's entries and the ones a Ready hands out share their bytes: a block with a count
 * of its holders (raft_log.c). kyu_raft_entry_share_new makes one with src's bytes (the
 * log's copy of an entry given to it), kyu_raft_entry_ref holds src's (a shared entry: the
 * log's) once more, without a copy, and kyu_raft_entry_release lets go of a shared entry's. */
bool kyu_raft_entry_share_new(kyu_raft_entry_t *dst, const kyu_raft_entry_t *src);
void kyu_raft_entry_ref(kyu_raft_entry_t *dst, const kyu_raft_entry_t *src);
void kyu_raft_entry_release(kyu_raft_entry_t *e);

#endif
