"""Redrive (issue 13, item 6): `kyu redrive DLQ` as SQS's message move task, through the CLI.
Messages move back to the queue each was dead-lettered from (or --to a queue) while consumers
run there, with their ids, bodies and attributes, each exactly once; --max-per-second bounds
the rate; --list and --cancel; one running task per queue; a restart in the middle of a task
and a three-node leader failover in the middle of one lose and duplicate nothing; a long poll
on the destination is woken by the move; a message whose source queue is gone stays and the
task ends FAILED. Every wait is bounded; processes are stopped by their PID only."""
import json
import threading
import time
import unittest

import test_cluster
from harness import BrokerCase


def wait_task(list_fn, deadline_s=120):
    """Polls `kyu --json redrive --list` until the latest task ends; returns it."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        tasks = list_fn()
        if tasks and tasks[0]["Status"] != "RUNNING":
            return tasks[0]
        time.sleep(0.1)
    raise AssertionError("the move task did not end within %d s: %s" % (deadline_s, list_fn()))


def dead_letter(ok, queue, n, prefix="m", mrc=1, attr=None):
    """Sends n messages to queue and receives each past maxReceiveCount mrc, so that all move
    to its dead-letter queue; their ids in order."""
    args = ["send", queue, "--lines"] + (["--attr", attr] if attr else [])
    ids = ok(*args, input="".join("%s-%d\n" % (prefix, i) for i in range(n)).encode()).split()
    for _ in range(mrc + 1):
        for _ in range(n // 10 + 2):
            ok("receive", queue, "--max", "10", "--visibility-timeout", "0")
    return ids


class Redrive(BrokerCase):
    def tasks(self, queue="dlq"):
        return self.b.json_lines("redrive", "--list", queue)

    def setup_queues(self, mrc=1):
        self.b.ok("create-queue", "dlq")
        self.b.ok("create-queue", "jobs", "--dead-letter-queue", "dlq", "--max-receive-count", str(mrc))

    def test_messages_move_back_to_their_source_while_consumers_run_there(self):
        self.setup_queues()
        self.b.ok("create-queue", "other")
        self.b.ok("create-queue", "more", "--dead-letter-queue", "dlq", "--max-receive-count", "1")
        ids = dead_letter(self.b.ok, "jobs", 30, attr="kind=String:poison")
        more = dead_letter(self.b.ok, "more", 5, prefix="x")
        self.assertEqual(self.counts("dlq"), (35, 0, 0))
        self.assertEqual(self.counts("jobs"), (0, 0, 0))
        got, stop = [], threading.Event()

        def consume():  # receives and deletes what comes back to jobs
            while not stop.is_set() and len(got) < 30:
                for m in self.b.json_lines("receive", "jobs", "--max", "10", "--wait", "1"):
                    got.append(m)
                    self.b.ok("delete", "jobs", m["ReceiptHandle"])

        consumers = [threading.Thread(target=consume) for _ in range(2)]
        for t in consumers:
            t.start()
        out = self.b.ok("redrive", "dlq")  # waits until the task ends, printing progress
        self.assertIn("COMPLETED moved 35 of 35 from dlq to their source queues", out)
        deadline = time.monotonic() + 60
        while len(got) < 30 and time.monotonic() < deadline:
            time.sleep(0.1)
        stop.set()
        for t in consumers:
            t.join(timeout=60)
        self.assertEqual(sorted(m["MessageId"] for m in got), sorted(ids))  # each once
        for m in got:
            self.assertEqual(m["Body"], "m-%d" % ids.index(m["MessageId"]))
            self.assertEqual(m["MessageAttributes"], {"kind": {"DataType": "String", "StringValue": "poison"}})
            self.assertEqual(m["Attributes"]["ApproximateReceiveCount"], "1")  # a new message there
            self.assertNotIn("DeadLetterQueueSourceQueue", m["Attributes"])
        back = self.b.drain("more")
        self.assertEqual(sorted(m["MessageId"] for m in back), sorted(more))
        self.assertEqual(self.counts("dlq"), (0, 0, 0))
        [task] = self.tasks()
        self.assertEqual((task["Status"], task["SourceQueue"], task["ApproximateNumberOfMessagesMoved"],
                          task["ApproximateNumberOfMessagesToMove"]), ("COMPLETED", "dlq", 35, 35))
        self.assertNotIn("DestinationQueue", task)
        self.assertGreaterEqual(task["EndedTimestamp"], task["StartedTimestamp"])

    def test_to_a_destination_and_bad_requests(self):
        self.setup_queues()
        self.b.ok("create-queue", "elsewhere")
        ids = dead_letter(self.b.ok, "jobs", 12)
        self.fails(2, "--max-per-second (MaxNumberOfMessagesPerSecond) must be a number from 1 to 500",
                   "redrive", "dlq", "--max-per-second", "501")
        self.fails(2, "--list and --cancel take the queue alone", "redrive", "--list", "dlq", "--to", "jobs")
        self.fails(1, "NO_SUCH_QUEUE", "redrive", "nope")
        self.fails(1, "NO_SUCH_QUEUE: destination queue 'gone' does not exist", "redrive", "dlq", "--to", "gone")
        self.fails(1, "is no queue's dead-letter queue", "redrive", "elsewhere")
        self.fails(1, "cannot be the destination of its own move task", "redrive", "dlq", "--to", "dlq")
        self.fails(1, "has no running move task", "redrive", "--cancel", "dlq")
        self.assertEqual(self.tasks(), [])
        self.assertEqual(self.counts("dlq"), (12, 0, 0))  # nothing was moved by the refusals
        out = self.b.ok("redrive", "dlq", "--to", "elsewhere")
        self.assertIn("COMPLETED moved 12 of 12 from dlq to elsewhere", out)
        moved = self.b.drain("elsewhere")
        self.assertEqual(sorted(m["MessageId"] for m in moved), sorted(ids))
        self.assertEqual(self.counts("jobs"), (0, 0, 0))
        [task] = self.tasks()
        self.assertEqual(task["DestinationQueue"], "elsewhere")

    def test_max_per_second_bounds_the_rate_and_a_cancel_stops_the_task(self):
        self.setup_queues()
        dead_letter(self.b.ok, "jobs", 40)
        before = time.time()
        [started] = self.b.json_lines("redrive", "dlq", "--max-per-second", "2", "--no-wait")
        self.assertEqual((started["Status"], started["ApproximateNumberOfMessagesToMove"],
                          started["MaxNumberOfMessagesPerSecond"]), ("RUNNING", 40, 2))
        # One running task per queue.
        self.fails(1, "has a running move task", "redrive", "dlq")
        for _ in range(5):
            [t] = self.tasks()
            elapsed = time.time() - min(before, t["StartedTimestamp"] / 1000.0)
            # At most 2 a second since it started (1 of slack for rounding across clocks).
            self.assertLessEqual(t["ApproximateNumberOfMessagesMoved"], 2 * elapsed + 1, t)
            time.sleep(0.3)
        [cancelled] = self.b.json_lines("redrive", "--cancel", "dlq")
        self.assertEqual(cancelled["Status"], "CANCELLED")
        moved = cancelled["ApproximateNumberOfMessagesMoved"]
        self.assertLessEqual(moved, 2 * (time.time() - before) + 1)
        # What moved stays moved, the rest stays in the DLQ: the counts are exact.
        self.assertEqual(self.counts("jobs")[0], moved)
        self.assertEqual(self.counts("dlq")[0], 40 - moved)
        [t] = self.tasks()
        self.assertEqual((t["Status"], t["ApproximateNumberOfMessagesMoved"]), ("CANCELLED", moved))
        # A new task may start now; the list shows both, newest first.
        self.b.ok("redrive", "dlq")
        listed = self.tasks()
        self.assertEqual([t["Status"] for t in listed], ["COMPLETED", "CANCELLED"])
        self.assertEqual(listed[0]["ApproximateNumberOfMessagesToMove"], 40 - moved)
        self.assertEqual(self.counts("jobs")[0], 40)
        self.assertEqual(self.counts("dlq"), (0, 0, 0))

    def test_a_task_goes_on_after_a_restart_and_a_kill9(self):
        self.setup_queues()
        ids = dead_letter(self.b.ok, "jobs", 16)
        self.b.ok("redrive", "dlq", "--max-per-second", "4", "--no-wait")
        self.b.stop()
        self.b.start()
        self.assertIn(self.tasks()[0]["Status"], ("RUNNING", "COMPLETED"))
        self.b.kill9()
        self.b.start()
        task = wait_task(self.tasks)
        self.assertEqual((task["Status"], task["ApproximateNumberOfMessagesMoved"]), ("COMPLETED", 16))
        back = self.b.drain("jobs")
        self.assertEqual(sorted(m["MessageId"] for m in back), sorted(ids))
        self.assertEqual(self.counts("dlq"), (0, 0, 0))

    def test_a_long_poll_on_the_destination_is_woken_by_the_redrive(self):
        self.setup_queues()
        [mid] = dead_letter(self.b.ok, "jobs", 1)
        got = []
        poll = threading.Thread(target=lambda: got.extend(
            self.b.json_lines("receive", "jobs", "--wait", "20")))
        poll.start()
        time.sleep(0.5)  # (not needed for correctness: a poll that starts later finds it)
        self.b.ok("redrive", "dlq")
        poll.join(timeout=60)
        self.assertFalse(poll.is_alive())
        self.assertEqual([m["MessageId"] for m in got], [mid])

    def test_the_destinations_delay_and_maximum_size_apply(self):
        """A moved message is a new message of its destination: its DelaySeconds holds it back;
        one larger than its MaximumMessageSize stays, and the task fails saying so."""
        self.setup_queues()
        self.b.ok("create-queue", "slow", "--delay", "2")
        ids = dead_letter(self.b.ok, "jobs", 3)
        started = time.monotonic()
        self.assertIn("COMPLETED moved 3 of 3", self.b.ok("redrive", "dlq", "--to", "slow"))
        if time.monotonic() - started < 1.5:  # (a loaded machine may take longer to get here)
            self.assertEqual(self.counts("slow"), (0, 0, 3))
        got = []
        deadline = time.monotonic() + 30
        while len(got) < 3 and time.monotonic() < deadline:
            got += self.b.json_lines("receive", "slow", "--max", "10", "--wait", "1")
        self.assertEqual(sorted(m["MessageId"] for m in got), sorted(ids))
        self.assertGreaterEqual(time.monotonic() - started, 1.9)
        self.b.ok("create-queue", "small", "--max-message-size", "1024")
        self.b.ok("send", "jobs", "--attr", "k=String:v", input=b"x" * 1020)  # 1028 with its attribute
        self.b.ok("send", "jobs", "fits")
        for _ in range(2):
            self.b.ok("receive", "jobs", "--max", "10", "--visibility-timeout", "0")
        self.assertEqual(self.counts("dlq"), (2, 0, 0))
        r = self.b.cli("redrive", "dlq", "--to", "small")
        self.assertEqual(r.returncode, 1, r.stderr.decode())
        self.assertIn("MessageTooLarge", r.stderr.decode())
        [t] = self.tasks()[:1]
        self.assertEqual((t["Status"], t["ApproximateNumberOfMessagesMoved"]), ("FAILED", 0))
        self.assertIn("has 1028 bytes (body and attributes); queue 'small' takes at most 1024",
                      t["FailureReason"])
        self.assertEqual(self.counts("dlq"), (2, 0, 0))  # both stay
        self.assertEqual(self.counts("small"), (0, 0, 0))

    def test_a_message_whose_source_is_gone_stays_and_the_task_fails(self):
        self.setup_queues()
        [mid] = dead_letter(self.b.ok, "jobs", 1)
        self.b.ok("delete-queue", "jobs")
        self.b.ok("send", "dlq", "direct")
        r = self.b.cli("redrive", "dlq")
        self.assertEqual(r.returncode, 1, r.stderr.decode())
        self.assertIn("NonExistentQueue: the source queue 'jobs'", r.stderr.decode())
        [t] = self.tasks()
        self.assertEqual((t["Status"], t["ApproximateNumberOfMessagesMoved"]), ("FAILED", 0))
        self.assertIn("AWS.SimpleQueueService.NonExistentQueue", t["FailureReason"])
        self.assertEqual(self.counts("dlq"), (2, 0, 0))  # both stay, visible
        # A message sent to the DLQ directly has no source: CouldNotDetermineMessageSource.
        self.b.ok("create-queue", "jobs")
        r = self.b.cli("redrive", "dlq")
        self.assertEqual(r.returncode, 1, r.stderr.decode())
        self.assertIn("CouldNotDetermineMessageSource", r.stderr.decode())
        self.assertEqual([m["MessageId"] for m in self.b.drain("jobs")], [mid])
        left = self.b.drain("dlq")
        self.assertEqual([m["Body"] for m in left], ["direct"])


class RedriveCluster(test_cluster.ClusterFixture, unittest.TestCase):
    """A task on three nodes: its progress is replicated, the next leader goes on with it."""

    def test_a_leader_failover_in_the_middle_of_a_task_loses_and_duplicates_nothing(self):
        self.leader()
        self.ok("create-queue", "dlq")
        self.ok("create-queue", "jobs", "--dead-letter-queue", "dlq", "--max-receive-count", "1")
        ids = dead_letter(self.ok, "jobs", 60)
        self.assertEqual(json.loads(self.ok("--json", "get-queue-attributes", "dlq"))["ApproximateNumberOfMessages"], "60")
        self.ok("redrive", "dlq", "--max-per-second", "10", "--no-wait")

        def tasks():
            return [json.loads(l) for l in self.ok("--json", "redrive", "--list", "dlq").splitlines() if l]

        deadline = time.monotonic() + 60
        last = tasks()[0]
        while last["ApproximateNumberOfMessagesMoved"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
            last = tasks()[0]
        # In the middle of the task: 60 at 10 a second take 6 s, and some have moved.
        self.assertEqual(last["Status"], "RUNNING", last)
        self.assertGreater(last["ApproximateNumberOfMessagesMoved"], 0, last)
        self.leader().kill9()
        self.leader(60)
        task = wait_task(tasks)
        self.assertEqual((task["Status"], task["ApproximateNumberOfMessagesMoved"]), ("COMPLETED", 60), self.logs())
        back = self.drain("jobs")
        back_ids = [m["MessageId"] for m in back]
        self.assertEqual(len(back_ids), len(set(back_ids)), self.logs())
        self.assertEqual(sorted(back_ids), sorted(ids), self.logs())
        self.assertEqual(self.drain("dlq"), [])


if __name__ == "__main__":
    unittest.main()
