/* codec: the msgpack form of request and reply headers (proto/PROTOCOL.md), and the op table.
 *
 * Headers are msgpack maps with short string keys. Decoding is strict: unknown keys, wrong
 * types, out-of-range numbers and fields an op does not take are errors, so a client bug is
 * reported instead of half-understood. */
#include "protocol.h"

#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 4

/* The wire part of each op, indexed by op code (shared by the broker and libkyu): fields,
 * body frames, flags. The broker's part of each op (validation against state, command,
 * apply, reply) is its row in broker/ops.c, under the same code. */
static const kyu_op_info_t op_table[KYU_OP_MAX_] = {
    [KYU_OP_HELLO] = {KYU_OP_HELLO, "hello", KYU_F_VERSION, KYU_F_VERSION, 0, 0, KYU_OPF_READ,
                      "exchange protocol versions and limits"},
    [KYU_OP_CREATE_QUEUE] = {KYU_OP_CREATE_QUEUE, "create-queue", KYU_F_QUEUE,
                             KYU_F_QUEUE | KYU_F_VT | KYU_F_MMS | KYU_F_DELAY | KYU_F_QUEUE_EXT_, 0,
                             0, KYU_OPF_WRITE,
                             "create a queue (idempotent when the attributes match)"},
    [KYU_OP_SET_QUEUE_ATTRIBUTES] = {KYU_OP_SET_QUEUE_ATTRIBUTES, "set-queue-attributes",
                                     KYU_F_QUEUE,
                                     KYU_F_QUEUE | KYU_F_VT | KYU_F_MMS | KYU_F_DELAY |
                                         KYU_F_QUEUE_EXT_,
                                     0, 0, KYU_OPF_WRITE,
                                     "change a queue's attributes (at least one)"},
    [KYU_OP_DELETE_QUEUE] = {KYU_OP_DELETE_QUEUE, "delete-queue", KYU_F_QUEUE,
                             KYU_F_QUEUE | KYU_F_RQ | KYU_F_FORCE, 0, 0, KYU_OPF_WRITE,
                             "delete a queue and all its messages (force: also a dead-letter "
                             "queue of other queues)"},
    [KYU_OP_PURGE_QUEUE] = {KYU_OP_PURGE_QUEUE, "purge-queue", KYU_F_QUEUE, KYU_F_QUEUE | KYU_F_RQ,
                            0, 0, KYU_OPF_WRITE,
                            "delete every message of a queue (visible, in flight, delayed)"},
    [KYU_OP_LIST_DEAD_LETTER_SOURCE_QUEUES] = {KYU_OP_LIST_DEAD_LETTER_SOURCE_QUEUES,
                                               "list-dead-letter-source-queues", KYU_F_QUEUE,
                                               KYU_F_QUEUE, 0, 0, KYU_OPF_READ,
                                               "the queues whose RedrivePolicy names this one"},
    [KYU_OP_PEEK] = {KYU_OP_PEEK, "peek", KYU_F_QUEUE, KYU_F_QUEUE | KYU_F_MAX | KYU_F_FROM, 0, 0,
                     KYU_OPF_READ,
                     "list up to max messages from position `from` without leasing them"},
    [KYU_OP_START_MOVE_TASK] = {KYU_OP_START_MOVE_TASK, "start-move-task", KYU_F_QUEUE,
                                KYU_F_QUEUE | KYU_F_DEST | KYU_F_RATE | KYU_F_RQ, 0, 0,
                                KYU_OPF_WRITE,
                                "move a dead-letter queue's messages back to their source queues "
                                "(or to dst), at most mps a second"},
    [KYU_OP_LIST_MOVE_TASKS] = {KYU_OP_LIST_MOVE_TASKS, "list-move-tasks", KYU_F_QUEUE,
                                KYU_F_QUEUE | KYU_F_MAX, 0, 0, KYU_OPF_READ,
                                "the latest max (1..10, default 1) move tasks of a queue"},
    [KYU_OP_CANCEL_MOVE_TASK] = {KYU_OP_CANCEL_MOVE_TASK, "cancel-move-task", KYU_F_QUEUE,
                                 KYU_F_QUEUE | KYU_F_RQ, 0, 0, KYU_OPF_WRITE,
                                 "cancel the running move task of a queue"},
    [KYU_OP_WORKER_OPEN] = {KYU_OP_WORKER_OPEN, "worker-open", KYU_F_QUEUE | KYU_F_CREDIT,
                            KYU_F_QUEUE | KYU_F_CREDIT | KYU_F_HB | KYU_F_LIVENESS | KYU_F_VT |
                                KYU_F_WORKER_NAME,
                            0, 0, KYU_OPF_SESSION,
                            "open a worker session: the leader pushes up to cr leased messages "
                            "of queue q to this connection"},
    [KYU_OP_WORKER_HEARTBEAT] = {KYU_OP_WORKER_HEARTBEAT, "worker-heartbeat", KYU_F_SID,
                                 KYU_F_SID | KYU_F_CREDIT | KYU_F_CREDIT_TOTAL, 0, 0,
                                 KYU_OPF_SESSION,
                                 "a worker session's heartbeat, giving back cr credit"},
    [KYU_OP_WORKER_CLOSE] = {KYU_OP_WORKER_CLOSE, "worker-close", KYU_F_SID, KYU_F_SID, 0, 0,
                             KYU_OPF_SESSION,
                             "end a worker session, releasing the leases it still holds"},
    [KYU_OP_LIST_WORKERS] = {KYU_OP_LIST_WORKERS, "list-workers", 0, KYU_F_QUEUE, 0, 0,
                             KYU_OPF_READ, "the leader's worker sessions (of queue q)"},
    [KYU_OP_UNTAG_QUEUE] = {KYU_OP_UNTAG_QUEUE, "untag-queue", KYU_F_QUEUE | KYU_F_TAG_KEYS,
                            KYU_F_QUEUE | KYU_F_TAG_KEYS | KYU_F_RQ, 0, 0, KYU_OPF_WRITE,
                            "remove tags from a queue by key (a key it lacks is no error)"},
    [KYU_OP_CREATE_TOPIC] = {KYU_OP_CREATE_TOPIC, "create-topic", KYU_F_TOPIC,
                             KYU_F_TOPIC | KYU_F_FIFO | KYU_F_CBD, 0, 0, KYU_OPF_WRITE,
                             "create a topic (idempotent; fifo: a FIFO topic, its name ending in "
                             ".fifo; cbd: its ContentBasedDeduplication)"},
    [KYU_OP_DELETE_TOPIC] = {KYU_OP_DELETE_TOPIC, "delete-topic", KYU_F_TOPIC,
                             KYU_F_TOPIC | KYU_F_RQ, 0, 0, KYU_OPF_WRITE,
                             "delete a topic and its subscriptions"},
    [KYU_OP_LIST_TOPICS] = {KYU_OP_LIST_TOPICS, "list-topics", 0, 0, 0, 0, KYU_OPF_READ,
                            "list topic names"},
    [KYU_OP_SUBSCRIBE] = {KYU_OP_SUBSCRIBE, "subscribe", KYU_F_TOPIC | KYU_F_QUEUE,
                          KYU_F_TOPIC | KYU_F_QUEUE | KYU_F_RAW | KYU_F_FILTER |
                              KYU_F_FILTER_SCOPE | KYU_F_RQ,
                          0, 1, KYU_OPF_WRITE,
                          "subscribe queue q to topic tp (raw: no envelope; flt: the body frame is "
                          "a filter policy, fsc its scope); replies its id"},
    [KYU_OP_UNSUBSCRIBE] = {KYU_OP_UNSUBSCRIBE, "unsubscribe", KYU_F_SUB_ID,
                            KYU_F_SUB_ID | KYU_F_RQ, 0, 0, KYU_OPF_WRITE,
                            "remove a subscription by its id"},
    [KYU_OP_LIST_SUBSCRIPTIONS] = {KYU_OP_LIST_SUBSCRIPTIONS, "list-subscriptions", 0, KYU_F_TOPIC,
                                   0, 0, KYU_OPF_READ, "list subscriptions (of topic tp)"},
    [KYU_OP_PUBLISH] = {KYU_OP_PUBLISH, "publish", KYU_F_TOPIC,
                        KYU_F_TOPIC | KYU_F_MSG_ATTRS | KYU_F_RQ | KYU_F_ENTRY_IDS | KYU_F_GROUPS,
                        1, KYU_BATCH_MAX, KYU_OPF_WRITE,
                        "publish one message to a topic: enqueued into every subscribed queue "
                        "or none (eid: a batch of 1..10, each entry so on its own; mg: a FIFO "
                        "topic's group and deduplication ids)"},
    [KYU_OP_SET_SUBSCRIPTION_ATTRIBUTES] = {KYU_OP_SET_SUBSCRIPTION_ATTRIBUTES,
                                            "set-subscription-attributes", KYU_F_SUB_ID,
                                            KYU_F_SUB_ID | KYU_F_FILTER | KYU_F_FILTER_SCOPE |
                                                KYU_F_NO_FILTER | KYU_F_RAW_DELIVERY | KYU_F_RQ,
                                            0, 1, KYU_OPF_WRITE,
                                            "change a subscription's filter policy (flt: the body "
                                            "frame; nflt: none), its scope (fsc) or its raw "
                                            "delivery (rd)"},
    [KYU_OP_GET_SUBSCRIPTION_ATTRIBUTES] = {KYU_OP_GET_SUBSCRIPTION_ATTRIBUTES,
                                            "get-subscription-attributes", KYU_F_SUB_ID,
                                            KYU_F_SUB_ID, 0, 0, KYU_OPF_READ,
                                            "a subscription's topic, queue, raw delivery and "
                                            "filter policy"},
    [KYU_OP_LIST_QUEUES] = {KYU_OP_LIST_QUEUES, "list-queues", 0, 0, 0, 0, KYU_OPF_READ,
                            "list queue names"},
    [KYU_OP_GET_QUEUE_ATTRIBUTES] = {KYU_OP_GET_QUEUE_ATTRIBUTES, "get-queue-attributes",
                                     KYU_F_QUEUE, KYU_F_QUEUE, 0, 0, KYU_OPF_READ,
                                     "show a queue's attributes and message counts"},
    [KYU_OP_SEND] = {KYU_OP_SEND, "send", KYU_F_QUEUE,
                     KYU_F_QUEUE | KYU_F_RQ | KYU_F_DELAY | KYU_F_DELIVER_AT | KYU_F_MSG_ATTRS |
                         KYU_F_ENTRY_IDS | KYU_F_ENTRY_DELAYS | KYU_F_GROUPS,
                     1, KYU_BATCH_MAX, KYU_OPF_WRITE, "send 1..10 messages, one per body frame"},
    [KYU_OP_RECEIVE] = {KYU_OP_RECEIVE, "receive", KYU_F_QUEUE,
                        KYU_F_QUEUE | KYU_F_MAX | KYU_F_VT | KYU_F_RQ | KYU_F_WAIT | KYU_F_ATTEMPT,
                        0, 0, KYU_OPF_WRITE,
                        "lease up to max visible messages, waiting up to wt seconds for one"},
    [KYU_OP_DELETE] = {KYU_OP_DELETE, "delete", KYU_F_QUEUE | KYU_F_HANDLES,
                       KYU_F_QUEUE | KYU_F_HANDLES | KYU_F_RQ | KYU_F_ENTRY_IDS, 0, 0,
                       KYU_OPF_WRITE,
                       "delete messages by receipt handle (eid: a batch, an entry id per handle)"},
    [KYU_OP_CHANGE_VISIBILITY] = {KYU_OP_CHANGE_VISIBILITY, "change-visibility",
                                  KYU_F_QUEUE | KYU_F_HANDLES,
                                  KYU_F_QUEUE | KYU_F_HANDLES | KYU_F_VT | KYU_F_RQ |
                                      KYU_F_ENTRY_IDS | KYU_F_ENTRY_VTS,
                                  0, 0, KYU_OPF_WRITE,
                                  "set the remaining lease of received messages (eid: a batch, "
                                  "an entry id per handle)"},
    [KYU_OP_CLUSTER_STATUS] =
        {KYU_OP_CLUSTER_STATUS, "cluster-status", 0, 0, 0, 0, KYU_OPF_READ,
         "this node's view of the cluster (answered by every node, leader or not)"},
    [KYU_OP_CLUSTER_TRANSFER] =
        {KYU_OP_CLUSTER_TRANSFER, "cluster-transfer", 0, KYU_F_TO, 0, 0, KYU_OPF_ADMIN,
         "hand leadership to node `to` (default: the most up-to-date follower)"},
    [KYU_OP_CLUSTER_ADD] =
        {KYU_OP_CLUSTER_ADD, "cluster-add", KYU_F_TO | KYU_F_RAFT | KYU_F_EP,
         KYU_F_TO | KYU_F_RAFT | KYU_F_EP, 0, 0, KYU_OPF_ADMIN,
         "add node `to` (raft HOST:PORT, client endpoint ep): learner, then voter once caught up"},
    [KYU_OP_CLUSTER_REMOVE] =
        {KYU_OP_CLUSTER_REMOVE, "cluster-remove", KYU_F_TO, KYU_F_TO, 0, 0, KYU_OPF_ADMIN,
         "remove node `to` from the cluster (the leader hands leadership over first)"},
};

const kyu_op_info_t *kyu_op_info(uint64_t op)
{
    /* Indexed by code: no search on the request path. */
    if (op >= KYU_OP_MAX_ || !op_table[op].name)
        return NULL;
    return &op_table[op];
}

/* 1..max characters of [A-Za-z0-9_-]: the names of queues and topics. */
static bool name_valid(const char *name, size_t len, size_t max)
{
    if (len < 1 || len > max)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_';
        if (!ok)
            return false;
    }
    return true;
}

bool kyu_queue_name_fifo(const char *name, size_t len)
{
    size_t sl = strlen(KYU_FIFO_SUFFIX);
    return len > sl && memcmp(name + len - sl, KYU_FIFO_SUFFIX, sl) == 0;
}

bool kyu_queue_name_valid(const char *name, size_t len)
{
    if (len > KYU_NAME_MAX)
        return false;
    if (kyu_queue_name_fifo(name, len))
        len -= strlen(KYU_FIFO_SUFFIX);
    return name_valid(name, len, KYU_NAME_MAX);
}

bool kyu_fifo_id_valid(const char *id, size_t len, size_t max)
{
    if (len < 1 || len > max)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)id[i] < 0x21 || (unsigned char)id[i] > 0x7e)
            return false;
    return true;
}

bool kyu_topic_name_valid(const char *name, size_t len)
{
    if (len > KYU_TOPIC_NAME_MAX)
        return false;
    if (kyu_queue_name_fifo(name, len)) /* a FIFO topic's (SNS's: 256 with .fifo) */
        len -= strlen(KYU_FIFO_SUFFIX);
    return name_valid(name, len, KYU_TOPIC_NAME_MAX);
}

bool kyu_entry_id_valid(const char *id, size_t len)
{
    return name_valid(id, len, KYU_ENTRY_ID_MAX); /* SQS's: 1..80 of [A-Za-z0-9_-] */
}

/* ---- decoding helpers ---- */

static kyu_code_t get_uint(const msgpack_object *o, const char *what, uint64_t max, uint64_t *out,
                           kyu_err_t *err)
{
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "%s must not be negative", what);
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "%s must be an integer", what);
    if (o->via.u64 > max)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "%s %llu is over the maximum %llu", what,
                           (unsigned long long)o->via.u64, (unsigned long long)max);
    *out = o->via.u64;
    return KYU_OK;
}

/* Copies a string of at most max bytes (no NUL inside) into out[max + 1]. */
static kyu_code_t get_str(const msgpack_object *o, const char *what, char *out, size_t max,
                          kyu_err_t *err)
{
    if (o->type != MSGPACK_OBJECT_STR)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "%s must be a string", what);
    size_t n = o->via.str.size;
    if (n > max)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "%s is longer than %zu bytes", what, max);
    /* msgpack-c gives NULL for an empty string: no memchr/memcpy on it. */
    if (n && memchr(o->via.str.ptr, '\0', n))
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "%s contains a NUL byte", what);
    if (n)
        memcpy(out, o->via.str.ptr, n);
    out[n] = '\0';
    return KYU_OK;
}

bool kyu_utf8_valid(const void *buf, size_t n)
{
    const unsigned char *s = buf;
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t len;
        unsigned lo = 0x80, hi = 0xBF; /* the second byte's range (RFC 3629's table) */
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            if (c == 0xE0)
                lo = 0xA0; /* no overlong forms */
            else if (c == 0xED)
                hi = 0x9F; /* no surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            if (c == 0xF0)
                lo = 0x90;
            else if (c == 0xF4)
                hi = 0x8F; /* nothing past U+10FFFF */
        } else {
            return false;
        }
        if (n - i < len || s[i + 1] < lo || s[i + 1] > hi)
            return false;
        for (size_t k = 2; k < len; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xBF)
                return false;
        i += len;
    }
    return true;
}

/* A tag key or value: a string of at most max bytes, valid UTF-8 (SQS). */
static kyu_code_t get_tag_str(const msgpack_object *o, const char *what, char *out, size_t max,
                              kyu_err_t *err)
{
    kyu_code_t rc = get_str(o, what, out, max, err);
    if (rc == KYU_OK && !kyu_utf8_valid(out, strlen(out)))
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "%s is not valid UTF-8", what);
    return rc;
}

/* ---- requests ---- */

/* True for a non-empty string of printable ASCII (a worker's name: shown in tables). */
static bool printable(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (*s < 0x20 || *s > 0x7e)
            return false;
    return true;
}

static const char *const redrive_allow_names[] = {"allowAll", "denyAll", "byQueue"};

/* A queue name inside a field (RedrivePolicy, RedriveAllowPolicy). */
static kyu_code_t get_queue_name(const msgpack_object *o, const char *what, char *out,
                                 kyu_err_t *err)
{
    if (o->type == MSGPACK_OBJECT_STR && !kyu_queue_name_valid(o->via.str.ptr, o->via.str.size))
        return kyu_err_set(err, KYU_ERR_INVALID_NAME,
                           "%s: queue names are 1 to 80 characters of letters, digits, - and _",
                           what);
    return get_str(o, what, out, KYU_NAME_MAX, err);
}

/* "rdp": [] (no RedrivePolicy) or [deadLetterTargetQueue, maxReceiveCount] (its range: the
 * broker's check). */
static kyu_code_t get_redrive(const msgpack_object *v, kyu_request_t *req, kyu_err_t *err)
{
    uint64_t u = 0;
    if (v->type != MSGPACK_OBJECT_ARRAY || (v->via.array.size != 0 && v->via.array.size != 2))
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "rdp (RedrivePolicy) must be [] or [deadLetterTargetQueue, "
                           "maxReceiveCount]");
    req->qx.dlq[0] = '\0';
    req->qx.max_receive_count = 0;
    if (v->via.array.size == 0)
        return KYU_OK;
    kyu_code_t rc = get_queue_name(&v->via.array.ptr[0], "deadLetterTargetQueue", req->qx.dlq, err);
    if (rc == KYU_OK)
        rc = get_uint(&v->via.array.ptr[1], "maxReceiveCount", UINT32_MAX, &u, err);
    req->qx.max_receive_count = (uint32_t)u;
    return rc;
}

/* "rap": [redrivePermission] or ["byQueue", [source queue, ...]] (1 to 10 queues). */
static kyu_code_t get_redrive_allow(const msgpack_object *v, kyu_request_t *req, kyu_err_t *err)
{
    const char *shape = "rap (RedriveAllowPolicy) must be [\"allowAll\"], [\"denyAll\"] or "
                        "[\"byQueue\", [1 to 10 source queues]]";
    if (v->type != MSGPACK_OBJECT_ARRAY || v->via.array.size < 1 || v->via.array.size > 2)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "%s", shape);
    const msgpack_object *mode = &v->via.array.ptr[0];
    uint32_t m = 0;
    while (m < 3 && !kyu_mp_key_is(mode, redrive_allow_names[m]))
        m++;
    if (m == 3 || (m == KYU_REDRIVE_BY_QUEUE) != (v->via.array.size == 2))
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "%s", shape);
    req->qx.allow = m;
    req->qx.n_sources = 0;
    if (m != KYU_REDRIVE_BY_QUEUE)
        return KYU_OK;
    const msgpack_object *list = &v->via.array.ptr[1];
    if (list->type != MSGPACK_OBJECT_ARRAY || list->via.array.size < 1 ||
        list->via.array.size > KYU_REDRIVE_SOURCES_MAX)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "RedriveAllowPolicy byQueue takes 1 to %d source queues",
                           KYU_REDRIVE_SOURCES_MAX);
    kyu_code_t rc = KYU_OK;
    for (uint32_t i = 0; i < list->via.array.size && rc == KYU_OK; i++)
        rc = get_queue_name(&list->via.array.ptr[i], "RedriveAllowPolicy source queue",
                            req->qx.sources[i], err);
    req->qx.n_sources = list->via.array.size;
    return rc;
}

/* "tk": [key, ...], 1..50 distinct tag keys (UNTAG_QUEUE), into t's keys (values ""). */
static kyu_code_t get_tag_keys(const msgpack_object *v, kyu_tags_t *t, kyu_err_t *err)
{
    if (v->type != MSGPACK_OBJECT_ARRAY || v->via.array.size < 1 ||
        v->via.array.size > KYU_TAGS_MAX)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "tk must be an array of 1 to %d tag keys",
                           KYU_TAGS_MAX);
    t->n = 0;
    for (uint32_t i = 0; i < v->via.array.size; i++) {
        kyu_code_t rc =
            get_tag_str(&v->via.array.ptr[i], "tag key", t->keys[i], KYU_TAG_KEY_MAX, err);
        if (rc != KYU_OK)
            return rc;
        if (!t->keys[i][0])
            return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "a tag key must not be empty");
        for (uint32_t j = 0; j < i; j++)
            if (strcmp(t->keys[j], t->keys[i]) == 0)
                return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "tag key '%s' given twice",
                                   t->keys[i]);
        t->values[i][0] = '\0';
        t->n = i + 1;
    }
    return KYU_OK;
}

/* "tags": {key: value}, at most 50; keys 1..128 bytes, values 0..256, distinct. */
static kyu_code_t get_tags(const msgpack_object *v, kyu_tags_t *t, kyu_err_t *err)
{
    if (v->type != MSGPACK_OBJECT_MAP)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "tags must be a map of strings");
    if (v->via.map.size > KYU_TAGS_MAX)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "a queue has at most %d tags, not %u",
                           KYU_TAGS_MAX, v->via.map.size);
    t->n = 0;
    for (uint32_t i = 0; i < v->via.map.size; i++) {
        const msgpack_object_kv *kv = &v->via.map.ptr[i];
        kyu_code_t rc = get_tag_str(&kv->key, "tag key", t->keys[i], KYU_TAG_KEY_MAX, err);
        if (rc == KYU_OK)
            rc = get_tag_str(&kv->val, "tag value", t->values[i], KYU_TAG_VALUE_MAX, err);
        if (rc != KYU_OK)
            return rc;
        if (!t->keys[i][0])
            return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "a tag key must not be empty");
        for (uint32_t j = 0; j < i; j++)
            if (strcmp(t->keys[j], t->keys[i]) == 0)
                return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "tag key '%s' given twice",
                                   t->keys[i]);
        t->n = i + 1;
    }
    return KYU_OK;
}

static bool str_is(const msgpack_object *v, const char *s)
{
    size_t n = strlen(s);
    return v->type == MSGPACK_OBJECT_STR && v->via.str.size == n && !memcmp(v->via.str.ptr, s, n);
}

/* One FIFO id of "mg" (nil: none, ""), checked against SQS's characters. */
static kyu_code_t get_fifo_id(const msgpack_object *o, const char *what, char *out, size_t max,
                              kyu_err_t *err)
{
    out[0] = '\0';
    if (o->type == MSGPACK_OBJECT_NIL)
        return KYU_OK;
    if (o->type != MSGPACK_OBJECT_STR || !kyu_fifo_id_valid(o->via.str.ptr, o->via.str.size, max))
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "%s is 1 to %zu characters of letters, digits and punctuation", what,
                           max);
    memcpy(out, o->via.str.ptr, o->via.str.size);
    out[o->via.str.size] = '\0';
    return KYU_OK;
}

/* "mg": [[MessageGroupId or nil, MessageDeduplicationId or nil], ...], one per message. */
static kyu_code_t get_groups(const msgpack_object *v, kyu_request_t *req, kyu_err_t *err)
{
    if (v->type != MSGPACK_OBJECT_ARRAY || v->via.array.size > KYU_BATCH_MAX)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "mg must be an array of at most %d [group id, deduplication id]",
                           KYU_BATCH_MAX);
    req->n_group_msgs = v->via.array.size;
    for (size_t i = 0; i < req->n_group_msgs; i++) {
        const msgpack_object *e = &v->via.array.ptr[i];
        if (e->type != MSGPACK_OBJECT_ARRAY || e->via.array.size != 2)
            return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                               "mg[%zu] must be [MessageGroupId or nil, MessageDeduplicationId "
                               "or nil]",
                               i);
        kyu_code_t rc = get_fifo_id(&e->via.array.ptr[0], "MessageGroupId", req->group_ids[i],
                                    KYU_GROUP_ID_MAX, err);
        if (rc == KYU_OK)
            rc = get_fifo_id(&e->via.array.ptr[1], "MessageDeduplicationId", req->dedup_ids[i],
                             KYU_DEDUP_ID_MAX, err);
        if (rc != KYU_OK)
            return rc;
    }
    return KYU_OK;
}

static kyu_code_t decode_request_field(const msgpack_object *k, const msgpack_object *v,
                                       kyu_request_t *req, kyu_err_t *err)
{
    uint64_t u = 0;
    kyu_code_t rc = KYU_OK;
    uint64_t bit = 0;
    if (kyu_mp_key_is(k, "op") || kyu_mp_key_is(k, "id"))
        return KYU_OK; /* read before the other fields */
    if (kyu_mp_key_is(k, "q")) {
        bit = KYU_F_QUEUE;
        if (v->type == MSGPACK_OBJECT_STR && !kyu_queue_name_valid(v->via.str.ptr, v->via.str.size))
            return kyu_err_set(err, KYU_ERR_INVALID_NAME,
                               "queue names are 1 to 80 characters of letters, digits, - and _ "
                               "(a FIFO queue's ending in .fifo)");
        rc = get_str(v, "queue name", req->queue, KYU_NAME_MAX, err);
    } else if (kyu_mp_key_is(k, "vt")) {
        bit = KYU_F_VT;
        rc = get_uint(v, "visibility timeout", KYU_VISIBILITY_MAX, &u, err);
        req->vt = (uint32_t)u;
    } else if (kyu_mp_key_is(k, "max")) {
        bit = KYU_F_MAX;
        rc = get_uint(v, "max messages", KYU_BATCH_MAX, &u, err);
        if (rc == KYU_OK && u == 0)
            rc = kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "max messages must be 1 to %d",
                             KYU_BATCH_MAX);
        req->max = (uint32_t)u;
    } else if (kyu_mp_key_is(k, "v")) {
        bit = KYU_F_VERSION;
        rc = get_uint(v, "version", UINT32_MAX, &u, err);
        req->version = (uint32_t)u;
    } else if (kyu_mp_key_is(k, "rh")) {
        bit = KYU_F_HANDLES;
        if (v->type != MSGPACK_OBJECT_ARRAY)
            return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "rh must be an array");
        if (v->via.array.size < 1 || v->via.array.size > KYU_BATCH_MAX)
            return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                               "1 to %d receipt handles per request, not %u", KYU_BATCH_MAX,
                               v->via.array.size);
        req->n_handles = v->via.array.size;
        for (size_t i = 0; i < req->n_handles && rc == KYU_OK; i++)
            rc = get_str(&v->via.array.ptr[i], "receipt handle", req->handles[i], KYU_HANDLE_MAX,
                         err);
    } else if (kyu_mp_key_is(k, "to")) {
        bit = KYU_F_TO;
        rc = get_uint(v, "node id", INT64_MAX, &req->to, err);
        if (rc == KYU_OK && req->to == 0)
            rc = kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "node id must not be 0");
    } else if (kyu_mp_key_is(k, "raft") || kyu_mp_key_is(k, "ep")) {
        bool raft = kyu_mp_key_is(k, "raft");
        bit = raft ? KYU_F_RAFT : KYU_F_EP;
        char *out = raft ? req->raft : req->ep;
        rc = get_str(v, raft ? "raft address" : "client endpoint", out, KYU_ENDPOINT_MAX - 1, err);
        if (rc == KYU_OK && !out[0])
            rc = kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "%s must not be empty",
                             raft ? "raft address" : "client endpoint");
    } else if (kyu_mp_key_is(k, "mms")) {
        /* Its range is the broker's check (the op's validate), against its own limit too. */
        bit = KYU_F_MMS;
        rc = get_uint(v, "MaximumMessageSize", UINT32_MAX, &u, err);
        req->max_size = (uint32_t)u;
    } else if (kyu_mp_key_is(k, "ds")) {
        bit = KYU_F_DELAY; /* range: the broker's check, as mms */
        rc = get_uint(v, "DelaySeconds", UINT32_MAX, &u, err);
        req->delay = (uint32_t)u;
    } else if (kyu_mp_key_is(k, "da")) {
        bit = KYU_F_DELIVER_AT; /* range: the broker's check, against its time */
        rc = get_uint(v, "deliver-at", UINT64_MAX, &req->deliver_at_ms, err);
    } else if (kyu_mp_key_is(k, "wt")) {
        bit = KYU_F_WAIT;
        rc = get_uint(v, "wait time (wt)", KYU_WAIT_MAX, &u, err);
        req->wait = (uint32_t)u;
    } else if (kyu_mp_key_is(k, "mrp")) {
        bit = KYU_F_RETENTION; /* range: the broker's check, as mms */
        rc = get_uint(v, "MessageRetentionPeriod", UINT32_MAX, &u, err);
        req->qx.retention = (uint32_t)u;
    } else if (kyu_mp_key_is(k, "rwt")) {
        bit = KYU_F_RECEIVE_WAIT; /* range: the broker's check */
        rc = get_uint(v, "ReceiveMessageWaitTimeSeconds", UINT32_MAX, &u, err);
        req->qx.receive_wait = (uint32_t)u;
    } else if (kyu_mp_key_is(k, "rdp")) {
        bit = KYU_F_REDRIVE;
        rc = get_redrive(v, req, err);
    } else if (kyu_mp_key_is(k, "rap")) {
        bit = KYU_F_REDRIVE_ALLOW;
        rc = get_redrive_allow(v, req, err);
    } else if (kyu_mp_key_is(k, "tags")) {
        bit = KYU_F_TAGS;
        rc = get_tags(v, &req->qx.tags, err);
    } else if (kyu_mp_key_is(k, "tk")) {
        bit = KYU_F_TAG_KEYS;
        rc = get_tag_keys(v, &req->qx.tags, err);
    } else if (kyu_mp_key_is(k, "force")) {
        bit = KYU_F_FORCE;
        if (v->type != MSGPACK_OBJECT_BOOLEAN || !v->via.boolean)
            return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "force must be true");
    } else if (kyu_mp_key_is(k, "ma")) {
        /* Shape here; SQS's rules per message in the broker (kyu_msg_attrs_check), so that
         * the error names the message. */
        bit = KYU_F_MSG_ATTRS;
        if (v->type != MSGPACK_OBJECT_ARRAY || v->via.array.size > KYU_BATCH_MAX)
            return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                               "ma must be an array of at most %d attribute lists", KYU_BATCH_MAX);
        req->n_attr_msgs = v->via.array.size;
        for (size_t i = 0; i < req->n_attr_msgs; i++)
            if (!kyu_msg_attrs_unpack(&v->via.array.ptr[i], &req->attrs[i]))
                return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                                   "ma[%zu] must be [name, type, value, ...] (strings; a Binary "
                                   "value as bin) with at most %d attributes",
                                   i, KYU_MSG_ATTRS_MAX);
    } else if (kyu_mp_key_is(k, "dst")) {
        bit = KYU_F_DEST;
        if (v->type == MSGPACK_OBJECT_STR && !kyu_queue_name_valid(v->via.str.ptr, v->via.str.size))
            return kyu_err_set(err, KYU_ERR_INVALID_NAME,
                               "destination: queue names are 1 to 80 characters of letters, "
                               "digits, - and _");
        rc = get_str(v, "destination queue (dst)", req->dest, KYU_NAME_MAX, err);
    } else if (kyu_mp_key_is(k, "mps")) {
        bit = KYU_F_RATE;
        rc = get_uint(v, "MaxNumberOfMessagesPerSecond (mps)", KYU_MOVE_RATE_MAX, &u, err);
        if (rc == KYU_OK && u == 0)
            rc = kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                             "MaxNumberOfMessagesPerSecond (mps) must be 1 to %d",
                             KYU_MOVE_RATE_MAX);
        req->rate = (uint32_t)u;
    } else if (kyu_mp_key_is(k, "from")) {
        bit = KYU_F_FROM;
        rc = get_uint(v, "from (position)", UINT64_MAX, &req->from, err);
    } else if (kyu_mp_key_is(k, "eid")) {
        bit = KYU_F_ENTRY_IDS;
        if (v->type == MSGPACK_OBJECT_ARRAY && v->via.array.size > KYU_BATCH_MAX)
            return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                               "TooManyEntriesInBatchRequest: a batch has at most %d entries, "
                               "not %u",
                               KYU_BATCH_MAX, v->via.array.size);
        if (v->type != MSGPACK_OBJECT_ARRAY || v->via.array.size > KYU_BATCH_MAX)
            return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                               "eid must be an array of at most %d entry ids", KYU_BATCH_MAX);
        req->n_entries = v->via.array.size;
        for (size_t i = 0; i < req->n_entries; i++) {
            const msgpack_object *e = &v->via.array.ptr[i];
            if (e->type != MSGPACK_OBJECT_STR ||
                !kyu_entry_id_valid(e->via.str.ptr, e->via.str.size))
                return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                                   "InvalidBatchEntryId: entry %zu: a batch entry id is 1 to %d "
                                   "characters of letters, digits, - and _",
                                   i + 1, KYU_ENTRY_ID_MAX);
            memcpy(req->entry_ids[i], e->via.str.ptr, e->via.str.size);
            req->entry_ids[i][e->via.str.size] = '\0';
            for (size_t j = 0; j < i; j++)
                if (strcmp(req->entry_ids[i], req->entry_ids[j]) == 0)
                    return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                                       "BatchEntryIdsNotDistinct: entry id '%s' is given twice",
                                       req->entry_ids[i]);
        }
    } else if (kyu_mp_key_is(k, "eds")) {
        bit = KYU_F_ENTRY_DELAYS; /* range: the broker's check, per entry */
        if (v->type != MSGPACK_OBJECT_ARRAY || v->via.array.size > KYU_BATCH_MAX)
            return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                               "eds must be an array of at most %d delays", KYU_BATCH_MAX);
        for (size_t i = 0; i < v->via.array.size && rc == KYU_OK; i++) {
            req->entry_delay[i] = -1;
            if (v->via.array.ptr[i].type == MSGPACK_OBJECT_NIL)
                continue;
            rc = get_uint(&v->via.array.ptr[i], "an entry's DelaySeconds", UINT32_MAX, &u, err);
            req->entry_delay[i] = (int64_t)u;
        }
        req->n_entry_delays = v->via.array.size;
    } else if (kyu_mp_key_is(k, "evt")) {
        bit = KYU_F_ENTRY_VTS; /* range: the broker's check, per entry */
        if (v->type != MSGPACK_OBJECT_ARRAY || v->via.array.size > KYU_BATCH_MAX)
            return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                               "evt must be an array of at most %d visibility timeouts",
                               KYU_BATCH_MAX);
        for (size_t i = 0; i < v->via.array.size && rc == KYU_OK; i++) {
            rc = get_uint(&v->via.array.ptr[i], "an entry's visibility timeout (evt)", UINT32_MAX,
                          &u, err);
            req->entry_vt[i] = (uint32_t)u;
        }
        req->n_entry_vts = v->via.array.size;
    } else if (kyu_mp_key_is(k, "ct")) {
        bit = KYU_F_CREDIT_TOTAL;
        rc = get_uint(v, "total credit (ct)", KYU_WORKER_CREDIT_MAX, &u, err);
        if (rc == KYU_OK && u == 0)
            rc = kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "total credit (ct) must be 1 to %d",
                             KYU_WORKER_CREDIT_MAX);
        req->credit_total = (uint32_t)u;
    } else if (kyu_mp_key_is(k, "cr")) {
        bit = KYU_F_CREDIT; /* WORKER_OPEN's credit 1.., a heartbeat's given back 0.. */
        rc = get_uint(v, "credit (cr)", KYU_WORKER_CREDIT_MAX, &u, err);
        if (rc == KYU_OK && u == 0 && req->op == KYU_OP_WORKER_OPEN)
            rc = kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "credit (cr) must be 1 to %d",
                             KYU_WORKER_CREDIT_MAX);
        req->credit = (uint32_t)u;
    } else if (kyu_mp_key_is(k, "hb")) {
        bit = KYU_F_HB;
        rc = get_uint(v, "heartbeat interval (hb)", KYU_WORKER_HB_MAX_MS, &u, err);
        if (rc == KYU_OK && u < KYU_WORKER_HB_MIN_MS)
            rc = kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                             "heartbeat interval (hb) must be %d to %d ms", KYU_WORKER_HB_MIN_MS,
                             KYU_WORKER_HB_MAX_MS);
        req->hb_ms = (uint32_t)u;
    } else if (kyu_mp_key_is(k, "lv")) {
        bit = KYU_F_LIVENESS;
        rc = get_uint(v, "liveness (lv)", KYU_WORKER_LIVENESS_MAX, &u, err);
        if (rc == KYU_OK && u == 0)
            rc = kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "liveness (lv) must be 1 to %d",
                             KYU_WORKER_LIVENESS_MAX);
        req->liveness = (uint32_t)u;
    } else if (kyu_mp_key_is(k, "wn")) {
        bit = KYU_F_WORKER_NAME;
        rc = get_str(v, "worker name (wn)", req->worker_name, KYU_WORKER_NAME_MAX, err);
        if (rc == KYU_OK && !printable(req->worker_name))
            rc = kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                             "worker name (wn) must be 1 to %d printable ASCII characters",
                             KYU_WORKER_NAME_MAX);
    } else if (kyu_mp_key_is(k, "sid")) {
        bit = KYU_F_SID;
        rc = get_uint(v, "session id (sid)", UINT64_MAX, &req->sid, err);
        if (rc == KYU_OK && req->sid == 0)
            rc = kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "session id (sid) must not be 0");
    } else if (kyu_mp_key_is(k, "tp")) {
        bit = KYU_F_TOPIC;
        if (v->type == MSGPACK_OBJECT_STR && !kyu_topic_name_valid(v->via.str.ptr, v->via.str.size))
            return kyu_err_set(err, KYU_ERR_INVALID_NAME,
                               "topic names are 1 to %d characters of letters, digits, - and _",
                               KYU_TOPIC_NAME_MAX);
        rc = get_str(v, "topic (tp)", req->topic, KYU_TOPIC_NAME_MAX, err);
    } else if (kyu_mp_key_is(k, "sub")) {
        bit = KYU_F_SUB_ID;
        rc = get_str(v, "subscription id (sub)", req->sub_id, KYU_SUB_ID_LEN, err);
        if (rc == KYU_OK && strlen(req->sub_id) != KYU_SUB_ID_LEN)
            rc = kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                             "a subscription id (sub) is %d characters (a UUID)", KYU_SUB_ID_LEN);
    } else if (kyu_mp_key_is(k, "raw")) {
        bit = KYU_F_RAW;
        if (v->type != MSGPACK_OBJECT_BOOLEAN || !v->via.boolean)
            return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "raw must be true");
    } else if (kyu_mp_key_is(k, "flt")) {
        bit = KYU_F_FILTER;
        if (v->type != MSGPACK_OBJECT_BOOLEAN || !v->via.boolean)
            return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                               "flt must be true (the body frame is the filter policy)");
    } else if (kyu_mp_key_is(k, "fsc")) {
        bit = KYU_F_FILTER_SCOPE;
        if (v->type == MSGPACK_OBJECT_STR && v->via.str.size == 10 &&
            !memcmp(v->via.str.ptr, "attributes", 10))
            req->filter_scope = 0;
        else if (v->type == MSGPACK_OBJECT_STR && v->via.str.size == 4 &&
                 !memcmp(v->via.str.ptr, "body", 4))
            req->filter_scope = 1;
        else
            return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                               "fsc (filter scope) is \"attributes\" or \"body\"");
    } else if (kyu_mp_key_is(k, "fifo") || kyu_mp_key_is(k, "cbd")) {
        bool fifo = kyu_mp_key_is(k, "fifo");
        bit = fifo ? KYU_F_FIFO : KYU_F_CBD;
        if (v->type != MSGPACK_OBJECT_BOOLEAN)
            return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "%s must be true or false",
                               fifo ? "fifo (FifoQueue)" : "cbd (ContentBasedDeduplication)");
        *(fifo ? &req->qx.fifo : &req->qx.cbd) = v->via.boolean;
    } else if (kyu_mp_key_is(k, "dsc")) {
        bit = KYU_F_DEDUP_SCOPE;
        if (str_is(v, "queue"))
            req->qx.dedup_scope = KYU_DEDUP_SCOPE_QUEUE;
        else if (str_is(v, "messageGroup"))
            req->qx.dedup_scope = KYU_DEDUP_SCOPE_GROUP;
        else
            return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                               "dsc (DeduplicationScope) is \"queue\" or \"messageGroup\"");
    } else if (kyu_mp_key_is(k, "ftl")) {
        bit = KYU_F_THROUGHPUT;
        if (str_is(v, "perQueue"))
            req->qx.throughput = KYU_THROUGHPUT_PER_QUEUE;
        else if (str_is(v, "perMessageGroupId"))
            req->qx.throughput = KYU_THROUGHPUT_PER_GROUP;
        else
            return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                               "ftl (FifoThroughputLimit) is \"perQueue\" or "
                               "\"perMessageGroupId\"");
    } else if (kyu_mp_key_is(k, "mg")) {
        bit = KYU_F_GROUPS;
        rc = get_groups(v, req, err);
    } else if (kyu_mp_key_is(k, "raid")) {
        bit = KYU_F_ATTEMPT;
        if (v->type != MSGPACK_OBJECT_STR ||
            !kyu_fifo_id_valid(v->via.str.ptr, v->via.str.size, KYU_ATTEMPT_ID_MAX))
            return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                               "raid (ReceiveRequestAttemptId) is 1 to %d characters of letters, "
                               "digits and punctuation",
                               KYU_ATTEMPT_ID_MAX);
        rc = get_str(v, "ReceiveRequestAttemptId (raid)", req->attempt_id, KYU_ATTEMPT_ID_MAX, err);
    } else if (kyu_mp_key_is(k, "nflt")) {
        bit = KYU_F_NO_FILTER;
        if (v->type != MSGPACK_OBJECT_BOOLEAN || !v->via.boolean)
            return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                               "nflt must be true (the subscription's filter policy is removed)");
    } else if (kyu_mp_key_is(k, "rd")) {
        bit = KYU_F_RAW_DELIVERY;
        if (v->type != MSGPACK_OBJECT_BOOLEAN)
            return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                               "rd (RawMessageDelivery) must be true or false");
        req->raw_delivery = v->via.boolean;
    } else if (kyu_mp_key_is(k, "rq")) {
        bit = KYU_F_RQ;
        if (v->type != MSGPACK_OBJECT_ARRAY || v->via.array.size != 2)
            return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "rq must be [client id, key]");
        rc = get_uint(&v->via.array.ptr[0], "rq client id", UINT64_MAX, &req->rq_client, err);
        if (rc == KYU_OK)
            rc = get_uint(&v->via.array.ptr[1], "rq key", UINT64_MAX, &req->rq_key, err);
        if (rc == KYU_OK && (req->rq_client == 0 || req->rq_key == 0))
            rc = kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "rq client id and key must not be 0");
    } else {
        return kyu_err_set(err, KYU_ERR_MALFORMED, "unknown header field");
    }
    if (rc != KYU_OK)
        return rc;
    if (req->fields & bit)
        return kyu_err_set(err, KYU_ERR_MALFORMED, "duplicate header field");
    req->fields |= bit;
    return KYU_OK;
}

static const char *field_name(uint64_t bit)
{
    switch (bit) {
    case KYU_F_QUEUE:
        return "q (queue name)";
    case KYU_F_VT:
        return "vt (visibility timeout)";
    case KYU_F_MAX:
        return "max";
    case KYU_F_HANDLES:
        return "rh (receipt handles)";
    case KYU_F_VERSION:
        return "v (version)";
    case KYU_F_RQ:
        return "rq (request key)";
    case KYU_F_TO:
        return "to (node id)";
    case KYU_F_RAFT:
        return "raft (raft address)";
    case KYU_F_EP:
        return "ep (client endpoint)";
    case KYU_F_MMS:
        return "mms (MaximumMessageSize)";
    case KYU_F_DELAY:
        return "ds (DelaySeconds)";
    case KYU_F_DELIVER_AT:
        return "da (deliver-at)";
    case KYU_F_WAIT:
        return "wt (wait time)";
    case KYU_F_RETENTION:
        return "mrp (MessageRetentionPeriod)";
    case KYU_F_RECEIVE_WAIT:
        return "rwt (ReceiveMessageWaitTimeSeconds)";
    case KYU_F_REDRIVE:
        return "rdp (RedrivePolicy)";
    case KYU_F_REDRIVE_ALLOW:
        return "rap (RedriveAllowPolicy)";
    case KYU_F_TAGS:
        return "tags";
    case KYU_F_TAG_KEYS:
        return "tk (tag keys)";
    case KYU_F_FORCE:
        return "force";
    case KYU_F_MSG_ATTRS:
        return "ma (message attributes)";
    case KYU_F_FROM:
        return "from (position)";
    case KYU_F_DEST:
        return "dst (destination queue)";
    case KYU_F_RATE:
        return "mps (MaxNumberOfMessagesPerSecond)";
    case KYU_F_ENTRY_IDS:
        return "eid (batch entry ids)";
    case KYU_F_ENTRY_DELAYS:
        return "eds (batch entry delays)";
    case KYU_F_CREDIT:
        return "cr (credit)";
    case KYU_F_HB:
        return "hb (heartbeat interval)";
    case KYU_F_LIVENESS:
        return "lv (liveness)";
    case KYU_F_WORKER_NAME:
        return "wn (worker name)";
    case KYU_F_SID:
        return "sid (session id)";
    case KYU_F_CREDIT_TOTAL:
        return "ct (total credit)";
    case KYU_F_ENTRY_VTS:
        return "evt (batch entry visibility timeouts)";
    case KYU_F_TOPIC:
        return "tp (topic)";
    case KYU_F_SUB_ID:
        return "sub (subscription id)";
    case KYU_F_RAW:
        return "raw";
    case KYU_F_FILTER:
        return "flt (filter policy)";
    case KYU_F_FILTER_SCOPE:
        return "fsc (filter scope)";
    case KYU_F_FIFO:
        return "fifo (FifoQueue)";
    case KYU_F_CBD:
        return "cbd (ContentBasedDeduplication)";
    case KYU_F_DEDUP_SCOPE:
        return "dsc (DeduplicationScope)";
    case KYU_F_THROUGHPUT:
        return "ftl (FifoThroughputLimit)";
    case KYU_F_GROUPS:
        return "mg (message group and deduplication ids)";
    case KYU_F_ATTEMPT:
        return "raid (ReceiveRequestAttemptId)";
    case KYU_F_NO_FILTER:
        return "nflt (no filter policy)";
    case KYU_F_RAW_DELIVERY:
        return "rd (RawMessageDelivery)";
    default:
        return "?";
    }
}

kyu_code_t kyu_request_decode(const void *buf, size_t len, size_t n_bodies, kyu_request_t *req,
                              kyu_err_t *err)
{
    /* Not the tags' 20 KB (qx.tags.n says how many are set): most requests are sends. */
    memset(req, 0, offsetof(kyu_request_t, qx.tags.keys));
    if (len > KYU_HEADER_MAX)
        return kyu_err_set(err, KYU_ERR_MALFORMED, "header frame over %d bytes", KYU_HEADER_MAX);
    msgpack_unpacked u;
    kyu_code_t rc = kyu_msgpack_unpack_bounded(buf, len, MAX_DEPTH, &u, err);
    if (rc != KYU_OK)
        return rc;
    const msgpack_object *root = &u.data;
    const msgpack_object *op = NULL;
    if (root->type != MSGPACK_OBJECT_MAP) {
        rc = kyu_err_set(err, KYU_ERR_MALFORMED, "header must be a msgpack map");
        goto done;
    }
    /* The id first, so that every later error can be matched to its request. */
    for (uint32_t i = 0; i < root->via.map.size; i++) {
        const msgpack_object_kv *kv = &root->via.map.ptr[i];
        if (kyu_mp_key_is(&kv->key, "id") && kv->val.type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
            req->id = kv->val.via.u64;
            req->has_id = true;
        }
        if (kyu_mp_key_is(&kv->key, "op"))
            op = &kv->val;
    }
    if (!req->has_id) {
        rc = kyu_err_set(err, KYU_ERR_MALFORMED, "header needs an unsigned integer \"id\"");
        goto done;
    }
    if (!op) {
        rc = kyu_err_set(err, KYU_ERR_MALFORMED, "header needs an \"op\"");
        goto done;
    }
    if (op->type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
        rc = kyu_err_set(err, KYU_ERR_MALFORMED, "\"op\" must be an unsigned integer");
        goto done;
    }
    uint64_t opv = op->via.u64;
    const kyu_op_info_t *info = kyu_op_info(opv);
    if (!info) {
        rc = kyu_err_set(err, KYU_ERR_UNKNOWN_OP, "unknown op %llu", (unsigned long long)opv);
        goto done;
    }
    req->op = (uint32_t)opv;
    for (uint32_t i = 0; i < root->via.map.size && rc == KYU_OK; i++)
        rc = decode_request_field(&root->via.map.ptr[i].key, &root->via.map.ptr[i].val, req, err);
    if (rc != KYU_OK)
        goto done;
    for (uint64_t bit = 1; bit != 0 && bit <= KYU_F_LAST_; bit <<= 1) {
        if ((info->required & bit) && !(req->fields & bit)) {
            rc = kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "%s needs field %s", info->name,
                             field_name(bit));
            goto done;
        }
        if ((req->fields & bit) && !(info->allowed & bit)) {
            rc = kyu_err_set(err, KYU_ERR_MALFORMED, "%s does not take field %s", info->name,
                             field_name(bit));
            goto done;
        }
    }
    if ((req->fields & KYU_F_ENTRY_IDS) && n_bodies > KYU_BATCH_MAX &&
        info->max_bodies == KYU_BATCH_MAX)
        rc = kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                         "TooManyEntriesInBatchRequest: a batch has at most %d entries, not %zu",
                         KYU_BATCH_MAX, n_bodies);
    else if (n_bodies < info->min_bodies || n_bodies > info->max_bodies)
        rc = kyu_err_set(err, KYU_ERR_MALFORMED, "%s takes %u to %u body frames, not %zu",
                         info->name, info->min_bodies, info->max_bodies, n_bodies);
    else if (req->op == KYU_OP_PUBLISH && !(req->fields & KYU_F_ENTRY_IDS) && n_bodies != 1)
        rc = kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                         "publish takes one body frame; a batch (eid, one entry id a body) 1 to "
                         "%d",
                         KYU_BATCH_MAX);
    else if ((req->op == KYU_OP_SUBSCRIBE || req->op == KYU_OP_SET_SUBSCRIPTION_ATTRIBUTES) &&
             (req->fields & KYU_F_FILTER ? 1u : 0u) != n_bodies)
        rc = kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                         "%s takes the filter policy as its one body frame, with flt: "
                         "flt is %s, body frames %zu",
                         info->name, req->fields & KYU_F_FILTER ? "set" : "not set", n_bodies);
    else if (req->op == KYU_OP_SUBSCRIBE && (req->fields & KYU_F_FILTER_SCOPE) &&
             !(req->fields & KYU_F_FILTER))
        rc = kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                         "fsc (filter scope) is for a filter policy: give flt and the policy too");
    else if (req->op == KYU_OP_SET_SUBSCRIPTION_ATTRIBUTES &&
             !(req->fields &
               (KYU_F_FILTER | KYU_F_FILTER_SCOPE | KYU_F_NO_FILTER | KYU_F_RAW_DELIVERY)))
        rc = kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                         "%s needs at least one of flt (a filter policy), nflt (none), fsc (its "
                         "scope), rd (RawMessageDelivery)",
                         info->name);
    else if ((req->fields & KYU_F_NO_FILTER) && (req->fields & (KYU_F_FILTER | KYU_F_FILTER_SCOPE)))
        rc = kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                         "nflt removes the filter policy: give no flt or fsc with it");
    else if ((req->fields & KYU_F_MSG_ATTRS) && req->n_attr_msgs != n_bodies)
        rc = kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                         "ma has %zu attribute lists for %zu messages (one per body frame)",
                         req->n_attr_msgs, n_bodies);
    else if ((req->fields & KYU_F_ENTRY_IDS) && (req->fields & KYU_F_HANDLES) &&
             req->n_entries != req->n_handles)
        rc = kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                         "eid has %zu entry ids for %zu receipt handles (one per handle)",
                         req->n_entries, req->n_handles);
    else if ((req->fields & KYU_F_ENTRY_IDS) && !(req->fields & KYU_F_HANDLES) &&
             req->n_entries != n_bodies)
        rc = kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                         "eid has %zu entry ids for %zu messages (one per body frame)",
                         req->n_entries, n_bodies);
    else if (req->op == KYU_OP_CHANGE_VISIBILITY && !(req->fields & KYU_F_ENTRY_VTS) &&
             !(req->fields & KYU_F_VT))
        rc = kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                         "%s needs field vt (visibility timeout), or evt with eid", info->name);
    else if ((req->fields & KYU_F_ENTRY_VTS) && (req->fields & KYU_F_VT))
        rc = kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                         "give each entry's visibility timeout (evt) or one for the request (vt), "
                         "not both");
    else if ((req->fields & KYU_F_ENTRY_VTS) && !(req->fields & KYU_F_ENTRY_IDS))
        rc = kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                         "evt (each entry's visibility timeout) is for a batch: give eid too");
    else if ((req->fields & KYU_F_ENTRY_VTS) && req->n_entry_vts != req->n_handles)
        rc = kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                         "evt has %zu visibility timeouts for %zu receipt handles (one per handle)",
                         req->n_entry_vts, req->n_handles);
    else if ((req->fields & KYU_F_GROUPS) && req->n_group_msgs != n_bodies)
        rc = kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                         "mg has %zu [group id, deduplication id] for %zu messages (one per body "
                         "frame)",
                         req->n_group_msgs, n_bodies);
    else if ((req->fields & KYU_F_ENTRY_DELAYS) && !(req->fields & KYU_F_ENTRY_IDS))
        rc = kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                         "eds (each entry's delay) is for a batch: give eid too");
    else if ((req->fields & KYU_F_ENTRY_DELAYS) && req->n_entry_delays != n_bodies)
        rc = kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                         "eds has %zu delays for %zu messages (one per body frame)",
                         req->n_entry_delays, n_bodies);
done:
    msgpack_unpacked_destroy(&u);
    return rc;
}

void kyu_request_encode(const kyu_request_t *req, msgpack_sbuffer *out)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    int n = 2;
    for (uint64_t bit = 1; bit != 0 && bit <= KYU_F_LAST_; bit <<= 1)
        n += (req->fields & bit) != 0;
    msgpack_pack_map(&pk, n);
    kyu_mp_pack_str(&pk, "op");
    msgpack_pack_uint32(&pk, req->op);
    kyu_mp_pack_str(&pk, "id");
    msgpack_pack_uint64(&pk, req->id);
    if (req->fields & KYU_F_QUEUE) {
        kyu_mp_pack_str(&pk, "q");
        kyu_mp_pack_str(&pk, req->queue);
    }
    if (req->fields & KYU_F_VT) {
        kyu_mp_pack_str(&pk, "vt");
        msgpack_pack_uint32(&pk, req->vt);
    }
    if (req->fields & KYU_F_MAX) {
        kyu_mp_pack_str(&pk, "max");
        msgpack_pack_uint32(&pk, req->max);
    }
    if (req->fields & KYU_F_HANDLES) {
        kyu_mp_pack_str(&pk, "rh");
        msgpack_pack_array(&pk, req->n_handles);
        for (size_t i = 0; i < req->n_handles; i++)
            kyu_mp_pack_str(&pk, req->handles[i]);
    }
    if (req->fields & KYU_F_TO) {
        kyu_mp_pack_str(&pk, "to");
        msgpack_pack_uint64(&pk, req->to);
    }
    if (req->fields & KYU_F_RAFT) {
        kyu_mp_pack_str(&pk, "raft");
        kyu_mp_pack_str(&pk, req->raft);
    }
    if (req->fields & KYU_F_EP) {
        kyu_mp_pack_str(&pk, "ep");
        kyu_mp_pack_str(&pk, req->ep);
    }
    if (req->fields & KYU_F_MMS) {
        kyu_mp_pack_str(&pk, "mms");
        msgpack_pack_uint32(&pk, req->max_size);
    }
    if (req->fields & KYU_F_DELAY) {
        kyu_mp_pack_str(&pk, "ds");
        msgpack_pack_uint32(&pk, req->delay);
    }
    if (req->fields & KYU_F_DELIVER_AT) {
        kyu_mp_pack_str(&pk, "da");
        msgpack_pack_uint64(&pk, req->deliver_at_ms);
    }
    if (req->fields & KYU_F_WAIT) {
        kyu_mp_pack_str(&pk, "wt");
        msgpack_pack_uint32(&pk, req->wait);
    }
    if (req->fields & KYU_F_RETENTION) {
        kyu_mp_pack_str(&pk, "mrp");
        msgpack_pack_uint32(&pk, req->qx.retention);
    }
    if (req->fields & KYU_F_RECEIVE_WAIT) {
        kyu_mp_pack_str(&pk, "rwt");
        msgpack_pack_uint32(&pk, req->qx.receive_wait);
    }
    if (req->fields & KYU_F_REDRIVE) {
        kyu_mp_pack_str(&pk, "rdp");
        msgpack_pack_array(&pk, req->qx.dlq[0] ? 2 : 0);
        if (req->qx.dlq[0]) {
            kyu_mp_pack_str(&pk, req->qx.dlq);
            msgpack_pack_uint32(&pk, req->qx.max_receive_count);
        }
    }
    if (req->fields & KYU_F_REDRIVE_ALLOW) {
        bool by_queue = req->qx.allow == KYU_REDRIVE_BY_QUEUE;
        kyu_mp_pack_str(&pk, "rap");
        msgpack_pack_array(&pk, by_queue ? 2 : 1);
        kyu_mp_pack_str(&pk, redrive_allow_names[req->qx.allow < 3 ? req->qx.allow : 0]);
        if (by_queue) {
            msgpack_pack_array(&pk, req->qx.n_sources);
            for (size_t i = 0; i < req->qx.n_sources; i++)
                kyu_mp_pack_str(&pk, req->qx.sources[i]);
        }
    }
    if (req->fields & KYU_F_TAGS) {
        kyu_mp_pack_str(&pk, "tags");
        msgpack_pack_map(&pk, req->qx.tags.n);
        for (size_t i = 0; i < req->qx.tags.n; i++) {
            kyu_mp_pack_str(&pk, req->qx.tags.keys[i]);
            kyu_mp_pack_str(&pk, req->qx.tags.values[i]);
        }
    }
    if (req->fields & KYU_F_TAG_KEYS) {
        kyu_mp_pack_str(&pk, "tk");
        msgpack_pack_array(&pk, req->qx.tags.n);
        for (size_t i = 0; i < req->qx.tags.n; i++)
            kyu_mp_pack_str(&pk, req->qx.tags.keys[i]);
    }
    if (req->fields & KYU_F_FORCE) {
        kyu_mp_pack_str(&pk, "force");
        msgpack_pack_true(&pk);
    }
    if (req->fields & KYU_F_MSG_ATTRS) {
        kyu_mp_pack_str(&pk, "ma");
        msgpack_pack_array(&pk, req->n_attr_msgs);
        for (size_t i = 0; i < req->n_attr_msgs; i++)
            kyu_msg_attrs_pack(&pk, &req->attrs[i]);
    }
    if (req->fields & KYU_F_FROM) {
        kyu_mp_pack_str(&pk, "from");
        msgpack_pack_uint64(&pk, req->from);
    }
    if (req->fields & KYU_F_DEST) {
        kyu_mp_pack_str(&pk, "dst");
        kyu_mp_pack_str(&pk, req->dest);
    }
    if (req->fields & KYU_F_RATE) {
        kyu_mp_pack_str(&pk, "mps");
        msgpack_pack_uint32(&pk, req->rate);
    }
    if (req->fields & KYU_F_ENTRY_IDS) {
        kyu_mp_pack_str(&pk, "eid");
        msgpack_pack_array(&pk, req->n_entries);
        for (size_t i = 0; i < req->n_entries; i++)
            kyu_mp_pack_str(&pk, req->entry_ids[i]);
    }
    if (req->fields & KYU_F_ENTRY_DELAYS) {
        kyu_mp_pack_str(&pk, "eds");
        msgpack_pack_array(&pk, req->n_entry_delays);
        for (size_t i = 0; i < req->n_entry_delays; i++) {
            if (req->entry_delay[i] < 0)
                msgpack_pack_nil(&pk);
            else
                msgpack_pack_uint64(&pk, (uint64_t)req->entry_delay[i]);
        }
    }
    if (req->fields & KYU_F_ENTRY_VTS) {
        kyu_mp_pack_str(&pk, "evt");
        msgpack_pack_array(&pk, req->n_entry_vts);
        for (size_t i = 0; i < req->n_entry_vts; i++)
            msgpack_pack_uint32(&pk, req->entry_vt[i]);
    }
    if (req->fields & KYU_F_CREDIT_TOTAL) {
        kyu_mp_pack_str(&pk, "ct");
        msgpack_pack_uint32(&pk, req->credit_total);
    }
    if (req->fields & KYU_F_CREDIT) {
        kyu_mp_pack_str(&pk, "cr");
        msgpack_pack_uint32(&pk, req->credit);
    }
    if (req->fields & KYU_F_HB) {
        kyu_mp_pack_str(&pk, "hb");
        msgpack_pack_uint32(&pk, req->hb_ms);
    }
    if (req->fields & KYU_F_LIVENESS) {
        kyu_mp_pack_str(&pk, "lv");
        msgpack_pack_uint32(&pk, req->liveness);
    }
    if (req->fields & KYU_F_WORKER_NAME) {
        kyu_mp_pack_str(&pk, "wn");
        kyu_mp_pack_str(&pk, req->worker_name);
    }
    if (req->fields & KYU_F_SID) {
        kyu_mp_pack_str(&pk, "sid");
        msgpack_pack_uint64(&pk, req->sid);
    }
    if (req->fields & KYU_F_TOPIC) {
        kyu_mp_pack_str(&pk, "tp");
        kyu_mp_pack_str(&pk, req->topic);
    }
    if (req->fields & KYU_F_SUB_ID) {
        kyu_mp_pack_str(&pk, "sub");
        kyu_mp_pack_str(&pk, req->sub_id);
    }
    if (req->fields & KYU_F_RAW) {
        kyu_mp_pack_str(&pk, "raw");
        msgpack_pack_true(&pk);
    }
    if (req->fields & KYU_F_FILTER) {
        kyu_mp_pack_str(&pk, "flt");
        msgpack_pack_true(&pk);
    }
    if (req->fields & KYU_F_FILTER_SCOPE) {
        kyu_mp_pack_str(&pk, "fsc");
        kyu_mp_pack_str(&pk, req->filter_scope ? "body" : "attributes");
    }
    if (req->fields & KYU_F_NO_FILTER) {
        kyu_mp_pack_str(&pk, "nflt");
        msgpack_pack_true(&pk);
    }
    if (req->fields & KYU_F_RAW_DELIVERY) {
        kyu_mp_pack_str(&pk, "rd");
        kyu_mp_pack_bool(&pk, req->raw_delivery);
    }
    if (req->fields & KYU_F_FIFO) {
        kyu_mp_pack_str(&pk, "fifo");
        kyu_mp_pack_bool(&pk, req->qx.fifo);
    }
    if (req->fields & KYU_F_CBD) {
        kyu_mp_pack_str(&pk, "cbd");
        kyu_mp_pack_bool(&pk, req->qx.cbd);
    }
    if (req->fields & KYU_F_DEDUP_SCOPE) {
        kyu_mp_pack_str(&pk, "dsc");
        kyu_mp_pack_str(&pk,
                        req->qx.dedup_scope == KYU_DEDUP_SCOPE_GROUP ? "messageGroup" : "queue");
    }
    if (req->fields & KYU_F_THROUGHPUT) {
        kyu_mp_pack_str(&pk, "ftl");
        kyu_mp_pack_str(&pk, req->qx.throughput == KYU_THROUGHPUT_PER_GROUP ? "perMessageGroupId"
                                                                            : "perQueue");
    }
    if (req->fields & KYU_F_GROUPS) {
        kyu_mp_pack_str(&pk, "mg");
        msgpack_pack_array(&pk, req->n_group_msgs);
        for (size_t i = 0; i < req->n_group_msgs; i++) {
            msgpack_pack_array(&pk, 2);
            const char *ids[2] = {req->group_ids[i], req->dedup_ids[i]};
            for (int j = 0; j < 2; j++) {
                if (ids[j][0])
                    kyu_mp_pack_str(&pk, ids[j]);
                else
                    msgpack_pack_nil(&pk);
            }
        }
    }
    if (req->fields & KYU_F_ATTEMPT) {
        kyu_mp_pack_str(&pk, "raid");
        kyu_mp_pack_str(&pk, req->attempt_id);
    }
    if (req->fields & KYU_F_RQ) {
        kyu_mp_pack_str(&pk, "rq");
        msgpack_pack_array(&pk, 2);
        msgpack_pack_uint64(&pk, req->rq_client);
        msgpack_pack_uint64(&pk, req->rq_key);
    }
    if (req->fields & KYU_F_VERSION) {
        kyu_mp_pack_str(&pk, "v");
        msgpack_pack_uint32(&pk, req->version);
    }
}
