/*
 * raft_conf.c - cluster configurations. A node always uses the latest configuration in its
 * log, committed or not (thesis 4.1); when a conflicting suffix is truncated the previous one
 * comes back, so the configuration is recomputed from the log whenever it changes.
 */
#include "raft_internal.h"

#include <string.h>

static bool contains(const uint64_t *ids, uint32_t n, uint64_t id)
{
    for (uint32_t i = 0; i < n; i++)
        if (ids[i] == id)
            return true;
    return false;
}

bool kyu_raft_conf_is_voter(const kyu_raft_conf_t *c, uint64_t id)
{
    return contains(c->voters, c->n_voters, id);
}

bool kyu_raft_conf_is_learner(const kyu_raft_conf_t *c, uint64_t id)
{
    return contains(c->learners, c->n_learners, id);
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

size_t kyu_raft_conf_encode(const kyu_raft_conf_t *c, uint8_t *buf, size_t cap)
{
    size_t need = 8 + 8 * (size_t)(c->n_voters + c->n_learners);
    if (c->n_voters + c->n_learners > KYU_RAFT_MAX_NODES || need > cap)
        return 0;
    put_u32(buf, c->n_voters);
    put_u32(buf + 4, c->n_learners);
    uint8_t *p = buf + 8;
    for (uint32_t i = 0; i < c->n_voters; i++, p += 8)
        put_u64(p, c->voters[i]);
    for (uint32_t i = 0; i < c->n_learners; i++, p += 8)
        put_u64(p, c->learners[i]);
    return need;
}

bool kyu_raft_conf_decode(const uint8_t *buf, size_t len, kyu_raft_conf_t *c)
{
    memset(c, 0, sizeof(*c));
    if (len < 8)
        return false;
    uint64_t nv = get_le(buf, 4), nl = get_le(buf + 4, 4);
    if (nv > KYU_RAFT_MAX_NODES || nl > KYU_RAFT_MAX_NODES || nv + nl > KYU_RAFT_MAX_NODES ||
        len != 8 + 8 * (nv + nl))
        return false;
    c->n_voters = (uint32_t)nv;
    c->n_learners = (uint32_t)nl;
    const uint8_t *p = buf + 8;
    for (uint32_t i = 0; i < c->n_voters; i++, p += 8)
        c->voters[i] = get_le(p, 8);
    for (uint32_t i = 0; i < c->n_learners; i++, p += 8)
        c->learners[i] = get_le(p, 8);
    return true;
}

/* The latest conf entry at or below index, scanning no lower than floor. */
static bool find_conf(const kyu_raft_t *r, uint64_t index, uint64_t floor, kyu_raft_conf_t *out,
                      uint64_t *at)
{
    for (uint64_t i = index; i >= floor && i > r->log.snap_index; i--) {
        const kyu_raft_entry_t *e = kyu_raft_log_entry(&r->log, i);
        if (e->type == KYU_RAFT_ENTRY_CONF) {
            /* Conf entries are written by kyu_raft_propose_conf_change: always valid. */
            KYU_RAFT_ASSERT(kyu_raft_conf_decode(e->data, e->len, out));
            *at = i;
            return true;
        }
    }
    return false;
}

void kyu_raft_conf_at(const kyu_raft_t *r, uint64_t index, kyu_raft_conf_t *out)
{
    uint64_t at;
    uint64_t last = kyu_raft_log_last(&r->log);
    if (!find_conf(r, index < last ? index : last, kyu_raft_log_first(&r->log), out, &at))
        *out = r->snap.conf;
}

void kyu_raft_conf_refresh(kyu_raft_t *r, uint64_t first)
{
    uint64_t last = kyu_raft_log_last(&r->log);
    kyu_raft_conf_t c;
    uint64_t at;
    if (first == 0 || first <= r->conf_index) {
        if (find_conf(r, last, kyu_raft_log_first(&r->log), &c, &at)) {
            r->conf = c;
            r->conf_index = at;
        } else {
            r->conf = r->snap.conf;
            r->conf_index = r->log.snap_index;
        }
    } else if (find_conf(r, last, first, &c, &at)) {
        r->conf = c;
        r->conf_index = at;
    } else {
        return;
    }
    if (r->role == KYU_RAFT_LEADER)
        kyu_raft_progress_rebuild(r);
}

static void rebuild_one(kyu_raft_t *r, kyu_raft_progress_t *out, size_t *n, uint64_t id,
                        bool learner)
{
    kyu_raft_progress_t *old = kyu_raft_progress(r, id);
    if (old) {
        out[*n] = *old;
    } else {
        kyu_raft_pr_init(&out[*n], id, learner, kyu_raft_log_last(&r->log) + 1, r->max_inflight);
        /* A new member gets a round of grace before check-quorum counts it absent. */
        out[*n].recent_active = true;
    }
    out[*n].learner = learner;
    (*n)++;
}

void kyu_raft_progress_rebuild(kyu_raft_t *r)
{
    kyu_raft_progress_t prs[KYU_RAFT_MAX_NODES * 2];
    size_t n = 0;
    for (uint32_t i = 0; i < r->conf.n_voters; i++)
        rebuild_one(r, prs, &n, r->conf.voters[i], false);
    for (uint32_t i = 0; i < r->conf.n_learners; i++)
        rebuild_one(r, prs, &n, r->conf.learners[i], true);
    memcpy(r->prs, prs, n * sizeof(prs[0]));
    r->n_prs = n;
}
