/* cli_batch: `kyu send-batch` and `kyu publish-batch`. Reads entries as JSON lines in the
 * shape of SQS's SendMessageBatch entries ({"Id", "MessageBody", "DelaySeconds",
 * "MessageAttributes"}) or SNS's PublishBatch entries ({"Id", "Message", "MessageAttributes"})
 * and sends them ten to a request (SEND or PUBLISH with entry ids: each entry is checked
 * alone, so a bad one fails alone), fewer when ten would be larger together than a batch
 * takes (the broker's maximum message size for SEND, 256 KiB for PUBLISH: the broker refuses
 * such a batch whole, BatchRequestTooLong). Prints a line per entry sent (or, with --json,
 * SQS's or SNS's answer per request: {"Successful": [...], "Failed": [...]}) and one stderr
 * line per failed entry. */
#include "cli.h"

#include <inttypes.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One parsed line: what the entry borrows lives here until its request is answered. */
typedef struct {
    json_t *obj; /* the line's object: strings are borrowed from it */
    char id[KYU_ENTRY_ID_MAX + 16];
    kyu_msg_attrs_t attrs;
    unsigned char *bins[KYU_MSG_ATTRS_MAX]; /* decoded BinaryValues */
    kyu_batch_entry_t entry;
} line_t;

/* A line's Id into out: its "Id" (id; a string), or without one the line number no. */
static bool entry_id(const json_t *id, size_t no, char *out, size_t out_len, char *why,
                     size_t why_len)
{
    if (id && !json_is_string(id)) {
        snprintf(why, why_len, "Id must be a string");
        return false;
    }
    if (id)
        snprintf(out, out_len, "%s", json_string_value(id));
    else
        snprintf(out, out_len, "%zu", no);
    return true;
}

static void line_free(line_t *l)
{
    json_decref(l->obj);
    for (size_t i = 0; i < KYU_MSG_ATTRS_MAX; i++)
        free(l->bins[i]);
    memset(l, 0, sizeof *l);
}

/* MessageAttributes {name: {DataType, StringValue | BinaryValue (base64)}} into l->attrs;
 * SQS's rules are the broker's to check (a bad attribute fails its entry alone). */
static bool parse_attrs(json_t *ma, line_t *l, char *why, size_t why_len)
{
    const char *name;
    json_t *v;
    if (!json_is_object(ma) || json_object_size(ma) > KYU_MSG_ATTRS_MAX) {
        snprintf(why, why_len, "MessageAttributes must be an object of at most %d attributes",
                 KYU_MSG_ATTRS_MAX);
        return false;
    }
    json_object_foreach(ma, name, v)
    {
        kyu_msg_attr_t *at = &l->attrs.a[l->attrs.n];
        json_t *type = json_object_get(v, "DataType"), *sv = json_object_get(v, "StringValue"),
               *bv = json_object_get(v, "BinaryValue");
        if (!json_is_string(type) || (json_is_string(sv) == json_is_string(bv))) {
            snprintf(why, why_len,
                     "attribute '%.64s' needs a DataType and a StringValue or a BinaryValue", name);
            return false;
        }
        *at = (kyu_msg_attr_t){.name = name,
                               .name_len = strlen(name),
                               .type = json_string_value(type),
                               .type_len = json_string_length(type)};
        if (json_is_string(sv)) {
            at->value = json_string_value(sv);
            at->value_len = json_string_length(sv);
        } else {
            size_t cap = json_string_length(bv) / 4 * 3 + 3, len = 0;
            unsigned char *bin = malloc(cap);
            if (!bin || sodium_base642bin(bin, cap, json_string_value(bv), json_string_length(bv),
                                          NULL, &len, NULL, sodium_base64_VARIANT_ORIGINAL) != 0) {
                free(bin);
                snprintf(why, why_len, "attribute '%.64s': BinaryValue is not base64", name);
                return false;
            }
            l->bins[l->attrs.n] = bin;
            at->value = bin;
            at->value_len = len;
            at->binary = true;
        }
        l->attrs.n++;
    }
    return true;
}

/* Parses input line number no (publish: SNS's entry shape); false with why filled when it is
 * not an entry. */
static bool parse_line(const char *text, size_t no, bool publish, line_t *l, char *why,
                       size_t why_len)
{
    const char *body_key = publish ? "Message" : "MessageBody";
    json_error_t jerr;
    l->obj = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(l->obj)) {
        snprintf(why, why_len, "not a JSON object: %s", l->obj ? "another value" : jerr.text);
        return false;
    }
    json_t *id = json_object_get(l->obj, "Id"), *body = json_object_get(l->obj, body_key),
           *delay = json_object_get(l->obj, "DelaySeconds"),
           *ma = json_object_get(l->obj, "MessageAttributes"),
           *gid = json_object_get(l->obj, "MessageGroupId"),
           *did = json_object_get(l->obj, "MessageDeduplicationId");
    if (!entry_id(id, no, l->id, sizeof l->id, why, why_len))
        return false;
    if (!json_is_string(body)) {
        snprintf(why, why_len, "%s must be a string", body_key);
        return false;
    }
    if (publish && delay) {
        snprintf(why, why_len, "DelaySeconds: a topic's messages have no delay");
        return false;
    }
    /* A delay out of range is the broker's to refuse, for this entry alone. */
    if (delay && (!json_is_integer(delay) || json_integer_value(delay) < 0 ||
                  json_integer_value(delay) > INT32_MAX)) {
        snprintf(why, why_len, "DelaySeconds must be a number of seconds");
        return false;
    }
    if (ma && !parse_attrs(ma, l, why, why_len))
        return false;
    if ((gid && !json_is_string(gid)) || (did && !json_is_string(did))) {
        snprintf(why, why_len, "MessageGroupId and MessageDeduplicationId must be strings");
        return false;
    }
    l->entry = (kyu_batch_entry_t){.id = l->id,
                                   .body = json_string_value(body),
                                   .len = json_string_length(body),
                                   .delay_seconds = delay ? (int)json_integer_value(delay) : -1,
                                   .attrs = l->attrs.n ? &l->attrs : NULL,
                                   .group_id = gid ? json_string_value(gid) : NULL,
                                   .dedup_id = did ? json_string_value(did) : NULL};
    return true;
}

/* What an entry counts toward its batch's size: body and attributes (SQS's rule, the
 * broker's BatchRequestTooLong). */
static size_t entry_size(const line_t *l)
{
    return l->entry.len + kyu_msg_attrs_size(&l->attrs);
}

/* Moves the parsed line from to to (to is empty), keeping what its entry borrows. */
static void move_line(line_t *to, line_t *from)
{
    *to = *from;
    to->entry.id = to->id;
    to->entry.attrs = to->attrs.n ? &to->attrs : NULL;
    memset(from, 0, sizeof *from);
}

/* A batch entry that failed: said on stderr, and with --json added to failed as SQS's
 * BatchResultErrorEntry (SenderFault: the request's fault, not the service's). */
static void entry_failed(cli_t *cli, json_t *failed, const char *id, const kyu_batch_result_t *r)
{
    fprintf(stderr, "kyu: %s: entry %s: %s: %s\n", cli->cmd->name, id, kyu_code_name(r->code),
            r->error);
    if (failed)
        json_array_append_new(failed,
                              json_pack("{s:s, s:b, s:s, s:s}", "Id", id, "SenderFault",
                                        r->code != KYU_ERR_INTERNAL && r->code != KYU_ERR_STORAGE &&
                                            r->code != KYU_ERR_BUSY && r->code != KYU_ERR_READ_ONLY,
                                        "Code", kyu_code_name(r->code), "Message", r->error));
}

/* Sends lines[0..n) as one batch (to a queue, or publish: to a topic) and prints the answers;
 * CLI_EXIT_OK when all were sent. */
static int send_group(cli_t *cli, const char *target, bool publish, line_t *lines, size_t n)
{
    kyu_batch_entry_t entries[KYU_BATCH_MAX] = {0};
    kyu_batch_result_t out[KYU_BATCH_MAX];
    for (size_t i = 0; i < n; i++)
        entries[i] = lines[i].entry;
    kyu_err_t err = {0};
    kyu_code_t rc = publish ? kyu_client_publish_batch(cli->client, target, entries, n, out, &err)
                            : kyu_client_send_batch(cli->client, target, entries, n, out, &err);
    json_t *ok = cli->json ? json_array() : NULL, *failed = cli->json ? json_array() : NULL;
    for (size_t i = 0; i < n; i++) {
        const kyu_batch_result_t *r = &out[i];
        if (r->code != KYU_OK) {
            entry_failed(cli, failed, lines[i].id, r);
        } else if (ok && publish) { /* SNS's PublishBatchResultEntry */
            json_t *o = json_pack("{s:s, s:s}", "Id", lines[i].id, "MessageId", r->sent.message_id);
            if (o && r->sent.sequence) { /* a FIFO topic's, as SNS: a decimal string */
                char sn[24];
                snprintf(sn, sizeof sn, "%" PRIu64, r->sent.sequence);
                json_object_set_new(o, "SequenceNumber", json_string(sn));
            }
            json_array_append_new(ok, o);
        } else if (ok) {
            json_t *o = json_pack("{s:s, s:s, s:s}", "Id", lines[i].id, "MessageId",
                                  r->sent.message_id, "MD5OfMessageBody", r->sent.md5_body);
            if (o && r->sent.md5_attrs[0])
                json_object_set_new(o, "MD5OfMessageAttributes", json_string(r->sent.md5_attrs));
            if (o && r->sent.sequence) { /* a FIFO queue's, as SQS: a decimal string */
                char sn[24];
                snprintf(sn, sizeof sn, "%" PRIu64, r->sent.sequence);
                json_object_set_new(o, "SequenceNumber", json_string(sn));
            }
            json_array_append_new(ok, o);
        } else if (r->sent.sequence) {
            printf("%s %s %" PRIu64 "\n", lines[i].id, r->sent.message_id, r->sent.sequence);
        } else {
            printf("%s %s\n", lines[i].id, r->sent.message_id);
        }
    }
    int status = rc == KYU_OK ? CLI_EXIT_OK : CLI_EXIT_ERROR;
    if (cli->json &&
        cli_print_json(json_pack("{s:o, s:o}", "Successful", ok, "Failed", failed)) != CLI_EXIT_OK)
        status = CLI_EXIT_ERROR;
    return status;
}

/* The next line of stdin, without its newline, counted in *no; -1 at its end. */
static ssize_t next_line(char **text, size_t *cap, size_t *no)
{
    ssize_t len = getline(text, cap, stdin);
    if (len > 0 && (*text)[len - 1] == '\n')
        (*text)[--len] = '\0';
    if (len >= 0)
        ++*no;
    return len;
}

/* send-batch and publish-batch: stdin's entries, ten (or fewer: max_total bytes) a request. */
static int run_batches(cli_t *cli, cli_args_t *a, bool publish)
{
    size_t max_total =
        publish ? KYU_PUBLISH_BATCH_BYTES_MAX : (size_t)kyu_client_max_body(cli->client);
    line_t lines[KYU_BATCH_MAX];
    memset(lines, 0, sizeof lines);
    size_t n = 0, no = 0, cap = 0, total = 0;
    char *text = NULL;
    int rc = CLI_EXIT_OK;
    for (;;) {
        ssize_t len = next_line(&text, &cap, &no);
        if (len > 0) {
            char why[KYU_ERR_MSG_MAX];
            if (!parse_line(text, no, publish, &lines[n], why, sizeof why)) {
                rc = cli_failf(cli, "line %zu: %s", no, why);
                line_free(&lines[n]);
                /* the lines before it are sent, none after */
                if (n > 0)
                    send_group(cli, a->args[0], publish, lines, n);
                break;
            }
            /* A batch's entries together are held to max_total (BatchRequestTooLong): an
             * entry that would pass it starts the next batch. */
            size_t size = entry_size(&lines[n]);
            if (n > 0 && total + size > max_total) {
                if (send_group(cli, a->args[0], publish, lines, n) != CLI_EXIT_OK)
                    rc = CLI_EXIT_ERROR;
                fflush(stdout);
                for (size_t i = 0; i < n; i++)
                    line_free(&lines[i]);
                move_line(&lines[0], &lines[n]);
                n = 0;
                total = 0;
            }
            total += size;
            n++;
        }
        /* A full batch, or the last: send it (an empty line is skipped). */
        if (n == KYU_BATCH_MAX || (len < 0 && n > 0)) {
            if (send_group(cli, a->args[0], publish, lines, n) != CLI_EXIT_OK)
                rc = CLI_EXIT_ERROR;
            fflush(stdout);
            for (size_t i = 0; i < n; i++)
                line_free(&lines[i]);
            n = 0;
            total = 0;
        }
        if (len < 0) {
            if (ferror(stdin))
                rc = cli_failf(cli, "cannot read stdin");
            break;
        }
    }
    for (size_t i = 0; i < n; i++)
        line_free(&lines[i]);
    free(text);
    return rc;
}

int cli_cmd_send_batch(cli_t *cli, cli_args_t *a)
{
    return run_batches(cli, a, false);
}

int cli_cmd_publish_batch(cli_t *cli, cli_args_t *a)
{
    return run_batches(cli, a, true);
}

/* ---- delete-batch, change-visibility-batch ---- */

/* One entry of SQS's DeleteMessageBatch or ChangeMessageVisibilityBatch: what it borrows
 * lives in obj. */
typedef struct {
    json_t *obj;
    char id[KYU_ENTRY_ID_MAX + 16];
    const char *handle;
    int vt; /* change-visibility-batch: VisibilityTimeout */
} hline_t;

static bool parse_handle_line(const char *text, size_t no, bool want_vt, hline_t *l, char *why,
                              size_t why_len)
{
    json_error_t jerr;
    l->obj = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(l->obj)) {
        snprintf(why, why_len, "not a JSON object: %s", l->obj ? "another value" : jerr.text);
        return false;
    }
    json_t *id = json_object_get(l->obj, "Id"), *rh = json_object_get(l->obj, "ReceiptHandle"),
           *vt = json_object_get(l->obj, "VisibilityTimeout");
    if (!entry_id(id, no, l->id, sizeof l->id, why, why_len))
        return false;
    if (!json_is_string(rh)) {
        snprintf(why, why_len, "ReceiptHandle must be a string");
        return false;
    }
    l->handle = json_string_value(rh);
    /* over 43200: sent, and that entry alone fails (INVALID_ARGUMENT), as in SQS */
    if (want_vt &&
        (!json_is_integer(vt) || json_integer_value(vt) < 0 || json_integer_value(vt) > INT_MAX)) {
        snprintf(why, why_len, "VisibilityTimeout must be a number of seconds from 0 to %d",
                 KYU_VISIBILITY_MAX);
        return false;
    }
    l->vt = want_vt ? (int)json_integer_value(vt) : -1;
    return true;
}

/* Sends lines[0..n) as one batch and prints the answers; CLI_EXIT_OK when all succeeded. */
static int send_handle_group(cli_t *cli, const char *queue, bool cv, hline_t *lines, size_t n)
{
    kyu_handle_entry_t entries[KYU_BATCH_MAX];
    kyu_batch_result_t out[KYU_BATCH_MAX];
    for (size_t i = 0; i < n; i++)
        entries[i] = (kyu_handle_entry_t){.id = lines[i].id,
                                          .receipt_handle = lines[i].handle,
                                          .visibility_timeout = lines[i].vt};
    kyu_err_t err = {0};
    kyu_code_t rc = cv ? kyu_client_change_visibility_batch(cli->client, queue, entries, n,
                                                            KYU_VT_PER_ENTRY, out, &err)
                       : kyu_client_delete_batch(cli->client, queue, entries, n, out, &err);
    json_t *ok = cli->json ? json_array() : NULL, *failed = cli->json ? json_array() : NULL;
    for (size_t i = 0; i < n; i++) {
        const kyu_batch_result_t *r = &out[i];
        if (r->code != KYU_OK) {
            entry_failed(cli, failed, lines[i].id, r);
        } else if (ok) {
            json_array_append_new(ok, json_pack("{s:s}", "Id", lines[i].id));
        } else {
            printf("%s\n", lines[i].id);
        }
    }
    int status = rc == KYU_OK ? CLI_EXIT_OK : CLI_EXIT_ERROR;
    if (cli->json &&
        cli_print_json(json_pack("{s:o, s:o}", "Successful", ok, "Failed", failed)) != CLI_EXIT_OK)
        status = CLI_EXIT_ERROR;
    fflush(stdout);
    return status;
}

static void hlines_free(hline_t *lines, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        json_decref(lines[i].obj);
        memset(&lines[i], 0, sizeof lines[i]);
    }
}

/* Reads the entries of stdin and sends them ten to a request (change-visibility-batch: each
 * entry with its own VisibilityTimeout, evt). */
int cli_cmd_handle_batch(cli_t *cli, cli_args_t *a)
{
    bool cv = strcmp(cli->cmd->name, "change-visibility-batch") == 0;
    hline_t lines[KYU_BATCH_MAX + 1];
    memset(lines, 0, sizeof lines);
    size_t n = 0, no = 0, cap = 0;
    char *text = NULL;
    int rc = CLI_EXIT_OK;
    for (;;) {
        ssize_t len = next_line(&text, &cap, &no);
        if (len > 0) {
            char why[KYU_ERR_MSG_MAX];
            if (!parse_handle_line(text, no, cv, &lines[n], why, sizeof why)) {
                rc = cli_failf(cli, "line %zu: %s", no, why);
                hlines_free(&lines[n], 1);
                if (n > 0) /* the lines before it are sent, none after */
                    send_handle_group(cli, a->args[0], cv, lines, n);
                break;
            }
            n++;
        }
        if (n == KYU_BATCH_MAX || (len < 0 && n > 0)) {
            if (send_handle_group(cli, a->args[0], cv, lines, n) != CLI_EXIT_OK)
                rc = CLI_EXIT_ERROR;
            hlines_free(lines, n);
            n = 0;
        }
        if (len < 0) {
            if (ferror(stdin))
                rc = cli_failf(cli, "cannot read stdin");
            break;
        }
    }
    hlines_free(lines, n);
    free(text);
    return rc;
}
