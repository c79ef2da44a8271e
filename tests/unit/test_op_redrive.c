/* Message move tasks (broker/op_redrive.c): START_MOVE_TASK, REDRIVE_STEP and
 * CANCEL_MOVE_TASK applied as log entries (their items go through the log's encoding), and
 * LIST_MOVE_TASKS: messages move back to their sources (or a destination) whole and once,
 * visible ones in order while in-flight ones wait, the rate enforced by apply, a missing
 * source failing the task with the message left in place, one running task per queue,
 * cancel, the list, a restart, the counters and the long polls woken. */
#include "command.h"
#include "fixture.h"
#include "ops.h"
#include "queue_attrs.h"
#include "sm_internal.h"
#include "store.h"

#include <stdlib.h>
#include <string.h>

#define T0 1000000 /* a command time, ms */

static kyu_queue_ext_t given;

static kyu_command_t create_with_dlq(const char *q, const char *dlq, uint32_t mrc)
{
    return cmd_with_redrive(cmd_create(q, -1), &given, dlq, mrc);
}

static kyu_command_t cmd_start(const char *q, uint64_t now, const char *dest, uint32_t rate)
{
    kyu_command_t c = cmd_create(q, -1);
    c.type = (kyu_cmd_type_t)KYU_CMD_START_MOVE_TASK;
    c.now_ms = now;
    snprintf(c.move_dest, sizeof c.move_dest, "%s", dest ? dest : "");
    c.move_rate = rate;
    return c;
}

static kyu_command_t cmd_step(const char *q, uint64_t now, uint64_t task, uint32_t max)
{
    kyu_command_t c = cmd_create(q, -1);
    c.type = (kyu_cmd_type_t)KYU_CMD_REDRIVE_STEP;
    c.now_ms = now;
    c.move_task = task;
    c.move_max = max;
    return c;
}

static kyu_command_t cmd_cancel(const char *q, uint64_t now)
{
    kyu_command_t c = cmd_create(q, -1);
    c.type = (kyu_cmd_type_t)KYU_CMD_CANCEL_MOVE_TASK;
    c.now_ms = now;
    return c;
}

/* Starts a task; its id. */
static kyu_move_task_t start(fixture_t *f, const char *q, uint64_t now, const char *dest,
                             uint32_t rate)
{
    kyu_result_t r = apply1(f, cmd_start(q, now, dest, rate));
    if (r.code != KYU_OK || !r.task)
        fail_msg("start on %s: %s: %s", q, kyu_code_name(r.code), r.error);
    kyu_move_task_t t = *r.task;
    kyu_result_clear(&r);
    return t;
}

/* The queue's latest task (LIST_MOVE_TASKS, max 1). */
static kyu_move_task_t latest(fixture_t *f, const char *q)
{
    kyu_op_ctx_t ctx = {.sm = f->sm};
    kyu_request_t req = {.op = KYU_OP_LIST_MOVE_TASKS, .fields = KYU_F_QUEUE};
    snprintf(req.queue, sizeof req.queue, "%s", q);
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    kyu_err_t err;
    if (kyu_op_list_moves_answer(&ctx, &req, &rep, &err) != KYU_OK || rep.n_tasks != 1)
        fail_msg("list of %s: %s (%zu tasks)", q, err.msg, rep.n_tasks);
    kyu_move_task_t t = rep.tasks[0];
    kyu_reply_reset(&rep);
    return t;
}

/* Sends body to q and receives it until it moves to q's dead-letter queue (maxReceiveCount 1:
 * received once, moved by the next receive). */
static void dead_letter(fixture_t *f, const char *q, const char *body, uint64_t *now)
{
    ok(apply1(f, cmd_send(q, (*now)++, body)));
    ok(apply1(f, cmd_receive(q, (*now)++, 1, 0)));
    kyu_result_t r = apply1(f, cmd_receive(q, (*now)++, 1, 0));
    assert_int_equal(r.n_msgs, 0);
    kyu_result_clear(&r);
}

/* Receives one message of q; its body must be body; returns its receive count. */
static uint32_t receive_body(fixture_t *f, const char *q, uint64_t now, const char *body)
{
    kyu_result_t r = apply1(f, cmd_receive(q, now, 1, 600));
    if (r.n_msgs != 1 || r.body_lens[0] != strlen(body) ||
        memcmp(r.bodies[0], body, strlen(body)) != 0)
        fail_msg("queue %s: expected '%s', got %zu messages ('%.*s')", q, body, r.n_msgs,
                 r.n_msgs ? (int)r.body_lens[0] : 0, r.n_msgs ? (const char *)r.bodies[0] : "");
    uint32_t rc = r.msgs[0].receive_count;
    if (r.msgs[0].dlq_source[0])
        fail_msg("a redriven message has no provenance, got '%s'", r.msgs[0].dlq_source);
    kyu_result_clear(&r);
    return rc;
}

static void setup_queues(fixture_t *f)
{
    ok(apply1(f, cmd_create("dlq", -1)));
    ok(apply1(f, create_with_dlq("a", "dlq", 1)));
    ok(apply1(f, create_with_dlq("b", "dlq", 1)));
}

static void test_a_step_moves_each_message_back_to_its_source_whole_and_once(void **state)
{
    fixture_t *f = *state;
    uint64_t now = T0;
    setup_queues(f);
    dead_letter(f, "a", "a1", &now);
    dead_letter(f, "b", "b1", &now);
    dead_letter(f, "a", "a2", &now);
    assert_int_equal(fixture_attrs(f, "dlq", now).visible, 3);
    kyu_move_task_t t = start(f, "dlq", now, NULL, 0);
    assert_int_equal(t.status, KYU_MOVE_RUNNING);
    assert_int_equal(t.to_move, 3);
    assert_int_equal(t.moved, 0);
    assert_string_equal(t.source, "dlq");
    assert_string_equal(t.destination, "");
    assert_int_equal(fixture_attrs(f, "dlq", now).visible, 3); /* a start moves nothing */
    ok(apply1(f, cmd_step("dlq", now + 1, t.id, 100)));
    t = latest(f, "dlq");
    assert_int_equal(t.status, KYU_MOVE_COMPLETED);
    assert_int_equal(t.moved, 3);
    assert_int_equal(t.ended_ms, now + 1);
    kyu_queue_attrs_t d = fixture_attrs(f, "dlq", now + 1), a = fixture_attrs(f, "a", now + 1),
                      b = fixture_attrs(f, "b", now + 1);
    assert_int_equal(d.visible + d.not_visible + d.delayed, 0);
    assert_int_equal(a.visible, 2);
    assert_int_equal(b.visible, 1);
    /* New messages there: in the DLQ's order, never received, no provenance. */
    assert_int_equal(receive_body(f, "a", now + 2, "a1"), 1);
    assert_int_equal(receive_body(f, "a", now + 2, "a2"), 1);
    assert_int_equal(receive_body(f, "b", now + 2, "b1"), 1);
    assert_int_equal(fixture_attrs(f, "a", now + 2).not_visible, 2);
}

/* A redriven message keeps the digests stored with it at its send (made up here, so that a
 * digest computed again would show). */
static void test_a_redriven_message_keeps_its_digests(void **state)
{
    fixture_t *f = *state;
    uint64_t now = T0;
    setup_queues(f);
    kyu_command_t send = cmd_send("a", now++, "a1");
    send.has_md5 = true;
    for (int i = 0; i < 16; i++)
        send.md5_body[0][i] = (uint8_t)(0x20 + i);
    ok(apply1(f, send));
    ok(apply1(f, cmd_receive("a", now++, 1, 0)));
    ok(apply1(f, cmd_receive("a", now++, 1, 0))); /* moves it to dlq */
    kyu_move_task_t t = start(f, "dlq", now, NULL, 0);
    ok(apply1(f, cmd_step("dlq", now + 1, t.id, 100)));
    kyu_result_t r = apply1(f, cmd_receive("a", now + 2, 1, 600));
    assert_int_equal(r.n_msgs, 1);
    assert_memory_equal(r.bodies[0], "a1", 2);
    assert_string_equal(r.msgs[0].md5_body, "202122232425262728292a2b2c2d2e2f");
    kyu_result_clear(&r);
}

static void test_in_flight_messages_wait_and_the_task_runs_until_they_move(void **state)
{
    fixture_t *f = *state;
    uint64_t now = T0;
    setup_queues(f);
    dead_letter(f, "a", "held", &now);
    dead_letter(f, "a", "free", &now);
    kyu_result_t r = apply1(f, cmd_receive("dlq", now, 1, 10)); /* "held" in flight for 10 s */
    assert_int_equal(r.n_msgs, 1);
    kyu_result_clear(&r);
    kyu_move_task_t t = start(f, "dlq", now, NULL, 0);
    char q[KYU_NAME_MAX + 1];
    uint64_t id = 0;
    uint32_t max = 0;
    assert_true(kyu_sm_redrive_due(f->sm, now, q, &id, &max));
    assert_string_equal(q, "dlq");
    assert_int_equal(id, t.id);
    ok(apply1(f, cmd_step("dlq", now, t.id, max)));
    t = latest(f, "dlq");
    assert_int_equal(t.status, KYU_MOVE_RUNNING);
    assert_int_equal(t.moved, 1);
    assert_int_equal(fixture_attrs(f, "dlq", now).not_visible, 1);
    assert_false(kyu_sm_redrive_due(f->sm, now + 1, q, &id, &max));    /* nothing visible */
    assert_true(kyu_sm_redrive_due(f->sm, now + 10000, q, &id, &max)); /* its lease ended */
    ok(apply1(f, cmd_step("dlq", now + 10000, t.id, max)));
    t = latest(f, "dlq");
    assert_int_equal(t.status, KYU_MOVE_COMPLETED);
    assert_int_equal(t.moved, 2);
    assert_false(kyu_sm_redrive_due(f->sm, now + 10001, q, &id, &max));
    assert_int_equal(receive_body(f, "a", now + 10001, "free"), 1);
    assert_int_equal(receive_body(f, "a", now + 10001, "held"), 1);
}

static void test_the_rate_is_enforced_by_apply(void **state)
{
    fixture_t *f = *state;
    uint64_t now = T0;
    setup_queues(f);
    for (int i = 0; i < 12; i++)
        dead_letter(f, "a", "m", &now);
    kyu_move_task_t t = start(f, "dlq", now, NULL, 2);
    assert_int_equal(t.rate, 2);
    uint64_t s = t.started_ms;
    ok(apply1(f, cmd_step("dlq", s, t.id, 100))); /* no time yet: nothing */
    assert_int_equal(latest(f, "dlq").moved, 0);
    ok(apply1(f, cmd_step("dlq", s + 1000, t.id, 100))); /* a second: two */
    assert_int_equal(latest(f, "dlq").moved, 2);
    ok(apply1(f, cmd_step("dlq", s + 1000, t.id, 100))); /* proposed twice: no more */
    ok(apply1(f, cmd_step("dlq", s + 1400, t.id, 100)));
    assert_int_equal(latest(f, "dlq").moved, 2);
    ok(apply1(f, cmd_step("dlq", s + 1500, t.id, 100)));
    assert_int_equal(latest(f, "dlq").moved, 3);
    /* After a pause, a second's worth at most, not the time paused. */
    ok(apply1(f, cmd_step("dlq", s + 60000, t.id, 100)));
    assert_int_equal(latest(f, "dlq").moved, 5);
    ok(apply1(f, cmd_step("dlq", s + 61000, t.id, 1))); /* and the step's own max */
    assert_int_equal(latest(f, "dlq").moved, 6);
    assert_int_equal(fixture_attrs(f, "a", s + 61000).visible, 6);
    assert_int_equal(fixture_attrs(f, "dlq", s + 61000).visible, 6);
}

static void test_a_message_whose_destination_is_gone_stays_in_place_and_the_task_fails(void **state)
{
    fixture_t *f = *state;
    uint64_t now = T0;
    setup_queues(f);
    ok(apply1(f, cmd_create("target", -1)));
    dead_letter(f, "a", "first", &now);
    ok(apply1(f, cmd_send("dlq", now++, "direct-1"))); /* never received: fresh in the DLQ */
    ok(apply1(f, cmd_send("dlq", now++, "direct-2")));
    /* Without a destination a message sent to the DLQ directly has no source. */
    kyu_move_task_t t = start(f, "dlq", now, NULL, 0);
    assert_int_equal(t.to_move, 3);
    ok(apply1(f, cmd_step("dlq", now, t.id, 100)));
    t = latest(f, "dlq");
    assert_int_equal(t.status, KYU_MOVE_FAILED);
    assert_int_equal(t.moved, 1); /* "first" went back to a */
    assert_non_null(strstr(t.reason, "CouldNotDetermineMessageSource"));
    assert_int_equal(fixture_attrs(f, "dlq", now).visible, 2);
    assert_int_equal(fixture_attrs(f, "a", now).visible, 1);
    /* With one, whose queue is deleted while the task runs: the message stays in place. */
    t = start(f, "dlq", now + 1, "target", 0);
    assert_int_equal(t.status, KYU_MOVE_RUNNING);
    ok(apply1(f, cmd_delete_queue("target")));
    ok(apply1(f, cmd_step("dlq", now + 2, t.id, 100)));
    t = latest(f, "dlq");
    assert_int_equal(t.status, KYU_MOVE_FAILED);
    assert_int_equal(t.moved, 0);
    assert_non_null(strstr(t.reason, "AWS.SimpleQueueService.NonExistentQueue"));
    assert_non_null(strstr(t.reason, "'target'"));
    /* Both in the DLQ's order still, in memory and after a restart. */
    fixture_reopen(f);
    kyu_result_t r = apply1(f, cmd_receive("dlq", now + 3, 10, 600));
    assert_int_equal(r.n_msgs, 2);
    assert_memory_equal(r.bodies[0], "direct-1", 8);
    assert_memory_equal(r.bodies[1], "direct-2", 8);
    kyu_result_clear(&r);
    /* A source queue deleted: NonExistentQueue, naming it. */
    now += 10;
    dead_letter(f, "b", "orphan", &now);
    ok(apply1(f, cmd_delete_queue("b")));
    t = start(f, "dlq", now + 10, NULL, 0);
    ok(apply1(f, cmd_step("dlq", now + 10, t.id, 100)));
    t = latest(f, "dlq");
    assert_int_equal(t.status, KYU_MOVE_FAILED);
    assert_non_null(strstr(t.reason, "the source queue 'b'"));
    assert_int_equal(fixture_attrs(f, "dlq", now + 10).visible, 1);
}

/* The destination's attributes apply to a moved message as to a message sent there: its
 * DelaySeconds holds it back; one larger than its MaximumMessageSize does not move, and the
 * task ends FAILED (MessageTooLarge) with the message in place. */
static void test_the_destinations_delay_and_maximum_size_apply(void **state)
{
    fixture_t *f = *state;
    uint64_t now = T0;
    setup_queues(f);
    kyu_command_t slow = cmd_create("slow", -1);
    slow.has_delay = true;
    slow.delay = 5;
    ok(apply1(f, slow));
    dead_letter(f, "a", "late", &now);
    kyu_move_task_t t = start(f, "dlq", now, "slow", 0);
    ok(apply1(f, cmd_step("dlq", now, t.id, 100)));
    assert_int_equal(latest(f, "dlq").status, KYU_MOVE_COMPLETED);
    kyu_queue_attrs_t a = fixture_attrs(f, "slow", now);
    assert_int_equal(a.delayed, 1);
    assert_int_equal(a.visible, 0);
    kyu_result_t r = apply1(f, cmd_receive("slow", now + 4999, 1, 600));
    assert_int_equal(r.n_msgs, 0);
    kyu_result_clear(&r);
    fixture_reopen(f); /* still delayed after a restart */
    assert_int_equal(fixture_attrs(f, "slow", now + 1).delayed, 1);
    receive_body(f, "slow", now + 5000, "late");
    /* MaximumMessageSize 1024: a 2000-byte body stays, the task fails naming it. */
    kyu_command_t small = cmd_create("small", -1);
    small.max_size = 1024;
    ok(apply1(f, small));
    static char big[2001];
    memset(big, 'x', 2000);
    now += 10000;
    dead_letter(f, "a", big, &now);
    dead_letter(f, "a", "fits", &now);
    t = start(f, "dlq", now, "small", 0);
    assert_int_equal(t.to_move, 2);
    ok(apply1(f, cmd_step("dlq", now, t.id, 100)));
    t = latest(f, "dlq");
    assert_int_equal(t.status, KYU_MOVE_FAILED);
    assert_int_equal(t.moved, 0);
    assert_non_null(strstr(t.reason, "MessageTooLarge"));
    assert_non_null(strstr(t.reason, "2000 bytes"));
    assert_non_null(strstr(t.reason, "queue 'small' takes at most 1024"));
    assert_int_equal(fixture_attrs(f, "dlq", now).visible, 2);
    assert_int_equal(fixture_attrs(f, "small", now).visible, 0);
    /* In the DLQ's order still: the large one first. */
    r = apply1(f, cmd_receive("dlq", now + 1, 10, 600));
    assert_int_equal(r.n_msgs, 2);
    assert_int_equal(r.body_lens[0], 2000);
    kyu_result_clear(&r);
}

static void test_one_running_task_per_queue_cancel_and_bad_starts(void **state)
{
    fixture_t *f = *state;
    uint64_t now = T0;
    setup_queues(f);
    ok(apply1(f, cmd_create("plain", -1)));
    dead_letter(f, "a", "m", &now);
    expect_result(apply1(f, cmd_start("nope", now, NULL, 0)), KYU_ERR_NO_SUCH_QUEUE, "nope");
    expect_result(apply1(f, cmd_start("plain", now, NULL, 0)), KYU_ERR_INVALID_ARGUMENT,
                  "no queue's dead-letter queue");
    expect_result(apply1(f, cmd_start("dlq", now, "gone", 0)), KYU_ERR_NO_SUCH_QUEUE, "'gone'");
    expect_result(apply1(f, cmd_start("dlq", now, "dlq", 0)), KYU_ERR_INVALID_ARGUMENT,
                  "its own move task");
    expect_result(apply1(f, cmd_cancel("dlq", now)), KYU_ERR_INVALID_ARGUMENT,
                  "no running move task");
    kyu_move_task_t t = start(f, "dlq", now, "plain", 1);
    expect_result(apply1(f, cmd_start("dlq", now, NULL, 0)), KYU_ERR_INVALID_ARGUMENT,
                  "has a running move task");
    kyu_result_t r = apply1(f, cmd_cancel("dlq", now + 5));
    assert_int_equal(r.code, KYU_OK);
    assert_non_null(r.task);
    assert_int_equal(r.task->status, KYU_MOVE_CANCELLED);
    assert_int_equal(r.task->ended_ms, now + 5);
    kyu_result_clear(&r);
    /* A step proposed before the cancel moves nothing. */
    ok(apply1(f, cmd_step("dlq", now + 5000, t.id, 100)));
    assert_int_equal(fixture_attrs(f, "dlq", now + 5000).visible, 1);
    char q[KYU_NAME_MAX + 1];
    uint64_t id;
    uint32_t max;
    assert_false(kyu_sm_redrive_due(f->sm, now + 5000, q, &id, &max));
    /* A queue keeps its ten latest tasks, newest first. */
    for (int i = 0; i < 11; i++) {
        kyu_move_task_t s = start(f, "dlq", now + 6000 + (uint64_t)i, "plain", 0);
        ok(apply1(f, cmd_cancel("dlq", now + 6000 + (uint64_t)i)));
        assert_true(s.id > t.id);
    }
    kyu_op_ctx_t ctx = {.sm = f->sm};
    kyu_request_t req = {
        .op = KYU_OP_LIST_MOVE_TASKS, .fields = KYU_F_QUEUE | KYU_F_MAX, .max = 10};
    snprintf(req.queue, sizeof req.queue, "dlq");
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    kyu_err_t err;
    assert_int_equal(kyu_op_list_moves_answer(&ctx, &req, &rep, &err), KYU_OK);
    assert_int_equal(rep.n_tasks, 10);
    for (size_t i = 1; i < rep.n_tasks; i++)
        assert_true(rep.tasks[i - 1].id > rep.tasks[i].id);
    assert_int_equal(rep.tasks[0].started_ms, now + 6010);
    kyu_reply_reset(&rep);
    fixture_reopen(f); /* the same after a restart */
    ctx.sm = f->sm;
    assert_int_equal(kyu_op_list_moves_answer(&ctx, &req, &rep, &err), KYU_OK);
    assert_int_equal(rep.n_tasks, 10);
    assert_int_equal(rep.tasks[0].started_ms, now + 6010);
    assert_int_equal(rep.tasks[0].status, KYU_MOVE_CANCELLED);
    kyu_reply_reset(&rep);
}

static void test_a_running_task_goes_on_after_restarts(void **state)
{
    fixture_t *f = *state;
    uint64_t now = T0;
    setup_queues(f);
    for (int i = 0; i < 5; i++)
        dead_letter(f, "a", "m", &now);
    kyu_move_task_t t = start(f, "dlq", now, NULL, 1);
    ok(apply1(f, cmd_step("dlq", now + 1000, t.id, 100)));
    ok(apply1(f, cmd_step("dlq", now + 2000, t.id, 100)));
    assert_int_equal(latest(f, "dlq").moved, 2);
    fixture_reopen(f);
    kyu_move_task_t after = latest(f, "dlq");
    assert_int_equal(after.status, KYU_MOVE_RUNNING);
    assert_int_equal(after.moved, 2);
    assert_int_equal(after.to_move, 5);
    ok(apply1(f, cmd_step("dlq", now + 2000, t.id, 100))); /* its rate's state was kept */
    assert_int_equal(latest(f, "dlq").moved, 2);
    ok(apply1(f, cmd_step("dlq", now + 3000, t.id, 100)));
    ok(apply1(f, cmd_step("dlq", now + 4000, t.id, 100)));
    assert_int_equal(latest(f, "dlq").moved, 4);
    fixture_reopen(f);
    char q[KYU_NAME_MAX + 1];
    uint64_t id;
    uint32_t max;
    assert_false(kyu_sm_redrive_due(f->sm, now + 4500, q, &id, &max)); /* not yet, by its rate */
    assert_true(kyu_sm_redrive_due(f->sm, now + 5000, q, &id, &max));
    assert_int_equal(id, t.id);
    assert_int_equal(max, 1);
    ok(apply1(f, cmd_step("dlq", now + 5000, t.id, max)));
    kyu_move_task_t done = latest(f, "dlq");
    assert_int_equal(done.status, KYU_MOVE_COMPLETED);
    assert_int_equal(done.moved, 5);
    kyu_queue_attrs_t a = fixture_attrs(f, "a", now + 5000),
                      d = fixture_attrs(f, "dlq", now + 5000);
    assert_int_equal(a.visible + a.not_visible, 5);
    assert_int_equal(d.visible + d.not_visible, 0);
}

static void test_a_redrive_wakes_the_long_polls_of_the_destination(void **state)
{
    fixture_t *f = *state;
    uint64_t now = T0;
    setup_queues(f);
    dead_letter(f, "a", "m", &now);
    kyu_move_task_t t = start(f, "dlq", now, NULL, 0);
    kyu_sm_watch_visible(f->sm);
    char names[8][KYU_NAME_MAX + 1];
    while (kyu_sm_take_woken(f->sm, names, 8) == 8)
        ;
    ok(apply1(f, cmd_step("dlq", now, t.id, 100)));
    size_t n = kyu_sm_take_woken(f->sm, names, 8);
    bool woken = false;
    for (size_t i = 0; i < n; i++)
        woken |= strcmp(names[i], "a") == 0;
    assert_true(woken);
    assert_int_equal(kyu_sm_visible_upto(f->sm, "a", now, 10), 1);
}

static void test_deleting_the_queue_drops_its_tasks(void **state)
{
    fixture_t *f = *state;
    uint64_t now = T0;
    setup_queues(f);
    dead_letter(f, "a", "m", &now);
    start(f, "dlq", now, NULL, 5);
    kyu_command_t del = cmd_delete_queue("dlq");
    del.force = true;
    ok(apply1(f, del));
    char q[KYU_NAME_MAX + 1];
    uint64_t id;
    uint32_t max;
    assert_false(kyu_sm_redrive_due(f->sm, now + 1000, q, &id, &max));
    ok(apply1(f, cmd_create("dlq", -1)));
    fixture_reopen(f);
    kyu_op_ctx_t ctx = {.sm = f->sm};
    kyu_request_t req = {.op = KYU_OP_LIST_MOVE_TASKS, .fields = KYU_F_QUEUE};
    snprintf(req.queue, sizeof req.queue, "dlq");
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    kyu_err_t err;
    assert_int_equal(kyu_op_list_moves_answer(&ctx, &req, &rep, &err), KYU_OK);
    assert_int_equal(rep.n_tasks, 0);
    kyu_reply_reset(&rep);
    snprintf(req.queue, sizeof req.queue, "nope");
    assert_int_equal(kyu_op_list_moves_answer(&ctx, &req, &rep, &err), KYU_ERR_NO_SUCH_QUEUE);
    kyu_reply_reset(&rep);
}

static void test_commands_round_trip_through_the_log_encoding(void **state)
{
    (void)state;
    kyu_command_t c = cmd_start("dlq", T0, "dest", 7), d;
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    kyu_command_encode(&c, &buf);
    c = cmd_start("dlq", T0, NULL, 0);
    kyu_command_encode(&c, &buf);
    c = cmd_step("dlq", T0, 12345, 9);
    kyu_command_encode(&c, &buf);
    size_t off = 0;
    kyu_err_t err;
    assert_int_equal(kyu_command_decode(buf.data, buf.size, &off, &d, &err), KYU_OK);
    assert_string_equal(d.move_dest, "dest");
    assert_int_equal(d.move_rate, 7);
    assert_int_equal(kyu_command_decode(buf.data, buf.size, &off, &d, &err), KYU_OK);
    assert_string_equal(d.move_dest, "");
    assert_int_equal(d.move_rate, 0);
    assert_int_equal(kyu_command_decode(buf.data, buf.size, &off, &d, &err), KYU_OK);
    assert_int_equal(d.type, KYU_CMD_REDRIVE_STEP);
    assert_int_equal(d.move_task, 12345);
    assert_int_equal(d.move_max, 9);
    assert_int_equal(off, buf.size);
    msgpack_sbuffer_destroy(&buf);
}

/* kyu_sm_index_put_back: a message taken and put back is the next one taken again, wherever
 * it stood in the ring of fresh messages (inside a chunk, the last of a chunk, the only one). */
static void test_a_fresh_message_put_back_is_taken_next(void **state)
{
    (void)state;
    queue_t *q = calloc(1, sizeof *q);
    assert_non_null(q);
    kyu_sm_index_init(q);
    const uint64_t n = 3000;
    for (uint64_t s = 1; s <= n; s++)
        kyu_sm_index_add_fresh(q, s);
    uint64_t expect = 1, seq;
    lease_t l;
    for (uint64_t i = 0; i < n; i++) {
        /* every message: taken, put back, taken again (at 1024 the chunk it ends is freed) */
        assert_int_equal(kyu_sm_index_take(q, T0, 1, &seq, &l), 1);
        assert_int_equal(seq, expect);
        kyu_sm_index_put_back(q, seq, &l);
        if (i % 7 == 0) { /* twice in a row, now and then */
            assert_int_equal(kyu_sm_index_take(q, T0, 1, &seq, &l), 1);
            kyu_sm_index_put_back(q, seq, &l);
        }
        assert_int_equal(kyu_sm_index_take(q, T0, 1, &seq, &l), 1);
        assert_int_equal(seq, expect);
        expect++;
    }
    assert_int_equal(kyu_sm_index_take(q, T0, 1, &seq, &l), 0);
    kyu_sm_index_put_back(q, n, &l); /* into an empty ring */
    kyu_sm_index_add_fresh(q, n + 1);
    uint64_t two[2];
    lease_t ls[2];
    assert_int_equal(kyu_sm_index_take(q, T0, 2, two, ls), 2);
    assert_int_equal(two[0], n);
    assert_int_equal(two[1], n + 1);
    /* A lease put back is due again as it was. */
    lease_t held = {.visible_at = T0, .receive_count = 2, .gen = 2, .first_ms = 1};
    kyu_sm_index_set_lease(q, 9, &held);
    assert_int_equal(kyu_sm_index_take(q, T0, 1, &seq, &l), 1);
    kyu_sm_index_put_back(q, seq, &l);
    assert_int_equal(kyu_sm_index_take(q, T0, 1, &seq, &l), 1);
    assert_int_equal(seq, 9);
    assert_int_equal(l.gen, 2);
    kyu_sm_queue_free(q);
}

#define T(name) cmocka_unit_test_setup_teardown(name, fixture_setup, fixture_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_a_step_moves_each_message_back_to_its_source_whole_and_once),
        T(test_a_redriven_message_keeps_its_digests),
        T(test_in_flight_messages_wait_and_the_task_runs_until_they_move),
        T(test_the_rate_is_enforced_by_apply),
        T(test_a_message_whose_destination_is_gone_stays_in_place_and_the_task_fails),
        T(test_the_destinations_delay_and_maximum_size_apply),
        T(test_one_running_task_per_queue_cancel_and_bad_starts),
        T(test_a_running_task_goes_on_after_restarts),
        T(test_a_redrive_wakes_the_long_polls_of_the_destination),
        T(test_deleting_the_queue_drops_its_tasks),
        cmocka_unit_test(test_commands_round_trip_through_the_log_encoding),
        cmocka_unit_test(test_a_fresh_message_put_back_is_taken_next),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
