/*
 * raft_log.c - the in-memory Raft log with its stable/unstable boundary (see raft_log.h).
 */
#include "raft_log.h"
#include "raft_assert.h"

#include <stdatomic.h>
#include <stddef.h>
#include <string.h>

/* A shared block: the count of its holders, then the bytes. Entries' bytes are never
 * written once they are in an entry, so the log and the Readies it hands out hold one block
 * (a Ready used to copy each entry it handed out, twice for a leader's own: to persist and
 * to apply; the log may drop or replace an entry while a Ready holds it). Counted
 * atomically: the holders all live on the core's thread today, but a block outliving a
 * Ready on another thread stays safe. */
typedef struct {
    atomic_size_t holders;
    max_align_t data[]; /* the bytes */
} shared_t;

static shared_t *shared_of(const uint8_t *data)
{
    return (shared_t *)(void *)((char *)(uintptr_t)data - offsetof(shared_t, data));
}

void kyu_raft_entry_free(kyu_raft_entry_t *e)
{
    free(e->data);
    e->data = NULL;
    e->len = 0;
}

bool kyu_raft_entry_copy(kyu_raft_entry_t *dst, const kyu_raft_entry_t *src)
{
    *dst = *src;
    dst->data = NULL;
    if (src->len > 0) {
        dst->data = malloc(src->len);
        if (!dst->data)
            return false;
        memcpy(dst->data, src->data, src->len);
    }
    return true;
}

bool kyu_raft_entry_share_new(kyu_raft_entry_t *dst, const kyu_raft_entry_t *src)
{
    *dst = *src;
    dst->data = NULL;
    if (src->len == 0)
        return true;
    shared_t *b = malloc(sizeof *b + src->len);
    if (!b)
        return false;
    atomic_init(&b->holders, 1);
    memcpy(b->data, src->data, src->len);
    dst->data = (uint8_t *)b->data;
    return true;
}

void kyu_raft_entry_ref(kyu_raft_entry_t *dst, const kyu_raft_entry_t *src)
{
    *dst = *src;
    if (src->data)
        atomic_fetch_add_explicit(&shared_of(src->data)->holders, 1, memory_order_relaxed);
}

void kyu_raft_entry_release(kyu_raft_entry_t *e)
{
    if (e->data) {
        shared_t *b = shared_of(e->data);
        if (atomic_fetch_sub_explicit(&b->holders, 1, memory_order_acq_rel) == 1)
            free(b);
    }
    e->data = NULL;
    e->len = 0;
}

bool kyu_raft_log_init(kyu_raft_log_t *log, uint64_t snap_index, uint64_t snap_term,
                       const kyu_raft_entry_t *ents, size_t n)
{
    memset(log, 0, sizeof(*log));
    log->snap_index = snap_index;
    log->snap_term = snap_term;
    log->stable = snap_index;
    log->commit = log->applied = log->handed_out = snap_index;
    if (n > 0 && !kyu_raft_log_append(log, ents, n))
        return false;
    /* Entries given at startup were read from disk: they are durable. */
    log->stable = kyu_raft_log_last(log);
    return true;
}

void kyu_raft_log_free(kyu_raft_log_t *log)
{
    for (size_t i = 0; i < log->n; i++)
        kyu_raft_entry_release(&log->ents[i]);
    free(log->ents);
    memset(log, 0, sizeof(*log));
}

uint64_t kyu_raft_log_first(const kyu_raft_log_t *log)
{
    return log->snap_index + 1;
}

uint64_t kyu_raft_log_last(const kyu_raft_log_t *log)
{
    return log->snap_index + log->n;
}

uint64_t kyu_raft_log_last_term(const kyu_raft_log_t *log)
{
    return log->n ? log->ents[log->n - 1].term : log->snap_term;
}

bool kyu_raft_log_term(const kyu_raft_log_t *log, uint64_t index, uint64_t *term)
{
    if (index == log->snap_index) {
        *term = log->snap_term;
        return true;
    }
    if (index < log->snap_index || index > kyu_raft_log_last(log))
        return false;
    *term = log->ents[index - log->snap_index - 1].term;
    return true;
}

bool kyu_raft_log_match(const kyu_raft_log_t *log, uint64_t index, uint64_t term)
{
    uint64_t t;
    return kyu_raft_log_term(log, index, &t) && t == term;
}

const kyu_raft_entry_t *kyu_raft_log_entry(const kyu_raft_log_t *log, uint64_t index)
{
    if (index <= log->snap_index || index > kyu_raft_log_last(log))
        return NULL;
    return &log->ents[index - log->snap_index - 1];
}

bool kyu_raft_log_up_to_date(const kyu_raft_log_t *log, uint64_t last_index, uint64_t last_term)
{
    uint64_t my_term = kyu_raft_log_last_term(log);
    return last_term > my_term || (last_term == my_term && last_index >= kyu_raft_log_last(log));
}

static void truncate_from(kyu_raft_log_t *log, uint64_t index)
{
    KYU_RAFT_ASSERT(index > log->commit); /* committed entries are never removed */
    KYU_RAFT_ASSERT(index > log->snap_index);
    size_t keep = (size_t)(index - log->snap_index - 1);
    for (size_t i = keep; i < log->n; i++)
        kyu_raft_entry_release(&log->ents[i]);
    log->n = keep < log->n ? keep : log->n;
    if (log->stable >= index)
        log->stable = index - 1;
}

bool kyu_raft_log_append(kyu_raft_log_t *log, const kyu_raft_entry_t *ents, size_t n)
{
    if (n == 0)
        return true;
    uint64_t first = ents[0].index;
    KYU_RAFT_ASSERT(first > log->snap_index && first <= kyu_raft_log_last(log) + 1);
    size_t keep = (size_t)(first - log->snap_index - 1);
    if (keep + n > log->cap) {
        size_t cap = log->cap ? log->cap : 64;
        while (cap < keep + n)
            cap *= 2;
        kyu_raft_entry_t *p = realloc(log->ents, cap * sizeof(*p));
        if (!p)
            return false;
        log->ents = p;
        log->cap = cap;
    }
    /* Copy first so that running out of memory leaves the log as it was. */
    kyu_raft_entry_t *copies = malloc(n * sizeof(*copies));
    if (!copies)
        return false;
    for (size_t i = 0; i < n; i++) {
        KYU_RAFT_ASSERT(ents[i].index == first + i);
        if (!kyu_raft_entry_share_new(&copies[i], &ents[i])) {
            for (size_t j = 0; j < i; j++)
                kyu_raft_entry_release(&copies[j]);
            free(copies);
            return false;
        }
    }
    if (first <= kyu_raft_log_last(log))
        truncate_from(log, first);
    memcpy(&log->ents[keep], copies, n * sizeof(*copies));
    log->n = keep + n;
    free(copies);
    return true;
}

bool kyu_raft_log_maybe_append(kyu_raft_log_t *log, uint64_t prev_index, uint64_t prev_term,
                               const kyu_raft_entry_t *ents, size_t n, uint64_t *new_last,
                               bool *nomem)
{
    *nomem = false;
    if (!kyu_raft_log_match(log, prev_index, prev_term))
        return false;
    *new_last = prev_index + n;
    /* Skip the prefix we already have (same index and term: same entry, log matching). */
    size_t i = 0;
    while (i < n) {
        uint64_t t;
        if (!kyu_raft_log_term(log, ents[i].index, &t) || t != ents[i].term)
            break;
        i++;
    }
    if (i < n) {
        if (!kyu_raft_log_append(log, &ents[i], n - i)) {
            *nomem = true;
            return false;
        }
    }
    return true;
}

void kyu_raft_log_commit_to(kyu_raft_log_t *log, uint64_t index)
{
    if (index > log->commit) {
        KYU_RAFT_ASSERT(index <= kyu_raft_log_last(log));
        log->commit = index;
    }
}

uint64_t kyu_raft_log_find_conflict_by_term(const kyu_raft_log_t *log, uint64_t index,
                                            uint64_t term)
{
    if (index > kyu_raft_log_last(log))
        index = kyu_raft_log_last(log);
    for (;;) {
        uint64_t t;
        if (!kyu_raft_log_term(log, index, &t) || t <= term)
            return index;
        index--;
    }
}

void kyu_raft_log_stable_to(kyu_raft_log_t *log, uint64_t index, uint64_t term)
{
    /* If the entry changed since it was handed out (truncated by a newer leader), what was
     * written is stale: keep the old boundary and let the next Ready rewrite it. */
    if (index > log->stable && kyu_raft_log_match(log, index, term))
        log->stable = index;
}

void kyu_raft_log_compact(kyu_raft_log_t *log, uint64_t index)
{
    if (index <= log->snap_index)
        return;
    KYU_RAFT_ASSERT(index <= log->applied && index <= log->stable);
    uint64_t term;
    KYU_RAFT_ASSERT(kyu_raft_log_term(log, index, &term));
    size_t drop = (size_t)(index - log->snap_index);
    for (size_t i = 0; i < drop; i++)
        kyu_raft_entry_release(&log->ents[i]);
    memmove(log->ents, &log->ents[drop], (log->n - drop) * sizeof(*log->ents));
    log->n -= drop;
    log->snap_index = index;
    log->snap_term = term;
}

void kyu_raft_log_restore(kyu_raft_log_t *log, uint64_t index, uint64_t term)
{
    for (size_t i = 0; i < log->n; i++)
        kyu_raft_entry_release(&log->ents[i]);
    log->n = 0;
    log->snap_index = index;
    log->snap_term = term;
    log->stable = index;
    log->commit = log->applied = log->handed_out = index;
}
