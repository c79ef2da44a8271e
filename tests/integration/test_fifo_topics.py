"""FIFO topics (issue 15, item 4) through the CLI: a .fifo name exactly with --fifo; a FIFO
topic delivers to FIFO queues only (and a standard topic to standard queues only); a publish
needs a MessageGroupId and a MessageDeduplicationId unless the topic has content-based
deduplication; three FIFO queues (raw, enveloped, filtered) each get every message with its
group and deduplication ids, each group in publish order, under concurrent publishers; a
duplicate within 5 minutes is answered with the first id and SequenceNumber and enqueues
nothing, also after the copies were deleted and after a kill -9; publish batches carry each
entry's ids; on three nodes a leader's kill -9 while publishers run loses nothing acknowledged
and duplicates nothing.

Only causality and generous bounds are asserted, never how fast. Every wait is bounded;
processes are stopped by their PID only."""
import hashlib
import json
import subprocess
import threading
import unittest

import test_cluster
from harness import CLI, STREAM_TIMEOUT_S, BrokerCase


def drain_fifo(receive, delete, queue):
    """Receives and deletes until queue has nothing visible; the messages in the order
    received (a FIFO queue holds a group while a message of it is in flight, so each batch
    is deleted before the next receive)."""
    got = []
    for _ in range(10000):
        batch = receive(queue)
        if not batch:
            return got
        got.extend(batch)
        delete(queue, *[m["ReceiptHandle"] for m in batch])
    raise AssertionError("queue %s did not drain" % queue)


def message_of(m, raw):
    """(the message published, the SequenceNumber the envelope gives or None) of a copy."""
    if raw:
        return m["Body"], None
    e = json.loads(m["Body"])
    assert e["Type"] == "Notification", e
    return e["Message"], int(e["SequenceNumber"])


class FifoTopics(BrokerCase):
    def fifo_queues(self, *names):
        for q in names:
            self.b.ok("create-queue", q, "--fifo")

    def receive(self, queue):
        return self.b.json_lines("receive", queue, "--max", "10", "--visibility-timeout", "600")

    def delete(self, queue, *handles):
        self.b.ok("delete", queue, *handles)

    def drain(self, queue):
        return drain_fifo(self.receive, self.delete, queue)

    def test_names_and_refusals(self):
        self.fails(1, "create it as a FIFO topic", "create-topic", "t.fifo")
        self.fails(1, "must end in .fifo", "create-topic", "t", "--fifo")
        self.fails(1, "attribute of FIFO topics", "create-topic", "t", "--content-based-dedup")
        self.fails(2, "does not take option", "create-topic", "t", "--dedup-scope", "queue")
        self.b.ok("create-topic", "t.fifo", "--fifo")
        self.b.ok("create-topic", "t.fifo", "--fifo")  # the same: no error
        self.fails(1, "ContentBasedDeduplication", "create-topic", "t.fifo", "--fifo",
                   "--content-based-dedup")
        self.b.ok("create-topic", "s")
        self.assertEqual(self.b.ok("list-topics").split(), ["s", "t.fifo"])
        self.b.ok("create-queue", "std")
        self.fifo_queues("q.fifo")
        self.fails(1, "delivers to FIFO queues only", "subscribe", "t.fifo", "std")
        self.fails(1, "delivers to standard queues only", "subscribe", "s", "q.fifo")
        self.b.ok("subscribe", "t.fifo", "q.fifo", "--raw")
        self.fails(1, "MessageGroupId", "publish", "t.fifo", "x")
        self.fails(1, "MessageDeduplicationId", "publish", "t.fifo", "x", "--group", "g")
        # a standard topic takes a group alone (test_topic_groups.py), not a deduplication id
        self.fails(1, "MessageDeduplicationId is for FIFO topics", "publish", "s", "x",
                   "--group", "g", "--dedup-id", "d")
        self.fails(2, "not with --lines", "publish", "t.fifo", "--lines", "--group", "g",
                   "--dedup-id", "d")
        self.assertEqual(self.counts("q.fifo"), (0, 0, 0))

    def test_three_fifo_queues_keep_group_order_under_concurrent_publishers(self):
        self.fifo_queues("raw.fifo", "env.fifo", "odd.fifo")
        self.b.ok("create-topic", "t.fifo", "--fifo", "--content-based-dedup")
        self.b.ok("subscribe", "t.fifo", "raw.fifo", "--raw")
        self.b.ok("subscribe", "t.fifo", "env.fifo")
        self.b.ok("subscribe", "t.fifo", "odd.fifo", "--raw", "--filter",
                  '{"odd": ["yes"]}')
        groups, n = ("g1", "g2", "g3", "g4"), 40
        published = {}  # body -> (id, sequence)
        errors = []

        def publisher(g):
            try:
                lines = "".join("%s-%02d\n" % (g, i) for i in range(n)).encode()
                out = self.b.ok("publish", "t.fifo", "--lines", "--group", g, input=lines)
                for body, line in zip(("%s-%02d" % (g, i) for i in range(n)), out.splitlines()):
                    published[body] = tuple(line.split())
            except Exception as e:  # noqa: BLE001 (reported by the test thread)
                errors.append(e)

        threads = [threading.Thread(target=publisher, args=(g,)) for g in groups]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        self.assertEqual(errors, [])
        self.assertEqual(len(published), len(groups) * n)
        # a last publish per group with the filter's attribute, after the others
        for g in groups:
            out = self.b.ok("publish", "t.fifo", "%s-last" % g, "--group", g, "--attr",
                            "odd=String:yes").split()
            published["%s-last" % g] = tuple(out)
        seqs = {b: int(s) for b, (_, s) in published.items()}
        for q, raw in (("raw.fifo", True), ("env.fifo", False), ("odd.fifo", True)):
            got = self.drain(q)
            per_group = {g: [] for g in groups}
            for m in got:
                body, sn = message_of(m, raw)
                g = body.split("-")[0]
                self.assertEqual(m["Attributes"]["MessageGroupId"], g)
                self.assertEqual(m["Attributes"]["MessageDeduplicationId"],
                                 hashlib.sha256(body.encode()).hexdigest())
                if sn is not None:
                    self.assertEqual(sn, seqs[body])
                per_group[g].append(body)
            for g in groups:
                want = ["%s-%02d" % (g, i) for i in range(n)] + ["%s-last" % g]
                if q == "odd.fifo":
                    want = ["%s-last" % g]
                # each once, in publish order (the CLI's pipeline keeps a group's lines in
                # order, and their SequenceNumbers grow the same way)
                self.assertEqual(per_group[g], want, q)
                self.assertEqual([seqs[b] for b in want], sorted(seqs[b] for b in want))
            self.assertEqual(self.counts(q), (0, 0, 0))

    def test_a_duplicate_publish_enqueues_nothing_also_after_the_copies_went(self):
        self.fifo_queues("a.fifo", "b.fifo")
        self.b.ok("create-topic", "t.fifo", "--fifo")
        self.b.ok("subscribe", "t.fifo", "a.fifo", "--raw")
        self.b.ok("subscribe", "t.fifo", "b.fifo")
        first = self.b.ok("publish", "t.fifo", "m", "--group", "g", "--dedup-id", "d1").split()
        self.assertEqual(len(first), 2)  # the id and the SequenceNumber
        again = self.b.ok("publish", "t.fifo", "another body", "--group", "h",
                          "--dedup-id", "d1").split()
        self.assertEqual(again, first)
        self.assertEqual(self.counts("a.fifo"), (1, 0, 0))
        self.assertEqual(self.counts("b.fifo"), (1, 0, 0))
        self.assertEqual([m["Body"] for m in self.drain("a.fifo")], ["m"])
        env = self.drain("b.fifo")
        self.assertEqual(json.loads(env[0]["Body"])["MessageId"], first[0])
        self.assertEqual(self.b.ok("publish", "t.fifo", "m", "--group", "g", "--dedup-id",
                                   "d1").split(), first)
        self.b.kill9()
        self.b.start()
        self.assertEqual(self.b.ok("publish", "t.fifo", "m", "--group", "g", "--dedup-id",
                                   "d1").split(), first)
        self.assertEqual(self.counts("a.fifo"), (0, 0, 0))
        later = self.b.ok("publish", "t.fifo", "m2", "--group", "g", "--dedup-id",
                          "d2").split()
        self.assertGreater(int(later[1]), int(first[1]))
        self.assertEqual(self.counts("a.fifo"), (1, 0, 0))

    def test_a_publish_batch_carries_each_entry_s_ids(self):
        self.fifo_queues("a.fifo")
        self.b.ok("create-topic", "t.fifo", "--fifo")
        self.b.ok("subscribe", "t.fifo", "a.fifo", "--raw")
        entries = [
            {"Id": "e1", "Message": "one", "MessageGroupId": "g1", "MessageDeduplicationId": "d1"},
            {"Id": "e2", "Message": "two", "MessageGroupId": "g2", "MessageDeduplicationId": "d2"},
            {"Id": "e3", "Message": "no group", "MessageDeduplicationId": "d3"},
            {"Id": "e4", "Message": "dup", "MessageGroupId": "g1", "MessageDeduplicationId": "d1"},
        ]
        r = self.b.cli("--json", "publish-batch", "t.fifo",
                       input="".join(json.dumps(e) + "\n" for e in entries).encode())
        self.assertEqual(r.returncode, 1, r.stderr.decode())
        out = json.loads(r.stdout.decode())
        ok = {e["Id"]: e for e in out["Successful"]}
        self.assertEqual(sorted(ok), ["e1", "e2", "e4"])
        self.assertEqual([f["Id"] for f in out["Failed"]], ["e3"])
        self.assertIn("MessageGroupId", out["Failed"][0]["Message"])
        self.assertEqual((ok["e4"]["MessageId"], ok["e4"]["SequenceNumber"]),
                         (ok["e1"]["MessageId"], ok["e1"]["SequenceNumber"]))
        got = self.drain("a.fifo")
        self.assertEqual(sorted((m["Body"], m["Attributes"]["MessageGroupId"],
                                 m["Attributes"]["MessageDeduplicationId"]) for m in got),
                         [("one", "g1", "d1"), ("two", "g2", "d2")])


class AcrossFailover(test_cluster.ClusterFixture, unittest.TestCase):
    """Three nodes: publishers to a FIFO topic pipelined through a kill -9 of the leader; every
    subscribed FIFO queue ends with each acknowledged message once, each group in order."""

    def receive(self, queue):
        return [json.loads(l) for l in self.ok("--json", "receive", queue, "--max", "10",
                                               "--visibility-timeout", "600").splitlines() if l]

    def delete(self, queue, *handles):
        self.ok("delete", queue, *handles)

    def test_a_leader_kill9_loses_nothing_acknowledged_and_duplicates_nothing(self):
        leader = self.leader()
        queues = ("a.fifo", "b.fifo", "c.fifo")
        for q in queues:
            self.ok("create-queue", q, "--fifo")
        self.ok("create-topic", "t.fifo", "--fifo", "--content-based-dedup")
        self.ok("subscribe", "t.fifo", "a.fifo", "--raw")
        self.ok("subscribe", "t.fifo", "b.fifo")
        self.ok("subscribe", "t.fifo", "c.fifo", "--raw")
        groups, n = ("g1", "g2"), 400
        acked = {g: [] for g in groups}
        procs, readers, some = {}, [], threading.Event()
        for g in groups:
            procs[g] = subprocess.Popen(
                # a generous client timeout: see test_topics' publish through a leader's kill
                [CLI, "--broker", self.endpoints, "--timeout", str(STREAM_TIMEOUT_S), "publish",
                 "t.fifo", "--lines", "--group", g],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

            def read_acks(g=g):
                for line in procs[g].stdout:
                    acked[g].append(line.decode().split())
                    if sum(len(a) for a in acked.values()) >= 40:
                        some.set()
                some.set()

            def write(g=g):
                procs[g].stdin.write("".join("%s-%03d\n" % (g, i) for i in range(n)).encode())
                procs[g].stdin.close()

            readers += [threading.Thread(target=read_acks), threading.Thread(target=write)]
        for t in readers:
            t.start()
        self.assertTrue(some.wait(120), "no publish acknowledged within 120 s")
        leader.kill9()
        for g, p in procs.items():
            p.wait(timeout=300)
        for t in readers:
            t.join(timeout=60)
        for g, p in procs.items():
            err = p.stderr.read().decode()
            p.stdout.close()
            p.stderr.close()
            self.assertEqual(p.returncode, 0, err)
            self.assertEqual(len(acked[g]), n)
        leader.start()
        self.leader(60)
        for q in queues:
            got = drain_fifo(self.receive, self.delete, q)
            per_group = {g: [] for g in groups}
            for m in got:
                body, _ = message_of(m, q != "b.fifo")
                per_group[body.split("-")[0]].append(body)
            for g in groups:
                self.assertEqual(per_group[g], ["%s-%03d" % (g, i) for i in range(n)], q)
        # the ids acknowledged are the envelope's (each publish once, its first answer)
        self.wait_caught_up(leader)


if __name__ == "__main__":
    unittest.main()
