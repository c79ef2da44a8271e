/* op_queue: the queue operations — CREATE_QUEUE, SET_QUEUE_ATTRIBUTES, DELETE_QUEUE,
 * LIST_QUEUES, GET_QUEUE_ATTRIBUTES (their rows: ops.c).
 *
 * A queue's attributes: VisibilityTimeout (vt, 0..43200 s, default 30; its range is checked
 * by the codec, as for every vt), MaximumMessageSize (max_size, 1024..1048576 bytes, default
 * 1048576; a value given must not be above the broker's own body limit, and that limit also
 * bounds the default: a send is held to the smaller of the two, and GET_QUEUE_ATTRIBUTES
 * reports the smaller) and DelaySeconds (delay, 0..900 s, default 0: a message sent to the
 * queue is invisible for as long; sm_apply.c). The others (MessageRetentionPeriod,
 * ReceiveMessageWaitTimeSeconds, RedrivePolicy, RedriveAllowPolicy, tags) are kept in
 * queue_attrs.h's encoding; RedrivePolicy's checks against the state and the moves to
 * dead-letter queues are op_deadletter.c's. The defaults are fixed, not a node's flag, so
 * that a create without an attribute compares the same on every leader. */
#include "sm_internal.h"

#include <stdlib.h>
#include <string.h>

/* Writes on a queue other than CREATE_QUEUE: the queue must exist when proposed (it may
 * still be gone when applied; the apply says so then). */
kyu_code_t kyu_op_queue_exists(kyu_op_ctx_t *ctx, const kyu_request_t *req,
                               const kyu_bodies_t *bodies, kyu_err_t *err)
{
    (void)bodies;
    if (!kyu_sm_queue_exists(ctx->sm, req->queue))
        return kyu_err_set(err, KYU_ERR_NO_SUCH_QUEUE, "queue '%s' does not exist", req->queue);
    return KYU_OK;
}

/* The attributes a CREATE_QUEUE or SET_QUEUE_ATTRIBUTES request sets, checked against
 * SQS's ranges and the broker's body limit (vt's range: the codec). */
static kyu_code_t check_attrs(kyu_op_ctx_t *ctx, const kyu_request_t *req, kyu_err_t *err)
{
    /* FIFO queues (SQS's): a name ending in .fifo exactly when FifoQueue is true, at
     * creation only; the other FIFO attributes only on a FIFO queue. */
    bool name_fifo = kyu_queue_name_fifo(req->queue, strlen(req->queue));
    bool fifo = (req->fields & KYU_F_FIFO) && req->qx.fifo;
    if (req->op == KYU_OP_CREATE_QUEUE && name_fifo != fifo)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           name_fifo ? "queue '%s' ends in .fifo: create it with FifoQueue true "
                                       "(create-queue --fifo), or name it without .fifo"
                                     : "FifoQueue: the name of FIFO queue '%s' must end in .fifo",
                           req->queue);
    if (req->op != KYU_OP_CREATE_QUEUE && (req->fields & KYU_F_FIFO))
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "FifoQueue is set when a queue is created, never changed");
    if (!name_fifo && (req->fields & (KYU_F_CBD | KYU_F_DEDUP_SCOPE | KYU_F_THROUGHPUT)))
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "ContentBasedDeduplication, DeduplicationScope and FifoThroughputLimit "
                           "are attributes of FIFO queues; '%s' is a standard queue",
                           req->queue);
    if ((req->fields & KYU_F_DELAY) && req->delay > KYU_DELAY_MAX)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "DelaySeconds must be 0 to %d seconds, not %u", KYU_DELAY_MAX,
                           req->delay);
    if (kyu_qattrs_check(&req->qx, req->fields & KYU_F_QUEUE_EXT_, err) != KYU_OK)
        return err->code;
    /* RedrivePolicy: against the state (its queue, cycles, the dead-letter queue's
     * RedriveAllowPolicy); the apply checks it again, on the state it finds. */
    if ((req->fields & KYU_F_REDRIVE) && req->qx.dlq[0] &&
        kyu_sm_check_redrive(ctx->sm, req->queue, req->qx.dlq, err) != KYU_OK)
        return err->code;
    if (!(req->fields & KYU_F_MMS))
        return KYU_OK;
    if (req->max_size < KYU_MAX_SIZE_MIN || req->max_size > KYU_MAX_SIZE_MAX)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "MaximumMessageSize must be %d to %d bytes, not %u", KYU_MAX_SIZE_MIN,
                           KYU_MAX_SIZE_MAX, req->max_size);
    if (req->max_size > ctx->max_body)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "MaximumMessageSize %u is over this broker's message size limit of "
                           "%zu bytes (kyu-broker --max-message-size)",
                           req->max_size, ctx->max_body);
    return KYU_OK;
}

kyu_code_t kyu_op_create_queue_validate(kyu_op_ctx_t *ctx, const kyu_request_t *req,
                                        const kyu_bodies_t *bodies, kyu_err_t *err)
{
    (void)bodies;
    return check_attrs(ctx, req, err);
}

kyu_code_t kyu_op_set_queue_attributes_validate(kyu_op_ctx_t *ctx, const kyu_request_t *req,
                                                const kyu_bodies_t *bodies, kyu_err_t *err)
{
    if (kyu_op_queue_exists(ctx, req, bodies, err) != KYU_OK)
        return err->code;
    if (!(req->fields & (KYU_F_VT | KYU_F_MMS | KYU_F_DELAY | KYU_F_QUEUE_EXT_)))
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "set-queue-attributes needs at least one attribute (vt, mms, ds, mrp, "
                           "rwt, rdp, rap, tags)");
    if (check_attrs(ctx, req, err) != KYU_OK)
        return err->code;
    if (!(req->fields & KYU_F_TAGS))
        return KYU_OK;
    /* Tags are added to the queue's (SQS's TagQueue): at most 50 in all. */
    const queue_t *q = zhashx_lookup(ctx->sm->queues, req->queue);
    kyu_queue_ext_t *x = malloc(sizeof *x);
    if (!x)
        return kyu_err_set(err, KYU_ERR_INTERNAL, "out of memory");
    kyu_code_t rc = KYU_OK;
    if (!kyu_sm_queue_ext(q, x))
        rc = kyu_err_set(err, KYU_ERR_STORAGE, "queue '%s': corrupt attributes", req->queue);
    else if (!kyu_qattrs_merge_tags(x, &req->qx.tags))
        rc = kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                         "queue '%s' would have more than %d tags (it has %zu)", req->queue,
                         KYU_TAGS_MAX, x->tags.n);
    free(x);
    return rc;
}

/* The frontend has set vt (-1: not set); the others are set when the request gives them. */
void kyu_op_queue_attrs_build(kyu_op_ctx_t *ctx, const kyu_request_t *req,
                              const kyu_bodies_t *bodies, kyu_command_t *cmd)
{
    (void)ctx, (void)bodies;
    cmd->has_delay = (req->fields & KYU_F_DELAY) != 0;
    cmd->delay = req->delay;
    if (req->fields & KYU_F_MMS)
        cmd->max_size = req->max_size;
    cmd->qx_set = req->fields & KYU_F_QUEUE_EXT_;
    cmd->qx = cmd->qx_set ? &req->qx : NULL;
}

/* [], [max_size], [max_size, delay] or, with other attributes, [max_size, delay or nil,
 * attributes] (command.h) */
void kyu_op_queue_attrs_encode(const kyu_command_t *cmd, msgpack_packer *pk)
{
    if (cmd->qx_set) {
        msgpack_pack_array(pk, 3);
        msgpack_pack_uint32(pk, cmd->max_size);
        if (cmd->has_delay)
            msgpack_pack_uint32(pk, cmd->delay);
        else
            msgpack_pack_nil(pk);
        if (cmd->qx) {
            msgpack_sbuffer sb;
            msgpack_sbuffer_init(&sb);
            msgpack_packer inner;
            msgpack_packer_init(&inner, &sb, msgpack_sbuffer_write);
            kyu_qattrs_encode(cmd->qx, cmd->qx_set, &inner);
            msgpack_pack_bin(pk, sb.size);
            msgpack_pack_bin_body(pk, sb.data, sb.size);
            msgpack_sbuffer_destroy(&sb);
        } else {
            msgpack_pack_bin(pk, cmd->qx_len);
            msgpack_pack_bin_body(pk, cmd->qx_mp, cmd->qx_len);
        }
        return;
    }
    msgpack_pack_array(pk, cmd->has_delay ? 2 : cmd->max_size ? 1 : 0);
    if (cmd->max_size || cmd->has_delay)
        msgpack_pack_uint32(pk, cmd->max_size);
    if (cmd->has_delay)
        msgpack_pack_uint32(pk, cmd->delay);
}

/* A max_size over KYU_MAX_SIZE_MAX (or 0 alone), a delay over KYU_DELAY_MAX or attributes
 * out of their ranges (or none) are not what the broker builds. */
bool kyu_op_queue_attrs_decode(const msgpack_object *items, kyu_command_t *cmd)
{
    if (items->type != MSGPACK_OBJECT_ARRAY || items->via.array.size > 3)
        return false;
    const msgpack_object *o = items->via.array.ptr;
    uint32_t n = items->via.array.size;
    if (n == 3) {
        kyu_queue_ext_t *x = malloc(sizeof *x);
        bool ok =
            x && o[0].type == MSGPACK_OBJECT_POSITIVE_INTEGER && o[0].via.u64 <= KYU_MAX_SIZE_MAX &&
            (o[1].type == MSGPACK_OBJECT_NIL ||
             (o[1].type == MSGPACK_OBJECT_POSITIVE_INTEGER && o[1].via.u64 <= KYU_DELAY_MAX)) &&
            o[2].type == MSGPACK_OBJECT_BIN &&
            kyu_qattrs_decode(o[2].via.bin.ptr, o[2].via.bin.size, x, &cmd->qx_set) &&
            cmd->qx_set != 0;
        free(x);
        if (!ok)
            return false;
        cmd->max_size = (uint32_t)o[0].via.u64;
        cmd->has_delay = o[1].type != MSGPACK_OBJECT_NIL;
        cmd->delay = cmd->has_delay ? (uint32_t)o[1].via.u64 : 0;
        cmd->qx_mp = o[2].via.bin.ptr;
        cmd->qx_len = o[2].via.bin.size;
        return true;
    }
    for (uint32_t i = 0; i < n; i++)
        if (o[i].type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            return false;
    if (n >= 1 && (o[0].via.u64 > KYU_MAX_SIZE_MAX || (n == 1 && o[0].via.u64 == 0)))
        return false;
    if (n == 2 && o[1].via.u64 > KYU_DELAY_MAX)
        return false;
    cmd->max_size = n >= 1 ? (uint32_t)o[0].via.u64 : 0;
    cmd->has_delay = n == 2;
    cmd->delay = n == 2 ? (uint32_t)o[1].via.u64 : 0;
    return true;
}

/* The other attributes a CREATE_QUEUE or SET_QUEUE_ATTRIBUTES command gives, over the
 * defaults: false (a storage error set) when they do not decode, which a decoded command
 * rules out. */
static bool command_attrs(const kyu_command_t *c, kyu_queue_ext_t *given, kyu_apply_t *a)
{
    uint64_t set = 0;
    kyu_qattrs_defaults(given);
    if (c->qx) {
        *given = *c->qx;
        return true;
    }
    if (!c->qx_mp || kyu_qattrs_decode(c->qx_mp, c->qx_len, given, &set))
        return true;
    kyu_err_set(a->err, KYU_ERR_STORAGE, "queue '%s': malformed attributes in a command", c->queue);
    return false;
}

/* As SQS: the first attribute in which an existing queue differs from a create's, or NULL. */
static const char *first_difference(const queue_t *q, const kyu_queue_ext_t *cur, uint32_t vt,
                                    uint32_t max_size, uint32_t delay, const kyu_queue_ext_t *x,
                                    char *have, char *want, size_t len)
{
    const struct {
        const char *name;
        uint32_t have, want;
    } nums[] = {
        {"VisibilityTimeout", q->vt, vt},
        {"MaximumMessageSize", q->max_size, max_size},
        {"DelaySeconds", q->delay, delay},
        {"MessageRetentionPeriod", cur->retention, x->retention},
        {"ReceiveMessageWaitTimeSeconds", cur->receive_wait, x->receive_wait},
        {"ContentBasedDeduplication", cur->cbd, x->cbd},
        {"DeduplicationScope", cur->dedup_scope, x->dedup_scope},
        {"FifoThroughputLimit", cur->throughput, x->throughput},
    };
    for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++)
        if (nums[i].have != nums[i].want) {
            snprintf(have, len, "%u", nums[i].have);
            snprintf(want, len, "%u", nums[i].want);
            return nums[i].name;
        }
    if (strcmp(cur->dlq, x->dlq) != 0 || cur->max_receive_count != x->max_receive_count) {
        snprintf(have, len, "%s", cur->dlq[0] ? cur->dlq : "none");
        snprintf(want, len, "%s", x->dlq[0] ? x->dlq : "none");
        if (strcmp(cur->dlq, x->dlq) == 0) {
            snprintf(have, len, "%s, maxReceiveCount %u", cur->dlq, cur->max_receive_count);
            snprintf(want, len, "maxReceiveCount %u", x->max_receive_count);
        }
        return "RedrivePolicy";
    }
    bool same_sources = cur->n_sources == x->n_sources;
    for (size_t i = 0; same_sources && i < cur->n_sources; i++)
        same_sources = strcmp(cur->sources[i], x->sources[i]) == 0;
    if (cur->allow != x->allow || !same_sources) {
        snprintf(have, len, "%s", kyu_qattrs_allow_name(cur->allow));
        snprintf(want, len, "%s%s", kyu_qattrs_allow_name(x->allow),
                 cur->allow == x->allow ? " with other source queues" : "");
        return "RedriveAllowPolicy";
    }
    if (!kyu_qattrs_tags_equal(&cur->tags, &x->tags)) {
        snprintf(have, len, "%zu tags", cur->tags.n);
        snprintf(want, len, "%zu tags%s", x->tags.n,
                 cur->tags.n == x->tags.n ? " that differ" : "");
        return "tags";
    }
    return NULL;
}

static kyu_code_t create_queue(kyu_sm_t *self, const kyu_command_t *c, kyu_apply_t *a,
                               const kyu_queue_ext_t *x, kyu_queue_ext_t *cur)
{
    uint32_t vt = c->vt >= 0 ? (uint32_t)c->vt : KYU_VISIBILITY_DEFAULT;
    uint32_t max_size = c->max_size ? c->max_size : KYU_MAX_SIZE_DEFAULT;
    uint32_t delay = c->has_delay ? c->delay : 0;
    queue_t *q = zhashx_lookup(self->queues, c->queue);
    if (q) {
        /* As SQS: creating an existing queue with the same attributes succeeds; otherwise
         * the error names the first attribute that differs. */
        char have[128], want[128];
        const char *name = NULL;
        if (!kyu_sm_queue_ext(q, cur))
            return kyu_err_set(a->err, KYU_ERR_STORAGE, "queue '%s': corrupt attributes", c->queue);
        name = first_difference(q, cur, vt, max_size, delay, x, have, want, sizeof have);
        if (name)
            kyu_err_set(kyu_result_err(a->res), KYU_ERR_QUEUE_EXISTS,
                        "queue '%s' exists with a different value for attribute %s: %s, not %s",
                        c->queue, name, have, want);
        return KYU_OK;
    }
    if (zhashx_size(self->queues) >= KYU_QUEUES_MAX) {
        kyu_err_set(kyu_result_err(a->res), KYU_ERR_LIMIT_EXCEEDED, "at most %d queues",
                    KYU_QUEUES_MAX);
        return KYU_OK;
    }
    if (x->dlq[0] && kyu_sm_check_redrive(self, c->queue, x->dlq, kyu_result_err(a->res)))
        return KYU_OK;
    q = calloc(1, sizeof *q);
    if (!q || !kyu_sm_queue_set_ext(q, x)) {
        free(q);
        return kyu_err_set(a->err, KYU_ERR_INTERNAL, "out of memory creating a queue");
    }
    snprintf(q->name, sizeof q->name, "%s", c->queue);
    q->qid = self->next_qid++;
    q->vt = vt;
    q->max_size = max_size;
    q->delay = delay;
    q->created_ms = c->now_ms;
    q->modified_ms = c->now_ms;
    q->counted_at = c->now_ms;
    kyu_sm_index_init(q);
    zhashx_insert(self->queues, q->name, q);
    kyu_sm_touch(self, q);
    return KYU_OK;
}

kyu_code_t kyu_op_create_queue_apply(kyu_sm_t *self, const kyu_command_t *c, kyu_apply_t *a)
{
    kyu_queue_ext_t *x = malloc(2 * sizeof *x); /* given, and an existing queue's */
    if (!x)
        return kyu_err_set(a->err, KYU_ERR_INTERNAL, "out of memory");
    kyu_code_t rc = command_attrs(c, x, a) ? create_queue(self, c, a, x, x + 1) : a->err->code;
    free(x);
    return rc;
}

/* Changes the attributes the command sets (vt >= 0, max_size > 0, has_delay, the other
 * attributes of qx_set; tags are added to the queue's) and LastModifiedTimestamp, or nothing
 * when one is refused (a RedrivePolicy, or too many tags). A new delay holds for the
 * messages sent after it (as SQS). */
static kyu_code_t set_attributes(kyu_sm_t *self, const kyu_command_t *c, kyu_apply_t *a, queue_t *q,
                                 const kyu_queue_ext_t *given, kyu_queue_ext_t *x)
{
    kyu_err_t *fail = kyu_result_err(a->res);
    if (!kyu_sm_queue_ext(q, x))
        return kyu_err_set(a->err, KYU_ERR_STORAGE, "queue '%s': corrupt attributes", c->queue);
    if (c->qx_set & KYU_F_RETENTION)
        x->retention = given->retention;
    if (c->qx_set & KYU_F_RECEIVE_WAIT)
        x->receive_wait = given->receive_wait;
    if (c->qx_set & KYU_F_REDRIVE) {
        memcpy(x->dlq, given->dlq, sizeof x->dlq);
        x->max_receive_count = given->max_receive_count;
        if (x->dlq[0] && kyu_sm_check_redrive(self, c->queue, x->dlq, fail) != KYU_OK)
            return KYU_OK;
    }
    if (c->qx_set & KYU_F_CBD)
        x->cbd = given->cbd;
    if (c->qx_set & KYU_F_DEDUP_SCOPE)
        x->dedup_scope = given->dedup_scope;
    if (c->qx_set & KYU_F_THROUGHPUT)
        x->throughput = given->throughput;
    if (c->qx_set & KYU_F_REDRIVE_ALLOW) {
        x->allow = given->allow;
        x->n_sources = given->n_sources;
        memcpy(x->sources, given->sources, sizeof x->sources);
    }
    if ((c->qx_set & KYU_F_TAGS) && !kyu_qattrs_merge_tags(x, &given->tags)) {
        kyu_err_set(fail, KYU_ERR_INVALID_ARGUMENT, "queue '%s' would have more than %d tags",
                    c->queue, KYU_TAGS_MAX);
        return KYU_OK;
    }
    if (!kyu_sm_queue_set_ext(q, x))
        return kyu_err_set(a->err, KYU_ERR_INTERNAL, "out of memory setting attributes");
    if (c->vt >= 0)
        q->vt = (uint32_t)c->vt;
    if (c->max_size)
        q->max_size = c->max_size;
    if (c->has_delay)
        q->delay = c->delay;
    q->modified_ms = c->now_ms;
    kyu_sm_touch(self, q);
    return KYU_OK;
}

kyu_code_t kyu_op_set_queue_attributes_apply(kyu_sm_t *self, const kyu_command_t *c, kyu_apply_t *a)
{
    queue_t *q = kyu_sm_queue(self, c->queue, a->res);
    if (!q)
        return KYU_OK;
    kyu_queue_ext_t *x = malloc(2 * sizeof *x); /* given, and the queue's new ones */
    if (!x)
        return kyu_err_set(a->err, KYU_ERR_INTERNAL, "out of memory");
    kyu_code_t rc = command_attrs(c, x, a) ? set_attributes(self, c, a, q, x, x + 1) : a->err->code;
    free(x);
    return rc;
}

/* UNTAG_QUEUE (SQS's UntagQueue): the keys travel as tags with empty values, encoded as a
 * SET_QUEUE_ATTRIBUTES command's tags are (command.h). */
void kyu_op_untag_queue_build(kyu_op_ctx_t *ctx, const kyu_request_t *req,
                              const kyu_bodies_t *bodies, kyu_command_t *cmd)
{
    (void)ctx, (void)bodies;
    cmd->qx_set = KYU_F_TAGS;
    cmd->qx = &req->qx;
}

/* Removes the command's keys from the queue's tags, keeping the others in their order; a key
 * the queue lacks is no error (as SQS). LastModifiedTimestamp changes when a tag went (as a
 * tag's change by SET_QUEUE_ATTRIBUTES does). */
kyu_code_t kyu_op_untag_queue_apply(kyu_sm_t *self, const kyu_command_t *c, kyu_apply_t *a)
{
    queue_t *q = kyu_sm_queue(self, c->queue, a->res);
    if (!q)
        return KYU_OK;
    kyu_queue_ext_t *x = malloc(2 * sizeof *x); /* the keys given, and the queue's */
    if (!x)
        return kyu_err_set(a->err, KYU_ERR_INTERNAL, "out of memory");
    kyu_code_t rc = KYU_OK;
    kyu_tags_t *have = &x[1].tags;
    size_t removed = 0;
    if (!command_attrs(c, x, a)) {
        rc = a->err->code;
        goto done;
    }
    if (!kyu_sm_queue_ext(q, x + 1)) {
        rc = kyu_err_set(a->err, KYU_ERR_STORAGE, "queue '%s': corrupt attributes", c->queue);
        goto done;
    }
    for (size_t k = 0; k < x[0].tags.n; k++) {
        for (size_t i = 0; i < have->n; i++) {
            if (strcmp(have->keys[i], x[0].tags.keys[k]) != 0)
                continue;
            memmove(have->keys[i], have->keys[i + 1], (have->n - i - 1) * sizeof have->keys[0]);
            memmove(have->values[i], have->values[i + 1],
                    (have->n - i - 1) * sizeof have->values[0]);
            have->n--;
            removed++;
            break;
        }
    }
    if (!removed)
        goto done;
    if (!kyu_sm_queue_set_ext(q, x + 1)) {
        rc = kyu_err_set(a->err, KYU_ERR_INTERNAL, "out of memory setting attributes");
        goto done;
    }
    q->modified_ms = c->now_ms;
    kyu_sm_touch(self, q);
done:
    free(x);
    return rc;
}

/* DELETE_QUEUE: a queue that is another queue's dead-letter queue only with force. */
kyu_code_t kyu_op_delete_queue_validate(kyu_op_ctx_t *ctx, const kyu_request_t *req,
                                        const kyu_bodies_t *bodies, kyu_err_t *err)
{
    if (kyu_op_queue_exists(ctx, req, bodies, err) != KYU_OK)
        return err->code;
    if (!(req->fields & KYU_F_FORCE))
        return kyu_sm_check_not_dead_letter(ctx->sm, req->queue, err);
    return KYU_OK;
}

void kyu_op_delete_queue_build(kyu_op_ctx_t *ctx, const kyu_request_t *req,
                               const kyu_bodies_t *bodies, kyu_command_t *cmd)
{
    (void)ctx, (void)bodies;
    cmd->force = (req->fields & KYU_F_FORCE) != 0;
}

/* [] or [true] (command.h) */
void kyu_op_delete_queue_encode(const kyu_command_t *cmd, msgpack_packer *pk)
{
    msgpack_pack_array(pk, cmd->force ? 1 : 0);
    if (cmd->force)
        msgpack_pack_true(pk);
}

bool kyu_op_delete_queue_decode(const msgpack_object *items, kyu_command_t *cmd)
{
    if (items->type != MSGPACK_OBJECT_ARRAY || items->via.array.size > 1)
        return false;
    if (items->via.array.size == 1 && (items->via.array.ptr[0].type != MSGPACK_OBJECT_BOOLEAN ||
                                       !items->via.array.ptr[0].via.boolean))
        return false;
    cmd->force = items->via.array.size == 1;
    return true;
}

/* The queue's RedrivePolicy names the deleted queue no more than before: its messages past
 * maxReceiveCount stay in it (op_deadletter.c) until a queue of that name exists again. */
kyu_code_t kyu_op_delete_queue_apply(kyu_sm_t *self, const kyu_command_t *c, kyu_apply_t *a)
{
    queue_t *q = kyu_sm_queue(self, c->queue, a->res);
    if (!q)
        return KYU_OK;
    if (!c->force && kyu_sm_check_not_dead_letter(self, c->queue, kyu_result_err(a->res)))
        return KYU_OK;
    uint8_t gc[10] = {'g', 'c'};
    kyu_put_be64(gc + 2, q->qid);
    kyu_sm_put(self, KYU_CF_META, gc, sizeof gc, "", 0);
    kyu_sm_tasks_drop(self, q);              /* its message move tasks (op_redrive.c) */
    kyu_sm_topics_drop_queue(self, q->name); /* its subscriptions to topics (op_topic.c) */
    /* Receives parked on it are answered NO_SUCH_QUEUE. */
    kyu_sm_note_visible(self, q);
    /* The record leaves the hash now; it is freed after the entry's write (forget_touched). */
    zhashx_delete(self->queues, q->name);
    q->deleted = true;
    kyu_sm_touch(self, q);
    return KYU_OK;
}

/* Deletes every message of the queue, visible, in flight and delayed, as of this command:
 * messages sent after it (in later commands, or later in its entry) stay. The queue keeps its
 * id and attributes. Its messages are seqs below next_seq (seqs are global and only grow), so
 * their records are dropped by one range delete per column family, as a deleted queue's
 * ("gp" record, kyu_sm_collect_garbage, right after the entry is written): no delete per
 * message, whatever the queue holds. The receive index is dropped here at once, so every
 * receipt handle of a purged message finds no lease (RECEIPT_INVALID). No 60 s limit as in
 * SQS (PurgeQueueInProgress): a purge here is complete when it is answered. */
kyu_code_t kyu_op_purge_queue_apply(kyu_sm_t *self, const kyu_command_t *c, kyu_apply_t *a)
{
    queue_t *q = kyu_sm_queue(self, c->queue, a->res);
    if (!q)
        return KYU_OK;
    uint8_t gp[10] = {'g', 'p'}, hi[8];
    kyu_put_be64(gp + 2, q->qid);
    kyu_put_be64(hi, self->next_seq);
    kyu_sm_put(self, KYU_CF_META, gp, sizeof gp, hi, sizeof hi);
    kyu_sm_index_free(q);
    kyu_sm_index_init(q);
    kyu_sm_fifo_reset_groups(q); /* not its deduplication records: SQS keeps them */
    kyu_sm_fair_reset(q);        /* its groups' records dropped (sm_fair.c) */
    q->n_messages = 0;
    self->purged = true;
    kyu_sm_touch(self, q);
    return KYU_OK;
}

/* A retried DELETE_QUEUE or PURGE_QUEUE is answered OK again (not NO_SUCH_QUEUE), and a
 * retried purge does not delete the messages sent since the first attempt. */
kyu_code_t kyu_op_done_replay(kyu_sm_t *self, const kyu_command_t *c, const kyu_dedup_t *d,
                              kyu_apply_t *a)
{
    (void)self, (void)c, (void)d, (void)a;
    return KYU_OK;
}

kyu_code_t kyu_op_list_queues_answer(kyu_op_ctx_t *ctx, const kyu_request_t *req, kyu_reply_t *rep,
                                     kyu_err_t *err)
{
    (void)req;
    return kyu_sm_list_queues(ctx->sm, &rep->queues, &rep->n_queues, err);
}

kyu_code_t kyu_op_queue_attributes_answer(kyu_op_ctx_t *ctx, const kyu_request_t *req,
                                          kyu_reply_t *rep, kyu_err_t *err)
{
    kyu_code_t rc = kyu_sm_queue_attributes(ctx->sm, req->queue, kyu_replica_now(ctx->replica),
                                            &rep->attrs, err);
    rep->has_attrs = rc == KYU_OK;
    if (rc != KYU_OK)
        return rc;
    /* The size a send may have here: the queue's, or this broker's limit when smaller. */
    if ((uint64_t)rep->attrs.max_size > ctx->max_body)
        rep->attrs.max_size = (int64_t)ctx->max_body;
    if (rep->attrs.n_tags == 0)
        return KYU_OK;
    rep->tags = malloc(sizeof *rep->tags);
    if (!rep->tags || kyu_sm_queue_tags(ctx->sm, req->queue, rep->tags, err) != KYU_OK) {
        rep->has_attrs = false;
        return rep->tags ? err->code : kyu_err_set(err, KYU_ERR_INTERNAL, "out of memory");
    }
    return KYU_OK;
}
