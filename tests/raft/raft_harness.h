/*
 * raft_harness.h - a tiny in-memory cluster for the Raft unit tests: persistence is
 * immediate, messages are delivered in order unless a link is cut, the clock only moves
 * when a test ticks a node. Tests read as scenarios: elect, propose, stabilize, check.
 */
#ifndef KYU_RAFT_HARNESS_H
#define KYU_RAFT_HARNESS_H

#include "raft.h"

#define H_MAX 5
#define H_ELECTION 10
#define H_HEARTBEAT 1

typedef struct {
    int n;
    kyu_raft_t *nodes[H_MAX + 1]; /* by id, 1-based */
    bool cut[H_MAX + 1][H_MAX + 1];
    kyu_raft_msg_t *queue; /* messages in flight, deep copies */
    size_t n_queue, cap_queue;
    uint64_t applied[H_MAX + 1]; /* last index applied by each node */
    uint64_t snap_installed[H_MAX + 1];
    size_t msgs_seen[16]; /* per message type, for tests that count round trips */
    size_t rejects_seen;
} harness_t;

/* A cluster of n nodes; voters are 1..n_voters (the rest start with no configuration). */
harness_t *harness_new(int n, int n_voters, size_t snapshot_chunk);
void harness_destroy(harness_t **h);
kyu_raft_t *harness_node_new(uint64_t id, const kyu_raft_config_t *base);
/* Handles every Ready of every node and delivers messages until the cluster is quiet. */
void harness_stabilize(harness_t *h);
/* Ticks node id until it campaigns, then stabilizes. */
void harness_elect(harness_t *h, uint64_t id);
void harness_tick(harness_t *h, uint64_t id, int ticks);
uint64_t harness_propose(harness_t *h, uint64_t id, const char *text);
/* Cuts (or restores) every link to and from node id. */
void harness_isolate(harness_t *h, uint64_t id, bool cut);
/* Handles node r's Ready alone (messages discarded) and returns how many messages of type
 * it held; *last (if not NULL) gets a shallow copy of the last one (no entries/data). */
size_t harness_drain_one(kyu_raft_t *r, kyu_raft_msg_type_t type, kyu_raft_msg_t *last,
                         kyu_raft_ready_t *seen);

#endif
