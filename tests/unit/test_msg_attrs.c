/* Message attributes (proto/msg_attrs.c): SQS's rules for names, types and values, the MD5s
 * SQS's SDKs check (AWS's documented vectors), and their msgpack form in request and reply
 * headers (a decoded reply keeps its own copy of the attributes' bytes). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h" /* msg_attr */
#include "protocol.h"

static kyu_msg_attrs_t one(kyu_msg_attr_t a)
{
    kyu_msg_attrs_t as = {.n = 1};
    as.a[0] = a;
    return as;
}

static void expect_refused(kyu_msg_attrs_t as, const char *text)
{
    kyu_err_t err;
    kyu_err_clear(&err);
    kyu_code_t rc = kyu_msg_attrs_check(&as, &err);
    if (rc != KYU_ERR_INVALID_ARGUMENT || !strstr(err.msg, text))
        fail_msg("expected INVALID_ARGUMENT mentioning '%s', got %s: %s", text, kyu_code_name(rc),
                 err.msg);
}

static void expect_accepted(kyu_msg_attrs_t as)
{
    kyu_err_t err;
    kyu_err_clear(&err);
    if (kyu_msg_attrs_check(&as, &err) != KYU_OK)
        fail_msg("expected OK, got %s", err.msg);
}

static void test_names_follow_sqs_rules(void **state)
{
    (void)state;
    expect_accepted(one(msg_attr("a.b-c_D9", "String", "v")));
    char longest[KYU_ATTR_NAME_MAX + 2];
    memset(longest, 'n', sizeof longest - 1);
    longest[KYU_ATTR_NAME_MAX] = '\0';
    expect_accepted(one(msg_attr(longest, "String", "v")));
    longest[KYU_ATTR_NAME_MAX] = 'n';
    longest[KYU_ATTR_NAME_MAX + 1] = '\0';
    expect_refused(one(msg_attr(longest, "String", "v")), "1 to 256");
    expect_refused(one(msg_attr("", "String", "v")), "1 to 256");
    expect_refused(one(msg_attr("a b", "String", "v")), "character");
    expect_refused(one(msg_attr("a/b", "String", "v")), "character");
    expect_refused(one(msg_attr("caf\xc3\xa9", "String", "v")), "character");
    expect_refused(one(msg_attr(".a", "String", "v")), "'..'");
    expect_refused(one(msg_attr("a.", "String", "v")), "'..'");
    expect_refused(one(msg_attr("a..b", "String", "v")), "'..'");
    expect_refused(one(msg_attr("AWS.x", "String", "v")), "reserved");
    expect_refused(one(msg_attr("aws.x", "String", "v")), "reserved");
    expect_refused(one(msg_attr("Amazon.x", "String", "v")), "reserved");
    expect_accepted(one(msg_attr("AWSx", "String", "v"))); /* only the prefixes with the dot */
}

static void test_types_are_string_number_binary_with_a_suffix(void **state)
{
    (void)state;
    expect_accepted(one(msg_attr("k", "Number.float", "1.5")));
    expect_accepted(one(msg_attr("k", "String.a-b_c.d", "x")));
    expect_accepted(one(msg_attr("k", "Binary.gz", "x")));
    expect_refused(one(msg_attr("k", "string", "x")), "DataType");
    expect_refused(one(msg_attr("k", "Strings", "x")), "DataType");
    expect_refused(one(msg_attr("k", "String.", "x")), "DataType");
    expect_refused(one(msg_attr("k", "String.a b", "x")), "DataType");
    expect_refused(one(msg_attr("k", "", "x")), "DataType");
    char type[KYU_ATTR_TYPE_MAX + 2] = "String.";
    memset(type + 7, 't', KYU_ATTR_TYPE_MAX - 7);
    type[KYU_ATTR_TYPE_MAX] = '\0';
    expect_accepted(one(msg_attr("k", type, "x")));
    type[KYU_ATTR_TYPE_MAX] = 't';
    type[KYU_ATTR_TYPE_MAX + 1] = '\0';
    expect_refused(one(msg_attr("k", type, "x")), "DataType");
}

static void test_values_match_their_type(void **state)
{
    (void)state;
    const char *numbers[] = {"0",       "-1",    "+2.50", "1e126",
                             "-1E-128", "0.000", ".5",    "12345678901234567890123456789012345678"};
    for (size_t i = 0; i < sizeof numbers / sizeof numbers[0]; i++)
        expect_accepted(one(msg_attr("k", "Number", numbers[i])));
    const char *bad[] = {"",
                         "1.2.3",
                         "abc",
                         "0x10",
                         "inf",
                         "nan",
                         "1e127",
                         "1e-129",
                         " 1",
                         "1 ",
                         "123456789012345678901234567890123456789"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_refused(one(msg_attr("k", "Number", bad[i])), bad[i][0] ? "Number value" : "empty");
    expect_refused(one(msg_attr("k", "String", "")), "empty value");
    expect_refused(one(msg_attr("k", "String", "a\x01")), "control character");
    expect_accepted(one(msg_attr("k", "String", "tab\tline\nret\r\xe2\x9c\x93")));
    kyu_msg_attr_t a = msg_attr("k", "Binary", "xyz");
    a.binary = false; /* sent as a str */
    expect_refused(one(a), "bin");
    a = msg_attr("k", "String", "xyz");
    a.binary = true;
    expect_refused(one(a), "str");
    static const char zeros[3] = {0, 0, 0};
    a = msg_attr("k", "Binary", "");
    a.value = zeros;
    a.value_len = 3;
    expect_accepted(one(a)); /* any bytes */
}

static void test_at_most_ten_distinct_names(void **state)
{
    (void)state;
    static const char *names[] = {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"};
    kyu_msg_attrs_t as = {.n = 10};
    for (size_t i = 0; i < 10; i++)
        as.a[i] = msg_attr(names[i], "String", "v");
    expect_accepted(as);
    as.a[9] = msg_attr("a", "Number", "1");
    expect_refused(as, "given twice");
    as.n = 11; /* past the array: only the count is read */
    expect_refused(as, "at most 10");
}

static void test_the_size_counts_names_types_and_values(void **state)
{
    (void)state;
    kyu_msg_attrs_t as = {.n = 2};
    as.a[0] = msg_attr("ab", "String", "xyz");
    as.a[1] = msg_attr("c", "Number.f", "1");
    assert_int_equal(kyu_msg_attrs_size(&as), 2 + 6 + 3 + 1 + 8 + 1);
}

/* AWS's documentation examples (REFERENCE.md). */
static void test_md5s_match_the_aws_documented_vectors(void **state)
{
    (void)state;
    char out[KYU_MD5_HEX_LEN + 1];
    kyu_md5_body_hex("hello", 5, out);
    assert_string_equal(out, "5d41402abc4b2a76b9719d911017c592");
    kyu_msg_attrs_t as = one(msg_attr("attribName1", "String", "attribValue 1"));
    kyu_md5_attrs_hex(&as, out);
    assert_string_equal(out, "19e27d4e946b072f3f58da80d94fd778");
    as = one(msg_attr("customNumberTypeAttrib", "Number.float",
                      "4563442423554324324264524243.32543234"));
    kyu_md5_attrs_hex(&as, out);
    assert_string_equal(out, "9fe1b90bbd9965bdf77bac517c7d2495");
    as = one(msg_attr("binaryAttribute", "Binary", "Hello binary world!"));
    kyu_md5_attrs_hex(&as, out);
    assert_string_equal(out, "31a92b15d92f8db860eda32aceb656c3");
    /* all three, given out of order: hashed sorted by name */
    as.n = 3;
    as.a[0] =
        msg_attr("customNumberTypeAttrib", "Number.float", "4563442423554324324264524243.32543234");
    as.a[1] = msg_attr("binaryAttribute", "Binary", "Hello binary world!");
    as.a[2] = msg_attr("attribName1", "String", "attribValue 1");
    kyu_md5_attrs_hex(&as, out);
    assert_string_equal(out, "c932db14a896c663f83c260297d594ff");
    assert_string_equal(as.a[0].name, "customNumberTypeAttrib"); /* the input stays */
    as.n = 0;
    kyu_md5_attrs_hex(&as, out);
    assert_string_equal(out, "");
}

/* RFC 1321's vectors, digest after digest on one thread's reused context, with attribute
 * digests between them, and on threads of their own at the same time. */
static const char *const rfc1321[][2] = {
    {"", "d41d8cd98f00b204e9800998ecf8427e"},
    {"a", "0cc175b9c0f1b6a831c399e269772661"},
    {"abc", "900150983cd24fb0d6963f7d28e17f72"},
    {"message digest", "f96b697d7cb7938d525a2f31aaf161d0"},
    {"abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b"},
    {"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
     "d174ab98d277d9f5a5611c2c9f419d9f"},
    {"12345678901234567890123456789012345678901234567890123456789012345678901234567890",
     "57edf4a22be3c955ac49da2e2107b67a"},
};

static void *md5_vectors(void *arg)
{
    size_t rounds = (size_t)(uintptr_t)arg;
    char out[KYU_MD5_HEX_LEN + 1];
    for (size_t r = 0; r < rounds; r++)
        for (size_t i = 0; i < sizeof rfc1321 / sizeof rfc1321[0]; i++) {
            kyu_md5_body_hex(rfc1321[i][0], strlen(rfc1321[i][0]), out);
            if (strcmp(out, rfc1321[i][1]) != 0)
                return (void *)rfc1321[i][0];
            kyu_msg_attrs_t as = one(msg_attr("attribName1", "String", "attribValue 1"));
            kyu_md5_attrs_hex(&as, out);
            if (strcmp(out, "19e27d4e946b072f3f58da80d94fd778") != 0)
                return "the attributes";
        }
    return NULL;
}

static void test_md5s_match_rfc_1321_digest_after_digest_and_on_threads(void **state)
{
    (void)state;
    assert_null(md5_vectors((void *)(uintptr_t)3));
    uint8_t a[KYU_MD5_LEN], b[KYU_MD5_LEN];
    char big[4096];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (char)(i * 7);
    kyu_md5_body(big, sizeof big, a);
    kyu_md5_body("abc", 3, b); /* a short one between */
    kyu_md5_body(big, sizeof big, b);
    assert_memory_equal(a, b, KYU_MD5_LEN);
    pthread_t t[4];
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, md5_vectors, (void *)(uintptr_t)200), 0);
    for (size_t i = 0; i < 4; i++) {
        void *bad = NULL;
        assert_int_equal(pthread_join(t[i], &bad), 0);
        assert_null(bad);
    }
}

static void test_sort_is_by_name_bytes(void **state)
{
    (void)state;
    kyu_msg_attrs_t as = {.n = 4};
    as.a[0] = msg_attr("b", "String", "1");
    as.a[1] = msg_attr("B", "String", "2");
    as.a[2] = msg_attr("ba", "String", "3");
    as.a[3] = msg_attr("a", "String", "4");
    kyu_msg_attrs_sort(&as);
    const char *want[] = {"B", "a", "b", "ba"};
    for (size_t i = 0; i < 4; i++)
        assert_string_equal(as.a[i].name, want[i]);
}

/* ---- in headers ---- */

static void test_a_send_request_carries_attributes_per_body(void **state)
{
    (void)state;
    kyu_request_t req;
    memset(&req, 0, sizeof req);
    req.op = KYU_OP_SEND;
    req.fields = KYU_F_QUEUE | KYU_F_MSG_ATTRS;
    strcpy(req.queue, "q");
    req.n_attr_msgs = 2;
    req.attrs[0] = one(msg_attr("bin", "Binary", "\x01\x02"));
    req.attrs[1].n = 0;
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    kyu_request_encode(&req, &b);
    kyu_request_t d;
    kyu_err_t err;
    kyu_err_clear(&err);
    assert_int_equal(kyu_request_decode(b.data, b.size, 2, &d, &err), KYU_OK);
    assert_int_equal(d.n_attr_msgs, 2);
    assert_int_equal(d.attrs[0].n, 1);
    assert_true(d.attrs[0].a[0].binary);
    assert_int_equal(d.attrs[0].a[0].value_len, 2);
    assert_memory_equal(d.attrs[0].a[0].value, "\x01\x02", 2);
    assert_int_equal(d.attrs[1].n, 0);
    /* one list per body frame */
    assert_int_equal(kyu_request_decode(b.data, b.size, 3, &d, &err), KYU_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.msg, "2 attribute lists for 3 messages"));
    msgpack_sbuffer_destroy(&b);
}

static void test_a_receive_reply_owns_its_attributes(void **state)
{
    (void)state;
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    rep.id = 7;
    rep.n_msgs = 2;
    strcpy(rep.msgs[0].message_id, "m0");
    strcpy(rep.msgs[1].message_id, "m1");
    rep.msgs[1].attrs = one(msg_attr("k", "Number.int", "42"));
    strcpy(rep.msgs[1].md5_attrs, "0123456789abcdef0123456789abcdef");
    strcpy(rep.msgs[1].md5_body, "fedcba9876543210fedcba9876543210");
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    kyu_reply_encode(&rep, &b);
    kyu_reply_t d;
    kyu_reply_init(&d);
    kyu_err_t err;
    kyu_err_clear(&err);
    assert_int_equal(kyu_reply_decode(b.data, b.size, &d, &err), KYU_OK);
    memset(b.data, 0, b.size); /* the reply must not point into the buffer decoded */
    msgpack_sbuffer_destroy(&b);
    assert_int_equal(d.n_msgs, 2);
    assert_int_equal(d.msgs[0].attrs.n, 0);
    assert_int_equal(d.msgs[1].attrs.n, 1);
    const kyu_msg_attr_t *a = &d.msgs[1].attrs.a[0];
    assert_int_equal(a->name_len, 1);
    assert_memory_equal(a->name, "k", 1);
    assert_memory_equal(a->type, "Number.int", 10);
    assert_memory_equal(a->value, "42", 2);
    assert_false(a->binary);
    assert_string_equal(d.msgs[1].md5_attrs, "0123456789abcdef0123456789abcdef");
    assert_string_equal(d.msgs[1].md5_body, "fedcba9876543210fedcba9876543210");
    kyu_reply_reset(&d);
}

static void test_a_send_reply_carries_the_digests(void **state)
{
    (void)state;
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    rep.n_ids = 2;
    strcpy(rep.ids[0], "a");
    strcpy(rep.ids[1], "b");
    strcpy(rep.md5_body[0], "5d41402abc4b2a76b9719d911017c592");
    strcpy(rep.md5_body[1], "5d41402abc4b2a76b9719d911017c592");
    strcpy(rep.md5_attrs[1], "19e27d4e946b072f3f58da80d94fd778");
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    kyu_reply_encode(&rep, &b);
    kyu_reply_t d;
    kyu_reply_init(&d);
    kyu_err_t err;
    assert_int_equal(kyu_reply_decode(b.data, b.size, &d, &err), KYU_OK);
    assert_string_equal(d.md5_body[1], "5d41402abc4b2a76b9719d911017c592");
    assert_string_equal(d.md5_attrs[0], "");
    assert_string_equal(d.md5_attrs[1], "19e27d4e946b072f3f58da80d94fd778");
    msgpack_sbuffer_destroy(&b);
    kyu_reply_reset(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_follow_sqs_rules),
        cmocka_unit_test(test_types_are_string_number_binary_with_a_suffix),
        cmocka_unit_test(test_values_match_their_type),
        cmocka_unit_test(test_at_most_ten_distinct_names),
        cmocka_unit_test(test_the_size_counts_names_types_and_values),
        cmocka_unit_test(test_md5s_match_the_aws_documented_vectors),
        cmocka_unit_test(test_md5s_match_rfc_1321_digest_after_digest_and_on_threads),
        cmocka_unit_test(test_sort_is_by_name_bytes),
        cmocka_unit_test(test_a_send_request_carries_attributes_per_body),
        cmocka_unit_test(test_a_receive_reply_owns_its_attributes),
        cmocka_unit_test(test_a_send_reply_carries_the_digests),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
