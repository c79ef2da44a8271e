/*
 * sim_main.c - kyu-sim's command line (and kyu-sim-kyu's, which adds --plant and --scenario):
 *   kyu-sim --nodes N --seeds COUNT --seed-start S [--steps K] [--verbose]
 *   kyu-sim-kyu --nodes N --seeds COUNT --seed-start S [--steps K] [--plant B]
 *               [--scenario deposed] [--write-now] [--no-early] [--verbose]
 * Runs COUNT seeds from S. On the first violation prints the seed, the step, the invariant,
 * a trace and the command that replays it, and exits 1. Otherwise the last line is
 * "COUNT seeds, 0 violations" and it exits 0.
 */
#include "sim.h"

#include <stdlib.h>
#include <string.h>

static const char *argv0; /* the binary, for the replay line (a planted variant too) */

static const char *name(void)
{
    if (argv0 && *argv0) {
        const char *slash = strrchr(argv0, '/');
        return slash ? slash + 1 : argv0;
    }
    return sim_app() ? sim_app()->name : "kyu-sim";
}

static void usage(void)
{
    fprintf(stderr,
            "usage: %s --nodes N --seeds COUNT --seed-start S [--steps K] %s[--verbose]\n"
            "  N in 3..7, K safety-phase steps per seed (default 2000)\n",
            name(),
            sim_app() ? "[--plant B] [--scenario deposed] [--write-now] [--no-early] " : "");
    if (sim_app())
        fprintf(stderr,
                "  B: a planted bug the checkers must find (docs/RAFT.md), 0 = none\n"
                "  deposed: paused leaders stay paused until deposed (sim.h)\n"
                "  write-now: followers write small rounds at once in half the seeds\n"
                "  no-early: receives answered early by a lone voter only (the broker's)\n");
    exit(64);
}

static uint64_t parse_u64(const char *s)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (!*s || *end)
        usage();
    return v;
}

int main(int argc, char **argv)
{
    argv0 = argv[0];
    int nodes = 0;
    uint64_t seeds = 0, start = 0, steps = 2000;
    uint32_t plant = 0, scenario = SIM_SCENARIO_NONE;
    bool have_seeds = false, have_start = false, verbose = false, write_now = false;
    bool no_early = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--verbose")) {
            verbose = true;
        } else if (i + 1 < argc && !strcmp(argv[i], "--nodes")) {
            nodes = (int)parse_u64(argv[++i]);
        } else if (i + 1 < argc && !strcmp(argv[i], "--seeds")) {
            seeds = parse_u64(argv[++i]);
            have_seeds = true;
        } else if (i + 1 < argc && !strcmp(argv[i], "--seed-start")) {
            start = parse_u64(argv[++i]);
            have_start = true;
        } else if (i + 1 < argc && !strcmp(argv[i], "--steps")) {
            steps = parse_u64(argv[++i]);
        } else if (sim_app() && i + 1 < argc && !strcmp(argv[i], "--plant")) {
            plant = (uint32_t)parse_u64(argv[++i]);
        } else if (sim_app() && i + 1 < argc && !strcmp(argv[i], "--scenario")) {
            if (strcmp(argv[++i], "deposed") != 0)
                usage();
            scenario = SIM_SCENARIO_DEPOSED;
        } else if (sim_app() && !strcmp(argv[i], "--write-now")) {
            write_now = true;
        } else if (sim_app() && !strcmp(argv[i], "--no-early")) {
            no_early = true;
        } else {
            usage();
        }
    }
    if (nodes < 3 || nodes > SIM_MAX_NODES || !have_seeds || !have_start)
        usage();
    sim_cluster_t *c = malloc(sizeof(*c));
    if (!c) {
        fprintf(stderr, "kyu-sim: out of memory\n");
        return 3;
    }
    sim_stats_t total = {0};
    uint64_t app_total[SIM_APP_COUNTS] = {0};
    for (uint64_t s = start; s < start + seeds; s++) {
        sim_options_t o;
        sim_options_pick(&o, nodes, s, steps);
        o.verbose = verbose;
        o.plant = plant;
        o.scenario = scenario;
        o.write_now = write_now;
        o.no_early = no_early;
        if (verbose)
            sim_options_print(&o, stdout);
        if (!sim_cluster_init(c, &o)) {
            fprintf(stderr, "%s: seed %llu: cannot create the cluster\n", name(),
                    (unsigned long long)s);
            sim_cluster_free(c);
            free(c);
            return 3;
        }
        sim_result_t res = sim_cluster_run(c);
        total.steps += c->now;
        total.acked += c->stats.acked;
        total.elections += c->stats.elections;
        total.crashes += c->stats.crashes;
        total.snapshots_installed += c->stats.snapshots_installed;
        total.compactions += c->stats.compactions;
        total.conf_changes += c->stats.conf_changes;
        total.transfers += c->stats.transfers;
        total.partitions += c->stats.partitions;
        if (sim_app() && sim_app()->count)
            sim_app()->count(c, app_total);
        if (res != SIM_OK) {
            printf("VIOLATION (%s) seed %llu step %llu: %s\n",
                   res == SIM_SAFETY ? "safety" : "liveness", (unsigned long long)s,
                   (unsigned long long)c->now, c->violation);
            if (!verbose)
                sim_options_print(&o, stdout);
            sim_trace_dump(&c->trace, stdout);
            char extra[64] = "";
            if (plant)
                snprintf(extra, sizeof(extra), " --plant %u", plant);
            if (scenario == SIM_SCENARIO_DEPOSED)
                snprintf(extra + strlen(extra), sizeof(extra) - strlen(extra),
                         " --scenario deposed");
            if (write_now)
                snprintf(extra + strlen(extra), sizeof(extra) - strlen(extra), " --write-now");
            if (no_early)
                snprintf(extra + strlen(extra), sizeof(extra) - strlen(extra), " --no-early");
            printf("reproduce with: %s --nodes %d --seeds 1 --seed-start %llu --steps %llu%s "
                   "--verbose\n",
                   name(), nodes, (unsigned long long)s, (unsigned long long)steps, extra);
            printf("%llu seeds, 1 violations\n", (unsigned long long)(s - start + 1));
            sim_cluster_free(c);
            free(c);
            return 1;
        }
        if (verbose)
            printf("seed %llu: ok after %llu steps, %llu writes acknowledged\n",
                   (unsigned long long)s, (unsigned long long)c->now, (unsigned long long)c->acked);
        sim_cluster_free(c);
    }
    free(c);
    fprintf(stderr,
            "totals: %llu steps, %llu leaders elected, %llu writes acknowledged, %llu crashes, "
            "%llu partitions, %llu compactions, %llu snapshots installed, %llu membership "
            "changes, %llu transfers\n",
            (unsigned long long)total.steps, (unsigned long long)total.elections,
            (unsigned long long)total.acked, (unsigned long long)total.crashes,
            (unsigned long long)total.partitions, (unsigned long long)total.compactions,
            (unsigned long long)total.snapshots_installed, (unsigned long long)total.conf_changes,
            (unsigned long long)total.transfers);
    if (sim_app() && sim_app()->count_names) {
        fprintf(stderr, "%s totals:", name());
        for (int i = 0; sim_app()->count_names[i] && i < SIM_APP_COUNTS; i++)
            fprintf(stderr, "%s %llu %s", i ? "," : "", (unsigned long long)app_total[i],
                    sim_app()->count_names[i]);
        fprintf(stderr, "\n");
    }
    printf("%llu seeds, 0 violations\n", (unsigned long long)seeds);
    return 0;
}
