#include "peer_codec.h"

#include <stdlib.h>
#include <string.h>

#define FIELDS 14
#define MAX_DEPTH 4

static void pack_u64(msgpack_packer *pk, uint64_t v)
{
    msgpack_pack_uint64(pk, v);
}

static void pack_bin(msgpack_packer *pk, const void *data, size_t len)
{
    msgpack_pack_bin(pk, len);
    msgpack_pack_bin_body(pk, data, len);
}

static void pack_ids(msgpack_packer *pk, const uint64_t *ids, uint32_t n)
{
    msgpack_pack_array(pk, n);
    for (uint32_t i = 0; i < n; i++)
        pack_u64(pk, ids[i]);
}

void kyu_peer_encode(const kyu_raft_msg_t *m, msgpack_sbuffer *out)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, FIELDS);
    pack_u64(&pk, KYU_PEER_FORMAT);
    pack_u64(&pk, (uint64_t)m->type);
    pack_u64(&pk, m->group);
    pack_u64(&pk, m->from);
    pack_u64(&pk, m->to);
    pack_u64(&pk, m->term);
    pack_u64(&pk, m->log_term);
    pack_u64(&pk, m->index);
    pack_u64(&pk, m->commit);
    kyu_mp_pack_bool(&pk, m->reject);
    pack_u64(&pk, m->reject_hint);
    kyu_mp_pack_bool(&pk, m->force);
    msgpack_pack_array(&pk, m->n_entries);
    for (size_t i = 0; i < m->n_entries; i++) {
        const kyu_raft_entry_t *e = &m->entries[i];
        msgpack_pack_array(&pk, 4);
        pack_u64(&pk, e->term);
        pack_u64(&pk, e->index);
        pack_u64(&pk, (uint64_t)e->type);
        pack_bin(&pk, e->data, e->len);
    }
    if (m->type != KYU_RAFT_MSG_SNAPSHOT) {
        msgpack_pack_nil(&pk);
        return;
    }
    msgpack_pack_array(&pk, 5);
    pack_u64(&pk, m->snap_offset);
    pack_u64(&pk, m->snap_total);
    pack_bin(&pk, m->snap_data, m->snap_len);
    pack_ids(&pk, m->snap_conf.voters, m->snap_conf.n_voters);
    pack_ids(&pk, m->snap_conf.learners, m->snap_conf.n_learners);
}

/* ---- decoding ---- */

static bool get_u64(const msgpack_object *o, uint64_t *v)
{
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return false;
    *v = o->via.u64;
    return true;
}

static bool get_bool(const msgpack_object *o, bool *v)
{
    if (o->type != MSGPACK_OBJECT_BOOLEAN)
        return false;
    *v = o->via.boolean;
    return true;
}

/* A bin object as (pointer, length); msgpack-c gives NULL for an empty one. */
static bool get_bin(const msgpack_object *o, uint8_t **data, size_t *len)
{
    if (o->type != MSGPACK_OBJECT_BIN)
        return false;
    *len = o->via.bin.size;
    *data = *len ? (uint8_t *)o->via.bin.ptr : NULL;
    return true;
}

static bool get_ids(const msgpack_object *o, uint64_t *ids, uint32_t *n)
{
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size > KYU_RAFT_MAX_NODES)
        return false;
    for (uint32_t i = 0; i < o->via.array.size; i++)
        if (!get_u64(&o->via.array.ptr[i], &ids[i]) || ids[i] == KYU_RAFT_NONE)
            return false;
    *n = o->via.array.size;
    return true;
}

static bool decode_entries(const msgpack_object *o, kyu_peer_decoded_t *d)
{
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size > KYU_PEER_ENTRIES_MAX)
        return false;
    size_t n = o->via.array.size;
    if (n == 0)
        return true;
    d->entries = calloc(n, sizeof *d->entries);
    if (!d->entries)
        return false;
    for (size_t i = 0; i < n; i++) {
        const msgpack_object *e = &o->via.array.ptr[i];
        kyu_raft_entry_t *out = &d->entries[i];
        uint64_t type = 0;
        if (e->type != MSGPACK_OBJECT_ARRAY || e->via.array.size != 4 ||
            !get_u64(&e->via.array.ptr[0], &out->term) ||
            !get_u64(&e->via.array.ptr[1], &out->index) || !get_u64(&e->via.array.ptr[2], &type) ||
            type > KYU_RAFT_ENTRY_CONF || !get_bin(&e->via.array.ptr[3], &out->data, &out->len))
            return false;
        /* Entries of one message are consecutive (the core checks terms; we check shape). */
        if (out->index == 0 || (i > 0 && out->index != d->entries[i - 1].index + 1))
            return false;
        out->type = (kyu_raft_entry_type_t)type;
    }
    d->msg.entries = d->entries;
    d->msg.n_entries = n;
    return true;
}

static bool decode_snapshot(const msgpack_object *o, kyu_raft_msg_t *m)
{
    if (m->type != KYU_RAFT_MSG_SNAPSHOT)
        return o->type == MSGPACK_OBJECT_NIL;
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != 5)
        return false;
    const msgpack_object *f = o->via.array.ptr;
    return get_u64(&f[0], &m->snap_offset) && get_u64(&f[1], &m->snap_total) &&
           get_bin(&f[2], &m->snap_data, &m->snap_len) && m->snap_offset <= m->snap_total &&
           m->snap_len <= m->snap_total - m->snap_offset &&
           get_ids(&f[3], m->snap_conf.voters, &m->snap_conf.n_voters) &&
           get_ids(&f[4], m->snap_conf.learners, &m->snap_conf.n_learners) &&
           m->snap_conf.n_voters + m->snap_conf.n_learners <= KYU_RAFT_MAX_NODES;
}

kyu_code_t kyu_peer_decode(const void *buf, size_t len, kyu_peer_decoded_t *d, kyu_err_t *err)
{
    memset(d, 0, sizeof *d);
    kyu_code_t rc = kyu_msgpack_unpack_bounded(buf, len, MAX_DEPTH, &d->unpacked, err);
    if (rc != KYU_OK)
        return rc;
    d->live = true;
    const msgpack_object *root = &d->unpacked.data;
    if (root->type != MSGPACK_OBJECT_ARRAY || root->via.array.size != FIELDS) {
        kyu_peer_decoded_reset(d);
        return kyu_err_set(err, KYU_ERR_MALFORMED, "peer message is not an array of %d", FIELDS);
    }
    const msgpack_object *f = root->via.array.ptr;
    kyu_raft_msg_t *m = &d->msg;
    uint64_t format = 0, type = 0;
    bool ok = get_u64(&f[0], &format) && format == KYU_PEER_FORMAT && get_u64(&f[1], &type) &&
              type >= KYU_RAFT_MSG_APPEND && type <= KYU_RAFT_MSG_TIMEOUT_NOW &&
              get_u64(&f[2], &m->group) && get_u64(&f[3], &m->from) && get_u64(&f[4], &m->to) &&
              m->from != KYU_RAFT_NONE && m->to != KYU_RAFT_NONE && get_u64(&f[5], &m->term) &&
              get_u64(&f[6], &m->log_term) && get_u64(&f[7], &m->index) &&
              get_u64(&f[8], &m->commit) && get_bool(&f[9], &m->reject) &&
              get_u64(&f[10], &m->reject_hint) && get_bool(&f[11], &m->force);
    if (ok) {
        m->type = (kyu_raft_msg_type_t)type;
        ok = decode_entries(&f[12], d) && decode_snapshot(&f[13], m);
    }
    /* Only appends carry entries. */
    if (ok && m->n_entries > 0 && m->type != KYU_RAFT_MSG_APPEND)
        ok = false;
    if (!ok) {
        kyu_peer_decoded_reset(d);
        return kyu_err_set(err, KYU_ERR_MALFORMED, "peer message has a bad field");
    }
    return KYU_OK;
}

void kyu_peer_decoded_reset(kyu_peer_decoded_t *d)
{
    if (d->live)
        msgpack_unpacked_destroy(&d->unpacked);
    free(d->entries);
    memset(d, 0, sizeof *d);
}
