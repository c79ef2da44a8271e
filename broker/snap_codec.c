#include "snap_codec.h"

#include <stdlib.h>
#include <string.h>

#define FIELDS 9
#define MAX_DEPTH 4

bool kyu_snap_is_frame(const void *buf, size_t len)
{
    const uint8_t *p = buf;
    return len >= 2 && p[0] == (0x90 | FIELDS) && p[1] == KYU_SNAP_FORMAT;
}

bool kyu_snap_name_ok(const char *name)
{
    size_t n = strlen(name);
    return n > 0 && n <= KYU_SNAP_NAME_MAX && !strchr(name, '/') && strcmp(name, ".") != 0 &&
           strcmp(name, "..") != 0;
}

void kyu_snap_encode(const kyu_snap_msg_t *m, msgpack_sbuffer *out)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, FIELDS);
    msgpack_pack_uint64(&pk, KYU_SNAP_FORMAT);
    msgpack_pack_uint64(&pk, (uint64_t)m->kind);
    msgpack_pack_uint64(&pk, m->from);
    msgpack_pack_uint64(&pk, m->to);
    msgpack_pack_uint64(&pk, m->session);
    msgpack_pack_uint64(&pk, m->min_index);
    msgpack_pack_uint64(&pk, m->file);
    msgpack_pack_uint64(&pk, m->offset);
    switch (m->kind) {
    case KYU_SNAP_MANIFEST:
        msgpack_pack_array(&pk, (uint32_t)m->n_files);
        for (size_t i = 0; i < m->n_files; i++) {
            msgpack_pack_array(&pk, 2);
            kyu_mp_pack_str(&pk, m->files[i].name);
            msgpack_pack_uint64(&pk, m->files[i].size);
        }
        break;
    case KYU_SNAP_CHUNK:
        msgpack_pack_bin(&pk, m->len);
        msgpack_pack_bin_body(&pk, m->data, m->len);
        break;
    case KYU_SNAP_REFUSE:
        kyu_mp_pack_str(&pk, m->reason);
        break;
    default:
        msgpack_pack_nil(&pk);
        break;
    }
}

void kyu_snap_reset(kyu_snap_msg_t *m)
{
    if (m->live)
        msgpack_unpacked_destroy(&m->unpacked);
    free(m->files);
    memset(m, 0, sizeof *m);
}

static bool get_u64(const msgpack_object *o, uint64_t *v)
{
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return false;
    *v = o->via.u64;
    return true;
}

static kyu_code_t bad(kyu_err_t *err, const char *what)
{
    return kyu_err_set(err, KYU_ERR_MALFORMED, "snapshot transfer frame: %s", what);
}

static kyu_code_t decode_manifest(const msgpack_object *o, kyu_snap_msg_t *out, kyu_err_t *err)
{
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size > KYU_SNAP_FILES_MAX)
        return bad(err, "manifest is not an array of at most 10000 files");
    out->n_files = o->via.array.size;
    out->files = calloc(out->n_files ? out->n_files : 1, sizeof *out->files);
    if (!out->files)
        return kyu_err_set(err, KYU_ERR_INTERNAL, "out of memory");
    for (size_t i = 0; i < out->n_files; i++) {
        const msgpack_object *f = &o->via.array.ptr[i];
        if (f->type != MSGPACK_OBJECT_ARRAY || f->via.array.size != 2 ||
            !kyu_mp_copy_str(&f->via.array.ptr[0], out->files[i].name, KYU_SNAP_NAME_MAX) ||
            !kyu_snap_name_ok(out->files[i].name) ||
            !get_u64(&f->via.array.ptr[1], &out->files[i].size))
            return bad(err, "manifest entry is not [plain file name, size]");
    }
    return KYU_OK;
}

kyu_code_t kyu_snap_decode(const void *buf, size_t len, kyu_snap_msg_t *out, kyu_err_t *err)
{
    memset(out, 0, sizeof *out);
    if (kyu_msgpack_unpack_bounded(buf, len, MAX_DEPTH, &out->unpacked, err) != KYU_OK)
        return KYU_ERR_MALFORMED;
    out->live = true;
    const msgpack_object *root = &out->unpacked.data;
    if (root->type != MSGPACK_OBJECT_ARRAY || root->via.array.size != FIELDS)
        return bad(err, "not an array of 9");
    const msgpack_object *a = root->via.array.ptr;
    uint64_t format = 0, kind = 0, file = 0;
    if (!get_u64(&a[0], &format) || format != KYU_SNAP_FORMAT)
        return bad(err, "wrong format");
    if (!get_u64(&a[1], &kind) || kind < KYU_SNAP_FETCH || kind > KYU_SNAP_REFUSE)
        return bad(err, "unknown kind");
    out->kind = (kyu_snap_kind_t)kind;
    if (!get_u64(&a[2], &out->from) || !get_u64(&a[3], &out->to) ||
        !get_u64(&a[4], &out->session) || !get_u64(&a[5], &out->min_index) ||
        !get_u64(&a[6], &file) || file > KYU_SNAP_FILES_MAX || !get_u64(&a[7], &out->offset))
        return bad(err, "header field is not an unsigned integer in range");
    out->file = (uint32_t)file;
    const msgpack_object *p = &a[8];
    switch (out->kind) {
    case KYU_SNAP_FETCH:
        if (p->type != MSGPACK_OBJECT_NIL)
            return bad(err, "fetch has a payload");
        return KYU_OK;
    case KYU_SNAP_MANIFEST:
        return decode_manifest(p, out, err);
    case KYU_SNAP_CHUNK:
        if (p->type != MSGPACK_OBJECT_BIN || p->via.bin.size > KYU_SNAP_CHUNK_BYTES)
            return bad(err, "chunk is not bin of at most 1 MiB");
        out->data = (const uint8_t *)p->via.bin.ptr;
        out->len = p->via.bin.size;
        return KYU_OK;
    case KYU_SNAP_REFUSE:
        if (!kyu_mp_copy_str(p, out->reason, sizeof out->reason - 1))
            return bad(err, "refusal reason is not a short string");
        return KYU_OK;
    }
    return bad(err, "unknown kind");
}
