/* fake_broker: an in-process stand-in for kyu-broker, for libkyu's unit tests.
 *
 * A thread with a ROUTER socket on a random 127.0.0.1 port decodes each request with the
 * real codec (kyu_request_decode) and hands it to the test's handler, which answers with
 * fake_reply (a kyu_reply_t through kyu_reply_encode), fake_reply_raw (any bytes: broken
 * brokers) or not at all (timeouts). Handlers run on the fake's thread. */
#ifndef FAKE_BROKER_H
#define FAKE_BROKER_H

#include "protocol.h"

#include <stddef.h>

typedef struct fake_broker fake_broker_t;

typedef void(fake_handler_fn)(fake_broker_t *fb, void *arg, const kyu_request_t *req,
                              const void *const *bodies, const size_t *lens, size_t n_bodies);

/* Starts the fake; handler NULL answers as fake_default does. */
fake_broker_t *fake_broker_new(fake_handler_fn *handler, void *arg);
/* Stops the thread and frees the fake. */
void fake_broker_destroy(fake_broker_t **self_p);
const char *fake_broker_endpoint(const fake_broker_t *self);
/* Requests received so far (read after the test's calls returned). */
size_t fake_broker_requests(const fake_broker_t *self);
/* The requests it got other than HELLO (a client's probe of every endpoint sends one to each,
 * and a closed probe socket's HELLO may arrive late). */
size_t fake_broker_calls(const fake_broker_t *self);

/* Answers the request being handled (or an earlier one: replies go to the last client). */
void fake_reply(fake_broker_t *fb, const kyu_reply_t *rep, const void *const *bodies,
                const size_t *lens, size_t n);
void fake_reply_raw(fake_broker_t *fb, const void *header, size_t len, size_t n_extra_frames);
/* Answers an error reply to req. */
void fake_reply_error(fake_broker_t *fb, uint64_t id, kyu_code_t code, const char *text);
/* HELLO: v=1, maxbody 1 MiB; every other op: OK without fields. */
void fake_default(fake_broker_t *fb, const kyu_request_t *req);

#endif
