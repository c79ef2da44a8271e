/* The orders example's order checks (examples/orders/order.c): what POST /orders accepts, the
 * message it publishes (body and attributes), and a clear reason for each refusal. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "order.h"

#define GOOD_ITEMS "\"items\": [{\"sku\": \"tea\", \"qty\": 2}]"

static const char *attr(const order_t *o, const char *name, const char **type)
{
    for (size_t i = 0; i < o->attrs.n; i++)
        if (strcmp(o->attrs.a[i].name, name) == 0) {
            *type = o->attrs.a[i].type;
            return o->attrs.a[i].value;
        }
    fail_msg("no attribute %s", name);
    return NULL;
}

static void test_a_good_order_is_published_compact_with_its_attributes(void **state)
{
    (void)state;
    const char *in = "{\"paid\": true, \"order_id\": \"o-1\", \"customer\": \"ann\", " GOOD_ITEMS
                     ", \"total\": 12.34}";
    order_t o;
    char why[ORDER_WHY_MAX] = "";
    assert_true(order_parse(&o, in, strlen(in), why));
    assert_string_equal(o.body, "{\"customer\":\"ann\",\"items\":[{\"qty\":2,\"sku\":\"tea\"}],"
                                "\"order_id\":\"o-1\",\"paid\":true,\"total\":12.34}");
    assert_int_equal(o.body_len, strlen(o.body));
    assert_int_equal(o.attrs.n, 4);
    const char *type;
    assert_string_equal(attr(&o, "order_id", &type), "o-1");
    assert_string_equal(type, "String");
    assert_string_equal(attr(&o, "customer", &type), "ann");
    assert_string_equal(attr(&o, "status", &type), "paid");
    assert_string_equal(type, "String");
    assert_string_equal(attr(&o, "total", &type), "12.34");
    assert_string_equal(type, "Number");
    kyu_err_t err = {0};
    assert_int_equal(kyu_msg_attrs_check(&o.attrs, &err), KYU_OK);
    order_release(&o);
    assert_null(o.body);
}

static void test_totals_are_sqs_numbers(void **state)
{
    (void)state;
    static const struct {
        const char *json, *text;
    } cases[] = {{"12", "12"},
                 {"0", "0"},
                 {"0.1", "0.1"},
                 {"12.5", "12.5"},
                 {"1000.0", "1000.0"},
                 {"1e3", "1000.0"},
                 {"999999999.99", "999999999.99"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char in[256];
        snprintf(in, sizeof in,
                 "{\"order_id\": \"o\", \"customer\": \"c\", " GOOD_ITEMS
                 ", \"total\": %s, \"paid\": false}",
                 cases[i].json);
        order_t o;
        char why[ORDER_WHY_MAX] = "";
        assert_true(order_parse(&o, in, strlen(in), why));
        const char *type;
        assert_string_equal(attr(&o, "total", &type), cases[i].text);
        assert_string_equal(attr(&o, "status", &type), "unpaid");
        kyu_err_t err = {0};
        assert_int_equal(kyu_msg_attrs_check(&o.attrs, &err), KYU_OK);
        order_release(&o);
    }
}

static void test_bad_orders_are_refused_with_a_reason(void **state)
{
    (void)state;
    static const struct {
        const char *json, *why;
    } cases[] = {
        {"", "invalid JSON at line 1"},
        {"{\"order_id\": ", "invalid JSON"},
        {"[1]", "must be a JSON object"},
        {"{\"order_id\": \"o\", \"order_id\": \"p\", \"customer\": \"c\", " GOOD_ITEMS
         ", \"total\": 1, \"paid\": true}",
         "invalid JSON"}, /* a key twice */
        {"{\"customer\": \"c\", " GOOD_ITEMS ", \"total\": 1, \"paid\": true}",
         "missing field 'order_id'"},
        {"{\"order_id\": \"o\", " GOOD_ITEMS ", \"total\": 1, \"paid\": true}",
         "missing field 'customer'"},
        {"{\"order_id\": \"o\", \"customer\": \"c\", \"total\": 1, \"paid\": true}",
         "missing field 'items'"},
        {"{\"order_id\": \"o\", \"customer\": \"c\", " GOOD_ITEMS ", \"paid\": true}",
         "missing field 'total'"},
        {"{\"order_id\": \"o\", \"customer\": \"c\", " GOOD_ITEMS ", \"total\": 1}",
         "missing field 'paid'"},
        {"{\"order_id\": \"o\", \"customer\": \"c\", " GOOD_ITEMS
         ", \"total\": 1, \"paid\": true, \"piad\": 1}",
         "unknown field 'piad'"},
        {"{\"order_id\": \"o\", \"customer\": \"c\", " GOOD_ITEMS ", \"total\": 1, \"paid\": 1}",
         "'paid' must be true or false"},
        {"{\"order_id\": 7, \"customer\": \"c\", " GOOD_ITEMS ", \"total\": 1, \"paid\": true}",
         "'order_id' must be a string"},
        {"{\"order_id\": \"\", \"customer\": \"c\", " GOOD_ITEMS ", \"total\": 1, \"paid\": true}",
         "'order_id' must be 1 to 64"},
        {"{\"order_id\": \"a b\", \"customer\": \"c\", " GOOD_ITEMS
         ", \"total\": 1, \"paid\": true}",
         "'order_id' may hold only"},
        {"{\"order_id\": \"o\", \"customer\": \"\", " GOOD_ITEMS ", \"total\": 1, \"paid\": true}",
         "'customer' must be 1 to 256"},
        {"{\"order_id\": \"o\", \"customer\": \"a\\u0000b\", " GOOD_ITEMS
         ", \"total\": 1, \"paid\": true}",
         "invalid JSON"}, /* NUL: jansson refuses it */
        {"{\"order_id\": \"o\", \"customer\": \"c\", \"items\": [], \"total\": 1, \"paid\": true}",
         "'items' must be an array of 1 to 100"},
        {"{\"order_id\": \"o\", \"customer\": \"c\", \"items\": [{\"sku\": \"t\", \"qty\": 0}], "
         "\"total\": 1, \"paid\": true}",
         "items[0] must be"},
        {"{\"order_id\": \"o\", \"customer\": \"c\", \"items\": [{\"sku\": \"t\", \"qty\": 1}, "
         "{\"sku\": \"t\"}], \"total\": 1, \"paid\": true}",
         "items[1] must be"},
        {"{\"order_id\": \"o\", \"customer\": \"c\", \"items\": [3], \"total\": 1, \"paid\": true}",
         "items[0] must be"},
        {"{\"order_id\": \"o\", \"customer\": \"c\", " GOOD_ITEMS
         ", \"total\": -0.5, \"paid\": true}",
         "'total' must be 0 to"},
        {"{\"order_id\": \"o\", \"customer\": \"c\", " GOOD_ITEMS
         ", \"total\": 1e10, \"paid\": true}",
         "'total' must be 0 to"},
        {"{\"order_id\": \"o\", \"customer\": \"c\", " GOOD_ITEMS
         ", \"total\": \"12\", \"paid\": true}",
         "'total' must be a number"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        order_t o;
        char why[ORDER_WHY_MAX] = "";
        if (order_parse(&o, cases[i].json, strlen(cases[i].json), why))
            fail_msg("case %zu accepted: %s", i, cases[i].json);
        if (!strstr(why, cases[i].why))
            fail_msg("case %zu: expected '%s' in '%s'", i, cases[i].why, why);
        assert_null(o.body);
        order_release(&o); /* harmless after a refusal */
    }
}

static void test_an_order_id_of_64_characters_is_the_longest(void **state)
{
    (void)state;
    char id[66];
    memset(id, 'x', 65);
    id[65] = '\0';
    char in[512];
    for (int len = 64; len <= 65; len++) {
        snprintf(in, sizeof in,
                 "{\"order_id\": \"%.*s\", \"customer\": \"c\", " GOOD_ITEMS
                 ", \"total\": 1, \"paid\": true}",
                 len, id);
        order_t o;
        char why[ORDER_WHY_MAX] = "";
        assert_int_equal(order_parse(&o, in, strlen(in), why), len == 64);
        order_release(&o);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_good_order_is_published_compact_with_its_attributes),
        cmocka_unit_test(test_totals_are_sqs_numbers),
        cmocka_unit_test(test_bad_orders_are_refused_with_a_reason),
        cmocka_unit_test(test_an_order_id_of_64_characters_is_the_longest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
