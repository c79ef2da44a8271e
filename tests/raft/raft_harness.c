/*
 * raft_harness.c - see raft_harness.h.
 */
#include "raft_harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        abort();
    }
    return p;
}

kyu_raft_t *harness_node_new(uint64_t id, const kyu_raft_config_t *base)
{
    kyu_raft_config_t cfg = *base;
    cfg.id = id;
    cfg.random_seed = id * 7919;
    return kyu_raft_new(&cfg);
}

harness_t *harness_new(int n, int n_voters, size_t snapshot_chunk)
{
    harness_t *h = calloc(1, sizeof(*h));
    if (!h)
        abort();
    h->n = n;
    kyu_raft_conf_t conf = {0}, empty = {0};
    for (int i = 1; i <= n_voters; i++)
        conf.voters[conf.n_voters++] = (uint64_t)i;
    for (int i = 1; i <= n; i++) {
        kyu_raft_config_t cfg = {.group = 1,
                                 .election_ticks = H_ELECTION,
                                 .heartbeat_ticks = H_HEARTBEAT,
                                 .max_inflight = 4,
                                 .max_msg_entries = 8,
                                 .snapshot_chunk = snapshot_chunk,
                                 .conf = i <= n_voters ? &conf : &empty};
        h->nodes[i] = harness_node_new((uint64_t)i, &cfg);
        if (!h->nodes[i])
            abort();
    }
    return h;
}

static void free_msg(kyu_raft_msg_t *m)
{
    for (size_t i = 0; i < m->n_entries; i++)
        free(m->entries[i].data);
    free(m->entries);
    free(m->snap_data);
}

void harness_destroy(harness_t **hp)
{
    harness_t *h = *hp;
    for (int i = 1; i <= h->n; i++)
        kyu_raft_destroy(&h->nodes[i]);
    for (size_t i = 0; i < h->n_queue; i++)
        free_msg(&h->queue[i]);
    free(h->queue);
    free(h);
    *hp = NULL;
}

static void enqueue(harness_t *h, const kyu_raft_msg_t *m)
{
    if (h->n_queue == h->cap_queue) {
        h->cap_queue = h->cap_queue ? h->cap_queue * 2 : 64;
        h->queue = realloc(h->queue, h->cap_queue * sizeof(*h->queue));
        if (!h->queue)
            abort();
    }
    kyu_raft_msg_t *c = &h->queue[h->n_queue++];
    *c = *m;
    c->entries = NULL;
    if (m->n_entries) {
        c->entries = xmalloc(m->n_entries * sizeof(*m->entries));
        for (size_t i = 0; i < m->n_entries; i++) {
            c->entries[i] = m->entries[i];
            c->entries[i].data = NULL;
            if (m->entries[i].len) {
                c->entries[i].data = xmalloc(m->entries[i].len);
                memcpy(c->entries[i].data, m->entries[i].data, m->entries[i].len);
            }
        }
    }
    c->snap_data = NULL;
    if (m->snap_len) {
        c->snap_data = xmalloc(m->snap_len);
        memcpy(c->snap_data, m->snap_data, m->snap_len);
    }
}

static bool drain(harness_t *h)
{
    bool any = false;
    for (int i = 1; i <= h->n; i++) {
        kyu_raft_t *r = h->nodes[i];
        while (r && kyu_raft_has_ready(r)) {
            kyu_raft_ready_t rd;
            kyu_raft_ready(r, &rd);
            if (rd.snapshot)
                h->snap_installed[i] = rd.snapshot->index;
            for (size_t k = 0; k < rd.n_msgs; k++) {
                const kyu_raft_msg_t *m = &rd.msgs[k];
                if (m->to >= 1 && m->to <= (uint64_t)h->n && !h->cut[m->from][m->to])
                    enqueue(h, m);
            }
            for (size_t k = 0; k < rd.n_committed; k++)
                h->applied[i] = rd.committed[k].index;
            if (rd.snapshot && rd.snapshot->index > h->applied[i])
                h->applied[i] = rd.snapshot->index;
            kyu_raft_advance(r);
            any = true;
        }
    }
    return any;
}

void harness_stabilize(harness_t *h)
{
    for (int round = 0; round < 10000; round++) {
        bool any = drain(h);
        if (h->n_queue == 0 && !any)
            return;
        kyu_raft_msg_t *q = h->queue;
        size_t n = h->n_queue;
        h->queue = NULL;
        h->n_queue = h->cap_queue = 0;
        for (size_t i = 0; i < n; i++) {
            if (q[i].type < 16)
                h->msgs_seen[q[i].type]++;
            if (q[i].type == KYU_RAFT_MSG_APPEND_RESP && q[i].reject)
                h->rejects_seen++;
            if (h->nodes[q[i].to] && !h->cut[q[i].from][q[i].to])
                kyu_raft_step(h->nodes[q[i].to], &q[i]);
            free_msg(&q[i]);
        }
        free(q);
    }
    fprintf(stderr, "harness: cluster never became quiet\n");
    abort();
}

void harness_tick(harness_t *h, uint64_t id, int ticks)
{
    for (int i = 0; i < ticks; i++)
        kyu_raft_tick(h->nodes[id]);
}

void harness_elect(harness_t *h, uint64_t id)
{
    kyu_raft_t *r = h->nodes[id];
    for (int i = 0; i < 2 * H_ELECTION && kyu_raft_role(r) == KYU_RAFT_FOLLOWER; i++)
        kyu_raft_tick(r);
    harness_stabilize(h);
}

uint64_t harness_propose(harness_t *h, uint64_t id, const char *text)
{
    uint64_t index = 0, leader;
    if (kyu_raft_propose(h->nodes[id], text, strlen(text), &index, &leader) != KYU_RAFT_OK)
        return 0;
    return index;
}

void harness_isolate(harness_t *h, uint64_t id, bool cut)
{
    for (int i = 1; i <= h->n; i++)
        h->cut[id][i] = h->cut[i][id] = cut;
}

size_t harness_drain_one(kyu_raft_t *r, kyu_raft_msg_type_t type, kyu_raft_msg_t *last,
                         kyu_raft_ready_t *seen)
{
    size_t count = 0;
    while (kyu_raft_has_ready(r)) {
        kyu_raft_ready_t rd;
        kyu_raft_ready(r, &rd);
        if (seen) {
            *seen = rd;
            seen->msgs = NULL;
            seen->entries = NULL;
            seen->committed = NULL;
            seen->snapshot = NULL;
        }
        for (size_t i = 0; i < rd.n_msgs; i++) {
            if (rd.msgs[i].type != type)
                continue;
            count++;
            if (last) {
                *last = rd.msgs[i];
                last->entries = NULL;
                last->snap_data = NULL;
            }
        }
        kyu_raft_advance(r);
    }
    return count;
}
