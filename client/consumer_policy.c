/* consumer_policy: the consumer's pure decisions (consumer_policy.h). */
#include "consumer_policy.h"

#include <math.h>
#include <stdio.h>

#define CREDIT_MAX 10000

int kyu_backoff_seconds(uint32_t receive_count, int base_ms, int max_ms, double rand01)
{
    if (base_ms <= 0 || max_ms <= 0)
        return 0;
    if (rand01 < 0)
        rand01 = 0;
    if (rand01 > 1)
        rand01 = 1;
    /* base * 2^(count-1), computed in double and capped before any overflow */
    double d = base_ms;
    for (uint32_t i = 1; i < receive_count && d < max_ms; i++)
        d *= 2;
    if (d > max_ms)
        d = max_ms;
    double ms = d / 2 + d / 2 * rand01;
    int s = (int)ceil(ms / 1000.0);
    return s < 1 ? 1 : s;
}

bool kyu_batch_ready(size_t buffered, size_t buffered_bytes, int batch_size, size_t max_bytes,
                     int64_t oldest_ms, int window_ms, int64_t now_ms)
{
    if (buffered == 0)
        return false;
    if (buffered >= (size_t)batch_size || (max_bytes && buffered_bytes >= max_bytes))
        return true;
    return window_ms <= 0 || now_ms - oldest_ms >= window_ms;
}

void kyu_scaler_init(kyu_scaler_t *s, int initial, int max, int64_t now_ms)
{
    s->max = max < 1 ? 1 : max;
    s->min = 1;
    s->current = initial < 1 ? 1 : initial > s->max ? s->max : initial;
    s->idle_since = -1;
    s->calm_until = now_ms;
    s->last_step_ms = now_ms;
}

int kyu_scaler_step(kyu_scaler_t *s, const kyu_scale_input_t *in, int64_t now_ms, char *why,
                    size_t why_len)
{
    why[0] = '\0';
    if (now_ms - s->last_step_ms < KYU_SCALE_INTERVAL_MS)
        return s->current;
    s->last_step_ms = now_ms;
    int before = s->current;
    bool backlog = in->running >= (size_t)s->current && in->buffered >= (size_t)in->batch_size;
    bool idle = in->running + 1 < (size_t)s->current && in->buffered == 0;
    if (in->failures > 0) {
        /* Handlers fail: halve, and hold growth back for a while, so a failing dependency
         * is not hammered by more and more retries. */
        s->current = s->current / 2 < s->min ? s->min : s->current / 2;
        s->calm_until = now_ms + KYU_SCALE_CALM_MS;
        s->idle_since = -1;
        if (s->current != before)
            snprintf(why, why_len, "%zu batch%s failed", in->failures,
                     in->failures == 1 ? "" : "es");
        return s->current;
    }
    if (backlog) {
        s->idle_since = -1;
        if (now_ms >= s->calm_until && s->current < s->max) {
            int grow = s->current / 2 < 1 ? 1 : s->current / 2;
            s->current = s->current + grow > s->max ? s->max : s->current + grow;
            snprintf(why, why_len, "backlog: %zu messages waiting, %zu batches running",
                     in->buffered, in->running);
        }
        return s->current;
    }
    if (!idle) {
        s->idle_since = -1;
        return s->current;
    }
    if (s->idle_since < 0)
        s->idle_since = now_ms;
    if (now_ms - s->idle_since >= KYU_SCALE_IDLE_MS && s->current > s->min) {
        /* Down to what runs now (plus one), at most half at a time. */
        int target = (int)in->running + 1;
        int step = (s->current - target + 1) / 2;
        if (step < 1)
            step = 1;
        s->current = s->current - step < s->min ? s->min : s->current - step;
        s->idle_since = now_ms;
        snprintf(why, why_len, "idle: %zu of %d batches running", in->running, before);
    }
    return s->current;
}

int64_t kyu_credit_target(int concurrency, int batch_size)
{
    int64_t t = ((int64_t)concurrency + 1) * batch_size;
    return t < 1 ? 1 : t > CREDIT_MAX ? CREDIT_MAX : t;
}

int64_t kyu_credit_total(int concurrency, int batch_size, int64_t held_other)
{
    int64_t t = kyu_credit_target(concurrency, batch_size) - (held_other > 0 ? held_other : 0);
    return t < 1 ? 1 : t;
}

uint32_t kyu_credit_to_give(int64_t finished, int64_t returned)
{
    int64_t give = finished - returned;
    if (give <= 0)
        return 0;
    return (uint32_t)(give > CREDIT_MAX ? CREDIT_MAX : give);
}
