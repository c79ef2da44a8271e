/*
 * raft_progress.h - what a leader knows of each follower (etcd's tracker), and quorum math.
 *
 * A follower's progress is in one of three states:
 *   PROBE      the leader does not know where the follower's log matches; it sends one
 *              append at a time and backs off on rejection (fast, by term: see raft_log.h);
 *   REPLICATE  the logs match up to match; appends are pipelined up to max_inflight;
 *   SNAPSHOT   the follower needs a snapshot; chunks go out one at a time.
 */
#ifndef KYU_RAFT_PROGRESS_H
#define KYU_RAFT_PROGRESS_H

#include "raft.h"

#define KYU_RAFT_MAX_INFLIGHT 64

typedef enum {
    KYU_RAFT_PR_PROBE = 0,
    KYU_RAFT_PR_REPLICATE,
    KYU_RAFT_PR_SNAPSHOT,
} kyu_raft_pr_state_t;

typedef struct {
    uint64_t id;
    bool learner;
    uint64_t match;
    uint64_t next;
    kyu_raft_pr_state_t state;
    bool probe_sent;    /* PROBE: an append is out; wait for its answer or a heartbeat   */
    bool recent_active; /* heard from it since the last check-quorum round              */
    /* PIPELINE: last index of each append in flight, oldest first (a ring). */
    uint64_t infl[KYU_RAFT_MAX_INFLIGHT];
    uint32_t infl_start;
    uint32_t infl_count;
    uint32_t infl_max;
    /* SNAPSHOT: which snapshot is being sent and the next byte to send. */
    uint64_t snap_index;
    uint64_t snap_offset;
    uint32_t snap_idle; /* heartbeats without progress; resend the chunk when it grows */
    /* The commit index this follower learns from what was sent to it (each append's commit
     * clipped to the append's last entry, each heartbeat's): a commit it has not been told
     * of goes out with the next append, or at the next tick. */
    uint64_t commit_told;
} kyu_raft_progress_t;

void kyu_raft_pr_init(kyu_raft_progress_t *pr, uint64_t id, bool learner, uint64_t next,
                      uint32_t infl_max);
void kyu_raft_pr_become_probe(kyu_raft_progress_t *pr);
void kyu_raft_pr_become_replicate(kyu_raft_progress_t *pr);
void kyu_raft_pr_become_snapshot(kyu_raft_progress_t *pr, uint64_t snap_index);
/* An acknowledgement up to index: returns true if match moved. */
bool kyu_raft_pr_maybe_update(kyu_raft_progress_t *pr, uint64_t index);
/* A rejection of the append at prev index rejected, the follower hinting hint. Returns false
 * if the rejection is stale (for an older append). */
bool kyu_raft_pr_maybe_decr_to(kyu_raft_progress_t *pr, uint64_t rejected, uint64_t hint);
bool kyu_raft_pr_is_paused(const kyu_raft_progress_t *pr);
/* Records an append whose last entry is last (pipelining) or marks the probe sent. */
void kyu_raft_pr_sent(kyu_raft_progress_t *pr, uint64_t last, size_t n_entries);
void kyu_raft_pr_free_first(kyu_raft_progress_t *pr);

/* The largest index that a majority of the n values reach (n > 0). */
uint64_t kyu_raft_quorum_index(const uint64_t *vals, size_t n);

typedef enum {
    KYU_RAFT_VOTE_PENDING,
    KYU_RAFT_VOTE_WON,
    KYU_RAFT_VOTE_LOST
} kyu_raft_vote_result_t;
kyu_raft_vote_result_t kyu_raft_quorum_vote(size_t n_voters, size_t granted, size_t rejected);

#endif
