/* consumer_policy: the consumer's decisions as pure functions (no I/O, no clock, no
 * threads), so unit tests can drive them: the retry back-off, when a batch is ready, how
 * many concurrent batches to run (scaling), and how much credit to give the broker.
 * consumer.c calls them from its event loop with the loop's time. */
#ifndef KYU_CONSUMER_POLICY_H
#define KYU_CONSUMER_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The delay before a failed message is received again: exponential in its receive count
 * (base_ms for the first receive, doubling with each one after, at most max_ms), with
 * "equal jitter": half of it fixed, the other half scaled by rand01 (0..1), so workers that
 * failed together do not retry together. Rounded up to whole seconds, the unit of
 * CHANGE_VISIBILITY; 0 when base_ms is 0. */
int kyu_backoff_seconds(uint32_t receive_count, int base_ms, int max_ms, double rand01);

/* A batch is ready to start when it is full (batch_size messages, or max_bytes of bodies), or
 * when its window has passed since the oldest message buffered arrived, or when messages are
 * buffered and the consumer is draining or the window is 0. */
bool kyu_batch_ready(size_t buffered, size_t buffered_bytes, int batch_size, size_t max_bytes,
                     int64_t oldest_ms, int window_ms, int64_t now_ms);

/* Scaling, as Lambda's SQS trigger does: start with a few concurrent batches, grow while a
 * backlog remains, shrink when idle, halve when handlers fail. */
typedef struct {
    int current;          /* concurrent batches allowed now */
    int min, max;         /* bounds of current */
    int64_t idle_since;   /* when the consumer last became idle (-1: it is not) */
    int64_t calm_until;   /* no growth before this (after failures) */
    int64_t last_step_ms; /* when kyu_scaler_step last decided */
} kyu_scaler_t;

/* What the consumer saw since the last step. */
typedef struct {
    size_t buffered;  /* messages waiting for a batch slot */
    size_t running;   /* batches running */
    int batch_size;   /* a backlog is at least one full batch waiting with every slot busy */
    size_t failures;  /* batches a handler failed whole (or timed out) since the last step */
    size_t successes; /* batches that succeeded wholly since the last step */
} kyu_scale_input_t;

enum {
    KYU_SCALE_INTERVAL_MS = 1000, /* one decision a second at most */
    KYU_SCALE_IDLE_MS = 3000,     /* idle this long before shrinking */
    KYU_SCALE_CALM_MS = 5000,     /* no growth this long after a failure */
};

void kyu_scaler_init(kyu_scaler_t *s, int initial, int max, int64_t now_ms);
/* Decides at now_ms: returns the new concurrency (s->current) and, when it changed, writes
 * the reason to why (a short phrase for the log); why[0] is '\0' when nothing changed. */
int kyu_scaler_step(kyu_scaler_t *s, const kyu_scale_input_t *in, int64_t now_ms, char *why,
                    size_t why_len);

/* Credit: the session has a total (WORKER_OPEN's cr, then a heartbeat's ct), the most the
 * broker has pushed and not given back (or is leasing) at once. The total follows the
 * concurrency as it scales: enough for the batches we run plus one gathering, less what we
 * still hold from earlier sessions (whose leases outlive them), 1..10000. */
int64_t kyu_credit_total(int concurrency, int batch_size, int64_t held_other);
/* The credit target for concurrency c and a batch size: (c + 1) batches, 1..10000. */
int64_t kyu_credit_target(int concurrency, int batch_size);
/* Every message of the session that finished goes back as credit (the total, not withheld
 * credit, says how many may be out): finished - returned, 0..10000 a heartbeat. */
uint32_t kyu_credit_to_give(int64_t finished, int64_t returned);

#endif
