/* cli_redrive: kyu redrive — SQS's message move tasks (StartMessageMoveTask,
 * ListMessageMoveTasks, CancelMessageMoveTask) on a dead-letter queue. */
#include "cli.h"
#include "kyu_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define PROGRESS_EVERY_MS 500 /* how often a waiting redrive asks for its progress */

static json_t *task_json(const kyu_move_task_t *t)
{
    char id[24];
    snprintf(id, sizeof id, "%" PRIu64, t->id);
    const char *st = kyu_move_status_name(t->status);
    json_t *o =
        json_pack("{s:s, s:s, s:s, s:I, s:I, s:I}", "TaskHandle", id, "Status", st ? st : "UNKNOWN",
                  "SourceQueue", t->source, "ApproximateNumberOfMessagesMoved",
                  (json_int_t)t->moved, "ApproximateNumberOfMessagesToMove", (json_int_t)t->to_move,
                  "StartedTimestamp", (json_int_t)t->started_ms);
    if (o && t->destination[0])
        json_object_set_new(o, "DestinationQueue", json_string(t->destination));
    if (o && t->rate)
        json_object_set_new(o, "MaxNumberOfMessagesPerSecond", json_integer(t->rate));
    if (o && t->ended_ms)
        json_object_set_new(o, "EndedTimestamp", json_integer((json_int_t)t->ended_ms));
    if (o && t->reason[0])
        json_object_set_new(o, "FailureReason", json_string(t->reason));
    return o;
}

static int print_task(const cli_t *cli, const kyu_move_task_t *t)
{
    if (cli->json)
        return cli_print_json(task_json(t));
    const char *st = kyu_move_status_name(t->status);
    printf("%" PRIu64 " %s moved %" PRIu64 " of %" PRIu64 " from %s to %s", t->id,
           st ? st : "UNKNOWN", t->moved, t->to_move, t->source,
           t->destination[0] ? t->destination : "their source queues");
    if (t->rate)
        printf(" at most %u/s", t->rate);
    printf(" started %" PRIu64, t->started_ms);
    if (t->ended_ms)
        printf(" ended %" PRIu64, t->ended_ms);
    if (t->reason[0])
        printf(": %s", t->reason);
    putchar('\n');
    return CLI_EXIT_OK;
}

/* Exit status of a task that ended: 0 when it completed. */
static int ended(const cli_t *cli, const kyu_move_task_t *t)
{
    if (t->status == KYU_MOVE_COMPLETED)
        return CLI_EXIT_OK;
    if (t->status == KYU_MOVE_FAILED)
        return cli_failf(cli, "the move task failed: %s", t->reason);
    return cli_failf(cli, "the move task was cancelled after moving %" PRIu64 " messages",
                     t->moved);
}

int cli_cmd_redrive(cli_t *cli, cli_args_t *a)
{
    kyu_err_t err = {0};
    const char *q = a->args[0];
    if (a->list) {
        kyu_move_task_t tasks[KYU_MOVE_TASKS_MAX];
        size_t n = 0;
        if (kyu_client_list_move_tasks(cli->client, q, KYU_MOVE_TASKS_MAX, tasks, &n, &err) !=
            KYU_OK)
            return cli_fail(cli, &err);
        int rc = CLI_EXIT_OK;
        for (size_t i = 0; i < n && rc == CLI_EXIT_OK; i++)
            rc = print_task(cli, &tasks[i]);
        return rc;
    }
    kyu_move_task_t t;
    if (a->cancel) {
        if (kyu_client_cancel_move_task(cli->client, q, &t, &err) != KYU_OK)
            return cli_fail(cli, &err);
        return print_task(cli, &t);
    }
    if (kyu_client_start_move_task(cli->client, q, a->to, a->rate, &t, &err) != KYU_OK)
        return cli_fail(cli, &err);
    int rc = print_task(cli, &t);
    if (a->no_wait || rc != CLI_EXIT_OK)
        return rc;
    /* Progress until the task ends: a line whenever the count moved. */
    uint64_t id = t.id, shown = t.moved;
    while (t.status == KYU_MOVE_RUNNING) {
        kyu_client_pause_ms(PROGRESS_EVERY_MS);
        kyu_move_task_t latest[1];
        size_t n = 0;
        if (kyu_client_list_move_tasks(cli->client, q, 1, latest, &n, &err) != KYU_OK)
            return cli_fail(cli, &err);
        if (n == 0 || latest[0].id != id)
            return cli_failf(cli, "move task %" PRIu64 " is gone (queue '%s' deleted?)", id, q);
        t = latest[0];
        if (t.moved != shown || t.status != KYU_MOVE_RUNNING) {
            shown = t.moved;
            if ((rc = print_task(cli, &t)) != CLI_EXIT_OK)
                return rc;
            fflush(stdout);
        }
    }
    return ended(cli, &t);
}
