/* replica: the log → commit → apply path.
 *
 * Proposals (commands) gather in an open entry; the entry is sealed and handed to the log's
 * storage thread when fewer than KYU_REPLICA_INFLIGHT entries are being written, so while one
 * fsync runs the next entry fills (natural batching, no timer). When the log reports an index
 * durable, the entries up to it are committed — a single node is a one-voter cluster, so
 * durable here is committed; the Raft issue puts consensus at exactly this point — and
 * applied by the state machine, and each command's result goes to whoever waits for it.
 * No result is ever given before its entry is durable.
 *
 * Owned by the event-loop thread.
 */
#ifndef KYU_REPLICA_H
#define KYU_REPLICA_H

#include "log.h"
#include "sm.h"

#define KYU_REPLICA_INFLIGHT 2        /* entries handed to the storage thread at once */
#define KYU_REPLICA_PENDING_MAX 20000 /* commands proposed and not yet applied */
#define KYU_ENTRY_BYTES_MAX (8 << 20) /* an open entry is sealed past this size */

typedef struct kyu_replica kyu_replica_t;

/* Called once per proposal with its result (or an error result when its entry could not be
 * made durable). The waiter is the pointer given to kyu_replica_propose; the callee owns it
 * from then on. The result is only valid during the call. */
typedef void (*kyu_replica_done_fn)(void *arg, void *waiter, kyu_result_t *result);

/* Replays the log entries past the state machine's applied index, then serves. */
kyu_replica_t *kyu_replica_new(kyu_store_t *store, kyu_sm_t *sm, kyu_log_t *log,
                               kyu_replica_done_fn done, void *done_arg, kyu_err_t *err);
/* Drops proposals that wait (their waiters are handed to done with an error result). */
void kyu_replica_destroy(kyu_replica_t **self_p);

/* The time to put in a new command: the wall clock, but never earlier than a time already
 * proposed or applied, so that a clock stepping back cannot shorten a lease. */
uint64_t kyu_replica_now(kyu_replica_t *self);

/* Adds cmd to the open entry; waiter comes back through done. BUSY when too many commands
 * wait, STORAGE when the log has failed: then nothing was proposed and waiter stays the
 * caller's. */
kyu_code_t kyu_replica_propose(kyu_replica_t *self, const kyu_command_t *cmd, void *waiter,
                               kyu_err_t *err);

/* Seals the open entry and hands it to the storage thread if there is room. Call after each
 * burst of proposals. */
void kyu_replica_flush(kyu_replica_t *self);

/* Handles a report of the storage thread: commits, applies and answers. */
void kyu_replica_on_log_event(kyu_replica_t *self, const kyu_log_event_t *ev);

/* Non-NULL once writes are refused (log or apply failure): the reason. */
const char *kyu_replica_failure(kyu_replica_t *self);

#endif
