"""Publish batches (issue 15, item 1): `kyu publish-batch TOPIC` reads SNS PublishBatch entries
as JSON lines and sends them ten a request (PUBLISH with eid); each entry is published on its
own, into every matching subscribed queue or none, so a bad one fails alone; BatchRequestTooLong
(256 KiB together), TooManyEntriesInBatchRequest and BatchEntryIdsNotDistinct refuse the whole
request and enqueue nothing; a retry with the request key publishes once; `kyu publish --lines`
sends ten lines a request, pipelined, ids in input order."""
import json
import unittest

from harness import BrokerCase

OP_PUBLISH = 32
INVALID_ARGUMENT = 4
TOO_LARGE = 8
EMPTY_BODY = 9


class PublishBatch(BrokerCase):
    queues = ("ship", "bill", "small")

    def setUp(self):
        super().setUp()
        self.b.ok("create-queue", "tiny", "--max-message-size", "1024")
        self.b.ok("create-topic", "t")
        self.b.ok("subscribe", "t", "ship", "--raw")
        self.b.ok("subscribe", "t", "bill", "--raw", "--filter", '{"paid": ["yes"]}')
        self.b.ok("subscribe", "t", "tiny")  # enveloped: a 1000-byte message does not fit
        self.b.ok("create-topic", "big")
        self.b.ok("subscribe", "big", "ship", "--raw")

    def bodies(self, queue):
        return sorted(m["Body"] for m in self.b.drain(queue))

    def entries(self, *objs):
        return ("\n".join(json.dumps(o) for o in objs) + "\n").encode()

    def test_each_entry_is_published_on_its_own(self):
        paid = {"paid": {"DataType": "String", "StringValue": "yes"}}
        r = self.b.cli("publish-batch", "t", input=self.entries(
            {"Id": "a", "Message": "one", "MessageAttributes": paid},
            {"Id": "b", "Message": "two"},
            {"Id": "c", "Message": ""},  # fails alone: EMPTY_BODY
            {"Id": "d", "Message": "x" * 1000},  # fails alone: too large for tiny's envelope
            {"Id": "e", "Message": "three", "MessageAttributes": {
                "bad name!": {"DataType": "String", "StringValue": "v"}}},  # a bad attribute
            {"Message": "four", "MessageAttributes": paid}))  # no Id: its line number
        self.assertEqual(r.returncode, 1, r.stderr)
        out = [l.split() for l in r.stdout.decode().splitlines()]
        self.assertEqual([o[0] for o in out], ["a", "b", "6"])
        err = r.stderr.decode()
        self.assertIn("entry c: EMPTY_BODY", err)
        self.assertIn("entry d: TOO_LARGE", err)
        self.assertIn("'tiny'", err)
        self.assertIn("entry e: INVALID_ARGUMENT", err)
        self.assertEqual(self.bodies("ship"), ["four", "one", "two"])
        self.assertEqual(self.bodies("bill"), ["four", "one"])  # its filter policy
        self.assertEqual(sorted(json.loads(b)["Message"] for b in self.bodies("tiny")),
                         ["four", "one", "two"])

    def test_json_answers_and_ten_a_request(self):
        lines = [{"Id": "m%d" % i, "Message": "msg %d" % i} for i in range(23)]
        answers = self.b.json_lines("publish-batch", "t", input=self.entries(*lines))
        self.assertEqual([len(a["Successful"]) for a in answers], [10, 10, 3])
        self.assertTrue(all(a["Failed"] == [] for a in answers))
        ok = [s for a in answers for s in a["Successful"]]
        self.assertEqual([s["Id"] for s in ok], ["m%d" % i for i in range(23)])
        self.assertEqual(len({s["MessageId"] for s in ok}), 23)
        self.assertEqual(len(self.bodies("ship")), 23)
        # Entries of 100 KiB: two a request (three pass 256 KiB together).
        big = [{"Id": "b%d" % i, "Message": str(i) * 100 * 1024} for i in range(5)]
        answers = self.b.json_lines("publish-batch", "big", input=self.entries(*big))
        self.assertEqual([len(a["Successful"]) for a in answers], [2, 2, 1])
        self.assertEqual(len(self.bodies("ship")), 5)
        # A failed entry in SNS's shape.
        r = self.b.cli("--json", "publish-batch", "t",
                       input=self.entries({"Id": "x", "Message": ""}, {"Id": "y", "Message": "ok"}))
        self.assertEqual(r.returncode, 1)
        [a] = [json.loads(l) for l in r.stdout.decode().splitlines()]
        self.assertEqual([s["Id"] for s in a["Successful"]], ["y"])
        self.assertEqual(a["Failed"], [{"Id": "x", "SenderFault": True, "Code": "EMPTY_BODY",
                                        "Message": "the message has an empty body"}])

    def test_whole_request_refusals_enqueue_nothing(self):
        def raw(n, ids=None, body=b"m", **extra):
            header = {"op": OP_PUBLISH, "tp": "t", "eid": ids or ["e%d" % i for i in range(n)]}
            header.update(extra)
            return self.raw(header, *([body] * n))
        r = raw(11)
        self.assertEqual(r["st"], INVALID_ARGUMENT, r)
        self.assertIn("TooManyEntriesInBatchRequest", r["err"])
        r = raw(2, ids=["a", "a"])
        self.assertEqual(r["st"], INVALID_ARGUMENT, r)
        self.assertIn("BatchEntryIdsNotDistinct", r["err"])
        r = raw(2, ids=["a", "b/c"])
        self.assertEqual(r["st"], INVALID_ARGUMENT, r)
        self.assertIn("InvalidBatchEntryId", r["err"])
        r = raw(3, body=b"x" * (90 * 1024))  # 270 KiB together
        self.assertEqual(r["st"], TOO_LARGE, r)
        self.assertIn("BatchRequestTooLong", r["err"])
        r = self.raw({"op": OP_PUBLISH, "tp": "t"}, b"a", b"b")  # two bodies without eid
        self.assertEqual(r["st"], INVALID_ARGUMENT, r)
        r = self.raw({"op": OP_PUBLISH, "tp": "nope", "eid": ["a"]}, b"a")
        self.assertEqual(r["st"], 21, r)  # NO_SUCH_TOPIC
        self.fails(1, "DelaySeconds", "publish-batch", "t",
                   input=self.entries({"Message": "m", "DelaySeconds": 5}))
        self.fails(1, "Message must be a string", "publish-batch", "t",
                   input=self.entries({"MessageBody": "m"}))
        self.assertEqual(self.counts("ship"), (0, 0, 0))
        # A retry with the same request key answers the same ids and publishes once.
        first = raw(3, body=b"keyed", rq=[7, 9])
        again = raw(3, body=b"keyed", rq=[7, 9])
        self.assertEqual(first["st"], 0, first)
        self.assertEqual(again["ids"], first["ids"])
        self.assertEqual(len(set(first["ids"])), 3)
        self.assertEqual(self.bodies("ship"), ["keyed"] * 3)

    def test_publish_lines_go_ten_a_request_in_order(self):
        lines = ["line %d" % i for i in range(57)]
        ids = self.b.ok("publish", "t", "--lines", "--attr", "paid=String:yes",
                        input=("\n".join(lines) + "\n").encode()).split()
        self.assertEqual(len(ids), 57)
        self.assertEqual(len(set(ids)), 57)
        self.assertEqual(self.bodies("ship"), sorted(lines))
        self.assertEqual(self.bodies("bill"), sorted(lines))  # --attr on every line
        # In input order: each copy's envelope names its MessageId.
        env = [json.loads(m["Body"]) for m in self.b.drain("tiny")]
        by_id = {e["MessageId"]: e["Message"] for e in env}
        self.assertEqual([by_id[i] for i in ids], lines)
        # An empty line fails alone (its batch's other lines are published); exit 1.
        r = self.b.cli("publish", "t", "--lines", input=b"a\n\nc\n")
        self.assertEqual(r.returncode, 1)
        self.assertEqual(len(r.stdout.decode().split()), 2)
        self.assertIn("line 2: EMPTY_BODY", r.stderr.decode())
        self.assertEqual(self.bodies("ship"), ["a", "c"])
        # A line larger than a batch takes goes alone (a single PUBLISH, up to 1 MiB).
        big = "y" * (300 * 1024)
        ids = self.b.ok("publish", "big", "--lines",
                        input=("s1\n" + big + "\ns2\n").encode()).split()
        self.assertEqual(len(ids), 3)
        self.assertEqual(self.bodies("ship"), sorted(["s1", big, "s2"]))


if __name__ == "__main__":
    unittest.main()
