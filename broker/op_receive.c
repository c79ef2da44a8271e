/* op_receive: RECEIVE — lease visible messages (a FIFO queue's in group order, sm_fifo.c),
 * dead-letter moves on the way, the in-flight limit, ReceiveRequestAttemptId; its row:
 * ops.c. SEND: op_message.c. */
#include "sm_internal.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

/* ---- RECEIVE ---- */

/* The in-flight limit (SQS: 120,000 per standard queue, OverLimit past it). A receive leases
 * at most as many messages as the queue has room for; one that finds a visible message and
 * no room is refused and changes nothing. Checked in apply, with the counts at the command's
 * time (sm_index.c: every replica has the same) and the limit the leader put in the command
 * (a node's flag could differ), and before proposing, so that a consumer polling a queue at
 * its limit costs no log write. */
static kyu_code_t over_limit(kyu_err_t *err, const char *queue, uint64_t inflight, uint32_t limit)
{
    return kyu_err_set(err, KYU_ERR_LIMIT_EXCEEDED,
                       "OverLimit: queue '%s' has %llu messages in flight, its limit is %u "
                       "(delete or release some first; kyu-broker --max-inflight)",
                       queue, (unsigned long long)inflight, limit);
}

kyu_code_t kyu_op_receive_validate(kyu_op_ctx_t *ctx, const kyu_request_t *req,
                                   const kyu_bodies_t *bodies, kyu_err_t *err)
{
    if (kyu_op_queue_exists(ctx, req, bodies, err) != KYU_OK)
        return err->code;
    queue_t *q = zhashx_lookup(ctx->sm->queues, req->queue);
    if (!ctx->max_inflight || (req->fields & KYU_F_RQ)) /* a retry is answered from its record */
        return KYU_OK;
    /* Without a replica (the rows' unit tests) the last command's time stands for the
     * leader's. */
    uint64_t now = ctx->replica ? kyu_replica_now(ctx->replica) : kyu_sm_last_now(ctx->sm);
    uint64_t inflight = 0, delayed = 0;
    kyu_sm_index_counts(q, now, &inflight, &delayed);
    if (inflight >= ctx->max_inflight && kyu_sm_index_has_visible(q, now))
        return over_limit(err, req->queue, inflight, ctx->max_inflight);
    return KYU_OK;
}

/* ReceiveRequestAttemptId: a RECEIVE with one takes a request key made from it and its
 * queue's id (a 128-bit BLAKE2b), so that a retry with the same id within the request keys'
 * window is answered with the leases of the first attempt still held, under the same
 * receipt handles (sm_dedup.c, kyu_op_receive_replay), whichever client retries it. An
 * attempt that leased nothing records nothing (the next one receives afresh). */
static bool attempt_key(kyu_op_ctx_t *ctx, const kyu_request_t *req, uint64_t *client,
                        uint64_t *key)
{
    if (!(req->fields & KYU_F_ATTEMPT))
        return false;
    uint8_t in[8 + KYU_ATTEMPT_ID_MAX], h[16];
    size_t n = strlen(req->attempt_id);
    kyu_put_be64(in, kyu_sm_queue_id(ctx->sm, req->queue));
    memcpy(in + 8, req->attempt_id, n);
    crypto_generichash(h, sizeof h, in, 8 + n, (const uint8_t *)"kyu-receive-attempt", 19);
    *client = kyu_get_be64(h) | 1; /* never 0: 0 is "no request key" */
    *key = kyu_get_be64(h + 8) | 1;
    return true;
}

void kyu_op_receive_build(kyu_op_ctx_t *ctx, const kyu_request_t *req, const kyu_bodies_t *bodies,
                          kyu_command_t *cmd)
{
    (void)bodies;
    cmd->max_inflight = ctx->max_inflight;
    cmd->attempt = attempt_key(ctx, req, &cmd->rq_client, &cmd->rq_key);
}

/* items = [max in flight or 0, attempt, chosen (bin) or nil, 1] (command.h); entries written
 * before generations skipped by terms hold [max in flight], [], [max in flight or 0, true] or
 * [max in flight or 0, false, chosen] and give each lease its generation + 1 (gen_legacy). */
void kyu_op_receive_encode(const kyu_command_t *cmd, msgpack_packer *pk)
{
    msgpack_pack_array(pk, 4);
    msgpack_pack_uint32(pk, cmd->max_inflight);
    kyu_mp_pack_bool(pk, cmd->attempt);
    if (cmd->early) { /* the leases the leader chose and answered (op_receive_early.c) */
        uint8_t b[KYU_BATCH_MAX * 12];
        KYU_ASSERT(!cmd->attempt && cmd->n_chosen >= 1 && cmd->n_chosen <= KYU_BATCH_MAX);
        for (size_t i = 0; i < cmd->n_chosen; i++) {
            kyu_put_be64(b + 12 * i, cmd->chosen_seq[i]);
            kyu_put_be32(b + 12 * i + 8, cmd->chosen_gen[i]);
        }
        msgpack_pack_bin(pk, 12 * cmd->n_chosen);
        msgpack_pack_bin_body(pk, b, 12 * cmd->n_chosen);
    } else {
        msgpack_pack_nil(pk);
    }
    /* the generation rule: kyu_lease_next_gen (binaries older than it refuse 4 items) */
    msgpack_pack_uint8(pk, 1);
}

/* The early form's chosen leases (b): 1..KYU_BATCH_MAX of 12 bytes, generations >= 1, and
 * its timeout explicit (the leader resolves the queue's). */
static bool decode_chosen(const msgpack_object *b, kyu_command_t *cmd)
{
    if (b->type != MSGPACK_OBJECT_BIN || b->via.bin.size == 0 || b->via.bin.size % 12 != 0 ||
        b->via.bin.size / 12 > KYU_BATCH_MAX || cmd->vt < 0)
        return false;
    const uint8_t *p = (const uint8_t *)b->via.bin.ptr;
    cmd->n_chosen = b->via.bin.size / 12;
    for (size_t i = 0; i < cmd->n_chosen; i++) {
        cmd->chosen_seq[i] = kyu_get_be64(p + 12 * i);
        cmd->chosen_gen[i] = kyu_get_be32(p + 12 * i + 8);
        if (cmd->chosen_gen[i] == 0)
            return false;
    }
    cmd->early = true;
    return true;
}

/* The forms written before the generation rule (command.h). */
static bool decode_legacy(const msgpack_object *items, kyu_command_t *cmd)
{
    cmd->gen_legacy = true;
    if (items->via.array.size == 0)
        return true;
    const msgpack_object *o = &items->via.array.ptr[0];
    uint32_t n = items->via.array.size;
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER || (o->via.u64 == 0 && n == 1) ||
        o->via.u64 > UINT32_MAX)
        return false;
    cmd->max_inflight = (uint32_t)o->via.u64;
    if (n == 1)
        return true;
    const msgpack_object *t = &items->via.array.ptr[1];
    if (t->type != MSGPACK_OBJECT_BOOLEAN || t->via.boolean != (n == 2))
        return false;
    if (n == 3)
        return decode_chosen(&items->via.array.ptr[2], cmd);
    cmd->attempt = true;
    return true;
}

bool kyu_op_receive_decode(const msgpack_object *items, kyu_command_t *cmd)
{
    if (items->type != MSGPACK_OBJECT_ARRAY || items->via.array.size > 4)
        return false;
    if (items->via.array.size < 4)
        return decode_legacy(items, cmd);
    const msgpack_object *o = items->via.array.ptr;
    if (o[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER || o[0].via.u64 > UINT32_MAX ||
        o[1].type != MSGPACK_OBJECT_BOOLEAN || o[3].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
        o[3].via.u64 != 1)
        return false;
    cmd->max_inflight = (uint32_t)o[0].via.u64;
    cmd->attempt = o[1].via.boolean;
    if (o[2].type == MSGPACK_OBJECT_NIL)
        return true;
    return !cmd->attempt && decode_chosen(&o[2], cmd);
}

/* Nothing to lease: answered empty without a command (a receive that finds nothing changes
 * nothing, and every acknowledged send is already applied), so an idle consumer costs no
 * fsync. Not for a retry the state machine remembers: its first attempt may have leased
 * the very messages that make the queue look empty now, and the retry must get them. */
bool kyu_op_receive_answer_empty(kyu_op_ctx_t *ctx, const kyu_request_t *req)
{
    uint64_t now = kyu_replica_now(ctx->replica), client = 0, key = 0;
    if (attempt_key(ctx, req, &client, &key) && kyu_sm_knows_request(ctx->sm, client, key, now))
        return false;
    return kyu_sm_queue_exists(ctx->sm, req->queue) &&
           !kyu_sm_has_visible(ctx->sm, req->queue, now) &&
           !((req->fields & KYU_F_RQ) &&
             kyu_sm_knows_request(ctx->sm, req->rq_client, req->rq_key, now));
}

/* The request's wait ("wt"), else its queue's default (ReceiveMessageWaitTimeSeconds). */
uint64_t kyu_op_receive_wait_ms(kyu_op_ctx_t *ctx, const kyu_request_t *req)
{
    uint32_t s = (req->fields & KYU_F_WAIT) ? req->wait : kyu_sm_receive_wait(ctx->sm, req->queue);
    return (uint64_t)s * 1000;
}

void kyu_op_receive_reply(const kyu_result_t *res, kyu_reply_t *rep, size_t *n_bodies)
{
    rep->n_msgs = res->n_msgs;
    memcpy(rep->msgs, res->msgs, res->n_msgs * sizeof rep->msgs[0]);
    *n_bodies = res->n_msgs;
}

/* Fills the received messages' metas and bodies from their message records, read together
 * (one RocksDB MultiGet for those not buffered). */
kyu_code_t kyu_sm_receive_read(kyu_sm_t *self, const queue_t *q, const uint64_t *seqs,
                               const lease_t *leases, size_t n, kyu_result_t *res, kyu_err_t *err)
{
    kyu_sent_t m[KYU_BATCH_MAX];
    char *owned[KYU_BATCH_MAX];
    if (n == 0)
        return KYU_OK;
    if (!kyu_sm_read_messages(self, q, seqs, n, m, owned, err))
        return err->code;
    for (size_t j = 0; j < n; j++) {
        size_t i = res->n_msgs++;
        kyu_msg_meta_t *meta = &res->msgs[i];
        memset(meta, 0, offsetof(kyu_msg_meta_t, attrs.a)); /* attrs.a: below attrs.n only */
        memset((char *)meta + offsetof(kyu_msg_meta_t, md5_body), 0,
               sizeof *meta - offsetof(kyu_msg_meta_t, md5_body));
        memcpy(meta->message_id, m[j].id, sizeof m[j].id);
        kyu_sm_handle_format(meta->handle, &self->hmac_next, q->qid, seqs[j], leases[j].gen);
        meta->receive_count = leases[j].receive_count;
        meta->sent_ms = m[j].sent_ms;
        meta->first_receive_ms = leases[j].first_ms;
        meta->attrs = m[j].attrs;
        kyu_sent_digests(&m[j], meta);
        kyu_sent_fifo_ids(&m[j], meta);
        meta->sequence = q->is_fifo ? seqs[j] : 0;
        if (!kyu_sm_read_provenance(self, q, seqs[j], meta, err)) {
            for (size_t r = j; r < n; r++)
                free(owned[r]);
            return err->code;
        }
        res->owned[i] = owned[j];
        res->bodies[i] = m[j].body;
        res->body_lens[i] = m[j].body_len;
    }
    return KYU_OK;
}

/* Leases up to max visible messages: each gets a new lease generation (its receipt handle)
 * and stays hidden for the visibility timeout. A message whose receive count has reached
 * its queue's maxReceiveCount moves to the dead-letter queue instead (op_deadletter.c), and
 * the receive takes the next one, up to KYU_DLQ_MOVES_MAX moves. */
kyu_code_t kyu_op_receive_apply(kyu_sm_t *self, const kyu_command_t *c, kyu_apply_t *a)
{
    if (c->early)
        return kyu_op_receive_apply_early(self, c, a);
    queue_t *q = kyu_sm_queue(self, c->queue, a->res);
    if (!q)
        return KYU_OK;
    uint32_t max = c->max ? c->max : 1, found = 0, moved = 0;
    if (c->max_inflight) { /* the queue's counts are at the command's time (sm_apply.c) */
        uint64_t room = q->n_inflight < c->max_inflight ? c->max_inflight - q->n_inflight : 0;
        if (room == 0 && kyu_sm_index_has_visible(q, c->now_ms)) {
            over_limit(kyu_result_err(a->res), c->queue, q->n_inflight, c->max_inflight);
            return KYU_OK;
        }
        if (room < max)
            max = (uint32_t)room;
    }
    uint64_t vt_ms = (uint64_t)(c->vt >= 0 ? (uint64_t)c->vt : q->vt) * 1000;
    uint64_t seqs[KYU_BATCH_MAX], taken[KYU_BATCH_MAX];
    lease_t leases[KYU_BATCH_MAX], tl[KYU_BATCH_MAX];
    /* A FIFO queue: from its ready groups, in their order (sm_fifo.c). A message due for its
     * dead-letter queue moves there (keeping its group); while every message taken moved,
     * take again (the groups moved on). One pass that finds any is the answer: its messages
     * are leased together, so a group's are never taken twice. */
    while (q->fifo && found == 0 && moved < KYU_DLQ_MOVES_MAX) {
        uint32_t got = kyu_sm_fifo_take(q, c->now_ms, max, taken, tl);
        if (got == 0)
            break;
        for (uint32_t i = 0; i < got; i++) {
            queue_t *dlq =
                moved < KYU_DLQ_MOVES_MAX ? kyu_sm_dead_letter_due(self, q, &tl[i]) : NULL;
            if (dlq) {
                kyu_code_t rc =
                    kyu_sm_move_to_dead_letter(self, q, dlq, taken[i], &tl[i], c->now_ms, a->err);
                if (rc != KYU_OK)
                    return rc;
                moved++;
                continue;
            }
            /* Past a message that stays (moved ones are gone from their group): in order */
            seqs[found] = taken[i];
            leases[found++] = tl[i];
        }
    }
    /* Take until max are found; the leases are set after the loop, so that a message leased
     * here (with a visibility timeout of 0 it would be due again at once) is taken once. */
    while (!q->fifo && found < max && moved < KYU_DLQ_MOVES_MAX) {
        uint32_t got = q->fair ? kyu_sm_fair_take(self, q, c->now_ms, max - found, taken, tl)
                               : kyu_sm_index_take(q, c->now_ms, max - found, taken, tl);
        if (got == 0)
            break;
        for (uint32_t i = 0; i < got; i++) {
            bool dup = false; /* a second heap entry of a message taken by an earlier batch */
            for (uint32_t k = 0; k < found && !dup; k++)
                dup = seqs[k] == taken[i];
            queue_t *dlq = dup ? NULL : kyu_sm_dead_letter_due(self, q, &tl[i]);
            if (dlq) {
                kyu_code_t rc =
                    kyu_sm_move_to_dead_letter(self, q, dlq, taken[i], &tl[i], c->now_ms, a->err);
                if (rc != KYU_OK)
                    return rc;
                moved++;
            } else if (!dup) {
                seqs[found] = taken[i];
                leases[found++] = tl[i];
            }
        }
    }
    for (uint32_t i = 0; i < found; i++) {
        lease_t *l = &leases[i];
        l->visible_at = c->now_ms + vt_ms;
        l->receive_count++;
        kyu_lease_give_gen(l, c, self->next_term); /* past any lease lost before */
        if (l->receive_count == 1) /* its first receive (a delayed one's first_ms is a mark) */
            l->first_ms = c->now_ms;
        l->last_ms = c->now_ms;
        kyu_sm_set_lease(self, q, seqs[i], l);
    }
    for (uint32_t i = 0; i < found && a->dedup; i++) {
        a->dedup->seqs[a->dedup->n] = seqs[i];
        a->dedup->gens[a->dedup->n++] = leases[i].gen;
    }
    if (a->dedup && c->attempt && found == 0)
        a->dedup->no_record = true; /* a retried attempt receives afresh */
    return a->want_bodies ? kyu_sm_receive_read(self, q, seqs, leases, found, a->res, a->err)
                          : KYU_OK;
}

/* A retried RECEIVE answers with the leases its first attempt granted that are still held
 * under the same handle (not deleted, not run out, not received again since). */
kyu_code_t kyu_op_receive_replay(kyu_sm_t *self, const kyu_command_t *c, const kyu_dedup_t *d,
                                 kyu_apply_t *a)
{
    queue_t *q = kyu_sm_queue(self, c->queue, a->res);
    if (!q || !a->want_bodies)
        return KYU_OK;
    uint64_t seqs[KYU_BATCH_MAX];
    lease_t leases[KYU_BATCH_MAX];
    size_t n = 0;
    for (size_t i = 0; i < d->n && n < KYU_BATCH_MAX; i++) {
        lease_t l;
        if (kyu_sm_index_lease(q, d->seqs[i], &l) && l.gen == d->gens[i] &&
            l.visible_at > c->now_ms) {
            seqs[n] = d->seqs[i];
            leases[n++] = l;
        }
    }
    return kyu_sm_receive_read(self, q, seqs, leases, n, a->res, a->err);
}
