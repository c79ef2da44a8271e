"""A three-node cluster on 127.0.0.1 (issue 4): kill -9 of the leader during a stream of sends
(and of receives and deletes) loses no acknowledged message, honours every lease and brings
back no deleted one; the killed node rejoins; a
rolling restart by SIGTERM hands leadership over and every line of a stream is acknowledged;
`kyu cluster status` reports every node.
Every wait is bounded by a deadline; processes are stopped by their PID only."""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import unittest

from harness import (BROKER, CLI, SLOW_TIMEOUT_S, STREAM_TIMEOUT_S, drain_keyed, free_port,
                     run_probe, sanitizer_report, terminate)


class Node:
    def __init__(self, node_id, peers_args, client, data):
        self.id, self.peers_args, self.client, self.data = node_id, peers_args, client, data
        self.proc = None
        self.log = open(os.path.join(data, "broker-%d.log" % node_id), "ab")

    def start(self):
        self.proc = subprocess.Popen(
            [BROKER, "--node-id", str(self.id), "--data", os.path.join(self.data, "db-%d" % self.id)]
            + self.peers_args, stdout=self.log, stderr=self.log)

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self):
        terminate(self.proc)


class Stream:
    """`kyu send --lines` of lines in the background: acked fills with the ids as they are
    acknowledged, ready is set once ready_at of them (or all) came back."""

    def __init__(self, endpoints, lines, ready_at):
        self.proc = subprocess.Popen([CLI, "--broker", endpoints, "--timeout", str(STREAM_TIMEOUT_S),
                                      "--json", "send", "orders", "--lines"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.acked, self.ready = [], threading.Event()

        def read_acks():
            for line in self.proc.stdout:
                self.acked.append(json.loads(line)["MessageId"])
                if len(self.acked) >= ready_at:
                    self.ready.set()
            self.ready.set()

        self.threads = [threading.Thread(target=read_acks),
                        threading.Thread(target=lambda: (self.proc.stdin.write(lines), self.proc.stdin.close()))]
        for t in self.threads:
            t.start()

    def finish(self):
        """Waits for the CLI to end (bounded); returns its stderr."""
        self.proc.wait(timeout=300)
        for t in self.threads:
            t.join(timeout=60)
        err = self.proc.stderr.read().decode()
        self.proc.stdout.close()
        self.proc.stderr.close()
        return err


class ClusterFixture:
    """Three kyu-brokers on 127.0.0.1 (random ports, a temporary data directory) and the
    helpers that drive them, without tests: a test class of another file takes them as
    `class X(test_cluster.ClusterFixture, unittest.TestCase)` (subclassing Cluster would run
    its tests again)."""
    def setUp(self):
        self.data = tempfile.mkdtemp(prefix="kyu-cluster-")
        specs = []
        for i in (1, 2, 3):
            specs.append((i, "127.0.0.1:%d" % free_port(), "tcp://127.0.0.1:%d" % free_port()))
        args = []
        for i, raft, client in specs:
            args += ["--peer", "%d,%s,%s" % (i, raft, client)]
        self.nodes = [Node(i, args, client, self.data) for i, _, client in specs]
        self.endpoints = ",".join(n.client for n in self.nodes)
        for n in self.nodes:
            n.start()

    def tearDown(self):
        for n in self.nodes:
            n.stop()
            n.log.close()
        reports = [sanitizer_report(n.log.name) for n in self.nodes]
        shutil.rmtree(self.data, ignore_errors=True)
        if any(reports):
            raise AssertionError("a kyu-broker's log has a sanitizer report:\n%s" % "\n".join(reports))

    def cli(self, *args, endpoint=None, input=None, timeout=120):
        return subprocess.run([CLI, "--broker", endpoint or self.endpoints] + list(args),
                              input=input, capture_output=True, timeout=timeout)

    def ok(self, *args, input=None):
        r = self.cli(*args, input=input)
        if r.returncode != 0:
            raise AssertionError("kyu %s failed (%d): %s" % (" ".join(args), r.returncode, r.stderr.decode()))
        return r.stdout.decode()

    def logs(self):
        out = ""
        for n in self.nodes:
            n.log.flush()
            with open(n.log.name, "rb") as f:
                out += "\n--- node %d ---\n%s" % (n.id, f.read().decode(errors="replace")[-3000:])
        return out

    def status(self):
        r = self.cli("--json", "cluster", "status", timeout=60)
        return [json.loads(l) for l in r.stdout.decode().splitlines() if l]

    def leader(self, deadline_s=30):
        """The node `kyu cluster status` calls leader, once it also serves requests (a new
        leader first applies an entry of its own term)."""
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            for s in self.status():
                if s["role"] == "leader":
                    n = next(n for n in self.nodes if n.client == s["endpoint"])
                    if run_probe([CLI, "--broker", n.client, "--timeout", "5", "list-queues"],
                                 timeout=15).returncode == 0:
                        return n
            time.sleep(0.05)
        raise AssertionError("no leader within %d s" % deadline_s)

    def wait_caught_up(self, node, deadline_s=60):
        """Bounded wait until node has applied what the leader has."""
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            st = {s["endpoint"]: s for s in self.status()}
            me = st.get(node.client)
            lead = [s for s in st.values() if s["role"] == "leader"]
            if me and lead and me["role"] == "follower" and me["applied_index"] >= lead[0]["commit_index"]:
                return
            time.sleep(0.05)
        raise AssertionError("node %d did not catch up within %d s: %s" % (node.id, deadline_s, self.status()))

    def drain(self, queue):
        """Every message of queue, received with leases of 600 s; each receive asked again with
        its attempt id when a failover or a loaded machine held it up (harness.drain_keyed)."""
        return drain_keyed(self.cli, queue)


class Cluster(ClusterFixture, unittest.TestCase):
    def test_kill9_of_the_leader_loses_no_acknowledged_send_and_no_delete_comes_back(self):
        self.leader()
        self.ok("create-queue", "orders", "--visibility-timeout", "600")
        # Messages deleted before the failover must stay deleted after it.
        self.ok("send", "orders", "--lines", input="".join("gone-%d\n" % i for i in range(20)).encode())
        doomed = self.drain("orders")
        self.assertEqual(len(doomed), 20)
        for i in range(0, 20, 10):
            self.ok("delete", "orders", *[m["ReceiptHandle"] for m in doomed[i:i + 10]])

        leader = self.leader()
        lines = "".join("order-%05d\n" % i for i in range(3000)).encode()
        stream = Stream(self.endpoints, lines, 300)
        self.assertTrue(stream.ready.wait(60), "the producer got no acknowledgements")
        leader.kill9()  # mid-stream
        stream.finish()
        acked = stream.acked
        self.assertGreaterEqual(len(acked), 300)

        new_leader = self.leader()
        self.assertIsNot(new_leader, leader)
        leader.start()  # the old leader rejoins as a follower from its data dir
        self.wait_caught_up(leader)
        received = self.drain("orders")
        ids = [m["MessageId"] for m in received]
        missing = set(acked) - set(ids)
        self.assertEqual(missing, set(), "%d acknowledged messages lost" % len(missing))
        self.assertEqual(len(ids), len(set(ids)), "a message was delivered twice")
        # Each line carries a request key kept across its resends: stored exactly once.
        bodies = [m["Body"] for m in received]
        dups = len(bodies) - len(set(bodies))
        self.assertEqual(dups, 0, "%d lines were stored twice" % dups)
        self.assertFalse({m["MessageId"] for m in doomed} & set(ids), "a deleted message came back")
        for m in received:
            self.assertRegex(m["Body"], r"^order-\d{5}$")

    def test_kill9_during_sends_and_receives_keeps_every_message_lease_and_delete(self):
        self.leader()
        self.ok("create-queue", "orders", "--visibility-timeout", "600")
        self.ok("send", "orders", "--lines", input="".join("held-%d\n" % i for i in range(10)).encode())
        out = self.ok("--json", "receive", "orders", "--max", "10", "--visibility-timeout", "600")
        held = [json.loads(l) for l in out.splitlines() if l]  # leased, never deleted

        leader = self.leader()
        lines = "".join("order-%05d\n" % i for i in range(2000)).encode()
        deliveries, deleted, failures = [], [], []
        producing = threading.Event()
        producing.set()

        def consume():
            # Receives and deletes while the producer runs and the leader dies; each call is
            # one CLI run (its retries across the failover carry one request key).
            deadline = time.monotonic() + 240
            while producing.is_set() and time.monotonic() < deadline:
                r = self.cli("--timeout", str(SLOW_TIMEOUT_S), "--json", "receive", "orders", "--max",
                             "10", "--visibility-timeout", "600", timeout=SLOW_TIMEOUT_S * 2 + 30)
                if r.returncode != 0:
                    failures.append("receive: " + r.stderr.decode())
                    continue
                batch = [json.loads(l) for l in r.stdout.decode().splitlines() if l]
                if not batch:
                    time.sleep(0.02)
                    continue
                deliveries.extend(batch)
                d = self.cli("--timeout", str(SLOW_TIMEOUT_S), "delete", "orders",
                             *[m["ReceiptHandle"] for m in batch], timeout=SLOW_TIMEOUT_S * 2 + 30)
                if d.returncode != 0:
                    failures.append("delete: " + d.stderr.decode())
                else:
                    deleted.extend(m["MessageId"] for m in batch)

        consumer = threading.Thread(target=consume)
        consumer.start()
        stream = Stream(self.endpoints, lines, 300)
        self.assertTrue(stream.ready.wait(60), "the producer got no acknowledgements")
        leader.kill9()  # mid-stream of sends, receives and deletes
        err = stream.finish()
        producing.clear()
        consumer.join(timeout=300)
        acked = stream.acked
        self.assertEqual(len(acked), 2000, err[-1000:] + self.logs())

        leader.start()  # the old leader rejoins as a follower from its data dir
        self.wait_caught_up(leader)
        rest = self.drain("orders")
        delivered = [m["MessageId"] for m in held + deliveries + rest]
        self.assertEqual(failures, [], "a receive or delete failed across the failover")
        self.assertEqual(set(acked) - set(delivered), set(), "acknowledged messages lost")
        # Leases of 600 s were granted before and after the failover, and retried receives
        # return their first leases: no message is delivered twice.
        self.assertEqual(len(delivered), len(set(delivered)), "a message was delivered twice")
        self.assertFalse({m["MessageId"] for m in held} & {m["MessageId"] for m in deliveries + rest},
                         "a lease granted by the old leader was not honoured")
        self.assertFalse(set(deleted) & {m["MessageId"] for m in rest}, "a deleted message came back")
        self.assertEqual(len(rest) + len(deleted), 2000, "every acknowledged send is there exactly once")

    def test_sigterm_on_the_leader_hands_leadership_over_and_a_stream_loses_nothing(self):
        self.leader()
        self.ok("create-queue", "orders", "--visibility-timeout", "600")
        acked = []
        # A rolling restart: each node in turn gets SIGTERM while a producer streams.
        for round_ in range(3):
            leader = self.leader()
            lines = "".join("r%d-%05d\n" % (round_, i) for i in range(1500)).encode()
            stream = Stream(self.endpoints, lines, 200)
            self.assertTrue(stream.ready.wait(60), "the producer got no acknowledgements")
            leader.stop()  # SIGTERM: hands leadership over, then exits
            self.assertEqual(leader.proc.returncode, 0, "the broker did not exit cleanly on SIGTERM")
            with open(leader.log.name, "rb") as f:
                self.assertIn(b"leadership handed over", f.read())
            err = stream.finish()
            self.assertEqual(stream.proc.returncode, 0, err[-2000:] + self.logs())
            self.assertEqual(len(stream.acked), 1500, "every line is acknowledged across the restart")
            acked += stream.acked
            leader.start()
            self.wait_caught_up(leader)
        received = self.drain("orders")
        ids = [m["MessageId"] for m in received]
        self.assertEqual(set(acked) - set(ids), set(), "acknowledged messages lost")
        self.assertEqual(len(received), 4500, "every line stored exactly once")

    def test_cluster_transfer_moves_leadership_to_the_chosen_node(self):
        leader = self.leader()
        target = next(n for n in self.nodes if n is not leader)
        # A transfer the target does not complete within an election timeout is abandoned
        # (documented): on a loaded machine (the sanitizer run beside other work) that
        # happens, and an operator would ask again. So ask again every 5 s, at most 6 times.
        for attempt in range(6):
            self.ok("cluster", "transfer", str(target.id))
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and self.leader() is not target:
                time.sleep(0.05)
            leader = self.leader()
            if leader is target:
                break
        self.assertIs(leader, target, "leadership did not move to node %d" % target.id)
        self.ok("create-queue", "orders")
        self.assertEqual(self.cli("cluster", "transfer", "99").returncode, 1)

    def test_cluster_status_reports_every_node_and_an_unreachable_one(self):
        leader = self.leader()
        follower = next(n for n in self.nodes if n is not leader)
        follower.kill9()
        st = self.status()
        self.assertEqual(len(st), 3)
        by_ep = {s["endpoint"]: s for s in st}
        self.assertEqual(by_ep[follower.client]["role"], "unreachable")
        self.assertEqual(by_ep[leader.client]["role"], "leader")
        self.assertEqual(by_ep[leader.client]["id"], leader.id)
        self.assertTrue(by_ep[leader.client]["raft_address"].startswith("tcp://127.0.0.1:"))


if __name__ == "__main__":
    unittest.main()
