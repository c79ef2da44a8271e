/* libzmq's I/O thread held back from preempting the event loop (broker/iohold.c): found by
 * its name once a context has a socket, switched to SCHED_BATCH and back to SCHED_OTHER. */
#include "iohold.h"

#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include <cmocka.h>

static void comm_of(pid_t tid, char *out, size_t max)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d/comm", (int)tid);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    assert_non_null(fgets(out, (int)max, f));
    fclose(f);
}

static void test_io_thread_found_held_and_released(void **state)
{
    (void)state;
    assert_int_equal(kyu_iohold_find(), 0); /* no context yet: no I/O thread */
    kyu_iohold(0, true);                    /* nothing to hold: a no-op */
    void *ctx = zmq_ctx_new();
    assert_non_null(ctx);
    void *sock = zmq_socket(ctx, ZMQ_ROUTER); /* the first socket starts the I/O thread */
    assert_non_null(sock);
    pid_t tid = 0; /* the thread names itself once started: bounded wait */
    for (int i = 0; i < 500 && tid == 0; i++) {
        tid = kyu_iohold_find();
        if (tid == 0)
            usleep(10 * 1000);
    }
    assert_true(tid > 0);
    char comm[32];
    comm_of(tid, comm, sizeof comm);
    assert_memory_equal(comm, "ZMQbg/IO/", 9);
    assert_int_equal(sched_getscheduler(tid), SCHED_OTHER);
    kyu_iohold(tid, true);
    assert_int_equal(sched_getscheduler(tid), SCHED_BATCH);
    kyu_iohold(tid, false);
    assert_int_equal(sched_getscheduler(tid), SCHED_OTHER);
    kyu_iohold(tid, true); /* again: the switch is not one-way */
    assert_int_equal(sched_getscheduler(tid), SCHED_BATCH);
    kyu_iohold(tid, false);
    assert_int_equal(sched_getscheduler(tid), SCHED_OTHER);
    zmq_close(sock);
    zmq_ctx_term(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_io_thread_found_held_and_released),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
