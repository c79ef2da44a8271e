/*
 * test_raft_replication.c - log replication (thesis 3.5): the no-op of a new leader, the
 * commit rule of Figure 8 (3.6.2), fast back-off on a conflicting log, truncation of an
 * uncommitted suffix, the durability of the leader's own log, and proposals off-leader.
 */
#include "raft_harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

static kyu_raft_t *node_with_log(uint64_t id, uint64_t term, uint64_t vote, const uint64_t *terms,
                                 size_t n)
{
    static kyu_raft_entry_t ents[64];
    kyu_raft_conf_t conf = {.n_voters = 3, .voters = {1, 2, 3}};
    for (size_t i = 0; i < n; i++)
        ents[i] = (kyu_raft_entry_t){.term = terms[i], .index = i + 1};
    kyu_raft_config_t cfg = {.group = 1,
                             .election_ticks = H_ELECTION,
                             .heartbeat_ticks = H_HEARTBEAT,
                             .hard_state = {.term = term, .vote = vote},
                             .conf = &conf,
                             .entries = ents,
                             .n_entries = n};
    return harness_node_new(id, &cfg);
}

/* Makes r (a follower) leader by feeding it the votes it asks for. */
static void win_election(kyu_raft_t *r)
{
    for (int i = 0; i < 2 * H_ELECTION && kyu_raft_role(r) == KYU_RAFT_FOLLOWER; i++)
        kyu_raft_tick(r);
    assert_int_equal(kyu_raft_role(r), KYU_RAFT_PRE_CANDIDATE);
    kyu_raft_msg_t pre = {.type = KYU_RAFT_MSG_PRE_VOTE_RESP,
                          .group = 1,
                          .from = 2,
                          .to = 1,
                          .term = kyu_raft_term(r) + 1};
    harness_drain_one(r, KYU_RAFT_MSG_PRE_VOTE, NULL, NULL);
    kyu_raft_step(r, &pre);
    assert_int_equal(kyu_raft_role(r), KYU_RAFT_CANDIDATE);
    harness_drain_one(r, KYU_RAFT_MSG_VOTE, NULL, NULL);
    kyu_raft_msg_t vote = {
        .type = KYU_RAFT_MSG_VOTE_RESP, .group = 1, .from = 2, .to = 1, .term = kyu_raft_term(r)};
    kyu_raft_step(r, &vote);
    assert_int_equal(kyu_raft_role(r), KYU_RAFT_LEADER);
    harness_drain_one(r, KYU_RAFT_MSG_APPEND, NULL, NULL); /* no-op persisted: self-ack */
}

static kyu_raft_msg_t append_ack(uint64_t from, uint64_t term, uint64_t index)
{
    kyu_raft_msg_t m = {.type = KYU_RAFT_MSG_APPEND_RESP,
                        .group = 1,
                        .from = from,
                        .to = 1,
                        .term = term,
                        .index = index};
    return m;
}

static void test_new_leader_appends_a_noop(void **state)
{
    (void)state;
    harness_t *h = harness_new(3, 3, 0);
    harness_elect(h, 1);
    uint64_t last = kyu_raft_last_index(h->nodes[1]);
    const kyu_raft_entry_t *e = kyu_raft_entry_at(h->nodes[1], last);
    assert_int_equal(e->type, KYU_RAFT_ENTRY_NOOP);
    assert_int_equal(e->term, kyu_raft_term(h->nodes[1]));
    harness_destroy(&h);
}

/* Figure 8: an entry of an earlier term stored on a majority is NOT committed by counting;
 * it commits once an entry of the leader's own term is stored on a majority. */
static void test_commit_rule_figure8_old_term_entry_not_committed_by_count(void **state)
{
    (void)state;
    uint64_t terms[] = {1, 2}; /* index 2 is from term 2, never committed */
    kyu_raft_t *r = node_with_log(1, 3, 0, terms, 2);
    win_election(r); /* term 4, no-op at index 3 */
    uint64_t term = kyu_raft_term(r);
    assert_int_equal(kyu_raft_last_index(r), 3);
    kyu_raft_msg_t ack2 = append_ack(2, term, 2);
    kyu_raft_step(r, &ack2);
    /* Leader and node 2 both store index 2: a majority, but of term 2. */
    assert_int_equal(kyu_raft_commit(r), 0);
    kyu_raft_msg_t ack3 = append_ack(2, term, 3);
    kyu_raft_step(r, &ack3);
    assert_int_equal(kyu_raft_commit(r), 3);
    kyu_raft_destroy(&r);
}

static void test_leader_counts_its_own_entry_only_once_durable(void **state)
{
    (void)state;
    uint64_t terms[] = {1};
    kyu_raft_t *r = node_with_log(1, 1, 0, terms, 1);
    win_election(r);
    uint64_t term = kyu_raft_term(r);
    uint64_t index, leader;
    assert_int_equal(kyu_raft_propose(r, "x", 1, &index, &leader), KYU_RAFT_OK);
    kyu_raft_ready_t rd;
    kyu_raft_ready(r, &rd); /* the write of index is in flight */
    /* One follower has it: with the leader's copy not yet durable that is not a majority
     * of three... */
    kyu_raft_msg_t ack = append_ack(2, term, index);
    kyu_raft_step(r, &ack);
    assert_int_equal(kyu_raft_commit(r), index - 1);
    /* ...until the leader's own write is durable. */
    kyu_raft_advance(r);
    assert_int_equal(kyu_raft_commit(r), index);
    harness_drain_one(r, KYU_RAFT_MSG_APPEND, NULL, NULL);
    kyu_raft_destroy(&r);
}

static void test_fast_backoff_skips_a_conflicting_term_in_one_round_trip(void **state)
{
    (void)state;
    harness_t *h = harness_new(3, 3, 0);
    harness_elect(h, 1);
    /* The leader, cut off, appends 30 entries nobody else gets. */
    harness_isolate(h, 1, true);
    for (int i = 0; i < 30; i++)
        assert_true(harness_propose(h, 1, "lost") > 0);
    harness_stabilize(h);
    /* Nodes 2 and 3 elect a new leader, which appends its own entries. */
    uint64_t lead = 0;
    for (int i = 0; i < 4 * H_ELECTION && !lead; i++) {
        harness_tick(h, 2, 1);
        harness_tick(h, 3, 1);
        harness_stabilize(h);
        for (uint64_t id = 2; id <= 3; id++)
            if (kyu_raft_role(h->nodes[id]) == KYU_RAFT_LEADER)
                lead = id;
    }
    assert_true(lead != 0);
    harness_propose(h, lead, "new");
    harness_stabilize(h);
    /* Node 1 comes back with 30 conflicting entries of its old term. */
    harness_isolate(h, 1, false);
    h->rejects_seen = 0;
    harness_tick(h, lead, H_HEARTBEAT);
    harness_stabilize(h);
    assert_int_equal(kyu_raft_last_index(h->nodes[1]), kyu_raft_last_index(h->nodes[lead]));
    assert_int_equal(kyu_raft_commit(h->nodes[1]), kyu_raft_commit(h->nodes[lead]));
    /* One rejection skips the whole conflicting term (without the hint: about 30). */
    assert_true(h->rejects_seen <= 2);
    harness_destroy(&h);
}

/* A follower restarted from an empty data directory answers the leader's probe at its old
 * match with "I have nothing": the leader starts over from index 1 instead of waiting
 * forever for entries the follower can no longer acknowledge. */
static void test_leader_starts_over_with_a_follower_that_lost_its_log(void **state)
{
    (void)state;
    harness_t *h = harness_new(3, 3, 0);
    harness_elect(h, 1);
    for (int i = 0; i < 6; i++)
        assert_true(harness_propose(h, 1, "kept") > 0);
    harness_stabilize(h);
    uint64_t last = kyu_raft_last_index(h->nodes[1]);
    assert_int_equal(kyu_raft_last_index(h->nodes[3]), last);
    /* Node 3 loses its disk and starts empty (term 0, no entries), with the same members. */
    kyu_raft_destroy(&h->nodes[3]);
    kyu_raft_conf_t conf = {.n_voters = 3, .voters = {1, 2, 3}};
    kyu_raft_config_t cfg = {.group = 1,
                             .election_ticks = H_ELECTION,
                             .heartbeat_ticks = H_HEARTBEAT,
                             .max_inflight = 4,
                             .max_msg_entries = 8,
                             .conf = &conf};
    h->nodes[3] = harness_node_new(3, &cfg);
    h->applied[3] = 0;
    assert_non_null(h->nodes[3]);
    assert_true(harness_propose(h, 1, "after") > 0);
    for (int i = 0; i < 4 && kyu_raft_last_index(h->nodes[3]) <= last; i++) {
        harness_tick(h, 1, H_HEARTBEAT);
        harness_stabilize(h);
    }
    assert_int_equal(kyu_raft_last_index(h->nodes[3]), kyu_raft_last_index(h->nodes[1]));
    assert_int_equal(kyu_raft_commit(h->nodes[3]), kyu_raft_commit(h->nodes[1]));
    assert_int_equal(kyu_raft_term_at(h->nodes[3], 1), kyu_raft_term_at(h->nodes[1], 1));
    harness_destroy(&h);
}

/* The same loss while no client writes (issue 11, 3a): nothing is proposed after node 3
 * restarts empty, so only the leader's heartbeats and their answers can tell the leader that
 * node 3 no longer holds what it acknowledged. The heartbeat answer carries the follower's
 * last index; the leader starts over from there and node 3 catches up by heartbeats alone. */
static void test_heartbeats_alone_bring_back_a_follower_that_lost_its_log(void **state)
{
    (void)state;
    harness_t *h = harness_new(3, 3, 0);
    harness_elect(h, 1);
    for (int i = 0; i < 6; i++)
        assert_true(harness_propose(h, 1, "kept") > 0);
    harness_stabilize(h);
    harness_tick(h, 1, H_HEARTBEAT); /* followers learn the final commit index */
    harness_stabilize(h);
    uint64_t last = kyu_raft_last_index(h->nodes[1]);
    assert_int_equal(h->applied[3], last);
    kyu_raft_destroy(&h->nodes[3]);
    kyu_raft_conf_t conf = {.n_voters = 3, .voters = {1, 2, 3}};
    kyu_raft_config_t cfg = {
        .group = 1, .election_ticks = H_ELECTION, .heartbeat_ticks = H_HEARTBEAT, .conf = &conf};
    h->nodes[3] = harness_node_new(3, &cfg);
    assert_non_null(h->nodes[3]);
    h->applied[3] = 0;
    for (int i = 0; i < 5 && h->applied[3] < last; i++) {
        harness_tick(h, 1, H_HEARTBEAT);
        harness_stabilize(h);
    }
    assert_int_equal(kyu_raft_last_index(h->nodes[1]), last); /* no entry was proposed */
    assert_int_equal(kyu_raft_last_index(h->nodes[3]), last);
    assert_int_equal(kyu_raft_commit(h->nodes[3]), kyu_raft_commit(h->nodes[1]));
    assert_int_equal(h->applied[3], last);
    assert_int_equal(kyu_raft_match_of(h->nodes[1], 3), last);
    harness_destroy(&h);
}

static void test_follower_truncates_uncommitted_conflicting_suffix(void **state)
{
    (void)state;
    uint64_t terms[] = {1, 1, 2, 2};
    kyu_raft_t *r = node_with_log(1, 2, 0, terms, 4);
    /* A leader of term 3 whose log has index 3 from term 3. */
    kyu_raft_entry_t e = {.term = 3, .index = 3, .type = KYU_RAFT_ENTRY_NORMAL};
    kyu_raft_msg_t m = {.type = KYU_RAFT_MSG_APPEND,
                        .group = 1,
                        .from = 2,
                        .to = 1,
                        .term = 3,
                        .index = 2,
                        .log_term = 1,
                        .entries = &e,
                        .n_entries = 1};
    kyu_raft_step(r, &m);
    assert_int_equal(kyu_raft_last_index(r), 3);
    assert_int_equal(kyu_raft_term_at(r, 3), 3);
    kyu_raft_ready_t seen;
    kyu_raft_msg_t resp;
    assert_int_equal(harness_drain_one(r, KYU_RAFT_MSG_APPEND_RESP, &resp, &seen), 1);
    assert_false(resp.reject);
    assert_int_equal(resp.index, 3);
    assert_true(resp.after_persist);
    kyu_raft_destroy(&r);
}

static void test_follower_rejects_append_with_hint(void **state)
{
    (void)state;
    uint64_t terms[] = {1, 1, 2, 2, 2};
    kyu_raft_t *r = node_with_log(1, 2, 0, terms, 5);
    kyu_raft_msg_t m = {.type = KYU_RAFT_MSG_APPEND,
                        .group = 1,
                        .from = 2,
                        .to = 1,
                        .term = 4,
                        .index = 7,
                        .log_term = 3};
    kyu_raft_step(r, &m);
    kyu_raft_msg_t resp;
    assert_int_equal(harness_drain_one(r, KYU_RAFT_MSG_APPEND_RESP, &resp, NULL), 1);
    assert_true(resp.reject);
    /* Our last entry (5, term 2) is the largest with a term <= 3: the leader can skip
     * straight there. */
    assert_int_equal(resp.reject_hint, 5);
    assert_int_equal(resp.log_term, 2);
    kyu_raft_destroy(&r);
}

/* A leader elected alone (one voter) in this very Ready must not show itself before its
 * term is durable: crashing first, it could win the same term again with other entries. */
static void test_leader_messages_wait_until_its_term_is_durable(void **state)
{
    (void)state;
    kyu_raft_conf_t conf = {.n_voters = 1, .voters = {1}, .n_learners = 1, .learners = {2}};
    kyu_raft_config_t cfg = {
        .group = 1, .election_ticks = H_ELECTION, .heartbeat_ticks = H_HEARTBEAT, .conf = &conf};
    kyu_raft_t *r = harness_node_new(1, &cfg);
    for (int i = 0; i < 2 * H_ELECTION && kyu_raft_role(r) != KYU_RAFT_LEADER; i++)
        kyu_raft_tick(r);
    assert_int_equal(kyu_raft_role(r), KYU_RAFT_LEADER);
    kyu_raft_ready_t rd;
    kyu_raft_ready(r, &rd);
    assert_true(rd.hard_state_changed);
    assert_int_equal(rd.hard_state.term, 1);
    assert_true(rd.n_msgs > 0);
    for (size_t i = 0; i < rd.n_msgs; i++)
        assert_true(rd.msgs[i].after_persist);
    kyu_raft_advance(r);
    /* The learner acknowledges; once the term is durable, appends may leave before the
     * leader's own fsync. */
    kyu_raft_msg_t ack = {.type = KYU_RAFT_MSG_APPEND_RESP,
                          .group = 1,
                          .from = 2,
                          .to = 1,
                          .term = 1,
                          .index = kyu_raft_last_index(r)};
    kyu_raft_step(r, &ack);
    harness_drain_one(r, KYU_RAFT_MSG_APPEND, NULL, NULL);
    uint64_t index, leader;
    assert_int_equal(kyu_raft_propose(r, "x", 1, &index, &leader), KYU_RAFT_OK);
    kyu_raft_ready(r, &rd);
    assert_true(rd.n_msgs > 0);
    for (size_t i = 0; i < rd.n_msgs; i++)
        assert_false(rd.msgs[i].after_persist);
    kyu_raft_advance(r);
    kyu_raft_destroy(&r);
}

static void test_proposal_to_follower_names_the_leader(void **state)
{
    (void)state;
    harness_t *h = harness_new(3, 3, 0);
    harness_elect(h, 1);
    uint64_t index, leader;
    assert_int_equal(kyu_raft_propose(h->nodes[2], "x", 1, &index, &leader),
                     KYU_RAFT_ERR_NOT_LEADER);
    assert_int_equal(leader, 1);
    harness_destroy(&h);
}

static void test_committed_entries_are_applied_everywhere_in_order(void **state)
{
    (void)state;
    harness_t *h = harness_new(5, 5, 0);
    harness_elect(h, 1);
    uint64_t last = 0;
    for (int i = 0; i < 50; i++)
        last = harness_propose(h, 1, "entry");
    harness_stabilize(h);
    harness_tick(h, 1, H_HEARTBEAT);
    harness_stabilize(h);
    for (int i = 1; i <= 5; i++)
        assert_int_equal(h->applied[i], last);
    harness_destroy(&h);
}

/* A commit costs no message of its own: one append per follower carries an entry, and the
 * followers learn that it committed from the next append or at the leader's next tick, not
 * from an empty append sent (and answered) for every commit. */
static void test_followers_learn_a_commit_without_an_append_of_its_own(void **state)
{
    (void)state;
    harness_t *h = harness_new(3, 3, 0);
    harness_elect(h, 1);
    harness_tick(h, 1, 1);
    harness_stabilize(h);
    h->msgs_seen[KYU_RAFT_MSG_APPEND] = 0;
    uint64_t first = harness_propose(h, 1, "one");
    harness_stabilize(h);
    assert_int_equal(kyu_raft_commit(h->nodes[1]), first);
    assert_int_equal(h->msgs_seen[KYU_RAFT_MSG_APPEND], 2);
    /* The next proposal's append carries the commit of the first. */
    uint64_t second = harness_propose(h, 1, "two");
    harness_stabilize(h);
    assert_int_equal(h->msgs_seen[KYU_RAFT_MSG_APPEND], 4);
    assert_true(kyu_raft_commit(h->nodes[2]) >= first);
    assert_true(kyu_raft_commit(h->nodes[3]) >= first);
    /* With no proposal after it, the leader's next tick tells the followers (an append, or
     * the heartbeat when one is due). */
    harness_tick(h, 1, 1);
    harness_stabilize(h);
    assert_int_equal(kyu_raft_commit(h->nodes[2]), second);
    assert_int_equal(kyu_raft_commit(h->nodes[3]), second);
    /* Told once: the ticks after send no append. */
    size_t appends = h->msgs_seen[KYU_RAFT_MSG_APPEND];
    harness_tick(h, 1, 1);
    harness_stabilize(h);
    assert_int_equal(h->msgs_seen[KYU_RAFT_MSG_APPEND], appends);
    harness_destroy(&h);
}

/* A commit heard while a Ready's write is out hands out at once the entries that were
 * durable here before that write, and never one of the write itself: it comes in the next
 * Ready, after the write. */
static void test_commit_heard_during_a_write_hands_out_only_durable_entries(void **state)
{
    (void)state;
    kyu_raft_t *r = node_with_log(1, 1, 0, NULL, 0);
    win_election(r);
    uint64_t term = kyu_raft_term(r);
    kyu_raft_msg_t ack = append_ack(2, term, 1);
    kyu_raft_step(r, &ack); /* the no-op commits */
    harness_drain_one(r, KYU_RAFT_MSG_APPEND, NULL, NULL);
    kyu_raft_entry_t *ents;
    size_t n;
    assert_false(kyu_raft_take_committed(r, &ents, &n)); /* no Ready out */
    uint64_t x, y, lead;
    assert_int_equal(kyu_raft_propose(r, "x", 1, &x, &lead), KYU_RAFT_OK);
    kyu_raft_ready_t rd;
    kyu_raft_ready(r, &rd);
    kyu_raft_advance(r); /* x durable here */
    assert_int_equal(kyu_raft_propose(r, "y", 1, &y, &lead), KYU_RAFT_OK);
    kyu_raft_ready(r, &rd); /* y's write is out */
    assert_int_equal(rd.n_entries, 1);
    assert_false(kyu_raft_take_committed(r, &ents, &n));
    ack = append_ack(2, term, y);
    kyu_raft_step(r, &ack); /* x (and y) on node 2: x commits */
    assert_int_equal(kyu_raft_commit(r), x);
    assert_true(kyu_raft_take_committed(r, &ents, &n));
    assert_int_equal(n, 1);
    assert_int_equal(ents[0].index, x);
    assert_memory_equal(ents[0].data, "x", 1);
    kyu_raft_entries_free(ents, n);
    assert_false(kyu_raft_take_committed(r, &ents, &n)); /* handed out once */
    ack = append_ack(3, term, y);
    kyu_raft_step(r, &ack); /* y is on nodes 2 and 3: committed, but not durable here yet */
    assert_int_equal(kyu_raft_commit(r), y);
    assert_false(kyu_raft_take_committed(r, &ents, &n));
    kyu_raft_advance(r);
    assert_true(kyu_raft_has_ready(r));
    kyu_raft_ready(r, &rd);
    assert_int_equal(rd.n_committed, 1);
    assert_int_equal(rd.committed[0].index, y);
    kyu_raft_advance(r);
    assert_int_equal(kyu_raft_applied(r), y);
    kyu_raft_destroy(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_leader_appends_a_noop),
        cmocka_unit_test(test_commit_rule_figure8_old_term_entry_not_committed_by_count),
        cmocka_unit_test(test_leader_counts_its_own_entry_only_once_durable),
        cmocka_unit_test(test_fast_backoff_skips_a_conflicting_term_in_one_round_trip),
        cmocka_unit_test(test_leader_starts_over_with_a_follower_that_lost_its_log),
        cmocka_unit_test(test_heartbeats_alone_bring_back_a_follower_that_lost_its_log),
        cmocka_unit_test(test_follower_truncates_uncommitted_conflicting_suffix),
        cmocka_unit_test(test_follower_rejects_append_with_hint),
        cmocka_unit_test(test_leader_messages_wait_until_its_term_is_durable),
        cmocka_unit_test(test_proposal_to_follower_names_the_leader),
        cmocka_unit_test(test_committed_entries_are_applied_everywhere_in_order),
        cmocka_unit_test(test_followers_learn_a_commit_without_an_append_of_its_own),
        cmocka_unit_test(test_commit_heard_during_a_write_hands_out_only_durable_entries),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
