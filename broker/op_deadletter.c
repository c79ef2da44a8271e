/* op_deadletter: dead-letter queues — the checks of a RedrivePolicy against the state, the
 * move of a message that a receive would lease past its queue's maxReceiveCount, and
 * LIST_DEAD_LETTER_SOURCE_QUEUES (its row: ops.c).
 *
 * A move happens inside the RECEIVE command's apply (op_receive.c), so it is all or nothing
 * with the receive's entry, and every replica, a restart's replay and a new leader make the
 * same moves: which message moves depends on the state and the command's time alone. The
 * message keeps its seq (global, never reused), its record (copied whole, as it is stored:
 * id, sent time, body and whatever the record holds), its receive count, lease generation
 * and first receive; it is visible in the dead-letter queue at once. Beyond SQS, it gets a
 * provenance record (messages column family, key qid seq 'd'): the queue it left, its
 * receive count then, its first receive and the time of the move; a receive from the
 * dead-letter queue reports them. Its receive count goes on from there (SQS's
 * ApproximateReceiveCount is not reset either), so a dead-letter queue with a RedrivePolicy
 * of its own sends a message on at its first receive there once the count has reached that
 * queue's maxReceiveCount.
 *
 * A source whose dead-letter queue no longer exists (deleted with force) keeps its
 * RedrivePolicy, as SQS keeps the ARN: its messages are then leased as if it had none, and
 * move again once a queue of that name exists. */
#include "sm_internal.h"

#include <stdlib.h>
#include <string.h>

kyu_code_t kyu_sm_check_redrive(kyu_sm_t *self, const char *source, const char *dlq, kyu_err_t *err)
{
    if (strcmp(source, dlq) == 0)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "RedrivePolicy: queue '%s' cannot be its own dead-letter queue", source);
    const queue_t *d = zhashx_lookup(self->queues, dlq);
    if (!d)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "RedrivePolicy: dead-letter queue '%s' does not exist", dlq);
    /* SQS: a FIFO queue's dead-letter queue is FIFO, a standard queue's standard (a queue
     * is FIFO exactly when its name ends in .fifo: create-queue checks it). */
    bool src_fifo = kyu_queue_name_fifo(source, strlen(source));
    if (src_fifo != d->is_fifo)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "RedrivePolicy: the dead-letter queue of a %s queue must be a %s "
                           "queue too ('%s' is not)",
                           src_fifo ? "FIFO" : "standard", src_fifo ? "FIFO" : "standard", dlq);
    /* A cycle (HARDENING.md): follow the dead-letter queues from dlq by name. */
    const queue_t *at = d;
    for (size_t steps = 0; at && at->dlq[0] && steps <= KYU_QUEUES_MAX; steps++) {
        if (strcmp(at->dlq, source) == 0)
            return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                               "RedrivePolicy: '%s' as the dead-letter queue of '%s' makes a cycle "
                               "('%s' sends its messages on to '%s')",
                               dlq, source, at->name, source);
        at = zhashx_lookup(self->queues, at->dlq);
    }
    kyu_queue_ext_t *x = malloc(sizeof *x);
    if (!x)
        return kyu_err_set(err, KYU_ERR_INTERNAL, "out of memory");
    kyu_code_t rc = KYU_OK;
    if (!kyu_sm_queue_ext(d, x)) {
        rc = kyu_err_set(err, KYU_ERR_STORAGE, "queue '%s': corrupt attributes", dlq);
    } else if (x->allow == KYU_REDRIVE_DENY_ALL) {
        rc = kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                         "RedrivePolicy: queue '%s' is not allowed as a dead-letter queue (its "
                         "RedriveAllowPolicy is denyAll)",
                         dlq);
    } else if (x->allow == KYU_REDRIVE_BY_QUEUE) {
        size_t i = 0;
        while (i < x->n_sources && strcmp(x->sources[i], source) != 0)
            i++;
        if (i == x->n_sources)
            rc = kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                             "RedrivePolicy: queue '%s' is not allowed as the dead-letter queue "
                             "of '%s' (its RedriveAllowPolicy is byQueue and does not list it)",
                             dlq, source);
    }
    free(x);
    return rc;
}

kyu_code_t kyu_sm_check_not_dead_letter(kyu_sm_t *self, const char *name, kyu_err_t *err)
{
    size_t n = 0;
    const char *first = NULL;
    for (const queue_t *q = zhashx_first(self->queues); q; q = zhashx_next(self->queues))
        if (strcmp(q->dlq, name) == 0 && !q->deleted) {
            /* the smallest name, so that the text is the same on every replica */
            if (!first || strcmp(q->name, first) < 0)
                first = q->name;
            n++;
        }
    if (n == 0)
        return KYU_OK;
    char others[48] = "";
    if (n > 1)
        snprintf(others, sizeof others, " and %zu other queue%s", n - 1, n > 2 ? "s" : "");
    return kyu_err_set(err, KYU_ERR_QUEUE_IN_USE,
                       "queue '%s' is the dead-letter queue of '%s'%s: delete it with force (their "
                       "messages past maxReceiveCount then stay where they are) or remove their "
                       "RedrivePolicy first",
                       name, first, others);
}

/* The dead-letter queue a message of q with lease l moves to instead of being leased, or
 * NULL: its receive count has reached q's maxReceiveCount (this receive would pass it) and
 * the queue its RedrivePolicy names exists. */
queue_t *kyu_sm_dead_letter_due(kyu_sm_t *self, const queue_t *q, const lease_t *l)
{
    if (!q->dlq[0] || l->receive_count < q->max_receive_count)
        return NULL;
    queue_t *d = zhashx_lookup(self->queues, q->dlq);
    return d != q ? d : NULL;
}

static void provenance_key(uint8_t k[KEY_QS + 1], uint64_t qid, uint64_t seq)
{
    key_qs(k, qid, seq);
    k[KEY_QS] = 'd';
}

void kyu_sm_drop_provenance(kyu_sm_t *self, const queue_t *q, uint64_t seq)
{
    uint8_t k[KEY_QS + 1];
    if (!q->moved_in)
        return;
    provenance_key(k, q->qid, seq);
    kyu_sm_del(self, KYU_CF_MESSAGES, k, sizeof k);
}

kyu_code_t kyu_sm_move_to_dead_letter(kyu_sm_t *self, queue_t *src, queue_t *dlq, uint64_t seq,
                                      const lease_t *l, uint64_t now, kyu_err_t *err)
{
    uint8_t from[KEY_QS], to[KEY_QS], pk_to[KEY_QS + 1];
    key_qs(from, src->qid, seq);
    key_qs(to, dlq->qid, seq);
    size_t vl = 0;
    char *rec = kyu_sm_read(self, KYU_CF_MESSAGES, from, KEY_QS, &vl, err);
    if (!rec)
        return err->code ? err->code
                         : kyu_err_set(err, KYU_ERR_STORAGE, "message record %llu missing",
                                       (unsigned long long)seq);
    /* The message keeps its seq: below what the dead-letter queue's last expiry went up to,
     * or a purge or expiry of it earlier in this entry (kyu-sim-kyu found both: replicas
     * apart on the next expiry, and the moved records dropped with the purged ones). */
    kyu_code_t rc = kyu_sm_moved_in(self, dlq, seq, err);
    if (rc != KYU_OK) {
        free(rec);
        return rc;
    }
    /* seq is never reused: the dead-letter queue holds nothing under it (absent). */
    kyu_sm_put2(self, KYU_CF_MESSAGES, to, KEY_QS, rec, vl, NULL, 0, true);
    kyu_sent_t m; /* its group, in a FIFO dead-letter queue (sm_fifo.c), copied from rec */
    char group[KYU_GROUP_ID_MAX + 1] = "";
    size_t glen = 0;
    if (kyu_sm_parse_head(rec, vl, &m) && m.group_len) { /* or a standard one's (sm_fair.c) */
        glen = m.group_len;
        memcpy(group, m.group, glen);
    }
    free(rec);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 5);
    kyu_mp_pack_str(&pk, src->name);
    msgpack_pack_uint32(&pk, l->receive_count);
    msgpack_pack_uint64(&pk, l->first_ms);
    msgpack_pack_uint64(&pk, l->last_ms);
    msgpack_pack_uint64(&pk, now);
    provenance_key(pk_to, dlq->qid, seq);
    kyu_sm_put2(self, KYU_CF_MESSAGES, pk_to, sizeof pk_to, sb.data, sb.size, NULL, 0, true);
    msgpack_sbuffer_destroy(&sb);
    /* Visible in the dead-letter queue at once, with its history. */
    lease_t moved = *l;
    moved.visible_at = now;
    uint8_t lv[LEASE_LEN_MAX];
    kyu_sm_put2(self, KYU_CF_LEASES, to, KEY_QS, lv, lease_encode(lv, &moved), NULL, 0, true);
    if (!dlq->fifo)
        kyu_sm_fair_add(self, dlq, seq, group, glen); /* before its lease is set */
    kyu_sm_index_set_lease(dlq, seq, &moved);
    if (dlq->fifo)
        kyu_sm_fifo_add(dlq, seq, group, glen);
    kyu_sm_note_visible(self, dlq);      /* long polls on the dead-letter queue (sm_wake.c) */
    kyu_sm_drop_message(self, src, seq); /* and its provenance, if it had moved before */
    src->n_messages--;
    dlq->n_messages++;
    dlq->moved_in = true;
    kyu_sm_touch(self, src);
    kyu_sm_touch(self, dlq);
    return KYU_OK;
}

bool kyu_sm_read_provenance(kyu_sm_t *self, const queue_t *q, uint64_t seq, kyu_msg_meta_t *m,
                            kyu_err_t *err)
{
    if (!q->moved_in)
        return true;
    uint8_t k[KEY_QS + 1];
    provenance_key(k, q->qid, seq);
    size_t vl = 0;
    char *v = kyu_sm_read(self, KYU_CF_MESSAGES, k, sizeof k, &vl, err);
    if (!v)
        return err->code == KYU_OK; /* a message that was sent here, not moved */
    msgpack_unpacked u;
    bool ok = kyu_msgpack_unpack_bounded(v, vl, 2, &u, err) == KYU_OK;
    if (ok) {
        const msgpack_object *o = &u.data, *f = o->via.array.ptr;
        ok = o->type == MSGPACK_OBJECT_ARRAY && o->via.array.size == 5 &&
             kyu_mp_copy_str(&f[0], m->dlq_source, KYU_NAME_MAX) &&
             f[1].type == MSGPACK_OBJECT_POSITIVE_INTEGER && f[1].via.u64 <= UINT32_MAX &&
             f[2].type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
             f[3].type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
             f[4].type == MSGPACK_OBJECT_POSITIVE_INTEGER;
        if (ok) {
            m->dlq_receive_count = (uint32_t)f[1].via.u64;
            m->dlq_first_receive_ms = f[2].via.u64;
            m->dlq_last_receive_ms = f[3].via.u64;
            m->dlq_moved_ms = f[4].via.u64;
        }
        msgpack_unpacked_destroy(&u);
    }
    free(v);
    if (!ok)
        kyu_err_set(err, KYU_ERR_STORAGE, "corrupt provenance record of message %llu",
                    (unsigned long long)seq);
    return ok;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}

kyu_code_t kyu_op_dead_letter_sources_answer(kyu_op_ctx_t *ctx, const kyu_request_t *req,
                                             kyu_reply_t *rep, kyu_err_t *err)
{
    kyu_sm_t *self = ctx->sm;
    if (!zhashx_lookup(self->queues, req->queue))
        return kyu_err_set(err, KYU_ERR_NO_SUCH_QUEUE, "queue '%s' does not exist", req->queue);
    size_t n = 0;
    for (const queue_t *q = zhashx_first(self->queues); q; q = zhashx_next(self->queues))
        n += strcmp(q->dlq, req->queue) == 0;
    rep->queues = calloc(n ? n : 1, sizeof *rep->queues);
    if (!rep->queues)
        return kyu_err_set(err, KYU_ERR_INTERNAL, "out of memory");
    for (const queue_t *q = zhashx_first(self->queues); q; q = zhashx_next(self->queues))
        if (strcmp(q->dlq, req->queue) == 0)
            memcpy(rep->queues[rep->n_queues++], q->name, sizeof q->name);
    qsort(rep->queues, rep->n_queues, sizeof *rep->queues, name_cmp);
    return KYU_OK;
}
