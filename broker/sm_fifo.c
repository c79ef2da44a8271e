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
 * The ready groups' index. Each group keeps when it is ready by itself (its ready_at: the
 * latest visible_at of the messages received at its head, or its first message's when none
 * was, UINT64_MAX when its first message has no lease entry), a function of the state alone
 * (not of the time), and sits in a treap of the queue's groups keyed by its first seq (its
 * heap priority a hash of that seq), each node keeping the least ready_at below it. The
 * ready groups at t, in order, are the in-order walk that skips every subtree whose least
 * ready_at is past t: a receive costs O(groups taken x log groups), the frontend's
 * has_visible and next_visible O(1) (the root's least ready_at), visible_upto O(messages
 * counted x log groups). A group's entry is made right (group_settle) at every change that
 * may move it: a message added to it or dropped from it (send, dead-letter move, delete,
 * retention), and a lease set on one of its messages (receive, change-visibility, release,
 * redrive: kyu_sm_index_set_lease calls kyu_sm_fifo_touch); a purge or the queue's deletion
 * drops the index with the groups. A lease or a delay running out changes nothing: its end
 * was already the group's ready_at. The index is in memory, rebuilt with
 * the groups at load (leases first, then groups), so a restart or a snapshot's install
 * gives the same choices; kyu_sm_fifo_check compares it with a scan of every group.
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

typedef struct fgroup {
    char *id; /* its MessageGroupId ("" for a message that came without one) */
    uint64_t *seqs;
    size_t head, n, cap; /* seqs[head .. head + n), ascending */
    /* its node in the ready index (see the top) */
    struct fgroup *left, *right;
    uint64_t key;      /* its first seq, when it was put in */
    uint64_t ready_at; /* when it is ready by itself (UINT64_MAX: never) */
    uint64_t min_at;   /* the least ready_at of its subtree */
    uint64_t prio;     /* its heap priority: a hash of key */
    bool in_tree;
} fgroup_t;

struct kyu_fifo {
    zhashx_t *groups;    /* group id -> fgroup_t* (owns them) */
    fgroup_t *root;      /* the ready index: a treap of the groups (see the top) */
    zhashx_t *of_seq;    /* seq -> fgroup_t* */
    kyu_fdedup_t *dedup; /* made at its first use (the queue's qid is known then) */
};

/* ---- helpers ---- */

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

void kyu_sm_fifo_init(queue_t *q)
{
    if (q->fifo || !q->is_fifo)
        return;
    q->fifo = calloc(1, sizeof *q->fifo);
    KYU_ASSERT(q->fifo);
    q->fifo->groups = new_groups();
    q->fifo->of_seq = kyu_u64_map_new();
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
    q->fifo->root = NULL;
    q->fifo->groups = new_groups();
    q->fifo->of_seq = kyu_u64_map_new();
}

size_t kyu_sm_fifo_groups(const queue_t *q)
{
    return q->fifo ? zhashx_size(q->fifo->groups) : 0;
}

/* True when group of q holds no message (none sent, or all deleted): a message sent to it
 * is its head, receivable once visible. */
bool kyu_sm_fifo_group_empty(const queue_t *q, const char *group)
{
    const fgroup_t *g = q->fifo ? zhashx_lookup(q->fifo->groups, group ? group : "") : NULL;
    return !g || g->n == 0;
}

/* ---- the ready index (see the top) ---- */

static uint64_t min_of(const fgroup_t *t)
{
    return t ? t->min_at : UINT64_MAX;
}

static void pull(fgroup_t *t)
{
    uint64_t m = t->ready_at, l = min_of(t->left), r = min_of(t->right);
    t->min_at = l < m ? (r < l ? r : l) : (r < m ? r : m);
}

static fgroup_t *rotate_right(fgroup_t *t)
{
    fgroup_t *l = t->left;
    t->left = l->right;
    l->right = t;
    pull(t);
    pull(l);
    return l;
}

static fgroup_t *rotate_left(fgroup_t *t)
{
    fgroup_t *r = t->right;
    t->right = r->left;
    r->left = t;
    pull(t);
    pull(r);
    return r;
}

static fgroup_t *tree_insert(fgroup_t *t, fgroup_t *g)
{
    if (!t) {
        g->left = g->right = NULL;
        pull(g);
        return g;
    }
    if (g->key < t->key) {
        t->left = tree_insert(t->left, g);
        if (t->left->prio > t->prio)
            return rotate_right(t);
    } else {
        t->right = tree_insert(t->right, g);
        if (t->right->prio > t->prio)
            return rotate_left(t);
    }
    pull(t);
    return t;
}

/* a and b joined: every key of a below every key of b */
static fgroup_t *tree_join(fgroup_t *a, fgroup_t *b)
{
    if (!a)
        return b;
    if (!b)
        return a;
    if (a->prio > b->prio) {
        a->right = tree_join(a->right, b);
        pull(a);
        return a;
    }
    b->left = tree_join(a, b->left);
    pull(b);
    return b;
}

static fgroup_t *tree_erase(fgroup_t *t, uint64_t key)
{
    KYU_ASSERT(t); /* it is there: in_tree */
    if (key == t->key)
        return tree_join(t->left, t->right);
    if (key < t->key)
        t->left = tree_erase(t->left, key);
    else
        t->right = tree_erase(t->right, key);
    pull(t);
    return t;
}

static void tree_out(kyu_fifo_t *f, fgroup_t *g)
{
    if (g->in_tree)
        f->root = tree_erase(f->root, g->key);
    g->in_tree = false;
}

/* When g is ready by itself (the top): a function of its messages' leases alone. */
static uint64_t group_ready_at(const queue_t *q, const fgroup_t *g)
{
    uint64_t at = 0;
    const uint64_t *s = g->seqs + g->head;
    for (size_t i = 0; i < g->n; i++) {
        lease_t l;
        if (!kyu_sm_index_lease(q, s[i], &l))
            return UINT64_MAX;
        if (l.gen == 0) { /* never received: the first message, if nothing before it */
            if (i == 0)
                at = l.visible_at;
            break;
        }
        if (l.visible_at > at)
            at = l.visible_at;
    }
    return g->n > 0 ? at : UINT64_MAX;
}

/* g's entry in the index made right, after a change to its messages or their leases. */
static void group_settle(queue_t *q, fgroup_t *g)
{
    kyu_fifo_t *f = q->fifo;
    uint64_t key = g->seqs[g->head], at = group_ready_at(q, g);
    if (g->in_tree && g->key == key && g->ready_at == at)
        return;
    tree_out(f, g);
    g->key = key;
    g->ready_at = at;
    g->prio = kyu_seq_hash((void *)(uintptr_t)key);
    f->root = tree_insert(f->root, g);
    g->in_tree = true;
}

typedef bool (*visit_fn)(fgroup_t *g, void *arg); /* false: stop */

/* Visits the groups ready at now below t, in order of their first seq; false: stopped. */
static bool walk_ready(fgroup_t *t, uint64_t now, visit_fn fn, void *arg)
{
    if (!t || t->min_at > now)
        return true;
    if (!walk_ready(t->left, now, fn, arg))
        return false;
    if (t->ready_at <= now && !fn(t, arg))
        return false;
    return walk_ready(t->right, now, fn, arg);
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
    group_settle(q, g);
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
    if (g->n == 0) {
        tree_out(f, g);
        zhashx_delete(f->groups, g->id);
        return;
    }
    if (g->head >= 64 && g->head > g->n) {
        memmove(g->seqs, g->seqs + g->head, g->n * sizeof *g->seqs);
        g->head = 0;
    }
    group_settle(q, g);
}

void kyu_sm_fifo_touch(queue_t *q, uint64_t seq)
{
    if (!q->fifo)
        return;
    fgroup_t *g = zhashx_lookup(q->fifo->of_seq, (void *)(uintptr_t)seq);
    if (g)
        group_settle(q, g);
}

typedef struct {
    fgroup_t **out;
    size_t n, max;
} collect_t;

static bool collect(fgroup_t *g, void *arg)
{
    collect_t *c = arg;
    c->out[c->n++] = g;
    return c->n < c->max;
}

/* The ready groups with the smallest first seqs, up to max of them, in that order. */
static size_t ready_groups(const queue_t *q, uint64_t now, fgroup_t **out, size_t max)
{
    collect_t c = {out, 0, max};
    if (max > 0)
        walk_ready(q->fifo->root, now, collect, &c);
    return c.n;
}

/* Takes from gs (ready groups, in order) their visible head messages, up to max. */
static uint32_t take_from(const queue_t *q, fgroup_t **gs, size_t ng, uint64_t now, uint32_t max,
                          uint64_t seqs[], lease_t leases[])
{
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

uint32_t kyu_sm_fifo_take(queue_t *q, uint64_t now, uint32_t max, uint64_t seqs[], lease_t leases[])
{
    fgroup_t *gs[KYU_BATCH_MAX];
    if (!q->fifo || max == 0)
        return 0;
    if (max > KYU_BATCH_MAX)
        max = KYU_BATCH_MAX;
    size_t ng = ready_groups(q, now, gs, max);
    return take_from(q, gs, ng, now, max, seqs, leases);
}

typedef struct {
    const queue_t *q;
    uint64_t now, n, cap;
} count_t;

static bool count_group(fgroup_t *g, void *arg)
{
    count_t *c = arg;
    const uint64_t *s = g->seqs + g->head;
    for (size_t i = 0; i < g->n && c->n < c->cap; i++) {
        lease_t l;
        if (!kyu_sm_index_lease(c->q, s[i], &l) || l.visible_at > c->now)
            break;
        c->n++;
    }
    return c->n < c->cap;
}

uint64_t kyu_sm_fifo_visible_upto(queue_t *q, uint64_t now, uint64_t cap)
{
    count_t c = {q, now, 0, cap};
    if (q->fifo && cap > 0)
        walk_ready(q->fifo->root, now, count_group, &c);
    return c.n;
}

bool kyu_sm_fifo_has_visible(queue_t *q, uint64_t now)
{
    return q->fifo && min_of(q->fifo->root) <= now;
}

uint64_t kyu_sm_fifo_next_visible(queue_t *q, uint64_t now)
{
    if (!q->fifo)
        return UINT64_MAX;
    uint64_t next = min_of(q->fifo->root);
    return next <= now ? 0 : next;
}

/* ---- the index checked against a scan of every group (tests) ---- */

static bool check_tree(const fgroup_t *t, const uint64_t *lo, const uint64_t *hi, size_t *count)
{
    if (!t)
        return true;
    (*count)++;
    uint64_t m = t->ready_at;
    if (t->left && t->left->min_at < m)
        m = t->left->min_at;
    if (t->right && t->right->min_at < m)
        m = t->right->min_at;
    if (!t->in_tree || t->min_at != m || (lo && t->key <= *lo) || (hi && t->key >= *hi) ||
        (t->left && t->left->prio > t->prio) || (t->right && t->right->prio > t->prio))
        return false;
    return check_tree(t->left, lo, &t->key, count) && check_tree(t->right, &t->key, hi, count);
}

bool kyu_sm_fifo_check(queue_t *q, uint64_t now)
{
    kyu_fifo_t *f = q->fifo;
    if (!f)
        return true;
    size_t in_tree = 0;
    if (!check_tree(f->root, NULL, NULL, &in_tree) || in_tree != zhashx_size(f->groups))
        return false;
    /* every group's entry as a scan finds it; the ready ones, in order of their first seq */
    fgroup_t *scan[KYU_BATCH_MAX];
    size_t ns = 0;
    for (fgroup_t *g = zhashx_first(f->groups); g; g = zhashx_next(f->groups)) {
        if (!g->in_tree || g->key != g->seqs[g->head] || g->ready_at != group_ready_at(q, g))
            return false;
        if (g->ready_at > now)
            continue;
        size_t pos = ns;
        while (pos > 0 && scan[pos - 1]->key > g->key)
            pos--;
        if (pos >= KYU_BATCH_MAX)
            continue;
        if (ns == KYU_BATCH_MAX)
            ns--;
        memmove(scan + pos + 1, scan + pos, (ns - pos) * sizeof *scan);
        scan[pos] = g;
        ns++;
    }
    fgroup_t *idx[KYU_BATCH_MAX];
    size_t ni = ready_groups(q, now, idx, KYU_BATCH_MAX);
    return ni == ns && memcmp(idx, scan, ns * sizeof *scan) == 0;
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

/* A FIFO deduplication record ("fd"), at a load: arg is the qid -> queue map. */
static kyu_code_t load_dedup_record(void *arg, const uint8_t *k, size_t kl, const char *v,
                                    size_t vl, kyu_err_t *err)
{
    char key[KYU_FDEDUP_KEY_MAX], id[KYU_UUID_LEN + 1];
    uint64_t t, seq;
    if (!kyu_fdedup_parse(k, kl, FD_PREFIX, v, vl, key, &t, &seq, id))
        return kyu_err_set(err, KYU_ERR_STORAGE, "corrupt FIFO deduplication record");
    queue_t *q = zhashx_lookup(arg, (void *)(uintptr_t)kyu_get_be64(k + 2));
    if (!q || !q->fifo)
        return KYU_OK; /* a deleted queue's, dropped by its "gc" record */
    kyu_fdedup_insert(dedup_of(q), key, t, seq, id);
    return KYU_OK;
}

static kyu_code_t load_dedup(kyu_sm_t *self, zhashx_t *by_qid, kyu_err_t *err)
{
    kyu_code_t rc = kyu_sm_walk(self, KYU_CF_META, "fd", 2, "fe", 2, "FIFO deduplication records",
                                load_dedup_record, by_qid, err);
    for (queue_t *q = zhashx_first(self->queues); q; q = zhashx_next(self->queues))
        if (q->fifo)
            kyu_fdedup_loaded(q->fifo->dedup);
    return rc;
}

/* A message of a FIFO queue's records into its group, at a load (kyu_sm_walk_groups). */
static void load_group(kyu_sm_t *self, queue_t *q, uint64_t seq, const char *group, size_t glen)
{
    (void)self;
    kyu_sm_fifo_add(q, seq, group, glen);
}

kyu_code_t kyu_sm_fifo_load(kyu_sm_t *self, kyu_err_t *err)
{
    zhashx_t *by_qid = kyu_u64_map_new();
    kyu_code_t rc = KYU_OK;
    for (queue_t *q = zhashx_first(self->queues); q; q = zhashx_next(self->queues))
        zhashx_insert(by_qid, (void *)(uintptr_t)q->qid, q);
    zlistx_t *fifos = zlistx_new();
    KYU_ASSERT(fifos);
    for (queue_t *q = zhashx_first(self->queues); q; q = zhashx_next(self->queues))
        if (q->fifo)
            zlistx_add_end(fifos, q);
    for (queue_t *q = zlistx_first(fifos); q && rc == KYU_OK; q = zlistx_next(fifos))
        rc = kyu_sm_walk_groups(self, q, true, load_group, err);
    zlistx_destroy(&fifos);
    if (rc == KYU_OK)
        rc = load_dedup(self, by_qid, err);
    zhashx_destroy(&by_qid);
    return rc;
}
