/* sm_fair: fair message groups on standard queues (beyond SQS, in the spirit of SQS fair
 * queues), beside the receive index (sm_index.c), in memory and rebuilt from the store.
 *
 * A SEND to a standard queue may carry a MessageGroupId (a tenant). The queue stays
 * at-least-once and unordered, with no group locks, but a receive is shared fairly among the
 * groups that have visible messages: one message from each in turn (round robin), so that of
 * N messages no group gets more than ceil(N/k) of k groups unless the others run short, and
 * the groups served least recently go first, so that a noisy tenant's backlog never delays a
 * quiet tenant's message behind it (also with receives of one message). The messages without
 * a group are one group of their own (the "none" group).
 *
 * Cost: none for a queue that never held a grouped message (q->fair stays NULL and the index
 * works as before). A queue gets its state with its first grouped message (a SEND, or a
 * dead-letter move or a redrive of a message that has a group id, or any message stored with
 * one through kyu_sm_store_message: a message's group is in its record, sm.c's key layout)
 * and keeps it (the queue record's QUEUE_FLAG_GROUPS), so that a start rebuilds it: the
 * groups from the queue's message records, scanned before the leases (kyu_sm_fair_load), as
 * sm_fifo.c does.
 *
 * In memory, per fair queue:
 *   - groups: id -> group; of_seq: seq -> group (the grouped messages). A grouped message is
 *     never among the queue's fresh ones: it has a lease entry from its send (gen 0, visible
 *     at its send), and its group has its own heap of (visible_at, seq), kept as the queue's
 *     (sm_index.c): an entry whose lease moved or went is dropped when it reaches the top.
 *     The none group is the queue's own fresh ones and heap.
 *   - the scheduler: a ready heap of groups with a visible message, by (tag, id), and a wait
 *     heap of the others by the time their next message is visible; an entry whose group
 *     moved on is dropped when it reaches the top (a group counts its entries, and a group
 *     removed is freed once none is left). A group's state is set again (resched) whenever
 *     its messages change, at the time of the queue's last command (counted_at: no later
 *     than any later command's time), and a receive first moves the waiting groups whose
 *     time has come to the ready heap: so the ready groups at a receive are exactly those
 *     with a message visible at its time, whatever happened before.
 * Replicated state (so that every replica, restarted or not, takes the same messages): a
 * group's tag, the stamp of its last service, and the queue's stamp counter, in the meta
 * column family:
 *   "fg" qid(8)          -> stamp(8): the last stamp given
 *   "fg" qid(8) 0x00     -> tag(8): the none group's tag
 *   "fg" qid(8) group id -> tag(8): a group's tag, while it has messages (a group never
 *                           served has tag 0 and no record)
 * dropped with the queue's data (a range delete, sm.c) or, a group's, when it has no message
 * left. A receive gives each message it takes from a group the next stamp as the group's tag:
 * the order of the next receive is the least recently served first (a group new or idle
 * comes first), ties by id. The frontend's checks (has_visible, visible_upto, next_visible)
 * read the heaps without changing what a receive does.
 */
#include "sm_internal.h"

#include <stdlib.h>
#include <string.h>

enum { ST_NONE = 0, ST_READY, ST_WAIT };

typedef struct fgroup {
    char *id; /* "" for the none group */
    uint64_t tag;
    uint64_t n;      /* its messages (of_seq); unused for the none group */
    kyu_vis_t *heap; /* (visible_at, seq) of its messages (not the none group's) */
    size_t heap_n, heap_cap;
    int state;     /* ST_*: which scheduler heap holds its valid entry */
    uint64_t key;  /* that entry's key: its tag (ready) or time (wait) */
    uint64_t ver;  /* that entry's version (an older entry of the group is not valid) */
    uint32_t refs; /* scheduler entries that point to it */
    bool gone;     /* removed (no message left): freed once refs is 0 */
    bool served;   /* by the receive under way */
} fgroup_t;

typedef struct {
    uint64_t key, ver;
    fgroup_t *g;
} sched_t;

struct kyu_fair {
    kyu_sm_t *sm;
    zhashx_t *groups; /* id -> fgroup_t* (not the none group) */
    zhashx_t *of_seq; /* seq -> fgroup_t* */
    fgroup_t *none;
    uint64_t stamp;
    sched_t *ready, *wait;
    size_t ready_n, ready_cap, wait_n, wait_cap;
};

static fgroup_t *sched_pop(sched_t *h, size_t *n);
static void resched(queue_t *q, struct fgroup *g, uint64_t now);

/* ---- helpers ---- */

static fgroup_t *group_new(const char *id)
{
    fgroup_t *g = calloc(1, sizeof *g);
    KYU_ASSERT(g);
    g->id = strdup(id);
    KYU_ASSERT(g->id);
    return g;
}

static void group_free(fgroup_t *g)
{
    free(g->id);
    free(g->heap);
    free(g);
}

/* The key of a group's record (see the top); returns its length. */
#define FG_PREFIX 10
static size_t fg_key(uint8_t *k, uint64_t qid, const fgroup_t *g)
{
    k[0] = 'f';
    k[1] = 'g';
    kyu_put_be64(k + 2, qid);
    if (!g)
        return FG_PREFIX;
    size_t n = strlen(g->id);
    if (n == 0) {
        k[FG_PREFIX] = 0;
        return FG_PREFIX + 1;
    }
    memcpy(k + FG_PREFIX, g->id, n);
    return FG_PREFIX + n;
}

void kyu_sm_fair_init(kyu_sm_t *self, queue_t *q)
{
    if (q->fair || q->is_fifo)
        return;
    kyu_fair_t *f = calloc(1, sizeof *f);
    KYU_ASSERT(f);
    f->sm = self;
    f->groups = zhashx_new();
    KYU_ASSERT(f->groups);
    f->of_seq = kyu_u64_map_new();
    f->none = group_new("");
    q->fair = f;
    resched(q, f->none, q->counted_at); /* the messages it had without a group */
}

/* Empties both scheduler heaps (freeing the removed groups they held), then every group. */
static void free_groups(kyu_fair_t *f)
{
    while (f->ready_n > 0)
        sched_pop(f->ready, &f->ready_n);
    while (f->wait_n > 0)
        sched_pop(f->wait, &f->wait_n);
    for (fgroup_t *g = zhashx_first(f->groups); g; g = zhashx_next(f->groups))
        group_free(g);
    zhashx_purge(f->groups);
    zhashx_purge(f->of_seq);
}

void kyu_sm_fair_free(queue_t *q)
{
    kyu_fair_t *f = q->fair;
    if (!f)
        return;
    free_groups(f);
    zhashx_destroy(&f->groups);
    zhashx_destroy(&f->of_seq);
    group_free(f->none);
    free(f->ready);
    free(f->wait);
    free(f);
    q->fair = NULL;
}

bool kyu_sm_fair_grouped(const queue_t *q, uint64_t seq)
{
    return q->fair && zhashx_lookup(q->fair->of_seq, (void *)(uintptr_t)seq) != NULL;
}

size_t kyu_sm_fair_groups(const queue_t *q)
{
    return q->fair ? zhashx_size(q->fair->groups) : 0;
}

/* ---- the scheduler's heaps ---- */

static bool sched_less(const sched_t *a, const sched_t *b)
{
    if (a->key != b->key)
        return a->key < b->key;
    return strcmp(a->g->id, b->g->id) < 0;
}

static void sched_push(sched_t **h, size_t *n, size_t *cap, sched_t v)
{
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 16;
        sched_t *grown = realloc(*h, c * sizeof *grown);
        KYU_ASSERT(grown);
        *h = grown;
        *cap = c;
    }
    size_t i = (*n)++;
    while (i > 0 && sched_less(&v, &(*h)[(i - 1) / 2])) {
        (*h)[i] = (*h)[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    (*h)[i] = v;
    v.g->refs++;
}

/* Pops the top; frees its group when it was removed and this was its last entry. Returns
 * the group, or NULL when it was freed. */
static fgroup_t *sched_pop(sched_t *h, size_t *n)
{
    fgroup_t *top = h[0].g;
    sched_t last = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && sched_less(&h[c + 1], &h[c]))
            c++;
        if (!sched_less(&h[c], &last))
            break;
        h[i] = h[c];
        i = c;
    }
    if (*n > 0)
        h[i] = last;
    if (--top->refs == 0 && top->gone) {
        group_free(top);
        return NULL;
    }
    return top;
}

static bool valid(const sched_t *e, int state)
{
    return !e->g->gone && e->g->state == state && e->g->ver == e->ver;
}

/* ---- a group's messages ---- */

static bool heap_live(const queue_t *q, kyu_vis_t v)
{
    lease_t l;
    return kyu_sm_index_lease(q, v.seq, &l) && l.visible_at == v.visible_at;
}

/* When group g's next message is visible (UINT64_MAX: none; 0: a message of the none group
 * never received). */
static uint64_t group_next(queue_t *q, fgroup_t *g)
{
    if (g == q->fair->none)
        return kyu_sm_index_ungrouped_next(q);
    while (g->heap_n > 0 && !heap_live(q, g->heap[0]))
        kyu_vis_pop(g->heap, &g->heap_n);
    return g->heap_n > 0 ? g->heap[0].visible_at : UINT64_MAX;
}

/* Sets g's place in the scheduler from its messages at now (see the top); a group with no
 * message left is removed, and its record dropped. */
static void resched(queue_t *q, fgroup_t *g, uint64_t now)
{
    kyu_fair_t *f = q->fair;
    if (g != f->none && g->n == 0) {
        if (g->tag && f->sm) {
            uint8_t k[FG_PREFIX + KYU_GROUP_ID_MAX];
            kyu_sm_del(f->sm, KYU_CF_META, k, fg_key(k, q->qid, g));
        }
        zhashx_delete(f->groups, g->id);
        g->gone = true;
        g->state = ST_NONE;
        if (g->refs == 0)
            group_free(g);
        return;
    }
    uint64_t nv = group_next(q, g);
    if (nv == UINT64_MAX) {
        g->state = ST_NONE;
        return;
    }
    int state = nv <= now ? ST_READY : ST_WAIT;
    uint64_t key = state == ST_READY ? g->tag : nv;
    if (g->state == state && g->key == key)
        return;
    g->state = state;
    g->key = key;
    sched_t e = {key, ++g->ver, g};
    if (state == ST_READY)
        sched_push(&f->ready, &f->ready_n, &f->ready_cap, e);
    else
        sched_push(&f->wait, &f->wait_n, &f->wait_cap, e);
    /* Entries whose group moved on outnumber the groups: build both heaps again. */
    size_t live = zhashx_size(f->groups) + 1;
    if (f->ready_n + f->wait_n < 2 * live + 1024)
        return;
    sched_t *old_r = f->ready, *old_w = f->wait;
    size_t nr = f->ready_n, nw = f->wait_n;
    f->ready = f->wait = NULL;
    f->ready_n = f->ready_cap = f->wait_n = f->wait_cap = 0;
    for (size_t i = 0; i < nr + nw; i++) {
        sched_t e = i < nr ? old_r[i] : old_w[i - nr];
        int st = i < nr ? ST_READY : ST_WAIT;
        if (valid(&e, st)) {
            if (st == ST_READY)
                sched_push(&f->ready, &f->ready_n, &f->ready_cap, e);
            else
                sched_push(&f->wait, &f->wait_n, &f->wait_cap, e);
        }
        if (--e.g->refs == 0 && e.g->gone)
            group_free(e.g);
    }
    free(old_r);
    free(old_w);
}

void kyu_sm_fair_add(kyu_sm_t *self, queue_t *q, uint64_t seq, const char *group, size_t glen)
{
    if (q->is_fifo || glen == 0)
        return;
    kyu_sm_fair_init(self, q);
    kyu_fair_t *f = q->fair;
    char id[KYU_GROUP_ID_MAX + 1];
    if (glen > KYU_GROUP_ID_MAX)
        glen = KYU_GROUP_ID_MAX;
    memcpy(id, group, glen);
    id[glen] = '\0';
    fgroup_t *g = zhashx_lookup(f->groups, id);
    if (!g) {
        g = group_new(id);
        zhashx_insert(f->groups, id, g);
    }
    g->n++;
    zhashx_insert(f->of_seq, (void *)(uintptr_t)seq, g);
}

void kyu_sm_fair_lease_set(queue_t *q, uint64_t seq, const lease_t *l)
{
    kyu_fair_t *f = q->fair;
    fgroup_t *g = zhashx_lookup(f->of_seq, (void *)(uintptr_t)seq);
    if (g)
        kyu_vis_push(&g->heap, &g->heap_n, &g->heap_cap, (kyu_vis_t){l->visible_at, seq});
    resched(q, g ? g : f->none, q->counted_at);
}

void kyu_sm_fair_none_changed(queue_t *q)
{
    if (q->fair)
        resched(q, q->fair->none, q->counted_at);
}

void kyu_sm_fair_drop(queue_t *q, uint64_t seq)
{
    kyu_fair_t *f = q->fair;
    if (!f)
        return;
    fgroup_t *g = zhashx_lookup(f->of_seq, (void *)(uintptr_t)seq);
    if (g) {
        zhashx_delete(f->of_seq, (void *)(uintptr_t)seq);
        g->n--;
    }
    resched(q, g ? g : f->none, q->counted_at);
}

void kyu_sm_fair_reset(queue_t *q)
{
    kyu_fair_t *f = q->fair;
    if (!f)
        return;
    for (fgroup_t *g = zhashx_first(f->groups); g; g = zhashx_next(f->groups))
        if (g->tag && f->sm) {
            uint8_t k[FG_PREFIX + KYU_GROUP_ID_MAX];
            kyu_sm_del(f->sm, KYU_CF_META, k, fg_key(k, q->qid, g));
        }
    free_groups(f);
    f->none->state = ST_NONE;
}

/* ---- receiving ---- */

/* Moves the waiting groups whose time has come to the ready heap. */
static void promote(queue_t *q, uint64_t now)
{
    kyu_fair_t *f = q->fair;
    while (f->wait_n > 0 && (!valid(&f->wait[0], ST_WAIT) || f->wait[0].key <= now)) {
        bool due = valid(&f->wait[0], ST_WAIT);
        fgroup_t *g = sched_pop(f->wait, &f->wait_n);
        if (g && due) {
            g->state = ST_NONE;
            resched(q, g, now);
        }
    }
}

static bool taken(const uint64_t *seqs, uint32_t n, uint64_t seq)
{
    for (uint32_t i = 0; i < n; i++)
        if (seqs[i] == seq)
            return true;
    return false;
}

/* Takes g's next message visible at now (not one of seqs[0..n)) into seqs[n]. */
static bool take_one(queue_t *q, fgroup_t *g, uint64_t now, uint64_t seqs[], lease_t leases[],
                     uint32_t n)
{
    for (;;) {
        uint64_t seq;
        lease_t l;
        if (g == q->fair->none) {
            if (kyu_sm_index_take_ungrouped(q, now, 1, &seq, &l) == 0)
                return false;
        } else {
            if (group_next(q, g) > now)
                return false;
            seq = g->heap[0].seq;
            kyu_vis_pop(g->heap, &g->heap_n);
            kyu_sm_index_lease(q, seq, &l);
        }
        if (taken(seqs, n, seq))
            continue; /* a lease moved away and back has two entries: taken once */
        seqs[n] = seq;
        leases[n] = l;
        return true;
    }
}

uint32_t kyu_sm_fair_take(kyu_sm_t *self, queue_t *q, uint64_t now, uint32_t max, uint64_t seqs[],
                          lease_t leases[])
{
    kyu_fair_t *f = q->fair;
    fgroup_t *gs[KYU_BATCH_MAX];
    size_t k = 0;
    if (max > KYU_BATCH_MAX)
        max = KYU_BATCH_MAX;
    promote(q, now);
    /* The max least recently served groups with a visible message, in that order. */
    while (k < max && f->ready_n > 0) {
        bool ok = valid(&f->ready[0], ST_READY);
        fgroup_t *g = sched_pop(f->ready, &f->ready_n);
        if (!g || !ok)
            continue;
        g->state = ST_NONE;
        g->served = false;
        gs[k++] = g;
    }
    /* One message from each in turn. */
    uint32_t n = 0;
    bool active[KYU_BATCH_MAX];
    size_t n_active = k;
    for (size_t i = 0; i < k; i++)
        active[i] = true;
    while (n < max && n_active > 0) {
        for (size_t i = 0; i < k && n < max; i++) {
            if (!active[i])
                continue;
            if (!take_one(q, gs[i], now, seqs, leases, n)) {
                active[i] = false;
                n_active--;
                continue;
            }
            n++;
            if (self) {
                gs[i]->tag = ++f->stamp;
                gs[i]->served = true;
            }
        }
    }
    bool any = false;
    for (size_t i = 0; i < k; i++) {
        fgroup_t *g = gs[i];
        if (g->served) {
            uint8_t key[FG_PREFIX + KYU_GROUP_ID_MAX], v[8];
            kyu_put_be64(v, g->tag);
            kyu_sm_put(self, KYU_CF_META, key, fg_key(key, q->qid, g), v, sizeof v);
            g->served = false;
            any = true;
        }
        resched(q, g, now);
    }
    if (any) {
        uint8_t key[FG_PREFIX], v[8];
        kyu_put_be64(v, f->stamp);
        kyu_sm_put(self, KYU_CF_META, key, fg_key(key, q->qid, NULL), v, sizeof v);
    }
    return n;
}

bool kyu_sm_fair_has_visible(queue_t *q, uint64_t now)
{
    kyu_fair_t *f = q->fair;
    while (f->ready_n > 0 && !valid(&f->ready[0], ST_READY))
        sched_pop(f->ready, &f->ready_n);
    if (f->ready_n > 0)
        return true;
    while (f->wait_n > 0 && !valid(&f->wait[0], ST_WAIT))
        sched_pop(f->wait, &f->wait_n);
    return f->wait_n > 0 && f->wait[0].key <= now;
}

uint64_t kyu_sm_fair_next_visible(queue_t *q, uint64_t now)
{
    if (kyu_sm_fair_has_visible(q, now))
        return 0;
    kyu_fair_t *f = q->fair;
    return f->wait_n > 0 ? f->wait[0].key : UINT64_MAX;
}

/* Counts the live entries of g's heap below node i visible at now, up to cap. */
static uint64_t count_due(const queue_t *q, const fgroup_t *g, size_t i, uint64_t now, uint64_t cap)
{
    if (i >= g->heap_n || g->heap[i].visible_at > now || cap == 0)
        return 0;
    uint64_t n = heap_live(q, g->heap[i]) ? 1 : 0;
    n += count_due(q, g, 2 * i + 1, now, cap - n);
    return n + count_due(q, g, 2 * i + 2, now, cap - n);
}

uint64_t kyu_sm_fair_visible_upto(queue_t *q, uint64_t now, uint64_t cap)
{
    kyu_fair_t *f = q->fair;
    uint64_t n = 0;
    for (size_t h = 0; h < 2 && n < cap; h++) {
        sched_t *heap = h == 0 ? f->ready : f->wait;
        size_t len = h == 0 ? f->ready_n : f->wait_n;
        for (size_t i = 0; i < len && n < cap; i++) {
            const sched_t *e = &heap[i];
            if (!valid(e, h == 0 ? ST_READY : ST_WAIT) || (h == 1 && e->key > now))
                continue;
            if (e->g == f->none)
                n += kyu_sm_index_ungrouped_upto(q, now, cap - n);
            else
                n += count_due(q, e->g, 0, now, cap - n);
        }
    }
    return n;
}

/* ---- loading ---- */

/* A tag or stamp ("fg" record), at a load: arg is the qid -> queue map. */
static kyu_code_t load_tag(void *arg, const uint8_t *k, size_t kl, const char *v, size_t vl,
                           kyu_err_t *err)
{
    if (kl < FG_PREFIX || kl > FG_PREFIX + KYU_GROUP_ID_MAX || vl != 8)
        return kyu_err_set(err, KYU_ERR_STORAGE, "corrupt fair group record");
    queue_t *q = zhashx_lookup(arg, (void *)(uintptr_t)kyu_get_be64(k + 2));
    if (!q || !q->fair)
        return KYU_OK; /* a deleted queue's, dropped by its "gc" record */
    kyu_fair_t *f = q->fair;
    if (kl == FG_PREFIX) {
        f->stamp = kyu_get_be64((const uint8_t *)v);
        return KYU_OK;
    }
    char id[KYU_GROUP_ID_MAX + 1];
    memcpy(id, k + FG_PREFIX, kl - FG_PREFIX);
    id[kl - FG_PREFIX] = '\0';
    fgroup_t *g = id[0] ? zhashx_lookup(f->groups, id) : f->none;
    if (g)
        g->tag = kyu_get_be64((const uint8_t *)v);
    return KYU_OK;
}

kyu_code_t kyu_sm_fair_load(kyu_sm_t *self, kyu_err_t *err)
{
    zhashx_t *by_qid = kyu_u64_map_new();
    kyu_code_t rc = KYU_OK;
    zlistx_t *fair = zlistx_new();
    KYU_ASSERT(fair);
    for (queue_t *q = zhashx_first(self->queues); q; q = zhashx_next(self->queues)) {
        zhashx_insert(by_qid, (void *)(uintptr_t)q->qid, q);
        if (q->fair)
            zlistx_add_end(fair, q);
    }
    for (queue_t *q = zlistx_first(fair); q && rc == KYU_OK; q = zlistx_next(fair))
        rc = kyu_sm_walk_groups(self, q, false, kyu_sm_fair_add, err);
    zlistx_destroy(&fair);
    if (rc == KYU_OK) /* the tags and stamps ("fg" records) */
        rc = kyu_sm_walk(self, KYU_CF_META, "fg", 2, "fh", 2, "fair group records", load_tag,
                         by_qid, err);
    zhashx_destroy(&by_qid);
    return rc;
}
