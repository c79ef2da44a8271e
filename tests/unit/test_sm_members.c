/* sm_members.c and the SET_MEMBER / DROP_MEMBER commands (command.c): the replicated
 * address book. */
#include "fixture.h"

#include <string.h>

static kyu_command_t cmd_member(kyu_cmd_type_t type, uint64_t id, const char *raft,
                                const char *client)
{
    kyu_command_t c;
    memset(&c, 0, sizeof c);
    c.type = type;
    c.now_ms = 1000;
    c.vt = -1;
    c.member_id = id;
    snprintf(c.member_raft, sizeof c.member_raft, "%s", raft);
    snprintf(c.member_client, sizeof c.member_client, "%s", client);
    return c;
}

static kyu_code_t decode_one(const msgpack_sbuffer *b, kyu_command_t *out)
{
    size_t off = 0;
    kyu_err_t err;
    kyu_code_t rc = kyu_command_decode(b->data, b->size, &off, out, &err);
    if (rc == KYU_OK && off != b->size)
        return KYU_ERR_MALFORMED;
    return rc;
}

static void test_set_member_round_trips(void **state)
{
    (void)state;
    kyu_command_t c = cmd_member(KYU_CMD_SET_MEMBER, 4, "tcp://h4:7701", "tcp://h4:7700"), d;
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    kyu_command_encode(&c, &b);
    assert_int_equal(decode_one(&b, &d), KYU_OK);
    assert_int_equal(d.type, KYU_CMD_SET_MEMBER);
    assert_int_equal(d.member_id, 4);
    assert_string_equal(d.member_raft, "tcp://h4:7701");
    assert_string_equal(d.member_client, "tcp://h4:7700");
    msgpack_sbuffer_destroy(&b);
}

static void test_drop_member_round_trips(void **state)
{
    (void)state;
    kyu_command_t c = cmd_member(KYU_CMD_DROP_MEMBER, INT64_MAX, "", ""), d;
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    kyu_command_encode(&c, &b);
    assert_int_equal(decode_one(&b, &d), KYU_OK);
    assert_int_equal(d.type, KYU_CMD_DROP_MEMBER);
    assert_int_equal(d.member_id, INT64_MAX);
    msgpack_sbuffer_destroy(&b);
}

/* [type, now, queue, vt, max, items] with items packed by the caller's function. */
static void pack_member(msgpack_sbuffer *b, uint32_t type, void (*items)(msgpack_packer *))
{
    msgpack_packer pk;
    msgpack_sbuffer_clear(b);
    msgpack_packer_init(&pk, b, msgpack_sbuffer_write);
    pack_command_head(&pk, type, 1, "", -1, 0);
    items(&pk);
}

static void items_id0(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 3);
    msgpack_pack_uint64(pk, 0);
    kyu_mp_pack_str(pk, "tcp://a:1");
    kyu_mp_pack_str(pk, "tcp://a:2");
}

static void items_id_too_big(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 3);
    msgpack_pack_uint64(pk, (uint64_t)INT64_MAX + 1);
    kyu_mp_pack_str(pk, "tcp://a:1");
    kyu_mp_pack_str(pk, "tcp://a:2");
}

static void items_empty_address(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 3);
    msgpack_pack_uint64(pk, 4);
    kyu_mp_pack_str(pk, "");
    kyu_mp_pack_str(pk, "tcp://a:2");
}

static void items_huge_address(msgpack_packer *pk)
{
    char big[KYU_ENDPOINT_MAX + 10];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    msgpack_pack_array(pk, 3);
    msgpack_pack_uint64(pk, 4);
    kyu_mp_pack_str(pk, big);
    kyu_mp_pack_str(pk, "tcp://a:2");
}

static void items_nul_in_address(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 3);
    msgpack_pack_uint64(pk, 4);
    msgpack_pack_str(pk, 5);
    msgpack_pack_str_body(pk, "a\0b:1", 5);
    kyu_mp_pack_str(pk, "tcp://a:2");
}

static void items_missing_client(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 2);
    msgpack_pack_uint64(pk, 4);
    kyu_mp_pack_str(pk, "tcp://a:1");
}

static void items_string_id(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 1);
    kyu_mp_pack_str(pk, "4");
}

static void test_malformed_member_commands_do_not_decode(void **state)
{
    (void)state;
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    kyu_command_t d;
    void (*bad_set[])(msgpack_packer *) = {
        items_id0,          items_id_too_big,     items_empty_address,
        items_huge_address, items_nul_in_address, items_missing_client,
        items_string_id};
    for (size_t i = 0; i < sizeof bad_set / sizeof bad_set[0]; i++) {
        pack_member(&b, KYU_CMD_SET_MEMBER, bad_set[i]);
        assert_int_equal(decode_one(&b, &d), KYU_ERR_MALFORMED);
    }
    pack_member(&b, KYU_CMD_DROP_MEMBER, items_string_id);
    assert_int_equal(decode_one(&b, &d), KYU_ERR_MALFORMED);
    pack_member(&b, KYU_CMD_DROP_MEMBER, items_missing_client);
    assert_int_equal(decode_one(&b, &d), KYU_ERR_MALFORMED);
    pack_member(&b, 9, items_missing_client); /* unknown command type */
    assert_int_equal(decode_one(&b, &d), KYU_ERR_MALFORMED);
    msgpack_sbuffer_destroy(&b);
}

static void test_set_member_is_in_the_book_and_survives_a_restart(void **state)
{
    fixture_t *f = *state;
    assert_null(kyu_sm_member(f->sm, 4));
    kyu_result_t r = apply1(f, cmd_member(KYU_CMD_SET_MEMBER, 4, "tcp://h4:1", "tcp://h4:2"));
    assert_int_equal(r.code, KYU_OK);
    fixture_reopen(f);
    const kyu_peer_t *p = kyu_sm_member(f->sm, 4);
    assert_non_null(p);
    assert_string_equal(p->raft, "tcp://h4:1");
    assert_string_equal(p->client, "tcp://h4:2");
    const kyu_peer_t *all = NULL;
    assert_int_equal(kyu_sm_members(f->sm, &all), 1);
}

static void test_set_member_again_replaces_the_address(void **state)
{
    fixture_t *f = *state;
    apply1(f, cmd_member(KYU_CMD_SET_MEMBER, 4, "tcp://h4:1", "tcp://h4:2"));
    apply1(f, cmd_member(KYU_CMD_SET_MEMBER, 4, "tcp://n4:1", "tcp://n4:2"));
    const kyu_peer_t *all = NULL;
    assert_int_equal(kyu_sm_members(f->sm, &all), 1);
    assert_string_equal(kyu_sm_member(f->sm, 4)->raft, "tcp://n4:1");
}

static void test_drop_member_removes_it_also_after_a_restart(void **state)
{
    fixture_t *f = *state;
    apply1(f, cmd_member(KYU_CMD_SET_MEMBER, 4, "tcp://h4:1", "tcp://h4:2"));
    apply1(f, cmd_member(KYU_CMD_SET_MEMBER, 5, "tcp://h5:1", "tcp://h5:2"));
    assert_int_equal(apply1(f, cmd_member(KYU_CMD_DROP_MEMBER, 4, "", "")).code, KYU_OK);
    assert_null(kyu_sm_member(f->sm, 4));
    /* dropping an unknown node changes nothing */
    assert_int_equal(apply1(f, cmd_member(KYU_CMD_DROP_MEMBER, 77, "", "")).code, KYU_OK);
    fixture_reopen(f);
    assert_null(kyu_sm_member(f->sm, 4));
    assert_non_null(kyu_sm_member(f->sm, 5));
}

static void test_the_book_is_bounded(void **state)
{
    fixture_t *f = *state;
    for (uint64_t id = 1; id <= KYU_SM_MEMBERS_MAX; id++)
        assert_int_equal(
            apply1(f, cmd_member(KYU_CMD_SET_MEMBER, id, "tcp://h:1", "tcp://h:2")).code, KYU_OK);
    kyu_result_t r =
        apply1(f, cmd_member(KYU_CMD_SET_MEMBER, KYU_SM_MEMBERS_MAX + 1, "tcp://h:1", "tcp://h:2"));
    assert_int_equal(r.code, KYU_ERR_LIMIT_EXCEEDED);
    assert_null(kyu_sm_member(f->sm, KYU_SM_MEMBERS_MAX + 1));
    /* replacing an entry still works when full */
    assert_int_equal(apply1(f, cmd_member(KYU_CMD_SET_MEMBER, 1, "tcp://x:1", "tcp://x:2")).code,
                     KYU_OK);
}

static void test_member_commands_mix_with_queue_commands_in_one_entry(void **state)
{
    fixture_t *f = *state;
    kyu_command_t cmds[2] = {cmd_create("orders", -1),
                             cmd_member(KYU_CMD_SET_MEMBER, 4, "tcp://h4:1", "tcp://h4:2")};
    kyu_result_t res[2];
    apply_entry(f, cmds, 2, res);
    assert_int_equal(res[0].code, KYU_OK);
    assert_int_equal(res[1].code, KYU_OK);
    kyu_result_clear(&res[0]);
    kyu_result_clear(&res[1]);
    assert_true(kyu_sm_queue_exists(f->sm, "orders"));
    assert_non_null(kyu_sm_member(f->sm, 4));
    /* an entry that reads (a receive) writes through the indexed batch */
    kyu_command_t reading[2] = {cmd_receive("orders", 2000, 1, 30),
                                cmd_member(KYU_CMD_DROP_MEMBER, 4, "", "")};
    apply_entry(f, reading, 2, res);
    kyu_result_clear(&res[0]);
    kyu_result_clear(&res[1]);
    assert_null(kyu_sm_member(f->sm, 4));
    fixture_reopen(f);
    assert_null(kyu_sm_member(f->sm, 4));
}

static void test_peer_parse_refuses_bad_addresses(void **state)
{
    (void)state;
    const char *bad[] = {"0,h:1,tcp://h:2",   "4,h,tcp://h:2",
                         "4,h:0,tcp://h:2",   "4,h:65536,tcp://h:2",
                         "4,h:1x,tcp://h:2",  "4,:1,tcp://h:2",
                         "4,h:1,nowhere",     "4,h:1,tcp://h:2 x",
                         "4,h/x:1,tcp://h:2", "9223372036854775808,h:1,tcp://h:2"};
    kyu_peer_t p;
    kyu_err_t err;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(kyu_peer_parse(bad[i], &p, &err), KYU_ERR_INVALID_ARGUMENT);
    assert_int_equal(kyu_peer_parse("9223372036854775807,h:65535,tcp://h:2", &p, &err), KYU_OK);
    assert_string_equal(p.raft, "tcp://h:65535");
}

#define T(name) cmocka_unit_test_setup_teardown(name, fixture_setup, fixture_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_set_member_round_trips),
        cmocka_unit_test(test_drop_member_round_trips),
        cmocka_unit_test(test_malformed_member_commands_do_not_decode),
        T(test_set_member_is_in_the_book_and_survives_a_restart),
        T(test_set_member_again_replaces_the_address),
        T(test_drop_member_removes_it_also_after_a_restart),
        T(test_the_book_is_bounded),
        T(test_member_commands_mix_with_queue_commands_in_one_entry),
        cmocka_unit_test(test_peer_parse_refuses_bad_addresses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
