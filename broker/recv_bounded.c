#include "recv_bounded.h"

#include <errno.h>
#include <stdlib.h>

#define EINTR_RETRIES 100     /* a signal during the parts of one message: try again */
#define OVERSIZED_PER_CALL 64 /* oversized requests answered per kyu_recv_request call */

/* The next part into m: the first without waiting (-1 with EAGAIN when no message waits),
 * the others as they come (they arrive with the first: ZeroMQ delivers messages whole, so
 * only a signal can interrupt these). The first is not preceded by a zsock_events check: on
 * a socket with nothing pending that costs a poll() system call, which per request was most
 * of the event loop's system calls. */
static int next_part(void *sock, zmq_msg_t *m, bool first)
{
    for (int i = 0; i < EINTR_RETRIES; i++) {
        int rc = zmq_msg_recv(m, sock, first ? ZMQ_DONTWAIT : 0);
        if (rc >= 0 || zmq_errno() != EINTR)
            return rc;
    }
    return -1;
}

/* Receives and drops the remaining parts of the message under way. */
static bool drain_rest(zsock_t *sock)
{
    zmq_msg_t part;
    zmq_msg_init(&part);
    bool ok = true, more = true;
    while (more) {
        int rc = zmq_msg_recv(&part, zsock_resolve(sock), 0);
        if (rc < 0 && zmq_errno() == EINTR)
            continue;
        if (rc < 0) {
            ok = false;
            break;
        }
        more = zmq_msg_more(&part);
    }
    zmq_msg_close(&part);
    return ok;
}

kyu_parts_t *kyu_parts_new(size_t cap)
{
    kyu_parts_t *self = malloc(sizeof *self + cap * sizeof(zmq_msg_t));
    if (!self)
        return NULL;
    self->n = 0;
    self->cap = cap;
    for (size_t i = 0; i < cap; i++)
        zmq_msg_init(&self->part[i]);
    return self;
}

void kyu_parts_clear(kyu_parts_t *self)
{
    for (size_t i = 0; i < self->n; i++) {
        zmq_msg_close(&self->part[i]);
        zmq_msg_init(&self->part[i]);
    }
    self->n = 0;
}

void kyu_parts_destroy(kyu_parts_t **self_p)
{
    kyu_parts_t *self = *self_p;
    if (!self)
        return;
    kyu_parts_clear(self);
    free(self);
    *self_p = NULL;
}

kyu_code_t kyu_recv_bounded(zsock_t *zsock, const kyu_recv_limits_t *lim, kyu_parts_t *p,
                            kyu_err_t *err)
{
    kyu_parts_clear(p);
    if (lim->max_frames > p->cap)
        return kyu_err_set(err, KYU_ERR_INTERNAL, "receive bound over the parts' room");
    void *sock = zsock_resolve(zsock);
    zmq_msg_t over; /* the part past the frame bound: received, then dropped */
    zmq_msg_init(&over);
    size_t bytes = 0;
    bool more = true;
    while (more) {
        bool first = p->n == 0;
        zmq_msg_t *m = p->n < lim->max_frames ? &p->part[p->n] : &over;
        if (next_part(sock, m, first) < 0) {
            kyu_parts_clear(p);
            zmq_msg_close(&over);
            /* No first part is no message; a later one cannot be missing (ZeroMQ delivers
             * messages whole). */
            return first ? kyu_err_set(err, KYU_ERR_TIMEOUT, "no message")
                         : kyu_err_set(err, KYU_ERR_INTERNAL, "receive failed: %s",
                                       zmq_strerror(zmq_errno()));
        }
        more = zmq_msg_more(m);
        bytes += zmq_msg_size(m);
        if (m == &over || bytes > lim->max_bytes) {
            zmq_msg_close(m); /* not kept: p holds the parts within the limits */
            zmq_msg_init(m);
            zmq_msg_close(&over);
            if (more && !drain_rest(zsock)) {
                kyu_parts_clear(p);
                return kyu_err_set(err, KYU_ERR_INTERNAL, "receive failed: %s",
                                   zmq_strerror(zmq_errno()));
            }
            return kyu_err_set(err, KYU_ERR_TOO_LARGE,
                               "message over %zu frames or %zu bytes: dropped", lim->max_frames,
                               lim->max_bytes);
        }
        p->n++;
    }
    zmq_msg_close(&over);
    return KYU_OK;
}

/* Answers an oversized request: TOO_LARGE, with its id when the header (its second frame)
 * reads; without a routing id there is nobody to answer. */
static void answer_too_large(zsock_t *sock, kyu_parts_t *kept, const char *why)
{
    if (kept->n == 0)
        return;
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    rep.status = KYU_ERR_TOO_LARGE;
    snprintf(rep.error, sizeof rep.error, "request %s", why);
    if (kept->n > 1) {
        kyu_request_t req;
        kyu_err_t ignored;
        kyu_request_decode(kyu_part_data(kept, 1), kyu_part_size(kept, 1), 0, &req, &ignored);
        rep.id = req.has_id ? req.id : 0;
    }
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    kyu_reply_encode(&rep, &buf);
    /* the client is gone or not reading: it times out and retries */
    void *s = zsock_resolve(sock);
    if (zmq_send(s, kyu_part_data(kept, 0), kyu_part_size(kept, 0), ZMQ_SNDMORE) >= 0)
        zmq_send(s, buf.data, buf.size, 0);
    msgpack_sbuffer_destroy(&buf);
}

bool kyu_recv_request(zsock_t *sock, size_t max_body, kyu_parts_t *p)
{
    kyu_recv_limits_t lim = {
        .max_frames = KYU_REQUEST_PARTS_MAX,
        .max_bytes = KYU_ROUTING_ID_MAX + KYU_HEADER_MAX + KYU_BATCH_MAX * max_body,
    };
    for (int i = 0; i < OVERSIZED_PER_CALL; i++) {
        kyu_err_t err;
        kyu_code_t rc = kyu_recv_bounded(sock, &lim, p, &err);
        if (rc == KYU_OK)
            return true;
        if (rc == KYU_ERR_TOO_LARGE)
            answer_too_large(sock, p, err.msg);
        kyu_parts_clear(p);
        if (rc != KYU_ERR_TOO_LARGE)
            return false;
    }
    return false; /* more oversized requests wait: the next readable event takes them */
}
