/*
 * raft_progress.c - follower progress state machine and quorum math (see raft_progress.h).
 */
#include "raft_progress.h"
#include "raft_assert.h"

#include <string.h>

void kyu_raft_pr_init(kyu_raft_progress_t *pr, uint64_t id, bool learner, uint64_t next,
                      uint32_t infl_max)
{
    memset(pr, 0, sizeof(*pr));
    pr->id = id;
    pr->learner = learner;
    pr->next = next;
    pr->state = KYU_RAFT_PR_PROBE;
    pr->infl_max = infl_max < 1                       ? 1
                   : infl_max > KYU_RAFT_MAX_INFLIGHT ? KYU_RAFT_MAX_INFLIGHT
                                                      : infl_max;
}

static void reset_state(kyu_raft_progress_t *pr, kyu_raft_pr_state_t state)
{
    pr->state = state;
    pr->probe_sent = false;
    pr->infl_start = pr->infl_count = 0;
    pr->snap_index = pr->snap_offset = 0;
    pr->snap_idle = 0;
}

void kyu_raft_pr_become_probe(kyu_raft_progress_t *pr)
{
    /* Coming back from a snapshot, the follower has at least the snapshot. */
    if (pr->state == KYU_RAFT_PR_SNAPSHOT) {
        uint64_t snap = pr->snap_index;
        reset_state(pr, KYU_RAFT_PR_PROBE);
        pr->next = (pr->match + 1 > snap + 1) ? pr->match + 1 : snap + 1;
    } else {
        reset_state(pr, KYU_RAFT_PR_PROBE);
        pr->next = pr->match + 1;
    }
}

void kyu_raft_pr_become_replicate(kyu_raft_progress_t *pr)
{
    reset_state(pr, KYU_RAFT_PR_REPLICATE);
    pr->next = pr->match + 1;
}

void kyu_raft_pr_become_snapshot(kyu_raft_progress_t *pr, uint64_t snap_index)
{
    reset_state(pr, KYU_RAFT_PR_SNAPSHOT);
    pr->snap_index = snap_index;
}

bool kyu_raft_pr_maybe_update(kyu_raft_progress_t *pr, uint64_t index)
{
    bool updated = false;
    if (pr->match < index) {
        pr->match = index;
        updated = true;
        pr->probe_sent = false;
    }
    if (pr->next < index + 1)
        pr->next = index + 1;
    /* Free every in-flight append this acknowledgement covers. */
    while (pr->infl_count > 0 && pr->infl[pr->infl_start] <= index) {
        pr->infl_start = (pr->infl_start + 1) % KYU_RAFT_MAX_INFLIGHT;
        pr->infl_count--;
    }
    return updated;
}

bool kyu_raft_pr_maybe_decr_to(kyu_raft_progress_t *pr, uint64_t rejected, uint64_t hint)
{
    if (pr->state == KYU_RAFT_PR_REPLICATE) {
        /* Pipelined appends may be rejected out of order; only a rejection above match
         * means the follower lost entries (or the pipeline broke). */
        if (rejected <= pr->match)
            return false;
        pr->next = pr->match + 1;
        return true;
    }
    if (pr->next - 1 != rejected)
        return false; /* answer to an older probe */
    uint64_t next = hint + 1 < rejected ? hint + 1 : rejected;
    if (hint < pr->match) {
        /* The answer to our latest probe says the follower no longer holds entries it
         * acknowledged: its disk was lost or wiped (a node restarted from an empty data
         * directory). Start over from what it has; a snapshot follows if we compacted. */
        pr->match = hint;
    }
    pr->next = next < pr->match + 1 ? pr->match + 1 : next;
    if (pr->next < 1)
        pr->next = 1;
    pr->probe_sent = false;
    return true;
}

bool kyu_raft_pr_is_paused(const kyu_raft_progress_t *pr)
{
    switch (pr->state) {
    case KYU_RAFT_PR_PROBE:
        return pr->probe_sent;
    case KYU_RAFT_PR_REPLICATE:
        return pr->infl_count >= pr->infl_max;
    case KYU_RAFT_PR_SNAPSHOT:
        return true;
    }
    return true;
}

void kyu_raft_pr_sent(kyu_raft_progress_t *pr, uint64_t last, size_t n_entries)
{
    if (pr->state == KYU_RAFT_PR_REPLICATE) {
        if (n_entries > 0) {
            KYU_RAFT_ASSERT(pr->infl_count < KYU_RAFT_MAX_INFLIGHT);
            pr->infl[(pr->infl_start + pr->infl_count) % KYU_RAFT_MAX_INFLIGHT] = last;
            pr->infl_count++;
            pr->next = last + 1;
        }
    } else if (pr->state == KYU_RAFT_PR_PROBE) {
        pr->probe_sent = true;
    }
}

void kyu_raft_pr_free_first(kyu_raft_progress_t *pr)
{
    if (pr->infl_count > 0) {
        pr->infl_start = (pr->infl_start + 1) % KYU_RAFT_MAX_INFLIGHT;
        pr->infl_count--;
    }
}

static int cmp_desc(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

uint64_t kyu_raft_quorum_index(const uint64_t *vals, size_t n)
{
    KYU_RAFT_ASSERT(n > 0 && n <= KYU_RAFT_MAX_NODES);
    uint64_t s[KYU_RAFT_MAX_NODES];
    memcpy(s, vals, n * sizeof(*s));
    qsort(s, n, sizeof(*s), cmp_desc);
    return s[n / 2];
}

kyu_raft_vote_result_t kyu_raft_quorum_vote(size_t n_voters, size_t granted, size_t rejected)
{
    size_t q = n_voters / 2 + 1;
    if (granted >= q)
        return KYU_RAFT_VOTE_WON;
    if (n_voters - rejected < q)
        return KYU_RAFT_VOTE_LOST;
    return KYU_RAFT_VOTE_PENDING;
}
