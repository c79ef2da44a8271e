/* The write-behind buffer (broker/sm_buffer.c): a key written again and again before a write
 * reads back as its last value, whether the new value is smaller than the one before (written
 * in its place), larger (given new bytes), larger than an arena's block, or deleted; and
 * what the buffer held is what the database holds after the write. */
#include "fixture.h"
#include "sm_internal.h"

#include <errno.h>
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

/* The writer thread runs below the loop's priority, so its burst of CPU per write does not
 * take a core from the threads that answer requests. */
static void test_the_writer_thread_runs_below_the_loop_s_priority(void **state)
{
    fixture_t *f = *state;
    kyu_sm_write_behind(f->sm); /* once only: on already when KYU_TEST_WRITE_BEHIND is set */
    pid_t tid = kyu_sm_writer_tid(f->sm);
    assert_true(tid > 0);
    errno = 0;
    int loop_nice = getpriority(PRIO_PROCESS, 0);
    assert_int_equal(errno, 0);
    int nice = getpriority(PRIO_PROCESS, (id_t)tid);
    assert_int_equal(errno, 0);
    assert_int_equal(nice,
                     loop_nice + KYU_SM_WRITER_NICE > 19 ? 19 : loop_nice + KYU_SM_WRITER_NICE);
    char name[32] = "";
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d/comm", (int)tid);
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    assert_non_null(fgets(name, sizeof name, fp));
    fclose(fp);
    assert_string_equal(name, "kyu-sm-writer\n");
}

#define T(name) cmocka_unit_test_setup_teardown(name, fixture_setup, fixture_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_a_key_rewritten_reads_as_its_last_value_of_any_size),
        T(test_the_writer_thread_runs_below_the_loop_s_priority),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
