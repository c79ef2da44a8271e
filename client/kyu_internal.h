/* kyu_internal: what libkyu's files share and users of kyu.h do not see. */
#ifndef KYU_INTERNAL_H
#define KYU_INTERNAL_H

#include "kyu.h"

#include <stdio.h>

/* A request in flight: what its reply must contain, and until when we wait for it. */
typedef struct {
    uint64_t id;
    uint32_t op;
    uint32_t expect; /* SEND: bodies sent; DELETE, CHANGE_VISIBILITY: handles */
    int64_t deadline_ms;
} kyu_pending_t;

/* A reply to an asynchronous request that arrived while a synchronous call waited. */
typedef struct kyu_stash {
    struct kyu_stash *next;
    kyu_reply_t rep;
    kyu_message_t *msgs;
} kyu_stash_t;

struct kyu_client {
    void *ctx;
    void *sock; /* DEALER connected to endpoints[current]; NULL after a failed failover */
    char (*endpoints)[KYU_ENDPOINT_MAX]; /* the user's list, then leaders learnt */
    size_t n_endpoints, current;
    /* The endpoint that last failed to answer a HELLO, avoided until silent_until_ms even
     * when NOT_LEADER names it (followers name a dead leader until they elect another). */
    size_t silent;
    int64_t silent_until_ms;
    kyu_client_opts_t opts;
    uint64_t next_id;
    uint64_t client_id; /* random: names this client's request keys (SEND's "rq") */
    uint64_t next_key;
    uint64_t max_body;
    kyu_pending_t *pending; /* compact array of n_pending, capacity opts.max_inflight */
    size_t n_pending;
    /* At most the earliest deadline in pending (INT64_MAX: none): lowered as a deadline is
     * set, made exact by each scan, so that a poll scans the table only once a deadline may
     * have passed (a pipelined client has ~100 in flight and polls once per message). */
    int64_t min_deadline_ms;
    kyu_stash_t *stash_head, *stash_tail;
    /* A worker session's WORKER_OPEN request id (0: none): the broker's pushes carry it, and
     * poll_reply hands them out as replies with that id (messages as a RECEIVE's). */
    uint64_t push_id;
    /* Reused on every request and reply (a pipelined client handles one per message): the
     * header being encoded, and the reply being decoded, moved into the caller's when it
     * answers a request in flight (the caller's stays untouched otherwise). */
    msgpack_sbuffer sb;
    kyu_reply_t *scratch;
};

int64_t kyu_client_now_ms(void);
/* Sets p's deadline (keeping the client's lower bound of deadlines true). */
void kyu_client_set_deadline(kyu_client_t *c, kyu_pending_t *p, int64_t deadline_ms);
/* This host's wall clock, ms since the epoch (deliver-at times). */
int64_t kyu_client_wall_ms(void);
/* Keys req with *key for a retry to repeat (a new key into *key first when it is 0). */
void kyu_client_use_key(kyu_client_t *c, kyu_request_t *req, uint64_t *key);
/* Copies a valid queue name into req (and sets KYU_F_QUEUE), else INVALID_NAME. */
kyu_code_t kyu_client_set_queue(kyu_request_t *req, const char *queue, kyu_err_t *err);
/* A batch request's entry ids (checked: valid, distinct), delays and attributes (sync.c;
 * SEND's and PUBLISH's batches). */
kyu_code_t kyu_client_batch_request(kyu_request_t *req, const kyu_batch_entry_t *e, size_t n,
                                    kyu_err_t *err);
/* Fills out[0..n) from a SEND or PUBLISH batch's reply rep (rc and e: the call's code and
 * error, which every entry gets when not OK), MD5s when md5s; resets rep. Returns rc, else the
 * first failed entry's code (err naming the entry), else OK. */
kyu_code_t kyu_client_batch_results(kyu_code_t rc, const kyu_err_t *e, kyu_reply_t *rep,
                                    const kyu_batch_entry_t *entries, size_t n, bool md5s,
                                    kyu_batch_result_t *out, kyu_err_t *err);
/* A request of op with fields and nothing else: clears what comes before the tags only (their
 * 20 KB matter to CREATE_QUEUE and SET_QUEUE_ATTRIBUTES alone; tags.n is cleared), for the
 * hot paths (pipelined sends). */
void kyu_request_prepare(kyu_request_t *req, uint32_t op, uint64_t fields);
/* kyu_request_prepare(req, KYU_OP_SEND, KYU_F_QUEUE) for the sends of kyu.h (a pipelined
 * producer's one per message), but of the per-message arrays (handles, attrs, entry_ids,
 * group_ids, dedup_ids: 10 of the 12.8 KB) it clears the counts only, not the entries: the
 * encoder reads an array below its count alone, and whoever sets a count fills every entry
 * below it (kyu_client_set_send_options). Only for SEND: other requests keep the whole clear
 * (a lean clear of every request once left install_libkyu's example consumer under ASan
 * without messages, cause not found; commit 390d8c1). */
void kyu_request_prepare_send(kyu_request_t *req);
/* Checks a send's options o (NULL: none) for n bodies and sets their fields in req. */
/* Message i's MessageGroupId and MessageDeduplicationId (NULL: none) into req, checked. */
kyu_code_t kyu_client_set_fifo_ids(kyu_request_t *req, size_t i, const char *group,
                                   const char *dedup, kyu_err_t *err);
kyu_code_t kyu_client_set_send_options(kyu_request_t *req, const kyu_send_options_t *o, size_t n,
                                       kyu_err_t *err);
kyu_code_t kyu_client_recv_one(kyu_client_t *c, int timeout_ms, kyu_reply_t *rep,
                               kyu_message_t **msgs, kyu_err_t *err);
#define KYU_CLIENT_ENDPOINTS_MAX 32

/* Gives a write (but CREATE_QUEUE, idempotent by itself) without a request key the client's
 * next one, so that retries of it reuse it. */
void kyu_client_key_request(kyu_client_t *c, kyu_request_t *req);

/* How long the broker may hold req before it answers (a RECEIVE's wait, "wt"), in ms: a
 * request's reply timeout is the client's timeout plus this. */
int kyu_client_request_wait_ms(const kyu_request_t *req);

/* Waits ms milliseconds (retry back-off while a cluster elects a leader). */
void kyu_client_pause_ms(int ms);

/* One request, one reply, on the current endpoint (no failover). */
kyu_code_t kyu_client_call_once(kyu_client_t *c, const kyu_request_t *req,
                                const void *const *bodies, const size_t *lens, size_t n,
                                kyu_reply_t *rep, kyu_message_t **msgs, kyu_err_t *err);
/* The same, waiting at most timeout_ms for the reply instead of the client's timeout. */
kyu_code_t kyu_client_call_once_within(kyu_client_t *c, const kyu_request_t *req,
                                       const void *const *bodies, const size_t *lens, size_t n,
                                       kyu_reply_t *rep, kyu_message_t **msgs, int timeout_ms,
                                       kyu_err_t *err);

/* The count names of a reply (fixed-size strings stride bytes apart, from names) copied into
 * one allocation, the pointers then the names, as kyu_queue_names_destroy frees it (sync.c),
 * into *names_p and *n; KYU_ERR_INTERNAL (nothing set) when out of memory. For the list
 * replies (queues, topics). */
kyu_code_t kyu_names_pack(const char *names, size_t stride, size_t count, char ***names_p,
                          size_t *n, kyu_err_t *err);

#endif
