/* Snapshot install, the parts below the network (broker/snap_codec.c, store.c,
 * replica_boot.c): the transfer frames round-trip and refuse anything malformed or unsafe
 * (a file name that leaves the directory); the store swaps in a fetched state and finishes
 * or undoes a swap a crash interrupted; and a node whose state is a snapshot its log does not
 * lead to starts with the log reset to that state. */
#include "fixture.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"
#include "peer_codec.h"
#include "replica_internal.h"
#include "snap_codec.h"

/* ---- frames ---- */

/* The decoded message points into the frame: sb stays until the caller is done with out. */
static msgpack_sbuffer sb;

static kyu_code_t roundtrip(const kyu_snap_msg_t *m, kyu_snap_msg_t *out)
{
    msgpack_sbuffer_destroy(&sb);
    msgpack_sbuffer_init(&sb);
    kyu_snap_encode(m, &sb);
    assert_true(kyu_snap_is_frame(sb.data, sb.size));
    kyu_err_t err = {0};
    kyu_code_t rc = kyu_snap_decode(sb.data, sb.size, out, &err);
    /* Every cut of a valid frame is refused cleanly. */
    for (size_t cut = 0; cut < sb.size; cut++) {
        kyu_snap_msg_t part;
        assert_int_not_equal(kyu_snap_decode(sb.data, cut, &part, &err), KYU_OK);
        kyu_snap_reset(&part);
    }
    return rc;
}

static void test_frames_round_trip(void **state)
{
    (void)state;
    kyu_snap_msg_t fetch = {.kind = KYU_SNAP_FETCH,
                            .from = 2,
                            .to = 1,
                            .session = 77,
                            .min_index = 1234,
                            .file = 3,
                            .offset = 1 << 20};
    kyu_snap_msg_t out;
    assert_int_equal(roundtrip(&fetch, &out), KYU_OK);
    assert_int_equal(out.kind, KYU_SNAP_FETCH);
    assert_int_equal(out.from, 2);
    assert_int_equal(out.to, 1);
    assert_int_equal(out.session, 77);
    assert_int_equal(out.min_index, 1234);
    assert_int_equal(out.file, 3);
    assert_int_equal(out.offset, 1 << 20);
    kyu_snap_reset(&out);

    kyu_snap_file_t files[2] = {{"CURRENT", 16}, {"000012.sst", 5000000}};
    kyu_snap_msg_t manifest = {.kind = KYU_SNAP_MANIFEST, .files = files, .n_files = 2};
    assert_int_equal(roundtrip(&manifest, &out), KYU_OK);
    assert_int_equal(out.n_files, 2);
    assert_string_equal(out.files[1].name, "000012.sst");
    assert_int_equal(out.files[1].size, 5000000);
    kyu_snap_reset(&out);

    const uint8_t bytes[] = {0, 1, 2, 0xff};
    kyu_snap_msg_t chunk = {.kind = KYU_SNAP_CHUNK, .file = 1, .data = bytes, .len = 4};
    assert_int_equal(roundtrip(&chunk, &out), KYU_OK);
    assert_int_equal(out.len, 4);
    assert_memory_equal(out.data, bytes, 4);
    kyu_snap_reset(&out);

    kyu_snap_msg_t refuse = {.kind = KYU_SNAP_REFUSE};
    snprintf(refuse.reason, sizeof refuse.reason, "state at 5 is behind 9");
    assert_int_equal(roundtrip(&refuse, &out), KYU_OK);
    assert_string_equal(out.reason, "state at 5 is behind 9");
    kyu_snap_reset(&out);
    msgpack_sbuffer_destroy(&sb);
}

/* A frame built by hand: [format, kind, from, to, session, min, file, offset] + payload. */
static void pack_header(msgpack_packer *pk, uint64_t format, uint64_t kind, uint64_t file)
{
    msgpack_pack_array(pk, 9);
    msgpack_pack_uint64(pk, format);
    msgpack_pack_uint64(pk, kind);
    for (int i = 0; i < 4; i++)
        msgpack_pack_uint64(pk, 1);
    msgpack_pack_uint64(pk, file);
    msgpack_pack_uint64(pk, 0);
}

static kyu_code_t decode_manifest_of(const char *name)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    pack_header(&pk, KYU_SNAP_FORMAT, KYU_SNAP_MANIFEST, 0);
    msgpack_pack_array(&pk, 1);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_str_with_body(&pk, name, strlen(name));
    msgpack_pack_uint64(&pk, 1);
    kyu_snap_msg_t out;
    kyu_err_t err = {0};
    kyu_code_t rc = kyu_snap_decode(sb.data, sb.size, &out, &err);
    kyu_snap_reset(&out);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

static void test_unsafe_file_names_are_refused(void **state)
{
    (void)state;
    assert_int_equal(decode_manifest_of("000012.sst"), KYU_OK);
    assert_int_equal(decode_manifest_of(".."), KYU_ERR_MALFORMED);
    assert_int_equal(decode_manifest_of("."), KYU_ERR_MALFORMED);
    assert_int_equal(decode_manifest_of(""), KYU_ERR_MALFORMED);
    assert_int_equal(decode_manifest_of("../log/CURRENT"), KYU_ERR_MALFORMED);
    assert_int_equal(decode_manifest_of("/etc/passwd"), KYU_ERR_MALFORMED);
    char longname[KYU_SNAP_NAME_MAX + 2];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    assert_int_equal(decode_manifest_of(longname), KYU_ERR_MALFORMED);
}

static kyu_code_t decode_built(uint64_t format, uint64_t kind, uint64_t file, int payload)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    pack_header(&pk, format, kind, file);
    if (payload == 0)
        msgpack_pack_nil(&pk);
    else if (payload == 1)
        msgpack_pack_str_with_body(&pk, "x", 1);
    else {
        /* a chunk one byte over the limit */
        size_t n = KYU_SNAP_CHUNK_BYTES + 1;
        uint8_t *big = calloc(1, n);
        msgpack_pack_bin_with_body(&pk, big, n);
        free(big);
    }
    kyu_snap_msg_t out;
    kyu_err_t err = {0};
    kyu_code_t rc = kyu_snap_decode(sb.data, sb.size, &out, &err);
    kyu_snap_reset(&out);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

static void test_malformed_frames_are_refused(void **state)
{
    (void)state;
    assert_int_equal(decode_built(KYU_SNAP_FORMAT, KYU_SNAP_FETCH, 0, 0), KYU_OK);
    assert_int_equal(decode_built(1, KYU_SNAP_FETCH, 0, 0), KYU_ERR_MALFORMED);
    assert_int_equal(decode_built(KYU_SNAP_FORMAT, 0, 0, 0), KYU_ERR_MALFORMED);
    assert_int_equal(decode_built(KYU_SNAP_FORMAT, 5, 0, 0), KYU_ERR_MALFORMED);
    assert_int_equal(decode_built(KYU_SNAP_FORMAT, KYU_SNAP_FETCH, 0, 1), KYU_ERR_MALFORMED);
    assert_int_equal(decode_built(KYU_SNAP_FORMAT, KYU_SNAP_FETCH, KYU_SNAP_FILES_MAX + 1, 0),
                     KYU_ERR_MALFORMED);
    assert_int_equal(decode_built(KYU_SNAP_FORMAT, KYU_SNAP_CHUNK, 1, 1), KYU_ERR_MALFORMED);
    assert_int_equal(decode_built(KYU_SNAP_FORMAT, KYU_SNAP_CHUNK, 1, 2), KYU_ERR_MALFORMED);
    assert_int_equal(decode_built(KYU_SNAP_FORMAT, KYU_SNAP_MANIFEST, 0, 0), KYU_ERR_MALFORMED);
    assert_int_equal(decode_built(KYU_SNAP_FORMAT, KYU_SNAP_REFUSE, 0, 0), KYU_ERR_MALFORMED);
}

static void test_raft_messages_are_not_snapshot_frames(void **state)
{
    (void)state;
    kyu_raft_msg_t m = {.type = KYU_RAFT_MSG_VOTE, .group = 1, .from = 1, .to = 2, .term = 3};
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    kyu_peer_encode(&m, &sb);
    assert_false(kyu_snap_is_frame(sb.data, sb.size));
    msgpack_sbuffer_destroy(&sb);
    assert_false(kyu_snap_is_frame("", 0));
}

/* ---- the store swap ---- */

static void copy_dir(const char *from, const char *to)
{
    assert_int_equal(mkdir(to, 0755), 0);
    DIR *d = opendir(from);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char src[600], dst[600];
        assert_true(snprintf(src, sizeof src, "%s/%s", from, e->d_name) < (int)sizeof src);
        assert_true(snprintf(dst, sizeof dst, "%s/%s", to, e->d_name) < (int)sizeof dst);
        FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
        assert_non_null(in);
        assert_non_null(out);
        char buf[65536];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, in)) > 0)
            assert_int_equal(fwrite(buf, 1, n, out), n);
        fclose(in);
        fclose(out);
    }
    closedir(d);
}

static bool path_exists(const char *dir, const char *name)
{
    char p[600];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    struct stat st;
    return stat(p, &st) == 0;
}

/* A second node's state: queue "theirs" with one message, applied up to index 40. */
static void other_state(const char *into)
{
    fixture_t *g;
    fixture_setup((void **)&g);
    for (int i = 0; i < 40; i++)
        assert_int_equal(apply1(g, cmd_create("theirs", 30)).code, KYU_OK);
    kyu_err_t ferr;
    assert_int_equal(kyu_sm_flush(g->sm, &ferr), KYU_OK);
    kyu_sm_destroy(&g->sm);
    kyu_store_close(&g->store);
    char state[600];
    snprintf(state, sizeof state, "%s/state", g->dir);
    copy_dir(state, into);
    fixture_teardown((void **)&g);
}

static void flush(fixture_t *f)
{
    kyu_err_t err;
    assert_int_equal(kyu_sm_flush(f->sm, &err), KYU_OK);
}

static void test_store_swaps_in_a_fetched_state(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(apply1(f, cmd_create("mine", 30)).code, KYU_OK);
    flush(f); /* as the replica does before it replaces the state */
    char incoming[600];
    snprintf(incoming, sizeof incoming, "%s/state.incoming", f->dir);
    other_state(incoming);
    kyu_err_t err = {0};
    assert_int_equal(kyu_store_replace_state(f->store, &err), KYU_OK);
    assert_int_equal(kyu_sm_reload(f->sm, &err), KYU_OK);
    assert_true(kyu_sm_queue_exists(f->sm, "theirs"));
    assert_false(kyu_sm_queue_exists(f->sm, "mine"));
    assert_int_equal(kyu_sm_applied_index(f->sm), 40);
    assert_false(path_exists(f->dir, "state.incoming"));
    assert_false(path_exists(f->dir, "state.old"));
    /* It is the state from now on, also after a restart. */
    fixture_reopen(f);
    assert_true(kyu_sm_queue_exists(f->sm, "theirs"));
}

/* A crash after the old state was moved aside and before the new one was moved in: the
 * next open brings the old state back and drops the half-done transfer. */
static void test_open_undoes_an_interrupted_swap(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(apply1(f, cmd_create("mine", 30)).code, KYU_OK);
    flush(f); /* as the replica does before it replaces the state */
    kyu_sm_destroy(&f->sm);
    kyu_store_close(&f->store);
    char from[600], to[600], incoming[600];
    snprintf(from, sizeof from, "%s/state", f->dir);
    snprintf(to, sizeof to, "%s/state.old", f->dir);
    assert_int_equal(rename(from, to), 0);
    snprintf(incoming, sizeof incoming, "%s/state.incoming", f->dir);
    other_state(incoming);
    kyu_err_t err = {0};
    f->store = kyu_store_open(f->dir, &err);
    assert_non_null(f->store);
    f->sm = kyu_sm_open(f->store, &err);
    assert_non_null(f->sm);
    assert_true(kyu_sm_queue_exists(f->sm, "mine"));
    assert_false(kyu_sm_queue_exists(f->sm, "theirs"));
    assert_false(path_exists(f->dir, "state.old"));
    assert_false(path_exists(f->dir, "state.incoming"));
}

/* The state database as it is now, copied by a RocksDB checkpoint into DIR/state.incoming
 * (what a snapshot transfer leaves there). */
static void checkpoint_into_incoming(fixture_t *f)
{
    char incoming[600];
    snprintf(incoming, sizeof incoming, "%s/state.incoming", f->dir);
    char *rerr = NULL;
    rocksdb_checkpoint_t *cp =
        rocksdb_checkpoint_object_create(kyu_store_db(f->store, KYU_CF_META), &rerr);
    assert_null(rerr);
    rocksdb_checkpoint_create(cp, incoming, 0, &rerr);
    assert_null(rerr);
    rocksdb_checkpoint_object_destroy(cp);
}

/* Issue 11, 3d: the storage thread syncs the state database before it compacts the log,
 * while a snapshot install closes and reopens that database on the event loop. Compactions
 * queued around every swap must never reach a closed or replaced handle (ASan would see it;
 * without the lock the storage thread ran into the closed database). */
static void test_log_compaction_during_state_swaps_touches_no_closed_handle(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(apply1(f, cmd_create("mine", 30)).code, KYU_OK);
    flush(f); /* as the replica does before it replaces the state */
    kyu_err_t err = {0};
    kyu_log_t *log = kyu_log_new(f->store, &err);
    assert_non_null(log);
    kyu_log_snapshot_t snap = {.found = true, .index = 1, .term = 1};
    for (int round = 0; round < 20; round++) {
        checkpoint_into_incoming(f);
        for (int i = 0; i < 50; i++)
            kyu_log_compact(log, &snap);
        assert_int_equal(kyu_store_replace_state(f->store, &err), KYU_OK);
        assert_int_equal(kyu_sm_reload(f->sm, &err), KYU_OK);
    }
    /* Every compaction has run once a later write is reported durable. */
    uint64_t token = 0;
    kyu_log_entry_t e = {.index = 2, .term = 1, .type = KYU_ENTRY_NOOP};
    assert_int_equal(kyu_log_write(log, NULL, &e, 1, false, &token, &err), KYU_OK);
    zpoller_t *p = zpoller_new(kyu_log_sock(log), NULL);
    kyu_log_event_t ev = {0};
    while (ev.index < token) {
        if (!zpoller_wait(p, 20000))
            fail_msg("write %llu not durable within 20 s", (unsigned long long)token);
        assert_int_equal(kyu_log_recv(log, &ev, &err), KYU_OK);
        assert_false(ev.failed);
    }
    zpoller_destroy(&p);
    kyu_log_destroy(&log);
    assert_true(kyu_sm_queue_exists(f->sm, "mine"));
    assert_int_equal(kyu_store_state_durable(f->store, &(uint64_t){0}, &err), KYU_OK);
}

/* A fetched state that does not open as a state database of this format is refused before
 * the current one is given up: the node keeps a working state (and says why). */
static void test_a_fetched_state_that_does_not_open_is_refused_and_the_state_kept(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(apply1(f, cmd_create("mine", 30)).code, KYU_OK);
    flush(f); /* as the replica does before it replaces the state */
    char incoming[600], current[700];
    snprintf(incoming, sizeof incoming, "%s/state.incoming", f->dir);
    assert_int_equal(mkdir(incoming, 0755), 0);
    snprintf(current, sizeof current, "%s/CURRENT", incoming);
    FILE *fp = fopen(current, "w");
    assert_non_null(fp);
    fputs("MANIFEST-nonsense\n", fp);
    fclose(fp);
    kyu_err_t err = {0};
    assert_int_equal(kyu_store_replace_state(f->store, &err), KYU_ERR_STORAGE);
    assert_non_null(strstr(err.msg, "snapshot"));
    assert_int_equal(kyu_store_state_durable(f->store, &(uint64_t){0}, &err), KYU_OK);
    assert_int_equal(kyu_sm_reload(f->sm, &err), KYU_OK);
    assert_true(kyu_sm_queue_exists(f->sm, "mine"));
    assert_false(path_exists(f->dir, "state.incoming"));
    /* An empty directory is no state either (RocksDB would create an empty database). */
    assert_int_equal(mkdir(incoming, 0755), 0);
    assert_int_equal(kyu_store_replace_state(f->store, &err), KYU_ERR_STORAGE);
    assert_int_equal(kyu_sm_reload(f->sm, &err), KYU_OK);
    assert_true(kyu_sm_queue_exists(f->sm, "mine"));
    /* No incoming state at all. */
    assert_int_equal(kyu_store_replace_state(f->store, &err), KYU_ERR_STORAGE);
    assert_int_equal(kyu_sm_reload(f->sm, &err), KYU_OK);
    assert_true(kyu_sm_queue_exists(f->sm, "mine"));
}

/* ---- boot ---- */

static void conf_of(uint64_t n, uint8_t *buf, size_t *len)
{
    kyu_raft_conf_t c = {.n_voters = n};
    for (uint64_t i = 0; i < n; i++)
        c.voters[i] = i + 1;
    *len = kyu_raft_conf_encode(&c, buf, 8 + 8 * 2 * 9);
    assert_true(*len > 0);
}

static void write_log(fixture_t *f, uint64_t from, uint64_t to, uint64_t term)
{
    kyu_err_t err = {0};
    kyu_log_t *log = kyu_log_new(f->store, &err);
    assert_non_null(log);
    for (uint64_t i = from; i <= to; i++)
        assert_int_equal(kyu_log_append(log, i, term, "x", 1, &err), KYU_OK);
    kyu_log_destroy(&log);
}

/* The replica's boot over the real log (the storage thread's ops). */
static kyu_code_t boot_load(fixture_t *f, const kyu_raft_conf_t *initial, kyu_replica_boot_t *b,
                            kyu_err_t *err)
{
    kyu_log_t *log = kyu_log_new(f->store, err);
    assert_non_null(log);
    kyu_code_t rc = kyu_replica_boot_load(&kyu_log_ops, log, f->sm, initial, b, err);
    kyu_log_destroy(&log);
    return rc;
}

static void test_boot_keeps_a_log_that_leads_to_the_state(void **state)
{
    fixture_t *f = *state;
    write_log(f, 1, 5, 2);
    uint8_t conf[200];
    size_t conf_len;
    conf_of(3, conf, &conf_len);
    for (int i = 0; i < 3; i++) {
        kyu_sm_set_entry_meta(f->sm, 2, conf, conf_len);
        apply1(f, cmd_create("q", 30));
    }
    kyu_raft_conf_t initial = {.n_voters = 3, .voters = {1, 2, 3}};
    kyu_replica_boot_t b;
    kyu_err_t err = {0};
    assert_int_equal(boot_load(f, &initial, &b, &err), KYU_OK);
    assert_int_equal(b.n_entries, 5);
    assert_false(b.has_snap); /* not reset: entries 1-5 are still there */
    kyu_replica_boot_free(&b);
}

/* The state was replaced by a snapshot at index 50, term 4 (a crash came before the log was
 * reset): the log (entries 1-5 of term 2) does not lead there, so it is reset to start at 50
 * with the snapshot's configuration. */
static void test_boot_resets_a_log_that_does_not_lead_to_the_state(void **state)
{
    fixture_t *f = *state;
    write_log(f, 1, 5, 2);
    uint8_t conf[200];
    size_t conf_len;
    conf_of(5, conf, &conf_len);
    for (int i = 0; i < 49; i++) {
        kyu_sm_set_entry_meta(f->sm, 2, conf, conf_len);
        apply1(f, cmd_create("q", 30));
    }
    kyu_sm_set_entry_meta(f->sm, 4, conf, conf_len);
    assert_int_equal(apply1(f, cmd_create("q", 30)).code, KYU_OK);
    kyu_raft_conf_t initial = {.n_voters = 3, .voters = {1, 2, 3}};
    kyu_replica_boot_t b;
    kyu_err_t err = {0};
    assert_int_equal(boot_load(f, &initial, &b, &err), KYU_OK);
    assert_true(b.has_snap);
    assert_int_equal(b.snap.index, 50);
    assert_int_equal(b.snap.term, 4);
    assert_int_equal(b.snap.conf.n_voters, 5);
    assert_int_equal(b.n_entries, 0);
    kyu_replica_boot_free(&b);
    /* Durably: the log now starts after 50. */
    uint64_t first = 0, last = 0;
    assert_int_equal(kyu_log_first_index(f->store, &first, &err), KYU_OK);
    assert_int_equal(kyu_log_last_index(f->store, &last, &err), KYU_OK);
    assert_int_equal(first, 0);
    assert_int_equal(last, 0);
    kyu_log_hard_state_t hs;
    kyu_log_snapshot_t snap;
    assert_int_equal(kyu_log_load_state(f->store, &hs, &snap, &err), KYU_OK);
    assert_true(snap.found);
    assert_int_equal(snap.index, 50);
    assert_int_equal(snap.term, 4);
}

/* Entries from..to of term 2, the conf entry's index (0: none) a conf entry of 3 voters. */
static void write_log_conf(fixture_t *f, uint64_t from, uint64_t to, uint64_t conf_at)
{
    kyu_err_t err = {0};
    kyu_log_t *log = kyu_log_new(f->store, &err);
    assert_non_null(log);
    uint8_t conf[200];
    size_t conf_len;
    conf_of(3, conf, &conf_len);
    for (uint64_t i = from; i <= to; i++) {
        kyu_log_entry_t e = {i, 2, KYU_ENTRY_NORMAL, "x", 1};
        if (i == conf_at) {
            e.type = KYU_ENTRY_CONF;
            e.payload = conf;
            e.len = conf_len;
        }
        uint64_t token;
        assert_int_equal(kyu_log_write(log, NULL, &e, 1, false, &token, &err), KYU_OK);
    }
    kyu_log_destroy(&log);
}

/* The state at index applied, term 2, members 1-3. */
static void apply_to(fixture_t *f, int applied)
{
    uint8_t conf[200];
    size_t conf_len;
    conf_of(3, conf, &conf_len);
    for (int i = 0; i < applied; i++) {
        kyu_sm_set_entry_meta(f->sm, 2, conf, conf_len);
        apply1(f, cmd_create("q", 30));
    }
}

static kyu_code_t boot_window(fixture_t *f, uint64_t window, uint64_t bytes, kyu_replica_boot_t *b)
{
    kyu_raft_conf_t initial = {.n_voters = 3, .voters = {1, 2, 3}};
    kyu_err_t err = {0};
    kyu_log_t *log = kyu_log_new(f->store, &err);
    assert_non_null(log);
    kyu_code_t rc =
        kyu_replica_boot_load_window(&kyu_log_ops, log, f->sm, &initial, window, bytes, b, &err);
    kyu_log_destroy(&log);
    return rc;
}

/* Of the entries up to the applied index (15) the boot keeps the last window's (4: 12-15),
 * and every one after it (16-20); the core's log starts after the last one dropped. The
 * log's files are left as they were. */
static void test_boot_keeps_a_window_of_applied_entries(void **state)
{
    fixture_t *f = *state;
    write_log_conf(f, 1, 20, 0);
    apply_to(f, 15);
    kyu_replica_boot_t b;
    assert_int_equal(boot_window(f, 4, 1 << 20, &b), KYU_OK);
    assert_true(b.has_snap);
    assert_int_equal(b.snap.index, 11);
    assert_int_equal(b.snap.term, 2);
    assert_int_equal(b.snap.conf.n_voters, 3);
    assert_int_equal(kyu_get_be64(b.snap.data), 11);
    assert_int_equal(b.n_entries, 9);
    for (size_t i = 0; i < b.n_entries; i++)
        assert_int_equal(b.entries[i].index, 12 + i);
    kyu_replica_boot_free(&b);
    /* by bytes: 2 of them (each entry holds one) */
    assert_int_equal(boot_window(f, 100, 2, &b), KYU_OK);
    assert_int_equal(b.snap.index, 13);
    assert_int_equal(b.n_entries, 7);
    assert_int_equal(b.entries[0].index, 14);
    kyu_replica_boot_free(&b);
    /* a window of none still keeps the entry at the applied index (its term is checked) */
    assert_int_equal(boot_window(f, 0, 0, &b), KYU_OK);
    assert_int_equal(b.snap.index, 14);
    assert_int_equal(b.entries[0].index, 15);
    kyu_replica_boot_free(&b);
    /* the log's files still start at 1 */
    kyu_err_t err = {0};
    uint64_t first = 0;
    assert_int_equal(kyu_log_first_index(f->store, &first, &err), KYU_OK);
    assert_int_equal(first, 1);
}

/* A conf entry is never dropped, nor anything after it: the core's snapshot record would need
 * the membership it made. Nothing past the applied index is dropped (a kill -9's tail). */
static void test_boot_keeps_conf_entries_and_the_unapplied(void **state)
{
    fixture_t *f = *state;
    write_log_conf(f, 1, 20, 6);
    apply_to(f, 15);
    kyu_replica_boot_t b;
    assert_int_equal(boot_window(f, 4, 1 << 20, &b), KYU_OK);
    assert_int_equal(b.snap.index, 5);
    assert_int_equal(b.n_entries, 15);
    assert_int_equal(b.entries[0].index, 6);
    assert_int_equal(b.entries[0].type, KYU_RAFT_ENTRY_CONF);
    kyu_replica_boot_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frames_round_trip),
        cmocka_unit_test(test_unsafe_file_names_are_refused),
        cmocka_unit_test(test_malformed_frames_are_refused),
        cmocka_unit_test(test_raft_messages_are_not_snapshot_frames),
        cmocka_unit_test_setup_teardown(test_store_swaps_in_a_fetched_state, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_open_undoes_an_interrupted_swap, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(
            test_log_compaction_during_state_swaps_touches_no_closed_handle, fixture_setup,
            fixture_teardown),
        cmocka_unit_test_setup_teardown(
            test_a_fetched_state_that_does_not_open_is_refused_and_the_state_kept, fixture_setup,
            fixture_teardown),
        cmocka_unit_test_setup_teardown(test_boot_keeps_a_window_of_applied_entries, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_boot_keeps_conf_entries_and_the_unapplied,
                                        fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_boot_keeps_a_log_that_leads_to_the_state,
                                        fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_boot_resets_a_log_that_does_not_lead_to_the_state,
                                        fixture_setup, fixture_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
