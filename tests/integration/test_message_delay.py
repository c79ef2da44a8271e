"""Per-message delay (issue 13, item 2): `kyu send --delay SEC` (SQS's per-message
DelaySeconds, replacing the queue's both ways) and `kyu send --deliver-at RFC3339|+DURATION`
(at most the queue's retention period ahead), with --lines too; bad values refused by the CLI and by the broker with
a clear message, changing nothing; a delayed message kept across a kill -9."""
import datetime
import time
import unittest

from harness import BrokerCase

INVALID_ARGUMENT = 4
OP_SEND = 6


class MessageDelay(BrokerCase):
    count_states = ("visible", "delayed")

    def bodies(self, queue):
        return [m["Body"] for m in self.b.json_lines("receive", queue, "--max", "10")]

    def test_send_delay_hides_the_message_then_it_arrives(self):
        self.b.ok("create-queue", "jobs")
        sent = time.monotonic()
        self.b.ok("send", "jobs", "later", "--delay", "2")
        self.b.ok("send", "jobs", "now")
        self.assertEqual(self.counts("jobs"), (1, 1))
        self.assertEqual(self.bodies("jobs"), ["now"])
        m = self.b.wait_for_receive("jobs", 30)
        self.assertIsNotNone(m, "the delayed message never became visible")
        self.assertEqual(m["Body"], "later")
        self.assertGreaterEqual(time.monotonic() - sent, 1.9)

    def test_a_message_delay_replaces_the_queues_both_ways(self):
        self.b.ok("create-queue", "jobs", "--delay", "600")
        self.b.ok("send", "jobs", "zero", "--delay", "0")
        self.b.ok("send", "jobs", "queue")
        self.assertEqual(self.bodies("jobs"), ["zero"])
        self.b.ok("create-queue", "fast")
        self.b.ok("send", "fast", "slow", "--delay", "900")
        self.assertEqual(self.counts("fast"), (0, 1))

    def test_send_lines_delays_every_line(self):
        self.b.ok("create-queue", "jobs")
        out = self.b.ok("send", "jobs", "--lines", "--deliver-at", "+1h", input=b"a\nb\nc\n")
        self.assertEqual(len(out.split()), 3)
        self.assertEqual(self.counts("jobs"), (0, 3))

    def test_deliver_at_a_duration_and_an_rfc3339_time(self):
        self.b.ok("create-queue", "jobs")
        self.b.ok("send", "jobs", "in2s", "--deliver-at", "+2s")
        self.b.ok("send", "jobs", "in3d", "--deliver-at", "+3d")
        at = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=3)
        self.b.ok("send", "jobs", "at", "--deliver-at", at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
        tz = datetime.timezone(datetime.timedelta(hours=2))
        later = datetime.datetime.now(tz) + datetime.timedelta(hours=1)
        self.b.ok("send", "jobs", "tz", "--deliver-at", later.strftime("%Y-%m-%dT%H:%M:%S+02:00"))
        past = "2020-01-01T00:00:00Z"  # a time already past: at once
        self.b.ok("send", "jobs", "past", "--deliver-at", past)
        self.assertEqual(self.counts("jobs"), (1, 4))
        self.assertEqual(self.bodies("jobs"), ["past"])
        got = []
        deadline = time.monotonic() + 30
        while len(got) < 2 and time.monotonic() < deadline:
            got += self.bodies("jobs")
            time.sleep(0.05)
        self.assertEqual(sorted(got), ["at", "in2s"])
        self.assertEqual(self.counts("jobs"), (0, 2))

    def test_bad_values_are_refused_by_the_cli(self):
        self.b.ok("create-queue", "jobs")
        self.fails(2, "--delay (DelaySeconds) must be a number of seconds from 0 to 900, not '901'",
                   "send", "jobs", "x", "--delay", "901")
        self.fails(2, "--deliver-at '+15d': at most 1209600 seconds (14 days", "send", "jobs",
                   "x", "--deliver-at", "+15d")
        self.fails(2, "--deliver-at 'tomorrow': give an RFC 3339 time", "send", "jobs", "x",
                   "--deliver-at", "tomorrow")
        self.fails(2, "--deliver-at '+2w': a duration is +N followed by s, m, h or d", "send",
                   "jobs", "x", "--deliver-at", "+2w")
        for bad in ("2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z", "2026-12-05T10:00:00",
                    "2026-12-05T10:00:00Zjunk", "2026-12-05"):
            self.fails(2, "--deliver-at '%s': give an RFC 3339 time" % bad, "send", "jobs", "x",
                       "--deliver-at", bad)
        self.fails(2, "give --delay or --deliver-at, not both", "send", "jobs", "x", "--delay",
                   "1", "--deliver-at", "+1m")
        self.assertEqual(self.counts("jobs"), (0, 0))

    def test_bad_values_are_refused_by_the_broker(self):
        self.b.ok("create-queue", "jobs")
        rep = self.raw({"op": OP_SEND, "q": "jobs", "ds": 901}, b"x")
        self.assertEqual(rep["st"], INVALID_ARGUMENT, rep)
        self.assertIn("DelaySeconds must be 0 to 900 seconds, not 901", rep["err"])
        far = int(time.time() * 1000) + 5 * 86400 * 1000
        rep = self.raw({"op": OP_SEND, "q": "jobs", "da": far}, b"x")
        self.assertEqual(rep["st"], INVALID_ARGUMENT, rep)
        self.assertIn("deliver-at must be at most 345600 seconds after the send (queue 'jobs's "
                      "MessageRetentionPeriod)", rep["err"])
        # A queue kept longer takes a later delivery time.
        self.b.ok("create-queue", "long", "--retention", "1209600")
        rep = self.raw({"op": OP_SEND, "q": "long", "da": far}, b"x")
        self.assertEqual(rep["st"], 0, rep)
        rep = self.raw({"op": OP_SEND, "q": "jobs", "ds": 1, "da": far}, b"x")
        self.assertEqual(rep["st"], INVALID_ARGUMENT, rep)
        self.assertIn("not both", rep["err"])
        rep = self.raw({"op": OP_SEND, "q": "jobs", "ds": -1}, b"x")
        self.assertEqual(rep["st"], INVALID_ARGUMENT, rep)
        self.assertEqual(self.counts("jobs"), (0, 0))
        self.assertTrue(self.b.alive())

    def test_a_message_delay_survives_a_kill_9(self):
        self.b.ok("create-queue", "jobs")
        sent = time.monotonic()
        self.b.ok("send", "jobs", "later", "--delay", "3")
        self.b.ok("send", "jobs", "much-later", "--deliver-at", "+2h")
        self.assertEqual(self.counts("jobs"), (0, 2))
        self.b.kill9()
        self.b.start()
        self.assertEqual(self.counts("jobs")[1] + self.counts("jobs")[0], 2)
        m = self.b.wait_for_receive("jobs", 30)
        self.assertIsNotNone(m, "the delayed message never became visible")
        self.assertEqual(m["Body"], "later")
        self.assertGreaterEqual(time.monotonic() - sent, 2.9)
        self.assertEqual(self.counts("jobs"), (0, 1))


if __name__ == "__main__":
    unittest.main()
