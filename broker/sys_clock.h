/* sys_clock: the replica's clock seam (kyu_replica_clock_t) over the system: CLOCK_REALTIME
 * for the times commands carry, getrandom for the Raft core's seed. Stateless: its argument
 * is unused (NULL). kyu-sim-kyu plugs in simulated time instead. */
#ifndef KYU_SYS_CLOCK_H
#define KYU_SYS_CLOCK_H

#include "replica.h"

extern const kyu_replica_clock_t kyu_sys_clock;

#endif
