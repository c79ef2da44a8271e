/* topics: libkyu's calls for SNS-style topics (kyu.h, "Topics"). */
#include "kyu_internal.h"

#include <stdlib.h>
#include <string.h>

static kyu_code_t set_topic(kyu_request_t *req, const char *topic, kyu_err_t *err)
{
    size_t len = topic ? strlen(topic) : 0;
    if (!kyu_topic_name_valid(topic ? topic : "", len))
        return kyu_err_set(err, KYU_ERR_INVALID_NAME,
                           "topic names are 1 to %d characters of letters, digits, - and _ (a "
                           "FIFO topic's ending in .fifo)",
                           KYU_TOPIC_NAME_MAX);
    memcpy(req->topic, topic, len + 1);
    req->fields |= KYU_F_TOPIC;
    return KYU_OK;
}

static kyu_code_t call(kyu_client_t *self, const kyu_request_t *req, kyu_reply_t *rep,
                       kyu_err_t *err)
{
    kyu_reply_init(rep);
    return kyu_client_call(self, req, NULL, NULL, 0, rep, NULL, err);
}

static kyu_code_t call_topic(kyu_client_t *self, kyu_op_t op, const char *topic, kyu_err_t *err)
{
    kyu_request_t req = {.op = op};
    kyu_code_t rc = set_topic(&req, topic, err);
    if (rc != KYU_OK)
        return rc;
    kyu_reply_t rep;
    rc = call(self, &req, &rep, err);
    kyu_reply_reset(&rep);
    return rc;
}

kyu_code_t kyu_client_create_topic(kyu_client_t *self, const char *topic, kyu_err_t *err)
{
    return call_topic(self, KYU_OP_CREATE_TOPIC, topic, err);
}

kyu_code_t kyu_client_create_topic_with(kyu_client_t *self, const char *topic, bool fifo,
                                        bool content_based_dedup, kyu_err_t *err)
{
    kyu_request_t req = {.op = KYU_OP_CREATE_TOPIC};
    kyu_code_t rc = set_topic(&req, topic, err);
    if (rc != KYU_OK)
        return rc;
    if (fifo) {
        req.fields |= KYU_F_FIFO;
        req.qx.fifo = true;
    }
    if (content_based_dedup) {
        req.fields |= KYU_F_CBD;
        req.qx.cbd = true;
    }
    kyu_reply_t rep;
    rc = call(self, &req, &rep, err);
    kyu_reply_reset(&rep);
    return rc;
}

kyu_code_t kyu_client_delete_topic(kyu_client_t *self, const char *topic, kyu_err_t *err)
{
    return call_topic(self, KYU_OP_DELETE_TOPIC, topic, err);
}

kyu_code_t kyu_client_list_topics(kyu_client_t *self, char ***names_p, size_t *n, kyu_err_t *err)
{
    *names_p = NULL;
    *n = 0;
    kyu_request_t req = {.op = KYU_OP_LIST_TOPICS};
    kyu_reply_t rep;
    kyu_code_t rc = call(self, &req, &rep, err);
    if (rc == KYU_OK && rep.n_topics > 0)
        rc = kyu_names_pack(rep.topics[0], sizeof rep.topics[0], rep.n_topics, names_p, n, err);
    kyu_reply_reset(&rep);
    return rc;
}

kyu_code_t kyu_client_subscribe(kyu_client_t *self, const char *topic, const char *queue, bool raw,
                                char sub_id[KYU_SUB_ID_LEN + 1], kyu_err_t *err)
{
    return kyu_client_subscribe_filter(self, topic, queue, raw, NULL, false, sub_id, err);
}

kyu_code_t kyu_client_subscribe_filter(kyu_client_t *self, const char *topic, const char *queue,
                                       bool raw, const char *policy, bool body_scope,
                                       char sub_id[KYU_SUB_ID_LEN + 1], kyu_err_t *err)
{
    kyu_request_t req = {.op = KYU_OP_SUBSCRIBE};
    kyu_code_t rc = set_topic(&req, topic, err);
    if (rc == KYU_OK)
        rc = kyu_client_set_queue(&req, queue, err);
    if (rc != KYU_OK)
        return rc;
    if (raw)
        req.fields |= KYU_F_RAW;
    const void *bodies[1] = {policy};
    size_t lens[1] = {policy ? strlen(policy) : 0};
    if (policy) {
        req.fields |= KYU_F_FILTER;
        if (body_scope) {
            req.fields |= KYU_F_FILTER_SCOPE;
            req.filter_scope = 1;
        }
    }
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    rc = kyu_client_call(self, &req, bodies, lens, policy ? 1 : 0, &rep, NULL, err);
    if (rc == KYU_OK && rep.n_ids != 1)
        rc = kyu_err_set(err, KYU_ERR_MALFORMED, "subscribe's reply has no subscription id");
    if (rc == KYU_OK && sub_id)
        snprintf(sub_id, KYU_SUB_ID_LEN + 1, "%.*s", KYU_SUB_ID_LEN, rep.ids[0]);
    kyu_reply_reset(&rep);
    return rc;
}

kyu_code_t kyu_client_unsubscribe(kyu_client_t *self, const char *sub_id, kyu_err_t *err)
{
    kyu_request_t req = {.op = KYU_OP_UNSUBSCRIBE, .fields = KYU_F_SUB_ID};
    if (!sub_id || strlen(sub_id) != KYU_SUB_ID_LEN)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "a subscription id is %d characters (a UUID)", KYU_SUB_ID_LEN);
    memcpy(req.sub_id, sub_id, KYU_SUB_ID_LEN + 1);
    kyu_reply_t rep;
    kyu_code_t rc = call(self, &req, &rep, err);
    kyu_reply_reset(&rep);
    return rc;
}

kyu_code_t kyu_client_list_subscriptions(kyu_client_t *self, const char *topic,
                                         kyu_sub_info_t **subs_p, size_t *n, kyu_err_t *err)
{
    *subs_p = NULL;
    *n = 0;
    kyu_request_t req = {.op = KYU_OP_LIST_SUBSCRIPTIONS};
    kyu_code_t rc = topic ? set_topic(&req, topic, err) : KYU_OK;
    if (rc != KYU_OK)
        return rc;
    kyu_reply_t rep;
    rc = call(self, &req, &rep, err);
    if (rc == KYU_OK && rep.n_subs > 0) {
        *subs_p = rep.subs; /* the reply's heap array becomes the caller's */
        *n = rep.n_subs;
        rep.subs = NULL;
    }
    kyu_reply_reset(&rep);
    return rc;
}

static kyu_code_t set_sub_id(kyu_request_t *req, const char *sub_id, kyu_err_t *err)
{
    if (!sub_id || strlen(sub_id) != KYU_SUB_ID_LEN)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "a subscription id is %d characters (a UUID)", KYU_SUB_ID_LEN);
    memcpy(req->sub_id, sub_id, KYU_SUB_ID_LEN + 1);
    req->fields |= KYU_F_SUB_ID;
    return KYU_OK;
}

kyu_code_t kyu_client_set_subscription_attributes(kyu_client_t *self, const char *sub_id,
                                                  const kyu_sub_change_t *change, kyu_err_t *err)
{
    kyu_request_t req = {.op = KYU_OP_SET_SUBSCRIPTION_ATTRIBUTES};
    kyu_code_t rc = set_sub_id(&req, sub_id, err);
    if (rc != KYU_OK)
        return rc;
    if (change->raw >= 0) {
        req.fields |= KYU_F_RAW_DELIVERY;
        req.raw_delivery = change->raw != 0;
    }
    if (change->policy)
        req.fields |= KYU_F_FILTER;
    if (change->no_policy)
        req.fields |= KYU_F_NO_FILTER;
    if (change->body_scope >= 0) {
        req.fields |= KYU_F_FILTER_SCOPE;
        req.filter_scope = change->body_scope ? 1 : 0;
    }
    const void *bodies[1] = {change->policy};
    size_t lens[1] = {change->policy ? strlen(change->policy) : 0};
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    rc = kyu_client_call(self, &req, bodies, lens, change->policy ? 1 : 0, &rep, NULL, err);
    kyu_reply_reset(&rep);
    return rc;
}

kyu_code_t kyu_client_get_subscription_attributes(kyu_client_t *self, const char *sub_id,
                                                  kyu_sub_info_t **sub, kyu_err_t *err)
{
    *sub = NULL;
    kyu_request_t req = {.op = KYU_OP_GET_SUBSCRIPTION_ATTRIBUTES};
    kyu_code_t rc = set_sub_id(&req, sub_id, err);
    if (rc != KYU_OK)
        return rc;
    kyu_reply_t rep;
    rc = call(self, &req, &rep, err);
    if (rc == KYU_OK && rep.n_subs != 1)
        rc = kyu_err_set(err, KYU_ERR_MALFORMED, "the reply has no subscription");
    if (rc == KYU_OK) {
        *sub = rep.subs; /* the reply's heap entry (and its policy) becomes the caller's */
        rep.subs = NULL;
    }
    kyu_reply_reset(&rep);
    return rc;
}

/* A FIFO id of a publish (NULL: none) into out: 1..128 of ASCII letters, digits, punctuation */
static kyu_code_t set_fifo_id(const char *id, const char *what, char *out, kyu_err_t *err)
{
    out[0] = '\0';
    if (!id)
        return KYU_OK;
    if (!kyu_fifo_id_valid(id, strlen(id), KYU_GROUP_ID_MAX))
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "a %s is 1 to %d characters of ASCII letters, digits and punctuation",
                           what, KYU_GROUP_ID_MAX);
    memcpy(out, id, strlen(id) + 1);
    return KYU_OK;
}

/* The PUBLISH request: the topic, a FIFO topic's group and deduplication ids or a standard
 * topic's group (NULL: none; the broker judges them against the topic),
 * and the attributes when there are some (checked here). */
static kyu_code_t publish_request(kyu_request_t *req, const char *topic,
                                  const kyu_msg_attrs_t *attrs, const char *group_id,
                                  const char *dedup_id, kyu_err_t *err)
{
    req->op = KYU_OP_PUBLISH;
    kyu_code_t rc = set_topic(req, topic, err);
    if (rc == KYU_OK && (group_id || dedup_id)) {
        if ((rc = set_fifo_id(group_id, "MessageGroupId", req->group_ids[0], err)) != KYU_OK ||
            (rc = set_fifo_id(dedup_id, "MessageDeduplicationId", req->dedup_ids[0], err)) !=
                KYU_OK)
            return rc;
        req->fields |= KYU_F_GROUPS;
        req->n_group_msgs = 1;
    }
    if (rc != KYU_OK || !attrs || !attrs->n)
        return rc;
    if ((rc = kyu_msg_attrs_check(attrs, err)) != KYU_OK)
        return rc;
    req->fields |= KYU_F_MSG_ATTRS;
    req->n_attr_msgs = 1;
    req->attrs[0] = *attrs;
    return KYU_OK;
}

kyu_code_t kyu_client_publish(kyu_client_t *self, const char *topic, const void *body, size_t len,
                              const kyu_msg_attrs_t *attrs, char message_id[KYU_MESSAGE_ID_MAX + 1],
                              kyu_err_t *err)
{
    kyu_sent_message_t out;
    kyu_code_t rc = kyu_client_publish_fifo(self, topic, body, len, attrs, NULL, NULL, &out, err);
    if (rc == KYU_OK && message_id)
        memcpy(message_id, out.message_id, KYU_MESSAGE_ID_MAX + 1);
    return rc;
}

kyu_code_t kyu_client_publish_fifo(kyu_client_t *self, const char *topic, const void *body,
                                   size_t len, const kyu_msg_attrs_t *attrs, const char *group_id,
                                   const char *dedup_id, kyu_sent_message_t *out, kyu_err_t *err)
{
    kyu_request_t req = {0};
    memset(out, 0, sizeof *out);
    kyu_code_t rc = publish_request(&req, topic, attrs, group_id, dedup_id, err);
    if (rc != KYU_OK)
        return rc;
    const void *bodies[] = {body};
    size_t lens[] = {len};
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    rc = kyu_client_call(self, &req, bodies, lens, 1, &rep, NULL, err);
    if (rc == KYU_OK && rep.n_ids != 1)
        rc = kyu_err_set(err, KYU_ERR_MALFORMED, "publish's reply has no message id");
    if (rc == KYU_OK) {
        snprintf(out->message_id, sizeof out->message_id, "%s", rep.ids[0]);
        out->sequence = rep.sequences[0];
    }
    kyu_reply_reset(&rep);
    return rc;
}

kyu_code_t kyu_client_publish_async(kyu_client_t *self, const char *topic, const void *body,
                                    size_t len, const kyu_msg_attrs_t *attrs, uint64_t *key,
                                    uint64_t *req_id, kyu_err_t *err)
{
    return kyu_client_publish_fifo_async(self, topic, body, len, attrs, NULL, NULL, key, req_id,
                                         err);
}

kyu_code_t kyu_client_publish_fifo_async(kyu_client_t *self, const char *topic, const void *body,
                                         size_t len, const kyu_msg_attrs_t *attrs,
                                         const char *group_id, const char *dedup_id, uint64_t *key,
                                         uint64_t *req_id, kyu_err_t *err)
{
    kyu_request_t req = {0};
    kyu_code_t rc = publish_request(&req, topic, attrs, group_id, dedup_id, err);
    if (rc != KYU_OK)
        return rc;
    if (key)
        kyu_client_use_key(self, &req, key);
    const void *bodies[] = {body};
    size_t lens[] = {len};
    return kyu_client_request_async(self, &req, bodies, lens, 1, req_id, err);
}

/* A PUBLISH batch's request (checked as the broker would refuse it whole) and its bodies. */
static kyu_code_t publish_batch_request(kyu_request_t *req, const char *topic,
                                        const kyu_batch_entry_t *e, size_t n,
                                        const void *bodies[KYU_BATCH_MAX],
                                        size_t lens[KYU_BATCH_MAX], kyu_err_t *err)
{
    req->op = KYU_OP_PUBLISH;
    if (n == 0)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "EmptyBatchRequest: a batch has 1 to %d entries", KYU_BATCH_MAX);
    if (n > KYU_BATCH_MAX)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "TooManyEntriesInBatchRequest: a batch has at most %d entries, not %zu",
                           KYU_BATCH_MAX, n);
    kyu_code_t rc = set_topic(req, topic, err);
    if (rc != KYU_OK)
        return rc;
    kyu_batch_entry_t copy[KYU_BATCH_MAX];
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        copy[i] = e[i];
        copy[i].delay_seconds = -1; /* topics have no delays */
        bodies[i] = e[i].body;
        lens[i] = e[i].len;
        total += e[i].len + (e[i].attrs ? kyu_msg_attrs_size(e[i].attrs) : 0);
    }
    if (total > KYU_PUBLISH_BATCH_BYTES_MAX)
        return kyu_err_set(err, KYU_ERR_TOO_LARGE,
                           "BatchRequestTooLong: the batch's %zu entries have %zu bytes together "
                           "(bodies and attributes); a batch takes at most %d",
                           n, total, KYU_PUBLISH_BATCH_BYTES_MAX);
    return kyu_client_batch_request(req, copy, n, err);
}

kyu_code_t kyu_client_publish_batch(kyu_client_t *self, const char *topic,
                                    const kyu_batch_entry_t *entries, size_t n,
                                    kyu_batch_result_t *out, kyu_err_t *err)
{
    kyu_request_t req = {0};
    const void *bodies[KYU_BATCH_MAX];
    size_t lens[KYU_BATCH_MAX];
    kyu_err_t e = {0};
    kyu_code_t rc = publish_batch_request(&req, topic, entries, n, bodies, lens, &e);
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    if (rc == KYU_OK)
        rc = kyu_client_call(self, &req, bodies, lens, n, &rep, NULL, &e);
    if (rc == KYU_OK &&
        (rep.n_ids != n || (rep.n_results && (rep.n_results != n || rep.n_errors != n))))
        rc = kyu_err_set(&e, KYU_ERR_MALFORMED,
                         "PUBLISH batch reply has %zu ids and %zu results for %zu entries",
                         rep.n_ids, rep.n_results, n);
    /* no MD5s for a publish (SNS's PublishBatch gives none): they stay "" */
    return kyu_client_batch_results(rc, &e, &rep, entries, n, false, out, err);
}

kyu_code_t kyu_client_publish_batch_async(kyu_client_t *self, const char *topic,
                                          const kyu_batch_entry_t *entries, size_t n, uint64_t *key,
                                          uint64_t *req_id, kyu_err_t *err)
{
    kyu_request_t req = {0};
    const void *bodies[KYU_BATCH_MAX];
    size_t lens[KYU_BATCH_MAX];
    kyu_code_t rc = publish_batch_request(&req, topic, entries, n, bodies, lens, err);
    if (rc != KYU_OK)
        return rc;
    if (key)
        kyu_client_use_key(self, &req, key);
    return kyu_client_request_async(self, &req, bodies, lens, n, req_id, err);
}
