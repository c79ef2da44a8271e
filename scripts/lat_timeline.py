#!/usr/bin/env python3
"""LAT's slow messages against what the broker and the machine did meanwhile
(docs/BENCHMARKS.md, "Branch latp99").

  scripts/lat_timeline.py run OUT [BUILD (default build)] [COUNT (default 5000)] [--sched]
      perf record -a -k CLOCK_MONOTONIC from before a fresh broker starts (as
      scripts/bench_ab.sh starts it) through one `kyu-bench --workload lat --rate 500 --count
      COUNT --latencies OUT/lat.txt`; disk syscalls and block requests always, scheduler
      switches and wake-ups with --sched (needed for thread run times, wake-up delays and the
      loop's own work). Needs root (perf -a).
  scripts/lat_timeline.py show OUT [SLOW_US (default: the slowest 2%)]
      What each burst of slow messages overlapped: the broker loop's fdatasyncs, the other
      broker threads' disk syscalls (the spare maker's zero-fill, RocksDB), the state writer's
      and RocksDB's run time, stretches with no event on any CPU (the VM stopped), wake-ups of
      the broker's or kyu-bench's threads that waited > 0.5 ms for a CPU; then every message
      split in three (send -> its round's fdatasync starts, the fdatasync, its end -> the
      consumer holds it) and the same for the slow ones; the loop's fdatasyncs with another
      broker thread's disk syscall in flight against the rest; the loop's own work from an
      fdatasync's end to its first reply.
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


def run(out, build, count, sched):
    os.makedirs(out, exist_ok=True)
    broker = os.path.join(build, "broker", "kyu-broker")
    bench = os.path.join(build, "client", "kyu-bench")
    ev = []
    for s in ("fdatasync", "fsync", "pwrite64", "pwritev", "write"):
        ev += ["-e", "syscalls:sys_enter_" + s, "-e", "syscalls:sys_exit_" + s]
    ev += ["-e", "block:block_rq_issue", "-e", "block:block_rq_complete"]
    if sched:
        ev += ["-e", "sched:sched_switch", "-e", "sched:sched_wakeup"]
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    ep = "tcp://127.0.0.1:%d" % s.getsockname()[1]
    s.close()
    with tempfile.TemporaryDirectory(prefix="kyu-lat-") as d:
        perf = subprocess.Popen(["perf", "record", "-q", "-a", "-k", "CLOCK_MONOTONIC", "-o",
                                 os.path.join(out, "perf.data")] + ev,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        log = open(os.path.join(out, "broker.log"), "w")
        b = subprocess.Popen([broker, "--data", os.path.join(d, "db"), "--listen", ep],
                             stdout=log, stderr=log)
        try:
            for _ in range(600):
                if subprocess.run([bench, "--broker", ep, "--workload", "send", "--count", "1",
                                   "--timeout", "1"], capture_output=True).returncode == 0:
                    break
                time.sleep(0.05)
            threads = subprocess.run(["ps", "-L", "-o", "tid=,comm=", "-p", str(b.pid)],
                                     capture_output=True, text=True).stdout
            with open(os.path.join(out, "threads.txt"), "w") as f:
                f.write(threads)
            r = subprocess.run([bench, "--broker", ep, "--workload", "lat", "--rate", "500",
                                "--count", str(count), "--latencies",
                                os.path.join(out, "lat.txt")], capture_output=True, text=True)
            with open(os.path.join(out, "bench.txt"), "w") as f:
                f.write(r.stdout + r.stderr)
            print(r.stdout, end="")
        finally:
            time.sleep(0.2)
            perf.send_signal(2)
            perf.wait()
            b.terminate()
            b.wait()


EV = re.compile(r"^\s*(.+?)\s+(\d+)\s+\[(\d+)\]\s+(\d+)\.(\d+):\s+(\S+):\s*(.*)$")


def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(q * len(v)))] if v else 0


def stats(v):
    return "n %6d  p50 %6.0f  p90 %6.0f  p99 %7.0f  max %7.0f us" % (
        len(v), pct(v, .5) / 1e3, pct(v, .9) / 1e3, pct(v, .99) / 1e3, pct(v, 1) / 1e3)


def overlap(iv, a, b):
    return sum(max(0, min(e, b) - max(s, a)) for s, e, *_ in iv if s < b and e > a)


def show(out, slow_us):
    lat = []
    for line in open(os.path.join(out, "lat.txt")):
        if not line.startswith("#"):
            s, t, l = (int(x) for x in line.split())
            lat.append((s, t, l))
    lats = sorted(l for *_, l in lat)
    n = len(lats)
    slow_ns = int(slow_us * 1000) if slow_us else pct(lats, .98)
    tids = {}
    for line in open(os.path.join(out, "threads.txt")):
        f = line.split()
        if f and f[0].isdigit():
            tids[int(f[0])] = f[1]
    loop = min(tids)  # the main thread runs the event loop
    txt = subprocess.run(["perf", "script", "-i", os.path.join(out, "perf.data"), "--ns", "-F",
                          "comm,tid,cpu,time,event,trace"], capture_output=True, text=True).stdout
    pending, calls = {}, collections.defaultdict(list)  # (tid, syscall) -> [(start, end, arg)]
    run_iv, running, woken = collections.defaultdict(list), {}, {}
    waits, times, bench_tids, loop_egress, preempted, t_exit = [], [], set(), [], False, None
    io = [t for t, c in tids.items() if c.startswith("ZMQbg/IO")]
    for line in txt.splitlines():
        m = EV.match(line)
        if not m:
            continue
        comm, tid, cpu, sec, frac, ev, tr = m.groups()
        tid, cpu = int(tid), int(cpu)
        t = int(sec) * 10**9 + int(frac.ljust(9, "0")[:9])
        times.append(t)
        if comm.startswith("kyu-bench"):
            bench_tids.add(tid)
        if ev.startswith("syscalls:sys_enter_"):
            a = re.search(r"count: (0x[0-9a-f]+)", tr)
            pending[(tid, ev[19:])] = (t, int(a.group(1), 16) if a else 0)
        elif ev.startswith("syscalls:sys_exit_"):
            k = (tid, ev[18:])
            if k in pending:
                t0, a = pending.pop(k)
                calls[k].append((t0, t, a))
            if k == (loop, "fdatasync"):
                t_exit, preempted = t, False
        elif ev == "sched:sched_switch":
            prev = int(re.search(r"prev_pid=(\d+)", tr).group(1))
            nxt = int(re.search(r"next_pid=(\d+)", tr).group(1))
            if cpu in running:
                rt, rs = running.pop(cpu)
                run_iv[rt].append((rs, t))
            running[cpu] = (nxt, t)
            if nxt in woken:
                waits.append((woken.pop(nxt), t, nxt))
            if prev == loop and "prev_state=R" in tr:
                preempted = True
        elif ev == "sched:sched_wakeup":
            w = int(re.search(r" pid=(\d+)", tr).group(1))
            woken.setdefault(w, t)
            if tid == loop and w in io and t_exit is not None:
                loop_egress.append((t - t_exit, preempted))
                t_exit = None
    times.sort()
    sched = bool(run_iv)
    t_first, t_last = lat[0][1], max(t + l for _, t, l in lat)
    print("messages %d: p50 %.0f us, p99 %.0f us; slow: > %.0f us" %
          (n, pct(lats, .5) / 1e3, pct(lats, .99) / 1e3, slow_ns / 1e3))
    for (tid, k), v in sorted(calls.items()):
        if tid in tids and k in ("fdatasync", "fsync"):
            inrun = [x for x in v if t_first <= x[0] <= t_last]
            print("%-8s %s %-13s %-9s all %s; in the run %d" %
                  (tid, "loop" if tid == loop else "    ", tids[tid], k,
                   stats([e - s for s, e, _ in v]), len(inrun)))
    bg = sorted((s, e, tid, k) for (tid, k), v in calls.items()
                if tid in tids and tid != loop and k in ("fdatasync", "fsync", "pwrite64")
                for s, e, _ in v)
    for tid in sorted({x[2] for x in bg}):
        v = [x for x in bg if x[2] == tid]
        print("  %s %d disk syscalls: %d, %.1f ms busy, %+.0f to %+.0f ms from the first send" %
              (tids[tid], tid, len(v), sum(e - s for s, e, *_ in v) / 1e6,
               (v[0][0] - t_first) / 1e6, (v[-1][1] - t_first) / 1e6))
    sm = [t for t, c in tids.items() if c == "kyu-sm-writer"]
    rdb = [t for t, c in tids.items() if c.startswith("rocksdb")]
    gaps = [(a, b) for a, b in zip(times, times[1:]) if b - a > 1_000_000 and t_first <= b
            and a <= t_last]
    kyu = set(tids) | bench_tids
    long_waits = [(a, b) for a, b, tid in waits if tid in kyu and b - a > 500_000]
    if sched:
        print("state writer ran %.1f ms, RocksDB threads %.1f ms in the run" %
              (sum(overlap(run_iv[t], t_first, t_last) for t in sm) / 1e6,
               sum(overlap(run_iv[t], t_first, t_last) for t in rdb) / 1e6))
        print("stretches of > 1 ms without an event on any CPU: %d (longest %.1f ms); "
              "broker or kyu-bench wake-ups that waited > 0.5 ms for a CPU: %d" %
              (len(gaps), max([b - a for a, b in gaps] or [0]) / 1e6, len(long_waits)))
    lf = sorted((s, e) for s, e, _ in calls.get((loop, "fdatasync"), []))
    # bursts of slow messages (sequences at most 3 apart)
    bursts = []
    for m_ in (x for x in lat if x[2] > slow_ns):
        if bursts and m_[0] - bursts[-1][-1][0] <= 3:
            bursts[-1].append(m_)
        else:
            bursts.append([m_])
    print("\n%d slow messages in %d bursts" % (sum(len(b) for b in bursts), len(bursts)))
    why = collections.Counter()
    for b in bursts:
        a, e = b[0][1], max(t + l for _, t, l in b)
        fd = [y - x for x, y in lf if y > a and x < e]
        smr = sum(overlap(run_iv[t], a, e) for t in sm) + sum(overlap(run_iv[t], a, e) for t in rdb)
        gap = max([min(y, e) - max(x, a) for x, y in gaps if x < e and y > a] or [0])
        cpu = max([y - x for x, y in long_waits if x < e and y > a] or [0])
        flags = [k for k, on in (("an fdatasync > 1 ms", max(fd or [0]) > 1e6),
                                 ("another broker thread's disk work", overlap(bg, a, e) > 0),
                                 ("the state writer or RocksDB ran > 1 ms", smr > 1e6),
                                 ("no event on any CPU for > 1 ms", gap > 1e6),
                                 ("a wait > 1 ms for a CPU", cpu > 1e6)) if on]
        for k in flags or ["none of these"]:
            why[k] += len(b)
        line = "seq %d-%d (%d) at %+.0f ms, max %.0f us | loop fdatasyncs %d, longest %.0f us; " \
               "other broker disk syscalls %.0f us" % (
                   b[0][0], b[-1][0], len(b), (a - t_first) / 1e6, max(x[2] for x in b) / 1e3,
                   len(fd), max(fd or [0]) / 1e3, overlap(bg, a, e) / 1e3)
        if sched:
            line += "; state writer ran %.0f us, RocksDB %.0f us; no event for %.0f us; " \
                    "longest wait for a CPU %.0f us" % (
                        sum(overlap(run_iv[t], a, e) for t in sm) / 1e3,
                        sum(overlap(run_iv[t], a, e) for t in rdb) / 1e3,
                        max([min(y, e) - max(x, a) for x, y in gaps if x < e and y > a] or [0]) / 1e3,
                        max([y - x for x, y in long_waits if x < e and y > a] or [0]) / 1e3)
        print(line)
    print("slow messages whose burst overlapped (one may count under several):")
    for k, v in why.most_common():
        print("  %-40s %d" % (k, v))
    # each message in three: its round is the last loop fdatasync that starts after the send
    # and ends before the consumer has the message
    starts = [s for s, _ in lf]
    seg = []
    for s_, t, l in lat:
        i, best = bisect.bisect_left(starts, t), None
        while i < len(lf) and lf[i][0] < t + l:
            if lf[i][1] <= t + l:
                best = lf[i]
            i += 1
        if best:
            seg.append((l, best[0] - t, best[1] - best[0], t + l - best[1]))
    names = ("send -> fdatasync starts", "the fdatasync", "its end -> consumer has it")
    print("\nmessages split at their round's fdatasync (%d of %d):" % (len(seg), n))
    for k in (1, 2, 3):
        print("  %-28s %s" % (names[k - 1], stats([x[k] for x in seg])))
    sl = [x for x in seg if x[0] > slow_ns]
    if sl:
        med = [pct([x[k] for x in seg], .5) for k in range(4)]
        most = collections.Counter(max((x[k] - med[k], k) for k in (1, 2, 3))[1] for x in sl)
        print("the slow ones (%d):" % len(sl))
        for k in (1, 2, 3):
            print("  %-28s %s; the largest excess over the median in %d" %
                  (names[k - 1], stats([x[k] for x in sl]), most[k]))
    during = [y - x for x, y in lf if any(bs < y and be > x for bs, be, *_ in bg)]
    other = [y - x for x, y in lf if not any(bs < y and be > x for bs, be, *_ in bg)]
    print("\nloop fdatasync with another broker thread's disk syscall in flight: " + stats(during))
    print("loop fdatasync otherwise:                                            " + stats(other))
    if loop_egress:
        print("loop's own work, fdatasync end -> its first reply (not preempted): " +
              stats([d for d, p in loop_egress if not p]))


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "run":
        args = [a for a in sys.argv[2:] if a != "--sched"]
        run(args[0], args[1] if len(args) > 1 else "build",
            int(args[2]) if len(args) > 2 else 5000, "--sched" in sys.argv)
    elif len(sys.argv) >= 3 and sys.argv[1] == "show":
        show(sys.argv[2], float(sys.argv[3]) if len(sys.argv) > 3 else None)
    else:
        print(__doc__)
        sys.exit(2)


if __name__ == "__main__":
    main()
