/* PEEK (broker/op_peek.c): messages in queue order (by position, whatever their state) with
 * their state at the read's time, paginated by position, without leasing anything; from the
 * buffer and from the database alike (after a restart); with their message attributes and
 * digests, and in a dead-letter queue where each moved message came from and why. */
#include "command.h"
#include "fixture.h"
#include "ops.h"
#include "queue_attrs.h"

#include <stdlib.h>
#include <string.h>

#define T0 1000000 /* a command time, ms */

typedef struct {
    kyu_code_t code;
    char error[KYU_ERR_MSG_MAX];
    kyu_reply_t rep;
    kyu_result_t bodies;
} peek_t;

/* Answers a PEEK of q as the frontend does (the state machine's last time stands for the
 * leader's); the caller frees with peek_free. */
static peek_t *peek_queue(fixture_t *f, const char *queue, uint32_t max, uint64_t from)
{
    peek_t *p = calloc(1, sizeof *p);
    assert_non_null(p);
    kyu_request_t req;
    memset(&req, 0, sizeof req);
    req.op = KYU_OP_PEEK;
    req.fields = KYU_F_QUEUE | (max ? KYU_F_MAX : 0) | (from ? KYU_F_FROM : 0);
    req.max = max;
    req.from = from;
    snprintf(req.queue, sizeof req.queue, "%s", queue);
    kyu_op_ctx_t ctx = {.sm = f->sm, .max_body = 1 << 20, .answer_bodies = &p->bodies};
    kyu_err_t err;
    kyu_err_clear(&err);
    kyu_reply_init(&p->rep);
    p->code = kyu_ops_row(KYU_OP_PEEK)->answer(&ctx, &req, &p->rep, &err);
    snprintf(p->error, sizeof p->error, "%s", err.msg);
    if (p->code == KYU_OK)
        assert_int_equal(p->bodies.n_msgs, p->rep.n_msgs);
    return p;
}

static peek_t *peek(fixture_t *f, uint32_t max, uint64_t from)
{
    return peek_queue(f, "q", max, from);
}

static void peek_free(peek_t *p)
{
    kyu_result_clear(&p->bodies);
    kyu_reply_reset(&p->rep);
    free(p);
}

/* Expects the bodies and states given (NULL-terminated bodies), in order. */
static void expect_page(peek_t *p, const char *const *bodies, const uint8_t *states)
{
    assert_int_equal(p->code, KYU_OK);
    size_t n = 0;
    while (bodies[n])
        n++;
    if (p->rep.n_msgs != n)
        fail_msg("expected %zu messages, got %zu", n, p->rep.n_msgs);
    for (size_t i = 0; i < n; i++) {
        if (p->bodies.body_lens[i] != strlen(bodies[i]) ||
            memcmp(p->bodies.bodies[i], bodies[i], strlen(bodies[i])) != 0)
            fail_msg("message %zu: expected '%s', got '%.*s'", i, bodies[i],
                     (int)p->bodies.body_lens[i], (const char *)p->bodies.bodies[i]);
        if (p->rep.msgs[i].state != states[i])
            fail_msg("message %zu ('%s'): expected state %s, got %s", i, bodies[i],
                     kyu_msg_state_name(states[i]), kyu_msg_state_name(p->rep.msgs[i].state));
        assert_string_equal(p->rep.msgs[i].handle, ""); /* no lease, no handle */
    }
}

enum { V = KYU_MSG_VISIBLE, F = KYU_MSG_INFLIGHT, D = KYU_MSG_DELAYED };

/* "a" received (in flight until T0 + 10000), "b" visible, "late" delayed until T0 + 5000,
 * "c" visible; all sent at T0. */
static void fill(fixture_t *f)
{
    ok(apply1(f, cmd_create("q", 10)));
    ok(apply1(f, cmd_send("q", T0, "a")));
    ok(apply1(f, cmd_send("q", T0, "b")));
    kyu_command_t late = cmd_send("q", T0, "late");
    late.has_msg_delay[0] = true;
    late.msg_delay_ms[0] = 5000;
    ok(apply1(f, late));
    ok(apply1(f, cmd_send("q", T0, "c")));
    kyu_result_t r = apply1(f, cmd_receive("q", T0, 1, -1));
    assert_int_equal(r.n_msgs, 1);
    kyu_result_clear(&r);
}

static void check_order_and_states(fixture_t *f, bool restart)
{
    fill(f);
    if (restart)
        fixture_reopen(f);
    peek_t *p = peek(f, 0, 0);
    expect_page(p, (const char *[]){"a", "b", "late", "c", NULL}, (uint8_t[]){F, V, D, V});
    assert_int_equal(p->rep.msgs[0].receive_count, 1);
    assert_true(p->rep.msgs[0].first_receive_ms == T0);
    assert_true(p->rep.msgs[0].visible_at_ms == T0 + 10000);
    assert_true(p->rep.msgs[2].visible_at_ms == T0 + 5000);
    assert_int_equal(p->rep.msgs[2].first_receive_ms, 0);
    assert_int_equal(p->rep.msgs[1].receive_count, 0);
    assert_true(p->rep.msgs[1].sent_ms == T0);
    assert_false(p->rep.has_next);
    for (size_t i = 1; i < 4; i++)
        assert_true(p->rep.msgs[i].position > p->rep.msgs[i - 1].position);
    peek_free(p);
    /* At a later time (a command moves the state machine's time), the delay and the lease
     * have ended: every message visible. */
    ok(apply1(f, cmd_create("other", -1)));
    kyu_command_t c = cmd_create("other2", -1);
    c.now_ms = T0 + 10000;
    ok(apply1(f, c));
    p = peek(f, 0, 0);
    expect_page(p, (const char *[]){"a", "b", "late", "c", NULL}, (uint8_t[]){V, V, V, V});
    assert_int_equal(p->rep.msgs[0].visible_at_ms, 0);
    peek_free(p);
}

static void test_peek_lists_in_queue_order_with_each_state(void **state)
{
    check_order_and_states(*state, false);
}

static void test_peek_reads_the_same_after_a_restart(void **state)
{
    check_order_and_states(*state, true);
}

static void test_peek_pages_by_position(void **state)
{
    fixture_t *f = *state;
    fill(f);
    peek_t *p = peek(f, 2, 0);
    expect_page(p, (const char *[]){"a", "b", NULL}, (uint8_t[]){F, V});
    assert_true(p->rep.has_next);
    uint64_t next = p->rep.next;
    assert_true(next > p->rep.msgs[1].position);
    peek_free(p);
    p = peek(f, 2, next);
    expect_page(p, (const char *[]){"late", "c", NULL}, (uint8_t[]){D, V});
    assert_false(p->rep.has_next); /* exactly the last page */
    uint64_t last = p->rep.msgs[1].position;
    peek_free(p);
    p = peek(f, 10, last + 1);
    expect_page(p, (const char *[]){NULL}, NULL);
    assert_false(p->rep.has_next);
    peek_free(p);
}

/* Peeking changes nothing: a receive after it takes what it would have taken, with the
 * receive counts it would have had, and the counts stay. */
static void test_peek_leases_nothing(void **state)
{
    fixture_t *f = *state;
    fill(f);
    for (int i = 0; i < 3; i++)
        peek_free(peek(f, 10, 0));
    kyu_queue_attrs_t a = fixture_attrs(f, "q", T0);
    assert_int_equal(a.visible, 2);
    assert_int_equal(a.not_visible, 1);
    assert_int_equal(a.delayed, 1);
    kyu_result_t r = apply1(f, cmd_receive("q", T0 + 1, 10, -1));
    assert_int_equal(r.n_msgs, 2); /* "b" and "c": the others are in flight or delayed */
    assert_memory_equal(r.bodies[0], "b", 1);
    assert_int_equal(r.msgs[0].receive_count, 1);
    kyu_result_clear(&r);
}

/* A message received, released and received again still shows once, at its position, and
 * one deleted does not show. */
static void test_peek_follows_deletes_and_new_leases(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, cmd_create("q", 10)));
    ok(apply1(f, cmd_send("q", T0, "a")));
    ok(apply1(f, cmd_send("q", T0, "b")));
    kyu_result_t r = apply1(f, cmd_receive("q", T0, 2, -1));
    char ha[KYU_HANDLE_MAX + 1], hb[KYU_HANDLE_MAX + 1];
    snprintf(ha, sizeof ha, "%s", r.msgs[0].handle);
    snprintf(hb, sizeof hb, "%s", r.msgs[1].handle);
    kyu_result_clear(&r);
    r = apply1(f, cmd_delete("q", T0 + 1, ha));
    assert_int_equal(r.results[0], KYU_OK);
    kyu_result_clear(&r);
    r = apply1(f, cmd_change_visibility("q", T0 + 1, hb, 0));
    kyu_result_clear(&r);
    ok(apply1(f, cmd_send("q", T0 + 1, "c")));
    peek_t *p = peek(f, 10, 0);
    expect_page(p, (const char *[]){"b", "c", NULL}, (uint8_t[]){V, V});
    assert_int_equal(p->rep.msgs[0].receive_count, 1);
    peek_free(p);
}

static void test_peek_of_a_missing_or_purged_queue(void **state)
{
    fixture_t *f = *state;
    peek_t *p = peek(f, 1, 0);
    assert_int_equal(p->code, KYU_ERR_NO_SUCH_QUEUE);
    peek_free(p);
    fill(f);
    kyu_command_t c = cmd_delete_queue("q");
    c.type = KYU_CMD_PURGE_QUEUE;
    ok(apply1(f, c));
    p = peek(f, 10, 0);
    expect_page(p, (const char *[]){NULL}, NULL);
    peek_free(p);
}

/* As a receive shows them: the attributes (SQS's test vector) and both digests; a message
 * without attributes has no MD5OfMessageAttributes. */
static void test_peek_shows_message_attributes_and_digests(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, cmd_create("q", -1)));
    kyu_command_t c = cmd_send("q", T0, "hello");
    c.attrs[0].n = 1;
    c.attrs[0].a[0] = (kyu_msg_attr_t){.name = "attribName1",
                                       .name_len = 11,
                                       .type = "String",
                                       .type_len = 6,
                                       .value = "attribValue 1",
                                       .value_len = 13};
    ok(apply1(f, c));
    ok(apply1(f, cmd_send("q", T0, "plain")));
    for (int restart = 0; restart < 2; restart++) {
        if (restart)
            fixture_reopen(f);
        peek_t *p = peek(f, 10, 0);
        expect_page(p, (const char *[]){"hello", "plain", NULL}, (uint8_t[]){V, V});
        const kyu_msg_meta_t *m = &p->rep.msgs[0];
        assert_int_equal(m->attrs.n, 1);
        assert_int_equal(m->attrs.a[0].name_len, 11);
        assert_memory_equal(m->attrs.a[0].name, "attribName1", 11);
        assert_memory_equal(m->attrs.a[0].type, "String", 6);
        assert_int_equal(m->attrs.a[0].value_len, 13);
        assert_memory_equal(m->attrs.a[0].value, "attribValue 1", 13);
        assert_string_equal(m->md5_body, "5d41402abc4b2a76b9719d911017c592");
        assert_string_equal(m->md5_attrs, "19e27d4e946b072f3f58da80d94fd778");
        assert_int_equal(p->rep.msgs[1].attrs.n, 0);
        assert_string_equal(p->rep.msgs[1].md5_attrs, "");
        assert_true(p->rep.msgs[1].md5_body[0] != '\0');
        assert_string_equal(p->rep.msgs[0].dlq_source, "");
        peek_free(p);
    }
}

/* In a dead-letter queue, a message a RedrivePolicy moved there shows its source queue, its
 * receive count and first and last receive there, and when it moved; one sent there shows
 * none; the same from the database after a restart. */
static void test_peek_of_a_dead_letter_queue_shows_where_each_message_came_from(void **state)
{
    fixture_t *f = *state;
    static kyu_queue_ext_t x; /* borrowed by the command until it is applied */
    ok(apply1(f, cmd_create("dlq", -1)));
    ok(apply1(f, cmd_with_redrive(cmd_create("src", -1), &x, "dlq", 2)));
    ok(apply1(f, cmd_send("dlq", T0, "sent here")));
    ok(apply1(f, cmd_send("src", T0, "poison")));
    for (uint64_t i = 1; i <= 3; i++) { /* two leases of 0 s, then the move */
        kyu_result_t r = apply1(f, cmd_receive("src", T0 + i, 1, 0));
        assert_int_equal(r.n_msgs, i < 3 ? 1 : 0);
        kyu_result_clear(&r);
    }
    for (int restart = 0; restart < 2; restart++) {
        if (restart)
            fixture_reopen(f);
        peek_t *p = peek_queue(f, "dlq", 10, 0);
        expect_page(p, (const char *[]){"sent here", "poison", NULL}, (uint8_t[]){V, V});
        assert_string_equal(p->rep.msgs[0].dlq_source, "");
        const kyu_msg_meta_t *m = &p->rep.msgs[1];
        assert_string_equal(m->dlq_source, "src");
        assert_int_equal(m->dlq_receive_count, 2);
        assert_true(m->dlq_first_receive_ms == T0 + 1);
        assert_true(m->dlq_last_receive_ms == T0 + 2);
        assert_true(m->dlq_moved_ms == T0 + 3);
        assert_int_equal(m->receive_count, 2);
        peek_free(p);
    }
}

#define T(name) cmocka_unit_test_setup_teardown(name, fixture_setup, fixture_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_peek_lists_in_queue_order_with_each_state),
        T(test_peek_reads_the_same_after_a_restart),
        T(test_peek_pages_by_position),
        T(test_peek_leases_nothing),
        T(test_peek_follows_deletes_and_new_leases),
        T(test_peek_of_a_missing_or_purged_queue),
        T(test_peek_shows_message_attributes_and_digests),
        T(test_peek_of_a_dead_letter_queue_shows_where_each_message_came_from),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
