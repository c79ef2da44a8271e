/* event: Lambda's SQS event JSON and the partial-batch answer (event.h), with jansson. */
#include "event.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when the bytes there are not one. */
static size_t utf8_seq(const unsigned char *s, size_t left)
{
    unsigned char c = s[0];
    size_t n;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (left < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return n;
}

/* A JSON string of len bytes: as they are when valid UTF-8, else with U+FFFD for bad bytes. */
static json_t *text_value(const void *p, size_t len)
{
    json_t *s = json_stringn(p ? p : "", len);
    if (s)
        return s;
    unsigned char *out = malloc(len * 3 + 1);
    if (!out)
        return NULL;
    const unsigned char *in = p;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_seq(in + i, len - i);
        if (n == 0 || (n == 1 && in[i] == 0)) {
            if (n == 0) {
                memcpy(out + o, "\xef\xbf\xbd", 3);
                o += 3;
            } else {
                out[o++] = 0; /* NUL is valid JSON (\u0000) */
            }
            i++;
            continue;
        }
        memcpy(out + o, in + i, n);
        o += n;
        i += n;
    }
    s = json_stringn((const char *)out, o);
    free(out);
    return s;
}

static json_t *base64_value(const void *p, size_t len)
{
    char *out = malloc(4 * ((len + 2) / 3) + 1);
    if (!out)
        return NULL;
    EVP_EncodeBlock((unsigned char *)out, p, (int)len);
    json_t *s = json_string(out);
    free(out);
    return s;
}

static int set_u64(json_t *o, const char *key, uint64_t v)
{
    char buf[24];
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)v);
    return json_object_set_new(o, key, json_string(buf));
}

static json_t *message_attributes(const kyu_msg_attrs_t *a)
{
    json_t *o = json_object();
    for (size_t i = 0; o && i < a->n; i++) {
        const kyu_msg_attr_t *at = &a->a[i];
        json_t *v = json_object();
        char name[KYU_ATTR_NAME_MAX + 1];
        snprintf(name, sizeof name, "%.*s", (int)at->name_len, at->name);
        if (!v)
            goto fail;
        if (at->binary) {
            json_object_set_new(v, "binaryValue", base64_value(at->value, at->value_len));
        } else {
            json_object_set_new(v, "stringValue", text_value(at->value, at->value_len));
        }
        json_object_set_new(v, "stringListValues", json_array());
        json_object_set_new(v, "binaryListValues", json_array());
        json_object_set_new(v, "dataType", json_stringn(at->type, at->type_len));
        if (json_object_set_new(o, name, v) != 0)
            goto fail;
    }
    return o;
fail:
    json_decref(o);
    return NULL;
}

static json_t *record(const char *queue, const char *region, const kyu_message_t *m)
{
    json_t *r = json_object();
    json_t *attrs = json_object();
    json_t *mattrs = message_attributes(&m->attrs);
    json_t *body = text_value(m->body, m->body_len);
    if (!r || !attrs || !mattrs || !body)
        goto fail;
    char arn[KYU_NAME_MAX + 96];
    snprintf(arn, sizeof arn, "arn:kyu:sqs:%s:000000000000:%s", region, queue);
    set_u64(attrs, "ApproximateReceiveCount", m->receive_count);
    set_u64(attrs, "SentTimestamp", m->sent_ms);
    json_object_set_new(attrs, "SenderId", json_string("kyu"));
    set_u64(attrs, "ApproximateFirstReceiveTimestamp", m->first_receive_ms);
    /* A FIFO queue's (Lambda gives them for FIFO queues): group, deduplication id, sequence */
    if (m->group_id[0])
        json_object_set_new(attrs, "MessageGroupId", json_string(m->group_id));
    if (m->dedup_id[0])
        json_object_set_new(attrs, "MessageDeduplicationId", json_string(m->dedup_id));
    if (m->sequence)
        set_u64(attrs, "SequenceNumber", m->sequence);
    if (m->dlq_source[0]) {
        char src[KYU_NAME_MAX + 96];
        snprintf(src, sizeof src, "arn:kyu:sqs:%s:000000000000:%s", region, m->dlq_source);
        json_object_set_new(attrs, "DeadLetterQueueSourceArn", json_string(src));
    }
    if (json_object_set_new(r, "messageId", json_string(m->message_id)) != 0 ||
        json_object_set_new(r, "receiptHandle", json_string(m->receipt_handle)) != 0 ||
        json_object_set_new(r, "body", body) != 0 ||
        json_object_set_new(r, "attributes", attrs) != 0 ||
        json_object_set_new(r, "messageAttributes", mattrs) != 0 ||
        json_object_set_new(r, "md5OfBody", json_string(m->md5_body)) != 0)
        goto fail_owned;
    if (m->md5_attrs[0])
        json_object_set_new(r, "md5OfMessageAttributes", json_string(m->md5_attrs));
    json_object_set_new(r, "eventSource", json_string("kyu:queue"));
    json_object_set_new(r, "eventSourceARN", json_string(arn));
    json_object_set_new(r, "awsRegion", json_string(region));
    return r;
fail:
    json_decref(body);
    json_decref(mattrs);
    json_decref(attrs);
fail_owned:
    json_decref(r);
    return NULL;
}

json_t *kyu_event_filter_doc(const char *queue, const char *region, const kyu_message_t *m)
{
    json_t *r = record(queue, region, m);
    if (!r)
        return NULL;
    json_t *body = json_loadb(m->body ? (const char *)m->body : "", m->body_len, 0, NULL);
    if (json_is_object(body))
        json_object_set_new(r, "body", body); /* replaces the string */
    else
        json_decref(body);
    return r;
}

char *kyu_event_json(const char *queue, const char *region, const kyu_message_t *msgs, size_t n,
                     size_t *len)
{
    json_t *records = json_array();
    json_t *ev = json_object();
    if (!records || !ev) {
        json_decref(records);
        json_decref(ev);
        return NULL;
    }
    json_object_set_new(ev, "Records", records);
    for (size_t i = 0; i < n; i++) {
        json_t *r = record(queue, region, &msgs[i]);
        if (!r || json_array_append_new(records, r) != 0) {
            json_decref(ev);
            return NULL;
        }
    }
    char *out = json_dumps(ev, JSON_COMPACT);
    json_decref(ev);
    if (out && len)
        *len = strlen(out);
    return out;
}

static bool blank(const char *text, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (text[i] != ' ' && text[i] != '\n' && text[i] != '\r' && text[i] != '\t')
            return false;
    return true;
}

kyu_code_t kyu_event_failures(const char *text, size_t len, const kyu_message_t *msgs, size_t n,
                              uint8_t *results, kyu_err_t *err)
{
    if (!text || blank(text, len))
        return KYU_OK; /* no answer: every message succeeded */
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_DECODE_ANY, &je);
    if (!root)
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                           "the handler's answer is not JSON (line %d: %s)", je.line, je.text);
    kyu_code_t rc = KYU_OK;
    json_t *list = json_is_object(root) ? json_object_get(root, "batchItemFailures") : NULL;
    if (!list || json_is_null(list)) {
        json_decref(root);
        return KYU_OK;
    }
    if (!json_is_array(list)) {
        json_decref(root);
        return kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT, "batchItemFailures is not a list");
    }
    uint8_t *named = calloc(n ? n : 1, 1);
    if (!named) {
        json_decref(root);
        return kyu_err_set(err, KYU_ERR_INTERNAL, "out of memory");
    }
    size_t i;
    json_t *item;
    json_array_foreach(list, i, item)
    {
        json_t *id = json_is_object(item) ? json_object_get(item, "itemIdentifier") : NULL;
        const char *s = json_is_string(id) ? json_string_value(id) : NULL;
        if (!s || !*s) {
            rc = kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                             "batchItemFailures[%zu] has no itemIdentifier (a non-empty "
                             "messageId string)",
                             i);
            break;
        }
        size_t k = 0;
        while (k < n && strcmp(msgs[k].message_id, s) != 0)
            k++;
        if (k == n) {
            rc = kyu_err_set(err, KYU_ERR_INVALID_ARGUMENT,
                             "batchItemFailures[%zu] names '%.64s', not a message of the batch", i,
                             s);
            break;
        }
        named[k] = 1;
    }
    if (rc == KYU_OK)
        for (size_t k = 0; k < n; k++)
            if (named[k])
                results[k] = KYU_ITEM_FAILED;
    free(named);
    json_decref(root);
    return rc;
}
