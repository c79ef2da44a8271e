#!/usr/bin/env bash
# Runs the workloads of docs/BENCHMARKS.md against a fresh single-node broker and prints each
# result: W1, LAT, W2, send-only, and DEPTH (a backlog queued before W2, with the broker's RSS
# and its restart time). Figures go to docs/BENCHMARKS.md by hand, with this command.
# Usage: scripts/bench.sh [COUNT (default 100000)] [DEPTHS (default "1000 100000")]
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-100000}
depths=${2:-"1000 100000"}
scripts/build.sh build >/dev/null
dir=$(mktemp -d /tmp/kyu-bench-XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export KYU_BROKER=tcp://127.0.0.1:$port
broker=""
start() {
    build/broker/kyu-broker --data "$dir/db" --listen "$KYU_BROKER" >>"$dir/broker.log" 2>&1 &
    broker=$!
    for _ in $(seq 1 600); do
        build/client/kyu list-queues >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    echo "bench: broker did not start" >&2
    exit 1
}
stop() { kill -TERM "$broker"; wait "$broker" || true; }
trap 'kill -9 $broker 2>/dev/null; rm -rf "$dir"' EXIT
bench=build/client/kyu-bench
echo "# $(date -u +%F) $(nproc) cores, $(free -g | awk '/Mem/{print $2}') GiB, $(uname -r)"
start
echo "## W1";   $bench --workload w1 --count "$count" | tail -n +2
echo "## LAT";  $bench --workload lat | tail -n +2
echo "## W2";   $bench --workload w2 --count "$count" | tail -n +2
echo "## send"; $bench --workload send --count "$count" | tail -n +2
for d in $depths; do
    echo "## DEPTH $d (W2, $count messages, after $d queued)"
    $bench --workload w2 --count "$count" --preload "$d" --queue "depth$d" --keep-queue | tail -n +2
    echo "broker RSS: $(awk '/VmRSS/{print $2, $3}' /proc/$broker/status)"
done
echo "## restart with a backlog"
$bench --workload send --count "${depths##* }" --queue backlog --keep-queue | grep produce
stop
t0=$(date +%s.%N)
start
t1=$(date +%s.%N)
echo "restart to serving: $(python3 -c "print(round($t1 - $t0, 2))") s with $(build/client/kyu --json get-queue-attributes backlog)"
stop
