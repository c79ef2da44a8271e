/* list_workers: libkyu's LIST_WORKERS, the worker sessions the leader holds (the sessions
 * themselves, WORKER_OPEN and its pushes, are the consumer's). */
#include "kyu_internal.h"

#include <stdlib.h>
#include <string.h>

kyu_code_t kyu_client_list_workers(kyu_client_t *self, const char *queue,
                                   kyu_worker_info_t **workers_p, size_t *n, kyu_err_t *err)
{
    *workers_p = NULL;
    *n = 0;
    kyu_request_t req = {.op = KYU_OP_LIST_WORKERS};
    if (queue) {
        kyu_code_t rc = kyu_client_set_queue(&req, queue, err);
        if (rc != KYU_OK)
            return rc;
    }
    kyu_reply_t rep;
    kyu_reply_init(&rep);
    kyu_code_t rc = kyu_client_call(self, &req, NULL, NULL, 0, &rep, NULL, err);
    if (rc == KYU_OK && !rep.workers)
        rc = kyu_err_set(err, KYU_ERR_MALFORMED, "the reply has no list of workers");
    if (rc == KYU_OK) {
        *workers_p = rep.workers; /* the reply's array, handed over */
        *n = rep.n_workers;
        rep.workers = NULL;
    }
    kyu_reply_reset(&rep);
    return rc;
}
