/* sm_internal: the state machine's private types, shared by sm.c (loading, reads) and
 * sm_apply.c (the commands). The key layout is documented at the top of sm.c. */
#ifndef KYU_SM_INTERNAL_H
#define KYU_SM_INTERNAL_H

#include "sm.h"

#include <czmq.h>

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
    /* Raft's view of the applied index: its term and the configuration in force there,
     * written with it, so that the state database describes itself as a snapshot. */
    uint64_t applied_term, next_term;
    uint8_t conf[KYU_SM_CONF_MAX];
    size_t conf_len;
    bool conf_pending; /* the next entry writes conf */
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
 * first attempt did and not applied again. */
#define KYU_DEDUP_WINDOW_MS (5 * 60 * 1000)
typedef struct {
    uint8_t type; /* kyu_cmd_type_t of the first attempt */
    size_t n;
    char ids[KYU_BATCH_MAX][KYU_UUID_LEN + 1]; /* SEND: message ids */
    uint64_t seqs[KYU_BATCH_MAX];              /* RECEIVE: messages leased ... */
    uint32_t gens[KYU_BATCH_MAX];              /* ... and their lease generations */
    uint8_t codes[KYU_BATCH_MAX];              /* DELETE, CHANGE_VISIBILITY: results */
} kyu_dedup_t;
kyu_code_t kyu_sm_dedup_lookup(kyu_sm_t *self, const kyu_command_t *c, kyu_dedup_t *d, bool *found,
                               kyu_err_t *err);
void kyu_sm_dedup_record(kyu_sm_t *self, const kyu_command_t *c, const kyu_dedup_t *d);
kyu_code_t kyu_sm_dedup_expire(kyu_sm_t *self, uint64_t now_ms, kyu_err_t *err);

/* Drops the data of deleted queues (their "gc" records); idempotent. */
kyu_code_t kyu_sm_collect_garbage(kyu_sm_t *self, kyu_err_t *err);

#endif
