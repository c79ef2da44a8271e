/*
 * fuzz_raft_msg.c - libFuzzer harness (KYU_FUZZ=ON, clang): bytes from a peer are decoded
 * by the codec and, when they decode, stepped into a follower and a leader. Neither the
 * decoder nor the core may crash, leak or read out of bounds on any input.
 */
#include "raft.h"
#include "raft_codec.h"

#include <stdlib.h>
#include <string.h>

static kyu_raft_t *node(uint64_t id, bool lead)
{
    kyu_raft_conf_t conf = {.n_voters = 3, .voters = {1, 2, 3}};
    kyu_raft_entry_t ents[3] = {
        {.term = 1, .index = 1}, {.term = 1, .index = 2}, {.term = 2, .index = 3}};
    kyu_raft_config_t cfg = {.id = id,
                             .group = 1,
                             .election_ticks = 10,
                             .heartbeat_ticks = 1,
                             .hard_state = {.term = 2, .commit = 2},
                             .conf = &conf,
                             .entries = ents,
                             .n_entries = 3,
                             .snapshot_chunk = 8};
    kyu_raft_t *r = kyu_raft_new(&cfg);
    if (!r)
        abort();
    if (lead) {
        /* Campaign and win with one granted vote from node 2. */
        for (int i = 0; i < 20 && kyu_raft_role(r) == KYU_RAFT_FOLLOWER; i++)
            kyu_raft_tick(r);
        kyu_raft_msg_t pre = {.type = KYU_RAFT_MSG_PRE_VOTE_RESP,
                              .group = 1,
                              .from = 2,
                              .to = id,
                              .term = kyu_raft_term(r) + 1};
        kyu_raft_step(r, &pre);
        kyu_raft_msg_t vote = {.type = KYU_RAFT_MSG_VOTE_RESP,
                               .group = 1,
                               .from = 2,
                               .to = id,
                               .term = kyu_raft_term(r)};
        kyu_raft_step(r, &vote);
    }
    return r;
}

static void drain(kyu_raft_t *r)
{
    while (kyu_raft_has_ready(r)) {
        kyu_raft_ready_t rd;
        kyu_raft_ready(r, &rd);
        kyu_raft_advance(r);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kyu_raft_msg_t m;
    if (!kyu_raft_msg_decode(data, size, &m))
        return 0;
    /* Whatever decodes must encode and decode to the same message. */
    uint8_t *buf;
    size_t len;
    if (!kyu_raft_msg_encode(&m, &buf, &len))
        abort();
    kyu_raft_msg_t again;
    if (!kyu_raft_msg_decode(buf, len, &again) || again.type != m.type || again.term != m.term ||
        again.n_entries != m.n_entries || again.snap_len != m.snap_len)
        abort();
    kyu_raft_msg_decoded_free(&again);
    free(buf);
    kyu_raft_t *follower = node(1, false), *leader = node(1, true);
    m.to = 1;
    kyu_raft_step(follower, &m);
    kyu_raft_step(leader, &m);
    drain(follower);
    drain(leader);
    kyu_raft_destroy(&follower);
    kyu_raft_destroy(&leader);
    kyu_raft_msg_decoded_free(&m);
    return 0;
}
