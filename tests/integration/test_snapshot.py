"""Snapshot install on a three-node cluster (issue 4, items 4 and 6): a follower that was down
while the leader's log moved past its window, and a follower restarted from an empty data
directory, both catch up by fetching a member's state (a RocksDB checkpoint over the raft
port); each then leads and serves every acknowledged message, and no deleted one.
The brokers run with a short log window (KYU_LOG_WINDOW) so that compaction happens after a
few dozen entries. Every wait is bounded; processes are stopped by their PID only."""
import os
import shutil
import time
import unittest

import test_cluster

WINDOW = "32"


class Snapshot(test_cluster.Cluster):
    window = WINDOW  # None: the broker's default window, which these tests never pass

    def setUp(self):
        if self.window:
            os.environ["KYU_LOG_WINDOW"] = self.window
        super().setUp()

    def tearDown(self):
        super().tearDown()
        os.environ.pop("KYU_LOG_WINDOW", None)

    def fill(self, queue):
        """Many entries (one per CLI call) and a batch; returns the bodies sent."""
        bodies = []
        for i in range(120):
            body = "single-%03d" % i
            self.ok("send", queue, body)
            bodies.append(body)
        batch = ["batch-%04d" % i for i in range(1000)]
        self.ok("send", queue, "--lines", input="".join(b + "\n" for b in batch).encode())
        return bodies + batch

    def lead_and_drain(self, node, queue):
        """Makes node the leader and receives everything from it alone."""
        deadline = time.monotonic() + 60
        while self.leader() is not node:
            self.assertLess(time.monotonic(), deadline, "node %d did not take over" % node.id)
            self.cli("cluster", "transfer", str(node.id))
            time.sleep(0.2)
        got = []
        while time.monotonic() < deadline + 120:
            out = self.cli("--json", "receive", queue, "--max", "10", "--visibility-timeout", "600",
                           endpoint=node.client)
            self.assertEqual(out.returncode, 0, out.stderr.decode())
            batch = [test_cluster.json.loads(l) for l in out.stdout.decode().splitlines() if l]
            if not batch:
                return got
            got.extend(batch)
        raise AssertionError("queue did not drain")

    def behind_then_back(self, wipe, by_snapshot=True):
        leader = self.leader()
        self.ok("create-queue", "orders", "--visibility-timeout", "600")
        self.ok("send", "orders", "--lines", input="".join("gone-%d\n" % i for i in range(20)).encode())
        doomed = self.drain("orders")
        self.assertEqual(len(doomed), 20)
        for i in range(0, 20, 10):
            self.ok("delete", "orders", *[m["ReceiptHandle"] for m in doomed[i:i + 10]])
        follower = next(n for n in self.nodes if n is not leader)
        follower.kill9()
        if wipe:
            shutil.rmtree(os.path.join(self.data, "db-%d" % follower.id))
        sent = self.fill("orders")
        follower.start()
        self.wait_caught_up(follower, deadline_s=120)
        follower.log.flush()
        with open(follower.log.name, "rb") as f:
            installed = b"installed a snapshot" in f.read()
        self.assertEqual(installed, by_snapshot, self.logs())
        got = self.lead_and_drain(follower, "orders")
        bodies = sorted(m["Body"] for m in got)
        self.assertEqual(bodies, sorted(sent), "the snapshot-installed node lost or invented messages")
        # It keeps serving: a send after the install is stored and received.
        self.ok("send", "orders", "after-install")
        self.assertEqual([m["Body"] for m in self.drain("orders")], ["after-install"])

    def wiped_while_idle(self, by_snapshot):
        """Issue 11, 3a: a follower that had everything is wiped and restarted while no client
        writes. The leader still believes it holds the whole log, so only heartbeats (their
        answers) can bring it back; it must reach the leader's applied index on its own."""
        leader = self.leader()
        self.ok("create-queue", "idle", "--visibility-timeout", "600")
        sent = []
        for i in range(40):  # more entries than the log window (one entry per CLI call)
            self.ok("send", "idle", "one-%02d" % i)
            sent.append("one-%02d" % i)
        batch = ["idle-%03d" % i for i in range(200)]
        self.ok("send", "idle", "--lines", input="".join(b + "\n" for b in batch).encode())
        sent += batch
        follower = next(n for n in self.nodes if n is not leader)
        self.wait_caught_up(follower)
        follower.kill9()
        shutil.rmtree(os.path.join(self.data, "db-%d" % follower.id))
        follower.start()
        # No client write from here on until the follower has caught up.
        self.wait_caught_up(follower, deadline_s=60)
        follower.log.flush()
        with open(follower.log.name, "rb") as f:
            installed = b"installed a snapshot" in f.read()
        self.assertEqual(installed, by_snapshot, self.logs())
        got = self.lead_and_drain(follower, "idle")
        self.assertEqual(sorted(m["Body"] for m in got), sorted(sent),
                         "the wiped node lost or invented messages")

    def test_a_follower_wiped_while_no_client_writes_catches_up_by_snapshot(self):
        self.wiped_while_idle(by_snapshot=True)

    def test_a_follower_down_past_the_log_window_catches_up_by_snapshot(self):
        self.behind_then_back(wipe=False)

    def test_a_follower_restarted_from_an_empty_data_dir_catches_up(self):
        self.behind_then_back(wipe=True)


class WipedWithinTheWindow(Snapshot):
    """A follower restarted from an empty data dir while the leader still holds the whole log:
    the leader notices it lost what it acknowledged and sends the log again from index 1."""
    window = None

    def test_a_wiped_follower_gets_the_log_again(self):
        self.behind_then_back(wipe=True, by_snapshot=False)

    def test_a_follower_wiped_while_no_client_writes_gets_the_log_again(self):
        self.wiped_while_idle(by_snapshot=False)


def load_tests(loader, tests, pattern):
    # Only this file's tests: the base class's run in test_cluster.py.
    return unittest.TestSuite(
        [Snapshot(name) for name in loader.getTestCaseNames(Snapshot) if name in Snapshot.__dict__]
        + [WipedWithinTheWindow(name) for name in loader.getTestCaseNames(WipedWithinTheWindow)
           if name in WipedWithinTheWindow.__dict__])


if __name__ == "__main__":
    unittest.main()
