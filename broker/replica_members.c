/* replica_members: where the members are (the replicated address book first, the --peer
 * list second), which peers this node links to, configuration changes proposed to the core
 * (membership.c drives them), leadership (serving, transfers) and the node's status. */
#include "replica_internal.h"

#include <string.h>

const kyu_peer_t *kyu_replica_address(kyu_replica_t *self, uint64_t id)
{
    const kyu_peer_t *p = kyu_sm_member(self->sm, id);
    return p ? p : kyu_peers_find(&self->peers, id);
}

static void add_link(kyu_peers_t *out, const kyu_peer_t *p, uint64_t self_id)
{
    if (p && p->id != self_id && out->n < KYU_RAFT_MAX_NODES && !kyu_peers_find(out, p->id))
        out->peers[out->n++] = *p;
}

void kyu_replica_links(kyu_replica_t *self, kyu_peers_t *out)
{
    memset(out, 0, sizeof *out);
    const kyu_raft_conf_t *c = kyu_raft_conf(self->raft);
    if (kyu_raft_conf_is_voter(c, self->node_id) || kyu_raft_conf_is_learner(c, self->node_id)) {
        for (uint32_t i = 0; i < c->n_voters; i++)
            add_link(out, kyu_replica_address(self, c->voters[i]), self->node_id);
        for (uint32_t i = 0; i < c->n_learners; i++)
            add_link(out, kyu_replica_address(self, c->learners[i]), self->node_id);
        return;
    }
    const kyu_peer_t *book = NULL;
    size_t n = kyu_sm_members(self->sm, &book);
    for (size_t i = 0; i < n; i++)
        add_link(out, &book[i], self->node_id);
    for (size_t i = 0; i < self->peers.n; i++)
        add_link(out, kyu_replica_address(self, self->peers.peers[i].id), self->node_id);
}

kyu_code_t kyu_replica_conf_change(kyu_replica_t *self, kyu_raft_cc_op_t op, uint64_t node,
                                   kyu_err_t *err)
{
    if (self->failed)
        return kyu_err_set(err, KYU_ERR_STORAGE, "%s", self->failure);
    if (kyu_replica_read_only(self))
        return kyu_err_set(err, KYU_ERR_READ_ONLY, "%s", kyu_replica_read_only(self));
    uint64_t leader = KYU_RAFT_NONE;
    switch (kyu_raft_propose_conf_change(self->raft, op, node, NULL, &leader)) {
    case KYU_RAFT_OK:
        kyu_replica_flush(self);
        return KYU_OK;
    case KYU_RAFT_ERR_NOT_LEADER:
        return kyu_err_set(err, KYU_ERR_NOT_LEADER, "this node is not the leader");
    case KYU_RAFT_ERR_BUSY:
        return kyu_err_set(err, KYU_ERR_BUSY,
                           "the previous configuration change is not committed yet");
    case KYU_RAFT_ERR_NOMEM:
        return kyu_err_set(err, KYU_ERR_BUSY, "out of memory");
    default:
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "configuration change refused (no change, the last voter, or more "
                           "than %d members)",
                           KYU_RAFT_MAX_NODES);
    }
}

void kyu_replica_status(kyu_replica_t *self, kyu_node_status_t *out)
{
    memset(out, 0, sizeof *out);
    const kyu_raft_t *r = self->raft;
    out->id = self->node_id;
    const kyu_peer_t *me = kyu_replica_address(self, self->node_id);
    if (me) {
        snprintf(out->raft_address, sizeof out->raft_address, "%s", me->raft);
        snprintf(out->endpoint, sizeof out->endpoint, "%s", me->client);
    }
    kyu_raft_role_t role = kyu_raft_role(r);
    snprintf(out->role, sizeof out->role, "%s",
             role == KYU_RAFT_LEADER     ? "leader"
             : role == KYU_RAFT_FOLLOWER ? "follower"
                                         : "candidate");
    out->term = kyu_raft_term(r);
    out->commit_index = kyu_raft_commit(r);
    out->applied_index = kyu_sm_applied_index(self->sm);
    out->leader = kyu_raft_leader(r);
    const kyu_raft_conf_t *c = kyu_raft_conf(r);
    _Static_assert(KYU_CLUSTER_NODES_MAX == KYU_RAFT_MAX_NODES, "one bound on members");
    out->n_voters = c->n_voters;
    memcpy(out->voters, c->voters, c->n_voters * sizeof c->voters[0]);
    out->n_learners = c->n_learners;
    memcpy(out->learners, c->learners, c->n_learners * sizeof c->learners[0]);
    snprintf(out->member, sizeof out->member, "%s",
             kyu_raft_conf_is_voter(c, self->node_id)     ? "voter"
             : kyu_raft_conf_is_learner(c, self->node_id) ? "learner"
                                                          : "none");
    const char *ro = kyu_replica_read_only(self);
    snprintf(out->read_only, sizeof out->read_only, "%s", ro ? ro : "");
}

const kyu_raft_t *kyu_replica_raft(kyu_replica_t *self)
{
    return self->raft;
}

kyu_sm_t *kyu_replica_sm(kyu_replica_t *self)
{
    return self->sm;
}

bool kyu_replica_is_leader(kyu_replica_t *self)
{
    return kyu_raft_role(self->raft) == KYU_RAFT_LEADER;
}

bool kyu_replica_transfer(kyu_replica_t *self)
{
    return kyu_replica_transfer_to(self, KYU_RAFT_NONE) == KYU_OK;
}

kyu_code_t kyu_replica_transfer_to(kyu_replica_t *self, uint64_t target)
{
    const kyu_raft_t *r = self->raft;
    if (kyu_raft_role(r) != KYU_RAFT_LEADER)
        return KYU_ERR_NOT_LEADER;
    if (kyu_raft_conf(r)->n_voters <= 1)
        return KYU_ERR_INVALID_ARGUMENT;
    uint64_t best = KYU_RAFT_NONE, best_match = 0;
    const kyu_raft_conf_t *conf = kyu_raft_conf(r);
    for (uint32_t i = 0; i < conf->n_voters; i++) {
        uint64_t id = conf->voters[i], m = kyu_raft_match_of(r, id);
        if (id != self->node_id && (target == KYU_RAFT_NONE || id == target) &&
            (best == KYU_RAFT_NONE || m > best_match)) {
            best = id;
            best_match = m;
        }
    }
    /* What was accepted goes into the log first: the target catches up with it before it
     * takes over, so those requests are answered. */
    kyu_replica_flush(self);
    if (best == KYU_RAFT_NONE || kyu_raft_transfer_leader(self->raft, best) != KYU_RAFT_OK)
        return KYU_ERR_INVALID_ARGUMENT;
    self->transferring = true;
    self->transfer_ticks = 0;
    kyu_replica_flush(self);
    return KYU_OK;
}

bool kyu_replica_serving(kyu_replica_t *self)
{
    const kyu_raft_t *r = self->raft;
    return !self->transferring && kyu_raft_role(r) == KYU_RAFT_LEADER &&
           kyu_raft_term_at(r, kyu_sm_applied_index(self->sm)) == kyu_raft_term(r);
}

const char *kyu_replica_leader_endpoint(kyu_replica_t *self)
{
    uint64_t leader = kyu_raft_leader(self->raft);
    const kyu_peer_t *p = leader != self->node_id ? kyu_replica_address(self, leader) : NULL;
    return p ? p->client : "";
}
