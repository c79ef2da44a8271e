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

/* The replicated address book (sm_members.c). */
typedef struct {
    size_t n;
    kyu_peer_t peers[KYU_SM_MEMBERS_MAX];
} kyu_sm_members_t;

typedef struct {
    char name[KYU_NAME_MAX + 1];
    uint64_t qid;
    uint32_t vt;
    uint64_t created_ms;
    uint64_t n_messages;
    /* No live visibility key of this queue is below scan_floor (in memory only; 0 after a
     * start). Receives seek here instead of the queue's first key: a queue's front is where
     * RocksDB keeps the tombstones of every message leased or deleted, and walking them on
     * each receive would make it cost O(messages ever received). */
    uint64_t scan_floor;
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
    zlistx_t *touched;    /* queue_t* whose record is dirty in the current entry */
};

#define KEY_QS 16 /* qid + seq */
#define KEY_VIS 24
#define LEASE_LEN 24

typedef struct {
    uint64_t visible_at;
    uint32_t receive_count;
    uint32_t gen;
    uint64_t first_ms;
} lease_t;

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

static inline void key_vis(uint8_t k[KEY_VIS], uint64_t qid, uint64_t visible_at, uint64_t seq)
{
    kyu_put_be64(k, qid);
    kyu_put_be64(k + 8, visible_at);
    kyu_put_be64(k + 16, seq);
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

/* The current entry's writes; reads see them when the entry reads (KYU_ROW_READS_STATE). */
void kyu_sm_put(kyu_sm_t *self, kyu_cf_t c, const void *k, size_t kl, const void *v, size_t vl);
void kyu_sm_del(kyu_sm_t *self, kyu_cf_t c, const void *k, size_t kl);
/* A message record: head then body, copied once. */
void kyu_sm_put_message(kyu_sm_t *self, const uint8_t k[KEY_QS], const void *head, size_t hl,
                        const void *body, size_t bl);
/* Reads through the current entry's writes. Returns a heap value (caller frees) or NULL. */
char *kyu_sm_get(kyu_sm_t *self, kyu_cf_t c, const void *k, size_t kl, size_t *vl, kyu_err_t *err);
/* The queue named name, or NULL with NO_SUCH_QUEUE set in res. */
queue_t *kyu_sm_queue(kyu_sm_t *self, const char *name, kyu_result_t *res);
/* Marks q's record to be written with the current entry. */
void kyu_sm_touch(kyu_sm_t *self, queue_t *q);
/* Moves a message's visibility key and rewrites its lease record. */
void kyu_sm_set_lease(kyu_sm_t *self, queue_t *q, uint64_t seq, uint64_t old_visible_at,
                      const lease_t *l);
/* The lease record of message seq of q: false (err unset) when there is none. */
bool kyu_sm_get_lease(kyu_sm_t *self, const queue_t *q, uint64_t seq, lease_t *l, kyu_err_t *err);
/* Up to max messages of q visible at now, in visibility order (*found of them). */
kyu_code_t kyu_sm_scan_visible(kyu_sm_t *self, queue_t *q, uint64_t now, uint32_t max,
                               uint64_t seqs[KYU_BATCH_MAX], uint32_t *found, kyu_err_t *err);

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
