/* Cluster time (broker/cluster_time.c): the time a node puts in its commands never goes back
 * and advances at the rate of real time even when the log's time is ahead of this node's
 * clock (a leader whose clock ran ahead led before), so leases granted under a fast leader
 * end after their real duration; clock skew past the bound is detected only on a trusted
 * estimate, logged once per episode with both times, and makes a leader hand leadership
 * over (once per term; not when alone or when leadership came back at once).
 *
 * Times are ms; "wall" is a node's CLOCK_REALTIME, "mono" its CLOCK_MONOTONIC. */
#include "cluster_time.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#define T0 1796320000000ULL /* a real time (2026) */
#define MIN 60000ULL
#define BOUND 5000ULL

typedef struct {
    int lines;
    char last[512];
} logbook_t;

static void capture(void *arg, const char *line)
{
    logbook_t *lb = arg;
    lb->lines++;
    snprintf(lb->last, sizeof lb->last, "%s", line);
}

static kyu_cluster_time_t *node_booted(logbook_t *lb, uint64_t applied_ms, uint64_t mono,
                                       uint64_t boot_last_index)
{
    kyu_cluster_time_config_t cfg = {
        .max_skew_ms = BOUND, .log = capture, .log_arg = lb, .boot_last_index = boot_last_index};
    kyu_cluster_time_t *ct = kyu_cluster_time_new(&cfg, applied_ms, mono);
    assert_non_null(ct);
    return ct;
}

static kyu_cluster_time_t *node(logbook_t *lb, uint64_t applied_ms, uint64_t mono)
{
    kyu_cluster_time_config_t cfg = {.max_skew_ms = BOUND, .log = capture, .log_arg = lb};
    kyu_cluster_time_t *ct = kyu_cluster_time_new(&cfg, applied_ms, mono);
    assert_non_null(ct);
    return ct;
}

/* A follower in a healthy cluster: at each step the leader proposes an entry (index i)
 * stamped `stamp`; this node holds it before it commits (one tick), then applies it. */
typedef struct {
    uint64_t index, applied_ms, term;
    /* The entry that carried applied_ms (0: the last applied, of the current term). */
    uint64_t applied_ms_index, applied_term;
    bool leader;
    uint32_t voters;
} replica_view_t;

static kyu_cluster_time_action_t tick(kyu_cluster_time_t *ct, const replica_view_t *v,
                                      uint64_t wall, uint64_t mono, uint64_t last_index)
{
    kyu_cluster_time_obs_t o = {.wall_ms = wall,
                                .mono_ms = mono,
                                .applied_ms = v->applied_ms,
                                .applied_index = v->index,
                                .applied_ms_index =
                                    v->applied_ms_index ? v->applied_ms_index : v->index,
                                .applied_ms_term = v->applied_term ? v->applied_term : v->term,
                                .last_index = last_index,
                                .commit_index = v->index,
                                .leader = v->leader,
                                .term = v->term,
                                .voters = v->voters};
    return kyu_cluster_time_tick(ct, &o);
}

/* One fresh entry: held uncommitted at one tick, applied by the next. */
static kyu_cluster_time_action_t fresh_entry(kyu_cluster_time_t *ct, replica_view_t *v,
                                             uint64_t stamp, uint64_t wall, uint64_t mono)
{
    tick(ct, v, wall, mono, v->index + 1);
    v->index++;
    if (stamp > v->applied_ms)
        v->applied_ms = stamp;
    return tick(ct, v, wall, mono + 1, v->index);
}

/* Leader A's clock is 10 minutes ahead; it stamps entries that node B (correct clock)
 * applies; then B leads. B's times go on from A's at the rate of real time: they are not
 * pinned at A's last time until B's clock catches up ten minutes later. */
static void test_after_a_fast_leader_time_advances_at_real_rate(void **state)
{
    (void)state;
    logbook_t lb = {0};
    kyu_cluster_time_t *b = node(&lb, 0, 0);
    replica_view_t v = {.voters = 3, .term = 1};
    uint64_t mono = 1000, real = T0;
    for (int i = 0; i < 5; i++, real += 100, mono += 100)
        fresh_entry(b, &v, real + 10 * MIN, real, mono);
    uint64_t last_a = v.applied_ms;

    v.leader = true; /* A died; B leads with its correct clock */
    v.term = 2;
    uint64_t t1 = kyu_cluster_time_now(b, real, mono, v.applied_ms);
    assert_true(t1 >= last_a);
    for (uint64_t dt = 1; dt <= 60000; dt *= 10) {
        uint64_t t = kyu_cluster_time_now(b, real + dt, mono + dt, v.applied_ms);
        if (t != t1 + dt)
            fail_msg("after %llu ms of real time the cluster time moved %lld ms (expected %llu)",
                     (unsigned long long)dt, (long long)(t - t1), (unsigned long long)dt);
    }
    kyu_cluster_time_destroy(&b);
    assert_null(b);
}

/* A lease granted under the fast leader for 2 s ends after 2 s of real time under the next
 * leader, not after the 10 minutes its clock is behind. */
static void test_a_lease_granted_under_a_fast_leader_ends_after_its_real_duration(void **state)
{
    (void)state;
    logbook_t lb = {0};
    kyu_cluster_time_t *b = node(&lb, 0, 0);
    replica_view_t v = {.voters = 3, .term = 1};
    uint64_t real = T0, mono = 5000;
    uint64_t granted = real + 10 * MIN;      /* A's receive command */
    fresh_entry(b, &v, granted, real, mono); /* applied at mono + 1 */
    uint64_t visible_at = granted + 2000, applied = mono + 1;
    v.leader = true;
    v.term = 2;
    /* B's commands over the next seconds of real time (as its frontend stamps them). */
    assert_true(kyu_cluster_time_now(b, real + 1990, applied + 1990, v.applied_ms) < visible_at);
    assert_true(kyu_cluster_time_now(b, real + 2000, applied + 2000, v.applied_ms) >= visible_at);
    kyu_cluster_time_destroy(&b);
}

/* Same, when B's estimate is not trusted (B restarted and only replayed the log): the
 * monotonic clock still carries the log's time forward. */
static void test_a_restarted_node_carries_the_log_time_forward_at_real_rate(void **state)
{
    (void)state;
    logbook_t lb = {0};
    uint64_t log_time = T0 + 10 * MIN, mono = 777;
    kyu_cluster_time_t *b = node(&lb, log_time, mono);
    assert_false(kyu_cluster_time_trusted(b));
    assert_int_equal(kyu_cluster_time_now(b, T0, mono, log_time), log_time);
    assert_int_equal(kyu_cluster_time_now(b, T0 + 2000, mono + 2000, log_time), log_time + 2000);
    kyu_cluster_time_destroy(&b);
}

/* The time never goes back, whatever the wall clock does. */
static void test_a_clock_stepping_back_never_moves_the_time_back(void **state)
{
    (void)state;
    logbook_t lb = {0};
    kyu_cluster_time_t *b = node(&lb, 0, 0);
    uint64_t prev = 0, mono = 0;
    uint64_t walls[] = {T0, T0 + 500, T0 - 3 * MIN, T0 - 3 * MIN + 10, T0 + 1000, T0 - 1};
    for (size_t i = 0; i < sizeof walls / sizeof walls[0]; i++, mono += 10) {
        uint64_t t = kyu_cluster_time_now(b, walls[i], mono, 0);
        if (t < prev)
            fail_msg("step %zu: time went back from %llu to %llu", i, (unsigned long long)prev,
                     (unsigned long long)t);
        prev = t;
    }
    kyu_cluster_time_destroy(&b);
}

/* With a correct clock, commands carry the wall clock. */
static void test_a_correct_clock_is_the_time(void **state)
{
    (void)state;
    logbook_t lb = {0};
    kyu_cluster_time_t *b = node(&lb, T0 - 1000, 0);
    replica_view_t v = {.voters = 3, .term = 1, .applied_ms = T0 - 1000};
    fresh_entry(b, &v, T0, T0, 10);
    assert_true(kyu_cluster_time_trusted(b));
    assert_int_equal(kyu_cluster_time_now(b, T0 + 50, 60, v.applied_ms), T0 + 50);
    assert_int_equal(lb.lines, 0);
    kyu_cluster_time_destroy(&b);
}

/* A follower whose clock is ahead of the leader's stamps: detected past the bound (one
 * line with both times, however many ticks), not below it. */
static void test_skew_is_detected_past_the_bound_not_below(void **state)
{
    (void)state;
    logbook_t lb = {0};
    kyu_cluster_time_t *b = node(&lb, 0, 0);
    replica_view_t v = {.voters = 3, .term = 1};
    uint64_t real = T0, mono = 100;
    for (int i = 0; i < 20; i++, real += 50, mono += 50)
        fresh_entry(b, &v, real, real + BOUND - 100, mono); /* 4.9 s ahead */
    assert_true(kyu_cluster_time_trusted(b));
    assert_int_equal(lb.lines, 0);
    assert_int_equal(kyu_cluster_time_skew(b), 0);

    for (int i = 0; i < 20; i++, real += 50, mono += 50)
        fresh_entry(b, &v, real, real + 5 * MIN, mono); /* its clock jumps 5 min ahead */
    assert_int_equal(lb.lines, 1);
    assert_int_equal(kyu_cluster_time_skew(b), 1);
    assert_non_null(strstr(lb.last, "ahead"));
    assert_non_null(strstr(lb.last, "300.0 s"));
    assert_non_null(strstr(lb.last, "2026-")); /* both times, readable */
    /* It stamps the cluster's time, not its clock. */
    uint64_t t = kyu_cluster_time_now(b, real + 5 * MIN, mono, v.applied_ms);
    assert_true(t < real + BOUND);
    assert_true(t >= v.applied_ms);

    for (int i = 0; i < 5; i++, real += 50, mono += 50)
        fresh_entry(b, &v, real, real + 100, mono); /* fixed */
    assert_int_equal(lb.lines, 2);
    assert_int_equal(kyu_cluster_time_skew(b), 0);
    assert_non_null(strstr(lb.last, "over"));
    kyu_cluster_time_destroy(&b);
}

/* A node whose clock is behind the cluster's time (a fast node led) says so. */
static void test_a_clock_behind_the_cluster_time_is_reported(void **state)
{
    (void)state;
    logbook_t lb = {0};
    kyu_cluster_time_t *b = node(&lb, 0, 0);
    replica_view_t v = {.voters = 3, .term = 1};
    uint64_t real = T0, mono = 100;
    for (int i = 0; i < 10; i++, real += 50, mono += 50)
        fresh_entry(b, &v, real + 5 * MIN, real, mono);
    assert_int_equal(lb.lines, 1);
    assert_int_equal(kyu_cluster_time_skew(b), -1);
    assert_non_null(strstr(lb.last, "behind"));
    /* Such a node may lead: nothing to hand over. */
    v.leader = true;
    v.term = 2;
    assert_int_equal(tick(b, &v, real, mono, v.index), KYU_CLUSTER_TIME_KEEP);
    kyu_cluster_time_destroy(&b);
}

/* Entries that were already committed when this node got them (catch-up after a restart, or
 * the replay of its own log) may carry old times: no skew is judged from them. */
static void test_old_times_from_catching_up_raise_no_alarm(void **state)
{
    (void)state;
    logbook_t lb = {0};
    uint64_t real = T0 + 60 * MIN, mono = 10;
    kyu_cluster_time_t *b = node(&lb, T0, mono); /* its log ends an hour ago */
    replica_view_t v = {.voters = 3, .term = 4, .applied_ms = T0};
    for (int i = 0; i < 100; i++, mono += 10) {
        v.index += 10; /* committed batches: never beyond the commit index */
        v.applied_ms += 1000;
        assert_int_equal(tick(b, &v, real, mono, v.index), KYU_CLUSTER_TIME_KEEP);
    }
    assert_false(kyu_cluster_time_trusted(b));
    assert_int_equal(lb.lines, 0);
    /* Leading then, it takes its clock (the cluster had gone idle; nobody knows better). */
    v.leader = true;
    assert_int_equal(tick(b, &v, real, mono, v.index), KYU_CLUSTER_TIME_KEEP);
    assert_int_equal(kyu_cluster_time_now(b, real, mono, v.applied_ms), real);
    kyu_cluster_time_destroy(&b);
}

/* A node restarted after an outage holds entries it wrote before it stopped, beyond the
 * commit index it knew: the leader commits them now, but their times are as old as the
 * outage. They must not make the node trust its estimate (a trusted estimate an hour behind
 * would make its correct clock look an hour ahead: it would stamp the old time and hand
 * leadership over, and so would every node restarted with it, for ever). */
static void test_entries_held_from_before_a_restart_are_not_fresh(void **state)
{
    (void)state;
    logbook_t lb = {0};
    uint64_t real = T0 + 60 * MIN, mono = 10;
    /* Applied up to 5, its log goes to 10: written an hour ago, before the outage. */
    kyu_cluster_time_t *b = node_booted(&lb, T0, mono, 10);
    replica_view_t v = {.voters = 3, .term = 7, .index = 5, .applied_ms = T0};
    tick(b, &v, real, mono, 10); /* 6..10 beyond the commit index */
    v.index = 10;
    v.applied_ms = T0 + 1000; /* the leader commits them: their old times */
    tick(b, &v, real, mono + 10, 10);
    if (kyu_cluster_time_trusted(b))
        fail_msg("entries written before the restart made the estimate (an hour old) trusted");
    v.leader = true;
    assert_int_equal(tick(b, &v, real, mono + 20, 10), KYU_CLUSTER_TIME_KEEP);
    assert_int_equal(lb.lines, 0);
    assert_int_equal(kyu_cluster_time_now(b, real, mono + 20, v.applied_ms), real);
    /* A fresh entry of this term, received after the start, is trusted. */
    fresh_entry(b, &v, real + 30, real + 30, mono + 30);
    assert_true(kyu_cluster_time_trusted(b));
    kyu_cluster_time_destroy(&b);
}

/* Entries of an earlier term that a new leader commits (it held them, maybe for long,
 * while no leader could commit) carry the times of the leader that proposed them: only an
 * entry of the current term, proposed by the leader that commits it, is fresh. */
static void test_entries_of_an_earlier_term_are_not_fresh(void **state)
{
    (void)state;
    logbook_t lb = {0};
    uint64_t real = T0 + 10 * MIN, mono = 10;
    kyu_cluster_time_t *b = node(&lb, T0, mono);
    replica_view_t v = {.voters = 3, .term = 9, .applied_ms = T0, .applied_term = 8};
    fresh_entry(b, &v, T0 + 1000, real, mono + 10); /* term 8's, received after the start */
    if (kyu_cluster_time_trusted(b))
        fail_msg("an entry of an earlier term made the (ten minutes old) estimate trusted");
    v.applied_term = 0; /* the current term's */
    fresh_entry(b, &v, real, real, mono + 20);
    assert_true(kyu_cluster_time_trusted(b));
    assert_int_equal(lb.lines, 0);
    kyu_cluster_time_destroy(&b);
}

/* A new leader's first entry of its term (a no-op, which carries no time) is committed
 * together with entries an earlier leader left: their time is old, and the no-op does not
 * vouch for it. */
static void test_a_time_from_an_earlier_term_is_not_fresh_beside_a_new_term_entry(void **state)
{
    (void)state;
    logbook_t lb = {0};
    uint64_t real = T0 + 10 * MIN, mono = 10;
    kyu_cluster_time_t *b = node(&lb, T0, mono);
    replica_view_t v = {.voters = 3, .term = 6, .index = 11, .applied_ms = T0};
    tick(b, &v, real, mono, 13); /* 12: term 5's, 13: the no-op of term 6 */
    v.index = 13;
    v.applied_ms = T0 + 1000;
    v.applied_ms_index = 12;
    v.applied_term = 5;
    v.leader = true;
    tick(b, &v, real, mono + 10, 13);
    if (kyu_cluster_time_trusted(b))
        fail_msg("the no-op of the term vouched for the earlier term's (old) time");
    assert_int_equal(lb.lines, 0);
    kyu_cluster_time_destroy(&b);
}

/* Every voter's clock looks ahead (say, the cluster's time fell behind while no leader
 * could commit): each hands leadership over once, then keeps it when it comes back within
 * the hold time, so leadership settles instead of going round for ever. */
static void test_leadership_settles_when_every_clock_looks_ahead(void **state)
{
    (void)state;
    logbook_t lb = {0};
    kyu_cluster_time_t *b = node(&lb, 0, 0);
    replica_view_t v = {.voters = 3, .term = 1};
    uint64_t real = T0, mono = 100;
    for (int i = 0; i < 5; i++, real += 50, mono += 50)
        fresh_entry(b, &v, real, real + MIN, mono);
    v.leader = true;
    v.term = 2;
    assert_int_equal(tick(b, &v, real + MIN, mono, v.index), KYU_CLUSTER_TIME_HAND_OVER);
    /* The other voters hand it over too: it comes back 20 s later, two terms on. */
    v.term = 4;
    mono += 20000;
    real += 20000;
    assert_int_equal(tick(b, &v, real + MIN, mono, v.index), KYU_CLUSTER_TIME_KEEP);
    kyu_cluster_time_destroy(&b);
}

/* A leader whose clock is ahead hands leadership over once per term; if leadership comes
 * back within the hold time (no other voter kept it), it keeps it; later it hands over
 * again. */
static void test_a_fast_leader_hands_leadership_over(void **state)
{
    (void)state;
    logbook_t lb = {0};
    kyu_cluster_time_t *b = node(&lb, 0, 0);
    replica_view_t v = {.voters = 3, .term = 1};
    uint64_t real = T0, mono = 100;
    for (int i = 0; i < 5; i++, real += 50, mono += 50)
        fresh_entry(b, &v, real, real + 5 * MIN, mono);
    assert_int_equal(lb.lines, 1);

    v.leader = true;
    v.term = 2;
    assert_int_equal(tick(b, &v, real + 5 * MIN, mono, v.index), KYU_CLUSTER_TIME_HAND_OVER);
    assert_int_equal(lb.lines, 2);
    /* The transfer runs: not asked again in the same term. */
    assert_int_equal(tick(b, &v, real + 5 * MIN, mono + 10, v.index), KYU_CLUSTER_TIME_KEEP);

    v.term = 4; /* back 2 s later: every other voter refused or failed */
    mono += 2000;
    real += 2000;
    assert_int_equal(tick(b, &v, real + 5 * MIN, mono, v.index), KYU_CLUSTER_TIME_KEEP);
    assert_int_equal(lb.lines, 3);
    assert_non_null(strstr(lb.last, "came back"));
    assert_int_equal(tick(b, &v, real + 5 * MIN, mono + 10, v.index), KYU_CLUSTER_TIME_KEEP);
    assert_int_equal(lb.lines, 3);

    v.term = 6; /* a minute later */
    mono += MIN;
    real += MIN;
    assert_int_equal(tick(b, &v, real + 5 * MIN, mono, v.index), KYU_CLUSTER_TIME_HAND_OVER);
    kyu_cluster_time_destroy(&b);
}

/* The only voter keeps serving, with the warning, on the cluster's time. */
static void test_a_lone_voter_keeps_leading_on_the_cluster_time(void **state)
{
    (void)state;
    logbook_t lb = {0};
    kyu_cluster_time_t *b = node(&lb, 0, 0);
    replica_view_t v = {.voters = 1, .term = 1, .leader = true};
    uint64_t real = T0, mono = 100;
    for (int i = 0; i < 5; i++, real += 50, mono += 50)
        fresh_entry(b, &v, kyu_cluster_time_now(b, real, mono, v.applied_ms), real, mono);
    assert_int_equal(lb.lines, 0);
    /* Its clock steps 5 minutes ahead. */
    for (int i = 0; i < 5; i++, real += 50, mono += 50) {
        uint64_t t = kyu_cluster_time_now(b, real + 5 * MIN, mono, v.applied_ms);
        assert_true(t < real + BOUND);
        assert_int_equal(fresh_entry(b, &v, t, real + 5 * MIN, mono), KYU_CLUSTER_TIME_KEEP);
    }
    assert_int_equal(lb.lines, 2); /* the skew, and that it keeps leading */
    assert_non_null(strstr(lb.last, "only voter"));
    kyu_cluster_time_destroy(&b);
}

/* A clock ahead by less than the bound moves the time forward (as before). */
static void test_a_clock_ahead_within_the_bound_is_used(void **state)
{
    (void)state;
    logbook_t lb = {0};
    kyu_cluster_time_t *b = node(&lb, 0, 0);
    replica_view_t v = {.voters = 3, .term = 1};
    fresh_entry(b, &v, T0, T0, 100);
    assert_true(kyu_cluster_time_trusted(b));
    assert_int_equal(kyu_cluster_time_now(b, T0 + 3000, 110, v.applied_ms), T0 + 3000);
    assert_int_equal(lb.lines, 0);
    kyu_cluster_time_destroy(&b);
}

/* The default bound applies when none is given. */
static void test_the_default_bound_is_five_seconds(void **state)
{
    (void)state;
    logbook_t lb = {0};
    kyu_cluster_time_config_t cfg = {.log = capture, .log_arg = &lb};
    kyu_cluster_time_t *b = kyu_cluster_time_new(&cfg, 0, 0);
    replica_view_t v = {.voters = 3, .term = 1};
    fresh_entry(b, &v, T0, T0 + 4900, 100);
    assert_int_equal(lb.lines, 0);
    fresh_entry(b, &v, T0 + 10, T0 + 5200, 110);
    assert_int_equal(lb.lines, 1);
    assert_non_null(strstr(lb.last, "bound of 5.0 s"));
    kyu_cluster_time_destroy(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_after_a_fast_leader_time_advances_at_real_rate),
        cmocka_unit_test(test_a_lease_granted_under_a_fast_leader_ends_after_its_real_duration),
        cmocka_unit_test(test_a_restarted_node_carries_the_log_time_forward_at_real_rate),
        cmocka_unit_test(test_a_clock_stepping_back_never_moves_the_time_back),
        cmocka_unit_test(test_a_correct_clock_is_the_time),
        cmocka_unit_test(test_skew_is_detected_past_the_bound_not_below),
        cmocka_unit_test(test_a_clock_behind_the_cluster_time_is_reported),
        cmocka_unit_test(test_old_times_from_catching_up_raise_no_alarm),
        cmocka_unit_test(test_a_fast_leader_hands_leadership_over),
        cmocka_unit_test(test_entries_held_from_before_a_restart_are_not_fresh),
        cmocka_unit_test(test_entries_of_an_earlier_term_are_not_fresh),
        cmocka_unit_test(test_a_time_from_an_earlier_term_is_not_fresh_beside_a_new_term_entry),
        cmocka_unit_test(test_leadership_settles_when_every_clock_looks_ahead),
        cmocka_unit_test(test_a_lone_voter_keeps_leading_on_the_cluster_time),
        cmocka_unit_test(test_a_clock_ahead_within_the_bound_is_used),
        cmocka_unit_test(test_the_default_bound_is_five_seconds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
