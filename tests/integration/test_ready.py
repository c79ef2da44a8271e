"""`kyu cluster ready`, the readiness probe of a node (deploy/docker-compose.yml's health
checks): ready only once the node answers, knows a leader and has applied its log up to the
commit index (and is not read-only: tests/integration/test_disk_full.py). Every wait is
bounded; processes are stopped by their PID only."""
import json
import shutil
import subprocess
import threading
import time
import unittest

from harness import CLI, NodesById


class Ready(NodesById, unittest.TestCase):
    def setUp(self):
        self.open_nodes("kyu-ready-")

    def tearDown(self):
        try:
            reports = self.close_nodes()
        finally:
            shutil.rmtree(self.top, ignore_errors=True)
        if any(reports):
            raise AssertionError("a kyu-broker's log has a sanitizer report:\n%s" % "\n".join(reports))

    def ready(self, *nodes):
        return subprocess.run([CLI, "--broker", ",".join(self.clients[i] for i in nodes), "--json",
                               "cluster", "ready"], capture_output=True, timeout=60)

    def wait_answer(self, node, deadline_s=30):
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            r = self.ready(node)
            if "no answer" not in r.stdout.decode():
                return r
            time.sleep(0.1)
        # Say why: a node that exited (a port taken between the pick and its bind, a crash)
        # or one that hangs look alike from the probe.
        raise AssertionError("node %d did not answer within %d s (exit status %s); its log:\n%s"
                             % (node, deadline_s, self.procs[node].poll(),
                                self.log(node)[-3000:]))

    def wait_ready(self, *nodes, deadline_s=60):
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            r = self.ready(*nodes)
            if r.returncode == 0:
                return r
            time.sleep(0.1)
        raise AssertionError("nodes %s not ready within %d s: %s" % (nodes, deadline_s, r.stdout.decode()))

    def test_a_node_is_ready_once_it_knows_a_leader_and_has_applied_its_log(self):
        self.start(1)  # alone, one of three voters can never know a leader
        r = self.wait_answer(1)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(json.loads(r.stdout.decode().splitlines()[0]),
                         {"endpoint": self.clients[1], "ready": False, "why": "no leader known"})
        self.assertIn("not ready", r.stderr.decode())
        self.start(2)
        self.start(3)
        r = self.wait_ready(1, 2, 3)
        self.assertEqual([json.loads(l)["ready"] for l in r.stdout.decode().splitlines()], [True] * 3)
        # Writes go on; the probe follows them (every node catches up to its commit index).
        for i in range(20):
            self.assertEqual(subprocess.run([CLI, "--broker", ",".join(self.clients.values()),
                                             "create-queue", "q%d" % i], capture_output=True,
                                            timeout=60).returncode, 0)
        self.wait_ready(1, 2, 3)
        # A node that is gone is not ready; the others are.
        self.procs[2].kill()
        self.procs[2].wait(timeout=30)
        r = self.ready(2)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(json.loads(r.stdout.decode())["why"], "no answer")
        self.wait_ready(1, 3)

    def test_a_caught_up_node_stays_ready_under_a_steady_stream_of_writes(self):
        # A follower applies an entry a moment after it learns the entry is committed, so
        # under steady writes its applied index trails its commit index at almost any instant:
        # the probe asks for what was committed when it asked, not for an instant of rest.
        for i in (1, 2, 3):
            self.start(i)
        self.wait_ready(1, 2, 3)
        eps = ",".join(self.clients.values())
        self.assertEqual(subprocess.run([CLI, "--broker", eps, "create-queue", "q"],
                                        capture_output=True, timeout=60).returncode, 0)
        stream = subprocess.Popen([CLI, "--broker", eps, "send", "q", "--lines"],
                                  stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        stop = threading.Event()

        def feed():
            n = 0
            while not stop.is_set():
                stream.stdin.write(b"m-%d\n" % n)
                stream.stdin.flush()
                n += 1
                if n % 10 == 0:
                    time.sleep(0.001)
            stream.stdin.close()

        feeder = threading.Thread(target=feed)
        feeder.start()
        try:
            for _ in range(30):
                r = self.ready(1, 2, 3)
                self.assertEqual(r.returncode, 0, "not ready under writes:\n%s" % r.stdout.decode())
        finally:
            stop.set()
            feeder.join(timeout=60)
            stream.wait(timeout=120)


if __name__ == "__main__":
    unittest.main()
