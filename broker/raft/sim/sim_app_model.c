/*
 * sim_app_model.c - kyu-sim's application: none. Each node's state machine is the model in
 * sim_node.c, a hash chain over the entries it applies.
 */
#include "sim.h"

const sim_app_t *sim_app(void)
{
    return NULL;
}
