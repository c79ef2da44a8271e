/* kyu-broker: one node of kyu. Parses flags, opens the store, rebuilds the Raft core from
 * the log, and runs the event loop: client requests on the frontend's ROUTER, peer messages
 * on the transport's ROUTER, durability reports from the storage thread, and the Raft tick.
 * The ack-after-commit rule lives in the replica: a write's reply is sent once its entry is
 * committed and applied, never from the request handler. */
#include "cluster_time.h"
#include "frontend.h"
#include "iohold.h"
#include "snapshot.h"
#include "sys_clock.h"
#include "transport.h"

#include <getopt.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define PEER_DRAIN_MAX 1024 /* peer messages per readable event */

typedef struct {
    const char *data_dir;
    const char *listen;
    size_t max_body;
    uint64_t node_id;
    kyu_peers_t peers;
    bool join;
    uint64_t max_clock_skew_ms;
    uint32_t max_inflight;
    uint64_t disk_free_min;           /* bytes; 0: never read-only for want of space */
    const char *backup;               /* --backup DIR: write a backup of --data there and exit */
    const char *bind_client;          /* --bind-client: bound instead of the client endpoint */
    char bind_raft[KYU_ENDPOINT_MAX]; /* --bind-raft as tcp://HOST:PORT; "": the peer entry's */
} config_t;

#define DISK_FREE_MIN_DEFAULT (64ull << 20)
#define DISK_CHECK_MS 1000

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: kyu-broker [--data DIR] [--listen ENDPOINT] [--max-message-size BYTES]\n"
        "                  [--node-id N --peer ID,RAFT_HOST:PORT,CLIENT_ENDPOINT ... [--join]]\n"
        "                  [--max-clock-skew-ms MS] [--max-inflight N] [--disk-free-min BYTES]\n"
        "                  [--bind-client ENDPOINT] [--bind-raft HOST:PORT]\n"
        "       kyu-broker --data DIR --backup BACKUP_DIR\n"
        "\n"
        "Runs a kyu broker node: queues with SQS semantics, stored durably in RocksDB and\n"
        "replicated with Raft when peers are given.\n"
        "\n"
        "  --data DIR               data directory (default ./kyu-data)\n"
        "  --listen ENDPOINT        client endpoint (default tcp://127.0.0.1:7700; in a\n"
        "                           cluster, the CLIENT_ENDPOINT of this node's --peer)\n"
        "  --node-id N              this node's id in the cluster (env KYU_NODE_ID)\n"
        "  --peer ID,RAFT_HOST:PORT,CLIENT_ENDPOINT\n"
        "                           a member of the cluster, this node included; the same\n"
        "                           list on every node (env KYU_PEERS, entries split by ';')\n"
        "  --join                   join an existing cluster instead of bootstrapping one:\n"
        "                           wait for its leader to add this node (kyu cluster add);\n"
        "                           --peer lists this node and the current members\n"
        "                           (env KYU_JOIN=1)\n"
        "  --max-message-size N     largest message body in bytes (default %d, 1 MiB)\n"
        "  --max-clock-skew-ms MS   how far this node's clock may be from the cluster's\n"
        "                           time (default %d): past it the node logs the skew, and a\n"
        "                           clock ahead is not used and gives leadership away\n"
        "                           (env KYU_MAX_CLOCK_SKEW_MS)\n"
        "  --max-inflight N         messages in flight (received, lease not over) per queue,\n"
        "                           1 to 4294967295 (default %d, SQS's): a receive past it\n"
        "                           is refused with LIMIT_EXCEEDED (SQS's OverLimit)\n"
        "  --bind-client ENDPOINT   bind this instead of the client endpoint, which stays\n"
        "                           the address given to clients (behind NAT, a container's\n"
        "                           published port; env KYU_BIND_CLIENT)\n"
        "  --bind-raft HOST:PORT    bind this instead of this node's raft address in its\n"
        "                           --peer entry, which peers keep connecting to\n"
        "                           (env KYU_BIND_RAFT)\n"
        "  --disk-free-min BYTES    below this much free space in DIR's file system the\n"
        "                           node is read-only (writes refused with READ_ONLY, reads\n"
        "                           served, replication paused) until space is freed;\n"
        "                           checked every second (default %llu, 64 MiB; 0: never)\n"
        "                           (env KYU_DISK_FREE_MIN)\n"
        "  --backup BACKUP_DIR      write a backup of the stopped node's --data into\n"
        "                           BACKUP_DIR (a new directory: a copy of its log and a\n"
        "                           checkpoint of its state) and exit; start a node with\n"
        "                           a copy of BACKUP_DIR as --data to restore it\n"
        "                           (docs/OPERATIONS.md)\n"
        "  --help                   this text\n"
        "\n"
        "SIGTERM or SIGINT stops the broker cleanly.\n",
        KYU_BODY_MAX_DEFAULT, KYU_CLUSTER_TIME_SKEW_DEFAULT_MS, KYU_INFLIGHT_MAX_DEFAULT,
        DISK_FREE_MIN_DEFAULT);
}

/* A positive number of milliseconds up to KYU_CLUSTER_TIME_SKEW_MAX_MS, or 0 (not valid). */
static uint64_t parse_skew(const char *s)
{
    char *end = NULL;
    unsigned long long v = s && *s ? strtoull(s, &end, 10) : 0;
    return s && *s && !*end && v >= 1 && v <= KYU_CLUSTER_TIME_SKEW_MAX_MS ? (uint64_t)v : 0;
}

static int parse_args(int argc, char **argv, config_t *cfg)
{
    static const struct option opts[] = {
        {"data", required_argument, NULL, 'd'},
        {"listen", required_argument, NULL, 'l'},
        {"max-message-size", required_argument, NULL, 'm'},
        {"node-id", required_argument, NULL, 'n'},
        {"peer", required_argument, NULL, 'p'},
        {"join", no_argument, NULL, 'j'},
        {"max-clock-skew-ms", required_argument, NULL, 's'},
        {"max-inflight", required_argument, NULL, 'i'},
        {"disk-free-min", required_argument, NULL, 'f'},
        {"backup", required_argument, NULL, 'b'},
        {"bind-client", required_argument, NULL, 'B'},
        {"bind-raft", required_argument, NULL, 'R'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *cfg = (config_t){"./kyu-data",
                      "tcp://127.0.0.1:7700",
                      KYU_BODY_MAX_DEFAULT,
                      0,
                      {0},
                      false,
                      0,
                      KYU_INFLIGHT_MAX_DEFAULT,
                      DISK_FREE_MIN_DEFAULT,
                      NULL,
                      getenv("KYU_BIND_CLIENT"),
                      ""};
    const char *bind_raft = getenv("KYU_BIND_RAFT");
    const char *disk_free = getenv("KYU_DISK_FREE_MIN");
    const char *skew = getenv("KYU_MAX_CLOCK_SKEW_MS");
    const char *env_join = getenv("KYU_JOIN");
    cfg->join = env_join && strcmp(env_join, "1") == 0;
    bool listen_set = false;
    kyu_err_t err;
    const char *env_id = getenv("KYU_NODE_ID"), *env_peers = getenv("KYU_PEERS");
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            cfg->data_dir = optarg;
            break;
        case 'l':
            cfg->listen = optarg;
            listen_set = true;
            break;
        case 'n':
            env_id = optarg;
            break;
        case 'j':
            cfg->join = true;
            break;
        case 's':
            skew = optarg;
            break;
        case 'p':
            if (kyu_peers_add(&cfg->peers, optarg, &err) != KYU_OK) {
                fprintf(stderr, "kyu-broker: %s\n", err.msg);
                return 2;
            }
            break;
        case 'm': {
            char *end = NULL;
            unsigned long long v = strtoull(optarg, &end, 10);
            if (!*optarg || *end || v < 1 || v > (64ULL << 20)) {
                fprintf(stderr, "kyu-broker: --max-message-size must be 1 to %llu bytes\n",
                        64ULL << 20);
                return 2;
            }
            cfg->max_body = (size_t)v;
            break;
        }
        case 'i': {
            char *end = NULL;
            unsigned long long v = strtoull(optarg, &end, 10);
            if (!*optarg || *optarg == '-' || *end || v < 1 || v > UINT32_MAX) {
                fprintf(stderr, "kyu-broker: --max-inflight must be 1 to %u messages\n",
                        UINT32_MAX);
                return 2;
            }
            cfg->max_inflight = (uint32_t)v;
            break;
        }
        case 'f':
            disk_free = optarg;
            break;
        case 'b':
            cfg->backup = optarg;
            break;
        case 'B':
            cfg->bind_client = optarg;
            break;
        case 'R':
            bind_raft = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (skew && !(cfg->max_clock_skew_ms = parse_skew(skew))) {
        fprintf(stderr, "kyu-broker: --max-clock-skew-ms must be 1 to %d ms\n",
                KYU_CLUSTER_TIME_SKEW_MAX_MS);
        return 2;
    }
    if (disk_free) {
        char *end = NULL;
        unsigned long long v = strtoull(disk_free, &end, 10);
        if (!*disk_free || *disk_free == '-' || *end || v > (1ull << 50)) {
            fprintf(stderr, "kyu-broker: --disk-free-min must be 0 to %llu bytes\n", 1ull << 50);
            return 2;
        }
        cfg->disk_free_min = v;
    }
    if (cfg->bind_client && !*cfg->bind_client)
        cfg->bind_client = NULL; /* KYU_BIND_CLIENT= : as unset */
    if (bind_raft && *bind_raft) {
        /* HOST:PORT, checked as a peer entry's raft address is */
        char entry[KYU_ENDPOINT_MAX + 32];
        kyu_peers_t one = {0};
        snprintf(entry, sizeof entry, "1,%s,tcp://127.0.0.1:1", bind_raft);
        if (kyu_peers_add(&one, entry, &err) != KYU_OK) {
            fprintf(stderr, "kyu-broker: --bind-raft must be HOST:PORT (PORT 1..65535), not '%s'\n",
                    bind_raft);
            return 2;
        }
        snprintf(cfg->bind_raft, sizeof cfg->bind_raft, "%s", one.peers[0].raft);
    }
    if (cfg->backup && !*cfg->backup) {
        fprintf(stderr, "kyu-broker: --backup needs a directory\n");
        return 2;
    }
    if (optind < argc) {
        fprintf(stderr, "kyu-broker: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    if (cfg->peers.n == 0 && env_peers && kyu_peers_add_list(&cfg->peers, env_peers, &err)) {
        fprintf(stderr, "kyu-broker: KYU_PEERS: %s\n", err.msg);
        return 2;
    }
    if (cfg->peers.n > 0 || (env_id && *env_id)) {
        char *end = NULL;
        unsigned long long id = env_id ? strtoull(env_id, &end, 10) : 0;
        const kyu_peer_t *me = NULL;
        if (!env_id || !*env_id || *end || id < 1 ||
            !(me = kyu_peers_find(&cfg->peers, (uint64_t)id))) {
            fprintf(stderr, "kyu-broker: a cluster needs --node-id N (or KYU_NODE_ID) naming one "
                            "of the --peer entries (or KYU_PEERS)\n");
            return 2;
        }
        cfg->node_id = (uint64_t)id;
        if (listen_set && strcmp(cfg->listen, me->client) != 0) {
            fprintf(stderr, "kyu-broker: --listen %s differs from this node's peer entry %s\n",
                    cfg->listen, me->client);
            return 2;
        }
        cfg->listen = me->client;
    }
    if (cfg->bind_raft[0] && cfg->peers.n == 0) {
        fprintf(stderr, "kyu-broker: --bind-raft needs a cluster (--node-id and --peer)\n");
        return 2;
    }
    if (cfg->join && cfg->peers.n < 2) {
        fprintf(stderr, "kyu-broker: --join needs --node-id and a --peer list with this node and "
                        "at least one member of the cluster to join\n");
        return 2;
    }
    return -1;
}

typedef struct {
    kyu_frontend_t *frontend;
    kyu_replica_t *replica;
    kyu_log_t *log;
    kyu_transport_t *transport;
    kyu_snapshot_t *snapshot;
    kyu_membership_t *membership;
    kyu_sm_t *sm;
    kyu_peers_t links; /* the transport's links, as last set */
    const char *data_dir;
    uint64_t disk_free_min;
    pid_t io_tid; /* libzmq's I/O thread, held during a storage round (iohold.h); 0: none */
    uint64_t round_replies; /* replies the last storage round sent */
} broker_t;

/* The data directory's free space against --disk-free-min (a full disk is the one storage
 * failure seen coming): below it the node turns read-only, back at or above it writable
 * (kyu_replica_set_disk_low). Writes that fail anyway (the disk filled between two checks,
 * or an I/O error) make it read-only too, through the storage thread (log.h). */
static void check_disk(broker_t *b)
{
    if (!b->disk_free_min)
        return;
    uint64_t free_bytes = kyu_store_free_bytes(b->data_dir);
    if (free_bytes >= b->disk_free_min) {
        kyu_replica_set_disk_low(b->replica, NULL);
        return;
    }
    char why[KYU_ERR_MSG_MAX];
    snprintf(why, sizeof why,
             "the disk is almost full: %.1f MiB free in %.60s, below --disk-free-min %.1f "
             "MiB: writes are refused, reads served, until space is freed",
             (double)free_bytes / (1 << 20), b->data_dir, (double)b->disk_free_min / (1 << 20));
    kyu_replica_set_disk_low(b->replica, why);
}

static int on_disk_check(zloop_t *loop, int timer_id, void *arg)
{
    (void)loop;
    (void)timer_id;
    check_disk(arg);
    return 0;
}

/* Members come and go (kyu cluster add/remove, or a configuration learnt from the log):
 * the transport follows the replica's view of whom to link to. */
static void sync_links(broker_t *b)
{
    if (!b->transport)
        return;
    kyu_peers_t links;
    kyu_replica_links(b->replica, &links);
    bool same = links.n == b->links.n;
    for (size_t i = 0; same && i < links.n; i++) {
        const kyu_peer_t *p = kyu_peers_find(&b->links, links.peers[i].id);
        same = p && strcmp(p->raft, links.peers[i].raft) == 0;
    }
    if (same)
        return;
    kyu_transport_set_links(b->transport, &links);
    b->links = links;
}

/* The replica needs a snapshot from member server: the installer thread fetches it. */
static void start_install(void *arg, uint64_t server, uint64_t min_index)
{
    broker_t *b = arg;
    const kyu_peer_t *p = kyu_replica_address(b->replica, server);
    kyu_snapshot_install(b->snapshot, server, p ? p->raft : "", min_index);
}

static int on_install(zloop_t *loop, zsock_t *sock, void *arg)
{
    (void)loop;
    (void)sock;
    broker_t *b = arg;
    bool ok = false;
    char why[KYU_ERR_MSG_MAX];
    kyu_err_t err;
    if (kyu_snapshot_install_recv(b->snapshot, &ok, why, sizeof why, &err) != KYU_OK)
        return 0;
    /* The state database is swapped under the server thread's feet otherwise. */
    if (ok)
        kyu_snapshot_pause(b->snapshot);
    kyu_replica_install_done(b->replica, ok, why);
    if (ok)
        kyu_snapshot_resume(b->snapshot);
    kyu_replica_flush(b->replica);
    kyu_frontend_serve_waiting(b->frontend);
    return kyu_replica_fatal(b->replica) ? -1 : 0;
}

/* A snapshot chunk or manifest the server thread prepared goes to the member that asked. */
static int on_snapshot_reply(zloop_t *loop, zsock_t *sock, void *arg)
{
    (void)loop;
    (void)sock;
    broker_t *b = arg;
    zframe_t *routing = NULL, *reply = NULL;
    kyu_err_t err;
    if (kyu_snapshot_server_recv(b->snapshot, &routing, &reply, &err) == KYU_OK)
        kyu_transport_reply(b->transport, routing, zframe_data(reply), zframe_size(reply));
    zframe_destroy(&routing);
    zframe_destroy(&reply);
    return 0;
}

static void send_peer(void *arg, const kyu_raft_msg_t *msg)
{
    broker_t *b = arg;
    kyu_transport_send(b->transport, msg);
}

/* The replica's transport seam: Raft messages over transport.c, states over snapshot.c. */
static const kyu_replica_transport_t peer_transport = {.send = send_peer, .install = start_install};

static int on_peer(zloop_t *loop, zsock_t *sock, void *arg)
{
    (void)loop;
    (void)sock;
    broker_t *b = arg;
    for (int i = 0; i < PEER_DRAIN_MAX; i++) {
        kyu_peer_decoded_t d;
        kyu_transport_snap_t snap;
        kyu_err_t err;
        kyu_code_t rc = kyu_transport_recv(b->transport, &d, &snap, &err);
        if (rc == KYU_ERR_TIMEOUT)
            break;
        if (rc != KYU_OK)
            continue; /* dropped: a malformed or misaddressed peer frame changes nothing */
        if (!d.live) {
            /* A snapshot fetch: served by a state that is not itself being replaced, with every
             * applied entry written to it (the server thread checkpoints the database). */
            bool serve = !kyu_replica_installing(b->replica);
            kyu_err_t ferr;
            if (serve && kyu_sm_flush(b->sm, &ferr) != KYU_OK) {
                fprintf(stderr, "kyu-broker: %s\n", ferr.msg); /* the next apply fails too */
                serve = false;
            }
            uint64_t applied = serve ? kyu_sm_persisted_index(b->sm) : 0;
            kyu_snapshot_serve(b->snapshot, snap.routing, snap.data, snap.len, applied);
            continue;
        }
        kyu_replica_step(b->replica, &d.msg);
        kyu_peer_decoded_reset(&d);
    }
    kyu_replica_flush(b->replica);
    kyu_frontend_serve_waiting(b->frontend); /* commits wake long polls; leadership may move */
    return kyu_replica_fatal(b->replica) ? -1 : 0;
}

static int on_tick(zloop_t *loop, int timer_id, void *arg)
{
    (void)loop;
    (void)timer_id;
    broker_t *b = arg;
    kyu_replica_tick(b->replica);
    if (b->membership)
        kyu_membership_tick(b->membership);
    sync_links(b);
    kyu_frontend_tick(b->frontend);          /* retention: EXPIRE_MESSAGES once a second at most */
    kyu_frontend_serve_waiting(b->frontend); /* O(1) when nothing changed */
    return kyu_replica_fatal(b->replica) ? -1 : 0;
}

static int on_client(zloop_t *loop, zsock_t *sock, void *arg)
{
    (void)loop;
    (void)sock;
    broker_t *b = arg;
    kyu_frontend_on_readable(b->frontend);
    return 0;
}

static int on_storage(zloop_t *loop, zsock_t *sock, void *arg)
{
    (void)loop;
    (void)sock;
    broker_t *b = arg;
    kyu_log_event_t ev;
    kyu_err_t err;
    /* The round's replies leave together: libzmq's I/O thread, woken by the first, waits
     * for the last instead of preempting the loop for each (iohold.c). Only after a round
     * that answered several requests (a pipelining client's): a lone reply (one request at
     * a time, W1, LAT) goes out as before, without the two system calls. */
    bool hold = b->io_tid && b->round_replies > 1;
    uint64_t replies = kyu_frontend_replies(b->frontend);
    if (hold)
        kyu_iohold(b->io_tid, true);
    int rc = 0;
    while (rc == 0 && zsock_events(kyu_log_sock(b->log)) & ZMQ_POLLIN) {
        if (kyu_log_recv(b->log, &ev, &err) != KYU_OK) {
            fprintf(stderr, "kyu-broker: %s\n", err.msg);
            rc = -1;
        } else {
            kyu_replica_on_log_event(b->replica, &ev);
        }
    }
    if (rc == 0)
        kyu_frontend_serve_waiting(b->frontend); /* applied entries may wake long polls */
    if (hold)
        kyu_iohold(b->io_tid, false);
    b->round_replies = kyu_frontend_replies(b->frontend) - replies;
    return rc == 0 && !kyu_replica_fatal(b->replica) ? 0 : -1;
}

#define TRANSFER_WAIT_MS 3000

static int on_transfer_check(zloop_t *loop, int timer_id, void *arg)
{
    (void)loop;
    (void)timer_id;
    broker_t *b = arg;
    return kyu_replica_is_leader(b->replica) ? 0 : -1;
}

static int on_transfer_deadline(zloop_t *loop, int timer_id, void *arg)
{
    (void)loop;
    (void)timer_id;
    (void)arg;
    return -1;
}

#define EARLY_WAIT_MS 2000

static int on_early_check(zloop_t *loop, int timer_id, void *arg)
{
    (void)loop;
    (void)timer_id;
    broker_t *b = arg;
    return kyu_replica_early_pending(b->replica) > 0 && !kyu_replica_fatal(b->replica) ? 0 : -1;
}

/* On SIGTERM the leases of receives answered early (replica_early.c) are made durable before
 * anything else: their entries are proposed and the loop runs until they are applied (at
 * most EARLY_WAIT_MS; new requests wait meanwhile), so a clean stop takes back no answered
 * lease. */
static void settle_early_before_exit(broker_t *b)
{
    if (kyu_replica_fatal(b->replica) || kyu_replica_early_pending(b->replica) == 0)
        return;
    zloop_t *loop = zloop_new();
    KYU_ASSERT(loop);
    zloop_set_nonstop(loop, true); /* the SIGTERM that got us here must not stop this loop */
    zloop_reader(loop, kyu_log_sock(b->log), on_storage, b);
    if (b->transport)
        zloop_reader(loop, kyu_transport_sock(b->transport), on_peer, b);
    zloop_timer(loop, KYU_REPLICA_TICK_MS, 0, on_tick, b);
    zloop_timer(loop, KYU_REPLICA_TICK_MS, 0, on_early_check, b);
    zloop_timer(loop, EARLY_WAIT_MS, 1, on_transfer_deadline, b);
    kyu_replica_tick(b->replica); /* proposes an entry of early receives at once */
    zloop_start(loop);
    zloop_destroy(&loop);
}

/* On SIGTERM a leader hands leadership over before it exits, so that clients find the next
 * leader at once (a rolling restart costs no election timeout). Bounded by TRANSFER_WAIT_MS;
 * requests that come meanwhile are answered NOT_LEADER. */
static void transfer_before_exit(broker_t *b)
{
    if (!b->transport || kyu_replica_fatal(b->replica) || !kyu_replica_transfer(b->replica))
        return;
    zloop_t *loop = zloop_new();
    KYU_ASSERT(loop);
    zloop_set_nonstop(loop, true); /* the SIGTERM that got us here must not stop this loop */
    zloop_reader(loop, kyu_log_sock(b->log), on_storage, b);
    zloop_reader(loop, kyu_transport_sock(b->transport), on_peer, b);
    zloop_reader(loop, kyu_frontend_sock(b->frontend), on_client, b);
    zloop_timer(loop, KYU_REPLICA_TICK_MS, 0, on_tick, b);
    zloop_timer(loop, KYU_REPLICA_TICK_MS, 0, on_transfer_check, b);
    zloop_timer(loop, TRANSFER_WAIT_MS, 1, on_transfer_deadline, b);
    zloop_start(loop);
    zloop_destroy(&loop);
    printf("kyu-broker: leadership %s\n",
           kyu_replica_is_leader(b->replica) ? "not handed over in time" : "handed over");
}

/* kyu-broker --backup: a copy of the stopped node's log and a checkpoint of its state
 * (RocksDB's lock on the state, opened first, refuses a running node's). */
static int backup(const config_t *cfg)
{
    kyu_err_t err;
    kyu_err_clear(&err);
    struct stat st;
    if (stat(cfg->data_dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "kyu-broker: --backup: no data directory %s\n", cfg->data_dir);
        return 1;
    }
    kyu_store_t *store = kyu_store_open(cfg->data_dir, &err);
    if (!store) {
        fprintf(stderr,
                "kyu-broker: --backup: %s (is the node running? stop it first: RocksDB "
                "allows one process per database)\n",
                err.msg);
        return 1;
    }
    kyu_code_t rc = kyu_store_backup(store, cfg->backup, &err);
    kyu_store_close(&store);
    if (rc != KYU_OK) {
        fprintf(stderr, "kyu-broker: --backup: %s\n", err.msg);
        return 1;
    }
    printf("kyu-broker: backup of %s written to %s\n", cfg->data_dir, cfg->backup);
    return 0;
}

int main(int argc, char **argv)
{
    /* No fastbins: each request allocates a few blocks of a body's size (over 1 KiB), and
     * glibc consolidates every fastbin before serving such a block, which was 4% of the event
     * loop under a send load; small blocks still come from the per-thread cache. */
    mallopt(M_MXFAST, 0);
    /* The write-behind buffers (tens of MiB of small blocks) and their hash tables and
     * arrays (hundreds of KiB, sm_buffer.c) come and go every few thousand entries: from the
     * heap, kept there, instead of fresh pages mapped and zeroed each time (page faults were
     * 5% of the loop; trimming at 8 MiB cost send-only a sixth of its rate). Larger blocks
     * are still mapped and given back when freed. RocksDB's memtable arenas were such blocks
     * (2 MiB; kept in the heap with 32/64 MiB thresholds they held 100 MiB more with a
     * backlog of 2 million messages); since branch sendcpu (2026-12-05) they come in blocks
     * of 512 KiB (store.c), from the heap. Free space in the middle of the heaps, which this
     * threshold never reaches, is given back once, at the end of the start (below); a
     * periodic malloc_trim was tried and not kept (docs/ARCHITECTURE.md, "How state is kept",
     * item 8). */
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
    config_t cfg;
    int rc = parse_args(argc, argv, &cfg);
    if (rc >= 0)
        return rc;
    if (cfg.backup)
        return backup(&cfg);
    zsys_init();
    zsys_set_logstream(NULL);
    kyu_err_t err;
    kyu_err_clear(&err);
    broker_t b = {0};
    kyu_store_t *store = kyu_store_open(cfg.data_dir, &err);
    kyu_sm_t *sm = store ? kyu_sm_open(store, &err) : NULL;
    kyu_frontend_config_t fcfg = {.endpoint = cfg.listen,
                                  .bind = cfg.bind_client,
                                  .max_body = cfg.max_body,
                                  .max_inflight = cfg.max_inflight};
    char *max_waiting = getenv("KYU_MAX_WAITING"); /* tests: a small bound of long polls */
    if (max_waiting && atoll(max_waiting) > 0)
        fcfg.max_waiting = (size_t)atoll(max_waiting);
    if (sm)
        kyu_sm_write_behind(sm); /* the state database's writes off the event loop */
    if (sm)
        b.frontend = kyu_frontend_new(&fcfg, sm, &err);
    if (b.frontend)
        b.log = kyu_log_new(store, &err);
    /* Incoming peer frames: the largest entry plus a batch of maximal bodies, twice over. */
    int64_t max_peer =
        2 * ((int64_t)KYU_ENTRY_BYTES_MAX + KYU_BATCH_MAX * (int64_t)cfg.max_body) + KYU_HEADER_MAX;
    if (b.log && cfg.peers.n > 0)
        b.transport = kyu_transport_new(&cfg.peers, cfg.node_id, max_peer,
                                        cfg.bind_raft[0] ? cfg.bind_raft : NULL, &err);
    if (b.transport)
        b.snapshot = kyu_snapshot_new(store, cfg.node_id, max_peer, &err);
    b.sm = sm;
    b.data_dir = cfg.data_dir;
    b.disk_free_min = cfg.disk_free_min;
    /* The replica's seams: the storage thread, the peers (with snapshot transfer), and the
     * system clock. */
    kyu_replica_config_t rcfg = {.node_id = cfg.node_id ? cfg.node_id : 1,
                                 .peers = &cfg.peers,
                                 .log = &kyu_log_ops,
                                 .log_arg = b.log,
                                 .transport = b.transport ? &peer_transport : NULL,
                                 .transport_arg = &b,
                                 .clock = &kyu_sys_clock,
                                 .join = cfg.join,
                                 .max_clock_skew_ms = cfg.max_clock_skew_ms};
    char *window = getenv("KYU_LOG_WINDOW"); /* tests: a short log makes snapshots happen */
    if (window && atoll(window) > 0)
        rcfg.log_window = (uint64_t)atoll(window);
    if (b.log && (cfg.peers.n == 0 || b.snapshot))
        b.replica = kyu_replica_new(store, sm, &rcfg, kyu_frontend_on_result, b.frontend, &err);
    if (b.replica && b.transport)
        b.membership = kyu_membership_new(b.replica, kyu_frontend_on_result, b.frontend, &err);
    if (!b.replica || (b.transport && !b.membership)) {
        fprintf(stderr, "kyu-broker: %s\n", err.msg);
        rc = 1;
    } else {
        kyu_frontend_set_replica(b.frontend, b.replica);
        kyu_frontend_set_membership(b.frontend, b.membership);
        /* The start's transient blocks (the log's entries read at boot, held twice until
         * the core has its copy; the loaders' buffers) are free in the heap, in its middle,
         * where the trim threshold never gives them back: give their pages back once. */
        malloc_trim(0);
        b.links = cfg.peers; /* what the transport was created with */
        sync_links(&b);
        printf("kyu-broker: node %llu of %zu, serving %s, data in %s, %zu queues, applied index "
               "%llu\n",
               (unsigned long long)rcfg.node_id, cfg.peers.n ? cfg.peers.n : 1, cfg.listen,
               cfg.data_dir, kyu_sm_queue_count(sm), (unsigned long long)kyu_sm_applied_index(sm));
        fflush(stdout);
        /* One node only: in a cluster the same thread carries the Raft messages a round sends
         * (a leader's appends, a follower's acks), whose delay delays the commit (three
         * nodes: W2 0.72 of the msg/s, p99 higher, in the same minutes under load). Found
         * after the sockets above started it. */
        b.io_tid = b.transport ? 0 : kyu_iohold_find();
        zloop_t *loop = zloop_new();
        KYU_ASSERT(loop);
        /* Storage reports first: answering finished work frees room for new requests. */
        zloop_reader(loop, kyu_log_sock(b.log), on_storage, &b);
        if (b.transport) {
            zloop_reader(loop, kyu_transport_sock(b.transport), on_peer, &b);
            zloop_reader(loop, kyu_snapshot_server_sock(b.snapshot), on_snapshot_reply, &b);
            zloop_reader(loop, kyu_snapshot_install_sock(b.snapshot), on_install, &b);
        }
        zloop_reader(loop, kyu_frontend_sock(b.frontend), on_client, &b);
        /* The tick also wakes the loop so that it sees CZMQ's interrupted flag: SIGTERM may
         * land on any thread (RocksDB's, libzmq's), which does not interrupt the poll. */
        zloop_timer(loop, KYU_REPLICA_TICK_MS, 0, on_tick, &b);
        check_disk(&b);
        zloop_timer(loop, DISK_CHECK_MS, 0, on_disk_check, &b);
        kyu_frontend_set_loop(b.frontend, loop); /* the long polls' timer */
        zloop_start(loop); /* returns on SIGTERM/SIGINT (CZMQ's handler) or a fatal error */
        kyu_frontend_set_loop(b.frontend, NULL);
        zloop_destroy(&loop);
        /* Long polls: a leader handing over answers them NOT_LEADER (they are asked again
         * at the next leader); what is left is answered empty before the socket closes. */
        settle_early_before_exit(&b);
        transfer_before_exit(&b);
        kyu_frontend_stop_waiting(b.frontend);
        rc = kyu_replica_fatal(b.replica) ? 1 : 0;
        printf("kyu-broker: shutting down\n");
    }
    /* The storage thread finishes the write under way; entries it made durable but that were
     * not applied yet are applied from the log at the next start. */
    kyu_log_destroy(&b.log);
    kyu_snapshot_destroy(&b.snapshot);
    kyu_membership_destroy(&b.membership);
    kyu_replica_destroy(&b.replica);
    kyu_transport_destroy(&b.transport);
    kyu_frontend_destroy(&b.frontend);
    kyu_err_t ferr;
    /* not needed for safety: a start replays the log; sm is NULL when the state did not open */
    if (sm && kyu_sm_flush(sm, &ferr) != KYU_OK)
        fprintf(stderr, "kyu-broker: %s\n", ferr.msg);
    kyu_sm_destroy(&sm);
    kyu_store_close(&store);
    return rc;
}
