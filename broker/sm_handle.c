/* sm_handle: receipt handles, and the key that makes them unforgeable.
 *
 * A handle is 56 lowercase hex digits: seq(8) gen(4) mac(16), where mac is the 128-bit
 * SipHash-2-4 (libsodium's crypto_shorthash_siphashx24, a PRF made for short inputs) of
 * qid(8) seq(8) gen(4) under a 16-byte key derived from the handle key. Without the key
 * nobody makes a handle that passes: not by counting sequence numbers, not by changing a
 * digit, not by taking a handle of another queue. (HMAC-SHA512-256 did the same at 20,000
 * instructions a message, two handles: 4% of W2's CPU; SipHash costs a few hundred.)
 *
 * The key (32 bytes) is replicated state (meta key "handle_key"), so every node checks the
 * same handles and every snapshot carries it. The state machine draws no random numbers:
 * the key comes in a SET_HANDLE_KEY command, which a serving leader proposes ahead of its
 * first write when the state has no key yet (frontend.c). The first such command applied
 * wins; later ones (a second leader's, proposed before it applied the first) change nothing.
 * Until a key is applied (a state machine driven without a frontend: kyu-sim-kyu, unit
 * tests) the key is all zeros.
 */
#include "sm_internal.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define MAC_LEN 16
#define RAW_LEN (8 + 4 + MAC_LEN)
_Static_assert(KYU_HANDLE_LEN == 2 * RAW_LEN && KYU_HANDLE_LEN <= KYU_HANDLE_MAX,
               "a handle is the hex of seq, gen and mac");
_Static_assert(MAC_LEN == crypto_shorthash_siphashx24_BYTES, "a 128-bit SipHash");
_Static_assert(sizeof(((kyu_handle_mac_t *)0)->k) == crypto_shorthash_siphashx24_KEYBYTES,
               "SipHash's key");

/* The SipHash key of a handle key: derived once per key (BLAKE2b of the 32 bytes). */
static void keyed(kyu_handle_mac_t *m, const uint8_t key[KYU_HANDLE_KEY_LEN])
{
    KYU_ASSERT(crypto_generichash(m->k, sizeof m->k, key, KYU_HANDLE_KEY_LEN, NULL, 0) == 0);
}

static void mac(uint8_t out[MAC_LEN], const kyu_handle_mac_t *m, uint64_t qid, uint64_t seq,
                uint32_t gen)
{
    uint8_t in[20];
    kyu_put_be64(in, qid);
    kyu_put_be64(in + 8, seq);
    kyu_put_be32(in + 16, gen);
    crypto_shorthash_siphashx24(out, in, sizeof in, m->k);
}

void kyu_handle_format(char out[KYU_HANDLE_LEN + 1], const uint8_t key[KYU_HANDLE_KEY_LEN],
                       uint64_t qid, uint64_t seq, uint32_t gen)
{
    kyu_handle_mac_t m;
    keyed(&m, key);
    kyu_sm_handle_format(out, &m, qid, seq, gen);
}

void kyu_sm_handle_format(char out[KYU_HANDLE_LEN + 1], const kyu_handle_mac_t *m, uint64_t qid,
                          uint64_t seq, uint32_t gen)
{
    static const char hex[] = "0123456789abcdef";
    uint8_t raw[RAW_LEN];
    kyu_put_be64(raw, seq);
    kyu_put_be32(raw + 8, gen);
    mac(raw + 12, m, qid, seq, gen);
    for (size_t i = 0; i < RAW_LEN; i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    out[KYU_HANDLE_LEN] = '\0';
}

static bool unhex(const char *h, uint8_t raw[RAW_LEN])
{
    if (strlen(h) != KYU_HANDLE_LEN)
        return false;
    for (size_t i = 0; i < KYU_HANDLE_LEN; i++) {
        char c = h[i];
        int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
        if (d < 0)
            return false;
        raw[i / 2] = (uint8_t)(i % 2 ? (raw[i / 2] << 4) | d : d);
    }
    return true;
}

bool kyu_handle_parse(const char *handle, uint64_t *seq, uint32_t *gen)
{
    uint8_t raw[RAW_LEN];
    if (!unhex(handle, raw))
        return false;
    *seq = kyu_get_be64(raw);
    *gen = kyu_get_be32(raw + 8);
    return true;
}

bool kyu_handle_verify(const char *handle, const uint8_t key[KYU_HANDLE_KEY_LEN], uint64_t qid,
                       uint64_t *seq, uint32_t *gen)
{
    kyu_handle_mac_t m;
    keyed(&m, key);
    return kyu_sm_handle_verify(handle, &m, qid, seq, gen);
}

bool kyu_sm_handle_verify(const char *handle, const kyu_handle_mac_t *m, uint64_t qid,
                          uint64_t *seq, uint32_t *gen)
{
    uint8_t raw[RAW_LEN], want[MAC_LEN];
    if (!unhex(handle, raw))
        return false;
    *seq = kyu_get_be64(raw);
    *gen = kyu_get_be32(raw + 8);
    mac(want, m, qid, *seq, *gen);
    return sodium_memcmp(want, raw + 12, MAC_LEN) == 0;
}

bool kyu_sm_has_handle_key(const kyu_sm_t *self)
{
    return self->has_hkey;
}

kyu_code_t kyu_sm_handle_key_load(kyu_sm_t *self, kyu_err_t *err)
{
    char *rerr = NULL;
    size_t len = 0;
    char *v = rocksdb_get_cf(self->db, kyu_store_readopts(self->store),
                             kyu_store_cf(self->store, KYU_CF_META), "handle_key", 10, &len, &rerr);
    memset(self->hkey, 0, sizeof self->hkey);
    self->has_hkey = false;
    if (rerr) {
        kyu_err_set(err, KYU_ERR_STORAGE, "reading handle_key: %s", rerr);
        free(rerr);
        return KYU_ERR_STORAGE;
    }
    if (v && len != KYU_HANDLE_KEY_LEN) {
        free(v);
        return kyu_err_set(err, KYU_ERR_STORAGE, "corrupt handle_key in the store");
    }
    if (v) {
        memcpy(self->hkey, v, KYU_HANDLE_KEY_LEN);
        self->has_hkey = true;
    }
    free(v);
    keyed(&self->hmac, self->hkey);
    memcpy(self->hkey_next, self->hkey, sizeof self->hkey);
    self->has_hkey_next = self->has_hkey;
    self->hmac_next = self->hmac;
    return KYU_OK;
}

void kyu_sm_handle_key_settle(kyu_sm_t *self, bool written)
{
    if (self->has_hkey_next == self->has_hkey)
        return; /* nothing changed (a key, once set, never changes): no copy of the state */
    if (written) {
        memcpy(self->hkey, self->hkey_next, sizeof self->hkey);
        self->has_hkey = true;
        self->hmac = self->hmac_next;
    } else {
        memcpy(self->hkey_next, self->hkey, sizeof self->hkey);
        self->has_hkey_next = self->has_hkey;
        self->hmac_next = self->hmac;
    }
}

/* ---- SET_HANDLE_KEY (an internal row, ops.c): items = [key(bin 32)] ---- */

void kyu_op_handle_key_build(kyu_command_t *cmd)
{
    randombytes_buf(cmd->key, sizeof cmd->key);
}

void kyu_op_handle_key_encode(const kyu_command_t *cmd, msgpack_packer *pk)
{
    msgpack_pack_array(pk, 1);
    msgpack_pack_bin(pk, KYU_HANDLE_KEY_LEN);
    msgpack_pack_bin_body(pk, cmd->key, KYU_HANDLE_KEY_LEN);
}

bool kyu_op_handle_key_decode(const msgpack_object *items, kyu_command_t *cmd)
{
    if (items->type != MSGPACK_OBJECT_ARRAY || items->via.array.size != 1)
        return false;
    const msgpack_object *k = &items->via.array.ptr[0];
    if (k->type != MSGPACK_OBJECT_BIN || k->via.bin.size != KYU_HANDLE_KEY_LEN)
        return false;
    memcpy(cmd->key, k->via.bin.ptr, KYU_HANDLE_KEY_LEN);
    return true;
}

kyu_code_t kyu_op_handle_key_apply(kyu_sm_t *self, const kyu_command_t *c, kyu_apply_t *a)
{
    (void)a;
    if (self->has_hkey_next)
        return KYU_OK; /* the first key applied stays: handles given out remain valid */
    memcpy(self->hkey_next, c->key, KYU_HANDLE_KEY_LEN);
    self->has_hkey_next = true;
    keyed(&self->hmac_next, c->key);
    kyu_sm_put(self, KYU_CF_META, "handle_key", 10, c->key, KYU_HANDLE_KEY_LEN);
    return KYU_OK;
}
