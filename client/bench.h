/* bench: what kyu-bench's files share. bench.c: options, setup, the report;
 * bench_run.c: the producer and consumer threads of each workload (docs/BENCHMARKS.md:
 * W1, LAT, W2, PUSH, send-only; W3 is these against a cluster, DEPTH is --preload).
 *
 * Every message starts with 16 bytes: the CLOCK_MONOTONIC time just before its send (ns)
 * and its sequence number. Consumers mark each sequence seen (an atomic flag per sequence:
 * a second sighting is a duplicate) and record its latency in the slot of its sequence, so
 * threads share no lock on the hot path. */
#ifndef KYU_BENCH_H
#define KYU_BENCH_H

#include "kyu.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

typedef enum {
    BENCH_W1,
    BENCH_LAT,
    BENCH_W2,
    BENCH_SEND,
    BENCH_PUSH,
    BENCH_PUBLISH
} bench_workload_t;

#define BENCH_PRELOAD_FLAG (1ULL << 63) /* sequence bit of --preload messages: not measured */

typedef struct {
    const char *broker;
    bench_workload_t workload;
    uint64_t count;
    size_t size;
    double rate;       /* LAT: messages per second over all producers */
    int inflight;      /* W2 / send: pipelined sends per producer */
    int batch;         /* W2 / send: messages per send request, 1..10 (a SEND of as many bodies) */
    int recv_inflight; /* W2: pipelined receives per consumer */
    int credit;        /* PUSH: each consumer's worker session's credit */
    bool early_credit; /* PUSH: credit goes back as a delete is sent, not once it is answered */
    int producers, consumers;
    char queue[KYU_NAME_MAX + 1];
    bool fresh_queue; /* created by this run: deleted at the end unless keep */
    bool keep;
    bool phased; /* consumers start once every producer is done */
    bool json;
    uint64_t preload; /* DEPTH: messages queued before the run */
    int idle_timeout_s;
    int timeout_ms;
    int wait;   /* consumers' receives wait this long for a message (long polling); -1: none */
    int groups; /* > 0: a FIFO queue (content-based deduplication), message i in group i % groups */
    int subs;   /* PUBLISH: queues subscribed (raw) to the run's topic: queue, queue-s1, ... */
    char topic[KYU_NAME_MAX + 1]; /* PUBLISH: the topic (named as the queue) */

    /* shared results */
    atomic_uchar *seen;    /* per sequence */
    uint64_t *latency_ns;  /* per sequence, written by the consumer that saw it first */
    int64_t *sent_ns;      /* per sequence, its send time (CLOCK_MONOTONIC), likewise */
    const char *latencies; /* --latencies FILE: every message's times written there */
    atomic_uint_fast64_t consumed, duplicates, send_errors, delete_errors, preload_seen;
    atomic_int producers_left;
    atomic_bool failed;
    int64_t start_ns, produced_ns, consume_start_ns, consumed_ns;
    pthread_mutex_t lock; /* error text and the times above */
    char error[KYU_ERR_MSG_MAX + 64];
} bench_t;

typedef struct {
    bench_t *b;
    int index;
} bench_thread_t;

int64_t bench_now_ns(void);
/* Records the first error (the run then stops and fails). */
void bench_fail(bench_t *b, const char *what, const kyu_err_t *err);
/* Connects a client with the run's options; NULL after bench_fail. */
kyu_client_t *bench_connect(bench_t *b);

void *bench_producer(void *arg);
void *bench_consumer(void *arg);
/* Sends --preload messages with the preload flag (pipelined), before the timed run. */
bool bench_preload(bench_t *b);

#endif
