/* op_cluster: the operations on the cluster rather than on queues — HELLO, CLUSTER_STATUS,
 * CLUSTER_TRANSFER, CLUSTER_ADD, CLUSTER_REMOVE (their rows: ops.c). None is logged as a
 * command of its own: membership changes are carried out by broker/membership.c. */
#include "ops.h"

#include <stdio.h>

kyu_code_t kyu_op_hello_answer(kyu_op_ctx_t *ctx, const kyu_request_t *req, kyu_reply_t *rep,
                               kyu_err_t *err)
{
    if (req->version != KYU_PROTOCOL_VERSION)
        return kyu_err_set(err, KYU_ERR_VERSION,
                           "protocol version %u is not supported; this broker speaks %d",
                           req->version, KYU_PROTOCOL_VERSION);
    rep->version = KYU_PROTOCOL_VERSION;
    rep->max_body = ctx->max_body;
    return KYU_OK;
}

kyu_code_t kyu_op_status_answer(kyu_op_ctx_t *ctx, const kyu_request_t *req, kyu_reply_t *rep,
                                kyu_err_t *err)
{
    (void)req, (void)err;
    kyu_replica_status(ctx->replica, &rep->node);
    if (!rep->node.endpoint[0])
        snprintf(rep->node.endpoint, sizeof rep->node.endpoint, "%s", ctx->endpoint);
    rep->has_node = true;
    return KYU_OK;
}

kyu_code_t kyu_op_transfer_answer(kyu_op_ctx_t *ctx, const kyu_request_t *req, kyu_reply_t *rep,
                                  kyu_err_t *err)
{
    (void)rep;
    kyu_code_t rc = kyu_replica_transfer_to(ctx->replica, req->to);
    if (rc == KYU_OK)
        return KYU_OK;
    return kyu_err_set(err, rc,
                       rc == KYU_ERR_NOT_LEADER
                           ? "this node is not the leader"
                           : "the target is not another voter of this cluster (the leader itself, "
                             "unknown, or a node alone)");
}

static kyu_code_t no_membership(kyu_err_t *err)
{
    return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                       "this broker runs without a peer list: start it with --node-id and "
                       "--peer to change its membership");
}

kyu_code_t kyu_op_add_start(kyu_op_ctx_t *ctx, const kyu_request_t *req, void *waiter,
                            kyu_err_t *err)
{
    if (!ctx->membership)
        return no_membership(err);
    return kyu_membership_add(ctx->membership, req->to, req->raft, req->ep, waiter, err);
}

kyu_code_t kyu_op_remove_start(kyu_op_ctx_t *ctx, const kyu_request_t *req, void *waiter,
                               kyu_err_t *err)
{
    if (!ctx->membership)
        return no_membership(err);
    return kyu_membership_remove(ctx->membership, req->to, waiter, err);
}
