#include "kyu_err.h"

#include <stdio.h>
#include <stdlib.h>

static const char *const code_names[KYU_ERR_CODE_COUNT] = {
    [KYU_OK] = "OK",
    [KYU_ERR_MALFORMED] = "MALFORMED",
    [KYU_ERR_UNKNOWN_OP] = "UNKNOWN_OP",
    [KYU_ERR_VERSION] = "VERSION",
    [KYU_ERR_INVALID_ARGUMENT] = "INVALID_ARGUMENT",
    [KYU_ERR_INVALID_NAME] = "INVALID_NAME",
    [KYU_ERR_NO_SUCH_QUEUE] = "NO_SUCH_QUEUE",
    [KYU_ERR_QUEUE_EXISTS] = "QUEUE_EXISTS",
    [KYU_ERR_TOO_LARGE] = "TOO_LARGE",
    [KYU_ERR_EMPTY_BODY] = "EMPTY_BODY",
    [KYU_ERR_RECEIPT_INVALID] = "RECEIPT_INVALID",
    [KYU_ERR_RECEIPT_STALE] = "RECEIPT_STALE",
    [KYU_ERR_BUSY] = "BUSY",
    [KYU_ERR_STORAGE] = "STORAGE",
    [KYU_ERR_NOT_LEADER] = "NOT_LEADER",
    [KYU_ERR_LIMIT_EXCEEDED] = "LIMIT_EXCEEDED",
    [KYU_ERR_INTERNAL] = "INTERNAL",
    [KYU_ERR_TIMEOUT] = "TIMEOUT",
    [KYU_ERR_CONNECTION] = "CONNECTION",
    [KYU_ERR_QUEUE_IN_USE] = "QUEUE_IN_USE",
    [KYU_ERR_NO_SESSION] = "NO_SESSION",
    [KYU_ERR_NO_SUCH_TOPIC] = "NO_SUCH_TOPIC",
    [KYU_ERR_NO_SUCH_SUBSCRIPTION] = "NO_SUCH_SUBSCRIPTION",
    [KYU_ERR_READ_ONLY] = "READ_ONLY",
};

kyu_code_t kyu_err_set(kyu_err_t *err, kyu_code_t code, const char *fmt, ...)
{
    if (err) {
        err->code = code;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

void kyu_err_clear(kyu_err_t *err)
{
    if (err) {
        err->code = KYU_OK;
        err->msg[0] = '\0';
    }
}

const char *kyu_code_name(int code)
{
    if (code < 0 || code >= KYU_ERR_CODE_COUNT || !code_names[code])
        return "UNKNOWN";
    return code_names[code];
}

void kyu_assert_fail(const char *cond, const char *file, int line)
{
    fprintf(stderr, "kyu: assertion failed: %s (%s:%d)\n", cond, file, line);
    abort();
}
