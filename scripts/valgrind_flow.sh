#!/usr/bin/env bash
# The broker under valgrind memcheck through a small flow: send (with attributes), a batch with
# a failed entry, receive, dead-letter moves, peek, a redrive, delete, untag, kyu-worker sessions
# (drained, and killed with leases held). Exits non-zero when
# memcheck finds an error or a leak (--error-exitcode=1 --leak-check=full).
# Usage: scripts/valgrind_flow.sh [BUILD_DIR (default build)]
set -euo pipefail
cd "$(dirname "$0")/.."
b=${1:-build}
d=$(mktemp -d /tmp/kyu-vg-XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
valgrind --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite \
    --log-file="$d/vg.log" "$b/broker/kyu-broker" --data "$d/db" \
    --listen "tcp://127.0.0.1:$port" >"$d/broker.log" 2>&1 &
vp=$!
trap 'kill -9 $vp 2>/dev/null || true' EXIT
kyu() { "$b/client/kyu" --broker "tcp://127.0.0.1:$port" --timeout 60 "$@"; }
for _ in $(seq 1 120); do kyu list-queues >/dev/null 2>&1 && break; sleep 1; done
kyu create-queue dlq
kyu create-queue src --dead-letter-queue dlq --max-receive-count 1
kyu send src hello --attr a=String:x --attr b=Number:1 >/dev/null
kyu send src plain >/dev/null
printf '%s\n' '{"Id":"a","MessageBody":"one"}' '{"Id":"b","MessageBody":""}' |
    kyu --json send-batch src >/dev/null 2>&1 || true # entry b fails alone
kyu --json receive src --max 10 --visibility-timeout 0 >/dev/null
kyu --json receive src --max 10 --visibility-timeout 0 >/dev/null # moves them to dlq
kyu --json peek dlq >/dev/null
kyu redrive dlq >/dev/null
kyu --json receive src --max 10 >"$d/recv.json"
for h in $(python3 -c 'import json,sys
for l in open(sys.argv[1]): print(json.loads(l)["ReceiptHandle"])' "$d/recv.json"); do
    kyu delete src "$h" >/dev/null
done
# Tags removed; a worker session: pushes, deletes, a SIGTERM drain (WORKER_CLOSE), and one
# killed with leases held (released when it is declared dead).
kyu untag-queue src nokey >/dev/null
kyu create-queue work --tag team=a
kyu untag-queue work team >/dev/null
seq 1 30 | kyu send work --lines >/dev/null
"$b/worker/kyu-worker" --broker "tcp://127.0.0.1:$port" --queue work --exec cat \
    --heartbeat 0.2 --liveness 3 >"$d/worker1.log" 2>&1 &
wp=$!
for _ in $(seq 1 120); do
    [ "$(kyu --json get-queue-attributes work | python3 -c 'import json,sys
a=json.load(sys.stdin); print(int(a["ApproximateNumberOfMessages"])+int(a["ApproximateNumberOfMessagesNotVisible"]))')" = 0 ] && break
    sleep 0.5
done
kyu workers >/dev/null
kill -TERM $wp && wait $wp
seq 1 30 | kyu send work --lines >/dev/null
"$b/worker/kyu-worker" --broker "tcp://127.0.0.1:$port" --queue work --exec 'sleep 30' \
    --heartbeat 0.2 --liveness 3 >"$d/worker2.log" 2>&1 &
wp=$!
sleep 5
kill -9 $wp; wait $wp || true
sleep 3 # declared dead, its leases released
kill -TERM $vp
rc=0
wait $vp || rc=$?
trap - EXIT
grep -E "ERROR SUMMARY|definitely lost" "$d/vg.log" || true
echo "valgrind exit $rc (log: $d/vg.log)"
exit $rc
