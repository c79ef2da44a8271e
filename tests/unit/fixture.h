/* Test fixture: a state machine over a fresh store in a temporary directory, and helpers that
 * build commands and apply them as log entries. */
#ifndef KYU_TEST_FIXTURE_H
#define KYU_TEST_FIXTURE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "sm.h"

typedef struct {
    char dir[256];
    kyu_store_t *store;
    kyu_sm_t *sm;
    uint64_t index;
} fixture_t;

int fixture_setup(void **state);
int fixture_teardown(void **state);
/* Closes and reopens store and state machine on the same directory (a restart). */
/* Reopens the store and the state machine as a crash leaves them: the state machine's
 * buffered writes (sm_buffer.c) are lost, the state database holds its persisted index. */
void fixture_crash(fixture_t *f);
/* Reopens them as a kill -9 (or a power loss) leaves them: the state database's memtables are
 * lost too (its writes carry no WAL), the state is what its tables hold (kyu_store_crash). */
void fixture_kill(fixture_t *f);
void fixture_reopen(fixture_t *f);

kyu_command_t cmd_create(const char *queue, int64_t vt);
kyu_command_t cmd_delete_queue(const char *queue);
kyu_command_t cmd_send(const char *queue, uint64_t now, const char *body);
kyu_command_t cmd_receive(const char *queue, uint64_t now, uint32_t max, int64_t vt);
kyu_command_t cmd_delete(const char *queue, uint64_t now, const char *handle);
kyu_command_t cmd_change_visibility(const char *queue, uint64_t now, const char *handle,
                                    int64_t vt);

/* Applies the commands as one entry; results (n of them) must be cleared by the caller. */
void apply_entry(fixture_t *f, const kyu_command_t *cmds, size_t n, kyu_result_t *results);
/* Applies one command as its own entry and returns its result. */
kyu_result_t apply1(fixture_t *f, kyu_command_t cmd);

/* Fails the test unless r is KYU_OK (saying what it was); clears r. */
void ok(kyu_result_t r);
/* A SEND of body to queue in MessageGroupId group and with MessageDeduplicationId did (NULL:
 * none), its body's digest given as a client gives it. */
kyu_command_t cmd_send_fifo(const char *queue, uint64_t now, const char *body, const char *group,
                            const char *did);

/* The messages of a receive, copied out of its result. */
typedef struct {
    size_t n;
    char bodies[KYU_BATCH_MAX][512];
    char groups[KYU_BATCH_MAX][KYU_GROUP_ID_MAX + 1];
    char dedups[KYU_BATCH_MAX][KYU_DEDUP_ID_MAX + 1];
    char handles[KYU_BATCH_MAX][KYU_HANDLE_MAX + 1];
    uint64_t seqs[KYU_BATCH_MAX];
} got_t;
/* Receives up to max messages of queue at now (vt: the visibility timeout, -1: the queue's);
 * fails the test unless the receive is KYU_OK. */
got_t fixture_receive(fixture_t *f, const char *queue, uint64_t now, uint32_t max, int64_t vt);
/* The bodies of g, space-separated ("" for none), in a static buffer. */
const char *got_bodies(const got_t *g);

/* Receives up to max messages of queue "q" at now and expects exactly bodies (NULL-terminated),
 * in order, each received for the first time (at now); then deletes them when del. */
void expect_first_receive(fixture_t *f, uint64_t now, uint32_t max, const char *const *bodies,
                          bool del);

/* Fails the test unless got is code and msg contains text (saying what it saw). */
void expect_error(kyu_code_t got, const char *msg, kyu_code_t code, const char *text);
/* expect_error for a result's code and message; clears r. */
void expect_result(kyu_result_t r, kyu_code_t code, const char *text);

/* The attributes of queue at now; fails the test unless there are (an existing queue). */
kyu_queue_attrs_t fixture_attrs(fixture_t *f, const char *queue, uint64_t now);
/* Fails the test unless queue "q" counts, at now, these visible, not visible (in flight) and
 * delayed messages (saying what it counted). */
void expect_counts(fixture_t *f, uint64_t now, int64_t visible, int64_t not_visible,
                   int64_t delayed);

/* A SEND of body with a DelaySeconds of its own, in ms. */
kyu_command_t cmd_send_delayed(const char *queue, uint64_t now, const char *body,
                               uint64_t delay_ms);
/* c with a RedrivePolicy to dlq after mrc receives (qx_set KYU_F_REDRIVE): its queue
 * attributes, defaults but for that, written to *qx, which c borrows until it is applied. */
kyu_command_t cmd_with_redrive(kyu_command_t c, kyu_queue_ext_t *qx, const char *dlq, uint32_t mrc);
/* A message attribute of the given name, type and value (strings the caller keeps). */
kyu_msg_attr_t msg_attr(const char *name, const char *type, const char *value);

/* c encoded as the log holds it and decoded again; fails the test unless it decodes whole. */
kyu_command_t command_round_trip(const kyu_command_t *c);
/* Packs the head of a log record as kyu_command_encode writes it, an array of 6 without a
 * request key: [type, now, queue, vt, max]; the caller packs the sixth item (the items). */
void pack_command_head(msgpack_packer *pk, uint32_t type, uint64_t now, const char *queue,
                       int64_t vt, uint32_t max);

#endif
