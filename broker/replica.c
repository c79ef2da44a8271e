#include "replica_internal.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define COMPACT_EVERY_MAX 1024 /* entries dropped at least per compaction (at most this) */
#define COMPACT_EVERY_ALONE 64 /* at most this on a node without peers (maybe_compact) */

static entry_t *entry_new(void)
{
    entry_t *e = calloc(1, sizeof *e);
    KYU_ASSERT(e);
    msgpack_sbuffer_init(&e->payload);
    return e;
}

/* Drops an entry (open or proposed) and the bytes it held in the budget. */
static void entry_destroy(kyu_replica_t *self, entry_t **e_p)
{
    entry_t *e = *e_p;
    if (!e)
        return;
    KYU_ASSERT(self->bytes >= e->payload.size);
    self->bytes -= e->payload.size;
    msgpack_sbuffer_destroy(&e->payload);
    free(e->waiters);
    free(e);
    *e_p = NULL;
}

#if KYU_REPLICA_PLANTED_BUG == 7
static char answered_early; /* planted: a waiter answered before its entry committed */
#endif

/* Hands a waiter its result (the done callback owns the waiter from then on). */
static void answer(kyu_replica_t *self, void *waiter, kyu_result_t *res)
{
#if KYU_REPLICA_PLANTED_BUG == 7
    if (waiter == &answered_early)
        return;
#endif
    self->done(self->done_arg, waiter, res);
}

/* Answers every waiter of e with an error result. */
static void fail_waiters(kyu_replica_t *self, entry_t *e, kyu_code_t code, const char *why)
{
    for (size_t i = 0; i < e->n; i++) {
        kyu_result_t res = {.code = code};
        snprintf(res.error, sizeof res.error, "%s", why);
        answer(self, e->waiters[i], &res);
    }
    self->pending -= e->n;
    e->n = 0;
}

/* Fails every proposed entry (e.g. leadership lost): they may still commit under the next
 * leader, which is why the text says so. */
static void fail_proposed(kyu_replica_t *self, kyu_code_t code, const char *why)
{
    while (self->proposed) {
        entry_t *e = self->proposed;
        self->proposed = e->next;
        fail_waiters(self, e, code, why);
        entry_destroy(self, &e);
    }
    self->proposed_tail = NULL;
}

void kyu_replica_say(kyu_replica_t *self, const char *fmt, ...)
{
    char line[2 * KYU_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (self->say)
        self->say(self->say_arg, line);
    else
        fprintf(stderr, "kyu-broker: %s\n", line);
}

void kyu_replica_fail(kyu_replica_t *self, const char *why)
{
    if (!self->failed) {
        self->failed = true;
        snprintf(self->failure, sizeof self->failure, "writes refused: %s", why);
        kyu_replica_say(self, "%s", self->failure);
    }
    fail_proposed(self, KYU_ERR_STORAGE, self->failure);
    if (self->open) {
        fail_waiters(self, self->open, KYU_ERR_STORAGE, self->failure);
        entry_destroy(self, &self->open);
    }
}

static kyu_code_t apply_entry(kyu_replica_t *self, const kyu_raft_entry_t *ce);

const char *kyu_replica_read_only(kyu_replica_t *self)
{
    return self->log_failed ? self->log_why : self->disk_low ? self->disk_why : NULL;
}

/* Entering read-only: the open entry was never proposed (its requests are not applied); the
 * proposed ones may still commit (from this node's log once it is written, or from the
 * other members'), so their requests are answered READ_ONLY saying so: a retry with the
 * same request key is answered as the first attempt was. */
static void go_read_only(kyu_replica_t *self)
{
    char why[KYU_ERR_MSG_MAX];
    snprintf(why, sizeof why,
             "%.150s; this request was accepted before and may or may not be applied: retry "
             "it with its request key",
             kyu_replica_read_only(self));
    fail_proposed(self, KYU_ERR_READ_ONLY, why);
    if (self->open) {
        fail_waiters(self, self->open, KYU_ERR_READ_ONLY, kyu_replica_read_only(self));
        entry_destroy(self, &self->open);
    }
}

void kyu_replica_set_disk_low(kyu_replica_t *self, const char *why)
{
    if ((why != NULL) == self->disk_low) {
        if (why)
            snprintf(self->disk_why, sizeof self->disk_why, "%s", why); /* the latest figure */
        return;
    }
    self->disk_low = why != NULL;
    if (why) {
        snprintf(self->disk_why, sizeof self->disk_why, "%s", why);
        kyu_replica_say(self, "READ-ONLY: %s", why);
        go_read_only(self);
    } else {
        kyu_replica_say(self, "writable again: the data directory has enough free space");
        kyu_replica_flush(self);
    }
}

/* Builds the core's configuration from the peer list (or this node alone). */
static void initial_conf(const kyu_replica_t *self, kyu_raft_conf_t *conf)
{
    memset(conf, 0, sizeof *conf);
    if (self->join)
        return; /* a leader adds this node: its configuration comes with the log */
    if (self->peers.n == 0) {
        conf->n_voters = 1;
        conf->voters[0] = self->node_id;
        return;
    }
    for (size_t i = 0; i < self->peers.n; i++)
        conf->voters[conf->n_voters++] = self->peers.peers[i].id;
}

/* Applies the entries the durable hard state already says are committed, before serving
 * (a restart replays what was durable but not applied). */
static kyu_code_t replay_committed(kyu_replica_t *self, kyu_err_t *err)
{
    while (kyu_raft_has_ready(self->raft)) {
        kyu_raft_ready_t rd;
        kyu_raft_ready(self->raft, &rd);
        KYU_ASSERT(rd.n_entries == 0 && rd.n_msgs == 0 && !rd.snapshot);
        for (size_t i = 0; i < rd.n_committed; i++)
            if (apply_entry(self, &rd.committed[i]) != KYU_OK)
                return kyu_err_set(err, KYU_ERR_STORAGE, "%s", self->failure);
        kyu_raft_advance(self->raft);
    }
    return KYU_OK;
}

/* Takes the seams and settings of cfg (replica.h). */
static void configure(kyu_replica_t *self, const kyu_replica_config_t *cfg)
{
    self->log = cfg->log;
    self->log_arg = cfg->log_arg;
    self->net = cfg->transport;
    self->net_arg = cfg->transport_arg;
    self->clock = cfg->clock;
    self->clock_arg = cfg->clock_arg;
    self->applied = cfg->applied;
    self->applied_arg = cfg->applied_arg;
    self->say = cfg->say;
    self->say_arg = cfg->say_arg;
    self->node_id = cfg->node_id ? cfg->node_id : 1;
    if (cfg->peers)
        self->peers = *cfg->peers;
    self->join = cfg->join;
    self->early_in_clusters = cfg->early_in_clusters;
    /* A node started without a peer list stays alone: a short election timeout. A cluster
     * node keeps the normal one even while it is its only voter, since members may come. */
    self->election_ticks = cfg->election_ticks ? cfg->election_ticks : self->peers.n == 0 ? 2 : 100;
    self->log_window = cfg->log_window ? cfg->log_window : KYU_REPLICA_LOG_WINDOW;
    self->entry_max = cfg->entry_bytes_max ? cfg->entry_bytes_max : KYU_ENTRY_BYTES_MAX;
    self->bytes_max = cfg->bytes_max ? cfg->bytes_max : KYU_REPLICA_BYTES_MAX;
    self->compact_every =
        self->log_window / 16 < COMPACT_EVERY_MAX ? self->log_window / 16 + 1 : COMPACT_EVERY_MAX;
    uint64_t half = self->log_window / 2 + 1;
    kyu_sm_set_write_every(self->sm, cfg->state_write_every ? cfg->state_write_every
                                     : half < UINT32_MAX    ? (uint32_t)half
                                                            : UINT32_MAX);
}

kyu_replica_t *kyu_replica_new(kyu_store_t *store, kyu_sm_t *sm, const kyu_replica_config_t *cfg,
                               kyu_replica_done_fn done, void *done_arg, kyu_err_t *err)
{
    KYU_ASSERT(cfg && cfg->log && cfg->clock);
    kyu_replica_t *self = calloc(1, sizeof *self);
    if (!self) {
        kyu_err_set(err, KYU_ERR_INTERNAL, "out of memory");
        return NULL;
    }
    self->store = store;
    self->sm = sm;
    self->done = done;
    self->done_arg = done_arg;
    configure(self, cfg);
    uint32_t election = self->election_ticks;

    kyu_raft_conf_t conf;
    initial_conf(self, &conf);
    kyu_replica_boot_t boot;
    if (kyu_replica_boot_load(self->log, self->log_arg, sm, &conf, &boot, err) != KYU_OK) {
        free(self);
        return NULL;
    }
    if (boot.reset)
        kyu_replica_say(self,
                        "the state is a snapshot at index %llu (term %llu) the log does not lead "
                        "to: an install was interrupted; the log now starts there",
                        (unsigned long long)boot.snap.index, (unsigned long long)boot.snap.term);
    uint64_t seed = 0;
    if (!self->clock->random_seed(self->clock_arg, &seed)) {
        kyu_replica_boot_free(&boot);
        free(self);
        kyu_err_set(err, KYU_ERR_INTERNAL, "no random seed for the Raft core (getrandom failed)");
        return NULL;
    }
    kyu_raft_config_t rc = {
        .id = self->node_id,
        .group = KYU_GROUP_ID,
        .election_ticks = election,
        .heartbeat_ticks = cfg->heartbeat_ticks ? cfg->heartbeat_ticks
                           : election / 10 > 0  ? election / 10
                                                : 1,
        .random_seed = seed,
        .max_inflight = cfg->max_inflight,
        .max_msg_entries = cfg->max_msg_entries,
        .max_msg_bytes = cfg->max_msg_bytes ? cfg->max_msg_bytes : 1 << 20,
        .max_uncommitted = cfg->max_uncommitted,
        .hard_state = boot.hs,
        .snapshot = boot.has_snap ? &boot.snap : NULL,
        .conf = &conf,
        .entries = boot.entries,
        .n_entries = boot.n_entries,
        .applied = kyu_sm_applied_index(sm),
    };
#if KYU_REPLICA_PLANTED_BUG == 9
    /* Planted: the core restarts at the log's start, not at the state's applied index. */
    rc.applied = boot.has_snap ? boot.snap.index : 0;
#endif
    self->persisted = boot.hs;
    self->raft = kyu_raft_new(&rc);
    kyu_replica_boot_free(&boot);
    if (!self->raft) {
        free(self);
        kyu_err_set(err, KYU_ERR_STORAGE, "the raft state in the log is inconsistent");
        return NULL;
    }
    self->compacted = kyu_raft_first_index(self->raft);
    self->log_last = kyu_raft_last_index(self->raft);
    if (replay_committed(self, err) != KYU_OK) {
        kyu_replica_destroy(&self);
        return NULL;
    }
    /* A lone voter elects itself at once instead of after an election timeout: nobody else
     * can lead, and its term and vote are written by the first Ready before anything it
     * proposes can commit. */
    const kyu_raft_conf_t *c = kyu_raft_conf(self->raft);
    bool alone = c->n_voters == 1 && c->voters[0] == self->node_id;
    for (uint32_t i = 0; alone && i < 4 * election && kyu_raft_role(self->raft) != KYU_RAFT_LEADER;
         i++)
        kyu_raft_tick(self->raft);
    kyu_cluster_time_config_t ct = {.max_skew_ms = cfg ? cfg->max_clock_skew_ms : 0,
                                    .boot_last_index = kyu_raft_last_index(self->raft)};
    self->clock_time =
        kyu_cluster_time_new(&ct, kyu_sm_last_now(sm), self->clock->mono_ms(self->clock_arg));
    KYU_ASSERT(self->clock_time);
    return self;
}

void kyu_replica_destroy(kyu_replica_t **self_p)
{
    kyu_replica_t *self = *self_p;
    if (!self)
        return;
    if (self->proposed || self->open)
        kyu_replica_fail(self, "the broker is shutting down");
    kyu_raft_destroy(&self->raft);
    kyu_cluster_time_destroy(&self->clock_time);
    kyu_early_destroy(&self->early);
    free(self->results);
    free(self);
    *self_p = NULL;
}

uint64_t kyu_replica_now(kyu_replica_t *self)
{
    return kyu_cluster_time_now(self->clock_time, self->clock->wall_ms(self->clock_arg),
                                self->clock->mono_ms(self->clock_arg), kyu_sm_last_now(self->sm));
}

const char *kyu_replica_failure(kyu_replica_t *self)
{
    return self->failed ? self->failure : NULL;
}

bool kyu_replica_fatal(kyu_replica_t *self)
{
    return self->fatal;
}

kyu_code_t kyu_replica_propose(kyu_replica_t *self, const kyu_command_t *cmd, void *waiter,
                               kyu_err_t *err)
{
    if (self->failed)
        return kyu_err_set(err, KYU_ERR_STORAGE, "%s", self->failure);
    if (kyu_raft_role(self->raft) != KYU_RAFT_LEADER || self->transferring)
        return kyu_err_set(err, KYU_ERR_NOT_LEADER, "this node is not the leader");
    if (kyu_replica_read_only(self))
        return kyu_err_set(err, KYU_ERR_READ_ONLY, "%s", kyu_replica_read_only(self));
    /* Backpressure: the bytes held (the open entry, and entries proposed and not applied:
     * what a slow quorum lets pile up) and the requests waiting are bounded. */
    if (self->pending >= KYU_REPLICA_PENDING_MAX || self->bytes >= self->bytes_max)
        return kyu_err_set(err, KYU_ERR_BUSY,
                           "%zu requests (%zu bytes) are waiting for replication; retry later",
                           self->pending, self->bytes);
    if (!self->open)
        self->open = entry_new();
    entry_t *e = self->open;
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 64;
        void **w = realloc(e->waiters, cap * sizeof *w);
        if (!w)
            return kyu_err_set(err, KYU_ERR_BUSY, "out of memory");
        e->waiters = w;
        e->cap = cap;
    }
    size_t before = e->payload.size;
    kyu_command_encode(cmd, &e->payload);
    if (before > 0 && e->payload.size > self->entry_max) {
        /* The command does not fit: the open entry is full. An entry is never built past
         * entry_max (plus one command, alone in its entry), which a peer's transport accepts
         * (main.c sizes its frames from KYU_ENTRY_BYTES_MAX). */
        e->payload.size = before;
        if (self->ready_out)
            return kyu_err_set(err, KYU_ERR_BUSY,
                               "the next entry is full while the log syncs; retry later");
        e->lazy = false;
        kyu_replica_flush(self); /* proposes the full entry; the command goes into the next */
        return kyu_replica_propose(self, cmd, waiter, err);
    }
    self->bytes += e->payload.size - before;
    if (e->n == 0)
        e->first_serial = kyu_early_serial(self);
    e->lazy = (e->n == 0 || e->lazy) && cmd->early;
    kyu_early_note(self, cmd);
    e->waiters[e->n++] = waiter;
    self->pending++;
    if (e->payload.size >= self->entry_max) {
        e->lazy = false;
        kyu_replica_flush(self);
    }
    return KYU_OK;
}

/* Hands the open entry to the core as one Raft entry. */
static void propose_open(kyu_replica_t *self)
{
    entry_t *e = self->open;
    self->open = NULL;
    uint64_t leader = KYU_RAFT_NONE;
    kyu_raft_err_t rc =
        kyu_raft_propose(self->raft, e->payload.data, e->payload.size, &e->index, &leader);
    if (rc != KYU_RAFT_OK) {
        fail_waiters(self, e, rc == KYU_RAFT_ERR_NOT_LEADER ? KYU_ERR_NOT_LEADER : KYU_ERR_BUSY,
                     rc == KYU_RAFT_ERR_NOT_LEADER ? "this node is not the leader"
                                                   : "the leader is handing leadership over, "
                                                     "or too many entries wait for a quorum: "
                                                     "retry");
        entry_destroy(self, &e);
        return;
    }
    e->term = kyu_raft_term(self->raft);
    if (self->proposed_tail)
        self->proposed_tail->next = e;
    else
        self->proposed = e;
    self->proposed_tail = e;
}

/* The number of commands in an entry's payload (for an observer: followers have no waiters
 * to count them by). */
static size_t count_commands(const void *data, size_t len)
{
    size_t off = 0, n = 0;
    kyu_command_t cmd;
    kyu_err_t err;
    while (off < len && kyu_command_decode(data, len, &off, &cmd, &err) == KYU_OK)
        n++;
    return n;
}

/* Whether committed entry ce is proposed entry p: the same index and term (at an index, an
 * entry of another term may commit instead, proposed by another leader). */
static bool same_entry(const entry_t *p, const kyu_raft_entry_t *ce)
{
#if KYU_REPLICA_PLANTED_BUG == 8
    return p->index == ce->index; /* planted: the term is not compared */
#else
    return p->index == ce->index && p->term == ce->term;
#endif
}

/* Applies one committed entry; answers its waiters when this node proposed it at the same
 * (term, index). */
static kyu_code_t apply_entry(kyu_replica_t *self, const kyu_raft_entry_t *ce)
{
    entry_t *e = NULL;
    while (self->proposed && self->proposed->index <= ce->index) {
        entry_t *p = self->proposed;
        self->proposed = p->next;
        if (!self->proposed)
            self->proposed_tail = NULL;
        if (same_entry(p, ce)) {
            e = p;
            break;
        }
        fail_waiters(self, p, KYU_ERR_NOT_LEADER,
                     "leadership changed before the request committed; it was not applied");
        entry_destroy(self, &p);
    }
    const void *data = ce->type == KYU_RAFT_ENTRY_NORMAL ? ce->data : NULL;
    size_t len = ce->type == KYU_RAFT_ENTRY_NORMAL ? ce->len : 0;
    size_t n = 0;
    kyu_err_t err;
    uint64_t index = ce->index;
#if KYU_REPLICA_PLANTED_BUG == 9
    /* Planted: the replica numbers what it applies itself (and its boot restarts the core at
     * the log's start): entries already in the state are applied again. */
    index = kyu_sm_applied_index(self->sm) + 1;
#endif
    if (index <= kyu_sm_applied_index(self->sm)) {
        /* Already in the state: a snapshot installed from a member that had applied further
         * than the snapshot's index (snapshot.c). Only followers install, so nobody waits. */
        if (e) {
            fail_waiters(self, e, KYU_ERR_NOT_LEADER, "the request's entry was superseded");
            entry_destroy(self, &e);
        }
        return KYU_OK;
    }
    bool meta = true;
#if KYU_REPLICA_PLANTED_BUG == 2
    meta = self->node_id % 2 != 0; /* planted: even nodes apply without term and configuration */
#endif
    if (meta)
        kyu_sm_set_entry_meta(self->sm, ce->term, ce->type == KYU_RAFT_ENTRY_CONF ? ce->data : NULL,
                              ce->type == KYU_RAFT_ENTRY_CONF ? ce->len : 0);
    /* Results are made for the waiters, and for every command when an observer looks. */
    size_t want = e ? e->n : 0;
    if (self->applied) {
        size_t all = count_commands(data, len);
        want = all > want ? all : want;
    }
    bool own = want > 0 && !self->results_busy; /* answering may apply more (a flush) */
    if (own && want > self->results_cap) {
        size_t cap = want > 2 * self->results_cap ? want : 2 * self->results_cap;
        free(self->results);
        self->results = calloc(cap, sizeof *self->results); /* all clear, as after each use */
        KYU_ASSERT(self->results);
        self->results_cap = cap;
    }
    kyu_result_t *results = own ? self->results : want ? calloc(want, sizeof *results) : NULL;
    KYU_ASSERT(!want || results);
    self->results_busy |= own;
    kyu_code_t rc = kyu_sm_apply(self->sm, index, data, len, results, want, &n, &err);
    if (rc != KYU_OK) {
        for (size_t i = 0; i < want; i++)
            kyu_result_clear(&results[i]);
        if (own)
            self->results_busy = false;
        else
            free(results);
        if (e) {
            fail_waiters(self, e, KYU_ERR_STORAGE, err.msg);
            entry_destroy(self, &e);
        }
        /* The state in memory is no longer what the state database and the log say (a
         * write of the state failed, or an entry did not apply): the broker stops, and a
         * restart rebuilds the state from the database and the log, losing nothing the log
         * holds. A full disk gets there only past --disk-free-min (main.c). */
        self->fatal = true;
        kyu_replica_fail(self, err.msg);
        kyu_replica_say(self, "the state machine failed: the broker stops; a restart rebuilds "
                              "its state from the log");
        return rc;
    }
    if (self->applied)
        self->applied(self->applied_arg, ce, results, n);
    if (e) {
#if KYU_REPLICA_PLANTED_BUG != 8
        KYU_ASSERT(n == e->n); /* one result per command, one command per waiter */
#endif
        kyu_early_done(self, e->first_serial + e->n);
        for (size_t i = 0; i < e->n; i++)
            answer(self, e->waiters[i], &results[i]);
        self->pending -= e->n;
        entry_destroy(self, &e);
    }
    for (size_t i = 0; i < n; i++)
        kyu_result_clear(&results[i]);
    if (own)
        self->results_busy = false;
    else
        free(results);
    return KYU_OK;
}

static void send_msgs(kyu_replica_t *self, bool after_persist)
{
    for (size_t i = 0; self->net && self->net->send && i < self->rd.n_msgs; i++)
        if (self->rd.msgs[i].after_persist == after_persist)
            self->net->send(self->net_arg, &self->rd.msgs[i]);
}

/* The log's files: never past what the state database's tables hold. Its writes carry no
 * WAL (store.h), so a kill -9 or a power loss takes the state back to its tables, and a
 * restart applies again every entry after them. The files are compacted to a descriptor of
 * an earlier core compaction (flog_next) once the tables hold it; when they lag by more than
 * KYU_REPLICA_DURABLE_LAG windows, the next state write flushes them (RocksDB flushes by
 * itself when a memtable fills, as under a send load; a load whose messages are deleted
 * before they are written fills none). Each such flush of small memtables adds tables to
 * merge (compaction), so the lag is let grow to a few windows first. */
static void compact_log_files(kyu_replica_t *self, uint64_t applied)
{
    if (!self->flog_next_set)
        return;
    if (self->flog_next.index <= kyu_sm_durable_index(self->sm)) {
        self->log->compact(self->log_arg, &self->flog_next);
        self->flog_next_set = false;
    } else if (applied - self->flog_next.index > KYU_REPLICA_DURABLE_LAG * self->log_window) {
        kyu_sm_want_durable(self->sm, self->flog_next.index);
    }
}

/* Lets the core drop applied entries from memory (keeping a window for slow followers)
 * and the storage thread drop them from disk. The snapshot data is only a descriptor. */
static void maybe_compact(kyu_replica_t *self)
{
    uint64_t applied = kyu_sm_applied_index(self->sm);
    /* A node started without peers never has a follower (no transport: no member can be
     * added), so it keeps no window: its entries go once the state database holds them, a few
     * at a time. The window (some 2,000 entries, 100 MiB, under a send load: the entries
     * were dropped 1,024 at a time) was the most of a fresh node's heap, first touched
     * during its first 100,000 messages (page faults ~15% of the event loop). */
    bool alone = self->peers.n == 0;
    if (!alone && applied < self->compact_checked + self->compact_every / 4 + 1)
        return;
    self->compact_checked = applied;
    /* Keep the last KYU_REPLICA_LOG_WINDOW applied entries, or fewer when they hold more
     * than KYU_REPLICA_LOG_WINDOW_BYTES: the core keeps its log in memory. */
    uint64_t first = kyu_raft_first_index(self->raft), keep = applied;
    size_t bytes = 0;
    while (!alone && keep > first && applied - keep < self->log_window &&
           bytes < KYU_REPLICA_LOG_WINDOW_BYTES) {
        const kyu_raft_entry_t *e = kyu_raft_entry_at(self->raft, keep);
        bytes += e ? e->len : 0;
        keep--;
    }
    /* The core: never past what the state database holds (a restart applies again every
     * entry after it: the state machine writes behind, sm_buffer.c). */
    uint64_t persisted = kyu_sm_persisted_index(self->sm);
    uint64_t upto = keep < persisted ? keep : persisted; /* entries up to here go */
    uint64_t every = alone && self->compact_every > COMPACT_EVERY_ALONE ? COMPACT_EVERY_ALONE
                                                                        : self->compact_every;
    if (upto >= self->compacted + every) {
        uint8_t desc[8];
        kyu_put_be64(desc, upto);
        if (kyu_raft_compact(self->raft, upto, desc, sizeof desc) != KYU_RAFT_OK)
            return;
        const kyu_raft_snapshot_t *s = kyu_raft_snapshot(self->raft);
        kyu_log_snapshot_t ls = {.found = true, .index = s->index, .term = s->term};
        ls.conf_len = kyu_raft_conf_encode(&s->conf, ls.conf, sizeof ls.conf);
        KYU_ASSERT(ls.conf_len > 0);
        if (!self->flog_next_set) {
            self->flog_next = ls;
            self->flog_next_set = true;
        }
        self->compacted = upto;
    }
    compact_log_files(self, applied);
}

/* Applies the Ready's committed entries up to index upto, in order. */
static void apply_committed(kyu_replica_t *self, uint64_t upto)
{
    while (self->rd_applied < self->rd.n_committed && !self->failed &&
           self->rd.committed[self->rd_applied].index <= upto)
        apply_entry(self, &self->rd.committed[self->rd_applied++]);
}

/* The second half of a Ready round, once its writes are durable. */
static void finish_ready(kyu_replica_t *self)
{
    send_msgs(self, true);
    apply_committed(self, UINT64_MAX);
    if (self->failed)
        return; /* the Ready stays out: nothing more is applied or sent */
    kyu_raft_advance(self->raft);
    self->ready_out = false;
    self->await_token = 0;
    maybe_compact(self);
}

static bool hs_differs(kyu_raft_hard_state_t a, kyu_raft_hard_state_t b)
{
    return a.term != b.term || a.vote != b.vote || a.commit != b.commit;
}

/* Whether the Ready's write is made on this thread (log->write_now) instead of handed to the
 * storage thread: on a lone voter (nothing to send, no follower's answer to take meanwhile)
 * and on a follower (below; a leader of a cluster takes its followers' answers meanwhile),
 * for a small round with little to apply (W1, LAT, a single request: the loop would only wait
 * for the report; saved: the hand-off to the storage thread and its report back, a wake-up
 * of an idle thread each). A large round (many requests gathered: W2) still goes to the
 * storage thread, so that its apply overlaps the next round's fsync. */
static bool write_here(const kyu_replica_t *self, const kyu_raft_ready_t *rd, bool truncate)
{
    const kyu_raft_conf_t *c = kyu_raft_conf(self->raft);
    bool lone = c->n_voters == 1 && c->n_learners == 0 && c->voters[0] == self->node_id;
    /* A follower too: its answer to the leader (the append's acknowledgement) is sent right
     * after the write, from the loop, without the storage thread's two wake-ups on the way
     * (LAT on three nodes: the first answer decides the commit). Meanwhile it has nothing to
     * do but step what arrives, which waits in the socket and goes into the next Ready as it
     * would have anyway (one Ready at a time). */
    bool follower = kyu_raft_role(self->raft) == KYU_RAFT_FOLLOWER;
    if (!self->log->write_now || truncate || !(lone ? rd->n_msgs == 0 : follower))
        return false;
    size_t bytes = 0;
    for (size_t i = 0; i < rd->n_entries; i++)
        bytes += rd->entries[i].len;
    for (size_t i = 0; i < rd->n_committed; i++)
        bytes += rd->committed[i].len;
    return bytes <= KYU_REPLICA_WRITE_HERE_MAX;
}

/* Takes one Ready: sends what may go at once and hands the writes to the storage thread (or
 * writes a small one of a lone voter or a follower itself: write_here). Returns false when the
 * round must wait for the storage thread. */
static bool start_ready(kyu_replica_t *self)
{
    kyu_raft_ready(self->raft, &self->rd);
    self->ready_out = true;
    self->rd_applied = 0;
    kyu_raft_ready_t *rd = &self->rd;
    send_msgs(self, false);
    /* Entries already durable here (written by an earlier round) are applied while this
     * round's write is in flight: the fsync of the next batch overlaps the apply of the last
     * one. Committed entries are durable on a majority, so their results may go out now;
     * only entries of this round's own write wait for it. */
    uint64_t durable = self->log_last;
    if (rd->snapshot) {
        if (!self->net || !self->net->install) {
            self->fatal = true;
            kyu_replica_fail(
                self, "this node is too far behind the leader's log and needs a snapshot, and "
                      "this broker has no snapshot transfer");
            return false;
        }
        self->installing = true;
        self->install_tries = 0;
        kyu_replica_start_install(self);
        return false;
    }
    bool promise = rd->n_entries > 0 || rd->hard_state.term != self->persisted.term ||
                   rd->hard_state.vote != self->persisted.vote;
    for (size_t i = 0; i < rd->n_msgs && !promise; i++)
        promise = rd->msgs[i].after_persist;
    /* A change of the commit index alone is not written (it would cost an fsync of its own):
     * it rides with the next write, and a restart takes the applied index as the lower bound
     * of the commit (replica_boot.c). Term and vote are written before anything relies on
     * them. */
    bool term_vote =
        rd->hard_state.term != self->persisted.term || rd->hard_state.vote != self->persisted.vote;
    bool write_hs = hs_differs(rd->hard_state, self->persisted) && (term_vote || rd->n_entries);
    if (rd->n_entries > 0 || write_hs) {
        kyu_log_entry_t stack[16], *ents = stack;
        if (rd->n_entries > 16) {
            ents = malloc(rd->n_entries * sizeof *ents);
            KYU_ASSERT(ents);
        }
        for (size_t i = 0; i < rd->n_entries; i++)
            ents[i] = (kyu_log_entry_t){rd->entries[i].index, rd->entries[i].term,
                                        (int)rd->entries[i].type, rd->entries[i].data,
                                        rd->entries[i].len};
        kyu_log_hard_state_t hs = {true, rd->hard_state.term, rd->hard_state.vote,
                                   rd->hard_state.commit};
        uint64_t token = 0;
        kyu_err_t err;
        bool truncate = rd->n_entries > 0 && rd->entries[0].index <= self->log_last;
        kyu_code_t rc = KYU_ERR_BUSY;
        if (write_here(self, rd, truncate)) {
            rc = self->log->write_now(self->log_arg, write_hs ? &hs : NULL, ents, rd->n_entries,
                                      &err);
            if (rc != KYU_OK && rc != KYU_ERR_BUSY) /* the storage thread writes it again */
                kyu_replica_say(self, "writing the log failed (%.150s): trying again", err.msg);
        }
        bool written = rc == KYU_OK; /* durable already: nothing to wait for */
        if (!written)
            rc = self->log->write(self->log_arg, write_hs ? &hs : NULL, ents, rd->n_entries,
                                  truncate, &token, &err);
        if (ents != stack)
            free(ents);
        if (rc != KYU_OK) {
            kyu_replica_fail(self, err.msg);
            return false;
        }
        if (write_hs)
            self->persisted = rd->hard_state;
        if (rd->n_entries > 0)
            self->log_last = rd->entries[rd->n_entries - 1].index;
        if (promise && !written) {
            self->await_token = token;
            apply_committed(self, durable);
            return false;
        }
    }
    finish_ready(self);
    return true;
}

/* Below the free-space minimum a member of a cluster takes no Ready (it writes, acknowledges
 * and sends nothing: the others go on without it). The only voter goes on taking them: only
 * its own writes reach its log, and proposals are refused, so it writes no more than an
 * election's entry and hard state, and still elects itself at a start and serves reads. */
static bool frozen(const kyu_replica_t *self)
{
    const kyu_raft_conf_t *c = kyu_raft_conf(self->raft);
    return self->disk_low &&
           !(c->n_voters == 1 && c->n_learners == 0 && kyu_raft_conf_is_voter(c, self->node_id));
}

/* A commit learned while a Ready's write is out (a follower's answer): the entries that
 * were durable here before that write are applied and answered now, not after the write
 * (the core hands them out only then: kyu_raft_take_committed). Only once the Ready's own
 * committed entries are all applied, so the order holds. Not while read-only (a write failed, or
 * the disk is low): the node then applies nothing more until it is writable again. */
static void apply_early(kyu_replica_t *self)
{
    if (!self->ready_out || self->installing || self->failed || self->early_busy ||
        self->rd_applied < self->rd.n_committed || self->log_failed || frozen(self))
        return;              /* read-only: as a paused process, nothing more is applied */
    self->early_busy = true; /* answering may flush again */
    kyu_raft_entry_t *ents;
    size_t n;
    while (!self->failed && kyu_raft_take_committed(self->raft, &ents, &n)) {
        for (size_t i = 0; i < n && !self->failed; i++)
            apply_entry(self, &ents[i]);
        kyu_raft_entries_free(ents, n);
    }
    self->early_busy = false;
}

void kyu_replica_flush(kyu_replica_t *self)
{
    apply_early(self);
    while (!self->failed && !self->ready_out && !frozen(self)) {
        /* The open entry goes into the same Ready as the commits the core has: its write is
         * handed to the storage thread first and the commits are applied while it syncs
         * (start_ready), so fsync and apply overlap. */
        if (self->open) {
            if (kyu_raft_role(self->raft) == KYU_RAFT_LEADER) {
                /* Early receives alone wait for the next command (a consumer's DELETE comes
                 * next: the lease and the delete share one fsync) or the next tick. */
                if (!self->open->lazy)
                    propose_open(self);
            } else {
                fail_waiters(self, self->open, KYU_ERR_NOT_LEADER, "this node is not the leader");
                entry_destroy(self, &self->open);
            }
        }
        if (!kyu_raft_has_ready(self->raft))
            break;
        if (!start_ready(self))
            break;
    }
    /* Leadership lost: what was proposed may never commit here. */
    if (!self->ready_out && self->proposed && kyu_raft_role(self->raft) != KYU_RAFT_LEADER)
        fail_proposed(self, KYU_ERR_NOT_LEADER,
                      "leadership lost before the request committed; it may or may not be "
                      "applied");
}

#if KYU_REPLICA_PLANTED_BUG == 7
/* Planted: a send is answered once its entry is durable here, before a majority has it. */
static void answer_sends_early(kyu_replica_t *self)
{
    for (entry_t *e = self->proposed; e && e->index <= self->log_last; e = e->next) {
        size_t off = 0;
        for (size_t i = 0; i < e->n; i++) {
            kyu_command_t cmd;
            kyu_err_t err;
            if (kyu_command_decode(e->payload.data, e->payload.size, &off, &cmd, &err) != KYU_OK)
                break;
            if (cmd.type != KYU_CMD_SEND || e->waiters[i] == &answered_early)
                continue;
            kyu_result_t res = {.code = KYU_OK, .n_ids = cmd.n};
            for (size_t j = 0; j < cmd.n; j++)
                memcpy(res.ids[j], cmd.ids[j], sizeof res.ids[j]);
            self->done(self->done_arg, e->waiters[i], &res);
            e->waiters[i] = &answered_early;
        }
    }
}
#endif

void kyu_replica_on_log_event(kyu_replica_t *self, const kyu_log_event_t *ev)
{
    if (ev->failed) {
        /* The storage thread keeps the write and tries it again (log.h): until it succeeds
         * the Ready stays out, so nothing of it is acknowledged, applied or promised to a
         * peer (a follower does not count toward the leader's majority). */
        if (!self->log_failed) {
            self->log_failed = true;
            snprintf(self->log_why, sizeof self->log_why,
                     "writing the log failed (%.120s): writes are refused, reads served, until "
                     "it is written again (tried every second once the disk has room)",
                     ev->error);
            kyu_replica_say(self, "READ-ONLY: %s", self->log_why);
            go_read_only(self);
        }
        return;
    }
    if (self->log_failed) {
        self->log_failed = false;
        kyu_replica_say(self, "writable again: the log write that failed is written and synced");
    }
#if KYU_REPLICA_PLANTED_BUG == 7
    if (self->ready_out && self->await_token && ev->index >= self->await_token)
        answer_sends_early(self);
#endif
    if (self->ready_out && self->await_token && ev->index >= self->await_token)
        finish_ready(self);
    kyu_replica_flush(self);
}

/* Lets the cluster's time learn from what was applied, and a leader whose clock is ahead
 * of it hand leadership over (broker/cluster_time.h). */
static void check_clock(kyu_replica_t *self)
{
    const kyu_raft_t *r = self->raft;
    uint64_t ms_index = 0, ms_term = 0;
    kyu_sm_last_now_entry(self->sm, &ms_index, &ms_term);
    kyu_cluster_time_obs_t o = {.wall_ms = self->clock->wall_ms(self->clock_arg),
                                .mono_ms = self->clock->mono_ms(self->clock_arg),
                                .applied_ms = kyu_sm_last_now(self->sm),
                                .applied_index = kyu_sm_applied_index(self->sm),
                                .applied_ms_index = ms_index,
                                .applied_ms_term = ms_term,
                                .last_index = kyu_raft_last_index(r),
                                .commit_index = kyu_raft_commit(r),
                                .leader = kyu_raft_role(r) == KYU_RAFT_LEADER,
                                .term = kyu_raft_term(r),
                                .voters = kyu_raft_conf(r)->n_voters};
    if (kyu_cluster_time_tick(self->clock_time, &o) == KYU_CLUSTER_TIME_HAND_OVER &&
        !self->transferring)
        kyu_replica_transfer(self);
}

void kyu_replica_tick(kyu_replica_t *self)
{
    kyu_raft_tick(self->raft);
    check_clock(self);
    if (self->installing && !self->install_running && !self->failed &&
        ++self->install_wait > self->election_ticks)
        kyu_replica_start_install(self);
    /* The core gives a transfer up after an election timeout; so does the replica, after
     * three, to serve again if it still leads. */
    if (self->transferring && (kyu_raft_role(self->raft) != KYU_RAFT_LEADER ||
                               ++self->transfer_ticks > 3 * self->election_ticks))
        self->transferring = false;
    if (self->open)
        self->open->lazy = false; /* early receives wait one tick at most (kyu_replica_flush) */
    kyu_replica_flush(self);
}

void kyu_replica_step(kyu_replica_t *self, const kyu_raft_msg_t *msg)
{
    kyu_raft_step(self->raft, msg);
}
