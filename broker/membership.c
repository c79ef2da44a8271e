/* membership: the leader's driver of `kyu cluster add/remove`; see membership.h.
 *
 * Progress is read from what is committed, never from what was proposed: the address book
 * the state machine applied (kyu_sm_member) and the configuration it applied (raft_conf, the
 * configuration in force at the applied index). A proposal that is lost (an entry refused
 * for backpressure, a BUSY core) is simply made again on a later tick; every step is
 * idempotent (SET_MEMBER of the same addresses, a configuration change already made). */
#include "membership.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define RETRY_TICKS 100 /* a command proposed and not applied after this is proposed again */
#define REMOVED_MAX 16  /* ids this node saw leave the configuration, remembered for retries */
#define DEMOTE_GRACE_TICKS                                                                         \
    300 /* a demoted node that does not acknowledge it (down) is removed                           \
           anyway after this */

typedef enum {
    IDLE = 0,
    ADD_ADDRESS,    /* SET_MEMBER proposed: wait until applied */
    ADD_LEARNER,    /* learner: wait until committed and caught up */
    ADD_VOTER,      /* promotion proposed: wait until committed */
    REMOVE_DEMOTE,  /* a voter first becomes a learner, and is told so by the log */
    REMOVE_CONF,    /* removal proposed: wait until committed */
    REMOVE_ADDRESS, /* DROP_MEMBER proposed: wait until applied */
} phase_t;

struct kyu_membership {
    kyu_replica_t *replica;
    kyu_replica_done_fn done;
    void *done_arg;
    phase_t phase;
    kyu_peer_t node; /* the node being added or removed */
    void *waiter;
    uint64_t term;          /* the leader's term when the change began */
    uint32_t ticks;         /* since the change began */
    uint32_t proposed_tick; /* when the last command or change was proposed (0: not yet) */
    uint32_t demoted_tick;  /* REMOVE_DEMOTE: when the demotion was seen committed (0: not yet) */
    uint64_t demoted_at;    /* the commit index then: the node has seen its demotion once its
                               match index reaches it */
    uint64_t timeout_ms;    /* KYU_MEMBERSHIP_TIMEOUT_MS, or KYU_MEMBERSHIP_TIMEOUT_MS in the
                               environment (tests) */
    /* The ids this node saw leave the applied configuration since it started (the latest
     * REMOVED_MAX, oldest first), so that a retried remove of one is answered OK while a
     * remove of an id that never was a member (a typo) is still refused. Every node keeps
     * it (a retry may reach a new leader): it compares each applied configuration with the
     * one before. */
    kyu_raft_conf_t seen;
    bool has_seen;
    uint64_t removed[REMOVED_MAX];
    uint32_t n_removed;
};

kyu_membership_t *kyu_membership_new(kyu_replica_t *replica, kyu_replica_done_fn done,
                                     void *done_arg, kyu_err_t *err)
{
    kyu_membership_t *self = calloc(1, sizeof *self);
    if (!self) {
        kyu_err_set(err, KYU_ERR_INTERNAL, "out of memory");
        return NULL;
    }
    self->replica = replica;
    self->timeout_ms = KYU_MEMBERSHIP_TIMEOUT_MS;
    const char *t = getenv("KYU_MEMBERSHIP_TIMEOUT_MS");
    if (t && atoll(t) >= 1000 && atoll(t) <= 3600000)
        self->timeout_ms = (uint64_t)atoll(t);
    self->done = done;
    self->done_arg = done_arg;
    return self;
}

/* Answers the change's waiter and goes back to idle. */
static void finish(kyu_membership_t *self, kyu_code_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void finish(kyu_membership_t *self, kyu_code_t code, const char *fmt, ...)
{
    kyu_result_t res;
    memset(&res, 0, sizeof res);
    res.code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res.error, sizeof res.error, fmt, ap);
    va_end(ap);
    if (code == KYU_OK)
        res.error[0] = '\0';
    fprintf(stderr, "kyu-broker: membership change of node %llu: %s\n",
            (unsigned long long)self->node.id, code == KYU_OK ? "done" : res.error);
    void *w = self->waiter;
    self->waiter = NULL;
    self->phase = IDLE;
    self->done(self->done_arg, w, &res);
}

void kyu_membership_destroy(kyu_membership_t **self_p)
{
    kyu_membership_t *self = *self_p;
    if (!self)
        return;
    if (self->phase != IDLE)
        finish(self, KYU_ERR_NOT_LEADER,
               "the broker is shutting down; the change may be partly "
               "done: check kyu cluster status and retry");
    free(self);
    *self_p = NULL;
}

/* The configuration the state machine applied (committed), or false when none was applied
 * since the bootstrap one. */
static bool applied_conf(kyu_membership_t *self, kyu_raft_conf_t *c)
{
    const uint8_t *buf = NULL;
    size_t len = kyu_sm_raft_conf(kyu_replica_sm(self->replica), &buf);
    return len > 0 && kyu_raft_conf_decode(buf, len, c);
}

static bool in_conf(const kyu_raft_conf_t *c, uint64_t id)
{
    return kyu_raft_conf_is_voter(c, id) || kyu_raft_conf_is_learner(c, id);
}

/* Proposes SET_MEMBER or DROP_MEMBER for node (nobody waits on the entry: progress is read
 * from the applied book). */
static bool propose_one(kyu_membership_t *self, kyu_cmd_type_t type, const kyu_peer_t *node)
{
    kyu_command_t cmd;
    memset(&cmd, 0, sizeof cmd);
    cmd.type = type;
    cmd.now_ms = kyu_replica_now(self->replica);
    cmd.vt = -1;
    cmd.member_id = node->id;
    snprintf(cmd.member_raft, sizeof cmd.member_raft, "%s", node->raft);
    snprintf(cmd.member_client, sizeof cmd.member_client, "%s", node->client);
    kyu_err_t err;
    return kyu_replica_propose(self->replica, &cmd, NULL, &err) == KYU_OK;
}

/* The book entry of the node being changed. An add also writes the addresses of the members
 * the book lacks (those known only from the leader's --peer list, e.g. the bootstrap
 * members), so that the book (and every snapshot) names every member: a node that joins, or
 * restarts with an older --peer list, learns them all. */
static void propose_book(kyu_membership_t *self, kyu_cmd_type_t type)
{
    if (type == KYU_CMD_SET_MEMBER) {
        kyu_sm_t *sm = kyu_replica_sm(self->replica);
        const kyu_raft_conf_t *c = kyu_raft_conf(kyu_replica_raft(self->replica));
        for (uint32_t i = 0; i < c->n_voters + c->n_learners; i++) {
            uint64_t id = i < c->n_voters ? c->voters[i] : c->learners[i - c->n_voters];
            const kyu_peer_t *p = kyu_replica_address(self->replica, id);
            if (id != self->node.id && p && !kyu_sm_member(sm, id))
                propose_one(self, KYU_CMD_SET_MEMBER, p);
        }
    }
    if (propose_one(self, type, &self->node)) {
        self->proposed_tick = self->ticks;
        kyu_replica_flush(self->replica);
    }
}

static bool due(const kyu_membership_t *self)
{
    return self->proposed_tick == 0 || self->ticks - self->proposed_tick > RETRY_TICKS;
}

/* Proposes a configuration change; BUSY (the previous change not committed yet) is retried
 * on the next tick, anything else ends the change. */
static void conf_change(kyu_membership_t *self, kyu_raft_cc_op_t op)
{
    kyu_err_t err;
    kyu_code_t rc = kyu_replica_conf_change(self->replica, op, self->node.id, &err);
    if (rc == KYU_OK)
        self->proposed_tick = self->ticks;
    else if (rc != KYU_ERR_BUSY)
        finish(self, rc, "%s", err.msg);
}

static const char *phase_text(phase_t p)
{
    switch (p) {
    case ADD_ADDRESS:
        return "its address was not committed";
    case ADD_LEARNER:
        return "it is a learner that has not caught up with the leader's log (is it running, "
               "started with --join, and reachable at its raft address?); it stays a learner, "
               "which counts in no quorum: run the same kyu cluster add again to resume, or "
               "kyu cluster remove to undo";
    case ADD_VOTER:
        return "its promotion to voter was not committed";
    case REMOVE_DEMOTE:
        return "its change to a learner was not committed";
    case REMOVE_CONF:
        return "its removal was not committed";
    case REMOVE_ADDRESS:
        return "it was removed, but its address-book entry was not dropped";
    default:
        return "";
    }
}

static void tick_add(kyu_membership_t *self, const kyu_raft_t *r, const kyu_raft_conf_t *latest)
{
    kyu_sm_t *sm = kyu_replica_sm(self->replica);
    kyu_raft_conf_t applied;
    bool has_applied = applied_conf(self, &applied);
    uint64_t id = self->node.id;
    switch (self->phase) {
    case ADD_ADDRESS: {
        const kyu_peer_t *p = kyu_sm_member(sm, id);
        if (p && strcmp(p->raft, self->node.raft) == 0 &&
            strcmp(p->client, self->node.client) == 0) {
            self->phase = ADD_LEARNER;
            self->proposed_tick = 0;
        } else if (due(self)) {
            propose_book(self, KYU_CMD_SET_MEMBER);
        }
        return;
    }
    case ADD_LEARNER:
        if (kyu_raft_conf_is_voter(latest, id)) {
            self->phase = ADD_VOTER;
        } else if (!kyu_raft_conf_is_learner(latest, id)) {
            conf_change(self, KYU_RAFT_CC_ADD_LEARNER);
        } else if (has_applied && kyu_raft_conf_is_learner(&applied, id)) {
            uint64_t match = kyu_raft_match_of(r, id), last = kyu_raft_last_index(r);
            if (match > 0 && match + KYU_MEMBERSHIP_CATCHUP >= last)
                conf_change(self, KYU_RAFT_CC_ADD_VOTER);
        }
        return;
    case ADD_VOTER:
        if (has_applied && kyu_raft_conf_is_voter(&applied, id))
            finish(self, KYU_OK, "added");
        else if (!kyu_raft_conf_is_voter(latest, id))
            self->phase = ADD_LEARNER; /* the promotion was lost with a truncated log */
        return;
    default:
        return;
    }
}

/* A voter is demoted to learner before it is removed: a learner still gets the log, so the
 * node learns that it no longer votes and never campaigns again, even though it will not
 * see its removal (the leader stops sending to it at once). A node that is down is removed
 * after a grace period anyway (its messages are dropped by every member: no link). */
static void tick_demote(kyu_membership_t *self, const kyu_raft_t *r, const kyu_raft_conf_t *latest)
{
    kyu_raft_conf_t applied;
    uint64_t id = self->node.id;
    if (kyu_raft_conf_is_voter(latest, id)) {
        conf_change(self, KYU_RAFT_CC_ADD_LEARNER);
        return;
    }
    if (!kyu_raft_conf_is_learner(latest, id)) {
        self->phase = REMOVE_CONF; /* gone already */
        return;
    }
    if (!applied_conf(self, &applied) || !kyu_raft_conf_is_learner(&applied, id))
        return; /* the demotion is not committed yet */
    if (self->demoted_tick == 0) {
        self->demoted_tick = self->ticks;
        self->demoted_at = kyu_raft_commit(r);
    }
    if (kyu_raft_match_of(r, id) >= self->demoted_at ||
        self->ticks - self->demoted_tick > DEMOTE_GRACE_TICKS)
        self->phase = REMOVE_CONF;
}

static void tick_remove(kyu_membership_t *self, const kyu_raft_t *r, const kyu_raft_conf_t *latest)
{
    kyu_raft_conf_t applied;
    uint64_t id = self->node.id;
    if (self->phase == REMOVE_DEMOTE) {
        tick_demote(self, r, latest);
        return;
    }
    if (self->phase == REMOVE_CONF) {
        if (in_conf(latest, id))
            conf_change(self, KYU_RAFT_CC_REMOVE);
        else if (applied_conf(self, &applied) && !in_conf(&applied, id)) {
            self->phase = REMOVE_ADDRESS;
            self->proposed_tick = 0;
        }
        return;
    }
    if (!kyu_sm_member(kyu_replica_sm(self->replica), id))
        finish(self, KYU_OK, "removed");
    else if (due(self))
        propose_book(self, KYU_CMD_DROP_MEMBER);
}

static void forget_removed(kyu_membership_t *self, uint64_t id)
{
    for (uint32_t i = 0; i < self->n_removed; i++)
        if (self->removed[i] == id) {
            memmove(self->removed + i, self->removed + i + 1,
                    (self->n_removed - i - 1) * sizeof self->removed[0]);
            self->n_removed--;
            return;
        }
}

static void note_removed(kyu_membership_t *self, uint64_t id)
{
    forget_removed(self, id);
    if (self->n_removed == REMOVED_MAX) {
        memmove(self->removed, self->removed + 1, (REMOVED_MAX - 1) * sizeof self->removed[0]);
        self->n_removed--;
    }
    self->removed[self->n_removed++] = id;
}

static bool was_removed(const kyu_membership_t *self, uint64_t id)
{
    for (uint32_t i = 0; i < self->n_removed; i++)
        if (self->removed[i] == id)
            return true;
    return false;
}

/* Notes the ids that left the applied configuration since the last tick. */
static void track_removed(kyu_membership_t *self)
{
    kyu_raft_conf_t now;
    if (!applied_conf(self, &now))
        return;
    if (self->has_seen)
        for (uint32_t i = 0; i < self->seen.n_voters + self->seen.n_learners; i++) {
            uint64_t id = i < self->seen.n_voters ? self->seen.voters[i]
                                                  : self->seen.learners[i - self->seen.n_voters];
            if (!in_conf(&now, id))
                note_removed(self, id);
        }
    for (uint32_t i = 0; i < now.n_voters + now.n_learners; i++)
        forget_removed(self, i < now.n_voters ? now.voters[i] : now.learners[i - now.n_voters]);
    self->seen = now;
    self->has_seen = true;
}

void kyu_membership_tick(kyu_membership_t *self)
{
    track_removed(self);
    if (self->phase == IDLE)
        return;
    self->ticks++;
    const kyu_raft_t *r = kyu_replica_raft(self->replica);
    if (kyu_raft_role(r) != KYU_RAFT_LEADER || kyu_raft_term(r) != self->term) {
        finish(self, KYU_ERR_NOT_LEADER,
               "leadership changed during the change of node %llu; it may be partly done: "
               "check kyu cluster status and retry",
               (unsigned long long)self->node.id);
        return;
    }
    if ((uint64_t)self->ticks * KYU_REPLICA_TICK_MS > self->timeout_ms) {
        /* BUSY, not TIMEOUT: a client retries a TIMEOUT elsewhere (it means "no reply"). */
        finish(self, KYU_ERR_BUSY, "node %llu: not done within %llu s: %s",
               (unsigned long long)self->node.id, (unsigned long long)self->timeout_ms / 1000,
               phase_text(self->phase));
        return;
    }
    const kyu_raft_conf_t *latest = kyu_raft_conf(r);
    if (self->phase >= REMOVE_DEMOTE)
        tick_remove(self, r, latest);
    else
        tick_add(self, r, latest);
}

/* Common checks before a change starts. */
static kyu_code_t can_start(kyu_membership_t *self, kyu_err_t *err)
{
    if (!kyu_replica_serving(self->replica))
        return kyu_err_set(err, KYU_ERR_NOT_LEADER, "this node is not the leader");
    if (self->phase != IDLE)
        return kyu_err_set(err, KYU_ERR_BUSY,
                           "another membership change is under way (%s node %llu); retry when "
                           "it is done",
                           self->phase < REMOVE_DEMOTE ? "adding" : "removing",
                           (unsigned long long)self->node.id);
    return KYU_OK;
}

static void start(kyu_membership_t *self, phase_t phase, const kyu_peer_t *node, void *waiter)
{
    self->phase = phase;
    self->node = *node;
    self->waiter = waiter;
    self->ticks = 0;
    self->proposed_tick = 0;
    self->demoted_tick = 0;
    self->term = kyu_raft_term(kyu_replica_raft(self->replica));
    fprintf(stderr, "kyu-broker: %s node %llu (%s, %s)\n",
            phase < REMOVE_DEMOTE ? "adding" : "removing", (unsigned long long)node->id, node->raft,
            node->client);
    /* The first step goes out at once. */
    kyu_membership_tick(self);
}

/* A change found done already (a retry of one that was applied): answered OK at once. */
static kyu_code_t done_already(kyu_membership_t *self, uint64_t id, void *waiter, const char *note)
{
    fprintf(stderr, "kyu-broker: membership change of node %llu: done already (%s)\n",
            (unsigned long long)id, note);
    kyu_result_t res;
    memset(&res, 0, sizeof res);
    res.code = KYU_OK;
    self->done(self->done_arg, waiter, &res);
    return KYU_OK;
}

kyu_code_t kyu_membership_add(kyu_membership_t *self, uint64_t id, const char *raft_hostport,
                              const char *client, void *waiter, kyu_err_t *err)
{
    kyu_code_t rc = can_start(self, err);
    if (rc != KYU_OK)
        return rc;
    if (strlen(raft_hostport) >= KYU_ENDPOINT_MAX || strlen(client) >= KYU_ENDPOINT_MAX)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "addresses are at most %d bytes",
                           KYU_ENDPOINT_MAX - 1);
    char spec[3 * KYU_ENDPOINT_MAX];
    snprintf(spec, sizeof spec, "%llu,%s,%s", (unsigned long long)id, raft_hostport, client);
    kyu_peer_t node;
    if ((rc = kyu_peer_parse(spec, &node, err)) != KYU_OK)
        return rc;
    const kyu_raft_conf_t *c = kyu_raft_conf(kyu_replica_raft(self->replica));
    if (kyu_raft_conf_is_voter(c, id)) {
        /* At these very addresses it is the same add, done (a retry after a timeout or a
         * leader change: membership requests carry no request key); anywhere else it is
         * another node under a taken id. */
        const kyu_peer_t *p = kyu_replica_address(self->replica, id);
        kyu_raft_conf_t applied;
        if (p && strcmp(p->raft, node.raft) == 0 && strcmp(p->client, node.client) == 0) {
            if (applied_conf(self, &applied) && !kyu_raft_conf_is_voter(&applied, id))
                return kyu_err_set(err, KYU_ERR_BUSY,
                                   "node %llu: its promotion to voter is not committed yet; "
                                   "retry",
                                   (unsigned long long)id);
            return done_already(self, id, waiter, "already a voter at these addresses");
        }
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "node %llu is already a voter%s%s%s%s: remove it first to move it",
                           (unsigned long long)id, p ? " at " : "", p ? p->raft : "", p ? ", " : "",
                           p ? p->client : "");
    }
    if (!kyu_raft_conf_is_learner(c, id) && c->n_voters + c->n_learners >= KYU_RAFT_MAX_NODES)
        return kyu_err_set(err, KYU_ERR_LIMIT_EXCEEDED, "a cluster has at most %d members",
                           KYU_RAFT_MAX_NODES);
    /* Another member at the same address would get this node's messages, or the reverse. */
    for (uint32_t i = 0; i < c->n_voters + c->n_learners; i++) {
        uint64_t other = i < c->n_voters ? c->voters[i] : c->learners[i - c->n_voters];
        const kyu_peer_t *p = other == id ? NULL : kyu_replica_address(self->replica, other);
        if (p && (strcmp(p->raft, node.raft) == 0 || strcmp(p->client, node.client) == 0))
            return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "node %llu already uses %s or %s",
                               (unsigned long long)other, node.raft, node.client);
    }
    const kyu_peer_t *book = NULL;
    if (!kyu_sm_member(kyu_replica_sm(self->replica), id) &&
        kyu_sm_members(kyu_replica_sm(self->replica), &book) >= KYU_SM_MEMBERS_MAX)
        return kyu_err_set(err, KYU_ERR_LIMIT_EXCEEDED, "the address book is full (%d entries)",
                           KYU_SM_MEMBERS_MAX);
    start(self, ADD_ADDRESS, &node, waiter);
    return KYU_OK;
}

kyu_code_t kyu_membership_remove(kyu_membership_t *self, uint64_t id, void *waiter, kyu_err_t *err)
{
    kyu_code_t rc = can_start(self, err);
    if (rc != KYU_OK)
        return rc;
    const kyu_raft_t *r = kyu_replica_raft(self->replica);
    const kyu_raft_conf_t *c = kyu_raft_conf(r);
    if (!in_conf(c, id)) {
        /* A retry of a remove that was applied (membership requests carry no request key):
         * an id this node saw leave the configuration is done, and one whose address-book
         * entry is left (the first attempt stopped before dropping it) finishes: its removal
         * committed, then the drop. An id that never was a member (a typo) is refused. */
        const kyu_peer_t *book = kyu_sm_member(kyu_replica_sm(self->replica), id);
        if (book) {
            start(self, REMOVE_CONF, book, waiter);
            return KYU_OK;
        }
        if (was_removed(self, id))
            return done_already(self, id, waiter, "not a member any more");
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "node %llu is not a member",
                           (unsigned long long)id);
    }
    if (kyu_raft_conf_is_voter(c, id) && c->n_voters == 1)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "node %llu is the last voter: a cluster keeps at least one",
                           (unsigned long long)id);
    if (id == kyu_raft_leader(r)) {
        /* Hand leadership over first: the new leader removes this node (libkyu follows the
         * NOT_LEADER answer), and no election timeout is lost. */
        if (kyu_replica_transfer_to(self->replica, KYU_RAFT_NONE) != KYU_OK)
            return kyu_err_set(err, KYU_ERR_BUSY,
                               "node %llu leads and no other voter can take "
                               "over now; retry later",
                               (unsigned long long)id);
        return kyu_err_set(err, KYU_ERR_NOT_LEADER,
                           "node %llu leads: leadership is being handed to another voter, which "
                           "removes it; retry there",
                           (unsigned long long)id);
    }
    kyu_peer_t node = {.id = id};
    const kyu_peer_t *p = kyu_replica_address(self->replica, id);
    if (p)
        node = *p;
    start(self, kyu_raft_conf_is_voter(c, id) ? REMOVE_DEMOTE : REMOVE_CONF, &node, waiter);
    return KYU_OK;
}
