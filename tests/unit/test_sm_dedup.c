/* Request keys (broker/sm_dedup.c): a keyed send applied again is answered with the first
 * attempt's ids and stores nothing; a keyed receive, delete or visibility change applied
 * again is answered as the first time and changes nothing; keys of other clients and expired
 * keys do not match; the records survive a restart (they are state like any other). */
#include "fixture.h"
#include "sm_internal.h"

#include <string.h>

#define T0 1000000 /* a command time, ms */

static kyu_command_t keyed_send(uint64_t now, const char *body, uint64_t client, uint64_t key)
{
    kyu_command_t c = cmd_send("orders", now, body);
    c.rq_client = client;
    c.rq_key = key;
    return c;
}

static int64_t visible(fixture_t *f, uint64_t now)
{
    return fixture_attrs(f, "orders", now).visible;
}

static void create(fixture_t *f)
{
    kyu_result_t r = apply1(f, cmd_create("orders", -1));
    assert_int_equal(r.code, KYU_OK);
}

static void test_a_retried_keyed_send_is_applied_once_with_the_first_ids(void **state)
{
    fixture_t *f = *state;
    create(f);
    kyu_command_t first = keyed_send(T0, "a", 7, 1);
    kyu_result_t r1 = apply1(f, first);
    kyu_command_t retry = keyed_send(T0 + 10, "a", 7, 1); /* new ids, as a new leader makes */
    kyu_result_t r2 = apply1(f, retry);
    assert_int_equal(r2.code, KYU_OK);
    assert_int_equal(r2.n_ids, 1);
    assert_string_equal(r2.ids[0], r1.ids[0]);
    assert_string_not_equal(r2.ids[0], retry.ids[0]);
    assert_int_equal(visible(f, T0 + 20), 1);
    kyu_result_clear(&r1);
    kyu_result_clear(&r2);
}

static void test_the_same_key_twice_in_one_entry_is_applied_once(void **state)
{
    fixture_t *f = *state;
    create(f);
    kyu_command_t cmds[2] = {keyed_send(T0, "a", 7, 1), keyed_send(T0, "a", 7, 1)};
    kyu_result_t res[2];
    apply_entry(f, cmds, 2, res); /* the second reads what the first wrote */
    assert_string_equal(res[0].ids[0], res[1].ids[0]);
    assert_int_equal(visible(f, T0 + 1), 1);
    kyu_result_clear(&res[0]);
    kyu_result_clear(&res[1]);
}

static void test_records_of_one_entry_are_found_by_a_retry_in_a_later_one(void **state)
{
    fixture_t *f = *state;
    create(f);
    kyu_command_t cmds[2] = {keyed_send(T0, "a", 7, 1), keyed_send(T0, "b", 7, 2)};
    kyu_result_t res[2];
    apply_entry(f, cmds, 2, res);
    kyu_result_t again = apply1(f, keyed_send(T0 + 1, "b", 7, 2));
    assert_string_equal(again.ids[0], res[1].ids[0]);
    assert_int_equal(visible(f, T0 + 2), 2);
    kyu_result_clear(&res[0]);
    kyu_result_clear(&res[1]);
    kyu_result_clear(&again);
}

static void test_other_clients_and_other_keys_do_not_match(void **state)
{
    fixture_t *f = *state;
    create(f);
    kyu_result_t r = apply1(f, keyed_send(T0, "a", 7, 1));
    kyu_result_clear(&r);
    r = apply1(f, keyed_send(T0, "a", 8, 1));
    kyu_result_clear(&r);
    r = apply1(f, keyed_send(T0, "a", 7, 2));
    kyu_result_clear(&r);
    r = apply1(f, cmd_send("orders", T0, "unkeyed"));
    kyu_result_clear(&r);
    assert_int_equal(visible(f, T0 + 1), 4);
}

static void test_keys_expire_after_the_window(void **state)
{
    fixture_t *f = *state;
    create(f);
    kyu_result_t r = apply1(f, keyed_send(T0, "a", 7, 1));
    kyu_result_clear(&r);
    uint64_t later = T0 + KYU_DEDUP_WINDOW_MS + 1;
    r = apply1(f, keyed_send(later, "a", 7, 1));
    kyu_result_clear(&r);
    assert_int_equal(visible(f, later), 2);
}

/* The filter that spares lookups of new keys (sm_dedup.c) never forgets a key within the
 * window, across its generations and a restart, and forgets it after. */
static void test_the_key_filter_keeps_every_key_of_the_window(void **state)
{
    fixture_t *f = *state;
    create(f);
    kyu_sm_keyfilter_set_generation_keys(f->sm, 3);
    const uint64_t n = 40, step = KYU_DEDUP_WINDOW_MS / 80; /* all within half a window */
    for (uint64_t i = 0; i < n; i++) {
        kyu_result_t r = apply1(f, keyed_send(T0 + i * step, "a", 7, 100 + i));
        kyu_result_clear(&r);
    }
    uint64_t last = T0 + (n - 1) * step;
    for (int restart = 0; restart < 2; restart++) {
        /* Retried in reverse, at the last moment the first key is still within the window. */
        uint64_t now = T0 + KYU_DEDUP_WINDOW_MS - 1;
        for (uint64_t i = n; i-- > 0;) {
            kyu_result_t r = apply1(f, keyed_send(now, "a", 7, 100 + i));
            kyu_result_clear(&r);
        }
        assert_int_equal(visible(f, now), (int64_t)n);
        fixture_reopen(f);
        kyu_sm_keyfilter_set_generation_keys(f->sm, 3);
    }
    /* Past the window of every key: each is new again. */
    uint64_t later = last + KYU_DEDUP_WINDOW_MS;
    for (uint64_t i = 0; i < n; i++) {
        kyu_result_t r = apply1(f, keyed_send(later, "a", 7, 100 + i));
        kyu_result_clear(&r);
    }
    assert_int_equal(visible(f, later), (int64_t)(2 * n));
}

/* Meta records under a two-byte prefix ("rk": request key records) in the store. */
static size_t count_prefix(fixture_t *f, const char *prefix)
{
    kyu_err_t err;
    assert_int_equal(kyu_sm_flush(f->sm, &err), KYU_OK);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(kyu_store_db(f->store, KYU_CF_META),
                                                        kyu_store_readopts(f->store),
                                                        kyu_store_cf(f->store, KYU_CF_META));
    size_t n = 0;
    for (rocksdb_iter_seek(it, prefix, 2); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl = 0;
        const char *k = rocksdb_iter_key(it, &kl);
        if (kl < 2 || memcmp(k, prefix, 2) != 0)
            break;
        n++;
    }
    rocksdb_iter_destroy(it);
    return n;
}

static size_t records(fixture_t *f)
{
    return count_prefix(f, "rk");
}

#define BUCKET (KYU_DEDUP_WINDOW_MS / 4) /* sm_dedup.c's BUCKET_MS */

static void send_key(fixture_t *f, uint64_t now, uint64_t client, uint64_t key)
{
    kyu_result_t r = apply1(f, keyed_send(now, "a", client, key));
    assert_int_equal(r.code, KYU_OK);
    kyu_result_clear(&r);
}

/* A bucket stays while it holds a record within the window (its older records count as gone
 * to lookups), and goes whole, in one range delete, at the first keyed command once all its
 * records are past the window; the next command has nothing to drop, nor a command after a
 * restart (the oldest bucket held is found again). */
static void test_a_bucket_is_dropped_whole_once_past_the_window(void **state)
{
    fixture_t *f = *state;
    create(f);
    const uint64_t t0 = 13 * BUCKET; /* the start of a bucket */
    for (uint64_t k = 1; k <= 40; k++)
        send_key(f, t0 + k, 7, k);
    assert_int_equal(records(f), 40);
    uint64_t later = t0 + KYU_DEDUP_WINDOW_MS + 20; /* keys 1..20 have expired */
    send_key(f, later, 7, 1);                       /* new again: a record in a later bucket */
    send_key(f, later, 7, 30);                      /* a retry: answered, nothing stored */
    assert_int_equal(visible(f, later), 41);
    assert_int_equal(records(f), 41);
    uint64_t drops = f->sm->dedup_drops;
    uint64_t past = t0 + BUCKET - 1 + KYU_DEDUP_WINDOW_MS; /* the bucket's last ms expires */
    send_key(f, past - 1, 8, 1);
    assert_int_equal(records(f), 42);
    assert_int_equal(f->sm->dedup_drops, drops);
    send_key(f, past, 8, 2);
    assert_int_equal(records(f), 42 + 1 - 40);
    assert_int_equal(f->sm->dedup_drops, drops + 1);
    send_key(f, past + 1, 8, 3);
    assert_int_equal(f->sm->dedup_drops, drops + 1);
    fixture_reopen(f);
    send_key(f, past + 2, 8, 4);
    assert_int_equal(f->sm->dedup_drops, 0);
    assert_int_equal(records(f), 5);
    assert_int_equal(visible(f, past + 2), 45);
}

/* A retry is answered from its record whichever later bucket it falls in, to the last
 * millisecond of the window, across a restart and a reload (a snapshot's install), and is new
 * a millisecond after. */
static void test_a_retry_in_a_later_bucket_is_answered_to_the_end_of_the_window(void **state)
{
    fixture_t *f = *state;
    create(f);
    const uint64_t t = 14 * BUCKET - 1; /* the last ms of a bucket */
    kyu_result_t first = apply1(f, keyed_send(t, "a", 7, 1));
    uint64_t at[] = {t + 1, t + BUCKET, t + 2 * BUCKET + 5, t + KYU_DEDUP_WINDOW_MS - 1};
    for (size_t i = 0; i < sizeof at / sizeof *at; i++) {
        if (i == 1)
            fixture_reopen(f);
        if (i == 2) {
            kyu_err_t err;
            assert_int_equal(kyu_sm_flush(f->sm, &err), KYU_OK);
            assert_int_equal(kyu_sm_reload(f->sm, &err), KYU_OK);
        }
        kyu_result_t r = apply1(f, keyed_send(at[i], "a", 7, 1));
        assert_int_equal(r.code, KYU_OK);
        if (strcmp(r.ids[0], first.ids[0]) != 0)
            fail_msg("retry at +%llu ms: expected the first id %s, saw %s",
                     (unsigned long long)(at[i] - t), first.ids[0], r.ids[0]);
        kyu_result_clear(&r);
        assert_true(kyu_sm_knows_request(f->sm, 7, 1, at[i]));
    }
    assert_false(kyu_sm_knows_request(f->sm, 7, 1, t + KYU_DEDUP_WINDOW_MS));
    send_key(f, t + KYU_DEDUP_WINDOW_MS, 7, 1);
    assert_int_equal(visible(f, t + KYU_DEDUP_WINDOW_MS), 2);
    kyu_result_clear(&first);
}

/* Puts a request key record of the first format (earlier brokers: "rq" client key -> time
 * n id, and "rx" time client key -> "") straight into the database. */
static void put_first_format(fixture_t *f, uint64_t t, uint64_t client, uint64_t key,
                             const char *id)
{
    uint8_t rq[18] = {'r', 'q'}, rx[26] = {'r', 'x'}, v[9 + KYU_UUID_LEN];
    kyu_put_be64(rq + 2, client);
    kyu_put_be64(rq + 10, key);
    kyu_put_be64(rx + 2, t);
    kyu_put_be64(rx + 10, client);
    kyu_put_be64(rx + 18, key);
    kyu_put_be64(v, t);
    v[8] = 1;
    memcpy(v + 9, id, KYU_UUID_LEN);
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    rocksdb_t *db = kyu_store_db(f->store, KYU_CF_META);
    rocksdb_column_family_handle_t *meta = kyu_store_cf(f->store, KYU_CF_META);
    char *rerr = NULL;
    rocksdb_put_cf(db, wo, meta, (char *)rq, sizeof rq, (char *)v, sizeof v, &rerr);
    assert_null(rerr);
    rocksdb_put_cf(db, wo, meta, (char *)rx, sizeof rx, "", 0, &rerr);
    assert_null(rerr);
    rocksdb_writeoptions_destroy(wo);
}

/* A data directory of an earlier broker: its records are moved to their buckets at load, a
 * retry within the window is answered from one, and one past the window is gone, then
 * dropped with its bucket. */
static void test_records_of_the_first_format_are_moved_to_buckets_and_honoured(void **state)
{
    fixture_t *f = *state;
    create(f);
    const uint64_t t0 = 20 * BUCKET;
    send_key(f, t0, 9, 9); /* last_now: t0 */
    static const char id1[] = "00000000-0000-4000-8000-000000000001";
    static const char id2[] = "00000000-0000-4000-8000-000000000002";
    put_first_format(f, t0 - 10, 7, 1, id1);
    put_first_format(f, t0 - KYU_DEDUP_WINDOW_MS, 7, 2, id2); /* past the window at t0 */
    fixture_reopen(f);
    assert_int_equal(count_prefix(f, "rq"), 0);
    assert_int_equal(count_prefix(f, "rx"), 0);
    assert_int_equal(records(f), 3);
    kyu_result_t r = apply1(f, keyed_send(t0 + 5, "a", 7, 1));
    assert_int_equal(r.code, KYU_OK);
    assert_string_equal(r.ids[0], id1);
    kyu_result_clear(&r);
    r = apply1(f, keyed_send(t0 + 5, "a", 7, 2));
    assert_int_equal(r.code, KYU_OK);
    assert_string_not_equal(r.ids[0], id2);
    kyu_result_clear(&r);
    assert_int_equal(visible(f, t0 + 5), 2); /* key 9's and key 2's again */
    assert_int_equal(records(f), 4);
    fixture_reopen(f); /* nothing left to move: the same records */
    assert_int_equal(records(f), 4);
    /* the bucket of key 2's old record goes once the window has left it */
    uint64_t b = (t0 - KYU_DEDUP_WINDOW_MS) / BUCKET;
    send_key(f, (b + 1) * BUCKET + KYU_DEDUP_WINDOW_MS, 8, 1);
    assert_int_equal(records(f), 4);
}

/* The length of the only request key record's value. */
static size_t only_record_length(fixture_t *f)
{
    kyu_err_t err;
    assert_int_equal(kyu_sm_flush(f->sm, &err), KYU_OK);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(kyu_store_db(f->store, KYU_CF_META),
                                                        kyu_store_readopts(f->store),
                                                        kyu_store_cf(f->store, KYU_CF_META));
    rocksdb_iter_seek(it, "rk", 2);
    assert_true(rocksdb_iter_valid(it));
    size_t vl = 0;
    (void)rocksdb_iter_value(it, &vl);
    rocksdb_iter_destroy(it);
    return vl;
}

/* A SEND's ids are kept in 16 bytes each when they are lowercase UUIDs (as the leader makes
 * them), and as they came otherwise (an id of another form in the log): a retry is answered
 * with the ids as they were either way. */
static void test_a_send_record_packs_uuids_and_keeps_other_ids_whole(void **state)
{
    static const char *ids[] = {
        "0123abcd-ef45-4678-9abc-def012345678", "0123ABCD-EF45-4678-9ABC-DEF012345678",
        "0123abcd-ef45-4678-9abc-def01234567g", "0123abcd_ef45-4678-9abc-def012345678"};
    static const size_t lengths[] = {8 + 1 + 16, 8 + 1 + 36, 8 + 1 + 36, 8 + 1 + 36};
    for (size_t i = 0; i < sizeof ids / sizeof *ids; i++) {
        fixture_t *f = *state;
        if (i > 0) { /* a fresh state: one record each */
            fixture_teardown(state);
            assert_int_equal(fixture_setup(state), 0);
            f = *state;
        }
        create(f);
        kyu_command_t c = keyed_send(T0, "a", 7, 1);
        snprintf(c.ids[0], sizeof c.ids[0], "%s", ids[i]);
        kyu_result_t r = apply1(f, c);
        assert_int_equal(r.code, KYU_OK);
        kyu_result_clear(&r);
        assert_int_equal(only_record_length(f), lengths[i]);
        r = apply1(f, keyed_send(T0 + 1, "a", 7, 1));
        assert_int_equal(r.code, KYU_OK);
        assert_string_equal(r.ids[0], ids[i]);
        kyu_result_clear(&r);
    }
}

static void test_keys_survive_a_restart(void **state)
{
    fixture_t *f = *state;
    create(f);
    kyu_result_t r1 = apply1(f, keyed_send(T0, "a", 7, 1));
    fixture_reopen(f);
    kyu_result_t r2 = apply1(f, keyed_send(T0 + 5, "a", 7, 1));
    assert_string_equal(r2.ids[0], r1.ids[0]);
    assert_int_equal(visible(f, T0 + 6), 1);
    kyu_result_clear(&r1);
    kyu_result_clear(&r2);
}

static void test_a_keyed_send_to_a_missing_queue_is_not_remembered(void **state)
{
    fixture_t *f = *state;
    kyu_result_t r = apply1(f, keyed_send(T0, "a", 7, 1));
    assert_int_equal(r.code, KYU_ERR_NO_SUCH_QUEUE);
    kyu_result_clear(&r);
    create(f);
    r = apply1(f, keyed_send(T0 + 1, "a", 7, 1));
    assert_int_equal(r.code, KYU_OK);
    kyu_result_clear(&r);
    assert_int_equal(visible(f, T0 + 2), 1);
}

static kyu_command_t keyed(kyu_command_t c, uint64_t client, uint64_t key)
{
    c.rq_client = client;
    c.rq_key = key;
    return c;
}

/* Sends one message and leases it; returns its receipt handle. */
static void send_and_receive(fixture_t *f, char handle[KYU_HANDLE_MAX + 1])
{
    kyu_result_t r = apply1(f, cmd_send("orders", T0, "a"));
    kyu_result_clear(&r);
    r = apply1(f, cmd_receive("orders", T0 + 1, 1, 30));
    assert_int_equal(r.n_msgs, 1);
    snprintf(handle, KYU_HANDLE_MAX + 1, "%s", r.msgs[0].handle);
    kyu_result_clear(&r);
}

static void test_a_retried_keyed_delete_answers_as_the_first_time(void **state)
{
    fixture_t *f = *state;
    create(f);
    char h[KYU_HANDLE_MAX + 1];
    send_and_receive(f, h);
    kyu_result_t r1 = apply1(f, keyed(cmd_delete("orders", T0 + 2, h), 7, 1));
    assert_int_equal(r1.results[0], KYU_OK);
    kyu_result_t r2 = apply1(f, keyed(cmd_delete("orders", T0 + 3, h), 7, 1));
    assert_int_equal(r2.code, KYU_OK);
    assert_int_equal(r2.n_results, 1);
    assert_int_equal(r2.results[0], KYU_OK);
    /* Unkeyed, or under another key, the handle is gone. */
    kyu_result_t r3 = apply1(f, cmd_delete("orders", T0 + 4, h));
    assert_int_equal(r3.results[0], KYU_ERR_RECEIPT_INVALID);
    kyu_result_clear(&r1);
    kyu_result_clear(&r2);
    kyu_result_clear(&r3);
}

static void test_a_retried_keyed_visibility_change_moves_the_lease_once(void **state)
{
    fixture_t *f = *state;
    create(f);
    char h[KYU_HANDLE_MAX + 1];
    send_and_receive(f, h);
    kyu_result_t r1 = apply1(f, keyed(cmd_change_visibility("orders", T0 + 2, h, 0), 7, 1));
    assert_int_equal(r1.results[0], KYU_OK);
    /* Visible again at T0 + 2: the retry must not lease it back for vt seconds. */
    kyu_result_t r2 = apply1(f, keyed(cmd_change_visibility("orders", T0 + 3, h, 600), 7, 1));
    assert_int_equal(r2.results[0], KYU_OK);
    assert_int_equal(visible(f, T0 + 4), 1);
    kyu_result_clear(&r1);
    kyu_result_clear(&r2);
}

static void test_a_retried_keyed_receive_returns_the_same_leases(void **state)
{
    fixture_t *f = *state;
    create(f);
    for (int i = 0; i < 3; i++) {
        kyu_result_t r = apply1(f, cmd_send("orders", T0, "m"));
        kyu_result_clear(&r);
    }
    kyu_result_t r1 = apply1(f, keyed(cmd_receive("orders", T0 + 1, 2, 30), 7, 1));
    assert_int_equal(r1.n_msgs, 2);
    kyu_result_t r2 = apply1(f, keyed(cmd_receive("orders", T0 + 2, 2, 30), 7, 1));
    assert_int_equal(r2.code, KYU_OK);
    assert_int_equal(r2.n_msgs, 2);
    for (size_t i = 0; i < 2; i++) {
        assert_string_equal(r2.msgs[i].handle, r1.msgs[i].handle);
        assert_string_equal(r2.msgs[i].message_id, r1.msgs[i].message_id);
        assert_int_equal(r2.body_lens[i], 1);
        assert_memory_equal(r2.bodies[i], "m", 1);
    }
    assert_int_equal(visible(f, T0 + 3), 1); /* the third message was not leased */
    kyu_result_clear(&r1);
    kyu_result_clear(&r2);
}

static void test_a_retried_receive_leaves_out_messages_deleted_or_leased_since(void **state)
{
    fixture_t *f = *state;
    create(f);
    for (int i = 0; i < 2; i++) {
        kyu_result_t r = apply1(f, cmd_send("orders", T0, "m"));
        kyu_result_clear(&r);
    }
    kyu_result_t r1 = apply1(f, keyed(cmd_receive("orders", T0 + 1, 2, 1), 7, 1));
    assert_int_equal(r1.n_msgs, 2);
    kyu_result_t d = apply1(f, cmd_delete("orders", T0 + 2, r1.msgs[0].handle));
    assert_int_equal(d.results[0], KYU_OK);
    kyu_result_clear(&d);
    /* The second lease ran out and another receiver took the message. */
    kyu_result_t other = apply1(f, cmd_receive("orders", T0 + 5000, 1, 30));
    assert_int_equal(other.n_msgs, 1);
    kyu_result_t r2 = apply1(f, keyed(cmd_receive("orders", T0 + 5001, 2, 1), 7, 1));
    assert_int_equal(r2.code, KYU_OK);
    assert_int_equal(r2.n_msgs, 0);
    kyu_result_clear(&r1);
    kyu_result_clear(&other);
    kyu_result_clear(&r2);
}

static void test_a_retried_keyed_queue_deletion_answers_ok(void **state)
{
    fixture_t *f = *state;
    create(f);
    kyu_result_t r1 = apply1(f, keyed(cmd_delete_queue("orders"), 7, 1));
    assert_int_equal(r1.code, KYU_OK);
    kyu_result_t r2 = apply1(f, keyed(cmd_delete_queue("orders"), 7, 1));
    assert_int_equal(r2.code, KYU_OK);
    kyu_result_t r3 = apply1(f, cmd_delete_queue("orders"));
    assert_int_equal(r3.code, KYU_ERR_NO_SUCH_QUEUE);
    kyu_result_clear(&r1);
    kyu_result_clear(&r2);
    kyu_result_clear(&r3);
}

static void test_a_key_reused_for_another_kind_of_request_is_refused(void **state)
{
    fixture_t *f = *state;
    create(f);
    kyu_result_t r1 = apply1(f, keyed_send(T0, "a", 7, 1));
    kyu_result_t r2 = apply1(f, keyed(cmd_receive("orders", T0 + 1, 1, 30), 7, 1));
    assert_int_equal(r2.code, KYU_ERR_INVALID_ARGUMENT);
    assert_int_equal(r2.n_msgs, 0);
    assert_int_equal(visible(f, T0 + 2), 1);
    kyu_result_clear(&r1);
    kyu_result_clear(&r2);
}

/* The frontend asks before it answers an empty receive without a command (defect 3b). */
static void test_the_state_machine_says_which_keys_it_knows_within_the_window(void **state)
{
    fixture_t *f = *state;
    create(f);
    kyu_result_t r = apply1(f, keyed_send(T0, "a", 7, 1));
    kyu_result_clear(&r);
    assert_true(kyu_sm_knows_request(f->sm, 7, 1, T0 + 1));
    assert_false(kyu_sm_knows_request(f->sm, 7, 2, T0 + 1));
    assert_false(kyu_sm_knows_request(f->sm, 8, 1, T0 + 1));
    assert_false(kyu_sm_knows_request(f->sm, 7, 1, T0 + KYU_DEDUP_WINDOW_MS));
}

static void test_keyed_commands_round_trip_through_the_log_encoding(void **state)
{
    (void)state;
    kyu_command_t c = keyed_send(T0, "a", UINT64_MAX, 42), d;
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    kyu_command_encode(&c, &b);
    size_t off = 0;
    kyu_err_t err;
    assert_int_equal(kyu_command_decode(b.data, b.size, &off, &d, &err), KYU_OK);
    assert_true(d.rq_client == UINT64_MAX);
    assert_int_equal(d.rq_key, 42);
    msgpack_sbuffer_destroy(&b);
    kyu_command_t del = keyed(cmd_delete("orders", T0, "h"), 3, 4);
    msgpack_sbuffer_init(&b);
    kyu_command_encode(&del, &b);
    off = 0;
    assert_int_equal(kyu_command_decode(b.data, b.size, &off, &d, &err), KYU_OK);
    assert_int_equal(d.type, KYU_CMD_DELETE);
    assert_int_equal(d.rq_client, 3);
    assert_int_equal(d.rq_key, 4);
    msgpack_sbuffer_destroy(&b);
}

#define T(name) cmocka_unit_test_setup_teardown(name, fixture_setup, fixture_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_a_retried_keyed_send_is_applied_once_with_the_first_ids),
        T(test_the_same_key_twice_in_one_entry_is_applied_once),
        T(test_records_of_one_entry_are_found_by_a_retry_in_a_later_one),
        T(test_other_clients_and_other_keys_do_not_match),
        T(test_keys_expire_after_the_window),
        T(test_the_key_filter_keeps_every_key_of_the_window),
        T(test_a_bucket_is_dropped_whole_once_past_the_window),
        T(test_a_retry_in_a_later_bucket_is_answered_to_the_end_of_the_window),
        T(test_records_of_the_first_format_are_moved_to_buckets_and_honoured),
        T(test_a_send_record_packs_uuids_and_keeps_other_ids_whole),
        T(test_keys_survive_a_restart),
        T(test_a_keyed_send_to_a_missing_queue_is_not_remembered),
        T(test_a_retried_keyed_delete_answers_as_the_first_time),
        T(test_a_retried_keyed_visibility_change_moves_the_lease_once),
        T(test_a_retried_keyed_receive_returns_the_same_leases),
        T(test_a_retried_receive_leaves_out_messages_deleted_or_leased_since),
        T(test_a_retried_keyed_queue_deletion_answers_ok),
        T(test_a_key_reused_for_another_kind_of_request_is_refused),
        T(test_the_state_machine_says_which_keys_it_knows_within_the_window),
        T(test_keyed_commands_round_trip_through_the_log_encoding),
    };
    return cmocka_run_group_tests_name("sm dedup", tests, NULL, NULL);
}
