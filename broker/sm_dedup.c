/* sm_dedup: request keys of SENDs, so that a send retried after a lost reply (a failover, a
 * timeout) is applied once and answered with the message ids of the first attempt.
 *
 * Keys, in the meta column family (written in the entry's batch, so replicated and restored
 * like every other state):
 *   "rq" client(8) key(8)            -> time(8) n(1) n × message id (36 bytes)
 *   "rx" time(8) client(8) key(8)    -> ""   (expiry index)
 * A record lives KYU_DEDUP_WINDOW_MS of command time (the leader's clock in the command, so
 * every node expires the same records at the same entry); each keyed SEND drops at most
 * EXPIRE_MAX expired records, which bounds both the table and the work per command.
 */
#include "sm_internal.h"

#include <stdlib.h>
#include <string.h>

#define EXPIRE_MAX 16
#define RQ_KEY 18
#define RX_KEY 26

/* Every use of the dedup records goes through the indexed batch: entry_reads (sm_apply.c)
 * must have chosen it for any entry holding a keyed send. */
static rocksdb_column_family_handle_t *meta(kyu_sm_t *self)
{
    KYU_ASSERT(self->indexed);
    return kyu_store_cf(self->store, KYU_CF_META);
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

kyu_code_t kyu_sm_dedup_lookup(kyu_sm_t *self, const kyu_command_t *c, kyu_result_t *res,
                               bool *found, kyu_err_t *err)
{
    *found = false;
    uint8_t k[RQ_KEY];
    rq_key(k, c->rq_client, c->rq_key);
    char *rerr = NULL;
    size_t vl = 0;
    char *v = rocksdb_writebatch_wi_get_from_batch_and_db_cf(
        self->batch, self->db, kyu_store_readopts(self->store), meta(self), (char *)k, RQ_KEY, &vl,
        &rerr);
    if (rerr) {
        kyu_err_set(err, KYU_ERR_STORAGE, "reading a request key: %s", rerr);
        free(rerr);
        return KYU_ERR_STORAGE;
    }
    if (!v)
        return KYU_OK;
    const uint8_t *p = (const uint8_t *)v;
    size_t n = vl >= 9 ? p[8] : 0;
    if (vl < 9 || n > KYU_BATCH_MAX || vl != 9 + n * KYU_UUID_LEN) {
        free(v);
        return kyu_err_set(err, KYU_ERR_STORAGE, "a request key record is corrupt");
    }
    for (size_t i = 0; i < n; i++) {
        memcpy(res->ids[i], p + 9 + i * KYU_UUID_LEN, KYU_UUID_LEN);
        res->ids[i][KYU_UUID_LEN] = '\0';
    }
    res->n_ids = n;
    free(v);
    *found = true;
    return KYU_OK;
}

void kyu_sm_dedup_record(kyu_sm_t *self, const kyu_command_t *c, const kyu_result_t *res)
{
    uint8_t k[RQ_KEY], x[RX_KEY], v[9 + KYU_BATCH_MAX * KYU_UUID_LEN];
    rq_key(k, c->rq_client, c->rq_key);
    rx_key(x, c->now_ms, c->rq_client, c->rq_key);
    kyu_put_be64(v, c->now_ms);
    v[8] = (uint8_t)res->n_ids;
    for (size_t i = 0; i < res->n_ids; i++)
        memcpy(v + 9 + i * KYU_UUID_LEN, res->ids[i], KYU_UUID_LEN);
    rocksdb_writebatch_wi_put_cf(self->batch, meta(self), (char *)k, RQ_KEY, (char *)v,
                                 9 + res->n_ids * KYU_UUID_LEN);
    rocksdb_writebatch_wi_put_cf(self->batch, meta(self), (char *)x, RX_KEY, "", 0);
}

kyu_code_t kyu_sm_dedup_expire(kyu_sm_t *self, uint64_t now_ms, kyu_err_t *err)
{
    if (now_ms < KYU_DEDUP_WINDOW_MS)
        return KYU_OK;
    uint8_t lo[2] = {'r', 'x'};
    rocksdb_iterator_t *base =
        rocksdb_create_iterator_cf(self->db, kyu_store_readopts(self->store), meta(self));
    rocksdb_iterator_t *it =
        rocksdb_writebatch_wi_create_iterator_with_base_cf(self->batch, base, meta(self));
    int dropped = 0;
    for (rocksdb_iter_seek(it, (char *)lo, 2); rocksdb_iter_valid(it) && dropped < EXPIRE_MAX;
         rocksdb_iter_next(it)) {
        size_t kl = 0;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
        if (kl != RX_KEY || k[0] != 'r' || k[1] != 'x' ||
            kyu_get_be64(k + 2) > now_ms - KYU_DEDUP_WINDOW_MS)
            break;
        uint8_t rk[RQ_KEY];
        rq_key(rk, kyu_get_be64(k + 10), kyu_get_be64(k + 18));
        uint8_t xk[RX_KEY];
        memcpy(xk, k, RX_KEY); /* the iterator's key changes with the batch */
        rocksdb_writebatch_wi_delete_cf(self->batch, meta(self), (char *)rk, RQ_KEY);
        rocksdb_writebatch_wi_delete_cf(self->batch, meta(self), (char *)xk, RX_KEY);
        dropped++;
    }
    char *rerr = NULL;
    rocksdb_iter_get_error(it, &rerr);
    rocksdb_iter_destroy(it); /* also destroys base */
    if (rerr) {
        kyu_err_set(err, KYU_ERR_STORAGE, "expiring request keys: %s", rerr);
        free(rerr);
        return KYU_ERR_STORAGE;
    }
    return KYU_OK;
}
