/* fsync_overlap: do two threads' write+sync overlap on this disk? (docs/BENCHMARKS.md,
 * "Branch roundtrip"; not part of the build: cc -O2 -o fsync_overlap fsync_overlap.c -lpthread)
 * usage: fsync_overlap FILE MODE THREADS SECONDS [GAP_US] [SIZE]   (APPEND=1: see below)
 * MODE: sync (pwrite + fdatasync), dsync (O_DSYNC fd), direct (O_DIRECT|O_DSYNC),
 *       rwf (pwritev2 RWF_DSYNC), directsync (O_DIRECT write, then fdatasync)
 * Each thread writes SIZE bytes (default 4096) at its own offsets (thread t: blocks t, t+T, ...)
 * of a preallocated zero-filled 64 MiB file, then syncs; per-op latency p50/p99/max and the
 * aggregate syncs/s. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define FILE_BYTES (64ull << 20)
#define MAXOPS 2000000

static const char *mode;
static int nthreads, seconds, gap_us;
static size_t size = 4096;
static int append; /* APPEND=1: threads share one advancing offset (same pages) */
static uint64_t next_off;
static const char *path;
static int fd_plain, fd_dsync, fd_direct, fd_directsync;
static double *lat[8];
static long nops[8];

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static void die(const char *w)
{
    perror(w);
    exit(1);
}

static void *worker(void *arg)
{
    int t = (int)(intptr_t)arg;
    void *buf;
    if (posix_memalign(&buf, 4096, size))
        die("memalign");
    memset(buf, 'a' + t, size);
    double end = now_us() + seconds * 1e6;
    uint64_t nblk = FILE_BYTES / size, blk = (uint64_t)t;
    long n = 0;
    while (n < MAXOPS && now_us() < end) {
        off_t off = (off_t)((blk % nblk) * size);
        blk += (uint64_t)nthreads;
        if (append)
            off = (off_t)(__atomic_fetch_add(&next_off, size, __ATOMIC_SEQ_CST) % FILE_BYTES);
        double t0 = now_us();
        if (strcmp(mode, "sync") == 0) {
            if (pwrite(fd_plain, buf, size, off) != (ssize_t)size || fdatasync(fd_plain))
                die("sync");
        } else if (strcmp(mode, "dsync") == 0) {
            if (pwrite(fd_dsync, buf, size, off) != (ssize_t)size)
                die("dsync");
        } else if (strcmp(mode, "direct") == 0) {
            if (pwrite(fd_direct, buf, size, off) != (ssize_t)size)
                die("direct");
        } else if (strcmp(mode, "directsync") == 0) {
            if (pwrite(fd_directsync, buf, size, off) != (ssize_t)size || fdatasync(fd_directsync))
                die("directsync");
        } else if (strcmp(mode, "rwf") == 0) {
            struct iovec v = {buf, size};
            if (pwritev2(fd_plain, &v, 1, off, RWF_DSYNC) != (ssize_t)size)
                die("rwf");
        } else {
            fprintf(stderr, "bad mode\n");
            exit(2);
        }
        lat[t][n++] = now_us() - t0;
        if (gap_us)
            usleep((useconds_t)gap_us);
    }
    nops[t] = n;
    return NULL;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: fsync_overlap FILE MODE THREADS SECONDS [GAP_US] [SIZE]\n");
        return 2;
    }
    path = argv[1];
    mode = argv[2];
    nthreads = atoi(argv[3]);
    seconds = atoi(argv[4]);
    append = getenv("APPEND") != NULL;
    gap_us = argc > 5 ? atoi(argv[5]) : 0;
    if (argc > 6)
        size = (size_t)atol(argv[6]);
    int fd = open(path, O_RDWR | O_CREAT, 0644);
    if (fd < 0)
        die("open");
    if (lseek(fd, 0, SEEK_END) != (off_t)FILE_BYTES) {
        static char z[1 << 20];
        for (uint64_t o = 0; o < FILE_BYTES; o += sizeof z)
            if (pwrite(fd, z, sizeof z, (off_t)o) != sizeof z)
                die("fill");
        if (fsync(fd))
            die("fsync");
    }
    close(fd);
    fd_plain = open(path, O_RDWR);
    fd_dsync = open(path, O_RDWR | O_DSYNC);
    fd_direct = open(path, O_RDWR | O_DIRECT | O_DSYNC);
    fd_directsync = open(path, O_RDWR | O_DIRECT);
    if (fd_plain < 0 || fd_dsync < 0 || fd_direct < 0 || fd_directsync < 0)
        die("open modes");
    pthread_t th[8];
    for (int t = 0; t < nthreads; t++) {
        lat[t] = malloc(MAXOPS * sizeof(double));
        pthread_create(&th[t], NULL, worker, (void *)(intptr_t)t);
    }
    long total = 0;
    for (int t = 0; t < nthreads; t++) {
        pthread_join(th[t], NULL);
        total += nops[t];
    }
    double *all = malloc((size_t)total * sizeof(double));
    long k = 0;
    for (int t = 0; t < nthreads; t++)
        for (long i = 0; i < nops[t]; i++)
            all[k++] = lat[t][i];
    qsort(all, (size_t)total, sizeof(double), cmp);
    printf("%s%-10s threads %d gap %5d size %6zu: ops %7ld  %7.0f/s  p50 %6.0f  p90 %6.0f  p99 "
           "%6.0f  max %7.0f us\n",
           append ? "append " : "", mode, nthreads, gap_us, size, total, (double)total / seconds,
           all[total / 2], all[total * 9 / 10], all[total * 99 / 100], all[total - 1]);
    return 0;
}
