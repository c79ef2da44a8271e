"""Backup and restore (issue 16, item 6; docs/OPERATIONS.md): `kyu-broker --data DIR --backup
OUT` writes RocksDB checkpoints of a stopped node's log and state; a node started on a copy
of OUT has every queue, attribute, message, lease and delete of the moment of the backup,
and nothing written after it. A running node's data is refused, and so is an OUT that
exists. In a cluster a follower is stopped, backed up and started again while the others
serve, and every node of a lost cluster restored from that one backup has every message
acknowledged before it. Every wait is bounded; processes are stopped by their PID only."""
import json
import os
import shutil
import subprocess
import tempfile
import unittest

from harness import BROKER, Broker, NodesById


def backup(data, out):
    return subprocess.run([BROKER, "--data", data, "--backup", out], capture_output=True, timeout=120)


class Backup(unittest.TestCase):
    def setUp(self):
        self.b = Broker().start()
        self.db = os.path.join(self.b.data, "db")
        self.out = tempfile.mkdtemp(prefix="kyu-backup-")

    def tearDown(self):
        try:
            self.b.cleanup()
        finally:
            shutil.rmtree(self.out, ignore_errors=True)

    def test_a_node_restored_from_a_backup_has_everything_of_the_backup_and_nothing_after(self):
        b = self.b
        b.ok("create-queue", "orders", "--visibility-timeout", "600")
        b.ok("create-queue", "slow", "--delay", "900")
        sent = {}
        for i in range(50):
            sent["order-%d" % i] = b.ok("send", "orders", "order-%d" % i).strip()
        b.ok("send", "slow", "late")
        got = b.json_lines("receive", "orders", "--max", "5")
        self.assertEqual(len(got), 5)
        for m in got[:2]:
            b.ok("delete", "orders", m["ReceiptHandle"])
        deleted = {m["Body"] for m in got[:2]}
        leased = {m["Body"] for m in got[2:]}

        # A running node's data is refused: RocksDB's lock, said plainly.
        r = backup(self.db, os.path.join(self.out, "running"))
        self.assertEqual(r.returncode, 1)
        self.assertIn("is the node running", r.stderr.decode())

        self.assertEqual(b.stop(), 0)
        dest = os.path.join(self.out, "b1")
        r = backup(self.db, dest)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        self.assertEqual(sorted(os.listdir(dest)), ["rlog", "state"])
        r = backup(self.db, dest)  # never over an existing directory
        self.assertEqual(r.returncode, 1)
        self.assertIn("must not exist", r.stderr.decode())

        # Written after the backup: not in it.
        b.start()
        b.ok("send", "orders", "after-the-backup")
        b.ok("create-queue", "later")
        self.assertEqual(b.stop(), 0)

        # Restore: the data directory is gone, a copy of the backup takes its place.
        shutil.rmtree(self.db)
        shutil.copytree(dest, self.db)
        b.start()
        self.assertEqual(sorted(b.ok("list-queues").split()), ["orders", "slow"])
        self.assertEqual(b.attributes("orders")["VisibilityTimeout"], 600)
        self.assertEqual(b.attributes("slow")["DelaySeconds"], 900)
        self.assertEqual(b.counts("orders"), (45, 3, 0))
        self.assertEqual(b.counts("slow"), (0, 0, 1))
        bodies = [m["Body"] for m in b.drain("orders")]
        self.assertEqual(len(bodies), len(set(bodies)))
        self.assertEqual(set(bodies), set(sent) - deleted - leased)
        # The restored node takes writes.
        b.ok("send", "orders", "after-the-restore")
        self.assertEqual([m["Body"] for m in b.drain("orders")], ["after-the-restore"])

    def test_backup_of_a_missing_data_directory_is_refused_and_creates_nothing(self):
        r = backup(os.path.join(self.out, "nothing-here"), os.path.join(self.out, "b"))
        self.assertEqual(r.returncode, 1)
        self.assertIn("no data directory", r.stderr.decode())
        self.assertEqual(os.listdir(self.out), [])


class ClusterBackup(NodesById, unittest.TestCase):
    """A follower is stopped, backed up and started again while the others serve; later the
    whole cluster is lost and every node restored from that one backup."""

    def setUp(self):
        self.open_nodes("kyu-backup3-")
        for i in (1, 2, 3):
            self.start(i)

    def tearDown(self):
        try:
            reports = self.close_nodes()
        finally:
            shutil.rmtree(self.top, ignore_errors=True)
        if any(reports):
            raise AssertionError("a kyu-broker's log has a sanitizer report:\n%s" % "\n".join(reports))

    def test_every_node_restored_from_one_followers_backup_serves_what_was_acknowledged_before_it(self):
        leader = self.leader()
        self.ok("create-queue", "orders", "--visibility-timeout", "600")
        before = {self.ok("send", "orders", "before-%d" % i).strip() for i in range(30)}
        follower = next(i for i in (1, 2, 3) if i != leader)
        self.wait_caught_up(follower)  # it holds every acknowledged send
        self.assertEqual(self.stop(follower), 0)
        out = os.path.join(self.top, "backup")
        r = backup(self.data_dir(follower), out)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        self.start(follower)
        # The cluster served all along; what comes after the backup is not in it.
        after = {self.ok("send", "orders", "after-%d" % i).strip() for i in range(5)}
        self.wait_caught_up(follower)
        # Every node lost: each restored from the one backup.
        for i in (1, 2, 3):
            self.assertEqual(self.stop(i), 0)
            shutil.rmtree(self.data_dir(i))
            shutil.copytree(out, self.data_dir(i))
        for i in (1, 2, 3):
            self.start(i)
        self.leader()
        got = set()
        for _ in range(100):
            batch = [json.loads(l) for l in self.ok("--json", "receive", "orders", "--max", "10").splitlines() if l]
            if not batch:
                break
            got |= {m["MessageId"] for m in batch}
        self.assertEqual(got, before)
        self.assertFalse(got & after)
        self.ok("send", "orders", "after-the-restore")


if __name__ == "__main__":
    unittest.main()
