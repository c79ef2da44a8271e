/*
 * sim_kyu.h - kyu-sim-kyu: kyu-sim with the broker's real state machine on every node.
 *
 * Each simulated node keeps a real store (RocksDB, one directory per node under
 * /dev/shm or $KYU_SIM_DIR) and applies committed entries with kyu_sm_apply, exactly as
 * broker/replica.c does. The client writes real broker commands (create and delete queue,
 * send with and without request keys, retried sends, receive, delete, change visibility),
 * encoded with kyu_command_encode into one Raft entry, stamped with the leader's time and
 * ids as the frontend does. Snapshot install copies a RocksDB checkpoint of another node's
 * state database and swaps it in with kyu_store_replace_state, as broker/snapshot.c does.
 *
 *   sim_kyu.c         the application hooks: stores, apply, install, boot, digests
 *   sim_kyu_client.c  the client's workload, its acknowledgements and retries
 *   sim_kyu_oracle.c  kyu's invariants over the stream of applied entries and the states
 */
#ifndef KYU_SIM_KYU_H
#define KYU_SIM_KYU_H

#include "sim.h"

#include "sm.h"

#define SK_QUEUES 3
#define SK_CMDS_MAX 3 /* commands per entry */
#define SK_SEND_MAX 3 /* messages per send */
#define SK_RECV_MAX 4 /* messages per receive */
#define SK_PROPS 512  /* proposals remembered (ring) */
#define SK_HANDLES 32 /* receipt handles the client holds (ring) */
#define SK_RETRIES 16 /* keyed sends waiting to be retried */
#define SK_TIME_BASE 1700000000000ull

/* Planted bugs (--plant B), each for the invariant that must catch it. */
enum {
    SK_PLANT_NONE = 0,
    SK_PLANT_ACK_EARLY = 1,    /* replies before commit: acknowledged send lost */
    SK_PLANT_NO_META = 2,      /* even nodes apply without the entry's term/conf: states differ */
    SK_PLANT_VT_ZERO = 3,      /* a receive's visibility timeout encoded as 0: lease re-granted */
    SK_PLANT_DROP_KEY = 4,     /* a retried send loses its request key: applied twice */
    SK_PLANT_DELETE_EARLY = 5, /* deletes answered before commit: deleted message returns */
    SK_PLANT_NO_SYNC = 6       /* the log compacted without syncing the state: lost on power loss */
};

/* What the client asked for in one command (the encoding may differ under a planted bug). */
typedef struct {
    kyu_cmd_type_t type;
    int q;
    int64_t vt;
    uint64_t rq_key;    /* 0 = no request key */
    uint64_t first_now; /* the time the key was first proposed (retries stay in the window) */
    size_t n;           /* SEND: messages, DELETE/CHANGE_VISIBILITY: handles */
    uint64_t ids[SK_SEND_MAX];
    char handles[SK_RECV_MAX][KYU_HANDLE_MAX + 1];
} sk_intent_t;

/* The outcome of a command, as the state machine answered it (filled at first apply). */
typedef struct {
    kyu_code_t code;
    size_t n;
    uint64_t ids[SK_RECV_MAX]; /* SEND: the ids answered; RECEIVE: the messages leased */
    char handles[SK_RECV_MAX][KYU_HANDLE_MAX + 1];
    uint32_t results[SK_RECV_MAX]; /* DELETE, CHANGE_VISIBILITY */
} sk_outcome_t;

typedef struct {
    uint64_t index, term, hash; /* hash: sim_entry_hash (a term may be won twice, sim.h) */
    size_t n;
    bool applied; /* outcome filled */
    sk_intent_t in[SK_CMDS_MAX];
    sk_outcome_t out[SK_CMDS_MAX];
} sk_prop_t;

enum { SK_UNKNOWN = 0, SK_LIVE, SK_DELETED, SK_GONE };

typedef struct {
    uint8_t status;
    uint8_t q;
    uint32_t qgen;
    uint32_t receives;
    uint32_t gen; /* of the last lease granted */
    uint64_t lease_until;
    bool acked;          /* the client was told it was sent */
    bool client_deleted; /* the client was told it was deleted */
} sk_msg_t;

/* A request key's first applied attempt: what a retry must be answered with. */
typedef struct {
    bool seen;
    kyu_cmd_type_t type;
    uint64_t first_now;
    size_t n;
    uint64_t ids[SK_RECV_MAX];     /* SEND: ids answered; RECEIVE: messages leased */
    uint32_t gens[SK_RECV_MAX];    /* RECEIVE: their lease generations */
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
    kyu_store_t *store; /* NULL while the node is down */
    kyu_sm_t *sm;
    uint64_t last_now; /* kyu_replica_now's memory */
    char dir[300];
    /* The state as of its last sync (a checkpoint), what a power loss goes back to. */
    char synced_dir[320];
    bool synced;
    uint64_t synced_index, synced_chain;
} sk_node_t;

typedef struct {
    char root[256];
    sk_node_t nodes[SIM_MAX_NODES];
    uint32_t ms_per_step;
    int64_t skew[SIM_MAX_NODES + 1];
    uint32_t digest_every;
    uint32_t power_loss_pm; /* of crashes; 0: crashes are process crashes only */
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
    } queues[SK_QUEUES];
    sk_key_t *keys; /* by request key */
    size_t keys_cap;
    /* client */
    uint64_t next_msg, next_key;
    sk_prop_t props[SK_PROPS];
    size_t next_prop;
    sk_prop_t draft;
    struct {
        char h[KYU_HANDLE_MAX + 1];
        int q;
    } handles[SK_HANDLES];
    size_t n_handles, next_handle;
    sk_intent_t retries[SK_RETRIES];
    size_t n_retries;
    uint64_t retried, dedup_hits, receives_checked, deletes_checked, digests, installs;
    uint64_t boot_resets, state_checks, power_losses;
} sk_t;

/* sim_kyu.c */
uint64_t sk_node_now(sim_cluster_t *c, sim_node_t *nd);
uint64_t sk_state_digest(sk_node_t *kn);
/* Message numbers of the messages the state holds; *n of them, heap array. */
uint64_t *sk_state_messages(sim_cluster_t *c, sk_node_t *kn, size_t *n);
void sk_format_id(char out[KYU_UUID_LEN + 1], uint64_t n);
uint64_t sk_parse_id(const char *id);

/* sim_kyu_client.c */
size_t sk_payload(sim_cluster_t *c, sim_node_t *nd, uint8_t *buf, size_t cap);
void sk_proposed(sim_cluster_t *c, const sim_proposal_t *p, bool taken);
void sk_acked(sim_cluster_t *c, const sim_proposal_t *p);
void sk_abandoned(sim_cluster_t *c, const sim_proposal_t *p);
sk_prop_t *sk_prop_find(sk_t *k, uint64_t index, uint64_t term, uint64_t hash);

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
