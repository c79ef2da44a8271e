/* sm_internal: the state machine's private types and helpers, shared by sm.c (loading,
 * reads), sm_apply.c (applying an entry) and the apply functions of the table's rows
 * (op_*.c, sm_members.c, sm_handle.c, sm_dedup.c). The key layout is documented at the top
 * of sm.c. How state is stored stays behind these helpers, not in the table (ops.h). */
#ifndef KYU_SM_INTERNAL_H
#define KYU_SM_INTERNAL_H

#include "ops.h"
#include "queue_attrs.h"
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
    uint64_t last_ms; /* its latest receive (0: never, or leased before it was recorded) */
    /* The Raft term of the entry that gave gen (0: never received, or given before terms
     * were recorded): see kyu_lease_next_gen. */
    uint32_t term;
    /* In memory only (sm_index.c, the counters): the mark of the last read that subtracted
     * it (31 bits: KYU_READ_MARK_MAX), and whether it is counted in its queue's n_inflight or
     * n_delayed. Ignored by callers. */
    uint32_t read_mark : 31;
    uint32_t counted : 1;
} lease_t;
/* A lease stays 40 bytes in memory (10^7 leases are 400 MB; DEPTH's budget, sm_index.c). */
_Static_assert(sizeof(lease_t) == 40, "a lease's term fits beside the read mark");
#define KYU_READ_MARK_MAX 0x7fffffffu

/* A Raft term as a lease records it: terms never reach 2^32 (one per election). */
static inline uint32_t kyu_lease_term(uint64_t term)
{
    return term > UINT32_MAX ? UINT32_MAX : (uint32_t)term;
}

/* The generation a receive applied in Raft term `term` gives a message whose lease is l (gen
 * 0: never received). Generations count receives, and skip ahead by the terms passed since
 * the lease's own: a lease answered early and lost with its broker (never applied, so not
 * counted; "Receive answered early" in docs/ARCHITECTURE.md) was given in a term that had
 * begun when l was recorded, at l->gen + 1 + (its term - l->term) (or its term, for a
 * never-received message), and the broker that lost it comes back in a later term: every
 * later lease's generation is higher, so the lost handle is RECEIPT_STALE against it, never
 * the handle of the later lease. Within one term a lease can only be lost after every
 * earlier one of its message was applied (the leader's overlay holds a message until its
 * early lease is applied), so a later term's first lease, at l->gen + 2 or more, is past it.
 * With term 0 throughout (unit tests that apply no term) generations count 1, 2, 3... */
static inline uint32_t kyu_lease_next_gen(const lease_t *l, uint64_t term)
{
    uint64_t t = kyu_lease_term(term), g;
    if (l->gen == 0)
        g = t > 1 ? t : 1;
    else if (t <= l->term)
        g = (uint64_t)l->gen + 1;
    else
        g = (uint64_t)l->gen + 1 + (t - l->term);
    return g > UINT32_MAX ? UINT32_MAX : (uint32_t)g; /* 2^32 receives of one message: never */
}

/* Gives l the generation of a receive by command c applied in Raft term `term`, and records
 * the term with it; an entry written before the rule (c->gen_legacy) gives the generation
 * after l's and leaves its term, as the binary that wrote it did. */
static inline void kyu_lease_give_gen(lease_t *l, const kyu_command_t *c, uint64_t term)
{
    if (c->gen_legacy) {
        l->gen++;
        return;
    }
    l->gen = kyu_lease_next_gen(l, term);
    l->term = kyu_lease_term(term);
}

/* A message as a receive reads it (kyu_sm_read_messages). */
typedef struct {
    const void *body; /* into the record read */
    size_t body_len;
    uint64_t sent_ms;
    char id[KYU_UUID_LEN + 1];
    /* its stored digests (into the record read; NULL: a record written before they were
     * stored, or md5_attrs without attributes) */
    const uint8_t *md5_body, *md5_attrs;
    kyu_msg_attrs_t attrs; /* into the record read */
    /* MessageGroupId and MessageDeduplicationId (into the record read; length 0: none) */
    const char *group, *dedup;
    size_t group_len, dedup_len;
} kyu_sent_t;

/* Sets meta's MD5OfMessageBody and MD5OfMessageAttributes (lowercase hex) from the message's
 * record: its stored digests, or computed from its body and attributes when the record is
 * older than them. */
void kyu_sent_digests(const kyu_sent_t *m, kyu_msg_meta_t *meta);
/* Sets meta's MessageGroupId and MessageDeduplicationId from the message's record. */
void kyu_sent_fifo_ids(const kyu_sent_t *m, kyu_msg_meta_t *meta);

/* The replicated address book (sm_members.c). */
typedef struct {
    size_t n;
    kyu_peer_t peers[KYU_SM_MEMBERS_MAX];
} kyu_sm_members_t;

typedef struct {
    uint64_t visible_at, seq;
} kyu_vis_t;

/* A message move task of a queue (op_redrive.c): as listed, and the state of its rate. */
typedef struct {
    kyu_move_task_t t; /* t.source is its queue's name */
    /* MaxNumberOfMessagesPerSecond (GCRA): the time (us) up to which the moves so far have
     * used the rate; a step moves no more than the time since allows */
    uint64_t tat_us;
    uint64_t stepped_at; /* in memory: the time of its last step (the leader serves the oldest) */
} kyu_task_t;

typedef struct kyu_fifo kyu_fifo_t; /* a FIFO queue's groups and deduplication (sm_fifo.c) */
typedef struct kyu_fair kyu_fair_t; /* a standard queue's fair message groups (sm_fair.c) */

/* A table of FIFO deduplication records (sm_fdedup.c, see its top): a FIFO queue's
 * (sm_fifo.c) or a FIFO topic's (op_topic.c). Its records are stored in the meta column
 * family under its prefix (at most KYU_FDEDUP_PREFIX_MAX bytes), each key shorter than
 * KYU_FDEDUP_KEY_MAX. new copies the prefix; the table owns its records. find looks a key up
 * as at now (false: none within the window); put remembers one (store and memory); expire
 * drops those past the window at now; drop_all drops every one (its owner's deletion);
 * insert (memory only), parse (a store record under a prefix of plen bytes) and loaded (after
 * the last insert) rebuild a table at a load. Functions taking a table accept NULL (none yet)
 * except put and insert. */
typedef struct kyu_fdedup kyu_fdedup_t;
#define KYU_FDEDUP_PREFIX_MAX (2 + KYU_TOPIC_NAME_MAX + 1)
#define KYU_FDEDUP_KEY_MAX (2 + KYU_GROUP_ID_MAX + 1 + KYU_DEDUP_ID_MAX + 1)
#define KYU_FDEDUP_VALUE_LEN (16 + KYU_UUID_LEN)
kyu_fdedup_t *kyu_fdedup_new(const void *prefix, size_t plen);
void kyu_fdedup_destroy(kyu_fdedup_t **self_p);
bool kyu_fdedup_find(const kyu_fdedup_t *d, const char *key, uint64_t now,
                     char id[KYU_UUID_LEN + 1], uint64_t *seq);
void kyu_fdedup_put(kyu_sm_t *self, kyu_fdedup_t *d, const char *key, uint64_t now, const char *id,
                    uint64_t seq);
void kyu_fdedup_expire(kyu_sm_t *self, kyu_fdedup_t *d, uint64_t now);
void kyu_fdedup_drop_all(kyu_sm_t *self, kyu_fdedup_t *d);
size_t kyu_fdedup_count(const kyu_fdedup_t *d);
void kyu_fdedup_insert(kyu_fdedup_t *d, const char *key, uint64_t t, uint64_t seq, const char *id);
bool kyu_fdedup_parse(const void *k, size_t kl, size_t plen, const void *v, size_t vl,
                      char key[KYU_FDEDUP_KEY_MAX], uint64_t *t, uint64_t *seq,
                      char id[KYU_UUID_LEN + 1]);
void kyu_fdedup_loaded(kyu_fdedup_t *d);

typedef struct {
    char name[KYU_NAME_MAX + 1];
    uint64_t qid;
    uint32_t vt;       /* VisibilityTimeout, seconds */
    uint32_t max_size; /* MaximumMessageSize, bytes */
    uint32_t delay;    /* DelaySeconds: a message sent is invisible for as long */
    uint64_t created_ms;
    uint64_t modified_ms; /* LastModifiedTimestamp: creation or the last SET_QUEUE_ATTRIBUTES */
    uint64_t n_messages;
    /* The other attributes (queue_attrs.h): those a receive reads, and the encoding of all
     * those not at their defaults (the record's tail; NULL: none; freed with the queue). */
    uint32_t retention, receive_wait;
    char dlq[KYU_NAME_MAX + 1]; /* RedrivePolicy: the dead-letter queue, "" for none */
    uint32_t max_receive_count;
    /* FifoQueue, ContentBasedDeduplication, DeduplicationScope; a FIFO queue's state */
    bool is_fifo, cbd;
    uint32_t dedup_scope;
    kyu_fifo_t *fifo;
    /* A standard queue that has held a grouped message (QUEUE_FLAG_GROUPS): its groups, in
     * memory (sm_fair.c; NULL for every other queue). groups: the flag, as loaded. */
    kyu_fair_t *fair;
    bool groups;
    uint8_t *ext;
    size_t ext_len;
    /* Messages were moved into this queue (it is or was a dead-letter queue): a message of
     * it may have a provenance record (KEY_QS + 1), dropped with the message. */
    bool moved_in;
    /* Retention (sm_expiry.c): no message of the queue is below this seq (0: not known, as
     * after a start); in memory only, it spares an expiry the queues it has nothing to do in */
    uint64_t expired_below;
    /* The receive index, in memory (sm_index.c): the messages never received (a ring of
     * seqs), the leases of the others (seq -> lease_t) and their visibility order (a heap). */
    uint64_t **fresh; /* a ring of chunks of KYU_FRESH_CHUNK slots: seqs and runs (sm_index.c) */
    size_t fresh_first, fresh_chunks, fresh_cap; /* the ring: first chunk, chunks, slots */
    size_t fresh_head, fresh_slots; /* the first slot's place in the first chunk; slots used */
    size_t fresh_len;               /* seqs held */
    zhashx_t *leases;
    kyu_vis_t *heap;
    size_t heap_n, heap_cap;
    /* The counters (sm_index.c, "Counters"): the leases of received messages (n_inflight)
     * and the delays (n_delayed) that end after counted_at, the time of the last command
     * applied to the queue; ends: a min-heap of (visible_at, seq) of those counted, which
     * moves them out as commands' times pass their ends. */
    uint64_t counted_at, n_inflight, n_delayed;
    kyu_vis_t *ends;
    size_t ends_n, ends_cap;
    uint32_t read_mark;
    /* Its message move tasks (op_redrive.c), oldest first, at most KYU_MOVE_TASKS_MAX; the
     * last may be running. Freed with the queue. */
    kyu_task_t *tasks;
    size_t n_tasks;
    bool woken;   /* in the state machine's woken list (sm_wake.c) */
    bool dirty;   /* record to be written with the current entry */
    bool deleted; /* removed by the current entry */
} queue_t;

/* A retention mark (sm_expiry.c): the seqs from seq up to the next mark's were given to
 * messages sent before until (ms). */
typedef struct {
    uint64_t seq, until;
} kyu_mark_t;
#define KYU_MARK_STEP_MS 1000 /* a new mark once a send's time passes the last until */
#define KYU_MARKS_MAX 32768   /* then the older half is merged pairwise */

typedef struct kyu_sm_writer kyu_sm_writer_t;
typedef struct kyu_sm_table kyu_sm_table_t; /* the write-behind buffer's hash (sm_buffer.c) */
typedef struct kyu_sm_keyfilter kyu_sm_keyfilter_t;

struct kyu_sm {
    kyu_store_t *store;
    rocksdb_t *db;
    zhashx_t *queues; /* name -> queue_t*; freed by kyu_sm_destroy */
    zhashx_t *topics; /* name -> kyu_topic_t* (op_topic.c); NULL until loaded */
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
    rocksdb_writebatch_t *plain; /* a flush's batch */
    /* The writes of the entries applied since the last flush (sm_buffer.c): key -> item */
    kyu_sm_table_t *buffer;
    size_t buffer_bytes, buffer_entries;
    uint32_t write_every;      /* entries buffered at most (kyu_sm_set_write_every) */
    uint64_t buffer_oldest_ms; /* the time of the first command buffered (0: none) */
    uint64_t persisted_index;  /* the applied index the state database holds */
    /* The applied index its tables hold (kyu_sm_durable_index): <= persisted_index */
    uint64_t durable_index;
    uint64_t durable_want; /* kyu_sm_want_durable's: the next write flushes up to it */
    /* The write in flight on the writer thread (sm_buffer.c; NULL: none, or no thread): the
     * buffer handed over, read-only until it is written, and what it brings the database to. */
    kyu_sm_writer_t *writer;
    kyu_sm_table_t *flushing;
    kyu_sm_table_t *spare; /* the table of the last write, emptied, for the next buffer */
    uint64_t flushing_index, flushing_oldest_ms;
    bool failed; /* an apply failed part-way: the buffer is never written */
    bool purged; /* the current entry purged a queue: its "gp" record is collected after it */
    uint64_t dedup_bucket; /* no request key record is in an older time bucket (sm_dedup.c) */
    uint64_t dedup_drops;  /* range deletes of expired buckets (kyu_sm_dedup_expire; tests) */
    kyu_sm_keyfilter_t *keyfilter; /* the request keys that may have a record (sm_dedup.c) */
    struct kyu_sm_keyfilter_load *keyfilter_load; /* its build under way at a load, or NULL */
    uint32_t keyfilter_gen_keys; /* keys per filter generation (0: the default; tests) */

    zlistx_t *touched; /* queue_t* whose record is dirty in the current entry */
    /* Retention marks (sm_expiry.c), by seq and until both ascending */
    kyu_mark_t *marks;
    size_t marks_n, marks_cap, marks_max; /* marks_max: KYU_MARKS_MAX unless a test sets it */

    size_t n_running_tasks; /* message move tasks RUNNING (op_redrive.c) */
    /* Long polling (sm_wake.c): the names of the queues that may have visible messages (or
     * were deleted) since the frontend last took them; kept only once watched. */
    bool watch_visible;
    char (*woken)[KYU_NAME_MAX + 1];
    size_t n_woken, cap_woken;
};

#define KEY_QS 16 /* qid + seq */
/* A message record's id_len byte with this bit: the id is followed by the attributes (sm.c's
 * key layout). */
#define MSG_REC_ATTRS 0x80
/* ... and with this bit: the id is followed by the message's digests, MD5OfMessageBody and,
 * with attributes, MD5OfMessageAttributes (16 bytes each), stored once at its send. */
#define MSG_REC_DIGESTS 0x40
#define MSG_REC_ID_LEN 0x3f /* the id_len byte's length bits */
/* ... all of them set (no id is that long): the id's length is the next byte, and the id is
 * followed by group_len(1) MessageGroupId dedup_len(1) MessageDeduplicationId (sm.c's key
 * layout) */
#define MSG_REC_EXT 0x3f
/* A queue record's value (sm.c's key layout): before MaximumMessageSize, and now. */
#define QUEUE_REC_V1_LEN 28
#define QUEUE_REC_V2_LEN 44
#define QUEUE_REC_VERSION 3 /* the msgpack record's first element (sm.c's key layout) */
/* Queue record flags (the msgpack record's 9th element). */
#define QUEUE_FLAG_MOVED_IN 1
#define QUEUE_FLAG_GROUPS 2 /* a standard queue that has held a grouped message (sm_fair.c) */
/* The first_ms of a message never received (gen 0) that waits for its queue's delay: it is
 * in the heap until visible_at, not among the fresh ones (sm_index.c). Never a receive time. */
#define KYU_LEASE_DELAYED 1
/* A lease record: 24 bytes, 32 with the latest receive (last_ms, when there was one: a
 * message never received keeps the 24 bytes, as before last_ms was recorded), 36 with the
 * term of its generation (every lease a receive gives since terms are recorded; a record of
 * 24 or 32 bytes loads with term 0). */
#define LEASE_LEN 24
#define LEASE_LEN_LAST 32
#define LEASE_LEN_MAX 36

/* Returns the record's length. */
static inline size_t lease_encode(uint8_t out[LEASE_LEN_MAX], const lease_t *l)
{
    kyu_put_be64(out, l->visible_at);
    kyu_put_be32(out + 8, l->receive_count);
    kyu_put_be32(out + 12, l->gen);
    kyu_put_be64(out + 16, l->first_ms);
    if (!l->last_ms && !l->term)
        return LEASE_LEN;
    kyu_put_be64(out + 24, l->last_ms);
    if (!l->term)
        return LEASE_LEN_LAST;
    kyu_put_be32(out + 32, l->term);
    return LEASE_LEN_MAX;
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
void kyu_sm_dedup_expire(kyu_sm_t *self, uint64_t now_ms);
/* At load: the records of the first format ("rq" client key, "rx" time client key) moved to
 * their time buckets; then the in-memory filter of the request keys recorded, freed with the
 * state machine. The filter is built by a thread of its own, beside the other loaders' scans:
 * kyu_sm_dedup_load_start returns once the thread runs (it reads the database only, and
 * writes only the filter it is building), kyu_sm_dedup_load_finish waits for it and hands
 * the filter over (always called after a start that succeeded, even when a load between
 * failed). */
kyu_code_t kyu_sm_dedup_load_start(kyu_sm_t *self, kyu_err_t *err);
kyu_code_t kyu_sm_dedup_load_finish(kyu_sm_t *self, kyu_err_t *err);
void kyu_sm_keyfilter_free(kyu_sm_t *self);
/* For tests: generations of `keys` keys (0: the default), so that few keys make many. */
void kyu_sm_keyfilter_set_generation_keys(kyu_sm_t *self, uint32_t keys);
/* For tests: merge the retention marks once max are held (0: KYU_MARKS_MAX). */
void kyu_sm_set_marks_max(kyu_sm_t *self, size_t max);

/* Retention (sm_expiry.c): the marks, loaded with the state and freed with it; SEND marks
 * the first seq it gives (kyu_sm_mark_seq, with the command's time). */
kyu_code_t kyu_sm_marks_load(kyu_sm_t *self, kyu_err_t *err);
void kyu_sm_marks_free(kyu_sm_t *self);
void kyu_sm_mark_seq(kyu_sm_t *self, uint64_t seq, uint64_t now);
/* Takes q's messages never received below seq out of the receive index; returns how many. */
uint64_t kyu_sm_index_drop_fresh_below(queue_t *q, uint64_t seq);

/* The address book (sm_members.c): loaded with the state; SET_MEMBER / DROP_MEMBER change
 * book_next, which becomes the book once the entry's write succeeded (settle). */
kyu_code_t kyu_sm_members_load(kyu_sm_t *self, kyu_err_t *err);
void kyu_sm_members_settle(kyu_sm_t *self, bool written);

/* A hash keyed by a 64-bit number (a qid or a seq) held in the key pointer itself, with
 * nothing to copy or free (sm_index.c); kyu_seq_hash is its hasher (splitmix64's
 * finalizer), also the FIFO groups' tree priorities (sm_fifo.c). */
static inline size_t kyu_seq_hash(const void *key)
{
    uint64_t x = (uint64_t)(uintptr_t)key;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return (size_t)(x ^ (x >> 31));
}
zhashx_t *kyu_u64_map_new(void);

/* Walking the store at a load (sm_walk.c). fn sees each record of a walk, its key and value
 * valid for the call only; KYU_OK goes on, any other code stops the walk with it (err set). */
typedef kyu_code_t (*kyu_sm_walk_fn)(void *arg, const uint8_t *k, size_t kl, const char *v,
                                     size_t vl, kyu_err_t *err);
/* Calls fn on the records of column family cf from lo (NULL: the first) up to hi (excluded;
 * NULL: the last), in key order; a read error is KYU_ERR_STORAGE "reading <what>: ...". */
kyu_code_t kyu_sm_walk(kyu_sm_t *self, kyu_cf_t cf, const void *lo, size_t lo_len, const void *hi,
                       size_t hi_len, const char *what, kyu_sm_walk_fn fn, void *arg,
                       kyu_err_t *err);
/* Puts message seq of q in its group (group_len 0: none), at a load. */
typedef void (*kyu_sm_group_fn)(kyu_sm_t *self, queue_t *q, uint64_t seq, const char *group,
                                size_t group_len);
/* Calls add on each message of q, from its message records in key (seq) order, skipping
 * provenance records. whole: each record is read whole (kyu_sm_parse_message), else its
 * head only (kyu_sm_parse_head); one that does not read is "corrupt message record". */
kyu_code_t kyu_sm_walk_groups(kyu_sm_t *self, queue_t *q, bool whole, kyu_sm_group_fn add,
                              kyu_err_t *err);

/* ---- what the apply functions of the rows (op_*.c) use (sm_apply.c) ---- */

/* When the buffer is written (sm_buffer.c): a restart replays at most KYU_SM_BUFFER_ENTRIES
 * entries, and the buffer holds at most about KYU_SM_BUFFER_BYTES; it is written before an
 * entry whose time is KYU_SM_BUFFER_AGE_MS past its oldest write. */
#define KYU_SM_BUFFER_ENTRIES 8192
#define KYU_SM_BUFFER_BYTES (32u << 20)
#define KYU_SM_BUFFER_AGE_MS 60000

/* The state's writes and reads, through the write-behind buffer (sm_buffer.c). put2 writes
 * v1 then v2 as one value; absent says the database holds nothing under k (a new message's
 * records), so that a delete before the next flush writes nothing at all. */
typedef struct kyu_sm_item kyu_sm_item_t;
void kyu_sm_put(kyu_sm_t *self, kyu_cf_t c, const void *k, size_t kl, const void *v, size_t vl);
void kyu_sm_put2(kyu_sm_t *self, kyu_cf_t c, const void *k, size_t kl, const void *v1, size_t l1,
                 const void *v2, size_t l2, bool absent);
void kyu_sm_del(kyu_sm_t *self, kyu_cf_t c, const void *k, size_t kl);
/* Two puts (put2's arguments) of keys known together, a's then b's: as two kyu_sm_put2, with
 * the two lookups' cache misses overlapped (a new message's record and lease, a request key's
 * two records). */
typedef struct {
    kyu_cf_t cf;
    const void *k;
    size_t kl;
    const void *v1;
    size_t l1;
    const void *v2;
    size_t l2;
    bool absent;
} kyu_sm_put_t;
void kyu_sm_put_pair(kyu_sm_t *self, const kyu_sm_put_t *a, const kyu_sm_put_t *b);
/* kyu_sm_del of key k in column families ca then cb (a message's record and lease), the two
 * lookups overlapped as in kyu_sm_put_pair. */
void kyu_sm_del_pair(kyu_sm_t *self, kyu_cf_t ca, kyu_cf_t cb, const void *k, size_t kl);
/* The value under k as the applied entries left it: a heap copy (caller frees) or NULL (none,
 * or a read error, then err is set). */
char *kyu_sm_read(kyu_sm_t *self, kyu_cf_t c, const void *k, size_t kl, size_t *vl, kyu_err_t *err);
/* kyu_sm_read for n keys (at most KYU_BATCH_MAX) of column family c: vals[i] is a heap copy
 * or NULL (none). Those not buffered are read with one RocksDB MultiGet. False (err set) on
 * a read error; the values read are still returned, for the caller to free. */
bool kyu_sm_read_many(kyu_sm_t *self, kyu_cf_t c, const uint8_t *const *keys, const size_t *klens,
                      size_t n, char **vals, size_t *vlens, kyu_err_t *err);
/* Deletes the keys of column family c from lo (included) to hi (excluded), keys of at most
 * 32 bytes: a RocksDB range delete, written before the buffer's other writes; the buffered
 * writes it covers are dropped now, and reads of those keys find nothing. */
void kyu_sm_del_range(kyu_sm_t *self, kyu_cf_t c, const void *lo, size_t lol, const void *hi,
                      size_t hil);
/* True when the buffer holds a delete of k (a scan of the database still sees its value). */
bool kyu_sm_buffer_deletes(kyu_sm_t *self, kyu_cf_t c, const void *k, size_t kl);
void kyu_sm_buffer_init(kyu_sm_t *self);
void kyu_sm_buffer_drop(kyu_sm_t *self); /* forgets every buffered write */
void kyu_sm_buffer_free(kyu_sm_t *self); /* after the write in flight */
/* The writes behind (sm_buffer.c). flush_behind starts writing the buffer (when the state
 * machine has a writer thread, the write goes on there and the next entries fill a new
 * buffer; else it is written at once); flush_poll takes a finished write's result (the
 * persisted index) without waiting; flush_wait_before waits for the write in flight when it
 * holds a write of command time <= time_ms (for a scan of the database that must see it). */
kyu_code_t kyu_sm_flush_behind(kyu_sm_t *self, kyu_err_t *err);
kyu_code_t kyu_sm_flush_poll(kyu_sm_t *self, kyu_err_t *err);
kyu_code_t kyu_sm_flush_wait_before(kyu_sm_t *self, uint64_t time_ms, kyu_err_t *err);
void kyu_sm_writer_stop(kyu_sm_t *self);
/* The writer thread runs at SCHED_IDLE; where that is refused, at this nice value above the
 * loop's (sm_buffer.c, writer_main). */
#define KYU_SM_WRITER_NICE 10
/* The writer thread's id once it runs (waits for its start), 0 without a writer thread. */
pid_t kyu_sm_writer_tid(kyu_sm_t *self);
/* A message record: head then body, copied once. */
void kyu_sm_put_message(kyu_sm_t *self, const uint8_t k[KEY_QS], const void *head, size_t hl,
                        const void *body, size_t bl);
/* The queue named name, or NULL with NO_SUCH_QUEUE set in res. */
queue_t *kyu_sm_queue(kyu_sm_t *self, const char *name, kyu_result_t *res);
/* q's other attributes (every one, defaults included) into x: false when its encoding is
 * corrupt. */
bool kyu_sm_queue_ext(const queue_t *q, kyu_queue_ext_t *x);
/* Sets q's other attributes to x's (q's encoding is made again); false when out of memory
 * (q unchanged). */
bool kyu_sm_queue_set_ext(queue_t *q, const kyu_queue_ext_t *x);
/* Dead-letter queues (op_deadletter.c). check_redrive: source may name dlq in its
 * RedrivePolicy (dlq exists, is not source, makes no cycle, and its RedriveAllowPolicy lets
 * source name it); check_not_dead_letter: no queue's RedrivePolicy names name
 * (QUEUE_IN_USE otherwise). */
kyu_code_t kyu_sm_check_redrive(kyu_sm_t *self, const char *source, const char *dlq,
                                kyu_err_t *err);
kyu_code_t kyu_sm_check_not_dead_letter(kyu_sm_t *self, const char *name, kyu_err_t *err);
/* The dead-letter queue a message of q with lease l moves to instead of being leased now,
 * or NULL. */
queue_t *kyu_sm_dead_letter_due(kyu_sm_t *self, const queue_t *q, const lease_t *l);
/* Moves message seq (taken out of src's index, lease l) into dlq at time now; a RECEIVE
 * moves at most KYU_DLQ_MOVES_MAX (sm.h). */
kyu_code_t kyu_sm_move_to_dead_letter(kyu_sm_t *self, queue_t *src, queue_t *dlq, uint64_t seq,
                                      const lease_t *l, uint64_t now, kyu_err_t *err);
/* Fills m's dlq_* fields from message seq's provenance record, when it has one; false (err
 * set) on a read error or a corrupt record. */
bool kyu_sm_read_provenance(kyu_sm_t *self, const queue_t *q, uint64_t seq, kyu_msg_meta_t *m,
                            kyu_err_t *err);
/* Drops message seq's provenance record (queues with moved_in only). */
void kyu_sm_drop_provenance(kyu_sm_t *self, const queue_t *q, uint64_t seq);
/* Marks q's record to be written with the current entry. */
void kyu_sm_touch(kyu_sm_t *self, queue_t *q);
/* A new message of q sent at sent_ms: its record (head then body), its lease record, and its
 * place in the receive index: among the fresh ones, or (delay_ms > 0) in the heap, delayed
 * until sent_ms + delay_ms. */
void kyu_sm_add_message(kyu_sm_t *self, queue_t *q, uint64_t seq, const void *head, size_t hl,
                        const void *body, size_t bl, uint64_t sent_ms, uint64_t delay_ms);
/* Stores a new message seq in q (op_message.c): its record (id, digests, attributes, and its
 * MessageGroupId and MessageDeduplicationId: NULL or "" for none) and its lease, visible
 * after delay_ms; the caller counts it (n_messages) and touches q. */
void kyu_sm_store_message(kyu_sm_t *self, queue_t *q, uint64_t seq, uint64_t now_ms, const char *id,
                          const void *body, size_t body_len, const kyu_msg_attrs_t *attrs,
                          const uint8_t md5_body[KYU_MD5_LEN], const uint8_t md5_attrs[KYU_MD5_LEN],
                          uint64_t delay_ms, const char *group, const char *dedup);
/* FIFO queues (sm_fifo.c; see its top). init makes q's state when q is FIFO (is_fifo);
 * add and drop keep a message's group (drop: kyu_sm_index_drop calls it); touch makes the
 * ready index right for a message whose lease changed (kyu_sm_index_set_lease calls it);
 * check compares the ready index with a scan of every group (tests); reset_groups
 * forgets every group (a purge); take, has_visible, visible_upto and next_visible are the
 * receive index's for a FIFO queue (group order and locks); dedup_find, _put and _expire keep
 * the deduplication records; load rebuilds it all from the store. */
void kyu_sm_fifo_init(queue_t *q);
void kyu_sm_fifo_free(queue_t *q);
void kyu_sm_fifo_reset_groups(queue_t *q);
size_t kyu_sm_fifo_groups(const queue_t *q);
bool kyu_sm_fifo_group_empty(const queue_t *q, const char *group);
void kyu_sm_fifo_add(queue_t *q, uint64_t seq, const char *group, size_t glen);
void kyu_sm_fifo_drop(queue_t *q, uint64_t seq);
void kyu_sm_fifo_touch(queue_t *q, uint64_t seq);
bool kyu_sm_fifo_check(queue_t *q, uint64_t now);
uint32_t kyu_sm_fifo_take(queue_t *q, uint64_t now, uint32_t max, uint64_t seqs[],
                          lease_t leases[]);
bool kyu_sm_fifo_has_visible(queue_t *q, uint64_t now);
uint64_t kyu_sm_fifo_visible_upto(queue_t *q, uint64_t now, uint64_t cap);
uint64_t kyu_sm_fifo_next_visible(queue_t *q, uint64_t now);
bool kyu_sm_fifo_dedup_find(const queue_t *q, const char *group, const char *did, uint64_t now,
                            char id[KYU_UUID_LEN + 1], uint64_t *seq);
void kyu_sm_fifo_dedup_put(kyu_sm_t *self, queue_t *q, const char *group, const char *did,
                           uint64_t now, const char *id, uint64_t seq);
void kyu_sm_fifo_dedup_expire(kyu_sm_t *self, queue_t *q, uint64_t now);
size_t kyu_sm_fifo_dedup_count(const queue_t *q);
kyu_code_t kyu_sm_fifo_load(kyu_sm_t *self, kyu_err_t *err);
/* Fair message groups of standard queues (sm_fair.c; see its top). init makes q's state (a
 * standard queue); add puts message seq in its group (a message with a group id, before its
 * lease is set; makes the state when q has none); lease_set, none_changed and drop keep the
 * groups' heaps and the scheduler as the receive index changes (sm_index.c calls them);
 * reset forgets every group (a purge); take is the receive's, fair across groups (self:
 * the served groups' tags are stamped and written; NULL: not, e.g. a redrive's take);
 * has_visible, visible_upto and next_visible are the frontend's checks; load rebuilds the
 * groups from the message records and the tags from theirs, before the index is loaded. */
void kyu_sm_fair_init(kyu_sm_t *self, queue_t *q);
void kyu_sm_fair_free(queue_t *q);
void kyu_sm_fair_reset(queue_t *q);
size_t kyu_sm_fair_groups(const queue_t *q);
bool kyu_sm_fair_grouped(const queue_t *q, uint64_t seq);
void kyu_sm_fair_add(kyu_sm_t *self, queue_t *q, uint64_t seq, const char *group, size_t glen);
void kyu_sm_fair_lease_set(queue_t *q, uint64_t seq, const lease_t *l);
void kyu_sm_fair_none_changed(queue_t *q);
void kyu_sm_fair_drop(queue_t *q, uint64_t seq);
uint32_t kyu_sm_fair_take(kyu_sm_t *self, queue_t *q, uint64_t now, uint32_t max, uint64_t seqs[],
                          lease_t leases[]);
bool kyu_sm_fair_has_visible(queue_t *q, uint64_t now);
uint64_t kyu_sm_fair_visible_upto(queue_t *q, uint64_t now, uint64_t cap);
uint64_t kyu_sm_fair_next_visible(queue_t *q, uint64_t now);
kyu_code_t kyu_sm_fair_load(kyu_sm_t *self, kyu_err_t *err);
/* The receive index's messages without a group (all of a queue's when it has no fair state):
 * take, count visible (up to cap), and when the next is visible (0: one never received). */
uint32_t kyu_sm_index_take_ungrouped(queue_t *q, uint64_t now, uint32_t max, uint64_t seqs[],
                                     lease_t leases[]);
uint64_t kyu_sm_index_ungrouped_upto(queue_t *q, uint64_t now, uint64_t cap);
uint64_t kyu_sm_index_ungrouped_next(queue_t *q);
/* The min-heap of (visible_at, seq) (sm_index.c), also the fair groups' heaps. */
bool kyu_vis_less(kyu_vis_t a, kyu_vis_t b);
void kyu_vis_push(kyu_vis_t **h, size_t *n, size_t *cap, kyu_vis_t v);
void kyu_vis_pop(kyu_vis_t *h, size_t *n);
/* Topics (op_topic.c): loaded from their records at a start or reload; freed; and a deleted
 * queue's subscriptions removed (DELETE_QUEUE's apply). */
kyu_code_t kyu_sm_topics_load(kyu_sm_t *self, kyu_err_t *err);
void kyu_sm_topics_free(kyu_sm_t *self);
void kyu_sm_topics_drop_queue(kyu_sm_t *self, const char *queue);
/* Sets message seq's lease, in the index and in its lease record. */
void kyu_sm_set_lease(kyu_sm_t *self, queue_t *q, uint64_t seq, const lease_t *l);
/* Drops message seq of q: record, lease record, provenance record, index. */
void kyu_sm_drop_message(kyu_sm_t *self, queue_t *q, uint64_t seq);
/* Reads the start of a message record (a head of kyu_sm_add_message: its sent_ms, id and
 * FIFO ids) into m: false when corrupt. */
bool kyu_sm_parse_head(const void *head, size_t hl, kyu_sent_t *m);
/* Reads a message record (sm.c's key layout) into m, pointing into v: false when corrupt. */
bool kyu_sm_parse_message(const char *v, size_t vl, kyu_sent_t *m);
/* The message records of seqs[0..n) of q (n <= KYU_BATCH_MAX), read together: false when
 * one is missing or corrupt (err set; nothing to free). m[i].body points into owned[i],
 * which the caller frees. */
bool kyu_sm_read_messages(kyu_sm_t *self, const queue_t *q, const uint64_t *seqs, size_t n,
                          kyu_sent_t *m, char **owned, kyu_err_t *err);

/* The receive index (sm_index.c; see its top). The lease of a received message (false: none,
 * i.e. never received or deleted). */
bool kyu_sm_index_lease(const queue_t *q, uint64_t seq, lease_t *l);
void kyu_sm_index_init(queue_t *q);
void kyu_sm_index_free(queue_t *q);
void kyu_sm_index_add_fresh(queue_t *q, uint64_t seq);
/* The bytes the fresh seqs' ring holds (its chunks and their ring), for tests. */
size_t kyu_sm_index_fresh_bytes(const queue_t *q);
void kyu_sm_index_set_lease(queue_t *q, uint64_t seq, const lease_t *l);
void kyu_sm_index_drop(queue_t *q, uint64_t seq);
/* Takes up to max messages visible at now out of the index, in receive order, with their
 * leases (all zero for a message never received); the caller sets each one's new lease. */
uint32_t kyu_sm_index_take(queue_t *q, uint64_t now, uint32_t max, uint64_t seqs[],
                           lease_t leases[]);
bool kyu_sm_index_has_visible(queue_t *q, uint64_t now);
/* PEEK: the queue's messages at positions (seqs) >= from, up to max (<= KYU_BATCH_MAX + 1)
 * of them in seq order, with their leases (fresh[i]: never received nor delayed, no lease).
 * Changes nothing. Costs a binary search of the fresh seqs' slots and a pass over the leases. */
size_t kyu_sm_index_peek(queue_t *q, uint64_t from, size_t max, uint64_t seqs[], lease_t leases[],
                         bool fresh[]);
/* Moves the counters to the time of a command applied to q (no earlier than they are). */
void kyu_sm_index_advance(queue_t *q, uint64_t now);
/* Leased messages (received, lease not over) and delayed ones (never received, delay not
 * over) at now (at the counters' time when now is earlier); changes no count. */
void kyu_sm_index_counts(queue_t *q, uint64_t now, uint64_t *not_visible, uint64_t *delayed);
/* Takes seq out of the fresh messages when it is the first of them (false: it is not; a
 * queue with fair groups: never). For an early receive's apply (op_receive_early.c). */
bool kyu_sm_index_take_fresh(queue_t *q, uint64_t seq);
/* The received messages' metas and bodies for a RECEIVE's answer: seqs[0..n) of q with the
 * leases the receive gives them (op_receive.c). */
kyu_code_t kyu_sm_receive_read(kyu_sm_t *self, const queue_t *q, const uint64_t *seqs,
                               const lease_t *leases, size_t n, kyu_result_t *res, kyu_err_t *err);
/* Puts a message taken (kyu_sm_index_take) back as it was: a fresh one first among the fresh
 * ones, a lease back in the heap. */
void kyu_sm_index_put_back(queue_t *q, uint64_t seq, const lease_t *l);
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

/* The hook of long polling (sm_wake.c): queue q may have messages visible now or later (a
 * message sent or delayed, a lease set or released, the queue deleted, a FIFO queue's message
 * dropped: its group's next one may be visible). Every operation that makes messages visible
 * goes through it: kyu_sm_add_message, kyu_sm_set_lease and (FIFO) kyu_sm_drop_message call it,
 * so sends, receives (their leases run out later), CHANGE_VISIBILITY and anything built on
 * them (redrives, dead-letter moves) wake the receives parked on q. Only records the queue
 * (apply does no I/O): the frontend takes the list after the apply (kyu_sm_take_woken). */
void kyu_sm_note_visible(kyu_sm_t *self, queue_t *q);
/* Frees the woken list. */
void kyu_sm_woken_free(kyu_sm_t *self);
/* How many messages of q are visible at now, counting at most cap (for long polling: how many
 * parked receives to wake). */
uint64_t kyu_sm_index_visible_upto(queue_t *q, uint64_t now, uint64_t cap);
/* The earliest visible_at of q's leases and delayed messages (UINT64_MAX: none); 0 when a
 * message never received is waiting. */
uint64_t kyu_sm_index_next_visible(queue_t *q);

/* Message seq (an older seq: a dead-letter move keeps it) was just moved into q: q's next
 * expiry must look below it again (sm_expiry.c), and when an earlier command of this entry
 * purged q or expired its messages, the range delete of its "gp" record after the entry must
 * keep the message (its seq is added to the record). Every move into a queue calls it. */
kyu_code_t kyu_sm_moved_in(kyu_sm_t *self, queue_t *q, uint64_t seq, kyu_err_t *err);
/* Message move tasks (op_redrive.c): loaded with the queues; a deleted queue's go with it. */
kyu_code_t kyu_sm_tasks_load(kyu_sm_t *self, kyu_err_t *err);
void kyu_sm_tasks_drop(kyu_sm_t *self, queue_t *q);

/* Drops the data of deleted queues (their "gc" records) and the messages of purged ones
 * ("gp" records); idempotent. */
kyu_code_t kyu_sm_collect_garbage(kyu_sm_t *self, kyu_err_t *err);

#endif
