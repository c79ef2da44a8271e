#include "flog.h"
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <zlib.h>

#define HDR 48
#define KIND_END 3
#define META_SLOT 4096
#define META_BYTES 512
#define META_MAGIC 0x4b59554cu /* "KYUL" */
#define ZERO_CHUNK (1u << 20)

/* The meta record (one slot): magic(4) version(4) seq(8) gen(8) start_gen(8) first_seg(8)
 * hs_found(1) snap_found(1) pad(6) hs term vote commit(24) snap index term(16) conf_len(4)
 * conf(152) ... crc32 at META_BYTES-4 over the bytes before it. */
typedef struct {
    uint64_t seq, gen, start_gen, first_seg;
    kyu_flog_hs_t hs;
    kyu_flog_snap_t snap;
} meta_t;

struct kyu_flog {
    char dir[4096];
    pthread_mutex_t lock;
    int dirfd, metafd;
    uint64_t seg_bytes;
    meta_t m;
    bool bumped;       /* the generation went up since the open (a write may use it) */
    char *corrupt;     /* why the log does not read (writes refused) */
    uint64_t *first;   /* first entry index of each live segment (0: none), first_seg on */
    size_t nseg;       /* live segments: first_seg .. first_seg + nseg - 1 (the tail) */
    int tail_fd;       /* -1 until the tail segment's file is ready */
    uint64_t pos;      /* where the next write goes in the tail (its END) */
    uint64_t lo, last; /* first and last entry on disk (0 when none) */
    uint64_t hi;       /* highest index handed to a write in this generation */
    char **spare;      /* recycled files (names in dir) */
    size_t nspare, capspare;
    uint8_t *hdrs; /* scratch: record headers of a write */
    size_t caphdrs;
    struct iovec *iov;
    size_t capiov;
    int fail_errno, fail_skip, fail_n;
    /* The spare maker: a thread that zero-fills the next segment ahead of need, so that a
     * roll renames a ready file instead of writing 16 MiB on the storage thread. Its fields
     * are under spare_lock (never taken while it writes). */
    pthread_t maker;
    bool maker_on, want, stop;
    pthread_mutex_t spare_lock;
    pthread_cond_t spare_cond;
    char ready[32]; /* a spare it made ("" when none) */
    unsigned made;
};

static void put64(uint8_t *p, uint64_t v)
{
    kyu_put_be64(p, v);
}

static uint64_t get64(const uint8_t *p)
{
    return kyu_get_be64(p);
}

static uint64_t tail_no(const kyu_flog_t *self)
{
    return self->m.first_seg + self->nseg - 1;
}

static kyu_code_t sys_err(kyu_err_t *err, const char *what, const char *path)
{
    return kyu_err_set(err, KYU_ERR_STORAGE, "%s %s: %s", what, path, strerror(errno));
}

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

static void seg_name(char *b, size_t cap, uint64_t no)
{
    snprintf(b, cap, "seg-%016" PRIx64, no);
}

/* ---- meta ---- */

static void meta_encode(const meta_t *m, uint8_t *b)
{
    memset(b, 0, META_BYTES);
    kyu_put_be32(b, META_MAGIC);
    kyu_put_be32(b + 4, 1);
    put64(b + 8, m->seq);
    put64(b + 16, m->gen);
    put64(b + 24, m->start_gen);
    put64(b + 32, m->first_seg);
    b[40] = m->hs.found;
    b[41] = m->snap.found;
    put64(b + 48, m->hs.term);
    put64(b + 56, m->hs.vote);
    put64(b + 64, m->hs.commit);
    put64(b + 72, m->snap.index);
    put64(b + 80, m->snap.term);
    kyu_put_be32(b + 88, (uint32_t)m->snap.conf_len);
    memcpy(b + 92, m->snap.conf, m->snap.conf_len);
    kyu_put_be32(b + META_BYTES - 4, (uint32_t)crc32(0, b, META_BYTES - 4));
}

static bool meta_decode(const uint8_t *b, meta_t *m)
{
    if (kyu_get_be32(b) != META_MAGIC || kyu_get_be32(b + 4) != 1 ||
        kyu_get_be32(b + META_BYTES - 4) != (uint32_t)crc32(0, b, META_BYTES - 4) ||
        kyu_get_be32(b + 88) > KYU_FLOG_CONF_MAX)
        return false;
    memset(m, 0, sizeof *m);
    m->seq = get64(b + 8);
    m->gen = get64(b + 16);
    m->start_gen = get64(b + 24);
    m->first_seg = get64(b + 32);
    m->hs = (kyu_flog_hs_t){b[40] != 0, get64(b + 48), get64(b + 56), get64(b + 64)};
    m->snap.found = b[41] != 0;
    m->snap.index = get64(b + 72);
    m->snap.term = get64(b + 80);
    m->snap.conf_len = kyu_get_be32(b + 88);
    memcpy(m->snap.conf, b + 92, m->snap.conf_len);
    return true;
}

/* Writes m (its seq and gen one past the current ones) into the slot not holding the current
 * meta, synced; only then is it the flog's. */
static kyu_code_t meta_write(kyu_flog_t *self, meta_t m, kyu_err_t *err)
{
    m.seq = self->m.seq + 1;
    m.gen = self->m.gen + 1;
    uint8_t b[META_BYTES];
    meta_encode(&m, b);
    if (pwrite(self->metafd, b, META_BYTES, (off_t)(m.seq % 2) * META_SLOT) != META_BYTES ||
        fdatasync(self->metafd) != 0)
        return sys_err(err, "writing the log's meta file in", self->dir);
    self->m = m;
    self->bumped = true;
    self->hi = 0;
    return KYU_OK;
}

/* ---- segment files ---- */

static void add_spare(kyu_flog_t *self, const char *name)
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

/* paced: the spare maker's way, a 1 MiB chunk synced at a time (the storage thread's
 * fdatasyncs do not queue behind 16 MiB of writeback), stopping when the flog closes. */
static kyu_code_t make_zero_file(kyu_flog_t *self, const char *name, bool paced, kyu_err_t *err)
{
    static const uint8_t zeros[ZERO_CHUNK];
    int fd = openat(self->dirfd, name, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return sys_err(err, "creating a log segment in", self->dir);
    for (uint64_t off = 0; off < self->seg_bytes;) {
        size_t n = self->seg_bytes - off < ZERO_CHUNK ? self->seg_bytes - off : ZERO_CHUNK;
        ssize_t w = pwrite(fd, zeros, n, (off_t)off);
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
            add_spare(self, self->ready);
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

/* ---- reading ---- */

typedef enum { REC_OK, REC_END, REC_STOP } rec_status_t;

typedef struct {
    int kind, type;
    uint64_t gen, index, term;
    const uint8_t *payload;
    size_t len;
} rec_t;

/* The record at off of segment no (mapped at p, size bytes), checked alone. */
static rec_status_t read_rec(const uint8_t *p, uint64_t size, uint64_t off, uint64_t no, rec_t *r)
{
    if (off + HDR > size)
        return REC_STOP;
    const uint8_t *h = p + off;
    uint32_t len = kyu_get_be32(h + 8);
    if ((h[4] != KYU_FLOG_ENTRY && h[4] != KYU_FLOG_HS && h[4] != KIND_END) ||
        len > size - off - HDR || get64(h + 16) != no)
        return REC_STOP;
    if (kyu_get_be32(h) != (uint32_t)crc32(0, h + 4, HDR - 4 + len))
        return REC_STOP;
    *r = (rec_t){h[4], h[5], get64(h + 24), get64(h + 32), get64(h + 40), h + HDR, len};
    return h[4] == KIND_END ? REC_END : REC_OK;
}

/* A walk over the live log, the same at open (to learn it) and at replay. */
typedef struct {
    uint64_t prev_gen, prev_index; /* prev_index 0: no entry yet */
    uint64_t tail, pos;            /* where the log ends */
    kyu_flog_hs_t hs;
    uint64_t *first;
    size_t nseg;
    uint64_t lo;
    char *corrupt;
    uint64_t from; /* replay: visit entries from here */
    kyu_flog_visit_fn visit;
    void *arg;
    kyu_err_t *err;
    kyu_code_t rc;
} walk_t;

/* Walks segment no; returns true when the log goes on into the next segment. */
static bool walk_segment(kyu_flog_t *self, uint64_t no, uint64_t limit, walk_t *w)
{
    char name[64];
    seg_name(name, sizeof name, no);
    int fd = openat(self->dirfd, name, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        if (fd >= 0)
            close(fd);
        return false;
    }
    uint64_t size = (uint64_t)st.st_size < limit ? (uint64_t)st.st_size : limit;
    const uint8_t *p = NULL;
    if (size > 0) {
        p = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED)
            p = NULL, size = 0;
    }
    close(fd);
    w->tail = no;
    w->pos = 0;
    w->first[w->nseg++] = 0;
    bool more = false;
    uint64_t off = 0;
    for (;;) {
        rec_t r;
        rec_status_t s = read_rec(p, size, off, no, &r);
        if (s == REC_STOP || r.gen < w->prev_gen)
            break;
        w->prev_gen = r.gen;
        if (s == REC_END) {
            more = true;
            break;
        }
        if (r.kind == KYU_FLOG_ENTRY) {
            if (w->prev_index && r.index != w->prev_index + 1) {
                w->corrupt = malloc(KYU_ERR_MSG_MAX);
                KYU_ASSERT(w->corrupt);
                snprintf(w->corrupt, KYU_ERR_MSG_MAX,
                         "the log is corrupt at index %llu (expected entry %llu, segment %llu "
                         "offset %llu): refusing to start",
                         (unsigned long long)r.index, (unsigned long long)(w->prev_index + 1),
                         (unsigned long long)no, (unsigned long long)off);
                break;
            }
            if (!w->first[w->nseg - 1])
                w->first[w->nseg - 1] = r.index;
            if (!w->lo)
                w->lo = r.index;
            w->prev_index = r.index;
            if (w->visit && r.index >= w->from && w->rc == KYU_OK)
                w->rc = w->visit(w->arg, r.index, r.term, r.type, r.payload, r.len, w->err);
        } else if (r.len == 24 && r.gen >= self->m.gen) {
            w->hs = (kyu_flog_hs_t){true, get64(r.payload), get64(r.payload + 8),
                                    get64(r.payload + 16)};
        }
        off += HDR + r.len;
        w->pos = off;
    }
    if (more)
        w->pos = off;
    if (p)
        munmap((void *)p, size);
    return more && !w->corrupt && w->rc == KYU_OK;
}

/* Walks the live log from the first segment (at most max_seg segments: replay stops at the
 * tail the open found). */
static void walk(kyu_flog_t *self, walk_t *w, size_t max_seg)
{
    w->prev_gen = self->m.start_gen;
    w->hs = self->m.hs;
    for (uint64_t no = self->m.first_seg; w->nseg < max_seg; no++)
        if (!walk_segment(self, no,
                          no == self->m.first_seg + max_seg - 1 && w->visit ? self->pos + HDR
                                                                            : UINT64_MAX,
                          w))
            break;
    if (w->nseg == 0) {
        w->tail = self->m.first_seg;
        w->pos = 0;
        w->first[w->nseg++] = 0;
    }
}

/* Learns the log at open: its tail, entries and hard state; files that are not live segments
 * become spares (old segments below the first, stale ones beyond the tail). */
static kyu_code_t learn(kyu_flog_t *self, kyu_err_t *err)
{
    DIR *d = opendir(self->dir);
    if (!d)
        return sys_err(err, "reading", self->dir);
    uint64_t max_no = 0;
    size_t n = 0;
    for (struct dirent *e = readdir(d); e; e = readdir(d)) {
        uint64_t no;
        char tail[8];
        if (sscanf(e->d_name, "seg-%" SCNx64 "%1s", &no, tail) == 1) {
            n++;
            if (no > max_no)
                max_no = no;
        } else if (strstr(e->d_name, ".tmp")) {
            unlinkat(self->dirfd, e->d_name, 0);
        } else if (strncmp(e->d_name, "spare-", 6) == 0) {
            add_spare(self, e->d_name);
            unsigned k = (unsigned)strtoul(e->d_name + 6, NULL, 10);
            if (k >= self->made)
                self->made = k + 1; /* the maker's next name is a new one */
        }
    }
    size_t cap = n + 2;
    walk_t w = {.first = calloc(cap, sizeof(uint64_t))};
    KYU_ASSERT(w.first);
    walk(self, &w, cap);
    self->first = w.first;
    self->nseg = w.nseg;
    self->pos = w.pos;
    self->m.hs = w.hs;
    self->lo = w.lo;
    self->last = w.prev_index;
    self->corrupt = w.corrupt;
    /* everything else is a spare */
    rewinddir(d);
    for (struct dirent *e = readdir(d); e; e = readdir(d)) {
        uint64_t no;
        char tail[8];
        if (sscanf(e->d_name, "seg-%" SCNx64 "%1s", &no, tail) == 1 &&
            (no < self->m.first_seg || no > tail_no(self)))
            add_spare(self, e->d_name);
    }
    closedir(d);
    (void)max_no;
    return KYU_OK;
}

kyu_flog_t *kyu_flog_open(const char *dir, uint64_t seg_bytes, kyu_err_t *err)
{
    kyu_flog_t *self = calloc(1, sizeof *self);
    KYU_ASSERT(self);
    KYU_ASSERT(pthread_mutex_init(&self->lock, NULL) == 0);
    KYU_ASSERT(pthread_mutex_init(&self->spare_lock, NULL) == 0);
    KYU_ASSERT(pthread_cond_init(&self->spare_cond, NULL) == 0);
    snprintf(self->dir, sizeof self->dir, "%s", dir);
    self->seg_bytes = seg_bytes ? seg_bytes : KYU_FLOG_SEGMENT_BYTES;
    self->dirfd = self->metafd = self->tail_fd = -1;
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        sys_err(err, "cannot create", dir);
        kyu_flog_close(&self);
        return NULL;
    }
    self->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (self->dirfd < 0) {
        sys_err(err, "cannot open", dir);
        kyu_flog_close(&self);
        return NULL;
    }
    self->metafd = openat(self->dirfd, "meta", O_RDWR | O_CLOEXEC);
    if (self->metafd < 0 && errno == ENOENT) {
        /* A new log: both slots written whole (the first valid), then named. */
        uint8_t b[2 * META_SLOT] = {0};
        meta_t m = {.seq = 1, .gen = 1, .start_gen = 1, .first_seg = 1};
        meta_encode(&m, b + META_SLOT);
        int fd = openat(self->dirfd, "meta.tmp", O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        bool ok = fd >= 0 && write(fd, b, sizeof b) == (ssize_t)sizeof b && fdatasync(fd) == 0 &&
                  renameat(self->dirfd, "meta.tmp", self->dirfd, "meta") == 0 &&
                  fsync(self->dirfd) == 0;
        if (fd >= 0)
            close(fd);
        if (!ok) {
            sys_err(err, "cannot create the log's meta file in", dir);
            kyu_flog_close(&self);
            return NULL;
        }
        self->metafd = openat(self->dirfd, "meta", O_RDWR | O_CLOEXEC);
    }
    uint8_t b[2 * META_SLOT];
    if (self->metafd < 0 || pread(self->metafd, b, sizeof b, 0) != (ssize_t)sizeof b) {
        sys_err(err, "cannot read the log's meta file in", dir);
        kyu_flog_close(&self);
        return NULL;
    }
    meta_t m0, m1;
    bool v0 = meta_decode(b, &m0), v1 = meta_decode(b + META_SLOT, &m1);
    if (!v0 && !v1) {
        kyu_err_set(err, KYU_ERR_STORAGE, "the log's meta file in %s is corrupt", dir);
        kyu_flog_close(&self);
        return NULL;
    }
    self->m = v0 && (!v1 || m0.seq > m1.seq) ? m0 : m1;
    if (learn(self, err) != KYU_OK) {
        kyu_flog_close(&self);
        return NULL;
    }
    return self;
}

void kyu_flog_close(kyu_flog_t **self_p)
{
    kyu_flog_t *self = *self_p;
    if (!self)
        return;
    if (self->maker_on) {
        KYU_ASSERT(pthread_mutex_lock(&self->spare_lock) == 0);
        self->stop = true;
        KYU_ASSERT(pthread_cond_signal(&self->spare_cond) == 0);
        KYU_ASSERT(pthread_mutex_unlock(&self->spare_lock) == 0);
        KYU_ASSERT(pthread_join(self->maker, NULL) == 0);
    }
    pthread_mutex_destroy(&self->spare_lock);
    pthread_cond_destroy(&self->spare_cond);
    if (self->tail_fd >= 0)
        close(self->tail_fd);
    if (self->metafd >= 0)
        close(self->metafd);
    if (self->dirfd >= 0)
        close(self->dirfd);
    for (size_t i = 0; i < self->nspare; i++)
        free(self->spare[i]);
    free(self->spare);
    free(self->first);
    free(self->corrupt);
    free(self->hdrs);
    free(self->iov);
    pthread_mutex_destroy(&self->lock);
    free(self);
    *self_p = NULL;
}

kyu_code_t kyu_flog_check(kyu_flog_t *self, kyu_err_t *err)
{
    KYU_ASSERT(pthread_mutex_lock(&self->lock) == 0);
    kyu_code_t rc = self->corrupt ? kyu_err_set(err, KYU_ERR_STORAGE, "%s", self->corrupt) : KYU_OK;
    KYU_ASSERT(pthread_mutex_unlock(&self->lock) == 0);
    return rc;
}

void kyu_flog_state(kyu_flog_t *self, kyu_flog_hs_t *hs, kyu_flog_snap_t *snap)
{
    KYU_ASSERT(pthread_mutex_lock(&self->lock) == 0);
    *hs = self->m.hs;
    *snap = self->m.snap;
    KYU_ASSERT(pthread_mutex_unlock(&self->lock) == 0);
}

void kyu_flog_range(kyu_flog_t *self, uint64_t *first, uint64_t *last)
{
    KYU_ASSERT(pthread_mutex_lock(&self->lock) == 0);
    uint64_t after = self->m.snap.found ? self->m.snap.index : 0;
    if (self->last <= after) {
        *first = *last = 0;
    } else {
        *first = self->lo > after ? self->lo : after + 1;
        *last = self->last;
    }
    KYU_ASSERT(pthread_mutex_unlock(&self->lock) == 0);
}

kyu_code_t kyu_flog_replay(kyu_flog_t *self, uint64_t from, kyu_flog_visit_fn visit, void *arg,
                           kyu_err_t *err)
{
    KYU_ASSERT(pthread_mutex_lock(&self->lock) == 0);
    kyu_code_t rc = KYU_OK;
    if (self->corrupt) {
        rc = kyu_err_set(err, KYU_ERR_STORAGE, "%s", self->corrupt);
    } else {
        walk_t w = {.first = calloc(self->nseg + 1, sizeof(uint64_t)),
                    .from = from,
                    .visit = visit,
                    .arg = arg,
                    .err = err};
        KYU_ASSERT(w.first);
        walk(self, &w, self->nseg);
        rc = w.rc;
        if (rc == KYU_OK && (w.corrupt || w.prev_index != self->last))
            rc = kyu_err_set(err, KYU_ERR_STORAGE,
                             "the log changed while it was read (ends at %llu, not %llu)",
                             (unsigned long long)w.prev_index, (unsigned long long)self->last);
        free(w.corrupt);
        free(w.first);
    }
    KYU_ASSERT(pthread_mutex_unlock(&self->lock) == 0);
    return rc;
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

static kyu_code_t write_recs(kyu_flog_t *self, const kyu_flog_rec_t *recs, size_t n, kyu_err_t *err)
{
    if (prepare(self, err) != KYU_OK)
        return KYU_ERR_STORAGE;
    if (!self->bumped) {
        /* The first write since the open: records past the tail a crash left behind have
         * the old generation. */
        if (meta_write(self, self->m, err) != KYU_OK)
            return KYU_ERR_STORAGE;
    }
    uint64_t size = HDR;
    for (size_t i = 0; i < n; i++)
        size += HDR + (recs[i].kind == KYU_FLOG_HS ? 24 : recs[i].len);
    if (self->pos > 0 && self->pos + size > self->seg_bytes && roll(self, err) != KYU_OK)
        return KYU_ERR_STORAGE;
    if (self->caphdrs < (n + 1) * (HDR + 24)) {
        self->caphdrs = 2 * (n + 1) * (HDR + 24);
        self->hdrs = realloc(self->hdrs, self->caphdrs);
        KYU_ASSERT(self->hdrs);
    }
    if (self->capiov < 2 * n + 1) {
        self->capiov = 2 * (2 * n + 1);
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
    kyu_code_t rc = write_recs(self, recs, n, err);
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
    if (meta_write(self, self->m, err) != KYU_OK)
        return KYU_ERR_STORAGE;
    if (seg != self->nseg - 1) {
        char name[64];
        for (size_t i = seg + 1; i < self->nseg; i++) {
            seg_name(name, sizeof name, self->m.first_seg + i);
            add_spare(self, name);
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
    kyu_code_t rc = meta_write(self, m, err);
    if (rc == KYU_OK && keep > 0) {
        char name[64];
        for (size_t i = 0; i < keep; i++) {
            seg_name(name, sizeof name, m.first_seg - keep + i);
            add_spare(self, name);
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
    if (meta_write(self, m, err) != KYU_OK) {
        close(fd);
        return KYU_ERR_STORAGE;
    }
    char name[64];
    for (size_t i = 0; i + 1 < self->nseg + 1; i++) {
        seg_name(name, sizeof name, no - self->nseg + i);
        if (faccessat(self->dirfd, name, F_OK, 0) == 0)
            add_spare(self, name);
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

void kyu_flog_fail_next(kyu_flog_t *self, int e, int skip, int n)
{
    KYU_ASSERT(pthread_mutex_lock(&self->lock) == 0);
    self->fail_errno = e;
    self->fail_skip = skip;
    self->fail_n = n;
    KYU_ASSERT(pthread_mutex_unlock(&self->lock) == 0);
}
