/* libzmq's I/O thread held back from preempting the event loop while the loop sends a burst
 * of replies.
 *
 * Each reply the loop sends to a sleeping I/O thread wakes it (an eventfd write). On two
 * vCPUs shared with the client the woken thread often preempted the loop at once, sent the
 * one reply queued, slept, and was woken again by the next: a context switch or two per
 * reply (0.45 a message under send-only), the client woken per reply too. Held as
 * SCHED_BATCH while the loop answers a storage round, it does not preempt the loop (the
 * kernel's wakeup preemption skips batch tasks); it runs on the other vCPU if that one is
 * free, else right after, when the hold ends: set back to SCHED_OTHER, a runnable thread
 * preempts at once if due. The replies of the round then leave together. Always batch (the
 * policy set once) did as well on a quiet machine but not under load, where the thread then
 * also waits behind other programs for whole slices (docs/BENCHMARKS.md, branch sendcpu4).
 */
#include "iohold.h"

#include <dirent.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

pid_t kyu_iohold_find(void)
{
    pid_t tid = 0;
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[300], comm[32] = "";
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue; /* a thread that just ended */
        if (fgets(comm, sizeof comm, f) && strncmp(comm, "ZMQbg/IO/", 9) == 0)
            tid = (pid_t)atoi(e->d_name);
        fclose(f);
    }
    closedir(d);
    return tid;
}

void kyu_iohold(pid_t tid, bool hold)
{
    if (tid <= 0)
        return;
    struct sched_param p = {.sched_priority = 0};
    (void)sched_setscheduler(tid, hold ? SCHED_BATCH : SCHED_OTHER, &p);
}
