#!/usr/bin/env python3
"""kyu's chaos harness (issue 16, items 3 and 4): a cluster of kyu-broker processes, each in a
Linux network namespace of its own joined by a bridge in another, with producers, consumers
and kyu-worker processes in a client namespace, and faults injected on a schedule drawn from
a seeded RNG: kill -9 (a random node, the leader) and restart, SIGSTOP/SIGCONT (the leader, a
worker), partitions (halves, the leader isolated, a one-way cut, a bridge node; iptables rules
inside the namespaces), clock skew at a restart and clock jumps of a running node
(libfaketime), slow fsyncs (slow_fsync.c), a full disk (each data dir on a small loop-mounted
file system, filled by a filler file), and some of them overlapping (--overlap). The workload
includes a FIFO queue with message groups and deduplication ids. After healing and draining
it checks the history in the manner of Jepsen's queue checker (docs/CHAOS.md says what).
With --docker the brokers are containers of the kyu image (built here by
scripts/docker_image.sh, never pulled) on a docker network of the run's, the clients on the
host, with the same workload, faults and checks.

    tests/chaos/chaos.py                                     # 3 nodes, 30 faults
    tests/chaos/chaos.py --nodes 5 --faults 1000 --pace 0.5  # the long run
    tests/chaos/chaos.py --seed 1234                         # replays the faults of seed 1234
    tests/chaos/chaos.py --docker --seed 1234                # the same on containers

Needs root (network namespaces, mounts). Exit 0: no violation; 1: violations (listed); 77:
not root, or no namespace can be made, or (--docker) no docker (ctest reports it as
skipped). Every wait is bounded; processes are stopped by their PID only; the namespaces,
veths, bridge, mounts, containers, docker network and image are created by this run and
undone at its end (also on SIGTERM, ^C and its time limit)."""
import argparse
import bisect
import collections
import ctypes
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from harness import sanitizer_report  # noqa: E402
from worker_harness import write_handler  # noqa: E402

BIN_DIR = os.environ.get("KYU_BIN_DIR", os.path.join(HERE, "../../build"))
BROKER = os.path.join(BIN_DIR, "broker", "kyu-broker")
CLI = os.path.join(BIN_DIR, "client", "kyu")
WORKER = os.path.join(BIN_DIR, "worker", "kyu-worker")
FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"  # Debian: faketime
SLOW_FSYNC_LIB = os.path.join(BIN_DIR, "tests", "chaos", "libkyu_slow_fsync.so")  # slow_fsync.c

SUBNET = "10.77.0"
CLIENT_IP = SUBNET + ".2"
ORDERS_VT = 20      # s; a lease on orders
LEASE_MARGIN = 6    # s; the cluster's time may run ahead by up to --max-clock-skew-ms (5 s)
JOBS_VT = 10
POISON_MRC = 2      # poison's maxReceiveCount
FIFO_Q = "seq.fifo"  # the FIFO queue (content-based deduplication)
FIFO_VT = 10        # s; a lease on seq.fifo (a group waits for it when a batch is abandoned)
FIFO_GROUPS = 4
DISK_MIB = 1024     # the full_disk fault: each node's data dir on a file system this big
DISK_TMPFS_MIB = 256  # ... or on a tmpfs this big where no loop device can be mounted
DISK_FREE_MIN = 24 << 20  # every node's --disk-free-min when full_disk is among the kinds

KINDS = ("kill9_random", "kill9_leader", "stop_leader", "stop_worker", "part_halves",
         "part_leader", "part_oneway", "part_bridge", "skew", "clock_jump", "slow_disk",
         "full_disk")


def now():
    return time.monotonic()


CHECKS = (("lost", ("acknowledged message", "acknowledged messages lost")),
          ("fan-out", ("publishes missing",)),
          ("dead letter", ("poison-dlq:", "maxReceiveCount")),
          ("unexpected", ("unexpected",)),
          ("duplicate", ("stored", "acknowledged as")),
          ("lease", ("delivered again", "same receipt", "same receive count")),
          ("fifo order", ("out of order", "in flight", "group ")),
          ("deduplication", ("duplicate send",)),
          ("read-only", ("read-only", "READ-ONLY", "writable")),
          ("deleted back", ("came back",)),
          ("stale receipt", ("receipt",)),
          ("convergence", ("converge", "differ", "leadership could not")),
          ("leader", ("serving leader",)),
          ("crash", ("exited", "sanitizer", "SIGTERM", "did not drain within 60")))


def check_of(text):
    """Which check a violation's text belongs to, for the summary."""
    return next((name for name, marks in CHECKS if any(m in text for m in marks)), "other")


class Log:
    def __init__(self):
        self.t0 = now()
        self.lock = threading.Lock()

    def __call__(self, fmt, *args):
        with self.lock:
            print("[%7.2f] %s" % (now() - self.t0, fmt % args if args else fmt), flush=True)


log = Log()


_LIBC = ctypes.CDLL(None, use_errno=True)


def die_with_parent():
    """In a child before exec: SIGKILL when the harness dies (so that a run killed by its
    time limit leaves no broker or worker behind); PR_SET_PDEATHSIG is kept across exec."""
    _LIBC.prctl(1, signal.SIGKILL, 0, 0, 0)


def run(*cmd, check=True, timeout=30):
    r = subprocess.run(list(cmd), capture_output=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(cmd), r.returncode, r.stderr.decode()))
    return r


# ---------------------------------------------------------------------------------------------
# The schedule: drawn up front from the seed, so that --seed N replays the same faults (kind,
# target choice, duration, pause). "The leader" is whichever node leads when the fault starts.

def draw_fault(rng, kind, n_nodes):
    """One fault of kind: its target choice, how long it lasts and the pause after it."""
    f = {"kind": kind, "duration": round(rng.uniform(1.0, 6.0), 1),
         "pause": round(rng.uniform(0.5, 2.5), 1)}
    ids = list(range(1, n_nodes + 1))
    if kind == "kill9_random":
        f["node"] = rng.choice(ids)
    elif kind == "stop_worker":
        f["worker"] = rng.randrange(2)
    elif kind == "part_halves":
        rng.shuffle(ids)
        k = n_nodes // 2
        f["sides"] = [sorted(ids[:k]), sorted(ids[k:])]
    elif kind == "part_oneway":
        a, b = rng.sample(ids, 2)
        f["from"], f["to"] = a, b  # packets from a never reach b
    elif kind == "part_bridge":
        rng.shuffle(ids)
        bridge, rest = ids[0], ids[1:]
        k = len(rest) // 2
        f["bridge"], f["sides"] = bridge, [sorted(rest[:k]), sorted(rest[k:])]
    elif kind == "skew":
        f["node"] = rng.choice(ids)
        f["skew"] = rng.choice([-1, 1]) * rng.choice([2, 4, 30, 300])
        f["duration"] = round(rng.uniform(4.0, 10.0), 1)
    elif kind == "slow_disk":
        f["node"] = rng.choice(ids)
        f["fsync_ms"] = rng.choice([20, 100, 500, 2000])
    elif kind == "clock_jump":
        f["target"] = rng.choice(["leader"] + ids)
        f["jump"] = rng.choice([-1, 1]) * rng.choice([2, 4, 30, 300])
    elif kind == "full_disk":
        f["node"] = rng.choice(ids)
        # "min": DISK_FREE_MIN / 2 left free (the broker's check turns it read-only);
        # "zero": filled up to ENOSPC (a write may fail before the check sees it)
        f["fill"] = rng.choice(["min", "zero"])
        f["duration"] = round(rng.uniform(4.0, 8.0), 1)
    return f


def make_schedule(seed, n_faults, n_nodes, kinds, pace=1.0, overlap=0.0):
    """pace scales every duration and pause (the long run's 0.5 halves them); overlap is the
    share of faults that come with a second one ("with"), injected "after" seconds into the
    first and healed with it (the second healed first)."""
    rng = random.Random(seed)
    out = []
    for i in range(n_faults):
        f = draw_fault(rng, rng.choice(kinds), n_nodes)
        f["i"] = i
        if overlap and rng.random() < overlap:
            g = draw_fault(rng, rng.choice(kinds), n_nodes)
            g["after"] = round(rng.uniform(0.1, 0.6) * f["duration"], 1)
            f["with"] = g
        for x in [f] + ([f["with"]] if "with" in f else []):
            for k in ("duration", "pause", "after"):
                if k in x:
                    x[k] = round(x[k] * pace, 1)
        out.append(f)
    return out


def describe(f):
    extra = {k: v for k, v in f.items() if k not in ("i", "kind", "duration", "pause", "with")}
    text = "#%d %s %s for %.1f s, then %.1f s" % (f["i"], f["kind"],
                                                  json.dumps(extra, sort_keys=True) if extra else "",
                                                  f["duration"], f["pause"])
    if "with" in f:
        g = f["with"]
        extra = {k: v for k, v in g.items() if k not in ("kind", "duration", "pause", "after")}
        text += "; with %s %s from %.1f s on" % (g["kind"], json.dumps(extra, sort_keys=True)
                                                 if extra else "", g["after"])
    return text


# ---------------------------------------------------------------------------------------------
# Network: a switch namespace with a bridge; each node and the clients in a namespace of their
# own with one veth to the bridge. Nothing is created in the root namespace.

class Net:
    def __init__(self, n_nodes):
        self.prefix = "kyuc%d" % os.getpid()
        self.switch = self.prefix + "s"
        self.client = self.prefix + "c"
        self.nodes = {i: "%sn%d" % (self.prefix, i) for i in range(1, n_nodes + 1)}
        self.made = []

    @staticmethod
    def ip_of(i):
        return "%s.%d" % (SUBNET, 10 + i)

    def up(self):
        run("ip", "netns", "add", self.switch)
        self.made.append(self.switch)
        sw = ["ip", "netns", "exec", self.switch]
        run(*sw, "ip", "link", "add", "br0", "type", "bridge")
        run(*sw, "ip", "link", "set", "br0", "up")
        run(*sw, "ip", "link", "set", "lo", "up")
        for name, ns, addr in [("vc", self.client, CLIENT_IP)] + \
                [("vn%d" % i, ns, self.ip_of(i)) for i, ns in self.nodes.items()]:
            run("ip", "netns", "add", ns)
            self.made.append(ns)
            run(*sw, "ip", "link", "add", name, "type", "veth", "peer", "name", "eth0", "netns", ns)
            run(*sw, "ip", "link", "set", name, "master", "br0")
            run(*sw, "ip", "link", "set", name, "up")
            ex = ["ip", "netns", "exec", ns]
            run(*ex, "ip", "addr", "add", addr + "/24", "dev", "eth0")
            run(*ex, "ip", "link", "set", "eth0", "up")
            run(*ex, "ip", "link", "set", "lo", "up")

    def exec_prefix(self, ns):
        return ["ip", "netns", "exec", ns]

    def drop(self, at, src):
        """Node at drops every packet from node src."""
        run(*self.exec_prefix(self.nodes[at]), "iptables", "-A", "INPUT", "-s", self.ip_of(src),
            "-j", "DROP")

    def cut(self, a, b):
        self.drop(a, b)
        self.drop(b, a)

    def heal(self):
        for ns in self.nodes.values():
            run(*self.exec_prefix(ns), "iptables", "-F", "INPUT")

    def down(self):
        for ns in reversed(self.made):
            run("ip", "netns", "del", ns, check=False)
        self.made = []

    @staticmethod
    def remove_stale():
        """Namespaces a run of this harness left behind when it was killed (its pid is gone)."""
        r = run("ip", "netns", "list", check=False)
        for line in r.stdout.decode().splitlines():
            m = re.match(r"kyuc(\d+)[scn]\d*$", line.split()[0] if line.split() else "")
            if m and not os.path.exists("/proc/%s" % m.group(1)):
                name = m.group(0)
                run("ip", "netns", "del", name, check=False)


# ---------------------------------------------------------------------------------------------
# --docker: the brokers as containers of the kyu image (scripts/docker_image.sh, built here:
# never pulled) on a docker network of this run's; the clients and workers on the host, which
# reaches the containers through the network's bridge.

DOCKER_LIB = "/chaos-lib"  # where the fault libraries are bind-mounted in a node's container
DOCKER_RUN = "/chaos"      # where the run's dir (clock and slow-fsync files) is, read-only


def docker(*args, check=True, timeout=60):
    return run("docker", *args, check=check, timeout=timeout)


class DockerNet:
    """A docker bridge network of this run's (kyuc<PID>net, a /24 of 10.78 no other docker
    network uses), each node a container on it at a fixed address (kyuc<PID>n1...). Partitions
    are iptables rules in a node's container's network namespace (nsenter -t PID -n); a
    container started anew (kill -9, skew) gets the rules of a partition still on."""

    def __init__(self, n_nodes):
        self.prefix = "kyuc%d" % os.getpid()
        self.name = self.prefix + "net"
        self.client = None  # the clients run on the host
        self.nodes = {i: "%sn%d" % (self.prefix, i) for i in range(1, n_nodes + 1)}
        self.rules = set()  # (at, src): node at drops what comes from node src
        self.made = False
        self.c = None       # the Cluster, for the nodes' containers
        used = set()
        ids = docker("network", "ls", "-q", check=False).stdout.decode().split()
        if ids:
            r = docker("network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}} {{end}}",
                       *ids, check=False)
            used = set(r.stdout.decode().split())
        k = next(k for k in [(os.getpid() + j) % 250 + 1 for j in range(250)]
                 if "10.78.%d.0/24" % k not in used)
        self.subnet = "10.78.%d" % k

    def ip_of(self, i):
        return "%s.%d" % (self.subnet, 10 + i)

    def up(self):
        docker("network", "create", "--driver", "bridge", "--subnet", self.subnet + ".0/24",
               "--label", "kyu-chaos=%d" % os.getpid(), self.name)
        self.made = True

    def exec_prefix(self, ns):
        return []

    def apply(self, at, src):
        pid = self.c.nodes[at].pid()
        if pid:  # a node not running gets the rule when it starts
            run("nsenter", "-t", str(pid), "-n", "iptables", "-A", "INPUT", "-s",
                self.ip_of(src), "-j", "DROP")

    def reapply(self, at):
        for (a, src) in sorted(self.rules):
            if a == at:
                self.apply(a, src)

    def drop(self, at, src):
        self.rules.add((at, src))
        self.apply(at, src)

    def cut(self, a, b):
        self.drop(a, b)
        self.drop(b, a)

    def heal(self):
        self.rules.clear()
        for n in self.c.nodes.values():
            pid = n.pid()
            if pid:
                run("nsenter", "-t", str(pid), "-n", "iptables", "-F", "INPUT", check=False)

    def down(self):
        for name in self.nodes.values():
            docker("rm", "-f", "-v", name, check=False)
        if self.made:
            docker("network", "rm", self.name, check=False)
            self.made = False

    @staticmethod
    def remove_stale():
        """Containers and networks a run of this harness left behind when it was killed."""
        r = docker("ps", "-a", "--filter", "label=kyu-chaos", "--format",
                   "{{.Names}}", check=False)
        n = docker("network", "ls", "--filter", "label=kyu-chaos", "--format", "{{.Name}}",
                   check=False)
        for what, out in (("container", r), ("network", n)):
            for name in out.stdout.decode().split():
                m = re.match(r"kyuc(\d+)", name)
                if m and not os.path.exists("/proc/%s" % m.group(1)):
                    docker(what, "rm", "-f", name, check=False) if what == "container" else \
                        docker("network", "rm", name, check=False)
        # the images such a run built (docker_image)
        t = docker("images", "kyu", "--format", "{{.Tag}}", check=False)
        for tag in t.stdout.decode().split():
            m = re.match(r"chaos(\d+)$", tag)
            if m and not os.path.exists("/proc/%s" % m.group(1)):
                docker("rmi", "-f", "kyu:" + tag, check=False)


class DockerProc:
    """A node's container, with the part of Popen's interface Node uses: SIGKILL, SIGTERM are
    `docker kill -s`, SIGSTOP and SIGCONT `docker pause` and `unpause` (the cgroup freezer)."""

    def __init__(self, name):
        self.name = name
        self.returncode = None
        self.paused = False

    def poll(self):
        if self.returncode is None:
            r = docker("inspect", "-f", "{{.State.Running}} {{.State.ExitCode}}", self.name,
                       check=False)
            out = r.stdout.decode().split()
            if r.returncode != 0 or len(out) != 2:
                self.returncode = -1  # gone
            elif out[0] != "true":
                self.returncode = int(out[1])
        return self.returncode

    def pid(self):
        r = docker("inspect", "-f", "{{.State.Pid}}", self.name, check=False)
        try:
            return int(r.stdout.decode().strip()) or None
        except ValueError:
            return None

    def send_signal(self, s):
        if s == signal.SIGSTOP:
            if not self.paused:
                docker("pause", self.name, check=False)
                self.paused = True
        elif s == signal.SIGCONT:
            if self.paused:
                docker("unpause", self.name, check=False)
                self.paused = False
        else:
            if self.paused and s == signal.SIGKILL:
                docker("unpause", self.name, check=False)  # a frozen task dies once thawed
                self.paused = False
            docker("kill", "-s", signal.Signals(s).name[3:], self.name, check=False)

    def kill(self):
        self.send_signal(signal.SIGKILL)

    def wait(self, timeout=None):
        if self.poll() is not None:
            return self.returncode
        try:
            r = run("docker", "wait", self.name, check=False, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise subprocess.TimeoutExpired(["docker", "wait", self.name], timeout)
        try:
            self.returncode = int(r.stdout.decode().strip())
        except ValueError:
            self.returncode = -1
        return self.returncode


def docker_image(tag):
    """The image the nodes run: tag as it is when given (--image), else kyu:chaos<PID> built
    from KYU_BIN_DIR by scripts/docker_image.sh (from an empty root: no registry), removed at
    the end of the run. None: none."""
    if tag:
        return tag if docker("image", "inspect", tag, check=False).returncode == 0 else None
    tag = "kyu:chaos%d" % os.getpid()
    log("building the image %s from %s (scripts/docker_image.sh)", tag, BIN_DIR)
    r = subprocess.run([os.path.join(HERE, "..", "..", "scripts", "docker_image.sh"),
                        os.path.abspath(BIN_DIR)],
                       env=dict(os.environ, KYU_IMAGE=tag, KYU_BASE="scratch"),
                       capture_output=True, timeout=600)
    if r.returncode != 0:
        log("scripts/docker_image.sh failed: %s", r.stderr.decode().strip()[-2000:])
        return None
    return tag


def docker_probe_libs(image):
    """Whether the fault libraries (libfaketime, slow_fsync.c's) load in a container of image:
    bind-mounted from this machine, they need the image's C library to be this machine's (so
    with the default image from an empty root). A container that prints its clock 300 s ahead
    with both preloaded, and no loader error."""
    if not os.path.exists(FAKETIME_LIB) or not os.path.exists(SLOW_FSYNC_LIB):
        return False
    r = docker("run", "--rm", "--pull", "never", "--network", "none",
               "-v", "%s:%s/libfaketimeMT.so.1:ro" % (FAKETIME_LIB, DOCKER_LIB),
               "-v", "%s:%s/libkyu_slow_fsync.so:ro" % (SLOW_FSYNC_LIB, DOCKER_LIB),
               "-e", "LD_PRELOAD=%s/libkyu_slow_fsync.so %s/libfaketimeMT.so.1" % (DOCKER_LIB, DOCKER_LIB),
               "-e", "FAKETIME=+300s", "--entrypoint", "python3", image, "-c",
               "import time; print(int(time.time()))", check=False, timeout=120)
    try:
        ahead = int(r.stdout.decode().split()[-1]) - time.time()
    except (ValueError, IndexError):
        return False
    return r.returncode == 0 and 250 < ahead < 350 and b"LD_PRELOAD" not in r.stderr


# ---------------------------------------------------------------------------------------------

class Node:
    def __init__(self, i, cluster):
        self.id, self.c = i, cluster
        self.ip = cluster.net.ip_of(i)
        self.endpoint = "tcp://%s:7700" % self.ip
        self.log_path = os.path.join(cluster.dir, "broker-%d.log" % i)
        self.log = open(self.log_path, "ab")
        self.proc = None
        self.stopped = False  # SIGSTOPped by us
        self.skew = 0
        self.slow_file = os.path.join(cluster.dir, "slow-fsync-%d" % i)
        self.clock_file = os.path.join(cluster.dir, "clock-%d" % i)
        self.jumped = False
        self.exits = []       # (returncode, expected)
        # full_disk: the data dir on a small file system of its own (mounted on disk_dir by
        # Cluster.mount_disks), filled by a filler file
        self.disk_dir = os.path.join(cluster.dir, "disk-%d" % i)
        self.data_dir = os.path.join(self.disk_dir, "db") if cluster.full_disk else \
            os.path.join(cluster.dir, "db-%d" % i)
        self.filler = os.path.join(self.disk_dir, "filler")

    def start(self, skew=0):
        if self.alive():  # two faults on one node: the first heal restarted it already
            return
        self.skew = skew
        preload = [SLOW_FSYNC_LIB] if self.c.slow_disk else []
        env = dict(os.environ, KYU_SLOW_FSYNC_FILE=self.slow_file)
        if self.c.clock_jumps:
            # Every node under libfaketime, its offset in a file it rereads every second:
            # clock_jump changes it while the node runs.
            self.set_clock(skew)
            preload.append(FAKETIME_LIB)
            env.update(FAKETIME_TIMESTAMP_FILE=self.clock_file, FAKETIME_CACHE_DURATION="1",
                       FAKETIME_DONT_FAKE_MONOTONIC="1")
        elif skew:
            preload.append(FAKETIME_LIB)
            env.update(FAKETIME="%+ds" % skew, FAKETIME_DONT_FAKE_MONOTONIC="1")
        if preload:
            # A sanitizer build wants its runtime first among the libraries; here it is not.
            env.update(LD_PRELOAD=" ".join(preload),
                       ASAN_OPTIONS=":".join(o for o in (os.environ.get("ASAN_OPTIONS"),
                                                         "verify_asan_link_order=0") if o))
        if self.c.docker:
            return self.start_container(skew, preload, env)
        self.log.write(("=== start (skew %+d s) ===\n" % skew).encode())
        self.log.flush()
        self.proc = subprocess.Popen(
            self.c.net.exec_prefix(self.c.net.nodes[self.id]) +
            [self.c.args.broker, "--node-id", str(self.id), "--data", self.data_dir]
            + (["--disk-free-min", str(DISK_FREE_MIN)] if self.c.full_disk else [])
            + self.c.peer_args, stdout=self.log, stderr=self.log, env=env, preexec_fn=die_with_parent)
        self.stopped = False

    def start_container(self, skew, preload, env):
        """--docker: a new container (the last one's log kept, the container removed) on the
        node's data dir, bind-mounted at /data; the fault libraries and the run's dir (the
        clock and slow-fsync files) bind-mounted read-only."""
        self.retire()
        name = self.c.net.nodes[self.id]
        os.makedirs(self.data_dir, exist_ok=True)
        self.log.write(("=== start (skew %+d s): container %s ===\n" % (skew, name)).encode())
        self.log.flush()
        cmd = ["run", "-d", "--pull", "never", "--name", name,
               "--label", "kyu-chaos=%d" % os.getpid(), "--network", self.c.net.name,
               "--ip", self.ip, "--hostname", "kyu%d" % self.id,
               "-v", "%s:/data" % self.data_dir, "-v", "%s:%s:ro" % (self.c.dir, DOCKER_RUN)]
        libs = {SLOW_FSYNC_LIB: "libkyu_slow_fsync.so", FAKETIME_LIB: "libfaketimeMT.so.1"}
        inner = []
        for lib in preload:
            cmd += ["-v", "%s:%s/%s:ro" % (lib, DOCKER_LIB, libs[lib])]
            inner.append("%s/%s" % (DOCKER_LIB, libs[lib]))
        # the container's environment: only what the fault libraries read, with the paths
        # the container sees
        for k in ("FAKETIME", "FAKETIME_CACHE_DURATION", "FAKETIME_DONT_FAKE_MONOTONIC",
                  "ASAN_OPTIONS", "UBSAN_OPTIONS"):
            if k in env:
                cmd += ["-e", "%s=%s" % (k, env[k])]
        cmd += ["-e", "KYU_SLOW_FSYNC_FILE=%s/%s" % (DOCKER_RUN, os.path.basename(self.slow_file))]
        if "FAKETIME_TIMESTAMP_FILE" in env:
            cmd += ["-e", "FAKETIME_TIMESTAMP_FILE=%s/%s"
                    % (DOCKER_RUN, os.path.basename(self.clock_file))]
        if inner:
            cmd += ["-e", "LD_PRELOAD=" + " ".join(inner)]
        cmd += ["--entrypoint", "/usr/local/bin/kyu-broker", self.c.image,
                "--node-id", str(self.id), "--data", "/data"]
        cmd += (["--disk-free-min", str(DISK_FREE_MIN)] if self.c.full_disk else [])
        cmd += self.c.peer_args
        docker(*cmd, timeout=120)
        self.proc = DockerProc(name)
        self.stopped = False
        self.c.net.reapply(self.id)  # a partition still on

    def retire(self):
        """--docker: the last container's log appended to the node's log, the container
        removed."""
        name = self.c.net.nodes[self.id] if self.c.docker else None
        if not name or docker("inspect", name, check=False).returncode != 0:
            return
        r = docker("logs", name, check=False, timeout=120)
        self.log.write(r.stdout + r.stderr)
        self.log.flush()
        docker("rm", "-f", "-v", name, check=False)

    def log_text(self):
        """The node's log so far (with --docker, the running container's too)."""
        self.log.flush()
        with open(self.log_path, "rb") as f:
            text = f.read()
        if self.c.docker and self.proc is not None:
            r = docker("logs", self.proc.name, check=False, timeout=120)
            text += r.stdout + r.stderr
        return text

    def pid(self):
        """--docker: the container's PID on the host, None when it is not running."""
        return self.proc.pid() if self.proc is not None and self.proc.poll() is None else None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def set_clock(self, offset):
        with open(self.clock_file + ".tmp", "w") as f:
            f.write("%+ds\n" % offset)
        os.replace(self.clock_file + ".tmp", self.clock_file)

    def slow_fsync(self, ms):
        with open(self.slow_file + ".tmp", "w") as f:
            f.write("%d\n" % ms)
        os.replace(self.slow_file + ".tmp", self.slow_file)

    def fill(self, mode):
        """Fills the node's file system: to DISK_FREE_MIN / 2 free ("min") or to ENOSPC
        ("zero"). fallocate, so that it takes no time and the image file stays sparse."""
        def free():
            st = os.statvfs(self.disk_dir)
            return st.f_bavail * st.f_frsize
        leave = DISK_FREE_MIN // 2 if mode == "min" else 0
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            chunk = max(free() - leave, 0)
            while chunk >= 4096:
                try:
                    os.posix_fallocate(fd, os.fstat(fd).st_size, chunk)
                    chunk = max(free() - leave, 0)
                except OSError:  # ENOSPC: the file system's own blocks; a smaller piece
                    chunk //= 2
        finally:
            os.close(fd)
        return free()

    def unfill(self):
        try:
            os.unlink(self.filler)
        except FileNotFoundError:
            pass

    def check_exit(self):
        """An exit we did not cause: recorded (a crash)."""
        if self.proc is not None and self.proc.poll() is not None:
            self.exits.append(self.proc.returncode)
            self.c.violation("node %d exited by itself with status %s" % (self.id, self.proc.returncode))
            self.proc = None

    def kill9(self):
        self.check_exit()
        if self.proc:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)
            self.proc = None

    def sig(self, s):
        if self.alive():
            self.proc.send_signal(s)
            self.stopped = s == signal.SIGSTOP

    def stop(self):
        if self.alive():
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)


class Worker:
    def __init__(self, k, cluster):
        self.k, self.c = k, cluster
        self.log_path = os.path.join(cluster.dir, "worker-%d.log" % k)
        self.log = open(self.log_path, "ab")
        self.proc = None
        self.stopped = False

    def start(self):
        env = dict(os.environ, KYU_TEST_OUT=self.c.jobs_out, KYU_TEST_SLOW="0.05")
        self.proc = subprocess.Popen(
            self.c.net.exec_prefix(self.c.net.client) +
            [WORKER, "--broker", self.c.endpoints, "--queue", "jobs", "--name", "w%d" % self.k,
             "--exec", self.c.handler, "--batch-size", "5", "--max-concurrency", "2",
             "--heartbeat", "0.5", "--liveness", "4", "--backoff-base", "1", "--backoff-max", "2"],
            stdout=self.log, stderr=self.log, env=env, preexec_fn=die_with_parent)

    def check_exit(self):
        if self.proc is not None and self.proc.poll() is not None:
            self.c.violation("worker %d exited with status %s (see %s)"
                             % (self.k, self.proc.returncode, self.log_path))
            self.start()

    def sig(self, s):
        if self.proc.poll() is None:
            self.proc.send_signal(s)
            self.stopped = s == signal.SIGSTOP

    def drain_stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.c.violation("worker %d did not drain within 60 s of SIGTERM" % self.k)
                self.proc.kill()
                self.proc.wait(timeout=30)
        elif self.proc.returncode != 0:
            self.c.violation("worker %d exited with status %s" % (self.k, self.proc.returncode))


# ---------------------------------------------------------------------------------------------
# The history: every operation the clients did, with monotonic start and end times.

class History:
    def __init__(self):
        self.lock = threading.Lock()
        self.sends = collections.defaultdict(dict)   # queue -> body -> id (acked)
        self.unsure = collections.defaultdict(set)   # queue -> bodies sent, outcome unknown
        self.published = {}                          # body -> id (acked publishes)
        self.publish_unsure = set()
        self.deliveries = collections.defaultdict(list)  # queue -> [(start, end, msg)]
        self.deletes = []       # (start, end, queue, id, receipt, outcome: ok|stale|invalid|unsure)
        self.ops = collections.Counter()
        # FIFO_Q: each group's bodies in the order they were sent (acknowledged or unsure;
        # one producer per group, each send after the previous one's CLI exited)
        self.fifo_order = collections.defaultdict(list)
        # deliberate duplicate sends: (body, the id and SequenceNumber they were acknowledged
        # with, the original's (id, SequenceNumber) or None when unknown)
        self.fifo_dups = []
        self.fifo_seq = {}   # body -> SequenceNumber acknowledged

    def count(self, what):
        with self.lock:
            self.ops[what] += 1


class Cluster:
    def __init__(self, args):
        self.args = args
        # --docker: the kinds no container can have (the fault libraries do not load in it)
        self.unsupported = getattr(args, "unsupported", set())
        self.slow_disk = "slow_disk" in args.kinds.split(",") and "slow_disk" not in self.unsupported
        self.clock_jumps = "clock_jump" in args.kinds.split(",") and \
            "clock_jump" not in self.unsupported
        self.full_disk = "full_disk" in args.kinds.split(",")
        self.mounts = []       # (mount point, image file or None), undone by unmount_disks
        self.disk_fs = None    # "ext4 on a loop device" or "tmpfs"; None: full_disk skipped
        self.dir = tempfile.mkdtemp(prefix="kyu-chaos-")
        os.chmod(self.dir, 0o755)  # bind-mounted into the containers (--docker)
        self.docker = args.docker
        self.image = getattr(args, "image_tag", None)
        self.net = DockerNet(args.nodes) if self.docker else Net(args.nodes)
        self.net.c = self
        self.nodes = {i: Node(i, self) for i in range(1, args.nodes + 1)}
        self.peer_args = []
        for n in self.nodes.values():
            self.peer_args += ["--peer", "%d,%s:7701,%s" % (n.id, n.ip, n.endpoint)]
        self.endpoints = ",".join(n.endpoint for n in self.nodes.values())
        self.handler = write_handler(self.dir)
        self.jobs_out = os.path.join(self.dir, "jobs.jsonl")
        self.workers = [Worker(k, self) for k in range(2)]
        self.violations = []
        self.h = History()
        self.faults = collections.Counter()
        self.leader_waits = []
        self.running = threading.Event()

    def violation(self, text):
        log("VIOLATION: %s", text)
        self.violations.append(text)

    # -- the CLI, in the clients' namespace
    def cli(self, *args, endpoint=None, input=None, timeout=60):
        cmd = self.net.exec_prefix(self.net.client) + [CLI, "--broker", endpoint or self.endpoints]
        cmd += list(args)
        try:
            r = subprocess.run(cmd, input=input, capture_output=True, timeout=timeout)
            return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")
        except subprocess.TimeoutExpired as e:
            out = e.stdout.decode(errors="replace") if e.stdout else ""
            return None, out, "timed out"

    def ok(self, *args, **kw):
        rc, out, err = self.cli(*args, **kw)
        if rc != 0:
            raise RuntimeError("kyu %s failed (%s): %s" % (" ".join(args), rc, err))
        return out

    def status(self):
        rc, out, _ = self.cli("--json", "cluster", "status", timeout=30)
        res = []
        for line in out.splitlines():
            try:
                res.append(json.loads(line))
            except ValueError:
                pass
        return res

    def leader(self, deadline_s=30):
        """The node that leads and serves (answers list-queues at its own endpoint)."""
        deadline = now() + deadline_s
        while now() < deadline:
            for s in self.status():
                if s.get("role") == "leader":
                    n = next((n for n in self.nodes.values() if n.endpoint == s["endpoint"]), None)
                    if n and self.cli("list-queues", endpoint=n.endpoint, timeout=10)[0] == 0:
                        return n
            time.sleep(0.1)
        return None

    def mount_disks(self):
        """full_disk: each node's data dir on a file system of its own, DISK_MIB of ext4 on a
        loop device (a sparse image file), else a tmpfs of DISK_TMPFS_MIB; where neither can
        be mounted the full_disk faults are skipped (and the data dirs are plain ones)."""
        for n in self.nodes.values():
            os.makedirs(n.disk_dir, exist_ok=True)
            image = n.disk_dir + ".img"
            with open(image, "wb") as f:
                f.truncate(DISK_MIB << 20)
            mk = run("mkfs.ext4", "-q", "-F", "-m", "0", image, check=False, timeout=120)
            if mk.returncode == 0 and run("mount", "-o", "loop", image, n.disk_dir,
                                          check=False).returncode == 0:
                self.mounts.append((n.disk_dir, image))
                kind = "ext4 on a loop device (%d MiB)" % DISK_MIB
            else:
                os.unlink(image)
                r = run("mount", "-t", "tmpfs", "-o", "size=%dm" % DISK_TMPFS_MIB, "tmpfs",
                        n.disk_dir, check=False)
                if r.returncode != 0:
                    log("cannot mount a small file system (%s): full_disk faults are skipped",
                        r.stderr.decode().strip())
                    self.unmount_disks()
                    return
                self.mounts.append((n.disk_dir, None))
                kind = "tmpfs (%d MiB)" % DISK_TMPFS_MIB
            if self.disk_fs not in (None, kind):
                kind = "mixed"
            self.disk_fs = kind
        log("data dirs on %s each, --disk-free-min %d MiB", self.disk_fs, DISK_FREE_MIN >> 20)

    def unmount_disks(self):
        for path, image in reversed(self.mounts):
            if run("umount", path, check=False).returncode != 0:
                run("umount", "-l", path, check=False)
            if image:
                try:
                    os.unlink(image)
                except OSError:
                    pass
        self.mounts = []
        self.disk_fs = None

    def start(self):
        self.net.remove_stale()
        self.net.up()
        if self.full_disk:
            self.mount_disks()
        for n in self.nodes.values():
            n.start()
        if not self.leader(60):
            raise RuntimeError("no leader within 60 s of start%s" % self.tail_logs())
        self.ok("create-queue", "orders", "--visibility-timeout", str(ORDERS_VT))
        self.ok("create-queue", "jobs", "--visibility-timeout", str(JOBS_VT))
        self.ok("create-queue", "poison-dlq", "--visibility-timeout", str(ORDERS_VT))
        self.ok("create-queue", "poison", "--visibility-timeout", "1", "--dead-letter-queue",
                "poison-dlq", "--max-receive-count", str(POISON_MRC))
        self.ok("create-queue", "probe", "--visibility-timeout", "600")
        self.ok("create-queue", "stock", "--visibility-timeout", "600")  # read in the drain only
        self.ok("create-queue", "fan-a", "--visibility-timeout", str(ORDERS_VT))
        self.ok("create-queue", "fan-b", "--visibility-timeout", str(ORDERS_VT))
        self.ok("create-queue", FIFO_Q, "--fifo", "--content-based-dedup",
                "--visibility-timeout", str(FIFO_VT))
        self.ok("create-topic", "events")
        self.ok("subscribe", "events", "fan-a", "--raw")
        self.ok("subscribe", "events", "fan-b", "--raw")
        for w in self.workers:
            w.start()

    def tail_logs(self):
        out = ""
        for n in self.nodes.values():
            out += "\n--- node %d ---\n%s" % (n.id, n.log_text().decode(errors="replace")[-2000:])
        return out

    # -- clients (threads), each running CLI processes in a loop until self.running clears
    def producer(self, tag):
        seq = 0
        kinds = ["orders", "jobs", "poison", "publish", "stock"]
        while self.running.is_set():
            what = kinds[seq % len(kinds)]
            n = {"poison": 3, "stock": 1}.get(what, 10)
            bodies = ["%s-%s-%06d-%d" % (what, tag, seq, k) for k in range(n)]
            seq += 1
            with self.h.lock:
                if what == "publish":
                    self.h.publish_unsure.update(bodies)
                else:
                    self.h.unsure[what].update(bodies)
            cmd = ["--json", "publish", "events", "--lines"] if what == "publish" else \
                ["--json", "send", what, "--lines"]
            rc, out, err = self.cli(*cmd, input="".join(b + "\n" for b in bodies).encode())
            ids = []
            for line in out.splitlines():
                try:
                    ids.append(json.loads(line)["MessageId"])
                except (ValueError, KeyError):
                    pass
            with self.h.lock:
                self.h.ops["send " + what] += 1
                if rc != 0:
                    self.h.ops["send %s failed" % what] += 1
                for body, mid in zip(bodies, ids):  # printed in input order, once acknowledged
                    if what == "publish":
                        self.h.published[body] = mid
                        self.h.publish_unsure.discard(body)
                    else:
                        self.h.sends[what][body] = mid
                        self.h.unsure[what].discard(body)
            time.sleep(0.05)

    def fifo_send_once(self, group, bodies, dedup_id=None):
        """One CLI run sending bodies to FIFO_Q in group (content-based deduplication, or
        dedup_id for one body): [(id, SequenceNumber)] of the bodies acknowledged, in order."""
        args = ["--json", "send", FIFO_Q, "--group", group]
        if dedup_id:
            args += [bodies[0], "--dedup-id", dedup_id]
            inp = None
        else:
            args += ["--lines"]
            inp = "".join(b + "\n" for b in bodies).encode()
        rc, out, err = self.cli(*args, input=inp)
        acks = []
        for line in out.splitlines():
            try:
                o = json.loads(line)
                acks.append((o["MessageId"], o["SequenceNumber"]))
            except (ValueError, KeyError):
                pass
        with self.h.lock:
            self.h.ops["send " + FIFO_Q] += 1
            if rc != 0:
                self.h.ops["send %s failed" % FIFO_Q] += 1
        return acks

    def fifo_send(self, group, bodies, dedup_id=None):
        """Sends bodies in group, in order after the group's earlier ones; a send that fails is
        retried (up to 3 runs in all) with the same deduplication ids, as a producer that does
        not know whether it was applied does. The bodies acknowledged: {body: (id, sn)}."""
        with self.h.lock:
            self.h.fifo_order[group] += bodies
            self.h.unsure[FIFO_Q].update(bodies)
        acked = {}
        left = list(bodies)
        for attempt in range(3):
            if attempt:
                with self.h.lock:
                    self.h.ops["fifo retries (same deduplication ids)"] += 1
                time.sleep(0.2)
            acks = self.fifo_send_once(group, left, dedup_id)
            for body, ack in zip(left, acks):
                acked[body] = ack
            left = left[len(acks):]
            if not left:
                break
        with self.h.lock:
            for body, (mid, sn) in acked.items():
                self.h.sends[FIFO_Q][body] = mid
                self.h.fifo_seq[body] = sn
                self.h.unsure[FIFO_Q].discard(body)
        return acked

    def fifo_producer(self, rng):
        """Sends to FIFO_Q's groups in turn: mostly 5 lines at once (content-based
        deduplication); sometimes one message with an explicit deduplication id followed by
        another body with the same id (a duplicate: acknowledged as the first, never stored);
        sometimes the group's last batch again (duplicates: acknowledged with the same ids)."""
        seq = 0
        last = {}  # group -> {body: (id, sn)} of its last batch acknowledged
        while self.running.is_set():
            g = "g%d" % (seq % FIFO_GROUPS)
            r = rng.random()
            if r < 0.1 and last.get(g):
                dup = last.pop(g)
                bodies = sorted(dup)
                acks = self.fifo_send_once(g, bodies)
                with self.h.lock:
                    self.h.ops["fifo duplicate sends"] += 1
                    for body, ack in zip(bodies, acks):
                        self.h.fifo_dups.append((body, ack, dup[body]))
            elif r < 0.25:
                body = "fifo-%s-%06d-0" % (g, seq)
                acked = self.fifo_send(g, [body], dedup_id="d-" + body)
                if body in acked:
                    acks = self.fifo_send_once(g, [body + "-dup"], dedup_id="d-" + body)
                    with self.h.lock:
                        self.h.ops["fifo duplicate sends"] += 1
                        if acks:
                            self.h.fifo_dups.append((body, acks[0], acked[body]))
            else:
                bodies = ["fifo-%s-%06d-%d" % (g, seq, k) for k in range(5)]
                acked = self.fifo_send(g, bodies)
                if len(acked) == len(bodies):
                    last[g] = acked
            seq += 1
            time.sleep(0.05)

    def receive(self, queue, vt, maxn=10, record=True):
        t0 = now()
        rc, out, err = self.cli("--json", "receive", queue, "--max", str(maxn),
                                "--visibility-timeout", str(vt))
        t1 = now()
        msgs = []
        for line in out.splitlines():
            try:
                msgs.append(json.loads(line))
            except ValueError:
                pass
        if record:
            with self.h.lock:
                self.h.ops["receive " + queue] += 1
                if rc != 0:
                    self.h.ops["receive %s failed" % queue] += 1
                for m in msgs:
                    self.h.deliveries[queue].append((t0, t1, m))
        return rc, msgs

    def delete(self, queue, msgs):
        t0 = now()
        rc, out, err = self.cli("delete", queue, *[m["ReceiptHandle"] for m in msgs])
        t1 = now()
        per = {}
        whole = rc is None or (rc != 0 and not any(m["ReceiptHandle"] + ":" in err for m in msgs))
        for m in msgs:
            rh = m["ReceiptHandle"]
            if whole:
                per[rh] = "unsure"
            elif rh + ": RECEIPT_STALE" in err:
                per[rh] = "stale"
            elif rh + ":" in err:
                per[rh] = "invalid"
            else:
                per[rh] = "ok"
        with self.h.lock:
            self.h.ops["delete " + queue] += 1
            if rc != 0:
                self.h.ops["delete %s failed" % queue] += 1
            for m in msgs:
                self.h.deletes.append((t0, t1, queue, m["MessageId"], m["ReceiptHandle"],
                                       per[m["ReceiptHandle"]]))
        return per

    def consumer(self, queue, vt, delete, rng=None):
        """Receives and deletes. With rng (the orders consumers) a batch is sometimes
        abandoned (never deleted: it comes back after its lease, as from a consumer that
        died) or deleted late (3 s after its lease ended: refused as stale if it was received
        again meanwhile, else accepted)."""
        late = []  # (due, msgs)
        while self.running.is_set():
            while late and late[0][0] <= now():
                self.delete(queue, late.pop(0)[1])
            rc, msgs = self.receive(queue, vt)
            if not msgs:
                time.sleep(0.1)
                continue
            if not delete:
                continue
            r = rng.random() if rng else 1.0
            if r < 0.05:
                with self.h.lock:
                    self.h.ops["abandon " + queue] += 1
            elif r < 0.10:
                late.append((now() + vt + 3, msgs))
            else:
                self.delete(queue, msgs)

    # -- faults
    def live_leader(self):
        return self.leader(10)

    def inject(self, f):
        """Injects f; the steps that heal it, or None when there was nothing to do it to."""
        kind = f["kind"]
        nodes = self.nodes
        heal = []
        if kind in self.unsupported:
            log("  not with these containers: skipped")
            return None
        if kind in ("kill9_random", "kill9_leader"):
            n = nodes[f["node"]] if kind == "kill9_random" else self.live_leader()
            if n is None:
                log("  no leader to kill: nothing done")
                return None
            log("  kill -9 node %d", n.id)
            n.kill9()
            heal.append(lambda: (log("  restart node %d", n.id), n.start()))
        elif kind == "full_disk":
            n = nodes[f["node"]]
            if not self.disk_fs:
                log("  no small file system mounted: nothing done")
                return None
            before = self.read_only_lines(n)
            left = n.fill(f["fill"])
            log("  node %d's disk filled (%.1f MiB left free)", n.id, left / (1 << 20))
            if n.alive() and not n.stopped:
                self.wait_read_only(n, True, 15, before)
            heal.append(lambda: self.heal_disk(n))
        elif kind == "stop_leader":
            n = self.live_leader()
            if n is None:
                log("  no leader to stop: nothing done")
                return None
            log("  SIGSTOP node %d", n.id)
            n.sig(signal.SIGSTOP)
            heal.append(lambda: (log("  SIGCONT node %d", n.id), n.sig(signal.SIGCONT)))
        elif kind == "stop_worker":
            w = self.workers[f["worker"]]
            log("  SIGSTOP worker %d", w.k)
            w.sig(signal.SIGSTOP)
            heal.append(lambda: (log("  SIGCONT worker %d", w.k), w.sig(signal.SIGCONT)))
        elif kind.startswith("part_"):
            if kind == "part_halves":
                a, b = f["sides"]
                log("  partition %s | %s", a, b)
                for x in a:
                    for y in b:
                        self.net.cut(x, y)
            elif kind == "part_leader":
                n = self.live_leader()
                if n is None:
                    log("  no leader to isolate: nothing done")
                    return None
                log("  isolate leader %d", n.id)
                for m in nodes.values():
                    if m is not n:
                        self.net.cut(n.id, m.id)
            elif kind == "part_oneway":
                log("  one-way cut: packets from %d do not reach %d", f["from"], f["to"])
                self.net.drop(f["to"], f["from"])
            elif kind == "part_bridge":
                a, b = f["sides"]
                log("  bridge %d between %s and %s", f["bridge"], a, b)
                for x in a:
                    for y in b:
                        self.net.cut(x, y)
            heal.append(lambda: (log("  heal the network"), self.net.heal()))
        elif kind == "skew":
            n = nodes[f["node"]]
            log("  restart node %d with its clock %+d s off", n.id, f["skew"])
            n.kill9()
            n.start(skew=f["skew"])
            heal.append(lambda: (log("  restart node %d with the right clock", n.id), n.kill9(),
                                 n.start()))
        elif kind == "clock_jump":
            n = self.live_leader() if f["target"] == "leader" else nodes[f["target"]]
            if n is None:
                log("  no leader whose clock to move: nothing done")
                return None
            log("  node %d's clock jumps %+d s", n.id, f["jump"])
            n.set_clock(f["jump"])
            heal.append(lambda: (log("  node %d's clock jumps back", n.id), n.set_clock(0)))
        elif kind == "slow_disk":
            n = nodes[f["node"]]
            log("  node %d's fsyncs take %d ms more", n.id, f["fsync_ms"])
            n.slow_fsync(f["fsync_ms"])
            heal.append(lambda: (log("  node %d's disk is fast again", n.id), n.slow_fsync(0)))
        return heal

    def read_only_lines(self, n):
        return n.log_text().count(b"READ-ONLY: ")

    def node_status(self, n):
        return next((s for s in self.status() if s.get("endpoint") == n.endpoint), None)

    def wait_read_only(self, n, want, deadline_s, lines_before=None):
        """Node n's status says read-only (want) or not within deadline_s, and when it turns
        read-only its log says so loudly ("READ-ONLY: ..."); a violation if not."""
        deadline = now() + deadline_s
        st = None
        while now() < deadline:
            st = self.node_status(n)
            if st is not None and ("read_only" in st) == want:
                if want:
                    with self.h.lock:
                        self.h.ops["read-only seen"] += 1
                    if self.read_only_lines(n) <= lines_before:
                        self.violation("node %d is read-only (%s) and its log has no new "
                                       "READ-ONLY line" % (n.id, st["read_only"]))
                else:
                    with self.h.lock:
                        self.h.ops["writable again seen"] += 1
                return True
            time.sleep(0.2)
        if want:
            self.violation("node %d's disk is full and it did not turn read-only within %d s: %s"
                           % (n.id, deadline_s, st))
        else:
            self.violation("node %d's disk has room again and it is not writable within %d s: %s"
                           % (n.id, deadline_s, st))
        return False

    def heal_disk(self, n):
        log("  node %d's disk has room again", n.id)
        n.unfill()
        if n.alive() and not n.stopped:
            self.wait_read_only(n, False, 30)

    def check_processes(self):
        for n in self.nodes.values():
            if n.proc is not None and not n.stopped:
                n.check_exit()
        for w in self.workers:
            if not w.stopped:
                w.check_exit()

    def run_faults(self, schedule, deadline):
        for f in schedule:
            if now() > deadline:
                log("time budget spent: %d of %d faults injected", f["i"], len(schedule))
                break
            log("fault %s", describe(f))
            t0 = now()
            heal = self.inject(f)
            if heal is None:
                self.faults["skipped " + f["kind"]] += 1  # no leader, or no small disk
                if "with" not in f:
                    continue
                heal = []
            else:
                self.faults[f["kind"]] += 1
            if "with" in f:
                g = f["with"]
                time.sleep(max(0.0, t0 + g["after"] - now()))
                log("  and fault %s", g["kind"])
                more = self.inject(g)
                if more is None:
                    self.faults["skipped " + g["kind"]] += 1
                else:
                    self.faults[g["kind"]] += 1
                    if heal:
                        self.faults["combined"] += 1
                    heal = heal + more
            time.sleep(max(0.0, t0 + f["duration"] - now()))
            for h in reversed(heal):  # the second fault's steps first
                h()
            self.check_processes()
            t0 = now()
            n = self.leader(30)
            if n is None:
                self.violation("no serving leader within 30 s of healing fault #%d" % f["i"])
            else:
                self.leader_waits.append(now() - t0)
            time.sleep(f["pause"])
            self.check_processes()

    # -- the end: heal, drain, converge, check
    def heal_all(self):
        self.net.heal()
        for n in self.nodes.values():
            n.unfill()
            n.slow_fsync(0)
            n.set_clock(0)
            if n.proc is None:
                n.start()
            elif n.skew:
                n.kill9()
                n.start()
            else:
                n.sig(signal.SIGCONT)
        for w in self.workers:
            w.sig(signal.SIGCONT)

    def wait_converged(self, deadline_s=90):
        """Every node answers, one leads, and all have applied the leader's commit index."""
        deadline = now() + deadline_s
        st = []
        while now() < deadline:
            st = self.status()
            lead = [s for s in st if s.get("role") == "leader"]
            if len(st) == len(self.nodes) and len(lead) == 1 and \
                    all(s.get("applied_index") == lead[0]["commit_index"] for s in st):
                return st
            time.sleep(0.2)
        self.violation("replicas did not converge within %d s: %s" % (deadline_s, st))
        return st

    def digest(self, dump):
        """A digest of the state a leader serves: queues with their attributes, subscriptions,
        and every message as PEEK shows it, without what a read derives from the clock (its
        lease state, its VisibleTimestamp once passed, the split of the counters); written to
        dump too."""
        h = hashlib.sha256()
        out = open(dump, "w")

        def add(text):
            h.update(text.encode())
            out.write(text + "\n")

        queues = sorted(json.loads(l)["QueueName"] for l in self.ok("--json", "list-queues").splitlines() if l)
        add(json.dumps(queues))
        add(self.ok("list-subscriptions"))
        n_msgs = 0
        for q in queues:
            a = json.loads(self.ok("--json", "get-queue-attributes", q).splitlines()[0])
            # Which messages count as visible, in flight or delayed follows the clock: their sum
            # does not.
            total = sum(int(a.pop(k)) for k in ("ApproximateNumberOfMessages",
                                                 "ApproximateNumberOfMessagesNotVisible",
                                                 "ApproximateNumberOfMessagesDelayed"))
            a["messages"] = total
            add(json.dumps(a, sort_keys=True))
            pos = None
            for _ in range(100000):
                args = ["--json", "peek", q, "--max", "10"] + (["--from", pos] if pos else [])
                pos = None
                for line in self.ok(*args).splitlines():
                    m = json.loads(line)
                    if "Next" in m and len(m) == 1:
                        pos = m["Next"]
                        continue
                    m.pop("State", None)  # these two follow the clock
                    m.get("Attributes", {}).pop("VisibleTimestamp", None)
                    n_msgs += 1
                    add(json.dumps(m, sort_keys=True))
                if not pos:
                    break
        out.close()
        return h.hexdigest(), n_msgs

    def transfer_to(self, n):
        for _ in range(6):
            cur = self.leader(30)
            if cur is n:
                return True
            self.cli("cluster", "transfer", str(n.id), timeout=30)
            deadline = now() + 5
            while now() < deadline:
                if self.leader(5) is n:
                    return True
                time.sleep(0.1)
        return False

    def check_convergence(self):
        st = self.wait_converged()
        applied = sorted({s.get("applied_index") for s in st})
        log("applied index on every node: %s", applied)
        digests = {}
        for n in self.nodes.values():
            if not self.transfer_to(n):
                self.violation("leadership could not be moved to node %d to read its state" % n.id)
                continue
            digests[n.id] = self.digest(os.path.join(self.dir, "state-%d.jsonl" % n.id))
            log("node %d state digest %s (%d messages)", n.id, digests[n.id][0][:16], digests[n.id][1])
        if len({d for d, _ in digests.values()}) > 1:
            self.violation("replicas' states differ (%s/state-N.jsonl): %s" % (self.dir, digests))
        return digests

    def check_stale_receipts(self):
        """A receipt of an earlier lease is refused once the message was received again."""
        self.ok("send", "probe", "stale-probe")
        first = None
        deadline = now() + 60
        while first is None and now() < deadline:
            _, msgs = self.receive("probe", 1, 1, record=False)
            first = msgs[0] if msgs else None
        second = None
        while first and second is None and now() < deadline:
            time.sleep(0.5)
            _, msgs = self.receive("probe", 600, 10, record=False)
            second = msgs[0] if msgs else None
        if not first or not second:
            self.violation("the stale-receipt probe was not received twice within 60 s")
            return
        rc, _, err = self.cli("delete", "probe", first["ReceiptHandle"])
        if rc == 0 or "RECEIPT_STALE" not in err:
            self.violation("a stale receipt was not refused as RECEIPT_STALE: rc %s, %s" % (rc, err))
        rc, _, err = self.cli("delete", "probe", second["ReceiptHandle"])
        if rc != 0:
            self.violation("the current receipt was refused: %s" % err)
        self.h.ops["stale receipt probe"] += 1

    def drain(self, queue, vt=600, deadline_s=180):
        """Receives until the queue's counters are all 0 (leases of the run end meanwhile)."""
        got = []
        deadline = now() + deadline_s
        while now() < deadline:
            _, msgs = self.receive(queue, vt)
            if msgs:
                got += msgs
                if queue != "poison":
                    for i in range(0, len(msgs), 10):
                        self.delete(queue, msgs[i:i + 10])
                continue
            a = json.loads(self.ok("--json", "get-queue-attributes", queue).splitlines()[0])
            if all(int(a[k]) == 0 for k in ("ApproximateNumberOfMessages",
                                             "ApproximateNumberOfMessagesNotVisible",
                                             "ApproximateNumberOfMessagesDelayed")):
                return got
            time.sleep(0.5)
        self.violation("queue %s did not drain within %d s" % (queue, deadline_s))
        return got

    def jobs_records(self):
        try:
            with open(self.jobs_out) as f:
                return [json.loads(l) for l in f if l.strip()]
        except FileNotFoundError:
            return []

    def check_history(self):
        h = self.h
        v = self.violation
        stats = collections.Counter()
        deleted_at = {}  # id -> earliest end of a confirmed delete
        confirmed = collections.defaultdict(list)  # (queue, id) -> [(start, receipt)]
        for (t0, t1, q, mid, rh, outcome) in h.deletes:
            stats["delete " + outcome] += 1
            if outcome == "ok":
                confirmed[(q, mid)].append((t0, rh))
                deleted_at[(q, mid)] = min(deleted_at.get((q, mid), t1), t1)
        for q in ("orders", "jobs", "poison", "poison-dlq", "fan-a", "fan-b", "stock", FIFO_Q):
            sent = h.sends.get(q, {})
            if q in ("fan-a", "fan-b"):
                sent, unsure = dict(h.published), h.publish_unsure
            else:
                unsure = h.unsure.get(q, set())
            if q == "poison-dlq":
                sent, unsure = h.sends.get("poison", {}), h.unsure.get("poison", set())
            dels = h.deliveries.get(q, [])
            by_id = collections.defaultdict(list)
            bodies_ids = collections.defaultdict(set)
            for (t0, t1, m) in dels:
                by_id[m["MessageId"]].append((t0, t1, m))
                bodies_ids[m["Body"]].add(m["MessageId"])
                if m["Body"] not in sent and m["Body"] not in unsure:
                    v("%s: unexpected message %s body %r" % (q, m["MessageId"], m["Body"]))
            delivered_bodies = set(bodies_ids)
            if q == "jobs":
                delivered_bodies = {r["body"] for r in self.jobs_records() if r["phase"] == "done"}
            if q != "poison":
                lost = [b for b in sent if b not in delivered_bodies]
                for b in lost[:20]:
                    v("%s: acknowledged message lost: body %r id %s" % (q, b, sent[b]))
                if len(lost) > 20:
                    v("%s: %d more acknowledged messages lost" % (q, len(lost) - 20))
            for b, ids in bodies_ids.items():
                if len(ids) > 1:
                    v("%s: body %r stored %d times (ids %s)" % (q, b, len(ids), sorted(ids)))
                if q not in ("fan-a", "fan-b") and b in sent and sent[b] not in ids:
                    v("%s: body %r delivered with id %s, acknowledged as %s" % (q, b, ids, sent[b]))
            stats[q + " acknowledged"] = len(sent)
            stats[q + " unsure"] = len(unsure)
            stats[q + " deliveries"] = len(dels)
            for mid, ds in by_id.items():
                ds.sort(key=lambda d: d[0])
                stats[q + " redeliveries"] += len(ds) - 1
                # receives whose reply no client saw (a CLI that timed out, a reply lost
                # with a failover): the receive count skips them
                counts = sorted(int(d[2]["Attributes"]["ApproximateReceiveCount"]) for d in ds)
                first = counts[0] if q == "poison-dlq" else 1  # a dead letter's count goes on
                # a poison message is received maxReceiveCount times, then moved
                last = POISON_MRC if q == "poison" else counts[-1]
                stats[q + " receives unseen"] += last - first + 1 - len(set(counts))
                if len(set(counts)) != len(counts):
                    v("%s: %s delivered twice with the same receive count %s" % (q, mid, counts))
                if q == "poison":
                    for (_, _, m) in ds:
                        if int(m["Attributes"]["ApproximateReceiveCount"]) > POISON_MRC:
                            v("poison: %s delivered with receive count %s > maxReceiveCount %d"
                              % (mid, m["Attributes"]["ApproximateReceiveCount"], POISON_MRC))
                    continue
                vt = ORDERS_VT if q in ("orders", "fan-a", "fan-b", "poison-dlq") else \
                    FIFO_VT if q == FIFO_Q else None
                for (a, b) in zip(ds, ds[1:]):
                    if vt and b[1] < a[0] + vt - LEASE_MARGIN:
                        v("%s: %s delivered again %.1f s after a %d s lease began (receipt %s)"
                          % (q, mid, b[1] - a[0], vt, a[2]["ReceiptHandle"]))
                    if a[2]["ReceiptHandle"] == b[2]["ReceiptHandle"]:
                        v("%s: %s delivered twice with the same receipt" % (q, mid))
                dt = deleted_at.get((q, mid))
                if dt is not None:
                    back = [d for d in ds if d[0] > dt]
                    if back:
                        v("%s: deleted message %s came back %.1f s after its delete was confirmed"
                          % (q, mid, back[0][0] - dt))
                # a delete confirmed with a receipt issued before a later delivery that
                # had already come back when the delete was sent: a stale receipt accepted
                for (t0, rh) in confirmed.get((q, mid), []):
                    mine = next((i for i, d in enumerate(ds) if d[2]["ReceiptHandle"] == rh), None)
                    if mine is not None and any(d[1] < t0 for d in ds[mine + 1:]):
                        v("%s: delete of %s with a receipt that was stale when sent was accepted"
                          % (q, mid))
        # dead letters: every acknowledged poison message moved to poison-dlq once, with its id
        dlq = collections.defaultdict(set)
        for (_, _, m) in h.deliveries.get("poison-dlq", []):
            dlq[m["Body"]].add(m["MessageId"])
        bad = [(b, mid) for b, mid in h.sends.get("poison", {}).items() if dlq[b] != {mid}]
        if len(bad) > 20:
            v("poison-dlq: %d acknowledged poison messages are not there once with their ids "
              "(the first 20 follow)" % len(bad))
        for b, mid in bad[:20]:
            v("poison-dlq: %r (id %s) is there as %s, not once with its id" % (b, mid, sorted(dlq[b])))
        # fan-out: every acknowledged publish in both queues
        for q in ("fan-a", "fan-b"):
            got = {m["Body"] for (_, _, m) in h.deliveries.get(q, [])}
            missing = [b for b in h.published if b not in got]
            if missing:
                v("%s: %d acknowledged publishes missing, e.g. %r" % (q, len(missing), missing[:3]))
        self.check_fifo(stats, confirmed)
        # workers: every acknowledged job done at least once
        recs = self.jobs_records()
        done = collections.Counter(r["body"] for r in recs if r["phase"] == "done")
        stats["jobs done twice or more"] = sum(1 for c in done.values() if c > 1)
        for b in done:
            if b not in h.sends.get("jobs", {}) and b not in h.unsure.get("jobs", set()):
                v("jobs: unexpected job done: %r" % b)
        return stats

    def check_fifo(self, stats, confirmed):
        """FIFO_Q: each group's messages received in the order they were sent (a receive of a
        later message that ended before a receive of an earlier one began is out of order;
        within one receive, in order), none received while an earlier one of its group is in
        flight, and every duplicate send acknowledged with the first one's id and
        SequenceNumber (that none is stored twice, the loop above checks: a body under two
        ids, a duplicate's own body received)."""
        h, v = self.h, self.violation
        pos = {}
        for g, bodies in h.fifo_order.items():
            for i, b in enumerate(bodies):
                pos[b] = (g, i)
        first_delete = {}  # receipt -> the earliest start of a delete with it
        for (t0, _, q, _, rh, _) in h.deletes:
            if q == FIFO_Q:
                first_delete[rh] = min(first_delete.get(rh, t0), t0)
        by_group = collections.defaultdict(list)
        for (t0, t1, m) in h.deliveries.get(FIFO_Q, []):
            if m["Body"] not in pos:
                continue  # unexpected: reported above
            g, i = pos[m["Body"]]
            if m.get("Attributes", {}).get("MessageGroupId") != g:
                v("%s: %r received in group %r, sent in group %s"
                  % (FIFO_Q, m["Body"], m.get("Attributes", {}).get("MessageGroupId"), g))
            by_group[g].append((t0, t1, i, m))
        stats["fifo groups"] = len(by_group)
        with open(os.path.join(self.dir, "fifo-history.jsonl"), "w") as f:
            for g, bodies in sorted(h.fifo_order.items()):
                f.write(json.dumps({"group": g, "sent": bodies}) + "\n")
            for g, ds in sorted(by_group.items()):
                for (t0, t1, i, m) in ds:
                    f.write(json.dumps({"group": g, "i": i, "t0": round(t0, 3), "t1": round(t1, 3),
                                        "body": m["Body"], "id": m["MessageId"],
                                        "sn": m["Attributes"].get("SequenceNumber"),
                                        "rc": m["Attributes"].get("ApproximateReceiveCount"),
                                        "rh": m["ReceiptHandle"]}) + "\n")
        for g, ds in sorted(by_group.items()):
            found = 0
            receives = collections.defaultdict(list)
            for d in ds:
                receives[(d[0], d[1])].append(d[2])
            for idx in receives.values():
                if idx != sorted(set(idx)):
                    v("%s: group %s out of order within one receive: messages %s (send order)"
                      % (FIFO_Q, g, idx))
            members = {k: set(idx) for k, idx in receives.items()}
            # When a receive returns message j, every earlier message of the group is deleted
            # or returned by that same receive (then received again once its lease is over,
            # with j and what follows): so a receive that begins after one that returned j
            # has ended returns an earlier message only if that one returned it too.
            by_start = sorted(ds, key=lambda d: d[0])
            by_end = sorted(ds, key=lambda d: d[1])
            j, best = 0, None
            for d in by_start:
                while j < len(by_end) and by_end[j][1] < d[0]:
                    if best is None or by_end[j][2] > best[2]:
                        best = by_end[j]
                    j += 1
                if best is not None and best[2] > d[2] and \
                        d[2] not in members[(best[0], best[1])] and found < 5:
                    found += 1
                    v("%s: group %s out of order: %r (sent %d in the group) received %.1f s "
                      "after %r (sent %d) was, in a receive without it"
                      % (FIFO_Q, g, d[3]["Body"], d[2], d[0] - best[1], best[3]["Body"], best[2]))
            stats["fifo deliveries checked for order"] += len(ds)
            # group lock: while a delivery's lease holds and no delete of it was sent yet, no
            # other message of its group is received (by a receive that began after this one
            # ended and ended before the lock can have ended)
            starts = [d[0] for d in by_start]
            found = 0
            for a in by_start:
                rh = a[3]["ReceiptHandle"]
                lock_end = min(a[0] + FIFO_VT - LEASE_MARGIN, first_delete.get(rh, float("inf")))
                k = bisect.bisect_right(starts, a[1])
                while k < len(by_start) and by_start[k][0] < lock_end:
                    b = by_start[k]
                    k += 1
                    if b[1] < lock_end and b[3]["MessageId"] != a[3]["MessageId"] and found < 5:
                        found += 1
                        v("%s: group %s: %r received while %r (received %.1f s before, its "
                          "lease of %d s held, not deleted yet) was in flight"
                          % (FIFO_Q, g, b[3]["Body"], a[3]["Body"], b[0] - a[1], FIFO_VT))
        for body, (mid, sn), orig in h.fifo_dups:
            stats["fifo duplicate sends acknowledged"] += 1
            want = orig
            if want is None or want[0] != h.sends[FIFO_Q].get(body):
                want = (h.sends[FIFO_Q].get(body), h.fifo_seq.get(body))
            if (mid, sn) != tuple(want):
                v("%s: a duplicate send of %r answered %s (SequenceNumber %s), the first "
                  "send %s (%s)" % (FIFO_Q, body, mid, sn, want[0], want[1]))

    def check_logs(self):
        for n in self.nodes.values():
            rep = sanitizer_report(n.log_path)
            if rep:
                self.violation("node %d's log has a sanitizer report:\n%s" % (n.id, rep))
        for w in self.workers:
            rep = sanitizer_report(w.log_path)
            if rep:
                self.violation("worker %d's log has a sanitizer report:\n%s" % (w.k, rep))

    def shutdown(self):
        for w in self.workers:
            if w.proc and w.proc.poll() is None:
                w.proc.send_signal(signal.SIGCONT)
                w.proc.kill()
                w.proc.wait(timeout=30)
        handler = self.handler.split()[-1]
        for pid in {r.get("pid") for r in self.jobs_records()}:
            # Only a handler still running: a PID of one that ended may be a broker's now.
            try:
                with open("/proc/%d/cmdline" % pid, "rb") as f:
                    if handler.encode() not in f.read():
                        continue
                os.kill(pid, signal.SIGKILL)
            except (OSError, TypeError):
                pass
        for n in self.nodes.values():
            if n.proc is not None and n.proc.poll() is not None and n.proc.returncode not in (0,):
                self.violation("node %d exited with status %s" % (n.id, n.proc.returncode))
            n.stop()
            if n.proc is not None and n.proc.returncode != 0:
                self.violation("node %d did not stop cleanly on SIGTERM: status %s"
                               % (n.id, n.proc.returncode))
            n.retire()
        self.net.down()
        self.unmount_disks()
        for n in self.nodes.values():
            n.log.close()
        for w in self.workers:
            w.log.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=3, choices=(3, 5))
    ap.add_argument("--faults", type=int, default=30)
    ap.add_argument("--seed", type=int, default=None, help="default: drawn at random, printed")
    ap.add_argument("--kinds", default=",".join(KINDS),
                    help="comma-separated fault kinds (default all: %s)" % ",".join(KINDS))
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds for the faults (default 10 per fault); the rest are skipped")
    ap.add_argument("--broker", default=BROKER,
                    help="the kyu-broker binary (default $KYU_BIN_DIR/broker/kyu-broker)")
    ap.add_argument("--pace", type=float, default=1.0,
                    help="scales every fault's duration and the pause after it (default 1)")
    ap.add_argument("--overlap", type=float, default=0.2,
                    help="the share of faults that come with a second one overlapping (default 0.2)")
    ap.add_argument("--docker", action="store_true",
                    help="the brokers as docker containers on a docker network of the run's "
                         "(the clients on the host)")
    ap.add_argument("--image", default=None,
                    help="--docker: the image to run (never pulled; default: kyu:chaos, built "
                         "from $KYU_BIN_DIR by scripts/docker_image.sh)")
    ap.add_argument("--keep", action="store_true", help="keep the data dir and logs")
    ap.add_argument("--schedule-only", action="store_true", help="print the schedule and exit")
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 2 ** 31)
    kinds = tuple(k for k in args.kinds.split(",") if k)
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        ap.error("unknown fault kinds: %s" % ", ".join(bad))
    schedule = make_schedule(seed, args.faults, args.nodes, kinds, args.pace, args.overlap)
    print("chaos: seed %d, %d nodes, %d faults (replay: %s --nodes %d --faults %d --seed %d%s%s%s%s)"
          % (seed, args.nodes, args.faults, sys.argv[0], args.nodes, args.faults, seed,
             " --kinds " + args.kinds if args.kinds != ",".join(KINDS) else "",
             " --pace %g" % args.pace if args.pace != 1.0 else "",
             " --overlap %g" % args.overlap if args.overlap != 0.2 else "",
             " --docker" if args.docker else ""))
    for f in schedule:
        print("  " + describe(f))
    sys.stdout.flush()
    if args.schedule_only:
        return 0
    if os.geteuid() != 0:
        print("chaos: needs root (network namespaces, iptables): skipped")
        return 77
    if args.docker:
        return run_docker_checks(args, kinds, seed, schedule)
    probe = "kyuc%ds" % os.getpid()
    r = run("ip", "netns", "add", probe, check=False)
    if r.returncode != 0:
        print("chaos: cannot create a network namespace (%s): skipped"
              % r.stderr.decode().strip())
        return 77
    run("ip", "netns", "del", probe, check=False)
    return run_chaos(args, kinds, seed, schedule)


def run_docker_checks(args, kinds, seed, schedule):
    """--docker: docker and nsenter there (else skipped: 77), the image (built here), and
    which kinds of fault can be mapped to containers."""
    if not shutil.which("docker") or not shutil.which("nsenter") or not shutil.which("iptables"):
        print("chaos: --docker needs docker, nsenter and iptables: skipped")
        return 77
    r = run("docker", "info", check=False, timeout=60)
    if r.returncode != 0:
        print("chaos: docker does not answer (%s): skipped" % r.stderr.decode().strip()[:300])
        return 77
    if args.broker != BROKER:
        print("chaos: --broker is for the namespace mode; --docker runs the image's (--image)")
        return 2
    for p in (BROKER, CLI, WORKER):
        if not os.access(p, os.X_OK):
            print("chaos: %s is missing (build first, or set KYU_BIN_DIR)" % p)
            return 1
    svc = os.path.join(BIN_DIR, "examples", "orders", "orders-service")
    if not args.image and not os.access(svc, os.X_OK):
        print("chaos: %s is not built (libmicrohttpd-dev): the image cannot be built: skipped"
              % svc)
        return 77
    args.image_tag = docker_image(args.image)
    if not args.image_tag:
        print("chaos: no image %s (never pulled: build it with scripts/docker_image.sh)"
              % (args.image or "kyu:chaos<PID>"))
        return 1
    args.image_built = not args.image
    try:
        return docker_run_chaos(args, kinds, seed, schedule)
    finally:
        if args.image_built:
            docker("rmi", "-f", args.image_tag, check=False)


def docker_run_chaos(args, kinds, seed, schedule):
    args.unsupported = set()
    if not docker_probe_libs(args.image_tag):
        args.unsupported = {"skew", "clock_jump", "slow_disk"} & set(kinds)
        if args.unsupported:
            log("libfaketime or slow_fsync.c's library does not load in %s: %s faults skipped",
                args.image_tag, ", ".join(sorted(args.unsupported)))
    return run_chaos(args, kinds, seed, schedule)


def run_chaos(args, kinds, seed, schedule):
    for p in (args.broker, CLI, WORKER):
        if not os.access(p, os.X_OK):
            print("chaos: %s is missing (build first, or set KYU_BIN_DIR)" % p)
            return 1
    if ("skew" in kinds or "clock_jump" in kinds) and not os.path.exists(FAKETIME_LIB):
        print("chaos: %s is missing: scripts/deps.sh installs the Debian package faketime" % FAKETIME_LIB)
        return 1
    if "slow_disk" in kinds and not os.path.exists(SLOW_FSYNC_LIB):
        print("chaos: %s is missing (built with the tests: target kyu_slow_fsync)" % SLOW_FSYNC_LIB)
        return 1
    c = Cluster(args)
    log("data and logs in %s", c.dir)
    budget = args.budget if args.budget is not None else 10.0 * args.faults
    def give_up(why="hard time limit reached"):
        log("%s: stopping every process of the run", why)
        for p in [n.proc for n in c.nodes.values()] + [w.proc for w in c.workers]:
            if p is not None and p.poll() is None:
                p.kill()
        c.net.down()
        c.unmount_disks()
        if getattr(args, "image_built", False):
            docker("rmi", "-f", args.image_tag, check=False)
        os._exit(3)

    # SIGTERM or ^C: stop what the run started (containers, namespaces, mounts), then exit
    signal.signal(signal.SIGTERM, lambda *_: give_up("SIGTERM"))
    signal.signal(signal.SIGINT, lambda *_: give_up("interrupted"))
    hard_stop = threading.Timer(budget + 600, give_up)
    hard_stop.daemon = True
    hard_stop.start()
    threads = []
    stats = {}
    try:
        c.start()
        c.running.set()
        threads = [threading.Thread(target=c.producer, args=("p1",)),
                   threading.Thread(target=c.consumer,
                                    args=("orders", ORDERS_VT, True, random.Random(seed + 1))),
                   threading.Thread(target=c.consumer,
                                    args=("orders", ORDERS_VT, True, random.Random(seed + 2))),
                   threading.Thread(target=c.consumer, args=("fan-a", ORDERS_VT, True)),
                   threading.Thread(target=c.consumer, args=("fan-b", ORDERS_VT, True)),
                   threading.Thread(target=c.consumer, args=("poison", 1, False)),
                   threading.Thread(target=c.fifo_producer, args=(random.Random(seed + 3),)),
                   threading.Thread(target=c.consumer,
                                    args=(FIFO_Q, FIFO_VT, True, random.Random(seed + 4))),
                   threading.Thread(target=c.consumer,
                                    args=(FIFO_Q, FIFO_VT, True, random.Random(seed + 5))),
                   threading.Thread(target=c.consumer, args=("poison-dlq", ORDERS_VT, True))]
        for t in threads:
            t.start()
        time.sleep(2)
        c.run_faults(schedule, now() + budget)
        log("healing everything")
        c.heal_all()
        t0 = now()
        lead = c.leader(30)
        if lead is None:
            c.violation("no serving leader within 30 s of the final heal")
        else:
            log("leader %d serves %.1f s after the final heal", lead.id, now() - t0)
        time.sleep(2)
        c.running.clear()
        for t in threads:
            t.join(timeout=120)
        log("clients stopped; waiting for the workers to finish the jobs")
        deadline = now() + 120
        while now() < deadline:
            done = {r["body"] for r in c.jobs_records() if r["phase"] == "done"}
            if set(c.h.sends["jobs"]) <= done:
                break
            time.sleep(0.5)
        for w in c.workers:
            w.drain_stop()
        digests = c.check_convergence()
        log("checking stale receipts")
        c.check_stale_receipts()
        log("draining")
        for q in ("orders", "jobs", "fan-a", "fan-b", "poison", "poison-dlq", "stock", FIFO_Q):
            got = c.drain(q, vt=1 if q == "poison" else 600)
            log("  %s: %d received in the drain", q, len(got))
        stats = c.check_history()
        stats["state digest messages"] = max((n for _, n in digests.values()), default=0)
    except Exception as e:  # noqa: BLE001 - a harness error is a failed run, with its logs
        import traceback
        traceback.print_exc()
        c.violation("harness error: %s" % e)
        c.running.clear()
        for t in threads:
            t.join(timeout=120)
    finally:
        c.shutdown()
        c.check_logs()
        hard_stop.cancel()
    print("\n== chaos summary: seed %d, %d nodes ==" % (seed, args.nodes))
    print("faults by kind: %s" % json.dumps(dict(sorted(c.faults.items()))))
    print("faults injected: %d (%d of them with a second one overlapping)"
          % (sum(v for k, v in c.faults.items() if not k.startswith("skipped") and k != "combined"),
             c.faults["combined"]))
    print("operations: %s" % json.dumps(dict(sorted(c.h.ops.items()))))
    print("checked: %s" % json.dumps(dict(sorted(stats.items()))))
    if c.leader_waits:
        print("leader after heal: max %.1f s, mean %.1f s over %d heals"
              % (max(c.leader_waits), sum(c.leader_waits) / len(c.leader_waits), len(c.leader_waits)))
    print("violations: %d %s" % (len(c.violations), json.dumps(dict(sorted(
        collections.Counter(check_of(t) for t in c.violations).items())))))
    for text in c.violations[:100]:
        print("  - " + text[:3000])
    if len(c.violations) > 100:
        print("  ... and %d more" % (len(c.violations) - 100))
    if c.violations or args.keep:
        print("data and logs kept in %s" % c.dir)
    else:
        shutil.rmtree(c.dir, ignore_errors=True)
    return 1 if c.violations else 0


if __name__ == "__main__":
    sys.exit(main())
