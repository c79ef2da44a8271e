/* filter: the one filter engine, pure functions: SNS subscription filter policies
 * (FilterPolicy, FilterPolicyScope), which the broker evaluates on each publish, and Lambda's
 * event filtering patterns (FilterCriteria), which kyu-worker evaluates on each message.
 *
 * A policy is a JSON object whose keys name message attributes (scope attributes) or the
 * body's JSON fields (scope body, where an object value nests); each key's value is a list of
 * conditions that OR (a string or number: exact match; {"prefix"}, {"suffix"},
 * {"equals-ignore-case"}, {"anything-but"}, {"numeric"}, {"exists"}, {"cidr"}), the keys
 * AND, and "$or": [policy, ...] matches when any of its policies does. kyu_filter_compile
 * checks a policy once (SNS's syntax and limits) and keeps it; kyu_filter_match decides.
 *
 * A Lambda pattern (scope KYU_FILTER_SCOPE_EVENT) has the same syntax over a JSON document,
 * the message as Lambda sees it ({"body": ..., "attributes": {...}, "messageAttributes":
 * {...}}, worker/event.h): nested keys, null, at most KYU_FILTER_PATTERN_MAX bytes, and
 * neither SNS's key nor its combination limit (Lambda has none); kyu_filter_match_json
 * decides. */
#ifndef KYU_FILTER_H
#define KYU_FILTER_H

#include "kyu_err.h"
#include "protocol.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* SNS's limits: the policy's bytes, its keys (leaves), its value combinations. */
#define KYU_FILTER_POLICY_MAX (256 * 1024)
#define KYU_FILTER_KEYS_MAX 5
#define KYU_FILTER_COMBINATIONS_MAX 150
#define KYU_FILTER_DEPTH_MAX 16
/* Lambda's: a pattern's characters, the patterns of an event source mapping (ORed) */
#define KYU_FILTER_PATTERN_MAX 4096
#define KYU_FILTER_PATTERNS_MAX 5

typedef enum {
    KYU_FILTER_SCOPE_ATTRIBUTES = 0,
    KYU_FILTER_SCOPE_BODY = 1,
    KYU_FILTER_SCOPE_EVENT = 2, /* a Lambda pattern over a document (not a subscription's) */
} kyu_filter_scope_t;

typedef struct kyu_filter kyu_filter_t;

/* Checks the policy's len bytes of JSON for scope; on success *out is the compiled policy
 * (the caller destroys it) and, when canonical is not NULL, *canonical its compact JSON with
 * sorted keys (malloc'd). A bad policy: KYU_ERR_INVALID_ARGUMENT naming the problem. */
kyu_code_t kyu_filter_compile(const char *json, size_t len, kyu_filter_scope_t scope,
                              kyu_filter_t **out, char **canonical, kyu_err_t *err);
void kyu_filter_destroy(kyu_filter_t **self);
/* True when the message (its attributes or its body, by the policy's scope) matches. */
bool kyu_filter_match(const kyu_filter_t *self, const kyu_msg_attrs_t *attrs, const void *body,
                      size_t body_len);
/* True when the document (a JSON object) matches; a policy of any scope reads it as the body
 * scope does (an attributes-scope policy is kept to flat keys). */
bool kyu_filter_match_json(const kyu_filter_t *self, const json_t *doc);
/* "attributes" / "body"; the scope of a name ("MessageAttributes", "MessageBody" too), or -1. */
const char *kyu_filter_scope_name(kyu_filter_scope_t scope);
int kyu_filter_scope_parse(const char *name);

#endif
