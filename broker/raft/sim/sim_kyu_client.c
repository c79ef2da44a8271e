/*
 * sim_kyu_client.c - kyu-sim-kyu's client: a seeded workload of broker commands on three
 * queues, written the way the broker's frontend and replica write them: each command stamped
 * with the leader's time (kyu_replica_now) and, for a send, message ids the leader made; the
 * commands of one round appended with kyu_command_encode to one Raft entry.
 *
 * The client remembers what it was told: ids of acknowledged sends, receipt handles of
 * acknowledged receives, acknowledged deletes. Half the writes but queue creation carry a
 * request key; a keyed request whose outcome the client never learned (the leader lost, the
 * client gave up) is retried later with the same key, and some acknowledged ones are retried
 * as if their reply had been lost: the state machine must answer as the first time.
 */
#include "sim_kyu.h"

#include <string.h>

static sk_t *sk(sim_cluster_t *c)
{
    return c->app_state;
}

static const char *queue_name(int q)
{
    static const char *names[SK_QUEUES] = {"q0", "q1", "q2"};
    return names[q];
}

/* Each queue's visibility timeout in seconds (0 for q2: leases that end at once). */
static const uint32_t queue_vt[SK_QUEUES] = {2, 5, 0};

sk_prop_t *sk_prop_find(sk_t *k, uint64_t index, uint64_t term, uint64_t hash)
{
    for (size_t i = 0; i < SK_PROPS; i++)
        if (k->props[i].index == index && k->props[i].term == term && k->props[i].hash == hash &&
            k->props[i].n > 0)
            return &k->props[i];
    return NULL;
}

/* The bodies of a send are a function of its first id (or its key), so a retry sends the
 * same bodies. */
#define SK_BODY_MAX 96

static size_t body_of(uint64_t seed, size_t i, char buf[SK_BODY_MAX])
{
    snprintf(buf, SK_BODY_MAX, "body-%llu-%zu-%s", (unsigned long long)seed, i,
             (seed % 3) ? "x" : "a longer body with some more bytes in it");
    return strlen(buf);
}

static void pick_handles(sim_cluster_t *c, sk_intent_t *in)
{
    sk_t *k = sk(c);
    in->n = 0;
    if (k->n_handles == 0)
        return;
    /* The handles of one command belong to one queue: take the queue of the first one. */
    size_t first = (size_t)sim_rng_below(&c->rng, k->n_handles);
    in->q = k->handles[first].q;
    size_t want = 1 + (size_t)sim_rng_below(&c->rng, SK_RECV_MAX);
    for (size_t t = 0; t < k->n_handles && in->n < want; t++) {
        size_t j = (first + t) % k->n_handles;
        if (k->handles[j].q == in->q)
            memcpy(in->handles[in->n++], k->handles[j].h, sizeof k->handles[j].h);
    }
}

/* Half the writes but CREATE_QUEUE carry a request key. */
static void maybe_key(sim_cluster_t *c, sk_intent_t *in, uint64_t now)
{
    if (sim_rng_chance(&c->rng, 500)) {
        in->rq_key = ++sk(c)->next_key;
        in->first_now = now;
    }
}

/* Chooses the client's next request. A retry is sent only well within the dedup window of
 * its key's first attempt (past it the key may be forgotten, or not yet: both are right). */
static void choose(sim_cluster_t *c, sk_intent_t *in, uint64_t now)
{
    sk_t *k = sk(c);
    memset(in, 0, sizeof(*in));
    in->q = (int)sim_rng_below(&c->rng, SK_QUEUES);
    in->vt = -1;
    uint64_t r = sim_rng_below(&c->rng, 1000);
    if (k->n_retries > 0 && r < 120) {
        size_t i = (size_t)sim_rng_below(&c->rng, k->n_retries);
        sk_intent_t t = k->retries[i];
        k->retries[i] = k->retries[--k->n_retries];
        if (now < t.first_now + 120000) {
            *in = t;
            /* A retry is a new request: the frontend makes new ids for it. */
            if (in->type == KYU_CMD_SEND)
                for (size_t j = 0; j < in->n; j++)
                    in->ids[j] = ++k->next_msg;
            k->retried++;
            return;
        }
    }
    if (r < 180 || !k->queues[in->q].exists) {
        in->type = KYU_CMD_CREATE_QUEUE;
        /* Now and then with another visibility timeout: QUEUE_EXISTS. */
        in->vt = sim_rng_chance(&c->rng, 100) ? 9 : (int64_t)queue_vt[in->q];
    } else if (r < 190) {
        in->type = KYU_CMD_DELETE_QUEUE;
    } else if (r < 520) {
        in->type = KYU_CMD_SEND;
        in->n = 1 + (size_t)sim_rng_below(&c->rng, SK_SEND_MAX);
        for (size_t j = 0; j < in->n; j++)
            in->ids[j] = ++k->next_msg;
    } else if (r < 780) {
        in->type = KYU_CMD_RECEIVE;
        in->n = 1 + (size_t)sim_rng_below(&c->rng, SK_RECV_MAX);
        in->vt = sim_rng_chance(&c->rng, 400) ? -1 : (int64_t)sim_rng_below(&c->rng, 6);
    } else {
        in->type = r < 940 ? KYU_CMD_DELETE : KYU_CMD_CHANGE_VISIBILITY;
        pick_handles(c, in);
        in->vt = (int64_t)sim_rng_below(&c->rng, 5);
        if (in->n == 0) {
            in->type = KYU_CMD_RECEIVE;
            in->n = 1;
            in->vt = -1;
        }
    }
    if (in->type != KYU_CMD_CREATE_QUEUE)
        maybe_key(c, in, now);
}

/* The command the leader proposes for a request (what the frontend's build_command makes),
 * with the planted encoding bugs. */
static void encode(sim_cluster_t *c, const sk_intent_t *in, uint64_t now, bool retry,
                   msgpack_sbuffer *sb)
{
    kyu_command_t cmd;
    memset(&cmd, 0, sizeof(cmd));
    char bodies[SK_SEND_MAX][SK_BODY_MAX];
    cmd.type = in->type;
    cmd.now_ms = now;
    snprintf(cmd.queue, sizeof(cmd.queue), "%s", queue_name(in->q));
    cmd.vt = in->vt;
    cmd.max = in->type == KYU_CMD_RECEIVE ? (uint32_t)in->n : 1;
    if (in->type == KYU_CMD_RECEIVE && c->o.plant == SK_PLANT_VT_ZERO)
        cmd.vt = 0;
    if (in->type == KYU_CMD_SEND) {
        cmd.n = in->n;
        uint64_t seed = in->rq_key ? in->rq_key * 1000003 : in->ids[0];
        for (size_t j = 0; j < in->n; j++) {
            sk_format_id(cmd.ids[j], in->ids[j]);
            cmd.body_lens[j] = body_of(seed, j, bodies[j]);
            cmd.bodies[j] = bodies[j];
        }
    } else if (in->type == KYU_CMD_DELETE || in->type == KYU_CMD_CHANGE_VISIBILITY) {
        cmd.n = in->n;
        for (size_t j = 0; j < in->n; j++)
            snprintf(cmd.handles[j], sizeof(cmd.handles[j]), "%s", in->handles[j]);
    }
    if (in->rq_key && !(retry && c->o.plant == SK_PLANT_DROP_KEY)) {
        cmd.rq_client = 7;
        cmd.rq_key = in->rq_key;
    }
    kyu_command_encode(&cmd, sb);
}

size_t sk_payload(sim_cluster_t *c, sim_node_t *nd, uint8_t *buf, size_t cap)
{
    sk_t *k = sk(c);
    uint64_t now = sk_node_now(c, nd);
    sk_prop_t *d = &k->draft;
    memset(d, 0, sizeof(*d));
    size_t want = 1 + (size_t)sim_rng_below(&c->rng, SK_CMDS_MAX);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    for (size_t i = 0; i < want; i++) {
        uint64_t retried = k->retried;
        choose(c, &d->in[i], now);
        encode(c, &d->in[i], now, k->retried != retried, &sb);
        d->n++;
    }
    size_t len = sb.size <= cap ? sb.size : 0;
    if (len)
        memcpy(buf, sb.data, len);
    msgpack_sbuffer_destroy(&sb);
    return len;
}

static void retry_later(sk_t *k, const sk_intent_t *in)
{
    if (in->rq_key && k->n_retries < SK_RETRIES)
        k->retries[k->n_retries++] = *in;
}

static void told_deleted(sk_t *k, const char *handle)
{
    uint64_t seq;
    uint32_t gen;
    if (!kyu_handle_parse(handle, &seq, &gen) || seq >= k->seq_cap || !k->seq_msg[seq])
        return;
    sk_msg(k, k->seq_msg[seq])->client_deleted = true;
}

void sk_proposed(sim_cluster_t *c, const sim_proposal_t *p, bool taken)
{
    sk_t *k = sk(c);
    if (!taken) {
        for (size_t i = 0; i < k->draft.n; i++)
            retry_later(k, &k->draft.in[i]);
        return;
    }
    sk_prop_t *slot = &k->props[k->next_prop++ % SK_PROPS];
    *slot = k->draft;
    slot->index = p->index;
    slot->term = p->term;
    slot->hash = p->hash;
    /* Planted: answer before the entry commits. */
    for (size_t i = 0; i < slot->n; i++) {
        const sk_intent_t *in = &slot->in[i];
        if (c->o.plant == SK_PLANT_ACK_EARLY && in->type == KYU_CMD_SEND)
            for (size_t j = 0; j < in->n; j++)
                sk_msg(k, in->ids[j])->acked = true;
        if (c->o.plant == SK_PLANT_DELETE_EARLY && in->type == KYU_CMD_DELETE)
            for (size_t j = 0; j < in->n; j++)
                told_deleted(k, in->handles[j]);
    }
}

void sk_acked(sim_cluster_t *c, const sim_proposal_t *p)
{
    sk_t *k = sk(c);
    sk_prop_t *pr = sk_prop_find(k, p->index, p->term, p->hash);
    if (!pr || !pr->applied)
        return;
    for (size_t i = 0; i < pr->n; i++) {
        const sk_intent_t *in = &pr->in[i];
        const sk_outcome_t *out = &pr->out[i];
        if (out->code != KYU_OK)
            continue;
        /* The reply was lost: the client sends it again with the same key. */
        if (in->rq_key && sim_rng_chance(&c->rng, 300))
            retry_later(k, in);
        switch (in->type) {
        case KYU_CMD_SEND:
            for (size_t j = 0; j < out->n; j++)
                sk_msg(k, out->ids[j])->acked = true;
            break;
        case KYU_CMD_RECEIVE:
            for (size_t j = 0; j < out->n; j++) {
                size_t slot = k->next_handle++ % SK_HANDLES;
                memcpy(k->handles[slot].h, out->handles[j], sizeof k->handles[slot].h);
                k->handles[slot].q = in->q;
                if (k->n_handles < SK_HANDLES)
                    k->n_handles++;
            }
            break;
        case KYU_CMD_DELETE:
            for (size_t j = 0; j < in->n; j++)
                if (out->results[j] == KYU_OK)
                    told_deleted(k, in->handles[j]);
            break;
        default:
            break;
        }
    }
}

void sk_abandoned(sim_cluster_t *c, const sim_proposal_t *p)
{
    sk_t *k = sk(c);
    sk_prop_t *pr = sk_prop_find(k, p->index, p->term, p->hash);
    if (!pr)
        return;
    for (size_t i = 0; i < pr->n; i++)
        retry_later(k, &pr->in[i]);
}
