/* sm_apply: applying one log entry — the machinery every command's apply function (the
 * rows of ops.c, in op_*.c) works through.
 *
 * What commands read while they apply (queues, leases, the visibility order) is in memory
 * (sm_index.c); what they write goes to the write-behind buffer (sm_buffer.c), which reads
 * see, so a command sees what earlier commands of its entry (and of entries not yet flushed)
 * wrote. A message sent earlier in the same entry is read from the entry itself
 * (kyu_sm_read_messages). The entry's index and the counters are buffered with its writes, so
 * that a flush writes whole entries and a restart neither replays an applied entry nor misses
 * one. Nothing is synced: the log entry is already durable, and entries past the stored
 * applied index are applied again after a crash. */
#include "sm_internal.h"

#include <stdlib.h>
#include <string.h>

void kyu_sm_add_message(kyu_sm_t *self, queue_t *q, uint64_t seq, const void *head, size_t hl,
                        const void *body, size_t bl, uint64_t sent_ms, uint64_t delay_ms)
{
    uint8_t k[KEY_QS];
    key_qs(k, q->qid, seq);
    /* A delay (the queue's, or the message's own): invisible until sent_ms + delay, in the
     * heap as a lease of gen 0 marked delayed (so that a restart puts it back there,
     * sm_index.c). */
    lease_t l = {.visible_at = sent_ms};
    if (delay_ms > 0)
        l = (lease_t){.visible_at = sent_ms + delay_ms, .first_ms = KYU_LEASE_DELAYED};
    uint8_t lv[LEASE_LEN_MAX];
    /* seq is new: the database holds neither record (absent) */
    kyu_sm_put_pair(
        self, &(kyu_sm_put_t){KYU_CF_MESSAGES, k, KEY_QS, head, hl, body, bl, true},
        &(kyu_sm_put_t){KYU_CF_LEASES, k, KEY_QS, lv, lease_encode(lv, &l), NULL, 0, true});
    /* A message with a group id in a standard queue: in its group (sm_fair.c), before its
     * lease is set. Only a record with the FIFO ids (MSG_REC_EXT) is parsed. */
    bool grouped = false;
    if (!q->fifo && hl > 8 && (((const uint8_t *)head)[8] & MSG_REC_ID_LEN) == MSG_REC_EXT) {
        kyu_sent_t m;
        if (kyu_sm_parse_head(head, hl, &m) && m.group_len) {
            kyu_sm_fair_add(self, q, seq, m.group, m.group_len);
            grouped = true;
        }
    }
    /* A FIFO queue's messages all have a lease entry (sm_fifo.c), and grouped ones */
    if (delay_ms > 0 || q->fifo || grouped)
        kyu_sm_index_set_lease(q, seq, &l);
    else
        kyu_sm_index_add_fresh(q, seq);
    if (q->fifo) {
        kyu_sent_t m;
        bool ok = kyu_sm_parse_head(head, hl, &m);
        kyu_sm_fifo_add(q, seq, ok ? m.group : NULL, ok ? m.group_len : 0);
    }
    kyu_sm_note_visible(self, q); /* visible now, or when its delay ends */
}

void kyu_sm_set_lease(kyu_sm_t *self, queue_t *q, uint64_t seq, const lease_t *l)
{
    uint8_t k[KEY_QS], v[LEASE_LEN_MAX];
    key_qs(k, q->qid, seq);
    kyu_sm_put(self, KYU_CF_LEASES, k, KEY_QS, v, lease_encode(v, l));
    kyu_sm_index_set_lease(q, seq, l);
    kyu_sm_note_visible(self, q); /* visible again when the lease runs out (0: now) */
}

void kyu_sm_drop_message(kyu_sm_t *self, queue_t *q, uint64_t seq)
{
    uint8_t k[KEY_QS];
    key_qs(k, q->qid, seq);
    kyu_sm_del_pair(self, KYU_CF_MESSAGES, KYU_CF_LEASES, k, KEY_QS);
    kyu_sm_drop_provenance(self, q, seq);
    kyu_sm_index_drop(q, seq);
    /* A FIFO queue: the message gone may have held its group (sm_fifo.c), whose next message
     * is then visible: wake the receives parked on the queue (sm_wake.c). */
    if (q->fifo)
        kyu_sm_note_visible(self, q);
}

/* Reads a message record (sm.c's key layout); the message points into v. */
static bool parse_message(const char *v, size_t vl, kyu_sent_t *m)
{
    return kyu_sm_parse_message(v, vl, m);
}

/* The record's sent_ms, id and FIFO ids (m->group ...): the offset past them, or 0 when
 * the record is too short or corrupt. */
static size_t parse_ids(const uint8_t *p, size_t vl, kyu_sent_t *m)
{
    if (vl < 9)
        return 0;
    size_t idlen = p[8] & MSG_REC_ID_LEN, off = 9;
    bool ext = idlen == MSG_REC_EXT;
    if (ext) {
        if (vl < 10)
            return 0;
        idlen = p[9];
        off = 10;
    }
    if (idlen > KYU_UUID_LEN || vl < off + idlen)
        return 0;
    m->sent_ms = kyu_get_be64(p);
    memcpy(m->id, p + off, idlen);
    m->id[idlen] = '\0';
    off += idlen;
    m->group = m->dedup = NULL;
    m->group_len = m->dedup_len = 0;
    if (!ext)
        return off;
    if (vl < off + 1 || vl < off + 1 + p[off] || p[off] > KYU_GROUP_ID_MAX)
        return 0;
    m->group = (const char *)p + off + 1;
    m->group_len = p[off];
    off += 1 + p[off];
    if (vl < off + 1 || vl < off + 1 + p[off] || p[off] > KYU_DEDUP_ID_MAX)
        return 0;
    m->dedup = (const char *)p + off + 1;
    m->dedup_len = p[off];
    return off + 1 + p[off];
}

bool kyu_sm_parse_head(const void *head, size_t hl, kyu_sent_t *m)
{
    return parse_ids(head, hl, m) != 0;
}

bool kyu_sm_parse_message(const char *v, size_t vl, kyu_sent_t *m)
{
    const uint8_t *p = (const uint8_t *)v;
    size_t off = parse_ids(p, vl, m);
    if (off == 0)
        return false;
    m->attrs.n = 0;
    m->md5_body = m->md5_attrs = NULL;
    if (p[8] & MSG_REC_DIGESTS) {
        size_t md5_len = (p[8] & MSG_REC_ATTRS) ? 2 * KYU_MD5_LEN : KYU_MD5_LEN;
        if (vl - off < md5_len)
            return false;
        m->md5_body = p + off;
        if (p[8] & MSG_REC_ATTRS)
            m->md5_attrs = p + off + KYU_MD5_LEN;
        off += md5_len;
    }
    if (p[8] & MSG_REC_ATTRS) {
        if (vl < off + 4 || vl - off - 4 < kyu_get_be32(p + off))
            return false;
        size_t alen = kyu_get_be32(p + off);
        msgpack_unpacked u;
        kyu_err_t ignored;
        if (kyu_msgpack_unpack_bounded(v + off + 4, alen, 2, &u, &ignored) != KYU_OK)
            return false;
        bool ok = kyu_msg_attrs_unpack(&u.data, &m->attrs);
        msgpack_unpacked_destroy(&u);
        if (!ok)
            return false;
        off += 4 + alen;
    }
    m->body = v + off;
    m->body_len = vl - off;
    return true;
}

void kyu_sent_fifo_ids(const kyu_sent_t *m, kyu_msg_meta_t *meta)
{
    meta->group_id[0] = meta->dedup_id[0] = '\0';
    if (m->group_len)
        memcpy(meta->group_id, m->group, m->group_len);
    meta->group_id[m->group_len] = '\0';
    if (m->dedup_len)
        memcpy(meta->dedup_id, m->dedup, m->dedup_len);
    meta->dedup_id[m->dedup_len] = '\0';
}

void kyu_sent_digests(const kyu_sent_t *m, kyu_msg_meta_t *meta)
{
    if (m->md5_body)
        kyu_md5_hex(m->md5_body, meta->md5_body);
    else
        kyu_md5_body_hex(m->body, m->body_len, meta->md5_body);
    if (m->md5_attrs)
        kyu_md5_hex(m->md5_attrs, meta->md5_attrs);
    else
        kyu_md5_attrs_hex(&m->attrs, meta->md5_attrs);
}

bool kyu_sm_read_messages(kyu_sm_t *self, const queue_t *q, const uint64_t *seqs, size_t n,
                          kyu_sent_t *m, char **owned, kyu_err_t *err)
{
    uint8_t keys[KYU_BATCH_MAX][KEY_QS];
    const uint8_t *kp[KYU_BATCH_MAX] = {0};
    size_t klens[KYU_BATCH_MAX] = {0}, vlens[KYU_BATCH_MAX];
    KYU_ASSERT(n <= KYU_BATCH_MAX);
    for (size_t i = 0; i < n; i++) {
        key_qs(keys[i], q->qid, seqs[i]);
        kp[i] = keys[i];
        klens[i] = KEY_QS;
    }
    bool ok = kyu_sm_read_many(self, KYU_CF_MESSAGES, kp, klens, n, owned, vlens, err);
    for (size_t i = 0; i < n && ok; i++) {
        ok = owned[i] && parse_message(owned[i], vlens[i], &m[i]);
        if (!ok)
            kyu_err_set(err, KYU_ERR_STORAGE, "message record %llu missing or corrupt",
                        (unsigned long long)seqs[i]);
    }
    if (!ok)
        for (size_t i = 0; i < n; i++) {
            free(owned[i]);
            owned[i] = NULL;
        }
    return ok;
}

void kyu_sm_touch(kyu_sm_t *self, queue_t *q)
{
    if (!q->dirty) {
        q->dirty = true;
        zlistx_add_end(self->touched, q);
    }
}

queue_t *kyu_sm_queue(kyu_sm_t *self, const char *name, kyu_result_t *res)
{
    queue_t *q = zhashx_lookup(self->queues, name);
    if (!q)
        kyu_err_set(kyu_result_err(res), KYU_ERR_NO_SUCH_QUEUE, "queue '%s' does not exist", name);
    return q;
}

_Static_assert(offsetof(kyu_result_t, code) == offsetof(kyu_err_t, code) &&
                   offsetof(kyu_result_t, error) == offsetof(kyu_err_t, msg),
               "kyu_result_t must begin like kyu_err_t");

/* Applies a command through its row; with a request key seen within the dedup window,
 * answers from what the first attempt did instead (a client retried it after a lost reply)
 * and changes nothing. */
static kyu_code_t apply_command(kyu_sm_t *self, const kyu_op_row_t *row, const kyu_command_t *c,
                                kyu_apply_t *a)
{
    /* The queue's counters move to the command's time first (sm_index.c, "Counters"): what
     * the command reads of them, and leaves, is as of its time. */
    queue_t *q = c->queue[0] ? zhashx_lookup(self->queues, c->queue) : NULL;
    if (q)
        kyu_sm_index_advance(q, c->now_ms);
    bool keyed = c->rq_client != 0 && row->replay;
    if (!keyed)
        return row->apply(self, c, a);
    kyu_dedup_t d = {.type = (uint8_t)c->type};
    bool found = false;
    kyu_sm_dedup_expire(self, c->now_ms);
    kyu_code_t rc = kyu_sm_dedup_lookup(self, c, &d, &found, a->err);
    if (rc != KYU_OK)
        return rc;
    if (found && d.type != c->type) {
        kyu_err_set(kyu_result_err(a->res), KYU_ERR_INVALID_ARGUMENT,
                    "request key %llu was used for another request", (unsigned long long)c->rq_key);
        return KYU_OK;
    }
    if (found)
        return row->replay(self, c, &d, a);
    a->dedup = &d;
    rc = row->apply(self, c, a);
    a->dedup = NULL;
    if (rc == KYU_OK && a->res->code == KYU_OK && !d.no_record)
        kyu_sm_dedup_record(self, c, &d);
    return rc;
}
/* A fixed buffer that a msgpack packer writes to (a queue record's head). */
typedef struct {
    uint8_t b[64];
    size_t n;
} head_buf_t;

static int head_write(void *data, const char *buf, size_t len)
{
    head_buf_t *h = data;
    KYU_ASSERT(h->n + len <= sizeof h->b);
    memcpy(h->b + h->n, buf, len);
    h->n += len;
    return 0;
}

/* The queue's record, format 3 (sm.c's key layout): the head packed here, then its
 * attributes' encoding as it is kept (no re-encoding on every send). */
static void write_queue_record(kyu_sm_t *self, const queue_t *q)
{
    head_buf_t h = {.n = 0};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &h, head_write);
    msgpack_pack_array(&pk, 10);
    msgpack_pack_uint32(&pk, QUEUE_REC_VERSION);
    msgpack_pack_uint64(&pk, q->qid);
    msgpack_pack_uint32(&pk, q->vt);
    msgpack_pack_uint64(&pk, q->created_ms);
    msgpack_pack_uint64(&pk, q->n_messages);
    msgpack_pack_uint32(&pk, q->max_size);
    msgpack_pack_uint64(&pk, q->modified_ms);
    msgpack_pack_uint32(&pk, q->delay);
    msgpack_pack_uint32(&pk, (q->moved_in ? QUEUE_FLAG_MOVED_IN : 0) |
                                 (q->fair ? QUEUE_FLAG_GROUPS : 0));
    static const uint8_t empty_map = 0x80;
    kyu_sm_put2(self, KYU_CF_QUEUES, q->name, strlen(q->name), h.b, h.n,
                q->ext ? q->ext : &empty_map, q->ext ? q->ext_len : 1, false);
}

static void put_meta(kyu_sm_t *self, const char *key, uint64_t v)
{
    uint8_t b[8];
    kyu_put_be64(b, v);
    kyu_sm_put(self, KYU_CF_META, key, strlen(key), b, 8);
}

/* Adds the dirty queue records and counters to the batch; frees deleted queues' records. */
static bool finish_entry(kyu_sm_t *self, uint64_t index, bool *dropped_queue)
{
    *dropped_queue = false;
    for (queue_t *q = zlistx_first(self->touched); q; q = zlistx_next(self->touched)) {
        if (q->deleted) {
            kyu_sm_del(self, KYU_CF_QUEUES, q->name, strlen(q->name));
            *dropped_queue = true;
            continue;
        }
        write_queue_record(self, q);
    }
    put_meta(self, "applied_index", index);
    if (self->next_term != self->applied_term)
        put_meta(self, "applied_term", self->next_term);
    if (self->conf_pending)
        kyu_sm_put(self, KYU_CF_META, "raft_conf", 9, self->conf, self->conf_len);
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
            kyu_sm_queue_free(q);
    }
    zlistx_purge(self->touched);
}

kyu_code_t kyu_sm_apply(kyu_sm_t *self, uint64_t index, const void *payload, size_t len,
                        kyu_result_t *results, size_t cap, size_t *n, kyu_err_t *err)
{
    KYU_ASSERT(index == self->applied_index + 1);
    kyu_err_clear(err);
    if (self->failed)
        return kyu_err_set(err, KYU_ERR_STORAGE, "the state machine failed earlier");
    size_t off = 0, count = 0;
    kyu_code_t rc = KYU_OK;
    kyu_result_t scratch;
    while (off < len && rc == KYU_OK) {
        kyu_command_t cmd;
        if ((rc = kyu_command_decode(payload, len, &off, &cmd, err)) != KYU_OK)
            break;
        bool waited = results && count < cap;
        kyu_result_t *res = waited ? &results[count] : &scratch;
        kyu_result_init(res);
        if (count == 0 && self->buffer_oldest_ms &&
            cmd.now_ms >= self->buffer_oldest_ms + KYU_SM_BUFFER_AGE_MS &&
            (rc = kyu_sm_flush(self, err)) != KYU_OK)
            break; /* before the entry writes anything: the buffer holds whole entries */
        if (count == 0 && !self->buffer_oldest_ms)
            self->buffer_oldest_ms = cmd.now_ms ? cmd.now_ms : 1;
        if (cmd.now_ms > self->last_now) {
            self->last_now = cmd.now_ms;
            self->last_now_index = index;
            self->last_now_term = self->next_term;
        }
        /* Decoded, so the type has a row with an apply. */
        kyu_apply_t a = {.res = res, .want_bodies = waited, .err = err};
        rc = apply_command(self, kyu_ops_command(cmd.type), &cmd, &a);
        if (!waited)
            kyu_result_clear(&scratch);
        if (rc != KYU_OK && !err->code)
            kyu_err_set(err, rc, "applying entry %llu failed", (unsigned long long)index);
        count++;
    }
    if (n)
        *n = results ? (count < cap ? count : cap) : 0;
    if (rc != KYU_OK) {
        /* Part of the entry is in the buffer: never written, and nothing more is applied. */
        self->failed = true;
        self->purged = false;
        forget_touched(self);
        kyu_sm_members_settle(self, false);
        kyu_sm_handle_key_settle(self, false);
        return rc;
    }
    bool dropped = false;
    finish_entry(self, index, &dropped);
    forget_touched(self);
    kyu_sm_members_settle(self, true);
    kyu_sm_handle_key_settle(self, true);
    self->applied_index = index;
    self->applied_term = self->next_term;
    self->conf_pending = false;
    self->buffer_entries++;
    /* A deleted queue's data, and a purged queue's messages, are dropped by range deletes in
     * the database: their buffered writes go there first, and are written before the garbage
     * is collected. */
    if (dropped || self->purged) {
        self->purged = false;
        return (rc = kyu_sm_flush(self, err)) != KYU_OK ? rc : kyu_sm_collect_garbage(self, err);
    }
    if (self->buffer_entries >= self->write_every || self->buffer_bytes >= KYU_SM_BUFFER_BYTES)
        return kyu_sm_flush_behind(self, err);
    return kyu_sm_flush_poll(self, err);
}
