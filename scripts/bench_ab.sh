#!/usr/bin/env bash
# The quick regression check a change to the broker passes before it lands: send-only and W2
# on one node, an old and a new build interleaved in the same minutes (this machine is shared
# and noisy: only ratios from one run count). Prints each run and the medians, with the
# broker's CPU time per message (user+sys, from /proc), which noise moves less than msg/s,
# and kyu-bench's own (user+sys of all its threads, from time(1) when installed).
# Usage: scripts/bench_ab.sh OLD_DIR [NEW_DIR (default build)] [ROUNDS (default 3)] [COUNT]
#   OLD_DIR "-": the new build only (figures of one build, e.g. the workloads side by side).
#   WORKLOADS (environment, default "send w2"): the kyu-bench workloads run, each a name or
#   a name and options joined by commas, e.g. WORKLOADS="send w2 publish,--subs,3 w2,--groups,100".
#   OLD_DIR and NEW_DIR hold broker/kyu-broker and client/kyu-bench (a build directory), or
#   the two binaries side by side. Make OLD_DIR with, e.g.:
#   git worktree add /tmp/kyu-old HEAD~1 && (cd /tmp/kyu-old && scripts/build.sh build)
#   NODES (environment, default 1): the number of brokers, each run a fresh cluster of that
#   many on 127.0.0.1 (kyu-bench given every client endpoint: it finds the leader); the CPU
#   per message is then the sum of every broker's. Lines carry latency p50/p99 where the
#   workload measures it, and w1 and lat their produce and consume msg/s apart.
#   A workload's own --count replaces COUNT for it. E.g.
#   NODES=3 WORKLOADS="w2,--recv-inflight,10 lat,--rate,200,--count,3000" scripts/bench_ab.sh OLD
set -euo pipefail
cd "$(dirname "$0")/.."
old=${1:?usage: scripts/bench_ab.sh OLD_DIR [NEW_DIR] [ROUNDS] [COUNT]}
new=${2:-build}
rounds=${3:-3}
count=${4:-100000}
workloads=${WORKLOADS:-send w2}
bin() { # DIR NAME: the binary NAME of a build dir or a flat dir
    local d=$1 n=$2
    if [ -x "$d/$n" ]; then echo "$d/$n"; elif [ -x "$d/broker/$n" ]; then echo "$d/broker/$n"
    else echo "$d/client/$n"; fi
}
nodes=${NODES:-1}
tmp=$(mktemp -d /tmp/kyu-ab-XXXXXX)
brokers=()
trap '[ ${#brokers[@]} -gt 0 ] && kill -9 "${brokers[@]}" 2>/dev/null; rm -rf "$tmp"' EXIT
cpu_ticks() { # PID...: user+sys ticks of them all
    local p t=0
    for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
    echo "$t"
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
run() { # LABEL DIR WORKLOAD (name[,option,...])
    local label=$1 dir=$2 wl=$3 eps=() peers=() i
    [ "$dir" = - ] && return 0
    rm -rf "$tmp"/db*
    if [ "$nodes" -eq 1 ]; then
        eps=("tcp://127.0.0.1:$(free_port)")
        "$(bin "$dir" kyu-broker)" --data "$tmp/db" --listen "${eps[0]}" >>"$tmp/broker.log" 2>&1 &
        brokers=($!)
    else
        for ((i = 1; i <= nodes; i++)); do
            eps+=("tcp://127.0.0.1:$(free_port)")
            peers+=(--peer "$i,127.0.0.1:$(free_port),${eps[i - 1]}")
        done
        for ((i = 1; i <= nodes; i++)); do
            "$(bin "$dir" kyu-broker)" --node-id "$i" "${peers[@]}" --data "$tmp/db$i" \
                >>"$tmp/broker$i.log" 2>&1 &
            brokers+=($!)
        done
    fi
    local ep bench
    ep=$(IFS=,; echo "${eps[*]}")
    bench=$(bin "$dir" kyu-bench)
    for _ in $(seq 1 600); do
        "$bench" --broker "$ep" --workload send --count 1 --timeout 1 >/dev/null 2>&1 && break
        sleep 0.05
    done
    local c0 out rate c1 n=$count
    [[ ",$wl," =~ ,--count,([0-9]+), ]] && n=${BASH_REMATCH[1]} # a workload's own count
    c0=$(cpu_ticks "${brokers[@]}")
    # kyu-bench's own CPU (user+sys, all its threads: libkyu and libzmq's I/O threads) from
    # time(1) when there is one
    local timer=()
    [ -x /usr/bin/time ] && timer=(/usr/bin/time -f '%U %S' -o "$tmp/client_time")
    # shellcheck disable=SC2086 # the workload's options split on purpose
    out=$("${timer[@]}" "$bench" --broker "$ep" --count "$n" --workload ${wl//,/ } --json | tail -1)
    c1=$(cpu_ticks "${brokers[@]}")
    kill -TERM "${brokers[@]}"; wait "${brokers[@]}" || true; brokers=()
    rate=$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(int(d.get("end_to_end_msg_s") or d.get("produce_msg_s")))' "$out")
    local us lat=""
    us=$(python3 -c "print(round(($c1 - $c0) * 1e6 / $(getconf CLK_TCK) / $n, 1))")
    # latency (every workload that measures it: w1, lat, and every one on three nodes) and,
    # for w1 and lat, the produce and consume rates apart
    lat=$(python3 -c 'import json,sys
d = json.loads(sys.argv[1]); l = d["latency_us"]; w = d["workload"]
s = " p50 %.0f p99 %.0f" % (l["p50"], l["p99"]) if l["p50"] > 0 else ""
if w in ("w1", "lat"): s += " produce %d consume %d" % (d["produce_msg_s"], d["consume_msg_s"])
print(s)' "$out")
    local client=""
    [ ${#timer[@]} -gt 0 ] &&
        client=$(awk -v n="$n" 'END {printf " client CPU %.1f us/msg", ($1 + $2) * 1e6 / n}' "$tmp/client_time")
    echo "$label $wl $rate msg/s, broker CPU $us us/msg$lat$client" | tee -a "$tmp/results"
}
echo "# $(date -u '+%F %T') old=$old new=$new rounds=$rounds count=$count nodes=$nodes"
for r in $(seq 1 "$rounds"); do
    for wl in $workloads; do
        if [ $((r % 2)) -eq 1 ]; then run old "$old" $wl; run new "$new" $wl
        else run new "$new" $wl; run old "$old" $wl; fi
    done
done
echo "# medians"
python3 - "$tmp/results" "$workloads" <<'EOF'
import re, sys, statistics, collections
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    f = line.split()
    lat = re.search(r" p50 (\S+) p99 (\S+)", line)
    pc = re.search(r" produce (\d+) consume (\d+)", line)
    cl = re.search(r" client CPU (\S+) us/msg", line)
    runs[(f[0], f[1])].append((int(f[2]), float(f[6]),
                               (float(lat[1]), float(lat[2])) if lat else None,
                               (int(pc[1]), int(pc[2])) if pc else None,
                               float(cl[1]) if cl else None))
def med(rs):
    m = lambda k: statistics.median(r[k] for r in rs)
    s = f"{m(0):,.0f} msg/s ({m(1):.1f} us/msg"
    if rs[0][4] is not None:
        s += f", client {m(4):.1f} us/msg"
    if rs[0][2]:
        s += f", p50 {statistics.median(r[2][0] for r in rs):,.0f} p99 {statistics.median(r[2][1] for r in rs):,.0f} us"
    if rs[0][3]:
        s += f", produce {statistics.median(r[3][0] for r in rs):,.0f} consume {statistics.median(r[3][1] for r in rs):,.0f}"
    return s + ")"
for wl in sys.argv[2].split():
    o, n = runs[("old", wl)], runs[("new", wl)]
    if not o:
        print(f"{wl}: {med(n)}")
        continue
    ratio = statistics.median(r[0] for r in n) / statistics.median(r[0] for r in o)
    cpu = statistics.median(r[1] for r in n) / statistics.median(r[1] for r in o)
    client = ""
    if o[0][4] and n[0][4]:
        client = f", client CPU/msg ratio {statistics.median(r[4] for r in n) / statistics.median(r[4] for r in o):.2f}"
    print(f"{wl}: old {med(o)}  new {med(n)}  ratio {ratio:.2f}, CPU/msg ratio {cpu:.2f}{client}")
EOF
