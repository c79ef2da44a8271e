/* longpoll: the parked receives (longpoll.h). Per queue, a list in order of arrival; for
 * all, a binary min-heap by deadline whose entries know their place (removal by place). */
#include "longpoll.h"

#include <stdlib.h>
#include <string.h>

/* A queue with waiters (or receives pending for them, or marked). */
typedef struct {
    char name[KYU_NAME_MAX + 1];
    kyu_longpoll_waiter_t *head, *tail;
    size_t n;
    uint64_t pending;
    bool marked;
} lpq_t;

struct kyu_longpoll {
    size_t max, per_client, n;
    zhashx_t *queues;  /* name -> lpq_t (owned) */
    zhashx_t *clients; /* routing frame (hex) -> waiters parked, as a pointer-sized number */
    zlistx_t *marked;  /* lpq_t*, in the order marked */
    kyu_longpoll_waiter_t **heap;
    size_t heap_cap;
};

static void lpq_free(void **item)
{
    free(*item);
    *item = NULL;
}

kyu_longpoll_t *kyu_longpoll_new(size_t max, size_t per_client)
{
    kyu_longpoll_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->max = max ? max : KYU_LONGPOLL_MAX;
    self->per_client = per_client ? per_client : KYU_LONGPOLL_PER_CLIENT_MAX;
    self->queues = zhashx_new();
    self->clients = zhashx_new();
    self->marked = zlistx_new();
    self->heap = malloc(self->max * sizeof *self->heap);
    if (!self->queues || !self->clients || !self->marked || !self->heap) {
        kyu_longpoll_destroy(&self);
        return NULL;
    }
    self->heap_cap = self->max;
    zhashx_set_destructor(self->queues, lpq_free);
    zhashx_set_destructor(self->clients, NULL); /* the values are counts, not pointers */
    return self;
}

void kyu_longpoll_destroy(kyu_longpoll_t **self_p)
{
    kyu_longpoll_t *self = *self_p;
    if (!self)
        return;
    for (size_t i = 0; i < self->n; i++)
        kyu_longpoll_waiter_destroy(&self->heap[i]);
    zlistx_destroy(&self->marked);
    zhashx_destroy(&self->queues);
    zhashx_destroy(&self->clients);
    free(self->heap);
    free(self);
    *self_p = NULL;
}

kyu_longpoll_waiter_t *kyu_longpoll_waiter_new(void)
{
    return calloc(1, sizeof(kyu_longpoll_waiter_t));
}

void kyu_longpoll_waiter_destroy(kyu_longpoll_waiter_t **w_p)
{
    if (!*w_p)
        return;
    zframe_destroy(&(*w_p)->identity);
    free(*w_p);
    *w_p = NULL;
}

/* ---- the deadline heap ---- */

static bool earlier(const kyu_longpoll_waiter_t *a, const kyu_longpoll_waiter_t *b)
{
    return a->deadline_ms != b->deadline_ms ? a->deadline_ms < b->deadline_ms
                                            : a->arrival < b->arrival;
}

static void heap_set(kyu_longpoll_t *self, size_t i, kyu_longpoll_waiter_t *w)
{
    self->heap[i] = w;
    w->heap_pos = i;
}

static void sift_up(kyu_longpoll_t *self, size_t i)
{
    kyu_longpoll_waiter_t *w = self->heap[i];
    while (i > 0 && earlier(w, self->heap[(i - 1) / 2])) {
        heap_set(self, i, self->heap[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    heap_set(self, i, w);
}

static void sift_down(kyu_longpoll_t *self, size_t i)
{
    kyu_longpoll_waiter_t *w = self->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= self->n)
            break;
        if (c + 1 < self->n && earlier(self->heap[c + 1], self->heap[c]))
            c++;
        if (!earlier(self->heap[c], w))
            break;
        heap_set(self, i, self->heap[c]);
        i = c;
    }
    heap_set(self, i, w);
}

static void heap_remove(kyu_longpoll_t *self, kyu_longpoll_waiter_t *w)
{
    size_t i = w->heap_pos;
    KYU_ASSERT(i < self->n && self->heap[i] == w);
    kyu_longpoll_waiter_t *last = self->heap[--self->n];
    if (i == self->n)
        return;
    heap_set(self, i, last);
    sift_up(self, i);
    sift_down(self, last->heap_pos);
}

/* ---- clients: waiters per routing frame ---- */

/* The routing frame as a hash key (hex: the frame is binary). */
static void client_key(const kyu_longpoll_waiter_t *w, char out[2 * 255 + 1])
{
    size_t n = w->identity ? zframe_size(w->identity) : 0;
    const uint8_t *d = w->identity ? zframe_data(w->identity) : NULL;
    n = n > 255 ? 255 : n;
    for (size_t i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
    out[2 * n] = '\0';
}

static size_t client_count(kyu_longpoll_t *self, const char *key)
{
    return (size_t)(uintptr_t)zhashx_lookup(self->clients, key);
}

static void client_add(kyu_longpoll_t *self, const char *key, int delta)
{
    size_t n = client_count(self, key) + (size_t)delta;
    if (n == 0)
        zhashx_delete(self->clients, key);
    else
        zhashx_update(self->clients, key, (void *)(uintptr_t)n);
}

/* ---- queues ---- */

static lpq_t *queue_get(kyu_longpoll_t *self, const char *name, bool create)
{
    lpq_t *q = zhashx_lookup(self->queues, name);
    if (q || !create)
        return q;
    q = calloc(1, sizeof *q);
    KYU_ASSERT(q);
    snprintf(q->name, sizeof q->name, "%s", name);
    zhashx_insert(self->queues, q->name, q);
    return q;
}

/* Forgets a queue that nothing refers to any more. */
static void queue_maybe_drop(kyu_longpoll_t *self, lpq_t *q)
{
    if (q->n == 0 && q->pending == 0 && !q->marked)
        zhashx_delete(self->queues, q->name);
}

static void unlink_waiter(kyu_longpoll_t *self, lpq_t *q, kyu_longpoll_waiter_t *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        q->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        q->tail = w->prev;
    w->prev = w->next = NULL;
    q->n--;
    heap_remove(self, w); /* one fewer parked (self->n) */
    char key[2 * 255 + 1];
    client_key(w, key);
    client_add(self, key, -1);
    queue_maybe_drop(self, q);
}

kyu_code_t kyu_longpoll_park(kyu_longpoll_t *self, kyu_longpoll_waiter_t *w, kyu_err_t *err)
{
    if (self->n >= self->max)
        return kyu_err_set(err, KYU_ERR_BUSY,
                           "%zu receives are already waiting on this broker (its limit): retry "
                           "later, or receive without a wait",
                           self->max);
    char key[2 * 255 + 1];
    client_key(w, key);
    if (client_count(self, key) >= self->per_client)
        return kyu_err_set(err, KYU_ERR_BUSY,
                           "this connection already has %zu receives waiting (the limit per "
                           "connection): retry later, or receive without a wait",
                           self->per_client);
    client_add(self, key, 1);
    lpq_t *q = queue_get(self, w->queue, true);
    /* In order of arrival: a new waiter goes last; one parked again (woken, found nothing)
     * goes back to its place, usually near the front. */
    kyu_longpoll_waiter_t *after = q->tail;
    while (after && after->arrival > w->arrival)
        after = after->prev;
    w->prev = after;
    w->next = after ? after->next : q->head;
    if (w->next)
        w->next->prev = w;
    else
        q->tail = w;
    if (after)
        after->next = w;
    else
        q->head = w;
    q->n++;
    self->heap[self->n] = w;
    w->heap_pos = self->n++;
    sift_up(self, w->heap_pos);
    return KYU_OK;
}

size_t kyu_longpoll_count(const kyu_longpoll_t *self)
{
    return self->n;
}

size_t kyu_longpoll_waiting(kyu_longpoll_t *self, const char *queue)
{
    lpq_t *q = queue_get(self, queue, false);
    return q ? q->n : 0;
}

const kyu_longpoll_waiter_t *kyu_longpoll_first(kyu_longpoll_t *self, const char *queue)
{
    lpq_t *q = queue_get(self, queue, false);
    return q ? q->head : NULL;
}

kyu_longpoll_waiter_t *kyu_longpoll_take_first(kyu_longpoll_t *self, const char *queue)
{
    lpq_t *q = queue_get(self, queue, false);
    kyu_longpoll_waiter_t *w = q ? q->head : NULL;
    if (w)
        unlink_waiter(self, q, w);
    return w;
}

kyu_longpoll_waiter_t *kyu_longpoll_take_expired(kyu_longpoll_t *self, uint64_t now_ms)
{
    if (self->n == 0 || self->heap[0]->deadline_ms > now_ms)
        return NULL;
    kyu_longpoll_waiter_t *w = self->heap[0];
    unlink_waiter(self, queue_get(self, w->queue, false), w);
    return w;
}

kyu_longpoll_waiter_t *kyu_longpoll_take_any(kyu_longpoll_t *self)
{
    if (self->n == 0)
        return NULL;
    kyu_longpoll_waiter_t *w = self->heap[self->n - 1];
    unlink_waiter(self, queue_get(self, w->queue, false), w);
    return w;
}

uint64_t kyu_longpoll_next_deadline(const kyu_longpoll_t *self)
{
    return self->n ? self->heap[0]->deadline_ms : UINT64_MAX;
}

void kyu_longpoll_add_pending(kyu_longpoll_t *self, const char *queue, int64_t delta)
{
    lpq_t *q = queue_get(self, queue, delta > 0);
    if (!q)
        return;
    KYU_ASSERT(delta >= 0 || q->pending >= (uint64_t)-delta);
    q->pending = (uint64_t)((int64_t)q->pending + delta);
    queue_maybe_drop(self, q);
}

uint64_t kyu_longpoll_pending(kyu_longpoll_t *self, const char *queue)
{
    lpq_t *q = queue_get(self, queue, false);
    return q ? q->pending : 0;
}

static void mark(kyu_longpoll_t *self, lpq_t *q)
{
    if (!q->marked) {
        q->marked = true;
        zlistx_add_end(self->marked, q);
    }
}

bool kyu_longpoll_mark(kyu_longpoll_t *self, const char *queue)
{
    lpq_t *q = queue_get(self, queue, false);
    if (!q || q->n == 0)
        return false;
    mark(self, q);
    return true;
}

void kyu_longpoll_mark_idle_if(kyu_longpoll_t *self, bool (*due)(void *arg, const char *queue),
                               void *arg)
{
    for (lpq_t *q = zhashx_first(self->queues); q; q = zhashx_next(self->queues))
        if (q->n > 0 && q->pending == 0 && due(arg, q->name))
            mark(self, q);
}

bool kyu_longpoll_take_marked(kyu_longpoll_t *self, char out[KYU_NAME_MAX + 1])
{
    lpq_t *q = zlistx_first(self->marked);
    if (!q)
        return false;
    zlistx_delete(self->marked, zlistx_cursor(self->marked));
    q->marked = false;
    memcpy(out, q->name, sizeof q->name);
    queue_maybe_drop(self, q);
    return true;
}

static const char *idle_from(kyu_longpoll_t *self, lpq_t *q)
{
    while (q && (q->n == 0 || q->pending > 0))
        q = zhashx_next(self->queues);
    return q ? q->name : NULL;
}

const char *kyu_longpoll_first_idle(kyu_longpoll_t *self)
{
    return idle_from(self, zhashx_first(self->queues));
}

const char *kyu_longpoll_next_idle(kyu_longpoll_t *self)
{
    return idle_from(self, zhashx_next(self->queues));
}
