/* recv_bounded: receiving a ZeroMQ message within a frame count and a byte total.
 *
 * ZMQ_MAXMSGSIZE bounds each frame, not how many frames a message has: zmsg_recv would
 * assemble a message of a million empty frames (a zframe_t and a list node each) before
 * anyone could look at it. kyu_recv_bounded takes the message part by part (ZMQ_RCVMORE)
 * with zmq_msg_recv into the zmq_msg_t of a kyu_parts_t the caller keeps and reuses (no
 * allocation per part: libzmq moves each part's content in, and a large part's content
 * stays where libzmq received it), and keeps at most the limits' parts and bytes; the rest
 * of an oversized message is received into one reused zmq_msg_t and dropped, so the socket
 * is left at the start of the next message. Every receive of the client port (frontend.c,
 * through kyu_recv_request) and of the raft port (transport.c, which also carries snapshot
 * fetches) goes through it.
 *
 * Used on the event-loop thread, on the socket's own thread.
 */
#ifndef KYU_RECV_BOUNDED_H
#define KYU_RECV_BOUNDED_H

#include "protocol.h"

#include <czmq.h>

#define KYU_ROUTING_ID_MAX 256 /* ZeroMQ routing ids are 1..255 bytes */

/* The client port's frame bound: twice a full request (routing id, header, bodies), so
 * that a few frames too many still reach the codec, whose answer (MALFORMED, wrong body
 * count) says more than TOO_LARGE would. */
#define KYU_REQUEST_PARTS_MAX (2 * (2 + KYU_BATCH_MAX))

typedef struct {
    size_t max_frames; /* the ROUTER's routing-id frame included */
    size_t max_bytes;  /* all frames together */
} kyu_recv_limits_t;

/* The parts of the last message received: part[0 .. n), each valid (its data in place)
 * until the next receive into it or kyu_parts_destroy. */
typedef struct {
    size_t n;
    size_t cap;
    zmq_msg_t part[];
} kyu_parts_t;

/* Room for cap parts (NULL: out of memory). */
kyu_parts_t *kyu_parts_new(size_t cap);
void kyu_parts_destroy(kyu_parts_t **self_p);
/* Closes the parts held (n becomes 0). */
void kyu_parts_clear(kyu_parts_t *self);

static inline const void *kyu_part_data(kyu_parts_t *p, size_t i)
{
    return zmq_msg_data(&p->part[i]);
}

static inline size_t kyu_part_size(kyu_parts_t *p, size_t i)
{
    return zmq_msg_size(&p->part[i]);
}

/* Receives the next message waiting on sock into p (what p held before is closed first);
 * never blocks. lim->max_frames must be at most p->cap.
 *   KYU_OK             p holds the message.
 *   KYU_ERR_TOO_LARGE  it had more frames or bytes than lim: the rest was drained and
 *                      dropped, and p holds its first frames within the limits (the routing
 *                      id first), so the caller can answer.
 *   KYU_ERR_TIMEOUT    no message waits (p empty).
 *   KYU_ERR_INTERNAL   the socket failed (p empty). */
kyu_code_t kyu_recv_bounded(zsock_t *sock, const kyu_recv_limits_t *lim, kyu_parts_t *p,
                            kyu_err_t *err);

/* The client port's receive into p (of at least KYU_REQUEST_PARTS_MAX parts): the next
 * request within the protocol's bounds (a routing id, a header of at most KYU_HEADER_MAX
 * bytes, at most KYU_BATCH_MAX bodies of max_body bytes; KYU_REQUEST_PARTS_MAX parts);
 * false when none waits. An oversized request is answered TOO_LARGE (with its request id
 * when its header reads) and dropped. */
bool kyu_recv_request(zsock_t *sock, size_t max_body, kyu_parts_t *p);

#endif
