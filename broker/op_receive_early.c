/* op_receive_early: a RECEIVE answered before its lease is durable (issue 12, W1's consume).
 *
 * On a standard queue the leader chooses the messages when the request arrives
 * (kyu_sm_receive_choose: the receive index as it stands, less the messages its own
 * overlay holds: leases it granted in entries not applied yet, and messages a DELETE or
 * CHANGE_VISIBILITY in flight names; replica_early.c), answers at once, and proposes a
 * RECEIVE carrying the chosen (seq, generation) pairs. Apply, on every node
 * (kyu_op_receive_apply_early), records exactly those leases, at the command's time and
 * timeout, skipping a message that is no longer as the leader saw it (an entry applied
 * before it deleted, purged, leased or moved it): deterministic on every replica, and on the
 * leader it never skips, since the replica offers the early path only while nothing in flight
 * but sends and other early receives can change the queue (replica_early.c).
 *
 * The early answer is exactly what apply records: the same seqs, generations, receive counts,
 * first-receive times (kyu_sm_receive_read formats both). What it gives up, within SQS's
 * at-least-once contract: a lease answered and lost with its leader (a crash, or an election
 * lost before the entry commits) is not recorded; the message is visible again before its
 * timeout and ApproximateReceiveCount does not count that receive. Its handle acts on
 * nothing: the message's later leases have higher generations (kyu_lease_next_gen: they skip
 * ahead by the terms since, and the broker that lost it serves again in a later term).
 * FIFO queues, queues with fair groups and queues with a RedrivePolicy (a dead-letter move is
 * decided at apply) keep the durable path (op_receive.c), as do a ReceiveRequestAttemptId and
 * a retry whose request key the state machine knows or an early receive in flight holds. A
 * request key is recorded with the leases apply records, as a durable receive's is. */
#include "sm_internal.h"

#include <string.h>

/* Candidates looked at per choice at most: the ones the overlay holds are passed over. */
#define CHOOSE_LOOK_MAX 64

/* The generation an early receive in Raft term `term` gives a message whose lease is l:
 * kyu_lease_next_gen, the same as apply's (an entry written before that rule: the one after
 * l's, kyu_lease_give_gen). */
static uint32_t early_gen(const lease_t *l, const kyu_command_t *c, uint64_t term)
{
    if (c->gen_legacy)
        return l->gen + 1;
#if KYU_REPLICA_PLANTED_BUG == 14
    /* Planted bug 14 (docs/RAFT.md): generations count applied receives only, as before the
     * lease's term was recorded: a lease lost with its leader has its handle given again by
     * the message's next early receive; kyu-sim-kyu-planted14 must report it. */
    (void)term;
    return l->gen + 1;
#else
    return kyu_lease_next_gen(l, term);
#endif
}

/* Whether q may be received from early at all (its own state; the overlay decides the rest:
 * a SET_HANDLE_KEY in flight, which would change the handles, blocks every queue). */
static bool early_queue(const queue_t *q)
{
    return q && !q->is_fifo && !q->fifo && !q->fair && !q->groups && !q->dlq[0];
}

bool kyu_sm_receive_choose(kyu_sm_t *self, kyu_command_t *cmd, uint64_t term, uint64_t held_total,
                           kyu_sm_held_fn held, void *arg, kyu_result_t *res, kyu_err_t *err)
{
    kyu_err_clear(err);
    cmd->early = false;
    cmd->n_chosen = 0;
    queue_t *q = zhashx_lookup(self->queues, cmd->queue);
    if (!early_queue(q) || cmd->attempt)
        return false;
    uint64_t now = cmd->now_ms;
    uint32_t max = cmd->max ? cmd->max : 1;
    if (max > KYU_BATCH_MAX)
        return false;
    if (cmd->max_inflight) {
        /* The limit with what the overlay says may be in flight at apply besides the index
         * (leases granted and not applied, lease changes in flight: replica_early.c). */
        uint64_t inflight = 0, delayed = 0;
        kyu_sm_index_counts(q, now, &inflight, &delayed);
        if (inflight + held_total + max > cmd->max_inflight)
            return false;
    }
    /* Take candidates out of the index in receive order and put them all back after: the
     * index is left as it was (its order is the state's alone), only the choice is kept. */
    uint64_t taken[CHOOSE_LOOK_MAX];
    lease_t tl[CHOOSE_LOOK_MAX];
    uint32_t n_taken = 0, found = 0;
    bool fresh_stop = false;
    uint64_t seqs[KYU_BATCH_MAX];
    lease_t leases[KYU_BATCH_MAX];
    while (found < max && n_taken < CHOOSE_LOOK_MAX) {
        uint32_t want = max - found;
        if (want > CHOOSE_LOOK_MAX - n_taken)
            want = CHOOSE_LOOK_MAX - n_taken;
        uint32_t got = kyu_sm_index_take_ungrouped(q, now, want, taken + n_taken, tl + n_taken);
        if (got == 0)
            break;
        for (uint32_t i = n_taken; i < n_taken + got; i++) {
            bool dup = false; /* a second heap entry of a message taken before */
            for (uint32_t k = 0; k < i && !dup; k++)
                dup = taken[k] == taken[i];
            if (dup) {
                tl[i].gen = UINT32_MAX; /* marks it: not put back twice */
                continue;
            }
            /* A never-received message: apply takes these from the front of the fresh ones
             * (kyu_sm_index_take_fresh), so none is chosen past one that may stay there. */
            bool fresh = tl[i].gen == 0 && tl[i].first_ms != KYU_LEASE_DELAYED;
            kyu_held_t h = held(arg, q->qid, taken[i]);
            if (h == KYU_HELD_STAYS && fresh)
                fresh_stop = true;
            if (h != KYU_HELD_NO || (fresh && fresh_stop))
                continue;
            seqs[found] = taken[i];
            leases[found++] = tl[i];
        }
        n_taken += got;
    }
    /* Back in reverse order: the fresh ones go back to the front, first one last. */
    for (uint32_t i = n_taken; i-- > 0;)
        if (tl[i].gen != UINT32_MAX)
            kyu_sm_index_put_back(q, taken[i], &tl[i]);
    if (found == 0)
        return false;
    /* The leases apply will record (kyu_op_receive_apply_early computes the same). */
    uint64_t vt = cmd->vt >= 0 ? (uint64_t)cmd->vt : q->vt;
    cmd->vt = (int64_t)vt;
    for (uint32_t i = 0; i < found; i++) {
        lease_t *l = &leases[i];
        l->visible_at = now + vt * 1000;
        l->receive_count++;
        l->gen = early_gen(l, cmd, term); /* as apply gives it, in the entry's term */
        l->term = kyu_lease_term(term);
        if (l->receive_count == 1)
            l->first_ms = now;
        l->last_ms = now;
        cmd->chosen_seq[i] = seqs[i];
        cmd->chosen_gen[i] = l->gen;
    }
    cmd->n_chosen = found;
    kyu_result_init(res);
    if (kyu_sm_receive_read(self, q, seqs, leases, found, res, err) != KYU_OK) {
        kyu_result_clear(res);
        kyu_result_init(res);
        cmd->n_chosen = 0;
        return false;
    }
    cmd->early = true;
    return true;
}

/* Takes message seq out of the index as a receive would, if it is still as the leader saw it
 * when it gave it generation gen in this entry's term: a lease whose next generation is gen,
 * visible at now; or, for a never-received message's first generation, the first of the
 * fresh messages. Its lease before is in *l. False: skipped. */
static bool take_chosen(queue_t *q, const kyu_command_t *c, size_t i, uint64_t term, lease_t *l)
{
    uint64_t seq = c->chosen_seq[i];
    if (kyu_sm_index_lease(q, seq, l))
        return early_gen(l, c, term) == c->chosen_gen[i] && l->visible_at <= c->now_ms;
    *l = (lease_t){0};
    return c->chosen_gen[i] == early_gen(l, c, term) && kyu_sm_index_take_fresh(q, seq);
}

kyu_code_t kyu_op_receive_apply_early(kyu_sm_t *self, const kyu_command_t *c, kyu_apply_t *a)
{
    queue_t *q = kyu_sm_queue(self, c->queue, a->res);
    if (!q)
        return KYU_OK;
    kyu_result_t *res = a->res;
    /* A queue that is no longer one the leader answers early for (it can only have become
     * so by an entry before this one): nothing is recorded. */
    bool ok = early_queue(q);
    uint64_t vt_ms = (uint64_t)c->vt * 1000;
    for (size_t i = 0; i < c->n_chosen; i++) {
        lease_t l;
        res->results[i] = KYU_ERR_RECEIPT_STALE; /* skipped, unless recorded below */
        res->n_results = i + 1;
        /* the leader checked the limit; an earlier entry may have filled it */
        if (!ok || (c->max_inflight && q->n_inflight >= c->max_inflight))
            continue;
        if (!take_chosen(q, c, i, self->next_term, &l))
            continue;
        l.visible_at = c->now_ms + vt_ms;
        l.receive_count++;
        l.gen = c->chosen_gen[i];
        if (!c->gen_legacy)
            l.term = kyu_lease_term(self->next_term);
        if (l.receive_count == 1)
            l.first_ms = c->now_ms;
        l.last_ms = c->now_ms;
        kyu_sm_set_lease(self, q, c->chosen_seq[i], &l);
        res->results[i] = KYU_OK; /* recorded (for tests and kyu-sim-kyu) */
        if (a->dedup) {           /* a retry with its request key gets these leases (sm_dedup.c) */
            a->dedup->seqs[a->dedup->n] = c->chosen_seq[i];
            a->dedup->gens[a->dedup->n++] = l.gen;
        }
    }
    return KYU_OK;
}
