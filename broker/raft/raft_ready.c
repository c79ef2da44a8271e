/*
 * raft_ready.c - the outbox and the Ready/Advance hand-off (see the loop in raft.h).
 *
 * The durability rule lives here: every message a non-leader sends promises something it
 * must not forget (a vote, a term, log entries it acknowledged), so it is marked
 * after_persist and leaves only once this Ready's writes are durable. A leader's own
 * messages (appends, heartbeats, snapshot chunks) may leave at once once its term is
 * durable: the leader counts its own log towards a commit only after kyu_raft_advance says
 * it is durable (thesis 10.2.1).
 */
#include "raft_internal.h"

#include <string.h>

void kyu_raft_msg_free(kyu_raft_msg_t *m)
{
    for (size_t i = 0; i < m->n_entries; i++)
        kyu_raft_entry_free(&m->entries[i]);
    free(m->entries);
    free(m->snap_data);
    m->entries = NULL;
    m->n_entries = 0;
    m->snap_data = NULL;
}

void kyu_raft_send(kyu_raft_t *r, kyu_raft_msg_t *m)
{
    m->from = r->id;
    m->group = r->group;
    if (m->term == 0)
        m->term = r->term;
    /* A leader's message may leave early only if its term is already durable: a leader
     * elected alone (one voter) in this very Ready could otherwise crash, forget the term,
     * be elected in it again and give a learner two different entries at one (index, term). */
    m->after_persist = r->role != KYU_RAFT_LEADER || r->durable_term != r->term;
#if KYU_RAFT_PLANTED_BUG == 2
    /* Planted bug: a vote leaves before the vote is durable. */
    if (m->type == KYU_RAFT_MSG_VOTE_RESP)
        m->after_persist = false;
#endif
    if (r->n_out == r->cap_out) {
        size_t cap = r->cap_out ? r->cap_out * 2 : 16;
        kyu_raft_msg_t *p = realloc(r->outbox, cap * sizeof(*p));
        if (!p) {
            /* Dropping a message is always safe in Raft (the network may do it too). */
            kyu_raft_msg_free(m);
            return;
        }
        r->outbox = p;
        r->cap_out = cap;
    }
    r->outbox[r->n_out++] = *m;
}

static kyu_raft_hard_state_t hard_state(const kyu_raft_t *r)
{
    kyu_raft_hard_state_t hs = {.term = r->term, .vote = r->vote, .commit = r->log.commit};
    return hs;
}

static bool hs_equal(kyu_raft_hard_state_t a, kyu_raft_hard_state_t b)
{
    return a.term == b.term && a.vote == b.vote && a.commit == b.commit;
}

bool kyu_raft_has_ready(const kyu_raft_t *r)
{
    if (r->held.out)
        return false;
    return r->n_out > 0 || !hs_equal(hard_state(r), r->prev_hs) || r->snap_pending ||
           r->log.stable < kyu_raft_log_last(&r->log) || r->log.commit > r->log.handed_out;
}

static bool copy_range(const kyu_raft_log_t *log, uint64_t lo, uint64_t hi, kyu_raft_entry_t **out,
                       size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    if (hi < lo)
        return true;
    size_t n = (size_t)(hi - lo + 1);
    kyu_raft_entry_t *ents = malloc(n * sizeof(*ents));
    if (!ents)
        return false;
    for (size_t i = 0; i < n; i++) /* no copy: the log's bytes, held once more */
        kyu_raft_entry_ref(&ents[i], kyu_raft_log_entry(log, lo + i));
    *out = ents;
    *n_out = n;
    return true;
}

void kyu_raft_ready(kyu_raft_t *r, kyu_raft_ready_t *rd)
{
    KYU_RAFT_ASSERT(!r->held.out);
    memset(rd, 0, sizeof(*rd));
    kyu_raft_held_t *h = &r->held;
    memset(h, 0, sizeof(*h));
    h->out = true;

    kyu_raft_hard_state_t hs = hard_state(r);
    rd->hard_state = hs;
    rd->hard_state_changed = !hs_equal(hs, r->prev_hs);
    r->prev_hs = hs;
    h->hs_term = hs.term;

    if (r->snap_pending) {
        h->snapshot = r->snap;
        h->snapshot.data = NULL;
        if (r->snap.len > 0) {
            h->snapshot.data = malloc(r->snap.len);
            KYU_RAFT_ASSERT(h->snapshot.data); /* cannot be retried safely: fail loudly */
            memcpy(h->snapshot.data, r->snap.data, r->snap.len);
        }
        h->has_snapshot = true;
        rd->snapshot = &h->snapshot;
        r->snap_pending = false;
    }

    uint64_t last = kyu_raft_log_last(&r->log);
    KYU_RAFT_ASSERT(copy_range(&r->log, r->log.stable + 1, last, &h->entries, &h->n_entries));
    h->last_index = last;
    h->last_term = kyu_raft_log_last_term(&r->log);
    rd->entries = h->entries;
    rd->n_entries = h->n_entries;

    /* Committed entries may include ones persisted by this same Ready: the caller applies
     * only after the write is durable. */
    KYU_RAFT_ASSERT(
        copy_range(&r->log, r->log.handed_out + 1, r->log.commit, &h->committed, &h->n_committed));
    r->log.handed_out = r->log.commit;
    h->applied_to = r->log.commit;
    rd->committed = h->committed;
    rd->n_committed = h->n_committed;

    h->msgs = r->outbox;
    h->n_msgs = r->n_out;
    r->outbox = NULL;
    r->n_out = r->cap_out = 0;
    rd->msgs = h->msgs;
    rd->n_msgs = h->n_msgs;
}

bool kyu_raft_take_committed(kyu_raft_t *r, kyu_raft_entry_t **out, size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    kyu_raft_held_t *h = &r->held;
    if (!h->out || h->has_snapshot)
        return false;
    /* log.stable moves only at kyu_raft_advance: it is what earlier Readies persisted. */
    uint64_t hi = r->log.commit < r->log.stable ? r->log.commit : r->log.stable;
    if (hi <= r->log.handed_out)
        return false;
    if (!copy_range(&r->log, r->log.handed_out + 1, hi, out, n_out))
        return false;
    r->log.handed_out = hi;
    h->applied_to = hi;
    return true;
}

void kyu_raft_entries_free(kyu_raft_entry_t *entries, size_t n_entries)
{
    for (size_t i = 0; i < n_entries; i++)
        kyu_raft_entry_release(&entries[i]);
    free(entries);
}

void kyu_raft_held_free(kyu_raft_t *r)
{
    kyu_raft_held_t *h = &r->held;
    for (size_t i = 0; i < h->n_msgs; i++)
        kyu_raft_msg_free(&h->msgs[i]);
    free(h->msgs);
    for (size_t i = 0; i < h->n_entries; i++)
        kyu_raft_entry_release(&h->entries[i]);
    free(h->entries);
    for (size_t i = 0; i < h->n_committed; i++)
        kyu_raft_entry_release(&h->committed[i]);
    free(h->committed);
    kyu_raft_snapshot_free(&h->snapshot);
    memset(h, 0, sizeof(*h));
}

void kyu_raft_advance(kyu_raft_t *r)
{
    kyu_raft_held_t *h = &r->held;
    KYU_RAFT_ASSERT(h->out);
    kyu_raft_log_stable_to(&r->log, h->last_index, h->last_term);
    if (h->applied_to > r->log.applied)
        r->log.applied = h->applied_to;
    r->durable_term = h->hs_term;
    kyu_raft_held_free(r);
    if (r->role == KYU_RAFT_LEADER)
        kyu_raft_leader_self_ack(r);
}
