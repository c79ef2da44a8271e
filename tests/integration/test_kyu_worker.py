"""kyu-worker against a real broker (issue 14, item 7): messages are processed and deleted; a
killed worker's messages go to another worker within seconds, long before their visibility
timeout; a slow handler keeps its lease; a partial batch failure deletes only the succeeded
messages; a poison message reaches the dead-letter queue while the rest flows; a handler past
its timeout is stopped; scaling up and down; a worker paused past its liveness loses its
leases and logs the result it cannot apply; SIGTERM drains; --http. Every wait is bounded;
processes are stopped by their PID only."""
import http.server
import json
import os
import re
import signal
import subprocess
import threading
import time
import unittest

from harness import BIN_DIR, Broker, free_port
from worker_harness import WORKER, Worker, WorkerFixture, kill_pids, records, wait_until

FAST = ["--heartbeat", "0.2", "--liveness", "3"]


def running(pid):
    """True while pid is a live process (not gone, not a zombie)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class KyuWorker(WorkerFixture, unittest.TestCase):
    def setUp(self):
        self.open_workers("kyu-worker-it-")
        self.b = Broker().start()

    def tearDown(self):
        errors = self.close_workers()
        self.b.cleanup()
        self.remove_workers_dir(errors)

    def worker(self, name, queue, *args, env=None):
        e = {"KYU_TEST_OUT": self.out}
        e.update(env or {})
        w = Worker(self.tmp, name, self.b.endpoint, queue, *args, env=e)
        self.workers.append(w)
        return w

    def send(self, queue, bodies):
        return self.b.ok("send", queue, "--lines", input="".join(b + "\n" for b in bodies).encode()).split()

    def counts(self, queue):
        a = self.b.attributes(queue)
        return (a["ApproximateNumberOfMessages"], a["ApproximateNumberOfMessagesNotVisible"],
                a["ApproximateNumberOfMessagesDelayed"])

    def wait_empty(self, queue, deadline_s=30):
        wait_until("queue %s empty: %s" % (queue, self.counts(queue)),
                   lambda: self.counts(queue) == (0, 0, 0), deadline_s, 0.2)

    def done(self):
        return [r for r in records(self.out) if r["phase"] == "done"]

    def test_flag_errors_exit_2_before_any_broker_is_contacted(self):
        bad = [[], ["--queue", "q"], ["--queue", "q", "--exec", "true", "--http", "http://x/"],
               ["--queue", "q", "--exec", "true", "--batch-size", "10001"],
               ["--queue", "q", "--exec", "true", "--batch-size", "11"],
               ["--queue", "q", "--exec", "true", "--batch-window", "301"],
               ["--queue", "q", "--exec", "true", "--max-concurrency", "0"],
               ["--queue", "q", "--exec", "true", "--handler-timeout", "abc"],
               ["--queue", "q", "--exec", "true", "--backoff-base", "10", "--backoff-max", "5"],
               ["--queue", "q", "--http", "ftp://x/"], ["--queue", "bad/name", "--exec", "true"],
               ["--queue", "q", "--exec", "true", "--name", "has space"],
               ["--queue", "q", "--exec", "true", "--nope"],
               ["--queue", "q", "--exec", "true", "--filter", "{"],
               ["--queue", "q", "--exec", "true", "--filter", '{"body": "x"}'],
               ["--queue", "q", "--exec", "true", "--filter-keep"],
               ["--queue", "q", "--exec", "true",
                "--filter", '{"body": ["' + "x" * 4096 + '"]}'],
               ["--queue", "q", "--exec", "true"] + ["--filter", '{"body": ["x"]}'] * 6]
        for args in bad:
            r = subprocess.run([WORKER, "--broker", "tcp://127.0.0.1:1"] + args,
                               capture_output=True, timeout=30)
            self.assertEqual(r.returncode, 2, "%s: %s" % (args, r.stderr.decode()))
            self.assertIn("kyu-worker:", r.stderr.decode())
        r = subprocess.run([WORKER, "--broker", self.b.endpoint, "--queue", "nosuch", "--exec", "true"],
                           capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 1)
        self.assertIn("NO_SUCH_QUEUE", r.stderr.decode())

    def test_messages_are_processed_in_batches_and_deleted(self):
        self.b.ok("create-queue", "jobs")
        ids = self.send("jobs", ["m-%d" % i for i in range(35)])
        w = self.worker("w1", "jobs", "--exec", self.handler, "--batch-size", "10", *FAST)
        wait_until("35 processed", lambda: len(self.done()) >= 35, 40)
        self.wait_empty("jobs")
        done = self.done()
        self.assertEqual(sorted(r["id"] for r in done), sorted(ids))
        self.assertTrue(all(r["n"] <= 10 for r in done))
        self.assertIn("batch 1: ", w.text())
        self.assertRegex(w.text(), r"batch \d+: \d+ messages, \d+ ms, 0 failed")
        # kyu workers lists the session
        sessions = self.b.json_lines("workers", "jobs")
        self.assertEqual([s.get("name", s.get("wn")) for s in sessions], ["w1"], sessions)

    def test_filter_deletes_what_no_pattern_matches_unprocessed(self):
        """--filter (Lambda's event filtering): up to 5 patterns, ORed, over the message as
        Lambda sees it (a JSON object body by its fields, any other body as a string, the
        message attributes); a message no pattern matches is deleted without the handler."""
        self.b.ok("create-queue", "jobs")
        paid = ['{"type": "paid", "n": %d}' % i for i in range(5)]
        unpaid = ['{"type": "unpaid", "n": %d}' % i for i in range(5)]
        pings, pongs = ["ping-%d" % i for i in range(3)], ["pong-%d" % i for i in range(3)]
        self.send("jobs", [b for pair in zip(paid, unpaid) for b in pair] + pings + pongs +
                  ['["paid"]'])
        self.b.ok("send", "jobs", "tagged", "--attr", "prio=String:high")
        self.b.ok("send", "jobs", "untagged", "--attr", "prio=String:low")
        w = self.worker("w", "jobs", "--exec", self.handler,
                        "--filter", '{"body": {"type": ["paid"]}}',
                        "--filter", '{"body": [{"prefix": "ping"}]}',
                        "--filter", '{"messageAttributes": {"prio": {"stringValue": ["high"]}}}',
                        *FAST)
        self.wait_empty("jobs")  # every message deleted: processed, or filtered out
        # (a set: delivery is at least once, a session lost under load may repeat one)
        self.assertEqual({r["body"] for r in self.done()}, set(paid + pings + ["tagged"]))
        w.signal(signal.SIGTERM)
        self.assertEqual(w.wait(), 0)
        # 10, or more when a session was lost under load and a message came again before its
        # delete applied (filtered again).
        m = re.search(r"(\d+) messages matched no --filter pattern: deleted unprocessed", w.text())
        self.assertIsNotNone(m, w.text()[-3000:])
        self.assertGreaterEqual(int(m.group(1)), 10)

    def test_filter_keep_leaves_what_no_pattern_matches_for_other_consumers(self):
        """--filter-keep: a message no pattern matches is released at once (visibility 0), not
        deleted: another consumer of the queue processes it."""
        self.b.ok("create-queue", "jobs")
        paid = ['{"type": "paid", "n": %d}' % i for i in range(5)]
        unpaid = ['{"type": "unpaid", "n": %d}' % i for i in range(5)]
        out_a = os.path.join(self.tmp, "a.out")
        self.worker("a", "jobs", "--exec", self.handler, "--filter",
                    '{"body": {"type": ["paid"]}}', "--filter-keep", *FAST,
                    env={"KYU_TEST_OUT": out_a})
        self.send("jobs", [b for pair in zip(paid, unpaid) for b in pair])
        done_a = lambda: [r for r in records(out_a) if r["phase"] == "done"]
        # a processes and deletes the paid ones; the unpaid ones stay in the queue (visible,
        # or briefly leased by a, which gives them back at once).
        wait_until("a processed the 5 paid, the 5 unpaid left: %s" % (self.counts("jobs"),),
                   lambda: {r["body"] for r in done_a()} == set(paid) and
                   sum(self.counts("jobs")) == 5, 30, 0.2)
        self.worker("b", "jobs", "--exec", self.handler, *FAST)
        self.wait_empty("jobs")
        self.assertEqual({r["body"] for r in done_a()}, set(paid))
        self.assertEqual({r["body"] for r in self.done()}, set(unpaid))

    def test_a_killed_workers_messages_go_to_another_worker_within_seconds(self):
        # A visibility timeout of 120 s: only the session's death can hand them over in time.
        self.b.ok("create-queue", "jobs", "--visibility-timeout", "120")
        ids = self.send("jobs", ["k-%d" % i for i in range(5)])
        a = self.worker("a", "jobs", "--exec", self.handler, "--batch-size", "5",
                        "--batch-window", "1", "--max-concurrency", "1", *FAST,
                        env={"KYU_TEST_SLOW": "60"})
        wait_until("a's handler started on all 5",
                   lambda: len([r for r in records(self.out) if r["phase"] == "start"]) == 5, 30)
        a.signal(signal.SIGKILL)
        a.wait()
        kill_pids((r["pid"] for r in records(self.out)), self.handler)
        killed_at = time.monotonic()
        self.worker("b", "jobs", "--exec", self.handler, "--batch-size", "5", *FAST)
        wait_until("b processed all 5", lambda: len(self.done()) == 5, 20)
        self.assertLess(time.monotonic() - killed_at, 20)
        self.assertEqual(sorted(r["id"] for r in self.done()), sorted(ids))
        self.assertTrue(all(r["rc"] == 2 for r in self.done()), self.done())
        self.wait_empty("jobs")

    def test_a_slow_handler_keeps_its_lease(self):
        # Leases of 2 s, a handler of 6 s: only extension keeps the message from coming back.
        self.b.ok("create-queue", "jobs", "--visibility-timeout", "2")
        self.send("jobs", ["slow"])
        w = self.worker("w", "jobs", "--exec", self.handler, "--max-concurrency", "2",
                        "--handler-timeout", "20", *FAST, env={"KYU_TEST_SLOW": "6"})
        wait_until("processed", lambda: len(self.done()) == 1, 30)
        self.wait_empty("jobs")
        starts = [r for r in records(self.out) if r["phase"] == "start"]
        self.assertEqual(len(starts), 1, "received again while its handler ran: %s" % starts)
        self.assertEqual(starts[0]["rc"], 1)
        self.assertNotIn("lease lost", w.text())

    def test_a_partial_batch_failure_deletes_only_the_succeeded_messages(self):
        self.b.ok("create-queue", "jobs")
        bodies = ["ok-%d" % i for i in range(7)] + ["poison-%d" % i for i in range(3)]
        self.send("jobs", bodies)
        # A long back-off: the failed ones stay invisible for the rest of the test.
        w = self.worker("w", "jobs", "--exec", self.handler, "--report-batch-item-failures",
                        "--batch-size", "10", "--batch-window", "2", "--backoff-base", "300",
                        "--backoff-max", "600", *FAST, env={"KYU_TEST_REPORT": "1"})
        wait_until("10 processed", lambda: len(self.done()) == 10, 30)
        self.assertEqual({r["n"] for r in self.done()}, {10})
        wait_until("7 deleted, 3 released", lambda: self.counts("jobs") == (0, 3, 0), 20, 0.2)
        left = [json.loads(l) for l in self.b.ok("--json", "peek", "jobs").splitlines() if l]
        self.assertEqual(sorted(m["Body"] for m in left), ["poison-0", "poison-1", "poison-2"])
        w.wait_log("3 failed")

    def test_a_poison_message_reaches_the_dead_letter_queue_while_the_rest_flows(self):
        self.b.ok("create-queue", "dlq")
        self.b.ok("create-queue", "jobs", "--dead-letter-queue", "dlq", "--max-receive-count", "3")
        self.send("jobs", ["poison"] + ["good-%d" % i for i in range(20)])
        self.worker("w", "jobs", "--exec", self.handler, "--report-batch-item-failures",
                    "--backoff-base", "0", *FAST, env={"KYU_TEST_REPORT": "1"})
        wait_until("dlq holds the poison message",
                   lambda: self.counts("dlq")[0] == 1, 40, 0.2)
        self.wait_empty("jobs")
        done = self.done()
        self.assertEqual(sorted(r["rc"] for r in done if r["body"] == "poison"), [1, 2, 3])
        self.assertEqual(len([r for r in done if r["body"].startswith("good")]), 20)
        moved = [json.loads(l) for l in self.b.ok("--json", "peek", "dlq").splitlines() if l]
        self.assertEqual([m["Body"] for m in moved], ["poison"])

    def test_a_handler_past_its_timeout_is_stopped_and_its_messages_released(self):
        self.b.ok("create-queue", "jobs")
        self.send("jobs", ["stuck"])
        w = self.worker("w", "jobs", "--exec", self.handler, "--handler-timeout", "1",
                        "--backoff-base", "300", "--backoff-max", "300", *FAST,
                        env={"KYU_TEST_SLOW": "60"})
        w.wait_log("handler failed: stopped at its timeout", 20)
        wait_until("released with its back-off", lambda: self.counts("jobs") == (0, 1, 0), 10, 0.2)
        pids = [r["pid"] for r in records(self.out)]
        wait_until("the handler process is gone", lambda: not any(running(p) for p in pids), 10)
        self.assertEqual(self.done(), [])

    def test_scaling_up_with_a_backlog_and_down_when_idle(self):
        self.b.ok("create-queue", "jobs")
        self.send("jobs", ["s-%d" % i for i in range(40)])
        w = self.worker("w", "jobs", "--exec", self.handler, "--batch-size", "1",
                        "--initial-concurrency", "1", "--max-concurrency", "6", *FAST,
                        env={"KYU_TEST_SLOW": "0.5"})
        w.wait_log("scaling up", 20)
        wait_until("all processed", lambda: len(self.done()) >= 40, 40)
        self.wait_empty("jobs")
        w.wait_log("scaling down", 20)
        ups = [l for l in w.text().splitlines() if "scaling up" in l]
        self.assertTrue(any(" to 6 " in l for l in ups) or len(ups) >= 2, ups)
        # several handlers at once: batches overlapped
        pids = {r["pid"] for r in records(self.out)}
        self.assertGreater(len(pids), 1)

    def test_scaling_is_seen_in_kyu_workers_as_the_sessions_total_credit(self):
        """The consumer sets its session's total credit to (concurrency + 1) x batch size as it
        scales: `kyu workers --json` shows it grow with a backlog and shrink when idle."""
        self.b.ok("create-queue", "jobs")
        self.send("jobs", ["t-%d" % i for i in range(40)])
        w = self.worker("w", "jobs", "--exec", self.handler, "--batch-size", "1",
                        "--initial-concurrency", "1", "--max-concurrency", "6", *FAST,
                        env={"KYU_TEST_SLOW": "0.5"})
        seen = []

        def total():
            rows = self.b.json_lines("workers", "jobs")
            if len(rows) != 1:
                return None
            seen.append(rows[0]["credit_total"])
            self.assertLessEqual(rows[0]["credit"], rows[0]["credit_total"])
            return rows[0]["credit_total"]

        wait_until("a session", lambda: total() is not None, 20, 0.1)
        wait_until("scaled up: total credit above 2 (%s)" % seen, lambda: (total() or 0) > 2, 30, 0.1)
        wait_until("all processed", lambda: len(self.done()) >= 40, 40)
        self.wait_empty("jobs")
        peak = max(seen)
        self.assertLessEqual(peak, 7, seen)  # (max concurrency 6 + 1) x batch size 1
        wait_until("scaled down: total credit below %d (%s)" % (peak, seen),
                   lambda: (total() or peak) < peak, 30, 0.2)
        w.wait_log("scaling down", 10)

    def test_a_paused_worker_loses_its_leases_and_logs_the_result_it_cannot_apply(self):
        self.b.ok("create-queue", "jobs", "--visibility-timeout", "120")
        self.send("jobs", ["paused"])
        w = self.worker("w", "jobs", "--exec", self.handler, *FAST, env={"KYU_TEST_SLOW": "2"})
        wait_until("handler started", lambda: records(self.out), 20)
        w.signal(signal.SIGSTOP)
        # Past its liveness (0.6 s) the broker releases its lease: the message is visible again.
        wait_until("lease released", lambda: self.counts("jobs")[0] == 1, 15, 0.2)
        # Someone else takes it: the paused worker's receipt is stale now.
        got = self.b.json_lines("receive", "jobs", "--visibility-timeout", "120")
        self.assertEqual(len(got), 1)
        wait_until("the handler finished", lambda: self.done(), 10)
        w.signal(signal.SIGCONT)
        w.wait_log("lease lost", 20)
        self.assertRegex(w.text(), r"message %s: lease lost, its success \(delete\) could not "
                                   r"be applied" % got[0]["MessageId"])
        # The other receiver's lease stands: the message was not deleted.
        self.assertEqual(self.counts("jobs"), (0, 1, 0))

    def test_sigterm_drains_running_batches_and_exits_0(self):
        self.b.ok("create-queue", "jobs")
        self.send("jobs", ["d-%d" % i for i in range(3)])
        w = self.worker("w", "jobs", "--exec", self.handler, "--batch-window", "1", *FAST,
                        env={"KYU_TEST_SLOW": "2"})
        wait_until("handler started", lambda: len(records(self.out)) == 3, 20)
        w.signal(signal.SIGTERM)
        self.assertEqual(w.wait(30), 0, w.text())
        self.assertEqual(len(self.done()), 3)
        self.assertIn("drained", w.text())
        self.wait_empty("jobs", 5)
        self.assertEqual(self.b.json_lines("workers", "jobs"), [])

    def test_the_example_consumer_embeds_a_handler(self):
        # client/examples/example_consumer.c: prints each body, fails "fail" (retried with a
        # back-off of 1 s, then 2 s, until the dead-letter queue takes it), drains on SIGTERM.
        self.b.ok("create-queue", "dlq")
        self.b.ok("create-queue", "jobs", "--dead-letter-queue", "dlq", "--max-receive-count", "2")
        self.send("jobs", ["hello", "fail"])
        out = open(os.path.join(self.tmp, "example.out"), "wb")
        p = subprocess.Popen([os.path.join(BIN_DIR, "client", "example_consumer"), self.b.endpoint,
                              "jobs"], stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_until("fail in the dead-letter queue", lambda: self.counts("dlq")[0] == 1, 30, 0.2)
            self.wait_empty("jobs")
            p.send_signal(signal.SIGTERM)
            self.assertEqual(p.wait(timeout=30), 0)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)
            out.close()
        with open(os.path.join(self.tmp, "example.out")) as f:
            text = f.read()
        self.assertIn("(received 1 times): hello", text)
        self.assertIn("(received 2 times): fail", text)
        self.assertNotIn("Sanitizer", text)

    def test_http_handler_posts_the_event_and_reads_its_failures(self):
        self.b.ok("create-queue", "jobs")
        seen = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                ev = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                seen.extend(ev["Records"])
                failed = [{"itemIdentifier": r["messageId"]} for r in ev["Records"]
                          if r["body"].startswith("poison")]
                body = json.dumps({"batchItemFailures": failed}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        srv = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        t = threading.Thread(target=srv.serve_forever)
        t.start()
        try:
            self.send("jobs", ["h-%d" % i for i in range(12)] + ["poison"])
            self.worker("w", "jobs", "--http", "http://127.0.0.1:%d/" % srv.server_address[1],
                        "--report-batch-item-failures", "--backoff-base", "300",
                        "--backoff-max", "300", *FAST)
            wait_until("13 posted", lambda: len(seen) >= 13, 30)
            wait_until("12 deleted, the poison one released",
                       lambda: self.counts("jobs") == (0, 1, 0), 20, 0.2)
            r = seen[0]
            self.assertEqual(r["eventSource"], "kyu:queue")
            self.assertIn("ApproximateReceiveCount", r["attributes"])
        finally:
            srv.shutdown()
            t.join(timeout=10)
            srv.server_close()


if __name__ == "__main__":
    unittest.main()
