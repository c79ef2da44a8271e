"""Helpers for integration tests: real kyu-broker processes on 127.0.0.1 with temporary data
directories, driven through the kyu CLI. Every wait is bounded by a deadline; processes are
stopped by their PID only."""
import fcntl
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest
import uuid

BIN_DIR = os.environ.get("KYU_BIN_DIR", os.path.join(os.path.dirname(__file__), "../../build"))
BROKER = os.path.join(BIN_DIR, "broker", "kyu-broker")
CLI = os.path.join(BIN_DIR, "client", "kyu")


_PICKED = set()
# Ports picked by this process, each held by a lock on a file of a directory every test
# process shares: ctest runs tests two at a time, and two processes could otherwise pick the
# same free port and race for its bind. The kernel drops a lock when its process ends.
_PORT_LOCKS = []
_PORT_DIR = os.path.join(tempfile.gettempdir(), "kyu-test-ports")


def _reserve(port):
    """True once this process holds port's lock (False: another test process holds it)."""
    os.makedirs(_PORT_DIR, exist_ok=True)
    fd = os.open(os.path.join(_PORT_DIR, str(port)), os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False
    _PORT_LOCKS.append(fd)
    return True


def free_port():
    """A port no process is listening on, chosen below the kernel's ephemeral range
    (net.ipv4.ip_local_port_range, 32768 and up by default) so that no outgoing connection (a
    node dialling its peers, a CLI) can take it between this pick and the broker's bind; never
    the same port twice in one test process, nor one another test process picked (_reserve)."""
    low = 10000
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            high = int(f.read().split()[0]) - 1
    except (OSError, ValueError, IndexError):
        high = 32767
    rng = random.SystemRandom()
    for _ in range(1000):
        port = rng.randint(low, max(low, high))
        if port in _PICKED or not _reserve(port):
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _PICKED.add(port)
        return port
    raise AssertionError("no free port found below the ephemeral range")


COUNTERS = {"visible": "ApproximateNumberOfMessages",
            "in_flight": "ApproximateNumberOfMessagesNotVisible",
            "delayed": "ApproximateNumberOfMessagesDelayed"}


# The raw-frame helpers import msgpack and zmq when used: tests that only drive the CLI
# (tests/client) import this module under a python3 without them.


def dealer(ctx, endpoint, timeout_ms=10000):
    """A DEALER socket of ctx connected to endpoint: no linger, receives time out."""
    import zmq
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.RCVTIMEO, timeout_ms)
    s.connect(endpoint)
    return s


def request_frames(endpoint, *frames, timeout_ms=10000):
    """Sends frames as one request on a fresh DEALER socket; the reply's frames."""
    import zmq
    ctx = zmq.Context()
    s = dealer(ctx, endpoint, timeout_ms)
    try:
        s.send_multipart(list(frames))
        return s.recv_multipart()
    finally:
        s.close()
        ctx.destroy(linger=0)


def request(endpoint, header, *bodies, timeout_ms=10000, frames=False):
    """One raw request: header (a dict, id 1 unless it has one) packed as msgpack, then the
    bodies. The reply's header decoded, or with frames=True every frame of the reply."""
    import msgpack
    reply = request_frames(endpoint, msgpack.packb(dict({"id": 1}, **header)), *bodies,
                           timeout_ms=timeout_ms)
    return reply if frames else msgpack.unpackb(reply[0])


SANITIZER_MARKS = ("runtime error:", "ERROR: AddressSanitizer", "ERROR: LeakSanitizer")


def sanitizer_report(path):
    """The part of a process's log from the first sanitizer report on (UBSan's "runtime error:",
    ASan's and LSan's "ERROR:"), or "" when there is none: a broker that died of a sanitizer
    report while the test looked elsewhere (or was killed after it) still fails the test."""
    try:
        with open(path, "rb") as f:
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    at = min((text.find(m) for m in SANITIZER_MARKS if m in text), default=-1)
    return text[max(0, at - 2000):at + 6000] if at >= 0 else ""


# A generous client timeout for calls that a failover or a loaded machine (CI's sanitizer run
# beside other builds) may hold up: the CLI's default (10 s) bounds each call, and a leader's
# kill -9, an election and a catch-up can take longer than that under load, so a test asks with
# this, as an operator on a loaded cluster would (`kyu --timeout SEC`).
SLOW_TIMEOUT_S = 60
# The same for a pipelined `--lines` CLI (send, publish) streaming through a leader's kill -9:
# a line in flight to the dead leader is resent after this (nothing tells the client it died),
# and each line is tried for three times this in all (client/cli_send.c).
STREAM_TIMEOUT_S = 30


def run_probe(argv, timeout):
    """subprocess.run(argv) for a probe that is asked again: a CLI still running after timeout
    seconds (killed) counts as a failed probe (returncode None) rather than raising."""
    try:
        return subprocess.run(argv, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        return subprocess.CompletedProcess(argv, None, e.stdout or b"",
                                           b"no answer within %d s" % timeout)


def ask_again(run, what, tries=5, deadline_s=300, done=None):
    """run() (a kyu CLI call, as a CompletedProcess, that is safe to ask again: a write with a
    request key kept across the asks, an idempotent one, a RECEIVE with its attempt id) until
    it exits 0, at most tries times within deadline_s: what a user does when a call under load
    or across a failover timed out (what: a text, or a function giving it). done(result),
    when given, tells a failed ask that found the work done by an earlier one (which had timed
    out) apart. The last result; an AssertionError naming what and every failure when no ask
    succeeded."""
    deadline = time.monotonic() + deadline_s
    errors = []
    for attempt in range(tries):
        try:
            r = run()
        except subprocess.TimeoutExpired as e:
            r = subprocess.CompletedProcess(e.cmd, None, b"", b"no answer within %d s" % e.timeout)
        if r.returncode == 0 or (attempt > 0 and done and done(r)):
            return r
        errors.append("ask %d: exit %s: %s" % (attempt + 1, r.returncode,
                                               r.stderr.decode(errors="replace").strip()))
        if time.monotonic() + 1 >= deadline:
            break
        time.sleep(1)
    raise AssertionError("%s: failed %d times:\n%s" % (what() if callable(what) else what,
                                                        len(errors), "\n".join(errors)))


def drain_keyed(cli, queue, vt=600, deadline_s=300):
    """Receives (--max 10) until the queue returns nothing; every message received. cli(*args,
    timeout=) runs the kyu CLI against the cluster. Each receive carries an attempt id
    (ReceiveRequestAttemptId) of its own and is asked again with it when it failed (a timeout
    across a failover, under load): the retry gets the messages the first ask leased, so none
    is left invisible under a lease nobody saw."""
    got = []
    deadline = time.monotonic() + deadline_s
    for _ in range(100000):
        if time.monotonic() >= deadline:
            break
        attempt = "drain-%s" % uuid.uuid4().hex  # a new one per receive, never reused
        r = ask_again(lambda: cli("--timeout", str(SLOW_TIMEOUT_S), "--json", "receive", queue,
                                  "--max", "10", "--visibility-timeout", str(vt), "--attempt-id",
                                  attempt, timeout=SLOW_TIMEOUT_S * 2 + 30),
                      "receive from %s" % queue, deadline_s=max(1, deadline - time.monotonic()))
        batch = [json.loads(l) for l in r.stdout.decode().splitlines() if l]
        if not batch:
            return got
        got.extend(batch)
    raise AssertionError("%s did not drain within %d s" % (queue, deadline_s))


def terminate(proc):
    """SIGTERM to proc (a Popen, or None) while it runs, SIGKILL after 30 s; False when it had
    to be killed."""
    if proc is None or proc.poll() is not None:
        return True
    proc.terminate()
    try:
        proc.wait(timeout=30)
        return True
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)
        return False


class Broker:
    """A kyu-broker process; restartable on the same data directory and port."""

    def __init__(self, *extra_args):
        self.data = tempfile.mkdtemp(prefix="kyu-it-")
        self.endpoint = "tcp://127.0.0.1:%d" % free_port()
        self.extra = list(extra_args)
        self.proc = None
        self.log = open(os.path.join(self.data, "broker.log"), "ab")

    def start(self):
        self.proc = subprocess.Popen(
            [BROKER, "--data", os.path.join(self.data, "db"), "--listen", self.endpoint] + self.extra,
            stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("kyu-broker exited with %s; log:\n%s" % (self.proc.returncode, self.read_log()))
            if run_probe([CLI, "--broker", self.endpoint, "--timeout", "5", "list-queues"],
                         timeout=15).returncode == 0:
                return self
            time.sleep(0.05)
        raise AssertionError("kyu-broker did not answer within 60 s")

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
                raise AssertionError("kyu-broker did not stop on SIGTERM within 30 s")
        return self.proc.returncode if self.proc else None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def read_log(self):
        self.log.flush()
        with open(os.path.join(self.data, "broker.log"), "rb") as f:
            return f.read().decode(errors="replace")

    def cleanup(self):
        report = ""
        try:
            if self.proc and self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=30)
        finally:
            self.log.close()
            report = sanitizer_report(os.path.join(self.data, "broker.log"))
            shutil.rmtree(self.data, ignore_errors=True)
        if report:
            raise AssertionError("kyu-broker's log has a sanitizer report:\n%s" % report)

    def cli(self, *args, input=None, timeout=60):
        return subprocess.run([CLI, "--broker", self.endpoint] + list(args), input=input,
                              capture_output=True, timeout=timeout)

    def ok(self, *args, input=None):
        r = self.cli(*args, input=input)
        if r.returncode != 0:
            raise AssertionError("kyu %s failed (%d): %s" % (" ".join(args), r.returncode, r.stderr.decode()))
        return r.stdout.decode()

    def json_lines(self, *args, input=None):
        return [json.loads(l) for l in self.ok("--json", *args, input=input).splitlines() if l]

    def attributes(self, queue):
        """Numbers as ints; RedrivePolicy, RedriveAllowPolicy (JSON text) and Tags as given."""
        return {k: int(v) if isinstance(v, str) and v.lstrip("-").isdigit() else v
                for k, v in self.json_lines("get-queue-attributes", queue)[0].items()}

    def counts(self, queue, which=("visible", "in_flight", "delayed")):
        """The queue's exact counters, in the order which names them."""
        a = self.attributes(queue)
        return tuple(a[COUNTERS[w]] for w in which)

    def wait_for_receive(self, queue, deadline_s):
        """Receives (polling every 50 ms) until a message comes; it, or None at the deadline."""
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            got = self.json_lines("receive", queue)
            if got:
                return got[0]
            time.sleep(0.05)
        return None

    def drain(self, queue, vt=600):
        """Receives until the queue returns nothing; returns every message received."""
        got = []
        for _ in range(100000):
            batch = self.json_lines("receive", queue, "--max", "10", "--visibility-timeout", str(vt))
            if not batch:
                return got
            got.extend(batch)
        raise AssertionError("queue did not drain")


class BrokerCase(unittest.TestCase):
    """A test case with one broker (self.b), started with broker_args and the queues of
    `queues` created before each test, removed after it; counts() gives the counters that
    count_states names."""
    broker_args = ()
    queues = ()
    count_states = ("visible", "in_flight", "delayed")

    def setUp(self):
        self.b = Broker(*self.broker_args).start()
        for q in self.queues:
            self.b.ok("create-queue", q)

    def tearDown(self):
        self.b.cleanup()

    def fails(self, status, text, *args, input=None):
        """`kyu ARGS` exits with status and its error names text."""
        r = self.b.cli(*args, input=input)
        err = r.stderr.decode()
        self.assertEqual(r.returncode, status, "kyu %s: %s" % (" ".join(args), err))
        self.assertIn(text, err)

    def raw(self, header, *bodies, frames=False):
        return request(self.b.endpoint, header, *bodies, frames=frames)

    def counts(self, queue):
        return self.b.counts(queue, self.count_states)


class ThreeNodes:
    """Three kyu-broker processes on this host, peers of one cluster: start_nodes(prefix) in
    setUp (self.data, self.logs, self.procs by client endpoint, self.endpoints), stop_nodes()
    in tearDown (SIGTERM, then SIGKILL after 30 s; the data dir removed)."""

    def start_nodes(self, prefix):
        self.data = tempfile.mkdtemp(prefix=prefix)
        specs = [(i, "127.0.0.1:%d" % free_port(), "tcp://127.0.0.1:%d" % free_port()) for i in (1, 2, 3)]
        args = []
        for i, raft, client in specs:
            args += ["--peer", "%d,%s,%s" % (i, raft, client)]
        self.logs = [open(os.path.join(self.data, "broker-%d.log" % i), "ab") for i, _, _ in specs]
        self.procs = {}
        for (i, _, client), log in zip(specs, self.logs):
            self.procs[client] = subprocess.Popen(
                [BROKER, "--node-id", str(i), "--data", os.path.join(self.data, "db-%d" % i)] + args,
                stdout=log, stderr=log)
        self.endpoints = ",".join(client for _, _, client in specs)

    def stop_nodes(self):
        for p in self.procs.values():
            terminate(p)
        for log in self.logs:
            log.close()
        reports = [sanitizer_report(log.name) for log in self.logs]
        shutil.rmtree(self.data, ignore_errors=True)
        if any(reports):
            raise AssertionError("a kyu-broker's log has a sanitizer report:\n%s" % "\n".join(reports))

    def cli(self, *args, endpoint=None, timeout=120, input=None):
        return subprocess.run([CLI, "--broker", endpoint or self.endpoints] + list(args),
                              capture_output=True, timeout=timeout, input=input)

    def ok(self, *args, input=None):
        r = self.cli(*args, input=input)
        if r.returncode != 0:
            raise AssertionError("kyu %s failed (%d): %s" % (" ".join(args), r.returncode, r.stderr.decode()))
        return r.stdout.decode()

    def leader(self, not_this=None, deadline_s=60):
        """The endpoint of the node that leads and serves (optionally not not_this)."""
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            r = self.cli("--json", "cluster", "status", timeout=60)
            for s in [json.loads(l) for l in r.stdout.decode().splitlines() if l]:
                if s["role"] == "leader" and s["endpoint"] != not_this and \
                        self.cli("list-queues", endpoint=s["endpoint"], timeout=10).returncode == 0:
                    return s["endpoint"]
            time.sleep(0.05)
        raise AssertionError("no leader within %d s" % deadline_s)


class Node:
    """One kyu-broker of a cluster: its id, raft address, client endpoint, data dir
    (DATA/db-ID) and log (DATA/broker-ID.log, appended to across restarts); start(peers,
    *extra) runs it with a --peer entry for each of peers."""
    def __init__(self, node_id, raft, client, data, env=None):
        self.id, self.raft, self.client, self.data = node_id, raft, client, data
        self.env = dict(os.environ, **(env or {}))
        self.proc = None
        self.log = open(os.path.join(data, "broker-%d.log" % node_id), "ab")

    def spec(self):
        return "%d,%s,%s" % (self.id, self.raft, self.client)

    def start(self, peers, *extra):
        args = []
        for p in peers:
            args += ["--peer", p.spec()]
        self.proc = subprocess.Popen(
            [BROKER, "--node-id", str(self.id), "--data", os.path.join(self.data, "db-%d" % self.id)]
            + args + list(extra), stdout=self.log, stderr=self.log, env=self.env)

    def stop(self):
        terminate(self.proc)

    def kill9(self):
        self.proc.kill()
        self.proc.wait(timeout=30)

    def read_log(self):
        self.log.flush()
        with open(self.log.name, "rb") as f:
            return f.read().decode(errors="replace")


class Members:
    """A cluster of Node processes sharing one temporary dir (a unittest.TestCase mixin):
    make_cluster(n) starts nodes 1..n as peers (self.nodes); tearDown stops them all (SIGTERM,
    then SIGKILL after 30 s), fails on a sanitizer report in a log and removes the dir. cli/ok
    go to every node of self.nodes (or those given) with the CLI's failover."""
    def make_cluster(self, n, env=None):
        self.data = tempfile.mkdtemp(prefix="kyu-members-")
        self.nodes = [Node(i, "127.0.0.1:%d" % free_port(), "tcp://127.0.0.1:%d" % free_port(),
                           self.data, env) for i in range(1, n + 1)]
        for node in self.nodes:
            node.start(self.nodes)

    def tearDown(self):
        for n in self.nodes:
            n.stop()
        # Under -DKYU_SANITIZE=ON a broker reports memory errors and leaks in its log.
        bad = [(n.id, n.read_log()) for n in self.nodes if "Sanitizer" in n.read_log()]
        for n in self.nodes:
            n.log.close()
        shutil.rmtree(self.data, ignore_errors=True)
        self.assertEqual(bad, [], "a broker reported a sanitizer error")

    def endpoints(self, nodes=None):
        return ",".join(n.client for n in (nodes or self.nodes))

    def cli(self, *args, nodes=None, input=None, timeout=150):
        return subprocess.run([CLI, "--broker", self.endpoints(nodes)] + list(args), input=input,
                              capture_output=True, timeout=timeout)

    def ok(self, *args, nodes=None, input=None):
        r = self.cli(*args, nodes=nodes, input=input)
        if r.returncode != 0:
            raise AssertionError("kyu %s failed (%d): %s%s" % (" ".join(args), r.returncode,
                                                                r.stderr.decode(), self.logs()))
        return r.stdout.decode()

    def remove_member(self, node_id, nodes=None):
        """`kyu cluster remove ID` as an operator on a loaded cluster runs it: with a timeout
        above the broker's own bound of a change (60 s, KYU_MEMBERSHIP_TIMEOUT_MS), and asked
        again when it still failed (TIMEOUT, BUSY, leadership moved): asking again is safe,
        since one under way is answered BUSY and one done "is not a member", which after a
        failed ask means an earlier ask did it (docs/ARCHITECTURE.md "Membership changes")."""
        ask_again(lambda: self.cli("--timeout", "90", "cluster", "remove", str(node_id),
                                   nodes=nodes, timeout=150),
                  lambda: "kyu cluster remove %d%s" % (node_id, self.logs()), tries=4,
                  deadline_s=400, done=lambda r: b"is not a member" in r.stderr)

    def logs(self):
        return "".join("\n--- node %d ---\n%s" % (n.id, n.read_log()[-3000:]) for n in self.nodes)

    def status(self, nodes=None):
        r = self.cli("--json", "cluster", "status", nodes=nodes, timeout=60)
        return {s["endpoint"]: s for s in (json.loads(l) for l in r.stdout.decode().splitlines() if l)}

    def leader(self, nodes=None, deadline_s=30):
        """The node that leads and serves (it has applied an entry of its own term)."""
        nodes = nodes or self.nodes
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            for s in self.status(nodes).values():
                if s["role"] == "leader":
                    n = next(n for n in nodes if n.client == s["endpoint"])
                    if run_probe([CLI, "--broker", n.client, "--timeout", "5", "list-queues"],
                                 timeout=15).returncode == 0:
                        return n
            time.sleep(0.05)
        raise AssertionError("no leader within %d s%s" % (deadline_s, self.logs()))

    def wait_for(self, what, check, deadline_s=60):
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.05)
        raise AssertionError("%s: not within %d s%s" % (what, deadline_s, self.logs()))

    def assert_out_for_good(self, node):
        """A removed node was demoted to learner first, so it knows it does not vote: it
        stays a follower that never campaigns (watched for 3 s, over an election timeout)."""
        self.wait_for("node %d knows it is a learner" % node.id,
                      lambda: self.status([node])[node.client].get("membership") == "learner", 30)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            st = self.status([node])[node.client]
            self.assertEqual((st["role"], st["membership"]), ("follower", "learner"), st)
            time.sleep(0.1)


class NodesById:
    """Three kyu-broker processes of one cluster, keyed by node id 1, 2, 3 (a unittest.TestCase
    mixin): open_nodes(prefix) in setUp makes the dir self.top, the addresses (self.clients,
    self.endpoints, the --peer list self.args) and the logs (TOP/broker-ID.log); start(i,
    *extra) runs node i on data_dir(i) (TOP/db-ID; a test may say otherwise); close_nodes() in
    tearDown stops them (SIGTERM, SIGKILL after 30 s), closes the logs and returns their
    sanitizer reports (the caller removes self.top)."""

    def open_nodes(self, prefix):
        self.top = tempfile.mkdtemp(prefix=prefix)
        self.clients = {i: "tcp://127.0.0.1:%d" % free_port() for i in (1, 2, 3)}
        self.args = []
        for i in (1, 2, 3):
            self.args += ["--peer", "%d,127.0.0.1:%d,%s" % (i, free_port(), self.clients[i])]
        self.endpoints = ",".join(self.clients[i] for i in (1, 2, 3))
        self.logs = {i: open(os.path.join(self.top, "broker-%d.log" % i), "ab") for i in (1, 2, 3)}
        self.procs = {}

    def data_dir(self, i):
        return os.path.join(self.top, "db-%d" % i)

    def start(self, i, *extra):
        self.procs[i] = subprocess.Popen(
            [BROKER, "--node-id", str(i), "--data", self.data_dir(i)] + self.args + list(extra),
            stdout=self.logs[i], stderr=self.logs[i])

    def stop(self, i):
        """SIGTERM to node i; its exit status (a failure when it does not stop within 30 s)."""
        if not terminate(self.procs[i]):
            raise AssertionError("node %d did not stop on SIGTERM within 30 s" % i)
        return self.procs[i].returncode

    def close_nodes(self):
        for i in self.procs:
            try:
                self.stop(i)
            except AssertionError:
                pass  # killed: tearDown goes on
        for log in self.logs.values():
            log.close()
        return [sanitizer_report(log.name) for log in self.logs.values()]

    def log(self, i):
        self.logs[i].flush()
        with open(self.logs[i].name, "rb") as f:
            return f.read().decode(errors="replace")

    def cli(self, *args, endpoint=None, timeout=120, input=None):
        return subprocess.run([CLI, "--broker", endpoint or self.endpoints] + list(args),
                              capture_output=True, timeout=timeout, input=input)

    def ok(self, *args):
        r = self.cli(*args)
        if r.returncode != 0:
            raise AssertionError("kyu %s failed: %s%s" % (" ".join(args), r.stderr.decode(), "".join(
                "\n--- node %d ---\n%s" % (i, self.log(i)[-3000:]) for i in self.logs)))
        return r.stdout.decode()

    def status(self):
        """`kyu cluster status` by node id."""
        r = self.cli("--json", "cluster", "status", timeout=60)
        return {s["id"]: s for s in (json.loads(l) for l in r.stdout.decode().splitlines() if l)}

    def leader(self, deadline_s=60):
        """The id of the node that leads and serves (not read-only, and it answers a read)."""
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            for i, s in self.status().items():
                if s.get("role") == "leader" and "read_only" not in s and run_probe(
                        [CLI, "--broker", self.clients[i], "--timeout", "5", "list-queues"],
                        timeout=15).returncode == 0:
                    return i
            time.sleep(0.05)
        raise AssertionError("no serving leader within %d s: %s" % (deadline_s, self.status()))

    def wait_caught_up(self, i, deadline_s=60):
        """Until node i (not read-only) has applied the leader's commit index."""
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            st = self.status()
            lead = [s for s in st.values() if s.get("role") == "leader"]
            me = st.get(i, {})
            if lead and "read_only" not in me and me.get("applied_index", 0) >= lead[0]["commit_index"]:
                return
            time.sleep(0.05)
        raise AssertionError("node %d did not catch up within %d s: %s\n%s" % (
            i, deadline_s, self.status(), self.log(i)))
