/* frontend_workers: the I/O of the worker sessions (workers.h) — their ops from the socket,
 * their pushes to it, the RECEIVE and RELEASE_LEASES commands they propose, their results,
 * and their heartbeat timers on the loop. Their wakes come with the long polls' ones
 * (frontend_wait.c: kyu_frontend_serve_waiting hands the state machine's list to both). */
#include "frontend_internal.h"

#include <string.h>

static uint64_t io_mono(void *arg)
{
    (void)arg;
    return (uint64_t)zclock_mono();
}

static uint64_t io_cluster(void *arg)
{
    kyu_frontend_t *self = arg;
    return kyu_replica_now(self->ctx.replica);
}

static bool io_serving(void *arg)
{
    kyu_frontend_t *self = arg;
    return self->ctx.replica && kyu_replica_serving(self->ctx.replica);
}

static const char *io_leader(void *arg)
{
    kyu_frontend_t *self = arg;
    return self->ctx.replica ? kyu_replica_leader_endpoint(self->ctx.replica) : "";
}

static bool io_send(void *arg, zframe_t *identity, const kyu_reply_t *rep,
                    const void *const *bodies, const size_t *lens, size_t n_bodies)
{
    return kyu_frontend_send_reply(arg, identity, rep, bodies, lens, n_bodies);
}

/* Proposes cmd for session sid (the waiter remembers it, and what a RECEIVE asked for). */
static kyu_code_t propose_for(kyu_frontend_t *self, const kyu_op_row_t *row, kyu_command_t *cmd,
                              uint64_t sid, uint32_t asked, kyu_err_t *err)
{
    waiter_t *w = malloc(sizeof *w);
    if (!w)
        return kyu_err_set(err, KYU_ERR_BUSY, "out of memory");
    *w = (waiter_t){.row = row, .sid = sid, .asked = asked};
    if (kyu_replica_propose(self->ctx.replica, cmd, w, err) != KYU_OK) {
        free(w);
        return err->code;
    }
    return KYU_OK;
}

/* A push: a RECEIVE as a client's, checked the same way first (the queue, the in-flight
 * limit: a queue at its limit costs no log write). */
static kyu_code_t io_propose_receive(void *arg, uint64_t sid, const char *queue, int64_t vt,
                                     uint32_t max, kyu_err_t *err)
{
    kyu_frontend_t *self = arg;
    const kyu_op_row_t *row = kyu_ops_row(KYU_OP_RECEIVE);
    kyu_request_t req;
    memset(&req, 0, offsetof(kyu_request_t, qx));
    req.op = KYU_OP_RECEIVE;
    req.fields = KYU_F_QUEUE | KYU_F_MAX | (vt >= 0 ? KYU_F_VT : 0);
    snprintf(req.queue, sizeof req.queue, "%s", queue);
    req.max = max;
    req.vt = vt >= 0 ? (uint32_t)vt : 0;
    if (row->validate(&self->ctx, &req, NULL, err) != KYU_OK)
        return err->code;
    kyu_frontend_ensure_handle_key(self);
    kyu_command_t cmd;
    kyu_command_init(&cmd);
    cmd.type = row->cmd;
    snprintf(cmd.queue, sizeof cmd.queue, "%s", queue);
    cmd.vt = vt;
    cmd.max = max;
    cmd.now_ms = kyu_replica_now(self->ctx.replica);
    row->build(&self->ctx, &req, NULL, &cmd);
    return propose_for(self, row, &cmd, sid, max, err);
}

static kyu_code_t io_propose_release(void *arg, uint64_t sid, const char *queue,
                                     const uint8_t *recs, size_t n, kyu_err_t *err)
{
    kyu_frontend_t *self = arg;
    const kyu_op_row_t *row = kyu_ops_row(KYU_OP_RELEASE_LEASES);
    kyu_command_t cmd;
    kyu_command_init(&cmd);
    cmd.type = row->cmd;
    snprintf(cmd.queue, sizeof cmd.queue, "%s", queue);
    cmd.vt = -1;
    cmd.now_ms = kyu_replica_now(self->ctx.replica);
    cmd.rel = recs; /* encoded before propose returns */
    cmd.n_rel = n;
    return propose_for(self, row, &cmd, sid, 0, err);
}

static int on_session_timer(zloop_t *loop, int timer_id, void *token)
{
    (void)loop, (void)timer_id;
    kyu_workers_on_timer(token);
    return 0;
}

static int io_timer_add(void *arg, uint32_t ms, void *token)
{
    kyu_frontend_t *self = arg;
    return self->loop ? zloop_timer(self->loop, ms, 0, on_session_timer, token) : -1;
}

static void io_timer_end(void *arg, int id)
{
    kyu_frontend_t *self = arg;
    if (self->loop && id >= 0)
        zloop_timer_end(self->loop, id);
}

kyu_workers_t *kyu_frontend_workers_new(kyu_frontend_t *self)
{
    kyu_workers_io_t io = {.arg = self,
                           .mono_ms = io_mono,
                           .cluster_ms = io_cluster,
                           .serving = io_serving,
                           .leader = io_leader,
                           .send = io_send,
                           .propose_receive = io_propose_receive,
                           .propose_release = io_propose_release,
                           .timer_add = io_timer_add,
                           .timer_end = io_timer_end};
    kyu_workers_t *w = kyu_workers_new(self->ctx.sm, &io);
    if (w)
        kyu_workers_set_timers(w, false); /* until the loop is set */
    return w;
}

void kyu_frontend_session(kyu_frontend_t *self, zframe_t **identity, const kyu_op_row_t *row,
                          const kyu_request_t *req, const char *host)
{
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    rep.id = req->id;
    kyu_err_t err;
    kyu_err_clear(&err);
    if (row->session(&self->ctx, req, identity, host, &rep, &err) != KYU_OK)
        kyu_frontend_send_error(self, *identity, req->id, err.code, err.msg);
    else if (*identity)
        kyu_frontend_send_reply(self, *identity, &rep, NULL, NULL, 0);
    kyu_reply_reset(&rep);
    self->rearm = true; /* a session opened or gave credit back: its queue is served */
}

void kyu_frontend_workers_result(kyu_frontend_t *self, waiter_t *w, const kyu_result_t *res)
{
    if (w->row->op == KYU_OP_RECEIVE)
        kyu_workers_on_receive(self->workers, w->sid, w->asked, res);
    else
        kyu_workers_on_release(self->workers, w->sid, res);
    self->rearm = true;
}
