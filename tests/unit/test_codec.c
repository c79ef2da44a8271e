/* The wire codec: requests and replies round-trip, and every kind of bad header is refused
 * with the right code (proto/PROTOCOL.md). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "protocol.h"

/* Packs a request header from a msgpack builder callback. */
typedef void (*build_fn)(msgpack_packer *pk);

static void str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str(pk, strlen(s));
    msgpack_pack_str_body(pk, s, strlen(s));
}

static kyu_code_t decode_built(build_fn build, size_t n_bodies, kyu_request_t *req, kyu_err_t *err)
{
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
    build(&pk);
    kyu_code_t rc = kyu_request_decode(b.data, b.size, n_bodies, req, err);
    msgpack_sbuffer_destroy(&b);
    return rc;
}

static void expect(build_fn build, size_t n_bodies, kyu_code_t code)
{
    kyu_request_t req;
    kyu_err_t err;
    kyu_err_clear(&err);
    kyu_code_t rc = decode_built(build, n_bodies, &req, &err);
    if (rc != code)
        fail_msg("expected %s, got %s (%s)", kyu_code_name(code), kyu_code_name(rc), err.msg);
}

static void test_request_round_trips(void **state)
{
    (void)state;
    kyu_request_t in, out;
    memset(&in, 0, sizeof in);
    in.op = KYU_OP_DELETE;
    in.id = UINT64_MAX;
    in.fields = KYU_F_QUEUE | KYU_F_HANDLES;
    strcpy(in.queue, "orders-1_x");
    in.n_handles = 2;
    strcpy(in.handles[0], "abc");
    strcpy(in.handles[1], "def");
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    kyu_request_encode(&in, &b);
    kyu_err_t err;
    assert_int_equal(kyu_request_decode(b.data, b.size, 0, &out, &err), KYU_OK);
    msgpack_sbuffer_destroy(&b);
    assert_int_equal(out.op, KYU_OP_DELETE);
    assert_true(out.id == UINT64_MAX);
    assert_string_equal(out.queue, "orders-1_x");
    assert_int_equal(out.n_handles, 2);
    assert_string_equal(out.handles[1], "def");
}

/* SET_QUEUE_ATTRIBUTES carries vt and mms; other ops do not take mms. */
static void test_queue_attribute_requests_round_trip(void **state)
{
    (void)state;
    kyu_request_t in, out;
    memset(&in, 0, sizeof in);
    in.op = KYU_OP_SET_QUEUE_ATTRIBUTES;
    in.id = 3;
    in.fields = KYU_F_QUEUE | KYU_F_VT | KYU_F_MMS | KYU_F_DELAY;
    in.delay = 9;
    strcpy(in.queue, "q");
    in.vt = 77;
    in.max_size = 4096;
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    kyu_request_encode(&in, &b);
    kyu_err_t err;
    assert_int_equal(kyu_request_decode(b.data, b.size, 0, &out, &err), KYU_OK);
    assert_int_equal(out.op, KYU_OP_SET_QUEUE_ATTRIBUTES);
    assert_int_equal(out.vt, 77);
    assert_int_equal(out.max_size, 4096);
    assert_int_equal(out.delay, 9);
    assert_int_equal(out.fields, KYU_F_QUEUE | KYU_F_VT | KYU_F_MMS | KYU_F_DELAY);
    msgpack_sbuffer_destroy(&b);
    in.op = KYU_OP_SEND;
    msgpack_sbuffer_init(&b);
    kyu_request_encode(&in, &b);
    assert_int_equal(kyu_request_decode(b.data, b.size, 1, &out, &err), KYU_ERR_MALFORMED);
    msgpack_sbuffer_destroy(&b);
}

/* RECEIVE's wait ("wt", long polling): 0..20 s, round trips; over 20, negative or not an
 * integer is INVALID_ARGUMENT; other ops do not take it. */
static void test_receive_wait_round_trips_and_is_checked(void **state)
{
    (void)state;
    kyu_request_t in, out;
    memset(&in, 0, sizeof in);
    in.op = KYU_OP_RECEIVE;
    in.id = 5;
    in.fields = KYU_F_QUEUE | KYU_F_WAIT;
    strcpy(in.queue, "q");
    kyu_err_t err;
    for (uint32_t wt = 0; wt <= KYU_WAIT_MAX + 1; wt += 10) {
        in.wait = wt > KYU_WAIT_MAX ? KYU_WAIT_MAX + 1 : wt;
        msgpack_sbuffer b;
        msgpack_sbuffer_init(&b);
        kyu_request_encode(&in, &b);
        kyu_code_t rc = kyu_request_decode(b.data, b.size, 0, &out, &err);
        msgpack_sbuffer_destroy(&b);
        if (in.wait > KYU_WAIT_MAX) {
            assert_int_equal(rc, KYU_ERR_INVALID_ARGUMENT);
            assert_non_null(strstr(err.msg, "wait time (wt)"));
        } else {
            assert_int_equal(rc, KYU_OK);
            assert_int_equal(out.fields, KYU_F_QUEUE | KYU_F_WAIT);
            assert_int_equal(out.wait, in.wait);
        }
    }
    in.op = KYU_OP_SEND;
    in.wait = 1;
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    kyu_request_encode(&in, &b);
    assert_int_equal(kyu_request_decode(b.data, b.size, 1, &out, &err), KYU_ERR_MALFORMED);
    msgpack_sbuffer_destroy(&b);
}

static void b_ok_send(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 3);
    str(pk, "op"), msgpack_pack_int(pk, KYU_OP_SEND);
    str(pk, "id"), msgpack_pack_int(pk, 7);
    str(pk, "q"), str(pk, "orders");
}

static void test_send_needs_one_to_ten_bodies(void **state)
{
    (void)state;
    expect(b_ok_send, 1, KYU_OK);
    expect(b_ok_send, 10, KYU_OK);
    expect(b_ok_send, 0, KYU_ERR_MALFORMED);
    expect(b_ok_send, 11, KYU_ERR_MALFORMED);
}

static void b_not_map(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 2);
    msgpack_pack_int(pk, 1);
    msgpack_pack_int(pk, 2);
}
static void b_no_id(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 1);
    str(pk, "op"), msgpack_pack_int(pk, KYU_OP_LIST_QUEUES);
}
static void b_negative_id(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 2);
    str(pk, "op"), msgpack_pack_int(pk, KYU_OP_LIST_QUEUES);
    str(pk, "id"), msgpack_pack_int64(pk, INT64_MIN);
}
static void b_unknown_op(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 2);
    str(pk, "op"), msgpack_pack_uint64(pk, UINT64_MAX);
    str(pk, "id"), msgpack_pack_int(pk, 1);
}
static void b_unknown_field(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 3);
    str(pk, "op"), msgpack_pack_int(pk, KYU_OP_LIST_QUEUES);
    str(pk, "id"), msgpack_pack_int(pk, 1);
    str(pk, "zzz"), msgpack_pack_int(pk, 1);
}
static void b_field_not_taken(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 3);
    str(pk, "op"), msgpack_pack_int(pk, KYU_OP_LIST_QUEUES);
    str(pk, "id"), msgpack_pack_int(pk, 1);
    str(pk, "max"), msgpack_pack_int(pk, 1);
}
static void b_duplicate_field(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 4);
    str(pk, "op"), msgpack_pack_int(pk, KYU_OP_DELETE_QUEUE);
    str(pk, "id"), msgpack_pack_int(pk, 1);
    str(pk, "q"), str(pk, "a");
    str(pk, "q"), str(pk, "b");
}
static void b_missing_queue(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 2);
    str(pk, "op"), msgpack_pack_int(pk, KYU_OP_DELETE_QUEUE);
    str(pk, "id"), msgpack_pack_int(pk, 1);
}

#define QUEUE_WITH(name, value)                                                                    \
    static void name(msgpack_packer *pk)                                                           \
    {                                                                                              \
        msgpack_pack_map(pk, 3);                                                                   \
        str(pk, "op"), msgpack_pack_int(pk, KYU_OP_DELETE_QUEUE);                                  \
        str(pk, "id"), msgpack_pack_int(pk, 1);                                                    \
        str(pk, "q");                                                                              \
        value;                                                                                     \
    }
QUEUE_WITH(b_name_space, str(pk, "a b"))
QUEUE_WITH(b_name_empty, str(pk, ""))
QUEUE_WITH(b_name_81,
           str(pk,
               "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"))
QUEUE_WITH(b_name_dots, str(pk, "../x"))
QUEUE_WITH(b_name_nul, (msgpack_pack_str(pk, 3), msgpack_pack_str_body(pk, "a\0b", 3)))
QUEUE_WITH(b_name_utf8, str(pk, "caf\xc3\xa9"))
QUEUE_WITH(b_name_int, msgpack_pack_int(pk, 5))
QUEUE_WITH(b_name_80,
           str(pk,
               "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"))

#define RECEIVE_WITH(name, key, value)                                                             \
    static void name(msgpack_packer *pk)                                                           \
    {                                                                                              \
        msgpack_pack_map(pk, 4);                                                                   \
        str(pk, "op"), msgpack_pack_int(pk, KYU_OP_RECEIVE);                                       \
        str(pk, "id"), msgpack_pack_int(pk, 1);                                                    \
        str(pk, "q"), str(pk, "orders");                                                           \
        str(pk, key);                                                                              \
        value;                                                                                     \
    }
RECEIVE_WITH(b_max_0, "max", msgpack_pack_int(pk, 0))
RECEIVE_WITH(b_max_11, "max", msgpack_pack_int(pk, 11))
RECEIVE_WITH(b_max_10, "max", msgpack_pack_int(pk, 10))
RECEIVE_WITH(b_max_neg, "max", msgpack_pack_int64(pk, INT64_MIN))
RECEIVE_WITH(b_max_str, "max", str(pk, "3"))
RECEIVE_WITH(b_max_float, "max", msgpack_pack_double(pk, 3.0))
RECEIVE_WITH(b_vt_43201, "vt", msgpack_pack_int(pk, 43201))
RECEIVE_WITH(b_vt_huge, "vt", msgpack_pack_uint64(pk, UINT64_MAX))
RECEIVE_WITH(b_vt_43200, "vt", msgpack_pack_int(pk, 43200))

static void test_shape_errors_are_malformed(void **state)
{
    (void)state;
    expect(b_not_map, 0, KYU_ERR_MALFORMED);
    expect(b_no_id, 0, KYU_ERR_MALFORMED);
    expect(b_negative_id, 0, KYU_ERR_MALFORMED);
    expect(b_unknown_field, 0, KYU_ERR_MALFORMED);
    expect(b_field_not_taken, 0, KYU_ERR_MALFORMED);
    expect(b_duplicate_field, 0, KYU_ERR_MALFORMED);
}

static void test_unknown_op_is_refused_with_the_request_id(void **state)
{
    (void)state;
    kyu_request_t req;
    kyu_err_t err;
    assert_int_equal(decode_built(b_unknown_op, 0, &req, &err), KYU_ERR_UNKNOWN_OP);
    assert_true(req.has_id);
    assert_int_equal(req.id, 1);
}

static void test_missing_required_field_is_invalid_argument(void **state)
{
    (void)state;
    expect(b_missing_queue, 0, KYU_ERR_INVALID_ARGUMENT);
}

static void test_queue_names_follow_sqs_rules(void **state)
{
    (void)state;
    expect(b_name_80, 0, KYU_OK);
    expect(b_name_space, 0, KYU_ERR_INVALID_NAME);
    expect(b_name_empty, 0, KYU_ERR_INVALID_NAME);
    expect(b_name_81, 0, KYU_ERR_INVALID_NAME);
    expect(b_name_dots, 0, KYU_ERR_INVALID_NAME);
    expect(b_name_nul, 0, KYU_ERR_INVALID_NAME);
    expect(b_name_utf8, 0, KYU_ERR_INVALID_NAME);
    expect(b_name_int, 0, KYU_ERR_INVALID_ARGUMENT);
}

static void test_numbers_out_of_range_are_invalid_argument(void **state)
{
    (void)state;
    expect(b_max_10, 0, KYU_OK);
    expect(b_vt_43200, 0, KYU_OK);
    expect(b_max_0, 0, KYU_ERR_INVALID_ARGUMENT);
    expect(b_max_11, 0, KYU_ERR_INVALID_ARGUMENT);
    expect(b_max_neg, 0, KYU_ERR_INVALID_ARGUMENT);
    expect(b_max_str, 0, KYU_ERR_INVALID_ARGUMENT);
    expect(b_max_float, 0, KYU_ERR_INVALID_ARGUMENT);
    expect(b_vt_43201, 0, KYU_ERR_INVALID_ARGUMENT);
    expect(b_vt_huge, 0, KYU_ERR_INVALID_ARGUMENT);
}

static void test_huge_declared_containers_are_refused_without_allocating(void **state)
{
    (void)state;
    /* Each declares far more elements than bytes follow; msgpack-c alone would allocate
     * gigabytes for them. */
    const char *inputs[] = {"\xdf\xff\xff\xff\xff", "\xdd\xff\xff\xff\xff", "\xdb\xff\xff\xff\xff",
                            "\xc6\xff\xff\xff\xff\x00", "\x81\xa1q\xdd\x7f\xff\xff\xff"};
    const size_t lens[] = {5, 5, 5, 6, 8};
    for (size_t i = 0; i < 5; i++) {
        kyu_request_t req;
        kyu_err_t err;
        assert_int_equal(kyu_request_decode(inputs[i], lens[i], 0, &req, &err), KYU_ERR_MALFORMED);
    }
}

static void test_deep_nesting_and_trailing_bytes_are_refused(void **state)
{
    (void)state;
    char deep[64];
    memset(deep, 0x91, sizeof deep); /* arrays of one array of one ... */
    deep[63] = 0x01;
    kyu_request_t req;
    kyu_err_t err;
    assert_int_equal(kyu_request_decode(deep, sizeof deep, 0, &req, &err), KYU_ERR_MALFORMED);
    const char trailing[] = "\x80\x01";
    assert_int_equal(kyu_request_decode(trailing, 2, 0, &req, &err), KYU_ERR_MALFORMED);
    assert_int_equal(kyu_request_decode("", 0, 0, &req, &err), KYU_ERR_MALFORMED);
    assert_int_equal(kyu_request_decode("\xc1", 1, 0, &req, &err), KYU_ERR_MALFORMED);
}

static void test_every_truncation_of_a_valid_header_is_refused(void **state)
{
    (void)state;
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
    b_vt_43200(&pk);
    for (size_t n = 0; n < b.size; n++) {
        kyu_request_t req;
        kyu_err_t err;
        assert_int_equal(kyu_request_decode(b.data, n, 0, &req, &err), KYU_ERR_MALFORMED);
    }
    msgpack_sbuffer_destroy(&b);
}

static void test_cluster_status_reply_round_trips(void **state)
{
    (void)state;
    kyu_reply_t in, out;
    kyu_reply_init(&in);
    kyu_reply_init(&out);
    in.id = 7;
    in.has_node = true;
    in.node = (kyu_node_status_t){
        .id = 3, .term = 9, .commit_index = 100, .applied_index = 99, .leader = 2};
    strcpy(in.node.raft_address, "tcp://h3:7721");
    strcpy(in.node.endpoint, "tcp://h3:7720");
    strcpy(in.node.role, "follower");
    strcpy(in.node.member, "learner");
    in.node.n_voters = 3;
    in.node.voters[0] = 1;
    in.node.voters[1] = 2;
    in.node.voters[2] = INT64_MAX;
    in.node.n_learners = 1;
    in.node.learners[0] = 3;
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    kyu_reply_encode(&in, &b);
    kyu_err_t err;
    assert_int_equal(kyu_reply_decode(b.data, b.size, &out, &err), KYU_OK);
    assert_true(out.has_node);
    assert_memory_equal(&in.node, &out.node, sizeof in.node);
    kyu_reply_reset(&out);
    msgpack_sbuffer_destroy(&b);
    /* A read-only node says why (`ro`, only then). */
    strcpy(in.node.read_only, "the disk is almost full");
    msgpack_sbuffer_init(&b);
    kyu_reply_encode(&in, &b);
    kyu_reply_init(&out);
    assert_int_equal(kyu_reply_decode(b.data, b.size, &out, &err), KYU_OK);
    assert_string_equal(out.node.read_only, "the disk is almost full");
    assert_memory_equal(&in.node, &out.node, sizeof in.node);
    kyu_reply_reset(&out);
    msgpack_sbuffer_destroy(&b);
    /* The request has no fields; any field is refused. */
    kyu_request_t req = {.op = KYU_OP_CLUSTER_STATUS, .id = 1, .has_id = true};
    msgpack_sbuffer_init(&b);
    kyu_request_encode(&req, &b);
    assert_int_equal(kyu_request_decode(b.data, b.size, 0, &req, &err), KYU_OK);
    assert_int_equal(req.op, KYU_OP_CLUSTER_STATUS);
    msgpack_sbuffer_destroy(&b);
}

static void test_request_key_round_trips_on_writes_only(void **state)
{
    (void)state;
    kyu_request_t req = {.op = KYU_OP_SEND,
                         .id = 1,
                         .fields = KYU_F_QUEUE | KYU_F_RQ,
                         .rq_client = UINT64_MAX,
                         .rq_key = 9};
    strcpy(req.queue, "orders");
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    kyu_request_encode(&req, &b);
    kyu_request_t out;
    kyu_err_t err;
    assert_int_equal(kyu_request_decode(b.data, b.size, 1, &out, &err), KYU_OK);
    assert_true(out.rq_client == UINT64_MAX);
    assert_int_equal(out.rq_key, 9);
    msgpack_sbuffer_clear(&b);
    req.op = KYU_OP_RECEIVE;
    kyu_request_encode(&req, &b);
    assert_int_equal(kyu_request_decode(b.data, b.size, 0, &out, &err), KYU_OK);
    assert_int_equal(out.rq_key, 9);
    msgpack_sbuffer_clear(&b);
    req.op = KYU_OP_CREATE_QUEUE; /* idempotent by itself: no key */
    kyu_request_encode(&req, &b);
    assert_int_equal(kyu_request_decode(b.data, b.size, 0, &out, &err), KYU_ERR_MALFORMED);
    msgpack_sbuffer_clear(&b);
    req.op = KYU_OP_SEND;
    req.rq_key = 0;
    kyu_request_encode(&req, &b);
    assert_int_equal(kyu_request_decode(b.data, b.size, 1, &out, &err), KYU_ERR_INVALID_ARGUMENT);
    msgpack_sbuffer_destroy(&b);
}

static void test_reply_round_trips(void **state)
{
    (void)state;
    kyu_reply_t in, out;
    kyu_reply_init(&in);
    kyu_reply_init(&out);
    in.id = 42;
    in.n_msgs = 2;
    strcpy(in.msgs[1].message_id, "m2");
    strcpy(in.msgs[1].handle, "h2");
    in.msgs[1].receive_count = 3;
    in.msgs[1].sent_ms = 1234567890123ULL;
    in.has_attrs = true;
    in.attrs.visible = 5;
    in.attrs.not_visible = 6;
    in.attrs.visibility_timeout = 30;
    in.attrs.max_size = 2048;
    in.attrs.delay = 900;
    in.attrs.delayed = 7;
    in.attrs.modified_ms = 1234567890999LL;
    in.queues = calloc(2, sizeof in.queues[0]);
    in.n_queues = 2;
    strcpy(in.queues[1], "b");
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    kyu_reply_encode(&in, &b);
    kyu_err_t err;
    assert_int_equal(kyu_reply_decode(b.data, b.size, &out, &err), KYU_OK);
    assert_int_equal(out.id, 42);
    assert_int_equal(out.n_msgs, 2);
    assert_string_equal(out.msgs[1].handle, "h2");
    assert_int_equal(out.msgs[1].receive_count, 3);
    assert_true(out.msgs[1].sent_ms == 1234567890123ULL);
    assert_int_equal(out.attrs.not_visible, 6);
    assert_int_equal(out.attrs.max_size, 2048);
    assert_int_equal(out.attrs.delay, 900);
    assert_int_equal(out.attrs.delayed, 7);
    assert_true(out.attrs.modified_ms == 1234567890999LL);
    assert_int_equal(out.n_queues, 2);
    assert_string_equal(out.queues[1], "b");
    msgpack_sbuffer_destroy(&b);
    kyu_reply_reset(&in);
    kyu_reply_reset(&out);
}

static void test_error_reply_carries_code_text_and_leader(void **state)
{
    (void)state;
    kyu_reply_t in, out;
    kyu_reply_init(&in);
    kyu_reply_init(&out);
    in.id = 9;
    in.status = KYU_ERR_NOT_LEADER;
    strcpy(in.error, "not the leader");
    strcpy(in.leader, "tcp://127.0.0.1:7702");
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    kyu_reply_encode(&in, &b);
    kyu_err_t err;
    assert_int_equal(kyu_reply_decode(b.data, b.size, &out, &err), KYU_OK);
    assert_int_equal(out.status, KYU_ERR_NOT_LEADER);
    assert_string_equal(out.error, "not the leader");
    assert_string_equal(out.leader, "tcp://127.0.0.1:7702");
    msgpack_sbuffer_destroy(&b);
    kyu_reply_reset(&out);
}

static kyu_code_t round_trip_admin(const kyu_request_t *req, kyu_request_t *out)
{
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    kyu_request_encode(req, &b);
    kyu_err_t err;
    kyu_code_t rc = kyu_request_decode(b.data, b.size, 0, out, &err);
    msgpack_sbuffer_destroy(&b);
    return rc;
}

static void test_cluster_add_and_remove_requests_round_trip_and_are_checked(void **state)
{
    (void)state;
    kyu_request_t in = {.op = KYU_OP_CLUSTER_ADD,
                        .id = 5,
                        .to = 4,
                        .fields = KYU_F_TO | KYU_F_RAFT | KYU_F_EP},
                  out;
    strcpy(in.raft, "10.0.0.4:7701");
    strcpy(in.ep, "tcp://10.0.0.4:7700");
    assert_int_equal(round_trip_admin(&in, &out), KYU_OK);
    assert_int_equal(out.op, KYU_OP_CLUSTER_ADD);
    assert_int_equal(out.to, 4);
    assert_string_equal(out.raft, "10.0.0.4:7701");
    assert_string_equal(out.ep, "tcp://10.0.0.4:7700");
    /* every field is required */
    in.fields = KYU_F_TO | KYU_F_RAFT;
    assert_int_equal(round_trip_admin(&in, &out), KYU_ERR_INVALID_ARGUMENT);
    /* empty addresses and id 0 are refused */
    in.fields = KYU_F_TO | KYU_F_RAFT | KYU_F_EP;
    in.ep[0] = '\0';
    assert_int_equal(round_trip_admin(&in, &out), KYU_ERR_INVALID_ARGUMENT);
    strcpy(in.ep, "tcp://10.0.0.4:7700");
    in.to = 0;
    assert_int_equal(round_trip_admin(&in, &out), KYU_ERR_INVALID_ARGUMENT);
    /* an address over the endpoint bound */
    in.to = 4;
    memset(in.raft, 'h', KYU_ENDPOINT_MAX - 1);
    in.raft[KYU_ENDPOINT_MAX - 1] = '\0';
    assert_int_equal(round_trip_admin(&in, &out), KYU_OK);
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 5);
    str(&pk, "op");
    msgpack_pack_uint32(&pk, KYU_OP_CLUSTER_ADD);
    str(&pk, "id");
    msgpack_pack_uint32(&pk, 1);
    str(&pk, "to");
    msgpack_pack_uint32(&pk, 4);
    char big[KYU_ENDPOINT_MAX + 1];
    memset(big, 'h', KYU_ENDPOINT_MAX);
    big[KYU_ENDPOINT_MAX] = '\0';
    str(&pk, "raft");
    str(&pk, big);
    str(&pk, "ep");
    str(&pk, "tcp://h:1");
    kyu_err_t err;
    assert_int_equal(kyu_request_decode(b.data, b.size, 0, &out, &err), KYU_ERR_INVALID_ARGUMENT);
    msgpack_sbuffer_destroy(&b);
    /* remove takes the node only */
    kyu_request_t rm = {.op = KYU_OP_CLUSTER_REMOVE, .id = 6, .to = 3, .fields = KYU_F_TO};
    assert_int_equal(round_trip_admin(&rm, &out), KYU_OK);
    assert_int_equal(out.op, KYU_OP_CLUSTER_REMOVE);
    assert_int_equal(out.to, 3);
    rm.fields = 0;
    assert_int_equal(round_trip_admin(&rm, &out), KYU_ERR_INVALID_ARGUMENT);
    rm.fields = KYU_F_TO | KYU_F_EP;
    strcpy(rm.ep, "tcp://h:1");
    assert_int_equal(round_trip_admin(&rm, &out), KYU_ERR_MALFORMED);
}

/* PEEK takes q, max and from (a position); PURGE_QUEUE q and rq; neither takes the other's
 * fields, and from must be an unsigned integer. */
static void test_peek_and_purge_requests_round_trip_and_are_checked(void **state)
{
    (void)state;
    kyu_request_t in, out;
    memset(&in, 0, sizeof in);
    in.op = KYU_OP_PEEK;
    in.id = 5;
    in.fields = KYU_F_QUEUE | KYU_F_MAX | KYU_F_FROM;
    strcpy(in.queue, "dlq");
    in.max = 10;
    in.from = UINT64_MAX;
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    kyu_request_encode(&in, &b);
    kyu_err_t err;
    assert_int_equal(kyu_request_decode(b.data, b.size, 0, &out, &err), KYU_OK);
    assert_true(out.from == UINT64_MAX);
    assert_int_equal(out.max, 10);
    assert_int_equal(kyu_request_decode(b.data, b.size, 1, &out, &err), KYU_ERR_MALFORMED);
    msgpack_sbuffer_destroy(&b);
    in.op = KYU_OP_PURGE_QUEUE; /* takes no max nor from */
    msgpack_sbuffer_init(&b);
    kyu_request_encode(&in, &b);
    assert_int_equal(kyu_request_decode(b.data, b.size, 0, &out, &err), KYU_ERR_MALFORMED);
    msgpack_sbuffer_destroy(&b);
    in.fields = KYU_F_QUEUE | KYU_F_RQ;
    in.rq_client = in.rq_key = 1;
    msgpack_sbuffer_init(&b);
    kyu_request_encode(&in, &b);
    assert_int_equal(kyu_request_decode(b.data, b.size, 0, &out, &err), KYU_OK);
    assert_int_equal(out.op, KYU_OP_PURGE_QUEUE);
    msgpack_sbuffer_destroy(&b);
    in.op = KYU_OP_PEEK; /* a read: no request key */
    msgpack_sbuffer_init(&b);
    kyu_request_encode(&in, &b);
    assert_int_equal(kyu_request_decode(b.data, b.size, 0, &out, &err), KYU_ERR_MALFORMED);
    msgpack_sbuffer_destroy(&b);
    in.fields = KYU_F_QUEUE | KYU_F_MAX;
    in.max = 11;
    msgpack_sbuffer_init(&b);
    kyu_request_encode(&in, &b);
    assert_int_equal(kyu_request_decode(b.data, b.size, 0, &out, &err), KYU_ERR_INVALID_ARGUMENT);
    msgpack_sbuffer_destroy(&b);
}

/* UNTAG_QUEUE: q and tk (1..50 distinct non-empty keys of valid UTF-8), optionally rq; a
 * header with tags (n < 0: none) given as {key: value}. */
static kyu_code_t decode_tags(uint32_t op, const char *field, const char *const *keys, int n,
                              kyu_request_t *out, kyu_err_t *err)
{
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, n < 0 ? 3 : 4);
    str(&pk, "op"), msgpack_pack_uint32(&pk, op);
    str(&pk, "id"), msgpack_pack_int(&pk, 1);
    str(&pk, "q"), str(&pk, "q");
    if (n >= 0) {
        str(&pk, field);
        if (strcmp(field, "tags") == 0)
            msgpack_pack_map(&pk, (size_t)n);
        else
            msgpack_pack_array(&pk, (size_t)n);
        for (int i = 0; i < n; i++) {
            str(&pk, keys[i]);
            if (strcmp(field, "tags") == 0)
                str(&pk, keys[i]); /* the value: the key again */
        }
    }
    kyu_code_t rc = kyu_request_decode(b.data, b.size, 0, out, err);
    msgpack_sbuffer_destroy(&b);
    return rc;
}

/* Topics: tp, sub and raw round trip (fields above bit 31); a topic name is 1..256 of
 * [A-Za-z0-9_-], a subscription id 36 characters, raw only true; the replies' topics and subs
 * round trip. */
static void test_topic_requests_and_replies_round_trip(void **state)
{
    (void)state;
    kyu_request_t in, out;
    memset(&in, 0, sizeof in);
    in.op = KYU_OP_SUBSCRIBE;
    in.id = 9;
    in.fields = KYU_F_TOPIC | KYU_F_QUEUE | KYU_F_RAW | KYU_F_RQ;
    memset(in.topic, 'T', KYU_TOPIC_NAME_MAX);
    strcpy(in.queue, "q");
    in.rq_client = in.rq_key = 4;
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    kyu_request_encode(&in, &b);
    kyu_err_t err;
    assert_int_equal(kyu_request_decode(b.data, b.size, 0, &out, &err), KYU_OK);
    msgpack_sbuffer_destroy(&b);
    assert_true(out.fields == in.fields);
    assert_string_equal(out.topic, in.topic);
    assert_string_equal(out.queue, "q");

    /* A filter policy: flt says the one body frame is it; fsc its scope (with flt only). */
    in.fields = KYU_F_TOPIC | KYU_F_QUEUE | KYU_F_FILTER | KYU_F_FILTER_SCOPE;
    in.filter_scope = 1;
    msgpack_sbuffer_init(&b);
    kyu_request_encode(&in, &b);
    assert_int_equal(kyu_request_decode(b.data, b.size, 1, &out, &err), KYU_OK);
    assert_true(out.fields == in.fields);
    assert_int_equal(out.filter_scope, 1);
    assert_int_equal(kyu_request_decode(b.data, b.size, 0, &out, &err), KYU_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.msg, "filter policy as its one body frame"));
    msgpack_sbuffer_destroy(&b);
    in.filter_scope = 0;
    msgpack_sbuffer_init(&b);
    kyu_request_encode(&in, &b);
    assert_int_equal(kyu_request_decode(b.data, b.size, 1, &out, &err), KYU_OK);
    assert_int_equal(out.filter_scope, 0);
    msgpack_sbuffer_destroy(&b);
    in.fields = KYU_F_TOPIC | KYU_F_QUEUE | KYU_F_FILTER_SCOPE; /* fsc without flt */
    msgpack_sbuffer_init(&b);
    kyu_request_encode(&in, &b);
    assert_int_equal(kyu_request_decode(b.data, b.size, 0, &out, &err), KYU_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.msg, "give flt"));
    msgpack_sbuffer_destroy(&b);
    in.fields = KYU_F_TOPIC | KYU_F_QUEUE; /* a body frame without flt */
    msgpack_sbuffer_init(&b);
    kyu_request_encode(&in, &b);
    assert_int_equal(kyu_request_decode(b.data, b.size, 1, &out, &err), KYU_ERR_INVALID_ARGUMENT);
    msgpack_sbuffer_destroy(&b);
    in.op = KYU_OP_PUBLISH; /* flt is SUBSCRIBE's */
    in.fields = KYU_F_TOPIC | KYU_F_FILTER;
    msgpack_sbuffer_init(&b);
    kyu_request_encode(&in, &b);
    assert_int_equal(kyu_request_decode(b.data, b.size, 1, &out, &err), KYU_ERR_MALFORMED);
    assert_non_null(strstr(err.msg, "flt (filter policy)"));
    msgpack_sbuffer_destroy(&b);

    in.op = KYU_OP_UNSUBSCRIBE;
    in.fields = KYU_F_SUB_ID;
    strcpy(in.sub_id, "0e1c4a4e-6b1e-4c4e-9a5e-2f7d3b1c9a00");
    msgpack_sbuffer_init(&b);
    kyu_request_encode(&in, &b);
    assert_int_equal(kyu_request_decode(b.data, b.size, 0, &out, &err), KYU_OK);
    msgpack_sbuffer_destroy(&b);
    assert_string_equal(out.sub_id, in.sub_id);

    in.op = KYU_OP_PUBLISH; /* takes no sub, needs tp and one body */
    msgpack_sbuffer_init(&b);
    kyu_request_encode(&in, &b);
    assert_int_equal(kyu_request_decode(b.data, b.size, 1, &out, &err), KYU_ERR_INVALID_ARGUMENT);
    msgpack_sbuffer_destroy(&b);
    in.fields = KYU_F_TOPIC;
    strcpy(in.topic, "t");
    msgpack_sbuffer_init(&b);
    kyu_request_encode(&in, &b);
    assert_int_equal(kyu_request_decode(b.data, b.size, 1, &out, &err), KYU_OK);
    /* two bodies without eid: not a batch */
    assert_int_equal(kyu_request_decode(b.data, b.size, 2, &out, &err), KYU_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.msg, "one body frame"));
    msgpack_sbuffer_destroy(&b);
    /* a batch (PublishBatch): eid, one per body; 11 entries are TooManyEntriesInBatchRequest */
    in.fields = KYU_F_TOPIC | KYU_F_ENTRY_IDS;
    in.n_entries = 2;
    strcpy(in.entry_ids[0], "a");
    strcpy(in.entry_ids[1], "b");
    msgpack_sbuffer_init(&b);
    kyu_request_encode(&in, &b);
    assert_int_equal(kyu_request_decode(b.data, b.size, 2, &out, &err), KYU_OK);
    assert_int_equal(out.n_entries, 2);
    assert_int_equal(kyu_request_decode(b.data, b.size, 3, &out, &err), KYU_ERR_INVALID_ARGUMENT);
    assert_int_equal(kyu_request_decode(b.data, b.size, 11, &out, &err), KYU_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.msg, "TooManyEntriesInBatchRequest"));
    msgpack_sbuffer_destroy(&b);
    strcpy(in.entry_ids[1], "a");
    msgpack_sbuffer_init(&b);
    kyu_request_encode(&in, &b);
    assert_int_equal(kyu_request_decode(b.data, b.size, 2, &out, &err), KYU_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.msg, "BatchEntryIdsNotDistinct"));
    msgpack_sbuffer_destroy(&b);
    in.fields = KYU_F_TOPIC;

    assert_true(kyu_topic_name_valid("a-Z_9", 5));
    assert_false(kyu_topic_name_valid("a.b", 3));
    assert_true(kyu_topic_name_valid("orders.fifo", 11)); /* a FIFO topic's */
    assert_false(kyu_topic_name_valid(".fifo", 5));
    assert_false(kyu_topic_name_valid("a.fifo.fifo", 11));
    assert_false(kyu_topic_name_valid("", 0));
    char big[KYU_TOPIC_NAME_MAX + 2];
    memset(big, 'x', sizeof big);
    assert_true(kyu_topic_name_valid(big, KYU_TOPIC_NAME_MAX));
    assert_false(kyu_topic_name_valid(big, KYU_TOPIC_NAME_MAX + 1));
    /* On the wire: a bad name, a short id, raw false. */
    static const struct {
        const char *field;
        const char *value;
        kyu_code_t code;
    } bad[] = {{"tp", "a/b", KYU_ERR_INVALID_NAME},
               {"sub", "short", KYU_ERR_INVALID_ARGUMENT},
               {"fsc", "headers", KYU_ERR_INVALID_ARGUMENT},
               {"flt", "yes", KYU_ERR_INVALID_ARGUMENT}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        msgpack_sbuffer_init(&b);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 3);
        kyu_mp_pack_str(&pk, "id");
        msgpack_pack_uint64(&pk, 1);
        kyu_mp_pack_str(&pk, "op");
        msgpack_pack_uint64(&pk, KYU_OP_UNSUBSCRIBE);
        kyu_mp_pack_str(&pk, bad[i].field);
        kyu_mp_pack_str(&pk, bad[i].value);
        assert_int_equal(kyu_request_decode(b.data, b.size, 0, &out, &err), bad[i].code);
        msgpack_sbuffer_destroy(&b);
    }
    msgpack_sbuffer_init(&b);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 5);
    kyu_mp_pack_str(&pk, "id");
    msgpack_pack_uint64(&pk, 1);
    kyu_mp_pack_str(&pk, "op");
    msgpack_pack_uint64(&pk, KYU_OP_SUBSCRIBE);
    kyu_mp_pack_str(&pk, "tp");
    kyu_mp_pack_str(&pk, "t");
    kyu_mp_pack_str(&pk, "q");
    kyu_mp_pack_str(&pk, "q");
    kyu_mp_pack_str(&pk, "raw");
    msgpack_pack_false(&pk);
    assert_int_equal(kyu_request_decode(b.data, b.size, 0, &out, &err), KYU_ERR_INVALID_ARGUMENT);
    msgpack_sbuffer_destroy(&b);

    /* SET_SUBSCRIPTION_ATTRIBUTES: rd both ways, nflt; something to change; nflt alone. */
    memset(&in, 0, sizeof in);
    in.op = KYU_OP_SET_SUBSCRIPTION_ATTRIBUTES;
    in.fields = KYU_F_SUB_ID | KYU_F_RAW_DELIVERY | KYU_F_NO_FILTER;
    strcpy(in.sub_id, "0e1c4a4e-6b1e-4c4e-9a5e-2f7d3b1c9a00");
    for (int raw = 0; raw < 2; raw++) {
        in.raw_delivery = raw;
        msgpack_sbuffer_init(&b);
        kyu_request_encode(&in, &b);
        assert_int_equal(kyu_request_decode(b.data, b.size, 0, &out, &err), KYU_OK);
        msgpack_sbuffer_destroy(&b);
        assert_int_equal(out.raw_delivery, raw);
        assert_true(out.fields & KYU_F_NO_FILTER);
    }
    in.fields = KYU_F_SUB_ID;
    msgpack_sbuffer_init(&b);
    kyu_request_encode(&in, &b);
    assert_int_equal(kyu_request_decode(b.data, b.size, 0, &out, &err), KYU_ERR_INVALID_ARGUMENT);
    msgpack_sbuffer_destroy(&b);
    in.fields = KYU_F_SUB_ID | KYU_F_NO_FILTER | KYU_F_FILTER_SCOPE;
    msgpack_sbuffer_init(&b);
    kyu_request_encode(&in, &b);
    assert_int_equal(kyu_request_decode(b.data, b.size, 0, &out, &err), KYU_ERR_INVALID_ARGUMENT);
    msgpack_sbuffer_destroy(&b);
    in.fields = KYU_F_SUB_ID | KYU_F_FILTER_SCOPE; /* the present policy, another scope */
    msgpack_sbuffer_init(&b);
    kyu_request_encode(&in, &b);
    assert_int_equal(kyu_request_decode(b.data, b.size, 0, &out, &err), KYU_OK);
    msgpack_sbuffer_destroy(&b);

    kyu_reply_t rep, back;
    kyu_reply_init(&rep);
    rep.id = 5;
    rep.n_topics = 2;
    rep.topics = calloc(2, sizeof rep.topics[0]);
    strcpy(rep.topics[0], "a");
    strcpy(rep.topics[1], "b");
    rep.n_subs = 3;
    rep.subs = calloc(3, sizeof rep.subs[0]);
    for (int i = 0; i < 3; i++) {
        strcpy(rep.subs[i].id, in.sub_id);
        strcpy(rep.subs[i].topic, "a");
        strcpy(rep.subs[i].queue, "q");
    }
    rep.subs[0].raw = true;
    rep.subs[1].filtered = true; /* a filter policy on the attributes */
    rep.subs[2].filtered = rep.subs[2].filter_body = true;
    rep.subs[2].policy = "{\"a\":{\"b\":[\"x\"]}}";
    msgpack_sbuffer_init(&b);
    kyu_reply_encode(&rep, &b);
    kyu_reply_init(&back);
    assert_int_equal(kyu_reply_decode(b.data, b.size, &back, &err), KYU_OK);
    msgpack_sbuffer_destroy(&b);
    assert_int_equal(back.n_topics, 2);
    assert_string_equal(back.topics[1], "b");
    assert_int_equal(back.n_subs, 3);
    assert_string_equal(back.subs[0].id, in.sub_id);
    assert_string_equal(back.subs[0].queue, "q");
    assert_true(back.subs[0].raw);
    assert_false(back.subs[0].filtered);
    assert_true(back.subs[1].filtered && !back.subs[1].filter_body && !back.subs[1].raw);
    assert_true(back.subs[2].filtered && back.subs[2].filter_body);
    assert_null(back.subs[1].policy); /* not sent: unknown */
    assert_string_equal(back.subs[2].policy, "{\"a\":{\"b\":[\"x\"]}}");
    kyu_reply_reset(&rep);
    kyu_reply_reset(&back);
}

static void test_untag_requests_round_trip_and_tags_must_be_utf8(void **state)
{
    (void)state;
    kyu_request_t *in = calloc(1, sizeof *in), *out = malloc(sizeof *out);
    kyu_err_t err;
    in->op = KYU_OP_UNTAG_QUEUE;
    in->id = 3;
    in->fields = KYU_F_QUEUE | KYU_F_TAG_KEYS | KYU_F_RQ;
    in->rq_client = in->rq_key = 9;
    strcpy(in->queue, "jobs");
    in->qx.tags.n = 2;
    strcpy(in->qx.tags.keys[0], "team");
    strcpy(in->qx.tags.keys[1], "caf\xc3\xa9");
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    kyu_request_encode(in, &b);
    assert_int_equal(kyu_request_decode(b.data, b.size, 0, out, &err), KYU_OK);
    msgpack_sbuffer_destroy(&b);
    assert_int_equal(out->op, KYU_OP_UNTAG_QUEUE);
    assert_int_equal(out->fields, in->fields);
    assert_int_equal(out->qx.tags.n, 2);
    assert_string_equal(out->qx.tags.keys[1], "caf\xc3\xa9");
    assert_string_equal(out->qx.tags.values[1], "");
    /* Needs its keys: 1 to 50, distinct, not empty, UTF-8. */
    assert_int_equal(decode_tags(KYU_OP_UNTAG_QUEUE, "tk", NULL, -1, out, &err),
                     KYU_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.msg, "needs field tk"));
    assert_int_equal(decode_tags(KYU_OP_UNTAG_QUEUE, "tk", NULL, 0, out, &err),
                     KYU_ERR_INVALID_ARGUMENT);
    const char *many[KYU_TAGS_MAX + 1];
    char names[KYU_TAGS_MAX + 1][8];
    for (int i = 0; i <= KYU_TAGS_MAX; i++) {
        snprintf(names[i], sizeof names[i], "k%d", i);
        many[i] = names[i];
    }
    assert_int_equal(decode_tags(KYU_OP_UNTAG_QUEUE, "tk", many, KYU_TAGS_MAX, out, &err), KYU_OK);
    assert_int_equal(decode_tags(KYU_OP_UNTAG_QUEUE, "tk", many, KYU_TAGS_MAX + 1, out, &err),
                     KYU_ERR_INVALID_ARGUMENT);
    assert_int_equal(
        decode_tags(KYU_OP_UNTAG_QUEUE, "tk", (const char *[]){"a", "a"}, 2, out, &err),
        KYU_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.msg, "given twice"));
    assert_int_equal(decode_tags(KYU_OP_UNTAG_QUEUE, "tk", (const char *[]){""}, 1, out, &err),
                     KYU_ERR_INVALID_ARGUMENT);
    /* Not UTF-8: a lone continuation byte, an overlong '/', a surrogate, a cut sequence,
     * past U+10FFFF; in untag's keys and in a create's tag keys and values. */
    const char *bad[] = {"a\x80",      "\xc0\xaf",         "\xed\xa0\x80",
                         "ab\xe2\x82", "\xf4\x90\x80\x80", "\xff"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_false(kyu_utf8_valid(bad[i], strlen(bad[i])));
        assert_int_equal(decode_tags(KYU_OP_UNTAG_QUEUE, "tk", &bad[i], 1, out, &err),
                         KYU_ERR_INVALID_ARGUMENT);
        assert_non_null(strstr(err.msg, "not valid UTF-8"));
        assert_int_equal(decode_tags(KYU_OP_CREATE_QUEUE, "tags", &bad[i], 1, out, &err),
                         KYU_ERR_INVALID_ARGUMENT);
        assert_non_null(strstr(err.msg, "not valid UTF-8"));
    }
    const char *good[] = {"plain",        "caf\xc3\xa9",     "\xe2\x82\xac", "\xf0\x9f\x98\x80",
                          "\xef\xbf\xbf", "\xf4\x8f\xbf\xbf"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        assert_true(kyu_utf8_valid(good[i], strlen(good[i])));
        assert_int_equal(decode_tags(KYU_OP_CREATE_QUEUE, "tags", &good[i], 1, out, &err), KYU_OK);
    }
    /* Other ops do not take tk; untag takes no tags. */
    assert_int_equal(decode_tags(KYU_OP_SET_QUEUE_ATTRIBUTES, "tk", good, 1, out, &err),
                     KYU_ERR_MALFORMED);
    assert_int_equal(decode_tags(KYU_OP_UNTAG_QUEUE, "tags", good, 1, out, &err),
                     KYU_ERR_MALFORMED);
    free(in);
    free(out);
}

/* DELETE and CHANGE_VISIBILITY take entry ids (a batch): one per receipt handle, checked as
 * SEND's; they round-trip. */
static void test_delete_and_change_visibility_batches_take_an_entry_id_per_handle(void **state)
{
    (void)state;
    kyu_request_t *in = calloc(1, sizeof *in), *out = malloc(sizeof *out);
    kyu_err_t err;
    for (int op = KYU_OP_DELETE; op <= KYU_OP_CHANGE_VISIBILITY; op++) {
        memset(in, 0, sizeof *in);
        in->op = (uint32_t)op;
        in->id = 1;
        in->fields = KYU_F_QUEUE | KYU_F_HANDLES | KYU_F_ENTRY_IDS |
                     (op == KYU_OP_CHANGE_VISIBILITY ? KYU_F_VT : 0);
        strcpy(in->queue, "q");
        in->n_handles = in->n_entries = 2;
        strcpy(in->handles[0], "h0");
        strcpy(in->handles[1], "h1");
        strcpy(in->entry_ids[0], "a");
        strcpy(in->entry_ids[1], "b-2");
        msgpack_sbuffer b;
        msgpack_sbuffer_init(&b);
        kyu_request_encode(in, &b);
        assert_int_equal(kyu_request_decode(b.data, b.size, 0, out, &err), KYU_OK);
        msgpack_sbuffer_destroy(&b);
        assert_int_equal(out->n_entries, 2);
        assert_string_equal(out->entry_ids[1], "b-2");
        in->n_entries = 1; /* not one per handle */
        msgpack_sbuffer_init(&b);
        kyu_request_encode(in, &b);
        assert_int_equal(kyu_request_decode(b.data, b.size, 0, out, &err),
                         KYU_ERR_INVALID_ARGUMENT);
        assert_non_null(strstr(err.msg, "eid has 1 entry ids for 2 receipt handles"));
        msgpack_sbuffer_destroy(&b);
        in->n_entries = 2;
        strcpy(in->entry_ids[1], "a"); /* repeated */
        msgpack_sbuffer_init(&b);
        kyu_request_encode(in, &b);
        assert_int_equal(kyu_request_decode(b.data, b.size, 0, out, &err),
                         KYU_ERR_INVALID_ARGUMENT);
        assert_non_null(strstr(err.msg, "BatchEntryIdsNotDistinct"));
        msgpack_sbuffer_destroy(&b);
    }
    free(in);
    free(out);
}

static kyu_code_t round_trip(const kyu_request_t *in, kyu_request_t *out, kyu_err_t *err);

/* CHANGE_VISIBILITY batches with a timeout per entry (evt, bit 32): one per handle, with eid,
 * instead of vt; the values round-trip unchecked (the broker fails an entry out of range
 * alone); DELETE does not take it. */
static void test_change_visibility_batches_take_a_timeout_per_entry(void **state)
{
    (void)state;
    kyu_request_t *in = calloc(1, sizeof *in), *out = malloc(sizeof *out);
    kyu_err_t err;
    in->op = KYU_OP_CHANGE_VISIBILITY;
    in->id = 1;
    in->fields = KYU_F_QUEUE | KYU_F_HANDLES | KYU_F_ENTRY_IDS | KYU_F_ENTRY_VTS;
    strcpy(in->queue, "q");
    in->n_handles = in->n_entries = in->n_entry_vts = 3;
    for (int i = 0; i < 3; i++) {
        snprintf(in->handles[i], sizeof in->handles[i], "h%d", i);
        snprintf(in->entry_ids[i], sizeof in->entry_ids[i], "e%d", i);
    }
    in->entry_vt[0] = 0;
    in->entry_vt[1] = 43200;
    in->entry_vt[2] = 43201; /* out of range: the broker fails that entry alone */
    assert_int_equal(round_trip(in, out, &err), KYU_OK);
    assert_true(out->fields == in->fields);
    assert_int_equal(out->n_entry_vts, 3);
    assert_int_equal(out->entry_vt[0], 0);
    assert_int_equal(out->entry_vt[1], 43200);
    assert_int_equal(out->entry_vt[2], 43201);
    struct {
        uint64_t add, drop;
        size_t n_vts;
        const char *why;
    } bad[] = {
        {KYU_F_VT, 0, 3, "not both"},
        {0, KYU_F_ENTRY_IDS, 3, "is for a batch: give eid too"},
        {0, 0, 2, "evt has 2 visibility timeouts for 3 receipt handles"},
        {0, KYU_F_ENTRY_VTS, 3, "needs field vt (visibility timeout), or evt"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kyu_request_t *r = calloc(1, sizeof *r);
        *r = *in;
        r->fields = (r->fields | bad[i].add) & ~bad[i].drop;
        r->n_entry_vts = bad[i].n_vts;
        if (bad[i].drop == KYU_F_ENTRY_IDS)
            r->n_entries = 0;
        assert_int_equal(round_trip(r, out, &err), KYU_ERR_INVALID_ARGUMENT);
        assert_non_null(strstr(err.msg, bad[i].why));
        free(r);
    }
    in->op = KYU_OP_DELETE;
    assert_int_equal(round_trip(in, out, &err), KYU_ERR_MALFORMED);
    assert_non_null(strstr(err.msg, "delete does not take field evt"));
    free(in);
    free(out);
}

static void b_peek_from_negative(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 4);
    str(pk, "op"), msgpack_pack_int(pk, KYU_OP_PEEK);
    str(pk, "id"), msgpack_pack_int(pk, 7);
    str(pk, "q"), str(pk, "q");
    str(pk, "from"), msgpack_pack_int(pk, -1);
}

static void b_peek_from_string(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 4);
    str(pk, "op"), msgpack_pack_int(pk, KYU_OP_PEEK);
    str(pk, "id"), msgpack_pack_int(pk, 7);
    str(pk, "q"), str(pk, "q");
    str(pk, "from"), str(pk, "5");
}

static void test_a_bad_from_is_invalid_argument(void **state)
{
    (void)state;
    expect(b_peek_from_negative, 0, KYU_ERR_INVALID_ARGUMENT);
    expect(b_peek_from_string, 0, KYU_ERR_INVALID_ARGUMENT);
}

/* A PEEK reply: each message's state, position and visible time, and the next position. */
static void test_peek_reply_round_trips(void **state)
{
    (void)state;
    kyu_reply_t in, out;
    kyu_reply_init(&in);
    kyu_reply_init(&out);
    in.id = 9;
    in.n_msgs = 2;
    strcpy(in.msgs[0].message_id, "m1");
    in.msgs[0].state = KYU_MSG_VISIBLE;
    in.msgs[0].position = 1;
    strcpy(in.msgs[1].message_id, "m2");
    in.msgs[1].state = KYU_MSG_DELAYED;
    in.msgs[1].position = 7;
    in.msgs[1].visible_at_ms = 1234567890123ULL;
    in.has_next = true;
    in.next = 8;
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    kyu_reply_encode(&in, &b);
    kyu_err_t err;
    assert_int_equal(kyu_reply_decode(b.data, b.size, &out, &err), KYU_OK);
    msgpack_sbuffer_destroy(&b);
    assert_int_equal(out.msgs[0].state, KYU_MSG_VISIBLE);
    assert_int_equal(out.msgs[1].state, KYU_MSG_DELAYED);
    assert_int_equal(out.msgs[1].position, 7);
    assert_true(out.msgs[1].visible_at_ms == 1234567890123ULL);
    assert_true(out.has_next);
    assert_int_equal(out.next, 8);
    assert_string_equal(kyu_msg_state_name(KYU_MSG_INFLIGHT), "inflight");
    assert_int_equal(kyu_msg_state_parse("bogus"), 0);
    assert_null(kyu_msg_state_name(0));
    assert_null(kyu_msg_state_name(99));
}

static void test_move_task_requests_round_trip_and_are_checked(void **state)
{
    (void)state;
    kyu_request_t in, out;
    memset(&in, 0, sizeof in);
    in.op = KYU_OP_START_MOVE_TASK;
    in.id = 5;
    in.fields = KYU_F_QUEUE | KYU_F_DEST | KYU_F_RATE;
    strcpy(in.queue, "dlq");
    strcpy(in.dest, "jobs");
    in.rate = KYU_MOVE_RATE_MAX;
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    kyu_request_encode(&in, &b);
    kyu_err_t err;
    assert_int_equal(kyu_request_decode(b.data, b.size, 0, &out, &err), KYU_OK);
    assert_string_equal(out.dest, "jobs");
    assert_int_equal(out.rate, KYU_MOVE_RATE_MAX);
    msgpack_sbuffer_destroy(&b);
    in.rate = KYU_MOVE_RATE_MAX + 1; /* SQS's maximum is 500 a second */
    msgpack_sbuffer_init(&b);
    kyu_request_encode(&in, &b);
    assert_int_equal(kyu_request_decode(b.data, b.size, 0, &out, &err), KYU_ERR_INVALID_ARGUMENT);
    msgpack_sbuffer_destroy(&b);
    in.rate = 0;
    msgpack_sbuffer_init(&b);
    kyu_request_encode(&in, &b);
    assert_int_equal(kyu_request_decode(b.data, b.size, 0, &out, &err), KYU_ERR_INVALID_ARGUMENT);
    msgpack_sbuffer_destroy(&b);
    in.rate = 1;
    strcpy(in.dest, "no/slash");
    msgpack_sbuffer_init(&b);
    kyu_request_encode(&in, &b);
    assert_int_equal(kyu_request_decode(b.data, b.size, 0, &out, &err), KYU_ERR_INVALID_NAME);
    msgpack_sbuffer_destroy(&b);
    in.op = KYU_OP_CANCEL_MOVE_TASK; /* takes neither dst nor mps */
    strcpy(in.dest, "jobs");
    msgpack_sbuffer_init(&b);
    kyu_request_encode(&in, &b);
    assert_int_equal(kyu_request_decode(b.data, b.size, 0, &out, &err), KYU_ERR_MALFORMED);
    msgpack_sbuffer_destroy(&b);
}

static void test_move_task_replies_round_trip(void **state)
{
    (void)state;
    kyu_reply_t in, out;
    kyu_reply_init(&in);
    kyu_reply_init(&out);
    kyu_move_task_t t[2] = {
        {.id = 7,
         .status = KYU_MOVE_FAILED,
         .source = "dlq",
         .destination = "jobs",
         .rate = 5,
         .moved = 3,
         .to_move = 9,
         .started_ms = 1234567890123ULL,
         .ended_ms = 1234567899999ULL,
         .reason = "AWS.SimpleQueueService.NonExistentQueue: gone"},
        {.id = 3, .status = KYU_MOVE_RUNNING, .source = "dlq", .to_move = 1, .started_ms = 1},
    };
    in.id = 4;
    in.tasks = t;
    in.n_tasks = 2;
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    kyu_reply_encode(&in, &b);
    kyu_err_t err;
    assert_int_equal(kyu_reply_decode(b.data, b.size, &out, &err), KYU_OK);
    msgpack_sbuffer_destroy(&b);
    assert_int_equal(out.n_tasks, 2);
    assert_memory_equal(&out.tasks[0], &t[0], sizeof t[0]);
    assert_memory_equal(&out.tasks[1], &t[1], sizeof t[1]);
    kyu_reply_reset(&out);
    assert_string_equal(kyu_move_status_name(KYU_MOVE_CANCELLED), "CANCELLED");
    assert_int_equal(kyu_move_status_parse("COMPLETED"), KYU_MOVE_COMPLETED);
    assert_int_equal(kyu_move_status_parse("CANCELLING"), 0);
    assert_null(kyu_move_status_name(0));
}

/* Encodes in, decodes it as a request with no bodies. */
static kyu_code_t round_trip(const kyu_request_t *in, kyu_request_t *out, kyu_err_t *err)
{
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    kyu_request_encode(in, &b);
    kyu_err_clear(err);
    kyu_code_t rc = kyu_request_decode(b.data, b.size, 0, out, err);
    msgpack_sbuffer_destroy(&b);
    return rc;
}

static kyu_code_t round_trip_bodies(const kyu_request_t *in, size_t n_bodies, kyu_request_t *out,
                                    kyu_err_t *err)
{
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    kyu_request_encode(in, &b);
    kyu_err_clear(err);
    kyu_code_t rc = kyu_request_decode(b.data, b.size, n_bodies, out, err);
    msgpack_sbuffer_destroy(&b);
    return rc;
}

/* FIFO queues: .fifo names; the queue attributes fifo, cbd, dsc, ftl; SEND's mg (a group and
 * deduplication id per body, nil for none, SQS's characters); RECEIVE's raid; and the replies'
 * sn, gid, did and FIFO attributes. */
static void test_fifo_fields_round_trip_and_are_checked(void **state)
{
    (void)state;
    assert_true(kyu_queue_name_valid("orders.fifo", 11));
    assert_true(kyu_queue_name_fifo("orders.fifo", 11));
    assert_false(kyu_queue_name_valid(".fifo", 5));
    assert_false(kyu_queue_name_valid("a.b", 3));
    assert_false(kyu_queue_name_valid("a.fifo.fifo", 11));
    assert_false(kyu_entry_id_valid("a.fifo", 6)); /* entry ids take no dot */
    char long_name[KYU_NAME_MAX + 2];
    memset(long_name, 'a', sizeof long_name);
    memcpy(long_name + KYU_NAME_MAX - 5, ".fifo", 5);
    assert_true(kyu_queue_name_valid(long_name, KYU_NAME_MAX));
    memcpy(long_name + KYU_NAME_MAX - 4, ".fifo", 5);
    assert_false(kyu_queue_name_valid(long_name, KYU_NAME_MAX + 1));
    assert_true(kyu_fifo_id_valid("a!~{}", 5, KYU_GROUP_ID_MAX));
    assert_false(kyu_fifo_id_valid("a b", 3, KYU_GROUP_ID_MAX));
    assert_false(kyu_fifo_id_valid("", 0, KYU_GROUP_ID_MAX));

    kyu_request_t *in = calloc(1, sizeof *in), *out = calloc(1, sizeof *out);
    assert_non_null(in);
    assert_non_null(out);
    kyu_err_t err;
    in->op = KYU_OP_CREATE_QUEUE;
    in->id = 1;
    in->fields = KYU_F_QUEUE | KYU_F_FIFO | KYU_F_CBD | KYU_F_DEDUP_SCOPE | KYU_F_THROUGHPUT;
    strcpy(in->queue, "q.fifo");
    in->qx.fifo = in->qx.cbd = true;
    in->qx.dedup_scope = KYU_DEDUP_SCOPE_GROUP;
    in->qx.throughput = KYU_THROUGHPUT_PER_GROUP;
    assert_int_equal(round_trip_bodies(in, 0, out, &err), KYU_OK);
    assert_true(out->qx.fifo && out->qx.cbd);
    assert_int_equal(out->qx.dedup_scope, KYU_DEDUP_SCOPE_GROUP);
    assert_int_equal(out->qx.throughput, KYU_THROUGHPUT_PER_GROUP);
    assert_int_equal(out->fields, in->fields);

    memset(in, 0, sizeof *in);
    in->op = KYU_OP_SEND;
    in->id = 2;
    in->fields = KYU_F_QUEUE | KYU_F_GROUPS;
    strcpy(in->queue, "q.fifo");
    in->n_group_msgs = 2;
    strcpy(in->group_ids[0], "g-1");
    strcpy(in->dedup_ids[0], "d:1");
    strcpy(in->group_ids[1], "g-2"); /* no dedup id: nil */
    assert_int_equal(round_trip_bodies(in, 2, out, &err), KYU_OK);
    assert_int_equal(out->n_group_msgs, 2);
    assert_string_equal(out->group_ids[0], "g-1");
    assert_string_equal(out->dedup_ids[0], "d:1");
    assert_string_equal(out->group_ids[1], "g-2");
    assert_string_equal(out->dedup_ids[1], "");
    /* one per body */
    assert_int_equal(round_trip_bodies(in, 3, out, &err), KYU_ERR_INVALID_ARGUMENT);
    /* SQS's characters only */
    strcpy(in->group_ids[1], "g 2");
    assert_int_equal(round_trip_bodies(in, 2, out, &err), KYU_ERR_INVALID_ARGUMENT);
    memset(in->dedup_ids[0], 'x', KYU_DEDUP_ID_MAX);
    strcpy(in->group_ids[1], "g2");
    assert_int_equal(round_trip_bodies(in, 2, out, &err), KYU_OK);
    /* RECEIVE takes raid, SEND does not */
    memset(in, 0, sizeof *in);
    in->op = KYU_OP_RECEIVE;
    in->id = 3;
    in->fields = KYU_F_QUEUE | KYU_F_ATTEMPT;
    strcpy(in->queue, "q.fifo");
    strcpy(in->attempt_id, "attempt-1");
    assert_int_equal(round_trip_bodies(in, 0, out, &err), KYU_OK);
    assert_string_equal(out->attempt_id, "attempt-1");
    in->op = KYU_OP_SEND;
    assert_int_equal(round_trip_bodies(in, 1, out, &err), KYU_ERR_MALFORMED);
    free(in);
    free(out);

    kyu_reply_t *rep = calloc(1, sizeof *rep), *back = calloc(1, sizeof *back);
    assert_non_null(rep);
    assert_non_null(back);
    rep->id = 9;
    rep->n_ids = 2;
    strcpy(rep->ids[0], "id-0");
    strcpy(rep->ids[1], "id-1");
    rep->sequences[0] = 7;
    rep->sequences[1] = UINT64_C(1) << 62;
    rep->n_msgs = 1;
    strcpy(rep->msgs[0].message_id, "id-0");
    strcpy(rep->msgs[0].group_id, "g-1");
    strcpy(rep->msgs[0].dedup_id, "d:1");
    rep->msgs[0].sequence = 7;
    rep->has_attrs = true;
    rep->attrs.fifo = rep->attrs.cbd = true;
    rep->attrs.dedup_scope = KYU_DEDUP_SCOPE_GROUP;
    rep->attrs.throughput = KYU_THROUGHPUT_PER_GROUP;
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    kyu_reply_encode(rep, &b);
    assert_int_equal(kyu_reply_decode(b.data, b.size, back, &err), KYU_OK);
    msgpack_sbuffer_destroy(&b);
    assert_true(back->sequences[0] == 7 && back->sequences[1] == UINT64_C(1) << 62);
    assert_string_equal(back->msgs[0].group_id, "g-1");
    assert_string_equal(back->msgs[0].dedup_id, "d:1");
    assert_true(back->msgs[0].sequence == 7);
    assert_true(back->attrs.fifo && back->attrs.cbd);
    assert_int_equal(back->attrs.dedup_scope, KYU_DEDUP_SCOPE_GROUP);
    assert_int_equal(back->attrs.throughput, KYU_THROUGHPUT_PER_GROUP);
    kyu_reply_reset(back);
    free(rep);
    free(back);
}

/* Fields above bit 31 (the masks are 64 bits): each is encoded, and an op that does not take
 * it refuses it by name (a 32-bit mask would drop the bit and accept the request silently). */
static void test_fields_above_bit_31_are_encoded_and_checked(void **state)
{
    (void)state;
    kyu_request_t *in = calloc(1, sizeof *in), *out = malloc(sizeof *out);
    kyu_err_t err;
    assert_true(KYU_F_ENTRY_VTS > UINT32_MAX);
    assert_true(KYU_F_LAST_ >= KYU_F_ENTRY_VTS);
    in->op = KYU_OP_RECEIVE;
    in->id = 4;
    in->fields = KYU_F_QUEUE | KYU_F_ENTRY_VTS;
    strcpy(in->queue, "jobs");
    in->n_entry_vts = 2;
    in->entry_vt[0] = 30;
    in->entry_vt[1] = 43200;
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    kyu_request_encode(in, &b);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    assert_int_equal(msgpack_unpack_next(&u, b.data, b.size, NULL), MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(u.data.via.map.size, 4); /* op, id, q, evt */
    const msgpack_object_kv *evt = &u.data.via.map.ptr[3];
    assert_int_equal(evt->key.via.str.size, 3);
    assert_memory_equal(evt->key.via.str.ptr, "evt", 3);
    assert_int_equal(evt->val.via.array.size, 2);
    assert_int_equal(evt->val.via.array.ptr[1].via.u64, 43200);
    msgpack_unpacked_destroy(&u);
    assert_int_equal(kyu_request_decode(b.data, b.size, 0, out, &err), KYU_ERR_MALFORMED);
    assert_non_null(strstr(err.msg, "receive does not take field evt"));
    msgpack_sbuffer_destroy(&b);
    in->fields = KYU_F_QUEUE | KYU_F_CREDIT_TOTAL;
    in->credit_total = 7;
    msgpack_sbuffer_init(&b);
    kyu_request_encode(in, &b);
    assert_int_equal(kyu_request_decode(b.data, b.size, 0, out, &err), KYU_ERR_MALFORMED);
    assert_non_null(strstr(err.msg, "receive does not take field ct"));
    msgpack_sbuffer_destroy(&b);
    free(in);
    free(out);
}
static void test_worker_requests_round_trip(void **state)
{
    (void)state;
    kyu_request_t in, out;
    kyu_err_t err;
    memset(&in, 0, sizeof in);
    in.op = KYU_OP_WORKER_OPEN;
    in.id = 9;
    in.fields =
        KYU_F_QUEUE | KYU_F_CREDIT | KYU_F_HB | KYU_F_LIVENESS | KYU_F_VT | KYU_F_WORKER_NAME;
    strcpy(in.queue, "jobs");
    in.credit = KYU_WORKER_CREDIT_MAX;
    in.hb_ms = KYU_WORKER_HB_MIN_MS;
    in.liveness = KYU_WORKER_LIVENESS_MAX;
    in.vt = 300;
    strcpy(in.worker_name, "host-1:4242");
    assert_int_equal(round_trip(&in, &out, &err), KYU_OK);
    assert_int_equal(out.op, KYU_OP_WORKER_OPEN);
    assert_int_equal(out.fields, in.fields);
    assert_int_equal(out.credit, KYU_WORKER_CREDIT_MAX);
    assert_int_equal(out.hb_ms, KYU_WORKER_HB_MIN_MS);
    assert_int_equal(out.liveness, KYU_WORKER_LIVENESS_MAX);
    assert_int_equal(out.vt, 300);
    assert_string_equal(out.worker_name, "host-1:4242");
    memset(&in, 0, sizeof in);
    in.op = KYU_OP_WORKER_HEARTBEAT;
    in.id = 10;
    in.fields = KYU_F_SID | KYU_F_CREDIT;
    in.sid = UINT64_MAX;
    in.credit = 0; /* a heartbeat that gives nothing back */
    assert_int_equal(round_trip(&in, &out, &err), KYU_OK);
    assert_true(out.sid == UINT64_MAX);
    assert_int_equal(out.credit, 0);
    assert_int_equal(out.fields, KYU_F_SID | KYU_F_CREDIT);
    /* a new total credit (ct, bit 31): 1..10000 */
    in.fields |= KYU_F_CREDIT_TOTAL;
    in.credit_total = KYU_WORKER_CREDIT_MAX;
    assert_int_equal(round_trip(&in, &out, &err), KYU_OK);
    assert_true(out.fields == (KYU_F_SID | KYU_F_CREDIT | KYU_F_CREDIT_TOTAL));
    assert_int_equal(out.credit_total, KYU_WORKER_CREDIT_MAX);
    in.credit_total = 0;
    assert_int_equal(round_trip(&in, &out, &err), KYU_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.msg, "total credit (ct)"));
    in.credit_total = KYU_WORKER_CREDIT_MAX + 1;
    assert_int_equal(round_trip(&in, &out, &err), KYU_ERR_INVALID_ARGUMENT);
    in.op = KYU_OP_WORKER_CLOSE;
    in.fields = KYU_F_SID;
    in.sid = 77;
    assert_int_equal(round_trip(&in, &out, &err), KYU_OK);
    assert_int_equal(out.sid, 77);
    in.op = KYU_OP_LIST_WORKERS;
    in.fields = 0;
    assert_int_equal(round_trip(&in, &out, &err), KYU_OK);
    in.fields = KYU_F_QUEUE;
    strcpy(in.queue, "jobs");
    assert_int_equal(round_trip(&in, &out, &err), KYU_OK);
    assert_string_equal(out.queue, "jobs");
    assert_string_equal(kyu_code_name(KYU_ERR_NO_SESSION), "NO_SESSION");
    assert_int_equal(KYU_ERR_NO_SESSION, 20);
    assert_true(kyu_op_info(KYU_OP_WORKER_OPEN)->flags & KYU_OPF_SESSION);
}

/* Every worker field out of its range, and fields an op does not take, are refused. */
static void test_worker_requests_are_checked(void **state)
{
    (void)state;
    kyu_request_t open, in, out;
    kyu_err_t err;
    memset(&open, 0, sizeof open);
    open.op = KYU_OP_WORKER_OPEN;
    open.id = 1;
    open.fields = KYU_F_QUEUE | KYU_F_CREDIT;
    strcpy(open.queue, "jobs");
    open.credit = 1;
    assert_int_equal(round_trip(&open, &out, &err), KYU_OK);
    assert_int_equal(out.credit, 1);
    struct {
        uint64_t field;
        uint32_t value;
        const char *what;
    } bad[] = {
        {KYU_F_CREDIT, 0, "credit (cr)"},
        {KYU_F_CREDIT, KYU_WORKER_CREDIT_MAX + 1, "credit (cr)"},
        {KYU_F_HB, KYU_WORKER_HB_MIN_MS - 1, "heartbeat interval (hb)"},
        {KYU_F_HB, KYU_WORKER_HB_MAX_MS + 1, "heartbeat interval (hb)"},
        {KYU_F_LIVENESS, 0, "liveness (lv)"},
        {KYU_F_LIVENESS, KYU_WORKER_LIVENESS_MAX + 1, "liveness (lv)"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        in = open;
        in.fields |= bad[i].field;
        if (bad[i].field == KYU_F_CREDIT)
            in.credit = bad[i].value;
        else if (bad[i].field == KYU_F_HB)
            in.hb_ms = bad[i].value;
        else
            in.liveness = bad[i].value;
        assert_int_equal(round_trip(&in, &out, &err), KYU_ERR_INVALID_ARGUMENT);
        assert_non_null(strstr(err.msg, bad[i].what));
    }
    const char *names[] = {"", "tab\there", "\x7f"}; /* too long: b_long_worker_name */
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        in = open;
        in.fields |= KYU_F_WORKER_NAME;
        snprintf(in.worker_name, sizeof in.worker_name, "%s", names[i]);
        assert_int_equal(round_trip(&in, &out, &err), KYU_ERR_INVALID_ARGUMENT);
        assert_non_null(strstr(err.msg, "worker name (wn)"));
    }
    in = open;
    in.fields = KYU_F_QUEUE; /* no credit */
    assert_int_equal(round_trip(&in, &out, &err), KYU_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.msg, "cr (credit)"));
    memset(&in, 0, sizeof in);
    in.op = KYU_OP_WORKER_HEARTBEAT;
    in.id = 2;
    in.fields = KYU_F_SID;
    in.sid = 0;
    assert_int_equal(round_trip(&in, &out, &err), KYU_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.msg, "session id (sid)"));
    in.sid = 5;
    in.fields = KYU_F_SID | KYU_F_QUEUE; /* a heartbeat does not name a queue */
    strcpy(in.queue, "jobs");
    assert_int_equal(round_trip(&in, &out, &err), KYU_ERR_MALFORMED);
    in.fields = KYU_F_CREDIT;
    assert_int_equal(round_trip(&in, &out, &err), KYU_ERR_INVALID_ARGUMENT);
    in.op = KYU_OP_WORKER_CLOSE;
    in.fields = KYU_F_SID | KYU_F_CREDIT; /* a close gives nothing back */
    assert_int_equal(round_trip(&in, &out, &err), KYU_ERR_MALFORMED);
    in.op = KYU_OP_RECEIVE; /* other ops take no worker field */
    in.fields = KYU_F_QUEUE | KYU_F_SID;
    assert_int_equal(round_trip(&in, &out, &err), KYU_ERR_MALFORMED);
}

static void b_long_worker_name(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 5);
    str(pk, "id");
    msgpack_pack_uint64(pk, 1);
    str(pk, "op");
    msgpack_pack_uint32(pk, KYU_OP_WORKER_OPEN);
    str(pk, "q");
    str(pk, "jobs");
    str(pk, "cr");
    msgpack_pack_uint32(pk, 5);
    str(pk, "wn");
    str(pk, "0123456789012345678901234567890123456789012345678901234567890123x"); /* 65 */
}

static void b_negative_credit(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 4);
    str(pk, "id");
    msgpack_pack_uint64(pk, 1);
    str(pk, "op");
    msgpack_pack_uint32(pk, KYU_OP_WORKER_OPEN);
    str(pk, "q");
    str(pk, "jobs");
    str(pk, "cr");
    msgpack_pack_int32(pk, -1);
}

static void test_worker_name_and_credit_shapes_are_checked(void **state)
{
    (void)state;
    expect(b_long_worker_name, 0, KYU_ERR_INVALID_ARGUMENT);
    expect(b_negative_credit, 0, KYU_ERR_INVALID_ARGUMENT);
}

static void test_worker_replies_and_pushes_round_trip(void **state)
{
    (void)state;
    kyu_reply_t in, out;
    kyu_err_t err;
    msgpack_sbuffer b;
    /* WORKER_OPEN's reply */
    kyu_reply_init(&in);
    kyu_reply_init(&out);
    in.id = 3;
    in.sid = 0x123456789ULL;
    in.hb_ms = 1000;
    in.liveness = 3;
    msgpack_sbuffer_init(&b);
    kyu_reply_encode(&in, &b);
    assert_int_equal(kyu_reply_decode(b.data, b.size, &out, &err), KYU_OK);
    msgpack_sbuffer_destroy(&b);
    assert_true(out.sid == 0x123456789ULL);
    assert_int_equal(out.hb_ms, 1000);
    assert_int_equal(out.liveness, 3);
    assert_int_equal(out.ev, 0);
    /* a push of messages */
    kyu_reply_init(&in);
    in.id = 3;
    in.sid = 8;
    in.ev = KYU_EV_MSGS;
    in.n_msgs = 1;
    strcpy(in.msgs[0].message_id, "m1");
    strcpy(in.msgs[0].handle, "h1");
    in.msgs[0].receive_count = 2;
    msgpack_sbuffer_init(&b);
    kyu_reply_encode(&in, &b);
    assert_int_equal(kyu_reply_decode(b.data, b.size, &out, &err), KYU_OK);
    msgpack_sbuffer_destroy(&b);
    assert_int_equal(out.ev, KYU_EV_MSGS);
    assert_int_equal(out.sid, 8);
    assert_int_equal(out.n_msgs, 1);
    assert_string_equal(out.msgs[0].handle, "h1");
    assert_int_equal(out.hb_ms, 0);
    /* the end of a session: an error status with its sid, event and the leader */
    kyu_reply_init(&in);
    in.id = 3;
    in.sid = 8;
    in.ev = KYU_EV_CLOSED;
    in.status = KYU_ERR_NOT_LEADER;
    strcpy(in.error, "leadership lost");
    strcpy(in.leader, "tcp://b:1");
    msgpack_sbuffer_init(&b);
    kyu_reply_encode(&in, &b);
    assert_int_equal(kyu_reply_decode(b.data, b.size, &out, &err), KYU_OK);
    msgpack_sbuffer_destroy(&b);
    assert_int_equal(out.status, KYU_ERR_NOT_LEADER);
    assert_int_equal(out.ev, KYU_EV_CLOSED);
    assert_int_equal(out.sid, 8);
    assert_string_equal(out.leader, "tcp://b:1");
    assert_string_equal(out.error, "leadership lost");
    /* LIST_WORKERS, also empty */
    kyu_worker_info_t w[2] = {
        {.sid = 1,
         .name = "h:1",
         .host = "127.0.0.1",
         .queue = "jobs",
         .credit = 4,
         .credit_total = 10,
         .held = 6,
         .hb_ago_ms = 250,
         .age_ms = 1234567},
        {.sid = UINT64_MAX, .name = "x", .queue = "q2"},
    };
    kyu_reply_init(&in);
    in.id = 4;
    in.workers = w;
    in.n_workers = 2;
    msgpack_sbuffer_init(&b);
    kyu_reply_encode(&in, &b);
    assert_int_equal(kyu_reply_decode(b.data, b.size, &out, &err), KYU_OK);
    msgpack_sbuffer_destroy(&b);
    assert_int_equal(out.n_workers, 2);
    assert_memory_equal(&out.workers[0], &w[0], sizeof w[0]);
    assert_memory_equal(&out.workers[1], &w[1], sizeof w[1]);
    in.n_workers = 0;
    msgpack_sbuffer_init(&b);
    kyu_reply_encode(&in, &b);
    assert_int_equal(kyu_reply_decode(b.data, b.size, &out, &err), KYU_OK);
    msgpack_sbuffer_destroy(&b);
    assert_non_null(out.workers);
    assert_int_equal(out.n_workers, 0);
    kyu_reply_reset(&out);
    assert_string_equal(kyu_ev_name(KYU_EV_HB), "hb");
    assert_int_equal(kyu_ev_parse("closed"), KYU_EV_CLOSED);
    assert_int_equal(kyu_ev_parse("bogus"), 0);
    assert_null(kyu_ev_name(0));
    assert_null(kyu_ev_name(4));
}

static void test_code_names_are_stable(void **state)
{
    (void)state;
    assert_string_equal(kyu_code_name(KYU_ERR_RECEIPT_STALE), "RECEIPT_STALE");
    assert_int_equal(KYU_ERR_RECEIPT_STALE, 11);
    assert_int_equal(KYU_ERR_NOT_LEADER, 14);
    assert_string_equal(kyu_code_name(-1), "UNKNOWN");
    assert_string_equal(kyu_code_name(1000), "UNKNOWN");
}

/* kyu_reply_init_lean leaves the per-message arrays as they are: a reply filled below its
 * counts encodes byte for byte as one cleared whole, whatever the arrays held before. */
static void fill_reply(kyu_reply_t *rep, int kind)
{
    rep->id = 7;
    if (kind == 0) { /* a SEND batch with a failed entry */
        rep->n_ids = 2;
        strcpy(rep->ids[0], "id-0");
        rep->ids[1][0] = '\0';
        strcpy(rep->md5_body[0], "5d41402abc4b2a76b9719d911017c592");
        rep->md5_body[1][0] = '\0';
        rep->md5_attrs[0][0] = rep->md5_attrs[1][0] = '\0';
        rep->n_results = rep->n_errors = 2;
        rep->results[0] = KYU_OK;
        rep->results[1] = KYU_ERR_EMPTY_BODY;
        rep->errors[0][0] = '\0';
        strcpy(rep->errors[1], "message 2 has an empty body");
    } else if (kind == 1) { /* a RECEIVE of one message */
        kyu_msg_meta_t *m = &rep->msgs[0];
        memset(m, 0, sizeof *m);
        rep->n_msgs = 1;
        strcpy(m->message_id, "id-1");
        strcpy(m->handle, "h");
        m->receive_count = 1;
        strcpy(m->md5_body, "5d41402abc4b2a76b9719d911017c592");
    } else { /* an error */
        rep->status = KYU_ERR_NO_SUCH_QUEUE;
        strcpy(rep->error, "queue 'q' does not exist");
    }
}

static void test_a_lean_reply_encodes_as_a_cleared_one(void **state)
{
    (void)state;
    for (int kind = 0; kind < 3; kind++) {
        kyu_reply_t *lean = malloc(sizeof *lean), *full = malloc(sizeof *full);
        assert_non_null(lean);
        assert_non_null(full);
        memset(lean, 0xa5, sizeof *lean);
        kyu_reply_init_lean(lean);
        kyu_reply_init(full);
        fill_reply(lean, kind);
        fill_reply(full, kind);
        msgpack_sbuffer a, b;
        msgpack_sbuffer_init(&a);
        msgpack_sbuffer_init(&b);
        kyu_reply_encode(lean, &a);
        kyu_reply_encode(full, &b);
        assert_int_equal(a.size, b.size);
        assert_memory_equal(a.data, b.data, a.size);
        msgpack_sbuffer_destroy(&a);
        msgpack_sbuffer_destroy(&b);
        free(lean);
        free(full);
    }
}

/* Decoding clears only the per-message rows a header fills, and moving copies only those
 * below the counts: a reply decoded (or moved) over one that held ten messages with
 * attributes, ids, MD5s and errors reads as one decoded into a fresh reply. */
static void fill_large(kyu_reply_t *rep)
{
    static const kyu_msg_attr_t attr = {"colour", 6, "String", 6, "blue", 4, false};
    rep->id = 1;
    rep->n_ids = rep->n_msgs = rep->n_results = rep->n_errors = KYU_BATCH_MAX;
    for (int i = 0; i < KYU_BATCH_MAX; i++) {
        snprintf(rep->ids[i], sizeof rep->ids[i], "id-%d", i);
        strcpy(rep->md5_body[i], "5d41402abc4b2a76b9719d911017c592");
        strcpy(rep->md5_attrs[i], "7d793037a0760186574b0282f2f435e7");
        rep->sequences[i] = 100 + (uint64_t)i;
        kyu_msg_meta_t *m = &rep->msgs[i];
        snprintf(m->message_id, sizeof m->message_id, "m-%d", i);
        snprintf(m->handle, sizeof m->handle, "h-%d", i);
        strcpy(m->dlq_source, "source");
        strcpy(m->group_id, "g");
        m->dlq_receive_count = 4;
        m->attrs.n = 1;
        m->attrs.a[0] = attr;
        rep->results[i] = KYU_ERR_EMPTY_BODY;
        strcpy(rep->errors[i], "message has an empty body");
    }
}

/* The small replies decoded over the large one: a SEND's one id without MD5s, a RECEIVE of
 * two messages without attributes or dead-letter source, a SEND batch of two whose failed
 * entry has no text. */
static void fill_small(kyu_reply_t *rep, int kind)
{
    rep->id = 2;
    if (kind == 0) {
        rep->n_ids = 1;
        strcpy(rep->ids[0], "only");
    } else if (kind == 1) {
        rep->n_msgs = 2;
        for (int i = 0; i < 2; i++) {
            memset(&rep->msgs[i], 0, sizeof rep->msgs[i]);
            snprintf(rep->msgs[i].message_id, sizeof rep->msgs[i].message_id, "n-%d", i);
            snprintf(rep->msgs[i].handle, sizeof rep->msgs[i].handle, "k-%d", i);
        }
    } else {
        rep->n_ids = rep->n_results = rep->n_errors = 2;
        strcpy(rep->ids[0], "ok");
        rep->ids[1][0] = '\0';
        rep->md5_body[0][0] = rep->md5_body[1][0] = '\0';
        rep->md5_attrs[0][0] = rep->md5_attrs[1][0] = '\0';
        rep->results[0] = KYU_OK;
        rep->results[1] = KYU_ERR_EMPTY_BODY;
        rep->errors[0][0] = rep->errors[1][0] = '\0';
    }
}

static void encode_reply(const kyu_reply_t *rep, msgpack_sbuffer *b)
{
    msgpack_sbuffer_init(b);
    kyu_reply_encode(rep, b);
}

static void assert_same_reply(const kyu_reply_t *a, const kyu_reply_t *b)
{
    msgpack_sbuffer x, y;
    encode_reply(a, &x);
    encode_reply(b, &y);
    assert_int_equal(x.size, y.size);
    assert_memory_equal(x.data, y.data, x.size);
    msgpack_sbuffer_destroy(&x);
    msgpack_sbuffer_destroy(&y);
    for (size_t i = 0; i < b->n_ids; i++) {
        assert_string_equal(a->ids[i], b->ids[i]);
        assert_string_equal(a->md5_body[i], b->md5_body[i]);
        assert_string_equal(a->md5_attrs[i], b->md5_attrs[i]);
    }
    for (size_t i = 0; i < b->n_msgs; i++) {
        assert_string_equal(a->msgs[i].dlq_source, b->msgs[i].dlq_source);
        assert_string_equal(a->msgs[i].group_id, b->msgs[i].group_id);
        assert_int_equal(a->msgs[i].dlq_receive_count, b->msgs[i].dlq_receive_count);
        assert_int_equal(a->msgs[i].attrs.n, b->msgs[i].attrs.n);
    }
    for (size_t i = 0; i < b->n_results; i++)
        assert_string_equal(a->errors[i], b->errors[i]);
}

static void test_a_reply_decoded_or_moved_over_a_larger_one_reads_as_a_fresh_one(void **state)
{
    (void)state;
    kyu_reply_t *large = calloc(1, sizeof *large), *reused = calloc(1, sizeof *reused);
    kyu_reply_t *fresh = calloc(1, sizeof *fresh), *moved = calloc(1, sizeof *moved);
    assert_true(large && reused && fresh && moved);
    fill_large(large);
    msgpack_sbuffer lb;
    encode_reply(large, &lb);
    for (int kind = 0; kind < 3; kind++) {
        kyu_reply_t *small = calloc(1, sizeof *small);
        assert_non_null(small);
        fill_small(small, kind);
        msgpack_sbuffer sb;
        encode_reply(small, &sb);
        kyu_err_t err;
        kyu_reply_reset(reused);
        memset(reused->ids, 0xa5, offsetof(kyu_reply_t, has_attrs) - offsetof(kyu_reply_t, ids));
        assert_int_equal(kyu_reply_decode(lb.data, lb.size, reused, &err), KYU_OK);
        assert_int_equal(reused->msgs[KYU_BATCH_MAX - 1].attrs.n, 1);
        assert_non_null(reused->header);
        /* the moved-into reply holds the large one too */
        kyu_reply_move(moved, reused);
        assert_int_equal(kyu_reply_decode(lb.data, lb.size, reused, &err), KYU_OK);
        assert_int_equal(kyu_reply_decode(sb.data, sb.size, reused, &err), KYU_OK);
        assert_int_equal(kyu_reply_decode(sb.data, sb.size, fresh, &err), KYU_OK);
        assert_same_reply(reused, fresh);
        assert_same_reply(reused, small);
        assert_null(reused->header);
        kyu_reply_move(moved, reused);
        assert_same_reply(moved, fresh);
        assert_null(reused->header);
        msgpack_sbuffer_destroy(&sb);
        kyu_reply_reset(fresh);
        free(small);
    }
    msgpack_sbuffer_destroy(&lb);
    kyu_reply_reset(large);
    kyu_reply_reset(reused);
    kyu_reply_reset(moved);
    free(large);
    free(reused);
    free(fresh);
    free(moved);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_round_trips),
        cmocka_unit_test(test_queue_attribute_requests_round_trip),
        cmocka_unit_test(test_receive_wait_round_trips_and_is_checked),
        cmocka_unit_test(test_send_needs_one_to_ten_bodies),
        cmocka_unit_test(test_shape_errors_are_malformed),
        cmocka_unit_test(test_unknown_op_is_refused_with_the_request_id),
        cmocka_unit_test(test_missing_required_field_is_invalid_argument),
        cmocka_unit_test(test_queue_names_follow_sqs_rules),
        cmocka_unit_test(test_numbers_out_of_range_are_invalid_argument),
        cmocka_unit_test(test_huge_declared_containers_are_refused_without_allocating),
        cmocka_unit_test(test_deep_nesting_and_trailing_bytes_are_refused),
        cmocka_unit_test(test_every_truncation_of_a_valid_header_is_refused),
        cmocka_unit_test(test_reply_round_trips),
        cmocka_unit_test(test_a_reply_decoded_or_moved_over_a_larger_one_reads_as_a_fresh_one),
        cmocka_unit_test(test_cluster_status_reply_round_trips),
        cmocka_unit_test(test_request_key_round_trips_on_writes_only),
        cmocka_unit_test(test_error_reply_carries_code_text_and_leader),
        cmocka_unit_test(test_cluster_add_and_remove_requests_round_trip_and_are_checked),
        cmocka_unit_test(test_code_names_are_stable),
        cmocka_unit_test(test_peek_and_purge_requests_round_trip_and_are_checked),
        cmocka_unit_test(test_untag_requests_round_trip_and_tags_must_be_utf8),
        cmocka_unit_test(test_topic_requests_and_replies_round_trip),
        cmocka_unit_test(test_delete_and_change_visibility_batches_take_an_entry_id_per_handle),
        cmocka_unit_test(test_change_visibility_batches_take_a_timeout_per_entry),
        cmocka_unit_test(test_a_bad_from_is_invalid_argument),
        cmocka_unit_test(test_peek_reply_round_trips),
        cmocka_unit_test(test_move_task_requests_round_trip_and_are_checked),
        cmocka_unit_test(test_move_task_replies_round_trip),
        cmocka_unit_test(test_fields_above_bit_31_are_encoded_and_checked),
        cmocka_unit_test(test_worker_requests_round_trip),
        cmocka_unit_test(test_worker_requests_are_checked),
        cmocka_unit_test(test_worker_name_and_credit_shapes_are_checked),
        cmocka_unit_test(test_worker_replies_and_pushes_round_trip),
        cmocka_unit_test(test_a_lean_reply_encodes_as_a_cleared_one),
        cmocka_unit_test(test_fifo_fields_round_trip_and_are_checked),
    };
    return cmocka_run_group_tests_name("codec", tests, NULL, NULL);
}
