/* snap_codec: the messages of a snapshot transfer on the raft port.
 *
 * A follower that the leader's log no longer reaches installs a snapshot: it fetches another
 * member's state database as a RocksDB checkpoint, file by file, chunk by chunk (broker/
 * snapshot.c). One ZeroMQ frame per message, a msgpack array of 9:
 *   [2 (format), kind, from, to, session, min_index, file, offset, payload]
 *   FETCH     payload nil; file 0 asks for the manifest (a new checkpoint, of a state at
 *             least at min_index), file N > 0 for bytes of the manifest's Nth file at offset
 *   MANIFEST  payload [[name, size], ...]: the checkpoint's files, under session
 *   CHUNK     payload bin: bytes of file at offset (empty only for an empty file)
 *   REFUSE    payload str: why (state behind min_index, session gone, bad request)
 * The leading 2 tells these frames from Raft messages (peer_codec.h, format 1). Decoding is
 * total and strict: file names are plain names (no '/', not "." or ".."), sizes bounded.
 */
#ifndef KYU_SNAP_CODEC_H
#define KYU_SNAP_CODEC_H

#include "protocol.h"

#define KYU_SNAP_FORMAT 2
#define KYU_SNAP_CHUNK_BYTES (1u << 20)
#define KYU_SNAP_FILES_MAX 10000
#define KYU_SNAP_NAME_MAX 255

typedef enum {
    KYU_SNAP_FETCH = 1,
    KYU_SNAP_MANIFEST = 2,
    KYU_SNAP_CHUNK = 3,
    KYU_SNAP_REFUSE = 4,
} kyu_snap_kind_t;

typedef struct {
    char name[KYU_SNAP_NAME_MAX + 1];
    uint64_t size;
} kyu_snap_file_t;

typedef struct {
    kyu_snap_kind_t kind;
    uint64_t from, to, session, min_index;
    uint32_t file;
    uint64_t offset;
    const uint8_t *data; /* CHUNK: points into the decoded buffer */
    size_t len;
    kyu_snap_file_t *files; /* MANIFEST: heap (decode) or caller's (encode) */
    size_t n_files;
    char reason[KYU_ERR_MSG_MAX]; /* REFUSE */
    msgpack_unpacked unpacked;    /* decode only */
    bool live;
} kyu_snap_msg_t;

/* True when buf is a snapshot-transfer frame rather than a Raft message. */
bool kyu_snap_is_frame(const void *buf, size_t len);
void kyu_snap_encode(const kyu_snap_msg_t *m, msgpack_sbuffer *out);
/* Decodes buf into out (which the caller releases with kyu_snap_reset, also on error). */
kyu_code_t kyu_snap_decode(const void *buf, size_t len, kyu_snap_msg_t *out, kyu_err_t *err);
void kyu_snap_reset(kyu_snap_msg_t *m);
/* True for a file name a checkpoint may hold (and a follower may create). */
bool kyu_snap_name_ok(const char *name);

#endif
