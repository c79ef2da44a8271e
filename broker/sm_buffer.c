/* sm_buffer: the state machine's writes, held in memory and written to the state database
 * in one batch every so many entries (write-behind).
 *
 * Every write an entry makes (kyu_sm_put, kyu_sm_del) lands in a hash of key -> latest value
 * or delete. A later write to the same key replaces the earlier one, and a delete of a key
 * the database never held (a message sent since the last flush; its lease record) drops it
 * altogether: a message received and deleted between two flushes never reaches RocksDB, so
 * the memtable inserts, the state WAL, the flushes and compactions it used to cost (most of
 * a broker's CPU under W2) are gone. Reads go to the buffer first, then to the database.
 *
 * kyu_sm_flush writes the whole buffer, with the applied index it has reached, in one
 * RocksDB write: the state database always holds the state of a whole entry (the persisted
 * index, kyu_sm_persisted_index), never part of one. A crash loses the buffer; the entries
 * after the persisted index are applied again from the log at start, which is why the
 * replica never drops log entries past it (maybe_compact, replica.c). Flushed when the buffer
 * holds KYU_SM_BUFFER_BYTES or KYU_SM_BUFFER_ENTRIES entries, before a queue's data is
 * dropped, before a snapshot is served, at a clean shutdown, and before the first entry whose
 * time is a minute past the oldest buffered one.
 *
 * A range delete (kyu_sm_del_range: the request keys of an expired time bucket, sm_dedup.c)
 * is buffered too, as a range: the buffered writes in it are dropped when it is made, reads
 * of a key in it find nothing (the write in flight and the database hold what it deletes),
 * and the write puts it in the batch before the buffer's other writes (those made after it).
 */
#include "sm_internal.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

/* A range delete: keys from lo (included) to hi (excluded), each the column family's number
 * then the key, as an item's. */
#define RANGE_KEY_MAX 32
typedef struct {
    uint16_t lolen, hilen;
    uint8_t lo[1 + RANGE_KEY_MAX], hi[1 + RANGE_KEY_MAX];
} kyu_sm_range_t;

struct kyu_sm_item {
    uint64_t hash; /* of key (keyed SipHash: request keys come from clients) */
    char *val;     /* NULL for a delete or an empty value; in the table's value arena */
    uint32_t vlen;
    uint32_t vcap; /* the bytes at val: a later value that fits is written there */
    bool put;      /* else a delete */
    bool absent;   /* the database holds no value under this key: a delete drops the item */
    bool dropped;  /* deleted from its table (its place in the table's order is skipped) */
    uint16_t klen;
    uint8_t key[]; /* the column family's number, then the key */
};

#define ITEM_OVERHEAD 96 /* the item, its hash slot and its arena's slack, roughly */

/* The items and values of a table are cut from two arenas (the items' keys close together
 * for the sort before a write, the values apart), given back all at once when the table is
 * emptied: a write of a key used to cost a malloc and a free for its item and another pair
 * for its value, the frees (table_clear) some 8% of the event loop under a send load. Space
 * of a value replaced by a larger one, or of an item deleted, stays used until then; the
 * bytes the arenas hand out are what the buffer counts (buffer_bytes), so it is still
 * written at KYU_SM_BUFFER_BYTES. */
#define ARENA_BLOCK (256u << 10)
#define ARENA_KEEP (8u << 20) /* an emptied arena keeps this much for the next buffer */

typedef struct arena_block {
    struct arena_block *next;
    size_t used, cap;
    max_align_t data[]; /* cap bytes */
} arena_block_t;

typedef struct {
    arena_block_t *head; /* blocks, the one being cut first */
    arena_block_t *free; /* emptied blocks, for the next cuts */
} arena_t;

/* size bytes, 8-aligned; the caller counts them. */
static void *arena_alloc(arena_t *a, size_t size)
{
    size = (size + 7) & ~(size_t)7;
    arena_block_t *b = a->head;
    if (!b || b->cap - b->used < size) {
        if (a->free && a->free->cap >= size) {
            b = a->free;
            a->free = b->next;
        } else {
            size_t cap = size > ARENA_BLOCK ? size : ARENA_BLOCK;
            b = malloc(sizeof *b + cap);
            KYU_ASSERT(b);
            b->cap = cap;
        }
        b->used = 0;
        b->next = a->head;
        a->head = b;
    }
    void *p = (char *)b->data + b->used;
    b->used += size;
    return p;
}

/* Empties the arena: up to ARENA_KEEP of its blocks are kept for the next cuts. */
static void arena_clear(arena_t *a)
{
    size_t kept = 0;
    arena_block_t *keep = NULL;
    for (arena_block_t *lists[2] = {a->head, a->free}, **l = lists; l < lists + 2; l++)
        for (arena_block_t *b = *l, *next; b; b = next) {
            next = b->next;
            if (b->cap == ARENA_BLOCK && kept + b->cap <= ARENA_KEEP) {
                b->next = keep;
                keep = b;
                kept += b->cap;
            } else {
                free(b);
            }
        }
    a->head = NULL;
    a->free = keep;
}

static const uint8_t hash_key[crypto_shorthash_KEYBYTES] = "kyu-state-buffer";

static uint64_t key_hash(const uint8_t *key, size_t klen)
{
    uint8_t h[crypto_shorthash_BYTES];
    crypto_shorthash(h, key, klen, hash_key);
    uint64_t v;
    memcpy(&v, h, sizeof v);
    return v;
}

/* The buffer's hash table: open addressing, linear probing, a power of two of slots. A table
 * keeps its slots when emptied (kyu_sm_table_clear), and the buffer and the write in flight
 * take turns with two tables (the spare): under load the buffer fills to the same size every
 * few thousand entries, and a table grown from nothing each time (czmq's zhashx) rehashed
 * its way up through fresh pages, zeroed by the kernel, some 8% of the event loop under W2. */
typedef struct {
    uint64_t hash;       /* of the item's key: a probe compares it without touching the item */
    kyu_sm_item_t *item; /* NULL: empty; TOMB: an item deleted */
} slot_t;

struct kyu_sm_table {
    slot_t *slot;
    size_t cap;  /* 0 or a power of two */
    size_t n;    /* items */
    size_t used; /* items and tombstones: at most 3/4 of the slots */
    arena_t items, vals;
    /* The items in the order they were made (dropped ones included, and skipped): the
     * write's sort starts from it (sort_items), since most keys arrive in key order. */
    kyu_sm_item_t **order;
    size_t order_n, order_cap;
    /* The range deletes made since it was emptied (kyu_sm_del_range), oldest first. */
    kyu_sm_range_t *ranges;
    size_t n_ranges, ranges_cap;
};

static kyu_sm_item_t tomb_item;
#define TOMB (&tomb_item)
/* What a lookup finds of a key a buffered range delete covers: a delete. */
static kyu_sm_item_t range_deleted_item;
#define RANGE_DELETED (&range_deleted_item)

static kyu_sm_table_t *table_new(void)
{
    kyu_sm_table_t *t = calloc(1, sizeof *t);
    KYU_ASSERT(t);
    return t;
}

/* Frees the items (their arenas); keeps the slots. */
static void table_clear(kyu_sm_table_t *t)
{
    arena_clear(&t->items);
    arena_clear(&t->vals);
    t->order_n = 0;
    t->n_ranges = 0;
    if (t->used == 0)
        return;
    memset(t->slot, 0, t->cap * sizeof *t->slot);
    t->n = t->used = 0;
}

static void table_destroy(kyu_sm_table_t **tp)
{
    kyu_sm_table_t *t = *tp;
    if (!t)
        return;
    table_clear(t);
    arena_clear(&t->items); /* the blocks kept */
    arena_clear(&t->vals);
    for (arena_block_t *b = t->items.free, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    for (arena_block_t *b = t->vals.free, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    free(t->slot);
    free(t->order);
    free(t->ranges);
    free(t);
    *tp = NULL;
}

static kyu_sm_item_t *table_find(const kyu_sm_table_t *t, uint64_t h, const uint8_t *key,
                                 size_t klen)
{
    if (t->cap == 0)
        return NULL;
    size_t mask = t->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        const slot_t *s = &t->slot[i];
        if (!s->item)
            return NULL;
        if (s->hash == h && s->item != TOMB && s->item->klen == klen &&
            memcmp(s->item->key, key, klen) == 0)
            return s->item;
    }
}

static void table_put(kyu_sm_table_t *t, kyu_sm_item_t *it)
{
    size_t mask = t->cap - 1, i = it->hash & mask;
    while (t->slot[i].item && t->slot[i].item != TOMB)
        i = (i + 1) & mask;
    if (!t->slot[i].item)
        t->used++;
    t->slot[i] = (slot_t){.hash = it->hash, .item = it};
    t->n++;
}

/* Inserts an item whose key is not in the table, growing it (or dropping its tombstones) to
 * keep it at most 3/4 full. A table of the buffer's largest size (32 MiB of writes, some
 * 350,000 keys at most: ITEM_OVERHEAD) has 2^20 slots, 16 MiB. */
static void table_insert(kyu_sm_table_t *t, kyu_sm_item_t *it)
{
    if ((t->used + 1) * 4 > t->cap * 3) {
        size_t cap = t->cap ? t->cap : 1024;
        while ((t->n + 1) * 2 > cap) /* at most half full after: room before the next */
            cap *= 2;
        slot_t *old = t->slot;
        size_t old_cap = t->cap;
        t->slot = calloc(cap, sizeof *t->slot);
        KYU_ASSERT(t->slot);
        t->cap = cap;
        t->n = t->used = 0;
        for (size_t i = 0; i < old_cap; i++)
            if (old[i].item && old[i].item != TOMB)
                table_put(t, old[i].item);
        free(old);
    }
    table_put(t, it);
    if (t->order_n == t->order_cap) {
        t->order_cap = t->order_cap ? t->order_cap * 2 : 4096;
        t->order = realloc(t->order, t->order_cap * sizeof *t->order);
        KYU_ASSERT(t->order);
    }
    t->order[t->order_n++] = it;
}

static void table_delete(kyu_sm_table_t *t, kyu_sm_item_t *it)
{
    size_t mask = t->cap - 1;
    for (size_t i = it->hash & mask;; i = (i + 1) & mask) {
        KYU_ASSERT(t->slot[i].item); /* it is in the table */
        if (t->slot[i].item == it) {
            t->slot[i].item->dropped = true;
            t->slot[i].item = TOMB; /* its bytes stay in the arena until the table is emptied */
            t->n--;
            return;
        }
    }
}

/* Column family, then key bytes (RocksDB's order within a column family). */
static int key_order(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
    int c = memcmp(a, b, al < bl ? al : bl);
    return c ? c : (al > bl) - (al < bl);
}

static int item_order(const void *a, const void *b)
{
    const kyu_sm_item_t *x = *(kyu_sm_item_t *const *)a, *y = *(kyu_sm_item_t *const *)b;
    return key_order(x->key, x->klen, y->key, y->klen);
}

static bool range_has(const kyu_sm_range_t *r, const uint8_t *key, size_t klen)
{
    return key_order(key, klen, r->lo, r->lolen) >= 0 && key_order(key, klen, r->hi, r->hilen) < 0;
}

/* True when a range delete of table t covers the key (column family's number, then key). */
static bool ranges_have(const kyu_sm_table_t *t, const uint8_t *key, size_t klen)
{
    for (size_t i = 0; i < t->n_ranges; i++)
        if (range_has(&t->ranges[i], key, klen))
            return true;
    return false;
}

void kyu_sm_buffer_init(kyu_sm_t *self)
{
    if (self->spare) { /* the table of the last write, emptied */
        self->buffer = self->spare;
        self->spare = NULL;
    } else {
        self->buffer = table_new();
    }
}

void kyu_sm_buffer_drop(kyu_sm_t *self)
{
    table_clear(self->buffer);
    self->buffer_bytes = 0;
    self->buffer_entries = 0;
    self->buffer_oldest_ms = 0;
}

void kyu_sm_buffer_free(kyu_sm_t *self)
{
    kyu_sm_writer_stop(self);
    table_destroy(&self->buffer);
    table_destroy(&self->spare);
}

/* A probe for a lookup: the column family's number, then the key, and its hash. */
typedef struct {
    uint64_t hash;
    uint16_t klen;
    uint8_t key[1 + 512]; /* keys up to 512 bytes: a topic's is 2 + 256 (op_topic.c) */
} probe_t;

static void probe_make(probe_t *p, kyu_cf_t c, const void *k, size_t kl)
{
    KYU_ASSERT(kl <= sizeof p->key - 1);
    p->klen = (uint16_t)(1 + kl);
    p->key[0] = (uint8_t)c;
    memcpy(p->key + 1, k, kl);
    p->hash = key_hash(p->key, p->klen);
}

/* The latest buffered write of a probed key: in the buffer, else in the write in flight;
 * RANGE_DELETED when a range delete of either, newer than any write of the key there, covers
 * it; NULL when neither holds anything of it. */
static const kyu_sm_item_t *lookup(const kyu_sm_t *self, const probe_t *p)
{
    const kyu_sm_table_t *tables[2] = {self->buffer, self->flushing};
    for (int i = 0; i < 2 && tables[i]; i++) {
        const kyu_sm_item_t *it = table_find(tables[i], p->hash, p->key, p->klen);
        if (it)
            return it;
        if (tables[i]->n_ranges && ranges_have(tables[i], p->key, p->klen))
            return RANGE_DELETED;
    }
    return NULL;
}

static const kyu_sm_item_t *find_any(kyu_sm_t *self, kyu_cf_t c, const void *k, size_t kl,
                                     probe_t *p)
{
    probe_make(p, c, k, kl);
    return lookup(self, p);
}

/* The item of a probed key in the buffer, made (empty) if there is none. */
static kyu_sm_item_t *item_at(kyu_sm_t *self, const probe_t *p, bool absent)
{
    kyu_sm_item_t *it = table_find(self->buffer, p->hash, p->key, p->klen);
    if (it) {
        it->vlen = 0; /* its value's bytes (vcap) are kept for the next one */
        return it;
    }
    it = arena_alloc(&self->buffer->items, sizeof *it + p->klen);
    *it = (kyu_sm_item_t){.hash = p->hash, .absent = absent, .klen = p->klen};
    memcpy(it->key, p->key, p->klen);
    table_insert(self->buffer, it);
    self->buffer_bytes += ITEM_OVERHEAD + p->klen - 1u;
    return it;
}

static kyu_sm_item_t *item_for(kyu_sm_t *self, kyu_cf_t c, const void *k, size_t kl, bool absent)
{
    probe_t p;
    probe_make(&p, c, k, kl);
    return item_at(self, &p, absent);
}

static void set_value(kyu_sm_t *self, kyu_sm_item_t *it, const void *v1, size_t l1, const void *v2,
                      size_t l2)
{
    it->put = true;
    if (l1 + l2 > it->vcap) {
        it->val = arena_alloc(&self->buffer->vals, l1 + l2);
        it->vcap = (uint32_t)(l1 + l2);
        self->buffer_bytes += it->vcap;
    }
    if (l1 + l2 > 0) {
        if (l1)
            memcpy(it->val, v1, l1);
        if (l2)
            memcpy(it->val + l1, v2, l2);
    }
    it->vlen = (uint32_t)(l1 + l2);
}

void kyu_sm_put2(kyu_sm_t *self, kyu_cf_t c, const void *k, size_t kl, const void *v1, size_t l1,
                 const void *v2, size_t l2, bool absent)
{
    set_value(self, item_for(self, c, k, kl, absent), v1, l1, v2, l2);
}

void kyu_sm_put_pair(kyu_sm_t *self, const kyu_sm_put_t *a, const kyu_sm_put_t *b)
{
    /* Both keys hashed and both slots asked for first: a table of megabytes misses the
     * cache on nearly every lookup (most of table_find's time), and the two misses then
     * overlap instead of following each other. */
    probe_t pa, pb;
    probe_make(&pa, a->cf, a->k, a->kl);
    probe_make(&pb, b->cf, b->k, b->kl);
    const kyu_sm_table_t *t = self->buffer;
    if (t->cap) {
        __builtin_prefetch(&t->slot[pa.hash & (t->cap - 1)]);
        __builtin_prefetch(&t->slot[pb.hash & (t->cap - 1)]);
    }
    set_value(self, item_at(self, &pa, a->absent), a->v1, a->l1, a->v2, a->l2);
    set_value(self, item_at(self, &pb, b->absent), b->v1, b->l1, b->v2, b->l2);
}

void kyu_sm_put(kyu_sm_t *self, kyu_cf_t c, const void *k, size_t kl, const void *v, size_t vl)
{
    kyu_sm_put2(self, c, k, kl, v, vl, NULL, 0, false);
}

static void del_at(kyu_sm_t *self, const probe_t *p)
{
    kyu_sm_item_t *it = table_find(self->buffer, p->hash, p->key, p->klen);
    if (it && it->absent) { /* the database never saw it: nothing to write */
        table_delete(self->buffer, it);
        return;
    }
    it = item_at(self, p, false);
    it->put = false;
}

void kyu_sm_del(kyu_sm_t *self, kyu_cf_t c, const void *k, size_t kl)
{
    probe_t p;
    probe_make(&p, c, k, kl);
    del_at(self, &p);
}

void kyu_sm_del_pair(kyu_sm_t *self, kyu_cf_t ca, kyu_cf_t cb, const void *k, size_t kl)
{
    probe_t pa, pb;
    probe_make(&pa, ca, k, kl);
    probe_make(&pb, cb, k, kl);
    const kyu_sm_table_t *t = self->buffer;
    if (t->cap) { /* as in kyu_sm_put_pair */
        __builtin_prefetch(&t->slot[pa.hash & (t->cap - 1)]);
        __builtin_prefetch(&t->slot[pb.hash & (t->cap - 1)]);
    }
    del_at(self, &pa);
    del_at(self, &pb);
}

char *kyu_sm_read(kyu_sm_t *self, kyu_cf_t c, const void *k, size_t kl, size_t *vl, kyu_err_t *err)
{
    probe_t p;
    const kyu_sm_item_t *it = find_any(self, c, k, kl, &p);
    if (it) {
        if (!it->put)
            return NULL;
        char *v = malloc(it->vlen ? it->vlen : 1);
        KYU_ASSERT(v);
        if (it->vlen)
            memcpy(v, it->val, it->vlen);
        *vl = it->vlen;
        return v;
    }
    char *rerr = NULL;
    char *v = rocksdb_get_cf(self->db, kyu_store_readopts(self->store),
                             kyu_store_cf(self->store, c), k, kl, vl, &rerr);
    if (rerr) {
        kyu_err_set(err, KYU_ERR_STORAGE, "read failed: %s", rerr);
        free(rerr);
    }
    return v;
}

bool kyu_sm_read_many(kyu_sm_t *self, kyu_cf_t c, const uint8_t *const *keys, const size_t *klens,
                      size_t n, char **vals, size_t *vlens, kyu_err_t *err)
{
    KYU_ASSERT(n <= KYU_BATCH_MAX);
    const char *miss_keys[KYU_BATCH_MAX];
    size_t miss_lens[KYU_BATCH_MAX], miss[KYU_BATCH_MAX], m = 0;
    probe_t ps[KYU_BATCH_MAX];
    const kyu_sm_table_t *t = self->buffer;
    for (size_t i = 0; i < n; i++) { /* the slots asked for at once, as in kyu_sm_put_pair */
        probe_make(&ps[i], c, keys[i], klens[i]);
        if (t->cap)
            __builtin_prefetch(&t->slot[ps[i].hash & (t->cap - 1)]);
    }
    for (size_t i = 0; i < n; i++) {
        const kyu_sm_item_t *it = lookup(self, &ps[i]);
        vals[i] = NULL;
        vlens[i] = 0;
        if (!it) {
            miss_keys[m] = (const char *)keys[i];
            miss_lens[m] = klens[i];
            miss[m++] = i;
        } else if (it->put) {
            vals[i] = malloc(it->vlen ? it->vlen : 1);
            KYU_ASSERT(vals[i]);
            if (it->vlen)
                memcpy(vals[i], it->val, it->vlen);
            vlens[i] = it->vlen;
        }
    }
    if (m == 0)
        return true;
    /* One MultiGet: RocksDB looks the keys up together (one pass over the memtables and
     * each table's index and filter) where a Get per key repeated all of it. */
    rocksdb_pinnableslice_t *found[KYU_BATCH_MAX];
    char *errs[KYU_BATCH_MAX];
    rocksdb_batched_multi_get_cf(self->db, kyu_store_readopts(self->store),
                                 kyu_store_cf(self->store, c), m, miss_keys, miss_lens, found, errs,
                                 false);
    bool ok = true;
    for (size_t j = 0; j < m; j++) {
        if (errs[j]) {
            if (ok)
                kyu_err_set(err, KYU_ERR_STORAGE, "read failed: %s", errs[j]);
            ok = false;
            free(errs[j]);
        }
        if (found[j]) {
            size_t len = 0;
            const char *v = rocksdb_pinnableslice_value(found[j], &len);
            char *copy = malloc(len ? len : 1);
            KYU_ASSERT(copy);
            if (len)
                memcpy(copy, v, len);
            vals[miss[j]] = copy;
            vlens[miss[j]] = len;
            rocksdb_pinnableslice_destroy(found[j]);
        }
    }
    return ok;
}

void kyu_sm_del_range(kyu_sm_t *self, kyu_cf_t c, const void *lo, size_t lol, const void *hi,
                      size_t hil)
{
    KYU_ASSERT(lol <= RANGE_KEY_MAX && hil <= RANGE_KEY_MAX);
    kyu_sm_table_t *t = self->buffer;
    kyu_sm_range_t r = {.lolen = (uint16_t)(1 + lol), .hilen = (uint16_t)(1 + hil)};
    r.lo[0] = r.hi[0] = (uint8_t)c;
    memcpy(r.lo + 1, lo, lol);
    memcpy(r.hi + 1, hi, hil);
    /* The buffered writes it covers go (it is written before the others): a walk of the
     * buffer, once per range delete (a request key bucket's: one every KYU_DEDUP_WINDOW_MS / 4
     * of command time). */
    for (size_t j = 0; j < t->order_n; j++) {
        kyu_sm_item_t *it = t->order[j];
        if (!it->dropped && range_has(&r, it->key, it->klen))
            table_delete(t, it);
    }
    if (t->n_ranges == t->ranges_cap) {
        t->ranges_cap = t->ranges_cap ? t->ranges_cap * 2 : 4;
        t->ranges = realloc(t->ranges, t->ranges_cap * sizeof *t->ranges);
        KYU_ASSERT(t->ranges);
    }
    t->ranges[t->n_ranges++] = r;
    self->buffer_bytes += sizeof r;
}

bool kyu_sm_buffer_deletes(kyu_sm_t *self, kyu_cf_t c, const void *k, size_t kl)
{
    probe_t p;
    const kyu_sm_item_t *it = find_any(self, c, k, kl, &p);
    return it && !it->put;
}

/* An item's bucket for sort_items: its first 3 bytes (the column family's number and two of
 * the key: "rk", a queue id's high bytes...), and how many it has if fewer, as one
 * number whose order is the keys' (a key that ends first comes first). */
static uint32_t item_prefix(const kyu_sm_item_t *it)
{
    uint32_t p = 0;
    for (int i = 0; i < 3; i++)
        p = p << 8 | (i < it->klen ? it->key[i] : 0);
    return p << 8 | (it->klen < 3 ? it->klen : 3);
}

#define SORT_BUCKETS 32

/* Sorts items (in the order they were made) into key order, as qsort with item_order would.
 * The keys of a buffer come as a few streams each in key order, interleaved (a send makes a
 * message, a lease, and a request key's record: "rk" bucket client key;
 * sequence numbers, times and a client's keys grow): items are put in buckets of their first
 * bytes (item_prefix), the buckets in their order, and only a bucket whose items did not come
 * in order is sorted. qsort of them all was a sixth of the state writer under a send load.
 * More buckets than SORT_BUCKETS: qsort. */
static void sort_items(kyu_sm_item_t **items, size_t n)
{
    struct {
        uint32_t prefix;
        bool sorted;
        size_t count, at;
        const kyu_sm_item_t *last;
    } b[SORT_BUCKETS];
    size_t nb = 0, last = 0;
    uint32_t *of = malloc((n ? n : 1) * sizeof *of); /* each item's bucket */
    KYU_ASSERT(of);
    for (size_t i = 0; i < n; i++) {
        uint32_t p = item_prefix(items[i]);
        if (nb == 0 || b[last].prefix != p) {
            size_t j = 0;
            while (j < nb && b[j].prefix != p)
                j++;
            if (j == nb) {
                if (nb == SORT_BUCKETS) {
                    free(of);
                    qsort(items, n, sizeof *items, item_order);
                    return;
                }
                b[nb].prefix = p, b[nb].sorted = true, b[nb].count = 0, b[nb].last = NULL;
                nb++;
            }
            last = j;
        }
        if (b[last].last && item_order(&b[last].last, &items[i]) > 0)
            b[last].sorted = false;
        b[last].last = items[i];
        b[last].count++;
        of[i] = (uint32_t)last;
    }
    /* the buckets in key order (a few: insertion sort), then where each one starts */
    size_t rank[SORT_BUCKETS];
    for (size_t i = 0; i < nb; i++) {
        size_t j = i;
        while (j > 0 && b[rank[j - 1]].prefix > b[i].prefix) {
            rank[j] = rank[j - 1];
            j--;
        }
        rank[j] = i;
    }
    size_t at = 0;
    for (size_t r = 0; r < nb; r++) {
        b[rank[r]].at = at;
        at += b[rank[r]].count;
    }
    kyu_sm_item_t **out = malloc((n ? n : 1) * sizeof *out);
    KYU_ASSERT(out);
    for (size_t i = 0; i < n; i++)
        out[b[of[i]].at++] = items[i];
    memcpy(items, out, n * sizeof *items);
    free(out);
    free(of);
    for (size_t i = 0; i < nb; i++)
        if (!b[i].sorted) /* at is now the bucket's end */
            qsort(items + b[i].at - b[i].count, b[i].count, sizeof *items, item_order);
}

/* Writes a buffer's range deletes, then its items (in any order), as one RocksDB write; NULL
 * or the error (caller frees). Runs on the writer thread when there is one, so it touches
 * only what it is given. */
static char *write_items(kyu_store_t *store, rocksdb_t *db, rocksdb_writeoptions_t *wopts,
                         rocksdb_writebatch_t *wb, const kyu_sm_range_t *ranges, size_t n_ranges,
                         kyu_sm_item_t **items, size_t n)
{
    /* In key order: RocksDB's memtable inserts keys that follow each other far faster than
     * keys in the hash's order (its skiplist reuses the place it found last). */
    sort_items(items, n);
    rocksdb_writebatch_clear(wb);
    /* First: the items a range covers were made after it (kyu_sm_del_range) */
    for (size_t i = 0; i < n_ranges; i++) {
        const kyu_sm_range_t *r = &ranges[i];
        rocksdb_writebatch_delete_range_cf(wb, kyu_store_cf(store, (kyu_cf_t)r->lo[0]),
                                           (const char *)r->lo + 1, r->lolen - 1u,
                                           (const char *)r->hi + 1, r->hilen - 1u);
    }
    for (size_t i = 0; i < n; i++) {
        const kyu_sm_item_t *it = items[i];
        rocksdb_column_family_handle_t *h = kyu_store_cf(store, (kyu_cf_t)it->key[0]);
        const char *k = (const char *)it->key + 1;
        if (it->put)
            rocksdb_writebatch_put_cf(wb, h, k, it->klen - 1u, it->val ? it->val : "", it->vlen);
        else
            rocksdb_writebatch_delete_cf(wb, h, k, it->klen - 1u);
    }
    kyu_store_mark_batch(store, wb);
    char *rerr = NULL;
    rocksdb_write(db, wopts, wb, &rerr);
    rocksdb_writebatch_clear(wb);
    return rerr;
}

/* After a write: the index the state's tables hold into *durable, flushing the memtables
 * (all column families at once) first when it is behind need, the index the replica wants
 * to compact its log to (kyu_sm_want_durable). RocksDB flushes by itself when a memtable
 * fills (under a send load, every 16 MiB of bodies); a load whose messages are deleted
 * before they are written fills none, and the log would keep every entry after the tables'
 * index. NULL or the error (caller frees). */
static char *make_durable(kyu_store_t *store, uint64_t need, uint64_t *durable)
{
    kyu_err_t err;
    if (kyu_store_state_durable(store, durable, &err) != KYU_OK)
        return strdup(err.msg);
    if (*durable >= need)
        return NULL;
    if (kyu_store_flush_state(store, durable, &err) != KYU_OK)
        return strdup(err.msg);
    if (*durable < need) { /* the write just made is not in the tables: the flush failed */
        char msg[160];
        snprintf(msg, sizeof msg,
                 "flushing the state: its tables hold index %llu after a flush, not %llu",
                 (unsigned long long)*durable, (unsigned long long)need);
        return strdup(msg);
    }
    return NULL;
}

/* The writer thread (kyu_sm_write_behind): it takes one buffer at a time, sorts and writes it
 * while the event loop applies the next entries into a new buffer. Reads see the buffer in
 * flight between the new one and the database (find), so the state they see is the same
 * whether its write has finished or not; only the persisted index waits for it. */
struct kyu_sm_writer {
    pthread_t thread;
    pid_t tid; /* the thread's id, once it has started (0 before) */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop, busy; /* busy: a job is handed over and not written yet */
    /* the job */
    kyu_store_t *store;
    rocksdb_t *db;
    rocksdb_writeoptions_t *wopts;
    rocksdb_writebatch_t *wb;
    const kyu_sm_range_t *ranges; /* the table's, read-only while it is written */
    size_t n_ranges;
    kyu_sm_item_t **items;
    size_t n;
    uint64_t need;    /* the applied index the tables must hold after it (make_durable) */
    char *error;      /* the job's result: NULL when written */
    uint64_t durable; /* and the applied index the tables hold */
};

/* The writer runs at SCHED_IDLE (else, where that is refused, at nice KYU_SM_WRITER_NICE): its
 * write is a burst of CPU (a sort and thousands of memtable inserts, 14-23 ms per 8,192 LAT
 * entries) that nothing waits for, except the loop at the few points where the database must
 * be complete. At the loop's priority it took a core from the loop, the storage thread and
 * libzmq's I/O threads for that long (docs/BENCHMARKS.md, "LAT and W1 on one node"). Niced it
 * still did: the kernel (EEVDF, 6.x) lets a running task finish its slice before a woken one
 * preempts it, and a thread woken on the writer's core (the loop after its fdatasync, an I/O
 * thread) waited up to a 4 ms tick there while the other core sat idle (docs/BENCHMARKS.md,
 * "Branch latp99"). A SCHED_IDLE task is preempted at once by any woken normal one, and its
 * core counts as idle when a woken thread is placed. When the loop does wait for it, the loop
 * is not runnable, so the writer has the core. */
static void *writer_main(void *arg)
{
    kyu_sm_writer_t *w = arg;
    pid_t tid = (pid_t)syscall(SYS_gettid);
    pthread_setname_np(pthread_self(), "kyu-sm-writer");
    /* SCHED_IDLE, else KYU_SM_WRITER_NICE above the nice value it inherited from the loop;
     * best effort: a refused priority leaves the thread as it was */
    struct sched_param idle = {.sched_priority = 0};
    if (sched_setscheduler((pid_t)tid, SCHED_IDLE, &idle) != 0) {
        errno = 0;
        int nice = getpriority(PRIO_PROCESS, (id_t)tid);
        if (errno == 0)
            (void)setpriority(PRIO_PROCESS, (id_t)tid,
                              nice + KYU_SM_WRITER_NICE > 19 ? 19 : nice + KYU_SM_WRITER_NICE);
    }
    KYU_ASSERT(pthread_mutex_lock(&w->mu) == 0);
    w->tid = tid;
    KYU_ASSERT(pthread_cond_broadcast(&w->cv) == 0);
    for (;;) {
        while (!w->stop && !w->busy)
            KYU_ASSERT(pthread_cond_wait(&w->cv, &w->mu) == 0);
        if (!w->busy) /* stopped, with nothing left to write */
            break;
        KYU_ASSERT(pthread_mutex_unlock(&w->mu) == 0);
        char *error =
            write_items(w->store, w->db, w->wopts, w->wb, w->ranges, w->n_ranges, w->items, w->n);
        uint64_t durable = 0;
        if (!error)
            error = make_durable(w->store, w->need, &durable);
        KYU_ASSERT(pthread_mutex_lock(&w->mu) == 0);
        w->error = error;
        w->durable = durable;
        w->busy = false;
        KYU_ASSERT(pthread_cond_broadcast(&w->cv) == 0);
    }
    KYU_ASSERT(pthread_mutex_unlock(&w->mu) == 0);
    return NULL;
}

/* Ends the write in flight: waits for it when wait, else only looks whether it is done. */
static kyu_code_t harvest(kyu_sm_t *self, bool wait, kyu_err_t *err)
{
    kyu_sm_writer_t *w = self->writer;
    if (!self->flushing)
        return KYU_OK;
    KYU_ASSERT(pthread_mutex_lock(&w->mu) == 0);
    while (wait && w->busy)
        KYU_ASSERT(pthread_cond_wait(&w->cv, &w->mu) == 0);
    bool done = !w->busy;
    char *error = w->error;
    uint64_t durable = w->durable;
    w->error = NULL;
    KYU_ASSERT(pthread_mutex_unlock(&w->mu) == 0);
    if (!done)
        return KYU_OK;
    free(w->items);
    w->items = NULL;
    /* its table, emptied, is the next buffer's (kyu_sm_buffer_init) */
    table_clear(self->flushing);
    if (self->spare)
        table_destroy(&self->flushing);
    self->spare = self->flushing;
    self->flushing = NULL;
    if (error) {
        self->failed = true;
        kyu_err_set(err, KYU_ERR_STORAGE, "writing applied state: %s", error);
        free(error);
        return KYU_ERR_STORAGE;
    }
    self->persisted_index = self->flushing_index;
    if (durable > self->durable_index)
        self->durable_index = durable;
    return KYU_OK;
}

/* The buffer's items, for a write (caller frees the array). */
static kyu_sm_item_t **collect(kyu_sm_table_t *buffer, size_t *n)
{
    *n = buffer->n;
    kyu_sm_item_t **items = malloc((*n ? *n : 1) * sizeof *items);
    KYU_ASSERT(items);
    size_t i = 0;
    for (size_t j = 0; j < buffer->order_n; j++)
        if (!buffer->order[j]->dropped)
            items[i++] = buffer->order[j];
    KYU_ASSERT(i == *n);
    return items;
}

/* Starts writing the buffer: on the writer thread (after the write before it), or here. */
static kyu_code_t flush_start(kyu_sm_t *self, kyu_err_t *err)
{
    if (self->failed)
        return kyu_err_set(err, KYU_ERR_STORAGE, "the state machine failed; nothing is written");
    kyu_code_t rc = harvest(self, true, err);
    if (rc != KYU_OK)
        return rc;
    if (self->buffer->n == 0 && self->buffer->n_ranges == 0) {
        kyu_sm_buffer_drop(self); /* its counters */
        self->persisted_index = self->applied_index;
        /* nothing to write, but the tables may still be asked for (the writer is idle) */
        uint64_t need =
            self->durable_want < self->applied_index ? self->durable_want : self->applied_index;
        if (need <= self->durable_index)
            return KYU_OK;
        uint64_t durable = 0;
        char *error = make_durable(self->store, need, &durable);
        if (error) {
            self->failed = true;
            kyu_err_set(err, KYU_ERR_STORAGE, "writing applied state: %s", error);
            free(error);
            return KYU_ERR_STORAGE;
        }
        if (durable > self->durable_index)
            self->durable_index = durable;
        return KYU_OK;
    }
    size_t n = 0;
    kyu_sm_item_t **items = collect(self->buffer, &n);
    kyu_sm_writer_t *w = self->writer;
    /* the index the log wants to compact to, as far as this write reaches (make_durable) */
    uint64_t need =
        self->durable_want < self->applied_index ? self->durable_want : self->applied_index;
    if (!w) {
        uint64_t durable = 0;
        char *error = write_items(self->store, self->db, self->wopts, self->plain,
                                  self->buffer->ranges, self->buffer->n_ranges, items, n);
        if (!error)
            error = make_durable(self->store, need, &durable);
        free(items);
        if (error) {
            self->failed = true;
            kyu_err_set(err, KYU_ERR_STORAGE, "writing applied state: %s", error);
            free(error);
            return KYU_ERR_STORAGE;
        }
        kyu_sm_buffer_drop(self);
        self->persisted_index = self->applied_index;
        if (durable > self->durable_index)
            self->durable_index = durable;
        return KYU_OK;
    }
    /* The buffer becomes the write in flight; a new one takes the next entries. */
    self->flushing = self->buffer;
    self->flushing_index = self->applied_index;
    self->flushing_oldest_ms = self->buffer_oldest_ms;
    self->buffer = NULL;
    kyu_sm_buffer_init(self);
    kyu_sm_buffer_drop(self); /* its counters */
    KYU_ASSERT(pthread_mutex_lock(&w->mu) == 0);
    w->store = self->store;
    w->db = self->db;
    w->wopts = self->wopts;
    w->wb = self->plain;
    w->ranges = self->flushing->ranges;
    w->n_ranges = self->flushing->n_ranges;
    w->items = items;
    w->n = n;
    w->need = need;
    w->busy = true;
    KYU_ASSERT(pthread_cond_broadcast(&w->cv) == 0);
    KYU_ASSERT(pthread_mutex_unlock(&w->mu) == 0);
    return KYU_OK;
}

kyu_code_t kyu_sm_flush_behind(kyu_sm_t *self, kyu_err_t *err)
{
    return flush_start(self, err);
}

kyu_code_t kyu_sm_flush(kyu_sm_t *self, kyu_err_t *err)
{
    kyu_code_t rc = flush_start(self, err);
    return rc == KYU_OK ? harvest(self, true, err) : rc;
}

kyu_code_t kyu_sm_flush_poll(kyu_sm_t *self, kyu_err_t *err)
{
    return harvest(self, false, err);
}

kyu_code_t kyu_sm_flush_wait_before(kyu_sm_t *self, uint64_t time_ms, kyu_err_t *err)
{
    if (self->flushing && self->flushing_oldest_ms <= time_ms)
        return harvest(self, true, err);
    return KYU_OK;
}

void kyu_sm_write_behind(kyu_sm_t *self)
{
    if (self->writer)
        return;
    kyu_sm_writer_t *w = calloc(1, sizeof *w);
    KYU_ASSERT(w);
    KYU_ASSERT(pthread_mutex_init(&w->mu, NULL) == 0);
    KYU_ASSERT(pthread_cond_init(&w->cv, NULL) == 0);
    KYU_ASSERT(pthread_create(&w->thread, NULL, writer_main, w) == 0);
    self->writer = w;
}

pid_t kyu_sm_writer_tid(kyu_sm_t *self)
{
    kyu_sm_writer_t *w = self->writer;
    if (!w)
        return 0;
    KYU_ASSERT(pthread_mutex_lock(&w->mu) == 0);
    while (w->tid == 0)
        KYU_ASSERT(pthread_cond_wait(&w->cv, &w->mu) == 0);
    pid_t tid = w->tid;
    KYU_ASSERT(pthread_mutex_unlock(&w->mu) == 0);
    return tid;
}

void kyu_sm_writer_stop(kyu_sm_t *self)
{
    kyu_sm_writer_t *w = self->writer;
    if (!w)
        return;
    kyu_err_t ignored;
    /* A write in flight finishes: a whole buffer, as in a crash just after it. */
    harvest(self, true, &ignored);
    KYU_ASSERT(pthread_mutex_lock(&w->mu) == 0);
    w->stop = true;
    KYU_ASSERT(pthread_cond_broadcast(&w->cv) == 0);
    KYU_ASSERT(pthread_mutex_unlock(&w->mu) == 0);
    KYU_ASSERT(pthread_join(w->thread, NULL) == 0);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w);
    self->writer = NULL;
}

void kyu_sm_set_write_every(kyu_sm_t *self, uint32_t entries)
{
    self->write_every =
        entries == 0 || entries > KYU_SM_BUFFER_ENTRIES ? KYU_SM_BUFFER_ENTRIES : entries;
}

uint64_t kyu_sm_persisted_index(const kyu_sm_t *self)
{
    return self->persisted_index;
}

uint64_t kyu_sm_durable_index(const kyu_sm_t *self)
{
    return self->durable_index;
}

void kyu_sm_want_durable(kyu_sm_t *self, uint64_t index)
{
    if (index > self->durable_want)
        self->durable_want = index;
}
