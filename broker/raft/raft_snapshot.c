/*
 * raft_snapshot.c - log compaction and InstallSnapshot in chunks (thesis chapter 5).
 *
 * The leader sends a snapshot one chunk at a time and waits for each chunk's answer before
 * the next (a snapshot is large, a lost chunk is resent after a few heartbeats). The
 * follower assembles the chunks in order; when the last arrives it replaces its log and
 * hands the snapshot out in the next Ready to be installed, then answers with an append
 * acknowledgement so the leader resumes normal replication after it.
 */
#include "raft_internal.h"

#include <string.h>

/* Largest snapshot a follower accepts; a bound on the assembly buffer. */
#define KYU_RAFT_MAX_SNAPSHOT_BYTES ((uint64_t)1 << 32)

void kyu_raft_snapshot_free(kyu_raft_snapshot_t *s)
{
    free(s->data);
    memset(s, 0, sizeof(*s));
}

kyu_raft_err_t kyu_raft_compact(kyu_raft_t *r, uint64_t index, const void *data, size_t len)
{
    if (index <= r->log.snap_index)
        return KYU_RAFT_OK;
    if (index > r->log.applied || index > r->log.stable)
        return KYU_RAFT_ERR_INVALID;
    uint8_t *copy = NULL;
    if (len > 0) {
        copy = malloc(len);
        if (!copy)
            return KYU_RAFT_ERR_NOMEM;
        memcpy(copy, data, len);
    }
    kyu_raft_snapshot_t s = {.index = index, .data = copy, .len = len};
    KYU_RAFT_ASSERT(kyu_raft_log_term(&r->log, index, &s.term));
    kyu_raft_conf_at(r, index, &s.conf);
    kyu_raft_snapshot_free(&r->snap);
    r->snap = s;
    kyu_raft_log_compact(&r->log, index);
    return KYU_RAFT_OK;
}

void kyu_raft_send_snapshot_chunk(kyu_raft_t *r, kyu_raft_progress_t *pr)
{
    if (r->snap.index == 0)
        return; /* nothing was ever compacted: cannot happen when a term is missing */
    if (pr->state != KYU_RAFT_PR_SNAPSHOT || pr->snap_index != r->snap.index)
        kyu_raft_pr_become_snapshot(pr, r->snap.index);
    if (pr->snap_offset >= r->snap.len && r->snap.len > 0)
        pr->snap_offset = 0; /* all sent but never acknowledged as installed: start over */
    pr->snap_idle = 0;
    size_t off = (size_t)pr->snap_offset;
    size_t n = r->snap.len - off;
    if (n > r->snapshot_chunk)
        n = r->snapshot_chunk;
    kyu_raft_msg_t m = {.type = KYU_RAFT_MSG_SNAPSHOT,
                        .to = pr->id,
                        .index = r->snap.index,
                        .log_term = r->snap.term,
                        .commit = r->log.commit,
                        .snap_offset = off,
                        .snap_total = r->snap.len,
                        .snap_len = n,
                        .snap_conf = r->snap.conf};
    if (n > 0) {
        m.snap_data = malloc(n);
        if (!m.snap_data)
            return;
        memcpy(m.snap_data, r->snap.data + off, n);
    }
    kyu_raft_send(r, &m);
}

void kyu_raft_handle_snapshot_resp(kyu_raft_t *r, kyu_raft_progress_t *pr, const kyu_raft_msg_t *m)
{
    if (pr->state != KYU_RAFT_PR_SNAPSHOT || m->index != pr->snap_index)
        return;
    /* The follower says which byte it wants next (0 after a reject: start over). */
    pr->snap_offset = m->reject ? 0 : m->snap_offset;
    if (pr->snap_offset < r->snap.len)
        kyu_raft_send_snapshot_chunk(r, pr);
}

static void reply_chunk(kyu_raft_t *r, const kyu_raft_msg_t *m, bool reject, uint64_t offset)
{
    kyu_raft_msg_t resp = {.type = KYU_RAFT_MSG_SNAPSHOT_RESP,
                           .to = m->from,
                           .index = m->index,
                           .reject = reject,
                           .snap_offset = offset};
    kyu_raft_send(r, &resp);
}

static bool rx_append(kyu_raft_t *r, const kyu_raft_msg_t *m)
{
    if (m->snap_offset == 0) {
        kyu_raft_snapshot_free(&r->rx);
        r->rx_cap = 0;
        r->rx.index = m->index;
        r->rx.term = m->log_term;
        r->rx.conf = m->snap_conf;
        r->rx_total = m->snap_total;
    }
    size_t need = r->rx.len + m->snap_len;
    if (need > r->rx_total)
        return false;
    if (need > r->rx_cap) {
        /* Grow with the chunks that actually arrive, not with the announced total. */
        size_t cap = r->rx_cap ? r->rx_cap * 2 : 64 * 1024;
        if (cap < need)
            cap = need;
        if (cap > r->rx_total)
            cap = (size_t)r->rx_total;
        uint8_t *p = realloc(r->rx.data, cap ? cap : 1);
        if (!p)
            return false;
        r->rx.data = p;
        r->rx_cap = cap;
    }
    if (m->snap_len > 0)
        memcpy(r->rx.data + r->rx.len, m->snap_data, m->snap_len);
    r->rx.len = need;
    return true;
}

void kyu_raft_handle_snapshot(kyu_raft_t *r, const kyu_raft_msg_t *m)
{
    if (m->index <= r->log.commit) {
        /* We already have everything it covers: tell the leader where we are. */
        kyu_raft_msg_t resp = {
            .type = KYU_RAFT_MSG_APPEND_RESP, .to = m->from, .index = r->log.commit};
        kyu_raft_send(r, &resp);
        return;
    }
    bool fresh = m->snap_offset == 0;
    bool continues = r->rx.index == m->index && r->rx.term == m->log_term &&
                     r->rx_total == m->snap_total && m->snap_offset == r->rx.len;
    if (m->snap_total > KYU_RAFT_MAX_SNAPSHOT_BYTES || (!fresh && !continues)) {
        bool same = r->rx.index == m->index && r->rx.term == m->log_term;
        reply_chunk(r, m, !same, same ? r->rx.len : 0);
        return;
    }
    if (!rx_append(r, m)) {
        kyu_raft_snapshot_free(&r->rx);
        reply_chunk(r, m, true, 0);
        return;
    }
    if (r->rx.len < r->rx_total) {
        reply_chunk(r, m, false, r->rx.len);
        return;
    }
    /* Complete. */
    kyu_raft_msg_t resp = {.type = KYU_RAFT_MSG_APPEND_RESP, .to = m->from};
    if (kyu_raft_log_match(&r->log, m->index, m->log_term)) {
        /* Our log has the snapshot's last entry, so everything before it matches: keep the
         * log (and its suffix) and just learn the commit index. */
        kyu_raft_log_commit_to(&r->log, m->index);
        kyu_raft_snapshot_free(&r->rx);
        resp.index = r->log.commit;
    } else {
        kyu_raft_log_restore(&r->log, r->rx.index, r->rx.term);
        kyu_raft_snapshot_free(&r->snap);
        r->snap = r->rx;
        memset(&r->rx, 0, sizeof(r->rx));
        r->snap_pending = true;
        kyu_raft_conf_refresh(r, 0);
        resp.index = r->snap.index;
    }
    r->rx_cap = 0;
    r->rx_total = 0;
    kyu_raft_send(r, &resp);
}
