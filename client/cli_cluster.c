/* cli_cluster: `kyu cluster status`, `kyu cluster transfer [ID]` (sent to the leader,
 * found by failover; it returns once the transfer has started), `kyu cluster add
 * ID,RAFT_HOST:PORT,CLIENT_ENDPOINT` (returns once the node is a voter) and `kyu cluster
 * remove ID`.
 *
 * `kyu cluster status`: Every endpoint of --broker is asked on its own
 * connection (a node answers for itself, leader or not); one that does not answer within
 * the timeout is printed as unreachable. Exit 0 when at least one node answered.
 *
 * `kyu cluster ready`: the readiness probe of a node (a container's health check): each
 * endpoint is asked for its status the same way, and is ready when it answers, knows a
 * leader, has applied its log up to the commit index it knew when asked (asked again for up
 * to 2 s until it has) and is not read-only (its disk is fine). Exit 0 when every endpoint is
 * ready. */
#include "cli.h"
#include "kyu_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STATUS_TIMEOUT_MS 2000
/* The broker bounds an add or a remove at 60 s (a remove first gives a node that is down 3 s
 * to see its demotion); --timeout may say more. */
#define CHANGE_TIMEOUT_MS 90000
#define CATCH_UP_MS 2000 /* `ready`: how long a node may take to apply what was committed */
#define CATCH_UP_PAUSE_MS 20

/* A node id: a whole decimal number of 1 to 2^63-1. */
static bool parse_id(const char *s, uint64_t *out)
{
    char *end = NULL;
    if (!s || *s < '0' || *s > '9')
        return false;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end || v < 1 || v > INT64_MAX)
        return false;
    *out = v;
    return true;
}

/* Splits ID,RAFT_HOST:PORT,CLIENT_ENDPOINT (the broker checks the addresses strictly). */
static bool parse_spec(const char *spec, uint64_t *id, char *raft, char *client)
{
    const char *c1 = strchr(spec, ','), *c2 = c1 ? strchr(c1 + 1, ',') : NULL;
    char idbuf[24];
    if (!c1 || !c2 || strchr(c2 + 1, ',') || c1 == spec || (size_t)(c1 - spec) >= sizeof idbuf ||
        c2 == c1 + 1 || !c2[1] || (size_t)(c2 - c1 - 1) >= KYU_ENDPOINT_MAX ||
        strlen(c2 + 1) >= KYU_ENDPOINT_MAX)
        return false;
    memcpy(idbuf, spec, (size_t)(c1 - spec));
    idbuf[c1 - spec] = '\0';
    memcpy(raft, c1 + 1, (size_t)(c2 - c1 - 1));
    raft[c2 - c1 - 1] = '\0';
    snprintf(client, KYU_ENDPOINT_MAX, "%s", c2 + 1);
    return parse_id(idbuf, id) && strchr(raft, ':') != NULL;
}

int cli_cluster_check_args(const cli_t *cli, cli_args_t *a)
{
    const char *sub = a->args[0];
    uint64_t id = 0;
    char raft[KYU_ENDPOINT_MAX], client[KYU_ENDPOINT_MAX];
    if (strcmp(sub, "status") == 0 || strcmp(sub, "ready") == 0) {
        if (a->n_args == 1)
            return CLI_EXIT_OK;
        return cli_usage_error(cli, "cluster %s takes no argument", sub);
    }
    if (strcmp(sub, "transfer") == 0) {
        if (a->n_args == 1 || parse_id(a->args[1], &id))
            return CLI_EXIT_OK;
        return cli_usage_error(cli, "cluster transfer takes one node id (a positive number)");
    }
    if (strcmp(sub, "add") == 0) {
        if (a->n_args == 2 && parse_spec(a->args[1], &id, raft, client))
            return CLI_EXIT_OK;
        return cli_usage_error(cli, "cluster add takes one ID,RAFT_HOST:PORT,CLIENT_ENDPOINT "
                                    "(ID a positive number), e.g. "
                                    "4,10.0.0.4:7701,tcp://10.0.0.4:7700");
    }
    if (strcmp(sub, "remove") == 0) {
        if (a->n_args == 2 && parse_id(a->args[1], &id))
            return CLI_EXIT_OK;
        return cli_usage_error(cli, "cluster remove takes one node id (a positive number)");
    }
    return cli_usage_error(cli, "unknown cluster command '%s'", sub);
}

static json_t *json_ids(const uint64_t *ids, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        json_array_append_new(a, json_integer((json_int_t)ids[i]));
    return a;
}

/* "1,2,3", or "-" for none */
static void text_ids(char *out, size_t cap, const uint64_t *ids, size_t n)
{
    size_t len = 0;
    snprintf(out, cap, "-");
    for (size_t i = 0; i < n && len < cap; i++)
        len += (size_t)snprintf(out + len, cap - len, "%s%llu", i ? "," : "",
                                (unsigned long long)ids[i]);
}

static int print_node(const cli_t *cli, const kyu_node_status_t *n)
{
    if (cli->json) {
        json_t *o = json_pack(
            "{s:I, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:o, s:o}", "id", (json_int_t)n->id,
            "raft_address", n->raft_address, "endpoint", n->endpoint, "role", n->role, "membership",
            n->member, "term", (json_int_t)n->term, "commit_index", (json_int_t)n->commit_index,
            "applied_index", (json_int_t)n->applied_index, "voters",
            json_ids(n->voters, n->n_voters), "learners", json_ids(n->learners, n->n_learners));
        if (o && n->read_only[0])
            json_object_set_new(o, "read_only", json_string(n->read_only));
        return cli_print_json(o);
    }
    char voters[200], learners[200];
    text_ids(voters, sizeof voters, n->voters, n->n_voters);
    text_ids(learners, sizeof learners, n->learners, n->n_learners);
    printf("%-4llu %-28s %-28s %-11s %-7s term %-6llu commit %-10llu applied %-10llu voters %s "
           "learners %s\n",
           (unsigned long long)n->id, n->raft_address[0] ? n->raft_address : "-", n->endpoint,
           n->role, n->member[0] ? n->member : "-", (unsigned long long)n->term,
           (unsigned long long)n->commit_index, (unsigned long long)n->applied_index, voters,
           learners);
    if (n->read_only[0])
        printf("     READ-ONLY: %s\n", n->read_only);
    return CLI_EXIT_OK;
}

/* A node applies an entry a moment after it learns that the entry is committed, so under a
 * steady stream of writes its applied index trails its commit index at almost any instant.
 * Ready means it has applied what was committed when it was first asked: while it has not,
 * it is asked again (every CATCH_UP_PAUSE_MS, on the same connection) until it has or
 * CATCH_UP_MS pass. n then holds its last answer with commit_index the first one's; false
 * when it stopped answering. */
static bool catch_up(kyu_client_t *c, kyu_node_status_t *n)
{
    uint64_t target = n->commit_index;
    int64_t until = kyu_client_now_ms() + CATCH_UP_MS;
    while (n->applied_index < target && kyu_client_now_ms() < until) {
        kyu_client_pause_ms(CATCH_UP_PAUSE_MS);
        kyu_err_t err = {0};
        if (kyu_client_cluster_status(c, n, &err) != KYU_OK)
            return false;
    }
    n->commit_index = target;
    return true;
}

/* Why node n (answered: whether it did) is not ready, or NULL when it is. */
static const char *not_ready(bool answered, const kyu_node_status_t *n, char *why, size_t cap)
{
    if (!answered)
        snprintf(why, cap, "no answer");
    else if (n->read_only[0])
        snprintf(why, cap, "read-only: %s", n->read_only);
    else if (!n->leader)
        snprintf(why, cap, "no leader known");
    else if (n->applied_index < n->commit_index)
        snprintf(why, cap, "applied %llu of commit index %llu",
                 (unsigned long long)n->applied_index, (unsigned long long)n->commit_index);
    else
        return NULL;
    return why;
}

static int print_ready(const cli_t *cli, const char *ep, const char *why)
{
    if (cli->json)
        return cli_print_json(
            why ? json_pack("{s:s, s:b, s:s}", "endpoint", ep, "ready", 0, "why", why)
                : json_pack("{s:s, s:b}", "endpoint", ep, "ready", 1));
    if (why)
        printf("%s not ready: %s\n", ep, why);
    else
        printf("%s ready\n", ep);
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

static int add(cli_t *cli, const char *spec)
{
    uint64_t id = 0;
    char raft[KYU_ENDPOINT_MAX], client[KYU_ENDPOINT_MAX];
    if (!parse_spec(spec, &id, raft, client))
        return cli_failf(cli, "bad node '%s'", spec); /* checked before: cannot happen */
    if (cli->timeout_ms < CHANGE_TIMEOUT_MS)
        cli->timeout_ms = CHANGE_TIMEOUT_MS;
    if (!cli_connect(cli))
        return CLI_EXIT_ERROR;
    kyu_err_t err = {0};
    if (kyu_client_cluster_add(cli->client, id, raft, client, &err) != KYU_OK)
        return cli_fail(cli, &err);
    if (cli->json)
        return cli_print_json(
            json_pack("{s:I, s:s}", "Added", (json_int_t)id, "Membership", "voter"));
    printf("node %llu added as a voter\n", (unsigned long long)id);
    return CLI_EXIT_OK;
}

static int remove_node(cli_t *cli, uint64_t id)
{
    if (cli->timeout_ms < CHANGE_TIMEOUT_MS)
        cli->timeout_ms = CHANGE_TIMEOUT_MS;
    if (!cli_connect(cli))
        return CLI_EXIT_ERROR;
    kyu_err_t err = {0};
    if (kyu_client_cluster_remove(cli->client, id, &err) != KYU_OK)
        return cli_fail(cli, &err);
    if (cli->json)
        return cli_print_json(json_pack("{s:I}", "Removed", (json_int_t)id));
    printf("node %llu removed\n", (unsigned long long)id);
    return CLI_EXIT_OK;
}

int cli_cmd_cluster(cli_t *cli, cli_args_t *a)
{
    uint64_t id = 0;
    if (strcmp(a->args[0], "transfer") == 0)
        return transfer(cli, a->n_args > 1 && parse_id(a->args[1], &id) ? id : 0);
    if (strcmp(a->args[0], "add") == 0)
        return add(cli, a->args[1]);
    if (strcmp(a->args[0], "remove") == 0)
        return remove_node(cli, parse_id(a->args[1], &id) ? id : 0);
    bool ready = strcmp(a->args[0], "ready") == 0;
    int answered = 0, unready = 0, rc = CLI_EXIT_OK;
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
        bool ok = c && kyu_client_cluster_status(c, &n, &err) == KYU_OK;
        if (ready) {
            if (ok && n.leader && !n.read_only[0])
                ok = catch_up(c, &n);
            kyu_client_destroy(&c);
            char why[KYU_ERR_MSG_MAX + 16];
            const char *w = not_ready(ok, &n, why, sizeof why);
            unready += w != NULL;
            if (print_ready(cli, ep, w) != CLI_EXIT_OK)
                rc = CLI_EXIT_ERROR;
            continue;
        }
        if (ok) {
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
    if (ready && unready)
        return cli_failf(cli, "%d of the nodes of '%s' not ready", unready, cli->broker);
    if (!ready && !answered)
        return cli_failf(cli, "no node of '%s' answered", cli->broker);
    return rc;
}
