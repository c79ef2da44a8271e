/*
 * test_raft_log.c - the pure pieces under the core: the log (matching, truncation, the
 * stable boundary, compaction, conflict search), quorum math and the conf-change codec.
 */
#include "raft_log.h"
#include "raft_progress.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

static void make(kyu_raft_log_t *log, const uint64_t *terms, size_t n)
{
    kyu_raft_entry_t ents[32];
    for (size_t i = 0; i < n; i++)
        ents[i] = (kyu_raft_entry_t){.term = terms[i], .index = i + 1};
    assert_true(kyu_raft_log_init(log, 0, 0, ents, n));
}

static void test_log_append_truncates_conflicting_suffix_and_lowers_stable(void **state)
{
    (void)state;
    kyu_raft_log_t log;
    uint64_t terms[] = {1, 1, 2, 2};
    make(&log, terms, 4);
    assert_int_equal(log.stable, 4);
    kyu_raft_entry_t e = {.term = 3, .index = 3};
    uint64_t new_last;
    bool nomem;
    assert_true(kyu_raft_log_maybe_append(&log, 2, 1, &e, 1, &new_last, &nomem));
    assert_int_equal(kyu_raft_log_last(&log), 3);
    assert_int_equal(log.stable, 2);
    kyu_raft_log_free(&log);
}

static void test_log_stale_append_does_not_truncate(void **state)
{
    (void)state;
    kyu_raft_log_t log;
    uint64_t terms[] = {1, 1, 1, 1};
    make(&log, terms, 4);
    kyu_raft_entry_t e = {.term = 1, .index = 2}; /* an old, shorter copy of the same log */
    uint64_t new_last;
    bool nomem;
    assert_true(kyu_raft_log_maybe_append(&log, 1, 1, &e, 1, &new_last, &nomem));
    assert_int_equal(kyu_raft_log_last(&log), 4);
    kyu_raft_log_free(&log);
}

static void test_log_find_conflict_by_term(void **state)
{
    (void)state;
    kyu_raft_log_t log;
    uint64_t terms[] = {1, 1, 3, 3, 5, 5};
    make(&log, terms, 6);
    assert_int_equal(kyu_raft_log_find_conflict_by_term(&log, 6, 4), 4);
    assert_int_equal(kyu_raft_log_find_conflict_by_term(&log, 6, 2), 2);
    assert_int_equal(kyu_raft_log_find_conflict_by_term(&log, 10, 9), 6);
    assert_int_equal(kyu_raft_log_find_conflict_by_term(&log, 6, 0), 0);
    kyu_raft_log_free(&log);
}

static void test_log_compact_keeps_boundary_term(void **state)
{
    (void)state;
    kyu_raft_log_t log;
    uint64_t terms[] = {1, 2, 2, 3};
    make(&log, terms, 4);
    log.commit = log.applied = log.handed_out = 3;
    kyu_raft_log_compact(&log, 3);
    uint64_t t;
    assert_true(kyu_raft_log_term(&log, 3, &t));
    assert_int_equal(t, 2);
    assert_false(kyu_raft_log_term(&log, 2, &t));
    assert_int_equal(kyu_raft_log_first(&log), 4);
    assert_int_equal(kyu_raft_log_last(&log), 4);
    kyu_raft_log_free(&log);
}

static void test_log_up_to_date_compares_last_term_then_length(void **state)
{
    (void)state;
    kyu_raft_log_t log;
    uint64_t terms[] = {1, 2, 2};
    make(&log, terms, 3);
    assert_true(kyu_raft_log_up_to_date(&log, 1, 3));
    assert_true(kyu_raft_log_up_to_date(&log, 3, 2));
    assert_false(kyu_raft_log_up_to_date(&log, 2, 2));
    assert_false(kyu_raft_log_up_to_date(&log, 9, 1));
    kyu_raft_log_free(&log);
}

static void test_quorum_index_is_majority_match(void **state)
{
    (void)state;
    uint64_t a[] = {5, 1, 3};
    assert_int_equal(kyu_raft_quorum_index(a, 3), 3);
    uint64_t b[] = {9, 9, 1, 1};
    assert_int_equal(kyu_raft_quorum_index(b, 4), 1);
    uint64_t c[] = {7, 6, 5, 4, 3};
    assert_int_equal(kyu_raft_quorum_index(c, 5), 5);
}

static void test_quorum_vote_outcomes(void **state)
{
    (void)state;
    assert_int_equal(kyu_raft_quorum_vote(3, 2, 0), KYU_RAFT_VOTE_WON);
    assert_int_equal(kyu_raft_quorum_vote(3, 1, 1), KYU_RAFT_VOTE_PENDING);
    assert_int_equal(kyu_raft_quorum_vote(3, 1, 2), KYU_RAFT_VOTE_LOST);
    assert_int_equal(kyu_raft_quorum_vote(4, 2, 2), KYU_RAFT_VOTE_LOST);
    assert_int_equal(kyu_raft_quorum_vote(1, 1, 0), KYU_RAFT_VOTE_WON);
}

static void test_conf_codec_round_trips_and_rejects_garbage(void **state)
{
    (void)state;
    kyu_raft_conf_t c = {.n_voters = 2, .voters = {4, 9}, .n_learners = 1, .learners = {7}};
    uint8_t buf[256];
    size_t n = kyu_raft_conf_encode(&c, buf, sizeof(buf));
    assert_int_equal(n, 8 + 3 * 8);
    kyu_raft_conf_t d;
    assert_true(kyu_raft_conf_decode(buf, n, &d));
    assert_int_equal(d.n_voters, 2);
    assert_int_equal(d.voters[1], 9);
    assert_int_equal(d.learners[0], 7);
    assert_false(kyu_raft_conf_decode(buf, n - 1, &d));
    buf[0] = 200;
    assert_false(kyu_raft_conf_decode(buf, n, &d));
}

static void test_progress_probe_backs_off_to_hint(void **state)
{
    (void)state;
    kyu_raft_progress_t pr;
    kyu_raft_pr_init(&pr, 2, false, 20, 4);
    kyu_raft_pr_sent(&pr, 19, 0);
    assert_true(kyu_raft_pr_is_paused(&pr));
    assert_false(kyu_raft_pr_maybe_decr_to(&pr, 10, 3)); /* stale rejection */
    assert_true(kyu_raft_pr_maybe_decr_to(&pr, 19, 5));
    assert_int_equal(pr.next, 6);
    assert_false(kyu_raft_pr_is_paused(&pr));
}

static void test_progress_pipeline_pauses_when_inflight_full(void **state)
{
    (void)state;
    kyu_raft_progress_t pr;
    kyu_raft_pr_init(&pr, 2, false, 1, 2);
    kyu_raft_pr_maybe_update(&pr, 0);
    kyu_raft_pr_become_replicate(&pr);
    kyu_raft_pr_sent(&pr, 3, 3);
    kyu_raft_pr_sent(&pr, 6, 3);
    assert_true(kyu_raft_pr_is_paused(&pr));
    assert_int_equal(pr.next, 7);
    kyu_raft_pr_maybe_update(&pr, 3);
    assert_false(kyu_raft_pr_is_paused(&pr));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_log_append_truncates_conflicting_suffix_and_lowers_stable),
        cmocka_unit_test(test_log_stale_append_does_not_truncate),
        cmocka_unit_test(test_log_find_conflict_by_term),
        cmocka_unit_test(test_log_compact_keeps_boundary_term),
        cmocka_unit_test(test_log_up_to_date_compares_last_term_then_length),
        cmocka_unit_test(test_quorum_index_is_majority_match),
        cmocka_unit_test(test_quorum_vote_outcomes),
        cmocka_unit_test(test_conf_codec_round_trips_and_rejects_garbage),
        cmocka_unit_test(test_progress_probe_backs_off_to_hint),
        cmocka_unit_test(test_progress_pipeline_pauses_when_inflight_full),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
