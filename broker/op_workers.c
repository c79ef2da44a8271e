/* op_workers: the rows of worker sessions (proto/PROTOCOL.md "Worker sessions").
 *
 * WORKER_OPEN, WORKER_HEARTBEAT and WORKER_CLOSE go to the leader's session table
 * (workers.h), bound to the connection that sends them; LIST_WORKERS reads it. None of them
 * is a command: sessions live in the leader's memory only. What is replicated is what they
 * do to leases: the pushes are RECEIVE commands, and RELEASE_LEASES (below) hands back the
 * leases of a session declared dead or closed. */
#include "sm_internal.h"
#include "workers.h"

#include <string.h>

kyu_code_t kyu_op_worker_open(kyu_op_ctx_t *ctx, const kyu_request_t *req, zframe_t **identity,
                              const char *host, kyu_reply_t *rep, kyu_err_t *err)
{
    return kyu_workers_open(ctx->workers, req, *identity, host, rep, err);
}

kyu_code_t kyu_op_worker_heartbeat(kyu_op_ctx_t *ctx, const kyu_request_t *req, zframe_t **identity,
                                   const char *host, kyu_reply_t *rep, kyu_err_t *err)
{
    (void)host, (void)rep;
    return kyu_workers_heartbeat(ctx->workers, req, *identity, err);
}

kyu_code_t kyu_op_worker_close(kyu_op_ctx_t *ctx, const kyu_request_t *req, zframe_t **identity,
                               const char *host, kyu_reply_t *rep, kyu_err_t *err)
{
    (void)host, (void)rep;
    return kyu_workers_close(ctx->workers, req, identity, err);
}

kyu_code_t kyu_op_list_workers_answer(kyu_op_ctx_t *ctx, const kyu_request_t *req, kyu_reply_t *rep,
                                      kyu_err_t *err)
{
    if ((req->fields & KYU_F_QUEUE) && !kyu_sm_queue_exists(ctx->sm, req->queue))
        return kyu_err_set(err, KYU_ERR_NO_SUCH_QUEUE, "queue '%s' does not exist", req->queue);
    return kyu_workers_list(ctx->workers, (req->fields & KYU_F_QUEUE) ? req->queue : NULL, rep,
                            err);
}

/* ---- RELEASE_LEASES ---- */

/* items = [leases (bin)] (command.h) */
void kyu_op_release_encode(const kyu_command_t *cmd, msgpack_packer *pk)
{
    msgpack_pack_array(pk, 1);
    msgpack_pack_bin(pk, cmd->n_rel * KYU_RELEASE_REC);
    msgpack_pack_bin_body(pk, cmd->rel, cmd->n_rel * KYU_RELEASE_REC);
}

bool kyu_op_release_decode(const msgpack_object *items, kyu_command_t *cmd)
{
    if (items->type != MSGPACK_OBJECT_ARRAY || items->via.array.size != 1)
        return false;
    const msgpack_object *o = &items->via.array.ptr[0];
    if (o->type != MSGPACK_OBJECT_BIN || o->via.bin.size == 0 ||
        o->via.bin.size % KYU_RELEASE_REC != 0 ||
        o->via.bin.size / KYU_RELEASE_REC > KYU_RELEASE_MAX)
        return false;
    cmd->rel = (const uint8_t *)o->via.bin.ptr; /* borrowed from the entry */
    cmd->n_rel = o->via.bin.size / KYU_RELEASE_REC;
    return true;
}

/* Each message that still holds the lease named (same generation, not run out) becomes
 * visible at the command's time, its receive count unchanged; a deleted, expired or
 * re-leased message is left alone, so applying it twice changes nothing more. A deleted
 * queue: nothing to do (its result says NO_SUCH_QUEUE). */
kyu_code_t kyu_op_release_apply(kyu_sm_t *self, const kyu_command_t *c, kyu_apply_t *a)
{
    queue_t *q = kyu_sm_queue(self, c->queue, a->res);
    if (!q)
        return KYU_OK;
    for (size_t i = 0; i < c->n_rel; i++) {
        const uint8_t *p = c->rel + i * KYU_RELEASE_REC;
        uint64_t seq = kyu_get_be64(p);
        uint32_t gen = kyu_get_be32(p + 8);
        lease_t l;
        if (!kyu_sm_index_lease(q, seq, &l) || l.gen != gen || gen == 0 ||
            l.visible_at <= c->now_ms)
            continue;
        l.visible_at = c->now_ms;
        kyu_sm_set_lease(self, q, seq, &l);
    }
    return KYU_OK;
}

bool kyu_sm_lease_held(kyu_sm_t *sm, const char *queue, uint64_t seq, uint32_t gen, uint64_t now)
{
    queue_t *q = zhashx_lookup(sm->queues, queue);
    lease_t l;
    return q && kyu_sm_index_lease(q, seq, &l) && l.gen == gen && l.visible_at > now;
}
