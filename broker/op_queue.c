/* op_queue: the queue operations — CREATE_QUEUE, SET_QUEUE_ATTRIBUTES, DELETE_QUEUE,
 * LIST_QUEUES, GET_QUEUE_ATTRIBUTES (their rows: ops.c).
 *
 * A queue's attributes: VisibilityTimeout (vt, 0..43200 s, default 30; its range is checked
 * by the codec, as for every vt), MaximumMessageSize (max_size, 1024..1048576 bytes, default
 * 1048576; a value given must not be above the broker's own body limit, and that limit also
 * bounds the default: a send is held to the smaller of the two, and GET_QUEUE_ATTRIBUTES
 * reports the smaller) and DelaySeconds (delay, 0..900 s, default 0: a message sent to the
 * queue is invisible for as long; sm_apply.c). The defaults are fixed, not a node's flag, so
 * that a create without an attribute compares the same on every leader. */
#include "sm_internal.h"

#include <stdlib.h>
#include <string.h>

/* Writes on a queue other than CREATE_QUEUE: the queue must exist when proposed (it may
 * still be gone when applied; the apply says so then). */
kyu_code_t kyu_op_queue_exists(kyu_op_ctx_t *ctx, const kyu_request_t *req, zmsg_t *bodies,
                               kyu_err_t *err)
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
    if ((req->fields & KYU_F_DELAY) && req->delay > KYU_DELAY_MAX)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "DelaySeconds must be 0 to %d seconds, not %u", KYU_DELAY_MAX,
                           req->delay);
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

kyu_code_t kyu_op_create_queue_validate(kyu_op_ctx_t *ctx, const kyu_request_t *req, zmsg_t *bodies,
                                        kyu_err_t *err)
{
    (void)bodies;
    return check_attrs(ctx, req, err);
}

kyu_code_t kyu_op_set_queue_attributes_validate(kyu_op_ctx_t *ctx, const kyu_request_t *req,
                                                zmsg_t *bodies, kyu_err_t *err)
{
    if (kyu_op_queue_exists(ctx, req, bodies, err) != KYU_OK)
        return err->code;
    if (!(req->fields & (KYU_F_VT | KYU_F_MMS | KYU_F_DELAY)))
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "set-queue-attributes needs at least one attribute (vt, mms, ds)");
    return check_attrs(ctx, req, err);
}

/* The frontend has set vt (-1: not set); the others are set when the request gives them. */
void kyu_op_queue_attrs_build(kyu_op_ctx_t *ctx, const kyu_request_t *req, zmsg_t *bodies,
                              kyu_command_t *cmd)
{
    (void)ctx, (void)bodies;
    cmd->has_delay = (req->fields & KYU_F_DELAY) != 0;
    cmd->delay = req->delay;
    if (req->fields & KYU_F_MMS)
        cmd->max_size = req->max_size;
}

/* [], [max_size] or [max_size, delay] (command.h) */
void kyu_op_queue_attrs_encode(const kyu_command_t *cmd, msgpack_packer *pk)
{
    msgpack_pack_array(pk, cmd->has_delay ? 2 : cmd->max_size ? 1 : 0);
    if (cmd->max_size || cmd->has_delay)
        msgpack_pack_uint32(pk, cmd->max_size);
    if (cmd->has_delay)
        msgpack_pack_uint32(pk, cmd->delay);
}

/* A max_size over KYU_MAX_SIZE_MAX (or 0 alone) or a delay over KYU_DELAY_MAX is not one the
 * broker builds. */
bool kyu_op_queue_attrs_decode(const msgpack_object *items, kyu_command_t *cmd)
{
    if (items->type != MSGPACK_OBJECT_ARRAY || items->via.array.size > 2)
        return false;
    const msgpack_object *o = items->via.array.ptr;
    uint32_t n = items->via.array.size;
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

kyu_code_t kyu_op_create_queue_apply(kyu_sm_t *self, const kyu_command_t *c, kyu_apply_t *a)
{
    uint32_t vt = c->vt >= 0 ? (uint32_t)c->vt : KYU_VISIBILITY_DEFAULT;
    uint32_t max_size = c->max_size ? c->max_size : KYU_MAX_SIZE_DEFAULT;
    uint32_t delay = c->has_delay ? c->delay : 0;
    queue_t *q = zhashx_lookup(self->queues, c->queue);
    if (q) {
        /* As SQS: creating an existing queue with the same attributes succeeds; otherwise
         * the error names the first attribute that differs. */
        if (q->vt != vt)
            kyu_err_set(kyu_result_err(a->res), KYU_ERR_QUEUE_EXISTS,
                        "queue '%s' exists with a different value for attribute "
                        "VisibilityTimeout: %u, not %u",
                        c->queue, q->vt, vt);
        else if (q->max_size != max_size)
            kyu_err_set(kyu_result_err(a->res), KYU_ERR_QUEUE_EXISTS,
                        "queue '%s' exists with a different value for attribute "
                        "MaximumMessageSize: %u, not %u",
                        c->queue, q->max_size, max_size);
        else if (q->delay != delay)
            kyu_err_set(kyu_result_err(a->res), KYU_ERR_QUEUE_EXISTS,
                        "queue '%s' exists with a different value for attribute DelaySeconds: "
                        "%u, not %u",
                        c->queue, q->delay, delay);
        return KYU_OK;
    }
    if (zhashx_size(self->queues) >= KYU_QUEUES_MAX) {
        kyu_err_set(kyu_result_err(a->res), KYU_ERR_LIMIT_EXCEEDED, "at most %d queues",
                    KYU_QUEUES_MAX);
        return KYU_OK;
    }
    q = calloc(1, sizeof *q);
    if (!q)
        return KYU_ERR_INTERNAL;
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

/* Changes the attributes the command sets (vt >= 0, max_size > 0, has_delay) and
 * LastModifiedTimestamp. A new delay holds for the messages sent after it (as SQS). */
kyu_code_t kyu_op_set_queue_attributes_apply(kyu_sm_t *self, const kyu_command_t *c, kyu_apply_t *a)
{
    queue_t *q = kyu_sm_queue(self, c->queue, a->res);
    if (!q)
        return KYU_OK;
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

kyu_code_t kyu_op_delete_queue_apply(kyu_sm_t *self, const kyu_command_t *c, kyu_apply_t *a)
{
    queue_t *q = kyu_sm_queue(self, c->queue, a->res);
    if (!q)
        return KYU_OK;
    uint8_t gc[10] = {'g', 'c'};
    kyu_put_be64(gc + 2, q->qid);
    kyu_sm_put(self, KYU_CF_META, gc, sizeof gc, "", 0);
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
    /* The size a send may have here: the queue's, or this broker's limit when smaller. */
    if (rc == KYU_OK && (uint64_t)rep->attrs.max_size > ctx->max_body)
        rep->attrs.max_size = (int64_t)ctx->max_body;
    return rc;
}
