/*
 * fuzz_raft_msg.c - libFuzzer harness (KYU_FUZZ=ON, clang): bytes from a peer are decoded
 * by the codec the broker's transport runs (broker/peer_codec.c) and, when they decode,
 * stepped into a follower and a leader (kyu_raft_step). Neither the decoder nor the core may
 * crash, leak or read out of bounds on any input. The stored corpus (tests/raft/corpus/
 * raft_msg, valid encodings of every message type written by raft_msg_corpus.c, plus what
 * the fuzzer found from them) is replayed by every test run.
 */
#include "peer_codec.h"
#include "raft.h"

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

/* Whatever decodes must encode to bytes that decode to the same message. */
static void check_round_trip(const kyu_raft_msg_t *m)
{
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    kyu_peer_encode(m, &b);
    kyu_peer_decoded_t again;
    kyu_err_t err;
    if (kyu_peer_decode(b.data, b.size, &again, &err) != KYU_OK)
        abort();
    const kyu_raft_msg_t *a = &again.msg;
    if (a->type != m->type || a->term != m->term || a->index != m->index ||
        a->commit != m->commit || a->n_entries != m->n_entries || a->snap_len != m->snap_len ||
        a->reject != m->reject || a->snap_offset != m->snap_offset)
        abort();
    kyu_peer_decoded_reset(&again);
    msgpack_sbuffer_destroy(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kyu_peer_decoded_t d;
    kyu_err_t err;
    if (kyu_peer_decode(data, size, &d, &err) != KYU_OK)
        return 0;
    check_round_trip(&d.msg);
    kyu_raft_t *follower = node(1, false), *leader = node(1, true);
    d.msg.to = 1;
    kyu_raft_step(follower, &d.msg);
    kyu_raft_step(leader, &d.msg);
    drain(follower);
    drain(leader);
    kyu_raft_destroy(&follower);
    kyu_raft_destroy(&leader);
    kyu_peer_decoded_reset(&d);
    return 0;
}
