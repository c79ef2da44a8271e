/* sync: libkyu's synchronous calls, one per op, over kyu_client_call (request, wait for
 * its reply, fail over on TIMEOUT or NOT_LEADER). */
#include "kyu_internal.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RETRY_MAX 64
#define RETRY_PAUSE_MS 100
#define BUSY_PAUSE_MS 50
#define ATTEMPT_MIN_MS 1000 /* an attempt waits a third of the timeout, at least this */

void kyu_client_pause_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* Codes after which another endpoint may answer: the request may or may not have been
 * applied (TIMEOUT) or surely was not (NOT_LEADER, CONNECTION). READ_ONLY too when there is
 * another endpoint: a leader whose disk is full stops replicating and the others elect a
 * new one (alone, the client says so at once). BUSY is asked again of the same node (see
 * retry_busy). */
static bool retryable(const kyu_client_t *self, kyu_code_t rc)
{
    return rc == KYU_ERR_TIMEOUT || rc == KYU_ERR_NOT_LEADER || rc == KYU_ERR_CONNECTION ||
           (rc == KYU_ERR_READ_ONLY && self->n_endpoints > 1);
}

/* BUSY from a leader that refuses proposals for a moment (it is handing leadership over, as
 * every step of a rolling restart makes it, or too many entries wait for a quorum), or a
 * long poll past its bounds: the same node is asked again after BUSY_PAUSE_MS, within the
 * call's timeout, with the same request key. An admin op's BUSY (another membership change
 * runs) is its answer. */
static bool retry_busy(const kyu_op_info_t *info, kyu_code_t rc)
{
    return rc == KYU_ERR_BUSY && !(info && (info->flags & KYU_OPF_ADMIN));
}

kyu_code_t kyu_client_call(kyu_client_t *self, const kyu_request_t *req, const void *const *bodies,
                           const size_t *lens, size_t n, kyu_reply_t *rep, kyu_message_t **msgs,
                           kyu_err_t *err)
{
    char leader[KYU_ENDPOINT_MAX] = "";
    kyu_code_t rc = KYU_ERR_CONNECTION;
    /* One key for every attempt: a SEND retried after a lost reply is applied once. Not the
     * tags' 20 KB unless there are any (as kyu_client_request_async). */
    kyu_request_t keyed;
    memcpy(&keyed, req, req->qx.tags.n ? sizeof keyed : offsetof(kyu_request_t, qx.tags.keys));
    kyu_client_key_request(self, &keyed);
    req = &keyed;
    /* Bounded: at most RETRY_MAX attempts and, once the first has failed, the client's timeout
     * to find a leader (an election takes one to two seconds). */
    /* A long poll (RECEIVE with "wt") is held by the broker up to its wait: every attempt
     * waits that much longer for its reply, and a retry (at a new leader) asks only for what
     * is left of the wait. */
    int64_t wait_end = kyu_client_now_ms() + kyu_client_request_wait_ms(req);
    int64_t deadline = wait_end + self->opts.timeout_ms;
    /* One attempt does not take the whole timeout: a leader killed with the request in
     * flight never answers (nothing tells the client it died), and the call must still have
     * time to find the next one. Resending is safe: writes carry their request key, reads
     * and CREATE_QUEUE are idempotent. Admin ops (membership changes wait for a learner to
     * catch up) keep the whole timeout. */
    const kyu_op_info_t *info = kyu_op_info(req->op);
    int per_attempt =
        self->opts.timeout_ms / 3 > ATTEMPT_MIN_MS ? self->opts.timeout_ms / 3 : ATTEMPT_MIN_MS;
    if ((info && (info->flags & KYU_OPF_ADMIN)) || per_attempt > self->opts.timeout_ms)
        per_attempt = self->opts.timeout_ms;
    for (int attempt = 0; attempt < RETRY_MAX; attempt++) {
        if (attempt > 0) {
            if (kyu_client_now_ms() >= deadline)
                break;
            if (rc == KYU_ERR_BUSY) {
                kyu_client_pause_ms(BUSY_PAUSE_MS); /* the same node: it is there */
            } else {
                if ((!leader[0] && rc == KYU_ERR_NOT_LEADER && attempt >= (int)self->n_endpoints) ||
                    rc == KYU_ERR_READ_ONLY)
                    kyu_client_pause_ms(RETRY_PAUSE_MS); /* no leader yet, or one that stalls */
                kyu_err_t ferr = {0};
                if (kyu_client_failover(self, leader, &ferr) != KYU_OK) {
                    leader[0] = '\0';
                    continue; /* keep the request's own error in err */
                }
            }
        }
        int64_t waiting = wait_end - kyu_client_now_ms();
        if (keyed.fields & KYU_F_WAIT)
            keyed.wait = waiting > 0 ? (uint32_t)(waiting / 1000) : 0;
        int64_t left = deadline - kyu_client_now_ms() - (waiting > 0 ? waiting : 0);
        int wait = attempt == 0 || left > per_attempt ? per_attempt : left > 1 ? (int)left : 1;
        wait += kyu_client_request_wait_ms(req);
        rc = kyu_client_call_once_within(self, req, bodies, lens, n, rep, msgs, wait, err);
        if (!retryable(self, rc) && !retry_busy(info, rc))
            return rc;
        snprintf(leader, sizeof leader, "%s", rc == KYU_ERR_NOT_LEADER ? rep->leader : "");
    }
    if (rc == KYU_ERR_NOT_LEADER && err) {
        char why[KYU_ERR_MSG_MAX]; /* err->msg cannot be both source and destination */
        snprintf(why, sizeof why, "%s", err->msg);
        kyu_err_set(err, KYU_ERR_NOT_LEADER, "no leader found within %d ms: %s",
                    self->opts.timeout_ms, why);
    }
    return rc;
}

/* A call whose reply carries nothing we keep. */
static kyu_code_t call_simple(kyu_client_t *c, const kyu_request_t *req, kyu_err_t *err)
{
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    kyu_code_t rc = kyu_client_call(c, req, NULL, NULL, 0, &rep, NULL, err);
    kyu_reply_reset(&rep);
    return rc;
}

static kyu_code_t set_vt(kyu_request_t *req, int vt, bool optional, kyu_err_t *err)
{
    if (vt == -1 && optional)
        return KYU_OK;
    if (vt < 0 || vt > KYU_VISIBILITY_MAX)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "VisibilityTimeout must be 0 to %d seconds, not %d", KYU_VISIBILITY_MAX,
                           vt);
    req->vt = (uint32_t)vt;
    req->fields |= KYU_F_VT;
    return KYU_OK;
}

kyu_code_t kyu_client_create_queue(kyu_client_t *self, const char *queue, int vt, kyu_err_t *err)
{
    kyu_queue_settings_t s;
    kyu_queue_settings_init(&s);
    s.visibility_timeout = vt;
    return kyu_client_create_queue_with(self, queue, &s, err);
}

void kyu_queue_settings_init(kyu_queue_settings_t *s)
{
    s->visibility_timeout = -1;
    s->max_message_size = -1;
    s->delay_seconds = -1;
    s->retention_seconds = -1;
    s->receive_wait_seconds = -1;
    s->dead_letter_queue = NULL;
    s->max_receive_count = -1;
    s->redrive_allow = -1;
    s->n_redrive_sources = 0;
    s->n_tags = 0;
    s->fifo = s->content_based_dedup = s->dedup_scope = s->throughput_limit = -1;
}

/* The FIFO attributes s sets (their ranges; the broker checks the rest: a .fifo name with
 * FifoQueue, the others only on FIFO queues). */
static kyu_code_t set_fifo_settings(kyu_request_t *req, const kyu_queue_settings_t *s,
                                    kyu_err_t *err)
{
    const struct {
        int v, max;
        uint64_t bit;
        const char *name;
    } f[] = {
        {s->fifo, 1, KYU_F_FIFO, "FifoQueue"},
        {s->content_based_dedup, 1, KYU_F_CBD, "ContentBasedDeduplication"},
        {s->dedup_scope, KYU_DEDUP_SCOPE_GROUP, KYU_F_DEDUP_SCOPE, "DeduplicationScope"},
        {s->throughput_limit, KYU_THROUGHPUT_PER_GROUP, KYU_F_THROUGHPUT, "FifoThroughputLimit"},
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        if (f[i].v == -1)
            continue;
        if (f[i].v < 0 || f[i].v > f[i].max)
            return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "%s must be 0 to %d, not %d",
                               f[i].name, f[i].max, f[i].v);
        req->fields |= f[i].bit;
    }
    req->qx.fifo = s->fifo == 1;
    req->qx.cbd = s->content_based_dedup == 1;
    req->qx.dedup_scope = s->dedup_scope > 0 ? (uint32_t)s->dedup_scope : 0;
    req->qx.throughput = s->throughput_limit > 0 ? (uint32_t)s->throughput_limit : 0;
    return KYU_OK;
}

static kyu_code_t copy_name(char *out, const char *name, const char *what, kyu_err_t *err)
{
    if (!kyu_queue_name_valid(name, strlen(name)))
        return kyu_err_set(err, KYU_ERR_INVALID_NAME,
                           "%s '%.80s': queue names are 1 to %d characters of letters, digits, "
                           "- and _ (a FIFO queue's ending in .fifo)",
                           what, name, KYU_NAME_MAX);
    snprintf(out, KYU_NAME_MAX + 1, "%s", name);
    return KYU_OK;
}

/* The request fields of the other attributes s sets (queue_attrs.h's ranges; the broker
 * checks them again, and RedrivePolicy against its queues). */
static kyu_code_t set_ext_settings(kyu_request_t *req, const kyu_queue_settings_t *s,
                                   kyu_err_t *err)
{
    kyu_queue_ext_t *x = &req->qx;
    if (set_fifo_settings(req, s, err) != KYU_OK)
        return err->code;
    if (s->retention_seconds != -1) {
        if (s->retention_seconds < KYU_RETENTION_MIN || s->retention_seconds > KYU_RETENTION_MAX)
            return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                               "MessageRetentionPeriod must be %d to %d seconds, not %d",
                               KYU_RETENTION_MIN, KYU_RETENTION_MAX, s->retention_seconds);
        x->retention = (uint32_t)s->retention_seconds;
        req->fields |= KYU_F_RETENTION;
    }
    if (s->receive_wait_seconds != -1) {
        if (s->receive_wait_seconds < 0 || s->receive_wait_seconds > KYU_RECEIVE_WAIT_MAX)
            return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                               "ReceiveMessageWaitTimeSeconds must be 0 to %d seconds, not %d",
                               KYU_RECEIVE_WAIT_MAX, s->receive_wait_seconds);
        x->receive_wait = (uint32_t)s->receive_wait_seconds;
        req->fields |= KYU_F_RECEIVE_WAIT;
    }
    if (s->dead_letter_queue) {
        int mrc = s->max_receive_count == -1 ? 10 : s->max_receive_count;
        x->dlq[0] = '\0';
        if (s->dead_letter_queue[0] &&
            copy_name(x->dlq, s->dead_letter_queue, "dead-letter queue", err) != KYU_OK)
            return err->code;
        if (s->dead_letter_queue[0] && (mrc < 1 || mrc > KYU_MAX_RECEIVE_COUNT_MAX))
            return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                               "RedrivePolicy maxReceiveCount must be 1 to %d, not %d",
                               KYU_MAX_RECEIVE_COUNT_MAX, mrc);
        x->max_receive_count = s->dead_letter_queue[0] ? (uint32_t)mrc : 0;
        req->fields |= KYU_F_REDRIVE;
    } else if (s->max_receive_count != -1) {
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "maxReceiveCount goes with a dead-letter queue (RedrivePolicy)");
    }
    if (s->redrive_allow != -1) {
        bool by_queue = s->redrive_allow == KYU_REDRIVE_BY_QUEUE;
        if (s->redrive_allow < 0 || s->redrive_allow > KYU_REDRIVE_BY_QUEUE ||
            (by_queue &&
             (s->n_redrive_sources < 1 || s->n_redrive_sources > KYU_REDRIVE_SOURCES_MAX)) ||
            (!by_queue && s->n_redrive_sources))
            return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                               "RedriveAllowPolicy is allowAll, denyAll, or byQueue with 1 to %d "
                               "source queues",
                               KYU_REDRIVE_SOURCES_MAX);
        x->allow = (uint32_t)s->redrive_allow;
        x->n_sources = s->n_redrive_sources;
        for (size_t i = 0; i < s->n_redrive_sources; i++)
            if (copy_name(x->sources[i], s->redrive_sources[i], "RedriveAllowPolicy source queue",
                          err) != KYU_OK)
                return err->code;
        req->fields |= KYU_F_REDRIVE_ALLOW;
    }
    if (s->n_tags == 0)
        return KYU_OK;
    if (s->n_tags > KYU_TAGS_MAX)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "a queue has at most %d tags, not %zu",
                           KYU_TAGS_MAX, s->n_tags);
    for (size_t i = 0; i < s->n_tags; i++) {
        size_t kl = strlen(s->tag_keys[i]), vl = strlen(s->tag_values[i]);
        if (kl < 1 || kl > KYU_TAG_KEY_MAX || vl > KYU_TAG_VALUE_MAX)
            return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                               "tag keys are 1 to %d bytes and values 0 to %d", KYU_TAG_KEY_MAX,
                               KYU_TAG_VALUE_MAX);
        for (size_t j = 0; j < i; j++)
            if (strcmp(s->tag_keys[i], s->tag_keys[j]) == 0)
                return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "tag key '%s' given twice",
                                   s->tag_keys[i]);
        memcpy(x->tags.keys[i], s->tag_keys[i], kl + 1);
        memcpy(x->tags.values[i], s->tag_values[i], vl + 1);
    }
    x->tags.n = s->n_tags;
    req->fields |= KYU_F_TAGS;
    return KYU_OK;
}

/* The request fields of the attributes s sets, checked against SQS's ranges (the broker
 * checks them again, and the size against its own limit). */
static kyu_code_t set_settings(kyu_request_t *req, const kyu_queue_settings_t *s, kyu_err_t *err)
{
    kyu_code_t rc = set_vt(req, s->visibility_timeout, true, err);
    if (rc != KYU_OK)
        return rc;
    if (s->delay_seconds != -1) {
        if (s->delay_seconds < 0 || s->delay_seconds > KYU_DELAY_MAX)
            return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                               "DelaySeconds must be 0 to %d seconds, not %d", KYU_DELAY_MAX,
                               s->delay_seconds);
        req->delay = (uint32_t)s->delay_seconds;
        req->fields |= KYU_F_DELAY;
    }
    if ((rc = set_ext_settings(req, s, err)) != KYU_OK)
        return rc;
    if (s->max_message_size == -1)
        return KYU_OK;
    if (s->max_message_size < KYU_MAX_SIZE_MIN || s->max_message_size > KYU_MAX_SIZE_MAX)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "MaximumMessageSize must be %d to %d bytes, not %d", KYU_MAX_SIZE_MIN,
                           KYU_MAX_SIZE_MAX, s->max_message_size);
    req->max_size = (uint32_t)s->max_message_size;
    req->fields |= KYU_F_MMS;
    return KYU_OK;
}

kyu_code_t kyu_client_create_queue_with(kyu_client_t *self, const char *queue,
                                        const kyu_queue_settings_t *s, kyu_err_t *err)
{
    kyu_request_t req = {.op = KYU_OP_CREATE_QUEUE};
    kyu_code_t rc = kyu_client_set_queue(&req, queue, err);
    if (rc == KYU_OK)
        rc = set_settings(&req, s, err);
    return rc == KYU_OK ? call_simple(self, &req, err) : rc;
}

kyu_code_t kyu_client_set_queue_attributes(kyu_client_t *self, const char *queue,
                                           const kyu_queue_settings_t *s, kyu_err_t *err)
{
    kyu_request_t req = {.op = KYU_OP_SET_QUEUE_ATTRIBUTES};
    kyu_code_t rc = kyu_client_set_queue(&req, queue, err);
    if (rc == KYU_OK)
        rc = set_settings(&req, s, err);
    if (rc == KYU_OK && !(req.fields & (KYU_F_VT | KYU_F_MMS | KYU_F_DELAY | KYU_F_QUEUE_EXT_)))
        rc = kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                         "set-queue-attributes needs at least one attribute");
    return rc == KYU_OK ? call_simple(self, &req, err) : rc;
}

kyu_code_t kyu_client_delete_queue(kyu_client_t *self, const char *queue, kyu_err_t *err)
{
    return kyu_client_delete_queue_with(self, queue, false, err);
}

kyu_code_t kyu_client_delete_queue_with(kyu_client_t *self, const char *queue, bool force,
                                        kyu_err_t *err)
{
    kyu_request_t req = {.op = KYU_OP_DELETE_QUEUE};
    kyu_code_t rc = kyu_client_set_queue(&req, queue, err);
    if (force)
        req.fields |= KYU_F_FORCE;
    return rc == KYU_OK ? call_simple(self, &req, err) : rc;
}

kyu_code_t kyu_client_untag_queue(kyu_client_t *self, const char *queue, const char *const *keys,
                                  size_t n, kyu_err_t *err)
{
    kyu_request_t req = {.op = KYU_OP_UNTAG_QUEUE, .fields = KYU_F_TAG_KEYS};
    kyu_code_t rc = kyu_client_set_queue(&req, queue, err);
    if (rc != KYU_OK)
        return rc;
    if (n < 1 || n > KYU_TAGS_MAX)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "give 1 to %d tag keys, not %zu",
                           KYU_TAGS_MAX, n);
    for (size_t i = 0; i < n; i++) {
        size_t kl = strlen(keys[i]);
        if (kl < 1 || kl > KYU_TAG_KEY_MAX)
            return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "tag keys are 1 to %d bytes",
                               KYU_TAG_KEY_MAX);
        if (!kyu_utf8_valid(keys[i], kl))
            return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "tag key is not valid UTF-8");
        for (size_t j = 0; j < i; j++)
            if (strcmp(keys[i], keys[j]) == 0)
                return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "tag key '%s' given twice",
                                   keys[i]);
        memcpy(req.qx.tags.keys[i], keys[i], kl + 1);
    }
    req.qx.tags.n = n;
    return call_simple(self, &req, err);
}

kyu_code_t kyu_client_purge_queue(kyu_client_t *self, const char *queue, kyu_err_t *err)
{
    kyu_request_t req = {.op = KYU_OP_PURGE_QUEUE};
    kyu_code_t rc = kyu_client_set_queue(&req, queue, err);
    return rc == KYU_OK ? call_simple(self, &req, err) : rc;
}

static kyu_code_t list_names(kyu_client_t *self, kyu_request_t *req, char ***names_p, size_t *n,
                             kyu_err_t *err);

kyu_code_t kyu_client_list_queues(kyu_client_t *self, char ***names_p, size_t *n, kyu_err_t *err)
{
    kyu_request_t req = {.op = KYU_OP_LIST_QUEUES};
    return list_names(self, &req, names_p, n, err);
}

kyu_code_t kyu_client_list_dead_letter_source_queues(kyu_client_t *self, const char *queue,
                                                     char ***names_p, size_t *n, kyu_err_t *err)
{
    kyu_request_t req = {.op = KYU_OP_LIST_DEAD_LETTER_SOURCE_QUEUES};
    *names_p = NULL;
    *n = 0;
    kyu_code_t rc = kyu_client_set_queue(&req, queue, err);
    return rc == KYU_OK ? list_names(self, &req, names_p, n, err) : rc;
}

/* LIST_QUEUES and LIST_DEAD_LETTER_SOURCE_QUEUES: the reply's names. */
static kyu_code_t list_names(kyu_client_t *self, kyu_request_t *req, char ***names_p, size_t *n,
                             kyu_err_t *err)
{
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    *names_p = NULL;
    *n = 0;
    kyu_code_t rc = kyu_client_call(self, req, NULL, NULL, 0, &rep, NULL, err);
    if (rc == KYU_OK && rep.n_queues > 0)
        rc = kyu_names_pack(rep.queues[0], sizeof rep.queues[0], rep.n_queues, names_p, n, err);
    kyu_reply_reset(&rep);
    return rc;
}

kyu_code_t kyu_names_pack(const char *names, size_t stride, size_t count, char ***names_p,
                          size_t *n, kyu_err_t *err)
{
    size_t total = count * sizeof(char *);
    for (size_t i = 0; i < count; i++)
        total += strlen(names + i * stride) + 1;
    char **out = malloc(total);
    if (!out)
        return kyu_err_set(err, KYU_ERR_INTERNAL, "out of memory");
    char *p = (char *)(out + count);
    for (size_t i = 0; i < count; i++) {
        size_t len = strlen(names + i * stride) + 1;
        memcpy(p, names + i * stride, len);
        out[i] = p;
        p += len;
    }
    *names_p = out;
    *n = count;
    return KYU_OK;
}

void kyu_queue_names_destroy(char ***names_p)
{
    if (names_p) {
        free(*names_p);
        *names_p = NULL;
    }
}

kyu_code_t kyu_client_get_queue_attributes(kyu_client_t *self, const char *queue,
                                           kyu_queue_attrs_t *attrs, kyu_err_t *err)
{
    return kyu_client_get_queue_attributes_with(self, queue, attrs, NULL, err);
}

kyu_code_t kyu_client_get_queue_attributes_with(kyu_client_t *self, const char *queue,
                                                kyu_queue_attrs_t *attrs, kyu_tags_t *tags,
                                                kyu_err_t *err)
{
    kyu_request_t req = {.op = KYU_OP_GET_QUEUE_ATTRIBUTES};
    kyu_code_t rc = kyu_client_set_queue(&req, queue, err);
    if (rc != KYU_OK)
        return rc;
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    rc = kyu_client_call(self, &req, NULL, NULL, 0, &rep, NULL, err);
    if (rc == KYU_OK) {
        *attrs = rep.attrs;
        attrs->n_tags = rep.tags ? rep.tags->n : 0;
        if (tags)
            tags->n = 0;
        if (tags && rep.tags)
            *tags = *rep.tags;
    }
    kyu_reply_reset(&rep);
    return rc;
}

kyu_code_t kyu_client_send(kyu_client_t *self, const char *queue, const void *const *bodies,
                           const size_t *lens, size_t n, char (*ids)[KYU_MESSAGE_ID_MAX + 1],
                           kyu_err_t *err)
{
    return kyu_client_send_with(self, queue, bodies, lens, n, NULL, ids, err);
}

kyu_code_t kyu_client_send_with(kyu_client_t *self, const char *queue, const void *const *bodies,
                                const size_t *lens, size_t n, const kyu_send_options_t *o,
                                char (*ids)[KYU_MESSAGE_ID_MAX + 1], kyu_err_t *err)
{
    kyu_sent_message_t out[KYU_BATCH_MAX];
    kyu_code_t rc = kyu_client_send_messages(self, queue, bodies, lens, n, o, out, err);
    for (size_t i = 0; rc == KYU_OK && ids && i < n; i++)
        memcpy(ids[i], out[i].message_id, sizeof ids[i]);
    return rc;
}

kyu_code_t kyu_client_send_messages(kyu_client_t *self, const char *queue,
                                    const void *const *bodies, const size_t *lens, size_t n,
                                    const kyu_send_options_t *o, kyu_sent_message_t *out,
                                    kyu_err_t *err)
{
    kyu_request_t req = {.op = KYU_OP_SEND};
    if (n < 1 || n > KYU_BATCH_MAX)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "send takes 1 to %d messages, not %zu",
                           KYU_BATCH_MAX, n);
    kyu_code_t rc = kyu_client_set_queue(&req, queue, err);
    if (rc != KYU_OK)
        return rc;
    rc = kyu_client_set_send_options(&req, o, n, err);
    if (rc != KYU_OK)
        return rc;
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    rc = kyu_client_call(self, &req, bodies, lens, n, &rep, NULL, err);
    for (size_t i = 0; rc == KYU_OK && out && i < n; i++) {
        memcpy(out[i].message_id, rep.ids[i], sizeof out[i].message_id);
        memcpy(out[i].md5_body, rep.md5_body[i], sizeof out[i].md5_body);
        memcpy(out[i].md5_attrs, rep.md5_attrs[i], sizeof out[i].md5_attrs);
        out[i].sequence = rep.sequences[i];
    }
    kyu_reply_reset(&rep);
    return rc;
}

/* The request of a batch: entry ids, delays and attributes only when some entry has them. */
kyu_code_t kyu_client_batch_request(kyu_request_t *req, const kyu_batch_entry_t *e, size_t n,
                                    kyu_err_t *err)
{
    req->fields |= KYU_F_ENTRY_IDS;
    req->n_entries = req->n_entry_delays = req->n_attr_msgs = n;
    for (size_t i = 0; i < n; i++) {
        size_t len = e[i].id ? strlen(e[i].id) : 0;
        if (!kyu_entry_id_valid(e[i].id ? e[i].id : "", len))
            return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                               "InvalidBatchEntryId: entry %zu: an entry id is 1 to %d "
                               "characters of letters, digits, - and _",
                               i + 1, KYU_ENTRY_ID_MAX);
        memcpy(req->entry_ids[i], e[i].id, len + 1);
        for (size_t j = 0; j < i; j++)
            if (strcmp(req->entry_ids[i], req->entry_ids[j]) == 0)
                return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                                   "BatchEntryIdsNotDistinct: entry id '%s' is given twice",
                                   e[i].id);
        if (e[i].delay_seconds < -1)
            return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                               "entry '%s': delay_seconds is -1 (none) or 0..%d", e[i].id,
                               KYU_DELAY_MAX);
        req->entry_delay[i] = e[i].delay_seconds;
        if (e[i].delay_seconds >= 0)
            req->fields |= KYU_F_ENTRY_DELAYS;
        if (kyu_client_set_fifo_ids(req, i, e[i].group_id, e[i].dedup_id, err) != KYU_OK)
            return err->code;
        if (e[i].attrs) {
            req->attrs[i] = *e[i].attrs;
            if (e[i].attrs->n > KYU_MSG_ATTRS_MAX)
                return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                                   "entry '%s': at most %d message attributes", e[i].id,
                                   KYU_MSG_ATTRS_MAX);
            if (e[i].attrs->n)
                req->fields |= KYU_F_MSG_ATTRS;
        }
    }
    return KYU_OK;
}

kyu_code_t kyu_client_batch_results(kyu_code_t rc, const kyu_err_t *e, kyu_reply_t *rep,
                                    const kyu_batch_entry_t *entries, size_t n, bool md5s,
                                    kyu_batch_result_t *out, kyu_err_t *err)
{
    kyu_code_t first = KYU_OK;
    for (size_t i = 0; i < n && i < KYU_BATCH_MAX; i++) {
        kyu_batch_result_t *r = &out[i];
        memset(r, 0, sizeof *r);
        r->code = rc != KYU_OK ? rc : rep->n_results ? (kyu_code_t)rep->results[i] : KYU_OK;
        if (rc != KYU_OK)
            snprintf(r->error, sizeof r->error, "%s", e->msg);
        else if (r->code != KYU_OK)
            snprintf(r->error, sizeof r->error, "%s", rep->errors[i]);
        else {
            memcpy(r->sent.message_id, rep->ids[i], sizeof r->sent.message_id);
            if (md5s) {
                memcpy(r->sent.md5_body, rep->md5_body[i], sizeof r->sent.md5_body);
                memcpy(r->sent.md5_attrs, rep->md5_attrs[i], sizeof r->sent.md5_attrs);
            }
            r->sent.sequence = rep->sequences[i]; /* a FIFO queue's or topic's SequenceNumber */
        }
        if (rc == KYU_OK && r->code != KYU_OK && first == KYU_OK) {
            first = r->code;
            kyu_err_set(err, r->code, "entry '%s': %s", entries[i].id, r->error);
        }
    }
    kyu_reply_reset(rep);
    if (rc != KYU_OK)
        return kyu_err_set(err, rc, "%s", e->msg);
    return first;
}

kyu_code_t kyu_client_send_batch(kyu_client_t *self, const char *queue,
                                 const kyu_batch_entry_t *entries, size_t n,
                                 kyu_batch_result_t *out, kyu_err_t *err)
{
    kyu_request_t req = {.op = KYU_OP_SEND};
    const void *bodies[KYU_BATCH_MAX];
    size_t lens[KYU_BATCH_MAX];
    kyu_err_t e = {0};
    kyu_code_t rc = n < 1 || n > KYU_BATCH_MAX
                        ? kyu_err_set(&e, KYU_ERR_INVALID_ARGUMENT,
                                      "a batch has 1 to %d entries, not %zu", KYU_BATCH_MAX, n)
                        : kyu_client_set_queue(&req, queue, &e);
    if (rc == KYU_OK)
        rc = kyu_client_batch_request(&req, entries, n, &e);
    for (size_t i = 0; rc == KYU_OK && i < n; i++) {
        bodies[i] = entries[i].body;
        lens[i] = entries[i].len;
    }
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    if (rc == KYU_OK)
        rc = kyu_client_call(self, &req, bodies, lens, n, &rep, NULL, &e);
    if (rc == KYU_OK && rep.n_results && (rep.n_results != n || rep.n_errors != n))
        rc = kyu_err_set(&e, KYU_ERR_MALFORMED, "SEND batch reply has %zu results for %zu entries",
                         rep.n_results, n);
    return kyu_client_batch_results(rc, &e, &rep, entries, n, true, out, err);
}

kyu_code_t kyu_client_receive(kyu_client_t *self, const char *queue, int max, int vt,
                              kyu_message_t **msgs_p, size_t *n, kyu_err_t *err)
{
    kyu_receive_options_t o;
    kyu_receive_options_init(&o);
    o.max = max;
    o.visibility_timeout = vt;
    return kyu_client_receive_with(self, queue, &o, msgs_p, n, err);
}

void kyu_receive_options_init(kyu_receive_options_t *o)
{
    o->max = 1;
    o->visibility_timeout = -1;
    o->wait_seconds = -1;
    o->attempt_id = NULL;
}

kyu_code_t kyu_client_receive_with(kyu_client_t *self, const char *queue,
                                   const kyu_receive_options_t *o, kyu_message_t **msgs_p,
                                   size_t *n, kyu_err_t *err)
{
    kyu_request_t req = {.op = KYU_OP_RECEIVE};
    kyu_receive_options_t dflt;
    kyu_receive_options_init(&dflt);
    if (!o)
        o = &dflt;
    *msgs_p = NULL;
    *n = 0;
    if (o->max < 1 || o->max > KYU_BATCH_MAX)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "receive takes 1 to %d messages, not %d",
                           KYU_BATCH_MAX, o->max);
    if (o->wait_seconds < -1 || o->wait_seconds > KYU_WAIT_MAX)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "WaitTimeSeconds must be 0 to %d seconds, not %d", KYU_WAIT_MAX,
                           o->wait_seconds);
    req.max = (uint32_t)o->max;
    req.fields = KYU_F_MAX;
    if (o->wait_seconds >= 0) {
        req.wait = (uint32_t)o->wait_seconds;
        req.fields |= KYU_F_WAIT;
    }
    if (o->attempt_id) {
        if (!kyu_fifo_id_valid(o->attempt_id, strlen(o->attempt_id), KYU_ATTEMPT_ID_MAX))
            return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                               "ReceiveRequestAttemptId is 1 to %d characters of ASCII letters, "
                               "digits and punctuation",
                               KYU_ATTEMPT_ID_MAX);
        snprintf(req.attempt_id, sizeof req.attempt_id, "%s", o->attempt_id);
        req.fields |= KYU_F_ATTEMPT;
    }
    kyu_code_t rc = kyu_client_set_queue(&req, queue, err);
    if (rc == KYU_OK)
        rc = set_vt(&req, o->visibility_timeout, true, err);
    if (rc != KYU_OK)
        return rc;
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    rc = kyu_client_call(self, &req, NULL, NULL, 0, &rep, msgs_p, err);
    if (rc == KYU_OK)
        *n = rep.n_msgs;
    kyu_reply_reset(&rep);
    return rc;
}

kyu_code_t kyu_client_peek(kyu_client_t *self, const char *queue, int max, uint64_t from,
                           kyu_message_t **msgs_p, size_t *n, uint64_t *next, kyu_err_t *err)
{
    kyu_request_t req = {.op = KYU_OP_PEEK, .fields = KYU_F_MAX, .from = from};
    *msgs_p = NULL;
    *n = 0;
    *next = 0;
    if (max < 1 || max > KYU_BATCH_MAX)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "peek lists 1 to %d messages, not %d",
                           KYU_BATCH_MAX, max);
    req.max = (uint32_t)max;
    if (from)
        req.fields |= KYU_F_FROM;
    kyu_code_t rc = kyu_client_set_queue(&req, queue, err);
    if (rc != KYU_OK)
        return rc;
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    rc = kyu_client_call(self, &req, NULL, NULL, 0, &rep, msgs_p, err);
    if (rc == KYU_OK) {
        *n = rep.n_msgs;
        *next = rep.has_next ? rep.next : 0;
    }
    kyu_reply_reset(&rep);
    return rc;
}

kyu_code_t kyu_client_peek_find(kyu_client_t *self, const char *queue, const char *message_id,
                                uint64_t *position, kyu_err_t *err)
{
    *position = 0;
    size_t id_len = message_id ? strlen(message_id) : 0;
    if (id_len < 1 || id_len > KYU_MESSAGE_ID_MAX)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "a message id is 1 to %d characters, not %zu", KYU_MESSAGE_ID_MAX,
                           id_len);
    /* Positions only grow from page to page: the walk ends at the queue's end. */
    for (uint64_t from = 0;;) {
        kyu_message_t *msgs = NULL;
        size_t n = 0;
        uint64_t next = 0;
        kyu_code_t rc = kyu_client_peek(self, queue, KYU_BATCH_MAX, from, &msgs, &n, &next, err);
        if (rc != KYU_OK)
            return rc;
        for (size_t i = 0; i < n && !*position; i++)
            if (strcmp(msgs[i].message_id, message_id) == 0)
                *position = msgs[i].position;
        kyu_messages_destroy(&msgs);
        if (*position)
            return KYU_OK;
        if (!next || next <= from)
            return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                               "message %s is not in queue '%s' (never sent there, deleted, "
                               "expired or moved)",
                               message_id, queue);
        from = next;
    }
}

/* DELETE and CHANGE_VISIBILITY: a result per handle; the first failure is the return. */
static kyu_code_t call_handles(kyu_client_t *c, kyu_request_t *req, const char *const *handles,
                               size_t n, kyu_code_t *results, kyu_err_t *err)
{
    kyu_code_t rc = KYU_OK;
    if (n < 1 || n > KYU_BATCH_MAX)
        rc = kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "1 to %d receipt handles, not %zu",
                         KYU_BATCH_MAX, n);
    for (size_t i = 0; rc == KYU_OK && i < n; i++) {
        size_t len = strlen(handles[i]);
        if (len < 1 || len > KYU_HANDLE_MAX)
            rc = kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                             "receipt handle %zu is empty or over %d bytes", i + 1, KYU_HANDLE_MAX);
        else
            memcpy(req->handles[i], handles[i], len + 1);
    }
    req->n_handles = n;
    req->fields |= KYU_F_HANDLES;
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    if (rc == KYU_OK)
        rc = kyu_client_call(c, req, NULL, NULL, 0, &rep, NULL, err);
    for (size_t i = 0; i < n && i < KYU_BATCH_MAX; i++)
        results[i] = rc;
    for (size_t i = 0; rc == KYU_OK && i < rep.n_results; i++) {
        uint32_t r = rep.results[i];
        results[i] = r < KYU_ERR_CODE_COUNT ? (kyu_code_t)r : KYU_ERR_INTERNAL;
    }
    if (rc == KYU_OK) {
        for (size_t i = 0; i < rep.n_results; i++) {
            if (results[i] != KYU_OK) {
                rc = kyu_err_set(err, results[i], "receipt handle %zu of %zu: %s", i + 1, n,
                                 kyu_code_name(results[i]));
                break;
            }
        }
    }
    kyu_reply_reset(&rep);
    return rc;
}

/* DELETE and CHANGE_VISIBILITY as a batch (entry ids): a result and text per entry. */
static kyu_code_t call_handle_batch(kyu_client_t *c, kyu_request_t *req,
                                    const kyu_handle_entry_t *entries, size_t n,
                                    kyu_batch_result_t *out, kyu_err_t *err)
{
    kyu_code_t rc = KYU_OK;
    if (n < 1 || n > KYU_BATCH_MAX)
        rc = kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "a batch has 1 to %d entries, not %zu",
                         KYU_BATCH_MAX, n);
    for (size_t i = 0; rc == KYU_OK && i < n; i++) {
        size_t hl = entries[i].receipt_handle ? strlen(entries[i].receipt_handle) : 0;
        size_t il = entries[i].id ? strlen(entries[i].id) : 0;
        if (!kyu_entry_id_valid(entries[i].id ? entries[i].id : "", il))
            rc = kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                             "InvalidBatchEntryId: entry %zu: a batch entry id is 1 to %d "
                             "characters of letters, digits, - and _",
                             i + 1, KYU_ENTRY_ID_MAX);
        else if (hl < 1 || hl > KYU_HANDLE_MAX)
            rc = kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                             "entry '%s': receipt handle is empty or over %d bytes", entries[i].id,
                             KYU_HANDLE_MAX);
        for (size_t j = 0; rc == KYU_OK && j < i; j++)
            if (strcmp(entries[i].id, entries[j].id) == 0)
                rc = kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                                 "BatchEntryIdsNotDistinct: entry id '%s' is given twice",
                                 entries[i].id);
        if (rc == KYU_OK) {
            memcpy(req->handles[i], entries[i].receipt_handle, hl + 1);
            memcpy(req->entry_ids[i], entries[i].id, il + 1);
        }
    }
    req->n_handles = req->n_entries = n;
    req->fields |= KYU_F_HANDLES | KYU_F_ENTRY_IDS;
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    if (rc == KYU_OK)
        rc = kyu_client_call(c, req, NULL, NULL, 0, &rep, NULL, err);
    if (rc == KYU_OK && rep.n_results != n)
        rc = kyu_err_set(err, KYU_ERR_MALFORMED, "the broker answered %zu results for %zu entries",
                         rep.n_results, n);
    kyu_code_t first = KYU_OK;
    for (size_t i = 0; i < n && i < KYU_BATCH_MAX; i++) {
        kyu_batch_result_t *r = &out[i];
        memset(r, 0, sizeof *r);
        uint32_t code = rc == KYU_OK ? rep.results[i] : (uint32_t)rc;
        r->code = code < KYU_ERR_CODE_COUNT ? (kyu_code_t)code : KYU_ERR_INTERNAL;
        if (rc != KYU_OK)
            snprintf(r->error, sizeof r->error, "%s", err->msg);
        else if (r->code != KYU_OK && i < rep.n_errors)
            snprintf(r->error, sizeof r->error, "%s", rep.errors[i]);
        if (rc == KYU_OK && r->code != KYU_OK && first == KYU_OK) {
            first = r->code;
            kyu_err_set(err, r->code, "entry '%s': %s", entries[i].id, r->error);
        }
    }
    kyu_reply_reset(&rep);
    return rc != KYU_OK ? rc : first;
}

kyu_code_t kyu_client_delete_batch(kyu_client_t *self, const char *queue,
                                   const kyu_handle_entry_t *entries, size_t n,
                                   kyu_batch_result_t *out, kyu_err_t *err)
{
    kyu_request_t req = {.op = KYU_OP_DELETE};
    kyu_code_t rc = kyu_client_set_queue(&req, queue, err);
    if (rc != KYU_OK) {
        for (size_t i = 0; i < n && i < KYU_BATCH_MAX; i++)
            out[i] = (kyu_batch_result_t){.code = rc};
        return rc;
    }
    return call_handle_batch(self, &req, entries, n, out, err);
}

kyu_code_t kyu_client_change_visibility_batch(kyu_client_t *self, const char *queue,
                                              const kyu_handle_entry_t *entries, size_t n, int vt,
                                              kyu_batch_result_t *out, kyu_err_t *err)
{
    kyu_request_t req = {.op = KYU_OP_CHANGE_VISIBILITY};
    kyu_code_t rc = kyu_client_set_queue(&req, queue, err);
    if (rc == KYU_OK && vt != KYU_VT_PER_ENTRY)
        rc = set_vt(&req, vt, false, err);
    for (size_t i = 0; rc == KYU_OK && vt == KYU_VT_PER_ENTRY && i < n && i < KYU_BATCH_MAX; i++) {
        if (entries[i].visibility_timeout < 0)
            rc = kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                             "entry %zu: VisibilityTimeout must be 0 to %d seconds, not %d", i + 1,
                             KYU_VISIBILITY_MAX, entries[i].visibility_timeout);
        req.entry_vt[i] = (uint32_t)entries[i].visibility_timeout;
        req.n_entry_vts = i + 1;
        req.fields |= KYU_F_ENTRY_VTS;
    }
    if (rc != KYU_OK) {
        for (size_t i = 0; i < n && i < KYU_BATCH_MAX; i++)
            out[i] = (kyu_batch_result_t){.code = rc};
        return rc;
    }
    return call_handle_batch(self, &req, entries, n, out, err);
}

kyu_code_t kyu_client_delete(kyu_client_t *self, const char *queue, const char *const *handles,
                             size_t n, kyu_code_t *results, kyu_err_t *err)
{
    kyu_request_t req = {.op = KYU_OP_DELETE};
    kyu_code_t rc = kyu_client_set_queue(&req, queue, err);
    if (rc != KYU_OK) {
        for (size_t i = 0; i < n && i < KYU_BATCH_MAX; i++)
            results[i] = rc;
        return rc;
    }
    return call_handles(self, &req, handles, n, results, err);
}

kyu_code_t kyu_client_change_visibility(kyu_client_t *self, const char *queue,
                                        const char *const *handles, size_t n, int vt,
                                        kyu_code_t *results, kyu_err_t *err)
{
    kyu_request_t req = {.op = KYU_OP_CHANGE_VISIBILITY};
    kyu_code_t rc = kyu_client_set_queue(&req, queue, err);
    if (rc == KYU_OK)
        rc = set_vt(&req, vt, false, err);
    if (rc != KYU_OK) {
        for (size_t i = 0; i < n && i < KYU_BATCH_MAX; i++)
            results[i] = rc;
        return rc;
    }
    return call_handles(self, &req, handles, n, results, err);
}

kyu_code_t kyu_client_cluster_status(kyu_client_t *self, kyu_node_status_t *out, kyu_err_t *err)
{
    kyu_request_t req = {.op = KYU_OP_CLUSTER_STATUS};
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    kyu_code_t rc = kyu_client_call_once(self, &req, NULL, NULL, 0, &rep, NULL, err);
    if (rc == KYU_OK && !rep.has_node)
        rc = kyu_err_set(err, KYU_ERR_MALFORMED, "CLUSTER_STATUS reply without a node");
    if (rc == KYU_OK)
        *out = rep.node;
    kyu_reply_reset(&rep);
    return rc;
}

kyu_code_t kyu_client_cluster_transfer(kyu_client_t *self, uint64_t to, kyu_err_t *err)
{
    kyu_request_t req = {.op = KYU_OP_CLUSTER_TRANSFER, .to = to, .fields = to ? KYU_F_TO : 0};
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    kyu_code_t rc = kyu_client_call(self, &req, NULL, NULL, 0, &rep, NULL, err);
    kyu_reply_reset(&rep);
    return rc;
}

kyu_code_t kyu_client_cluster_add(kyu_client_t *self, uint64_t id, const char *raft,
                                  const char *client, kyu_err_t *err)
{
    kyu_request_t req = {
        .op = KYU_OP_CLUSTER_ADD, .to = id, .fields = KYU_F_TO | KYU_F_RAFT | KYU_F_EP};
    if (id == 0 || id > INT64_MAX || !raft[0] || !client[0] || strlen(raft) >= sizeof req.raft ||
        strlen(client) >= sizeof req.ep)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "a node needs an id of 1 to 2^63-1 and addresses of 1 to %d bytes",
                           KYU_ENDPOINT_MAX - 1);
    memcpy(req.raft, raft, strlen(raft) + 1);
    memcpy(req.ep, client, strlen(client) + 1);
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    kyu_code_t rc = kyu_client_call(self, &req, NULL, NULL, 0, &rep, NULL, err);
    kyu_reply_reset(&rep);
    return rc;
}

kyu_code_t kyu_client_cluster_remove(kyu_client_t *self, uint64_t id, kyu_err_t *err)
{
    if (id == 0 || id > INT64_MAX)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "node ids are 1 to 2^63-1");
    kyu_request_t req = {.op = KYU_OP_CLUSTER_REMOVE, .to = id, .fields = KYU_F_TO};
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    kyu_code_t rc = kyu_client_call(self, &req, NULL, NULL, 0, &rep, NULL, err);
    kyu_reply_reset(&rep);
    return rc;
}
