/* kyu-bench: measures a kyu broker on the workloads of docs/BENCHMARKS.md (see bench.h and
 * client/README.md). Prints produce, consume and end-to-end msg/s, latency percentiles,
 * duplicates and missing messages, and checks that the queue is empty afterwards; exits 1
 * when a message is missing, an error occurred or the queue is not empty. */
#include "bench.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void bench_fail(bench_t *b, const char *what, const kyu_err_t *err)
{
    pthread_mutex_lock(&b->lock);
    if (!b->error[0]) {
        if (err)
            snprintf(b->error, sizeof b->error, "%s: %s: %s", what, kyu_code_name(err->code),
                     err->msg);
        else
            snprintf(b->error, sizeof b->error, "%s", what);
    }
    pthread_mutex_unlock(&b->lock);
    atomic_store(&b->failed, true);
}

kyu_client_t *bench_connect(bench_t *b)
{
    kyu_client_opts_t o = kyu_client_opts_default();
    o.timeout_ms = b->timeout_ms;
    int most = b->inflight > 2 * b->credit ? b->inflight : 2 * b->credit; /* PUSH's deletes */
    if (most + 16 > o.max_inflight)
        o.max_inflight = most + 16;
    kyu_err_t err = {0};
    kyu_client_t *c = kyu_client_new_opts(b->broker, &o, &err);
    if (!c) {
        bench_fail(b, "connect", &err);
        return NULL;
    }
    /* The pipelined calls do not follow NOT_LEADER: start on the leader of a cluster. A
     * synchronous read does (followers refuse reads and name the leader). */
    char **names = NULL;
    size_t n = 0;
    if (kyu_client_list_queues(c, &names, &n, &err) != KYU_OK) {
        bench_fail(b, "find the leader", &err);
        kyu_client_destroy(&c);
        return NULL;
    }
    kyu_queue_names_destroy(&names);
    return c;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: kyu-bench [--broker ENDPOINTS] [--workload w1|lat|w2|push|send|publish]\n"
            "                 [--count N] [--size BYTES] [--rate R] [--inflight N]\n"
            "                 [--recv-inflight N]"
            " [--credit N] [--early-credit]\n"
            "                 [--producers P] [--consumers C] [--queue NAME] [--keep-queue]\n"
            "                 [--phased] [--preload N] [--idle-timeout SEC] [--timeout SEC]\n"
            "                 [--batch N] [--wait SEC] [--groups N] [--subs N] [--json]\n"
            "                 [--latencies FILE]\n"
            "\n"
            "  w1    one request in flight per thread: send and wait; receive 1, delete, wait\n"
            "  lat   w1 with the producers paced to --rate msg/s (default 500)\n"
            "  w2    --inflight pipelined sends (default 100); consumers keep --recv-inflight\n"
            "        receives of 10 in flight (default 10: 100 messages, as the peers' W2\n"
            "        consumers hold) and delete in pipelined batches\n"
            "  push  w2's producers; each consumer opens a worker session (WORKER_OPEN) with\n"
            "        --credit N (default 100): the broker leases and pushes messages, the\n"
            "        consumer deletes each push's messages in one request and gives the credit\n"
            "        back (WORKER_HEARTBEAT) once the delete is answered (--early-credit: as\n"
            "        it is sent)\n"
            "  send  producers only, pipelined; reports send msg/s\n"
            "  publish  producers only, pipelined publishes (one message each, --count in\n"
            "        all) to a fresh topic with --subs N queues subscribed raw (default 1):\n"
            "        reports publish msg/s; each queue must then hold every message\n"
            "--batch N: w2, push and send (and --preload) put N messages (1..10) in each send\n"
            "request (default 1); --inflight counts requests.\n"
            "Defaults: --count 100000 (lat: 5000), --size 1024 (at least 16), 1 producer,\n"
            "1 consumer, a fresh queue bench-PID-TIME deleted afterwards (unless --keep-queue\n"
            "or --queue), --idle-timeout 30, --timeout 10. --phased starts the consumers\n"
            "once all is sent (separate produce and consume rates); --preload N queues N\n"
            "messages first (DEPTH), consumed but not measured. --wait SEC (0..20): the\n"
            "consumers long-poll (a receive waits up to SEC for a message) instead of backing\n"
            "off on an empty queue (default: 1 for w1 and lat, as the peers' consumers block;\n"
            "none for the others). --groups N: a FIFO queue (NAME.fifo, content-based\n"
            "deduplication; bodies are distinct), message i in message group i %% N.\n"
            "--latencies FILE: one line per message received, in send order: its sequence,\n"
            "its send time (CLOCK_MONOTONIC ns, as perf record -k CLOCK_MONOTONIC stamps\n"
            "events) and its latency (ns), to time-line slow messages against the broker.\n"
            "Broker default: $KYU_BROKER, else tcp://127.0.0.1:7700.\n");
}

static bool num(const char *s, double min, double max, double *out)
{
    char *end = NULL;
    double v = strtod(s, &end);
    if (!*s || *end || v < min || v > max)
        return false;
    *out = v;
    return true;
}

static int parse(bench_t *b, int argc, char **argv)
{
    static const struct option opts[] = {
        {"broker", 1, NULL, 'b'},
        {"workload", 1, NULL, 'w'},
        {"count", 1, NULL, 'n'},
        {"size", 1, NULL, 's'},
        {"rate", 1, NULL, 'r'},
        {"inflight", 1, NULL, 'i'},
        {"recv-inflight", 1, NULL, 'R'},
        {"producers", 1, NULL, 'p'},
        {"consumers", 1, NULL, 'c'},
        {"queue", 1, NULL, 'q'},
        {"keep-queue", 0, NULL, 'k'},
        {"phased", 0, NULL, 'P'},
        {"preload", 1, NULL, 'L'},
        {"idle-timeout", 1, NULL, 'I'},
        {"timeout", 1, NULL, 't'},
        {"json", 0, NULL, 'j'},
        {"wait", 1, NULL, 'W'},
        {"batch", 1, NULL, 'B'},
        {"credit", 1, NULL, 'C'},
        {"early-credit", 0, NULL, 'E'},
        {"groups", 1, NULL, 'G'},
        {"subs", 1, NULL, 'S'},
        {"latencies", 1, NULL, 'T'},
        {"help", 0, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    double v = 0;
    bool count_set = false, rate_set = false;
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        bool ok = true;
        switch (ch) {
        case 'b':
            b->broker = optarg;
            break;
        case 'w':
            if (strcmp(optarg, "w1") == 0)
                b->workload = BENCH_W1;
            else if (strcmp(optarg, "lat") == 0)
                b->workload = BENCH_LAT;
            else if (strcmp(optarg, "w2") == 0)
                b->workload = BENCH_W2;
            else if (strcmp(optarg, "send") == 0)
                b->workload = BENCH_SEND;
            else if (strcmp(optarg, "push") == 0)
                b->workload = BENCH_PUSH;
            else if (strcmp(optarg, "publish") == 0)
                b->workload = BENCH_PUBLISH;
            else
                ok = false;
            break;
        case 'n':
            ok = num(optarg, 1, 1e9, &v), b->count = (uint64_t)v, count_set = true;
            break;
        case 's':
            ok = num(optarg, 16, 64 << 20, &v), b->size = (size_t)v;
            break;
        case 'r':
            ok = num(optarg, 0.001, 1e7, &v), b->rate = v, rate_set = true;
            break;
        case 'i':
            ok = num(optarg, 1, 100000, &v), b->inflight = (int)v;
            break;
        case 'R':
            ok = num(optarg, 1, 100, &v), b->recv_inflight = (int)v;
            break;
        case 'C':
            ok = num(optarg, 1, KYU_WORKER_CREDIT_MAX, &v), b->credit = (int)v;
            break;
        case 'E':
            b->early_credit = true;
            break;
        case 'B':
            ok = num(optarg, 1, KYU_BATCH_MAX, &v), b->batch = (int)v;
            break;
        case 'S':
            ok = num(optarg, 1, KYU_TOPIC_SUBS_MAX, &v), b->subs = (int)v;
            break;
        case 'G':
            ok = num(optarg, 1, 1e6, &v), b->groups = (int)v;
            break;
        case 'p':
            ok = num(optarg, 1, 256, &v), b->producers = (int)v;
            break;
        case 'c':
            ok = num(optarg, 1, 256, &v), b->consumers = (int)v;
            break;
        case 'q':
            ok = kyu_queue_name_valid(optarg, strlen(optarg));
            if (ok)
                snprintf(b->queue, sizeof b->queue, "%s", optarg);
            break;
        case 'k':
            b->keep = true;
            break;
        case 'P':
            b->phased = true;
            break;
        case 'W':
            ok = num(optarg, 0, KYU_WAIT_MAX, &v), b->wait = (int)v;
            break;
        case 'L':
            ok = num(optarg, 0, 1e9, &v), b->preload = (uint64_t)v;
            break;
        case 'I':
            ok = num(optarg, 1, 3600, &v), b->idle_timeout_s = (int)v;
            break;
        case 't':
            ok = num(optarg, 1, 3600, &v), b->timeout_ms = (int)(v * 1000);
            break;
        case 'j':
            b->json = true;
            break;
        case 'T':
            b->latencies = optarg;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            ok = false;
        }
        if (!ok) {
            fprintf(stderr, "kyu-bench: bad option or value: %s\n", argv[optind - 1]);
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "kyu-bench: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    if (b->workload == BENCH_LAT && !count_set)
        b->count = 5000;
    if (b->workload == BENCH_LAT && !rate_set)
        b->rate = 500;
    if (b->workload != BENCH_LAT)
        b->rate = 0;
    if (b->workload == BENCH_PUBLISH && (b->batch > 1 || b->groups > 0 || b->preload)) {
        fprintf(stderr, "kyu-bench: publish takes no --batch, --groups or --preload\n");
        return 2;
    }
    if (b->workload == BENCH_SEND || b->workload == BENCH_PUBLISH)
        b->consumers = 0;
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static double rate(uint64_t n, int64_t from_ns, int64_t to_ns)
{
    return to_ns > from_ns ? (double)n * 1e9 / (double)(to_ns - from_ns) : 0;
}

static const char *workload_name(bench_workload_t w)
{
    static const char *names[] = {"w1", "lat", "w2", "send", "push", "publish"};
    return names[w];
}

/* PUBLISH: subscribed queue i's name (0: the run's queue) into out. */
static void sub_queue(const bench_t *b, int i, char out[KYU_NAME_MAX + 1])
{
    if (i == 0)
        snprintf(out, KYU_NAME_MAX + 1, "%s", b->queue);
    else
        snprintf(out, KYU_NAME_MAX + 1, "%.66s-s%d", b->queue, i);
}

/* PUBLISH: the topic (named as the queue) and its --subs queues, each subscribed raw. */
static bool setup_topic(bench_t *b, kyu_client_t *c)
{
    kyu_err_t err = {0};
    snprintf(b->topic, sizeof b->topic, "%s", b->queue);
    if (kyu_client_create_topic(c, b->topic, &err) != KYU_OK) {
        bench_fail(b, "create-topic", &err);
        return false;
    }
    for (int i = 0; i < b->subs; i++) {
        char q[KYU_NAME_MAX + 1], id[KYU_SUB_ID_LEN + 1];
        sub_queue(b, i, q);
        if (i > 0 && kyu_client_create_queue(c, q, -1, &err) != KYU_OK &&
            err.code != KYU_ERR_QUEUE_EXISTS) {
            bench_fail(b, "create-queue", &err);
            return false;
        }
        if (kyu_client_subscribe(c, b->topic, q, true, id, &err) != KYU_OK) {
            bench_fail(b, "subscribe", &err);
            return false;
        }
    }
    return true;
}

/* PUBLISH: every subscribed queue holds every message (else the run fails); a fresh run's
 * topic and extra queues are deleted unless --keep-queue. */
static void check_topic(bench_t *b, kyu_client_t *c)
{
    kyu_err_t err = {0};
    for (int i = 0; i < b->subs; i++) {
        char q[KYU_NAME_MAX + 1];
        sub_queue(b, i, q);
        kyu_queue_attrs_t at = {0};
        if (kyu_client_get_queue_attributes(c, q, &at, &err) != KYU_OK)
            bench_fail(b, "get-queue-attributes", &err);
        else if (!atomic_load(&b->failed) && (uint64_t)at.visible != b->count) {
            char text[160];
            snprintf(text, sizeof text, "queue %s holds %llu messages, not %llu", q,
                     (unsigned long long)at.visible, (unsigned long long)b->count);
            bench_fail(b, text, NULL);
        }
        if (i > 0 && b->fresh_queue && !b->keep && kyu_client_delete_queue(c, q, &err) != KYU_OK)
            fprintf(stderr, "kyu-bench: delete-queue %s: %s\n", q, err.msg);
    }
    if (b->fresh_queue && !b->keep && kyu_client_delete_topic(c, b->topic, &err) != KYU_OK)
        fprintf(stderr, "kyu-bench: delete-topic %s: %s\n", b->topic, err.msg);
}

/* Creates the queue (fresh name unless --queue); when the run is over, checks it is empty
 * (no message visible or leased) and deletes a fresh one. */
static kyu_client_t *setup_queue(bench_t *b)
{
    if (!b->queue[0]) {
        snprintf(b->queue, sizeof b->queue, "bench-%ld-%lld%s", (long)getpid(),
                 (long long)time(NULL), b->groups > 0 ? ".fifo" : "");
        b->fresh_queue = true;
    }
    kyu_client_t *c = bench_connect(b);
    kyu_err_t err = {0};
    kyu_queue_settings_t s;
    kyu_queue_settings_init(&s);
    if (b->groups > 0) /* --groups: FIFO, deduplicated by content (the bodies differ) */
        s.fifo = s.content_based_dedup = 1;
    if (c && kyu_client_create_queue_with(c, b->queue, &s, &err) != KYU_OK &&
        err.code != KYU_ERR_QUEUE_EXISTS) {
        bench_fail(b, "create-queue", &err);
        kyu_client_destroy(&c);
    }
    if (c && b->workload == BENCH_PUBLISH && !setup_topic(b, c))
        kyu_client_destroy(&c);
    return c;
}

static void run_threads(bench_t *b)
{
    int n = b->producers + b->consumers;
    pthread_t *th = calloc((size_t)n, sizeof *th);
    bench_thread_t *args = calloc((size_t)n, sizeof *args);
    if (!th || !args) {
        bench_fail(b, "out of memory", NULL);
        free(th);
        free(args);
        return;
    }
    atomic_store(&b->producers_left, b->producers);
    b->start_ns = bench_now_ns();
    int started = 0;
    for (int i = 0; i < n; i++) {
        bool producer = i < b->producers;
        if (!producer && b->phased && i == b->producers) {
            for (int k = 0; k < started; k++) /* wait for the producers first */
                pthread_join(th[k], NULL);
            started = 0;
            b->consume_start_ns = bench_now_ns();
        }
        args[i] = (bench_thread_t){b, producer ? i : i - b->producers};
        if (pthread_create(&th[i], NULL, producer ? bench_producer : bench_consumer, &args[i]) !=
            0) {
            bench_fail(b, "cannot start a thread", NULL);
            break;
        }
        started = i + 1;
    }
    for (int k = b->phased && b->consumers ? b->producers : 0; k < started; k++)
        pthread_join(th[k], NULL);
    b->consumed_ns = bench_now_ns();
    if (!b->phased || !b->consumers)
        b->consume_start_ns = b->start_ns;
    free(th);
    free(args);
}

/* --latencies: each received message's sequence, send time and latency, in send order
 * (sequence order: LAT's one producer sends in it), for a time line of the slow ones. */
static void write_latencies(bench_t *b)
{
    FILE *f = fopen(b->latencies, "w");
    if (!f) {
        bench_fail(b, "cannot write the --latencies file", NULL);
        return;
    }
    fprintf(f, "# seq sent_ns latency_ns\n");
    for (uint64_t s = 0; s < b->count; s++)
        if (atomic_load(&b->seen[s]))
            fprintf(f, "%llu %lld %llu\n", (unsigned long long)s, (long long)b->sent_ns[s],
                    (unsigned long long)b->latency_ns[s]);
    if (fclose(f) != 0)
        bench_fail(b, "cannot write the --latencies file", NULL);
}

static int report(bench_t *b, bool empty_checked, const kyu_queue_attrs_t *at)
{
    uint64_t consumed = atomic_load(&b->consumed), missing = 0;
    uint64_t *lat = malloc((consumed ? consumed : 1) * sizeof *lat);
    size_t n = 0;
    for (uint64_t s = 0; b->consumers && s < b->count; s++) {
        if (!atomic_load(&b->seen[s]))
            missing++;
        else if (lat && n < consumed)
            lat[n++] = b->latency_ns[s];
    }
    if (lat)
        qsort(lat, n, sizeof *lat, cmp_u64);
    double pct[4] = {0}, q[4] = {0.50, 0.90, 0.99, 1.0};
    for (int i = 0; i < 4 && n > 0 && lat; i++) {
        size_t k = (size_t)(q[i] * (double)n);
        pct[i] = (double)lat[k >= n ? n - 1 : k] / 1000.0;
    }
    free(lat);
    bool empty = empty_checked && at->visible == 0 && at->not_visible == 0;
    bool ok = !atomic_load(&b->failed) && missing == 0 && (!b->consumers || empty);
    json_t *o = json_pack(
        "{s:s, s:I, s:I, s:i, s:i, s:i, s:s, s:f, s:f, s:f, s:{s:f, s:f, s:f, s:f}, s:I, s:I, "
        "s:I, s:b, s:b}",
        "workload", workload_name(b->workload), "count", (json_int_t)b->count, "size",
        (json_int_t)b->size, "batch", b->batch, "producers", b->producers, "consumers",
        b->consumers, "queue", b->queue, "produce_msg_s",
        rate(b->count, b->start_ns, b->produced_ns), "consume_msg_s",
        rate(consumed, b->consume_start_ns, b->consumed_ns), "end_to_end_msg_s",
        rate(consumed, b->start_ns, b->consumed_ns), "latency_us", "p50", pct[0], "p90", pct[1],
        "p99", pct[2], "max", pct[3], "duplicates", (json_int_t)atomic_load(&b->duplicates),
        "missing", (json_int_t)missing, "delete_errors", (json_int_t)atomic_load(&b->delete_errors),
        "queue_empty", empty, "ok", ok);
    if (o && b->workload == BENCH_PUSH) {
        json_object_set_new(o, "credit", json_integer(b->credit));
        json_object_set_new(o, "early_credit", json_boolean(b->early_credit));
    }
    if (o && b->error[0])
        json_object_set_new(o, "error", json_string(b->error));
    if (b->json) {
        char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
        if (s)
            puts(s);
        free(s);
    } else {
        printf("workload %s: %llu messages of %zu bytes, %d producer(s), %d consumer(s), "
               "queue %s%s\n",
               workload_name(b->workload), (unsigned long long)b->count, b->size, b->producers,
               b->consumers, b->queue, b->phased ? ", phased" : "");
        if (b->workload == BENCH_PUSH)
            printf("worker sessions with credit %d, credit given back as deletes are %s\n",
                   b->credit, b->early_credit ? "sent" : "answered");
        printf("produce      %10.0f msg/s\n", rate(b->count, b->start_ns, b->produced_ns));
        if (b->consumers) {
            printf("consume      %10.0f msg/s\n",
                   rate(consumed, b->consume_start_ns, b->consumed_ns));
            printf("end to end   %10.0f msg/s\n", rate(consumed, b->start_ns, b->consumed_ns));
            printf("latency us   p50 %.0f  p90 %.0f  p99 %.0f  max %.0f\n", pct[0], pct[1], pct[2],
                   pct[3]);
            printf("duplicates %llu, missing %llu, delete errors %llu, queue empty: %s\n",
                   (unsigned long long)atomic_load(&b->duplicates), (unsigned long long)missing,
                   (unsigned long long)atomic_load(&b->delete_errors), empty ? "yes" : "NO");
        }
        if (b->error[0])
            printf("error: %s\n", b->error);
    }
    json_decref(o);
    return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
    static bench_t b;
    const char *env = getenv("KYU_BROKER");
    b.broker = env && *env ? env : "tcp://127.0.0.1:7700";
    b.workload = BENCH_W1;
    b.count = 100000;
    b.size = 1024;
    b.inflight = 100;
    b.recv_inflight = 10; /* 100 messages in flight: PERFORMANCE.md's W2, the peers' COUNT 100 */
    b.credit = 100;
    b.batch = 1;
    b.producers = b.consumers = 1;
    b.idle_timeout_s = 30;
    b.timeout_ms = 10000;
    b.wait = -1;
    b.subs = 1;
    int rc = parse(&b, argc, argv);
    if (rc)
        return rc;
    /* W1's and LAT's consumers block as the peers' do (Redis XREADGROUP BLOCK 1000,
     * beanstalkd reserve-with-timeout 1): a long poll of 1 s, unless --wait says otherwise. */
    if (b.wait < 0 && (b.workload == BENCH_W1 || b.workload == BENCH_LAT))
        b.wait = 1;
    if (pthread_mutex_init(&b.lock, NULL) != 0)
        return 1;
    b.seen = calloc(b.count, sizeof *b.seen);
    b.latency_ns = calloc(b.count, sizeof *b.latency_ns);
    b.sent_ns = calloc(b.count, sizeof *b.sent_ns);
    if (!b.seen || !b.latency_ns || !b.sent_ns) {
        fprintf(stderr, "kyu-bench: out of memory for %llu messages\n",
                (unsigned long long)b.count);
        return 1;
    }
    kyu_client_t *admin = setup_queue(&b);
    if (admin && b.preload && !bench_preload(&b))
        kyu_client_destroy(&admin);
    if (!admin) {
        fprintf(stderr, "kyu-bench: %s\n", b.error);
        return 1;
    }
    run_threads(&b);
    if (b.workload == BENCH_PUBLISH)
        check_topic(&b, admin);
    kyu_queue_attrs_t at = {0};
    kyu_err_t err = {0};
    bool checked = kyu_client_get_queue_attributes(admin, b.queue, &at, &err) == KYU_OK;
    if (!checked && b.consumers)
        bench_fail(&b, "get-queue-attributes", &err);
    if (b.latencies && b.consumers)
        write_latencies(&b);
    rc = report(&b, checked, &at);
    if (b.fresh_queue && !b.keep && kyu_client_delete_queue(admin, b.queue, &err) != KYU_OK)
        fprintf(stderr, "kyu-bench: delete-queue %s: %s\n", b.queue, err.msg);
    kyu_client_destroy(&admin);
    free(b.seen);
    free(b.latency_ns);
    free(b.sent_ns);
    pthread_mutex_destroy(&b.lock);
    return rc;
}
