/* sm_internal: the state machine's private types and helpers, shared by sm.c (loading,
 * reads), sm_apply.c (applying an entry) and the apply functions of the table's rows
 * (op_*.c, sm_members.c, sm_handle.c, sm_dedup.c). The key layout is documented at the top
 * of sm.c. How state is stored stays behind these helpers, not in the table (ops.h). */
#ifndef KYU_SM_INTERNAL_H
#define KYU_SM_INTERNAL_H

#include "ops.h"
#include "sm.h"

#include <czmq.h>

/* The receipt handles' MAC key, derived from the handle key (sm_handle.c). */
typedef struct {
    uint8_t k[16];
} kyu_handle_mac_t;

typedef struct {
    uint64_t visible_at;
    uint32_t receive_count;
    uint32_t gen;
    uint64_t first_ms;
} lease_t;

/* A message sent by the current entry: its record is in the entry's batch, not yet in the
 * database, so a receive in the same entry reads it from here (sm_apply.c). */
typedef struct {
    const void *body; /* into the entry's payload, or into a record read */
    size_t body_len;
    uint64_t sent_ms;
    char id[KYU_UUID_LEN + 1];
} kyu_sent_t;

/* The replicated address book (sm_members.c). */
typedef struct {
    size_t n;
    kyu_peer_t peers[KYU_SM_MEMBERS_MAX];
} kyu_sm_members_t;

typedef struct {
    uint64_t visible_at, seq;
} kyu_vis_t;

typedef struct {
    char name[KYU_NAME_MAX + 1];
    uint64_t qid;
    uint32_t vt;
    uint64_t created_ms;
    uint64_t n_messages;
    /* The receive index, in memory (sm_index.c): the messages never received (a ring of
     * seqs), the leases of the others (seq -> lease_t) and their visibility order (a heap). */
    uint64_t *fresh;
    size_t fresh_head, fresh_len, fresh_cap;
    zhashx_t *leases;
    kyu_vis_t *heap;
    size_t heap_n, heap_cap;
    bool dirty;   /* record to be written with the current entry */
    bool deleted; /* removed by the current entry */
} queue_t;

struct kyu_sm {
    kyu_store_t *store;
    rocksdb_t *db;
    zhashx_t *queues; /* name -> queue_t*; freed by kyu_sm_destroy */
    uint64_t applied_index;
    uint64_t next_seq;
    uint64_t next_qid;
    uint64_t last_now;
    /* The entry whose command carried last_now, when applied since this start (0: not
     * known; not stored): cluster_time.c trusts only a time from a fresh entry. */
    uint64_t last_now_index, last_now_term;
    /* Raft's view of the applied index: its term and the configuration in force there,
     * written with it, so that the state database describes itself as a snapshot. */
    uint64_t applied_term, next_term;
    uint8_t conf[KYU_SM_CONF_MAX];
    size_t conf_len;
    bool conf_pending;                /* the next entry writes conf */
    kyu_sm_members_t book, book_next; /* applied; as changed by the current entry */
    /* The receipt handle key (sm_handle.c): applied; as changed by the current entry. */
    uint8_t hkey[KYU_HANDLE_KEY_LEN], hkey_next[KYU_HANDLE_KEY_LEN];
    bool has_hkey, has_hkey_next;
    kyu_handle_mac_t hmac, hmac_next; /* the MAC key of each (sm_handle.c) */
    rocksdb_writeoptions_t *wopts;
    /* per-entry scratch */
    rocksdb_writebatch_wi_t *batch; /* entries with a command that reads (read-your-writes) */
    rocksdb_writebatch_t *plain;    /* entries that only write: no index to maintain */
    bool indexed;                   /* which of the two the current entry uses */
    uint64_t dedup_floor; /* no request key record is older than this (0: not known yet) */
    /* The messages the current entry sent: seqs entry_seq.. (sm_apply.c) */
    uint64_t entry_seq;
    kyu_sent_t *sent;
    size_t n_sent, sent_cap;
    zlistx_t *touched; /* queue_t* whose record is dirty in the current entry */
};

#define KEY_QS 16 /* qid + seq */
#define LEASE_LEN 24

static inline void lease_encode(uint8_t out[LEASE_LEN], const lease_t *l)
{
    kyu_put_be64(out, l->visible_at);
    kyu_put_be32(out + 8, l->receive_count);
    kyu_put_be32(out + 12, l->gen);
    kyu_put_be64(out + 16, l->first_ms);
}

static inline void key_qs(uint8_t k[KEY_QS], uint64_t qid, uint64_t seq)
{
    kyu_put_be64(k, qid);
    kyu_put_be64(k + 8, seq);
}

/* Request keys (sm_dedup.c): a keyed write seen within the window is answered from what its
 * first attempt did (kyu_dedup_t, ops.h) and not applied again. */
#define KYU_DEDUP_WINDOW_MS (5 * 60 * 1000)
kyu_code_t kyu_sm_dedup_lookup(kyu_sm_t *self, const kyu_command_t *c, kyu_dedup_t *d, bool *found,
                               kyu_err_t *err);
void kyu_sm_dedup_record(kyu_sm_t *self, const kyu_command_t *c, const kyu_dedup_t *d);
kyu_code_t kyu_sm_dedup_expire(kyu_sm_t *self, uint64_t now_ms, kyu_err_t *err);

/* The address book (sm_members.c): loaded with the state; SET_MEMBER / DROP_MEMBER change
 * book_next, which becomes the book once the entry's write succeeded (settle). */
kyu_code_t kyu_sm_members_load(kyu_sm_t *self, kyu_err_t *err);
void kyu_sm_members_settle(kyu_sm_t *self, bool written);

/* ---- what the apply functions of the rows (op_*.c) use (sm_apply.c) ---- */

/* The current entry's writes (reads of the state database see them only in an entry that
 * needs the indexed batch: entry_reads, sm_apply.c). */
void kyu_sm_put(kyu_sm_t *self, kyu_cf_t c, const void *k, size_t kl, const void *v, size_t vl);
void kyu_sm_del(kyu_sm_t *self, kyu_cf_t c, const void *k, size_t kl);
/* A message record: head then body, copied once. */
void kyu_sm_put_message(kyu_sm_t *self, const uint8_t k[KEY_QS], const void *head, size_t hl,
                        const void *body, size_t bl);
/* The queue named name, or NULL with NO_SUCH_QUEUE set in res. */
queue_t *kyu_sm_queue(kyu_sm_t *self, const char *name, kyu_result_t *res);
/* Marks q's record to be written with the current entry. */
void kyu_sm_touch(kyu_sm_t *self, queue_t *q);
/* A new message of q: its record (head then body, copied once by the batch), its lease
 * record, and its place in the receive index. */
void kyu_sm_add_message(kyu_sm_t *self, queue_t *q, uint64_t seq, const void *head, size_t hl,
                        const void *body, size_t bl, const kyu_sent_t *sent);
/* Sets message seq's lease, in the index and in its lease record. */
void kyu_sm_set_lease(kyu_sm_t *self, queue_t *q, uint64_t seq, const lease_t *l);
/* Drops message seq of q: record, lease record, index. */
void kyu_sm_drop_message(kyu_sm_t *self, queue_t *q, uint64_t seq);
/* The message record of seq of q (written by an earlier entry or this one): false when it is
 * missing or corrupt (err set). */
bool kyu_sm_read_message(kyu_sm_t *self, const queue_t *q, uint64_t seq, kyu_sent_t *m,
                         char **owned, kyu_err_t *err);

/* The receive index (sm_index.c; see its top). The lease of a received message (false: none,
 * i.e. never received or deleted). */
bool kyu_sm_index_lease(const queue_t *q, uint64_t seq, lease_t *l);
void kyu_sm_index_init(queue_t *q);
void kyu_sm_index_free(queue_t *q);
void kyu_sm_index_add_fresh(queue_t *q, uint64_t seq);
void kyu_sm_index_set_lease(queue_t *q, uint64_t seq, const lease_t *l);
void kyu_sm_index_drop(queue_t *q, uint64_t seq);
/* Takes up to max messages visible at now out of the index, in receive order, with their
 * leases (all zero for a message never received); the caller sets each one's new lease. */
uint32_t kyu_sm_index_take(queue_t *q, uint64_t now, uint32_t max, uint64_t seqs[],
                           lease_t leases[]);
bool kyu_sm_index_has_visible(queue_t *q, uint64_t now);
uint64_t kyu_sm_index_not_visible(queue_t *q, uint64_t now);
/* Rebuilds every queue's index from the leases column family. */
kyu_code_t kyu_sm_index_load(kyu_sm_t *self, kyu_err_t *err);
/* Frees a queue record and its index. */
void kyu_sm_queue_free(queue_t *q);

/* kyu_result_t starts with the same two fields as kyu_err_t, so errors are set through it. */
static inline kyu_err_t *kyu_result_err(kyu_result_t *res)
{
    return (kyu_err_t *)res;
}

/* The handle key (sm_handle.c): loaded with the state; SET_HANDLE_KEY changes hkey_next,
 * which becomes hkey once the entry's write succeeded (settle). */
kyu_code_t kyu_sm_handle_key_load(kyu_sm_t *self, kyu_err_t *err);
void kyu_sm_handle_key_settle(kyu_sm_t *self, bool written);
/* kyu_handle_format and kyu_handle_verify (sm.h) with the key's MAC key derived. */
void kyu_sm_handle_format(char out[KYU_HANDLE_LEN + 1], const kyu_handle_mac_t *m, uint64_t qid,
                          uint64_t seq, uint32_t gen);
bool kyu_sm_handle_verify(const char *handle, const kyu_handle_mac_t *m, uint64_t qid,
                          uint64_t *seq, uint32_t *gen);

/* Drops the data of deleted queues (their "gc" records); idempotent. */
kyu_code_t kyu_sm_collect_garbage(kyu_sm_t *self, kyu_err_t *err);

#endif
