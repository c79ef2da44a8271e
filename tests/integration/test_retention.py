"""Retention (issue 13, item 4) through the CLI: messages older than their queue's
MessageRetentionPeriod disappear without a request, visible, in flight and delayed alike,
while a younger one stays, also across a restart. The shortest period SQS allows is 60 s,
so this test waits about a minute; every wait is bounded; the broker is stopped by its PID."""
import json
import time
import unittest

from harness import Broker


class Retention(unittest.TestCase):
    def setUp(self):
        self.b = Broker().start()

    def tearDown(self):
        self.b.cleanup()

    def total(self, queue):
        a = self.b.attributes(queue)
        return (a["ApproximateNumberOfMessages"] + a["ApproximateNumberOfMessagesNotVisible"] +
                a["ApproximateNumberOfMessagesDelayed"])

    def test_old_messages_expire_visible_in_flight_and_delayed_and_young_ones_stay(self):
        self.b.ok("create-queue", "q", "--retention", "60")
        self.b.ok("create-queue", "keep")  # the default period: 4 days
        self.assertEqual(self.b.attributes("q")["MessageRetentionPeriod"], 60)
        start = time.monotonic()
        self.b.ok("send", "q", "leased")
        leased = json.loads(self.b.ok("--json", "receive", "q", "--visibility-timeout", "3600"))
        self.assertEqual(leased["Body"], "leased")
        self.b.ok("send", "q", "visible")
        self.b.ok("send", "q", "delayed", "--delay", "900")
        self.b.ok("send", "keep", "kept")
        # A message sent 30 s later is still young when the first three expire.
        time.sleep(max(0.0, start + 30 - time.monotonic()))
        self.b.ok("send", "q", "young")
        self.assertEqual(self.total("q"), 4)
        deadline = time.monotonic() + 120
        while True:
            total = self.total("q")  # read once: the expiry may land between two reads
            if total == 1:
                break
            self.assertGreater(total, 1, "the young message expired too")
            self.assertLess(time.monotonic(), deadline, "the old messages did not expire")
            time.sleep(0.5)
        # The one left is the young one; the expired lease's handle finds nothing.
        got = json.loads(self.b.ok("--json", "receive", "q", "--visibility-timeout", "0"))
        self.assertEqual(got["Body"], "young")
        r = self.b.cli("delete", "q", leased["ReceiptHandle"])
        self.assertEqual(r.returncode, 1)
        self.assertIn("RECEIPT_INVALID", r.stderr.decode())
        # Another queue's period is its own.
        self.assertEqual(self.total("keep"), 1)
        # A restart brings none of them back.
        self.b.stop()
        self.b.start()
        self.assertEqual(self.total("q"), 1)
        self.assertEqual(self.total("keep"), 1)


if __name__ == "__main__":
    unittest.main()
