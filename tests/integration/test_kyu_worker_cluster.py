"""kyu-worker on three nodes (issue 14, item 7): workers run, the leader is killed (kill -9);
the workers find the new leader and carry on: every message is processed at least once, none
is lost, none is left in the queue. Every wait is bounded; processes are stopped by their PID
only."""
import time
import unittest

import test_cluster
from worker_harness import Worker, WorkerFixture, records, wait_until

FAST = ["--heartbeat", "0.2", "--liveness", "3"]


class WorkerCluster(WorkerFixture, test_cluster.ClusterFixture, unittest.TestCase):
    def setUp(self):
        test_cluster.ClusterFixture.setUp(self)
        self.open_workers("kyu-worker-cluster-")

    def tearDown(self):
        errors = self.close_workers()
        test_cluster.ClusterFixture.tearDown(self)
        self.remove_workers_dir(errors)

    def counts(self, queue):
        a = {}
        for line in self.ok("get-queue-attributes", queue).splitlines():
            k, _, v = line.partition(" ")
            a[k] = v
        return tuple(int(a[k]) for k in ("ApproximateNumberOfMessages",
                                         "ApproximateNumberOfMessagesNotVisible",
                                         "ApproximateNumberOfMessagesDelayed"))

    def test_leader_kill9_under_running_workers_processes_every_message_and_leaves_none(self):
        leader = self.leader()
        # Leases of 5 s: those the dead leader's sessions held come back that soon.
        self.ok("create-queue", "orders", "--visibility-timeout", "5")
        n = 300
        ids = self.ok("send", "orders", "--lines",
                      input="".join("c-%d\n" % i for i in range(n)).encode()).split()
        self.assertEqual(len(ids), n)
        for name in ("w1", "w2"):
            self.workers.append(Worker(self.tmp, name, self.endpoints, "orders", "--exec",
                                       self.handler, "--batch-size", "10", "--max-concurrency",
                                       "3", *FAST, env={"KYU_TEST_OUT": self.out,
                                                        "KYU_TEST_SLOW": "0.3"}))
        done = lambda: {r["id"] for r in records(self.out) if r["phase"] == "done"}
        wait_until("a third processed", lambda: len(done()) >= n // 3, 60)
        leader.kill9()
        wait_until(lambda: "every message processed: %d missing\n%s\n%s" % (
            len(set(ids) - done()), self.logs(), "\n".join(w.text()[-4000:] for w in self.workers)),
            lambda: done() >= set(ids), 60, 0.2)
        wait_until("queue empty", lambda: self.counts("orders") == (0, 0, 0), 60, 0.5)
        self.assertEqual(done(), set(ids))
        for w in self.workers:
            opened = w.text().count("opened on")
            self.assertGreaterEqual(opened, 2, "worker did not open a session on the new "
                                               "leader:\n%s" % w.text()[-3000:])


if __name__ == "__main__":
    unittest.main()
