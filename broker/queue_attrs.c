/* queue_attrs: the other attributes of a queue, their ranges and their encoding
 * (queue_attrs.h). */
#include "queue_attrs.h"

#include <string.h>

#define MAX_DEPTH 5 /* map, "rap" array, its queue array, a name */

void kyu_qattrs_defaults(kyu_queue_ext_t *x)
{
    x->retention = KYU_RETENTION_DEFAULT;
    x->receive_wait = 0;
    x->dlq[0] = '\0';
    x->max_receive_count = 0;
    x->allow = KYU_REDRIVE_ALLOW_ALL;
    x->n_sources = 0;
    x->fifo = x->cbd = false;
    x->dedup_scope = KYU_DEDUP_SCOPE_QUEUE;
    x->throughput = KYU_THROUGHPUT_PER_QUEUE;
    x->tags.n = 0;
}

uint64_t kyu_qattrs_nondefault(const kyu_queue_ext_t *x)
{
    uint64_t set = 0;
    if (x->retention != KYU_RETENTION_DEFAULT)
        set |= KYU_F_RETENTION;
    if (x->receive_wait != 0)
        set |= KYU_F_RECEIVE_WAIT;
    if (x->dlq[0])
        set |= KYU_F_REDRIVE;
    if (x->allow != KYU_REDRIVE_ALLOW_ALL)
        set |= KYU_F_REDRIVE_ALLOW;
    if (x->tags.n)
        set |= KYU_F_TAGS;
    if (x->fifo)
        set |= KYU_F_FIFO;
    if (x->cbd)
        set |= KYU_F_CBD;
    if (x->dedup_scope != KYU_DEDUP_SCOPE_QUEUE)
        set |= KYU_F_DEDUP_SCOPE;
    if (x->throughput != KYU_THROUGHPUT_PER_QUEUE)
        set |= KYU_F_THROUGHPUT;
    return set;
}

const char *kyu_qattrs_allow_name(uint32_t allow)
{
    return allow == KYU_REDRIVE_DENY_ALL   ? "denyAll"
           : allow == KYU_REDRIVE_BY_QUEUE ? "byQueue"
                                           : "allowAll";
}

kyu_code_t kyu_qattrs_check(const kyu_queue_ext_t *x, uint64_t set, kyu_err_t *err)
{
    if ((set & KYU_F_RETENTION) &&
        (x->retention < KYU_RETENTION_MIN || x->retention > KYU_RETENTION_MAX))
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "MessageRetentionPeriod must be %d to %d seconds, not %u",
                           KYU_RETENTION_MIN, KYU_RETENTION_MAX, x->retention);
    if ((set & KYU_F_RECEIVE_WAIT) && x->receive_wait > KYU_RECEIVE_WAIT_MAX)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "ReceiveMessageWaitTimeSeconds must be 0 to %d seconds, not %u",
                           KYU_RECEIVE_WAIT_MAX, x->receive_wait);
    if ((set & KYU_F_REDRIVE) && x->dlq[0] && !kyu_queue_name_valid(x->dlq, strlen(x->dlq)))
        return kyu_err_set(err, KYU_ERR_INVALID_NAME, "RedrivePolicy: invalid queue name");
    if ((set & KYU_F_REDRIVE) && x->dlq[0] &&
        (x->max_receive_count < 1 || x->max_receive_count > KYU_MAX_RECEIVE_COUNT_MAX))
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "RedrivePolicy maxReceiveCount must be 1 to %d, not %u",
                           KYU_MAX_RECEIVE_COUNT_MAX, x->max_receive_count);
    if (set & KYU_F_REDRIVE_ALLOW) {
        bool by_queue = x->allow == KYU_REDRIVE_BY_QUEUE;
        if (x->allow > KYU_REDRIVE_BY_QUEUE ||
            (by_queue && (x->n_sources < 1 || x->n_sources > KYU_REDRIVE_SOURCES_MAX)) ||
            (!by_queue && x->n_sources != 0))
            return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                               "RedriveAllowPolicy byQueue takes 1 to %d source queues (allowAll "
                               "and denyAll none)",
                               KYU_REDRIVE_SOURCES_MAX);
        for (size_t i = 0; i < x->n_sources; i++)
            if (!kyu_queue_name_valid(x->sources[i], strlen(x->sources[i])))
                return kyu_err_set(err, KYU_ERR_INVALID_NAME,
                                   "RedriveAllowPolicy: invalid source queue name");
    }
    if ((set & KYU_F_DEDUP_SCOPE) && x->dedup_scope > KYU_DEDUP_SCOPE_GROUP)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "DeduplicationScope is queue or messageGroup");
    if ((set & KYU_F_THROUGHPUT) && x->throughput > KYU_THROUGHPUT_PER_GROUP)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "FifoThroughputLimit is perQueue or perMessageGroupId");
    if (set & KYU_F_TAGS) {
        if (x->tags.n > KYU_TAGS_MAX)
            return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                               "a queue has at most %d tags, not %zu", KYU_TAGS_MAX, x->tags.n);
        for (size_t i = 0; i < x->tags.n; i++) {
            size_t kl = strlen(x->tags.keys[i]);
            if (kl < 1 || kl > KYU_TAG_KEY_MAX || strlen(x->tags.values[i]) > KYU_TAG_VALUE_MAX)
                return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                                   "tag keys are 1 to %d bytes and values 0 to %d", KYU_TAG_KEY_MAX,
                                   KYU_TAG_VALUE_MAX);
            for (size_t j = 0; j < i; j++)
                if (strcmp(x->tags.keys[i], x->tags.keys[j]) == 0)
                    return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "tag key '%s' given twice",
                                       x->tags.keys[i]);
        }
    }
    return KYU_OK;
}

void kyu_qattrs_encode(const kyu_queue_ext_t *x, uint64_t set, msgpack_packer *pk)
{
    set &= KYU_F_QUEUE_EXT_;
    msgpack_pack_map(pk, (size_t)__builtin_popcountll(set));
    if (set & KYU_F_RETENTION) {
        kyu_mp_pack_str(pk, "mrp");
        msgpack_pack_uint32(pk, x->retention);
    }
    if (set & KYU_F_RECEIVE_WAIT) {
        kyu_mp_pack_str(pk, "rwt");
        msgpack_pack_uint32(pk, x->receive_wait);
    }
    if (set & KYU_F_REDRIVE) {
        kyu_mp_pack_str(pk, "rdp");
        msgpack_pack_array(pk, x->dlq[0] ? 2 : 0);
        if (x->dlq[0]) {
            kyu_mp_pack_str(pk, x->dlq);
            msgpack_pack_uint32(pk, x->max_receive_count);
        }
    }
    if (set & KYU_F_REDRIVE_ALLOW) {
        kyu_mp_pack_str(pk, "rap");
        msgpack_pack_array(pk, 2);
        msgpack_pack_uint32(pk, x->allow);
        msgpack_pack_array(pk, x->n_sources);
        for (size_t i = 0; i < x->n_sources; i++)
            kyu_mp_pack_str(pk, x->sources[i]);
    }
    if (set & KYU_F_FIFO) {
        kyu_mp_pack_str(pk, "fifo");
        kyu_mp_pack_bool(pk, x->fifo);
    }
    if (set & KYU_F_CBD) {
        kyu_mp_pack_str(pk, "cbd");
        kyu_mp_pack_bool(pk, x->cbd);
    }
    if (set & KYU_F_DEDUP_SCOPE) {
        kyu_mp_pack_str(pk, "dsc");
        msgpack_pack_uint32(pk, x->dedup_scope);
    }
    if (set & KYU_F_THROUGHPUT) {
        kyu_mp_pack_str(pk, "ftl");
        msgpack_pack_uint32(pk, x->throughput);
    }
    if (set & KYU_F_TAGS) {
        kyu_mp_pack_str(pk, "tags");
        msgpack_pack_map(pk, x->tags.n);
        for (size_t i = 0; i < x->tags.n; i++) {
            kyu_mp_pack_str(pk, x->tags.keys[i]);
            kyu_mp_pack_str(pk, x->tags.values[i]);
        }
    }
}

static bool get_u32(const msgpack_object *o, uint32_t *out)
{
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER || o->via.u64 > UINT32_MAX)
        return false;
    *out = (uint32_t)o->via.u64;
    return true;
}

static bool decode_one(const msgpack_object *k, const msgpack_object *v, kyu_queue_ext_t *x,
                       uint64_t *bit)
{
    if (kyu_mp_key_is(k, "mrp"))
        return (*bit = KYU_F_RETENTION, get_u32(v, &x->retention));
    if (kyu_mp_key_is(k, "rwt"))
        return (*bit = KYU_F_RECEIVE_WAIT, get_u32(v, &x->receive_wait));
    if (kyu_mp_key_is(k, "rdp")) {
        *bit = KYU_F_REDRIVE;
        if (v->type != MSGPACK_OBJECT_ARRAY || (v->via.array.size != 0 && v->via.array.size != 2))
            return false;
        x->dlq[0] = '\0';
        x->max_receive_count = 0;
        return v->via.array.size == 0 ||
               (kyu_mp_copy_str(&v->via.array.ptr[0], x->dlq, KYU_NAME_MAX) && x->dlq[0] &&
                get_u32(&v->via.array.ptr[1], &x->max_receive_count));
    }
    if (kyu_mp_key_is(k, "rap")) {
        *bit = KYU_F_REDRIVE_ALLOW;
        if (v->type != MSGPACK_OBJECT_ARRAY || v->via.array.size != 2 ||
            !get_u32(&v->via.array.ptr[0], &x->allow))
            return false;
        const msgpack_object *l = &v->via.array.ptr[1];
        if (l->type != MSGPACK_OBJECT_ARRAY || l->via.array.size > KYU_REDRIVE_SOURCES_MAX)
            return false;
        x->n_sources = l->via.array.size;
        for (size_t i = 0; i < x->n_sources; i++)
            if (!kyu_mp_copy_str(&l->via.array.ptr[i], x->sources[i], KYU_NAME_MAX))
                return false;
        return true;
    }
    if (kyu_mp_key_is(k, "fifo") || kyu_mp_key_is(k, "cbd")) {
        bool fifo = kyu_mp_key_is(k, "fifo");
        *bit = fifo ? KYU_F_FIFO : KYU_F_CBD;
        if (v->type != MSGPACK_OBJECT_BOOLEAN)
            return false;
        *(fifo ? &x->fifo : &x->cbd) = v->via.boolean;
        return true;
    }
    if (kyu_mp_key_is(k, "dsc"))
        return (*bit = KYU_F_DEDUP_SCOPE, get_u32(v, &x->dedup_scope));
    if (kyu_mp_key_is(k, "ftl"))
        return (*bit = KYU_F_THROUGHPUT, get_u32(v, &x->throughput));
    if (kyu_mp_key_is(k, "tags")) {
        *bit = KYU_F_TAGS;
        if (v->type != MSGPACK_OBJECT_MAP || v->via.map.size > KYU_TAGS_MAX)
            return false;
        x->tags.n = v->via.map.size;
        for (size_t i = 0; i < x->tags.n; i++)
            if (!kyu_mp_copy_str(&v->via.map.ptr[i].key, x->tags.keys[i], KYU_TAG_KEY_MAX) ||
                !kyu_mp_copy_str(&v->via.map.ptr[i].val, x->tags.values[i], KYU_TAG_VALUE_MAX))
                return false;
        return true;
    }
    return false;
}

bool kyu_qattrs_decode_object(const msgpack_object *o, kyu_queue_ext_t *x, uint64_t *set)
{
    *set = 0;
    if (o->type != MSGPACK_OBJECT_MAP)
        return false;
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        uint64_t bit = 0;
        if (!decode_one(&o->via.map.ptr[i].key, &o->via.map.ptr[i].val, x, &bit) || (*set & bit))
            return false;
        *set |= bit;
    }
    kyu_err_t err;
    return kyu_qattrs_check(x, *set, &err) == KYU_OK;
}

bool kyu_qattrs_decode(const void *buf, size_t len, kyu_queue_ext_t *x, uint64_t *set)
{
    msgpack_unpacked u;
    kyu_err_t err;
    if (kyu_msgpack_unpack_bounded(buf, len, MAX_DEPTH, &u, &err) != KYU_OK)
        return false;
    bool ok = kyu_qattrs_decode_object(&u.data, x, set);
    msgpack_unpacked_destroy(&u);
    return ok;
}

bool kyu_qattrs_merge_tags(kyu_queue_ext_t *x, const kyu_tags_t *tags)
{
    size_t n = x->tags.n;
    for (size_t i = 0; i < tags->n; i++) {
        size_t j = 0;
        while (j < x->tags.n && strcmp(x->tags.keys[j], tags->keys[i]) != 0)
            j++;
        n += j == x->tags.n;
    }
    if (n > KYU_TAGS_MAX)
        return false;
    for (size_t i = 0; i < tags->n; i++) {
        size_t j = 0;
        while (j < x->tags.n && strcmp(x->tags.keys[j], tags->keys[i]) != 0)
            j++;
        if (j == x->tags.n)
            memcpy(x->tags.keys[x->tags.n++], tags->keys[i], sizeof tags->keys[i]);
        memcpy(x->tags.values[j], tags->values[i], sizeof tags->values[i]);
    }
    return true;
}

bool kyu_qattrs_tags_equal(const kyu_tags_t *a, const kyu_tags_t *b)
{
    if (a->n != b->n)
        return false;
    for (size_t i = 0; i < a->n; i++) {
        size_t j = 0;
        while (j < b->n && strcmp(a->keys[i], b->keys[j]) != 0)
            j++;
        if (j == b->n || strcmp(a->values[i], b->values[j]) != 0)
            return false;
    }
    return true;
}
