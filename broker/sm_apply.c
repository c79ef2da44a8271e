/* sm_apply: the state machine's commands, applied one log entry at a time.
 *
 * All writes of an entry go into one WriteBatchWithIndex, which later commands of the same
 * entry read through (a RECEIVE sees the SEND before it; two RECEIVEs never lease the same
 * message). The entry's index and the counters go into the same batch, so a restart neither
 * replays an applied entry nor misses one. The write is not synced: the log entry is already
 * durable, and entries past the stored applied index are applied again after a crash. */
#include "sm_internal.h"

#include <stdlib.h>
#include <string.h>

static rocksdb_column_family_handle_t *cf(kyu_sm_t *self, kyu_cf_t c)
{
    return kyu_store_cf(self->store, c);
}

static void put(kyu_sm_t *self, kyu_cf_t c, const void *k, size_t kl, const void *v, size_t vl)
{
    if (self->indexed)
        rocksdb_writebatch_wi_put_cf(self->batch, cf(self, c), k, kl, v, vl);
    else
        rocksdb_writebatch_put_cf(self->plain, cf(self, c), k, kl, v, vl);
}

static void del(kyu_sm_t *self, kyu_cf_t c, const void *k, size_t kl)
{
    if (self->indexed)
        rocksdb_writebatch_wi_delete_cf(self->batch, cf(self, c), k, kl);
    else
        rocksdb_writebatch_delete_cf(self->plain, cf(self, c), k, kl);
}

/* Reads through the current entry's writes. Returns a heap value (caller frees) or NULL. */
static char *get(kyu_sm_t *self, kyu_cf_t c, const void *k, size_t kl, size_t *vl, kyu_err_t *err)
{
    KYU_ASSERT(self->indexed); /* entry_reads said this entry only writes */
    char *rerr = NULL;
    char *v = rocksdb_writebatch_wi_get_from_batch_and_db_cf(
        self->batch, self->db, kyu_store_readopts(self->store), cf(self, c), k, kl, vl, &rerr);
    if (rerr) {
        kyu_err_set(err, KYU_ERR_STORAGE, "read failed: %s", rerr);
        free(rerr);
    }
    return v;
}

static void touch(kyu_sm_t *self, queue_t *q)
{
    if (!q->dirty) {
        q->dirty = true;
        zlistx_add_end(self->touched, q);
    }
}

static void lease_encode(uint8_t out[LEASE_LEN], const lease_t *l)
{
    kyu_put_be64(out, l->visible_at);
    kyu_put_be32(out + 8, l->receive_count);
    kyu_put_be32(out + 12, l->gen);
    kyu_put_be64(out + 16, l->first_ms);
}

static bool lease_decode(const char *v, size_t len, lease_t *l)
{
    if (len != LEASE_LEN)
        return false;
    const uint8_t *p = (const uint8_t *)v;
    l->visible_at = kyu_get_be64(p);
    l->receive_count = kyu_get_be32(p + 8);
    l->gen = kyu_get_be32(p + 12);
    l->first_ms = kyu_get_be64(p + 16);
    return true;
}

/* Moves a message's visibility key and rewrites its lease record. */
static void set_lease(kyu_sm_t *self, queue_t *q, uint64_t seq, uint64_t old_visible_at,
                      const lease_t *l)
{
    uint64_t qid = q->qid;
    if (l->visible_at < q->scan_floor)
        q->scan_floor = l->visible_at;
    uint8_t k[KEY_VIS], kq[KEY_QS], v[LEASE_LEN];
    key_vis(k, qid, old_visible_at, seq);
    del(self, KYU_CF_VISIBILITY, k, KEY_VIS);
    key_vis(k, qid, l->visible_at, seq);
    put(self, KYU_CF_VISIBILITY, k, KEY_VIS, "", 0);
    key_qs(kq, qid, seq);
    lease_encode(v, l);
    put(self, KYU_CF_LEASES, kq, KEY_QS, v, LEASE_LEN);
}

static queue_t *find_queue(kyu_sm_t *self, const char *name, kyu_result_t *res)
{
    queue_t *q = zhashx_lookup(self->queues, name);
    if (!q)
        kyu_err_set((kyu_err_t *)res, KYU_ERR_NO_SUCH_QUEUE, "queue '%s' does not exist", name);
    return q;
}

/* kyu_result_t starts with the same two fields as kyu_err_t, so errors are set through it. */
_Static_assert(offsetof(kyu_result_t, code) == offsetof(kyu_err_t, code) &&
                   offsetof(kyu_result_t, error) == offsetof(kyu_err_t, msg),
               "kyu_result_t must begin like kyu_err_t");

static kyu_code_t apply_create_queue(kyu_sm_t *self, const kyu_command_t *c, kyu_result_t *res)
{
    uint32_t vt = c->vt >= 0 ? (uint32_t)c->vt : KYU_VISIBILITY_DEFAULT;
    queue_t *q = zhashx_lookup(self->queues, c->queue);
    if (q) {
        /* As SQS: creating an existing queue with the same attributes succeeds. */
        if (q->vt != vt)
            kyu_err_set((kyu_err_t *)res, KYU_ERR_QUEUE_EXISTS,
                        "queue '%s' exists with visibility timeout %u, not %u", c->queue, q->vt,
                        vt);
        return KYU_OK;
    }
    if (zhashx_size(self->queues) >= KYU_QUEUES_MAX) {
        kyu_err_set((kyu_err_t *)res, KYU_ERR_LIMIT_EXCEEDED, "at most %d queues", KYU_QUEUES_MAX);
        return KYU_OK;
    }
    q = calloc(1, sizeof *q);
    if (!q)
        return KYU_ERR_INTERNAL;
    snprintf(q->name, sizeof q->name, "%s", c->queue);
    q->qid = self->next_qid++;
    q->vt = vt;
    q->created_ms = c->now_ms;
    zhashx_insert(self->queues, q->name, q);
    touch(self, q);
    return KYU_OK;
}

static kyu_code_t apply_delete_queue(kyu_sm_t *self, const kyu_command_t *c, kyu_result_t *res)
{
    queue_t *q = find_queue(self, c->queue, res);
    if (!q)
        return KYU_OK;
    uint8_t gc[10] = {'g', 'c'};
    kyu_put_be64(gc + 2, q->qid);
    put(self, KYU_CF_META, gc, sizeof gc, "", 0);
    /* The record leaves the hash now; it is freed after the entry's write (forget_touched). */
    zhashx_delete(self->queues, q->name);
    q->deleted = true;
    touch(self, q);
    return KYU_OK;
}

static kyu_code_t apply_send(kyu_sm_t *self, const kyu_command_t *c, kyu_result_t *res)
{
    queue_t *q = find_queue(self, c->queue, res);
    if (!q)
        return KYU_OK;
    for (size_t i = 0; i < c->n; i++) {
        uint64_t seq = self->next_seq++;
        uint8_t k[KEY_QS], kv[KEY_VIS];
        key_qs(k, q->qid, seq);
        /* Message record: sent_ms(8) id_len(1) id, then the body, in two parts so the body
         * is copied once, by RocksDB. */
        size_t idlen = strlen(c->ids[i]);
        uint8_t head[9 + KYU_UUID_LEN];
        kyu_put_be64(head, c->now_ms);
        head[8] = (uint8_t)idlen;
        memcpy(head + 9, c->ids[i], idlen);
        const char *kparts[1] = {(const char *)k};
        size_t ksizes[1] = {KEY_QS};
        const char *vparts[2] = {(const char *)head, c->body_lens[i] ? c->bodies[i] : ""};
        size_t vsizes[2] = {9 + idlen, c->body_lens[i]};
        if (self->indexed)
            rocksdb_writebatch_wi_putv_cf(self->batch, cf(self, KYU_CF_MESSAGES), 1, kparts, ksizes,
                                          2, vparts, vsizes);
        else
            rocksdb_writebatch_putv_cf(self->plain, cf(self, KYU_CF_MESSAGES), 1, kparts, ksizes, 2,
                                       vparts, vsizes);
        lease_t l = {.visible_at = c->now_ms};
        uint8_t lv[LEASE_LEN];
        lease_encode(lv, &l);
        put(self, KYU_CF_LEASES, k, KEY_QS, lv, LEASE_LEN);
        key_vis(kv, q->qid, c->now_ms, seq);
        if (c->now_ms < q->scan_floor)
            q->scan_floor = c->now_ms;
        put(self, KYU_CF_VISIBILITY, kv, KEY_VIS, "", 0);
        q->n_messages++;
        memcpy(res->ids[i], c->ids[i], KYU_UUID_LEN + 1);
    }
    res->n_ids = c->n;
    touch(self, q);
    return KYU_OK;
}

/* Fills a received message's meta and body from its message record. */
static kyu_code_t read_message(kyu_sm_t *self, uint64_t qid, uint64_t seq, const lease_t *l,
                               kyu_result_t *res, kyu_err_t *err)
{
    uint8_t k[KEY_QS];
    key_qs(k, qid, seq);
    size_t vlen = 0;
    char *v = get(self, KYU_CF_MESSAGES, k, KEY_QS, &vlen, err);
    if (!v || vlen < 9 || vlen < 9 + (size_t)(uint8_t)v[8] || (uint8_t)v[8] > KYU_UUID_LEN) {
        free(v);
        return err->code ? err->code
                         : kyu_err_set(err, KYU_ERR_STORAGE, "message record %llu missing",
                                       (unsigned long long)seq);
    }
    size_t i = res->n_msgs++, idlen = (uint8_t)v[8];
    kyu_msg_meta_t *m = &res->msgs[i];
    memcpy(m->message_id, v + 9, idlen);
    m->message_id[idlen] = '\0';
    kyu_handle_format(m->handle, seq, l->gen);
    m->receive_count = l->receive_count;
    m->sent_ms = kyu_get_be64((const uint8_t *)v);
    m->first_receive_ms = l->first_ms;
    res->owned[i] = v;
    res->bodies[i] = v + 9 + idlen;
    res->body_lens[i] = vlen - 9 - idlen;
    return KYU_OK;
}

/* Leases up to max visible messages; *leased (if not NULL) gets each one's seq and lease
 * generation. */
static kyu_code_t apply_receive(kyu_sm_t *self, const kyu_command_t *c, kyu_result_t *res,
                                bool want_bodies, kyu_dedup_t *leased, kyu_err_t *err)
{
    queue_t *q = find_queue(self, c->queue, res);
    if (!q)
        return KYU_OK;
    uint32_t max = c->max ? c->max : 1;
    uint64_t vt_ms = (uint64_t)(c->vt >= 0 ? (uint64_t)c->vt : q->vt) * 1000;
    /* Collect first: the batch must not change under its iterator. */
    uint64_t seqs[KYU_BATCH_MAX];
    uint32_t found = 0;
    uint8_t lo[KEY_VIS];
    key_vis(lo, q->qid, q->scan_floor, 0);
    /* Bounded at now: past it lie the tombstones of every message leased and then deleted
     * (at their old lease ends), which an unbounded scan would walk whenever the queue has
     * nothing visible. */
    uint8_t hi[KEY_VIS];
    key_vis(hi, q->qid, c->now_ms + 1, 0);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_upper_bound(ro, (char *)hi, KEY_VIS);
    rocksdb_iterator_t *base =
        rocksdb_create_iterator_cf(self->db, ro, cf(self, KYU_CF_VISIBILITY));
    KYU_ASSERT(self->indexed);
    rocksdb_iterator_t *it = rocksdb_writebatch_wi_create_iterator_with_base_cf(
        self->batch, base, cf(self, KYU_CF_VISIBILITY));
    /* The first key the scan does not take is the next floor: every key before it is dead or
     * taken (and a taken key's new place lowers the floor in set_lease if need be). With no
     * such key, no live key is left at all, and now will do. */
    uint64_t floor = c->now_ms;
    for (rocksdb_iter_seek(it, (char *)lo, KEY_VIS); rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t klen = 0;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &klen);
        if (klen != KEY_VIS || kyu_get_be64(k) != q->qid)
            break;
        uint64_t visible_at = kyu_get_be64(k + 8);
        /* A key past now can only come from this entry's batch (the batch's part of the
         * iterator ignores the upper bound): the base keys between now and it were not
         * seen, so the floor stays at now. */
        if (visible_at > c->now_ms) {
            floor = c->now_ms;
            break;
        }
        if (found == max) {
            floor = visible_at;
            break;
        }
        seqs[found++] = kyu_get_be64(k + 16);
    }
    char *rerr = NULL;
    rocksdb_iter_get_error(it, &rerr);
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    if (rerr) {
        kyu_err_set(err, KYU_ERR_STORAGE, "reading visibility index: %s", rerr);
        free(rerr);
        return KYU_ERR_STORAGE;
    }
    q->scan_floor = floor;
    for (uint32_t i = 0; i < found; i++) {
        uint8_t k[KEY_QS];
        key_qs(k, q->qid, seqs[i]);
        size_t vlen = 0;
        char *v = get(self, KYU_CF_LEASES, k, KEY_QS, &vlen, err);
        lease_t l;
        bool ok = v && lease_decode(v, vlen, &l);
        free(v);
        if (!ok)
            return err->code ? err->code
                             : kyu_err_set(err, KYU_ERR_STORAGE, "lease record %llu corrupt",
                                           (unsigned long long)seqs[i]);
        uint64_t old = l.visible_at;
        l.visible_at = c->now_ms + vt_ms;
        l.receive_count++;
        l.gen++;
        if (!l.first_ms)
            l.first_ms = c->now_ms;
        set_lease(self, q, seqs[i], old, &l);
        if (leased) {
            leased->seqs[leased->n] = seqs[i];
            leased->gens[leased->n++] = l.gen;
        }
        if (want_bodies && read_message(self, q->qid, seqs[i], &l, res, err))
            return err->code;
    }
    return KYU_OK;
}

/* Checks a receipt handle against the message's current lease. Returns the status for the
 * handle; on KYU_OK, *seq and *l describe the message. */
static kyu_code_t check_handle(kyu_sm_t *self, const queue_t *q, const char *handle, uint64_t *seq,
                               lease_t *l, kyu_err_t *err)
{
    uint32_t gen = 0;
    if (!kyu_handle_parse(handle, seq, &gen) || gen == 0)
        return KYU_ERR_RECEIPT_INVALID;
    uint8_t k[KEY_QS];
    key_qs(k, q->qid, *seq);
    size_t vlen = 0;
    char *v = get(self, KYU_CF_LEASES, k, KEY_QS, &vlen, err);
    bool ok = v && lease_decode(v, vlen, l);
    free(v);
    if (err->code)
        return err->code;
    if (!ok || gen > l->gen)
        return KYU_ERR_RECEIPT_INVALID; /* gone (deleted), another queue's, or forged */
    if (gen < l->gen)
        return KYU_ERR_RECEIPT_STALE;
    return KYU_OK;
}

/* DELETE and CHANGE_VISIBILITY: each handle is checked against the message's current lease
 * and gets its own result; then the message is deleted, or its lease moved. */
static kyu_code_t apply_handles(kyu_sm_t *self, const kyu_command_t *c, kyu_result_t *res,
                                kyu_err_t *err)
{
    queue_t *q = find_queue(self, c->queue, res);
    if (!q)
        return KYU_OK;
    for (size_t i = 0; i < c->n; i++) {
        uint64_t seq = 0;
        lease_t l;
        kyu_code_t st = check_handle(self, q, c->handles[i], &seq, &l, err);
        if (err->code)
            return err->code;
        /* As SQS: a message whose lease ran out is not in flight; receive it again. (Delete
         * still works then, also as SQS.) */
        if (st == KYU_OK && c->type == KYU_CMD_CHANGE_VISIBILITY && l.visible_at <= c->now_ms)
            st = KYU_ERR_RECEIPT_STALE;
        res->results[i] = st;
        if (st != KYU_OK)
            continue;
        if (c->type == KYU_CMD_CHANGE_VISIBILITY) {
            uint64_t old = l.visible_at;
            l.visible_at = c->now_ms + (uint64_t)(c->vt > 0 ? c->vt : 0) * 1000;
            set_lease(self, q, seq, old, &l);
            continue;
        }
        uint8_t k[KEY_QS], kv[KEY_VIS];
        key_qs(k, q->qid, seq);
        key_vis(kv, q->qid, l.visible_at, seq);
        del(self, KYU_CF_MESSAGES, k, KEY_QS);
        del(self, KYU_CF_LEASES, k, KEY_QS);
        del(self, KYU_CF_VISIBILITY, kv, KEY_VIS);
        q->n_messages--;
        touch(self, q);
    }
    res->n_results = c->n;
    return KYU_OK;
}

/* A retried RECEIVE answers with the leases its first attempt granted that are still held
 * under the same handle (not deleted, not run out, not received again since). */
static kyu_code_t replay_receive(kyu_sm_t *self, const kyu_command_t *c, const kyu_dedup_t *d,
                                 kyu_result_t *res, bool want_bodies, kyu_err_t *err)
{
    queue_t *q = find_queue(self, c->queue, res);
    if (!q || !want_bodies)
        return KYU_OK;
    for (size_t i = 0; i < d->n; i++) {
        uint8_t k[KEY_QS];
        key_qs(k, q->qid, d->seqs[i]);
        size_t vlen = 0;
        char *v = get(self, KYU_CF_LEASES, k, KEY_QS, &vlen, err);
        lease_t l;
        bool held =
            v && lease_decode(v, vlen, &l) && l.gen == d->gens[i] && l.visible_at > c->now_ms;
        free(v);
        if (err->code)
            return err->code;
        if (held && read_message(self, q->qid, d->seqs[i], &l, res, err))
            return err->code;
    }
    return KYU_OK;
}

/* Applies a write; with a request key seen within the dedup window, answers from what the
 * first attempt did instead (a client retried it after a lost reply) and changes nothing. */
static kyu_code_t apply_once(kyu_sm_t *self, const kyu_command_t *c, kyu_result_t *res,
                             bool want_bodies, kyu_err_t *err)
{
    kyu_dedup_t d = {.type = (uint8_t)c->type};
    bool keyed = c->rq_client != 0, found = false;
    kyu_code_t rc = KYU_OK;
    if (keyed && (rc = kyu_sm_dedup_expire(self, c->now_ms, err)) == KYU_OK)
        rc = kyu_sm_dedup_lookup(self, c, &d, &found, err);
    if (rc != KYU_OK)
        return rc;
    if (found && d.type != c->type) {
        kyu_err_set((kyu_err_t *)res, KYU_ERR_INVALID_ARGUMENT,
                    "request key %llu was used for another request", (unsigned long long)c->rq_key);
        return KYU_OK;
    }
    switch (c->type) {
    case KYU_CMD_DELETE_QUEUE:
        if (found)
            return KYU_OK;
        rc = apply_delete_queue(self, c, res);
        break;
    case KYU_CMD_SEND:
        if (found) {
            for (size_t i = 0; i < d.n; i++)
                memcpy(res->ids[i], d.ids[i], KYU_UUID_LEN + 1);
            res->n_ids = d.n;
            return KYU_OK;
        }
        rc = apply_send(self, c, res);
        for (size_t i = 0; i < res->n_ids; i++)
            memcpy(d.ids[i], res->ids[i], KYU_UUID_LEN + 1);
        d.n = res->n_ids;
        break;
    case KYU_CMD_RECEIVE:
        if (found)
            return replay_receive(self, c, &d, res, want_bodies, err);
        rc = apply_receive(self, c, res, want_bodies, keyed ? &d : NULL, err);
        break;
    case KYU_CMD_DELETE:
    case KYU_CMD_CHANGE_VISIBILITY:
        if (found) {
            for (size_t i = 0; i < d.n; i++)
                res->results[i] = d.codes[i];
            res->n_results = d.n;
            return KYU_OK;
        }
        rc = apply_handles(self, c, res, err);
        for (size_t i = 0; i < res->n_results; i++)
            d.codes[i] = (uint8_t)res->results[i];
        d.n = res->n_results;
        break;
    default:
        KYU_ASSERT(!"apply_once: not a keyed command");
    }
    if (keyed && rc == KYU_OK && res->code == KYU_OK)
        kyu_sm_dedup_record(self, c, &d);
    return rc;
}

static void put_meta(kyu_sm_t *self, const char *key, uint64_t v)
{
    uint8_t b[8];
    kyu_put_be64(b, v);
    put(self, KYU_CF_META, key, strlen(key), b, 8);
}

/* Adds the dirty queue records and counters to the batch; frees deleted queues' records. */
static bool finish_entry(kyu_sm_t *self, uint64_t index, bool *dropped_queue)
{
    *dropped_queue = false;
    for (queue_t *q = zlistx_first(self->touched); q; q = zlistx_next(self->touched)) {
        if (q->deleted) {
            del(self, KYU_CF_QUEUES, q->name, strlen(q->name));
            *dropped_queue = true;
            continue;
        }
        uint8_t v[28];
        kyu_put_be64(v, q->qid);
        kyu_put_be32(v + 8, q->vt);
        kyu_put_be64(v + 12, q->created_ms);
        kyu_put_be64(v + 20, q->n_messages);
        put(self, KYU_CF_QUEUES, q->name, strlen(q->name), v, sizeof v);
    }
    put_meta(self, "applied_index", index);
    if (self->next_term != self->applied_term)
        put_meta(self, "applied_term", self->next_term);
    if (self->conf_pending)
        put(self, KYU_CF_META, "raft_conf", 9, self->conf, self->conf_len);
    put_meta(self, "next_seq", self->next_seq);
    put_meta(self, "next_qid", self->next_qid);
    put_meta(self, "last_now", self->last_now);
    return true;
}

static void forget_touched(kyu_sm_t *self)
{
    for (queue_t *q = zlistx_first(self->touched); q; q = zlistx_next(self->touched)) {
        q->dirty = false;
        if (q->deleted)
            free(q);
    }
    zlistx_purge(self->touched);
}

typedef struct {
    uint64_t client, key;
} rq_t;

static int rq_cmp(const void *a, const void *b)
{
    const rq_t *x = a, *y = b;
    if (x->client != y->client)
        return x->client < y->client ? -1 : 1;
    return x->key < y->key ? -1 : x->key > y->key;
}

/* True when a command of the entry reads what an earlier command of the same entry wrote:
 * a receive, delete or visibility change (leases, the visibility index), or a request key
 * used twice in the entry (a client resent it while the first was still waiting). Only then
 * does the entry need the indexed batch, which costs a skiplist insert per write; a keyed
 * write alone looks its key up in the database (sm_dedup.c). A command that does not decode
 * counts as reading; the apply below reports it. */
static bool entry_reads(const void *payload, size_t len)
{
    size_t off = 0, n = 0, cap = 0;
    rq_t *keys = NULL;
    bool reads = false;
    while (off < len && !reads) {
        kyu_command_t cmd;
        kyu_err_t err;
        if (kyu_command_decode(payload, len, &off, &cmd, &err) != KYU_OK ||
            cmd.type == KYU_CMD_RECEIVE || cmd.type == KYU_CMD_DELETE ||
            cmd.type == KYU_CMD_CHANGE_VISIBILITY) {
            reads = true;
        } else if (cmd.rq_client != 0) {
            if (n == cap) {
                cap = cap ? cap * 2 : 64;
                rq_t *more = realloc(keys, cap * sizeof *keys);
                KYU_ASSERT(more);
                keys = more;
            }
            keys[n++] = (rq_t){cmd.rq_client, cmd.rq_key};
        }
    }
    if (!reads && n > 1) {
        qsort(keys, n, sizeof *keys, rq_cmp);
        for (size_t i = 1; i < n && !reads; i++)
            reads = rq_cmp(&keys[i - 1], &keys[i]) == 0;
    }
    free(keys);
    return reads;
}

kyu_code_t kyu_sm_apply(kyu_sm_t *self, uint64_t index, const void *payload, size_t len,
                        kyu_result_t *results, size_t cap, size_t *n, kyu_err_t *err)
{
    KYU_ASSERT(index == self->applied_index + 1);
    kyu_err_clear(err);
    rocksdb_writebatch_wi_clear(self->batch);
    rocksdb_writebatch_clear(self->plain);
    self->indexed = entry_reads(payload, len);
    size_t off = 0, count = 0;
    kyu_code_t rc = KYU_OK;
    kyu_result_t scratch;
    while (off < len && rc == KYU_OK) {
        kyu_command_t cmd;
        if ((rc = kyu_command_decode(payload, len, &off, &cmd, err)) != KYU_OK)
            break;
        bool waited = results && count < cap;
        kyu_result_t *res = waited ? &results[count] : &scratch;
        memset(res, 0, sizeof *res);
        if (cmd.now_ms > self->last_now)
            self->last_now = cmd.now_ms;
        switch (cmd.type) {
        case KYU_CMD_CREATE_QUEUE:
            rc = apply_create_queue(self, &cmd, res);
            break;
        case KYU_CMD_DELETE_QUEUE:
        case KYU_CMD_SEND:
        case KYU_CMD_RECEIVE:
        case KYU_CMD_DELETE:
        case KYU_CMD_CHANGE_VISIBILITY:
            rc = apply_once(self, &cmd, res, waited, err);
            break;
        case KYU_CMD_SET_MEMBER:
        case KYU_CMD_DROP_MEMBER:
            rc = kyu_sm_apply_member(self, &cmd, res);
            break;
        }
        if (!waited)
            kyu_result_clear(&scratch);
        if (rc != KYU_OK && !err->code)
            kyu_err_set(err, rc, "applying entry %llu failed", (unsigned long long)index);
        count++;
    }
    if (n)
        *n = results ? (count < cap ? count : cap) : 0;
    if (rc != KYU_OK) {
        forget_touched(self);
        kyu_sm_members_settle(self, false);
        self->dedup_floor = 0; /* it may count records dropped in the discarded batch */
        return rc;
    }
    bool dropped = false;
    finish_entry(self, index, &dropped);
    char *rerr = NULL;
    if (self->indexed)
        rocksdb_write_writebatch_wi(self->db, self->wopts, self->batch, &rerr);
    else
        rocksdb_write(self->db, self->wopts, self->plain, &rerr);
    forget_touched(self);
    kyu_sm_members_settle(self, rerr == NULL);
    if (rerr) {
        kyu_err_set(err, KYU_ERR_STORAGE, "writing applied state: %s", rerr);
        free(rerr);
        return KYU_ERR_STORAGE;
    }
    self->applied_index = index;
    self->applied_term = self->next_term;
    self->conf_pending = false;
    if (dropped)
        return kyu_sm_collect_garbage(self, err);
    return KYU_OK;
}
