#!/bin/sh
# Runs a kyu-sim built with a planted bug and passes only if it reports a safety violation
# (exit 1): the proof that the simulator catches that bug. Usage: expect_violation.sh CMD...
out=$("$@" 2>&1)
rc=$?
echo "$out" | grep -E '^(VIOLATION|reproduce with|[0-9]+ seeds)'
if [ "$rc" -ne 1 ] || ! echo "$out" | grep -q '^VIOLATION (safety)'; then
    echo "expected a safety violation (exit 1), got exit $rc" >&2
    exit 1
fi
exit 0
