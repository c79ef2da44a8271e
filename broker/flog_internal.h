/* flog_internal.h: what broker/flog.c (opening and reading the log) and flog_write.c
 * (writing it, its segment files and their spare maker) share. Not for other modules. */
#ifndef KYU_FLOG_INTERNAL_H
#define KYU_FLOG_INTERNAL_H

#include "flog.h"
#include "store.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>

#define HDR 48
#define KIND_END 3
#define META_SLOT 4096
#define META_BYTES 512
#define META_MAGIC 0x4b59554cu /* "KYUL" */
#define ZERO_CHUNK (1u << 20)
#define PAGE 4096u /* the page cache's and O_DIRECT's unit */

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

static inline void put64(uint8_t *p, uint64_t v)
{
    kyu_put_be64(p, v);
}

static inline uint64_t get64(const uint8_t *p)
{
    return kyu_get_be64(p);
}

static inline uint64_t tail_no(const kyu_flog_t *self)
{
    return self->m.first_seg + self->nseg - 1;
}

static inline kyu_code_t sys_err(kyu_err_t *err, const char *what, const char *path)
{
    return kyu_err_set(err, KYU_ERR_STORAGE, "%s %s: %s", what, path, strerror(errno));
}

static inline void seg_name(char *b, size_t cap, uint64_t no)
{
    snprintf(b, cap, "seg-%016" PRIx64, no);
}

/* flog.c */
void kyu_flog_meta_encode(const meta_t *m, uint8_t *b);
/* flog_write.c */
kyu_code_t kyu_flog_meta_write(kyu_flog_t *self, meta_t m, kyu_err_t *err);
void kyu_flog_add_spare(kyu_flog_t *self, const char *name);
/* Stops the spare maker (at close). */
void kyu_flog_maker_stop(kyu_flog_t *self);

#endif
