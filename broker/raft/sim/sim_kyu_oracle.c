/*
 * sim_kyu_oracle.c - kyu's own invariants, checked by kyu-sim-kyu on top of kyu-sim's Raft
 * invariants:
 *
 *   state agreement      all nodes' states (a digest of every key and value) agree at the
 *                        same index, and every node answers every command alike (sim_kyu.c);
 *   no lost send         a committed send stays in the state until a committed delete (or its
 *                        queue's deletion) removes it: the messages in a state are exactly the
 *                        live ones of the model, checked at sampled indexes and at the end; an
 *                        acknowledged send was committed;
 *   deleted stays gone   a deleted message is never received again nor found in a state; an
 *                        acknowledged delete is never undone; a handle deletes a message once;
 *   leases               a received message is not received again before its lease (the
 *                        visibility timeout the client asked for, from the command's time)
 *                        ends; a stale handle is not honoured;
 *   dead-letter moves    a receive of q1 (RedrivePolicy: q2, maxReceiveCount 2) takes the
 *                        messages the state's order gives (due leases by visible time and seq,
 *                        then the never-received by seq); of those, the ones received twice
 *                        move to q2 (exactly those, once, with their receive count) and the
 *                        others are leased; a moved message is then in q2, never lost, never
 *                        in both;
 *   retention            q0 and q2 keep messages SK_RETENTION_S seconds: an EXPIRE_MESSAGES
 *                        (the leader's, sim_kyu_node.c) takes the messages below the seq the
 *                        state machine's marks give (modelled here from the sends, as
 *                        sm_expiry.c keeps them), never one whose period has not passed since
 *                        its send (expired early), never leaving one held more than a mark's
 *                        span past it (skew allowed); every node's counts of each queue's
 *                        messages equal the model's after every entry, so a message expired
 *                        early or late is seen at once; an expired message counts as deleted,
 *                        not lost, only when its period had passed;
 *   request keys         a keyed request retried within the dedup window is answered as its
 *                        first attempt was and changes nothing: a send with the first ids,
 *                        a receive with the leases it granted still held, a delete or
 *                        visibility change with the first results, a queue deletion with OK.
 *
 * The model follows the stream of entries as first applied by any node, with the results
 * that node computed (every other node must compute the same ones).
 */
#include "sim_kyu.h"

#include "filter.h"
#include "queue_attrs.h"

#include <stdlib.h>
#include <string.h>

#define DEDUP_WINDOW_MS (5 * 60 * 1000) /* sm_internal.h's KYU_DEDUP_WINDOW_MS */
#define MARK_STEP_MS 1000               /* sm_internal.h's KYU_MARK_STEP_MS */
/* How far back the leader's time may go from one command to the next (an old leader's entry
 * committed under a new one with a slower clock: seeds skew clocks up to 2 s either way): a
 * message sent then joins a mark made later, and goes that much later. */
#define EXPIRY_SLACK_MS 5000

static sk_t *sk(sim_cluster_t *c)
{
    return c->app_state;
}

static void *grow(void *p, size_t *cap, size_t need, size_t size)
{
    if (need < *cap)
        return p;
    size_t n = *cap ? *cap : 1024;
    while (n <= need)
        n *= 2;
    uint8_t *q = realloc(p, n * size);
    KYU_ASSERT(q);
    memset(q + *cap * size, 0, (n - *cap) * size);
    *cap = n;
    return q;
}

sk_index_t *sk_index(sk_t *k, uint64_t index)
{
    k->idx = grow(k->idx, &k->idx_cap, index, sizeof(*k->idx));
    return &k->idx[index];
}

sk_msg_t *sk_msg(sk_t *k, uint64_t n)
{
    k->msgs = grow(k->msgs, &k->msgs_cap, n, sizeof(*k->msgs));
    return &k->msgs[n];
}

static sk_key_t *key(sk_t *k, uint64_t n)
{
    k->keys = grow(k->keys, &k->keys_cap, n, sizeof(*k->keys));
    return &k->keys[n];
}

static void map_seq(sk_t *k, uint64_t seq, uint64_t m)
{
    k->seq_msg = grow(k->seq_msg, &k->seq_cap, seq, sizeof(*k->seq_msg));
    k->seq_msg[seq] = m;
}

static uint64_t msg_of_handle(sk_t *k, const char *handle, uint32_t *gen)
{
    uint64_t seq;
    if (!kyu_handle_parse(handle, &seq, gen) || seq >= k->seq_cap)
        return 0;
    return k->seq_msg[seq];
}

void sk_oracle_free(sk_t *k)
{
    free(k->idx);
    free(k->msgs);
    free(k->seq_msg);
    free(k->keys);
    free(k->marks);
    free(k->sent_hash);
    free(k->sent);
    zhashx_destroy(&k->answered);
    sk_copies_reset();
}

static int queue_index(const char *name)
{
    if (strlen(name) == 2 && name[0] == 'q' && name[1] >= '0' && name[1] < '0' + SK_QUEUES_DRAWN)
        return name[1] - '0';
    if (strcmp(name, "q3.fifo") == 0)
        return SK_FIFO;
    return -1;
}

static const char *status_name(uint8_t s)
{
    static const char *names[] = {"never sent", "live", "deleted", "gone with its queue",
                                  "expired"};
    return names[s];
}

/* The first attempt of a keyed request still within the dedup window, or NULL. */
static sk_key_t *first_attempt(sk_t *k, const sk_intent_t *in, const kyu_command_t *cmd)
{
    sk_key_t *kk = in->rq_key ? key(k, in->rq_key) : NULL;
    if (kk && kk->seen && cmd->now_ms < kk->first_now + DEDUP_WINDOW_MS - 1000)
        return kk;
    return NULL;
}

/* Records a keyed request's first applied attempt (the state machine records it only when
 * the request succeeded). */
static sk_key_t *record_attempt(sk_t *k, const sk_intent_t *in, const kyu_command_t *cmd,
                                const kyu_result_t *res)
{
    if (!in->rq_key || res->code != KYU_OK)
        return NULL;
    sk_key_t *kk = key(k, in->rq_key);
    memset(kk, 0, sizeof(*kk));
    kk->seen = true;
    kk->type = cmd->type;
    kk->first_now = cmd->now_ms;
    return kk;
}

static void applied_twice(sim_cluster_t *c, const sk_intent_t *in, const kyu_command_t *cmd,
                          const sk_key_t *kk, const char *what)
{
    static const char *types[] = {"?",
                                  "create",
                                  "delete queue",
                                  "send",
                                  "receive",
                                  "delete",
                                  "change visibility",
                                  "set member",
                                  "drop member",
                                  "handle key",
                                  "set attributes",
                                  "purge queue",
                                  "expire messages",
                                  "start move task",
                                  "redrive step",
                                  "cancel move task"};
    _Static_assert(sizeof types / sizeof types[0] == KYU_CMD_CANCEL_MOVE_TASK + 1,
                   "a name per command type");
    sim_violation(c, SIM_SAFETY,
                  "request key applied twice: a %s with key %llu retried %llu ms after its first "
                  "attempt was not answered as the first time: %s",
                  (size_t)cmd->type < sizeof types / sizeof types[0] ? types[cmd->type]
                  : cmd->type == KYU_CMD_PUBLISH                     ? "publish"
                                                                     : "topic request",
                  (unsigned long long)in->rq_key, (unsigned long long)(cmd->now_ms - kk->first_now),
                  what);
}

/* Retention (sm_expiry.c's kyu_sm_mark_seq): a send that is applied, not replayed, or a
 * redrive step that may move messages, adds a mark once its time has passed the last mark's
 * until; the first mark starts at seq 0. */
static void add_mark(sk_t *k, uint64_t now)
{
    if (k->marks_n > 0 && now < k->marks[k->marks_n - 1].until)
        return;
    if (k->marks_n == k->marks_cap) {
        k->marks_cap = k->marks_cap ? 2 * k->marks_cap : 256;
        k->marks = realloc(k->marks, k->marks_cap * sizeof(*k->marks));
        KYU_ASSERT(k->marks);
    }
    /* The state machine merges old marks past 32,768 of them: a run makes one per second of
     * sending at most, far fewer. */
    KYU_ASSERT(k->marks_n < 32768);
    k->marks[k->marks_n++] = (struct sk_mark){k->marks_n ? k->next_seq + 1 : 0, now + MARK_STEP_MS};
}

static void on_send(sim_cluster_t *c, const kyu_command_t *cmd, const sk_intent_t *in, int q,
                    const kyu_result_t *res, sk_outcome_t *out)
{
    sk_t *k = sk(c);
    out->n = res->n_ids;
    for (size_t j = 0; j < res->n_ids && j < SK_RECV_MAX; j++)
        out->ids[j] = sk_parse_id(res->ids[j]);
    /* A batch entry the leader refused is answered with its code and no id, on the first
     * attempt and every retry (the retry's command refuses it too: same bodies), never
     * stored. */
    for (size_t j = 0; res->code == KYU_OK && j < cmd->n; j++)
        if (cmd->entry_code[j] &&
            (j >= res->n_ids || res->ids[j][0] || res->n_results != res->n_ids ||
             res->results[j] != cmd->entry_code[j])) {
            sim_violation(c, SIM_SAFETY,
                          "send entry %zu, refused by the leader (%s), answered id '%s' code %s",
                          j + 1, kyu_code_name(cmd->entry_code[j]),
                          j < res->n_ids ? res->ids[j] : "none",
                          kyu_code_name(res->n_results > j ? (int)res->results[j] : 0));
            return;
        }
    /* A retry within the window is answered with the first ids whatever became of the
     * queue since (the request was done). */
    sk_key_t *kk = first_attempt(k, in, cmd);
    bool retry = kk != NULL;
    /* Past the window the record may still be there (each keyed send expires at most a few
     * records): then the first ids are a right answer too. */
    sk_key_t *old = in->rq_key ? key(k, in->rq_key) : NULL;
    if (!retry && old && old->seen && res->code == KYU_OK && res->n_ids == old->n &&
        out->ids[0] == old->ids[0]) {
        retry = true;
        kk = old;
    }
    if (!retry && (!k->queues[q].exists || res->code != KYU_OK)) {
        if (k->queues[q].exists != (res->code == KYU_OK))
            sim_violation(c, SIM_SAFETY, "send to %s answered %s while the queue %s", cmd->queue,
                          kyu_code_name(res->code), k->queues[q].exists ? "exists" : "does not");
        return;
    }
    if (retry) {
        bool same = res->n_ids == kk->n;
        for (size_t j = 0; same && j < kk->n; j++)
            same = out->ids[j] == kk->ids[j];
        if (!same) {
            char what[160];
            snprintf(what, sizeof(what), "first message %llu (%zu ids), now %llu (%zu ids)",
                     (unsigned long long)kk->ids[0], kk->n, (unsigned long long)out->ids[0],
                     res->n_ids);
            applied_twice(c, in, cmd, kk, what);
            return;
        }
        k->dedup_hits++;
        return;
    }
    if (cmd->n > 0)
        add_mark(k, cmd->now_ms);
    for (size_t j = 0; j < res->n_ids; j++) {
        if (j < cmd->n && cmd->entry_code[j])
            continue; /* refused at the leader (checked above) */
        sk_msg_t *m = sk_msg(k, out->ids[j]);
        if (j >= cmd->n || out->ids[j] != sk_parse_id(cmd->ids[j]) || m->status != SK_UNKNOWN) {
            sim_violation(c, SIM_SAFETY,
                          "send answered id %s, not the id it carried (%s; request key %llu, "
                          "first seen %s, message %s)",
                          res->ids[j], j < cmd->n ? cmd->ids[j] : "none",
                          (unsigned long long)in->rq_key, old && old->seen ? "yes" : "no",
                          status_name(m->status));
            return;
        }
        m->status = SK_LIVE;
        m->q = (uint8_t)q;
        m->qgen = k->queues[q].gen;
        m->group = (uint8_t)(out->ids[j] % SK_FIFO_GROUPS); /* q3.fifo's (sim_kyu_client.c) */
        m->seq = ++k->next_seq;
        m->sent_ms = cmd->now_ms;
        /* Not received before its delay ends, its own or else its queue's (lease re-granted
         * otherwise). */
        uint64_t delay_ms = j < cmd->n && cmd->has_msg_delay[j]
                                ? cmd->msg_delay_ms[j]
                                : (uint64_t)k->queues[q].delay * 1000;
        m->lease_until = cmd->now_ms + delay_ms;
        m->in_heap = delay_ms > 0;
    }
    if ((kk = record_attempt(k, in, cmd, res)) != NULL) {
        kk->n = out->n;
        memcpy(kk->ids, out->ids, sizeof(kk->ids));
    }
}

/* A retried receive answers with the leases its first attempt granted that are still held
 * (same seq and generation, not run out, not deleted) and changes nothing. */
static void replay_receive(sim_cluster_t *c, const kyu_command_t *cmd, const sk_intent_t *in, int q,
                           const sk_key_t *kk, const kyu_result_t *res, sk_outcome_t *out)
{
    sk_t *k = sk(c);
    k->dedup_hits++;
    if (!k->queues[q].exists) {
        if (res->code != KYU_ERR_NO_SUCH_QUEUE)
            applied_twice(c, in, cmd, kk, "its queue is gone");
        return;
    }
    size_t n = 0;
    for (size_t i = 0; i < kk->n; i++) {
        const sk_msg_t *m = sk_msg(k, kk->ids[i]);
        if (m->status != SK_LIVE || m->gen != kk->gens[i] || m->seq != kk->seqs[i] ||
            m->lease_until <= cmd->now_ms || m->q != q || m->qgen != k->queues[q].gen)
            continue;
        if (n >= res->n_msgs || sk_parse_id(res->msgs[n].message_id) != kk->ids[i] ||
            res->msgs[n].receive_count != m->receives) {
            applied_twice(c, in, cmd, kk, "not the leases it granted that are still held");
            return;
        }
        out->ids[n] = kk->ids[i];
        n++;
    }
    if (n != res->n_msgs || res->code != KYU_OK)
        applied_twice(c, in, cmd, kk, "more messages than its first leases still held");
    out->n = n;
}

typedef struct {
    uint64_t until, seq, n;
} sk_cand_t;

static int cand_cmp(const void *a, const void *b)
{
    const sk_cand_t *x = a, *y = b;
    if (x->until != y->until)
        return x->until < y->until ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* A receive of the dead-letter source: the messages it takes, in the state machine's order
 * (op_message.c): batches of what is left to find, each message leased or, received
 * SK_MAX_RECEIVES times already, moved to SK_DLQ. Checks the answer is the leased ones and
 * moves the others in the model. */
/* The visible messages of q at now in the order the state machine takes them (sm_index.c, for
 * a receive and a redrive step alike): due leases by visible time and seq, then the
 * never-received by seq. A heap array of *n. */
static sk_cand_t *visible_in_order(sk_t *k, int q, uint64_t now, size_t *n_out)
{
    size_t n = 0, n_due = 0;
    sk_cand_t *cand = malloc((k->next_msg + 1) * sizeof(*cand));
    KYU_ASSERT(cand);
    for (int pass = 0; pass < 2; pass++) /* the due leases, then the never-received */
        for (uint64_t m = 1; m <= k->next_msg && m < k->msgs_cap; m++) {
            const sk_msg_t *x = &k->msgs[m];
            if (x->status != SK_LIVE || x->q != q || x->qgen != k->queues[q].gen ||
                x->in_heap != (pass == 0) || (pass == 0 && x->lease_until > now))
                continue;
            cand[n++] = (sk_cand_t){pass == 0 ? x->lease_until : 0, x->seq, m};
            n_due += pass == 0;
        }
    qsort(cand, n_due, sizeof(*cand), cand_cmp);
    qsort(cand + n_due, n - n_due, sizeof(*cand), cand_cmp);
    *n_out = n;
    return cand;
}

/* A t0 copy's group as an index of a queue's tags ("": the none group, 0; "s0".."s2": 1..3). */
static int group_ix(const char *g)
{
    return g[0] == 's' && g[1] >= '0' && g[1] <= '2' ? 1 + (g[1] - '0') : 0;
}

typedef struct {
    uint64_t tag, g, pass, until, seq, n;
} sk_fcand_t;

static int fcand_cmp(const void *a, const void *b)
{
    const sk_fcand_t *x = a, *y = b;
    const uint64_t kx[] = {x->tag, x->g, x->pass, x->until, x->seq},
                   ky[] = {y->tag, y->g, y->pass, y->until, y->seq};
    for (size_t i = 0; i < sizeof kx / sizeof kx[0]; i++)
        if (kx[i] != ky[i])
            return kx[i] < ky[i] ? -1 : 1;
    return 0;
}

/* The visible messages of a fair queue q at now in the order a redrive step takes them, one
 * at a time (kyu_sm_index_take: sm_fair.c's take without a stamp, so no tag changes): the
 * group of least (tag, id) with a visible message first, all of it, then the next; in a
 * group by (visible time, seq), in the none group its due leases so, then its never-received
 * by seq. A heap array of *n_out, as visible_in_order's. */
static sk_cand_t *fair_in_order(sk_t *k, int q, uint64_t now, size_t *n_out)
{
    size_t n = 0;
    sk_fcand_t *f = malloc((k->next_msg + 1) * sizeof(*f));
    KYU_ASSERT(f);
    for (uint64_t m = 1; m <= k->next_msg && m < k->msgs_cap; m++) {
        const sk_msg_t *x = &k->msgs[m];
        if (x->status != SK_LIVE || x->q != q || x->qgen != k->queues[q].gen ||
            x->lease_until > now)
            continue;
        int g = group_ix(x->tgroup);
        bool fresh = g == 0 && !x->in_heap;
        f[n++] = (sk_fcand_t){k->queues[q].tags[g],       (uint64_t)g, fresh,
                              fresh ? 0 : x->lease_until, x->seq,      m};
    }
    qsort(f, n, sizeof(*f), fcand_cmp);
    sk_cand_t *cand = malloc((n + 1) * sizeof(*cand));
    KYU_ASSERT(cand);
    for (size_t i = 0; i < n; i++)
        cand[i] = (sk_cand_t){f[i].until, f[i].seq, f[i].n};
    free(f);
    *n_out = n;
    return cand;
}

/* After a command: a group of a fair queue with no message left is gone, its tag with it. */
static void fair_drop_empty(sk_t *k)
{
    for (int q = 0; q < SK_QUEUES; q++) {
        if (!k->queues[q].fair)
            continue;
        bool held[4] = {true, false, false, false};
        for (uint64_t m = 1; m <= k->next_msg && m < k->msgs_cap; m++) {
            const sk_msg_t *x = &k->msgs[m];
            if (x->status == SK_LIVE && x->q == q && x->qgen == k->queues[q].gen)
                held[group_ix(x->tgroup)] = true;
        }
        for (int g = 1; g < 4; g++)
            if (!held[g])
                k->queues[q].tags[g] = 0;
    }
}

static void model_dead_letter_receive(sim_cluster_t *c, const kyu_command_t *cmd, int q,
                                      const kyu_result_t *res, uint32_t max)
{
    sk_t *k = sk(c);
    size_t n = 0;
    sk_cand_t *cand = visible_in_order(k, q, cmd->now_ms, &n);
    uint32_t found = 0, moved = 0;
    size_t pos = 0;
    bool dlq = k->queues[SK_DLQ].exists;
    while (found < max && moved < KYU_DLQ_MOVES_MAX && pos < n && c->result == SIM_OK) {
        size_t batch = max - found;
        for (size_t b = 0; b < batch && pos < n && c->result == SIM_OK; b++) {
            sk_msg_t *x = sk_msg(k, cand[pos++].n);
            if (dlq && x->receives >= SK_MAX_RECEIVES) {
                x->q = SK_DLQ;
                x->qgen = k->queues[SK_DLQ].gen;
                x->lease_until = cmd->now_ms;
                x->moved_receives = x->receives;
                k->queues[SK_DLQ].moved_in = true;
                moved++;
                k->moves_checked++;
                continue;
            }
            uint64_t got = found < res->n_msgs ? sk_parse_id(res->msgs[found].message_id) : 0;
            if (got != cand[pos - 1].n)
                sim_violation(c, SIM_SAFETY,
                              "dead-letter move: a receive of %s at %llu leased message %llu where "
                              "the state's order gives %llu (received %u times; moved before it: "
                              "%u)",
                              cmd->queue, (unsigned long long)cmd->now_ms, (unsigned long long)got,
                              (unsigned long long)cand[pos - 1].n, x->receives, moved);
            found++;
        }
    }
    if (c->result == SIM_OK && found != res->n_msgs)
        sim_violation(c, SIM_SAFETY,
                      "dead-letter move: a receive of %s at %llu leased %zu messages, the state's "
                      "order gives %u (%u moved)",
                      cmd->queue, (unsigned long long)cmd->now_ms, res->n_msgs, found, moved);
    free(cand);
}

static int fifo_cmp(const void *a, const void *b)
{
    const sk_cand_t *x = a, *y = b; /* until holds the group here */
    if (x->until != y->until)
        return x->until < y->until ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* A receive of q3.fifo takes what FIFO order gives (sm_fifo.c): of the groups with no message
 * in flight (none of those received at least once, at the group's head, with a lease running)
 * and whose first message is visible, the group whose first message was sent first first;
 * from each its messages in order while visible; up to max. */
static void check_fifo_receive(sim_cluster_t *c, const kyu_command_t *cmd, int q,
                               const kyu_result_t *res, uint32_t max)
{
    sk_t *k = sk(c);
    size_t n = 0;
    sk_cand_t *cand = malloc((k->next_msg + 1) * sizeof(*cand));
    KYU_ASSERT(cand);
    for (uint64_t m = 1; m <= k->next_msg && m < k->msgs_cap; m++) {
        const sk_msg_t *x = &k->msgs[m];
        if (x->status == SK_LIVE && x->q == q && x->qgen == k->queues[q].gen)
            cand[n++] = (sk_cand_t){x->group, x->seq, m};
    }
    qsort(cand, n, sizeof(*cand), fifo_cmp); /* by group, then seq */
    size_t starts[SK_FIFO_GROUPS], ends[SK_FIFO_GROUPS], n_ready = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && cand[j].until == cand[i].until)
            j++;
        bool ready = k->msgs[cand[i].n].lease_until <= cmd->now_ms;
        for (size_t t = i; t < j && ready && k->msgs[cand[t].n].receives > 0; t++)
            ready = k->msgs[cand[t].n].lease_until <= cmd->now_ms;
        if (ready) { /* in the order of their first seq */
            size_t at = n_ready;
            while (at > 0 && cand[starts[at - 1]].seq > cand[i].seq) {
                starts[at] = starts[at - 1];
                ends[at] = ends[at - 1];
                at--;
            }
            starts[at] = i;
            ends[at] = j;
            n_ready++;
        }
        i = j;
    }
    uint64_t want[KYU_BATCH_MAX];
    size_t n_want = 0;
    for (size_t g = 0; g < n_ready && n_want < max; g++)
        for (size_t t = starts[g]; t < ends[g] && n_want < max; t++) {
            if (k->msgs[cand[t].n].lease_until > cmd->now_ms)
                break;
            want[n_want++] = cand[t].n;
        }
    bool same = n_want == res->n_msgs;
    for (size_t j = 0; same && j < n_want; j++)
        same = sk_parse_id(res->msgs[j].message_id) == want[j];
    if (!same)
        sim_violation(c, SIM_SAFETY,
                      "fifo: a receive of %s at %llu (max %u) leased %zu messages (first %llu), "
                      "FIFO order and group locks give %zu (first %llu)",
                      cmd->queue, (unsigned long long)cmd->now_ms, max, res->n_msgs,
                      res->n_msgs ? (unsigned long long)sk_parse_id(res->msgs[0].message_id) : 0,
                      n_want, n_want ? (unsigned long long)want[0] : 0);
    k->fifo_checked++;
    free(cand);
}

/* A receive the leader answered before its entry (op_receive_early.c): its entry, once
 * applied, must record every lease the answer had (the leader's overlay keeps anything
 * applied before it from changing those messages: replica_early.c), each a message live,
 * visible, not deleted, its receive count and generation one more. A lease answered and lost
 * with its leader is never applied: the model never had it (the message may come back before
 * its timeout; its handle then deletes nothing). */
static void on_receive_early(sim_cluster_t *c, const kyu_command_t *cmd, const sk_intent_t *in,
                             int q, const kyu_result_t *res, sk_outcome_t *out)
{
    sk_t *k = sk(c);
    uint32_t gens[KYU_BATCH_MAX] = {0};
    uint64_t seqs[KYU_BATCH_MAX] = {0};
    if (res->code != KYU_OK || res->n_results != cmd->n_chosen || in->n_early != cmd->n_chosen) {
        sim_violation(c, SIM_SAFETY,
                      "early receive: the entry of a receive on %s at %llu answered %s with %zu "
                      "results for %zu leases (%zu messages answered)",
                      cmd->queue, (unsigned long long)cmd->now_ms, kyu_code_name(res->code),
                      res->n_results, cmd->n_chosen, in->n_early);
        return;
    }
    for (size_t j = 0; j < cmd->n_chosen && c->result == SIM_OK; j++) {
        /* the message the client was answered with for this lease */
        uint64_t seq = cmd->chosen_seq[j], n = in->early_ids[j];
        sk_msg_t *m = n && n <= k->next_msg ? sk_msg(k, n) : NULL;
        if (res->results[j] != KYU_OK) {
            sim_violation(c, SIM_SAFETY,
                          "early receive: message %llu (seq %llu) was answered by a receive on "
                          "%s at %llu whose entry did not record its lease",
                          (unsigned long long)n, (unsigned long long)seq, cmd->queue,
                          (unsigned long long)cmd->now_ms);
            return;
        }
        k->receives_checked++;
        if (!m || m->status != SK_LIVE || m->client_deleted || m->qgen != k->queues[q].gen) {
            sim_violation(c, SIM_SAFETY,
                          "%s: an early receive on %s at %llu leased message %llu, which is %s",
                          m && (m->status == SK_DELETED || m->client_deleted)
                              ? "deleted stays deleted"
                              : "receive",
                          cmd->queue, (unsigned long long)cmd->now_ms, (unsigned long long)n,
                          m ? status_name(m->status) : "unknown");
            return;
        }
        if (m->lease_until > cmd->now_ms) {
            sim_violation(c, SIM_SAFETY,
                          "lease re-granted: message %llu is leased until %llu, received early "
                          "again at %llu",
                          (unsigned long long)n, (unsigned long long)m->lease_until,
                          (unsigned long long)cmd->now_ms);
            return;
        }
        if (cmd->chosen_gen[j] <= m->gen) {
            sim_violation(c, SIM_SAFETY,
                          "early receive of message %llu: lease generation %u after %u",
                          (unsigned long long)n, cmd->chosen_gen[j], m->gen);
            return;
        }
        m->receives++;
        m->gen = cmd->chosen_gen[j];
        m->in_heap = true;
        int64_t vt = in->vt >= 0 ? in->vt : (int64_t)k->queues[q].vt;
        m->lease_until = cmd->now_ms + (uint64_t)vt * 1000;
        map_seq(k, seq, n);
        k->early_leases++;
        gens[j] = m->gen;
        seqs[j] = seq;
        if (j < SK_RECV_MAX) {
            out->ids[j] = n;
            out->n = j + 1;
        }
    }
    sk_key_t *rec = c->result == SIM_OK ? record_attempt(k, in, cmd, res) : NULL;
    if (rec) {
        rec->n = cmd->n_chosen < SK_RECV_MAX ? cmd->n_chosen : SK_RECV_MAX;
        memcpy(rec->ids, out->ids, sizeof(rec->ids));
        memcpy(rec->gens, gens, sizeof(rec->gens));
        memcpy(rec->seqs, seqs, sizeof(rec->seqs));
    }
}

static void on_receive(sim_cluster_t *c, const kyu_command_t *cmd, const sk_intent_t *in, int q,
                       const kyu_result_t *res, sk_outcome_t *out)
{
    sk_t *k = sk(c);
    const sk_key_t *kk = first_attempt(k, in, cmd);
    if (kk) {
        replay_receive(c, cmd, in, q, kk, res, out);
        return;
    }
    if (cmd->early) {
        on_receive_early(c, cmd, in, q, res, out);
        return;
    }
    uint32_t max = cmd->max ? cmd->max : 1; /* what the receive looks for */
    if (cmd->max_inflight) {
        /* The in-flight limit: refused only at it, never leasing past it (the model's leases
         * not over at the command's time); at it with nothing visible, an empty answer. */
        uint64_t inflight = 0;
        for (uint64_t n = 1; n <= k->next_msg && n < k->msgs_cap; n++) {
            const sk_msg_t *m = &k->msgs[n];
            /* lease_until is also a delay's end: in flight only once received */
            inflight += m->status == SK_LIVE && m->q == q && m->qgen == k->queues[q].gen &&
                        m->receives > 0 && m->lease_until > cmd->now_ms;
        }
        if ((res->code == KYU_ERR_LIMIT_EXCEEDED && inflight < cmd->max_inflight) ||
            (res->code == KYU_OK && res->n_msgs > 0 &&
             inflight + res->n_msgs > cmd->max_inflight)) {
            sim_violation(c, SIM_SAFETY,
                          "in-flight limit: a receive on %s at %llu with %llu in flight and a "
                          "limit of %u answered %s with %zu messages",
                          cmd->queue, (unsigned long long)cmd->now_ms, (unsigned long long)inflight,
                          cmd->max_inflight, kyu_code_name(res->code), res->n_msgs);
            return;
        }
        if (res->code == KYU_ERR_LIMIT_EXCEEDED)
            k->over_limit++;
        uint64_t room = inflight < cmd->max_inflight ? cmd->max_inflight - inflight : 0;
        if (room < max)
            max = (uint32_t)room;
    }
    /* The moves first: the messages it leased are then checked as before. */
    if (q == SK_DLQ_SOURCE && res->code == KYU_OK && k->queues[q].exists)
        model_dead_letter_receive(c, cmd, q, res, max);
    if (q == SK_FIFO && res->code == KYU_OK && k->queues[q].exists)
        check_fifo_receive(c, cmd, q, res, max);
    uint32_t gens[KYU_BATCH_MAX] = {0};
    uint64_t seqs[KYU_BATCH_MAX] = {0};
    for (size_t j = 0; j < res->n_msgs && c->result == SIM_OK; j++) {
        const kyu_msg_meta_t *mm = &res->msgs[j];
        uint64_t n = sk_parse_id(mm->message_id), seq;
        uint32_t gen;
        sk_msg_t *m = sk_msg(k, n);
        k->receives_checked++;
        if (k->queues[q].fair) /* its group served: the next stamp, in the order taken */
            k->queues[q].tags[group_ix(m->tgroup)] = ++k->queues[q].stamp;
        if (!kyu_handle_parse(mm->handle, &seq, &gen) || m->status != SK_LIVE ||
            m->client_deleted || m->q != q || m->qgen != k->queues[q].gen) {
            sim_violation(
                c, SIM_SAFETY, "%s: a receive on %s at %llu returned message %llu, which is %s%s",
                m->status == SK_DELETED || m->client_deleted ? "deleted stays deleted" : "receive",
                cmd->queue, (unsigned long long)cmd->now_ms, (unsigned long long)n,
                status_name(m->status), m->client_deleted ? " (its delete was acknowledged)" : "");
            return;
        }
        if (m->lease_until > cmd->now_ms) {
            sim_violation(c, SIM_SAFETY,
                          "lease re-granted: message %llu is leased until %llu, received again "
                          "at %llu (%llu ms early)",
                          (unsigned long long)n, (unsigned long long)m->lease_until,
                          (unsigned long long)cmd->now_ms,
                          (unsigned long long)(m->lease_until - cmd->now_ms));
            return;
        }
        if (mm->receive_count != m->receives + 1 || gen <= m->gen) {
            sim_violation(c, SIM_SAFETY,
                          "receive of message %llu: receive count %u (expected %u), lease "
                          "generation %u after %u",
                          (unsigned long long)n, mm->receive_count, m->receives + 1, gen, m->gen);
            return;
        }
        /* a standard queue's message: t0's copies carry the publish's group, nothing else has
         * one (q3.fifo's groups: check_fifo_receive) */
        if (q != SK_FIFO && strcmp(mm->group_id, m->tgroup) != 0) {
            sim_violation(c, SIM_SAFETY,
                          "topic group: message %llu received from %s has MessageGroupId '%s', "
                          "its publish had '%s'",
                          (unsigned long long)n, cmd->queue, mm->group_id, m->tgroup);
            return;
        }
        bool moved_here = mm->dlq_source[0] != '\0';
        if (moved_here != (m->moved_receives > 0) ||
            (moved_here &&
             (strcmp(mm->dlq_source, "q1") != 0 || mm->dlq_receive_count != m->moved_receives))) {
            sim_violation(c, SIM_SAFETY,
                          "dead-letter move: message %llu received from %s says it came from "
                          "'%s' after %u receives (the model: moved after %u)",
                          (unsigned long long)n, cmd->queue, mm->dlq_source, mm->dlq_receive_count,
                          m->moved_receives);
            return;
        }
        m->receives++;
        m->gen = gen;
        m->in_heap = true;
        int64_t vt = in->vt >= 0 ? in->vt : (int64_t)k->queues[q].vt;
        m->lease_until = cmd->now_ms + (uint64_t)vt * 1000;
        map_seq(k, seq, n);
        gens[j] = gen;
        seqs[j] = m->seq;
        if (j < SK_RECV_MAX) {
            out->ids[j] = n;
            out->n = j + 1;
        }
    }
    sk_key_t *rec = c->result == SIM_OK ? record_attempt(k, in, cmd, res) : NULL;
    if (rec) {
        rec->n = res->n_msgs < SK_RECV_MAX ? res->n_msgs : SK_RECV_MAX;
        memcpy(rec->ids, out->ids, sizeof(rec->ids));
        memcpy(rec->gens, gens, sizeof(rec->gens));
        memcpy(rec->seqs, seqs, sizeof(rec->seqs));
    }
}

static void on_handles(sim_cluster_t *c, const kyu_command_t *cmd, const sk_intent_t *in,
                       const kyu_result_t *res, sk_outcome_t *out)
{
    sk_t *k = sk(c);
    const sk_key_t *kk = first_attempt(k, in, cmd);
    if (kk) {
        /* A retry answers the first attempt's results and changes nothing. */
        bool same = res->code == KYU_OK && res->n_results == kk->n;
        for (size_t j = 0; same && j < kk->n; j++)
            same = res->results[j] == kk->results[j];
        if (!same)
            applied_twice(c, in, cmd, kk, "other results");
        for (size_t j = 0; j < res->n_results && j < SK_RECV_MAX; j++)
            out->results[j] = res->results[j];
        k->dedup_hits++;
        return;
    }
    sk_key_t *rec = record_attempt(k, in, cmd, res);
    if (rec) {
        rec->n = res->n_results < SK_RECV_MAX ? res->n_results : SK_RECV_MAX;
        for (size_t j = 0; j < rec->n; j++)
            rec->results[j] = res->results[j];
    }
    for (size_t j = 0; j < res->n_results && j < cmd->n && c->result == SIM_OK; j++) {
        if (j < SK_RECV_MAX)
            out->results[j] = res->results[j];
        if (res->results[j] != KYU_OK)
            continue;
        uint32_t gen = 0;
        uint64_t n = msg_of_handle(k, cmd->handles[j], &gen);
        sk_msg_t *m = sk_msg(k, n);
        if (!n || m->status != SK_LIVE || gen != m->gen) {
            sim_violation(c, SIM_SAFETY,
                          "%s with handle %s answered OK for message %llu, which is %s (lease "
                          "generation %u, handle's %u)",
                          cmd->type == KYU_CMD_DELETE ? "delete" : "change visibility",
                          cmd->handles[j], (unsigned long long)n, status_name(m->status), m->gen,
                          gen);
            return;
        }
        if (cmd->type == KYU_CMD_DELETE) {
            m->status = SK_DELETED;
            k->deletes_checked++;
        } else {
            m->lease_until = cmd->now_ms + (uint64_t)(cmd->vt > 0 ? cmd->vt : 0) * 1000;
        }
    }
}

/* The MessageRetentionPeriod a decoded CREATE_QUEUE or SET_QUEUE_ATTRIBUTES carries, or
 * otherwise. */
static uint32_t retention_of(const kyu_command_t *cmd, uint32_t otherwise)
{
    kyu_queue_ext_t x;
    uint64_t set = 0;
    kyu_qattrs_defaults(&x);
    if (cmd->qx_len && kyu_qattrs_decode(cmd->qx_mp, cmd->qx_len, &x, &set) &&
        (set & KYU_F_RETENTION))
        return x.retention;
    return otherwise;
}

static void on_queue(sim_cluster_t *c, const kyu_command_t *cmd, const sk_intent_t *in, int q,
                     const kyu_result_t *res)
{
    sk_t *k = sk(c);
    uint32_t vt = cmd->vt >= 0 ? (uint32_t)cmd->vt : KYU_VISIBILITY_DEFAULT;
    if (cmd->type == KYU_CMD_CREATE_QUEUE) {
        uint32_t delay = cmd->has_delay ? cmd->delay : 0;
        uint32_t retention = retention_of(cmd, KYU_RETENTION_DEFAULT);
        /* q1's RedrivePolicy needs q2 when q1 is made. */
        bool ok = k->queues[q].exists ? k->queues[q].vt == vt && k->queues[q].delay == delay &&
                                            k->queues[q].retention == retention
                                      : q != SK_DLQ_SOURCE || k->queues[SK_DLQ].exists;
        if (ok != (res->code == KYU_OK))
            sim_violation(c, SIM_SAFETY, "create %s (vt %u) answered %s", cmd->queue, vt,
                          kyu_code_name(res->code));
        if (res->code == KYU_OK && !k->queues[q].exists) {
            k->queues[q].exists = true;
            k->queues[q].gen++;
            k->queues[q].vt = vt;
            k->queues[q].delay = delay;
            k->queues[q].retention = retention;
            k->queues[q].moved_in = false;
            k->queues[q].fair = false;
            k->queues[q].stamp = 0;
            memset(k->queues[q].tags, 0, sizeof k->queues[q].tags);
            k->tasks[q].running = false; /* a new queue has no task */
        }
        return;
    }
    if (cmd->type == KYU_CMD_SET_QUEUE_ATTRIBUTES) {
        /* Later receives without a vt of their own lease for the new one; later sends wait
         * for the new delay. */
        if (k->queues[q].exists != (res->code == KYU_OK)) {
            sim_violation(c, SIM_SAFETY, "set attributes of %s (vt %u) answered %s", cmd->queue, vt,
                          kyu_code_name(res->code));
            return;
        }
        if (res->code == KYU_OK && cmd->vt >= 0)
            k->queues[q].vt = vt;
        if (res->code == KYU_OK && cmd->has_delay)
            k->queues[q].delay = cmd->delay;
        if (res->code == KYU_OK)
            k->queues[q].retention = retention_of(cmd, k->queues[q].retention);
        return;
    }
    /* DELETE_QUEUE or PURGE_QUEUE: every message of the queue sent before it is gone (a
     * purge keeps the queue). */
    bool purge = cmd->type == KYU_CMD_PURGE_QUEUE;
    const sk_key_t *kk = first_attempt(k, in, cmd);
    if (kk) {
        /* A retried queue deletion or purge answers OK and deletes nothing more (not a queue
         * of the same name created since, nor the messages sent since). */
        if (res->code != KYU_OK)
            applied_twice(c, in, cmd, kk, kyu_code_name(res->code));
        k->dedup_hits++;
        return;
    }
    /* q2 is q1's dead-letter queue: not deleted while q1 exists (no force); a purge is. */
    bool in_use = !purge && q == SK_DLQ && k->queues[SK_DLQ_SOURCE].exists;
    if ((k->queues[q].exists && !in_use) != (res->code == KYU_OK) ||
        (in_use && k->queues[q].exists && res->code != KYU_ERR_QUEUE_IN_USE)) {
        sim_violation(c, SIM_SAFETY, "%s queue %s answered %s", purge ? "purge" : "delete",
                      cmd->queue, kyu_code_name(res->code));
        return;
    }
    record_attempt(k, in, cmd, res);
    if (res->code != KYU_OK)
        return;
    for (uint64_t n = 1; n <= k->next_msg && n < k->msgs_cap; n++)
        if (k->msgs[n].status == SK_LIVE && k->msgs[n].q == q &&
            k->msgs[n].qgen == k->queues[q].gen)
            k->msgs[n].status = SK_GONE;
    if (!purge) {
        k->queues[q].exists = false;
        k->tasks[q].running = false; /* its tasks go with it */
        /* and its subscriptions (kyu_sm_topics_drop_queue), the others in their order */
        size_t kept = 0;
        for (size_t i = 0; i < k->n_subs; i++)
            if (k->subs[i].q != q)
                k->subs[kept++] = k->subs[i];
        k->n_subs = kept;
        if (q == SK_FIFO)
            k->fsub_id = 0; /* t1.fifo's too */
    }
}

/* Topic t0 (op_topic.c): CREATE_TOPIC, SUBSCRIBE, UNSUBSCRIBE and PUBLISH against the model's
 * subscriptions. A publish applied (not a retry of a keyed one) enqueues one copy, a new
 * message, into each queue subscribed at its entry, in their order, and none into the
 * others: check_counts then holds every queue's count to the model's after the entry (all or
 * none), and the copies go through the checks of every message from then on. */
/* The filter engine's verdict (proto/filter.c) on entry j of publish cmd for
 * sk_policies[policy]. */
static bool policy_matches(sim_cluster_t *c, int policy, const kyu_command_t *cmd, size_t j)
{
    const sk_policy_t *p = &sk_policies[policy];
    if (!p->json)
        return true;
    kyu_filter_t *f = NULL;
    kyu_err_t err;
    kyu_err_clear(&err);
    if (kyu_filter_compile(p->json, strlen(p->json), (kyu_filter_scope_t)p->scope, &f, NULL,
                           &err) != KYU_OK) {
        sim_violation(c, SIM_SAFETY, "topic: the workload's policy %d is refused: %s", policy,
                      err.msg);
        return false;
    }
    bool match = kyu_filter_match(f, &cmd->attrs[j], cmd->bodies[j], cmd->body_lens[j]);
    kyu_filter_destroy(&f);
    return match;
}

/* A publish's copy for subscription sub into queue q: a new message (the next seq, the
 * queue's DelaySeconds), its id registered as the copy's (sim_kyu.c). */
static sk_msg_t *add_copy(sk_t *k, const char *pub_id, uint64_t sub, int q, uint64_t now)
{
    char sub_id[KYU_UUID_LEN + 1];
    sk_format_sub_id(sub_id, sub);
    uint64_t n = ++k->next_msg;
    sk_copy_register(pub_id, sub_id, n);
    sk_msg_t *m = sk_msg(k, n);
    m->status = SK_LIVE;
    m->q = (uint8_t)q;
    m->qgen = k->queues[q].gen;
    m->seq = ++k->next_seq;
    m->sent_ms = now;
    uint64_t delay_ms = (uint64_t)k->queues[q].delay * 1000;
    m->lease_until = now + delay_ms;
    m->in_heap = delay_ms > 0;
    k->copies++;
    return m;
}

/* The FIFO topic t1.fifo (op_topic.c), q3.fifo its only subscriber (raw): a publish is
 * answered with its own MessageId and enqueues one copy in q3.fifo, in its group, after every
 * earlier one (check_fifo_receive then holds the receives to group order); or, when its
 * deduplication id was published within the window, it is answered with the first publish's
 * MessageId and enqueues nothing (also after the copy went). */
static void on_fifo_topic(sim_cluster_t *c, const kyu_command_t *cmd, const sk_intent_t *in,
                          const kyu_result_t *res)
{
    sk_t *k = sk(c);
    if (cmd->type == KYU_CMD_CREATE_TOPIC) {
        if (res->code != KYU_OK)
            sim_violation(c, SIM_SAFETY, "fifo topic: create %s answered %s", cmd->topic,
                          kyu_code_name(res->code));
        k->ftopic_exists = true;
        return;
    }
    if (cmd->type == KYU_CMD_SUBSCRIBE) {
        kyu_code_t want = !k->ftopic_exists            ? KYU_ERR_NO_SUCH_TOPIC
                          : !k->queues[SK_FIFO].exists ? KYU_ERR_NO_SUCH_QUEUE
                                                       : KYU_OK;
        uint64_t id = k->fsub_id ? k->fsub_id : sk_parse_sub_id(cmd->sub_id);
        if (res->code != want ||
            (want == KYU_OK && (res->n_ids != 1 || sk_parse_sub_id(res->ids[0]) != id)))
            sim_violation(c, SIM_SAFETY, "fifo topic: subscribe %s answered %s, the model %s",
                          cmd->queue, kyu_code_name(res->code), kyu_code_name(want));
        else if (want == KYU_OK)
            k->fsub_id = id;
        return;
    }
    if (cmd->type != KYU_CMD_PUBLISH)
        return;
    sk_key_t *kk = first_attempt(k, in, cmd);
    if (kk) {
        char first[KYU_UUID_LEN + 1] = "";
        sk_format_pub_id(first, kk->ids[0]);
        if (res->code != KYU_OK || res->n_ids != 1 || strcmp(res->ids[0], first) != 0)
            applied_twice(c, in, cmd, kk, "fifo publish: another MessageId");
        k->dedup_hits++;
        return;
    }
    kyu_code_t want = k->ftopic_exists ? KYU_OK : KYU_ERR_NO_SUCH_TOPIC;
    const struct sk_fdedup *dup = NULL;
    for (size_t i = 0; i < SK_FDEDUP; i++) {
        const struct sk_fdedup *r = &k->fdedup[i];
        if (r->pub && r->dedup == in->dedup &&
            !(cmd->now_ms >= KYU_FIFO_DEDUP_WINDOW_MS &&
              r->t <= cmd->now_ms - KYU_FIFO_DEDUP_WINDOW_MS) &&
            (!dup || r->t > dup->t))
            dup = r;
    }
    char want_id[KYU_UUID_LEN + 1];
    if (dup)
        sk_format_pub_id(want_id, dup->pub);
    else
        snprintf(want_id, sizeof want_id, "%s", cmd->ids[0]);
    if (res->code != want ||
        (want == KYU_OK && (res->n_ids != 1 || strcmp(res->ids[0], want_id) != 0))) {
        sim_violation(c, SIM_SAFETY,
                      "fifo publish: %s (deduplication id p%llu) answered %s '%s', the model %s "
                      "'%s'",
                      cmd->ids[0], (unsigned long long)in->dedup, kyu_code_name(res->code),
                      res->n_ids ? res->ids[0] : "", kyu_code_name(want), want_id);
        return;
    }
    if (want != KYU_OK)
        return;
    if (dup) {
        k->fdups++;
    } else {
        k->fpublishes++;
        k->fdedup[k->fdedup_next++ % SK_FDEDUP] =
            (struct sk_fdedup){in->dedup, sk_parse_pub(cmd->ids[0]), cmd->now_ms};
        ++k->next_seq; /* the publish's own SequenceNumber */
        if (k->fsub_id) {
            add_mark(k, cmd->now_ms);
            add_copy(k, cmd->ids[0], k->fsub_id, SK_FIFO, cmd->now_ms)->group =
                (uint8_t)(in->dedup % SK_FIFO_GROUPS);
        }
    }
    if ((kk = record_attempt(k, in, cmd, res)) != NULL) {
        kk->n = 1;
        kk->ids[0] = sk_parse_pub(res->ids[0]);
    }
}

static void on_topic(sim_cluster_t *c, const kyu_command_t *cmd, const sk_intent_t *in,
                     const kyu_result_t *res)
{
    sk_t *k = sk(c);
    if (in->fifo) {
        on_fifo_topic(c, cmd, in, res);
        return;
    }
    if (cmd->type == KYU_CMD_CREATE_TOPIC) {
        if (res->code != KYU_OK)
            sim_violation(c, SIM_SAFETY, "topic: create %s answered %s", cmd->topic,
                          kyu_code_name(res->code));
        k->topic_exists = true;
        return;
    }
    if (cmd->type == KYU_CMD_SUBSCRIBE) {
        int q = queue_index(cmd->queue);
        size_t at = k->n_subs;
        for (size_t i = 0; i < k->n_subs; i++)
            if (k->subs[i].q == q)
                at = i;
        /* the same queue again: its subscription if raw and policy are the same, else refused */
        bool other =
            at < k->n_subs && (k->subs[at].raw != cmd->raw || k->subs[at].policy != in->policy);
        kyu_code_t want = !k->topic_exists                ? KYU_ERR_NO_SUCH_TOPIC
                          : q < 0 || !k->queues[q].exists ? KYU_ERR_NO_SUCH_QUEUE
                          : other                         ? KYU_ERR_INVALID_ARGUMENT
                                                          : KYU_OK;
        uint64_t id = at < k->n_subs ? k->subs[at].id : sk_parse_sub_id(cmd->sub_id);
        if (res->code != want ||
            (want == KYU_OK && (res->n_ids != 1 || sk_parse_sub_id(res->ids[0]) != id))) {
            sim_violation(c, SIM_SAFETY,
                          "topic: subscribe %s (%s) answered %s '%s', the model %s subscription "
                          "%llu",
                          cmd->queue, cmd->raw ? "raw" : "enveloped", kyu_code_name(res->code),
                          res->n_ids ? res->ids[0] : "", kyu_code_name(want),
                          (unsigned long long)id);
            return;
        }
        if (want == KYU_OK && at == k->n_subs) {
            k->subs[k->n_subs].q = q;
            k->subs[k->n_subs].raw = cmd->raw;
            k->subs[k->n_subs].policy = in->policy;
            k->subs[k->n_subs++].id = id;
        }
        return;
    }
    if (cmd->type == KYU_CMD_SET_SUBSCRIPTION_ATTRIBUTES) {
        uint64_t id = sk_parse_sub_id(cmd->sub_id);
        size_t at = k->n_subs;
        for (size_t i = 0; i < k->n_subs; i++)
            if (k->subs[i].id == id)
                at = i;
        kyu_code_t want = at < k->n_subs ? KYU_OK : KYU_ERR_NO_SUCH_SUBSCRIPTION;
        if (res->code != want) {
            sim_violation(c, SIM_SAFETY,
                          "topic: subscription %llu's policy set to %d answered %s, the model %s",
                          (unsigned long long)id, in->policy, kyu_code_name(res->code),
                          kyu_code_name(want));
            return;
        }
        if (want == KYU_OK) {
            k->subs[at].policy = in->policy;
            k->sub_changes++;
        }
        return;
    }
    if (cmd->type == KYU_CMD_UNSUBSCRIBE) {
        uint64_t id = sk_parse_sub_id(cmd->sub_id);
        size_t at = k->n_subs;
        for (size_t i = 0; i < k->n_subs; i++)
            if (k->subs[i].id == id)
                at = i;
        kyu_code_t want = at < k->n_subs ? KYU_OK : KYU_ERR_NO_SUCH_SUBSCRIPTION;
        if (res->code != want) {
            sim_violation(c, SIM_SAFETY, "topic: unsubscribe %llu answered %s, the model %s",
                          (unsigned long long)id, kyu_code_name(res->code), kyu_code_name(want));
            return;
        }
        if (want == KYU_OK) {
            memmove(&k->subs[at], &k->subs[at + 1], (k->n_subs - at - 1) * sizeof(k->subs[0]));
            k->n_subs--;
        }
        return;
    }
    if (cmd->type != KYU_CMD_PUBLISH)
        return; /* DELETE_TOPIC: the workload proposes none */
    /* A retry within the window answers the first attempt's MessageIds (a batch's refused
     * entries without one) and enqueues nothing. */
    sk_key_t *kk = first_attempt(k, in, cmd);
    if (kk) {
        bool same = res->code == KYU_OK && res->n_ids == kk->n;
        for (size_t j = 0; same && j < kk->n; j++) {
            char first[KYU_UUID_LEN + 1] = "";
            if (kk->ids[j])
                sk_format_pub_id(first, kk->ids[j]);
            same = strcmp(res->ids[j], first) == 0;
        }
        if (!same)
            applied_twice(c, in, cmd, kk, "publish: other MessageIds");
        k->dedup_hits++;
        return;
    }
    kyu_code_t want = k->topic_exists ? KYU_OK : KYU_ERR_NO_SUCH_TOPIC;
    if (res->code != want || (want == KYU_OK && res->n_ids != cmd->n)) {
        sim_violation(c, SIM_SAFETY,
                      "publish: %s (%zu entries) to %s answered %s with %zu ids, "
                      "the model %s",
                      cmd->ids[0], cmd->n, cmd->topic, kyu_code_name(res->code), res->n_ids,
                      kyu_code_name(want));
        return;
    }
    if (want != KYU_OK)
        return;
    for (size_t j = 0; j < cmd->n; j++) {
        /* A batch entry the leader refused: its code, no id, no copy; the others each their
         * own MessageId and copies. */
        kyu_code_t code = res->n_results > j ? (kyu_code_t)res->results[j] : KYU_OK;
        const char *want_id = cmd->entry_code[j] ? "" : cmd->ids[j];
        if (code != cmd->entry_code[j] || strcmp(res->ids[j], want_id) != 0) {
            sim_violation(c, SIM_SAFETY,
                          "publish: entry %zu of %zu (%s) answered '%s' %s, the model '%s' %s",
                          j + 1, cmd->n, cmd->ids[j], res->ids[j], kyu_code_name(code), want_id,
                          kyu_code_name(cmd->entry_code[j]));
            return;
        }
        if (cmd->entry_code[j])
            continue;
        k->publishes++;
        if (k->n_subs > 0)
            add_mark(k, cmd->now_ms);
        for (size_t i = 0; i < k->n_subs; i++) {
            int q = k->subs[i].q;
            /* Fan-out follows the filter engine: a copy in exactly the queues whose policy
             * matches (the state checks then find every copy, and no other, in its queue). */
            if (!policy_matches(c, k->subs[i].policy, cmd, j)) {
                k->filtered++;
                continue;
            }
            sk_msg_t *m = add_copy(k, cmd->ids[j], k->subs[i].id, q, cmd->now_ms);
            KYU_ASSERT(strlen(cmd->group_ids[j]) < sizeof m->tgroup);
            memcpy(m->tgroup, cmd->group_ids[j], strlen(cmd->group_ids[j]) + 1);
            if (m->tgroup[0] && q != SK_FIFO)
                k->queues[q].fair = true;
        }
    }
    if ((kk = record_attempt(k, in, cmd, res)) != NULL) {
        kk->n = cmd->n;
        for (size_t j = 0; j < cmd->n && j < SK_RECV_MAX; j++)
            kk->ids[j] = cmd->entry_code[j] ? 0 : sk_parse_pub(cmd->ids[j]);
    }
}

static uint64_t live_in(const sk_t *k, int q)
{
    uint64_t live = 0;
    for (uint64_t n = 1; n <= k->next_msg && n < k->msgs_cap; n++)
        live += k->msgs[n].status == SK_LIVE && k->msgs[n].q == q &&
                k->msgs[n].qgen == k->queues[q].gen;
    return live;
}

/* START_MOVE_TASK and CANCEL_MOVE_TASK (op_redrive.c): refused as check_start refuses (no
 * queue, not a dead-letter queue (no message moved in and no RedrivePolicy naming it: q1's
 * names q2 while q1 exists), a task running, the destination itself or missing); a task
 * started has the queue's messages to move (none: it ends at once); a cancel ends it. */
static void on_move_task(sim_cluster_t *c, const kyu_command_t *cmd, int q, const kyu_result_t *res,
                         uint64_t index)
{
    sk_t *k = sk(c);
    bool start = cmd->type == KYU_CMD_START_MOVE_TASK;
    int dest = start && cmd->move_dest[0] ? queue_index(cmd->move_dest) : -1;
    kyu_code_t want = KYU_OK;
    if (!k->queues[q].exists)
        want = KYU_ERR_NO_SUCH_QUEUE;
    else if (!start)
        want = k->tasks[q].running ? KYU_OK : KYU_ERR_INVALID_ARGUMENT;
    else if (!(k->queues[q].moved_in || (q == SK_DLQ && k->queues[SK_DLQ_SOURCE].exists)) ||
             k->tasks[q].running || dest == q)
        want = KYU_ERR_INVALID_ARGUMENT;
    else if (cmd->move_dest[0] && (dest < 0 || !k->queues[dest].exists))
        want = KYU_ERR_NO_SUCH_QUEUE;
    if (res->code != want) {
        sim_violation(c, SIM_SAFETY, "redrive: %s of %s (entry %llu) answered %s, the model %s",
                      start ? "START_MOVE_TASK" : "CANCEL_MOVE_TASK", cmd->queue,
                      (unsigned long long)index, kyu_code_name(res->code), kyu_code_name(want));
        return;
    }
    if (want != KYU_OK)
        return;
    if (!start) {
        k->tasks[q].running = false;
        return;
    }
    k->tasks_started++;
    k->tasks[q].id = index;
    k->tasks[q].dest = dest;
    k->tasks[q].to_move = live_in(k, q);
    k->tasks[q].moved = 0;
    k->tasks[q].running = k->tasks[q].to_move > 0;
}

/* REDRIVE_STEP (op_redrive.c): for the queue's running task with the step's id, up to max
 * (what is left to move, at most KYU_REDRIVE_STEP_MAX and the step's own; the workload's
 * tasks have no rate) visible messages in the order a receive takes them each move, once,
 * as a new message of their destination (the task's, or q1 for a message dead-lettered from
 * it): a new seq, never received, sent now, visible after the destination's DelaySeconds. A
 * message with no destination
 * (sent to q2 directly, its source queue or the task's destination gone) ends the task FAILED
 * and stays. The task completes once it moved what it had to or its queue is empty. Returns
 * how many moved; the node's counts after the entry must agree (check_counts). */
static uint64_t on_redrive_step(sim_cluster_t *c, const kyu_command_t *cmd, int q,
                                const kyu_result_t *res)
{
    sk_t *k = sk(c);
    if (res->code != KYU_OK) {
        sim_violation(c, SIM_SAFETY, "redrive: a step of %s at %llu answered %s", cmd->queue,
                      (unsigned long long)cmd->now_ms, kyu_code_name(res->code));
        return 0;
    }
    if (!k->queues[q].exists || !k->tasks[q].running || k->tasks[q].id != cmd->move_task)
        return 0; /* ended (or its queue deleted) since the leader proposed it */
    uint64_t left =
        k->tasks[q].to_move > k->tasks[q].moved ? k->tasks[q].to_move - k->tasks[q].moved : 0;
    uint64_t max = left < KYU_REDRIVE_STEP_MAX ? left : KYU_REDRIVE_STEP_MAX;
    if (max > cmd->move_max)
        max = cmd->move_max;
    if (max > 0)
        add_mark(k, cmd->now_ms);
    size_t n_cand = 0;
    sk_cand_t *cand = k->queues[q].fair ? fair_in_order(k, q, cmd->now_ms, &n_cand)
                                        : visible_in_order(k, q, cmd->now_ms, &n_cand);
    uint64_t n = 0;
    for (size_t i = 0; i < n_cand && n < max; i++) {
        sk_msg_t *m = sk_msg(k, cand[i].n);
        int dest = k->tasks[q].dest >= 0   ? k->tasks[q].dest
                   : m->moved_receives > 0 ? SK_DLQ_SOURCE
                                           : -1;
        if (dest < 0 || dest == q || !k->queues[dest].exists) {
            k->tasks[q].running = false; /* FAILED; the message stays as it was */
            break;
        }
        m->q = (uint8_t)dest;
        m->qgen = k->queues[dest].gen;
        if (m->tgroup[0] && dest != SK_FIFO)
            k->queues[dest].fair = true;
        m->seq = ++k->next_seq;
        m->sent_ms = cmd->now_ms;
        /* Its destination's DelaySeconds holds it back, as for a send there. */
        m->lease_until = cmd->now_ms + (uint64_t)k->queues[dest].delay * 1000;
        m->in_heap = k->queues[dest].delay > 0;
        m->receives = 0;
        m->gen = 0;
        m->moved_receives = 0;
        n++;
    }
    free(cand);
    k->redriven += n;
    k->tasks[q].moved += n;
    if (k->tasks[q].running && (k->tasks[q].moved >= k->tasks[q].to_move || live_in(k, q) == 0))
        k->tasks[q].running = false;
    return n;
}

/* EXPIRE_MESSAGES at the leader's time now: in every queue, the messages below the seq of the
 * first mark whose until is past now - the queue's period go (sm_expiry.c). Each must have
 * been held its whole period; none left may be held much past it. */
static void on_expire(sim_cluster_t *c, const kyu_command_t *cmd, const kyu_result_t *res)
{
    sk_t *k = sk(c);
    k->expiries++;
    if (res->code != KYU_OK) {
        sim_violation(c, SIM_SAFETY, "retention: an expiry at %llu answered %s",
                      (unsigned long long)cmd->now_ms, kyu_code_name(res->code));
        return;
    }
    uint64_t below[SK_QUEUES];
    for (int q = 0; q < SK_QUEUES; q++) {
        uint64_t period = (uint64_t)k->queues[q].retention * 1000;
        uint64_t cutoff = cmd->now_ms > period ? cmd->now_ms - period : 0;
        size_t i = 0;
        while (i < k->marks_n && k->marks[i].until <= cutoff)
            i++;
        below[q] = i < k->marks_n ? k->marks[i].seq : k->next_seq + 1;
    }
    for (uint64_t n = 1; n <= k->next_msg && n < k->msgs_cap && c->result == SIM_OK; n++) {
        sk_msg_t *m = &k->msgs[n];
        if (m->status != SK_LIVE || !k->queues[m->q].exists || m->qgen != k->queues[m->q].gen)
            continue;
        uint64_t period = (uint64_t)k->queues[m->q].retention * 1000;
        uint64_t age = cmd->now_ms > m->sent_ms ? cmd->now_ms - m->sent_ms : 0;
        if (m->seq < below[m->q]) {
            if (age < period) {
                sim_violation(c, SIM_SAFETY,
                              "retention: the expiry at %llu takes message %llu of q%d, sent at "
                              "%llu, %llu ms before its period of %llu ms ended",
                              (unsigned long long)cmd->now_ms, (unsigned long long)n, m->q,
                              (unsigned long long)m->sent_ms, (unsigned long long)(period - age),
                              (unsigned long long)period);
                return;
            }
            m->status = SK_EXPIRED;
            m->expired_ms = cmd->now_ms;
            k->expired++;
        } else if (age >= period + MARK_STEP_MS + EXPIRY_SLACK_MS) {
            sim_violation(c, SIM_SAFETY,
                          "retention: the expiry at %llu leaves message %llu of q%d, sent at "
                          "%llu, %llu ms past its period of %llu ms",
                          (unsigned long long)cmd->now_ms, (unsigned long long)n, m->q,
                          (unsigned long long)m->sent_ms, (unsigned long long)(age - period),
                          (unsigned long long)period);
            return;
        }
    }
}

/* After every entry, each queue a node holds has exactly the model's live messages in its
 * counters (kept exact by the state machine): an expiry that took one message too many or
 * too few is seen at the entry that did it. On a difference the state's messages tell which.
 * expiry: the time of the entry's EXPIRE_MESSAGES, 0 when it has none. */
static void check_counts(sim_cluster_t *c, sim_node_t *nd, uint64_t expiry, uint64_t redriven,
                         uint64_t published)
{
    sk_t *k = sk(c);
    sk_node_t *kn = nd->app;
    for (int q = 0; q < SK_QUEUES && c->result == SIM_OK; q++) {
        char name[8] = {'q', (char)('0' + q), 0};
        if (q == SK_FIFO)
            snprintf(name, sizeof name, "q3.fifo");
        kyu_queue_attrs_t at;
        kyu_err_t err;
        bool exists = kyu_sm_queue_attributes(kn->sm, name, 0, &at, &err) == KYU_OK;
        uint64_t live = 0;
        for (uint64_t n = 1; exists && n <= k->next_msg && n < k->msgs_cap; n++)
            live += k->msgs[n].status == SK_LIVE && k->msgs[n].q == q &&
                    k->msgs[n].qgen == k->queues[q].gen;
        uint64_t held = exists ? (uint64_t)(at.visible + at.not_visible + at.delayed) : 0;
        if (exists == k->queues[q].exists && held == live)
            continue;
        if (exists && k->queues[q].exists && held < live) {
            /* Which ones went: the state's messages (the run ends here, so the flush that
             * reading them takes changes nothing that matters). */
            size_t n = 0;
            uint64_t *ids = sk_state_messages(c, kn, &n);
            uint8_t *in_state = calloc(k->next_msg + 2, 1);
            KYU_ASSERT(in_state);
            for (size_t i = 0; i < n; i++)
                if (ids[i] && ids[i] <= k->next_msg)
                    in_state[ids[i]] = 1;
            for (uint64_t m = 1; m <= k->next_msg && m < k->msgs_cap && c->result == SIM_OK; m++) {
                const sk_msg_t *x = &k->msgs[m];
                if (x->status != SK_LIVE || x->q != q || x->qgen != k->queues[q].gen || in_state[m])
                    continue;
                int64_t left = (int64_t)(x->sent_ms + (uint64_t)k->queues[q].retention * 1000) -
                               (int64_t)expiry;
                if (!expiry)
                    sim_violation(c, SIM_SAFETY,
                                  "%scommitted send lost: node %llu's state at %llu lost message "
                                  "%llu of q%d",
                                  redriven    ? "redrive: a step moved a message nowhere: "
                                  : published ? "publish: a copy is missing: "
                                              : "",
                                  (unsigned long long)nd->id, (unsigned long long)nd->sm_applied,
                                  (unsigned long long)m, q);
                else
                    sim_violation(
                        c, SIM_SAFETY,
                        "retention: expired %s: the expiry at %llu (entry %llu, node %llu) took "
                        "message %llu of q%d, sent at %llu, %lld ms %s its period ended, which "
                        "its marks keep",
                        left > 0 ? "early" : "against its marks", (unsigned long long)expiry,
                        (unsigned long long)nd->sm_applied, (unsigned long long)nd->id,
                        (unsigned long long)m, q, (unsigned long long)x->sent_ms,
                        (long long)(left > 0 ? left : -left), left > 0 ? "before" : "after");
            }
            free(in_state);
            free(ids);
        }
        if (c->result == SIM_OK && redriven)
            sim_violation(c, SIM_SAFETY,
                          "redrive: node %llu's state at %llu holds %llu messages in %s, the model "
                          "%llu after a step moved %llu, each exactly once (a message duplicated "
                          "or lost)",
                          (unsigned long long)nd->id, (unsigned long long)nd->sm_applied,
                          (unsigned long long)held, name, (unsigned long long)live,
                          (unsigned long long)redriven);
        if (c->result == SIM_OK && published)
            sim_violation(c, SIM_SAFETY,
                          "publish: node %llu's state at %llu holds %llu messages in %s, the model "
                          "%llu after %llu publishes to a topic with %zu subscriptions (a copy in "
                          "every subscribed queue whose filter policy matches, and no other; all "
                          "or none)",
                          (unsigned long long)nd->id, (unsigned long long)nd->sm_applied,
                          (unsigned long long)held, name, (unsigned long long)live,
                          (unsigned long long)published, k->n_subs);
        if (c->result == SIM_OK)
            sim_violation(c, SIM_SAFETY,
                          "counts: node %llu's state at %llu holds %llu messages in %s (%s), the "
                          "model %llu (%s)%s",
                          (unsigned long long)nd->id, (unsigned long long)nd->sm_applied,
                          (unsigned long long)held, name, exists ? "exists" : "no such queue",
                          (unsigned long long)live, k->queues[q].exists ? "exists" : "deleted",
                          expiry ? " after an expiry" : "");
    }
}

void sk_oracle_stream(sim_cluster_t *c, sim_node_t *nd, const kyu_raft_entry_t *e,
                      const kyu_result_t *res, size_t n)
{
    sk_t *k = sk(c);
    if (e->index != k->stream + 1) {
        sim_violation(c, SIM_SAFETY, "entry %llu first applied after %llu (a gap)",
                      (unsigned long long)e->index, (unsigned long long)k->stream);
        return;
    }
    k->stream = e->index;
    if (e->type != KYU_RAFT_ENTRY_NORMAL || e->len == 0)
        return;
    size_t off = 0;
    uint64_t expiry = 0, redriven = 0, published = 0;
    for (size_t i = 0; off < e->len && c->result == SIM_OK; i++) {
        kyu_command_t cmd;
        kyu_err_t err;
        size_t start = off;
        if (kyu_command_decode(e->data, e->len, &off, &cmd, &err) != KYU_OK || i >= n) {
            sim_violation(c, SIM_SAFETY, "entry %llu: command %zu does not decode or has no result",
                          (unsigned long long)e->index, i);
            return;
        }
        if (cmd.type == KYU_CMD_SET_MEMBER || cmd.type == KYU_CMD_DROP_MEMBER ||
            cmd.type == KYU_CMD_SET_HANDLE_KEY || cmd.type == KYU_CMD_UNTAG_QUEUE ||
            cmd.type == KYU_CMD_RELEASE_LEASES) {
            /* The address book (membership.c), the handle key (frontend.c), UNTAG_QUEUE and
             * worker sessions' releases (workers.c): the workload proposes none. */
            sim_violation(c, SIM_SAFETY, "entry %llu: an internal command nobody proposed",
                          (unsigned long long)e->index);
            return;
        }
        /* What the client asked (the encoding may differ under a planted bug): every request
         * is found again, however late its entry is first applied (once a ring of 512
         * forgot some, and t1.fifo's subscribe and publishes were checked as t0's: seed 5121
         * on 4-7 nodes, docs/RAFT.md). The leader's expiries and redrive steps, which no
         * request made, stand for themselves. */
        sk_intent_t own = {.type = cmd.type, .vt = cmd.vt, .rq_key = cmd.rq_key};
        const sk_intent_t *in = sk_sent_find(k, sim_hash(e->data + start, off - start, 0x636d64));
        if (!in && cmd.type != KYU_CMD_EXPIRE_MESSAGES && cmd.type != KYU_CMD_REDRIVE_STEP) {
            sim_violation(c, SIM_SAFETY, "entry %llu: command %zu (type %d) was never proposed",
                          (unsigned long long)e->index, i, (int)cmd.type);
            return;
        }
        if (!in)
            in = &own;
        sk_outcome_t outcome, *out = &outcome;
        memset(out, 0, sizeof(*out));
        out->code = res[i].code;
        static const char *types[] = {
            [KYU_CMD_CREATE_QUEUE] = "CREATE",
            [KYU_CMD_DELETE_QUEUE] = "DELETE_QUEUE",
            [KYU_CMD_SEND] = "SEND",
            [KYU_CMD_RECEIVE] = "RECEIVE",
            [KYU_CMD_DELETE] = "DELETE",
            [KYU_CMD_CHANGE_VISIBILITY] = "CHANGE_VIS",
            [KYU_CMD_SET_MEMBER] = "SET_MEMBER",
            [KYU_CMD_DROP_MEMBER] = "DROP_MEMBER",
            [KYU_CMD_SET_HANDLE_KEY] = "HANDLE_KEY",
            [KYU_CMD_SET_QUEUE_ATTRIBUTES] = "SET_ATTRS",
            [KYU_CMD_PURGE_QUEUE] = "PURGE",
            [KYU_CMD_EXPIRE_MESSAGES] = "EXPIRE",
            [KYU_CMD_START_MOVE_TASK] = "START_MOVE",
            [KYU_CMD_REDRIVE_STEP] = "REDRIVE_STEP",
            [KYU_CMD_CANCEL_MOVE_TASK] = "CANCEL_MOVE",
            [KYU_CMD_RELEASE_LEASES] = "RELEASE",
            [KYU_CMD_UNTAG_QUEUE] = "UNTAG",
            [KYU_CMD_CREATE_TOPIC] = "CREATE_TOPIC",
            [KYU_CMD_DELETE_TOPIC] = "DELETE_TOPIC",
            [KYU_CMD_SUBSCRIBE] = "SUBSCRIBE",
            [KYU_CMD_UNSUBSCRIBE] = "UNSUBSCRIBE",
            [KYU_CMD_PUBLISH] = "PUBLISH",
            [KYU_CMD_SET_SUBSCRIPTION_ATTRIBUTES] = "SET_SUB_ATTRS",
        };
        const char *type_name = (size_t)cmd.type < sizeof types / sizeof types[0] && types[cmd.type]
                                    ? types[cmd.type]
                                    : "?";
        sim_trace(&c->trace, c->now, "  kyu %llu.%zu %s %s vt=%lld n=%zu now=%llu -> %s",
                  (unsigned long long)e->index, i, type_name, cmd.queue, (long long)cmd.vt,
                  cmd.n ? cmd.n : res[i].n_msgs, (unsigned long long)cmd.now_ms,
                  kyu_code_name(res[i].code));
        if ((cmd.type >= KYU_CMD_CREATE_TOPIC && cmd.type <= KYU_CMD_PUBLISH) ||
            cmd.type == KYU_CMD_SET_SUBSCRIPTION_ATTRIBUTES) {
            on_topic(c, &cmd, in, &res[i]);
            published += cmd.type == KYU_CMD_PUBLISH;
            continue;
        }
        if (cmd.type == KYU_CMD_EXPIRE_MESSAGES) {
            on_expire(c, &cmd, &res[i]);
            expiry = cmd.now_ms ? cmd.now_ms : 1;
            fair_drop_empty(k);
            continue;
        }
        int q = queue_index(cmd.queue);
        if (q < 0) {
            sim_violation(c, SIM_SAFETY, "entry %llu: unknown queue %s",
                          (unsigned long long)e->index, cmd.queue);
            return;
        }
        switch (cmd.type) {
        case KYU_CMD_CREATE_QUEUE:
        case KYU_CMD_DELETE_QUEUE:
        case KYU_CMD_SET_QUEUE_ATTRIBUTES:
        case KYU_CMD_PURGE_QUEUE:
            on_queue(c, &cmd, in, q, &res[i]);
            break;
        case KYU_CMD_SEND:
            on_send(c, &cmd, in, q, &res[i], out);
            break;
        case KYU_CMD_RECEIVE:
            on_receive(c, &cmd, in, q, &res[i], out);
            break;
        case KYU_CMD_DELETE:
        case KYU_CMD_CHANGE_VISIBILITY:
            on_handles(c, &cmd, in, &res[i], out);
            break;
        case KYU_CMD_SET_MEMBER:
        case KYU_CMD_DROP_MEMBER:
        case KYU_CMD_SET_HANDLE_KEY:
        case KYU_CMD_EXPIRE_MESSAGES:
        case KYU_CMD_START_MOVE_TASK:
        case KYU_CMD_CANCEL_MOVE_TASK:
            on_move_task(c, &cmd, q, &res[i], e->index);
            break;
        case KYU_CMD_REDRIVE_STEP:
            redriven += on_redrive_step(c, &cmd, q, &res[i]);
            break;
        case KYU_CMD_UNTAG_QUEUE:
        case KYU_CMD_RELEASE_LEASES:
        case KYU_CMD_CREATE_TOPIC:
        case KYU_CMD_DELETE_TOPIC:
        case KYU_CMD_SUBSCRIBE:
        case KYU_CMD_UNSUBSCRIBE:
        case KYU_CMD_PUBLISH:
        case KYU_CMD_SET_SUBSCRIPTION_ATTRIBUTES:
            break; /* refused or done above */
        }
        fair_drop_empty(k);
    }
    if (c->result == SIM_OK)
        check_counts(c, nd, expiry, redriven, published);
}

void sk_oracle_check_state(sim_cluster_t *c, sim_node_t *nd)
{
    sk_t *k = sk(c);
    size_t n = 0;
    uint64_t *ids = sk_state_messages(c, nd->app, &n);
    size_t live = 0;
    for (uint64_t m = 1; m <= k->next_msg && m < k->msgs_cap; m++)
        live += k->msgs[m].status == SK_LIVE;
    k->state_checks++;
    uint8_t *seen = calloc(k->next_msg + 2, 1);
    KYU_ASSERT(seen);
    for (size_t i = 0; i < n && c->result == SIM_OK; i++) {
        uint64_t m = ids[i];
        if (m == 0 || m > k->next_msg)
            m = 0; /* not an id the client made */
        uint8_t st = m && m < k->msgs_cap ? k->msgs[m].status : SK_UNKNOWN;
        if (st != SK_LIVE || seen[m])
            sim_violation(c, SIM_SAFETY,
                          "%s: node %llu's state at %llu holds message %llu, which is %s",
                          st == SK_DELETED ? "deleted stays deleted" : "state",
                          (unsigned long long)nd->id, (unsigned long long)nd->sm_applied,
                          (unsigned long long)m, seen[m] ? "there twice" : status_name(st));
        else
            seen[m] = 1;
    }
    for (uint64_t m = 1; c->result == SIM_OK && n != live && m <= k->next_msg && m < k->msgs_cap;
         m++)
        if (k->msgs[m].status == SK_LIVE && !seen[m])
            sim_violation(c, SIM_SAFETY,
                          "committed send lost: message %llu%s is not in node %llu's state at "
                          "%llu",
                          (unsigned long long)m, k->msgs[m].acked ? " (acknowledged)" : "",
                          (unsigned long long)nd->id, (unsigned long long)nd->sm_applied);
    free(seen);
    free(ids);
}

void sk_oracle_final(sim_cluster_t *c)
{
    sk_t *k = sk(c);
    for (int i = 0; i < c->n && c->result == SIM_OK; i++) {
        sim_node_t *nd = &c->nodes[i];
        sk_node_t *kn = nd->app;
        if (!nd->raft || !kn->sm || kyu_sm_applied_index(kn->sm) != k->stream)
            continue;
        sk_oracle_check_state(c, nd);
        sk_index_t *x = sk_index(k, k->stream);
        uint64_t d = sk_state_digest(kn);
        if (x->digest && x->digest != d)
            sim_violation(c, SIM_SAFETY,
                          "state agreement: node %llu's state at %llu differs from another's",
                          (unsigned long long)nd->id, (unsigned long long)k->stream);
        x->digest = d;
    }
    for (uint64_t m = 1; c->result == SIM_OK && m <= k->next_msg && m < k->msgs_cap; m++) {
        const sk_msg_t *x = &k->msgs[m];
        if (x->acked && x->status == SK_UNKNOWN)
            sim_violation(c, SIM_SAFETY,
                          "acknowledged send lost: message %llu was acknowledged and never "
                          "applied",
                          (unsigned long long)m);
        else if (x->acked && x->status == SK_EXPIRED &&
                 x->expired_ms < x->sent_ms + (uint64_t)k->queues[x->q].retention * 1000)
            sim_violation(c, SIM_SAFETY,
                          "acknowledged send lost: message %llu expired at %llu, sent at %llu, "
                          "before its retention period ended",
                          (unsigned long long)m, (unsigned long long)x->expired_ms,
                          (unsigned long long)x->sent_ms);
        else if (x->client_deleted && x->status == SK_LIVE)
            sim_violation(c, SIM_SAFETY,
                          "deleted stays deleted: message %llu's delete was acknowledged and it "
                          "is still in the state",
                          (unsigned long long)m);
    }
    if (c->o.verbose)
        printf("  kyu: %llu messages, %llu receives, %llu dead-letter moves, %llu redriven (%llu "
               "move tasks) and %llu deletes "
               "checked, %llu expiries took %llu messages, %llu retries (%llu answered from the "
               "request key), %llu digests, %llu installs, %llu publishes enqueued %llu copies "
               "(%llu kept out by filter policies, %llu changed in place), %llu FIFO topic "
               "publishes (%llu duplicates answered as the first), %llu FIFO receives "
               "checked\n",
               (unsigned long long)k->next_msg, (unsigned long long)k->receives_checked,
               (unsigned long long)k->moves_checked, (unsigned long long)k->redriven,
               (unsigned long long)k->tasks_started, (unsigned long long)k->deletes_checked,
               (unsigned long long)k->expiries, (unsigned long long)k->expired,
               (unsigned long long)k->retried, (unsigned long long)k->dedup_hits,
               (unsigned long long)k->digests, (unsigned long long)k->installs,
               (unsigned long long)k->publishes, (unsigned long long)k->copies,
               (unsigned long long)k->filtered, (unsigned long long)k->sub_changes,
               (unsigned long long)k->fpublishes, (unsigned long long)k->fdups,
               (unsigned long long)k->fifo_checked);
}
