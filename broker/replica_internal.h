/* replica_internal: what the replica's files share: replica.c (proposals, the Ready loop,
 * apply, compaction), replica_install.c (snapshot install), replica_members.c (addresses
 * and links of the members, configuration changes, leadership and status) and
 * replica_boot.c (startup). */
#ifndef KYU_REPLICA_INTERNAL_H
#define KYU_REPLICA_INTERNAL_H

#include "cluster_time.h"
#include "replica.h"

/* The leader's overlay for receives answered early (replica_early.c): new, destroy; note
 * each command proposed; done: the commands with serials below upto are applied. */
typedef struct kyu_early kyu_early_t;
kyu_early_t *kyu_early_new(void);
void kyu_early_destroy(kyu_early_t **self_p);
struct kyu_replica;
void kyu_early_note(struct kyu_replica *r, const kyu_command_t *cmd);
void kyu_early_done(struct kyu_replica *r, uint64_t upto);
uint64_t kyu_early_serial(const struct kyu_replica *r);

typedef struct entry {
    uint64_t term, index;  /* set once proposed */
    uint64_t first_serial; /* its first command's serial (replica_early.c) */
    /* Open and holding only early receives (nobody waits for their commit): proposed with the
     * next command that comes, or at the next tick (kyu_replica_flush) */
    bool lazy;
    msgpack_sbuffer payload;
    void **waiters; /* one per command, in order; NULL for none */
    size_t n, cap;
    struct entry *next;
} entry_t;

struct kyu_replica {
    kyu_store_t *store;
    kyu_sm_t *sm;
    const kyu_log_ops_t *log; /* the seams (replica.h) */
    void *log_arg;
    const kyu_replica_transport_t *net; /* NULL: alone, no snapshot transfer */
    void *net_arg;
    const kyu_replica_clock_t *clock;
    void *clock_arg;
    kyu_replica_applied_fn applied; /* the observer, or NULL */
    void *applied_arg;
    /* The results of the entry being applied: kept from entry to entry (each is cleared
     * after use), since a fresh array per entry (a result is some 14 KB, an entry may hold
     * a hundred commands) cost a mmap, page faults and a munmap each time. */
    kyu_result_t *results;
    size_t results_cap;
    bool results_busy; /* in use by the entry being answered (a nested apply gets its own) */
    void (*say)(void *arg, const char *line);
    void *say_arg;
    kyu_raft_t *raft;
    kyu_early_t *early;     /* the leader's overlay of early receives (replica_early.c) */
    bool early_in_clusters; /* kyu_replica_config_t's */
    kyu_peers_t peers;
    uint64_t node_id;
    kyu_replica_done_fn done;
    void *done_arg;
    kyu_cluster_time_t *clock_time;    /* the time put in commands, and clock skew */
    entry_t *open;                     /* gathering proposals */
    entry_t *proposed, *proposed_tail; /* proposed to the core, oldest first */
    size_t pending;                    /* commands proposed, not yet answered */
    size_t bytes;                      /* payload bytes of the open and proposed entries */
    size_t entry_max, bytes_max;       /* bounds on an entry and on bytes (replica.h) */
    bool ready_out;                    /* a Ready is taken and not yet advanced */
    kyu_raft_ready_t rd;
    size_t rd_applied;               /* committed entries of rd already applied */
    bool early_busy;                 /* applying commits learned while rd is out (replica.c) */
    uint64_t await_token;            /* the storage write the Ready waits for (0: none) */
    kyu_raft_hard_state_t persisted; /* the last hard state handed to the storage thread */
    uint64_t compacted, compact_checked;
    /* The core's compaction the log's files take once the state's tables hold it
     * (compact_log_files, replica.c) */
    kyu_log_snapshot_t flog_next;
    bool flog_next_set;
    uint64_t log_last;                  /* last entry index handed to the storage thread */
    uint64_t log_window, compact_every; /* entries kept; entries dropped at least at once */
    bool failed, fatal;
    /* Read-only (READ_ONLY to proposals): the data directory's free space is below the
     * minimum (disk_low: no Ready is taken either, so nothing more is written, acknowledged
     * or sent until space is freed), or a log write failed (log_failed: the Ready waits for
     * the storage thread to write it again). */
    bool disk_low, log_failed;
    char disk_why[KYU_ERR_MSG_MAX], log_why[KYU_ERR_MSG_MAX];
    bool transferring;       /* leadership is being handed over: serve nothing more */
    uint32_t transfer_ticks; /* ticks since the transfer began (it is abandoned after an
                                election timeout) */
    uint32_t election_ticks;
    bool join; /* started with --join: no bootstrap configuration */
    /* Snapshot install: the Ready with the snapshot stays out until the state is fetched
     * (the transport's install), swapped in and the log reset (snapshot.h). */
    bool installing;        /* a Ready holds a snapshot not yet installed */
    bool install_running;   /* a fetch is under way */
    uint32_t install_wait;  /* ticks since the last failed fetch */
    uint32_t install_tries; /* failed fetches of this snapshot (to rotate members) */
    char failure[KYU_ERR_MSG_MAX];
};

/* One line of news (printf format) to the configured sink, stderr by default. */
void kyu_replica_say(kyu_replica_t *self, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Refuses every write from now on (a log or apply failure), answering what waits. */
void kyu_replica_fail(kyu_replica_t *self, const char *why);
/* Asks a member for the state of the Ready's snapshot (replica_install.c). */
void kyu_replica_start_install(kyu_replica_t *self);

/* The durable Raft state found at startup, ready for kyu_raft_config_t. */
typedef struct {
    kyu_raft_hard_state_t hs;
    bool has_snap;
    kyu_raft_snapshot_t snap; /* data points to snap_desc */
    uint8_t snap_desc[8];     /* the snapshot's data: its index, big endian */
    kyu_raft_entry_t *entries;
    size_t n_entries;
    bool reset; /* the log was reset to the state (an interrupted install) */
} kyu_replica_boot_t;

/* Reads the log database; initial is the configuration used when no snapshot record says
 * otherwise (the peer list, or this node alone). When the state database is a snapshot the
 * log does not lead to (an install a crash interrupted: the state was replaced, the log not
 * yet), the log is reset to start at the state's applied index. */
kyu_code_t kyu_replica_boot_load(const kyu_log_ops_t *log, void *log_arg, const kyu_sm_t *sm,
                                 const kyu_raft_conf_t *initial, kyu_replica_boot_t *b,
                                 kyu_err_t *err);
/* The same, keeping of the entries up to the state's applied index only the last window (at
 * most window_bytes of them), as the core's compaction would (kyu_replica_boot_load: the
 * replica's KYU_REPLICA_LOG_WINDOW and _BYTES; tests give small ones). */
kyu_code_t kyu_replica_boot_load_window(const kyu_log_ops_t *log, void *log_arg, const kyu_sm_t *sm,
                                        const kyu_raft_conf_t *initial, uint64_t window,
                                        uint64_t window_bytes, kyu_replica_boot_t *b,
                                        kyu_err_t *err);
void kyu_replica_boot_free(kyu_replica_boot_t *b);

#endif
