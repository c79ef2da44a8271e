/* cli: what the kyu command-line tool's files share (cli.c: options, help, dispatch;
 * cli_cmds.c: the queue and message commands; cli_send.c: send). docs: client/README.md. */
#ifndef KYU_CLI_H
#define KYU_CLI_H

#include "kyu.h"

#include <jansson.h>
#include <stdbool.h>

/* Exit statuses: the CLI contract. */
enum { CLI_EXIT_OK = 0, CLI_EXIT_ERROR = 1, CLI_EXIT_USAGE = 2 };

typedef struct cli_cmd cli_cmd_t;

typedef struct {
    const char *broker; /* comma-separated endpoints */
    bool json;
    int timeout_ms;
    const cli_cmd_t *cmd;
    kyu_client_t *client; /* connected by cli_connect, after the arguments were checked */
} cli_t;

/* A command's options beyond the positional arguments. */
typedef struct {
    int max;               /* --max, 1..10; 0 when not given */
    int vt;                /* --visibility-timeout, 0..43200; -1 when not given */
    int mms;               /* --max-message-size, 1024..1048576; -1 when not given */
    int delay;             /* --delay, 0..900; -1 when not given */
    int64_t deliver_at_ms; /* send --deliver-at, ms since the epoch; -1 when not given */
    int wait;              /* receive --wait, 0..20; -1 when not given */
    /* create-queue, set-queue-attributes: the other attributes (-1 / NULL / 0: not given) */
    int retention;         /* --retention SEC */
    int receive_wait;      /* --receive-wait SEC */
    const char *dlq;       /* --dead-letter-queue NAME ("": remove the RedrivePolicy) */
    int max_receive_count; /* --max-receive-count N */
    int redrive_allow;     /* --redrive-allow all|none|QUEUE,...: kyu_redrive_allow_t */
    size_t n_sources;      /* its queues */
    char *sources[KYU_REDRIVE_SOURCES_MAX];
    size_t n_tags; /* --tag KEY=VALUE, repeatable */
    const char *tag_keys[KYU_TAGS_MAX];
    const char *tag_values[KYU_TAGS_MAX];
    bool force;            /* delete-queue --force */
    bool lines;            /* --lines */
    kyu_msg_attrs_t attrs; /* send --attr (checked); Binary values in attr_bufs */
    unsigned char *attr_bufs[KYU_MSG_ATTRS_MAX]; /* freed by cli_args_free */
    uint64_t from;                               /* peek --from POSITION; 0 when not given */
    const char *from_id;                         /* peek --from MESSAGE_ID; NULL when not */
    /* redrive: --to NAME (NULL: each message's source), --max-per-second N (-1: not given),
     * --list, --cancel, --no-wait */
    const char *to;
    int rate;
    bool list, cancel, no_wait;
    bool raw; /* subscribe --raw */
    /* FIFO: create-queue --fifo, --content-based-dedup / --no-content-based-dedup,
     * --dedup-scope, --throughput-limit (-1 when not given); send --group, --dedup-id;
     * receive --attempt-id */
    int fifo, cbd, dedup_scope, throughput;
    const char *group, *dedup_id, *attempt_id;
    /* subscribe --filter JSON (NULL: none), --filter-scope body (filter_body) */
    const char *filter;
    bool filter_body, has_filter_scope;
    bool no_filter, no_raw; /* set-subscription-attributes --no-filter, --no-raw */
    int n_args;             /* positional arguments */
    char **args;
} cli_args_t;

typedef int(cli_run_fn)(cli_t *cli, cli_args_t *a);

struct cli_cmd {
    const char *name;
    const char *usage; /* after "kyu NAME " */
    const char *help;
    unsigned options;       /* CLI_OPT_* the command takes */
    int min_args, max_args; /* positional; max -1: unbounded */
    cli_run_fn *run;
};

enum {
    CLI_OPT_MAX = 1,
    CLI_OPT_VT = 2,
    CLI_OPT_LINES = 4,
    CLI_OPT_VT_REQUIRED = 8,
    CLI_OPT_HANDLES = 16,
    CLI_OPT_CLUSTER = 32,     /* talks to every endpoint itself: no queue argument, no connect */
    CLI_OPT_QUEUE_ATTRS = 64, /* --max-message-size, --delay (with CLI_OPT_VT: queue attributes) */
    CLI_OPT_ATTR_REQUIRED = 128,  /* at least one queue attribute (--visibility-timeout, ...) */
    CLI_OPT_SEND_DELAY = 256,     /* send: --delay (each message's) or --deliver-at */
    CLI_OPT_WAIT = 512,           /* receive: --wait SEC (long polling) */
    CLI_OPT_FORCE = 1024,         /* delete-queue --force */
    CLI_OPT_MSG_ATTRS = 2048,     /* send: --attr NAME=TYPE:VALUE (repeatable) */
    CLI_OPT_FROM = 4096,          /* peek: --from POSITION or MESSAGE_ID */
    CLI_OPT_REDRIVE = 8192,       /* redrive: --to, --max-per-second, --list, --cancel, --no-wait */
    CLI_OPT_TOPIC = 16384,        /* the first argument is a topic's name, not a queue's */
    CLI_OPT_RAW = 32768,          /* subscribe --raw */
    CLI_OPT_SUB_ID = 65536,       /* the first argument is a subscription id */
    CLI_OPT_GROUP = 131072,       /* send: --group GROUP, --dedup-id ID (FIFO queues) */
    CLI_OPT_ATTEMPT = 262144,     /* receive: --attempt-id ID (ReceiveRequestAttemptId) */
    CLI_OPT_SUB_ATTRS = 524288,   /* set-subscription-attributes: --no-filter, --no-raw */
    CLI_OPT_TOPIC_ATTRS = 1048576 /* create-topic: --fifo, --content-based-dedup */
};

/* Prints "kyu: CMD: fmt" and the command's usage line on stderr; returns CLI_EXIT_USAGE. */
int cli_usage_error(const cli_t *cli, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints "kyu: CMD: CODE: message" on stderr; returns CLI_EXIT_ERROR. */
int cli_fail(const cli_t *cli, const kyu_err_t *err);
/* Prints "kyu: CMD: fmt" on stderr; returns CLI_EXIT_ERROR. */
int cli_failf(const cli_t *cli, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Connects cli->client (HELLO included); on failure prints why and returns false. */
bool cli_connect(cli_t *cli);
/* Checks a queue name argument; false (after printing a usage error) when invalid. */
bool cli_check_queue(const cli_t *cli, const char *name);
/* Writes one compact JSON line to stdout and frees obj (takes ownership). */
int cli_print_json(json_t *obj);

int cli_cmd_create_queue(cli_t *cli, cli_args_t *a);
int cli_cmd_delete_queue(cli_t *cli, cli_args_t *a);
int cli_cmd_purge_queue(cli_t *cli, cli_args_t *a);
int cli_cmd_untag_queue(cli_t *cli, cli_args_t *a);
int cli_cmd_list_queues(cli_t *cli, cli_args_t *a);
int cli_cmd_get_queue_attributes(cli_t *cli, cli_args_t *a);
int cli_cmd_list_dead_letter_source_queues(cli_t *cli, cli_args_t *a);
int cli_cmd_set_queue_attributes(cli_t *cli, cli_args_t *a);
int cli_cmd_send(cli_t *cli, cli_args_t *a);
/* Parses send --deliver-at: an RFC 3339 time (2026-12-05T10:00:00Z, fractions of a second
 * and +HH:MM offsets allowed) or +N followed by s, m, h or d after now_ms (ms since the
 * epoch); at most KYU_DELIVER_AT_MAX_S after now_ms. False with why filled when invalid. */
bool cli_parse_deliver_at(const char *s, int64_t now_ms, int64_t *out, char *why, size_t why_len);
/* Parses send --attr NAME=TYPE:VALUE into a->attrs (Binary VALUE: base64); false with why
 * filled when invalid. The value points into arg or a buffer kept in a->attr_bufs. */
bool cli_parse_attr(char *arg, cli_args_t *a, char *why, size_t why_len);
void cli_args_free(cli_args_t *a);
/* A message's attributes as SQS prints them: {name: {DataType, StringValue | BinaryValue
 * (base64)}}; NULL when a String value is not UTF-8 (or out of memory). */
json_t *cli_attrs_json(const kyu_msg_attrs_t *attrs);
/* A Binary value as base64 (caller frees), NULL when out of memory. */
char *cli_base64(const void *v, size_t n);
int cli_cmd_send_batch(cli_t *cli, cli_args_t *a);    /* cli_batch.c */
int cli_cmd_publish_batch(cli_t *cli, cli_args_t *a); /* cli_batch.c */
int cli_cmd_handle_batch(cli_t *cli, cli_args_t *a);  /* cli_batch.c */
int cli_cmd_receive(cli_t *cli, cli_args_t *a);
int cli_cmd_peek(cli_t *cli, cli_args_t *a);
int cli_cmd_delete(cli_t *cli, cli_args_t *a);
int cli_cmd_change_visibility(cli_t *cli, cli_args_t *a);
int cli_cmd_cluster(cli_t *cli, cli_args_t *a);
int cli_cmd_redrive(cli_t *cli, cli_args_t *a); /* cli_redrive.c */
int cli_cmd_workers(cli_t *cli, cli_args_t *a); /* cli_workers.c */
int cli_cmd_publish(cli_t *cli, cli_args_t *a); /* cli_send.c */
/* cli_topics.c */
int cli_cmd_create_topic(cli_t *cli, cli_args_t *a);
int cli_cmd_delete_topic(cli_t *cli, cli_args_t *a);
int cli_cmd_list_topics(cli_t *cli, cli_args_t *a);
int cli_cmd_subscribe(cli_t *cli, cli_args_t *a);
int cli_cmd_unsubscribe(cli_t *cli, cli_args_t *a);
int cli_cmd_list_subscriptions(cli_t *cli, cli_args_t *a);
int cli_cmd_set_subscription_attributes(cli_t *cli, cli_args_t *a);
int cli_cmd_get_subscription_attributes(cli_t *cli, cli_args_t *a);
/* Checks the cluster command's arguments (a usage error is printed); CLI_EXIT_OK or
 * CLI_EXIT_USAGE. */
int cli_cluster_check_args(const cli_t *cli, cli_args_t *a);

#endif
