#!/usr/bin/env bash
# The quick regression check a change to the broker passes before it lands: send-only and W2
# on one node, an old and a new build interleaved in the same minutes (this machine is shared
# and noisy: only ratios from one run count). Prints each run and the medians, with the
# broker's CPU time per message (user+sys, from /proc), which noise moves less than msg/s.
# Usage: scripts/bench_ab.sh OLD_DIR [NEW_DIR (default build)] [ROUNDS (default 3)] [COUNT]
#   OLD_DIR "-": the new build only (figures of one build, e.g. the workloads side by side).
#   WORKLOADS (environment, default "send w2"): the kyu-bench workloads run, each a name or
#   a name and options joined by commas, e.g. WORKLOADS="send w2 publish,--subs,3 w2,--groups,100".
#   OLD_DIR and NEW_DIR hold broker/kyu-broker and client/kyu-bench (a build directory), or
#   the two binaries side by side. Make OLD_DIR with, e.g.:
#   git worktree add /tmp/kyu-old HEAD~1 && (cd /tmp/kyu-old && scripts/build.sh build)
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
tmp=$(mktemp -d /tmp/kyu-ab-XXXXXX)
broker=""
trap '[ -n "$broker" ] && kill -9 $broker 2>/dev/null; rm -rf "$tmp"' EXIT
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
run() { # LABEL DIR WORKLOAD (name[,option,...])
    local label=$1 dir=$2 wl=$3 port
    [ "$dir" = - ] && return 0
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    rm -rf "$tmp/db"
    "$(bin "$dir" kyu-broker)" --data "$tmp/db" --listen "tcp://127.0.0.1:$port" >>"$tmp/broker.log" 2>&1 &
    broker=$!
    local bench
    bench=$(bin "$dir" kyu-bench)
    for _ in $(seq 1 600); do
        "$bench" --broker "tcp://127.0.0.1:$port" --workload send --count 1 --timeout 1 >/dev/null 2>&1 && break
        sleep 0.05
    done
    local c0 out rate c1
    c0=$(cpu_ticks "$broker")
    # shellcheck disable=SC2086 # the workload's options split on purpose
    out=$("$bench" --broker "tcp://127.0.0.1:$port" --workload ${wl//,/ } --count "$count" --json | tail -1)
    c1=$(cpu_ticks "$broker")
    kill -TERM "$broker"; wait "$broker" || true; broker=""
    rate=$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(int(d.get("end_to_end_msg_s") or d.get("produce_msg_s")))' "$out")
    local us
    us=$(python3 -c "print(round(($c1 - $c0) * 1e6 / $(getconf CLK_TCK) / $count, 1))")
    echo "$label $wl $rate msg/s, broker CPU $us us/msg" | tee -a "$tmp/results"
}
echo "# $(date -u '+%F %T') old=$old new=$new rounds=$rounds count=$count"
for r in $(seq 1 "$rounds"); do
    for wl in $workloads; do
        if [ $((r % 2)) -eq 1 ]; then run old "$old" $wl; run new "$new" $wl
        else run new "$new" $wl; run old "$old" $wl; fi
    done
done
echo "# medians"
python3 - "$tmp/results" "$workloads" <<'EOF'
import sys, statistics, collections
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    f = line.split()
    runs[(f[0], f[1])].append((int(f[2]), float(f[6])))
for wl in sys.argv[2].split():
    o, n = runs[("old", wl)], runs[("new", wl)]
    nm, nc = statistics.median(r for r, _ in n), statistics.median(c for _, c in n)
    if not o:
        print(f"{wl}: {nm:,.0f} msg/s ({nc:.1f} us/msg)")
        continue
    om, oc = statistics.median(r for r, _ in o), statistics.median(c for _, c in o)
    print(f"{wl}: old {om:,.0f} msg/s ({oc:.1f} us/msg)  new {nm:,.0f} msg/s ({nc:.1f} us/msg)  "
          f"ratio {nm / om:.2f}")
EOF
