/* sm_dedup: request keys, so that a write retried after a lost reply (a failover, a timeout)
 * is applied once: a DELETE_QUEUE is answered OK again (not NO_SUCH_QUEUE), a SEND is answered with
 * the message ids of the first attempt, a RECEIVE with the leases it granted (those still held
 * under the same handle), a DELETE or CHANGE_VISIBILITY with the first attempt's per-handle
 * results.
 *
 * Keys, in the meta column family (written in the entry's batch, so replicated and restored
 * like every other state):
 *   "rk" bucket(8) client(8) key(8) -> time(8) then
 *        SEND:                          0x40|n(1) n × message id packed (16 bytes: the
 *                                       UUID's 32 hex digits as bytes, when every id is a
 *                                       lowercase UUID, as kyu_op_make_uuid makes them)
 *                                       else n(1) n × message id (36 bytes) (the first format)
 *        others, by their row's shape (ops.h kyu_dedup_shape_t):
 *        LEASES (RECEIVE):              0x80|type(1) n(1) n × (seq(8) lease generation(4))
 *        CODES (DELETE, CHANGE_VIS...): 0x80|type(1) n(1) n × result code(1)
 *        IDS (none yet but SEND):       0x80|type(1) n(1) n × message id (36 bytes)
 *        (in a SEND's ids, a batch entry that failed is 35 NUL bytes and its code: message ids
 *        never start with NUL, so records of sends without a failed entry are as before)
 *        DONE (DELETE_QUEUE):           0x80|type(1) 0(1)
 * bucket is the command time / BUCKET_MS. A record lives KYU_DEDUP_WINDOW_MS of command time
 * (the leader's clock in the command, so every node expires the same records at the same
 * entry): a lookup reads the buckets the window spans (one MultiGet, and only when the
 * filter below says the key may be known), and the first keyed command whose window has left
 * a bucket behind drops that bucket whole with one range delete (kyu_sm_del_range: through the
 * write-behind buffer, so in the entry's write, and reads see it at once). No record is
 * deleted one by one: the records cost one key each, and their expiry one range tombstone per
 * bucket, where an expiry index ("rx" time client key) and two deletes per record made them
 * flush and compact as many bytes as the bodies under a send load (docs/BENCHMARKS.md,
 * "Branch blob").
 *
 * Earlier brokers kept "rq" client(8) key(8) -> the same value, and "rx" time(8) client(8)
 * key(8) -> "" (an expiry index): a load moves every "rq" record to its bucket and drops both
 * prefixes (kyu_sm_dedup_load_start), so the state reads the same whichever version wrote it. A
 * broker older than this one knows nothing of "rk": it would answer a retry within the window
 * of the upgrade as a new request (docs/ARCHITECTURE.md, "Request keys").
 */
#include "sm_internal.h"

#include <sodium.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* A bucket's width: a lookup reads WINDOW / BUCKET_MS + 1 buckets, and a record stays up to
 * a bucket's width past the window in the database (not to lookups). */
#define BUCKET_MS (KYU_DEDUP_WINDOW_MS / 4)
#define BUCKETS_READ (KYU_DEDUP_WINDOW_MS / BUCKET_MS + 1)
#define RK_KEY 26
#define RQ_KEY 18 /* the first format's: "rq" client(8) key(8) */

static rocksdb_column_family_handle_t *meta(kyu_sm_t *self)
{
    return kyu_store_cf(self->store, KYU_CF_META);
}

static void rk_key(uint8_t k[RK_KEY], uint64_t bucket, uint64_t client, uint64_t key)
{
    k[0] = 'r';
    k[1] = 'k';
    kyu_put_be64(k + 2, bucket);
    kyu_put_be64(k + 10, client);
    kyu_put_be64(k + 18, key);
}

/* True when a record of time t is within the window at now (else it counts as gone, dropped
 * yet or not). */
static bool live(uint64_t t, uint64_t now)
{
    return now < KYU_DEDUP_WINDOW_MS || t > now - KYU_DEDUP_WINDOW_MS;
}

/* The bucket of the oldest time within the window at now (now - window + 1): every record of
 * an older bucket is past. */
static uint64_t first_live_bucket(uint64_t now)
{
    return now < KYU_DEDUP_WINDOW_MS ? 0 : (now - KYU_DEDUP_WINDOW_MS + 1) / BUCKET_MS;
}

/* ---- the filter of request keys ----
 * Nearly every keyed command carries a key never seen before, and looking it up in RocksDB
 * (memtables, then each table's filter) cost a seventh of the event loop's time under a
 * send load. The filter answers "never recorded" from memory: Bloom filters (blocked: one
 * 64-byte block per key and filter) in generations of FILTER_KEYS keys each. It never says
 * no for a key with a record a lookup could find, so answers are exactly the database's; a
 * yes (a retry, or a false positive, well under 1 in 100) reads the record. A generation goes
 * once its newest record is past the window (a lookup counts such a record as gone). Built
 * at load from the live buckets (the records within the window as of the last command time),
 * then fed by every record written. */
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

/* Moves the records of the first format ("rq" client key -> value) to their buckets and drops
 * them and their expiry index ("rx"), in writes of CONVERT_BATCH records then one of the two
 * range deletes: a crash between them leaves "rq" records a next load moves again (to the
 * same keys). Every record is moved, expired or not: the result depends on the state only
 * (not on when it is loaded), and expired ones go with their bucket. */
#define CONVERT_BATCH 4096
static kyu_code_t convert_first_format(kyu_sm_t *self, kyu_err_t *err)
{
    static const char lo[2] = {'r', 'q'}, hi[2] = {'r', 'q' + 1};
    static const char xlo[2] = {'r', 'x'}, xhi[2] = {'r', 'x' + 1};
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(self->db, ro, meta(self));
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    char *rerr = NULL;
    bool any = false;
    rocksdb_iter_seek(it, lo, 2); /* the first key from "rq" on: "rq", "rx" or past both */
    if (rocksdb_iter_valid(it)) {
        size_t kl = 0;
        const char *k = rocksdb_iter_key(it, &kl);
        any = kl >= 2 && k[0] == 'r' && (k[1] == 'q' || k[1] == 'x');
    }
    for (; any && !rerr && rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl = 0, vl = 0;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
        if (kl < 2 || k[0] != 'r' || k[1] != 'q')
            break;
        const char *v = rocksdb_iter_value(it, &vl);
        if (kl != RQ_KEY || vl < 8)
            continue; /* not a record: dropped with the prefix */
        uint8_t nk[RK_KEY];
        rk_key(nk, kyu_get_be64((const uint8_t *)v) / BUCKET_MS, kyu_get_be64(k + 2),
               kyu_get_be64(k + 10));
        rocksdb_writebatch_put_cf(wb, meta(self), (char *)nk, RK_KEY, v, vl);
        if (rocksdb_writebatch_count(wb) == CONVERT_BATCH) {
            rocksdb_write(self->db, self->wopts, wb, &rerr);
            rocksdb_writebatch_clear(wb);
        }
    }
    if (!rerr)
        rocksdb_iter_get_error(it, &rerr);
    if (any && !rerr) {
        rocksdb_writebatch_delete_range_cf(wb, meta(self), lo, 2, hi, 2);
        rocksdb_writebatch_delete_range_cf(wb, meta(self), xlo, 2, xhi, 2);
        rocksdb_write(self->db, self->wopts, wb, &rerr);
    }
    rocksdb_writebatch_destroy(wb);
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    if (rerr) {
        kyu_err_set(err, KYU_ERR_STORAGE, "moving request keys to their buckets: %s", rerr);
        free(rerr);
        return KYU_ERR_STORAGE;
    }
    return KYU_OK;
}

/* The filter's build at a load: a scan of the live buckets, on a thread of its own. */
struct kyu_sm_keyfilter_load {
    pthread_t thread;
    rocksdb_t *db;
    rocksdb_column_family_handle_t *meta;
    uint64_t last_now;
    kyu_sm_keyfilter_t *f; /* built here, handed to the state machine when joined */
    char *rerr;            /* RocksDB's error, if the scan failed */
    bool joinable;         /* the scan runs on its thread (else it ran in the start) */
};

static void *keyfilter_load_run(void *arg)
{
    struct kyu_sm_keyfilter_load *l = arg;
    pthread_setname_np(pthread_self(), "kyu-sm-keys");
    /* the records within the window at the last command time: those at or before
     * last_now - window are gone to every later lookup (command times never go back) */
    uint8_t lo[RK_KEY], hi[2] = {'r', 'k' + 1};
    rk_key(lo, first_live_bucket(l->last_now), 0, 0);
    rocksdb_readoptions_t *ro = kyu_store_scan_readopts_create();
    rocksdb_readoptions_set_iterate_upper_bound(ro, (char *)hi, 2);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(l->db, ro, l->meta);
    for (rocksdb_iter_seek(it, (char *)lo, RK_KEY); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl = 0, vl = 0;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vl);
        if (kl != RK_KEY || vl < 8)
            continue;
        uint64_t t = kyu_get_be64(v);
        if (live(t, l->last_now))
            filter_add(l->f, kyu_get_be64(k + 10), kyu_get_be64(k + 18), t);
    }
    rocksdb_iter_get_error(it, &l->rerr);
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    return NULL;
}

kyu_code_t kyu_sm_dedup_load_start(kyu_sm_t *self, kyu_err_t *err)
{
    KYU_ASSERT(!self->keyfilter_load);
    if (convert_first_format(self, err) != KYU_OK)
        return KYU_ERR_STORAGE;
    kyu_sm_keyfilter_free(self);
    /* The oldest bucket held (dedup_bucket: the expiry drops from it). */
    uint8_t lo[RK_KEY], hi[2] = {'r', 'k' + 1};
    rk_key(lo, 0, 0, 0);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_upper_bound(ro, (char *)hi, 2);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(self->db, ro, meta(self));
    rocksdb_iter_seek(it, (char *)lo, 2);
    self->dedup_bucket = first_live_bucket(self->last_now);
    if (rocksdb_iter_valid(it)) {
        size_t kl = 0;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
        if (kl == RK_KEY && kyu_get_be64(k + 2) < self->dedup_bucket)
            self->dedup_bucket = kyu_get_be64(k + 2);
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
    struct kyu_sm_keyfilter_load *l = calloc(1, sizeof *l);
    KYU_ASSERT(l);
    l->db = self->db;
    l->meta = meta(self);
    l->last_now = self->last_now;
    l->f = calloc(1, sizeof *l->f);
    KYU_ASSERT(l->f);
    l->f->gen_keys = self->keyfilter_gen_keys ? self->keyfilter_gen_keys : FILTER_KEYS;
    l->joinable = pthread_create(&l->thread, NULL, keyfilter_load_run, l) == 0;
    if (!l->joinable)
        keyfilter_load_run(l); /* no thread to be had: here, then */
    self->keyfilter_load = l;
    return KYU_OK;
}

kyu_code_t kyu_sm_dedup_load_finish(kyu_sm_t *self, kyu_err_t *err)
{
    struct kyu_sm_keyfilter_load *l = self->keyfilter_load;
    KYU_ASSERT(l);
    if (l->joinable)
        KYU_ASSERT(pthread_join(l->thread, NULL) == 0);
    self->keyfilter_load = NULL;
    kyu_sm_keyfilter_free(self);
    self->keyfilter = l->f;
    kyu_code_t rc = KYU_OK;
    if (l->rerr) {
        rc = kyu_err_set(err, KYU_ERR_STORAGE, "loading request keys: %s", l->rerr);
        free(l->rerr);
    }
    free(l);
    return rc;
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

/* A SEND's record holds its ids in 16 bytes each when they are all lowercase UUIDs (every id
 * kyu_op_make_uuid makes; not a failed batch entry's): 20 bytes less a message, a third of
 * the record under a send load (docs/BENCHMARKS.md, "Branch rqbucket"). */
#define PACKED_SEND 0x40
#define PACKED_ID 16

/* A lowercase UUID's 16 bytes, written back as its text (libsodium's hex, lowercase). */
static void unpack_id(const uint8_t in[PACKED_ID], char id[KYU_UUID_LEN + 1])
{
    static const size_t part[5] = {4, 2, 2, 2, 6}; /* bytes of each dash-separated part */
    char *o = id;
    const uint8_t *b = in;
    for (size_t i = 0; i < 5; i++) {
        if (i)
            *o++ = '-';
        sodium_bin2hex(o, 2 * part[i] + 1, b, part[i]);
        o += 2 * part[i];
        b += part[i];
    }
}

/* Packs a lowercase UUID into 16 bytes; false if id is not one (it then stays 36 bytes): it
 * must read back exactly as it was (case, dashes where a UUID has them). */
static bool pack_id(const char *id, uint8_t out[PACKED_ID])
{
    size_t n = 0;
    const char *end = NULL;
    if (strnlen(id, KYU_UUID_LEN + 1) != KYU_UUID_LEN ||
        sodium_hex2bin(out, PACKED_ID, id, KYU_UUID_LEN, "-", &n, &end) != 0 || n != PACKED_ID ||
        end != id + KYU_UUID_LEN)
        return false;
    char back[KYU_UUID_LEN + 1];
    unpack_id(out, back);
    return memcmp(back, id, KYU_UUID_LEN) == 0;
}

/* Parses a record's value (after its time) into *d; false if it is not one. A record
 * without a type byte is a SEND's (the first format, kept so existing state reads). */
static bool parse_record(const uint8_t *p, size_t vl, kyu_dedup_t *d)
{
    memset(d, 0, sizeof *d);
    if (vl < 9)
        return false;
    if ((p[8] & 0xc0) == PACKED_SEND) { /* a SEND's: 0x40|n, packed ids */
        d->type = KYU_CMD_SEND;
        d->n = p[8] & 0x3f;
        if (d->n > KYU_BATCH_MAX || vl != 9 + d->n * PACKED_ID)
            return false;
        for (size_t i = 0; i < d->n; i++)
            unpack_id(p + 9 + i * PACKED_ID, d->ids[i]);
        return true;
    }
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

/* Reads the record of (client, key) within the window at now from the buckets it may be in:
 * true with its value (caller frees) and length, false when there is none (or on a read
 * error, then err is set). */
static bool read_record(kyu_sm_t *self, uint64_t client, uint64_t key, uint64_t now, char **val,
                        size_t *vlen, kyu_err_t *err)
{
    uint8_t keys[BUCKETS_READ][RK_KEY];
    const uint8_t *kp[BUCKETS_READ] = {NULL};
    size_t kl[BUCKETS_READ] = {0}, n = 0;
    for (uint64_t b = first_live_bucket(now); b <= now / BUCKET_MS; b++, n++) {
        KYU_ASSERT(n < BUCKETS_READ);
        rk_key(keys[n], b, client, key);
        kp[n] = keys[n];
        kl[n] = RK_KEY;
    }
    char *vals[BUCKETS_READ];
    size_t vlens[BUCKETS_READ];
    bool ok = kyu_sm_read_many(self, KYU_CF_META, kp, kl, n, vals, vlens, err);
    *val = NULL;
    /* At most one is live: a record is written only when none is. */
    for (size_t i = 0; i < n; i++) {
        if (ok && !*val && vals[i] && vlens[i] >= 8 &&
            live(kyu_get_be64((const uint8_t *)vals[i]), now)) {
            *val = vals[i];
            *vlen = vlens[i];
        } else {
            free(vals[i]);
        }
    }
    return *val != NULL;
}

kyu_code_t kyu_sm_dedup_lookup(kyu_sm_t *self, const kyu_command_t *c, kyu_dedup_t *d, bool *found,
                               kyu_err_t *err)
{
    *found = false;
    filter_expire(self->keyfilter, c->now_ms);
    if (!filter_may_have(self->keyfilter, c->rq_client, c->rq_key))
        return KYU_OK;
    char *v = NULL;
    size_t vl = 0;
    bool has = read_record(self, c->rq_client, c->rq_key, c->now_ms, &v, &vl, err);
    if (err->code)
        return err->code;
    if (!has)
        return KYU_OK;
    bool ok = parse_record((const uint8_t *)v, vl, d);
    free(v);
    if (!ok)
        return kyu_err_set(err, KYU_ERR_STORAGE, "a request key record is corrupt");
    *found = true;
    return KYU_OK;
}

bool kyu_sm_knows_request(kyu_sm_t *self, uint64_t client, uint64_t key, uint64_t now_ms)
{
    if (!filter_may_have(self->keyfilter, client, key))
        return false;
    kyu_err_t err;
    kyu_err_clear(&err);
    char *v = NULL;
    size_t vl = 0;
    bool known = read_record(self, client, key, now_ms, &v, &vl, &err);
    free(v);
    return known || err.code; /* on an error, yes: the request then goes through the log,
                                 which reports it */
}

void kyu_sm_dedup_record(kyu_sm_t *self, const kyu_command_t *c, const kyu_dedup_t *d)
{
    uint8_t k[RK_KEY], v[10 + KYU_BATCH_MAX * KYU_UUID_LEN];
    rk_key(k, c->now_ms / BUCKET_MS, c->rq_client, c->rq_key);
    kyu_put_be64(v, c->now_ms);
    KYU_ASSERT(d->n <= KYU_BATCH_MAX);
    bool packed = d->type == KYU_CMD_SEND;
    for (size_t i = 0; packed && i < d->n; i++)
        packed = pack_id(d->ids[i], v + 9 + i * PACKED_ID);
    size_t vl = 10;
    if (!packed) {
        v[8] = (uint8_t)(0x80 | d->type);
        v[9] = (uint8_t)d->n;
    }
    for (size_t i = 0; !packed && i < d->n; i++) {
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
    if (packed) { /* 0x40|n, packed ids */
        v[8] = (uint8_t)(PACKED_SEND | d->n);
        vl = 9 + d->n * PACKED_ID;
    } else if (d->type == KYU_CMD_SEND) { /* the first format: n, ids (no type byte) */
        memmove(v + 9, v + 10, vl - 10);
        v[8] = (uint8_t)d->n;
        vl--;
    }
    kyu_sm_put(self, KYU_CF_META, k, RK_KEY, v, vl);
    filter_add(self->keyfilter, c->rq_client, c->rq_key, c->now_ms);
}

/* The buckets before the first live one at now_ms go, in one range delete from the oldest one
 * held (dedup_bucket). Every node drops them at the same entry (the first keyed command past
 * the bucket), and whatever dedup_bucket a node has (found again at load, possibly older than
 * another node's), the state after is the same: no record in a bucket before the first live
 * one. Records are written to the bucket of their command time, never before it, so a
 * dropped bucket gets none again. */
void kyu_sm_dedup_expire(kyu_sm_t *self, uint64_t now_ms)
{
    uint64_t first = first_live_bucket(now_ms);
    if (first <= self->dedup_bucket)
        return;
    uint8_t lo[10] = {'r', 'k'}, hi[10] = {'r', 'k'};
    kyu_put_be64(lo + 2, self->dedup_bucket);
    kyu_put_be64(hi + 2, first);
    kyu_sm_del_range(self, KYU_CF_META, lo, sizeof lo, hi, sizeof hi);
    self->dedup_bucket = first;
    self->dedup_drops++;
}
