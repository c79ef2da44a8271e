#include "cluster_time.h"

#include "kyu_err.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct kyu_cluster_time {
    uint64_t bound;     /* ms */
    uint64_t boot_last; /* entries up to here were written before this start */
    kyu_cluster_time_log_fn log;
    void *log_arg;
    /* The greatest cluster time known (applied or issued) and the monotonic time it was
     * known at: the estimate goes on from there at the rate of the monotonic clock. */
    uint64_t anchor_ms, anchor_mono;
    uint64_t last; /* the last time returned by kyu_cluster_time_now */
    bool trusted;
    /* What the previous tick saw applied, and the indexes seen in the log beyond the
     * commit index (held before they were committed), as [unc_lo, unc_hi] (0: none). */
    uint64_t applied_ms_seen;
    uint64_t unc_lo, unc_hi;
    int skew; /* the episode under way: +1 ahead, -1 behind, 0 none */
    /* Leadership handed over for skew: in which term and when (monotonic). */
    bool refused;
    uint64_t refused_term, refused_mono;
    uint64_t kept_term; /* the term in which keeping leadership was logged (0: none) */
};

static void log_default(void *arg, const char *line)
{
    (void)arg;
    fprintf(stderr, "kyu-broker: %s\n", line);
    fflush(stderr);
}

static void say(kyu_cluster_time_t *self, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    self->log(self->log_arg, line);
}

/* ms since the epoch as an ISO 8601 UTC time, for log lines. */
static const char *iso(uint64_t ms, char *buf, size_t cap)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    if (!gmtime_r(&s, &tm) || strftime(buf, cap, "%Y-%m-%dT%H:%M:%S", &tm) == 0) {
        snprintf(buf, cap, "%llu ms", (unsigned long long)ms);
        return buf;
    }
    size_t n = strlen(buf);
    snprintf(buf + n, cap - n, ".%03uZ", (unsigned)(ms % 1000));
    return buf;
}

kyu_cluster_time_t *kyu_cluster_time_new(const kyu_cluster_time_config_t *cfg, uint64_t applied_ms,
                                         uint64_t mono_ms)
{
    kyu_cluster_time_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->bound =
        cfg && cfg->max_skew_ms ? cfg->max_skew_ms : (uint64_t)KYU_CLUSTER_TIME_SKEW_DEFAULT_MS;
    self->log = cfg && cfg->log ? cfg->log : log_default;
    self->log_arg = cfg && cfg->log ? cfg->log_arg : NULL;
    self->boot_last = cfg ? cfg->boot_last_index : 0;
    self->anchor_ms = applied_ms;
    self->anchor_mono = mono_ms;
    self->last = applied_ms;
    self->applied_ms_seen = applied_ms;
    return self;
}

void kyu_cluster_time_destroy(kyu_cluster_time_t **self_p)
{
    free(*self_p);
    *self_p = NULL;
}

uint64_t kyu_cluster_time_estimate(const kyu_cluster_time_t *self, uint64_t mono_ms)
{
    return self->anchor_ms + (mono_ms > self->anchor_mono ? mono_ms - self->anchor_mono : 0);
}

/* The cluster's time is at least t at mono_ms. */
static void raise_to(kyu_cluster_time_t *self, uint64_t t, uint64_t mono_ms)
{
    if (t > kyu_cluster_time_estimate(self, mono_ms)) {
        self->anchor_ms = t;
        self->anchor_mono = mono_ms;
    }
}

uint64_t kyu_cluster_time_now(kyu_cluster_time_t *self, uint64_t wall_ms, uint64_t mono_ms,
                              uint64_t applied_ms)
{
    raise_to(self, applied_ms, mono_ms);
    uint64_t est = kyu_cluster_time_estimate(self, mono_ms), t = est;
    /* The wall clock moves the cluster's time forward, unless it is further ahead of a
     * trusted estimate than the bound: then this node's clock is wrong, not the cluster's. */
    if (wall_ms > est && !(self->trusted && wall_ms - est > self->bound))
        t = wall_ms;
    if (t < self->last)
        t = self->last;
    /* What this node issues counts as known at once: the estimate must not lag behind the
     * times a leader proposes by the time they take to be applied. */
    raise_to(self, t, mono_ms);
    self->last = t;
    return t;
}

/* Learns whether the greatest time applied since the last tick is fresh: the entry that
 * carried it is of the current term (proposed by the leader that commits it, not left over
 * from an earlier one), and this node held it before it was committed, having received (or
 * proposed) it since it started (entries written before a restart are as old as the
 * outage). Its time is then the cluster's time now, give or take a commit's latency. */
static void learn(kyu_cluster_time_t *self, const kyu_cluster_time_obs_t *o)
{
    if (o->applied_ms > self->applied_ms_seen) {
        if (self->unc_hi && o->applied_ms_index >= self->unc_lo &&
            o->applied_ms_index <= self->unc_hi && o->applied_ms_term == o->term)
            self->trusted = true;
        self->applied_ms_seen = o->applied_ms;
    }
    raise_to(self, o->applied_ms, o->mono_ms);
    /* After the check above: what is beyond the commit index now is applied later. */
    uint64_t lo = o->commit_index + 1, hi = o->last_index;
    if (lo <= self->boot_last)
        lo = self->boot_last + 1;
    if (hi >= lo) {
        if (self->unc_hi && lo <= self->unc_hi + 1 && hi + 1 >= self->unc_lo) {
            self->unc_lo = lo < self->unc_lo ? lo : self->unc_lo;
            self->unc_hi = hi > self->unc_hi ? hi : self->unc_hi;
        } else {
            self->unc_lo = lo;
            self->unc_hi = hi;
        }
    }
}

/* Starts or ends a skew episode; each is logged once, with both times. */
static void judge(kyu_cluster_time_t *self, uint64_t wall, uint64_t est)
{
    char w[40], c[40];
    double bound_s = (double)self->bound / 1000.0;
    if (wall > est && wall - est > self->bound) {
        if (self->skew != 1)
            say(self,
                "CLOCK SKEW: this node's clock (%s) is %.1f s ahead of the cluster's time "
                "(%s), more than the bound of %.1f s (--max-clock-skew-ms): it puts the "
                "cluster's time in its commands, not its clock, and hands leadership over "
                "when it leads; fix this node's clock (NTP)",
                iso(wall, w, sizeof w), (double)(wall - est) / 1000.0, iso(est, c, sizeof c),
                bound_s);
        self->skew = 1;
    } else if (est > wall && est - wall > self->bound) {
        if (self->skew != -1)
            say(self,
                "CLOCK SKEW: this node's clock (%s) is %.1f s behind the cluster's time (%s), "
                "more than the bound of %.1f s (--max-clock-skew-ms): a node whose clock was "
                "ahead has led (the cluster's time never goes back; it goes on at the rate of "
                "real time); check the clocks (NTP)",
                iso(wall, w, sizeof w), (double)(est - wall) / 1000.0, iso(est, c, sizeof c),
                bound_s);
        self->skew = -1;
    } else if (self->skew != 0 && (wall > est ? wall - est : est - wall) <= self->bound / 2) {
        say(self,
            "clock skew over: this node's clock (%s) is within %.1f s of the cluster's "
            "time (%s)",
            iso(wall, w, sizeof w), bound_s / 2, iso(est, c, sizeof c));
        self->skew = 0;
    }
}

/* A leader whose clock is ahead hands leadership over once per term, unless it is the only
 * voter or leadership came back soon after it handed it over (every other voter may be
 * ahead too: leading on the cluster's time beats handing it round for ever). */
static kyu_cluster_time_action_t decide(kyu_cluster_time_t *self, const kyu_cluster_time_obs_t *o)
{
    if (!o->leader || self->skew != 1 || self->refused_term == o->term)
        return KYU_CLUSTER_TIME_KEEP;
    if (o->voters <= 1 ||
        (self->refused && o->mono_ms - self->refused_mono < KYU_CLUSTER_TIME_REFUSE_HOLD_MS)) {
        if (self->kept_term != o->term) {
            self->kept_term = o->term;
            if (o->voters <= 1)
                say(self, "CLOCK SKEW: this node is the only voter: it keeps leading, on the "
                          "cluster's time rather than its clock");
            else
                say(self,
                    "CLOCK SKEW: leadership came back %.1f s after this node handed it over (no "
                    "other voter kept it): it keeps leading, on the cluster's time rather than "
                    "its clock",
                    (double)(o->mono_ms - self->refused_mono) / 1000.0);
        }
        return KYU_CLUSTER_TIME_KEEP;
    }
    self->refused = true;
    self->refused_term = o->term;
    self->refused_mono = o->mono_ms;
    say(self,
        "CLOCK SKEW: this node leads (term %llu) with its clock ahead of the cluster's "
        "time: handing leadership over to another voter",
        (unsigned long long)o->term);
    return KYU_CLUSTER_TIME_HAND_OVER;
}

kyu_cluster_time_action_t kyu_cluster_time_tick(kyu_cluster_time_t *self,
                                                const kyu_cluster_time_obs_t *obs)
{
    learn(self, obs);
    if (!self->trusted)
        return KYU_CLUSTER_TIME_KEEP;
    judge(self, obs->wall_ms, kyu_cluster_time_estimate(self, obs->mono_ms));
    return decide(self, obs);
}

bool kyu_cluster_time_trusted(const kyu_cluster_time_t *self)
{
    return self->trusted;
}

int kyu_cluster_time_skew(const kyu_cluster_time_t *self)
{
    return self->skew;
}

static uint64_t clock_ms(clockid_t id)
{
    struct timespec ts;
    KYU_ASSERT(clock_gettime(id, &ts) == 0);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t kyu_cluster_time_wall_ms(void)
{
    return clock_ms(CLOCK_REALTIME);
}

uint64_t kyu_cluster_time_mono_ms(void)
{
    return clock_ms(CLOCK_MONOTONIC);
}
