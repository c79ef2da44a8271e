/* sm_walk: the loaders' scans of the store (sm_internal.h, "Walking the store").
 *
 * A start or reload rebuilds the in-memory indexes (sm_index.c's leases, sm_fifo.c's and
 * sm_fair.c's groups and their records) by reading one range of a column family in key order.
 * The reading, the iterator's error and the cleanup are the same for each: here once, with the
 * record's meaning left to a callback. These run at a start only, never on an apply.
 */
#include "sm_internal.h"

#include <stdio.h>
#include <stdlib.h>

kyu_code_t kyu_sm_walk(kyu_sm_t *self, kyu_cf_t cf, const void *lo, size_t lo_len, const void *hi,
                       size_t hi_len, const char *what, kyu_sm_walk_fn fn, void *arg,
                       kyu_err_t *err)
{
    rocksdb_readoptions_t *ro = kyu_store_scan_readopts_create();
    if (hi)
        rocksdb_readoptions_set_iterate_upper_bound(ro, hi, hi_len);
    rocksdb_iterator_t *it =
        rocksdb_create_iterator_cf(self->db, ro, kyu_store_cf(self->store, cf));
    kyu_code_t rc = KYU_OK;
    if (lo)
        rocksdb_iter_seek(it, lo, lo_len);
    else
        rocksdb_iter_seek_to_first(it);
    for (; rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl = 0, vl = 0;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
        const char *v = rocksdb_iter_value(it, &vl);
        rc = fn(arg, k, kl, v, vl, err);
        if (rc != KYU_OK)
            break;
    }
    char *rerr = NULL;
    rocksdb_iter_get_error(it, &rerr);
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    if (rerr) {
        rc = kyu_err_set(err, KYU_ERR_STORAGE, "reading %s: %s", what, rerr);
        free(rerr);
    }
    return rc;
}

typedef struct {
    kyu_sm_t *self;
    queue_t *q;
    bool whole;
    kyu_sm_group_fn add;
} groups_walk_t;

static kyu_code_t group_record(void *arg, const uint8_t *k, size_t kl, const char *v, size_t vl,
                               kyu_err_t *err)
{
    groups_walk_t *w = arg;
    if (kl != KEY_QS)
        return KYU_OK; /* a provenance record */
    kyu_sent_t m;
    if (!(w->whole ? kyu_sm_parse_message(v, vl, &m) : kyu_sm_parse_head(v, vl, &m)))
        return kyu_err_set(err, KYU_ERR_STORAGE, "corrupt message record in queue '%s'",
                           w->q->name);
    w->add(w->self, w->q, kyu_get_be64(k + 8), m.group, m.group_len);
    return KYU_OK;
}

kyu_code_t kyu_sm_walk_groups(kyu_sm_t *self, queue_t *q, bool whole, kyu_sm_group_fn add,
                              kyu_err_t *err)
{
    uint8_t lo[8], hi[8];
    kyu_put_be64(lo, q->qid);
    kyu_put_be64(hi, q->qid + 1);
    char what[KYU_NAME_MAX + 16];
    snprintf(what, sizeof what, "queue '%s'", q->name);
    groups_walk_t w = {self, q, whole, add};
    return kyu_sm_walk(self, KYU_CF_MESSAGES, lo, sizeof lo, hi, sizeof hi, what, group_record, &w,
                       err);
}
