/* Queue attributes (broker/op_queue.c): CREATE_QUEUE and SET_QUEUE_ATTRIBUTES applied,
 * validated before they are proposed, encoded in the log, and kept across restarts, also
 * from records written before MaximumMessageSize existed; PURGE_QUEUE. */
#include "command.h"
#include "fixture.h"
#include "ops.h"
#include "queue_attrs.h"
#include "store.h"

#include <stdlib.h>
#include <string.h>

#define T0 1000000 /* a command time, ms */

static kyu_command_t cmd_create_attrs(const char *q, uint64_t now, int64_t vt, uint32_t max_size)
{
    kyu_command_t c = cmd_create(q, vt);
    c.now_ms = now;
    c.max_size = max_size;
    return c;
}

static kyu_command_t cmd_set_attrs(const char *q, uint64_t now, int64_t vt, uint32_t max_size)
{
    kyu_command_t c = cmd_create_attrs(q, now, vt, max_size);
    c.type = KYU_CMD_SET_QUEUE_ATTRIBUTES;
    return c;
}

/* ---- apply ---- */

static void test_create_keeps_its_attributes_and_stamps_the_modification(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, cmd_create_attrs("q", T0, 60, 2048)));
    kyu_queue_attrs_t a = fixture_attrs(f, "q", T0);
    assert_int_equal(a.visibility_timeout, 60);
    assert_int_equal(a.max_size, 2048);
    assert_int_equal(a.created_ms, T0);
    assert_int_equal(a.modified_ms, T0);
}

static void test_create_without_attributes_takes_the_defaults(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, cmd_create_attrs("q", T0, -1, 0)));
    kyu_queue_attrs_t a = fixture_attrs(f, "q", T0);
    assert_int_equal(a.visibility_timeout, KYU_VISIBILITY_DEFAULT);
    assert_int_equal(a.max_size, KYU_MAX_SIZE_DEFAULT);
}

static void test_create_existing_with_the_same_attributes_succeeds(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, cmd_create_attrs("q", T0, 60, 2048)));
    ok(apply1(f, cmd_create_attrs("q", T0 + 5, 60, 2048)));
    assert_int_equal(fixture_attrs(f, "q", T0).modified_ms, T0);
}

static void test_create_existing_with_another_max_size_names_the_attribute(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, cmd_create_attrs("q", T0, 60, 2048)));
    expect_result(apply1(f, cmd_create_attrs("q", T0, 60, 4096)), KYU_ERR_QUEUE_EXISTS,
                  "MaximumMessageSize: 2048, not 4096");
    expect_result(apply1(f, cmd_create_attrs("q", T0, 61, 2048)), KYU_ERR_QUEUE_EXISTS,
                  "VisibilityTimeout: 60, not 61");
    assert_int_equal(fixture_attrs(f, "q", T0).max_size, 2048);
}

static void test_set_changes_only_the_attributes_given_and_the_modification_time(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, cmd_create_attrs("q", T0, 60, 2048)));
    ok(apply1(f, cmd_set_attrs("q", T0 + 1000, -1, 4096)));
    kyu_queue_attrs_t a = fixture_attrs(f, "q", T0);
    assert_int_equal(a.visibility_timeout, 60);
    assert_int_equal(a.max_size, 4096);
    assert_int_equal(a.created_ms, T0);
    assert_int_equal(a.modified_ms, T0 + 1000);
    ok(apply1(f, cmd_set_attrs("q", T0 + 2000, 5, 0)));
    a = fixture_attrs(f, "q", T0);
    assert_int_equal(a.visibility_timeout, 5);
    assert_int_equal(a.max_size, 4096);
    assert_int_equal(a.modified_ms, T0 + 2000);
}

static void test_a_receive_after_set_uses_the_new_visibility_timeout(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, cmd_create_attrs("q", T0, -1, 0)));
    ok(apply1(f, cmd_set_attrs("q", T0, 100, 0)));
    ok(apply1(f, cmd_send("q", T0, "m")));
    kyu_result_t r = apply1(f, cmd_receive("q", T0, 1, -1));
    assert_int_equal(r.n_msgs, 1);
    kyu_result_clear(&r);
    /* Leased for 100 s, not the default 30. */
    assert_int_equal(fixture_attrs(f, "q", T0 + 50000).not_visible, 1);
    assert_int_equal(fixture_attrs(f, "q", T0 + 100000).not_visible, 0);
}

static void test_set_on_a_missing_queue_is_no_such_queue(void **state)
{
    expect_result(apply1(*state, cmd_set_attrs("nope", T0, 10, 0)), KYU_ERR_NO_SUCH_QUEUE, "nope");
}

static void test_attributes_survive_a_restart(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, cmd_create_attrs("q", T0, 60, 2048)));
    ok(apply1(f, cmd_set_attrs("q", T0 + 7, 70, 3000)));
    fixture_reopen(f);
    kyu_queue_attrs_t a = fixture_attrs(f, "q", T0);
    assert_int_equal(a.visibility_timeout, 70);
    assert_int_equal(a.max_size, 3000);
    assert_int_equal(a.created_ms, T0);
    assert_int_equal(a.modified_ms, T0 + 7);
}

/* A queue record as the code before MaximumMessageSize wrote it: qid vt created n_messages. */
static void test_an_old_queue_record_loads_with_the_default_attributes(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, cmd_create_attrs("old", T0, 45, 0)));
    ok(apply1(f, cmd_send("old", T0, "kept")));
    fixture_reopen(f);
    uint8_t v[28];
    kyu_put_be64(v, 1); /* the first qid */
    kyu_put_be32(v + 8, 45);
    kyu_put_be64(v + 12, T0);
    kyu_put_be64(v + 20, 1);
    char *rerr = NULL;
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    rocksdb_put_cf(kyu_store_db(f->store, KYU_CF_QUEUES), wo, kyu_store_cf(f->store, KYU_CF_QUEUES),
                   "old", 3, (const char *)v, sizeof v, &rerr);
    rocksdb_writeoptions_destroy(wo);
    assert_null(rerr);
    fixture_reopen(f);
    kyu_queue_attrs_t a = fixture_attrs(f, "old", T0);
    assert_int_equal(a.visibility_timeout, 45);
    assert_int_equal(a.max_size, KYU_MAX_SIZE_DEFAULT);
    assert_int_equal(a.created_ms, T0);
    assert_int_equal(a.modified_ms, T0);
    assert_int_equal(a.delay, 0);
    assert_int_equal(a.visible, 1);
    kyu_result_t r = apply1(f, cmd_receive("old", T0, 1, -1));
    assert_int_equal(r.n_msgs, 1);
    kyu_result_clear(&r);
    /* Its next write stores the whole record. */
    ok(apply1(f, cmd_set_attrs("old", T0 + 9, -1, 1024)));
    fixture_reopen(f);
    assert_int_equal(fixture_attrs(f, "old", T0).max_size, 1024);
    assert_int_equal(fixture_attrs(f, "old", T0).modified_ms, T0 + 9);
}

/* ---- the other attributes (queue_attrs.h) ---- */

static kyu_queue_ext_t ext_given; /* what cmd_with_ext points to, until the command is encoded */

static kyu_command_t cmd_with_ext(kyu_command_t c, uint64_t set)
{
    c.qx = &ext_given;
    c.qx_set = set;
    return c;
}

static void set_tags(kyu_queue_ext_t *x, size_t n, const char *prefix)
{
    x->tags.n = n;
    for (size_t i = 0; i < n; i++) {
        snprintf(x->tags.keys[i], sizeof x->tags.keys[i], "%s%zu", prefix, i);
        snprintf(x->tags.values[i], sizeof x->tags.values[i], "v%zu", i);
    }
}

static void test_other_attributes_are_kept_shown_and_survive_a_restart(void **state)
{
    fixture_t *f = *state;
    kyu_qattrs_defaults(&ext_given);
    ext_given.retention = 600;
    ext_given.receive_wait = 20;
    ext_given.allow = KYU_REDRIVE_BY_QUEUE;
    ext_given.n_sources = 2;
    strcpy(ext_given.sources[0], "a");
    strcpy(ext_given.sources[1], "b-2");
    set_tags(&ext_given, KYU_TAGS_MAX, "k");
    ok(apply1(f, cmd_with_ext(cmd_create_attrs("q", T0, -1, 0), KYU_F_QUEUE_EXT_)));
    for (int pass = 0; pass < 2; pass++) {
        kyu_queue_attrs_t a = fixture_attrs(f, "q", T0);
        assert_int_equal(a.retention, 600);
        assert_int_equal(a.receive_wait, 20);
        assert_int_equal(a.redrive_allow, KYU_REDRIVE_BY_QUEUE);
        assert_int_equal(a.n_sources, 2);
        assert_string_equal(a.sources[1], "b-2");
        assert_string_equal(a.dlq, "");
        assert_int_equal(a.n_tags, KYU_TAGS_MAX);
        kyu_tags_t *t = malloc(sizeof *t);
        kyu_err_t err;
        assert_int_equal(kyu_sm_queue_tags(f->sm, "q", t, &err), KYU_OK);
        assert_true(kyu_qattrs_tags_equal(t, &ext_given.tags));
        free(t);
        fixture_reopen(f);
    }
    /* The defaults of a queue created without them. */
    ok(apply1(f, cmd_create_attrs("plain", T0, -1, 0)));
    kyu_queue_attrs_t a = fixture_attrs(f, "plain", T0);
    assert_int_equal(a.retention, KYU_RETENTION_DEFAULT);
    assert_int_equal(a.receive_wait, 0);
    assert_int_equal(a.redrive_allow, KYU_REDRIVE_ALLOW_ALL);
    assert_int_equal(a.n_tags, 0);
}

static void test_create_existing_with_other_attributes_names_the_one_that_differs(void **state)
{
    fixture_t *f = *state;
    kyu_qattrs_defaults(&ext_given);
    ext_given.retention = 600;
    set_tags(&ext_given, 2, "k");
    ok(apply1(f, cmd_with_ext(cmd_create_attrs("q", T0, -1, 0), KYU_F_RETENTION | KYU_F_TAGS)));
    ok(apply1(f, cmd_with_ext(cmd_create_attrs("q", T0, -1, 0), KYU_F_RETENTION | KYU_F_TAGS)));
    expect_result(apply1(f, cmd_with_ext(cmd_create_attrs("q", T0, -1, 0), KYU_F_TAGS)),
                  KYU_ERR_QUEUE_EXISTS, "MessageRetentionPeriod: 600, not 345600");
    ext_given.receive_wait = 3;
    expect_result(apply1(f, cmd_with_ext(cmd_create_attrs("q", T0, -1, 0), KYU_F_QUEUE_EXT_)),
                  KYU_ERR_QUEUE_EXISTS, "ReceiveMessageWaitTimeSeconds: 0, not 3");
    ext_given.receive_wait = 0;
    strcpy(ext_given.tags.values[1], "other");
    expect_result(apply1(f, cmd_with_ext(cmd_create_attrs("q", T0, -1, 0), KYU_F_QUEUE_EXT_)),
                  KYU_ERR_QUEUE_EXISTS, "attribute tags");
    set_tags(&ext_given, 2, "k");
    ext_given.allow = KYU_REDRIVE_DENY_ALL;
    expect_result(apply1(f, cmd_with_ext(cmd_create_attrs("q", T0, -1, 0), KYU_F_QUEUE_EXT_)),
                  KYU_ERR_QUEUE_EXISTS, "RedriveAllowPolicy: allowAll, not denyAll");
    ok(apply1(f, cmd_create_attrs("dlq", T0, -1, 0)));
    ext_given.allow = KYU_REDRIVE_ALLOW_ALL;
    strcpy(ext_given.dlq, "dlq");
    ext_given.max_receive_count = 4;
    expect_result(apply1(f, cmd_with_ext(cmd_create_attrs("q", T0, -1, 0), KYU_F_QUEUE_EXT_)),
                  KYU_ERR_QUEUE_EXISTS, "RedrivePolicy: none, not dlq");
}

static void test_set_adds_tags_up_to_fifty_and_changes_nothing_past_them(void **state)
{
    fixture_t *f = *state;
    kyu_qattrs_defaults(&ext_given);
    set_tags(&ext_given, 40, "a");
    ok(apply1(f, cmd_with_ext(cmd_create_attrs("q", T0, -1, 0), KYU_F_TAGS)));
    set_tags(&ext_given, 10, "b");
    strcpy(ext_given.tags.keys[0], "a0"); /* replaces a0's value */
    ok(apply1(f, cmd_with_ext(cmd_set_attrs("q", T0 + 1, -1, 0), KYU_F_TAGS)));
    assert_int_equal(fixture_attrs(f, "q", T0).n_tags, 49);
    set_tags(&ext_given, 2, "c");
    ext_given.retention = 120;
    expect_result(
        apply1(f, cmd_with_ext(cmd_set_attrs("q", T0 + 2, 9, 0), KYU_F_TAGS | KYU_F_RETENTION)),
        KYU_ERR_INVALID_ARGUMENT, "more than 50 tags");
    kyu_queue_attrs_t a = fixture_attrs(f, "q", T0);
    assert_int_equal(a.n_tags, 49);
    assert_int_equal(a.retention, KYU_RETENTION_DEFAULT);
    assert_int_equal(a.visibility_timeout, KYU_VISIBILITY_DEFAULT);
    assert_int_equal(a.modified_ms, T0 + 1);
}

/* UNTAG_QUEUE: removes the keys given (through the log encoding), keeps the others in their
 * order, and a key the queue lacks is no error; a restart keeps the result. */
static kyu_command_t cmd_untag(const char *q, uint64_t now, size_t n, const char *const *keys)
{
    kyu_command_t c = cmd_set_attrs(q, now, -1, 0);
    c.type = KYU_CMD_UNTAG_QUEUE;
    kyu_qattrs_defaults(&ext_given);
    ext_given.tags.n = n;
    for (size_t i = 0; i < n; i++) {
        snprintf(ext_given.tags.keys[i], sizeof ext_given.tags.keys[i], "%s", keys[i]);
        ext_given.tags.values[i][0] = '\0';
    }
    return cmd_with_ext(c, KYU_F_TAGS);
}

static void test_untag_removes_the_keys_given_and_skips_those_the_queue_lacks(void **state)
{
    fixture_t *f = *state;
    kyu_qattrs_defaults(&ext_given);
    set_tags(&ext_given, 5, "k"); /* k0..k4 = v0..v4 */
    ok(apply1(f, cmd_with_ext(cmd_create_attrs("q", T0, -1, 0), KYU_F_TAGS)));
    ok(apply1(f, cmd_untag("q", T0 + 1, 3, (const char *const[]){"k1", "nope", "k3"})));
    for (int pass = 0; pass < 2; pass++) {
        kyu_tags_t *t = malloc(sizeof *t);
        kyu_err_t err;
        assert_int_equal(kyu_sm_queue_tags(f->sm, "q", t, &err), KYU_OK);
        assert_int_equal(t->n, 3);
        assert_string_equal(t->keys[0], "k0");
        assert_string_equal(t->values[0], "v0");
        assert_string_equal(t->keys[1], "k2");
        assert_string_equal(t->values[1], "v2");
        assert_string_equal(t->keys[2], "k4");
        assert_string_equal(t->values[2], "v4");
        free(t);
        assert_int_equal(fixture_attrs(f, "q", T0).modified_ms, T0 + 1);
        fixture_reopen(f);
    }
    /* Only keys it lacks: nothing changes, LastModifiedTimestamp neither. */
    ok(apply1(f, cmd_untag("q", T0 + 2, 2, (const char *const[]){"k1", "x"})));
    assert_int_equal(fixture_attrs(f, "q", T0).n_tags, 3);
    assert_int_equal(fixture_attrs(f, "q", T0).modified_ms, T0 + 1);
    /* Every key: no tags left; the other attributes stay. */
    ok(apply1(f, cmd_untag("q", T0 + 3, 3, (const char *const[]){"k4", "k0", "k2"})));
    kyu_queue_attrs_t a = fixture_attrs(f, "q", T0);
    assert_int_equal(a.n_tags, 0);
    assert_int_equal(a.retention, KYU_RETENTION_DEFAULT);
    assert_int_equal(a.modified_ms, T0 + 3);
    /* A queue that is gone. */
    expect_result(apply1(f, cmd_untag("none", T0 + 4, 1, (const char *const[]){"k"})),
                  KYU_ERR_NO_SUCH_QUEUE, "none");
}

/* A 44-byte record, as the code before format 3 wrote it. */
static void test_a_44_byte_queue_record_loads_and_is_written_in_format_3(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, cmd_create_attrs("old", T0, 45, 0)));
    fixture_reopen(f);
    uint8_t v[44];
    kyu_put_be64(v, 1);
    kyu_put_be32(v + 8, 45);
    kyu_put_be64(v + 12, T0);
    kyu_put_be64(v + 20, 0);
    kyu_put_be32(v + 28, 2048);
    kyu_put_be64(v + 32, T0 + 3);
    kyu_put_be32(v + 40, 7);
    char *rerr = NULL;
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    rocksdb_put_cf(kyu_store_db(f->store, KYU_CF_QUEUES), wo, kyu_store_cf(f->store, KYU_CF_QUEUES),
                   "old", 3, (const char *)v, sizeof v, &rerr);
    rocksdb_writeoptions_destroy(wo);
    assert_null(rerr);
    fixture_reopen(f);
    kyu_queue_attrs_t a = fixture_attrs(f, "old", T0);
    assert_int_equal(a.max_size, 2048);
    assert_int_equal(a.delay, 7);
    assert_int_equal(a.modified_ms, T0 + 3);
    assert_int_equal(a.retention, KYU_RETENTION_DEFAULT);
    kyu_qattrs_defaults(&ext_given);
    ext_given.retention = 60;
    ok(apply1(f, cmd_with_ext(cmd_set_attrs("old", T0 + 9, -1, 0), KYU_F_RETENTION)));
    fixture_reopen(f);
    size_t len = 0;
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    char *rec = rocksdb_get_cf(kyu_store_db(f->store, KYU_CF_QUEUES), ro,
                               kyu_store_cf(f->store, KYU_CF_QUEUES), "old", 3, &len, &rerr);
    rocksdb_readoptions_destroy(ro);
    assert_non_null(rec);
    assert_int_equal((uint8_t)rec[0], 0x9a); /* a msgpack array of 10: format 3 */
    assert_int_equal(rec[1], 3);
    free(rec);
    a = fixture_attrs(f, "old", T0);
    assert_int_equal(a.retention, 60);
    assert_int_equal(a.delay, 7);
    assert_int_equal(a.max_size, 2048);
}

static void test_a_corrupt_format_3_record_refuses_to_load(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, cmd_create_attrs("q", T0, -1, 0)));
    fixture_reopen(f);
    const char bad[] = "\x9a\x03\x01"; /* cut short */
    char *rerr = NULL;
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    rocksdb_put_cf(kyu_store_db(f->store, KYU_CF_QUEUES), wo, kyu_store_cf(f->store, KYU_CF_QUEUES),
                   "q", 1, bad, 3, &rerr);
    rocksdb_writeoptions_destroy(wo);
    assert_null(rerr);
    kyu_err_t err;
    assert_int_equal(kyu_sm_flush(f->sm, &err), KYU_OK);
    kyu_sm_destroy(&f->sm);
    kyu_store_close(&f->store);
    f->store = kyu_store_open(f->dir, &err);
    assert_non_null(f->store);
    assert_null(kyu_sm_open(f->store, &err));
    assert_non_null(strstr(err.msg, "corrupt queue record"));
    /* Without the record the state loads again (teardown needs it). */
    wo = rocksdb_writeoptions_create();
    rocksdb_delete_cf(kyu_store_db(f->store, KYU_CF_QUEUES), wo,
                      kyu_store_cf(f->store, KYU_CF_QUEUES), "q", 1, &rerr);
    rocksdb_writeoptions_destroy(wo);
    assert_null(rerr);
    f->sm = kyu_sm_open(f->store, &err);
    assert_non_null(f->sm);
}

/* ---- DelaySeconds ---- */

static kyu_command_t with_delay(kyu_command_t c, uint32_t delay)
{
    c.has_delay = true;
    c.delay = delay;
    return c;
}

/* Receives at now and expects exactly the bodies given (NULL-terminated), in order. */
static void receive_bodies(fixture_t *f, uint64_t now, uint32_t max, const char *const *bodies)
{
    expect_first_receive(f, now, max, bodies, false);
}

static void test_a_delayed_queue_hides_a_message_until_its_delay_ends(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, with_delay(cmd_create_attrs("q", T0, -1, 0), 10)));
    assert_int_equal(fixture_attrs(f, "q", T0).delay, 10);
    ok(apply1(f, cmd_send("q", T0, "late")));
    expect_counts(f, T0, 0, 0, 1);
    receive_bodies(f, T0 + 9999, 1, (const char *[]){NULL});
    expect_counts(f, T0 + 10000, 1, 0, 0);
    receive_bodies(f, T0 + 10000, 1, (const char *[]){"late", NULL});
    expect_counts(f, T0 + 10000, 0, 1, 0);
}

/* The index a restart rebuilds puts a delayed message back among the leases (received first
 * once due), not among the fresh ones (by seq, and visible at once): the same order as
 * without the restart, so every replica takes the same messages. */
static void check_fresh_then_delayed(fixture_t *f, bool restart)
{
    ok(apply1(f, cmd_create_attrs("q", T0, -1, 0)));
    ok(apply1(f, cmd_send("q", T0, "fresh")));
    ok(apply1(f, with_delay(cmd_set_attrs("q", T0, -1, 0), 10)));
    ok(apply1(f, cmd_send("q", T0 + 1, "delayed")));
    if (restart)
        fixture_reopen(f);
    expect_counts(f, T0 + 5000, 1, 0, 1);
    receive_bodies(f, T0 + 10001, 2, (const char *[]){"delayed", "fresh", NULL});
}

static void test_a_delayed_message_is_received_after_its_delay(void **state)
{
    check_fresh_then_delayed(*state, false);
}

static void test_a_delayed_message_survives_a_restart(void **state)
{
    check_fresh_then_delayed(*state, true);
}

static void test_a_new_delay_holds_for_later_sends_only(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, cmd_create_attrs("q", T0, -1, 0)));
    ok(apply1(f, cmd_send("q", T0, "before")));
    ok(apply1(f, with_delay(cmd_set_attrs("q", T0 + 1, -1, 0), 20)));
    ok(apply1(f, cmd_send("q", T0 + 2, "after")));
    expect_counts(f, T0 + 2, 1, 0, 1);
    receive_bodies(f, T0 + 2, 2, (const char *[]){"before", NULL});
    receive_bodies(f, T0 + 20002, 2, (const char *[]){"after", NULL});
}

static void test_create_existing_with_another_delay_names_the_attribute(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, with_delay(cmd_create_attrs("q", T0, -1, 0), 5)));
    ok(apply1(f, with_delay(cmd_create_attrs("q", T0, -1, 0), 5)));
    expect_result(apply1(f, cmd_create_attrs("q", T0, -1, 0)), KYU_ERR_QUEUE_EXISTS,
                  "DelaySeconds: 5, not 0");
}

/* ---- the log encoding ---- */

static void test_attribute_commands_round_trip_through_the_log_encoding(void **state)
{
    (void)state;
    kyu_command_t c = cmd_set_attrs("q", T0, 12, 4096);
    kyu_command_t d = command_round_trip(&c);
    assert_int_equal(d.type, KYU_CMD_SET_QUEUE_ATTRIBUTES);
    assert_int_equal(d.vt, 12);
    assert_int_equal(d.max_size, 4096);
    assert_false(d.has_delay);
    c = cmd_create_attrs("q", T0, -1, 0);
    d = command_round_trip(&c);
    assert_int_equal(d.type, KYU_CMD_CREATE_QUEUE);
    assert_int_equal(d.max_size, 0);
    assert_false(d.has_delay);
    c = with_delay(cmd_set_attrs("q", T0, -1, 0), 900);
    d = command_round_trip(&c);
    assert_int_equal(d.max_size, 0);
    assert_true(d.has_delay);
    assert_int_equal(d.delay, 900);
}

static void test_other_attributes_round_trip_and_bad_ones_do_not_decode(void **state)
{
    (void)state;
    kyu_qattrs_defaults(&ext_given);
    ext_given.retention = 61;
    ext_given.receive_wait = 20;
    strcpy(ext_given.dlq, "d");
    ext_given.max_receive_count = 1000;
    set_tags(&ext_given, 3, "t");
    kyu_command_t c = cmd_with_ext(cmd_set_attrs("q", T0, -1, 0), KYU_F_QUEUE_EXT_);
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    kyu_command_encode(&c, &b);
    size_t off = 0;
    kyu_err_t err;
    kyu_command_t d;
    assert_int_equal(kyu_command_decode(b.data, b.size, &off, &d, &err), KYU_OK);
    assert_int_equal(d.qx_set, KYU_F_QUEUE_EXT_);
    assert_false(d.has_delay);
    kyu_queue_ext_t *x = malloc(sizeof *x);
    uint64_t set = 0;
    assert_true(kyu_qattrs_decode(d.qx_mp, d.qx_len, x, &set));
    assert_int_equal(x->retention, 61);
    assert_string_equal(x->dlq, "d");
    assert_int_equal(x->max_receive_count, 1000);
    assert_true(kyu_qattrs_tags_equal(&x->tags, &ext_given.tags));
    msgpack_sbuffer_destroy(&b);
    /* Out of SQS's ranges: a log entry the broker never writes. */
    const struct {
        uint32_t retention, wait, mrc;
    } bad[] = {{59, 0, 1}, {KYU_RETENTION_MAX + 1, 0, 1}, {60, 21, 1}, {60, 0, 0}, {60, 0, 1001}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ext_given.retention = bad[i].retention;
        ext_given.receive_wait = bad[i].wait;
        ext_given.max_receive_count = bad[i].mrc;
        msgpack_sbuffer_init(&b);
        kyu_command_encode(&c, &b);
        off = 0;
        assert_int_equal(kyu_command_decode(b.data, b.size, &off, &d, &err), KYU_ERR_MALFORMED);
        msgpack_sbuffer_destroy(&b);
    }
    free(x);
}

/* CREATE_QUEUE as logs written before MaximumMessageSize hold it: items []. */
static void test_an_old_create_queue_entry_decodes_without_a_max_size(void **state)
{
    (void)state;
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
    pack_command_head(&pk, KYU_CMD_CREATE_QUEUE, T0, "q", 40, 1);
    msgpack_pack_array(&pk, 0);
    size_t off = 0;
    kyu_err_t err;
    kyu_command_t d;
    assert_int_equal(kyu_command_decode(b.data, b.size, &off, &d, &err), KYU_OK);
    assert_int_equal(d.vt, 40);
    assert_int_equal(d.max_size, 0);
    msgpack_sbuffer_destroy(&b);
}

/* ---- validation before proposing ---- */

static kyu_request_t request(kyu_op_t op, const char *q)
{
    kyu_request_t r;
    memset(&r, 0, sizeof r);
    r.op = op;
    r.fields = KYU_F_QUEUE;
    snprintf(r.queue, sizeof r.queue, "%s", q);
    return r;
}

static kyu_code_t validate(fixture_t *f, size_t max_body, const kyu_request_t *req,
                           const kyu_bodies_t *bodies, kyu_err_t *err)
{
    kyu_op_ctx_t ctx = {.sm = f->sm, .max_body = max_body};
    kyu_err_clear(err);
    return kyu_ops_row(req->op)->validate(&ctx, req, bodies, err);
}

static void test_max_size_out_of_range_is_refused_naming_the_attribute(void **state)
{
    fixture_t *f = *state;
    kyu_err_t err;
    kyu_request_t r = request(KYU_OP_CREATE_QUEUE, "q");
    r.fields |= KYU_F_MMS;
    uint32_t bad[] = {0, 1023, KYU_MAX_SIZE_MAX + 1, UINT32_MAX};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        r.max_size = bad[i];
        expect_error(validate(f, 1 << 20, &r, NULL, &err), err.msg, KYU_ERR_INVALID_ARGUMENT,
                     "MaximumMessageSize must be 1024 to 1048576 bytes");
    }
    r.max_size = 1024;
    assert_int_equal(validate(f, 1 << 20, &r, NULL, &err), KYU_OK);
    r.max_size = KYU_MAX_SIZE_MAX;
    assert_int_equal(validate(f, 1 << 20, &r, NULL, &err), KYU_OK);
}

static void test_delay_out_of_range_is_refused_naming_the_attribute(void **state)
{
    fixture_t *f = *state;
    kyu_err_t err;
    kyu_request_t r = request(KYU_OP_CREATE_QUEUE, "q");
    r.fields |= KYU_F_DELAY;
    r.delay = 901;
    expect_error(validate(f, 1 << 20, &r, NULL, &err), err.msg, KYU_ERR_INVALID_ARGUMENT,
                 "DelaySeconds must be 0 to 900 seconds, not 901");
    r.delay = 900;
    assert_int_equal(validate(f, 1 << 20, &r, NULL, &err), KYU_OK);
}

static void test_max_size_over_the_brokers_limit_is_refused(void **state)
{
    fixture_t *f = *state;
    kyu_err_t err;
    kyu_request_t r = request(KYU_OP_CREATE_QUEUE, "q");
    r.fields |= KYU_F_MMS;
    r.max_size = 4096;
    expect_error(validate(f, 2048, &r, NULL, &err), err.msg, KYU_ERR_INVALID_ARGUMENT,
                 "over this broker's message size limit of 2048");
}

static void test_set_needs_an_existing_queue_and_an_attribute(void **state)
{
    fixture_t *f = *state;
    kyu_err_t err;
    kyu_request_t r = request(KYU_OP_SET_QUEUE_ATTRIBUTES, "q");
    r.fields |= KYU_F_VT;
    r.vt = 10;
    expect_error(validate(f, 1 << 20, &r, NULL, &err), err.msg, KYU_ERR_NO_SUCH_QUEUE, "'q'");
    ok(apply1(f, cmd_create_attrs("q", T0, -1, 0)));
    assert_int_equal(validate(f, 1 << 20, &r, NULL, &err), KYU_OK);
    r.fields = KYU_F_QUEUE;
    expect_error(validate(f, 1 << 20, &r, NULL, &err), err.msg, KYU_ERR_INVALID_ARGUMENT,
                 "at least one attribute");
    r.fields |= KYU_F_MMS;
    r.max_size = 100;
    expect_error(validate(f, 1 << 20, &r, NULL, &err), err.msg, KYU_ERR_INVALID_ARGUMENT,
                 "MaximumMessageSize");
}

static void test_other_attributes_out_of_range_are_refused_naming_them(void **state)
{
    fixture_t *f = *state;
    kyu_err_t err;
    kyu_request_t r = request(KYU_OP_CREATE_QUEUE, "q");
    r.fields |= KYU_F_RETENTION;
    r.qx.retention = 59;
    expect_error(validate(f, 1 << 20, &r, NULL, &err), err.msg, KYU_ERR_INVALID_ARGUMENT,
                 "MessageRetentionPeriod must be 60 to 1209600 seconds, not 59");
    r.qx.retention = 1209601;
    expect_error(validate(f, 1 << 20, &r, NULL, &err), err.msg, KYU_ERR_INVALID_ARGUMENT,
                 "not 1209601");
    r.qx.retention = 1209600;
    assert_int_equal(validate(f, 1 << 20, &r, NULL, &err), KYU_OK);
    r.fields = KYU_F_QUEUE | KYU_F_RECEIVE_WAIT;
    r.qx.receive_wait = 21;
    expect_error(validate(f, 1 << 20, &r, NULL, &err), err.msg, KYU_ERR_INVALID_ARGUMENT,
                 "ReceiveMessageWaitTimeSeconds must be 0 to 20 seconds, not 21");
    r.fields = KYU_F_QUEUE | KYU_F_REDRIVE;
    strcpy(r.qx.dlq, "dlq");
    r.qx.max_receive_count = 1001;
    expect_error(validate(f, 1 << 20, &r, NULL, &err), err.msg, KYU_ERR_INVALID_ARGUMENT,
                 "maxReceiveCount must be 1 to 1000, not 1001");
    r.qx.max_receive_count = 10;
    expect_error(validate(f, 1 << 20, &r, NULL, &err), err.msg, KYU_ERR_INVALID_ARGUMENT,
                 "dead-letter queue 'dlq' does not exist");
    ok(apply1(f, cmd_create_attrs("dlq", T0, -1, 0)));
    assert_int_equal(validate(f, 1 << 20, &r, NULL, &err), KYU_OK);
    r.fields = KYU_F_QUEUE | KYU_F_REDRIVE_ALLOW;
    r.qx.allow = KYU_REDRIVE_BY_QUEUE;
    r.qx.n_sources = 0;
    expect_error(validate(f, 1 << 20, &r, NULL, &err), err.msg, KYU_ERR_INVALID_ARGUMENT,
                 "byQueue takes 1 to 10 source queues");
    /* Tags: set-queue-attributes adds them, at most 50 in all. */
    kyu_qattrs_defaults(&ext_given);
    set_tags(&ext_given, 45, "a");
    ok(apply1(f, cmd_with_ext(cmd_create_attrs("q", T0, -1, 0), KYU_F_TAGS)));
    r = request(KYU_OP_SET_QUEUE_ATTRIBUTES, "q");
    r.fields |= KYU_F_TAGS;
    set_tags(&r.qx, 6, "b");
    expect_error(validate(f, 1 << 20, &r, NULL, &err), err.msg, KYU_ERR_INVALID_ARGUMENT,
                 "more than 50 tags (it has 45)");
    set_tags(&r.qx, 5, "b");
    assert_int_equal(validate(f, 1 << 20, &r, NULL, &err), KYU_OK);
}

static void test_a_body_over_the_queues_max_size_is_refused_naming_the_limit(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, cmd_create_attrs("q", T0, -1, 1024)));
    kyu_request_t r = request(KYU_OP_SEND, "q");
    char body[1025];
    memset(body, 'x', sizeof body);
    kyu_body_t b[] = {{body, 1024}, {body, 1025}};
    kyu_bodies_t bodies = {b, 1};
    kyu_err_t err;
    assert_int_equal(validate(f, 1 << 20, &r, &bodies, &err), KYU_OK);
    bodies.n = 2;
    expect_error(validate(f, 1 << 20, &r, &bodies, &err), err.msg, KYU_ERR_TOO_LARGE,
                 "queue 'q' takes at most 1024 (its MaximumMessageSize)");
}

/* ---- PURGE_QUEUE ---- */

static kyu_command_t cmd_purge(const char *q, uint64_t now)
{
    kyu_command_t c = cmd_delete_queue(q);
    c.type = KYU_CMD_PURGE_QUEUE;
    c.now_ms = now;
    return c;
}

/* Records in column family cf of the state database (after a flush: what a restart sees). */
static size_t records(fixture_t *f, kyu_cf_t cf)
{
    kyu_err_t err;
    assert_int_equal(kyu_sm_flush(f->sm, &err), KYU_OK);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(
        kyu_store_db(f->store, cf), kyu_store_readopts(f->store), kyu_store_cf(f->store, cf));
    size_t n = 0;
    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it))
        n++;
    rocksdb_iter_destroy(it);
    return n;
}

/* q holds one visible, one in-flight and one delayed message; returns the in-flight one's
 * receipt handle in h. */
static void fill_three_ways(fixture_t *f, char h[KYU_HANDLE_MAX + 1])
{
    ok(apply1(f, cmd_create_attrs("q", T0, -1, 0)));
    ok(apply1(f, cmd_send("q", T0, "leased")));
    ok(apply1(f, cmd_send("q", T0, "visible")));
    kyu_command_t late = cmd_send("q", T0, "delayed");
    late.has_msg_delay[0] = true;
    late.msg_delay_ms[0] = 60000;
    ok(apply1(f, late));
    kyu_result_t r = apply1(f, cmd_receive("q", T0 + 1, 1, -1));
    assert_int_equal(r.n_msgs, 1);
    snprintf(h, KYU_HANDLE_MAX + 1, "%s", r.msgs[0].handle);
    kyu_result_clear(&r);
    expect_counts(f, T0 + 1, 1, 1, 1);
}

static void test_purge_deletes_visible_in_flight_and_delayed_messages(void **state)
{
    fixture_t *f = *state;
    char h[KYU_HANDLE_MAX + 1];
    fill_three_ways(f, h);
    ok(apply1(f, cmd_purge("q", T0 + 2)));
    expect_counts(f, T0 + 2, 0, 0, 0);
    /* Past every lease and delay: nothing comes back. */
    receive_bodies(f, T0 + 3600000, 10, (const char *[]){NULL});
    assert_true(kyu_sm_queue_exists(f->sm, "q"));
    assert_int_equal(fixture_attrs(f, "q", T0).created_ms, T0); /* the queue stays as it was */
}

static void test_a_purged_messages_handle_is_invalid(void **state)
{
    fixture_t *f = *state;
    char h[KYU_HANDLE_MAX + 1];
    fill_three_ways(f, h);
    ok(apply1(f, cmd_purge("q", T0 + 2)));
    kyu_result_t r = apply1(f, cmd_delete("q", T0 + 3, h));
    assert_int_equal(r.results[0], KYU_ERR_RECEIPT_INVALID);
    kyu_result_clear(&r);
    r = apply1(f, cmd_change_visibility("q", T0 + 3, h, 0));
    assert_int_equal(r.results[0], KYU_ERR_RECEIPT_INVALID);
    kyu_result_clear(&r);
}

/* Messages sent after the purge stay, also those sent later in the same entry. */
static void test_purge_keeps_the_messages_sent_after_it(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, cmd_create_attrs("q", T0, -1, 0)));
    kyu_command_t cmds[] = {cmd_send("q", T0, "before"), cmd_purge("q", T0),
                            cmd_send("q", T0, "after")};
    kyu_result_t res[3];
    apply_entry(f, cmds, 3, res);
    for (int i = 0; i < 3; i++)
        ok(res[i]);
    ok(apply1(f, cmd_send("q", T0 + 1, "later")));
    expect_counts(f, T0 + 1, 2, 0, 0);
    receive_bodies(f, T0 + 2, 10, (const char *[]){"after", "later", NULL});
}

/* The purged records leave the database by range deletes (no delete per message), and a
 * restart finds the queue as the purge left it. */
static void test_a_purge_drops_the_records_and_survives_a_restart(void **state)
{
    fixture_t *f = *state;
    char h[KYU_HANDLE_MAX + 1];
    fill_three_ways(f, h);
    assert_int_equal(records(f, KYU_CF_MESSAGES), 3);
    ok(apply1(f, cmd_purge("q", T0 + 2)));
    ok(apply1(f, cmd_send("q", T0 + 3, "kept")));
    assert_int_equal(records(f, KYU_CF_MESSAGES), 1);
    assert_int_equal(records(f, KYU_CF_LEASES), 1);
    fixture_reopen(f);
    expect_counts(f, T0 + 3, 1, 0, 0);
    receive_bodies(f, T0 + 3600000, 10, (const char *[]){"kept", NULL});
}

/* A crash after the purge's entry was written but before its records were dropped: the
 * "gp" record is collected at the next start. */
static void test_a_purge_interrupted_before_the_range_delete_finishes_at_start(void **state)
{
    fixture_t *f = *state;
    char h[KYU_HANDLE_MAX + 1];
    fill_three_ways(f, h);
    kyu_err_t err;
    assert_int_equal(kyu_sm_flush(f->sm, &err), KYU_OK);
    /* The "gp" record the purge's entry writes (with the queue's record), without its
     * collection: the messages' records are still there. */
    uint8_t gp[10] = {'g', 'p'}, hi[8];
    kyu_put_be64(gp + 2, 1); /* the first queue's id */
    kyu_put_be64(hi, UINT64_MAX);
    char *rerr = NULL;
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    rocksdb_put_cf(kyu_store_db(f->store, KYU_CF_META), wo, kyu_store_cf(f->store, KYU_CF_META),
                   (const char *)gp, sizeof gp, (const char *)hi, sizeof hi, &rerr);
    rocksdb_writeoptions_destroy(wo);
    assert_null(rerr);
    fixture_crash(f);
    assert_int_equal(records(f, KYU_CF_MESSAGES), 0);
    assert_int_equal(records(f, KYU_CF_LEASES), 0);
    receive_bodies(f, T0 + 3600000, 10, (const char *[]){NULL});
}

static void test_purge_of_a_missing_queue_is_no_such_queue(void **state)
{
    fixture_t *f = *state;
    expect_result(apply1(f, cmd_purge("q", T0)), KYU_ERR_NO_SUCH_QUEUE, "'q'");
    kyu_err_t err;
    kyu_request_t r = request(KYU_OP_PURGE_QUEUE, "q");
    expect_error(validate(f, 1 << 20, &r, NULL, &err), err.msg, KYU_ERR_NO_SUCH_QUEUE, "'q'");
}

/* A retried purge (same request key) is answered OK and deletes nothing sent since. */
static void test_a_retried_purge_does_not_purge_again(void **state)
{
    fixture_t *f = *state;
    ok(apply1(f, cmd_create_attrs("q", T0, -1, 0)));
    ok(apply1(f, cmd_send("q", T0, "old")));
    kyu_command_t p = cmd_purge("q", T0 + 1);
    p.rq_client = 7;
    p.rq_key = 9;
    ok(apply1(f, p));
    ok(apply1(f, cmd_send("q", T0 + 2, "new")));
    p.now_ms = T0 + 3;
    ok(apply1(f, p));
    expect_counts(f, T0 + 3, 1, 0, 0);
    kyu_command_t d = command_round_trip(&p);
    assert_int_equal(d.type, KYU_CMD_PURGE_QUEUE);
    assert_string_equal(d.queue, "q");
    assert_int_equal(d.rq_key, 9);
}

#define T(name) cmocka_unit_test_setup_teardown(name, fixture_setup, fixture_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_create_keeps_its_attributes_and_stamps_the_modification),
        T(test_create_without_attributes_takes_the_defaults),
        T(test_create_existing_with_the_same_attributes_succeeds),
        T(test_create_existing_with_another_max_size_names_the_attribute),
        T(test_set_changes_only_the_attributes_given_and_the_modification_time),
        T(test_a_receive_after_set_uses_the_new_visibility_timeout),
        T(test_set_on_a_missing_queue_is_no_such_queue),
        T(test_attributes_survive_a_restart),
        T(test_an_old_queue_record_loads_with_the_default_attributes),
        T(test_a_delayed_queue_hides_a_message_until_its_delay_ends),
        T(test_a_delayed_message_is_received_after_its_delay),
        T(test_a_delayed_message_survives_a_restart),
        T(test_a_new_delay_holds_for_later_sends_only),
        T(test_create_existing_with_another_delay_names_the_attribute),
        cmocka_unit_test(test_attribute_commands_round_trip_through_the_log_encoding),
        cmocka_unit_test(test_an_old_create_queue_entry_decodes_without_a_max_size),
        T(test_max_size_out_of_range_is_refused_naming_the_attribute),
        T(test_delay_out_of_range_is_refused_naming_the_attribute),
        T(test_max_size_over_the_brokers_limit_is_refused),
        T(test_set_needs_an_existing_queue_and_an_attribute),
        T(test_a_body_over_the_queues_max_size_is_refused_naming_the_limit),
        T(test_purge_deletes_visible_in_flight_and_delayed_messages),
        T(test_a_purged_messages_handle_is_invalid),
        T(test_purge_keeps_the_messages_sent_after_it),
        T(test_a_purge_drops_the_records_and_survives_a_restart),
        T(test_a_purge_interrupted_before_the_range_delete_finishes_at_start),
        T(test_purge_of_a_missing_queue_is_no_such_queue),
        T(test_a_retried_purge_does_not_purge_again),
        T(test_other_attributes_are_kept_shown_and_survive_a_restart),
        T(test_create_existing_with_other_attributes_names_the_one_that_differs),
        T(test_set_adds_tags_up_to_fifty_and_changes_nothing_past_them),
        T(test_untag_removes_the_keys_given_and_skips_those_the_queue_lacks),
        T(test_a_44_byte_queue_record_loads_and_is_written_in_format_3),
        T(test_a_corrupt_format_3_record_refuses_to_load),
        cmocka_unit_test(test_other_attributes_round_trip_and_bad_ones_do_not_decode),
        T(test_other_attributes_out_of_range_are_refused_naming_them),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
