/* membership: `kyu cluster add` and `kyu cluster remove`, carried out by the leader one
 * change at a time (single-server changes, docs/RAFT.md "Membership").
 *
 * Adding node N: (1) its addresses go into the replicated address book (a SET_MEMBER
 * command, so every node and every snapshot knows where N is); (2) N becomes a learner (a
 * Raft configuration change) and gets the log or a snapshot; (3) once its match index is
 * near the leader's last index, it is promoted to voter; the client is answered when that
 * promotion is committed. Removing node N: a voter is first demoted to learner (it still
 * gets the log, so it learns it no longer votes and stops campaigning), then the
 * configuration change that removes it (it is no longer sent to), then its address-book
 * entry. Removing the
 * leader itself hands leadership to another voter first and answers NOT_LEADER, so the
 * client (libkyu follows it) asks the new leader, which removes the old one.
 *
 * Every step is retried on the Raft tick until it is committed, bounded by
 * KYU_MEMBERSHIP_TIMEOUT_MS (then the answer is BUSY, saying how far it got); a change in
 * progress answers a second one BUSY. A change cut
 * short (timeout, leadership lost) may be partly done: a node left a learner does not
 * count in any quorum, and the same `kyu cluster add` resumes it.
 *
 * Owned by the event loop. The waiter comes back through the done callback (the same as the
 * replica's), with an OK or error result.
 */
#ifndef KYU_MEMBERSHIP_H
#define KYU_MEMBERSHIP_H

#include "replica.h"

#define KYU_MEMBERSHIP_TIMEOUT_MS 60000 /* bound of one add or remove */
#define KYU_MEMBERSHIP_CATCHUP 64       /* a learner this close to the leader's log is promoted */

typedef struct kyu_membership kyu_membership_t;

kyu_membership_t *kyu_membership_new(kyu_replica_t *replica, kyu_replica_done_fn done,
                                     void *done_arg, kyu_err_t *err);
/* Answers a change in progress with an error. */
void kyu_membership_destroy(kyu_membership_t **self_p);

/* Starts adding node id, reachable for peers at raft_hostport (HOST:PORT) and for clients at
 * client. KYU_OK: the change runs and waiter comes back through done when it ends. Otherwise
 * nothing changed and waiter stays the caller's: INVALID_ARGUMENT (malformed address, id 0,
 * already a voter at other addresses, an address another member uses), BUSY (another change
 * runs), LIMIT_EXCEEDED (KYU_RAFT_MAX_NODES members), NOT_LEADER. A committed voter at the
 * same addresses (a retry of an add that was applied) is done: KYU_OK, and waiter is
 * answered OK before this returns. */
kyu_code_t kyu_membership_add(kyu_membership_t *self, uint64_t id, const char *raft_hostport,
                              const char *client, void *waiter, kyu_err_t *err);
/* Starts removing node id; the same contract. INVALID_ARGUMENT for the last voter, or a node
 * that is not a member and that this node did not see leave the configuration since it
 * started (a retry of a remove that was applied is answered OK before this returns; one whose
 * address-book entry is left finishes); NOT_LEADER (after starting a transfer) when id is
 * this leader. */
kyu_code_t kyu_membership_remove(kyu_membership_t *self, uint64_t id, void *waiter, kyu_err_t *err);

/* Moves the change in progress along (call every Raft tick). */
void kyu_membership_tick(kyu_membership_t *self);

#endif
