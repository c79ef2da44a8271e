/* http: runs an --http handler per batch (handler.h): POSTs the event with libcurl, bounded
 * by the batch's deadline; cancellation aborts the transfer. */
#include "handler.h"

#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    kyu_run_result_t *res;
    size_t cap;
    const kyu_batch_t *batch;
} sink_t;

static size_t on_body(char *p, size_t size, size_t nmemb, void *arg)
{
    sink_t *s = arg;
    size_t n = size * nmemb;
    kyu_run_result_t *res = s->res;
    if (res->out_too_big || res->out_len + n > KYU_HANDLER_OUTPUT_MAX) {
        res->out_too_big = true;
        return n; /* read on, keep nothing: the status still counts */
    }
    if (res->out_len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 4096;
        while (cap < res->out_len + n + 1)
            cap *= 2;
        char *more = realloc(res->out, cap);
        if (!more) {
            res->out_too_big = true;
            return n;
        }
        res->out = more;
        s->cap = cap;
    }
    memcpy(res->out + res->out_len, p, n);
    res->out_len += n;
    res->out[res->out_len] = '\0';
    return n;
}

static int on_progress(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    (void)dt, (void)dn, (void)ut, (void)un;
    const sink_t *s = arg;
    return kyu_batch_cancelled(s->batch) ? 1 : 0; /* non-zero aborts */
}

void kyu_http_run(const char *url, const char *in, size_t in_len, const kyu_batch_t *batch,
                  kyu_run_result_t *res)
{
    memset(res, 0, sizeof *res);
    int64_t left = batch->deadline_ms - kyu_consumer_now_ms();
    if (left <= 0) {
        res->timed_out = true;
        snprintf(res->why, sizeof res->why, "no time left before the handler timeout");
        return;
    }
    CURL *h = curl_easy_init();
    if (!h) {
        snprintf(res->why, sizeof res->why, "curl_easy_init failed");
        return;
    }
    sink_t s = {.res = res, .batch = batch};
    struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    hdrs = curl_slist_append(hdrs, "Expect:"); /* no 100-continue round trip */
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, in);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)in_len);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, &s);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L); /* threads: no SIGALRM for DNS timeouts */
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)left);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "kyu-worker");
    CURLcode rc = curl_easy_perform(h);
    long code = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    if (rc == CURLE_OK) {
        res->ran = true;
        res->status = (int)code;
        snprintf(res->why, sizeof res->why, "HTTP status %ld", code);
    } else if (rc == CURLE_OPERATION_TIMEDOUT || rc == CURLE_ABORTED_BY_CALLBACK) {
        res->timed_out = true;
        snprintf(res->why, sizeof res->why, "request stopped at the handler timeout");
    } else {
        snprintf(res->why, sizeof res->why, "POST %s: %s", url, curl_easy_strerror(rc));
    }
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
}
