#include "fixture.h"

#include "command.h"
#include "queue_attrs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* KYU_TEST_WRITE_BEHIND=N runs a test with the state machine's writer thread on and a write
 * every N entries (CMakeLists.txt registers the state machine's tests both ways), so that a
 * write is in flight while most commands apply. */
static kyu_sm_t *open_sm(kyu_store_t *store, kyu_err_t *err)
{
    kyu_sm_t *sm = kyu_sm_open(store, err);
    const char *every = getenv("KYU_TEST_WRITE_BEHIND");
    if (sm && every && atoi(every) > 0) {
        kyu_sm_write_behind(sm);
        kyu_sm_set_write_every(sm, (uint32_t)atoi(every));
    }
    return sm;
}

int fixture_setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    assert_non_null(f);
    snprintf(f->dir, sizeof f->dir, "/tmp/kyu-unit-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    kyu_err_t err;
    f->store = kyu_store_open(f->dir, &err);
    assert_non_null(f->store);
    f->sm = open_sm(f->store, &err);
    assert_non_null(f->sm);
    *state = f;
    return 0;
}

int fixture_teardown(void **state)
{
    fixture_t *f = *state;
    kyu_sm_destroy(&f->sm);
    kyu_store_close(&f->store);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

void fixture_reopen(fixture_t *f)
{
    kyu_err_t ferr;
    assert_int_equal(kyu_sm_flush(f->sm, &ferr), KYU_OK); /* a clean stop */
    fixture_crash(f);
}

static void reopen(fixture_t *f)
{
    kyu_err_t err;
    f->store = kyu_store_open(f->dir, &err);
    assert_non_null(f->store);
    f->sm = open_sm(f->store, &err);
    assert_non_null(f->sm);
}

void fixture_crash(fixture_t *f)
{
    kyu_sm_destroy(&f->sm); /* the writes not flushed are lost */
    kyu_store_close(&f->store);
    reopen(f);
}

void fixture_kill(fixture_t *f)
{
    kyu_sm_destroy(&f->sm);
    kyu_store_crash(&f->store);
    reopen(f);
}

static kyu_command_t base(kyu_cmd_type_t type, const char *queue, uint64_t now)
{
    kyu_command_t c;
    memset(&c, 0, sizeof c);
    c.type = type;
    c.now_ms = now;
    c.vt = -1;
    snprintf(c.queue, sizeof c.queue, "%s", queue);
    return c;
}

kyu_command_t cmd_create(const char *queue, int64_t vt)
{
    kyu_command_t c = base(KYU_CMD_CREATE_QUEUE, queue, 1000);
    c.vt = vt;
    return c;
}

kyu_command_t cmd_delete_queue(const char *queue)
{
    return base(KYU_CMD_DELETE_QUEUE, queue, 1000);
}

kyu_command_t cmd_send(const char *queue, uint64_t now, const char *body)
{
    static unsigned counter;
    kyu_command_t c = base(KYU_CMD_SEND, queue, now);
    c.n = 1;
    snprintf(c.ids[0], sizeof c.ids[0], "00000000-0000-4000-8000-%012u", ++counter);
    c.bodies[0] = body;
    c.body_lens[0] = strlen(body);
    return c;
}

kyu_command_t cmd_receive(const char *queue, uint64_t now, uint32_t max, int64_t vt)
{
    kyu_command_t c = base(KYU_CMD_RECEIVE, queue, now);
    c.max = max;
    c.vt = vt;
    return c;
}

kyu_command_t cmd_delete(const char *queue, uint64_t now, const char *handle)
{
    kyu_command_t c = base(KYU_CMD_DELETE, queue, now);
    c.n = 1;
    snprintf(c.handles[0], sizeof c.handles[0], "%.*s", KYU_HANDLE_MAX, handle);
    return c;
}

kyu_command_t cmd_change_visibility(const char *queue, uint64_t now, const char *handle, int64_t vt)
{
    kyu_command_t c = cmd_delete(queue, now, handle);
    c.type = KYU_CMD_CHANGE_VISIBILITY;
    c.vt = vt;
    return c;
}

void apply_entry(fixture_t *f, const kyu_command_t *cmds, size_t n, kyu_result_t *results)
{
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    for (size_t i = 0; i < n; i++)
        kyu_command_encode(&cmds[i], &buf);
    size_t got = 0;
    kyu_err_t err;
    kyu_code_t rc = kyu_sm_apply(f->sm, ++f->index, buf.data, buf.size, results, n, &got, &err);
    msgpack_sbuffer_destroy(&buf);
    if (rc != KYU_OK)
        fail_msg("apply failed: %s", err.msg);
    assert_int_equal(got, n);
}

kyu_result_t apply1(fixture_t *f, kyu_command_t cmd)
{
    kyu_result_t r;
    apply_entry(f, &cmd, 1, &r);
    return r;
}

void ok(kyu_result_t r)
{
    if (r.code != KYU_OK)
        fail_msg("expected OK, got %s: %s", kyu_code_name(r.code), r.error);
    kyu_result_clear(&r);
}

kyu_command_t cmd_send_fifo(const char *queue, uint64_t now, const char *body, const char *group,
                            const char *did)
{
    kyu_command_t c = cmd_send(queue, now, body);
    snprintf(c.group_ids[0], sizeof c.group_ids[0], "%s", group ? group : "");
    snprintf(c.dedup_ids[0], sizeof c.dedup_ids[0], "%s", did ? did : "");
    kyu_md5_body(c.bodies[0], c.body_lens[0], c.md5_body[0]);
    c.has_md5 = true;
    return c;
}

got_t fixture_receive(fixture_t *f, const char *queue, uint64_t now, uint32_t max, int64_t vt)
{
    got_t g = {0};
    kyu_result_t r = apply1(f, cmd_receive(queue, now, max, vt));
    if (r.code != KYU_OK)
        fail_msg("receive: %s", r.error);
    g.n = r.n_msgs;
    for (size_t i = 0; i < r.n_msgs; i++) {
        snprintf(g.bodies[i], sizeof g.bodies[i], "%.*s", (int)r.body_lens[i],
                 (const char *)r.bodies[i]);
        memcpy(g.groups[i], r.msgs[i].group_id, sizeof g.groups[i]);
        memcpy(g.dedups[i], r.msgs[i].dedup_id, sizeof g.dedups[i]);
        memcpy(g.handles[i], r.msgs[i].handle, sizeof g.handles[i]);
        g.seqs[i] = r.msgs[i].sequence;
    }
    kyu_result_clear(&r);
    return g;
}

const char *got_bodies(const got_t *g)
{
    static char out[KYU_BATCH_MAX * 512 + KYU_BATCH_MAX];
    out[0] = '\0';
    for (size_t i = 0; i < g->n; i++)
        snprintf(out + strlen(out), sizeof out - strlen(out), "%s%s", i ? " " : "", g->bodies[i]);
    return out;
}

void expect_first_receive(fixture_t *f, uint64_t now, uint32_t max, const char *const *bodies,
                          bool del)
{
    kyu_result_t r = apply1(f, cmd_receive("q", now, max, -1));
    assert_int_equal(r.code, KYU_OK);
    size_t n = 0;
    while (bodies[n])
        n++;
    if (r.n_msgs != n)
        fail_msg("expected %zu messages at %llu, got %zu", n, (unsigned long long)now, r.n_msgs);
    for (size_t i = 0; i < n; i++) {
        if (r.body_lens[i] != strlen(bodies[i]) ||
            memcmp(r.bodies[i], bodies[i], strlen(bodies[i])) != 0)
            fail_msg("message %zu at %llu: expected '%s', got '%.*s'", i, (unsigned long long)now,
                     bodies[i], (int)r.body_lens[i], (const char *)r.bodies[i]);
        assert_int_equal(r.msgs[i].receive_count, 1);
        assert_true(r.msgs[i].first_receive_ms == now);
    }
    char handles[KYU_BATCH_MAX][KYU_HANDLE_MAX + 1];
    for (size_t i = 0; i < n; i++)
        memcpy(handles[i], r.msgs[i].handle, sizeof handles[i]);
    kyu_result_clear(&r);
    if (!del)
        return;
    for (size_t i = 0; i < n; i++) /* gone, so that its lease's end does not bring it back */
        ok(apply1(f, cmd_delete("q", now, handles[i])));
}

void expect_error(kyu_code_t got, const char *msg, kyu_code_t code, const char *text)
{
    if (got != code || !strstr(msg, text))
        fail_msg("expected %s mentioning '%s', got %s: %s", kyu_code_name(code), text,
                 kyu_code_name(got), msg);
}

void expect_result(kyu_result_t r, kyu_code_t code, const char *text)
{
    expect_error(r.code, r.error, code, text);
    kyu_result_clear(&r);
}

kyu_queue_attrs_t fixture_attrs(fixture_t *f, const char *queue, uint64_t now)
{
    kyu_queue_attrs_t a;
    kyu_err_t err;
    kyu_code_t rc = kyu_sm_queue_attributes(f->sm, queue, now, &a, &err);
    if (rc != KYU_OK)
        fail_msg("attributes of %s: expected OK, got %s: %s", queue, kyu_code_name(rc), err.msg);
    return a;
}

void expect_counts(fixture_t *f, uint64_t now, int64_t visible, int64_t not_visible,
                   int64_t delayed)
{
    kyu_queue_attrs_t a = fixture_attrs(f, "q", now);
    if (a.visible != visible || a.not_visible != not_visible || a.delayed != delayed)
        fail_msg("at %llu expected %lld visible / %lld not visible / %lld delayed, got %lld / "
                 "%lld / %lld",
                 (unsigned long long)now, (long long)visible, (long long)not_visible,
                 (long long)delayed, (long long)a.visible, (long long)a.not_visible,
                 (long long)a.delayed);
}

kyu_command_t cmd_send_delayed(const char *queue, uint64_t now, const char *body, uint64_t delay_ms)
{
    kyu_command_t c = cmd_send(queue, now, body);
    c.has_msg_delay[0] = true;
    c.msg_delay_ms[0] = delay_ms;
    return c;
}

kyu_command_t cmd_with_redrive(kyu_command_t c, kyu_queue_ext_t *qx, const char *dlq, uint32_t mrc)
{
    kyu_qattrs_defaults(qx);
    snprintf(qx->dlq, sizeof qx->dlq, "%s", dlq);
    qx->max_receive_count = mrc;
    c.qx = qx;
    c.qx_set = KYU_F_REDRIVE;
    return c;
}

kyu_msg_attr_t msg_attr(const char *name, const char *type, const char *value)
{
    return (kyu_msg_attr_t){.name = name,
                            .name_len = strlen(name),
                            .type = type,
                            .type_len = strlen(type),
                            .value = value,
                            .value_len = strlen(value),
                            .binary = strncmp(type, "Binary", 6) == 0};
}

kyu_command_t command_round_trip(const kyu_command_t *c)
{
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    kyu_command_encode(c, &b);
    size_t off = 0;
    kyu_err_t err;
    kyu_command_t d;
    assert_int_equal(kyu_command_decode(b.data, b.size, &off, &d, &err), KYU_OK);
    assert_int_equal(off, b.size);
    msgpack_sbuffer_destroy(&b);
    return d;
}

void pack_command_head(msgpack_packer *pk, uint32_t type, uint64_t now, const char *queue,
                       int64_t vt, uint32_t max)
{
    msgpack_pack_array(pk, 6);
    msgpack_pack_uint32(pk, type);
    msgpack_pack_uint64(pk, now);
    kyu_mp_pack_str(pk, queue);
    msgpack_pack_int64(pk, vt);
    msgpack_pack_uint32(pk, max);
}
