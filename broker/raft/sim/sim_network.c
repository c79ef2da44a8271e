/*
 * sim_network.c - the simulated network: every message is copied and delivered after a
 * delay the seed picks; it may be dropped, duplicated or delayed long enough to arrive after
 * later ones (reordering); partitions block links, in one direction or both.
 */
#include "sim.h"

#include <stdlib.h>
#include <string.h>

void sim_msg_free(kyu_raft_msg_t *m)
{
    for (size_t i = 0; i < m->n_entries; i++)
        free(m->entries[i].data);
    free(m->entries);
    free(m->snap_data);
    m->entries = NULL;
    m->snap_data = NULL;
    m->n_entries = 0;
}

static void *dup_bytes(const void *p, size_t n)
{
    if (n == 0)
        return NULL;
    void *q = malloc(n);
    if (!q) {
        fprintf(stderr, "kyu-sim: out of memory\n");
        exit(3);
    }
    memcpy(q, p, n);
    return q;
}

static void msg_copy(kyu_raft_msg_t *dst, const kyu_raft_msg_t *src)
{
    *dst = *src;
    dst->entries = NULL;
    if (src->n_entries > 0) {
        dst->entries = dup_bytes(src->entries, src->n_entries * sizeof(*src->entries));
        for (size_t i = 0; i < src->n_entries; i++)
            dst->entries[i].data = dup_bytes(src->entries[i].data, src->entries[i].len);
    }
    dst->snap_data = dup_bytes(src->snap_data, src->snap_len);
}

static void enqueue(sim_network_t *net, uint64_t now, uint64_t at, const kyu_raft_msg_t *m)
{
    if (net->n == net->cap) {
        size_t cap = net->cap ? net->cap * 2 : 256;
        sim_packet_t *p = realloc(net->q, cap * sizeof(*p));
        if (!p) {
            fprintf(stderr, "kyu-sim: out of memory\n");
            exit(3);
        }
        net->q = p;
        net->cap = cap;
    }
    net->q[net->n].deliver_at = at;
    net->q[net->n].sent_at = now;
    msg_copy(&net->q[net->n].m, m);
    net->n++;
}

static uint64_t delay(sim_rng_t *rng, const sim_options_t *o, bool faulty)
{
    if (faulty && sim_rng_chance(rng, o->long_delay_pm))
        return 1 + sim_rng_below(rng, o->long_delay_max);
    return o->delay_min + sim_rng_below(rng, o->delay_max - o->delay_min + 1);
}

void sim_network_send(sim_network_t *net, sim_rng_t *rng, const sim_options_t *o, uint64_t now,
                      const kyu_raft_msg_t *m)
{
    if (m->to == 0 || m->to > (uint64_t)o->nodes)
        return;
    if (net->faulty && sim_rng_chance(rng, o->drop_pm))
        return;
    enqueue(net, now, now + 1 + delay(rng, o, net->faulty), m);
    if (net->faulty && sim_rng_chance(rng, o->dup_pm))
        enqueue(net, now, now + 1 + delay(rng, o, net->faulty), m);
}

size_t sim_network_take_due(sim_network_t *net, sim_rng_t *rng, uint64_t now, sim_packet_t **out)
{
    size_t due = 0;
    for (size_t i = 0; i < net->n; i++)
        if (net->q[i].deliver_at <= now)
            due++;
    *out = NULL;
    if (due == 0)
        return 0;
    sim_packet_t *d = malloc(due * sizeof(*d));
    if (!d) {
        fprintf(stderr, "kyu-sim: out of memory\n");
        exit(3);
    }
    size_t k = 0, j = 0;
    for (size_t i = 0; i < net->n; i++) {
        if (net->q[i].deliver_at <= now)
            d[k++] = net->q[i];
        else
            net->q[j++] = net->q[i];
    }
    net->n = j;
    /* Messages due at the same step arrive in any order. */
    for (size_t i = due; i > 1; i--) {
        size_t r = (size_t)sim_rng_below(rng, i);
        sim_packet_t t = d[i - 1];
        d[i - 1] = d[r];
        d[r] = t;
    }
    *out = d;
    return due;
}

void sim_network_hold_from(sim_network_t *net, uint64_t from, uint64_t now, uint64_t until)
{
    for (size_t i = 0; i < net->n; i++) {
        sim_packet_t *p = &net->q[i];
        if (p->m.from == from && p->sent_at == now && p->deliver_at > now)
            p->deliver_at = until + (p->deliver_at - now);
    }
}

void sim_network_free(sim_network_t *net)
{
    for (size_t i = 0; i < net->n; i++)
        sim_msg_free(&net->q[i].m);
    free(net->q);
    memset(net, 0, sizeof(*net));
}
