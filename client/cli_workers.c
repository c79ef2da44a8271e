/* cli_workers: kyu workers [QUEUE] — the worker sessions the leader holds (LIST_WORKERS). */
#include "cli.h"
#include "kyu_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

static json_t *worker_json(const kyu_worker_info_t *w)
{
    return json_pack("{s:I, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I}", "id", (json_int_t)w->sid,
                     "name", w->name, "host", w->host, "queue", w->queue, "credit",
                     (json_int_t)w->credit, "credit_total", (json_int_t)w->credit_total, "held",
                     (json_int_t)w->held, "last_heartbeat_ms", (json_int_t)w->hb_ago_ms, "age_ms",
                     (json_int_t)w->age_ms);
}

int cli_cmd_workers(cli_t *cli, cli_args_t *a)
{
    kyu_err_t err = {0};
    kyu_worker_info_t *w = NULL;
    size_t n = 0;
    if (kyu_client_list_workers(cli->client, a->n_args ? a->args[0] : NULL, &w, &n, &err) != KYU_OK)
        return cli_fail(cli, &err);
    int rc = CLI_EXIT_OK;
    if (!cli->json)
        printf("%-20s %-24s %-16s %-20s %7s %7s %7s %s\n", "ID", "NAME", "HOST", "QUEUE", "CREDIT",
               "TOTAL", "HELD", "LAST-HEARTBEAT");
    for (size_t i = 0; i < n && rc == CLI_EXIT_OK; i++) {
        if (cli->json) {
            rc = cli_print_json(worker_json(&w[i]));
            continue;
        }
        printf("%-20" PRIu64 " %-24s %-16s %-20s %7u %7u %7u %" PRIu64 "ms ago\n", w[i].sid,
               w[i].name[0] ? w[i].name : "-", w[i].host[0] ? w[i].host : "-", w[i].queue,
               w[i].credit, w[i].credit_total, w[i].held, w[i].hb_ago_ms);
    }
    free(w);
    return rc;
}
