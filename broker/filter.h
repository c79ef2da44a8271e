/* filter: SNS subscription filter policies (FilterPolicy, FilterPolicyScope), pure functions.
 *
 * A policy is a JSON object whose keys name message attributes (scope attributes) or the
 * body's JSON fields (scope body, where an object value nests); each key's value is a list of
 * conditions that OR (a string or number: exact match; {"prefix"}, {"suffix"},
 * {"equals-ignore-case"}, {"anything-but"}, {"numeric"}, {"exists"}, {"cidr"}), the keys
 * AND, and "$or": [policy, ...] matches when any of its policies does. kyu_filter_compile
 * checks a policy once (SNS's syntax and limits) and keeps it; kyu_filter_match decides. */
#ifndef KYU_FILTER_H
#define KYU_FILTER_H

#include "kyu_err.h"
#include "protocol.h"

#include <stdbool.h>
#include <stddef.h>

/* SNS's limits: the policy's bytes, its keys (leaves), its value combinations. */
#define KYU_FILTER_POLICY_MAX (256 * 1024)
#define KYU_FILTER_KEYS_MAX 5
#define KYU_FILTER_COMBINATIONS_MAX 150
#define KYU_FILTER_DEPTH_MAX 16

typedef enum { KYU_FILTER_SCOPE_ATTRIBUTES = 0, KYU_FILTER_SCOPE_BODY = 1 } kyu_filter_scope_t;

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
/* "attributes" / "body"; the scope of a name ("MessageAttributes", "MessageBody" too), or -1. */
const char *kyu_filter_scope_name(kyu_filter_scope_t scope);
int kyu_filter_scope_parse(const char *name);

#endif
