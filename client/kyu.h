/* kyu.h: libkyu, the C client of a kyu broker (proto/PROTOCOL.md is the wire protocol).
 *
 * A kyu_client_t is one DEALER connection to one broker of a list of endpoints. It says
 * HELLO when it connects, then offers two layers:
 *
 *  - an asynchronous layer: kyu_client_request_async / kyu_client_send_async queue a request
 *    and return at once with its id; kyu_client_poll_reply hands back the next reply, of any
 *    request, in arrival order. Many requests may be in flight (pipelining); each is bounded
 *    by the client's timeout, after which poll_reply reports it as KYU_ERR_TIMEOUT.
 *  - synchronous convenience calls, one per op (kyu_client_send, kyu_client_receive, ...):
 *    each sends one request and waits for its reply, moving to the next endpoint on a timeout
 *    or NOT_LEADER (to the leader a NOT_LEADER reply names, even one not in the list; bounded:
 *    at most 64 attempts within the client's timeout, pausing while no leader is known), and
 *    asking the same node again 50 ms after BUSY (a leader handing leadership over, or
 *    saturated; not for the cluster_* membership calls, whose BUSY is their answer). Replies to
 * asynchronous requests that arrive meanwhile are kept for poll_reply.
 *
 * Every call returns a kyu_code_t and, on failure, fills a kyu_err_t: err->code is the
 * reply's status (or a client-side code: TIMEOUT, CONNECTION, TOO_LARGE...) and err->msg the
 * broker's text. Every SEND carries a request key (client id, key), kept across the retries
 * of one call, so a retried send is applied once (within 5 minutes). Other retried requests
 * may have been applied already: a delete can then report RECEIPT_INVALID, a receive leases
 * another message (the first lease simply runs out).
 *
 * Threads: a client is not thread-safe; give each thread its own client.
 * Ownership: the caller owns what the client returns (kyu_messages_destroy,
 * kyu_queue_names_destroy); the client copies what it is given.
 */
#ifndef KYU_CLIENT_H
#define KYU_CLIENT_H

#include "kyu_err.h"
#include "protocol.h"

#include <stddef.h>
#include <stdint.h>

typedef struct kyu_client kyu_client_t;

typedef struct {
    int timeout_ms;         /* bound of every call and every request; default 10000 */
    int max_inflight;       /* requests in flight at once; default 1024 */
    int64_t max_frame_size; /* ZMQ_MAXMSGSIZE of incoming frames; default 64 MiB + 64 KiB */
} kyu_client_opts_t;

/* Default options (see the fields). */
kyu_client_opts_t kyu_client_opts_default(void);

/* Connects to the first endpoint of a comma-separated list ("tcp://10.0.0.1:7700,tcp://...")
 * and exchanges HELLO; on no reply it moves to the next endpoint, each tried once. Returns
 * NULL with err filled (VERSION when the broker refuses our protocol version, TIMEOUT or
 * CONNECTION when no broker answered, INVALID_ARGUMENT for a bad list). opts may be NULL. */
kyu_client_t *kyu_client_new(const char *endpoints, kyu_err_t *err);
kyu_client_t *kyu_client_new_opts(const char *endpoints, const kyu_client_opts_t *opts,
                                  kyu_err_t *err);
/* Closes the connection (unsent requests are dropped) and nulls *self_p. */
void kyu_client_destroy(kyu_client_t **self_p);

/* The endpoint in use, and the broker's maximum body size learnt from HELLO. */
const char *kyu_client_endpoint(const kyu_client_t *self);
uint64_t kyu_client_max_body(const kyu_client_t *self);
/* Requests sent and not yet answered (nor timed out). */
size_t kyu_client_inflight(const kyu_client_t *self);

/* ---- asynchronous layer ---- */

/* One received message. body is body_len bytes followed by a NUL (not counted), so a text
 * body can be used as a C string. */
typedef struct {
    char message_id[KYU_MESSAGE_ID_MAX + 1];
    char receipt_handle[KYU_HANDLE_MAX + 1];
    uint32_t receive_count;
    uint64_t sent_ms;          /* SentTimestamp, ms since the epoch */
    uint64_t first_receive_ms; /* ApproximateFirstReceiveTimestamp */
    /* A message moved here by a RedrivePolicy: the queue it left (SQS's
     * DeadLetterQueueSourceArn; "" for a message sent to this queue), and beyond SQS its
     * receive count then, its first and last receive and the time of the move (ms since the
     * epoch; last 0: leased before it was recorded) */
    char dlq_source[KYU_NAME_MAX + 1];
    uint32_t dlq_receive_count;
    uint64_t dlq_first_receive_ms, dlq_last_receive_ms, dlq_moved_ms;
    /* kyu_client_peek only (receipt_handle is empty then): KYU_MSG_VISIBLE, _INFLIGHT or
     * _DELAYED; the message's position in its queue; when an in-flight or delayed message
     * becomes visible (ms since the epoch, else 0) */
    uint8_t state;
    uint64_t position;
    uint64_t visible_at_ms;
    size_t body_len;
    unsigned char *body;
    /* Its message attributes, sorted by name; their bytes are in the same allocation (each
     * string is followed by a NUL, not counted). */
    kyu_msg_attrs_t attrs;
    char md5_body[KYU_MD5_HEX_LEN + 1];  /* MD5OfMessageBody as the broker computed it */
    char md5_attrs[KYU_MD5_HEX_LEN + 1]; /* MD5OfMessageAttributes; "" without attributes */
    /* MessageGroupId and MessageDeduplicationId ("": none; a FIFO queue's messages have
     * both, a content-based one being the SHA-256 of the body in hex) and, on a FIFO queue,
     * its SequenceNumber (0: none; SQS gives it as a decimal string) */
    char group_id[KYU_GROUP_ID_MAX + 1];
    char dedup_id[KYU_DEDUP_ID_MAX + 1];
    uint64_t sequence;
} kyu_message_t;

/* Frees an array of messages returned by libkyu (one allocation) and nulls *msgs_p. */
void kyu_messages_destroy(kyu_message_t **msgs_p);

/* Queues a request; req->op and its fields (req->fields, queue, vt, max, handles) are the
 * caller's, req->id is ignored: the client picks the next id and returns it in *req_id.
 * bodies/lens: n body frames (SEND), copied. Returns at once: KYU_OK, or BUSY when
 * max_inflight requests are in flight (poll replies first), TOO_LARGE for a body over the
 * broker's maximum, INVALID_ARGUMENT, CONNECTION when the socket refuses the message. */
kyu_code_t kyu_client_request_async(kyu_client_t *self, const kyu_request_t *req,
                                    const void *const *bodies, const size_t *lens, size_t n,
                                    uint64_t *req_id, kyu_err_t *err);
/* SEND of n (1..10) bodies to queue, asynchronously. */
kyu_code_t kyu_client_send_async(kyu_client_t *self, const char *queue, const void *const *bodies,
                                 const size_t *lens, size_t n, uint64_t *req_id, kyu_err_t *err);

/* The same with a request key: *key 0 gets the client's next key; giving the same *key again
 * (a retry after a failover or a timeout) makes the broker apply the send once and answer
 * with the first attempt's ids, within 5 minutes. */
kyu_code_t kyu_client_send_async_keyed(kyu_client_t *self, const char *queue,
                                       const void *const *bodies, const size_t *lens, size_t n,
                                       uint64_t *key, uint64_t *req_id, kyu_err_t *err);

/* How a send delays its messages; a field at -1 is not set, and at most one may be set. */
typedef struct {
    int delay_seconds;     /* 0..900: each message's own DelaySeconds (SQS's), replacing the
                            * queue's; 0 makes it visible at once even on a delayed queue */
    int64_t deliver_at_ms; /* beyond SQS: received no earlier than this time, ms since the
                            * epoch, at most 1209600 s (14 days) after the send (checked
                            * here against this host's clock), and at most the queue's
                            * MessageRetentionPeriod after it (by the broker, against its
                            * own); a time already past is visible at once */
    /* NULL: no attributes; else attrs[i] are body i's message attributes (SQS's rules,
     * checked here and by the broker; borrowed for the call) */
    const kyu_msg_attrs_t *attrs;
    /* NULL: none; else group_ids[i] and dedup_ids[i] (each NULL or a string) are body i's
     * MessageGroupId and MessageDeduplicationId: 1..128 of ASCII letters, digits and
     * punctuation. A FIFO queue needs a group per message, and a deduplication id unless
     * its ContentBasedDeduplication is on; it refuses delay_seconds and deliver_at_ms (its
     * own DelaySeconds applies). A standard queue takes groups (stored, returned) and
     * refuses deduplication ids. */
    const char *const *group_ids;
    const char *const *dedup_ids;
} kyu_send_options_t;
/* Sets every field of o to -1 (not set), attrs, group_ids and dedup_ids to NULL. */
void kyu_send_options_init(kyu_send_options_t *o);
/* kyu_client_send_async_keyed with options o (NULL: none); key NULL: no request key. */
kyu_code_t kyu_client_send_async_with(kyu_client_t *self, const char *queue,
                                      const void *const *bodies, const size_t *lens, size_t n,
                                      const kyu_send_options_t *o, uint64_t *key, uint64_t *req_id,
                                      kyu_err_t *err);

/* Waits up to timeout_ms (0: do not wait, -1: until a reply or a request's deadline) for
 * the reply to any request in flight. Returns KYU_OK with *rep filled when one is there:
 * rep->id names the request, rep->status is its outcome (KYU_OK, the broker's error code
 * with rep->error, or KYU_ERR_TIMEOUT / KYU_ERR_MALFORMED made up by the client when the
 * request's deadline passed or its reply was malformed). For a RECEIVE, *msgs (when msgs is
 * not NULL) gets the rep->n_msgs messages (caller frees with kyu_messages_destroy) or NULL.
 * Returns KYU_ERR_TIMEOUT when nothing arrived in time (then *rep is untouched).
 * Filling rep frees what it held: one rep (kyu_reply_init once) may serve a loop of polls,
 * and the caller calls kyu_reply_reset(rep) after the last. */
kyu_code_t kyu_client_poll_reply(kyu_client_t *self, int timeout_ms, kyu_reply_t *rep,
                                 kyu_message_t **msgs, kyu_err_t *err);

/* Picks the endpoint to use next and reconnects to it (with HELLO): the named leader when
 * leader is a non-empty endpoint (NOT_LEADER's hint), else the next one of the list.
 * Requests in flight are answered by poll_reply as TIMEOUT ("not answered before the client
 * moved"). */
kyu_code_t kyu_client_failover(kyu_client_t *self, const char *leader, kyu_err_t *err);

/* ---- topics (SNS-style; PROTOCOL.md "Topics") ---- */

/* Creates a topic: 1..256 of letters, digits, - and _. Creating one that exists succeeds. */
kyu_code_t kyu_client_create_topic(kyu_client_t *self, const char *topic, kyu_err_t *err);
/* The same, a FIFO topic when fifo (SNS's FifoTopic: its name must end in .fifo, and a name
 * ending in .fifo must be a FIFO topic's; INVALID_ARGUMENT otherwise), with
 * ContentBasedDeduplication when content_based_dedup (FIFO topics only). A FIFO topic
 * delivers to FIFO queues only, keeping each message group's order in every one of them, and
 * deduplicates publishes for 5 minutes as a FIFO queue does. Creating one that exists with
 * other attributes: INVALID_ARGUMENT. */
kyu_code_t kyu_client_create_topic_with(kyu_client_t *self, const char *topic, bool fifo,
                                        bool content_based_dedup, kyu_err_t *err);
/* Deletes a topic and its subscriptions (the queues and their messages stay); a topic that
 * does not exist is no error (SNS's DeleteTopic). */
kyu_code_t kyu_client_delete_topic(kyu_client_t *self, const char *topic, kyu_err_t *err);
/* The topics' names, sorted; freed with kyu_queue_names_destroy (NULL when there is none). */
kyu_code_t kyu_client_list_topics(kyu_client_t *self, char ***names_p, size_t *n, kyu_err_t *err);
/* Subscribes queue to topic; raw: each message is delivered as published (body and
 * attributes), else wrapped in SNS's JSON envelope. sub_id (when not NULL) gets the
 * subscription's id; subscribing a queue that is subscribed the same way already answers its
 * existing id, the other way INVALID_ARGUMENT. At most KYU_TOPIC_SUBS_MAX per topic. */
kyu_code_t kyu_client_subscribe(kyu_client_t *self, const char *topic, const char *queue, bool raw,
                                char sub_id[KYU_SUB_ID_LEN + 1], kyu_err_t *err);
/* kyu_client_subscribe with a filter policy (SNS's FilterPolicy, JSON; NULL: none): the queue
 * gets only the messages it matches, on their attributes or, body_scope, on their JSON body
 * (FilterPolicyScope MessageBody). A bad policy: INVALID_ARGUMENT saying what is wrong. */
kyu_code_t kyu_client_subscribe_filter(kyu_client_t *self, const char *topic, const char *queue,
                                       bool raw, const char *policy, bool body_scope,
                                       char sub_id[KYU_SUB_ID_LEN + 1], kyu_err_t *err);
/* Removes a subscription (NO_SUCH_SUBSCRIPTION when there is none by that id). */
kyu_code_t kyu_client_unsubscribe(kyu_client_t *self, const char *sub_id, kyu_err_t *err);
/* The subscriptions of topic (NULL: of every topic), by topic and then in the order made,
 * each with its filter policy (kyu_sub_info_t.policy); *subs_p: a heap array of *n (NULL when
 * none), the caller frees it, policies and all, with free(). */
kyu_code_t kyu_client_list_subscriptions(kyu_client_t *self, const char *topic,
                                         kyu_sub_info_t **subs_p, size_t *n, kyu_err_t *err);
/* A change of a subscription's attributes (SNS's SetSubscriptionAttributes): what is not
 * given stays as it is. */
typedef struct {
    int raw;            /* RawMessageDelivery: 1 raw, 0 in SNS's envelope, -1 unchanged */
    const char *policy; /* a new FilterPolicy (JSON), or NULL */
    bool no_policy;     /* remove the FilterPolicy (not with policy or scope) */
    int body_scope;     /* FilterPolicyScope: 1 MessageBody, 0 MessageAttributes, -1 unchanged */
} kyu_sub_change_t;
/* Changes a subscription in place: its filter policy (a new one keeps the present scope
 * unless body_scope is given), the policy's scope (the present policy must hold under the
 * new one), its raw delivery. Messages published after the change see it; nothing already
 * enqueued changes. NO_SUCH_SUBSCRIPTION, or INVALID_ARGUMENT for a bad policy. */
kyu_code_t kyu_client_set_subscription_attributes(kyu_client_t *self, const char *sub_id,
                                                  const kyu_sub_change_t *change, kyu_err_t *err);
/* One subscription (SNS's GetSubscriptionAttributes): *sub is a heap entry with its policy
 * (kyu_sub_info_t.policy), freed by the caller with free(). */
kyu_code_t kyu_client_get_subscription_attributes(kyu_client_t *self, const char *sub_id,
                                                  kyu_sub_info_t **sub, kyu_err_t *err);
/* Publishes one message (UTF-8 text; attrs: its attributes, NULL or none: no attributes) to
 * topic: one command that enqueues a copy into every subscribed queue, or into none (a queue
 * whose MaximumMessageSize the copy exceeds refuses the whole publish, TOO_LARGE naming it).
 * message_id (when not NULL) gets the publish's MessageId once it is committed. Keyed: a retry
 * after a timeout is applied once. */
kyu_code_t kyu_client_publish(kyu_client_t *self, const char *topic, const void *body, size_t len,
                              const kyu_msg_attrs_t *attrs, char message_id[KYU_MESSAGE_ID_MAX + 1],
                              kyu_err_t *err);
/* The same, asynchronously (kyu_client_poll_reply answers it: rep->ids[0] is the MessageId);
 * key as kyu_client_send_async_keyed's (NULL: no request key). */
kyu_code_t kyu_client_publish_async(kyu_client_t *self, const char *topic, const void *body,
                                    size_t len, const kyu_msg_attrs_t *attrs, uint64_t *key,
                                    uint64_t *req_id, kyu_err_t *err);

/* ---- synchronous calls ---- */

/* vt: visibility timeout in seconds, 0..43200, or -1 for the broker's default. */
kyu_code_t kyu_client_create_queue(kyu_client_t *self, const char *queue, int vt, kyu_err_t *err);

/* The attributes a queue is created with or changed to (SQS's names and ranges); a field at
 * -1 is not set: at creation the default, later the queue's current value. */
typedef struct {
    int visibility_timeout;   /* VisibilityTimeout, seconds, 0..43200 (default 30) */
    int max_message_size;     /* MaximumMessageSize, bytes, 1024..1048576 (default 1048576);
                               * not above the broker's own limit, which bounds the default too */
    int delay_seconds;        /* DelaySeconds, 0..900 (default 0): each message sent is
                               * invisible for as long */
    int retention_seconds;    /* MessageRetentionPeriod, 60..1209600 (default 345600) */
    int receive_wait_seconds; /* ReceiveMessageWaitTimeSeconds, 0..20 (default 0) */
    /* RedrivePolicy: the dead-letter queue (NULL: not set; "": remove the policy) and
     * maxReceiveCount, 1..1000 (-1: 10, SQS's documented default). The queue must exist, and
     * its RedriveAllowPolicy must allow this one. */
    const char *dead_letter_queue;
    int max_receive_count;
    /* FIFO queues (names ending in .fifo): FifoQueue (1; at creation only, and required for
     * such a name), ContentBasedDeduplication (0 or 1), DeduplicationScope
     * (KYU_DEDUP_SCOPE_QUEUE or _GROUP), FifoThroughputLimit (KYU_THROUGHPUT_PER_QUEUE or
     * _PER_GROUP: accepted and reported; kyu has no throughput quota); -1: not set */
    int fifo;
    int content_based_dedup;
    int dedup_scope;
    int throughput_limit;
    /* RedriveAllowPolicy: -1 not set, or a kyu_redrive_allow_t; byQueue with 1..10 source
     * queues */
    int redrive_allow;
    size_t n_redrive_sources;
    const char *redrive_sources[KYU_REDRIVE_SOURCES_MAX];
    /* Tags (n_tags > 0): at creation the queue's; set-queue-attributes adds them (a key it
     * has gets the new value), at most 50 in all; keys 1..128 bytes, values 0..256 */
    size_t n_tags;
    const char *tag_keys[KYU_TAGS_MAX];
    const char *tag_values[KYU_TAGS_MAX];
} kyu_queue_settings_t;
/* Sets every field of s to -1 (not set). */
void kyu_queue_settings_init(kyu_queue_settings_t *s);
/* As kyu_client_create_queue, with the attributes s sets (checked here first). Creating a
 * queue that exists succeeds when its attributes are the same, else QUEUE_EXISTS names the
 * attribute that differs (an attribute not set compares as its default). */
kyu_code_t kyu_client_create_queue_with(kyu_client_t *self, const char *queue,
                                        const kyu_queue_settings_t *s, kyu_err_t *err);
/* Changes the attributes s sets (at least one); the others stay. Later receives use the new
 * visibility timeout, later sends the new maximum size and delay. */
kyu_code_t kyu_client_set_queue_attributes(kyu_client_t *self, const char *queue,
                                           const kyu_queue_settings_t *s, kyu_err_t *err);
kyu_code_t kyu_client_delete_queue(kyu_client_t *self, const char *queue, kyu_err_t *err);
/* Removes the queue's tags with the n (1..50) keys given (SQS's UntagQueue); a key the queue
 * lacks is no error. Keys are 1..128 bytes of valid UTF-8, distinct (checked here first). */
kyu_code_t kyu_client_untag_queue(kyu_client_t *self, const char *queue, const char *const *keys,
                                  size_t n, kyu_err_t *err);
/* Deletes every message of the queue (visible, in flight, delayed) sent before the purge;
 * their receipt handles become RECEIPT_INVALID. Keyed: a retry does not purge again. */
kyu_code_t kyu_client_purge_queue(kyu_client_t *self, const char *queue, kyu_err_t *err);
/* force: also a queue that is another queue's dead-letter queue (without it QUEUE_IN_USE);
 * the messages of those queues then stay in them past their maxReceiveCount. */
kyu_code_t kyu_client_delete_queue_with(kyu_client_t *self, const char *queue, bool force,
                                        kyu_err_t *err);
/* The queues whose RedrivePolicy names queue, as kyu_client_list_queues gives names. */
kyu_code_t kyu_client_list_dead_letter_source_queues(kyu_client_t *self, const char *queue,
                                                     char ***names_p, size_t *n, kyu_err_t *err);
/* *names_p gets an array of *n NUL-terminated names (byte order), or NULL when there is
 * none; caller frees with kyu_queue_names_destroy. */
kyu_code_t kyu_client_list_queues(kyu_client_t *self, char ***names_p, size_t *n, kyu_err_t *err);
void kyu_queue_names_destroy(char ***names_p);
kyu_code_t kyu_client_get_queue_attributes(kyu_client_t *self, const char *queue,
                                           kyu_queue_attrs_t *attrs, kyu_err_t *err);
/* The same, and the queue's tags into *tags when tags is not NULL. */
kyu_code_t kyu_client_get_queue_attributes_with(kyu_client_t *self, const char *queue,
                                                kyu_queue_attrs_t *attrs, kyu_tags_t *tags,
                                                kyu_err_t *err);
/* Sends n (1..10) bodies; ids (when not NULL) gets each message's id, in order. */
kyu_code_t kyu_client_send(kyu_client_t *self, const char *queue, const void *const *bodies,
                           const size_t *lens, size_t n, char (*ids)[KYU_MESSAGE_ID_MAX + 1],
                           kyu_err_t *err);
/* The same with options o (a delay or a delivery time for every message; NULL: none). */
kyu_code_t kyu_client_send_with(kyu_client_t *self, const char *queue, const void *const *bodies,
                                const size_t *lens, size_t n, const kyu_send_options_t *o,
                                char (*ids)[KYU_MESSAGE_ID_MAX + 1], kyu_err_t *err);
/* What a send answers for each message: its id and the MD5s of what the broker stored (a
 * client may compare them with its own, as SQS's SDKs do). */
typedef struct {
    char message_id[KYU_MESSAGE_ID_MAX + 1];
    char md5_body[KYU_MD5_HEX_LEN + 1];  /* MD5OfMessageBody */
    char md5_attrs[KYU_MD5_HEX_LEN + 1]; /* MD5OfMessageAttributes; "" without attributes */
    /* A FIFO queue's SequenceNumber for the message (a duplicate's: the first one's, with
     * its message_id); 0 on a standard queue */
    uint64_t sequence;
} kyu_sent_message_t;
/* kyu_client_send_with, answering out[i] for body i. */
kyu_code_t kyu_client_send_messages(kyu_client_t *self, const char *queue,
                                    const void *const *bodies, const size_t *lens, size_t n,
                                    const kyu_send_options_t *o, kyu_sent_message_t *out,
                                    kyu_err_t *err);
/* One entry of a send batch (SQS's SendMessageBatch entry); the client copies nothing it
 * does not need after the call. */
typedef struct {
    const char *id; /* 1..80 of letters, digits, - and _, distinct within the batch */
    const void *body;
    size_t len;
    int delay_seconds;            /* its own DelaySeconds, 0..900; -1: the queue's */
    const kyu_msg_attrs_t *attrs; /* its message attributes; NULL: none */
    const char *group_id;         /* MessageGroupId; NULL: none (see kyu_send_options_t) */
    const char *dedup_id;         /* MessageDeduplicationId; NULL: none */
} kyu_batch_entry_t;
/* What a batch answers for one entry. */
typedef struct {
    kyu_code_t code;             /* KYU_OK: sent; else why not (TOO_LARGE, EMPTY_BODY, ...) */
    char error[KYU_ERR_MSG_MAX]; /* the broker's text for a failed entry */
    kyu_sent_message_t sent;     /* a sent entry's id and digests */
} kyu_batch_result_t;
/* Sends 1..10 entries as one batch (SQS's SendMessageBatch): each entry is checked alone, so
 * an entry with a bad body, attribute or delay fails alone and the others are sent. out[i]
 * gets entry i's result. Returns KYU_OK when every entry was sent, else the first failed
 * entry's code with err naming it; a failure of the whole request (bad or repeated entry
 * ids: InvalidBatchEntryId, BatchEntryIdsNotDistinct; no such queue...) is every entry's
 * code. Retried across failovers with one request key: every entry is answered as the first
 * attempt was. */
kyu_code_t kyu_client_send_batch(kyu_client_t *self, const char *queue,
                                 const kyu_batch_entry_t *entries, size_t n,
                                 kyu_batch_result_t *out, kyu_err_t *err);
/* (Topics, continued: kyu_sent_message_t and kyu_batch_entry_t are defined only here.) */
/* kyu_client_publish with a MessageGroupId and a MessageDeduplicationId, each NULL or 1..128
 * of ASCII letters, digits and punctuation. A FIFO topic needs the group and the deduplication
 * id (unless it has ContentBasedDeduplication); a standard topic takes a group alone (SNS's:
 * forwarded to its standard queues, whose receives share fairly across groups) and refuses a
 * deduplication id (INVALID_ARGUMENT). out gets
 * the MessageId and, on a FIFO topic, the SequenceNumber: a duplicate within 5 minutes (same
 * deduplication id) gets the first publish's, and nothing is enqueued again. */
kyu_code_t kyu_client_publish_fifo(kyu_client_t *self, const char *topic, const void *body,
                                   size_t len, const kyu_msg_attrs_t *attrs, const char *group_id,
                                   const char *dedup_id, kyu_sent_message_t *out, kyu_err_t *err);
/* The same, asynchronously (rep->ids[0], rep->sequences[0]); key as kyu_client_publish_async's */
kyu_code_t kyu_client_publish_fifo_async(kyu_client_t *self, const char *topic, const void *body,
                                         size_t len, const kyu_msg_attrs_t *attrs,
                                         const char *group_id, const char *dedup_id, uint64_t *key,
                                         uint64_t *req_id, kyu_err_t *err);
/* (Topics, continued: kyu_batch_entry_t is defined only here.) */
/* Publishes 1..10 entries as one batch (SNS's PublishBatch): each entry (its id, body and
 * attributes, a FIFO topic's group_id and dedup_id or a standard topic's group_id; delay_seconds is
 * not used: topics have none) is published on its own, into every matching subscribed queue or
 * none, so a bad or refused entry fails alone; out[i] gets entry i's result (sent.message_id and a
 * FIFO topic's sent.sequence, no digests). The entries together are at most
 * KYU_PUBLISH_BATCH_BYTES_MAX (256 KiB, bodies and attributes: else TOO_LARGE
 * BatchRequestTooLong, nothing published); more than 10: INVALID_ARGUMENT
 * TooManyEntriesInBatchRequest; ids as kyu_client_send_batch's (InvalidBatchEntryId,
 * BatchEntryIdsNotDistinct). Returns as kyu_client_send_batch; keyed, so a retry publishes
 * each entry once. */
kyu_code_t kyu_client_publish_batch(kyu_client_t *self, const char *topic,
                                    const kyu_batch_entry_t *entries, size_t n,
                                    kyu_batch_result_t *out, kyu_err_t *err);
/* The same, asynchronously (kyu_client_poll_reply answers it: rep->ids[i] entry i's
 * MessageId, and when an entry failed rep->results[i] and rep->errors[i] for each); key as
 * kyu_client_send_async_keyed's (NULL: no request key). */
kyu_code_t kyu_client_publish_batch_async(kyu_client_t *self, const char *topic,
                                          const kyu_batch_entry_t *entries, size_t n, uint64_t *key,
                                          uint64_t *req_id, kyu_err_t *err);
/* A DELETE or CHANGE_VISIBILITY batch entry (SQS's DeleteMessageBatch and
 * ChangeMessageVisibilityBatch): its Id (1..80 of [A-Za-z0-9_-], distinct in the batch) and
 * receipt handle; for a CHANGE_VISIBILITY batch with vt KYU_VT_PER_ENTRY, its own
 * VisibilityTimeout. */
typedef struct {
    const char *id;
    const char *receipt_handle;
    int visibility_timeout; /* seconds, 0..43200 (KYU_VT_PER_ENTRY only) */
} kyu_handle_entry_t;
/* kyu_client_change_visibility_batch's vt: each entry's visibility_timeout. */
#define KYU_VT_PER_ENTRY (-1)
/* Deletes 1..10 entries as one batch; out[i] gets entry i's result (code and the broker's
 * text; a handle that fails fails alone). Returns KYU_OK when every entry succeeded, else
 * the first failed entry's code with err naming it; a failure of the whole request (bad or
 * repeated ids: InvalidBatchEntryId, BatchEntryIdsNotDistinct; no such queue) is every
 * entry's code. Keyed across retries as kyu_client_delete. */
kyu_code_t kyu_client_delete_batch(kyu_client_t *self, const char *queue,
                                   const kyu_handle_entry_t *entries, size_t n,
                                   kyu_batch_result_t *out, kyu_err_t *err);
/* The same for CHANGE_VISIBILITY: every entry's remaining lease set to vt (0..43200) seconds,
 * or with vt KYU_VT_PER_ENTRY to each entry's own visibility_timeout (SQS's
 * ChangeMessageVisibilityBatch; one request, whatever the timeouts): an entry's timeout over
 * 43200 fails that entry alone (INVALID_ARGUMENT), a negative one the whole call before
 * anything is sent. Needs a broker that takes evt (UNKNOWN field: MALFORMED otherwise). */
kyu_code_t kyu_client_change_visibility_batch(kyu_client_t *self, const char *queue,
                                              const kyu_handle_entry_t *entries, size_t n, int vt,
                                              kyu_batch_result_t *out, kyu_err_t *err);
/* Leases up to max (1..10) messages for vt seconds (-1: the queue's). *msgs_p gets *n
 * messages (NULL when none: the queue had no visible message); caller frees with
 * kyu_messages_destroy. */
kyu_code_t kyu_client_receive(kyu_client_t *self, const char *queue, int max, int vt,
                              kyu_message_t **msgs_p, size_t *n, kyu_err_t *err);
/* How a receive asks (SQS's ReceiveMessage parameters). */
typedef struct {
    int max;                /* MaxNumberOfMessages, 1..10 (default 1) */
    int visibility_timeout; /* seconds, 0..43200; -1: the queue's (default) */
    int wait_seconds;       /* WaitTimeSeconds, 0..20: long polling, the broker answers as
                             * soon as a message is there, or empty once this has passed;
                             * -1 (default): the queue's ReceiveMessageWaitTimeSeconds. The
                             * call waits this much longer than the client's timeout */
    /* ReceiveRequestAttemptId (NULL: none): a receive retried with the same id within 5
     * minutes answers the messages the first attempt leased that are still leased to it,
     * with the same receipt handles (an attempt that leased nothing is not remembered).
     * 1..128 of ASCII letters, digits and punctuation */
    const char *attempt_id;
} kyu_receive_options_t;
/* max 1, the others -1, attempt_id NULL. */
void kyu_receive_options_init(kyu_receive_options_t *o);
/* kyu_client_receive with options o (NULL: the defaults). A long poll that the leader could
 * not finish (it stopped leading: NOT_LEADER) is asked again at the new leader for what is
 * left of the wait. With the queue's default wait (wait_seconds -1) the client does not know
 * the wait: give it a timeout longer than the queue's ReceiveMessageWaitTimeSeconds. */
kyu_code_t kyu_client_receive_with(kyu_client_t *self, const char *queue,
                                   const kyu_receive_options_t *o, kyu_message_t **msgs_p,
                                   size_t *n, kyu_err_t *err);
/* Deletes the messages of n (1..10) receipt handles. results[i] gets the code of handle i
 * (KYU_OK, RECEIPT_STALE, RECEIPT_INVALID..., or the request's error for all of them when
 * the request failed as a whole). Returns KYU_OK when every handle succeeded, else the first
 * failure's code with err saying which handle. */
/* Lists up to max (1..10) messages of the queue in queue order (the order they were sent in),
 * from position `from` on (0: the start), without leasing them: *msgs_p gets *n messages
 * with their state (NULL when none), attributes, digests and, for a message a RedrivePolicy
 * moved there, dlq_source and the rest of its provenance, as a receive gives them; *next
 * gets the position to list from next, 0 when no message follows. Works on any queue,
 * dead-letter queues included. */
kyu_code_t kyu_client_peek(kyu_client_t *self, const char *queue, int max, uint64_t from,
                           kyu_message_t **msgs_p, size_t *n, uint64_t *next, kyu_err_t *err);
/* The position of message message_id in the queue, into *position (for kyu_client_peek's
 * from), found by paging through the queue with PEEK from its start: message ids are random
 * and the broker keeps no index of them, so this costs one PEEK (10 messages, bodies
 * included) per 10 messages before it. INVALID_ARGUMENT when the queue does not hold it
 * (never sent there, deleted, expired or moved away). */
kyu_code_t kyu_client_peek_find(kyu_client_t *self, const char *queue, const char *message_id,
                                uint64_t *position, kyu_err_t *err);
kyu_code_t kyu_client_delete(kyu_client_t *self, const char *queue, const char *const *handles,
                             size_t n, kyu_code_t *results, kyu_err_t *err);
/* Sets the remaining lease of n (1..10) received messages to vt seconds (0: visible at
 * once); results and the return value as kyu_client_delete. */
kyu_code_t kyu_client_change_visibility(kyu_client_t *self, const char *queue,
                                        const char *const *handles, size_t n, int vt,
                                        kyu_code_t *results, kyu_err_t *err);

/* Message move tasks (SQS's redrive of a dead-letter queue). Starts one on queue (a
 * dead-letter queue): its messages move back to the queue each was dead-lettered from, or
 * to destination (NULL: their sources), at most max_per_second (1..500; -1: as fast as the
 * broker moves them). One running task per queue (INVALID_ARGUMENT otherwise). *task (when
 * not NULL) gets the task as started. Keyed: a retry answers the queue's latest task. */
kyu_code_t kyu_client_start_move_task(kyu_client_t *self, const char *queue,
                                      const char *destination, int max_per_second,
                                      kyu_move_task_t *task, kyu_err_t *err);
/* The queue's latest move tasks, newest first: up to max (1..10) into tasks, *n of them. */
kyu_code_t kyu_client_list_move_tasks(kyu_client_t *self, const char *queue, int max,
                                      kyu_move_task_t *tasks, size_t *n, kyu_err_t *err);
/* Cancels the queue's running move task (INVALID_ARGUMENT when none runs); what it moved
 * stays moved. *task (when not NULL) gets the task as cancelled. */
kyu_code_t kyu_client_cancel_move_task(kyu_client_t *self, const char *queue, kyu_move_task_t *task,
                                       kyu_err_t *err);

/* Worker sessions (proto/PROTOCOL.md "Worker sessions"): the sessions the leader holds, of
 * queue (NULL: of every queue), ordered by session id: a heap array (*workers_p, free() it)
 * of *n. Each gives its id, the worker's name and address, its queue, the credit it has now
 * and its total credit (which the worker sets as it scales), the leases it holds, and the ms since
 * its last heartbeat and since it opened. */
kyu_code_t kyu_client_list_workers(kyu_client_t *self, const char *queue,
                                   kyu_worker_info_t **workers_p, size_t *n, kyu_err_t *err);

/* Asks the connected node (no failover: every node answers for itself) for its own view of
 * the cluster. */
kyu_code_t kyu_client_cluster_status(kyu_client_t *self, kyu_node_status_t *out, kyu_err_t *err);

/* Asks the leader (found with failover) to hand leadership to node `to` (0: the most
 * up-to-date follower). Returns once the transfer has started. */
kyu_code_t kyu_client_cluster_transfer(kyu_client_t *self, uint64_t to, kyu_err_t *err);

/* Asks the leader to add node id to the cluster: raft is the HOST:PORT of its raft port,
 * client its client endpoint. Returns once the node is a voter (it is first a learner that
 * catches up), or the broker's error: INVALID_ARGUMENT (bad address, already a voter...),
 * BUSY (another change runs, or the node did not catch up in time: it stays a learner). The
 * broker bounds the change at 60 s: give the client a longer timeout. */
kyu_code_t kyu_client_cluster_add(kyu_client_t *self, uint64_t id, const char *raft,
                                  const char *client, kyu_err_t *err);
/* Asks the leader to remove node id (a leader removing itself hands leadership over
 * first; the call follows it). */
kyu_code_t kyu_client_cluster_remove(kyu_client_t *self, uint64_t id, kyu_err_t *err);

/* Sends a request and waits for its reply, with failover; the building block of the calls
 * above. On KYU_OK *rep holds the broker's success reply (caller resets it); msgs as in
 * poll_reply. */
kyu_code_t kyu_client_call(kyu_client_t *self, const kyu_request_t *req, const void *const *bodies,
                           const size_t *lens, size_t n, kyu_reply_t *rep, kyu_message_t **msgs,
                           kyu_err_t *err);

/* ---- consumer: a worker session that runs a handler per batch ----
 *
 * What kyu-worker is built on, for C programs that embed their handler (Lambda's SQS event
 * source mapping as a library). A consumer opens a worker session on the leader of a queue
 * (WORKER_OPEN: the leader leases messages for it and pushes them, no polling), gathers the
 * pushed messages into batches (up to batch_size, or until batch_window_ms has passed), and
 * calls the handler once per batch on one of a fixed pool of max_concurrency threads. While
 * a batch runs, the consumer extends its leases (CHANGE_VISIBILITY) before they expire, up
 * to max_extension_s after each message was received. After the handler returns:
 *  - succeeded messages are deleted (DELETE of up to 10 receipt handles a request);
 *  - failed ones are released with a back-off: made visible again after a delay that grows
 *    with their receive count (backoff_base_ms * 2^(count-1), at most backoff_max_ms, with
 *    jitter), so the queue's maxReceiveCount and dead-letter queue apply.
 * A handler past handler_timeout_ms is asked to stop (kyu_batch_cancelled) and its messages
 * are released with the back-off at once; what it returns later is logged and dropped.
 * A result that cannot be applied because the lease was lost (the worker was declared dead,
 * or the lease ran out: RECEIPT_STALE) is logged, never silently lost.
 *
 * Concurrency scales as Lambda's does: it starts at initial_concurrency batches, grows while
 * a backlog remains (a full batch waiting with every slot busy), up to max_concurrency;
 * shrinks when idle; halves when handlers fail. The consumer gives credit back to the broker
 * as messages finish and sets its session's total credit (WORKER_HEARTBEAT's ct) to one batch
 * more than it runs, (concurrency + 1) x batch_size, as it scales (`kyu workers` shows it).
 *
 * The session heartbeats every heartbeat_ms; a broker silent for heartbeat_ms * liveness (no
 * push, no reply) is taken for dead: the consumer reconnects, to the leader a NOT_LEADER reply
 * names or the next endpoint, and opens a new session. Leases outlive sessions: messages
 * held from an earlier session are finished normally (their deletes may then be stale).
 *
 * Threads: kyu_consumer_run runs the session in the calling thread until the consumer is
 * drained; handlers run on the pool's threads; kyu_consumer_drain may be called from any
 * thread or a signal handler. Every log line goes through opts.log (stderr by default).
 */
typedef struct kyu_consumer kyu_consumer_t;

/* A handler's verdict on one message of its batch. */
enum { KYU_ITEM_OK = 0, KYU_ITEM_FAILED = 1 };

/* One batch, as the handler sees it (valid until the handler returns). */
typedef struct {
    const kyu_message_t *msgs; /* n messages, in the order they were pushed */
    size_t n;
    uint8_t *results;    /* results[i]: KYU_ITEM_OK (as preset) or KYU_ITEM_FAILED */
    const char *queue;   /* the queue's name */
    uint64_t id;         /* the batch's number in this consumer, from 1 */
    int64_t deadline_ms; /* when the handler times out, on kyu_consumer_now_ms's clock */
    void *priv_;         /* the consumer's */
} kyu_batch_t;

/* Runs on a pool thread. Returns true when results[] stand (all KYU_ITEM_OK: all succeeded),
 * false when the whole batch failed. */
typedef bool kyu_batch_handler_fn(kyu_batch_t *batch, void *arg);

/* True once the batch's handler should stop: past its timeout, or the consumer stops at its
 * drain deadline. A handler that can stop early (kill a child, abort a request) checks it;
 * whatever it returns then is logged and dropped (its messages were released already). */
bool kyu_batch_cancelled(const kyu_batch_t *batch);

typedef struct {
    const char *queue;       /* required */
    int batch_size;          /* 1..10000 messages; default 10 (Lambda's BatchSize) */
    int batch_window_ms;     /* 0..300000: gather a batch this long at most; default 0. Must
                              * be at least 1000 when batch_size > 10 (Lambda's rule) */
    int max_concurrency;     /* 1..1000 concurrent batches (handler threads); default 10 */
    int initial_concurrency; /* 1..max_concurrency; default min(5, max_concurrency) */
    int handler_timeout_ms;  /* 100..900000; default 30000 */
    int visibility_timeout;  /* seconds of each lease, 1..43200; -1 (default): the queue's */
    int max_extension_s;     /* 0..43200: leases are extended up to this long after a
                              * message was received (0: never extended); default 900 */
    int backoff_base_ms;     /* 0..43200000: the first retry's delay (0: retry at once);
                              * default 1000 */
    int backoff_max_ms;      /* base..43200000: the longest retry delay; default 300000 */
    int heartbeat_ms;        /* 100..60000; default 1000 */
    int liveness;            /* 1..100 heartbeats missed before a session is dead; default 3 */
    int drain_timeout_ms;    /* 0..3600000: how long a drain waits for running batches before
                              * it releases their messages; -1 (default): handler_timeout_ms */
    size_t max_batch_bytes;  /* a batch closes at this many bytes of bodies; default 6 MiB
                              * (Lambda's payload limit; a single larger message goes alone) */
    const char *name;        /* the session's name in `kyu workers`; NULL: host:pid */
    int client_timeout_ms;   /* bound of each request; default 5000 */
    /* Where log lines go (one line, no newline); NULL: stderr with a UTC time stamp */
    void (*log)(void *arg, const char *line);
    void *log_arg;
    /* Event filtering (Lambda's FilterCriteria): when set, each pushed message is first
     * given to filter (on the session's thread: quick, no blocking); a message it rejects
     * never reaches a batch: it is deleted, as Lambda drops it, or with filter_keep released
     * at once (visibility 0) for other consumers (each release counts a receive toward the
     * queue's maxReceiveCount, and the broker may push it to this consumer again). */
    bool (*filter)(const kyu_message_t *msg, void *arg);
    void *filter_arg;
    bool filter_keep;
} kyu_consumer_opts_t;

/* Default options (see the fields); queue NULL. */
kyu_consumer_opts_t kyu_consumer_opts_default(void);

/* Checks the options (err says which is out of range), connects to a broker of the
 * endpoint list and checks that the queue exists (learning its visibility timeout), and
 * starts the handler pool. NULL with err filled on any failure. */
kyu_consumer_t *kyu_consumer_new(const char *endpoints, const kyu_consumer_opts_t *opts,
                                 kyu_batch_handler_fn *handler, void *arg, kyu_err_t *err);
/* Runs the session until the consumer is drained (KYU_OK), or a fatal error: the queue was
 * deleted (NO_SUCH_QUEUE), or no broker could be reached within a minute of trying. */
kyu_code_t kyu_consumer_run(kyu_consumer_t *self, kyu_err_t *err);
/* Asks the consumer to drain: no new batches; messages not started are released at once;
 * running batches finish, or are released at the drain deadline; then the session closes and
 * kyu_consumer_run returns. Async-signal-safe. */
void kyu_consumer_drain(kyu_consumer_t *self);
/* Waits for the pool's threads (handlers still running are cancelled first) and frees. */
void kyu_consumer_destroy(kyu_consumer_t **self_p);

/* What the consumer has done so far (read from any thread). */
typedef struct {
    uint64_t batches, messages, succeeded, failed, deleted, released, extended;
    uint64_t stale;    /* results not applied: the lease was lost */
    uint64_t timeouts; /* batches past their handler timeout */
    uint64_t sessions; /* sessions opened */
    uint64_t filtered; /* messages the filter rejected (deleted, or with filter_keep released) */
    int concurrency;   /* concurrent batches allowed now */
} kyu_consumer_stats_t;
void kyu_consumer_stats(const kyu_consumer_t *self, kyu_consumer_stats_t *out);

/* The consumer's clock (monotonic, ms): batch deadlines are on it. */
int64_t kyu_consumer_now_ms(void);

#endif
