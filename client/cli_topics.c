/* cli_topics: `kyu create-topic`, `delete-topic`, `list-topics`, `subscribe`, `unsubscribe`
 * and `list-subscriptions` (SNS-style topics; `kyu publish` is cli_send.c's). */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

int cli_cmd_create_topic(cli_t *cli, cli_args_t *a)
{
    kyu_err_t err = {0};
    if (kyu_client_create_topic_with(cli->client, a->args[0], a->fifo > 0, a->cbd > 0, &err) !=
        KYU_OK)
        return cli_fail(cli, &err);
    return CLI_EXIT_OK;
}

int cli_cmd_delete_topic(cli_t *cli, cli_args_t *a)
{
    kyu_err_t err = {0};
    if (kyu_client_delete_topic(cli->client, a->args[0], &err) != KYU_OK)
        return cli_fail(cli, &err);
    return CLI_EXIT_OK;
}

int cli_cmd_list_topics(cli_t *cli, cli_args_t *a)
{
    (void)a;
    kyu_err_t err = {0};
    char **names = NULL;
    size_t n = 0;
    if (kyu_client_list_topics(cli->client, &names, &n, &err) != KYU_OK)
        return cli_fail(cli, &err);
    int rc = CLI_EXIT_OK;
    for (size_t i = 0; i < n && rc == CLI_EXIT_OK; i++) {
        if (cli->json)
            rc = cli_print_json(json_pack("{s:s}", "TopicName", names[i]));
        else
            puts(names[i]);
    }
    kyu_queue_names_destroy(&names);
    return rc;
}

int cli_cmd_subscribe(cli_t *cli, cli_args_t *a)
{
    if (!cli_check_queue(cli, a->args[1]))
        return CLI_EXIT_USAGE;
    if (a->has_filter_scope && !a->filter)
        return cli_usage_error(cli, "--filter-scope is for a filter policy: give --filter too");
    kyu_err_t err = {0};
    char id[KYU_SUB_ID_LEN + 1];
    if (kyu_client_subscribe_filter(cli->client, a->args[0], a->args[1], a->raw, a->filter,
                                    a->filter_body, id, &err) != KYU_OK)
        return cli_fail(cli, &err);
    if (cli->json)
        return cli_print_json(json_pack("{s:s}", "SubscriptionId", id));
    puts(id);
    return CLI_EXIT_OK;
}

int cli_cmd_unsubscribe(cli_t *cli, cli_args_t *a)
{
    kyu_err_t err = {0};
    if (kyu_client_unsubscribe(cli->client, a->args[0], &err) != KYU_OK)
        return cli_fail(cli, &err);
    return CLI_EXIT_OK;
}

/* One line per subscription: ID TOPIC QUEUE raw|envelope, and for a filtered one
 * filter:attributes|filter:body and its policy; with --json SNS's names. */
int cli_cmd_list_subscriptions(cli_t *cli, cli_args_t *a)
{
    kyu_err_t err = {0};
    kyu_sub_info_t *subs = NULL;
    size_t n = 0;
    if (kyu_client_list_subscriptions(cli->client, a->n_args ? a->args[0] : NULL, &subs, &n,
                                      &err) != KYU_OK)
        return cli_fail(cli, &err);
    int rc = CLI_EXIT_OK;
    for (size_t i = 0; i < n && rc == CLI_EXIT_OK; i++) {
        const char *scope = !subs[i].filtered     ? NULL
                            : subs[i].filter_body ? "MessageBody"
                                                  : "MessageAttributes";
        if (cli->json) {
            json_t *o = json_pack("{s:s, s:s, s:s, s:b}", "SubscriptionId", subs[i].id, "TopicName",
                                  subs[i].topic, "QueueName", subs[i].queue, "RawMessageDelivery",
                                  subs[i].raw);
            if (o && scope) /* SNS's attributes: the policy is a string of JSON */
                json_object_set_new(o, "FilterPolicyScope", json_string(scope));
            if (o && subs[i].policy)
                json_object_set_new(o, "FilterPolicy", json_string(subs[i].policy));
            rc = cli_print_json(o);
        } else {
            printf("%s %s %s %s%s%s%s\n", subs[i].id, subs[i].topic, subs[i].queue,
                   subs[i].raw ? "raw" : "envelope",
                   !scope                ? ""
                   : subs[i].filter_body ? " filter:body"
                                         : " filter:attributes",
                   subs[i].policy ? " " : "", subs[i].policy ? subs[i].policy : "");
        }
    }
    free(subs);
    return rc;
}

int cli_cmd_set_subscription_attributes(cli_t *cli, cli_args_t *a)
{
    if (a->filter && a->no_filter)
        return cli_usage_error(cli, "give --filter JSON or --no-filter, not both");
    if (a->has_filter_scope && a->no_filter)
        return cli_usage_error(cli, "--filter-scope is for a filter policy, not with --no-filter");
    if (a->raw && a->no_raw)
        return cli_usage_error(cli, "give --raw or --no-raw, not both");
    if (!a->filter && !a->no_filter && !a->has_filter_scope && !a->raw && !a->no_raw)
        return cli_usage_error(cli, "give at least one of --filter JSON, --no-filter, "
                                    "--filter-scope attributes|body, --raw, --no-raw");
    kyu_sub_change_t change = {.raw = a->raw      ? 1
                                      : a->no_raw ? 0
                                                  : -1,
                               .policy = a->filter,
                               .no_policy = a->no_filter,
                               .body_scope = a->has_filter_scope ? a->filter_body : -1};
    kyu_err_t err = {0};
    if (kyu_client_set_subscription_attributes(cli->client, a->args[0], &change, &err) != KYU_OK)
        return cli_fail(cli, &err);
    return CLI_EXIT_OK;
}

/* SNS's attribute names; with --json one object of them, their values strings as SNS's. */
int cli_cmd_get_subscription_attributes(cli_t *cli, cli_args_t *a)
{
    kyu_err_t err = {0};
    kyu_sub_info_t *s = NULL;
    if (kyu_client_get_subscription_attributes(cli->client, a->args[0], &s, &err) != KYU_OK)
        return cli_fail(cli, &err);
    const char *rows[][2] = {
        {"SubscriptionId", s->id},
        {"TopicName", s->topic},
        {"QueueName", s->queue},
        {"RawMessageDelivery", s->raw ? "true" : "false"},
        {"FilterPolicyScope", !s->filtered     ? NULL
                              : s->filter_body ? "MessageBody"
                                               : "MessageAttributes"},
        {"FilterPolicy", s->policy},
    };
    json_t *obj = cli->json ? json_object() : NULL;
    int rc = CLI_EXIT_OK;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0] && rc == CLI_EXIT_OK; i++) {
        if (!rows[i][1])
            continue;
        if (!cli->json)
            printf("%s %s\n", rows[i][0], rows[i][1]);
        else if (!obj || json_object_set_new(obj, rows[i][0], json_string(rows[i][1])) != 0)
            rc = cli_failf(cli, "cannot build JSON output (out of memory)");
    }
    free(s);
    if (obj && rc == CLI_EXIT_OK)
        return cli_print_json(obj);
    json_decref(obj);
    return rc;
}
