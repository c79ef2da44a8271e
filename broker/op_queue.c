/* op_queue: the queue operations — CREATE_QUEUE, DELETE_QUEUE, LIST_QUEUES,
 * GET_QUEUE_ATTRIBUTES (their rows: ops.c). */
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

kyu_code_t kyu_op_create_queue_apply(kyu_sm_t *self, const kyu_command_t *c, kyu_apply_t *a)
{
    uint32_t vt = c->vt >= 0 ? (uint32_t)c->vt : KYU_VISIBILITY_DEFAULT;
    queue_t *q = zhashx_lookup(self->queues, c->queue);
    if (q) {
        /* As SQS: creating an existing queue with the same attributes succeeds. */
        if (q->vt != vt)
            kyu_err_set(kyu_result_err(a->res), KYU_ERR_QUEUE_EXISTS,
                        "queue '%s' exists with visibility timeout %u, not %u", c->queue, q->vt,
                        vt);
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
    q->created_ms = c->now_ms;
    kyu_sm_index_init(q);
    zhashx_insert(self->queues, q->name, q);
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
    /* The record leaves the hash now; it is freed after the entry's write (forget_touched). */
    zhashx_delete(self->queues, q->name);
    q->deleted = true;
    kyu_sm_touch(self, q);
    return KYU_OK;
}

/* A retried DELETE_QUEUE is answered OK again (not NO_SUCH_QUEUE). */
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
    return rc;
}
