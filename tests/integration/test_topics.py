"""SNS-style topics (issue 15, item 1): `kyu create-topic`, `delete-topic`, `list-topics`,
`subscribe [--raw]`, `unsubscribe`, `list-subscriptions`, `publish [--attr] [--lines]`. A
publish is one command: a copy lands in every subscribed queue or in none; raw subscriptions
get the body and attributes as published (their MD5s as SQS computes them), the others SNS's
JSON envelope. A deleted queue's subscriptions go with it. Topics and subscriptions survive a
kill -9 and travel in a snapshot; a publish retried with its request key enqueues once, also
pipelined through a leader's kill -9 on three nodes; bad input changes nothing."""
import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import threading
import time
import unittest

import test_cluster
import test_snapshot
from harness import CLI, STREAM_TIMEOUT_S, BrokerCase
from test_message_attributes import md5_of_attributes

OP_PUBLISH = 32
OP_SUBSCRIBE = 29
NO_SUCH_TOPIC = 21
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


class Topics(BrokerCase):
    queues = ("ship", "bill", "audit")

    def subscribe(self, topic, queue, *opts):
        sub = self.b.ok("subscribe", topic, queue, *opts).strip()
        self.assertRegex(sub, UUID)
        return sub

    def bodies(self, queue):
        return [m["Body"] for m in self.b.drain(queue)]

    def test_fan_out_raw_and_envelope(self):
        self.b.ok("create-topic", "orders")
        self.b.ok("create-topic", "orders")  # idempotent
        self.assertEqual(self.b.ok("list-topics").split(), ["orders"])
        s_ship = self.subscribe("orders", "ship")
        s_bill = self.subscribe("orders", "bill", "--raw")
        # The same subscription again answers its id; the other way is refused.
        self.assertEqual(self.subscribe("orders", "bill", "--raw"), s_bill)
        self.fails(1, "INVALID_ARGUMENT", "subscribe", "orders", "ship", "--raw")
        subs = self.b.json_lines("list-subscriptions", "orders")
        self.assertEqual(
            [(s["SubscriptionId"], s["QueueName"], s["RawMessageDelivery"]) for s in subs],
            [(s_ship, "ship", False), (s_bill, "bill", True)])

        blob = b"\x00\x01binary"
        attrs = {"color": ("String", "red"), "n": ("Number", "42"),
                 "blob": ("Binary", blob)}
        mid = self.b.ok("publish", "orders", "order 1 ☃", "--attr", "color=String:red",
                        "--attr", "n=Number:42",
                        "--attr", "blob=Binary:" + base64.b64encode(blob).decode()).strip()
        self.assertRegex(mid, UUID)

        raw = self.b.drain("bill")
        self.assertEqual(len(raw), 1)
        self.assertEqual(raw[0]["Body"], "order 1 ☃")
        self.assertEqual(raw[0]["MessageAttributes"]["color"],
                         {"DataType": "String", "StringValue": "red"})
        self.assertEqual(raw[0]["MD5OfBody"], hashlib.md5("order 1 ☃".encode()).hexdigest())
        self.assertEqual(raw[0]["MD5OfMessageAttributes"], md5_of_attributes(attrs))
        self.assertNotEqual(raw[0]["MessageId"], mid)  # each copy is a message of its own

        env = self.b.drain("ship")
        self.assertEqual(len(env), 1)
        self.assertNotIn("MessageAttributes", env[0])
        self.assertEqual(env[0]["MD5OfBody"], hashlib.md5(env[0]["Body"].encode()).hexdigest())
        e = json.loads(env[0]["Body"])
        self.assertEqual(e["Type"], "Notification")
        self.assertEqual(e["MessageId"], mid)
        self.assertEqual(e["TopicArn"], "kyu:topic:orders")
        self.assertEqual(e["Message"], "order 1 ☃")
        self.assertRegex(e["Timestamp"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertEqual(e["MessageAttributes"], {
            "blob": {"Type": "Binary", "Value": base64.b64encode(blob).decode()},
            "color": {"Type": "String", "Value": "red"},
            "n": {"Type": "Number", "Value": "42"}})
        self.assertEqual(self.bodies("audit"), [])  # not subscribed

        # --lines: pipelined, one id per line, in order; every queue gets every line.
        self.subscribe("orders", "audit", "--raw")
        lines = ["line %d" % i for i in range(30)]
        ids = self.b.ok("publish", "orders", "--lines",
                        input=("\n".join(lines) + "\n").encode()).split()
        self.assertEqual(len(ids), 30)
        self.assertEqual(sorted(self.bodies("bill")), sorted(lines))
        self.assertEqual(sorted(self.bodies("audit")), sorted(lines))
        self.assertEqual(sorted(json.loads(b)["Message"] for b in self.bodies("ship")),
                         sorted(lines))

    def test_all_or_nothing(self):
        """A copy too large for one subscribed queue refuses the whole publish: no queue gets it."""
        self.b.ok("create-queue", "small", "--max-message-size", "1024")
        self.b.ok("create-topic", "t")
        self.subscribe("t", "ship", "--raw")
        self.subscribe("t", "small")
        # 1000 bytes fit raw, but not in small's envelope.
        self.fails(1, "small", "publish", "t", "x" * 1000)
        self.assertEqual(self.counts("ship"), (0, 0, 0))
        self.assertEqual(self.counts("small"), (0, 0, 0))
        self.b.ok("publish", "t", "x" * 100)
        self.assertEqual(self.counts("ship"), (1, 0, 0))
        self.assertEqual(self.counts("small"), (1, 0, 0))

    def test_unsubscribe_and_deleted_queue(self):
        self.b.ok("create-topic", "t")
        s_ship = self.subscribe("t", "ship", "--raw")
        self.subscribe("t", "bill", "--raw")
        self.b.ok("unsubscribe", s_ship)
        self.fails(1, "NO_SUCH_SUBSCRIPTION", "unsubscribe", s_ship)
        self.b.ok("delete-queue", "bill")  # its subscription goes with it
        self.assertEqual(self.b.ok("list-subscriptions"), "")
        self.b.ok("publish", "t", "after")
        self.assertEqual(self.counts("ship"), (0, 0, 0))
        self.b.ok("create-queue", "bill")  # a new queue of that name is not subscribed
        self.b.ok("publish", "t", "again")
        self.assertEqual(self.counts("bill"), (0, 0, 0))
        # Deleting the topic removes its subscriptions; the queues stay.
        self.subscribe("t", "audit")
        self.b.ok("delete-topic", "t")
        self.b.ok("delete-topic", "t")  # as SNS: no error
        self.assertEqual(self.b.ok("list-topics"), "")
        self.assertEqual(self.b.ok("list-subscriptions"), "")
        self.fails(1, "NO_SUCH_TOPIC", "publish", "t", "x")
        self.assertIn("audit", self.b.ok("list-queues").split())

    def test_restart_kill9(self):
        self.b.ok("create-topic", "t1")
        self.b.ok("create-topic", "t2")
        s1 = self.subscribe("t1", "ship")
        s2 = self.subscribe("t1", "bill", "--raw")
        self.subscribe("t2", "audit")
        self.b.ok("unsubscribe", self.subscribe("t2", "ship"))
        before = self.b.ok("list-subscriptions")
        self.b.ok("publish", "t1", "before")
        self.b.kill9()
        self.b.start()
        self.assertEqual(self.b.ok("list-topics").split(), ["t1", "t2"])
        self.assertEqual(self.b.ok("list-subscriptions"), before)
        self.assertIn(s1, before)
        self.assertIn(s2, before)
        self.b.ok("publish", "t1", "after")
        self.assertEqual(sorted(self.bodies("bill")), ["after", "before"])
        self.assertEqual(sorted(json.loads(b)["Message"] for b in self.bodies("ship")),
                         ["after", "before"])
        self.assertEqual(self.bodies("audit"), [])
        self.b.stop()  # a clean stop too
        self.b.start()
        self.assertEqual(self.b.ok("list-subscriptions"), before)

    def test_publish_lines_sends_what_it_has_when_stdin_waits(self):
        """`publish --lines` sends the lines it has gathered (fewer than ten) as soon as stdin
        has nothing more ready, and prints their ids before stdin ends; so with a FIFO
        topic's --group."""
        self.b.ok("create-topic", "t")
        self.subscribe("t", "ship", "--raw")
        self.b.ok("create-queue", "f.fifo", "--fifo")
        self.b.ok("create-topic", "t.fifo", "--fifo", "--content-based-dedup")
        self.subscribe("t.fifo", "f.fifo", "--raw")
        for topic, queue, extra in (("t", "ship", []), ("t.fifo", "f.fifo", ["--group", "g"])):
            proc = subprocess.Popen([CLI, "--broker", self.b.endpoint, "publish", topic,
                                     "--lines"] + extra, stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            out, three = [], threading.Event()

            def read(proc=proc, out=out, three=three):
                for line in proc.stdout:
                    out.append(line.decode().split())
                    if len(out) == 3:
                        three.set()

            reader = threading.Thread(target=read)
            reader.start()
            try:
                proc.stdin.write(b"one\ntwo\nthree\n")
                proc.stdin.flush()
                # stdin stays open: the three are published and answered all the same
                self.assertTrue(three.wait(60), "no answers while stdin waits: %s" % out)
                self.assertEqual(sorted(self.bodies(queue)), ["one", "three", "two"])
                proc.stdin.write(b"four\n")
                proc.stdin.close()
                self.assertEqual(proc.wait(timeout=60), 0, proc.stderr.read().decode())
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(timeout=30)
                reader.join(timeout=30)
                proc.stdout.close()
                proc.stderr.close()
            self.assertEqual(len(out), 4)
            self.assertEqual(sum(self.counts(queue)), 4)  # three received, "four" after them

    def test_retried_publish_enqueues_once(self):
        self.b.ok("create-topic", "t")
        self.subscribe("t", "ship", "--raw")
        self.subscribe("t", "bill")
        header = {"op": OP_PUBLISH, "tp": "t", "rq": [77, 5]}
        first = self.raw(header, b"once")
        again = self.raw(header, b"once")
        self.assertEqual(first["st"], 0, first)
        self.assertEqual(again["st"], 0, again)
        self.assertEqual(first["ids"], again["ids"])
        self.assertEqual(self.counts("ship"), (1, 0, 0))
        self.assertEqual(self.counts("bill"), (1, 0, 0))
        # The same key for another request is refused.
        other = self.raw({"op": OP_SUBSCRIBE, "tp": "t", "q": "audit", "rq": [77, 5]})
        self.assertNotEqual(other["st"], 0)
        self.assertEqual(self.b.ok("list-subscriptions", "t").count("\n"), 2)

    def test_bad_input_changes_nothing(self):
        self.b.ok("create-topic", "t")
        self.subscribe("t", "ship", "--raw")
        self.fails(2, "invalid topic name", "create-topic", "bad.name")
        self.fails(2, "invalid topic name", "create-topic", "x" * 257)
        self.b.ok("create-topic", "x" * 256)
        self.b.ok("delete-topic", "x" * 256)
        self.fails(1, "NO_SUCH_TOPIC", "subscribe", "nope", "ship")
        self.fails(1, "NO_SUCH_QUEUE", "subscribe", "t", "nope")
        self.fails(2, "invalid queue name", "subscribe", "t", "bad queue")
        self.fails(1, "NO_SUCH_TOPIC", "list-subscriptions", "nope")
        self.fails(1, "INVALID_ARGUMENT", "unsubscribe", "short")
        self.fails(1, "EMPTY_BODY", "publish", "t", "")
        self.fails(2, "--attr", "publish", "t", "x", "--attr", "bad")
        # Raw frames: not UTF-8, an unknown topic, a name the codec refuses, raw not true.
        r = self.raw({"op": OP_PUBLISH, "tp": "t"}, b"\xff\xfe")
        self.assertEqual(r["st"], 4, r)
        self.assertIn("UTF-8", r["err"])
        r = self.raw({"op": OP_PUBLISH, "tp": "none"}, b"x")
        self.assertEqual(r["st"], NO_SUCH_TOPIC, r)
        r = self.raw({"op": OP_PUBLISH, "tp": "a/b"}, b"x")
        self.assertEqual(r["st"], 5, r)
        r = self.raw({"op": OP_SUBSCRIBE, "tp": "t", "q": "bill", "raw": False})
        self.assertEqual(r["st"], 4, r)
        r = self.raw({"op": OP_PUBLISH, "tp": "t"})
        self.assertNotEqual(r["st"], 0, r)
        self.assertEqual(self.counts("ship"), (0, 0, 0))
        self.assertEqual(self.b.ok("list-topics").split(), ["t"])
        self.assertEqual(self.b.ok("list-subscriptions").count("\n"), 1)


class AcrossFailover(test_cluster.ClusterFixture, unittest.TestCase):
    """Three nodes: publishes pipelined through a kill -9 of the leader land in every
    subscribed queue or in none, and each once."""

    def test_publishes_fan_out_whole_across_a_leader_kill9(self):
        leader = self.leader()
        for q in ("raw", "env"):
            self.ok("create-queue", q, "--visibility-timeout", "600")
        self.ok("create-topic", "t")
        self.ok("subscribe", "t", "raw", "--raw")
        self.ok("subscribe", "t", "env")
        # 2,000 lines, 200 requests of ten: more than the CLI keeps in flight (100), so the
        # kill comes while most are still to be published.
        lines = ["line-%d" % i for i in range(2000)]
        # A generous client timeout: a request in flight to the killed leader is resent after
        # it, and under load (CI's sanitizer run beside other work) the election and the new
        # leader's first commits can take longer than the default's 10 s (x3 for a line).
        proc = subprocess.Popen([CLI, "--broker", self.endpoints, "--timeout",
                                 str(STREAM_TIMEOUT_S), "publish", "t", "--lines"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        acked, some = [], threading.Event()

        def read_acks():
            for line in proc.stdout:
                acked.append(line.decode().strip())
                if len(acked) >= 50:
                    some.set()
            some.set()

        reader = threading.Thread(target=read_acks)
        writer = threading.Thread(
            target=lambda: (proc.stdin.write(("\n".join(lines) + "\n").encode()),
                            proc.stdin.close()))
        reader.start()
        writer.start()
        self.assertTrue(some.wait(120), "no publish acknowledged within 120 s")
        leader.kill9()
        proc.wait(timeout=300)
        reader.join(timeout=60)
        writer.join(timeout=60)
        err = proc.stderr.read().decode()
        proc.stdout.close()
        proc.stderr.close()
        self.assertEqual(proc.returncode, 0, err)
        self.assertEqual(len(acked), len(lines))
        leader.start()
        raw = [m["Body"] for m in self.drain("raw")]
        env = [json.loads(m["Body"]) for m in self.drain("env")]
        self.assertEqual(sorted(raw), sorted(lines))  # each once: request keys
        self.assertEqual(sorted(e["Message"] for e in env), sorted(lines))
        self.assertEqual(sorted(e["MessageId"] for e in env), sorted(acked))
        self.wait_caught_up(leader)


class BySnapshot(test_cluster.ClusterFixture, unittest.TestCase):
    """Three nodes with a short log window: a follower wiped while topics change catches up
    by a snapshot, and then, leading, holds the topics and subscriptions and fans out."""
    def setUp(self):
        os.environ["KYU_LOG_WINDOW"] = test_snapshot.WINDOW
        test_cluster.ClusterFixture.setUp(self)

    def tearDown(self):
        test_cluster.ClusterFixture.tearDown(self)
        os.environ.pop("KYU_LOG_WINDOW", None)

    def test_a_wiped_follower_gets_the_topics_by_snapshot(self):
        leader = self.leader()
        follower = next(n for n in self.nodes if n is not leader)
        follower.kill9()
        shutil.rmtree(os.path.join(self.data, "db-%d" % follower.id))
        for q in ("a", "b", "c", "d"):
            self.ok("create-queue", q, "--visibility-timeout", "600")
        for i in range(40):  # more entries than the log window (one per CLI call)
            self.ok("create-topic", "t%02d" % i)
        self.ok("subscribe", "t00", "a")
        self.ok("subscribe", "t00", "b", "--raw")
        d = self.ok("subscribe", "t00", "d", "--raw", "--filter-scope", "body", "--filter",
                    '{"k": [{"prefix": "v"}]}').strip()  # a filter policy travels too
        # ... changed in place (SET_SUBSCRIPTION_ATTRIBUTES): the change travels as well
        self.ok("set-subscription-attributes", d, "--filter", '{"k": [{"prefix": "w"}]}')
        self.ok("unsubscribe", self.ok("subscribe", "t01", "c").strip())
        self.ok("publish", "t00", "before")
        subs = self.ok("list-subscriptions")
        self.assertIn('filter:body {"k":[{"prefix":"w"}]}', subs)
        follower.start()
        self.wait_caught_up(follower, deadline_s=120)
        follower.log.flush()
        with open(follower.log.name, "rb") as f:
            self.assertIn(b"installed a snapshot", f.read(), self.logs())
        deadline = time.monotonic() + 60
        while self.leader() is not follower:
            self.assertLess(time.monotonic(), deadline, "node %d did not take over" % follower.id)
            self.cli("cluster", "transfer", str(follower.id))
            time.sleep(0.2)
        self.assertEqual(self.cli("list-subscriptions", endpoint=follower.client).stdout.decode(),
                         subs)
        self.assertEqual(len(self.ok("list-topics").split()), 40)
        self.ok("publish", "t00", "after")
        self.assertEqual(sorted(m["Body"] for m in self.drain("b")), ["after", "before"])
        self.assertEqual(sorted(json.loads(m["Body"])["Message"] for m in self.drain("a")),
                         ["after", "before"])
        self.assertEqual(self.drain("c"), [])
        self.assertEqual(self.drain("d"), [])
        self.ok("publish", "t00", '{"k": "w"}')
        self.ok("publish", "t00", '{"k": "v1"}')
        self.assertEqual([m["Body"] for m in self.drain("d")], ['{"k": "w"}'])


if __name__ == "__main__":
    unittest.main()
