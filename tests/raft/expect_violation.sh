#!/bin/sh
# Runs a kyu-sim built with a planted bug and passes only if it reports a safety violation
# (exit 1): the proof that the simulator catches that bug. Usage: expect_violation.sh CMD...
# With KYU_EXPECT set, the violation must also name that invariant (a grep -E pattern on
# the VIOLATION line), so each planted bug proves its own checker.
out=$("$@" 2>&1)
rc=$?
echo "$out" | grep -E '^(VIOLATION|reproduce with|[0-9]+ seeds)'
if [ "$rc" -ne 1 ] || ! echo "$out" | grep -q '^VIOLATION (safety)'; then
    echo "expected a safety violation (exit 1), got exit $rc" >&2
    exit 1
fi
if [ -n "$KYU_EXPECT" ] && ! echo "$out" | grep '^VIOLATION (safety)' | grep -Eq "$KYU_EXPECT"; then
    echo "expected the violation to be of: $KYU_EXPECT" >&2
    exit 1
fi
exit 0
