"""The orders example (issue 15, item 5): examples/orders/run.sh starts three nodes, the topic,
the queues with their dead-letter queues, the order service and two kyu-workers; orders are
POSTed over HTTP while the leader is killed (kill -9) once. Then: every order the service
answered 202 was processed exactly once by shipping, the paid ones exactly once by
accounting, the unpaid ones never by accounting; the poison orders are in both dead-letter
queues (the unpaid ones in shipping's only) and processed nowhere; every redelivery (the
flaky orders' and the failover's) was absorbed by the processed-order records, none made a
second effect. Bad orders are refused with 400 and publish nothing; without a majority an
order is answered 503, never 202, and sent again it is processed once. Every wait is bounded;
processes are stopped by their PID only (run.sh stop)."""
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import unittest

from harness import BIN_DIR, CLI, sanitizer_report
from worker_harness import wait_until

EXAMPLE = os.path.abspath(os.path.join(os.path.dirname(__file__), "../../examples/orders"))
RUN = os.path.join(EXAMPLE, "run.sh")
sys.path.insert(0, EXAMPLE)
import send_orders  # noqa: E402 (the example's own order maker and HTTP client)
from order_checks import OrderFlow  # noqa: E402 (the kill tests' shared checks)

N = 200
KILL_AT = 60  # orders accepted before the leader is killed


def free_base():
    """A base port B whose ports run.sh uses (B+1..B+3, B+11..B+13, B+80) are all free, below
    the ephemeral range (as harness.free_port)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            high = int(f.read().split()[0]) - 100
    except (OSError, ValueError, IndexError):
        high = 32667
    rng = random.SystemRandom()
    for _ in range(200):
        base = rng.randint(10000, high)
        ok = True
        for p in (1, 2, 3, 11, 12, 13, 80):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", base + p))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise AssertionError("no free base port found")


class OrdersExample(unittest.TestCase):
    def setUp(self):
        self.assertTrue(os.access(os.path.join(BIN_DIR, "examples/orders/orders-service"), os.X_OK),
                        "orders-service is not built (libmicrohttpd-dev missing?)")
        self.dir = tempfile.mkdtemp(prefix="kyu-orders-it-")
        self.base = free_base()
        r = self.run_sh("start", self.dir, "--base-port", str(self.base), "--bin", BIN_DIR,
                        "--publish-timeout", "3")
        if r.returncode != 0:
            self.run_sh("stop", self.dir)
            self.fail("run.sh start failed (%d):\n%s\n%s\n%s" % (
                r.returncode, r.stdout.decode(), r.stderr.decode(), self.logs()))
        self.url = "http://127.0.0.1:%d" % (self.base + 80)
        self.endpoints = ",".join("tcp://127.0.0.1:%d" % (self.base + i) for i in (1, 2, 3))

    def tearDown(self):
        r = self.run_sh("stop", self.dir)
        reports = []
        for name in sorted(os.listdir(os.path.join(self.dir, "logs"))):
            rep = sanitizer_report(os.path.join(self.dir, "logs", name))
            if rep:
                reports.append("%s:\n%s" % (name, rep))
        shutil.rmtree(self.dir, ignore_errors=True)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        if reports:
            raise AssertionError("a sanitizer report:\n%s" % "\n".join(reports))

    def run_sh(self, *args):
        return subprocess.run(["bash", RUN] + list(args), capture_output=True, timeout=180)

    def logs(self, tail=3000):
        out = ""
        d = os.path.join(self.dir, "logs")
        for name in sorted(os.listdir(d)) if os.path.isdir(d) else []:
            with open(os.path.join(d, name), "rb") as f:
                out += "\n--- %s ---\n%s" % (name, f.read().decode(errors="replace")[-tail:])
        return out

    def kyu(self, *args):
        r = subprocess.run([CLI, "--broker", self.endpoints] + list(args), capture_output=True,
                           timeout=120)
        if r.returncode != 0:
            raise AssertionError("kyu %s failed (%d): %s" % (" ".join(args), r.returncode,
                                                             r.stderr.decode()))
        return r.stdout.decode()

    def counts(self, queue):
        a = dict(line.split(" ", 1) for line in self.kyu("get-queue-attributes", queue).splitlines())
        return tuple(int(a[k]) for k in ("ApproximateNumberOfMessages",
                                         "ApproximateNumberOfMessagesNotVisible",
                                         "ApproximateNumberOfMessagesDelayed"))

    def rows(self, service, sql):
        db = sqlite3.connect("file:%s?mode=ro" % os.path.join(self.dir, service + ".db"), uri=True,
                             timeout=30)
        try:
            return db.execute(sql).fetchall()
        finally:
            db.close()

    def processed(self, service):
        return {r[0] for r in self.rows(service, "SELECT order_id FROM processed")}

    def dlq_orders(self, queue):
        """The order ids of every message of a dead-letter queue (peeked, not leased), and the
        source queue each names."""
        ids, sources, start = [], set(), []
        for _ in range(100):
            lines = [json.loads(l) for l in self.kyu("--json", "peek", queue, "--max", "10",
                                                    *start).splitlines() if l]
            nxt = None
            for m in lines:
                if "Next" in m:
                    nxt = m["Next"]
                    continue
                body = json.loads(m["Body"])
                if body.get("Type") == "Notification":  # shipping's envelope
                    body = json.loads(body["Message"])
                ids.append(body["order_id"])
                sources.add(m["Attributes"].get("DeadLetterQueueSourceQueue"))
            if not nxt:
                return ids, sources
            start = ["--from", nxt]
        raise AssertionError("%s did not page to its end" % queue)

    def test_bad_orders_are_refused_with_400_and_publish_nothing(self):
        good = send_orders.make_order(0, "bad")
        cases = [(b"{\"order_id\": ", "invalid JSON"),
                 (b"[1, 2]", "must be a JSON object"),
                 (json.dumps({k: v for k, v in good.items() if k != "paid"}).encode(),
                  "missing field 'paid'"),
                 (json.dumps(dict(good, paid="yes")).encode(), "'paid' must be true or false"),
                 (json.dumps(dict(good, items=[])).encode(), "'items'"),
                 (json.dumps(dict(good, total=-1)).encode(), "'total'"),
                 (json.dumps(dict(good, order_id="a b")).encode(), "'order_id'"),
                 (json.dumps(dict(good, extra=1)).encode(), "unknown field 'extra'"),
                 # the key quoted in the error is cut inside a character: still an answer
                 (json.dumps(dict(good, **{"x" + "é" * 40: 1}), ensure_ascii=False).encode(),
                  "unknown field 'x"),
                 (b'{"order_id": "\xff"}', "invalid JSON")]
        for body, text in cases:
            status, rep = send_orders.post(self.url + "/orders", body)
            self.assertEqual(status, 400, (body, rep))
            self.assertIn(text, rep["error"], body)
        status, rep = send_orders.post(self.url + "/orders", b"x" * (65 * 1024))
        self.assertEqual(status, 413, rep)
        status, rep, _ = send_orders.place(self.url, good)
        self.assertEqual(status, 202, rep)
        self.assertEqual(rep["order_id"], good["order_id"])
        wait_until("the good order processed",
                   lambda: self.processed("shipping") == {good["order_id"]}, 60, 0.2)
        wait_until("shipping empty", lambda: self.counts("shipping") == (0, 0, 0), 60, 0.2)
        # Only the good order was ever published.
        self.assertEqual(self.rows("shipping", "SELECT COUNT(*) FROM shipments")[0][0], 1)
        self.assertEqual(self.rows("shipping", "SELECT COUNT(*) FROM absorbed")[0][0], 0)
        self.assertEqual(self.counts("shipping-dlq"), (0, 0, 0))
        with send_orders.urllib.request.urlopen(self.url + "/health", timeout=30) as r:
            health = json.loads(r.read())
        self.assertEqual((health["accepted"], health["refused"]), (1, len(cases) + 1))

    def pid(self, name):
        with open(os.path.join(self.dir, "pids", name)) as f:
            return int(f.read().split()[0])

    def test_without_a_majority_an_order_is_answered_503_and_its_retry_is_processed_once(self):
        # Two of three nodes killed: no publish can commit, so no 202. The service retries
        # for its --publish-timeout (3 s), then answers 503 with Retry-After.
        for i in (1, 2):
            os.kill(self.pid("broker-%d" % i), signal.SIGKILL)
        order = send_orders.make_order(7, "nq")
        req = send_orders.urllib.request.Request(
            self.url + "/orders", data=json.dumps(order).encode(), method="POST")
        with self.assertRaises(send_orders.urllib.error.HTTPError) as cm:
            send_orders.urllib.request.urlopen(req, timeout=120)
        self.assertEqual(cm.exception.code, 503)
        self.assertEqual(cm.exception.headers.get("Retry-After"), "1")
        self.assertIn("order not accepted", json.loads(cm.exception.read())["error"])
        # The majority back, the client sends the order again (same order_id): 202, and it is
        # processed once, whether or not the first attempt's publish was committed after all.
        for i in (1, 2):
            r = self.run_sh("start-node", self.dir, str(i))
            self.assertEqual(r.returncode, 0, r.stderr.decode())
        status, rep, _ = send_orders.place(self.url, order, deadline_s=120)
        self.assertEqual(status, 202, rep)
        wait_until(lambda: "the order processed:\n%s" % self.logs(),
                   lambda: self.processed("shipping") == {order["order_id"]} and
                   self.counts("shipping") == (0, 0, 0), 120, 0.2)
        self.assertEqual(self.rows("shipping", "SELECT COUNT(*) FROM shipments"), [(1,)])
        with send_orders.urllib.request.urlopen(self.url + "/health", timeout=30) as r:
            health = json.loads(r.read())
        self.assertEqual(health["accepted"], 1)
        self.assertGreaterEqual(health["unavailable"], 1)

    def test_leader_kill9_while_orders_flow_loses_none_and_processes_none_twice(self):
        orders = [send_orders.make_order(i, "it") for i in range(N)]
        flow = OrderFlow(self.url, orders)
        poison, flaky, paid = flow.poison, flow.flaky, flow.paid
        self.assertTrue(poison & paid and poison - paid and flaky & paid)  # the mix is there
        flow.start()
        try:
            wait_until("%d orders accepted" % KILL_AT, lambda: len(flow.accepted) >= KILL_AT, 120)
            leader = self.run_sh("leader", self.dir)
            self.assertEqual(leader.returncode, 0, leader.stderr.decode())
            node, pid = leader.stdout.decode().split()[1::2]
            os.kill(int(pid), signal.SIGKILL)
            print("killed node %s (PID %s) with %d of %d orders accepted" % (
                node, pid, len(flow.accepted), N), file=sys.stderr)
        finally:
            flow.join()
        flow.check_all_accepted(self)
        ship_want, acct_want = flow.wants()

        wait_until(lambda: "every order processed or dead-lettered (killed node %s):\n%s" % (
            node, self.logs()), lambda: flow.settled(self.processed, self.counts), 180, 0.5)

        # Exactly once: the processed-order records hold each order once (their primary key)
        # and the effects, which have no unique constraint, once per order too.
        self.assertEqual(self.processed("shipping"), ship_want)
        self.assertEqual(self.processed("accounting"), acct_want)
        self.assertEqual(self.rows("shipping", "SELECT order_id FROM shipments GROUP BY order_id "
                                               "HAVING COUNT(*) > 1"), [])
        self.assertEqual(self.rows("shipping", "SELECT COUNT(*) FROM shipments")[0][0],
                         len(ship_want))
        self.assertEqual(self.rows("accounting", "SELECT order_id FROM ledger GROUP BY order_id "
                                                 "HAVING COUNT(*) > 1"), [])
        self.assertEqual(self.rows("accounting", "SELECT COUNT(*) FROM ledger")[0][0],
                         len(acct_want))
        # Accounting never saw an unpaid order (the filter policy).
        self.assertEqual(self.rows("accounting", "SELECT COUNT(*) FROM ledger WHERE paid = 0"),
                         [(0,)])
        self.assertEqual(self.processed("accounting") - paid, set())

        # The poison orders: in both dead-letter queues (unpaid ones in shipping's only), once
        # each, saying where they came from.
        ship_dlq, ship_src = self.dlq_orders("shipping-dlq")
        acct_dlq, acct_src = self.dlq_orders("accounting-dlq")
        self.assertEqual(set(ship_dlq), poison)
        self.assertEqual(set(acct_dlq), poison & paid)
        # An order is published twice only when the service retried its publish after an
        # attempt that may have been applied (its log names the order).
        with open(os.path.join(self.dir, "logs", "service.log")) as f:
            retried = f.read()
        for oid in set(ship_dlq):
            if ship_dlq.count(oid) > 1 or acct_dlq.count(oid) > 1:
                self.assertIn("order %s" % oid, retried, "%s in a dead-letter queue twice" % oid)
        self.assertEqual((ship_src, acct_src), ({"shipping"}, {"accounting"}))

        # Every flaky order was delivered again after its commit, and the redelivery absorbed.
        # An absorbed delivery in another message than the one processed is a second publish of
        # the order: libkyu retries a publish through the failover with its request key, so
        # only a retry of the service's own (it logs the order) may make one.
        # A flaky order fails only when the handler sees its first receive: one whose first
        # lease was lost in the failover before reaching a worker (its receive count went on)
        # was processed at a later receive without failing, and nothing is redelivered.
        for svc, flaky_svc in (("shipping", flaky), ("accounting", flaky & paid)):
            first = {oid for (oid,) in self.rows(
                svc, "SELECT order_id FROM processed WHERE receive_count = 1")}
            want = flaky_svc & first
            absorbed = self.rows(svc, "SELECT order_id, receive_count FROM absorbed")
            self.assertGreaterEqual({oid for oid, _ in absorbed}, want, svc)
            self.assertEqual({oid for oid, _ in absorbed} - self.processed(svc), set(), svc)
            republished = self.rows(svc, "SELECT a.order_id FROM absorbed a JOIN processed p "
                                         "USING (order_id) WHERE a.message_id != p.message_id")
            for (oid,) in republished:
                self.assertIn("order %s" % oid, retried, "%s: %s published twice" % (svc, oid))
            print("%s: %d orders processed once, %d redeliveries absorbed (%d of flaky orders, "
                  "%d from the failover or a publish retried)" % (
                      svc, len(self.processed(svc)), len(absorbed),
                      sum(1 for oid, _ in absorbed if oid in want),
                      sum(1 for oid, _ in absorbed if oid not in want)), file=sys.stderr)
            print("%s: %d orders delivered in a second message (published twice)" % (
                svc, len(republished)), file=sys.stderr)


if __name__ == "__main__":
    unittest.main()
