/* cluster_time: the time a node puts in the commands it proposes, and what it does when its
 * wall clock disagrees with the cluster's time.
 *
 * The state machine reads no clock: each command carries the leader's time, and leases,
 * delays and request keys expire when a command's time passes theirs. That time must (1)
 * never go back, so that a lease once granted is never shortened, and (2) advance at the
 * rate of real time, so that a lease granted for 2 s ends after 2 s whatever the clocks of
 * the leaders that follow. (1) alone pins the time on a leader whose clock ran ahead until
 * every other clock catches up (docs/ARCHITECTURE.md, Replication, "Time").
 *
 * So the cluster's time, as this node knows it, is the greatest time it has applied or
 * issued, carried forward by its monotonic clock since (an anchor and the monotonic time it
 * was seen at). A new command gets the larger of that and the wall clock, except that a
 * wall clock more than the bound ahead of a trusted estimate is not used: the node follows
 * the cluster's time instead of dragging it forward.
 *
 * The estimate is trusted once the node has applied a time carried by a fresh entry: one of the
 * current term (proposed by the leader that commits it) that the node received or proposed
 * after it started and held before it was committed, so the leader had just proposed it.
 * A restart, catching up on committed entries, entries written before the restart and
 * entries an earlier leader left uncommitted yield times that may be old (as old as an
 * outage). Once trusted it stays so: later old times never lower it, and the monotonic
 * clock carries it forward.
 *
 * With a trusted estimate, a wall clock more than the bound away from it is an episode of
 * clock skew, logged once with both times. A leader whose clock is ahead past the bound
 * asks to hand leadership over (kyu_cluster_time_tick), once per term, unless it handed
 * it over less than KYU_CLUSTER_TIME_REFUSE_HOLD_MS before and it came back (no other voter
 * kept it: leadership settles instead of going round), or it is the only voter.
 *
 * Pure over its inputs: the caller reads the clocks (wall: CLOCK_REALTIME, mono:
 * CLOCK_MONOTONIC, both in ms) and the replica's state, so tests and the simulator drive it
 * with any times. Owned by the replica, on the event loop; not thread-safe.
 */
#ifndef KYU_CLUSTER_TIME_H
#define KYU_CLUSTER_TIME_H

#include <stdbool.h>
#include <stdint.h>

#define KYU_CLUSTER_TIME_SKEW_DEFAULT_MS 5000 /* --max-clock-skew-ms */
#define KYU_CLUSTER_TIME_SKEW_MAX_MS 86400000 /* largest bound accepted: one day */
/* A leader that handed leadership over for skew and got it back within this long keeps it:
 * no other voter kept it (their clocks may look ahead too), and handing it round again would
 * leave the cluster without a leader for good. */
#define KYU_CLUSTER_TIME_REFUSE_HOLD_MS 60000

typedef struct kyu_cluster_time kyu_cluster_time_t;

/* Receives each line the module logs (no trailing newline); the line is valid during the
 * call only. */
typedef void (*kyu_cluster_time_log_fn)(void *arg, const char *line);

typedef struct {
    uint64_t max_skew_ms;        /* 0: KYU_CLUSTER_TIME_SKEW_DEFAULT_MS */
    kyu_cluster_time_log_fn log; /* NULL: lines go to stderr, prefixed "kyu-broker: " */
    void *log_arg;
    /* The last index of the node's log when it started: entries up to it were written
     * before, and may be old however late they are committed. */
    uint64_t boot_last_index;
} kyu_cluster_time_config_t;

/* What the node sees at one tick. */
typedef struct {
    uint64_t wall_ms, mono_ms;
    uint64_t applied_ms;    /* the greatest command time applied (kyu_sm_last_now) */
    uint64_t applied_index; /* the state machine's applied index */
    /* The entry that carried applied_ms, if applied since this start (kyu_sm_last_now_entry;
     * 0 and 0: not known). */
    uint64_t applied_ms_index, applied_ms_term;
    uint64_t last_index;   /* the last index of this node's Raft log */
    uint64_t commit_index; /* this node's commit index */
    bool leader;
    uint64_t term;
    uint32_t voters; /* voters in the configuration */
} kyu_cluster_time_obs_t;

typedef enum {
    KYU_CLUSTER_TIME_KEEP,      /* nothing to do */
    KYU_CLUSTER_TIME_HAND_OVER, /* hand leadership to another voter now */
} kyu_cluster_time_action_t;

/* applied_ms is the greatest time in the state (restart: an estimate not trusted yet).
 * cfg may be NULL. Caller owns the result (kyu_cluster_time_destroy). */
kyu_cluster_time_t *kyu_cluster_time_new(const kyu_cluster_time_config_t *cfg, uint64_t applied_ms,
                                         uint64_t mono_ms);
void kyu_cluster_time_destroy(kyu_cluster_time_t **self_p);

/* The time for a new command: never less than a time applied or returned before, and it
 * advances at least at the rate of mono_ms. */
uint64_t kyu_cluster_time_now(kyu_cluster_time_t *self, uint64_t wall_ms, uint64_t mono_ms,
                              uint64_t applied_ms);

/* Call on every tick: learns from what was applied, logs the start and end of skew
 * episodes, and says whether a leader should hand leadership over. */
kyu_cluster_time_action_t kyu_cluster_time_tick(kyu_cluster_time_t *self,
                                                const kyu_cluster_time_obs_t *obs);

/* The cluster's time as this node knows it at mono_ms (without the wall clock). */
uint64_t kyu_cluster_time_estimate(const kyu_cluster_time_t *self, uint64_t mono_ms);
/* Whether the estimate is trusted (see above); skew is judged only then. */
bool kyu_cluster_time_trusted(const kyu_cluster_time_t *self);
/* The skew episode under way: +1 this node's clock is ahead past the bound, -1 behind, 0
 * none. */
int kyu_cluster_time_skew(const kyu_cluster_time_t *self);

/* The real clocks, in ms, for callers with no clock of their own to pass. */
uint64_t kyu_cluster_time_wall_ms(void);
uint64_t kyu_cluster_time_mono_ms(void);

#endif
