/* sm_wake: the state machine's side of long polling (sm.h, "Long polling").
 *
 * A receive parked by the frontend (broker/longpoll.h) must be served as soon as its queue
 * has a visible message, without polling. The state machine knows when that may be: every
 * message that becomes visible, now or at a later time, goes through one hook,
 * kyu_sm_note_visible, called where messages enter the receive index (kyu_sm_add_message,
 * kyu_sm_set_lease) and where a queue is deleted. The hook only records the queue's name
 * (apply does no I/O and wakes nobody inline); the frontend takes the list after the apply
 * and asks the index (kyu_sm_visible_upto, kyu_sm_next_visible_at) what to do.
 */
#include "sm_internal.h"

#include <stdlib.h>
#include <string.h>

void kyu_sm_watch_visible(kyu_sm_t *self)
{
    self->watch_visible = true;
}

void kyu_sm_note_visible(kyu_sm_t *self, queue_t *q)
{
    if (!self->watch_visible || q->woken)
        return;
    if (self->n_woken == self->cap_woken) {
        size_t cap = self->cap_woken ? self->cap_woken * 2 : 16;
        char(*names)[KYU_NAME_MAX + 1] = realloc(self->woken, cap * sizeof *names);
        KYU_ASSERT(names);
        self->woken = names;
        self->cap_woken = cap;
    }
    memcpy(self->woken[self->n_woken++], q->name, sizeof q->name);
    q->woken = true;
}

size_t kyu_sm_take_woken(kyu_sm_t *self, char (*names)[KYU_NAME_MAX + 1], size_t cap)
{
    size_t n = 0;
    while (n < cap && self->n_woken > 0) {
        memcpy(names[n], self->woken[--self->n_woken], sizeof names[n]);
        /* A deleted queue is gone from the hash (and its flag with it). */
        queue_t *q = zhashx_lookup(self->queues, names[n]);
        if (q)
            q->woken = false;
        n++;
    }
    return n;
}

void kyu_sm_woken_free(kyu_sm_t *self)
{
    free(self->woken);
    self->woken = NULL;
    self->n_woken = self->cap_woken = 0;
}

uint64_t kyu_sm_queue_id(kyu_sm_t *self, const char *name)
{
    const queue_t *q = zhashx_lookup(self->queues, name);
    return q ? q->qid : 0;
}

uint64_t kyu_sm_visible_upto(kyu_sm_t *self, const char *name, uint64_t now_ms, uint64_t cap)
{
    queue_t *q = zhashx_lookup(self->queues, name);
    return q ? kyu_sm_index_visible_upto(q, now_ms, cap) : 0;
}

uint64_t kyu_sm_next_visible_at(kyu_sm_t *self, const char *name)
{
    queue_t *q = zhashx_lookup(self->queues, name);
    return q ? kyu_sm_index_next_visible(q) : UINT64_MAX;
}

/* The queue's ReceiveMessageWaitTimeSeconds: how long a receive without "wt" waits (0, SQS's
 * default: it does not). */
uint32_t kyu_sm_receive_wait(kyu_sm_t *self, const char *name)
{
    queue_t *q = zhashx_lookup(self->queues, name);
    return q ? q->receive_wait : 0;
}
