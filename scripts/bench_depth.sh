#!/usr/bin/env bash
# DEPTH: a backlog of N 1 KiB messages on one queue, W2 on another queue beside it (three runs
# at depth 0 and three beside the backlog once RocksDB's background work after it has
# settled, with their median; one run right after the backlog's last send), the
# broker's RSS, and its restart time with the backlog (after SIGTERM and after kill -9).
# Figures go to docs/BENCHMARKS.md by hand, with this command.
# Usage: scripts/bench_depth.sh [N (default 1000000)] [BUILD_DIR (default build)]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000000}
build=${2:-build}
dir=$(mktemp -d /tmp/kyu-depth-XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ep=tcp://127.0.0.1:$port
broker=""
trap '[ -n "$broker" ] && kill -9 $broker 2>/dev/null; rm -rf "$dir"' EXIT
rss() { awk '/VmRSS/{printf "%.0f MiB", $2 / 1024}' "/proc/$broker/status"; }
ready_s=""
start() { # starts the broker; ready_s: the seconds from start to serving
    local t0 t1 before
    before=$(grep -c ', serving ' "$dir/broker.log" 2>/dev/null || true)
    t0=$(date +%s.%N)
    "$build/broker/kyu-broker" --data "$dir/db" --listen "$ep" >>"$dir/broker.log" 2>&1 &
    broker=$!
    # serving: the broker prints its "serving" line as its event loop starts (polled every
    # 10 ms; a request to a broker not yet listening would wait out its whole 1 s timeout)
    for _ in $(seq 1 6000); do
        [ "$(grep -c ', serving ' "$dir/broker.log" 2>/dev/null || true)" -gt "${before:-0}" ] && break
        sleep 0.01
    done
    t1=$(date +%s.%N)
    ready_s=$(python3 -c "print(round($t1 - $t0, 2))")
    "$build/client/kyu" --broker "$ep" list-queues >/dev/null # answers: it serves
}
w2() { "$build/client/kyu-bench" --broker "$ep" --workload w2 --count 50000 | awk '/end to end/{print $4}'; }
# RocksDB's flush and compaction threads' CPU seconds so far (ticks of /proc/PID/task/*/stat)
bg_cpu() {
    local t sum=0 comm
    for t in /proc/"$broker"/task/*; do
        comm=$(cat "$t/comm" 2>/dev/null) || continue
        case $comm in rocksdb*) sum=$((sum + $(awk '{print $14 + $15}' "$t/stat"))) ;; esac
    done
    python3 -c "print(round($sum / $(getconf CLK_TCK), 2))"
}
# three W2 runs: each rate, then the median; bg: the background CPU over the three
w2x3() {
    local a b c b0 b1
    b0=$(bg_cpu)
    a=$(w2) b=$(w2) c=$(w2)
    b1=$(bg_cpu)
    echo "$a $b $c, median $(printf '%s\n' "$a" "$b" "$c" | sort -n | sed -n 2p) msg/s" \
        "(RocksDB background threads $(python3 -c "print(round($b1 - $b0, 2))") s of CPU)"
}
echo "# $(date -u '+%F %T') backlog $n, $(nproc) cores"
start
echo "W2 at depth 0: $(w2x3)"
"$build/client/kyu-bench" --broker "$ep" --workload send --count "$n" --queue backlog --keep-queue |
    awk '/^produce/{print "sending the backlog: " $2 " msg/s"}'
echo "RSS with $n queued: $(rss)"
echo "W2 beside $n queued, right after its last send: $(w2) msg/s"
# the backlog's own flushes and compactions: wait until RocksDB's background threads have
# spent no CPU for 2 s (at most 120 s), then measure W2 beside the backlog at rest
t0=$(date +%s)
prev=$(bg_cpu) quiet=0
while [ $quiet -lt 2 ] && [ $(($(date +%s) - t0)) -lt 120 ]; do
    sleep 1
    cur=$(bg_cpu)
    if [ "$cur" = "$prev" ]; then quiet=$((quiet + 1)); else quiet=0; fi
    prev=$cur
done
echo "RocksDB's background work after the backlog: $(($(date +%s) - t0)) s to settle"
echo "W2 beside $n queued: $(w2x3); RSS $(rss)"
kill -TERM "$broker"; wait "$broker" || true
start
echo "restart after SIGTERM to serving: $ready_s s; RSS $(rss)"
"$build/client/kyu" --broker "$ep" get-queue-attributes backlog | grep ApproximateNumberOfMessages
kill -9 "$broker"; wait "$broker" 2>/dev/null || true
start
echo "restart after kill -9 to serving: $ready_s s"
"$build/client/kyu" --broker "$ep" get-queue-attributes backlog | grep ApproximateNumberOfMessages
echo "data directory: $(du -sh "$dir/db" | cut -f1)"
kill -TERM "$broker"; wait "$broker" || true
broker=""
