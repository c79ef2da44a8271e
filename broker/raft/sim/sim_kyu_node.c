/*
 * sim_kyu_node.c - a kyu-sim-kyu node: broker/replica.c itself, with its three seams
 * (replica.h) plugged into the simulation:
 *
 *   log storage  a simulated disk (kyu_log_ops_t): nd->disk holds what is durable; a write,
 *                install or compaction handed over waits in a queue and becomes durable in
 *                order, after a delay the seed picks (0 to disk_latency_max steps; in some
 *                seeds one node's disk is slow, up to two election timeouts, and disks stall
 *                for up to three); its report goes to
 *                kyu_replica_on_log_event as the storage thread's would. A crash loses the
 *                queue. With --write-now, in half the seeds a follower's small round is
 *                durable at once (the loop's own write, log.c's kyu_log_write_now). The compaction
 * syncs the state first, as log.c does (the power-loss checkpoint is taken then). transport    the
 * simulated network (drops, duplicates, delays, partitions), and the snapshot fetch: a few steps
 * after the replica asks member S, S serves if it is up, reachable, not installing itself and
 * applied far enough; the installer's state.incoming is then a RocksDB checkpoint of S's state
 *                database (what broker/snapshot.c fetches over the network), and
 *                kyu_replica_install_done is told either way.
 *   clock        simulated time: step x ms_per_step plus the node's skew; the Raft core's
 *                seed comes from the run's random stream. The replica ticks once per step.
 *   process      in some seeds a leader with a write out pauses (SIGSTOP, a stopped VM) for
 *                one to five election timeouts: sim_node_freeze (sim_cluster.c) holds
 *                what it sent in that step and what reaches it until it resumes. With
 *                --scenario deposed (sim.h) every seed's leaders pause until another node
 *                leads and commits, resume with their backlog reordered and a slow disk,
 *                the rest of the cluster calm meanwhile.
 *   event loop   the broker takes a Ready after each batch of peer messages it reads and
 *                handles storage reports between batches (main.c): in most seeds
 *                (every_read) a node runs its storage reports and its Ready loop after
 *                every message it steps, a pause's backlog included; in the others once
 *                per step, after all the step's messages.
 *
 * Everything else (boot from the log, the Ready loop, when a waiter is answered, apply,
 * compaction, install, configuration changes, transfers) is the broker's code.
 */
#include "sim_kyu.h"

#include <stdlib.h>
#include <string.h>

static sk_t *sk(sim_cluster_t *c)
{
    return c->app_state;
}

void sk_enter(sk_node_t *kn)
{
    kn->applying.valid = false;
}

/* ---- the log storage seam: the simulated disk ---- */

static void write_free(sk_write_t *w)
{
    for (size_t i = 0; i < w->n; i++)
        free(w->ents[i].data);
    free(w->ents);
    free(w);
}

/* A write joins the queue; it is durable after the ones before it, at a step the seed
 * picks. */
static sk_write_t *enqueue(sk_node_t *kn, sk_write_kind_t kind)
{
    sim_cluster_t *c = kn->c;
    sk_write_t *w = calloc(1, sizeof(*w));
    KYU_ASSERT(w);
    w->kind = kind;
    /* A slow disk (one node in some seeds, safety phase): a write may take up to two
     * election timeouts, so that Readies stay out while the cluster moves on. */
    /* So is a node's disk for a while after a pause until deposed (--scenario deposed). */
    const sim_node_t *nd = kn->nd;
    bool slow = (nd->id == sk(c)->slow_node && c->now >= c->quiet_until) ||
                (c->o.scenario == SIM_SCENARIO_DEPOSED && nd->resumed_at &&
                 c->now < nd->resumed_at + 4ull * c->o.election_ticks);
    uint64_t most = c->faults && slow ? 2ull * c->o.election_ticks : c->o.disk_latency_max;
    uint64_t due = c->now + sim_rng_below(&c->rng, most + 1);
    w->due = due > kn->last_due ? due : kn->last_due;
    kn->last_due = w->due;
    if (kind != SK_W_COMPACT)
        w->token = ++kn->token;
    if (kn->queue_tail)
        kn->queue_tail->next = w;
    else
        kn->queue = w;
    kn->queue_tail = w;
    return w;
}

static void conf_of(const kyu_log_snapshot_t *ls, kyu_raft_conf_t *conf)
{
    memset(conf, 0, sizeof(*conf));
    KYU_ASSERT(kyu_raft_conf_decode(ls->conf, ls->conf_len, conf));
}

/* The log starts after snapshot ls (the core's snapshot data is the broker's descriptor). */
static void disk_set_record(sim_disk_t *d, const kyu_log_snapshot_t *ls)
{
    uint8_t desc[8];
    kyu_put_be64(desc, ls->index);
    kyu_raft_snapshot_t s = {.index = ls->index, .term = ls->term, .data = desc, .len = 8};
    conf_of(ls, &s.conf);
    sim_disk_set_snapshot(d, &s);
}

static kyu_code_t disk_load_state(void *arg, kyu_log_hard_state_t *hs, kyu_log_snapshot_t *snap,
                                  kyu_err_t *err)
{
    (void)err;
    sk_node_t *kn = arg;
    const sim_disk_t *d = &kn->nd->disk;
    *hs = (kyu_log_hard_state_t){kn->hs_found, d->hs.term, d->hs.vote, d->hs.commit};
    memset(snap, 0, sizeof(*snap));
    if (kn->snap_found) {
        *snap = (kyu_log_snapshot_t){.found = true, .index = d->snap.index, .term = d->snap.term};
        snap->conf_len = kyu_raft_conf_encode(&d->snap.conf, snap->conf, sizeof(snap->conf));
        KYU_ASSERT(snap->conf_len > 0);
    }
    return KYU_OK;
}

static kyu_code_t disk_first_index(void *arg, uint64_t *index, kyu_err_t *err)
{
    (void)err;
    const sim_disk_t *d = &((sk_node_t *)arg)->nd->disk;
    *index = d->n ? d->ents[0].index : 0;
    return KYU_OK;
}

static kyu_code_t disk_last_index(void *arg, uint64_t *index, kyu_err_t *err)
{
    (void)err;
    const sim_disk_t *d = &((sk_node_t *)arg)->nd->disk;
    *index = d->n ? d->ents[d->n - 1].index : 0;
    return KYU_OK;
}

static kyu_code_t disk_replay(void *arg, uint64_t from, kyu_log_visit_fn visit, void *varg,
                              kyu_err_t *err)
{
    const sim_disk_t *d = &((sk_node_t *)arg)->nd->disk;
    for (size_t i = 0; i < d->n; i++) {
        const kyu_raft_entry_t *e = &d->ents[i];
        if (e->index < from)
            continue;
        kyu_code_t rc = visit(varg, e->index, e->term, (int)e->type, e->data, e->len, err);
        if (rc != KYU_OK)
            return rc;
    }
    return KYU_OK;
}

/* Replaces the whole log (an install; at boot, a reset to the state). */
static void disk_replace(sk_node_t *kn, const kyu_log_snapshot_t *snap,
                         const kyu_log_hard_state_t *hs)
{
    sim_disk_t *d = &kn->nd->disk;
    sim_disk_truncate_from(d, 0);
    disk_set_record(d, snap);
    kn->snap_found = true;
    if (hs) {
        d->hs = (kyu_raft_hard_state_t){hs->term, hs->vote, hs->commit};
        kn->hs_found = true;
    }
}

static kyu_code_t disk_reset(void *arg, const kyu_log_snapshot_t *snap,
                             const kyu_log_hard_state_t *hs, kyu_err_t *err)
{
    (void)err;
    sk_node_t *kn = arg;
    disk_replace(kn, snap, hs);
    sk(kn->c)->boot_resets++;
    return KYU_OK;
}

/* A write's records: the hard state and copies of the entries. */
static void fill_write(sk_write_t *w, const kyu_log_hard_state_t *hs,
                       const kyu_log_entry_t *entries, size_t n, bool truncate)
{
    w->truncate = truncate;
    if (hs) {
        w->has_hs = true;
        w->hs = (kyu_raft_hard_state_t){hs->term, hs->vote, hs->commit};
    }
    w->ents = n ? calloc(n, sizeof(*w->ents)) : NULL;
    KYU_ASSERT(!n || w->ents);
    for (size_t i = 0; i < n; i++) {
        const kyu_log_entry_t *e = &entries[i];
        w->ents[i] = (kyu_raft_entry_t){.index = e->index,
                                        .term = e->term,
                                        .type = (kyu_raft_entry_type_t)e->type,
                                        .len = e->len};
        if (e->len) {
            w->ents[i].data = malloc(e->len);
            KYU_ASSERT(w->ents[i].data);
            memcpy(w->ents[i].data, e->payload, e->len);
        }
    }
    w->n = n;
}

static kyu_code_t disk_write(void *arg, const kyu_log_hard_state_t *hs,
                             const kyu_log_entry_t *entries, size_t n, bool truncate,
                             uint64_t *token, kyu_err_t *err)
{
    (void)err;
    sk_write_t *w = enqueue(arg, SK_W_WRITE);
    fill_write(w, hs, entries, n, truncate);
    *token = w->token;
    return KYU_OK;
}

static void disk_apply(sk_node_t *kn, const sk_write_t *w);

/* The loop's own write of a small round (log.c's kyu_log_write_now), which a follower makes
 * (replica.c write_here): durable when it returns, its acknowledgement sent right after.
 * Refused BUSY (the replica hands the round to the queue) in the seeds without it
 * (--write-now picks half), on a node that is not a follower (a lone voter's answers would
 * come inside kyu_replica_propose, before sk_client counts the request), while anything is
 * queued (log.c's tail is busy then) and on a slow disk. */
static kyu_code_t disk_write_now(void *arg, const kyu_log_hard_state_t *hs,
                                 const kyu_log_entry_t *entries, size_t n, kyu_err_t *err)
{
    sk_node_t *kn = arg;
    sim_cluster_t *c = kn->c;
    if (!sk(c)->write_now || kn->queue || !kn->nd->raft ||
        kyu_raft_role(kn->nd->raft) != KYU_RAFT_FOLLOWER ||
        (kn->nd->id == sk(c)->slow_node && c->now >= c->quiet_until))
        return kyu_err_set(err, KYU_ERR_BUSY, "the simulated disk is busy");
    sk_write_t w = {.kind = SK_W_WRITE};
    fill_write(&w, hs, entries, n, false);
    disk_apply(kn, &w);
    for (size_t i = 0; i < w.n; i++)
        free(w.ents[i].data);
    free(w.ents);
    sk(c)->writes_now++;
    return KYU_OK;
}

static kyu_code_t disk_install(void *arg, const kyu_log_snapshot_t *snap,
                               const kyu_log_hard_state_t *hs, uint64_t *token, kyu_err_t *err)
{
    (void)err;
    sk_write_t *w = enqueue(arg, SK_W_INSTALL);
    w->snap = *snap;
    if (hs) {
        w->has_hs = true;
        w->hs = (kyu_raft_hard_state_t){hs->term, hs->vote, hs->commit};
    }
    *token = w->token;
    return KYU_OK;
}

static void disk_compact_req(void *arg, const kyu_log_snapshot_t *snap)
{
    sk_write_t *w = enqueue(arg, SK_W_COMPACT);
    w->snap = *snap;
}

static const kyu_log_ops_t disk_ops = {
    .load_state = disk_load_state,
    .first_index = disk_first_index,
    .last_index = disk_last_index,
    .replay = disk_replay,
    .reset = disk_reset,
    .write = disk_write,
    .install = disk_install,
    .compact = disk_compact_req,
    .write_now = disk_write_now,
};

/* One queued write reaches the disk (as the storage thread's WriteBatch does). */
static void disk_apply(sk_node_t *kn, const sk_write_t *w)
{
    sim_cluster_t *c = kn->c;
    sim_node_t *nd = kn->nd;
    sim_disk_t *d = &nd->disk;
    switch (w->kind) {
    case SK_W_WRITE:
        if (w->n && w->truncate)
            sim_disk_truncate_from(d, w->ents[0].index);
        for (size_t i = 0; i < w->n && c->result == SIM_OK; i++) {
            const kyu_raft_entry_t *e = &w->ents[i];
            uint64_t last = d->n ? d->ents[d->n - 1].index : d->snap.index;
            if (e->index != last + 1) {
                /* A put over an entry kept or past a gap: the log the broker would read
                 * back is not the one the replica thinks it wrote. */
                sim_violation(c, SIM_SAFETY,
                              "log write: node %llu writes entry %llu after %llu without "
                              "truncating",
                              (unsigned long long)nd->id, (unsigned long long)e->index,
                              (unsigned long long)last);
                return;
            }
            uint64_t prev = d->n > 0 ? d->ents[d->n - 1].term : d->snap.term;
            sim_check_durable(c, nd, e, prev);
            sim_disk_append(d, e);
        }
        break;
    case SK_W_INSTALL:
        disk_replace(kn, &w->snap, NULL);
        break;
    case SK_W_COMPACT:
        /* log.c drops entries only up to what the state's tables hold. */
        if (c->o.plant != SK_PLANT_NO_SYNC)
            sk_mark_synced(c, nd);
        disk_set_record(d, &w->snap);
        sim_disk_compact(d, w->snap.index);
        kn->snap_found = true;
        c->stats.compactions++;
        sim_trace(&c->trace, c->now, "n%llu compacts its log up to %llu",
                  (unsigned long long)nd->id, (unsigned long long)w->snap.index);
        break;
    }
    if (w->has_hs) {
        d->hs = w->hs;
        kn->hs_found = true;
    }
}

static void queue_drop(sk_node_t *kn)
{
    while (kn->queue) {
        sk_write_t *w = kn->queue;
        kn->queue = w->next;
        write_free(w);
    }
    kn->queue_tail = NULL;
    kn->last_due = 0;
}

/* ---- the transport seam: the simulated network and snapshot fetch ---- */

static void net_send(void *arg, const kyu_raft_msg_t *m)
{
    sk_node_t *kn = arg;
    sim_check_message(kn->c, m);
    sim_network_send(&kn->c->net, &kn->c->rng, &kn->c->o, kn->c->now, m);
}

static void net_install(void *arg, uint64_t server, uint64_t min_index)
{
    sk_node_t *kn = arg;
    sim_cluster_t *c = kn->c;
    kn->fetching = true;
    kn->fetch_server = server;
    kn->fetch_min = min_index;
    kn->fetch_due = c->now + 1 + sim_rng_below(&c->rng, 3);
}

static const kyu_replica_transport_t net_ops = {.send = net_send, .install = net_install};

/* ---- the clock seam: simulated time ---- */

static uint64_t clock_wall(void *arg)
{
    sk_node_t *kn = arg;
    sk_t *k = sk(kn->c);
    int64_t wall =
        (int64_t)SK_TIME_BASE + (int64_t)(kn->c->now * k->ms_per_step) + k->skew[kn->nd->id];
    return (uint64_t)wall;
}

/* Monotonic time runs at the same rate on every node, from no common origin. */
static uint64_t clock_mono(void *arg)
{
    sk_node_t *kn = arg;
    return kn->c->now * sk(kn->c)->ms_per_step;
}

static bool clock_seed(void *arg, uint64_t *seed)
{
    *seed = sim_rng_next(&((sk_node_t *)arg)->c->rng);
    return true;
}

static const kyu_replica_clock_t clock_ops = {
    .wall_ms = clock_wall, .mono_ms = clock_mono, .random_seed = clock_seed};

static void say(void *arg, const char *line)
{
    sk_node_t *kn = arg;
    sim_trace(&kn->c->trace, kn->c->now, "n%llu replica: %s", (unsigned long long)kn->nd->id, line);
}

/* ---- the node ---- */

bool sk_node_start(sim_cluster_t *c, sim_node_t *nd)
{
    const sim_options_t *o = &c->o;
    sk_node_t *kn = nd->app;
    if (!sk_state_open(c, nd))
        return false;
    if (c->result != SIM_OK)
        return true; /* the state broke an invariant: the run ends with this step */
    /* The bootstrap members, as the --peer list gives them (a spare node joins). */
    kyu_peers_t peers = {0};
    for (uint32_t i = 0; i < nd->boot_conf.n_voters; i++) {
        kyu_peer_t *p = &peers.peers[peers.n++];
        p->id = nd->boot_conf.voters[i];
        snprintf(p->raft, sizeof(p->raft), "sim://n%llu", (unsigned long long)p->id);
        snprintf(p->client, sizeof(p->client), "sim://n%llu", (unsigned long long)p->id);
    }
    kyu_replica_config_t cfg = {
        .node_id = nd->id,
        .peers = &peers,
        .log = &disk_ops,
        .log_arg = kn,
        .transport = &net_ops,
        .transport_arg = kn,
        .clock = &clock_ops,
        .clock_arg = kn,
        .election_ticks = o->election_ticks,
        .log_window = o->compact_after,
        /* Some seeds buffer more entries than the log window holds: the replica must then
         * keep the log past the window (maybe_compact). */
        .state_write_every = sk(c)->write_every,
        .join = peers.n == 0,
        .early_in_clusters = !c->o.no_early, /* the overlay proven where leaders change */
        .heartbeat_ticks = o->heartbeat_ticks,
        .max_inflight = o->max_inflight,
        .max_msg_entries = o->max_msg_entries,
        .max_uncommitted = o->max_uncommitted,
        .max_msg_bytes = 4096,
        .entry_bytes_max = sk(c)->entry_max,
        .bytes_max = sk(c)->bytes_max,
        .applied = sk_on_applied,
        .applied_arg = kn,
        .say = say,
        .say_arg = kn,
    };
    kyu_err_t err;
    sk_enter(kn);
    kn->replica = kyu_replica_new(kn->store, kn->sm, &cfg, sk_on_done, kn, &err);
    if (!kn->replica) {
        sim_trace(&c->trace, c->now, "n%llu cannot start: %s", (unsigned long long)nd->id, err.msg);
        sk_state_release(kn);
        return false;
    }
    nd->raft = (kyu_raft_t *)kyu_replica_raft(kn->replica);
    nd->busy = false;
    nd->commit_seen = nd->disk.hs.commit;
    nd->role_seen = KYU_RAFT_FOLLOWER;
    nd->term_seen = nd->disk.hs.term;
    nd->paused_ticks = 0;
    return true;
}

/* The replica goes (its waiters are told it shut down), and what was not durable with it. */
static void stop(sk_node_t *kn)
{
    sk_enter(kn);
    kyu_replica_destroy(&kn->replica);
    kn->nd->raft = NULL;
    kn->nd->busy = false;
    kn->fetching = false;
    kn->expiry_proposed = false; /* a new process: the frontend's retention tick starts over */
    kn->expiry_checked_at = 0;
    kn->redrive_proposed = false;
    queue_drop(kn);
}

void sk_node_crash(sim_cluster_t *c, sim_node_t *nd)
{
    sk_node_t *kn = nd->app;
    sim_trace(&c->trace, c->now, "n%llu CRASH%s (term %llu, %s)", (unsigned long long)nd->id,
              kn->queue ? ", losing its unfinished writes" : "",
              (unsigned long long)kyu_raft_term(nd->raft),
              kyu_raft_role_name(kyu_raft_role(nd->raft)));
    stop(kn);
    sk_state_close(c, nd);
}

void sk_node_stop(sim_cluster_t *c, sim_node_t *nd)
{
    (void)c;
    sk_node_t *kn = nd->app;
    if (kn->replica)
        stop(kn);
    sk_state_release(kn);
}

static void storage_reports(sim_cluster_t *c, sim_node_t *nd);

/* A message read; with every_read, the end of a batch too: the storage reports that are due
 * and the Ready loop, as main.c's on_peer and on_storage would run between two reads. */
void sk_node_step(sim_cluster_t *c, sim_node_t *nd, const kyu_raft_msg_t *m)
{
    sk_node_t *kn = nd->app;
    sk_enter(kn);
    kyu_replica_step(kn->replica, m);
    if (sk(c)->every_read) {
        storage_reports(c, nd);
        if (kn->replica && c->result == SIM_OK) {
            sk_enter(kn);
            kyu_replica_flush(kn->replica);
        }
        if (kn->replica && kyu_replica_failure(kn->replica))
            sim_violation(c, SIM_SAFETY, "node %llu: %s", (unsigned long long)nd->id,
                          kyu_replica_failure(kn->replica));
        nd->busy = kn->queue != NULL;
    }
}

void sk_node_tick(sim_cluster_t *c, sim_node_t *nd)
{
    (void)c;
    sk_node_t *kn = nd->app;
    sk_enter(kn);
    kyu_replica_tick(kn->replica);
}

/* The fetch the replica asked for: served by a member that can, or failed. */
static void fetch(sim_cluster_t *c, sim_node_t *nd)
{
    sk_node_t *kn = nd->app;
    kn->fetching = false;
    sim_node_t *src = kn->fetch_server >= 1 && kn->fetch_server <= (uint64_t)c->n
                          ? &c->nodes[kn->fetch_server - 1]
                          : NULL;
    sk_node_t *sn = src ? src->app : NULL;
    bool ok = src && src != nd && src->raft && !src->frozen_until && sn->replica &&
              !kyu_replica_installing(sn->replica) && !c->net.blocked[src->id][nd->id] &&
              !c->net.blocked[nd->id][src->id] && kyu_sm_applied_index(sn->sm) >= kn->fetch_min &&
              src->sm_applied == kyu_sm_applied_index(sn->sm);
    char incoming[400];
    snprintf(incoming, sizeof(incoming), "%s/state.incoming", kn->dir);
    if (ok) {
        sk_flush(sn); /* main.c flushes before it serves a fetch */
        ok = sk_checkpoint(sn, incoming, 0);
    }
    sk_enter(kn);
    kyu_replica_install_done(kn->replica, ok, ok ? "" : "the member cannot serve it now");
    if (!ok || kyu_replica_installing(kn->replica) || kyu_replica_failure(kn->replica))
        return;
    uint64_t applied = kyu_sm_applied_index(kn->sm);
    if (applied < kn->fetch_min || applied != src->sm_applied) {
        sim_violation(c, SIM_SAFETY,
                      "node %llu installed a state at %llu from node %llu (at %llu) for a "
                      "snapshot at %llu",
                      (unsigned long long)nd->id, (unsigned long long)applied,
                      (unsigned long long)src->id, (unsigned long long)src->sm_applied,
                      (unsigned long long)kn->fetch_min);
        return;
    }
    sk_t *k = sk(c);
    k->installs++;
    c->stats.snapshots_installed++;
    nd->sm_applied = applied;
    nd->sm_chain = src->sm_chain;
    kn->base_index = applied;
    kn->base_chain = nd->sm_chain;
    sim_trace(&c->trace, c->now, "n%llu installs the state of n%llu at %llu",
              (unsigned long long)nd->id, (unsigned long long)src->id, (unsigned long long)applied);
    sim_check_snapshot(c, nd, applied, nd->sm_chain);
    sk_mark_synced(c, nd); /* an installed state is durable (snapshot.c fsyncs it) */
    sk_index(k, applied)->want_digest = true;
    sk_check_digest(c, src, applied, "served as a snapshot");
    if (c->result == SIM_OK)
        sk_check_digest(c, nd, applied, "installed from a snapshot");
}

/* The storage thread's reports of the writes that are durable by now, in order. */
static void storage_reports(sim_cluster_t *c, sim_node_t *nd)
{
    sk_node_t *kn = nd->app;
    for (int rounds = 0; rounds < 16 && kn->replica && c->result == SIM_OK; rounds++) {
        uint64_t token = 0;
        while (kn->queue && kn->queue->due <= c->now && kn->stall_until <= c->now &&
               c->result == SIM_OK) {
            sk_write_t *w = kn->queue;
            kn->queue = w->next;
            if (!kn->queue)
                kn->queue_tail = NULL;
            disk_apply(kn, w);
            if (w->kind != SK_W_COMPACT)
                token = w->token;
            write_free(w);
        }
        if (!token || c->result != SIM_OK)
            break;
        kyu_log_event_t ev = {.index = token};
        sk_enter(kn);
        kyu_replica_on_log_event(kn->replica, &ev);
    }
}

void sk_node_process(sim_cluster_t *c, sim_node_t *nd)
{
    sk_node_t *kn = nd->app;
    sk_t *k = sk(c);
    /* A latency spike: the disk finishes nothing for up to three election timeouts (the
     * replica sends nothing meanwhile, and is deposed if it led). */
    if (c->faults && c->now >= c->quiet_until && kn->stall_until <= c->now &&
        sim_rng_chance(&c->rng, k->stall_pm)) {
        kn->stall_until = c->now + 1 + sim_rng_below(&c->rng, 3ull * c->o.election_ticks);
        k->stalls++;
        sim_trace(&c->trace, c->now, "n%llu DISK STALL until step %llu", (unsigned long long)nd->id,
                  (unsigned long long)kn->stall_until);
    }
    storage_reports(c, nd);
    if (kn->replica && kn->fetching && kn->fetch_due <= c->now && c->result == SIM_OK)
        fetch(c, nd);
    if (kn->replica && c->result == SIM_OK) {
        sk_node_expiry(c, nd);
        sk_node_redrive(c, nd);
        sk_enter(kn);
        kyu_replica_flush(kn->replica);
    }
    if (kn->replica && kyu_replica_failure(kn->replica))
        sim_violation(c, SIM_SAFETY, "node %llu: %s", (unsigned long long)nd->id,
                      kyu_replica_failure(kn->replica));
    nd->busy = kn->queue != NULL;
    /* A process pause (SIGSTOP, a VM stopped by its hypervisor, a machine swapping): it
     * strikes a leader that has just handed a write to its disk and its appends to the
     * transport, so they leave only when it resumes, after one to five election timeouts
     * (sim_cluster.c holds everything meanwhile; the longer ones see elections). */
    if (k->pause_pm && c->faults && c->now >= c->quiet_until && c->result == SIM_OK &&
        kn->replica && kn->queue && kyu_raft_role(nd->raft) == KYU_RAFT_LEADER &&
        sim_rng_chance(&c->rng, k->pause_pm)) {
        k->pauses++;
        if (c->o.scenario == SIM_SCENARIO_DEPOSED) {
            /* Until another node leads and commits (at most twenty election timeouts); its
             * backlog then arrives reordered, its disk slow (sim_cluster.c, enqueue). */
            sim_node_freeze(c, nd, c->o.election_ticks);
            nd->freeze_max = c->now + 20ull * c->o.election_ticks;
            nd->freeze_shuffle = true;
            /* The rest of the cluster heals and stays calm while the scenario plays (until
             * four election timeouts after the resume, sim_cluster.c). */
            memset(c->net.blocked, 0, sizeof(c->net.blocked));
            c->quiet_until = nd->freeze_max + 4ull * c->o.election_ticks;
        } else {
            sim_node_freeze(
                c, nd, c->o.election_ticks + sim_rng_below(&c->rng, 4ull * c->o.election_ticks));
        }
    }
}

/* Retention, as kyu_frontend_tick (frontend.c) does it: a serving leader looks once a second
 * of its time at most (or when its time went back) whether kyu_sm_expiry_due, and then
 * proposes one EXPIRE_MESSAGES with kyu_replica_now's time, the next only once it is
 * answered. */
void sk_node_expiry(sim_cluster_t *c, sim_node_t *nd)
{
    sk_node_t *kn = nd->app;
    if (kn->expiry_proposed || !kyu_replica_serving(kn->replica))
        return;
    uint64_t now = kyu_replica_now(kn->replica);
    if (now < kn->expiry_checked_at + 1000 && now >= kn->expiry_checked_at)
        return;
    kn->expiry_checked_at = now;
    if (!kyu_sm_expiry_due(kn->sm, now))
        return;
    kyu_command_t cmd;
    memset(&cmd, 0, sizeof cmd);
    cmd.type = KYU_CMD_EXPIRE_MESSAGES;
    cmd.vt = -1;
    cmd.now_ms = now;
    sk_waiter_t *w = calloc(1, sizeof(*w));
    KYU_ASSERT(w);
    w->expiry = true;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    kyu_command_encode(&cmd, &sb);
    w->hash = sim_hash(sb.data, sb.size, 0x636d64);
    msgpack_sbuffer_destroy(&sb);
    kyu_err_t err;
    sk_enter(kn);
    if (kyu_replica_propose(kn->replica, &cmd, w, &err) != KYU_OK) {
        free(w); /* the next look tries again */
        return;
    }
    kn->expiry_proposed = true;
    sim_trace(&c->trace, c->now, "n%llu proposes EXPIRE_MESSAGES at %llu",
              (unsigned long long)nd->id, (unsigned long long)now);
}

/* Redrive, as kyu_frontend_tick's redrive_tick (frontend.c) does it: a serving leader asks
 * kyu_sm_redrive_due at every step and proposes the REDRIVE_STEP it names with kyu_replica_now's
 * time, the next only once it is answered. */
void sk_node_redrive(sim_cluster_t *c, sim_node_t *nd)
{
    sk_node_t *kn = nd->app;
    if (kn->redrive_proposed || !kyu_replica_serving(kn->replica))
        return;
    kyu_command_t cmd;
    memset(&cmd, 0, sizeof cmd);
    cmd.now_ms = kyu_replica_now(kn->replica);
    if (!kyu_sm_redrive_due(kn->sm, cmd.now_ms, cmd.queue, &cmd.move_task, &cmd.move_max))
        return;
    cmd.type = KYU_CMD_REDRIVE_STEP;
    cmd.vt = -1;
    sk_waiter_t *w = calloc(1, sizeof(*w));
    KYU_ASSERT(w);
    w->redrive = true;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    kyu_command_encode(&cmd, &sb);
    w->hash = sim_hash(sb.data, sb.size, 0x636d64);
    msgpack_sbuffer_destroy(&sb);
    kyu_err_t err;
    sk_enter(kn);
    if (kyu_replica_propose(kn->replica, &cmd, w, &err) != KYU_OK) {
        free(w); /* the next step tries again */
        return;
    }
    kn->redrive_proposed = true;
    sim_trace(&c->trace, c->now, "n%llu proposes REDRIVE_STEP of %s task %llu max %u at %llu",
              (unsigned long long)nd->id, cmd.queue, (unsigned long long)cmd.move_task,
              cmd.move_max, (unsigned long long)cmd.now_ms);
}

bool sk_conf_change(sim_cluster_t *c, sim_node_t *nd, kyu_raft_cc_op_t op, uint64_t node)
{
    (void)c;
    sk_node_t *kn = nd->app;
    kyu_err_t err;
    sk_enter(kn);
    return kyu_replica_conf_change(kn->replica, op, node, &err) == KYU_OK;
}

bool sk_transfer(sim_cluster_t *c, sim_node_t *nd, uint64_t target)
{
    (void)c;
    sk_node_t *kn = nd->app;
    sk_enter(kn);
    return kyu_replica_transfer_to(kn->replica, target) == KYU_OK;
}
