#!/usr/bin/env python3
"""Publish-to-consumer latency and Raft entries per published message (docs/BENCHMARKS.md
"Branch pubsent"): a fresh cluster of NODES kyu-brokers on 127.0.0.1 (in a temporary
directory), a topic with SUBS raw-subscribed queues, one consumer per queue that keeps a long
poll parked on it (raw DEALER frames, RECEIVE with a wait; with --sessions a worker session
of credit 1 instead, its credit given back by a heartbeat after each push, as kyu-worker
does), and a publisher that publishes
COUNT messages one at a time: each publish waits until every consumer got its copy (and the
consumers' next long polls are parked) before the next. Reports, per build, the entries the
leader committed per published message (its commit index, CLUSTER_STATUS), the brokers' CPU
time per published message (user+sys of every node from /proc, less the cluster's idle CPU
measured for 3 s before, as a rate, times the run's time; consumers' polls included) and the
latency
from sending the PUBLISH to the last consumer's copy (p50, p90, p99). No DELETE is sent (the
copies are leased for 600 s), so the entries are the publish's and its receives'.

Builds alternate round by round (the machine is shared: compare ratios of one run).

usage: scripts/bench_publish_waiters.py DIR [DIR...] [--nodes N (3)] [--subs N (2)]
                                       [--count N (500)] [--rounds N (2)] [--sessions]
  DIR: a build directory (broker/kyu-broker) or a flat dir holding kyu-broker; the CLI is
  this tree's build/client/kyu.
"""
import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import msgpack
import zmq

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLI = os.path.join(ROOT, "build", "client", "kyu")
OP_RECEIVE, OP_CLUSTER_STATUS, OP_OPEN, OP_HEARTBEAT, OP_PUBLISH = 7, 10, 21, 22, 32


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def broker_bin(d):
    for p in (os.path.join(d, "kyu-broker"), os.path.join(d, "broker", "kyu-broker")):
        if os.access(p, os.X_OK):
            return p
    sys.exit("no kyu-broker in %s" % d)


class Dealer:
    def __init__(self, ctx, endpoint):
        self.s = ctx.socket(zmq.DEALER)
        self.s.setsockopt(zmq.LINGER, 0)
        self.s.connect(endpoint)
        self.next_id = 0

    def send(self, header, *bodies):
        self.next_id += 1
        self.s.send_multipart([msgpack.packb(dict(header, id=self.next_id))] + list(bodies))
        return self.next_id

    def reply(self, timeout_ms):
        if not self.s.poll(timeout_ms):
            raise RuntimeError("no reply within %d ms" % timeout_ms)
        f = self.s.recv_multipart()
        return msgpack.unpackb(f[0]), f[1:]

    def wait(self, pred, timeout_ms):
        """The next reply that pred(header) takes (a session's other events skipped)."""
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            h, b = self.reply(max(1, int((deadline - time.monotonic()) * 1000)))
            if pred(h):
                return h, b


def run(broker, nodes, subs, count, sessions):
    tmp = tempfile.mkdtemp(prefix="kyu-pubw-")
    specs = [(i, "127.0.0.1:%d" % free_port(), "tcp://127.0.0.1:%d" % free_port())
             for i in range(1, nodes + 1)]
    procs = []
    ctx = zmq.Context()
    try:
        log = open(os.path.join(tmp, "brokers.log"), "ab")
        for i, _, client in specs:
            if nodes == 1:
                args = ["--listen", client]
            else:
                args = ["--node-id", str(i)]
                for j, raft, c in specs:
                    args += ["--peer", "%d,%s,%s" % (j, raft, c)]
            procs.append(subprocess.Popen([broker, "--data", os.path.join(tmp, "db%d" % i)] + args,
                                          stdout=log, stderr=log))
        eps = ",".join(c for _, _, c in specs)

        def cli(*a):
            r = subprocess.run([CLI, "--broker", eps, "--timeout", "30"] + list(a),
                               capture_output=True, timeout=120)
            if r.returncode:
                raise RuntimeError("kyu %s: %s" % (" ".join(a), r.stderr.decode()))
            return r.stdout.decode()

        cli("create-topic", "orders")
        queues = ["q%d" % i for i in range(subs)]
        for q in queues:
            cli("create-queue", q)
            cli("subscribe", "orders", q, "--raw")
        leader = None
        for _, _, c in specs:  # the leader: CLUSTER_STATUS's role
            d = Dealer(ctx, c)
            d.send(dict(op=OP_CLUSTER_STATUS))
            if d.reply(10000)[0]["node"]["role"] == "leader":
                leader = c
            d.s.close()
        pub = Dealer(ctx, leader)
        cons = [Dealer(ctx, leader) for _ in queues]

        def commit():
            pub.send(dict(op=OP_CLUSTER_STATUS))
            return pub.reply(10000)[0]["node"]["commit"]

        def park():
            if sessions:  # the credit back: the session waits with credit again
                for c in cons:
                    rid = c.send(dict(op=OP_HEARTBEAT, sid=c.sid, cr=1))
                    h, _ = c.wait(lambda h: "ev" not in h and h["id"] == rid, 10000)
                    if h["st"] != 0:
                        raise RuntimeError("heartbeat: %r" % (h,))
                return
            for c, q in zip(cons, queues):
                c.send(dict(op=OP_RECEIVE, q=q, wt=20, vt=600))
            time.sleep(0.02)  # parked before the next publish
            for c in cons:
                if c.s.poll(0):
                    raise RuntimeError("a long poll on an empty queue was answered")

        if sessions:
            for c, q in zip(cons, queues):
                c.send(dict(op=OP_OPEN, q=q, cr=1, vt=600, hb=5000))
                h, _ = c.reply(10000)
                if h["st"] != 0:
                    raise RuntimeError("open: %r" % (h,))
                c.sid = h["sid"]
            time.sleep(0.05)
        park()
        t_idle, idle = time.monotonic(), cpu_ticks(procs)  # the cluster's idle CPU, as a rate
        time.sleep(3)
        idle_rate = (cpu_ticks(procs) - idle) / (time.monotonic() - t_idle)
        before, ticks, t_start = commit(), cpu_ticks(procs), time.monotonic()
        lat = []
        body = b"x" * 256
        for n in range(count):
            t0 = time.perf_counter()
            pub.send(dict(op=OP_PUBLISH, tp="orders"), body)
            for c in cons:
                if sessions:
                    h, b = c.wait(lambda h: h.get("ev") == "msgs", 20000)
                else:
                    h, b = c.reply(20000)
                if h.get("st") != 0 or b != [body]:
                    raise RuntimeError("consumer got %r" % (h,))
            lat.append(time.perf_counter() - t0)
            h, _ = pub.reply(20000)
            if h.get("st") != 0:
                raise RuntimeError("publish: %r" % (h,))
            park()
        entries = (commit() - before) / count
        busy = cpu_ticks(procs) - ticks - idle_rate * (time.monotonic() - t_start)
        cpu_us = busy * 1e6 / os.sysconf("SC_CLK_TCK") / count
        return entries, cpu_us, lat
    finally:
        ctx.destroy(linger=0)
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)


def cpu_ticks(procs):
    t = 0
    for p in procs:
        with open("/proc/%d/stat" % p.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        t += int(fields[11]) + int(fields[12])  # utime, stime
    return t


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))] * 1e6


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dirs", nargs="+")
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--subs", type=int, default=2)
    ap.add_argument("--count", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--sessions", action="store_true")
    a = ap.parse_args()
    res = {d: [] for d in a.dirs}
    for r in range(a.rounds):
        for d in a.dirs:
            entries, cpu, lat = run(broker_bin(d), a.nodes, a.subs, a.count, a.sessions)
            res[d].append((entries, cpu, lat))
            print("round %d %-24s entries/publish %.3f  brokers' CPU %.0f us/publish  latency us "
                  "p50 %.0f p90 %.0f p99 %.0f" % (r, d, entries, cpu, pct(lat, .5), pct(lat, .9),
                                                   pct(lat, .99)), flush=True)
    for d in a.dirs:
        lat = [x for _, _, l in res[d] for x in l]
        print("all     %-24s entries/publish %.3f  brokers' CPU %.0f us/publish  latency us "
              "p50 %.0f p90 %.0f p99 %.0f"
              % (d, statistics.mean(e for e, _, _ in res[d]),
                 statistics.median(c for _, c, _ in res[d]), pct(lat, .5), pct(lat, .9),
                 pct(lat, .99)))


if __name__ == "__main__":
    main()
