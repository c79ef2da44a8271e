#!/usr/bin/env bash
# examples/orders/run.sh: the orders example on a local three-node kyu cluster (docs/EXAMPLE.md).
#
#   run.sh [start] [DIR] [--base-port N] [--bin BUILD_DIR] [--publish-timeout SEC]
#       starts three kyu-brokers on 127.0.0.1 (client ports N+1..N+3, Raft ports N+11..N+13;
#       N defaults to 17700), creates topic `orders`, queues `shipping` and `accounting` with
#       dead-letter queues `shipping-dlq` and `accounting-dlq` (maxReceiveCount 3), subscribes
#       shipping to every order and accounting to the paid ones (a filter policy), starts the
#       order service on http://127.0.0.1:N+80 and a kyu-worker per queue. Everything lives in
#       DIR (default: a new /tmp/kyu-orders.XXXXXX): data, logs, PIDs, the handlers' SQLite
#       records. BUILD_DIR: where kyu was built (default: build/ of this tree); SEC: how long
#       the service retries a publish before it answers 503 (default 30).
#   run.sh stop DIR          stops what DIR's PID files name (SIGTERM, SIGKILL after 30 s)
#   run.sh clean DIR         stop, then remove DIR
#   run.sh report DIR [ACCEPTED]
#                            counts: orders processed, redeliveries absorbed, duplicates,
#                            dead-letter queues; with ACCEPTED (send_orders.py --accepted's
#                            file: the orders answered 202) also what is missing or extra
#   run.sh leader DIR        the leader's node id and PID (for kill -9)
#   run.sh start-node DIR ID starts broker ID again (after a kill)
#
# Processes are stopped by the PIDs recorded in DIR/pids, never by name.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
NOHUP=$(readlink -f "$(command -v nohup)")
REPO=$(cd "$HERE/../.." && pwd)

STARTING=""
die() {
    echo "run.sh: $*" >&2
    if [ -n "$STARTING" ]; then # a start that failed half-way stops what it started
        STARTING=""
        do_stop >&2 || true
    fi
    exit 1
}

# ---- arguments ----
cmd=start
case "${1:-}" in
start | stop | clean | report | leader | start-node)
    cmd=$1
    shift
    ;;
esac
DIR=""
BASE_PORT=""
BIN=""
ARG2=""
PUBLISH_TIMEOUT=30
while [ $# -gt 0 ]; do
    case "$1" in
    --base-port)
        BASE_PORT=${2:?--base-port needs a number}
        shift 2
        ;;
    --bin)
        BIN=${2:?--bin needs a directory}
        shift 2
        ;;
    --publish-timeout)
        PUBLISH_TIMEOUT=${2:?--publish-timeout needs seconds}
        shift 2
        ;;
    -h | --help)
        sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    -*) die "unknown option $1 (run.sh --help)" ;;
    *)
        if [ -z "$DIR" ]; then
            DIR=$1
        elif [ "$cmd" = start-node ] || [ "$cmd" = report ] && [ -z "$ARG2" ]; then
            ARG2=$1
        else
            die "unexpected argument $1 (run.sh --help)"
        fi
        shift
        ;;
    esac
done

# ---- helpers over DIR ----
load_env() {
    [ -n "$DIR" ] || die "$cmd: give the example's directory (printed by run.sh start)"
    [ -f "$DIR/env" ] || die "$cmd: $DIR/env not found: not a directory made by run.sh start"
    # shellcheck disable=SC1091
    . "$DIR/env"
}

kyu() {
    "$BIN/client/kyu" --broker "$ENDPOINTS" "$@"
}

# True when the PID in pid file $1 is alive and is the program recorded with it, or nohup
# about to become it (a PID the system gave to another process since is left alone; a
# program rebuilt since shows as "PATH (deleted)").
pid_alive() {
    local f=$1 pid exe want
    [ -f "$f" ] || return 1
    read -r pid want <"$f" || return 1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
    [ -z "$want" ] || [[ "$exe" == "$want"* ]] || [ "$exe" = "$NOHUP" ]
}

# start NAME LOG PROGRAM ARGS...: starts PROGRAM in the background (stdin /dev/null, output to
# LOG) and records "PID PROGRAM" in DIR/pids/NAME.
start_proc() {
    local name=$1 log=$2
    shift 2
    nohup "$@" </dev/null >>"$log" 2>&1 &
    echo "$! $(readlink -f "$1")" >"$DIR/pids/$name"
}

stop_pid_file() {
    local f=$1 pid
    pid_alive "$f" || return 0
    read -r pid _ <"$f"
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 300); do
        pid_alive "$f" || return 0
        sleep 0.1
    done
    echo "run.sh: $(basename "$f") (PID $pid) did not stop on SIGTERM within 30 s: SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
}

start_node() {
    local i=$1 peers=()
    for j in 1 2 3; do
        peers+=(--peer "$j,127.0.0.1:$((BASE_PORT + 10 + j)),tcp://127.0.0.1:$((BASE_PORT + j))")
    done
    start_proc "broker-$i" "$DIR/logs/broker-$i.log" "$BIN/broker/kyu-broker" --node-id "$i" \
        --data "$DIR/node-$i" "${peers[@]}"
}

# The leader's node id, once it also serves requests; empty when none within 30 s.
leader_id() {
    local end=$((SECONDS + 30)) id
    while [ $SECONDS -lt $end ]; do
        id=$(kyu cluster status 2>/dev/null | awk '$4 == "leader" {print $1; exit}' || true)
        if [ -n "$id" ] && "$BIN/client/kyu" --broker "tcp://127.0.0.1:$((BASE_PORT + id))" \
            list-queues >/dev/null 2>&1; then
            echo "$id"
            return 0
        fi
        sleep 0.2
    done
}

port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# ---- commands ----
do_start() {
    BIN=${BIN:-$REPO/build}
    BIN=$(cd "$BIN" 2>/dev/null && pwd) || die "build directory ${BIN} not found"
    for p in broker/kyu-broker client/kyu worker/kyu-worker examples/orders/orders-service; do
        [ -x "$BIN/$p" ] || die "$BIN/$p not found: build kyu first (scripts/build.sh; the order \
service needs libmicrohttpd-dev, scripts/deps.sh installs it)"
    done
    BASE_PORT=${BASE_PORT:-17700}
    HTTP_PORT=$((BASE_PORT + 80))
    for p in $((BASE_PORT + 1)) $((BASE_PORT + 2)) $((BASE_PORT + 3)) $((BASE_PORT + 11)) \
        $((BASE_PORT + 12)) $((BASE_PORT + 13)) $HTTP_PORT; do
        ! port_in_use "$p" || die "port $p is in use: another run (run.sh stop DIR), or \
--base-port another base"
    done
    if [ -z "$DIR" ]; then
        DIR=$(mktemp -d /tmp/kyu-orders.XXXXXX)
    else
        mkdir -p "$DIR"
        [ ! -f "$DIR/env" ] || die "$DIR holds a run already: run.sh stop $DIR, or another DIR"
    fi
    DIR=$(cd "$DIR" && pwd)
    mkdir -p "$DIR/pids" "$DIR/logs"
    STARTING=1
    ENDPOINTS="tcp://127.0.0.1:$((BASE_PORT + 1)),tcp://127.0.0.1:$((BASE_PORT + 2)),tcp://127.0.0.1:$((BASE_PORT + 3))"
    cat >"$DIR/env" <<EOF
BIN='$BIN'
BASE_PORT=$BASE_PORT
HTTP_PORT=$HTTP_PORT
ENDPOINTS='$ENDPOINTS'
EOF

    echo "starting three kyu-brokers (data and logs in $DIR)"
    for i in 1 2 3; do
        start_node "$i"
    done
    [ -n "$(leader_id)" ] || die "no leader within 30 s; see $DIR/logs/broker-*.log"

    # Queues (each with a dead-letter queue: a message received 3 times without being deleted
    # moves there), the topic, and the subscriptions: shipping gets every order in SNS's JSON
    # envelope, accounting only the paid ones (filter policy on the status attribute), raw.
    for q in shipping accounting; do
        kyu create-queue "$q-dlq" --retention 1209600 >/dev/null
        kyu create-queue "$q" --visibility-timeout 10 --dead-letter-queue "$q-dlq" \
            --max-receive-count 3 >/dev/null
    done
    kyu create-topic orders >/dev/null
    kyu subscribe orders shipping >/dev/null
    kyu subscribe orders accounting --raw --filter '{"status": ["paid"]}' >/dev/null
    echo "topic orders: $(kyu list-subscriptions orders | awk '{print $3}' | paste -sd' ')"

    echo "starting orders-service on http://127.0.0.1:$HTTP_PORT"
    start_proc service "$DIR/logs/service.log" "$BIN/examples/orders/orders-service" \
        --broker "$ENDPOINTS" --listen "127.0.0.1:$HTTP_PORT" --publish-timeout "$PUBLISH_TIMEOUT"
    for _ in $(seq 100); do
        port_in_use "$HTTP_PORT" && break
        pid_alive "$DIR/pids/service" || die "orders-service exited: $(tail -5 "$DIR/logs/service.log")"
        sleep 0.1
    done

    for svc in shipping accounting; do
        python3 "$HERE/handler.py" init "$DIR/$svc.db"
        echo "starting kyu-worker for $svc (records in $DIR/$svc.db)"
        start_proc "worker-$svc" "$DIR/logs/worker-$svc.log" "$BIN/worker/kyu-worker" \
            --broker "$ENDPOINTS" --queue "$svc" --name "$svc" \
            --exec "python3 '$HERE/handler.py' $svc '$DIR/$svc.db'" \
            --report-batch-item-failures --batch-size 10 --max-concurrency 4 \
            --backoff-base 1 --backoff-max 2
    done
    sleep 0.5
    for f in "$DIR"/pids/*; do
        pid_alive "$f" || die "$(basename "$f") exited at once; see $DIR/logs/"
    done
    STARTING=""
    cat <<EOF

The orders example runs in $DIR.
  send an order:   curl -i -X POST http://127.0.0.1:$HTTP_PORT/orders -H 'Content-Type: application/json' \\
                     -d '{"order_id": "o-1", "customer": "ann", "items": [{"sku": "tea", "qty": 2}], "total": 12.5, "paid": true}'
  send 200 orders: python3 $HERE/send_orders.py http://127.0.0.1:$HTTP_PORT --count 200
  the leader:      $0 leader $DIR      (kill -9 its PID while orders flow)
  counts:          $0 report $DIR
  the cluster:     $BIN/client/kyu --broker $ENDPOINTS cluster status
  logs:            $DIR/logs/
  stop:            $0 stop $DIR        (clean: also removes $DIR)
EOF
}

do_stop() {
    load_env
    # The door first, then the consumers (they drain: running batches finish), the brokers last.
    for name in service worker-shipping worker-accounting broker-1 broker-2 broker-3; do
        [ -f "$DIR/pids/$name" ] || continue
        stop_pid_file "$DIR/pids/$name"
    done
    echo "stopped the orders example of $DIR"
}

do_report() {
    load_env
    [ -z "$ARG2" ] || [ -f "$ARG2" ] || die "report: $ARG2 not found"
    python3 - "$DIR" "$BIN/client/kyu" "$ENDPOINTS" "$ARG2" <<'EOF'
import json, os, sqlite3, subprocess, sys
d, kyu, endpoints, accepted_file = sys.argv[1:]
processed = {}
for svc, effect in (("shipping", "shipments"), ("accounting", "ledger")):
    db = sqlite3.connect("file:%s?mode=ro" % os.path.join(d, svc + ".db"), uri=True, timeout=30)
    q = lambda sql: db.execute(sql).fetchone()[0]
    print("%-10s processed %d orders; %d %s rows, %d orders with more than one; "
          "%d redeliveries absorbed" % (
              svc, q("SELECT COUNT(*) FROM processed"), q("SELECT COUNT(*) FROM %s" % effect),
              effect, q("SELECT COUNT(*) FROM (SELECT order_id FROM %s GROUP BY order_id "
                        "HAVING COUNT(*) > 1)" % effect), q("SELECT COUNT(*) FROM absorbed")))
    processed[svc] = {r[0] for r in db.execute("SELECT order_id FROM processed")}
    db.close()
def cli(*args):
    r = subprocess.run([kyu, "--broker", endpoints, "--json"] + list(args), capture_output=True,
                       text=True, timeout=120)
    if r.returncode != 0:
        sys.exit("run.sh: report: kyu %s: %s" % (" ".join(args), r.stderr.strip()))
    return [json.loads(l) for l in r.stdout.splitlines() if l]
for q in ("shipping", "accounting", "shipping-dlq", "accounting-dlq"):
    a = cli("get-queue-attributes", q)[0]
    line = "%-15s %s visible, %s in flight" % (q, a["ApproximateNumberOfMessages"],
                                               a["ApproximateNumberOfMessagesNotVisible"])
    if q.endswith("-dlq"):  # the orders in it, peeked (not leased), in queue order
        ids, start = [], []
        while True:
            nxt = None
            for m in cli("peek", q, "--max", "10", *start):
                if "Next" in m:
                    nxt = m["Next"]
                    continue
                body = json.loads(m["Body"])
                if body.get("Type") == "Notification":  # SNS's envelope (shipping)
                    body = json.loads(body["Message"])
                ids.append(body.get("order_id", "?"))
            if not nxt:
                break
            start = ["--from", nxt]
        line += ": " + (" ".join(ids) if ids else "none")
        processed[q] = set(ids)
    print(line)
if accepted_file:
    with open(accepted_file) as f:
        orders = {o["order_id"]: o for o in map(json.loads, f) if o}
    poison = {i for i, o in orders.items() if o["customer"] == "poison"}
    paid = {i for i, o in orders.items() if o["paid"]}
    print("%d orders accepted (202), %d paid, %d poison:" % (len(orders), len(paid), len(poison)))
    for what, want, got in (
            ("shipping", set(orders) - poison, processed["shipping"]),
            ("accounting", (paid - poison), processed["accounting"]),
            ("shipping-dlq", poison, processed["shipping-dlq"]),
            ("accounting-dlq", poison & paid, processed["accounting-dlq"])):
        missing, extra = want - got, got & set(orders) - want
        print("  %-15s %d of %d expected; missing: %s; unexpected: %s" % (
            what, len(want & got), len(want), " ".join(sorted(missing)) or "none",
            " ".join(sorted(extra)) or "none"))
EOF
}

do_leader() {
    load_env
    local id pid
    id=$(leader_id)
    [ -n "$id" ] || die "no leader within 30 s"
    read -r pid _ <"$DIR/pids/broker-$id"
    echo "node $id PID $pid"
}

case "$cmd" in
start) do_start ;;
stop) do_stop ;;
clean)
    do_stop
    rm -rf "$DIR"
    ;;
report) do_report ;;
leader) do_leader ;;
start-node)
    load_env
    [[ "$ARG2" =~ ^[123]$ ]] || die "start-node: give DIR and a node id 1, 2 or 3"
    ! pid_alive "$DIR/pids/broker-$ARG2" || die "node $ARG2 runs already"
    start_node "$ARG2"
    echo "started node $ARG2"
    ;;
esac
