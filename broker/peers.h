/* peers: the cluster configuration every node is started with — the same list of members
 * (id, raft address, client endpoint) on every node, plus the node's own id. It bootstraps
 * a new cluster; once members are added or removed (membership.h), the replicated address
 * book in the state machine names them and wins over this list (kyu_replica_address).
 *
 * From flags (--peer ID,RAFT_HOST:PORT,CLIENT_ENDPOINT, repeated) or from the environment
 * (KYU_PEERS="1,h1:7701,tcp://h1:7700;2,..."), for containers. Parsing is strict: ids are
 * 1..2^63, unique, at most KYU_RAFT_MAX_NODES members, and the node's own id is a member.
 */
#ifndef KYU_PEERS_H
#define KYU_PEERS_H

#include "protocol.h"
#include "raft.h"

typedef struct {
    uint64_t id;
    char raft[KYU_ENDPOINT_MAX];   /* tcp://HOST:PORT of the raft port */
    char client[KYU_ENDPOINT_MAX]; /* the client endpoint a NOT_LEADER reply names */
} kyu_peer_t;

typedef struct {
    size_t n;
    kyu_peer_t peers[KYU_RAFT_MAX_NODES];
} kyu_peers_t;

/* Parses one "ID,RAFT_HOST:PORT,CLIENT_ENDPOINT" entry (ID 1..2^63-1, PORT 1..65535, the
 * endpoint SCHEME://ADDRESS without ',' or ' '); out->raft becomes tcp://RAFT_HOST:PORT. */
kyu_code_t kyu_peer_parse(const char *spec, kyu_peer_t *out, kyu_err_t *err);
/* Adds one "ID,RAFT_HOST:PORT,CLIENT_ENDPOINT" entry. */
kyu_code_t kyu_peers_add(kyu_peers_t *self, const char *spec, kyu_err_t *err);
/* Adds every ';'-separated entry of list (KYU_PEERS). */
kyu_code_t kyu_peers_add_list(kyu_peers_t *self, const char *list, kyu_err_t *err);
/* The member with id, or NULL. */
const kyu_peer_t *kyu_peers_find(const kyu_peers_t *self, uint64_t id);

/* What to bind for endpoint, a node's own raft address or client endpoint: ZeroMQ binds
 * addresses and interfaces, not host names, so a tcp:// endpoint whose host is a name
 * (tcp://kyu1:7701 in a container, tcp://h1:7700 on a host) becomes the address the name
 * resolves to (IPv4 first). Numeric hosts, '*', other schemes, and names that do not resolve
 * (ZeroMQ may know them as interfaces, or say why not) are copied unchanged. Blocks on DNS:
 * call at startup. */
void kyu_endpoint_for_bind(const char *endpoint, char *out, size_t cap);

#endif
