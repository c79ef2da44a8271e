/* peer_codec: the msgpack form of a Raft peer message (kyu_raft_msg_t) on the raft port.
 *
 * One ZeroMQ frame per message: a msgpack array
 *   [1 (format), type, group, from, to, term, log_term, index, commit, reject, reject_hint,
 *    force, entries, snapshot]
 *   entries:  array of [term, index, entry type, data (bin)]
 *   snapshot: nil, or [offset, total, chunk (bin), voters (array of uint), learners (...)]
 * Decoding is total and strict (the peer is untrusted until CurveZMQ comes): any byte string
 * gives a message or an error; wrong lengths, types or ranges are errors.
 */
#ifndef KYU_PEER_CODEC_H
#define KYU_PEER_CODEC_H

#include "protocol.h"
#include "raft.h"

#define KYU_PEER_FORMAT 1
#define KYU_PEER_ENTRIES_MAX 4096 /* entries per message (the core sends at most 64) */

/* Appends msg's encoding to out. */
void kyu_peer_encode(const kyu_raft_msg_t *msg, msgpack_sbuffer *out);

/* A decoded message: msg's entries and chunk point into the decoder's storage and into the
 * input buffer, so both must live while msg is used; kyu_peer_decoded_reset frees. */
typedef struct {
    kyu_raft_msg_t msg;
    msgpack_unpacked unpacked;
    kyu_raft_entry_t *entries;
    bool live;
} kyu_peer_decoded_t;

kyu_code_t kyu_peer_decode(const void *buf, size_t len, kyu_peer_decoded_t *out, kyu_err_t *err);
void kyu_peer_decoded_reset(kyu_peer_decoded_t *d);

#endif
