/* The state machine's side of long polling (broker/sm_wake.c): which queues an apply lists as
 * possibly having visible messages (sends, delayed sends, receives whose leases run out,
 * change-visibility, deletion), nothing before watching is on, and the index's answers the
 * frontend wakes waiters by (how many are visible, when the next one will be). */
#include "command.h"
#include "fixture.h"
#include "queue_attrs.h"

#include <stdlib.h>
#include <string.h>

#define T0 1000000 /* a command time, ms */

/* The woken list as one sorted, comma-separated string ("" when empty); empties it. */
static void expect_woken(fixture_t *f, const char *want)
{
    char names[8][KYU_NAME_MAX + 1];
    size_t n = kyu_sm_take_woken(f->sm, names, 8);
    qsort(names, n, sizeof names[0], (int (*)(const void *, const void *))strcmp);
    char got[8 * (KYU_NAME_MAX + 1)] = "";
    for (size_t i = 0; i < n; i++) {
        if (i)
            strcat(got, ",");
        strcat(got, names[i]);
    }
    if (strcmp(got, want) != 0)
        fail_msg("expected woken queues '%s', got '%s'", want, got);
}

static int setup_watched(void **state)
{
    int rc = fixture_setup(state);
    fixture_t *f = *state;
    kyu_sm_watch_visible(f->sm);
    ok(apply1(f, cmd_create("a", -1)));
    ok(apply1(f, cmd_create("b", -1)));
    expect_woken(f, ""); /* creating a queue makes nothing visible */
    return rc;
}

static void test_nothing_is_listed_unless_watched(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, cmd_create("a", -1)));
    ok(apply1(f, cmd_send("a", T0, "m")));
    expect_woken(f, "");
}

static void test_a_send_lists_its_queue_once(void **state)
{
    fixture_t *f = *state;
    kyu_command_t c[3] = {cmd_send("a", T0, "1"), cmd_send("a", T0, "2"), cmd_send("b", T0, "3")};
    kyu_result_t r[3];
    apply_entry(f, c, 3, r);
    for (int i = 0; i < 3; i++)
        ok(r[i]);
    expect_woken(f, "a,b");
    expect_woken(f, ""); /* taken */
    ok(apply1(f, cmd_send("a", T0, "4")));
    expect_woken(f, "a"); /* listed again after it was taken */
}

/* A receive lists its queue: the lease it sets makes the message visible again when it runs
 * out, and the waiters' timer must learn the new time. */
static void test_a_receive_and_a_change_visibility_list_the_queue(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, cmd_send("a", T0, "m")));
    expect_woken(f, "a");
    kyu_result_t r = apply1(f, cmd_receive("a", T0, 1, 30));
    assert_int_equal(r.n_msgs, 1);
    char handle[KYU_HANDLE_MAX + 1];
    strcpy(handle, r.msgs[0].handle);
    kyu_result_clear(&r);
    expect_woken(f, "a");
    assert_int_equal(kyu_sm_visible_upto(f->sm, "a", T0, 10), 0);
    assert_true(kyu_sm_next_visible_at(f->sm, "a") == T0 + 30000);
    ok(apply1(f, cmd_change_visibility("a", T0 + 1, handle, 0)));
    expect_woken(f, "a");
    assert_int_equal(kyu_sm_visible_upto(f->sm, "a", T0 + 1, 10), 1);
}

static void test_a_receive_that_finds_nothing_lists_nothing(void **state)
{
    fixture_t *f = *state;
    kyu_result_t r = apply1(f, cmd_receive("a", T0, 1, -1));
    assert_int_equal(r.n_msgs, 0);
    kyu_result_clear(&r);
    expect_woken(f, "");
}

static void test_a_deleted_queue_is_listed(void **state)
{
    fixture_t *f = *state;
    assert_true(kyu_sm_queue_id(f->sm, "b") != 0);
    ok(apply1(f, cmd_delete_queue("b")));
    expect_woken(f, "b");
    assert_true(kyu_sm_queue_id(f->sm, "b") == 0);
    assert_true(kyu_sm_next_visible_at(f->sm, "b") == UINT64_MAX);
}

/* A queue created again under the same name is another queue (another id): a receive parked
 * on the first one gets NO_SUCH_QUEUE. */
static void test_a_queue_created_again_has_another_id(void **state)
{
    fixture_t *f = *state;
    uint64_t first = kyu_sm_queue_id(f->sm, "b");
    ok(apply1(f, cmd_delete_queue("b")));
    ok(apply1(f, cmd_create("b", -1)));
    assert_true(kyu_sm_queue_id(f->sm, "b") != first);
}

/* A delayed message: not visible, its end is the next visible time, and it counts once due. */
static void test_a_delayed_message_is_visible_when_its_delay_ends(void **state)
{
    fixture_t *f = *state;
    kyu_command_t c = cmd_send("a", T0, "later");
    c.has_msg_delay[0] = true;
    c.msg_delay_ms[0] = 5000;
    ok(apply1(f, c));
    expect_woken(f, "a");
    assert_int_equal(kyu_sm_visible_upto(f->sm, "a", T0, 10), 0);
    assert_true(kyu_sm_next_visible_at(f->sm, "a") == T0 + 5000);
    assert_int_equal(kyu_sm_visible_upto(f->sm, "a", T0 + 5000, 10), 1);
}

/* The count the frontend wakes waiters by: fresh and due messages, at most cap. */
static void test_visible_messages_are_counted_up_to_the_cap(void **state)
{
    fixture_t *f = *state;
    for (int i = 0; i < 6; i++)
        ok(apply1(f, cmd_send("a", T0, "m")));
    kyu_result_t r = apply1(f, cmd_receive("a", T0, 4, 10)); /* 4 leased until T0 + 10 s */
    assert_int_equal(r.n_msgs, 4);
    kyu_result_clear(&r);
    assert_int_equal(kyu_sm_visible_upto(f->sm, "a", T0, 100), 2);
    assert_true(kyu_sm_next_visible_at(f->sm, "a") == 0); /* fresh ones wait */
    assert_int_equal(kyu_sm_visible_upto(f->sm, "a", T0 + 10000, 100), 6);
    assert_int_equal(kyu_sm_visible_upto(f->sm, "a", T0 + 10000, 5), 5);
    assert_int_equal(kyu_sm_visible_upto(f->sm, "a", T0 + 10000, 1), 1);
    assert_int_equal(kyu_sm_visible_upto(f->sm, "nope", T0, 100), 0);
}

/* A dead-letter move makes a message visible in the dead-letter queue: its long polls wake. */
static void test_a_dead_letter_move_lists_the_dead_letter_queue(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, cmd_create("dlq", -1)));
    static kyu_queue_ext_t ext; /* borrowed by the command until it is applied */
    kyu_command_t c = cmd_with_redrive(cmd_create("src", -1), &ext, "dlq", 1);
    c.now_ms = T0;
    ok(apply1(f, c));
    ok(apply1(f, cmd_send("src", T0, "poison")));
    ok(apply1(f, cmd_receive("src", T0 + 1, 1, 0))); /* received once: due to move */
    expect_woken(f, "src");
    kyu_result_t r = apply1(f, cmd_receive("src", T0 + 2, 1, 0));
    assert_int_equal(r.n_msgs, 0); /* moved, not leased */
    kyu_result_clear(&r);
    expect_woken(f, "dlq");
}

/* What the frontend counts ahead of a SEND it proposes to a queue with long polls (serving
 * in the send's entry): the messages a receive right after it would find. */
static void test_a_sends_messages_visible_at_once_are_counted(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(kyu_sm_send_visible_at_once(f->sm, &(kyu_command_t){0}), 0); /* no queue */
    kyu_command_t c = cmd_send("a", T0, "now");
    assert_int_equal(kyu_sm_send_visible_at_once(f->sm, &c), 1);
    c.has_msg_delay[0] = true; /* its own delay */
    c.msg_delay_ms[0] = 5000;
    assert_int_equal(kyu_sm_send_visible_at_once(f->sm, &c), 0);
    c.entry_code[0] = KYU_ERR_INVALID_ARGUMENT; /* a batch's failed entry */
    c.msg_delay_ms[0] = 0;
    assert_int_equal(kyu_sm_send_visible_at_once(f->sm, &c), 0);
    /* the queue's DelaySeconds, and a message's own 0 that overrides it */
    kyu_command_t d = cmd_create("a", -1);
    d.type = KYU_CMD_SET_QUEUE_ATTRIBUTES;
    d.now_ms = T0;
    d.has_delay = true;
    d.delay = 5;
    ok(apply1(f, d));
    c = cmd_send("a", T0, "later");
    assert_int_equal(kyu_sm_send_visible_at_once(f->sm, &c), 0);
    c.has_msg_delay[0] = true;
    c.msg_delay_ms[0] = 0;
    assert_int_equal(kyu_sm_send_visible_at_once(f->sm, &c), 1);
    /* FIFO: a group holding a message (in flight or not) hides the next; a duplicate adds
     * nothing */
    static kyu_queue_ext_t x; /* borrowed by the command until it is applied */
    kyu_qattrs_defaults(&x);
    x.fifo = true;
    kyu_command_t q = cmd_create("f.fifo", -1);
    q.now_ms = T0;
    q.qx = &x;
    q.qx_set = KYU_F_FIFO;
    ok(apply1(f, q));
    c = cmd_send_fifo("f.fifo", T0, "a1", "g1", "d1");
    assert_int_equal(kyu_sm_send_visible_at_once(f->sm, &c), 1);
    ok(apply1(f, c));
    c = cmd_send_fifo("f.fifo", T0, "a2", "g1", "d2");
    assert_int_equal(kyu_sm_send_visible_at_once(f->sm, &c), 0);
    c = cmd_send_fifo("f.fifo", T0, "b1", "g2", "d3");
    assert_int_equal(kyu_sm_send_visible_at_once(f->sm, &c), 1);
    c = cmd_send_fifo("f.fifo", T0, "a1", "g3", "d1");
    assert_int_equal(kyu_sm_send_visible_at_once(f->sm, &c), 0);
    got_t g = fixture_receive(f, "f.fifo", T0, 1, 30); /* a1 in flight: g1 still holds it */
    assert_int_equal(g.n, 1);
    c = cmd_send_fifo("f.fifo", T0, "a2", "g1", "d2");
    assert_int_equal(kyu_sm_send_visible_at_once(f->sm, &c), 0);
    ok(apply1(f, cmd_delete("f.fifo", T0, g.handles[0]))); /* g1 empty again */
    assert_int_equal(kyu_sm_send_visible_at_once(f->sm, &c), 1);
}

/* A receive without a wait waits its queue's ReceiveMessageWaitTimeSeconds (0 by default). */
static void test_a_queue_gives_its_receive_wait(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(kyu_sm_receive_wait(f->sm, "a"), 0);
    static kyu_queue_ext_t ext; /* borrowed by the command until it is applied */
    kyu_qattrs_defaults(&ext);
    ext.receive_wait = 20;
    kyu_command_t c = cmd_create("a", -1);
    c.type = KYU_CMD_SET_QUEUE_ATTRIBUTES;
    c.now_ms = T0;
    c.qx = &ext;
    c.qx_set = KYU_F_RECEIVE_WAIT;
    ok(apply1(f, c));
    assert_int_equal(kyu_sm_receive_wait(f->sm, "a"), 20);
    assert_int_equal(kyu_sm_receive_wait(f->sm, "missing"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_nothing_is_listed_unless_watched, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_a_send_lists_its_queue_once, setup_watched,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_a_receive_and_a_change_visibility_list_the_queue,
                                        setup_watched, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_a_receive_that_finds_nothing_lists_nothing,
                                        setup_watched, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_a_deleted_queue_is_listed, setup_watched,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_a_queue_created_again_has_another_id, setup_watched,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_a_sends_messages_visible_at_once_are_counted,
                                        setup_watched, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_a_delayed_message_is_visible_when_its_delay_ends,
                                        setup_watched, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_visible_messages_are_counted_up_to_the_cap,
                                        setup_watched, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_a_dead_letter_move_lists_the_dead_letter_queue,
                                        setup_watched, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_a_queue_gives_its_receive_wait, setup_watched,
                                        fixture_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
