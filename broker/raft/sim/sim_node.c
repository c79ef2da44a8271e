/*
 * sim_node.c - one kyu-sim node (kyu-sim-kyu runs the broker's replica instead,
 * sim_kyu_node.c): the real Raft core, a disk that loses every write not yet
 * durable when the node crashes, and a state machine that is a hash chain over the entries
 * it applies (so two state machines agree exactly when they applied the same entries).
 *
 * The node runs the Ready loop of raft.h with a disk write that takes a few steps:
 * messages marked after_persist leave only when the write completes.
 */
#include "sim.h"

#include <stdlib.h>
#include <string.h>

static void oom(void)
{
    fprintf(stderr, "kyu-sim: out of memory\n");
    exit(3);
}

void sim_disk_free(sim_disk_t *d)
{
    for (size_t i = 0; i < d->n; i++)
        free(d->ents[i].data);
    free(d->ents);
    free(d->snap.data);
    memset(d, 0, sizeof(*d));
}

void sim_node_free(sim_node_t *nd)
{
    sim_node_drop_held(nd);
    kyu_raft_destroy(&nd->raft);
    sim_disk_free(&nd->disk);
}

/* The snapshot of the sim's state machine: its index and chain, padded with bytes derived
 * from them so that snapshots span several InstallSnapshot chunks and a corrupted
 * reassembly is noticed. */
void sim_snapshot_encode(uint64_t index, uint64_t chain, uint32_t pad, uint8_t **data, size_t *len)
{
    *len = 16 + pad;
    *data = malloc(*len);
    if (!*data)
        oom();
    for (int i = 0; i < 8; i++) {
        (*data)[i] = (uint8_t)(index >> (8 * i));
        (*data)[8 + i] = (uint8_t)(chain >> (8 * i));
    }
    for (uint32_t i = 0; i < pad; i++)
        (*data)[16 + i] = (uint8_t)((chain >> ((i % 8) * 8)) ^ i);
}

static bool snapshot_decode(const uint8_t *data, size_t len, uint64_t *index, uint64_t *chain)
{
    if (len < 16)
        return false;
    *index = *chain = 0;
    for (int i = 0; i < 8; i++) {
        *index |= (uint64_t)data[i] << (8 * i);
        *chain |= (uint64_t)data[8 + i] << (8 * i);
    }
    for (size_t i = 0; i < len - 16; i++)
        if (data[16 + i] != (uint8_t)((*chain >> ((i % 8) * 8)) ^ i))
            return false;
    return true;
}

bool sim_node_start(sim_cluster_t *c, sim_node_t *nd)
{
    const sim_options_t *o = &c->o;
    kyu_raft_config_t cfg = {
        .id = nd->id,
        .group = 1,
        .election_ticks = o->election_ticks,
        .heartbeat_ticks = o->heartbeat_ticks,
        .random_seed = sim_rng_next(&c->rng),
        .max_inflight = o->max_inflight,
        .max_msg_entries = o->max_msg_entries,
        .max_msg_bytes = 4096,
        .snapshot_chunk = o->snapshot_chunk,
        .max_uncommitted = o->max_uncommitted,
        .hard_state = nd->disk.hs,
        .snapshot = nd->disk.snap.index ? &nd->disk.snap : NULL,
        .conf = &nd->boot_conf,
        .entries = nd->disk.ents,
        .n_entries = nd->disk.n,
        .applied = nd->disk.snap.index,
    };
    nd->raft = kyu_raft_new(&cfg);
    if (!nd->raft)
        return false;
    /* The state machine is rebuilt from the snapshot; the core re-delivers the rest. */
    nd->sm_applied = 0;
    nd->sm_chain = 0;
    if (nd->disk.snap.index) {
        uint64_t idx, chain;
        if (!snapshot_decode(nd->disk.snap.data, nd->disk.snap.len, &idx, &chain) ||
            idx != nd->disk.snap.index) {
            sim_violation(c, SIM_SAFETY, "node %llu: stored snapshot is corrupt",
                          (unsigned long long)nd->id);
            return true;
        }
        nd->sm_applied = idx;
        nd->sm_chain = chain;
    }
    nd->busy = false;
    nd->commit_seen = nd->disk.hs.commit;
    nd->role_seen = KYU_RAFT_FOLLOWER;
    nd->term_seen = nd->disk.hs.term;
    nd->paused_ticks = 0;
    return true;
}

void sim_node_crash(sim_cluster_t *c, sim_node_t *nd)
{
    sim_trace(&c->trace, c->now, "n%llu CRASH%s (term %llu, %s)", (unsigned long long)nd->id,
              nd->busy ? ", losing its unfinished write" : "",
              (unsigned long long)kyu_raft_term(nd->raft),
              kyu_raft_role_name(kyu_raft_role(nd->raft)));
    /* The Ready (and the write in progress) die with the core. */
    kyu_raft_destroy(&nd->raft);
    nd->busy = false;
}

void sim_disk_truncate_from(sim_disk_t *d, uint64_t index)
{
    while (d->n > 0 && d->ents[d->n - 1].index >= index) {
        free(d->ents[d->n - 1].data);
        d->n--;
    }
}

void sim_disk_append(sim_disk_t *d, const kyu_raft_entry_t *e)
{
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 64;
        kyu_raft_entry_t *p = realloc(d->ents, cap * sizeof(*p));
        if (!p)
            oom();
        d->ents = p;
        d->cap = cap;
    }
    kyu_raft_entry_t *dst = &d->ents[d->n++];
    *dst = *e;
    dst->data = NULL;
    if (e->len) {
        dst->data = malloc(e->len);
        if (!dst->data)
            oom();
        memcpy(dst->data, e->data, e->len);
    }
}

void sim_disk_set_snapshot(sim_disk_t *d, const kyu_raft_snapshot_t *s)
{
    free(d->snap.data);
    d->snap = *s;
    d->snap.data = malloc(s->len ? s->len : 1);
    if (!d->snap.data)
        oom();
    memcpy(d->snap.data, s->data, s->len);
}

/* Drops stored entries covered by the snapshot. */
void sim_disk_compact(sim_disk_t *d, uint64_t index)
{
    size_t drop = 0;
    while (drop < d->n && d->ents[drop].index <= index) {
        free(d->ents[drop].data);
        drop++;
    }
    memmove(d->ents, d->ents + drop, (d->n - drop) * sizeof(*d->ents));
    d->n -= drop;
}

static void send(sim_cluster_t *c, const kyu_raft_msg_t *m)
{
    sim_check_message(c, m);
    sim_network_send(&c->net, &c->rng, &c->o, c->now, m);
}

/* The write of a Ready became durable: persist, send the rest, apply, advance. */
static void complete(sim_cluster_t *c, sim_node_t *nd)
{
    const kyu_raft_ready_t *rd = &nd->rd;
    sim_disk_t *d = &nd->disk;
    if (rd->snapshot) {
        sim_disk_set_snapshot(d, rd->snapshot);
        sim_disk_truncate_from(d, 0);
    }
    if (rd->n_entries > 0) {
        sim_disk_truncate_from(d, rd->entries[0].index);
        for (size_t i = 0; i < rd->n_entries; i++) {
            const kyu_raft_entry_t *e = &rd->entries[i];
            uint64_t prev = d->n > 0 ? d->ents[d->n - 1].term : d->snap.term;
            if (d->n == 0 && e->index - 1 != d->snap.index)
                prev = kyu_raft_term_at(nd->raft, e->index - 1); /* below the snapshot */
            sim_check_durable(c, nd, e, prev);
            sim_disk_append(d, e);
        }
    }
    if (rd->hard_state_changed)
        d->hs = rd->hard_state;
    for (size_t i = 0; i < rd->n_msgs; i++)
        if (rd->msgs[i].after_persist)
            send(c, &rd->msgs[i]);
    if (rd->snapshot) {
        uint64_t idx, chain;
        if (!snapshot_decode(rd->snapshot->data, rd->snapshot->len, &idx, &chain) ||
            idx != rd->snapshot->index) {
            sim_violation(c, SIM_SAFETY, "node %llu: snapshot %llu arrived corrupt",
                          (unsigned long long)nd->id, (unsigned long long)rd->snapshot->index);
        } else {
            sim_trace(&c->trace, c->now, "n%llu installs snapshot at %llu",
                      (unsigned long long)nd->id, (unsigned long long)idx);
            sim_check_snapshot(c, nd, idx, chain);
            c->stats.snapshots_installed++;
            nd->sm_applied = idx;
            nd->sm_chain = chain;
        }
    }
    for (size_t i = 0; i < rd->n_committed; i++) {
        const kyu_raft_entry_t *e = &rd->committed[i];
        if (e->index <= nd->sm_applied)
            continue; /* covered by a snapshot installed meanwhile */
        if (e->index != nd->sm_applied + 1) {
            sim_violation(c, SIM_SAFETY, "node %llu applies %llu after %llu (a gap)",
                          (unsigned long long)nd->id, (unsigned long long)e->index,
                          (unsigned long long)nd->sm_applied);
            break;
        }
        nd->sm_chain = sim_mix(nd->sm_chain, sim_entry_hash(e));
        nd->sm_applied = e->index;
        sim_check_apply(c, nd, e, nd->sm_chain);
        if (c->result != SIM_OK)
            break;
    }
    kyu_raft_advance(nd->raft);
    nd->busy = false;
}

static void maybe_compact(sim_cluster_t *c, sim_node_t *nd)
{
    uint64_t applied = kyu_raft_applied(nd->raft);
    if (applied != nd->sm_applied || applied < kyu_raft_first_index(nd->raft) ||
        applied - kyu_raft_first_index(nd->raft) + 1 < c->o.compact_after)
        return;
    uint8_t *data;
    size_t len;
    sim_snapshot_encode(applied, nd->sm_chain, c->o.snap_pad, &data, &len);
    if (kyu_raft_compact(nd->raft, applied, data, len) != KYU_RAFT_OK) {
        free(data);
        return;
    }
    /* The broker would write the snapshot durably before cutting its stored log; the sim's
     * disk does both at once. */
    sim_disk_set_snapshot(&nd->disk, kyu_raft_snapshot(nd->raft));
    sim_disk_compact(&nd->disk, applied);
    c->stats.compactions++;
    free(data);
    sim_trace(&c->trace, c->now, "n%llu compacts its log up to %llu", (unsigned long long)nd->id,
              (unsigned long long)applied);
}

void sim_node_process(sim_cluster_t *c, sim_node_t *nd)
{
    for (int rounds = 0; rounds < 16 && nd->raft && c->result == SIM_OK; rounds++) {
        if (nd->busy) {
            if (nd->write_done_at > c->now)
                return;
            complete(c, nd);
            continue;
        }
        if (!kyu_raft_has_ready(nd->raft))
            break;
        kyu_raft_ready(nd->raft, &nd->rd);
        nd->busy = true;
        nd->write_done_at = c->now + sim_rng_below(&c->rng, c->o.disk_latency_max + 1);
        for (size_t i = 0; i < nd->rd.n_msgs; i++)
            if (!nd->rd.msgs[i].after_persist)
                send(c, &nd->rd.msgs[i]);
    }
    if (nd->raft && !nd->busy && c->result == SIM_OK)
        maybe_compact(c, nd);
}
