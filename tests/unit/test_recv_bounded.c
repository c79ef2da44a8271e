/* Bounded receives (broker/recv_bounded.c) over an inproc ROUTER/DEALER pair: a message within
 * the limits comes whole; one over the frame count or the byte total is dropped, its first
 * frames kept for an answer, and the next message comes intact; the client port's receive
 * answers an oversized request TOO_LARGE with its id. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <string.h>

#include "recv_bounded.h"

typedef struct {
    zsock_t *router, *dealer;
    kyu_parts_t *parts; /* reused by every receive of a test, as the broker does */
} pair_t;

static int pair_setup(void **state)
{
    static int n;
    char ep[64];
    snprintf(ep, sizeof ep, "inproc://recv-bounded-%d", n++);
    pair_t *p = calloc(1, sizeof *p);
    assert_non_null(p);
    p->router = zsock_new_router(ep);
    p->dealer = zsock_new_dealer(ep);
    assert_non_null(p->router);
    assert_non_null(p->dealer);
    p->parts = kyu_parts_new(KYU_REQUEST_PARTS_MAX);
    assert_non_null(p->parts);
    *state = p;
    return 0;
}

static int pair_teardown(void **state)
{
    pair_t *p = *state;
    zsock_destroy(&p->dealer);
    zsock_destroy(&p->router);
    kyu_parts_destroy(&p->parts);
    free(p);
    return 0;
}

/* Sends n frames of size bytes each ('a' + index) from the dealer. */
static void send_frames(zsock_t *s, size_t n, size_t size)
{
    char *buf = malloc(size ? size : 1);
    assert_non_null(buf);
    for (size_t i = 0; i < n; i++) {
        memset(buf, 'a' + (int)(i % 26), size);
        assert_int_equal(zmq_send(zsock_resolve(s), buf, size, i + 1 < n ? ZMQ_SNDMORE : 0),
                         (int)size);
    }
    free(buf);
}

/* Waits (bounded) until sock has a message to read. */
static void wait_readable(zsock_t *sock)
{
    zpoller_t *p = zpoller_new(sock, NULL);
    assert_ptr_equal(zpoller_wait(p, 10000), sock);
    zpoller_destroy(&p);
}

static void test_nothing_waiting_is_a_timeout(void **state)
{
    pair_t *p = *state;
    kyu_recv_limits_t lim = {.max_frames = 3, .max_bytes = 1000};
    kyu_err_t err;
    assert_int_equal(kyu_recv_bounded(p->router, &lim, p->parts, &err), KYU_ERR_TIMEOUT);
    assert_int_equal(p->parts->n, 0);
}

static void test_a_message_within_the_limits_comes_whole(void **state)
{
    pair_t *p = *state;
    send_frames(p->dealer, 2, 100); /* + the routing id: 3 frames */
    wait_readable(p->router);
    kyu_recv_limits_t lim = {.max_frames = 3, .max_bytes = KYU_ROUTING_ID_MAX + 200};
    kyu_parts_t *m = p->parts;
    kyu_err_t err;
    for (int round = 0; round < 2; round++) { /* the second into the parts of the first */
        assert_int_equal(kyu_recv_bounded(p->router, &lim, m, &err), KYU_OK);
        assert_int_equal(m->n, 3); /* the routing id first */
        assert_int_equal(kyu_part_size(m, 1), 100);
        assert_int_equal(((const char *)kyu_part_data(m, 1))[0], 'a');
        assert_int_equal(kyu_part_size(m, 2), 100);
        assert_int_equal(((const char *)kyu_part_data(m, 2))[99], 'b');
        if (round == 0) {
            send_frames(p->dealer, 2, 100);
            wait_readable(p->router);
        }
    }
}

/* A bound past the parts' room is refused, not overrun. */
static void test_a_bound_over_the_parts_room_is_refused(void **state)
{
    pair_t *p = *state;
    kyu_recv_limits_t lim = {.max_frames = KYU_REQUEST_PARTS_MAX + 1, .max_bytes = 1000};
    kyu_err_t err;
    assert_int_equal(kyu_recv_bounded(p->router, &lim, p->parts, &err), KYU_ERR_INTERNAL);
    assert_int_equal(p->parts->n, 0);
}

static void expect_dropped_then_next_intact(pair_t *p, const kyu_recv_limits_t *lim, size_t frames,
                                            size_t size)
{
    send_frames(p->dealer, frames, size);
    send_frames(p->dealer, 1, 7); /* the next message */
    wait_readable(p->router);
    kyu_parts_t *m = p->parts;
    kyu_err_t err;
    assert_int_equal(kyu_recv_bounded(p->router, lim, m, &err), KYU_ERR_TOO_LARGE);
    assert_true(m->n >= 1 && m->n <= lim->max_frames);
    assert_int_equal(kyu_part_size(m, 0), 5); /* the routing id comes first */
    wait_readable(p->router);
    assert_int_equal(kyu_recv_bounded(p->router, lim, m, &err), KYU_OK);
    assert_int_equal(m->n, 2);
    assert_int_equal(kyu_part_size(m, 1), 7);
    assert_int_equal(kyu_recv_bounded(p->router, lim, m, &err), KYU_ERR_TIMEOUT);
    assert_int_equal(m->n, 0);
}

static void test_thousands_of_frames_are_drained_and_dropped(void **state)
{
    kyu_recv_limits_t lim = {.max_frames = 3, .max_bytes = 1 << 20};
    expect_dropped_then_next_intact(*state, &lim, 20000, 0);
}

static void test_a_message_over_the_byte_total_is_dropped(void **state)
{
    kyu_recv_limits_t lim = {.max_frames = 12, .max_bytes = KYU_ROUTING_ID_MAX + 1000};
    expect_dropped_then_next_intact(*state, &lim, 3, 500); /* 1500 bytes of bodies */
}

/* The client port: an oversized request is answered TOO_LARGE with its id, and the next one
 * is returned to the frontend. */
static void test_an_oversized_request_is_answered_too_large_with_its_id(void **state)
{
    pair_t *p = *state;
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    kyu_request_t req = {.id = 4242, .op = KYU_OP_SEND, .fields = KYU_F_QUEUE};
    snprintf(req.queue, sizeof req.queue, "orders");
    kyu_request_encode(&req, &b);
    zmsg_t *big = zmsg_new();
    zmsg_addmem(big, b.data, b.size);
    for (int i = 0; i < 3 * KYU_BATCH_MAX; i++)
        zmsg_addstr(big, "x");
    assert_int_equal(zmsg_send(&big, p->dealer), 0);
    zmsg_t *ok = zmsg_new();
    zmsg_addmem(ok, b.data, b.size);
    zmsg_addstr(ok, "body");
    assert_int_equal(zmsg_send(&ok, p->dealer), 0);
    wait_readable(p->router);
    assert_true(kyu_recv_request(p->router, 1024, p->parts));
    assert_int_equal(p->parts->n, 3); /* routing id, header, one body */
    assert_int_equal(kyu_part_size(p->parts, 2), 4);

    wait_readable(p->dealer);
    zmsg_t *answer = zmsg_recv(p->dealer);
    assert_non_null(answer);
    zframe_t *h = zmsg_first(answer);
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    kyu_err_t err;
    assert_int_equal(kyu_reply_decode(zframe_data(h), zframe_size(h), &rep, &err), KYU_OK);
    assert_int_equal(rep.status, KYU_ERR_TOO_LARGE);
    assert_int_equal(rep.id, 4242);
    assert_true(strlen(rep.error) > 0);
    kyu_reply_reset(&rep);
    zmsg_destroy(&answer);
    msgpack_sbuffer_destroy(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_nothing_waiting_is_a_timeout, pair_setup,
                                        pair_teardown),
        cmocka_unit_test_setup_teardown(test_a_message_within_the_limits_comes_whole, pair_setup,
                                        pair_teardown),
        cmocka_unit_test_setup_teardown(test_a_bound_over_the_parts_room_is_refused, pair_setup,
                                        pair_teardown),
        cmocka_unit_test_setup_teardown(test_thousands_of_frames_are_drained_and_dropped,
                                        pair_setup, pair_teardown),
        cmocka_unit_test_setup_teardown(test_a_message_over_the_byte_total_is_dropped, pair_setup,
                                        pair_teardown),
        cmocka_unit_test_setup_teardown(test_an_oversized_request_is_answered_too_large_with_its_id,
                                        pair_setup, pair_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
