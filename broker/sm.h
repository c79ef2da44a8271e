/* sm: the deterministic state machine — queues, messages, leases — over the store.
 *
 * kyu_sm_apply is the one apply path: live commits, restart replay and (later) snapshot
 * catch-up all go through it. It applies every command of one committed log entry, reads no
 * clock and no random source (time and ids come in the commands), and keeps what receives
 * read in memory; its writes are buffered and reach RocksDB every so many entries, a whole
 * number of entries at a time with the index reached (kyu_sm_flush, sm_buffer.c): results go
 * back to the caller.
 * Reads (list, attributes, queue existence) see the state after the last applied entry.
 *
 * Owned by the event-loop thread; not thread-safe.
 */
#ifndef KYU_SM_H
#define KYU_SM_H

#include "command.h"
#include "peers.h"
#include "store.h"

#define KYU_QUEUES_MAX 10000
#define KYU_DLQ_MOVES_MAX 100 /* dead-letter moves per RECEIVE; the next receive moves more */
#define KYU_SM_CONF_MAX 160   /* a kyu_raft_conf_encode'd configuration */
#define KYU_SM_MEMBERS_MAX 32 /* entries of the replicated address book */

typedef struct {
    kyu_code_t code;
    char error[KYU_ERR_MSG_MAX];
    /* The head, up to ids, is cleared for every command (kyu_result_init); the arrays after
     * it are not (some 12 KB a command): an entry below its count (n_ids, n_msgs, n_results)
     * is written whole by whoever sets the count, and nothing reads past the count. */
    size_t n_ids;  /* SEND */
    size_t n_msgs; /* RECEIVE */
    /* DELETE, CHANGE_VISIBILITY; a SEND batch with a failed entry: per entry (KYU_OK for a
     * message sent), and (SEND) entry_errors[i] says why each failed one did ("" for the
     * others) */
    size_t n_results;
    uint32_t results[KYU_BATCH_MAX];
    /* RECEIVE: bodies and the metas' attributes point into owned[i] (freed by
     * kyu_result_clear) */
    char *owned[KYU_BATCH_MAX];
    const void *bodies[KYU_BATCH_MAX];
    size_t body_lens[KYU_BATCH_MAX];
    /* START_MOVE_TASK, CANCEL_MOVE_TASK: the task started or cancelled (heap, freed by
     * kyu_result_clear: a pointer keeps the result small, every command clears one) */
    kyu_move_task_t *task;
    /* ---- not cleared: valid below their counts ---- */
    /* SEND: the ids ("" for a batch's failed entry) and the MD5s of the messages sent */
    char ids[KYU_BATCH_MAX][KYU_UUID_LEN + 1];
    char md5_body[KYU_BATCH_MAX][KYU_MD5_HEX_LEN + 1];
    char md5_attrs[KYU_BATCH_MAX][KYU_MD5_HEX_LEN + 1];
    uint64_t sequences[KYU_BATCH_MAX];  /* SEND: a FIFO queue's SequenceNumbers (else 0) */
    kyu_msg_meta_t msgs[KYU_BATCH_MAX]; /* RECEIVE */
    char entry_errors[KYU_BATCH_MAX][KYU_ERR_MSG_MAX];
} kyu_result_t;

/* Clears a result's head (not its arrays: see kyu_result_t), for a command to fill. */
void kyu_result_init(kyu_result_t *res);

/* Frees what a result owns and clears its head (kyu_result_init). */
void kyu_result_clear(kyu_result_t *res);

typedef struct kyu_sm kyu_sm_t;

/* Loads the state machine from the store (queues, applied index, counters) and finishes any
 * queue deletion that was interrupted. The store must outlive the state machine. */
kyu_sm_t *kyu_sm_open(kyu_store_t *store, kyu_err_t *err);
void kyu_sm_destroy(kyu_sm_t **self_p);

uint64_t kyu_sm_applied_index(const kyu_sm_t *self);
/* The applied index the state database holds (<= kyu_sm_applied_index): applied entries are
 * written behind, in batches (sm_buffer.c); a clean close keeps it (RocksDB flushes its
 * memtables), a crash goes back to kyu_sm_durable_index or a little past it. */
uint64_t kyu_sm_persisted_index(const kyu_sm_t *self);
/* The applied index the state database's tables hold (<= kyu_sm_persisted_index), as its
 * writes last learned: its writes carry no WAL, so a kill -9 or a power loss takes the state
 * back to its tables, at least this far (RocksDB may have flushed more since). The log is
 * never compacted past it. */
uint64_t kyu_sm_durable_index(const kyu_sm_t *self);
/* Asks for the tables to hold index (at most the applied one) after the next write: the log
 * wants to drop the entries up to it. RocksDB flushes the memtables when one fills; when none
 * has by then, the next write flushes them (all column families at once, sm_buffer.c). */
void kyu_sm_want_durable(kyu_sm_t *self, uint64_t index);
/* Writes every applied entry's changes to the state database (not synced: the log is the
 * durable record), so that it holds the state at kyu_sm_applied_index. For a clean shutdown,
 * a snapshot, a test that reads the database. */
kyu_code_t kyu_sm_flush(kyu_sm_t *self, kyu_err_t *err);
/* Write the buffer at least every `entries` entries (at most KYU_SM_BUFFER_ENTRIES, 8192). */
void kyu_sm_set_write_every(kyu_sm_t *self, uint32_t entries);
/* Writes the buffer on a thread of its own from now on (the broker does): the event loop
 * goes on applying while RocksDB sorts and inserts. kyu_sm_flush still returns once
 * everything is written. Without it (kyu-sim-kyu, which must be deterministic), the writes
 * happen on the applying thread. */
void kyu_sm_write_behind(kyu_sm_t *self);
/* The Raft term of the applied entry (0 when not recorded: data older than the record). */
uint64_t kyu_sm_applied_term(const kyu_sm_t *self);
/* The Raft configuration in force at the applied index (kyu_raft_conf_encode form), or 0
 * bytes when no configuration entry was ever applied (the bootstrap one is in force). */
size_t kyu_sm_raft_conf(const kyu_sm_t *self, const uint8_t **conf);
/* What the next kyu_sm_apply records with its index: the entry's term, and conf (when not
 * NULL) as the configuration from then on. */
void kyu_sm_set_entry_meta(kyu_sm_t *self, uint64_t term, const uint8_t *conf, size_t conf_len);
/* Reloads everything from the store, after its state database was replaced by a snapshot
 * (kyu_store_replace_state). On error the state machine must not be used further. */
kyu_code_t kyu_sm_reload(kyu_sm_t *self, kyu_err_t *err);
/* The largest command time applied: leaders never propose an earlier time. */
uint64_t kyu_sm_last_now(const kyu_sm_t *self);
/* The index and term of the entry whose command carried kyu_sm_last_now, when that entry was
 * applied since the state machine was opened or reloaded (else 0 and 0). */
void kyu_sm_last_now_entry(const kyu_sm_t *self, uint64_t *index, uint64_t *term);

/* Applies the entry at index (must be applied_index + 1). results, when not NULL, has room
 * for cap results and receives one per command in order (*n of them); NULL when nobody waits
 * (replay, followers). A command's failure (unknown queue, stale handle) is its result, not
 * an error; an error return means the entry is corrupt or the write failed, and the state
 * machine must not be used further. */
kyu_code_t kyu_sm_apply(kyu_sm_t *self, uint64_t index, const void *payload, size_t len,
                        kyu_result_t *results, size_t cap, size_t *n, kyu_err_t *err);

/* The replicated address book (SET_MEMBER / DROP_MEMBER, sm_members.c): the entry of node
 * id or NULL; all entries (*members points into the state machine, valid until the next
 * apply or reload). */
const kyu_peer_t *kyu_sm_member(const kyu_sm_t *self, uint64_t id);
size_t kyu_sm_members(const kyu_sm_t *self, const kyu_peer_t **members);

bool kyu_sm_queue_exists(kyu_sm_t *self, const char *name);
size_t kyu_sm_queue_count(kyu_sm_t *self);
/* Queue names in byte order: *names is a heap array the caller frees. */
kyu_code_t kyu_sm_list_queues(kyu_sm_t *self, char (**names)[KYU_NAME_MAX + 1], size_t *n,
                              kyu_err_t *err);
/* True when the queue has a message a receive at now would take (false for an unknown queue).
 * Lets the frontend answer a receive that would find nothing without a command and an fsync. */
bool kyu_sm_has_visible(kyu_sm_t *self, const char *name, uint64_t now_ms);
/* Long polling (sm_wake.c). The frontend parks a receive that finds nothing and wakes it
 * when its queue may have visible messages: after applying, the state machine lists the
 * queues whose messages may have become visible, now or at a later time (a send, a lease
 * set or released, a delay), or that were deleted, once watching is on (the broker turns it
 * on; kyu-sim-kyu never takes the list, so it stays off there). */
void kyu_sm_watch_visible(kyu_sm_t *self);
/* Moves up to cap of those names into names (each once, in no fixed order) and returns how
 * many; call until it returns less than cap. */
size_t kyu_sm_take_woken(kyu_sm_t *self, char (*names)[KYU_NAME_MAX + 1], size_t cap);
/* The queue's id (never reused: a queue deleted and created again has another), 0 when none. */
uint64_t kyu_sm_queue_id(kyu_sm_t *self, const char *name);
/* How many messages of the queue a receive at now would find, counting at most cap. */
uint64_t kyu_sm_visible_upto(kyu_sm_t *self, const char *name, uint64_t now_ms, uint64_t cap);
/* How many messages of a SEND command (built by the leader, not applied yet) a receive
 * applied right after it would find that are not there now: those without a delay (their own
 * or the queue's), not a FIFO duplicate, and on a FIFO queue in a group that holds no
 * message (a message behind others of its group is not receivable). A guess from the state
 * now (commands proposed before it and not applied yet may change it): the frontend wakes
 * long polls and worker sessions with it in the send's own entry (frontend_wait.c). */
uint64_t kyu_sm_send_visible_at_once(kyu_sm_t *self, const kyu_command_t *cmd);
/* The same for a PUBLISH command (built by the leader, not applied yet; op_topic.c): for each
 * queue subscribed to its topic that wanted(arg, queue) asks about, how many of its copies a
 * receive applied right after it would find: the entries the leader did not refuse, not a
 * FIFO topic's duplicate, whose subscription's filter policy matches them, into a queue
 * without DelaySeconds, and on a FIFO queue not a duplicate of the queue's own and in a group
 * that holds no message. found(arg, queue, n) is called for each such queue with n > 0 (a
 * queue subscribed twice, once per subscription). Filter policies are evaluated only for the
 * subscriptions asked about. A guess as send_visible_at_once's. */
void kyu_sm_publish_visible_at_once(kyu_sm_t *self, const kyu_command_t *cmd,
                                    bool (*wanted)(void *arg, const char *queue),
                                    void (*found)(void *arg, const char *queue, uint64_t n),
                                    void *arg);
/* A receive answered before its lease is durable (op_receive_early.c). held(arg, qid, seq):
 * whether the leader must not offer message seq of queue qid (its overlay: leased by an
 * early receive not applied yet, or named by a DELETE or CHANGE_VISIBILITY in flight). */
typedef enum {
    KYU_HELD_NO = 0,
    KYU_HELD_TAKEN, /* leased by an early receive: gone from the index once its entry applies */
    KYU_HELD_STAYS, /* named by a DELETE or CHANGE_VISIBILITY: may stay where it is */
} kyu_held_t;
typedef kyu_held_t (*kyu_sm_held_fn)(void *arg, uint64_t qid, uint64_t seq);
/* For the leader's RECEIVE cmd (queue, now_ms, vt, max, max_inflight set as for a proposal):
 * chooses the messages a receive at now_ms takes, less those held (held_total: how many
 * messages the overlay knows may be in flight at apply beyond what the index counts at now_ms,
 * counted against the in-flight limit), and fills res with the answer and cmd with the early
 * form (cmd->early, the chosen leases, vt resolved).
 * False, with nothing changed and res empty: answer it the durable way (a FIFO queue, fair
 * groups, a RedrivePolicy, a ReceiveRequestAttemptId, the limit near, or nothing found). The caller
 * proposes cmd when true, in Raft term `term` (the leader's: the generations chosen are those
 * apply gives in that term, kyu_lease_next_gen): apply records exactly what res holds as long
 * as nothing but sends and other early receives is applied to the queue in between. */
bool kyu_sm_receive_choose(kyu_sm_t *self, kyu_command_t *cmd, uint64_t term, uint64_t held_total,
                           kyu_sm_held_fn held, void *arg, kyu_result_t *res, kyu_err_t *err);
/* The earliest time a message of the queue becomes visible by itself (a lease running out, a
 * delay ending): UINT64_MAX when none will (or no such queue), 0 when one is visible now. */
uint64_t kyu_sm_next_visible_at(kyu_sm_t *self, const char *name);
/* The queue's default wait of a receive in seconds (ReceiveMessageWaitTimeSeconds), 0 for an
 * unknown queue. */
uint32_t kyu_sm_receive_wait(kyu_sm_t *self, const char *name);
/* True when a write with request key (client, key) was applied within the dedup window as of
 * now: a retry, answered from its record by the state machine, never by a shortcut. */
bool kyu_sm_knows_request(kyu_sm_t *self, uint64_t client, uint64_t key, uint64_t now_ms);
kyu_code_t kyu_sm_queue_attributes(kyu_sm_t *self, const char *name, uint64_t now_ms,
                                   kyu_queue_attrs_t *attrs, kyu_err_t *err);
/* The queue's tags. */
kyu_code_t kyu_sm_queue_tags(kyu_sm_t *self, const char *name, kyu_tags_t *tags, kyu_err_t *err);

/* Receipt handles (sm_handle.c): KYU_HANDLE_LEN lowercase hex digits holding the message's
 * sequence number, its lease generation and a MAC over them and the queue id under the
 * handle key (replicated state). */
#define KYU_HANDLE_LEN 56
void kyu_handle_format(char out[KYU_HANDLE_LEN + 1], const uint8_t key[KYU_HANDLE_KEY_LEN],
                       uint64_t qid, uint64_t seq, uint32_t gen);
/* Reads the sequence number and generation of a well-formed handle, without checking its
 * MAC (for tests and the simulator's oracle; the state machine verifies). */
bool kyu_handle_parse(const char *handle, uint64_t *seq, uint32_t *gen);
/* True when handle is well-formed and its MAC is right for queue qid under key. */
bool kyu_handle_verify(const char *handle, const uint8_t key[KYU_HANDLE_KEY_LEN], uint64_t qid,
                       uint64_t *seq, uint32_t *gen);
/* True once a SET_HANDLE_KEY command was applied (the leader proposes one if not). */
bool kyu_sm_has_handle_key(const kyu_sm_t *self);
/* True when some queue holds messages past its MessageRetentionPeriod at now (the leader
 * then proposes EXPIRE_MESSAGES; sm_expiry.c). O(queues). */
bool kyu_sm_expiry_due(kyu_sm_t *self, uint64_t now);

/* Message move tasks (redrive, op_redrive.c). The step the leader should propose at now: a
 * running task with messages to move (visible ones, within its rate) or to finish (its queue
 * is empty); fills the dead-letter queue's name, the task's id and how many messages the step
 * may move. False when no task has work at now. O(queues) while a task runs, O(1) else. */
bool kyu_sm_redrive_due(kyu_sm_t *self, uint64_t now, char queue[KYU_NAME_MAX + 1], uint64_t *task,
                        uint32_t *max);

#endif
