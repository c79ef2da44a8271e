/* kyu-broker: one node of kyu. Parses flags, opens the store, replays the log, and runs the
 * event loop: client requests on the frontend's ROUTER, durability reports from the storage
 * thread. The ack-after-fsync rule lives in the replica: a write's reply is sent from the
 * storage thread's "durable" report, never from the request handler. */
#include "frontend.h"

#include <getopt.h>
#include <stdlib.h>

typedef struct {
    const char *data_dir;
    const char *listen;
    size_t max_body;
} config_t;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: kyu-broker [--data DIR] [--listen ENDPOINT] [--max-message-size BYTES]\n"
            "\n"
            "Runs a kyu broker node: queues with SQS semantics, stored durably in RocksDB.\n"
            "\n"
            "  --data DIR               data directory (default ./kyu-data)\n"
            "  --listen ENDPOINT        client endpoint (default tcp://127.0.0.1:7700)\n"
            "  --max-message-size N     largest message body in bytes (default %d, 1 MiB)\n"
            "  --help                   this text\n"
            "\n"
            "SIGTERM or SIGINT stops the broker cleanly.\n",
            KYU_BODY_MAX_DEFAULT);
}

static int parse_args(int argc, char **argv, config_t *cfg)
{
    static const struct option opts[] = {
        {"data", required_argument, NULL, 'd'},
        {"listen", required_argument, NULL, 'l'},
        {"max-message-size", required_argument, NULL, 'm'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *cfg = (config_t){"./kyu-data", "tcp://127.0.0.1:7700", KYU_BODY_MAX_DEFAULT};
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            cfg->data_dir = optarg;
            break;
        case 'l':
            cfg->listen = optarg;
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
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "kyu-broker: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    return -1;
}

typedef struct {
    kyu_frontend_t *frontend;
    kyu_replica_t *replica;
    kyu_log_t *log;
} broker_t;

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
    while (zsock_events(kyu_log_sock(b->log)) & ZMQ_POLLIN) {
        if (kyu_log_recv(b->log, &ev, &err) != KYU_OK) {
            fprintf(stderr, "kyu-broker: %s\n", err.msg);
            return -1;
        }
        kyu_replica_on_log_event(b->replica, &ev);
    }
    return 0;
}

/* Nothing to do: the wake-up itself lets zloop see CZMQ's interrupted flag. SIGTERM may be
 * delivered to any thread (RocksDB's, libzmq's), which then does not interrupt the loop's
 * poll; without a timer the broker could sleep through it. */
static int on_wakeup(zloop_t *loop, int timer_id, void *arg)
{
    (void)loop;
    (void)timer_id;
    (void)arg;
    return 0;
}

int main(int argc, char **argv)
{
    config_t cfg;
    int rc = parse_args(argc, argv, &cfg);
    if (rc >= 0)
        return rc;
    zsys_init();
    zsys_set_logstream(NULL);
    kyu_err_t err;
    kyu_err_clear(&err);
    broker_t b = {0};
    kyu_store_t *store = kyu_store_open(cfg.data_dir, &err);
    kyu_sm_t *sm = store ? kyu_sm_open(store, &err) : NULL;
    kyu_frontend_config_t fcfg = {.endpoint = cfg.listen, .max_body = cfg.max_body};
    if (sm)
        b.frontend = kyu_frontend_new(&fcfg, sm, &err);
    if (b.frontend)
        b.log = kyu_log_new(store, &err);
    if (b.log)
        b.replica = kyu_replica_new(store, sm, b.log, kyu_frontend_on_result, b.frontend, &err);
    if (!b.replica) {
        fprintf(stderr, "kyu-broker: %s\n", err.msg);
        rc = 1;
    } else {
        kyu_frontend_set_replica(b.frontend, b.replica);
        printf("kyu-broker: serving %s, data in %s, %zu queues, applied index %llu\n", cfg.listen,
               cfg.data_dir, kyu_sm_queue_count(sm), (unsigned long long)kyu_sm_applied_index(sm));
        fflush(stdout);
        zloop_t *loop = zloop_new();
        KYU_ASSERT(loop);
        /* Storage reports first: answering finished work frees room for new requests. */
        zloop_reader(loop, kyu_log_sock(b.log), on_storage, &b);
        zloop_reader(loop, kyu_frontend_sock(b.frontend), on_client, &b);
        zloop_timer(loop, 100, 0, on_wakeup, NULL);
        zloop_start(loop); /* returns on SIGTERM/SIGINT (CZMQ's handler) or a fatal error */
        zloop_destroy(&loop);
        printf("kyu-broker: shutting down\n");
        rc = 0;
    }
    /* The storage thread finishes the write under way; entries it made durable but that were
     * not applied yet are applied from the log at the next start. */
    kyu_log_destroy(&b.log);
    kyu_replica_destroy(&b.replica);
    kyu_frontend_destroy(&b.frontend);
    kyu_sm_destroy(&sm);
    kyu_store_close(&store);
    return rc;
}
