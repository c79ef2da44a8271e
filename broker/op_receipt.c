/* op_receipt: the operations on received messages, by receipt handle — DELETE and
 * CHANGE_VISIBILITY (their rows: ops.c). Each handle is checked against the message's
 * current lease and gets its own result. */
#include "sm_internal.h"

#include <stdlib.h>
#include <stdio.h>
#include <string.h>

void kyu_op_handles_build(kyu_op_ctx_t *ctx, const kyu_request_t *req, const kyu_bodies_t *bodies,
                          kyu_command_t *cmd)
{
    (void)ctx, (void)bodies;
    cmd->n = req->n_handles;
    memcpy(cmd->handles, req->handles, sizeof cmd->handles);
    /* CHANGE_VISIBILITY batch (evt): an entry whose timeout is out of range fails alone */
    cmd->has_handle_vt = (req->fields & KYU_F_ENTRY_VTS) != 0;
    for (size_t i = 0; cmd->has_handle_vt && i < cmd->n; i++) {
        cmd->handle_vt[i] = req->entry_vt[i];
        if (req->entry_vt[i] > KYU_VISIBILITY_MAX)
            cmd->entry_code[i] = KYU_ERR_INVALID_ARGUMENT;
    }
}

/* Why a handle failed, for the reply's errs (as a SEND batch says why an entry failed). */
static const char *handle_error(uint32_t code)
{
    switch (code) {
    case KYU_ERR_RECEIPT_STALE:
        return "the message was received again since this handle was issued";
    case KYU_ERR_RECEIPT_INVALID:
        return "not a receipt handle of this queue, or its message no longer exists";
    case KYU_ERR_INVALID_ARGUMENT: /* the only code an entry fails with at the leader */
        return "VisibilityTimeout (evt) must be 0 to 43200 seconds";
    default:
        return kyu_code_name((int)code);
    }
}

/* A code per handle and, when one failed, why each failed (as a SEND batch answers). */
void kyu_op_handles_reply(const kyu_result_t *res, kyu_reply_t *rep, size_t *n_bodies)
{
    (void)n_bodies;
    rep->n_results = res->n_results;
    memcpy(rep->results, res->results, sizeof rep->results);
    bool failed = false;
    for (size_t i = 0; i < res->n_results; i++)
        failed = failed || res->results[i] != KYU_OK;
    rep->n_errors = failed ? res->n_results : 0;
    for (size_t i = 0; i < rep->n_errors; i++)
        snprintf(rep->errors[i], sizeof rep->errors[i], "%s",
                 res->results[i] == KYU_OK ? "" : handle_error(res->results[i]));
}

/* items = [receipt_handle, ...]; with a timeout per entry, [[receipt_handle, vt] or [code],
 * ...] (command.h) */
void kyu_op_handles_encode(const kyu_command_t *cmd, msgpack_packer *pk)
{
    msgpack_pack_array(pk, cmd->n);
    for (size_t i = 0; i < cmd->n; i++) {
        if (!cmd->has_handle_vt) {
            kyu_mp_pack_str(pk, cmd->handles[i]);
        } else if (cmd->entry_code[i]) {
            msgpack_pack_array(pk, 1);
            msgpack_pack_uint32(pk, cmd->entry_code[i]);
        } else {
            msgpack_pack_array(pk, 2);
            kyu_mp_pack_str(pk, cmd->handles[i]);
            msgpack_pack_uint32(pk, cmd->handle_vt[i]);
        }
    }
}

static bool decode_handle_item(const msgpack_object *o, kyu_command_t *cmd, size_t i)
{
    if (o->type == MSGPACK_OBJECT_STR)
        return !cmd->has_handle_vt && kyu_mp_copy_str(o, cmd->handles[i], KYU_HANDLE_MAX);
    if (o->type != MSGPACK_OBJECT_ARRAY || (i > 0 && !cmd->has_handle_vt))
        return false;
    cmd->has_handle_vt = true;
    const msgpack_object *f = o->via.array.ptr;
    if (o->via.array.size == 1) /* [code]: failed at the leader */
        return f[0].type == MSGPACK_OBJECT_POSITIVE_INTEGER && f[0].via.u64 > 0 &&
               f[0].via.u64 < KYU_ERR_CODE_COUNT &&
               (cmd->entry_code[i] = (uint8_t)f[0].via.u64, true);
    return o->via.array.size == 2 && kyu_mp_copy_str(&f[0], cmd->handles[i], KYU_HANDLE_MAX) &&
           f[1].type == MSGPACK_OBJECT_POSITIVE_INTEGER && f[1].via.u64 <= KYU_VISIBILITY_MAX &&
           (cmd->handle_vt[i] = (uint32_t)f[1].via.u64, true);
}

bool kyu_op_handles_decode(const msgpack_object *items, kyu_command_t *cmd)
{
    if (items->type != MSGPACK_OBJECT_ARRAY || items->via.array.size > KYU_BATCH_MAX)
        return false;
    cmd->n = items->via.array.size;
    for (size_t i = 0; i < cmd->n; i++)
        if (!decode_handle_item(&items->via.array.ptr[i], cmd, i))
            return false;
    /* per-entry timeouts only on CHANGE_VISIBILITY */
    return !cmd->has_handle_vt || cmd->type == KYU_CMD_CHANGE_VISIBILITY;
}

/* Checks a receipt handle against the message's current lease. Returns the status for the
 * handle; on KYU_OK, *seq and *l describe the message. */
static kyu_code_t check_handle(kyu_sm_t *self, const queue_t *q, const char *handle, uint64_t *seq,
                               lease_t *l)
{
    uint32_t gen = 0;
    if (!kyu_sm_handle_verify(handle, &self->hmac_next, q->qid, seq, &gen) || gen == 0)
        return KYU_ERR_RECEIPT_INVALID; /* forged, altered, or another queue's */
    bool ok = kyu_sm_index_lease(q, *seq, l);
    if (!ok || gen > l->gen)
        return KYU_ERR_RECEIPT_INVALID; /* gone (deleted) */
    if (gen < l->gen)
        return KYU_ERR_RECEIPT_STALE;
    return KYU_OK;
}

/* The handles of c, each checked; act(seq, lease) for those that hold. */
static kyu_code_t for_each_handle(kyu_sm_t *self, const kyu_command_t *c, kyu_apply_t *a,
                                  kyu_code_t (*act)(kyu_sm_t *, const kyu_command_t *, size_t,
                                                    queue_t *, uint64_t, lease_t *))
{
    kyu_result_t *res = a->res;
    queue_t *q = kyu_sm_queue(self, c->queue, res);
    if (!q)
        return KYU_OK;
    for (size_t i = 0; i < c->n; i++) {
        uint64_t seq = 0;
        lease_t l;
        kyu_code_t st = c->entry_code[i] ? (kyu_code_t)c->entry_code[i]
                                         : check_handle(self, q, c->handles[i], &seq, &l);
        if (st == KYU_OK)
            st = act(self, c, i, q, seq, &l);
        res->results[i] = st;
    }
    res->n_results = c->n;
    if (a->dedup) {
        for (size_t i = 0; i < c->n; i++)
            a->dedup->codes[i] = (uint8_t)res->results[i];
        a->dedup->n = c->n;
    }
    return KYU_OK;
}

static kyu_code_t delete_message(kyu_sm_t *self, const kyu_command_t *c, size_t i, queue_t *q,
                                 uint64_t seq, lease_t *l)
{
    (void)c, (void)i, (void)l;
    kyu_sm_drop_message(self, q, seq);
    q->n_messages--;
    kyu_sm_touch(self, q);
    return KYU_OK;
}

/* A handle whose lease ran out but was not replaced still deletes (as SQS). */
kyu_code_t kyu_op_delete_apply(kyu_sm_t *self, const kyu_command_t *c, kyu_apply_t *a)
{
    return for_each_handle(self, c, a, delete_message);
}

static kyu_code_t move_lease(kyu_sm_t *self, const kyu_command_t *c, size_t i, queue_t *q,
                             uint64_t seq, lease_t *l)
{
    /* As SQS: a message whose lease ran out is not in flight; receive it again. */
    if (l->visible_at <= c->now_ms)
        return KYU_ERR_RECEIPT_STALE;
    uint64_t vt = c->has_handle_vt ? c->handle_vt[i] : (uint64_t)(c->vt > 0 ? c->vt : 0);
    l->visible_at = c->now_ms + vt * 1000;
    kyu_sm_set_lease(self, q, seq, l);
    return KYU_OK;
}

kyu_code_t kyu_op_change_visibility_apply(kyu_sm_t *self, const kyu_command_t *c, kyu_apply_t *a)
{
    return for_each_handle(self, c, a, move_lease);
}

/* A retried DELETE or CHANGE_VISIBILITY is answered with the first attempt's per-handle
 * results (a retried delete reports success, not RECEIPT_INVALID; a retried visibility
 * change does not move the lease again). */
kyu_code_t kyu_op_handles_replay(kyu_sm_t *self, const kyu_command_t *c, const kyu_dedup_t *d,
                                 kyu_apply_t *a)
{
    (void)self, (void)c;
    for (size_t i = 0; i < d->n; i++)
        a->res->results[i] = d->codes[i];
    a->res->n_results = d->n;
    return KYU_OK;
}
