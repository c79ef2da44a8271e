/* example_consumer: a C program that serves a queue with an embedded handler (kyu.h's
 * consumer API). It prints each message's body and fails the ones whose body is "fail", so
 * they come back after a back-off and end in the queue's dead-letter queue if it has one.
 * SIGINT or SIGTERM drains it: running batches finish, then it exits.
 *
 *   example_consumer tcp://127.0.0.1:7700 orders
 *
 * Built with the tree (CMake target example_consumer), or against an installed libkyu:
 *   cc example_consumer.c $(pkg-config --cflags --libs libkyu) -o example_consumer */
#include <kyu.h>

#include <signal.h>
#include <stdio.h>
#include <string.h>

static kyu_consumer_t *consumer;

static void on_signal(int sig)
{
    (void)sig;
    kyu_consumer_drain(consumer); /* async-signal-safe */
}

/* Called once per batch, on one of the consumer's handler threads. */
static bool handle(kyu_batch_t *batch, void *arg)
{
    (void)arg;
    for (size_t i = 0; i < batch->n && !kyu_batch_cancelled(batch); i++) {
        const kyu_message_t *m = &batch->msgs[i];
        printf("%s (received %u times): %.*s\n", m->message_id, m->receive_count, (int)m->body_len,
               (const char *)m->body);
        if (m->body_len == 4 && memcmp(m->body, "fail", 4) == 0)
            batch->results[i] = KYU_ITEM_FAILED; /* retried after a back-off */
    }
    fflush(stdout);
    return true; /* results[] stand: the others are deleted */
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s ENDPOINTS QUEUE\n", argv[0]);
        return 2;
    }
    kyu_consumer_opts_t o = kyu_consumer_opts_default();
    o.queue = argv[2];
    o.batch_size = 10;
    o.max_concurrency = 4;
    o.handler_timeout_ms = 10000;
    kyu_err_t err = {0};
    consumer = kyu_consumer_new(argv[1], &o, handle, NULL, &err);
    if (!consumer) {
        fprintf(stderr, "example_consumer: %s: %s\n", kyu_code_name(err.code), err.msg);
        return 1;
    }
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    kyu_code_t rc = kyu_consumer_run(consumer, &err);
    if (rc != KYU_OK)
        fprintf(stderr, "example_consumer: %s: %s\n", kyu_code_name(rc), err.msg);
    kyu_consumer_destroy(&consumer);
    return rc == KYU_OK ? 0 : 1;
}
