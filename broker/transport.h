/* transport: Raft peer messages over ZeroMQ.
 *
 * Each node binds a ROUTER on its raft address and connects one DEALER to every other
 * member; kyu_transport_set_links opens and closes DEALERs as members come and go. Messages go out
 * on the DEALER of their destination and come in on the ROUTER (whose identity frame is ignored:
 * the message says who sent it, and is checked against the member list). Sending never blocks the
 * event loop: a message for a peer that is down, not yet connected or not reading is dropped, and
 * Raft retransmits. Incoming messages are received frame by frame within two frames and the
 * peer message bound (recv_bounded.h); a snapshot fetch is passed on only from a member.
 *
 * Owned by the event-loop thread.
 */
#ifndef KYU_TRANSPORT_H
#define KYU_TRANSPORT_H

#include "peer_codec.h"
#include "peers.h"

#include <czmq.h>

typedef struct kyu_transport kyu_transport_t;

/* Binds self_id's raft address and connects to the others. max_msg bounds incoming frames
 * (ZMQ_MAXMSGSIZE). NULL with err set when the address cannot be bound. */
kyu_transport_t *kyu_transport_new(const kyu_peers_t *peers, uint64_t self_id, int64_t max_msg,
                                   const char *bind_raft, kyu_err_t *err);
void kyu_transport_destroy(kyu_transport_t **self_p);

zsock_t *kyu_transport_sock(kyu_transport_t *self);

/* Makes the links exactly links (minus this node): closes the DEALERs of peers not in it
 * (or whose address changed) and connects the new ones. Messages are accepted only from
 * linked peers. A peer whose address cannot be connected is left out (said on stderr). */
void kyu_transport_set_links(kyu_transport_t *self, const kyu_peers_t *links);

/* Encodes msg and queues it for msg->to; drops it (counted) when it cannot go at once. */
void kyu_transport_send(kyu_transport_t *self, const kyu_raft_msg_t *msg);

/* A snapshot-transfer frame (snap_codec.h), undecoded: who sent it (the ROUTER's routing
 * id, to answer with kyu_transport_reply) and its bytes; both valid until the next recv. */
typedef struct {
    const zframe_t *routing;
    const void *data;
    size_t len;
} kyu_transport_snap_t;

/* Receives one message if one is waiting: KYU_OK with *out filled (reset it after use), or
 * with out->live false and *snap filled for a snapshot FETCH from a linked member to this
 * node; KYU_ERR_TIMEOUT when none waits, MALFORMED for a message of more than two frames or
 * bytes, a frame that does not decode or does not come from a member to this node
 * (dropped). */
kyu_code_t kyu_transport_recv(kyu_transport_t *self, kyu_peer_decoded_t *out,
                              kyu_transport_snap_t *snap, kyu_err_t *err);
/* Answers a snapshot-transfer frame on the ROUTER (dropped when it cannot go at once). */
void kyu_transport_reply(kyu_transport_t *self, const zframe_t *routing, const void *data,
                         size_t len);

uint64_t kyu_transport_dropped(const kyu_transport_t *self);

#endif
