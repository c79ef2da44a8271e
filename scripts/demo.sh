#!/usr/bin/env bash
# Builds kyu, starts a single-node broker on its defaults (data in ./kyu-data, clients on
# tcp://127.0.0.1:7700) and shows a produce/consume round trip through the `kyu` CLI.
# On a terminal the broker then keeps running until Ctrl-C; otherwise it is stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh build
kyu=build/client/kyu
build/broker/kyu-broker &
broker=$!
trap 'kill -TERM $broker 2>/dev/null; wait $broker 2>/dev/null || true' EXIT
# Wait (bounded) until the broker answers.
for _ in $(seq 1 100); do
    $kyu list-queues >/dev/null 2>&1 && break
    kill -0 $broker 2>/dev/null || { echo "demo: the broker did not start" >&2; exit 1; }
    sleep 0.1
done
set -x
$kyu create-queue demo-orders --visibility-timeout 30
printf 'order-1\norder-2\norder-3\n' | $kyu send demo-orders --lines
$kyu --json get-queue-attributes demo-orders
$kyu --json receive demo-orders --max 10 | tee /tmp/kyu-demo-received.json
# Delete what was received, by receipt handle.
handles=$(python3 -c 'import json,sys; print(" ".join(json.loads(l)["ReceiptHandle"] for l in open(sys.argv[1])))' /tmp/kyu-demo-received.json)
[ -z "$handles" ] || $kyu delete demo-orders $handles
$kyu --json get-queue-attributes demo-orders
$kyu list-queues
set +x
rm -f /tmp/kyu-demo-received.json
if [ -t 0 ]; then
    echo "kyu-broker is running on tcp://127.0.0.1:7700 (data in ./kyu-data); Ctrl-C stops it."
    wait $broker
fi
