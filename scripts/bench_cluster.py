#!/usr/bin/env python3
"""Three-node figures for docs/BENCHMARKS.md (the W3 workload and the failover figure):
starts three kyu-broker processes on 127.0.0.1 (one disk), runs kyu-bench's W1, LAT at
200 msg/s, W2 and send-only against the cluster, then measures
  - leader kill -9 -> first acknowledged send on the new leader (a `kyu send` loop, each
    send a fresh client that follows NOT_LEADER), repeated ROUNDS times;
  - a follower stopped, a backlog sent, and the follower restarted: time to serving (its
    status answers) and to caught up (its applied index reaches the leader's commit);
  - the same for a follower restarted from an empty data dir (snapshot install).
Usage: scripts/bench_cluster.py [--count N] [--backlog N] [--rounds N]
Builds nothing: run scripts/build.sh first. Stops only the processes it started."""
import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BROKER = os.path.join(ROOT, "build/broker/kyu-broker")
CLI = os.path.join(ROOT, "build/client/kyu")
BENCH = os.path.join(ROOT, "build/client/kyu-bench")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Node:
    def __init__(self, node_id, peer_args, client, data):
        self.id, self.peer_args, self.client = node_id, peer_args, client
        self.db = os.path.join(data, "db-%d" % node_id)
        self.log = open(os.path.join(data, "broker-%d.log" % node_id), "ab")
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([BROKER, "--node-id", str(self.id), "--data", self.db]
                                     + self.peer_args, stdout=self.log, stderr=self.log)

    def signal(self, sig):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)


def cli(endpoints, *args, timeout=60):
    return subprocess.run([CLI, "--broker", endpoints] + list(args), capture_output=True,
                          timeout=timeout)


def status(endpoints):
    out = cli(endpoints, "--json", "cluster", "status").stdout.decode()
    return [json.loads(l) for l in out.splitlines() if l.strip()]


def wait(cond, what, limit=120):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    sys.exit("bench_cluster: %s did not happen within %d s" % (what, limit))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=20000)
    ap.add_argument("--backlog", type=int, default=100000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--only-restart", action="store_true", help="skip the workloads and kills")
    o = ap.parse_args()
    data = tempfile.mkdtemp(prefix="kyu-bench-cluster-")
    specs = [(i, "127.0.0.1:%d" % free_port(), "tcp://127.0.0.1:%d" % free_port()) for i in (1, 2, 3)]
    peer_args = []
    for i, raft, client in specs:
        peer_args += ["--peer", "%d,%s,%s" % (i, raft, client)]
    nodes = {i: Node(i, peer_args, client, data) for i, _, client in specs}
    eps = ",".join(n.client for n in nodes.values())

    def leader():
        for s in status(eps):
            if s["role"] == "leader":
                return nodes.get(s["id"])
        return None

    done = False
    try:
        for n in nodes.values():
            n.start()
        wait(leader, "an election")
        print("# %s, %d cores, 3 nodes on 127.0.0.1, one disk" % (time.strftime("%F"), os.cpu_count()))
        for name, args in () if o.only_restart else (("W1", ["--workload", "w1", "--count", str(o.count // 4)]),
                           ("LAT (200 msg/s)", ["--workload", "lat", "--rate", "200", "--count", "2000"]),
                           ("W2", ["--workload", "w2", "--count", str(o.count)]),
                           ("send", ["--workload", "send", "--count", str(o.count)])):
            r = subprocess.run([BENCH, "--broker", eps] + args, capture_output=True, timeout=1800)
            print("## %s: %s" % (name, " ".join(args)))
            print((r.stdout.decode() + r.stderr.decode()).strip())

        cli(eps, "create-queue", "failover")
        times = []
        for _ in range(0 if o.only_restart else o.rounds):
            old = leader()
            for k in range(5):  # the cluster is serving
                if cli(eps, "send", "failover", "warm-%d" % k).returncode != 0:
                    sys.exit("bench_cluster: send failed before the kill")
            t0 = time.monotonic()
            old.proc.send_signal(signal.SIGKILL)
            old.proc.wait(timeout=30)
            r = cli(eps, "send", "failover", "after-kill", timeout=120)
            t1 = time.monotonic()
            if r.returncode != 0:
                sys.exit("bench_cluster: no send acknowledged after the kill: %s" % r.stderr.decode())
            times.append(t1 - t0)
            old.start()
            wait(lambda: all(s["role"] != "unreachable" for s in status(eps)), "the restart")
            time.sleep(1)
        times.sort()
        if times:
            print("## leader kill -9 -> first acknowledged send (%d rounds): median %.2f s, max %.2f s, all %s"
              % (len(times), times[len(times) // 2], times[-1], " ".join("%.2f" % t for t in times)))

        for wipe in (False, True):
            lead = leader()
            follower = next(n for n in nodes.values() if n is not lead)
            follower.signal(signal.SIGTERM)
            if wipe:
                shutil.rmtree(follower.db)
            r = subprocess.run([BENCH, "--broker", eps, "--workload", "send", "--count", str(o.backlog),
                                "--queue", "backlog%d" % wipe, "--keep-queue"], capture_output=True,
                               timeout=1800)
            if r.returncode != 0:
                sys.exit("bench_cluster: backlog send failed: %s" % r.stderr.decode())
            commit = next(s for s in status(eps) if s["role"] == "leader")["commit_index"]
            t0 = time.monotonic()
            follower.start()
            wait(lambda: any(s["id"] == follower.id for s in status(follower.client)), "serving", 300)
            t1 = time.monotonic()
            wait(lambda: any(s["id"] == follower.id and s["applied_index"] >= commit
                             for s in status(follower.client)), "catch-up", 120)
            t2 = time.monotonic()
            print("## follower %s, %d messages sent meanwhile: serving status after %.2f s, caught up "
                  "(applied %d) after %.2f s" % ("restarted from an empty data dir" if wipe else "restarted",
                                                 o.backlog, t1 - t0, commit, t2 - t0))
        done = True
    finally:
        for n in nodes.values():
            n.signal(signal.SIGTERM)
            n.log.close()
        if done:
            shutil.rmtree(data, ignore_errors=True)
        else:
            print("bench_cluster: logs and data kept in %s" % data, file=sys.stderr)


if __name__ == "__main__":
    main()
