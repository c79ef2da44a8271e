/* ops: the table of operations (ops.h says how it is used). One row per operation; its
 * functions live in the file of its concern. */
#include "ops.h"

/* Indexed by op code. Flags, fields and bodies of the wire ops: proto/codec.c. */
static const kyu_op_row_t rows[KYU_OPS_MAX_] = {
    /* -- answered by every node -- */
    [KYU_OP_HELLO] = {.op = KYU_OP_HELLO,
                      .name = "hello",
                      .flags = KYU_ROW_ANY_ROLE,
                      .answer = kyu_op_hello_answer},
    [KYU_OP_CLUSTER_STATUS] = {.op = KYU_OP_CLUSTER_STATUS,
                               .name = "cluster-status",
                               .flags = KYU_ROW_ANY_ROLE,
                               .answer = kyu_op_status_answer},

    /* -- queues (op_queue.c) -- */
    [KYU_OP_CREATE_QUEUE] = {.op = KYU_OP_CREATE_QUEUE,
                             .name = "create-queue",
                             .cmd = KYU_CMD_CREATE_QUEUE,
                             .validate = kyu_op_create_queue_validate,
                             .build = kyu_op_queue_attrs_build,
                             .encode_items = kyu_op_queue_attrs_encode,
                             .decode_items = kyu_op_queue_attrs_decode,
                             .apply = kyu_op_create_queue_apply},
    [KYU_OP_SET_QUEUE_ATTRIBUTES] = {.op = KYU_OP_SET_QUEUE_ATTRIBUTES,
                                     .name = "set-queue-attributes",
                                     .cmd = KYU_CMD_SET_QUEUE_ATTRIBUTES,
                                     .validate = kyu_op_set_queue_attributes_validate,
                                     .build = kyu_op_queue_attrs_build,
                                     .encode_items = kyu_op_queue_attrs_encode,
                                     .decode_items = kyu_op_queue_attrs_decode,
                                     .apply = kyu_op_set_queue_attributes_apply},
    [KYU_OP_DELETE_QUEUE] = {.op = KYU_OP_DELETE_QUEUE,
                             .name = "delete-queue",
                             .cmd = KYU_CMD_DELETE_QUEUE,
                             .validate = kyu_op_queue_exists,
                             .apply = kyu_op_delete_queue_apply,
                             .replay = kyu_op_done_replay,
                             .dedup = KYU_DEDUP_DONE},
    [KYU_OP_PURGE_QUEUE] = {.op = KYU_OP_PURGE_QUEUE,
                            .name = "purge-queue",
                            .cmd = KYU_CMD_PURGE_QUEUE,
                            .validate = kyu_op_queue_exists,
                            .apply = kyu_op_purge_queue_apply,
                            .replay = kyu_op_done_replay,
                            .dedup = KYU_DEDUP_DONE},
    [KYU_OP_PEEK] = {.op = KYU_OP_PEEK, .name = "peek", .answer = kyu_op_peek_answer},
    [KYU_OP_LIST_QUEUES] = {.op = KYU_OP_LIST_QUEUES,
                            .name = "list-queues",
                            .answer = kyu_op_list_queues_answer},
    [KYU_OP_GET_QUEUE_ATTRIBUTES] = {.op = KYU_OP_GET_QUEUE_ATTRIBUTES,
                                     .name = "get-queue-attributes",
                                     .answer = kyu_op_queue_attributes_answer},

    /* -- messages (op_message.c, op_receipt.c) -- */
    [KYU_OP_SEND] = {.op = KYU_OP_SEND,
                     .name = "send",
                     .cmd = KYU_CMD_SEND,
                     .validate = kyu_op_send_validate,
                     .build = kyu_op_send_build,
                     .reply = kyu_op_send_reply,
                     .encode_items = kyu_op_send_encode,
                     .decode_items = kyu_op_send_decode,
                     .apply = kyu_op_send_apply,
                     .replay = kyu_op_send_replay,
                     .dedup = KYU_DEDUP_IDS},
    [KYU_OP_RECEIVE] = {.op = KYU_OP_RECEIVE,
                        .name = "receive",
                        .cmd = KYU_CMD_RECEIVE,
                        .validate = kyu_op_receive_validate,
                        .build = kyu_op_receive_build,
                        .encode_items = kyu_op_receive_encode,
                        .decode_items = kyu_op_receive_decode,
                        .answer_empty = kyu_op_receive_answer_empty,
                        .reply = kyu_op_receive_reply,
                        .apply = kyu_op_receive_apply,
                        .replay = kyu_op_receive_replay,
                        .dedup = KYU_DEDUP_LEASES},
    [KYU_OP_DELETE] = {.op = KYU_OP_DELETE,
                       .name = "delete",
                       .cmd = KYU_CMD_DELETE,
                       .validate = kyu_op_queue_exists,
                       .build = kyu_op_handles_build,
                       .reply = kyu_op_handles_reply,
                       .encode_items = kyu_op_handles_encode,
                       .decode_items = kyu_op_handles_decode,
                       .apply = kyu_op_delete_apply,
                       .replay = kyu_op_handles_replay,
                       .dedup = KYU_DEDUP_CODES},
    [KYU_OP_CHANGE_VISIBILITY] = {.op = KYU_OP_CHANGE_VISIBILITY,
                                  .name = "change-visibility",
                                  .cmd = KYU_CMD_CHANGE_VISIBILITY,
                                  .validate = kyu_op_queue_exists,
                                  .build = kyu_op_handles_build,
                                  .reply = kyu_op_handles_reply,
                                  .encode_items = kyu_op_handles_encode,
                                  .decode_items = kyu_op_handles_decode,
                                  .apply = kyu_op_change_visibility_apply,
                                  .replay = kyu_op_handles_replay,
                                  .dedup = KYU_DEDUP_CODES},

    /* -- the cluster (op_cluster.c) and its address book (sm_members.c) -- */
    [KYU_OP_CLUSTER_TRANSFER] = {.op = KYU_OP_CLUSTER_TRANSFER,
                                 .name = "cluster-transfer",
                                 .answer = kyu_op_transfer_answer},
    [KYU_OP_CLUSTER_ADD] = {.op = KYU_OP_CLUSTER_ADD,
                            .name = "cluster-add",
                            .start = kyu_op_add_start},
    [KYU_OP_CLUSTER_REMOVE] = {.op = KYU_OP_CLUSTER_REMOVE,
                               .name = "cluster-remove",
                               .start = kyu_op_remove_start},
    [KYU_OP_SET_MEMBER] = {.op = KYU_OP_SET_MEMBER,
                           .name = "set-member",
                           .cmd = KYU_CMD_SET_MEMBER,
                           .encode_items = kyu_op_set_member_encode,
                           .decode_items = kyu_op_set_member_decode,
                           .apply = kyu_op_set_member_apply},
    [KYU_OP_DROP_MEMBER] = {.op = KYU_OP_DROP_MEMBER,
                            .name = "drop-member",
                            .cmd = KYU_CMD_DROP_MEMBER,
                            .encode_items = kyu_op_drop_member_encode,
                            .decode_items = kyu_op_drop_member_decode,
                            .apply = kyu_op_drop_member_apply},
    [KYU_OP_SET_HANDLE_KEY] = {.op = KYU_OP_SET_HANDLE_KEY,
                               .name = "set-handle-key",
                               .cmd = KYU_CMD_SET_HANDLE_KEY,
                               .encode_items = kyu_op_handle_key_encode,
                               .decode_items = kyu_op_handle_key_decode,
                               .apply = kyu_op_handle_key_apply},
};

/* Command type (the number in log entries) -> row. */
static const uint8_t by_command[] = {
    [KYU_CMD_CREATE_QUEUE] = KYU_OP_CREATE_QUEUE,
    [KYU_CMD_DELETE_QUEUE] = KYU_OP_DELETE_QUEUE,
    [KYU_CMD_SEND] = KYU_OP_SEND,
    [KYU_CMD_RECEIVE] = KYU_OP_RECEIVE,
    [KYU_CMD_DELETE] = KYU_OP_DELETE,
    [KYU_CMD_CHANGE_VISIBILITY] = KYU_OP_CHANGE_VISIBILITY,
    [KYU_CMD_SET_MEMBER] = KYU_OP_SET_MEMBER,
    [KYU_CMD_DROP_MEMBER] = KYU_OP_DROP_MEMBER,
    [KYU_CMD_SET_HANDLE_KEY] = KYU_OP_SET_HANDLE_KEY,
    [KYU_CMD_SET_QUEUE_ATTRIBUTES] = KYU_OP_SET_QUEUE_ATTRIBUTES,
    [KYU_CMD_PURGE_QUEUE] = KYU_OP_PURGE_QUEUE,
};

const kyu_op_row_t *kyu_ops_row(uint64_t op)
{
    if (op >= KYU_OPS_MAX_ || !rows[op].name)
        return NULL;
    return &rows[op];
}

const kyu_op_row_t *kyu_ops_command(uint64_t type)
{
    if (type >= sizeof by_command || !by_command[type])
        return NULL;
    return &rows[by_command[type]];
}
