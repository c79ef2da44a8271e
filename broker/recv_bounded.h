/* recv_bounded: receiving a ZeroMQ message within a frame count and a byte total.
 *
 * ZMQ_MAXMSGSIZE bounds each frame, not how many frames a message has: zmsg_recv would
 * assemble a message of a million empty frames (a zframe_t and a list node each) before
 * anyone could look at it. kyu_recv_bounded takes the message frame by frame (ZMQ_RCVMORE)
 * and keeps at most the limits' frames and bytes; the rest of an oversized message is
 * received into one reused zmq_msg_t and dropped, so the socket is left at the start of the
 * next message. Every receive of the client port (frontend.c, through kyu_recv_request) and
 * of the raft port (transport.c, which also carries snapshot fetches) goes through it.
 *
 * Used on the event-loop thread, on the socket's own thread.
 */
#ifndef KYU_RECV_BOUNDED_H
#define KYU_RECV_BOUNDED_H

#include "protocol.h"

#include <czmq.h>

#define KYU_ROUTING_ID_MAX 256 /* ZeroMQ routing ids are 1..255 bytes */

typedef struct {
    size_t max_frames; /* the ROUTER's routing-id frame included */
    size_t max_bytes;  /* all frames together */
} kyu_recv_limits_t;

/* Receives the next message waiting on sock; never blocks.
 *   KYU_OK             *out is the message (caller destroys it).
 *   KYU_ERR_TOO_LARGE  it had more frames or bytes than lim: the rest was drained and
 *                      dropped, and *out holds its first frames within the limits (the
 *                      routing id first), so the caller can answer; caller destroys it.
 *   KYU_ERR_TIMEOUT    no message waits (*out NULL).
 *   KYU_ERR_INTERNAL   the socket failed (*out NULL). */
kyu_code_t kyu_recv_bounded(zsock_t *sock, const kyu_recv_limits_t *lim, zmsg_t **out,
                            kyu_err_t *err);

/* The client port's receive: the next request within the protocol's bounds (a routing id, a
 * header of at most KYU_HEADER_MAX bytes, at most KYU_BATCH_MAX bodies of max_body bytes), or
 * NULL when none waits (the frame bound is twice that, so that a few extra frames still get
 * the codec's precise answer). An oversized request is answered TOO_LARGE (with its request id when
 * its header reads) and dropped. Caller owns the result. */
zmsg_t *kyu_recv_request(zsock_t *sock, size_t max_body);

#endif
