#include "recv_bounded.h"

#include <errno.h>

#define EINTR_RETRIES 100     /* a signal during the parts of one message: try again */
#define OVERSIZED_PER_CALL 64 /* oversized requests answered per kyu_recv_request call */

/* The next part of a message already under way: ZeroMQ delivers all parts of a message at
 * once, so only a signal can interrupt this. */
/* The next part: the first without waiting (NULL with EAGAIN when no message waits), the
 * others as they come (they arrive with the first: ZeroMQ delivers messages whole). The
 * first is not preceded by a zsock_events check: on a socket with nothing pending that costs
 * a poll() system call, which per request was most of the event loop's system calls. */
static zframe_t *next_part(zsock_t *sock, bool first)
{
    for (int i = 0; i < EINTR_RETRIES; i++) {
        zframe_t *f = first ? zframe_recv_nowait(sock) : zframe_recv(sock);
        if (f || zmq_errno() != EINTR)
            return f;
    }
    return NULL;
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

kyu_code_t kyu_recv_bounded(zsock_t *sock, const kyu_recv_limits_t *lim, zmsg_t **out,
                            kyu_err_t *err)
{
    *out = NULL;
    zmsg_t *m = zmsg_new();
    if (!m)
        return kyu_err_set(err, KYU_ERR_INTERNAL, "out of memory");
    size_t frames = 0, bytes = 0;
    bool more = true;
    while (more) {
        zframe_t *f = next_part(sock, frames == 0);
        if (!f) {
            zmsg_destroy(&m);
            /* No first part is no message; a later one cannot be missing (ZeroMQ delivers
             * messages whole). */
            return frames == 0 ? kyu_err_set(err, KYU_ERR_TIMEOUT, "no message")
                               : kyu_err_set(err, KYU_ERR_INTERNAL, "receive failed: %s",
                                             zmq_strerror(zmq_errno()));
        }
        more = zframe_more(f);
        frames++;
        bytes += zframe_size(f);
        if (frames > lim->max_frames || bytes > lim->max_bytes) {
            zframe_destroy(&f);
            if (more && !drain_rest(sock)) {
                zmsg_destroy(&m);
                return kyu_err_set(err, KYU_ERR_INTERNAL, "receive failed: %s",
                                   zmq_strerror(zmq_errno()));
            }
            *out = m;
            return kyu_err_set(err, KYU_ERR_TOO_LARGE,
                               "message over %zu frames or %zu bytes: dropped", lim->max_frames,
                               lim->max_bytes);
        }
        if (zmsg_append(m, &f) != 0) {
            zframe_destroy(&f);
            if (more)
                drain_rest(sock);
            zmsg_destroy(&m);
            return kyu_err_set(err, KYU_ERR_INTERNAL, "out of memory");
        }
    }
    *out = m;
    return KYU_OK;
}

/* Answers an oversized request: TOO_LARGE, with its id when the header (its second frame)
 * reads; without a routing id there is nobody to answer. */
static void answer_too_large(zsock_t *sock, zmsg_t *kept, const char *why)
{
    zframe_t *identity = zmsg_first(kept);
    zframe_t *header = zmsg_next(kept);
    if (!identity)
        return;
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    rep.status = KYU_ERR_TOO_LARGE;
    snprintf(rep.error, sizeof rep.error, "request %s", why);
    if (header) {
        kyu_request_t req;
        kyu_err_t ignored;
        kyu_request_decode(zframe_data(header), zframe_size(header), 0, &req, &ignored);
        rep.id = req.has_id ? req.id : 0;
    }
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    kyu_reply_encode(&rep, &buf);
    zmsg_t *m = zmsg_new();
    zframe_t *to = zframe_dup(identity);
    bool built = m && to && zmsg_append(m, &to) == 0 && zmsg_addmem(m, buf.data, buf.size) == 0;
    if (built && zmsg_send(&m, sock) != 0)
        zmsg_destroy(&m); /* the client is gone or not reading: it times out and retries */
    zframe_destroy(&to);
    zmsg_destroy(&m);
    msgpack_sbuffer_destroy(&buf);
}

zmsg_t *kyu_recv_request(zsock_t *sock, size_t max_body)
{
    kyu_recv_limits_t lim = {
        /* Twice a full request: a few frames too many still reach the codec, whose answer
         * (MALFORMED, wrong body count) says more than TOO_LARGE would. */
        .max_frames = 2 * (2 + KYU_BATCH_MAX),
        .max_bytes = KYU_ROUTING_ID_MAX + KYU_HEADER_MAX + KYU_BATCH_MAX * max_body,
    };
    for (int i = 0; i < OVERSIZED_PER_CALL; i++) {
        zmsg_t *m = NULL;
        kyu_err_t err;
        kyu_code_t rc = kyu_recv_bounded(sock, &lim, &m, &err);
        if (rc == KYU_OK)
            return m;
        if (rc == KYU_ERR_TOO_LARGE)
            answer_too_large(sock, m, err.msg);
        zmsg_destroy(&m);
        if (rc != KYU_ERR_TOO_LARGE)
            return NULL;
    }
    return NULL; /* more oversized requests wait: the next readable event takes them */
}
