/*
 * sim_trace.c - a ring of the most recent events of a run; printed when an invariant breaks
 * (and printed as it goes with --verbose).
 */
#include "sim.h"

void sim_trace(sim_trace_t *t, uint64_t now, const char *fmt, ...)
{
    char *line = t->lines[t->next];
    int off = snprintf(line, SIM_TRACE_WIDTH, "[%6llu] ", (unsigned long long)now);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + off, SIM_TRACE_WIDTH - (size_t)off, fmt, ap);
    va_end(ap);
    if (t->verbose)
        printf("%s\n", line);
    t->next = (t->next + 1) % SIM_TRACE_LINES;
    if (t->count < SIM_TRACE_LINES)
        t->count++;
}

void sim_trace_dump(const sim_trace_t *t, FILE *f)
{
    size_t start = (t->next + SIM_TRACE_LINES - t->count) % SIM_TRACE_LINES;
    fprintf(f, "trace (last %zu events):\n", t->count);
    for (size_t i = 0; i < t->count; i++)
        fprintf(f, "  %s\n", t->lines[(start + i) % SIM_TRACE_LINES]);
}
