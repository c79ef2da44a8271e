"""Dead-letter queues (issue 13, item 5) through the CLI: a receive past maxReceiveCount moves
the message to the dead-letter queue with its id, body and history, and says why
(`kyu --json receive` on the DLQ); both queues' counters stay right; the moves survive a
restart and a kill -9; a chain of dead-letter queues; the DLQ's RedriveAllowPolicy; a DLQ
cannot be deleted without --force, and its sources then keep their messages;
list-dead-letter-source-queues; and the moves on three nodes across a leader failover.
Every wait is bounded; processes are stopped by their PID only."""
import json
import threading
import unittest

import test_cluster
from harness import BrokerCase

QUEUE_IN_USE = "QUEUE_IN_USE"


def receive_all(ok, queue, vt, rounds):
    """rounds receives of up to 10 with visibility timeout vt; the messages received."""
    got = []
    for _ in range(rounds):
        got += [json.loads(l) for l in ok("--json", "receive", queue, "--max", "10",
                                          "--visibility-timeout", str(vt)).splitlines() if l]
    return got


class DeadLetter(BrokerCase):
    def send(self, queue, n, prefix="m"):
        out = self.b.ok("send", queue, "--lines", input="".join("%s-%d\n" % (prefix, i) for i in range(n)).encode())
        return out.split()

    def test_a_message_received_max_receive_count_times_moves_with_its_history(self):
        self.b.ok("create-queue", "dlq")
        self.b.ok("create-queue", "jobs", "--dead-letter-queue", "dlq", "--max-receive-count", "2")
        ids = self.send("jobs", 5)
        first = receive_all(self.b.ok, "jobs", 0, 1)
        second = receive_all(self.b.ok, "jobs", 0, 1)
        self.assertEqual(sorted(m["MessageId"] for m in first), sorted(ids))
        self.assertEqual({m["Attributes"]["ApproximateReceiveCount"] for m in second}, {"2"})
        # The third receive moves all five and leases none.
        self.assertEqual(receive_all(self.b.ok, "jobs", 0, 1), [])
        self.assertEqual(self.counts("jobs"), (0, 0, 0))
        self.assertEqual(self.counts("dlq"), (5, 0, 0))
        moved = receive_all(self.b.ok, "dlq", 600, 2)
        self.assertEqual(sorted(m["MessageId"] for m in moved), sorted(ids))
        first_receive = {m["MessageId"]: m["Attributes"]["ApproximateFirstReceiveTimestamp"] for m in first}
        for m in moved:
            a = m["Attributes"]
            self.assertEqual(m["Body"], "m-%d" % ids.index(m["MessageId"]))
            self.assertEqual(a["DeadLetterQueueSourceQueue"], "jobs")
            self.assertEqual(a["DeadLetterQueueReceiveCount"], "2")
            self.assertEqual(a["ApproximateReceiveCount"], "3")
            self.assertEqual(a["DeadLetterQueueFirstReceiveTimestamp"], first_receive[m["MessageId"]])
            self.assertEqual(a["ApproximateFirstReceiveTimestamp"], first_receive[m["MessageId"]])
            last = int(a["DeadLetterQueueLastReceiveTimestamp"])
            self.assertGreaterEqual(last, int(first_receive[m["MessageId"]]))  # the second receive
            self.assertGreaterEqual(int(a["DeadLetterQueueMovedTimestamp"]), last)
        self.assertEqual(self.counts("dlq"), (0, 5, 0))
        # A message sent to the DLQ itself carries no provenance.
        self.b.ok("send", "dlq", "direct")
        direct = receive_all(self.b.ok, "dlq", 600, 1)
        self.assertEqual(len(direct), 1)
        self.assertNotIn("DeadLetterQueueSourceQueue", direct[0]["Attributes"])
        plain = self.b.ok("get-queue-attributes", "jobs")
        self.assertIn('RedrivePolicy {"deadLetterTargetQueue":"dlq","maxReceiveCount":2}\n', plain)

    def test_moves_survive_a_restart_and_a_kill9(self):
        self.b.ok("create-queue", "dlq")
        self.b.ok("create-queue", "jobs", "--dead-letter-queue", "dlq", "--max-receive-count", "1")
        ids = self.send("jobs", 12)
        receive_all(self.b.ok, "jobs", 0, 2)     # each once
        receive_all(self.b.ok, "jobs", 0, 1)     # moves all twelve
        self.b.stop()
        self.b.start()
        self.assertEqual(self.counts("jobs"), (0, 0, 0))
        self.assertEqual(self.counts("dlq"), (12, 0, 0))
        more = self.send("jobs", 3, prefix="late")
        receive_all(self.b.ok, "jobs", 0, 1)
        receive_all(self.b.ok, "jobs", 0, 1)     # moves the three
        self.b.kill9()
        self.b.start()
        moved = receive_all(self.b.ok, "dlq", 600, 3)
        self.assertEqual(sorted(m["MessageId"] for m in moved), sorted(ids + more))
        self.assertEqual({m["Attributes"]["DeadLetterQueueSourceQueue"] for m in moved}, {"jobs"})
        self.assertEqual(self.counts("jobs"), (0, 0, 0))

    def test_a_dead_letter_queue_with_its_own_redrive_policy_sends_messages_on(self):
        self.b.ok("create-queue", "last")
        self.b.ok("create-queue", "middle", "--dead-letter-queue", "last", "--max-receive-count", "2")
        self.b.ok("create-queue", "first", "--dead-letter-queue", "middle", "--max-receive-count", "1")
        [mid] = self.send("first", 1)
        receive_all(self.b.ok, "first", 0, 2)          # received once, then moved to middle
        self.assertEqual(self.counts("middle"), (1, 0, 0))
        # Its receive count goes on in middle: 2 there, then past middle's maxReceiveCount.
        [m] = receive_all(self.b.ok, "middle", 0, 1)
        self.assertEqual((m["MessageId"], m["Attributes"]["ApproximateReceiveCount"]), (mid, "2"))
        self.assertEqual(m["Attributes"]["DeadLetterQueueSourceQueue"], "first")
        self.assertEqual(receive_all(self.b.ok, "middle", 0, 1), [])
        self.assertEqual(self.counts("middle"), (0, 0, 0))
        self.assertEqual(self.counts("last"), (1, 0, 0))
        [m] = receive_all(self.b.ok, "last", 600, 1)
        self.assertEqual(m["MessageId"], mid)
        self.assertEqual(m["Attributes"]["DeadLetterQueueSourceQueue"], "middle")
        self.assertEqual(m["Attributes"]["DeadLetterQueueReceiveCount"], "2")
        self.assertEqual(m["Attributes"]["ApproximateReceiveCount"], "3")
        # A cycle is refused.
        self.fails(1, "cycle", "set-queue-attributes", "last", "--dead-letter-queue", "first")

    def test_redrive_allow_policy_and_bad_policies_are_refused(self):
        self.b.ok("create-queue", "closed", "--redrive-allow", "none")
        self.b.ok("create-queue", "picky", "--redrive-allow", "friend,other")
        self.fails(1, "denyAll", "create-queue", "a", "--dead-letter-queue", "closed")
        self.fails(1, "does not list it", "create-queue", "a", "--dead-letter-queue", "picky")
        self.b.ok("create-queue", "friend", "--dead-letter-queue", "picky")
        self.fails(1, "does not exist", "create-queue", "b", "--dead-letter-queue", "nope")
        self.fails(1, "its own dead-letter queue", "set-queue-attributes", "friend",
                   "--dead-letter-queue", "friend")
        self.fails(2, "--max-receive-count must be a number from 1 to 1000", "create-queue", "c",
                   "--dead-letter-queue", "picky", "--max-receive-count", "1001")
        self.fails(2, "--max-receive-count goes with --dead-letter-queue", "create-queue", "c",
                   "--max-receive-count", "3")
        self.assertNotIn("a", self.b.ok("list-queues").split())
        a = self.b.attributes("picky")
        self.assertEqual(json.loads(a["RedriveAllowPolicy"]),
                         {"redrivePermission": "byQueue", "sourceQueues": ["friend", "other"]})
        # Removing the policy.
        self.b.ok("set-queue-attributes", "friend", "--dead-letter-queue", "")
        self.assertNotIn("RedrivePolicy", self.b.attributes("friend"))

    def test_a_dead_letter_queue_is_deleted_only_with_force_and_its_sources_keep_their_messages(self):
        self.b.ok("create-queue", "dlq")
        self.b.ok("create-queue", "b-src", "--dead-letter-queue", "dlq", "--max-receive-count", "1")
        self.b.ok("create-queue", "a-src", "--dead-letter-queue", "dlq", "--max-receive-count", "1")
        self.assertEqual(self.b.ok("list-dead-letter-source-queues", "dlq").split(), ["a-src", "b-src"])
        self.assertEqual(self.b.json_lines("list-dead-letter-source-queues", "dlq"),
                         [{"QueueName": "a-src"}, {"QueueName": "b-src"}])
        self.assertEqual(self.b.ok("list-dead-letter-source-queues", "a-src"), "")
        self.fails(1, "NO_SUCH_QUEUE", "list-dead-letter-source-queues", "nope")
        self.fails(1, "QUEUE_IN_USE: queue 'dlq' is the dead-letter queue of 'a-src' and 1 other queue",
                   "delete-queue", "dlq")
        self.assertIn("dlq", self.b.ok("list-queues").split())
        self.b.ok("delete-queue", "dlq", "--force")
        [mid] = self.send("a-src", 1)
        for n in range(1, 4):  # past maxReceiveCount, it stays in its queue
            [m] = receive_all(self.b.ok, "a-src", 0, 1)
            self.assertEqual((m["MessageId"], m["Attributes"]["ApproximateReceiveCount"]), (mid, str(n)))
        self.b.ok("create-queue", "dlq")  # a queue of that name again: the moves resume
        self.assertEqual(receive_all(self.b.ok, "a-src", 0, 1), [])
        self.assertEqual(self.counts("dlq"), (1, 0, 0))


class DeadLetterCluster(test_cluster.ClusterFixture, unittest.TestCase):
    """The moves on three nodes: applied by every replica, kept by the next leader."""

    def test_moves_are_kept_across_a_leader_failover(self):
        self.leader()
        self.ok("create-queue", "dlq")
        self.ok("create-queue", "jobs", "--dead-letter-queue", "dlq", "--max-receive-count", "2")
        ids = self.ok("send", "jobs", "--lines", input="".join("m-%d\n" % i for i in range(20)).encode()).split()
        receive_all(self.ok, "jobs", 0, 4)   # every message twice
        receive_all(self.ok, "jobs", 0, 1)   # moves all twenty
        leader = self.leader()
        leader.kill9()
        self.leader(60)
        attrs = {k: v for k, v in json.loads(self.ok("--json", "get-queue-attributes", "dlq")).items()}
        self.assertEqual(attrs["ApproximateNumberOfMessages"], "20", self.logs())
        jobs = json.loads(self.ok("--json", "get-queue-attributes", "jobs"))
        self.assertEqual(jobs["ApproximateNumberOfMessages"], "0")
        moved = receive_all(self.ok, "dlq", 600, 3)
        self.assertEqual(sorted(m["MessageId"] for m in moved), sorted(ids))
        self.assertEqual({m["Attributes"]["DeadLetterQueueSourceQueue"] for m in moved}, {"jobs"})
        self.assertEqual({m["Attributes"]["DeadLetterQueueReceiveCount"] for m in moved}, {"2"})
        leader.start()  # the killed node comes back and serves the same state once it leads

    def test_moves_under_a_leader_kill_are_all_or_nothing(self):
        """Receives that move messages run while the leader is killed: afterwards every message
        sent is in exactly one of the two queues, never lost, never in both."""
        self.leader()
        self.ok("create-queue", "dlq")
        self.ok("create-queue", "jobs", "--dead-letter-queue", "dlq", "--max-receive-count", "2")
        ids = self.ok("send", "jobs", "--lines", input="".join("m-%d\n" % i for i in range(60)).encode()).split()
        receive_all(self.ok, "jobs", 0, 6)  # every message once
        started = threading.Event()

        def consume():
            for i in range(40):  # leases of 0 s: each receive moves or re-leases
                self.cli("--json", "receive", "jobs", "--max", "3", "--visibility-timeout", "0", timeout=60)
                if i == 3:
                    started.set()
            started.set()

        t = threading.Thread(target=consume)
        t.start()
        self.assertTrue(started.wait(120))
        self.leader().kill9()
        t.join(timeout=300)
        self.assertFalse(t.is_alive())
        self.leader(60)
        left = receive_all(self.ok, "jobs", 600, 8)  # those not due to move are leased here
        moved = receive_all(self.ok, "dlq", 600, 8)
        left_ids = [m["MessageId"] for m in left]
        moved_ids = [m["MessageId"] for m in moved]
        self.assertEqual(len(set(left_ids)), len(left_ids))
        self.assertEqual(len(set(moved_ids)), len(moved_ids))
        self.assertEqual(set(left_ids) & set(moved_ids), set(), self.logs())
        self.assertEqual(sorted(left_ids + moved_ids), sorted(ids), self.logs())
        self.assertGreater(len(moved_ids), 0)
        for m in moved:
            self.assertEqual(m["Attributes"]["DeadLetterQueueSourceQueue"], "jobs")
            self.assertEqual(m["Attributes"]["DeadLetterQueueReceiveCount"], "2")
        for m in left:
            self.assertLess(int(m["Attributes"]["ApproximateReceiveCount"]), 3)


if __name__ == "__main__":
    unittest.main()
