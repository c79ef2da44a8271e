/*
 * sim_cluster.c - a simulated cluster and its run: a safety phase under every fault the seed
 * enables (network faults, partitions, crashes, clock jumps, process pauses started by the
 * application, membership changes, leadership transfers, client proposals throughout), then a
 * liveness phase that heals everything and requires a leader, a new acknowledged write and every
 * member caught up within a bound.
 */
#include "sim.h"

#include <stdlib.h>
#include <string.h>

void sim_violation(sim_cluster_t *c, sim_result_t kind, const char *fmt, ...)
{
    if (c->result != SIM_OK)
        return;
    c->result = kind;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->violation, sizeof(c->violation), fmt, ap);
    va_end(ap);
}

/* A node runs sim_node.c's loop over the bare core, or the application's (the replica). */
static bool start_node(sim_cluster_t *c, sim_node_t *nd)
{
    return c->app ? c->app->node_start(c, nd) : sim_node_start(c, nd);
}

static void crash_node(sim_cluster_t *c, sim_node_t *nd)
{
    sim_node_drop_held(nd); /* a paused process killed: what waited in its buffers is gone */
    if (c->app)
        c->app->node_crash(c, nd);
    else
        sim_node_crash(c, nd);
}

static void tick_node(sim_cluster_t *c, sim_node_t *nd)
{
    if (nd->frozen_until)
        return; /* a paused process runs no timer */
    if (c->app)
        c->app->node_tick(c, nd);
    else
        kyu_raft_tick(nd->raft);
}

void sim_node_drop_held(sim_node_t *nd)
{
    for (size_t i = 0; i < nd->n_held; i++)
        sim_msg_free(&nd->held[i].m);
    free(nd->held);
    nd->held = NULL;
    nd->n_held = nd->cap_held = 0;
    nd->frozen_until = 0;
    nd->freeze_max = 0;
    nd->freeze_shuffle = false;
}

void sim_node_freeze(sim_cluster_t *c, sim_node_t *nd, uint64_t steps)
{
    nd->frozen_until = c->now + steps;
    sim_network_hold_from(&c->net, nd->id, c->now, nd->frozen_until);
    sim_trace(&c->trace, c->now, "n%llu PAUSED (%s, term %llu) until step %llu",
              (unsigned long long)nd->id, kyu_raft_role_name(kyu_raft_role(nd->raft)),
              (unsigned long long)kyu_raft_term(nd->raft), (unsigned long long)nd->frozen_until);
}

/* A message reaches node `to`: stepped, or kept in order while its process is paused. */
static void deliver(sim_cluster_t *c, sim_node_t *to, sim_packet_t *p)
{
    kyu_raft_msg_t *m = &p->m;
    if (to->frozen_until) {
        if (to->n_held == to->cap_held) {
            size_t cap = to->cap_held ? 2 * to->cap_held : 16;
            sim_packet_t *h = realloc(to->held, cap * sizeof(*h));
            if (!h) {
                fprintf(stderr, "kyu-sim: out of memory\n");
                exit(3);
            }
            to->held = h;
            to->cap_held = cap;
        }
        to->held[to->n_held++] = *p; /* the node owns it now */
        return;
    }
    if (c->o.verbose)
        sim_trace(&c->trace, c->now,
                  "  n%llu -> n%llu %s term=%llu idx=%llu lt=%llu commit=%llu n=%zu%s",
                  (unsigned long long)m->from, (unsigned long long)m->to,
                  kyu_raft_msg_type_name(m->type), (unsigned long long)m->term,
                  (unsigned long long)m->index, (unsigned long long)m->log_term,
                  (unsigned long long)m->commit, m->n_entries, m->reject ? " REJECT" : "");
    if (c->app)
        c->app->node_step(c, to, m);
    else
        kyu_raft_step(to->raft, m);
    sim_msg_free(m);
}

/* A paused process resumes: it reads what waited in its buffers, in order, before anything
 * newer. */
static void resume(sim_cluster_t *c, sim_node_t *nd)
{
    sim_packet_t *held = nd->held;
    size_t n = nd->n_held;
    nd->held = NULL;
    nd->n_held = nd->cap_held = 0;
    nd->frozen_until = 0;
    nd->resumed_at = c->now;
    /* What waited in the buffers, reordered (the simulated network may reorder a link; Raft
     * tolerates it): e.g. the new leader's heartbeats before its first append. */
    for (size_t i = nd->freeze_shuffle ? n : 0; i > 1; i--) {
        size_t r = (size_t)sim_rng_below(&c->rng, i);
        sim_packet_t t = held[i - 1];
        held[i - 1] = held[r];
        held[r] = t;
    }
    sim_trace(&c->trace, c->now, "n%llu RESUMES with %zu messages waiting%s",
              (unsigned long long)nd->id, n, nd->freeze_shuffle ? ", reordered" : "");
    if (nd->freeze_shuffle && c->quiet_until > c->now + 4ull * c->o.election_ticks)
        c->quiet_until = c->now + 4ull * c->o.election_ticks; /* the scenario's end */
    nd->freeze_max = 0;
    nd->freeze_shuffle = false;
    for (size_t i = 0; i < n; i++) {
        if (nd->raft && c->result == SIM_OK)
            deliver(c, nd, &held[i]);
        else
            sim_msg_free(&held[i].m);
    }
    free(held);
}

/* Whether a node other than nd leads in a term above nd's and has committed an entry of it. */
static bool deposed(sim_cluster_t *c, const sim_node_t *nd)
{
    uint64_t term = kyu_raft_term(nd->raft);
    for (int i = 0; i < c->n; i++) {
        const kyu_raft_t *r = c->nodes[i].raft;
        if (&c->nodes[i] != nd && r && !c->nodes[i].frozen_until &&
            kyu_raft_role(r) == KYU_RAFT_LEADER && kyu_raft_term(r) > term &&
            kyu_raft_term_at(r, kyu_raft_commit(r)) == kyu_raft_term(r))
            return true;
    }
    return false;
}

/* A pause until deposed (freeze_max) goes on while no other node leads and commits, up to
 * freeze_max; once one does, it lasts half an election timeout to two longer (the new
 * leader's heartbeats pile up). */
static void extend_pause(sim_cluster_t *c, sim_node_t *nd)
{
    if (!nd->freeze_max || !nd->raft || !c->faults)
        return;
    if (deposed(c, nd)) {
        nd->freeze_max = 0;
        nd->frozen_until = c->now + c->o.election_ticks / 2 +
                           sim_rng_below(&c->rng, 3ull * c->o.election_ticks / 2 + 1);
        sim_trace(&c->trace, c->now, "n%llu deposed while paused: resumes at step %llu",
                  (unsigned long long)nd->id, (unsigned long long)nd->frozen_until);
    } else if (c->now < nd->freeze_max) {
        nd->frozen_until = c->now + 1;
    } else {
        nd->freeze_max = 0;
    }
}

bool sim_cluster_init(sim_cluster_t *c, const sim_options_t *o)
{
    memset(c, 0, sizeof(*c));
    c->o = *o;
    c->app = sim_app();
    c->rng.s = o->seed;
    c->trace.verbose = o->verbose;
    c->n = o->nodes;
    kyu_raft_conf_t boot = {0};
    int voters = o->spare_node ? c->n - 1 : c->n;
    for (int i = 0; i < voters; i++)
        boot.voters[boot.n_voters++] = (uint64_t)i + 1;
    if (c->app && !c->app->seed_begin(c))
        return false;
    for (int i = 0; i < c->n; i++) {
        sim_node_t *nd = &c->nodes[i];
        nd->id = (uint64_t)i + 1;
        if (i < voters)
            nd->boot_conf = boot; /* a spare node starts with no configuration at all */
        if (!start_node(c, nd))
            return false;
    }
    c->net.faulty = true;
    c->faults = true;
    return true;
}

void sim_cluster_free(sim_cluster_t *c)
{
    if (c->app)
        c->app->seed_end(c); /* stops its nodes first: their cores belong to the replicas */
    for (int i = 0; i < c->n; i++)
        sim_node_free(&c->nodes[i]);
    sim_network_free(&c->net);
    sim_checker_free(&c->chk);
}

static sim_node_t *random_leader(sim_cluster_t *c)
{
    sim_node_t *cands[SIM_MAX_NODES];
    int n = 0;
    for (int i = 0; i < c->n; i++)
        if (c->nodes[i].raft && !c->nodes[i].frozen_until &&
            kyu_raft_role(c->nodes[i].raft) == KYU_RAFT_LEADER)
            cands[n++] = &c->nodes[i];
    return n ? cands[sim_rng_below(&c->rng, (uint64_t)n)] : NULL;
}

static void client_propose(sim_cluster_t *c)
{
    sim_node_t *nd = random_leader(c);
    if (!nd)
        return;
    if (c->app) {
        c->app->client(c, nd);
        return;
    }
    if (c->n_pending == sizeof(c->pending) / sizeof(c->pending[0])) {
        /* The client gives up on its oldest write (its outcome stays unknown). */
        memmove(c->pending, c->pending + 1, (c->n_pending - 1) * sizeof(c->pending[0]));
        c->n_pending--;
    }
    uint8_t data[64];
    uint64_t id = ++c->next_client_id;
    size_t len = 8 + (size_t)sim_rng_below(&c->rng, 48);
    for (size_t i = 0; i < len; i++)
        data[i] = i < 8 ? (uint8_t)(id >> (8 * i)) : (uint8_t)sim_rng_next(&c->rng);
    uint64_t index = 0, leader;
    kyu_raft_err_t rc = kyu_raft_propose(nd->raft, data, len, &index, &leader);
    kyu_raft_entry_t e = {.term = kyu_raft_term(nd->raft),
                          .index = index,
                          .type = KYU_RAFT_ENTRY_NORMAL,
                          .data = data,
                          .len = len};
    sim_proposal_t p = {.node = nd->id, .index = index, .term = e.term, .hash = sim_entry_hash(&e)};
    if (rc != KYU_RAFT_OK)
        return;
    c->pending[c->n_pending++] = p;
    sim_trace(&c->trace, c->now, "client: n%llu accepts write #%llu at %llu (term %llu)",
              (unsigned long long)nd->id, (unsigned long long)id, (unsigned long long)index,
              (unsigned long long)e.term);
}

/* A write is acknowledged once the leader that took it knows it committed (and still has
 * it at its index), as the broker does. (kyu-sim-kyu: the replica answers its client.) */
static void check_acks(sim_cluster_t *c, bool liveness)
{
    if (c->app)
        return;
    size_t j = 0;
    for (size_t i = 0; i < c->n_pending; i++) {
        sim_proposal_t *p = &c->pending[i];
        sim_node_t *nd = &c->nodes[p->node - 1];
        kyu_raft_t *r = nd->raft;
        bool keep = false;
        if (r && kyu_raft_term_at(r, p->index) == p->term) {
            if (kyu_raft_commit(r) >= p->index) {
                sim_trace(&c->trace, c->now, "client: write at %llu acknowledged",
                          (unsigned long long)p->index);
                sim_check_ack(c, p->index, p->hash);
                c->acked++;
                c->stats.acked++;
                if (liveness)
                    c->probe_acked = true;
            } else {
                keep = true;
            }
        }
        if (keep)
            c->pending[j++] = *p;
    }
    c->n_pending = j;
}

static void partition(sim_cluster_t *c)
{
    c->stats.partitions++;
    memset(c->net.blocked, 0, sizeof(c->net.blocked));
    if (sim_rng_chance(&c->rng, 500)) {
        /* Symmetric: split the nodes in two sides. */
        uint64_t side = sim_rng_next(&c->rng);
        for (int a = 1; a <= c->n; a++)
            for (int b = 1; b <= c->n; b++)
                c->net.blocked[a][b] = ((side >> a) & 1) != ((side >> b) & 1);
        sim_trace(&c->trace, c->now, "PARTITION symmetric, sides by mask %llx",
                  (unsigned long long)(side & ((1u << (c->n + 1)) - 2)));
    } else {
        int links = 1 + (int)sim_rng_below(&c->rng, (uint64_t)c->n);
        for (int k = 0; k < links; k++) {
            int a = 1 + (int)sim_rng_below(&c->rng, (uint64_t)c->n);
            int b = 1 + (int)sim_rng_below(&c->rng, (uint64_t)c->n);
            c->net.blocked[a][b] = true;
            sim_trace(&c->trace, c->now, "PARTITION one-way n%d -> n%d", a, b);
        }
    }
}

static void conf_change(sim_cluster_t *c)
{
    sim_node_t *nd = random_leader(c);
    if (!nd)
        return;
    const kyu_raft_conf_t *conf = kyu_raft_conf(nd->raft);
    uint64_t node = 1 + sim_rng_below(&c->rng, (uint64_t)c->n);
    bool voter = kyu_raft_conf_is_voter(conf, node);
    bool learner = kyu_raft_conf_is_learner(conf, node);
    kyu_raft_cc_op_t op;
    if (voter)
        op = conf->n_voters > 1 ? KYU_RAFT_CC_REMOVE : KYU_RAFT_CC_ADD_LEARNER;
    else if (learner)
        op = sim_rng_chance(&c->rng, 700) ? KYU_RAFT_CC_ADD_VOTER : KYU_RAFT_CC_REMOVE;
    else
        op = sim_rng_chance(&c->rng, 700) ? KYU_RAFT_CC_ADD_LEARNER : KYU_RAFT_CC_ADD_VOTER;
    uint64_t index = 0, leader;
    static const char *names[] = {"?", "add learner", "add voter", "remove"};
    if (c->app ? !c->app->conf_change(c, nd, op, node)
               : kyu_raft_propose_conf_change(nd->raft, op, node, &index, &leader) != KYU_RAFT_OK)
        return;
    c->stats.conf_changes++;
    sim_trace(&c->trace, c->now, "CONF n%llu proposes %s n%llu at %llu", (unsigned long long)nd->id,
              names[op], (unsigned long long)node,
              (unsigned long long)(index ? index : kyu_raft_last_index(nd->raft)));
}

static void transfer(sim_cluster_t *c)
{
    sim_node_t *nd = random_leader(c);
    if (!nd)
        return;
    uint64_t target = 1 + sim_rng_below(&c->rng, (uint64_t)c->n);
    if (c->app ? !c->app->transfer(c, nd, target)
               : kyu_raft_transfer_leader(nd->raft, target) != KYU_RAFT_OK)
        return;
    c->stats.transfers++;
    sim_trace(&c->trace, c->now, "TRANSFER n%llu -> n%llu", (unsigned long long)nd->id,
              (unsigned long long)target);
}

static void restart(sim_cluster_t *c, sim_node_t *nd)
{
    if (!start_node(c, nd)) {
        sim_violation(c, SIM_SAFETY, "node %llu cannot restart from its disk",
                      (unsigned long long)nd->id);
        return;
    }
    sim_trace(&c->trace, c->now, "n%llu RESTART (term %llu, vote %llu, %zu entries after %llu)",
              (unsigned long long)nd->id, (unsigned long long)nd->disk.hs.term,
              (unsigned long long)nd->disk.hs.vote, nd->disk.n,
              (unsigned long long)nd->disk.snap.index);
}

static void faults(sim_cluster_t *c)
{
    const sim_options_t *o = &c->o;
    sim_rng_t *rng = &c->rng;
    sim_node_t *victim = NULL;
    if (c->now < c->quiet_until) {
        for (int i = 0; i < c->n; i++) {
            sim_node_t *nd = &c->nodes[i];
            if (!nd->raft && c->now >= nd->restart_at && sim_rng_chance(rng, o->restart_pm))
                restart(c, nd);
        }
        return;
    }
    if (sim_rng_chance(rng, o->crash_pm)) {
        victim = &c->nodes[sim_rng_below(rng, (uint64_t)c->n)];
        /* Half the time, prefer a node in the middle of a disk write: the moment where
         * lost writes and early replies show up. */
        int first = (int)sim_rng_below(rng, (uint64_t)c->n);
        bool prefer_busy = sim_rng_chance(rng, 500);
        for (int k = 0; k < c->n && prefer_busy; k++) {
            sim_node_t *nd = &c->nodes[(first + k) % c->n];
            if (nd->raft && nd->busy) {
                victim = nd;
                break;
            }
        }
    } else if (sim_rng_chance(rng, o->crash_leader_pm))
        victim = random_leader(c);
    if (victim && victim->raft) {
        c->stats.crashes++;
        crash_node(c, victim);
        victim->restart_at = c->now + 1 + sim_rng_below(rng, o->down_max);
    }
    if (sim_rng_chance(rng, o->isolate_leader_pm)) {
        sim_node_t *lead = random_leader(c);
        if (lead) {
            for (int i = 1; i <= c->n; i++)
                c->net.blocked[lead->id][i] = c->net.blocked[i][lead->id] = true;
            sim_trace(&c->trace, c->now, "PARTITION isolates leader n%llu",
                      (unsigned long long)lead->id);
        }
    }
    for (int i = 0; i < c->n; i++) {
        sim_node_t *nd = &c->nodes[i];
        if (!nd->raft && c->now >= nd->restart_at && sim_rng_chance(rng, o->restart_pm))
            restart(c, nd);
    }
    if (sim_rng_chance(rng, o->partition_pm))
        partition(c);
    else if (sim_rng_chance(rng, o->heal_pm / 10 + 1)) {
        bool any = false;
        for (int a = 0; a <= c->n; a++)
            for (int b = 0; b <= c->n; b++)
                any |= c->net.blocked[a][b];
        if (any) {
            memset(c->net.blocked, 0, sizeof(c->net.blocked));
            sim_trace(&c->trace, c->now, "HEAL the network");
        }
    }
    if (sim_rng_chance(rng, o->clock_jump_pm)) {
        sim_node_t *nd = &c->nodes[sim_rng_below(rng, (uint64_t)c->n)];
        uint32_t ticks = 1 + (uint32_t)sim_rng_below(rng, 2ull * o->election_ticks);
        if (nd->raft && sim_rng_chance(rng, 500)) {
            sim_trace(&c->trace, c->now, "CLOCK n%llu jumps %u ticks ahead",
                      (unsigned long long)nd->id, ticks);
            for (uint32_t t = 0; t < ticks && nd->raft; t++)
                tick_node(c, nd);
        } else if (nd->raft) {
            sim_trace(&c->trace, c->now, "CLOCK n%llu stalls for %u ticks",
                      (unsigned long long)nd->id, ticks);
            nd->paused_ticks = ticks;
        }
    }
    if (sim_rng_chance(rng, o->conf_pm))
        conf_change(c);
    if (sim_rng_chance(rng, o->transfer_pm))
        transfer(c);
}

/* Liveness phase: is a write waiting at a node that still leads? */
static bool write_in_progress(sim_cluster_t *c)
{
    if (c->app)
        return c->app->client_waiting(c);
    for (size_t i = 0; i < c->n_pending; i++) {
        kyu_raft_t *r = c->nodes[c->pending[i].node - 1].raft;
        if (r && kyu_raft_role(r) == KYU_RAFT_LEADER)
            return true;
    }
    return false;
}

static void step(sim_cluster_t *c, bool liveness)
{
    c->now++;
    c->net.faulty = c->faults && c->now >= c->quiet_until;
    if (c->faults)
        faults(c);
    if (!liveness ? sim_rng_chance(&c->rng, c->o.propose_pm)
                  : (!c->probe_acked && !write_in_progress(c)))
        client_propose(c);
    for (int i = 0; i < c->n; i++) {
        if (c->nodes[i].frozen_until && c->now >= c->nodes[i].frozen_until)
            extend_pause(c, &c->nodes[i]);
        if (c->nodes[i].frozen_until && c->now >= c->nodes[i].frozen_until)
            resume(c, &c->nodes[i]);
    }
    sim_packet_t *due;
    size_t n = sim_network_take_due(&c->net, &c->rng, c->now, &due);
    for (size_t i = 0; i < n; i++) {
        kyu_raft_msg_t *m = &due[i].m;
        sim_node_t *to = &c->nodes[m->to - 1];
        if (to->raft && !c->net.blocked[m->from][m->to] && c->result == SIM_OK)
            deliver(c, to, &due[i]);
        else
            sim_msg_free(m);
    }
    free(due);
    for (int i = 0; i < c->n; i++) {
        sim_node_t *nd = &c->nodes[i];
        if (!nd->raft)
            continue;
        if (nd->frozen_until)
            continue;
        if (nd->paused_ticks > 0)
            nd->paused_ticks--;
        else
            tick_node(c, nd);
    }
    for (int i = 0; i < c->n && c->result == SIM_OK; i++) {
        if (!c->nodes[i].raft || c->nodes[i].frozen_until)
            continue;
        if (c->app)
            c->app->node_process(c, &c->nodes[i]);
        else
            sim_node_process(c, &c->nodes[i]);
    }
    check_acks(c, liveness);
    if (c->result == SIM_OK)
        sim_check_step(c);
}

/* Converged: a leader, a write acknowledged since the heal, and every member of the
 * leader's configuration applied up to every acknowledged write and the leader's commit. */
static bool converged(sim_cluster_t *c)
{
    if (!c->probe_acked)
        return false;
    sim_node_t *lead = NULL;
    for (int i = 0; i < c->n; i++)
        if (c->nodes[i].raft && kyu_raft_role(c->nodes[i].raft) == KYU_RAFT_LEADER &&
            (!lead || kyu_raft_term(c->nodes[i].raft) > kyu_raft_term(lead->raft)))
            lead = &c->nodes[i];
    if (!lead)
        return false;
    uint64_t target = kyu_raft_commit(lead->raft);
    if (target < c->chk.max_acked)
        return false;
    const kyu_raft_conf_t *conf = kyu_raft_conf(lead->raft);
    for (int i = 0; i < c->n; i++) {
        sim_node_t *nd = &c->nodes[i];
        if (!kyu_raft_conf_is_voter(conf, nd->id) && !kyu_raft_conf_is_learner(conf, nd->id))
            continue;
        if (!nd->raft || nd->sm_applied < target)
            return false;
    }
    return true;
}

sim_result_t sim_cluster_run(sim_cluster_t *c)
{
    for (uint64_t s = 0; s < c->o.steps && c->result == SIM_OK; s++)
        step(c, false);
    if (c->result != SIM_OK)
        return c->result;
    /* Heal: no more faults, every node back up, the network reliable. */
    sim_trace(&c->trace, c->now, "LIVENESS phase: heal everything, restart every node");
    c->faults = false;
    c->net.faulty = false;
    memset(c->net.blocked, 0, sizeof(c->net.blocked));
    for (int i = 0; i < c->n && c->result == SIM_OK; i++) {
        c->nodes[i].paused_ticks = 0;
        if (c->nodes[i].frozen_until)
            c->nodes[i].frozen_until = c->now + 1; /* resumes at the next step */
        if (!c->nodes[i].raft)
            restart(c, &c->nodes[i]);
    }
    for (uint64_t s = 0; s < c->o.liveness_steps && c->result == SIM_OK; s++) {
        step(c, true);
        if (c->result == SIM_OK && converged(c)) {
            if (c->app)
                c->app->converged(c);
            return c->result;
        }
    }
    if (c->result == SIM_OK) {
        for (int i = 0; i < c->n; i++) {
            sim_node_t *nd = &c->nodes[i];
            if (!nd->raft)
                continue;
            const kyu_raft_conf_t *cf = kyu_raft_conf(nd->raft);
            sim_trace(&c->trace, c->now,
                      "state n%llu: %s term %llu lead %llu first %llu last %llu commit %llu "
                      "applied %llu voters %u learners %u",
                      (unsigned long long)nd->id, kyu_raft_role_name(kyu_raft_role(nd->raft)),
                      (unsigned long long)kyu_raft_term(nd->raft),
                      (unsigned long long)kyu_raft_leader(nd->raft),
                      (unsigned long long)kyu_raft_first_index(nd->raft),
                      (unsigned long long)kyu_raft_last_index(nd->raft),
                      (unsigned long long)kyu_raft_commit(nd->raft),
                      (unsigned long long)nd->sm_applied, cf->n_voters, cf->n_learners);
        }
        sim_violation(c, SIM_LIVENESS,
                      "liveness: no convergence within %llu steps after the faults healed",
                      (unsigned long long)c->o.liveness_steps);
    }
    return c->result;
}
