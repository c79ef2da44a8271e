/* consumer_internal: what the consumer's files share (kyu.h describes the consumer).
 *
 * consumer.c: options, the handler pool, batching, scaling, drain and the event loop.
 * consumer_session.c: the wire side: opening the session, heartbeats and credit, pushes,
 * and the DELETE / CHANGE_VISIBILITY requests that finish, release and extend messages.
 *
 * Ownership: the loop's thread owns every held message, batch and request; a pool thread
 * touches a batch only between taking it from the job queue and putting it on the done
 * queue (under the pool's mutex), and reads only its messages and writes its results. */
#ifndef KYU_CONSUMER_INTERNAL_H
#define KYU_CONSUMER_INTERNAL_H

#include "consumer_policy.h"
#include "kyu_internal.h"

#include <pthread.h>
#include <stdatomic.h>

/* The messages of one push: one allocation (kyu_message_t array), freed with its last. */
typedef struct {
    kyu_message_t *msgs;
    size_t live;
} kyu_chunk_t;

enum { HELD_BUFFERED, HELD_RUNNING, HELD_FINISHING };

/* A message the consumer holds a lease on. */
typedef struct kyu_held {
    struct kyu_held *prev, *next; /* every held message (extension scans them) */
    struct kyu_held *bnext;       /* the buffer (BUFFERED) or a to-do list (FINISHING) */
    kyu_message_t *msg;           /* in chunk */
    kyu_chunk_t *chunk;
    uint64_t sid; /* the session that pushed it */
    int64_t received_ms, lease_until_ms;
    int state;
    bool extending; /* a CHANGE_VISIBILITY that extends it is in flight */
    bool lost;      /* the broker said its lease is gone (stale or invalid receipt) */
    bool success;   /* FINISHING: delete (true) or release (false) */
    int delay_s;    /* FINISHING, release: the back-off */
    int attempts;   /* FINISHING: requests tried */
} kyu_held_t;

enum { BATCH_QUEUED, BATCH_RUNNING, BATCH_DONE };

typedef struct kyu_cbatch {
    struct kyu_cbatch *next; /* the pool's job queue or done queue */
    kyu_batch_t pub;
    kyu_held_t **held;
    kyu_message_t *copies; /* pub.msgs: shallow copies (bodies stay in their chunks) */
    kyu_chunk_t **chunks;  /* the chunk of each message: the batch holds a reference, so a
                            * handler past its timeout still reads valid bodies after its
                            * messages were released */
    int state;             /* under the pool's mutex */
    bool ok;               /* the handler's return (BATCH_DONE) */
    bool abandoned;        /* timed out or cut at the drain deadline: messages released */
    atomic_int cancel;
    int64_t started_ms;
    size_t bytes;
} kyu_cbatch_t;

/* A request in flight and what it acts on. */
enum { REQ_DELETE, REQ_RELEASE, REQ_EXTEND, REQ_HEARTBEAT };
typedef struct {
    uint64_t id;
    int kind;
    size_t n;
    kyu_held_t *h[KYU_BATCH_MAX];
    uint32_t credit;            /* REQ_HEARTBEAT: the credit it gave */
    uint32_t total;             /* REQ_HEARTBEAT: the total credit it set (0: none) */
    int attempts;               /* sent this many times (resends keep the request key) */
    uint64_t rq_client, rq_key; /* DELETE, release: the request key of every attempt */
} kyu_creq_t;

#define KYU_CONSUMER_REQS_MAX 2048

struct kyu_consumer {
    kyu_consumer_opts_t o;
    char queue[KYU_NAME_MAX + 1];
    char name[65];
    kyu_batch_handler_fn *handler;
    void *arg;
    kyu_client_t *client;
    int vt; /* seconds: every lease's */

    /* session */
    uint64_t sid, open_id; /* 0: no session */
    int hb_ms, liveness;   /* effective, from WORKER_OPEN's reply */
    int64_t last_heard_ms, last_hb_ms, reconnect_at_ms;
    char leader[KYU_ENDPOINT_MAX]; /* a NOT_LEADER hint to go to */
    bool reconnect;                /* the session is over: open another */
    /* credit of the current session (consumer_policy.h): its messages finished, those given
     * back as credit, and the total the broker was last told (-1: tell it again) */
    int64_t finished, returned, total;
    bool hb_inflight;
    int64_t down_since_ms; /* -1: connected */

    /* messages */
    kyu_held_t *held_head;
    size_t n_held;
    kyu_held_t *buf_head, *buf_tail;
    size_t n_buf, buf_bytes;
    kyu_held_t *todo_head, *todo_tail; /* FINISHING, waiting for a request slot */
    kyu_creq_t *reqs;
    size_t n_reqs;

    /* batches and the pool */
    pthread_t *threads;
    size_t n_threads;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    kyu_cbatch_t *jobs_head, *jobs_tail, *done_head;
    bool stopping; /* under mu: threads exit */
    kyu_cbatch_t **running;
    size_t n_running;
    uint64_t next_batch;
    kyu_scaler_t scaler;
    size_t failed_since, ok_since;

    /* wake-ups of the loop: a pipe (pool threads, drain) */
    int wake[2];
    atomic_int draining;
    int64_t drain_deadline_ms; /* -1: not draining yet */
    bool closed;

    /* stats (read by other threads) */
    atomic_uint_fast64_t st[11];
    atomic_int st_conc;
    unsigned rnd;
};

/* Stats slots. */
enum {
    ST_BATCHES,
    ST_MESSAGES,
    ST_SUCCEEDED,
    ST_FAILED,
    ST_DELETED,
    ST_RELEASED,
    ST_EXTENDED,
    ST_STALE,
    ST_TIMEOUTS,
    ST_SESSIONS,
    ST_FILTERED
};

void kyu_consumer_log(kyu_consumer_t *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void kyu_consumer_wake(kyu_consumer_t *c);
double kyu_consumer_rand01(kyu_consumer_t *c);

/* consumer_session.c */
/* Opens a session when there is none (or the old one ended); returns false when the queue is
 * gone (err filled: fatal). */
bool kyu_session_ensure(kyu_consumer_t *c, int64_t now, kyu_err_t *err);
/* Reads what the broker sent (pushes, replies); false on a fatal event (err filled). */
bool kyu_session_read(kyu_consumer_t *c, kyu_err_t *err);
/* Heartbeats, credit, extensions, pending finishes, a silent broker. */
void kyu_session_tick(kyu_consumer_t *c, int64_t now);
/* Puts h on the to-do list to be deleted (success) or released after delay_s seconds. */
void kyu_session_finish(kyu_consumer_t *c, kyu_held_t *h, bool success, int delay_s);
/* Sends what the to-do list holds, as far as request slots allow. */
void kyu_session_flush(kyu_consumer_t *c, int64_t now);
/* Closes the session (WORKER_CLOSE), once nothing is held. */
void kyu_session_close(kyu_consumer_t *c);
/* Forgets a held message (its lease is finished or lost). */
void kyu_held_free(kyu_consumer_t *c, kyu_held_t *h);
/* Drops a reference to a chunk (frees it with its last). */
void kyu_chunk_unref(kyu_chunk_t *chunk);
/* The session's total credit for the current concurrency, -1 while draining (no change). */
int64_t kyu_consumer_credit_total(const kyu_consumer_t *c, int64_t held_other);

#endif
