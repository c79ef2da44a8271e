/* msg_attrs: message attributes — SQS's rules for them, their msgpack form (one flat array
 * of name, type, value triples, the same on the wire, in log entries and in message records)
 * and the MD5 digests SQS's SDKs check (MD5OfMessageBody, MD5OfMessageAttributes).
 *
 * The digests use OpenSSL's libcrypto (EVP): only the encoding SQS hashes is built here. */
#include "protocol.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '.';
}

static bool has_prefix_nocase(const char *s, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    if (len < n)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c != prefix[i])
            return false;
    }
    return true;
}

/* SQS: 1..256 of [A-Za-z0-9_.-], not starting or ending with '.', no "..", not starting
 * with "AWS." or "Amazon." in any case (reserved). */
static kyu_code_t check_name(const kyu_msg_attr_t *at, kyu_err_t *err)
{
    const char *s = at->name;
    size_t n = at->name_len;
    if (n == 0 || n > KYU_ATTR_NAME_MAX)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "a message attribute name is 1 to %d characters, not %zu",
                           KYU_ATTR_NAME_MAX, n);
    for (size_t i = 0; i < n; i++)
        if (!name_char(s[i]))
            return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                               "message attribute name '%.*s' has a character other than "
                               "letters, digits, '_', '-' and '.'",
                               (int)(n > 64 ? 64 : n), s);
    if (s[0] == '.' || s[n - 1] == '.' || memmem(s, n, "..", 2))
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "message attribute name '%.*s' starts or ends with '.' or has '..'",
                           (int)(n > 64 ? 64 : n), s);
    if (has_prefix_nocase(s, n, "aws.") || has_prefix_nocase(s, n, "amazon."))
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "message attribute name '%.*s' is reserved (AWS. and Amazon. prefixes)",
                           (int)(n > 64 ? 64 : n), s);
    return KYU_OK;
}

typedef enum { BASE_STRING, BASE_NUMBER, BASE_BINARY } base_type_t;

/* "String", "Number" or "Binary", optionally followed by '.' and a custom label of
 * [A-Za-z0-9_.-] ("Number.float"); 256 characters at most. */
static kyu_code_t check_type(const kyu_msg_attr_t *at, base_type_t *base, kyu_err_t *err)
{
    static const char *const names[] = {"String", "Number", "Binary"};
    const char *s = at->type;
    size_t n = at->type_len;
    for (int b = 0; b < 3 && n <= KYU_ATTR_TYPE_MAX; b++) {
        size_t bl = strlen(names[b]);
        if (n < bl || memcmp(s, names[b], bl) != 0)
            continue;
        bool ok = n == bl || (s[bl] == '.' && n > bl + 1);
        for (size_t i = bl + 1; ok && i < n; i++)
            ok = name_char(s[i]);
        if (ok) {
            *base = (base_type_t)b;
            return KYU_OK;
        }
    }
    return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                       "message attribute '%.*s' has DataType '%.*s': it must be String, Number "
                       "or Binary, optionally with a custom suffix (Number.float), at most %d "
                       "characters",
                       (int)(at->name_len > 64 ? 64 : at->name_len), at->name,
                       (int)(n > 64 ? 64 : n), n ? s : "", KYU_ATTR_TYPE_MAX);
}

/* SQS's Number: a decimal number (sign, digits, point, exponent), at most 38 significant
 * digits, between 1e-128 and 1e126 in magnitude (or 0). strtod reads it; the characters
 * are checked first so that strtod's other forms (hex, inf, nan) are refused. */
static bool number_valid(const char *s, size_t n)
{
    char buf[512];
    if (n == 0 || n >= sizeof buf)
        return false;
    size_t digits = 0;
    bool leading = true;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c >= '0' && c <= '9') {
            if (c != '0' || !leading)
                digits++, leading = false;
        } else if (c == 'e' || c == 'E') {
            leading = false;
            break; /* the exponent's digits are not significant */
        } else if (c != '.' && c != '+' && c != '-') {
            return false;
        }
    }
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || strchr(".+-eE", s[i])))
            return false;
    memcpy(buf, s, n);
    buf[n] = '\0';
    char *end = NULL;
    double v = strtod(buf, &end);
    if (end != buf + n || digits > 38)
        return false;
    double m = v < 0 ? -v : v;
    return m == 0 || (m >= 1e-128 && m <= 1e126);
}

static kyu_code_t check_value(const kyu_msg_attr_t *at, base_type_t base, kyu_err_t *err)
{
    int nl = (int)(at->name_len > 64 ? 64 : at->name_len);
    if (at->value_len == 0)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "message attribute '%.*s' has an empty value", nl, at->name);
    if (at->binary != (base == BASE_BINARY))
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "message attribute '%.*s': a %s value travels as msgpack %s", nl,
                           at->name, base == BASE_BINARY ? "Binary" : "String or Number",
                           base == BASE_BINARY ? "bin" : "str");
    const unsigned char *v = at->value;
    if (base == BASE_STRING)
        for (size_t i = 0; i < at->value_len; i++)
            if (v[i] < 0x20 && v[i] != '\t' && v[i] != '\n' && v[i] != '\r')
                return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                                   "message attribute '%.*s' has a control character (0x%02x) "
                                   "in its String value",
                                   nl, at->name, v[i]);
    if (base == BASE_NUMBER && !number_valid(at->value, at->value_len))
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "message attribute '%.*s' has Number value '%.*s': a decimal number "
                           "of at most 38 digits, 0 or between 1e-128 and 1e126 in magnitude",
                           nl, at->name, (int)(at->value_len > 64 ? 64 : at->value_len),
                           (const char *)at->value);
    return KYU_OK;
}

static int attr_cmp(const void *a, const void *b)
{
    const kyu_msg_attr_t *x = a, *y = b;
    size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
    int c = n ? memcmp(x->name, y->name, n) : 0;
    return c ? c : (x->name_len > y->name_len) - (x->name_len < y->name_len);
}

kyu_code_t kyu_msg_attrs_check(const kyu_msg_attrs_t *a, kyu_err_t *err)
{
    if (a->n > KYU_MSG_ATTRS_MAX)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "a message has at most %d attributes, not %zu", KYU_MSG_ATTRS_MAX, a->n);
    for (size_t i = 0; i < a->n; i++) {
        const kyu_msg_attr_t *at = &a->a[i];
        base_type_t base = BASE_STRING;
        kyu_code_t rc = check_name(at, err);
        if (rc == KYU_OK)
            rc = check_type(at, &base, err);
        if (rc == KYU_OK)
            rc = check_value(at, base, err);
        if (rc != KYU_OK)
            return rc;
        for (size_t j = 0; j < i; j++)
            if (attr_cmp(at, &a->a[j]) == 0)
                return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                                   "message attribute '%.*s' is given twice",
                                   (int)(at->name_len > 64 ? 64 : at->name_len), at->name);
    }
    return KYU_OK;
}

size_t kyu_msg_attrs_size(const kyu_msg_attrs_t *a)
{
    size_t n = 0;
    for (size_t i = 0; i < a->n; i++)
        n += a->a[i].name_len + a->a[i].type_len + a->a[i].value_len;
    return n;
}

void kyu_msg_attrs_sort(kyu_msg_attrs_t *a)
{
    qsort(a->a, a->n, sizeof a->a[0], attr_cmp);
}

void kyu_msg_attrs_pack(msgpack_packer *pk, const kyu_msg_attrs_t *a)
{
    msgpack_pack_array(pk, a->n * 3);
    for (size_t i = 0; i < a->n; i++) {
        const kyu_msg_attr_t *at = &a->a[i];
        msgpack_pack_str(pk, at->name_len);
        msgpack_pack_str_body(pk, at->name, at->name_len);
        msgpack_pack_str(pk, at->type_len);
        msgpack_pack_str_body(pk, at->type, at->type_len);
        if (at->binary) {
            msgpack_pack_bin(pk, at->value_len);
            msgpack_pack_bin_body(pk, at->value, at->value_len);
        } else {
            msgpack_pack_str(pk, at->value_len);
            msgpack_pack_str_body(pk, at->value, at->value_len);
        }
    }
}

bool kyu_msg_attrs_unpack(const msgpack_object *o, kyu_msg_attrs_t *a)
{
    memset(a, 0, sizeof *a);
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size % 3 != 0 ||
        o->via.array.size / 3 > KYU_MSG_ATTRS_MAX)
        return false;
    a->n = o->via.array.size / 3;
    for (size_t i = 0; i < a->n; i++) {
        const msgpack_object *t = &o->via.array.ptr[3 * i];
        kyu_msg_attr_t *at = &a->a[i];
        if (t[0].type != MSGPACK_OBJECT_STR || t[1].type != MSGPACK_OBJECT_STR)
            return false;
        at->name = t[0].via.str.ptr;
        at->name_len = t[0].via.str.size;
        at->type = t[1].via.str.ptr;
        at->type_len = t[1].via.str.size;
        if (t[2].type == MSGPACK_OBJECT_STR) {
            at->value = t[2].via.str.ptr;
            at->value_len = t[2].via.str.size;
        } else if (t[2].type == MSGPACK_OBJECT_BIN) {
            at->value = t[2].via.bin.ptr;
            at->value_len = t[2].via.bin.size;
            at->binary = true;
        } else {
            return false;
        }
    }
    return true;
}

/* ---- MD5 ---- */

static void hex(const unsigned char *d, char out[KYU_MD5_HEX_LEN + 1])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        out[2 * i] = digits[d[i] >> 4];
        out[2 * i + 1] = digits[d[i] & 15];
    }
    out[KYU_MD5_HEX_LEN] = '\0';
}

static void update(EVP_MD_CTX *ctx, const void *p, size_t n)
{
    KYU_ASSERT(EVP_DigestUpdate(ctx, n ? p : "", n) == 1);
}

static void update_len_prefixed(EVP_MD_CTX *ctx, const void *p, size_t n)
{
    unsigned char len[4] = {(unsigned char)(n >> 24), (unsigned char)(n >> 16),
                            (unsigned char)(n >> 8), (unsigned char)n};
    update(ctx, len, 4);
    update(ctx, p, n);
}

/* MD5's implementation, fetched once (EVP_md5() in an EVP_DigestInit fetches it from the
 * provider again on every call, a lock and a lookup per digest), and a context per thread,
 * reset by each EVP_DigestInit_ex (a context made and freed per digest, with its cleansing,
 * was a tenth of the digest of a 1 KiB body). */
static EVP_MD *md5_md;
static pthread_once_t md5_once = PTHREAD_ONCE_INIT;
static pthread_key_t md5_ctx_key;

static void md5_ctx_free(void *ctx)
{
    EVP_MD_CTX_free(ctx);
}

static void md5_fetch(void)
{
    md5_md = EVP_MD_fetch(NULL, "MD5", NULL);
    KYU_ASSERT(pthread_key_create(&md5_ctx_key, md5_ctx_free) == 0);
}

static EVP_MD_CTX *md5_begin(void)
{
    KYU_ASSERT(pthread_once(&md5_once, md5_fetch) == 0 && md5_md);
    EVP_MD_CTX *ctx = pthread_getspecific(md5_ctx_key);
    if (!ctx) {
        ctx = EVP_MD_CTX_new();
        KYU_ASSERT(ctx); /* out of memory */
        KYU_ASSERT(pthread_setspecific(md5_ctx_key, ctx) == 0);
    }
    KYU_ASSERT(EVP_DigestInit_ex(ctx, md5_md, NULL) == 1);
    return ctx;
}

static void md5_end(EVP_MD_CTX *ctx, uint8_t out[KYU_MD5_LEN])
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    KYU_ASSERT(EVP_DigestFinal_ex(ctx, d, &n) == 1 && n == KYU_MD5_LEN);
    memcpy(out, d, KYU_MD5_LEN);
}

void kyu_md5_hex(const uint8_t d[KYU_MD5_LEN], char out[KYU_MD5_HEX_LEN + 1])
{
    hex(d, out);
}

void kyu_md5_body(const void *body, size_t len, uint8_t out[KYU_MD5_LEN])
{
    EVP_MD_CTX *ctx = md5_begin();
    update(ctx, body, len);
    md5_end(ctx, out);
}

void kyu_md5_body_hex(const void *body, size_t len, char out[KYU_MD5_HEX_LEN + 1])
{
    uint8_t d[KYU_MD5_LEN];
    kyu_md5_body(body, len, d);
    hex(d, out);
}

/* SQS's encoding: the attributes sorted by name, each as length-prefixed (4 bytes, big
 * endian) name, length-prefixed DataType, one transport byte (1 String/Number, 2 Binary),
 * length-prefixed value (Binary: the raw bytes). */
bool kyu_md5_attrs(const kyu_msg_attrs_t *a, uint8_t out[KYU_MD5_LEN])
{
    if (a->n == 0)
        return false;
    kyu_msg_attrs_t sorted = *a;
    kyu_msg_attrs_sort(&sorted);
    EVP_MD_CTX *ctx = md5_begin();
    for (size_t i = 0; i < sorted.n; i++) {
        const kyu_msg_attr_t *at = &sorted.a[i];
        unsigned char transport = at->binary ? 2 : 1;
        update_len_prefixed(ctx, at->name, at->name_len);
        update_len_prefixed(ctx, at->type, at->type_len);
        update(ctx, &transport, 1);
        update_len_prefixed(ctx, at->value, at->value_len);
    }
    md5_end(ctx, out);
    return true;
}

void kyu_md5_attrs_hex(const kyu_msg_attrs_t *a, char out[KYU_MD5_HEX_LEN + 1])
{
    uint8_t d[KYU_MD5_LEN];
    if (kyu_md5_attrs(a, d))
        hex(d, out);
    else
        out[0] = '\0';
}

void kyu_sha256_hex(const void *body, size_t len, char out[KYU_SHA256_HEX_LEN + 1])
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    KYU_ASSERT(EVP_Digest(len ? body : "", len, d, &n, EVP_sha256(), NULL) == 1 && n == 32);
    for (unsigned i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
    out[KYU_SHA256_HEX_LEN] = '\0';
}
