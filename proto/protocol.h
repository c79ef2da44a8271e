/* protocol: kyu's wire protocol — op codes, limits, the request and reply structures and
 * their msgpack codec. proto/PROTOCOL.md is the specification; this header is its C form.
 *
 * A message is multipart: one msgpack header frame, then zero or more body frames. Bodies
 * never pass through this codec: the caller keeps them in their own frames.
 *
 * Decoding is total: any byte string yields a filled struct or an error code with a text,
 * never a crash or an allocation larger than a small multiple of the input. Strings in
 * decoded structs are copied into fixed buffers, so a decoded struct owns all its memory
 * except kyu_reply_t.queues and .tags (freed by kyu_reply_reset).
 */
#ifndef KYU_PROTOCOL_H
#define KYU_PROTOCOL_H

#include "kyu_err.h"

/* @kyu-internal-begin: this header is installed with libkyu (include/kyu/protocol.h) without
 * the sections so marked: the codec, which needs msgpack-c and is not part of libkyu's API. */
#include <msgpack.h>
/* @kyu-internal-end */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define KYU_PROTOCOL_VERSION 1

/* Limits fixed by the protocol (SQS's where SQS has one). */
#define KYU_NAME_MAX 80                /* queue name: 1..80 of [A-Za-z0-9_-] */
#define KYU_BATCH_MAX 10               /* messages per send, receive or delete */
#define KYU_HANDLE_MAX 128             /* receipt handle length */
#define KYU_MESSAGE_ID_MAX 40          /* message ids are UUIDs: 36 characters */
#define KYU_HEADER_MAX (64 * 1024)     /* header frame size */
#define KYU_VISIBILITY_MAX 43200       /* seconds (12 hours) */
#define KYU_VISIBILITY_DEFAULT 30      /* seconds */
#define KYU_BODY_MAX_DEFAULT (1 << 20) /* 1 MiB, SQS's current limit */
/* A queue's MaximumMessageSize (SQS's range and default); the broker's own body limit holds
 * as well (a send is held to the smaller, and GET_QUEUE_ATTRIBUTES reports the smaller). */
#define KYU_MAX_SIZE_MIN 1024
#define KYU_MAX_SIZE_MAX (1 << 20)
#define KYU_MAX_SIZE_DEFAULT KYU_MAX_SIZE_MAX
#define KYU_DELAY_MAX 900 /* a queue's or a message's DelaySeconds: 0..900 (default 0) */
/* SEND "da": a delivery time at most this many seconds after the send (14 days, the longest
 * MessageRetentionPeriod; the broker holds it to the queue's own period) */
#define KYU_DELIVER_AT_MAX_S 1209600
/* RECEIVE "wt": long polling, 0..20 seconds (SQS's WaitTimeSeconds) */
#define KYU_WAIT_MAX 20
#define KYU_ENDPOINT_MAX 256
/* Messages in flight (received, lease not over) per queue: SQS's limit for a standard queue
 * (OverLimit past it); kyu-broker --max-inflight changes it (tests set it low). */
#define KYU_INFLIGHT_MAX_DEFAULT 120000
/* The other attributes of a queue (SQS's ranges, defaults and limits). */
#define KYU_RETENTION_MIN 60
#define KYU_RETENTION_MAX 1209600      /* MessageRetentionPeriod: 60 s .. 14 days */
#define KYU_RETENTION_DEFAULT 345600   /* 4 days */
#define KYU_RECEIVE_WAIT_MAX 20        /* ReceiveMessageWaitTimeSeconds: 0..20 (default 0) */
#define KYU_MAX_RECEIVE_COUNT_MAX 1000 /* RedrivePolicy maxReceiveCount: 1..1000 */
#define KYU_REDRIVE_SOURCES_MAX 10     /* RedriveAllowPolicy byQueue: 1..10 source queues */
#define KYU_TAGS_MAX 50                /* tags per queue */
#define KYU_TAG_KEY_MAX 128            /* tag key: 1..128 bytes */
#define KYU_TAG_VALUE_MAX 256          /* tag value: 0..256 bytes */
#define KYU_CLUSTER_NODES_MAX 9        /* voters + learners of a cluster (KYU_RAFT_MAX_NODES) */
/* Message attributes (SQS's rules, proto/msg_attrs.c): at most 10 per message; a name is 1 to
 * 256 of [A-Za-z0-9_.-], a DataType String, Number or Binary with an optional ".suffix", 256
 * at most; their bytes (names, types, values) count toward the message's size. */
#define KYU_MSG_ATTRS_MAX 10
#define KYU_ATTR_NAME_MAX 256
#define KYU_ATTR_TYPE_MAX 256
#define KYU_MD5_HEX_LEN 32
#define KYU_MD5_LEN 16
#define KYU_ENTRY_ID_MAX 80 /* a batch entry's Id (SQS's): 1..80 of [A-Za-z0-9_-] */
/* Message move tasks (redrive): MaxNumberOfMessagesPerSecond 1..500 (SQS's; not given: as
 * fast as the broker moves them), and the tasks a queue keeps (SQS lists the 10 latest). */
#define KYU_MOVE_RATE_MAX 500
#define KYU_MOVE_TASKS_MAX 10
#define KYU_MOVE_REASON_MAX 256
/* Worker sessions (PROTOCOL.md "Worker sessions"): a session's credit (messages its worker
 * holds at once; a heartbeat gives back 0..KYU_WORKER_CREDIT_MAX), the heartbeat interval
 * both ways, the heartbeats missed before a session is declared dead, a worker's name. */
#define KYU_WORKER_CREDIT_MAX 10000
#define KYU_WORKER_HB_MIN_MS 100
#define KYU_WORKER_HB_MAX_MS 60000
#define KYU_WORKER_HB_DEFAULT_MS 1000
#define KYU_WORKER_LIVENESS_MAX 100
#define KYU_WORKER_LIVENESS_DEFAULT 3
#define KYU_WORKER_NAME_MAX 64
/* Topics (PROTOCOL.md "Topics"): a name is 1..256 of [A-Za-z0-9_-] (SNS's); a topic has at
 * most KYU_TOPIC_SUBS_MAX subscriptions (kyu's bound: a publish is one command that enqueues
 * into each), a cluster at most KYU_TOPICS_MAX topics; a subscription id is a UUID. */
#define KYU_TOPIC_NAME_MAX 256
#define KYU_TOPIC_SUBS_MAX 100
#define KYU_TOPICS_MAX 1000
#define KYU_SUB_ID_LEN 36
/* The bytes one publish may write into its subscribed queues together (bodies, or envelopes,
 * and attributes of every copy): fan-out multiplies writes, and a publish is one entry. */
#define KYU_PUBLISH_FANOUT_MAX (32 << 20)
/* FIFO queues (SQS's): a name ends in ".fifo" (counted in the 80); MessageGroupId,
 * MessageDeduplicationId and ReceiveRequestAttemptId are 1..128 characters of letters, digits
 * and punctuation (ASCII 0x21..0x7e); a duplicate send within this window is not enqueued */
#define KYU_FIFO_SUFFIX ".fifo"
#define KYU_GROUP_ID_MAX 128
#define KYU_DEDUP_ID_MAX 128
#define KYU_ATTEMPT_ID_MAX 128
#define KYU_FIFO_DEDUP_WINDOW_MS (5 * 60 * 1000)
/* DeduplicationScope and FifoThroughputLimit */
enum { KYU_DEDUP_SCOPE_QUEUE = 0, KYU_DEDUP_SCOPE_GROUP = 1 };
enum { KYU_THROUGHPUT_PER_QUEUE = 0, KYU_THROUGHPUT_PER_GROUP = 1 };
/* A PUBLISH batch (SNS's PublishBatch, `eid`): its entries' bodies and attributes together
 * (SNS's 256 KiB; else TOO_LARGE BatchRequestTooLong, the whole batch refused) */
#define KYU_PUBLISH_BATCH_BYTES_MAX (256 * 1024)

typedef enum {
    KYU_OP_HELLO = 1,
    KYU_OP_CREATE_QUEUE = 2,
    KYU_OP_DELETE_QUEUE = 3,
    KYU_OP_LIST_QUEUES = 4,
    KYU_OP_GET_QUEUE_ATTRIBUTES = 5,
    KYU_OP_SEND = 6,
    KYU_OP_RECEIVE = 7,
    KYU_OP_DELETE = 8,
    KYU_OP_CHANGE_VISIBILITY = 9,
    KYU_OP_CLUSTER_STATUS = 10,
    KYU_OP_CLUSTER_TRANSFER = 11,
    KYU_OP_CLUSTER_ADD = 12,
    KYU_OP_CLUSTER_REMOVE = 13,
    KYU_OP_SET_QUEUE_ATTRIBUTES = 14,
    KYU_OP_PURGE_QUEUE = 15,
    KYU_OP_LIST_DEAD_LETTER_SOURCE_QUEUES = 16,
    KYU_OP_PEEK = 17,
    KYU_OP_START_MOVE_TASK = 18,  /* SQS's StartMessageMoveTask (redrive a dead-letter queue) */
    KYU_OP_LIST_MOVE_TASKS = 19,  /* ListMessageMoveTasks */
    KYU_OP_CANCEL_MOVE_TASK = 20, /* CancelMessageMoveTask */
    KYU_OP_WORKER_OPEN = 21,      /* a worker session: pushed leases (PROTOCOL.md) */
    KYU_OP_WORKER_HEARTBEAT = 22,
    KYU_OP_WORKER_CLOSE = 23,
    KYU_OP_LIST_WORKERS = 24,
    KYU_OP_UNTAG_QUEUE = 25, /* UntagQueue */
    /* 26..32: SNS-style topics (PROTOCOL.md "Topics") */
    KYU_OP_CREATE_TOPIC = 26,
    KYU_OP_DELETE_TOPIC = 27,
    KYU_OP_LIST_TOPICS = 28,
    KYU_OP_SUBSCRIBE = 29,
    KYU_OP_UNSUBSCRIBE = 30,
    KYU_OP_LIST_SUBSCRIPTIONS = 31,
    KYU_OP_PUBLISH = 32,
    /* 33..34: a subscription's attributes (SNS's SetSubscriptionAttributes and
     * GetSubscriptionAttributes: FilterPolicy, FilterPolicyScope, RawMessageDelivery) */
    KYU_OP_SET_SUBSCRIPTION_ATTRIBUTES = 33,
    KYU_OP_GET_SUBSCRIPTION_ATTRIBUTES = 34,
    KYU_OP_MAX_
} kyu_op_t;

/* Request fields, as bits (64 of them: KYU_F_* and masks of them are uint64_t): an op's
 * table row says which are required and which allowed. */
#define KYU_F_QUEUE (UINT64_C(1) << 0)   /* "q": queue name */
#define KYU_F_VT (UINT64_C(1) << 1)      /* "vt": visibility timeout, seconds */
#define KYU_F_MAX (UINT64_C(1) << 2)     /* "max": messages to receive */
#define KYU_F_HANDLES (UINT64_C(1) << 3) /* "rh": array of receipt handles */
#define KYU_F_VERSION (UINT64_C(1) << 4) /* "v": protocol version */
#define KYU_F_RQ                                                                                   \
    (UINT64_C(1) << 5) /* "rq": [client id, request key]: a retried write is applied once */
#define KYU_F_TO                                                                                   \
    (UINT64_C(1) << 6) /* "to": a node id (CLUSTER_TRANSFER's target, ADD/REMOVE's node) */
#define KYU_F_RAFT (UINT64_C(1) << 7)   /* "raft": HOST:PORT of a node's raft port (CLUSTER_ADD) */
#define KYU_F_EP (UINT64_C(1) << 8)     /* "ep": a node's client endpoint (CLUSTER_ADD) */
#define KYU_F_MMS (UINT64_C(1) << 9)    /* "mms": a queue's MaximumMessageSize, bytes */
#define KYU_F_DELAY (UINT64_C(1) << 10) /* "ds": a queue's DelaySeconds (SEND: each message's) */
#define KYU_F_DELIVER_AT (UINT64_C(1) << 11) /* "da": SEND: deliver at, ms since the epoch */
#define KYU_F_RETENTION (UINT64_C(1) << 12)  /* "mrp": a queue's MessageRetentionPeriod, seconds */
#define KYU_F_RECEIVE_WAIT                                                                         \
    (UINT64_C(1) << 13) /* "rwt": a queue's ReceiveMessageWaitTimeSeconds                          \
                         */
#define KYU_F_REDRIVE                                                                              \
    (UINT64_C(1) << 14) /* "rdp": a queue's RedrivePolicy [dlq, maxReceiveCount] */
#define KYU_F_REDRIVE_ALLOW                                                                        \
    (UINT64_C(1) << 15)                 /* "rap": a queue's RedriveAllowPolicy [mode, [queues]] */
#define KYU_F_TAGS (UINT64_C(1) << 16)  /* "tags": a queue's tags {key: value} */
#define KYU_F_FORCE (UINT64_C(1) << 17) /* "force": DELETE_QUEUE of a dead-letter queue */
#define KYU_F_CREDIT                                                                               \
    (UINT64_C(1) << 18)              /* "cr": WORKER_OPEN's credit, WORKER_HEARTBEAT's given back */
#define KYU_F_HB (UINT64_C(1) << 19) /* "hb": WORKER_OPEN: heartbeat interval, ms */
#define KYU_F_LIVENESS (UINT64_C(1) << 23)    /* "lv": WORKER_OPEN: heartbeats missed before dead */
#define KYU_F_WORKER_NAME (UINT64_C(1) << 25) /* "wn": WORKER_OPEN: the worker's name */
#define KYU_F_MSG_ATTRS (UINT64_C(1) << 20)   /* "ma": SEND: each message's attributes */
#define KYU_F_ENTRY_IDS (UINT64_C(1) << 21)   /* "eid": SEND as a batch: each message's entry id */
#define KYU_F_ENTRY_DELAYS                                                                         \
    (UINT64_C(1) << 22)                /* "eds": SEND batch: each message's DelaySeconds or nil */
#define KYU_F_FROM (UINT64_C(1) << 26) /* "from": PEEK: the position to list from */
#define KYU_F_WAIT                                                                                 \
    (UINT64_C(1) << 24) /* "wt": RECEIVE: wait up to this many seconds for a message */
#define KYU_F_DEST (UINT64_C(1) << 27) /* "dst": START_MOVE_TASK: the destination queue */
#define KYU_F_RATE (UINT64_C(1) << 28) /* "mps": START_MOVE_TASK: MaxNumberOfMessagesPerSecond */
#define KYU_F_SID (UINT64_C(1) << 29)  /* "sid": WORKER_HEARTBEAT, WORKER_CLOSE: the session */
#define KYU_F_TAG_KEYS (UINT64_C(1) << 30)     /* "tk": UNTAG_QUEUE: the tag keys to remove */
#define KYU_F_CREDIT_TOTAL (UINT64_C(1) << 31) /* "ct": WORKER_HEARTBEAT: the new total credit */
#define KYU_F_ENTRY_VTS (UINT64_C(1) << 32)    /* "evt": CHANGE_VISIBILITY batch: each one's vt */
/* 33..40: topics (PROTOCOL.md "Topics") */
#define KYU_F_TOPIC (UINT64_C(1) << 33)  /* "tp": a topic's name */
#define KYU_F_SUB_ID (UINT64_C(1) << 34) /* "sub": UNSUBSCRIBE: a subscription's id */
#define KYU_F_RAW (UINT64_C(1) << 35)    /* "raw": SUBSCRIBE: raw message delivery */
/* 36..38: filter policies (PROTOCOL.md "Filter policies") */
#define KYU_F_FILTER (UINT64_C(1) << 36) /* "flt": SUBSCRIBE: the body frame is a filter policy */
#define KYU_F_FILTER_SCOPE                                                                         \
    (UINT64_C(1) << 37) /* "fsc": SUBSCRIBE: the policy's scope, "attributes" or "body" */
/* 38..43: FIFO queues (PROTOCOL.md "FIFO queues") */
#define KYU_F_FIFO (UINT64_C(1) << 38) /* "fifo": CREATE_QUEUE: FifoQueue (true) */
#define KYU_F_CBD (UINT64_C(1) << 39)  /* "cbd": a queue's ContentBasedDeduplication (bool) */
#define KYU_F_DEDUP_SCOPE                                                                          \
    (UINT64_C(1) << 40) /* "dsc": a queue's DeduplicationScope, "queue" or "messageGroup" */
#define KYU_F_THROUGHPUT                                                                           \
    (UINT64_C(1) << 41) /* "ftl": FifoThroughputLimit, "perQueue" or "perMessageGroupId" */
#define KYU_F_GROUPS                                                                               \
    (UINT64_C(1) << 42) /* "mg": SEND: each message's [MessageGroupId, MessageDeduplicationId] */
#define KYU_F_ATTEMPT (UINT64_C(1) << 43) /* "raid": RECEIVE: ReceiveRequestAttemptId */
/* 44..45: SET_SUBSCRIPTION_ATTRIBUTES (PROTOCOL.md "Filter policies") */
#define KYU_F_NO_FILTER (UINT64_C(1) << 44) /* "nflt": remove the subscription's filter policy */
#define KYU_F_RAW_DELIVERY                                                                         \
    (UINT64_C(1) << 45) /* "rd": RawMessageDelivery, true or false (raw_delivery) */
#define KYU_F_LAST_ KYU_F_RAW_DELIVERY
/* the queue attributes of kyu_queue_ext_t (CREATE_QUEUE, SET_QUEUE_ATTRIBUTES) */
#define KYU_F_QUEUE_EXT_                                                                           \
    (KYU_F_RETENTION | KYU_F_RECEIVE_WAIT | KYU_F_REDRIVE | KYU_F_REDRIVE_ALLOW | KYU_F_TAGS |     \
     KYU_F_FIFO | KYU_F_CBD | KYU_F_DEDUP_SCOPE | KYU_F_THROUGHPUT)

/* RedriveAllowPolicy's redrivePermission. */
typedef enum {
    KYU_REDRIVE_ALLOW_ALL = 0, /* allowAll (the default) */
    KYU_REDRIVE_DENY_ALL = 1,  /* denyAll */
    KYU_REDRIVE_BY_QUEUE = 2,  /* byQueue: the queues listed */
} kyu_redrive_allow_t;

typedef struct {
    size_t n;
    char keys[KYU_TAGS_MAX][KYU_TAG_KEY_MAX + 1];
    char values[KYU_TAGS_MAX][KYU_TAG_VALUE_MAX + 1];
} kyu_tags_t;

/* A queue's attributes beyond VisibilityTimeout, MaximumMessageSize and DelaySeconds: in a
 * request (CREATE_QUEUE, SET_QUEUE_ATTRIBUTES; the request's KYU_F_* bits say which are
 * given) and in the broker (broker/queue_attrs.h). The tags come last (see kyu_request_t). */
typedef struct {
    uint32_t retention;    /* MessageRetentionPeriod, seconds */
    uint32_t receive_wait; /* ReceiveMessageWaitTimeSeconds */
    /* RedrivePolicy: the dead-letter queue ("": none) and maxReceiveCount (1..1000) */
    char dlq[KYU_NAME_MAX + 1];
    uint32_t max_receive_count;
    /* RedriveAllowPolicy: who may name this queue as its dead-letter queue */
    uint32_t allow;   /* kyu_redrive_allow_t */
    size_t n_sources; /* byQueue: 1..10 queues */
    char sources[KYU_REDRIVE_SOURCES_MAX][KYU_NAME_MAX + 1];
    /* FIFO queues: FifoQueue (at creation only), ContentBasedDeduplication,
     * DeduplicationScope (KYU_DEDUP_SCOPE_*), FifoThroughputLimit (KYU_THROUGHPUT_*) */
    bool fifo, cbd;
    uint32_t dedup_scope, throughput;
    kyu_tags_t tags;
} kyu_queue_ext_t;

/* Op flags: WRITE ops go through the log; READ ops are answered from applied state. */
/* ADMIN ops act on the cluster, not on queues: answered by the leader, not logged. */
/* SESSION ops (WORKER_OPEN, _HEARTBEAT, _CLOSE) act on a worker session, which lives in the
 * leader's memory only and is bound to the connection that opened it: never retried on
 * another connection, not logged (their leases are). */
enum {
    KYU_OPF_WRITE = 1 << 0,
    KYU_OPF_READ = 1 << 1,
    KYU_OPF_ADMIN = 1 << 2,
    KYU_OPF_SESSION = 1 << 3
};

typedef struct {
    kyu_op_t op;
    const char *name;  /* CLI / log name */
    uint64_t required; /* KYU_F_* */
    uint64_t allowed;  /* includes required */
    unsigned min_bodies, max_bodies;
    unsigned flags;
    const char *help;
} kyu_op_info_t;

/* The op table row for op, or NULL for an unknown op. */
const kyu_op_info_t *kyu_op_info(uint64_t op);
/* True when buf's n bytes are valid UTF-8 (RFC 3629: no overlong forms, no surrogates,
 * nothing past U+10FFFF); tag keys and values must be (SQS). */
bool kyu_utf8_valid(const void *buf, size_t n);

/* One message attribute. The bytes are borrowed: from a decoded header (valid while its
 * buffer is), a message record, or the caller's own strings. A value travels as a msgpack
 * str for String and Number types, as bin for Binary ones (binary is true). */
typedef struct {
    const char *name;
    size_t name_len;
    const char *type; /* the full DataType, e.g. "Number.float" */
    size_t type_len;
    const void *value;
    size_t value_len;
    bool binary;
} kyu_msg_attr_t;

typedef struct {
    size_t n;
    kyu_msg_attr_t a[KYU_MSG_ATTRS_MAX];
} kyu_msg_attrs_t;

typedef struct {
    uint64_t id; /* request id chosen by the client, echoed in the reply */
    bool has_id;
    uint32_t op;
    uint64_t fields; /* KYU_F_* present */
    uint32_t version;
    char queue[KYU_NAME_MAX + 1];
    uint32_t vt;
    uint32_t max;
    size_t n_handles;
    char handles[KYU_BATCH_MAX][KYU_HANDLE_MAX + 1];
    uint64_t rq_client, rq_key;  /* KYU_F_RQ: both non-zero */
    uint64_t to;                 /* KYU_F_TO: non-zero */
    char raft[KYU_ENDPOINT_MAX]; /* KYU_F_RAFT: non-empty */
    char ep[KYU_ENDPOINT_MAX];   /* KYU_F_EP: non-empty */
    uint32_t max_size;           /* KYU_F_MMS (the broker checks its range) */
    uint32_t delay;              /* KYU_F_DELAY (the broker checks its range) */
    uint64_t deliver_at_ms;      /* KYU_F_DELIVER_AT (the broker checks its range) */
    uint64_t from;               /* KYU_F_FROM: PEEK's first position (0: the start) */
    char dest[KYU_NAME_MAX + 1]; /* KYU_F_DEST: START_MOVE_TASK's destination queue */
    uint32_t rate;               /* KYU_F_RATE: 1..KYU_MOVE_RATE_MAX messages a second */
    /* KYU_F_MSG_ATTRS: the attributes of each of n_attr_msgs messages (as many as bodies),
     * borrowed from the header buffer; decoding checks their shape, kyu_msg_attrs_check
     * their content (the broker, per message) */
    size_t n_attr_msgs;
    kyu_msg_attrs_t attrs[KYU_BATCH_MAX];
    /* KYU_F_ENTRY_IDS: a batch of n_entries (as many as bodies) with distinct valid ids, each
     * checked alone by the broker; KYU_F_ENTRY_DELAYS: entry_delay[i] is entry i's own
     * DelaySeconds, -1 for none (the broker checks its range, failing that entry alone) */
    size_t n_entries, n_entry_delays;
    char entry_ids[KYU_BATCH_MAX][KYU_ENTRY_ID_MAX + 1];
    int64_t entry_delay[KYU_BATCH_MAX];
    /* KYU_F_ENTRY_VTS (CHANGE_VISIBILITY with eid): entry_vt[i] is handle i's own visibility
     * timeout, seconds (the broker checks its range, failing that entry alone) */
    size_t n_entry_vts;
    uint32_t entry_vt[KYU_BATCH_MAX];
    uint32_t wait; /* KYU_F_WAIT: seconds, 0..KYU_WAIT_MAX */
    /* KYU_F_GROUPS (SEND): message i's MessageGroupId and MessageDeduplicationId ("": none),
     * n_group_msgs of them (as many as bodies; the codec checks their characters) */
    size_t n_group_msgs;
    char group_ids[KYU_BATCH_MAX][KYU_GROUP_ID_MAX + 1];
    char dedup_ids[KYU_BATCH_MAX][KYU_DEDUP_ID_MAX + 1];
    char attempt_id[KYU_ATTEMPT_ID_MAX + 1]; /* KYU_F_ATTEMPT (RECEIVE) */
    /* Worker sessions: KYU_F_CREDIT (WORKER_OPEN 1.., WORKER_HEARTBEAT 0..
     * KYU_WORKER_CREDIT_MAX), KYU_F_HB (ms, KYU_WORKER_HB_MIN_MS..KYU_WORKER_HB_MAX_MS),
     * KYU_F_LIVENESS (1..KYU_WORKER_LIVENESS_MAX), KYU_F_WORKER_NAME (1..64 printable
     * bytes), KYU_F_SID (non-zero): the codec checks these ranges */
    uint32_t credit, hb_ms, liveness;
    uint32_t credit_total; /* KYU_F_CREDIT_TOTAL: 1..KYU_WORKER_CREDIT_MAX */
    char worker_name[KYU_WORKER_NAME_MAX + 1];
    uint64_t sid;
    /* Topics: KYU_F_TOPIC (a valid topic name: the codec checks it), KYU_F_SUB_ID (a
     * subscription id, 36 characters), KYU_F_RAW (SUBSCRIBE: raw delivery) */
    char topic[KYU_TOPIC_NAME_MAX + 1];
    char sub_id[KYU_SUB_ID_LEN + 1];
    /* KYU_F_FILTER_SCOPE: 0 attributes (MessageAttributes, the default), 1 body (MessageBody);
     * the codec checks it, and that it comes with KYU_F_FILTER */
    uint8_t filter_scope;
    bool raw_delivery; /* KYU_F_RAW_DELIVERY: the new RawMessageDelivery */
    /* KYU_F_RETENTION, _RECEIVE_WAIT, _REDRIVE (dlq "" removes the policy), _REDRIVE_ALLOW,
     * _TAGS: the queue's other attributes (the broker checks their ranges). Last, and its
     * tags last in it: the decoder clears the struct only up to the tags (20 KB that only
     * CREATE_QUEUE and SET_QUEUE_ATTRIBUTES use; qx.tags.n says how many hold data).
     * KYU_F_TAG_KEYS (UNTAG_QUEUE): the keys in qx.tags.keys, their values "". */
    kyu_queue_ext_t qx;
} kyu_request_t;

typedef struct {
    char message_id[KYU_MESSAGE_ID_MAX + 1];
    char handle[KYU_HANDLE_MAX + 1];
    uint32_t receive_count;
    uint64_t sent_ms;          /* SentTimestamp, ms since the epoch */
    uint64_t first_receive_ms; /* ApproximateFirstReceiveTimestamp */
    /* A message moved from another queue (its RedrivePolicy): the queue it left
     * (DeadLetterQueueSourceQueue; "" for a message sent to this queue), its receive count
     * then, its first and last receive (0: leased before it was recorded) and when it moved
     * (ms since the epoch) */
    char dlq_source[KYU_NAME_MAX + 1];
    uint32_t dlq_receive_count;
    uint64_t dlq_first_receive_ms, dlq_last_receive_ms, dlq_moved_ms;
    kyu_msg_attrs_t attrs;               /* borrowed: see kyu_reply_t.header */
    char md5_body[KYU_MD5_HEX_LEN + 1];  /* MD5OfMessageBody, lowercase hex */
    char md5_attrs[KYU_MD5_HEX_LEN + 1]; /* MD5OfMessageAttributes; "" without attributes */
    /* MessageGroupId and MessageDeduplicationId ("": none) and, on a FIFO queue, its
     * SequenceNumber (0: none) */
    char group_id[KYU_GROUP_ID_MAX + 1];
    char dedup_id[KYU_DEDUP_ID_MAX + 1];
    uint64_t sequence;
    /* PEEK (no handle): the message's state, its position in the queue (for "from") and,
     * in flight or delayed, when it becomes visible (ms since the epoch) */
    uint8_t state; /* KYU_MSG_* (0: not a peek) */
    uint64_t position;
    uint64_t visible_at_ms;
} kyu_msg_meta_t;

/* PEEK: a message's state ("state" on the wire: "visible", "inflight", "delayed"). */
enum { KYU_MSG_VISIBLE = 1, KYU_MSG_INFLIGHT = 2, KYU_MSG_DELAYED = 3 };
/* The state's wire name, or NULL; and the state of a wire name, or 0. */
const char *kyu_msg_state_name(unsigned state);
unsigned kyu_msg_state_parse(const char *name);

typedef struct {
    int64_t visibility_timeout;
    int64_t visible;      /* ApproximateNumberOfMessages */
    int64_t not_visible;  /* ApproximateNumberOfMessagesNotVisible */
    int64_t created_ms;   /* CreatedTimestamp, ms since the epoch */
    int64_t max_size;     /* MaximumMessageSize, bytes */
    int64_t delay;        /* DelaySeconds */
    int64_t delayed;      /* ApproximateNumberOfMessagesDelayed */
    int64_t modified_ms;  /* LastModifiedTimestamp, ms since the epoch (creation, or the last
                           * SET_QUEUE_ATTRIBUTES) */
    int64_t retention;    /* MessageRetentionPeriod, seconds */
    int64_t receive_wait; /* ReceiveMessageWaitTimeSeconds */
    /* RedrivePolicy: deadLetterTargetQueue ("": none) and maxReceiveCount */
    char dlq[KYU_NAME_MAX + 1];
    int64_t max_receive_count;
    /* RedriveAllowPolicy: redrivePermission (kyu_redrive_allow_t) and, for byQueue, the
     * source queues */
    int64_t redrive_allow;
    size_t n_sources;
    char sources[KYU_REDRIVE_SOURCES_MAX][KYU_NAME_MAX + 1];
    size_t n_tags; /* how many tags the queue has (they travel in kyu_reply_t.tags) */
    /* FifoQueue, ContentBasedDeduplication, DeduplicationScope, FifoThroughputLimit */
    bool fifo, cbd;
    int64_t dedup_scope, throughput;
} kyu_queue_attrs_t;

/* A message move task (SQS's ListMessageMoveTasksResultEntry): moves the messages of a
 * dead-letter queue (source) back to the queue each came from, or to destination. */
enum {
    KYU_MOVE_RUNNING = 1,
    KYU_MOVE_COMPLETED = 2,
    KYU_MOVE_CANCELLED = 3,
    KYU_MOVE_FAILED = 4,
};
typedef struct {
    uint64_t id;                        /* the task's handle: unique in the cluster */
    uint32_t status;                    /* KYU_MOVE_* */
    char source[KYU_NAME_MAX + 1];      /* the dead-letter queue */
    char destination[KYU_NAME_MAX + 1]; /* "": each message's source queue */
    uint32_t rate;                      /* MaxNumberOfMessagesPerSecond; 0: not set */
    uint64_t moved;                     /* ApproximateNumberOfMessagesMoved (exact in kyu) */
    uint64_t to_move;                   /* ApproximateNumberOfMessagesToMove, at its start */
    uint64_t started_ms;                /* StartedTimestamp, ms since the epoch */
    uint64_t ended_ms;                  /* when it completed, was cancelled or failed (0: runs) */
    char reason[KYU_MOVE_REASON_MAX];   /* FailureReason (FAILED only) */
} kyu_move_task_t;
/* A status's wire name ("RUNNING", ...) or NULL; the status of a name, or 0. */
const char *kyu_move_status_name(unsigned status);
unsigned kyu_move_status_parse(const char *name);

/* LIST_WORKERS: one worker session. */
typedef struct {
    uint64_t sid;
    char name[KYU_WORKER_NAME_MAX + 1]; /* "wn" */
    char host[KYU_ENDPOINT_MAX];        /* the peer's address ("" if unknown) */
    char queue[KYU_NAME_MAX + 1];
    uint32_t credit;       /* "cr": messages it may be pushed now */
    uint32_t credit_total; /* "ct": its total credit (the worker sets it as it scales) */
    uint32_t held;         /* leases pushed and not yet given back */
    uint64_t hb_ago_ms;    /* "hbago": ms since its last heartbeat */
    uint64_t age_ms;       /* ms since it opened */
} kyu_worker_info_t;

/* A push's event ("ev" on the wire): leased messages, the broker's heartbeat, the end of
 * the session. A reply that is not a push has none (0). */
enum { KYU_EV_MSGS = 1, KYU_EV_HB = 2, KYU_EV_CLOSED = 3 };
/* The event's wire name ("msgs", "hb", "closed") or NULL; the event of a name, or 0. */
const char *kyu_ev_name(unsigned ev);
unsigned kyu_ev_parse(const char *name);

/* LIST_SUBSCRIPTIONS, GET_SUBSCRIPTION_ATTRIBUTES: one subscription of a topic to a queue. */
typedef struct {
    char id[KYU_SUB_ID_LEN + 1];
    char topic[KYU_TOPIC_NAME_MAX + 1];
    char queue[KYU_NAME_MAX + 1];
    bool raw; /* raw delivery: the body and attributes as published, no envelope */
    /* a filter policy picks its messages; filter_body: on the JSON body (FilterPolicyScope
     * MessageBody), else the attributes */
    bool filtered, filter_body;
    /* the policy's JSON (compact, keys sorted), NUL-terminated; NULL when not filtered (or
     * from a broker that did not send it). It lives in the same allocation as the array of
     * subscriptions it is in: freeing the array frees it. */
    const char *policy;
} kyu_sub_info_t;

/* CLUSTER_STATUS: one node's own view of the cluster. */
typedef struct {
    uint64_t id; /* 1 for a node started without peers */
    char raft_address[KYU_ENDPOINT_MAX];
    char endpoint[KYU_ENDPOINT_MAX];
    char role[16];   /* leader, follower, candidate */
    char member[16]; /* voter, learner, none (joining, or removed) */
    uint64_t term, commit_index, applied_index;
    uint64_t leader; /* the leader's id as this node knows it, 0 if none */
    /* The configuration this node knows (the latest in its log) */
    size_t n_voters, n_learners;
    uint64_t voters[KYU_CLUSTER_NODES_MAX], learners[KYU_CLUSTER_NODES_MAX];
    /* Why the node refuses writes with READ_ONLY (its disk is full or failing), "" when it
     * does not */
    char read_only[KYU_ERR_MSG_MAX];
} kyu_node_status_t;

/* A reply. Its per-message arrays (ids, md5_body, md5_attrs, msgs, errors) hold the reply's
 * entries below their counts only: libkyu clears and copies no further (a reply per message
 * in a pipelined client), so the rows past them hold what an earlier reply left there. */
typedef struct {
    uint64_t id;
    uint32_t status; /* kyu_code_t */
    char error[KYU_ERR_MSG_MAX];
    char leader[KYU_ENDPOINT_MAX]; /* NOT_LEADER: the leader's client endpoint, if known */
    /* HELLO */
    uint32_t version;
    uint64_t max_body;
    /* SEND: one id per body, in order, and the MD5s of what the broker stored ("" when the
     * reply had none: a broker before MD5s; md5_attrs also for a message without attributes) */
    size_t n_ids;
    char ids[KYU_BATCH_MAX][KYU_MESSAGE_ID_MAX + 1];
    char md5_body[KYU_BATCH_MAX][KYU_MD5_HEX_LEN + 1];
    char md5_attrs[KYU_BATCH_MAX][KYU_MD5_HEX_LEN + 1];
    /* SEND to a FIFO queue: each message's SequenceNumber (a duplicate's: the first one's) */
    uint64_t sequences[KYU_BATCH_MAX];
    /* RECEIVE: one meta per body frame that follows the header, in order */
    size_t n_msgs;
    kyu_msg_meta_t msgs[KYU_BATCH_MAX];
    /* PEEK: more messages follow; list them from position next */
    bool has_next;
    uint64_t next;
    /* DELETE / CHANGE_VISIBILITY: one result code per handle (KYU_OK on success). SEND batch
     * with a failed entry: one per entry (its id is then ""), and errors[i] says why */
    size_t n_results;
    uint32_t results[KYU_BATCH_MAX];
    size_t n_errors;
    char errors[KYU_BATCH_MAX][KYU_ERR_MSG_MAX];
    /* GET_QUEUE_ATTRIBUTES */
    bool has_attrs;
    kyu_queue_attrs_t attrs;
    /* CLUSTER_STATUS */
    bool has_node;
    kyu_node_status_t node;
    /* LIST_QUEUES, LIST_DEAD_LETTER_SOURCE_QUEUES: heap array of n_queues names, owned by
     * the reply */
    size_t n_queues;
    char (*queues)[KYU_NAME_MAX + 1];
    /* GET_QUEUE_ATTRIBUTES: the queue's tags, heap, owned by the reply (NULL: none sent) */
    kyu_tags_t *tags;
    /* START_MOVE_TASK, CANCEL_MOVE_TASK (the task), LIST_MOVE_TASKS (newest first): heap
     * array of n_tasks, owned by the reply (NULL: none sent) */
    size_t n_tasks;
    kyu_move_task_t *tasks;
    /* Worker sessions: WORKER_OPEN's reply and every push name the session (0: none); a push
     * has its event (KYU_EV_*: also on a "closed" push, whose st says why) and a WORKER_OPEN
     * reply the effective heartbeat interval (ms) and liveness (0: not sent) */
    uint64_t sid;
    uint32_t ev;
    uint32_t hb_ms, liveness;
    /* LIST_WORKERS: heap array of n_workers, ordered by sid, owned by the reply (NULL: none
     * sent) */
    size_t n_workers;
    kyu_worker_info_t *workers;
    /* LIST_TOPICS: heap array of n_topics names, sorted; LIST_SUBSCRIPTIONS: heap array of
     * n_subs, by topic then id; owned by the reply (NULL: none sent) */
    size_t n_topics;
    char (*topics)[KYU_TOPIC_NAME_MAX + 1];
    size_t n_subs;
    kyu_sub_info_t *subs;
    /* A decoded reply whose messages have attributes: a heap copy of the header they point
     * into, owned by the reply (the broker's own replies borrow them from its records) */
    char *header;
} kyu_reply_t;

/* True when id is a valid batch entry id: 1..80 of letters, digits, '-' and '_' (SQS's). */
bool kyu_entry_id_valid(const char *id, size_t len);
/* True when name is 1..80 characters of letters, digits, '-' and '_', optionally ending in
 * ".fifo" (counted in the 80). */
bool kyu_queue_name_valid(const char *name, size_t len);
/* True when name ends in ".fifo" (a FIFO queue's name). */
bool kyu_queue_name_fifo(const char *name, size_t len);
/* True when id is a valid MessageGroupId, MessageDeduplicationId or ReceiveRequestAttemptId:
 * 1..max characters of ASCII 0x21..0x7e (SQS's letters, digits and punctuation). */
bool kyu_fifo_id_valid(const char *id, size_t len, size_t max);
/* True when name is 1..256 characters of letters, digits, '-' and '_' (a topic's). */
bool kyu_topic_name_valid(const char *name, size_t len);

/* @kyu-internal-begin */
/* Decodes and validates a request header (shape, types, ranges, fields against the op
 * table, body count). On error, req->id/has_id still hold the request id when it could be
 * read, so the error reply can echo it. */
kyu_code_t kyu_request_decode(const void *buf, size_t len, size_t n_bodies, kyu_request_t *req,
                              kyu_err_t *err);
/* Appends req's msgpack header to out. */
void kyu_request_encode(const kyu_request_t *req, msgpack_sbuffer *out);
/* @kyu-internal-end */

void kyu_reply_init(kyu_reply_t *rep);
/* kyu_reply_init but for the arrays ids, md5_body, md5_attrs, msgs and errors (13 KB), left as
 * they are: for a reply to encode whose writer fills every entry below n_ids, n_msgs and
 * n_errors (the broker's replies; the encoder reads nothing past a count). */
void kyu_reply_init_lean(kyu_reply_t *rep);
/* Frees what the reply owns and zeroes it. */
void kyu_reply_reset(kyu_reply_t *rep);
/* @kyu-internal-begin */
void kyu_reply_encode(const kyu_reply_t *rep, msgpack_sbuffer *out);
/* Frees what dst owns and moves src into it: dst becomes src, and src keeps its fields but
 * owns nothing any more (reset it, or decode into it, before reading it again). One copy,
 * where kyu_reply_reset(dst) then *dst = *src clears dst first; of the per-message arrays
 * only the rows below their counts (ids and MD5s n_ids, msgs n_msgs, errors the larger of
 * n_errors and n_results): the rest of dst's rows stay as they were. */
void kyu_reply_move(kyu_reply_t *dst, kyu_reply_t *src);
/* Decodes a reply header. The caller calls kyu_reply_reset afterwards, also on error. The
 * reply is cleared first as kyu_reply_init would, but for the per-message arrays' rows past
 * those the header fills (the longest array of each): a reply is read below its counts. */
kyu_code_t kyu_reply_decode(const void *buf, size_t len, kyu_reply_t *rep, kyu_err_t *err);
/* @kyu-internal-end */

/* Message attributes (proto/msg_attrs.c). */
/* Checks a message's attributes against SQS's rules (names, types, values, count); the
 * error names the attribute. */
kyu_code_t kyu_msg_attrs_check(const kyu_msg_attrs_t *a, kyu_err_t *err);
/* Their size as SQS counts it toward the message size: names, types and values. */
size_t kyu_msg_attrs_size(const kyu_msg_attrs_t *a);
/* Sorts them by name (byte order): the order they are stored, returned and hashed in. */
void kyu_msg_attrs_sort(kyu_msg_attrs_t *a);
/* @kyu-internal-begin */
/* Packs them as one flat array [name, type, value, name, type, value, ...]. */
void kyu_msg_attrs_pack(msgpack_packer *pk, const kyu_msg_attrs_t *a);
/* Reads that array (shape only: strings, a str or bin value, at most 10 triples); the
 * attributes point into the buffer o was unpacked from. */
bool kyu_msg_attrs_unpack(const msgpack_object *o, kyu_msg_attrs_t *a);
/* @kyu-internal-end */
/* MD5OfMessageBody and MD5OfMessageAttributes as SQS computes them, lowercase hex; the
 * attributes' digest is "" when there are none. */
void kyu_md5_body_hex(const void *body, size_t len, char out[KYU_MD5_HEX_LEN + 1]);
void kyu_md5_attrs_hex(const kyu_msg_attrs_t *a, char out[KYU_MD5_HEX_LEN + 1]);
/* The same digests as KYU_MD5_LEN raw bytes (the broker stores them so, computed once per
 * message); kyu_md5_attrs is false, out untouched, when there are no attributes. */
void kyu_md5_body(const void *body, size_t len, uint8_t out[KYU_MD5_LEN]);
bool kyu_md5_attrs(const kyu_msg_attrs_t *a, uint8_t out[KYU_MD5_LEN]);
void kyu_md5_hex(const uint8_t d[KYU_MD5_LEN], char out[KYU_MD5_HEX_LEN + 1]);
/* SHA-256 of a body, lowercase hex: a FIFO queue's content-based MessageDeduplicationId. */
#define KYU_SHA256_HEX_LEN 64
void kyu_sha256_hex(const void *body, size_t len, char out[KYU_SHA256_HEX_LEN + 1]);

/* @kyu-internal-begin */
/* Zeroes the fields of *p, a type, from field from up to (not including) field to: the lean
 * clears of a request or a reply, which leave their large per-message arrays as they are
 * (kyu_request_prepare_send in client/kyu.c, kyu_reply_init_lean in proto/reply.c). */
#define KYU_CLEAR_RANGE(type, p, from, to)                                                         \
    memset((char *)(p) + offsetof(type, from), 0, offsetof(type, to) - offsetof(type, from))

/* Small msgpack helpers shared by the codecs (proto/, broker/command.c). */
void kyu_mp_pack_str(msgpack_packer *pk, const char *s);
/* Packs b as msgpack's true or false. */
static inline void kyu_mp_pack_bool(msgpack_packer *pk, bool b)
{
    if (b)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
}
/* True when k is the string key name. Inline: with name a literal, its strlen is a constant
 * (the codecs compare each key of every request and command against a list of names). */
static inline bool kyu_mp_key_is(const msgpack_object *k, const char *name)
{
    size_t n = strlen(name);
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
           memcmp(k->via.str.ptr, name, n) == 0;
}
/* Copies a string object of at most max bytes into out[max + 1]; false for other types or
 * longer strings. (msgpack-c gives a NULL pointer for an empty string: handled here.) */
bool kyu_mp_copy_str(const msgpack_object *o, char *out, size_t max);

/* Unpacks a msgpack object from untrusted bytes with bounded allocation: rejects input whose
 * declared container sizes exceed the bytes left or that nests deeper than max_depth, before
 * msgpack-c (which allocates by declared size) sees it. The whole buffer must be one object.
 * On success the caller destroys *out with msgpack_unpacked_destroy. */
kyu_code_t kyu_msgpack_unpack_bounded(const void *buf, size_t len, int max_depth,
                                      msgpack_unpacked *out, kyu_err_t *err);
/* The same for one object of a stream: unpacks the object at *off and moves *off past it. */
kyu_code_t kyu_msgpack_unpack_next_bounded(const void *buf, size_t len, size_t *off, int max_depth,
                                           msgpack_unpacked *out, kyu_err_t *err);
/* @kyu-internal-end */

#endif
