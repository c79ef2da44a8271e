/*
 * test_raft_hostile.c - a core survives whatever a peer (or a corrupted network) can send:
 * random message types, senders, terms, indexes, commit indexes, entry lists and snapshot
 * chunks, stepped into leaders and followers of a live cluster. Raft trusts its peers for
 * safety, but no input may crash the broker.
 */
#include "raft_harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

static uint64_t rnd(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* A number near the interesting ones: 0, the reference, just above or below it, a little
 * further off, and now and then anything at all. */
static uint64_t pick_near(uint64_t *s, uint64_t ref)
{
    uint64_t k = rnd(s) % 400;
    if (k == 0)
        return rnd(s);
    k %= 40;
    if (k < 2)
        return 0;
    if (k < 14)
        return ref;
    if (k < 24)
        return ref + 1;
    if (k < 30)
        return ref ? ref - 1 : 0;
    uint64_t d = rnd(s) % 8;
    return k % 2 ? ref + d : (ref > d ? ref - d : 0);
}

static void random_message(uint64_t *s, harness_t *h, uint64_t to, kyu_raft_msg_t *m,
                           kyu_raft_entry_t *ents, uint8_t *data)
{
    kyu_raft_t *r = h->nodes[to];
    uint64_t term = kyu_raft_term(r), last = kyu_raft_last_index(r);
    memset(m, 0, sizeof(*m));
    m->type = (kyu_raft_msg_type_t)(rnd(s) % 13);
    m->group = rnd(s) % 8 ? 1 : 2;
    m->from = rnd(s) % (H_MAX + 2);
    m->to = to;
    m->term = pick_near(s, term);
    m->log_term = pick_near(s, term);
    m->index = pick_near(s, last);
    if (rnd(s) % 2)
        m->log_term = kyu_raft_term_at(r, m->index); /* a matching append */
    m->commit = pick_near(s, last);
    m->reject = rnd(s) % 2;
    m->reject_hint = pick_near(s, last);
    m->force = rnd(s) % 4 == 0;
    m->n_entries = rnd(s) % 4;
    m->entries = m->n_entries ? ents : NULL;
    bool valid_chain = rnd(s) % 2;
    for (size_t i = 0; i < m->n_entries; i++) {
        ents[i].index = valid_chain ? m->index + 1 + i : pick_near(s, last);
        ents[i].term = valid_chain ? m->term : pick_near(s, term);
        ents[i].type = (kyu_raft_entry_type_t)(rnd(s) % 4);
        ents[i].len = rnd(s) % 3 == 0 ? 0 : rnd(s) % 24;
        ents[i].data = ents[i].len ? data : NULL;
    }
    m->snap_offset = pick_near(s, 16);
    m->snap_total = pick_near(s, 32);
    m->snap_len = rnd(s) % 40;
    m->snap_data = m->snap_len ? data : NULL;
    m->snap_conf.n_voters = (uint32_t)(rnd(s) % 4);
    for (uint32_t i = 0; i < m->snap_conf.n_voters; i++)
        m->snap_conf.voters[i] = 1 + rnd(s) % H_MAX;
}

static void test_core_survives_random_peer_messages(void **state)
{
    (void)state;
    uint8_t data[64];
    kyu_raft_conf_t conf = {.n_voters = 2, .voters = {1, 2}};
    size_t clen = kyu_raft_conf_encode(&conf, data, sizeof(data));
    assert_true(clen > 0); /* data begins with a valid conf payload: some entries decode */
    for (uint64_t seed = 1; seed <= 20; seed++) {
        harness_t *h = harness_new(3, 3, 16);
        harness_elect(h, 1);
        for (int i = 0; i < 10; i++)
            harness_propose(h, 1, "some entry");
        harness_stabilize(h);
        uint64_t s = seed;
        kyu_raft_entry_t ents[4];
        for (int round = 0; round < 2000; round++) {
            uint64_t to = 1 + rnd(&s) % 3;
            kyu_raft_msg_t m;
            random_message(&s, h, to, &m, ents, data);
            kyu_raft_step(h->nodes[to], &m);
            if (rnd(&s) % 8 == 0)
                kyu_raft_tick(h->nodes[to]);
            if (rnd(&s) % 16 == 0 && kyu_raft_applied(h->nodes[to]) >= 1)
                kyu_raft_compact(h->nodes[to], kyu_raft_applied(h->nodes[to]), "s", 1);
            harness_drain_one(h->nodes[to], KYU_RAFT_MSG_APPEND, NULL, NULL);
        }
        harness_destroy(&h);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_core_survives_random_peer_messages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
