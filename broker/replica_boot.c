/* replica_boot: rebuilds the Raft core's start configuration from the log database.
 *
 * The core keeps its log in memory from its last snapshot on; at startup it is given the
 * durable hard state, the snapshot record (where the log starts: index, term, membership)
 * and the entries after it. The snapshot's data is only a descriptor (the applied index):
 * the state machine itself is in the state database, synced before each compaction. Of the
 * entries up to the state's applied index it keeps only the window the core's compaction
 * would keep (collect_trim): with a backlog the files hold hundreds of megabytes of them.
 *
 * A data directory written before Raft (one node, every entry term 1, no hard state, log
 * compacted without a record) is read as: commit = the last entry (durable was committed),
 * snapshot at the entry before the first one left.
 */
#include "replica_internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    kyu_raft_entry_t *entries; /* entries[first..n): the entries kept */
    size_t first, n, cap;
    uint64_t applied;                /* the state's applied index */
    uint64_t window, window_bytes;   /* applied entries kept (replica.c's maybe_compact) */
    size_t n_applied, applied_bytes; /* the kept entries up to applied: their count, bytes */
    bool dropped, pinned;            /* entries were dropped; no more may be (a conf entry) */
    uint64_t drop_index, drop_term;  /* the last one dropped */
} collect_t;

/* Drops the first entries kept while more applied ones are kept than the window holds: the
 * core would drop them from memory at its first compaction (replica.c, maybe_compact), and
 * with a backlog the log's files hold hundreds of megabytes of them (each held twice at boot,
 * here and in the core). Never the entry at the applied index (the state's term is checked
 * against it) nor one after it, and never a conf entry or one after it: the core's snapshot
 * record then starts where the log's does not, with the membership of the log's. */
static void collect_trim(collect_t *c)
{
    while (!c->pinned && c->n_applied > 0 && c->entries[c->first].index < c->applied &&
           (c->n_applied > c->window || c->applied_bytes > c->window_bytes)) {
        kyu_raft_entry_t *e = &c->entries[c->first];
        if (e->type == KYU_RAFT_ENTRY_CONF) {
            c->pinned = true;
            break;
        }
        c->dropped = true;
        c->drop_index = e->index;
        c->drop_term = e->term;
        c->n_applied--;
        c->applied_bytes -= e->len;
        free(e->data);
        c->first++;
    }
    if (c->first > 0 && c->first >= c->n / 2) { /* the dropped slots: reused */
        memmove(c->entries, c->entries + c->first, (c->n - c->first) * sizeof *c->entries);
        c->n -= c->first;
        c->first = 0;
    }
}

static kyu_code_t collect_one(void *arg, uint64_t index, uint64_t term, int type,
                              const void *payload, size_t len, kyu_err_t *err)
{
    collect_t *c = arg;
    if (type < KYU_ENTRY_NORMAL || type > KYU_ENTRY_CONF)
        return kyu_err_set(err, KYU_ERR_STORAGE, "log entry %llu has unknown type %d",
                           (unsigned long long)index, type);
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 256;
        kyu_raft_entry_t *p = realloc(c->entries, cap * sizeof *p);
        if (!p)
            return kyu_err_set(err, KYU_ERR_INTERNAL, "out of memory reading the log");
        c->entries = p;
        c->cap = cap;
    }
    kyu_raft_entry_t *e = &c->entries[c->n];
    *e = (kyu_raft_entry_t){.term = term, .index = index, .type = (kyu_raft_entry_type_t)type};
    if (len) {
        e->data = malloc(len);
        if (!e->data)
            return kyu_err_set(err, KYU_ERR_INTERNAL, "out of memory reading the log");
        memcpy(e->data, payload, len);
        e->len = len;
    }
    c->n++;
    if (index <= c->applied) {
        c->n_applied++;
        c->applied_bytes += len;
        collect_trim(c);
    }
    return KYU_OK;
}

void kyu_replica_boot_free(kyu_replica_boot_t *b)
{
    for (size_t i = 0; i < b->n_entries; i++)
        free(b->entries[i].data);
    free(b->entries);
    memset(b, 0, sizeof *b);
}

/* The state database is at (applied, aterm) but the log neither holds that entry nor starts
 * there: the log is replaced by a snapshot record at the state's applied index. */
static kyu_code_t reset_to_state(const kyu_log_ops_t *log, void *log_arg, const kyu_sm_t *sm,
                                 const kyu_raft_conf_t *initial, kyu_replica_boot_t *b,
                                 kyu_err_t *err)
{
    uint64_t applied = kyu_sm_applied_index(sm), aterm = kyu_sm_applied_term(sm);
    for (size_t i = 0; i < b->n_entries; i++)
        free(b->entries[i].data);
    free(b->entries);
    b->entries = NULL;
    b->n_entries = 0;
    const uint8_t *conf = NULL;
    size_t conf_len = kyu_sm_raft_conf(sm, &conf);
    kyu_log_snapshot_t ls = {.found = true, .index = applied, .term = aterm};
    if (conf_len == 0 || !kyu_raft_conf_decode(conf, conf_len, &b->snap.conf))
        b->snap.conf = *initial;
    ls.conf_len = kyu_raft_conf_encode(&b->snap.conf, ls.conf, sizeof ls.conf);
    b->snap.index = applied;
    b->snap.term = aterm;
    kyu_put_be64(b->snap_desc, applied);
    b->has_snap = true;
    /* The vote is kept unless the term moves past it: a vote is never forgotten. */
    if (b->hs.term < aterm)
        b->hs = (kyu_raft_hard_state_t){.term = aterm};
    b->hs.commit = applied;
    kyu_log_hard_state_t hs = {true, b->hs.term, b->hs.vote, b->hs.commit};
    b->reset = true;
    return log->reset(log_arg, &ls, &hs, err);
}

kyu_code_t kyu_replica_boot_load(const kyu_log_ops_t *log, void *log_arg, const kyu_sm_t *sm,
                                 const kyu_raft_conf_t *initial, kyu_replica_boot_t *b,
                                 kyu_err_t *err)
{
    return kyu_replica_boot_load_window(log, log_arg, sm, initial, KYU_REPLICA_LOG_WINDOW,
                                        KYU_REPLICA_LOG_WINDOW_BYTES, b, err);
}

kyu_code_t kyu_replica_boot_load_window(const kyu_log_ops_t *log, void *log_arg, const kyu_sm_t *sm,
                                        const kyu_raft_conf_t *initial, uint64_t window,
                                        uint64_t window_bytes, kyu_replica_boot_t *b,
                                        kyu_err_t *err)
{
    uint64_t applied = kyu_sm_applied_index(sm), aterm = kyu_sm_applied_term(sm);
    memset(b, 0, sizeof *b);
    kyu_log_hard_state_t hs;
    kyu_log_snapshot_t snap;
    uint64_t first = 0, last = 0;
    if (log->load_state(log_arg, &hs, &snap, err) || log->first_index(log_arg, &first, err) ||
        log->last_index(log_arg, &last, err))
        return KYU_ERR_STORAGE;
    uint64_t snap_index = 0;
    if (snap.found) {
        snap_index = snap.index;
        b->snap.term = snap.term;
        if (!kyu_raft_conf_decode(snap.conf, snap.conf_len, &b->snap.conf))
            return kyu_err_set(err, KYU_ERR_STORAGE, "the raft snapshot record is corrupt");
    } else {
        /* Pre-Raft data: every entry had term 1. */
        snap_index = first ? first - 1 : applied;
        b->snap.term = snap_index ? 1 : 0;
        b->snap.conf = *initial;
    }
    b->snap.index = snap_index;
    b->snap.data = b->snap_desc;
    b->snap.len = sizeof b->snap_desc;
    kyu_put_be64(b->snap_desc, snap_index);
    b->has_snap = snap_index > 0;
    if (applied < snap_index)
        return kyu_err_set(err, KYU_ERR_STORAGE,
                           "the state is at index %llu but the log starts after %llu: the state "
                           "database was lost; restore it or start this node empty",
                           (unsigned long long)applied, (unsigned long long)snap_index);
    collect_t c = {.applied = applied, .window = window, .window_bytes = window_bytes};
    kyu_code_t rrc =
        last > snap_index ? log->replay(log_arg, snap_index + 1, collect_one, &c, err) : KYU_OK;
    if (c.first > 0)
        memmove(c.entries, c.entries + c.first, (c.n - c.first) * sizeof *c.entries);
    b->entries = c.entries;
    b->n_entries = c.n - c.first;
    c.n -= c.first;
    if (rrc != KYU_OK) {
        kyu_replica_boot_free(b);
        return KYU_ERR_STORAGE;
    }
    if (c.dropped) { /* the core's log starts after the last entry dropped */
        snap_index = c.drop_index;
        b->snap.index = snap_index;
        b->snap.term = c.drop_term;
        kyu_put_be64(b->snap_desc, snap_index);
        b->has_snap = true;
    }
    if (c.n && c.entries[0].index != snap_index + 1) {
        kyu_err_set(err, KYU_ERR_STORAGE, "the log is corrupt: it starts at %llu, not %llu",
                    (unsigned long long)c.entries[0].index, (unsigned long long)(snap_index + 1));
        kyu_replica_boot_free(b);
        return KYU_ERR_STORAGE;
    }
    uint64_t log_last = snap_index + c.n;
    if (hs.found) {
        b->hs = (kyu_raft_hard_state_t){hs.term, hs.vote, hs.commit};
    } else {
        /* Pre-Raft data: durable was committed. */
        b->hs = (kyu_raft_hard_state_t){.term = c.n ? c.entries[c.n - 1].term : b->snap.term,
                                        .commit = log_last};
    }
    /* A state that records its term must be on the log: at the snapshot record or an entry
     * with that term. Otherwise it came from an install the log did not follow yet. */
    bool holds = applied == snap_index ? b->snap.term == aterm
                 : applied < snap_index || applied > log_last
                     ? false
                     : c.entries[applied - snap_index - 1].term == aterm;
    if (aterm != 0 && applied >= snap_index && !holds) {
        kyu_code_t rc = reset_to_state(log, log_arg, sm, initial, b, err);
        if (rc != KYU_OK)
            kyu_replica_boot_free(b);
        return rc;
    }
    /* The commit index is written without waiting when only it changed (replica.c): entries
     * applied before a crash were committed even if the record of it was lost. */
    if (b->hs.commit < applied)
        b->hs.commit = applied;
    if (b->hs.commit > log_last) {
        kyu_err_set(err, KYU_ERR_STORAGE,
                    "the log ends at %llu but entries up to %llu were committed or applied",
                    (unsigned long long)log_last, (unsigned long long)b->hs.commit);
        kyu_replica_boot_free(b);
        return KYU_ERR_STORAGE;
    }
    return KYU_OK;
}
