/* slow_fsync: an LD_PRELOAD library for the chaos harness's "slow disk" fault. fsync(2) and
 * fdatasync(2) first sleep for the number of milliseconds written in the file named by
 * $KYU_SLOW_FSYNC_FILE (read at each call; missing, empty or 0: no delay), then do what they
 * always do. The harness writes the file to slow one node's disk down and empties it to heal. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static long delay_ms(void)
{
    const char *path = getenv("KYU_SLOW_FSYNC_FILE");
    if (!path)
        return 0;
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    long ms = 0;
    if (fscanf(f, "%ld", &ms) != 1 || ms < 0 || ms > 60000)
        ms = 0;
    fclose(f);
    return ms;
}

static void pause_ms(long ms)
{
    struct timespec t = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&t, &t) != 0 && errno == EINTR) {
    }
}

static int call_next(const char *name, int fd)
{
    int saved = errno;
    pause_ms(delay_ms());
    errno = saved;
    int (*next)(int) = (int (*)(int))dlsym(RTLD_NEXT, name);
    if (!next) {
        errno = ENOSYS;
        return -1;
    }
    return next(fd);
}

int fsync(int fd)
{
    return call_next("fsync", fd);
}

int fdatasync(int fd)
{
    return call_next("fdatasync", fd);
}
