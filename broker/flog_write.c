/* flog_write.c: writing the segment log (flog.h): records, rolls to the next segment, the
 * spare maker that zero-fills segments ahead, truncation, compaction, install, backup. */
#include "flog_internal.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* The fault seam of the tests: whether this data write or sync is to fail. */
static bool injected(kyu_flog_t *self)
{
    if (self->fail_n <= 0)
        return false;
    if (self->fail_skip > 0) {
        self->fail_skip--;
        return false;
    }
    self->fail_n--;
    errno = self->fail_errno;
    return true;
}

/* Writes m (its seq and gen one past the current ones) into the slot not holding the current
 * meta, synced; only then is it the flog's. */
kyu_code_t kyu_flog_meta_write(kyu_flog_t *self, meta_t m, kyu_err_t *err)
{
    m.seq = self->m.seq + 1;
    m.gen = self->m.gen + 1;
    uint8_t b[META_BYTES];
    kyu_flog_meta_encode(&m, b);
    if (pwrite(self->metafd, b, META_BYTES, (off_t)(m.seq % 2) * META_SLOT) != META_BYTES ||
        fdatasync(self->metafd) != 0)
        return sys_err(err, "writing the log's meta file in", self->dir);
    self->m = m;
    self->bumped = true;
    self->hi = 0;
    return KYU_OK;
}

/* ---- segment files ---- */

void kyu_flog_add_spare(kyu_flog_t *self, const char *name)
{
    if (self->nspare == self->capspare) {
        self->capspare = self->capspare ? 2 * self->capspare : 8;
        self->spare = realloc(self->spare, self->capspare * sizeof *self->spare);
        KYU_ASSERT(self->spare);
    }
    self->spare[self->nspare] = strdup(name);
    KYU_ASSERT(self->spare[self->nspare]);
    self->nspare++;
}

/* Creates a zero-filled file of the segment size as name.tmp, synced (a file created later
 * under its final name holds only zeros or whole records of its own). */
static bool maker_stopping(kyu_flog_t *self)
{
    KYU_ASSERT(pthread_mutex_lock(&self->spare_lock) == 0);
    bool stop = self->stop;
    KYU_ASSERT(pthread_mutex_unlock(&self->spare_lock) == 0);
    return stop;
}

/* Zeros for make_zero_file and the pad after a write's END (write_recs), aligned for
 * O_DIRECT. */
static const uint8_t zeros[ZERO_CHUNK] __attribute__((aligned(PAGE)));

/* paced: the spare maker's way, a 1 MiB chunk synced at a time (the storage thread's
 * fdatasyncs do not queue behind 16 MiB of writeback), stopping when the flog closes.
 * The zeros go to the disk with O_DIRECT where the file system takes it: through the page
 * cache, the copy of 16 MiB of zeros into fresh pages (and their writeback) cost about as
 * much CPU as all of the log's own writes (~6% of the broker's under a send load, while a
 * log makes its first segments: docs/BENCHMARKS.md "Branch sendcpu (2026-12-05)"). The
 * blocks are written zeros either way (no unwritten extents for a later fdatasync to
 * convert); the pages of such a file are not in the cache, so each write pads its last page
 * with zeros (write_recs) rather than have the kernel read it first. */
static kyu_code_t make_zero_file(kyu_flog_t *self, const char *name, bool paced, kyu_err_t *err)
{
    int flags = O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC;
    bool direct = self->seg_bytes % PAGE == 0;
    int fd = direct ? openat(self->dirfd, name, flags | O_DIRECT, 0644) : -1;
    if (fd < 0) {
        direct = false;
        fd = openat(self->dirfd, name, flags, 0644);
    }
    if (fd < 0)
        return sys_err(err, "creating a log segment in", self->dir);
    for (uint64_t off = 0; off < self->seg_bytes;) {
        size_t n = self->seg_bytes - off < ZERO_CHUNK ? self->seg_bytes - off : ZERO_CHUNK;
        ssize_t w = pwrite(fd, zeros, n, (off_t)off);
        if (w < 0 && direct && errno == EINVAL) {
            /* a file system that opens O_DIRECT but refuses its writes: the page cache */
            direct = false;
            if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_DIRECT) == 0)
                continue;
        }
        if (paced && w > 0 && (fdatasync(fd) != 0 || maker_stopping(self)))
            w = -1;
        if (w <= 0) {
            if (w == 0)
                errno = ENOSPC;
            kyu_code_t rc = sys_err(err, "creating a log segment in", self->dir);
            close(fd);
            unlinkat(self->dirfd, name, 0);
            return rc;
        }
        off += (uint64_t)w;
    }
    if (fdatasync(fd) != 0) {
        kyu_code_t rc = sys_err(err, "creating a log segment in", self->dir);
        close(fd);
        unlinkat(self->dirfd, name, 0);
        return rc;
    }
    close(fd);
    return KYU_OK;
}

/* Makes seg-no the file of a live segment: a recycled one renamed, else a new zero-filled
 * one; the directory synced (records written into it later must not lose their name). */
static kyu_code_t place_segment(kyu_flog_t *self, uint64_t no, int *fd, kyu_err_t *err)
{
    char name[64];
    seg_name(name, sizeof name, no);
    if (self->maker_on) {
        KYU_ASSERT(pthread_mutex_lock(&self->spare_lock) == 0);
        if (self->ready[0]) {
            kyu_flog_add_spare(self, self->ready);
            self->ready[0] = '\0';
        }
        KYU_ASSERT(pthread_mutex_unlock(&self->spare_lock) == 0);
    }
    if (self->nspare > 0) {
        /* A spare of that very name (a segment left beyond the tail) is taken in place: a
         * rename onto it would leave its name in the list of spares. */
        for (size_t i = 0; i + 1 < self->nspare; i++)
            if (strcmp(self->spare[i], name) == 0) {
                char *t = self->spare[i];
                self->spare[i] = self->spare[self->nspare - 1];
                self->spare[self->nspare - 1] = t;
            }
        char *from = self->spare[--self->nspare];
        int rc = renameat(self->dirfd, from, self->dirfd, name);
        free(from);
        if (rc != 0)
            return sys_err(err, "recycling a log segment in", self->dir);
    } else {
        if (make_zero_file(self, "seg.tmp", false, err) != KYU_OK)
            return KYU_ERR_STORAGE;
        if (renameat(self->dirfd, "seg.tmp", self->dirfd, name) != 0)
            return sys_err(err, "naming a log segment in", self->dir);
    }
    if (fsync(self->dirfd) != 0)
        return sys_err(err, "syncing", self->dir);
    if (self->maker_on && self->nspare == 0) {
        KYU_ASSERT(pthread_mutex_lock(&self->spare_lock) == 0);
        self->want = true;
        KYU_ASSERT(pthread_cond_signal(&self->spare_cond) == 0);
        KYU_ASSERT(pthread_mutex_unlock(&self->spare_lock) == 0);
    }
    *fd = openat(self->dirfd, name, O_RDWR | O_CLOEXEC);
    if (*fd < 0)
        return sys_err(err, "opening a log segment in", self->dir);
    return KYU_OK;
}

/* ---- writing ---- */

static kyu_code_t prepare(kyu_flog_t *self, kyu_err_t *err)
{
    if (self->corrupt)
        return kyu_err_set(err, KYU_ERR_STORAGE, "%s", self->corrupt);
    if (self->tail_fd >= 0)
        return KYU_OK;
    char name[64];
    seg_name(name, sizeof name, tail_no(self));
    int fd = openat(self->dirfd, name, O_RDWR | O_CLOEXEC);
    if (fd < 0 && place_segment(self, tail_no(self), &fd, err) != KYU_OK)
        return KYU_ERR_STORAGE;
    self->tail_fd = fd;
    return KYU_OK;
}

/* The spare maker's thread: one spare at a time, when asked (a roll took the last one). The
 * file is made as spare.tmp and renamed spare-N once whole and synced; a failure (a full
 * disk) leaves none, and the roll makes its own (and meets the error itself). */
static void *maker_main(void *arg)
{
    kyu_flog_t *self = arg;
    KYU_ASSERT(pthread_mutex_lock(&self->spare_lock) == 0);
    for (;;) {
        while (!self->stop && (!self->want || self->ready[0]))
            KYU_ASSERT(pthread_cond_wait(&self->spare_cond, &self->spare_lock) == 0);
        if (self->stop)
            break;
        self->want = false;
        unsigned k = self->made++;
        KYU_ASSERT(pthread_mutex_unlock(&self->spare_lock) == 0);
        char name[32];
        snprintf(name, sizeof name, "spare-%u", k);
        kyu_err_t err;
        bool ok = make_zero_file(self, "spare.tmp", true, &err) == KYU_OK &&
                  renameat(self->dirfd, "spare.tmp", self->dirfd, name) == 0 &&
                  fsync(self->dirfd) == 0;
        KYU_ASSERT(pthread_mutex_lock(&self->spare_lock) == 0);
        if (ok)
            snprintf(self->ready, sizeof self->ready, "%s", name);
    }
    KYU_ASSERT(pthread_mutex_unlock(&self->spare_lock) == 0);
    return NULL;
}

kyu_code_t kyu_flog_prepare(kyu_flog_t *self, kyu_err_t *err)
{
    KYU_ASSERT(pthread_mutex_lock(&self->lock) == 0);
    kyu_code_t rc = prepare(self, err);
    if (!self->maker_on) {
        self->maker_on = pthread_create(&self->maker, NULL, maker_main, self) == 0;
        KYU_ASSERT(pthread_mutex_lock(&self->spare_lock) == 0);
        self->want = self->nspare == 0;
        KYU_ASSERT(pthread_cond_signal(&self->spare_cond) == 0);
        KYU_ASSERT(pthread_mutex_unlock(&self->spare_lock) == 0);
    }
    KYU_ASSERT(pthread_mutex_unlock(&self->lock) == 0);
    return rc;
}

static void make_hdr(uint8_t *h, int kind, int type, uint32_t len, uint64_t no, uint64_t gen,
                     uint64_t index, uint64_t term, const void *payload)
{
    memset(h, 0, HDR);
    h[4] = (uint8_t)kind;
    h[5] = (uint8_t)type;
    kyu_put_be32(h + 8, len);
    put64(h + 16, no);
    put64(h + 24, gen);
    put64(h + 32, index);
    put64(h + 40, term);
    uLong c = crc32(0, h + 4, HDR - 4);
    if (len)
        c = crc32(c, payload, len);
    kyu_put_be32(h, (uint32_t)c);
}

/* Writes iov[0..n) at off of fd (pwritev in runs of IOV_MAX, short writes resumed). */
static bool write_all(kyu_flog_t *self, int fd, struct iovec *iov, size_t n, uint64_t off)
{
    while (n > 0) {
        if (injected(self))
            return false;
        int cnt = n < IOV_MAX ? (int)n : IOV_MAX;
        ssize_t w = pwritev(fd, iov, cnt, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            if (w == 0)
                errno = ENOSPC;
            return false;
        }
        off += (uint64_t)w;
        while (n > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
    return true;
}

static bool sync_fd(kyu_flog_t *self, int fd)
{
    return !injected(self) && fdatasync(fd) == 0;
}

/* Moves the tail to a new segment: an END at the old tail's end first (a failed write may
 * have left records there that a write into the new segment would seem to follow). */
static kyu_code_t roll(kyu_flog_t *self, kyu_err_t *err)
{
    uint8_t end[HDR];
    make_hdr(end, KIND_END, 0, 0, tail_no(self), self->m.gen, self->last, 0, NULL);
    struct iovec v = {end, HDR};
    if (!write_all(self, self->tail_fd, &v, 1, self->pos) || !sync_fd(self, self->tail_fd))
        return sys_err(err, "writing the log in", self->dir);
    int fd;
    if (place_segment(self, tail_no(self) + 1, &fd, err) != KYU_OK)
        return KYU_ERR_STORAGE;
    close(self->tail_fd);
    self->tail_fd = fd;
    self->first = realloc(self->first, (self->nseg + 1) * sizeof(uint64_t));
    KYU_ASSERT(self->first);
    self->first[self->nseg++] = 0;
    self->pos = 0;
    return KYU_OK;
}

/* in_tail: only when the records fit in the tail segment, which is ready (KYU_ERR_BUSY and
 * nothing done otherwise): a roll may zero-fill a segment, too long for the event loop. */
static kyu_code_t write_recs(kyu_flog_t *self, const kyu_flog_rec_t *recs, size_t n, bool in_tail,
                             kyu_err_t *err)
{
    uint64_t size = HDR;
    for (size_t i = 0; i < n; i++)
        size += HDR + (recs[i].kind == KYU_FLOG_HS ? 24 : recs[i].len);
    if (in_tail && (self->corrupt || self->tail_fd < 0 || self->pos + size > self->seg_bytes))
        return kyu_err_set(err, KYU_ERR_BUSY, "the write needs a new log segment");
    if (prepare(self, err) != KYU_OK)
        return KYU_ERR_STORAGE;
    if (!self->bumped) {
        /* The first write since the open: records past the tail a crash left behind have
         * the old generation. */
        if (kyu_flog_meta_write(self, self->m, err) != KYU_OK)
            return KYU_ERR_STORAGE;
    }
    if (self->pos > 0 && self->pos + size > self->seg_bytes && roll(self, err) != KYU_OK)
        return KYU_ERR_STORAGE;
    if (self->caphdrs < (n + 1) * (HDR + 24)) {
        self->caphdrs = 2 * (n + 1) * (HDR + 24);
        self->hdrs = realloc(self->hdrs, self->caphdrs);
        KYU_ASSERT(self->hdrs);
    }
    if (self->capiov < 2 * n + 2) {
        self->capiov = 2 * (2 * n + 2);
        self->iov = realloc(self->iov, self->capiov * sizeof *self->iov);
        KYU_ASSERT(self->iov);
    }
    uint64_t no = tail_no(self), gen = self->m.gen, last = self->last, lo = self->lo;
    uint64_t seg_first = self->first[self->nseg - 1];
    kyu_flog_hs_t hs = self->m.hs;
    size_t k = 0;
    uint8_t *h = self->hdrs;
    for (size_t i = 0; i < n; i++, h += HDR + 24) {
        const kyu_flog_rec_t *r = &recs[i];
        if (r->kind == KYU_FLOG_HS) {
            uint8_t *p = h + HDR;
            put64(p, r->hs.term);
            put64(p + 8, r->hs.vote);
            put64(p + 16, r->hs.commit);
            make_hdr(h, KYU_FLOG_HS, 0, 24, no, gen, last, 0, p);
            self->iov[k++] = (struct iovec){h, HDR + 24};
            hs = r->hs;
            hs.found = true;
            continue;
        }
        make_hdr(h, KYU_FLOG_ENTRY, r->type, (uint32_t)r->len, no, gen, r->index, r->term,
                 r->payload);
        self->iov[k++] = (struct iovec){h, HDR};
        if (r->len)
            self->iov[k++] = (struct iovec){(void *)r->payload, r->len};
        last = r->index;
        if (!seg_first)
            seg_first = r->index;
        if (!lo)
            lo = r->index;
    }
    make_hdr(h, KIND_END, 0, 0, no, gen, last, 0, NULL);
    self->iov[k++] = (struct iovec){h, HDR};
    /* Zeros to the end of the END's page (within the segment): a segment's file holds zeros
     * there already, and a page written whole is not read first (make_zero_file). */
    uint64_t end = self->pos + size, pad = (PAGE - end % PAGE) % PAGE;
    if (pad && end + pad <= self->seg_bytes)
        self->iov[k++] = (struct iovec){(void *)zeros, pad};
    if (last > self->hi)
        self->hi = last;
    if (!write_all(self, self->tail_fd, self->iov, k, self->pos) || !sync_fd(self, self->tail_fd))
        return sys_err(err, "writing the log in", self->dir);
    self->pos += size - HDR;
    self->last = last;
    self->lo = lo;
    self->first[self->nseg - 1] = seg_first;
    self->m.hs = hs;
    return KYU_OK;
}

kyu_code_t kyu_flog_write(kyu_flog_t *self, const kyu_flog_rec_t *recs, size_t n, kyu_err_t *err)
{
    KYU_ASSERT(pthread_mutex_lock(&self->lock) == 0);
    kyu_code_t rc = write_recs(self, recs, n, false, err);
    KYU_ASSERT(pthread_mutex_unlock(&self->lock) == 0);
    return rc;
}

kyu_code_t kyu_flog_write_in_tail(kyu_flog_t *self, const kyu_flog_rec_t *recs, size_t n,
                                  kyu_err_t *err)
{
    KYU_ASSERT(pthread_mutex_lock(&self->lock) == 0);
    kyu_code_t rc = write_recs(self, recs, n, true, err);
    KYU_ASSERT(pthread_mutex_unlock(&self->lock) == 0);
    return rc;
}

/* The offset of entry index in segment no (UINT64_MAX when absent). */
static uint64_t find_entry(kyu_flog_t *self, uint64_t no, uint64_t index)
{
    char name[64];
    seg_name(name, sizeof name, no);
    int fd = openat(self->dirfd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return UINT64_MAX;
    uint64_t off = 0, found = UINT64_MAX;
    uint8_t h[HDR];
    while (pread(fd, h, HDR, (off_t)off) == HDR && h[4] != KIND_END && get64(h + 16) == no) {
        if (h[4] == KYU_FLOG_ENTRY && get64(h + 32) == index) {
            found = off;
            break;
        }
        off += HDR + kyu_get_be32(h + 8);
    }
    close(fd);
    return found;
}

static kyu_code_t truncate_at(kyu_flog_t *self, uint64_t index, kyu_err_t *err)
{
    if (index > self->last && index > self->hi)
        return KYU_OK; /* nothing from index on reached the disk */
    if (prepare(self, err) != KYU_OK)
        return KYU_ERR_STORAGE;
    size_t seg = self->nseg - 1;
    uint64_t off = self->pos;
    if (index <= self->last) {
        while (seg > 0 && (!self->first[seg] || self->first[seg] > index))
            seg--;
        off = find_entry(self, self->m.first_seg + seg, index);
        if (off == UINT64_MAX)
            return kyu_err_set(err, KYU_ERR_STORAGE, "truncating the log: entry %llu not found",
                               (unsigned long long)index);
    }
    if (kyu_flog_meta_write(self, self->m, err) != KYU_OK)
        return KYU_ERR_STORAGE;
    if (seg != self->nseg - 1) {
        char name[64];
        for (size_t i = seg + 1; i < self->nseg; i++) {
            seg_name(name, sizeof name, self->m.first_seg + i);
            kyu_flog_add_spare(self, name);
        }
        seg_name(name, sizeof name, self->m.first_seg + seg);
        int fd = openat(self->dirfd, name, O_RDWR | O_CLOEXEC);
        if (fd < 0)
            return sys_err(err, "opening a log segment in", self->dir);
        close(self->tail_fd);
        self->tail_fd = fd;
        self->nseg = seg + 1;
    }
    self->pos = off;
    if (index <= self->last) {
        self->last = index - 1;
        if (self->first[seg] >= index)
            self->first[seg] = 0;
        if (self->lo >= index)
            self->lo = 0;
    }
    return KYU_OK;
}

kyu_code_t kyu_flog_truncate(kyu_flog_t *self, uint64_t index, kyu_err_t *err)
{
    KYU_ASSERT(pthread_mutex_lock(&self->lock) == 0);
    kyu_code_t rc = truncate_at(self, index, err);
    KYU_ASSERT(pthread_mutex_unlock(&self->lock) == 0);
    return rc;
}

kyu_code_t kyu_flog_compact(kyu_flog_t *self, const kyu_flog_snap_t *snap, kyu_err_t *err)
{
    KYU_ASSERT(pthread_mutex_lock(&self->lock) == 0);
    size_t keep = 0; /* the first segment still needed */
    while (keep + 1 < self->nseg &&
           (self->first[keep + 1] ? self->first[keep + 1] <= snap->index + 1
                                  : self->last <= snap->index))
        keep++;
    meta_t m = self->m;
    m.snap = *snap;
    m.snap.found = true;
    m.first_seg += keep;
    kyu_code_t rc = kyu_flog_meta_write(self, m, err);
    if (rc == KYU_OK && keep > 0) {
        char name[64];
        for (size_t i = 0; i < keep; i++) {
            seg_name(name, sizeof name, m.first_seg - keep + i);
            kyu_flog_add_spare(self, name);
        }
        memmove(self->first, self->first + keep, (self->nseg - keep) * sizeof(uint64_t));
        self->nseg -= keep;
        self->lo = self->first[0];
    }
    KYU_ASSERT(pthread_mutex_unlock(&self->lock) == 0);
    return rc;
}

static kyu_code_t install(kyu_flog_t *self, const kyu_flog_snap_t *snap, const kyu_flog_hs_t *hs,
                          kyu_err_t *err)
{
    if (self->corrupt) {
        /* the log is replaced whole: what it held no longer matters */
        free(self->corrupt);
        self->corrupt = NULL;
    }
    uint64_t no = tail_no(self) + 1;
    int fd;
    if (place_segment(self, no, &fd, err) != KYU_OK)
        return KYU_ERR_STORAGE;
    meta_t m = self->m;
    m.snap = *snap;
    m.snap.found = true;
    if (hs)
        m.hs = *hs;
    m.first_seg = no;
    m.start_gen = m.gen + 1;
    if (kyu_flog_meta_write(self, m, err) != KYU_OK) {
        close(fd);
        return KYU_ERR_STORAGE;
    }
    char name[64];
    for (size_t i = 0; i + 1 < self->nseg + 1; i++) {
        seg_name(name, sizeof name, no - self->nseg + i);
        if (faccessat(self->dirfd, name, F_OK, 0) == 0)
            kyu_flog_add_spare(self, name);
    }
    if (self->tail_fd >= 0)
        close(self->tail_fd);
    self->tail_fd = fd;
    self->nseg = 1;
    self->first[0] = 0;
    self->pos = 0;
    self->lo = self->last = 0;
    return KYU_OK;
}

kyu_code_t kyu_flog_install(kyu_flog_t *self, const kyu_flog_snap_t *snap, const kyu_flog_hs_t *hs,
                            kyu_err_t *err)
{
    KYU_ASSERT(pthread_mutex_lock(&self->lock) == 0);
    kyu_code_t rc = install(self, snap, hs, err);
    KYU_ASSERT(pthread_mutex_unlock(&self->lock) == 0);
    return rc;
}

/* Copies the file name of dirfd into out/name, synced. */
static kyu_code_t copy_file(kyu_flog_t *self, const char *name, const char *out, kyu_err_t *err)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", out, name);
    int in = openat(self->dirfd, name, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return KYU_OK; /* a tail not created yet */
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        close(in);
        return sys_err(err, "cannot create", path);
    }
    uint8_t *buf = malloc(ZERO_CHUNK);
    KYU_ASSERT(buf);
    kyu_code_t rc = KYU_OK;
    for (off_t off = 0;;) {
        ssize_t r = pread(in, buf, ZERO_CHUNK, off);
        if (r < 0 || (r > 0 && write(fd, buf, (size_t)r) != r)) {
            rc = sys_err(err, "copying the log into", path);
            break;
        }
        if (r == 0)
            break;
        off += r;
    }
    if (rc == KYU_OK && fsync(fd) != 0)
        rc = sys_err(err, "cannot sync", path);
    free(buf);
    close(fd);
    close(in);
    return rc;
}

kyu_code_t kyu_flog_backup(kyu_flog_t *self, const char *out, kyu_err_t *err)
{
    KYU_ASSERT(pthread_mutex_lock(&self->lock) == 0);
    kyu_code_t rc = KYU_OK;
    if (mkdir(out, 0755) != 0)
        rc = sys_err(err, "cannot create", out);
    if (rc == KYU_OK)
        rc = copy_file(self, "meta", out, err);
    char name[64];
    for (size_t i = 0; rc == KYU_OK && i < self->nseg; i++) {
        seg_name(name, sizeof name, self->m.first_seg + i);
        rc = copy_file(self, name, out, err);
    }
    if (rc == KYU_OK)
        rc = kyu_store_fsync_path(out, err);
    KYU_ASSERT(pthread_mutex_unlock(&self->lock) == 0);
    return rc;
}

void kyu_flog_maker_stop(kyu_flog_t *self)
{
    if (!self->maker_on)
        return;
    KYU_ASSERT(pthread_mutex_lock(&self->spare_lock) == 0);
    self->stop = true;
    KYU_ASSERT(pthread_cond_signal(&self->spare_cond) == 0);
    KYU_ASSERT(pthread_mutex_unlock(&self->spare_lock) == 0);
    KYU_ASSERT(pthread_join(self->maker, NULL) == 0);
    self->maker_on = false;
}
