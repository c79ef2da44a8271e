/* The segment file log (broker/flog.c) on its own: what was written is what is read after a
 * reopen, and what a crash leaves past the log's end (a torn write, records a truncation left
 * behind, a recycled segment's old records) is never read as part of it; a gap is refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "flog.h"
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define HDR 48
#define PAYLOAD 40 /* every entry's payload in these tests: one record is HDR + PAYLOAD */

typedef struct {
    char dir[256];
    kyu_flog_t *log;
} t_t;

static int setup(void **state)
{
    t_t *t = calloc(1, sizeof *t);
    snprintf(t->dir, sizeof t->dir, "/tmp/kyu-flog-XXXXXX");
    assert_non_null(mkdtemp(t->dir));
    strcat(t->dir, "/rlog");
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    t_t *t = *state;
    kyu_flog_close(&t->log);
    char cmd[400];
    t->dir[strlen(t->dir) - 5] = '\0';
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", t->dir);
    assert_int_equal(system(cmd), 0);
    free(t);
    return 0;
}

static void reopen(t_t *t, uint64_t seg)
{
    kyu_err_t err;
    kyu_flog_close(&t->log);
    t->log = kyu_flog_open(t->dir, seg, &err);
    assert_non_null(t->log);
}

/* Entry i's payload: "entry <i> term <term>" padded to PAYLOAD bytes. */
static void payload(uint8_t *p, uint64_t i, uint64_t term)
{
    memset(p, '.', PAYLOAD);
    int n = snprintf((char *)p, PAYLOAD, "entry %llu term %llu", (unsigned long long)i,
                     (unsigned long long)term);
    p[n] = '.';
}

/* Writes entries from..to of term, one write. */
static kyu_code_t write_range(t_t *t, uint64_t from, uint64_t to, uint64_t term)
{
    size_t n = to - from + 1;
    kyu_flog_rec_t *r = calloc(n, sizeof *r);
    uint8_t(*p)[PAYLOAD] = calloc(n, PAYLOAD);
    for (size_t i = 0; i < n; i++) {
        payload(p[i], from + i, term);
        r[i] = (kyu_flog_rec_t){KYU_FLOG_ENTRY, from + i, term, 0, p[i], PAYLOAD, {0}};
    }
    kyu_err_t err;
    kyu_code_t rc = kyu_flog_write(t->log, r, n, &err);
    free(r);
    free(p);
    return rc;
}

/* The same through kyu_flog_write_in_tail (the event loop's write of a small round). */
static kyu_code_t write_range_in_tail(t_t *t, uint64_t from, uint64_t to, uint64_t term)
{
    size_t n = to - from + 1;
    kyu_flog_rec_t *r = calloc(n, sizeof *r);
    uint8_t(*p)[PAYLOAD] = calloc(n, PAYLOAD);
    for (size_t i = 0; i < n; i++) {
        payload(p[i], from + i, term);
        r[i] = (kyu_flog_rec_t){KYU_FLOG_ENTRY, from + i, term, 0, p[i], PAYLOAD, {0}};
    }
    kyu_err_t err;
    kyu_code_t rc = kyu_flog_write_in_tail(t->log, r, n, &err);
    free(r);
    free(p);
    return rc;
}

typedef struct {
    uint64_t n, first, last, terms[4096];
    bool bad;
} seen_t;

static kyu_code_t visit(void *arg, uint64_t index, uint64_t term, int type, const void *pl,
                        size_t len, kyu_err_t *err)
{
    seen_t *s = arg;
    (void)type;
    (void)err;
    uint8_t want[PAYLOAD];
    payload(want, index, term);
    if (len != PAYLOAD || memcmp(pl, want, PAYLOAD) != 0 || (s->n && index != s->last + 1))
        s->bad = true;
    if (!s->n)
        s->first = index;
    s->last = index;
    if (index < 4096)
        s->terms[index] = term;
    s->n++;
    return KYU_OK;
}

/* Reads the log back: every entry from `from`, checked against its payload. */
static seen_t replay(t_t *t, uint64_t from)
{
    seen_t s = {0};
    kyu_err_t err;
    assert_int_equal(kyu_flog_replay(t->log, from, visit, &s, &err), KYU_OK);
    assert_false(s.bad);
    return s;
}

static uint64_t last_of(t_t *t)
{
    uint64_t first, last;
    kyu_flog_range(t->log, &first, &last);
    return last;
}

/* Rewrites len bytes at off of segment no. */
static void poke(t_t *t, uint64_t no, uint64_t off, const void *b, size_t len)
{
    char path[400];
    snprintf(path, sizeof path, "%s/seg-%016llx", t->dir, (unsigned long long)no);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, b, len, (off_t)off), (ssize_t)len);
    close(fd);
}

static void peek(t_t *t, uint64_t no, uint64_t off, void *b, size_t len)
{
    char path[400];
    snprintf(path, sizeof path, "%s/seg-%016llx", t->dir, (unsigned long long)no);
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, b, len, (off_t)off), (ssize_t)len);
    close(fd);
}

static int count_files(t_t *t)
{
    DIR *d = opendir(t->dir);
    int n = 0;
    for (struct dirent *e = readdir(d); e; e = readdir(d))
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static void test_what_was_written_is_read_after_a_reopen(void **state)
{
    t_t *t = *state;
    reopen(t, 0);
    kyu_err_t err;
    assert_int_equal(kyu_flog_check(t->log, &err), KYU_OK);
    assert_int_equal(last_of(t), 0);
    assert_int_equal(write_range(t, 1, 10, 1), KYU_OK);
    kyu_flog_rec_t hs = {.kind = KYU_FLOG_HS, .hs = {true, 3, 2, 9}};
    assert_int_equal(kyu_flog_write(t->log, &hs, 1, &err), KYU_OK);
    assert_int_equal(write_range(t, 11, 12, 3), KYU_OK);
    reopen(t, 0);
    seen_t s = replay(t, 1);
    assert_int_equal(s.n, 12);
    assert_int_equal(s.terms[12], 3);
    kyu_flog_hs_t h;
    kyu_flog_snap_t snap;
    kyu_flog_state(t->log, &h, &snap);
    assert_true(h.found);
    assert_int_equal(h.term, 3);
    assert_int_equal(h.vote, 2);
    assert_int_equal(h.commit, 9);
    assert_false(snap.found);
    /* a second life goes on where the first ended */
    assert_int_equal(write_range(t, 13, 13, 3), KYU_OK);
    reopen(t, 0);
    assert_int_equal(replay(t, 5).n, 9);
    assert_int_equal(last_of(t), 13);
}

/* A write the crash tore: half a record, or garbage, at the tail. The log ends before it. */
static void test_a_torn_write_ends_the_log_before_it(void **state)
{
    t_t *t = *state;
    reopen(t, 0);
    assert_int_equal(write_range(t, 1, 3, 1), KYU_OK);
    assert_int_equal(write_range(t, 4, 5, 1), KYU_OK);
    /* the second half of entry 5 never reached the disk */
    uint8_t zeros[HDR + PAYLOAD] = {0};
    poke(t, 1, 4 * (HDR + PAYLOAD) + HDR / 2, zeros, (HDR + PAYLOAD) - HDR / 2);
    reopen(t, 0);
    assert_int_equal(last_of(t), 4);
    assert_int_equal(replay(t, 1).n, 4);
    /* garbage where the tail's END was: written over by the next write, which is read */
    poke(t, 1, 4 * (HDR + PAYLOAD), "garbage garbage garbage garbage garbage garbage", 48);
    reopen(t, 0);
    assert_int_equal(last_of(t), 4);
    assert_int_equal(write_range(t, 5, 6, 2), KYU_OK);
    reopen(t, 0);
    seen_t s = replay(t, 1);
    assert_int_equal(s.n, 6);
    assert_int_equal(s.terms[6], 2);
}

/* A truncation, then a crash that tore the new tail's END: the old entry past it (a lower
 * generation) is not read, though it checks and follows. */
static void test_entries_a_truncation_left_behind_are_not_read_after_a_crash(void **state)
{
    t_t *t = *state;
    reopen(t, 0);
    kyu_err_t err;
    assert_int_equal(write_range(t, 1, 5, 1), KYU_OK);
    uint8_t old4[HDR + PAYLOAD];
    peek(t, 1, 3 * (HDR + PAYLOAD), old4, sizeof old4);
    assert_int_equal(kyu_flog_truncate(t->log, 3, &err), KYU_OK);
    assert_int_equal(last_of(t), 2);
    assert_int_equal(write_range(t, 3, 3, 2), KYU_OK);
    /* the END after the new entry 3 is lost: the old entry 4 shows through */
    poke(t, 1, 3 * (HDR + PAYLOAD), old4, sizeof old4);
    reopen(t, 0);
    seen_t s = replay(t, 1);
    assert_int_equal(s.n, 3);
    assert_int_equal(s.terms[3], 2);
    assert_int_equal(last_of(t), 3);
    /* and the log goes on from there */
    assert_int_equal(write_range(t, 4, 4, 2), KYU_OK);
    reopen(t, 0);
    s = replay(t, 1);
    assert_int_equal(s.n, 4);
    assert_int_equal(s.terms[4], 2);
}

/* A truncation into an earlier segment: the later segments' entries are gone too. */
static void test_a_truncation_across_segments_drops_the_later_ones(void **state)
{
    t_t *t = *state;
    reopen(t, 1024); /* 11 records a segment */
    kyu_err_t err;
    for (uint64_t i = 1; i <= 40; i++)
        assert_int_equal(write_range(t, i, i, 1), KYU_OK);
    assert_int_equal(kyu_flog_truncate(t->log, 5, &err), KYU_OK);
    assert_int_equal(write_range(t, 5, 6, 2), KYU_OK);
    reopen(t, 1024);
    seen_t s = replay(t, 1);
    assert_int_equal(s.n, 6);
    assert_int_equal(s.terms[6], 2);
    for (uint64_t i = 7; i <= 30; i++)
        assert_int_equal(write_range(t, i, i, 2), KYU_OK);
    reopen(t, 1024);
    s = replay(t, 1);
    assert_int_equal(s.n, 30);
    assert_int_equal(s.terms[30], 2);
}

/* Segments freed by compaction are renamed into the next segments' names: their old records
 * (another segment number) are never read, and the log stops creating files. */
static void test_recycled_segments_hold_no_old_record_of_the_log(void **state)
{
    t_t *t = *state;
    reopen(t, 1024);
    kyu_err_t err;
    uint64_t i = 1;
    for (; i <= 60; i++)
        assert_int_equal(write_range(t, i, i, 1), KYU_OK);
    int files = 0;
    for (int round = 0; round < 10; round++) {
        kyu_flog_snap_t snap = {.found = true, .index = i - 3, .term = 1};
        assert_int_equal(kyu_flog_compact(t->log, &snap, &err), KYU_OK);
        if (round == 1)
            files = count_files(t);
        for (uint64_t k = 0; k < 30; k++, i++)
            assert_int_equal(write_range(t, i, i, 1), KYU_OK);
        if (round > 1)
            assert_true(count_files(t) <= files);
    }
    uint64_t last = i - 1;
    reopen(t, 1024);
    uint64_t first;
    kyu_flog_range(t->log, &first, &last);
    assert_int_equal(last, i - 1);
    seen_t s = replay(t, first);
    assert_int_equal(s.last, i - 1);
    assert_int_equal(s.n, last - first + 1);
    kyu_flog_hs_t h;
    kyu_flog_snap_t snap;
    kyu_flog_state(t->log, &h, &snap);
    assert_true(snap.found);
    assert_true(first <= snap.index + 1);
}

/* An entry that checks but does not follow the one before it: the log is corrupt, and says
 * so (it does not start with a hole). */
static void test_a_gap_is_refused(void **state)
{
    t_t *t = *state;
    reopen(t, 0);
    assert_int_equal(write_range(t, 1, 1, 1), KYU_OK);
    assert_int_equal(write_range(t, 3, 3, 1), KYU_OK);
    reopen(t, 0);
    kyu_err_t err;
    assert_int_equal(kyu_flog_check(t->log, &err), KYU_ERR_STORAGE);
    assert_non_null(strstr(err.msg, "corrupt"));
    seen_t s = {0};
    assert_int_equal(kyu_flog_replay(t->log, 1, visit, &s, &err), KYU_ERR_STORAGE);
    assert_int_equal(write_range(t, 4, 4, 1), KYU_ERR_STORAGE);
}

static void test_an_install_replaces_the_whole_log(void **state)
{
    t_t *t = *state;
    reopen(t, 0);
    kyu_err_t err;
    assert_int_equal(write_range(t, 1, 20, 1), KYU_OK);
    kyu_flog_snap_t snap = {.found = true, .index = 10, .term = 2, .conf = {7}, .conf_len = 1};
    kyu_flog_hs_t hs = {true, 2, 1, 10};
    assert_int_equal(kyu_flog_install(t->log, &snap, &hs, &err), KYU_OK);
    reopen(t, 0);
    uint64_t first, last;
    kyu_flog_range(t->log, &first, &last);
    assert_int_equal(first, 0);
    assert_int_equal(last, 0);
    kyu_flog_state(t->log, &hs, &snap);
    assert_int_equal(snap.index, 10);
    assert_int_equal(snap.conf[0], 7);
    assert_int_equal(hs.commit, 10);
    assert_int_equal(write_range(t, 11, 12, 2), KYU_OK);
    reopen(t, 0);
    seen_t s = replay(t, 11);
    assert_int_equal(s.first, 11);
    assert_int_equal(s.n, 2);
}

/* A failed write or sync takes nothing as written; the next write writes it again (and more)
 * at the same place. */
static void test_a_failed_write_is_written_again(void **state)
{
    t_t *t = *state;
    reopen(t, 0);
    kyu_err_t err;
    assert_int_equal(write_range(t, 1, 3, 1), KYU_OK);
    kyu_flog_fail_next(t->log, EIO, 0, 1); /* the write */
    assert_int_equal(write_range(t, 4, 6, 1), KYU_ERR_STORAGE);
    assert_int_equal(last_of(t), 3);
    kyu_flog_fail_next(t->log, EIO, 1, 1); /* its fdatasync */
    assert_int_equal(write_range(t, 4, 6, 1), KYU_ERR_STORAGE);
    assert_int_equal(kyu_flog_check(t->log, &err), KYU_OK);
    assert_int_equal(last_of(t), 3);
    assert_int_equal(write_range(t, 4, 8, 1), KYU_OK);
    reopen(t, 0);
    assert_int_equal(replay(t, 1).n, 8);
}

/* A failed write then a truncation of what it tried: the retry's shorter tail is the log. */
static void test_a_truncation_after_a_failed_write_hides_what_it_left(void **state)
{
    t_t *t = *state;
    reopen(t, 0);
    kyu_err_t err;
    assert_int_equal(write_range(t, 1, 3, 1), KYU_OK);
    kyu_flog_fail_next(t->log, EIO, 1, 1); /* the fdatasync fails: the records are there */
    assert_int_equal(write_range(t, 4, 6, 1), KYU_ERR_STORAGE);
    uint8_t rec5[HDR + PAYLOAD];
    peek(t, 1, 4 * (HDR + PAYLOAD), rec5, sizeof rec5); /* entry 5 of the failed write */
    /* a new leader's entry 4 replaces what the failed write tried */
    assert_int_equal(kyu_flog_truncate(t->log, 4, &err), KYU_OK);
    assert_int_equal(write_range(t, 4, 4, 2), KYU_OK);
    poke(t, 1, 4 * (HDR + PAYLOAD), rec5, sizeof rec5); /* the END lost */
    reopen(t, 0);
    seen_t s = replay(t, 1);
    assert_int_equal(s.n, 4);
    assert_int_equal(s.terms[4], 2);
}

static void test_a_backup_reads_as_the_log(void **state)
{
    t_t *t = *state;
    reopen(t, 1024);
    kyu_err_t err;
    for (uint64_t i = 1; i <= 30; i++)
        assert_int_equal(write_range(t, i, i, 1), KYU_OK);
    char out[400];
    snprintf(out, sizeof out, "%s.copy", t->dir);
    assert_int_equal(kyu_flog_backup(t->log, out, &err), KYU_OK);
    assert_int_equal(write_range(t, 31, 31, 1), KYU_OK);
    kyu_flog_t *copy = kyu_flog_open(out, 1024, &err);
    assert_non_null(copy);
    seen_t s = {0};
    assert_int_equal(kyu_flog_replay(copy, 1, visit, &s, &err), KYU_OK);
    assert_false(s.bad);
    assert_int_equal(s.n, 30);
    kyu_flog_close(&copy);
}

/* The storage thread's start (kyu_flog_prepare) makes the tail segment whole, zero-filled,
 * before the first write, and the spare maker zero-fills the next one ahead: a fresh log's
 * writes overwrite blocks the files have (data-only fdatasync), and a roll renames a spare. */
static void test_the_tail_and_a_spare_are_zero_filled_before_they_are_written(void **state)
{
    t_t *t = *state;
    reopen(t, 8192);
    kyu_err_t err;
    assert_int_equal(kyu_flog_prepare(t->log, &err), KYU_OK);
    char path[400];
    snprintf(path, sizeof path, "%s/seg-%016llx", t->dir, 1ull);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 8192);
    snprintf(path, sizeof path, "%s/spare-0", t->dir);
    for (int i = 0; i < 1000 && stat(path, &st) != 0; i++)
        usleep(10000);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 8192);
    /* 88 bytes an entry: 2 segments and some; the spare became segment 2 */
    for (uint64_t i = 1; i <= 120; i++)
        assert_int_equal(write_range(t, i, i, 1), KYU_OK);
    assert_int_not_equal(stat(path, &st), 0);
    reopen(t, 8192);
    assert_int_equal(replay(t, 1).n, 120);
}

/* A spare is zeros whether the file system took O_DIRECT (a segment a multiple of the page)
 * or not; each write leaves zeros from its END to the end of that page (a page written whole
 * is not read first: the spare's zeros are not in the page cache), also over a recycled
 * file's old bytes, and the log reads back. */
static void check_zero_fill_and_pad(t_t *t, uint64_t seg)
{
    reopen(t, seg);
    kyu_err_t err;
    assert_int_equal(kyu_flog_prepare(t->log, &err), KYU_OK);
    char path[400];
    snprintf(path, sizeof path, "%s/spare-0", t->dir);
    struct stat st;
    for (int i = 0; i < 1000 && stat(path, &st) != 0; i++)
        usleep(10000);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal((uint64_t)st.st_size, seg);
    uint8_t *b = malloc(seg), *z = calloc(1, seg);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fread(b, 1, seg, f), seg);
    fclose(f);
    assert_memory_equal(b, z, seg);
    /* the tail segment holding old bytes, as a recycled one does */
    memset(b, 0xa5, seg);
    poke(t, 1, 0, b, seg);
    uint64_t end = 0;
    for (uint64_t i = 1; i <= 3; i++) {
        assert_int_equal(write_range(t, i, i, 1), KYU_OK);
        end = i * (HDR + PAYLOAD) + HDR;
        uint64_t pad = (4096 - end % 4096) % 4096;
        peek(t, 1, end, b, pad);
        assert_memory_equal(b, z, pad);
        peek(t, 1, end + pad, b, 16);
        assert_int_equal(b[0], 0xa5);
    }
    reopen(t, seg);
    assert_int_equal(replay(t, 1).n, 3);
    free(b);
    free(z);
}

static void test_spares_are_zeros_and_a_write_pads_its_page(void **state)
{
    check_zero_fill_and_pad(*state, 3 * 4096);
}

static void test_spares_are_zeros_and_a_write_pads_its_page_unaligned(void **state)
{
    t_t *t = *state;
    check_zero_fill_and_pad(t, 3 * 4096 + 1000);
}

/* A write in the tail never rolls to a new segment (that may zero-fill one): it refuses
 * with BUSY and changes nothing, and kyu_flog_write then takes the same records. */
static void test_a_write_in_the_tail_refuses_a_roll_and_changes_nothing(void **state)
{
    t_t *t = *state;
    reopen(t, 8192);
    kyu_err_t err;
    assert_int_equal(write_range_in_tail(t, 1, 1, 1), KYU_ERR_BUSY); /* no tail file open yet */
    assert_int_equal(last_of(t), 0);
    assert_int_equal(kyu_flog_prepare(t->log, &err), KYU_OK); /* as the storage thread does */
    uint64_t i = 1;
    while (write_range_in_tail(t, i, i, 1) == KYU_OK) /* 88 bytes an entry */
        i++;
    assert_true(i > 80 && i < 95); /* the tail full: the next one needs a roll */
    assert_int_equal(last_of(t), i - 1);
    assert_int_equal(write_range_in_tail(t, i, i + 1, 1), KYU_ERR_BUSY);
    assert_int_equal(last_of(t), i - 1);
    assert_int_equal(write_range(t, i, i + 1, 1), KYU_OK);
    assert_int_equal(write_range_in_tail(t, i + 2, i + 2, 1), KYU_OK); /* in the new tail */
    reopen(t, 8192);
    seen_t s = replay(t, 1);
    assert_int_equal(s.n, i + 2);
}

/* A failed write or sync in the tail takes nothing as written, as kyu_flog_write's: the same
 * records are written again at the same place (here by kyu_flog_write, as the storage
 * thread does, and by another write in the tail). */
static void test_a_failed_write_in_the_tail_is_written_again(void **state)
{
    t_t *t = *state;
    reopen(t, 0);
    kyu_err_t err;
    assert_int_equal(kyu_flog_prepare(t->log, &err), KYU_OK);
    assert_int_equal(write_range_in_tail(t, 1, 3, 1), KYU_OK);
    kyu_flog_fail_next(t->log, EIO, 0, 1); /* the write */
    assert_int_equal(write_range_in_tail(t, 4, 6, 1), KYU_ERR_STORAGE);
    assert_int_equal(last_of(t), 3);
    assert_int_equal(write_range(t, 4, 6, 1), KYU_OK);
    kyu_flog_fail_next(t->log, EIO, 1, 1); /* its fdatasync */
    assert_int_equal(write_range_in_tail(t, 7, 8, 1), KYU_ERR_STORAGE);
    assert_int_equal(kyu_flog_check(t->log, &err), KYU_OK);
    assert_int_equal(last_of(t), 6);
    assert_int_equal(write_range_in_tail(t, 7, 9, 1), KYU_OK);
    reopen(t, 0);
    assert_int_equal(replay(t, 1).n, 9);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_what_was_written_is_read_after_a_reopen),
        T(test_a_torn_write_ends_the_log_before_it),
        T(test_entries_a_truncation_left_behind_are_not_read_after_a_crash),
        T(test_a_truncation_across_segments_drops_the_later_ones),
        T(test_recycled_segments_hold_no_old_record_of_the_log),
        T(test_a_gap_is_refused),
        T(test_an_install_replaces_the_whole_log),
        T(test_a_failed_write_is_written_again),
        T(test_a_truncation_after_a_failed_write_hides_what_it_left),
        T(test_a_backup_reads_as_the_log),
        T(test_the_tail_and_a_spare_are_zero_filled_before_they_are_written),
        T(test_spares_are_zeros_and_a_write_pads_its_page),
        T(test_spares_are_zeros_and_a_write_pads_its_page_unaligned),
        T(test_a_write_in_the_tail_refuses_a_roll_and_changes_nothing),
        T(test_a_failed_write_in_the_tail_is_written_again),
    };
    return cmocka_run_group_tests_name("segment file log", tests, NULL, NULL);
}
