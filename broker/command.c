#include "command.h"

#include <string.h>

void kyu_command_encode(const kyu_command_t *cmd, msgpack_sbuffer *out)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    bool rq = cmd->rq_client != 0;
    msgpack_pack_array(&pk, rq ? 7 : 6);
    msgpack_pack_uint32(&pk, cmd->type);
    msgpack_pack_uint64(&pk, cmd->now_ms);
    kyu_mp_pack_str(&pk, cmd->queue);
    msgpack_pack_int64(&pk, cmd->vt);
    msgpack_pack_uint32(&pk, cmd->max);
    switch (cmd->type) {
    case KYU_CMD_SEND:
        msgpack_pack_array(&pk, cmd->n);
        for (size_t i = 0; i < cmd->n; i++) {
            msgpack_pack_array(&pk, 2);
            kyu_mp_pack_str(&pk, cmd->ids[i]);
            msgpack_pack_bin(&pk, cmd->body_lens[i]);
            msgpack_pack_bin_body(&pk, cmd->bodies[i], cmd->body_lens[i]);
        }
        break;
    case KYU_CMD_DELETE:
    case KYU_CMD_CHANGE_VISIBILITY:
        msgpack_pack_array(&pk, cmd->n);
        for (size_t i = 0; i < cmd->n; i++)
            kyu_mp_pack_str(&pk, cmd->handles[i]);
        break;
    default:
        msgpack_pack_array(&pk, 0);
    }
    if (rq) {
        msgpack_pack_array(&pk, 2);
        msgpack_pack_uint64(&pk, cmd->rq_client);
        msgpack_pack_uint64(&pk, cmd->rq_key);
    }
}

/* The optional [client id, key] of a DELETE_QUEUE, SEND, RECEIVE, DELETE or CHANGE_VISIBILITY. */
static bool decode_rq(const msgpack_object *o, kyu_command_t *cmd)
{
    if (cmd->type < KYU_CMD_DELETE_QUEUE || cmd->type > KYU_CMD_CHANGE_VISIBILITY ||
        o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != 2 ||
        o->via.array.ptr[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
        o->via.array.ptr[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return false;
    cmd->rq_client = o->via.array.ptr[0].via.u64;
    cmd->rq_key = o->via.array.ptr[1].via.u64;
    return cmd->rq_client != 0 && cmd->rq_key != 0;
}

static bool decode_items(const msgpack_object *items, kyu_command_t *cmd)
{
    if (items->type != MSGPACK_OBJECT_ARRAY || items->via.array.size > KYU_BATCH_MAX)
        return false;
    cmd->n = items->via.array.size;
    for (size_t i = 0; i < cmd->n; i++) {
        const msgpack_object *it = &items->via.array.ptr[i];
        if (cmd->type == KYU_CMD_SEND) {
            if (it->type != MSGPACK_OBJECT_ARRAY || it->via.array.size != 2)
                return false;
            const msgpack_object *body = &it->via.array.ptr[1];
            if (!kyu_mp_copy_str(&it->via.array.ptr[0], cmd->ids[i], KYU_UUID_LEN) ||
                body->type != MSGPACK_OBJECT_BIN)
                return false;
            cmd->bodies[i] = body->via.bin.ptr;
            cmd->body_lens[i] = body->via.bin.size;
        } else if (!kyu_mp_copy_str(it, cmd->handles[i], KYU_HANDLE_MAX)) {
            return false;
        }
    }
    return true;
}

kyu_code_t kyu_command_decode(const void *buf, size_t len, size_t *off, kyu_command_t *cmd,
                              kyu_err_t *err)
{
    memset(cmd, 0, sizeof *cmd);
    msgpack_unpacked u;
    kyu_code_t rc = kyu_msgpack_unpack_next_bounded(buf, len, off, 4, &u, err);
    if (rc != KYU_OK)
        return rc;
    const msgpack_object *o = &u.data;
    bool ok = o->type == MSGPACK_OBJECT_ARRAY && (o->via.array.size == 6 || o->via.array.size == 7);
    if (ok) {
        const msgpack_object *f = o->via.array.ptr;
        ok = f[0].type == MSGPACK_OBJECT_POSITIVE_INTEGER && f[0].via.u64 >= KYU_CMD_CREATE_QUEUE &&
             f[0].via.u64 <= KYU_CMD_CHANGE_VISIBILITY &&
             f[1].type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
             (f[3].type == MSGPACK_OBJECT_POSITIVE_INTEGER ||
              f[3].type == MSGPACK_OBJECT_NEGATIVE_INTEGER) &&
             f[4].type == MSGPACK_OBJECT_POSITIVE_INTEGER && f[4].via.u64 <= KYU_BATCH_MAX;
        if (ok) {
            cmd->type = (kyu_cmd_type_t)f[0].via.u64;
            cmd->now_ms = f[1].via.u64;
            cmd->vt = f[3].via.i64;
            cmd->max = (uint32_t)f[4].via.u64;
            ok = kyu_mp_copy_str(&f[2], cmd->queue, KYU_NAME_MAX) && cmd->vt >= -1 &&
                 cmd->vt <= KYU_VISIBILITY_MAX && decode_items(&f[5], cmd) &&
                 (o->via.array.size == 6 || decode_rq(&f[6], cmd));
        }
    }
    msgpack_unpacked_destroy(&u);
    if (!ok)
        return kyu_err_set(err, KYU_ERR_MALFORMED, "log entry holds a malformed command");
    return KYU_OK;
}
