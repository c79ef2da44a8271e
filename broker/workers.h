/* workers: the leader's worker sessions (proto/PROTOCOL.md "Worker sessions").
 *
 * A worker (a DEALER) opens a session on a queue with a credit: how many messages it holds at
 * once. The leader leases messages for it as they become visible, by proposing RECEIVE
 * commands (the same apply path as a client's receive: receive counts, dead-letter moves,
 * the in-flight limit), and pushes each RECEIVE's messages to the connection that opened the
 * session. Every message pushed takes one credit; the worker gives credit back with its
 * heartbeats. Both sides send heartbeats every hb ms; a session without one for hb * lv ms
 * is declared dead, and one replicated RELEASE_LEASES command makes every lease pushed to it
 * that is still the same lease visible at once.
 *
 * Sessions live only in the leader's memory and are bound to a routing id: the leases are
 * the truth (replicated). On losing leadership every session ends with a push ev "closed"
 * (NOT_LEADER), on its queue's deletion with NO_SUCH_QUEUE; the workers open new ones.
 *
 * Credit: each session has a total (WORKER_OPEN's cr; a heartbeat's ct sets a new one as the
 * worker scales up or down), and its credit is total - reserved - held (0 when that is
 * negative: a total lowered below what is out), where reserved counts the messages asked
 * for by its RECEIVEs in flight and held the messages pushed and not given back. So the
 * broker never has more outstanding than the total; lowering it stops pushes until enough
 * is given back, raising it serves the queue at once.
 *
 * Wakes (no polling): the frontend hands over the state machine's list of queues that may
 * have visible messages (the long polls' list, sm_wake.c: sends, leases set or released,
 * delays, redrives) with kyu_workers_mark, and serves them with kyu_workers_serve; a lease
 * running out or a delay ending needs no command, so the frontend's long-poll timer also
 * covers kyu_workers_next_visible. A heartbeat that gives credit back marks its queue.
 * Fairness: among the sessions of a queue with credit, the one served longest ago is served
 * first (round robin; a new session first).
 *
 * The module does its I/O through kyu_workers_io_t (the frontend's, frontend_workers.c; the
 * unit tests give fakes), so tests/unit/test_workers.c drives it without sockets. Owned by
 * the event loop.
 */
#ifndef KYU_WORKERS_H
#define KYU_WORKERS_H

#include "sm.h"

#include <czmq.h>

#define KYU_WORKERS_MAX 10000 /* sessions at once on a leader (BUSY past it) */
#define KYU_RELEASE_MAX 10000 /* leases per RELEASE_LEASES command */
#define KYU_RELEASE_REC 12    /* a lease in RELEASE_LEASES: seq (be64), generation (be32) */

typedef struct kyu_workers kyu_workers_t;

/* What the module does outside itself. */
typedef struct {
    void *arg;
    /* A monotonic clock, ms (heartbeats, liveness, the ages LIST_WORKERS shows). */
    uint64_t (*mono_ms)(void *arg);
    /* The cluster's time (leases and delays are in it): a leader's only. */
    uint64_t (*cluster_ms)(void *arg);
    /* True while this node serves as leader. */
    bool (*serving)(void *arg);
    /* The leader's client endpoint, "" when not known (a NOT_LEADER push names it). */
    const char *(*leader)(void *arg);
    /* Sends a reply or a push to identity (copied): false when it could not be sent (the
     * peer is gone or not reading). */
    bool (*send)(void *arg, zframe_t *identity, const kyu_reply_t *rep, const void *const *bodies,
                 const size_t *lens, size_t n_bodies);
    /* Proposes a RECEIVE of up to max messages of queue with visibility timeout vt (-1: the
     * queue's) for session sid; its result comes back through kyu_workers_on_receive. An error
     * (BUSY, the in-flight limit) proposed nothing. */
    kyu_code_t (*propose_receive)(void *arg, uint64_t sid, const char *queue, int64_t vt,
                                  uint32_t max, kyu_err_t *err);
    /* Proposes RELEASE_LEASES of n leases (recs: KYU_RELEASE_REC bytes each, borrowed until it
     * returns) of queue for session sid; the result comes back through
     * kyu_workers_on_release. */
    kyu_code_t (*propose_release)(void *arg, uint64_t sid, const char *queue, const uint8_t *recs,
                                  size_t n, kyu_err_t *err);
    /* A repeating timer every ms that calls kyu_workers_on_timer(token), its id or -1 (no
     * loop: the session then has no heartbeats until kyu_workers_set_timers); ends one. */
    int (*timer_add)(void *arg, uint32_t ms, void *token);
    void (*timer_end)(void *arg, int id);
} kyu_workers_io_t;

/* One session, as LIST_WORKERS and the tests see it. */
typedef struct {
    uint64_t sid;
    uint32_t credit_total, credit, reserved, held;
    uint32_t pushes;  /* RECEIVEs in flight */
    size_t n_leases;  /* leases pushed that a release would look at */
    bool ended;       /* closed or dead, waiting for its RECEIVEs or its release */
    uint64_t last_hb; /* mono_ms of its last heartbeat (or its opening) */
    uint32_t hb_ms, liveness;
} kyu_session_view_t;

kyu_workers_t *kyu_workers_new(kyu_sm_t *sm, const kyu_workers_io_t *io);
/* Frees every session (without sending anything: kyu_workers_end_all first). */
void kyu_workers_destroy(kyu_workers_t **self_p);

/* WORKER_OPEN from identity (copied) at host (the peer's address, "" if unknown): the queue
 * must exist; fills rep (sid, hb, lv). */
kyu_code_t kyu_workers_open(kyu_workers_t *self, const kyu_request_t *req, zframe_t *identity,
                            const char *host, kyu_reply_t *rep, kyu_err_t *err);
/* WORKER_HEARTBEAT: a sign of life, with credit given back (cr) and a new total (ct). NO_SESSION
 * for a sid that is not a live session of this connection. */
kyu_code_t kyu_workers_heartbeat(kyu_workers_t *self, const kyu_request_t *req, zframe_t *identity,
                                 kyu_err_t *err);
/* WORKER_CLOSE: ends the session and releases the leases it still holds. KYU_OK with
 * *identity taken: answered once the release is applied (kyu_workers_on_release); KYU_OK
 * with *identity left: nothing to release, answer at once (empty); an error: nothing
 * changed. */
kyu_code_t kyu_workers_close(kyu_workers_t *self, const kyu_request_t *req, zframe_t **identity,
                             kyu_err_t *err);
/* LIST_WORKERS: the live sessions (of queue, when not NULL), ordered by sid. */
kyu_code_t kyu_workers_list(kyu_workers_t *self, const char *queue, kyu_reply_t *rep,
                            kyu_err_t *err);

/* A session's timer (token: timer_add's): its heartbeat push, and its liveness. */
void kyu_workers_on_timer(void *token);
/* A RECEIVE proposed for sid (asked messages) came back: pushes its messages (res's bodies
 * are borrowed), or releases them when the session ended meanwhile. */
void kyu_workers_on_receive(kyu_workers_t *self, uint64_t sid, uint32_t asked,
                            const kyu_result_t *res);
/* A RELEASE_LEASES proposed for sid came back (applied, or lost: res->code). */
void kyu_workers_on_release(kyu_workers_t *self, uint64_t sid, const kyu_result_t *res);

/* Queue may have visible messages, or was deleted (the state machine's list). */
void kyu_workers_mark(kyu_workers_t *self, const char *queue);
/* Serves the marked queues (and, when timer_fired, those whose next message is visible by
 * now): proposes RECEIVEs for sessions with credit; ends the sessions of deleted queues, and
 * every session when this node no longer serves. Cheap when nothing is marked. True when it
 * did something that may move kyu_workers_next_visible. */
bool kyu_workers_serve(kyu_workers_t *self, bool timer_fired);
/* True when queue has live sessions (or their RECEIVEs in flight). */
bool kyu_workers_serves(kyu_workers_t *self, const char *queue);
/* A SEND to queue is proposed that makes fresh messages visible once applied (the state
 * machine's guess: kyu_sm_send_visible_at_once): proposes RECEIVEs for its sessions with
 * credit now, into the send's own entry, as kyu_workers_serve would once it is applied
 * (with the send's messages counted), when none of its RECEIVEs is in flight (else they
 * are served when those come back, in larger RECEIVEs). Returns how many messages those
 * RECEIVEs ask for. */
uint64_t kyu_workers_serve_sent(kyu_workers_t *self, const char *queue, uint64_t fresh);
/* The earliest cluster time a message becomes visible by itself on a queue with a session
 * that has credit and no RECEIVE in flight (UINT64_MAX: none). */
uint64_t kyu_workers_next_visible(kyu_workers_t *self);
/* Ends every session with a push ev "closed" and code (NOT_LEADER: with the leader). */
void kyu_workers_end_all(kyu_workers_t *self, kyu_code_t code, const char *why);
/* The loop changed: the timers are gone (NULL loop) or can be set (again). */
void kyu_workers_set_timers(kyu_workers_t *self, bool on);

size_t kyu_workers_count(const kyu_workers_t *self); /* live sessions */
bool kyu_workers_view(const kyu_workers_t *self, uint64_t sid, kyu_session_view_t *v);

/* The state machine's side (op_workers.c): true when message seq of queue still holds the
 * lease of generation gen, running out after now (a release would make it visible). */
bool kyu_sm_lease_held(kyu_sm_t *sm, const char *queue, uint64_t seq, uint32_t gen, uint64_t now);

#endif
