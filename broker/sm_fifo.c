/* sm_fifo: FIFO queues' state (SQS's FIFO semantics), beside the receive index
 * (sm_index.c), in memory and rebuilt from the store.
 *
 * Message groups. Every message of a FIFO queue has a group (its MessageGroupId, kept in its
 * record: sm.c's key layout); per group, the seqs of its messages not deleted, ascending (a
 * seq is given at the send, so seq order is send order; a dead-letter move keeps the seq).
 * A FIFO queue's messages are never among the fresh ones of the receive index: each has a
 * lease entry from its send (gen 0, visible at its send or when its delay ends), so that a
 * receive can take any message of the index, not only the oldest.
 *   - A group is ready at t when none of its messages is in flight at t (a lease of gen > 0
 *     running past t) and its first message is visible at t. Received messages are always
 *     at a group's head (a receive takes a group's messages in order, from its head, and
 *     new ones go to its tail), so this looks at the head only: the messages received at
 *     least once, up to the first never received.
 *   - A receive takes from the ready groups in order of their first message's seq (the
 *     group waiting longest first): from each, its messages in order while they are visible,
 *     then the next group, up to max. The order depends on the state alone, so every
 *     replica takes the same messages.
 * Cost: a receive, and the frontend's checks (has_visible, visible_upto, next_visible),
 * look at every group of the queue (O(groups), each group's head only). A queue of a few
 * thousand groups is cheap; one of millions of groups would want an index of ready groups.
 *
 * Deduplication. A send's deduplication key (its MessageDeduplicationId, or the SHA-256 of
 * its body with ContentBasedDeduplication; with DeduplicationScope messageGroup, within its
 * group) is remembered for KYU_FIFO_DEDUP_WINDOW_MS of command time with the message's id
 * and seq (its SequenceNumber), in the queue's table of records (sm_fdedup.c, the machinery
 * FIFO topics share), in the meta column family:
 *   "fd" qid(8) key -> time(8) seq(8) message id(36)
 * key: 'q' dedup id (scope queue) or 'g' group ' ' dedup id (scope messageGroup; ' ' is
 * not a character of ids). Every FIFO send (and every FIFO topic's publish into the queue)
 * drops every record older than the window first. The queue's deletion drops its records
 * with its data (a range delete, sm.c).
 */
#include "sm_internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    char *id; /* its MessageGroupId ("" for a message that came without one) */
    uint64_t *seqs;
    size_t head, n, cap; /* seqs[head .. head + n), ascending */
} fgroup_t;

struct kyu_fifo {
    zhashx_t *groups;    /* group id -> fgroup_t* (owns them) */
    zhashx_t *of_seq;    /* seq -> fgroup_t* */
    kyu_fdedup_t *dedup; /* made at its first use (the queue's qid is known then) */
};

/* ---- helpers ---- */

static size_t seq_hash(const void *key)
{
    uint64_t x = (uint64_t)(uintptr_t)key;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return (size_t)(x ^ (x >> 31));
}

static int seq_cmp(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
    return x < y ? -1 : x > y;
}

static void group_free(void **item)
{
    fgroup_t *g = *item;
    if (g) {
        free(g->id);
        free(g->seqs);
        free(g);
    }
    *item = NULL;
}

static zhashx_t *new_groups(void)
{
    zhashx_t *h = zhashx_new();
    KYU_ASSERT(h);
    zhashx_set_destructor(h, group_free);
    return h;
}

static zhashx_t *new_of_seq(void)
{
    zhashx_t *h = zhashx_new();
    KYU_ASSERT(h);
    zhashx_set_key_hasher(h, seq_hash);
    zhashx_set_key_comparator(h, seq_cmp);
    zhashx_set_key_duplicator(h, NULL);
    zhashx_set_key_destructor(h, NULL);
    return h;
}

void kyu_sm_fifo_init(queue_t *q)
{
    if (q->fifo || !q->is_fifo)
        return;
    q->fifo = calloc(1, sizeof *q->fifo);
    KYU_ASSERT(q->fifo);
    q->fifo->groups = new_groups();
    q->fifo->of_seq = new_of_seq();
}

void kyu_sm_fifo_free(queue_t *q)
{
    kyu_fifo_t *f = q->fifo;
    if (!f)
        return;
    zhashx_destroy(&f->of_seq);
    zhashx_destroy(&f->groups);
    kyu_fdedup_destroy(&f->dedup);
    free(f);
    q->fifo = NULL;
}

void kyu_sm_fifo_reset_groups(queue_t *q)
{
    if (!q->fifo)
        return;
    zhashx_destroy(&q->fifo->of_seq);
    zhashx_destroy(&q->fifo->groups);
    q->fifo->groups = new_groups();
    q->fifo->of_seq = new_of_seq();
}

size_t kyu_sm_fifo_groups(const queue_t *q)
{
    return q->fifo ? zhashx_size(q->fifo->groups) : 0;
}

/* ---- groups ---- */

void kyu_sm_fifo_add(queue_t *q, uint64_t seq, const char *group, size_t glen)
{
    kyu_fifo_t *f = q->fifo;
    if (!f)
        return;
    char id[KYU_GROUP_ID_MAX + 1];
    if (glen > KYU_GROUP_ID_MAX)
        glen = KYU_GROUP_ID_MAX;
    memcpy(id, group ? group : "", glen);
    id[glen] = '\0';
    fgroup_t *g = zhashx_lookup(f->groups, id);
    if (!g) {
        g = calloc(1, sizeof *g);
        KYU_ASSERT(g);
        g->id = strdup(id);
        KYU_ASSERT(g->id);
        zhashx_insert(f->groups, id, g);
    }
    if (g->head + g->n == g->cap) {
        if (g->head > g->n) { /* compact */
            memmove(g->seqs, g->seqs + g->head, g->n * sizeof *g->seqs);
            g->head = 0;
        } else {
            g->cap = g->cap ? g->cap * 2 : 4;
            g->seqs = realloc(g->seqs, g->cap * sizeof *g->seqs);
            KYU_ASSERT(g->seqs);
        }
    }
    uint64_t *s = g->seqs + g->head;
    size_t at = g->n; /* nearly always the tail; a dead-letter move may bring an older seq */
    while (at > 0 && s[at - 1] > seq)
        at--;
    memmove(s + at + 1, s + at, (g->n - at) * sizeof *s);
    s[at] = seq;
    g->n++;
    zhashx_insert(f->of_seq, (void *)(uintptr_t)seq, g);
}

void kyu_sm_fifo_drop(queue_t *q, uint64_t seq)
{
    kyu_fifo_t *f = q->fifo;
    if (!f)
        return;
    fgroup_t *g = zhashx_lookup(f->of_seq, (void *)(uintptr_t)seq);
    if (!g)
        return;
    zhashx_delete(f->of_seq, (void *)(uintptr_t)seq);
    uint64_t *s = g->seqs + g->head;
    if (g->n > 0 && s[0] == seq) { /* nearly always: messages go from a group's head */
        g->head++;
        g->n--;
    } else {
        size_t lo = 0, hi = g->n; /* binary search: ascending */
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (s[mid] < seq)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo < g->n && s[lo] == seq) {
            memmove(s + lo, s + lo + 1, (g->n - lo - 1) * sizeof *s);
            g->n--;
        }
    }
    if (g->n == 0)
        zhashx_delete(f->groups, g->id);
    else if (g->head >= 64 && g->head > g->n) {
        memmove(g->seqs, g->seqs + g->head, g->n * sizeof *g->seqs);
        g->head = 0;
    }
}

/* When group g is ready (sm_fifo.c's top): *ready_at gets the time it is (0: now, also
 * when it is ready now; UINT64_MAX: never by itself, a message without a lease entry). */
static void group_state(const queue_t *q, const fgroup_t *g, uint64_t now, bool *ready,
                        uint64_t *ready_at)
{
    uint64_t at = 0;
    const uint64_t *s = g->seqs + g->head;
    for (size_t i = 0; i < g->n; i++) {
        lease_t l;
        if (!kyu_sm_index_lease(q, s[i], &l)) {
            at = UINT64_MAX;
            break;
        }
        if (l.gen == 0) { /* never received: the first message, if nothing before it */
            if (i == 0)
                at = l.visible_at;
            break;
        }
        if (l.visible_at > at)
            at = l.visible_at;
    }
    *ready = g->n > 0 && at <= now;
    *ready_at = *ready ? 0 : at;
}

/* The ready groups with the smallest first seqs, up to max of them, in that order. */
static size_t ready_groups(const queue_t *q, uint64_t now, fgroup_t **out, size_t max)
{
    size_t n = 0;
    for (fgroup_t *g = zhashx_first(q->fifo->groups); g; g = zhashx_next(q->fifo->groups)) {
        bool ready;
        uint64_t at;
        group_state(q, g, now, &ready, &at);
        if (!ready)
            continue;
        uint64_t first = g->seqs[g->head];
        size_t pos = n;
        while (pos > 0 && out[pos - 1]->seqs[out[pos - 1]->head] > first)
            pos--;
        if (pos >= max)
            continue;
        if (n == max)
            n--;
        memmove(out + pos + 1, out + pos, (n - pos) * sizeof *out);
        out[pos] = g;
        n++;
    }
    return n;
}

uint32_t kyu_sm_fifo_take(queue_t *q, uint64_t now, uint32_t max, uint64_t seqs[], lease_t leases[])
{
    fgroup_t *gs[KYU_BATCH_MAX];
    if (!q->fifo || max == 0)
        return 0;
    if (max > KYU_BATCH_MAX)
        max = KYU_BATCH_MAX;
    size_t ng = ready_groups(q, now, gs, max);
    uint32_t n = 0;
    for (size_t j = 0; j < ng && n < max; j++) {
        const uint64_t *s = gs[j]->seqs + gs[j]->head;
        for (size_t i = 0; i < gs[j]->n && n < max; i++) {
            lease_t l;
            if (!kyu_sm_index_lease(q, s[i], &l) || l.visible_at > now)
                break;
            seqs[n] = s[i];
            leases[n++] = l;
        }
    }
    return n;
}

uint64_t kyu_sm_fifo_visible_upto(queue_t *q, uint64_t now, uint64_t cap)
{
    uint64_t n = 0;
    if (!q->fifo)
        return 0;
    for (fgroup_t *g = zhashx_first(q->fifo->groups); g && n < cap;
         g = zhashx_next(q->fifo->groups)) {
        bool ready;
        uint64_t at;
        group_state(q, g, now, &ready, &at);
        const uint64_t *s = g->seqs + g->head;
        for (size_t i = 0; ready && i < g->n && n < cap; i++) {
            lease_t l;
            if (!kyu_sm_index_lease(q, s[i], &l) || l.visible_at > now)
                break;
            n++;
        }
    }
    return n;
}

bool kyu_sm_fifo_has_visible(queue_t *q, uint64_t now)
{
    return kyu_sm_fifo_visible_upto(q, now, 1) > 0;
}

uint64_t kyu_sm_fifo_next_visible(queue_t *q, uint64_t now)
{
    uint64_t next = UINT64_MAX;
    if (!q->fifo)
        return next;
    for (fgroup_t *g = zhashx_first(q->fifo->groups); g; g = zhashx_next(q->fifo->groups)) {
        bool ready;
        uint64_t at;
        group_state(q, g, now, &ready, &at);
        if (ready)
            return 0;
        if (at < next)
            next = at;
    }
    return next;
}

/* ---- deduplication ---- */

/* The key of a send's deduplication in q (see the top); false when it has no dedup id. */
static bool dedup_key(const queue_t *q, const char *group, const char *did, char *out, size_t cap)
{
    if (!did || !did[0])
        return false;
    if (q->dedup_scope == KYU_DEDUP_SCOPE_GROUP)
        snprintf(out, cap, "g%s %s", group ? group : "", did);
    else
        snprintf(out, cap, "q%s", did);
    return true;
}

#define FD_PREFIX 10 /* "fd" qid(8) */

/* q's table of records, made at its first use. */
static kyu_fdedup_t *dedup_of(queue_t *q)
{
    if (!q->fifo->dedup) {
        uint8_t p[FD_PREFIX] = {'f', 'd'};
        kyu_put_be64(p + 2, q->qid);
        q->fifo->dedup = kyu_fdedup_new(p, sizeof p);
    }
    return q->fifo->dedup;
}

bool kyu_sm_fifo_dedup_find(const queue_t *q, const char *group, const char *did, uint64_t now,
                            char id[KYU_UUID_LEN + 1], uint64_t *seq)
{
    char key[KYU_FDEDUP_KEY_MAX];
    return q->fifo && dedup_key(q, group, did, key, sizeof key) &&
           kyu_fdedup_find(q->fifo->dedup, key, now, id, seq);
}

void kyu_sm_fifo_dedup_put(kyu_sm_t *self, queue_t *q, const char *group, const char *did,
                           uint64_t now, const char *id, uint64_t seq)
{
    char key[KYU_FDEDUP_KEY_MAX];
    if (q->fifo && dedup_key(q, group, did, key, sizeof key))
        kyu_fdedup_put(self, dedup_of(q), key, now, id, seq);
}

void kyu_sm_fifo_dedup_expire(kyu_sm_t *self, queue_t *q, uint64_t now)
{
    if (q->fifo)
        kyu_fdedup_expire(self, q->fifo->dedup, now);
}

size_t kyu_sm_fifo_dedup_count(const queue_t *q)
{
    return q->fifo ? kyu_fdedup_count(q->fifo->dedup) : 0;
}

/* ---- loading ---- */

static kyu_code_t load_dedup(kyu_sm_t *self, zhashx_t *by_qid, kyu_err_t *err)
{
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    char hi[2] = {'f', 'e'};
    rocksdb_readoptions_set_iterate_upper_bound(ro, hi, 2);
    rocksdb_iterator_t *it =
        rocksdb_create_iterator_cf(self->db, ro, kyu_store_cf(self->store, KYU_CF_META));
    kyu_code_t rc = KYU_OK;
    for (rocksdb_iter_seek(it, "fd", 2); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl = 0, vl = 0;
        const char *k = rocksdb_iter_key(it, &kl);
        const char *v = rocksdb_iter_value(it, &vl);
        char key[KYU_FDEDUP_KEY_MAX], id[KYU_UUID_LEN + 1];
        uint64_t t, seq;
        if (!kyu_fdedup_parse(k, kl, FD_PREFIX, v, vl, key, &t, &seq, id)) {
            rc = kyu_err_set(err, KYU_ERR_STORAGE, "corrupt FIFO deduplication record");
            break;
        }
        queue_t *q = zhashx_lookup(by_qid, (void *)(uintptr_t)kyu_get_be64((const uint8_t *)k + 2));
        if (!q || !q->fifo)
            continue; /* a deleted queue's, dropped by its "gc" record */
        kyu_fdedup_insert(dedup_of(q), key, t, seq, id);
    }
    char *rerr = NULL;
    rocksdb_iter_get_error(it, &rerr);
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    if (rerr) {
        rc = kyu_err_set(err, KYU_ERR_STORAGE, "reading FIFO deduplication records: %s", rerr);
        free(rerr);
    }
    for (queue_t *q = zhashx_first(self->queues); q; q = zhashx_next(self->queues))
        if (q->fifo)
            kyu_fdedup_loaded(q->fifo->dedup);
    return rc;
}

/* The groups, from the FIFO queues' message records (in key order: seq order). */
static kyu_code_t load_groups(kyu_sm_t *self, queue_t *q, kyu_err_t *err)
{
    uint8_t lo[8], hi[8];
    kyu_put_be64(lo, q->qid);
    kyu_put_be64(hi, q->qid + 1);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_upper_bound(ro, (char *)hi, 8);
    rocksdb_iterator_t *it =
        rocksdb_create_iterator_cf(self->db, ro, kyu_store_cf(self->store, KYU_CF_MESSAGES));
    kyu_code_t rc = KYU_OK;
    for (rocksdb_iter_seek(it, (char *)lo, 8); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl = 0, vl = 0;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
        if (kl != KEY_QS)
            continue; /* a provenance record */
        const char *v = rocksdb_iter_value(it, &vl);
        kyu_sent_t m;
        if (!kyu_sm_parse_message(v, vl, &m)) {
            rc = kyu_err_set(err, KYU_ERR_STORAGE, "corrupt message record in queue '%s'", q->name);
            break;
        }
        kyu_sm_fifo_add(q, kyu_get_be64(k + 8), m.group, m.group_len);
    }
    char *rerr = NULL;
    rocksdb_iter_get_error(it, &rerr);
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    if (rerr) {
        rc = kyu_err_set(err, KYU_ERR_STORAGE, "reading queue '%s': %s", q->name, rerr);
        free(rerr);
    }
    return rc;
}

kyu_code_t kyu_sm_fifo_load(kyu_sm_t *self, kyu_err_t *err)
{
    zhashx_t *by_qid = new_of_seq();
    kyu_code_t rc = KYU_OK;
    for (queue_t *q = zhashx_first(self->queues); q; q = zhashx_next(self->queues))
        zhashx_insert(by_qid, (void *)(uintptr_t)q->qid, q);
    zlistx_t *fifos = zlistx_new();
    KYU_ASSERT(fifos);
    for (queue_t *q = zhashx_first(self->queues); q; q = zhashx_next(self->queues))
        if (q->fifo)
            zlistx_add_end(fifos, q);
    for (queue_t *q = zlistx_first(fifos); q && rc == KYU_OK; q = zlistx_next(fifos))
        rc = load_groups(self, q, err);
    zlistx_destroy(&fifos);
    if (rc == KYU_OK)
        rc = load_dedup(self, by_qid, err);
    zhashx_destroy(&by_qid);
    return rc;
}
