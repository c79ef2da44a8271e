/*
 * raft_election.c - roles and elections: pre-vote (thesis 9.6), vote, the election timer,
 * and check-quorum (a leader that hears from no majority in an election timeout steps down).
 */
#include "raft_internal.h"

#include <string.h>

/* splitmix64: the core's only randomness, seeded from outside (config or set_random). */
static uint64_t next_random(kyu_raft_t *r)
{
    uint64_t z = (r->rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

uint32_t kyu_raft_random_timeout(kyu_raft_t *r)
{
    return r->election_ticks + (uint32_t)(next_random(r) % r->election_ticks);
}

/* A voter may campaign. So may a node that an uncommitted configuration just removed: its
 * log may be the only one holding that configuration (a leader removing itself, then
 * deposed before the change committed), and without it the remaining voters, all behind
 * it, could never elect anyone. Its own vote does not count (tally counts voters only);
 * once leader it commits the change and steps down (thesis 4.2.2). */
bool kyu_raft_promotable(const kyu_raft_t *r)
{
    if (kyu_raft_conf_is_voter(&r->conf, r->id))
        return true;
    return !kyu_raft_conf_is_learner(&r->conf, r->id) && r->conf_index > r->log.commit &&
           r->conf.n_voters > 0;
}

static void reset(kyu_raft_t *r, uint64_t term)
{
    if (r->term != term) {
        r->term = term;
        r->vote = KYU_RAFT_NONE;
    }
    r->lead = KYU_RAFT_NONE;
    r->election_elapsed = 0;
    r->heartbeat_elapsed = 0;
    r->randomized_timeout = kyu_raft_random_timeout(r);
    r->lead_transferee = KYU_RAFT_NONE;
    r->n_votes = 0;
}

void kyu_raft_become_follower(kyu_raft_t *r, uint64_t term, uint64_t lead)
{
    reset(r, term);
    r->role = KYU_RAFT_FOLLOWER;
    r->lead = lead;
}

void kyu_raft_become_leader(kyu_raft_t *r)
{
    KYU_RAFT_ASSERT(r->role == KYU_RAFT_CANDIDATE);
    reset(r, r->term);
    r->role = KYU_RAFT_LEADER;
    r->lead = r->id;
    kyu_raft_progress_rebuild(r);
    for (size_t i = 0; i < r->n_prs; i++) {
        kyu_raft_progress_t *pr = &r->prs[i];
        kyu_raft_pr_init(pr, pr->id, pr->learner, kyu_raft_log_last(&r->log) + 1, r->max_inflight);
        pr->recent_active = true;
        if (pr->id == r->id)
            pr->match = r->log.stable;
    }
    /* The no-op lets the new leader commit (and learn the commit index of) every entry of
     * earlier terms: those are never committed by counting replicas (thesis 3.6.2). */
    uint64_t index;
    if (!kyu_raft_append_entry(r, KYU_RAFT_ENTRY_NOOP, NULL, 0, &index)) {
        /* Out of memory: stay a leader without the no-op; the next proposal commits. */
    }
    kyu_raft_bcast_append(r);
}

static void record_vote(kyu_raft_t *r, uint64_t from, bool granted)
{
    for (size_t i = 0; i < r->n_votes; i++)
        if (r->vote_from[i] == from)
            return; /* duplicates count once */
    if (r->n_votes < sizeof(r->vote_from) / sizeof(r->vote_from[0])) {
        r->vote_from[r->n_votes] = from;
        r->vote_granted[r->n_votes] = granted;
        r->n_votes++;
    }
}

static kyu_raft_vote_result_t tally(const kyu_raft_t *r)
{
    size_t granted = 0, rejected = 0;
    for (size_t i = 0; i < r->n_votes; i++) {
        if (!kyu_raft_conf_is_voter(&r->conf, r->vote_from[i]))
            continue;
        if (r->vote_granted[i])
            granted++;
        else
            rejected++;
    }
    return kyu_raft_quorum_vote(r->conf.n_voters, granted, rejected);
}

void kyu_raft_campaign(kyu_raft_t *r, bool pre_vote, bool transfer)
{
    uint64_t term;
    kyu_raft_msg_type_t type;
    if (pre_vote) {
        /* Ask first whether we could win, without disturbing anyone's term: a node that was
         * partitioned away cannot force an election when it comes back. */
        reset(r, r->term);
        r->role = KYU_RAFT_PRE_CANDIDATE;
        term = r->term + 1;
        type = KYU_RAFT_MSG_PRE_VOTE;
    } else {
        reset(r, r->term + 1);
        r->role = KYU_RAFT_CANDIDATE;
        r->vote = r->id;
        term = r->term;
        type = KYU_RAFT_MSG_VOTE;
    }
    record_vote(r, r->id, true);
    if (tally(r) == KYU_RAFT_VOTE_WON) {
        if (pre_vote)
            kyu_raft_campaign(r, false, transfer);
        else
            kyu_raft_become_leader(r);
        return;
    }
    for (uint32_t i = 0; i < r->conf.n_voters; i++) {
        uint64_t id = r->conf.voters[i];
        if (id == r->id)
            continue;
        kyu_raft_msg_t m = {.type = type,
                            .to = id,
                            .term = term,
                            .index = kyu_raft_log_last(&r->log),
                            .log_term = kyu_raft_log_last_term(&r->log),
                            .force = transfer};
        kyu_raft_send(r, &m);
    }
}

void kyu_raft_handle_vote_request(kyu_raft_t *r, const kyu_raft_msg_t *m)
{
    bool pre = m->type == KYU_RAFT_MSG_PRE_VOTE;
    /* We may vote again for whom we voted; vote for anyone if we have neither voted nor
     * know a leader; grant a pre-vote for a later term (it promises nothing). */
    bool can_vote = r->vote == m->from || (r->vote == KYU_RAFT_NONE && r->lead == KYU_RAFT_NONE) ||
                    (pre && m->term > r->term);
    kyu_raft_msg_t resp = {
        .type = pre ? KYU_RAFT_MSG_PRE_VOTE_RESP : KYU_RAFT_MSG_VOTE_RESP,
        .to = m->from,
    };
    if (can_vote && kyu_raft_log_up_to_date(&r->log, m->index, m->log_term)) {
        resp.term = m->term;
        if (!pre) {
            r->election_elapsed = 0;
            r->vote = m->from; /* persisted before resp leaves: resp.after_persist */
        }
    } else {
        resp.reject = true;
    }
    kyu_raft_send(r, &resp);
}

void kyu_raft_handle_vote_response(kyu_raft_t *r, const kyu_raft_msg_t *m)
{
    bool pre = r->role == KYU_RAFT_PRE_CANDIDATE;
    if (pre != (m->type == KYU_RAFT_MSG_PRE_VOTE_RESP))
        return;
    if (pre && !m->reject && m->term != r->term + 1)
        return; /* a grant from an older pre-campaign */
    record_vote(r, m->from, !m->reject);
    switch (tally(r)) {
    case KYU_RAFT_VOTE_WON:
        if (pre)
            kyu_raft_campaign(r, false, false);
        else
            kyu_raft_become_leader(r);
        break;
    case KYU_RAFT_VOTE_LOST:
        kyu_raft_become_follower(r, r->term, KYU_RAFT_NONE);
        break;
    case KYU_RAFT_VOTE_PENDING:
        break;
    }
}

void kyu_raft_tick_election(kyu_raft_t *r)
{
    r->election_elapsed++;
    if (kyu_raft_promotable(r) && r->election_elapsed >= r->randomized_timeout) {
        r->election_elapsed = 0;
        kyu_raft_campaign(r, true, false);
    }
}

/* Check-quorum: is a majority of voters recently active? Resets the marks for the next
 * round. */
static bool quorum_active(kyu_raft_t *r)
{
    size_t active = 0;
    for (size_t i = 0; i < r->n_prs; i++) {
        kyu_raft_progress_t *pr = &r->prs[i];
        if (pr->id == r->id) {
            pr->recent_active = true;
        }
        if (pr->recent_active && !pr->learner && kyu_raft_conf_is_voter(&r->conf, pr->id))
            active++;
        if (pr->id != r->id)
            pr->recent_active = false;
    }
    return active >= r->conf.n_voters / 2 + 1;
}

void kyu_raft_tick_leader(kyu_raft_t *r)
{
    r->heartbeat_elapsed++;
    r->election_elapsed++;
    if (r->election_elapsed >= r->election_ticks) {
        r->election_elapsed = 0;
        if (!quorum_active(r)) {
            kyu_raft_become_follower(r, r->term, KYU_RAFT_NONE);
            return;
        }
        /* A transfer that did not finish within an election timeout is abandoned. */
        r->lead_transferee = KYU_RAFT_NONE;
    }
    if (r->heartbeat_elapsed >= r->heartbeat_ticks) {
        r->heartbeat_elapsed = 0;
        kyu_raft_bcast_heartbeat(r);
    } else {
        kyu_raft_tell_commit(r);
    }
}
