/* sm_expiry: MessageRetentionPeriod. A message older than its queue's retention period
 * disappears without a request: the leader proposes EXPIRE_MESSAGES with its time (the
 * frontend, once a second at most, when kyu_sm_expiry_due says a queue holds such messages),
 * and its apply deletes them on every replica alike. Apply never reads a clock.
 *
 * Which messages are old enough is known without reading their records: seqs are global and
 * given in the order of the commands' times, so the messages sent before a time are those
 * below some seq. The state machine keeps marks (seq, until): every seq from a mark's up to
 * the next mark's was given to a message sent before until. SEND adds a mark when its time
 * has passed the last mark's until (so a mark covers at most KYU_MARK_STEP_MS of sends); the
 * first mark ever starts at seq 0, so that messages kept from before marks existed count as
 * sent before it. When KYU_MARKS_MAX marks are held, the older half is merged pairwise (their
 * ranges join, their until is the later one): old ranges get coarser, recent ones stay fine.
 * A queue's messages are expired below the seq of its first mark whose until is past now -
 * retention: a message is deleted at most one mark's span after its retention period
 * ended (a second at first; more once merged), never before.
 *
 * A dead-letter move keeps the message's seq, so retention in a dead-letter queue counts
 * from the original send, as SQS does for standard queues.
 *
 * Marks are replicated state: added and merged by apply only, kept in the state database
 * (meta "sq" seq(8) -> until(8)), so every replica and every snapshot has the same. The
 * expired messages go as a purge's do (op_queue.c): out of the receive index at once, their
 * records by range delete below the seq ("gp" record) right after the entry is written. */
#include "sm_internal.h"

#include <stdlib.h>
#include <string.h>

#define MARK_KEY_LEN 10 /* "sq" seq(8) */

static void mark_key(uint8_t k[MARK_KEY_LEN], uint64_t seq)
{
    k[0] = 's', k[1] = 'q';
    kyu_put_be64(k + 2, seq);
}

static void put_mark(kyu_sm_t *self, const kyu_mark_t *m)
{
    uint8_t k[MARK_KEY_LEN], v[8];
    mark_key(k, m->seq);
    kyu_put_be64(v, m->until);
    kyu_sm_put(self, KYU_CF_META, k, sizeof k, v, sizeof v);
}

static void del_mark(kyu_sm_t *self, uint64_t seq)
{
    uint8_t k[MARK_KEY_LEN];
    mark_key(k, seq);
    kyu_sm_del(self, KYU_CF_META, k, sizeof k);
}

kyu_code_t kyu_sm_marks_load(kyu_sm_t *self, kyu_err_t *err)
{
    self->marks_n = 0;
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(self->db, kyu_store_readopts(self->store),
                                                        kyu_store_cf(self->store, KYU_CF_META));
    kyu_code_t rc = KYU_OK;
    for (rocksdb_iter_seek(it, "sq", 2); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t klen = 0, vlen = 0;
        const char *k = rocksdb_iter_key(it, &klen);
        if (klen != MARK_KEY_LEN || memcmp(k, "sq", 2) != 0)
            break;
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(it, &vlen);
        if (vlen != 8 || self->marks_n >= KYU_MARKS_MAX) {
            rc = kyu_err_set(err, KYU_ERR_STORAGE, "corrupt retention mark in the store");
            break;
        }
        if (self->marks_n == self->marks_cap) {
            size_t cap = self->marks_cap ? self->marks_cap * 2 : 64;
            kyu_mark_t *m = realloc(self->marks, cap * sizeof *m);
            KYU_ASSERT(m);
            self->marks = m, self->marks_cap = cap;
        }
        self->marks[self->marks_n++] =
            (kyu_mark_t){.seq = kyu_get_be64((const uint8_t *)k + 2), .until = kyu_get_be64(v)};
    }
    char *rerr = NULL;
    rocksdb_iter_get_error(it, &rerr);
    if (rerr) {
        rc = kyu_err_set(err, KYU_ERR_STORAGE, "reading retention marks: %s", rerr);
        free(rerr);
    }
    rocksdb_iter_destroy(it);
    return rc;
}

void kyu_sm_marks_free(kyu_sm_t *self)
{
    free(self->marks);
    self->marks = NULL;
    self->marks_n = self->marks_cap = 0;
}

void kyu_sm_set_marks_max(kyu_sm_t *self, size_t max)
{
    self->marks_max = max;
}

/* Joins the older half of the marks pairwise. */
static void merge_older_half(kyu_sm_t *self)
{
    size_t half = self->marks_n / 2 & ~(size_t)1, out = 0;
    for (size_t i = 0; i < half; i += 2) {
        kyu_mark_t m = {.seq = self->marks[i].seq, .until = self->marks[i + 1].until};
        del_mark(self, self->marks[i + 1].seq);
        put_mark(self, &m);
        self->marks[out++] = m;
    }
    memmove(self->marks + out, self->marks + half, (self->marks_n - half) * sizeof *self->marks);
    self->marks_n -= half - out;
}

void kyu_sm_mark_seq(kyu_sm_t *self, uint64_t seq, uint64_t now)
{
    if (self->marks_n > 0 && now < self->marks[self->marks_n - 1].until)
        return;
    size_t max = self->marks_max ? self->marks_max : KYU_MARKS_MAX;
    if (self->marks_n >= max)
        merge_older_half(self);
    if (self->marks_n == self->marks_cap) {
        size_t cap = self->marks_cap ? self->marks_cap * 2 : 64;
        kyu_mark_t *m = realloc(self->marks, cap * sizeof *m);
        KYU_ASSERT(m);
        self->marks = m, self->marks_cap = cap;
    }
    kyu_mark_t m = {.seq = self->marks_n ? seq : 0, .until = now + KYU_MARK_STEP_MS};
    self->marks[self->marks_n++] = m;
    put_mark(self, &m);
}

/* The seq below which every message was sent before cutoff (ms): the seq of the first mark
 * whose until is past it (all seqs when there is none). */
static uint64_t expired_below(const kyu_sm_t *self, uint64_t cutoff)
{
    size_t lo = 0, hi = self->marks_n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
#if KYU_REPLICA_PLANTED_BUG == 10
        /* Planted bug 10 (docs/RAFT.md): a mark whose until is within its span past the cutoff
         * counts as expired, so its messages may go up to a second before their period ends;
         * kyu-sim-kyu-planted10 must report it. */
        if (self->marks[mid].until <= cutoff + KYU_MARK_STEP_MS)
#else
        if (self->marks[mid].until <= cutoff)
#endif
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < self->marks_n ? self->marks[lo].seq : self->next_seq;
}

static uint64_t queue_cutoff(const queue_t *q, uint64_t now)
{
    uint64_t r = (uint64_t)q->retention * 1000;
    return now > r ? now - r : 0;
}

bool kyu_sm_expiry_due(kyu_sm_t *self, uint64_t now)
{
    for (queue_t *q = zhashx_first(self->queues); q; q = zhashx_next(self->queues))
        if (q->n_messages > 0 && expired_below(self, queue_cutoff(q, now)) > q->expired_below)
            return true;
    return false;
}

/* Takes q's messages below seq out of its receive index; returns how many. */
static uint64_t drop_below(queue_t *q, uint64_t seq)
{
    uint64_t n = kyu_sm_index_drop_fresh_below(q, seq);
    size_t cap = 0, k = 0;
    uint64_t *old = NULL;
    for (lease_t *l = zhashx_first(q->leases); l; l = zhashx_next(q->leases)) {
        uint64_t s = (uint64_t)(uintptr_t)zhashx_cursor(q->leases); /* sm_index.c: seq_key */
        if (s >= seq)
            continue;
        if (k == cap) {
            cap = cap ? cap * 2 : 64;
            uint64_t *o = realloc(old, cap * sizeof *o);
            KYU_ASSERT(o);
            old = o;
        }
        old[k++] = s;
    }
    for (size_t i = 0; i < k; i++)
        kyu_sm_index_drop(q, old[i]);
    free(old);
    return n + k;
}

/* Records that q's messages below seq go after the entry ("gp", sm.c's collect_prefix). A
 * "gp" record of q made earlier in this entry (a PURGE_QUEUE, with the seqs of messages moved
 * in after it to keep) is merged, not replaced: the range goes up to the higher seq, and a kept
 * seq stays kept only at or above seq (those below were just expired from the index). */
static kyu_code_t put_expired_below(kyu_sm_t *self, queue_t *q, uint64_t seq, kyu_err_t *err)
{
    uint8_t gp[10] = {'g', 'p'};
    kyu_put_be64(gp + 2, q->qid);
    size_t vl = 0;
    char *v = NULL;
    if (self->purged) { /* only then can this entry have one (earlier ones are collected) */
        kyu_err_clear(err);
        v = kyu_sm_read(self, KYU_CF_META, gp, sizeof gp, &vl, err);
        if (!v && err->code)
            return err->code;
        if (v && (vl < 8 || vl % 8 != 0)) {
            free(v);
            return kyu_err_set(err, KYU_ERR_STORAGE, "corrupt purge record of queue '%s'", q->name);
        }
    }
    uint8_t *out = malloc(vl > 8 ? vl : 8);
    KYU_ASSERT(out);
    uint64_t mark =
        v && kyu_get_be64((const uint8_t *)v) > seq ? kyu_get_be64((const uint8_t *)v) : seq;
    kyu_put_be64(out, mark);
    size_t n = 8;
    for (size_t at = 8; v && at < vl; at += 8)
        if (kyu_get_be64((const uint8_t *)v + at) >= seq)
            memcpy(out + (n += 8) - 8, v + at, 8);
    kyu_sm_put(self, KYU_CF_META, gp, sizeof gp, out, n);
    free(out);
    free(v);
    return KYU_OK;
}

kyu_code_t kyu_op_expire_apply(kyu_sm_t *self, const kyu_command_t *c, kyu_apply_t *a)
{
    for (queue_t *q = zhashx_first(self->queues); q; q = zhashx_next(self->queues)) {
        if (q->deleted)
            continue;
        uint64_t below = expired_below(self, queue_cutoff(q, c->now_ms));
        if (below <= q->expired_below)
            continue;
        q->expired_below = below;
        uint64_t n = q->n_messages ? drop_below(q, below) : 0;
        if (n == 0)
            continue;
        KYU_ASSERT(n <= q->n_messages);
        q->n_messages -= n;
        /* The records below the seq go as a purge's: one range delete once the entry is
         * written (the messages there are exactly those dropped: seqs only grow). */
        kyu_code_t rc = put_expired_below(self, q, below, a->err);
        if (rc != KYU_OK)
            return rc;
        self->purged = true;
        kyu_sm_touch(self, q);
        if (q->fifo) /* a message gone may unlock its group (sm_fifo.c): wake its receives */
            kyu_sm_note_visible(self, q);
    }
    return KYU_OK;
}
