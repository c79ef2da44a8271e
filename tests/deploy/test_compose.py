"""deploy/docker-compose.yml: three kyu-broker containers, each with its own volume, on a
docker network. The cluster elects a leader; `docker kill` (SIGKILL) of the leader's
container during the test loses no acknowledged message and brings back no deleted one; the
killed container restarts from its volume and catches up; SIGTERM stops (compose down).
Every container's health check (the readiness probe `kyu cluster ready`) turns healthy
once the cluster has a leader, and again for the restarted one.
Needs a docker engine and docker-compose (the project's machines have both). Every wait is
bounded; the test removes its containers, network, volumes and image."""
import json
import os
import shutil
import subprocess
import time
import unittest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../..")
BIN_DIR = os.environ.get("KYU_BIN_DIR", os.path.join(ROOT, "build"))
COMPOSE = os.path.join(ROOT, "deploy", "docker-compose.yml")
PROJECT = "kyutest%d" % os.getpid()
IMAGE = "kyu:test%d" % os.getpid()
ENDPOINTS = "tcp://kyu1:7700,tcp://kyu2:7700,tcp://kyu3:7700"  # the service names
ENV = dict(os.environ, KYU_IMAGE=IMAGE)


def run(args, timeout=120, input=None):
    return subprocess.run(args, capture_output=True, timeout=timeout, input=input, env=ENV)


def compose(*args, timeout=180):
    r = run(["docker-compose", "-p", PROJECT, "-f", COMPOSE] + list(args), timeout=timeout)
    if r.returncode != 0:
        raise AssertionError("docker-compose %s: %s" % (" ".join(args), r.stderr.decode()[-2000:]))
    return r


class Compose(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not shutil.which("docker") or not shutil.which("docker-compose"):
            raise unittest.SkipTest("docker and docker-compose are needed for the deployment test")
        r = subprocess.run([os.path.join(ROOT, "scripts", "docker_image.sh"), BIN_DIR],
                           capture_output=True, timeout=300, env=ENV)
        if r.returncode != 0:
            raise AssertionError("building the image failed: " + r.stderr.decode()[-2000:])
        try:
            compose("up", "-d")
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        run(["docker-compose", "-p", PROJECT, "-f", COMPOSE, "down", "-v", "-t", "30"], timeout=180)
        run(["docker", "rmi", "-f", IMAGE], timeout=120)

    def kyu(self, *args, input=None, timeout=120):
        """The kyu CLI in a throwaway container on the cluster's network."""
        return run(["docker", "run", "--rm"] + (["-i"] if input else []) +
                   ["--network", PROJECT + "_kyu", "--entrypoint", "/usr/local/bin/kyu", IMAGE,
                    "--broker", ENDPOINTS] + list(args), timeout=timeout, input=input)

    def ok(self, *args, input=None):
        r = self.kyu(*args, input=input)
        if r.returncode != 0:
            raise AssertionError("kyu %s failed (%d): %s" % (" ".join(args), r.returncode, r.stderr.decode()))
        return r.stdout.decode()

    def status(self):
        r = self.kyu("--json", "cluster", "status", timeout=60)
        return [json.loads(l) for l in r.stdout.decode().splitlines() if l.strip()]

    def leader(self, deadline_s=60):
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            lead = [s for s in self.status() if s["role"] == "leader"]
            if lead and self.kyu("list-queues", timeout=30).returncode == 0:
                return lead[0]
            time.sleep(0.5)
        raise AssertionError("no leader within %d s: %s" % (deadline_s, self.status()))

    def wait_healthy(self, ids, deadline_s=180):
        """Bounded wait until the containers of nodes ids report healthy."""
        deadline = time.monotonic() + deadline_s
        health = {}
        while time.monotonic() < deadline:
            for i in ids:
                r = run(["docker", "inspect", "-f", "{{.State.Health.Status}}", "%s_kyu%d_1" % (PROJECT, i)],
                        timeout=30)
                health[i] = r.stdout.decode().strip()
            if all(h == "healthy" for h in health.values()):
                return
            time.sleep(1)
        raise AssertionError("containers not healthy within %d s: %s" % (deadline_s, health))

    def test_the_cluster_survives_a_killed_leader_container(self):
        self.leader()
        self.wait_healthy((1, 2, 3))
        self.ok("create-queue", "orders", "--visibility-timeout", "600")
        first = self.ok("--json", "send", "orders", "--lines",
                        input="".join("a-%d\n" % i for i in range(100)).encode())
        acked = [json.loads(l)["MessageId"] for l in first.splitlines() if l.strip()]
        gone = [json.loads(l) for l in self.ok("--json", "receive", "orders", "--max", "10").splitlines()
                if l.strip()]
        self.assertEqual(len(gone), 10)
        self.ok("delete", "orders", *[m["ReceiptHandle"] for m in gone])

        lead = self.leader()
        container = "%s_kyu%d_1" % (PROJECT, lead["id"])
        r = run(["docker", "kill", "-s", "KILL", container], timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        second = self.ok("--json", "send", "orders", "--lines",
                         input="".join("b-%d\n" % i for i in range(100)).encode())
        acked += [json.loads(l)["MessageId"] for l in second.splitlines() if l.strip()]
        self.assertEqual(len(acked), 200)
        new = self.leader()
        self.assertNotEqual(new["id"], lead["id"])

        # The killed node comes back from its volume and catches up.
        r = run(["docker", "start", container], timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        deadline = time.monotonic() + 90
        while True:
            st = {s["id"]: s for s in self.status()}
            back, now = st.get(lead["id"]), [s for s in st.values() if s["role"] == "leader"]
            if back and now and back["role"] == "follower" and back["applied_index"] >= now[0]["commit_index"]:
                break
            self.assertLess(time.monotonic(), deadline, "node %d did not catch up: %s" % (lead["id"], st))
            time.sleep(0.5)
        self.wait_healthy((lead["id"],))

        got = []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            batch = [json.loads(l) for l in
                     self.ok("--json", "receive", "orders", "--max", "10").splitlines() if l.strip()]
            if not batch:
                break
            got += batch
        ids = [m["MessageId"] for m in got]
        self.assertEqual(len(ids), len(set(ids)), "a message was delivered twice")
        self.assertEqual(set(ids), set(acked) - {m["MessageId"] for m in gone},
                         "every acknowledged message, and no deleted one, is there")


if __name__ == "__main__":
    unittest.main()
