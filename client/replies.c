/* replies: the receiving half of libkyu's connection — matching replies to the requests in
 * flight, checking them, deadlines, the stash, and the one-request-one-reply call.
 *
 * A reply is matched to its request by id and checked against what the request expects
 * (frame count, number of ids or results) before it is handed out; a reply to no request in
 * flight (late, after its deadline, or from a confused broker) is dropped. Replies that
 * arrive while a synchronous call waits for its own go to a FIFO (the stash) that
 * poll_reply empties first, so the synchronous and asynchronous layers can be mixed. */
#include "kyu_internal.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#define MAX_FRAMES (1 + KYU_BATCH_MAX)

static kyu_pending_t *find_pending(kyu_client_t *c, uint64_t id)
{
    for (size_t i = 0; i < c->n_pending; i++)
        if (c->pending[i].id == id)
            return &c->pending[i];
    return NULL;
}

/* Removes a table entry, returning a copy (the table stays compact: swap with the last). */
static kyu_pending_t take_pending(kyu_client_t *c, kyu_pending_t *p)
{
    kyu_pending_t out = *p;
    *p = c->pending[--c->n_pending];
    return out;
}

/* Turns rep into a client-made error reply to request id. */
static void make_error(kyu_reply_t *rep, uint64_t id, kyu_code_t code, const char *text)
{
    kyu_reply_reset(rep);
    rep->id = id;
    rep->status = code;
    snprintf(rep->error, sizeof rep->error, "%s", text);
}

/* Copies n bytes and a NUL to *data, moving it on; returns where they went. */
static const unsigned char *copy_nul(unsigned char **data, const void *p, size_t n)
{
    unsigned char *at = *data;
    if (n)
        memcpy(at, p, n);
    at[n] = '\0';
    *data += n + 1;
    return at;
}

/* Checks a decoded reply against its request (counts, frames) and builds the messages of a
 * RECEIVE. On a mismatch the reply becomes a MALFORMED error: never trust the broker's
 * counts to index the frames. */
static void check_reply(const kyu_pending_t *p, kyu_reply_t *rep, zmq_msg_t *frames,
                        size_t n_bodies, kyu_message_t **msgs)
{
    char why[160] = "";
    if (rep->status != KYU_OK)
        return;
    bool with_bodies = p->op == KYU_OP_RECEIVE || p->op == KYU_OP_PEEK;
    if (with_bodies && rep->n_msgs != n_bodies)
        snprintf(why, sizeof why, "%s reply has %zu body frames for %zu messages",
                 p->op == KYU_OP_PEEK ? "PEEK" : "RECEIVE", n_bodies, rep->n_msgs);
    else if (!with_bodies && n_bodies != 0)
        snprintf(why, sizeof why, "reply has %zu unexpected body frames", n_bodies);
    else if (p->op == KYU_OP_SEND && rep->n_ids != p->expect)
        snprintf(why, sizeof why, "SEND reply has %zu ids for %u messages", rep->n_ids, p->expect);
    else if ((p->op == KYU_OP_DELETE || p->op == KYU_OP_CHANGE_VISIBILITY) &&
             rep->n_results != p->expect)
        snprintf(why, sizeof why, "reply has %zu results for %u handles", rep->n_results,
                 p->expect);
    else if (p->op == KYU_OP_GET_QUEUE_ATTRIBUTES && !rep->has_attrs)
        snprintf(why, sizeof why, "GET_QUEUE_ATTRIBUTES reply without attrs");
    for (size_t i = 0; !why[0] && p->op == KYU_OP_RECEIVE && i < rep->n_msgs; i++)
        if (!rep->msgs[i].handle[0] || !rep->msgs[i].message_id[0])
            snprintf(why, sizeof why, "RECEIVE reply: message %zu lacks an id or handle", i);
    for (size_t i = 0; !why[0] && p->op == KYU_OP_PEEK && i < rep->n_msgs; i++)
        if (!rep->msgs[i].message_id[0] || !rep->msgs[i].state)
            snprintf(why, sizeof why, "PEEK reply: message %zu lacks an id or state", i);
    if (why[0]) {
        make_error(rep, p->id, KYU_ERR_MALFORMED, why);
        return;
    }
    if (!with_bodies || !msgs || rep->n_msgs == 0)
        return;
    size_t total = rep->n_msgs * sizeof(kyu_message_t);
    for (size_t i = 0; i < n_bodies; i++) {
        const kyu_msg_attrs_t *a = &rep->msgs[i].attrs;
        total += zmq_msg_size(&frames[i]) + 1;
        for (size_t j = 0; j < a->n; j++)
            total += a->a[j].name_len + a->a[j].type_len + a->a[j].value_len + 3;
    }
    kyu_message_t *m = malloc(total);
    if (!m) {
        make_error(rep, p->id, KYU_ERR_INTERNAL, "out of memory for received messages");
        return;
    }
    unsigned char *data = (unsigned char *)(m + rep->n_msgs);
    for (size_t i = 0; i < rep->n_msgs; i++) {
        const kyu_msg_meta_t *meta = &rep->msgs[i];
        memcpy(m[i].message_id, meta->message_id, sizeof m[i].message_id);
        memcpy(m[i].receipt_handle, meta->handle, sizeof m[i].receipt_handle);
        m[i].receive_count = meta->receive_count;
        m[i].sent_ms = meta->sent_ms;
        m[i].first_receive_ms = meta->first_receive_ms;
        memcpy(m[i].dlq_source, meta->dlq_source, sizeof m[i].dlq_source);
        m[i].dlq_receive_count = meta->dlq_receive_count;
        m[i].dlq_first_receive_ms = meta->dlq_first_receive_ms;
        m[i].dlq_last_receive_ms = meta->dlq_last_receive_ms;
        m[i].dlq_moved_ms = meta->dlq_moved_ms;
        m[i].state = meta->state;
        m[i].position = meta->position;
        m[i].visible_at_ms = meta->visible_at_ms;
        m[i].body_len = zmq_msg_size(&frames[i]);
        m[i].body = data;
        memcpy(data, zmq_msg_data(&frames[i]), m[i].body_len);
        data[m[i].body_len] = '\0';
        data += m[i].body_len + 1;
        memcpy(m[i].md5_body, meta->md5_body, sizeof m[i].md5_body);
        memcpy(m[i].md5_attrs, meta->md5_attrs, sizeof m[i].md5_attrs);
        memcpy(m[i].group_id, meta->group_id, sizeof m[i].group_id);
        memcpy(m[i].dedup_id, meta->dedup_id, sizeof m[i].dedup_id);
        m[i].sequence = meta->sequence;
        m[i].attrs = meta->attrs;
        for (size_t j = 0; j < meta->attrs.n; j++) {
            kyu_msg_attr_t *at = &m[i].attrs.a[j];
            at->name = (const char *)copy_nul(&data, at->name, at->name_len);
            at->type = (const char *)copy_nul(&data, at->type, at->type_len);
            at->value = copy_nul(&data, at->value, at->value_len);
        }
    }
    *msgs = m;
}

/* Receives the first frame of the next message into f, waiting up to timeout_ms (-1: no
 * limit) when none is queued. It tries the socket first: a reply already queued (pipelined
 * replies come in bursts) then costs no system call, where zmq_poll makes two poll(2)s and a
 * getpid(2) even for a socket that is ready. When nothing is queued, that receive has
 * processed libzmq's commands, so the socket's ZMQ_FD (edge-triggered: it signals the
 * socket's next command, e.g. "a message arrived") is waited on with poll(2) directly, then
 * the socket asked again (the FD may signal with no message yet). Returns KYU_OK,
 * KYU_ERR_TIMEOUT or KYU_ERR_CONNECTION. */
static kyu_code_t recv_first(kyu_client_t *c, zmq_msg_t *f, int timeout_ms, kyu_err_t *err)
{
    /* The clock is read only once the socket had nothing (never for a poll without wait):
     * a pipelined client polls once per message. */
    int64_t deadline = INT64_MAX;
    int fd = -1;
    size_t fd_size = sizeof fd;
    for (;;) {
        if (zmq_msg_recv(f, c->sock, ZMQ_DONTWAIT) >= 0)
            return KYU_OK;
        if (errno == EINTR)
            return KYU_ERR_TIMEOUT;
        if (errno != EAGAIN)
            return kyu_err_set(err, KYU_ERR_CONNECTION, "zmq_msg_recv: %s", zmq_strerror(errno));
        if (timeout_ms == 0)
            return KYU_ERR_TIMEOUT;
        int64_t left = -1;
        if (timeout_ms > 0) {
            int64_t now = kyu_client_now_ms();
            if (deadline == INT64_MAX)
                deadline = now + timeout_ms;
            left = deadline - now;
        }
        if (timeout_ms >= 0 && left <= 0)
            return KYU_ERR_TIMEOUT;
        if (fd < 0 && zmq_getsockopt(c->sock, ZMQ_FD, &fd, &fd_size) != 0)
            return kyu_err_set(err, KYU_ERR_CONNECTION, "zmq_getsockopt(ZMQ_FD): %s",
                               zmq_strerror(errno));
        struct pollfd p = {fd, POLLIN, 0};
        int n = poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);
        if (n < 0 && errno != EINTR)
            return kyu_err_set(err, KYU_ERR_CONNECTION, "poll: %s", strerror(errno));
        if (n < 0)
            return KYU_ERR_TIMEOUT;
    }
}

/* Reads one multipart message (waiting up to timeout_ms) and, when it answers a request in
 * flight, fills rep (and msgs) and removes the request from the table: returns KYU_OK.
 * Returns KYU_ERR_TIMEOUT when nothing came, KYU_ERR_MALFORMED when a message was read but
 * answers no request in flight (dropped), KYU_ERR_CONNECTION on a socket failure; rep is
 * untouched then. The reply is decoded into the client's scratch reply and moved into rep
 * only when it answers something (decode and move touch what the reply fills, not all of
 * the 19 KB kyu_reply_t: about 3 KB for a SEND's). */
kyu_code_t kyu_client_recv_one(kyu_client_t *c, int timeout_ms, kyu_reply_t *rep,
                               kyu_message_t **msgs, kyu_err_t *err)
{
    if (!c->sock)
        return KYU_ERR_TIMEOUT;
    zmq_msg_t frames[MAX_FRAMES];
    zmq_msg_init(&frames[0]);
    kyu_code_t rc = recv_first(c, &frames[0], timeout_ms, err);
    if (rc != KYU_OK) {
        zmq_msg_close(&frames[0]);
        return rc;
    }
    size_t n_frames = 1, extra = 0;
    int more = zmq_msg_more(&frames[0]);
    while (more) {
        zmq_msg_t f;
        zmq_msg_init(&f);
        if (zmq_msg_recv(&f, c->sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&f);
            break; /* parts of a message arrive together: only on close */
        }
        more = zmq_msg_more(&f);
        if (n_frames < MAX_FRAMES)
            frames[n_frames++] = f;
        else {
            extra++;
            zmq_msg_close(&f);
        }
    }
    rc = KYU_ERR_MALFORMED;
    kyu_reply_t *tmp = c->scratch;
    kyu_err_t derr = {0};
    kyu_pending_t *p = NULL;
    if (kyu_reply_decode(zmq_msg_data(&frames[0]), zmq_msg_size(&frames[0]), tmp, &derr) ==
            KYU_OK &&
        (p = find_pending(c, tmp->id)) != NULL) {
        kyu_pending_t req = take_pending(c, p);
        if (extra)
            make_error(tmp, req.id, KYU_ERR_MALFORMED, "reply has too many frames");
        else
            check_reply(&req, tmp, frames + 1, n_frames - 1, msgs);
        kyu_reply_move(rep, tmp); /* with the queues array */
        rc = KYU_OK;
    } else if (c->push_id && tmp->id == c->push_id && tmp->ev) {
        /* A worker session's push: checked and built as a RECEIVE reply. */
        kyu_pending_t push = {.id = tmp->id, .op = KYU_OP_RECEIVE};
        if (extra)
            make_error(tmp, push.id, KYU_ERR_MALFORMED, "push has too many frames");
        else
            check_reply(&push, tmp, frames + 1, n_frames - 1, msgs);
        kyu_reply_move(rep, tmp);
        rc = KYU_OK;
    }
    for (size_t i = 0; i < n_frames; i++)
        zmq_msg_close(&frames[i]);
    return rc;
}

/* The request in flight with the earliest deadline (NULL when none); makes the client's
 * lower bound of deadlines exact. */
static kyu_pending_t *earliest(kyu_client_t *c)
{
    kyu_pending_t *best = NULL;
    for (size_t i = 0; i < c->n_pending; i++)
        if (!best || c->pending[i].deadline_ms < best->deadline_ms)
            best = &c->pending[i];
    c->min_deadline_ms = best ? best->deadline_ms : INT64_MAX;
    return best;
}

/* Answers the request whose deadline passed first as TIMEOUT, if one did: scans the table
 * only once the lower bound of deadlines says one may have. */
static kyu_code_t expire_one(kyu_client_t *c, int64_t now, kyu_reply_t *rep)
{
    if (now < c->min_deadline_ms)
        return KYU_ERR_TIMEOUT;
    kyu_pending_t *p = earliest(c);
    if (!p || p->deadline_ms > now)
        return KYU_ERR_TIMEOUT;
    kyu_pending_t req = take_pending(c, p);
    char text[KYU_ERR_MSG_MAX];
    snprintf(text, sizeof text, "no reply from %s within %d ms", kyu_client_endpoint(c),
             c->opts.timeout_ms);
    make_error(rep, req.id, KYU_ERR_TIMEOUT, text);
    return KYU_OK;
}

kyu_code_t kyu_client_poll_reply(kyu_client_t *self, int timeout_ms, kyu_reply_t *rep,
                                 kyu_message_t **msgs, kyu_err_t *err)
{
    if (msgs)
        *msgs = NULL;
    if (self->stash_head) {
        kyu_stash_t *s = self->stash_head;
        self->stash_head = s->next;
        if (!self->stash_head)
            self->stash_tail = NULL;
        kyu_reply_reset(rep);
        *rep = s->rep;
        if (msgs)
            *msgs = s->msgs;
        else
            kyu_messages_destroy(&s->msgs);
        free(s);
        return KYU_OK;
    }
    int64_t start = kyu_client_now_ms(), now = start;
    for (;;) {
        if (expire_one(self, now, rep) == KYU_OK)
            return KYU_OK;
        if (self->n_pending == 0 && !self->push_id)
            return kyu_err_set(err, KYU_ERR_TIMEOUT, "no request in flight");
        /* With a worker session open, pushes may come with no request in flight. Until the
         * earliest deadline at most (a lower bound: waking early only rescans). */
        int64_t wait = self->n_pending  ? self->min_deadline_ms - now
                       : timeout_ms < 0 ? 1000
                                        : timeout_ms;
        if (timeout_ms >= 0 && start + timeout_ms - now < wait)
            wait = start + timeout_ms - now;
        if (wait < 0)
            wait = 0;
        kyu_code_t rc = kyu_client_recv_one(self, (int)wait, rep, msgs, err);
        if (rc == KYU_OK || rc == KYU_ERR_CONNECTION)
            return rc;
        now = kyu_client_now_ms();
        if (rc == KYU_ERR_TIMEOUT && timeout_ms >= 0 && now >= start + timeout_ms)
            return kyu_err_set(err, KYU_ERR_TIMEOUT, "no reply within %d ms", timeout_ms);
    }
}

static kyu_code_t stash_push(kyu_client_t *c, kyu_reply_t *rep, kyu_message_t **msgs)
{
    kyu_stash_t *s = calloc(1, sizeof *s);
    if (!s)
        return KYU_ERR_INTERNAL;
    s->rep = *rep; /* moves the queues array */
    kyu_reply_init(rep);
    s->msgs = *msgs;
    *msgs = NULL;
    if (c->stash_tail)
        c->stash_tail->next = s;
    else
        c->stash_head = s;
    c->stash_tail = s;
    return KYU_OK;
}

kyu_code_t kyu_client_call_once(kyu_client_t *c, const kyu_request_t *req,
                                const void *const *bodies, const size_t *lens, size_t n,
                                kyu_reply_t *rep, kyu_message_t **msgs, kyu_err_t *err)
{
    return kyu_client_call_once_within(c, req, bodies, lens, n, rep, msgs,
                                       c->opts.timeout_ms + kyu_client_request_wait_ms(req), err);
}

kyu_code_t kyu_client_call_once_within(kyu_client_t *c, const kyu_request_t *req,
                                       const void *const *bodies, const size_t *lens, size_t n,
                                       kyu_reply_t *rep, kyu_message_t **msgs, int timeout_ms,
                                       kyu_err_t *err)
{
    uint64_t id = 0;
    if (msgs)
        *msgs = NULL;
    kyu_code_t rc = kyu_client_request_async(c, req, bodies, lens, n, &id, err);
    if (rc != KYU_OK)
        return rc;
    kyu_pending_t *mine = find_pending(c, id);
    if (mine)
        kyu_client_set_deadline(c, mine, kyu_client_now_ms() + timeout_ms);
    for (;;) {
        kyu_pending_t *p = find_pending(c, id);
        int64_t now = kyu_client_now_ms();
        if (!p || p->deadline_ms <= now) {
            if (p)
                take_pending(c, p);
            return kyu_err_set(err, KYU_ERR_TIMEOUT, "no reply from %s within %d ms",
                               kyu_client_endpoint(c), timeout_ms);
        }
        /* Straight into rep (recv_one moves a reply there only when it answers a request in
         * flight): no copy of the 19 KB reply for the common case, ours. */
        kyu_message_t *tmp_msgs = NULL;
        rc = kyu_client_recv_one(c, (int)(p->deadline_ms - now), rep, &tmp_msgs, err);
        if (rc == KYU_ERR_CONNECTION) {
            if ((p = find_pending(c, id)) != NULL)
                take_pending(c, p);
            return rc;
        }
        if (rc != KYU_OK)
            continue;
        if (rep->id != id) {
            /* A reply to an asynchronous request: keep it for poll_reply (rep is left
             * cleared). */
            if (stash_push(c, rep, &tmp_msgs) != KYU_OK) {
                kyu_reply_reset(rep);
                kyu_messages_destroy(&tmp_msgs);
            }
            continue;
        }
        if (msgs)
            *msgs = tmp_msgs;
        else
            kyu_messages_destroy(&tmp_msgs);
        if (rep->status == KYU_OK)
            return KYU_OK;
        kyu_code_t code =
            rep->status < KYU_ERR_CODE_COUNT ? (kyu_code_t)rep->status : KYU_ERR_INTERNAL;
        return kyu_err_set(err, code, "%s",
                           rep->error[0] ? rep->error : kyu_code_name((int)rep->status));
    }
}
