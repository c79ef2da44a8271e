/* sm: the state machine. See sm.h for the contract.
 *
 * Key layout (format version 1; every key of a queue's data starts with its qid, a number
 * never reused, so that deleting a queue is a range delete and a queue's data can later move
 * to another Raft group as one range):
 *   queues     name                      -> msgpack [3, qid, vt, created_ms, n_messages,
 *                                           max_size, modified_ms, delay, flags, attributes]
 *              (format 3; flags: QUEUE_FLAG_MOVED_IN, QUEUE_FLAG_GROUPS; attributes: the
 *              map of those of queue_attrs.h not at their defaults, {} when all are).
 *              Records written before it are fixed: qid(8) vt(4) created_ms(8)
 *              n_messages(8) max_size(4) modified_ms(8) delay(4) (44 bytes), or only up to
 *              n_messages (28 bytes, before MaximumMessageSize and DelaySeconds: max_size
 *              KYU_MAX_SIZE_DEFAULT, delay 0, modified_ms = created_ms). A fixed record
 *              starts with the qid's high byte, 0, a format 3 one with 0x9a: both load (the
 *              other attributes at their defaults), and a queue's record is written in
 *              format 3 at its next change; a binary older than format 3 refuses those.
 *   messages   qid(8) seq(8)             -> sent_ms(8) flags|id_len(1) id [md5_body(16)
 *                                           [md5_attrs(16)]] [attrs_len(4) attrs] body:
 *                                           flag 0x40 (MSG_REC_DIGESTS): the digests follow
 *                                           the id, MD5OfMessageBody and, with attributes,
 *                                           MD5OfMessageAttributes, raw, stored once at the
 *                                           send (every record written since; one without,
 *                                           written before, gets them computed on read);
 *                                           flag 0x80 (MSG_REC_ATTRS): the attributes, the
 *                                           msgpack array [name, type, value, ...] sorted by
 *                                           name (proto/msg_attrs.c). A binary older than a
 *                                           flag refuses a record with it, as "missing or
 *                                           corrupt". Moves (dead-letter, redrive) copy the
 *                                           record whole, digests included.
 *                                           With MSG_REC_EXT (0x3f) as the id_len bits,
 *                                           the id's length is the next byte, and the id
 *                                           is followed by group_len(1) MessageGroupId
 *                                           dedup_len(1) MessageDeduplicationId (a message
 *                                           sent with a group or to a FIFO queue)
 *   messages   qid(8) seq(8) 'd'         -> a moved message's provenance (op_deadletter.c):
 *                                           msgpack [source queue, receive count, first
 *                                           and last receive ms, moved ms]; only in queues with
 *                                           QUEUE_FLAG_MOVED_IN, dropped with the message
 *   leases     qid(8) seq(8)             -> visible_at(8) receive_count(4) gen(4) first_ms(8)
 *                                           [last_ms(8): the latest receive, written once the
 *                                           message was received; 24-byte records load with 0]
 *                                           [term(4): the Raft term of the entry that gave
 *                                           gen (kyu_lease_next_gen); records of 24 or 32
 *                                           bytes load with 0]
 *                                           (gen 0: never received; gen 0 and first_ms
 *                                           KYU_LEASE_DELAYED: waits for its queue's
 *                                           delay until visible_at; the receive index, in
 *                                           memory, is rebuilt from these: sm_index.c)
 *   visibility (no longer written; a start drops what older versions wrote there)
 *   meta       "applied_index", "next_seq", "next_qid", "last_now" -> u64
 *   meta       "applied_term" -> u64, "raft_conf" -> configuration (the Raft snapshot
 *              this state is: term and membership at the applied index)
 *   meta       "gc" qid(8)               -> "" (a deleted queue whose data is still to drop)
 *   meta       "gp" qid(8)               -> seq(8) [kept seq(8)...]: a purged queue whose
 *              messages (and lease records) below seq are still to drop (PURGE_QUEUE and
 *              EXPIRE_MESSAGES; dropped right after the entry is written, or at the next
 *              start), but for the kept seqs: messages moved into the queue later in the same
 *              entry (a dead-letter move keeps the seq; kyu_sm_moved_in)
 *   meta       "rk" bucket(8) client(8) key(8) -> a request key's record (sm_dedup.c): in
 *              time buckets, an expired bucket dropped by one range delete ("rq"/"rx" of
 *              earlier brokers are moved to "rk" at load)
 *   meta       "mb" id(8)                -> raft address NUL client endpoint: the replicated
 *              address book (sm_members.c)
 *   meta       "handle_key"              -> 32 bytes: the key of receipt handles (sm_handle.c)
 *   meta       "sq" seq(8)               -> until(8): a retention mark: the seqs from seq to
 *                                           the next mark's went to messages sent before
 *                                           until (sm_expiry.c)
 *   meta       "mt" qid(8) id(8)         -> a message move task of queue qid (op_redrive.c):
 *                                           msgpack [status, destination, rate, moved, to_move,
 *                                           started_ms, ended_ms, reason, tat_us]
 *   meta       "fd" qid(8) key           -> time(8) seq(8) message id(36): a FIFO queue's
 *                                           deduplication record (sm_fifo.c), dropped with
 *                                           the queue's data and after 5 minutes
 *   meta       "fg" qid(8) [group id]    -> u64: a fair queue's stamp counter (no group id),
 *                                           its ungrouped messages' tag (group id 0x00) and
 *                                           its groups' tags (sm_fair.c), dropped with the
 *                                           queue's data, a purge, or a group's last message
 *   meta       "tp" name                 -> a topic and its subscriptions (op_topic.c):
 *                                           msgpack [created_ms, [[sub id, queue, raw], ...]]
 *                                           or [created_ms, subs, flags] (a FIFO topic)
 *   meta       "ft" name ' ' key         -> time(8) seq(8) message id(36): a FIFO topic's
 *                                           deduplication record (op_topic.c, sm_fdedup.c),
 *                                           dropped with the topic and after 5 minutes
 * seq is global (never reused across queues), and a receipt handle's MAC covers the queue
 * id, so a handle of another queue finds nothing. Invariants after every command:
 *   - every message has exactly one lease record, and is in its queue's receive index
 *     exactly once: among the fresh messages when its gen is 0 and it is not delayed, else
 *     with its lease (a delayed message stays there until its first receive);
 *   - a queue's n_messages is the number of its message records; its n_inflight and
 *     n_delayed (in memory) are the leases of gen > 0 and gen 0 that end after counted_at,
 *     the time of its last command (sm_index.c, "Counters");
 *   - gen only grows; a handle is honoured only with the current gen.
 */
#include "sm_internal.h"

#include <czmq.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

void kyu_result_init(kyu_result_t *res)
{
    memset(res, 0, offsetof(kyu_result_t, ids));
}

void kyu_result_clear(kyu_result_t *res)
{
    for (size_t i = 0; i < KYU_BATCH_MAX; i++)
        free(res->owned[i]);
    free(res->task);
    kyu_result_init(res);
}

/* ---- loading ---- */

static kyu_code_t load_meta(kyu_sm_t *self, const char *key, uint64_t *v, uint64_t dflt,
                            kyu_err_t *err)
{
    bool found = false;
    if (kyu_store_get_u64(self->store, KYU_CF_META, key, strlen(key), v, &found, err))
        return KYU_ERR_STORAGE;
    if (!found)
        *v = dflt;
    return KYU_OK;
}

/* A queue record of format 3 (the key layout above): [3, qid, vt, created_ms, n_messages,
 * max_size, modified_ms, delay, flags, attributes]. */
static bool decode_queue_record(const uint8_t *v, size_t vlen, queue_t *q)
{
    msgpack_unpacked u;
    kyu_err_t err;
    if (kyu_msgpack_unpack_bounded(v, vlen, 6, &u, &err) != KYU_OK)
        return false;
    const msgpack_object *o = &u.data;
    bool ok = o->type == MSGPACK_OBJECT_ARRAY && o->via.array.size == 10;
    uint64_t f[9] = {0};
    for (uint32_t i = 0; ok && i < 9; i++) {
        ok = o->via.array.ptr[i].type == MSGPACK_OBJECT_POSITIVE_INTEGER;
        f[i] = ok ? o->via.array.ptr[i].via.u64 : 0;
    }
    kyu_queue_ext_t *x = ok ? malloc(sizeof *x) : NULL;
    uint64_t set = 0;
    if (x)
        kyu_qattrs_defaults(x);
    ok = ok && x && f[0] == QUEUE_REC_VERSION && f[2] <= KYU_VISIBILITY_MAX &&
         f[5] <= KYU_MAX_SIZE_MAX && f[7] <= KYU_DELAY_MAX &&
         kyu_qattrs_decode_object(&o->via.array.ptr[9], x, &set);
    if (ok) {
        q->qid = f[1];
        q->vt = (uint32_t)f[2];
        q->created_ms = f[3];
        q->n_messages = f[4];
        q->max_size = (uint32_t)f[5];
        q->modified_ms = f[6];
        q->delay = (uint32_t)f[7];
        q->moved_in = (f[8] & QUEUE_FLAG_MOVED_IN) != 0;
        q->groups = (f[8] & QUEUE_FLAG_GROUPS) != 0;
        ok = kyu_sm_queue_set_ext(q, x);
    }
    free(x);
    msgpack_unpacked_destroy(&u);
    return ok;
}

/* The fixed records written before format 3 (28 and 44 bytes) start with the qid's high
 * byte, 0; a format 3 record starts with a msgpack array's (0x9a). */
static bool decode_fixed_queue_record(const uint8_t *v, size_t vlen, queue_t *q)
{
    if ((vlen != QUEUE_REC_V1_LEN && vlen != QUEUE_REC_V2_LEN) || v[0] != 0)
        return false;
    q->qid = kyu_get_be64(v);
    q->vt = kyu_get_be32(v + 8);
    q->created_ms = kyu_get_be64(v + 12);
    q->n_messages = kyu_get_be64(v + 20);
    q->max_size = KYU_MAX_SIZE_DEFAULT;
    q->modified_ms = q->created_ms;
    q->retention = KYU_RETENTION_DEFAULT;
    if (vlen == QUEUE_REC_V2_LEN) {
        q->max_size = kyu_get_be32(v + 28);
        q->modified_ms = kyu_get_be64(v + 32);
        q->delay = kyu_get_be32(v + 40);
    }
    return true;
}

static kyu_code_t load_queues(kyu_sm_t *self, kyu_err_t *err)
{
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(self->db, kyu_store_readopts(self->store),
                                                        kyu_store_cf(self->store, KYU_CF_QUEUES));
    kyu_code_t rc = KYU_OK;
    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t klen = 0, vlen = 0;
        const char *k = rocksdb_iter_key(it, &klen);
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vlen);
        queue_t *q = calloc(1, sizeof *q);
        if (!q || klen > KYU_NAME_MAX || vlen == 0 ||
            !(decode_fixed_queue_record(v, vlen, q) || decode_queue_record(v, vlen, q))) {
            if (q)
                free(q->ext);
            free(q);
            rc = kyu_err_set(err, KYU_ERR_STORAGE, "corrupt queue record in the store");
            break;
        }
        memcpy(q->name, k, klen);
        kyu_sm_index_init(q);
        if (q->groups) /* its fair groups (sm_fair.c), loaded before the index */
            kyu_sm_fair_init(self, q);
        q->counted_at = self->last_now; /* the counters' time (sm_index.c), before the scan */
        zhashx_insert(self->queues, q->name, q);
    }
    char *rerr = NULL;
    rocksdb_iter_get_error(it, &rerr);
    if (rerr) {
        rc = kyu_err_set(err, KYU_ERR_STORAGE, "reading queues: %s", rerr);
        free(rerr);
    }
    rocksdb_iter_destroy(it);
    return rc;
}

/* Adds to wb, after the range deletes, puts of the records of message seq of queue qid as the
 * database holds them (its message, provenance and lease records: keys qid(8) seq(8)...):
 * a message moved in below a "gp" record's seq, to keep (kyu_sm_moved_in). */
static void keep_message(kyu_sm_t *self, rocksdb_writebatch_t *wb, uint64_t qid, uint64_t seq)
{
    uint8_t prefix[16];
    kyu_put_be64(prefix, qid);
    kyu_put_be64(prefix + 8, seq);
    kyu_cf_t cfs[] = {KYU_CF_MESSAGES, KYU_CF_LEASES};
    for (size_t i = 0; i < 2; i++) {
        rocksdb_column_family_handle_t *cf = kyu_store_cf(self->store, cfs[i]);
        rocksdb_iterator_t *it =
            rocksdb_create_iterator_cf(self->db, kyu_store_readopts(self->store), cf);
        for (rocksdb_iter_seek(it, (const char *)prefix, sizeof prefix); rocksdb_iter_valid(it);
             rocksdb_iter_next(it)) {
            size_t klen = 0, vlen = 0;
            const char *k = rocksdb_iter_key(it, &klen);
            if (klen < sizeof prefix || memcmp(k, prefix, sizeof prefix) != 0)
                break;
            const char *v = rocksdb_iter_value(it, &vlen);
            rocksdb_writebatch_put_cf(wb, cf, k, klen, v, vlen);
        }
        rocksdb_iter_destroy(it);
    }
}

/* Adds to wb the range deletes of the meta records under prefix ("gc": a deleted queue,
 * whose value is empty, all of its data; "gp": a purged queue, whose value is the first seq
 * it kept, its messages below that seq, then the seqs of messages moved in below it by the
 * same entry, to keep) and the deletes of the records themselves. */
static void collect_prefix(kyu_sm_t *self, rocksdb_writebatch_t *wb, const char *prefix)
{
    rocksdb_column_family_handle_t *meta = kyu_store_cf(self->store, KYU_CF_META);
    rocksdb_iterator_t *it =
        rocksdb_create_iterator_cf(self->db, kyu_store_readopts(self->store), meta);
    for (rocksdb_iter_seek(it, prefix, 2); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t klen = 0, vlen = 0;
        const char *k = rocksdb_iter_key(it, &klen);
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vlen);
        if (klen != 10 || memcmp(k, prefix, 2) != 0)
            break;
        uint64_t qid = kyu_get_be64((const uint8_t *)k + 2);
        uint8_t lo[16], hi[16];
        kyu_put_be64(lo, qid);
        kyu_put_be64(lo + 8, 0);
        size_t hlen = 8;
        bool gp = vlen >= 8 && vlen % 8 == 0;
        if (gp) { /* "gp": the queue's messages below the seq */
            kyu_put_be64(hi, qid);
            memcpy(hi + 8, v, 8);
            hlen = 16;
        } else {
            kyu_put_be64(hi, qid + 1);
        }
        kyu_cf_t cfs[] = {KYU_CF_MESSAGES, KYU_CF_LEASES, KYU_CF_VISIBILITY};
        for (size_t i = 0; i < 3; i++)
            rocksdb_writebatch_delete_range_cf(wb, kyu_store_cf(self->store, cfs[i]), (char *)lo,
                                               sizeof lo, (char *)hi, hlen);
        /* a deleted FIFO queue's deduplication records (sm_fifo.c), a fair queue's group
         * records (sm_fair.c) */
        for (int r = 0; !gp && r < 2; r++) {
            uint8_t flo[10] = {'f', r ? 'g' : 'd'}, fhi[10] = {'f', r ? 'g' : 'd'};
            kyu_put_be64(flo + 2, qid);
            kyu_put_be64(fhi + 2, qid + 1);
            rocksdb_writebatch_delete_range_cf(wb, meta, (char *)flo, sizeof flo, (char *)fhi,
                                               sizeof fhi);
        }
        /* A queue deleted since ("gc", collected first) keeps nothing. */
        uint8_t gc[10] = {'g', 'c'};
        memcpy(gc + 2, k + 2, 8);
        char *rerr = NULL;
        size_t gclen = 0;
        char *dead = gp && vlen > 8 ? rocksdb_get_cf(self->db, kyu_store_readopts(self->store),
                                                     meta, (char *)gc, sizeof gc, &gclen, &rerr)
                                    : NULL;
        bool deleted = dead != NULL || rerr != NULL;
        free(dead);
        free(rerr);
        for (size_t at = 8; gp && !deleted && at < vlen; at += 8)
            keep_message(self, wb, qid, kyu_get_be64(v + at));
        rocksdb_writebatch_delete_cf(wb, meta, k, klen);
    }
    rocksdb_iter_destroy(it);
}

kyu_code_t kyu_sm_moved_in(kyu_sm_t *self, queue_t *q, uint64_t seq, kyu_err_t *err)
{
    if (seq < q->expired_below)
        q->expired_below = seq;
    if (!self->purged)
        return KYU_OK; /* no "gp" record in this entry (earlier ones are collected) */
    uint8_t gp[10] = {'g', 'p'};
    kyu_put_be64(gp + 2, q->qid);
    size_t vl = 0;
    kyu_err_clear(err);
    char *v = kyu_sm_read(self, KYU_CF_META, gp, sizeof gp, &vl, err);
    if (!v)
        return err->code;
    if (vl < 8 || vl % 8 != 0) {
        free(v);
        return kyu_err_set(err, KYU_ERR_STORAGE, "corrupt purge record of queue '%s'", q->name);
    }
    if (seq < kyu_get_be64((const uint8_t *)v)) {
        char *more = realloc(v, vl + 8);
        KYU_ASSERT(more);
        v = more;
        kyu_put_be64((uint8_t *)v + vl, seq);
        kyu_sm_put(self, KYU_CF_META, gp, sizeof gp, v, vl + 8);
    }
    free(v);
    return KYU_OK;
}

/* Drops the data of deleted queues ("gc" records) and the messages of purged ones ("gp").
 * Idempotent: a crash part-way leaves the records, and the next start deletes the same
 * ranges again. */
kyu_code_t kyu_sm_collect_garbage(kyu_sm_t *self, kyu_err_t *err)
{
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    collect_prefix(self, wb, "gc");
    collect_prefix(self, wb, "gp");
    char *rerr = NULL;
    if (rocksdb_writebatch_count(wb) > 0)
        rocksdb_write(self->db, self->wopts, wb, &rerr);
    rocksdb_writebatch_destroy(wb);
    if (rerr) {
        kyu_err_set(err, KYU_ERR_STORAGE, "dropping deleted queues and purged messages: %s", rerr);
        free(rerr);
        return KYU_ERR_STORAGE;
    }
    return KYU_OK;
}

static kyu_code_t load_conf(kyu_sm_t *self, kyu_err_t *err)
{
    char *rerr = NULL;
    size_t len = 0;
    char *v = rocksdb_get_cf(self->db, kyu_store_readopts(self->store),
                             kyu_store_cf(self->store, KYU_CF_META), "raft_conf", 9, &len, &rerr);
    self->conf_len = 0;
    if (rerr) {
        kyu_err_set(err, KYU_ERR_STORAGE, "reading raft_conf: %s", rerr);
        free(rerr);
        return KYU_ERR_STORAGE;
    }
    if (v && len > sizeof self->conf) {
        free(v);
        return kyu_err_set(err, KYU_ERR_STORAGE, "corrupt raft_conf in the store");
    }
    if (v) {
        memcpy(self->conf, v, len);
        self->conf_len = len;
    }
    free(v);
    return KYU_OK;
}

/* Data written before the receive index moved to memory kept a visibility column family;
 * nothing reads it now, so a start drops whatever it holds. */
static kyu_code_t drop_visibility(kyu_sm_t *self, kyu_err_t *err)
{
    rocksdb_column_family_handle_t *vis = kyu_store_cf(self->store, KYU_CF_VISIBILITY);
    rocksdb_iterator_t *it =
        rocksdb_create_iterator_cf(self->db, kyu_store_readopts(self->store), vis);
    rocksdb_iter_seek_to_first(it);
    bool any = rocksdb_iter_valid(it);
    rocksdb_iter_destroy(it);
    if (!any)
        return KYU_OK;
    uint8_t lo[1] = {0}, hi[KEY_QS + 9];
    memset(hi, 0xff, sizeof hi);
    char *rerr = NULL;
    rocksdb_delete_range_cf(self->db, self->wopts, vis, (char *)lo, 0, (char *)hi, sizeof hi,
                            &rerr);
    if (rerr) {
        kyu_err_set(err, KYU_ERR_STORAGE, "dropping the old visibility index: %s", rerr);
        free(rerr);
        return KYU_ERR_STORAGE;
    }
    return KYU_OK;
}

void kyu_sm_queue_free(queue_t *q)
{
    kyu_sm_index_free(q);
    kyu_sm_fifo_free(q);
    kyu_sm_fair_free(q);
    free(q->ext);
    free(q->tasks);
    free(q);
}

bool kyu_sm_queue_ext(const queue_t *q, kyu_queue_ext_t *x)
{
    uint64_t set = 0;
    kyu_qattrs_defaults(x);
    return !q->ext || kyu_qattrs_decode(q->ext, q->ext_len, x, &set);
}

bool kyu_sm_queue_set_ext(queue_t *q, const kyu_queue_ext_t *x)
{
    uint64_t set = kyu_qattrs_nondefault(x);
    uint8_t *ext = NULL;
    size_t len = 0;
    if (set) {
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        kyu_qattrs_encode(x, set, &pk);
        len = sb.size;
        ext = (uint8_t *)msgpack_sbuffer_release(&sb);
        if (!ext)
            return false;
    }
    free(q->ext);
    q->ext = ext;
    q->ext_len = len;
    q->retention = x->retention;
    q->receive_wait = x->receive_wait;
    memcpy(q->dlq, x->dlq, sizeof q->dlq);
    q->max_receive_count = x->max_receive_count;
    q->is_fifo = x->fifo; /* FifoQueue: set at creation, never changed */
    q->cbd = x->cbd;
    q->dedup_scope = x->dedup_scope;
    kyu_sm_fifo_init(q);
    return true;
}

static void drop_queues(kyu_sm_t *self)
{
    /* The hash does not own the records (a deleted queue's record outlives its key until
     * the entry is written), so they are freed here. */
    for (queue_t *q = zhashx_first(self->queues); q; q = zhashx_next(self->queues))
        kyu_sm_queue_free(q);
    zhashx_purge(self->queues);
}

static kyu_code_t load(kyu_sm_t *self, kyu_err_t *err)
{
    self->db = kyu_store_db(self->store, KYU_CF_META);
    self->conf_pending = false;
    if (load_meta(self, "applied_index", &self->applied_index, 0, err) ||
        load_meta(self, "applied_term", &self->applied_term, 0, err) ||
        load_meta(self, "next_seq", &self->next_seq, 1, err) ||
        load_meta(self, "next_qid", &self->next_qid, 1, err) ||
        load_meta(self, "last_now", &self->last_now, 0, err) || load_conf(self, err) ||
        kyu_sm_members_load(self, err) || kyu_sm_handle_key_load(self, err) ||
        load_queues(self, err) || kyu_sm_tasks_load(self, err) ||
        kyu_sm_collect_garbage(self, err) || drop_visibility(self, err) ||
        kyu_sm_dedup_load_start(self, err))
        return KYU_ERR_STORAGE;
    /* The request-key filter is built on a thread of its own meanwhile: with a backlog both
     * scans are of millions of records (docs/ARCHITECTURE.md, "How state is kept"). */
    kyu_err_t ignored;
    bool failed =
        kyu_sm_fair_load(self, err) || kyu_sm_index_load(self, err) || kyu_sm_fifo_load(self, err);
    if (kyu_sm_dedup_load_finish(self, failed ? &ignored : err) != KYU_OK || failed ||
        kyu_sm_marks_load(self, err) || kyu_sm_topics_load(self, err))
        return KYU_ERR_STORAGE;
    self->next_term = self->applied_term;
    self->persisted_index = self->applied_index;
    /* after a start the tables hold it all (the memtables are empty) */
    uint64_t durable = 0;
    if (kyu_store_state_durable(self->store, &durable, err) != KYU_OK)
        return KYU_ERR_STORAGE;
    self->durable_index = durable < self->applied_index ? durable : self->applied_index;
    return KYU_OK;
}

kyu_sm_t *kyu_sm_open(kyu_store_t *store, kyu_err_t *err)
{
    kyu_sm_t *self = calloc(1, sizeof *self);
    if (!self) {
        kyu_err_set(err, KYU_ERR_INTERNAL, "out of memory");
        return NULL;
    }
    KYU_ASSERT(sodium_init() >= 0); /* receipt handles' MAC (sm_handle.c) */
    self->store = store;
    self->queues = zhashx_new();
    self->touched = zlistx_new();
    self->wopts = rocksdb_writeoptions_create();
    /* No WAL: the log is the record; the tables hold whole writes (store.h) */
    rocksdb_writeoptions_disable_WAL(self->wopts, 1);
    self->plain = rocksdb_writebatch_create();
    KYU_ASSERT(self->queues && self->touched && self->wopts && self->plain);
    kyu_sm_buffer_init(self);
    self->write_every = KYU_SM_BUFFER_ENTRIES;
    if (load(self, err) != KYU_OK) {
        kyu_sm_destroy(&self);
        return NULL;
    }
    return self;
}

kyu_code_t kyu_sm_reload(kyu_sm_t *self, kyu_err_t *err)
{
    drop_queues(self);
    zlistx_purge(self->touched);
    /* A write in flight went to the state that was replaced (kyu_sm_flush runs before an
     * install, so there is none); the buffer's writes belong to it too. */
    kyu_code_t rc = kyu_sm_flush_wait_before(self, UINT64_MAX, err);
    if (rc != KYU_OK)
        return rc;
    kyu_sm_buffer_drop(self);
    self->failed = false;
    self->last_now_index = self->last_now_term = 0;
    return load(self, err);
}

uint64_t kyu_sm_applied_term(const kyu_sm_t *self)
{
    return self->applied_term;
}

size_t kyu_sm_raft_conf(const kyu_sm_t *self, const uint8_t **conf)
{
    *conf = self->conf;
    return self->conf_len;
}

void kyu_sm_set_entry_meta(kyu_sm_t *self, uint64_t term, const uint8_t *conf, size_t conf_len)
{
    self->next_term = term;
    if (conf && conf_len <= sizeof self->conf) {
        memcpy(self->conf, conf, conf_len);
        self->conf_len = conf_len;
        self->conf_pending = true;
    }
}

void kyu_sm_destroy(kyu_sm_t **self_p)
{
    kyu_sm_t *self = *self_p;
    if (!self)
        return;
    drop_queues(self);
    zhashx_destroy(&self->queues);
    kyu_sm_topics_free(self);
    zlistx_destroy(&self->touched);
    if (self->buffer)
        kyu_sm_buffer_free(self); /* unwritten, as in a crash: kyu_sm_flush first to keep it */
    kyu_sm_keyfilter_free(self);
    kyu_sm_marks_free(self);
    kyu_sm_woken_free(self);
    rocksdb_writebatch_destroy(self->plain);
    rocksdb_writeoptions_destroy(self->wopts);
    free(self);
    *self_p = NULL;
}

uint64_t kyu_sm_applied_index(const kyu_sm_t *self)
{
    return self->applied_index;
}

uint64_t kyu_sm_last_now(const kyu_sm_t *self)
{
    return self->last_now;
}

void kyu_sm_last_now_entry(const kyu_sm_t *self, uint64_t *index, uint64_t *term)
{
    *index = self->last_now_index;
    *term = self->last_now_term;
}

bool kyu_sm_queue_exists(kyu_sm_t *self, const char *name)
{
    return zhashx_lookup(self->queues, name) != NULL;
}

size_t kyu_sm_queue_count(kyu_sm_t *self)
{
    return zhashx_size(self->queues);
}

/* ---- reads ---- */

kyu_code_t kyu_sm_list_queues(kyu_sm_t *self, char (**names)[KYU_NAME_MAX + 1], size_t *n,
                              kyu_err_t *err)
{
    size_t count = zhashx_size(self->queues);
    *names = calloc(count ? count : 1, sizeof **names);
    if (!*names)
        return kyu_err_set(err, KYU_ERR_INTERNAL, "out of memory listing queues");
    size_t i = 0;
    for (queue_t *q = zhashx_first(self->queues); q; q = zhashx_next(self->queues))
        memcpy((*names)[i++], q->name, sizeof q->name);
    qsort(*names, count, sizeof **names, (int (*)(const void *, const void *))strcmp);
    *n = count;
    return KYU_OK;
}

bool kyu_sm_has_visible(kyu_sm_t *self, const char *name, uint64_t now_ms)
{
    queue_t *q = zhashx_lookup(self->queues, name);
    return q && kyu_sm_index_has_visible(q, now_ms);
}

/* Not-visible messages are the leases that end after now, delayed ones the delays that end
 * after now, visible ones the rest: counters kept by the index (sm_index.c, "Counters") at
 * the time of the queue's last command, less what ended between it and now (a lease or a
 * delay that simply runs out needs no command to move it to the visible count). */
kyu_code_t kyu_sm_queue_attributes(kyu_sm_t *self, const char *name, uint64_t now_ms,
                                   kyu_queue_attrs_t *attrs, kyu_err_t *err)
{
    queue_t *q = zhashx_lookup(self->queues, name);
    if (!q)
        return kyu_err_set(err, KYU_ERR_NO_SUCH_QUEUE, "queue '%s' does not exist", name);
    uint64_t not_visible = 0, delayed = 0;
    kyu_sm_index_counts(q, now_ms, &not_visible, &delayed);
    attrs->visibility_timeout = q->vt;
    attrs->not_visible = (int64_t)not_visible;
    attrs->delayed = (int64_t)delayed;
    attrs->visible = (int64_t)(q->n_messages - not_visible - delayed);
    attrs->delay = q->delay;
    attrs->created_ms = (int64_t)q->created_ms;
    attrs->max_size = q->max_size;
    attrs->modified_ms = (int64_t)q->modified_ms;
    kyu_queue_ext_t *x = malloc(sizeof *x);
    if (!x)
        return kyu_err_set(err, KYU_ERR_INTERNAL, "out of memory");
    if (!kyu_sm_queue_ext(q, x)) {
        free(x);
        return kyu_err_set(err, KYU_ERR_STORAGE, "queue '%s': corrupt attributes", name);
    }
    attrs->retention = x->retention;
    attrs->receive_wait = x->receive_wait;
    memcpy(attrs->dlq, x->dlq, sizeof attrs->dlq);
    attrs->max_receive_count = x->max_receive_count;
    attrs->redrive_allow = x->allow;
    attrs->n_sources = x->n_sources;
    memcpy(attrs->sources, x->sources, sizeof attrs->sources);
    attrs->n_tags = x->tags.n;
    attrs->fifo = x->fifo;
    attrs->cbd = x->cbd;
    attrs->dedup_scope = x->dedup_scope;
    attrs->throughput = x->throughput;
    free(x);
    return KYU_OK;
}

kyu_code_t kyu_sm_queue_tags(kyu_sm_t *self, const char *name, kyu_tags_t *tags, kyu_err_t *err)
{
    queue_t *q = zhashx_lookup(self->queues, name);
    if (!q)
        return kyu_err_set(err, KYU_ERR_NO_SUCH_QUEUE, "queue '%s' does not exist", name);
    kyu_queue_ext_t *x = malloc(sizeof *x);
    if (!x)
        return kyu_err_set(err, KYU_ERR_INTERNAL, "out of memory");
    kyu_code_t rc = KYU_OK;
    if (kyu_sm_queue_ext(q, x))
        *tags = x->tags;
    else
        rc = kyu_err_set(err, KYU_ERR_STORAGE, "queue '%s': corrupt attributes", name);
    free(x);
    return rc;
}
