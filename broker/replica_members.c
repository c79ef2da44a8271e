/* replica_members: where the members are (the replicated address book first, the --peer
 * list second), which peers this node links to, and configuration changes proposed to the
 * core (membership.c drives them). */
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
