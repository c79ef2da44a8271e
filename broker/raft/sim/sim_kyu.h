/*
 * sim_kyu.h - kyu-sim-kyu: kyu-sim with the broker's real replica on every node.
 *
 * Each simulated node runs broker/replica.c (kyu_replica_new, propose, flush, tick, step,
 * on_log_event, compaction, snapshot install, membership changes) over a real store
 * (RocksDB, one directory per node under /dev/shm or $KYU_SIM_DIR) and the real state
 * machine, as the broker does. What the simulator plugs in are the replica's seams: a
 * simulated disk for its log (writes become durable after a delay the seed picks; a crash
 * loses the writes not yet durable), the simulated network, and simulated time. The client
 * writes real broker commands (create and delete queue, send with and without request keys,
 * retried requests, receive, delete, change visibility, topic t0's create, subscribe (with
 * and without filter policies), unsubscribe, a subscription's policy changed in place, and
 * publish, and sends and receives of a FIFO queue) through kyu_replica_propose, stamped
 * with kyu_replica_now as the frontend does, and learns their outcome from the replica's
 * done callback. A snapshot install is the replica's: the simulator's transport answers its
 * fetch by copying a RocksDB checkpoint of the chosen member's state database into the
 * installer's state.incoming (what broker/snapshot.c fetches over the network).
 *
 *   sim_kyu.c         per seed and per node state: stores, power loss, the apply observer,
 *                     digests
 *   sim_kyu_node.c    the node: the replica and its simulated disk, network and clock
 *   sim_kyu_client.c  the client's workload, its answers and retries
 *   sim_kyu_oracle.c  kyu's invariants over the stream of applied entries and the states
 */
#ifndef KYU_SIM_KYU_H
#define KYU_SIM_KYU_H

#include "sim.h"

#include <czmq.h>

#include "replica.h"
#include "sm.h"

#define SK_QUEUES 4
/* The queues the workload draws (q0..q2, the seeds' random stream as before); q3.fifo, a FIFO
 * queue (sm_fifo.c), takes a share of q0's sends, receives and creates, chosen from the ids
 * so far (sim_kyu_client.c): messages in three groups, each with its own deduplication id;
 * the oracle checks every receive of it takes what FIFO order and group locks give. */
#define SK_QUEUES_DRAWN 3
#define SK_FIFO 3
#define SK_FIFO_GROUPS 3
#define SK_TOPIC_GROUPS 3 /* t0's grouped publishes: MessageGroupId s0..s2 (sim_kyu_client.c) */
#define SK_FDEDUP 4096    /* t1.fifo's deduplication records the model keeps (a ring) */
/* q1's RedrivePolicy names q2 with this maxReceiveCount: a receive of q1 moves a message
 * received that many times to q2 (op_deadletter.c), and the oracle checks each move. */
#define SK_DLQ_SOURCE 1
#define SK_DLQ 2
#define SK_MAX_RECEIVES 2
/* q0 and q2 keep their messages SK_RETENTION_S seconds (MessageRetentionPeriod, SQS's least),
 * q1 the default 4 days: the simulated leader proposes EXPIRE_MESSAGES as the frontend does
 * (sim_kyu_node.c) and the oracle checks each expiry. */
#define SK_RETENTION_S 60
#define SK_CMDS_MAX 3                      /* requests per client round */
#define SK_SEND_MAX 3                      /* messages per send */
#define SK_RECV_MAX 4                      /* messages per receive */
#define SK_HANDLES 32                      /* receipt handles the client holds (ring) */
#define SK_HANDLE_MAX (KYU_HANDLE_MAX + 1) /* a receipt handle and its NUL */
#define SK_RETRIES 16                      /* keyed requests waiting to be retried */
#define SK_TIME_BASE 1700000000000ull

/* Planted bugs chosen at run time (--plant B), each for the invariant that must catch it.
 * Those of the replica itself (2, 7, 8, 9), of retention (10, sm_expiry.c), redrive (11,
 * op_redrive.c) and publish (12, op_topic.c) are compiled in: KYU_REPLICA_PLANTED_BUG and the
 * kyu-sim-kyu-plantedB binaries (docs/RAFT.md). */
enum {
    SK_PLANT_NONE = 0,
    SK_PLANT_ACK_EARLY = 1,    /* the client believes a send before its answer */
    SK_PLANT_VT_ZERO = 3,      /* a receive's visibility timeout encoded as 0: lease re-granted */
    SK_PLANT_DROP_KEY = 4,     /* a retried request loses its request key: applied twice */
    SK_PLANT_DELETE_EARLY = 5, /* the client believes a delete before its answer */
    SK_PLANT_NO_SYNC = 6       /* the log compacted without syncing the state: lost on power loss */
};

/* What the client asked for in one command (the encoding may differ under a planted bug). */
typedef struct {
    kyu_cmd_type_t type;
    int q;
    int64_t vt;
    int64_t delay; /* SET_QUEUE_ATTRIBUTES: DelaySeconds; SEND: the messages' own; -1: none */
    uint32_t max_inflight; /* RECEIVE: the leader's in-flight limit (0: none) */
    uint64_t rq_key;       /* 0 = no request key */
    uint64_t first_now;    /* the time the key was first proposed (retries stay in the window) */
    size_t n;              /* SEND: messages, DELETE/CHANGE_VISIBILITY: handles */
    uint64_t ids[SK_SEND_MAX];
    char handles[SK_RECV_MAX][SK_HANDLE_MAX];
    int dest;   /* START_MOVE_TASK: the destination queue, -1: each message's source */
    int policy; /* SUBSCRIBE, SET_SUBSCRIPTION_ATTRIBUTES: sk_policies' index (0: none) */
    bool batch; /* PUBLISH: a batch (PublishBatch) of n entries (ids: their publish numbers) */
    /* CREATE_TOPIC, SUBSCRIBE, PUBLISH: of the FIFO topic t1.fifo (q3.fifo its only
     * subscriber); PUBLISH: its deduplication number (MessageDeduplicationId "p<dedup>") */
    bool fifo;
    uint64_t dedup;
    /* RECEIVE answered early (replica_early.c): the messages of its answer, in the order of
     * the entry's chosen leases (the oracle checks each was recorded) */
    size_t n_early;
    uint64_t early_ids[KYU_BATCH_MAX];
} sk_intent_t;

/* The filter policies the workload gives t0's subscriptions (index 0: none, half of the
 * subscriptions; SUBSCRIBE and SET_SUBSCRIPTION_ATTRIBUTES), over what its publishes carry: a
 * publish in four has the attributes "body" (String: its body) and "copy" (Binary), the
 * others none; no body is JSON, so the body-scope one matches nothing. The oracle asks the filter
 * engine (proto/filter.c) for each subscription's verdict and expects a copy in exactly the queues
 * it matches. */
#define SK_POLICIES 6
typedef struct {
    const char *json;
    uint8_t scope; /* kyu_filter_scope_t */
} sk_policy_t;
extern const sk_policy_t sk_policies[SK_POLICIES];

/* The outcome of a command, as the state machine answered it (filled at first apply). */
typedef struct {
    kyu_code_t code;
    size_t n;
    uint64_t ids[SK_RECV_MAX];     /* SEND: the ids answered; RECEIVE: the messages leased */
    uint32_t results[SK_RECV_MAX]; /* DELETE, CHANGE_VISIBILITY */
} sk_outcome_t;

/* A request waiting for its answer (the waiter given to kyu_replica_propose). */
typedef struct {
    sk_intent_t in;
    uint64_t hash; /* of the command's encoding: the answer must be this command's result */
    bool expiry;   /* the leader's own EXPIRE_MESSAGES (sim_kyu_node.c), not the client's */
    bool redrive;  /* the leader's own REDRIVE_STEP (sim_kyu_node.c) */
} sk_waiter_t;

/* A write handed to the simulated disk, durable at `due` unless the node crashes first. */
typedef enum { SK_W_WRITE, SK_W_INSTALL, SK_W_COMPACT } sk_write_kind_t;

typedef struct sk_write {
    sk_write_kind_t kind;
    uint64_t token, due;
    bool has_hs, truncate;
    kyu_raft_hard_state_t hs;
    kyu_raft_entry_t *ents; /* copies */
    size_t n;
    kyu_log_snapshot_t snap; /* INSTALL, COMPACT */
    struct sk_write *next;
} sk_write_t;

enum { SK_UNKNOWN = 0, SK_LIVE, SK_DELETED, SK_GONE, SK_EXPIRED };

typedef struct {
    uint8_t status;
    uint8_t q;
    uint32_t qgen;
    uint32_t receives;
    uint32_t gen; /* of the last lease granted */
    uint64_t lease_until;
    uint64_t seq;            /* the state machine's (the oracle counts them as sends apply) */
    bool in_heap;            /* received, or sent with a delay: a lease, not among the fresh ones */
    uint32_t moved_receives; /* moved to the dead-letter queue after so many receives (0: not) */
    uint8_t group;           /* q3.fifo: its MessageGroupId's number (its number % 3) */
    char tgroup[4];          /* a copy of t0's: the publish's MessageGroupId ("s0".."s2", "") */
    uint64_t sent_ms;        /* the send's time: retention counts from it, even in q2 */
    uint64_t expired_ms;     /* SK_EXPIRED: the time of the expiry that took it */
    bool acked;              /* the client was told it was sent */
    bool client_deleted;     /* the client was told it was deleted */
} sk_msg_t;

/* A request key's first applied attempt: what a retry must be answered with. */
typedef struct {
    bool seen;
    kyu_cmd_type_t type;
    uint64_t first_now;
    size_t n;
    uint64_t ids[SK_RECV_MAX];  /* SEND: ids answered; RECEIVE: messages leased */
    uint32_t gens[SK_RECV_MAX]; /* RECEIVE: their lease generations */
    /* RECEIVE: their seqs then (a message moved since, to a dead-letter queue or back by a
     * redrive, has a new seq, its generations counted anew: the lease is gone) */
    uint64_t seqs[SK_RECV_MAX];
    uint32_t results[SK_RECV_MAX]; /* DELETE, CHANGE_VISIBILITY */
} sk_key_t;

typedef struct {
    uint64_t digest;  /* 0: not taken */
    uint64_t rhash;   /* the results of the entry */
    uint64_t term;    /* of the entry first applied here */
    bool applied;     /* by some node, from the log */
    bool want_digest; /* a state at this index was installed: compare the others */
} sk_index_t;

typedef struct {
    sim_cluster_t *c; /* the seams' way back to the simulation */
    sim_node_t *nd;
    kyu_store_t *store; /* NULL while the node is down */
    kyu_sm_t *sm;
    kyu_replica_t *replica;
    char dir[300];
    /* The state as of its last sync (a checkpoint), what a power loss goes back to. */
    char synced_dir[320];
    bool synced;
    uint64_t synced_index, synced_chain;
    /* The state database holds the state at kyu_sm_persisted_index, behind the applied one
     * (the state machine writes behind, sm_buffer.c), and its tables at least the state at
     * kyu_sm_durable_index (its writes carry no WAL, store.h): a crash takes the node back
     * to its tables, somewhere between the two (open_lo, open_hi: RocksDB may have flushed
     * after the state machine last looked), and the log must hold every entry after it. The
     * chain of each recent applied index, and of the index the state opened at, to know the
     * chain there. */
    bool crashed;
    uint64_t open_lo, open_hi;
#define SK_CHAINS 65536
    uint64_t chain_index[SK_CHAINS], chain_at[SK_CHAINS];
    uint64_t base_index, base_chain;
    /* The simulated disk: nd->disk holds what is durable; the queue what is not yet. */
    bool hs_found, snap_found;
    sk_write_t *queue, *queue_tail;
    uint64_t token, last_due;
    uint64_t stall_until; /* the disk completes nothing before this step (a latency spike) */
    /* A snapshot fetch under way (the transport's install). */
    bool fetching;
    uint64_t fetch_server, fetch_min, fetch_due;
    /* The entry being applied (set by the apply observer): an answer whose result points
     * into its results is the result of one of its commands. */
    struct {
        bool valid;
        uint64_t index, term, hash;
        const uint8_t *data;
        size_t len;
        const kyu_result_t *results;
        size_t n;
    } applying;
    size_t waiting; /* requests proposed here and not answered yet */
    /* Retention, as the frontend's tick (frontend.c): one EXPIRE_MESSAGES at a time, looked
     * for once a second of the leader's time at most. */
    bool expiry_proposed;
    uint64_t expiry_checked_at;
    /* Redrive, as the frontend's tick: one REDRIVE_STEP at a time, when kyu_sm_redrive_due. */
    bool redrive_proposed;
} sk_node_t;

typedef struct {
    char root[256];
    sk_node_t nodes[SIM_MAX_NODES];
    uint32_t ms_per_step;
    int64_t skew[SIM_MAX_NODES + 1];
    uint32_t digest_every;
    uint32_t write_every;   /* kyu_replica_config_t.state_write_every */
    uint32_t power_loss_pm; /* of crashes; 0: crashes are process crashes only */
    uint32_t stall_pm;      /* per node and step: its disk stalls (0: never) */
    uint64_t slow_node;     /* its disk is slow during the safety phase (0: none) */
    uint32_t pause_pm;      /* per leader step with a write out: its process pauses (0: never) */
    bool every_read;        /* a node's storage reports and Ready loop run after every read */
    bool write_now;         /* the disk takes a small round written by the loop (log.c) */
    size_t entry_max, bytes_max; /* the replica's bounds (0: the broker's) */
    /* oracle */
    sk_index_t *idx;
    size_t idx_cap;
    uint64_t stream; /* the last index first applied */
    sk_msg_t *msgs;  /* by message number */
    size_t msgs_cap;
    uint64_t *seq_msg; /* the state machine's seq -> message number */
    size_t seq_cap;
    struct {
        bool exists;
        uint32_t gen, vt;
        uint32_t delay;     /* DelaySeconds: a message sent is not received before it ends */
        uint32_t retention; /* MessageRetentionPeriod, seconds */
        bool moved_in;      /* a dead-letter move brought a message in (since its creation) */
        /* Fair groups (sm_fair.c): a standard queue is fair from its first message with a
         * MessageGroupId on (a t0 copy, or one moved in); a receive then gives each group
         * it takes a message from the next stamp as its tag, in the order it takes them, and
         * a group's tag goes with its last message. tags[0] is the none group's, tags[1..3]
         * the groups "s0".."s2" (the order of the ids: "" first). */
        bool fair;
        uint64_t stamp, tags[4];
    } queues[SK_QUEUES];
    /* Each queue's running message move task (redrive, op_redrive.c), as the model sees it:
     * the index of the entry that started it (its id), its destination (-1: each message's
     * source queue), how many it has to move and has moved. */
    struct {
        bool running;
        uint64_t id, to_move, moved;
        int dest;
    } tasks[SK_QUEUES];
    uint64_t redriven;      /* messages moved back by REDRIVE_STEPs, as the oracle expected */
    uint64_t tasks_started; /* START_MOVE_TASKs applied */
    /* Topic t0 (op_topic.c) as the model sees it: whether it exists and its subscriptions in
     * the state's order (a publish's copies take their seqs in it). A subscription's id is
     * sk_format_sub_id of its number; q0 is subscribed raw, q1 and q2 with the envelope. */
    bool topic_exists;
    struct {
        int q;
        bool raw;
        uint64_t id;
        int policy; /* sk_policies' index (0: none) */
    } subs[SK_QUEUES];
    size_t n_subs;
    uint64_t next_sub, next_pub; /* the client's subscription and publish numbers */
    uint64_t publishes, copies;  /* PUBLISHes applied (not replayed), copies they enqueued */
    /* receives the leader answered before their entry (replica_early.c), and the leases
     * their entries recorded (every one the answer had) */
    uint64_t early_answers, early_leases;
    uint64_t filtered;    /* copies a subscription's filter policy kept out */
    uint64_t sub_changes; /* SET_SUBSCRIPTION_ATTRIBUTES applied */
    /* The FIFO topic t1.fifo (op_topic.c): whether it exists, q3.fifo's subscription (raw; 0:
     * none) and its deduplication records (a ring: number, first publish, time) */
    bool ftopic_exists;
    uint64_t fsub_id;
    struct sk_fdedup {
        uint64_t dedup, pub, t;
    } fdedup[SK_FDEDUP];
    size_t fdedup_next;
    uint64_t fpublishes, fdups; /* t1.fifo's publishes applied; duplicates answered as first */
    /* Retention marks as the state machine keeps them (sm_expiry.c), modelled from the sends
     * (seq: the first seq of the send that made the mark; until: its time + 1 s). */
    struct sk_mark {
        uint64_t seq, until;
    } * marks;
    size_t marks_n, marks_cap;
    uint64_t expiries, expired; /* EXPIRE_MESSAGES applied, messages they took */
    uint64_t next_seq;          /* the last seq a send took */
    uint64_t moves_checked;     /* messages moved to a dead-letter queue, as the oracle expected */
    uint64_t fifo_checked;      /* q3.fifo receives checked against FIFO order */
    sk_key_t *keys;             /* by request key */
    size_t keys_cap;
    /* client */
    uint64_t next_msg, next_key;
    /* Every request proposed in the seed, to find what the client asked when an entry holding
     * it is first applied: its intent, found again by the hash of its command's encoding
     * (the hashes apart, scanned from the newest). None is forgotten: an entry may be first
     * applied long after its proposal (seed 5121 on 4-7 nodes, a fifth of the messages
     * dropped: a backlog growing through the run, entries applied up to 1,300 steps and
     * requests later; a ring of 512 forgot them, docs/RAFT.md). */
    uint64_t *sent_hash;
    sk_intent_t *sent;
    size_t n_sent, sent_cap;
    struct {
        char h[SK_HANDLE_MAX];
        int q;
    } handles[SK_HANDLES];
    size_t n_handles, next_handle;
    /* Every receipt handle the client was answered with -> 1 + the request key of the receive
     * that answered it first: a receive gives each lease a handle no earlier lease of the
     * message had (a lost lease's included), so that only the latest handle acts on it; a
     * retry (same key) may answer the leases of its first attempt again. */
    zhashx_t *answered;
    uint64_t handles_answered;
    uint64_t writes_now; /* rounds the loop wrote itself (write_now) */
    sk_intent_t retries[SK_RETRIES];
    size_t n_retries;
    uint64_t retried, dedup_hits, receives_checked, deletes_checked, digests, installs;
    uint64_t over_limit; /* receives refused at their in-flight limit */
    uint64_t boot_resets, state_checks, power_losses, answers, stalls, pauses;
} sk_t;

/* sim_kyu.c */
/* Writes the state machine's buffered entries to its database (kyu_sm_flush): done before
 * the database is read or copied. */
void sk_flush(sk_node_t *kn);
/* The index the node's state database holds, and the chain of applied entries there. */
bool sk_chain_of(sk_node_t *kn, uint64_t index, uint64_t *chain);
uint64_t sk_state_digest(sk_node_t *kn);
/* Message numbers of the messages the state holds; *n of them, heap array. */
uint64_t *sk_state_messages(sim_cluster_t *c, sk_node_t *kn, size_t *n);
void sk_format_id(char out[KYU_UUID_LEN + 1], uint64_t n);
/* A message number from its id: the client's (sk_format_id) or a publish's copy's
 * (registered by the oracle); 0 for any other. */
uint64_t sk_parse_id(const char *id);
/* The ids the client gives a subscription and a publish (not message ids). */
void sk_format_sub_id(char out[KYU_UUID_LEN + 1], uint64_t n);
void sk_format_pub_id(char out[KYU_UUID_LEN + 1], uint64_t n);
uint64_t sk_parse_sub_id(const char *id);
uint64_t sk_parse_pub(const char *id);
/* The message id of a publish's copy for a subscription (op_topic.c's copy_id), registered
 * as message number n: sk_parse_id finds it from then on (until sk_copies_reset). */
void sk_copy_register(const char *pub_id, const char *sub_id, uint64_t n);
void sk_copies_reset(void);
/* A node's state: opened (with the durability checks of a restart), closed (a crash, now
 * and then a power loss), synced (what a power loss goes back to), compared by digest. */
bool sk_state_open(sim_cluster_t *c, sim_node_t *nd);
void sk_state_close(sim_cluster_t *c, sim_node_t *nd);
void sk_mark_synced(sim_cluster_t *c, sim_node_t *nd);
void sk_state_release(sk_node_t *kn); /* closes the state, nothing lost */
void sk_check_digest(sim_cluster_t *c, sim_node_t *nd, uint64_t index, const char *how);
bool sk_checkpoint(sk_node_t *kn, const char *dir, uint64_t flush_above);
/* The replica's apply observer (kyu_replica_applied_fn), arg the sk_node_t. */
void sk_on_applied(void *arg, const kyu_raft_entry_t *e, const kyu_result_t *res, size_t n);

/* sim_kyu_node.c: the node hooks of sim_app_t */
bool sk_node_start(sim_cluster_t *c, sim_node_t *nd);
void sk_node_crash(sim_cluster_t *c, sim_node_t *nd);
void sk_node_step(sim_cluster_t *c, sim_node_t *nd, const kyu_raft_msg_t *m);
void sk_node_tick(sim_cluster_t *c, sim_node_t *nd);
void sk_node_process(sim_cluster_t *c, sim_node_t *nd);
bool sk_conf_change(sim_cluster_t *c, sim_node_t *nd, kyu_raft_cc_op_t op, uint64_t node);
bool sk_transfer(sim_cluster_t *c, sim_node_t *nd, uint64_t target);
/* Retention: a serving leader proposes EXPIRE_MESSAGES when kyu_sm_expiry_due says so. */
void sk_node_expiry(sim_cluster_t *c, sim_node_t *nd);
/* Redrive: a serving leader proposes REDRIVE_STEP when kyu_sm_redrive_due says so. */
void sk_node_redrive(sim_cluster_t *c, sim_node_t *nd);
/* Stops a node for good at the end of the seed (no power loss). */
void sk_node_stop(sim_cluster_t *c, sim_node_t *nd);
/* Before each call into a replica: no entry is being applied. */
void sk_enter(sk_node_t *kn);

/* sim_kyu_client.c */
void sk_client(sim_cluster_t *c, sim_node_t *nd);
bool sk_client_waiting(sim_cluster_t *c);
/* The replica's done callback (kyu_replica_done_fn), arg the sk_node_t. */
void sk_on_done(void *arg, void *waiter, kyu_result_t *result);
/* When result r points into the entry being applied at kn: checks it is the result of the
 * command whose encoding hashes to hash (answer agreement) and returns true. */
bool sk_check_own_answer(sim_cluster_t *c, sk_node_t *kn, const kyu_result_t *r, uint64_t hash);
/* What the client asked for in the command whose encoding hashes to hash, or NULL. */
const sk_intent_t *sk_sent_find(sk_t *k, uint64_t hash);
/* The hash of command i of an entry's payload (0 when it has fewer commands). */
uint64_t sk_command_hash(const uint8_t *data, size_t len, size_t i);

/* sim_kyu_oracle.c */
sk_index_t *sk_index(sk_t *k, uint64_t index);
sk_msg_t *sk_msg(sk_t *k, uint64_t n);
/* The first apply of an entry, by any node: checks the results against the model. */
void sk_oracle_stream(sim_cluster_t *c, sim_node_t *nd, const kyu_raft_entry_t *e,
                      const kyu_result_t *res, size_t n);
/* The state of a node at the stream's index holds exactly the live messages. */
void sk_oracle_check_state(sim_cluster_t *c, sim_node_t *nd);
void sk_oracle_final(sim_cluster_t *c);
void sk_oracle_free(sk_t *k);

#endif
