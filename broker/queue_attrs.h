/* queue_attrs: a queue's attributes beyond VisibilityTimeout, MaximumMessageSize and
 * DelaySeconds (kyu_queue_ext_t, proto/protocol.h): MessageRetentionPeriod,
 * ReceiveMessageWaitTimeSeconds, RedrivePolicy, RedriveAllowPolicy, tags and the FIFO
 * attributes. Their ranges
 * (SQS's), their defaults, and their one encoding, a msgpack map that holds the attributes
 * given (a CREATE_QUEUE or SET_QUEUE_ATTRIBUTES command's, command.h) or those not at their
 * defaults (the tail of a queue record, sm.c's key layout):
 *   {"mrp": seconds, "rwt": seconds, "rdp": [] | [dead-letter queue, maxReceiveCount],
 *    "rap": [permission (kyu_redrive_allow_t), [source queue, ...]], "tags": {key: value},
 *    "fifo": FifoQueue, "cbd": ContentBasedDeduplication (bools), "dsc": DeduplicationScope,
 *    "ftl": FifoThroughputLimit (KYU_DEDUP_SCOPE_*, KYU_THROUGHPUT_*)}
 * Which attributes are given is a set of the request bits KYU_F_RETENTION, ..., KYU_F_TAGS.
 */
#ifndef KYU_QUEUE_ATTRS_H
#define KYU_QUEUE_ATTRS_H

#include "protocol.h"

/* Every attribute at its default: retention 4 days, no wait, no RedrivePolicy, allowAll,
 * no tags, a standard queue (not FIFO). */
void kyu_qattrs_defaults(kyu_queue_ext_t *x);
/* The attributes of x that are not at their defaults. */
uint64_t kyu_qattrs_nondefault(const kyu_queue_ext_t *x);
/* Checks the attributes of x that set names against SQS's ranges and limits; the error
 * names the attribute and its range. */
kyu_code_t kyu_qattrs_check(const kyu_queue_ext_t *x, uint64_t set, kyu_err_t *err);
/* Packs the attributes of x that set names as the map above. */
void kyu_qattrs_encode(const kyu_queue_ext_t *x, uint64_t set, msgpack_packer *pk);
/* Reads such a map into x (the attributes it holds; the others untouched) and *set: false
 * when it is malformed or an attribute is out of range (kyu_qattrs_check). */
bool kyu_qattrs_decode_object(const msgpack_object *o, kyu_queue_ext_t *x, uint64_t *set);
bool kyu_qattrs_decode(const void *buf, size_t len, kyu_queue_ext_t *x, uint64_t *set);
/* Adds tags to x's (a key it has takes the new value): false when more than KYU_TAGS_MAX
 * would result (x unchanged). */
bool kyu_qattrs_merge_tags(kyu_queue_ext_t *x, const kyu_tags_t *tags);
/* True when the tag sets hold the same keys with the same values, in any order. */
bool kyu_qattrs_tags_equal(const kyu_tags_t *a, const kyu_tags_t *b);
/* The name of a redrive permission: allowAll, denyAll, byQueue. */
const char *kyu_qattrs_allow_name(uint32_t allow);

#endif
