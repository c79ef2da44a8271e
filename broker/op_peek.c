/* op_peek: PEEK — browsing a queue without leasing (SQS has none; NATS and Pulsar do). A read
 * answered by the leader from the applied state, no command: up to max messages (1..10,
 * default 10, as a receive: at most 10 bodies of the maximum message size in one reply) in
 * queue order, which is the order of their positions (seq: the order they were sent in,
 * whatever their state), from position `from` on. Each comes with its body, id, sent time,
 * receive count, first receive, state (visible, in flight, delayed, at the leader's time)
 * and, in flight or delayed, when it becomes visible; as a receive gives them, its message
 * attributes, MD5OfMessageBody and MD5OfMessageAttributes, and for a message a RedrivePolicy
 * moved here, where from and why (op_deadletter.c's provenance record: one more read per
 * message, in queues messages were moved into only). The reply names the position to ask
 * from next when more follow. Message ids are random, so pages go by position, not by id:
 * finding a message by its id would scan the queue. Nothing changes: no lease, no receive
 * count, no handle. Cost (sm_index.c): a binary search of the messages never received and a
 * pass over the queue's leases (received or delayed messages), then one MultiGet of the
 * bodies. */
#include "sm_internal.h"

#include <string.h>

kyu_code_t kyu_op_peek_answer(kyu_op_ctx_t *ctx, const kyu_request_t *req, kyu_reply_t *rep,
                              kyu_err_t *err)
{
    queue_t *q = zhashx_lookup(ctx->sm->queues, req->queue);
    if (!q)
        return kyu_err_set(err, KYU_ERR_NO_SUCH_QUEUE, "queue '%s' does not exist", req->queue);
    size_t max = (req->fields & KYU_F_MAX) ? req->max : KYU_BATCH_MAX;
    uint64_t seqs[KYU_BATCH_MAX + 1];
    lease_t leases[KYU_BATCH_MAX + 1];
    bool fresh[KYU_BATCH_MAX + 1];
    /* One more than asked for: whether another page follows. */
    size_t n = kyu_sm_index_peek(q, req->from, max + 1, seqs, leases, fresh);
    if (n > max) {
        rep->has_next = true;
        rep->next = seqs[max];
        n = max;
    }
    if (n == 0)
        return KYU_OK;
    kyu_sent_t m[KYU_BATCH_MAX];
    kyu_result_t *out = ctx->answer_bodies;
    if (!kyu_sm_read_messages(ctx->sm, q, seqs, n, m, out->owned, err))
        return err->code;
    /* Without a replica (the rows' unit tests) the last command's time stands for the
     * leader's. */
    uint64_t now = ctx->replica ? kyu_replica_now(ctx->replica) : kyu_sm_last_now(ctx->sm);
    for (size_t i = 0; i < n; i++) {
        kyu_msg_meta_t *meta = &rep->msgs[i];
        const lease_t *l = &leases[i];
        memcpy(meta->message_id, m[i].id, sizeof m[i].id);
        meta->sent_ms = m[i].sent_ms;
        meta->receive_count = l->receive_count;
        meta->first_receive_ms = l->gen > 0 ? l->first_ms : 0; /* gen 0: a delay's mark */
        meta->position = seqs[i];
        meta->attrs = m[i].attrs; /* points into out->owned[i], sent with the reply */
        kyu_sent_digests(&m[i], meta);
        kyu_sent_fifo_ids(&m[i], meta);
        meta->sequence = q->is_fifo ? seqs[i] : 0;
        if (!kyu_sm_read_provenance(ctx->sm, q, seqs[i], meta, err))
            return err->code; /* out->owned are freed with the answer */
        meta->state = KYU_MSG_VISIBLE;
        if (!fresh[i] && l->visible_at > now) {
            meta->state = l->gen > 0 ? KYU_MSG_INFLIGHT : KYU_MSG_DELAYED;
            meta->visible_at_ms = l->visible_at;
        }
        out->bodies[i] = m[i].body;
        out->body_lens[i] = m[i].body_len;
    }
    rep->n_msgs = out->n_msgs = n;
    return KYU_OK;
}
