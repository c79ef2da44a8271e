/* op_redrive: message move tasks, SQS's redrive of a dead-letter queue
 * (StartMessageMoveTask, ListMessageMoveTasks, CancelMessageMoveTask); rows: ops.c.
 *
 * A task is replicated state: START_MOVE_TASK makes it (RUNNING, with the number of messages
 * its queue holds then: ApproximateNumberOfMessagesToMove), and the leader drives it by
 * proposing REDRIVE_STEP commands with its time (the frontend's tick asks kyu_sm_redrive_due).
 * A step takes up to max of the queue's visible messages, in the order a receive takes them
 * (in-flight and delayed ones wait), and moves each one, in the step's command, all or
 * nothing, to its destination: the task's, or the queue its provenance record names (the
 * queue it was dead-lettered from). A message is in exactly one queue before and after the
 * step's entry, so a redrive never loses or duplicates one, across failovers and restarts
 * too: a step proposed by an old leader that commits moves what is visible when it applies,
 * nothing twice; one that does not commit moved nothing.
 *
 * A moved message is a new message of its destination, as in SQS ("redriven messages are new
 * messages"): a new seq (so it is last in the destination's order and its retention period
 * starts again), never received (receive count 0; a count kept at maxReceiveCount would send
 * it straight back), SentTimestamp the time of the move, visible at once or, when the
 * destination has a DelaySeconds, once that delay has passed, as a message sent to it would
 * be (the destination's long polls are woken: kyu_sm_add_message). Its record is copied whole
 * otherwise: body, attributes and, beyond SQS, its message id (SQS gives a new one). Its
 * provenance record is dropped with it from the dead-letter queue: in its destination it is a
 * message like any. A message larger (body and attributes) than the destination's
 * MaximumMessageSize would be refused by a send there: it does not move, and the task ends
 * FAILED ("MessageTooLarge: ...") as for a missing destination, below.
 *
 * The task ends COMPLETED once it has moved as many messages as it had to move, or its queue
 * is empty; CANCELLED by CANCEL_MOVE_TASK (what moved stays moved); FAILED, as SQS, when a
 * message's destination does not exist ("AWS.SimpleQueueService.NonExistentQueue": its source
 * queue, or the task's destination, was deleted) or is not known (a message sent to the
 * queue directly, not dead-lettered, and no destination given: "CouldNotDetermineMessageSource").
 * That message stays in the queue as it was (back in its place in the receive index), and the
 * messages moved before it stay moved. MaxNumberOfMessagesPerSecond (1..500) is enforced by
 * apply itself (GCRA: a step moves no more than the time since the task's start allows, and
 * after a pause no more than a second's worth at once), so a step proposed early or twice
 * moves no more; without it a step moves up to KYU_REDRIVE_STEP_MAX.
 *
 * Storage: meta "mt" qid(8) id(8) -> msgpack [status, destination, rate, moved, to_move,
 * started_ms, ended_ms, reason, tat_us]; in memory on the queue (queue_t.tasks, the latest
 * KYU_MOVE_TASKS_MAX, oldest first). The id is the index of the entry that started it
 * (unique, the same on every replica). A deleted queue's tasks are deleted with it.
 */
#include "sm_internal.h"

#include <stdlib.h>
#include <string.h>

#define TASK_KEY_LEN 18     /* "mt" qid(8) id(8) */
#define BURST_US 1000000ull /* after a pause a rate-limited task moves a second's worth at most */

static void task_key(uint8_t k[TASK_KEY_LEN], uint64_t qid, uint64_t id)
{
    k[0] = 'm', k[1] = 't';
    kyu_put_be64(k + 2, qid);
    kyu_put_be64(k + 10, id);
}

static void put_task(kyu_sm_t *self, const queue_t *q, const kyu_task_t *t)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 9);
    msgpack_pack_uint32(&pk, t->t.status);
    kyu_mp_pack_str(&pk, t->t.destination);
    msgpack_pack_uint32(&pk, t->t.rate);
    msgpack_pack_uint64(&pk, t->t.moved);
    msgpack_pack_uint64(&pk, t->t.to_move);
    msgpack_pack_uint64(&pk, t->t.started_ms);
    msgpack_pack_uint64(&pk, t->t.ended_ms);
    kyu_mp_pack_str(&pk, t->t.reason);
    msgpack_pack_uint64(&pk, t->tat_us);
    uint8_t k[TASK_KEY_LEN];
    task_key(k, q->qid, t->t.id);
    kyu_sm_put(self, KYU_CF_META, k, sizeof k, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
}

static bool decode_task(const char *v, size_t vl, kyu_task_t *t)
{
    msgpack_unpacked u;
    kyu_err_t ignored;
    if (kyu_msgpack_unpack_bounded(v, vl, 2, &u, &ignored) != KYU_OK)
        return false;
    const msgpack_object *o = &u.data, *f = o->via.array.ptr;
    bool ok = o->type == MSGPACK_OBJECT_ARRAY && o->via.array.size == 9;
    for (uint32_t i = 0; ok && i < 9; i++)
        ok = i == 1 || i == 7 ? f[i].type == MSGPACK_OBJECT_STR
                              : f[i].type == MSGPACK_OBJECT_POSITIVE_INTEGER;
    ok = ok && f[0].via.u64 >= KYU_MOVE_RUNNING && f[0].via.u64 <= KYU_MOVE_FAILED &&
         f[2].via.u64 <= KYU_MOVE_RATE_MAX &&
         kyu_mp_copy_str(&f[1], t->t.destination, KYU_NAME_MAX) &&
         kyu_mp_copy_str(&f[7], t->t.reason, KYU_MOVE_REASON_MAX - 1);
    if (ok) {
        t->t.status = (uint32_t)f[0].via.u64;
        t->t.rate = (uint32_t)f[2].via.u64;
        t->t.moved = f[3].via.u64;
        t->t.to_move = f[4].via.u64;
        t->t.started_ms = f[5].via.u64;
        t->t.ended_ms = f[6].via.u64;
        t->tat_us = f[8].via.u64;
    }
    msgpack_unpacked_destroy(&u);
    return ok;
}

kyu_code_t kyu_sm_tasks_load(kyu_sm_t *self, kyu_err_t *err)
{
    self->n_running_tasks = 0;
    zhashx_t *by_qid = zhashx_new(); /* "%016llx" of the qid -> queue */
    KYU_ASSERT(by_qid);
    for (queue_t *q = zhashx_first(self->queues); q; q = zhashx_next(self->queues)) {
        char id[17];
        snprintf(id, sizeof id, "%016llx", (unsigned long long)q->qid);
        zhashx_insert(by_qid, id, q);
    }
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(self->db, kyu_store_readopts(self->store),
                                                        kyu_store_cf(self->store, KYU_CF_META));
    kyu_code_t rc = KYU_OK;
    for (rocksdb_iter_seek(it, "mt", 2); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl = 0, vl = 0;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(it, &kl);
        const char *v = rocksdb_iter_value(it, &vl);
        if (kl < 2 || memcmp(k, "mt", 2) != 0)
            break;
        kyu_task_t t = {0};
        if (kl != TASK_KEY_LEN || !decode_task(v, vl, &t)) {
            rc = kyu_err_set(err, KYU_ERR_STORAGE, "corrupt message move task in the store");
            break;
        }
        char id[17];
        snprintf(id, sizeof id, "%016llx", (unsigned long long)kyu_get_be64(k + 2));
        queue_t *q = zhashx_lookup(by_qid, id);
        if (!q || q->n_tasks == KYU_MOVE_TASKS_MAX)
            continue; /* (a deleted queue's tasks are deleted with it) */
        if (!q->tasks) {
            q->tasks = calloc(KYU_MOVE_TASKS_MAX, sizeof *q->tasks);
            KYU_ASSERT(q->tasks);
        }
        t.t.id = kyu_get_be64(k + 10); /* the scan is in id order: oldest first */
        memcpy(t.t.source, q->name, sizeof q->name);
        q->tasks[q->n_tasks++] = t;
        self->n_running_tasks += t.t.status == KYU_MOVE_RUNNING;
    }
    char *rerr = NULL;
    rocksdb_iter_get_error(it, &rerr);
    if (rerr) {
        rc = kyu_err_set(err, KYU_ERR_STORAGE, "reading message move tasks: %s", rerr);
        free(rerr);
    }
    rocksdb_iter_destroy(it);
    zhashx_destroy(&by_qid);
    return rc;
}

void kyu_sm_tasks_drop(kyu_sm_t *self, queue_t *q)
{
    for (size_t i = 0; i < q->n_tasks; i++) {
        uint8_t k[TASK_KEY_LEN];
        task_key(k, q->qid, q->tasks[i].t.id);
        kyu_sm_del(self, KYU_CF_META, k, sizeof k);
        self->n_running_tasks -= q->tasks[i].t.status == KYU_MOVE_RUNNING;
    }
    q->n_tasks = 0;
}

/* The queue's running task, or NULL. */
static kyu_task_t *running(queue_t *q)
{
    kyu_task_t *t = q->n_tasks ? &q->tasks[q->n_tasks - 1] : NULL;
    return t && t->t.status == KYU_MOVE_RUNNING ? t : NULL;
}

static void end_task(kyu_sm_t *self, kyu_task_t *t, uint32_t status, uint64_t now)
{
    t->t.status = status;
    t->t.ended_ms = now;
    self->n_running_tasks--;
}

/* True when some queue's RedrivePolicy names q, or q ever received a dead-lettered message. */
static bool is_dead_letter_queue(kyu_sm_t *self, const queue_t *q)
{
    if (q->moved_in)
        return true;
    kyu_err_t ignored;
    return kyu_sm_check_not_dead_letter(self, q->name, &ignored) != KYU_OK;
}

/* What START_MOVE_TASK checks against the state, before proposing and again at apply. */
static kyu_code_t check_start(kyu_sm_t *self, const char *name, const char *dest, kyu_err_t *err)
{
    queue_t *q = zhashx_lookup(self->queues, name);
    if (!q)
        return kyu_err_set(err, KYU_ERR_NO_SUCH_QUEUE, "queue '%s' does not exist", name);
    if (!is_dead_letter_queue(self, q))
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "queue '%s' is no queue's dead-letter queue: a move task moves the "
                           "messages of a dead-letter queue",
                           name);
    const kyu_task_t *t = running(q);
    if (t)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "queue '%s' has a running move task (%llu): one at a time; cancel it "
                           "first",
                           name, (unsigned long long)t->t.id);
    if (dest[0] && strcmp(dest, name) == 0)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "queue '%s' cannot be the destination of its own move task", name);
    if (dest[0] && !zhashx_lookup(self->queues, dest))
        return kyu_err_set(err, KYU_ERR_NO_SUCH_QUEUE, "destination queue '%s' does not exist",
                           dest);
    return KYU_OK;
}

kyu_code_t kyu_op_start_move_validate(kyu_op_ctx_t *ctx, const kyu_request_t *req,
                                      const kyu_bodies_t *bodies, kyu_err_t *err)
{
    (void)bodies;
    if ((req->fields & KYU_F_RQ) &&
        kyu_sm_knows_request(ctx->sm, req->rq_client, req->rq_key,
                             ctx->replica ? kyu_replica_now(ctx->replica)
                                          : kyu_sm_last_now(ctx->sm)))
        return KYU_OK; /* a retry: answered from its first attempt */
    return check_start(ctx->sm, req->queue, (req->fields & KYU_F_DEST) ? req->dest : "", err);
}

void kyu_op_start_move_build(kyu_op_ctx_t *ctx, const kyu_request_t *req,
                             const kyu_bodies_t *bodies, kyu_command_t *cmd)
{
    (void)ctx, (void)bodies;
    if (req->fields & KYU_F_DEST)
        memcpy(cmd->move_dest, req->dest, sizeof cmd->move_dest);
    if (req->fields & KYU_F_RATE)
        cmd->move_rate = req->rate;
}

/* items = [destination or nil, rate (0: not set)] */
void kyu_op_start_move_encode(const kyu_command_t *cmd, msgpack_packer *pk)
{
    msgpack_pack_array(pk, 2);
    if (cmd->move_dest[0])
        kyu_mp_pack_str(pk, cmd->move_dest);
    else
        msgpack_pack_nil(pk);
    msgpack_pack_uint32(pk, cmd->move_rate);
}

bool kyu_op_start_move_decode(const msgpack_object *items, kyu_command_t *cmd)
{
    if (items->type != MSGPACK_OBJECT_ARRAY || items->via.array.size != 2)
        return false;
    const msgpack_object *d = &items->via.array.ptr[0], *r = &items->via.array.ptr[1];
    if (d->type != MSGPACK_OBJECT_NIL &&
        (!kyu_mp_copy_str(d, cmd->move_dest, KYU_NAME_MAX) || !cmd->move_dest[0]))
        return false;
    if (r->type != MSGPACK_OBJECT_POSITIVE_INTEGER || r->via.u64 > KYU_MOVE_RATE_MAX)
        return false;
    cmd->move_rate = (uint32_t)r->via.u64;
    return true;
}

/* The result names the task (only where somebody waits for it: the leader's waiter). */
static void answer_task(kyu_apply_t *a, const kyu_task_t *t)
{
    if (!a->want_bodies || a->res->task)
        return;
    a->res->task = malloc(sizeof *a->res->task);
    if (a->res->task) /* out of memory: answered OK without the task (libkyu: MALFORMED) */
        *a->res->task = t->t;
}

kyu_code_t kyu_op_start_move_apply(kyu_sm_t *self, const kyu_command_t *c, kyu_apply_t *a)
{
    if (check_start(self, c->queue, c->move_dest, kyu_result_err(a->res)) != KYU_OK)
        return KYU_OK;
    queue_t *q = zhashx_lookup(self->queues, c->queue);
    if (!q->tasks) {
        q->tasks = calloc(KYU_MOVE_TASKS_MAX, sizeof *q->tasks);
        KYU_ASSERT(q->tasks);
    }
    if (q->n_tasks == KYU_MOVE_TASKS_MAX) { /* the oldest goes (never the running one) */
        uint8_t k[TASK_KEY_LEN];
        task_key(k, q->qid, q->tasks[0].t.id);
        kyu_sm_del(self, KYU_CF_META, k, sizeof k);
        memmove(q->tasks, q->tasks + 1, (q->n_tasks - 1) * sizeof *q->tasks);
        q->n_tasks--;
    }
    kyu_task_t *t = &q->tasks[q->n_tasks++];
    *t = (kyu_task_t){.t = {.id = self->applied_index + 1,
                            .status = KYU_MOVE_RUNNING,
                            .rate = c->move_rate,
                            .to_move = q->n_messages,
                            .started_ms = c->now_ms},
                      .tat_us = c->now_ms * 1000};
    memcpy(t->t.source, q->name, sizeof q->name);
    memcpy(t->t.destination, c->move_dest, sizeof c->move_dest);
    self->n_running_tasks++;
    if (q->n_messages == 0)
        end_task(self, t, KYU_MOVE_COMPLETED, c->now_ms);
    put_task(self, q, t);
    answer_task(a, t);
    return KYU_OK;
}

/* A retried START_MOVE_TASK or CANCEL_MOVE_TASK is answered with the queue's latest task,
 * changing nothing. */
kyu_code_t kyu_op_move_replay(kyu_sm_t *self, const kyu_command_t *c, const kyu_dedup_t *d,
                              kyu_apply_t *a)
{
    (void)d;
    queue_t *q = kyu_sm_queue(self, c->queue, a->res);
    if (q && q->n_tasks)
        answer_task(a, &q->tasks[q->n_tasks - 1]);
    return KYU_OK;
}

void kyu_op_move_reply(const kyu_result_t *res, kyu_reply_t *rep, size_t *n_bodies)
{
    (void)n_bodies;
    if (!res->task)
        return;
    rep->tasks = malloc(sizeof *rep->tasks);
    if (!rep->tasks)
        return; /* out of memory: the reply says OK without the task */
    rep->tasks[0] = *res->task;
    rep->n_tasks = 1;
}

kyu_code_t kyu_op_cancel_move_apply(kyu_sm_t *self, const kyu_command_t *c, kyu_apply_t *a)
{
    queue_t *q = kyu_sm_queue(self, c->queue, a->res);
    if (!q)
        return KYU_OK;
    kyu_task_t *t = running(q);
    if (!t) {
        kyu_err_set(kyu_result_err(a->res), KYU_ERR_INVALID_ARGUMENT,
                    "queue '%s' has no running move task", c->queue);
        return KYU_OK;
    }
    end_task(self, t, KYU_MOVE_CANCELLED, c->now_ms);
    put_task(self, q, t);
    answer_task(a, t);
    return KYU_OK;
}

kyu_code_t kyu_op_list_moves_answer(kyu_op_ctx_t *ctx, const kyu_request_t *req, kyu_reply_t *rep,
                                    kyu_err_t *err)
{
    const queue_t *q = zhashx_lookup(ctx->sm->queues, req->queue);
    if (!q)
        return kyu_err_set(err, KYU_ERR_NO_SUCH_QUEUE, "queue '%s' does not exist", req->queue);
    size_t max = (req->fields & KYU_F_MAX) ? req->max : 1; /* SQS's MaxResults: 1 by default */
    size_t n = q->n_tasks < max ? q->n_tasks : max;
    rep->tasks = calloc(n ? n : 1, sizeof *rep->tasks);
    if (!rep->tasks)
        return kyu_err_set(err, KYU_ERR_INTERNAL, "out of memory");
    for (size_t i = 0; i < n; i++) /* newest first */
        rep->tasks[i] = q->tasks[q->n_tasks - 1 - i].t;
    rep->n_tasks = n;
    return KYU_OK;
}

/* ---- REDRIVE_STEP ---- */

/* How many messages t may move at now by its rate (UINT32_MAX: no rate), and the time its
 * allowance is counted from (tat, never earlier than a second before now). */
static uint64_t allowance(const kyu_task_t *t, uint64_t now, uint64_t *from_us)
{
    uint64_t now_us = now * 1000;
    *from_us = t->tat_us;
    if (!t->t.rate)
        return UINT32_MAX;
    if (now_us > BURST_US && *from_us < now_us - BURST_US)
        *from_us = now_us - BURST_US;
    uint64_t cost = (1000000ull + t->t.rate - 1) / t->t.rate; /* rounded up: never faster */
    return now_us > *from_us ? (now_us - *from_us) / cost : 0;
}

/* The most a step of t at now moves. */
static uint64_t step_max(const kyu_task_t *t, uint64_t now)
{
    uint64_t from = 0, n = allowance(t, now, &from);
    uint64_t left = t->t.to_move > t->t.moved ? t->t.to_move - t->t.moved : 0;
    n = n < left ? n : left;
    return n < KYU_REDRIVE_STEP_MAX ? n : KYU_REDRIVE_STEP_MAX;
}

bool kyu_sm_redrive_due(kyu_sm_t *self, uint64_t now, char queue[KYU_NAME_MAX + 1], uint64_t *task,
                        uint32_t *max)
{
    if (self->n_running_tasks == 0)
        return false;
    const kyu_task_t *best = NULL;
    uint32_t best_max = 0;
    for (queue_t *q = zhashx_first(self->queues); q; q = zhashx_next(self->queues)) {
        const kyu_task_t *t = running(q);
        if (!t || (best && best->stepped_at <= t->stepped_at))
            continue;
        uint64_t n = step_max(t, now);
        /* Messages to move now, or nothing left to move: a step ends the task. */
        if ((n > 0 && kyu_sm_index_has_visible(q, now)) || q->n_messages == 0 ||
            t->t.moved >= t->t.to_move) {
            best = t;
            best_max = n > 0 ? (uint32_t)n : 1;
        }
    }
    if (!best)
        return false;
    memcpy(queue, best->t.source, KYU_NAME_MAX + 1);
    *task = best->t.id;
    *max = best_max;
    return true;
}

/* items = [task id, max] */
void kyu_op_redrive_step_encode(const kyu_command_t *cmd, msgpack_packer *pk)
{
    msgpack_pack_array(pk, 2);
    msgpack_pack_uint64(pk, cmd->move_task);
    msgpack_pack_uint32(pk, cmd->move_max);
}

bool kyu_op_redrive_step_decode(const msgpack_object *items, kyu_command_t *cmd)
{
    if (items->type != MSGPACK_OBJECT_ARRAY || items->via.array.size != 2 ||
        items->via.array.ptr[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
        items->via.array.ptr[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
        items->via.array.ptr[1].via.u64 == 0 ||
        items->via.array.ptr[1].via.u64 > KYU_REDRIVE_STEP_MAX)
        return false;
    cmd->move_task = items->via.array.ptr[0].via.u64;
    cmd->move_max = (uint32_t)items->via.array.ptr[1].via.u64;
    return true;
}

/* Moves message seq of q to dest as a new message of dest (the top of this file), at now
 * (keep: only under planted bug 11, copies it and leaves it in q); a message larger (body and
 * attributes) than dest's MaximumMessageSize does not move: reason says why. */
static kyu_code_t move_one(kyu_sm_t *self, queue_t *q, queue_t *dest, uint64_t seq, uint64_t now,
                           bool keep, char *reason, kyu_err_t *err)
{
    uint8_t k[KEY_QS];
    key_qs(k, q->qid, seq);
    size_t vl = 0;
    char *rec = kyu_sm_read(self, KYU_CF_MESSAGES, k, KEY_QS, &vl, err);
    if (!rec || vl < 9) {
        free(rec);
        return err->code ? err->code
                         : kyu_err_set(err, KYU_ERR_STORAGE, "message record %llu missing",
                                       (unsigned long long)seq);
    }
    kyu_sent_t m;
    if (!kyu_sm_parse_message(rec, vl, &m)) {
        free(rec);
        return kyu_err_set(err, KYU_ERR_STORAGE, "message record %llu is corrupt",
                           (unsigned long long)seq);
    }
    size_t size = m.body_len + kyu_msg_attrs_size(&m.attrs);
    if (size > dest->max_size) {
        snprintf(reason, KYU_MOVE_REASON_MAX,
                 "MessageTooLarge: message %s has %zu bytes (body and attributes); queue '%s' "
                 "takes at most %u (its MaximumMessageSize)",
                 m.id, size, dest->name, dest->max_size);
        free(rec);
        return KYU_OK;
    }
    kyu_put_be64((uint8_t *)rec, now); /* SentTimestamp: its enqueue time there */
    kyu_sm_index_advance(dest, now);
    /* A new message of dest: its DelaySeconds holds it back, as for a send. */
    kyu_sm_add_message(self, dest, self->next_seq++, rec, vl, NULL, 0, now,
                       (uint64_t)dest->delay * 1000);
    free(rec);
    if (!keep) {
        kyu_sm_drop_message(self, q, seq); /* record, lease, provenance, index */
        q->n_messages--;
    }
    dest->n_messages++;
    kyu_sm_touch(self, q);
    kyu_sm_touch(self, dest);
    return KYU_OK;
}

/* Where message seq of q goes for task t: its queue, or NULL with why it has none in reason
 * (a read error: err set, NULL). */
static queue_t *destination_of(kyu_sm_t *self, queue_t *q, const kyu_task_t *t, uint64_t seq,
                               char *reason, kyu_err_t *err)
{
    if (t->t.destination[0]) {
        queue_t *d = zhashx_lookup(self->queues, t->t.destination);
        if (!d)
            snprintf(reason, KYU_MOVE_REASON_MAX,
                     "AWS.SimpleQueueService.NonExistentQueue: the destination queue '%s' does "
                     "not exist",
                     t->t.destination);
        return d;
    }
    kyu_msg_meta_t m = {0};
    if (!kyu_sm_read_provenance(self, q, seq, &m, err))
        return NULL;
    if (!m.dlq_source[0]) {
        snprintf(reason, KYU_MOVE_REASON_MAX,
                 "CouldNotDetermineMessageSource: message %llu was sent to '%s' directly; give "
                 "a destination",
                 (unsigned long long)seq, q->name);
        return NULL;
    }
    queue_t *d = zhashx_lookup(self->queues, m.dlq_source);
    if (!d || d == q)
        snprintf(reason, KYU_MOVE_REASON_MAX,
                 "AWS.SimpleQueueService.NonExistentQueue: the source queue '%s' of message "
                 "%llu does not exist",
                 m.dlq_source, (unsigned long long)seq);
    return d != q ? d : NULL;
}

kyu_code_t kyu_op_redrive_step_apply(kyu_sm_t *self, const kyu_command_t *c, kyu_apply_t *a)
{
    queue_t *q = zhashx_lookup(self->queues, c->queue);
    kyu_task_t *t = q ? running(q) : NULL;
    if (!t || t->t.id != c->move_task)
        return KYU_OK; /* ended (or the queue deleted) since the leader proposed it */
    t->stepped_at = c->now_ms;
    uint64_t from_us = 0, cost = t->t.rate ? (1000000ull + t->t.rate - 1) / t->t.rate : 0;
    allowance(t, c->now_ms, &from_us);
    uint64_t max = step_max(t, c->now_ms), n = 0;
    if (max > c->move_max)
        max = c->move_max;
    if (max > 0)
        kyu_sm_mark_seq(self, self->next_seq, c->now_ms); /* retention (sm_expiry.c) */
    char reason[KYU_MOVE_REASON_MAX] = "";
    while (n < max) {
        uint64_t seq;
        lease_t l;
        if (kyu_sm_index_take(q, c->now_ms, 1, &seq, &l) == 0)
            break;
        queue_t *dest = destination_of(self, q, t, seq, reason, a->err);
        if (!dest) {
            kyu_sm_index_put_back(q, seq, &l); /* it stays as it was */
            if (a->err->code)
                return a->err->code;
            end_task(self, t, KYU_MOVE_FAILED, c->now_ms);
            memcpy(t->t.reason, reason, sizeof t->t.reason);
            break;
        }
        bool keep = false; /* a message is in exactly one queue after its move */
#if KYU_REPLICA_PLANTED_BUG == 11
        /* Planted bug 11 (docs/RAFT.md): the second message of a step is copied to its
         * destination and left in the dead-letter queue too, so a later step moves it again;
         * kyu-sim-kyu-planted11 must report it. */
        keep = n == 1;
#endif
        kyu_code_t rc = move_one(self, q, dest, seq, c->now_ms, keep, reason, a->err);
        if (rc != KYU_OK)
            return rc;
        if (reason[0]) { /* too large for its destination: it stays as it was */
            kyu_sm_index_put_back(q, seq, &l);
            end_task(self, t, KYU_MOVE_FAILED, c->now_ms);
            memcpy(t->t.reason, reason, sizeof t->t.reason);
            break;
        }
        if (keep)
            kyu_sm_index_put_back(q, seq, &l);
        n++;
    }
    t->t.moved += n;
    if (t->t.rate)
        t->tat_us = from_us + n * cost;
    if (t->t.status == KYU_MOVE_RUNNING && (t->t.moved >= t->t.to_move || q->n_messages == 0))
        end_task(self, t, KYU_MOVE_COMPLETED, c->now_ms);
    put_task(self, q, t);
    return KYU_OK;
}
