/* replica: the log → commit → apply path, over kyu's Raft core (broker/raft/raft.h).
 *
 * Proposals (commands) gather in an open entry. Once per Ready round the open entry is
 * proposed to the core as one Raft entry (natural batching: while one fsync runs, the next
 * entry fills). The replica runs the core's Ready/Advance loop: messages that promise
 * nothing go out at once; entries and hard state go to the log's storage thread; messages
 * that promise a vote or a log go out only when the storage thread reports that write
 * durable; then committed entries are applied through kyu_sm_apply (the one apply path)
 * and each waiting command gets its result. No result is ever given before its entry is
 * committed (durable on a majority; for a single node, fsynced).
 *
 * Waiters are keyed by the (term, index) of their entry: an entry that commits at that index
 * with another term, or a leadership lost before the entry commits, answers its waiters
 * NOT_LEADER (the request may still be applied if the entry survives: clients retry it with
 * the same request key, and the state machine applies a keyed write once: sm_dedup.c).
 *
 * A node with no peers is a one-voter cluster on the same path, except that it writes a small
 * round (KYU_REPLICA_WRITE_HERE_MAX) itself through the log's write_now, when the log has one,
 * instead of handing it to the storage thread and waiting for the report (replica.c,
 * write_here); so does a follower, which then acknowledges the append right after its own
 * fdatasync. Owned by the event loop.
 */
#ifndef KYU_REPLICA_H
#define KYU_REPLICA_H

#include "log.h"
#include "peers.h"
#include "sm.h"

#define KYU_REPLICA_PENDING_MAX 20000            /* commands proposed and not yet applied */
#define KYU_REPLICA_BYTES_MAX (64u << 20)        /* their bytes (open entry included) */
#define KYU_ENTRY_BYTES_MAX (8 << 20)            /* an open entry is proposed at this size */
#define KYU_REPLICA_WRITE_HERE_MAX (4u << 10)    /* a small round written on the loop */
#define KYU_REPLICA_TICK_MS 10                   /* one Raft tick */
#define KYU_REPLICA_LOG_WINDOW 16384             /* applied entries kept for slow followers... */
#define KYU_REPLICA_LOG_WINDOW_BYTES (64u << 20) /* ...unless they hold more bytes */
/* The log's files keep the entries the state's tables do not hold (a kill -9 replays them),
 * up to about this many windows past its compaction before a flush is asked for. */
#define KYU_REPLICA_DURABLE_LAG 4

typedef struct kyu_replica kyu_replica_t;

/* Called once per proposal with its result (or an error result when its entry could not be
 * committed). The waiter is the pointer given to kyu_replica_propose; the callee owns it
 * from then on. The result is only valid during the call. */
typedef void (*kyu_replica_done_fn)(void *arg, void *waiter, kyu_result_t *result);

/* The seams through which the replica reaches the world besides its state machine: its log
 * storage (kyu_log_ops_t, log.h), its transport and its clock. The broker plugs in the
 * storage thread, transport.c with snapshot.c, and the system clock (sys_clock.h);
 * kyu-sim-kyu plugs in a simulated disk, network and time and runs this very code. Every
 * callback is called on the replica's thread, from inside a kyu_replica_* call. */
typedef struct {
    /* Sends a Raft message to msg->to. Must not block: a message that cannot go is dropped
     * (Raft retries). Not idempotent (each call is a send); msg is only valid during the
     * call (copy it). */
    void (*send)(void *arg, const kyu_raft_msg_t *msg);
    /* Asks for a state of at least min_index from member server (snapshot.h). Must not
     * block: the outcome comes back later through kyu_replica_install_done, exactly once
     * per call. NULL: this node cannot install a snapshot (it stops when it needs one). */
    void (*install)(void *arg, uint64_t server, uint64_t min_index);
} kyu_replica_transport_t;

typedef struct {
    /* The wall clock, in ms since the Unix epoch. Must not block; may step back (the
     * replica never lets the time it proposes go back). */
    uint64_t (*wall_ms)(void *arg);
    /* A monotonic clock, in ms from any origin: never steps back. The cluster's time
     * advances at its rate (broker/cluster_time.h). Must not block. */
    uint64_t (*mono_ms)(void *arg);
    /* A random seed for the Raft core's election timeouts, read once at startup. False
     * when no randomness could be had (the replica then refuses to start). */
    bool (*random_seed)(void *arg, uint64_t *seed);
} kyu_replica_clock_t;

/* Called after each entry is applied, before its waiters are answered, with the result of
 * each of its commands (n of them). For tests and the simulator: with it, results are made
 * for every entry, also on followers. */
typedef void (*kyu_replica_applied_fn)(void *arg, const kyu_raft_entry_t *entry,
                                       const kyu_result_t *results, size_t n);

typedef struct {
    uint64_t node_id;         /* this node; 1 when peers is NULL */
    const kyu_peers_t *peers; /* NULL or empty: a one-voter cluster */
    /* The log (required): the storage thread (kyu_log_ops over a kyu_log_t) or a
     * simulated disk. */
    const kyu_log_ops_t *log;
    void *log_arg;
    /* NULL for a one-voter cluster without snapshot transfer. */
    const kyu_replica_transport_t *transport;
    void *transport_arg;
    /* The clock (required): kyu_sys_clock (sys_clock.h) or a simulated one. */
    const kyu_replica_clock_t *clock;
    void *clock_arg;
    uint32_t election_ticks; /* 0: 100 ticks (1 to 2 s) in a cluster, 2 for one voter */
    uint64_t log_window;     /* applied entries kept (0: KYU_REPLICA_LOG_WINDOW) */
    /* Entries the state machine buffers before it writes them (kyu_sm_set_write_every; 0: at
     * most half the log window, so that the log can be compacted behind the window). */
    uint32_t state_write_every;
    /* Join an existing cluster instead of bootstrapping one: a node without data starts
     * with an empty configuration and waits for a leader to add it (kyu cluster add). */
    bool join;
    /* Receives answered early (kyu_replica_receive_early) in a cluster too: kyu-sim-kyu sets
     * it, to prove the overlay where leaders change. The broker answers early only as a lone
     * voter (no other voter, no learner): in a cluster a lease answered early and lost with
     * its leader would make the message visible to another consumer before its visibility
     * timeout, with the same receipt; its consumers keep that guarantee across failovers. */
    bool early_in_clusters;
    uint64_t max_clock_skew_ms; /* 0: KYU_CLUSTER_TIME_SKEW_DEFAULT_MS (cluster_time.h) */
    /* Bounds on what waits (0: KYU_ENTRY_BYTES_MAX and KYU_REPLICA_BYTES_MAX; tests and
     * kyu-sim use small ones). */
    size_t entry_bytes_max, bytes_max;
    /* Tuning of the Raft core (0: the broker's settings; kyu-sim varies them per seed). */
    uint32_t heartbeat_ticks, max_inflight, max_msg_entries, max_uncommitted;
    size_t max_msg_bytes;
    kyu_replica_applied_fn applied; /* NULL: no observer */
    void *applied_arg;
    /* Where the replica's few lines of news go (snapshot fetches, boot resets, failures);
     * NULL: stderr. */
    void (*say)(void *arg, const char *line);
    void *say_arg;
} kyu_replica_config_t;

/* Rebuilds the Raft core from the log (hard state, snapshot record, entries) and applies the
 * entries known committed, then serves. */
kyu_replica_t *kyu_replica_new(kyu_store_t *store, kyu_sm_t *sm, const kyu_replica_config_t *cfg,
                               kyu_replica_done_fn done, void *done_arg, kyu_err_t *err);
/* Drops proposals that wait (their waiters are handed to done with an error result). */
void kyu_replica_destroy(kyu_replica_t **self_p);

/* The time to put in a new command: never earlier than a time already proposed or applied
 * (a clock stepping back cannot shorten a lease), advancing at the rate of real time even
 * when the log's time is ahead of this node's clock; the wall clock unless it is ahead of
 * the cluster's time past the skew bound (broker/cluster_time.h). For the leader only: what
 * it returns counts as issued, so a follower that asked would take its own clock for the
 * cluster's time before learning it (and a clock ahead would go unnoticed). */
uint64_t kyu_replica_now(kyu_replica_t *self);

/* Adds cmd to the open entry; waiter comes back through done. BUSY when too many commands
 * or bytes wait (KYU_REPLICA_PENDING_MAX, KYU_REPLICA_BYTES_MAX), or when cmd does not fit in
 * the open entry while the log syncs the one before (an entry never grows past
 * KYU_ENTRY_BYTES_MAX, plus one command alone), STORAGE when the state machine has failed,
 * NOT_LEADER on a follower, READ_ONLY on a read-only leader (kyu_replica_read_only): then nothing
 * was proposed and waiter stays the caller's. */
kyu_code_t kyu_replica_propose(kyu_replica_t *self, const kyu_command_t *cmd, void *waiter,
                               kyu_err_t *err);

/* A RECEIVE answered before its lease is durable (replica_early.c, op_receive_early.c): on
 * a serving leader, when nothing in flight but sends and other early receives can change
 * cmd's queue, chooses its messages (less those the leader's overlay holds), fills res with
 * the answer (the caller sends it and clears res) and proposes cmd in its early form; waiter
 * comes back through done when the entry is applied (its result: per chosen lease, OK when
 * recorded, RECEIPT_STALE when skipped) or lost. False: nothing was done (res stays empty);
 * propose cmd the durable way. */
bool kyu_replica_receive_early(kyu_replica_t *self, kyu_command_t *cmd, void *waiter,
                               kyu_result_t *res);

/* How many leases of queue qid early receives granted that are not applied yet (0 but on a
 * leader): reads count them as in flight. */
uint64_t kyu_replica_early_leases(kyu_replica_t *self, uint64_t qid);
/* The same for every queue: a clean stop waits until it is 0 (main.c). */
uint64_t kyu_replica_early_pending(kyu_replica_t *self);
/* A read that must see the early receives answered before it (frontend.c): mark now, then
 * wait until reached (every command proposed before the mark applied or lost; true at once
 * on a node that does not lead). propose_lazy: the entry of early receives that waits for
 * company (kyu_replica_flush) is proposed now. */
uint64_t kyu_replica_early_mark(kyu_replica_t *self);
bool kyu_replica_early_reached(kyu_replica_t *self, uint64_t mark);
void kyu_replica_propose_lazy(kyu_replica_t *self);

/* Runs the Ready loop as far as it goes without waiting: proposes the open entry, hands
 * writes to the storage thread, sends, applies. Call after each burst of inputs. */
void kyu_replica_flush(kyu_replica_t *self);

/* Inputs: a storage report, a tick (every KYU_REPLICA_TICK_MS), a peer message. */
void kyu_replica_on_log_event(kyu_replica_t *self, const kyu_log_event_t *ev);
void kyu_replica_tick(kyu_replica_t *self);
void kyu_replica_step(kyu_replica_t *self, const kyu_raft_msg_t *msg);

/* The state asked for by the transport's install is in DIR/state.incoming (ok), or could not be
 * fetched (why): on success the state database is replaced and the log restarts at the snapshot; on
 * failure the fetch is tried again after a pause, from the leader then known or another
 * member. The caller keeps other threads off the state database meanwhile. */
void kyu_replica_install_done(kyu_replica_t *self, bool ok, const char *why);
/* True while a snapshot is being installed (the node answers nothing but Raft). */
bool kyu_replica_installing(kyu_replica_t *self);

/* True when this node leads and has applied an entry of its own term, so its state holds
 * every committed write: only then does it serve requests. */
bool kyu_replica_serving(kyu_replica_t *self);
/* The leader's client endpoint when known and not this node, else "". */
const char *kyu_replica_leader_endpoint(kyu_replica_t *self);
/* This node's view for CLUSTER_STATUS (endpoint left empty for the frontend to fill when
 * the node has no peer list). */
void kyu_replica_status(kyu_replica_t *self, kyu_node_status_t *out);
/* Why this node refuses writes with READ_ONLY (a full disk, a failed log write), or NULL. */
const char *kyu_replica_read_only(kyu_replica_t *self);
/* The data directory's free space fell below the broker's minimum (why says so; the node
 * becomes read-only: proposals refused with READ_ONLY, nothing more written, acknowledged or
 * sent to peers, reads served) or is back above it (why NULL: it goes on). Logs each change
 * once. */
void kyu_replica_set_disk_low(kyu_replica_t *self, const char *why);

/* Starts handing leadership to the most up-to-date other voter (before a clean shutdown, so
 * that clients find a new leader at once instead of after an election timeout). From then on
 * requests are answered NOT_LEADER. False when this node does not lead or is alone. */
bool kyu_replica_transfer(kyu_replica_t *self);
/* The same to a chosen voter (KYU_RAFT_NONE: the most up-to-date). NOT_LEADER on a
 * non-leader, INVALID_ARGUMENT for an unknown or own id or a node alone. */
kyu_code_t kyu_replica_transfer_to(kyu_replica_t *self, uint64_t target);
/* True while this node leads. */
bool kyu_replica_is_leader(kyu_replica_t *self);

/* Membership (membership.c drives changes through these). */
/* Where node id is: the replicated address book first (members added with kyu cluster add,
 * and addresses changed since), then the --peer list. NULL when unknown. */
const kyu_peer_t *kyu_replica_address(kyu_replica_t *self, uint64_t id);
/* The peers the transport must link to: the other members of the configuration whose
 * address is known; for a node outside its configuration (joining, or removed), every
 * address it knows, so it can answer a leader that contacts it. */
void kyu_replica_links(kyu_replica_t *self, kyu_peers_t *out);
/* Proposes a Raft configuration change. NOT_LEADER, BUSY (another change is not committed
 * yet, or a transfer runs), INVALID_ARGUMENT (no-op change, last voter, too many members). */
kyu_code_t kyu_replica_conf_change(kyu_replica_t *self, kyu_raft_cc_op_t op, uint64_t node,
                                   kyu_err_t *err);
/* The Raft core, for its observers only (configuration, match and commit indexes). */
const kyu_raft_t *kyu_replica_raft(kyu_replica_t *self);
/* The state machine the replica applies to. */
kyu_sm_t *kyu_replica_sm(kyu_replica_t *self);

/* Non-NULL once writes are refused for good (an apply failure, a log write that could not
 * be handed over): the reason. */
const char *kyu_replica_failure(kyu_replica_t *self);
/* True after a failure the node cannot serve past (it needs a snapshot transfer, or its
 * state machine failed): the broker stops. */
bool kyu_replica_fatal(kyu_replica_t *self);

#endif
