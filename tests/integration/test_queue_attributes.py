"""Queue attributes (issue 13, item 1): VisibilityTimeout, MaximumMessageSize and
DelaySeconds set at creation and by set-queue-attributes, shown by get-queue-attributes with
LastModifiedTimestamp, checked against SQS's ranges (by the CLI and by the broker), enforced
on later receives and sends, and kept across a restart."""
import subprocess
import time
import unittest

import msgpack

import harness
from harness import BrokerCase

MALFORMED, INVALID_ARGUMENT, INVALID_NAME, QUEUE_EXISTS, TOO_LARGE = 1, 4, 5, 7, 8
OP_CREATE_QUEUE, OP_DELETE_QUEUE, OP_SEND, OP_SET_QUEUE_ATTRIBUTES, OP_UNTAG_QUEUE = 2, 3, 6, 14, 25


class QueueAttributes(BrokerCase):
    broker_args = ("--max-message-size", "65536")

    def test_create_with_attributes_then_get_shows_them(self):
        before = int(time.time() * 1000)
        self.b.ok("create-queue", "jobs", "--visibility-timeout", "120", "--max-message-size", "2048")
        a = self.b.attributes("jobs")
        self.assertEqual(a["VisibilityTimeout"], 120)
        self.assertEqual(a["MaximumMessageSize"], 2048)
        self.assertEqual(a["LastModifiedTimestamp"], a["CreatedTimestamp"])
        self.assertGreaterEqual(a["CreatedTimestamp"], before - 5000)
        plain = self.b.ok("get-queue-attributes", "jobs")
        self.assertIn("MaximumMessageSize 2048\n", plain)
        self.assertIn("LastModifiedTimestamp ", plain)

    def test_defaults_are_capped_by_the_brokers_limit(self):
        self.b.ok("create-queue", "jobs")
        self.b.ok("create-queue", "jobs")  # the defaults compare equal
        self.fails(1, "TOO_LARGE", "send", "jobs", input=b"x" * 65537)
        a = self.b.attributes("jobs")
        self.assertEqual((a["VisibilityTimeout"], a["MaximumMessageSize"], a["DelaySeconds"]),
                         (30, 65536, 0))

    def test_a_delayed_queue_hides_messages_for_its_delay_also_across_a_restart(self):
        self.b.ok("create-queue", "jobs", "--delay", "2")
        self.assertEqual(self.b.attributes("jobs")["DelaySeconds"], 2)
        sent = time.monotonic()
        self.b.ok("send", "jobs", "later")
        self.assertEqual(self.b.json_lines("receive", "jobs"), [])
        a = self.b.attributes("jobs")
        self.assertEqual((a["ApproximateNumberOfMessages"], a["ApproximateNumberOfMessagesDelayed"],
                          a["ApproximateNumberOfMessagesNotVisible"]), (0, 1, 0))
        self.b.kill9()
        self.b.start()
        m = self.b.wait_for_receive("jobs", 30)
        self.assertIsNotNone(m, "the delayed message never became visible")
        self.assertEqual(m["Body"], "later")
        self.assertGreaterEqual(time.monotonic() - sent, 1.9)
        self.b.ok("set-queue-attributes", "jobs", "--delay", "0")
        self.b.ok("send", "jobs", "now")
        self.assertEqual(self.b.json_lines("receive", "jobs")[0]["Body"], "now")

    def test_set_changes_the_attributes_and_later_receives_and_sends_follow(self):
        self.b.ok("create-queue", "jobs")
        created = self.b.attributes("jobs")["CreatedTimestamp"]
        self.b.ok("set-queue-attributes", "jobs", "--visibility-timeout", "0")
        a = self.b.attributes("jobs")
        self.assertEqual((a["VisibilityTimeout"], a["MaximumMessageSize"]), (0, 65536))
        self.assertGreaterEqual(a["LastModifiedTimestamp"], created)
        # A lease of 0 s: the message is visible again at once.
        self.b.ok("send", "jobs", "m")
        self.assertEqual(len(self.b.json_lines("receive", "jobs")), 1)
        self.assertEqual(len(self.b.json_lines("receive", "jobs")), 1)
        self.b.ok("set-queue-attributes", "jobs", "--max-message-size", "1024")
        self.assertEqual(self.b.attributes("jobs")["VisibilityTimeout"], 0)
        self.b.ok("send", "jobs", input=b"x" * 1024)
        self.fails(1, "queue 'jobs' takes at most 1024 (its MaximumMessageSize)", "send", "jobs",
                   input=b"x" * 1025)
        self.assertEqual(self.b.attributes("jobs")["ApproximateNumberOfMessages"], 2)

    def test_an_oversized_body_is_refused_and_changes_nothing(self):
        self.b.ok("create-queue", "jobs", "--max-message-size", "1500")
        self.fails(1, "TOO_LARGE", "send", "jobs", input=b"y" * 1501)
        a = self.b.attributes("jobs")
        self.assertEqual(a["ApproximateNumberOfMessages"] + a["ApproximateNumberOfMessagesNotVisible"], 0)
        rep = self.raw({"op": OP_SEND, "q": "jobs"}, b"a", b"z" * 1501)
        self.assertEqual(rep["st"], TOO_LARGE, rep)
        self.assertIn("message 2 has 1501 bytes", rep["err"])
        self.assertEqual(self.b.attributes("jobs")["ApproximateNumberOfMessages"], 0)

    def test_out_of_range_values_are_refused_by_the_cli(self):
        self.fails(2, "--max-message-size (MaximumMessageSize) must be a number of bytes from 1024 "
                   "to 1048576, not '1023'", "create-queue", "jobs", "--max-message-size", "1023")
        self.fails(2, "from 1024 to 1048576, not '1048577'", "create-queue", "jobs",
                   "--max-message-size", "1048577")
        self.fails(2, "--visibility-timeout must be a number of seconds from 0 to 43200",
                   "create-queue", "jobs", "--visibility-timeout", "43201")
        self.fails(2, "--delay (DelaySeconds) must be a number of seconds from 0 to 900, not '901'",
                   "create-queue", "jobs", "--delay", "901")
        self.fails(2, "give at least one attribute", "set-queue-attributes", "jobs")
        self.assertEqual(self.b.ok("list-queues"), "")

    def test_out_of_range_values_are_refused_by_the_broker(self):
        for size in (0, 1023, 1048577, 2 ** 32 - 1):
            rep = self.raw({"op": OP_CREATE_QUEUE, "q": "jobs", "mms": size})
            self.assertEqual(rep["st"], INVALID_ARGUMENT, rep)
            self.assertIn("MaximumMessageSize must be 1024 to 1048576 bytes", rep["err"])
        rep = self.raw({"op": OP_CREATE_QUEUE, "q": "jobs", "mms": 1048576})
        self.assertEqual(rep["st"], INVALID_ARGUMENT, rep)
        self.assertIn("over this broker's message size limit of 65536", rep["err"])
        self.fails(1, "INVALID_ARGUMENT", "create-queue", "jobs", "--max-message-size", "100000")
        self.assertEqual(self.b.ok("list-queues"), "")
        self.b.ok("create-queue", "jobs")
        rep = self.raw({"op": OP_SET_QUEUE_ATTRIBUTES, "q": "jobs", "vt": 43201})
        self.assertEqual(rep["st"], INVALID_ARGUMENT, rep)
        rep = self.raw({"op": OP_SET_QUEUE_ATTRIBUTES, "q": "jobs", "ds": 901})
        self.assertEqual(rep["st"], INVALID_ARGUMENT, rep)
        self.assertIn("DelaySeconds must be 0 to 900 seconds, not 901", rep["err"])
        rep = self.raw({"op": OP_SET_QUEUE_ATTRIBUTES, "q": "jobs"})
        self.assertEqual(rep["st"], INVALID_ARGUMENT, rep)
        self.assertIn("at least one attribute", rep["err"])
        self.fails(1, "NO_SUCH_QUEUE", "set-queue-attributes", "nope", "--visibility-timeout", "5")
        a = self.b.attributes("jobs")
        self.assertEqual((a["VisibilityTimeout"], a["MaximumMessageSize"], a["DelaySeconds"]),
                         (30, 65536, 0))

    def test_create_existing_with_the_same_attributes_succeeds_with_others_fails(self):
        self.b.ok("create-queue", "jobs", "--visibility-timeout", "60", "--max-message-size", "4096")
        self.b.ok("create-queue", "jobs", "--visibility-timeout", "60", "--max-message-size", "4096")
        self.fails(1, "QUEUE_EXISTS: queue 'jobs' exists with a different value for attribute "
                   "MaximumMessageSize: 4096, not 8192",
                   "create-queue", "jobs", "--visibility-timeout", "60", "--max-message-size", "8192")
        self.fails(1, "attribute VisibilityTimeout: 60, not 30", "create-queue", "jobs",
                   "--max-message-size", "4096")
        self.fails(1, "attribute DelaySeconds: 0, not 3", "create-queue", "jobs",
                   "--visibility-timeout", "60", "--max-message-size", "4096", "--delay", "3")
        a = self.b.attributes("jobs")
        self.assertEqual((a["VisibilityTimeout"], a["MaximumMessageSize"]), (60, 4096))

    def test_retention_receive_wait_redrive_allow_and_tags(self):
        self.b.ok("create-queue", "jobs", "--retention", "60", "--receive-wait", "20",
                  "--redrive-allow", "a,b", "--tag", "team=core", "--tag", "empty=", "--tag", "k=v=w")
        a = self.b.attributes("jobs")
        self.assertEqual((a["MessageRetentionPeriod"], a["ReceiveMessageWaitTimeSeconds"]), (60, 20))
        self.assertEqual(a["Tags"], {"team": "core", "empty": "", "k": "v=w"})
        self.assertEqual(a["RedriveAllowPolicy"], '{"redrivePermission":"byQueue","sourceQueues":["a","b"]}')
        plain = self.b.ok("get-queue-attributes", "jobs")
        self.assertIn("MessageRetentionPeriod 60\n", plain)
        self.assertIn("Tag team core\n", plain)
        # The same attributes: fine; another: the attribute is named.
        self.b.ok("create-queue", "jobs", "--retention", "60", "--receive-wait", "20",
                  "--redrive-allow", "a,b", "--tag", "team=core", "--tag", "empty=", "--tag", "k=v=w")
        self.fails(1, "attribute MessageRetentionPeriod: 60, not 345600", "create-queue", "jobs")
        self.fails(1, "attribute tags: 3 tags, not 1 tags", "create-queue", "jobs", "--retention", "60",
                   "--receive-wait", "20", "--redrive-allow", "a,b", "--tag", "team=core")
        # set-queue-attributes: the others stay, tags are added.
        self.b.ok("set-queue-attributes", "jobs", "--retention", "1209600", "--tag", "team=edge",
                  "--tag", "more=1", "--redrive-allow", "all")
        a = self.b.attributes("jobs")
        self.assertEqual((a["MessageRetentionPeriod"], a["ReceiveMessageWaitTimeSeconds"]), (1209600, 20))
        self.assertEqual(a["Tags"], {"team": "edge", "empty": "", "k": "v=w", "more": "1"})
        self.assertNotIn("RedriveAllowPolicy", a)  # allowAll, the default, is not shown
        self.b.kill9()
        self.b.start()
        self.assertEqual(self.b.attributes("jobs"), a)

    def test_untag_queue_removes_keys_and_a_key_the_queue_lacks_is_no_error(self):
        self.b.ok("create-queue", "jobs", "--tag", "team=core", "--tag", "env=prod", "--tag",
                  "caf\u00e9=\u20ac", "--retention", "600")
        created = self.b.attributes("jobs")
        self.b.ok("untag-queue", "jobs", "env", "absent")
        a = self.b.attributes("jobs")
        self.assertEqual(a["Tags"], {"team": "core", "caf\u00e9": "\u20ac"})
        self.assertEqual(a["MessageRetentionPeriod"], 600)
        self.assertGreaterEqual(a["LastModifiedTimestamp"], created["LastModifiedTimestamp"])
        self.b.ok("untag-queue", "jobs", "absent")  # only keys it lacks: fine, nothing changes
        self.assertEqual(self.b.attributes("jobs"), a)
        self.b.ok("untag-queue", "jobs", "caf\u00e9", "team")
        self.assertNotIn("Tags", self.b.attributes("jobs"))
        self.b.kill9()
        self.b.start()
        self.assertNotIn("Tags", self.b.attributes("jobs"))
        self.assertEqual(self.b.attributes("jobs")["MessageRetentionPeriod"], 600)
        # Bad input: refused by the CLI or the broker, nothing changes.
        self.b.ok("set-queue-attributes", "jobs", "--tag", "k=v")
        self.fails(2, "usage", "untag-queue", "jobs")
        self.fails(1, "NO_SUCH_QUEUE", "untag-queue", "nope", "k")
        self.fails(1, "tag key 'k' given twice", "untag-queue", "jobs", "k", "k")
        self.fails(1, "give 1 to 50 tag keys, not 51", "untag-queue", "jobs",
                   *["k%d" % i for i in range(51)])
        r = subprocess.run([harness.CLI, "--broker", self.b.endpoint, "untag-queue", "jobs", b"k\xff"],
                           capture_output=True, timeout=60)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn(b"not valid UTF-8", r.stderr)
        for tk, text in [([], "tk must be an array of 1 to 50 tag keys"), (["k"] * 2, "given twice"),
                         ([""], "must not be empty"), ("k", "tk must be an array"),
                         ([b"\xed\xa0\x80"], "tag key is not valid UTF-8"),
                         (["k" * 129], "longer than 128 bytes")]:
            rep = self.raw_str({"op": OP_UNTAG_QUEUE, "q": "jobs", "tk": tk})
            self.assertEqual(rep["st"], INVALID_ARGUMENT, (tk, rep))
            self.assertIn(text, rep["err"])
        rep = self.raw({"op": OP_UNTAG_QUEUE, "q": "jobs", "tk": ["k"], "tags": {}})
        self.assertEqual(rep["st"], MALFORMED, rep)
        self.assertEqual(self.b.attributes("jobs")["Tags"], {"k": "v"})

    def raw_str(self, header):
        """As raw, with bytes values sent as msgpack str (bytes that may not be UTF-8)."""
        return msgpack.unpackb(harness.request_frames(
            self.b.endpoint, msgpack.packb(dict(header, id=1), use_bin_type=False))[0])

    def test_tags_must_be_valid_utf8(self):
        for tags in [{b"k\x80": "v"}, {"k": b"\xc0\xaf"}, {"k": b"\xf4\x90\x80\x80"}]:
            rep = self.raw_str({"op": OP_CREATE_QUEUE, "q": "jobs", "tags": tags})
            self.assertEqual(rep["st"], INVALID_ARGUMENT, rep)
            self.assertIn("not valid UTF-8", rep["err"])
        self.assertEqual(self.b.ok("list-queues"), "")
        self.b.ok("create-queue", "jobs", "--tag", "k=v")
        r = subprocess.run([harness.CLI, "--broker", self.b.endpoint, "set-queue-attributes", "jobs",
                            "--tag", b"k=\xe2\x82"], capture_output=True, timeout=60)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn(b"INVALID_ARGUMENT", r.stderr)
        self.assertIn(b"tag value is not valid UTF-8", r.stderr)
        self.assertEqual(self.b.attributes("jobs")["Tags"], {"k": "v"})

    def test_other_attributes_out_of_range_are_refused_by_the_cli_and_the_broker(self):
        self.fails(2, "--retention (MessageRetentionPeriod) must be a number of seconds from 60 to 1209600",
                   "create-queue", "jobs", "--retention", "59")
        self.fails(2, "--receive-wait (ReceiveMessageWaitTimeSeconds) must be a number of seconds from 0 to 20",
                   "create-queue", "jobs", "--receive-wait", "21")
        self.fails(2, "--tag must be KEY=VALUE", "create-queue", "jobs", "--tag", "novalue")
        self.fails(2, "--tag must be KEY=VALUE", "create-queue", "jobs", "--tag", "=v")
        self.fails(2, "--tag must be KEY=VALUE", "create-queue", "jobs", "--tag", "k" * 129 + "=v")
        self.fails(2, "at most 50 tags", "create-queue", "jobs",
                   *[x for i in range(51) for x in ("--tag", "k%d=v" % i)])
        self.fails(2, "at most 10 source queues", "create-queue", "jobs", "--redrive-allow",
                   ",".join("q%d" % i for i in range(11)))
        self.fails(2, "invalid queue name", "create-queue", "jobs", "--redrive-allow", "a,b/c")
        self.assertEqual(self.b.ok("list-queues"), "")
        for field, value, text in [("mrp", 59, "MessageRetentionPeriod must be 60 to 1209600 seconds, not 59"),
                                   ("mrp", 2 ** 32 - 1, "not 4294967295"),
                                   ("rwt", 21, "ReceiveMessageWaitTimeSeconds must be 0 to 20 seconds, not 21"),
                                   ("rdp", ["jobs2", 0], "maxReceiveCount must be 1 to 1000, not 0"),
                                   ("rdp", ["nope", 5], "dead-letter queue 'nope' does not exist"),
                                   ("rdp", ["a b", 5], "queue names are 1 to 80"),
                                   ("rdp", ["x"], "rdp (RedrivePolicy) must be"),
                                   ("rap", ["byQueue"], "rap (RedriveAllowPolicy) must be"),
                                   ("rap", ["byQueue", []], "byQueue takes 1 to 10 source queues"),
                                   ("rap", ["sometimes"], "rap (RedriveAllowPolicy) must be"),
                                   ("tags", {"k%d" % i: "v" for i in range(51)}, "at most 50 tags, not 51"),
                                   ("tags", {"": "v"}, "a tag key must not be empty"),
                                   ("tags", {"k": "v" * 257}, "tag value is longer than 256 bytes"),
                                   ("tags", ["k", "v"], "tags must be a map of strings")]:
            rep = self.raw({"op": OP_CREATE_QUEUE, "q": "jobs", field: value})
            self.assertIn(rep["st"], (INVALID_ARGUMENT, INVALID_NAME), rep)
            self.assertIn(text, rep["err"])
        rep = self.raw({"op": OP_DELETE_QUEUE, "q": "jobs", "force": False})
        self.assertEqual(rep["st"], INVALID_ARGUMENT, rep)
        rep = self.raw({"op": OP_SEND, "q": "jobs", "tags": {}}, b"x")
        self.assertEqual(rep["st"], MALFORMED, rep)
        self.assertEqual(self.b.ok("list-queues"), "")

    def test_attributes_survive_a_restart(self):
        self.b.ok("create-queue", "jobs", "--visibility-timeout", "60", "--max-message-size", "4096")
        self.b.ok("set-queue-attributes", "jobs", "--visibility-timeout", "90", "--delay", "7")
        before = self.b.attributes("jobs")
        self.assertEqual(self.b.stop(), 0)
        self.b.start()
        self.assertEqual(self.b.attributes("jobs"), before)
        self.b.kill9()
        self.b.start()
        after = self.b.attributes("jobs")
        self.assertEqual((after["VisibilityTimeout"], after["MaximumMessageSize"],
                          after["DelaySeconds"]), (90, 4096, 7))
        self.assertEqual(after["LastModifiedTimestamp"], before["LastModifiedTimestamp"])
        self.fails(1, "its MaximumMessageSize", "send", "jobs", input=b"x" * 4097)


if __name__ == "__main__":
    unittest.main()
