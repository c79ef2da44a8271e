#include "sys_clock.h"

#include <sys/random.h>
#include <time.h>

static uint64_t wall_ms(void *arg)
{
    (void)arg;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t mono_ms(void *arg)
{
    (void)arg;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static bool random_seed(void *arg, uint64_t *seed)
{
    (void)arg;
    return getrandom(seed, sizeof *seed, 0) == sizeof *seed;
}

const kyu_replica_clock_t kyu_sys_clock = {
    .wall_ms = wall_ms, .mono_ms = mono_ms, .random_seed = random_seed};
