/* cli_send: `kyu send`. One message from the argument or the whole of stdin, or (--lines)
 * one message per stdin line, pipelined: up to WINDOW requests in flight, each id printed
 * once the broker acknowledged it and in input order (a ring of WINDOW slots holds the
 * answers that came before an earlier line's). */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WINDOW 100

static int print_id(const cli_t *cli, const char *id)
{
    if (cli->json)
        return cli_print_json(json_pack("{s:s}", "MessageId", id));
    puts(id);
    return CLI_EXIT_OK;
}

/* Reads all of stdin, refusing more than max bytes (the broker's limit). */
static int read_stdin(cli_t *cli, size_t max, char **buf_p, size_t *len_p)
{
    size_t cap = 64 * 1024, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf)
            return cli_failf(cli, "out of memory reading stdin");
        len += fread(buf + len, 1, cap - len, stdin);
        if (ferror(stdin)) {
            free(buf);
            return cli_failf(cli, "cannot read stdin");
        }
        if (len > max) {
            free(buf);
            return cli_failf(cli,
                             "TOO_LARGE: the message on stdin is over the broker's "
                             "maximum of %zu bytes",
                             max);
        }
        if (feof(stdin))
            break;
        if (len == cap) {
            cap *= 2;
            char *more = realloc(buf, cap);
            if (!more)
                free(buf);
            buf = more;
        }
    }
    *buf_p = buf;
    *len_p = len;
    return CLI_EXIT_OK;
}

static int send_one(cli_t *cli, const char *queue, const void *body, size_t len)
{
    const void *bodies[] = {body};
    size_t lens[] = {len};
    char ids[1][KYU_MESSAGE_ID_MAX + 1];
    kyu_err_t err = {0};
    if (kyu_client_send(cli->client, queue, bodies, lens, 1, ids, &err) != KYU_OK)
        return cli_fail(cli, &err);
    return print_id(cli, ids[0]);
}

typedef struct {
    uint64_t req_id;
    size_t line;
    bool done;
    kyu_reply_t rep;
} slot_t;

/* Prints the answered slots at the head of the ring; returns how many were consumed. */
static size_t flush_done(cli_t *cli, slot_t *ring, size_t head, size_t count, int *rc)
{
    size_t k = 0;
    for (; k < count && ring[(head + k) % WINDOW].done; k++) {
        slot_t *s = &ring[(head + k) % WINDOW];
        if (s->rep.status == KYU_OK) {
            if (print_id(cli, s->rep.ids[0]) != CLI_EXIT_OK)
                *rc = CLI_EXIT_ERROR;
        } else {
            *rc = cli_failf(cli, "line %zu: %s: %s", s->line, kyu_code_name((int)s->rep.status),
                            s->rep.error);
        }
        kyu_reply_reset(&s->rep);
    }
    if (k)
        fflush(stdout);
    return k;
}

/* After the first failure no new line is sent; what is in flight is still reported. */
static int send_lines(cli_t *cli, const char *queue)
{
    slot_t *ring = calloc(WINDOW, sizeof *ring);
    if (!ring)
        return cli_failf(cli, "out of memory");
    size_t head = 0, count = 0, line_no = 0, cap = 0;
    char *line = NULL;
    bool eof = false;
    int rc = CLI_EXIT_OK;
    while (count > 0 || (!eof && rc == CLI_EXIT_OK)) {
        while (!eof && rc == CLI_EXIT_OK && count < WINDOW) {
            ssize_t n = getline(&line, &cap, stdin);
            if (n < 0) {
                eof = true;
                if (ferror(stdin))
                    rc = cli_failf(cli, "cannot read stdin");
                break;
            }
            line_no++;
            if (n > 0 && line[n - 1] == '\n')
                n--;
            const void *bodies[] = {line};
            size_t lens[] = {(size_t)n};
            uint64_t id = 0;
            kyu_err_t err = {0};
            if (kyu_client_send_async(cli->client, queue, bodies, lens, 1, &id, &err) != KYU_OK) {
                rc = cli_failf(cli, "line %zu: %s: %s", line_no, kyu_code_name(err.code), err.msg);
                break;
            }
            slot_t *s = &ring[(head + count++) % WINDOW];
            *s = (slot_t){.req_id = id, .line = line_no};
            kyu_reply_init(&s->rep);
        }
        if (count == 0)
            break;
        kyu_reply_t rep;
        kyu_reply_init(&rep);
        kyu_err_t err = {0};
        if (kyu_client_poll_reply(cli->client, -1, &rep, NULL, &err) != KYU_OK) {
            rc = cli_fail(cli, &err); /* only a socket failure: replies cannot come */
            break;
        }
        for (size_t k = 0; k < count; k++) {
            slot_t *s = &ring[(head + k) % WINDOW];
            if (s->req_id == rep.id && !s->done) {
                s->rep = rep;
                s->done = true;
                kyu_reply_init(&rep);
                break;
            }
        }
        kyu_reply_reset(&rep);
        size_t k = flush_done(cli, ring, head, count, &rc);
        head = (head + k) % WINDOW;
        count -= k;
    }
    for (size_t k = 0; k < count; k++)
        kyu_reply_reset(&ring[(head + k) % WINDOW].rep);
    free(ring);
    free(line);
    return rc;
}

int cli_cmd_send(cli_t *cli, cli_args_t *a)
{
    const char *queue = a->args[0];
    if (a->lines)
        return send_lines(cli, queue);
    if (a->n_args > 1)
        return send_one(cli, queue, a->args[1], strlen(a->args[1]));
    char *buf = NULL;
    size_t len = 0;
    int rc = read_stdin(cli, (size_t)kyu_client_max_body(cli->client), &buf, &len);
    if (rc == CLI_EXIT_OK)
        rc = send_one(cli, queue, buf, len);
    free(buf);
    return rc;
}
