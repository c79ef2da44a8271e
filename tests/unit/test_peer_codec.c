/* The peer message codec (broker/peer_codec.c), the only codec of Raft messages: every
 * message type round-trips field by field, and truncated, reshaped, lying or out-of-range
 * input is refused, never trusted (the stored fuzz corpus in tests/raft/corpus/raft_msg
 * replays more of it, through kyu_raft_step too). Also the
 * cluster configuration parser (broker/peers.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "peer_codec.h"
#include "peers.h"

static uint8_t data_a[] = {1, 2, 3}, chunk[] = {9, 8, 7, 6};

static kyu_raft_msg_t sample_append(void)
{
    static kyu_raft_entry_t entries[3];
    entries[0] = (kyu_raft_entry_t){.term = 5,
                                    .index = 10,
                                    .type = KYU_RAFT_ENTRY_NORMAL,
                                    .data = data_a,
                                    .len = sizeof data_a};
    entries[1] = (kyu_raft_entry_t){.term = 5, .index = 11, .type = KYU_RAFT_ENTRY_NOOP};
    entries[2] = (kyu_raft_entry_t){
        .term = 6, .index = 12, .type = KYU_RAFT_ENTRY_CONF, .data = data_a, .len = 1};
    return (kyu_raft_msg_t){.type = KYU_RAFT_MSG_APPEND,
                            .group = 1,
                            .from = 2,
                            .to = 3,
                            .term = 6,
                            .log_term = 4,
                            .index = 9,
                            .commit = 8,
                            .entries = entries,
                            .n_entries = 3};
}

static kyu_raft_msg_t sample_snapshot(void)
{
    kyu_raft_msg_t m = {.type = KYU_RAFT_MSG_SNAPSHOT,
                        .group = 1,
                        .from = 1,
                        .to = 2,
                        .term = 7,
                        .log_term = 3,
                        .index = 100,
                        .snap_offset = 4,
                        .snap_total = 8,
                        .snap_data = chunk,
                        .snap_len = sizeof chunk};
    m.snap_conf.n_voters = 3;
    m.snap_conf.voters[0] = 1;
    m.snap_conf.voters[1] = 2;
    m.snap_conf.voters[2] = 3;
    m.snap_conf.n_learners = 1;
    m.snap_conf.learners[0] = 4;
    return m;
}

static void encode(const kyu_raft_msg_t *m, msgpack_sbuffer *b)
{
    msgpack_sbuffer_init(b);
    kyu_peer_encode(m, b);
}

static void assert_same(const kyu_raft_msg_t *a, const kyu_raft_msg_t *b)
{
    assert_int_equal(a->type, b->type);
    assert_int_equal(a->group, b->group);
    assert_int_equal(a->from, b->from);
    assert_int_equal(a->to, b->to);
    assert_int_equal(a->term, b->term);
    assert_int_equal(a->log_term, b->log_term);
    assert_int_equal(a->index, b->index);
    assert_int_equal(a->commit, b->commit);
    assert_int_equal(a->reject, b->reject);
    assert_int_equal(a->reject_hint, b->reject_hint);
    assert_int_equal(a->force, b->force);
    assert_int_equal(a->n_entries, b->n_entries);
    for (size_t i = 0; i < a->n_entries; i++) {
        assert_int_equal(a->entries[i].term, b->entries[i].term);
        assert_int_equal(a->entries[i].index, b->entries[i].index);
        assert_int_equal(a->entries[i].type, b->entries[i].type);
        assert_int_equal(a->entries[i].len, b->entries[i].len);
        if (a->entries[i].len)
            assert_memory_equal(a->entries[i].data, b->entries[i].data, a->entries[i].len);
    }
    assert_int_equal(a->snap_offset, b->snap_offset);
    assert_int_equal(a->snap_total, b->snap_total);
    assert_int_equal(a->snap_len, b->snap_len);
    if (a->snap_len)
        assert_memory_equal(a->snap_data, b->snap_data, a->snap_len);
    assert_memory_equal(&a->snap_conf, &b->snap_conf, sizeof a->snap_conf);
}

static void round_trip(const kyu_raft_msg_t *m)
{
    msgpack_sbuffer b;
    encode(m, &b);
    kyu_peer_decoded_t d;
    kyu_err_t err;
    assert_int_equal(kyu_peer_decode(b.data, b.size, &d, &err), KYU_OK);
    assert_same(m, &d.msg);
    kyu_peer_decoded_reset(&d);
    msgpack_sbuffer_destroy(&b);
}

static void test_append_with_entries_round_trips(void **state)
{
    (void)state;
    kyu_raft_msg_t m = sample_append();
    round_trip(&m);
}

static void test_every_message_type_round_trips(void **state)
{
    (void)state;
    for (int t = KYU_RAFT_MSG_APPEND_RESP; t <= KYU_RAFT_MSG_TIMEOUT_NOW; t++) {
        if (t == KYU_RAFT_MSG_SNAPSHOT)
            continue;
        kyu_raft_msg_t m = {.type = (kyu_raft_msg_type_t)t,
                            .group = 1,
                            .from = 9,
                            .to = 1,
                            .term = UINT64_MAX,
                            .log_term = 3,
                            .index = UINT64_MAX - 1,
                            .commit = 2,
                            .reject = true,
                            .reject_hint = 7,
                            .force = true};
        round_trip(&m);
    }
}

static void test_snapshot_chunk_round_trips(void **state)
{
    (void)state;
    kyu_raft_msg_t m = sample_snapshot();
    round_trip(&m);
}

static void test_every_truncation_is_refused(void **state)
{
    (void)state;
    kyu_raft_msg_t msgs[2] = {sample_append(), sample_snapshot()};
    for (int k = 0; k < 2; k++) {
        msgpack_sbuffer b;
        encode(&msgs[k], &b);
        for (size_t len = 0; len < b.size; len++) {
            kyu_peer_decoded_t d;
            kyu_err_t err;
            assert_int_not_equal(kyu_peer_decode(b.data, len, &d, &err), KYU_OK);
        }
        msgpack_sbuffer_destroy(&b);
    }
}

/* Flips each byte of a valid message to a few values: the decoder must answer every time
 * (ASan and UBSan check it touches nothing it should not). */
static void test_corrupted_bytes_never_crash(void **state)
{
    (void)state;
    kyu_raft_msg_t m = sample_append();
    msgpack_sbuffer b;
    encode(&m, &b);
    uint8_t *copy = malloc(b.size);
    assert_non_null(copy);
    static const uint8_t values[] = {0x00, 0x7f, 0xc0, 0xc2, 0xc4, 0xdc, 0xdd, 0xff};
    for (size_t i = 0; i < b.size; i++)
        for (size_t v = 0; v < sizeof values; v++) {
            memcpy(copy, b.data, b.size);
            copy[i] = values[v];
            kyu_peer_decoded_t d;
            kyu_err_t err;
            if (kyu_peer_decode(copy, b.size, &d, &err) == KYU_OK)
                kyu_peer_decoded_reset(&d);
        }
    free(copy);
    msgpack_sbuffer_destroy(&b);
}

static void expect_refused(kyu_raft_msg_t *m)
{
    msgpack_sbuffer b;
    encode(m, &b);
    kyu_peer_decoded_t d;
    kyu_err_t err;
    assert_int_equal(kyu_peer_decode(b.data, b.size, &d, &err), KYU_ERR_MALFORMED);
    msgpack_sbuffer_destroy(&b);
}

static void test_out_of_range_fields_are_refused(void **state)
{
    (void)state;
    kyu_raft_msg_t m = sample_append();
    m.type = (kyu_raft_msg_type_t)(KYU_RAFT_MSG_TIMEOUT_NOW + 1);
    expect_refused(&m);
    m = sample_append();
    m.from = KYU_RAFT_NONE;
    expect_refused(&m);
    m = sample_append();
    m.entries[2].type = (kyu_raft_entry_type_t)7; /* unknown entry type */
    expect_refused(&m);
    m = sample_append();
    m.entries[1].index = 42; /* not consecutive */
    expect_refused(&m);
    m = sample_append();
    m.type = KYU_RAFT_MSG_VOTE; /* entries on a message that carries none */
    expect_refused(&m);
    m = sample_snapshot();
    m.snap_offset = 6; /* chunk runs past the total */
    expect_refused(&m);
    m = sample_snapshot();
    m.snap_conf.voters[1] = KYU_RAFT_NONE;
    expect_refused(&m);
}

static void test_other_shapes_are_refused(void **state)
{
    (void)state;
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 0);
    kyu_peer_decoded_t d;
    kyu_err_t err;
    assert_int_equal(kyu_peer_decode(b.data, b.size, &d, &err), KYU_ERR_MALFORMED);
    msgpack_sbuffer_clear(&b);
    msgpack_pack_array(&pk, 14); /* right length, all nil */
    for (int i = 0; i < 14; i++)
        msgpack_pack_nil(&pk);
    assert_int_equal(kyu_peer_decode(b.data, b.size, &d, &err), KYU_ERR_MALFORMED);
    msgpack_sbuffer_destroy(&b);
}

static kyu_code_t decode_bytes(const uint8_t *buf, size_t len)
{
    kyu_peer_decoded_t d;
    kyu_err_t err;
    kyu_code_t rc = kyu_peer_decode(buf, len, &d, &err);
    if (rc == KYU_OK)
        kyu_peer_decoded_reset(&d);
    return rc;
}

/* after_persist is the sender's own business (when it may send), never on the wire; an
 * entry without data decodes with a NULL pointer, not a pointer into the input. */
static void test_local_fields_stay_off_the_wire(void **state)
{
    (void)state;
    kyu_raft_msg_t m = sample_append();
    m.after_persist = true;
    msgpack_sbuffer b;
    encode(&m, &b);
    kyu_peer_decoded_t d;
    kyu_err_t err;
    assert_int_equal(kyu_peer_decode(b.data, b.size, &d, &err), KYU_OK);
    assert_false(d.msg.after_persist);
    assert_int_equal(d.msg.entries[1].len, 0);
    assert_null(d.msg.entries[1].data);
    kyu_peer_decoded_reset(&d);
    msgpack_sbuffer_destroy(&b);
}

static void test_trailing_bytes_are_refused(void **state)
{
    (void)state;
    kyu_raft_msg_t m = sample_append();
    msgpack_sbuffer b;
    encode(&m, &b);
    msgpack_sbuffer_write(&b, "\xc0", 1); /* one more object (nil) after the message */
    assert_int_equal(decode_bytes((const uint8_t *)b.data, b.size), KYU_ERR_MALFORMED);
    msgpack_sbuffer_destroy(&b);
}

/* Headers whose counts or lengths promise far more than the input holds are refused by the
 * bounds walker before msgpack-c allocates anything for them. */
static void test_lying_lengths_and_unknown_formats_are_refused(void **state)
{
    (void)state;
    static const uint8_t not_array[] = {0x01}, empty_array[] = {0x90};
    static const uint8_t array_liar[] = {0xdd, 0xff, 0xff, 0xff, 0xff};     /* 4 G elements */
    static const uint8_t bin_liar[] = {0xc6, 0xff, 0xff, 0xff, 0xff, 0x00}; /* 4 GB bin */
    static const uint8_t map_liar[] = {0xdc, 0x00, 0x0e, 0x01, 0xdf, 0xff, 0xff, 0xff, 0xff};
    assert_int_equal(decode_bytes(not_array, sizeof not_array), KYU_ERR_MALFORMED);
    assert_int_equal(decode_bytes(empty_array, sizeof empty_array), KYU_ERR_MALFORMED);
    assert_int_equal(decode_bytes(array_liar, sizeof array_liar), KYU_ERR_MALFORMED);
    assert_int_equal(decode_bytes(bin_liar, sizeof bin_liar), KYU_ERR_MALFORMED);
    assert_int_equal(decode_bytes(map_liar, sizeof map_liar), KYU_ERR_MALFORMED);
    kyu_raft_msg_t m = sample_append();
    msgpack_sbuffer b;
    encode(&m, &b);
    assert_int_equal((uint8_t)b.data[1], KYU_PEER_FORMAT); /* fixarray, then the format */
    b.data[1] = KYU_PEER_FORMAT + 1;
    assert_int_equal(decode_bytes((const uint8_t *)b.data, b.size), KYU_ERR_MALFORMED);
    msgpack_sbuffer_destroy(&b);
}

/* Several bytes changed at once, at pseudo-random places and values (a fixed seed): the
 * decoder answers every time and whatever it accepts it frees (ASan checks both). */
static void test_random_corruption_never_crashes(void **state)
{
    (void)state;
    kyu_raft_msg_t msgs[2] = {sample_append(), sample_snapshot()};
    uint64_t x = 12345;
    for (int k = 0; k < 2; k++) {
        msgpack_sbuffer b;
        encode(&msgs[k], &b);
        uint8_t *copy = malloc(b.size);
        assert_non_null(copy);
        for (int round = 0; round < 10000; round++) {
            memcpy(copy, b.data, b.size);
            for (int n = 0; n < 3; n++) {
                x = x * 6364136223846793005ull + 1442695040888963407ull;
                copy[(x >> 33) % b.size] = (uint8_t)(x >> 17);
            }
            kyu_code_t rc = decode_bytes(copy, b.size);
            assert_true(rc == KYU_OK || rc == KYU_ERR_MALFORMED);
        }
        free(copy);
        msgpack_sbuffer_destroy(&b);
    }
}

static void test_peer_list_parses_flags_and_env_form(void **state)
{
    (void)state;
    kyu_peers_t p = {0};
    kyu_err_t err;
    assert_int_equal(kyu_peers_add(&p, "1,127.0.0.1:7701,tcp://127.0.0.1:7700", &err), KYU_OK);
    assert_int_equal(
        kyu_peers_add_list(&p, "2,h2:7711,tcp://h2:7710;3,h3:7721,tcp://h3:7720", &err), KYU_OK);
    assert_int_equal(p.n, 3);
    assert_string_equal(kyu_peers_find(&p, 2)->raft, "tcp://h2:7711");
    assert_string_equal(kyu_peers_find(&p, 3)->client, "tcp://h3:7720");
    assert_null(kyu_peers_find(&p, 4));
}

static void test_bad_peer_entries_are_refused(void **state)
{
    (void)state;
    static const char *bad[] = {
        "",
        "1",
        "1,h:1",
        "0,h:1,tcp://h:2",
        "-1,h:1,tcp://h:2",
        "x,h:1,tcp://h:2",
        "1,h,tcp://h:2",
        "1,,tcp://h:2",
        "1,h:1,",
        "1,tcp://h:1,tcp://h:2",
        "99999999999999999999,h:1,tcp://h:2",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kyu_peers_t p = {0};
        kyu_err_t err;
        assert_int_equal(kyu_peers_add(&p, bad[i], &err), KYU_ERR_INVALID_ARGUMENT);
    }
    kyu_peers_t p = {0};
    kyu_err_t err;
    assert_int_equal(kyu_peers_add_list(&p, "1,a:1,tcp://a:2;1,b:1,tcp://b:2", &err),
                     KYU_ERR_INVALID_ARGUMENT); /* duplicate id */
}

/* A node binds its own addresses: ZeroMQ cannot bind host names, so names are resolved. */
static void test_own_addresses_with_host_names_are_bound_by_address(void **state)
{
    (void)state;
    char out[KYU_ENDPOINT_MAX];
    kyu_endpoint_for_bind("tcp://localhost:7701", out, sizeof out);
    assert_true(strcmp(out, "tcp://127.0.0.1:7701") == 0 || strcmp(out, "tcp://[::1]:7701") == 0);
    const char *unchanged[] = {"tcp://127.0.0.1:7700",
                               "tcp://*:7700",
                               "tcp://[::1]:7700",
                               "ipc:///tmp/kyu.sock",
                               "tcp://no-such-host.invalid:7700",
                               "tcp://nocolon"};
    for (size_t i = 0; i < sizeof unchanged / sizeof unchanged[0]; i++) {
        kyu_endpoint_for_bind(unchanged[i], out, sizeof out);
        assert_string_equal(out, unchanged[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_with_entries_round_trips),
        cmocka_unit_test(test_every_message_type_round_trips),
        cmocka_unit_test(test_snapshot_chunk_round_trips),
        cmocka_unit_test(test_every_truncation_is_refused),
        cmocka_unit_test(test_corrupted_bytes_never_crash),
        cmocka_unit_test(test_out_of_range_fields_are_refused),
        cmocka_unit_test(test_other_shapes_are_refused),
        cmocka_unit_test(test_local_fields_stay_off_the_wire),
        cmocka_unit_test(test_trailing_bytes_are_refused),
        cmocka_unit_test(test_lying_lengths_and_unknown_formats_are_refused),
        cmocka_unit_test(test_random_corruption_never_crashes),
        cmocka_unit_test(test_peer_list_parses_flags_and_env_form),
        cmocka_unit_test(test_bad_peer_entries_are_refused),
        cmocka_unit_test(test_own_addresses_with_host_names_are_bound_by_address),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
