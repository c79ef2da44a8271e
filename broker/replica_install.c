/* replica_install: a follower too far behind the leader's log installs a snapshot. The
 * Ready that holds it stays out while the state is fetched from a member (snapshot.h),
 * swapped in, and the log reset to start at the snapshot. */
#include "replica_internal.h"

#include <stdio.h>
#include <stdlib.h>

/* Asks for the state of the Ready's snapshot: from the leader, or after failures from the
 * other members in turn (any member that applied that far can serve it). */
void kyu_replica_start_install(kyu_replica_t *self)
{
    uint64_t server = kyu_raft_leader(self->raft);
    if (self->install_tries > 0 || server == KYU_RAFT_NONE || server == self->node_id) {
        const kyu_raft_conf_t *c = &self->rd.snapshot->conf;
        uint64_t ids[2 * KYU_RAFT_MAX_NODES];
        size_t n = 0;
        for (uint32_t i = 0; i < c->n_voters; i++)
            if (c->voters[i] != self->node_id)
                ids[n++] = c->voters[i];
        if (n > 0)
            server = ids[self->install_tries % n];
    }
    self->install_running = true;
    self->install_wait = 0;
    kyu_replica_say(self,
                    "this node is behind the leader's log: fetching a snapshot of at least index "
                    "%llu from node %llu",
                    (unsigned long long)self->rd.snapshot->index, (unsigned long long)server);
    self->net->install(self->net_arg, server, self->rd.snapshot->index);
}

bool kyu_replica_installing(kyu_replica_t *self)
{
    return self->installing;
}

void kyu_replica_install_done(kyu_replica_t *self, bool ok, const char *why)
{
    if (!self->installing || !self->install_running)
        return;
    self->install_running = false;
    if (!ok) {
        kyu_replica_say(self, "snapshot fetch failed: %s; trying again", why);
        self->install_tries++;
        return;
    }
    const kyu_raft_ready_t *rd = &self->rd;
    const kyu_raft_snapshot_t *snap = rd->snapshot;
    kyu_err_t err;
    /* On failure the node refuses writes and leaves the state machine alone (store.h). The
     * state machine's buffered writes go to the state they belong to first, so that the
     * state left in place (a refused install) is whole. */
    if (kyu_sm_flush(self->sm, &err) != KYU_OK ||
        kyu_store_replace_state(self->store, &err) != KYU_OK ||
        kyu_sm_reload(self->sm, &err) != KYU_OK) {
        kyu_replica_fail(self, err.msg);
        return;
    }
    if (kyu_sm_applied_index(self->sm) < snap->index) {
        self->fatal = true;
        kyu_replica_fail(self, "the installed snapshot is older than the one the leader sent");
        return;
    }
    /* The log restarts at the snapshot; entries of the same Ready follow it. */
    kyu_log_snapshot_t ls = {.found = true, .index = snap->index, .term = snap->term};
    ls.conf_len = kyu_raft_conf_encode(&snap->conf, ls.conf, sizeof ls.conf);
    uint64_t last = rd->n_entries ? rd->entries[rd->n_entries - 1].index : snap->index;
    kyu_log_hard_state_t hs = {true, rd->hard_state.term, rd->hard_state.vote,
                               rd->hard_state.commit < last ? rd->hard_state.commit : last};
    uint64_t token = 0;
    if (self->log->install(self->log_arg, &ls, &hs, &token, &err) != KYU_OK) {
        kyu_replica_fail(self, err.msg);
        return;
    }
    self->persisted = rd->hard_state;
    self->log_last = snap->index;
    self->compacted = snap->index;
    self->compact_checked = kyu_sm_applied_index(self->sm);
    self->flog_next_set = false; /* the log's files start at the installed state */
    for (size_t i = 0; i < rd->n_entries; i++) {
        kyu_log_entry_t e = {rd->entries[i].index, rd->entries[i].term, (int)rd->entries[i].type,
                             rd->entries[i].data, rd->entries[i].len};
        if (self->log->write(self->log_arg, NULL, &e, 1, false, &token, &err) != KYU_OK) {
            kyu_replica_fail(self, err.msg);
            return;
        }
        self->log_last = e.index;
    }
    self->installing = false;
    self->await_token = token;
    kyu_replica_say(self, "installed a snapshot at index %llu (state at %llu)",
                    (unsigned long long)snap->index,
                    (unsigned long long)kyu_sm_applied_index(self->sm));
}
