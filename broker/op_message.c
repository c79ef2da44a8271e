/* op_message: SEND (store messages, a FIFO queue's deduplication); its row: ops.c. RECEIVE
 * (lease visible ones): op_receive.c; DELETE and CHANGE_VISIBILITY, by receipt handle:
 * op_receipt.c. */
#include "sm_internal.h"

#include <stdlib.h>
#include <string.h>

/* ---- SEND ---- */

/* Message i (from 0) of a SEND against SQS's rules and the limits: its body, its attributes
 * (may be NULL), and their size together (SQS counts the attributes toward the message
 * size). The error names the message. */
static kyu_code_t check_message(const queue_t *q, size_t max_body, const kyu_request_t *req,
                                size_t i, size_t body_len, kyu_err_t *err)
{
    const kyu_msg_attrs_t *attrs = req->fields & KYU_F_MSG_ATTRS ? &req->attrs[i] : NULL;
    const char *group = req->fields & KYU_F_GROUPS ? req->group_ids[i] : "";
    const char *did = req->fields & KYU_F_GROUPS ? req->dedup_ids[i] : "";
    if (q->is_fifo && !group[0])
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "message %zu: the request must contain the parameter MessageGroupId "
                           "(queue '%s' is a FIFO queue)",
                           i + 1, q->name);
    if (q->is_fifo && !did[0] && !q->cbd)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "message %zu: queue '%s' should either have ContentBasedDeduplication "
                           "enabled or MessageDeduplicationId provided explicitly",
                           i + 1, q->name);
    if (!q->is_fifo && did[0])
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "message %zu: MessageDeduplicationId is for FIFO queues; '%s' is a "
                           "standard queue",
                           i + 1, q->name);
    if (q->is_fifo && (req->fields & KYU_F_ENTRY_DELAYS) && req->entry_delay[i] >= 0)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "message %zu: DelaySeconds per message is not valid on FIFO queue "
                           "'%s' (set the queue's DelaySeconds instead)",
                           i + 1, q->name);
    if ((req->fields & KYU_F_ENTRY_DELAYS) && req->entry_delay[i] > KYU_DELAY_MAX)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "message %zu: DelaySeconds must be 0 to %d seconds, not %lld", i + 1,
                           KYU_DELAY_MAX, (long long)req->entry_delay[i]);
    if (body_len == 0)
        return kyu_err_set(err, KYU_ERR_EMPTY_BODY, "message %zu has an empty body", i + 1);
    kyu_err_t e = {0};
    if (attrs && kyu_msg_attrs_check(attrs, &e) != KYU_OK)
        return kyu_err_set(err, e.code, "message %zu: %s", i + 1, e.msg);
    size_t attrs_len = attrs ? kyu_msg_attrs_size(attrs) : 0, size = body_len + attrs_len;
    const char *with = attrs_len ? " (body and attributes)" : "";
    if (size > max_body)
        return kyu_err_set(err, KYU_ERR_TOO_LARGE,
                           "message %zu has %zu bytes%s; the maximum is %zu", i + 1, size, with,
                           max_body);
    if (size > q->max_size)
        return kyu_err_set(err, KYU_ERR_TOO_LARGE,
                           "message %zu has %zu bytes%s; queue '%s' takes at most %u (its "
                           "MaximumMessageSize)",
                           i + 1, size, with, q->name, q->max_size);
    return KYU_OK;
}

/* A batch (SEND with entry ids): each entry is checked alone when the command is built, but
 * the entries together, bodies and attributes, may not be larger than the broker's maximum
 * message size (SQS's BatchRequestTooLong: the sum of a SendMessageBatch's entries may not
 * exceed the maximum payload size): the whole batch is refused, nothing is stored. A SEND
 * without entry ids (kyu's own pipelined send, all or nothing) is held only to the transport's
 * bound of 10 bodies of the maximum size. */
static kyu_code_t check_batch_total(size_t max_body, const kyu_request_t *req,
                                    const kyu_bodies_t *bodies, kyu_err_t *err)
{
    size_t total = 0, i = 0;
    for (; i < bodies->n; i++)
        total += bodies->b[i].len +
                 (req->fields & KYU_F_MSG_ATTRS ? kyu_msg_attrs_size(&req->attrs[i]) : 0);
    if (total > max_body)
        return kyu_err_set(err, KYU_ERR_TOO_LARGE,
                           "BatchRequestTooLong: the batch's %zu entries have %zu bytes together "
                           "(bodies and attributes); a batch takes at most %zu (the maximum "
                           "message size)",
                           i, total, max_body);
    return KYU_OK;
}

kyu_code_t kyu_op_send_validate(kyu_op_ctx_t *ctx, const kyu_request_t *req,
                                const kyu_bodies_t *bodies, kyu_err_t *err)
{
    const queue_t *q = zhashx_lookup(ctx->sm->queues, req->queue);
    if (!q)
        return kyu_err_set(err, KYU_ERR_NO_SUCH_QUEUE, "queue '%s' does not exist", req->queue);
    if ((req->fields & KYU_F_DELAY) && (req->fields & KYU_F_DELIVER_AT))
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "give DelaySeconds (ds) or a deliver-at time (da), not both");
    if ((req->fields & KYU_F_DELAY) && req->delay > KYU_DELAY_MAX)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "a message's DelaySeconds must be 0 to %d seconds, not %u",
                           KYU_DELAY_MAX, req->delay);
    if (req->fields & KYU_F_DELIVER_AT) {
        /* A time in the past is delivered at once (a delay of 0). Without a replica (the
         * rows' unit tests) the state machine's last command time stands for the leader's. */
        uint64_t now = ctx->replica ? kyu_replica_now(ctx->replica) : kyu_sm_last_now(ctx->sm);
        /* Later than the queue's MessageRetentionPeriod, it would expire before it shows. */
        if (req->deliver_at_ms > now && req->deliver_at_ms - now > q->retention * 1000ull)
            return kyu_err_set(
                err, KYU_ERR_INVALID_ARGUMENT,
                "deliver-at must be at most %u seconds after the send (queue '%s's "
                "MessageRetentionPeriod); %llu ms since the epoch is %llu s after it",
                q->retention, q->name, (unsigned long long)req->deliver_at_ms,
                (unsigned long long)((req->deliver_at_ms - now) / 1000));
    }
    if (q->is_fifo && (req->fields & (KYU_F_DELAY | KYU_F_DELIVER_AT)))
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "DelaySeconds per message is not valid on FIFO queue '%s' (set the "
                           "queue's DelaySeconds instead)",
                           q->name);
    if ((req->fields & KYU_F_ENTRY_DELAYS) && (req->fields & (KYU_F_DELAY | KYU_F_DELIVER_AT)))
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "give each entry's delay (eds) or one for the request (ds, da), not "
                           "both");
    if (req->fields & KYU_F_ENTRY_IDS)
        return check_batch_total(ctx->max_body, req, bodies, err);
    for (size_t i = 0; i < bodies->n; i++) {
        kyu_code_t rc = check_message(q, ctx->max_body, req, i, bodies->b[i].len, err);
        if (rc != KYU_OK)
            return rc;
    }
    return KYU_OK;
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t next_random(uint64_t s[4])
{
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* A random (version 4) UUID, made by the leader and carried in the command. */
void kyu_op_make_uuid(kyu_op_ctx_t *ctx, char out[KYU_UUID_LEN + 1])
{
    uint64_t a = next_random(ctx->rng), b = next_random(ctx->rng);
    a = (a & ~0xf000ULL) | 0x4000ULL;
    b = (b & ~(3ULL << 62)) | (2ULL << 62);
    /* "%08x-%04x-%04x-%04x-%012llx" of a's 64 bits then b's, written by hand: snprintf was
     * a fifth of a send's build on the event loop. */
    static const char digits[] = "0123456789abcdef";
    char *o = out;
    for (int i = 0; i < 32; i++) {
        if (i == 8 || i == 12 || i == 16 || i == 20)
            *o++ = '-';
        uint64_t w = i < 16 ? a : b;
        *o++ = digits[(w >> (60 - 4 * (i % 16))) & 0xf];
    }
    *o = '\0';
}

/* The message's own delay in ms, relative to the command's time (the leader's): a deliver-at
 * becomes one here, so that apply never reads a clock. Validated already; clamped again to
 * the cap because the command's time is read after the validation's. */
static bool send_delay(const kyu_request_t *req, uint64_t now_ms, uint64_t *delay_ms)
{
    if (req->fields & KYU_F_DELAY) {
        *delay_ms = (uint64_t)req->delay * 1000;
        return true;
    }
    if (!(req->fields & KYU_F_DELIVER_AT))
        return false;
    uint64_t d = req->deliver_at_ms > now_ms ? req->deliver_at_ms - now_ms : 0;
    *delay_ms = d < KYU_DELIVER_AT_MAX_S * 1000ull ? d : KYU_DELIVER_AT_MAX_S * 1000ull;
    return true;
}

/* A batch (entry ids): an entry that fails its checks (body, attributes, size, its own
 * delay) fails alone: it goes into the command as a failure, so that the reply and any retry
 * with the same request key say so, and the others are sent. Checked here, right after the
 * request's validate, against the same state. */
void kyu_op_send_build(kyu_op_ctx_t *ctx, const kyu_request_t *req, const kyu_bodies_t *bodies,
                       kyu_command_t *cmd)
{
    uint64_t delay_ms = 0;
    bool has_delay = send_delay(req, cmd->now_ms, &delay_ms);
    bool batch = req->fields & KYU_F_ENTRY_IDS;
    const queue_t *sq = ctx->sm ? zhashx_lookup(ctx->sm->queues, req->queue) : NULL;
    const queue_t *q = batch ? sq : NULL;
    for (size_t b = 0; b < bodies->n; b++) {
        size_t i = cmd->n++;
        kyu_err_t e = {0};
        if (q && check_message(q, ctx->max_body, req, i, bodies->b[b].len, &e) != KYU_OK) {
            cmd->entry_code[i] = (uint8_t)e.code;
            snprintf(cmd->entry_error[i], sizeof cmd->entry_error[i], "%s", e.msg);
            continue;
        }
        cmd->bodies[i] = bodies->b[b].data;
        cmd->body_lens[i] = bodies->b[b].len;
        cmd->has_msg_delay[i] = has_delay;
        cmd->msg_delay_ms[i] = delay_ms;
        if ((req->fields & KYU_F_ENTRY_DELAYS) && req->entry_delay[i] >= 0) {
            cmd->has_msg_delay[i] = true;
            cmd->msg_delay_ms[i] = (uint64_t)req->entry_delay[i] * 1000;
        }
        if (req->fields & KYU_F_MSG_ATTRS) {
            cmd->attrs[i] = req->attrs[i];
            kyu_msg_attrs_sort(&cmd->attrs[i]);
        }
        /* The digests, once for every replica and every receive (carried in the entry). */
        kyu_md5_body(cmd->bodies[i], cmd->body_lens[i], cmd->md5_body[i]);
        kyu_md5_attrs(&cmd->attrs[i], cmd->md5_attrs[i]);
        kyu_op_make_uuid(ctx, cmd->ids[i]);
        /* FIFO: the group and deduplication ids; content-based deduplication's id is the
         * SHA-256 of the body, computed here once (sm_fifo.c) */
        if (req->fields & KYU_F_GROUPS) {
            memcpy(cmd->group_ids[i], req->group_ids[i], sizeof cmd->group_ids[i]);
            memcpy(cmd->dedup_ids[i], req->dedup_ids[i], sizeof cmd->dedup_ids[i]);
        }
        if (sq && sq->is_fifo && sq->cbd && !cmd->dedup_ids[i][0]) {
            char h[KYU_SHA256_HEX_LEN + 1];
            kyu_sha256_hex(cmd->bodies[i], cmd->body_lens[i], h);
            memcpy(cmd->dedup_ids[i], h, sizeof h);
        }
    }
    cmd->has_md5 = true;
}

void kyu_op_send_reply(const kyu_result_t *res, kyu_reply_t *rep, size_t *n_bodies)
{
    (void)n_bodies;
    /* id by id: the reply's ids are wider (KYU_MESSAGE_ID_MAX) than the result's UUIDs */
    rep->n_ids = res->n_ids;
    for (size_t i = 0; i < res->n_ids; i++) {
        rep->sequences[i] = res->sequences[i];
        memcpy(rep->ids[i], res->ids[i], sizeof res->ids[i]);
        memcpy(rep->md5_body[i], res->md5_body[i], sizeof rep->md5_body[i]);
        memcpy(rep->md5_attrs[i], res->md5_attrs[i], sizeof rep->md5_attrs[i]);
    }
    rep->n_results = rep->n_errors = res->n_results; /* a batch with a failed entry */
    memcpy(rep->results, res->results, sizeof rep->results);
    for (size_t i = 0; i < res->n_results; i++)
        snprintf(rep->errors[i], sizeof rep->errors[i], "%s", res->entry_errors[i]);
}

/* items = [[message_id, body(bin)] or [message_id, body(bin), delay_ms] or [message_id,
 * body(bin), delay_ms or nil, attributes] or [message_id, body(bin), delay_ms or nil,
 * attributes or nil, md5(bin)], ...] (command.h): the 5-element form once the digests are
 * computed (always, for a command the leader built). */
void kyu_op_send_encode(const kyu_command_t *cmd, msgpack_packer *pk)
{
    msgpack_pack_array(pk, cmd->n);
    for (size_t i = 0; i < cmd->n; i++) {
        if (cmd->entry_code[i]) { /* a batch's failed entry: [code, why] */
            msgpack_pack_array(pk, 2);
            msgpack_pack_uint32(pk, cmd->entry_code[i]);
            kyu_mp_pack_str(pk, cmd->entry_error[i]);
            continue;
        }
        bool attrs = cmd->attrs[i].n > 0;
        bool fifo = cmd->group_ids[i][0] || cmd->dedup_ids[i][0];
        KYU_ASSERT(!fifo || cmd->has_md5); /* the 6th element follows the 5th */
        msgpack_pack_array(pk, fifo                    ? 6
                               : cmd->has_md5          ? 5
                               : attrs                 ? 4
                               : cmd->has_msg_delay[i] ? 3
                                                       : 2);
        kyu_mp_pack_str(pk, cmd->ids[i]);
        msgpack_pack_bin(pk, cmd->body_lens[i]);
        msgpack_pack_bin_body(pk, cmd->bodies[i], cmd->body_lens[i]);
        if (cmd->has_msg_delay[i])
            msgpack_pack_uint64(pk, cmd->msg_delay_ms[i]);
        else if (attrs || cmd->has_md5)
            msgpack_pack_nil(pk);
        if (attrs)
            kyu_msg_attrs_pack(pk, &cmd->attrs[i]);
        else if (cmd->has_md5)
            msgpack_pack_nil(pk);
        if (cmd->has_md5) {
            uint8_t md5[2 * KYU_MD5_LEN];
            memcpy(md5, cmd->md5_body[i], KYU_MD5_LEN);
            memcpy(md5 + KYU_MD5_LEN, cmd->md5_attrs[i], KYU_MD5_LEN);
            msgpack_pack_bin(pk, attrs ? 2 * KYU_MD5_LEN : KYU_MD5_LEN);
            msgpack_pack_bin_body(pk, md5, attrs ? 2 * KYU_MD5_LEN : KYU_MD5_LEN);
        }
        if (fifo) { /* [group id or nil, deduplication id or nil] */
            msgpack_pack_array(pk, 2);
            const char *ids[2] = {cmd->group_ids[i], cmd->dedup_ids[i]};
            for (int j = 0; j < 2; j++) {
                if (ids[j][0])
                    kyu_mp_pack_str(pk, ids[j]);
                else
                    msgpack_pack_nil(pk);
            }
        }
    }
}

/* A FIFO id of a SEND item's 6th element: nil ("") or a valid id. */
static bool decode_fifo_id(const msgpack_object *o, char *out, size_t max)
{
    out[0] = '\0';
    return o->type == MSGPACK_OBJECT_NIL ||
           (o->type == MSGPACK_OBJECT_STR &&
            kyu_fifo_id_valid(o->via.str.ptr, o->via.str.size, max) &&
            kyu_mp_copy_str(o, out, max));
}

bool kyu_op_send_decode(const msgpack_object *items, kyu_command_t *cmd)
{
    if (items->type != MSGPACK_OBJECT_ARRAY || items->via.array.size > KYU_BATCH_MAX)
        return false;
    cmd->n = items->via.array.size;
    for (size_t i = 0; i < cmd->n; i++) {
        const msgpack_object *it = &items->via.array.ptr[i];
        if (it->type != MSGPACK_OBJECT_ARRAY || it->via.array.size < 2 || it->via.array.size > 6)
            return false;
        const msgpack_object *code = &it->via.array.ptr[0];
        if (code->type == MSGPACK_OBJECT_POSITIVE_INTEGER) { /* a batch's failed entry */
            if (it->via.array.size != 2 || code->via.u64 == 0 ||
                code->via.u64 >= KYU_ERR_CODE_COUNT ||
                !kyu_mp_copy_str(&it->via.array.ptr[1], cmd->entry_error[i], KYU_ERR_MSG_MAX - 1))
                return false;
            cmd->entry_code[i] = (uint8_t)code->via.u64;
            continue;
        }
        const msgpack_object *body = &it->via.array.ptr[1];
        if (!kyu_mp_copy_str(&it->via.array.ptr[0], cmd->ids[i], KYU_UUID_LEN) ||
            body->type != MSGPACK_OBJECT_BIN)
            return false;
        uint32_t size = it->via.array.size;
        if (size == 6) { /* [group id or nil, deduplication id or nil] */
            const msgpack_object *g = &it->via.array.ptr[5];
            if (g->type != MSGPACK_OBJECT_ARRAY || g->via.array.size != 2 ||
                !decode_fifo_id(&g->via.array.ptr[0], cmd->group_ids[i], KYU_GROUP_ID_MAX) ||
                !decode_fifo_id(&g->via.array.ptr[1], cmd->dedup_ids[i], KYU_DEDUP_ID_MAX))
                return false;
            size = 5;
        }
        const msgpack_object *attrs = size >= 4 ? &it->via.array.ptr[3] : NULL;
        if (attrs && !(size == 5 && attrs->type == MSGPACK_OBJECT_NIL) &&
            !kyu_msg_attrs_unpack(attrs, &cmd->attrs[i]))
            return false;
        if (size >= 3 && !(size >= 4 && it->via.array.ptr[2].type == MSGPACK_OBJECT_NIL)) {
            const msgpack_object *d = &it->via.array.ptr[2];
            if (d->type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
                d->via.u64 > KYU_DELIVER_AT_MAX_S * 1000ull)
                return false;
            cmd->has_msg_delay[i] = true;
            cmd->msg_delay_ms[i] = d->via.u64;
        }
        cmd->bodies[i] = body->via.bin.ptr;
        cmd->body_lens[i] = body->via.bin.size;
        if (size == 5) { /* the leader's digests: 16 bytes, and 16 more with attributes */
            const msgpack_object *md5 = &it->via.array.ptr[4];
            size_t want = cmd->attrs[i].n ? 2 * KYU_MD5_LEN : KYU_MD5_LEN;
            if (md5->type != MSGPACK_OBJECT_BIN || md5->via.bin.size != want)
                return false;
            memcpy(cmd->md5_body[i], md5->via.bin.ptr, KYU_MD5_LEN);
            if (cmd->attrs[i].n)
                memcpy(cmd->md5_attrs[i], md5->via.bin.ptr + KYU_MD5_LEN, KYU_MD5_LEN);
        } else { /* an entry written before the digests were carried: computed here */
            kyu_md5_body(cmd->bodies[i], cmd->body_lens[i], cmd->md5_body[i]);
            kyu_md5_attrs(&cmd->attrs[i], cmd->md5_attrs[i]);
        }
    }
    cmd->has_md5 = true;
    return true;
}

/* The MD5s of what was sent, for the reply (the command carries them: command.h); "" for a
 * batch's failed entry. */
static void send_digests(const kyu_command_t *c, kyu_apply_t *a)
{
    KYU_ASSERT(c->has_md5); /* a decoded command always has them */
    for (size_t i = 0; i < c->n; i++) {
        if (c->entry_code[i]) {
            a->res->md5_body[i][0] = a->res->md5_attrs[i][0] = '\0';
            continue;
        }
        kyu_md5_hex(c->md5_body[i], a->res->md5_body[i]);
        if (c->attrs[i].n)
            kyu_md5_hex(c->md5_attrs[i], a->res->md5_attrs[i]);
        else
            a->res->md5_attrs[i][0] = '\0';
    }
}

/* Stores message i of c as message seq of q. Its record (sm.c's key layout): sent_ms(8)
 * flags|id_len(1) id, or with a group or deduplication id flags|MSG_REC_EXT(1) id_len(1) id
 * group_len(1) group dedup_len(1) dedup, then its digests (MSG_REC_DIGESTS: MD5OfMessageBody,
 * and with attributes MD5OfMessageAttributes, 16 bytes each), then for a message with
 * attributes (MSG_REC_ATTRS) their length(4) and their msgpack array, then the body. */
void kyu_sm_store_message(kyu_sm_t *self, queue_t *q, uint64_t seq, uint64_t now_ms, const char *id,
                          const void *body, size_t body_len, const kyu_msg_attrs_t *attrs,
                          const uint8_t md5_body[KYU_MD5_LEN], const uint8_t md5_attrs[KYU_MD5_LEN],
                          uint64_t delay_ms, const char *group, const char *dedup)
{
    size_t idlen = strlen(id), md5_len = attrs->n ? 2 * KYU_MD5_LEN : KYU_MD5_LEN;
    size_t glen = group ? strnlen(group, KYU_GROUP_ID_MAX) : 0;
    size_t dlen = dedup ? strnlen(dedup, KYU_DEDUP_ID_MAX) : 0;
    bool ext = glen || dlen;
    size_t ids_len = ext ? 3 + glen + dlen : 0; /* id_len, group_len group, dedup_len dedup */
    uint8_t fixed[10 + KYU_UUID_LEN + 2 + KYU_GROUP_ID_MAX + KYU_DEDUP_ID_MAX + 2 * KYU_MD5_LEN];
    uint8_t *head = fixed;
    size_t hl = 9 + ids_len + idlen + md5_len, at = hl;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    if (attrs->n) {
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        kyu_msg_attrs_pack(&pk, attrs);
        hl += 4 + sb.size;
        head = malloc(hl);
        KYU_ASSERT(head);
        kyu_put_be32(head + at, (uint32_t)sb.size);
        memcpy(head + at + 4, sb.data, sb.size);
    }
    kyu_put_be64(head, now_ms);
    uint8_t flags = (uint8_t)(MSG_REC_DIGESTS | (attrs->n ? MSG_REC_ATTRS : 0));
    size_t off = 9;
    if (ext) {
        head[8] = flags | MSG_REC_EXT;
        head[off++] = (uint8_t)idlen;
    } else {
        head[8] = (uint8_t)(flags | idlen);
    }
    memcpy(head + off, id, idlen);
    off += idlen;
    if (ext) {
        head[off++] = (uint8_t)glen;
        if (glen)
            memcpy(head + off, group, glen);
        off += glen;
        head[off++] = (uint8_t)dlen;
        if (dlen)
            memcpy(head + off, dedup, dlen);
        off += dlen;
    }
    memcpy(head + off, md5_body, KYU_MD5_LEN);
    if (attrs->n)
        memcpy(head + off + KYU_MD5_LEN, md5_attrs, KYU_MD5_LEN);
    kyu_sm_add_message(self, q, seq, head, hl, body, body_len, now_ms, delay_ms);
    if (head != fixed)
        free(head);
    msgpack_sbuffer_destroy(&sb);
}

static void store_message(kyu_sm_t *self, queue_t *q, const kyu_command_t *c, size_t i,
                          uint64_t seq)
{
    KYU_ASSERT(c->has_md5);
    /* The message's own delay replaces the queue's (SQS: a per-message 0 too). */
    uint64_t delay_ms = c->has_msg_delay[i] ? c->msg_delay_ms[i] : q->delay * 1000ull;
    kyu_sm_store_message(self, q, seq, c->now_ms, c->ids[i], c->bodies[i], c->body_lens[i],
                         &c->attrs[i], c->md5_body[i], c->md5_attrs[i], delay_ms, c->group_ids[i],
                         c->dedup_ids[i]);
}

kyu_code_t kyu_op_send_apply(kyu_sm_t *self, const kyu_command_t *c, kyu_apply_t *a)
{
    kyu_result_t *res = a->res;
    queue_t *q = kyu_sm_queue(self, c->queue, res);
    if (!q)
        return KYU_OK;
    if (c->n > 0)
        kyu_sm_mark_seq(self, self->next_seq, c->now_ms); /* retention (sm_expiry.c) */
    kyu_sm_fifo_dedup_expire(self, q, c->now_ms); /* a FIFO queue's records past the window */
    for (size_t i = 0; i < c->n; i++) {
        res->sequences[i] = 0;
        if (c->entry_code[i]) { /* failed at the leader: nothing stored, its id "" */
            res->results[i] = c->entry_code[i];
            memcpy(res->entry_errors[i], c->entry_error[i], sizeof res->entry_errors[i]);
            res->ids[i][0] = '\0';
            res->n_results = c->n;
            continue;
        }
        res->entry_errors[i][0] = '\0';
        /* FIFO: a duplicate within the window is answered as the first and not stored */
        if (kyu_sm_fifo_dedup_find(q, c->group_ids[i], c->dedup_ids[i], c->now_ms, res->ids[i],
                                   &res->sequences[i]))
            continue;
        uint64_t seq = self->next_seq++;
        store_message(self, q, c, i, seq);
        q->n_messages++;
        memcpy(res->ids[i], c->ids[i], KYU_UUID_LEN + 1);
        if (q->is_fifo) {
            res->sequences[i] = seq;
            kyu_sm_fifo_dedup_put(self, q, c->group_ids[i], c->dedup_ids[i], c->now_ms, c->ids[i],
                                  seq);
        }
    }
    res->n_ids = c->n;
    send_digests(c, a);
    kyu_sm_touch(self, q);
    if (a->dedup) {
        memcpy(a->dedup->ids, res->ids, sizeof res->ids);
        for (size_t i = 0; i < c->n; i++)
            a->dedup->codes[i] = c->entry_code[i];
        a->dedup->n = res->n_ids;
    }
    return KYU_OK;
}

uint64_t kyu_sm_send_visible_at_once(kyu_sm_t *self, const kyu_command_t *c)
{
    const queue_t *q = zhashx_lookup(self->queues, c->queue);
    if (!q)
        return 0;
    uint64_t n = 0;
    for (size_t i = 0; i < c->n; i++) {
        uint64_t delay_ms = c->has_msg_delay[i] ? c->msg_delay_ms[i] : q->delay * 1000ull;
        if (c->entry_code[i] || delay_ms > 0)
            continue;
        char id[KYU_UUID_LEN + 1];
        uint64_t seq;
        if (q->is_fifo &&
            (!kyu_sm_fifo_group_empty(q, c->group_ids[i]) ||
             kyu_sm_fifo_dedup_find(q, c->group_ids[i], c->dedup_ids[i], c->now_ms, id, &seq)))
            continue;
        n++;
    }
    return n;
}

/* A retried SEND is answered with the first attempt's message ids, and a batch's failed
 * entries with the first attempt's codes; nothing is stored. Its digests are of the retry's
 * messages: the same as the first attempt's. */
kyu_code_t kyu_op_send_replay(kyu_sm_t *self, const kyu_command_t *c, const kyu_dedup_t *d,
                              kyu_apply_t *a)
{
    kyu_result_t *res = a->res;
    memcpy(res->ids, d->ids, sizeof d->ids);
    res->n_ids = d->n;
    send_digests(c, a);
    const queue_t *q = zhashx_lookup(self->queues, c->queue);
    for (size_t i = 0; i < d->n; i++) {
        /* A FIFO message's SequenceNumber, from its deduplication record (0 once gone) */
        char id[KYU_UUID_LEN + 1];
        res->sequences[i] = 0;
        if (q && i < c->n &&
            kyu_sm_fifo_dedup_find(q, c->group_ids[i], c->dedup_ids[i], c->now_ms, id,
                                   &res->sequences[i]) &&
            strcmp(id, d->ids[i]) != 0)
            res->sequences[i] = 0;
    }
    for (size_t i = 0; i < d->n; i++) {
        /* (An entry that passed the first time but not the retry's checks, the queue's limit
         * having changed between, is answered with its id and without digests.) */
        if (i >= c->n)
            res->md5_body[i][0] = res->md5_attrs[i][0] = '\0';
        res->entry_errors[i][0] = '\0';
        if (!d->codes[i])
            continue;
        res->results[i] = d->codes[i];
        res->n_results = d->n;
        res->md5_body[i][0] = res->md5_attrs[i][0] = '\0';
        if (i < c->n && c->entry_code[i] == d->codes[i])
            memcpy(res->entry_errors[i], c->entry_error[i], sizeof res->entry_errors[i]);
        else
            snprintf(res->entry_errors[i], sizeof res->entry_errors[i],
                     "failed on the first attempt of this request: %s", kyu_code_name(d->codes[i]));
    }
    return KYU_OK;
}
