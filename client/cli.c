/* kyu: the command-line tool over libkyu. This file holds the contract's frame: global
 * options, the command table (one row per command: usage, help, options, arity), argument
 * checks that exit 2 before any broker is contacted, and error reporting. The commands live
 * in cli_cmds.c and cli_send.c; client/README.md documents the contract. */
#include "cli.h"
#include "kyu_internal.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_BROKER "tcp://127.0.0.1:7700"
#define DEFAULT_TIMEOUT_S 10

#define QUEUE_ATTRS_USAGE                                                                          \
    "[--visibility-timeout SEC] [--max-message-size BYTES] [--delay SEC] [--retention SEC] "       \
    "[--receive-wait SEC] [--dead-letter-queue NAME [--max-receive-count N]] [--redrive-allow "    \
    "all|none|QUEUE[,QUEUE...]] [--tag KEY=VALUE]... [--fifo] [--content-based-dedup | "           \
    "--no-content-based-dedup] [--dedup-scope queue|messageGroup] [--throughput-limit "            \
    "perQueue|perMessageGroupId]"

static const cli_cmd_t commands[] = {
    {"create-queue", "NAME " QUEUE_ATTRS_USAGE,
     "create a queue (no error if it exists with the same attributes; an attribute not given "
     "compares as its default); --fifo: a FIFO queue, whose NAME ends in .fifo (strict order "
     "per message group, deduplication within 5 minutes)",
     CLI_OPT_VT | CLI_OPT_QUEUE_ATTRS, 1, 1, cli_cmd_create_queue},
    {"set-queue-attributes", "NAME " QUEUE_ATTRS_USAGE,
     "change a queue's attributes (at least one); the others stay as they are; --tag adds tags "
     "(a key the queue has gets the new value); --dead-letter-queue '' removes the RedrivePolicy",
     CLI_OPT_VT | CLI_OPT_QUEUE_ATTRS | CLI_OPT_ATTR_REQUIRED, 1, 1, cli_cmd_set_queue_attributes},
    {"untag-queue", "NAME KEY...",
     "remove the queue's tags with these keys (up to 50); a key the queue lacks is no error", 0, 2,
     -1, cli_cmd_untag_queue},
    {"delete-queue", "NAME [--force]",
     "delete a queue and all its messages; a dead-letter queue of other queues only with --force "
     "(their messages then stay in them)",
     CLI_OPT_FORCE, 1, 1, cli_cmd_delete_queue},
    {"list-dead-letter-source-queues", "NAME",
     "print the queues whose RedrivePolicy names NAME, one per line", 0, 1, 1,
     cli_cmd_list_dead_letter_source_queues},
    {"purge-queue", "NAME",
     "delete every message of a queue (visible, in flight and delayed); the queue stays", 0, 1, 1,
     cli_cmd_purge_queue},
    {"list-queues", "", "print the queue names, one per line", 0, 0, 0, cli_cmd_list_queues},
    {"create-topic", "TOPIC [--fifo [--content-based-dedup]]",
     "create a topic (idempotent); names: 1..256 of [A-Za-z0-9_-]; --fifo: a FIFO topic, whose "
     "TOPIC ends in .fifo (it delivers to FIFO queues only, in group order, and deduplicates "
     "publishes for 5 minutes); --content-based-dedup: the SHA-256 of the body deduplicates a "
     "publish without --dedup-id",
     CLI_OPT_TOPIC | CLI_OPT_TOPIC_ATTRS, 1, 1, cli_cmd_create_topic},
    {"delete-topic", "TOPIC", "delete a topic and its subscriptions (the queues stay)",
     CLI_OPT_TOPIC, 1, 1, cli_cmd_delete_topic},
    {"list-topics", "", "print the topic names, one per line", 0, 0, 0, cli_cmd_list_topics},
    {"subscribe", "TOPIC QUEUE [--raw] [--filter JSON [--filter-scope attributes|body]]",
     "subscribe QUEUE to TOPIC and print the subscription id; --raw: deliver the body and "
     "attributes as published, not in SNS's JSON envelope; --filter: SNS's filter policy "
     "(JSON), on the message attributes or, --filter-scope body, on its JSON body",
     CLI_OPT_TOPIC | CLI_OPT_RAW, 2, 2, cli_cmd_subscribe},
    {"unsubscribe", "SUB_ID", "remove a subscription", CLI_OPT_SUB_ID, 1, 1, cli_cmd_unsubscribe},
    {"list-subscriptions", "[TOPIC]",
     "print the subscriptions (of TOPIC), one per line: ID TOPIC QUEUE raw|envelope, and for a "
     "filtered one filter:attributes|filter:body and its policy (JSON)",
     0, 0, 1, cli_cmd_list_subscriptions},
    {"set-subscription-attributes",
     "SUB_ID [--filter JSON | --no-filter] [--filter-scope attributes|body] [--raw | --no-raw]",
     "change a subscription in place (SNS's SetSubscriptionAttributes): its filter policy, the "
     "policy's scope, raw delivery; what is not given stays",
     CLI_OPT_SUB_ID | CLI_OPT_RAW | CLI_OPT_SUB_ATTRS, 1, 1, cli_cmd_set_subscription_attributes},
    {"get-subscription-attributes", "SUB_ID",
     "print a subscription's attributes, one NAME VALUE per line: SubscriptionId, TopicName, "
     "QueueName, RawMessageDelivery, and with a policy FilterPolicyScope and FilterPolicy",
     CLI_OPT_SUB_ID, 1, 1, cli_cmd_get_subscription_attributes},
    {"publish",
     "TOPIC [BODY] [--lines] [--attr NAME=TYPE:VALUE]... [--group GROUP [--dedup-id ID]]",
     "publish BODY, or stdin as one message, or (--lines) each stdin line as a message (up to "
     "ten lines a request: those stdin has ready, pipelined), to every queue subscribed to TOPIC "
     "whose filter policy "
     "matches (all of them or none, each message); prints the message ids. A FIFO topic needs "
     "--group (the MessageGroupId of every message) and --dedup-id (one message, not --lines) "
     "unless it has ContentBasedDeduplication; then prints the id and the SequenceNumber. A "
     "standard topic takes --group alone (forwarded to its queues, whose receives share fairly "
     "across groups) and refuses --dedup-id",
     CLI_OPT_TOPIC | CLI_OPT_LINES | CLI_OPT_MSG_ATTRS | CLI_OPT_GROUP, 1, 2, cli_cmd_publish},
    {"publish-batch", "TOPIC",
     "publish stdin's JSON lines, SNS's PublishBatch entries {\"Id\", \"Message\", "
     "\"MessageAttributes\", \"MessageGroupId\", \"MessageDeduplicationId\"}, ten a request (at "
     "most 256 KiB together): each entry on its own; prints ID MESSAGE_ID per entry published "
     "(and a FIFO topic's SequenceNumber)",
     CLI_OPT_TOPIC, 1, 1, cli_cmd_publish_batch},
    {"get-queue-attributes", "NAME", "print a queue's attributes and message counts", 0, 1, 1,
     cli_cmd_get_queue_attributes},
    {"send",
     "NAME [BODY] [--lines] [--delay SEC | --deliver-at RFC3339|+DURATION] "
     "[--attr NAME=TYPE:VALUE]... [--group GROUP [--dedup-id ID]]",
     "send BODY, or stdin as one message, or (--lines) each stdin line as a message; prints "
     "the message ids. --delay: each message's own delay (0..900 s, replaces the queue's); "
     "--deliver-at: received no earlier than this time (e.g. 2026-12-05T10:00:00Z, +90m), at "
     "most the queue's retention period ahead; --attr: a message attribute (up to 10; TYPE String, "
     "Number or Binary, "
     "optionally .SUFFIX; a Binary VALUE in base64), on every message sent; --group: the "
     "MessageGroupId of every message (required on a FIFO queue; with --lines the lines go "
     "one at a time, in order); --dedup-id: its "
     "MessageDeduplicationId (one message, not --lines; without it a FIFO queue needs "
     "ContentBasedDeduplication). On a FIFO queue prints the id and the SequenceNumber",
     CLI_OPT_LINES | CLI_OPT_SEND_DELAY | CLI_OPT_MSG_ATTRS | CLI_OPT_GROUP, 1, 2, cli_cmd_send},
    {"send-batch", "NAME",
     "send the entries of stdin, one JSON object per line in SQS's SendMessageBatch shape "
     "({\"Id\", \"MessageBody\", \"DelaySeconds\", \"MessageAttributes\", "
     "\"MessageGroupId\", \"MessageDeduplicationId\"}), ten to a "
     "request; an entry that is refused (body, attribute, delay) fails alone. Prints \"ID "
     "MESSAGE_ID\" per entry sent (--json: {\"Successful\", \"Failed\"} per request), one "
     "stderr line per failed entry",
     0, 1, 1, cli_cmd_send_batch},
    {"delete-batch", "NAME",
     "delete the entries of stdin, one JSON object per line in SQS's DeleteMessageBatch shape "
     "({\"Id\", \"ReceiptHandle\"}), ten to a request; a handle that fails fails alone. "
     "Prints the Id of each entry deleted (--json: {\"Successful\", \"Failed\"} per "
     "request), one stderr line per failed entry",
     0, 1, 1, cli_cmd_handle_batch},
    {"change-visibility-batch", "NAME",
     "as delete-batch, in SQS's ChangeMessageVisibilityBatch shape ({\"Id\", "
     "\"ReceiptHandle\", \"VisibilityTimeout\"}): each entry's remaining lease set to its "
     "VisibilityTimeout (0..43200); entries in a row with the same timeout go in one request",
     0, 1, 1, cli_cmd_handle_batch},
    {"receive", "NAME [--max N] [--visibility-timeout SEC] [--wait SEC] [--attempt-id ID]",
     "lease up to N (1..10, default 1) messages and print them; --wait: long polling, wait up "
     "to SEC (0..20) seconds for a message (default: the queue's ReceiveMessageWaitTimeSeconds); "
     "--attempt-id: ReceiveRequestAttemptId, a retry with the same id within 5 minutes gets the "
     "same messages and receipt handles",
     CLI_OPT_MAX | CLI_OPT_VT | CLI_OPT_WAIT | CLI_OPT_ATTEMPT, 1, 1, cli_cmd_receive},
    {"peek", "NAME [--max N] [--from POSITION|MESSAGE_ID]",
     "list up to N (1..10, default 10) messages in queue order without leasing them: body, id, "
     "sent time, receive count and state (visible, inflight, delayed); --from: the position "
     "a previous page printed as Next, or a message id: the list starts at that message "
     "(found by paging from the queue's start: a request per 10 messages before it); works on "
     "any queue, dead-letter queues included",
     CLI_OPT_MAX | CLI_OPT_FROM, 1, 1, cli_cmd_peek},
    {"redrive", "DLQ [--to NAME] [--max-per-second N] [--no-wait] | --list DLQ | --cancel DLQ",
     "move the messages of dead-letter queue DLQ back to the queue each came from, or --to "
     "NAME (SQS's StartMessageMoveTask), at most N (1..500) a second, printing the progress "
     "until the task ends (--no-wait: print the task started and return); --list: its latest "
     "tasks (status RUNNING, COMPLETED, CANCELLED or FAILED, moved, to move, source, "
     "destination, started); --cancel: stop its running task (what moved stays moved)",
     CLI_OPT_REDRIVE, 1, 1, cli_cmd_redrive},
    {"delete", "NAME RECEIPT...", "delete received messages by their receipt handles",
     CLI_OPT_HANDLES, 2, -1, cli_cmd_delete},
    {"change-visibility", "NAME RECEIPT... --visibility-timeout SEC",
     "set the remaining lease of received messages (0: visible again at once)",
     CLI_OPT_VT | CLI_OPT_VT_REQUIRED | CLI_OPT_HANDLES, 2, -1, cli_cmd_change_visibility},
    {"workers", "[QUEUE]",
     "list the worker sessions the leader holds (of QUEUE): id, name, host, queue, credit "
     "(messages it may be pushed now), total credit (the worker sets it as it scales), held "
     "(leases pushed and not given back) and the time "
     "since its last heartbeat",
     0, 0, 1, cli_cmd_workers},
    {"cluster",
     "status | ready | transfer [ID] | add ID,RAFT_HOST:PORT,CLIENT_ENDPOINT | remove ID",
     "status: ask every --broker endpoint for its view: id, addresses, role, membership (voter, "
     "learner, none), term, commit and applied index (role unreachable when it does not answer "
     "in time); ready: the readiness probe: exit 0 when every --broker endpoint answers, knows "
     "a leader, has applied its log up to the commit index and is not read-only; transfer: hand "
     "leadership to node ID (default: the most up-to-date follower); "
     "add: add a node started with --join (a learner until it has caught up, then a voter; "
     "waits up to 90 s); remove: remove node ID (a leader hands leadership over first)",
     CLI_OPT_CLUSTER, 1, 2, cli_cmd_cluster},
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static void help(FILE *out)
{
    fprintf(out,
            "usage: kyu [--broker ENDPOINTS] [--json] [--timeout SEC] COMMAND [ARGS]\n"
            "\n"
            "The command-line client of kyu, a replicated message queue with SQS semantics.\n"
            "\n"
            "Global options (before the command):\n"
            "  --broker ENDPOINTS  comma-separated broker endpoints; default $KYU_BROKER, else "
            "%s\n"
            "  --json              print JSON, one object per line\n"
            "  --timeout SEC       bound of each request, 1..3600 seconds (default %d)\n"
            "  --help              this text\n"
            "\nCommands:\n",
            DEFAULT_BROKER, DEFAULT_TIMEOUT_S);
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(out, "  kyu %s %s\n      %s\n", commands[i].name, commands[i].usage,
                commands[i].help);
    fprintf(out,
            "\nQueue names: 1 to %d characters of letters, digits, - and _. Visibility "
            "timeouts: 0 to %d seconds. Maximum message sizes: %d to %d bytes (default %d, "
            "never above the broker's --max-message-size). Delays: 0 to %d seconds (default 0; "
            "each message sent to the queue is invisible for as long). Retention: %d to %d seconds "
            "(default %d); receive wait: 0 to %d seconds; --max-receive-count: 1 to %d (default "
            "10); tags: up to %d, KEY=VALUE, keys 1 to %d bytes, values 0 to %d.\n"
            "send --lines: one message per stdin line, pipelined; ids printed in input order.\n"
            "receive --json: a body that is not UTF-8 is not printed; the message is made "
            "visible again and kyu exits 1 (plain output prints any bytes).\n"
            "Exit status: 0 success, 1 error (one line on stderr says what went wrong), 2 "
            "usage error (found before contacting the broker).\n",
            KYU_NAME_MAX, KYU_VISIBILITY_MAX, KYU_MAX_SIZE_MIN, KYU_MAX_SIZE_MAX,
            KYU_MAX_SIZE_DEFAULT, KYU_DELAY_MAX, KYU_RETENTION_MIN, KYU_RETENTION_MAX,
            KYU_RETENTION_DEFAULT, KYU_RECEIVE_WAIT_MAX, KYU_MAX_RECEIVE_COUNT_MAX, KYU_TAGS_MAX,
            KYU_TAG_KEY_MAX, KYU_TAG_VALUE_MAX);
}

static void cmd_usage(FILE *out, const cli_cmd_t *cmd)
{
    fprintf(out, "usage: kyu [--broker ENDPOINTS] [--json] %s %s\n", cmd->name, cmd->usage);
}

int cli_usage_error(const cli_t *cli, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "kyu: %s%s", cli->cmd ? cli->cmd->name : "", cli->cmd ? ": " : "");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    if (cli->cmd)
        cmd_usage(stderr, cli->cmd);
    else
        fprintf(stderr, "usage: kyu [--broker ENDPOINTS] [--json] [--timeout SEC] COMMAND "
                        "[ARGS] (kyu --help lists the commands)\n");
    return CLI_EXIT_USAGE;
}

int cli_failf(const cli_t *cli, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "kyu: %s: ", cli->cmd->name);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return CLI_EXIT_ERROR;
}

int cli_fail(const cli_t *cli, const kyu_err_t *err)
{
    return cli_failf(cli, "%s: %s", kyu_code_name(err->code), err->msg);
}

bool cli_connect(cli_t *cli)
{
    kyu_client_opts_t o = kyu_client_opts_default();
    o.timeout_ms = cli->timeout_ms;
    kyu_err_t err = {0};
    cli->client = kyu_client_new_opts(cli->broker, &o, &err);
    if (!cli->client)
        cli_fail(cli, &err);
    return cli->client != NULL;
}

bool cli_check_queue(const cli_t *cli, const char *name)
{
    if (kyu_queue_name_valid(name, strlen(name)))
        return true;
    cli_usage_error(cli,
                    "invalid queue name '%s': 1 to %d characters of letters, digits, - "
                    "and _",
                    name, KYU_NAME_MAX);
    return false;
}

int cli_print_json(json_t *obj)
{
    char *s = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    if (!s) {
        fprintf(stderr, "kyu: cannot encode JSON output (out of memory)\n");
        return CLI_EXIT_ERROR;
    }
    puts(s);
    free(s);
    return CLI_EXIT_OK;
}

/* A whole decimal number in [min, max], nothing else. */
static bool parse_int(const char *s, long min, long max, int *out)
{
    char *end = NULL;
    if (!s || !*s || (*s != '-' && (*s < '0' || *s > '9')))
        return false;
    long v = strtol(s, &end, 10);
    if (*end || v < min || v > max)
        return false;
    *out = (int)v;
    return true;
}

/* --redrive-allow all|none|QUEUE[,QUEUE...]: the names are split in place. */
static int parse_redrive_allow(const cli_t *cli, char *v, cli_args_t *a)
{
    if (strcmp(v, "all") == 0) {
        a->redrive_allow = KYU_REDRIVE_ALLOW_ALL;
        return CLI_EXIT_OK;
    }
    if (strcmp(v, "none") == 0) {
        a->redrive_allow = KYU_REDRIVE_DENY_ALL;
        return CLI_EXIT_OK;
    }
    a->redrive_allow = KYU_REDRIVE_BY_QUEUE;
    a->n_sources = 0;
    for (char *save = NULL, *q = strtok_r(v, ",", &save); q; q = strtok_r(NULL, ",", &save)) {
        if (a->n_sources == KYU_REDRIVE_SOURCES_MAX)
            return cli_usage_error(cli, "--redrive-allow takes at most %d source queues",
                                   KYU_REDRIVE_SOURCES_MAX);
        if (!cli_check_queue(cli, q))
            return CLI_EXIT_USAGE;
        a->sources[a->n_sources++] = q;
    }
    if (a->n_sources == 0)
        return cli_usage_error(cli, "--redrive-allow is all, none or QUEUE[,QUEUE...]");
    return CLI_EXIT_OK;
}

/* The options of the queue attributes beyond --visibility-timeout, --max-message-size and
 * --delay (SQS's ranges). */
static int parse_queue_attr(const cli_t *cli, int c, char *v, cli_args_t *a)
{
    switch (c) {
    case 'r':
        if (!parse_int(v, KYU_RETENTION_MIN, KYU_RETENTION_MAX, &a->retention))
            return cli_usage_error(cli,
                                   "--retention (MessageRetentionPeriod) must be a number of "
                                   "seconds from %d to %d, not '%s'",
                                   KYU_RETENTION_MIN, KYU_RETENTION_MAX, v);
        return CLI_EXIT_OK;
    case 'W':
        if (!parse_int(v, 0, KYU_RECEIVE_WAIT_MAX, &a->receive_wait))
            return cli_usage_error(cli,
                                   "--receive-wait (ReceiveMessageWaitTimeSeconds) must be a "
                                   "number of seconds from 0 to %d, not '%s'",
                                   KYU_RECEIVE_WAIT_MAX, v);
        return CLI_EXIT_OK;
    case 'q':
        if (v[0] && !cli_check_queue(cli, v))
            return CLI_EXIT_USAGE;
        a->dlq = v;
        return CLI_EXIT_OK;
    case 'c':
        if (!parse_int(v, 1, KYU_MAX_RECEIVE_COUNT_MAX, &a->max_receive_count))
            return cli_usage_error(cli,
                                   "--max-receive-count must be a number from 1 to %d, not '%s'",
                                   KYU_MAX_RECEIVE_COUNT_MAX, v);
        return CLI_EXIT_OK;
    case 'A':
        return parse_redrive_allow(cli, v, a);
    default: { /* 't': --tag KEY=VALUE */
        char *eq = strchr(v, '=');
        if (!eq || eq == v || eq - v > KYU_TAG_KEY_MAX || strlen(eq + 1) > KYU_TAG_VALUE_MAX)
            return cli_usage_error(cli,
                                   "--tag must be KEY=VALUE, a key of 1 to %d bytes and a value "
                                   "of 0 to %d, not '%.40s'",
                                   KYU_TAG_KEY_MAX, KYU_TAG_VALUE_MAX, v);
        if (a->n_tags == KYU_TAGS_MAX)
            return cli_usage_error(cli, "at most %d tags", KYU_TAGS_MAX);
        *eq = '\0';
        a->tag_keys[a->n_tags] = v;
        a->tag_values[a->n_tags++] = eq + 1;
        return CLI_EXIT_OK;
    }
    }
}

/* Parses the command's options (anywhere among its arguments) and checks arity and
 * numbers: a failure here is a usage error, before any connection. */
static int parse_cmd_args(cli_t *cli, int argc, char **argv, cli_args_t *a)
{
    const cli_cmd_t *cmd = cli->cmd;
    static const struct option opts[] = {
        {"max", required_argument, NULL, 'm'},
        {"visibility-timeout", required_argument, NULL, 'v'},
        {"lines", no_argument, NULL, 'l'},
        {"max-message-size", required_argument, NULL, 's'},  /* MaximumMessageSize */
        {"delay", required_argument, NULL, 'd'},             /* DelaySeconds */
        {"deliver-at", required_argument, NULL, 'a'},        /* send: a delivery time */
        {"retention", required_argument, NULL, 'r'},         /* MessageRetentionPeriod */
        {"receive-wait", required_argument, NULL, 'W'},      /* ReceiveMessageWaitTimeSeconds */
        {"dead-letter-queue", required_argument, NULL, 'q'}, /* RedrivePolicy */
        {"max-receive-count", required_argument, NULL, 'c'},
        {"redrive-allow", required_argument, NULL, 'A'}, /* RedriveAllowPolicy */
        {"tag", required_argument, NULL, 't'},
        {"force", no_argument, NULL, 'f'},
        {"attr", required_argument, NULL, 'M'}, /* send: a message attribute */
        {"wait", required_argument, NULL, 'w'}, /* receive: WaitTimeSeconds */
        {"from", required_argument, NULL, 'F'}, /* peek: a position */
        {"to", required_argument, NULL, 'T'},   /* redrive: the destination */
        {"max-per-second", required_argument, NULL, 'P'},
        {"list", no_argument, NULL, 'L'},
        {"cancel", no_argument, NULL, 'C'},
        {"no-wait", no_argument, NULL, 'N'},
        {"raw", no_argument, NULL, 'R'},                /* subscribe: raw message delivery */
        {"filter", required_argument, NULL, 'X'},       /* subscribe: a filter policy */
        {"filter-scope", required_argument, NULL, 'S'}, /* subscribe: its scope */
        {"fifo", no_argument, NULL, 'Q'},               /* create-queue: FifoQueue */
        {"content-based-dedup", no_argument, NULL, 'B'},
        {"no-content-based-dedup", no_argument, NULL, 'b'},
        {"dedup-scope", required_argument, NULL, 'D'},
        {"throughput-limit", required_argument, NULL, 'H'},
        {"group", required_argument, NULL, 'G'},      /* send: MessageGroupId */
        {"dedup-id", required_argument, NULL, 'I'},   /* send: MessageDeduplicationId */
        {"attempt-id", required_argument, NULL, 'E'}, /* receive: ReceiveRequestAttemptId */
        {"no-filter", no_argument, NULL, 'x'},        /* set-subscription-attributes: no policy */
        {"no-raw", no_argument, NULL, 'g'}, /* set-subscription-attributes: the envelope */
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *a = (cli_args_t){.max = 0,
                      .vt = -1,
                      .mms = -1,
                      .delay = -1,
                      .deliver_at_ms = -1,
                      .retention = -1,
                      .receive_wait = -1,
                      .max_receive_count = -1,
                      .redrive_allow = -1,
                      .wait = -1,
                      .rate = -1,
                      .fifo = -1,
                      .cbd = -1,
                      .dedup_scope = -1,
                      .throughput = -1};
    optind = 0; /* GNU: restart, and permute so options may follow the arguments */
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "-", opts, NULL)) != -1) {
        if (c == 1) {
            /* Positional, kept in place: the k-th one sits after index k, already consumed. */
            argv[a->n_args++] = optarg;
            continue;
        }
        if (c == 'h') {
            cmd_usage(stdout, cmd);
            printf("%s\n", cmd->help);
            exit(CLI_EXIT_OK);
        }
        if (c == 'm' && (cmd->options & CLI_OPT_MAX)) {
            if (!parse_int(optarg, 1, KYU_BATCH_MAX, &a->max))
                return cli_usage_error(cli, "--max must be a number from 1 to %d, not '%s'",
                                       KYU_BATCH_MAX, optarg);
        } else if (c == 'v' && (cmd->options & CLI_OPT_VT)) {
            if (!parse_int(optarg, 0, KYU_VISIBILITY_MAX, &a->vt))
                return cli_usage_error(cli,
                                       "--visibility-timeout must be a number of seconds from "
                                       "0 to %d, not '%s'",
                                       KYU_VISIBILITY_MAX, optarg);
        } else if (c == 's' && (cmd->options & CLI_OPT_QUEUE_ATTRS)) {
            if (!parse_int(optarg, KYU_MAX_SIZE_MIN, KYU_MAX_SIZE_MAX, &a->mms))
                return cli_usage_error(cli,
                                       "--max-message-size (MaximumMessageSize) must be a number "
                                       "of bytes from %d to %d, not '%s'",
                                       KYU_MAX_SIZE_MIN, KYU_MAX_SIZE_MAX, optarg);
        } else if (c == 'd' && (cmd->options & (CLI_OPT_QUEUE_ATTRS | CLI_OPT_SEND_DELAY))) {
            if (!parse_int(optarg, 0, KYU_DELAY_MAX, &a->delay))
                return cli_usage_error(cli,
                                       "--delay (DelaySeconds) must be a number of seconds from 0 "
                                       "to %d, not '%s'",
                                       KYU_DELAY_MAX, optarg);
        } else if (c == 'a' && (cmd->options & CLI_OPT_SEND_DELAY)) {
            char why[160];
            if (!cli_parse_deliver_at(optarg, kyu_client_wall_ms(), &a->deliver_at_ms, why,
                                      sizeof why))
                return cli_usage_error(cli, "--deliver-at '%s': %s", optarg, why);
        } else if (c == 'w' && (cmd->options & CLI_OPT_WAIT)) {
            if (!parse_int(optarg, 0, KYU_WAIT_MAX, &a->wait))
                return cli_usage_error(cli,
                                       "--wait (WaitTimeSeconds) must be a number of seconds from "
                                       "0 to %d, not '%s'",
                                       KYU_WAIT_MAX, optarg);
        } else if (c == 'l' && (cmd->options & CLI_OPT_LINES)) {
            a->lines = true;
        } else if (c == 'f' && (cmd->options & CLI_OPT_FORCE)) {
            a->force = true;
        } else if (strchr("rWqcAt", c) && (cmd->options & CLI_OPT_QUEUE_ATTRS)) {
            int rc = parse_queue_attr(cli, c, optarg, a);
            if (rc != CLI_EXIT_OK)
                return rc;
        } else if (c == 'M' && (cmd->options & CLI_OPT_MSG_ATTRS)) {
            char why[KYU_ERR_MSG_MAX];
            if (!cli_parse_attr(optarg, a, why, sizeof why))
                return cli_usage_error(cli, "--attr '%.60s': %s", optarg, why);
        } else if (c == 'F' && (cmd->options & CLI_OPT_FROM)) {
            /* A position is digits; a message id (a UUID) never is. */
            char *end = NULL;
            errno = 0;
            bool digits = optarg[0] && strspn(optarg, "0123456789") == strlen(optarg);
            unsigned long long v = digits ? strtoull(optarg, &end, 10) : 0;
            if (!digits && optarg[0] && strlen(optarg) <= KYU_MESSAGE_ID_MAX) {
                a->from_id = optarg;
            } else if (!end || *end || errno || v == 0) {
                return cli_usage_error(cli,
                                       "--from must be a position (a whole number from 1, "
                                       "printed by a previous peek as Next) or a message id, "
                                       "not '%s'",
                                       optarg);
            } else {
                a->from = v;
            }
        } else if (c == 'T' && (cmd->options & CLI_OPT_REDRIVE)) {
            if (!cli_check_queue(cli, optarg))
                return CLI_EXIT_USAGE;
            a->to = optarg;
        } else if (c == 'P' && (cmd->options & CLI_OPT_REDRIVE)) {
            if (!parse_int(optarg, 1, KYU_MOVE_RATE_MAX, &a->rate))
                return cli_usage_error(cli,
                                       "--max-per-second (MaxNumberOfMessagesPerSecond) must be a "
                                       "number from 1 to %d, not '%s'",
                                       KYU_MOVE_RATE_MAX, optarg);
        } else if (c == 'L' && (cmd->options & CLI_OPT_REDRIVE)) {
            a->list = true;
        } else if (c == 'C' && (cmd->options & CLI_OPT_REDRIVE)) {
            a->cancel = true;
        } else if (c == 'N' && (cmd->options & CLI_OPT_REDRIVE)) {
            a->no_wait = true;
        } else if (c == 'R' && (cmd->options & CLI_OPT_RAW)) {
            a->raw = true;
        } else if (c == 'X' && (cmd->options & CLI_OPT_RAW)) {
            a->filter = optarg;
        } else if (c == 'S' && (cmd->options & CLI_OPT_RAW)) {
            if (!strcmp(optarg, "body") || !strcmp(optarg, "MessageBody"))
                a->filter_body = true;
            else if (strcmp(optarg, "attributes") && strcmp(optarg, "MessageAttributes"))
                return cli_usage_error(cli, "--filter-scope is attributes or body, not '%s'",
                                       optarg);
            a->has_filter_scope = true;
        } else if (c == 'Q' && (cmd->options & (CLI_OPT_QUEUE_ATTRS | CLI_OPT_TOPIC_ATTRS))) {
            a->fifo = 1;
        } else if ((c == 'B' || c == 'b') && (cmd->options & CLI_OPT_QUEUE_ATTRS)) {
            a->cbd = c == 'B';
        } else if (c == 'B' && (cmd->options & CLI_OPT_TOPIC_ATTRS)) {
            a->cbd = 1;
        } else if (c == 'D' && (cmd->options & CLI_OPT_QUEUE_ATTRS)) {
            if (strcmp(optarg, "queue") && strcmp(optarg, "messageGroup"))
                return cli_usage_error(cli, "--dedup-scope is queue or messageGroup, not '%s'",
                                       optarg);
            a->dedup_scope =
                strcmp(optarg, "queue") ? KYU_DEDUP_SCOPE_GROUP : KYU_DEDUP_SCOPE_QUEUE;
        } else if (c == 'H' && (cmd->options & CLI_OPT_QUEUE_ATTRS)) {
            if (strcmp(optarg, "perQueue") && strcmp(optarg, "perMessageGroupId"))
                return cli_usage_error(cli,
                                       "--throughput-limit is perQueue or perMessageGroupId, not "
                                       "'%s'",
                                       optarg);
            a->throughput =
                strcmp(optarg, "perQueue") ? KYU_THROUGHPUT_PER_GROUP : KYU_THROUGHPUT_PER_QUEUE;
        } else if ((c == 'G' || c == 'I') && (cmd->options & CLI_OPT_GROUP)) {
            if (!kyu_fifo_id_valid(optarg, strlen(optarg), KYU_GROUP_ID_MAX))
                return cli_usage_error(cli,
                                       "--%s is 1 to %d characters of ASCII letters, digits and "
                                       "punctuation",
                                       c == 'G' ? "group" : "dedup-id", KYU_GROUP_ID_MAX);
            *(c == 'G' ? &a->group : &a->dedup_id) = optarg;
        } else if (c == 'E' && (cmd->options & CLI_OPT_ATTEMPT)) {
            if (!kyu_fifo_id_valid(optarg, strlen(optarg), KYU_ATTEMPT_ID_MAX))
                return cli_usage_error(cli,
                                       "--attempt-id is 1 to %d characters of ASCII letters, "
                                       "digits and punctuation",
                                       KYU_ATTEMPT_ID_MAX);
            a->attempt_id = optarg;
        } else if (c == 'x' && (cmd->options & CLI_OPT_SUB_ATTRS)) {
            a->no_filter = true;
        } else if (c == 'g' && (cmd->options & CLI_OPT_SUB_ATTRS)) {
            a->no_raw = true;
        } else if (c == '?' && strchr("mvsdarwWqcAtMFTPXSDHGIE", optopt) && optopt) {
            return cli_usage_error(cli, "option '%s' needs a value", argv[optind - 1]);
        } else if (c == '?') {
            return cli_usage_error(cli, "unknown option '%s'", argv[optind - 1]);
        } else {
            return cli_usage_error(cli, "%s does not take option '%s'", cmd->name,
                                   argv[optind - 1]);
        }
    }
    for (int i = optind; i < argc; i++) /* after "--" */
        argv[a->n_args++] = argv[i];
    a->args = argv;
    if (a->n_args < cmd->min_args || (cmd->max_args >= 0 && a->n_args > cmd->max_args))
        return cli_usage_error(cli, "wrong number of arguments");
    if (a->lines && a->dedup_id)
        return cli_usage_error(cli, "--dedup-id is one message's: not with --lines (use a queue "
                                    "with --content-based-dedup)");
    if (a->lines && a->n_args > 1)
        return cli_usage_error(cli, "--lines reads the messages from stdin: give no BODY");
    if (a->delay >= 0 && a->deliver_at_ms >= 0)
        return cli_usage_error(cli, "give --delay or --deliver-at, not both");
    if ((cmd->options & CLI_OPT_VT_REQUIRED) && a->vt < 0)
        return cli_usage_error(cli, "--visibility-timeout is required");
    if ((cmd->options & CLI_OPT_ATTR_REQUIRED) && a->vt < 0 && a->mms < 0 && a->delay < 0 &&
        a->retention < 0 && a->receive_wait < 0 && !a->dlq && a->redrive_allow < 0 && !a->n_tags &&
        a->fifo < 0 && a->cbd < 0 && a->dedup_scope < 0 && a->throughput < 0)
        return cli_usage_error(cli, "give at least one attribute: --visibility-timeout SEC, "
                                    "--max-message-size BYTES, --delay SEC, --retention SEC, "
                                    "--receive-wait SEC, --dead-letter-queue NAME, --redrive-allow "
                                    "..., --tag KEY=VALUE, --content-based-dedup, --dedup-scope "
                                    "..., --throughput-limit ...");
    if (a->list + a->cancel > 1 ||
        ((a->list || a->cancel) && (a->to || a->rate >= 0 || a->no_wait)))
        return cli_usage_error(cli, "--list and --cancel take the queue alone");
    if (a->max_receive_count >= 0 && (!a->dlq || !a->dlq[0]))
        return cli_usage_error(cli, "--max-receive-count goes with --dead-letter-queue NAME");
    if ((cmd->options & CLI_OPT_CLUSTER) && cli_cluster_check_args(cli, a) != CLI_EXIT_OK)
        return CLI_EXIT_USAGE;
    if ((cmd->options & CLI_OPT_TOPIC) && !kyu_topic_name_valid(a->args[0], strlen(a->args[0])))
        return cli_usage_error(cli,
                               "invalid topic name '%.60s': 1 to %d characters of letters, "
                               "digits, - and _",
                               a->args[0], KYU_TOPIC_NAME_MAX);
    if (cmd->min_args > 0 && !(cmd->options & (CLI_OPT_CLUSTER | CLI_OPT_TOPIC | CLI_OPT_SUB_ID)) &&
        !cli_check_queue(cli, a->args[0]))
        return CLI_EXIT_USAGE;
    for (int i = 1; (cmd->options & CLI_OPT_HANDLES) && i < a->n_args; i++)
        if (strlen(a->args[i]) > KYU_HANDLE_MAX || !a->args[i][0])
            return cli_usage_error(cli, "receipt handle '%.40s' is empty or over %d bytes",
                                   a->args[i], KYU_HANDLE_MAX);
    return CLI_EXIT_OK;
}

int main(int argc, char **argv)
{
    cli_t cli = {.broker = getenv("KYU_BROKER"), .timeout_ms = DEFAULT_TIMEOUT_S * 1000};
    if (!cli.broker || !*cli.broker)
        cli.broker = DEFAULT_BROKER;
    static const struct option opts[] = {
        {"broker", required_argument, NULL, 'b'},
        {"json", no_argument, NULL, 'j'},
        {"timeout", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    opterr = 0;
    int c, secs = 0;
    while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
        switch (c) {
        case 'b':
            cli.broker = optarg;
            break;
        case 'j':
            cli.json = true;
            break;
        case 't':
            if (!parse_int(optarg, 1, 3600, &secs))
                return cli_usage_error(&cli, "--timeout must be 1 to 3600 seconds, not '%s'",
                                       optarg);
            cli.timeout_ms = secs * 1000;
            break;
        case 'h':
            help(stdout);
            return CLI_EXIT_OK;
        default:
            return cli_usage_error(&cli, "unknown global option or missing value: '%s'",
                                   argv[optind - 1]);
        }
    }
    if (optind >= argc)
        return cli_usage_error(&cli, "no command given");
    for (size_t i = 0; i < N_COMMANDS && !cli.cmd; i++)
        if (strcmp(argv[optind], commands[i].name) == 0)
            cli.cmd = &commands[i];
    if (!cli.cmd)
        return cli_usage_error(&cli, "unknown command '%s'", argv[optind]);
    cli_args_t a;
    int rc = parse_cmd_args(&cli, argc - optind, argv + optind, &a);
    if (rc == CLI_EXIT_OK && !(cli.cmd->options & CLI_OPT_CLUSTER) && !cli_connect(&cli))
        rc = CLI_EXIT_ERROR;
    if (rc != CLI_EXIT_OK) {
        cli_args_free(&a);
        return rc;
    }
    rc = cli.cmd->run(&cli, &a);
    cli_args_free(&a);
    kyu_client_destroy(&cli.client);
    if (fflush(stdout) != 0 && rc == CLI_EXIT_OK) {
        perror("kyu: writing the output");
        rc = CLI_EXIT_ERROR;
    }
    return rc;
}
