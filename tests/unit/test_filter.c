/* Filter policies (proto/filter.c): SNS's syntax, limits and matching, table-driven, with
 * SNS's documented examples (the "Filter policy" pages of the SNS developer guide); and the
 * same engine's Lambda event patterns (scope event: documents, Lambda's limits). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filter.h"

typedef struct {
    const char *name, *type, *value;
} av_t;

typedef struct {
    const char *policy;
    av_t attrs[3];
    bool match;
} acase_t;

static kyu_msg_attrs_t make_attrs(const av_t *av)
{
    kyu_msg_attrs_t as = {0};
    for (size_t i = 0; i < 3 && av[i].name; i++)
        as.a[as.n++] = (kyu_msg_attr_t){.name = av[i].name,
                                        .name_len = strlen(av[i].name),
                                        .type = av[i].type,
                                        .type_len = strlen(av[i].type),
                                        .value = av[i].value,
                                        .value_len = strlen(av[i].value),
                                        .binary = !strncmp(av[i].type, "Binary", 6)};
    return as;
}

static kyu_filter_t *compile(const char *policy, kyu_filter_scope_t scope)
{
    kyu_filter_t *f;
    kyu_err_t err;
    kyu_err_clear(&err);
    if (kyu_filter_compile(policy, strlen(policy), scope, &f, NULL, &err) != KYU_OK)
        fail_msg("policy %s refused: %s", policy, err.msg);
    return f;
}

#define S(n, v)                                                                                    \
    {                                                                                              \
        n, "String", v                                                                             \
    }
#define N(n, v)                                                                                    \
    {                                                                                              \
        n, "Number", v                                                                             \
    }

static const acase_t attr_cases[] = {
    /* exact strings: OR within a key, AND across keys (SNS's store/event example) */
    {"{\"store\":[\"example_corp\"],\"event\":[\"order_placed\"]}",
     {S("store", "example_corp"), S("event", "order_placed")},
     true},
    {"{\"store\":[\"example_corp\"],\"event\":[\"order_placed\"]}",
     {S("store", "example_corp"), S("event", "order_cancelled")},
     false},
    {"{\"store\":[\"example_corp\"],\"event\":[\"order_placed\"]}",
     {S("store", "example_corp")},
     false},
    {"{\"customer_interests\":[\"rugby\",\"football\",\"baseball\"]}",
     {S("customer_interests", "football")},
     true},
    {"{\"customer_interests\":[\"rugby\",\"football\",\"baseball\"]}",
     {S("customer_interests", "Football")},
     false},
    /* String.Array: any element */
    {"{\"customer_interests\":[\"rugby\"]}",
     {{"customer_interests", "String.Array", "[\"soccer\",\"rugby\",\"hockey\"]"}},
     true},
    {"{\"customer_interests\":[\"golf\"]}",
     {{"customer_interests", "String.Array", "[\"soccer\",\"rugby\"]"}},
     false},
    {"{\"n\":[5]}", {{"n", "String.Array", "[1, 5]"}}, true},
    /* numbers match Number attributes only */
    {"{\"price_usd\":[300]}", {N("price_usd", "300")}, true},
    {"{\"price_usd\":[300]}", {N("price_usd", "3.0e2")}, true},
    {"{\"price_usd\":[300]}", {S("price_usd", "300")}, false},
    {"{\"price_usd\":[\"300\"]}", {N("price_usd", "300")}, false},
    {"{\"price_usd\":[{\"numeric\":[\">\",0,\"<=\",150]}]}", {N("price_usd", "150")}, true},
    {"{\"price_usd\":[{\"numeric\":[\">\",0,\"<=\",150]}]}", {N("price_usd", "0")}, false},
    {"{\"price_usd\":[{\"numeric\":[\">\",0,\"<=\",150]}]}", {N("price_usd", "150.5")}, false},
    {"{\"price_usd\":[{\"numeric\":[\"=\",301.5]}]}",
     {{"price_usd", "Number.float", "301.5"}},
     true},
    {"{\"price_usd\":[{\"numeric\":[\"<\",0]}]}", {N("price_usd", "-1")}, true},
    {"{\"price_usd\":[{\"numeric\":[\">=\",10]}]}", {S("price_usd", "20")}, false},
    /* prefix, suffix, equals-ignore-case */
    {"{\"customer_interests\":[{\"prefix\":\"bas\"}]}",
     {S("customer_interests", "baseball")},
     true},
    {"{\"customer_interests\":[{\"prefix\":\"bas\"}]}", {S("customer_interests", "rugby")}, false},
    {"{\"customer_interests\":[{\"suffix\":\"ball\"}]}",
     {S("customer_interests", "baseball")},
     true},
    {"{\"customer_interests\":[{\"suffix\":\"ball\"}]}",
     {S("customer_interests", "ballet")},
     false},
    {"{\"customer_interests\":[{\"equals-ignore-case\":\"tennis\"}]}",
     {S("customer_interests", "TeNnIs")},
     true},
    {"{\"customer_interests\":[{\"equals-ignore-case\":\"tennis\"}]}",
     {S("customer_interests", "tennis2")},
     false},
    /* anything-but: a value, a list, a prefix, a suffix; an absent key does not match */
    {"{\"customer_interests\":[{\"anything-but\":[\"rugby\",\"tennis\"]}]}",
     {S("customer_interests", "baseball")},
     true},
    {"{\"customer_interests\":[{\"anything-but\":[\"rugby\",\"tennis\"]}]}",
     {S("customer_interests", "rugby")},
     false},
    {"{\"customer_interests\":[{\"anything-but\":\"rugby\"}]}", {S("x", "y")}, false},
    {"{\"price\":[{\"anything-but\":[100,500]}]}", {N("price", "100")}, false},
    {"{\"price\":[{\"anything-but\":[100,500]}]}", {N("price", "101")}, true},
    {"{\"event\":[{\"anything-but\":{\"prefix\":\"order-\"}}]}",
     {S("event", "order-cancelled")},
     false},
    {"{\"event\":[{\"anything-but\":{\"prefix\":\"order-\"}}]}", {S("event", "data-entry")}, true},
    {"{\"event\":[{\"anything-but\":{\"suffix\":\"ed\"}}]}", {S("event", "placed")}, false},
    {"{\"event\":[{\"anything-but\":{\"suffix\":\"ed\"}}]}", {S("event", "place")}, true},
    /* exists */
    {"{\"store\":[{\"exists\":true}]}", {S("store", "x")}, true},
    {"{\"store\":[{\"exists\":true}]}", {S("other", "x")}, false},
    {"{\"store\":[{\"exists\":false}]}", {S("other", "x")}, true},
    {"{\"store\":[{\"exists\":false}]}", {S("store", "x")}, false},
    {"{\"store\":[{\"exists\":true}]}", {{"store", "Binary", "AAA"}}, true},
    {"{\"store\":[\"AAA\"]}", {{"store", "Binary", "AAA"}}, false},
    {"{\"store\":[{\"exists\":false}]}", {{"", "", ""}}, true},
    /* cidr */
    {"{\"source_ip\":[{\"cidr\":\"10.0.0.0/24\"}]}", {S("source_ip", "10.0.0.255")}, true},
    {"{\"source_ip\":[{\"cidr\":\"10.0.0.0/24\"}]}", {S("source_ip", "10.0.1.0")}, false},
    {"{\"source_ip\":[{\"cidr\":\"2001:db8::/32\"}]}", {S("source_ip", "2001:db8:1::5")}, true},
    {"{\"source_ip\":[{\"cidr\":\"2001:db8::/32\"}]}", {S("source_ip", "10.0.0.1")}, false},
    {"{\"source_ip\":[{\"cidr\":\"10.0.0.0/24\"}]}", {S("source_ip", "garbage")}, false},
    /* $or: (SNS's example) source = aws.cloudwatch, or metricName is CPU or ReadLatency */
    {"{\"source\":[\"aws.cloudwatch\"],\"$or\":[{\"metricName\":[\"CPUUtilization\"]},"
     "{\"namespace\":[\"AWS/EC2\"]}]}",
     {S("source", "aws.cloudwatch"), S("namespace", "AWS/EC2")},
     true},
    {"{\"source\":[\"aws.cloudwatch\"],\"$or\":[{\"metricName\":[\"CPUUtilization\"]},"
     "{\"namespace\":[\"AWS/EC2\"]}]}",
     {S("source", "aws.cloudwatch"), S("namespace", "AWS/S3")},
     false},
    {"{\"$or\":[{\"a\":[\"1\"]},{\"b\":[\"2\"]}]}", {S("b", "2")}, true},
};

static void test_attribute_matching(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof attr_cases / sizeof attr_cases[0]; i++) {
        const acase_t *c = &attr_cases[i];
        kyu_filter_t *f = compile(c->policy, KYU_FILTER_SCOPE_ATTRIBUTES);
        kyu_msg_attrs_t as = make_attrs(c->attrs);
        if (kyu_filter_match(f, &as, "x", 1) != c->match)
            fail_msg("case %zu: policy %s: expected %s", i, c->policy,
                     c->match ? "a match" : "no match");
        kyu_filter_destroy(&f);
        assert_null(f);
    }
}

typedef struct {
    const char *policy, *body;
    bool match;
} bcase_t;

static const bcase_t body_cases[] = {
    {"{\"store\":[\"example_corp\"]}", "{\"store\":\"example_corp\",\"x\":1}", true},
    {"{\"store\":[\"example_corp\"]}", "{\"store\":\"other\"}", false},
    {"{\"store\":[\"example_corp\"]}", "not json", false},
    {"{\"store\":[\"example_corp\"]}", "[\"example_corp\"]", false},
    /* nested keys (SNS's example) */
    {"{\"customer\":{\"interests\":[{\"prefix\":\"bas\"}],\"address\":{\"city\":[\"Seattle\"]}}}",
     "{\"customer\":{\"interests\":[\"rugby\",\"baseball\"],\"address\":{\"city\":\"Seattle\"}}}",
     true},
    {"{\"customer\":{\"interests\":[{\"prefix\":\"bas\"}],\"address\":{\"city\":[\"Seattle\"]}}}",
     "{\"customer\":{\"interests\":[\"rugby\"],\"address\":{\"city\":\"Seattle\"}}}", false},
    {"{\"customer\":{\"vip\":[{\"exists\":false}]}}", "{\"other\":1}", true},
    {"{\"customer\":{\"vip\":[{\"exists\":true}]}}", "{\"customer\":{\"vip\":false}}", true},
    {"{\"price\":[{\"numeric\":[\">=\",100]}]}", "{\"price\":100}", true},
    {"{\"price\":[{\"numeric\":[\">=\",100]}]}", "{\"price\":\"100\"}", false},
    {"{\"price\":[100]}", "{\"price\":100.0}", true},
    {"{\"flag\":[true]}", "{\"flag\":true}", true},
    {"{\"flag\":[null]}", "{\"flag\":null}", true},
    {"{\"flag\":[null]}", "{\"flag\":0}", false},
    {"{\"$or\":[{\"a\":{\"b\":[\"1\"]}},{\"c\":[\"2\"]}]}", "{\"a\":{\"b\":\"1\"}}", true},
    {"{\"$or\":[{\"a\":{\"b\":[\"1\"]}},{\"c\":[\"2\"]}]}", "{\"a\":{\"b\":\"2\"}}", false},
};

static void test_body_matching(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof body_cases / sizeof body_cases[0]; i++) {
        const bcase_t *c = &body_cases[i];
        kyu_filter_t *f = compile(c->policy, KYU_FILTER_SCOPE_BODY);
        if (kyu_filter_match(f, NULL, c->body, strlen(c->body)) != c->match)
            fail_msg("case %zu: policy %s on %s: expected %s", i, c->policy, c->body,
                     c->match ? "a match" : "no match");
        kyu_filter_destroy(&f);
    }
}

typedef struct {
    const char *policy;
    kyu_filter_scope_t scope;
    const char *error; /* a piece of the message */
} refused_t;

static const refused_t refused[] = {
    {"", 0, "not JSON"},
    {"{\"a\":[\"x\"]", 0, "not JSON"},
    {"[\"a\"]", 0, "non-empty JSON object"},
    {"{}", 0, "non-empty JSON object"},
    {"{\"a\":\"x\"}", 0, "key 'a': its value must be a non-empty list"},
    {"{\"a\":[]}", 0, "key 'a': its value must be a non-empty list"},
    {"{\"a\":[\"x\"],\"a\":[\"y\"]}", 0, "not JSON"},
    {"{\"a\":{\"b\":[\"x\"]}}", 0, "nested keys need the body scope"},
    {"{\"a\":[null]}", 0, "a condition is"},
    {"{\"a\":[[\"x\"]]}", 0, "a condition is"},
    {"{\"a\":[{\"wildcard\":\"x*\"}]}", 0, "unknown operator 'wildcard'"},
    {"{\"a\":[{\"prefix\":\"x\",\"suffix\":\"y\"}]}", 0, "one operator"},
    {"{\"a\":[{\"prefix\":\"\"}]}", 0, "non-empty string"},
    {"{\"a\":[{\"prefix\":1}]}", 0, "non-empty string"},
    {"{\"a\":[{\"exists\":\"yes\"}]}", 0, "exists takes true or false"},
    {"{\"a\":[{\"numeric\":[\"!=\",1]}]}", 0, "numeric's operators"},
    {"{\"a\":[{\"numeric\":[\">\",1,\"<\"]}]}", 0, "numeric takes"},
    {"{\"a\":[{\"numeric\":[\">\",5,\"<\",1]}]}", 0, "greater number"},
    {"{\"a\":[{\"numeric\":[\"<\",5,\">\",1]}]}", 0, "starts with > or >="},
    {"{\"a\":[{\"numeric\":[\">\",2e9]}]}", 0, "from -1e9 to 1e9"},
    {"{\"a\":[2e9]}", 0, "from -1e9 to 1e9"},
    {"{\"a\":[{\"cidr\":\"10.0.0.0/33\"}]}", 0, "cidr takes"},
    {"{\"a\":[{\"cidr\":\"nope\"}]}", 0, "cidr takes"},
    {"{\"a\":[{\"anything-but\":{\"exists\":true}}]}", 0, "anything-but takes"},
    {"{\"a\":[{\"anything-but\":[[1]]}]}", 0, "anything-but's list"},
    {"{\"$or\":[{\"a\":[\"x\"]}]}", 0, "$or takes a list of at least 2"},
    {"{\"$or\":[{\"a\":[\"x\"]},[]]}", 0, "non-empty JSON object"},
    {"{\"a\":[\"1\"],\"b\":[\"1\"],\"c\":[\"1\"],\"d\":[\"1\"],\"e\":[\"1\"],\"f\":[\"1\"]}", 0,
     "6 keys, more than 5"},
    {"{\"a\":[1,2,3,4,5,6,7,8,9,10],\"b\":[1,2,3,4,5,6,7,8,9,10],\"c\":[1,2]}", 0,
     "200 value combinations, more than 150"},
    {"{\"a\":[\"x\"]}", 7, "unknown scope"},
};

static void test_refused(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        kyu_filter_t *f = (kyu_filter_t *)&f;
        char *canon = (char *)"x";
        kyu_err_t err;
        kyu_err_clear(&err);
        kyu_code_t rc = kyu_filter_compile(refused[i].policy, strlen(refused[i].policy),
                                           refused[i].scope, &f, &canon, &err);
        if (rc != KYU_ERR_INVALID_ARGUMENT || !strstr(err.msg, refused[i].error))
            fail_msg("case %zu: %s: expected INVALID_ARGUMENT with '%s', got %s: %s", i,
                     refused[i].policy, refused[i].error, kyu_code_name(rc), err.msg);
        assert_null(f);
        assert_null(canon);
    }
}

static void test_limits_and_canonical(void **state)
{
    (void)state;
    /* 150 combinations and 5 keys are allowed; $or's branches add up */
    kyu_filter_t *f = compile("{\"a\":[1,2,3,4,5,6,7,8,9,10],\"b\":[1,2,3,4,5,6,7,8,9,10,11,12,"
                              "13,14,15],\"c\":[\"x\"],\"d\":[\"x\"],\"e\":[\"x\"]}",
                              KYU_FILTER_SCOPE_ATTRIBUTES);
    kyu_filter_destroy(&f);
    /* the size limit: a policy past 256 KB */
    size_t n = KYU_FILTER_POLICY_MAX + 1;
    char *big = malloc(n + 1);
    assert_non_null(big);
    memset(big, ' ', n);
    memcpy(big, "{\"a\":[\"x\"]}", 11);
    kyu_err_t err;
    kyu_err_clear(&err);
    assert_int_equal(kyu_filter_compile(big, n, 0, &f, NULL, &err), KYU_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.msg, "256 KB"));
    free(big);
    /* the canonical form: compact, keys sorted */
    char *canon;
    const char *p = "{ \"b\" : [ \"x\" ] , \"a\" : [ 1 ] }";
    assert_int_equal(
        kyu_filter_compile(p, strlen(p), KYU_FILTER_SCOPE_ATTRIBUTES, &f, &canon, &err), KYU_OK);
    assert_string_equal(canon, "{\"a\":[1],\"b\":[\"x\"]}");
    free(canon);
    kyu_filter_destroy(&f);
    /* no policy matches everything */
    assert_true(kyu_filter_match(NULL, NULL, "", 0));
    assert_int_equal(kyu_filter_scope_parse("MessageBody"), KYU_FILTER_SCOPE_BODY);
    assert_int_equal(kyu_filter_scope_parse("attributes"), KYU_FILTER_SCOPE_ATTRIBUTES);
    assert_int_equal(kyu_filter_scope_parse("headers"), -1);
    assert_string_equal(kyu_filter_scope_name(KYU_FILTER_SCOPE_BODY), "body");
}

/* Lambda's event filtering (kyu-worker --filter): a pattern over the record as Lambda sees it,
 * the body an object when it is JSON, else a string; nested keys, no SNS key limit, 4096
 * bytes at most. The examples are Lambda's SQS filtering ones. */
static void test_event_patterns(void **state)
{
    (void)state;
    static const struct {
        const char *pattern, *doc;
        bool match;
    } cases[] = {
        /* Lambda's example: RequestCode BBBB in a JSON body */
        {"{\"body\":{\"RequestCode\":[\"BBBB\"]}}",
         "{\"body\":{\"RecordNumber\":1234,\"RequestCode\":\"BBBB\"}}", true},
        {"{\"body\":{\"RequestCode\":[\"BBBB\"]}}", "{\"body\":{\"RequestCode\":\"AAAA\"}}", false},
        /* a plain string body: matched as a string, never by its (absent) fields */
        {"{\"body\":[{\"prefix\":\"ping\"}]}", "{\"body\":\"ping 1\"}", true},
        {"{\"body\":[{\"prefix\":\"ping\"}]}", "{\"body\":{\"ping\":1}}", false},
        {"{\"body\":{\"RequestCode\":[\"BBBB\"]}}", "{\"body\":\"RequestCode BBBB\"}", false},
        /* numbers, ranges, exists, anything-but, null, nested deeper */
        {"{\"body\":{\"n\":[{\"numeric\":[\">\",10,\"<=\",20]}]}}", "{\"body\":{\"n\":20}}", true},
        {"{\"body\":{\"n\":[{\"numeric\":[\">\",10,\"<=\",20]}]}}", "{\"body\":{\"n\":21}}", false},
        {"{\"body\":{\"a\":{\"b\":[{\"exists\":false}]}}}", "{\"body\":{\"a\":{}}}", true},
        {"{\"body\":{\"s\":[{\"anything-but\":[\"x\",\"y\"]}]}}", "{\"body\":{\"s\":\"z\"}}", true},
        {"{\"body\":{\"s\":[null]}}", "{\"body\":{\"s\":null}}", true},
        /* the record's attributes and message attributes */
        {"{\"attributes\":{\"ApproximateReceiveCount\":[\"1\"]}}",
         "{\"attributes\":{\"ApproximateReceiveCount\":\"1\"}}", true},
        {"{\"messageAttributes\":{\"prio\":{\"stringValue\":[\"high\"]}}}",
         "{\"messageAttributes\":{\"prio\":{\"stringValue\":\"high\",\"dataType\":\"String\"}}}",
         true},
        {"{\"messageAttributes\":{\"prio\":{\"stringValue\":[\"high\"]}}}",
         "{\"messageAttributes\":{}}", false},
        /* $or across the body and the attributes */
        {"{\"$or\":[{\"body\":{\"t\":[\"a\"]}},{\"messageAttributes\":{\"t\":[{\"exists\":true}]}}]"
         "}",
         "{\"body\":{\"t\":\"a\"}}", true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kyu_filter_t *f = compile(cases[i].pattern, KYU_FILTER_SCOPE_EVENT);
        json_t *doc = json_loads(cases[i].doc, 0, NULL);
        assert_non_null(doc);
        if (kyu_filter_match_json(f, doc) != cases[i].match)
            fail_msg("pattern %s on %s: expected %s", cases[i].pattern, cases[i].doc,
                     cases[i].match ? "a match" : "no match");
        json_decref(doc);
        kyu_filter_destroy(&f);
    }
    /* No filter: everything; not an object: nothing. */
    json_t *arr = json_array();
    assert_true(kyu_filter_match_json(NULL, arr));
    kyu_filter_t *f = compile("{\"body\":[\"x\"]}", KYU_FILTER_SCOPE_EVENT);
    assert_false(kyu_filter_match_json(f, arr));
    kyu_filter_destroy(&f);
    json_decref(arr);
    /* SNS's 5 keys do not bind a Lambda pattern; its 4096 bytes do; bad syntax is refused. */
    f = compile("{\"body\":{\"a\":[1],\"b\":[1],\"c\":[1],\"d\":[1],\"e\":[1],\"f\":[1]}}",
                KYU_FILTER_SCOPE_EVENT);
    kyu_filter_destroy(&f);
    char big[KYU_FILTER_PATTERN_MAX + 64];
    snprintf(big, sizeof big, "{\"body\":[\"%0*d\"]}", KYU_FILTER_PATTERN_MAX, 0);
    kyu_err_t err;
    kyu_err_clear(&err);
    assert_int_equal(kyu_filter_compile(big, strlen(big), KYU_FILTER_SCOPE_EVENT, &f, NULL, &err),
                     KYU_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.msg, "4096"));
    const char *bad[] = {"{", "[]", "{\"body\":\"x\"}", "{\"body\":[{\"wildcard\":\"*\"}]}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(
            kyu_filter_compile(bad[i], strlen(bad[i]), KYU_FILTER_SCOPE_EVENT, &f, NULL, &err),
            KYU_ERR_INVALID_ARGUMENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_attribute_matching),
        cmocka_unit_test(test_body_matching),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_limits_and_canonical),
        cmocka_unit_test(test_event_patterns),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
