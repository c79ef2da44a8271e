/* reply: the msgpack form of reply headers (proto/PROTOCOL.md, "Replies").
 *
 * Only the fields that apply are sent: an error reply is {id, st, err[, leader]}, a success
 * reply {id, st} plus the op's own fields. The client decodes strictly as the broker does
 * for requests, but tolerates unknown keys so that a newer broker can add fields. */
#include "protocol.h"

#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 4
#define QUEUES_MAX 100000
#define WORKERS_MAX 100000

/* The wire names of small enums (tables indexed by value, 0 unused): a value's name or NULL,
 * and a name's value or 0. */
#define NAMES_N(t) (sizeof(t) / sizeof(t)[0])

static const char *name_of(const char *const *names, size_t n, unsigned v)
{
    return v < n ? names[v] : NULL;
}

static unsigned value_of(const char *const *names, size_t n, const char *name)
{
    for (unsigned v = 1; v < n; v++)
        if (names[v] && strcmp(name, names[v]) == 0)
            return v;
    return 0;
}

static const char *const state_names[] = {
    [KYU_MSG_VISIBLE] = "visible", [KYU_MSG_INFLIGHT] = "inflight", [KYU_MSG_DELAYED] = "delayed"};
static const char *const move_status_names[] = {[KYU_MOVE_RUNNING] = "RUNNING",
                                                [KYU_MOVE_COMPLETED] = "COMPLETED",
                                                [KYU_MOVE_CANCELLED] = "CANCELLED",
                                                [KYU_MOVE_FAILED] = "FAILED"};
static const char *const ev_names[] = {
    [KYU_EV_MSGS] = "msgs", [KYU_EV_HB] = "hb", [KYU_EV_CLOSED] = "closed"};

const char *kyu_msg_state_name(unsigned state)
{
    return name_of(state_names, NAMES_N(state_names), state);
}

unsigned kyu_msg_state_parse(const char *name)
{
    return value_of(state_names, NAMES_N(state_names), name);
}

const char *kyu_move_status_name(unsigned status)
{
    return name_of(move_status_names, NAMES_N(move_status_names), status);
}

unsigned kyu_move_status_parse(const char *name)
{
    return value_of(move_status_names, NAMES_N(move_status_names), name);
}

const char *kyu_ev_name(unsigned ev)
{
    return name_of(ev_names, NAMES_N(ev_names), ev);
}

unsigned kyu_ev_parse(const char *name)
{
    return value_of(ev_names, NAMES_N(ev_names), name);
}

void kyu_reply_init(kyu_reply_t *rep)
{
    memset(rep, 0, sizeof *rep);
}

void kyu_reply_init_lean(kyu_reply_t *rep)
{
    KYU_CLEAR_RANGE(kyu_reply_t, rep, id, ids);
    KYU_CLEAR_RANGE(kyu_reply_t, rep, sequences, msgs);
    KYU_CLEAR_RANGE(kyu_reply_t, rep, has_next, errors);
    memset((char *)rep + offsetof(kyu_reply_t, has_attrs), 0,
           sizeof *rep - offsetof(kyu_reply_t, has_attrs));
}

/* Frees what the reply owns (every heap pointer of kyu_reply_t), leaving the pointers as
 * they are. */
static void release(kyu_reply_t *rep)
{
    free(rep->queues);
    free(rep->tags);
    free(rep->tasks);
    free(rep->workers);
    free(rep->topics);
    free(rep->subs);
    free(rep->header);
}

void kyu_reply_reset(kyu_reply_t *rep)
{
    release(rep);
    memset(rep, 0, sizeof *rep);
}

/* Copies a range of the reply, [from, to). */
#define COPY_RANGE(dst, src, from, to)                                                             \
    memcpy((char *)(dst) + offsetof(kyu_reply_t, from),                                            \
           (const char *)(src) + offsetof(kyu_reply_t, from),                                      \
           offsetof(kyu_reply_t, to) - offsetof(kyu_reply_t, from))

static size_t at_most_batch(size_t n)
{
    return n < KYU_BATCH_MAX ? n : KYU_BATCH_MAX;
}

void kyu_reply_move(kyu_reply_t *dst, kyu_reply_t *src)
{
    if (dst == src)
        return;
    release(dst);
    /* Everything but the per-message arrays' rows past their counts: a pipelined client moves
     * a reply per message, mostly a SEND's of one id, and the rows are 15 KB of the 19. */
    size_t ids = at_most_batch(src->n_ids), msgs = at_most_batch(src->n_msgs);
    size_t errs = at_most_batch(src->n_errors > src->n_results ? src->n_errors : src->n_results);
    COPY_RANGE(dst, src, id, ids);
    memcpy(dst->ids, src->ids, ids * sizeof dst->ids[0]);
    memcpy(dst->md5_body, src->md5_body, ids * sizeof dst->md5_body[0]);
    memcpy(dst->md5_attrs, src->md5_attrs, ids * sizeof dst->md5_attrs[0]);
    COPY_RANGE(dst, src, sequences, msgs);
    memcpy(dst->msgs, src->msgs, msgs * sizeof dst->msgs[0]);
    COPY_RANGE(dst, src, has_next, errors);
    memcpy(dst->errors, src->errors, errs * sizeof dst->errors[0]);
    memcpy(&dst->has_attrs, &src->has_attrs, sizeof *dst - offsetof(kyu_reply_t, has_attrs));
    src->queues = NULL;
    src->tags = NULL;
    src->tasks = NULL;
    src->workers = NULL;
    src->topics = NULL;
    src->subs = NULL;
    src->header = NULL;
}

static void pack_kv_int(msgpack_packer *pk, const char *key, int64_t v)
{
    kyu_mp_pack_str(pk, key);
    msgpack_pack_int64(pk, v);
}

static bool any_sequences(const kyu_reply_t *rep)
{
    for (size_t i = 0; i < rep->n_ids; i++)
        if (rep->sequences[i])
            return true;
    return false;
}

static bool any_attrs(const kyu_reply_t *rep)
{
    for (size_t i = 0; i < rep->n_msgs; i++)
        if (rep->msgs[i].attrs.n)
            return true;
    return false;
}

void kyu_reply_encode(const kyu_reply_t *rep, msgpack_sbuffer *out)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    /* A push (worker sessions) names its session and event, also when it ends one with an
     * error status. */
    const char *ev = kyu_ev_name(rep->ev);
    int n = 2 + (rep->sid != 0) + (ev != NULL);
    if (rep->status != KYU_OK)
        n += 1 + (rep->leader[0] != '\0');
    else
        n += (rep->version != 0) * 2 + (rep->n_ids > 0) + (rep->n_msgs > 0) + (rep->n_results > 0) +
             rep->has_attrs + (rep->queues != NULL) + rep->has_node + (rep->tags != NULL) +
             (rep->n_ids > 0 && rep->md5_body[0][0]) * 2 + any_attrs(rep) + rep->has_next +
             (rep->n_errors > 0) + (rep->tasks != NULL) + (rep->hb_ms != 0) + (rep->liveness != 0) +
             (rep->workers != NULL) + (rep->topics != NULL) + (rep->subs != NULL) +
             any_sequences(rep);
    msgpack_pack_map(&pk, n);
    kyu_mp_pack_str(&pk, "id");
    msgpack_pack_uint64(&pk, rep->id);
    kyu_mp_pack_str(&pk, "st");
    msgpack_pack_uint32(&pk, rep->status);
    if (rep->sid) {
        kyu_mp_pack_str(&pk, "sid");
        msgpack_pack_uint64(&pk, rep->sid);
    }
    if (ev) {
        kyu_mp_pack_str(&pk, "ev");
        kyu_mp_pack_str(&pk, ev);
    }
    if (rep->status != KYU_OK) {
        kyu_mp_pack_str(&pk, "err");
        kyu_mp_pack_str(&pk, rep->error);
        if (rep->leader[0]) {
            kyu_mp_pack_str(&pk, "leader");
            kyu_mp_pack_str(&pk, rep->leader);
        }
        return;
    }
    if (rep->version) {
        kyu_mp_pack_str(&pk, "v");
        msgpack_pack_uint32(&pk, rep->version);
        kyu_mp_pack_str(&pk, "maxbody");
        msgpack_pack_uint64(&pk, rep->max_body);
    }
    if (rep->n_ids) {
        kyu_mp_pack_str(&pk, "ids");
        msgpack_pack_array(&pk, rep->n_ids);
        for (size_t i = 0; i < rep->n_ids; i++)
            kyu_mp_pack_str(&pk, rep->ids[i]);
        if (rep->md5_body[0][0]) {
            kyu_mp_pack_str(&pk, "mdb");
            msgpack_pack_array(&pk, rep->n_ids);
            for (size_t i = 0; i < rep->n_ids; i++)
                kyu_mp_pack_str(&pk, rep->md5_body[i]);
            kyu_mp_pack_str(&pk, "mda");
            msgpack_pack_array(&pk, rep->n_ids);
            for (size_t i = 0; i < rep->n_ids; i++)
                kyu_mp_pack_str(&pk, rep->md5_attrs[i]);
        }
        if (any_sequences(rep)) { /* FIFO: each message's SequenceNumber */
            kyu_mp_pack_str(&pk, "sn");
            msgpack_pack_array(&pk, rep->n_ids);
            for (size_t i = 0; i < rep->n_ids; i++)
                msgpack_pack_uint64(&pk, rep->sequences[i]);
        }
    }
    if (rep->n_msgs) {
        kyu_mp_pack_str(&pk, "msgs");
        msgpack_pack_array(&pk, rep->n_msgs);
        for (size_t i = 0; i < rep->n_msgs; i++) {
            const kyu_msg_meta_t *m = &rep->msgs[i];
            const char *state = kyu_msg_state_name(m->state);
            msgpack_pack_map(&pk, 5 + (state ? 3 : 0) + (m->dlq_source[0] ? 5 : 0) +
                                      (m->md5_body[0] != '\0') + (m->md5_attrs[0] != '\0') +
                                      (m->group_id[0] != '\0') + (m->dedup_id[0] != '\0') +
                                      (m->sequence != 0));
            kyu_mp_pack_str(&pk, "mid");
            kyu_mp_pack_str(&pk, m->message_id);
            kyu_mp_pack_str(&pk, "rh");
            kyu_mp_pack_str(&pk, m->handle);
            pack_kv_int(&pk, "rc", m->receive_count);
            pack_kv_int(&pk, "ts", (int64_t)m->sent_ms);
            pack_kv_int(&pk, "fr", (int64_t)m->first_receive_ms);
            if (state) { /* PEEK */
                kyu_mp_pack_str(&pk, "state");
                kyu_mp_pack_str(&pk, state);
                kyu_mp_pack_str(&pk, "pos");
                msgpack_pack_uint64(&pk, m->position);
                kyu_mp_pack_str(&pk, "va");
                msgpack_pack_uint64(&pk, m->visible_at_ms);
            }
            if (m->dlq_source[0]) {
                kyu_mp_pack_str(&pk, "dlsrc");
                kyu_mp_pack_str(&pk, m->dlq_source);
                pack_kv_int(&pk, "dlrc", m->dlq_receive_count);
                pack_kv_int(&pk, "dlfr", (int64_t)m->dlq_first_receive_ms);
                pack_kv_int(&pk, "dllr", (int64_t)m->dlq_last_receive_ms);
                pack_kv_int(&pk, "dlat", (int64_t)m->dlq_moved_ms);
            }
            if (m->md5_body[0]) {
                kyu_mp_pack_str(&pk, "mdb");
                kyu_mp_pack_str(&pk, m->md5_body);
            }
            if (m->md5_attrs[0]) {
                kyu_mp_pack_str(&pk, "mda");
                kyu_mp_pack_str(&pk, m->md5_attrs);
            }
            if (m->group_id[0]) {
                kyu_mp_pack_str(&pk, "gid");
                kyu_mp_pack_str(&pk, m->group_id);
            }
            if (m->dedup_id[0]) {
                kyu_mp_pack_str(&pk, "did");
                kyu_mp_pack_str(&pk, m->dedup_id);
            }
            if (m->sequence) {
                kyu_mp_pack_str(&pk, "sn");
                msgpack_pack_uint64(&pk, m->sequence);
            }
        }
        /* The attributes beside msgs, not in it: a header nests at most 4 levels (a client
         * older than attributes refuses deeper ones, and ignores this key). */
        if (any_attrs(rep)) {
            kyu_mp_pack_str(&pk, "ma");
            msgpack_pack_array(&pk, rep->n_msgs);
            for (size_t i = 0; i < rep->n_msgs; i++)
                kyu_msg_attrs_pack(&pk, &rep->msgs[i].attrs);
        }
    }
    if (rep->has_next) {
        kyu_mp_pack_str(&pk, "next");
        msgpack_pack_uint64(&pk, rep->next);
    }
    if (rep->n_results) {
        kyu_mp_pack_str(&pk, "res");
        msgpack_pack_array(&pk, rep->n_results);
        for (size_t i = 0; i < rep->n_results; i++)
            msgpack_pack_uint32(&pk, rep->results[i]);
    }
    if (rep->n_errors) {
        kyu_mp_pack_str(&pk, "errs");
        msgpack_pack_array(&pk, rep->n_errors);
        for (size_t i = 0; i < rep->n_errors; i++)
            kyu_mp_pack_str(&pk, rep->errors[i]);
    }
    if (rep->has_attrs) {
        const kyu_queue_attrs_t *at = &rep->attrs;
        kyu_mp_pack_str(&pk, "attrs");
        msgpack_pack_map(&pk, 11 + (at->dlq[0] != '\0') + (at->n_sources > 0) + (at->fifo ? 4 : 0));
        if (at->fifo) {
            kyu_mp_pack_str(&pk, "FifoQueue");
            msgpack_pack_true(&pk);
            kyu_mp_pack_str(&pk, "ContentBasedDeduplication");
            kyu_mp_pack_bool(&pk, at->cbd);
            kyu_mp_pack_str(&pk, "DeduplicationScope");
            kyu_mp_pack_str(&pk,
                            at->dedup_scope == KYU_DEDUP_SCOPE_GROUP ? "messageGroup" : "queue");
            kyu_mp_pack_str(&pk, "FifoThroughputLimit");
            kyu_mp_pack_str(&pk, at->throughput == KYU_THROUGHPUT_PER_GROUP ? "perMessageGroupId"
                                                                            : "perQueue");
        }
        pack_kv_int(&pk, "MessageRetentionPeriod", at->retention);
        pack_kv_int(&pk, "ReceiveMessageWaitTimeSeconds", at->receive_wait);
        kyu_mp_pack_str(&pk, "RedriveAllowPolicy");
        kyu_mp_pack_str(&pk, at->redrive_allow == KYU_REDRIVE_DENY_ALL   ? "denyAll"
                             : at->redrive_allow == KYU_REDRIVE_BY_QUEUE ? "byQueue"
                                                                         : "allowAll");
        if (at->n_sources) {
            kyu_mp_pack_str(&pk, "RedriveAllowSourceQueues");
            msgpack_pack_array(&pk, at->n_sources);
            for (size_t i = 0; i < at->n_sources; i++)
                kyu_mp_pack_str(&pk, at->sources[i]);
        }
        if (at->dlq[0]) {
            kyu_mp_pack_str(&pk, "RedrivePolicy");
            msgpack_pack_array(&pk, 2);
            kyu_mp_pack_str(&pk, at->dlq);
            msgpack_pack_int64(&pk, at->max_receive_count);
        }
        pack_kv_int(&pk, "VisibilityTimeout", rep->attrs.visibility_timeout);
        pack_kv_int(&pk, "MaximumMessageSize", rep->attrs.max_size);
        pack_kv_int(&pk, "DelaySeconds", rep->attrs.delay);
        pack_kv_int(&pk, "ApproximateNumberOfMessagesDelayed", rep->attrs.delayed);
        pack_kv_int(&pk, "ApproximateNumberOfMessages", rep->attrs.visible);
        pack_kv_int(&pk, "ApproximateNumberOfMessagesNotVisible", rep->attrs.not_visible);
        pack_kv_int(&pk, "CreatedTimestamp", rep->attrs.created_ms);
        pack_kv_int(&pk, "LastModifiedTimestamp", rep->attrs.modified_ms);
    }
    if (rep->has_node) {
        const kyu_node_status_t *nd = &rep->node;
        kyu_mp_pack_str(&pk, "node");
        msgpack_pack_map(&pk, nd->read_only[0] ? 12 : 11);
        if (nd->read_only[0]) {
            kyu_mp_pack_str(&pk, "ro");
            kyu_mp_pack_str(&pk, nd->read_only);
        }
        kyu_mp_pack_str(&pk, "voters");
        msgpack_pack_array(&pk, nd->n_voters);
        for (size_t i = 0; i < nd->n_voters; i++)
            msgpack_pack_uint64(&pk, nd->voters[i]);
        kyu_mp_pack_str(&pk, "learners");
        msgpack_pack_array(&pk, nd->n_learners);
        for (size_t i = 0; i < nd->n_learners; i++)
            msgpack_pack_uint64(&pk, nd->learners[i]);
        pack_kv_int(&pk, "id", (int64_t)nd->id);
        kyu_mp_pack_str(&pk, "member");
        kyu_mp_pack_str(&pk, nd->member);
        kyu_mp_pack_str(&pk, "raft");
        kyu_mp_pack_str(&pk, nd->raft_address);
        kyu_mp_pack_str(&pk, "ep");
        kyu_mp_pack_str(&pk, nd->endpoint);
        kyu_mp_pack_str(&pk, "role");
        kyu_mp_pack_str(&pk, nd->role);
        pack_kv_int(&pk, "term", (int64_t)nd->term);
        pack_kv_int(&pk, "commit", (int64_t)nd->commit_index);
        pack_kv_int(&pk, "applied", (int64_t)nd->applied_index);
        pack_kv_int(&pk, "leader", (int64_t)nd->leader);
    }
    if (rep->tags) {
        kyu_mp_pack_str(&pk, "tags");
        msgpack_pack_map(&pk, rep->tags->n);
        for (size_t i = 0; i < rep->tags->n; i++) {
            kyu_mp_pack_str(&pk, rep->tags->keys[i]);
            kyu_mp_pack_str(&pk, rep->tags->values[i]);
        }
    }
    if (rep->queues) {
        kyu_mp_pack_str(&pk, "queues");
        msgpack_pack_array(&pk, rep->n_queues);
        for (size_t i = 0; i < rep->n_queues; i++)
            kyu_mp_pack_str(&pk, rep->queues[i]);
    }
    if (rep->topics) {
        kyu_mp_pack_str(&pk, "topics");
        msgpack_pack_array(&pk, rep->n_topics);
        for (size_t i = 0; i < rep->n_topics; i++)
            kyu_mp_pack_str(&pk, rep->topics[i]);
    }
    if (rep->subs) {
        kyu_mp_pack_str(&pk, "subs");
        msgpack_pack_array(&pk, rep->n_subs);
        for (size_t i = 0; i < rep->n_subs; i++) {
            /* [id, topic, queue, raw] or, filtered, [..., raw, "attributes" | "body"] and its
             * policy's JSON when known */
            msgpack_pack_array(&pk, !rep->subs[i].filtered ? 4 : rep->subs[i].policy ? 6 : 5);
            kyu_mp_pack_str(&pk, rep->subs[i].id);
            kyu_mp_pack_str(&pk, rep->subs[i].topic);
            kyu_mp_pack_str(&pk, rep->subs[i].queue);
            kyu_mp_pack_bool(&pk, rep->subs[i].raw);
            if (rep->subs[i].filtered)
                kyu_mp_pack_str(&pk, rep->subs[i].filter_body ? "body" : "attributes");
            if (rep->subs[i].filtered && rep->subs[i].policy)
                kyu_mp_pack_str(&pk, rep->subs[i].policy);
        }
    }
    if (rep->hb_ms) {
        kyu_mp_pack_str(&pk, "hb");
        msgpack_pack_uint32(&pk, rep->hb_ms);
    }
    if (rep->liveness) {
        kyu_mp_pack_str(&pk, "lv");
        msgpack_pack_uint32(&pk, rep->liveness);
    }
    if (rep->workers) {
        kyu_mp_pack_str(&pk, "workers");
        msgpack_pack_array(&pk, rep->n_workers);
        for (size_t i = 0; i < rep->n_workers; i++) {
            const kyu_worker_info_t *w = &rep->workers[i];
            msgpack_pack_map(&pk, 9);
            kyu_mp_pack_str(&pk, "sid");
            msgpack_pack_uint64(&pk, w->sid);
            kyu_mp_pack_str(&pk, "wn");
            kyu_mp_pack_str(&pk, w->name);
            kyu_mp_pack_str(&pk, "host");
            kyu_mp_pack_str(&pk, w->host);
            kyu_mp_pack_str(&pk, "q");
            kyu_mp_pack_str(&pk, w->queue);
            kyu_mp_pack_str(&pk, "cr");
            msgpack_pack_uint32(&pk, w->credit);
            kyu_mp_pack_str(&pk, "ct");
            msgpack_pack_uint32(&pk, w->credit_total);
            kyu_mp_pack_str(&pk, "held");
            msgpack_pack_uint32(&pk, w->held);
            kyu_mp_pack_str(&pk, "hbago");
            msgpack_pack_uint64(&pk, w->hb_ago_ms);
            kyu_mp_pack_str(&pk, "age");
            msgpack_pack_uint64(&pk, w->age_ms);
        }
    }
    if (rep->tasks) { /* move tasks: one map each, SQS's names */
        kyu_mp_pack_str(&pk, "mt");
        msgpack_pack_array(&pk, rep->n_tasks);
        for (size_t i = 0; i < rep->n_tasks; i++) {
            const kyu_move_task_t *t = &rep->tasks[i];
            const char *st = kyu_move_status_name(t->status);
            msgpack_pack_map(&pk, 6 + (t->destination[0] != '\0') + (t->rate != 0) +
                                      (t->ended_ms != 0) + (t->reason[0] != '\0'));
            pack_kv_int(&pk, "TaskHandle", (int64_t)t->id);
            kyu_mp_pack_str(&pk, "Status");
            kyu_mp_pack_str(&pk, st ? st : "UNKNOWN");
            kyu_mp_pack_str(&pk, "SourceQueue");
            kyu_mp_pack_str(&pk, t->source);
            if (t->destination[0]) {
                kyu_mp_pack_str(&pk, "DestinationQueue");
                kyu_mp_pack_str(&pk, t->destination);
            }
            if (t->rate)
                pack_kv_int(&pk, "MaxNumberOfMessagesPerSecond", t->rate);
            pack_kv_int(&pk, "ApproximateNumberOfMessagesMoved", (int64_t)t->moved);
            pack_kv_int(&pk, "ApproximateNumberOfMessagesToMove", (int64_t)t->to_move);
            pack_kv_int(&pk, "StartedTimestamp", (int64_t)t->started_ms);
            if (t->ended_ms)
                pack_kv_int(&pk, "EndedTimestamp", (int64_t)t->ended_ms);
            if (t->reason[0]) {
                kyu_mp_pack_str(&pk, "FailureReason");
                kyu_mp_pack_str(&pk, t->reason);
            }
        }
    }
}

/* ---- decoding ---- */

static bool get_u64(const msgpack_object *o, uint64_t *out)
{
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return false;
    *out = o->via.u64;
    return true;
}

static bool get_i64(const msgpack_object *o, int64_t *out)
{
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT64_MAX)
        *out = (int64_t)o->via.u64;
    else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        *out = o->via.i64;
    else
        return false;
    return true;
}

static bool get_array(const msgpack_object *o, size_t max, size_t *n)
{
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size > max)
        return false;
    *n = o->via.array.size;
    return true;
}

static bool decode_meta(const msgpack_object *o, kyu_msg_meta_t *m)
{
    if (o->type != MSGPACK_OBJECT_MAP)
        return false;
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object *k = &o->via.map.ptr[i].key, *v = &o->via.map.ptr[i].val;
        uint64_t u = 0;
        bool ok = true;
        if (kyu_mp_key_is(k, "mid"))
            ok = kyu_mp_copy_str(v, m->message_id, KYU_MESSAGE_ID_MAX);
        else if (kyu_mp_key_is(k, "rh"))
            ok = kyu_mp_copy_str(v, m->handle, KYU_HANDLE_MAX);
        else if (kyu_mp_key_is(k, "rc"))
            ok = get_u64(v, &u) && u <= UINT32_MAX && (m->receive_count = (uint32_t)u, true);
        else if (kyu_mp_key_is(k, "ts"))
            ok = get_u64(v, &m->sent_ms);
        else if (kyu_mp_key_is(k, "fr"))
            ok = get_u64(v, &m->first_receive_ms);
        else if (kyu_mp_key_is(k, "dlsrc"))
            ok = kyu_mp_copy_str(v, m->dlq_source, KYU_NAME_MAX);
        else if (kyu_mp_key_is(k, "dlrc"))
            ok = get_u64(v, &u) && u <= UINT32_MAX && (m->dlq_receive_count = (uint32_t)u, true);
        else if (kyu_mp_key_is(k, "dlfr"))
            ok = get_u64(v, &m->dlq_first_receive_ms);
        else if (kyu_mp_key_is(k, "dllr"))
            ok = get_u64(v, &m->dlq_last_receive_ms);
        else if (kyu_mp_key_is(k, "dlat"))
            ok = get_u64(v, &m->dlq_moved_ms);
        else if (kyu_mp_key_is(k, "mdb"))
            ok = kyu_mp_copy_str(v, m->md5_body, KYU_MD5_HEX_LEN);
        else if (kyu_mp_key_is(k, "mda"))
            ok = kyu_mp_copy_str(v, m->md5_attrs, KYU_MD5_HEX_LEN);
        else if (kyu_mp_key_is(k, "gid"))
            ok = kyu_mp_copy_str(v, m->group_id, KYU_GROUP_ID_MAX);
        else if (kyu_mp_key_is(k, "did"))
            ok = kyu_mp_copy_str(v, m->dedup_id, KYU_DEDUP_ID_MAX);
        else if (kyu_mp_key_is(k, "sn"))
            ok = get_u64(v, &m->sequence);
        else if (kyu_mp_key_is(k, "pos"))
            ok = get_u64(v, &m->position);
        else if (kyu_mp_key_is(k, "va"))
            ok = get_u64(v, &m->visible_at_ms);
        else if (kyu_mp_key_is(k, "state")) {
            char name[16];
            ok = kyu_mp_copy_str(v, name, sizeof name - 1) &&
                 (m->state = (uint8_t)kyu_msg_state_parse(name)) != 0;
        }
        if (!ok)
            return false;
    }
    return true;
}

/* The attributes that are not numbers: RedrivePolicy [queue, maxReceiveCount],
 * RedriveAllowPolicy (its permission) and RedriveAllowSourceQueues. */
static bool decode_redrive_attr(const msgpack_object *k, const msgpack_object *v,
                                kyu_queue_attrs_t *a, bool *known)
{
    *known = true;
    if (kyu_mp_key_is(k, "RedrivePolicy"))
        return v->type == MSGPACK_OBJECT_ARRAY && v->via.array.size == 2 &&
               kyu_mp_copy_str(&v->via.array.ptr[0], a->dlq, KYU_NAME_MAX) &&
               get_i64(&v->via.array.ptr[1], &a->max_receive_count);
    if (kyu_mp_key_is(k, "RedriveAllowPolicy")) {
        a->redrive_allow = kyu_mp_key_is(v, "denyAll")   ? KYU_REDRIVE_DENY_ALL
                           : kyu_mp_key_is(v, "byQueue") ? KYU_REDRIVE_BY_QUEUE
                                                         : KYU_REDRIVE_ALLOW_ALL;
        return v->type == MSGPACK_OBJECT_STR;
    }
    if (kyu_mp_key_is(k, "FifoQueue") || kyu_mp_key_is(k, "ContentBasedDeduplication")) {
        if (v->type != MSGPACK_OBJECT_BOOLEAN)
            return false;
        *(kyu_mp_key_is(k, "FifoQueue") ? &a->fifo : &a->cbd) = v->via.boolean;
        return true;
    }
    if (kyu_mp_key_is(k, "DeduplicationScope")) {
        a->dedup_scope =
            kyu_mp_key_is(v, "messageGroup") ? KYU_DEDUP_SCOPE_GROUP : KYU_DEDUP_SCOPE_QUEUE;
        return v->type == MSGPACK_OBJECT_STR;
    }
    if (kyu_mp_key_is(k, "FifoThroughputLimit")) {
        a->throughput = kyu_mp_key_is(v, "perMessageGroupId") ? KYU_THROUGHPUT_PER_GROUP
                                                              : KYU_THROUGHPUT_PER_QUEUE;
        return v->type == MSGPACK_OBJECT_STR;
    }
    if (kyu_mp_key_is(k, "RedriveAllowSourceQueues")) {
        if (!get_array(v, KYU_REDRIVE_SOURCES_MAX, &a->n_sources))
            return false;
        for (size_t i = 0; i < a->n_sources; i++)
            if (!kyu_mp_copy_str(&v->via.array.ptr[i], a->sources[i], KYU_NAME_MAX))
                return false;
        return true;
    }
    *known = false;
    return true;
}

static bool decode_attrs(const msgpack_object *o, kyu_queue_attrs_t *a)
{
    if (o->type != MSGPACK_OBJECT_MAP)
        return false;
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object *k = &o->via.map.ptr[i].key, *v = &o->via.map.ptr[i].val;
        int64_t *dst = NULL;
        bool known = false;
        if (!decode_redrive_attr(k, v, a, &known))
            return false;
        if (known)
            continue;
        if (kyu_mp_key_is(k, "VisibilityTimeout"))
            dst = &a->visibility_timeout;
        else if (kyu_mp_key_is(k, "ApproximateNumberOfMessages"))
            dst = &a->visible;
        else if (kyu_mp_key_is(k, "ApproximateNumberOfMessagesNotVisible"))
            dst = &a->not_visible;
        else if (kyu_mp_key_is(k, "CreatedTimestamp"))
            dst = &a->created_ms;
        else if (kyu_mp_key_is(k, "MaximumMessageSize"))
            dst = &a->max_size;
        else if (kyu_mp_key_is(k, "DelaySeconds"))
            dst = &a->delay;
        else if (kyu_mp_key_is(k, "ApproximateNumberOfMessagesDelayed"))
            dst = &a->delayed;
        else if (kyu_mp_key_is(k, "LastModifiedTimestamp"))
            dst = &a->modified_ms;
        else if (kyu_mp_key_is(k, "MessageRetentionPeriod"))
            dst = &a->retention;
        else if (kyu_mp_key_is(k, "ReceiveMessageWaitTimeSeconds"))
            dst = &a->receive_wait;
        if (dst && !get_i64(v, dst))
            return false;
    }
    return true;
}

static bool decode_ids(const msgpack_object *o, uint64_t *ids, size_t *n)
{
    if (!get_array(o, KYU_CLUSTER_NODES_MAX, n))
        return false;
    for (size_t i = 0; i < *n; i++)
        if (!get_u64(&o->via.array.ptr[i], &ids[i]))
            return false;
    return true;
}

static bool decode_node(const msgpack_object *o, kyu_node_status_t *nd)
{
    if (o->type != MSGPACK_OBJECT_MAP)
        return false;
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object *k = &o->via.map.ptr[i].key, *v = &o->via.map.ptr[i].val;
        bool ok = true;
        if (kyu_mp_key_is(k, "id"))
            ok = get_u64(v, &nd->id);
        else if (kyu_mp_key_is(k, "raft"))
            ok = kyu_mp_copy_str(v, nd->raft_address, KYU_ENDPOINT_MAX - 1);
        else if (kyu_mp_key_is(k, "ep"))
            ok = kyu_mp_copy_str(v, nd->endpoint, KYU_ENDPOINT_MAX - 1);
        else if (kyu_mp_key_is(k, "role"))
            ok = kyu_mp_copy_str(v, nd->role, sizeof nd->role - 1);
        else if (kyu_mp_key_is(k, "member"))
            ok = kyu_mp_copy_str(v, nd->member, sizeof nd->member - 1);
        else if (kyu_mp_key_is(k, "voters"))
            ok = decode_ids(v, nd->voters, &nd->n_voters);
        else if (kyu_mp_key_is(k, "learners"))
            ok = decode_ids(v, nd->learners, &nd->n_learners);
        else if (kyu_mp_key_is(k, "term"))
            ok = get_u64(v, &nd->term);
        else if (kyu_mp_key_is(k, "commit"))
            ok = get_u64(v, &nd->commit_index);
        else if (kyu_mp_key_is(k, "applied"))
            ok = get_u64(v, &nd->applied_index);
        else if (kyu_mp_key_is(k, "leader"))
            ok = get_u64(v, &nd->leader);
        else if (kyu_mp_key_is(k, "ro"))
            ok = kyu_mp_copy_str(v, nd->read_only, sizeof nd->read_only - 1);
        if (!ok)
            return false;
    }
    return true;
}

static bool decode_task(const msgpack_object *o, kyu_move_task_t *t)
{
    if (o->type != MSGPACK_OBJECT_MAP)
        return false;
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object *k = &o->via.map.ptr[i].key, *v = &o->via.map.ptr[i].val;
        uint64_t u = 0;
        bool ok = true;
        if (kyu_mp_key_is(k, "TaskHandle"))
            ok = get_u64(v, &t->id);
        else if (kyu_mp_key_is(k, "Status")) {
            char name[16];
            ok = kyu_mp_copy_str(v, name, sizeof name - 1) &&
                 (t->status = kyu_move_status_parse(name)) != 0;
        } else if (kyu_mp_key_is(k, "SourceQueue"))
            ok = kyu_mp_copy_str(v, t->source, KYU_NAME_MAX);
        else if (kyu_mp_key_is(k, "DestinationQueue"))
            ok = kyu_mp_copy_str(v, t->destination, KYU_NAME_MAX);
        else if (kyu_mp_key_is(k, "MaxNumberOfMessagesPerSecond"))
            ok = get_u64(v, &u) && u <= UINT32_MAX && (t->rate = (uint32_t)u, true);
        else if (kyu_mp_key_is(k, "ApproximateNumberOfMessagesMoved"))
            ok = get_u64(v, &t->moved);
        else if (kyu_mp_key_is(k, "ApproximateNumberOfMessagesToMove"))
            ok = get_u64(v, &t->to_move);
        else if (kyu_mp_key_is(k, "StartedTimestamp"))
            ok = get_u64(v, &t->started_ms);
        else if (kyu_mp_key_is(k, "EndedTimestamp"))
            ok = get_u64(v, &t->ended_ms);
        else if (kyu_mp_key_is(k, "FailureReason"))
            ok = kyu_mp_copy_str(v, t->reason, KYU_MOVE_REASON_MAX - 1);
        if (!ok)
            return false;
    }
    return true;
}

static bool decode_worker(const msgpack_object *o, kyu_worker_info_t *w)
{
    if (o->type != MSGPACK_OBJECT_MAP)
        return false;
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object *k = &o->via.map.ptr[i].key, *v = &o->via.map.ptr[i].val;
        uint64_t u = 0;
        bool ok = true;
        if (kyu_mp_key_is(k, "sid"))
            ok = get_u64(v, &w->sid);
        else if (kyu_mp_key_is(k, "wn"))
            ok = kyu_mp_copy_str(v, w->name, KYU_WORKER_NAME_MAX);
        else if (kyu_mp_key_is(k, "host"))
            ok = kyu_mp_copy_str(v, w->host, KYU_ENDPOINT_MAX - 1);
        else if (kyu_mp_key_is(k, "q"))
            ok = kyu_mp_copy_str(v, w->queue, KYU_NAME_MAX);
        else if (kyu_mp_key_is(k, "cr"))
            ok = get_u64(v, &u) && u <= UINT32_MAX && (w->credit = (uint32_t)u, true);
        else if (kyu_mp_key_is(k, "ct"))
            ok = get_u64(v, &u) && u <= UINT32_MAX && (w->credit_total = (uint32_t)u, true);
        else if (kyu_mp_key_is(k, "held"))
            ok = get_u64(v, &u) && u <= UINT32_MAX && (w->held = (uint32_t)u, true);
        else if (kyu_mp_key_is(k, "hbago"))
            ok = get_u64(v, &w->hb_ago_ms);
        else if (kyu_mp_key_is(k, "age"))
            ok = get_u64(v, &w->age_ms);
        if (!ok)
            return false;
    }
    return true;
}

static bool decode_field(const msgpack_object *k, const msgpack_object *v, kyu_reply_t *rep)
{
    uint64_t u = 0;
    if (kyu_mp_key_is(k, "id"))
        return get_u64(v, &rep->id);
    if (kyu_mp_key_is(k, "st"))
        return get_u64(v, &u) && u <= UINT32_MAX && (rep->status = (uint32_t)u, true);
    if (kyu_mp_key_is(k, "err"))
        return kyu_mp_copy_str(v, rep->error, sizeof rep->error - 1);
    if (kyu_mp_key_is(k, "leader"))
        return kyu_mp_copy_str(v, rep->leader, sizeof rep->leader - 1);
    if (kyu_mp_key_is(k, "v"))
        return get_u64(v, &u) && u <= UINT32_MAX && (rep->version = (uint32_t)u, true);
    if (kyu_mp_key_is(k, "maxbody"))
        return get_u64(v, &rep->max_body);
    if (kyu_mp_key_is(k, "ids")) {
        if (!get_array(v, KYU_BATCH_MAX, &rep->n_ids))
            return false;
        for (size_t i = 0; i < rep->n_ids; i++)
            if (!kyu_mp_copy_str(&v->via.array.ptr[i], rep->ids[i], KYU_MESSAGE_ID_MAX))
                return false;
        return true;
    }
    if (kyu_mp_key_is(k, "mdb") || kyu_mp_key_is(k, "mda")) {
        size_t n = 0;
        char(*out)[KYU_MD5_HEX_LEN + 1] = kyu_mp_key_is(k, "mdb") ? rep->md5_body : rep->md5_attrs;
        if (!get_array(v, KYU_BATCH_MAX, &n))
            return false;
        for (size_t i = 0; i < n; i++)
            if (!kyu_mp_copy_str(&v->via.array.ptr[i], out[i], KYU_MD5_HEX_LEN))
                return false;
        return true;
    }
    if (kyu_mp_key_is(k, "sn")) { /* SEND to a FIFO queue: each message's SequenceNumber */
        size_t n = 0;
        if (!get_array(v, KYU_BATCH_MAX, &n))
            return false;
        for (size_t i = 0; i < n; i++)
            if (!get_u64(&v->via.array.ptr[i], &rep->sequences[i]))
                return false;
        return true;
    }
    if (kyu_mp_key_is(k, "ma")) { /* RECEIVE: each message's attributes */
        size_t n = 0;
        if (!get_array(v, KYU_BATCH_MAX, &n))
            return false;
        for (size_t i = 0; i < n; i++)
            if (!kyu_msg_attrs_unpack(&v->via.array.ptr[i], &rep->msgs[i].attrs))
                return false;
        return true;
    }
    if (kyu_mp_key_is(k, "msgs")) {
        if (!get_array(v, KYU_BATCH_MAX, &rep->n_msgs))
            return false;
        for (size_t i = 0; i < rep->n_msgs; i++)
            if (!decode_meta(&v->via.array.ptr[i], &rep->msgs[i]))
                return false;
        return true;
    }
    if (kyu_mp_key_is(k, "res")) {
        if (!get_array(v, KYU_BATCH_MAX, &rep->n_results))
            return false;
        for (size_t i = 0; i < rep->n_results; i++) {
            if (!get_u64(&v->via.array.ptr[i], &u) || u > UINT32_MAX)
                return false;
            rep->results[i] = (uint32_t)u;
        }
        return true;
    }
    if (kyu_mp_key_is(k, "next")) {
        rep->has_next = true;
        return get_u64(v, &rep->next);
    }
    if (kyu_mp_key_is(k, "errs")) { /* SEND batch: why each failed entry failed */
        if (!get_array(v, KYU_BATCH_MAX, &rep->n_errors))
            return false;
        for (size_t i = 0; i < rep->n_errors; i++)
            if (!kyu_mp_copy_str(&v->via.array.ptr[i], rep->errors[i], KYU_ERR_MSG_MAX - 1))
                return false;
        return true;
    }
    if (kyu_mp_key_is(k, "attrs")) {
        rep->has_attrs = true;
        return decode_attrs(v, &rep->attrs);
    }
    if (kyu_mp_key_is(k, "node")) {
        rep->has_node = true;
        return decode_node(v, &rep->node);
    }
    if (kyu_mp_key_is(k, "tags")) {
        if (v->type != MSGPACK_OBJECT_MAP || v->via.map.size > KYU_TAGS_MAX || rep->tags)
            return false;
        rep->tags = calloc(1, sizeof *rep->tags);
        if (!rep->tags)
            return false;
        for (uint32_t i = 0; i < v->via.map.size; i++)
            if (!kyu_mp_copy_str(&v->via.map.ptr[i].key, rep->tags->keys[i], KYU_TAG_KEY_MAX) ||
                !kyu_mp_copy_str(&v->via.map.ptr[i].val, rep->tags->values[i], KYU_TAG_VALUE_MAX))
                return false;
        rep->tags->n = v->via.map.size;
        return true;
    }
    if (kyu_mp_key_is(k, "queues")) {
        size_t n = 0;
        if (!get_array(v, QUEUES_MAX, &n) || rep->queues)
            return false;
        rep->queues = calloc(n ? n : 1, sizeof rep->queues[0]);
        if (!rep->queues)
            return false;
        rep->n_queues = n;
        for (size_t i = 0; i < n; i++)
            if (!kyu_mp_copy_str(&v->via.array.ptr[i], rep->queues[i], KYU_NAME_MAX))
                return false;
        return true;
    }
    if (kyu_mp_key_is(k, "topics")) {
        size_t n = 0;
        if (!get_array(v, KYU_TOPICS_MAX, &n) || rep->topics)
            return false;
        rep->topics = calloc(n ? n : 1, sizeof rep->topics[0]);
        if (!rep->topics)
            return false;
        rep->n_topics = n;
        for (size_t i = 0; i < n; i++)
            if (!kyu_mp_copy_str(&v->via.array.ptr[i], rep->topics[i], KYU_TOPIC_NAME_MAX))
                return false;
        return true;
    }
    if (kyu_mp_key_is(k, "subs")) {
        size_t n = 0;
        if (!get_array(v, KYU_TOPICS_MAX * KYU_TOPIC_SUBS_MAX, &n) || rep->subs)
            return false;
        /* One allocation: the array, then the policies' texts it points to. */
        size_t text = 0;
        for (size_t i = 0; i < n; i++) {
            const msgpack_object *e = &v->via.array.ptr[i];
            if (e->type == MSGPACK_OBJECT_ARRAY && e->via.array.size == 6) {
                if (e->via.array.ptr[5].type != MSGPACK_OBJECT_STR)
                    return false;
                text += e->via.array.ptr[5].via.str.size + 1;
            }
        }
        char *block = calloc(1, (n ? n : 1) * sizeof rep->subs[0] + text);
        if (!block)
            return false;
        rep->subs = (kyu_sub_info_t *)block;
        char *p = block + (n ? n : 1) * sizeof rep->subs[0];
        rep->n_subs = n;
        for (size_t i = 0; i < n; i++) {
            const msgpack_object *e = &v->via.array.ptr[i];
            if (e->type != MSGPACK_OBJECT_ARRAY || e->via.array.size < 4 || e->via.array.size > 6 ||
                !kyu_mp_copy_str(&e->via.array.ptr[0], rep->subs[i].id, KYU_SUB_ID_LEN) ||
                !kyu_mp_copy_str(&e->via.array.ptr[1], rep->subs[i].topic, KYU_TOPIC_NAME_MAX) ||
                !kyu_mp_copy_str(&e->via.array.ptr[2], rep->subs[i].queue, KYU_NAME_MAX) ||
                e->via.array.ptr[3].type != MSGPACK_OBJECT_BOOLEAN)
                return false;
            rep->subs[i].raw = e->via.array.ptr[3].via.boolean;
            if (e->via.array.size >= 5) {
                char scope[16];
                if (!kyu_mp_copy_str(&e->via.array.ptr[4], scope, sizeof scope - 1) ||
                    (strcmp(scope, "body") && strcmp(scope, "attributes")))
                    return false;
                rep->subs[i].filtered = true;
                rep->subs[i].filter_body = !strcmp(scope, "body");
            }
            if (e->via.array.size == 6) {
                const msgpack_object *pol = &e->via.array.ptr[5];
                if (pol->via.str.size)
                    memcpy(p, pol->via.str.ptr, pol->via.str.size);
                p[pol->via.str.size] = '\0';
                rep->subs[i].policy = p;
                p += pol->via.str.size + 1;
            }
        }
        return true;
    }
    if (kyu_mp_key_is(k, "sid"))
        return get_u64(v, &rep->sid);
    if (kyu_mp_key_is(k, "ev")) {
        char name[16];
        return kyu_mp_copy_str(v, name, sizeof name - 1) && (rep->ev = kyu_ev_parse(name)) != 0;
    }
    if (kyu_mp_key_is(k, "hb"))
        return get_u64(v, &u) && u <= UINT32_MAX && (rep->hb_ms = (uint32_t)u, true);
    if (kyu_mp_key_is(k, "lv"))
        return get_u64(v, &u) && u <= UINT32_MAX && (rep->liveness = (uint32_t)u, true);
    if (kyu_mp_key_is(k, "workers")) {
        size_t n = 0;
        if (!get_array(v, WORKERS_MAX, &n) || rep->workers)
            return false;
        rep->workers = calloc(n ? n : 1, sizeof rep->workers[0]);
        if (!rep->workers)
            return false;
        rep->n_workers = n;
        for (size_t i = 0; i < n; i++)
            if (!decode_worker(&v->via.array.ptr[i], &rep->workers[i]))
                return false;
        return true;
    }
    if (kyu_mp_key_is(k, "mt")) {
        size_t n = 0;
        if (!get_array(v, KYU_MOVE_TASKS_MAX, &n) || rep->tasks)
            return false;
        rep->tasks = calloc(n ? n : 1, sizeof rep->tasks[0]);
        if (!rep->tasks)
            return false;
        rep->n_tasks = n;
        for (size_t i = 0; i < n; i++)
            if (!decode_task(&v->via.array.ptr[i], &rep->tasks[i]))
                return false;
        return true;
    }
    return true; /* unknown keys: a newer broker's additions */
}

static const void *rebase(const void *p, const char *from, const char *to)
{
    return p ? to + ((const char *)p - from) : NULL;
}

/* The messages' attributes point into the header buffer, which the caller may free: the
 * reply keeps a copy of it and points into that instead. */
static kyu_code_t own_attributes(const void *buf, size_t len, kyu_reply_t *rep, size_t rows,
                                 kyu_err_t *err)
{
    for (size_t i = rep->n_msgs; i < rows; i++)
        if (rep->msgs[i].attrs.n)
            return kyu_err_set(err, KYU_ERR_MALFORMED, "reply has attributes for %zu messages",
                               i + 1);
    if (!any_attrs(rep))
        return KYU_OK;
    rep->header = malloc(len);
    if (!rep->header)
        return kyu_err_set(err, KYU_ERR_INTERNAL, "out of memory for a reply's attributes");
    memcpy(rep->header, buf, len);
    for (size_t i = 0; i < rep->n_msgs; i++)
        for (size_t j = 0; j < rep->msgs[i].attrs.n; j++) {
            kyu_msg_attr_t *at = &rep->msgs[i].attrs.a[j];
            at->name = rebase(at->name, buf, rep->header);
            at->type = rebase(at->type, buf, rep->header);
            at->value = rebase(at->value, buf, rep->header);
        }
    return KYU_OK;
}

/* The rows of the per-message arrays a header fills: the longest of the arrays that fill
 * each ("ids", "mdb", "mda" the ids and MD5s; "msgs", "ma" the messages; "errs" and "res" the
 * errors, "" for a result without its text), at most KYU_BATCH_MAX (decode_field refuses
 * longer ones). */
typedef struct {
    size_t ids, msgs, errors;
} rows_t;

static void rows_grow(size_t *rows, const msgpack_object *v)
{
    if (v->type == MSGPACK_OBJECT_ARRAY && v->via.array.size > *rows)
        *rows = at_most_batch(v->via.array.size);
}

static rows_t header_rows(const msgpack_object *map)
{
    rows_t r = {0, 0, 0};
    for (uint32_t i = 0; map->type == MSGPACK_OBJECT_MAP && i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key, *v = &map->via.map.ptr[i].val;
        if (kyu_mp_key_is(k, "ids") || kyu_mp_key_is(k, "mdb") || kyu_mp_key_is(k, "mda"))
            rows_grow(&r.ids, v);
        else if (kyu_mp_key_is(k, "msgs") || kyu_mp_key_is(k, "ma"))
            rows_grow(&r.msgs, v);
        else if (kyu_mp_key_is(k, "errs") || kyu_mp_key_is(k, "res"))
            rows_grow(&r.errors, v);
    }
    return r;
}

/* Zeroes the reply but for the per-message arrays' rows past r: what decoding reads as a
 * cleared reply (the rows past the counts are not the reply's). */
static void clear_rows(kyu_reply_t *rep, rows_t r)
{
    KYU_CLEAR_RANGE(kyu_reply_t, rep, id, ids);
    memset(rep->ids, 0, r.ids * sizeof rep->ids[0]);
    memset(rep->md5_body, 0, r.ids * sizeof rep->md5_body[0]);
    memset(rep->md5_attrs, 0, r.ids * sizeof rep->md5_attrs[0]);
    KYU_CLEAR_RANGE(kyu_reply_t, rep, sequences, msgs);
    memset(rep->msgs, 0, r.msgs * sizeof rep->msgs[0]);
    KYU_CLEAR_RANGE(kyu_reply_t, rep, has_next, errors);
    memset(rep->errors, 0, r.errors * sizeof rep->errors[0]);
    memset(&rep->has_attrs, 0, sizeof *rep - offsetof(kyu_reply_t, has_attrs));
}

kyu_code_t kyu_reply_decode(const void *buf, size_t len, kyu_reply_t *rep, kyu_err_t *err)
{
    /* Not kyu_reply_reset: only the rows this header fills are cleared (a client decodes a
     * reply per message, and all of the 19 KB would be cleared for a SEND's one id). */
    release(rep);
    msgpack_unpacked u;
    kyu_code_t rc = kyu_msgpack_unpack_bounded(buf, len, MAX_DEPTH, &u, err);
    rows_t rows = {0, 0, 0};
    if (rc == KYU_OK)
        rows = header_rows(&u.data);
    clear_rows(rep, rows);
    if (rc != KYU_OK)
        return rc;
    if (u.data.type != MSGPACK_OBJECT_MAP) {
        rc = kyu_err_set(err, KYU_ERR_MALFORMED, "reply header is not a map");
    } else {
        for (uint32_t i = 0; i < u.data.via.map.size; i++) {
            if (!decode_field(&u.data.via.map.ptr[i].key, &u.data.via.map.ptr[i].val, rep)) {
                rc = kyu_err_set(err, KYU_ERR_MALFORMED, "reply header field of wrong shape");
                break;
            }
        }
    }
    msgpack_unpacked_destroy(&u);
    if (rc == KYU_OK)
        rc = own_attributes(buf, len, rep, rows.msgs, err);
    return rc;
}
