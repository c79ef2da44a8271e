"""Purge, the in-flight limit, exact counts and peek (issue 13, items 4, 7 and 8) through the
CLI: `kyu purge-queue` deletes visible, in-flight and delayed messages (kept across kill -9
and a clean restart; messages sent after it stay; stale handles are RECEIPT_INVALID);
`kyu-broker --max-inflight N` refuses a receive past the limit with OverLimit and changes
nothing; get-queue-attributes counts each state exactly; `kyu peek` lists messages in queue
order with their state, page by page, leasing nothing, with their attributes, MD5s and, in a
dead-letter queue, where each moved message came from. Bad input changes nothing. On three
nodes, all of it holds across two leader failovers (kill -9)."""
import hashlib
import json
import shutil
import tempfile
import os
import subprocess
import time
import unittest


import harness
from harness import BrokerCase, free_port
from test_cluster import Node

MALFORMED = 1
INVALID_ARGUMENT = 4
OP_PURGE_QUEUE = 15
OP_PEEK = 17


class Base(BrokerCase):
    def peek_all(self, queue, page=10):
        """Every message, page by page (following Next); the pages' sizes too."""
        got, sizes, frm = [], [], None
        for _ in range(1000):
            args = ["peek", queue, "--max", str(page)] + (["--from", frm] if frm else [])
            lines = self.b.json_lines(*args)
            frm = lines[-1]["Next"] if lines and "Next" in lines[-1] else None
            msgs = [m for m in lines if "MessageId" in m]
            got.extend(msgs)
            sizes.append(len(msgs))
            if frm is None:
                return got, sizes
        raise AssertionError("peek did not end")

    def fill(self, queue):
        """queue: "a" and "b" in flight (10 min), "c" and "d" visible, "late" delayed (10 min);
        returns the in-flight messages' receipt handles."""
        self.b.ok("create-queue", queue)
        for body in ("a", "b", "c", "d"):
            self.b.ok("send", queue, body)
        self.b.ok("send", queue, "late", "--delay", "600")
        got = self.b.json_lines("receive", queue, "--max", "2", "--visibility-timeout", "600")
        self.assertEqual([m["Body"] for m in got], ["a", "b"])
        self.assertEqual(self.counts(queue), (2, 2, 1))
        return [m["ReceiptHandle"] for m in got]


class Purge(Base):
    def test_purge_deletes_every_state_and_keeps_later_sends(self):
        handles = self.fill("jobs")
        self.b.ok("purge-queue", "jobs")
        self.assertEqual(self.counts("jobs"), (0, 0, 0))
        self.fails(1, "RECEIPT_INVALID", "delete", "jobs", handles[0])
        self.fails(1, "RECEIPT_INVALID", "change-visibility", "jobs", handles[1],
                   "--visibility-timeout", "0")
        self.assertEqual(self.b.json_lines("peek", "jobs"), [])
        self.b.ok("send", "jobs", "after")
        self.assertEqual(self.counts("jobs"), (1, 0, 0))
        self.assertEqual([m["Body"] for m in self.b.drain("jobs")], ["after"])
        self.assertIn("jobs", self.b.ok("list-queues").split())

    def test_a_purge_holds_across_kill9_and_a_clean_restart(self):
        self.b.ok("create-queue", "jobs")
        self.b.ok("send", "jobs", "--lines", input=b"".join(b"m%d\n" % i for i in range(300)))
        self.b.json_lines("receive", "jobs", "--max", "10")
        self.b.ok("send", "jobs", "late", "--delay", "900")
        self.b.ok("purge-queue", "jobs")
        self.b.ok("send", "jobs", "after")
        self.b.kill9()
        self.b.start()
        self.assertEqual(self.counts("jobs"), (1, 0, 0))
        self.b.stop()
        self.b.start()
        self.assertEqual(self.counts("jobs"), (1, 0, 0))
        self.assertEqual([m["Body"] for m in self.b.drain("jobs")], ["after"])

    def test_bad_purges_change_nothing(self):
        self.fill("jobs")
        self.fails(1, "NO_SUCH_QUEUE", "purge-queue", "nope")
        self.fails(2, "invalid queue name", "purge-queue", "no/pe")
        self.fails(2, "wrong number of arguments", "purge-queue")
        self.fails(2, "wrong number of arguments", "purge-queue", "jobs", "more")
        rep = self.raw({"op": OP_PURGE_QUEUE, "q": "jobs"}, b"body")
        self.assertEqual(rep["st"], MALFORMED)
        rep = self.raw({"op": OP_PURGE_QUEUE, "q": "jobs", "max": 1})
        self.assertEqual(rep["st"], MALFORMED)
        rep = self.raw({"op": OP_PURGE_QUEUE})
        self.assertEqual(rep["st"], INVALID_ARGUMENT)
        self.assertEqual(self.counts("jobs"), (2, 2, 1))


class Counts(Base):
    def test_counts_follow_each_change_and_a_restart(self):
        handles = self.fill("jobs")
        self.b.ok("change-visibility", "jobs", handles[0], "--visibility-timeout", "0")
        self.assertEqual(self.counts("jobs"), (3, 1, 1))
        self.b.ok("delete", "jobs", handles[1])
        self.assertEqual(self.counts("jobs"), (3, 0, 1))
        self.b.kill9()
        self.b.start()
        self.assertEqual(self.counts("jobs"), (3, 0, 1))
        # A lease that runs out moves back to visible without any command (polled, bounded).
        self.b.json_lines("receive", "jobs", "--visibility-timeout", "1")
        deadline = time.monotonic() + 30
        seen = self.counts("jobs")
        self.assertIn(seen, [(2, 1, 1), (3, 0, 1)])
        while seen != (3, 0, 1) and time.monotonic() < deadline:
            time.sleep(0.1)
            seen = self.counts("jobs")
        self.assertEqual(seen, (3, 0, 1), "the lease never ran out in the counts")
        self.b.ok("delete-queue", "jobs")
        self.b.ok("create-queue", "jobs")
        self.assertEqual(self.counts("jobs"), (0, 0, 0))


class InflightLimit(Base):
    broker_args = ("--max-inflight", "3")

    def test_a_receive_past_the_limit_is_over_limit_and_changes_nothing(self):
        self.b.ok("create-queue", "jobs")
        self.b.ok("send", "jobs", "--lines", input=b"1\n2\n3\n4\n5\n")
        first = self.b.json_lines("receive", "jobs", "--max", "2", "--visibility-timeout", "600")
        self.assertEqual(len(first), 2)
        more = self.b.json_lines("receive", "jobs", "--max", "10", "--visibility-timeout", "600")
        self.assertEqual(len(more), 1, "a receive leases only the room left")
        self.fails(1, "LIMIT_EXCEEDED: OverLimit: queue 'jobs' has 3 messages in flight, its "
                   "limit is 3", "receive", "jobs")
        self.assertEqual(self.counts("jobs"), (2, 3, 0))
        self.b.ok("delete", "jobs", first[0]["ReceiptHandle"])
        self.b.ok("change-visibility", "jobs", first[1]["ReceiptHandle"], "--visibility-timeout",
                  "0")
        self.assertEqual(self.counts("jobs"), (3, 1, 0))
        got = self.b.json_lines("receive", "jobs", "--max", "10", "--visibility-timeout", "600")
        self.assertEqual(len(got), 2)
        # Another queue has its own limit.
        self.b.ok("create-queue", "other")
        self.b.ok("send", "other", "x")
        self.assertEqual(len(self.b.json_lines("receive", "other")), 1)

    def test_a_bad_limit_is_refused_at_start(self):
        for bad in ("0", "-1", "x", "4294967296"):
            r = subprocess.run([harness.BROKER, "--max-inflight", bad, "--data",
                                os.path.join(self.b.data, "never")], capture_output=True,
                               timeout=30)
            self.assertEqual(r.returncode, 2, bad)
            self.assertIn(b"--max-inflight must be 1 to 4294967295", r.stderr)


class Peek(Base):
    def test_peek_lists_in_queue_order_with_states_and_leases_nothing(self):
        self.fill("jobs")
        got = self.b.json_lines("peek", "jobs")
        self.assertEqual([(m["Body"], m["State"]) for m in got],
                         [("a", "inflight"), ("b", "inflight"), ("c", "visible"),
                          ("d", "visible"), ("late", "delayed")])
        self.assertEqual(got[0]["Attributes"]["ApproximateReceiveCount"], "1")
        self.assertIn("VisibleTimestamp", got[0]["Attributes"])
        self.assertNotIn("ReceiptHandle", got[0])
        self.assertEqual(self.counts("jobs"), (2, 2, 1))
        again = self.b.json_lines("receive", "jobs", "--max", "10")
        self.assertEqual([(m["Body"], m["Attributes"]["ApproximateReceiveCount"]) for m in again],
                         [("c", "1"), ("d", "1")])
        plain = self.b.ok("peek", "jobs", "--max", "1")
        self.assertIn("State inflight\n", plain)
        self.assertIn("\nNext ", plain)

    def test_peek_pages_through_a_queue_and_after_a_restart(self):
        self.b.ok("create-queue", "jobs")
        self.b.ok("send", "jobs", "--lines", input=b"".join(b"m%d\n" % i for i in range(25)))
        got, sizes = self.peek_all("jobs", page=10)
        self.assertEqual(sorted(m["Body"] for m in got), sorted("m%d" % i for i in range(25)))
        self.assertEqual(sizes, [10, 10, 5])
        positions = [int(m["Position"]) for m in got]
        self.assertEqual(positions, sorted(set(positions)))
        self.b.kill9()
        self.b.start()
        again, _ = self.peek_all("jobs", page=7)
        self.assertEqual([m["MessageId"] for m in again], [m["MessageId"] for m in got])
        self.assertEqual(self.counts("jobs"), (25, 0, 0))
        # Queue order is the order receives take fresh messages in.
        self.assertEqual([m["MessageId"] for m in self.b.drain("jobs")],
                         [m["MessageId"] for m in got])

    def test_peek_from_a_message_id(self):
        """--from MESSAGE_ID: the list starts at that message, whatever its state, also in a
        dead-letter queue; an id the queue does not hold fails clearly."""
        self.b.ok("create-queue", "dlq")
        self.b.ok("create-queue", "jobs", "--dead-letter-queue", "dlq", "--max-receive-count", "1")
        ids = self.b.ok("send", "jobs", "--lines",
                        input=b"".join(b"m%d\n" % i for i in range(25))).split()
        got = self.b.json_lines("peek", "jobs", "--from", ids[13], "--max", "5")
        self.assertEqual([m["Body"] for m in got[:-1]], ["m%d" % i for i in range(13, 18)])
        self.assertIn("Next", got[-1])
        rest = self.b.json_lines("peek", "jobs", "--from", got[-1]["Next"])
        self.assertEqual([m["Body"] for m in rest], ["m%d" % i for i in range(18, 25)])
        plain = self.b.ok("peek", "jobs", "--from", ids[24])
        self.assertIn("MessageId %s\n" % ids[24], plain)
        self.assertNotIn("Next", plain)
        self.assertEqual(plain.count("MessageId"), 1)
        # A message in flight is found too, and nothing is leased by the lookup.
        leased = self.b.json_lines("receive", "jobs", "--visibility-timeout", "600")[0]
        got = self.b.json_lines("peek", "jobs", "--from", leased["MessageId"], "--max", "1")
        self.assertEqual((got[0]["MessageId"], got[0]["State"]), (leased["MessageId"], "inflight"))
        self.assertEqual(self.counts("jobs"), (24, 1, 0))
        # Deleted: not found.
        self.b.ok("delete", "jobs", leased["ReceiptHandle"])
        self.fails(1, "message %s is not in queue 'jobs'" % leased["MessageId"], "peek", "jobs",
                   "--from", leased["MessageId"])
        # In a dead-letter queue: the moved messages keep their ids.
        for _ in range(2):
            for _ in range(4):
                self.b.ok("receive", "jobs", "--max", "10", "--visibility-timeout", "0")
        self.assertEqual(self.counts("dlq")[0], 24)
        got = self.b.json_lines("peek", "dlq", "--from", ids[20], "--max", "10")
        self.assertEqual(got[0]["MessageId"], ids[20])
        self.assertEqual(got[0]["Attributes"]["DeadLetterQueueSourceQueue"], "jobs")
        self.fails(1, "is not in queue 'jobs'", "peek", "jobs", "--from", ids[20])

    def test_peek_shows_attributes_digests_and_where_a_moved_message_came_from(self):
        """As a receive shows them: message attributes and MD5s, and in a dead-letter queue
        the source queue, receive count and times of a message a RedrivePolicy moved there
        (plain and --json), leasing nothing."""
        self.b.ok("create-queue", "dlq")
        self.b.ok("create-queue", "jobs", "--dead-letter-queue", "dlq", "--max-receive-count", "1")
        self.b.ok("send", "jobs", "poison", "--attr", "color=String:blue",
                  "--attr", "raw=Binary:aGk=")
        self.b.ok("send", "dlq", "direct")
        got = self.b.json_lines("receive", "jobs", "--visibility-timeout", "0")
        self.assertEqual([m["Body"] for m in got], ["poison"])
        first = got[0]["Attributes"]["ApproximateFirstReceiveTimestamp"]
        self.assertEqual(self.b.json_lines("receive", "jobs"), [])  # moved, not leased
        peeked = self.b.json_lines("peek", "dlq")
        # By position: a moved message keeps the one it was sent with.
        self.assertEqual([m["Body"] for m in peeked], ["poison", "direct"])
        moved, direct = peeked
        self.assertNotIn("DeadLetterQueueSourceQueue", direct["Attributes"])
        self.assertNotIn("MessageAttributes", direct)
        self.assertEqual(direct["MD5OfBody"], hashlib.md5(b"direct").hexdigest())
        a = moved["Attributes"]
        self.assertEqual(a["DeadLetterQueueSourceQueue"], "jobs")
        self.assertEqual(a["DeadLetterQueueReceiveCount"], "1")
        self.assertEqual(a["DeadLetterQueueFirstReceiveTimestamp"], first)
        self.assertEqual(a["DeadLetterQueueLastReceiveTimestamp"], first)
        self.assertGreaterEqual(int(a["DeadLetterQueueMovedTimestamp"]), int(first))
        self.assertEqual(a["ApproximateReceiveCount"], "1")
        self.assertEqual(moved["MessageAttributes"],
                         {"color": {"DataType": "String", "StringValue": "blue"},
                          "raw": {"DataType": "Binary", "BinaryValue": "aGk="}})
        self.assertEqual(moved["MD5OfBody"], got[0]["MD5OfBody"])
        self.assertEqual(moved["MD5OfMessageAttributes"], got[0]["MD5OfMessageAttributes"])
        plain = self.b.ok("peek", "dlq")
        for line in ("DeadLetterQueueSourceQueue jobs\n", "DeadLetterQueueReceiveCount 1\n",
                     "MessageAttribute color String blue\n", "MessageAttribute raw Binary aGk=\n",
                     "MD5OfBody %s\n" % got[0]["MD5OfBody"],
                     "MD5OfMessageAttributes %s\n" % got[0]["MD5OfMessageAttributes"]):
            self.assertIn(line, plain)
        self.assertEqual(plain.count("DeadLetterQueueSourceQueue"), 1)
        self.assertEqual(self.counts("dlq"), (2, 0, 0))  # peek leased nothing

    def test_bad_peeks_are_refused(self):
        self.fill("jobs")
        self.fails(1, "NO_SUCH_QUEUE", "peek", "nope")
        for bad in ("0", "99999999999999999999999", "", "x" * 41):
            self.fails(2, "--from must be a position", "peek", "jobs", "--from", bad)
        for not_there in ("-1", "abc", "1x"):  # not a position: a message id, not in the queue
            self.fails(1, "message %s is not in queue 'jobs'" % not_there, "peek", "jobs", "--from",
                       not_there)
        self.fails(2, "--max must be a number from 1 to 10", "peek", "jobs", "--max", "11")
        self.assertEqual(self.raw({"op": OP_PEEK, "q": "jobs", "max": 11})["st"],
                         INVALID_ARGUMENT)
        self.assertEqual(self.raw({"op": OP_PEEK, "q": "jobs", "from": "5"})["st"],
                         INVALID_ARGUMENT)
        self.assertEqual(self.raw({"op": OP_PEEK, "q": "jobs", "from": -5})["st"],
                         INVALID_ARGUMENT)
        self.assertEqual(self.raw({"op": OP_PEEK, "q": "jobs", "vt": 5})["st"], MALFORMED)
        self.assertEqual(self.raw({"op": OP_PEEK, "q": "jobs"}, b"x")["st"], MALFORMED)
        self.assertEqual(self.counts("jobs"), (2, 2, 1))
        # A position past the end: an empty page.
        self.assertEqual(self.b.json_lines("peek", "jobs", "--from", "18446744073709551615"), [])


class ThreeNodes(unittest.TestCase):
    """Three nodes with --max-inflight 2: the counts, the limit, peek and a purge agree
    whichever node leads."""

    def setUp(self):
        self.data = tempfile.mkdtemp(prefix="kyu-purge-cluster-")
        specs = [(i, "127.0.0.1:%d" % free_port(), "tcp://127.0.0.1:%d" % free_port())
                 for i in (1, 2, 3)]
        args = ["--max-inflight", "2"]
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
        shutil.rmtree(self.data, ignore_errors=True)

    def cli(self, *args, endpoint=None, input=None):
        return subprocess.run([harness.CLI, "--broker", endpoint or self.endpoints, "--timeout",
                               "30"] + list(args), input=input, capture_output=True, timeout=120)

    def ok(self, *args, input=None):
        r = self.cli(*args, input=input)
        if r.returncode != 0:
            raise AssertionError("kyu %s failed (%d): %s" % (" ".join(args), r.returncode,
                                                             r.stderr.decode()))
        return r.stdout.decode()

    def json_lines(self, *args):
        return [json.loads(l) for l in self.ok("--json", *args).splitlines() if l]

    def counts(self):
        a = self.json_lines("get-queue-attributes", "jobs")[0]
        return (int(a["ApproximateNumberOfMessages"]),
                int(a["ApproximateNumberOfMessagesNotVisible"]),
                int(a["ApproximateNumberOfMessagesDelayed"]))

    def peek(self):
        return [(m["MessageId"], m["Body"], m["State"]) for m in self.json_lines("peek", "jobs")]

    def kill_leader(self):
        """kill -9 of the node that serves; returns it."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for n in self.nodes:
                if n.proc.poll() is None and \
                        self.cli("list-queues", endpoint=n.client).returncode == 0:
                    n.kill9()
                    return n
            time.sleep(0.05)
        raise AssertionError("no node served within 60 s")

    def test_counts_limit_peek_and_purge_across_failovers(self):
        self.ok("create-queue", "jobs")
        for body in ("a", "b", "c", "d"):  # one by one: the order is the queue's
            self.ok("send", "jobs", body)
        self.ok("send", "jobs", "late", "--delay", "900")
        got = self.json_lines("receive", "jobs", "--max", "10", "--visibility-timeout", "900")
        self.assertEqual([m["Body"] for m in got], ["a", "b"])
        r = self.cli("receive", "jobs")
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"OverLimit", r.stderr)
        before = self.peek()
        self.assertEqual([(b, s) for _, b, s in before],
                         [("a", "inflight"), ("b", "inflight"), ("c", "visible"),
                          ("d", "visible"), ("late", "delayed")])
        self.assertEqual(self.counts(), (2, 2, 1))
        first = self.kill_leader()
        self.assertEqual(self.counts(), (2, 2, 1))
        self.assertEqual(self.peek(), before)
        r = self.cli("receive", "jobs")
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn(b"OverLimit", r.stderr)
        self.ok("purge-queue", "jobs")
        self.ok("send", "jobs", "after")
        self.assertEqual(self.counts(), (1, 0, 0))
        first.start()
        self.kill_leader()
        self.assertEqual(self.counts(), (1, 0, 0))
        self.assertEqual([b for _, b, _ in self.peek()], ["after"])
        r = self.cli("delete", "jobs", got[0]["ReceiptHandle"])
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"RECEIPT_INVALID", r.stderr)
        self.assertEqual([m["Body"] for m in
                          self.json_lines("receive", "jobs", "--max", "10")], ["after"])


if __name__ == "__main__":
    unittest.main()
