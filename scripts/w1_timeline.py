#!/usr/bin/env python3
"""W1's time line on one node: where a produce and a consume (receive, delete) spend their
time (docs/BENCHMARKS.md, "Branch profile12").

  scripts/w1_timeline.py run OUT [BUILD (default build)] [COUNT (default 20000)]
      A fresh broker (as scripts/bench_ab.sh starts it) and one `kyu-bench --workload w1
      --count COUNT`, under `perf record -a -k CLOCK_MONOTONIC` of the scheduler's switches
      and wake-ups, fsync/fdatasync and block requests, with uprobes on kyu-bench's
      kyu_client_send_with, kyu_client_receive_with and kyu_client_delete (entry and return:
      each call's start and end, no change to the client). The probes are removed at the end.
      Needs root (perf -a, uprobes).
  scripts/w1_timeline.py show OUT
      The broker's fsyncs per message, their durations and device requests; CPU, switches
      and voluntary switches per message of every broker and kyu-bench thread; each round
      trip's time inside a broker fsync against the rest; then each round trip (produce,
      receive, delete) cut at the wake-ups it crosses (client thread -> its libzmq I/O thread
      -> the broker's I/O thread -> the event loop -> the fsync -> back), p50/p90/p99/mean;
      gaps > 1 ms with no scheduler event while a wake-up was pending.
A boundary that has no wake-up (its thread was already running, or busy with the other
client) takes the next boundary's time: its segment is 0 and the wait shows in the next.
"""
import bisect
import collections
import os
import re
import socket
import subprocess
import sys
import tempfile
import time

GROUP = "kyuw1"
CALLS = (("send", "kyu_client_send_with"), ("recv", "kyu_client_receive_with"),
         ("del", "kyu_client_delete"))


def probes(bench, add):
    if not add:
        subprocess.run(["perf", "probe", "-q", "-d", GROUP + ":*"], capture_output=True)
        return
    args = ["perf", "probe", "-q", "-x", bench]
    for name, fn in CALLS:
        args += ["-a", "%s:%s=%s" % (GROUP, name, fn), "-a", "%s:%s_ret=%s%%return" % (GROUP, name, fn)]
    subprocess.run(args, check=True)


def run(out, build, count):
    os.makedirs(out, exist_ok=True)
    broker = os.path.abspath(os.path.join(build, "broker", "kyu-broker"))
    bench = os.path.abspath(os.path.join(build, "client", "kyu-bench"))
    ev = []
    for e in ("sched:sched_switch", "sched:sched_wakeup", "block:block_rq_issue"):
        ev += ["-e", e]
    for s in ("fdatasync", "fsync"):
        ev += ["-e", "syscalls:sys_enter_" + s, "-e", "syscalls:sys_exit_" + s]
    ev += ["-e", GROUP + ":*"]
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    ep = "tcp://127.0.0.1:%d" % s.getsockname()[1]
    s.close()
    probes(bench, False)
    probes(bench, True)
    with tempfile.TemporaryDirectory(prefix="kyu-w1tl-") as d:
        log = open(os.path.join(out, "broker.log"), "w")
        b = subprocess.Popen([broker, "--data", os.path.join(d, "db"), "--listen", ep],
                             stdout=log, stderr=log)
        perf = None
        try:
            for _ in range(600):
                if subprocess.run([bench, "--broker", ep, "--workload", "send", "--count", "1",
                                   "--timeout", "1"], capture_output=True).returncode == 0:
                    break
                time.sleep(0.05)
            perf = subprocess.Popen(["perf", "record", "-q", "-a", "-k", "CLOCK_MONOTONIC", "-o",
                                     os.path.join(out, "perf.data")] + ev,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1)
            with open(os.path.join(out, "broker.pid"), "w") as f:
                f.write("%d\n" % b.pid)
            r = subprocess.run([bench, "--broker", ep, "--workload", "w1", "--count", str(count)],
                               capture_output=True, text=True, timeout=600)
            load = open("/proc/loadavg").read()
            with open(os.path.join(out, "bench.txt"), "w") as f:
                f.write(r.stdout + r.stderr + "load average " + load)
            print(r.stdout + r.stderr, end="")
        finally:
            if perf:
                perf.send_signal(2)
                perf.wait()
            b.terminate()
            b.wait()
            probes(bench, False)


LINE = re.compile(r"^\s*(.*?)\s+(\d+)/(\d+)\s+\[(\d+)\]\s+(\d+)\.(\d+):\s+(\S+):\s*(.*)$")
SWITCH = re.compile(r"prev_pid=(\d+) prev_prio=\d+ prev_state=(\S+) ==> next_comm=.* next_pid=(\d+)")
WAKE = re.compile(r" pid=(\d+) ")


def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(q * len(v)))] if v else float("nan")


def mean(v):
    return sum(v) / len(v) if v else float("nan")


class Trace:
    def __init__(self, out):
        self.spid = int(open(os.path.join(out, "broker.pid")).read())
        txt = subprocess.run(["perf", "script", "-i", os.path.join(out, "perf.data"), "--ns",
                              "-F", "comm,pid,tid,cpu,time,event,trace"],
                             capture_output=True, text=True).stdout
        self.comm, self.tgid = {}, {}
        self.wake = collections.defaultdict(list)  # target -> [(t, waker)]
        self.swin = collections.defaultdict(list)  # tid -> switch-in times
        self.fsyncs = []  # (enter, exit, tid, device requests it issued)
        self.calls = collections.defaultdict(list)  # tid -> [(call, start, end)]
        self.gaps = []  # (start, end, a CPU was idle)
        sw = []  # (t, cpu, prev, prev_state, next)
        fs_open, call_open, pend, running = {}, {}, {}, {}
        last = None
        for ln in txt.splitlines():
            m = LINE.match(ln)
            if not m:
                continue
            c, pid, tid, cpu, sec, ns, ev, tr = m.groups()
            pid, tid, cpu = int(pid), int(tid), int(cpu)
            t = int(sec) * 1000000000 + int(ns.ljust(9, "0")[:9])
            self.comm[tid], self.tgid[tid] = c, pid
            if last is not None and t - last > 1000000 and pend:
                self.gaps.append((last, t, any(running.get(k, 0) == 0 for k in running)))
            last = t
            if ev == "sched:sched_switch":
                w = SWITCH.search(tr)
                prev, state, nxt = int(w.group(1)), w.group(2), int(w.group(3))
                sw.append((t, cpu, prev, state, nxt))
                running[cpu] = nxt
                self.swin[nxt].append(t)
                pend.pop(nxt, None)
                pend.pop(prev, None)
            elif ev == "sched:sched_wakeup":
                target = int(WAKE.search(tr).group(1))
                self.wake[target].append((t, tid))
                if target not in running.values():
                    pend[target] = t
            elif ev == "block:block_rq_issue":
                if tid in fs_open:
                    fs_open[tid][1] += 1
            elif ev.startswith("syscalls:sys_enter_f"):
                fs_open[tid] = [t, 0]
            elif ev.startswith("syscalls:sys_exit_f"):
                if tid in fs_open:
                    e, n = fs_open.pop(tid)
                    self.fsyncs.append((e, t, tid, n))
            elif ev.startswith(GROUP + ":"):
                name = ev.split(":")[1]
                if name.endswith("__return"):
                    if tid in call_open:
                        call, start = call_open.pop(tid)
                        self.calls[tid].append((call, start, t))
                else:
                    call_open[tid] = (name, t)
        self.sw = sw
        self.fsyncs.sort()
        self.wt = {k: [x[0] for x in v] for k, v in self.wake.items()}

    def first_wake(self, target, after, before, wakers=None):
        ts = self.wt.get(target, [])
        i = bisect.bisect_right(ts, after)
        while i < len(ts) and ts[i] <= before:
            if wakers is None or self.wake[target][i][1] in wakers:
                return ts[i]
            i += 1
        return None

    def first_in(self, tid, after, before):
        ts = self.swin.get(tid, [])
        i = bisect.bisect_right(ts, after)
        return ts[i] if i < len(ts) and ts[i] <= before else None


def show(out):
    tr = Trace(out)
    spid = tr.spid
    producer = next((t for t, c in tr.calls.items() if c and c[0][0] == "send"), None)
    consumer = next((t for t, c in tr.calls.items() if any(x[0] == "recv" for x in c)), None)
    if producer is None or consumer is None:
        print("no kyu-bench calls traced (uprobes)")
        return
    cpid = tr.tgid[producer]
    prod = [(a, b) for call, a, b in tr.calls[producer] if call == "send"]
    cc = tr.calls[consumer]
    # a receive that returned a message is followed by a delete
    recv = [(cc[i][1], cc[i][2]) for i in range(len(cc) - 1) if cc[i][0] == "recv" and cc[i + 1][0] == "del"]
    dele = [(a, b) for call, a, b in cc if call == "del"]
    n = len(prod)
    t0, t1 = prod[0][0], max(prod[-1][1], dele[-1][1] if dele else 0)
    sthreads = {t for t, p in tr.tgid.items() if p == spid}
    cthreads = {t for t, p in tr.tgid.items() if p == cpid}
    sio = {t for t in sthreads if tr.comm[t].startswith("ZMQbg/IO")}
    cio = [t for t in cthreads if tr.comm[t].startswith("ZMQbg/IO")]

    def io_of(tid):  # the libzmq I/O thread a client thread wakes most
        cnt = collections.Counter(t for t in cio for x in tr.wake.get(t, []) if x[1] == tid)
        return cnt.most_common(1)[0][0] if cnt else None

    pio, conio = io_of(producer), io_of(consumer)
    print(open(os.path.join(out, "bench.txt")).read())
    fs = [f for f in tr.fsyncs if f[2] in sthreads and t0 <= f[0] <= t1]
    d = [(f[1] - f[0]) / 1e3 for f in fs]
    print("broker fsyncs: %d, %.2f per message; duration p50 %.0f p90 %.0f p99 %.0f max %.0f us; "
          "device requests issued inside one: %.2f; by thread %s" % (
              len(fs), len(fs) / n, pct(d, .5), pct(d, .9), pct(d, .99), max(d or [0]),
              mean([f[3] for f in fs]),
              dict(collections.Counter("%s/%d" % (tr.comm[f[2]], f[2]) for f in fs))))
    # CPU and switches per thread over [t0, t1]
    oncpu, nsw, nvol, since = collections.Counter(), collections.Counter(), collections.Counter(), {}
    for t, cpu, prev, state, nxt in tr.sw:
        if cpu in since:
            a, b = max(since[cpu], t0), min(t, t1)
            if b > a:
                oncpu[prev] += b - a
        since[cpu] = t
        if t0 <= t <= t1:
            nsw[prev] += 1
            nvol[prev] += state not in ("R", "R+")
    roles = {spid: "event loop", producer: "producer", consumer: "consumer", pio: "producer's I/O",
             conio: "consumer's I/O"}
    print("\n| thread | CPU us/msg | switches/msg | voluntary/msg |\n|---|---|---|---|")
    for t in sorted(sthreads | cthreads, key=lambda t: (tr.tgid[t] != spid, t)):
        if oncpu[t] or nsw[t]:
            print("| %s %s %d %s | %.1f | %.2f | %.2f |" % (
                "broker" if t in sthreads else "kyu-bench", tr.comm[t], t, roles.get(t, ""),
                oncpu[t] / 1e3 / n, nsw[t] / n, nvol[t] / n))
    all_t = sthreads | cthreads
    print("| all | %.1f | %.2f | %.2f |" % (sum(oncpu[t] for t in all_t) / 1e3 / n,
                                           sum(nsw[t] for t in all_t) / n, sum(nvol[t] for t in all_t) / n))

    enters = [f[0] for f in fs]
    exits = sorted(fs, key=lambda f: f[1])
    exit_t = [f[1] for f in exits]

    def in_fsync(a, b):
        i, tot, cur = max(0, bisect.bisect_left(enters, a) - 4), 0, a
        while i < len(fs) and fs[i][0] < b:
            x, y = max(fs[i][0], cur), min(fs[i][1], b)
            if y > x:
                tot, cur = tot + y - x, y
            i += 1
        return tot

    print()
    for name, trips in (("produce", prod), ("receive", recv), ("delete", dele)):
        rt = [(b - a) / 1e3 for a, b in trips]
        ins = [in_fsync(a, b) / 1e3 for a, b in trips]
        print("%-8s round trip p50 %5.0f mean %5.0f us; inside a broker fsync mean %4.0f, the rest "
              "(wake-ups, CPU, waiting) mean %4.0f" % (name, pct(rt, .5), mean(rt), mean(ins),
                                                        mean([r - i for r, i in zip(rt, ins)])))

    def chain(a, b, client, io, durable):
        pts = [("client -> its I/O thread woken", tr.first_wake(io, a, b, {client})),
               ("-> broker I/O thread woken", tr.first_wake(min(sio), a, b, {io}) if sio else None)]
        pts.append(("-> event loop woken", tr.first_wake(spid, pts[-1][1] or a, b, sio)))
        pts.append(("loop woken -> running", tr.first_in(spid, pts[-1][1], b) if pts[-1][1] else None))
        after = a
        if durable:
            i = bisect.bisect_right(exit_t, b) - 1
            if i >= 0 and exit_t[i] >= a:
                f = exits[i]
                pts += [("running -> fsync starts (%s)" % tr.comm[f[2]], f[0]), ("fsync", f[1])]
                after = f[1]
        w1 = tr.first_wake(min(sio), after, b) if sio else None
        w2 = tr.first_wake(io, w1 or after, b, sio)
        w3 = tr.first_wake(client, w2 or after, b, {io})
        pts += [("-> broker I/O thread woken (reply)", w1), ("-> client I/O thread woken", w2),
                ("-> client thread woken", w3),
                ("client woken -> running", tr.first_in(client, w3, b) if w3 else None),
                ("running -> call returns", b)]
        segs, prev = [], a
        vals = [v for _, v in pts]
        for i, (lab, v) in enumerate(pts):
            if v is None or v < prev:
                v = next((x for x in vals[i + 1:] if x is not None and x >= prev), b)
            segs.append((lab, (v - prev) / 1e3, pts[i][1] is not None))
            prev = v
        return segs

    for name, trips, client, io, durable in (("produce: send -> stored", prod, producer, pio, True),
                                             ("receive (answered early)", recv, consumer, conio, False),
                                             ("delete -> deleted (fsynced)", dele, consumer, conio, True)):
        rows = [chain(a, b, client, io, durable) for a, b in trips]
        width = collections.Counter(len(r) for r in rows).most_common(1)[0][0]
        rows = [r for r in rows if len(r) == width]
        print("\n%s, %d round trips\n| segment | p50 us | p90 | p99 | mean | seen |\n|---|---|---|---|---|---|" % (
            name, len(rows)))
        for j in range(width):
            v = [r[j][1] for r in rows]
            lab = collections.Counter(r[j][0] for r in rows).most_common(1)[0][0]
            print("| %s | %.0f | %.0f | %.0f | %.0f | %d%% |" % (
                lab, pct(v, .5), pct(v, .9), pct(v, .99), mean(v), 100 * sum(r[j][2] for r in rows) // len(rows)))
        tot = [sum(s[1] for s in r) for r in rows]
        print("| total | %.0f | %.0f | %.0f | %.0f | |" % (pct(tot, .5), pct(tot, .9), pct(tot, .99), mean(tot)))
    for lab, idle in (("a CPU idle (the VM stalled)", True), ("both CPUs busy", False)):
        g = [(b - a) / 1e6 for a, b, i in tr.gaps if i == idle and t0 <= a <= t1]
        print("\ngaps > 1 ms without a scheduler event while a wake-up was pending, %s: %d, %.1f ms in "
              "all, max %.1f ms" % (lab, len(g), sum(g), max(g or [0])), end="")
    print()


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "run":
        run(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "build",
            int(sys.argv[4]) if len(sys.argv) > 4 else 20000)
    elif len(sys.argv) >= 3 and sys.argv[1] == "show":
        show(sys.argv[2])
    else:
        print(__doc__)
        sys.exit(2)


if __name__ == "__main__":
    main()
