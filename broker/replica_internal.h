/* replica_internal: what replica.c and replica_boot.c share. */
#ifndef KYU_REPLICA_INTERNAL_H
#define KYU_REPLICA_INTERNAL_H

#include "replica.h"

/* The durable Raft state found at startup, ready for kyu_raft_config_t. */
typedef struct {
    kyu_raft_hard_state_t hs;
    bool has_snap;
    kyu_raft_snapshot_t snap; /* data points to snap_desc */
    uint8_t snap_desc[8];     /* the snapshot's data: its index, big endian */
    kyu_raft_entry_t *entries;
    size_t n_entries;
} kyu_replica_boot_t;

/* Reads the log database; initial is the configuration used when no snapshot record says
 * otherwise (the peer list, or this node alone). When the state database is a snapshot the
 * log does not lead to (an install a crash interrupted: the state was replaced, the log not
 * yet), the log is reset to start at the state's applied index. */
kyu_code_t kyu_replica_boot_load(kyu_store_t *store, const kyu_sm_t *sm,
                                 const kyu_raft_conf_t *initial, kyu_replica_boot_t *b,
                                 kyu_err_t *err);
void kyu_replica_boot_free(kyu_replica_boot_t *b);

#endif
