/* frontend_internal: what the frontend's files share: frontend.c (requests, replies, the
 * normal path of a write) and frontend_wait.c (the receives held for long polling). */
#ifndef KYU_FRONTEND_INTERNAL_H
#define KYU_FRONTEND_INTERNAL_H

#include "frontend.h"
#include "longpoll.h"
#include "ops.h"
#include "recv_bounded.h"
#include "workers.h"

struct kyu_frontend {
    zsock_t *sock;
    kyu_op_ctx_t ctx; /* what the rows' functions work with */
    msgpack_sbuffer buf;
    /* The request being handled: its parts, received in place and reused from request to
     * request (recv_bounded.h), and its bodies' views into them (ops.h) */
    kyu_parts_t *in;
    kyu_body_t in_bodies[KYU_REQUEST_PARTS_MAX];
    bool key_proposed; /* a SET_HANDLE_KEY waits for its entry (see ensure_handle_key) */
    /* Retention: an EXPIRE_MESSAGES waits for its entry; when queues were last looked at
     * (cluster time; see kyu_frontend_tick) */
    bool expiry_proposed;
    uint64_t expiry_checked_at;
    bool redrive_proposed; /* a REDRIVE_STEP waits for its entry (op_redrive.c) */
    uint64_t dropped_replies;
    uint64_t replies; /* replies sent or tried (kyu_frontend_replies) */
    /* Receives answered before their lease was durable (frontend.c, answer_early), and the
     * result they are answered from (some 14 KB: not on the stack) */
    uint64_t early_answers;
    kyu_result_t early_res;
    /* Reads of a queue with receives answered early and not applied yet wait for them
     * (frontend.c, defer_read), in order of arrival */
    struct deferred *deferred, *deferred_tail;
    size_t n_deferred;
    char endpoint[KYU_ENDPOINT_MAX];
    /* Long polling: the parked receives, their order of arrival, and the one timer that
     * wakes the loop at the earliest deadline or end of a lease or delay on a queue that has
     * waiters (timer_at, in cluster time; UINT64_MAX: none). */
    kyu_longpoll_t *lp;
    uint64_t arrivals;
    zloop_t *loop;
    int timer_id; /* -1: none */
    uint64_t timer_at;
    bool timer_fired;
    bool rearm;             /* something changed that may move the timer */
    kyu_workers_t *workers; /* worker sessions (frontend_workers.c) */
    /* Serving in the send's entry (frontend_wait.c, kyu_frontend_note_sent): per queue, the
     * messages of SENDs proposed and not applied yet that a receive right after them would
     * find (name -> count, as a pointer-sized number); the queues sent to in this drain of
     * requests, served before the open entry is proposed; wakes that skip the "finds nothing
     * now" answer (the messages they expect are not applied yet). */
    zhashx_t *ahead;
    char sent[KYU_TOPIC_SUBS_MAX][KYU_NAME_MAX + 1]; /* a publish's queues fit */
    size_t n_sent;
    bool waking_ahead;
};

/* A SEND's or PUBLISH's messages counted in their queues' ahead (frontend_wait.c): one
 * allocation, n queues (a SEND's one, a PUBLISH's each subscribed queue with waiters). */
typedef struct {
    size_t n;
    struct {
        uint64_t n;
        char queue[KYU_NAME_MAX + 1];
    } q[];
} kyu_ahead_t;

typedef struct {
    zframe_t *identity;
    uint64_t id;
    const kyu_op_row_t *row;
    kyu_longpoll_waiter_t *lp; /* a receive that may wait: parked when it finds nothing */
    bool *own;      /* the broker's own command (no identity): the flag cleared once it is done */
    uint64_t sid;   /* a worker session's RECEIVE (a push) or RELEASE_LEASES: its session */
    uint32_t asked; /* ... and how many messages the RECEIVE asked for */
    kyu_ahead_t *ahead; /* a SEND or PUBLISH counted in its queues' ahead (heap) */
} waiter_t;

/* Sends rep (and body frames) to identity; identity and bodies are copied. A reply to a
 * gone or saturated client is dropped (counted): false. */
bool kyu_frontend_send_reply(kyu_frontend_t *self, zframe_t *identity, const kyu_reply_t *rep,
                             const void *const *bodies, const size_t *lens, size_t n_bodies);
void kyu_frontend_send_error(kyu_frontend_t *self, zframe_t *identity, uint64_t id, kyu_code_t code,
                             const char *text);
/* An empty reply (a RECEIVE that found nothing). */
/* Answers the reads that waited for early receives' entries (frontend.c, defer_read). */
void kyu_frontend_serve_deferred(kyu_frontend_t *self);
void kyu_frontend_send_empty(kyu_frontend_t *self, zframe_t *identity, uint64_t id);
/* The normal path of a write (frontend.c): validated, then parked (a receive that may wait
 * and would find nothing), answered empty, or proposed. Takes *identity when it keeps it;
 * takes lp (a long poll woken, or NULL for a new request) whatever happens. */
void kyu_frontend_propose(kyu_frontend_t *self, zframe_t **identity, const kyu_op_row_t *row,
                          const kyu_request_t *req, const kyu_bodies_t *bodies,
                          kyu_longpoll_waiter_t *lp);

/* A serving leader whose state has no receipt handle key yet proposes one (frontend.c). */
void kyu_frontend_ensure_handle_key(kyu_frontend_t *self);

/* frontend_workers.c: the worker sessions' I/O (workers.h) — the table (NULL when out of
 * memory), a session op from identity (taken when answered later) at host, and the result of a
 * session's RECEIVE or RELEASE_LEASES (w->sid set; w is the caller's). */
kyu_workers_t *kyu_frontend_workers_new(kyu_frontend_t *self);
void kyu_frontend_session(kyu_frontend_t *self, zframe_t **identity, const kyu_op_row_t *row,
                          const kyu_request_t *req, const char *host);
void kyu_frontend_workers_result(kyu_frontend_t *self, waiter_t *w, const kyu_result_t *res);

/* frontend_wait.c. A long poll's record for a request that may wait wait_ms (NULL when it
 * may not, or out of memory: it is then answered like a receive without a wait). */
kyu_longpoll_waiter_t *kyu_frontend_wait_new(kyu_frontend_t *self, const kyu_request_t *req,
                                             uint64_t wait_ms);
/* A SEND or PUBLISH (its request and the command proposed for it, whose waiter is w) to a
 * queue (a topic with subscribed queues) with long polls or worker sessions: its messages
 * (copies) a receive would find are counted ahead, and its queues are served before the open
 * entry is proposed (kyu_frontend_serve_sent), so that their RECEIVEs go into its own entry. */
void kyu_frontend_note_sent(kyu_frontend_t *self, const kyu_request_t *req,
                            const kyu_command_t *cmd, waiter_t *w);
/* Serves the queues sent to since the last call: their worker sessions with credit and their
 * first long polls, counting the messages ahead. Call before the open entry is proposed. */
void kyu_frontend_serve_sent(kyu_frontend_t *self);
/* A SEND or PUBLISH counted ahead was applied or lost (w's counts given back). */
void kyu_frontend_sent_done(kyu_frontend_t *self, waiter_t *w);

/* Parks lp with the client's identity (taken): KYU_OK, or BUSY past the limit (then both
 * stay the caller's). */
kyu_code_t kyu_frontend_park(kyu_frontend_t *self, zframe_t **identity, kyu_longpoll_waiter_t *lp,
                             kyu_err_t *err);

#endif
