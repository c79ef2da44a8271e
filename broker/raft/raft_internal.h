/*
 * raft_internal.h - the core's state, shared by the files that implement one concern each:
 *   raft.c           construction, inputs (tick, step's term stage, proposals), observers
 *   raft_election.c  pre-vote, vote, becoming follower/candidate/leader, check-quorum
 *   raft_replicate.c appends, heartbeats, the commit rule, transfer, follower handlers
 *   raft_snapshot.c  compaction, InstallSnapshot chunks (both sides)
 *   raft_conf.c      configurations: encoding, the latest one in the log, progress rebuild
 *   raft_ready.c     the outbox and the Ready/Advance hand-off
 * Nothing here is global: every function takes the core it works on.
 */
#ifndef KYU_RAFT_INTERNAL_H
#define KYU_RAFT_INTERNAL_H

#include "raft.h"
#include "raft_assert.h"
#include "raft_log.h"
#include "raft_progress.h"

/* A Ready's contents, owned by the core until kyu_raft_advance. */
typedef struct {
    bool out;
    kyu_raft_msg_t *msgs;
    size_t n_msgs;
    kyu_raft_entry_t *entries;
    size_t n_entries;
    kyu_raft_entry_t *committed;
    size_t n_committed;
    kyu_raft_snapshot_t snapshot;
    bool has_snapshot;
    uint64_t last_index; /* last entry handed out to persist, and its term */
    uint64_t last_term;
    uint64_t applied_to;
    uint64_t hs_term; /* term of the hard state handed out */
} kyu_raft_held_t;

struct kyu_raft {
    uint64_t id;
    uint64_t group;
    uint32_t election_ticks;
    uint32_t heartbeat_ticks;
    uint32_t max_inflight;
    uint32_t max_msg_entries;
    size_t max_msg_bytes;
    size_t snapshot_chunk;
    uint32_t max_uncommitted;

    uint64_t term;
    uint64_t vote;
    uint64_t lead;
    kyu_raft_role_t role;
    kyu_raft_log_t log;

    /* The latest configuration in the log (thesis 4.1: used as soon as appended). */
    kyu_raft_conf_t conf;
    uint64_t conf_index;

    /* Leader: one progress per member (voters and learners, self included). */
    kyu_raft_progress_t prs[KYU_RAFT_MAX_NODES * 2];
    size_t n_prs;

    /* Candidate / pre-candidate: answers received this election. */
    uint64_t vote_from[KYU_RAFT_MAX_NODES * 2];
    bool vote_granted[KYU_RAFT_MAX_NODES * 2];
    size_t n_votes;

    uint32_t election_elapsed;
    uint32_t heartbeat_elapsed;
    uint32_t randomized_timeout;
    uint64_t rng;
    uint64_t lead_transferee;

    /* The latest snapshot (sent to followers that fell behind the log). */
    kyu_raft_snapshot_t snap;
    bool snap_pending; /* received by InstallSnapshot, not yet handed out to install */
    /* An InstallSnapshot being received chunk by chunk. */
    kyu_raft_snapshot_t rx;
    uint64_t rx_total;
    size_t rx_cap;

    kyu_raft_msg_t *outbox;
    size_t n_out;
    size_t cap_out;
    kyu_raft_hard_state_t prev_hs;
    uint64_t durable_term; /* term of the last hard state known durable (advanced) */
    kyu_raft_held_t held;
};

/* raft_ready.c */
void kyu_raft_send(kyu_raft_t *r, kyu_raft_msg_t *m); /* takes ownership of m's buffers */
void kyu_raft_msg_free(kyu_raft_msg_t *m);
void kyu_raft_held_free(kyu_raft_t *r);

/* raft_election.c */
void kyu_raft_become_follower(kyu_raft_t *r, uint64_t term, uint64_t lead);
void kyu_raft_become_leader(kyu_raft_t *r);
void kyu_raft_campaign(kyu_raft_t *r, bool pre_vote, bool transfer);
void kyu_raft_handle_vote_request(kyu_raft_t *r, const kyu_raft_msg_t *m);
void kyu_raft_handle_vote_response(kyu_raft_t *r, const kyu_raft_msg_t *m);
void kyu_raft_tick_election(kyu_raft_t *r);
void kyu_raft_tick_leader(kyu_raft_t *r);
bool kyu_raft_promotable(const kyu_raft_t *r);
uint32_t kyu_raft_random_timeout(kyu_raft_t *r);

/* raft_replicate.c */
kyu_raft_progress_t *kyu_raft_progress(kyu_raft_t *r, uint64_t id);
bool kyu_raft_send_append(kyu_raft_t *r, kyu_raft_progress_t *pr, bool send_if_empty);
void kyu_raft_bcast_append(kyu_raft_t *r);
void kyu_raft_bcast_heartbeat(kyu_raft_t *r);
/* Sends an append to each follower that has not been told the commit index it holds. */
void kyu_raft_tell_commit(kyu_raft_t *r);
bool kyu_raft_maybe_commit(kyu_raft_t *r);
bool kyu_raft_append_entry(kyu_raft_t *r, kyu_raft_entry_type_t type, const void *data, size_t len,
                           uint64_t *index_out);
void kyu_raft_step_leader(kyu_raft_t *r, const kyu_raft_msg_t *m);
void kyu_raft_handle_append(kyu_raft_t *r, const kyu_raft_msg_t *m);
void kyu_raft_handle_heartbeat(kyu_raft_t *r, const kyu_raft_msg_t *m);
void kyu_raft_leader_self_ack(kyu_raft_t *r);

/* raft_snapshot.c */
void kyu_raft_send_snapshot_chunk(kyu_raft_t *r, kyu_raft_progress_t *pr);
void kyu_raft_handle_snapshot(kyu_raft_t *r, const kyu_raft_msg_t *m);
void kyu_raft_handle_snapshot_resp(kyu_raft_t *r, kyu_raft_progress_t *pr, const kyu_raft_msg_t *m);
void kyu_raft_snapshot_free(kyu_raft_snapshot_t *s);

/* raft_conf.c */
/* Recomputes conf from the log after entries from index first on changed (0 = all). */
void kyu_raft_conf_refresh(kyu_raft_t *r, uint64_t first);
void kyu_raft_conf_at(const kyu_raft_t *r, uint64_t index, kyu_raft_conf_t *out);
void kyu_raft_progress_rebuild(kyu_raft_t *r);

#endif
