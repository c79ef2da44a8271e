/* sm_fdedup: a table of FIFO deduplication records, the one machinery behind a FIFO queue's
 * deduplication (sm_fifo.c) and a FIFO topic's (op_topic.c).
 *
 * A record remembers a deduplication key (its MessageDeduplicationId, or the SHA-256 of the
 * body with ContentBasedDeduplication, made a key by its owner) for KYU_FIFO_DEDUP_WINDOW_MS
 * of command time, with the message's id and seq (its SequenceNumber): a send or publish whose
 * key is remembered is answered with them and stores nothing, also after the first message
 * was deleted. Records are in the meta column family (so replicated, in snapshots and the
 * state digest), under the table's prefix:
 *   prefix key -> time(8) seq(8) message id(36)
 * In memory, a hash of the keys and their records in the order put (command times never go
 * back: oldest first). Every send or publish expires the records older than the window first:
 * the same records on every replica at every entry, whatever order a reload put equal times
 * in. A lookup also checks the time: a record past the window is gone, dropped or not. */
#include "sm_internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    char *key;
    uint64_t t, seq;
    char id[KYU_UUID_LEN + 1];
} frec_t;

struct kyu_fdedup {
    uint8_t prefix[KYU_FDEDUP_PREFIX_MAX];
    size_t plen;
    zhashx_t *recs; /* key -> frec_t* (owns them) */
    frec_t **ring;  /* the records in the order put (NULL: a slot whose record was replaced) */
    size_t ring_head, ring_n, ring_cap;
};

static void rec_free(void **item)
{
    frec_t *r = *item;
    if (r) {
        free(r->key);
        free(r);
    }
    *item = NULL;
}

kyu_fdedup_t *kyu_fdedup_new(const void *prefix, size_t plen)
{
    KYU_ASSERT(plen <= KYU_FDEDUP_PREFIX_MAX);
    kyu_fdedup_t *d = calloc(1, sizeof *d);
    KYU_ASSERT(d);
    memcpy(d->prefix, prefix, plen);
    d->plen = plen;
    d->recs = zhashx_new();
    KYU_ASSERT(d->recs);
    zhashx_set_destructor(d->recs, rec_free);
    return d;
}

void kyu_fdedup_destroy(kyu_fdedup_t **self_p)
{
    kyu_fdedup_t *d = *self_p;
    if (!d)
        return;
    zhashx_destroy(&d->recs); /* frees the records; the ring only points to them */
    free(d->ring);
    free(d);
    *self_p = NULL;
}

/* The store key of key: the prefix, then key (*kl its length). */
static void store_key(const kyu_fdedup_t *d, const char *key, uint8_t *k, size_t *kl)
{
    size_t n = strlen(key);
    memcpy(k, d->prefix, d->plen);
    memcpy(k + d->plen, key, n);
    *kl = d->plen + n;
}

static void ring_push(kyu_fdedup_t *d, frec_t *r)
{
    if (d->ring_n == d->ring_cap) {
        size_t cap = d->ring_cap ? d->ring_cap * 2 : 16;
        frec_t **ring = malloc(cap * sizeof *ring);
        KYU_ASSERT(ring);
        for (size_t i = 0; i < d->ring_n; i++)
            ring[i] = d->ring[(d->ring_head + i) % d->ring_cap];
        free(d->ring);
        d->ring = ring;
        d->ring_cap = cap;
        d->ring_head = 0;
    }
    d->ring[(d->ring_head + d->ring_n++) % d->ring_cap] = r;
}

bool kyu_fdedup_find(const kyu_fdedup_t *d, const char *key, uint64_t now,
                     char id[KYU_UUID_LEN + 1], uint64_t *seq)
{
    const frec_t *r = d ? zhashx_lookup(d->recs, key) : NULL;
    if (!r || (now >= KYU_FIFO_DEDUP_WINDOW_MS && r->t <= now - KYU_FIFO_DEDUP_WINDOW_MS))
        return false;
    memcpy(id, r->id, sizeof r->id);
    *seq = r->seq;
    return true;
}

void kyu_fdedup_insert(kyu_fdedup_t *d, const char *key, uint64_t t, uint64_t seq, const char *id)
{
    frec_t *r = calloc(1, sizeof *r);
    KYU_ASSERT(r);
    r->key = strdup(key);
    KYU_ASSERT(r->key);
    r->t = t;
    r->seq = seq;
    snprintf(r->id, sizeof r->id, "%s", id);
    /* A record past the window that is replaced leaves its ring slot behind, emptied: the
     * expiry skips it. */
    frec_t *old = zhashx_lookup(d->recs, key);
    for (size_t i = 0; old && i < d->ring_n; i++) {
        frec_t **slot = &d->ring[(d->ring_head + i) % d->ring_cap];
        if (*slot == old)
            *slot = NULL;
    }
    zhashx_update(d->recs, key, r);
    ring_push(d, r);
}

void kyu_fdedup_put(kyu_sm_t *self, kyu_fdedup_t *d, const char *key, uint64_t now, const char *id,
                    uint64_t seq)
{
    uint8_t k[KYU_FDEDUP_PREFIX_MAX + KYU_FDEDUP_KEY_MAX], v[KYU_FDEDUP_VALUE_LEN];
    size_t kl = 0;
    store_key(d, key, k, &kl);
    kyu_put_be64(v, now);
    kyu_put_be64(v + 8, seq);
    memset(v + 16, 0, KYU_UUID_LEN);
    memcpy(v + 16, id, strnlen(id, KYU_UUID_LEN));
    kyu_sm_put(self, KYU_CF_META, k, kl, v, sizeof v);
    kyu_fdedup_insert(d, key, now, seq, id);
}

/* Drops the record at the ring's head, from the store too (when it is still the hash's). */
static void drop_head(kyu_sm_t *self, kyu_fdedup_t *d)
{
    frec_t *r = d->ring[d->ring_head];
    d->ring_head = (d->ring_head + 1) % d->ring_cap;
    d->ring_n--;
    if (!r)
        return;
    uint8_t k[KYU_FDEDUP_PREFIX_MAX + KYU_FDEDUP_KEY_MAX];
    size_t kl = 0;
    store_key(d, r->key, k, &kl);
    kyu_sm_del(self, KYU_CF_META, k, kl);
    zhashx_delete(d->recs, r->key);
}

void kyu_fdedup_expire(kyu_sm_t *self, kyu_fdedup_t *d, uint64_t now)
{
    if (!d || now < KYU_FIFO_DEDUP_WINDOW_MS)
        return;
    uint64_t limit = now - KYU_FIFO_DEDUP_WINDOW_MS; /* records at or before it go */
    while (d->ring_n > 0) {
        frec_t *r = d->ring[d->ring_head];
        if (r && r->t > limit)
            break;
        drop_head(self, d);
    }
}

void kyu_fdedup_drop_all(kyu_sm_t *self, kyu_fdedup_t *d)
{
    while (d && d->ring_n > 0)
        drop_head(self, d);
}

size_t kyu_fdedup_count(const kyu_fdedup_t *d)
{
    return d ? zhashx_size(d->recs) : 0;
}

bool kyu_fdedup_parse(const void *k, size_t kl, size_t plen, const void *v, size_t vl,
                      char key[KYU_FDEDUP_KEY_MAX], uint64_t *t, uint64_t *seq,
                      char id[KYU_UUID_LEN + 1])
{
    if (kl <= plen || kl - plen >= KYU_FDEDUP_KEY_MAX || vl != KYU_FDEDUP_VALUE_LEN)
        return false;
    memcpy(key, (const char *)k + plen, kl - plen);
    key[kl - plen] = '\0';
    *t = kyu_get_be64(v);
    *seq = kyu_get_be64((const uint8_t *)v + 8);
    memcpy(id, (const uint8_t *)v + 16, KYU_UUID_LEN);
    id[KYU_UUID_LEN] = '\0';
    return true;
}

static int rec_cmp(const void *a, const void *b)
{
    const frec_t *x = *(frec_t *const *)a, *y = *(frec_t *const *)b;
    return x->t < y->t ? -1 : x->t > y->t ? 1 : strcmp(x->key, y->key);
}

void kyu_fdedup_loaded(kyu_fdedup_t *d)
{
    /* The order put, by time (equal times in any order: expiry takes all that are due).
     * Loaded records are inserted in a fresh ring: no slot is empty nor wrapped. */
    if (d && d->ring_n > 1) {
        KYU_ASSERT(d->ring_head == 0);
        qsort(d->ring, d->ring_n, sizeof *d->ring, rec_cmp);
    }
}
