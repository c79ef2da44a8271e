/* sm_dedup: request keys, so that a write retried after a lost reply (a failover, a timeout)
 * is applied once: a DELETE_QUEUE is answered OK again (not NO_SUCH_QUEUE), a SEND is answered with
 * the message ids of the first attempt, a RECEIVE with the leases it granted (those still held
 * under the same handle), a DELETE or CHANGE_VISIBILITY with the first attempt's per-handle
 * results.
 *
 * Keys, in the meta column family (written in the entry's batch, so replicated and restored
 * like every other state):
 *   "rq" client(8) key(8)            -> time(8) then
 *        SEND:                          n(1) n × message id (36 bytes)  (the first format)
 *        others, by their row's shape (ops.h kyu_dedup_shape_t):
 *        LEASES (RECEIVE):              0x80|type(1) n(1) n × (seq(8) lease generation(4))
 *        CODES (DELETE, CHANGE_VIS...): 0x80|type(1) n(1) n × result code(1)
 *        IDS (none yet but SEND):       0x80|type(1) n(1) n × message id (36 bytes)
 *        (in a SEND's ids, a batch entry that failed is 35 NUL bytes and its code: message ids
 *        never start with NUL, so records of sends without a failed entry are as before)
 *        DONE (DELETE_QUEUE):           0x80|type(1) 0(1)
 *   "rx" time(8) client(8) key(8)    -> ""   (expiry index)
 * A record lives KYU_DEDUP_WINDOW_MS of command time (the leader's clock in the command, so
 * every node expires the same records at the same entry); each keyed SEND drops at most
 * EXPIRE_MAX expired records, which bounds both the table and the work per command.
 */
#include "sm_internal.h"

#include <sodium.h>

#include <stdlib.h>
#include <string.h>

#define EXPIRE_MAX 16
#define RQ_KEY 18
#define RX_KEY 26

/* The dedup records go through the write-behind buffer like every other write (sm_buffer.c),
 * and lookups read through it. The expiry scans the database: a record is written there
 * within a minute of command time (the buffer's age bound), long before it expires (a write
 * still in flight on the writer thread is waited for when it holds a record due), and a
 * record whose delete is still buffered is skipped. */
static rocksdb_column_family_handle_t *meta(kyu_sm_t *self)
{
    return kyu_store_cf(self->store, KYU_CF_META);
}

static void del_meta(kyu_sm_t *self, const uint8_t *k, size_t kl)
{
    kyu_sm_del(self, KYU_CF_META, k, kl);
}

static void rq_key(uint8_t k[RQ_KEY], uint64_t client, uint64_t key)
{
    k[0] = 'r';
    k[1] = 'q';
    kyu_put_be64(k + 2, client);
    kyu_put_be64(k + 10, key);
}

static void rx_key(uint8_t k[RX_KEY], uint64_t t, uint64_t client, uint64_t key)
{
    k[0] = 'r';
    k[1] = 'x';
    kyu_put_be64(k + 2, t);
    kyu_put_be64(k + 10, client);
    kyu_put_be64(k + 18, key);
}

/* ---- the filter of request keys ----
 * Nearly every keyed command carries a key never seen before, and looking it up in RocksDB
 * (memtables, then each table's filter) cost a seventh of the event loop's time under a
 * send load. The filter answers "never recorded" from memory: Bloom filters (blocked: one
 * 64-byte block per key and filter) in generations of FILTER_KEYS keys each. It never says
 * no for a key with a record a lookup could find, so answers are exactly the database's; a
 * yes (a retry, or a false positive, well under 1 in 100) reads the record. A generation goes
 * once its newest record is past the window (a lookup counts such a record as gone). Built
 * at load from the expiry index (the records within the window as of the last command
 * time), then fed by every record written. */
#define FILTER_KEYS (1u << 20)    /* keys per generation */
#define FILTER_BLOCKS (1u << 15)  /* 512-bit blocks per generation: 2 MiB, 16 bits per key */
#define FILTER_PROBES 4           /* bits per key, all in its block (9 bits of the hash each) */
#define FILTER_GENERATIONS_MAX 64 /* 128 MiB: over 200,000 keyed commands a second */

struct kyu_sm_keyfilter {
    struct generation {
        uint64_t (*blocks)[8];
        uint64_t keys, newest_ms;
    } gen[FILTER_GENERATIONS_MAX];
    size_t first, n;   /* a ring of generations, oldest first */
    uint64_t gen_keys; /* keys per generation (FILTER_KEYS; fewer in tests) */
    bool overflow;     /* too many: every key may be known (lookups read the database) */
    uint64_t last_client, last_key, last_hash; /* filter_hash's last */
    bool last_hashed;
};

static const uint8_t filter_hash_key[crypto_shorthash_KEYBYTES] = "kyu-request-keys";

/* The hash of (client, key), kept for the last key hashed: a keyed command's lookup and its
 * record hash the same key one after the other. */
static uint64_t filter_hash(kyu_sm_keyfilter_t *f, uint64_t client, uint64_t key)
{
    if (f->last_hashed && f->last_client == client && f->last_key == key)
        return f->last_hash;
    uint8_t in[16], h[crypto_shorthash_BYTES];
    kyu_put_be64(in, client);
    kyu_put_be64(in + 8, key);
    crypto_shorthash(h, in, sizeof in, filter_hash_key);
    f->last_client = client;
    f->last_key = key;
    f->last_hash = kyu_get_be64(h);
    f->last_hashed = true;
    return f->last_hash;
}

static bool gen_has(const struct generation *g, uint64_t h)
{
    const uint64_t *b = g->blocks[(h >> 40) % FILTER_BLOCKS];
    for (unsigned i = 0; i < FILTER_PROBES; i++) {
        unsigned bit = (unsigned)(h >> (i * 9)) & 511;
        if (!(b[bit >> 6] & (1ull << (bit & 63))))
            return false;
    }
    return true;
}

static void gen_add(struct generation *g, uint64_t h)
{
    uint64_t *b = g->blocks[(h >> 40) % FILTER_BLOCKS];
    for (unsigned i = 0; i < FILTER_PROBES; i++) {
        unsigned bit = (unsigned)(h >> (i * 9)) & 511;
        b[bit >> 6] |= 1ull << (bit & 63);
    }
    g->keys++;
}

/* Drops the generations whose newest record is past the window at now_ms. */
static void filter_expire(kyu_sm_keyfilter_t *f, uint64_t now_ms)
{
    while (f->n > 1 && now_ms >= KYU_DEDUP_WINDOW_MS &&
           f->gen[f->first].newest_ms <= now_ms - KYU_DEDUP_WINDOW_MS) {
        free(f->gen[f->first].blocks);
        f->gen[f->first] = (struct generation){0};
        f->first = (f->first + 1) % FILTER_GENERATIONS_MAX;
        f->n--;
    }
}

static void filter_add(kyu_sm_keyfilter_t *f, uint64_t client, uint64_t key, uint64_t t_ms)
{
    if (f->overflow)
        return;
    struct generation *g = f->n ? &f->gen[(f->first + f->n - 1) % FILTER_GENERATIONS_MAX] : NULL;
    if (!g || g->keys >= f->gen_keys) {
        if (f->n == FILTER_GENERATIONS_MAX) {
            f->overflow = true;
            return;
        }
        g = &f->gen[(f->first + f->n) % FILTER_GENERATIONS_MAX];
        g->blocks = calloc(FILTER_BLOCKS, sizeof *g->blocks);
        KYU_ASSERT(g->blocks);
        g->keys = g->newest_ms = 0;
        f->n++;
    }
    gen_add(g, filter_hash(f, client, key));
    if (t_ms > g->newest_ms)
        g->newest_ms = t_ms;
}

/* False when no record of (client, key) exists within the window. */
static bool filter_may_have(kyu_sm_keyfilter_t *f, uint64_t client, uint64_t key)
{
    if (f->overflow)
        return true;
    uint64_t h = filter_hash(f, client, key);
    for (size_t i = f->n; i-- > 0;)
        if (gen_has(&f->gen[(f->first + i) % FILTER_GENERATIONS_MAX], h))
            return true;
    return false;
}

void kyu_sm_keyfilter_free(kyu_sm_t *self)
{
    kyu_sm_keyfilter_t *f = self->keyfilter;
    if (!f)
        return;
    for (size_t i = 0; i < f->n; i++)
        free(f->gen[(f->first + i) % FILTER_GENERATIONS_MAX].blocks);
    free(f);
    self->keyfilter = NULL;
}

void kyu_sm_keyfilter_set_generation_keys(kyu_sm_t *self, uint32_t keys)
{
    self->keyfilter_gen_keys = keys;
    self->keyfilter->gen_keys = keys ? keys : FILTER_KEYS;
}

kyu_code_t kyu_sm_keyfilter_load(kyu_sm_t *self, kyu_err_t *err)
{
    kyu_sm_keyfilter_free(self);
    self->keyfilter = calloc(1, sizeof *self->keyfilter);
    KYU_ASSERT(self->keyfilter);
    self->keyfilter->gen_keys = self->keyfilter_gen_keys ? self->keyfilter_gen_keys : FILTER_KEYS;
    /* Records at or before last_now - window are gone to every later lookup (command times
     * never go back): only the newer ones are loaded. */
    uint64_t from = self->last_now > KYU_DEDUP_WINDOW_MS ? self->last_now - KYU_DEDUP_WINDOW_MS : 0;
    uint8_t lo[RX_KEY], hi[3] = {'r', 'x' + 1, 0};
    rx_key(lo, from, 0, 0);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_upper_bound(ro, (char *)hi, 2);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(self->db, ro, meta(self));
    for (rocksdb_iter_seek(it, (char *)lo, RX_KEY); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl = 0;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
        if (kl == RX_KEY)
            filter_add(self->keyfilter, kyu_get_be64(k + 10), kyu_get_be64(k + 18),
                       kyu_get_be64(k + 2));
    }
    char *rerr = NULL;
    rocksdb_iter_get_error(it, &rerr);
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    if (rerr) {
        kyu_err_set(err, KYU_ERR_STORAGE, "loading request keys: %s", rerr);
        free(rerr);
        return KYU_ERR_STORAGE;
    }
    return KYU_OK;
}

/* The shape of a record of command type t (the row's), or 0 when t keeps none. */
static kyu_dedup_shape_t shape_of(uint64_t t)
{
    const kyu_op_row_t *row = kyu_ops_command(t);
    return row && row->replay ? row->dedup : 0;
}

/* Entry i of an IDS record: a message id, or (NUL first) a failed batch entry's code. */
static void read_id(const uint8_t *slot, kyu_dedup_t *d, size_t i)
{
    memcpy(d->ids[i], slot, KYU_UUID_LEN);
    d->ids[i][KYU_UUID_LEN] = '\0';
    if (slot[0] == '\0') {
        d->ids[i][0] = '\0';
        d->codes[i] = slot[KYU_UUID_LEN - 1];
    }
}

/* Parses a record's value (after its time) into *d; false if it is not one. A record
 * without a type byte is a SEND's (the first format, kept so existing state reads). */
static bool parse_record(const uint8_t *p, size_t vl, kyu_dedup_t *d)
{
    memset(d, 0, sizeof *d);
    if (vl < 9)
        return false;
    if (p[8] < 0x80) { /* a SEND's: n, ids */
        d->type = KYU_CMD_SEND;
        d->n = p[8];
        if (d->n > KYU_BATCH_MAX || vl != 9 + d->n * KYU_UUID_LEN)
            return false;
        for (size_t i = 0; i < d->n; i++)
            read_id(p + 9 + i * KYU_UUID_LEN, d, i);
        return true;
    }
    d->type = p[8] & 0x7f;
    if (vl < 10 || p[9] > KYU_BATCH_MAX)
        return false;
    d->n = p[9];
    const uint8_t *q = p + 10;
    switch (shape_of(d->type)) {
    case KYU_DEDUP_DONE:
        return d->n == 0 && vl == 10;
    case KYU_DEDUP_IDS:
        if (vl != 10 + d->n * KYU_UUID_LEN)
            return false;
        for (size_t i = 0; i < d->n; i++)
            read_id(q + i * KYU_UUID_LEN, d, i);
        return true;
    case KYU_DEDUP_LEASES:
        if (vl != 10 + d->n * 12)
            return false;
        for (size_t i = 0; i < d->n; i++) {
            d->seqs[i] = kyu_get_be64(q + i * 12);
            d->gens[i] = kyu_get_be32(q + 8 + i * 12);
        }
        return true;
    case KYU_DEDUP_CODES:
        if (vl != 10 + d->n)
            return false;
        memcpy(d->codes, q, d->n);
        return true;
    }
    return false;
}

kyu_code_t kyu_sm_dedup_lookup(kyu_sm_t *self, const kyu_command_t *c, kyu_dedup_t *d, bool *found,
                               kyu_err_t *err)
{
    *found = false;
    filter_expire(self->keyfilter, c->now_ms);
    if (!filter_may_have(self->keyfilter, c->rq_client, c->rq_key))
        return KYU_OK;
    uint8_t k[RQ_KEY];
    rq_key(k, c->rq_client, c->rq_key);
    size_t vl = 0;
    char *v = kyu_sm_read(self, KYU_CF_META, k, RQ_KEY, &vl, err);
    if (err->code)
        return err->code;
    if (!v)
        return KYU_OK;
    bool ok = parse_record((const uint8_t *)v, vl, d);
    uint64_t t = vl >= 8 ? kyu_get_be64((const uint8_t *)v) : 0;
    free(v);
    if (!ok)
        return kyu_err_set(err, KYU_ERR_STORAGE, "a request key record is corrupt");
    /* A record past the window counts as gone, dropped yet or not. */
    *found = c->now_ms < KYU_DEDUP_WINDOW_MS || t > c->now_ms - KYU_DEDUP_WINDOW_MS;
    return KYU_OK;
}

bool kyu_sm_knows_request(kyu_sm_t *self, uint64_t client, uint64_t key, uint64_t now_ms)
{
    if (!filter_may_have(self->keyfilter, client, key))
        return false;
    uint8_t k[RQ_KEY];
    rq_key(k, client, key);
    size_t vl = 0;
    kyu_err_t err;
    kyu_err_clear(&err);
    char *v = kyu_sm_read(self, KYU_CF_META, k, RQ_KEY, &vl, &err);
    if (err.code) /* say yes: the request then goes through the log, which reports it */
        return true;
    uint64_t t = v && vl >= 8 ? kyu_get_be64((const uint8_t *)v) : 0;
    bool known = v && (now_ms < KYU_DEDUP_WINDOW_MS || t > now_ms - KYU_DEDUP_WINDOW_MS);
    free(v);
    return known;
}

void kyu_sm_dedup_record(kyu_sm_t *self, const kyu_command_t *c, const kyu_dedup_t *d)
{
    uint8_t k[RQ_KEY], x[RX_KEY], v[10 + KYU_BATCH_MAX * KYU_UUID_LEN];
    rq_key(k, c->rq_client, c->rq_key);
    rx_key(x, c->now_ms, c->rq_client, c->rq_key);
    kyu_put_be64(v, c->now_ms);
    KYU_ASSERT(d->n <= KYU_BATCH_MAX);
    size_t vl = 10;
    v[8] = (uint8_t)(0x80 | d->type);
    v[9] = (uint8_t)d->n;
    for (size_t i = 0; i < d->n; i++) {
        switch (shape_of(d->type)) {
        case KYU_DEDUP_IDS:
            if (d->ids[i][0]) {
                memcpy(v + vl, d->ids[i], KYU_UUID_LEN);
            } else { /* a failed batch entry */
                memset(v + vl, 0, KYU_UUID_LEN);
                v[vl + KYU_UUID_LEN - 1] = d->codes[i];
            }
            vl += KYU_UUID_LEN;
            break;
        case KYU_DEDUP_LEASES:
            kyu_put_be64(v + vl, d->seqs[i]);
            kyu_put_be32(v + vl + 8, d->gens[i]);
            vl += 12;
            break;
        default:
            v[vl++] = d->codes[i];
        }
    }
    if (d->type == KYU_CMD_SEND) { /* the first format: n, ids (no type byte) */
        memmove(v + 9, v + 10, vl - 10);
        v[8] = (uint8_t)d->n;
        vl--;
    }
    kyu_sm_put_pair(self, &(kyu_sm_put_t){KYU_CF_META, k, RQ_KEY, v, vl, NULL, 0, false},
                    &(kyu_sm_put_t){KYU_CF_META, x, RX_KEY, "", 0, NULL, 0, false});
    filter_add(self->keyfilter, c->rq_client, c->rq_key, c->now_ms);
    if (c->now_ms < self->dedup_floor)
        self->dedup_floor = c->now_ms;
}

kyu_code_t kyu_sm_dedup_expire(kyu_sm_t *self, uint64_t now_ms, kyu_err_t *err)
{
    /* dedup_floor spares an iterator (and a walk over the tombstones of records already
     * dropped) to every keyed command while nothing has expired. */
    if (now_ms < KYU_DEDUP_WINDOW_MS || now_ms - KYU_DEDUP_WINDOW_MS < self->dedup_floor)
        return KYU_OK;
    uint64_t limit = now_ms - KYU_DEDUP_WINDOW_MS; /* records at or before it go */
    /* The scan reads the database: a write in flight that holds a record due must be in it.
     * (The buffer holds none: it is written a minute after its oldest write.) */
    kyu_code_t rc = kyu_sm_flush_wait_before(self, limit, err);
    if (rc != KYU_OK)
        return rc;
    self->dedup_scans++;
    uint8_t lo[RX_KEY], hi[RX_KEY];
    rx_key(lo, self->dedup_floor, 0, 0);
    rx_key(hi, UINT64_MAX, UINT64_MAX, UINT64_MAX); /* every record: the first one kept too */
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_upper_bound(ro, (char *)hi, RX_KEY);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(self->db, ro, meta(self));
    int dropped = 0;
    /* The new floor: the oldest record left, or a time before it. Unless the scan stops early,
     * that is the oldest record the database keeps past the limit, or one the write-behind
     * buffer or the write in flight holds (none older than their first command: command
     * times never go back: docs/ARCHITECTURE.md, Replication, "Time"), or one added later (which
     * lowers the floor, kyu_sm_dedup_record). A floor of only limit + 1 would scan again at each
     * later millisecond, an iterator for nothing (issue 12: 23 us a keyed command). */
    uint64_t floor = UINT64_MAX;
    for (rocksdb_iter_seek(it, (char *)lo, RX_KEY); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl = 0;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
        if (kl != RX_KEY || k[0] != 'r' || k[1] != 'x')
            break;
        if (kyu_get_be64(k + 2) > limit) {
            floor = kyu_get_be64(k + 2);
            break;
        }
        if (kyu_sm_buffer_deletes(self, KYU_CF_META, k, RX_KEY))
            continue; /* dropped already, not yet written */
        if (dropped == EXPIRE_MAX) {
            floor = kyu_get_be64(k + 2);
            break;
        }
        uint8_t rk[RQ_KEY];
        rq_key(rk, kyu_get_be64(k + 10), kyu_get_be64(k + 18));
        del_meta(self, rk, RQ_KEY);
        del_meta(self, k, RX_KEY);
        dropped++;
    }
    char *rerr = NULL;
    rocksdb_iter_get_error(it, &rerr);
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    if (rerr) {
        kyu_err_set(err, KYU_ERR_STORAGE, "expiring request keys: %s", rerr);
        free(rerr);
        return KYU_ERR_STORAGE;
    }
    if (self->buffer_oldest_ms && self->buffer_oldest_ms < floor)
        floor = self->buffer_oldest_ms;
    if (self->flushing && self->flushing_oldest_ms < floor)
        floor = self->flushing_oldest_ms;
    self->dedup_floor = floor;
    return KYU_OK;
}
