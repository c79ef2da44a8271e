/* ops: the table of operations — one row per operation the broker knows, in the spirit of
 * Redis's command table. The frontend, the command codec (command.c) and the state machine
 * (sm_apply.c) dispatch through it; nothing else in broker/ switches over operations.
 *
 * A row is indexed by its op code: the wire code for a client operation (its wire part —
 * fields, body frames, flags, help — is kyu_op_info(op) in proto/codec.c, shared with
 * libkyu), or an internal code for a command the broker proposes itself (SET_MEMBER, ...).
 * A row that becomes a command also names its command type, the number stored in log
 * entries (command.h), and kyu_ops_command finds the row from it.
 *
 * A request takes one of four ways, by which functions its row has:
 *   answer  answered at once (reads, CLUSTER_TRANSFER);
 *   start   handed to a driver that answers later through the replica's done callback
 *           (CLUSTER_ADD, CLUSTER_REMOVE);
 *   session worker-session ops, bound to the connection (its routing id) that sends them
 *           (WORKER_OPEN, WORKER_HEARTBEAT, WORKER_CLOSE: workers.h);
 *   cmd     validated, built into a command, proposed, applied on commit, and its result
 *           turned into the reply (writes).
 * Adding an operation: docs/ARCHITECTURE.md "Adding an operation".
 *
 * The functions take the state machine as an opaque kyu_sm_t: how it stores its state is
 * its own business (sm_internal.h), not the table's.
 */
#ifndef KYU_OPS_H
#define KYU_OPS_H

#include "membership.h"

#include <czmq.h>

/* Codes of internal operations: commands the broker proposes itself, never on the wire.
 * Not stored anywhere (the log stores command types), so they may be renumbered. */
enum {
    KYU_OP_INTERNAL_ = 64,
    KYU_OP_SET_MEMBER = KYU_OP_INTERNAL_,
    KYU_OP_DROP_MEMBER,
    KYU_OP_SET_HANDLE_KEY,
    KYU_OP_EXPIRE_MESSAGES,
    KYU_OP_REDRIVE_STEP,
    KYU_OP_RELEASE_LEASES,
    KYU_OPS_MAX_
};
_Static_assert((int)KYU_OP_MAX_ <= (int)KYU_OP_INTERNAL_,
               "wire op codes run into the internal ones");

/* Row flags. */
enum {
    /* Its apply reads from the state database what earlier commands of the same entry wrote:
     * the entry is applied through an indexed batch (read-your-writes). No row needs it now:
     * leases and the visibility order are in memory (sm_index.c), and a receive finds a
     * message sent earlier in its entry without the database (kyu_sm_read_message). */
    KYU_ROW_READS_STATE = 1 << 0,
    /* Answered by every node, leader or not (HELLO, CLUSTER_STATUS). */
    KYU_ROW_ANY_ROLE = 1 << 1,
};

/* What a keyed write remembers of its first attempt, so that a retry with the same request
 * key is answered from it (sm_dedup.c keeps it for KYU_DEDUP_WINDOW_MS). */
typedef enum {
    KYU_DEDUP_DONE = 1,   /* only that it was done (DELETE_QUEUE) */
    KYU_DEDUP_IDS = 2,    /* message ids (SEND) */
    KYU_DEDUP_LEASES = 3, /* leases granted: seq and generation (RECEIVE) */
    KYU_DEDUP_CODES = 4,  /* one result code per item (DELETE, CHANGE_VISIBILITY) */
} kyu_dedup_shape_t;

typedef struct {
    uint8_t type; /* kyu_cmd_type_t of the first attempt */
    size_t n;
    char ids[KYU_BATCH_MAX][KYU_UUID_LEN + 1]; /* IDS */
    uint64_t seqs[KYU_BATCH_MAX];              /* LEASES: messages leased ... */
    uint32_t gens[KYU_BATCH_MAX];              /* ... and their lease generations */
    uint8_t codes[KYU_BATCH_MAX];              /* CODES */
    bool no_record; /* set by apply: keep no record (a ReceiveRequestAttemptId's empty receive) */
} kyu_dedup_t;

/* A request's body frames (after its routing id and header), borrowed: b[0 .. n), each
 * pointing into the frontend's receive buffer (recv_bounded.h), valid while the request is
 * handled, until the frontend's next receive. A command built from them borrows them too
 * (kyu_command_t.bodies); kyu_replica_propose copies them into the open entry's payload
 * (kyu_command_encode), so nothing keeps them past the request. */
typedef struct {
    const void *data;
    size_t len;
} kyu_body_t;

typedef struct {
    const kyu_body_t *b;
    size_t n;
} kyu_bodies_t;

/* What the frontend's row functions work with (owned by the frontend). */
struct kyu_workers;

typedef struct {
    kyu_sm_t *sm;
    kyu_replica_t *replica;
    struct kyu_workers *workers;  /* the leader's worker sessions (workers.h) */
    kyu_membership_t *membership; /* NULL: membership changes are refused */
    size_t max_body;
    uint32_t max_inflight; /* RECEIVE: messages in flight per queue (0: no limit) */
    const char *endpoint;  /* this node's client endpoint */
    uint64_t rng[4];       /* message ids (xoshiro256**, seeded from getrandom) */
    /* While an `answer` runs: where one that replies with body frames (PEEK) puts them
     * (bodies, body_lens and owned, rep->n_msgs of them); the frontend clears it after. */
    kyu_result_t *answer_bodies;
} kyu_op_ctx_t;

/* What an apply function gets besides its command. */
typedef struct {
    kyu_result_t *res;  /* the command's result: its failure (unknown queue, ...) goes here */
    bool want_bodies;   /* somebody waits for the result (a RECEIVE reads its bodies) */
    kyu_dedup_t *dedup; /* keyed write: fill with what a retry is answered with; else NULL */
    kyu_err_t *err;     /* a storage failure: the entry fails */
} kyu_apply_t;

typedef struct {
    unsigned op;        /* its index: wire op code or KYU_OP_INTERNAL_ + n */
    const char *name;   /* for logs and errors */
    kyu_cmd_type_t cmd; /* its command type in the log; 0: answered without a command */
    unsigned flags;     /* KYU_ROW_* */

    /* -- frontend -- */
    /* Reads and immediate admin ops: fills rep (the id is set), or returns an error. */
    kyu_code_t (*answer)(kyu_op_ctx_t *ctx, const kyu_request_t *req, kyu_reply_t *rep,
                         kyu_err_t *err);
    /* Admin ops answered later: KYU_OK when waiter was taken (it comes back through the
     * done callback); otherwise nothing started and the waiter stays the caller's. */
    kyu_code_t (*start)(kyu_op_ctx_t *ctx, const kyu_request_t *req, void *waiter, kyu_err_t *err);
    /* Worker-session ops from the connection *identity at host (the peer's address, "" if
     * unknown): an error is answered; KYU_OK with *identity left is answered with rep; KYU_OK
     * with *identity taken is answered later by the sessions (workers.h). */
    kyu_code_t (*session)(kyu_op_ctx_t *ctx, const kyu_request_t *req, zframe_t **identity,
                          const char *host, kyu_reply_t *rep, kyu_err_t *err);
    /* Checks a write against the state and the limits before anything is proposed (NULL:
     * nothing to check). A request that fails is answered with the error, never proposed. */
    kyu_code_t (*validate)(kyu_op_ctx_t *ctx, const kyu_request_t *req, const kyu_bodies_t *bodies,
                           kyu_err_t *err);
    /* True when the write is answered with an empty reply without a command (NULL: never). */
    bool (*answer_empty)(kyu_op_ctx_t *ctx, const kyu_request_t *req);
    /* Long polling: how many ms a request that would be answered empty may wait for
     * something to answer with instead (0: none). The frontend parks it (longpoll.h) and
     * proposes it again when its queue may have visible messages. NULL: never waits. */
    uint64_t (*wait_ms)(kyu_op_ctx_t *ctx, const kyu_request_t *req);
    /* Fills what is particular to its command; the frontend has set the type, time, queue,
     * vt, max and request key (NULL: nothing more). Bodies stay borrowed from the request. */
    void (*build)(kyu_op_ctx_t *ctx, const kyu_request_t *req, const kyu_bodies_t *bodies,
                  kyu_command_t *cmd);
    /* Fills the reply from the applied command's result; *n_bodies of result->bodies go
     * after the header (NULL: an empty reply). */
    void (*reply)(const kyu_result_t *res, kyu_reply_t *rep, size_t *n_bodies);

    /* -- command codec: the items element of the command's encoding (command.h) -- */
    void (*encode_items)(const kyu_command_t *cmd, msgpack_packer *pk);    /* NULL: [] */
    bool (*decode_items)(const msgpack_object *items, kyu_command_t *cmd); /* NULL: [] */

    /* -- state machine -- */
    kyu_code_t (*apply)(kyu_sm_t *sm, const kyu_command_t *cmd, kyu_apply_t *a);
    /* Keyed writes: answers a retry from its first attempt's record, changing nothing. A
     * row without it takes no request key. */
    kyu_code_t (*replay)(kyu_sm_t *sm, const kyu_command_t *cmd, const kyu_dedup_t *d,
                         kyu_apply_t *a);
    kyu_dedup_shape_t dedup; /* with replay: what its record holds */
} kyu_op_row_t;

/* The row of op (wire or internal code), or NULL. */
const kyu_op_row_t *kyu_ops_row(uint64_t op);
/* The row whose command has this type, or NULL (a type the log must not hold). */
const kyu_op_row_t *kyu_ops_command(uint64_t type);

/* ---- the rows' functions, by the file of their concern ---- */

/* op_queue.c: CREATE_QUEUE, SET_QUEUE_ATTRIBUTES, UNTAG_QUEUE, DELETE_QUEUE, PURGE_QUEUE,
 * LIST_QUEUES, GET_QUEUE_ATTRIBUTES */
kyu_code_t kyu_op_queue_exists(kyu_op_ctx_t *ctx, const kyu_request_t *req,
                               const kyu_bodies_t *bodies, kyu_err_t *err);
kyu_code_t kyu_op_create_queue_validate(kyu_op_ctx_t *ctx, const kyu_request_t *req,
                                        const kyu_bodies_t *bodies, kyu_err_t *err);
kyu_code_t kyu_op_set_queue_attributes_validate(kyu_op_ctx_t *ctx, const kyu_request_t *req,
                                                const kyu_bodies_t *bodies, kyu_err_t *err);
void kyu_op_queue_attrs_build(kyu_op_ctx_t *ctx, const kyu_request_t *req,
                              const kyu_bodies_t *bodies, kyu_command_t *cmd);
void kyu_op_queue_attrs_encode(const kyu_command_t *cmd, msgpack_packer *pk);
bool kyu_op_queue_attrs_decode(const msgpack_object *items, kyu_command_t *cmd);
kyu_code_t kyu_op_create_queue_apply(kyu_sm_t *sm, const kyu_command_t *cmd, kyu_apply_t *a);
kyu_code_t kyu_op_set_queue_attributes_apply(kyu_sm_t *sm, const kyu_command_t *cmd,
                                             kyu_apply_t *a);
kyu_code_t kyu_op_delete_queue_validate(kyu_op_ctx_t *ctx, const kyu_request_t *req,
                                        const kyu_bodies_t *bodies, kyu_err_t *err);
void kyu_op_delete_queue_build(kyu_op_ctx_t *ctx, const kyu_request_t *req,
                               const kyu_bodies_t *bodies, kyu_command_t *cmd);
void kyu_op_delete_queue_encode(const kyu_command_t *cmd, msgpack_packer *pk);
bool kyu_op_delete_queue_decode(const msgpack_object *items, kyu_command_t *cmd);
kyu_code_t kyu_op_delete_queue_apply(kyu_sm_t *sm, const kyu_command_t *cmd, kyu_apply_t *a);
kyu_code_t kyu_op_purge_queue_apply(kyu_sm_t *sm, const kyu_command_t *cmd, kyu_apply_t *a);
void kyu_op_untag_queue_build(kyu_op_ctx_t *ctx, const kyu_request_t *req,
                              const kyu_bodies_t *bodies, kyu_command_t *cmd);
kyu_code_t kyu_op_untag_queue_apply(kyu_sm_t *sm, const kyu_command_t *cmd, kyu_apply_t *a);
kyu_code_t kyu_op_done_replay(kyu_sm_t *sm, const kyu_command_t *cmd, const kyu_dedup_t *d,
                              kyu_apply_t *a);
kyu_code_t kyu_op_list_queues_answer(kyu_op_ctx_t *ctx, const kyu_request_t *req, kyu_reply_t *rep,
                                     kyu_err_t *err);
kyu_code_t kyu_op_queue_attributes_answer(kyu_op_ctx_t *ctx, const kyu_request_t *req,
                                          kyu_reply_t *rep, kyu_err_t *err);

/* op_deadletter.c: LIST_DEAD_LETTER_SOURCE_QUEUES (the moves: RECEIVE's apply) */
kyu_code_t kyu_op_dead_letter_sources_answer(kyu_op_ctx_t *ctx, const kyu_request_t *req,
                                             kyu_reply_t *rep, kyu_err_t *err);

/* op_redrive.c: START_MOVE_TASK, LIST_MOVE_TASKS, CANCEL_MOVE_TASK, REDRIVE_STEP (message
 * move tasks: a dead-letter queue's redrive) */
kyu_code_t kyu_op_start_move_validate(kyu_op_ctx_t *ctx, const kyu_request_t *req,
                                      const kyu_bodies_t *bodies, kyu_err_t *err);
void kyu_op_start_move_build(kyu_op_ctx_t *ctx, const kyu_request_t *req,
                             const kyu_bodies_t *bodies, kyu_command_t *cmd);
void kyu_op_start_move_encode(const kyu_command_t *cmd, msgpack_packer *pk);
bool kyu_op_start_move_decode(const msgpack_object *items, kyu_command_t *cmd);
kyu_code_t kyu_op_start_move_apply(kyu_sm_t *sm, const kyu_command_t *cmd, kyu_apply_t *a);
kyu_code_t kyu_op_move_replay(kyu_sm_t *sm, const kyu_command_t *cmd, const kyu_dedup_t *d,
                              kyu_apply_t *a);
void kyu_op_move_reply(const kyu_result_t *res, kyu_reply_t *rep, size_t *n_bodies);
kyu_code_t kyu_op_cancel_move_apply(kyu_sm_t *sm, const kyu_command_t *cmd, kyu_apply_t *a);
kyu_code_t kyu_op_list_moves_answer(kyu_op_ctx_t *ctx, const kyu_request_t *req, kyu_reply_t *rep,
                                    kyu_err_t *err);
void kyu_op_redrive_step_encode(const kyu_command_t *cmd, msgpack_packer *pk);
bool kyu_op_redrive_step_decode(const msgpack_object *items, kyu_command_t *cmd);
kyu_code_t kyu_op_redrive_step_apply(kyu_sm_t *sm, const kyu_command_t *cmd, kyu_apply_t *a);

/* op_message.c: SEND; op_receive.c: RECEIVE */
/* A random (version 4) UUID from the leader's generator, for a command to carry. */
void kyu_op_make_uuid(kyu_op_ctx_t *ctx, char out[KYU_UUID_LEN + 1]);
kyu_code_t kyu_op_send_validate(kyu_op_ctx_t *ctx, const kyu_request_t *req,
                                const kyu_bodies_t *bodies, kyu_err_t *err);
void kyu_op_send_build(kyu_op_ctx_t *ctx, const kyu_request_t *req, const kyu_bodies_t *bodies,
                       kyu_command_t *cmd);
void kyu_op_send_reply(const kyu_result_t *res, kyu_reply_t *rep, size_t *n_bodies);
void kyu_op_send_encode(const kyu_command_t *cmd, msgpack_packer *pk);
bool kyu_op_send_decode(const msgpack_object *items, kyu_command_t *cmd);
kyu_code_t kyu_op_send_apply(kyu_sm_t *sm, const kyu_command_t *cmd, kyu_apply_t *a);
kyu_code_t kyu_op_send_replay(kyu_sm_t *sm, const kyu_command_t *cmd, const kyu_dedup_t *d,
                              kyu_apply_t *a);
bool kyu_op_receive_answer_empty(kyu_op_ctx_t *ctx, const kyu_request_t *req);
kyu_code_t kyu_op_receive_validate(kyu_op_ctx_t *ctx, const kyu_request_t *req,
                                   const kyu_bodies_t *bodies, kyu_err_t *err);
void kyu_op_receive_build(kyu_op_ctx_t *ctx, const kyu_request_t *req, const kyu_bodies_t *bodies,
                          kyu_command_t *cmd);
void kyu_op_receive_encode(const kyu_command_t *cmd, msgpack_packer *pk);
bool kyu_op_receive_decode(const msgpack_object *items, kyu_command_t *cmd);
uint64_t kyu_op_receive_wait_ms(kyu_op_ctx_t *ctx, const kyu_request_t *req);
void kyu_op_receive_reply(const kyu_result_t *res, kyu_reply_t *rep, size_t *n_bodies);
kyu_code_t kyu_op_receive_apply(kyu_sm_t *sm, const kyu_command_t *cmd, kyu_apply_t *a);
/* The early form (op_receive_early.c): records the leases the leader chose and answered. Its
 * result: per chosen message, KYU_OK when recorded, RECEIPT_STALE when skipped. */
kyu_code_t kyu_op_receive_apply_early(kyu_sm_t *sm, const kyu_command_t *cmd, kyu_apply_t *a);
kyu_code_t kyu_op_receive_replay(kyu_sm_t *sm, const kyu_command_t *cmd, const kyu_dedup_t *d,
                                 kyu_apply_t *a);

/* op_peek.c: PEEK (browsing without leasing) */
kyu_code_t kyu_op_peek_answer(kyu_op_ctx_t *ctx, const kyu_request_t *req, kyu_reply_t *rep,
                              kyu_err_t *err);

/* op_receipt.c: DELETE, CHANGE_VISIBILITY (by receipt handle) */
void kyu_op_handles_build(kyu_op_ctx_t *ctx, const kyu_request_t *req, const kyu_bodies_t *bodies,
                          kyu_command_t *cmd);
void kyu_op_handles_reply(const kyu_result_t *res, kyu_reply_t *rep, size_t *n_bodies);
void kyu_op_handles_encode(const kyu_command_t *cmd, msgpack_packer *pk);
bool kyu_op_handles_decode(const msgpack_object *items, kyu_command_t *cmd);
kyu_code_t kyu_op_delete_apply(kyu_sm_t *sm, const kyu_command_t *cmd, kyu_apply_t *a);
kyu_code_t kyu_op_change_visibility_apply(kyu_sm_t *sm, const kyu_command_t *cmd, kyu_apply_t *a);
kyu_code_t kyu_op_handles_replay(kyu_sm_t *sm, const kyu_command_t *cmd, const kyu_dedup_t *d,
                                 kyu_apply_t *a);

/* sm_members.c: SET_MEMBER, DROP_MEMBER (the replicated address book) */
void kyu_op_set_member_encode(const kyu_command_t *cmd, msgpack_packer *pk);
bool kyu_op_set_member_decode(const msgpack_object *items, kyu_command_t *cmd);
kyu_code_t kyu_op_set_member_apply(kyu_sm_t *sm, const kyu_command_t *cmd, kyu_apply_t *a);
void kyu_op_drop_member_encode(const kyu_command_t *cmd, msgpack_packer *pk);
bool kyu_op_drop_member_decode(const msgpack_object *items, kyu_command_t *cmd);
kyu_code_t kyu_op_drop_member_apply(kyu_sm_t *sm, const kyu_command_t *cmd, kyu_apply_t *a);

/* sm_handle.c: SET_HANDLE_KEY (the key of receipt handles) */
void kyu_op_handle_key_build(kyu_command_t *cmd); /* a random key, drawn by the leader */
void kyu_op_handle_key_encode(const kyu_command_t *cmd, msgpack_packer *pk);
bool kyu_op_handle_key_decode(const msgpack_object *items, kyu_command_t *cmd);
kyu_code_t kyu_op_handle_key_apply(kyu_sm_t *sm, const kyu_command_t *cmd, kyu_apply_t *a);

/* sm_expiry.c: EXPIRE_MESSAGES (retention; proposed by the leader, sm_expiry.c's top) */
kyu_code_t kyu_op_expire_apply(kyu_sm_t *sm, const kyu_command_t *cmd, kyu_apply_t *a);

/* op_workers.c: WORKER_OPEN, WORKER_HEARTBEAT, WORKER_CLOSE (through workers.h), LIST_WORKERS,
 * and RELEASE_LEASES (the leases of a session declared dead or closed) */
kyu_code_t kyu_op_worker_open(kyu_op_ctx_t *ctx, const kyu_request_t *req, zframe_t **identity,
                              const char *host, kyu_reply_t *rep, kyu_err_t *err);
kyu_code_t kyu_op_worker_heartbeat(kyu_op_ctx_t *ctx, const kyu_request_t *req, zframe_t **identity,
                                   const char *host, kyu_reply_t *rep, kyu_err_t *err);
kyu_code_t kyu_op_worker_close(kyu_op_ctx_t *ctx, const kyu_request_t *req, zframe_t **identity,
                               const char *host, kyu_reply_t *rep, kyu_err_t *err);
kyu_code_t kyu_op_list_workers_answer(kyu_op_ctx_t *ctx, const kyu_request_t *req, kyu_reply_t *rep,
                                      kyu_err_t *err);
void kyu_op_release_encode(const kyu_command_t *cmd, msgpack_packer *pk);
bool kyu_op_release_decode(const msgpack_object *items, kyu_command_t *cmd);
kyu_code_t kyu_op_release_apply(kyu_sm_t *sm, const kyu_command_t *cmd, kyu_apply_t *a);

/* op_topic.c: CREATE_TOPIC, DELETE_TOPIC, LIST_TOPICS, SUBSCRIBE, UNSUBSCRIBE,
 * LIST_SUBSCRIPTIONS, PUBLISH (SNS-style topics) */
kyu_code_t kyu_op_create_topic_validate(kyu_op_ctx_t *ctx, const kyu_request_t *req,
                                        const kyu_bodies_t *bodies, kyu_err_t *err);
void kyu_op_topic_build(kyu_op_ctx_t *ctx, const kyu_request_t *req, const kyu_bodies_t *bodies,
                        kyu_command_t *cmd);
void kyu_op_topic_encode(const kyu_command_t *cmd, msgpack_packer *pk);
bool kyu_op_topic_decode(const msgpack_object *items, kyu_command_t *cmd);
void kyu_op_create_topic_build(kyu_op_ctx_t *ctx, const kyu_request_t *req,
                               const kyu_bodies_t *bodies, kyu_command_t *cmd);
void kyu_op_create_topic_encode(const kyu_command_t *cmd, msgpack_packer *pk);
bool kyu_op_create_topic_decode(const msgpack_object *items, kyu_command_t *cmd);
kyu_code_t kyu_op_create_topic_apply(kyu_sm_t *sm, const kyu_command_t *cmd, kyu_apply_t *a);
kyu_code_t kyu_op_delete_topic_apply(kyu_sm_t *sm, const kyu_command_t *cmd, kyu_apply_t *a);
kyu_code_t kyu_op_subscribe_validate(kyu_op_ctx_t *ctx, const kyu_request_t *req,
                                     const kyu_bodies_t *bodies, kyu_err_t *err);
void kyu_op_subscribe_build(kyu_op_ctx_t *ctx, const kyu_request_t *req, const kyu_bodies_t *bodies,
                            kyu_command_t *cmd);
void kyu_op_subscribe_encode(const kyu_command_t *cmd, msgpack_packer *pk);
bool kyu_op_subscribe_decode(const msgpack_object *items, kyu_command_t *cmd);
kyu_code_t kyu_op_subscribe_apply(kyu_sm_t *sm, const kyu_command_t *cmd, kyu_apply_t *a);
kyu_code_t kyu_op_unsubscribe_validate(kyu_op_ctx_t *ctx, const kyu_request_t *req,
                                       const kyu_bodies_t *bodies, kyu_err_t *err);
void kyu_op_unsubscribe_build(kyu_op_ctx_t *ctx, const kyu_request_t *req,
                              const kyu_bodies_t *bodies, kyu_command_t *cmd);
void kyu_op_unsubscribe_encode(const kyu_command_t *cmd, msgpack_packer *pk);
bool kyu_op_unsubscribe_decode(const msgpack_object *items, kyu_command_t *cmd);
kyu_code_t kyu_op_unsubscribe_apply(kyu_sm_t *sm, const kyu_command_t *cmd, kyu_apply_t *a);
kyu_code_t kyu_op_publish_validate(kyu_op_ctx_t *ctx, const kyu_request_t *req,
                                   const kyu_bodies_t *bodies, kyu_err_t *err);
void kyu_op_publish_build(kyu_op_ctx_t *ctx, const kyu_request_t *req, const kyu_bodies_t *bodies,
                          kyu_command_t *cmd);
void kyu_op_publish_encode(const kyu_command_t *cmd, msgpack_packer *pk);
bool kyu_op_publish_decode(const msgpack_object *items, kyu_command_t *cmd);
kyu_code_t kyu_op_publish_apply(kyu_sm_t *sm, const kyu_command_t *cmd, kyu_apply_t *a);
kyu_code_t kyu_op_topic_id_replay(kyu_sm_t *sm, const kyu_command_t *cmd, const kyu_dedup_t *d,
                                  kyu_apply_t *a);
void kyu_op_publish_reply(const kyu_result_t *res, kyu_reply_t *rep, size_t *n_bodies);
kyu_code_t kyu_op_publish_replay(kyu_sm_t *sm, const kyu_command_t *cmd, const kyu_dedup_t *d,
                                 kyu_apply_t *a);
void kyu_op_topic_id_reply(const kyu_result_t *res, kyu_reply_t *rep, size_t *n_bodies);
kyu_code_t kyu_op_list_topics_answer(kyu_op_ctx_t *ctx, const kyu_request_t *req, kyu_reply_t *rep,
                                     kyu_err_t *err);
kyu_code_t kyu_op_list_subscriptions_answer(kyu_op_ctx_t *ctx, const kyu_request_t *req,
                                            kyu_reply_t *rep, kyu_err_t *err);
/* SET_SUBSCRIPTION_ATTRIBUTES, GET_SUBSCRIPTION_ATTRIBUTES (op_topic.c too) */
kyu_code_t kyu_op_set_sub_attrs_validate(kyu_op_ctx_t *ctx, const kyu_request_t *req,
                                         const kyu_bodies_t *bodies, kyu_err_t *err);
void kyu_op_set_sub_attrs_build(kyu_op_ctx_t *ctx, const kyu_request_t *req,
                                const kyu_bodies_t *bodies, kyu_command_t *cmd);
void kyu_op_set_sub_attrs_encode(const kyu_command_t *cmd, msgpack_packer *pk);
bool kyu_op_set_sub_attrs_decode(const msgpack_object *items, kyu_command_t *cmd);
kyu_code_t kyu_op_set_sub_attrs_apply(kyu_sm_t *sm, const kyu_command_t *cmd, kyu_apply_t *a);
kyu_code_t kyu_op_get_sub_attrs_answer(kyu_op_ctx_t *ctx, const kyu_request_t *req,
                                       kyu_reply_t *rep, kyu_err_t *err);

/* op_cluster.c: HELLO, CLUSTER_STATUS, CLUSTER_TRANSFER, CLUSTER_ADD, CLUSTER_REMOVE */
kyu_code_t kyu_op_hello_answer(kyu_op_ctx_t *ctx, const kyu_request_t *req, kyu_reply_t *rep,
                               kyu_err_t *err);
kyu_code_t kyu_op_status_answer(kyu_op_ctx_t *ctx, const kyu_request_t *req, kyu_reply_t *rep,
                                kyu_err_t *err);
kyu_code_t kyu_op_transfer_answer(kyu_op_ctx_t *ctx, const kyu_request_t *req, kyu_reply_t *rep,
                                  kyu_err_t *err);
kyu_code_t kyu_op_add_start(kyu_op_ctx_t *ctx, const kyu_request_t *req, void *waiter,
                            kyu_err_t *err);
kyu_code_t kyu_op_remove_start(kyu_op_ctx_t *ctx, const kyu_request_t *req, void *waiter,
                               kyu_err_t *err);

#endif
