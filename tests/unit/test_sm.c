/* The state machine, one behaviour per test (SQS standard-queue semantics). */
#include "fixture.h"
#include "command.h"
#include "ops.h"

#include <stdlib.h>
#include <string.h>

#define T0 1000000 /* a command time, ms */

static void expect_code(kyu_result_t r, kyu_code_t code)
{
    if (r.code != code)
        fail_msg("expected %s, got %s: %s", kyu_code_name(code), kyu_code_name(r.code), r.error);
    kyu_result_clear(&r);
}

static void attrs(fixture_t *f, const char *q, uint64_t now, int64_t visible, int64_t not_visible)
{
    kyu_queue_attrs_t a = fixture_attrs(f, q, now);
    if (a.visible != visible || a.not_visible != not_visible)
        fail_msg("expected %lld visible / %lld not visible, got %lld / %lld", (long long)visible,
                 (long long)not_visible, (long long)a.visible, (long long)a.not_visible);
}

/* Receives exactly one message and returns its handle in out. */
static void receive_one(fixture_t *f, const char *q, uint64_t now, int64_t vt, char *out,
                        const char *expect_body, uint32_t expect_count)
{
    kyu_result_t r = apply1(f, cmd_receive(q, now, 1, vt));
    assert_int_equal(r.code, KYU_OK);
    assert_int_equal(r.n_msgs, 1);
    assert_int_equal(r.body_lens[0], strlen(expect_body));
    assert_memory_equal(r.bodies[0], expect_body, strlen(expect_body));
    assert_int_equal(r.msgs[0].receive_count, expect_count);
    strcpy(out, r.msgs[0].handle);
    kyu_result_clear(&r);
}

static void test_create_queue_is_listed_with_default_visibility(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, cmd_create("orders", -1)));
    char(*names)[KYU_NAME_MAX + 1] = NULL;
    size_t n = 0;
    kyu_err_t err;
    assert_int_equal(kyu_sm_list_queues(f->sm, &names, &n, &err), KYU_OK);
    assert_int_equal(n, 1);
    assert_string_equal(names[0], "orders");
    free(names);
    kyu_queue_attrs_t a = fixture_attrs(f, "orders", T0);
    assert_int_equal(a.visibility_timeout, 30);
}

static void test_create_existing_queue_with_same_attributes_succeeds(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, cmd_create("orders", 10)));
    ok(apply1(f, cmd_create("orders", 10)));
}

static void test_create_existing_queue_with_other_attributes_is_refused(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, cmd_create("orders", 10)));
    expect_code(apply1(f, cmd_create("orders", 20)), KYU_ERR_QUEUE_EXISTS);
}

static void test_delete_unknown_queue_is_no_such_queue(void **state)
{
    expect_code(apply1(*state, cmd_delete_queue("nope")), KYU_ERR_NO_SUCH_QUEUE);
}

static void test_send_to_unknown_queue_is_no_such_queue(void **state)
{
    expect_code(apply1(*state, cmd_send("nope", T0, "x")), KYU_ERR_NO_SUCH_QUEUE);
}

static void test_deleted_queue_recreated_is_empty(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, cmd_create("orders", -1)));
    ok(apply1(f, cmd_send("orders", T0, "old")));
    ok(apply1(f, cmd_delete_queue("orders")));
    assert_false(kyu_sm_queue_exists(f->sm, "orders"));
    ok(apply1(f, cmd_create("orders", -1)));
    attrs(f, "orders", T0, 0, 0);
    kyu_result_t r = apply1(f, cmd_receive("orders", T0 + 1, 10, -1));
    assert_int_equal(r.n_msgs, 0);
    kyu_result_clear(&r);
}

static void test_send_returns_the_commands_message_id(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, cmd_create("orders", -1)));
    kyu_command_t c = cmd_send("orders", T0, "hello");
    kyu_result_t r = apply1(f, c);
    assert_int_equal(r.n_ids, 1);
    assert_string_equal(r.ids[0], c.ids[0]);
    kyu_result_clear(&r);
    attrs(f, "orders", T0, 1, 0);
}

static void test_receive_returns_body_id_and_sent_time(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, cmd_create("orders", -1)));
    kyu_command_t c = cmd_send("orders", T0, "hello");
    ok(apply1(f, c));
    kyu_result_t r = apply1(f, cmd_receive("orders", T0 + 5, 10, -1));
    assert_int_equal(r.n_msgs, 1);
    assert_string_equal(r.msgs[0].message_id, c.ids[0]);
    assert_int_equal(r.msgs[0].sent_ms, T0);
    assert_int_equal(r.msgs[0].first_receive_ms, T0 + 5);
    assert_int_equal(r.msgs[0].receive_count, 1);
    assert_memory_equal(r.bodies[0], "hello", 5);
    kyu_result_clear(&r);
}

static void test_receive_skips_leased_messages(void **state)
{
    fixture_t *f = *state;
    char h[KYU_HANDLE_MAX + 1];
    ok(apply1(f, cmd_create("orders", -1)));
    ok(apply1(f, cmd_send("orders", T0, "a")));
    ok(apply1(f, cmd_send("orders", T0, "b")));
    receive_one(f, "orders", T0 + 1, -1, h, "a", 1);
    receive_one(f, "orders", T0 + 2, -1, h, "b", 1);
    kyu_result_t r = apply1(f, cmd_receive("orders", T0 + 3, 10, -1));
    assert_int_equal(r.n_msgs, 0);
    kyu_result_clear(&r);
    attrs(f, "orders", T0 + 3, 0, 2);
}

static void test_receive_takes_at_most_max(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, cmd_create("orders", -1)));
    for (int i = 0; i < 5; i++)
        ok(apply1(f, cmd_send("orders", T0, "m")));
    kyu_result_t r = apply1(f, cmd_receive("orders", T0 + 1, 3, -1));
    assert_int_equal(r.n_msgs, 3);
    kyu_result_clear(&r);
    attrs(f, "orders", T0 + 1, 2, 3);
}

static void test_expired_lease_redelivers_with_higher_receive_count(void **state)
{
    fixture_t *f = *state;
    char h1[KYU_HANDLE_MAX + 1], h2[KYU_HANDLE_MAX + 1];
    ok(apply1(f, cmd_create("orders", 30)));
    ok(apply1(f, cmd_send("orders", T0, "a")));
    receive_one(f, "orders", T0, -1, h1, "a", 1);
    /* Invisible until the queue's 30 s have passed, visible from then on. */
    attrs(f, "orders", T0 + 29999, 0, 1);
    kyu_result_t r = apply1(f, cmd_receive("orders", T0 + 29999, 1, -1));
    assert_int_equal(r.n_msgs, 0);
    kyu_result_clear(&r);
    attrs(f, "orders", T0 + 30000, 1, 0);
    receive_one(f, "orders", T0 + 30000, -1, h2, "a", 2);
    assert_string_not_equal(h1, h2);
}

static void test_per_request_visibility_timeout_overrides_queue(void **state)
{
    fixture_t *f = *state;
    char h[KYU_HANDLE_MAX + 1];
    ok(apply1(f, cmd_create("orders", 30)));
    ok(apply1(f, cmd_send("orders", T0, "a")));
    receive_one(f, "orders", T0, 2, h, "a", 1);
    receive_one(f, "orders", T0 + 2000, -1, h, "a", 2);
}

static void test_visibility_timeout_zero_leaves_message_visible(void **state)
{
    fixture_t *f = *state;
    char h[KYU_HANDLE_MAX + 1];
    ok(apply1(f, cmd_create("orders", 30)));
    ok(apply1(f, cmd_send("orders", T0, "a")));
    receive_one(f, "orders", T0, 0, h, "a", 1);
    receive_one(f, "orders", T0, 0, h, "a", 2);
}

static void test_delete_with_current_handle_removes_message(void **state)
{
    fixture_t *f = *state;
    char h[KYU_HANDLE_MAX + 1];
    ok(apply1(f, cmd_create("orders", -1)));
    ok(apply1(f, cmd_send("orders", T0, "a")));
    receive_one(f, "orders", T0, -1, h, "a", 1);
    kyu_result_t r = apply1(f, cmd_delete("orders", T0 + 1, h));
    assert_int_equal(r.code, KYU_OK);
    assert_int_equal(r.n_results, 1);
    assert_int_equal(r.results[0], KYU_OK);
    kyu_result_clear(&r);
    attrs(f, "orders", T0 + 100000, 0, 0);
    r = apply1(f, cmd_receive("orders", T0 + 100000, 10, -1));
    assert_int_equal(r.n_msgs, 0);
    kyu_result_clear(&r);
}

static void test_delete_with_stale_handle_is_refused_and_keeps_message(void **state)
{
    fixture_t *f = *state;
    char h1[KYU_HANDLE_MAX + 1], h2[KYU_HANDLE_MAX + 1];
    ok(apply1(f, cmd_create("orders", 1)));
    ok(apply1(f, cmd_send("orders", T0, "a")));
    receive_one(f, "orders", T0, -1, h1, "a", 1);
    receive_one(f, "orders", T0 + 1000, -1, h2, "a", 2);
    kyu_result_t r = apply1(f, cmd_delete("orders", T0 + 1001, h1));
    assert_int_equal(r.results[0], KYU_ERR_RECEIPT_STALE);
    kyu_result_clear(&r);
    attrs(f, "orders", T0 + 1001, 0, 1);
    r = apply1(f, cmd_delete("orders", T0 + 1001, h2));
    assert_int_equal(r.results[0], KYU_OK);
    kyu_result_clear(&r);
}

static void test_delete_after_lease_expired_but_not_replaced_succeeds(void **state)
{
    fixture_t *f = *state;
    char h[KYU_HANDLE_MAX + 1];
    ok(apply1(f, cmd_create("orders", 1)));
    ok(apply1(f, cmd_send("orders", T0, "a")));
    receive_one(f, "orders", T0, -1, h, "a", 1);
    kyu_result_t r = apply1(f, cmd_delete("orders", T0 + 5000, h));
    assert_int_equal(r.results[0], KYU_OK);
    kyu_result_clear(&r);
    attrs(f, "orders", T0 + 5000, 0, 0);
}

static void test_second_delete_is_receipt_invalid(void **state)
{
    fixture_t *f = *state;
    char h[KYU_HANDLE_MAX + 1];
    ok(apply1(f, cmd_create("orders", -1)));
    ok(apply1(f, cmd_send("orders", T0, "a")));
    receive_one(f, "orders", T0, -1, h, "a", 1);
    kyu_result_clear((kyu_result_t[]){apply1(f, cmd_delete("orders", T0, h))});
    kyu_result_t r = apply1(f, cmd_delete("orders", T0, h));
    assert_int_equal(r.results[0], KYU_ERR_RECEIPT_INVALID);
    kyu_result_clear(&r);
}

static void test_handle_of_another_queue_is_receipt_invalid(void **state)
{
    fixture_t *f = *state;
    char h[KYU_HANDLE_MAX + 1];
    ok(apply1(f, cmd_create("a", -1)));
    ok(apply1(f, cmd_create("b", -1)));
    ok(apply1(f, cmd_send("a", T0, "x")));
    ok(apply1(f, cmd_send("b", T0, "y")));
    receive_one(f, "a", T0, -1, h, "x", 1);
    kyu_result_t r = apply1(f, cmd_delete("b", T0, h));
    assert_int_equal(r.results[0], KYU_ERR_RECEIPT_INVALID);
    kyu_result_clear(&r);
    attrs(f, "a", T0, 0, 1);
}

static void test_forged_and_malformed_handles_are_receipt_invalid(void **state)
{
    fixture_t *f = *state;
    char h[KYU_HANDLE_MAX + 1];
    ok(apply1(f, cmd_create("orders", -1)));
    ok(apply1(f, cmd_send("orders", T0, "a")));
    receive_one(f, "orders", T0, -1, h, "a", 1);
    const char *bad[] = {"",
                         "zz",
                         "00000000000000010000000",
                         "0000000000000001000000011",
                         "000000000000000100000009",
                         "00000000000000010000000G",
                         "000000000000000100000000",
                         "ffffffffffffffff00000001"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kyu_result_t r = apply1(f, cmd_delete("orders", T0, bad[i]));
        if (r.results[0] != KYU_ERR_RECEIPT_INVALID)
            fail_msg("handle '%s': expected RECEIPT_INVALID, got %s", bad[i],
                     kyu_code_name((int)r.results[0]));
        kyu_result_clear(&r);
    }
    attrs(f, "orders", T0, 0, 1);
}

static const uint8_t key1[KYU_HANDLE_KEY_LEN] = {1, 2, 3}, key2[KYU_HANDLE_KEY_LEN] = {9};

static kyu_command_t cmd_handle_key(const uint8_t key[KYU_HANDLE_KEY_LEN])
{
    kyu_command_t c;
    memset(&c, 0, sizeof c);
    c.type = KYU_CMD_SET_HANDLE_KEY;
    c.now_ms = T0;
    c.vt = -1;
    memcpy(c.key, key, KYU_HANDLE_KEY_LEN);
    return c;
}

/* Receipt handles are unforgeable (defect 3f): two messages, each received by its own
 * consumer; the first consumer's handle, changed in any way, deletes nothing. */
static void two_leased(fixture_t *f, char *ha, char *hb)
{
    ok(apply1(f, cmd_handle_key(key1)));
    ok(apply1(f, cmd_create("orders", -1)));
    ok(apply1(f, cmd_send("orders", T0, "a")));
    ok(apply1(f, cmd_send("orders", T0, "b")));
    receive_one(f, "orders", T0, -1, ha, "a", 1);
    receive_one(f, "orders", T0, -1, hb, "b", 1);
}

static void expect_invalid(fixture_t *f, const char *q, const char *h)
{
    kyu_result_t r = apply1(f, cmd_delete(q, T0 + 1, h));
    if (r.results[0] != KYU_ERR_RECEIPT_INVALID)
        fail_msg("handle '%s': expected RECEIPT_INVALID, got %s", h,
                 kyu_code_name((int)r.results[0]));
    kyu_result_clear(&r);
}

static void test_a_handle_forged_by_counting_is_receipt_invalid(void **state)
{
    fixture_t *f = *state;
    char ha[KYU_HANDLE_MAX + 1], hb[KYU_HANDLE_MAX + 1], forged[KYU_HANDLE_MAX + 1];
    two_leased(f, ha, hb);
    /* The next message's handle, guessed from ha: its sequence number (the first 16 hex
     * digits, as handles were) plus one, the rest kept. */
    strcpy(forged, ha);
    unsigned long long seq = 0;
    assert_int_equal(sscanf(ha, "%16llx", &seq), 1);
    char digits[17];
    snprintf(digits, sizeof digits, "%016llx", seq + 1);
    memcpy(forged, digits, 16);
    expect_invalid(f, "orders", forged);
    /* And the old form, sequence and generation alone. */
    snprintf(forged, sizeof forged, "%016llx%08x", seq + 1, 1u);
    expect_invalid(f, "orders", forged);
    attrs(f, "orders", T0 + 1, 0, 2);
}

static void test_an_altered_or_truncated_handle_is_receipt_invalid(void **state)
{
    fixture_t *f = *state;
    char ha[KYU_HANDLE_MAX + 1], hb[KYU_HANDLE_MAX + 1], bad[KYU_HANDLE_MAX + 1];
    two_leased(f, ha, hb);
    size_t len = strlen(ha);
    for (size_t i = 0; i < len; i++) {
        strcpy(bad, ha);
        bad[i] = bad[i] == '0' ? '1' : '0';
        expect_invalid(f, "orders", bad);
    }
    strcpy(bad, ha);
    bad[len - 1] = '\0';
    expect_invalid(f, "orders", bad);
    attrs(f, "orders", T0 + 1, 0, 2);
    kyu_result_t r = apply1(f, cmd_delete("orders", T0 + 1, ha));
    assert_int_equal(r.results[0], KYU_OK);
    kyu_result_clear(&r);
}

static void test_change_visibility_extends_the_lease(void **state)
{
    fixture_t *f = *state;
    char h[KYU_HANDLE_MAX + 1];
    ok(apply1(f, cmd_create("orders", 10)));
    ok(apply1(f, cmd_send("orders", T0, "a")));
    receive_one(f, "orders", T0, -1, h, "a", 1);
    kyu_result_t r = apply1(f, cmd_change_visibility("orders", T0 + 5000, h, 60));
    assert_int_equal(r.results[0], KYU_OK);
    kyu_result_clear(&r);
    attrs(f, "orders", T0 + 64999, 0, 1);
    attrs(f, "orders", T0 + 65000, 1, 0);
    /* The handle stays valid: changing visibility is not a new lease. */
    r = apply1(f, cmd_delete("orders", T0 + 6000, h));
    assert_int_equal(r.results[0], KYU_OK);
    kyu_result_clear(&r);
}

static void test_change_visibility_zero_makes_message_visible(void **state)
{
    fixture_t *f = *state;
    char h[KYU_HANDLE_MAX + 1];
    ok(apply1(f, cmd_create("orders", 30)));
    ok(apply1(f, cmd_send("orders", T0, "a")));
    receive_one(f, "orders", T0, -1, h, "a", 1);
    kyu_result_t r = apply1(f, cmd_change_visibility("orders", T0 + 1, h, 0));
    assert_int_equal(r.results[0], KYU_OK);
    kyu_result_clear(&r);
    receive_one(f, "orders", T0 + 1, -1, h, "a", 2);
}

static void test_change_visibility_after_lease_expired_is_stale(void **state)
{
    fixture_t *f = *state;
    char h[KYU_HANDLE_MAX + 1];
    ok(apply1(f, cmd_create("orders", 1)));
    ok(apply1(f, cmd_send("orders", T0, "a")));
    receive_one(f, "orders", T0, -1, h, "a", 1);
    kyu_result_t r = apply1(f, cmd_change_visibility("orders", T0 + 1000, h, 30));
    assert_int_equal(r.results[0], KYU_ERR_RECEIPT_STALE);
    kyu_result_clear(&r);
}

/* CHANGE_VISIBILITY with a timeout per entry (evt): each lease moves by its own; an entry
 * out of range fails alone (INVALID_ARGUMENT, with why) and changes nothing; the log entry
 * holds each entry's timeout, and a malformed one does not decode. */
static void test_change_visibility_batch_takes_a_timeout_per_entry(void **state)
{
    fixture_t *f = *state;
    char h[3][KYU_HANDLE_MAX + 1];
    ok(apply1(f, cmd_create("orders", 30)));
    for (int i = 0; i < 3; i++) {
        ok(apply1(f, cmd_send("orders", T0, "m")));
        receive_one(f, "orders", T0, -1, h[i], "m", 1); /* leased until T0 + 30 s */
    }
    kyu_request_t *req = calloc(1, sizeof *req);
    req->op = KYU_OP_CHANGE_VISIBILITY;
    req->fields = KYU_F_QUEUE | KYU_F_HANDLES | KYU_F_ENTRY_IDS | KYU_F_ENTRY_VTS;
    strcpy(req->queue, "orders");
    req->n_handles = req->n_entries = req->n_entry_vts = 3;
    const uint32_t vts[3] = {100, KYU_VISIBILITY_MAX + 1, 0};
    for (int i = 0; i < 3; i++) {
        strcpy(req->handles[i], h[i]);
        snprintf(req->entry_ids[i], sizeof req->entry_ids[i], "e%d", i);
        req->entry_vt[i] = vts[i];
    }
    kyu_command_t *c = malloc(sizeof *c);
    kyu_command_init(c);
    c->type = KYU_CMD_CHANGE_VISIBILITY;
    c->now_ms = T0 + 1000;
    c->vt = -1;
    snprintf(c->queue, sizeof c->queue, "orders");
    kyu_ops_row(KYU_OP_CHANGE_VISIBILITY)->build(NULL, req, NULL, c);
    kyu_result_t r = apply1(f, *c);
    assert_int_equal(r.n_results, 3);
    assert_int_equal(r.results[0], KYU_OK);
    assert_int_equal(r.results[1], KYU_ERR_INVALID_ARGUMENT);
    assert_int_equal(r.results[2], KYU_OK);
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    size_t n_bodies = 0;
    kyu_ops_row(KYU_OP_CHANGE_VISIBILITY)->reply(&r, &rep, &n_bodies);
    assert_int_equal(rep.n_errors, 3);
    assert_non_null(strstr(rep.errors[1], "0 to 43200"));
    assert_string_equal(rep.errors[0], "");
    kyu_result_clear(&r);
    /* h[2] is visible at once, h[1] keeps its lease (T0 + 30 s), h[0] until T0 + 101 s */
    attrs(f, "orders", T0 + 1000, 1, 2);
    attrs(f, "orders", T0 + 30000, 2, 1);
    attrs(f, "orders", T0 + 100999, 2, 1);
    attrs(f, "orders", T0 + 101000, 3, 0);
    /* The items: a str among per-entry items, a timeout out of range, a code 0: refused */
    msgpack_sbuffer b;
    msgpack_packer pk;
    for (int bad = 0; bad < 3; bad++) {
        msgpack_sbuffer_init(&b);
        msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
        msgpack_pack_array(&pk, 2);
        msgpack_pack_array(&pk, 2);
        msgpack_pack_str_with_body(&pk, "h", 1);
        msgpack_pack_uint32(&pk, 5);
        if (bad == 0) {
            msgpack_pack_str_with_body(&pk, "h", 1);
        } else if (bad == 1) {
            msgpack_pack_array(&pk, 2);
            msgpack_pack_str_with_body(&pk, "h", 1);
            msgpack_pack_uint32(&pk, KYU_VISIBILITY_MAX + 1);
        } else {
            msgpack_pack_array(&pk, 1);
            msgpack_pack_uint32(&pk, 0);
        }
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        assert_int_equal(msgpack_unpack_next(&u, b.data, b.size, NULL), MSGPACK_UNPACK_SUCCESS);
        kyu_command_init(c);
        c->type = KYU_CMD_CHANGE_VISIBILITY;
        assert_false(kyu_ops_row(KYU_OP_CHANGE_VISIBILITY)->decode_items(&u.data, c));
        msgpack_unpacked_destroy(&u);
        msgpack_sbuffer_destroy(&b);
    }
    free(c);
    free(req);
}

/* Receives skip the front of the visibility index they have already passed; a message put
 * back below that point (visibility 0, a lease moved earlier) must still be found. */
static void test_message_returned_below_the_scan_position_is_received(void **state)
{
    fixture_t *f = *state;
    char ha[KYU_HANDLE_MAX + 1], hb[KYU_HANDLE_MAX + 1];
    ok(apply1(f, cmd_create("orders", 30)));
    ok(apply1(f, cmd_send("orders", T0, "a")));
    ok(apply1(f, cmd_send("orders", T0, "b")));
    receive_one(f, "orders", T0, -1, ha, "a", 1);    /* a leased until T0 + 30 s */
    receive_one(f, "orders", T0 + 1, 0, hb, "b", 1); /* b back at T0 + 1 at once */
    receive_one(f, "orders", T0 + 1, 0, hb, "b", 2);
    kyu_result_t r = apply1(f, cmd_receive("orders", T0 + 2, 1, 60)); /* b until T0 + 60 s */
    assert_int_equal(r.n_msgs, 1);
    strcpy(hb, r.msgs[0].handle);
    kyu_result_clear(&r);
    r = apply1(f, cmd_change_visibility("orders", T0 + 3, hb, 0));
    assert_int_equal(r.results[0], KYU_OK);
    kyu_result_clear(&r);
    receive_one(f, "orders", T0 + 3, -1, hb, "b", 4);
    r = apply1(f, cmd_change_visibility("orders", T0 + 4, ha, 0));
    assert_int_equal(r.results[0], KYU_OK);
    kyu_result_clear(&r);
    receive_one(f, "orders", T0 + 4, -1, ha, "a", 2);
}

static void test_many_received_and_deleted_messages_leave_the_rest_receivable(void **state)
{
    fixture_t *f = *state;
    char h[KYU_HANDLE_MAX + 1];
    ok(apply1(f, cmd_create("orders", 30)));
    for (int i = 0; i < 300; i++)
        ok(apply1(f, cmd_send("orders", T0 + (uint64_t)i, i % 2 ? "odd" : "even")));
    for (int i = 0; i < 300; i++) {
        receive_one(f, "orders", T0 + 1000, -1, h, i % 2 ? "odd" : "even", 1);
        if (i % 3)
            ok(apply1(f, cmd_delete("orders", T0 + 1000, h)));
    }
    attrs(f, "orders", T0 + 1000, 0, 100);
    attrs(f, "orders", T0 + 31000, 100, 0);
    kyu_result_t r = apply1(f, cmd_receive("orders", T0 + 31000, 10, -1));
    assert_int_equal(r.n_msgs, 10);
    assert_int_equal(r.msgs[0].receive_count, 2);
    kyu_result_clear(&r);
}

/* The never-received messages are held in chunks (sm_index.c): many chunks' worth, sent
 * and received interleaved, come back each once, in the order they were sent, also after a
 * restart rebuilt the index. */
static void test_a_long_queue_is_received_once_in_send_order(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, cmd_create("orders", 30)));
    int sent = 0, got = 0;
    char body[16];
    for (int round = 0; round < 60; round++) {
        if (round == 40)
            fixture_reopen(f);
        for (int i = 0; i < 150; i++) {
            snprintf(body, sizeof body, "%d", sent++);
            ok(apply1(f, cmd_send("orders", T0 + (uint64_t)round, body)));
        }
        for (int i = 0; i < (round % 3 ? 5 : 12); i++) {
            kyu_result_t r = apply1(f, cmd_receive("orders", T0 + (uint64_t)round, 10, -1));
            assert_int_equal(r.code, KYU_OK);
            for (size_t j = 0; j < r.n_msgs; j++) {
                snprintf(body, sizeof body, "%d", got++);
                assert_int_equal(r.body_lens[j], strlen(body));
                assert_memory_equal(r.bodies[j], body, strlen(body));
            }
            kyu_result_clear(&r);
        }
    }
    while (got < sent) {
        kyu_result_t r = apply1(f, cmd_receive("orders", T0 + 100, 10, -1));
        assert_true(r.n_msgs > 0);
        for (size_t j = 0; j < r.n_msgs; j++) {
            snprintf(body, sizeof body, "%d", got++);
            assert_memory_equal(r.bodies[j], body, strlen(body));
        }
        kyu_result_clear(&r);
    }
    kyu_result_t r = apply1(f, cmd_receive("orders", T0 + 100, 10, -1));
    assert_int_equal(r.n_msgs, 0);
    kyu_result_clear(&r);
    attrs(f, "orders", T0 + 100, 0, sent);
}

static void test_commands_of_one_entry_see_each_other(void **state)
{
    fixture_t *f = *state;
    kyu_command_t cmds[] = {
        cmd_create("orders", -1),          cmd_send("orders", T0, "a"),
        cmd_send("orders", T0, "b"),       cmd_receive("orders", T0, 1, -1),
        cmd_receive("orders", T0, 10, -1), cmd_receive("orders", T0, 10, -1),
    };
    kyu_result_t r[6];
    apply_entry(f, cmds, 6, r);
    for (int i = 0; i < 6; i++)
        assert_int_equal(r[i].code, KYU_OK);
    assert_int_equal(r[3].n_msgs, 1);
    assert_int_equal(r[4].n_msgs, 1);
    assert_int_equal(r[5].n_msgs, 0);
    assert_string_not_equal(r[3].msgs[0].message_id, r[4].msgs[0].message_id);
    for (int i = 0; i < 6; i++)
        kyu_result_clear(&r[i]);
    attrs(f, "orders", T0, 0, 2);
}

/* A receive that follows, in the same entry, a command that leased a message further out
 * than now (the entry's own lease key lies past the scan's bound and is still returned by
 * the batch's iterator) must not move the scan position past leases of other messages that
 * end sooner: those messages must become receivable when their leases end, on this node as
 * on a node that just restarted (kyu-sim-kyu found replicas answering such a receive
 * differently). */
static void test_lease_ending_before_one_set_earlier_in_the_entry_is_received(void **state)
{
    fixture_t *f = *state;
    char hb[KYU_HANDLE_MAX + 1];
    ok(apply1(f, cmd_create("orders", 30)));
    ok(apply1(f, cmd_send("orders", T0, "b")));
    receive_one(f, "orders", T0, 5, hb, "b", 1); /* b leased until T0 + 5 s */
    ok(apply1(f, cmd_send("orders", T0 + 1, "c")));
    /* One entry: c leased until T0 + 1 + 60 s, then a receive that finds nothing. */
    kyu_command_t cmds[] = {cmd_receive("orders", T0 + 1, 1, 60),
                            cmd_receive("orders", T0 + 1, 1, 60)};
    kyu_result_t r[2];
    apply_entry(f, cmds, 2, r);
    assert_int_equal(r[0].n_msgs, 1);
    assert_int_equal(r[1].n_msgs, 0);
    kyu_result_clear(&r[0]);
    kyu_result_clear(&r[1]);
    receive_one(f, "orders", T0 + 6000, -1, hb, "b", 2); /* b's lease ended at T0 + 5 s */
}

static void test_restart_keeps_messages_leases_and_applied_index(void **state)
{
    fixture_t *f = *state;
    char h[KYU_HANDLE_MAX + 1];
    ok(apply1(f, cmd_create("orders", 30)));
    ok(apply1(f, cmd_send("orders", T0, "a")));
    ok(apply1(f, cmd_send("orders", T0, "b")));
    receive_one(f, "orders", T0, -1, h, "a", 1);
    uint64_t applied = kyu_sm_applied_index(f->sm);
    fixture_reopen(f);
    assert_int_equal(kyu_sm_applied_index(f->sm), applied);
    assert_int_equal(kyu_sm_last_now(f->sm), T0);
    attrs(f, "orders", T0 + 1, 1, 1);
    char h2[KYU_HANDLE_MAX + 1];
    receive_one(f, "orders", T0 + 1, -1, h2, "b", 1);
    kyu_result_t r = apply1(f, cmd_delete("orders", T0 + 2, h));
    assert_int_equal(r.results[0], KYU_OK);
    kyu_result_clear(&r);
}

static void test_deleted_queue_stays_deleted_after_restart(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, cmd_create("orders", -1)));
    ok(apply1(f, cmd_send("orders", T0, "a")));
    ok(apply1(f, cmd_delete_queue("orders")));
    fixture_reopen(f);
    assert_false(kyu_sm_queue_exists(f->sm, "orders"));
}

static void test_corrupt_entry_is_an_error(void **state)
{
    fixture_t *f = *state;
    const char junk[] = "\x96\x01\x02";
    kyu_err_t err;
    size_t n = 0;
    kyu_result_t r[1];
    assert_int_equal(kyu_sm_apply(f->sm, ++f->index, junk, sizeof junk - 1, r, 1, &n, &err),
                     KYU_ERR_MALFORMED);
}

static void test_handle_format_round_trips(void **state)
{
    (void)state;
    char h[KYU_HANDLE_LEN + 1];
    uint64_t seq = 0;
    uint32_t gen = 0;
    kyu_handle_format(h, key1, 5, 0x0123456789abcdefULL, 0xfedcba98U);
    assert_int_equal(strlen(h), KYU_HANDLE_LEN);
    assert_true(kyu_handle_verify(h, key1, 5, &seq, &gen));
    assert_int_equal(seq, 0x0123456789abcdefULL);
    assert_int_equal(gen, 0xfedcba98U);
    assert_true(kyu_handle_parse(h, &seq, &gen));
    assert_int_equal(seq, 0x0123456789abcdefULL);
}

static void test_a_handle_verifies_only_under_its_key_and_queue(void **state)
{
    (void)state;
    char h[KYU_HANDLE_LEN + 1];
    uint64_t seq = 0;
    uint32_t gen = 0;
    kyu_handle_format(h, key1, 5, 7, 1);
    assert_false(kyu_handle_verify(h, key2, 5, &seq, &gen));
    assert_false(kyu_handle_verify(h, key1, 6, &seq, &gen));
    h[KYU_HANDLE_LEN - 1] = 'G';
    assert_false(kyu_handle_verify(h, key1, 5, &seq, &gen));
}

/* The key is replicated state: the first one applied stays (a second leader's proposal
 * changes nothing) and survives a restart, so handles given out stay valid. */
static void test_the_first_handle_key_applied_stays_across_restarts(void **state)
{
    fixture_t *f = *state;
    char h[KYU_HANDLE_MAX + 1];
    assert_false(kyu_sm_has_handle_key(f->sm));
    ok(apply1(f, cmd_handle_key(key1)));
    assert_true(kyu_sm_has_handle_key(f->sm));
    ok(apply1(f, cmd_create("orders", -1)));
    ok(apply1(f, cmd_send("orders", T0, "a")));
    receive_one(f, "orders", T0, -1, h, "a", 1);
    uint64_t seq = 0;
    uint32_t gen = 0;
    assert_true(kyu_handle_verify(h, key1, 1, &seq, &gen));
    ok(apply1(f, cmd_handle_key(key2)));
    fixture_reopen(f);
    assert_true(kyu_sm_has_handle_key(f->sm));
    kyu_result_t r = apply1(f, cmd_delete("orders", T0 + 1, h));
    assert_int_equal(r.results[0], KYU_OK);
    kyu_result_clear(&r);
}

static void test_a_handle_key_command_round_trips_through_the_log_encoding(void **state)
{
    (void)state;
    kyu_command_t c = cmd_handle_key(key1), d;
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    kyu_command_encode(&c, &b);
    size_t off = 0;
    kyu_err_t err;
    assert_int_equal(kyu_command_decode(b.data, b.size, &off, &d, &err), KYU_OK);
    assert_int_equal(d.type, KYU_CMD_SET_HANDLE_KEY);
    assert_memory_equal(d.key, key1, KYU_HANDLE_KEY_LEN);
    msgpack_sbuffer_destroy(&b);
}

/* The write-behind buffer (sm_buffer.c) under churn: thousands of records written, many
 * deleted again before a flush (tombstones in its hash), its table grown, emptied and reused
 * from one write to the next, with a restart between: every message is where it should be. */
static void test_the_write_buffer_keeps_thousands_of_writes_and_deletes_across_flushes(void **state)
{
    fixture_t *f = *state;
    enum { ROUNDS = 3, PER_ROUND = 3000, KEPT = 1000 };
    ok(apply1(f, cmd_create("q", 600)));
    uint64_t now = T0;
    for (int round = 0; round < ROUNDS; round++) {
        for (int i = 0; i < PER_ROUND; i++) {
            char body[32];
            snprintf(body, sizeof body, "m%d-%d", round, i);
            ok(apply1(f, cmd_send("q", now, body)));
        }
        int leased = 0;
        while (leased < PER_ROUND) { /* bounded: every receive leases 10 */
            kyu_result_t r = apply1(f, cmd_receive("q", now, 10, -1));
            assert_int_equal(r.n_msgs, 10);
            for (size_t j = 0; j < r.n_msgs; j++, leased++)
                if (leased >= KEPT)
                    ok(apply1(f, cmd_delete("q", now, r.msgs[j].handle)));
            kyu_result_clear(&r);
        }
        kyu_err_t err;
        assert_int_equal(kyu_sm_flush(f->sm, &err), KYU_OK);
        attrs(f, "q", now, 0, (int64_t)(round + 1) * KEPT);
        now += 1000;
    }
    fixture_reopen(f);
    now = T0 + 600 * 1000 + ROUNDS * 1000; /* every lease has run out */
    attrs(f, "q", now, ROUNDS * KEPT, 0);
    char *seen = calloc(ROUNDS * KEPT, 1);
    assert_non_null(seen);
    for (int got = 0; got < ROUNDS * KEPT;) {
        kyu_result_t r = apply1(f, cmd_receive("q", now, 10, -1));
        assert_int_equal(r.n_msgs, 10);
        for (size_t j = 0; j < r.n_msgs; j++, got++) {
            int round = -1, i = -1;
            char body[32] = "";
            memcpy(body, r.bodies[j], r.body_lens[j] < 31 ? r.body_lens[j] : 31);
            assert_int_equal(sscanf(body, "m%d-%d", &round, &i), 2);
            assert_true(round >= 0 && round < ROUNDS && i >= 0 && i < KEPT);
            assert_false(seen[round * KEPT + i]); /* each kept message once */
            seen[round * KEPT + i] = 1;
        }
        kyu_result_clear(&r);
    }
    free(seen);
    attrs(f, "q", now, 0, ROUNDS * KEPT);
}

#define T(name) cmocka_unit_test_setup_teardown(name, fixture_setup, fixture_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_create_queue_is_listed_with_default_visibility),
        T(test_create_existing_queue_with_same_attributes_succeeds),
        T(test_create_existing_queue_with_other_attributes_is_refused),
        T(test_delete_unknown_queue_is_no_such_queue),
        T(test_send_to_unknown_queue_is_no_such_queue),
        T(test_deleted_queue_recreated_is_empty),
        T(test_send_returns_the_commands_message_id),
        T(test_receive_returns_body_id_and_sent_time),
        T(test_receive_skips_leased_messages),
        T(test_receive_takes_at_most_max),
        T(test_expired_lease_redelivers_with_higher_receive_count),
        T(test_per_request_visibility_timeout_overrides_queue),
        T(test_visibility_timeout_zero_leaves_message_visible),
        T(test_delete_with_current_handle_removes_message),
        T(test_delete_with_stale_handle_is_refused_and_keeps_message),
        T(test_delete_after_lease_expired_but_not_replaced_succeeds),
        T(test_second_delete_is_receipt_invalid),
        T(test_handle_of_another_queue_is_receipt_invalid),
        T(test_forged_and_malformed_handles_are_receipt_invalid),
        T(test_a_handle_forged_by_counting_is_receipt_invalid),
        T(test_an_altered_or_truncated_handle_is_receipt_invalid),
        T(test_change_visibility_extends_the_lease),
        T(test_change_visibility_zero_makes_message_visible),
        T(test_change_visibility_after_lease_expired_is_stale),
        T(test_change_visibility_batch_takes_a_timeout_per_entry),
        T(test_message_returned_below_the_scan_position_is_received),
        T(test_many_received_and_deleted_messages_leave_the_rest_receivable),
        T(test_a_long_queue_is_received_once_in_send_order),
        T(test_commands_of_one_entry_see_each_other),
        T(test_lease_ending_before_one_set_earlier_in_the_entry_is_received),
        T(test_restart_keeps_messages_leases_and_applied_index),
        T(test_deleted_queue_stays_deleted_after_restart),
        T(test_corrupt_entry_is_an_error),
        cmocka_unit_test(test_handle_format_round_trips),
        cmocka_unit_test(test_a_handle_verifies_only_under_its_key_and_queue),
        cmocka_unit_test(test_a_handle_key_command_round_trips_through_the_log_encoding),
        T(test_the_first_handle_key_applied_stays_across_restarts),
        T(test_the_write_buffer_keeps_thousands_of_writes_and_deletes_across_flushes),
    };
    return cmocka_run_group_tests_name("state machine", tests, NULL, NULL);
}
