"""FIFO queues (issue 15, item 3) through the CLI and raw frames: a .fifo name exactly with
FifoQueue; order within a message group with concurrent receivers on three groups, each
group's messages received once and in order; deduplication (explicit and content-based),
also after the first message was deleted, and its SequenceNumber; per-message delay refused
and the queue's own delay kept; a FIFO queue's dead-letter queue must be FIFO and a move keeps
the group; ReceiveRequestAttemptId; send batches with group and deduplication ids; worker
sessions' pushes respect group locks; a kill -9 and, on three nodes, a leader failover keep
order, locks and deduplication.

Only causality and generous bounds are asserted, never how fast. Every wait is bounded;
processes are stopped by their PID only."""
import json
import subprocess
import threading
import time
import unittest

import test_cluster
from harness import BrokerCase
from test_workers import OK, Worker

INVALID_ARGUMENT = 4
OP_SEND, OP_RECEIVE, OP_DELETE = 6, 7, 8


class Fifo(BrokerCase):
    def create(self, name="q.fifo", *args):
        self.b.ok("create-queue", name, "--fifo", *args)

    def send_lines(self, queue, group, bodies):
        """Sends each body in group (a content-based queue); [(id, sequence)] in order."""
        out = self.b.ok("send", queue, "--lines", "--group", group,
                        input="".join(b + "\n" for b in bodies).encode())
        return [tuple(l.split()) for l in out.splitlines()]

    def receive(self, queue, *args):
        return self.b.json_lines("receive", queue, "--max", "10", *args)

    def test_names_and_fifo_queue_go_together(self):
        self.fails(1, "FifoQueue true", "create-queue", "a.fifo")
        self.fails(1, "must end in .fifo", "create-queue", "a", "--fifo")
        self.fails(1, "attributes of FIFO queues", "create-queue", "std",
                   "--content-based-dedup")
        self.create("a.fifo", "--content-based-dedup", "--dedup-scope", "messageGroup",
                    "--throughput-limit", "perMessageGroupId")
        self.create("a.fifo", "--content-based-dedup", "--dedup-scope", "messageGroup",
                    "--throughput-limit", "perMessageGroupId")  # the same: no error
        self.fails(1, "ContentBasedDeduplication", "create-queue", "a.fifo", "--fifo")
        a = self.b.attributes("a.fifo")
        self.assertEqual((a["FifoQueue"], a["ContentBasedDeduplication"], a["DeduplicationScope"],
                          a["FifoThroughputLimit"]),
                         ("true", "true", "messageGroup", "perMessageGroupId"))
        self.b.ok("set-queue-attributes", "a.fifo", "--no-content-based-dedup",
                  "--dedup-scope", "queue")
        a = self.b.attributes("a.fifo")
        self.assertEqual((a["ContentBasedDeduplication"], a["DeduplicationScope"]),
                         ("false", "queue"))
        self.fails(1, "FifoQueue is set when a queue is created", "set-queue-attributes",
                   "a.fifo", "--fifo")
        self.b.ok("create-queue", "std")
        self.assertNotIn("FifoQueue", self.b.attributes("std"))

    def test_three_groups_keep_their_order_with_concurrent_receivers(self):
        self.create("q.fifo", "--content-based-dedup")
        n = 30
        for g in ("g1", "g2", "g3"):
            self.send_lines("q.fifo", g, ["%s-%02d" % (g, i) for i in range(n)])
        seen = []  # (group, index) in the order received, appended before the deletes
        lock = threading.Lock()
        errors = []
        deadline = time.monotonic() + 120

        def receiver():
            try:
                while time.monotonic() < deadline:
                    with lock:
                        if len(seen) >= 3 * n:
                            return
                    got = self.receive("q.fifo", "--visibility-timeout", "120")
                    if not got:
                        time.sleep(0.02)
                        continue
                    with lock:
                        for m in got:
                            g, i = m["Body"].split("-")
                            self.assertEqual(m["Attributes"]["MessageGroupId"], g)
                            seen.append((g, int(i)))
                    self.b.ok("delete", "q.fifo", *[m["ReceiptHandle"] for m in got])
            except Exception as e:  # noqa: BLE001 (reported by the test thread)
                errors.append(e)

        threads = [threading.Thread(target=receiver) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=150)
        self.assertEqual(errors, [])
        self.assertEqual(len(seen), 3 * n, "not every message was received within the bound")
        for g in ("g1", "g2", "g3"):
            # A group's next messages come only once its earlier ones are deleted: in order,
            # each once, whichever receiver got them.
            self.assertEqual([i for gg, i in seen if gg == g], list(range(n)))
        self.assertEqual(self.counts("q.fifo"), (0, 0, 0))

    def test_a_duplicate_is_acknowledged_as_the_first_and_not_enqueued(self):
        self.create()
        first = self.b.ok("send", "q.fifo", "one", "--group", "g", "--dedup-id", "d1").split()
        again = self.b.ok("send", "q.fifo", "one", "--group", "g", "--dedup-id", "d1").split()
        self.assertEqual(first, again)  # the id and the SequenceNumber
        other = self.b.ok("send", "q.fifo", "two", "--group", "g", "--dedup-id", "d2").split()
        self.assertGreater(int(other[1]), int(first[1]))
        got = self.receive("q.fifo")
        self.assertEqual([m["Body"] for m in got], ["one", "two"])
        self.assertEqual([m["Attributes"]["SequenceNumber"] for m in got], [first[1], other[1]])
        self.assertEqual(got[0]["Attributes"]["MessageDeduplicationId"], "d1")
        self.b.ok("delete", "q.fifo", *[m["ReceiptHandle"] for m in got])
        # deleted: still a duplicate within the 5 minutes
        self.assertEqual(self.b.ok("send", "q.fifo", "one", "--group", "g", "--dedup-id",
                                   "d1").split(), first)
        self.assertEqual(self.receive("q.fifo"), [])
        self.assertEqual(self.counts("q.fifo"), (0, 0, 0))

    def test_content_based_deduplication_hashes_the_body(self):
        self.create("c.fifo", "--content-based-dedup")
        a = self.send_lines("c.fifo", "g", ["same", "same", "other"])
        self.assertEqual(a[0], a[1])
        self.assertNotEqual(a[0], a[2])
        got = self.receive("c.fifo")
        self.assertEqual([m["Body"] for m in got], ["same", "other"])
        # SHA-256("same")
        self.assertEqual(got[0]["Attributes"]["MessageDeduplicationId"],
                         "0967115f2813a3541eaef77de9d9d5773f1c0c04314b0bbfe4ff3b3b1c55b5d5")

    def test_what_a_fifo_queue_refuses(self):
        self.create()
        self.fails(1, "MessageGroupId", "send", "q.fifo", "x")
        self.fails(1, "ContentBasedDeduplication", "send", "q.fifo", "x", "--group", "g")
        self.fails(1, "not valid on FIFO queue", "send", "q.fifo", "x", "--group", "g",
                   "--dedup-id", "d", "--delay", "5")
        self.fails(2, "--group", "send", "q.fifo", "x", "--group", "has space")
        # raw: a group id of a character SQS does not take, a delay, a dedup id on a standard queue
        h = {"op": OP_SEND, "q": "q.fifo", "mg": [["g\u00e9", "d"]]}
        self.assertEqual(self.raw(h, b"x")["st"], INVALID_ARGUMENT)
        h = {"op": OP_SEND, "q": "q.fifo", "mg": [["g", "d"]], "ds": 0}
        self.assertEqual(self.raw(h, b"x")["st"], INVALID_ARGUMENT)
        self.b.ok("create-queue", "std")
        h = {"op": OP_SEND, "q": "std", "mg": [["g", "d"]]}
        self.assertEqual(self.raw(h, b"x")["st"], INVALID_ARGUMENT)
        self.assertEqual(self.counts("q.fifo"), (0, 0, 0))
        self.assertEqual(self.counts("std"), (0, 0, 0))
        # a standard queue keeps a group id (no order, no SequenceNumber)
        self.assertEqual(self.raw({"op": OP_SEND, "q": "std", "mg": [["g", None]]}, b"x")["st"], OK)
        m = self.receive("std")[0]
        self.assertEqual(m["Attributes"]["MessageGroupId"], "g")
        self.assertNotIn("SequenceNumber", m["Attributes"])

    def test_the_queue_delay_holds_and_the_raw_reply_has_the_ids(self):
        self.create("d.fifo", "--delay", "1")
        r = self.raw({"op": OP_SEND, "q": "d.fifo", "mg": [["g", "d1"], ["g", "d2"]]}, b"a", b"b")
        self.assertEqual(r["st"], OK)
        self.assertEqual(len(r["sn"]), 2)
        self.assertLess(r["sn"][0], r["sn"][1])
        self.assertEqual(self.counts("d.fifo"), (0, 0, 2))
        deadline = time.monotonic() + 30
        got = None
        while time.monotonic() < deadline:
            got = self.raw({"op": OP_RECEIVE, "q": "d.fifo", "max": 10}, frames=True)
            if len(got) > 1:
                break
            time.sleep(0.05)
        import msgpack
        h = msgpack.unpackb(got[0])
        self.assertEqual([m["gid"] for m in h["msgs"]], ["g", "g"])
        self.assertEqual([m["did"] for m in h["msgs"]], ["d1", "d2"])
        self.assertEqual([m["sn"] for m in h["msgs"]], r["sn"])
        self.assertEqual(got[1:], [b"a", b"b"])

    def test_a_fifo_queue_needs_a_fifo_dead_letter_queue_and_moves_keep_the_group(self):
        self.b.ok("create-queue", "std")
        self.fails(1, "must be a FIFO queue", "create-queue", "s.fifo", "--fifo",
                   "--dead-letter-queue", "std")
        self.create("dl.fifo")
        self.fails(1, "must be a standard queue", "create-queue", "std2", "--dead-letter-queue",
                   "dl.fifo")
        self.create("s.fifo", "--content-based-dedup", "--dead-letter-queue", "dl.fifo",
                    "--max-receive-count", "1")
        self.send_lines("s.fifo", "g", ["m0", "m1"])
        self.assertEqual([m["Body"] for m in self.receive("s.fifo", "--max", "1",
                                                          "--visibility-timeout", "0")], ["m0"])
        # m0's second receive moves it; m1 comes next, in order
        self.assertEqual([m["Body"] for m in self.receive("s.fifo", "--visibility-timeout",
                                                          "600")], ["m1"])
        moved = self.receive("dl.fifo")
        self.assertEqual([m["Body"] for m in moved], ["m0"])
        self.assertEqual(moved[0]["Attributes"]["MessageGroupId"], "g")
        self.assertEqual(moved[0]["Attributes"]["DeadLetterQueueSourceQueue"], "s.fifo")

    def test_an_attempt_id_gets_the_same_messages_again(self):
        self.create("q.fifo", "--content-based-dedup")
        self.assertEqual(self.receive("q.fifo", "--attempt-id", "a-1"), [])
        self.send_lines("q.fifo", "g", ["m0", "m1"])
        self.send_lines("q.fifo", "h", ["n0"])
        first = self.receive("q.fifo", "--attempt-id", "a-1")  # the empty one left no record
        self.assertEqual([m["Body"] for m in first], ["m0", "m1", "n0"])
        again = self.receive("q.fifo", "--attempt-id", "a-1")
        self.assertEqual([m["ReceiptHandle"] for m in again],
                         [m["ReceiptHandle"] for m in first])
        self.assertEqual(self.receive("q.fifo", "--attempt-id", "a-2"), [])
        self.fails(2, "--attempt-id", "receive", "q.fifo", "--attempt-id", "with space")

    def test_a_send_batch_carries_each_entry_s_group_and_deduplication_id(self):
        self.create()
        lines = [{"Id": "a", "MessageBody": "a0", "MessageGroupId": "g1",
                  "MessageDeduplicationId": "x"},
                 {"Id": "b", "MessageBody": "b0", "MessageGroupId": "g2",
                  "MessageDeduplicationId": "y"},
                 {"Id": "c", "MessageBody": "c0", "MessageGroupId": "g1"},  # no dedup id
                 {"Id": "d", "MessageBody": "a0 again", "MessageGroupId": "g1",
                  "MessageDeduplicationId": "x"}]
        r = self.b.cli("--json", "send-batch", "q.fifo",
                       input="".join(json.dumps(l) + "\n" for l in lines).encode())
        out = json.loads(r.stdout.decode().splitlines()[0])
        ok = {e["Id"]: e for e in out["Successful"]}
        self.assertEqual(sorted(ok), ["a", "b", "d"])
        self.assertEqual([e["Id"] for e in out["Failed"]], ["c"])
        self.assertEqual(ok["a"]["MessageId"], ok["d"]["MessageId"])
        self.assertEqual(ok["a"]["SequenceNumber"], ok["d"]["SequenceNumber"])
        self.assertEqual([m["Body"] for m in self.receive("q.fifo")], ["a0", "b0"])

    def test_worker_pushes_respect_group_locks(self):
        self.create("w.fifo", "--visibility-timeout", "600")
        a, b = Worker(self.b.endpoint), Worker(self.b.endpoint)
        try:
            self.assertEqual(a.open("w.fifo", 3)["st"], OK)
            self.assertEqual(b.open("w.fifo", 3)["st"], OK)
            names = ["g1-%d" % i for i in range(5)] + ["g2-%d" % i for i in range(5)]
            mg = [[n[:2], n] for n in names]
            r = self.raw({"op": OP_SEND, "q": "w.fifo", "mg": mg}, *[n.encode() for n in names])
            self.assertEqual(r["st"], OK)

            def pushed(w):
                return [(meta, body.decode()) for meta, body in w.msgs()]

            def pump_until(n, seconds):
                end = time.monotonic() + seconds
                while time.monotonic() < end and len(pushed(a)) + len(pushed(b)) < n:
                    a.pump(0.05, 300)  # heartbeats keep the sessions alive (no credit back)
                    b.pump(0.05, 300)
                return len(pushed(a)) + len(pushed(b))

            # a credit of 3 each: one worker gets g1's first three, the other g2's
            self.assertEqual(pump_until(6, 30), 6)
            by_group = {}
            for w in (a, b):
                got = [body for _, body in pushed(w)]
                self.assertIn(got, (names[:3], names[5:8]))
                by_group[got[0][:2]] = w
            g1, g2 = by_group["g1"], by_group["g2"]
            # g1's deleted and credit given back: the rest of g1 to its worker, nothing of g2
            rep = g1.req({"op": OP_DELETE, "q": "w.fifo", "rh": [m["rh"] for m, _ in pushed(g1)]})
            self.assertEqual(rep["st"], OK)
            self.assertEqual(g1.heartbeat(cr=3)["st"], OK)
            self.assertEqual(pump_until(8, 30), 8)
            self.assertEqual([body for _, body in pushed(g1)], names[:5])
            # g2-0 deleted, g2-1 and g2-2 still in flight: g2 stays locked
            self.assertEqual(g2.req({"op": OP_DELETE, "q": "w.fifo",
                                     "rh": [pushed(g2)[0][0]["rh"]]})["st"], OK)
            self.assertEqual(g2.heartbeat(cr=1)["st"], OK)
            self.assertEqual(pump_until(9, 1.5), 8, "a message of a locked group was pushed")
            self.assertEqual(g2.req({"op": OP_DELETE, "q": "w.fifo",
                                     "rh": [m["rh"] for m, _ in pushed(g2)[1:]]})["st"], OK)
            self.assertEqual(g2.heartbeat(cr=2)["st"], OK)
            # g2-3 goes next, to whichever worker the leader serves; g2-4 with it in the same
            # push, or not until g2-3 is done (never to another worker meanwhile)
            self.assertGreaterEqual(pump_until(10, 30), 9)
            pump_until(10, 1)
            bodies = [body for w in (a, b) for _, body in pushed(w)]
            self.assertEqual(len(bodies), len(set(bodies)))
            self.assertIn("g2-3", bodies)
            holders = {body: id(w) for w in (a, b) for _, body in pushed(w)}
            if "g2-4" in holders:
                self.assertEqual(holders["g2-4"], holders["g2-3"])
        finally:
            a.close()
            b.close()

    def test_a_long_poll_is_woken_when_a_delete_unlocks_its_group(self):
        """A group held by an in-flight message: the delete that ends it makes the next message
        receivable, and a long poll waiting on the queue gets it (not the empty answer of its
        deadline)."""
        self.create("l.fifo", "--content-based-dedup")
        self.send_lines("l.fifo", "g", ["m0", "m1"])
        first = self.receive("l.fifo", "--max", "1", "--visibility-timeout", "600")
        self.assertEqual([m["Body"] for m in first], ["m0"])
        got = []
        poll = threading.Thread(
            target=lambda: got.extend(self.receive("l.fifo", "--wait", "20")))
        poll.start()
        # the poll is parked (m1 is locked behind m0); then m0 is deleted
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not poll.is_alive():
            time.sleep(0.01)
        time.sleep(0.5)
        self.b.ok("delete", "l.fifo", first[0]["ReceiptHandle"])
        poll.join(timeout=60)
        self.assertFalse(poll.is_alive())
        self.assertEqual([m["Body"] for m in got], ["m1"])

    def test_kill_9_keeps_order_locks_and_deduplication(self):
        self.create()
        ids = [self.b.ok("send", "q.fifo", "m%d" % i, "--group", "g", "--dedup-id",
                         "d%d" % i).split() for i in range(6)]
        first = self.receive("q.fifo", "--max", "2", "--visibility-timeout", "600")
        self.assertEqual([m["Body"] for m in first], ["m0", "m1"])
        self.b.kill9()
        self.b.start()
        self.assertEqual(self.b.ok("send", "q.fifo", "m0", "--group", "g", "--dedup-id",
                                   "d0").split(), ids[0])
        self.assertEqual(self.receive("q.fifo"), [])  # g still locked by m0 and m1
        self.b.ok("delete", "q.fifo", *[m["ReceiptHandle"] for m in first])
        self.assertEqual([m["Body"] for m in self.receive("q.fifo")], ["m2", "m3", "m4", "m5"])


class FifoCluster(test_cluster.ClusterFixture, unittest.TestCase):
    """Three nodes: every replica applies the same groups and deduplication records, so the
    next leader keeps a group's order, its lock and the deduplication window."""

    def receive(self, *args):
        return [json.loads(l) for l in self.ok("--json", "receive", "q.fifo", "--max", "10",
                                               *args).splitlines() if l]

    def test_send_lines_keeps_their_order_through_a_follower(self):
        """Found by the chaos harness (tests/chaos/chaos.py, FIFO workload): `kyu send
        --lines` pipelined its lines, so when the first node it reached was a follower (or a
        leader answered BUSY) the lines were sent again in the order their refusals came
        back, and a group's messages got SequenceNumbers out of line order (1, 3, 4, 5, 2).
        With --group the lines go one at a time."""
        self.leader()
        self.ok("create-queue", "q.fifo", "--fifo", "--content-based-dedup")
        follower = next(n for n in self.nodes if n is not self.leader())
        endpoints = ",".join([follower.client] + [n.client for n in self.nodes
                                                  if n is not follower])
        for r in range(3):
            bodies = ["r%d-%d" % (r, i) for i in range(6)]
            out = subprocess.run([test_cluster.CLI, "--broker", endpoints, "--json", "send",
                                  "q.fifo", "--lines", "--group", "g"],
                                 input="".join(b + "\n" for b in bodies).encode(),
                                 capture_output=True, timeout=120)
            self.assertEqual(out.returncode, 0, out.stderr.decode())
            seqs = [int(json.loads(l)["SequenceNumber"]) for l in out.stdout.decode().splitlines()]
            self.assertEqual(len(seqs), len(bodies))
            self.assertEqual(seqs, sorted(seqs), "lines %s got SequenceNumbers %s" % (bodies, seqs))
        got = []
        for _ in range(10):
            msgs = self.receive("--visibility-timeout", "600")
            if not msgs:
                break
            got += [m["Body"] for m in msgs]
            self.ok("delete", "q.fifo", *[m["ReceiptHandle"] for m in msgs])
        self.assertEqual(got, ["r%d-%d" % (r, i) for r in range(3) for i in range(6)])

    def test_a_leader_failover_keeps_order_locks_and_deduplication(self):
        self.leader()
        self.ok("create-queue", "q.fifo", "--fifo")
        sent = [self.ok("send", "q.fifo", "m%d" % i, "--group", "g", "--dedup-id",
                        "d%d" % i).split() for i in range(5)]
        other = self.ok("send", "q.fifo", "n0", "--group", "h", "--dedup-id", "e0").split()
        first = self.receive("--visibility-timeout", "600")
        self.assertEqual([m["Body"] for m in first], ["m0", "m1", "m2", "m3", "m4", "n0"])
        leader = self.leader()
        leader.kill9()
        self.leader(60)
        # the new leader: the duplicates answered as the first, both groups still locked
        self.assertEqual(self.ok("send", "q.fifo", "m0", "--group", "g", "--dedup-id",
                                 "d0").split(), sent[0], self.logs())
        self.assertEqual(self.ok("send", "q.fifo", "n0", "--group", "h", "--dedup-id",
                                 "e0").split(), other)
        later = self.ok("send", "q.fifo", "m5", "--group", "g", "--dedup-id", "d5").split()
        self.assertGreater(int(later[1]), int(sent[4][1]))
        self.assertEqual(self.receive(), [])
        self.ok("delete", "q.fifo", *[m["ReceiptHandle"] for m in first if m["Body"] != "m4"])
        self.assertEqual(self.receive(), [])  # m4 still in flight: g locked
        self.ok("delete", "q.fifo", *[m["ReceiptHandle"] for m in first if m["Body"] == "m4"])
        self.assertEqual([m["Body"] for m in self.receive()], ["m5"])
        leader.start()


if __name__ == "__main__":
    unittest.main()
