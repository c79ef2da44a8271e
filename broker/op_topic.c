/* op_topic: SNS-style topics that fan out to queues — CREATE_TOPIC, DELETE_TOPIC,
 * LIST_TOPICS, SUBSCRIBE, UNSUBSCRIBE, LIST_SUBSCRIPTIONS, PUBLISH and a subscription's
 * attributes (SET_ and GET_SUBSCRIPTION_ATTRIBUTES: its filter policy, the policy's scope,
 * raw delivery, changed in place); their rows: ops.c.
 *
 * A topic and its subscriptions are one record (meta "tp" name -> msgpack [created_ms,
 * [[sub id, queue, raw], ...]] or, for a FIFO topic, [created_ms, subs, flags (1 FIFO, 2
 * ContentBasedDeduplication)], sm.c's key layout), kept in memory too (self->topics) and
 * loaded at a start or a snapshot's install.
 *
 * FIFO topics (SNS's; names end in .fifo) deliver to FIFO queues only. A publish carries a
 * MessageGroupId and a MessageDeduplicationId (or the SHA-256 of its body, computed by the
 * leader, with ContentBasedDeduplication); the topic remembers the deduplication id for 5
 * minutes (a table of sm_fdedup.c, the FIFO queues' machinery: meta "ft" name ' ' 'q' dedup
 * id -> time, seq, message id), so a duplicate is answered with the first publish's message
 * id and SequenceNumber and enqueues nothing, also after the copies were deleted. A publish
 * takes a seq of its own (its SequenceNumber), then each copy the next seqs: every FIFO
 * queue gets the copies in publish order, each with the group and deduplication ids, and
 * keeps group order by its seqs (sm_fifo.c). A copy goes through the queue's own
 * deduplication as SQS's would (a queue also fed by sends or another topic may already hold
 * that deduplication id: it keeps the first and answers nothing else). A PUBLISH is one command:
 * its apply finds the topic's subscriptions as they are at that point of the log, checks the
 * message against every subscribed queue first (its MaximumMessageSize: the body and attributes for
 * a raw subscription, the envelope for the others) and then enqueues a copy into each, or, when one
 * check fails, into none (the result says which queue refused it). Every replica makes the same
 * copies: the envelope is built from the command alone (its message id and time), and each copy's
 * message id is derived from the publish's and the subscription's ids.
 *
 * A deleted queue's subscriptions are removed with it (kyu_sm_topics_drop_queue, from
 * DELETE_QUEUE's apply), so a publish never meets a subscription without its queue.
 *
 * The leader serves the subscribed queues' long polls and worker sessions in the publish's
 * own entry (frontend_wait.c): kyu_sm_publish_visible_at_once counts, per queue, the copies a
 * receive right after the publish would find, with publish_one's decisions on the state now. */
#include "filter.h"
#include "ops.h"
#include "sm_internal.h"

#include <jansson.h>
#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    char id[KYU_SUB_ID_LEN + 1];
    char queue[KYU_NAME_MAX + 1];
    bool raw;
    /* its filter policy (filter.h), or none: policy NULL, filter NULL (every message) */
    kyu_filter_scope_t scope;
    char *policy;         /* canonical JSON (compact, keys sorted), as recorded */
    kyu_filter_t *filter; /* compiled from it */
} tsub_t;

typedef struct {
    char name[KYU_TOPIC_NAME_MAX + 1];
    uint64_t created_ms;
    bool fifo, cbd;      /* a FIFO topic; its ContentBasedDeduplication */
    kyu_fdedup_t *dedup; /* a FIFO topic's deduplication records (NULL until its first) */
    size_t n, cap;
    tsub_t *subs; /* in the order subscribed */
} topic_t;

#define TOPIC_FLAG_FIFO 1
#define TOPIC_FLAG_CBD 2

#define KEY_MAX (2 + KYU_TOPIC_NAME_MAX)

static void sub_free(tsub_t *s)
{
    free(s->policy);
    s->policy = NULL;
    kyu_filter_destroy(&s->filter);
}

static void topic_destroy(void **item)
{
    topic_t *t = *item;
    if (t) {
        for (size_t i = 0; i < t->n; i++)
            sub_free(&t->subs[i]);
        free(t->subs);
        kyu_fdedup_destroy(&t->dedup);
        free(t);
    }
    *item = NULL;
}

static size_t topic_key(uint8_t k[KEY_MAX], const char *name)
{
    size_t n = strlen(name);
    k[0] = 't';
    k[1] = 'p';
    memcpy(k + 2, name, n);
    return 2 + n;
}

static void write_topic(kyu_sm_t *self, const topic_t *t)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, t->fifo ? 3 : 2);
    msgpack_pack_uint64(&pk, t->created_ms);
    msgpack_pack_array(&pk, t->n);
    for (size_t i = 0; i < t->n; i++) {
        const tsub_t *s = &t->subs[i];
        msgpack_pack_array(&pk, s->policy ? 5 : 3);
        kyu_mp_pack_str(&pk, s->id);
        kyu_mp_pack_str(&pk, s->queue);
        kyu_mp_pack_bool(&pk, s->raw);
        if (s->policy) {
            msgpack_pack_uint32(&pk, (uint32_t)s->scope);
            kyu_mp_pack_str(&pk, s->policy);
        }
    }
    if (t->fifo)
        msgpack_pack_uint32(&pk, TOPIC_FLAG_FIFO | (t->cbd ? TOPIC_FLAG_CBD : 0));
    uint8_t k[KEY_MAX];
    kyu_sm_put(self, KYU_CF_META, k, topic_key(k, t->name), sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
}

/* Compiles a policy (len bytes) into the subscription: its filter and canonical text. */
static kyu_code_t set_filter(tsub_t *s, kyu_filter_scope_t scope, const void *policy, size_t len,
                             kyu_err_t *err)
{
    s->scope = scope;
    s->policy = NULL;
    s->filter = NULL;
    if (!policy)
        return KYU_OK;
    return kyu_filter_compile(policy, len, scope, &s->filter, &s->policy, err);
}

static bool add_sub(topic_t *t, const char *id, const char *queue, bool raw, const tsub_t *f)
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 4;
        tsub_t *s = realloc(t->subs, cap * sizeof *s);
        if (!s)
            return false;
        t->subs = s;
        t->cap = cap;
    }
    tsub_t *s = &t->subs[t->n++];
    snprintf(s->id, sizeof s->id, "%s", id);
    snprintf(s->queue, sizeof s->queue, "%s", queue);
    s->raw = raw;
    s->scope = f ? f->scope : KYU_FILTER_SCOPE_ATTRIBUTES;
    s->policy = f ? f->policy : NULL;
    s->filter = f ? f->filter : NULL;
    return true;
}

static bool parse_topic(const char *v, size_t vl, topic_t *t)
{
    msgpack_unpacked u;
    kyu_err_t e;
    if (kyu_msgpack_unpack_bounded(v, vl, 4, &u, &e) != KYU_OK)
        return false;
    const msgpack_object *o = &u.data;
    bool ok = o->type == MSGPACK_OBJECT_ARRAY &&
              (o->via.array.size == 2 || o->via.array.size == 3) &&
              o->via.array.ptr[0].type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
              o->via.array.ptr[1].type == MSGPACK_OBJECT_ARRAY &&
              o->via.array.ptr[1].via.array.size <= KYU_TOPIC_SUBS_MAX;
    if (ok && o->via.array.size == 3) {
        const msgpack_object *fl = &o->via.array.ptr[2];
        ok = fl->type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
             fl->via.u64 == (fl->via.u64 & (TOPIC_FLAG_FIFO | TOPIC_FLAG_CBD)) &&
             (fl->via.u64 & TOPIC_FLAG_FIFO);
        t->fifo = ok;
        t->cbd = ok && (fl->via.u64 & TOPIC_FLAG_CBD);
    }
    if (ok)
        t->created_ms = o->via.array.ptr[0].via.u64;
    for (uint32_t i = 0; ok && i < o->via.array.ptr[1].via.array.size; i++) {
        const msgpack_object *s = &o->via.array.ptr[1].via.array.ptr[i];
        char id[KYU_SUB_ID_LEN + 1], queue[KYU_NAME_MAX + 1];
        ok = s->type == MSGPACK_OBJECT_ARRAY &&
             (s->via.array.size == 3 || s->via.array.size == 5) &&
             kyu_mp_copy_str(&s->via.array.ptr[0], id, KYU_SUB_ID_LEN) &&
             kyu_mp_copy_str(&s->via.array.ptr[1], queue, KYU_NAME_MAX) &&
             s->via.array.ptr[2].type == MSGPACK_OBJECT_BOOLEAN;
        tsub_t f = {0};
        if (ok && s->via.array.size == 5) {
            const msgpack_object *sc = &s->via.array.ptr[3], *p = &s->via.array.ptr[4];
            kyu_err_t e2;
            ok = sc->type == MSGPACK_OBJECT_POSITIVE_INTEGER && sc->via.u64 <= 1 &&
                 p->type == MSGPACK_OBJECT_STR &&
                 set_filter(&f, (kyu_filter_scope_t)sc->via.u64, p->via.str.ptr, p->via.str.size,
                            &e2) == KYU_OK;
        }
        if (ok && !add_sub(t, id, queue, s->via.array.ptr[2].via.boolean, &f)) {
            sub_free(&f);
            ok = false;
        }
    }
    msgpack_unpacked_destroy(&u);
    return ok;
}

/* ---- a FIFO topic's deduplication (sm_fdedup.c) ---- */

#define FT_PREFIX_MAX (2 + KYU_TOPIC_NAME_MAX + 1)

/* "ft" name ' ' (' ' is no character of a name) */
static size_t ft_prefix(const char *name, uint8_t p[FT_PREFIX_MAX])
{
    size_t n = strlen(name);
    p[0] = 'f';
    p[1] = 't';
    memcpy(p + 2, name, n);
    p[2 + n] = ' ';
    return 3 + n;
}

static kyu_fdedup_t *dedup_of(topic_t *t)
{
    if (!t->dedup) {
        uint8_t p[FT_PREFIX_MAX];
        t->dedup = kyu_fdedup_new(p, ft_prefix(t->name, p));
    }
    return t->dedup;
}

/* A publish's key in its topic's table: deduplication is topic-wide (SNS has no scope). */
static void topic_dedup_key(const char *did, char key[KYU_FDEDUP_KEY_MAX])
{
    snprintf(key, KYU_FDEDUP_KEY_MAX, "q%s", did);
}

/* The FIFO topics' deduplication records, into their tables (a record of a topic that is
 * gone cannot be: a topic's deletion drops its records in the same entry). */
static kyu_code_t load_dedup(kyu_sm_t *self, kyu_err_t *err)
{
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    char hi[2] = {'f', 'u'};
    rocksdb_readoptions_set_iterate_upper_bound(ro, hi, 2);
    rocksdb_iterator_t *it =
        rocksdb_create_iterator_cf(self->db, ro, kyu_store_cf(self->store, KYU_CF_META));
    kyu_code_t rc = KYU_OK;
    for (rocksdb_iter_seek(it, "ft", 2); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl = 0, vl = 0;
        const char *k = rocksdb_iter_key(it, &kl);
        const char *v = rocksdb_iter_value(it, &vl);
        const char *sp = kl > 2 ? memchr(k + 2, ' ', kl - 2) : NULL;
        char name[KYU_TOPIC_NAME_MAX + 1], key[KYU_FDEDUP_KEY_MAX], id[KYU_UUID_LEN + 1];
        uint64_t t, seq;
        size_t nl = sp ? (size_t)(sp - k - 2) : 0;
        topic_t *tp = NULL;
        if (sp && nl >= 1 && nl <= KYU_TOPIC_NAME_MAX) {
            memcpy(name, k + 2, nl);
            name[nl] = '\0';
            tp = zhashx_lookup(self->topics, name);
        }
        if (!tp || !tp->fifo || !kyu_fdedup_parse(k, kl, 3 + nl, v, vl, key, &t, &seq, id)) {
            rc = kyu_err_set(err, KYU_ERR_STORAGE, "corrupt FIFO topic deduplication record");
            break;
        }
        kyu_fdedup_insert(dedup_of(tp), key, t, seq, id);
    }
    char *rerr = NULL;
    rocksdb_iter_get_error(it, &rerr);
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    if (rerr) {
        rc =
            kyu_err_set(err, KYU_ERR_STORAGE, "reading FIFO topic deduplication records: %s", rerr);
        free(rerr);
    }
    for (topic_t *t = zhashx_first(self->topics); t; t = zhashx_next(self->topics))
        kyu_fdedup_loaded(t->dedup);
    return rc;
}

void kyu_sm_topics_free(kyu_sm_t *self)
{
    zhashx_destroy(&self->topics);
}

kyu_code_t kyu_sm_topics_load(kyu_sm_t *self, kyu_err_t *err)
{
    kyu_sm_topics_free(self);
    self->topics = zhashx_new();
    KYU_ASSERT(self->topics);
    zhashx_set_destructor(self->topics, topic_destroy);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(self->db, kyu_store_readopts(self->store),
                                                        kyu_store_cf(self->store, KYU_CF_META));
    kyu_code_t rc = KYU_OK;
    for (rocksdb_iter_seek(it, "tp", 2); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t klen = 0, vlen = 0;
        const char *k = rocksdb_iter_key(it, &klen);
        if (klen < 2 || memcmp(k, "tp", 2) != 0)
            break;
        const char *v = rocksdb_iter_value(it, &vlen);
        topic_t *t = calloc(1, sizeof *t);
        KYU_ASSERT(t);
        if (!kyu_topic_name_valid(k + 2, klen - 2) || !parse_topic(v, vlen, t)) {
            void *p = t;
            topic_destroy(&p);
            rc = kyu_err_set(err, KYU_ERR_STORAGE, "corrupt topic record in the store");
            break;
        }
        memcpy(t->name, k + 2, klen - 2);
        t->name[klen - 2] = '\0';
        if (t->fifo != kyu_queue_name_fifo(t->name, strlen(t->name))) {
            void *p = t;
            topic_destroy(&p);
            rc = kyu_err_set(err, KYU_ERR_STORAGE, "corrupt topic record in the store");
            break;
        }
        zhashx_insert(self->topics, t->name, t);
    }
    char *rerr = NULL;
    rocksdb_iter_get_error(it, &rerr);
    if (rerr) {
        rc = kyu_err_set(err, KYU_ERR_STORAGE, "reading topics: %s", rerr);
        free(rerr);
    }
    rocksdb_iter_destroy(it);
    return rc == KYU_OK ? load_dedup(self, err) : rc;
}

void kyu_sm_topics_drop_queue(kyu_sm_t *self, const char *queue)
{
    for (topic_t *t = zhashx_first(self->topics); t; t = zhashx_next(self->topics)) {
        size_t kept = 0;
        for (size_t i = 0; i < t->n; i++)
            if (strcmp(t->subs[i].queue, queue) != 0)
                t->subs[kept++] = t->subs[i];
            else
                sub_free(&t->subs[i]);
        if (kept == t->n)
            continue;
        t->n = kept;
        write_topic(self, t);
    }
}

static topic_t *find_sub(kyu_sm_t *self, const char *id, size_t *at)
{
    for (topic_t *t = zhashx_first(self->topics); t; t = zhashx_next(self->topics))
        for (size_t i = 0; i < t->n; i++)
            if (strcmp(t->subs[i].id, id) == 0) {
                *at = i;
                return t;
            }
    return NULL;
}

static kyu_code_t no_topic(kyu_err_t *err, const char *name)
{
    return kyu_err_set(err, KYU_ERR_NO_SUCH_TOPIC, "topic '%s' does not exist", name);
}

/* ---- the envelope and the copies of a publish ---- */

/* SNS's notification envelope (the fields kyu has: no signature, no URLs), compact JSON built
 * by jansson; NULL when the body or an attribute's value is not valid UTF-8. Deterministic:
 * made of the command alone. */
static char *envelope(const char *topic, const char *id, uint64_t seq, uint64_t now_ms,
                      const void *body, size_t len, const kyu_msg_attrs_t *attrs)
{
    char arn[KYU_TOPIC_NAME_MAX + 16], ts[96];
    snprintf(arn, sizeof arn, "kyu:topic:%s", topic);
    time_t secs = (time_t)(now_ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)(now_ms % 1000));
    /* json_pack refuses (NULL) a string that is not valid UTF-8, and frees what it built. */
    json_t *o = json_pack("{s:s, s:s, s:s, s:s%, s:s}", "Type", "Notification", "MessageId", id,
                          "TopicArn", arn, "Message", (const char *)body, len, "Timestamp", ts);
    if (o && seq) { /* a FIFO topic's: SNS's SequenceNumber, a decimal string (20 digits, as
                     * SNS's: the envelope's size does not depend on the number) */
        char sn[24];
        snprintf(sn, sizeof sn, "%020llu", (unsigned long long)seq);
        if (json_object_set_new(o, "SequenceNumber", json_string(sn)) != 0) {
            json_decref(o);
            o = NULL;
        }
    }
    json_t *m = o && attrs->n ? json_object() : NULL;
    bool ok = o && (!attrs->n || m);
    for (size_t i = 0; ok && i < attrs->n; i++) {
        const kyu_msg_attr_t *a = &attrs->a[i];
        char *b64 = NULL;
        if (a->binary) { /* SNS gives a Binary value base64-encoded */
            size_t b64_len =
                sodium_base64_encoded_len(a->value_len, sodium_base64_VARIANT_ORIGINAL);
            b64 = malloc(b64_len);
            KYU_ASSERT(b64);
            sodium_bin2base64(b64, b64_len, a->value, a->value_len, sodium_base64_VARIANT_ORIGINAL);
        }
        json_t *e = json_pack("{s:s%, s:s%}", "Type", a->type, a->type_len, "Value",
                              b64 ? b64 : (const char *)a->value, b64 ? strlen(b64) : a->value_len);
        free(b64);
        char name[KYU_ATTR_NAME_MAX + 1];
        snprintf(name, sizeof name, "%.*s", (int)a->name_len, a->name);
        ok = e && json_object_set_new(m, name, e) == 0; /* steals e, also on failure */
    }
    if (m) {
        if (ok)
            ok = json_object_set_new(o, "MessageAttributes", m) == 0;
        else
            json_decref(m);
    }
    char *s = ok ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

/* The message id of the copy for subscription sub: a version 4 UUID's shape, derived from the
 * publish's id and the subscription's (BLAKE2b), the same on every replica. */
static void copy_id(const char *pub_id, const char *sub_id, char out[KYU_UUID_LEN + 1])
{
    uint8_t h[16];
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, sizeof h);
    crypto_generichash_update(&st, (const uint8_t *)pub_id, strlen(pub_id) + 1);
    crypto_generichash_update(&st, (const uint8_t *)sub_id, strlen(sub_id));
    crypto_generichash_final(&st, h, sizeof h);
    h[6] = (uint8_t)((h[6] & 0x0f) | 0x40);
    h[8] = (uint8_t)((h[8] & 0x3f) | 0x80);
    snprintf(out, KYU_UUID_LEN + 1,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", h[0], h[1],
             h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9], h[10], h[11], h[12], h[13], h[14],
             h[15]);
}

/* Which of t's subscriptions take the message: match[i] when subscription i's filter policy
 * (if any) matches it. */
static void match_subs(const topic_t *t, const void *body, size_t len, const kyu_msg_attrs_t *attrs,
                       bool match[KYU_TOPIC_SUBS_MAX])
{
    KYU_ASSERT(t->n <= KYU_TOPIC_SUBS_MAX);
    for (size_t i = 0; i < t->n; i++)
        match[i] = kyu_filter_match(t->subs[i].filter, attrs, body, len);
}

/* Checks the message against every queue subscribed to t whose policy matches it (match);
 * *env: the envelope when some such subscription is not raw (the caller frees it); seq: a
 * FIFO topic's publish's SequenceNumber (0: a standard topic's). */
static kyu_code_t check_fanout(kyu_sm_t *self, const topic_t *t, const bool *match, const char *id,
                               uint64_t seq, uint64_t now_ms, const void *body, size_t len,
                               const kyu_msg_attrs_t *attrs, char **env, kyu_err_t *err)
{
    *env = NULL;
    for (size_t i = 0; i < t->n && !*env; i++)
        if (match[i] && !t->subs[i].raw &&
            !(*env = envelope(t->name, id, seq, now_ms, body, len, attrs)))
            return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                               "the message and its attributes' values must be valid UTF-8 text");
    size_t raw_size = len + kyu_msg_attrs_size(attrs), env_size = *env ? strlen(*env) : 0;
    size_t total = 0;
    size_t n_match = 0;
    for (size_t i = 0; i < t->n; i++)
        if (match[i]) {
            total += t->subs[i].raw ? raw_size : env_size;
            n_match++;
        }
    if (total > KYU_PUBLISH_FANOUT_MAX) {
        free(*env);
        *env = NULL;
        return kyu_err_set(
            err, KYU_ERR_TOO_LARGE,
            "the copies for topic '%s's %zu matching subscriptions would total %zu bytes; "
            "a publish writes at most %d: nothing was enqueued",
            t->name, n_match, total, KYU_PUBLISH_FANOUT_MAX);
    }
    for (size_t i = 0; i < t->n; i++) {
        if (!match[i])
            continue;
        const queue_t *q = zhashx_lookup(self->queues, t->subs[i].queue);
        KYU_ASSERT(q); /* a deleted queue's subscriptions go with it */
        size_t size = t->subs[i].raw ? raw_size : env_size;
        if (size > q->max_size) {
            free(*env);
            *env = NULL;
            return kyu_err_set(err, KYU_ERR_TOO_LARGE,
                               "the %s has %zu bytes; subscribed queue '%s' takes at most %u "
                               "(its MaximumMessageSize): nothing was enqueued",
                               t->subs[i].raw ? "message (body and attributes)" : "envelope", size,
                               q->name, q->max_size);
        }
    }
    return KYU_OK;
}

/* ---- CREATE_TOPIC, DELETE_TOPIC ---- */

/* A topic named name with these attributes may be created: a FIFO topic's name ends in .fifo
 * (SNS's), ContentBasedDeduplication is a FIFO topic's, and a topic that exists must have
 * the same attributes (creating it again is then nothing). */
static kyu_code_t check_create(kyu_sm_t *self, const char *name, bool fifo, bool cbd,
                               kyu_err_t *err)
{
    bool name_fifo = kyu_queue_name_fifo(name, strlen(name));
    if (name_fifo != fifo)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           name_fifo ? "topic '%s' ends in .fifo: create it as a FIFO topic "
                                       "(create-topic --fifo), or name it without .fifo"
                                     : "FifoTopic: the name of FIFO topic '%s' must end in .fifo",
                           name);
    if (cbd && !fifo)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "ContentBasedDeduplication is an attribute of FIFO topics; '%s' is a "
                           "standard topic",
                           name);
    const topic_t *t = zhashx_lookup(self->topics, name);
    if (t && t->cbd != cbd)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "topic '%s' already exists with ContentBasedDeduplication %s", name,
                           t->cbd ? "true" : "false");
    if (!t && zhashx_size(self->topics) >= KYU_TOPICS_MAX)
        return kyu_err_set(err, KYU_ERR_LIMIT_EXCEEDED, "a cluster has at most %d topics",
                           KYU_TOPICS_MAX);
    return KYU_OK;
}

kyu_code_t kyu_op_create_topic_validate(kyu_op_ctx_t *ctx, const kyu_request_t *req,
                                        const kyu_bodies_t *bodies, kyu_err_t *err)
{
    (void)bodies;
    return check_create(ctx->sm, req->topic, (req->fields & KYU_F_FIFO) && req->qx.fifo,
                        (req->fields & KYU_F_CBD) && req->qx.cbd, err);
}

void kyu_op_create_topic_build(kyu_op_ctx_t *ctx, const kyu_request_t *req,
                               const kyu_bodies_t *bodies, kyu_command_t *cmd)
{
    (void)ctx, (void)bodies;
    snprintf(cmd->topic, sizeof cmd->topic, "%s", req->topic);
    cmd->topic_fifo = (req->fields & KYU_F_FIFO) && req->qx.fifo;
    cmd->topic_cbd = (req->fields & KYU_F_CBD) && req->qx.cbd;
}

void kyu_op_topic_build(kyu_op_ctx_t *ctx, const kyu_request_t *req, const kyu_bodies_t *bodies,
                        kyu_command_t *cmd)
{
    (void)ctx, (void)bodies;
    snprintf(cmd->topic, sizeof cmd->topic, "%s", req->topic);
}

void kyu_op_topic_encode(const kyu_command_t *cmd, msgpack_packer *pk)
{
    msgpack_pack_array(pk, 1);
    kyu_mp_pack_str(pk, cmd->topic);
}

static bool get_topic(const msgpack_object *o, char out[KYU_TOPIC_NAME_MAX + 1])
{
    return kyu_mp_copy_str(o, out, KYU_TOPIC_NAME_MAX) &&
           kyu_topic_name_valid(out, o->via.str.size) && strlen(out) == o->via.str.size;
}

bool kyu_op_topic_decode(const msgpack_object *items, kyu_command_t *cmd)
{
    return items->type == MSGPACK_OBJECT_ARRAY && items->via.array.size == 1 &&
           get_topic(&items->via.array.ptr[0], cmd->topic);
}

/* [topic] or, for a FIFO topic, [topic, flags] */
void kyu_op_create_topic_encode(const kyu_command_t *cmd, msgpack_packer *pk)
{
    msgpack_pack_array(pk, cmd->topic_fifo ? 2 : 1);
    kyu_mp_pack_str(pk, cmd->topic);
    if (cmd->topic_fifo)
        msgpack_pack_uint32(pk, TOPIC_FLAG_FIFO | (cmd->topic_cbd ? TOPIC_FLAG_CBD : 0));
}

bool kyu_op_create_topic_decode(const msgpack_object *items, kyu_command_t *cmd)
{
    if (items->type != MSGPACK_OBJECT_ARRAY || items->via.array.size < 1 ||
        items->via.array.size > 2 || !get_topic(&items->via.array.ptr[0], cmd->topic))
        return false;
    if (items->via.array.size == 1)
        return true;
    const msgpack_object *fl = &items->via.array.ptr[1];
    if (fl->type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
        fl->via.u64 != (fl->via.u64 & (TOPIC_FLAG_FIFO | TOPIC_FLAG_CBD)) ||
        !(fl->via.u64 & TOPIC_FLAG_FIFO))
        return false;
    cmd->topic_fifo = true;
    cmd->topic_cbd = (fl->via.u64 & TOPIC_FLAG_CBD) != 0;
    return true;
}

kyu_code_t kyu_op_create_topic_apply(kyu_sm_t *self, const kyu_command_t *c, kyu_apply_t *a)
{
    if (check_create(self, c->topic, c->topic_fifo, c->topic_cbd, kyu_result_err(a->res)) != KYU_OK)
        return KYU_OK;
    if (zhashx_lookup(self->topics, c->topic))
        return KYU_OK; /* idempotent, as SNS's CreateTopic */
    topic_t *t = calloc(1, sizeof *t);
    KYU_ASSERT(t);
    snprintf(t->name, sizeof t->name, "%s", c->topic);
    t->created_ms = c->now_ms;
    t->fifo = c->topic_fifo;
    t->cbd = c->topic_cbd;
    zhashx_insert(self->topics, t->name, t);
    write_topic(self, t);
    return KYU_OK;
}

kyu_code_t kyu_op_delete_topic_apply(kyu_sm_t *self, const kyu_command_t *c, kyu_apply_t *a)
{
    (void)a;
    topic_t *t = zhashx_lookup(self->topics, c->topic);
    if (!t)
        return KYU_OK; /* as SNS's DeleteTopic: deleting a topic that is not there is no error */
    kyu_fdedup_drop_all(self, t->dedup); /* a topic made again later remembers nothing */
    zhashx_delete(self->topics, c->topic);
    uint8_t k[KEY_MAX];
    kyu_sm_del(self, KYU_CF_META, k, topic_key(k, c->topic));
    return KYU_OK;
}

/* ---- SUBSCRIBE, UNSUBSCRIBE ---- */

static bool same_filter(const tsub_t *a, const tsub_t *b)
{
    if (!a->policy || !b->policy)
        return !a->policy && !b->policy;
    return a->scope == b->scope && strcmp(a->policy, b->policy) == 0;
}

/* want: the new subscription's raw and filter policy (compiled). */
static kyu_code_t check_subscribe(kyu_sm_t *self, const char *topic, const char *queue,
                                  const tsub_t *want, const tsub_t **same, kyu_err_t *err)
{
    *same = NULL;
    topic_t *t = zhashx_lookup(self->topics, topic);
    if (!t)
        return no_topic(err, topic);
    const queue_t *q = zhashx_lookup(self->queues, queue);
    if (!q)
        return kyu_err_set(err, KYU_ERR_NO_SUCH_QUEUE, "queue '%s' does not exist", queue);
    if (q->is_fifo && !t->fifo) /* SNS: a standard topic delivers to standard queues only */
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "queue '%s' is a FIFO queue: topic '%s' is a standard topic, which "
                           "delivers to standard queues only",
                           queue, topic);
    if (!q->is_fifo && t->fifo) /* and a FIFO topic to FIFO queues only */
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "queue '%s' is a standard queue: topic '%s' is a FIFO topic, which "
                           "delivers to FIFO queues only (their group order and deduplication)",
                           queue, topic);
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->subs[i].queue, queue) == 0) {
            const tsub_t *s = &t->subs[i];
            if (s->raw != want->raw || !same_filter(s, want))
                return kyu_err_set(
                    err, KYU_ERR_INVALID_ARGUMENT,
                    "queue '%s' is subscribed to topic '%s' already (%s, %s, subscription %s): "
                    "unsubscribe it first",
                    queue, topic, s->raw ? "raw" : "not raw",
                    s->policy ? (s->scope == KYU_FILTER_SCOPE_BODY ? "a filter policy on the body"
                                                                   : "a filter policy")
                              : "no filter policy",
                    s->id);
            *same = s;
            return KYU_OK;
        }
    if (t->n >= KYU_TOPIC_SUBS_MAX)
        return kyu_err_set(err, KYU_ERR_LIMIT_EXCEEDED, "topic '%s' has %d subscriptions, its most",
                           topic, KYU_TOPIC_SUBS_MAX);
    return KYU_OK;
}

kyu_code_t kyu_op_subscribe_validate(kyu_op_ctx_t *ctx, const kyu_request_t *req,
                                     const kyu_bodies_t *bodies, kyu_err_t *err)
{
    const tsub_t *same;
    tsub_t want = {.raw = (req->fields & KYU_F_RAW) != 0};
    const kyu_body_t *f = (req->fields & KYU_F_FILTER) && bodies->n ? &bodies->b[0] : NULL;
    kyu_code_t rc = set_filter(&want, (kyu_filter_scope_t)req->filter_scope, f ? f->data : NULL,
                               f ? f->len : 0, err);
    if (rc == KYU_OK)
        rc = check_subscribe(ctx->sm, req->topic, req->queue, &want, &same, err);
    sub_free(&want);
    return rc;
}

void kyu_op_subscribe_build(kyu_op_ctx_t *ctx, const kyu_request_t *req, const kyu_bodies_t *bodies,
                            kyu_command_t *cmd)
{
    snprintf(cmd->topic, sizeof cmd->topic, "%s", req->topic);
    cmd->raw = (req->fields & KYU_F_RAW) != 0;
    if (req->fields & KYU_F_FILTER) {
        const kyu_body_t *f = &bodies->b[0];
        cmd->n = 1;
        cmd->bodies[0] = f->data;
        cmd->body_lens[0] = f->len;
        cmd->filter_scope = req->filter_scope;
    }
    kyu_op_make_uuid(ctx, cmd->sub_id);
}

/* [topic, sub id, raw] or, with a filter policy, [topic, sub id, raw, scope, policy (bin)] */
void kyu_op_subscribe_encode(const kyu_command_t *cmd, msgpack_packer *pk)
{
    msgpack_pack_array(pk, cmd->n ? 5 : 3);
    kyu_mp_pack_str(pk, cmd->topic);
    kyu_mp_pack_str(pk, cmd->sub_id);
    kyu_mp_pack_bool(pk, cmd->raw);
    if (cmd->n) {
        msgpack_pack_uint32(pk, cmd->filter_scope);
        msgpack_pack_bin(pk, cmd->body_lens[0]);
        msgpack_pack_bin_body(pk, cmd->bodies[0], cmd->body_lens[0]);
    }
}

static bool get_sub_id(const msgpack_object *o, char out[KYU_SUB_ID_LEN + 1])
{
    return kyu_mp_copy_str(o, out, KYU_SUB_ID_LEN) && strlen(out) == KYU_SUB_ID_LEN &&
           o->via.str.size == KYU_SUB_ID_LEN;
}

bool kyu_op_subscribe_decode(const msgpack_object *items, kyu_command_t *cmd)
{
    if (items->type != MSGPACK_OBJECT_ARRAY ||
        (items->via.array.size != 3 && items->via.array.size != 5))
        return false;
    const msgpack_object *f = items->via.array.ptr;
    if (!get_topic(&f[0], cmd->topic) || !get_sub_id(&f[1], cmd->sub_id) ||
        f[2].type != MSGPACK_OBJECT_BOOLEAN)
        return false;
    cmd->raw = f[2].via.boolean;
    if (items->via.array.size == 3)
        return true;
    if (f[3].type != MSGPACK_OBJECT_POSITIVE_INTEGER || f[3].via.u64 > KYU_FILTER_SCOPE_BODY ||
        f[4].type != MSGPACK_OBJECT_BIN)
        return false;
    cmd->filter_scope = (uint8_t)f[3].via.u64;
    cmd->n = 1;
    cmd->bodies[0] = f[4].via.bin.ptr;
    cmd->body_lens[0] = f[4].via.bin.size;
    return true;
}

/* Answered with the subscription's id: the new one, or, for a queue subscribed the same way
 * already, the existing one (SNS's Subscribe is idempotent so). A filter policy is compiled
 * here again (every replica keeps its own); the leader refused a bad one already. */
kyu_code_t kyu_op_subscribe_apply(kyu_sm_t *self, const kyu_command_t *c, kyu_apply_t *a)
{
    const tsub_t *same;
    kyu_result_t *res = a->res;
    tsub_t want = {.raw = c->raw};
    if (set_filter(&want, (kyu_filter_scope_t)c->filter_scope, c->n ? c->bodies[0] : NULL,
                   c->n ? c->body_lens[0] : 0, kyu_result_err(res)) != KYU_OK)
        return KYU_OK;
    if (check_subscribe(self, c->topic, c->queue, &want, &same, kyu_result_err(res)) != KYU_OK) {
        sub_free(&want);
        return KYU_OK;
    }
    const char *id = same ? same->id : c->sub_id;
    if (!same) {
        topic_t *t = zhashx_lookup(self->topics, c->topic);
        bool added = add_sub(t, c->sub_id, c->queue, c->raw, &want);
        KYU_ASSERT(added);
        write_topic(self, t);
    } else {
        sub_free(&want);
    }
    snprintf(res->ids[0], sizeof res->ids[0], "%s", id);
    res->n_ids = 1;
    if (a->dedup) {
        memcpy(a->dedup->ids[0], res->ids[0], sizeof res->ids[0]);
        a->dedup->n = 1;
    }
    return KYU_OK;
}

kyu_code_t kyu_op_unsubscribe_validate(kyu_op_ctx_t *ctx, const kyu_request_t *req,
                                       const kyu_bodies_t *bodies, kyu_err_t *err)
{
    (void)bodies;
    size_t at;
    if (!find_sub(ctx->sm, req->sub_id, &at))
        return kyu_err_set(err, KYU_ERR_NO_SUCH_SUBSCRIPTION, "subscription %s does not exist",
                           req->sub_id);
    return KYU_OK;
}

void kyu_op_unsubscribe_build(kyu_op_ctx_t *ctx, const kyu_request_t *req,
                              const kyu_bodies_t *bodies, kyu_command_t *cmd)
{
    (void)ctx, (void)bodies;
    snprintf(cmd->sub_id, sizeof cmd->sub_id, "%s", req->sub_id);
}

void kyu_op_unsubscribe_encode(const kyu_command_t *cmd, msgpack_packer *pk)
{
    msgpack_pack_array(pk, 1);
    kyu_mp_pack_str(pk, cmd->sub_id);
}

bool kyu_op_unsubscribe_decode(const msgpack_object *items, kyu_command_t *cmd)
{
    return items->type == MSGPACK_OBJECT_ARRAY && items->via.array.size == 1 &&
           get_sub_id(&items->via.array.ptr[0], cmd->sub_id);
}

kyu_code_t kyu_op_unsubscribe_apply(kyu_sm_t *self, const kyu_command_t *c, kyu_apply_t *a)
{
    size_t at;
    topic_t *t = find_sub(self, c->sub_id, &at);
    if (!t) {
        kyu_err_set(kyu_result_err(a->res), KYU_ERR_NO_SUCH_SUBSCRIPTION,
                    "subscription %s does not exist", c->sub_id);
        return KYU_OK;
    }
    sub_free(&t->subs[at]);
    memmove(&t->subs[at], &t->subs[at + 1], (t->n - at - 1) * sizeof t->subs[0]);
    t->n--;
    write_topic(self, t);
    return KYU_OK;
}

/* ---- PUBLISH ---- */

/* One message of a publish (the request's only one, or a batch's entry i) against the rules
 * and against t's matching queues, as apply will check it (with an id and a time of the
 * same length as the command's); the error names the entry in a batch. */
static kyu_code_t check_publish(kyu_op_ctx_t *ctx, const topic_t *t, const void *body, size_t len,
                                const kyu_msg_attrs_t *attrs, const char *group, const char *did,
                                kyu_err_t *err)
{
    if (t->fifo && !group[0])
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "the request must contain the parameter MessageGroupId (topic '%s' is "
                           "a FIFO topic)",
                           t->name);
    if (t->fifo && !did[0] && !t->cbd)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "topic '%s' should either have ContentBasedDeduplication enabled or "
                           "MessageDeduplicationId provided explicitly",
                           t->name);
    /* A standard topic takes a group (SNS's: forwarded to its standard queues, whose fair
     * groups spread it) but no deduplication id */
    if (!t->fifo && did[0])
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "MessageDeduplicationId is for FIFO topics; '%s' is a standard topic "
                           "(it takes a MessageGroupId alone)",
                           t->name);
    if (len == 0)
        return kyu_err_set(err, KYU_ERR_EMPTY_BODY, "the message has an empty body");
    if (!kyu_utf8_valid(body, len))
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "a topic's message is UTF-8 text; this body is not valid UTF-8");
    if (kyu_msg_attrs_check(attrs, err) != KYU_OK)
        return err->code;
    size_t size = len + kyu_msg_attrs_size(attrs);
    if (size > ctx->max_body)
        return kyu_err_set(err, KYU_ERR_TOO_LARGE,
                           "the message has %zu bytes (body and attributes); the maximum is %zu",
                           size, ctx->max_body);
    uint64_t now = ctx->replica ? kyu_replica_now(ctx->replica) : kyu_sm_last_now(ctx->sm);
    char *env = NULL;
    bool match[KYU_TOPIC_SUBS_MAX];
    match_subs(t, body, len, attrs, match);
    kyu_code_t rc = check_fanout(ctx->sm, t, match, "00000000-0000-4000-8000-000000000000",
                                 t->fifo ? 1 : 0, now, body, len, attrs, &env, err);
    free(env);
    return rc;
}

static const kyu_msg_attrs_t *request_attrs(const kyu_request_t *req, size_t i)
{
    static const kyu_msg_attrs_t none = {0};
    return req->fields & KYU_F_MSG_ATTRS ? &req->attrs[i] : &none;
}

static const char *request_group(const kyu_request_t *req, size_t i)
{
    return req->fields & KYU_F_GROUPS ? req->group_ids[i] : "";
}

static const char *request_dedup(const kyu_request_t *req, size_t i)
{
    return req->fields & KYU_F_GROUPS ? req->dedup_ids[i] : "";
}

/* A batch (eid): the entries together are held to KYU_PUBLISH_BATCH_BYTES_MAX (SNS's
 * BatchRequestTooLong: the whole batch is refused); each entry is checked alone in build, so
 * a bad one fails alone. */
kyu_code_t kyu_op_publish_validate(kyu_op_ctx_t *ctx, const kyu_request_t *req,
                                   const kyu_bodies_t *bodies, kyu_err_t *err)
{
    const topic_t *t = zhashx_lookup(ctx->sm->topics, req->topic);
    if (!t)
        return no_topic(err, req->topic);
    if (req->fields & KYU_F_ENTRY_IDS) {
        size_t total = 0, i = 0;
        for (const kyu_body_t *f = bodies->b; f < bodies->b + bodies->n; f++, i++)
            total += f->len + kyu_msg_attrs_size(request_attrs(req, i));
        if (total > KYU_PUBLISH_BATCH_BYTES_MAX)
            return kyu_err_set(err, KYU_ERR_TOO_LARGE,
                               "BatchRequestTooLong: the batch's %zu entries have %zu bytes "
                               "together (bodies and attributes); a batch takes at most %d",
                               i, total, KYU_PUBLISH_BATCH_BYTES_MAX);
        return KYU_OK;
    }
    const kyu_body_t *f = &bodies->b[0];
    return check_publish(ctx, t, f->data, f->len, request_attrs(req, 0), request_group(req, 0),
                         request_dedup(req, 0), err);
}

void kyu_op_publish_build(kyu_op_ctx_t *ctx, const kyu_request_t *req, const kyu_bodies_t *bodies,
                          kyu_command_t *cmd)
{
    snprintf(cmd->topic, sizeof cmd->topic, "%s", req->topic);
    cmd->publish_batch = (req->fields & KYU_F_ENTRY_IDS) != 0;
    const topic_t *t = zhashx_lookup(ctx->sm->topics, req->topic);
    for (const kyu_body_t *f = bodies->b; f < bodies->b + bodies->n; f++) {
        size_t i = cmd->n++;
        kyu_err_t e = {0};
        if (cmd->publish_batch &&
            check_publish(ctx, t, f->data, f->len, request_attrs(req, i), request_group(req, i),
                          request_dedup(req, i), &e) != KYU_OK) {
            cmd->entry_code[i] = (uint8_t)e.code;
            snprintf(cmd->entry_error[i], sizeof cmd->entry_error[i], "%s", e.msg);
            continue;
        }
        cmd->bodies[i] = f->data;
        cmd->body_lens[i] = f->len;
        if (req->fields & KYU_F_MSG_ATTRS) {
            cmd->attrs[i] = req->attrs[i];
            kyu_msg_attrs_sort(&cmd->attrs[i]);
        }
        kyu_op_make_uuid(ctx, cmd->ids[i]);
        if (!t->fifo) { /* a standard topic's: its group if it has one, never a dedup id */
            snprintf(cmd->group_ids[i], sizeof cmd->group_ids[i], "%s", request_group(req, i));
            continue;
        }
        /* A FIFO topic's: the group and deduplication ids; a content-based one is the SHA-256
         * of the body, computed here once (as a FIFO queue's send) */
        memcpy(cmd->group_ids[i], req->group_ids[i], sizeof cmd->group_ids[i]);
        memcpy(cmd->dedup_ids[i], req->dedup_ids[i], sizeof cmd->dedup_ids[i]);
        if (!cmd->dedup_ids[i][0]) {
            char h[KYU_SHA256_HEX_LEN + 1];
            kyu_sha256_hex(cmd->bodies[i], cmd->body_lens[i], h);
            memcpy(cmd->dedup_ids[i], h, sizeof h);
        }
    }
    cmd->topic_fifo = t->fifo;
}

/* id, body, attrs or nil, and a FIFO topic's group id and deduplication id, or a standard
 * topic's group id when it has one */
static void encode_entry(const kyu_command_t *cmd, size_t i, msgpack_packer *pk)
{
    kyu_mp_pack_str(pk, cmd->ids[i]);
    msgpack_pack_bin(pk, cmd->body_lens[i]);
    msgpack_pack_bin_body(pk, cmd->bodies[i], cmd->body_lens[i]);
    if (cmd->attrs[i].n)
        kyu_msg_attrs_pack(pk, &cmd->attrs[i]);
    else
        msgpack_pack_nil(pk);
    if (cmd->topic_fifo || cmd->group_ids[i][0])
        kyu_mp_pack_str(pk, cmd->group_ids[i]);
    if (cmd->topic_fifo)
        kyu_mp_pack_str(pk, cmd->dedup_ids[i]);
}

/* The number of elements of message i's encoding (encode_entry): 5 a FIFO topic's, 4 a
 * standard topic's with a group, 3 one without */
static size_t entry_len(const kyu_command_t *cmd, size_t i)
{
    return cmd->topic_fifo ? 5 : cmd->group_ids[i][0] ? 4 : 3;
}

/* [topic, id, body, attrs or nil (, group (, dedup))], or a batch: [topic, entry, ...], each
 * entry [id, body, attrs or nil (, group (, dedup))] or [code, error] (an array where a single
 * publish has its id: no nesting deeper than SEND's, command.c's bound) */
void kyu_op_publish_encode(const kyu_command_t *cmd, msgpack_packer *pk)
{
    if (!cmd->publish_batch) {
        msgpack_pack_array(pk, 1 + entry_len(cmd, 0));
        kyu_mp_pack_str(pk, cmd->topic);
        encode_entry(cmd, 0, pk);
        return;
    }
    msgpack_pack_array(pk, 1 + cmd->n);
    kyu_mp_pack_str(pk, cmd->topic);
    for (size_t i = 0; i < cmd->n; i++) {
        if (cmd->entry_code[i]) {
            msgpack_pack_array(pk, 2);
            msgpack_pack_uint32(pk, cmd->entry_code[i]);
            kyu_mp_pack_str(pk, cmd->entry_error[i]);
            continue;
        }
        msgpack_pack_array(pk, entry_len(cmd, i));
        encode_entry(cmd, i, pk);
    }
}

/* A FIFO id (group or deduplication): a valid one, 1..max characters. */
static bool get_fifo_id(const msgpack_object *o, char *out, size_t max)
{
    return o->type == MSGPACK_OBJECT_STR &&
           kyu_fifo_id_valid(o->via.str.ptr, o->via.str.size, max) && kyu_mp_copy_str(o, out, max);
}

/* f[0..n): id, body, attributes or nil (n 3), and a standard topic's group id (n 4, since
 * standard topics take groups; a log's older entries have 3 or 5) or a FIFO topic's group and
 * deduplication ids (n 5), into entry i */
static bool decode_entry(const msgpack_object *f, size_t n, size_t i, kyu_command_t *cmd)
{
    if (n < 3 || n > 5)
        return false;
    if (!kyu_mp_copy_str(&f[0], cmd->ids[i], KYU_UUID_LEN) || f[0].via.str.size != KYU_UUID_LEN ||
        f[1].type != MSGPACK_OBJECT_BIN || f[1].via.bin.size == 0)
        return false;
    cmd->bodies[i] = f[1].via.bin.ptr;
    cmd->body_lens[i] = f[1].via.bin.size;
    if (n >= 4 && !get_fifo_id(&f[3], cmd->group_ids[i], KYU_GROUP_ID_MAX))
        return false;
    if (n == 5 && !get_fifo_id(&f[4], cmd->dedup_ids[i], KYU_DEDUP_ID_MAX))
        return false;
    if (f[2].type == MSGPACK_OBJECT_NIL)
        return true;
    return kyu_msg_attrs_unpack(&f[2], &cmd->attrs[i]) && cmd->attrs[i].n > 0;
}

bool kyu_op_publish_decode(const msgpack_object *items, kyu_command_t *cmd)
{
    if (items->type != MSGPACK_OBJECT_ARRAY || items->via.array.size < 2 ||
        items->via.array.size > 1 + KYU_BATCH_MAX)
        return false;
    const msgpack_object *f = items->via.array.ptr;
    if (!get_topic(&f[0], cmd->topic))
        return false;
    if (f[1].type != MSGPACK_OBJECT_ARRAY) { /* a single publish */
        cmd->n = 1;
        cmd->topic_fifo = items->via.array.size == 6;
        return decode_entry(&f[1], items->via.array.size - 1, 0, cmd);
    }
    cmd->publish_batch = true;
    cmd->n = items->via.array.size - 1;
    uint32_t kind = 0;
    for (size_t i = 0; i < cmd->n; i++) {
        const msgpack_object *e = &f[1 + i];
        if (e->type != MSGPACK_OBJECT_ARRAY)
            return false;
        const msgpack_object *x = e->via.array.ptr;
        if (e->via.array.size == 2) { /* failed at the leader: [code, error] */
            if (x[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER || x[0].via.u64 == 0 ||
                x[0].via.u64 >= KYU_ERR_CODE_COUNT ||
                !kyu_mp_copy_str(&x[1], cmd->entry_error[i], KYU_ERR_MSG_MAX - 1))
                return false;
            cmd->entry_code[i] = (uint8_t)x[0].via.u64;
        } else if ((kind && (kind == 5) != (e->via.array.size == 5)) ||
                   !decode_entry(x, e->via.array.size, i, cmd)) {
            return false; /* every message of a batch is a FIFO topic's (5), or none (3, 4) */
        } else {
            kind = e->via.array.size;
            cmd->topic_fifo = kind == 5;
        }
    }
    return true;
}

/* Publishes message i of c to t: into every queue whose policy matches it, or, when one check
 * fails, into none (err says why). id and *seq: the publish's MessageId and (a FIFO topic's)
 * SequenceNumber, a duplicate's the first publish's. */
static kyu_code_t publish_one(kyu_sm_t *self, topic_t *t, const kyu_command_t *c, size_t i,
                              char id_out[KYU_UUID_LEN + 1], uint64_t *seq_out, kyu_err_t *err)
{
    char *env = NULL;
    const kyu_msg_attrs_t *attrs = &c->attrs[i];
    char dkey[KYU_FDEDUP_KEY_MAX];
    uint64_t pub_seq = 0;
    *seq_out = 0;
    if (t->fifo) {
        if (!c->group_ids[i][0] || !c->dedup_ids[i][0]) /* a command of a standard topic's */
            return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                               "topic '%s' is a FIFO topic: a message needs a MessageGroupId and "
                               "a MessageDeduplicationId",
                               t->name);
        topic_dedup_key(c->dedup_ids[i], dkey);
        if (kyu_fdedup_find(t->dedup, dkey, c->now_ms, id_out, seq_out))
            return KYU_OK;        /* a duplicate within the window: answered as the first */
        pub_seq = self->next_seq; /* taken below, once every check passed */
    }
    bool match[KYU_TOPIC_SUBS_MAX];
    match_subs(t, c->bodies[i], c->body_lens[i], attrs, match);
    if (check_fanout(self, t, match, c->ids[i], pub_seq, c->now_ms, c->bodies[i], c->body_lens[i],
                     attrs, &env, err) != KYU_OK)
        return err->code;
    memcpy(id_out, c->ids[i], KYU_UUID_LEN + 1);
    if (t->fifo) {
        KYU_ASSERT(self->next_seq == pub_seq);
        self->next_seq++;
        *seq_out = pub_seq;
        kyu_fdedup_put(self, dedup_of(t), dkey, c->now_ms, c->ids[i], pub_seq);
    }
    uint8_t md5_raw[KYU_MD5_LEN], md5_attrs[KYU_MD5_LEN] = {0}, md5_env[KYU_MD5_LEN];
    kyu_md5_body(c->bodies[i], c->body_lens[i], md5_raw);
    if (attrs->n)
        kyu_md5_attrs(attrs, md5_attrs);
    if (env)
        kyu_md5_body(env, strlen(env), md5_env);
    if (t->n > 0)
        kyu_sm_mark_seq(self, self->next_seq, c->now_ms); /* retention (sm_expiry.c) */
    const kyu_msg_attrs_t none = {0};
    size_t skip = SIZE_MAX;
#if KYU_REPLICA_PLANTED_BUG == 12
    /* Planted bug 12 (kyu-sim-kyu-planted12): a publish that several subscriptions take skips
     * the last of them. */
    size_t n_match = 0;
    for (size_t j = 0; j < t->n; j++)
        if (match[j]) {
            n_match++;
            skip = j;
        }
    if (n_match < 2)
        skip = SIZE_MAX;
#endif
    for (size_t j = 0; j < t->n; j++) {
        const tsub_t *s = &t->subs[j];
        if (!match[j] || j == skip)
            continue;
        queue_t *q = zhashx_lookup(self->queues, s->queue);
        char id[KYU_UUID_LEN + 1];
        copy_id(c->ids[i], s->id, id);
        /* A FIFO topic's copy, into a FIFO queue, with its group and deduplication ids: the
         * queue's own deduplication applies to it as to a send (op_message.c). A standard
         * topic's, into a standard queue (it takes no FIFO subscription), with its group if it
         * has one (the queue's fair groups spread it, sm_fair.c) and no deduplication id. */
        KYU_ASSERT(t->fifo || !q->is_fifo);
        const char *group = t->fifo || c->group_ids[i][0] ? c->group_ids[i] : NULL;
        const char *did = t->fifo ? c->dedup_ids[i] : NULL;
        char first[KYU_UUID_LEN + 1];
        uint64_t first_seq;
        kyu_sm_fifo_dedup_expire(self, q, c->now_ms);
        if (kyu_sm_fifo_dedup_find(q, group, did, c->now_ms, first, &first_seq))
            continue;
        uint64_t seq = self->next_seq++;
        if (s->raw)
            kyu_sm_store_message(self, q, seq, c->now_ms, id, c->bodies[i], c->body_lens[i], attrs,
                                 md5_raw, md5_attrs, q->delay * 1000ull, group, did);
        else
            kyu_sm_store_message(self, q, seq, c->now_ms, id, env, strlen(env), &none, md5_env,
                                 md5_attrs, q->delay * 1000ull, group, did);
        kyu_sm_fifo_dedup_put(self, q, group, did, c->now_ms, id, seq);
        q->n_messages++;
        kyu_sm_touch(self, q);
    }
    free(env);
    return KYU_OK;
}

/* A single publish fails as a whole (the result's error); a batch's entries each on their
 * own (results[i], entry_errors[i]; the ids of the failed ones ""). */
kyu_code_t kyu_op_publish_apply(kyu_sm_t *self, const kyu_command_t *c, kyu_apply_t *a)
{
    kyu_result_t *res = a->res;
    topic_t *t = zhashx_lookup(self->topics, c->topic);
    if (!t) {
        no_topic(kyu_result_err(res), c->topic);
        return KYU_OK;
    }
    kyu_fdedup_expire(self, t->dedup, c->now_ms); /* a FIFO topic's records past the window */
    if (!c->publish_batch) {
        if (publish_one(self, t, c, 0, res->ids[0], &res->sequences[0], kyu_result_err(res)) !=
            KYU_OK)
            return KYU_OK;
        res->n_ids = 1;
    } else {
        for (size_t i = 0; i < c->n; i++) {
            kyu_err_t e = {0};
            res->entry_errors[i][0] = '\0';
            res->ids[i][0] = '\0';
            res->sequences[i] = 0;
            if (c->entry_code[i]) {
                e.code = c->entry_code[i];
                snprintf(e.msg, sizeof e.msg, "%s", c->entry_error[i]);
            } else if (publish_one(self, t, c, i, res->ids[i], &res->sequences[i], &e) != KYU_OK) {
                res->ids[i][0] = '\0';
                res->sequences[i] = 0;
            }
            res->results[i] = e.code;
            if (e.code != KYU_OK) {
                res->n_results = c->n;
                snprintf(res->entry_errors[i], sizeof res->entry_errors[i], "%s", e.msg);
            }
        }
        res->n_ids = c->n;
    }
    if (a->dedup) {
        memcpy(a->dedup->ids, res->ids, sizeof res->ids);
        for (size_t i = 0; i < res->n_ids; i++)
            a->dedup->codes[i] = (uint8_t)(res->n_results ? res->results[i] : 0);
        a->dedup->n = res->n_ids;
    }
    return KYU_OK;
}

/* The leader's guess for serving in the publish's entry (frontend_wait.c): publish_one's
 * decisions, taken on the state now, for the subscriptions whose queues have waiters. */
void kyu_sm_publish_visible_at_once(kyu_sm_t *self, const kyu_command_t *c,
                                    bool (*wanted)(void *arg, const char *queue),
                                    void (*found)(void *arg, const char *queue, uint64_t n),
                                    void *arg)
{
    const topic_t *t = zhashx_lookup(self->topics, c->topic);
    if (!t)
        return;
    KYU_ASSERT(t->n <= KYU_TOPIC_SUBS_MAX);
    const queue_t *qs[KYU_TOPIC_SUBS_MAX];
    uint64_t n[KYU_TOPIC_SUBS_MAX];
    size_t asked = 0;
    for (size_t j = 0; j < t->n; j++) {
        /* A copy into a queue with DelaySeconds is not visible at once */
        const queue_t *q = zhashx_lookup(self->queues, t->subs[j].queue);
        qs[j] = q && q->delay == 0 && wanted(arg, t->subs[j].queue) ? q : NULL;
        n[j] = 0;
        asked += qs[j] != NULL;
    }
    for (size_t i = 0; i < c->n && asked > 0; i++) {
        char first[KYU_UUID_LEN + 1];
        uint64_t seq;
        if (c->entry_code[i]) /* refused by the leader */
            continue;
        if (t->fifo) { /* a duplicate within the topic's window makes no copy */
            char dkey[KYU_FDEDUP_KEY_MAX];
            topic_dedup_key(c->dedup_ids[i], dkey);
            if (kyu_fdedup_find(t->dedup, dkey, c->now_ms, first, &seq))
                continue;
        }
        const char *group = t->fifo || c->group_ids[i][0] ? c->group_ids[i] : NULL;
        const char *did = t->fifo ? c->dedup_ids[i] : NULL;
        for (size_t j = 0; j < t->n; j++) {
            const queue_t *q = qs[j];
            if (!q ||
                !kyu_filter_match(t->subs[j].filter, &c->attrs[i], c->bodies[i], c->body_lens[i]))
                continue;
            /* A FIFO queue: not its own duplicate, and not behind a message of its group */
            if (q->is_fifo && (!kyu_sm_fifo_group_empty(q, group) ||
                               kyu_sm_fifo_dedup_find(q, group, did, c->now_ms, first, &seq)))
                continue;
            n[j]++;
        }
    }
    for (size_t j = 0; j < t->n; j++)
        if (n[j] > 0)
            found(arg, t->subs[j].queue, n[j]);
}

/* A retried PUBLISH is answered with its first attempt's MessageIds (a batch's failed entries
 * with the first attempt's codes); nothing is enqueued again. */
kyu_code_t kyu_op_publish_replay(kyu_sm_t *self, const kyu_command_t *c, const kyu_dedup_t *d,
                                 kyu_apply_t *a)
{
    kyu_result_t *res = a->res;
    memcpy(res->ids, d->ids, sizeof d->ids);
    res->n_ids = d->n;
    const topic_t *t = zhashx_lookup(self->topics, c->topic);
    for (size_t i = 0; i < d->n; i++) {
        /* A FIFO topic's SequenceNumber, from its deduplication record (0 once gone) */
        char id[KYU_UUID_LEN + 1], dkey[KYU_FDEDUP_KEY_MAX];
        res->sequences[i] = 0;
        if (t && i < c->n && c->dedup_ids[i][0]) {
            topic_dedup_key(c->dedup_ids[i], dkey);
            if (!kyu_fdedup_find(t->dedup, dkey, c->now_ms, id, &res->sequences[i]) ||
                strcmp(id, d->ids[i]) != 0)
                res->sequences[i] = 0;
        }
        res->entry_errors[i][0] = '\0';
        if (!d->codes[i])
            continue;
        res->results[i] = d->codes[i];
        res->n_results = d->n;
        if (i < c->n && c->entry_code[i] == d->codes[i])
            memcpy(res->entry_errors[i], c->entry_error[i], sizeof res->entry_errors[i]);
        else
            snprintf(res->entry_errors[i], sizeof res->entry_errors[i],
                     "failed on the first attempt of this request: %s", kyu_code_name(d->codes[i]));
    }
    return KYU_OK;
}

/* The MessageIds (no digests: a publish's copies have their own); a batch with a failed entry
 * also a result and a text per entry. */
void kyu_op_publish_reply(const kyu_result_t *res, kyu_reply_t *rep, size_t *n_bodies)
{
    *n_bodies = 0;
    rep->n_ids = res->n_ids;
    for (size_t i = 0; i < res->n_ids; i++) {
        snprintf(rep->ids[i], sizeof rep->ids[i], "%s", res->ids[i]);
        rep->md5_body[i][0] = rep->md5_attrs[i][0] = '\0';
        rep->sequences[i] = res->sequences[i]; /* a FIFO topic's SequenceNumber, else 0 */
    }
    rep->n_results = rep->n_errors = res->n_results;
    for (size_t i = 0; i < res->n_results; i++) {
        rep->results[i] = res->results[i];
        snprintf(rep->errors[i], sizeof rep->errors[i], "%s", res->entry_errors[i]);
    }
}

/* A retried SUBSCRIBE is answered with its first attempt's id; nothing changes. */
kyu_code_t kyu_op_topic_id_replay(kyu_sm_t *self, const kyu_command_t *c, const kyu_dedup_t *d,
                                  kyu_apply_t *a)
{
    (void)self, (void)c;
    memcpy(a->res->ids[0], d->ids[0], sizeof a->res->ids[0]);
    a->res->n_ids = d->n ? 1 : 0;
    return KYU_OK;
}

void kyu_op_topic_id_reply(const kyu_result_t *res, kyu_reply_t *rep, size_t *n_bodies)
{
    *n_bodies = 0;
    rep->n_ids = res->n_ids ? 1 : 0;
    rep->md5_body[0][0] = rep->md5_attrs[0][0] = '\0'; /* no digests: not one message's */
    if (rep->n_ids)
        snprintf(rep->ids[0], sizeof rep->ids[0], "%s", res->ids[0]);
}

/* ---- LIST_TOPICS, LIST_SUBSCRIPTIONS ---- */

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The topics' names, sorted (a heap array of n; NULL on failure). */
static const char **sorted_names(kyu_sm_t *self, size_t *n)
{
    *n = zhashx_size(self->topics);
    const char **names = calloc(*n ? *n : 1, sizeof *names);
    if (!names)
        return NULL;
    size_t i = 0;
    for (topic_t *t = zhashx_first(self->topics); t; t = zhashx_next(self->topics))
        names[i++] = t->name;
    qsort(names, *n, sizeof *names, cmp_names);
    return names;
}

kyu_code_t kyu_op_list_topics_answer(kyu_op_ctx_t *ctx, const kyu_request_t *req, kyu_reply_t *rep,
                                     kyu_err_t *err)
{
    (void)req;
    size_t n;
    const char **names = sorted_names(ctx->sm, &n);
    rep->topics = names ? calloc(n ? n : 1, sizeof rep->topics[0]) : NULL;
    if (!rep->topics) {
        free(names);
        return kyu_err_set(err, KYU_ERR_INTERNAL, "out of memory");
    }
    for (size_t i = 0; i < n; i++)
        snprintf(rep->topics[i], sizeof rep->topics[i], "%s", names[i]);
    rep->n_topics = n;
    free(names);
    return KYU_OK;
}

/* A listing's policies together, at most (a topic's 100 policies of 256 KB fit): the reply is
 * one frame, which a client takes up to 64 MiB. */
#define LIST_POLICIES_MAX (48u << 20)

/* rep->subs: n entries and, after them in the same allocation, text bytes for their policies
 * (kyu_sub_info_t.policy); *text points there. */
static kyu_code_t alloc_subs(kyu_reply_t *rep, size_t n, size_t text, char **at, kyu_err_t *err)
{
    char *block = calloc(1, (n ? n : 1) * sizeof rep->subs[0] + text);
    if (!block)
        return kyu_err_set(err, KYU_ERR_INTERNAL, "out of memory");
    rep->subs = (kyu_sub_info_t *)block;
    *at = block + (n ? n : 1) * sizeof rep->subs[0];
    return KYU_OK;
}

static void fill_sub(kyu_reply_t *rep, const topic_t *t, const tsub_t *sub, char **text)
{
    kyu_sub_info_t *s = &rep->subs[rep->n_subs++];
    snprintf(s->id, sizeof s->id, "%s", sub->id);
    snprintf(s->topic, sizeof s->topic, "%s", t->name);
    snprintf(s->queue, sizeof s->queue, "%s", sub->queue);
    s->raw = sub->raw;
    s->filtered = sub->policy != NULL;
    s->filter_body = s->filtered && sub->scope == KYU_FILTER_SCOPE_BODY;
    if (sub->policy) {
        size_t n = strlen(sub->policy) + 1;
        memcpy(*text, sub->policy, n);
        s->policy = *text;
        *text += n;
    }
}

static size_t policy_bytes(const tsub_t *s)
{
    return s->policy ? strlen(s->policy) + 1 : 0;
}

kyu_code_t kyu_op_list_subscriptions_answer(kyu_op_ctx_t *ctx, const kyu_request_t *req,
                                            kyu_reply_t *rep, kyu_err_t *err)
{
    bool one = (req->fields & KYU_F_TOPIC) != 0;
    if (one && !zhashx_lookup(ctx->sm->topics, req->topic))
        return no_topic(err, req->topic);
    size_t n_names, total = 0, text = 0;
    const char **names = sorted_names(ctx->sm, &n_names);
    if (!names)
        return kyu_err_set(err, KYU_ERR_INTERNAL, "out of memory");
    for (size_t i = 0; i < n_names; i++)
        if (!one || strcmp(names[i], req->topic) == 0) {
            const topic_t *t = zhashx_lookup(ctx->sm->topics, names[i]);
            total += t->n;
            for (size_t j = 0; j < t->n; j++)
                text += policy_bytes(&t->subs[j]);
        }
    if (text > LIST_POLICIES_MAX) {
        free(names);
        return kyu_err_set(err, KYU_ERR_LIMIT_EXCEEDED,
                           "the subscriptions' filter policies have %zu bytes together, more than "
                           "a listing takes (%u): list one topic at a time",
                           text, LIST_POLICIES_MAX);
    }
    char *at;
    kyu_code_t rc = alloc_subs(rep, total, text, &at, err);
    if (rc != KYU_OK) {
        free(names);
        return rc;
    }
    for (size_t i = 0; i < n_names; i++) {
        if (one && strcmp(names[i], req->topic) != 0)
            continue;
        const topic_t *t = zhashx_lookup(ctx->sm->topics, names[i]);
        for (size_t j = 0; j < t->n; j++)
            fill_sub(rep, t, &t->subs[j], &at);
    }
    free(names);
    return KYU_OK;
}

/* ---- SET_SUBSCRIPTION_ATTRIBUTES, GET_SUBSCRIPTION_ATTRIBUTES ---- */

/* What a SET_SUBSCRIPTION_ATTRIBUTES changes (from the request or the command). */
typedef struct {
    const char *sub_id;
    bool has_raw, raw;
    bool no_filter;     /* the policy goes */
    const void *policy; /* a new policy (len bytes), or NULL */
    size_t len;
    bool has_scope; /* the policy's scope changes to scope */
    uint8_t scope;
} sub_change_t;

/* The subscription as it is after the change, in *want (its raw, scope, policy and filter,
 * compiled: the caller frees it or moves it in), and where it is (*t, *at). A new policy
 * takes the new scope or else the present policy's (SNS keeps FilterPolicyScope when only
 * FilterPolicy changes); a new scope alone compiles the present policy again under it. */
static kyu_code_t plan_change(kyu_sm_t *self, const sub_change_t *c, topic_t **t, size_t *at,
                              tsub_t *want, kyu_err_t *err)
{
    *want = (tsub_t){0};
    *t = find_sub(self, c->sub_id, at);
    if (!*t)
        return kyu_err_set(err, KYU_ERR_NO_SUCH_SUBSCRIPTION, "subscription %s does not exist",
                           c->sub_id);
    const tsub_t *s = &(*t)->subs[*at];
    want->raw = c->has_raw ? c->raw : s->raw;
    kyu_filter_scope_t scope = c->has_scope ? (kyu_filter_scope_t)c->scope
                               : s->policy  ? s->scope
                                            : KYU_FILTER_SCOPE_ATTRIBUTES;
    if (c->no_filter)
        return KYU_OK;
    if (c->policy)
        return set_filter(want, scope, c->policy, c->len, err);
    if (!s->policy) {
        if (c->has_scope)
            return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                               "subscription %s has no filter policy to scope: give the policy "
                               "with its scope",
                               c->sub_id);
        return KYU_OK;
    }
    return set_filter(want, scope, s->policy, strlen(s->policy), err);
}

static sub_change_t request_change(const kyu_request_t *req, const kyu_bodies_t *bodies)
{
    const kyu_body_t *f = (req->fields & KYU_F_FILTER) && bodies->n ? &bodies->b[0] : NULL;
    return (sub_change_t){.sub_id = req->sub_id,
                          .has_raw = (req->fields & KYU_F_RAW_DELIVERY) != 0,
                          .raw = req->raw_delivery,
                          .no_filter = (req->fields & KYU_F_NO_FILTER) != 0,
                          .policy = f ? f->data : NULL,
                          .len = f ? f->len : 0,
                          .has_scope = (req->fields & KYU_F_FILTER_SCOPE) != 0,
                          .scope = req->filter_scope};
}

kyu_code_t kyu_op_set_sub_attrs_validate(kyu_op_ctx_t *ctx, const kyu_request_t *req,
                                         const kyu_bodies_t *bodies, kyu_err_t *err)
{
    sub_change_t c = request_change(req, bodies);
    topic_t *t;
    size_t at;
    tsub_t want;
    kyu_code_t rc = plan_change(ctx->sm, &c, &t, &at, &want, err);
    sub_free(&want);
    return rc;
}

void kyu_op_set_sub_attrs_build(kyu_op_ctx_t *ctx, const kyu_request_t *req,
                                const kyu_bodies_t *bodies, kyu_command_t *cmd)
{
    (void)ctx;
    sub_change_t c = request_change(req, bodies);
    snprintf(cmd->sub_id, sizeof cmd->sub_id, "%s", req->sub_id);
    cmd->has_raw = c.has_raw;
    cmd->raw = c.raw;
    cmd->no_filter = c.no_filter;
    if (c.policy) {
        cmd->n = 1;
        cmd->bodies[0] = c.policy;
        cmd->body_lens[0] = c.len;
    }
    cmd->has_filter_scope = c.has_scope;
    cmd->filter_scope = c.scope;
}

/* [sub id, raw or nil, policy (bin) or false (none) or nil, scope or nil] */
void kyu_op_set_sub_attrs_encode(const kyu_command_t *cmd, msgpack_packer *pk)
{
    msgpack_pack_array(pk, 4);
    kyu_mp_pack_str(pk, cmd->sub_id);
    if (!cmd->has_raw)
        msgpack_pack_nil(pk);
    else if (cmd->raw)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
    if (cmd->n) {
        msgpack_pack_bin(pk, cmd->body_lens[0]);
        msgpack_pack_bin_body(pk, cmd->bodies[0], cmd->body_lens[0]);
    } else if (cmd->no_filter) {
        msgpack_pack_false(pk);
    } else {
        msgpack_pack_nil(pk);
    }
    if (cmd->has_filter_scope)
        msgpack_pack_uint32(pk, cmd->filter_scope);
    else
        msgpack_pack_nil(pk);
}

bool kyu_op_set_sub_attrs_decode(const msgpack_object *items, kyu_command_t *cmd)
{
    if (items->type != MSGPACK_OBJECT_ARRAY || items->via.array.size != 4)
        return false;
    const msgpack_object *f = items->via.array.ptr;
    if (!get_sub_id(&f[0], cmd->sub_id))
        return false;
    if (f[1].type == MSGPACK_OBJECT_BOOLEAN) {
        cmd->has_raw = true;
        cmd->raw = f[1].via.boolean;
    } else if (f[1].type != MSGPACK_OBJECT_NIL) {
        return false;
    }
    if (f[2].type == MSGPACK_OBJECT_BIN) {
        cmd->n = 1;
        cmd->bodies[0] = f[2].via.bin.ptr;
        cmd->body_lens[0] = f[2].via.bin.size;
    } else if (f[2].type == MSGPACK_OBJECT_BOOLEAN && !f[2].via.boolean) {
        cmd->no_filter = true;
    } else if (f[2].type != MSGPACK_OBJECT_NIL) {
        return false;
    }
    if (f[3].type == MSGPACK_OBJECT_POSITIVE_INTEGER && f[3].via.u64 <= KYU_FILTER_SCOPE_BODY) {
        cmd->has_filter_scope = true;
        cmd->filter_scope = (uint8_t)f[3].via.u64;
    } else if (f[3].type != MSGPACK_OBJECT_NIL) {
        return false;
    }
    return !(cmd->no_filter && cmd->has_filter_scope);
}

/* Every replica compiles the policy again (the leader refused a bad one already; a change
 * between its check and this apply, such as an unsubscribe, fails here the same way on every
 * replica). */
kyu_code_t kyu_op_set_sub_attrs_apply(kyu_sm_t *self, const kyu_command_t *c, kyu_apply_t *a)
{
    sub_change_t ch = {.sub_id = c->sub_id,
                       .has_raw = c->has_raw,
                       .raw = c->raw,
                       .no_filter = c->no_filter,
                       .policy = c->n ? c->bodies[0] : NULL,
                       .len = c->n ? c->body_lens[0] : 0,
                       .has_scope = c->has_filter_scope,
                       .scope = c->filter_scope};
    topic_t *t;
    size_t at;
    tsub_t want;
    if (plan_change(self, &ch, &t, &at, &want, kyu_result_err(a->res)) != KYU_OK) {
        sub_free(&want);
        return KYU_OK;
    }
    tsub_t *s = &t->subs[at];
    sub_free(s);
    s->raw = want.raw;
    s->scope = want.scope;
    s->policy = want.policy;
    s->filter = want.filter;
    write_topic(self, t);
    return KYU_OK;
}

kyu_code_t kyu_op_get_sub_attrs_answer(kyu_op_ctx_t *ctx, const kyu_request_t *req,
                                       kyu_reply_t *rep, kyu_err_t *err)
{
    size_t at;
    const topic_t *t = find_sub(ctx->sm, req->sub_id, &at);
    if (!t)
        return kyu_err_set(err, KYU_ERR_NO_SUCH_SUBSCRIPTION, "subscription %s does not exist",
                           req->sub_id);
    char *text;
    kyu_code_t rc = alloc_subs(rep, 1, policy_bytes(&t->subs[at]), &text, err);
    if (rc != KYU_OK)
        return rc;
    fill_sub(rep, t, &t->subs[at], &text);
    return KYU_OK;
}
