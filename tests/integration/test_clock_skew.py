"""Clock skew (issue 11, 3g): three nodes, node 3 run under libfaketime with its wall clock
5 minutes ahead (its monotonic clock untouched).
- Node 3 joining a cluster with correct clocks logs the skew loudly, hands leadership back
  when it is given it, and leases granted meanwhile end after their real duration.
- Node 3 leading first (its clock is then the cluster's time) and killed: the next leader's
  time goes on at the rate of real time from there, so a 2 s lease ends after about 2 s,
  not after the 5 minutes its clock is behind; the other nodes log that they are behind.
Nothing acknowledged is lost in either. Every wait is bounded by a deadline; processes are
stopped by their PID only."""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

from harness import BROKER, CLI, free_port, terminate

FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"  # Debian: faketime
AHEAD = "+300s"


class Node:
    def __init__(self, node_id, peers_args, client, data, env=None):
        self.id, self.peers_args, self.client, self.data = node_id, peers_args, client, data
        self.env = env
        self.proc = None
        self.log_path = os.path.join(data, "broker-%d.log" % node_id)
        self.log = open(self.log_path, "ab")

    def start(self):
        env = dict(os.environ, **self.env) if self.env else None
        self.proc = subprocess.Popen(
            [BROKER, "--node-id", str(self.id), "--data", os.path.join(self.data, "db-%d" % self.id)]
            + self.peers_args, stdout=self.log, stderr=self.log, env=env)

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self):
        terminate(self.proc)

    def read_log(self):
        self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")


class ClockSkew(unittest.TestCase):
    def setUp(self):
        if not os.path.exists(FAKETIME_LIB):
            self.fail("%s is missing: scripts/deps.sh installs the Debian package faketime" % FAKETIME_LIB)
        self.data = tempfile.mkdtemp(prefix="kyu-skew-")
        specs = [(i, "127.0.0.1:%d" % free_port(), "tcp://127.0.0.1:%d" % free_port()) for i in (1, 2, 3)]
        args = []
        for i, raft, client in specs:
            args += ["--peer", "%d,%s,%s" % (i, raft, client)]
        fast = {"LD_PRELOAD": FAKETIME_LIB, "FAKETIME": AHEAD, "FAKETIME_DONT_FAKE_MONOTONIC": "1",
                # A sanitizer build wants its runtime first among the libraries; here it is not.
                "ASAN_OPTIONS": ":".join(o for o in (os.environ.get("ASAN_OPTIONS"),
                                                     "verify_asan_link_order=0") if o)}
        self.nodes = [Node(i, args, client, self.data, fast if i == 3 else None) for i, _, client in specs]
        self.fast = self.nodes[2]
        self.endpoints = ",".join(n.client for n in self.nodes)
        self.acked = []

    def tearDown(self):
        for n in self.nodes:
            n.stop()
            n.log.close()
        shutil.rmtree(self.data, ignore_errors=True)

    def cli(self, *args, endpoint=None, input=None, timeout=120):
        return subprocess.run([CLI, "--broker", endpoint or self.endpoints] + list(args),
                              input=input, capture_output=True, timeout=timeout)

    def ok(self, *args, endpoint=None):
        r = self.cli(*args, endpoint=endpoint)
        if r.returncode != 0:
            raise AssertionError("kyu %s failed (%d): %s%s" % (" ".join(args), r.returncode,
                                                             r.stderr.decode(), self.logs()))
        return r.stdout.decode()

    def logs(self):
        return "".join("\n--- node %d ---\n%s" % (n.id, n.read_log()[-3000:]) for n in self.nodes)

    def status(self):
        r = self.cli("--json", "cluster", "status", timeout=60)
        return [json.loads(l) for l in r.stdout.decode().splitlines() if l]

    def serving_leader(self, deadline_s=30):
        """The node that leads and serves (it answers a read), polled until deadline_s."""
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            for s in self.status():
                if s["role"] == "leader":
                    n = next(n for n in self.nodes if n.client == s["endpoint"])
                    if self.cli("list-queues", endpoint=n.client, timeout=10).returncode == 0:
                        return n
            time.sleep(0.05)
        raise AssertionError("no leader within %d s%s" % (deadline_s, self.logs()))

    def send(self, body):
        out = self.ok("--json", "send", "orders", body)
        self.acked.append(json.loads(out.splitlines()[0])["MessageId"])

    def send_until(self, nodes, text, deadline_s=30):
        """Sends one message at a time until text is in the log of one of nodes."""
        deadline = time.monotonic() + deadline_s
        i = 0
        while time.monotonic() < deadline:
            if any(text in n.read_log() for n in nodes):
                return
            self.send("until-%d" % i)
            i += 1
        raise AssertionError("%r not logged by nodes %s within %d s%s"
                             % (text, [n.id for n in nodes], deadline_s, self.logs()))

    def receive(self, vt, endpoint=None):
        out = self.ok("--json", "receive", "orders", "--max", "10", "--visibility-timeout", str(vt),
                      endpoint=endpoint)
        return [json.loads(l) for l in out.splitlines() if l]

    def wait_receivable(self, ids, deadline_s=30):
        """Receives (with a long lease) until every id in ids came back, within deadline_s of
        real time: leases of 2 s must end after about 2 s, whatever the clocks."""
        want, got = set(ids), []
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            got += self.receive(600)
            if want <= {m["MessageId"] for m in got}:
                return got
            time.sleep(0.1)
        raise AssertionError("leased messages %s not receivable again within %d s of real time%s"
                             % (sorted(want - {m["MessageId"] for m in got}), deadline_s, self.logs()))

    def drain(self):
        """Receives (with a long lease) until nothing is left, bounded."""
        got = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            batch = self.receive(600)
            if not batch:
                return got
            got += batch
        raise AssertionError("the queue did not drain within 120 s")

    def drain_and_check(self, already):
        """Receives what is left; every acknowledged id must be among what was received."""
        ids = {m["MessageId"] for m in list(already) + self.drain()}
        missing = set(self.acked) - ids
        self.assertEqual(missing, set(), "%d acknowledged messages lost" % len(missing))

    def test_a_node_with_a_fast_clock_logs_it_refuses_to_lead_and_leases_end_in_real_time(self):
        self.nodes[0].start()
        self.nodes[1].start()
        first = self.serving_leader()
        self.ok("create-queue", "orders", "--visibility-timeout", "600")
        for i in range(10):
            self.send("before-%d" % i)
        self.fast.start()
        # Node 3 follows; from the entries it holds before they commit it learns the
        # cluster's time and finds its clock ahead.
        self.send_until([self.fast], "CLOCK SKEW")
        log = self.fast.read_log()
        self.assertIn("ahead of the cluster's time", log)
        self.assertRegex(log, r"is 30\d\.\d s ahead")
        for n in self.nodes[:2]:
            self.assertNotIn("CLOCK SKEW", n.read_log())

        # Given leadership, node 3 hands it over at once.
        leader = self.serving_leader()
        self.assertIsNot(leader, self.fast)
        self.ok("cluster", "transfer", "3", endpoint=leader.client)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "handing leadership over" not in self.fast.read_log():
            time.sleep(0.05)
        self.assertIn("handing leadership over", self.fast.read_log(), self.logs())
        leader = self.serving_leader()
        self.assertIsNot(leader, self.fast, "node 3 kept leadership%s" % self.logs())
        self.assertIn(leader, (self.nodes[0], self.nodes[1]))
        del first

        # A 2 s lease ends after about 2 s of real time.
        got = self.drain()  # everything sent so far, leased for long
        self.send("leased")
        leased = self.receive(2)
        self.assertEqual([m["Body"] for m in leased], ["leased"])
        got += self.wait_receivable([leased[0]["MessageId"]])
        self.drain_and_check(got)

    def test_after_a_fast_leader_died_leases_end_in_real_time(self):
        for n in self.nodes:
            n.start()
        leader = self.serving_leader()
        if leader is not self.fast:
            # No command carries a time yet: node 3 cannot know its clock is ahead, and leads.
            self.ok("cluster", "transfer", "3", endpoint=leader.client)
            deadline = time.monotonic() + 30
            while leader is not self.fast and time.monotonic() < deadline:
                leader = self.serving_leader()
            self.assertIs(leader, self.fast, "node 3 did not take leadership%s" % self.logs())
        self.ok("create-queue", "orders", "--visibility-timeout", "600", endpoint=self.fast.client)
        for i in range(5):
            self.send("fast-%d" % i)
        # The others learn the cluster's time from node 3's entries: 5 minutes ahead of theirs.
        self.send_until(self.nodes[:2], "behind the cluster's time")
        self.assertNotIn("CLOCK SKEW", self.fast.read_log())
        leased = self.receive(2, endpoint=self.fast.client)  # granted at node 3's time
        self.assertTrue(leased)
        self.fast.kill9()

        # The next leader's clock is 5 minutes behind the leases' times; they end anyway.
        self.serving_leader()
        got = self.wait_receivable([m["MessageId"] for m in leased])
        self.drain_and_check(got)
        # And the new leader's own 2 s leases end after about 2 s too.
        self.send("late")
        late = [m for m in self.receive(2) if m["Body"] == "late"]
        self.assertEqual(len(late), 1)
        self.wait_receivable([late[0]["MessageId"]])


if __name__ == "__main__":
    unittest.main()
