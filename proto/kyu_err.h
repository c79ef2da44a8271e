/* kyu_err: the one error type of the project.
 *
 * A code from kyu_code_t plus a human-readable message. The numeric codes are the wire
 * protocol's error codes (proto/PROTOCOL.md): they are stable, never renumbered, so a RocksDB
 * failure deep in the store reaches a client as KYU_ERR_STORAGE without string matching.
 */
#ifndef KYU_ERR_H
#define KYU_ERR_H

#include <stdarg.h>

typedef enum {
    KYU_OK = 0,
    KYU_ERR_MALFORMED = 1,        /* a frame or header could not be decoded */
    KYU_ERR_UNKNOWN_OP = 2,       /* op code not known to this broker */
    KYU_ERR_VERSION = 3,          /* protocol version not supported */
    KYU_ERR_INVALID_ARGUMENT = 4, /* a field is missing, of the wrong type or out of range */
    KYU_ERR_INVALID_NAME = 5,     /* queue name breaks the naming rules */
    KYU_ERR_NO_SUCH_QUEUE = 6,
    KYU_ERR_QUEUE_EXISTS = 7, /* queue exists with other attributes */
    KYU_ERR_TOO_LARGE = 8,    /* body over the broker's maximum message size */
    KYU_ERR_EMPTY_BODY = 9,
    KYU_ERR_RECEIPT_INVALID = 10, /* not a receipt handle of this queue, or message gone */
    KYU_ERR_RECEIPT_STALE = 11,   /* handle of an older lease: the message was received again */
    KYU_ERR_BUSY = 12,            /* broker overloaded: retry later */
    KYU_ERR_STORAGE = 13,         /* disk or RocksDB failure: writes refused */
    KYU_ERR_NOT_LEADER = 14,      /* this node is not the leader; reply names the leader */
    KYU_ERR_LIMIT_EXCEEDED = 15,  /* a configured limit (queues, in-flight leases) reached */
    KYU_ERR_INTERNAL = 16,
    KYU_ERR_TIMEOUT = 17,      /* client side: no reply in time */
    KYU_ERR_CONNECTION = 18,   /* client side: cannot reach a broker */
    KYU_ERR_QUEUE_IN_USE = 19, /* the queue is another queue's dead-letter queue */
    KYU_ERR_NO_SESSION = 20,   /* not a live worker session on this broker: open a new one */
    KYU_ERR_NO_SUCH_TOPIC = 21,
    KYU_ERR_NO_SUCH_SUBSCRIPTION = 22,
    KYU_ERR_READ_ONLY = 28, /* this node's disk is full or failing: writes refused, reads served */
    KYU_ERR_CODE_COUNT
} kyu_code_t;

#define KYU_ERR_MSG_MAX 256

typedef struct {
    kyu_code_t code;
    char msg[KYU_ERR_MSG_MAX];
} kyu_err_t;

/* Sets *err (when err is not NULL) and returns code, so callers can `return kyu_err_set(...)`. */
kyu_code_t kyu_err_set(kyu_err_t *err, kyu_code_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void kyu_err_clear(kyu_err_t *err);

/* Stable symbolic name of a code ("NO_SUCH_QUEUE"), "UNKNOWN" for codes out of range. */
const char *kyu_code_name(int code);

/* @kyu-internal-begin: not in the header installed with libkyu (include/kyu/kyu_err.h) */
/* Always-on assertion for broken invariants (operational failures return errors instead). */
#define KYU_ASSERT(cond)                                                                           \
    do {                                                                                           \
        if (!(cond))                                                                               \
            kyu_assert_fail(#cond, __FILE__, __LINE__);                                            \
    } while (0)
_Noreturn void kyu_assert_fail(const char *cond, const char *file, int line);
/* @kyu-internal-end */

#endif
