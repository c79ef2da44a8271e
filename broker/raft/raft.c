/*
 * raft.c - the Raft core: construction, the inputs, and the first stage of step (the term
 * check every message goes through before its type and the node's role are looked at).
 */
#include "raft_internal.h"

#include <string.h>

static bool conf_valid(const kyu_raft_conf_t *c)
{
    return c->n_voters <= KYU_RAFT_MAX_NODES && c->n_learners <= KYU_RAFT_MAX_NODES &&
           c->n_voters + c->n_learners <= KYU_RAFT_MAX_NODES;
}

kyu_raft_t *kyu_raft_new(const kyu_raft_config_t *cfg)
{
    if (!cfg || cfg->id == KYU_RAFT_NONE || cfg->election_ticks < 2 || cfg->heartbeat_ticks < 1 ||
        cfg->heartbeat_ticks >= cfg->election_ticks)
        return NULL;
    const kyu_raft_snapshot_t *snap = cfg->snapshot;
    if (snap && !conf_valid(&snap->conf))
        return NULL;
    if (cfg->conf && !conf_valid(cfg->conf))
        return NULL;
    uint64_t snap_index = snap ? snap->index : 0;
    for (size_t i = 0; i < cfg->n_entries; i++)
        if (cfg->entries[i].index != snap_index + 1 + i)
            return NULL;
    uint64_t commit = cfg->hard_state.commit > snap_index ? cfg->hard_state.commit : snap_index;
    if (commit > snap_index + cfg->n_entries || cfg->applied < snap_index || cfg->applied > commit)
        return NULL;

    kyu_raft_t *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->id = cfg->id;
    r->group = cfg->group;
    r->election_ticks = cfg->election_ticks;
    r->heartbeat_ticks = cfg->heartbeat_ticks;
    r->max_inflight = cfg->max_inflight ? cfg->max_inflight : 16;
    r->max_msg_entries = cfg->max_msg_entries ? cfg->max_msg_entries : 64;
    r->max_msg_bytes = cfg->max_msg_bytes ? cfg->max_msg_bytes : 1 << 20;
    r->snapshot_chunk = cfg->snapshot_chunk ? cfg->snapshot_chunk : 1 << 20;
    r->max_uncommitted = cfg->max_uncommitted ? cfg->max_uncommitted : 4096;
    r->rng = cfg->random_seed ^ (cfg->id * 0x9E3779B97F4A7C15ull);
    r->term = cfg->hard_state.term;
    r->vote = cfg->hard_state.vote;
    r->prev_hs = cfg->hard_state;
    r->durable_term = cfg->hard_state.term;
    if (snap) {
        r->snap = *snap;
        r->snap.data = NULL;
        if (snap->len > 0) {
            r->snap.data = malloc(snap->len);
            if (!r->snap.data) {
                free(r);
                return NULL;
            }
            memcpy(r->snap.data, snap->data, snap->len);
        }
    } else if (cfg->conf) {
        r->snap.conf = *cfg->conf;
    }
    if (!kyu_raft_log_init(&r->log, snap_index, snap ? snap->term : 0, cfg->entries,
                           cfg->n_entries)) {
        free(r->snap.data);
        free(r);
        return NULL;
    }
    /* A stored commit index below the snapshot is stale: the snapshot is committed. */
    r->log.commit = commit;
    r->log.applied = r->log.handed_out = cfg->applied;
    kyu_raft_conf_refresh(r, 0);
    kyu_raft_become_follower(r, r->term, KYU_RAFT_NONE);
    return r;
}

void kyu_raft_destroy(kyu_raft_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    kyu_raft_t *r = *self_p;
    kyu_raft_held_free(r);
    for (size_t i = 0; i < r->n_out; i++)
        kyu_raft_msg_free(&r->outbox[i]);
    free(r->outbox);
    kyu_raft_log_free(&r->log);
    kyu_raft_snapshot_free(&r->snap);
    kyu_raft_snapshot_free(&r->rx);
    free(r);
    *self_p = NULL;
}

void kyu_raft_set_random(kyu_raft_t *self, uint64_t seed)
{
    self->rng = seed;
}

void kyu_raft_tick(kyu_raft_t *self)
{
    if (self->role == KYU_RAFT_LEADER)
        kyu_raft_tick_leader(self);
    else
        kyu_raft_tick_election(self);
}

/* With check-quorum, a node that heard from a leader less than an election timeout ago
 * ignores vote requests (thesis 4.2.3): a removed or partitioned server cannot depose a
 * healthy leader. A TimeoutNow-driven vote (force) is exempt. */
static bool in_lease(const kyu_raft_t *r)
{
    return r->lead != KYU_RAFT_NONE && r->election_elapsed < r->election_ticks;
}

static void reply_stale(kyu_raft_t *r, const kyu_raft_msg_t *m)
{
    if (m->type == KYU_RAFT_MSG_APPEND || m->type == KYU_RAFT_MSG_HEARTBEAT) {
        /* Tell a stale leader about the newer term so it steps down; with pre-vote and
         * check-quorum its messages would otherwise be ignored forever. */
        kyu_raft_msg_t resp = {.type = KYU_RAFT_MSG_APPEND_RESP, .to = m->from};
        kyu_raft_send(r, &resp);
    } else if (m->type == KYU_RAFT_MSG_PRE_VOTE) {
        kyu_raft_msg_t resp = {.type = KYU_RAFT_MSG_PRE_VOTE_RESP, .to = m->from, .reject = true};
        kyu_raft_send(r, &resp);
    }
}

/* A message decoded from the network is checked for shape before it can reach an
 * assertion: malformed input is dropped (as the network may drop anything), never fatal. */
static bool msg_valid(const kyu_raft_msg_t *m)
{
    /* Terms grow by one per election: one beyond 2^63 is corruption, and refusing it means
     * our own term can never wrap around. */
    if (m->term > (UINT64_MAX >> 1) || (m->n_entries > 0 && !m->entries))
        return false;
    uint64_t prev_term = m->log_term;
    for (size_t i = 0; i < m->n_entries; i++) {
        const kyu_raft_entry_t *e = &m->entries[i];
        if (e->index != m->index + 1 + i || e->term < prev_term || e->term > m->term ||
            (e->len > 0 && !e->data) || e->type > KYU_RAFT_ENTRY_CONF)
            return false;
        if (e->type == KYU_RAFT_ENTRY_CONF) {
            kyu_raft_conf_t c;
            if (!kyu_raft_conf_decode(e->data, e->len, &c))
                return false;
        }
        prev_term = e->term;
    }
    if (m->type == KYU_RAFT_MSG_SNAPSHOT) {
        if ((m->snap_len > 0 && !m->snap_data) || m->snap_offset > m->snap_total ||
            m->snap_len > m->snap_total - m->snap_offset || m->index == 0 ||
            m->snap_conf.n_voters > KYU_RAFT_MAX_NODES ||
            m->snap_conf.n_learners > KYU_RAFT_MAX_NODES ||
            m->snap_conf.n_voters + m->snap_conf.n_learners > KYU_RAFT_MAX_NODES)
            return false;
    }
    return true;
}

void kyu_raft_step(kyu_raft_t *r, const kyu_raft_msg_t *m)
{
    if (m->group != r->group || m->to != r->id || m->from == KYU_RAFT_NONE || m->from == r->id ||
        !msg_valid(m))
        return;
    /* Stage 1: the term. */
    if (m->term > r->term) {
        bool vote_req = m->type == KYU_RAFT_MSG_VOTE || m->type == KYU_RAFT_MSG_PRE_VOTE;
        if (vote_req && !m->force && in_lease(r))
            return;
        if (m->type == KYU_RAFT_MSG_PRE_VOTE) {
            /* A pre-vote never changes our term. */
        } else if (m->type == KYU_RAFT_MSG_PRE_VOTE_RESP && !m->reject) {
            /* A granted pre-vote carries the term we would campaign in. */
        } else if (m->type == KYU_RAFT_MSG_APPEND || m->type == KYU_RAFT_MSG_HEARTBEAT ||
                   m->type == KYU_RAFT_MSG_SNAPSHOT) {
            kyu_raft_become_follower(r, m->term, m->from);
        } else {
            kyu_raft_become_follower(r, m->term, KYU_RAFT_NONE);
        }
    } else if (m->term < r->term) {
        reply_stale(r, m);
        return;
    }

    /* Stage 2: messages every role handles alike. */
    if (m->type == KYU_RAFT_MSG_VOTE || m->type == KYU_RAFT_MSG_PRE_VOTE) {
        kyu_raft_handle_vote_request(r, m);
        return;
    }

    /* Stage 3: the role's own handler. */
    switch (r->role) {
    case KYU_RAFT_LEADER:
        kyu_raft_step_leader(r, m);
        return;
    case KYU_RAFT_PRE_CANDIDATE:
    case KYU_RAFT_CANDIDATE:
        if (m->type == KYU_RAFT_MSG_APPEND || m->type == KYU_RAFT_MSG_HEARTBEAT ||
            m->type == KYU_RAFT_MSG_SNAPSHOT) {
            /* A leader of our term exists (or of a newer one, handled above). */
            kyu_raft_become_follower(r, m->term, m->from);
            break;
        }
        if (m->type == KYU_RAFT_MSG_VOTE_RESP || m->type == KYU_RAFT_MSG_PRE_VOTE_RESP)
            kyu_raft_handle_vote_response(r, m);
        return;
    case KYU_RAFT_FOLLOWER:
        break;
    }
    /* Follower. */
    switch (m->type) {
    case KYU_RAFT_MSG_APPEND:
        r->election_elapsed = 0;
        r->lead = m->from;
        kyu_raft_handle_append(r, m);
        break;
    case KYU_RAFT_MSG_HEARTBEAT:
        r->election_elapsed = 0;
        r->lead = m->from;
        kyu_raft_handle_heartbeat(r, m);
        break;
    case KYU_RAFT_MSG_SNAPSHOT:
        r->election_elapsed = 0;
        r->lead = m->from;
        kyu_raft_handle_snapshot(r, m);
        break;
    case KYU_RAFT_MSG_TIMEOUT_NOW:
        /* Leadership transfer (thesis 3.10): campaign at once, skipping pre-vote. */
        if (kyu_raft_promotable(r))
            kyu_raft_campaign(r, false, true);
        break;
    default:
        break;
    }
}

kyu_raft_err_t kyu_raft_propose(kyu_raft_t *r, const void *data, size_t len, uint64_t *index_out,
                                uint64_t *leader_out)
{
    if (leader_out)
        *leader_out = r->lead;
    if (r->role != KYU_RAFT_LEADER)
        return KYU_RAFT_ERR_NOT_LEADER;
    if (r->lead_transferee != KYU_RAFT_NONE ||
        kyu_raft_log_last(&r->log) - r->log.commit >= r->max_uncommitted)
        return KYU_RAFT_ERR_BUSY;
    uint64_t index;
    if (!kyu_raft_append_entry(r, KYU_RAFT_ENTRY_NORMAL, data, len, &index))
        return KYU_RAFT_ERR_NOMEM;
    if (index_out)
        *index_out = index;
    kyu_raft_bcast_append(r);
    return KYU_RAFT_OK;
}

kyu_raft_err_t kyu_raft_propose_conf_change(kyu_raft_t *r, kyu_raft_cc_op_t op, uint64_t node,
                                            uint64_t *index_out, uint64_t *leader_out)
{
    if (leader_out)
        *leader_out = r->lead;
    if (r->role != KYU_RAFT_LEADER)
        return KYU_RAFT_ERR_NOT_LEADER;
    uint64_t commit_term = 0;
    kyu_raft_log_term(&r->log, r->log.commit, &commit_term);
    /* One change at a time, and only once this leader committed an entry of its own term
     * (Ongaro's 2015 fix to single-server changes). */
    if (r->lead_transferee != KYU_RAFT_NONE || r->conf_index > r->log.commit ||
        commit_term != r->term)
        return KYU_RAFT_ERR_BUSY;
    if (node == KYU_RAFT_NONE)
        return KYU_RAFT_ERR_INVALID;
    kyu_raft_conf_t c = {0};
    bool voter = kyu_raft_conf_is_voter(&r->conf, node);
    bool learner = kyu_raft_conf_is_learner(&r->conf, node);
    for (uint32_t i = 0; i < r->conf.n_voters; i++)
        if (r->conf.voters[i] != node)
            c.voters[c.n_voters++] = r->conf.voters[i];
    for (uint32_t i = 0; i < r->conf.n_learners; i++)
        if (r->conf.learners[i] != node)
            c.learners[c.n_learners++] = r->conf.learners[i];
    switch (op) {
    case KYU_RAFT_CC_ADD_VOTER:
        if (voter)
            return KYU_RAFT_ERR_INVALID;
        c.voters[c.n_voters++] = node;
        break;
    case KYU_RAFT_CC_ADD_LEARNER:
        /* On a voter: a demotion. The node keeps getting the log, so it learns that it no
         * longer votes (and stops campaigning) before a later change removes it. Never the
         * last voter, nor the leader itself: deposed before the change committed, it could
         * hold the only copy of it and, a learner, could not campaign to commit it. */
        if (learner || (voter && (c.n_voters == 0 || node == r->id)))
            return KYU_RAFT_ERR_INVALID;
        c.learners[c.n_learners++] = node;
        break;
    case KYU_RAFT_CC_REMOVE:
        if (!voter && !learner)
            return KYU_RAFT_ERR_INVALID;
        if (voter && c.n_voters == 0)
            return KYU_RAFT_ERR_INVALID; /* never remove the last voter */
        break;
    default:
        return KYU_RAFT_ERR_INVALID;
    }
    if (c.n_voters + c.n_learners > KYU_RAFT_MAX_NODES)
        return KYU_RAFT_ERR_INVALID;
    uint8_t buf[8 + 8 * KYU_RAFT_MAX_NODES * 2];
    size_t len = kyu_raft_conf_encode(&c, buf, sizeof(buf));
    KYU_RAFT_ASSERT(len > 0);
    uint64_t index;
    if (!kyu_raft_append_entry(r, KYU_RAFT_ENTRY_CONF, buf, len, &index))
        return KYU_RAFT_ERR_NOMEM;
    if (index_out)
        *index_out = index;
    kyu_raft_bcast_append(r);
    return KYU_RAFT_OK;
}

kyu_raft_err_t kyu_raft_transfer_leader(kyu_raft_t *r, uint64_t target)
{
    if (r->role != KYU_RAFT_LEADER)
        return KYU_RAFT_ERR_NOT_LEADER;
    if (target == r->id || !kyu_raft_conf_is_voter(&r->conf, target))
        return KYU_RAFT_ERR_INVALID;
    if (r->lead_transferee == target)
        return KYU_RAFT_OK;
    kyu_raft_progress_t *pr = kyu_raft_progress(r, target);
    if (!pr)
        return KYU_RAFT_ERR_INVALID;
    /* Proposals stop until the transfer ends; it is abandoned after an election timeout. */
    r->lead_transferee = target;
    r->election_elapsed = 0;
    if (pr->match == kyu_raft_log_last(&r->log)) {
        kyu_raft_msg_t m = {.type = KYU_RAFT_MSG_TIMEOUT_NOW, .to = target};
        kyu_raft_send(r, &m);
    } else {
        kyu_raft_send_append(r, pr, true);
    }
    return KYU_RAFT_OK;
}

kyu_raft_role_t kyu_raft_role(const kyu_raft_t *r)
{
    return r->role;
}
uint64_t kyu_raft_term(const kyu_raft_t *r)
{
    return r->term;
}
uint64_t kyu_raft_leader(const kyu_raft_t *r)
{
    return r->lead;
}
uint64_t kyu_raft_vote(const kyu_raft_t *r)
{
    return r->vote;
}
uint64_t kyu_raft_commit(const kyu_raft_t *r)
{
    return r->log.commit;
}
uint64_t kyu_raft_applied(const kyu_raft_t *r)
{
    return r->log.applied;
}
uint64_t kyu_raft_first_index(const kyu_raft_t *r)
{
    return kyu_raft_log_first(&r->log);
}
uint64_t kyu_raft_last_index(const kyu_raft_t *r)
{
    return kyu_raft_log_last(&r->log);
}
uint64_t kyu_raft_term_at(const kyu_raft_t *r, uint64_t index)
{
    uint64_t t = 0;
    return kyu_raft_log_term(&r->log, index, &t) ? t : 0;
}
const kyu_raft_entry_t *kyu_raft_entry_at(const kyu_raft_t *r, uint64_t index)
{
    return kyu_raft_log_entry(&r->log, index);
}
const kyu_raft_conf_t *kyu_raft_conf(const kyu_raft_t *r)
{
    return &r->conf;
}
const kyu_raft_snapshot_t *kyu_raft_snapshot(const kyu_raft_t *r)
{
    return &r->snap;
}
uint64_t kyu_raft_match_of(const kyu_raft_t *r, uint64_t node)
{
    if (r->role != KYU_RAFT_LEADER)
        return 0;
    for (size_t i = 0; i < r->n_prs; i++)
        if (r->prs[i].id == node)
            return r->prs[i].match;
    return 0;
}

const char *kyu_raft_msg_type_name(kyu_raft_msg_type_t t)
{
    static const char *names[] = {
        "?",         "APPEND",   "APPEND_RESP",   "HEARTBEAT", "HB_RESP",       "VOTE",
        "VOTE_RESP", "PRE_VOTE", "PRE_VOTE_RESP", "SNAPSHOT",  "SNAPSHOT_RESP", "TIMEOUT_NOW"};
    return (unsigned)t < sizeof(names) / sizeof(names[0]) ? names[t] : "?";
}

const char *kyu_raft_role_name(kyu_raft_role_t role)
{
    static const char *names[] = {"follower", "pre-candidate", "candidate", "leader"};
    return (unsigned)role < 4 ? names[role] : "?";
}
