/* cli_cmds: the kyu commands other than send — queues, receive, delete, change-visibility.
 * Each prints plain text or (--json) one JSON object per line, built with jansson. */
#include "cli.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The queue attributes of the command's options. */
static void settings_of(const cli_args_t *a, kyu_queue_settings_t *s)
{
    kyu_queue_settings_init(s);
    s->visibility_timeout = a->vt;
    s->max_message_size = a->mms;
    s->delay_seconds = a->delay;
    s->retention_seconds = a->retention;
    s->receive_wait_seconds = a->receive_wait;
    s->dead_letter_queue = a->dlq;
    s->max_receive_count = a->max_receive_count;
    s->redrive_allow = a->redrive_allow;
    s->fifo = a->fifo;
    s->content_based_dedup = a->cbd;
    s->dedup_scope = a->dedup_scope;
    s->throughput_limit = a->throughput;
    s->n_redrive_sources = a->n_sources;
    for (size_t i = 0; i < a->n_sources; i++)
        s->redrive_sources[i] = a->sources[i];
    s->n_tags = a->n_tags;
    for (size_t i = 0; i < a->n_tags; i++) {
        s->tag_keys[i] = a->tag_keys[i];
        s->tag_values[i] = a->tag_values[i];
    }
}

int cli_cmd_create_queue(cli_t *cli, cli_args_t *a)
{
    kyu_err_t err = {0};
    kyu_queue_settings_t s;
    settings_of(a, &s);
    if (kyu_client_create_queue_with(cli->client, a->args[0], &s, &err) != KYU_OK)
        return cli_fail(cli, &err);
    return CLI_EXIT_OK;
}

int cli_cmd_set_queue_attributes(cli_t *cli, cli_args_t *a)
{
    kyu_err_t err = {0};
    kyu_queue_settings_t s;
    settings_of(a, &s);
    if (kyu_client_set_queue_attributes(cli->client, a->args[0], &s, &err) != KYU_OK)
        return cli_fail(cli, &err);
    return CLI_EXIT_OK;
}

int cli_cmd_delete_queue(cli_t *cli, cli_args_t *a)
{
    kyu_err_t err = {0};
    if (kyu_client_delete_queue_with(cli->client, a->args[0], a->force, &err) != KYU_OK)
        return cli_fail(cli, &err);
    return CLI_EXIT_OK;
}

int cli_cmd_untag_queue(cli_t *cli, cli_args_t *a)
{
    kyu_err_t err = {0};
    if (kyu_client_untag_queue(cli->client, a->args[0], (const char *const *)a->args + 1,
                               (size_t)a->n_args - 1, &err) != KYU_OK)
        return cli_fail(cli, &err);
    return CLI_EXIT_OK;
}

int cli_cmd_purge_queue(cli_t *cli, cli_args_t *a)
{
    kyu_err_t err = {0};
    if (kyu_client_purge_queue(cli->client, a->args[0], &err) != KYU_OK)
        return cli_fail(cli, &err);
    return CLI_EXIT_OK;
}

static int print_names(cli_t *cli, char **names, size_t n)
{
    int rc = CLI_EXIT_OK;
    for (size_t i = 0; i < n && rc == CLI_EXIT_OK; i++) {
        if (cli->json)
            rc = cli_print_json(json_pack("{s:s}", "QueueName", names[i]));
        else
            puts(names[i]);
    }
    kyu_queue_names_destroy(&names);
    return rc;
}

int cli_cmd_list_dead_letter_source_queues(cli_t *cli, cli_args_t *a)
{
    kyu_err_t err = {0};
    char **names = NULL;
    size_t n = 0;
    if (kyu_client_list_dead_letter_source_queues(cli->client, a->args[0], &names, &n, &err) !=
        KYU_OK)
        return cli_fail(cli, &err);
    return print_names(cli, names, n);
}

int cli_cmd_list_queues(cli_t *cli, cli_args_t *a)
{
    (void)a;
    kyu_err_t err = {0};
    char **names = NULL;
    size_t n = 0;
    if (kyu_client_list_queues(cli->client, &names, &n, &err) != KYU_OK)
        return cli_fail(cli, &err);
    return print_names(cli, names, n);
}

/* SQS gives attribute values as strings; so does kyu. */
static json_t *int_string(int64_t v)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%" PRId64, v);
    return json_string(buf);
}

/* RedrivePolicy and RedriveAllowPolicy as SQS gives them: JSON text in a string ({"dead
 * LetterTargetQueue": ..., "maxReceiveCount": N}; {"redrivePermission": ..., "sourceQueues":
 * [...]}); NULL on out of memory. */
static char *redrive_json(const kyu_queue_attrs_t *at, bool allow_policy)
{
    json_t *o = NULL;
    if (!allow_policy) {
        o = json_pack("{s:s, s:I}", "deadLetterTargetQueue", at->dlq, "maxReceiveCount",
                      (json_int_t)at->max_receive_count);
    } else {
        const char *perm = at->redrive_allow == KYU_REDRIVE_DENY_ALL   ? "denyAll"
                           : at->redrive_allow == KYU_REDRIVE_BY_QUEUE ? "byQueue"
                                                                       : "allowAll";
        json_t *src = json_array();
        for (size_t i = 0; src && i < at->n_sources; i++)
            json_array_append_new(src, json_string(at->sources[i]));
        o = src && at->n_sources
                ? json_pack("{s:s, s:o}", "redrivePermission", perm, "sourceQueues", src)
                : json_pack("{s:s}", "redrivePermission", perm);
        if (src && !at->n_sources)
            json_decref(src);
    }
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return text;
}

int cli_cmd_get_queue_attributes(cli_t *cli, cli_args_t *a)
{
    kyu_err_t err = {0};
    kyu_queue_attrs_t at;
    kyu_tags_t *tags = malloc(sizeof *tags);
    if (!tags)
        return cli_failf(cli, "out of memory");
    if (kyu_client_get_queue_attributes_with(cli->client, a->args[0], &at, tags, &err) != KYU_OK) {
        free(tags);
        return cli_fail(cli, &err);
    }
    const struct {
        const char *name;
        int64_t value;
    } rows[] = {
        {"VisibilityTimeout", at.visibility_timeout},
        {"MaximumMessageSize", at.max_size},
        {"DelaySeconds", at.delay},
        {"MessageRetentionPeriod", at.retention},
        {"ReceiveMessageWaitTimeSeconds", at.receive_wait},
        {"ApproximateNumberOfMessages", at.visible},
        {"ApproximateNumberOfMessagesNotVisible", at.not_visible},
        {"ApproximateNumberOfMessagesDelayed", at.delayed},
        {"CreatedTimestamp", at.created_ms},
        {"LastModifiedTimestamp", at.modified_ms},
    };
    json_t *obj = cli->json ? json_object() : NULL;
    int rc = CLI_EXIT_OK;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0] && rc == CLI_EXIT_OK; i++) {
        if (!cli->json)
            printf("%s %" PRId64 "\n", rows[i].name, rows[i].value);
        else if (!obj || json_object_set_new(obj, rows[i].name, int_string(rows[i].value)) != 0)
            rc = cli_failf(cli, "cannot build JSON output (out of memory)");
    }
    /* As SQS: the policies only when set (RedriveAllowPolicy: other than allowAll). */
    bool shown[2] = {at.dlq[0] != '\0', at.redrive_allow != KYU_REDRIVE_ALLOW_ALL};
    char *policies[2] = {shown[0] ? redrive_json(&at, false) : NULL,
                         shown[1] ? redrive_json(&at, true) : NULL};
    const char *names[2] = {"RedrivePolicy", "RedriveAllowPolicy"};
    for (size_t i = 0; i < 2 && rc == CLI_EXIT_OK; i++) {
        if (!shown[i])
            continue;
        if (!policies[i])
            rc = cli_failf(cli, "cannot build JSON output (out of memory)");
        else if (!cli->json)
            printf("%s %s\n", names[i], policies[i]);
        else if (json_object_set_new(obj, names[i], json_string(policies[i])) != 0)
            rc = cli_failf(cli, "cannot build JSON output (out of memory)");
    }
    free(policies[0]);
    free(policies[1]);
    /* A FIFO queue's attributes (SQS's strings: "true", "messageGroup", ...) */
    const char *fifo_names[4] = {"FifoQueue", "ContentBasedDeduplication", "DeduplicationScope",
                                 "FifoThroughputLimit"};
    const char *fifo_values[4] = {
        "true", at.cbd ? "true" : "false",
        at.dedup_scope == KYU_DEDUP_SCOPE_GROUP ? "messageGroup" : "queue",
        at.throughput == KYU_THROUGHPUT_PER_GROUP ? "perMessageGroupId" : "perQueue"};
    for (size_t i = 0; at.fifo && i < 4 && rc == CLI_EXIT_OK; i++) {
        if (!cli->json)
            printf("%s %s\n", fifo_names[i], fifo_values[i]);
        else if (json_object_set_new(obj, fifo_names[i], json_string(fifo_values[i])) != 0)
            rc = cli_failf(cli, "cannot build JSON output (out of memory)");
    }
    /* Tags (SQS: ListQueueTags): "Tag KEY VALUE" lines; --json: "Tags": {key: value}. */
    json_t *tj = cli->json ? json_object() : NULL;
    for (size_t i = 0; i < tags->n && rc == CLI_EXIT_OK; i++) {
        if (!cli->json)
            printf("Tag %s %s\n", tags->keys[i], tags->values[i]);
        else if (!tj || json_object_set_new(tj, tags->keys[i], json_string(tags->values[i])) != 0)
            rc =
                cli_failf(cli, "tag '%s': not valid UTF-8, cannot print it as JSON", tags->keys[i]);
    }
    bool any_tag = tags->n > 0;
    free(tags);
    if (cli->json && rc == CLI_EXIT_OK && any_tag && tj &&
        json_object_set_new(obj, "Tags", tj) != 0)
        rc = cli_failf(cli, "cannot build JSON output (out of memory)");
    else if (cli->json && (rc != CLI_EXIT_OK || !tj || !any_tag))
        json_decref(tj);
    if (rc != CLI_EXIT_OK) {
        json_decref(obj);
        return rc;
    }
    return cli->json ? cli_print_json(obj) : CLI_EXIT_OK;
}

/* What a received and a peeked message print after their own lines: where a moved message
 * came from, the body's length and digests, the attributes, a blank line and the body. */
static void print_rest(const kyu_message_t *m)
{
    if (m->dlq_source[0])
        printf("DeadLetterQueueSourceQueue %s\nDeadLetterQueueReceiveCount %u\n"
               "DeadLetterQueueFirstReceiveTimestamp %" PRIu64
               "\nDeadLetterQueueLastReceiveTimestamp %" PRIu64
               "\nDeadLetterQueueMovedTimestamp %" PRIu64 "\n",
               m->dlq_source, m->dlq_receive_count, m->dlq_first_receive_ms, m->dlq_last_receive_ms,
               m->dlq_moved_ms);
    if (m->group_id[0])
        printf("MessageGroupId %s\n", m->group_id);
    if (m->dedup_id[0])
        printf("MessageDeduplicationId %s\n", m->dedup_id);
    if (m->sequence)
        printf("SequenceNumber %" PRIu64 "\n", m->sequence);
    printf("BodyLength %zu\n", m->body_len);
    printf("MD5OfBody %s\n", m->md5_body);
    if (m->attrs.n)
        printf("MD5OfMessageAttributes %s\n", m->md5_attrs);
    /* MessageAttribute NAME TYPE VALUE: a Binary value in base64 */
    for (size_t i = 0; i < m->attrs.n; i++) {
        const kyu_msg_attr_t *at = &m->attrs.a[i];
        char *b64 = at->binary ? cli_base64(at->value, at->value_len) : NULL;
        printf("MessageAttribute %.*s %.*s ", (int)at->name_len, at->name, (int)at->type_len,
               at->type);
        if (b64)
            fputs(b64, stdout);
        else
            fwrite(at->value, 1, at->value_len, stdout);
        putchar('\n');
        free(b64);
    }
    putchar('\n');
    fwrite(m->body, 1, m->body_len, stdout);
    fputs("\n\n", stdout);
}

static void print_plain(const kyu_message_t *m)
{
    printf("MessageId %s\nReceiptHandle %s\nReceiveCount %u\nSentTimestamp %" PRIu64
           "\nApproximateFirstReceiveTimestamp %" PRIu64 "\n",
           m->message_id, m->receipt_handle, m->receive_count, m->sent_ms, m->first_receive_ms);
    print_rest(m);
}

/* The SQS shape of a message; NULL when the body is not valid UTF-8 (JSON strings are). */
static json_t *message_json(const kyu_message_t *m)
{
    json_t *body = json_stringn((const char *)m->body, m->body_len);
    if (!body)
        return NULL;
    char rc[16], ts[24], fr[24];
    snprintf(rc, sizeof rc, "%u", m->receive_count);
    snprintf(ts, sizeof ts, "%" PRIu64, m->sent_ms);
    snprintf(fr, sizeof fr, "%" PRIu64, m->first_receive_ms);
    json_t *obj =
        json_pack("{s:s, s:s, s:o, s:{s:s, s:s, s:s}}", "MessageId", m->message_id, "ReceiptHandle",
                  m->receipt_handle, "Body", body, "Attributes", "ApproximateReceiveCount", rc,
                  "SentTimestamp", ts, "ApproximateFirstReceiveTimestamp", fr);
    if (obj && m->md5_body[0])
        json_object_set_new(obj, "MD5OfBody", json_string(m->md5_body));
    json_t *sys = obj ? json_object_get(obj, "Attributes") : NULL;
    if (sys && m->group_id[0])
        json_object_set_new(sys, "MessageGroupId", json_string(m->group_id));
    if (sys && m->dedup_id[0])
        json_object_set_new(sys, "MessageDeduplicationId", json_string(m->dedup_id));
    if (sys && m->sequence) { /* SQS: a decimal string */
        char sn[24];
        snprintf(sn, sizeof sn, "%" PRIu64, m->sequence);
        json_object_set_new(sys, "SequenceNumber", json_string(sn));
    }
    if (obj && m->attrs.n) {
        json_t *attrs = cli_attrs_json(&m->attrs);
        if (!attrs) { /* a String value that is not UTF-8: as a body that is not */
            json_decref(obj);
            return NULL;
        }
        json_object_set_new(obj, "MessageAttributes", attrs);
        json_object_set_new(obj, "MD5OfMessageAttributes", json_string(m->md5_attrs));
    }
    if (!obj || !m->dlq_source[0])
        return obj;
    /* A message moved by a RedrivePolicy: SQS's attribute (the source queue's name where SQS
     * gives its ARN), and beyond SQS why it moved. */
    char dc[16], df[24], dl[24], dm[24];
    snprintf(dc, sizeof dc, "%u", m->dlq_receive_count);
    snprintf(df, sizeof df, "%" PRIu64, m->dlq_first_receive_ms);
    snprintf(dl, sizeof dl, "%" PRIu64, m->dlq_last_receive_ms);
    snprintf(dm, sizeof dm, "%" PRIu64, m->dlq_moved_ms);
    json_t *at = json_object_get(obj, "Attributes");
    if (json_object_set_new(at, "DeadLetterQueueSourceQueue", json_string(m->dlq_source)) ||
        json_object_set_new(at, "DeadLetterQueueReceiveCount", json_string(dc)) ||
        json_object_set_new(at, "DeadLetterQueueFirstReceiveTimestamp", json_string(df)) ||
        json_object_set_new(at, "DeadLetterQueueLastReceiveTimestamp", json_string(dl)) ||
        json_object_set_new(at, "DeadLetterQueueMovedTimestamp", json_string(dm))) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

/* --json and a body that is not UTF-8: the message is made visible again at once (so it is
 * not lost to this consumer for a whole lease) and reported; plain output prints any bytes. */
static int release_binary(cli_t *cli, const char *queue, const kyu_message_t *m)
{
    const char *h[] = {m->receipt_handle};
    kyu_code_t res[1];
    kyu_err_t err = {0};
    kyu_code_t rc = kyu_client_change_visibility(cli->client, queue, h, 1, 0, res, &err);
    return cli_failf(cli,
                     "message %s: body or a String attribute is not valid UTF-8, so it cannot be "
                     "printed as JSON "
                     "(use plain output for binary bodies); %s",
                     m->message_id,
                     rc == KYU_OK ? "it was made visible again"
                                  : "making it visible again failed too");
}

int cli_cmd_receive(cli_t *cli, cli_args_t *a)
{
    kyu_err_t err = {0};
    kyu_message_t *msgs = NULL;
    size_t n = 0;
    kyu_receive_options_t o;
    kyu_receive_options_init(&o);
    o.max = a->max ? a->max : 1;
    o.visibility_timeout = a->vt;
    o.wait_seconds = a->wait;
    o.attempt_id = a->attempt_id;
    if (o.wait_seconds < 0) {
        /* The queue's ReceiveMessageWaitTimeSeconds applies: ask for it, so that the call
         * waits as long as the broker may hold the receive (up to 20 s past --timeout). */
        kyu_queue_attrs_t qa;
        if (kyu_client_get_queue_attributes(cli->client, a->args[0], &qa, &err) != KYU_OK)
            return cli_fail(cli, &err);
        o.wait_seconds = (int)qa.receive_wait;
    }
    if (kyu_client_receive_with(cli->client, a->args[0], &o, &msgs, &n, &err) != KYU_OK)
        return cli_fail(cli, &err);
    int rc = CLI_EXIT_OK;
    for (size_t i = 0; i < n; i++) {
        if (!cli->json) {
            print_plain(&msgs[i]);
            continue;
        }
        json_t *obj = message_json(&msgs[i]);
        int r = obj ? cli_print_json(obj) : release_binary(cli, a->args[0], &msgs[i]);
        if (r != CLI_EXIT_OK)
            rc = r;
    }
    kyu_messages_destroy(&msgs);
    return rc;
}

/* peek: the state's name as printed (the wire's). */
static const char *state_name(const kyu_message_t *m)
{
    const char *s = kyu_msg_state_name(m->state);
    return s ? s : "unknown";
}

static void print_peeked(const kyu_message_t *m)
{
    printf("MessageId %s\nPosition %" PRIu64 "\nState %s\n", m->message_id, m->position,
           state_name(m));
    if (m->visible_at_ms)
        printf("VisibleTimestamp %" PRIu64 "\n", m->visible_at_ms);
    printf("ReceiveCount %u\nSentTimestamp %" PRIu64 "\nApproximateFirstReceiveTimestamp %" PRIu64
           "\n",
           m->receive_count, m->sent_ms, m->first_receive_ms);
    print_rest(m);
}

/* The shape of a received message (message_json) without a handle, with its state and
 * position; NULL when the body is not valid UTF-8. */
static json_t *peeked_json(const kyu_message_t *m)
{
    json_t *obj = message_json(m);
    if (!obj)
        return NULL;
    char pos[24], va[24];
    snprintf(pos, sizeof pos, "%" PRIu64, m->position);
    snprintf(va, sizeof va, "%" PRIu64, m->visible_at_ms);
    json_t *attrs = json_object_get(obj, "Attributes");
    if (json_object_del(obj, "ReceiptHandle") != 0 ||
        json_object_set_new(obj, "State", json_string(state_name(m))) != 0 ||
        json_object_set_new(obj, "Position", json_string(pos)) != 0 ||
        (m->visible_at_ms &&
         json_object_set_new(attrs, "VisibleTimestamp", json_string(va)) != 0)) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

/* One page: the messages, then (when more follow) the position of the next page: a line
 * "Next POSITION", or {"Next": "POSITION"} with --json. */
int cli_cmd_peek(cli_t *cli, cli_args_t *a)
{
    kyu_err_t err = {0};
    kyu_message_t *msgs = NULL;
    size_t n = 0;
    uint64_t next = 0;
    if (a->from_id &&
        kyu_client_peek_find(cli->client, a->args[0], a->from_id, &a->from, &err) != KYU_OK)
        return cli_fail(cli, &err);
    if (kyu_client_peek(cli->client, a->args[0], a->max ? a->max : KYU_BATCH_MAX, a->from, &msgs,
                        &n, &next, &err) != KYU_OK)
        return cli_fail(cli, &err);
    int rc = CLI_EXIT_OK;
    for (size_t i = 0; i < n; i++) {
        if (!cli->json) {
            print_peeked(&msgs[i]);
            continue;
        }
        json_t *obj = peeked_json(&msgs[i]);
        int r = obj ? cli_print_json(obj)
                    : cli_failf(cli,
                                "message %s: body or a String attribute is not valid UTF-8, so "
                                "it cannot be printed as JSON (use plain output for binary "
                                "bodies)",
                                msgs[i].message_id);
        if (r != CLI_EXIT_OK)
            rc = r;
    }
    kyu_messages_destroy(&msgs);
    if (next && !cli->json)
        printf("Next %" PRIu64 "\n", next);
    if (next && cli->json) {
        char pos[24];
        snprintf(pos, sizeof pos, "%" PRIu64, next);
        int r = cli_print_json(json_pack("{s:s}", "Next", pos));
        if (r != CLI_EXIT_OK)
            rc = r;
    }
    return rc;
}

/* What a failed handle means, for the one stderr line per failure. */
static const char *handle_error_text(kyu_code_t code)
{
    switch (code) {
    case KYU_ERR_RECEIPT_STALE:
        return "the message was received again since this handle was issued";
    case KYU_ERR_RECEIPT_INVALID:
        return "not a receipt handle of this queue, or its message no longer exists";
    case KYU_ERR_INVALID_ARGUMENT:
        return "the handle is not well-formed";
    default:
        return "the broker refused this handle";
    }
}

/* DELETE and CHANGE_VISIBILITY: up to 10 handles per request, one line per failed handle. */
static int handles_command(cli_t *cli, cli_args_t *a, kyu_op_t op)
{
    int rc = CLI_EXIT_OK;
    for (int first = 1; first < a->n_args; first += KYU_BATCH_MAX) {
        int n = a->n_args - first < KYU_BATCH_MAX ? a->n_args - first : KYU_BATCH_MAX;
        kyu_request_t req = {
            .op = op, .fields = KYU_F_QUEUE | KYU_F_HANDLES, .n_handles = (size_t)n};
        kyu_err_t err = {0};
        snprintf(req.queue, sizeof req.queue, "%s", a->args[0]); /* checked by cli.c */
        if (op == KYU_OP_CHANGE_VISIBILITY) {
            req.fields |= KYU_F_VT;
            req.vt = (uint32_t)a->vt;
        }
        for (int k = 0; k < n; k++)
            snprintf(req.handles[k], sizeof req.handles[k], "%s", a->args[first + k]);
        kyu_reply_t rep;
        kyu_reply_init(&rep);
        if (kyu_client_call(cli->client, &req, NULL, NULL, 0, &rep, NULL, &err) != KYU_OK) {
            kyu_reply_reset(&rep);
            return cli_fail(cli, &err); /* the request as a whole */
        }
        for (size_t k = 0; k < rep.n_results; k++) {
            kyu_code_t code =
                rep.results[k] < KYU_ERR_CODE_COUNT ? (kyu_code_t)rep.results[k] : KYU_ERR_INTERNAL;
            if (code != KYU_OK)
                rc = cli_failf(cli, "%s: %s: %s", req.handles[k], kyu_code_name(code),
                               handle_error_text(code));
        }
        kyu_reply_reset(&rep);
    }
    return rc;
}

int cli_cmd_delete(cli_t *cli, cli_args_t *a)
{
    return handles_command(cli, a, KYU_OP_DELETE);
}

int cli_cmd_change_visibility(cli_t *cli, cli_args_t *a)
{
    return handles_command(cli, a, KYU_OP_CHANGE_VISIBILITY);
}
