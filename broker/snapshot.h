/* snapshot: state transfer to a follower the leader's log no longer reaches.
 *
 * The Raft snapshot the core sends is only a descriptor (index, term, configuration): the
 * state itself is the state database. When the core hands a follower a snapshot, the replica
 * asks this module to fetch a member's state (the leader's, or any member's that has applied
 * at least the snapshot's index) as a RocksDB checkpoint over the raft port:
 *
 *   follower (installer thread)            member (server thread)
 *   FETCH file 0, min_index I   ------->   checkpoint of the state database (hard links, one
 *                               <-------   flush), MANIFEST: its files and sizes
 *   FETCH file n, offset o      ------->   reads up to 1 MiB
 *                               <-------   CHUNK
 *   ... every file, in order; each written to DIR/state.incoming and fsynced ...
 *
 * Then the event loop swaps the state database (kyu_store_replace_state), reloads the state
 * machine, and writes the log's snapshot record. Both sides do their disk work on their own
 * threads, never on the event loop; the loop only relays frames between the raft port and
 * the threads. One installer request at a time; a server keeps its two newest checkpoints
 * (older sessions are refused and the installer starts over). A fetch that gets no answer in
 * time fails, and the replica tries again, from the leader it then knows or another member.
 */
#ifndef KYU_SNAPSHOT_H
#define KYU_SNAPSHOT_H

#include "peers.h"
#include "store.h"

#include <czmq.h>

#define KYU_SNAP_MANIFEST_WAIT_MS 60000 /* a checkpoint may flush memtables first */
#define KYU_SNAP_CHUNK_WAIT_MS 10000

typedef struct kyu_snapshot kyu_snapshot_t;

/* Starts both threads. Checkpoints go under DIR/snapshots (emptied at start and stop). */
kyu_snapshot_t *kyu_snapshot_new(kyu_store_t *store, uint64_t self_id, int64_t max_msg,
                                 kyu_err_t *err);
void kyu_snapshot_destroy(kyu_snapshot_t **self_p);

/* Server side. A FETCH frame came in on the raft port from routing; applied is this node's
 * applied index (a manifest is refused below min_index). The answer comes back on
 * kyu_snapshot_server_sock: take it with kyu_snapshot_server_recv and send it to routing. */
void kyu_snapshot_serve(kyu_snapshot_t *self, const zframe_t *routing, const void *req, size_t len,
                        uint64_t applied);
zsock_t *kyu_snapshot_server_sock(kyu_snapshot_t *self);
kyu_code_t kyu_snapshot_server_recv(kyu_snapshot_t *self, zframe_t **routing, zframe_t **reply,
                                    kyu_err_t *err);
/* Stops the server thread from touching the state database (waits for a checkpoint under
 * way) until kyu_snapshot_resume: around kyu_store_replace_state. */
void kyu_snapshot_pause(kyu_snapshot_t *self);
void kyu_snapshot_resume(kyu_snapshot_t *self);

/* Installer side: fetches a state of at least min_index from the member server_id at raft
 * endpoint into DIR/state.incoming. The outcome comes on kyu_snapshot_install_sock. */
void kyu_snapshot_install(kyu_snapshot_t *self, uint64_t server_id, const char *endpoint,
                          uint64_t min_index);
zsock_t *kyu_snapshot_install_sock(kyu_snapshot_t *self);
/* Reads the outcome: *ok, or the reason in why. */
kyu_code_t kyu_snapshot_install_recv(kyu_snapshot_t *self, bool *ok, char *why, size_t cap,
                                     kyu_err_t *err);

#endif
