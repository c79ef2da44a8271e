/* command: the state machine's commands and their encoding in log entries.
 *
 * A command carries every non-deterministic input the state machine needs — the leader's
 * time and the message ids it generated — so that applying the same commands to the same
 * state gives the same state and results on every node. A log entry is a stream of commands
 * (msgpack objects one after the other), so the replica appends to an open entry without
 * knowing how many will follow.
 *
 * Encoded command: [type, now_ms, queue, vt, max, items] (and a 7th element [client id,
 * key] for a write with a request key: the state machine applies it once). The items are
 * the command's own, encoded and decoded by its row (ops.c):
 *   SEND:              items = [[message_id, body(bin)] or [message_id, body(bin),
 *                      delay_ms] or [message_id, body(bin), delay_ms or nil, attributes] or
 *                      [message_id, body(bin), delay_ms or nil, attributes or nil, md5(bin)],
 *                      ...]: md5, the message's MD5OfMessageBody (16 bytes) and, with
 *                      attributes, MD5OfMessageAttributes (16 more), computed by the leader;
 *                      entries written before them (2 to 4 elements) get them computed when
 *                      decoded, and a binary older than them refuses the 5-element form;
 *                      delay_ms (0..KYU_DELIVER_AT_MAX_S * 1000) is the
 *                      message's own delay, which replaces the queue's DelaySeconds (0: visible
 *                      at once); without it (nil, or every entry written before per-message
 *                      delays) the queue's applies; attributes, the message's attributes
 *                      sorted by name, as [name, type, value, ...] (kyu_msg_attrs_pack): only
 *                      for a message that has some, so entries without attributes are the
 *                      same as before them. In a batch (SEND with entry ids), an entry that
 *                      failed the leader's checks is [code, error text] in its place. A message
 *                      with a MessageGroupId or MessageDeduplicationId (a FIFO queue's always
 *                      have both: the leader computes a content-based one) has a 6th element,
 *                      [group id or nil, deduplication id or nil] (sm_fifo.c)
 *   DELETE, CHANGE_VISIBILITY: items = [receipt_handle, ...]; a CHANGE_VISIBILITY batch with
 *                      a timeout per entry (evt): each item [receipt_handle, vt] (its own
 *                      timeout, 0..43200), or [code] for an entry that failed the leader's
 *                      check (a timeout out of range: INVALID_ARGUMENT, nothing changed)
 *   RECEIVE:           items = [max in flight or 0, attempt, chosen or nil, 1]: the
 *                      leader's --max-inflight (1..2^32-1: the receive leases no message past
 *                      it; 0: none); attempt true: its request key is a
 *                      ReceiveRequestAttemptId's (op_receive.c), and an attempt that leases
 *                      nothing records nothing; chosen (bin): a receive the leader answered
 *                      before its entry committed (op_receive_early.c), 1..KYU_BATCH_MAX
 *                      leases of 12 bytes (seq, big-endian u64; the generation it gives,
 *                      big-endian u32), each recorded only if the message is still as the
 *                      leader saw it; 1: the generation rule, kyu_lease_next_gen (sm_internal.h:
 *                      generations skip ahead by the terms since the lease's own). Binaries
 *                      older than this form refuse it. Entries written before it hold
 *                      [max in flight] (1..), [] (before the limit), [max in flight or 0,
 *                      true] (an attempt) or [max in flight or 0, false, chosen], and give
 *                      each lease the generation after its last (gen_legacy), as they did
 *   SET_MEMBER:        items = [node id, raft address (tcp://HOST:PORT), client endpoint]
 *   DROP_MEMBER:       items = [node id]
 *   SET_HANDLE_KEY:    items = [key (bin, 32 bytes)]: the key of receipt handles (sm_handle.c)
 *   CREATE_QUEUE, SET_QUEUE_ATTRIBUTES: items = [MaximumMessageSize (0: not set),
 *                      DelaySeconds], [MaximumMessageSize], or [] (neither set; CREATE_QUEUE
 *                      entries written before attributes other than vt existed hold []); with
 *                      other attributes: [MaximumMessageSize, DelaySeconds or nil, attributes
 *                      (bin: their msgpack map, broker/queue_attrs.h)]
 *   UNTAG_QUEUE:       items = [0, nil, attributes] as SET_QUEUE_ATTRIBUTES's, attributes
 *                      holding only "tags": {key: "", ...}: the keys to remove (op_queue.c)
 *   DELETE_QUEUE:      items = [] or [true] (force: a dead-letter queue of other queues too)
 *   others:            items = [] (PURGE_QUEUE: every message of the queue applied before it
 *                      is deleted; op_queue.c. EXPIRE_MESSAGES, queue "": every queue's
 *                      messages past its MessageRetentionPeriod at now_ms are deleted;
 *                      sm_expiry.c; CANCEL_MOVE_TASK: the queue's running move task ends,
 *                      op_redrive.c)
 *   START_MOVE_TASK:   items = [destination queue or nil, MaxNumberOfMessagesPerSecond (0:
 *                      not set)]: a message move task of the queue (a dead-letter queue)
 *   REDRIVE_STEP:      items = [task id, max]: the leader moves up to max (1..100) of the
 *                      queue's visible messages for its running task (op_redrive.c)
 *   RELEASE_LEASES:    items = [leases (bin)]: 1..KYU_RELEASE_MAX leases of the queue, 12
 *                      bytes each (seq, big-endian u64; lease generation, big-endian u32):
 *                      each message that still holds that very lease (same generation, not
 *                      run out) becomes visible at now_ms; nothing else changes (a deleted,
 *                      expired or re-leased message is left alone). The leader proposes it
 *                      for a worker session declared dead or closed (op_workers.c)
 *   CREATE_TOPIC:      items = [topic] or, for a FIFO topic, [topic, flags]: 1 FIFO, 2
 *                      ContentBasedDeduplication (op_topic.c)
 *   DELETE_TOPIC:      items = [topic]
 *   SUBSCRIBE:         items = [topic, subscription id, raw (bool)] or, with a filter
 *                      policy, [..., raw, scope (0 attributes, 1 body), policy (bin)]; queue:
 *                      the queue
 *   UNSUBSCRIBE:       items = [subscription id]
 *   PUBLISH:           items = [topic, message id, body (bin), attributes or nil]: enqueued
 *                      into every queue subscribed to the topic when it applies, or into
 *                      none (op_topic.c); a batch (PublishBatch): items = [topic, entry,
 *                      ...], 1..10 entries, each [message id, body (bin), attributes or
 *                      nil], enqueued so on its own, or [code, error text] for one that
 *                      failed the leader's checks. A FIFO topic's message (single or entry)
 *                      has two more elements: its group id and its deduplication id
 *                      (strings; the leader computed a content-based one); a standard
 *                      topic's message with a MessageGroupId one more: its group id (a batch
 *                      mixes messages with and without one)
 *   SET_SUBSCRIPTION_ATTRIBUTES: items = [subscription id, raw (bool) or nil (unchanged),
 *                      policy (bin), false (no policy) or nil (unchanged), scope (0, 1) or
 *                      nil (unchanged)] (op_topic.c)
 * SET_MEMBER and DROP_MEMBER (queue "", vt -1, max 0) keep the replicated address book
 * (sm_members.c): where to reach each member, on every node and in every snapshot.
 * vt is -1 when the request did not set it (the queue's default applies). Types are never
 * renumbered: existing logs must replay.
 */
#ifndef KYU_COMMAND_H
#define KYU_COMMAND_H

#include "protocol.h"

typedef enum {
    KYU_CMD_CREATE_QUEUE = 1,
    KYU_CMD_DELETE_QUEUE = 2,
    KYU_CMD_SEND = 3,
    KYU_CMD_RECEIVE = 4,
    KYU_CMD_DELETE = 5,
    KYU_CMD_CHANGE_VISIBILITY = 6,
    KYU_CMD_SET_MEMBER = 7,
    KYU_CMD_DROP_MEMBER = 8,
    KYU_CMD_SET_HANDLE_KEY = 9,
    KYU_CMD_SET_QUEUE_ATTRIBUTES = 10,
    KYU_CMD_PURGE_QUEUE = 11,
    KYU_CMD_EXPIRE_MESSAGES = 12,
    KYU_CMD_START_MOVE_TASK = 13, /* message move tasks (op_redrive.c) */
    KYU_CMD_REDRIVE_STEP = 14,
    KYU_CMD_CANCEL_MOVE_TASK = 15,
    KYU_CMD_RELEASE_LEASES = 16, /* worker sessions (workers.h, op_workers.c) */
    KYU_CMD_UNTAG_QUEUE = 17,    /* 16: the worker sessions' */
    KYU_CMD_CREATE_TOPIC = 18,   /* topics (op_topic.c) */
    KYU_CMD_DELETE_TOPIC = 19,
    KYU_CMD_SUBSCRIBE = 20,
    KYU_CMD_UNSUBSCRIBE = 21,
    KYU_CMD_PUBLISH = 22,
    KYU_CMD_SET_SUBSCRIPTION_ATTRIBUTES = 25,
} kyu_cmd_type_t;

#define KYU_REDRIVE_STEP_MAX 100 /* messages moved by one REDRIVE_STEP at most */
#define KYU_UUID_LEN 36
#define KYU_HANDLE_KEY_LEN 32

typedef struct {
    kyu_cmd_type_t type;
    uint64_t now_ms;
    char queue[KYU_NAME_MAX + 1];
    int64_t vt; /* seconds, -1 = queue default */
    uint32_t max;
    /* CREATE_QUEUE, SET_QUEUE_ATTRIBUTES: MaximumMessageSize, KYU_MAX_SIZE_MIN..MAX; 0: not
     * set (CREATE_QUEUE: the default) */
    uint32_t max_size;
    bool has_delay; /* CREATE_QUEUE, SET_QUEUE_ATTRIBUTES: DelaySeconds set (0..900) */
    uint32_t delay;
    /* CREATE_QUEUE, SET_QUEUE_ATTRIBUTES: the other attributes the request gives (the bits
     * KYU_F_RETENTION..KYU_F_TAGS in qx_set): when built, qx points to the request's (it
     * stays borrowed until the command is encoded); when decoded, qx_mp and qx_len hold
     * their encoding (queue_attrs.h), borrowed from the entry. */
    uint64_t qx_set;
    const kyu_queue_ext_t *qx;
    const void *qx_mp;
    size_t qx_len;
    bool force; /* DELETE_QUEUE: also a queue that is another queue's dead-letter queue */
    size_t n;   /* SEND: messages; DELETE, CHANGE_VISIBILITY: handles */
    const void *bodies[KYU_BATCH_MAX]; /* borrowed: from the request or the decoded entry */
    size_t body_lens[KYU_BATCH_MAX];
    /* SEND: message i has its own delay (delay_ms[i], relative to now_ms) instead of the
     * queue's DelaySeconds; a deliver-at is turned into one by the leader (kyu_op_send_build) */
    bool has_msg_delay[KYU_BATCH_MAX];
    uint64_t msg_delay_ms[KYU_BATCH_MAX];
    /* SEND batch: entry i failed the leader's checks (0: it is a message): its code and why;
     * nothing of it is stored, the reply and a retry's answer say so */
    uint8_t entry_code[KYU_BATCH_MAX]; /* entry_error[i] below: why */
    /* CHANGE_VISIBILITY with a timeout per entry (has_handle_vt): handle i's, seconds; a
     * handle whose timeout is out of range has entry_code[i] INVALID_ARGUMENT instead */
    bool has_handle_vt;
    uint32_t handle_vt[KYU_BATCH_MAX];
    uint64_t rq_client, rq_key; /* SEND: 0 when the client sent no request key */
    /* SET_MEMBER, DROP_MEMBER: the node (1..2^63-1); SET_MEMBER: its addresses, non-empty */
    uint64_t member_id;
    char member_raft[KYU_ENDPOINT_MAX];
    char member_client[KYU_ENDPOINT_MAX];
    uint8_t key[KYU_HANDLE_KEY_LEN]; /* SET_HANDLE_KEY: the receipt handle key */
    uint32_t max_inflight;           /* RECEIVE: the leader's in-flight limit per queue (0: none) */
    bool attempt; /* RECEIVE: its request key stands for a ReceiveRequestAttemptId */
    /* RECEIVE answered before its lease is durable (op_receive_early.c): the leader chose
     * these n_chosen messages (seq, and the lease generation the receive gives them) and
     * answered; apply records exactly those leases, skipping any an earlier entry changed.
     * vt is then the timeout in seconds, never -1. */
    bool early;
    /* RECEIVE: an entry written before the generation rule (items of 0 to 3 elements): each
     * lease it gives has the generation after its last, and its term stays (sm_internal.h,
     * kyu_lease_give_gen), so that the log replays as it was applied. */
    bool gen_legacy;
    size_t n_chosen;
    uint64_t chosen_seq[KYU_BATCH_MAX];
    uint32_t chosen_gen[KYU_BATCH_MAX];
    /* START_MOVE_TASK: the destination ("": each message's source queue) and the rate (0:
     * not set); REDRIVE_STEP: the task it moves for and how many messages at most
     * (1..KYU_REDRIVE_STEP_MAX) */
    char move_dest[KYU_NAME_MAX + 1];
    uint32_t move_rate;
    uint64_t move_task;
    uint32_t move_max;
    /* RELEASE_LEASES: n_rel leases, 12 bytes each (items above); borrowed from the leader's
     * session until the command is encoded, or from the decoded entry */
    const uint8_t *rel;
    size_t n_rel;
    /* Topics: the topic; SUBSCRIBE, UNSUBSCRIBE: the subscription id; SUBSCRIBE: raw
     * delivery. PUBLISH: its message id in ids[0], its body in bodies[0], attrs[0] */
    char topic[KYU_TOPIC_NAME_MAX + 1];
    char sub_id[KYU_SUB_ID_LEN + 1];
    bool raw;
    /* SUBSCRIBE with a filter policy: n 1, the policy's JSON in bodies[0] (borrowed), its
     * scope (kyu_filter_scope_t, broker/filter.h) */
    uint8_t filter_scope;
    /* SET_SUBSCRIPTION_ATTRIBUTES: what changes: raw delivery (has_raw: to raw), the filter
     * policy (n 1: to the one in bodies[0]; no_filter: none) and its scope (has_filter_scope:
     * to filter_scope) */
    bool has_raw, no_filter, has_filter_scope;
    /* PUBLISH as a batch (PublishBatch): n entries, each published on its own (ids[i],
     * bodies[i], attrs[i]), or failed at the leader (entry_code[i], entry_error[i]) */
    bool publish_batch;
    /* CREATE_TOPIC: a FIFO topic (its name ends in .fifo), with ContentBasedDeduplication.
     * PUBLISH to a FIFO topic: each message's group and deduplication ids are in group_ids[i]
     * and dedup_ids[i] (a content-based one computed by the leader); to a standard topic: a
     * message's group, if it has one, in group_ids[i] */
    bool topic_fifo, topic_cbd;
    /* SEND: has_md5 (see md5_body below) */
    bool has_md5;
    /* ---- not cleared by kyu_command_init (some 10 KB): valid below n, each entry written
     * whole by whoever sets n; kyu_command_init empties their first bytes ---- */
    /* SEND: message i's id */
    char ids[KYU_BATCH_MAX][KYU_UUID_LEN + 1];
    /* SEND: message i's MD5OfMessageBody and (with attributes) MD5OfMessageAttributes, raw:
     * computed once, by the leader (kyu_op_send_build), and carried in the entry, so that no
     * replica, receive or peek computes them again; has_md5 false: not computed (a command
     * made by hand) -- decoding computes them then, as for entries written before they were
     * carried. */
    uint8_t md5_body[KYU_BATCH_MAX][KYU_MD5_LEN];
    uint8_t md5_attrs[KYU_BATCH_MAX][KYU_MD5_LEN];
    /* SEND: message i's attributes, sorted by name; borrowed as the bodies are */
    kyu_msg_attrs_t attrs[KYU_BATCH_MAX];
    /* SEND batch: why entry i failed (entry_code[i] != 0) */
    char entry_error[KYU_BATCH_MAX][KYU_ERR_MSG_MAX];
    /* DELETE, CHANGE_VISIBILITY: the receipt handles */
    char handles[KYU_BATCH_MAX][KYU_HANDLE_MAX + 1];
    /* SEND, PUBLISH: message i's MessageGroupId and MessageDeduplicationId ("": none) */
    char group_ids[KYU_BATCH_MAX][KYU_GROUP_ID_MAX + 1];
    char dedup_ids[KYU_BATCH_MAX][KYU_DEDUP_ID_MAX + 1];
} kyu_command_t;

/* Clears cmd for a command to be built or decoded into: every field, but for the arrays after
 * has_md5 only their first bytes (an empty id, handle, error; no attributes). */
void kyu_command_init(kyu_command_t *cmd);

/* Appends cmd's encoding to out. */
void kyu_command_encode(const kyu_command_t *cmd, msgpack_sbuffer *out);

/* Decodes the command at *off in an entry's payload and moves *off past it. The command's
 * bodies point into buf: keep buf alive while using them. A log entry that does not decode
 * means the log is corrupt: the caller refuses to go on. */
kyu_code_t kyu_command_decode(const void *buf, size_t len, size_t *off, kyu_command_t *cmd,
                              kyu_err_t *err);

#endif
