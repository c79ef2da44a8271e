/* sm_members: the replicated address book — where to reach each member of the cluster.
 *
 * Kept in the state machine (meta keys "mb" id(8) -> raft address, NUL, client endpoint) so
 * that every node has it and every snapshot carries it: a node that joins by snapshot learns
 * the addresses of members added after its own --peer list was written. SET_MEMBER adds or
 * replaces an entry, DROP_MEMBER removes one; both are written with their entry's batch and
 * take effect in memory only once that write succeeded (book_next -> book).
 *
 * The book says where a node is, not whether it is a member: membership is the Raft
 * configuration. An entry of a node that is not (or no longer) in the configuration is
 * harmless; the leader drops it when it removes the node. SET_MEMBER and DROP_MEMBER are
 * internal operations (rows in ops.c): broker/membership.c proposes them. */
#include "sm_internal.h"

#include <stdlib.h>
#include <string.h>

#define KEY_LEN 10 /* "mb" id(8) */

static void member_key(uint8_t k[KEY_LEN], uint64_t id)
{
    k[0] = 'm';
    k[1] = 'b';
    kyu_put_be64(k + 2, id);
}

static kyu_peer_t *find(kyu_sm_members_t *b, uint64_t id)
{
    for (size_t i = 0; i < b->n; i++)
        if (b->peers[i].id == id)
            return &b->peers[i];
    return NULL;
}

kyu_code_t kyu_sm_members_load(kyu_sm_t *self, kyu_err_t *err)
{
    memset(&self->book, 0, sizeof self->book);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(self->db, kyu_store_readopts(self->store),
                                                        kyu_store_cf(self->store, KYU_CF_META));
    kyu_code_t rc = KYU_OK;
    for (rocksdb_iter_seek(it, "mb", 2); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t klen = 0, vlen = 0;
        const char *k = rocksdb_iter_key(it, &klen);
        if (klen != KEY_LEN || memcmp(k, "mb", 2) != 0)
            break;
        const char *v = rocksdb_iter_value(it, &vlen);
        const char *nul = vlen ? memchr(v, '\0', vlen) : NULL;
        size_t rlen = nul ? (size_t)(nul - v) : 0, clen = nul ? vlen - rlen - 1 : 0;
        if (self->book.n >= KYU_SM_MEMBERS_MAX || !nul || rlen == 0 || clen == 0 ||
            rlen >= KYU_ENDPOINT_MAX || clen >= KYU_ENDPOINT_MAX || memchr(nul + 1, '\0', clen)) {
            rc = kyu_err_set(err, KYU_ERR_STORAGE, "corrupt member record in the store");
            break;
        }
        kyu_peer_t *p = &self->book.peers[self->book.n++];
        p->id = kyu_get_be64((const uint8_t *)k + 2);
        memcpy(p->raft, v, rlen);
        p->raft[rlen] = '\0';
        memcpy(p->client, nul + 1, clen);
        p->client[clen] = '\0';
    }
    char *rerr = NULL;
    rocksdb_iter_get_error(it, &rerr);
    if (rerr) {
        rc = kyu_err_set(err, KYU_ERR_STORAGE, "reading members: %s", rerr);
        free(rerr);
    }
    rocksdb_iter_destroy(it);
    self->book_next = self->book;
    return rc;
}

/* SET_MEMBER items = [node id, raft address, client endpoint]; DROP_MEMBER items = [node
 * id]. Ids 1..2^63-1, addresses non-empty. */
void kyu_op_set_member_encode(const kyu_command_t *cmd, msgpack_packer *pk)
{
    msgpack_pack_array(pk, 3);
    msgpack_pack_uint64(pk, cmd->member_id);
    kyu_mp_pack_str(pk, cmd->member_raft);
    kyu_mp_pack_str(pk, cmd->member_client);
}

void kyu_op_drop_member_encode(const kyu_command_t *cmd, msgpack_packer *pk)
{
    msgpack_pack_array(pk, 1);
    msgpack_pack_uint64(pk, cmd->member_id);
}

static bool decode_member(const msgpack_object *items, size_t want, kyu_command_t *cmd)
{
    if (items->type != MSGPACK_OBJECT_ARRAY || items->via.array.size != want)
        return false;
    const msgpack_object *f = items->via.array.ptr;
    if (f[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER || f[0].via.u64 == 0 ||
        f[0].via.u64 > INT64_MAX)
        return false;
    cmd->member_id = f[0].via.u64;
    if (want == 1)
        return true;
    return kyu_mp_copy_str(&f[1], cmd->member_raft, KYU_ENDPOINT_MAX - 1) &&
           kyu_mp_copy_str(&f[2], cmd->member_client, KYU_ENDPOINT_MAX - 1) &&
           cmd->member_raft[0] && cmd->member_client[0] &&
           strlen(cmd->member_raft) == f[1].via.str.size &&
           strlen(cmd->member_client) == f[2].via.str.size;
}

bool kyu_op_set_member_decode(const msgpack_object *items, kyu_command_t *cmd)
{
    return decode_member(items, 3, cmd);
}

bool kyu_op_drop_member_decode(const msgpack_object *items, kyu_command_t *cmd)
{
    return decode_member(items, 1, cmd);
}

kyu_code_t kyu_op_drop_member_apply(kyu_sm_t *self, const kyu_command_t *c, kyu_apply_t *a)
{
    (void)a;
    kyu_sm_members_t *b = &self->book_next;
    kyu_peer_t *p = find(b, c->member_id);
    if (!p)
        return KYU_OK; /* already gone: idempotent */
    *p = b->peers[--b->n];
    uint8_t k[KEY_LEN];
    member_key(k, c->member_id);
    kyu_sm_del(self, KYU_CF_META, k, KEY_LEN);
    return KYU_OK;
}

kyu_code_t kyu_op_set_member_apply(kyu_sm_t *self, const kyu_command_t *c, kyu_apply_t *a)
{
    kyu_sm_members_t *b = &self->book_next;
    kyu_peer_t *p = find(b, c->member_id);
    if (!p && b->n >= KYU_SM_MEMBERS_MAX) {
        kyu_err_set(kyu_result_err(a->res), KYU_ERR_LIMIT_EXCEEDED,
                    "the address book holds at most %d entries", KYU_SM_MEMBERS_MAX);
        return KYU_OK;
    }
    if (!p)
        p = &b->peers[b->n++];
    p->id = c->member_id;
    snprintf(p->raft, sizeof p->raft, "%s", c->member_raft);
    snprintf(p->client, sizeof p->client, "%s", c->member_client);
    size_t rlen = strlen(p->raft), clen = strlen(p->client);
    char v[2 * KYU_ENDPOINT_MAX];
    memcpy(v, p->raft, rlen + 1);
    memcpy(v + rlen + 1, p->client, clen);
    uint8_t k[KEY_LEN];
    member_key(k, c->member_id);
    kyu_sm_put(self, KYU_CF_META, k, KEY_LEN, v, rlen + 1 + clen);
    return KYU_OK;
}

void kyu_sm_members_settle(kyu_sm_t *self, bool written)
{
    if (written)
        self->book = self->book_next;
    else
        self->book_next = self->book;
}

const kyu_peer_t *kyu_sm_member(const kyu_sm_t *self, uint64_t id)
{
    for (size_t i = 0; i < self->book.n; i++)
        if (self->book.peers[i].id == id)
            return &self->book.peers[i];
    return NULL;
}

size_t kyu_sm_members(const kyu_sm_t *self, const kyu_peer_t **members)
{
    *members = self->book.peers;
    return self->book.n;
}
