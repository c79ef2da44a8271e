/* libFuzzer harness for everything that decodes bytes from a socket or the log: request
 * headers (with every body count), reply headers (what libkyu reads) and log entries (a
 * stream of commands), Raft peer messages and snapshot-transfer frames. Each must return a result
 * or an error for any input, never crash, abort, leak or allocate without bound. Built with
 * -DKYU_FUZZ=ON (clang); replay.c runs the stored corpus through the same function in ordinary test
 * runs. */
#include "command.h"
#include "peer_codec.h"
#include "queue_attrs.h"
#include "snap_codec.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Decoded attributes point into [lo, lo + len); SQS's checks and the digest take any of them. */
static void check_attrs(const kyu_msg_attrs_t *a, const void *lo, size_t len)
{
    const uint8_t *b = lo;
    KYU_ASSERT(a->n <= KYU_MSG_ATTRS_MAX);
    for (size_t i = 0; i < a->n; i++) {
        const kyu_msg_attr_t *at = &a->a[i];
        KYU_ASSERT(at->name_len == 0 || ((const uint8_t *)at->name >= b &&
                                         (const uint8_t *)at->name + at->name_len <= b + len));
        KYU_ASSERT(at->type_len == 0 || ((const uint8_t *)at->type >= b &&
                                         (const uint8_t *)at->type + at->type_len <= b + len));
        KYU_ASSERT(at->value_len == 0 || ((const uint8_t *)at->value >= b &&
                                          (const uint8_t *)at->value + at->value_len <= b + len));
    }
    kyu_err_t err;
    char md5[KYU_MD5_HEX_LEN + 1];
    (void)kyu_msg_attrs_check(a, &err);
    kyu_md5_attrs_hex(a, md5);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kyu_err_t err;
    kyu_request_t req;
    for (size_t bodies = 0; bodies <= KYU_BATCH_MAX + 1; bodies++)
        if (kyu_request_decode(data, size, bodies, &req, &err) == KYU_OK) {
            for (size_t i = 0; i < req.n_attr_msgs; i++)
                check_attrs(&req.attrs[i], data, size);
            /* fields above bit 31: each entry's timeout, one per handle; a total credit */
            KYU_ASSERT(!(req.fields & KYU_F_ENTRY_VTS) ||
                       (req.op == KYU_OP_CHANGE_VISIBILITY && req.n_entry_vts == req.n_handles &&
                        !(req.fields & KYU_F_VT)));
            KYU_ASSERT(!(req.fields & KYU_F_CREDIT_TOTAL) ||
                       (req.credit_total >= 1 && req.credit_total <= KYU_WORKER_CREDIT_MAX));
            KYU_ASSERT((req.fields & ~(KYU_F_LAST_ | (KYU_F_LAST_ - 1))) == 0);
        }

    kyu_reply_t rep;
    kyu_reply_init(&rep);
    if (kyu_reply_decode(data, size, &rep, &err) == KYU_OK) {
        for (size_t i = 0; i < KYU_BATCH_MAX; i++)
            check_attrs(&rep.msgs[i].attrs, rep.header, size);
        for (size_t i = 0; i < rep.n_msgs; i++)
            KYU_ASSERT(rep.msgs[i].state <= KYU_MSG_DELAYED);
        KYU_ASSERT(rep.n_tasks <= KYU_MOVE_TASKS_MAX);
        for (size_t i = 0; i < rep.n_tasks; i++)
            KYU_ASSERT(rep.tasks[i].status <= KYU_MOVE_FAILED);
    }
    kyu_reply_reset(&rep);

    size_t off = 0;
    kyu_command_t cmd;
    while (off < size && kyu_command_decode(data, size, &off, &cmd, &err) == KYU_OK) {
        for (size_t i = 0; i < cmd.n && cmd.type == KYU_CMD_SEND; i++) {
            if (cmd.entry_code[i]) { /* a batch's failed entry: a code, no message */
                KYU_ASSERT(cmd.entry_code[i] < KYU_ERR_CODE_COUNT && cmd.body_lens[i] == 0);
                continue;
            }
            KYU_ASSERT((const uint8_t *)cmd.bodies[i] >= data &&
                       (const uint8_t *)cmd.bodies[i] + cmd.body_lens[i] <= data + size);
            KYU_ASSERT(cmd.msg_delay_ms[i] <= KYU_DELIVER_AT_MAX_S * 1000ull);
            check_attrs(&cmd.attrs[i], data, size);
        }
        /* PUBLISH: each message inside the entry; a FIFO topic's (5 elements) with both ids,
         * a standard topic's (3, or 4 with a group) never a deduplication id */
        for (size_t i = 0; i < cmd.n && cmd.type == KYU_CMD_PUBLISH; i++) {
            if (cmd.entry_code[i]) {
                KYU_ASSERT(cmd.entry_code[i] < KYU_ERR_CODE_COUNT && cmd.body_lens[i] == 0);
                continue;
            }
            KYU_ASSERT((const uint8_t *)cmd.bodies[i] >= data &&
                       (const uint8_t *)cmd.bodies[i] + cmd.body_lens[i] <= data + size);
            KYU_ASSERT(cmd.topic_fifo ? cmd.group_ids[i][0] && cmd.dedup_ids[i][0]
                                      : !cmd.dedup_ids[i][0]);
            check_attrs(&cmd.attrs[i], data, size);
        }
        if (cmd.type == KYU_CMD_CREATE_QUEUE || cmd.type == KYU_CMD_SET_QUEUE_ATTRIBUTES) {
            KYU_ASSERT(cmd.max_size <= KYU_MAX_SIZE_MAX && cmd.delay <= KYU_DELAY_MAX);
            /* The other attributes: inside the entry, and in their ranges. */
            KYU_ASSERT(!cmd.qx_set || ((const uint8_t *)cmd.qx_mp >= data &&
                                       (const uint8_t *)cmd.qx_mp + cmd.qx_len <= data + size));
            kyu_queue_ext_t *x = cmd.qx_set ? malloc(sizeof *x) : NULL;
            uint64_t set = 0;
            KYU_ASSERT(!cmd.qx_set ||
                       (x && kyu_qattrs_decode(cmd.qx_mp, cmd.qx_len, x, &set) &&
                        set == cmd.qx_set && kyu_qattrs_check(x, set, &err) == KYU_OK));
            free(x);
        }
        KYU_ASSERT(!cmd.has_handle_vt || cmd.type == KYU_CMD_CHANGE_VISIBILITY);
        for (size_t i = 0; cmd.has_handle_vt && i < cmd.n; i++)
            KYU_ASSERT(cmd.handle_vt[i] <= KYU_VISIBILITY_MAX &&
                       cmd.entry_code[i] < KYU_ERR_CODE_COUNT);
        if (cmd.type == KYU_CMD_START_MOVE_TASK)
            KYU_ASSERT(cmd.move_rate <= KYU_MOVE_RATE_MAX);
        if (cmd.type == KYU_CMD_REDRIVE_STEP)
            KYU_ASSERT(cmd.move_max >= 1 && cmd.move_max <= KYU_REDRIVE_STEP_MAX);
        if (cmd.type == KYU_CMD_PURGE_QUEUE)
            KYU_ASSERT(cmd.n == 0 && cmd.max_inflight == 0);
        if (cmd.type == KYU_CMD_SET_MEMBER)
            KYU_ASSERT(cmd.member_id >= 1 && cmd.member_id <= INT64_MAX && cmd.member_raft[0] &&
                       cmd.member_client[0]);
    }

    kyu_peer_decoded_t peer;
    if (kyu_peer_decode(data, size, &peer, &err) == KYU_OK) {
        for (size_t i = 0; i < peer.msg.n_entries; i++)
            KYU_ASSERT(peer.msg.entries[i].len == 0 ||
                       ((const uint8_t *)peer.msg.entries[i].data >= data &&
                        (const uint8_t *)peer.msg.entries[i].data + peer.msg.entries[i].len <=
                            data + size));
        kyu_peer_decoded_reset(&peer);
    }

    kyu_snap_msg_t snap;
    if (kyu_snap_decode(data, size, &snap, &err) == KYU_OK) {
        KYU_ASSERT(snap.len == 0 || (snap.data >= data && snap.data + snap.len <= data + size));
        for (size_t i = 0; i < snap.n_files; i++)
            KYU_ASSERT(kyu_snap_name_ok(snap.files[i].name));
    }
    kyu_snap_reset(&snap);
    return 0;
}
