/* The write-behind buffer (broker/sm_buffer.c): a key written again and again before a write
 * reads back as its last value, whether the new value is smaller than the one before (written
 * in its place), larger (given new bytes), larger than an arena's block, or deleted; and
 * what the buffer held is what the database holds after the write. */
#include "fixture.h"
#include "sm_internal.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

/* Expects key k of the buffer (or the database) to hold n bytes of byte b (n 0: none). */
static void expect(fixture_t *f, const char *k, size_t n, char b)
{
    size_t vl = 0;
    kyu_err_t err;
    kyu_err_clear(&err);
    char *v = kyu_sm_read(f->sm, KYU_CF_MESSAGES, k, strlen(k), &vl, &err);
    assert_int_equal(err.code, KYU_OK);
    if (n == 0) {
        assert_null(v);
        return;
    }
    assert_non_null(v);
    assert_int_equal(vl, n);
    for (size_t i = 0; i < n; i++)
        if (v[i] != b)
            fail_msg("key %s byte %zu: expected %c, saw %c", k, i, b, v[i]);
    free(v);
}

static void put(fixture_t *f, const char *k, size_t n, char b)
{
    char *v = malloc(n ? n : 1);
    assert_non_null(v);
    memset(v, b, n);
    kyu_sm_put(f->sm, KYU_CF_MESSAGES, k, strlen(k), v, n);
    free(v);
}

static void test_a_key_rewritten_reads_as_its_last_value_of_any_size(void **state)
{
    fixture_t *f = *state;
    static const size_t sizes[] = {10, 3000, 5, 0, 700000, 64, 4096, 1};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        put(f, "rewritten", sizes[i], (char)('a' + i));
        if (sizes[i])
            expect(f, "rewritten", sizes[i], (char)('a' + i));
    }
    /* many keys, across blocks of the arenas, each read back */
    char k[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(k, sizeof k, "k%05d", i);
        put(f, k, 100 + (size_t)(i % 7) * 100, (char)('A' + i % 26));
    }
    for (int i = 0; i < 5000; i += 3) {
        snprintf(k, sizeof k, "k%05d", i);
        kyu_sm_del(f->sm, KYU_CF_MESSAGES, k, strlen(k));
    }
    kyu_err_t err;
    assert_int_equal(kyu_sm_flush(f->sm, &err), KYU_OK);
    expect(f, "rewritten", 1, 'h');
    for (int i = 0; i < 5000; i++) {
        snprintf(k, sizeof k, "k%05d", i);
        expect(f, k, i % 3 == 0 ? 0 : 100 + (size_t)(i % 7) * 100, (char)('A' + i % 26));
    }
    /* the emptied arenas hand out their bytes again: the values of the next buffer */
    for (int i = 0; i < 5000; i++) {
        snprintf(k, sizeof k, "k%05d", i);
        put(f, k, 50, 'z');
    }
    for (int i = 0; i < 5000; i += 97) {
        snprintf(k, sizeof k, "k%05d", i);
        expect(f, k, 50, 'z');
    }
    assert_int_equal(kyu_sm_flush(f->sm, &err), KYU_OK);
    for (int i = 0; i < 5000; i += 97) {
        snprintf(k, sizeof k, "k%05d", i);
        expect(f, k, 50, 'z');
    }
}

/* The value of k in the database itself (not the buffer): n bytes of b, or none (n 0). */
static void expect_in_db(fixture_t *f, const char *k, size_t n, char b)
{
    size_t vl = 0;
    char *rerr = NULL;
    char *v = rocksdb_get_cf(kyu_store_db(f->store, KYU_CF_MESSAGES), kyu_store_readopts(f->store),
                             kyu_store_cf(f->store, KYU_CF_MESSAGES), k, strlen(k), &vl, &rerr);
    assert_null(rerr);
    if (n == 0) {
        if (v)
            fail_msg("key %s: expected none in the database, saw %zu bytes", k, vl);
        return;
    }
    assert_non_null(v);
    assert_int_equal(vl, n);
    assert_int_equal(v[0], b);
    free(v);
}

/* A range delete (the expiry of a request key bucket, sm_dedup.c) covers what the database
 * holds, what the write in flight holds and what the buffer holds, for reads at once and in
 * the database after the write; a key written after it in the same buffer is kept, and keys
 * outside it are untouched. */
static void test_a_range_delete_covers_the_database_the_write_in_flight_and_the_buffer(void **state)
{
    fixture_t *f = *state;
    kyu_err_t err;
    kyu_sm_write_behind(f->sm); /* a write in flight (when it has not finished yet) */
    put(f, "r1a", 4, 'a');
    put(f, "r2a", 4, 'z');
    assert_int_equal(kyu_sm_flush(f->sm, &err), KYU_OK); /* in the database */
    put(f, "r1b", 4, 'b');
    assert_int_equal(kyu_sm_flush_behind(f->sm, &err), KYU_OK); /* in flight, or written */
    put(f, "r1c", 4, 'c');                                      /* in the buffer */
    kyu_sm_put2(f->sm, KYU_CF_MESSAGES, "r1d", 3, "dddd", 4, NULL, 0, true);
    kyu_sm_del_range(f->sm, KYU_CF_MESSAGES, "r1", 2, "r2", 2);
    put(f, "r1e", 4, 'e'); /* after the range delete: kept */
    const char *gone[] = {"r1a", "r1b", "r1c", "r1d"};
    for (size_t i = 0; i < 4; i++)
        expect(f, gone[i], 0, 0);
    expect(f, "r1e", 4, 'e');
    expect(f, "r2a", 4, 'z');
    const uint8_t *keys[3] = {(const uint8_t *)"r1a", (const uint8_t *)"r1e",
                              (const uint8_t *)"r2a"};
    size_t klens[3] = {3, 3, 3}, vlens[3];
    char *vals[3];
    assert_true(kyu_sm_read_many(f->sm, KYU_CF_MESSAGES, keys, klens, 3, vals, vlens, &err));
    assert_null(vals[0]);
    assert_non_null(vals[1]);
    assert_non_null(vals[2]);
    free(vals[1]);
    free(vals[2]);
    assert_int_equal(kyu_sm_flush(f->sm, &err), KYU_OK);
    for (size_t i = 0; i < 4; i++) {
        expect(f, gone[i], 0, 0);
        expect_in_db(f, gone[i], 0, 0);
    }
    expect_in_db(f, "r1e", 4, 'e');
    expect_in_db(f, "r2a", 4, 'z');
    /* a buffer holding only a range delete is written too */
    kyu_sm_del_range(f->sm, KYU_CF_MESSAGES, "r1", 2, "r3", 2);
    expect(f, "r2a", 0, 0);
    assert_int_equal(kyu_sm_flush(f->sm, &err), KYU_OK);
    expect_in_db(f, "r1e", 0, 0);
    expect_in_db(f, "r2a", 0, 0);
}

/* The writer thread runs at SCHED_IDLE, so that its burst of CPU per write neither takes a
 * core from the threads that answer requests nor holds one that a woken thread was placed on
 * until its slice ends (a niced thread did, for up to a 4 ms tick). */
static void test_the_writer_thread_runs_at_sched_idle(void **state)
{
    fixture_t *f = *state;
    kyu_sm_write_behind(f->sm); /* once only: on already when KYU_TEST_WRITE_BEHIND is set */
    pid_t tid = kyu_sm_writer_tid(f->sm);
    assert_true(tid > 0);
    int policy = sched_getscheduler(tid);
    if (policy != SCHED_IDLE)
        fail_msg("the writer thread's policy: expected SCHED_IDLE (%d), saw %d", SCHED_IDLE,
                 policy);
    assert_int_equal(sched_getscheduler(0), SCHED_OTHER); /* the loop's is unchanged */
    char name[32] = "";
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d/comm", (int)tid);
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    assert_non_null(fgets(name, sizeof name, fp));
    fclose(fp);
    assert_string_equal(name, "kyu-sm-writer\n");
}

/* A write sorts the buffer's items from the order they came in (sm_buffer.c, sort_items):
 * interleaved streams in key order, a stream out of order, keys shorter than the bucket's
 * prefix, items dropped (a key the database never held, deleted) and made again, and more
 * prefixes than the buckets (sorted whole): every key is in the database after the write. */
static void put_absent(fixture_t *f, const char *k, char b)
{
    char v[8];
    memset(v, b, sizeof v);
    kyu_sm_put2(f->sm, KYU_CF_MESSAGES, k, strlen(k), v, sizeof v, NULL, 0, true);
}

static void test_a_write_holds_every_key_whatever_their_order(void **state)
{
    fixture_t *f = *state;
    kyu_err_t err;
    char k[32];
    for (int round = 0; round < 2; round++) {
        int streams = round == 0 ? 4 : 40; /* 40: more prefixes than buckets */
        for (int i = 0; i < 3000; i++) {
            int s = i % streams, n = i / streams;
            /* stream 1 comes in descending order */
            snprintf(k, sizeof k, "%c%c%05d", 'a' + s % 26, 'a' + s / 26, s == 1 ? 99999 - n : n);
            put_absent(f, k, (char)('A' + round));
        }
        put(f, "x", 8, (char)('A' + round)); /* keys shorter than a prefix */
        put(f, "xa", 8, (char)('A' + round));
        put_absent(f, "gone", 'q');
        kyu_sm_del(f->sm, KYU_CF_MESSAGES, "gone", 4); /* dropped */
        put_absent(f, "back", 'q');
        kyu_sm_del(f->sm, KYU_CF_MESSAGES, "back", 4);
        put_absent(f, "back", (char)('A' + round)); /* made again */
        assert_int_equal(kyu_sm_flush(f->sm, &err), KYU_OK);
        for (int i = 0; i < 3000; i++) {
            int s = i % streams, n = i / streams;
            snprintf(k, sizeof k, "%c%c%05d", 'a' + s % 26, 'a' + s / 26, s == 1 ? 99999 - n : n);
            expect(f, k, 8, (char)('A' + round));
        }
        expect(f, "x", 8, (char)('A' + round));
        expect(f, "xa", 8, (char)('A' + round));
        expect(f, "gone", 0, 0);
        expect(f, "back", 8, (char)('A' + round));
    }
}

/* The state's writes carry no WAL: a write reaches the memtables, and a kill -9 takes the
 * state back to the tables, at a whole write (every column family flushed at once). */
static void test_a_kill_takes_the_state_back_to_its_tables(void **state)
{
    fixture_t *f = *state;
    kyu_err_t err;
    assert_int_equal(apply1(f, cmd_create("first", 30)).code, KYU_OK);
    assert_int_equal(apply1(f, cmd_send("first", 1000, "kept")).code, KYU_OK);
    uint64_t at = kyu_sm_applied_index(f->sm);
    kyu_sm_want_durable(f->sm, at);
    assert_int_equal(kyu_sm_flush(f->sm, &err), KYU_OK); /* written and flushed */
    assert_int_equal(kyu_sm_durable_index(f->sm), at);
    assert_int_equal(apply1(f, cmd_create("second", 30)).code, KYU_OK);
    assert_int_equal(apply1(f, cmd_send("first", 1000, "lost")).code, KYU_OK);
    assert_int_equal(kyu_sm_flush(f->sm, &err), KYU_OK); /* written, not flushed */
    assert_int_equal(kyu_sm_persisted_index(f->sm), at + 2);
    assert_int_equal(kyu_sm_durable_index(f->sm), at);
    uint64_t tables = 0;
    assert_int_equal(kyu_store_state_durable(f->store, &tables, &err), KYU_OK);
    assert_int_equal(tables, at);

    fixture_kill(f);
    assert_int_equal(kyu_sm_applied_index(f->sm), at);
    assert_int_equal(kyu_sm_durable_index(f->sm), at);
    assert_true(kyu_sm_queue_exists(f->sm, "first"));
    assert_false(kyu_sm_queue_exists(f->sm, "second"));
    kyu_queue_attrs_t a = fixture_attrs(f, "first", 2000);
    assert_int_equal(a.visible, 1);
}

/* A clean stop keeps everything written (RocksDB flushes the memtables when it closes). */
static void test_a_clean_stop_keeps_what_the_memtables_held(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(apply1(f, cmd_create("first", 30)).code, KYU_OK);
    uint64_t at = kyu_sm_applied_index(f->sm);
    fixture_reopen(f);
    assert_int_equal(kyu_sm_applied_index(f->sm), at);
    assert_int_equal(kyu_sm_durable_index(f->sm), at);
    assert_true(kyu_sm_queue_exists(f->sm, "first"));
}

/* Meta's flushed tables are merged only at KYU_STORE_META_RUNS sorted runs (store.c): with
 * atomic_flush every flush of any family makes a small table there, and at RocksDB's default
 * of 4 runs a backlog's few large runs kept meta at the trigger, so that each new table was
 * merged at once into the smallest large run, rewriting it at every flush (branch depthfix).
 * Below the trigger no compaction is picked at all, so the count is exact, not timing. */
static void test_meta_keeps_its_small_flushed_tables_until_its_trigger(void **state)
{
    fixture_t *f = *state;
    kyu_err_t err;
    rocksdb_t *db = kyu_store_db(f->store, KYU_CF_META);
    rocksdb_column_family_handle_t *meta = kyu_store_cf(f->store, KYU_CF_META);
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    rocksdb_writeoptions_disable_WAL(wo, 1);
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    uint64_t durable = 0;
    assert_int_equal(kyu_store_flush_state(f->store, &durable, &err), KYU_OK);
    char *v = rocksdb_property_value_cf(db, meta, "rocksdb.num-files-at-level0");
    assert_non_null(v);
    int before = atoi(v);
    free(v);
    assert_true(before < KYU_STORE_META_RUNS - 1);
    for (int t = before; t < KYU_STORE_META_RUNS - 1; t++) {
        /* request keys that overlap those of every other table, as a client's do */
        for (int i = 0; i < 100; i++) {
            char key[32];
            int n = snprintf(key, sizeof key, "rq%04d-%d", i, t);
            rocksdb_writebatch_put_cf(wb, meta, key, (size_t)n, "x", 1);
        }
        kyu_store_mark_batch(f->store, wb);
        char *rerr = NULL;
        rocksdb_write(db, wo, wb, &rerr);
        assert_null(rerr);
        rocksdb_writebatch_clear(wb);
        assert_int_equal(kyu_store_flush_state(f->store, &durable, &err), KYU_OK);
    }
    v = rocksdb_property_value_cf(db, meta, "rocksdb.num-files-at-level0");
    assert_non_null(v);
    assert_int_equal(atoi(v), KYU_STORE_META_RUNS - 1);
    free(v);
    /* and none is due: a compaction picked in the background (at RocksDB's default trigger)
     * shows here at once, whether or not it has run yet */
    v = rocksdb_property_value_cf(db, meta, "rocksdb.compaction-pending");
    assert_non_null(v);
    assert_int_equal(atoi(v), 0);
    free(v);
    rocksdb_writebatch_destroy(wb);
    rocksdb_writeoptions_destroy(wo);
}

/* Tables flushed with keys in order (the messages column family under a send load) are moved
 * down whole, never rewritten; their index and filter partitions are not pinned in the block
 * cache, which held every backlog table's whole index and filter past the cache's size
 * (store.c). Only the top levels stay pinned: a few hundred bytes a table. */
static void test_flushed_tables_keep_no_index_or_filter_partitions_pinned(void **state)
{
    fixture_t *f = *state;
    kyu_err_t err;
    rocksdb_t *db = kyu_store_db(f->store, KYU_CF_MESSAGES);
    rocksdb_column_family_handle_t *cf = kyu_store_cf(f->store, KYU_CF_MESSAGES);
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    rocksdb_writeoptions_disable_WAL(wo, 1);
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    char val[1024];
    uint64_t durable = 0, seq = 0;
    const int tables = 8, keys = 4000;
    for (int t = 0; t < tables; t++) {
        for (int i = 0; i < keys; i++, seq++) {
            uint8_t key[16];
            kyu_put_be64(key, 1);
            kyu_put_be64(key + 8, seq);
            for (size_t j = 0; j < sizeof val; j++) /* little to compress */
                val[j] = (char)((seq * 2654435761u + j * 40503u) >> 7);
            rocksdb_writebatch_put_cf(wb, cf, (char *)key, sizeof key, val, sizeof val);
        }
        kyu_store_mark_batch(f->store, wb);
        char *rerr = NULL;
        rocksdb_write(db, wo, wb, &rerr);
        assert_null(rerr);
        rocksdb_writebatch_clear(wb);
        assert_int_equal(kyu_store_flush_state(f->store, &durable, &err), KYU_OK);
    }
    /* every table was opened, its index and filter read (a lookup in each) */
    for (uint64_t s = 0; s < seq; s += (uint64_t)keys) {
        uint8_t key[16];
        kyu_put_be64(key, 1);
        kyu_put_be64(key + 8, s);
        size_t len = 0;
        char *rerr = NULL;
        char *v = rocksdb_get_cf(db, kyu_store_readopts(f->store), cf, (char *)key, sizeof key,
                                 &len, &rerr);
        assert_null(rerr);
        assert_non_null(v);
        assert_int_equal(len, sizeof val);
        free(v);
    }
    /* 32,000 keys of 1 KiB: some 8,000 data blocks, whose index and filter partitions are
     * about 250 KiB (each table's pinned in full before) */
    char *v = rocksdb_property_value(db, "rocksdb.block-cache-pinned-usage");
    assert_non_null(v);
    long long pinned = atoll(v);
    free(v);
    assert_true(pinned < 64 * 1024);
    rocksdb_writebatch_destroy(wb);
    rocksdb_writeoptions_destroy(wo);
}

#define T(name) cmocka_unit_test_setup_teardown(name, fixture_setup, fixture_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_a_key_rewritten_reads_as_its_last_value_of_any_size),
        T(test_a_range_delete_covers_the_database_the_write_in_flight_and_the_buffer),
        T(test_the_writer_thread_runs_at_sched_idle),
        T(test_a_write_holds_every_key_whatever_their_order),
        T(test_a_kill_takes_the_state_back_to_its_tables),
        T(test_a_clean_stop_keeps_what_the_memtables_held),
        T(test_meta_keeps_its_small_flushed_tables_until_its_trigger),
        T(test_flushed_tables_keep_no_index_or_filter_partitions_pinned),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
