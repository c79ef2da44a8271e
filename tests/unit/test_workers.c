/* Worker sessions (broker/workers.c) over a real state machine with fake I/O: pushes as
 * RECEIVE commands within the credit, credit given back, round robin among a queue's
 * sessions, liveness, WORKER_CLOSE, the end of sessions (leadership lost, queue deleted), and
 * RELEASE_LEASES (broker/op_workers.c): it makes each still-identical lease visible, touches
 * nothing else, and applying it again changes nothing. */
#include "command.h"
#include "fixture.h"
#include "ops.h"
#include "workers.h"

#include <stdlib.h>
#include <string.h>

#define T0 1000000 /* a command time, ms */
#define MAXP 64

typedef struct {
    uint64_t sid;
    char queue[KYU_NAME_MAX + 1];
    int64_t vt;
    uint32_t max;
} proposal_t;

typedef struct {
    uint64_t sid;
    char queue[KYU_NAME_MAX + 1];
    uint8_t recs[KYU_RELEASE_MAX * KYU_RELEASE_REC];
    size_t n;
} release_t;

typedef struct {
    zframe_t *to;
    kyu_reply_t rep;
    size_t n_bodies;
} sent_t;

/* The fake world around the sessions. */
typedef struct {
    fixture_t *f;
    kyu_workers_t *w;
    uint64_t mono, now;
    bool serving, send_ok;
    kyu_code_t refuse; /* propose_receive answers this when set */
    proposal_t props[MAXP];
    size_t n_props;
    release_t *rels;
    size_t n_rels;
    sent_t sent[MAXP];
    size_t n_sent;
    void *tokens[MAXP];
    size_t n_timers, n_ended_timers;
} world_t;

static world_t W;

static uint64_t f_mono(void *a)
{
    return ((world_t *)a)->mono;
}
static uint64_t f_now(void *a)
{
    return ((world_t *)a)->now;
}
static bool f_serving(void *a)
{
    return ((world_t *)a)->serving;
}
static const char *f_leader(void *a)
{
    (void)a;
    return "tcp://next:1";
}
static bool f_send(void *a, zframe_t *identity, const kyu_reply_t *rep, const void *const *bodies,
                   const size_t *lens, size_t n)
{
    (void)bodies, (void)lens;
    world_t *w = a;
    assert_true(w->n_sent < MAXP);
    sent_t *s = &w->sent[w->n_sent++];
    s->to = zframe_dup(identity);
    s->rep = *rep;
    s->rep.workers = NULL;
    s->n_bodies = n;
    return w->send_ok;
}
static kyu_code_t f_receive(void *a, uint64_t sid, const char *queue, int64_t vt, uint32_t max,
                            kyu_err_t *err)
{
    world_t *w = a;
    if (w->refuse)
        return kyu_err_set(err, w->refuse, "refused");
    assert_true(w->n_props < MAXP);
    proposal_t *p = &w->props[w->n_props++];
    p->sid = sid;
    snprintf(p->queue, sizeof p->queue, "%s", queue);
    p->vt = vt;
    p->max = max;
    return KYU_OK;
}
static kyu_code_t f_release(void *a, uint64_t sid, const char *queue, const uint8_t *recs, size_t n,
                            kyu_err_t *err)
{
    world_t *w = a;
    if (w->refuse)
        return kyu_err_set(err, w->refuse, "refused");
    w->rels = realloc(w->rels, (w->n_rels + 1) * sizeof *w->rels);
    release_t *r = &w->rels[w->n_rels++];
    r->sid = sid;
    snprintf(r->queue, sizeof r->queue, "%s", queue);
    memcpy(r->recs, recs, n * KYU_RELEASE_REC);
    r->n = n;
    return KYU_OK;
}
static int f_timer_add(void *a, uint32_t ms, void *token)
{
    (void)ms;
    world_t *w = a;
    assert_true(w->n_timers < MAXP);
    w->tokens[w->n_timers] = token;
    return (int)w->n_timers++;
}
static void f_timer_end(void *a, int id)
{
    world_t *w = a;
    w->tokens[id] = NULL;
    w->n_ended_timers++;
}

static int setup(void **state)
{
    int rc = fixture_setup(state);
    memset(&W, 0, sizeof W);
    W.f = *state;
    W.mono = 5000;
    W.now = T0;
    W.serving = true;
    W.send_ok = true;
    kyu_workers_io_t io = {.arg = &W,
                           .mono_ms = f_mono,
                           .cluster_ms = f_now,
                           .serving = f_serving,
                           .leader = f_leader,
                           .send = f_send,
                           .propose_receive = f_receive,
                           .propose_release = f_release,
                           .timer_add = f_timer_add,
                           .timer_end = f_timer_end};
    W.w = kyu_workers_new(W.f->sm, &io);
    assert_non_null(W.w);
    ok(apply1(W.f, cmd_create("jobs", 300)));
    return rc;
}

static int teardown(void **state)
{
    kyu_workers_destroy(&W.w);
    for (size_t i = 0; i < W.n_sent; i++)
        zframe_destroy(&W.sent[i].to);
    free(W.rels);
    return fixture_teardown(state);
}

static void send_n(const char *queue, int n)
{
    for (int i = 0; i < n; i++)
        ok(apply1(W.f, cmd_send(queue, W.now, "body")));
}

static uint64_t open_session(zframe_t *id, const char *queue, uint32_t cr, uint32_t hb, uint32_t lv)
{
    kyu_request_t req;
    memset(&req, 0, offsetof(kyu_request_t, qx));
    req.op = KYU_OP_WORKER_OPEN;
    req.id = 77;
    req.fields = KYU_F_QUEUE | KYU_F_CREDIT | (hb ? KYU_F_HB : 0) | (lv ? KYU_F_LIVENESS : 0);
    snprintf(req.queue, sizeof req.queue, "%s", queue);
    req.credit = cr;
    req.hb_ms = hb;
    req.liveness = lv;
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    kyu_err_t err;
    kyu_code_t rc = kyu_workers_open(W.w, &req, id, "10.0.0.1", &rep, &err);
    if (rc != KYU_OK)
        fail_msg("open: %s", err.msg);
    assert_true(rep.sid != 0);
    return rep.sid;
}

/* A heartbeat giving cr back and, when ct is not 0, setting the total credit to ct. */
static kyu_code_t heartbeat_ct(zframe_t *id, uint64_t sid, uint32_t cr, uint32_t ct)
{
    kyu_request_t req;
    memset(&req, 0, offsetof(kyu_request_t, qx));
    req.op = KYU_OP_WORKER_HEARTBEAT;
    req.fields = KYU_F_SID | KYU_F_CREDIT | (ct ? KYU_F_CREDIT_TOTAL : 0);
    req.sid = sid;
    req.credit = cr;
    req.credit_total = ct;
    kyu_err_t err;
    return kyu_workers_heartbeat(W.w, &req, id, &err);
}

static kyu_code_t heartbeat(zframe_t *id, uint64_t sid, uint32_t cr)
{
    return heartbeat_ct(id, sid, cr, 0);
}

/* Applies proposal i as the leader would (a RECEIVE at now) and hands its result back. */
static size_t commit_receive(size_t i)
{
    proposal_t *p = &W.props[i];
    kyu_result_t r = apply1(W.f, cmd_receive(p->queue, W.now, p->max, p->vt));
    size_t got = r.n_msgs;
    kyu_workers_on_receive(W.w, p->sid, p->max, &r);
    kyu_result_clear(&r);
    return got;
}

static kyu_result_t apply_release(size_t i)
{
    kyu_command_t c;
    memset(&c, 0, sizeof c);
    c.type = KYU_CMD_RELEASE_LEASES;
    c.now_ms = W.now;
    snprintf(c.queue, sizeof c.queue, "%s", W.rels[i].queue);
    c.vt = -1;
    c.rel = W.rels[i].recs;
    c.n_rel = W.rels[i].n;
    return apply1(W.f, c);
}

static void counts(const char *queue, int64_t visible, int64_t not_visible)
{
    kyu_queue_attrs_t a;
    kyu_err_t err;
    assert_int_equal(kyu_sm_queue_attributes(W.f->sm, queue, W.now, &a, &err), KYU_OK);
    if (a.visible != visible || a.not_visible != not_visible)
        fail_msg("expected %lld visible, %lld in flight; got %lld, %lld", (long long)visible,
                 (long long)not_visible, (long long)a.visible, (long long)a.not_visible);
}

static void invariant(uint64_t sid)
{
    kyu_session_view_t v;
    assert_true(kyu_workers_view(W.w, sid, &v));
    /* credit + reserved + held == the total, but for a total lowered below what is out */
    if (v.reserved + v.held <= v.credit_total)
        assert_int_equal(v.credit + v.reserved + v.held, v.credit_total);
    else
        assert_int_equal(v.credit, 0);
}

static const sent_t *last_sent(void)
{
    assert_true(W.n_sent > 0);
    return &W.sent[W.n_sent - 1];
}

/* ---- RELEASE_LEASES ---- */

static void put_rec(uint8_t *p, uint64_t seq, uint32_t gen)
{
    kyu_put_be64(p, seq);
    kyu_put_be32(p + 8, gen);
}

static void test_release_makes_still_identical_leases_visible_and_nothing_else(void **state)
{
    (void)state;
    send_n("jobs", 4);
    kyu_result_t r = apply1(W.f, cmd_receive("jobs", W.now, 4, 300));
    assert_int_equal(r.n_msgs, 4);
    uint64_t seq[4];
    uint32_t gen[4];
    for (int i = 0; i < 4; i++)
        assert_true(kyu_handle_parse(r.msgs[i].handle, &seq[i], &gen[i]));
    char del[KYU_HANDLE_MAX + 1], moved[KYU_HANDLE_MAX + 1];
    strcpy(del, r.msgs[0].handle);
    strcpy(moved, r.msgs[1].handle);
    kyu_result_clear(&r);
    ok(apply1(W.f, cmd_delete("jobs", W.now, del))); /* 0: deleted */
    /* 1: released by its worker with a back-off, then received again by another: gen + 1 */
    ok(apply1(W.f, cmd_change_visibility("jobs", W.now, moved, 0)));
    W.now += 10;
    r = apply1(W.f, cmd_receive("jobs", W.now, 1, 300));
    assert_int_equal(r.n_msgs, 1);
    kyu_result_clear(&r);
    counts("jobs", 0, 3);
    W.rels = calloc(1, sizeof *W.rels);
    W.n_rels = 1;
    snprintf(W.rels[0].queue, sizeof W.rels[0].queue, "jobs");
    for (int i = 0; i < 4; i++)
        put_rec(W.rels[0].recs + i * KYU_RELEASE_REC, seq[i], gen[i]);
    put_rec(W.rels[0].recs + 4 * KYU_RELEASE_REC, 999999, 1); /* no such message */
    W.rels[0].n = 5;
    W.now += 10;
    ok(apply_release(0));
    counts("jobs", 2, 1); /* 2 and 3 visible again; 1 still leased by the other */
    ok(apply_release(0)); /* again: nothing more changes */
    counts("jobs", 2, 1);
    /* Their receive count is kept: the next receive is their second */
    r = apply1(W.f, cmd_receive("jobs", W.now, 10, 300));
    assert_int_equal(r.n_msgs, 2);
    assert_int_equal(r.msgs[0].receive_count, 2);
    assert_int_equal(r.msgs[1].receive_count, 2);
    kyu_result_clear(&r);
    /* A deleted queue: nothing to do, said so */
    ok(apply1(W.f, cmd_delete_queue("jobs")));
    r = apply_release(0);
    assert_int_equal(r.code, KYU_ERR_NO_SUCH_QUEUE);
    kyu_result_clear(&r);
}

static void test_release_items_decode_strictly(void **state)
{
    (void)state;
    const kyu_op_row_t *row = kyu_ops_command(KYU_CMD_RELEASE_LEASES);
    assert_non_null(row);
    uint8_t bytes[2 * KYU_RELEASE_REC + 1] = {0};
    struct {
        size_t len;
        bool ok;
    } cases[] = {{KYU_RELEASE_REC, true},
                 {2 * KYU_RELEASE_REC, true},
                 {0, false},
                 {KYU_RELEASE_REC + 1, false},
                 {KYU_RELEASE_REC - 1, false}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        msgpack_sbuffer b;
        msgpack_sbuffer_init(&b);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
        msgpack_pack_array(&pk, 1);
        msgpack_pack_bin(&pk, cases[i].len);
        msgpack_pack_bin_body(&pk, bytes, cases[i].len);
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        assert_int_equal(msgpack_unpack_next(&u, b.data, b.size, NULL), MSGPACK_UNPACK_SUCCESS);
        kyu_command_t c;
        memset(&c, 0, sizeof c);
        assert_int_equal(row->decode_items(&u.data, &c), cases[i].ok);
        if (cases[i].ok)
            assert_int_equal(c.n_rel, cases[i].len / KYU_RELEASE_REC);
        msgpack_unpacked_destroy(&u);
        msgpack_sbuffer_destroy(&b);
    }
}

/* ---- sessions ---- */

static void test_pushes_stay_within_the_credit_and_credit_comes_back(void **state)
{
    (void)state;
    zframe_t *id = zframe_new("worker-1", 8);
    send_n("jobs", 12);
    uint64_t sid = open_session(id, "jobs", 5, 0, 0);
    kyu_session_view_t v;
    assert_true(kyu_workers_view(W.w, sid, &v));
    assert_int_equal(v.hb_ms, KYU_WORKER_HB_DEFAULT_MS);
    assert_int_equal(v.liveness, KYU_WORKER_LIVENESS_DEFAULT);
    assert_int_equal(W.n_timers, 1);
    kyu_workers_serve(W.w, false);
    assert_int_equal(W.n_props, 1);
    assert_int_equal(W.props[0].max, 5);
    assert_int_equal(W.props[0].vt, -1);
    invariant(sid);
    kyu_workers_serve(W.w, false); /* nothing marked: nothing more */
    kyu_workers_mark(W.w, "jobs"); /* marked, but no credit left */
    kyu_workers_serve(W.w, false);
    assert_int_equal(W.n_props, 1);
    assert_int_equal(commit_receive(0), 5);
    const sent_t *p = last_sent();
    assert_int_equal(p->rep.ev, KYU_EV_MSGS);
    assert_int_equal(p->rep.id, 77);
    assert_true(p->rep.sid == sid);
    assert_int_equal(p->rep.n_msgs, 5);
    assert_int_equal(p->n_bodies, 5);
    assert_true(zframe_eq(p->to, id));
    assert_true(kyu_workers_view(W.w, sid, &v));
    assert_int_equal(v.held, 5);
    assert_int_equal(v.credit, 0);
    invariant(sid);
    kyu_workers_serve(W.w, false); /* the result marked the queue: still no credit */
    assert_int_equal(W.n_props, 1);
    /* Credit back: 3, then more than it holds (only what it holds counts) */
    assert_int_equal(heartbeat(id, sid, 3), KYU_OK);
    kyu_workers_serve(W.w, false);
    assert_int_equal(W.n_props, 2);
    assert_int_equal(W.props[1].max, 3);
    assert_int_equal(commit_receive(1), 3);
    invariant(sid);
    assert_int_equal(heartbeat(id, sid, 1000), KYU_OK);
    assert_true(kyu_workers_view(W.w, sid, &v));
    assert_int_equal(v.credit, 5);
    assert_int_equal(v.held, 0);
    invariant(sid);
    kyu_workers_serve(W.w, false);
    assert_int_equal(W.n_props, 3);
    assert_int_equal(W.props[2].max, 4); /* the 4 left visible */
    /* A RECEIVE that finds less than it asked for gives the rest back */
    ok(apply1(W.f, cmd_receive("jobs", W.now, 3, 300))); /* a client took 3 meanwhile */
    assert_int_equal(commit_receive(2), 1);
    assert_true(kyu_workers_view(W.w, sid, &v));
    assert_int_equal(v.held, 1);
    assert_int_equal(v.credit, 4);
    invariant(sid);
    zframe_destroy(&id);
}

/* A heartbeat's ct sets a new total: lowered below what is out, nothing is pushed until
 * enough comes back (the broker never has more than the total out); raised, at once. */
static void test_a_new_total_credit_lowers_and_raises_what_is_pushed(void **state)
{
    (void)state;
    zframe_t *id = zframe_new("worker-1", 8);
    send_n("jobs", 40);
    uint64_t sid = open_session(id, "jobs", 8, 0, 0);
    kyu_workers_serve(W.w, false);
    assert_int_equal(W.n_props, 1);
    assert_int_equal(commit_receive(0), 8);
    kyu_session_view_t v;
    /* lowered to 3 while 8 are held: credit 0, even with 4 given back (4 held > 3) */
    assert_int_equal(heartbeat_ct(id, sid, 4, 3), KYU_OK);
    assert_true(kyu_workers_view(W.w, sid, &v));
    assert_int_equal(v.credit_total, 3);
    assert_int_equal(v.held, 4);
    assert_int_equal(v.credit, 0);
    invariant(sid);
    kyu_workers_serve(W.w, false);
    assert_int_equal(W.n_props, 1);
    /* 3 more back: 1 held, 2 may be pushed, not more */
    assert_int_equal(heartbeat(id, sid, 3), KYU_OK);
    kyu_workers_serve(W.w, false);
    assert_int_equal(W.n_props, 2);
    assert_int_equal(W.props[1].max, 2);
    assert_int_equal(commit_receive(1), 2);
    assert_true(kyu_workers_view(W.w, sid, &v));
    assert_int_equal(v.held, 3);
    assert_int_equal(v.credit, 0);
    invariant(sid);
    /* raised to 25 without giving anything back: 22 at once (ten to a RECEIVE) */
    assert_int_equal(heartbeat_ct(id, sid, 0, 25), KYU_OK);
    kyu_workers_serve(W.w, false);
    assert_int_equal(W.n_props, 5);
    assert_int_equal(W.props[2].max + W.props[3].max + W.props[4].max, 22);
    invariant(sid);
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    kyu_err_t err;
    assert_int_equal(kyu_workers_list(W.w, "jobs", &rep, &err), KYU_OK);
    assert_int_equal(rep.n_workers, 1);
    assert_int_equal(rep.workers[0].credit_total, 25);
    assert_int_equal(rep.workers[0].credit, 0);
    kyu_reply_reset(&rep);
    for (size_t i = 2; i < 5; i++)
        commit_receive(i);
    assert_true(kyu_workers_view(W.w, sid, &v));
    assert_int_equal(v.held, 25);
    invariant(sid);
    zframe_destroy(&id);
}

static void test_sessions_of_a_queue_are_served_in_turn(void **state)
{
    (void)state;
    zframe_t *a = zframe_new("a", 1), *b = zframe_new("b", 1);
    uint64_t sa = open_session(a, "jobs", 100, 0, 0);
    uint64_t sb = open_session(b, "jobs", 100, 0, 0);
    kyu_workers_serve(W.w, false);
    assert_int_equal(W.n_props, 0); /* nothing visible: nothing proposed */
    send_n("jobs", 35);
    kyu_workers_mark(W.w, "jobs");
    kyu_workers_serve(W.w, false);
    assert_int_equal(W.n_props, 4);
    uint64_t want[4] = {sa, sb, sa, sb};
    uint32_t max[4] = {10, 10, 10, 5};
    for (int i = 0; i < 4; i++) {
        assert_true(W.props[i].sid == want[i]);
        assert_int_equal(W.props[i].max, max[i]);
    }
    /* The RECEIVEs in flight count: marked again, nothing more is asked for */
    kyu_workers_mark(W.w, "jobs");
    kyu_workers_serve(W.w, false);
    assert_int_equal(W.n_props, 4);
    for (int i = 0; i < 4; i++)
        commit_receive((size_t)i);
    invariant(sa);
    invariant(sb);
    /* Next time the one served longest ago comes first (a, whose last push was earlier) */
    send_n("jobs", 1);
    kyu_workers_mark(W.w, "jobs");
    kyu_workers_serve(W.w, false);
    assert_int_equal(W.n_props, 5);
    assert_true(W.props[4].sid == sa);
    zframe_destroy(&a);
    zframe_destroy(&b);
}

static void test_a_silent_session_is_declared_dead_and_its_leases_released(void **state)
{
    (void)state;
    zframe_t *id = zframe_new("w", 1);
    send_n("jobs", 3);
    uint64_t sid = open_session(id, "jobs", 10, 100, 3);
    kyu_workers_serve(W.w, false);
    assert_int_equal(commit_receive(0), 3);
    counts("jobs", 0, 3);
    /* Its timer: a heartbeat push while alive */
    W.mono += 100;
    kyu_workers_on_timer(W.tokens[0]);
    assert_int_equal(last_sent()->rep.ev, KYU_EV_HB);
    assert_true(last_sent()->rep.sid == sid);
    W.mono += 150;
    assert_int_equal(heartbeat(id, sid, 0), KYU_OK); /* alive: the clock starts again */
    W.mono += 250;
    kyu_workers_on_timer(W.tokens[0]);
    assert_int_equal(last_sent()->rep.ev, KYU_EV_HB);
    assert_int_equal(W.n_rels, 0);
    W.mono += 50; /* 300 ms = hb x lv without a heartbeat */
    kyu_workers_on_timer(W.tokens[0]);
    const sent_t *c = last_sent();
    assert_int_equal(c->rep.ev, KYU_EV_CLOSED);
    assert_int_equal(c->rep.status, KYU_ERR_NO_SESSION);
    assert_int_equal(W.n_ended_timers, 1);
    assert_int_equal(W.n_rels, 1);
    assert_int_equal(W.rels[0].n, 3);
    assert_true(W.rels[0].sid == sid);
    assert_int_equal(kyu_workers_count(W.w), 0);
    assert_int_equal(heartbeat(id, sid, 0), KYU_ERR_NO_SESSION);
    W.now += 5;
    ok(apply_release(0));
    counts("jobs", 3, 0);
    kyu_workers_on_release(W.w, sid, &(kyu_result_t){0});
    kyu_session_view_t v;
    assert_false(kyu_workers_view(W.w, sid, &v)); /* gone once its release is back */
    zframe_destroy(&id);
}

static void test_close_waits_for_pushes_in_flight_and_the_release(void **state)
{
    (void)state;
    zframe_t *id = zframe_new("w", 1);
    send_n("jobs", 4);
    uint64_t sid = open_session(id, "jobs", 2, 0, 0);
    kyu_workers_serve(W.w, false);
    assert_int_equal(commit_receive(0), 2);
    assert_int_equal(heartbeat(id, sid, 2), KYU_OK); /* done with both (deleted, say) */
    kyu_workers_serve(W.w, false);
    assert_int_equal(W.n_props, 2); /* a push in flight when the close comes */
    kyu_request_t req;
    memset(&req, 0, offsetof(kyu_request_t, qx));
    req.op = KYU_OP_WORKER_CLOSE;
    req.id = 9;
    req.fields = KYU_F_SID;
    req.sid = sid;
    zframe_t *other = zframe_new("x", 1);
    zframe_t *taken = other;
    kyu_err_t err;
    assert_int_equal(kyu_workers_close(W.w, &req, &taken, &err), KYU_ERR_NO_SESSION);
    assert_ptr_equal(taken, other); /* another connection's: refused, nothing changed */
    zframe_t *mine = zframe_dup(id);
    taken = mine;
    assert_int_equal(kyu_workers_close(W.w, &req, &taken, &err), KYU_OK);
    assert_null(taken); /* answered later */
    size_t sent = W.n_sent;
    assert_int_equal(W.n_rels, 1);          /* the two pushed before (their leases still held) */
    assert_int_equal(commit_receive(1), 2); /* what the push leased goes back, not pushed */
    assert_int_equal(W.n_sent, sent);
    assert_int_equal(W.n_rels, 2);
    kyu_workers_on_release(W.w, sid, &(kyu_result_t){0});
    assert_int_equal(W.n_sent, sent); /* one release still out */
    kyu_workers_on_release(W.w, sid, &(kyu_result_t){0});
    assert_int_equal(W.n_sent, sent + 1);
    assert_int_equal(last_sent()->rep.id, 9);
    assert_int_equal(last_sent()->rep.status, KYU_OK);
    assert_int_equal(last_sent()->rep.ev, 0);
    W.now += 5;
    ok(apply_release(0));
    ok(apply_release(1));
    counts("jobs", 4, 0);
    zframe_destroy(&id);
    zframe_destroy(&other);
}

static void test_sessions_end_when_leadership_is_lost_or_the_queue_deleted(void **state)
{
    (void)state;
    ok(apply1(W.f, cmd_create("other", 30)));
    zframe_t *a = zframe_new("a", 1), *b = zframe_new("b", 1);
    uint64_t sa = open_session(a, "jobs", 5, 0, 0);
    uint64_t sb = open_session(b, "other", 5, 0, 0);
    ok(apply1(W.f, cmd_delete_queue("jobs")));
    kyu_workers_mark(W.w, "jobs"); /* the state machine lists a deleted queue */
    kyu_workers_serve(W.w, false);
    assert_int_equal(last_sent()->rep.ev, KYU_EV_CLOSED);
    assert_int_equal(last_sent()->rep.status, KYU_ERR_NO_SUCH_QUEUE);
    assert_true(last_sent()->rep.sid == sa);
    assert_int_equal(kyu_workers_count(W.w), 1);
    W.serving = false;
    send_n("other", 1);
    kyu_workers_mark(W.w, "other");
    kyu_workers_serve(W.w, false);
    assert_int_equal(W.n_props, 0);
    assert_int_equal(W.n_rels, 0);
    assert_int_equal(last_sent()->rep.ev, KYU_EV_CLOSED);
    assert_int_equal(last_sent()->rep.status, KYU_ERR_NOT_LEADER);
    assert_string_equal(last_sent()->rep.leader, "tcp://next:1");
    assert_true(last_sent()->rep.sid == sb);
    assert_int_equal(kyu_workers_count(W.w), 0);
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    kyu_err_t err;
    assert_int_equal(kyu_workers_list(W.w, NULL, &rep, &err), KYU_OK);
    assert_int_equal(rep.n_workers, 0);
    kyu_reply_reset(&rep);
    zframe_destroy(&a);
    zframe_destroy(&b);
}

static void test_a_refused_or_undeliverable_push(void **state)
{
    (void)state;
    zframe_t *id = zframe_new("w", 1);
    send_n("jobs", 3);
    uint64_t sid = open_session(id, "jobs", 5, 0, 0);
    W.refuse = KYU_ERR_LIMIT_EXCEEDED; /* the in-flight limit: nothing proposed, credit kept */
    kyu_workers_serve(W.w, false);
    assert_int_equal(W.n_props, 0);
    invariant(sid);
    /* Refused, it is not the timer's business (it would fire again at once, forever) */
    assert_true(kyu_workers_next_visible(W.w) == UINT64_MAX);
    W.refuse = KYU_OK;
    kyu_workers_serve(W.w, true);
    assert_int_equal(W.n_props, 0);
    assert_int_equal(heartbeat(id, sid, 0), KYU_OK); /* a heartbeat tries again */
    kyu_workers_serve(W.w, false);
    assert_int_equal(W.n_props, 1);
    W.send_ok = false; /* the worker is gone: its session ends, what was leased goes back */
    assert_int_equal(commit_receive(0), 3);
    assert_int_equal(kyu_workers_count(W.w), 0);
    assert_int_equal(W.n_rels, 1);
    assert_int_equal(W.rels[0].n, 3);
    zframe_destroy(&id);
}

static void test_list_shows_live_sessions_by_id(void **state)
{
    (void)state;
    ok(apply1(W.f, cmd_create("other", 30)));
    zframe_t *a = zframe_new("a", 1);
    uint64_t s1 = open_session(a, "other", 3, 0, 0);
    uint64_t s2 = open_session(a, "jobs", 4, 0, 0);
    W.mono += 1234;
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    kyu_err_t err;
    assert_int_equal(kyu_workers_list(W.w, NULL, &rep, &err), KYU_OK);
    assert_int_equal(rep.n_workers, 2);
    assert_true(rep.workers[0].sid == s1 && rep.workers[1].sid == s2);
    assert_string_equal(rep.workers[1].queue, "jobs");
    assert_string_equal(rep.workers[1].host, "10.0.0.1");
    assert_int_equal(rep.workers[1].credit, 4);
    assert_int_equal(rep.workers[1].credit_total, 4);
    assert_int_equal(rep.workers[1].hb_ago_ms, 1234);
    assert_int_equal(rep.workers[1].age_ms, 1234);
    kyu_reply_reset(&rep);
    assert_int_equal(kyu_workers_list(W.w, "jobs", &rep, &err), KYU_OK);
    assert_int_equal(rep.n_workers, 1);
    kyu_reply_reset(&rep);
    zframe_destroy(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_release_makes_still_identical_leases_visible_and_nothing_else, setup, teardown),
        cmocka_unit_test_setup_teardown(test_release_items_decode_strictly, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pushes_stay_within_the_credit_and_credit_comes_back,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_new_total_credit_lowers_and_raises_what_is_pushed,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_sessions_of_a_queue_are_served_in_turn, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_a_silent_session_is_declared_dead_and_its_leases_released, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_waits_for_pushes_in_flight_and_the_release,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_sessions_end_when_leadership_is_lost_or_the_queue_deleted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_refused_or_undeliverable_push, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_shows_live_sessions_by_id, setup, teardown),
    };
    return cmocka_run_group_tests_name("workers", tests, NULL, NULL);
}
