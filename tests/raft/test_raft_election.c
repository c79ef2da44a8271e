/*
 * test_raft_election.c - elections: the vote rules (thesis 3.4, 3.6.1), durability of the
 * vote, stepping down on a higher term, pre-vote (9.6) and check-quorum (6.2).
 */
#include "raft_harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

static kyu_raft_t *node_with_log(uint64_t id, uint64_t term, const uint64_t *terms, size_t n)
{
    static kyu_raft_entry_t ents[16];
    kyu_raft_conf_t conf = {.n_voters = 3, .voters = {1, 2, 3}};
    for (size_t i = 0; i < n; i++)
        ents[i] = (kyu_raft_entry_t){.term = terms[i], .index = i + 1};
    kyu_raft_config_t cfg = {.group = 1,
                             .election_ticks = H_ELECTION,
                             .heartbeat_ticks = H_HEARTBEAT,
                             .hard_state = {.term = term},
                             .conf = &conf,
                             .entries = ents,
                             .n_entries = n};
    return harness_node_new(id, &cfg);
}

static kyu_raft_msg_t vote_req(uint64_t from, uint64_t term, uint64_t last, uint64_t last_term)
{
    kyu_raft_msg_t m = {.type = KYU_RAFT_MSG_VOTE,
                        .group = 1,
                        .from = from,
                        .to = 1,
                        .term = term,
                        .index = last,
                        .log_term = last_term};
    return m;
}

static void test_vote_refused_to_candidate_with_stale_log(void **state)
{
    (void)state;
    uint64_t terms[] = {1, 2};
    kyu_raft_t *r = node_with_log(1, 2, terms, 2);
    /* Longer log, but its last term (1) is older than ours (2). */
    kyu_raft_msg_t m = vote_req(2, 3, 5, 1);
    kyu_raft_step(r, &m);
    kyu_raft_msg_t resp;
    assert_int_equal(harness_drain_one(r, KYU_RAFT_MSG_VOTE_RESP, &resp, NULL), 1);
    assert_true(resp.reject);
    assert_int_equal(kyu_raft_vote(r), KYU_RAFT_NONE);
    kyu_raft_destroy(&r);
}

static void test_vote_granted_once_per_term(void **state)
{
    (void)state;
    uint64_t terms[] = {1};
    kyu_raft_t *r = node_with_log(1, 1, terms, 1);
    kyu_raft_msg_t a = vote_req(2, 2, 1, 1), b = vote_req(3, 2, 1, 1), resp;
    kyu_raft_step(r, &a);
    assert_int_equal(harness_drain_one(r, KYU_RAFT_MSG_VOTE_RESP, &resp, NULL), 1);
    assert_false(resp.reject);
    kyu_raft_step(r, &b);
    assert_int_equal(harness_drain_one(r, KYU_RAFT_MSG_VOTE_RESP, &resp, NULL), 1);
    assert_true(resp.reject);
    assert_int_equal(kyu_raft_vote(r), 2);
    kyu_raft_destroy(&r);
}

static void test_vote_is_durable_before_the_response_leaves(void **state)
{
    (void)state;
    uint64_t terms[] = {1};
    kyu_raft_t *r = node_with_log(1, 1, terms, 1);
    kyu_raft_msg_t m = vote_req(2, 2, 1, 1);
    kyu_raft_step(r, &m);
    kyu_raft_ready_t rd;
    kyu_raft_ready(r, &rd);
    /* The vote and the new term are in this Ready's hard state... */
    assert_true(rd.hard_state_changed);
    assert_int_equal(rd.hard_state.term, 2);
    assert_int_equal(rd.hard_state.vote, 2);
    /* ...and the grant may only leave once that write is durable. */
    assert_int_equal(rd.n_msgs, 1);
    assert_int_equal(rd.msgs[0].type, KYU_RAFT_MSG_VOTE_RESP);
    assert_true(rd.msgs[0].after_persist);
    kyu_raft_advance(r);
    kyu_raft_destroy(&r);
}

static void test_step_down_on_higher_term(void **state)
{
    (void)state;
    harness_t *h = harness_new(3, 3, 0);
    harness_elect(h, 1);
    assert_int_equal(kyu_raft_role(h->nodes[1]), KYU_RAFT_LEADER);
    uint64_t term = kyu_raft_term(h->nodes[1]);
    kyu_raft_msg_t m = {
        .type = KYU_RAFT_MSG_APPEND_RESP, .group = 1, .from = 2, .to = 1, .term = term + 5};
    kyu_raft_step(h->nodes[1], &m);
    assert_int_equal(kyu_raft_role(h->nodes[1]), KYU_RAFT_FOLLOWER);
    assert_int_equal(kyu_raft_term(h->nodes[1]), term + 5);
    assert_int_equal(kyu_raft_vote(h->nodes[1]), KYU_RAFT_NONE);
    harness_destroy(&h);
}

static void test_election_elects_one_leader_with_majority(void **state)
{
    (void)state;
    harness_t *h = harness_new(3, 3, 0);
    harness_elect(h, 1);
    assert_int_equal(kyu_raft_role(h->nodes[1]), KYU_RAFT_LEADER);
    assert_int_equal(kyu_raft_leader(h->nodes[2]), 1);
    assert_int_equal(kyu_raft_leader(h->nodes[3]), 1);
    /* The new leader's no-op committed on the leader; the followers learn it at the
     * leader's next tick (no empty append per commit: raft_replicate.c, commit_moved). */
    assert_int_equal(kyu_raft_commit(h->nodes[1]), kyu_raft_last_index(h->nodes[1]));
    harness_tick(h, 1, 1);
    harness_stabilize(h);
    assert_int_equal(kyu_raft_commit(h->nodes[2]), kyu_raft_last_index(h->nodes[1]));
    assert_int_equal(kyu_raft_commit(h->nodes[3]), kyu_raft_last_index(h->nodes[1]));
    harness_destroy(&h);
}

static void test_pre_vote_does_not_disturb_a_healthy_leader(void **state)
{
    (void)state;
    harness_t *h = harness_new(3, 3, 0);
    harness_elect(h, 1);
    uint64_t term = kyu_raft_term(h->nodes[1]);
    /* Node 3 is cut off long enough to time out many times. */
    harness_isolate(h, 3, true);
    for (int i = 0; i < 10 * H_ELECTION; i++) {
        harness_tick(h, 3, 1);
        harness_stabilize(h);
    }
    /* Pre-vote kept its term: it never won a pre-vote. */
    assert_int_equal(kyu_raft_term(h->nodes[3]), term);
    harness_isolate(h, 3, false);
    harness_tick(h, 3, 2 * H_ELECTION); /* it pre-campaigns again, now reachable */
    harness_stabilize(h);
    assert_int_equal(kyu_raft_role(h->nodes[1]), KYU_RAFT_LEADER);
    assert_int_equal(kyu_raft_term(h->nodes[1]), term);
    harness_destroy(&h);
}

static void test_check_quorum_leader_steps_down_without_majority(void **state)
{
    (void)state;
    harness_t *h = harness_new(3, 3, 0);
    harness_elect(h, 1);
    harness_isolate(h, 1, true);
    for (int i = 0; i < 2 * H_ELECTION; i++) {
        harness_tick(h, 1, 1);
        harness_stabilize(h);
    }
    assert_int_equal(kyu_raft_role(h->nodes[1]), KYU_RAFT_FOLLOWER);
    harness_destroy(&h);
}

static void test_check_quorum_leader_stays_with_majority(void **state)
{
    (void)state;
    harness_t *h = harness_new(3, 3, 0);
    harness_elect(h, 1);
    harness_isolate(h, 3, true);
    for (int i = 0; i < 3 * H_ELECTION; i++) {
        harness_tick(h, 1, 1);
        harness_stabilize(h);
    }
    assert_int_equal(kyu_raft_role(h->nodes[1]), KYU_RAFT_LEADER);
    harness_destroy(&h);
}

static void test_learner_never_campaigns(void **state)
{
    (void)state;
    harness_t *h = harness_new(3, 2, 0); /* node 3 is outside the configuration */
    harness_tick(h, 3, 10 * H_ELECTION);
    harness_stabilize(h);
    assert_int_equal(kyu_raft_role(h->nodes[3]), KYU_RAFT_FOLLOWER);
    assert_int_equal(kyu_raft_term(h->nodes[3]), 0);
    harness_destroy(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vote_refused_to_candidate_with_stale_log),
        cmocka_unit_test(test_vote_granted_once_per_term),
        cmocka_unit_test(test_vote_is_durable_before_the_response_leaves),
        cmocka_unit_test(test_step_down_on_higher_term),
        cmocka_unit_test(test_election_elects_one_leader_with_majority),
        cmocka_unit_test(test_pre_vote_does_not_disturb_a_healthy_leader),
        cmocka_unit_test(test_check_quorum_leader_steps_down_without_majority),
        cmocka_unit_test(test_check_quorum_leader_stays_with_majority),
        cmocka_unit_test(test_learner_never_campaigns),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
