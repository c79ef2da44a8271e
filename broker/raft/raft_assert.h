/*
 * raft_assert.h - always-on assertions for the Raft core (kept in release builds: a broken
 * Raft invariant must stop the node, never let it go on and corrupt a replicated log).
 */
#ifndef KYU_RAFT_ASSERT_H
#define KYU_RAFT_ASSERT_H

#include <stdio.h>
#include <stdlib.h>

#define KYU_RAFT_ASSERT(cond)                                                                      \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: raft assertion failed: %s\n", __FILE__, __LINE__, #cond);      \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#endif
