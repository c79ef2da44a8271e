/* event: the batch as Lambda's SQS event JSON, and the handler's partial-batch answer.
 *
 * kyu_event_json builds {"Records":[...]} with one record per message, in the shape Lambda
 * gives an SQS-triggered function (messageId, receiptHandle, body, attributes,
 * messageAttributes, md5OfBody, eventSource "kyu:queue", eventSourceARN, awsRegion).
 * kyu_event_failures reads {"batchItemFailures":[{"itemIdentifier": messageId}]} with
 * Lambda's rules: an empty answer, null, an object without the key, or an empty list means
 * every message succeeded; invalid JSON, an item without a non-empty string itemIdentifier,
 * or one that names no message of the batch fails the whole batch. */
#ifndef KYU_WORKER_EVENT_H
#define KYU_WORKER_EVENT_H

#include "kyu.h"

#include <jansson.h>

/* The event for n messages of queue (region names the event's awsRegion and ARN). Returns a
 * NUL-terminated string the caller frees (free()), *len its length; NULL when out of memory.
 * A body that is not valid UTF-8 has each bad byte replaced by U+FFFD (JSON carries text). */
char *kyu_event_json(const char *queue, const char *region, const kyu_message_t *msgs, size_t n,
                     size_t *len);

/* The message as Lambda's event filtering sees it: its record (as in the event) with the body
 * parsed when it is a JSON object, so that a pattern reaches its fields ({"body": {"k": [...]}});
 * any other body stays a string ({"body": [{"prefix": "x"}]}). NULL when out of memory; the
 * caller json_decref's it. */
json_t *kyu_event_filter_doc(const char *queue, const char *region, const kyu_message_t *m);

/* Reads a handler's answer (len bytes of text) for the batch msgs[n]: sets results[i] to
 * KYU_ITEM_FAILED for each message it names (others untouched) and returns KYU_OK, or returns
 * INVALID_ARGUMENT with err saying why the answer fails the whole batch (results untouched). */
kyu_code_t kyu_event_failures(const char *text, size_t len, const kyu_message_t *msgs, size_t n,
                              uint8_t *results, kyu_err_t *err);

#endif
