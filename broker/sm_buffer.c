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
 * time is a minute past the oldest buffered one (so that the request-key expiry, which scans
 * the database, never misses a buffered record: sm_dedup.c).
 */
#include "sm_internal.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

struct kyu_sm_item {
    char *val; /* NULL for a delete or an empty value */
    uint32_t vlen;
    bool put;    /* else a delete */
    bool absent; /* the database holds no value under this key: a delete drops the item */
    uint16_t klen;
    uint8_t key[]; /* the column family's number, then the key */
};

#define ITEM_OVERHEAD 96 /* the item, its hash slot and malloc's headers, roughly */

static const uint8_t hash_key[crypto_shorthash_KEYBYTES] = "kyu-state-buffer";

static size_t item_hash(const void *key)
{
    const kyu_sm_item_t *it = key;
    uint8_t h[crypto_shorthash_BYTES];
    crypto_shorthash(h, it->key, it->klen, hash_key);
    size_t v;
    memcpy(&v, h, sizeof v);
    return v;
}

static int item_cmp(const void *a, const void *b)
{
    const kyu_sm_item_t *x = a, *y = b;
    if (x->klen != y->klen)
        return x->klen < y->klen ? -1 : 1;
    return memcmp(x->key, y->key, x->klen);
}

/* Column family, then key bytes (RocksDB's order within a column family). */
static int item_order(const void *a, const void *b)
{
    const kyu_sm_item_t *x = *(kyu_sm_item_t *const *)a, *y = *(kyu_sm_item_t *const *)b;
    size_t n = x->klen < y->klen ? x->klen : y->klen;
    int c = memcmp(x->key, y->key, n);
    return c ? c : (x->klen > y->klen) - (x->klen < y->klen);
}

static void item_free(void **p)
{
    kyu_sm_item_t *it = *p;
    if (it) {
        free(it->val);
        free(it);
    }
    *p = NULL;
}

void kyu_sm_buffer_init(kyu_sm_t *self)
{
    self->buffer = zhashx_new();
    KYU_ASSERT(self->buffer);
    zhashx_set_key_hasher(self->buffer, item_hash);
    zhashx_set_key_comparator(self->buffer, item_cmp);
    zhashx_set_key_duplicator(self->buffer, NULL);
    zhashx_set_key_destructor(self->buffer, NULL);
    zhashx_set_destructor(self->buffer, item_free);
}

void kyu_sm_buffer_drop(kyu_sm_t *self)
{
    zhashx_purge(self->buffer);
    self->buffer_bytes = 0;
    self->buffer_entries = 0;
    self->buffer_oldest_ms = 0;
}

void kyu_sm_buffer_free(kyu_sm_t *self)
{
    zhashx_destroy(&self->buffer);
}

/* A probe for a lookup: an item on the stack with the key only. */
typedef struct {
    kyu_sm_item_t it;
    uint8_t key[1 + 256];
} probe_t;

static kyu_sm_item_t *find(kyu_sm_t *self, kyu_cf_t c, const void *k, size_t kl, probe_t *p)
{
    KYU_ASSERT(kl <= sizeof p->key - 1);
    p->it.klen = (uint16_t)(1 + kl);
    p->it.key[0] = (uint8_t)c;
    memcpy(p->it.key + 1, k, kl);
    return zhashx_lookup(self->buffer, &p->it);
}

static kyu_sm_item_t *item_for(kyu_sm_t *self, kyu_cf_t c, const void *k, size_t kl, bool absent)
{
    probe_t p;
    kyu_sm_item_t *it = find(self, c, k, kl, &p);
    if (it) {
        self->buffer_bytes -= it->vlen;
        free(it->val);
        it->val = NULL;
        it->vlen = 0;
        return it;
    }
    it = malloc(sizeof *it + 1 + kl);
    KYU_ASSERT(it);
    *it = (kyu_sm_item_t){.absent = absent, .klen = (uint16_t)(1 + kl)};
    memcpy(it->key, p.it.key, 1 + kl);
    zhashx_insert(self->buffer, it, it);
    self->buffer_bytes += ITEM_OVERHEAD + kl;
    return it;
}

void kyu_sm_put2(kyu_sm_t *self, kyu_cf_t c, const void *k, size_t kl, const void *v1, size_t l1,
                 const void *v2, size_t l2, bool absent)
{
    kyu_sm_item_t *it = item_for(self, c, k, kl, absent);
    it->put = true;
    if (l1 + l2 > 0) {
        it->val = malloc(l1 + l2);
        KYU_ASSERT(it->val);
        if (l1)
            memcpy(it->val, v1, l1);
        if (l2)
            memcpy(it->val + l1, v2, l2);
    }
    it->vlen = (uint32_t)(l1 + l2);
    self->buffer_bytes += it->vlen;
}

void kyu_sm_put(kyu_sm_t *self, kyu_cf_t c, const void *k, size_t kl, const void *v, size_t vl)
{
    kyu_sm_put2(self, c, k, kl, v, vl, NULL, 0, false);
}

void kyu_sm_del(kyu_sm_t *self, kyu_cf_t c, const void *k, size_t kl)
{
    probe_t p;
    kyu_sm_item_t *it = find(self, c, k, kl, &p);
    if (it && it->absent) { /* the database never saw it: nothing to write */
        self->buffer_bytes -= ITEM_OVERHEAD + (it->klen - 1) + it->vlen;
        zhashx_delete(self->buffer, it);
        return;
    }
    it = item_for(self, c, k, kl, false);
    it->put = false;
}

char *kyu_sm_read(kyu_sm_t *self, kyu_cf_t c, const void *k, size_t kl, size_t *vl, kyu_err_t *err)
{
    probe_t p;
    const kyu_sm_item_t *it = find(self, c, k, kl, &p);
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

bool kyu_sm_buffer_deletes(kyu_sm_t *self, kyu_cf_t c, const void *k, size_t kl)
{
    probe_t p;
    const kyu_sm_item_t *it = find(self, c, k, kl, &p);
    return it && !it->put;
}

kyu_code_t kyu_sm_flush(kyu_sm_t *self, kyu_err_t *err)
{
    if (self->failed)
        return kyu_err_set(err, KYU_ERR_STORAGE, "the state machine failed; nothing is written");
    if (zhashx_size(self->buffer) == 0) {
        kyu_sm_buffer_drop(self); /* its counters */
        self->persisted_index = self->applied_index;
        return KYU_OK;
    }
    /* In key order: RocksDB's memtable inserts keys that follow each other far faster than
     * keys in the hash's order (its skiplist reuses the place it found last). */
    size_t n = zhashx_size(self->buffer), i = 0;
    kyu_sm_item_t **items = malloc(n * sizeof *items);
    KYU_ASSERT(items);
    for (kyu_sm_item_t *it = zhashx_first(self->buffer); it; it = zhashx_next(self->buffer))
        items[i++] = it;
    qsort(items, n, sizeof *items, item_order);
    rocksdb_writebatch_t *wb = self->plain;
    rocksdb_writebatch_clear(wb);
    for (i = 0; i < n; i++) {
        const kyu_sm_item_t *it = items[i];
        rocksdb_column_family_handle_t *h = kyu_store_cf(self->store, (kyu_cf_t)it->key[0]);
        const char *k = (const char *)it->key + 1;
        if (it->put)
            rocksdb_writebatch_put_cf(wb, h, k, it->klen - 1u, it->val ? it->val : "", it->vlen);
        else
            rocksdb_writebatch_delete_cf(wb, h, k, it->klen - 1u);
    }
    free(items);
    char *rerr = NULL;
    rocksdb_write(self->db, self->wopts, wb, &rerr);
    rocksdb_writebatch_clear(wb);
    if (rerr) {
        self->failed = true;
        kyu_err_set(err, KYU_ERR_STORAGE, "writing applied state: %s", rerr);
        free(rerr);
        return KYU_ERR_STORAGE;
    }
    kyu_sm_buffer_drop(self);
    self->persisted_index = self->applied_index;
    return KYU_OK;
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
