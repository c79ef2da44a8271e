/* handler: kyu-worker's handlers, behind the consumer's kyu_batch_handler_fn.
 *
 * handler.c turns a batch into Lambda's SQS event (event.h), hands it to the command
 * (exec.c) or the HTTP endpoint (http.c), and turns their answer into per-message results:
 * exit 0 / a 2xx status means every message succeeded, unless the handler reports batch item
 * failures (--report-batch-item-failures), anything else fails the whole batch. */
#ifndef KYU_WORKER_HANDLER_H
#define KYU_WORKER_HANDLER_H

#include "filter.h"
#include "kyu.h"

#include <stdbool.h>
#include <stddef.h>

#define KYU_HANDLER_OUTPUT_MAX (6u << 20) /* an answer longer than Lambda's payload fails */
#define KYU_HANDLER_KILL_GRACE_MS 2000    /* SIGTERM, then SIGKILL this much later */

typedef struct {
    const char *exec; /* a command for /bin/sh -c, or NULL */
    const char *http; /* a URL to POST to, or NULL */
    bool report_failures;
    const char *queue;
    const char *region;
    void (*log)(const char *line); /* one line, no newline */
} kyu_handler_cfg_t;

/* --filter: Lambda's event filtering, up to KYU_FILTER_PATTERNS_MAX patterns ORed (one
 * engine: proto/filter.h, scope KYU_FILTER_SCOPE_EVENT) over each message as Lambda sees it
 * (kyu_event_filter_doc). */
typedef struct {
    size_t n;
    kyu_filter_t *patterns[KYU_FILTER_PATTERNS_MAX];
    const char *queue;
    const char *region;
} kyu_worker_filter_t;

/* Compiles a pattern into f; INVALID_ARGUMENT saying why (a bad pattern, one too many). */
kyu_code_t kyu_worker_filter_add(kyu_worker_filter_t *f, const char *pattern, kyu_err_t *err);
void kyu_worker_filter_free(kyu_worker_filter_t *f);
/* The consumer's filter (kyu_consumer_opts_t.filter); arg is a kyu_worker_filter_t. True when
 * a pattern matches (or out of memory: the message then goes to the handler). */
bool kyu_worker_filter(const kyu_message_t *msg, void *arg);

/* The consumer's handler; arg is a kyu_handler_cfg_t. */
bool kyu_worker_handle(kyu_batch_t *batch, void *arg);

/* What running a handler gave. */
typedef struct {
    bool ran;       /* it ran to an answer (exit status, HTTP status) */
    bool timed_out; /* stopped at its deadline (or cancelled) */
    int status;     /* exit status (exec: 128 + signal when killed), HTTP status (http) */
    char *out;      /* what it answered (captured: exec with capture, http), malloc'd */
    size_t out_len;
    bool out_too_big; /* more than KYU_HANDLER_OUTPUT_MAX */
    char why[256];    /* why it did not run, or how it ended */
} kyu_run_result_t;

/* exec.c: runs cmd with /bin/sh -c in its own process group, in on its stdin; captures its
 * stdout when capture (else it goes to ours); stops it (SIGTERM to its group, SIGKILL
 * KYU_HANDLER_KILL_GRACE_MS later) at deadline_ms or when the batch is cancelled. */
void kyu_exec_run(const char *cmd, const char *in, size_t in_len, bool capture,
                  const kyu_batch_t *batch, kyu_run_result_t *res);

/* http.c: POSTs in (application/json) to url, bounded by the batch's deadline and cancel. */
void kyu_http_run(const char *url, const char *in, size_t in_len, const kyu_batch_t *batch,
                  kyu_run_result_t *res);

#endif
