"""The kyu CLI contract (client/README.md) against a real kyu-broker.

Starts one kyu-broker on a random 127.0.0.1 port with a temporary data directory, drives it
through the `kyu` binary and checks exit statuses, stdout shapes and stderr lines. Every
wait is bounded by a deadline; the broker is killed by its PID in tearDownClass.
Needs KYU_BIN_DIR (the kyu binary's folder) and KYU_BROKER_BIN (kyu-broker's path).
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from harness import free_port  # noqa: E402  (ports below the ephemeral range)

KYU = os.path.join(os.environ.get("KYU_BIN_DIR", "."), "kyu")
BROKER = os.environ.get("KYU_BROKER_BIN", "kyu-broker")
DEADLINE_S = 30




def dead_endpoint():
    return "tcp://127.0.0.1:%d" % free_port()


class Broker:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="kyu-cli-test-")
        self.proc = None
        self.endpoint = None

    def start(self):
        for _ in range(5):  # a port picked free can be taken before the broker binds it
            self.endpoint = "tcp://127.0.0.1:%d" % free_port()
            self.log = open(os.path.join(self.dir, "broker.log"), "wb")
            self.proc = subprocess.Popen(
                [BROKER, "--data", os.path.join(self.dir, "data"), "--listen", self.endpoint],
                stdout=self.log, stderr=subprocess.STDOUT)
            if self.wait_ready():
                return
            self.stop()
        raise RuntimeError("kyu-broker did not start; see " + self.dir)

    def wait_ready(self):
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            r = subprocess.run([KYU, "--broker", self.endpoint, "--timeout", "1", "list-queues"],
                               capture_output=True, timeout=DEADLINE_S)
            if r.returncode == 0:
                return True
        return False

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=DEADLINE_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=DEADLINE_S)
        self.proc = None
        self.log.close()


class BrokerCase(unittest.TestCase):
    """A test class with one kyu-broker of its own, started before its tests and stopped after."""
    broker = None

    @classmethod
    def setUpClass(cls):
        cls.broker = Broker()
        try:
            cls.broker.start()
        except Exception:
            shutil.rmtree(cls.broker.dir, ignore_errors=True)
            raise

    @classmethod
    def tearDownClass(cls):
        cls.broker.stop()
        shutil.rmtree(cls.broker.dir, ignore_errors=True)


class CliTest(BrokerCase):
    counter = 0

    def kyu(self, *args, stdin=b"", broker=None, json_out=False, env=None):
        cmd = [KYU, "--broker", broker or self.broker.endpoint]
        if json_out:
            cmd.append("--json")
        cmd += list(args)
        return subprocess.run(cmd, input=stdin, capture_output=True, timeout=DEADLINE_S,
                              env=env)

    def ok(self, *args, **kw):
        r = self.kyu(*args, **kw)
        self.assertEqual(r.returncode, 0, "kyu %s: stderr %r" % (args, r.stderr))
        self.assertEqual(r.stderr, b"")
        return r.stdout

    def new_queue(self, *extra):
        CliTest.counter += 1
        name = "%s-%d" % (self.id().split(".")[-1][:60], CliTest.counter)
        self.ok("create-queue", name, *extra)
        return name

    def receive_json(self, q, max_n=10, *extra):
        out = self.ok("receive", q, "--max", str(max_n), *extra, json_out=True)
        return [json.loads(line) for line in out.decode().splitlines()]

    def drain(self, q):
        """Receives until the queue has no visible message; returns the messages."""
        got = []
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            batch = self.receive_json(q)
            if not batch:
                return got
            got += batch
        self.fail("queue %s not drained in %d s" % (q, DEADLINE_S))

    def attrs(self, q):
        return json.loads(self.ok("get-queue-attributes", q, json_out=True))

    # ---- help and usage errors (exit 2, before any broker is contacted) ----

    def test_help_lists_every_command(self):
        r = subprocess.run([KYU, "--help"], capture_output=True, timeout=DEADLINE_S)
        self.assertEqual(r.returncode, 0)
        for cmd in ["create-queue", "delete-queue", "list-queues", "get-queue-attributes",
                    "send", "receive", "delete", "change-visibility", "--broker", "--json"]:
            self.assertIn(cmd.encode(), r.stdout)

    def test_usage_errors_exit_2_without_contacting_the_broker(self):
        dead = dead_endpoint()  # contacting it would time out and exit 1, not 2
        cases = [
            [], ["frobnicate"], ["receive", "q", "--max", "abc"], ["receive", "q", "--max", "0"],
            ["receive", "q", "--max", "11"], ["receive", "q", "--visibility-timeout", "-1"],
            ["create-queue", "q", "--visibility-timeout", "43201"],
            ["receive", "q", "--max"], ["create-queue"], ["create-queue", "a", "b"],
            ["create-queue", "a/b"], ["create-queue", "x" * 81], ["send", "bad name!", "x"],
            ["change-visibility", "q", "h"], ["delete", "q"], ["send", "q", "body", "--lines"],
            ["receive", "q", "--lines"], ["list-queues", "--bogus"], ["delete", "q", "h" * 129],
        ]
        for args in cases:
            r = self.kyu(*args, broker=dead)
            self.assertEqual(r.returncode, 2, "kyu %s: %r" % (args, r.stderr))
            self.assertIn(b"usage: kyu", r.stderr, args)
            self.assertEqual(r.stdout, b"", args)

    def test_invalid_queue_name_says_why(self):
        r = self.kyu("create-queue", "a/b")
        self.assertEqual(r.returncode, 2)
        self.assertIn(b"kyu: create-queue: invalid queue name 'a/b'", r.stderr)

    def test_unreachable_broker_is_exit_1_with_one_line(self):
        r = self.kyu("--timeout", "1", "list-queues", broker=dead_endpoint())
        self.assertEqual(r.returncode, 1)
        self.assertEqual(len(r.stderr.splitlines()), 1, r.stderr)
        self.assertTrue(r.stderr.startswith(b"kyu: list-queues: CONNECTION: "), r.stderr)

    def test_broker_from_environment(self):
        env = dict(os.environ, KYU_BROKER=self.broker.endpoint)
        r = subprocess.run([KYU, "list-queues"], capture_output=True, env=env,
                           timeout=DEADLINE_S)
        self.assertEqual(r.returncode, 0, r.stderr)

    # ---- queues ----

    def test_create_list_and_delete_queue(self):
        q = self.new_queue()
        self.assertIn(q, self.ok("list-queues").decode().splitlines())
        lines = self.ok("list-queues", json_out=True).decode().splitlines()
        self.assertIn({"QueueName": q}, [json.loads(line) for line in lines])
        self.ok("create-queue", q)  # same attributes: no error
        self.ok("delete-queue", q)
        self.assertNotIn(q, self.ok("list-queues").decode().splitlines())
        r = self.kyu("delete-queue", q)
        self.assertEqual(r.returncode, 1)
        self.assertTrue(r.stderr.startswith(b"kyu: delete-queue: NO_SUCH_QUEUE: "), r.stderr)

    def test_create_queue_with_other_attributes_is_an_error(self):
        q = self.new_queue("--visibility-timeout", "60")
        r = self.kyu("create-queue", q, "--visibility-timeout", "61")
        self.assertEqual(r.returncode, 1)
        self.assertTrue(r.stderr.startswith(b"kyu: create-queue: QUEUE_EXISTS: "), r.stderr)

    def test_get_queue_attributes_shapes_and_counts(self):
        q = self.new_queue("--visibility-timeout", "45")
        for body in ["a", "b", "c"]:
            self.ok("send", q, body)
        self.receive_json(q, 1)
        a = self.attrs(q)
        self.assertEqual(set(a), {"VisibilityTimeout", "MaximumMessageSize", "DelaySeconds",
                                  "MessageRetentionPeriod", "ReceiveMessageWaitTimeSeconds",
                                  "ApproximateNumberOfMessages",
                                  "ApproximateNumberOfMessagesNotVisible",
                                  "ApproximateNumberOfMessagesDelayed", "CreatedTimestamp",
                                  "LastModifiedTimestamp"})
        self.assertEqual(a["VisibilityTimeout"], "45")
        self.assertEqual(a["MaximumMessageSize"], "1048576")
        self.assertEqual(a["LastModifiedTimestamp"], a["CreatedTimestamp"])
        self.assertEqual(a["ApproximateNumberOfMessages"], "2")
        self.assertEqual(a["ApproximateNumberOfMessagesNotVisible"], "1")
        self.assertTrue(a["CreatedTimestamp"].isdigit())
        plain = dict(line.split(" ", 1) for line in
                     self.ok("get-queue-attributes", q).decode().splitlines())
        self.assertEqual(plain["ApproximateNumberOfMessages"], "2")
        self.assertEqual(plain["VisibilityTimeout"], "45")

    # ---- send and receive ----

    def test_send_to_missing_queue_is_exit_1_with_the_reason(self):
        r = self.kyu("send", "no-such-queue-here", "x")
        self.assertEqual(r.returncode, 1)
        self.assertEqual(len(r.stderr.splitlines()), 1)
        self.assertTrue(r.stderr.startswith(b"kyu: send: NO_SUCH_QUEUE: "), r.stderr)
        self.assertIn(b"no-such-queue-here", r.stderr)

    def test_send_argument_and_stdin_then_receive_plain(self):
        q = self.new_queue()
        id1 = self.ok("send", q, "from argv").decode().strip()
        id2 = self.ok("send", q, stdin=b"line one\nline two\n").decode().strip()
        self.assertNotEqual(id1, id2)
        out = self.ok("receive", q, "--max", "10")
        self.assertIn(b"from argv", out)
        self.assertIn(b"line one\nline two\n", out)
        self.assertIn(id1.encode(), out)
        self.assertIn(b"ReceiptHandle ", out)
        self.assertIn(b"ReceiveCount 1", out)

    def test_send_json_prints_message_id_objects(self):
        q = self.new_queue()
        out = self.ok("send", q, "x", json_out=True)
        obj = json.loads(out)
        # SQS's SendMessage shape: MD5OfMessageAttributes only for a message that has some
        self.assertEqual(list(obj), ["MessageId", "MD5OfMessageBody"])
        self.assertEqual(obj["MD5OfMessageBody"], "9dd4e461268c8034f5c8564e155c67a6")  # md5("x")

    def test_empty_body_is_refused(self):
        q = self.new_queue()
        r = self.kyu("send", q, stdin=b"")
        self.assertEqual(r.returncode, 1)
        self.assertTrue(r.stderr.startswith(b"kyu: send: EMPTY_BODY: "), r.stderr)

    def test_send_lines_prints_ids_in_input_order(self):
        q = self.new_queue()
        n = 350  # more than the 100 in flight
        stdin = "".join("message %d\n" % i for i in range(n)).encode()
        ids = self.ok("send", q, "--lines", stdin=stdin).decode().splitlines()
        self.assertEqual(len(ids), n)
        self.assertEqual(len(set(ids)), n)
        body_of = {m["MessageId"]: m["Body"] for m in self.drain(q)}
        self.assertEqual(len(body_of), n)
        for i, mid in enumerate(ids):
            self.assertEqual(body_of[mid], "message %d" % i)

    def test_send_lines_json_and_last_line_without_newline(self):
        q = self.new_queue()
        out = self.ok("send", q, "--lines", stdin=b"a\nb", json_out=True).decode()
        objs = [json.loads(line) for line in out.splitlines()]
        self.assertEqual(len(objs), 2)
        self.assertTrue(all(list(o) == ["MessageId", "MD5OfMessageBody"] for o in objs))
        self.assertEqual(sorted(m["Body"] for m in self.drain(q)), ["a", "b"])

    def test_send_lines_stops_at_the_first_failure_and_names_the_line(self):
        q = self.new_queue()
        r = self.kyu("send", q, "--lines", stdin=b"one\n\nthree\n")
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"line 2: EMPTY_BODY", r.stderr)
        self.assertGreaterEqual(len(r.stdout.splitlines()), 1)  # "one" was acknowledged

    def test_receive_json_shape(self):
        q = self.new_queue()
        mid = self.ok("send", q, 'quote " and \\ and ü').decode().strip()
        [m] = self.receive_json(q, 1)
        self.assertEqual(set(m), {"MessageId", "ReceiptHandle", "Body", "MD5OfBody", "Attributes"})
        self.assertEqual(m["MessageId"], mid)
        self.assertEqual(m["Body"], 'quote " and \\ and ü')
        at = m["Attributes"]
        self.assertEqual(set(at), {"ApproximateReceiveCount", "SentTimestamp",
                                   "ApproximateFirstReceiveTimestamp"})
        self.assertEqual(at["ApproximateReceiveCount"], "1")
        self.assertTrue(at["SentTimestamp"].isdigit())
        self.assertTrue(at["ApproximateFirstReceiveTimestamp"].isdigit())

    def test_receive_from_empty_queue_prints_nothing(self):
        q = self.new_queue()
        self.assertEqual(self.ok("receive", q), b"")
        self.assertEqual(self.ok("receive", q, json_out=True), b"")

    def test_receive_max_bounds_the_batch(self):
        q = self.new_queue()
        self.ok("send", q, "--lines", stdin=b"1\n2\n3\n4\n5\n")
        self.assertEqual(len(self.receive_json(q, 3)), 3)
        self.assertEqual(len(self.receive_json(q, 10)), 2)

    def test_binary_body_json_is_an_error_and_the_message_stays_available(self):
        q = self.new_queue()
        self.ok("send", q, stdin=b"\xff\xfe binary")
        r = self.kyu("receive", q, "--visibility-timeout", "600", json_out=True)
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"not valid UTF-8", r.stderr)
        out = self.ok("receive", q)  # made visible again at once, despite the 600 s lease
        self.assertIn(b"\xff\xfe binary", out)

    # ---- delete and change-visibility ----

    def test_delete_removes_the_message(self):
        q = self.new_queue()
        self.ok("send", q, "x")
        [m] = self.receive_json(q, 1)
        self.assertEqual(self.ok("delete", q, m["ReceiptHandle"]), b"")
        a = self.attrs(q)
        self.assertEqual((a["ApproximateNumberOfMessages"],
                          a["ApproximateNumberOfMessagesNotVisible"]), ("0", "0"))

    def test_delete_with_stale_handle_fails_naming_the_handle(self):
        q = self.new_queue()
        self.ok("send", q, "x")
        [first] = self.receive_json(q, 1, "--visibility-timeout", "0")
        [second] = self.receive_json(q, 1)
        self.assertEqual(second["Attributes"]["ApproximateReceiveCount"], "2")
        old = first["ReceiptHandle"]
        r = self.kyu("delete", q, old)
        self.assertEqual(r.returncode, 1)
        lines = r.stderr.decode().splitlines()
        self.assertEqual(len(lines), 1)
        self.assertIn(old, lines[0])
        self.assertIn("RECEIPT_STALE", lines[0])
        self.assertIn("received again since this handle was issued", lines[0])
        self.ok("delete", q, second["ReceiptHandle"])

    def test_delete_reports_each_failed_handle_and_deletes_the_rest(self):
        q = self.new_queue()
        self.ok("send", q, "--lines", stdin=b"a\nb\n")
        handles = [m["ReceiptHandle"] for m in self.receive_json(q, 10)]
        self.ok("delete", q, handles[0])
        r = self.kyu("delete", q, handles[0], handles[1])
        self.assertEqual(r.returncode, 1)
        lines = r.stderr.decode().splitlines()
        self.assertEqual(len(lines), 1, lines)
        self.assertIn(handles[0], lines[0])
        self.assertEqual(self.attrs(q)["ApproximateNumberOfMessagesNotVisible"], "0")

    def test_delete_of_more_than_ten_handles(self):
        q = self.new_queue()
        n = 25
        self.ok("send", q, "--lines", stdin="".join("%d\n" % i for i in range(n)).encode())
        handles = [m["ReceiptHandle"] for m in self.drain(q)]
        self.assertEqual(len(handles), n)
        self.ok("delete", q, *handles)
        a = self.attrs(q)
        self.assertEqual((a["ApproximateNumberOfMessages"],
                          a["ApproximateNumberOfMessagesNotVisible"]), ("0", "0"))

    def test_change_visibility_makes_a_message_visible_again(self):
        q = self.new_queue()
        self.ok("send", q, "x")
        [m] = self.receive_json(q, 1, "--visibility-timeout", "600")
        self.assertEqual(self.receive_json(q, 1), [])
        self.ok("change-visibility", q, m["ReceiptHandle"], "--visibility-timeout", "0")
        [again] = self.receive_json(q, 1)
        self.assertEqual(again["MessageId"], m["MessageId"])
        r = self.kyu("change-visibility", q, m["ReceiptHandle"], "--visibility-timeout", "5")
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"RECEIPT_STALE", r.stderr)


class BenchTest(BrokerCase):
    """kyu-bench runs each workload to the end: nothing missing, the queue left empty."""

    def bench(self, *args):
        r = subprocess.run([os.path.join(os.path.dirname(KYU), "kyu-bench"), "--broker",
                            self.broker.endpoint, "--json", "--idle-timeout", "20"] +
                           list(args), capture_output=True, timeout=120)
        self.assertEqual(r.returncode, 0, "kyu-bench %s: %r %r" % (args, r.stdout, r.stderr))
        return json.loads(r.stdout)

    def check(self, res, count):
        self.assertEqual(res["count"], count)
        self.assertEqual(res["missing"], 0)
        self.assertTrue(res["queue_empty"])
        self.assertTrue(res["ok"])

    def test_w1(self):
        self.check(self.bench("--workload", "w1", "--count", "50"), 50)

    def test_lat(self):
        self.check(self.bench("--workload", "lat", "--count", "40", "--rate", "400"), 40)

    def test_lat_latencies_file_holds_every_message_in_send_order(self):
        # --latencies FILE: a header, then one line per message: its sequence (0..count-1,
        # in order), its send time (CLOCK_MONOTONIC ns, rising) and its latency (ns > 0),
        # the latencies being those the report's percentiles come from.
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "lat.txt")
            res = self.bench("--workload", "lat", "--count", "30", "--rate", "300",
                             "--latencies", path)
            self.check(res, 30)
            with open(path) as f:
                lines = f.read().splitlines()
        self.assertEqual(lines[0], "# seq sent_ns latency_ns")
        rows = [[int(x) for x in line.split()] for line in lines[1:]]
        self.assertEqual([r[0] for r in rows], list(range(30)))
        sent = [r[1] for r in rows]
        self.assertEqual(sent, sorted(sent))
        self.assertTrue(all(r[2] > 0 for r in rows), rows)
        self.assertLessEqual(max(r[2] for r in rows) / 1000.0, res["latency_us"]["max"] + 1)

    def test_w2_with_two_producers_and_consumers_and_a_backlog(self):
        res = self.bench("--workload", "w2", "--count", "600", "--producers", "2",
                         "--consumers", "2", "--preload", "100", "--size", "100")
        self.check(res, 600)
        self.assertEqual(res["size"], 100)

    def test_push_through_worker_sessions(self):
        # Two worker sessions of credit 20 share the queue; every message sent (and the
        # backlog) is pushed, deleted, none twice, and the queue is left empty.
        res = self.bench("--workload", "push", "--count", "500", "--producers", "2",
                         "--consumers", "2", "--credit", "20", "--preload", "50", "--size", "100")
        self.check(res, 500)
        self.assertEqual(res["workload"], "push")
        self.assertEqual(res["credit"], 20)
        self.assertEqual(res["duplicates"], 0)
        self.assertEqual(res["delete_errors"], 0)

    def test_push_with_early_credit_and_credit_of_one(self):
        self.check(self.bench("--workload", "push", "--count", "200", "--early-credit"), 200)
        self.check(self.bench("--workload", "push", "--count", "50", "--credit", "1"), 50)

    def test_send_only(self):
        res = self.bench("--workload", "send", "--count", "300")
        self.assertTrue(res["ok"])
        self.assertEqual(res["consumers"], 0)

    def test_publish_fills_every_subscribed_queue(self):
        # kyu-bench fails unless each of the 3 subscribed queues holds all 200 publishes;
        # afterwards its topic and queues are gone.
        res = self.bench("--workload", "publish", "--count", "200", "--subs", "3", "--size",
                         "100")
        self.assertTrue(res["ok"])
        self.assertEqual(res["workload"], "publish")
        self.assertEqual(res["consumers"], 0)
        self.assertGreater(res["produce_msg_s"], 0)
        for cmd in ("list-topics", "list-queues"):
            r = subprocess.run([KYU, "--broker", self.broker.endpoint, cmd],
                               capture_output=True, timeout=30)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertNotIn(res["queue"].encode(), r.stdout, cmd)

    def test_publish_kept_queues_hold_every_message(self):
        res = self.bench("--workload", "publish", "--count", "50", "--subs", "2",
                         "--keep-queue", "--size", "64")
        self.assertTrue(res["ok"])
        for q in (res["queue"], res["queue"] + "-s1"):
            r = subprocess.run([KYU, "--broker", self.broker.endpoint, "--json",
                                "get-queue-attributes", q], capture_output=True, timeout=30)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(json.loads(r.stdout)["ApproximateNumberOfMessages"], "50", q)

    def test_bad_option_is_a_usage_error(self):
        r = subprocess.run([os.path.join(os.path.dirname(KYU), "kyu-bench"), "--workload",
                            "w9"], capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 2)
        self.assertIn(b"usage: kyu-bench", r.stderr)
        for bad in (["--credit", "0"], ["--credit", "10001"], ["--credit", "x"]):
            r = subprocess.run([os.path.join(os.path.dirname(KYU), "kyu-bench"), "--workload",
                                "push"] + bad, capture_output=True, timeout=30)
            self.assertEqual(r.returncode, 2, bad)
            self.assertIn(b"bad option or value", r.stderr)
        for bad in (["--subs", "0"], ["--subs", "101"], ["--batch", "2"], ["--groups", "3"]):
            r = subprocess.run([os.path.join(os.path.dirname(KYU), "kyu-bench"), "--workload",
                                "publish"] + bad, capture_output=True, timeout=30)
            self.assertEqual(r.returncode, 2, bad)


if __name__ == "__main__":
    unittest.main()
