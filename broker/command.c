/* command: the encoding of commands in log entries (command.h). The envelope is the same for
 * every command; its items element is the row's (ops.c: encode_items, decode_items). */
#include "command.h"
#include "ops.h"

#include <string.h>

void kyu_command_encode(const kyu_command_t *cmd, msgpack_sbuffer *out)
{
    const kyu_op_row_t *row = kyu_ops_command(cmd->type);
    KYU_ASSERT(row); /* the broker proposes only commands it knows */
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    bool rq = cmd->rq_client != 0;
    msgpack_pack_array(&pk, rq ? 7 : 6);
    msgpack_pack_uint32(&pk, cmd->type);
    msgpack_pack_uint64(&pk, cmd->now_ms);
    kyu_mp_pack_str(&pk, cmd->queue);
    msgpack_pack_int64(&pk, cmd->vt);
    msgpack_pack_uint32(&pk, cmd->max);
    if (row->encode_items)
        row->encode_items(cmd, &pk);
    else
        msgpack_pack_array(&pk, 0);
    if (rq) {
        msgpack_pack_array(&pk, 2);
        msgpack_pack_uint64(&pk, cmd->rq_client);
        msgpack_pack_uint64(&pk, cmd->rq_key);
    }
}

/* The optional [client id, key] of a command whose row takes request keys (has a replay). */
static bool decode_rq(const kyu_op_row_t *row, const msgpack_object *o, kyu_command_t *cmd)
{
    if (!row->replay || o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != 2 ||
        o->via.array.ptr[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
        o->via.array.ptr[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return false;
    cmd->rq_client = o->via.array.ptr[0].via.u64;
    cmd->rq_key = o->via.array.ptr[1].via.u64;
    return cmd->rq_client != 0 && cmd->rq_key != 0;
}

static bool decode_items(const kyu_op_row_t *row, const msgpack_object *items, kyu_command_t *cmd)
{
    if (row->decode_items)
        return row->decode_items(items, cmd);
    return items->type == MSGPACK_OBJECT_ARRAY && items->via.array.size == 0;
}

void kyu_command_init(kyu_command_t *cmd)
{
    memset(cmd, 0, offsetof(kyu_command_t, ids));
    for (size_t i = 0; i < KYU_BATCH_MAX; i++) {
        cmd->ids[i][0] = cmd->entry_error[i][0] = cmd->handles[i][0] = '\0';
        cmd->group_ids[i][0] = cmd->dedup_ids[i][0] = '\0';
        cmd->attrs[i].n = 0;
    }
}

kyu_code_t kyu_command_decode(const void *buf, size_t len, size_t *off, kyu_command_t *cmd,
                              kyu_err_t *err)
{
    kyu_command_init(cmd);
    msgpack_unpacked u;
    kyu_code_t rc = kyu_msgpack_unpack_next_bounded(buf, len, off, 5, &u, err);
    if (rc != KYU_OK)
        return rc;
    const msgpack_object *o = &u.data;
    const kyu_op_row_t *row = NULL;
    bool ok = o->type == MSGPACK_OBJECT_ARRAY && (o->via.array.size == 6 || o->via.array.size == 7);
    if (ok) {
        const msgpack_object *f = o->via.array.ptr;
        ok = f[0].type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
             (row = kyu_ops_command(f[0].via.u64)) != NULL &&
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
                 cmd->vt <= KYU_VISIBILITY_MAX && decode_items(row, &f[5], cmd) &&
                 (o->via.array.size == 6 || decode_rq(row, &f[6], cmd));
        }
    }
    msgpack_unpacked_destroy(&u);
    if (!ok)
        return kyu_err_set(err, KYU_ERR_MALFORMED, "log entry holds a malformed command");
    return KYU_OK;
}
