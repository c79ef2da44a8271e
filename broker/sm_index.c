/* sm_index: a queue's receive index, held in memory (sm_internal.h, "The receive index").
 *
 * A receive needs the messages visible at the command's time, in a fixed order, and the
 * lease of each message it touches. Reading those through RocksDB (a visibility column family
 * scanned through a WriteBatchWithIndex, a lease Get per message) cost more than half of the
 * broker's CPU per message; here they are memory:
 *   - fresh: the messages never received, in seq order, in chunks of seqs (8 bytes each).
 *     Every one is visible: it was sent at a command time no later than any later command's.
 *   - leases: seq -> lease, for the messages received at least once and not deleted, and
 *     for the messages never received that wait for their queue's delay (gen 0, first_ms
 *     KYU_LEASE_DELAYED, visible_at the end of the delay);
 *   - heap: (visible_at, seq) of those leases, a binary min-heap. A lease that moves pushes
 *     its new place and leaves the old one behind; an entry that no longer matches its
 *     lease (moved, deleted) is dropped when it reaches the top, and the heap is rebuilt
 *     from the leases when the dead entries outnumber the live ones.
 * The order a receive takes messages in is fixed by the state alone (so every replica takes
 * the same ones): leases due again first, by (visible_at, seq), then fresh messages by seq.
 * The leases column family stays the durable record: kyu_sm_index_load rebuilds all of this
 * from it at start and after a snapshot install (one sequential scan of 24- to 36-byte records).
 */
#include "sm_internal.h"

#include <stdlib.h>
#include <string.h>

static int seq_cmp(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
    return x < y ? -1 : x > y;
}

static void lease_free(void **item)
{
    free(*item);
    *item = NULL;
}

static inline void *seq_key(uint64_t seq)
{
    return (void *)(uintptr_t)seq;
}

/* A hash keyed by a 64-bit number held in the key pointer itself (seq_key). */
zhashx_t *kyu_u64_map_new(void)
{
    zhashx_t *m = zhashx_new();
    KYU_ASSERT(m);
    zhashx_set_key_hasher(m, kyu_seq_hash);
    zhashx_set_key_comparator(m, seq_cmp);
    zhashx_set_key_duplicator(m, NULL);
    zhashx_set_key_destructor(m, NULL);
    return m;
}

void kyu_sm_index_init(queue_t *q)
{
    q->leases = kyu_u64_map_new();
    zhashx_set_destructor(q->leases, lease_free);
}

static void fresh_free(queue_t *q)
{
    for (size_t i = 0; i < q->fresh_chunks; i++)
        free(q->fresh[(q->fresh_first + i) % q->fresh_cap]);
    free(q->fresh);
    q->fresh = NULL;
    q->fresh_first = q->fresh_chunks = q->fresh_cap = q->fresh_head = 0;
    q->fresh_slots = q->fresh_len = 0;
}

void kyu_sm_index_free(queue_t *q)
{
    zhashx_destroy(&q->leases);
    fresh_free(q);
    free(q->heap);
    q->heap = NULL;
    q->heap_n = q->heap_cap = 0;
    free(q->ends);
    q->ends = NULL;
    q->ends_n = q->ends_cap = 0;
    q->n_inflight = q->n_delayed = 0;
}

/* ---- fresh: a queue of seqs in chunks, consecutive ones as runs ----
 * Slots of 8 bytes in chunks of KYU_FRESH_CHUNK (8 KiB) in a ring of chunk pointers: no copy
 * as it grows (a ring that doubled held 10^7 seqs in 16.8 M slots and copied them all at each
 * doubling, with both arrays alive meanwhile). A slot is a seq, or (FRESH_RUN set) the count
 * k of the seqs that follow the seq in the slot before it one by one: a backlog sent to one
 * queue at a time is a few runs of 16 bytes instead of 8 bytes per message (80 MB for 10^7),
 * and seqs that are not consecutive cost what they did. A run slot always follows a seq slot.
 * Seqs never reach 2^63 (one per message). */
#define KYU_FRESH_CHUNK 1024
#define FRESH_RUN (UINT64_C(1) << 63)

/* The slot at place i (0: the first) of the ring. */
static uint64_t *fresh_slot(const queue_t *q, size_t i)
{
    size_t pos = q->fresh_head + i;
    return &q->fresh[(q->fresh_first + pos / KYU_FRESH_CHUNK) % q->fresh_cap]
                    [pos % KYU_FRESH_CHUNK];
}

static bool is_run(uint64_t slot)
{
    return (slot & FRESH_RUN) != 0;
}

static void fresh_grow_ring(queue_t *q)
{
    size_t cap = q->fresh_cap ? q->fresh_cap * 2 : 4;
    uint64_t **ring = malloc(cap * sizeof *ring);
    KYU_ASSERT(ring);
    for (size_t i = 0; i < q->fresh_chunks; i++)
        ring[i] = q->fresh[(q->fresh_first + i) % q->fresh_cap];
    free(q->fresh);
    q->fresh = ring;
    q->fresh_cap = cap;
    q->fresh_first = 0;
}

static void push_slot(queue_t *q, uint64_t v)
{
    size_t pos = q->fresh_head + q->fresh_slots;
    if (pos / KYU_FRESH_CHUNK == q->fresh_chunks) { /* the last chunk is full: one more */
        if (q->fresh_chunks == q->fresh_cap)
            fresh_grow_ring(q);
        uint64_t *chunk = malloc(KYU_FRESH_CHUNK * sizeof *chunk);
        KYU_ASSERT(chunk);
        q->fresh[(q->fresh_first + q->fresh_chunks++) % q->fresh_cap] = chunk;
    }
    q->fresh_slots++;
    *fresh_slot(q, q->fresh_slots - 1) = v;
}

static void pop_slot(queue_t *q)
{
    q->fresh_head++;
    q->fresh_slots--;
    if (q->fresh_head == KYU_FRESH_CHUNK || q->fresh_slots == 0) { /* the first chunk is done */
        free(q->fresh[q->fresh_first]);
        q->fresh_first = (q->fresh_first + 1) % q->fresh_cap;
        q->fresh_chunks--;
        q->fresh_head = 0;
    }
}

void kyu_sm_index_add_fresh(queue_t *q, uint64_t seq)
{
    KYU_ASSERT(!is_run(seq));
    uint64_t *last = q->fresh_slots > 0 ? fresh_slot(q, q->fresh_slots - 1) : NULL;
    if (last && is_run(*last) &&
        *fresh_slot(q, q->fresh_slots - 2) + (*last & ~FRESH_RUN) + 1 == seq)
        (*last)++; /* the run goes on */
    else if (last && !is_run(*last) && *last + 1 == seq)
        push_slot(q, FRESH_RUN | 1); /* a run starts */
    else
        push_slot(q, seq);
    q->fresh_len++;
    if (q->fair)
        kyu_sm_fair_none_changed(q);
}

/* The first fresh seq (fresh_len > 0). */
static uint64_t first_fresh(const queue_t *q)
{
    return *fresh_slot(q, 0);
}

/* Drops the first n (>= 1) fresh seqs, all of the first slot's run (the seq and the run slot
 * after it, if any). */
static void drop_front(queue_t *q, uint64_t n)
{
    uint64_t *first = fresh_slot(q, 0);
    uint64_t *run = q->fresh_slots > 1 && is_run(*fresh_slot(q, 1)) ? fresh_slot(q, 1) : NULL;
    uint64_t k = run ? *run & ~FRESH_RUN : 0; /* the run holds 1 + k seqs */
    KYU_ASSERT(n >= 1 && n <= k + 1);
    q->fresh_len -= n;
    if (n == k + 1) { /* all of it */
        pop_slot(q);
        if (run)
            pop_slot(q);
    } else if (n == k) { /* one seq left: it takes the run's slot */
        *run = *first + k;
        pop_slot(q);
    } else {
        *first += n;
        *run = FRESH_RUN | (k - n);
    }
}

static uint64_t pop_fresh(queue_t *q)
{
    uint64_t seq = first_fresh(q);
    drop_front(q, 1);
    return seq;
}

/* Puts seq back in front of the fresh ones (it was the first: kyu_sm_index_take popped it). */
static void push_fresh_front(queue_t *q, uint64_t seq)
{
    KYU_ASSERT(q->fresh_len == 0 || seq < first_fresh(q));
    if (q->fresh_head == 0) { /* no room before the first: a chunk in front of it */
        if (q->fresh_chunks == q->fresh_cap)
            fresh_grow_ring(q);
        uint64_t *chunk = malloc(KYU_FRESH_CHUNK * sizeof *chunk);
        KYU_ASSERT(chunk);
        q->fresh_first = (q->fresh_first + q->fresh_cap - 1) % q->fresh_cap;
        q->fresh[q->fresh_first] = chunk;
        q->fresh_chunks++;
        q->fresh_head = KYU_FRESH_CHUNK;
    }
    q->fresh_head--;
    q->fresh_slots++;
    *fresh_slot(q, 0) = seq; /* a seq of its own, before the first slot (a seq) */
    q->fresh_len++;
}

uint64_t kyu_sm_index_drop_fresh_below(queue_t *q, uint64_t seq)
{
    uint64_t n = 0;
    while (q->fresh_len > 0 && first_fresh(q) < seq) {
        uint64_t s = first_fresh(q);
        uint64_t k = q->fresh_slots > 1 && is_run(*fresh_slot(q, 1))
                         ? *fresh_slot(q, 1) & ~FRESH_RUN
                         : 0; /* the first run is s .. s + k */
        uint64_t d = seq - s < k + 1 ? seq - s : k + 1;
        drop_front(q, d);
        n += d;
    }
    if (n > 0 && q->fair)
        kyu_sm_fair_none_changed(q);
    return n;
}

size_t kyu_sm_index_fresh_bytes(const queue_t *q)
{
    return q->fresh_chunks * KYU_FRESH_CHUNK * sizeof(uint64_t) + q->fresh_cap * sizeof(uint64_t *);
}

/* ---- heap of (visible_at, seq) ---- */

bool kyu_vis_less(kyu_vis_t a, kyu_vis_t b)
{
    return a.visible_at != b.visible_at ? a.visible_at < b.visible_at : a.seq < b.seq;
}

/* A binary min-heap of kyu_vis_t in an array that grows (the receive heap, and the
 * counters' ends). */
void kyu_vis_push(kyu_vis_t **h, size_t *n, size_t *cap, kyu_vis_t v)
{
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 64;
        kyu_vis_t *grown = realloc(*h, c * sizeof *grown);
        KYU_ASSERT(grown);
        *h = grown;
        *cap = c;
    }
    size_t i = (*n)++;
    while (i > 0 && kyu_vis_less(v, (*h)[(i - 1) / 2])) {
        (*h)[i] = (*h)[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    (*h)[i] = v;
}

void kyu_vis_pop(kyu_vis_t *h, size_t *n)
{
    kyu_vis_t last = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && kyu_vis_less(h[c + 1], h[c]))
            c++;
        if (!kyu_vis_less(h[c], last))
            break;
        h[i] = h[c];
        i = c;
    }
    if (*n > 0)
        h[i] = last;
}

static void heap_push(queue_t *q, kyu_vis_t v)
{
    kyu_vis_push(&q->heap, &q->heap_n, &q->heap_cap, v);
}

static void heap_pop(queue_t *q)
{
    kyu_vis_pop(q->heap, &q->heap_n);
}

static bool heap_live(queue_t *q, kyu_vis_t v)
{
    const lease_t *l = zhashx_lookup(q->leases, seq_key(v.seq));
    return l && l->visible_at == v.visible_at;
}

/* Drops dead entries from the top: afterwards the top, if any, is a live lease's place. */
static void heap_settle(queue_t *q)
{
    while (q->heap_n > 0 && !heap_live(q, q->heap[0]))
        heap_pop(q);
}

/* Rebuilds the heap from the leases once dead entries outnumber live ones (amortized O(1)). */
static void heap_maybe_rebuild(queue_t *q)
{
    size_t live = zhashx_size(q->leases);
    if (q->heap_n < 2 * live + 1024)
        return;
    q->heap_n = 0;
    for (lease_t *l = zhashx_first(q->leases); l; l = zhashx_next(q->leases)) {
        uint64_t seq = (uint64_t)(uintptr_t)zhashx_cursor(q->leases);
        if (!q->fair || !kyu_sm_fair_grouped(q, seq)) /* a grouped one is in its group's */
            heap_push(q, (kyu_vis_t){l->visible_at, seq});
    }
}

/* ---- Counters ----
 * ApproximateNumberOfMessagesNotVisible and ...Delayed, kept exact without a scan. A lease
 * (of a received message: in flight; of one never received: delayed) is counted while it
 * ends after counted_at, the time of the last command applied to its queue (every command
 * moves it forward before it applies: kyu_sm_index_advance). Counting and uncounting as a
 * lease is set or dropped is O(1) plus a push into ends, O(log n); a command whose time
 * passes the end of counted leases pops them out of ends, each once: amortized O(log n) per
 * change. An entry of ends that no longer matches its lease (moved or dropped) is skipped,
 * and ends is rebuilt once dead entries outnumber the counted ones. The counts depend only
 * on the commands applied (their times never go back: cluster_time.c), so every replica
 * has the same (the in-flight limit reads them in apply). A read at a later time (no
 * command since) subtracts what ended in between, by walking the entries of ends up to its
 * time, without changing them: its cost is the leases and delays that ended since the
 * queue's last command. */

static void count_out(queue_t *q, lease_t *l)
{
    if (l->counted) {
        if (l->gen == 0)
            q->n_delayed--;
        else
            q->n_inflight--;
        l->counted = false;
    }
}

static void ends_maybe_rebuild(queue_t *q)
{
    if (q->ends_n < 2 * (q->n_inflight + q->n_delayed) + 1024)
        return;
    q->ends_n = 0;
    for (lease_t *l = zhashx_first(q->leases); l; l = zhashx_next(q->leases))
        if (l->counted)
            kyu_vis_push(&q->ends, &q->ends_n, &q->ends_cap,
                         (kyu_vis_t){l->visible_at, (uint64_t)(uintptr_t)zhashx_cursor(q->leases)});
}

static void count_in(queue_t *q, uint64_t seq, lease_t *l)
{
    l->counted = false;
    if (l->visible_at <= q->counted_at)
        return;
    l->counted = true;
    if (l->gen == 0)
        q->n_delayed++;
    else
        q->n_inflight++;
    kyu_vis_push(&q->ends, &q->ends_n, &q->ends_cap, (kyu_vis_t){l->visible_at, seq});
    ends_maybe_rebuild(q);
}

/* The lease an entry of ends stands for, when it is still counted with that end. */
static lease_t *ends_live(queue_t *q, kyu_vis_t v)
{
    lease_t *l = zhashx_lookup(q->leases, seq_key(v.seq));
    return l && l->counted && l->visible_at == v.visible_at ? l : NULL;
}

void kyu_sm_index_advance(queue_t *q, uint64_t now)
{
    if (now <= q->counted_at)
        return;
    q->counted_at = now;
    while (q->ends_n > 0 && q->ends[0].visible_at <= now) {
        lease_t *l = ends_live(q, q->ends[0]);
        kyu_vis_pop(q->ends, &q->ends_n);
        if (l)
            count_out(q, l);
    }
}

/* Counts (once each: a lease moved away and back has two entries) the counted leases of the
 * subtree at i of ends that end at or before now. Recursion no deeper than the heap. */
static void ends_walk(queue_t *q, size_t i, uint64_t now, uint64_t *inflight, uint64_t *delayed)
{
    if (i >= q->ends_n || q->ends[i].visible_at > now)
        return;
    lease_t *l = ends_live(q, q->ends[i]);
    if (l && l->read_mark != q->read_mark) {
        l->read_mark = q->read_mark;
        (*(l->gen == 0 ? delayed : inflight))++;
    }
    ends_walk(q, 2 * i + 1, now, inflight, delayed);
    ends_walk(q, 2 * i + 2, now, inflight, delayed);
}

void kyu_sm_index_counts(queue_t *q, uint64_t now, uint64_t *not_visible, uint64_t *delayed)
{
    uint64_t ended_inflight = 0, ended_delayed = 0;
    if (now > q->counted_at) {
        if (++q->read_mark > KYU_READ_MARK_MAX) /* 0: a lease no read has marked */
            q->read_mark = 1;
        ends_walk(q, 0, now, &ended_inflight, &ended_delayed);
    }
    *not_visible = q->n_inflight - ended_inflight;
    *delayed = q->n_delayed - ended_delayed;
}

/* ---- PEEK ---- */

/* The last seq of slot i: its own, or its run's last. Grows with i. */
static uint64_t slot_last(const queue_t *q, size_t i)
{
    uint64_t v = *fresh_slot(q, i);
    return is_run(v) ? *fresh_slot(q, i - 1) + (v & ~FRESH_RUN) : v;
}

size_t kyu_sm_index_peek(queue_t *q, uint64_t from, size_t max, uint64_t seqs[], lease_t leases[],
                         bool fresh[])
{
    KYU_ASSERT(max <= KYU_BATCH_MAX + 1);
    /* The leases' smallest seqs >= from, kept sorted (insertion: max is small). */
    uint64_t ls[KYU_BATCH_MAX + 1];
    const lease_t *lp[KYU_BATCH_MAX + 1];
    size_t nl = 0;
    for (lease_t *l = zhashx_first(q->leases); l; l = zhashx_next(q->leases)) {
        uint64_t seq = (uint64_t)(uintptr_t)zhashx_cursor(q->leases);
        if (seq < from || (nl == max && seq >= ls[nl - 1]))
            continue;
        size_t i = nl < max ? nl++ : nl - 1;
        while (i > 0 && ls[i - 1] > seq) {
            ls[i] = ls[i - 1];
            lp[i] = lp[i - 1];
            i--;
        }
        ls[i] = seq;
        lp[i] = l;
    }
    /* The first fresh seq >= from: a binary search of the slots for the first whose last seq
     * is >= from; in a run, from itself (the seq before the run is < from). */
    size_t lo = 0, hi = q->fresh_slots;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (slot_last(q, mid) < from)
            lo = mid + 1;
        else
            hi = mid;
    }
    /* the fresh seqs from there on: next, then up to run_end by ones */
    uint64_t next = 0, run_end = 0;
    bool more = lo < q->fresh_slots;
    if (more) {
        uint64_t v = *fresh_slot(q, lo);
        next = is_run(v) ? from : v;
        run_end = slot_last(q, lo);
        lo++;
        if (!is_run(v) && lo < q->fresh_slots && is_run(*fresh_slot(q, lo)))
            run_end = slot_last(q, lo++);
    }
    size_t n = 0, j = 0;
    while (n < max && (j < nl || more)) {
        bool take_fresh = j == nl || (more && next < ls[j]);
        fresh[n] = take_fresh;
        if (take_fresh) {
            seqs[n] = next;
            leases[n] = (lease_t){0};
            if (next < run_end) {
                next++;
            } else if ((more = lo < q->fresh_slots)) { /* the next slot is a seq */
                next = run_end = *fresh_slot(q, lo++);
                if (lo < q->fresh_slots && is_run(*fresh_slot(q, lo)))
                    run_end = slot_last(q, lo++);
            }
        } else {
            seqs[n] = ls[j];
            leases[n] = *lp[j++];
        }
        n++;
    }
    return n;
}

/* ---- what the state machine uses ---- */

bool kyu_sm_index_lease(const queue_t *q, uint64_t seq, lease_t *l)
{
    const lease_t *found = zhashx_lookup(q->leases, seq_key(seq));
    if (found)
        *l = *found;
    return found != NULL;
}

void kyu_sm_index_set_lease(queue_t *q, uint64_t seq, const lease_t *l)
{
    lease_t *cur = zhashx_lookup(q->leases, seq_key(seq));
    if (!cur) {
        cur = calloc(1, sizeof *cur);
        KYU_ASSERT(cur);
        zhashx_insert(q->leases, seq_key(seq), cur);
    }
    count_out(q, cur);
    /* Pushed even when visible_at did not change: a receive took its entry out. A second
     * live entry for one lease is harmless (kyu_sm_index_take takes a seq once). */
    *cur = *l;
    cur->read_mark = 0;
    count_in(q, seq, cur);
    /* in a FIFO queue, its group's place in the ready index (sm_fifo.c) */
    kyu_sm_fifo_touch(q, seq);
    if (q->fair) { /* a grouped message: in its group's heap (sm_fair.c) */
        if (!kyu_sm_fair_grouped(q, seq)) {
            heap_push(q, (kyu_vis_t){l->visible_at, seq});
            heap_maybe_rebuild(q);
        }
        kyu_sm_fair_lease_set(q, seq, l);
        return;
    }
    heap_push(q, (kyu_vis_t){l->visible_at, seq});
    heap_maybe_rebuild(q);
}

void kyu_sm_index_drop(queue_t *q, uint64_t seq)
{
    kyu_sm_fifo_drop(q, seq); /* its group, in a FIFO queue */
    lease_t *cur = zhashx_lookup(q->leases, seq_key(seq));
    if (cur) {
        count_out(q, cur);
        zhashx_delete(q->leases, seq_key(seq));
    }
    kyu_sm_fair_drop(q, seq); /* its group, in a fair queue (after its lease: gone) */
}

uint32_t kyu_sm_index_take(queue_t *q, uint64_t now, uint32_t max, uint64_t seqs[],
                           lease_t leases[])
{
    if (q->fair) /* across the groups, fairly (sm_fair.c) */
        return kyu_sm_fair_take(NULL, q, now, max, seqs, leases);
    return kyu_sm_index_take_ungrouped(q, now, max, seqs, leases);
}

uint32_t kyu_sm_index_take_ungrouped(queue_t *q, uint64_t now, uint32_t max, uint64_t seqs[],
                                     lease_t leases[])
{
    uint32_t n = 0;
    while (n < max) {
        heap_settle(q);
        if (q->heap_n == 0 || q->heap[0].visible_at > now)
            break;
        uint64_t seq = q->heap[0].seq;
        heap_pop(q);
        /* A lease moved away and back leaves two live-looking entries: take it once. */
        bool dup = false;
        for (uint32_t i = 0; i < n && !dup; i++)
            dup = seqs[i] == seq;
        if (dup)
            continue;
        seqs[n] = seq;
        kyu_sm_index_lease(q, seq, &leases[n++]);
    }
    while (n < max && q->fresh_len > 0) {
        seqs[n] = pop_fresh(q);
        leases[n++] = (lease_t){0};
    }
    return n;
}

bool kyu_sm_index_take_fresh(queue_t *q, uint64_t seq)
{
    if (q->fair || q->fresh_len == 0 || first_fresh(q) != seq)
        return false;
    pop_fresh(q);
    return true;
}

void kyu_sm_index_put_back(queue_t *q, uint64_t seq, const lease_t *l)
{
    if (l->gen == 0 && l->first_ms != KYU_LEASE_DELAYED && !q->fifo &&
        !kyu_sm_fair_grouped(q, seq)) {
        push_fresh_front(q, seq);
        kyu_sm_fair_none_changed(q);
    } else {
        kyu_sm_index_set_lease(q, seq, l);
    }
}

bool kyu_sm_index_has_visible(queue_t *q, uint64_t now)
{
    if (q->fifo) /* visible: deliverable, within its group's order and lock */
        return kyu_sm_fifo_has_visible(q, now);
    if (q->fair)
        return kyu_sm_fair_has_visible(q, now);
    if (q->fresh_len > 0)
        return true;
    heap_settle(q);
    return q->heap_n > 0 && q->heap[0].visible_at <= now;
}

/* Counts the live due entries of the heap below node i (visible_at <= now: a node's children
 * are never earlier), up to cap. A lease moved away and back may count twice: a long poll
 * then wakes one waiter too many, which finds nothing and waits again. */
static uint64_t count_due(queue_t *q, size_t i, uint64_t now, uint64_t cap)
{
    if (i >= q->heap_n || q->heap[i].visible_at > now || cap == 0)
        return 0;
    uint64_t n = heap_live(q, q->heap[i]) ? 1 : 0;
    n += count_due(q, 2 * i + 1, now, cap - n);
    return n + count_due(q, 2 * i + 2, now, cap - n);
}

uint64_t kyu_sm_index_visible_upto(queue_t *q, uint64_t now, uint64_t cap)
{
    if (q->fifo)
        return kyu_sm_fifo_visible_upto(q, now, cap);
    if (q->fair)
        return kyu_sm_fair_visible_upto(q, now, cap);
    return kyu_sm_index_ungrouped_upto(q, now, cap);
}

uint64_t kyu_sm_index_ungrouped_upto(queue_t *q, uint64_t now, uint64_t cap)
{
    if (q->fresh_len >= cap)
        return cap;
    heap_settle(q);
    return q->fresh_len + count_due(q, 0, now, cap - q->fresh_len);
}

uint64_t kyu_sm_index_next_visible(queue_t *q)
{
    if (q->fifo) /* when a group may become ready (0: one is, as of the last command) */
        return kyu_sm_fifo_next_visible(q, q->counted_at);
    if (q->fair)
        return kyu_sm_fair_next_visible(q, q->counted_at);
    return kyu_sm_index_ungrouped_next(q);
}

uint64_t kyu_sm_index_ungrouped_next(queue_t *q)
{
    if (q->fresh_len > 0)
        return 0;
    heap_settle(q);
    return q->heap_n > 0 ? q->heap[0].visible_at : UINT64_MAX;
}

static bool lease_decode(const char *v, size_t len, lease_t *l)
{
    if (len != LEASE_LEN && len != LEASE_LEN_LAST && len != LEASE_LEN_MAX)
        return false;
    const uint8_t *p = (const uint8_t *)v;
    *l = (lease_t){0};
    l->visible_at = kyu_get_be64(p);
    l->receive_count = kyu_get_be32(p + 8);
    l->gen = kyu_get_be32(p + 12);
    l->first_ms = kyu_get_be64(p + 16);
    l->last_ms = len >= LEASE_LEN_LAST ? kyu_get_be64(p + 24) : 0;
    l->term = len == LEASE_LEN_MAX ? kyu_get_be32(p + 32) : 0;
    return true;
}

typedef struct {
    zhashx_t *by_qid; /* qid -> queue, for the scan (the queues hash is by name) */
    queue_t *q;       /* the last record's queue */
} index_load_t;

/* A lease record, at a load. */
static kyu_code_t load_lease(void *arg, const uint8_t *k, size_t kl, const char *v, size_t vl,
                             kyu_err_t *err)
{
    index_load_t *w = arg;
    lease_t l;
    if (kl != KEY_QS || !lease_decode(v, vl, &l))
        return kyu_err_set(err, KYU_ERR_STORAGE, "corrupt lease record in the store");
    uint64_t qid = kyu_get_be64(k), seq = kyu_get_be64(k + 8);
    if (!w->q || w->q->qid != qid)
        w->q = zhashx_lookup(w->by_qid, seq_key(qid));
    queue_t *q = w->q;
    if (!q)
        return KYU_OK; /* a deleted queue's, dropped by its "gc" record */
    if (l.gen == 0 && l.first_ms != KYU_LEASE_DELAYED && !q->fifo && !kyu_sm_fair_grouped(q, seq))
        kyu_sm_index_add_fresh(q, seq); /* in seq order: the scan is */
    else
        kyu_sm_index_set_lease(q, seq, &l);
    return KYU_OK;
}

kyu_code_t kyu_sm_index_load(kyu_sm_t *self, kyu_err_t *err)
{
    index_load_t w = {kyu_u64_map_new(), NULL};
    for (queue_t *q = zhashx_first(self->queues); q; q = zhashx_next(self->queues))
        zhashx_insert(w.by_qid, seq_key(q->qid), q);
    kyu_code_t rc =
        kyu_sm_walk(self, KYU_CF_LEASES, NULL, 0, NULL, 0, "leases", load_lease, &w, err);
    zhashx_destroy(&w.by_qid);
    return rc;
}
