/*
 * raft_replicate.c - log replication: the leader's appends (pipelined and batched), heartbeats,
 * the commit rule, leadership transfer, and the follower's handling of appends and
 * heartbeats with fast back-off hints.
 */
#include "raft_internal.h"

#include <string.h>

kyu_raft_progress_t *kyu_raft_progress(kyu_raft_t *r, uint64_t id)
{
    for (size_t i = 0; i < r->n_prs; i++)
        if (r->prs[i].id == id)
            return &r->prs[i];
    return NULL;
}

bool kyu_raft_append_entry(kyu_raft_t *r, kyu_raft_entry_type_t type, const void *data, size_t len,
                           uint64_t *index_out)
{
    kyu_raft_entry_t e = {.term = r->term,
                          .index = kyu_raft_log_last(&r->log) + 1,
                          .type = type,
                          .data = (uint8_t *)data,
                          .len = len};
    if (!kyu_raft_log_append(&r->log, &e, 1))
        return false;
    *index_out = e.index;
    if (type == KYU_RAFT_ENTRY_CONF)
        kyu_raft_conf_refresh(r, e.index);
    /* The leader's own progress moves when the entry is durable (kyu_raft_advance). */
    return true;
}

/* Copies entries [lo, ...] up to the batching limits into a new array. */
static bool copy_entries(kyu_raft_t *r, uint64_t lo, kyu_raft_entry_t **out, size_t *n_out)
{
    uint64_t last = kyu_raft_log_last(&r->log);
    size_t n = 0, bytes = 0;
    while (lo + n <= last && n < r->max_msg_entries) {
        size_t len = kyu_raft_log_entry(&r->log, lo + n)->len;
        if (n > 0 && bytes + len > r->max_msg_bytes)
            break;
        bytes += len;
        n++;
    }
    *out = NULL;
    *n_out = 0;
    if (n == 0)
        return true;
    kyu_raft_entry_t *ents = malloc(n * sizeof(*ents));
    if (!ents)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!kyu_raft_entry_copy(&ents[i], kyu_raft_log_entry(&r->log, lo + i))) {
            for (size_t j = 0; j < i; j++)
                kyu_raft_entry_free(&ents[j]);
            free(ents);
            return false;
        }
    }
    *out = ents;
    *n_out = n;
    return true;
}

bool kyu_raft_send_append(kyu_raft_t *r, kyu_raft_progress_t *pr, bool send_if_empty)
{
    if (pr->id == r->id || kyu_raft_pr_is_paused(pr))
        return false;
    uint64_t prev = pr->next - 1, prev_term;
    if (!kyu_raft_log_term(&r->log, prev, &prev_term)) {
        /* The entries this follower needs were compacted: it needs the snapshot. */
        kyu_raft_send_snapshot_chunk(r, pr);
        return false;
    }
    kyu_raft_msg_t m = {.type = KYU_RAFT_MSG_APPEND,
                        .to = pr->id,
                        .index = prev,
                        .log_term = prev_term,
                        .commit = r->log.commit};
    if (!copy_entries(r, pr->next, &m.entries, &m.n_entries))
        return false;
    if (m.n_entries == 0 && !send_if_empty)
        return false;
    uint64_t told = m.commit < prev + m.n_entries ? m.commit : prev + m.n_entries;
    if (told > pr->commit_told)
        pr->commit_told = told;
    kyu_raft_pr_sent(pr, prev + m.n_entries, m.n_entries);
    kyu_raft_send(r, &m);
    return m.n_entries > 0;
}

void kyu_raft_bcast_append(kyu_raft_t *r)
{
    for (size_t i = 0; i < r->n_prs; i++)
        kyu_raft_send_append(r, &r->prs[i], true);
}

/* After the commit index moved: entries not sent yet go out (they carry the commit), but a
 * follower that has every entry is not sent an empty append just to learn the commit. It
 * learns it from the next append (the next proposal's, under load) or at the next tick
 * (kyu_raft_tell_commit): the leader answers clients once a majority has an entry, so the
 * followers' commit index is on no client's path, and an empty append per commit cost a
 * message, its answer and a wakeup of each follower per round. */
static void commit_moved(kyu_raft_t *r)
{
    for (size_t i = 0; i < r->n_prs; i++)
        kyu_raft_send_append(r, &r->prs[i], false);
}

void kyu_raft_tell_commit(kyu_raft_t *r)
{
    for (size_t i = 0; i < r->n_prs; i++) {
        kyu_raft_progress_t *pr = &r->prs[i];
        uint64_t known = pr->match < r->log.commit ? pr->match : r->log.commit;
        if (pr->id != r->id && pr->commit_told < known)
            kyu_raft_send_append(r, pr, true);
    }
}

void kyu_raft_bcast_heartbeat(kyu_raft_t *r)
{
    for (size_t i = 0; i < r->n_prs; i++) {
        kyu_raft_progress_t *pr = &r->prs[i];
        if (pr->id == r->id)
            continue;
        /* Never tell a follower to commit beyond what it is known to have. */
        uint64_t commit = pr->match < r->log.commit ? pr->match : r->log.commit;
        if (commit > pr->commit_told)
            pr->commit_told = commit;
        kyu_raft_msg_t m = {.type = KYU_RAFT_MSG_HEARTBEAT, .to = pr->id, .commit = commit};
        kyu_raft_send(r, &m);
    }
}

/* The commit rule (thesis 3.6.2, Figure 8): the leader commits the highest index stored on
 * a majority of voters, but only if that entry is of its own term; earlier entries are then
 * committed indirectly by log matching. */
bool kyu_raft_maybe_commit(kyu_raft_t *r)
{
    uint64_t matches[KYU_RAFT_MAX_NODES];
    size_t n = 0;
    for (size_t i = 0; i < r->n_prs; i++)
        if (kyu_raft_conf_is_voter(&r->conf, r->prs[i].id))
            matches[n++] = r->prs[i].match;
    if (n == 0 || n != r->conf.n_voters)
        return false;
    uint64_t index = kyu_raft_quorum_index(matches, n);
    if (index <= r->log.commit)
        return false;
    uint64_t term = 0;
    kyu_raft_log_term(&r->log, index, &term);
#if KYU_RAFT_PLANTED_BUG == 1
    /* Planted bug: commit by counting replicas whatever the entry's term (Figure 8). */
    (void)term;
#else
    if (term != r->term)
        return false;
#endif
    kyu_raft_log_commit_to(&r->log, index);
    /* A leader removed by a now-committed configuration steps down (thesis 4.2.2). */
    if (!kyu_raft_conf_is_voter(&r->conf, r->id) && r->conf_index <= r->log.commit)
        kyu_raft_become_follower(r, r->term, KYU_RAFT_NONE);
    return true;
}

void kyu_raft_leader_self_ack(kyu_raft_t *r)
{
    kyu_raft_progress_t *pr = kyu_raft_progress(r, r->id);
    if (pr)
        kyu_raft_pr_maybe_update(pr, r->log.stable);
    if (kyu_raft_maybe_commit(r) && r->role == KYU_RAFT_LEADER)
        commit_moved(r);
}

static void maybe_finish_transfer(kyu_raft_t *r, const kyu_raft_progress_t *pr)
{
    if (r->lead_transferee == pr->id && pr->match == kyu_raft_log_last(&r->log)) {
        kyu_raft_msg_t m = {.type = KYU_RAFT_MSG_TIMEOUT_NOW, .to = pr->id};
        kyu_raft_send(r, &m);
    }
}

static void handle_append_resp(kyu_raft_t *r, kyu_raft_progress_t *pr, const kyu_raft_msg_t *m)
{
    /* A correct follower never acknowledges entries we do not have; a corrupt or stray
     * message must not move match past our log (and a commit past it). */
    if (m->index > kyu_raft_log_last(&r->log))
        return;
    if (m->reject) {
        /* Fast back-off: the follower's hint (index, term) lets us skip every entry of a
         * conflicting term at once instead of one index per round trip. */
        uint64_t next_probe = m->reject_hint;
        if (m->log_term > 0)
            next_probe = kyu_raft_log_find_conflict_by_term(&r->log, m->reject_hint, m->log_term);
        if (kyu_raft_pr_maybe_decr_to(pr, m->index, next_probe)) {
            if (pr->state == KYU_RAFT_PR_REPLICATE)
                kyu_raft_pr_become_probe(pr);
            kyu_raft_send_append(r, pr, true);
        }
        return;
    }
    bool was_paused = kyu_raft_pr_is_paused(pr);
    if (!kyu_raft_pr_maybe_update(pr, m->index))
        return;
    if (pr->state == KYU_RAFT_PR_PROBE) {
        kyu_raft_pr_become_replicate(pr);
    } else if (pr->state == KYU_RAFT_PR_SNAPSHOT && pr->match >= pr->snap_index) {
        kyu_raft_pr_become_probe(pr);
        kyu_raft_pr_become_replicate(pr);
    }
    if (kyu_raft_maybe_commit(r)) {
        if (r->role != KYU_RAFT_LEADER)
            return;
        commit_moved(r);
    } else if (was_paused) {
        kyu_raft_send_append(r, pr, false);
    }
    /* Keep the pipeline full. */
    while (kyu_raft_send_append(r, pr, false)) {
    }
    maybe_finish_transfer(r, pr);
}

void kyu_raft_step_leader(kyu_raft_t *r, const kyu_raft_msg_t *m)
{
    kyu_raft_progress_t *pr = kyu_raft_progress(r, m->from);
    if (!pr)
        return;
    switch (m->type) {
    case KYU_RAFT_MSG_APPEND_RESP:
        pr->recent_active = true;
        handle_append_resp(r, pr, m);
        break;
    case KYU_RAFT_MSG_HEARTBEAT_RESP:
        pr->recent_active = true;
        pr->probe_sent = false;
        if (m->index < pr->match && pr->state != KYU_RAFT_PR_SNAPSHOT) {
            /* The follower holds less than it acknowledged: it restarted from an empty or
             * older data directory. With no client writes nothing else would tell us, so
             * start over from what it has; entries or a snapshot follow below. */
            pr->match = m->index;
            kyu_raft_pr_become_probe(pr);
        }
        if (pr->state == KYU_RAFT_PR_REPLICATE && pr->infl_count >= pr->infl_max)
            kyu_raft_pr_free_first(pr);
        if (pr->state == KYU_RAFT_PR_SNAPSHOT) {
            /* A chunk or its answer may have been lost: resend after a few heartbeats. */
            if (++pr->snap_idle >= 3)
                kyu_raft_send_snapshot_chunk(r, pr);
        } else if (pr->match < kyu_raft_log_last(&r->log)) {
            kyu_raft_send_append(r, pr, true);
        }
        break;
    case KYU_RAFT_MSG_SNAPSHOT_RESP:
        pr->recent_active = true;
        kyu_raft_handle_snapshot_resp(r, pr, m);
        break;
    default:
        break;
    }
}

void kyu_raft_handle_append(kyu_raft_t *r, const kyu_raft_msg_t *m)
{
    kyu_raft_msg_t resp = {.type = KYU_RAFT_MSG_APPEND_RESP, .to = m->from};
    if (m->index < r->log.commit) {
        /* Everything up to commit is already known to match the leader's log. */
        resp.index = r->log.commit;
        kyu_raft_send(r, &resp);
        return;
    }
    uint64_t new_last;
    bool nomem;
    uint64_t old_last = kyu_raft_log_last(&r->log);
    if (kyu_raft_log_maybe_append(&r->log, m->index, m->log_term, m->entries, m->n_entries,
                                  &new_last, &nomem)) {
        if (m->n_entries > 0)
            kyu_raft_conf_refresh(r, m->entries[0].index <= old_last ? m->entries[0].index
                                                                     : old_last + 1);
        kyu_raft_log_commit_to(&r->log, m->commit < new_last ? m->commit : new_last);
        resp.index = new_last;
        kyu_raft_send(r, &resp);
        return;
    }
    if (nomem)
        return; /* the leader retries */
    uint64_t hint = m->index < old_last ? m->index : old_last;
    hint = kyu_raft_log_find_conflict_by_term(&r->log, hint, m->log_term);
    uint64_t hint_term = 0;
    kyu_raft_log_term(&r->log, hint, &hint_term);
    resp.index = m->index;
    resp.reject = true;
    resp.reject_hint = hint;
    resp.log_term = hint_term;
    kyu_raft_send(r, &resp);
}

void kyu_raft_handle_heartbeat(kyu_raft_t *r, const kyu_raft_msg_t *m)
{
    uint64_t last = kyu_raft_log_last(&r->log);
    kyu_raft_log_commit_to(&r->log, m->commit < last ? m->commit : last);
    /* The answer says how far our log reaches, so a leader that believes we hold more (we
     * lost our disk) finds out without waiting for a client write. */
    kyu_raft_msg_t resp = {.type = KYU_RAFT_MSG_HEARTBEAT_RESP, .to = m->from, .index = last};
    kyu_raft_send(r, &resp);
}
