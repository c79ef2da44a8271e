/*
 * test_raft_codec.c - the msgpack codec of Raft messages: round trips, and refusal of
 * every malformed input (truncations, trailing bytes, wrong types, lying lengths, random
 * corruption) without crashing or leaking.
 */
#include "raft_codec.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

static kyu_raft_entry_t ents[3] = {
    {.term = 4, .index = 11, .type = KYU_RAFT_ENTRY_NORMAL, .data = (uint8_t *)"abc", .len = 3},
    {.term = 4, .index = 12, .type = KYU_RAFT_ENTRY_NOOP},
    {.term = 5, .index = 13, .type = KYU_RAFT_ENTRY_NORMAL, .data = (uint8_t *)"\0\1", .len = 2},
};

static kyu_raft_msg_t sample_append(void)
{
    kyu_raft_msg_t m = {.type = KYU_RAFT_MSG_APPEND,
                        .group = 1,
                        .from = 2,
                        .to = 3,
                        .term = 5,
                        .log_term = 4,
                        .index = 10,
                        .commit = UINT64_MAX,
                        .entries = ents,
                        .n_entries = 3,
                        .after_persist = true};
    return m;
}

static void test_codec_round_trips_an_append(void **state)
{
    (void)state;
    kyu_raft_msg_t m = sample_append(), d;
    uint8_t *buf;
    size_t len;
    assert_true(kyu_raft_msg_encode(&m, &buf, &len));
    assert_true(kyu_raft_msg_decode(buf, len, &d));
    assert_int_equal(d.type, m.type);
    assert_int_equal(d.commit, UINT64_MAX);
    assert_int_equal(d.index, 10);
    assert_int_equal(d.n_entries, 3);
    assert_int_equal(d.entries[0].len, 3);
    assert_memory_equal(d.entries[0].data, "abc", 3);
    assert_int_equal(d.entries[1].type, KYU_RAFT_ENTRY_NOOP);
    assert_null(d.entries[1].data);
    assert_int_equal(d.entries[2].term, 5);
    assert_false(d.after_persist); /* local to the sender, never on the wire */
    kyu_raft_msg_decoded_free(&d);
    free(buf);
}

static void test_codec_round_trips_a_snapshot_chunk(void **state)
{
    (void)state;
    uint8_t data[100];
    for (int i = 0; i < 100; i++)
        data[i] = (uint8_t)i;
    kyu_raft_msg_t m = {.type = KYU_RAFT_MSG_SNAPSHOT,
                        .group = 7,
                        .from = 1,
                        .to = 2,
                        .term = 9,
                        .index = 500,
                        .log_term = 8,
                        .snap_offset = 200,
                        .snap_total = 1000,
                        .snap_data = data,
                        .snap_len = 100,
                        .snap_conf = {.n_voters = 3,
                                      .voters = {1, 2, 3},
                                      .n_learners = 1,
                                      .learners = {4}}},
                   d;
    uint8_t *buf;
    size_t len;
    assert_true(kyu_raft_msg_encode(&m, &buf, &len));
    assert_true(kyu_raft_msg_decode(buf, len, &d));
    assert_int_equal(d.snap_offset, 200);
    assert_int_equal(d.snap_total, 1000);
    assert_int_equal(d.snap_len, 100);
    assert_memory_equal(d.snap_data, data, 100);
    assert_int_equal(d.snap_conf.n_voters, 3);
    assert_int_equal(d.snap_conf.learners[0], 4);
    assert_int_equal(d.group, 7);
    kyu_raft_msg_decoded_free(&d);
    free(buf);
}

static void test_codec_refuses_every_truncation_and_trailing_bytes(void **state)
{
    (void)state;
    kyu_raft_msg_t m = sample_append(), d;
    uint8_t *buf;
    size_t len;
    assert_true(kyu_raft_msg_encode(&m, &buf, &len));
    for (size_t n = 0; n < len; n++)
        assert_false(kyu_raft_msg_decode(buf, n, &d));
    uint8_t *longer = malloc(len + 1);
    assert_non_null(longer);
    memcpy(longer, buf, len);
    longer[len] = 0xc0;
    assert_false(kyu_raft_msg_decode(longer, len + 1, &d));
    free(longer);
    free(buf);
}

static void test_codec_refuses_wrong_shapes(void **state)
{
    (void)state;
    kyu_raft_msg_t d;
    const uint8_t not_array[] = {0x01};
    assert_false(kyu_raft_msg_decode(not_array, sizeof(not_array), &d));
    const uint8_t empty_array[] = {0x90};
    assert_false(kyu_raft_msg_decode(empty_array, sizeof(empty_array), &d));
    /* An array header claiming 4 billion elements in 5 bytes. */
    const uint8_t liar[] = {0xdd, 0xff, 0xff, 0xff, 0xff};
    assert_false(kyu_raft_msg_decode(liar, sizeof(liar), &d));
    /* A bin header claiming 4 GB. */
    const uint8_t bin_liar[] = {0xc6, 0xff, 0xff, 0xff, 0xff, 0x00};
    assert_false(kyu_raft_msg_decode(bin_liar, sizeof(bin_liar), &d));
    /* A map header claiming 4 billion pairs, inside a valid-looking message prefix. */
    const uint8_t map_liar[] = {0xdc, 0x00, 0x13, 0x01, 0xdf, 0xff, 0xff, 0xff, 0xff};
    assert_false(kyu_raft_msg_decode(map_liar, sizeof(map_liar), &d));
    /* Version 2 is unknown. */
    kyu_raft_msg_t m = sample_append();
    uint8_t *buf;
    size_t len;
    assert_true(kyu_raft_msg_encode(&m, &buf, &len));
    buf[1] = 0x02;
    assert_false(kyu_raft_msg_decode(buf, len, &d));
    free(buf);
}

static void test_codec_survives_random_corruption(void **state)
{
    (void)state;
    kyu_raft_msg_t m = sample_append(), d;
    uint8_t *buf;
    size_t len;
    assert_true(kyu_raft_msg_encode(&m, &buf, &len));
    uint8_t *copy = malloc(len);
    assert_non_null(copy);
    uint64_t x = 12345;
    for (int round = 0; round < 20000; round++) {
        memcpy(copy, buf, len);
        for (int k = 0; k < 3; k++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            copy[(x >> 33) % len] = (uint8_t)(x >> 17);
        }
        if (kyu_raft_msg_decode(copy, len, &d))
            kyu_raft_msg_decoded_free(&d);
    }
    free(copy);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codec_round_trips_an_append),
        cmocka_unit_test(test_codec_round_trips_a_snapshot_chunk),
        cmocka_unit_test(test_codec_refuses_every_truncation_and_trailing_bytes),
        cmocka_unit_test(test_codec_refuses_wrong_shapes),
        cmocka_unit_test(test_codec_survives_random_corruption),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
