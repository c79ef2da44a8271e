/*
 * raft.h - kyu's Raft consensus core: a pure state machine with no I/O.
 *
 * The core never touches a socket, a file, a clock or a random source. The caller (the
 * broker's replica loop, or kyu-sim) feeds it inputs and acts on its outputs:
 *
 *   inputs   kyu_raft_step (a peer message), kyu_raft_tick (one logical clock tick),
 *            kyu_raft_propose / kyu_raft_propose_conf_change / kyu_raft_transfer_leader,
 *            kyu_raft_advance (everything in the last Ready is durable, sent and applied:
 *            the "durable up to index N" and "snapshot installed" notice; the core knows
 *            which index and term that Ready handed out),
 *            kyu_raft_compact (the application took a snapshot; the log may be cut).
 *   outputs  kyu_raft_ready: hard state and entries to persist, a snapshot to install,
 *            messages to send, committed entries to apply.
 *
 * The loop the caller must run (etcd's Ready/Advance contract):
 *
 *   while (kyu_raft_has_ready(r)) {
 *       kyu_raft_ready_t rd;
 *       kyu_raft_ready(r, &rd);
 *       send every rd.msgs[i] with after_persist == false     (may go out at once)
 *       persist, in this order, in one synced write if possible:
 *           rd.snapshot (if not NULL: replaces the whole log and the state machine),
 *           rd.entries  (first delete every stored entry with index >= rd.entries[0].index),
 *           rd.hard_state (if rd.hard_state_changed)
 *       wait until that write is durable (fsync)
 *       send every rd.msgs[i] with after_persist == true      (replies that promise a vote
 *                                                             or a log must not precede it)
 *       apply rd.committed[0..n_committed) in order to the state machine
 *       kyu_raft_advance(r);
 *   }
 *
 * Inputs (step, tick, propose...) may be given between kyu_raft_ready and kyu_raft_advance;
 * their outputs wait for the next Ready. This is how batching happens naturally: while one
 * fsync is in flight, new entries gather and go out together in the next Ready.
 *
 * Ownership: everything a Ready points to is owned by the core and stays valid and unchanged
 * until kyu_raft_advance (or kyu_raft_destroy). Messages given to kyu_raft_step are copied;
 * the caller keeps ownership of them. Proposal data is copied.
 *
 * Log storage: the core keeps the log in memory from the last snapshot onward (as etcd's
 * MemoryStorage does); the caller's durable copy is for restarts only. On restart the caller
 * passes the durable hard state, snapshot and entries in kyu_raft_config_t. The application
 * bounds memory by taking snapshots and calling kyu_raft_compact.
 *
 * Membership: a configuration is a full list of voters and learners. A conf-change entry
 * carries the whole new configuration (see kyu_raft_conf_decode) and takes effect on every
 * node as soon as it is appended to the log, not when committed (thesis 4.1); only one may
 * be uncommitted at a time, and a leader accepts one only after it has committed an entry of
 * its own term.
 *
 * Every message carries a group id so one process can run many Raft groups (multi-raft).
 * The core has no wire format: the broker's broker/peer_codec.h encodes messages as msgpack
 * (the only codec; kyu-sim passes the structs themselves).
 *
 * Timing: the election timeout must exceed a vote's round trip including two fsyncs (the
 * candidate's and the voter's), or elections never finish (thesis 3.5).
 *
 * Restart: build kyu_raft_config_t from what is durable: hard_state, the latest snapshot
 * (its conf is the configuration at its index), the entries after it, and applied = the
 * index the state machine durably reflects (>= the snapshot index). Persist a Ready's
 * snapshot, entries and hard state atomically (one RocksDB WriteBatch, synced).
 */
#ifndef KYU_RAFT_H
#define KYU_RAFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Node id 0 means "nobody" (no vote, no known leader). */
#define KYU_RAFT_NONE 0
/* Upper bound on the members (voters + learners) of one group. */
#define KYU_RAFT_MAX_NODES 9

typedef struct kyu_raft kyu_raft_t;

typedef enum {
    KYU_RAFT_FOLLOWER = 0,
    KYU_RAFT_PRE_CANDIDATE,
    KYU_RAFT_CANDIDATE,
    KYU_RAFT_LEADER,
} kyu_raft_role_t;

typedef enum {
    KYU_RAFT_ENTRY_NORMAL = 0, /* application data (the broker's batch of commands) */
    KYU_RAFT_ENTRY_NOOP,       /* appended by each new leader (thesis 3.6.2)       */
    KYU_RAFT_ENTRY_CONF,       /* a full new configuration, see kyu_raft_conf_encode */
} kyu_raft_entry_type_t;

typedef struct {
    uint64_t term;
    uint64_t index;
    kyu_raft_entry_type_t type;
    uint8_t *data; /* opaque bytes; NULL when len == 0; never written once in an entry */
    size_t len;
} kyu_raft_entry_t;

typedef struct {
    uint32_t n_voters;
    uint32_t n_learners;
    uint64_t voters[KYU_RAFT_MAX_NODES];
    uint64_t learners[KYU_RAFT_MAX_NODES];
} kyu_raft_conf_t;

/* What must survive a crash besides the log. */
typedef struct {
    uint64_t term;
    uint64_t vote;
    uint64_t commit;
} kyu_raft_hard_state_t;

/* A snapshot: the state machine up to and including index. data is opaque. */
typedef struct {
    uint64_t index;
    uint64_t term;
    kyu_raft_conf_t conf;
    uint8_t *data;
    size_t len;
} kyu_raft_snapshot_t;

typedef enum {
    KYU_RAFT_MSG_APPEND = 1,     /* AppendEntries: index/log_term = previous entry */
    KYU_RAFT_MSG_APPEND_RESP,    /* index = last matching index, or reject + hints */
    KYU_RAFT_MSG_HEARTBEAT,      /* commit = min(leader commit, follower match)      */
    KYU_RAFT_MSG_HEARTBEAT_RESP, /* index = follower's last index (a lost log shows) */
    KYU_RAFT_MSG_VOTE,           /* index/log_term = candidate's last entry          */
    KYU_RAFT_MSG_VOTE_RESP,
    KYU_RAFT_MSG_PRE_VOTE, /* term = the term the sender would campaign in     */
    KYU_RAFT_MSG_PRE_VOTE_RESP,
    KYU_RAFT_MSG_SNAPSHOT,      /* one chunk of InstallSnapshot                     */
    KYU_RAFT_MSG_SNAPSHOT_RESP, /* index = snapshot index, snap_offset = next wanted */
    KYU_RAFT_MSG_TIMEOUT_NOW,   /* leadership transfer: campaign now                */
} kyu_raft_msg_type_t;

/*
 * A peer message: a plain struct so the broker can serialize it field by field.
 * Fields a type does not use are zero.
 */
typedef struct {
    kyu_raft_msg_type_t type;
    uint64_t group;
    uint64_t from;
    uint64_t to;
    uint64_t term;
    uint64_t log_term;
    uint64_t index;
    uint64_t commit;
    kyu_raft_entry_t *entries;
    size_t n_entries;
    bool reject;
    uint64_t reject_hint; /* APPEND_RESP reject: hint index; log_term = its term        */
    bool force;           /* VOTE sent because of TimeoutNow: ignore the leader lease   */
    /* InstallSnapshot chunk: the snapshot is (index, log_term, snap_conf); this chunk is
     * bytes [snap_offset, snap_offset + snap_len) of snap_total bytes. */
    uint64_t snap_offset;
    uint64_t snap_total;
    uint8_t *snap_data;
    size_t snap_len;
    kyu_raft_conf_t snap_conf;
    /* Output only: true if the message may be sent only after this Ready's persistence
     * is durable (it promises a vote, a term or log entries). */
    bool after_persist;
} kyu_raft_msg_t;

typedef struct {
    uint64_t id;             /* this node, != KYU_RAFT_NONE                             */
    uint64_t group;          /* Raft group id carried by every message (1 for now)      */
    uint32_t election_ticks; /* election timeout; randomized in [e, 2e)                 */
    uint32_t heartbeat_ticks;
    uint64_t random_seed;     /* seeds the election-timeout randomization               */
    uint32_t max_inflight;    /* append messages in flight per follower (pipelining)    */
    uint32_t max_msg_entries; /* entries per append message (batching)                  */
    size_t max_msg_bytes;
    size_t snapshot_chunk; /* bytes per InstallSnapshot chunk                         */
    /* Proposals are refused (BUSY) while this many entries are uncommitted: backpressure
     * when no quorum is reachable (0: 4096). */
    uint32_t max_uncommitted;
    /* Durable state found at startup (all zero for a brand-new node). */
    kyu_raft_hard_state_t hard_state;
    const kyu_raft_snapshot_t *snapshot; /* NULL if none; its conf is the initial conf  */
    const kyu_raft_conf_t *conf;         /* initial conf if no snapshot (bootstrap); a   */
                                         /* node joining a group starts with an empty one */
    const kyu_raft_entry_t *entries;     /* durable log after the snapshot, in order     */
    size_t n_entries;
    uint64_t applied; /* last index applied to the state machine (>= snapshot index)   */
} kyu_raft_config_t;

typedef struct {
    bool hard_state_changed;
    kyu_raft_hard_state_t hard_state;
    const kyu_raft_snapshot_t *snapshot; /* NULL, or a snapshot to persist and install  */
    const kyu_raft_entry_t *entries;     /* to append durably (after truncating)         */
    size_t n_entries;
    const kyu_raft_msg_t *msgs;
    size_t n_msgs;
    const kyu_raft_entry_t *committed; /* to apply, in order, after persistence          */
    size_t n_committed;
    /* entries' and committed's bytes are the core's log's own (shared, counted: raft_log.c),
     * valid until kyu_raft_advance and never to be written */
} kyu_raft_ready_t;

typedef enum {
    KYU_RAFT_OK = 0,
    KYU_RAFT_ERR_NOT_LEADER, /* *leader_out tells the known leader (or NONE)         */
    KYU_RAFT_ERR_BUSY,       /* transfer, conf change or too many uncommitted entries */
    KYU_RAFT_ERR_INVALID,    /* bad argument (unknown node, no-op change, too big)   */
    KYU_RAFT_ERR_NOMEM,
} kyu_raft_err_t;

typedef enum {
    KYU_RAFT_CC_ADD_LEARNER = 1, /* add a non-voting member that receives the log, or */
                                 /* demote a voter (not the leader, not the last one) */
    KYU_RAFT_CC_ADD_VOTER,       /* add a voter, or promote a learner to voter        */
    KYU_RAFT_CC_REMOVE,          /* remove a voter or learner                         */
} kyu_raft_cc_op_t;

/* Creates a core from cfg (copied). Returns NULL if cfg is invalid or memory runs out.
 * Caller owns the result and frees it with kyu_raft_destroy. */
kyu_raft_t *kyu_raft_new(const kyu_raft_config_t *cfg);
void kyu_raft_destroy(kyu_raft_t **self_p);

/* Inputs. */
void kyu_raft_tick(kyu_raft_t *self);
void kyu_raft_step(kyu_raft_t *self, const kyu_raft_msg_t *msg);
void kyu_raft_set_random(kyu_raft_t *self, uint64_t seed);
/* Appends data as a normal entry; *index_out is its index. On NOT_LEADER, *leader_out
 * names the leader this node knows of (or KYU_RAFT_NONE). */
kyu_raft_err_t kyu_raft_propose(kyu_raft_t *self, const void *data, size_t len, uint64_t *index_out,
                                uint64_t *leader_out);
kyu_raft_err_t kyu_raft_propose_conf_change(kyu_raft_t *self, kyu_raft_cc_op_t op, uint64_t node,
                                            uint64_t *index_out, uint64_t *leader_out);
kyu_raft_err_t kyu_raft_transfer_leader(kyu_raft_t *self, uint64_t target);
/* The application has a snapshot of its state machine at index (<= applied); the core
 * keeps a copy of data to send to lagging followers and drops log entries <= index. */
kyu_raft_err_t kyu_raft_compact(kyu_raft_t *self, uint64_t index, const void *data, size_t len);

/* Outputs. */
bool kyu_raft_has_ready(const kyu_raft_t *self);
void kyu_raft_ready(kyu_raft_t *self, kyu_raft_ready_t *rd);
void kyu_raft_advance(kyu_raft_t *self);
/* Between kyu_raft_ready and kyu_raft_advance: the entries committed since that Ready was
 * taken (a leader hears its followers' answers meanwhile) that were already durable here
 * before it (index <= what earlier Readies persisted), so that their apply does not wait for
 * this Ready's write. The caller applies them in order, after every committed entry of the
 * Ready, as if they were part of it, and frees them (kyu_raft_entries_free). False (nothing
 * taken) when there are none, when no Ready is out, when the Ready out holds a snapshot, or
 * out of memory (they come in the next Ready). */
bool kyu_raft_take_committed(kyu_raft_t *self, kyu_raft_entry_t **entries, size_t *n_entries);
void kyu_raft_entries_free(kyu_raft_entry_t *entries, size_t n_entries);

/* Observers (for the broker's status and for kyu-sim's checkers). */
kyu_raft_role_t kyu_raft_role(const kyu_raft_t *self);
uint64_t kyu_raft_term(const kyu_raft_t *self);
uint64_t kyu_raft_leader(const kyu_raft_t *self);
uint64_t kyu_raft_vote(const kyu_raft_t *self);
uint64_t kyu_raft_commit(const kyu_raft_t *self);
uint64_t kyu_raft_applied(const kyu_raft_t *self);
uint64_t kyu_raft_first_index(const kyu_raft_t *self);
uint64_t kyu_raft_last_index(const kyu_raft_t *self);
/* Term of the entry at index, or 0 if it is not in the log (compacted or beyond). The
 * snapshot's last index answers with the snapshot term. */
uint64_t kyu_raft_term_at(const kyu_raft_t *self, uint64_t index);
/* The entry at index (first_index <= index <= last_index), owned by the core, valid until
 * the next input. */
const kyu_raft_entry_t *kyu_raft_entry_at(const kyu_raft_t *self, uint64_t index);
const kyu_raft_conf_t *kyu_raft_conf(const kyu_raft_t *self);
/* The latest snapshot the core holds (index 0 if none), owned by the core; valid until the
 * next input. After kyu_raft_compact this is what the caller stores durably. */
const kyu_raft_snapshot_t *kyu_raft_snapshot(const kyu_raft_t *self);
/* Match index the leader knows for node (0 if not leader or unknown). */
uint64_t kyu_raft_match_of(const kyu_raft_t *self, uint64_t node);

/* Conf-change entry payload: the whole configuration, little endian:
 * u32 n_voters, u32 n_learners, then n_voters + n_learners u64 ids. */
size_t kyu_raft_conf_encode(const kyu_raft_conf_t *conf, uint8_t *buf, size_t cap);
bool kyu_raft_conf_decode(const uint8_t *buf, size_t len, kyu_raft_conf_t *conf);
bool kyu_raft_conf_is_voter(const kyu_raft_conf_t *conf, uint64_t id);
bool kyu_raft_conf_is_learner(const kyu_raft_conf_t *conf, uint64_t id);

const char *kyu_raft_msg_type_name(kyu_raft_msg_type_t type);
const char *kyu_raft_role_name(kyu_raft_role_t role);

#ifdef __cplusplus
}
#endif
#endif
