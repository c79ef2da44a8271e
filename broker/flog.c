/* flog.c: opening and reading the segment log (flog.h): the meta file, the walk over the
 * records at open and at replay. Writing is in flog_write.c. */
#include "flog_internal.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* ---- meta ---- */

void kyu_flog_meta_encode(const meta_t *m, uint8_t *b)
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
            kyu_flog_add_spare(self, e->d_name);
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
            kyu_flog_add_spare(self, e->d_name);
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
        kyu_flog_meta_encode(&m, b + META_SLOT);
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
    kyu_flog_maker_stop(self);
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

void kyu_flog_fail_next(kyu_flog_t *self, int e, int skip, int n)
{
    KYU_ASSERT(pthread_mutex_lock(&self->lock) == 0);
    self->fail_errno = e;
    self->fail_skip = skip;
    self->fail_n = n;
    KYU_ASSERT(pthread_mutex_unlock(&self->lock) == 0);
}
