/*
 * raft_msg_corpus.c - writes the seed corpus of the Raft message fuzz harness: valid
 * encodings (by broker/peer_codec.c, the codec the broker runs) of every message type, in
 * the variants the harness's follower and leader (node 1 of {1, 2, 3}, log 1..3 at terms
 * 1, 1, 2, term 2) treat differently: older, equal and newer terms, rejections, appends
 * that match, conflict or leave a gap, every InstallSnapshot chunk position.
 *
 *   build/broker/raft/raft_msg_corpus tests/raft/corpus/raft_msg
 *
 * The files are named for the message (seed-<type>-<variant>); what libFuzzer adds when
 * run from them (see broker/raft/CMakeLists.txt) is named by its hash.
 */
#include "peer_codec.h"
#include "raft.h"

#include <stdio.h>
#include <stdlib.h>

static const char *dir;
static int written;

static void write_msg(const char *variant, const kyu_raft_msg_t *m)
{
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    kyu_peer_encode(m, &b);
    char path[4096];
    snprintf(path, sizeof path, "%s/seed-%s-%s", dir, kyu_raft_msg_type_name(m->type), variant);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(b.data, 1, b.size, f) != b.size || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
    msgpack_sbuffer_destroy(&b);
    written++;
}

static kyu_raft_msg_t msg(kyu_raft_msg_type_t type, uint64_t term)
{
    kyu_raft_msg_t m = {.type = type, .group = 1, .from = 2, .to = 1, .term = term};
    return m;
}

static void appends(void)
{
    static uint8_t data[] = "a client batch";
    uint8_t conf[64];
    kyu_raft_conf_t c = {.n_voters = 3, .voters = {1, 2, 3}, .n_learners = 1, .learners = {4}};
    size_t conf_len = kyu_raft_conf_encode(&c, conf, sizeof conf);
    kyu_raft_entry_t ents[3] = {
        {.term = 3, .index = 4, .type = KYU_RAFT_ENTRY_NOOP},
        {.term = 3, .index = 5, .type = KYU_RAFT_ENTRY_NORMAL, .data = data, .len = sizeof data},
        {.term = 3, .index = 6, .type = KYU_RAFT_ENTRY_CONF, .data = conf, .len = conf_len},
    };
    kyu_raft_msg_t m = msg(KYU_RAFT_MSG_APPEND, 3);
    m.index = 3, m.log_term = 2, m.commit = 3;
    write_msg("empty", &m);
    m.entries = ents, m.n_entries = 3, m.commit = 5;
    write_msg("matching", &m);
    m.log_term = 1; /* conflicts with the follower's entry 3 */
    write_msg("conflict", &m);
    m.index = 9, m.log_term = 3; /* beyond the follower's log */
    for (int i = 0; i < 3; i++)
        ents[i].index = 10 + (uint64_t)i;
    write_msg("gap", &m);
    m = msg(KYU_RAFT_MSG_APPEND, 1);
    m.index = 1, m.log_term = 1, m.commit = 1;
    write_msg("stale-term", &m);
}

static void answers(void)
{
    kyu_raft_msg_t m = msg(KYU_RAFT_MSG_APPEND_RESP, 3);
    m.index = 3;
    write_msg("ack", &m);
    m.index = 99;
    write_msg("ack-beyond-log", &m);
    m.index = 2, m.reject = true, m.reject_hint = 1, m.log_term = 1;
    write_msg("reject-hint", &m);
    m = msg(KYU_RAFT_MSG_HEARTBEAT, 3);
    m.commit = 3;
    write_msg("commit", &m);
    m = msg(KYU_RAFT_MSG_HEARTBEAT_RESP, 3);
    m.index = 3;
    write_msg("caught-up", &m);
    m.index = 0;
    write_msg("lost-log", &m);
}

static void votes(void)
{
    kyu_raft_msg_type_t types[] = {KYU_RAFT_MSG_VOTE, KYU_RAFT_MSG_PRE_VOTE};
    for (int i = 0; i < 2; i++) {
        kyu_raft_msg_t m = msg(types[i], 4);
        m.index = 3, m.log_term = 2;
        write_msg("up-to-date", &m);
        m.index = 1, m.log_term = 1;
        write_msg("behind", &m);
        m.index = 3, m.log_term = 2, m.force = true;
        write_msg("forced", &m);
    }
    kyu_raft_msg_type_t resps[] = {KYU_RAFT_MSG_VOTE_RESP, KYU_RAFT_MSG_PRE_VOTE_RESP};
    for (int i = 0; i < 2; i++) {
        kyu_raft_msg_t m = msg(resps[i], 3);
        write_msg("granted", &m);
        m.reject = true;
        write_msg("rejected", &m);
    }
    kyu_raft_msg_t m = msg(KYU_RAFT_MSG_TIMEOUT_NOW, 2);
    write_msg("current-term", &m);
}

static void snapshots(void)
{
    static uint8_t state[24] = "the state machine bytes";
    kyu_raft_msg_t m = msg(KYU_RAFT_MSG_SNAPSHOT, 3);
    m.index = 10, m.log_term = 3, m.snap_total = sizeof state;
    m.snap_conf = (kyu_raft_conf_t){.n_voters = 3, .voters = {1, 2, 3}};
    m.snap_data = state, m.snap_len = 8;
    write_msg("first-chunk", &m);
    m.snap_offset = 8, m.snap_data = state + 8;
    write_msg("middle-chunk", &m);
    m.snap_offset = 16, m.snap_data = state + 16;
    write_msg("last-chunk", &m);
    m.snap_offset = 0, m.snap_data = state, m.snap_len = sizeof state;
    write_msg("whole", &m);
    m.index = 2, m.log_term = 1; /* older than the follower's commit */
    write_msg("stale", &m);
    m = msg(KYU_RAFT_MSG_SNAPSHOT_RESP, 2);
    m.index = 10, m.snap_offset = 8;
    write_msg("next-offset", &m);
    m.reject = true, m.snap_offset = 0;
    write_msg("restart", &m);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
        return 64;
    }
    dir = argv[1];
    appends();
    answers();
    votes();
    snapshots();
    printf("wrote %d seed messages to %s\n", written, dir);
    return 0;
}
