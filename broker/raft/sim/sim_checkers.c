/*
 * sim_checkers.c - the invariants kyu-sim checks after every step (thesis Figure 3.2):
 *
 *   election safety      at most one leader per term (over the whole run), and at most one
 *                        vote granted by each node in each term (the vote is durable);
 *   log matching         an (index, term) pair names one entry, with one predecessor term,
 *                        in every log at every time, so logs that share an entry share the
 *                        whole prefix before it;
 *   commit safety        no two nodes ever consider different entries committed at an index;
 *   leader completeness  a leader of term T holds every entry committed before T;
 *   state machine safety no two nodes apply different entries (or reach different states)
 *                        at one index, snapshots included;
 *   acknowledged writes  an entry acknowledged to a client as committed is the one every
 *                        node applies at its index (the liveness phase then requires every
 *                        member to apply it).
 */
#include "sim.h"

#include <stdlib.h>
#include <string.h>

static void oom(void)
{
    fprintf(stderr, "kyu-sim: out of memory\n");
    exit(3);
}

uint64_t sim_entry_hash(const kyu_raft_entry_t *e)
{
    return sim_mix(sim_mix(e->term, (uint64_t)e->type + 1), sim_hash(e->data, e->len, 7));
}

void sim_checker_free(sim_checker_t *k)
{
    free(k->leader_of_term);
    free(k->durable.slots);
    free(k->live.slots);
    free(k->idx);
    for (int i = 0; i <= SIM_MAX_NODES; i++)
        free(k->vote_of[i]);
    memset(k, 0, sizeof(*k));
}

static sim_index_rec_t *rec(sim_checker_t *k, uint64_t index)
{
    if (index >= k->idx_cap) {
        size_t cap = k->idx_cap ? k->idx_cap : 1024;
        while (cap <= index)
            cap *= 2;
        sim_index_rec_t *p = realloc(k->idx, cap * sizeof(*p));
        if (!p)
            oom();
        memset(p + k->idx_cap, 0, (cap - k->idx_cap) * sizeof(*p));
        k->idx = p;
        k->idx_cap = cap;
    }
    return &k->idx[index];
}

static uint64_t *leader_slot(sim_checker_t *k, uint64_t term)
{
    if (term >= k->n_terms) {
        size_t n = k->n_terms ? k->n_terms : 64;
        while (n <= term)
            n *= 2;
        uint64_t *p = realloc(k->leader_of_term, n * sizeof(*p));
        if (!p)
            oom();
        memset(p + k->n_terms, 0, (n - k->n_terms) * sizeof(*p));
        k->leader_of_term = p;
        k->n_terms = n;
    }
    return &k->leader_of_term[term];
}

static void table_grow(sim_entry_table_t *t);

/* Finds or inserts the record of (index, term). Returns true if it was already there. */
static bool table_lookup(sim_entry_table_t *t, uint64_t index, uint64_t term, sim_entry_rec_t **out)
{
    if (2 * (t->n + 1) > t->cap)
        table_grow(t);
    size_t mask = t->cap - 1;
    size_t h = (size_t)sim_mix(index, term) & mask;
    for (;;) {
        sim_entry_rec_t *e = &t->slots[h];
        if (e->gen != t->gen) {
            *e = (sim_entry_rec_t){.index = index, .term = term, .gen = t->gen};
            t->n++;
            *out = e;
            return false;
        }
        if (e->index == index && e->term == term) {
            *out = e;
            return true;
        }
        h = (h + 1) & mask;
    }
}

static void table_grow(sim_entry_table_t *t)
{
    size_t cap = t->cap ? t->cap * 2 : 4096;
    sim_entry_rec_t *old = t->slots;
    size_t old_cap = t->cap;
    t->slots = calloc(cap, sizeof(*t->slots));
    if (!t->slots)
        oom();
    t->cap = cap;
    t->n = 0;
    for (size_t i = 0; i < old_cap; i++) {
        if (old[i].gen != t->gen)
            continue;
        sim_entry_rec_t *e;
        table_lookup(t, old[i].index, old[i].term, &e);
        *e = old[i];
    }
    free(old);
}

static const sim_entry_rec_t *table_find(const sim_entry_table_t *t, uint64_t index, uint64_t term)
{
    if (t->cap == 0)
        return NULL;
    size_t mask = t->cap - 1;
    for (size_t h = (size_t)sim_mix(index, term) & mask;; h = (h + 1) & mask) {
        const sim_entry_rec_t *e = &t->slots[h];
        if (e->gen != t->gen)
            return NULL;
        if (e->index == index && e->term == term)
            return e;
    }
}

/* Records one occurrence of an entry; false if (index, term) already named another. */
static bool table_record(sim_entry_table_t *t, uint64_t index, uint64_t term, uint64_t prev_term,
                         uint64_t hash)
{
    sim_entry_rec_t *r;
    if (table_lookup(t, index, term, &r))
        return r->hash == hash && r->prev_term == prev_term;
    r->prev_term = prev_term;
    r->hash = hash;
    return true;
}

void sim_check_durable(sim_cluster_t *c, sim_node_t *nd, const kyu_raft_entry_t *e,
                       uint64_t prev_term)
{
    if (c->chk.durable.gen == 0)
        c->chk.durable.gen = 1;
    if (!table_record(&c->chk.durable, e->index, e->term, prev_term, sim_entry_hash(e)))
        sim_violation(c, SIM_SAFETY,
                      "log matching: node %llu stored at (index %llu, term %llu) an entry or "
                      "predecessor that differs from one stored before",
                      (unsigned long long)nd->id, (unsigned long long)e->index,
                      (unsigned long long)e->term);
}

void sim_check_apply(sim_cluster_t *c, sim_node_t *nd, const kyu_raft_entry_t *e,
                     uint64_t chain_after)
{
    sim_index_rec_t *r = rec(&c->chk, e->index);
    uint64_t h = sim_entry_hash(e);
    if (r->applied && (r->hash != h || r->chain != chain_after)) {
        sim_violation(c, SIM_SAFETY,
                      "state machine safety: node %llu applied an entry of term %llu at index "
                      "%llu, another node applied a different entry (or state) there",
                      (unsigned long long)nd->id, (unsigned long long)e->term,
                      (unsigned long long)e->index);
        return;
    }
    if (r->acked_hash && r->acked_hash != h) {
        sim_violation(c, SIM_SAFETY,
                      "acknowledged write lost: node %llu applied another entry at index %llu",
                      (unsigned long long)nd->id, (unsigned long long)e->index);
        return;
    }
    r->applied = true;
    r->hash = h;
    r->chain = chain_after;
}

void sim_check_snapshot(sim_cluster_t *c, sim_node_t *nd, uint64_t index, uint64_t chain)
{
    sim_index_rec_t *r = rec(&c->chk, index);
    if (!r->applied || r->chain != chain)
        sim_violation(c, SIM_SAFETY,
                      "state machine safety: node %llu installed a snapshot at %llu whose state "
                      "no node reached by applying the log",
                      (unsigned long long)nd->id, (unsigned long long)index);
}

void sim_check_ack(sim_cluster_t *c, uint64_t index, uint64_t hash)
{
    sim_index_rec_t *r = rec(&c->chk, index);
    if (r->applied && r->hash != hash) {
        sim_violation(c, SIM_SAFETY,
                      "acknowledged write lost: index %llu was applied with another entry",
                      (unsigned long long)index);
        return;
    }
    r->acked_hash = hash;
    if (index > c->chk.max_acked)
        c->chk.max_acked = index;
}

void sim_check_message(sim_cluster_t *c, const kyu_raft_msg_t *m)
{
    if (m->type != KYU_RAFT_MSG_VOTE_RESP || m->reject || m->from > SIM_MAX_NODES)
        return;
    sim_checker_t *k = &c->chk;
    if (m->term >= k->vote_terms[m->from]) {
        size_t n = k->vote_terms[m->from] ? k->vote_terms[m->from] : 64;
        while (n <= m->term)
            n *= 2;
        uint64_t *p = realloc(k->vote_of[m->from], n * sizeof(*p));
        if (!p)
            oom();
        memset(p + k->vote_terms[m->from], 0, (n - k->vote_terms[m->from]) * sizeof(*p));
        k->vote_of[m->from] = p;
        k->vote_terms[m->from] = n;
    }
    uint64_t *slot = &k->vote_of[m->from][m->term];
    if (*slot && *slot != m->to) {
        sim_violation(c, SIM_SAFETY,
                      "election safety: node %llu voted for %llu and then for %llu in term %llu",
                      (unsigned long long)m->from, (unsigned long long)*slot,
                      (unsigned long long)m->to, (unsigned long long)m->term);
        return;
    }
    *slot = m->to;
}

static void check_log(sim_cluster_t *c, sim_node_t *nd)
{
    kyu_raft_t *r = nd->raft;
    uint64_t first = kyu_raft_first_index(r), last = kyu_raft_last_index(r);
    uint64_t prev_term = kyu_raft_term_at(r, first - 1);
    for (uint64_t i = first; i <= last; i++) {
        const kyu_raft_entry_t *e = kyu_raft_entry_at(r, i);
        if (e->term < prev_term) {
            sim_violation(c, SIM_SAFETY, "log matching: node %llu has terms going down at %llu",
                          (unsigned long long)nd->id, (unsigned long long)i);
            return;
        }
        uint64_t h = sim_entry_hash(e);
        /* Against every entry ever made durable (an entry lost unwritten in a crash may be
         * made again differently: nobody saw it), and against the other live logs. */
        const sim_entry_rec_t *d = table_find(&c->chk.durable, i, e->term);
        bool ok = !d || (d->hash == h && d->prev_term == prev_term);
        if (ok)
            ok = table_record(&c->chk.live, i, e->term, prev_term, h);
        if (!ok) {
            sim_violation(c, SIM_SAFETY,
                          "log matching: node %llu holds at (index %llu, term %llu) an entry or "
                          "predecessor that differs from another log's",
                          (unsigned long long)nd->id, (unsigned long long)i,
                          (unsigned long long)e->term);
            return;
        }
        prev_term = e->term;
    }
}

static void check_commit(sim_cluster_t *c, sim_node_t *nd)
{
    kyu_raft_t *r = nd->raft;
    uint64_t commit = kyu_raft_commit(r), first = kyu_raft_first_index(r);
    for (uint64_t i = nd->commit_seen + 1; i <= commit; i++) {
        if (i < first)
            continue; /* covered by a snapshot: checked when installed */
        sim_index_rec_t *x = rec(&c->chk, i);
        uint64_t t = kyu_raft_term_at(r, i);
        if (x->committed && x->term != t) {
            sim_violation(c, SIM_SAFETY,
                          "commit safety: node %llu committed term %llu at index %llu, another "
                          "node committed term %llu there",
                          (unsigned long long)nd->id, (unsigned long long)t, (unsigned long long)i,
                          (unsigned long long)x->term);
            return;
        }
        if (!x->committed) {
            x->committed = true;
            x->term = t;
            x->obs_term = kyu_raft_term(r);
            if (i > c->chk.max_committed)
                c->chk.max_committed = i;
        }
    }
    if (commit > nd->commit_seen)
        nd->commit_seen = commit;
}

static void check_leader(sim_cluster_t *c, sim_node_t *nd)
{
    kyu_raft_t *r = nd->raft;
    uint64_t term = kyu_raft_term(r);
    /* A leader whose term is not yet durable has shown itself to nobody (its messages
     * wait for that write) and commits nothing; if it crashes, its term may be won again
     * by another node. It counts once its term is on its disk. */
    uint64_t *slot = leader_slot(&c->chk, term);
    if (nd->disk.hs.term != term) {
        /* not yet: completeness is still checked below */
    } else if (*slot && *slot != nd->id) {
        sim_violation(c, SIM_SAFETY, "election safety: nodes %llu and %llu both led term %llu",
                      (unsigned long long)*slot, (unsigned long long)nd->id,
                      (unsigned long long)term);
        return;
    }
    if (nd->disk.hs.term == term) {
        if (*slot == 0)
            c->stats.elections++;
        *slot = nd->id;
    }
    /* Leader completeness, for entries committed in an earlier term. */
    uint64_t last = kyu_raft_last_index(r);
    for (uint64_t i = kyu_raft_first_index(r); i <= c->chk.max_committed; i++) {
        sim_index_rec_t *x = &c->chk.idx[i];
        if (!x->committed)
            continue;
        if (x->obs_term >= term)
            continue;
        if (i > last || kyu_raft_term_at(r, i) != x->term) {
            sim_violation(c, SIM_SAFETY,
                          "leader completeness: leader %llu of term %llu lacks the entry of "
                          "term %llu committed at index %llu",
                          (unsigned long long)nd->id, (unsigned long long)term,
                          (unsigned long long)x->term, (unsigned long long)i);
            return;
        }
    }
}

void sim_check_step(sim_cluster_t *c)
{
    c->chk.live.gen++; /* a new step: forget the live logs of the last one */
    c->chk.live.n = 0;
    for (int i = 0; i < c->n && c->result == SIM_OK; i++) {
        sim_node_t *nd = &c->nodes[i];
        if (!nd->raft)
            continue;
        kyu_raft_role_t role = kyu_raft_role(nd->raft);
        uint64_t term = kyu_raft_term(nd->raft);
        if (role != nd->role_seen || term != nd->term_seen) {
            sim_trace(&c->trace, c->now, "n%llu is %s in term %llu (last %llu, commit %llu)",
                      (unsigned long long)nd->id, kyu_raft_role_name(role),
                      (unsigned long long)term, (unsigned long long)kyu_raft_last_index(nd->raft),
                      (unsigned long long)kyu_raft_commit(nd->raft));
            nd->role_seen = role;
            nd->term_seen = term;
        }
        check_log(c, nd);
        if (c->result == SIM_OK)
            check_commit(c, nd);
        if (c->result == SIM_OK && role == KYU_RAFT_LEADER)
            check_leader(c, nd);
    }
}
