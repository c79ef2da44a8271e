/* cli_cluster: `kyu cluster status` and `kyu cluster transfer [ID]` (sent to the leader,
 * found by failover; it returns once the transfer has started).
 *
 * `kyu cluster status`: Every endpoint of --broker is asked on its own
 * connection (a node answers for itself, leader or not); one that does not answer within
 * the timeout is printed as unreachable. Exit 0 when at least one node answered. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STATUS_TIMEOUT_MS 2000

static int print_node(const cli_t *cli, const kyu_node_status_t *n)
{
    if (cli->json)
        return cli_print_json(
            json_pack("{s:I, s:s, s:s, s:s, s:I, s:I, s:I}", "id", (json_int_t)n->id,
                      "raft_address", n->raft_address, "endpoint", n->endpoint, "role", n->role,
                      "term", (json_int_t)n->term, "commit_index", (json_int_t)n->commit_index,
                      "applied_index", (json_int_t)n->applied_index));
    printf("%-4llu %-28s %-28s %-11s term %-6llu commit %-10llu applied %llu\n",
           (unsigned long long)n->id, n->raft_address[0] ? n->raft_address : "-", n->endpoint,
           n->role, (unsigned long long)n->term, (unsigned long long)n->commit_index,
           (unsigned long long)n->applied_index);
    return CLI_EXIT_OK;
}

static int transfer(cli_t *cli, uint64_t to)
{
    if (!cli_connect(cli))
        return CLI_EXIT_ERROR;
    kyu_err_t err = {0};
    if (kyu_client_cluster_transfer(cli->client, to, &err) != KYU_OK)
        return cli_fail(cli, &err);
    if (cli->json)
        return cli_print_json(json_pack("{s:b}", "TransferStarted", 1));
    puts("leadership transfer started");
    return CLI_EXIT_OK;
}

int cli_cmd_cluster(cli_t *cli, cli_args_t *a)
{
    if (strcmp(a->args[0], "transfer") == 0)
        return transfer(cli, a->n_args > 1 ? (uint64_t)a->max : 0);
    int answered = 0, rc = CLI_EXIT_OK;
    const char *p = cli->broker;
    while (*p) {
        size_t len = strcspn(p, ",");
        char ep[KYU_ENDPOINT_MAX];
        if (len == 0 || len >= sizeof ep)
            return cli_failf(cli, "bad endpoint list '%s'", cli->broker);
        memcpy(ep, p, len);
        ep[len] = '\0';
        p += len + (p[len] == ',');
        kyu_client_opts_t o = kyu_client_opts_default();
        o.timeout_ms = cli->timeout_ms < STATUS_TIMEOUT_MS ? cli->timeout_ms : STATUS_TIMEOUT_MS;
        kyu_err_t err = {0};
        kyu_client_t *c = kyu_client_new_opts(ep, &o, &err);
        kyu_node_status_t n = {0};
        if (c && kyu_client_cluster_status(c, &n, &err) == KYU_OK) {
            answered++;
        } else {
            memset(&n, 0, sizeof n);
            snprintf(n.endpoint, sizeof n.endpoint, "%s", ep);
            snprintf(n.role, sizeof n.role, "unreachable");
        }
        kyu_client_destroy(&c);
        if (print_node(cli, &n) != CLI_EXIT_OK)
            rc = CLI_EXIT_ERROR;
    }
    if (!answered)
        return cli_failf(cli, "no node of '%s' answered", cli->broker);
    return rc;
}
