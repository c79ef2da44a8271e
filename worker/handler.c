/* handler: kyu-worker's batch handler (handler.h): event in, results out. */
#include "handler.h"
#include "event.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void logf_(const kyu_handler_cfg_t *cfg, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void logf_(const kyu_handler_cfg_t *cfg, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    cfg->log(line);
}

bool kyu_worker_handle(kyu_batch_t *batch, void *arg)
{
    const kyu_handler_cfg_t *cfg = arg;
    size_t len = 0;
    char *event = kyu_event_json(cfg->queue, cfg->region, batch->msgs, batch->n, &len);
    if (!event) {
        logf_(cfg, "batch %llu: out of memory for its event", (unsigned long long)batch->id);
        return false;
    }
    kyu_run_result_t res;
    if (cfg->exec)
        kyu_exec_run(cfg->exec, event, len, cfg->report_failures, batch, &res);
    else
        kyu_http_run(cfg->http, event, len, batch, &res);
    free(event);
    bool ok = res.ran && (cfg->exec ? res.status == 0 : res.status >= 200 && res.status < 300);
    if (!ok)
        logf_(cfg, "batch %llu: handler failed: %s", (unsigned long long)batch->id, res.why);
    if (ok && cfg->report_failures) {
        kyu_err_t err = {0};
        if (res.out_too_big) {
            logf_(cfg, "batch %llu: the handler's answer is over %u bytes: the batch fails",
                  (unsigned long long)batch->id, KYU_HANDLER_OUTPUT_MAX);
            ok = false;
        } else if (kyu_event_failures(res.out, res.out_len, batch->msgs, batch->n, batch->results,
                                      &err) != KYU_OK) {
            logf_(cfg, "batch %llu: %s: the batch fails", (unsigned long long)batch->id, err.msg);
            ok = false;
        }
    }
    free(res.out);
    return ok;
}

kyu_code_t kyu_worker_filter_add(kyu_worker_filter_t *f, const char *pattern, kyu_err_t *err)
{
    if (f->n >= KYU_FILTER_PATTERNS_MAX)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "at most %d filter patterns (Lambda's FilterCriteria)",
                           KYU_FILTER_PATTERNS_MAX);
    kyu_code_t rc = kyu_filter_compile(pattern, strlen(pattern), KYU_FILTER_SCOPE_EVENT,
                                       &f->patterns[f->n], NULL, err);
    if (rc == KYU_OK)
        f->n++;
    return rc;
}

void kyu_worker_filter_free(kyu_worker_filter_t *f)
{
    for (size_t i = 0; i < f->n; i++)
        kyu_filter_destroy(&f->patterns[i]);
    f->n = 0;
}

bool kyu_worker_filter(const kyu_message_t *msg, void *arg)
{
    const kyu_worker_filter_t *f = arg;
    if (f->n == 0)
        return true;
    json_t *doc = kyu_event_filter_doc(f->queue, f->region, msg);
    if (!doc)
        return true; /* out of memory: the handler decides, nothing is dropped unseen */
    bool match = false;
    for (size_t i = 0; i < f->n && !match; i++)
        match = kyu_filter_match_json(f->patterns[i], doc);
    json_decref(doc);
    return match;
}
