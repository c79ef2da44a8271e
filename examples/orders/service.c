/* orders-service: the order service of examples/orders. It accepts orders over HTTP
 * (libmicrohttpd) and publishes each to a kyu topic (libkyu); it does not know who
 * subscribes. POST /orders answers 202 Accepted only once the publish is committed (fsynced on
 * a majority of the cluster), 400 for an order it refuses, 503 when no publish was
 * acknowledged in time; GET /health answers 200 with its counters.
 *
 * Threads: libmicrohttpd's pool of --threads threads runs the handlers; each takes a libkyu
 * client (not thread-safe) from a pool of as many, made on first use. A publish that fails
 * for a reason that may pass (BUSY, a leader change that outlasts libkyu's own failover, no
 * broker reachable) is retried with a back-off until --publish-timeout.
 *
 * Built by the tree's CMake (target orders-service), or alone against an installed libkyu:
 *   cc -std=c11 service.c order.c $(pkg-config --cflags --libs libkyu libmicrohttpd jansson) -lm */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* clock_gettime, nanosleep, sigwait, getopt_long's getopt */
#endif
#include "order.h"

#include <kyu.h>

#include <microhttpd.h>

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BODY_MAX (64 * 1024) /* an order is far smaller */
#define THREADS_MAX 256
#define BACKOFF_FIRST_MS 50
#define BACKOFF_MAX_MS 1000

typedef struct {
    const char *broker;
    const char *topic;
    int publish_timeout_ms; /* a publish is retried until then */
    int client_timeout_ms;  /* each libkyu call (its own failover within): 10 s, at most
                             * publish_timeout_ms */
    size_t n;               /* clients, one per HTTP thread */
    kyu_client_t *clients[THREADS_MAX];
    bool busy[THREADS_MAX];
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_ulong accepted, refused, unavailable, retries;
} service_t;

/* A request's state across libmicrohttpd's calls: the body as it arrives. */
typedef struct {
    char *buf;
    size_t len;
    bool too_large;
} upload_t;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void pause_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* ---- the client pool ---- */

static size_t pool_take(service_t *s)
{
    pthread_mutex_lock(&s->mu);
    for (;;) {
        for (size_t i = 0; i < s->n; i++)
            if (!s->busy[i]) {
                s->busy[i] = true;
                pthread_mutex_unlock(&s->mu);
                return i;
            }
        pthread_cond_wait(&s->cv, &s->mu);
    }
}

static void pool_give(service_t *s, size_t i)
{
    pthread_mutex_lock(&s->mu);
    s->busy[i] = false;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* Codes after which a later attempt may succeed: the publish surely was not applied (BUSY,
 * NOT_LEADER, CONNECTION) or may have been (TIMEOUT: then the retry, with a new request key,
 * may publish the order twice, which its consumers absorb by order id). */
static bool retryable(kyu_code_t rc)
{
    return rc == KYU_ERR_BUSY || rc == KYU_ERR_NOT_LEADER || rc == KYU_ERR_TIMEOUT ||
           rc == KYU_ERR_CONNECTION;
}

static kyu_code_t publish_once(service_t *s, const order_t *o, char mid[KYU_MESSAGE_ID_MAX + 1],
                               kyu_err_t *err)
{
    size_t slot = pool_take(s);
    kyu_code_t rc = KYU_OK;
    if (!s->clients[slot]) {
        kyu_client_opts_t opts = kyu_client_opts_default();
        opts.timeout_ms = s->client_timeout_ms;
        opts.max_inflight = 4;
        s->clients[slot] = kyu_client_new_opts(s->broker, &opts, err);
        if (!s->clients[slot])
            rc = err->code;
    }
    if (rc == KYU_OK)
        rc = kyu_client_publish(s->clients[slot], s->topic, o->body, o->body_len, &o->attrs, mid,
                                err);
    if (rc == KYU_ERR_CONNECTION) /* start afresh next time */
        kyu_client_destroy(&s->clients[slot]);
    pool_give(s, slot);
    return rc;
}

/* Publishes o until it is acknowledged, refused for good, or publish_timeout_ms passed. */
static kyu_code_t publish(service_t *s, const order_t *o, char mid[KYU_MESSAGE_ID_MAX + 1],
                          kyu_err_t *err)
{
    int64_t deadline = now_ms() + s->publish_timeout_ms;
    int backoff = BACKOFF_FIRST_MS;
    for (int attempt = 1;; attempt++) {
        kyu_err_clear(err);
        kyu_code_t rc = publish_once(s, o, mid, err);
        if (rc == KYU_OK || !retryable(rc) || now_ms() + backoff >= deadline)
            return rc;
        atomic_fetch_add(&s->retries, 1);
        fprintf(stderr, "orders-service: order %s: publish attempt %d: %s: %s; retrying in %d ms\n",
                o->order_id, attempt, kyu_code_name(rc), err->msg, backoff);
        pause_ms(backoff);
        backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
    }
}

/* ---- HTTP ---- */

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, json_t *obj)
{
    char *text = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    if (!text)
        return MHD_NO;
    size_t len = strlen(text);
    text[len] = '\n'; /* replaces the NUL: the buffer is taken with its length */
    struct MHD_Response *r = MHD_create_response_from_buffer(len + 1, text, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(text);
        return MHD_NO;
    }
    enum MHD_Result ok = MHD_add_response_header(r, "Content-Type", "application/json");
    if (ok == MHD_YES && status == MHD_HTTP_SERVICE_UNAVAILABLE)
        ok = MHD_add_response_header(r, "Retry-After", "1");
    if (ok == MHD_YES)
        ok = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result error_reply(struct MHD_Connection *conn, unsigned status, const char *why)
{
    json_t *text = json_string(why);
    if (!text) { /* not UTF-8 (a quote of the input cut inside a character): its ASCII only */
        char ascii[ORDER_WHY_MAX + 64];
        size_t i = 0;
        for (; why[i] && i < sizeof ascii - 1; i++)
            ascii[i] = (unsigned char)why[i] < 0x80 ? why[i] : '?';
        ascii[i] = '\0';
        text = json_string(ascii);
    }
    return reply(conn, status, json_pack("{s:o}", "error", text));
}

static enum MHD_Result post_order(service_t *s, struct MHD_Connection *conn, const upload_t *u)
{
    if (u->too_large) {
        atomic_fetch_add(&s->refused, 1);
        return error_reply(conn, MHD_HTTP_CONTENT_TOO_LARGE, "an order is at most 64 KiB");
    }
    order_t o;
    char why[ORDER_WHY_MAX];
    if (!order_parse(&o, u->buf ? u->buf : "", u->len, why)) {
        atomic_fetch_add(&s->refused, 1);
        return error_reply(conn, MHD_HTTP_BAD_REQUEST, why);
    }
    char mid[KYU_MESSAGE_ID_MAX + 1] = "";
    kyu_err_t err = {0};
    kyu_code_t rc = publish(s, &o, mid, &err);
    enum MHD_Result ret;
    if (rc == KYU_OK) {
        atomic_fetch_add(&s->accepted, 1);
        ret = reply(conn, MHD_HTTP_ACCEPTED,
                    json_pack("{s:s, s:s, s:s}", "order_id", o.order_id, "message_id", mid,
                              "status", "accepted"));
    } else {
        atomic_fetch_add(&s->unavailable, 1);
        fprintf(stderr, "orders-service: order %s not accepted: %s: %s\n", o.order_id,
                kyu_code_name(rc), err.msg);
        char text[ORDER_WHY_MAX + 64];
        snprintf(text, sizeof text, "order not accepted, try again: %s: %s", kyu_code_name(rc),
                 err.msg);
        ret = error_reply(conn, MHD_HTTP_SERVICE_UNAVAILABLE, text);
    }
    order_release(&o);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)version;
    service_t *s = cls;
    bool is_post = strcmp(method, MHD_HTTP_METHOD_POST) == 0;
    if (strcmp(url, "/orders") == 0 && is_post) {
        upload_t *u = *con_cls;
        if (!u) { /* the headers: the body follows in the next calls */
            if (!(u = calloc(1, sizeof *u)))
                return MHD_NO;
            *con_cls = u;
            return MHD_YES;
        }
        if (*upload_data_size) { /* a piece of the body */
            if (!u->too_large && u->len + *upload_data_size > BODY_MAX) {
                u->too_large = true;
                free(u->buf);
                u->buf = NULL;
                u->len = 0;
            }
            if (!u->too_large) {
                char *grown = realloc(u->buf, u->len + *upload_data_size);
                if (!grown)
                    return MHD_NO;
                memcpy(grown + u->len, upload_data, *upload_data_size);
                u->buf = grown;
                u->len += *upload_data_size;
            }
            *upload_data_size = 0;
            return MHD_YES;
        }
        return post_order(s, conn, u);
    }
    if (strcmp(url, "/health") == 0 && strcmp(method, MHD_HTTP_METHOD_GET) == 0)
        return reply(conn, MHD_HTTP_OK,
                     json_pack("{s:s, s:s, s:I, s:I, s:I, s:I}", "status", "ok", "topic", s->topic,
                               "accepted", (json_int_t)atomic_load(&s->accepted), "refused",
                               (json_int_t)atomic_load(&s->refused), "unavailable",
                               (json_int_t)atomic_load(&s->unavailable), "publish_retries",
                               (json_int_t)atomic_load(&s->retries)));
    if (strcmp(url, "/orders") == 0 || strcmp(url, "/health") == 0)
        return error_reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED,
                           strcmp(url, "/orders") == 0 ? "use POST /orders" : "use GET /health");
    return error_reply(conn, MHD_HTTP_NOT_FOUND, "no such resource: POST /orders, GET /health");
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls, (void)conn, (void)toe;
    upload_t *u = *con_cls;
    if (u) {
        free(u->buf);
        free(u);
        *con_cls = NULL;
    }
}

/* ---- main ---- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: orders-service [--broker ENDPOINTS] [--listen ADDRESS:PORT] [--topic NAME]\n"
            "                      [--threads N] [--publish-timeout SEC]\n"
            "  --broker           kyu brokers, comma-separated (default $KYU_BROKER, else\n"
            "                     tcp://127.0.0.1:7700)\n"
            "  --listen           HTTP address (default 127.0.0.1:8080; port 0: any free port)\n"
            "  --topic            the topic orders are published to (default orders)\n"
            "  --threads          HTTP threads, and libkyu clients (1..%d, default 8)\n"
            "  --publish-timeout  how long a publish is retried before the order is answered\n"
            "                     503 (1..300 seconds, default 30)\n",
            THREADS_MAX);
}

static bool parse_int(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

static bool parse_listen(const char *arg, struct sockaddr_in *sa)
{
    const char *colon = strrchr(arg, ':');
    long port;
    char host[64];
    if (!colon || (size_t)(colon - arg) >= sizeof host || !parse_int(colon + 1, 0, 65535, &port))
        return false;
    memcpy(host, arg, (size_t)(colon - arg));
    host[colon - arg] = '\0';
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)port);
    return inet_pton(AF_INET, host, &sa->sin_addr) == 1;
}

int main(int argc, char **argv)
{
    static service_t s = {
        .topic = "orders", .publish_timeout_ms = 30000, .client_timeout_ms = 10000, .n = 8};
    s.broker = getenv("KYU_BROKER") ? getenv("KYU_BROKER") : "tcp://127.0.0.1:7700";
    struct sockaddr_in sa;
    parse_listen("127.0.0.1:8080", &sa);
    static const struct option longopts[] = {{"broker", required_argument, NULL, 'b'},
                                             {"listen", required_argument, NULL, 'l'},
                                             {"topic", required_argument, NULL, 't'},
                                             {"threads", required_argument, NULL, 'n'},
                                             {"publish-timeout", required_argument, NULL, 'p'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    int ch;
    long v;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case 'b':
            s.broker = optarg;
            break;
        case 'l':
            if (!parse_listen(optarg, &sa)) {
                fprintf(stderr, "orders-service: --listen '%s': give an IPv4 ADDRESS:PORT\n",
                        optarg);
                return 2;
            }
            break;
        case 't':
            s.topic = optarg;
            break;
        case 'n':
            if (!parse_int(optarg, 1, THREADS_MAX, &v)) {
                fprintf(stderr, "orders-service: --threads must be 1 to %d\n", THREADS_MAX);
                return 2;
            }
            s.n = (size_t)v;
            break;
        case 'p':
            if (!parse_int(optarg, 1, 300, &v)) {
                fprintf(stderr, "orders-service: --publish-timeout must be 1 to 300 seconds\n");
                return 2;
            }
            s.publish_timeout_ms = (int)v * 1000;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    if (s.client_timeout_ms > s.publish_timeout_ms) /* one call may not outlast the whole */
        s.client_timeout_ms = s.publish_timeout_ms;
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.cv, NULL);

    /* SIGINT and SIGTERM are taken by sigwait below: blocked before libmicrohttpd starts its
     * threads, which inherit the mask. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct MHD_Daemon *d =
        MHD_start_daemon(MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL,
                         on_request, &s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                         MHD_OPTION_THREAD_POOL_SIZE, (unsigned)s.n, MHD_OPTION_NOTIFY_COMPLETED,
                         on_completed, NULL, MHD_OPTION_CONNECTION_TIMEOUT, 60u, MHD_OPTION_END);
    if (!d) {
        char host[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &sa.sin_addr, host, sizeof host);
        fprintf(stderr, "orders-service: cannot listen on %s:%u (in use?)\n", host,
                ntohs(sa.sin_port));
        return 1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    char host[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &sa.sin_addr, host, sizeof host);
    fprintf(stderr, "orders-service: listening on http://%s:%u, publishing to topic '%s' of %s\n",
            host, info ? info->port : ntohs(sa.sin_port), s.topic, s.broker);

    int sig = 0;
    sigwait(&stop, &sig);
    fprintf(stderr, "orders-service: %s: stopping\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    MHD_stop_daemon(d); /* waits for the handlers running */
    for (size_t i = 0; i < s.n; i++)
        kyu_client_destroy(&s.clients[i]);
    fprintf(stderr,
            "orders-service: stopped: %lu orders accepted, %lu refused, %lu unavailable, %lu "
            "publish retries\n",
            atomic_load(&s.accepted), atomic_load(&s.refused), atomic_load(&s.unavailable),
            atomic_load(&s.retries));
    pthread_cond_destroy(&s.cv);
    pthread_mutex_destroy(&s.mu);
    return 0;
}
