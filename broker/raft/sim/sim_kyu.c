/*
 * sim_kyu.c - kyu-sim-kyu's per-seed and per-node state: every node keeps a real store and
 * state machine (the replica applies to them, sim_kyu_node.c); this file opens and closes
 * them, takes them back to their last sync on a power loss, observes every entry the replica
 * applies (the Raft-level checks, result agreement, the oracle's stream) and compares states
 * by digest.
 *
 * A crash is a process crash (the state database keeps what its tables hold: its writes
 * carry no WAL, so the memtables are lost, kyu_store_crash; the log writes the simulated disk
 * had not finished are lost too) or, in some seeds, a power loss: the state database goes
 * back to its tables as they were at the last log compaction (the broker compacts its log
 * only up to them, log.c; the simulated disk's compaction takes the checkpoint) or at an
 * install (the fetched files are fsynced); the log must still hold everything after it. States are
 * compared by a digest of every key and value of the state database, at every
 * digest_every-th index and at every installed state.
 */
#include "sim_kyu.h"

#include <sodium.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static sk_t *sk(sim_cluster_t *c)
{
    return c->app_state;
}

void sk_format_id(char out[KYU_UUID_LEN + 1], uint64_t n)
{
    snprintf(out, KYU_UUID_LEN + 1, "00000000-0000-4000-8000-%012llx", (unsigned long long)n);
}

/* The copies' ids (a run makes a few hundred): open addressing, by the id's hash. */
static struct sk_copy {
    char id[KYU_UUID_LEN + 1];
    uint64_t n;
} * copies;
static size_t copies_cap, copies_n;

static struct sk_copy *copy_slot(struct sk_copy *tab, size_t cap, const char *id)
{
    size_t i = (size_t)sim_hash(id, strlen(id), 0x636f7079) & (cap - 1);
    while (tab[i].n && strcmp(tab[i].id, id) != 0)
        i = (i + 1) & (cap - 1);
    return &tab[i];
}

static uint64_t parse_with(const char *id, const char *prefix)
{
    if (strlen(id) != KYU_UUID_LEN || strncmp(id, prefix, 24) != 0)
        return 0;
    return strtoull(id + 24, NULL, 16);
}

uint64_t sk_parse_id(const char *id)
{
    uint64_t n = parse_with(id, "00000000-0000-4000-8000-");
    if (n || !copies_cap)
        return n;
    return copy_slot(copies, copies_cap, id)->n;
}

void sk_format_sub_id(char out[KYU_UUID_LEN + 1], uint64_t n)
{
    snprintf(out, KYU_UUID_LEN + 1, "00000000-0000-4000-a000-%012llx", (unsigned long long)n);
}

void sk_format_pub_id(char out[KYU_UUID_LEN + 1], uint64_t n)
{
    snprintf(out, KYU_UUID_LEN + 1, "00000000-0000-4000-b000-%012llx", (unsigned long long)n);
}

uint64_t sk_parse_sub_id(const char *id)
{
    return parse_with(id, "00000000-0000-4000-a000-");
}

uint64_t sk_parse_pub(const char *id)
{
    return parse_with(id, "00000000-0000-4000-b000-");
}

void sk_copy_register(const char *pub_id, const char *sub_id, uint64_t n)
{
    /* op_topic.c's copy_id: BLAKE2b of the publish's id (with its NUL) and the
     * subscription's, in a version 4 UUID's shape. */
    uint8_t h[16];
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, sizeof h);
    crypto_generichash_update(&st, (const uint8_t *)pub_id, strlen(pub_id) + 1);
    crypto_generichash_update(&st, (const uint8_t *)sub_id, strlen(sub_id));
    crypto_generichash_final(&st, h, sizeof h);
    h[6] = (uint8_t)((h[6] & 0x0f) | 0x40);
    h[8] = (uint8_t)((h[8] & 0x3f) | 0x80);
    char id[KYU_UUID_LEN + 1];
    snprintf(id, sizeof id, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9], h[10], h[11], h[12], h[13],
             h[14], h[15]);
    if (2 * (copies_n + 1) > copies_cap) {
        size_t cap = copies_cap ? 2 * copies_cap : 1024;
        struct sk_copy *tab = calloc(cap, sizeof(*tab));
        KYU_ASSERT(tab);
        for (size_t i = 0; i < copies_cap; i++)
            if (copies[i].n)
                *copy_slot(tab, cap, copies[i].id) = copies[i];
        free(copies);
        copies = tab;
        copies_cap = cap;
    }
    struct sk_copy *x = copy_slot(copies, copies_cap, id);
    if (!x->n)
        copies_n++;
    snprintf(x->id, sizeof x->id, "%s", id);
    x->n = n;
}

void sk_copies_reset(void)
{
    free(copies);
    copies = NULL;
    copies_cap = copies_n = 0;
}

static const kyu_cf_t state_cfs[] = {KYU_CF_META, KYU_CF_QUEUES, KYU_CF_MESSAGES, KYU_CF_LEASES,
                                     KYU_CF_VISIBILITY};

void sk_flush(sk_node_t *kn)
{
    kyu_err_t err;
    if (kyu_sm_flush(kn->sm, &err) != KYU_OK) {
        fprintf(stderr, "kyu-sim-kyu: node %llu: %s\n", (unsigned long long)kn->nd->id, err.msg);
        exit(3);
    }
}

/* The chain at an index the state may open at: a recent applied one, or the one it opened
 * at. */
bool sk_chain_of(sk_node_t *kn, uint64_t p, uint64_t *chain)
{
    if (p == kn->nd->sm_applied)
        *chain = kn->nd->sm_chain;
    else if (kn->chain_index[p % SK_CHAINS] == p && p > 0)
        *chain = kn->chain_at[p % SK_CHAINS];
    else if (p == kn->base_index)
        *chain = kn->base_chain;
    else
        return false;
    return true;
}

uint64_t sk_state_digest(sk_node_t *kn)
{
    sk_flush(kn);
    uint64_t h = 0x6b7975;
    for (size_t i = 0; i < sizeof(state_cfs) / sizeof(state_cfs[0]); i++) {
        rocksdb_iterator_t *it = rocksdb_create_iterator_cf(kyu_store_db(kn->store, state_cfs[i]),
                                                            kyu_store_readopts(kn->store),
                                                            kyu_store_cf(kn->store, state_cfs[i]));
        for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
            size_t kl = 0, vl = 0;
            const char *key = rocksdb_iter_key(it, &kl);
            const char *v = rocksdb_iter_value(it, &vl);
            h = sim_mix(h, sim_hash(key, kl, i));
            h = sim_mix(h, sim_hash(v, vl, kl));
        }
        rocksdb_iter_destroy(it);
        h = sim_mix(h, i);
    }
    return h ? h : 1;
}

uint64_t *sk_state_messages(sim_cluster_t *c, sk_node_t *kn, size_t *n)
{
    (void)c;
    sk_flush(kn);
    size_t cap = 64;
    uint64_t *out = malloc(cap * sizeof(*out));
    KYU_ASSERT(out);
    *n = 0;
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(kyu_store_db(kn->store, KYU_CF_MESSAGES),
                                                        kyu_store_readopts(kn->store),
                                                        kyu_store_cf(kn->store, KYU_CF_MESSAGES));
    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t vl = 0, kl = 0;
        (void)rocksdb_iter_key(it, &kl);
        if (kl != 16)
            continue; /* a moved message's provenance record (qid seq 'd'), not a message */
        const char *v = rocksdb_iter_value(it, &vl);
        char id[KYU_UUID_LEN + 1] = "";
        /* id_len without its flag bits, 0x80 (attributes) and 0x40 (digests) (sm.c's key
         * layout) */
        size_t idlen = vl >= 9 ? (uint8_t)v[8] & 0x3f : 0, at = 9;
        if (idlen == 0x3f && vl >= 10) { /* MSG_REC_EXT: the length next (a FIFO message) */
            idlen = (uint8_t)v[9];
            at = 10;
        }
        if (idlen == KYU_UUID_LEN && vl >= at + idlen)
            memcpy(id, v + at, idlen);
        if (*n == cap) {
            cap *= 2;
            out = realloc(out, cap * sizeof(*out));
            KYU_ASSERT(out);
        }
        out[(*n)++] = sk_parse_id(id);
    }
    rocksdb_iter_destroy(it);
    return out;
}

/* Records the digest of a state at index, or compares it with the one recorded there. */
void sk_check_digest(sim_cluster_t *c, sim_node_t *nd, uint64_t index, const char *how)
{
    sk_t *k = sk(c);
    sk_index_t *x = sk_index(k, index);
    uint64_t d = sk_state_digest(nd->app);
    k->digests++;
    if (x->digest && x->digest != d)
        sim_violation(c, SIM_SAFETY,
                      "state agreement: node %llu's state at index %llu (%s) differs from "
                      "another node's state at that index",
                      (unsigned long long)nd->id, (unsigned long long)index, how);
    x->digest = d;
}

/* A checkpoint of node's state database into dir (replaced). */
bool sk_checkpoint(sk_node_t *kn, const char *dir, uint64_t flush_above)
{
    kyu_store_remove_tree(dir);
    char *rerr = NULL;
    rocksdb_checkpoint_t *cp =
        rocksdb_checkpoint_object_create(kyu_store_db(kn->store, KYU_CF_META), &rerr);
    if (!rerr)
        rocksdb_checkpoint_create(cp, dir, flush_above, &rerr);
    if (cp)
        rocksdb_checkpoint_object_destroy(cp);
    if (rerr) {
        fprintf(stderr, "kyu-sim-kyu: checkpoint into %s: %s\n", dir, rerr);
        free(rerr);
        kyu_store_remove_tree(dir);
        return false;
    }
    return true;
}

/* The state is durable as it is now (a sync): remembered for a power loss. */
void sk_mark_synced(sim_cluster_t *c, sim_node_t *nd)
{
    sk_node_t *kn = nd->app;
    if (!sk(c)->power_loss_pm)
        return;
    /* A checkpoint without a flush: hard links to the tables (the state's writes carry no
     * WAL), which hold the state at their durable index (read before and after: a flush
     * between would move it; taken again then). */
    uint64_t before = 0, after = 0;
    kyu_err_t err;
    do {
        if (kyu_store_state_durable(kn->store, &before, &err) != KYU_OK ||
            !(kn->synced = sk_checkpoint(kn, kn->synced_dir, UINT64_MAX)) ||
            kyu_store_state_durable(kn->store, &after, &err) != KYU_OK) {
            kn->synced = false;
            return;
        }
    } while (before != after);
    kn->synced_index = after;
    if (!sk_chain_of(kn, after, &kn->synced_chain)) {
        fprintf(stderr, "kyu-sim-kyu: node %llu: no chain known at its durable index %llu\n",
                (unsigned long long)kn->nd->id, (unsigned long long)after);
        exit(3);
    }
}

/* ---- hooks ---- */

static bool seed_begin(sim_cluster_t *c)
{
    if (c->o.plant == 2 || c->o.plant > SK_PLANT_NO_SYNC) {
        fprintf(stderr,
                "kyu-sim-kyu: bug %u is not chosen at run time: run kyu-sim-kyu-planted%u\n",
                c->o.plant, c->o.plant);
        return false;
    }
    sk_t *k = calloc(1, sizeof(*k));
    if (!k)
        return false;
    c->app_state = k;
    const char *base = getenv("KYU_SIM_DIR");
    if (!base || !*base)
        base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(k->root, sizeof(k->root), "%s/kyu-sim-kyu.%ld.%llu", base, (long)getpid(),
             (unsigned long long)c->o.seed);
    kyu_store_remove_tree(k->root);
    if (mkdir(k->root, 0700) != 0) {
        fprintf(stderr, "kyu-sim-kyu: cannot create %s: %s\n", k->root, strerror(errno));
        return false;
    }
    /* The run's own stream decides the workload's settings, after the options. */
    sim_rng_t rng = {c->o.seed ^ 0x6b79752d6b7975ull};
    k->ms_per_step = 10 + (uint32_t)sim_rng_below(&rng, 191);
    bool skewed = sim_rng_chance(&rng, 500);
    for (int i = 1; i <= c->n; i++)
        k->skew[i] = skewed ? (int64_t)sim_rng_below(&rng, 4001) - 2000 : 0;
    /* A digest writes the state machine's buffer to its database (sk_flush): rare digests
     * leave many entries buffered, so that crashes take nodes back further (sm_buffer.c). */
    static const uint32_t every[] = {1, 4, 64, 1000};
    k->digest_every = every[sim_rng_below(&rng, 4)];
    k->power_loss_pm = sim_rng_chance(&rng, 500) ? 200 + (uint32_t)sim_rng_below(&rng, 801) : 0;
    k->stall_pm = sim_rng_chance(&rng, 500) ? 1 + (uint32_t)sim_rng_below(&rng, 10) : 0;
    k->slow_node = sim_rng_chance(&rng, 400) ? 1 + sim_rng_below(&rng, (uint64_t)c->n) : 0;
    /* Small entries and budgets in some seeds: requests are refused BUSY and retried. */
    if (sim_rng_chance(&rng, 300)) {
        k->entry_max = 256 + (size_t)sim_rng_below(&rng, 2048);
        k->bytes_max = k->entry_max * (2 + (size_t)sim_rng_below(&rng, 6));
    }
    /* Entries the state machine buffers (0: the replica's default, half the log window). */
    static const uint32_t write_every[] = {0, 1, 16, 1024};
    k->write_every = write_every[sim_rng_below(&rng, 4)];
    k->pause_pm = sim_rng_chance(&rng, 500) ? 5 + (uint32_t)sim_rng_below(&rng, 46) : 0;
    k->every_read = sim_rng_chance(&rng, 700);
    /* --write-now: the loop's own writes (a follower's small rounds, replica.c write_here)
     * in half the seeds; drawn last, so that the settings above are the same either way. */
    k->write_now = c->o.write_now && sim_rng_chance(&rng, 500);
    if (c->o.scenario == SIM_SCENARIO_DEPOSED) {
        /* Leaders pause in every seed, one scenario after another (none starts while one
         * plays), and a node steps its backlog one message at a time with its Ready loop
         * between (the chain of docs/RAFT.md's bug 8 needs both). */
        k->pause_pm = 100;
        k->every_read = true;
    }
    for (int i = 0; i < c->n; i++) {
        c->nodes[i].app = &k->nodes[i];
        k->nodes[i].c = c;
        k->nodes[i].nd = &c->nodes[i];
        snprintf(k->nodes[i].dir, sizeof(k->nodes[i].dir), "%s/n%d", k->root, i + 1);
        snprintf(k->nodes[i].synced_dir, sizeof(k->nodes[i].synced_dir), "%s/n%d.synced", k->root,
                 i + 1);
    }
    if (c->o.verbose)
        printf("  kyu: ms_per_step=%u skew=%s digest_every=%u write_every=%u power_loss=%u "
               "disk_stall=%u slow_disk=n%llu pause=%u every_read=%d write_now=%d entry_max=%zu "
               "bytes_max=%zu plant=%u scenario=%u dir=%s\n",
               k->ms_per_step, skewed ? "on" : "off", k->digest_every, k->write_every,
               k->power_loss_pm, k->stall_pm, (unsigned long long)k->slow_node, k->pause_pm,
               k->every_read, k->write_now, k->entry_max, k->bytes_max, c->o.plant, c->o.scenario,
               k->root);
    return true;
}

void sk_state_release(sk_node_t *kn)
{
    kyu_sm_destroy(&kn->sm);
    kyu_store_close(&kn->store);
}

/* A crash (the memtables lost: RocksDB keeps what its tables hold); now and then a power loss,
 * which takes the state back to its last sync. */
void sk_state_close(sim_cluster_t *c, sim_node_t *nd)
{
    sk_t *k = sk(c);
    sk_node_t *kn = nd->app;
    kn->crashed = true;
    kn->open_lo = kyu_sm_durable_index(kn->sm);
    kn->open_hi = kyu_sm_persisted_index(kn->sm);
    kyu_sm_destroy(&kn->sm);
    kyu_store_crash(&kn->store);
    if (!kn->synced || !sim_rng_chance(&c->rng, k->power_loss_pm))
        return;
    char state[400];
    snprintf(state, sizeof(state), "%s/state", kn->dir);
    kyu_store_remove_tree(state);
    if (rename(kn->synced_dir, state) != 0) {
        fprintf(stderr, "kyu-sim-kyu: power loss of node %llu: %s\n", (unsigned long long)nd->id,
                strerror(errno));
        exit(3);
    }
    kn->synced = false; /* taken again at the next open */
    k->power_losses++;
    sim_trace(&c->trace, c->now, "n%llu POWER LOSS: its state goes back from %llu-%llu to %llu",
              (unsigned long long)nd->id, (unsigned long long)kn->open_lo,
              (unsigned long long)kn->open_hi, (unsigned long long)kn->synced_index);
    kn->open_lo = kn->open_hi = kn->synced_index;
    nd->sm_applied = kn->synced_index;
    nd->sm_chain = kn->synced_chain;
}

static void seed_end(sim_cluster_t *c)
{
    sk_t *k = sk(c);
    if (!k)
        return;
    for (int i = 0; i < c->n; i++)
        if (c->nodes[i].app)
            sk_node_stop(c, &c->nodes[i]);
    kyu_store_remove_tree(k->root);
    sk_oracle_free(k);
    free(k);
    c->app_state = NULL;
}

/* Opens a node's state as a restart finds it: at the index its state database held before
 * its crash (after a power loss: at its last sync), never behind its log's snapshot. The replica's
 * boot (replica_boot.c) does the rest. */
bool sk_state_open(sim_cluster_t *c, sim_node_t *nd)
{
    sk_node_t *kn = nd->app;
    kyu_err_t err;
    kn->store = kyu_store_open(kn->dir, &err);
    if (kn->store)
        kn->sm = kyu_sm_open(kn->store, &err);
    if (!kn->store || !kn->sm) {
        fprintf(stderr, "kyu-sim-kyu: node %llu: %s\n", (unsigned long long)nd->id, err.msg);
        kyu_store_close(&kn->store);
        return false;
    }
    /* Where the state opens: between the durable and the persisted index before the crash
     * (a new node, or one stopped cleanly: exactly at what it had applied). */
    uint64_t applied = kyu_sm_applied_index(kn->sm), chain = 0;
    uint64_t lo = kn->crashed ? kn->open_lo : nd->sm_applied;
    uint64_t hi = kn->crashed ? kn->open_hi : nd->sm_applied;
    kn->crashed = false;
    if (applied < lo || applied > hi || !sk_chain_of(kn, applied, &chain)) {
        sim_violation(c, SIM_SAFETY,
                      "durability: node %llu's state held %llu to %llu before its crash, and "
                      "says %llu after",
                      (unsigned long long)nd->id, (unsigned long long)lo, (unsigned long long)hi,
                      (unsigned long long)applied);
        return true;
    }
    nd->sm_applied = applied;
    nd->sm_chain = chain;
    if (kn->snap_found && applied < nd->disk.snap.index) {
        sim_violation(c, SIM_SAFETY,
                      "durability: node %llu's state is at %llu, behind its log's snapshot at "
                      "%llu: the entries between are lost",
                      (unsigned long long)nd->id, (unsigned long long)applied,
                      (unsigned long long)nd->disk.snap.index);
        return true;
    }
    kn->base_index = applied;
    kn->base_chain = nd->sm_chain;
    if (!kn->synced)
        sk_mark_synced(c, nd);
    return true;
}

/* The replica applied entry e on this node: the Raft-level checks (one entry per index, in
 * order, once), then kyu's (the same results on every node, the oracle's model, digests). */
void sk_on_applied(void *arg, const kyu_raft_entry_t *e, const kyu_result_t *res, size_t n)
{
    sk_node_t *kn = arg;
    sim_cluster_t *c = kn->c;
    sim_node_t *nd = kn->nd;
    sk_t *k = sk(c);
    kn->applying.valid = true;
    kn->applying.index = e->index;
    kn->applying.term = e->term;
    kn->applying.hash = sim_entry_hash(e);
    kn->applying.data = e->type == KYU_RAFT_ENTRY_NORMAL ? e->data : NULL;
    kn->applying.len = e->type == KYU_RAFT_ENTRY_NORMAL ? e->len : 0;
    kn->applying.results = res;
    kn->applying.n = n;
    if (c->result != SIM_OK)
        return;
    if (e->index != nd->sm_applied + 1 || kyu_sm_applied_index(kn->sm) != e->index) {
        sim_violation(c, SIM_SAFETY,
                      "%s: node %llu applied entry %llu (term %llu) after %llu, as its state's "
                      "entry %llu",
                      e->index <= nd->sm_applied ? "entry applied twice" : "apply order",
                      (unsigned long long)nd->id, (unsigned long long)e->index,
                      (unsigned long long)e->term, (unsigned long long)nd->sm_applied,
                      (unsigned long long)kyu_sm_applied_index(kn->sm));
        return;
    }
    nd->sm_chain = sim_mix(nd->sm_chain, sim_entry_hash(e));
    nd->sm_applied = e->index;
    kn->chain_index[e->index % SK_CHAINS] = e->index;
    kn->chain_at[e->index % SK_CHAINS] = nd->sm_chain;
    sim_check_apply(c, nd, e, nd->sm_chain);
    if (c->result != SIM_OK)
        return;
    /* Every node must answer every command of the entry alike. */
    uint64_t h = sim_mix(n, e->term);
    for (size_t i = 0; i < n; i++) {
        const kyu_result_t *r = &res[i];
        h = sim_mix(h, (uint64_t)r->code);
        for (size_t j = 0; j < r->n_ids; j++)
            h = sim_mix(h, sim_hash(r->ids[j], strlen(r->ids[j]), j));
        for (size_t j = 0; j < r->n_msgs; j++) {
            const kyu_msg_meta_t *m = &r->msgs[j];
            h = sim_mix(h, sim_hash(m->message_id, strlen(m->message_id), 1));
            h = sim_mix(h, sim_hash(m->handle, strlen(m->handle), 2));
            h = sim_mix(h, sim_mix(m->receive_count, sim_mix(m->sent_ms, m->first_receive_ms)));
            h = sim_mix(h, sim_hash(r->bodies[j], r->body_lens[j], 3));
            h = sim_mix(h, sim_hash(m->md5_attrs, strlen(m->md5_attrs), 4));
            /* A message's attributes come back with it, whole: the workload's are its body
             * twice (sim_kyu_client.c). */
            bool attrs_ok = m->attrs.n == 0 || m->attrs.n == 2;
            for (size_t a = 0; a < m->attrs.n && attrs_ok; a++)
                attrs_ok = m->attrs.a[a].value_len == r->body_lens[j] &&
                           memcmp(m->attrs.a[a].value, r->bodies[j], r->body_lens[j]) == 0;
            if (!attrs_ok) {
                sim_violation(c, SIM_SAFETY,
                              "entry %llu: message %s has attributes that are not "
                              "its own",
                              (unsigned long long)e->index, m->message_id);
                return;
            }
        }
        for (size_t j = 0; j < r->n_results; j++)
            h = sim_mix(h, r->results[j]);
    }
    if (getenv("KYU_SIM_DEBUG_INDEX") &&
        strtoull(getenv("KYU_SIM_DEBUG_INDEX"), NULL, 10) == e->index)
        for (size_t i = 0; i < n; i++) {
            fprintf(stderr, "n%llu %llu.%zu code %d ids %zu msgs %zu results %zu:",
                    (unsigned long long)nd->id, (unsigned long long)e->index, i, res[i].code,
                    res[i].n_ids, res[i].n_msgs, res[i].n_results);
            for (size_t j = 0; j < res[i].n_msgs; j++)
                fprintf(stderr, " [%s %s rc=%u sent=%llu first=%llu]", res[i].msgs[j].message_id,
                        res[i].msgs[j].handle, res[i].msgs[j].receive_count,
                        (unsigned long long)res[i].msgs[j].sent_ms,
                        (unsigned long long)res[i].msgs[j].first_receive_ms);
            for (size_t j = 0; j < res[i].n_results; j++)
                fprintf(stderr, " r%u", res[i].results[j]);
            fprintf(stderr, "\n");
        }
    sk_index_t *x = sk_index(k, e->index);
    if (!x->applied) {
        x->applied = true;
        x->rhash = h;
        x->term = e->term;
        sk_oracle_stream(c, nd, e, res, n);
        if (c->result == SIM_OK && e->index % k->digest_every == 0)
            sk_oracle_check_state(c, nd);
    } else if (x->rhash != h) {
        sim_violation(c, SIM_SAFETY,
                      "result agreement: node %llu answered the commands of entry %llu "
                      "differently from the node that applied it first",
                      (unsigned long long)nd->id, (unsigned long long)e->index);
    }
    if (c->result == SIM_OK && (e->index % k->digest_every == 0 || x->want_digest))
        sk_check_digest(c, nd, e->index, "by the log");
}

static void converged(sim_cluster_t *c)
{
    sk_oracle_final(c);
}

static const char *const count_names[] = {"messages sent",
                                          "receives checked",
                                          "deletes checked",
                                          "keyed retries",
                                          "retries deduplicated",
                                          "state digests compared",
                                          "states installed",
                                          "boot log resets",
                                          "message sets checked",
                                          "power losses",
                                          "answers checked",
                                          "disk stalls",
                                          "receives over their in-flight limit",
                                          "expiries applied",
                                          "messages expired",
                                          "process pauses",
                                          "publishes applied",
                                          "publish copies enqueued",
                                          "receives answered early",
                                          "early leases recorded",
                                          "receipt handles answered",
                                          "rounds written by the loop",
                                          NULL};

static void count(sim_cluster_t *c, uint64_t *counts)
{
    sk_t *k = sk(c);
    uint64_t v[] = {k->next_msg,         k->receives_checked, k->deletes_checked, k->retried,
                    k->dedup_hits,       k->digests,          k->installs,        k->boot_resets,
                    k->state_checks,     k->power_losses,     k->answers,         k->stalls,
                    k->over_limit,       k->expiries,         k->expired,         k->pauses,
                    k->publishes,        k->copies,           k->early_answers,   k->early_leases,
                    k->handles_answered, k->writes_now};
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
        counts[i] += v[i];
}

static const sim_app_t kyu_app = {
    .name = "kyu-sim-kyu",
    .seed_begin = seed_begin,
    .seed_end = seed_end,
    .node_start = sk_node_start,
    .node_crash = sk_node_crash,
    .node_step = sk_node_step,
    .node_tick = sk_node_tick,
    .node_process = sk_node_process,
    .client = sk_client,
    .client_waiting = sk_client_waiting,
    .conf_change = sk_conf_change,
    .transfer = sk_transfer,
    .converged = converged,
    .count_names = count_names,
    .count = count,
};

const sim_app_t *sim_app(void)
{
    return &kyu_app;
}
