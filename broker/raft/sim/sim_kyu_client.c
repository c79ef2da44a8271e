/*
 * sim_kyu_client.c - kyu-sim-kyu's client: a seeded workload of broker commands on three
 * queues, sent the way the broker's frontend sends them: to a serving leader, each command
 * stamped with the leader's time (kyu_replica_now) and, for a send, message ids the leader
 * made, proposed with kyu_replica_propose (the replica gathers them into entries), then
 * kyu_replica_flush.
 *
 * The client learns what became of a request only from the replica's done callback, and
 * remembers what it was told: ids of acknowledged sends, receipt handles of acknowledged
 * receives, acknowledged deletes. An answer must be the result of the request's own command
 * (answer agreement: the apply observer says which entry is being applied; the answer's
 * command there must be the one proposed). Half the writes but queue creation carry a
 * request key; a keyed request whose outcome the client never learned (the leader lost, the
 * node crashed) is retried later with the same key, and some acknowledged ones are retried
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
    static const char *names[SK_QUEUES] = {"q0", "q1", "q2", "q3.fifo"};
    return names[q];
}

/* Each queue's visibility timeout in seconds (0 for q2: leases that end at once). */
static const uint32_t queue_vt[SK_QUEUES] = {2, 5, 0, 3};

const sk_intent_t *sk_sent_find(sk_t *k, uint64_t hash)
{
    for (size_t i = k->n_sent; i-- > 0;)
        if (k->sent_hash[i] == hash)
            return &k->sent[i];
    return NULL;
}

uint64_t sk_command_hash(const uint8_t *data, size_t len, size_t i)
{
    size_t off = 0;
    for (size_t j = 0; off < len; j++) {
        size_t start = off;
        kyu_command_t cmd;
        kyu_err_t err;
        if (kyu_command_decode(data, len, &off, &cmd, &err) != KYU_OK)
            return 0;
        if (j == i)
            return sim_hash(data + start, off - start, 0x636d64);
    }
    return 0;
}

/* The bodies of a send are a function of its first id (or its key), so a retry sends the
 * same bodies. */
#define SK_BODY_MAX 96

const sk_policy_t sk_policies[SK_POLICIES] = {
    {NULL, 0},
    {"{\"copy\":[{\"exists\":false}]}", 0}, /* the publishes without attributes */
    {"{\"body\":[{\"suffix\":\"x\"}]}", 0}, /* with them, the short bodies */
    {"{\"$or\":[{\"copy\":[{\"exists\":false}]},{\"body\":[{\"anything-but\":{\"suffix\":"
     "\"x\"}}]}]}",
     0},                                                                     /* all but those */
    {"{\"body\":[{\"prefix\":\"body-\"}],\"copy\":[{\"exists\":true}]}", 0}, /* with them */
    {"{\"body\":[{\"exists\":true}]}", 1}, /* body scope: no body is JSON */
};

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
            snprintf(in->handles[in->n++], SK_HANDLE_MAX, "%s", k->handles[j].h);
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
    in->q = (int)sim_rng_below(&c->rng, SK_QUEUES_DRAWN);
    in->vt = -1;
    in->delay = -1;
    in->dest = -1;
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
            else if (in->type == KYU_CMD_PUBLISH)
                for (size_t j = 0; j < in->n; j++)
                    in->ids[j] = ++k->next_pub;
            k->retried++;
            return;
        }
    }
    if (r < 180 || !k->queues[in->q].exists) {
        in->type = KYU_CMD_CREATE_QUEUE;
        /* Now and then with another visibility timeout: QUEUE_EXISTS. */
        in->vt = sim_rng_chance(&c->rng, 100) ? 9 : (int64_t)queue_vt[in->q];
    } else if (r < 185) {
        in->type = KYU_CMD_DELETE_QUEUE;
    } else if (r < 190) {
        in->type = KYU_CMD_PURGE_QUEUE; /* every message sent before it is gone */
    } else if (r < 200) {
        /* Another visibility timeout for later receives without one, or a delay of 0-3 s for
         * later sends (and QUEUE_EXISTS for creates of the queue's usual attributes, until
         * it is deleted). */
        in->type = KYU_CMD_SET_QUEUE_ATTRIBUTES;
        if (sim_rng_chance(&c->rng, 500))
            in->vt = (int64_t)sim_rng_below(&c->rng, 6);
        else
            in->delay = (int64_t)sim_rng_below(&c->rng, 4);
    } else if (r < 212) {
        /* A redrive of the dead-letter queue q2 (SQS's message move task): its messages back
         * to the queue each came from (q1), or one task in four to q0; now and then a cancel.
         * The leader moves them by REDRIVE_STEPs (sim_kyu_node.c); the oracle checks each
         * message moves once. No request key: the oracle models no retry of these. */
        in->q = SK_DLQ;
        in->type = r < 209 ? KYU_CMD_START_MOVE_TASK : KYU_CMD_CANCEL_MOVE_TASK;
        in->dest = k->next_msg % 4 == 0 ? 0 : -1;
        return;
    } else if (r < 260) {
        /* Topic t0 (op_topic.c): created, q0 subscribed raw and q1, q2 with SNS's envelope,
         * unsubscribed now and then (and so subscribed again, under a new id), and published
         * to, half of the publishes with a request key (retried as sends are). The oracle
         * checks each copy. */
        uint64_t t = sim_rng_below(&c->rng, 10);
        bool subscribed = false;
        for (size_t i = 0; i < k->n_subs; i++)
            subscribed |= k->subs[i].q == in->q;
        if (t >= 5 && t <= 7) {
            /* The FIFO topic t1.fifo: created, q3.fifo subscribed (raw), published to in
             * group g(deduplication number % 3), one publish in three with the deduplication
             * id of one of the last four recorded (a duplicate while its record is in the
             * window: answered as the first, nothing enqueued). The oracle checks the copies'
             * group order and the duplicates' answers. */
            in->fifo = true;
            in->q = SK_FIFO;
            if (!k->ftopic_exists) {
                in->type = KYU_CMD_CREATE_TOPIC;
                return;
            }
            if (!k->queues[SK_FIFO].exists) {
                in->type = KYU_CMD_CREATE_QUEUE;
                in->vt = (int64_t)queue_vt[SK_FIFO];
                in->fifo = false;
                return;
            }
            if (!k->fsub_id) {
                in->type = KYU_CMD_SUBSCRIBE;
                in->ids[0] = ++k->next_sub;
                return;
            }
            in->type = KYU_CMD_PUBLISH;
            in->n = 1;
            in->ids[0] = ++k->next_pub;
            in->dedup = in->ids[0];
            size_t back = (size_t)(in->ids[0] / 3 % 4); /* one of the last four recorded */
            if (in->ids[0] % 3 == 0 && k->fdedup_next > back)
                in->dedup = k->fdedup[(k->fdedup_next - 1 - back) % SK_FDEDUP].dedup;
        } else if (!k->topic_exists || t == 0) {
            in->type = KYU_CMD_CREATE_TOPIC;
            return;
        } else if (t <= 2 && !subscribed && in->q != SK_DLQ_SOURCE) {
            /* (q1 is not subscribed: some publishes carry a group, which would make q1 a fair
             * queue, and the oracle models q1's receive order, with its dead-letter moves,
             * without groups) */
            in->type = KYU_CMD_SUBSCRIBE;
            in->ids[0] = ++k->next_sub;
            /* half of them without a policy, the others one of the table's */
            in->policy = in->ids[0] % 2 ? 0 : 1 + (int)(in->ids[0] / 2 % (SK_POLICIES - 1));
            return;
        } else if (t == 3 && k->n_subs > 0) {
            in->type = KYU_CMD_UNSUBSCRIBE;
            in->ids[0] = k->subs[sim_rng_below(&c->rng, k->n_subs)].id;
            return;
        } else if (t == 4 && k->n_subs > 0) {
            /* A subscription's filter policy changed in place (or removed: policy 0). */
            in->type = KYU_CMD_SET_SUBSCRIPTION_ATTRIBUTES;
            in->ids[0] = k->subs[sim_rng_below(&c->rng, k->n_subs)].id;
            in->policy = (int)((in->ids[0] + k->next_pub) % SK_POLICIES);
            return;
        } else {
            in->type = KYU_CMD_PUBLISH;
            /* One publish in three a batch (PublishBatch) of 1-3 entries, drawn from the
             * publish numbers, not the seed's stream. */
            in->batch = k->next_pub % 3 == 2;
            in->n = in->batch ? 1 + (size_t)(k->next_pub / 3 % SK_SEND_MAX) : 1;
            for (size_t j = 0; j < in->n; j++)
                in->ids[j] = ++k->next_pub;
        }
    } else if (r < 520) {
        in->type = KYU_CMD_SEND;
        in->n = 1 + (size_t)sim_rng_below(&c->rng, SK_SEND_MAX);
        for (size_t j = 0; j < in->n; j++)
            in->ids[j] = ++k->next_msg;
        /* Now and then the messages' own delay, 0-3 s, instead of the queue's (SEND's ds). */
        if (sim_rng_chance(&c->rng, 100))
            in->delay = (int64_t)sim_rng_below(&c->rng, 4);
    } else if (r < 780) {
        in->type = KYU_CMD_RECEIVE;
        in->n = 1 + (size_t)sim_rng_below(&c->rng, SK_RECV_MAX);
        in->vt = sim_rng_chance(&c->rng, 400) ? -1 : (int64_t)sim_rng_below(&c->rng, 6);
        /* One receive in three under an in-flight limit of 1-4 (--max-inflight), drawn from
         * the ids so far, not the seed's stream (the seeds' runs stay as they were). */
        if (k->next_msg % 3 == 0)
            in->max_inflight = 1 + (uint32_t)(k->next_msg / 3 % 4);
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
    /* A share of q0's sends, receives and creates go to q3.fifo instead, chosen from the ids so
     * far (not the seed's stream); a FIFO queue takes no per-message delay. */
    if (in->q == 0 && k->next_msg % 4 == 1 &&
        (in->type == KYU_CMD_SEND || in->type == KYU_CMD_RECEIVE ||
         in->type == KYU_CMD_CREATE_QUEUE)) {
        in->q = SK_FIFO;
        in->delay = -1;
        if (!k->queues[SK_FIFO].exists) {
            in->type = KYU_CMD_CREATE_QUEUE;
            in->n = 0;
            in->max_inflight = 0;
        }
        if (in->type == KYU_CMD_CREATE_QUEUE)
            in->vt = (int64_t)queue_vt[SK_FIFO];
    }
    /* CREATE_QUEUE, SET_QUEUE_ATTRIBUTES and CREATE_TOPIC take no request key (ops.c); the
     * workload's SUBSCRIBE, UNSUBSCRIBE and SET_SUBSCRIPTION_ATTRIBUTES carry none either (the
     * oracle models no retry of them). */
    if (in->type != KYU_CMD_CREATE_QUEUE && in->type != KYU_CMD_SET_QUEUE_ATTRIBUTES &&
        in->type != KYU_CMD_CREATE_TOPIC && in->type != KYU_CMD_SUBSCRIBE &&
        in->type != KYU_CMD_UNSUBSCRIBE && in->type != KYU_CMD_SET_SUBSCRIPTION_ATTRIBUTES)
        maybe_key(c, in, now);
}

/* The command the leader proposes for a request (what the frontend's build_command makes),
 * with the planted encoding bugs. Bodies are written into bodies. */
static void build(sim_cluster_t *c, const sk_intent_t *in, uint64_t now, bool retry,
                  kyu_command_t *cmd, char bodies[SK_SEND_MAX][SK_BODY_MAX])
{
    memset(cmd, 0, sizeof(*cmd));
    cmd->type = in->type;
    cmd->now_ms = now;
    snprintf(cmd->queue, sizeof(cmd->queue), "%s", queue_name(in->q));
    cmd->vt = in->vt;
    cmd->has_delay = in->delay >= 0 && in->type != KYU_CMD_SEND;
    cmd->delay = cmd->has_delay ? (uint32_t)in->delay : 0;
    cmd->max = in->type == KYU_CMD_RECEIVE ? (uint32_t)in->n : 1;
    if (in->type == KYU_CMD_RECEIVE)
        cmd->max_inflight = in->max_inflight;
    if (in->type == KYU_CMD_RECEIVE && c->o.plant == SK_PLANT_VT_ZERO)
        cmd->vt = 0;
    /* q1 always with its RedrivePolicy (q2 must exist: INVALID_ARGUMENT otherwise), q0 and
     * q2 with a retention period of a minute, which the simulated time passes in most seeds
     * (sim_kyu_node.c proposes the expiries). */
    static const kyu_queue_ext_t redrive = {
        .retention = KYU_RETENTION_DEFAULT, .dlq = "q2", .max_receive_count = SK_MAX_RECEIVES};
    static const kyu_queue_ext_t short_lived = {.retention = SK_RETENTION_S};
    static const kyu_queue_ext_t fifo = {.retention = KYU_RETENTION_DEFAULT, .fifo = true};
    if (in->type == KYU_CMD_CREATE_QUEUE && in->q == SK_FIFO) {
        cmd->qx = &fifo;
        cmd->qx_set = KYU_F_FIFO;
    } else if (in->type == KYU_CMD_CREATE_QUEUE && in->q == SK_DLQ_SOURCE) {
        cmd->qx = &redrive;
        cmd->qx_set = KYU_F_REDRIVE;
    } else if (in->type == KYU_CMD_CREATE_QUEUE) {
        cmd->qx = &short_lived;
        cmd->qx_set = KYU_F_RETENTION;
    }
    if (in->type == KYU_CMD_SEND) {
        cmd->n = in->n;
        uint64_t seed = in->rq_key ? in->rq_key * 1000003 : in->ids[0];
        for (size_t j = 0; j < in->n; j++) {
            sk_format_id(cmd->ids[j], in->ids[j]);
            cmd->body_lens[j] = body_of(seed, j, bodies[j]);
            cmd->bodies[j] = bodies[j];
            cmd->has_msg_delay[j] = in->delay >= 0;
            cmd->msg_delay_ms[j] = in->delay >= 0 ? (uint64_t)in->delay * 1000 : 0;
            /* One send in four carries message attributes: the body again, as a String and
             * as a Binary (sorted by name, as the leader sorts them); the checks of every
             * receive hold each message's to its body (sim_kyu.c). */
            if (seed % 4 == 1) {
                kyu_msg_attrs_t *a = &cmd->attrs[j];
                a->n = 2;
                a->a[0] = (kyu_msg_attr_t){.name = "body",
                                           .name_len = 4,
                                           .type = "String",
                                           .type_len = 6,
                                           .value = bodies[j],
                                           .value_len = cmd->body_lens[j]};
                a->a[1] = a->a[0];
                a->a[1].name = "copy";
                a->a[1].type = "Binary.raw";
                a->a[1].type_len = 10;
                a->a[1].binary = true;
            }
        }
        /* q3.fifo: each message in group g(number % 3), with its own deduplication id (a
         * retry without a key sends new messages: new ids); the digests computed, as the
         * leader does (a FIFO SEND item carries them). */
        for (size_t j = 0; in->q == SK_FIFO && j < in->n; j++) {
            snprintf(cmd->group_ids[j], sizeof cmd->group_ids[j], "g%llu",
                     (unsigned long long)(in->ids[j] % SK_FIFO_GROUPS));
            snprintf(cmd->dedup_ids[j], sizeof cmd->dedup_ids[j], "d%llu",
                     (unsigned long long)in->ids[j]);
            kyu_md5_body(cmd->bodies[j], cmd->body_lens[j], cmd->md5_body[j]);
            kyu_md5_attrs(&cmd->attrs[j], cmd->md5_attrs[j]);
            cmd->has_md5 = true;
        }
        /* One batch of several in five has its last entry refused by the leader (as a body
         * over the queue's limit would be): it goes into the command as a failure, is never
         * stored, and its retries are answered so (the oracle checks it). */
        if (in->n >= 2 && seed % 5 == 2) {
            size_t j = in->n - 1;
            cmd->entry_code[j] = KYU_ERR_TOO_LARGE;
            snprintf(cmd->entry_error[j], sizeof cmd->entry_error[j], "entry %zu is too large",
                     j + 1);
            cmd->ids[j][0] = '\0';
            cmd->bodies[j] = NULL;
            cmd->body_lens[j] = 0;
            cmd->has_msg_delay[j] = false;
            cmd->msg_delay_ms[j] = 0;
            cmd->attrs[j].n = 0;
        }
    } else if (in->type == KYU_CMD_CREATE_TOPIC || in->type == KYU_CMD_SUBSCRIBE ||
               in->type == KYU_CMD_UNSUBSCRIBE || in->type == KYU_CMD_PUBLISH ||
               in->type == KYU_CMD_SET_SUBSCRIPTION_ATTRIBUTES) {
        snprintf(cmd->topic, sizeof(cmd->topic), "t0");
        if (in->type != KYU_CMD_SUBSCRIBE)
            cmd->queue[0] = '\0';
        if (in->type == KYU_CMD_SUBSCRIBE || in->type == KYU_CMD_UNSUBSCRIBE ||
            in->type == KYU_CMD_SET_SUBSCRIPTION_ATTRIBUTES) {
            cmd->raw = in->q == 0;
            sk_format_sub_id(cmd->sub_id, in->ids[0]);
        }
        if (in->type == KYU_CMD_SET_SUBSCRIPTION_ATTRIBUTES) {
            cmd->topic[0] = '\0';
            cmd->raw = false;
            cmd->no_filter = in->policy == 0;
            cmd->has_filter_scope = in->policy != 0; /* the scope with the policy, always */
        }
        const sk_policy_t *pol = &sk_policies[in->policy];
        if ((in->type == KYU_CMD_SUBSCRIBE || in->type == KYU_CMD_SET_SUBSCRIPTION_ATTRIBUTES) &&
            pol->json) {
            cmd->n = 1;
            cmd->bodies[0] = pol->json;
            cmd->body_lens[0] = strlen(pol->json);
            cmd->filter_scope = pol->scope;
        }
        if (in->fifo) { /* t1.fifo, q3.fifo subscribed raw */
            snprintf(cmd->topic, sizeof(cmd->topic), "t1.fifo");
            cmd->topic_fifo = true;
            cmd->raw = true;
        }
        if (in->type == KYU_CMD_PUBLISH) {
            /* The bodies a function of the key (or the publish), as a send's; a publish in four
             * with the send's attributes: the raw copy carries them. A batch's entries each
             * so; one batch of several in five has its last entry refused by the leader (as
             * an entry too large for a queue would be), as SEND's batches. */
            uint64_t seed = in->rq_key ? in->rq_key * 1000003 : in->ids[0];
            cmd->publish_batch = in->batch;
            cmd->n = in->n ? in->n : 1;
            for (size_t j = 0; j < cmd->n; j++) {
                sk_format_pub_id(cmd->ids[j], in->ids[j]);
                cmd->body_lens[j] = body_of(seed, j, bodies[j]);
                cmd->bodies[j] = bodies[j];
                if (seed % 4 == 1) {
                    kyu_msg_attrs_t *a = &cmd->attrs[j];
                    a->n = 2;
                    a->a[0] = (kyu_msg_attr_t){.name = "body",
                                               .name_len = 4,
                                               .type = "String",
                                               .type_len = 6,
                                               .value = bodies[j],
                                               .value_len = cmd->body_lens[j]};
                    a->a[1] = a->a[0];
                    a->a[1].name = "copy";
                    a->a[1].type = "Binary.raw";
                    a->a[1].type_len = 10;
                    a->a[1].binary = true;
                }
            }
            /* t0's: one message in three with a MessageGroupId s0..s2 (a standard topic's,
             * forwarded to the copies: q0's and q2's fair groups), a function of the seed and
             * the entry, so a retry carries the same; a batch mixes grouped and plain entries */
            for (size_t j = 0; !in->fifo && j < cmd->n; j++)
                if ((seed + j) % 3 == 0)
                    snprintf(cmd->group_ids[j], sizeof cmd->group_ids[j], "s%llu",
                             (unsigned long long)((seed / 3 + j) % SK_TOPIC_GROUPS));
            /* t1.fifo's: group g(dedup number % 3) and the deduplication id, both the same in a
             * retry */
            for (size_t j = 0; in->fifo && j < cmd->n; j++) {
                snprintf(cmd->group_ids[j], sizeof cmd->group_ids[j], "g%llu",
                         (unsigned long long)(in->dedup % SK_FIFO_GROUPS));
                snprintf(cmd->dedup_ids[j], sizeof cmd->dedup_ids[j], "p%llu",
                         (unsigned long long)in->dedup);
            }
            if (in->batch && cmd->n >= 2 && seed % 5 == 2) {
                size_t j = cmd->n - 1;
                cmd->entry_code[j] = KYU_ERR_TOO_LARGE;
                snprintf(cmd->entry_error[j], sizeof cmd->entry_error[j], "entry %zu is too large",
                         j + 1);
                cmd->ids[j][0] = '\0';
                cmd->bodies[j] = NULL;
                cmd->body_lens[j] = 0;
                cmd->attrs[j].n = 0;
                cmd->group_ids[j][0] = '\0';
            }
        }
    } else if (in->type == KYU_CMD_START_MOVE_TASK && in->dest >= 0) {
        snprintf(cmd->move_dest, sizeof(cmd->move_dest), "%s", queue_name(in->dest));
    } else if (in->type == KYU_CMD_DELETE || in->type == KYU_CMD_CHANGE_VISIBILITY) {
        cmd->n = in->n;
        for (size_t j = 0; j < in->n; j++)
            snprintf(cmd->handles[j], sizeof(cmd->handles[j]), "%s", in->handles[j]);
    }
    if (in->rq_key && !(retry && c->o.plant == SK_PLANT_DROP_KEY)) {
        cmd->rq_client = 7;
        cmd->rq_key = in->rq_key;
    }
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

/* The receipt handles of a receive's answer, for later deletes and visibility changes. Each
 * must be new (sk_t's answered): a handle answered before, for a lease since lost with its
 * leader (never applied, so the model never had it), that a later lease repeats would let
 * the first consumer delete or move the message the second one holds. */
static void learn_handles(sim_cluster_t *c, const sk_intent_t *in, const kyu_result_t *r)
{
    sk_t *k = sk(c);
    if (!k->answered) {
        k->answered = zhashx_new();
        KYU_ASSERT(k->answered);
    }
    for (size_t j = 0; j < r->n_msgs && c->result == SIM_OK; j++) {
        const char *h = r->msgs[j].handle;
        uintptr_t key = (uintptr_t)(in->rq_key + 1),
                  first = (uintptr_t)zhashx_lookup(k->answered, h);
        if (first && (in->rq_key == 0 || first != key)) {
            sim_violation(c, SIM_SAFETY,
                          "stale handle: receipt handle %s (message %s) answered by a receive "
                          "on q%d was answered for an earlier lease already: the earlier "
                          "holder's delete would act on this lease",
                          h, r->msgs[j].message_id, in->q);
            return;
        }
        if (!first) {
            KYU_ASSERT(zhashx_insert(k->answered, h, (void *)key) == 0);
            k->handles_answered++;
        }
        size_t slot = k->next_handle++ % SK_HANDLES;
        snprintf(k->handles[slot].h, SK_HANDLE_MAX, "%s", r->msgs[j].handle);
        k->handles[slot].q = in->q;
        if (k->n_handles < SK_HANDLES)
            k->n_handles++;
    }
}

/* Planted (client side): believing a request before its answer. */
static void believe_early(sim_cluster_t *c, const sk_intent_t *in)
{
    sk_t *k = sk(c);
    if (c->o.plant == SK_PLANT_ACK_EARLY && in->type == KYU_CMD_SEND)
        for (size_t j = 0; j < in->n; j++)
            sk_msg(k, in->ids[j])->acked = true;
    if (c->o.plant == SK_PLANT_DELETE_EARLY && in->type == KYU_CMD_DELETE)
        for (size_t j = 0; j < in->n; j++)
            told_deleted(k, in->handles[j]);
}

/* One request to leader nd: built, remembered by the hash of its encoding, proposed. */
static void request(sim_cluster_t *c, sim_node_t *nd, uint64_t now)
{
    sk_t *k = sk(c);
    sk_node_t *kn = nd->app;
    sk_waiter_t *w = calloc(1, sizeof(*w));
    KYU_ASSERT(w);
    uint64_t retried = k->retried;
    choose(c, &w->in, now);
    kyu_command_t cmd;
    char bodies[SK_SEND_MAX][SK_BODY_MAX];
    build(c, &w->in, now, k->retried != retried, &cmd, bodies);
    /* Half the receives (chosen from the ids so far, not the seed's stream) go the way the
     * frontend tries first: answered now by the leader if it can (replica_early.c), the
     * entry proposed behind the answer; else the durable way below. */
    static kyu_result_t early_res; /* some 14 KB */
    bool early = false;
    w->in.n_early = 0;
    if (w->in.type == KYU_CMD_RECEIVE && k->next_msg % 2 == 0) {
        sk_enter(kn);
        kyu_command_t e = cmd;
        if (kyu_replica_receive_early(kn->replica, &e, w, &early_res)) {
            early = true;
            cmd = e;
            w->in.n_early = early_res.n_msgs;
            for (size_t j = 0; j < early_res.n_msgs; j++)
                w->in.early_ids[j] = sk_parse_id(early_res.msgs[j].message_id);
        }
    }
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    kyu_command_encode(&cmd, &sb);
    w->hash = sim_hash(sb.data, sb.size, 0x636d64);
    msgpack_sbuffer_destroy(&sb);
    if (k->n_sent == k->sent_cap) {
        k->sent_cap = k->sent_cap ? 2 * k->sent_cap : 1024;
        k->sent_hash = realloc(k->sent_hash, k->sent_cap * sizeof(*k->sent_hash));
        k->sent = realloc(k->sent, k->sent_cap * sizeof(*k->sent));
        KYU_ASSERT(k->sent_hash && k->sent);
    }
    k->sent_hash[k->n_sent] = w->hash;
    k->sent[k->n_sent++] = w->in;
    if (early) { /* proposed already; its answer is the client's now */
        kn->waiting++;
        k->early_answers++;
        learn_handles(c, &w->in, &early_res);
        kyu_result_clear(&early_res);
        return;
    }
    kyu_err_t err;
    sk_enter(kn);
    if (kyu_replica_propose(kn->replica, &cmd, w, &err) != KYU_OK) {
        retry_later(k, &w->in);
        free(w);
        return;
    }
    kn->waiting++;
    believe_early(c, &w->in);
}

void sk_client(sim_cluster_t *c, sim_node_t *nd)
{
    sk_node_t *kn = nd->app;
    if (!kyu_replica_serving(kn->replica))
        return; /* the frontend answers NOT_LEADER: nothing proposed */
    uint64_t now = kyu_replica_now(kn->replica);
    size_t want = 1 + (size_t)sim_rng_below(&c->rng, SK_CMDS_MAX);
    for (size_t i = 0; i < want; i++)
        request(c, nd, now);
    sim_trace(&c->trace, c->now, "client: n%llu takes %zu requests", (unsigned long long)nd->id,
              want);
    sk_enter(kn);
    kyu_replica_flush(kn->replica);
}

bool sk_client_waiting(sim_cluster_t *c)
{
    for (int i = 0; i < c->n; i++) {
        sim_node_t *nd = &c->nodes[i];
        sk_node_t *kn = nd->app;
        if (nd->raft && kn->waiting > 0 && kyu_raft_role(nd->raft) == KYU_RAFT_LEADER)
            return true;
    }
    return false;
}

/* What the client learns from an answer. */
static void learn(sim_cluster_t *c, const sk_intent_t *in, const kyu_result_t *r)
{
    sk_t *k = sk(c);
    if (r->code != KYU_OK)
        return;
    /* The reply was lost: the client sends it again with the same key. */
    if (in->rq_key && sim_rng_chance(&c->rng, 300))
        retry_later(k, in);
    switch (in->type) {
    case KYU_CMD_SEND:
        for (size_t j = 0; j < r->n_ids; j++)
            if (r->ids[j][0]) /* "": a batch entry that failed */
                sk_msg(k, sk_parse_id(r->ids[j]))->acked = true;
        break;
    case KYU_CMD_RECEIVE:
        learn_handles(c, in, r);
        break;
    case KYU_CMD_DELETE:
        for (size_t j = 0; j < in->n && j < r->n_results; j++)
            if (r->results[j] == KYU_OK)
                told_deleted(k, in->handles[j]);
        break;
    default:
        break;
    }
}

bool sk_check_own_answer(sim_cluster_t *c, sk_node_t *kn, const kyu_result_t *r, uint64_t hash)
{
    uintptr_t p = (uintptr_t)r, lo = (uintptr_t)kn->applying.results;
    bool applied =
        kn->applying.valid && kn->applying.n > 0 && p >= lo && p < lo + kn->applying.n * sizeof(*r);
    if (!applied)
        return false;
    /* The result of command i of the entry being applied: it must be this request's. */
    size_t i = (p - lo) / sizeof(*r);
    sk(c)->answers++;
    if (c->result == SIM_OK && sk_command_hash(kn->applying.data, kn->applying.len, i) != hash)
        sim_violation(c, SIM_SAFETY,
                      "answer mismatch: node %llu answered a request with the result of "
                      "another command (command %zu of entry %llu, term %llu)",
                      (unsigned long long)kn->nd->id, i, (unsigned long long)kn->applying.index,
                      (unsigned long long)kn->applying.term);
    return true;
}

void sk_on_done(void *arg, void *waiter, kyu_result_t *r)
{
    sk_node_t *kn = arg;
    sim_cluster_t *c = kn->c;
    sk_t *k = sk(c);
    sk_waiter_t *w = waiter;
    if (w->expiry || w->redrive) {
        /* The leader's own expiry or redrive step (sim_kyu_node.c): answered with its own
         * command's result when applied here; the next one may be proposed. */
        sk_check_own_answer(c, kn, r, w->hash);
        if (w->expiry)
            kn->expiry_proposed = false;
        else
            kn->redrive_proposed = false;
        free(w);
        return;
    }
    KYU_ASSERT(kn->waiting > 0);
    kn->waiting--;
    if (sk_check_own_answer(c, kn, r, w->hash)) {
        sim_check_ack(c, kn->applying.index, kn->applying.hash);
        c->acked++;
        c->stats.acked++;
        if (!c->faults)
            c->probe_acked = true;
        learn(c, &w->in, r);
    } else if (r->code == KYU_ERR_NOT_LEADER || r->code == KYU_ERR_STORAGE ||
               r->code == KYU_ERR_BUSY) {
        /* Not applied here, or not known to be: the outcome is unknown. */
        retry_later(k, &w->in);
    } else if (kn->applying.valid) {
        /* Answered while an entry is applied, with a result that is none of its commands':
         * the waiter was matched to an entry that is not its own (a no-op, or another
         * leader's entry with fewer commands, at its index). */
        if (c->result == SIM_OK)
            sim_violation(c, SIM_SAFETY,
                          "answer mismatch: node %llu answered a request (code %d) while "
                          "applying entry %llu (term %llu) with none of its %zu results",
                          (unsigned long long)kn->nd->id, (int)r->code,
                          (unsigned long long)kn->applying.index,
                          (unsigned long long)kn->applying.term, kn->applying.n);
    } else {
        /* Answered without its entry being applied here: only a broken replica does. */
        learn(c, &w->in, r);
    }
    free(w);
}
