#include "snapshot.h"

#include "snap_codec.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHECKPOINTS_KEPT 2
#define PATH_MAX_KYU 4400

struct kyu_snapshot {
    zactor_t *server;
    zactor_t *installer;
};

/* ---- the server thread ---- */

typedef struct {
    uint64_t session;
    char path[PATH_MAX_KYU];
    kyu_snap_file_t *files;
    size_t n;
} checkpoint_t;

typedef struct {
    kyu_store_t *store;
    uint64_t self_id;
    char root[PATH_MAX_KYU - 64];
    checkpoint_t ck[CHECKPOINTS_KEPT];
    size_t next_slot;
    uint64_t next_session;
} server_t;

static void checkpoint_drop(checkpoint_t *c)
{
    if (c->session)
        kyu_store_remove_tree(c->path);
    free(c->files);
    memset(c, 0, sizeof *c);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const kyu_snap_file_t *)a)->name, ((const kyu_snap_file_t *)b)->name);
}

/* Lists the regular files of a checkpoint directory, in name order. */
static bool list_files(checkpoint_t *c, char *why, size_t cap)
{
    DIR *d = opendir(c->path);
    if (!d) {
        snprintf(why, cap, "cannot list the checkpoint: %.150s", strerror(errno));
        return false;
    }
    size_t cap_files = 64;
    c->files = calloc(cap_files, sizeof *c->files);
    bool ok = c->files != NULL;
    for (struct dirent *e = readdir(d); ok && e; e = readdir(d)) {
        char path[PATH_MAX_KYU + 300];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", c->path, e->d_name);
        if (!kyu_snap_name_ok(e->d_name) || stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (c->n == KYU_SNAP_FILES_MAX) {
            ok = false;
            break;
        }
        if (c->n == cap_files) {
            cap_files *= 2;
            kyu_snap_file_t *f = realloc(c->files, cap_files * sizeof *f);
            if (!f) {
                ok = false;
                break;
            }
            c->files = f;
        }
        snprintf(c->files[c->n].name, sizeof c->files[c->n].name, "%s", e->d_name);
        c->files[c->n++].size = (uint64_t)st.st_size;
    }
    closedir(d);
    if (!ok) {
        snprintf(why, cap, "the checkpoint has too many files or memory ran out");
        return false;
    }
    qsort(c->files, c->n, sizeof *c->files, by_name);
    return true;
}

/* A new checkpoint of the state database, in the oldest slot. */
static checkpoint_t *checkpoint_new(server_t *s, char *why, size_t cap)
{
    checkpoint_t *c = &s->ck[s->next_slot];
    s->next_slot = (s->next_slot + 1) % CHECKPOINTS_KEPT;
    checkpoint_drop(c);
    c->session = ++s->next_session;
    snprintf(c->path, sizeof c->path, "%s/%llu", s->root, (unsigned long long)c->session);
    mkdir(s->root, 0755);
    char *rerr = NULL;
    /* NULL after a snapshot install that could not reopen the state (store.h); the event loop
     * replaces it only while this thread is paused. */
    rocksdb_t *db = kyu_store_db(s->store, KYU_CF_META);
    if (!db) {
        snprintf(why, cap, "this node's state database is not open");
        checkpoint_drop(c);
        return NULL;
    }
    rocksdb_checkpoint_t *cp = rocksdb_checkpoint_object_create(db, &rerr);
    /* 0: flush the memtables first, so the checkpoint is tables (hard links) and little WAL. */
    if (!rerr)
        rocksdb_checkpoint_create(cp, c->path, 0, &rerr);
    if (cp)
        rocksdb_checkpoint_object_destroy(cp);
    if (rerr) {
        snprintf(why, cap, "cannot take a checkpoint: %.150s", rerr);
        free(rerr);
        checkpoint_drop(c);
        return NULL;
    }
    if (!list_files(c, why, cap)) {
        checkpoint_drop(c);
        return NULL;
    }
    return c;
}

static checkpoint_t *checkpoint_find(server_t *s, uint64_t session)
{
    for (size_t i = 0; i < CHECKPOINTS_KEPT; i++)
        if (session && s->ck[i].session == session)
            return &s->ck[i];
    return NULL;
}

/* Reads one chunk of a checkpoint file into buf; the length read, or -1 with why. */
static ssize_t read_chunk(const checkpoint_t *c, const kyu_snap_msg_t *req, uint8_t *buf, char *why,
                          size_t cap)
{
    if (req->file < 1 || req->file > c->n) {
        snprintf(why, cap, "no file %u in session %llu", req->file, (unsigned long long)c->session);
        return -1;
    }
    const kyu_snap_file_t *f = &c->files[req->file - 1];
    if (req->offset > f->size) {
        snprintf(why, cap, "offset %llu is past the end of %.150s", (unsigned long long)req->offset,
                 f->name);
        return -1;
    }
    uint64_t want = f->size - req->offset;
    if (want > KYU_SNAP_CHUNK_BYTES)
        want = KYU_SNAP_CHUNK_BYTES;
    char path[PATH_MAX_KYU + 300];
    snprintf(path, sizeof path, "%s/%s", c->path, f->name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t got = fd < 0 ? -1 : pread(fd, buf, want, (off_t)req->offset);
    if (fd >= 0)
        close(fd);
    if (got != (ssize_t)want) {
        snprintf(why, cap, "cannot read %.150s of the checkpoint", f->name);
        return -1;
    }
    return got;
}

/* Answers one FETCH into out. */
static void serve_one(server_t *s, const void *buf, size_t len, uint64_t applied,
                      msgpack_sbuffer *out, uint8_t *chunk)
{
    kyu_snap_msg_t req, rep;
    kyu_err_t err;
    memset(&rep, 0, sizeof rep);
    if (kyu_snap_decode(buf, len, &req, &err) != KYU_OK || req.kind != KYU_SNAP_FETCH ||
        req.to != s->self_id) {
        kyu_snap_reset(&req);
        return; /* not a request to this node: dropped */
    }
    rep = (kyu_snap_msg_t){.kind = KYU_SNAP_REFUSE,
                           .from = s->self_id,
                           .to = req.from,
                           .session = req.session,
                           .min_index = req.min_index,
                           .file = req.file,
                           .offset = req.offset};
    if (req.file == 0) {
        checkpoint_t *c = NULL;
        if (applied < req.min_index)
            snprintf(rep.reason, sizeof rep.reason,
                     "this node has applied up to %llu, not %llu yet", (unsigned long long)applied,
                     (unsigned long long)req.min_index);
        else if ((c = checkpoint_new(s, rep.reason, sizeof rep.reason)) != NULL) {
            rep.kind = KYU_SNAP_MANIFEST;
            rep.session = c->session;
            rep.files = c->files;
            rep.n_files = c->n;
        }
    } else {
        const checkpoint_t *c = checkpoint_find(s, req.session);
        ssize_t got = -1;
        if (!c)
            snprintf(rep.reason, sizeof rep.reason, "snapshot session %llu is gone; start over",
                     (unsigned long long)req.session);
        else if ((got = read_chunk(c, &req, chunk, rep.reason, sizeof rep.reason)) >= 0) {
            rep.kind = KYU_SNAP_CHUNK;
            rep.data = chunk;
            rep.len = (size_t)got;
        }
    }
    kyu_snap_encode(&rep, out);
    kyu_snap_reset(&req);
}

static void server_actor(zsock_t *pipe, void *arg)
{
    server_t *s = arg;
    msgpack_sbuffer out;
    msgpack_sbuffer_init(&out);
    uint8_t *chunk = malloc(KYU_SNAP_CHUNK_BYTES);
    KYU_ASSERT(chunk);
    bool paused = false;
    zsock_signal(pipe, 0);
    while (true) {
        zmsg_t *m = zmsg_recv(pipe);
        if (!m)
            break;
        char *cmd = zmsg_popstr(m);
        bool stop = !cmd || streq(cmd, "$TERM");
        if (cmd && streq(cmd, "PAUSE")) {
            paused = true;
            zsock_signal(pipe, 0);
        } else if (cmd && streq(cmd, "RESUME")) {
            paused = false;
        } else if (cmd && streq(cmd, "FETCH") && !paused && zmsg_size(m) == 3) {
            zframe_t *routing = zmsg_pop(m), *req = zmsg_pop(m), *ap = zmsg_pop(m);
            if (zframe_size(ap) == 8) {
                msgpack_sbuffer_clear(&out);
                serve_one(s, zframe_data(req), zframe_size(req), kyu_get_be64(zframe_data(ap)),
                          &out, chunk);
                if (out.size)
                    zsock_send(pipe, "sfb", "REPLY", routing, out.data, out.size);
            }
            zframe_destroy(&routing);
            zframe_destroy(&req);
            zframe_destroy(&ap);
        }
        free(cmd);
        zmsg_destroy(&m);
        if (stop)
            break;
    }
    for (size_t i = 0; i < CHECKPOINTS_KEPT; i++)
        checkpoint_drop(&s->ck[i]);
    kyu_store_remove_tree(s->root);
    msgpack_sbuffer_destroy(&out);
    free(chunk);
    free(s);
}

/* ---- the installer thread ---- */

typedef struct {
    char dir[PATH_MAX_KYU];
    uint64_t self_id;
    int64_t max_msg;
} installer_t;

typedef struct {
    installer_t *in;
    zsock_t *pipe, *dealer;
    uint64_t server, min_index, session;
    msgpack_sbuffer buf;
    bool stopped; /* $TERM came while waiting */
} fetch_t;

/* Sends one FETCH and waits for its answer (a frame from the server about the same file and
 * offset; stale answers of earlier requests are skipped). */
static bool fetch(fetch_t *f, uint32_t file, uint64_t offset, int wait_ms, kyu_snap_msg_t *rep,
                  char *why, size_t cap)
{
    kyu_snap_msg_t req = {.kind = KYU_SNAP_FETCH,
                          .from = f->in->self_id,
                          .to = f->server,
                          .session = f->session,
                          .min_index = f->min_index,
                          .file = file,
                          .offset = offset};
    msgpack_sbuffer_clear(&f->buf);
    kyu_snap_encode(&req, &f->buf);
    if (zmq_send(zsock_resolve(f->dealer), f->buf.data, f->buf.size, 0) < 0) {
        snprintf(why, cap, "cannot send to member %llu", (unsigned long long)f->server);
        return false;
    }
    zpoller_t *poller = zpoller_new(f->pipe, f->dealer, NULL);
    int64_t deadline = zclock_mono() + wait_ms;
    bool ok = false;
    while (!ok) {
        int64_t left = deadline - zclock_mono();
        void *which = left > 0 ? zpoller_wait(poller, (int)left) : NULL;
        if (which == f->pipe) {
            f->stopped = true;
            snprintf(why, cap, "the broker is stopping");
            break;
        }
        if (!which) {
            snprintf(why, cap, "member %llu did not answer in %d ms", (unsigned long long)f->server,
                     wait_ms);
            break;
        }
        zframe_t *fr = zframe_recv(f->dealer);
        kyu_err_t err;
        if (!fr || kyu_snap_decode(zframe_data(fr), zframe_size(fr), rep, &err) != KYU_OK ||
            rep->from != f->server || rep->to != f->in->self_id || rep->file != file ||
            rep->offset != offset || (file > 0 && rep->session != f->session)) {
            kyu_snap_reset(rep);
            zframe_destroy(&fr);
            continue;
        }
        /* rep's chunk points into the frame: keep the frame with it. */
        if (rep->kind == KYU_SNAP_REFUSE) {
            snprintf(why, cap, "member %llu refused: %.150s", (unsigned long long)f->server,
                     rep->reason);
            kyu_snap_reset(rep);
            zframe_destroy(&fr);
            break;
        }
        if ((file == 0) != (rep->kind == KYU_SNAP_MANIFEST)) {
            kyu_snap_reset(rep);
            zframe_destroy(&fr);
            continue;
        }
        if (rep->kind == KYU_SNAP_CHUNK) {
            /* copy out of the frame before it goes */
            uint8_t *copy = rep->len ? malloc(rep->len) : NULL;
            if (rep->len && !copy) {
                snprintf(why, cap, "out of memory");
                kyu_snap_reset(rep);
                zframe_destroy(&fr);
                break;
            }
            if (rep->len)
                memcpy(copy, rep->data, rep->len);
            rep->data = copy;
        }
        zframe_destroy(&fr);
        ok = true;
    }
    zpoller_destroy(&poller);
    return ok;
}

static bool write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

/* Fetches one file of the manifest into the incoming directory and syncs it. */
static bool fetch_file(fetch_t *f, const char *incoming, uint32_t index,
                       const kyu_snap_file_t *file, char *why, size_t cap)
{
    char path[PATH_MAX_KYU + 300];
    snprintf(path, sizeof path, "%s/%s", incoming, file->name);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(why, cap, "cannot create %.120s: %.80s", path, strerror(errno));
        return false;
    }
    bool ok = true;
    uint64_t offset = 0;
    while (ok && offset < file->size) {
        kyu_snap_msg_t rep;
        ok = fetch(f, index, offset, KYU_SNAP_CHUNK_WAIT_MS, &rep, why, cap);
        if (!ok)
            break;
        if (rep.len == 0 || offset + rep.len > file->size) {
            snprintf(why, cap, "member %llu sent a chunk that does not fit %.150s",
                     (unsigned long long)f->server, file->name);
            ok = false;
        } else if (!write_all(fd, rep.data, rep.len)) {
            snprintf(why, cap, "cannot write %.120s: %.80s", path, strerror(errno));
            ok = false;
        }
        offset += rep.len;
        free((void *)rep.data);
        rep.data = NULL;
        kyu_snap_reset(&rep);
    }
    if (ok && fsync(fd) != 0) {
        snprintf(why, cap, "cannot sync %.120s: %.80s", path, strerror(errno));
        ok = false;
    }
    close(fd);
    return ok;
}

static bool install(fetch_t *f, const char *endpoint, char *why, size_t cap)
{
    char incoming[PATH_MAX_KYU + 20];
    snprintf(incoming, sizeof incoming, "%s/state.incoming", f->in->dir);
    kyu_store_remove_tree(incoming);
    if (mkdir(incoming, 0755) != 0) {
        snprintf(why, cap, "cannot create %.120s: %.80s", incoming, strerror(errno));
        return false;
    }
    f->dealer = zsock_new(ZMQ_DEALER);
    if (!f->dealer) {
        snprintf(why, cap, "cannot create a socket");
        return false;
    }
    zsock_set_maxmsgsize(f->dealer, f->in->max_msg);
    zsock_set_linger(f->dealer, 0);
    zsock_set_sndtimeo(f->dealer, 1000);
    zsock_set_handshake_ivl(f->dealer, 2000);
    if (zsock_connect(f->dealer, "%s", endpoint) < 0) {
        snprintf(why, cap, "cannot connect to %.150s", endpoint);
        return false;
    }
    kyu_snap_msg_t man;
    if (!fetch(f, 0, 0, KYU_SNAP_MANIFEST_WAIT_MS, &man, why, cap))
        return false;
    f->session = man.session;
    bool ok = true;
    for (size_t i = 0; ok && i < man.n_files; i++)
        ok = fetch_file(f, incoming, (uint32_t)(i + 1), &man.files[i], why, cap);
    kyu_snap_reset(&man);
    kyu_err_t err;
    if (ok && kyu_store_fsync_path(incoming, &err) != KYU_OK) {
        snprintf(why, cap, "%.150s", err.msg);
        ok = false;
    }
    return ok;
}

static void installer_actor(zsock_t *pipe, void *arg)
{
    installer_t *in = arg;
    zsock_signal(pipe, 0);
    while (true) {
        char *cmd = NULL, *endpoint = NULL;
        zframe_t *fs = NULL, *fm = NULL;
        if (zsock_recv(pipe, "ssff", &cmd, &endpoint, &fs, &fm) != 0 || !cmd ||
            streq(cmd, "$TERM")) {
            free(cmd);
            free(endpoint);
            zframe_destroy(&fs);
            zframe_destroy(&fm);
            break;
        }
        fetch_t f = {.in = in, .pipe = pipe};
        msgpack_sbuffer_init(&f.buf);
        char why[KYU_ERR_MSG_MAX] = "";
        bool ok = false;
        if (streq(cmd, "INSTALL") && endpoint && fs && fm && zframe_size(fs) == 8 &&
            zframe_size(fm) == 8) {
            f.server = kyu_get_be64(zframe_data(fs));
            f.min_index = kyu_get_be64(zframe_data(fm));
            ok = install(&f, endpoint, why, sizeof why);
        }
        zsock_destroy(&f.dealer);
        msgpack_sbuffer_destroy(&f.buf);
        free(cmd);
        free(endpoint);
        zframe_destroy(&fs);
        zframe_destroy(&fm);
        if (f.stopped)
            break;
        zsock_send(pipe, "ss", ok ? "DONE" : "FAILED", why);
    }
    free(in);
}

/* ---- the loop's side ---- */

kyu_snapshot_t *kyu_snapshot_new(kyu_store_t *store, uint64_t self_id, int64_t max_msg,
                                 kyu_err_t *err)
{
    kyu_snapshot_t *self = calloc(1, sizeof *self);
    server_t *s = calloc(1, sizeof *s);
    installer_t *in = calloc(1, sizeof *in);
    if (!self || !s || !in) {
        free(self);
        free(s);
        free(in);
        kyu_err_set(err, KYU_ERR_INTERNAL, "out of memory");
        return NULL;
    }
    s->store = store;
    s->self_id = self_id;
    snprintf(s->root, sizeof s->root, "%s/snapshots", kyu_store_dir(store));
    kyu_store_remove_tree(s->root);
    /* Sessions of an earlier run must not match this run's. */
    uint32_t r = 0;
    if (getrandom(&r, sizeof r, 0) != sizeof r)
        r = (uint32_t)zclock_time();
    s->next_session = (uint64_t)r << 16;
    snprintf(in->dir, sizeof in->dir, "%s", kyu_store_dir(store));
    in->self_id = self_id;
    in->max_msg = max_msg;
    self->server = zactor_new(server_actor, s);
    if (!self->server)
        free(s);
    self->installer = self->server ? zactor_new(installer_actor, in) : NULL;
    if (!self->installer)
        free(in);
    if (!self->server || !self->installer) {
        kyu_snapshot_destroy(&self);
        kyu_err_set(err, KYU_ERR_INTERNAL, "cannot start the snapshot threads");
        return NULL;
    }
    return self;
}

void kyu_snapshot_destroy(kyu_snapshot_t **self_p)
{
    kyu_snapshot_t *self = *self_p;
    if (!self)
        return;
    zactor_destroy(&self->installer);
    zactor_destroy(&self->server);
    free(self);
    *self_p = NULL;
}

void kyu_snapshot_serve(kyu_snapshot_t *self, const zframe_t *routing, const void *req, size_t len,
                        uint64_t applied)
{
    uint8_t a[8];
    kyu_put_be64(a, applied);
    zframe_t *r = zframe_dup((zframe_t *)routing);
    /* The server thread reads every message the loop sends it; the pipe's default high-water
     * mark bounds what waits. A full pipe drops the request: the installer asks again. */
    zmsg_t *m = zmsg_new();
    zmsg_addstr(m, "FETCH");
    zmsg_append(m, &r);
    zmsg_addmem(m, req, len);
    zmsg_addmem(m, a, 8);
    zsock_set_sndtimeo(zactor_sock(self->server), 0);
    if (zmsg_send(&m, zactor_sock(self->server)) != 0)
        zmsg_destroy(&m);
}

zsock_t *kyu_snapshot_server_sock(kyu_snapshot_t *self)
{
    return zactor_sock(self->server);
}

kyu_code_t kyu_snapshot_server_recv(kyu_snapshot_t *self, zframe_t **routing, zframe_t **reply,
                                    kyu_err_t *err)
{
    char *kind = NULL;
    *routing = *reply = NULL;
    if (zsock_recv(zactor_sock(self->server), "sff", &kind, routing, reply) != 0 || !kind ||
        !streq(kind, "REPLY") || !*routing || !*reply) {
        free(kind);
        zframe_destroy(routing);
        zframe_destroy(reply);
        return kyu_err_set(err, KYU_ERR_INTERNAL, "bad message from the snapshot server thread");
    }
    free(kind);
    return KYU_OK;
}

void kyu_snapshot_pause(kyu_snapshot_t *self)
{
    zsock_set_sndtimeo(zactor_sock(self->server), -1);
    zstr_send(zactor_sock(self->server), "PAUSE");
    /* Replies queued before the PAUSE are read until its signal. */
    while (true) {
        zmsg_t *m = zmsg_recv(zactor_sock(self->server));
        if (!m || zmsg_signal(m) >= 0) {
            zmsg_destroy(&m);
            break;
        }
        zmsg_destroy(&m); /* a reply the loop no longer sends: the installer asks again */
    }
}

void kyu_snapshot_resume(kyu_snapshot_t *self)
{
    zstr_send(zactor_sock(self->server), "RESUME");
}

void kyu_snapshot_install(kyu_snapshot_t *self, uint64_t server_id, const char *endpoint,
                          uint64_t min_index)
{
    uint8_t s[8], m[8];
    kyu_put_be64(s, server_id);
    kyu_put_be64(m, min_index);
    zsock_send(zactor_sock(self->installer), "ssbb", "INSTALL", endpoint, s, (size_t)8, m,
               (size_t)8);
}

zsock_t *kyu_snapshot_install_sock(kyu_snapshot_t *self)
{
    return zactor_sock(self->installer);
}

kyu_code_t kyu_snapshot_install_recv(kyu_snapshot_t *self, bool *ok, char *why, size_t cap,
                                     kyu_err_t *err)
{
    char *kind = NULL, *text = NULL;
    if (zsock_recv(zactor_sock(self->installer), "ss", &kind, &text) != 0 || !kind) {
        free(kind);
        free(text);
        return kyu_err_set(err, KYU_ERR_INTERNAL, "bad message from the snapshot installer");
    }
    *ok = streq(kind, "DONE");
    snprintf(why, cap, "%.150s", text ? text : "");
    free(kind);
    free(text);
    return KYU_OK;
}
