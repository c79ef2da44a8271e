/* Topics (broker/op_topic.c): CREATE_TOPIC idempotent, SUBSCRIBE (raw or not, idempotent for
 * the same queue and mode), UNSUBSCRIBE, DELETE_TOPIC; a PUBLISH enqueues a copy into every
 * subscribed queue in one command, or into none when one queue's MaximumMessageSize refuses
 * it; a deleted queue's subscriptions go with it; topics survive a restart; each command
 * round-trips through the log encoding, and a malformed one does not decode. */
#include "command.h"
#include "fixture.h"
#include "ops.h"
#include "queue_attrs.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define T0 1000000 /* a command time, ms */
#define SUB_A "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"
#define SUB_B "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb"
#define MSG_ID "11111111-2222-4333-8444-555555555555"

static kyu_command_t topic_cmd(kyu_cmd_type_t type, const char *topic)
{
    kyu_command_t c;
    kyu_command_init(&c);
    c.type = type;
    c.now_ms = T0;
    c.vt = -1;
    snprintf(c.topic, sizeof c.topic, "%s", topic);
    return c;
}

static kyu_command_t subscribe(const char *topic, const char *queue, const char *id, bool raw)
{
    kyu_command_t c = topic_cmd(KYU_CMD_SUBSCRIBE, topic);
    snprintf(c.queue, sizeof c.queue, "%s", queue);
    snprintf(c.sub_id, sizeof c.sub_id, "%s", id);
    c.raw = raw;
    return c;
}

static kyu_command_t subscribe_filter(const char *topic, const char *queue, const char *id,
                                      const char *policy, uint8_t scope)
{
    kyu_command_t c = subscribe(topic, queue, id, true);
    c.n = 1;
    c.bodies[0] = policy;
    c.body_lens[0] = strlen(policy);
    c.filter_scope = scope;
    return c;
}

static kyu_command_t publish(const char *topic, const char *body, const kyu_msg_attrs_t *attrs)
{
    kyu_command_t c = topic_cmd(KYU_CMD_PUBLISH, topic);
    c.n = 1;
    c.bodies[0] = body;
    c.body_lens[0] = strlen(body);
    snprintf(c.ids[0], sizeof c.ids[0], "%s", MSG_ID);
    if (attrs)
        c.attrs[0] = *attrs;
    return c;
}

static kyu_code_t code_of(kyu_result_t r)
{
    kyu_code_t code = r.code;
    kyu_result_clear(&r);
    return code;
}

/* Receives up to 10 of queue's messages; their bodies, NUL-terminated, into out (n of them). */
static size_t receive(fixture_t *f, const char *queue, char out[][2048])
{
    kyu_result_t r = apply1(f, cmd_receive(queue, T0 + 1, 10, 30));
    assert_int_equal(r.code, KYU_OK);
    size_t n = r.n_msgs;
    for (size_t i = 0; i < n; i++) {
        assert_true(r.body_lens[i] < 2048);
        memcpy(out[i], r.bodies[i], r.body_lens[i]);
        out[i][r.body_lens[i]] = '\0';
    }
    kyu_result_clear(&r);
    return n;
}

static void setup_topic(fixture_t *f)
{
    ok(apply1(f, cmd_create("a", 30)));
    ok(apply1(f, cmd_create("b", 30)));
    ok(apply1(f, topic_cmd(KYU_CMD_CREATE_TOPIC, "t")));
    ok(apply1(f, topic_cmd(KYU_CMD_CREATE_TOPIC, "t"))); /* idempotent */
    kyu_result_t r = apply1(f, subscribe("t", "a", SUB_A, false));
    assert_int_equal(r.code, KYU_OK);
    assert_string_equal(r.ids[0], SUB_A);
    kyu_result_clear(&r);
    ok(apply1(f, subscribe("t", "b", SUB_B, true)));
}

static void test_publish_fans_out_raw_and_in_the_envelope(void **state)
{
    fixture_t *f = *state;
    setup_topic(f);
    kyu_msg_attrs_t attrs = {.n = 1};
    attrs.a[0] = (kyu_msg_attr_t){
        .name = "k", .name_len = 1, .type = "String", .type_len = 6, .value = "v", .value_len = 1};
    kyu_result_t r = apply1(f, publish("t", "hello \"you\"", &attrs));
    assert_int_equal(r.code, KYU_OK);
    assert_int_equal(r.n_ids, 1);
    assert_string_equal(r.ids[0], MSG_ID);
    kyu_result_clear(&r);

    char got[10][2048];
    assert_int_equal(receive(f, "b", got), 1);
    assert_string_equal(got[0], "hello \"you\"");
    assert_int_equal(receive(f, "a", got), 1);
    json_error_t e;
    json_t *env = json_loads(got[0], 0, &e);
    assert_non_null(env);
    assert_string_equal(json_string_value(json_object_get(env, "Type")), "Notification");
    assert_string_equal(json_string_value(json_object_get(env, "MessageId")), MSG_ID);
    assert_string_equal(json_string_value(json_object_get(env, "TopicArn")), "kyu:topic:t");
    assert_string_equal(json_string_value(json_object_get(env, "Message")), "hello \"you\"");
    assert_string_equal(json_string_value(json_object_get(env, "Timestamp")),
                        "1970-01-01T00:16:40.000Z");
    json_t *k = json_object_get(json_object_get(env, "MessageAttributes"), "k");
    assert_string_equal(json_string_value(json_object_get(k, "Type")), "String");
    assert_string_equal(json_string_value(json_object_get(k, "Value")), "v");
    json_decref(env);
}

static void test_publish_is_all_or_nothing(void **state)
{
    fixture_t *f = *state;
    setup_topic(f);
    kyu_command_t small = cmd_create("small", 30);
    small.max_size = KYU_MAX_SIZE_MIN;
    ok(apply1(f, small));
    ok(apply1(f, subscribe("t", "small", "cccccccc-cccc-4ccc-8ccc-cccccccccccc", false)));
    char body[1001];
    memset(body, 'x', 1000);
    body[1000] = '\0';
    kyu_result_t r = apply1(f, publish("t", body, NULL)); /* fits raw, not small's envelope */
    assert_int_equal(r.code, KYU_ERR_TOO_LARGE);
    assert_non_null(strstr(r.error, "'small'"));
    kyu_result_clear(&r);
    char got[10][2048];
    assert_int_equal(receive(f, "a", got), 0);
    assert_int_equal(receive(f, "b", got), 0);
    assert_int_equal(receive(f, "small", got), 0);
    ok(apply1(f, publish("t", "short", NULL)));
    assert_int_equal(receive(f, "a", got), 1);
    assert_int_equal(receive(f, "b", got), 1);
    assert_int_equal(receive(f, "small", got), 1);
}

/* A batch (PublishBatch): each entry on its own, all of its queues or none: an entry that
 * failed at the leader and one too large for a queue fail alone; the others land in every
 * queue; the result has a code and a text per entry. */
static void test_publish_batch_entries_are_each_all_or_nothing(void **state)
{
    fixture_t *f = *state;
    setup_topic(f);
    kyu_command_t small = cmd_create("small", 30);
    small.max_size = KYU_MAX_SIZE_MIN;
    ok(apply1(f, small));
    ok(apply1(f, subscribe("t", "small", "cccccccc-cccc-4ccc-8ccc-cccccccccccc", false)));
    char big[1001];
    memset(big, 'x', 1000);
    big[1000] = '\0';
    kyu_command_t c = topic_cmd(KYU_CMD_PUBLISH, "t");
    c.publish_batch = true;
    c.n = 4;
    const char *bodies[] = {"one", NULL, big, "four"};
    for (size_t i = 0; i < 4; i++) {
        if (!bodies[i])
            continue;
        c.bodies[i] = bodies[i];
        c.body_lens[i] = strlen(bodies[i]);
        snprintf(c.ids[i], sizeof c.ids[i], "11111111-2222-4333-8444-55555555555%zu", i);
    }
    c.entry_code[1] = KYU_ERR_EMPTY_BODY;
    snprintf(c.entry_error[1], sizeof c.entry_error[1], "the message has an empty body");
    kyu_result_t r = apply1(f, c);
    assert_int_equal(r.code, KYU_OK);
    assert_int_equal(r.n_ids, 4);
    assert_int_equal(r.n_results, 4);
    assert_int_equal(r.results[0], KYU_OK);
    assert_string_equal(r.ids[0], "11111111-2222-4333-8444-555555555550");
    assert_int_equal(r.results[1], KYU_ERR_EMPTY_BODY);
    assert_string_equal(r.ids[1], "");
    assert_int_equal(r.results[2], KYU_ERR_TOO_LARGE); /* small's envelope */
    assert_non_null(strstr(r.entry_errors[2], "'small'"));
    assert_string_equal(r.ids[2], "");
    assert_int_equal(r.results[3], KYU_OK);
    kyu_result_clear(&r);
    const char *queues[] = {"a", "b", "small"};
    for (size_t q = 0; q < 3; q++) {
        char got[10][2048];
        assert_int_equal(receive(f, queues[q], got), 2);
    }
    /* Every entry published: no per-entry results. */
    c.entry_code[1] = 0;
    c.bodies[1] = "two";
    c.body_lens[1] = 3;
    snprintf(c.ids[1], sizeof c.ids[1], "11111111-2222-4333-8444-555555555551");
    c.bodies[2] = "three";
    c.body_lens[2] = 5;
    r = apply1(f, c);
    assert_int_equal(r.code, KYU_OK);
    assert_int_equal(r.n_ids, 4);
    assert_int_equal(r.n_results, 0);
    kyu_result_clear(&r);
    char got[10][2048];
    assert_int_equal(receive(f, "small", got), 4);
}

/* Fan-out multiplies writes: a publish whose copies would total more than
 * KYU_PUBLISH_FANOUT_MAX bytes is refused whole. */
static void test_publish_fan_out_is_bounded(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, topic_cmd(KYU_CMD_CREATE_TOPIC, "t")));
    size_t n = KYU_PUBLISH_FANOUT_MAX / (512 * 1024) + 1;
    for (size_t i = 0; i < n; i++) {
        char q[16], id[KYU_SUB_ID_LEN + 1];
        snprintf(q, sizeof q, "q%zu", i);
        snprintf(id, sizeof id, "%08zx-0000-4000-8000-000000000000", i);
        ok(apply1(f, cmd_create(q, 30)));
        ok(apply1(f, subscribe("t", q, id, true)));
    }
    char *body = malloc(512 * 1024 + 1);
    assert_non_null(body);
    memset(body, 'x', 512 * 1024);
    body[512 * 1024] = '\0';
    kyu_result_t r = apply1(f, publish("t", body, NULL));
    assert_int_equal(r.code, KYU_ERR_TOO_LARGE);
    assert_non_null(strstr(r.error, "at most"));
    kyu_result_clear(&r);
    char got[10][2048];
    assert_int_equal(receive(f, "q0", got), 0);
    body[1000] = '\0'; /* small enough: every queue gets it */
    ok(apply1(f, publish("t", body, NULL)));
    free(body);
    assert_int_equal(receive(f, "q0", got), 1);
    char last[16];
    snprintf(last, sizeof last, "q%zu", n - 1);
    assert_int_equal(receive(f, last, got), 1);
}

/* KYU_TOPICS_MAX topics, KYU_TOPIC_SUBS_MAX subscriptions per topic: LIMIT_EXCEEDED past
 * them, nothing changed; an existing topic is still created (idempotent) at the bound. */
static void test_topic_and_subscription_bounds(void **state)
{
    fixture_t *f = *state;
    char name[32];
    for (int i = 0; i < KYU_TOPICS_MAX; i++) {
        snprintf(name, sizeof name, "t%d", i);
        ok(apply1(f, topic_cmd(KYU_CMD_CREATE_TOPIC, name)));
    }
    assert_int_equal(code_of(apply1(f, topic_cmd(KYU_CMD_CREATE_TOPIC, "one-more"))),
                     KYU_ERR_LIMIT_EXCEEDED);
    ok(apply1(f, topic_cmd(KYU_CMD_CREATE_TOPIC, "t0")));
    for (int i = 0; i <= KYU_TOPIC_SUBS_MAX; i++) {
        char id[KYU_SUB_ID_LEN + 1];
        snprintf(name, sizeof name, "q%d", i);
        snprintf(id, sizeof id, "%08x-0000-4000-8000-000000000000", i);
        ok(apply1(f, cmd_create(name, 30)));
        kyu_code_t code = code_of(apply1(f, subscribe("t0", name, id, true)));
        assert_int_equal(code, i < KYU_TOPIC_SUBS_MAX ? KYU_OK : KYU_ERR_LIMIT_EXCEEDED);
    }
    ok(apply1(f, publish("t0", "x", NULL)));
    char got[10][2048];
    assert_int_equal(receive(f, "q0", got), 1);
    snprintf(name, sizeof name, "q%d", KYU_TOPIC_SUBS_MAX);
    assert_int_equal(receive(f, name, got), 0); /* its subscription was refused */
}

static void test_subscriptions_change_and_survive_a_restart(void **state)
{
    fixture_t *f = *state;
    setup_topic(f);
    /* The same queue again: the existing id, whatever id the command carries; the other
     * mode is refused. */
    kyu_result_t r = apply1(f, subscribe("t", "a", "dddddddd-dddd-4ddd-8ddd-dddddddddddd", false));
    assert_int_equal(r.code, KYU_OK);
    assert_string_equal(r.ids[0], SUB_A);
    kyu_result_clear(&r);
    assert_int_equal(code_of(apply1(f, subscribe("t", "a", SUB_B, true))),
                     KYU_ERR_INVALID_ARGUMENT);
    assert_int_equal(code_of(apply1(f, subscribe("nope", "a", SUB_B, true))),
                     KYU_ERR_NO_SUCH_TOPIC);
    assert_int_equal(code_of(apply1(f, subscribe("t", "nope", SUB_B, true))),
                     KYU_ERR_NO_SUCH_QUEUE);
    kyu_command_t un = topic_cmd(KYU_CMD_UNSUBSCRIBE, "");
    snprintf(un.sub_id, sizeof un.sub_id, "%s", SUB_B);
    ok(apply1(f, un));
    assert_int_equal(code_of(apply1(f, un)), KYU_ERR_NO_SUCH_SUBSCRIPTION);

    fixture_reopen(f);
    ok(apply1(f, publish("t", "after", NULL)));
    char got[10][2048];
    assert_int_equal(receive(f, "b", got), 0); /* unsubscribed */
    assert_int_equal(receive(f, "a", got), 1); /* kept across the restart */

    /* Deleting queue a removes its subscription: the publish then goes nowhere. */
    ok(apply1(f, cmd_delete_queue("a")));
    ok(apply1(f, cmd_create("a", 30)));
    fixture_reopen(f);
    ok(apply1(f, publish("t", "x", NULL)));
    assert_int_equal(receive(f, "a", got), 0);

    ok(apply1(f, topic_cmd(KYU_CMD_DELETE_TOPIC, "t")));
    ok(apply1(f, topic_cmd(KYU_CMD_DELETE_TOPIC, "t"))); /* as SNS: no error */
    assert_int_equal(code_of(apply1(f, publish("t", "x", NULL))), KYU_ERR_NO_SUCH_TOPIC);
    fixture_reopen(f);
    assert_int_equal(code_of(apply1(f, publish("t", "x", NULL))), KYU_ERR_NO_SUCH_TOPIC);
}

/* Filter policies: a publish lands only in the queues whose policy matches (attributes or
 * body scope); the policy survives a restart; a bad one is refused and changes nothing; the
 * same policy again answers the same id, another one is refused. */
static void test_filter_policies_route_publishes(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, cmd_create("a", 30)));
    ok(apply1(f, cmd_create("b", 30)));
    ok(apply1(f, cmd_create("c", 30)));
    ok(apply1(f, topic_cmd(KYU_CMD_CREATE_TOPIC, "t")));
    ok(apply1(f, subscribe_filter("t", "a", SUB_A, "{\"color\":[\"red\"]}", 0)));
    ok(apply1(f, subscribe_filter("t", "b", SUB_B, "{\"n\":[{\"numeric\":[\">\",5]}]}", 1)));
    assert_int_equal(code_of(apply1(f, subscribe_filter("t", "c", MSG_ID, "{\"x\":1}", 0))),
                     KYU_ERR_INVALID_ARGUMENT);
    kyu_result_t r = apply1(f, subscribe_filter("t", "a", MSG_ID, "{ \"color\" : [\"red\"] }", 0));
    assert_int_equal(r.code, KYU_OK);
    assert_string_equal(r.ids[0], SUB_A);
    kyu_result_clear(&r);
    assert_int_equal(
        code_of(apply1(f, subscribe_filter("t", "a", MSG_ID, "{\"color\":[\"blue\"]}", 0))),
        KYU_ERR_INVALID_ARGUMENT);
    assert_int_equal(code_of(apply1(f, subscribe("t", "a", MSG_ID, true))),
                     KYU_ERR_INVALID_ARGUMENT);
    for (int round = 0; round < 2; round++) {
        kyu_msg_attrs_t red = {.n = 1};
        red.a[0] = (kyu_msg_attr_t){.name = "color",
                                    .name_len = 5,
                                    .type = "String",
                                    .type_len = 6,
                                    .value = "red",
                                    .value_len = 3};
        ok(apply1(f, publish("t", "{\"n\":3}", &red)));
        ok(apply1(f, publish("t", "{\"n\":7}", NULL)));
        ok(apply1(f, publish("t", "plain", NULL)));
        char got[10][2048];
        assert_int_equal(receive(f, "a", got), 1);
        assert_string_equal(got[0], "{\"n\":3}");
        assert_int_equal(receive(f, "b", got), 1);
        assert_string_equal(got[0], "{\"n\":7}");
        assert_int_equal(receive(f, "c", got), 0);
        fixture_reopen(f); /* the policies are in the record */
    }
}

static kyu_command_t set_sub(const char *id, int raw, const char *policy, bool no_filter, int scope)
{
    kyu_command_t c = topic_cmd(KYU_CMD_SET_SUBSCRIPTION_ATTRIBUTES, "");
    snprintf(c.sub_id, sizeof c.sub_id, "%s", id);
    c.has_raw = raw >= 0;
    c.raw = raw == 1;
    if (policy) {
        c.n = 1;
        c.bodies[0] = policy;
        c.body_lens[0] = strlen(policy);
    }
    c.no_filter = no_filter;
    c.has_filter_scope = scope >= 0;
    c.filter_scope = scope >= 0 ? (uint8_t)scope : 0;
    return c;
}

/* SET_SUBSCRIPTION_ATTRIBUTES: the policy, its scope and raw delivery change in place; the
 * change is in the record (a restart keeps it); a change that does not hold (a nested policy
 * under the attributes scope, a scope without a policy, an unknown id) changes nothing. */
static void test_subscription_attributes_change_in_place(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, cmd_create("a", 30)));
    ok(apply1(f, topic_cmd(KYU_CMD_CREATE_TOPIC, "t")));
    ok(apply1(f, subscribe_filter("t", "a", SUB_A, "{\"color\":[\"red\"]}", 0)));
    kyu_msg_attrs_t blue = {.n = 1};
    blue.a[0] = (kyu_msg_attr_t){.name = "color",
                                 .name_len = 5,
                                 .type = "String",
                                 .type_len = 6,
                                 .value = "blue",
                                 .value_len = 4};
    char got[10][2048];
    ok(apply1(f, publish("t", "b1", &blue)));
    assert_int_equal(receive(f, "a", got), 0);
    ok(apply1(f, set_sub(SUB_A, -1, "{\"color\":[\"blue\"]}", false, -1)));
    fixture_reopen(f);
    ok(apply1(f, publish("t", "b2", &blue)));
    assert_int_equal(receive(f, "a", got), 1);
    assert_string_equal(got[0], "b2");
    /* The scope alone: the same policy on the body. */
    ok(apply1(f, set_sub(SUB_A, -1, NULL, false, 1)));
    ok(apply1(f, publish("t", "{\"color\":\"blue\"}", NULL)));
    ok(apply1(f, publish("t", "b3", &blue)));
    assert_int_equal(receive(f, "a", got), 1);
    assert_string_equal(got[0], "{\"color\":\"blue\"}");
    /* Nested keys under the attributes scope, an unknown id: refused, nothing changes. */
    ok(apply1(f, set_sub(SUB_A, -1, "{\"x\":{\"y\":[1]}}", false, -1))); /* body scope kept */
    assert_int_equal(code_of(apply1(f, set_sub(SUB_A, -1, NULL, false, 0))),
                     KYU_ERR_INVALID_ARGUMENT);
    assert_int_equal(code_of(apply1(f, set_sub(SUB_B, 1, NULL, false, -1))),
                     KYU_ERR_NO_SUCH_SUBSCRIPTION);
    ok(apply1(f, publish("t", "{\"x\":{\"y\":1}}", NULL)));
    assert_int_equal(receive(f, "a", got), 1);
    /* Envelope, then no policy: every message, wrapped. */
    ok(apply1(f, set_sub(SUB_A, 0, NULL, true, -1)));
    assert_int_equal(code_of(apply1(f, set_sub(SUB_A, -1, NULL, false, 1))),
                     KYU_ERR_INVALID_ARGUMENT); /* no policy to scope */
    fixture_reopen(f);
    ok(apply1(f, publish("t", "plain", NULL)));
    assert_int_equal(receive(f, "a", got), 1);
    json_t *env = json_loads(got[0], 0, NULL);
    assert_non_null(env);
    assert_string_equal(json_string_value(json_object_get(env, "Message")), "plain");
    json_decref(env);
}

/* Each command round-trips; wrong shapes do not decode (a corrupt log stops the node). */
/* SNS: a standard topic delivers to standard queues only; a FIFO queue's subscription is
 * refused and a publish leaves it untouched (no copy lands without a message group). */
static void test_a_standard_topic_refuses_a_fifo_queue(void **state)
{
    fixture_t *f = *state;
    static kyu_queue_ext_t x;
    kyu_qattrs_defaults(&x);
    x.fifo = true;
    x.cbd = true;
    kyu_command_t c = cmd_create("f.fifo", 30);
    c.now_ms = T0;
    c.qx = &x;
    c.qx_set = KYU_F_FIFO | KYU_F_CBD;
    ok(apply1(f, c));
    ok(apply1(f, topic_cmd(KYU_CMD_CREATE_TOPIC, "t")));
    assert_int_equal(code_of(apply1(f, subscribe("t", "f.fifo", SUB_A, true))),
                     KYU_ERR_INVALID_ARGUMENT);
    ok(apply1(f, publish("t", "x", NULL)));
    char got[10][2048];
    assert_int_equal(receive(f, "f.fifo", got), 0);
}

/* ---- a standard topic's MessageGroupId (SNS's: forwarded to its standard queues) ---- */

/* Receives up to 10 of queue's messages: their bodies and groups ("" for none), n of them; no
 * copy has a deduplication id. */
static size_t receive_groups(fixture_t *f, const char *queue, uint64_t now, char bodies[][64],
                             char groups[][KYU_GROUP_ID_MAX + 1])
{
    kyu_result_t r = apply1(f, cmd_receive(queue, now, 10, 30));
    assert_int_equal(r.code, KYU_OK);
    size_t n = r.n_msgs;
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(r.msgs[i].dedup_id, "");
        memcpy(groups[i], r.msgs[i].group_id, sizeof groups[i]);
        const char *body = r.bodies[i];
        size_t len = r.body_lens[i];
        json_error_t e;
        json_t *env = body[0] == '{' ? json_loadb(body, len, 0, &e) : NULL;
        if (env) { /* the envelope: its Message */
            body = json_string_value(json_object_get(env, "Message"));
            assert_non_null(body);
            len = strlen(body);
        }
        assert_true(len < 64);
        memcpy(bodies[i], body, len);
        bodies[i][len] = '\0';
        json_decref(env);
    }
    kyu_result_clear(&r);
    return n;
}

static kyu_command_t publish_grouped(const char *topic, const char *body, const char *group)
{
    kyu_command_t c = publish(topic, body, NULL);
    snprintf(c.group_ids[0], sizeof c.group_ids[0], "%s", group);
    return c;
}

/* A grouped publish reaches both standard queues (enveloped and raw) with its group, and a
 * receive returns it as a grouped send's; a batch's entries each with their own group or
 * none; all of it after a restart too. */
static void test_a_standard_topic_forwards_a_group_to_its_queues(void **state)
{
    fixture_t *f = *state;
    setup_topic(f);
    ok(apply1(f, publish_grouped("t", "one", "tenant-1")));
    kyu_command_t b = topic_cmd(KYU_CMD_PUBLISH, "t");
    b.publish_batch = true;
    b.n = 3;
    const char *bodies[] = {"two", "three", "four"}, *groups[] = {"tenant-2", "", "tenant-1"};
    for (size_t i = 0; i < 3; i++) {
        b.bodies[i] = bodies[i];
        b.body_lens[i] = strlen(bodies[i]);
        snprintf(b.ids[i], sizeof b.ids[i], "11111111-2222-4333-8444-55555555556%zu", i);
        snprintf(b.group_ids[i], sizeof b.group_ids[i], "%s", groups[i]);
    }
    kyu_result_t r = apply1(f, b);
    assert_int_equal(r.code, KYU_OK);
    assert_int_equal(r.n_ids, 3);
    assert_int_equal(r.n_results, 0);
    kyu_result_clear(&r);
    fixture_reopen(f);
    const char *queues[] = {"a", "b"};
    for (size_t q = 0; q < 2; q++) {
        char got[10][64], gid[10][KYU_GROUP_ID_MAX + 1];
        size_t n = receive_groups(f, queues[q], T0 + 1, got, gid);
        assert_int_equal(n, 4);
        const char *want_body[] = {"one", "two", "three", "four"};
        const char *want_group[] = {"tenant-1", "tenant-2", "", "tenant-1"};
        for (size_t w = 0; w < 4; w++) {
            size_t at = n;
            for (size_t i = 0; i < n; i++)
                if (strcmp(got[i], want_body[w]) == 0)
                    at = i;
            if (at == n)
                fail_msg("queue %s: no copy of '%s'", queues[q], want_body[w]);
            assert_string_equal(gid[at], want_group[w]);
        }
    }
}

/* Copies with a group go through the queue's fair groups: a noisy tenant's backlog does not
 * keep a quiet tenant's message out of a receive of one. */
static void test_a_topic_group_is_served_fairly_in_its_queue(void **state)
{
    fixture_t *f = *state;
    setup_topic(f);
    for (int i = 0; i < 20; i++) {
        char body[16], id[KYU_UUID_LEN + 1];
        snprintf(body, sizeof body, "noisy-%d", i);
        kyu_command_t c = publish_grouped("t", body, "noisy");
        snprintf(id, sizeof id, "11111111-2222-4333-8444-5555555556%02d", i);
        memcpy(c.ids[0], id, sizeof id);
        ok(apply1(f, c));
    }
    /* the noisy tenant served once, then the quiet one's single message arrives */
    kyu_result_t r = apply1(f, cmd_receive("b", T0 + 1, 1, 30));
    assert_int_equal(r.n_msgs, 1);
    assert_string_equal(r.msgs[0].group_id, "noisy");
    kyu_result_clear(&r);
    ok(apply1(f, publish_grouped("t", "quiet", "quiet")));
    r = apply1(f, cmd_receive("b", T0 + 2, 1, 30));
    assert_int_equal(r.code, KYU_OK);
    assert_int_equal(r.n_msgs, 1);
    assert_string_equal(r.msgs[0].group_id, "quiet");
    assert_int_equal(r.body_lens[0], 5);
    assert_memory_equal(r.bodies[0], "quiet", 5);
    kyu_result_clear(&r);
}

static kyu_request_t publish_request(const char *topic)
{
    kyu_request_t r;
    memset(&r, 0, sizeof r);
    r.op = KYU_OP_PUBLISH;
    r.fields = KYU_F_TOPIC;
    snprintf(r.topic, sizeof r.topic, "%s", topic);
    return r;
}

static kyu_code_t validate_publish(fixture_t *f, const kyu_request_t *req, size_t n, kyu_err_t *err)
{
    kyu_op_ctx_t ctx = {.sm = f->sm, .max_body = 1 << 20};
    kyu_body_t b[KYU_BATCH_MAX];
    for (size_t i = 0; i < n; i++)
        b[i] = (kyu_body_t){"x", 1};
    kyu_bodies_t z = {b, n};
    kyu_err_clear(err);
    return kyu_ops_row(req->op)->validate(&ctx, req, &z, err);
}

/* The leader takes a standard topic's group and refuses its deduplication id (a single
 * publish whole, a batch's entry alone), and that refusal changes nothing. */
static void test_a_standard_topic_takes_a_group_and_refuses_a_dedup_id(void **state)
{
    fixture_t *f = *state;
    setup_topic(f);
    kyu_err_t err;
    kyu_request_t r = publish_request("t");
    r.fields |= KYU_F_GROUPS;
    r.n_group_msgs = 1;
    snprintf(r.group_ids[0], sizeof r.group_ids[0], "g");
    assert_int_equal(validate_publish(f, &r, 1, &err), KYU_OK);
    snprintf(r.dedup_ids[0], sizeof r.dedup_ids[0], "d");
    assert_int_equal(validate_publish(f, &r, 1, &err), KYU_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.msg, "MessageDeduplicationId is for FIFO topics"));
    r.group_ids[0][0] = '\0'; /* a dedup id alone: refused too */
    assert_int_equal(validate_publish(f, &r, 1, &err), KYU_ERR_INVALID_ARGUMENT);

    /* A batch: entry 0 grouped, entry 1 with a dedup id (fails alone), entry 2 neither. */
    kyu_request_t b = publish_request("t");
    b.fields |= KYU_F_GROUPS | KYU_F_ENTRY_IDS;
    b.n_group_msgs = 3;
    b.n_entries = 3;
    for (size_t i = 0; i < 3; i++)
        snprintf(b.entry_ids[i], sizeof b.entry_ids[i], "e%zu", i);
    snprintf(b.group_ids[0], sizeof b.group_ids[0], "g0");
    snprintf(b.group_ids[1], sizeof b.group_ids[1], "g1");
    snprintf(b.dedup_ids[1], sizeof b.dedup_ids[1], "d1");
    assert_int_equal(validate_publish(f, &b, 3, &err), KYU_OK);
    kyu_op_ctx_t ctx = {.sm = f->sm, .max_body = 1 << 20, .rng = {1, 2, 3, 4}};
    kyu_body_t bb[] = {{"zero", 4}, {"one", 3}, {"two", 3}};
    kyu_bodies_t z = {bb, 3};
    kyu_command_t c;
    kyu_command_init(&c);
    c.type = KYU_CMD_PUBLISH;
    c.now_ms = T0;
    c.vt = -1;
    kyu_ops_row(KYU_OP_PUBLISH)->build(&ctx, &b, &z, &c);
    assert_int_equal(c.n, 3);
    assert_false(c.topic_fifo);
    assert_string_equal(c.group_ids[0], "g0");
    assert_int_equal(c.entry_code[1], KYU_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(c.entry_error[1], "MessageDeduplicationId"));
    assert_string_equal(c.group_ids[2], "");
    for (size_t i = 0; i < 3; i++)
        assert_string_equal(c.dedup_ids[i], "");
    kyu_result_t res = apply1(f, c);
    assert_int_equal(res.code, KYU_OK);
    assert_int_equal(res.n_results, 3);
    assert_int_equal(res.results[1], KYU_ERR_INVALID_ARGUMENT);
    kyu_result_clear(&res);
    char got[10][64], gid[10][KYU_GROUP_ID_MAX + 1];
    assert_int_equal(receive_groups(f, "b", T0 + 1, got, gid), 2); /* entry 1: nothing */
    for (size_t i = 0; i < 2; i++)
        assert_string_equal(gid[i], strcmp(got[i], "zero") == 0 ? "g0" : "");
}

/* A crash loses the state machine's unwritten writes; the log's entry, a standard topic's
 * grouped publish (the 4-element encoding), applied again from there gives the same copies
 * with their groups. */
static void test_a_grouped_publish_is_replayed_after_a_crash(void **state)
{
    fixture_t *f = *state;
    kyu_command_t log[] = {cmd_create("a", 30),
                           cmd_create("b", 30),
                           topic_cmd(KYU_CMD_CREATE_TOPIC, "t"),
                           subscribe("t", "a", SUB_A, false),
                           subscribe("t", "b", SUB_B, true),
                           publish_grouped("t", "again", "tenant-9")};
    size_t n = sizeof log / sizeof log[0];
    uint64_t first = f->index + 1;
    for (size_t i = 0; i < n; i++)
        ok(apply1(f, log[i]));
    fixture_crash(f);
    f->index = kyu_sm_applied_index(f->sm);
    assert_true(f->index + 1 >= first && f->index < first + n);
    for (size_t i = f->index + 1 - first; i < n; i++) /* the replay of the log from there */
        ok(apply1(f, log[i]));
    for (size_t q = 0; q < 2; q++) {
        char got[10][64], gid[10][KYU_GROUP_ID_MAX + 1];
        assert_int_equal(receive_groups(f, q ? "b" : "a", T0 + 1, got, gid), 1);
        assert_string_equal(got[0], "again");
        assert_string_equal(gid[0], "tenant-9");
    }
}

static void test_topic_commands_round_trip_through_the_log_encoding(void **state)
{
    (void)state;
    kyu_msg_attrs_t attrs = {.n = 1};
    attrs.a[0] = (kyu_msg_attr_t){.name = "k",
                                  .name_len = 1,
                                  .type = "Binary",
                                  .type_len = 6,
                                  .value = "\x01\x02",
                                  .value_len = 2,
                                  .binary = true};
    kyu_command_t cmds[] = {topic_cmd(KYU_CMD_CREATE_TOPIC, "t"),
                            topic_cmd(KYU_CMD_DELETE_TOPIC, "t"),
                            subscribe("t", "q", SUB_A, true),
                            topic_cmd(KYU_CMD_UNSUBSCRIBE, ""),
                            publish("t", "body", &attrs),
                            subscribe_filter("t", "q", SUB_A, "{\"k\":[\"v\"]}", 1),
                            set_sub(SUB_A, 1, "{\"k\":[\"v\"]}", false, 0),
                            set_sub(SUB_B, 0, NULL, true, -1),
                            set_sub(SUB_A, -1, NULL, false, 1),
                            publish("t", "body", &attrs),
                            publish("t", "body", &attrs),
                            publish("t", "body", &attrs)};
    size_t last = sizeof cmds / sizeof cmds[0] - 3;
    /* A standard topic's grouped message (4 elements), alone and in a batch beside one
     * without a group (3 elements) */
    snprintf(cmds[last + 1].group_ids[0], sizeof cmds[last + 1].group_ids[0], "tenant-1");
    kyu_command_t *mixed = &cmds[last + 2];
    snprintf(mixed->group_ids[0], sizeof mixed->group_ids[0], "tenant-2");
    mixed->publish_batch = true;
    mixed->n = 2;
    mixed->bodies[1] = "second";
    mixed->body_lens[1] = 6;
    snprintf(mixed->ids[1], sizeof mixed->ids[1], "%s", SUB_A);
    cmds[last].publish_batch = true; /* a batch of 2: a message, an entry failed */
    cmds[last].n = 2;
    cmds[last].entry_code[1] = KYU_ERR_EMPTY_BODY;
    snprintf(cmds[last].entry_error[1], sizeof cmds[last].entry_error[1], "empty");
    snprintf(cmds[3].sub_id, sizeof cmds[3].sub_id, "%s", SUB_B);
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        msgpack_sbuffer b;
        msgpack_sbuffer_init(&b);
        kyu_command_encode(&cmds[i], &b);
        size_t off = 0;
        kyu_err_t err;
        kyu_command_t d;
        if (kyu_command_decode(b.data, b.size, &off, &d, &err) != KYU_OK)
            fail_msg("command %zu does not decode: %s", i, err.msg);
        assert_int_equal(off, b.size);
        assert_int_equal(d.type, cmds[i].type);
        assert_string_equal(d.topic, cmds[i].topic);
        assert_string_equal(d.sub_id, cmds[i].sub_id);
        assert_string_equal(d.queue, cmds[i].queue);
        assert_int_equal(d.raw, cmds[i].raw);
        if (d.type == KYU_CMD_SUBSCRIBE) {
            assert_int_equal(d.n, cmds[i].n);
            assert_int_equal(d.filter_scope, cmds[i].filter_scope);
            if (d.n)
                assert_memory_equal(d.bodies[0], cmds[i].bodies[0], d.body_lens[0]);
        }
        if (d.type == KYU_CMD_SET_SUBSCRIPTION_ATTRIBUTES) {
            assert_int_equal(d.has_raw, cmds[i].has_raw);
            assert_int_equal(d.no_filter, cmds[i].no_filter);
            assert_int_equal(d.has_filter_scope, cmds[i].has_filter_scope);
            assert_int_equal(d.filter_scope, cmds[i].filter_scope);
            assert_int_equal(d.n, cmds[i].n);
            if (d.n)
                assert_memory_equal(d.bodies[0], cmds[i].bodies[0], d.body_lens[0]);
        }
        if (d.type == KYU_CMD_PUBLISH) {
            assert_int_equal(d.publish_batch, cmds[i].publish_batch);
            assert_int_equal(d.n, cmds[i].n);
            if (d.publish_batch && cmds[i].entry_code[1]) {
                assert_int_equal(d.entry_code[1], KYU_ERR_EMPTY_BODY);
                assert_string_equal(d.entry_error[1], "empty");
            }
            assert_false(d.topic_fifo);
            for (size_t j = 0; j < d.n; j++) {
                assert_string_equal(d.group_ids[j], cmds[i].group_ids[j]);
                assert_string_equal(d.dedup_ids[j], "");
            }
            if (d.n == 2 && !d.entry_code[1])
                assert_memory_equal(d.bodies[1], "second", 6);
            assert_string_equal(d.ids[0], MSG_ID);
            assert_int_equal(d.body_lens[0], 4);
            assert_memory_equal(d.bodies[0], "body", 4);
            assert_int_equal(d.attrs[0].n, 1);
            assert_true(d.attrs[0].a[0].binary);
        }
        /* Cut short anywhere: refused. */
        for (size_t cut = 1; cut < b.size; cut++) {
            off = 0;
            assert_int_not_equal(kyu_command_decode(b.data, cut, &off, &d, &err), KYU_OK);
        }
        msgpack_sbuffer_destroy(&b);
    }
    /* A topic name the rules refuse, a short subscription id: refused. */
    kyu_command_t bad = topic_cmd(KYU_CMD_CREATE_TOPIC, "a.b");
    kyu_command_t short_id = subscribe("t", "q", "123", false);
    kyu_command_t no_and_scope = set_sub(SUB_A, -1, NULL, true, 1); /* no policy, scoped */
    kyu_command_t *bads[] = {&bad, &short_id, &no_and_scope};
    for (size_t i = 0; i < 3; i++) {
        msgpack_sbuffer b;
        msgpack_sbuffer_init(&b);
        kyu_command_encode(bads[i], &b);
        size_t off = 0;
        kyu_err_t err;
        kyu_command_t d;
        assert_int_not_equal(kyu_command_decode(b.data, b.size, &off, &d, &err), KYU_OK);
        msgpack_sbuffer_destroy(&b);
    }
}

/* What the frontend counts ahead of a PUBLISH it proposes (serving in the publish's entry):
 * per subscribed queue it asks about, the copies a receive right after it would find. */
typedef struct {
    const char *want; /* the queues asked about, each followed by ' ' */
    char got[256];    /* "queue=n " per queue found */
} visible_t;

static bool wanted(void *arg, const char *queue)
{
    const visible_t *v = arg;
    char w[KYU_NAME_MAX + 2];
    snprintf(w, sizeof w, "%s ", queue);
    return strstr(v->want, w) != NULL;
}

static void found(void *arg, const char *queue, uint64_t n)
{
    visible_t *v = arg;
    size_t len = strlen(v->got);
    snprintf(v->got + len, sizeof v->got - len, "%s=%llu ", queue, (unsigned long long)n);
}

static const char *visible_at_once(fixture_t *f, const kyu_command_t *c, const char *want,
                                   visible_t *v)
{
    *v = (visible_t){.want = want};
    kyu_sm_publish_visible_at_once(f->sm, c, wanted, found, v);
    return v->got;
}

static void test_a_publishs_copies_visible_at_once_are_counted(void **state)
{
    fixture_t *f = *state;
    visible_t v;
    kyu_command_t c = publish("t", "m", NULL);
    assert_string_equal(visible_at_once(f, &c, "a b ", &v), ""); /* no topic */
    ok(apply1(f, cmd_create("a", 30)));
    ok(apply1(f, cmd_create("b", 30)));
    ok(apply1(f, cmd_create("c", 30)));
    ok(apply1(f, topic_cmd(KYU_CMD_CREATE_TOPIC, "t")));
    ok(apply1(f, subscribe("t", "a", SUB_A, false)));
    ok(apply1(f, subscribe_filter("t", "b", SUB_B, "{\"color\":[\"red\"]}", 0)));
    ok(apply1(f, subscribe("t", "c", MSG_ID, true)));
    assert_string_equal(visible_at_once(f, &c, "a b c ", &v), "a=1 c=1 "); /* b's policy: no */
    assert_string_equal(visible_at_once(f, &c, "b c ", &v), "c=1 ");       /* only those asked */
    kyu_msg_attrs_t red = {.n = 1};
    red.a[0] = (kyu_msg_attr_t){.name = "color",
                                .name_len = 5,
                                .type = "String",
                                .type_len = 6,
                                .value = "red",
                                .value_len = 3};
    c = publish("t", "m", &red);
    assert_string_equal(visible_at_once(f, &c, "a b c ", &v), "a=1 b=1 c=1 ");
    /* a batch: its failed entry makes no copy */
    c.n = 3;
    for (size_t i = 1; i < 3; i++) {
        c.bodies[i] = "n";
        c.body_lens[i] = 1;
        snprintf(c.ids[i], sizeof c.ids[i], "%s", MSG_ID);
    }
    c.publish_batch = true;
    c.entry_code[2] = KYU_ERR_EMPTY_BODY;
    assert_string_equal(visible_at_once(f, &c, "a b c ", &v), "a=2 b=1 c=2 ");
    /* a queue's DelaySeconds hides its copies */
    kyu_command_t d = cmd_create("a", -1);
    d.type = KYU_CMD_SET_QUEUE_ATTRIBUTES;
    d.now_ms = T0;
    d.has_delay = true;
    d.delay = 5;
    ok(apply1(f, d));
    assert_string_equal(visible_at_once(f, &c, "a b c ", &v), "b=1 c=2 ");
    /* the guess is the apply's: the copies are there after it */
    ok(apply1(f, c));
    char got[10][2048];
    assert_int_equal(receive(f, "b", got), 1);
    assert_int_equal(receive(f, "c", got), 2);
    assert_int_equal(receive(f, "a", got), 0); /* delayed */
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, fixture_setup, fixture_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_publish_fans_out_raw_and_in_the_envelope),
        T(test_publish_is_all_or_nothing),
        T(test_publish_batch_entries_are_each_all_or_nothing),
        T(test_publish_fan_out_is_bounded),
        T(test_topic_and_subscription_bounds),
        T(test_subscriptions_change_and_survive_a_restart),
        T(test_filter_policies_route_publishes),
        T(test_subscription_attributes_change_in_place),
        T(test_a_standard_topic_refuses_a_fifo_queue),
        T(test_a_standard_topic_forwards_a_group_to_its_queues),
        T(test_a_topic_group_is_served_fairly_in_its_queue),
        T(test_a_standard_topic_takes_a_group_and_refuses_a_dedup_id),
        T(test_a_grouped_publish_is_replayed_after_a_crash),
        T(test_a_publishs_copies_visible_at_once_are_counted),
        cmocka_unit_test(test_topic_commands_round_trip_through_the_log_encoding),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
