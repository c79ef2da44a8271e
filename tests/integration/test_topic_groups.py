"""A standard topic's MessageGroupId (issue 15, SNS's: optional on a standard topic, forwarded
only to standard SQS subscriptions): `kyu publish TOPIC --group G` gives every copy, raw and
enveloped, the group, so each subscribed queue's fair groups serve a quiet publisher's
message before a noisy publisher's backlog; a batch's entries each carry their own group; a
deduplication id is refused and enqueues nothing; a kill -9 keeps the copies' groups.

Only what receives return is asserted, never how fast. Every wait is bounded; processes are
stopped by their PID only."""
import json
import unittest

from harness import BrokerCase


def gid(m):
    """A received message's MessageGroupId ("" for none), from its SQS-shaped Attributes."""
    return m["Attributes"].get("MessageGroupId", "")


def message(m):
    """The message published: a raw copy's body, or the Message of SNS's envelope."""
    body = m["Body"]
    return json.loads(body)["Message"] if body.startswith("{") else body


class TopicGroups(BrokerCase):
    def receive(self, queue, n):
        return self.b.json_lines("receive", queue, "--max", str(n), "--visibility-timeout",
                                 "600")

    def setup_topic(self):
        self.b.ok("create-queue", "raw")
        self.b.ok("create-queue", "env")
        self.b.ok("create-topic", "t")
        self.b.ok("subscribe", "t", "raw", "--raw")
        self.b.ok("subscribe", "t", "env")

    def test_a_quiet_publisher_is_served_before_a_noisy_publishers_backlog(self):
        self.setup_topic()
        lines = "".join("n%04d\n" % i for i in range(2000)).encode()
        self.b.ok("publish", "t", "--lines", "--group", "noisy", input=lines)
        for q in ("raw", "env"):
            first = self.receive(q, 1)
            self.assertEqual([(message(m), gid(m)) for m in first], [("n0000", "noisy")])
        self.b.ok("publish", "t", "hello", "--group", "quiet")
        for q in ("raw", "env"):
            # a receive of one: the publisher served least recently (never) goes first
            got = self.receive(q, 1)
            self.assertEqual([(message(m), gid(m)) for m in got], [("hello", "quiet")], q)
        self.b.ok("publish", "t", "again", "--group", "quiet")
        for q in ("raw", "env"):
            got = self.receive(q, 10)
            self.assertEqual(len(got), 10)
            self.assertEqual([message(m) for m in got if gid(m) == "quiet"], ["again"], q)
            self.assertEqual(len({m["MessageId"] for m in got}), 10)

    def test_batch_entries_carry_their_own_groups_and_a_dedup_id_is_refused(self):
        self.setup_topic()
        entries = [
            {"Id": "e1", "Message": "one", "MessageGroupId": "g1"},
            {"Id": "e2", "Message": "two"},
            {"Id": "e3", "Message": "three", "MessageGroupId": "g2",
             "MessageDeduplicationId": "d3"},
            {"Id": "e4", "Message": "four", "MessageGroupId": "g2"},
        ]
        r = self.b.cli("--json", "publish-batch", "t",
                       input="".join(json.dumps(e) + "\n" for e in entries).encode())
        self.assertEqual(r.returncode, 1, r.stderr.decode())
        out = json.loads(r.stdout.decode())
        self.assertEqual(sorted(e["Id"] for e in out["Successful"]), ["e1", "e2", "e4"])
        self.assertEqual([f["Id"] for f in out["Failed"]], ["e3"])
        self.assertIn("MessageDeduplicationId is for FIFO topics", out["Failed"][0]["Message"])
        self.fails(1, "MessageDeduplicationId is for FIFO topics", "publish", "t", "x",
                   "--group", "g", "--dedup-id", "d")
        self.b.kill9()
        self.b.start()
        for q in ("raw", "env"):
            got = self.receive(q, 10)
            self.assertEqual(sorted((message(m), gid(m)) for m in got),
                             [("four", "g2"), ("one", "g1"), ("two", "")], q)


if __name__ == "__main__":
    unittest.main()
