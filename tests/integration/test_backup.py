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
import time
import unittest

from harness import BROKER, CLI, Broker, free_port, sanitizer_report


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
        self.assertEqual(sorted(os.listdir(dest)), ["log", "state"])
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


class ClusterBackup(unittest.TestCase):
    """A follower is stopped, backed up and started again while the others serve; later the
    whole cluster is lost and every node restored from that one backup."""

    def setUp(self):
        self.top = tempfile.mkdtemp(prefix="kyu-backup3-")
        self.clients = {i: "tcp://127.0.0.1:%d" % free_port() for i in (1, 2, 3)}
        self.args = []
        for i in (1, 2, 3):
            self.args += ["--peer", "%d,127.0.0.1:%d,%s" % (i, free_port(), self.clients[i])]
        self.logs = {i: open(os.path.join(self.top, "broker-%d.log" % i), "ab") for i in (1, 2, 3)}
        self.procs = {}
        for i in (1, 2, 3):
            self.start(i)
        self.endpoints = ",".join(self.clients[i] for i in (1, 2, 3))

    def data(self, i):
        return os.path.join(self.top, "db-%d" % i)

    def start(self, i):
        self.procs[i] = subprocess.Popen([BROKER, "--node-id", str(i), "--data", self.data(i)] + self.args,
                                         stdout=self.logs[i], stderr=self.logs[i])

    def stop(self, i):
        p = self.procs[i]
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=30)
                raise AssertionError("node %d did not stop on SIGTERM within 30 s" % i)
        return p.returncode

    def tearDown(self):
        try:
            for i in self.procs:
                if self.procs[i].poll() is None:
                    self.procs[i].kill()
                    self.procs[i].wait(timeout=30)
            for log in self.logs.values():
                log.close()
            reports = [sanitizer_report(log.name) for log in self.logs.values()]
        finally:
            shutil.rmtree(self.top, ignore_errors=True)
        if any(reports):
            raise AssertionError("a kyu-broker's log has a sanitizer report:\n%s" % "\n".join(reports))

    def cli(self, *args, timeout=120):
        return subprocess.run([CLI, "--broker", self.endpoints] + list(args), capture_output=True, timeout=timeout)

    def ok(self, *args):
        r = self.cli(*args)
        if r.returncode != 0:
            raise AssertionError("kyu %s failed: %s" % (" ".join(args), r.stderr.decode()))
        return r.stdout.decode()

    def status(self):
        r = self.cli("--json", "cluster", "status", timeout=60)
        return {s["id"]: s for s in (json.loads(l) for l in r.stdout.decode().splitlines() if l)}

    def leader(self, deadline_s=60):
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            for i, s in self.status().items():
                if s.get("role") == "leader" and subprocess.run(
                        [CLI, "--broker", self.clients[i], "list-queues"], capture_output=True,
                        timeout=10).returncode == 0:
                    return i
            time.sleep(0.05)
        raise AssertionError("no leader within %d s" % deadline_s)

    def caught_up(self, i, deadline_s=60):
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            st = self.status()
            lead = [s for s in st.values() if s.get("role") == "leader"]
            if lead and i in st and st[i]["applied_index"] >= lead[0]["commit_index"]:
                return
            time.sleep(0.05)
        raise AssertionError("node %d did not catch up within %d s" % (i, deadline_s))

    def test_every_node_restored_from_one_followers_backup_serves_what_was_acknowledged_before_it(self):
        leader = self.leader()
        self.ok("create-queue", "orders", "--visibility-timeout", "600")
        before = {self.ok("send", "orders", "before-%d" % i).strip() for i in range(30)}
        follower = next(i for i in (1, 2, 3) if i != leader)
        self.caught_up(follower)  # it holds every acknowledged send
        self.assertEqual(self.stop(follower), 0)
        out = os.path.join(self.top, "backup")
        r = backup(self.data(follower), out)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        self.start(follower)
        # The cluster served all along; what comes after the backup is not in it.
        after = {self.ok("send", "orders", "after-%d" % i).strip() for i in range(5)}
        self.caught_up(follower)
        # Every node lost: each restored from the one backup.
        for i in (1, 2, 3):
            self.assertEqual(self.stop(i), 0)
            shutil.rmtree(self.data(i))
            shutil.copytree(out, self.data(i))
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
