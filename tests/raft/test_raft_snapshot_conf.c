/*
 * test_raft_snapshot_conf.c - log compaction and InstallSnapshot in chunks (thesis 5),
 * single-server membership changes (4.1-4.2) and leadership transfer (3.10).
 */
#include "raft_harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

static void test_snapshot_install_in_chunks_brings_a_lagging_follower_back(void **state)
{
    (void)state;
    harness_t *h = harness_new(3, 3, 7); /* 7-byte chunks */
    harness_elect(h, 1);
    harness_isolate(h, 3, true);
    uint64_t last = 0;
    for (int i = 0; i < 20; i++)
        last = harness_propose(h, 1, "entry");
    harness_stabilize(h);
    const char snap[] = "the state machine at index N, 40 bytes!";
    assert_int_equal(kyu_raft_compact(h->nodes[1], last, snap, sizeof(snap)), KYU_RAFT_OK);
    assert_int_equal(kyu_raft_first_index(h->nodes[1]), last + 1);
    harness_isolate(h, 3, false);
    h->msgs_seen[KYU_RAFT_MSG_SNAPSHOT] = 0;
    harness_tick(h, 1, H_HEARTBEAT);
    harness_stabilize(h);
    /* 40 bytes in 7-byte chunks: 6 chunks, one at a time. */
    assert_int_equal(h->msgs_seen[KYU_RAFT_MSG_SNAPSHOT], 6);
    assert_int_equal(h->snap_installed[3], last);
    assert_int_equal(kyu_raft_first_index(h->nodes[3]), last + 1);
    assert_int_equal(kyu_raft_applied(h->nodes[3]), last);
    const kyu_raft_snapshot_t *s = kyu_raft_snapshot(h->nodes[3]);
    assert_int_equal(s->len, sizeof(snap));
    assert_memory_equal(s->data, snap, sizeof(snap));
    /* Replication resumes after the snapshot. */
    uint64_t next = harness_propose(h, 1, "after");
    harness_stabilize(h);
    harness_tick(h, 1, H_HEARTBEAT);
    harness_stabilize(h);
    assert_int_equal(h->applied[3], next);
    harness_destroy(&h);
}

/* A follower that lost its disk after the leader compacted its log gets the snapshot from
 * heartbeats alone, with no client write to trigger an append (issue 11, 3a). */
static void test_heartbeats_alone_send_the_snapshot_to_a_follower_that_lost_its_log(void **state)
{
    (void)state;
    harness_t *h = harness_new(3, 3, 7);
    harness_elect(h, 1);
    uint64_t last = 0;
    for (int i = 0; i < 20; i++)
        last = harness_propose(h, 1, "entry");
    harness_stabilize(h);
    harness_tick(h, 1, H_HEARTBEAT);
    harness_stabilize(h);
    assert_int_equal(h->applied[3], last);
    const char snap[] = "the state machine at index N, 40 bytes!";
    assert_int_equal(kyu_raft_compact(h->nodes[1], last, snap, sizeof(snap)), KYU_RAFT_OK);
    kyu_raft_destroy(&h->nodes[3]);
    kyu_raft_conf_t conf = {.n_voters = 3, .voters = {1, 2, 3}};
    kyu_raft_config_t cfg = {.group = 1,
                             .election_ticks = H_ELECTION,
                             .heartbeat_ticks = H_HEARTBEAT,
                             .snapshot_chunk = 7,
                             .conf = &conf};
    h->nodes[3] = harness_node_new(3, &cfg);
    assert_non_null(h->nodes[3]);
    h->applied[3] = 0;
    for (int i = 0; i < 5 && h->applied[3] < last; i++) {
        harness_tick(h, 1, H_HEARTBEAT);
        harness_stabilize(h);
    }
    assert_int_equal(kyu_raft_last_index(h->nodes[1]), last); /* no entry was proposed */
    assert_int_equal(h->snap_installed[3], last);
    assert_int_equal(kyu_raft_applied(h->nodes[3]), last);
    assert_int_equal(h->applied[3], last);
    harness_destroy(&h);
}

static void test_compact_refuses_beyond_applied(void **state)
{
    (void)state;
    harness_t *h = harness_new(3, 3, 0);
    harness_elect(h, 1);
    uint64_t last = kyu_raft_last_index(h->nodes[1]);
    assert_int_equal(kyu_raft_compact(h->nodes[1], last + 5, "x", 1), KYU_RAFT_ERR_INVALID);
    harness_destroy(&h);
}

static void test_membership_learner_catches_up_then_is_promoted(void **state)
{
    (void)state;
    harness_t *h = harness_new(3, 2, 0); /* voters 1, 2; node 3 outside */
    harness_elect(h, 1);
    for (int i = 0; i < 10; i++)
        harness_propose(h, 1, "entry");
    harness_stabilize(h);
    uint64_t index, leader;
    assert_int_equal(
        kyu_raft_propose_conf_change(h->nodes[1], KYU_RAFT_CC_ADD_LEARNER, 3, &index, &leader),
        KYU_RAFT_OK);
    harness_stabilize(h);
    harness_tick(h, 1, H_HEARTBEAT);
    harness_stabilize(h);
    assert_true(kyu_raft_conf_is_learner(kyu_raft_conf(h->nodes[3]), 3));
    assert_int_equal(kyu_raft_last_index(h->nodes[3]), kyu_raft_last_index(h->nodes[1]));
    assert_int_equal(kyu_raft_conf(h->nodes[1])->n_voters, 2);
    assert_int_equal(
        kyu_raft_propose_conf_change(h->nodes[1], KYU_RAFT_CC_ADD_VOTER, 3, &index, &leader),
        KYU_RAFT_OK);
    harness_stabilize(h);
    for (int i = 1; i <= 3; i++) {
        const kyu_raft_conf_t *c = kyu_raft_conf(h->nodes[i]);
        assert_int_equal(c->n_voters, 3);
        assert_int_equal(c->n_learners, 0);
    }
    harness_destroy(&h);
}

static void test_membership_one_change_at_a_time(void **state)
{
    (void)state;
    harness_t *h = harness_new(4, 3, 0);
    harness_elect(h, 1);
    harness_isolate(h, 2, true);
    harness_isolate(h, 3, true); /* the first change cannot commit */
    uint64_t index, leader;
    assert_int_equal(
        kyu_raft_propose_conf_change(h->nodes[1], KYU_RAFT_CC_ADD_LEARNER, 4, &index, &leader),
        KYU_RAFT_OK);
    assert_int_equal(
        kyu_raft_propose_conf_change(h->nodes[1], KYU_RAFT_CC_REMOVE, 2, &index, &leader),
        KYU_RAFT_ERR_BUSY);
    harness_destroy(&h);
}

static void test_membership_removed_voter_no_longer_counts(void **state)
{
    (void)state;
    harness_t *h = harness_new(3, 3, 0);
    harness_elect(h, 1);
    uint64_t index, leader;
    assert_int_equal(
        kyu_raft_propose_conf_change(h->nodes[1], KYU_RAFT_CC_REMOVE, 3, &index, &leader),
        KYU_RAFT_OK);
    harness_stabilize(h);
    assert_int_equal(kyu_raft_conf(h->nodes[1])->n_voters, 2);
    /* With node 3 gone for good, 1 and 2 still commit. */
    harness_isolate(h, 3, true);
    uint64_t next = harness_propose(h, 1, "x");
    harness_stabilize(h);
    assert_int_equal(kyu_raft_commit(h->nodes[1]), next);
    harness_destroy(&h);
}

static void test_membership_demoted_voter_learns_it_and_never_campaigns(void **state)
{
    (void)state;
    harness_t *h = harness_new(3, 3, 0);
    harness_elect(h, 1);
    uint64_t index, leader;
    assert_int_equal(
        kyu_raft_propose_conf_change(h->nodes[1], KYU_RAFT_CC_ADD_LEARNER, 3, &index, &leader),
        KYU_RAFT_OK);
    harness_stabilize(h);
    harness_tick(h, 1, H_HEARTBEAT);
    harness_stabilize(h);
    assert_true(kyu_raft_conf_is_learner(kyu_raft_conf(h->nodes[3]), 3));
    assert_int_equal(kyu_raft_conf(h->nodes[1])->n_voters, 2);
    /* Cut off from the others for many election timeouts, it stays a follower. */
    harness_isolate(h, 3, true);
    harness_tick(h, 3, 20 * H_ELECTION);
    harness_stabilize(h);
    assert_int_equal(kyu_raft_role(h->nodes[3]), KYU_RAFT_FOLLOWER);
    assert_int_equal(kyu_raft_term(h->nodes[3]), kyu_raft_term(h->nodes[1]));
    harness_destroy(&h);
}

static void test_membership_no_demotion_of_the_leader_or_the_last_voter(void **state)
{
    (void)state;
    harness_t *h = harness_new(2, 1, 0); /* voter 1, node 2 outside */
    harness_elect(h, 1);
    uint64_t index, leader;
    assert_int_equal(
        kyu_raft_propose_conf_change(h->nodes[1], KYU_RAFT_CC_ADD_LEARNER, 1, &index, &leader),
        KYU_RAFT_ERR_INVALID);
    harness_destroy(&h);
    h = harness_new(3, 3, 0);
    harness_elect(h, 1);
    assert_int_equal(
        kyu_raft_propose_conf_change(h->nodes[1], KYU_RAFT_CC_ADD_LEARNER, 1, &index, &leader),
        KYU_RAFT_ERR_INVALID);
    harness_destroy(&h);
}

static void test_membership_removed_leader_steps_down_once_committed(void **state)
{
    (void)state;
    harness_t *h = harness_new(3, 3, 0);
    harness_elect(h, 1);
    uint64_t index, leader;
    assert_int_equal(
        kyu_raft_propose_conf_change(h->nodes[1], KYU_RAFT_CC_REMOVE, 1, &index, &leader),
        KYU_RAFT_OK);
    harness_stabilize(h);
    assert_true(kyu_raft_commit(h->nodes[1]) >= index);
    assert_int_equal(kyu_raft_role(h->nodes[1]), KYU_RAFT_FOLLOWER);
    harness_destroy(&h);
}

static void test_transfer_hands_leadership_to_target(void **state)
{
    (void)state;
    harness_t *h = harness_new(3, 3, 0);
    harness_elect(h, 1);
    uint64_t term = kyu_raft_term(h->nodes[1]);
    assert_int_equal(kyu_raft_transfer_leader(h->nodes[1], 3), KYU_RAFT_OK);
    harness_stabilize(h);
    assert_int_equal(kyu_raft_role(h->nodes[3]), KYU_RAFT_LEADER);
    assert_int_equal(kyu_raft_term(h->nodes[3]), term + 1);
    assert_int_equal(kyu_raft_role(h->nodes[1]), KYU_RAFT_FOLLOWER);
    harness_destroy(&h);
}

static void test_transfer_waits_for_target_to_catch_up(void **state)
{
    (void)state;
    harness_t *h = harness_new(3, 3, 0);
    harness_elect(h, 1);
    harness_isolate(h, 3, true);
    for (int i = 0; i < 5; i++)
        harness_propose(h, 1, "x");
    harness_stabilize(h);
    assert_int_equal(kyu_raft_transfer_leader(h->nodes[1], 3), KYU_RAFT_OK);
    uint64_t index, leader;
    /* Proposals are held off while the transfer runs. */
    assert_int_equal(kyu_raft_propose(h->nodes[1], "y", 1, &index, &leader), KYU_RAFT_ERR_BUSY);
    harness_isolate(h, 3, false);
    harness_tick(h, 1, H_HEARTBEAT);
    harness_stabilize(h);
    assert_int_equal(kyu_raft_role(h->nodes[3]), KYU_RAFT_LEADER);
    assert_int_equal(kyu_raft_last_index(h->nodes[3]), kyu_raft_last_index(h->nodes[1]));
    harness_destroy(&h);
}

static void test_transfer_abandoned_after_election_timeout(void **state)
{
    (void)state;
    harness_t *h = harness_new(3, 3, 0);
    harness_elect(h, 1);
    harness_isolate(h, 3, true);
    harness_propose(h, 1, "x");
    harness_stabilize(h);
    assert_int_equal(kyu_raft_transfer_leader(h->nodes[1], 3), KYU_RAFT_OK);
    for (int i = 0; i < H_ELECTION; i++) {
        harness_tick(h, 1, 1);
        harness_stabilize(h);
    }
    uint64_t index, leader;
    assert_int_equal(kyu_raft_role(h->nodes[1]), KYU_RAFT_LEADER);
    assert_int_equal(kyu_raft_propose(h->nodes[1], "y", 1, &index, &leader), KYU_RAFT_OK);
    harness_destroy(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_snapshot_install_in_chunks_brings_a_lagging_follower_back),
        cmocka_unit_test(test_compact_refuses_beyond_applied),
        cmocka_unit_test(test_heartbeats_alone_send_the_snapshot_to_a_follower_that_lost_its_log),
        cmocka_unit_test(test_membership_learner_catches_up_then_is_promoted),
        cmocka_unit_test(test_membership_one_change_at_a_time),
        cmocka_unit_test(test_membership_removed_voter_no_longer_counts),
        cmocka_unit_test(test_membership_demoted_voter_learns_it_and_never_campaigns),
        cmocka_unit_test(test_membership_no_demotion_of_the_leader_or_the_last_voter),
        cmocka_unit_test(test_membership_removed_leader_steps_down_once_committed),
        cmocka_unit_test(test_transfer_hands_leadership_to_target),
        cmocka_unit_test(test_transfer_waits_for_target_to_catch_up),
        cmocka_unit_test(test_transfer_abandoned_after_election_timeout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
