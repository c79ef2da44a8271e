"""A disk that fills (issue 16, item 5): a broker whose data directory is on a small file
system (a loop-mounted ext4, or a tmpfs with size= where loop devices are missing; the test
is skipped, saying why, only when neither can be mounted) turns read-only with a clear error
(READ_ONLY, status 28) and one loud log line, serves reads, and takes writes again once
space is freed, without a restart and with every acknowledged message kept:
- below --disk-free-min (the check every second, before the disk is full), also across a
  restart while the disk is still full;
- when a log write fails anyway (ENOSPC with the minimum off: the storage thread writes the
  failed batch again into the reopened log database once there is room), then across a
  restart;
- in a three-node cluster whose leader's disk fills: the others go on taking writes, and
  the node catches up once space is freed;
- in a three-node cluster where a follower's log write fails (ENOSPC): it acknowledges
  nothing more, the others take every write, and it catches up once space is freed;
- in a three-node cluster whose every node is below the minimum: clients are told
  READ_ONLY, not that an election is under way.
Every wait is bounded by a deadline; processes are stopped by their PID only; every mount
is undone in a finally."""
import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest

from harness import CLI, Broker, NodesById, request

MIB = 1 << 20
FS_MIB = 160  # room for the state's RocksDB WAL and the log's segments (16 MiB each, two)
MIN_FREE = 24 * MIB  # --disk-free-min of the tests that use it


def mount_small(path):
    """Mounts a FS_MIB file system on path: ext4 on a loop device, else a tmpfs. Returns an
    undo function, or raises unittest.SkipTest saying why neither could be mounted."""
    os.makedirs(path, exist_ok=True)
    image = path + ".img"
    why = []
    try:
        with open(image, "wb") as f:
            f.truncate(FS_MIB * MIB)
        mk = subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", image], capture_output=True)
        if mk.returncode == 0:
            r = subprocess.run(["mount", "-o", "loop", image, path], capture_output=True)
            if r.returncode == 0:
                return lambda: (subprocess.run(["umount", path], capture_output=True), os.unlink(image))
            why.append("mount -o loop: " + r.stderr.decode().strip())
        else:
            why.append("mkfs.ext4: " + mk.stderr.decode().strip())
    except OSError as e:
        why.append("mkfs.ext4: %s" % e)
    if os.path.exists(image):
        os.unlink(image)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%dm" % FS_MIB, "tmpfs", path], capture_output=True)
    if r.returncode == 0:
        return lambda: subprocess.run(["umount", path], capture_output=True)
    why.append("mount -t tmpfs: " + r.stderr.decode().strip())
    raise unittest.SkipTest("cannot mount a small file system (needs root): " + "; ".join(why))


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(path, leave, name="filler"):
    """Takes the free space of path's file system down to about leave bytes with a file
    (removed by the caller to free the space again); leave 0 fills it to ENOSPC."""
    filler = os.path.join(path, name)
    fd = os.open(filler, os.O_CREAT | os.O_WRONLY, 0o600)
    try:
        size = max(0, free_bytes(path) - leave)
        if size:
            try:
                os.posix_fallocate(fd, 0, size)
            except OSError:
                pass
        if leave == 0:  # the last blocks (fallocate leaves some on ext4 for its metadata)
            os.lseek(fd, 0, os.SEEK_END)
            chunk = b"\0" * 4096
            for _ in range(100000):
                try:
                    os.write(fd, chunk)
                except OSError:
                    break
    finally:
        os.close(fd)
    return filler


class Sender:
    """Raw SENDs of one body each with request keys: keeps what was acknowledged (body ->
    message id) and what may have been applied (READ_ONLY for a request the broker had
    accepted: "may or may not be applied")."""

    def __init__(self, endpoint, queue):
        self.endpoint, self.queue = endpoint, queue
        self.acked, self.maybe, self.n = {}, set(), 0

    def send(self, size=100):
        self.n += 1
        body = (b"%08d-" % self.n) + os.urandom(size // 2).hex().encode()[:max(0, size - 9)]
        rep = request(self.endpoint, {"op": 6, "id": self.n, "q": self.queue, "rq": [4242, self.n]}, body,
                      timeout_ms=30000)
        if rep["st"] == 0:
            self.acked[body] = rep["ids"][0]
        elif "may or may not" in rep.get("err", ""):
            self.maybe.add(body)
        return rep


def drain_bodies(broker):
    """Every body of the queue "orders" (received with a long lease), by the CLI."""
    got = []
    for _ in range(10000):
        r = subprocess.run([CLI, "--broker", broker, "--json", "receive", "orders", "--max", "10",
                            "--visibility-timeout", "600"], capture_output=True, timeout=60)
        if r.returncode != 0:
            raise AssertionError("receive failed: %s" % r.stderr.decode())
        batch = [json.loads(l) for l in r.stdout.decode().splitlines() if l]
        if not batch:
            return got
        got.extend(batch)
    raise AssertionError("queue did not drain")


class SingleNode(unittest.TestCase):
    def setUp(self):
        self.b = None
        self.undo = None
        self.top = tempfile.mkdtemp(prefix="kyu-disk-")
        self.mnt = os.path.join(self.top, "fs")
        try:
            self.undo = mount_small(self.mnt)
        except unittest.SkipTest:
            shutil.rmtree(self.top, ignore_errors=True)
            raise

    def tearDown(self):
        try:
            if self.b:
                self.b.cleanup()
        finally:
            if self.undo:
                self.undo()
            shutil.rmtree(self.top, ignore_errors=True)

    def start(self, *args):
        self.b = Broker("--data", os.path.join(self.mnt, "db"), *args)
        # Broker passes its own --data first; the later one (on the small file system) wins.
        return self.b.start()

    def check_all_there(self, sender):
        bodies = [m["Body"].encode() for m in drain_bodies(self.b.endpoint)]
        self.assertEqual(len(bodies), len(set(bodies)), "a message came twice")
        missing = [b for b in sender.acked if b not in bodies]
        self.assertEqual(missing, [], "acknowledged messages lost")
        unexpected = [b for b in bodies if b not in sender.acked and b not in sender.maybe]
        self.assertEqual(unexpected, [], "messages never sent (or answered as not applied) appeared")

    def wait_writable(self, sender, deadline_s=60):
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            if sender.send()["st"] == 0:
                return
            time.sleep(0.2)
        raise AssertionError("writes did not resume within %d s; log:\n%s" % (deadline_s, self.b.read_log()))

    def test_below_the_minimum_writes_are_refused_reads_served_and_resume_when_space_is_freed(self):
        self.start("--disk-free-min", str(MIN_FREE))
        self.b.ok("create-queue", "orders")
        s = Sender(self.b.endpoint, "orders")
        for _ in range(20):
            self.assertEqual(s.send()["st"], 0)
        filler = fill(self.mnt, MIN_FREE // 2)
        deadline = time.monotonic() + 30
        rep = None
        while time.monotonic() < deadline:
            rep = s.send()
            if rep["st"] != 0:
                break
            time.sleep(0.05)
        self.assertEqual(rep["st"], 28, rep)  # READ_ONLY
        self.assertIn("disk is almost full", rep["err"])
        for _ in range(5):  # every write now, and the CLI names the status
            self.assertEqual(s.send()["st"], 28)
        r = self.b.cli("send", "orders", "x")
        self.assertEqual(r.returncode, 1)
        self.assertIn("READ_ONLY", r.stderr.decode())
        # Reads are served.
        self.assertIn(self.b.attributes("orders")["ApproximateNumberOfMessages"],
                      range(len(s.acked), len(s.acked) + len(s.maybe) + 1))
        self.assertIn("orders", self.b.ok("list-queues"))
        status = self.b.json_lines("cluster", "status")[0]
        self.assertEqual(status["read_only"][:len("the disk is almost full")], "the disk is almost full")
        self.assertEqual(self.b.read_log().count("READ-ONLY: the disk is almost full"), 1)
        r = self.b.cli("cluster", "ready")  # the readiness probe says so
        self.assertEqual(r.returncode, 1)
        self.assertIn("not ready: read-only: the disk is almost full", r.stdout.decode())
        # Restarted while the disk is still full, it serves reads (start() waits for a
        # list-queues) and refuses writes. (A stop gives back the WAL space RocksDB had
        # preallocated: the disk is topped up again before the start.)
        self.assertEqual(self.b.stop(), 0)
        more = fill(self.mnt, MIN_FREE // 2, "filler2")
        self.b.start()
        self.assertIn(self.b.attributes("orders")["ApproximateNumberOfMessages"],
                      range(len(s.acked), len(s.acked) + len(s.maybe) + 1))
        self.assertEqual(s.send()["st"], 28)
        self.assertEqual(self.b.read_log().count("READ-ONLY: the disk is almost full"), 2)
        os.unlink(more)
        os.unlink(filler)
        self.wait_writable(s)
        self.assertIn("writable again", self.b.read_log())
        self.assertNotIn("read_only", self.b.json_lines("cluster", "status")[0])
        self.b.ok("cluster", "ready")
        self.assertTrue(self.b.alive())
        self.check_all_there(s)

    def test_a_failed_log_write_turns_read_only_and_is_written_again_once_space_is_freed(self):
        self.start("--disk-free-min", "0")
        self.b.ok("create-queue", "orders")
        s = Sender(self.b.endpoint, "orders")
        for _ in range(10):
            self.assertEqual(s.send()["st"], 0)
        filler = fill(self.mnt, 0)
        # The log writes into the segments it zero-filled ahead (the tail and a spare) until
        # it needs a new one: large bodies get there within (FS_MIB / 0.5) sends.
        rep = None
        for _ in range(2 * FS_MIB):
            rep = s.send(size=500000)
            if rep["st"] != 0:
                break
        self.assertEqual(rep["st"], 28, rep)
        self.assertIn("writing the log failed", rep["err"])
        self.assertIn("No space left on device", rep["err"])
        self.assertEqual(s.send()["st"], 28)
        self.assertTrue(self.b.alive(), self.b.read_log())
        self.assertEqual(self.b.read_log().count("READ-ONLY: writing the log failed"), 1)
        self.assertIn("orders", self.b.ok("list-queues"))
        os.unlink(filler)
        self.wait_writable(s)
        self.assertIn("writable again: the log write that failed is written and synced", self.b.read_log())
        # The log as the retry left it is the one a restart replays.
        self.assertEqual(self.b.stop(), 0)
        self.b.start()
        self.check_all_there(s)


class ThreeNodes(NodesById, unittest.TestCase):
    """Node 3's data directory is on the small file system, the others' are not; node 3
    runs with --disk-free-min node3_min."""
    node3_min = MIN_FREE

    def setUp(self):
        self.undo = None
        self.open_nodes("kyu-disk3-")
        self.mnt = os.path.join(self.top, "fs")
        try:
            self.undo = mount_small(self.mnt)
        except unittest.SkipTest:
            self.close_nodes()
            shutil.rmtree(self.top, ignore_errors=True)
            raise
        for i in (1, 2, 3):
            self.start(i, "--disk-free-min", str(self.node3_min if i == 3 else MIN_FREE))

    def data_dir(self, i):
        return os.path.join(self.mnt if i == 3 else self.top, "db-%d" % i)

    def tearDown(self):
        try:
            reports = self.close_nodes()
        finally:
            if self.undo:
                self.undo()
            shutil.rmtree(self.top, ignore_errors=True)
        if any(reports):
            raise AssertionError("a kyu-broker's log has a sanitizer report:\n%s" % "\n".join(reports))


class LeaderBelowTheMinimum(ThreeNodes):
    def test_the_cluster_keeps_taking_writes_while_a_nodes_disk_is_full_and_it_catches_up(self):
        self.leader()
        self.ok("create-queue", "orders")
        # Node 3 leads when its disk fills (asked again: a transfer may be abandoned).
        for _ in range(6):
            if self.leader() == 3:
                break
            self.ok("cluster", "transfer", "3")
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and self.leader() != 3:
                time.sleep(0.05)
            if self.leader() == 3:
                break
        self.assertEqual(self.leader(), 3)
        acked = []
        for i in range(10):
            acked.append(self.ok("send", "orders", "before-%d" % i).strip())
        filler = fill(self.mnt, MIN_FREE // 2)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "READ-ONLY" not in self.log(3):
            time.sleep(0.1)
        self.assertIn("READ-ONLY: the disk is almost full", self.log(3))
        # The others elect a leader among themselves and take every write (the CLI moves on
        # from node 3's READ_ONLY, or from its silence, to them).
        for i in range(30):  # a generous timeout: an election under a loaded machine
            acked.append(self.ok("--timeout", "30", "send", "orders", "during-%d" % i).strip())
        self.assertIn(self.leader(), (1, 2))
        self.assertIsNone(self.procs[3].poll(), "node 3 exited:\n" + self.log(3))
        self.assertEqual(self.log(3).count("READ-ONLY: the disk is almost full"), 1)
        os.unlink(filler)
        self.wait_caught_up(3)
        self.assertIn("writable again", self.log(3))
        for i in range(5):
            acked.append(self.ok("send", "orders", "after-%d" % i).strip())
        got = drain_bodies(self.endpoints)
        ids = [m["MessageId"] for m in got]
        self.assertEqual(sorted(set(acked) - set(ids)), [], "acknowledged messages lost")
        self.assertEqual(len(ids), len(set(ids)), "a message came twice")
        for p in self.procs.values():
            self.assertIsNone(p.poll())


class FollowerLogWriteFails(ThreeNodes):
    node3_min = 0  # no minimum on node 3: its log write meets ENOSPC

    def test_a_follower_whose_log_write_fails_acknowledges_nothing_and_catches_up(self):
        self.leader()
        self.ok("create-queue", "orders")
        for _ in range(6):  # node 3 a follower
            if self.leader() != 3:
                break
            self.ok("cluster", "transfer")
        self.assertNotEqual(self.leader(), 3)
        filler = fill(self.mnt, 0)
        # Large messages until node 3's log write fails (the log first fills the segments it
        # holds, zero-filled ahead: the tail and a spare, 16 MiB each, then needs a new one):
        # the others take every one of them meanwhile.
        acked = []
        for i in range(FS_MIB // 2):
            out = self.cli("--timeout", "30", "--json", "send", "orders", "--lines",
                           input=b"".join(b"%d-%d-" % (i, k) + b"x" * 100000 + b"\n" for k in range(10)))
            self.assertEqual(out.returncode, 0, out.stderr.decode())
            acked += [json.loads(l)["MessageId"] for l in out.stdout.decode().splitlines() if l]
            if "READ-ONLY: writing the log failed" in self.log(3):
                break
        self.assertIn("READ-ONLY: writing the log failed", self.log(3))
        self.assertIn("No space left on device", self.log(3))
        for i in range(10):
            acked.append(self.ok("--timeout", "30", "send", "orders", "during-%d" % i).strip())
        self.assertIsNone(self.procs[3].poll(), "node 3 exited:\n" + self.log(3))
        self.assertIn("read_only", self.status()[3])
        os.unlink(filler)
        self.wait_caught_up(3)
        self.assertIn("writable again: the log write that failed is written and synced", self.log(3))
        got = drain_bodies(self.endpoints)
        ids = [m["MessageId"] for m in got]
        self.assertEqual(sorted(set(acked) - set(ids)), [], "acknowledged messages lost")
        self.assertEqual(len(ids), len(set(ids)), "a message came twice")


class EveryNodeBelowTheMinimum(NodesById, unittest.TestCase):
    """Three nodes started with a --disk-free-min no disk has (no small file system needed):
    none can write, so none leads, and clients are told READ_ONLY with the reason, not that
    an election is under way."""

    def setUp(self):
        self.open_nodes("kyu-disk-all-")
        for i in (1, 2, 3):
            self.start(i, "--disk-free-min", str(1 << 50))

    def tearDown(self):
        try:
            reports = self.close_nodes()
        finally:
            shutil.rmtree(self.top, ignore_errors=True)
        if any(reports):
            raise AssertionError("a kyu-broker's log has a sanitizer report:\n%s" % "\n".join(reports))

    def test_clients_are_told_read_only(self):
        deadline = time.monotonic() + 30
        r = None
        while time.monotonic() < deadline:
            r = subprocess.run([CLI, "--broker", self.endpoints, "create-queue", "orders"],
                               capture_output=True, timeout=120)
            if b"READ_ONLY" in r.stderr:
                break
            time.sleep(0.1)
        self.assertEqual(r.returncode, 1)
        self.assertIn("READ_ONLY: the disk is almost full", r.stderr.decode())
        r = subprocess.run([CLI, "--broker", self.endpoints, "cluster", "ready"], capture_output=True,
                           timeout=60)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stdout.decode().count("not ready: read-only: the disk is almost full"), 3)
        for p in self.procs.values():
            self.assertIsNone(p.poll())


if __name__ == "__main__":
    unittest.main()
