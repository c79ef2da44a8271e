#!/usr/bin/env python3
"""Issue 14's benchmarks (docs/BENCHMARKS.md "Issue 14: workers") against a fresh single-node
broker of BUILD (default build/), in a temporary directory:

  a) end-to-end msg/s through `kyu-worker --exec true` and `--exec cat` (batch 10; batch 100
     with a 1 s window): a queue is filled with COUNT messages of 1 KiB first (`kyu send
     --lines`), then the worker starts; the time runs from its start until the queue is empty
     (no message visible or in flight, polled every 20 ms);
  b) the same through an embedded C handler: client/examples/example_consumer (libkyu's
     consumer API, batch 10, 4 concurrent batches; its output to /dev/null);
  c) kyu-bench W2 (pipelined receives) and PUSH (worker sessions of credit 100), alternated,
     same broker, same minutes: end to end (producer and consumer together), and phased (the
     consumer starts once all is sent: consume msg/s, comparable with a) and b), which drain
     a filled queue);
  d) the delay from a worker's kill -9 to its messages' redelivery: worker A holds 5 messages
     (its handler sleeps; visibility timeout 120 s, so only the session's death hands them
     over), worker B waits beside it with credit; A is killed; the delay runs from the kill to
     B's handler starting on the last of the 5. TRIALS trials for each heartbeat/liveness.

Every step is bounded (a run that does not empty its queue within LIMIT seconds is reported
as such). Prints a table. Processes are stopped by their PID only.

usage: scripts/bench_worker.py [--build DIR] [--count N (50000)] [--push-count N (50000)]
                               [--repeats N (2)] [--trials N (5)] [--limit SEC (120)]
                               [--only exec,embedded,push,kill] [--keep]
"""
import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Bench:
    def __init__(self, build, tmp, limit):
        self.build = os.path.abspath(build)
        self.tmp = tmp
        self.limit = limit
        self.endpoint = "tcp://127.0.0.1:%d" % free_port()
        self.procs = []
        self.log = open(os.path.join(tmp, "broker.log"), "ab")
        self.broker = self.spawn([self.bin("broker/kyu-broker"), "--data",
                                  os.path.join(tmp, "db"), "--listen", self.endpoint],
                                 stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 30
        while self.cli("list-queues").returncode != 0:
            if time.monotonic() > deadline or self.broker.poll() is not None:
                raise SystemExit("bench_worker: the broker did not start (%s)" % tmp)
            time.sleep(0.05)
        self.lines = os.path.join(tmp, "lines")
        self.lines_count = 0
        self.seq = 0

    def bin(self, rel):
        return os.path.join(self.build, rel)

    def spawn(self, argv, **kw):
        p = subprocess.Popen(argv, **kw)
        self.procs.append(p)
        return p

    def stop(self, p, sig=signal.SIGTERM, timeout=30):
        if p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=30)

    def close(self):
        for p in reversed(self.procs):
            self.stop(p)

    def cli(self, *args, input=None):
        return subprocess.run([self.bin("client/kyu"), "--broker", self.endpoint] + list(args),
                              input=input, capture_output=True, timeout=120)

    def ok(self, *args, input=None):
        r = self.cli(*args, input=input)
        if r.returncode != 0:
            raise SystemExit("bench_worker: kyu %s: %s" % (" ".join(args), r.stderr.decode()))
        return r.stdout.decode()

    def counts(self, queue):
        a = json.loads(self.ok("--json", "get-queue-attributes", queue))
        return (int(a["ApproximateNumberOfMessages"]),
                int(a["ApproximateNumberOfMessagesNotVisible"]))

    def queue(self, vt=30):
        self.seq += 1
        name = "wb%d" % self.seq
        self.ok("create-queue", name, "--visibility-timeout", str(vt))
        return name

    def fill(self, queue, n, size=1024):
        if self.lines_count != n:
            with open(self.lines, "w") as f:
                for i in range(n):
                    head = "m%08d-" % i
                    f.write(head + "x" * (size - len(head)) + "\n")
            self.lines_count = n
        with open(self.lines, "rb") as f:
            r = subprocess.run([self.bin("client/kyu"), "--broker", self.endpoint, "send", queue,
                                "--lines"], stdin=f, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, timeout=300)
        if r.returncode != 0:
            raise SystemExit("bench_worker: filling %s: %s" % (queue, r.stderr.decode()))
        if self.counts(queue) != (n, 0):
            raise SystemExit("bench_worker: %s holds %s after the fill" % (queue, self.counts(queue)))

    def drain_time(self, queue, argv, log_name):
        """Starts argv (a consumer of queue), returns (seconds until queue is empty or None,
        messages left)."""
        log = open(os.path.join(self.tmp, log_name), "ab")
        t0 = time.monotonic()
        p = self.spawn(argv, stdout=subprocess.DEVNULL, stderr=log)
        left = None
        try:
            while time.monotonic() - t0 < self.limit:
                c = self.counts(queue)
                if c == (0, 0):
                    return time.monotonic() - t0, 0
                if p.poll() is not None:
                    break
                left = sum(c)
                time.sleep(0.02)
            return None, left
        finally:
            self.stop(p)
            log.close()


def run_exec(b, count, rows):
    configs = [("kyu-worker --exec true", ["--exec", "true"], 10, None),
               ("kyu-worker --exec cat", ["--exec", "cat"], 10, None),
               ("kyu-worker --exec true", ["--exec", "true"], 100, 1),
               ("kyu-worker --exec cat", ["--exec", "cat"], 100, 1)]
    for name, handler, batch, window in configs:
        q = b.queue()
        b.fill(q, count)
        argv = [b.bin("worker/kyu-worker"), "--broker", b.endpoint, "--queue", q,
                "--batch-size", str(batch)] + handler
        if window:
            argv += ["--batch-window", str(window)]
        secs, left = b.drain_time(q, argv, "worker-%s.log" % q)
        what = "%s, batch %d%s" % (name, batch, ", window %d s" % window if window else "")
        rows.append((what, count, secs, left))
        print_row(rows[-1], worker_log(os.path.join(b.tmp, "worker-%s.log" % q)))


def run_embedded(b, count, rows):
    q = b.queue()
    b.fill(q, count)
    secs, left = b.drain_time(q, [b.bin("client/example_consumer"), b.endpoint, q],
                              "example-%s.log" % q)
    rows.append(("embedded C handler (example_consumer: batch 10, 4 concurrent)", count, secs,
                 left))
    print_row(rows[-1])


def run_push(b, count, repeats, rows):
    bench = b.bin("client/kyu-bench")
    for i in range(repeats):
        for wl, extra in (("w2", []), ("push", ["--credit", "100"]),
                          ("w2", ["--phased"]), ("push", ["--credit", "100", "--phased"])):
            r = subprocess.run([bench, "--broker", b.endpoint, "--workload", wl, "--count",
                                str(count), "--json"] + extra, capture_output=True,
                               timeout=b.limit + 60)
            try:
                res = json.loads(r.stdout)
            except ValueError:
                res = {"ok": False, "error": r.stderr.decode()[-300:]}
            phased = "--phased" in extra
            what = "kyu-bench %s%s%s (run %d)" % (wl, " credit 100" if wl == "push" else "",
                                                 ", phased: consume only" if phased else "", i + 1)
            lat = res.get("latency_us", {})
            rate = res.get("consume_msg_s" if phased else "end_to_end_msg_s")
            rows.append((what, count, rate, lat.get("p50"), lat.get("p99"), res.get("ok"),
                         res.get("error", "")))
            print("%-58s %8s msg/s  p50 %8.0f us  p99 %8.0f us  ok %s %s" % (
                what, "%.0f" % rows[-1][2] if rows[-1][2] else "-", lat.get("p50", 0),
                lat.get("p99", 0), res.get("ok"), res.get("error", "")), flush=True)


def pids_in(path):
    try:
        with open(path) as f:
            return [int(x) for x in f.read().split()]
    except (OSError, ValueError):
        return []


def kill_trial(b, hb, lv, tmp):
    """One kill -9: the seconds from the kill to B's handler holding all 5, or None."""
    q = b.queue(vt=120)
    pidfile = os.path.join(tmp, "pids-%s" % q)
    times = os.path.join(tmp, "times-%s" % q)
    fast = ["--heartbeat", str(hb), "--liveness", str(lv)]
    a_log = open(os.path.join(tmp, "a-%s.log" % q), "ab")
    a = b.spawn([b.bin("worker/kyu-worker"), "--broker", b.endpoint, "--queue", q, "--name", "a",
                 "--batch-size", "5", "--batch-window", "1", "--max-concurrency", "1",
                 "--exec", "echo $$ >> %s; exec sleep 60" % pidfile] + fast,
                stdout=subprocess.DEVNULL, stderr=a_log)
    b.ok("send", q, "--lines", input=b"".join(b"k-%d\n" % i for i in range(5)))
    deadline = time.monotonic() + 30
    while b.counts(q) != (0, 5) or not pids_in(pidfile):
        if time.monotonic() > deadline:
            b.stop(a, signal.SIGKILL)
            return None
        time.sleep(0.02)
    # B waits beside A with credit; A's 5 are leased, so B gets none until A dies.
    b_log = open(os.path.join(tmp, "b-%s.log" % q), "ab")
    w = b.spawn([b.bin("worker/kyu-worker"), "--broker", b.endpoint, "--queue", q, "--name", "b",
                 "--batch-size", "10", "--exec",
                 "t=$(date +%%s.%%N); n=$(grep -o '\"messageId\"' | wc -l); echo \"$t $n\" >> %s"
                 % times] + fast, stdout=subprocess.DEVNULL, stderr=b_log)
    deadline = time.monotonic() + 30
    while "session" not in open(b_log.name).read():
        if time.monotonic() > deadline:
            break
        time.sleep(0.02)
    time.sleep(0.5 + random.uniform(0, hb))  # any phase of A's heartbeats
    killed = time.time()
    a.send_signal(signal.SIGKILL)
    a.wait(timeout=30)
    for pid in pids_in(pidfile):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    got, last = 0, None
    deadline = time.monotonic() + 60
    while got < 5 and time.monotonic() < deadline:
        try:
            with open(times) as f:
                rec = [l.split() for l in f if l.strip()]
            got = sum(int(n) for _, n in rec)
            last = max(float(t) for t, _ in rec) if rec else None
        except OSError:
            pass
        time.sleep(0.02)
    b.stop(w)
    a_log.close()
    b_log.close()
    return last - killed if got >= 5 and last else None


def run_kill(b, trials, tmp, rows):
    for hb, lv in ((1, 3), (0.2, 3)):
        delays = []
        for _ in range(trials):
            d = kill_trial(b, hb, lv, tmp)
            if d is not None:
                delays.append(d)
        what = "kill -9 -> redelivered to B, heartbeat %g s x liveness %d" % (hb, lv)
        rows.append((what, trials, delays))
        if delays:
            print("%-58s median %.2f s  max %.2f s  min %.2f s  (%d of %d trials)" % (
                what, statistics.median(delays), max(delays), min(delays), len(delays), trials),
                flush=True)
        else:
            print("%-58s no trial completed" % what, flush=True)


def worker_log(path):
    """What kyu-worker's log says of its batches: their sizes and durations (median), and the
    highest concurrency it scaled to."""
    with open(path, errors="replace") as f:
        text = f.read()
    sizes, ms = [], []
    for n, d in re.findall(r"batch \d+: (\d+) messages, (\d+) ms", text):
        sizes.append(int(n))
        ms.append(int(d))
    steps = [int(x) for x in re.findall(r"scaling \w+ from \d+ to (\d+)", text)]
    start = [int(x) for x in re.findall(r"concurrency (\d+)", text)[:1]]
    if not ms:
        return ""
    conc = start + steps
    return "%d batches: median %d msgs, %d ms; concurrency %s" % (
        len(ms), statistics.median(sizes), statistics.median(ms),
        "->".join(str(c) for c in conc[:3]) + ("...->%d (max %d)" % (conc[-1], max(conc))
                                              if len(conc) > 3 else ""))


def print_row(row, note=""):
    what, n, secs, left = row
    if secs:
        print("%-58s %8.0f msg/s  (%d messages in %.2f s) %s" % (what, n / secs, n, secs, note),
              flush=True)
    else:
        print("%-58s not empty after the limit: %s left" % (what, left), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--count", type=int, default=50000)
    ap.add_argument("--push-count", type=int, default=50000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--limit", type=float, default=120)
    ap.add_argument("--only", default="exec,embedded,push,kill")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    a = ap.parse_args()
    only = set(a.only.split(","))
    tmp = tempfile.mkdtemp(prefix="kyu-bench-worker-")
    print("# %s UTC, %d cores, load %s, %s" % (
        time.strftime("%Y-%m-%d %H:%M", time.gmtime()), os.cpu_count(),
        " ".join("%.2f" % x for x in os.getloadavg()), os.uname().release), flush=True)
    b = Bench(a.build, tmp, a.limit)
    rows = []
    try:
        if "exec" in only:
            run_exec(b, a.count, rows)
        if "embedded" in only:
            run_embedded(b, a.count, rows)
        if "push" in only:
            run_push(b, a.push_count, a.repeats, rows)
        if "kill" in only:
            run_kill(b, a.trials, tmp, rows)
    finally:
        b.close()
        print("# load after: %s" % " ".join("%.2f" % x for x in os.getloadavg()))
        if a.keep:
            print("# logs in %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
