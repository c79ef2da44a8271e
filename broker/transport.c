#include "transport.h"

#include "recv_bounded.h"
#include "snap_codec.h"

#include <stdlib.h>
#include <string.h>

#define SNDHWM 256  /* per peer: the core keeps at most 16 appends in flight per follower */
#define RCVHWM 4096 /* per connected peer */
#define HANDSHAKE_MS 2000

typedef struct {
    uint64_t id;
    char raft[KYU_ENDPOINT_MAX];
    zsock_t *dealer;
} link_t;

struct kyu_transport {
    uint64_t self_id;
    zsock_t *router;
    link_t links[KYU_RAFT_MAX_NODES];
    size_t n_links;
    int64_t max_msg;
    msgpack_sbuffer buf;
    kyu_parts_t *held;      /* the frames a decoded message points into */
    zframe_t *snap_routing; /* a snapshot fetch's sender, until the next recv */
    uint64_t dropped;       /* messages not sent: peer down or full */
};

/* libzmq's defaults fail open: bound frames, queues and handshakes. */
static void harden(zsock_t *s, int64_t max_msg)
{
    zsock_set_maxmsgsize(s, max_msg);
    zsock_set_sndhwm(s, SNDHWM);
    zsock_set_rcvhwm(s, RCVHWM);
    zsock_set_handshake_ivl(s, HANDSHAKE_MS);
    zsock_set_linger(s, 0);
    zsock_set_sndtimeo(s, 0);
    zsock_set_heartbeat_ivl(s, 1000);
    zsock_set_heartbeat_timeout(s, 3000);
    zsock_set_reconnect_ivl_max(s, 1000);
}

/* Connects a DEALER to p; false when it cannot be created or connected. */
static bool open_link(kyu_transport_t *self, const kyu_peer_t *p)
{
    if (self->n_links >= KYU_RAFT_MAX_NODES)
        return false;
    zsock_t *d = zsock_new(ZMQ_DEALER);
    if (!d)
        return false;
    harden(d, self->max_msg);
    /* Queue only to a connected peer: messages for a dead one are dropped at once instead of
     * piling up and arriving stale after it comes back. */
    zsock_set_immediate(d, 1);
    if (zsock_connect(d, "%s", p->raft) < 0) {
        zsock_destroy(&d);
        return false;
    }
    link_t *l = &self->links[self->n_links++];
    l->id = p->id;
    snprintf(l->raft, sizeof l->raft, "%s", p->raft);
    l->dealer = d;
    return true;
}

static link_t *find_link(kyu_transport_t *self, uint64_t id)
{
    for (size_t i = 0; i < self->n_links; i++)
        if (self->links[i].id == id)
            return &self->links[i];
    return NULL;
}

void kyu_transport_set_links(kyu_transport_t *self, const kyu_peers_t *links)
{
    for (size_t i = 0; i < self->n_links;) {
        link_t *l = &self->links[i];
        const kyu_peer_t *p = kyu_peers_find(links, l->id);
        if (p && strcmp(p->raft, l->raft) == 0) {
            i++;
            continue;
        }
        printf("kyu-broker: closing the link to node %llu at %s\n", (unsigned long long)l->id,
               l->raft);
        zsock_destroy(&l->dealer);
        *l = self->links[--self->n_links];
    }
    for (size_t i = 0; i < links->n; i++) {
        const kyu_peer_t *p = &links->peers[i];
        if (p->id == self->self_id || find_link(self, p->id))
            continue;
        if (open_link(self, p))
            printf("kyu-broker: linked to node %llu at %s\n", (unsigned long long)p->id, p->raft);
        else
            fprintf(stderr, "kyu-broker: cannot connect to node %llu at %s\n",
                    (unsigned long long)p->id, p->raft);
    }
    fflush(stdout);
}

kyu_transport_t *kyu_transport_new(const kyu_peers_t *peers, uint64_t self_id, int64_t max_msg,
                                   const char *bind_raft, kyu_err_t *err)
{
    const kyu_peer_t *me = kyu_peers_find(peers, self_id);
    if (!me) {
        kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "node id %llu is not in the peer list",
                    (unsigned long long)self_id);
        return NULL;
    }
    kyu_transport_t *self = calloc(1, sizeof *self);
    if (!self) {
        kyu_err_set(err, KYU_ERR_INTERNAL, "out of memory");
        return NULL;
    }
    self->held = kyu_parts_new(2);
    if (!self->held) {
        free(self);
        kyu_err_set(err, KYU_ERR_INTERNAL, "out of memory");
        return NULL;
    }
    self->self_id = self_id;
    self->max_msg = max_msg;
    msgpack_sbuffer_init(&self->buf);
    self->router = zsock_new(ZMQ_ROUTER);
    if (!self->router) {
        kyu_err_set(err, KYU_ERR_INTERNAL, "cannot create the raft socket");
        kyu_transport_destroy(&self);
        return NULL;
    }
    harden(self->router, max_msg);
    char bind[KYU_ENDPOINT_MAX];
    const char *raft = bind_raft ? bind_raft : me->raft;
    kyu_endpoint_for_bind(raft, bind, sizeof bind);
    if (zsock_bind(self->router, "%s", bind) < 0) {
        kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "cannot bind the raft address %s (%s): %s", raft,
                    bind, zmq_strerror(zmq_errno()));
        kyu_transport_destroy(&self);
        return NULL;
    }
    for (size_t i = 0; i < peers->n; i++) {
        if (peers->peers[i].id != self_id && !open_link(self, &peers->peers[i])) {
            kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "cannot connect to peer %llu at %s",
                        (unsigned long long)peers->peers[i].id, peers->peers[i].raft);
            kyu_transport_destroy(&self);
            return NULL;
        }
    }
    return self;
}

void kyu_transport_destroy(kyu_transport_t **self_p)
{
    kyu_transport_t *self = *self_p;
    if (!self)
        return;
    for (size_t i = 0; i < self->n_links; i++)
        zsock_destroy(&self->links[i].dealer);
    zsock_destroy(&self->router);
    kyu_parts_destroy(&self->held);
    zframe_destroy(&self->snap_routing);
    msgpack_sbuffer_destroy(&self->buf);
    free(self);
    *self_p = NULL;
}

zsock_t *kyu_transport_sock(kyu_transport_t *self)
{
    return self->router;
}

uint64_t kyu_transport_dropped(const kyu_transport_t *self)
{
    return self->dropped;
}

void kyu_transport_send(kyu_transport_t *self, const kyu_raft_msg_t *msg)
{
    link_t *l = find_link(self, msg->to);
    if (!l) {
        self->dropped++;
        return;
    }
    msgpack_sbuffer_clear(&self->buf);
    kyu_peer_encode(msg, &self->buf);
    if (zmq_send(zsock_resolve(l->dealer), self->buf.data, self->buf.size, ZMQ_DONTWAIT) < 0)
        self->dropped++; /* EAGAIN: not connected or full; Raft sends it again */
}

/* A snapshot fetch is served only to a current member: one this node links to (the
 * configuration's members, or the address book while this node is not in it yet). The raft
 * port is not authenticated yet (DEALERs have no fixed routing id and CurveZMQ is not in), so
 * the transport cannot tell which peer a connection belongs to and checks the sender the
 * request names; with CurveZMQ the ZAP User-Id will be checked against it. */
static bool fetch_from_member(kyu_transport_t *self, const void *data, size_t len)
{
    kyu_snap_msg_t req;
    kyu_err_t err;
    bool ok = kyu_snap_decode(data, len, &req, &err) == KYU_OK && req.kind == KYU_SNAP_FETCH &&
              req.to == self->self_id && req.from != self->self_id && find_link(self, req.from);
    kyu_snap_reset(&req);
    return ok;
}

kyu_code_t kyu_transport_recv(kyu_transport_t *self, kyu_peer_decoded_t *out,
                              kyu_transport_snap_t *snap, kyu_err_t *err)
{
    kyu_parts_clear(self->held);
    zframe_destroy(&self->snap_routing);
    memset(out, 0, sizeof *out);
    memset(snap, 0, sizeof *snap);
    /* Every peer message is two frames (routing id, body): anything longer is drained and
     * dropped frame by frame, never assembled. */
    kyu_recv_limits_t lim = {.max_frames = 2,
                             .max_bytes = KYU_ROUTING_ID_MAX + (size_t)self->max_msg};
    kyu_parts_t *m = self->held;
    kyu_code_t rc = kyu_recv_bounded(self->router, &lim, m, err);
    if (rc == KYU_ERR_TOO_LARGE) {
        kyu_parts_clear(m);
        return kyu_err_set(err, KYU_ERR_MALFORMED, "peer message over two frames: dropped");
    }
    if (rc != KYU_OK)
        return rc;
    if (m->n != 2) {
        kyu_parts_clear(m);
        return kyu_err_set(err, KYU_ERR_MALFORMED, "peer message of the wrong frame count");
    }
    const void *body = kyu_part_data(m, 1);
    size_t body_len = kyu_part_size(m, 1);
    if (kyu_snap_is_frame(body, body_len)) {
        if (!fetch_from_member(self, body, body_len))
            return kyu_err_set(err, KYU_ERR_MALFORMED, "snapshot fetch not from a member");
        self->snap_routing = zframe_new(kyu_part_data(m, 0), kyu_part_size(m, 0));
        if (!self->snap_routing)
            return kyu_err_set(err, KYU_ERR_INTERNAL, "out of memory");
        *snap = (kyu_transport_snap_t){self->snap_routing, body, body_len};
        return KYU_OK;
    }
    rc = kyu_peer_decode(body, body_len, out, err);
    if (rc != KYU_OK)
        return rc;
    if (out->msg.to != self->self_id || out->msg.from == self->self_id ||
        !find_link(self, out->msg.from)) {
        kyu_peer_decoded_reset(out);
        return kyu_err_set(err, KYU_ERR_MALFORMED, "peer message not from a member to this node");
    }
    return KYU_OK;
}

void kyu_transport_reply(kyu_transport_t *self, const zframe_t *routing, const void *data,
                         size_t len)
{
    void *r = zsock_resolve(self->router);
    if (zmq_send(r, zframe_data((zframe_t *)routing), zframe_size((zframe_t *)routing),
                 ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_send(r, data, len, ZMQ_DONTWAIT) < 0)
        self->dropped++;
}
