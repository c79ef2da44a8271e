/* libzmq's I/O thread held back from preempting the event loop while the loop sends a burst
 * of replies (iohold.c). Owned by the event loop's thread. */
#ifndef KYU_IOHOLD_H
#define KYU_IOHOLD_H

#include <stdbool.h>
#include <sys/types.h>

/* Finds the process's libzmq I/O thread ("ZMQbg/IO/N", started with a context's first
 * socket) and returns its thread id, or 0 when there is none. With several, the last found. */
pid_t kyu_iohold_find(void);

/* hold: the thread tid becomes SCHED_BATCH (woken, it no longer preempts the thread that
 * woke it; it runs on an idle vCPU, or when the waker waits, or at the scheduler's tick);
 * !hold: SCHED_OTHER again, which lets it preempt the caller at once if it is runnable.
 * Nothing for tid 0; a refusal of the kernel is ignored (it only loses the batching). */
void kyu_iohold(pid_t tid, bool hold);

#endif
