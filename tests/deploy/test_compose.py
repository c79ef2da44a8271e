"""deploy/docker-compose.yml: three kyu-broker containers, each with its own volume, on a
docker network, and the orders example (setup, orders-service, two kyu-workers), all from the
image scripts/docker_image.sh builds on an empty root.
- The cluster elects a leader; `docker kill` (SIGKILL) of the leader's container during the
  test loses no acknowledged message and brings back no deleted one; the killed container
  restarts from its volume and catches up; SIGTERM stops (compose down). Every broker's health
  check (the readiness probe `kyu cluster ready`) turns healthy once the cluster has a
  leader, and again for the restarted one.
- Orders POSTed to the service's published port (127.0.0.1) while the leader's container is
  killed are each processed once by shipping, the paid ones once by accounting (the
  handlers' SQLite records, read in the worker containers), the poison ones dead-lettered.
Needs a docker engine and docker-compose (the project's machines have both). Every wait is
bounded; the test removes its containers, network, volumes and image."""
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import unittest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../..")
BIN_DIR = os.environ.get("KYU_BIN_DIR", os.path.join(ROOT, "build"))
COMPOSE = os.path.join(ROOT, "deploy", "docker-compose.yml")
PROJECT = "kyutest%d" % os.getpid()
IMAGE = "kyu:test%d" % os.getpid()
ENDPOINTS = "tcp://kyu1:7700,tcp://kyu2:7700,tcp://kyu3:7700"  # the service names
sys.path.insert(0, os.path.join(ROOT, "examples", "orders"))
import send_orders  # noqa: E402 (the example's own order maker and HTTP client)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from order_checks import OrderFlow  # noqa: E402 (the kill tests' shared checks)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


HTTP_PORT = free_port()
ENV = dict(os.environ, KYU_IMAGE=IMAGE, KYU_ORDERS_PORT=str(HTTP_PORT))
N_ORDERS = 160
KILL_AT = 40  # orders accepted before the leader's container is killed

# Run in a worker container: what the handler's records hold (handler.py's tables).
RECORDS = """
import json, sqlite3, sys
svc, effect = sys.argv[1], {"shipping": "shipments", "accounting": "ledger"}[sys.argv[1]]
db = sqlite3.connect("file:/records/%s.db?mode=ro" % svc, uri=True, timeout=30)
q = lambda sql: db.execute(sql).fetchall()
print(json.dumps({
    "processed": [r[0] for r in q("SELECT order_id FROM processed")],
    "effects": q("SELECT COUNT(*) FROM %s" % effect)[0][0],
    "twice": [r[0] for r in q("SELECT order_id FROM %s GROUP BY order_id HAVING COUNT(*) > 1"
                              % effect)],
    "unpaid": q("SELECT COUNT(*) FROM ledger WHERE paid = 0")[0][0] if effect == "ledger" else 0,
    "absorbed": q("SELECT COUNT(*) FROM absorbed")[0][0]}))
"""


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
        """Bounded wait until the containers of nodes (or services) ids report healthy."""
        deadline = time.monotonic() + deadline_s
        health = {}
        while time.monotonic() < deadline:
            for i in ids:
                name = "%s_%s_1" % (PROJECT, "kyu%d" % i if isinstance(i, int) else i)
                r = run(["docker", "inspect", "-f", "{{.State.Health.Status}}", name], timeout=30)
                health[i] = r.stdout.decode().strip()
            if all(h == "healthy" for h in health.values()):
                return
            time.sleep(1)
        raise AssertionError("containers not healthy within %d s: %s" % (deadline_s, health))

    def counts(self, queue):
        a = dict(l.split(" ", 1) for l in self.ok("get-queue-attributes", queue).splitlines())
        return tuple(int(a[k]) for k in ("ApproximateNumberOfMessages",
                                         "ApproximateNumberOfMessagesNotVisible",
                                         "ApproximateNumberOfMessagesDelayed"))

    def records(self, service):
        r = run(["docker", "exec", "%s_worker-%s_1" % (PROJECT, service), "python3", "-c", RECORDS,
                 service], timeout=60)
        if r.returncode != 0:
            raise AssertionError("records of %s: %s" % (service, r.stderr.decode()))
        return json.loads(r.stdout)

    def dlq_orders(self, queue):
        """The order ids in a dead-letter queue (peeked, not leased)."""
        ids, start = [], []
        for _ in range(100):
            nxt = None
            for m in [json.loads(l) for l in self.ok("--json", "peek", queue, "--max", "10",
                                                     *start).splitlines() if l]:
                if "Next" in m:
                    nxt = m["Next"]
                    continue
                body = json.loads(m["Body"])
                if body.get("Type") == "Notification":  # shipping's envelope
                    body = json.loads(body["Message"])
                ids.append(body["order_id"])
            if not nxt:
                return ids
            start = ["--from", nxt]
        raise AssertionError("%s did not page to its end" % queue)

    def test_orders_through_the_service_are_processed_once_across_a_leader_kill(self):
        self.wait_healthy((1, 2, 3))
        for svc in ("orders-service", "worker-shipping", "worker-accounting"):
            self.wait_healthy((svc,))
        # The setup may run again (`up` does): every step is idempotent. KYU_BROKER in the
        # containers lets `exec SERVICE kyu ...` reach the cluster.
        compose("run", "--rm", "setup")
        self.assertIn(b"leader", compose("exec", "-T", "kyu2", "kyu", "cluster", "status").stdout)
        url = "http://127.0.0.1:%d" % HTTP_PORT
        orders = [send_orders.make_order(i, "dc") for i in range(N_ORDERS)]
        flow = OrderFlow(url, orders)
        poison, paid = flow.poison, flow.paid
        self.assertTrue(poison & paid and poison - paid)  # the mix is there
        lead = self.leader()  # before the orders flow: it is killed while they do
        flow.start()
        try:
            deadline = time.monotonic() + 120
            while len(flow.accepted) < KILL_AT and flow.sending():
                self.assertLess(time.monotonic(), deadline,
                                "orders not accepted: %s" % flow.refused[:3])
                time.sleep(0.2)
            r = run(["docker", "kill", "-s", "KILL", "%s_kyu%d_1" % (PROJECT, lead["id"])], timeout=60)
            self.assertEqual(r.returncode, 0, r.stderr.decode())
            print("killed the leader's container (node %d) with %d of %d orders accepted" % (
                lead["id"], len(flow.accepted), N_ORDERS), file=sys.stderr)
        finally:
            flow.join()
        flow.check_all_accepted(self)
        accepted = flow.accepted
        r = run(["docker", "start", "%s_kyu%d_1" % (PROJECT, lead["id"])], timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr.decode())

        ship_want, acct_want = flow.wants()
        deadline = time.monotonic() + 180
        while True:
            ship, acct = self.records("shipping"), self.records("accounting")
            processed = {"shipping": set(ship["processed"]), "accounting": set(acct["processed"])}
            if flow.settled(processed.get, self.counts):
                break
            self.assertLess(time.monotonic(), deadline, "orders not all processed: shipping %d "
                            "of %d, accounting %d of %d" % (len(ship["processed"]), len(ship_want),
                                                            len(acct["processed"]), len(acct_want)))
            time.sleep(1)
        # Once: the processed-order records hold each order once, and the effects (no unique
        # constraint) once per order too; accounting saw no unpaid order (the filter policy).
        self.assertEqual(set(ship["processed"]), ship_want)
        self.assertEqual(set(acct["processed"]), acct_want)
        self.assertEqual((ship["twice"], ship["effects"]), ([], len(ship_want)))
        self.assertEqual((acct["twice"], acct["effects"], acct["unpaid"]), ([], len(acct_want), 0))
        self.assertEqual(set(self.dlq_orders("shipping-dlq")), poison)
        self.assertEqual(set(self.dlq_orders("accounting-dlq")), poison & paid)
        print("orders: %d accepted, shipping processed %d (%d redeliveries absorbed), accounting "
              "%d (%d absorbed), %d poison dead-lettered" % (
                  len(accepted), len(ship_want), ship["absorbed"], len(acct_want),
                  acct["absorbed"], len(poison)), file=sys.stderr)

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
