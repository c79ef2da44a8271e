/* replica_early: the leader's overlay for receives answered before their lease is durable
 * (op_receive_early.c has the state machine's half; docs/ARCHITECTURE.md, "Receive").
 *
 * Every command the leader proposes is noted here with its serial (the count of commands
 * proposed before it), until its entry is applied:
 *   - an early RECEIVE holds the messages it leased (they are not offered again);
 *   - a DELETE or CHANGE_VISIBILITY holds the messages its handles name (a client is never
 *     handed a message whose delete or change is already proposed);
 *   - a SEND or PUBLISH without group ids, membership and topic commands change no message
 *     a receive could take: nothing;
 *   - every other command (a durable RECEIVE, a worker session's push, PURGE_QUEUE,
 *     RELEASE_LEASES, attribute changes, redrive and retention, a grouped SEND) blocks its
 *     queue, or every queue when it names none or one that does not exist yet: the queue is
 *     then received from the durable way until the command is applied. A REDRIVE_STEP blocks
 *     every queue: it moves messages out of its dead-letter queue into others.
 * So while an early receive's entry waits, nothing but sends and other early receives (whose
 * messages it did not choose) is applied to its queue ahead of it, and apply records exactly
 * the leases answered. Under the in-flight limit (which apply checks again), what may be in
 * flight at apply and is not counted in the index at the receive's time counts too: the
 * leases answered early, and each message a CHANGE_VISIBILITY in flight names (applied at its
 * own, earlier time while the lease still runs, it extends a lease that would have ended by
 * the receive's). The overlay is the leader's alone and belongs to a term: a new term
 * (this node lost leadership, or won it again) empties it, and a node serves only once it
 * applied an entry of its own term, so every entry of an earlier term (an old leader's
 * RECEIVE included) is applied before it chooses anything. Nothing of it is in the state, the
 * state digest or snapshots. Records are dropped when an entry of this node is applied, with
 * every record before it (entries are applied in order); a record of a command that failed
 * stays until then, which only makes the overlay more careful. */
#include "replica_internal.h"

#include <stdlib.h>
#include <string.h>

typedef enum { REC_HOLD = 1, REC_CHANGE, REC_LEASE, REC_BLOCK, REC_BLOCK_ALL } rec_kind_t;

typedef struct {
    uint64_t serial, key, qid;
    rec_kind_t kind;
} rec_t;

struct kyu_early {
    rec_t *recs; /* in serial order: recs[head..n) are live */
    size_t head, n, cap;
    zhashx_t *held;     /* (qid, seq) key -> count of DELETE/CHANGE_VISIBILITY records naming it */
    zhashx_t *changing; /* qid -> count of its CHANGE_VISIBILITY records (REC_CHANGE) */
    zhashx_t *taken;    /* (qid, seq) key -> count of early leases of it */
    zhashx_t *blocked;  /* qid -> count of records blocking it */
    zhashx_t *leased;   /* qid -> count of its leases granted early, not applied */
    uint64_t block_all, leases;
    uint64_t term;   /* the term the records belong to */
    uint64_t serial; /* commands noted so far */
    uint64_t done;   /* every command below this serial is applied or lost */
};

static size_t u64_hash(const void *key)
{
    uint64_t x = (uint64_t)(uintptr_t)key;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (size_t)x;
}

static int u64_cmp(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
    return x < y ? -1 : x > y;
}

static zhashx_t *count_map_new(void)
{
    zhashx_t *m = zhashx_new();
    KYU_ASSERT(m);
    zhashx_set_key_hasher(m, u64_hash);
    zhashx_set_key_comparator(m, u64_cmp);
    zhashx_set_key_duplicator(m, NULL);
    zhashx_set_key_destructor(m, NULL);
    zhashx_set_destructor(m, NULL); /* the values are counts */
    return m;
}

static void count_add(zhashx_t *m, uint64_t key, int delta)
{
    uintptr_t n = (uintptr_t)zhashx_lookup(m, (void *)(uintptr_t)key);
    KYU_ASSERT(delta > 0 || n > 0);
    n = delta > 0 ? n + 1 : n - 1;
    if (n == 0)
        zhashx_delete(m, (void *)(uintptr_t)key);
    else
        zhashx_update(m, (void *)(uintptr_t)key, (void *)n);
}

/* A message's key: collisions (never for qids below 2^16 and seqs below 2^48) only make the
 * overlay hold more than it must. Never 0 (a NULL key). */
static uint64_t msg_key(uint64_t qid, uint64_t seq)
{
    return (seq ^ (qid << 48)) | (1ULL << 63);
}

/* A request key's: in the same map (a collision with a message's only holds more). */
static uint64_t request_key(uint64_t client, uint64_t key)
{
    return (client * 0x9e3779b97f4a7c15ULL ^ key) | (1ULL << 63);
}

kyu_early_t *kyu_early_new(void)
{
    kyu_early_t *self = calloc(1, sizeof *self);
    KYU_ASSERT(self);
    self->held = count_map_new();
    self->changing = count_map_new();
    self->taken = count_map_new();
    self->blocked = count_map_new();
    self->leased = count_map_new();
    return self;
}

void kyu_early_destroy(kyu_early_t **self_p)
{
    kyu_early_t *self = *self_p;
    if (!self)
        return;
    zhashx_destroy(&self->held);
    zhashx_destroy(&self->changing);
    zhashx_destroy(&self->taken);
    zhashx_destroy(&self->blocked);
    zhashx_destroy(&self->leased);
    free(self->recs);
    free(self);
    *self_p = NULL;
}

static void clear(kyu_early_t *self)
{
    zhashx_purge(self->held);
    zhashx_purge(self->changing);
    zhashx_purge(self->taken);
    zhashx_purge(self->blocked);
    zhashx_purge(self->leased);
    self->head = self->n = 0;
    self->block_all = self->leases = 0;
}

/* The records belong to the current term while this node leads; else they are dropped. */
static void settle_term(kyu_replica_t *r)
{
    if (!r->early)
        r->early = kyu_early_new(); /* made at first use, freed with the replica */
    kyu_early_t *self = r->early;
    uint64_t term = kyu_raft_term(r->raft);
    if (term != self->term || kyu_raft_role(r->raft) != KYU_RAFT_LEADER) {
        clear(self);
        self->term = term;
        self->done = self->serial; /* what an earlier term proposed is not ours to wait for */
    }
}

static void push(kyu_early_t *self, uint64_t serial, rec_kind_t kind, uint64_t key, uint64_t qid)
{
    if (self->head > 0 && self->head == self->n)
        self->head = self->n = 0;
    if (self->n == self->cap) {
        if (self->head > self->cap / 2) { /* slide the live ones down */
            memmove(self->recs, self->recs + self->head, (self->n - self->head) * sizeof(rec_t));
            self->n -= self->head;
            self->head = 0;
        } else {
            self->cap = self->cap ? 2 * self->cap : 256;
            self->recs = realloc(self->recs, self->cap * sizeof(rec_t));
            KYU_ASSERT(self->recs);
        }
    }
    self->recs[self->n++] = (rec_t){serial, key, qid, kind};
    switch (kind) {
    case REC_LEASE:
        self->leases++;
        count_add(self->leased, qid, 1);
        count_add(self->taken, key, 1);
        break;
    case REC_HOLD:
        count_add(self->held, key, 1);
        break;
    case REC_CHANGE: /* a hold that may also keep its message in flight */
        count_add(self->held, key, 1);
        count_add(self->changing, qid, 1);
        break;
    case REC_BLOCK:
        count_add(self->blocked, key, 1);
        break;
    case REC_BLOCK_ALL:
        self->block_all++;
        break;
    }
}

static void block_queue(kyu_replica_t *r, uint64_t serial, const char *queue)
{
    uint64_t qid = queue[0] ? kyu_sm_queue_id(r->sm, queue) : 0;
    push(r->early, serial, qid ? REC_BLOCK : REC_BLOCK_ALL, qid, qid);
}

static bool grouped(const kyu_command_t *cmd)
{
    for (size_t i = 0; i < (cmd->n ? cmd->n : 1) && i < KYU_BATCH_MAX; i++)
        if (cmd->group_ids[i][0])
            return true;
    return false;
}

/* A command just proposed (replica.c): what it holds or blocks until it is applied. */
void kyu_early_note(kyu_replica_t *r, const kyu_command_t *cmd)
{
    settle_term(r);
    kyu_early_t *self = r->early;
    uint64_t serial = self->serial++;
    uint64_t qid = cmd->queue[0] ? kyu_sm_queue_id(r->sm, cmd->queue) : 0;
    switch (cmd->type) {
    case KYU_CMD_SEND:
    case KYU_CMD_PUBLISH:
        if (grouped(cmd)) /* its queue (or a subscribed one) may get fair groups */
            block_queue(r, serial, cmd->type == KYU_CMD_SEND ? cmd->queue : "");
        return;
    case KYU_CMD_SET_MEMBER:
    case KYU_CMD_DROP_MEMBER:
    case KYU_CMD_CREATE_TOPIC:
    case KYU_CMD_DELETE_TOPIC:
    case KYU_CMD_SUBSCRIBE:
    case KYU_CMD_UNSUBSCRIBE:
    case KYU_CMD_SET_SUBSCRIPTION_ATTRIBUTES:
        return;
    case KYU_CMD_DELETE:
    case KYU_CMD_CHANGE_VISIBILITY:
        for (size_t i = 0; i < cmd->n && i < KYU_BATCH_MAX; i++) {
            uint64_t seq;
            uint32_t gen;
            if (qid && kyu_handle_parse(cmd->handles[i], &seq, &gen))
                push(self, serial, cmd->type == KYU_CMD_CHANGE_VISIBILITY ? REC_CHANGE : REC_HOLD,
                     msg_key(qid, seq), qid);
        }
        return;
    case KYU_CMD_RECEIVE:
        if (cmd->early && qid) {
            for (size_t i = 0; i < cmd->n_chosen; i++)
                push(self, serial, REC_LEASE, msg_key(qid, cmd->chosen_seq[i]), qid);
            if (cmd->rq_client) /* a retry of it is answered the durable way */
                push(self, serial, REC_HOLD, request_key(cmd->rq_client, cmd->rq_key), qid);
            return;
        }
        block_queue(r, serial, cmd->queue);
        return;
    case KYU_CMD_REDRIVE_STEP:
        /* Its messages go into other queues (their sources, or the task's destination), which
         * they may give fair groups or fill: every queue waits for it (a step is rare). */
        block_queue(r, serial, "");
        return;
    default:
        block_queue(r, serial, cmd->queue);
        return;
    }
}

/* Every command with a serial below upto is applied (or lost): its records go. */
void kyu_early_done(kyu_replica_t *r, uint64_t upto)
{
    kyu_early_t *self = r->early;
    if (self && upto > self->done)
        self->done = upto;
    while (self && self->head < self->n && self->recs[self->head].serial < upto) {
        rec_t *rec = &self->recs[self->head++];
        switch (rec->kind) {
        case REC_LEASE:
            self->leases--;
            count_add(self->leased, rec->qid, -1);
            count_add(self->taken, rec->key, -1);
            break;
        case REC_HOLD:
            count_add(self->held, rec->key, -1);
            break;
        case REC_CHANGE:
            count_add(self->held, rec->key, -1);
            count_add(self->changing, rec->qid, -1);
            break;
        case REC_BLOCK:
            count_add(self->blocked, rec->key, -1);
            break;
        case REC_BLOCK_ALL:
            self->block_all--;
            break;
        }
    }
}

uint64_t kyu_early_serial(const kyu_replica_t *r)
{
    return r->early ? r->early->serial : 0;
}

uint64_t kyu_replica_early_leases(kyu_replica_t *self, uint64_t qid)
{
    if (!self->early || !qid || !kyu_replica_is_leader(self))
        return 0;
    settle_term(self);
    return (uint64_t)(uintptr_t)zhashx_lookup(self->early->leased, (void *)(uintptr_t)qid);
}

uint64_t kyu_replica_early_pending(kyu_replica_t *self)
{
    if (!self->early || !kyu_replica_is_leader(self))
        return 0;
    settle_term(self);
    return self->early->leases;
}

uint64_t kyu_replica_early_mark(kyu_replica_t *self)
{
    return kyu_early_serial(self);
}

bool kyu_replica_early_reached(kyu_replica_t *self, uint64_t mark)
{
    if (!self->early || !kyu_replica_is_leader(self))
        return true;
    settle_term(self);
    return self->early->done >= mark;
}

void kyu_replica_propose_lazy(kyu_replica_t *self)
{
    if (self->open && self->open->lazy) {
        self->open->lazy = false;
        kyu_replica_flush(self);
    }
}

static kyu_held_t held(void *arg, uint64_t qid, uint64_t seq)
{
    kyu_early_t *self = arg;
#if KYU_REPLICA_PLANTED_BUG == 13
    (void)self, (void)qid, (void)seq;
    return KYU_HELD_NO; /* planted: the overlay is not consulted, a message is handed out twice */
#else
    void *key = (void *)(uintptr_t)msg_key(qid, seq);
    if (zhashx_lookup(self->held, key))
        return KYU_HELD_STAYS;
    return zhashx_lookup(self->taken, key) ? KYU_HELD_TAKEN : KYU_HELD_NO;
#endif
}

bool kyu_replica_receive_early(kyu_replica_t *self, kyu_command_t *cmd, void *waiter,
                               kyu_result_t *res)
{
    if (!kyu_replica_serving(self) || self->transferring || self->failed ||
        kyu_replica_read_only(self) || cmd->type != KYU_CMD_RECEIVE)
        return false;
    const kyu_raft_conf_t *c = kyu_raft_conf(self->raft);
    if (!self->early_in_clusters &&
        !(c->n_voters == 1 && c->n_learners == 0 && c->voters[0] == self->node_id))
        return false; /* a cluster's leases are durable before they are answered (replica.h) */
    settle_term(self);
    kyu_early_t *e = self->early;
    uint64_t qid = kyu_sm_queue_id(self->sm, cmd->queue);
    if (!qid || e->block_all || zhashx_lookup(e->blocked, (void *)(uintptr_t)qid))
        return false;
    /* A retry (same request key) of a receive applied or early in flight: the durable way,
     * which answers it from the first attempt's record. */
    if (cmd->rq_client &&
        (kyu_sm_knows_request(self->sm, cmd->rq_client, cmd->rq_key, cmd->now_ms) ||
         zhashx_lookup(e->held, (void *)(uintptr_t)request_key(cmd->rq_client, cmd->rq_key))))
        return false;
    kyu_err_t err;
    int64_t vt = cmd->vt;
    /* Counted against the in-flight limit besides the index: the leases answered early (all
     * queues': an upper bound) and the messages of q a CHANGE_VISIBILITY in flight names. */
    uint64_t pending =
        e->leases + (uint64_t)(uintptr_t)zhashx_lookup(e->changing, (void *)(uintptr_t)qid);
    /* In the term the overlay belongs to (settle_term): the entry is proposed in it. */
    if (!kyu_sm_receive_choose(self->sm, cmd, e->term, pending, held, e, res, &err))
        return false;
    if (kyu_replica_propose(self, cmd, waiter, &err) != KYU_OK) {
        kyu_result_clear(res);
        kyu_result_init(res);
        cmd->early = false;
        cmd->n_chosen = 0;
        cmd->vt = vt;
        return false;
    }
    return true;
}
