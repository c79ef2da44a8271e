/* cli_send: `kyu send` and `kyu publish`. One message from the argument or the whole of
 * stdin, or (--lines) one message per stdin line, pipelined: up to WINDOW requests in flight,
 * each id printed once the broker acknowledged it and in input order (a ring of WINDOW slots
 * holds the answers that came before an earlier line's). A send carries one line a request;
 * a publish up to ten (a PUBLISH batch, each line published on its own). A send with --group
 * (a FIFO queue's) has one line in flight at a time: a group's order is the order its sends
 * are applied, and pipelined lines sent again after a failover or BUSY would go in the order
 * their refusals came back. */
#include "cli.h"
#include "kyu_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WINDOW 100
#define LINE_TRIES 50 /* sends of one line across failovers */
#define LINE_RETRY_MIN_MS                                                                          \
    20000 /* and for at most 3 timeouts (at least this) after its first send */
#define NO_LEADER_PAUSE_MS 100

/* +N[smhd]: only the suffix is split off here; the number is strtoll's. */
static bool parse_duration(const char *s, int64_t *ms)
{
    static const struct {
        char unit;
        int64_t ms;
    } units[] = {{'s', 1000}, {'m', 60000}, {'h', 3600000}, {'d', 86400000}};
    char *end;
    errno = 0;
    long long n = strtoll(s, &end, 10);
    if (end == s || *s == '-' || *s == '+' || errno || n < 0 || n > KYU_DELIVER_AT_MAX_S ||
        !end[0] || end[1])
        return false;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (*end == units[i].unit) {
            *ms = n * units[i].ms;
            return true;
        }
    return false;
}

/* RFC 3339 with libc: strptime for the date and time, an optional fraction of a second, then
 * strptime's %z for "Z" or the offset; timegm and the offset give the instant. */
static bool parse_rfc3339(const char *s, int64_t *ms)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!p)
        return false;
    int64_t frac_ms = 0;
    if (*p == '.') {
        int digits = 0;
        for (p++; *p >= '0' && *p <= '9'; p++, digits++)
            if (digits < 3)
                frac_ms = frac_ms * 10 + (*p - '0');
        if (!digits)
            return false;
        for (; digits < 3; digits++)
            frac_ms *= 10;
    }
    struct tm zone;
    memset(&zone, 0, sizeof zone);
    const char *rest = strptime(p, "%z", &zone);
    if (!rest || *rest)
        return false;
    struct tm given = tm;
    time_t t = timegm(&tm); /* normalizes tm: a day the month lacks (02-30) moves on */
    if (t == (time_t)-1 || tm.tm_mday != given.tm_mday || tm.tm_mon != given.tm_mon)
        return false;
    *ms = ((int64_t)t - zone.tm_gmtoff) * 1000 + frac_ms;
    return true;
}

bool cli_parse_deliver_at(const char *s, int64_t now_ms, int64_t *out, char *why, size_t why_len)
{
    int64_t at;
    if (s[0] == '+') {
        int64_t d;
        if (!parse_duration(s + 1, &d)) {
            snprintf(why, why_len,
                     "a duration is +N followed by s, m, h or d (e.g. +90m, +2h, +3d)");
            return false;
        }
        at = now_ms + d;
    } else if (!parse_rfc3339(s, &at)) {
        snprintf(why, why_len,
                 "give an RFC 3339 time (e.g. 2026-12-05T10:00:00Z or "
                 "2026-12-05T11:00:00+01:00) or +DURATION (e.g. +2h)");
        return false;
    }
    if (at > now_ms + KYU_DELIVER_AT_MAX_S * 1000ll) {
        snprintf(why, why_len,
                 "at most %d seconds (14 days, the longest retention period) after now",
                 KYU_DELIVER_AT_MAX_S);
        return false;
    }
    *out = at < 0 ? 0 : at;
    return true;
}

/* --delay or --deliver-at, for every message sent. */
static kyu_send_options_t send_options(const cli_args_t *a)
{
    kyu_send_options_t o;
    kyu_send_options_init(&o);
    o.delay_seconds = a->delay;
    o.deliver_at_ms = a->deliver_at_ms;
    o.attrs = a->attrs.n ? &a->attrs : NULL; /* one body per request */
    o.group_ids = a->group ? &a->group : NULL;
    o.dedup_ids = a->dedup_id ? &a->dedup_id : NULL;
    return o;
}

/* The id (and a FIFO queue's SequenceNumber after it); with --json as SQS's SendMessage
 * answers: MessageId, MD5OfMessageBody, for a message with attributes
 * MD5OfMessageAttributes, and SequenceNumber. */
static int print_sent(const cli_t *cli, const char *id, const char *md5_body, const char *md5_attrs,
                      uint64_t sequence)
{
    char sn[24];
    snprintf(sn, sizeof sn, "%" PRIu64, sequence);
    if (!cli->json) {
        if (sequence)
            printf("%s %s\n", id, sn);
        else
            puts(id);
        return CLI_EXIT_OK;
    }
    json_t *obj = json_pack("{s:s}", "MessageId", id);
    if (obj && sequence)
        json_object_set_new(obj, "SequenceNumber", json_string(sn));
    if (obj && md5_body[0])
        json_object_set_new(obj, "MD5OfMessageBody", json_string(md5_body));
    if (obj && md5_attrs[0])
        json_object_set_new(obj, "MD5OfMessageAttributes", json_string(md5_attrs));
    return cli_print_json(obj);
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

static int send_one(cli_t *cli, const cli_args_t *a, const void *body, size_t len)
{
    if (cli->cmd->run == cli_cmd_publish) {
        char id[KYU_MESSAGE_ID_MAX + 1];
        kyu_err_t err = {0};
        if (kyu_client_publish(cli->client, a->args[0], body, len, a->attrs.n ? &a->attrs : NULL,
                               id, &err) != KYU_OK)
            return cli_fail(cli, &err);
        return print_sent(cli, id, "", "", 0);
    }
    const void *bodies[] = {body};
    size_t lens[] = {len};
    kyu_sent_message_t sent[1];
    kyu_err_t err = {0};
    kyu_send_options_t o = send_options(a);
    if (kyu_client_send_messages(cli->client, a->args[0], bodies, lens, 1, &o, sent, &err) !=
        KYU_OK)
        return cli_fail(cli, &err);
    return print_sent(cli, sent[0].message_id, sent[0].md5_body, sent[0].md5_attrs,
                      sent[0].sequence);
}

typedef struct {
    uint64_t req_id;
    size_t line; /* its first line's number */
    bool done;
    kyu_reply_t rep;
    char *body; /* its lines one after the other, kept until answered, to send again after a
                 * failover */
    size_t len;
    size_t n;                   /* lines: 1, or up to KYU_BATCH_MAX for publish */
    size_t ends[KYU_BATCH_MAX]; /* where line i ends in body */
    int tries;
    unsigned epoch; /* the connection it was last sent on */
    int64_t first_ms;
    uint64_t key; /* request key: the same on every resend, so the line is stored once */
} slot_t;

/* Codes after which the line may go to another node: the broker surely did not apply it
 * (NOT_LEADER) or may have (TIMEOUT, READ_ONLY: the request key makes the resend a no-op
 * then). READ_ONLY only with another node to go to (a leader whose disk is full stops
 * replicating and the others elect a new one); alone, the line fails at once. */
static bool retryable(const cli_t *cli, uint32_t status)
{
    return status == KYU_ERR_NOT_LEADER || status == KYU_ERR_TIMEOUT ||
           status == KYU_ERR_CONNECTION || status == KYU_ERR_BUSY ||
           (status == KYU_ERR_READ_ONLY && cli->client->n_endpoints > 1);
}

static kyu_code_t send_slot(cli_t *cli, const cli_args_t *a, slot_t *s, unsigned epoch,
                            kyu_err_t *err)
{
    const void *bodies[] = {s->body};
    size_t lens[] = {s->len};
    s->tries++;
    s->epoch = epoch;
    const kyu_msg_attrs_t *attrs = a->attrs.n ? &a->attrs : NULL;
    if (cli->cmd->run == cli_cmd_publish && s->n == 1)
        return kyu_client_publish_async(cli->client, a->args[0], s->body, s->len, attrs, &s->key,
                                        &s->req_id, err);
    if (cli->cmd->run == cli_cmd_publish) { /* a batch, its entry ids the line numbers */
        kyu_batch_entry_t e[KYU_BATCH_MAX];
        char ids[KYU_BATCH_MAX][24];
        for (size_t i = 0; i < s->n; i++) {
            size_t start = i ? s->ends[i - 1] : 0;
            snprintf(ids[i], sizeof ids[i], "%zu", s->line + i);
            e[i] = (kyu_batch_entry_t){.id = ids[i],
                                       .body = s->body + start,
                                       .len = s->ends[i] - start,
                                       .delay_seconds = -1,
                                       .attrs = attrs};
        }
        return kyu_client_publish_batch_async(cli->client, a->args[0], e, s->n, &s->key, &s->req_id,
                                              err);
    }
    kyu_send_options_t o = send_options(a);
    return kyu_client_send_async_with(cli->client, a->args[0], bodies, lens, 1, &o, &s->key,
                                      &s->req_id, err);
}

/* Prints the answered slots at the head of the ring; returns how many were consumed. */
static size_t flush_done(cli_t *cli, slot_t *ring, size_t head, size_t count, int *rc)
{
    size_t k = 0;
    for (; k < count && ring[(head + k) % WINDOW].done; k++) {
        slot_t *s = &ring[(head + k) % WINDOW];
        if (s->rep.status == KYU_OK) {
            for (size_t i = 0; i < s->n; i++) {
                if (i >= s->rep.n_ids)
                    *rc = cli_failf(cli, "line %zu: the reply has no message id", s->line + i);
                else if (s->rep.n_results > i && s->rep.results[i] != KYU_OK)
                    *rc = cli_failf(cli, "line %zu: %s: %s", s->line + i,
                                    kyu_code_name((int)s->rep.results[i]), s->rep.errors[i]);
                else if (print_sent(cli, s->rep.ids[i], s->rep.md5_body[i], s->rep.md5_attrs[i],
                                    s->rep.sequences[i]) != CLI_EXIT_OK)
                    *rc = CLI_EXIT_ERROR;
            }
        } else if (s->n > 1) {
            *rc = cli_failf(cli, "lines %zu to %zu: %s: %s", s->line, s->line + s->n - 1,
                            kyu_code_name((int)s->rep.status), s->rep.error);
        } else {
            *rc = cli_failf(cli, "line %zu: %s: %s", s->line, kyu_code_name((int)s->rep.status),
                            s->rep.error);
        }
        kyu_reply_reset(&s->rep);
        free(s->body);
        *s = (slot_t){0}; /* free for the lines to come */
    }
    if (k)
        fflush(stdout);
    return k;
}

/* Adds line number no (len bytes) to the slot being filled (the first line sets it up). */
static bool add_line(slot_t *s, const char *line, size_t len, size_t no)
{
    if (s->n == 0) {
        *s = (slot_t){.line = no};
        kyu_reply_init(&s->rep);
    }
    char *body = realloc(s->body, s->len + len + 1);
    if (!body)
        return false;
    memcpy(body + s->len, line, len);
    s->body = body;
    s->len += len;
    s->ends[s->n++] = s->len;
    return true;
}

/* Sends the slot being filled; false (and *rc set, the slot emptied) when it could not go. */
static bool send_open(cli_t *cli, const cli_args_t *a, slot_t *s, unsigned epoch, int *rc)
{
    s->first_ms = kyu_client_now_ms();
    kyu_err_t err = {0};
    if (send_slot(cli, a, s, epoch, &err) == KYU_OK)
        return true;
    *rc = cli_failf(cli, "line %zu: %s: %s", s->line, kyu_code_name(err.code), err.msg);
    free(s->body);
    *s = (slot_t){0};
    return false;
}

/* After the first failure no new line is sent; what is in flight is still reported. */
static int send_lines(cli_t *cli, const cli_args_t *a)
{
    slot_t *ring = calloc(WINDOW, sizeof *ring);
    if (!ring)
        return cli_failf(cli, "out of memory");
    size_t head = 0, count = 0, line_no = 0, cap = 0;
    char *line = NULL;
    bool eof = false;
    int rc = CLI_EXIT_OK;
    unsigned epoch = 0;
    /* Long enough for a line sent just before its leader died: one timeout to notice, then
     * an election and another try, under load. */
    int64_t retry_ms = 3 * (int64_t)cli->timeout_ms > LINE_RETRY_MIN_MS
                           ? 3 * (int64_t)cli->timeout_ms
                           : LINE_RETRY_MIN_MS;
    /* A publish gathers up to ten lines a request (fewer when ten would pass a batch's
     * KYU_PUBLISH_BATCH_BYTES_MAX, bodies and attributes); the slot at head + count is the one
     * being filled. A line read while the window is full waits in line (held). */
    size_t per = cli->cmd->run == cli_cmd_publish ? KYU_BATCH_MAX : 1;
    size_t window = cli->cmd->run != cli_cmd_publish && a->group ? 1 : WINDOW;
    size_t attrs_size = kyu_msg_attrs_size(&a->attrs);
    bool held = false;
    size_t held_len = 0;
    while (count > 0 || (!eof && rc == CLI_EXIT_OK)) {
        while (!eof && rc == CLI_EXIT_OK && count < window) {
            size_t n;
            if (held) {
                n = held_len;
                held = false;
            } else {
                ssize_t got = getline(&line, &cap, stdin);
                if (got < 0) {
                    eof = true;
                    if (ferror(stdin))
                        rc = cli_failf(cli, "cannot read stdin");
                    break;
                }
                line_no++;
                if (got > 0 && line[got - 1] == '\n')
                    got--;
                n = (size_t)got;
            }
            slot_t *s = &ring[(head + count) % WINDOW];
            if (s->n > 0 && s->len + n + (s->n + 1) * attrs_size > KYU_PUBLISH_BATCH_BYTES_MAX) {
                /* this line would make the batch too long: the lines before it go now */
                if (send_open(cli, a, s, epoch, &rc))
                    count++;
                if (rc != CLI_EXIT_OK || count == window) {
                    held = rc == CLI_EXIT_OK;
                    held_len = n;
                    break;
                }
                s = &ring[(head + count) % WINDOW];
            }
            if (!add_line(s, line, n, line_no)) {
                rc = cli_failf(cli, "out of memory");
                break;
            }
            if (s->n == per && send_open(cli, a, s, epoch, &rc))
                count++;
        }
        if (eof && rc == CLI_EXIT_OK && count < window && ring[(head + count) % WINDOW].n > 0 &&
            !ring[(head + count) % WINDOW].req_id &&
            send_open(cli, a, &ring[(head + count) % WINDOW], epoch, &rc))
            count++;
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
            if (s->req_id != rep.id || s->done)
                continue;
            if (retryable(cli, rep.status) && s->tries < LINE_TRIES &&
                kyu_client_now_ms() - s->first_ms < retry_ms) {
                /* The first failure on a connection moves the client (to the leader it
                 * names, else the next node); the others in flight on it just follow. */
                if (rep.status == KYU_ERR_BUSY) {
                    /* The leader is there but saturated (or briefly refusing while it hands
                     * leadership over): wait a little, same connection. */
                    kyu_client_pause_ms(NO_LEADER_PAUSE_MS / 2);
                } else if (s->epoch == epoch) {
                    if ((!rep.leader[0] && rep.status == KYU_ERR_NOT_LEADER) ||
                        rep.status == KYU_ERR_READ_ONLY)
                        kyu_client_pause_ms(NO_LEADER_PAUSE_MS); /* an election is under way */
                    kyu_err_t ferr = {0};
                    const char *to = rep.leader;
                    /* A node that does not answer HELLO (dead, or too busy to answer within a
                     * second) is skipped; tried until one answers, within the line's time. */
                    bool moved = false;
                    while (!moved && kyu_client_now_ms() - s->first_ms < retry_ms) {
                        moved = kyu_client_failover(cli->client, to, &ferr) == KYU_OK;
                        if (!moved)
                            kyu_client_pause_ms(NO_LEADER_PAUSE_MS / 2);
                        to = NULL;
                    }
                    /* Only a move that worked starts a new epoch: after a failed one, the
                     * next line that fails tries again instead of following it. */
                    if (moved)
                        epoch++;
                }
                kyu_err_t serr = {0};
                if (send_slot(cli, a, s, epoch, &serr) == KYU_OK)
                    break;
                rep.status = serr.code;
                snprintf(rep.error, sizeof rep.error, "%s", serr.msg);
            }
            s->rep = rep;
            s->done = true;
            kyu_reply_init(&rep);
            break;
        }
        kyu_reply_reset(&rep);
        size_t k = flush_done(cli, ring, head, count, &rc);
        head = (head + k) % WINDOW;
        count -= k;
    }
    for (size_t k = 0; k <= count && k < WINDOW; k++) { /* and a slot being filled */
        kyu_reply_reset(&ring[(head + k) % WINDOW].rep);
        free(ring[(head + k) % WINDOW].body);
    }
    free(ring);
    free(line);
    return rc;
}

int cli_cmd_send(cli_t *cli, cli_args_t *a)
{
    if (a->lines)
        return send_lines(cli, a);
    if (a->n_args > 1)
        return send_one(cli, a, a->args[1], strlen(a->args[1]));
    char *buf = NULL;
    size_t len = 0;
    int rc = read_stdin(cli, (size_t)kyu_client_max_body(cli->client), &buf, &len);
    if (rc == CLI_EXIT_OK)
        rc = send_one(cli, a, buf, len);
    free(buf);
    return rc;
}

/* `kyu publish`: as send, to a topic (one message per request; send_one and send_slot
 * publish when the command is this one). */
int cli_cmd_publish(cli_t *cli, cli_args_t *a)
{
    return cli_cmd_send(cli, a);
}
