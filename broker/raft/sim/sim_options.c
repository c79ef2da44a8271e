/*
 * sim_options.c - the PRNG and the options a seed picks for its run. Each seed draws its
 * own fault rates and Raft settings, so a few hundred seeds cover calm networks and
 * hostile ones, big snapshots in small chunks, fast and slow disks.
 */
#include "sim.h"

uint64_t sim_rng_next(sim_rng_t *rng)
{
    uint64_t z = (rng->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

uint64_t sim_rng_below(sim_rng_t *rng, uint64_t n)
{
    return sim_rng_next(rng) % n;
}

bool sim_rng_chance(sim_rng_t *rng, uint32_t pm)
{
    return sim_rng_below(rng, 1000) < pm;
}

uint64_t sim_hash(const void *data, size_t len, uint64_t seed)
{
    const uint8_t *p = data;
    uint64_t h = 1469598103934665603ull ^ seed;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

uint64_t sim_mix(uint64_t a, uint64_t b)
{
    uint64_t z = a ^ (b + 0x9E3779B97F4A7C15ull + (a << 6) + (a >> 2));
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    return z ^ (z >> 31);
}

static uint32_t pick(sim_rng_t *rng, uint32_t lo, uint32_t hi)
{
    return lo + (uint32_t)sim_rng_below(rng, hi - lo + 1);
}

/* Swarm testing: each fault is switched on for only some seeds, so that some runs are calm
 * enough to reach deep states (long logs, snapshots, many membership changes) and others
 * are hostile. */
static uint32_t maybe(sim_rng_t *rng, uint32_t on_pm, uint32_t lo, uint32_t hi)
{
    return sim_rng_chance(rng, on_pm) ? pick(rng, lo, hi) : 0;
}

void sim_options_pick(sim_options_t *o, int nodes, uint64_t seed, uint64_t steps)
{
    sim_rng_t rng = {seed ^ 0x6b79752d73696dull}; /* separate stream from the run's */
    o->nodes = nodes;
    o->seed = seed;
    o->steps = steps;
    o->election_ticks = pick(&rng, 8, 20);
    o->heartbeat_ticks = pick(&rng, 1, 3);
    o->drop_pm = maybe(&rng, 700, 1, 200);
    o->dup_pm = maybe(&rng, 600, 1, 100);
    o->delay_min = pick(&rng, 0, 2);
    o->delay_max = o->delay_min + pick(&rng, 0, 5);
    o->long_delay_pm = maybe(&rng, 600, 1, 50);
    o->long_delay_max = pick(&rng, 10, 60);
    o->partition_pm = maybe(&rng, 600, 1, 20);
    o->heal_pm = pick(&rng, 10, 60);
    o->crash_pm = maybe(&rng, 600, 1, 30);
    o->crash_leader_pm = maybe(&rng, 600, 1, 40);
    o->isolate_leader_pm = maybe(&rng, 500, 1, 20);

    o->restart_pm = pick(&rng, 20, 100);
    o->clock_jump_pm = maybe(&rng, 500, 1, 10);
    o->disk_latency_max = pick(&rng, 0, 8);
    o->max_inflight = pick(&rng, 1, 8);
    o->max_msg_entries = sim_rng_chance(&rng, 300) ? 1 : pick(&rng, 2, 16);
    o->snapshot_chunk = pick(&rng, 16, 512);
    o->compact_after = pick(&rng, 5, 80);
    o->snap_pad = pick(&rng, 0, 2000);
    o->max_uncommitted = pick(&rng, 16, 256);
    o->propose_pm = pick(&rng, 50, 500);
    o->conf_pm = maybe(&rng, 700, 1, 15);
    o->transfer_pm = maybe(&rng, 700, 1, 10);
    /* Raft's timing requirement (thesis 3.5): an election must fit in the election timeout:
     * the candidate's fsync, the request, the voter's fsync and the answer. */
    uint32_t round_trip = 2 * (o->delay_max + 1) + 2 * o->disk_latency_max + 2;
    if (o->election_ticks < round_trip)
        o->election_ticks = round_trip;
    o->liveness_steps = 300ull * o->election_ticks;
    o->down_max = o->election_ticks * (1 + (uint32_t)sim_rng_below(&rng, 4));
    o->spare_node = nodes > 3 && sim_rng_chance(&rng, 400);
}

void sim_options_print(const sim_options_t *o, FILE *f)
{
    fprintf(f,
            "seed %llu: nodes=%d steps=%llu election=%u heartbeat=%u inflight=%u batch=%u\n"
            "  (rates are per mille per step or per message)\n"
            "  network: drop=%u dup=%u delay=%u..%u long=%u (<=%u) partition=%u "
            "heal=%u\n"
            "  nodes: crash=%u crash_leader=%u isolate_leader=%u down<=%u restart=%u clock_jump=%u "
            "disk_latency<=%u\n"
            "  snapshots: compact_after=%u pad=%u chunk=%u max_uncommitted=%u\n"
            "  client: propose=%u conf_change=%u transfer=%u spare_node=%d\n",
            (unsigned long long)o->seed, o->nodes, (unsigned long long)o->steps, o->election_ticks,
            o->heartbeat_ticks, o->max_inflight, o->max_msg_entries, o->drop_pm, o->dup_pm,
            o->delay_min, o->delay_max, o->long_delay_pm, o->long_delay_max, o->partition_pm,
            o->heal_pm, o->crash_pm, o->crash_leader_pm, o->isolate_leader_pm, o->down_max,
            o->restart_pm, o->clock_jump_pm, o->disk_latency_max, o->compact_after, o->snap_pad,
            o->snapshot_chunk, o->max_uncommitted, o->propose_pm, o->conf_pm, o->transfer_pm,
            o->spare_node);
}
