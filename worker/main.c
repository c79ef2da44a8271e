/* kyu-worker: Lambda's SQS event source mapping as a program. It serves one queue through
 * libkyu's consumer (kyu.h): batches of pushed messages go to a command (--exec, the event
 * on stdin) or an HTTP endpoint (--http); succeeded messages are deleted, failed ones
 * retried after a back-off. Every flag is checked before any broker is contacted (exit 2);
 * SIGTERM or SIGINT drains (exit 0). */
#include "handler.h"

#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_BROKER "tcp://127.0.0.1:7700"

static kyu_consumer_t *consumer;
static kyu_worker_filter_t filter; /* --filter's patterns */

static void on_signal(int sig)
{
    (void)sig;
    if (consumer)
        kyu_consumer_drain(consumer);
}

static void log_line(const char *line)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[32];
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    fprintf(stderr, "%s.%03ldZ kyu-worker: %s\n", when, ts.tv_nsec / 1000000, line);
}

static void log_consumer(void *arg, const char *line)
{
    (void)arg;
    log_line(line);
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: kyu-worker --queue NAME (--exec CMD | --http URL) [options]\n"
            "Serves a queue as Lambda's SQS trigger does: batches of messages go to a handler;\n"
            "succeeded messages are deleted, failed ones retried after a back-off (so the\n"
            "queue's maxReceiveCount and dead-letter queue apply).\n"
            "  --queue NAME                 the queue to serve (required)\n"
            "  --broker ENDPOINTS           comma-separated broker endpoints; default "
            "$KYU_BROKER, else %s\n"
            "  --exec CMD                   run CMD with /bin/sh -c per batch, the batch as "
            "Lambda's\n"
            "                               SQS event JSON on stdin; exit 0: all succeeded\n"
            "  --http URL                   POST the event to URL; a 2xx status: all succeeded\n"
            "  --report-batch-item-failures read {\"batchItemFailures\":[{\"itemIdentifier\": "
            "ID}]}\n"
            "                               from the handler's stdout or HTTP body: only those "
            "failed\n"
            "  --batch-size N               1..10000 messages a batch (default 10)\n"
            "  --batch-window SEC           0..300: gather a batch this long at most (default "
            "0;\n"
            "                               at least 1 when --batch-size is over 10)\n"
            "  --max-concurrency N          1..1000 concurrent batches (default 10)\n"
            "  --initial-concurrency N      concurrent batches at start (default min(5, max))\n"
            "  --handler-timeout SEC        0.1..900: a handler running longer is stopped "
            "(SIGTERM,\n"
            "                               then SIGKILL) and its messages retried (default "
            "30)\n"
            "  --visibility-timeout SEC     1..43200: each lease (default: the queue's)\n"
            "  --max-extension SEC          0..43200: leases are extended while a handler runs "
            "up to\n"
            "                               this long after receipt (default 900; 0: never)\n"
            "  --backoff-base SEC           0..43200: the first retry's delay (default 1; 0: at "
            "once)\n"
            "  --backoff-max SEC            base..43200: the longest retry delay (default "
            "300);\n"
            "                               a retry waits base*2^(receives-1), with jitter\n"
            "  --heartbeat SEC              0.1..60: the session's heartbeat (default 1)\n"
            "  --liveness N                 1..100 heartbeats missed before a session is dead "
            "(default 3)\n"
            "  --drain-timeout SEC          0..3600: SIGTERM waits this long for running "
            "batches\n"
            "                               (default: the handler timeout)\n"
            "  --name NAME                  the worker's name in `kyu workers` (default "
            "host:pid)\n"
            "  --region NAME                the event's awsRegion (default local)\n"
            "  --filter PATTERN             Lambda's event filtering (repeatable, up to 5, "
            "ORed):\n"
            "                               a JSON pattern over the message as Lambda sees it,\n"
            "                               e.g. '{\"body\": {\"type\": [\"paid\"]}}'; a "
            "message no\n"
            "                               pattern matches is deleted unprocessed\n"
            "  --filter-keep                release non-matching messages at once (visibility "
            "0)\n"
            "                               for other consumers instead of deleting them\n"
            "Exit status: 0 drained (SIGTERM, SIGINT), 1 failed (queue deleted, no broker), "
            "2 usage error.\n",
            DEFAULT_BROKER);
}

static int bad(const char *fmt, const char *flag, const char *value)
{
    kyu_worker_filter_free(&filter);
    fprintf(stderr, "kyu-worker: ");
    fprintf(stderr, fmt, flag, value);
    fprintf(stderr, "\n(kyu-worker --help for usage)\n");
    return 2;
}

static bool parse_int(const char *s, long min, long max, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        return false;
    *out = (int)v;
    return true;
}

/* Seconds, decimals allowed, into ms. */
static bool parse_secs(const char *s, double min, double max, int *out_ms)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < min || v > max)
        return false;
    *out_ms = (int)llround(v * 1000);
    return true;
}

int main(int argc, char **argv)
{
    kyu_consumer_opts_t o = kyu_consumer_opts_default();
    kyu_handler_cfg_t cfg = {.region = "local", .log = log_line};
    const char *broker = getenv("KYU_BROKER");
    if (!broker || !*broker)
        broker = DEFAULT_BROKER;
    enum {
        O_QUEUE = 256,
        O_BROKER,
        O_EXEC,
        O_HTTP,
        O_REPORT,
        O_BATCH,
        O_WINDOW,
        O_MAXC,
        O_INITC,
        O_TIMEOUT,
        O_VT,
        O_MAXEXT,
        O_BBASE,
        O_BMAX,
        O_HB,
        O_LV,
        O_DRAIN,
        O_NAME,
        O_REGION,
        O_FILTER,
        O_FILTER_KEEP,
        O_HELP
    };
    static const struct option longopts[] = {
        {"queue", required_argument, NULL, O_QUEUE},
        {"broker", required_argument, NULL, O_BROKER},
        {"exec", required_argument, NULL, O_EXEC},
        {"http", required_argument, NULL, O_HTTP},
        {"report-batch-item-failures", no_argument, NULL, O_REPORT},
        {"batch-size", required_argument, NULL, O_BATCH},
        {"batch-window", required_argument, NULL, O_WINDOW},
        {"max-concurrency", required_argument, NULL, O_MAXC},
        {"initial-concurrency", required_argument, NULL, O_INITC},
        {"handler-timeout", required_argument, NULL, O_TIMEOUT},
        {"visibility-timeout", required_argument, NULL, O_VT},
        {"max-extension", required_argument, NULL, O_MAXEXT},
        {"backoff-base", required_argument, NULL, O_BBASE},
        {"backoff-max", required_argument, NULL, O_BMAX},
        {"heartbeat", required_argument, NULL, O_HB},
        {"liveness", required_argument, NULL, O_LV},
        {"drain-timeout", required_argument, NULL, O_DRAIN},
        {"name", required_argument, NULL, O_NAME},
        {"region", required_argument, NULL, O_REGION},
        {"filter", required_argument, NULL, O_FILTER},
        {"filter-keep", no_argument, NULL, O_FILTER_KEEP},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0}};
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        const char *v = optarg;
        switch (ch) {
        case O_QUEUE:
            o.queue = v;
            break;
        case O_BROKER:
            broker = v;
            break;
        case O_EXEC:
            cfg.exec = v;
            break;
        case O_HTTP:
            cfg.http = v;
            break;
        case O_REPORT:
            cfg.report_failures = true;
            break;
        case O_BATCH:
            if (!parse_int(v, 1, 10000, &o.batch_size))
                return bad("%s must be 1 to 10000 messages, not '%s'", "--batch-size", v);
            break;
        case O_WINDOW:
            if (!parse_secs(v, 0, 300, &o.batch_window_ms))
                return bad("%s must be 0 to 300 seconds, not '%s'", "--batch-window", v);
            break;
        case O_MAXC:
            if (!parse_int(v, 1, 1000, &o.max_concurrency))
                return bad("%s must be 1 to 1000, not '%s'", "--max-concurrency", v);
            break;
        case O_INITC:
            if (!parse_int(v, 1, 1000, &o.initial_concurrency))
                return bad("%s must be 1 to 1000, not '%s'", "--initial-concurrency", v);
            break;
        case O_TIMEOUT:
            if (!parse_secs(v, 0.1, 900, &o.handler_timeout_ms))
                return bad("%s must be 0.1 to 900 seconds, not '%s'", "--handler-timeout", v);
            break;
        case O_VT:
            if (!parse_int(v, 1, KYU_VISIBILITY_MAX, &o.visibility_timeout))
                return bad("%s must be 1 to 43200 seconds, not '%s'", "--visibility-timeout", v);
            break;
        case O_MAXEXT:
            if (!parse_int(v, 0, KYU_VISIBILITY_MAX, &o.max_extension_s))
                return bad("%s must be 0 to 43200 seconds, not '%s'", "--max-extension", v);
            break;
        case O_BBASE:
            if (!parse_secs(v, 0, 43200, &o.backoff_base_ms))
                return bad("%s must be 0 to 43200 seconds, not '%s'", "--backoff-base", v);
            break;
        case O_BMAX:
            if (!parse_secs(v, 0, 43200, &o.backoff_max_ms))
                return bad("%s must be 0 to 43200 seconds, not '%s'", "--backoff-max", v);
            break;
        case O_HB:
            if (!parse_secs(v, 0.1, 60, &o.heartbeat_ms))
                return bad("%s must be 0.1 to 60 seconds, not '%s'", "--heartbeat", v);
            break;
        case O_LV:
            if (!parse_int(v, 1, 100, &o.liveness))
                return bad("%s must be 1 to 100 heartbeats, not '%s'", "--liveness", v);
            break;
        case O_DRAIN:
            if (!parse_secs(v, 0, 3600, &o.drain_timeout_ms))
                return bad("%s must be 0 to 3600 seconds, not '%s'", "--drain-timeout", v);
            break;
        case O_NAME:
            o.name = v;
            break;
        case O_REGION:
            cfg.region = v;
            break;
        case O_FILTER: {
            kyu_err_t ferr = {0};
            if (kyu_worker_filter_add(&filter, v, &ferr) != KYU_OK)
                return bad("%s: %s", "--filter", ferr.msg);
            break;
        }
        case O_FILTER_KEEP:
            o.filter_keep = true;
            break;
        case O_HELP:
            usage(stdout);
            return 0;
        default:
            return bad("%s%s: unknown option or missing value", argv[optind - 1], "");
        }
    }
    if (optind < argc)
        return bad("unexpected argument %s%s", argv[optind], "");
    if (!o.queue)
        return bad("%s is required%s", "--queue NAME", "");
    if (!!cfg.exec == !!cfg.http)
        return bad("give one handler: %s or --http URL%s", "--exec CMD", "");
    if (cfg.exec && !*cfg.exec)
        return bad("%s needs a command%s", "--exec", "");
    if (cfg.http && strncmp(cfg.http, "http://", 7) != 0 && strncmp(cfg.http, "https://", 8) != 0)
        return bad("%s needs an http:// or https:// URL, not '%s'", "--http", cfg.http);
    if (!kyu_queue_name_valid(o.queue, strlen(o.queue)))
        return bad("%s '%s': 1 to 80 characters of letters, digits, - and _", "--queue", o.queue);
    if (o.initial_concurrency > o.max_concurrency)
        return bad("%s must not exceed --max-concurrency%s", "--initial-concurrency", "");
    if (o.backoff_max_ms < o.backoff_base_ms)
        return bad("%s must be at least --backoff-base%s", "--backoff-max", "");
    if (o.batch_size > 10 && o.batch_window_ms < 1000)
        return bad("%s over 10 needs --batch-window of at least 1 second (Lambda's rule)%s",
                   "--batch-size", "");
    if (o.name) {
        size_t len = strlen(o.name);
        bool okname = len >= 1 && len <= 64;
        for (size_t i = 0; okname && i < len; i++)
            okname = o.name[i] > 0x20 && o.name[i] < 0x7f;
        if (!okname)
            return bad("%s must be 1 to 64 printable characters without spaces, not '%s'", "--name",
                       o.name);
    }
    if (!*cfg.region || strlen(cfg.region) > 64)
        return bad("%s must be 1 to 64 characters, not '%s'", "--region", cfg.region);
    if (o.filter_keep && filter.n == 0)
        return bad("%s goes with --filter PATTERN%s", "--filter-keep", "");
    cfg.queue = o.queue;
    o.log = log_consumer;
    filter.queue = o.queue;
    filter.region = cfg.region;
    if (filter.n) {
        o.filter = kyu_worker_filter;
        o.filter_arg = &filter;
    }

    struct sigaction ign = {0};
    ign.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &ign, NULL); /* a handler that exits without reading its stdin */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
        fprintf(stderr, "kyu-worker: curl_global_init failed\n");
        kyu_worker_filter_free(&filter);
        return 1;
    }
    kyu_err_t err = {0};
    consumer = kyu_consumer_new(broker, &o, kyu_worker_handle, &cfg, &err);
    if (!consumer) {
        fprintf(stderr, "kyu-worker: %s: %s\n", kyu_code_name(err.code), err.msg);
        curl_global_cleanup();
        kyu_worker_filter_free(&filter);
        return err.code == KYU_ERR_INVALID_ARGUMENT ? 2 : 1;
    }
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    kyu_code_t rc = kyu_consumer_run(consumer, &err);
    if (rc != KYU_OK)
        fprintf(stderr, "kyu-worker: %s: %s\n", kyu_code_name(rc), err.msg);
    if (filter.n) {
        kyu_consumer_stats_t st;
        kyu_consumer_stats(consumer, &st);
        char line[160];
        snprintf(line, sizeof line, "%llu messages matched no --filter pattern: %s",
                 (unsigned long long)st.filtered,
                 o.filter_keep ? "released for other consumers" : "deleted unprocessed");
        log_line(line);
    }
    kyu_consumer_destroy(&consumer);
    kyu_worker_filter_free(&filter);
    curl_global_cleanup();
    return rc == KYU_OK ? 0 : 1;
}
