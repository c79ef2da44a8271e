/*
 * raft_codec.h - msgpack encoding of kyu_raft_msg_t for the wire between brokers.
 *
 * A message is one msgpack array of 19 elements, in this order (format version 1):
 *   [1, type, group, from, to, term, log_term, index, commit, reject, reject_hint, force,
 *    entries, snap_offset, snap_total, snap_data, voters, learners, after_persist=false]
 * entries is an array of [term, index, type, data(bin)]; snap_data is bin or nil; voters
 * and learners are arrays of node ids (the InstallSnapshot configuration). Integers are
 * unsigned; booleans are msgpack booleans. A new field means a new version number.
 *
 * The decoder is strict (exact array sizes and types, no trailing bytes, bounded counts)
 * and never trusts a length: malformed input is refused with nothing allocated. Semantic
 * checks (entry indexes, terms) are kyu_raft_step's.
 */
#ifndef KYU_RAFT_CODEC_H
#define KYU_RAFT_CODEC_H

#include "raft.h"

/* Largest encoded message accepted by the decoder. */
#define KYU_RAFT_CODEC_MAX_BYTES ((size_t)64 << 20)
/* Most entries one message may carry. */
#define KYU_RAFT_CODEC_MAX_ENTRIES 65536

/* Encodes m. On success *buf (caller frees with free()) holds *len bytes. Returns false if
 * out of memory. */
bool kyu_raft_msg_encode(const kyu_raft_msg_t *m, uint8_t **buf, size_t *len);
/* Decodes buf into *m. On success *m owns its entries and snapshot data: free them with
 * kyu_raft_msg_decoded_free. Returns false (and leaves *m zeroed) on malformed input or
 * when out of memory. */
bool kyu_raft_msg_decode(const uint8_t *buf, size_t len, kyu_raft_msg_t *m);
void kyu_raft_msg_decoded_free(kyu_raft_msg_t *m);

#endif
