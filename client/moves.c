/* moves: libkyu's message move tasks (SQS's StartMessageMoveTask, ListMessageMoveTasks,
 * CancelMessageMoveTask): the redrive of a dead-letter queue. */
#include "kyu_internal.h"

#include <stdlib.h>
#include <string.h>

/* Calls req and copies the reply's tasks (up to cap) into out. */
static kyu_code_t call_tasks(kyu_client_t *self, const kyu_request_t *req, kyu_move_task_t *out,
                             size_t cap, size_t *n, kyu_err_t *err)
{
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    if (n)
        *n = 0;
    kyu_code_t rc = kyu_client_call(self, req, NULL, NULL, 0, &rep, NULL, err);
    if (rc == KYU_OK && rep.n_tasks == 0 && cap == 1)
        rc = kyu_err_set(err, KYU_ERR_MALFORMED, "the reply names no move task");
    for (size_t i = 0; rc == KYU_OK && i < rep.n_tasks && i < cap; i++) {
        out[i] = rep.tasks[i];
        if (n)
            (*n)++;
    }
    kyu_reply_reset(&rep);
    return rc;
}

kyu_code_t kyu_client_start_move_task(kyu_client_t *self, const char *queue,
                                      const char *destination, int max_per_second,
                                      kyu_move_task_t *task, kyu_err_t *err)
{
    kyu_request_t req = {.op = KYU_OP_START_MOVE_TASK};
    kyu_code_t rc = kyu_client_set_queue(&req, queue, err);
    if (rc != KYU_OK)
        return rc;
    if (destination) {
        if (!kyu_queue_name_valid(destination, strlen(destination)))
            return kyu_err_set(err, KYU_ERR_INVALID_NAME,
                               "destination '%.80s': queue names are 1 to %d characters of "
                               "letters, digits, - and _",
                               destination, KYU_NAME_MAX);
        snprintf(req.dest, sizeof req.dest, "%s", destination);
        req.fields |= KYU_F_DEST;
    }
    if (max_per_second != -1) {
        if (max_per_second < 1 || max_per_second > KYU_MOVE_RATE_MAX)
            return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                               "MaxNumberOfMessagesPerSecond must be 1 to %d, not %d",
                               KYU_MOVE_RATE_MAX, max_per_second);
        req.rate = (uint32_t)max_per_second;
        req.fields |= KYU_F_RATE;
    }
    kyu_move_task_t ignored;
    return call_tasks(self, &req, task ? task : &ignored, 1, NULL, err);
}

kyu_code_t kyu_client_list_move_tasks(kyu_client_t *self, const char *queue, int max,
                                      kyu_move_task_t *tasks, size_t *n, kyu_err_t *err)
{
    kyu_request_t req = {.op = KYU_OP_LIST_MOVE_TASKS, .fields = KYU_F_MAX};
    *n = 0;
    if (max < 1 || max > KYU_MOVE_TASKS_MAX)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "list 1 to %d move tasks, not %d",
                           KYU_MOVE_TASKS_MAX, max);
    req.max = (uint32_t)max;
    kyu_code_t rc = kyu_client_set_queue(&req, queue, err);
    return rc == KYU_OK ? call_tasks(self, &req, tasks, (size_t)max, n, err) : rc;
}

kyu_code_t kyu_client_cancel_move_task(kyu_client_t *self, const char *queue, kyu_move_task_t *task,
                                       kyu_err_t *err)
{
    kyu_request_t req = {.op = KYU_OP_CANCEL_MOVE_TASK};
    kyu_code_t rc = kyu_client_set_queue(&req, queue, err);
    kyu_move_task_t ignored;
    return rc == KYU_OK ? call_tasks(self, &req, task ? task : &ignored, 1, NULL, err) : rc;
}
