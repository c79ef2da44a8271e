/* longpoll: the receives a leader holds back until a message arrives or their wait ends (long
 * polling, SQS's WaitTimeSeconds).
 *
 * A RECEIVE with a wait that would find nothing is parked here instead of answered empty.
 * This module only keeps the parked receives: per queue in order of arrival (the first to
 * come is served first, so no waiter starves), and all of them by deadline. What wakes them
 * (the state machine's list of queues that may have visible messages, a timer) and how they
 * are served again (the normal path: a RECEIVE command) is the frontend's (frontend.c). It
 * holds no socket, clock or state machine: tests/unit/test_longpoll.c drives it directly.
 *
 * Bounded: at most `max` receives are parked, and `per_client` of one connection (its routing
 * frame), so that one client cannot take every place (kyu_longpoll_park refuses more with
 * BUSY); each is a fixed-size record plus its client's routing frame.
 * Ownership: a parked waiter belongs to the module until a take function hands it back; the
 * caller then owns it (kyu_longpoll_waiter_destroy). Owned by the event loop.
 */
#ifndef KYU_LONGPOLL_H
#define KYU_LONGPOLL_H

#include "protocol.h"

#include <czmq.h>

#define KYU_LONGPOLL_MAX 10000           /* receives parked at once, by default */
#define KYU_LONGPOLL_PER_CLIENT_MAX 1000 /* ... and of them from one connection */

/* A parked receive: what is needed to answer it or to propose it again. */
typedef struct kyu_longpoll_waiter {
    zframe_t *identity; /* the client's routing frame (owned) */
    uint64_t id;        /* its request id */
    char queue[KYU_NAME_MAX + 1];
    uint64_t qid;    /* the queue's id when it came: another id means the queue was deleted */
    uint64_t fields; /* the request's KYU_F_VT, KYU_F_MAX and KYU_F_RQ */
    uint32_t vt, max;
    uint64_t rq_client, rq_key;
    uint64_t deadline_ms; /* cluster time at which it is answered empty */
    uint64_t arrival;     /* order of arrival (the frontend's counter); a re-parked waiter
                           * keeps its place */
    /* the module's */
    struct kyu_longpoll_waiter *prev, *next; /* its queue's list */
    size_t heap_pos;                         /* its place in the deadline heap */
} kyu_longpoll_waiter_t;

typedef struct kyu_longpoll kyu_longpoll_t;

/* At most max waiters parked at once (0: KYU_LONGPOLL_MAX), per_client of them with the same
 * routing frame (0: KYU_LONGPOLL_PER_CLIENT_MAX). */
kyu_longpoll_t *kyu_longpoll_new(size_t max, size_t per_client);
/* Frees the module and the waiters still parked (without answering them: answer first). */
void kyu_longpoll_destroy(kyu_longpoll_t **self_p);

/* A new waiter (calloc'd, identity owned), or NULL when out of memory. */
kyu_longpoll_waiter_t *kyu_longpoll_waiter_new(void);
void kyu_longpoll_waiter_destroy(kyu_longpoll_waiter_t **w_p);

/* Parks w on its queue, in order of arrival: takes w on KYU_OK; BUSY (err set) when max
 * waiters are parked, or per_client with w's routing frame, and w stays the caller's. */
kyu_code_t kyu_longpoll_park(kyu_longpoll_t *self, kyu_longpoll_waiter_t *w, kyu_err_t *err);

size_t kyu_longpoll_count(const kyu_longpoll_t *self);
/* Waiters parked on queue. */
size_t kyu_longpoll_waiting(kyu_longpoll_t *self, const char *queue);

/* The first waiter of queue (the earliest arrival), left parked; NULL when none. */
const kyu_longpoll_waiter_t *kyu_longpoll_first(kyu_longpoll_t *self, const char *queue);
/* The first waiter of queue (the earliest arrival), taken out; NULL when none. */
kyu_longpoll_waiter_t *kyu_longpoll_take_first(kyu_longpoll_t *self, const char *queue);
/* A waiter whose deadline is <= now_ms, earliest first, taken out; NULL when none. */
kyu_longpoll_waiter_t *kyu_longpoll_take_expired(kyu_longpoll_t *self, uint64_t now_ms);
/* Any waiter, taken out (to answer them all); NULL when none is left. */
kyu_longpoll_waiter_t *kyu_longpoll_take_any(kyu_longpoll_t *self);
/* The earliest deadline of the parked waiters, UINT64_MAX when none. */
uint64_t kyu_longpoll_next_deadline(const kyu_longpoll_t *self);

/* Receives proposed for waiters of queue and not answered yet (the frontend counts them up
 * when it wakes waiters and down when their results come), so that it wakes only as many as
 * the visible messages can serve. */
void kyu_longpoll_add_pending(kyu_longpoll_t *self, const char *queue, int64_t delta);
uint64_t kyu_longpoll_pending(kyu_longpoll_t *self, const char *queue);

/* Marks queue to be looked at (it may have visible messages, or a waiter came) when it has
 * waiters (true: it has); kyu_longpoll_take_marked gives each marked queue once, in the order
 * marked. */
bool kyu_longpoll_mark(kyu_longpoll_t *self, const char *queue);
/* Marks each queue that has waiters and no receive pending for which due(arg, name) is true
 * (due must not call into the module). */
void kyu_longpoll_mark_idle_if(kyu_longpoll_t *self, bool (*due)(void *arg, const char *queue),
                               void *arg);
/* Copies the next marked queue's name into out and unmarks it; false when none is marked. */
bool kyu_longpoll_take_marked(kyu_longpoll_t *self, char out[KYU_NAME_MAX + 1]);

/* Iterates the queues that have waiters and no receive pending (those the frontend's timer
 * watches): the first, then the next; NULL at the end. No other call into the module while
 * iterating (a lookup moves the iteration); names are valid until the next call that changes
 * the module. */
const char *kyu_longpoll_first_idle(kyu_longpoll_t *self);
const char *kyu_longpoll_next_idle(kyu_longpoll_t *self);

#endif
