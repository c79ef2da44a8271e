/* A bounds check in front of msgpack-c's unpacker.
 *
 * msgpack-c allocates a container's elements by its declared count before reading them: the
 * five bytes "\xdf\xff\xff\xff\xff" (a map of 2^32-1 pairs) make it ask for ~200 GB. This
 * walk reads only type bytes and lengths (it builds no values; msgpack-c still does the
 * parsing) and refuses any container that declares more elements than bytes remain, or that
 * nests deeper than the caller allows. With it, what msgpack-c allocates is bounded by a small
 * multiple of the input's size.
 */
#include "protocol.h"

#include <string.h>

static uint64_t read_be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Skips one object at *pos. Returns false when the object is cut short, malformed, too deep
 * or declares more elements than the remaining bytes could hold. */
static bool skip_object(const uint8_t *buf, size_t len, size_t *pos, int depth)
{
    if (depth <= 0 || *pos >= len)
        return false;
    uint8_t b = buf[(*pos)++];
    size_t left = len - *pos;
    uint64_t payload = 0;  /* bytes of scalar payload that follow */
    uint64_t children = 0; /* objects that follow (2 per map pair) */
    int lenbytes = 0;      /* size of a length field that follows the type byte */
    int kind = 0;          /* 0 scalar, 1 array, 2 map, 3 ext (one type byte then data) */

    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
        return true;
    if (b >= 0x80 && b <= 0x8f)
        kind = 2, children = b & 0x0f;
    else if (b >= 0x90 && b <= 0x9f)
        kind = 1, children = b & 0x0f;
    else if (b >= 0xa0 && b <= 0xbf)
        payload = b & 0x1f;
    else {
        switch (b) {
        case 0xc4:
        case 0xd9:
            lenbytes = 1;
            break; /* bin8, str8 */
        case 0xc5:
        case 0xda:
            lenbytes = 2;
            break; /* bin16, str16 */
        case 0xc6:
        case 0xdb:
            lenbytes = 4;
            break; /* bin32, str32 */
        case 0xc7:
            lenbytes = 1, kind = 3;
            break; /* ext8 */
        case 0xc8:
            lenbytes = 2, kind = 3;
            break; /* ext16 */
        case 0xc9:
            lenbytes = 4, kind = 3;
            break; /* ext32 */
        case 0xca:
            payload = 4;
            break;
        case 0xcb:
            payload = 8;
            break;
        case 0xcc:
        case 0xd0:
            payload = 1;
            break;
        case 0xcd:
        case 0xd1:
            payload = 2;
            break;
        case 0xce:
        case 0xd2:
            payload = 4;
            break;
        case 0xcf:
        case 0xd3:
            payload = 8;
            break;
        case 0xd4:
            payload = 2;
            break; /* fixext1: type + 1 */
        case 0xd5:
            payload = 3;
            break;
        case 0xd6:
            payload = 5;
            break;
        case 0xd7:
            payload = 9;
            break;
        case 0xd8:
            payload = 17;
            break;
        case 0xdc:
            lenbytes = 2, kind = 1;
            break;
        case 0xdd:
            lenbytes = 4, kind = 1;
            break;
        case 0xde:
            lenbytes = 2, kind = 2;
            break;
        case 0xdf:
            lenbytes = 4, kind = 2;
            break;
        default:
            return false; /* 0xc1 is never used */
        }
    }
    if (lenbytes) {
        if (left < (size_t)lenbytes)
            return false;
        uint64_t n = read_be(buf + *pos, lenbytes);
        *pos += lenbytes;
        left -= lenbytes;
        if (kind == 0)
            payload = n;
        else if (kind == 3)
            payload = n + 1;
        else
            children = n;
    }
    if (kind == 2)
        children *= 2; /* at most 2 * 2^32: no overflow in 64 bits */
    if (kind == 1 || kind == 2) {
        if (children > left)
            return false;
        for (uint64_t i = 0; i < children; i++)
            if (!skip_object(buf, len, pos, depth - 1))
                return false;
        return true;
    }
    if (payload > left)
        return false;
    *pos += payload;
    return true;
}

kyu_code_t kyu_msgpack_unpack_next_bounded(const void *buf, size_t len, size_t *off, int max_depth,
                                           msgpack_unpacked *out, kyu_err_t *err)
{
    size_t pos = *off;
    if (!skip_object(buf, len, &pos, max_depth))
        return kyu_err_set(err, KYU_ERR_MALFORMED,
                           "not valid msgpack (truncated, too deep or oversized)");
    msgpack_unpacked_init(out);
    size_t at = *off;
    msgpack_unpack_return rc = msgpack_unpack_next(out, buf, pos, &at);
    if (rc != MSGPACK_UNPACK_SUCCESS || at != pos) {
        msgpack_unpacked_destroy(out);
        return kyu_err_set(err, KYU_ERR_MALFORMED, "not valid msgpack");
    }
    *off = pos;
    return KYU_OK;
}

kyu_code_t kyu_msgpack_unpack_bounded(const void *buf, size_t len, int max_depth,
                                      msgpack_unpacked *out, kyu_err_t *err)
{
    size_t off = 0;
    kyu_code_t rc = kyu_msgpack_unpack_next_bounded(buf, len, &off, max_depth, out, err);
    if (rc == KYU_OK && off != len) {
        msgpack_unpacked_destroy(out);
        return kyu_err_set(err, KYU_ERR_MALFORMED, "header has %zu trailing bytes", len - off);
    }
    return rc;
}

void kyu_mp_pack_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

bool kyu_mp_copy_str(const msgpack_object *o, char *out, size_t max)
{
    if (o->type != MSGPACK_OBJECT_STR || o->via.str.size > max)
        return false;
    if (o->via.str.size)
        memcpy(out, o->via.str.ptr, o->via.str.size);
    out[o->via.str.size] = '\0';
    return true;
}
