#!/usr/bin/env bash
# Restarts every node of a running kyu cluster one at a time, as docs/OPERATIONS.md "Rolling
# restarts and upgrades" says: the followers first, the leader last after handing leadership
# over (`kyu cluster transfer`, asked again until another node leads), each node back and
# `kyu cluster ready` before the next. Clients see retries only.
#
#   scripts/rolling_restart.sh [--kyu PATH] [--ready-timeout SEC] ENDPOINTS RESTART_COMMAND
#
# ENDPOINTS: every node's client endpoint, comma-separated (as for `kyu --broker`).
# RESTART_COMMAND runs with /bin/sh -c once per node, with KYU_NODE_ID and KYU_NODE_ENDPOINT
# set. It must stop that node with SIGTERM, wait until it has exited, and start it again (or
# leave the start to a supervisor) on the same data directory, e.g.
#   'ssh "kyu$KYU_NODE_ID" sudo systemctl restart kyu-broker'
#   'docker restart --time 30 "kyu$KYU_NODE_ID"'
# For an upgrade, it also puts the new binary in place before the start.
# A call that fails on a loaded cluster (a timeout) is asked again, within bounds: every one
# here is safe to repeat (status and ready read, a transfer of a node that no longer leads is
# not asked again).
# Exit 0: every node restarted and ready; 1: a step failed (it stops there, saying which, and
# the cluster is left as it is); 2: usage.
set -euo pipefail

kyu=kyu
ready_timeout=120
while [ $# -gt 0 ]; do
    case "$1" in
    --kyu) kyu=$2; shift 2 ;;
    --ready-timeout) ready_timeout=$2; shift 2 ;;
    -h | --help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --*) echo "rolling_restart: unknown option $1" >&2; exit 2 ;;
    *) break ;;
    esac
done
if [ $# -ne 2 ] || ! [[ $ready_timeout =~ ^[0-9]+$ ]]; then
    echo "usage: $0 [--kyu PATH] [--ready-timeout SEC] ENDPOINTS RESTART_COMMAND" >&2
    exit 2
fi
endpoints=$1
restart=$2

say() { echo "rolling_restart: $*"; }
fail() { echo "rolling_restart: $*" >&2; exit 1; }

# `kyu cluster status` as "ID ENDPOINT ROLE MEMBERSHIP" lines (READ-ONLY lines left out).
status() {
    { "$kyu" --broker "$endpoints" cluster status 2>/dev/null || true; } |
        awk '$1 ~ /^[1-9][0-9]*$/ { print $1, $3, $4, $5 }'
}
# The leader's endpoint, asked again (for up to 10 s) while no answer names one: a node that
# is slow to answer (a loaded host) is printed unreachable, and an election takes a moment.
leader_endpoint() {
    local l
    for _ in $(seq 50); do
        l=$(status | awk '$3 == "leader" { print $2; exit }')
        if [ -n "$l" ]; then echo "$l"; return; fi
        sleep 0.2
    done
}

# Every node must answer and be ready before anything is restarted (asked again for up to
# --ready-timeout: a node may trail the commit index for a moment under load), and every
# endpoint must be in the status with its id (a node too slow to answer is not left out).
n_endpoints=$(echo "$endpoints" | tr ',' '\n' | grep -c .)
deadline=$((SECONDS + ready_timeout))
until out=$("$kyu" --broker "$endpoints" cluster ready 2>&1) &&
    nodes=$(status) && [ "$(echo "$nodes" | grep -c .)" -eq "$n_endpoints" ] &&
    leader=$(echo "$nodes" | awk '$3 == "leader" { print $2 }') && [ -n "$leader" ]; do
    [ $SECONDS -lt $deadline ] ||
        fail "the cluster is not ready within ${ready_timeout} s, nothing restarted: $out ${nodes:-}"
    sleep 0.5
done
# The order: the members that do not lead, then the leader.
order=$(echo "$nodes" | awk -v l="$leader" '$2 != l && ($4 == "voter" || $4 == "learner") { print $1, $2 }'
    echo "$nodes" | awk -v l="$leader" '$2 == l { print $1, $2 }')
say "order: $(echo "$order" | awk '{ printf "%snode %s", sep, $1; sep = ", " }')"

while read -r id ep; do
    if [ "$(leader_endpoint)" = "$ep" ]; then
        moved= err=
        for _ in 1 2 3 4 5 6; do
            say "node $id leads: kyu cluster transfer"
            # A transfer that failed (timed out on a loaded host) or that the leader gave up
            # is asked again, as long as the node still leads.
            terr=$("$kyu" --broker "$endpoints" cluster transfer 2>&1 >/dev/null) || err=$terr
            for _ in $(seq 50); do
                now=$(leader_endpoint)
                if [ -n "$now" ] && [ "$now" != "$ep" ]; then moved=$now; break 2; fi
                sleep 0.1
            done
        done
        [ -n "$moved" ] || fail "leadership did not leave node $id: not restarted${err:+ (kyu cluster transfer: $err)}"
        say "leadership moved to $moved"
    fi
    say "restarting node $id ($ep)"
    KYU_NODE_ID=$id KYU_NODE_ENDPOINT=$ep /bin/sh -c "$restart" ||
        fail "the restart command failed for node $id"
    deadline=$((SECONDS + ready_timeout))
    until out=$("$kyu" --broker "$ep" cluster ready 2>&1); do
        [ $SECONDS -lt $deadline ] || fail "node $id not ready within ${ready_timeout} s: $out"
        sleep 0.2
    done
    say "node $id ready"
done <<<"$order"
say "every node restarted and ready"
