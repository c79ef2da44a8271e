/*
 * sim.h - kyu-sim, the deterministic simulator of a Raft cluster (TigerBeetle-style).
 *
 * One seed drives everything: the run's options (picked by the seed and printed first),
 * the simulated network (sim_network.c), each node's disk and state machine (sim_node.c),
 * the faults and the client (sim_cluster.c), and the invariants checked after every step
 * (sim_checkers.c). Every node runs the real core from kyu_raft. Nothing reads a clock or
 * a global random source, so the same seed always gives the same run.
 */
#ifndef KYU_SIM_H
#define KYU_SIM_H

#include "raft.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define SIM_MAX_NODES 7

/* ---- PRNG: splitmix64, one per run ---- */
typedef struct {
    uint64_t s;
} sim_rng_t;

uint64_t sim_rng_next(sim_rng_t *rng);
/* Uniform in [0, n) (n > 0). */
uint64_t sim_rng_below(sim_rng_t *rng, uint64_t n);
/* True with probability pm / 1000. */
bool sim_rng_chance(sim_rng_t *rng, uint32_t pm);
uint64_t sim_hash(const void *data, size_t len, uint64_t seed);
uint64_t sim_mix(uint64_t a, uint64_t b);

/* ---- options the seed picks ---- */
typedef struct {
    int nodes;
    uint64_t seed;
    uint64_t steps; /* safety phase length */
    uint64_t liveness_steps;
    bool verbose;
    /* network */
    uint32_t drop_pm, dup_pm, long_delay_pm;
    uint32_t delay_min, delay_max, long_delay_max;
    uint32_t partition_pm, heal_pm;
    /* nodes */
    uint32_t crash_pm, restart_pm, clock_jump_pm;
    uint32_t crash_leader_pm, isolate_leader_pm; /* faults aimed at the leader */
    uint32_t down_max;                           /* steps a crashed node stays down, at most */
    uint32_t disk_latency_max;
    /* raft */
    uint32_t election_ticks, heartbeat_ticks, max_inflight, max_msg_entries;
    uint32_t snapshot_chunk, compact_after, snap_pad, max_uncommitted;
    /* client and operator */
    uint32_t propose_pm, conf_pm, transfer_pm;
    bool spare_node;   /* the last node starts outside the configuration */
    uint32_t plant;    /* kyu-sim-kyu: the planted bug to run with (0: none) */
    uint32_t scenario; /* kyu-sim-kyu --scenario: SIM_SCENARIO_* (0: none) */
    bool write_now;    /* kyu-sim-kyu --write-now: followers' disks take the loop's writes */
    bool no_early;     /* kyu-sim-kyu --no-early: early receives on a lone voter only */
} sim_options_t;

/* Scenarios: a fault shaped to make one chain of events likely in every seed (kyu-sim-kyu
 * --scenario NAME; docs/RAFT.md).
 *   deposed  a leader paused with a write out stays paused until another node leads and has
 *            committed in its term; on resume the network delivers what waited for it in any
 *            order, and its disk is slow for a while (a host that stopped it was overloaded). */
enum { SIM_SCENARIO_NONE = 0, SIM_SCENARIO_DEPOSED = 1 };

void sim_options_pick(sim_options_t *o, int nodes, uint64_t seed, uint64_t steps);
void sim_options_print(const sim_options_t *o, FILE *f);

/* ---- trace: the recent events, printed when an invariant breaks ---- */
#define SIM_TRACE_LINES 300
#define SIM_TRACE_WIDTH 200
typedef struct {
    char lines[SIM_TRACE_LINES][SIM_TRACE_WIDTH];
    size_t next;
    size_t count;
    bool verbose;
} sim_trace_t;

void sim_trace(sim_trace_t *t, uint64_t now, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void sim_trace_dump(const sim_trace_t *t, FILE *f);

/* ---- network ---- */
typedef struct {
    uint64_t deliver_at;
    uint64_t sent_at;
    kyu_raft_msg_t m; /* deep copy owned by the network */
} sim_packet_t;

typedef struct {
    sim_packet_t *q;
    size_t n, cap;
    /* blocked[from][to]: the link drops everything (partitions, one-way or not). */
    bool blocked[SIM_MAX_NODES + 1][SIM_MAX_NODES + 1];
    bool faulty; /* drops, duplicates and long delays on (safety phase) */
} sim_network_t;

void sim_network_free(sim_network_t *net);
/* Copies m into the network with a delay the seed picks (or drops / duplicates it). */
void sim_network_send(sim_network_t *net, sim_rng_t *rng, const sim_options_t *o, uint64_t now,
                      const kyu_raft_msg_t *m);
/* Removes the packets due at now, in a shuffled order; caller frees them. */
size_t sim_network_take_due(sim_network_t *net, sim_rng_t *rng, uint64_t now, sim_packet_t **out);
/* The packets node `from` sent at step `now` leave only at step `until` (its process paused
 * before they reached the wire), each after its own delay from then. */
void sim_network_hold_from(sim_network_t *net, uint64_t from, uint64_t now, uint64_t until);
void sim_msg_free(kyu_raft_msg_t *m);

/* ---- a node: core + disk + state machine ---- */
typedef struct {
    kyu_raft_hard_state_t hs;
    kyu_raft_snapshot_t snap; /* index 0: none */
    kyu_raft_entry_t *ents;   /* entries after snap.index, in order */
    size_t n, cap;
} sim_disk_t;

typedef struct {
    uint64_t id;
    kyu_raft_t *raft; /* NULL while crashed (kyu-sim-kyu: the replica's core, read only) */
    kyu_raft_conf_t boot_conf;
    sim_disk_t disk;
    bool busy; /* a Ready is being written */
    kyu_raft_ready_t rd;
    uint64_t write_done_at;
    uint64_t sm_applied; /* the state machine: a hash chain over applied entries */
    uint64_t sm_chain;
    uint64_t commit_seen;
    uint64_t restart_at;
    uint32_t paused_ticks; /* clock stalls */
    /* A paused process (SIGSTOP, a VM paused by its hypervisor): until this step it runs
     * nothing (no tick, no message, no storage report); what reaches it waits in `held`,
     * in order of arrival, and is stepped first when it resumes. 0: running. */
    uint64_t frozen_until;
    /* A pause that lasts until another node leads and has committed in its term, but not past
     * step freeze_max (0: a pause of fixed length); the backlog is then delivered in any
     * order (freeze_shuffle). resumed_at: the step of the last resume. */
    uint64_t freeze_max, resumed_at;
    bool freeze_shuffle;
    sim_packet_t *held;
    size_t n_held, cap_held;
    kyu_raft_role_t role_seen;
    uint64_t term_seen;
    void *app; /* the application's per-node state (kyu-sim-kyu: replica, store, disk queue) */
} sim_node_t;

/* ---- invariants ---- */
typedef struct {
    uint64_t index, term, prev_term, hash;
    uint64_t gen; /* a slot of an older generation is empty */
} sim_entry_rec_t;

/* Open addressing on (index, term). Starting a new generation empties it in O(1). */
typedef struct {
    sim_entry_rec_t *slots;
    size_t cap, n;
    uint64_t gen;
} sim_entry_table_t;

typedef struct {
    uint64_t term, obs_term; /* obs_term: a term at or after the commit */
    uint64_t hash;
    uint64_t chain;
    bool committed, applied;
    uint64_t acked_hash; /* 0: no acknowledged proposal here */
} sim_index_rec_t;

typedef struct {
    uint64_t *leader_of_term; /* node id per term */
    size_t n_terms;
    sim_entry_table_t durable; /* every entry ever written to a disk */
    sim_entry_table_t live;    /* the entries of the live logs, this step */
    sim_index_rec_t *idx;      /* per log index */
    size_t idx_cap;
    uint64_t max_acked;
    uint64_t max_committed;
    uint64_t *vote_of[SIM_MAX_NODES + 1]; /* per node, per term: the candidate it voted for */
    size_t vote_terms[SIM_MAX_NODES + 1];
} sim_checker_t;

/* ---- the cluster ---- */
typedef enum { SIM_OK = 0, SIM_SAFETY = 1, SIM_LIVENESS = 2 } sim_result_t;

typedef struct {
    uint64_t node, index, term, hash;
} sim_proposal_t;

/* What a run exercised (printed as totals: evidence the seeds reach deep states). */
typedef struct {
    uint64_t steps, acked, elections, crashes, snapshots_installed, compactions;
    uint64_t conf_changes, transfers, partitions;
} sim_stats_t;

#define SIM_APP_COUNTS 22

typedef struct sim_app sim_app_t;

typedef struct {
    sim_options_t o;
    const sim_app_t *app; /* NULL: the model state machine (a hash chain) */
    void *app_state;
    sim_rng_t rng;
    uint64_t now;
    sim_node_t nodes[SIM_MAX_NODES];
    int n;
    sim_network_t net;
    sim_checker_t chk;
    sim_trace_t trace;
    sim_proposal_t pending[64];
    size_t n_pending;
    uint64_t next_client_id;
    uint64_t acked;
    sim_stats_t stats;
    bool faults;
    /* A scenario plays (--scenario): until this step the seed's own faults stay off (the
     * network reliable, no crash, partition, clock jump, membership change, transfer, disk
     * stall or slow disk), only down nodes restart. */
    uint64_t quiet_until;
    sim_result_t result;
    char violation[512];
    /* liveness phase: the probe proposal that must reach every member */
    uint64_t probe_index, probe_term;
    bool probe_acked;
} sim_cluster_t;

/* ---- the application: what a node runs ----
 *
 * kyu-sim runs the bare core with the model state machine (a hash chain over the applied
 * entries, kept in sim_node_t) through sim_node.c's Ready loop. kyu-sim-kyu plugs in the
 * broker's replica instead (sim_kyu*.c): each node runs broker/replica.c over a simulated
 * disk, network and clock, with the real state machine and store. The hooks replace
 * sim_node.c's node and the model client; every Raft-level invariant is still checked (the
 * node engine reports durable entries, messages, applies and acknowledgements to
 * sim_checkers.c). All hooks are called on the one simulation thread. */
struct sim_app {
    const char *name; /* the binary's name, for messages */
    /* After sim_cluster_init has picked the options, before any node starts / after the
     * run (stops every node still up, sets its nd->raft to NULL). */
    bool (*seed_begin)(sim_cluster_t *c);
    void (*seed_end)(sim_cluster_t *c);
    /* A node starts from its disk and state (nd->raft then points at its core, read only),
     * or crashes (loses what was not durable; nd->raft NULL). */
    bool (*node_start)(sim_cluster_t *c, sim_node_t *nd);
    void (*node_crash)(sim_cluster_t *c, sim_node_t *nd);
    /* The node's inputs: a message, a tick, and the end of the step (disk writes and
     * fetches that are due, then the Ready loop). */
    void (*node_step)(sim_cluster_t *c, sim_node_t *nd, const kyu_raft_msg_t *m);
    void (*node_tick)(sim_cluster_t *c, sim_node_t *nd);
    void (*node_process)(sim_cluster_t *c, sim_node_t *nd);
    /* The client sends requests to leader nd; client_waiting: a request waits at a node
     * that leads (the liveness phase then sends no new probe). */
    void (*client)(sim_cluster_t *c, sim_node_t *nd);
    bool (*client_waiting)(sim_cluster_t *c);
    /* The operator, on leader nd: true when the change or transfer was started. */
    bool (*conf_change)(sim_cluster_t *c, sim_node_t *nd, kyu_raft_cc_op_t op, uint64_t node);
    bool (*transfer)(sim_cluster_t *c, sim_node_t *nd, uint64_t target);
    /* The liveness phase converged: final checks of the states. */
    void (*converged)(sim_cluster_t *c);
    /* What the seed exercised, added to the totals under these names (NULL-terminated, at
     * most SIM_APP_COUNTS). */
    const char *const *count_names;
    void (*count)(sim_cluster_t *c, uint64_t *counts);
};

/* kyu-sim: NULL (sim_app_model.c); kyu-sim-kyu: the real replica (sim_kyu.c). */
const sim_app_t *sim_app(void);

/* sim_node.c */
bool sim_node_start(sim_cluster_t *c, sim_node_t *nd);
void sim_node_crash(sim_cluster_t *c, sim_node_t *nd);
void sim_node_process(sim_cluster_t *c, sim_node_t *nd);
void sim_node_free(sim_node_t *nd);
/* A paused process: frozen for `steps` steps from now (sim_cluster.c delivers and runs
 * nothing meanwhile); what it sent this step leaves when it resumes. */
void sim_node_freeze(sim_cluster_t *c, sim_node_t *nd, uint64_t steps);
void sim_node_drop_held(sim_node_t *nd);
/* The disk: entries from index on go; one more entry (copied); the snapshot record (copied);
 * entries up to index go; everything goes. */
void sim_disk_truncate_from(sim_disk_t *d, uint64_t index);
void sim_disk_append(sim_disk_t *d, const kyu_raft_entry_t *e);
void sim_disk_set_snapshot(sim_disk_t *d, const kyu_raft_snapshot_t *s);
void sim_disk_compact(sim_disk_t *d, uint64_t index);
void sim_disk_free(sim_disk_t *d);
void sim_snapshot_encode(uint64_t index, uint64_t chain, uint32_t pad, uint8_t **data, size_t *len);

/* sim_cluster.c */
bool sim_cluster_init(sim_cluster_t *c, const sim_options_t *o);
void sim_cluster_free(sim_cluster_t *c);
sim_result_t sim_cluster_run(sim_cluster_t *c);
void sim_violation(sim_cluster_t *c, sim_result_t kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* sim_checkers.c */
void sim_checker_free(sim_checker_t *k);
/* Called for every entry a state machine applies, and for every snapshot installed. */
void sim_check_apply(sim_cluster_t *c, sim_node_t *nd, const kyu_raft_entry_t *e,
                     uint64_t chain_after);
void sim_check_snapshot(sim_cluster_t *c, sim_node_t *nd, uint64_t index, uint64_t chain);
void sim_check_ack(sim_cluster_t *c, uint64_t index, uint64_t hash);
/* Called for every entry written to a disk, with the term of the entry before it. */
void sim_check_durable(sim_cluster_t *c, sim_node_t *nd, const kyu_raft_entry_t *e,
                       uint64_t prev_term);
/* Called for every message a node sends: one vote per node per term. */
void sim_check_message(sim_cluster_t *c, const kyu_raft_msg_t *m);
/* After every step: election safety, log matching, commit safety, leader completeness. */
void sim_check_step(sim_cluster_t *c);
uint64_t sim_entry_hash(const kyu_raft_entry_t *e);

#endif
