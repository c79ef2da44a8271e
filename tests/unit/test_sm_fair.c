/* Fair message groups on standard queues (broker/sm_fair.c): a receive shared fairly among
 * the groups with visible messages (no group more than ceil(N/k) unless the others run
 * short), the least recently served first (a quiet tenant is not delayed behind a noisy
 * one), messages without a group as one group, no group locks, a queue without groups as
 * before, and the same choices after a restart as without one. */
#include "command.h"
#include "fixture.h"
#include "ops.h"
#include "queue_attrs.h"
#include "sm_internal.h"

#include <stdlib.h>
#include <string.h>

#define T0 1000000 /* a command time, ms */

/* Sends n messages "<group>-<i>" (group NULL: "none-<i>"), ten to an entry. */
static void send_n(fixture_t *f, const char *q, uint64_t now, const char *group, int n)
{
    static char bodies[10][48];
    kyu_command_t cmds[10];
    kyu_result_t res[10];
    for (int i = 0; i < n;) {
        size_t k = 0;
        for (; k < 10 && i < n; k++, i++) {
            snprintf(bodies[k], sizeof bodies[k], "%s-%d", group ? group : "none", i);
            cmds[k] = cmd_send_fifo(q, now, bodies[k], group, NULL);
        }
        apply_entry(f, cmds, k, res);
        for (size_t j = 0; j < k; j++)
            ok(res[j]);
    }
}

/* How many of g's messages are of group (NULL: without one). */
static size_t of_group(const got_t *g, const char *group)
{
    size_t n = 0;
    for (size_t i = 0; i < g->n; i++)
        n += strcmp(g->groups[i], group ? group : "") == 0;
    return n;
}

static queue_t *queue(fixture_t *f, const char *name)
{
    return zhashx_lookup(f->sm->queues, name);
}

static void test_a_receive_gives_no_group_more_than_its_share(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, cmd_create("q", -1)));
    const char *gs[4] = {"a", "b", "c", "d"};
    for (int i = 0; i < 4; i++)
        send_n(f, "q", T0, gs[i], 20);
    /* 10 of 4 groups: at most ceil(10/4) = 3 each */
    got_t g = fixture_receive(f, "q", T0, 10, -1);
    assert_int_equal(g.n, 10);
    for (int i = 0; i < 4; i++)
        if (of_group(&g, gs[i]) > 3 || of_group(&g, gs[i]) < 2)
            fail_msg("group %s: %zu of 10 (expected 2 or 3): %s", gs[i], of_group(&g, gs[i]),
                     got_bodies(&g));
    /* 10 of 2 groups (c and d run short after a and b are drained): 5 each */
    ok(apply1(f, cmd_create("r", -1)));
    send_n(f, "r", T0, "a", 30);
    send_n(f, "r", T0, "b", 30);
    g = fixture_receive(f, "r", T0, 10, -1);
    assert_int_equal(of_group(&g, "a"), 5);
    assert_int_equal(of_group(&g, "b"), 5);
}

static void test_groups_that_run_short_leave_the_rest_to_the_others(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, cmd_create("q", -1)));
    send_n(f, "q", T0, "big", 20);
    send_n(f, "q", T0, "one", 1);
    send_n(f, "q", T0, "two", 2);
    got_t g = fixture_receive(f, "q", T0, 10, -1);
    assert_int_equal(g.n, 10);
    assert_int_equal(of_group(&g, "one"), 1);
    assert_int_equal(of_group(&g, "two"), 2);
    assert_int_equal(of_group(&g, "big"), 7);
}

static void test_a_quiet_tenant_is_not_delayed_behind_a_noisy_one(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, cmd_create("q", -1)));
    send_n(f, "q", T0, "noisy", 10000);
    got_t g = fixture_receive(f, "q", T0 + 1, 1, -1);
    assert_string_equal(g.groups[0], "noisy");
    send_n(f, "q", T0 + 2, "quiet", 1);
    /* a receive of one: the group served least recently (never) first */
    g = fixture_receive(f, "q", T0 + 3, 1, -1);
    assert_string_equal(got_bodies(&g), "quiet-0");
    assert_string_equal(g.groups[0], "quiet"); /* the reply carries the group id */
    /* and in a receive of ten, the quiet tenant's message is among them */
    send_n(f, "q", T0 + 4, "quiet", 1);
    g = fixture_receive(f, "q", T0 + 5, 10, -1);
    assert_int_equal(g.n, 10);
    assert_int_equal(of_group(&g, "quiet"), 1);
    /* receives of one take turns while both have messages */
    send_n(f, "q", T0 + 6, "quiet", 3);
    const char *want[6] = {"quiet", "noisy", "quiet", "noisy", "quiet", "noisy"};
    for (int i = 0; i < 6; i++) {
        g = fixture_receive(f, "q", T0 + 7 + i, 1, -1);
        assert_int_equal(g.n, 1);
        if (strcmp(g.groups[0], want[i]) != 0)
            fail_msg("receive %d: expected group %s, got %s", i, want[i], g.groups[0]);
    }
}

/* 20,000 groups of one message each: every receive of ten takes ten groups, never one twice
 * in a row before all were served, and a receive works through the ready groups alone (a
 * receive costs O(messages log groups): the test runs in seconds). */
static void test_many_groups_are_served_in_turn(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, cmd_create("q", -1)));
    enum { GROUPS = 20000 };
    static char names[GROUPS][16];
    for (int i = 0; i < GROUPS; i++)
        snprintf(names[i], sizeof names[i], "t%05d", i);
    for (int i = 0; i < GROUPS; i++)
        send_n(f, "q", T0, names[i], 2);
    assert_int_equal(kyu_sm_fair_groups(queue(f, "q")), GROUPS);
    /* the first round: every group once, in id order (none served yet) */
    for (int r = 0; r < GROUPS / 10; r++) {
        got_t g = fixture_receive(f, "q", T0 + 1, 10, 60);
        assert_int_equal(g.n, 10);
        for (int i = 0; i < 10; i++)
            if (strcmp(g.groups[i], names[r * 10 + i]) != 0)
                fail_msg("receive %d: expected %s, got %s", r, names[r * 10 + i], g.groups[i]);
    }
    /* the second round: the same order again (each was served once) */
    got_t g = fixture_receive(f, "q", T0 + 2, 10, 60);
    for (int i = 0; i < 10; i++)
        assert_string_equal(g.groups[i], names[i]);
}

static void test_messages_without_a_group_are_a_group_of_their_own(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, cmd_create("q", -1)));
    send_n(f, "q", T0, NULL, 30);
    send_n(f, "q", T0, "g1", 30);
    got_t g = fixture_receive(f, "q", T0, 10, -1);
    assert_int_equal(of_group(&g, NULL), 5);
    assert_int_equal(of_group(&g, "g1"), 5);
    /* an ungrouped message sent after the groups' is not delayed behind them either */
    ok(apply1(f, cmd_create("r", -1)));
    send_n(f, "r", T0, "g1", 30);
    send_n(f, "r", T0, NULL, 1);
    g = fixture_receive(f, "r", T0, 2, -1);
    assert_int_equal(of_group(&g, NULL), 1);
}

static void test_a_group_is_not_locked_while_a_message_is_in_flight(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, cmd_create("q", -1)));
    send_n(f, "q", T0, "g", 3);
    got_t a = fixture_receive(f, "q", T0, 1, 30);
    got_t b = fixture_receive(f, "q", T0, 10, 30);
    assert_int_equal(a.n, 1);
    assert_int_equal(b.n, 2);
    assert_int_equal(kyu_sm_visible_upto(f->sm, "q", T0, 10), 0);
    assert_false(kyu_sm_has_visible(f->sm, "q", T0));
    /* the leases run out: all three visible again, at the lease's end */
    assert_int_equal(kyu_sm_next_visible_at(f->sm, "q"), T0 + 30000);
    assert_int_equal(kyu_sm_visible_upto(f->sm, "q", T0 + 30000, 10), 3);
    got_t c = fixture_receive(f, "q", T0 + 30000, 10, 30);
    assert_int_equal(c.n, 3);
}

static void test_a_queue_without_groups_has_no_fair_state(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, cmd_create("q", -1)));
    send_n(f, "q", T0, NULL, 12);
    assert_null(queue(f, "q")->fair);
    got_t g = fixture_receive(f, "q", T0, 10, -1);
    assert_string_equal(got_bodies(&g),
                        "none-0 none-1 none-2 none-3 none-4 none-5 none-6 none-7 none-8 none-9");
    fixture_reopen(f);
    assert_null(queue(f, "q")->fair);
    g = fixture_receive(f, "q", T0 + 1, 10, -1);
    assert_string_equal(got_bodies(&g), "none-10 none-11");
}

static void test_a_delete_of_a_groups_last_message_forgets_the_group(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, cmd_create("q", -1)));
    send_n(f, "q", T0, "a", 2);
    send_n(f, "q", T0, "b", 1);
    assert_int_equal(kyu_sm_fair_groups(queue(f, "q")), 2);
    got_t g = fixture_receive(f, "q", T0, 10, 30);
    assert_int_equal(g.n, 3);
    for (size_t i = 0; i < g.n; i++)
        ok(apply1(f, cmd_delete("q", T0 + 1, g.handles[i])));
    assert_int_equal(kyu_sm_fair_groups(queue(f, "q")), 0);
    fixture_reopen(f);
    assert_non_null(queue(f, "q")->fair); /* the queue keeps its flag */
    assert_int_equal(kyu_sm_fair_groups(queue(f, "q")), 0);
    send_n(f, "q", T0 + 2, "b", 1);
    g = fixture_receive(f, "q", T0 + 3, 10, 30);
    assert_string_equal(got_bodies(&g), "b-0");
}

static void test_a_delayed_grouped_message_waits_for_its_delay(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, cmd_create("q", -1)));
    kyu_command_t c = cmd_send_fifo("q", T0, "late", "g", NULL);
    c.has_msg_delay[0] = true;
    c.msg_delay_ms[0] = 5000;
    ok(apply1(f, c));
    assert_false(kyu_sm_has_visible(f->sm, "q", T0));
    assert_int_equal(kyu_sm_next_visible_at(f->sm, "q"), T0 + 5000);
    assert_int_equal(fixture_receive(f, "q", T0 + 1, 10, -1).n, 0);
    got_t g = fixture_receive(f, "q", T0 + 5000, 10, -1);
    assert_string_equal(got_bodies(&g), "late");
}

/* A message moved to a standard dead-letter queue keeps its group there, and the dead-letter
 * queue's receives are fair too, also after a restart. */
static void test_a_dead_letter_move_keeps_the_group(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, cmd_create("dlq", -1)));
    static kyu_queue_ext_t x;
    kyu_command_t c = cmd_with_redrive(cmd_create("src", -1), &x, "dlq", 1);
    c.now_ms = T0;
    ok(apply1(f, c));
    send_n(f, "src", T0, "a", 3);
    send_n(f, "src", T0, "b", 1);
    assert_int_equal(fixture_receive(f, "src", T0, 10, 0).n,
                     4); /* leases of 0: due again at once */
    /* received once: each moves to dlq at its next receive */
    assert_int_equal(fixture_receive(f, "src", T0 + 1, 10, -1).n, 0);
    assert_non_null(queue(f, "dlq")->fair);
    assert_int_equal(kyu_sm_fair_groups(queue(f, "dlq")), 2);
    fixture_reopen(f);
    assert_int_equal(kyu_sm_fair_groups(queue(f, "dlq")), 2);
    got_t g = fixture_receive(f, "dlq", T0 + 2, 2, -1);
    assert_int_equal(of_group(&g, "a"), 1);
    assert_int_equal(of_group(&g, "b"), 1);
}

static void test_a_purge_forgets_the_groups(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, cmd_create("q", -1)));
    send_n(f, "q", T0, "a", 5);
    fixture_receive(f, "q", T0, 2, -1);
    kyu_command_t p = cmd_receive("q", T0 + 1, 1, -1);
    p.type = KYU_CMD_PURGE_QUEUE;
    ok(apply1(f, p));
    assert_int_equal(kyu_sm_fair_groups(queue(f, "q")), 0);
    assert_false(kyu_sm_has_visible(f->sm, "q", T0 + 1));
    send_n(f, "q", T0 + 2, "b", 1);
    fixture_reopen(f);
    got_t g = fixture_receive(f, "q", T0 + 3, 10, -1);
    assert_string_equal(got_bodies(&g), "b-0");
}

/* Runs the same commands on two state machines, one restarted between steps:
 * every receive takes the same messages from both. */
static void run_twins(fixture_t *a, fixture_t *b)
{
    ok(apply1(a, cmd_create("q", -1)));
    ok(apply1(b, cmd_create("q", -1)));
    uint64_t now = T0;
    uint32_t rng = 7;
    for (int step = 0; step < 60; step++) {
        fixture_t *both[2] = {a, b};
        rng = rng * 1103515245u + 12345u;
        const char *grp[6] = {"a", "b", "c", "d", "e", NULL};
        int which = (int)((rng >> 16) % 6), n = (int)((rng >> 8) % 7) + 1;
        for (int i = 0; i < 2; i++)
            send_n(both[i], "q", now, grp[which], n);
        got_t g[2];
        uint32_t max = (rng >> 20) % 2 + 1;
        int64_t vt = (rng >> 24) % 3 == 0 ? 0 : 5; /* some leases run out at once */
        for (int i = 0; i < 2; i++)
            g[i] = fixture_receive(both[i], "q", now, max, vt);
        if (strcmp(got_bodies(&g[0]), got_bodies(&g[1])) != 0)
            fail_msg("step %d: one took '%s', the other (restarted) '%s'", step, got_bodies(&g[0]),
                     got_bodies(&g[1]));
        for (size_t m = 0; m < g[0].n; m++) /* delete about half of them */
            if ((rng >> (m % 16)) & 1)
                for (int i = 0; i < 2; i++)
                    ok(apply1(both[i], cmd_delete("q", now, g[i].handles[m])));
        if (step % 7 == 3)
            fixture_reopen(b);
        now += 1000 + (rng % 5000);
    }
}

static void test_the_groups_turns_survive_a_restart(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, cmd_create("q", -1)));
    send_n(f, "q", T0, "a", 5);
    send_n(f, "q", T0, "b", 5);
    send_n(f, "q", T0, "c", 5);
    const char *want[6] = {"a", "b", "c", "a", "b", "c"};
    for (int i = 0; i < 6; i++) {
        if (i % 2 == 0)
            fixture_reopen(f);
        got_t g = fixture_receive(f, "q", T0 + 1 + i, 1, -1);
        assert_int_equal(g.n, 1);
        if (strcmp(g.groups[0], want[i]) != 0)
            fail_msg("receive %d: expected group %s, got %s", i, want[i], g.groups[0]);
    }
}

static void test_a_restart_takes_the_same_messages_as_no_restart(void **state)
{
    fixture_t *a = *state, *b = NULL;
    assert_int_equal(fixture_setup((void **)&b), 0);
    run_twins(a, b);
    void *s = b;
    fixture_teardown(&s);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, fixture_setup, fixture_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_a_receive_gives_no_group_more_than_its_share),
        T(test_groups_that_run_short_leave_the_rest_to_the_others),
        T(test_a_quiet_tenant_is_not_delayed_behind_a_noisy_one),
        T(test_many_groups_are_served_in_turn),
        T(test_messages_without_a_group_are_a_group_of_their_own),
        T(test_a_group_is_not_locked_while_a_message_is_in_flight),
        T(test_a_queue_without_groups_has_no_fair_state),
        T(test_a_delete_of_a_groups_last_message_forgets_the_group),
        T(test_a_delayed_grouped_message_waits_for_its_delay),
        T(test_a_dead_letter_move_keeps_the_group),
        T(test_a_purge_forgets_the_groups),
        T(test_the_groups_turns_survive_a_restart),
        T(test_a_restart_takes_the_same_messages_as_no_restart),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
