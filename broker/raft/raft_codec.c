/*
 * raft_codec.c - msgpack codec for Raft messages (format in raft_codec.h), on msgpack-c.
 */
#include "raft_codec.h"

#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

#define KYU_RAFT_CODEC_VERSION 1
#define KYU_RAFT_CODEC_FIELDS 19

static int pack_ids(msgpack_packer *pk, const uint64_t *ids, uint32_t n)
{
    int rc = msgpack_pack_array(pk, n);
    for (uint32_t i = 0; i < n && rc == 0; i++)
        rc = msgpack_pack_uint64(pk, ids[i]);
    return rc;
}

static int pack_bin(msgpack_packer *pk, const uint8_t *data, size_t len)
{
    if (len > UINT32_MAX)
        return -1;
    int rc = msgpack_pack_bin(pk, len);
    if (rc == 0 && len > 0)
        rc = msgpack_pack_bin_body(pk, data, len);
    return rc;
}

bool kyu_raft_msg_encode(const kyu_raft_msg_t *m, uint8_t **buf, size_t *len)
{
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init(&sbuf);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sbuf, msgpack_sbuffer_write);
    int rc = msgpack_pack_array(&pk, KYU_RAFT_CODEC_FIELDS);
    uint64_t head[] = {KYU_RAFT_CODEC_VERSION,
                       (uint64_t)m->type,
                       m->group,
                       m->from,
                       m->to,
                       m->term,
                       m->log_term,
                       m->index,
                       m->commit};
    for (size_t i = 0; i < sizeof(head) / sizeof(head[0]) && rc == 0; i++)
        rc = msgpack_pack_uint64(&pk, head[i]);
    if (rc == 0)
        rc = m->reject ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk);
    if (rc == 0)
        rc = msgpack_pack_uint64(&pk, m->reject_hint);
    if (rc == 0)
        rc = m->force ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk);
    if (rc == 0)
        rc = msgpack_pack_array(&pk, m->n_entries);
    for (size_t i = 0; i < m->n_entries && rc == 0; i++) {
        const kyu_raft_entry_t *e = &m->entries[i];
        rc = msgpack_pack_array(&pk, 4);
        if (rc == 0)
            rc = msgpack_pack_uint64(&pk, e->term);
        if (rc == 0)
            rc = msgpack_pack_uint64(&pk, e->index);
        if (rc == 0)
            rc = msgpack_pack_uint64(&pk, (uint64_t)e->type);
        if (rc == 0)
            rc = pack_bin(&pk, e->data, e->len);
    }
    if (rc == 0)
        rc = msgpack_pack_uint64(&pk, m->snap_offset);
    if (rc == 0)
        rc = msgpack_pack_uint64(&pk, m->snap_total);
    if (rc == 0)
        rc = m->snap_data ? pack_bin(&pk, m->snap_data, m->snap_len) : msgpack_pack_nil(&pk);
    if (rc == 0)
        rc = pack_ids(&pk, m->snap_conf.voters, m->snap_conf.n_voters);
    if (rc == 0)
        rc = pack_ids(&pk, m->snap_conf.learners, m->snap_conf.n_learners);
    if (rc == 0)
        rc = msgpack_pack_false(&pk); /* after_persist is local to the sender */
    if (rc != 0) {
        msgpack_sbuffer_destroy(&sbuf);
        return false;
    }
    *len = sbuf.size;
    *buf = (uint8_t *)msgpack_sbuffer_release(&sbuf);
    return true;
}

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

/* Copies a bin object; a zero-length bin gives NULL. */
static bool get_bin(const msgpack_object *o, uint8_t **data, size_t *len)
{
    if (o->type != MSGPACK_OBJECT_BIN)
        return false;
    *len = o->via.bin.size;
    *data = NULL;
    if (*len == 0)
        return true;
    *data = malloc(*len);
    if (!*data)
        return false;
    memcpy(*data, o->via.bin.ptr, *len);
    return true;
}

static bool get_ids(const msgpack_object *o, uint64_t *ids, uint32_t *n)
{
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size > KYU_RAFT_MAX_NODES)
        return false;
    *n = o->via.array.size;
    for (uint32_t i = 0; i < *n; i++)
        if (!get_u64(&o->via.array.ptr[i], &ids[i]))
            return false;
    return true;
}

static bool get_entries(const msgpack_object *o, kyu_raft_msg_t *m)
{
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size > KYU_RAFT_CODEC_MAX_ENTRIES)
        return false;
    size_t n = o->via.array.size;
    if (n == 0)
        return true;
    m->entries = calloc(n, sizeof(*m->entries));
    if (!m->entries)
        return false;
    for (size_t i = 0; i < n; i++) {
        const msgpack_object *e = &o->via.array.ptr[i];
        kyu_raft_entry_t *out = &m->entries[i];
        uint64_t type;
        if (e->type != MSGPACK_OBJECT_ARRAY || e->via.array.size != 4 ||
            !get_u64(&e->via.array.ptr[0], &out->term) ||
            !get_u64(&e->via.array.ptr[1], &out->index) || !get_u64(&e->via.array.ptr[2], &type) ||
            type > KYU_RAFT_ENTRY_CONF || !get_bin(&e->via.array.ptr[3], &out->data, &out->len))
            return false; /* entries decoded so far are freed by the caller */
        out->type = (kyu_raft_entry_type_t)type;
        m->n_entries = i + 1;
    }
    return true;
}

static bool decode_fields(const msgpack_object *f, kyu_raft_msg_t *m)
{
    uint64_t version, type;
    bool after_persist;
    if (!get_u64(&f[0], &version) || version != KYU_RAFT_CODEC_VERSION || !get_u64(&f[1], &type) ||
        type < KYU_RAFT_MSG_APPEND || type > KYU_RAFT_MSG_TIMEOUT_NOW)
        return false;
    m->type = (kyu_raft_msg_type_t)type;
    if (!get_u64(&f[2], &m->group) || !get_u64(&f[3], &m->from) || !get_u64(&f[4], &m->to) ||
        !get_u64(&f[5], &m->term) || !get_u64(&f[6], &m->log_term) || !get_u64(&f[7], &m->index) ||
        !get_u64(&f[8], &m->commit) || !get_bool(&f[9], &m->reject) ||
        !get_u64(&f[10], &m->reject_hint) || !get_bool(&f[11], &m->force) ||
        !get_entries(&f[12], m) || !get_u64(&f[13], &m->snap_offset) ||
        !get_u64(&f[14], &m->snap_total))
        return false;
    if (f[15].type != MSGPACK_OBJECT_NIL && !get_bin(&f[15], &m->snap_data, &m->snap_len))
        return false;
    if (!get_ids(&f[16], m->snap_conf.voters, &m->snap_conf.n_voters) ||
        !get_ids(&f[17], m->snap_conf.learners, &m->snap_conf.n_learners) ||
        m->snap_conf.n_voters + m->snap_conf.n_learners > KYU_RAFT_MAX_NODES ||
        !get_bool(&f[18], &after_persist))
        return false;
    return true;
}

static uint64_t be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/*
 * msgpack-c allocates an array's or map's declared element count before reading the
 * elements, so 5 bytes claiming 4 billion elements cost 64 GB. This walk reads only the
 * headers and refuses any input whose declared counts or lengths exceed the bytes that are
 * actually there (every element takes at least one byte). Parsing proper is msgpack-c's.
 */
static bool lengths_plausible(const uint8_t *p, size_t len)
{
    size_t pos = 0;
    uint64_t pending = 1; /* objects still to read */
    while (pending > 0) {
        if (pos >= len)
            return false;
        uint8_t t = p[pos++];
        uint64_t skip = 0, items = 0;
        int n = 0; /* bytes of a length field that follows */
        if (t <= 0x7f || t >= 0xe0 || t == 0xc0 || t == 0xc2 || t == 0xc3) {
            /* fixint, nil, bool */
        } else if (t <= 0x8f) {
            items = 2ull * (t & 0x0f);
        } else if (t <= 0x9f) {
            items = t & 0x0f;
        } else if (t <= 0xbf) {
            skip = t & 0x1f;
        } else {
            switch (t) {
            case 0xc4:
            case 0xd9:
                n = 1;
                break; /* bin8, str8 */
            case 0xc5:
            case 0xda:
                n = 2;
                break; /* bin16, str16 */
            case 0xc6:
            case 0xdb:
                n = 4;
                break; /* bin32, str32 */
            case 0xc7:
                n = 1;
                skip = 1;
                break; /* ext8 (+ type) */
            case 0xc8:
                n = 2;
                skip = 1;
                break;
            case 0xc9:
                n = 4;
                skip = 1;
                break;
            case 0xca:
                skip = 4;
                break; /* float32 */
            case 0xcb:
                skip = 8;
                break; /* float64 */
            case 0xcc:
            case 0xd0:
                skip = 1;
                break;
            case 0xcd:
            case 0xd1:
                skip = 2;
                break;
            case 0xce:
            case 0xd2:
                skip = 4;
                break;
            case 0xcf:
            case 0xd3:
                skip = 8;
                break;
            case 0xd4:
                skip = 2;
                break; /* fixext (+ type) */
            case 0xd5:
                skip = 3;
                break;
            case 0xd6:
                skip = 5;
                break;
            case 0xd7:
                skip = 9;
                break;
            case 0xd8:
                skip = 17;
                break;
            case 0xdc:
            case 0xdd:
            case 0xde:
            case 0xdf: { /* array16/32, map16/32 */
                int w = (t == 0xdc || t == 0xde) ? 2 : 4;
                if (len - pos < (size_t)w)
                    return false;
                items = be(p + pos, w) * ((t == 0xde || t == 0xdf) ? 2 : 1);
                pos += (size_t)w;
                break;
            }
            default:
                return false; /* 0xc1 is never used */
            }
        }
        if (n > 0) {
            if (len - pos < (size_t)n)
                return false;
            skip += be(p + pos, n);
            pos += (size_t)n;
        }
        if (skip > len - pos)
            return false;
        pos += (size_t)skip;
        pending = pending - 1 + items;
        if (pending > len - pos)
            return false;
    }
    return true;
}

bool kyu_raft_msg_decode(const uint8_t *buf, size_t len, kyu_raft_msg_t *m)
{
    memset(m, 0, sizeof(*m));
    if (!buf || len == 0 || len > KYU_RAFT_CODEC_MAX_BYTES || !lengths_plausible(buf, len))
        return false;
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    bool ok = msgpack_unpack_next(&up, (const char *)buf, len, &off) == MSGPACK_UNPACK_SUCCESS &&
              off == len && up.data.type == MSGPACK_OBJECT_ARRAY &&
              up.data.via.array.size == KYU_RAFT_CODEC_FIELDS &&
              decode_fields(up.data.via.array.ptr, m);
    msgpack_unpacked_destroy(&up);
    if (!ok)
        kyu_raft_msg_decoded_free(m);
    return ok;
}

void kyu_raft_msg_decoded_free(kyu_raft_msg_t *m)
{
    if (m->entries)
        for (size_t i = 0; i < m->n_entries; i++)
            free(m->entries[i].data);
    free(m->entries);
    free(m->snap_data);
    memset(m, 0, sizeof(*m));
}
