/* kyu-worker's event (worker/event.c): the batch in the shape of Lambda's SQS event, the
 * handler's batchItemFailures answer read with Lambda's rules, and --filter's view of a
 * message (its record, the body parsed when it is a JSON object) and patterns ORed. */
#include "event.h"
#include "handler.h"

#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static kyu_message_t msg(const char *id, const char *body)
{
    kyu_message_t m;
    memset(&m, 0, sizeof m);
    snprintf(m.message_id, sizeof m.message_id, "%s", id);
    snprintf(m.receipt_handle, sizeof m.receipt_handle, "rh-%s", id);
    m.receive_count = 3;
    m.sent_ms = 1700000000123;
    m.first_receive_ms = 1700000001456;
    m.body = (unsigned char *)body;
    m.body_len = strlen(body);
    snprintf(m.md5_body, sizeof m.md5_body, "%s", "0123456789abcdef0123456789abcdef");
    return m;
}

static json_t *parse(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, 0, &e);
    if (!j)
        fail_msg("not JSON (%s): %s", e.text, text);
    return j;
}

static const char *str_at(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_string(v))
        fail_msg("%s is not a string", key);
    return json_string_value(v);
}

static void test_event_has_lambdas_record_shape(void **state)
{
    (void)state;
    kyu_message_t m[2] = {msg("id-1", "hello"), msg("id-2", "{\"a\": 1}")};
    size_t len = 0;
    char *text = kyu_event_json("orders", "local", m, 2, &len);
    assert_non_null(text);
    assert_int_equal(len, strlen(text));
    json_t *ev = parse(text);
    json_t *recs = json_object_get(ev, "Records");
    assert_true(json_is_array(recs));
    assert_int_equal(json_array_size(recs), 2);
    json_t *r = json_array_get(recs, 0);
    assert_string_equal(str_at(r, "messageId"), "id-1");
    assert_string_equal(str_at(r, "receiptHandle"), "rh-id-1");
    assert_string_equal(str_at(r, "body"), "hello");
    assert_string_equal(str_at(r, "md5OfBody"), "0123456789abcdef0123456789abcdef");
    assert_string_equal(str_at(r, "eventSource"), "kyu:queue");
    assert_string_equal(str_at(r, "eventSourceARN"), "arn:kyu:sqs:local:000000000000:orders");
    assert_string_equal(str_at(r, "awsRegion"), "local");
    json_t *a = json_object_get(r, "attributes");
    /* SQS gives attributes as strings */
    assert_string_equal(str_at(a, "ApproximateReceiveCount"), "3");
    assert_string_equal(str_at(a, "SentTimestamp"), "1700000000123");
    assert_string_equal(str_at(a, "ApproximateFirstReceiveTimestamp"), "1700000001456");
    assert_non_null(json_object_get(a, "SenderId"));
    assert_null(json_object_get(a, "DeadLetterQueueSourceArn"));
    assert_null(json_object_get(a, "MessageGroupId")); /* a standard queue's message */
    assert_null(json_object_get(a, "SequenceNumber"));
    assert_true(json_is_object(json_object_get(r, "messageAttributes")));
    assert_null(json_object_get(r, "md5OfMessageAttributes"));
    /* a JSON body stays a string: the handler parses it */
    assert_string_equal(str_at(json_array_get(recs, 1), "body"), "{\"a\": 1}");
    json_decref(ev);
    free(text);
}

static void test_event_carries_a_fifo_message_s_group_and_sequence(void **state)
{
    (void)state;
    kyu_message_t m = msg("id-1", "x");
    snprintf(m.group_id, sizeof m.group_id, "%s", "order-7");
    snprintf(m.dedup_id, sizeof m.dedup_id, "%s", "d-1");
    m.sequence = 18;
    char *text = kyu_event_json("q.fifo", "eu", &m, 1, NULL);
    json_t *ev = parse(text);
    json_t *a = json_object_get(json_array_get(json_object_get(ev, "Records"), 0), "attributes");
    assert_string_equal(str_at(a, "MessageGroupId"), "order-7");
    assert_string_equal(str_at(a, "MessageDeduplicationId"), "d-1");
    assert_string_equal(str_at(a, "SequenceNumber"), "18");
    json_decref(ev);
    free(text);
}

static void test_event_carries_message_attributes(void **state)
{
    (void)state;
    kyu_message_t m = msg("id-1", "x");
    m.attrs.n = 2;
    m.attrs.a[0] = (kyu_msg_attr_t){"bin", 3, "Binary", 6, "\x01\x02\x03", 3, true};
    m.attrs.a[1] = (kyu_msg_attr_t){"color", 5, "String", 6, "red", 3, false};
    snprintf(m.md5_attrs, sizeof m.md5_attrs, "%s", "fedcba9876543210fedcba9876543210");
    snprintf(m.dlq_source, sizeof m.dlq_source, "%s", "src");
    char *text = kyu_event_json("q", "eu", &m, 1, NULL);
    json_t *ev = parse(text);
    json_t *r = json_array_get(json_object_get(ev, "Records"), 0);
    json_t *ma = json_object_get(r, "messageAttributes");
    json_t *color = json_object_get(ma, "color");
    assert_string_equal(str_at(color, "stringValue"), "red");
    assert_string_equal(str_at(color, "dataType"), "String");
    json_t *bin = json_object_get(ma, "bin");
    assert_string_equal(str_at(bin, "binaryValue"), "AQID");
    assert_string_equal(str_at(bin, "dataType"), "Binary");
    assert_string_equal(str_at(r, "md5OfMessageAttributes"), "fedcba9876543210fedcba9876543210");
    assert_string_equal(str_at(json_object_get(r, "attributes"), "DeadLetterQueueSourceArn"),
                        "arn:kyu:sqs:eu:000000000000:src");
    json_decref(ev);
    free(text);
}

static void test_event_replaces_invalid_utf8_in_bodies(void **state)
{
    (void)state;
    kyu_message_t m = msg("id-1", "a\xff"
                                  "b\xc3\xa9");
    char *text = kyu_event_json("q", "local", &m, 1, NULL);
    assert_non_null(text);
    json_t *ev = parse(text);
    json_t *r = json_array_get(json_object_get(ev, "Records"), 0);
    assert_string_equal(str_at(r, "body"), "a\xef\xbf\xbd"
                                           "b\xc3\xa9");
    json_decref(ev);
    free(text);
}

/* ---- the answer ---- */

static kyu_message_t batch[3];
static uint8_t results[3];

static int setup(void **state)
{
    (void)state;
    batch[0] = msg("m-0", "a");
    batch[1] = msg("m-1", "b");
    batch[2] = msg("m-2", "c");
    memset(results, KYU_ITEM_OK, sizeof results);
    return 0;
}

static kyu_code_t answer(const char *text)
{
    kyu_err_t err = {0};
    kyu_code_t rc = kyu_event_failures(text, text ? strlen(text) : 0, batch, 3, results, &err);
    if (rc != KYU_OK)
        assert_true(err.msg[0] != '\0');
    return rc;
}

static void test_failures_mark_only_the_named_messages(void **state)
{
    (void)state;
    assert_int_equal(
        answer("{\"batchItemFailures\": [{\"itemIdentifier\": \"m-2\"}, {\"itemIdentifier\": "
               "\"m-0\"}]}\n"),
        KYU_OK);
    assert_int_equal(results[0], KYU_ITEM_FAILED);
    assert_int_equal(results[1], KYU_ITEM_OK);
    assert_int_equal(results[2], KYU_ITEM_FAILED);
}

static void test_failures_empty_answers_mean_all_succeeded(void **state)
{
    (void)state;
    const char *ok[] = {NULL,
                        "",
                        "  \n",
                        "null",
                        "{}",
                        "{\"batchItemFailures\": []}",
                        "{\"batchItemFailures\": null}",
                        "{\"other\": 1}"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        assert_int_equal(answer(ok[i]), KYU_OK);
        for (int k = 0; k < 3; k++)
            assert_int_equal(results[k], KYU_ITEM_OK);
    }
}

static void test_failures_malformed_answers_fail_the_batch(void **state)
{
    (void)state;
    const char *bad[] = {
        "not json",
        "{\"batchItemFailures\": [{\"itemIdentifier\": \"m-1\"}",
        "{\"batchItemFailures\": \"m-1\"}",
        "{\"batchItemFailures\": [{\"itemIdentifier\": \"\"}]}",
        "{\"batchItemFailures\": [{\"itemIdentifier\": null}]}",
        "{\"batchItemFailures\": [{\"id\": \"m-1\"}]}",
        "{\"batchItemFailures\": [{\"itemIdentifier\": 7}]}",
        "{\"batchItemFailures\": [\"m-1\"]}",
        "{\"batchItemFailures\": [{\"itemIdentifier\": \"m-1\"}, {\"itemIdentifier\": "
        "\"not-in-batch\"}]}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (answer(bad[i]) != KYU_ERR_INVALID_ARGUMENT)
            fail_msg("answer %zu (%s) was taken", i, bad[i]);
        /* results untouched: the caller fails the whole batch */
        for (int k = 0; k < 3; k++)
            assert_int_equal(results[k], KYU_ITEM_OK);
    }
}

static void test_filter_doc_parses_a_json_object_body_only(void **state)
{
    (void)state;
    kyu_message_t m[3] = {msg("id-1", "{\"type\": \"paid\", \"n\": 3}"), msg("id-2", "ping"),
                          msg("id-3", "[1, 2]")};
    json_t *d = kyu_event_filter_doc("orders", "local", &m[0]);
    assert_non_null(d);
    json_t *body = json_object_get(d, "body");
    assert_true(json_is_object(body));
    assert_string_equal(str_at(body, "type"), "paid");
    assert_string_equal(str_at(d, "messageId"), "id-1");
    assert_string_equal(str_at(json_object_get(d, "attributes"), "ApproximateReceiveCount"), "3");
    json_decref(d);
    for (int i = 1; i < 3; i++) {
        d = kyu_event_filter_doc("orders", "local", &m[i]);
        assert_non_null(d);
        assert_string_equal(str_at(d, "body"), i == 1 ? "ping" : "[1, 2]");
        json_decref(d);
    }
}

static void test_worker_filter_ors_its_patterns(void **state)
{
    (void)state;
    kyu_worker_filter_t f = {.queue = "orders", .region = "local"};
    kyu_message_t paid = msg("a", "{\"type\": \"paid\"}"), unpaid = msg("b", "{\"type\": \"x\"}"),
                  ping = msg("c", "ping 1"), tagged = msg("d", "other");
    tagged.attrs.n = 1;
    tagged.attrs.a[0] = (kyu_msg_attr_t){.name = "prio",
                                         .name_len = 4,
                                         .type = "String",
                                         .type_len = 6,
                                         .value = "high",
                                         .value_len = 4};
    assert_true(kyu_worker_filter(&unpaid, &f)); /* no pattern: every message */
    kyu_err_t err = {0};
    assert_int_equal(kyu_worker_filter_add(&f, "{\"body\": {\"type\": [\"paid\"]}}", &err), KYU_OK);
    assert_int_equal(kyu_worker_filter_add(&f, "{\"body\": [{\"prefix\": \"ping\"}]}", &err),
                     KYU_OK);
    assert_int_equal(
        kyu_worker_filter_add(
            &f, "{\"messageAttributes\": {\"prio\": {\"stringValue\": [\"high\"]}}}", &err),
        KYU_OK);
    assert_true(kyu_worker_filter(&paid, &f));
    assert_false(kyu_worker_filter(&unpaid, &f));
    assert_true(kyu_worker_filter(&ping, &f));
    assert_true(kyu_worker_filter(&tagged, &f));
    assert_int_equal(kyu_worker_filter_add(&f, "{\"body\": [\"a\"]}", &err), KYU_OK);
    assert_int_equal(kyu_worker_filter_add(&f, "{\"body\": [\"b\"]}", &err), KYU_OK);
    assert_int_equal(kyu_worker_filter_add(&f, "{\"body\": [\"c\"]}", &err),
                     KYU_ERR_INVALID_ARGUMENT); /* a sixth */
    assert_non_null(strstr(err.msg, "at most 5"));
    kyu_worker_filter_free(&f);
    assert_int_equal(kyu_worker_filter_add(&f, "{\"body\": \"x\"}", &err),
                     KYU_ERR_INVALID_ARGUMENT);
    assert_int_equal(f.n, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_event_has_lambdas_record_shape),
        cmocka_unit_test(test_event_carries_message_attributes),
        cmocka_unit_test(test_event_carries_a_fifo_message_s_group_and_sequence),
        cmocka_unit_test(test_event_replaces_invalid_utf8_in_bodies),
        cmocka_unit_test(test_filter_doc_parses_a_json_object_body_only),
        cmocka_unit_test(test_worker_filter_ors_its_patterns),
        cmocka_unit_test_setup(test_failures_mark_only_the_named_messages, setup),
        cmocka_unit_test_setup(test_failures_empty_answers_mean_all_succeeded, setup),
        cmocka_unit_test_setup(test_failures_malformed_answers_fail_the_batch, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
