/* example_roundtrip: a program built against the installed libkyu only (#include <kyu.h>,
 * `pkg-config --cflags --libs libkyu`), run by test_install.py as
 *
 *     example_roundtrip ENDPOINT QUEUE
 *
 * It creates QUEUE (or finds it with the same attributes), sends one message of its own,
 * then receives and deletes every message of the queue (bounded: at most 100 receives), and
 * checks its own message came back intact and the queue is empty at the end. Prints one
 * line "roundtrip ok: received N" and exits 0, or names what failed and exits 1. */
#include <kyu.h>

#include <stdio.h>
#include <string.h>

static int fail(const char *what, const kyu_err_t *err)
{
    fprintf(stderr, "example_roundtrip: %s: %s: %s\n", what, kyu_code_name(err->code), err->msg);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: example_roundtrip ENDPOINT QUEUE\n");
        return 2;
    }
    const char *queue = argv[2];
    kyu_err_t err;
    kyu_client_t *c = kyu_client_new(argv[1], &err);
    if (c == NULL)
        return fail("connect", &err);
    int rc = 1;
    kyu_message_t *msgs = NULL;
    if (kyu_client_create_queue(c, queue, -1, &err) != KYU_OK) {
        rc = fail("create-queue", &err);
        goto out;
    }
    static const char mine[] = "hello from a program built against the installed libkyu";
    const void *bodies[] = {mine};
    size_t lens[] = {sizeof mine - 1};
    char ids[1][KYU_MESSAGE_ID_MAX + 1];
    if (kyu_client_send(c, queue, bodies, lens, 1, ids, &err) != KYU_OK) {
        rc = fail("send", &err);
        goto out;
    }

    size_t received = 0;
    int found_mine = 0;
    for (int round = 0; round < 100; round++) {
        size_t n = 0;
        if (kyu_client_receive(c, queue, KYU_BATCH_MAX, 60, &msgs, &n, &err) != KYU_OK) {
            rc = fail("receive", &err);
            goto out;
        }
        if (n == 0)
            break;
        const char *handles[KYU_BATCH_MAX];
        kyu_code_t results[KYU_BATCH_MAX];
        for (size_t i = 0; i < n; i++) {
            handles[i] = msgs[i].receipt_handle;
            if (strcmp(msgs[i].message_id, ids[0]) == 0) {
                if (msgs[i].body_len != lens[0] || memcmp(msgs[i].body, mine, lens[0]) != 0) {
                    fprintf(stderr, "example_roundtrip: message %s came back changed\n", ids[0]);
                    goto out;
                }
                char md5[KYU_MD5_HEX_LEN + 1];
                kyu_md5_body_hex(mine, lens[0], md5);
                if (strcmp(md5, msgs[i].md5_body) != 0) {
                    fprintf(stderr, "example_roundtrip: MD5OfMessageBody %s, expected %s\n",
                            msgs[i].md5_body, md5);
                    goto out;
                }
                found_mine = 1;
            }
        }
        if (kyu_client_delete(c, queue, handles, n, results, &err) != KYU_OK) {
            rc = fail("delete", &err);
            goto out;
        }
        received += n;
        kyu_messages_destroy(&msgs);
    }
    if (!found_mine) {
        fprintf(stderr, "example_roundtrip: message %s was not received\n", ids[0]);
        goto out;
    }
    kyu_queue_attrs_t attrs;
    if (kyu_client_get_queue_attributes(c, queue, &attrs, &err) != KYU_OK) {
        rc = fail("get-queue-attributes", &err);
        goto out;
    }
    if (attrs.visible != 0 || attrs.not_visible != 0 || attrs.delayed != 0) {
        fprintf(stderr, "example_roundtrip: queue not empty: %lld visible, %lld in flight\n",
                (long long)attrs.visible, (long long)attrs.not_visible);
        goto out;
    }
    printf("roundtrip ok: received %zu\n", received);
    rc = 0;
out:
    kyu_messages_destroy(&msgs);
    kyu_client_destroy(&c);
    return rc;
}
