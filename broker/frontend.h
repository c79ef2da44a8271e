/* frontend: the client endpoint — a ROUTER socket, request validation, replies.
 *
 * A request enters here: its header is decoded and checked against the op table
 * (proto/codec.c), and its row in the table of operations (ops.h) says what happens: reads
 * are answered from the applied state at once, membership changes go to their driver, and
 * writes are validated and become commands proposed to the replica. The replica hands each
 * command's result back (kyu_frontend_on_result) once its entry is durable and applied; only then
 * is the reply sent. A request that fails validation is answered with an error and changes nothing.
 */
#ifndef KYU_FRONTEND_H
#define KYU_FRONTEND_H

#include "membership.h"

typedef struct {
    const char *endpoint;  /* e.g. tcp://127.0.0.1:7700: the address clients are given */
    const char *bind;      /* the address bound, when not endpoint (NAT); NULL: endpoint */
    size_t max_body;       /* maximum message size in bytes */
    uint32_t max_inflight; /* messages in flight per queue (KYU_INFLIGHT_MAX_DEFAULT) */
    size_t max_waiting;    /* receives parked at once (long polling); 0: KYU_LONGPOLL_MAX */
} kyu_frontend_config_t;

typedef struct kyu_frontend kyu_frontend_t;

/* Binds the ROUTER socket. The state machine must outlive the frontend. */
kyu_frontend_t *kyu_frontend_new(const kyu_frontend_config_t *cfg, kyu_sm_t *sm, kyu_err_t *err);
void kyu_frontend_destroy(kyu_frontend_t **self_p);

/* Sets the replica writes are proposed to (created after the frontend, whose
 * kyu_frontend_on_result it calls). */
void kyu_frontend_set_replica(kyu_frontend_t *self, kyu_replica_t *replica);

/* Sets the membership driver CLUSTER_ADD / CLUSTER_REMOVE go to (NULL: refused). */
void kyu_frontend_set_membership(kyu_frontend_t *self, kyu_membership_t *membership);

zsock_t *kyu_frontend_sock(kyu_frontend_t *self);
/* Replies sent (or tried) so far: the event loop's count of a round's answers (main.c). */
uint64_t kyu_frontend_replies(const kyu_frontend_t *self);

/* Handles the requests waiting on the socket (a bounded number per call). */
void kyu_frontend_on_readable(kyu_frontend_t *self);

/* Long polling (frontend.c, "Long polling"): the loop whose timer wakes the parked receives
 * when a deadline passes or a lease or delay ends (NULL: none; set it to NULL before that
 * loop is destroyed). */
void kyu_frontend_set_loop(kyu_frontend_t *self, zloop_t *loop);
/* Serves the parked receives after an event: wakes those whose queue may have visible
 * messages (the state machine's list), answers those whose wait is over, all of them
 * NOT_LEADER when this node no longer serves, and sets the timer. Call after every event
 * that may apply entries or change leadership (the frontend calls it after requests). Does
 * nothing measurable when nothing changed. */
void kyu_frontend_serve_waiting(kyu_frontend_t *self);
/* At shutdown: answers every parked receive empty; returns how many. */
size_t kyu_frontend_stop_waiting(kyu_frontend_t *self);

/* Called on every tick of the loop: proposes what the leader proposes by itself on time
 * (EXPIRE_MESSAGES, for retention). Cheap when there is nothing to do. */
void kyu_frontend_tick(kyu_frontend_t *self);

/* kyu_replica_done_fn: sends the reply for one applied command; takes the waiter (NULL for
 * commands nobody waits for: membership's address-book entries). */
void kyu_frontend_on_result(void *self, void *waiter, kyu_result_t *result);

#endif
