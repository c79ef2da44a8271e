"""Rolling restart and scaling under load (issue 16, item 2), on real brokers on 127.0.0.1.

While two producers (`kyu send --lines`, one long-running CLI each, fed a numbered line every
few milliseconds) send, two kyu-workers process one queue and a receive/delete loop of CLI
calls consumes the other:
- every broker is restarted in turn by scripts/rolling_restart.sh, as docs/OPERATIONS.md
  "Rolling restarts and upgrades" says: the followers first, the leader last after handing
  leadership over (`kyu cluster transfer`); each by SIGTERM and a start on the same data dir
  (a supervisor thread here), and `kyu cluster ready` on it before the next;
- a fourth broker joins (`--join`, `kyu cluster add`), the old leader leaves (`kyu cluster
  remove`, then SIGTERM), the fourth leads (reached by the clients through the leader's
  redirect: they were given the first three nodes only), and a follower whose disk is lost
  is replaced by a new node with a new id and an empty data dir on its addresses (remove
  the old id, `--join`, add the new one).
Then: no client saw an error beyond its retries (both producers exit 0 with every line
acknowledged, every CLI receive and delete exits 0, no worker exits or logs a failed delete),
every acknowledged message was processed, no message whose delete was acknowledged came back,
both queues end empty, and every node has applied the same index and serves the same state
(leadership moved to each in turn to read it). Every wait is bounded by a deadline; processes
are stopped by their PID only."""
import collections
import hashlib
import json
import os
import re
import shutil
import subprocess
import threading
import time
import unittest

from harness import CLI, SLOW_TIMEOUT_S, Members, Node, free_port
from worker_harness import Worker, WorkerFixture, records, wait_until

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts",
                      "rolling_restart.sh")


class Producer:
    """One `kyu --json send QUEUE --lines` process for the whole test, fed a numbered line
    (PREFIX-000001, ...) every gap seconds by a thread until finish(); acked gets the ids as
    the CLI prints them (in line order, once acknowledged)."""

    def __init__(self, endpoints, queue, prefix, tmp, gap=0.01):
        self.err_path = os.path.join(tmp, "producer-%s.err" % prefix)
        self.err = open(self.err_path, "wb")
        self.proc = subprocess.Popen([CLI, "--broker", endpoints, "--json", "send", queue, "--lines"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err)
        self.prefix, self.gap = prefix, gap
        self.written, self.acked = 0, []
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._write), threading.Thread(target=self._read)]
        for t in self.threads:
            t.start()

    def _write(self):
        try:
            while not self.stopping.is_set() and self.proc.poll() is None:
                self.proc.stdin.write(b"%s-%06d\n" % (self.prefix.encode(), self.written + 1))
                self.proc.stdin.flush()
                self.written += 1
                time.sleep(self.gap)
        except (BrokenPipeError, ValueError):
            pass  # the CLI exited: finish() reports it
        finally:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass

    def _read(self):
        for line in self.proc.stdout:
            self.acked.append(json.loads(line)["MessageId"])

    def alive(self):
        return self.proc.poll() is None

    def finish(self):
        """Stops feeding lines; the CLI's exit status once every line in flight is answered."""
        self.stopping.set()
        for t in self.threads:
            t.join(timeout=120)
        rc = self.proc.wait(timeout=120)
        self.proc.stdout.close()
        self.err.close()
        return rc

    def errors(self):
        with open(self.err_path, "rb") as f:
            return f.read().decode(errors="replace")

    def cleanup(self):
        self.stopping.set()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        for t in self.threads:
            t.join(timeout=30)
        self.proc.stdout.close()
        self.err.close()


class Consumer:
    """Receive and delete in a loop, each one `kyu` run (its retries across a failover carry
    one request key): received lists every delivery, deleted the ids whose delete was
    acknowledged, failures every call that exited non-zero, back every delivery of a message
    whose delete had been acknowledged before."""

    def __init__(self, endpoints, queue):
        self.endpoints, self.queue = endpoints, queue
        self.received, self.deleted, self.failures, self.back = [], set(), [], []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def cli(self, *args):
        # A generous client timeout (each call's retries across a failover, on a loaded machine)
        return subprocess.run([CLI, "--broker", self.endpoints, "--timeout", str(SLOW_TIMEOUT_S)]
                              + list(args), capture_output=True, timeout=SLOW_TIMEOUT_S * 2 + 30)

    def _run(self):
        deadline = time.monotonic() + 400
        while not self.stopping.is_set() and time.monotonic() < deadline:
            r = self.cli("--json", "receive", self.queue, "--max", "10", "--visibility-timeout", "30")
            if r.returncode != 0:
                self.failures.append("receive: " + r.stderr.decode())
                continue
            batch = [json.loads(line) for line in r.stdout.decode().splitlines() if line]
            if not batch:
                time.sleep(0.05)
                continue
            self.back += [m["MessageId"] for m in batch if m["MessageId"] in self.deleted]
            self.received += batch
            d = self.cli("delete", self.queue, *[m["ReceiptHandle"] for m in batch])
            if d.returncode != 0:
                self.failures.append("delete: " + d.stderr.decode())
            else:
                self.deleted.update(m["MessageId"] for m in batch)

    def finish(self):
        self.stopping.set()
        self.thread.join(timeout=120)


class UnderLoad(Members, WorkerFixture, unittest.TestCase):
    """Each test: three nodes, queues orders (kyu-workers) and jobs (the CLI consumer), a
    producer for each; the test changes the cluster, then check() ends the load and asserts."""

    def setUp(self):
        self.make_cluster(3)
        self.open_workers("kyu-rolling-")
        try:
            self.start_load()
        except BaseException:
            self.tearDown()
            raise

    def start_load(self):
        self.leader()
        self.ok("create-queue", "orders", "--visibility-timeout", "10")
        self.ok("create-queue", "jobs", "--visibility-timeout", "30")
        # The clients know the three first nodes for the whole test, as a deployed client
        # does until it is reconfigured: later nodes are reached by the leader's redirect.
        self.client_endpoints = self.endpoints()
        self.producers = [Producer(self.client_endpoints, "orders", "o", self.tmp),
                          Producer(self.client_endpoints, "jobs", "j", self.tmp, gap=0.02)]
        self.workers += [Worker(self.tmp, name, self.client_endpoints, "orders", "--exec", self.handler,
                                "--batch-size", "10", "--max-concurrency", "3",
                                env={"KYU_TEST_OUT": self.out})
                         for name in ("w1", "w2")]
        self.consumer = Consumer(self.client_endpoints, "jobs")

    def tearDown(self):
        if getattr(self, "consumer", None):
            self.consumer.finish()
        for p in getattr(self, "producers", []):
            p.cleanup()
        errors = self.close_workers() if hasattr(self, "workers") else []
        try:
            Members.tearDown(self)
        finally:
            self.remove_workers_dir(errors)

    def processed(self):
        return {r["id"] for r in records(self.out) if r["phase"] == "done"}

    def assert_clients_running(self):
        for p in self.producers:
            self.assertTrue(p.alive(), "a producer exited: %s" % p.errors()[-2000:])
        for w in self.workers:
            self.assertIsNone(w.proc.poll(), "a kyu-worker exited:\n%s" % w.text()[-3000:])
        self.assertEqual(self.consumer.failures, [], "a receive or delete failed")

    def under_load(self, what):
        """Waits (bounded) until every producer has another 100 lines acknowledged and the
        workers processed another 50: the change that follows happens under load."""
        acked = [len(p.acked) for p in self.producers]
        done = len(self.processed())
        wait_until(lambda: "progress before %s: acked %s -> %s, processed %d -> %d%s" % (
            what, acked, [len(p.acked) for p in self.producers], done, len(self.processed()),
            self.logs()),
            lambda: all(len(p.acked) >= a + 100 for p, a in zip(self.producers, acked))
            and len(self.processed()) >= done + 50, 90, 0.1)
        self.assert_clients_running()

    def wait_ready(self, node):
        """`kyu cluster ready` on node, polled until it passes (60 s at most)."""
        self.wait_for("node %d ready" % node.id,
                      lambda: self.cli("cluster", "ready", nodes=[node], timeout=30).returncode == 0)

    def transfer_away(self, node, live):
        """`kyu cluster transfer` until another node of live leads: the core gives a transfer
        up after an election timeout (a loaded machine), or the call times out, and an
        operator asks again."""
        for _ in range(6):
            self.cli("cluster", "transfer", nodes=live)  # checked by who leads next
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                if self.leader(live) is not node:
                    return
                time.sleep(0.05)
        raise AssertionError("leadership did not leave node %d%s" % (node.id, self.logs()))

    def transfer_to(self, node, live):
        for _ in range(6):
            if self.leader(live) is node:
                return
            self.cli("cluster", "transfer", str(node.id), nodes=live)  # checked below
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and self.leader(live) is not node:
                time.sleep(0.05)
        self.assertIs(self.leader(live), node, "leadership did not move to node %d" % node.id)

    def digest(self, live):
        """What the leader serves: the queues with their attributes (the counters summed: their
        split follows the clock) and every message PEEK shows."""
        h = hashlib.sha256()
        queues = sorted(json.loads(line)["QueueName"]
                        for line in self.ok("--json", "list-queues", nodes=live).splitlines() if line)
        h.update(json.dumps(queues).encode())
        for q in queues:
            a = json.loads(self.ok("--json", "get-queue-attributes", q, nodes=live).splitlines()[0])
            a["messages"] = sum(int(a.pop(k)) for k in ("ApproximateNumberOfMessages",
                                                        "ApproximateNumberOfMessagesNotVisible",
                                                        "ApproximateNumberOfMessagesDelayed"))
            h.update(json.dumps(a, sort_keys=True).encode())
            h.update(self.ok("--json", "peek", q, "--max", "10", nodes=live).encode())
        return h.hexdigest()

    def check(self, live):
        """Ends the load and asserts what the module's docstring promises."""
        self.assert_clients_running()
        for p in self.producers:
            rc = p.finish()
            self.assertEqual(rc, 0, "producer %s failed: %s%s" % (p.prefix, p.errors()[-2000:], self.logs()))
            self.assertEqual(len(p.acked), p.written, "producer %s: every line acknowledged" % p.prefix)
            self.assertEqual(len(set(p.acked)), len(p.acked))
        orders, jobs = (set(p.acked) for p in self.producers)
        wait_until(lambda: "every acknowledged order processed: %d missing%s" % (
            len(orders - self.processed()), self.logs()),
            lambda: self.processed() >= orders, 120, 0.2)
        wait_until(lambda: "every acknowledged job received: %d missing" % len(
            jobs - {m["MessageId"] for m in self.consumer.received}),
            lambda: {m["MessageId"] for m in self.consumer.received} >= jobs, 120, 0.2)
        self.consumer.finish()
        self.assertEqual(self.consumer.failures, [], "a receive or delete failed")
        self.assertEqual(self.consumer.back, [], "a message whose delete was acknowledged came back")
        self.assertEqual({m["MessageId"] for m in self.consumer.received}, jobs, "an unexpected job")
        self.assertEqual(self.processed(), orders, "an unexpected order")
        for w in self.workers:
            self.assertIsNone(w.proc.poll(), "a kyu-worker exited:\n%s" % w.text()[-3000:])
            self.assertIsNone(re.search(r"message \S+: its .* failed:|not sent after", w.text()),
                              "a kyu-worker's delete failed:\n%s" % w.text()[-4000:])

        def empty():
            a = [json.loads(self.ok("--json", "get-queue-attributes", q, nodes=live).splitlines()[0])
                 for q in ("orders", "jobs")]
            return all(int(x[k]) == 0 for x in a for k in ("ApproximateNumberOfMessages",
                                                             "ApproximateNumberOfMessagesNotVisible",
                                                             "ApproximateNumberOfMessagesDelayed"))
        # A handler's last deletes may still be on their way.
        self.wait_for("both queues empty", empty, 60)

        def converged():
            st = self.status(live)
            lead = [s for s in st.values() if s["role"] == "leader"]
            return len(lead) == 1 and all(s.get("applied_index") == lead[0]["commit_index"]
                                          for s in st.values())
        self.wait_for("every node applied the leader's commit index", converged, 60)
        digests = {}
        for n in live:
            self.transfer_to(n, live)
            digests[n.id] = self.digest(live)
        self.assertEqual(len(set(digests.values())), 1, "replicas' states differ: %s" % digests)
        # At least once: a message is processed again only when a worker lost its lease (it
        # says so); one deleted never comes back.
        done = collections.Counter(r["id"] for r in records(self.out) if r["phase"] == "done")
        again = {i for i, k in done.items() if k > 1}
        lost = set(re.findall(r"message (\S+): lease lost", "".join(w.text() for w in self.workers)))
        self.assertEqual(again - lost, set(), "processed twice, with no lease lost")
        print("\n%s: %d orders, %d jobs; %d orders processed more than once (a lease lost)"
              % (self.id(), len(orders), len(jobs), len(again)))

    def test_rolling_restart_with_the_leader_handing_over_first(self):
        # scripts/rolling_restart.sh does it, as an operator would run it; its restart command
        # stops a node by SIGTERM and waits for it to exit, and a supervisor (this thread, as
        # systemd's Restart=always would) starts it again on its data dir.
        exits, stopping = [], threading.Event()

        def supervise():
            while not stopping.is_set():
                for n in self.nodes:
                    if n.proc.poll() is not None:
                        exits.append((n.id, n.proc.returncode))
                        n.start(self.nodes)
                        write_pid(n)
                time.sleep(0.05)

        def write_pid(n):
            with open(os.path.join(self.data, "pid-%d" % n.id), "w") as f:
                f.write("%d\n" % n.proc.pid)

        for n in self.nodes:
            write_pid(n)
        supervisor = threading.Thread(target=supervise)
        supervisor.start()
        restart = ('pid=$(cat "%s/pid-$KYU_NODE_ID") && kill -TERM "$pid" && '
                   'while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done' % self.data)
        try:
            leader = self.leader()
            self.under_load("the rolling restart")
            r = subprocess.run([SCRIPT, "--kyu", CLI, self.endpoints(), restart],
                               capture_output=True, timeout=400)
        finally:
            stopping.set()
            supervisor.join(timeout=60)
        out = r.stdout.decode()
        self.assertEqual(r.returncode, 0, "rolling_restart.sh failed:\n%s%s%s" % (
            out, r.stderr.decode(), self.logs()))
        # The followers first; the leader last, after a transfer.
        followers = [n.id for n in self.nodes if n is not leader]
        self.assertIn("order: node %d, node %d, node %d" % tuple(followers + [leader.id]), out)
        self.assertIn("node %d leads: kyu cluster transfer" % leader.id, out)
        self.assertEqual(sorted(exits), [(n.id, 0) for n in self.nodes],
                         "every node exited once, cleanly (status 0)")
        self.under_load("the end")
        self.check(self.nodes)

    def test_add_a_fourth_remove_an_old_one_and_replace_a_lost_one_by_an_empty_node(self):
        # Add: a new node with an empty data dir, started with --join (it knows itself and the
        # members), then `kyu cluster add` (returns once it is a voter).
        self.under_load("adding node 4")
        fourth = Node(4, "127.0.0.1:%d" % free_port(), "tcp://127.0.0.1:%d" % free_port(), self.data)
        fourth.start(self.nodes + [fourth], "--join")
        self.nodes.append(fourth)
        self.ok("cluster", "add", fourth.spec())
        self.wait_ready(fourth)
        live = list(self.nodes)

        # Remove an old one, the leader (it hands leadership over first), then stop it.
        old = self.leader()
        self.assertIsNot(old, fourth)
        self.under_load("removing node %d" % old.id)
        live.remove(old)
        self.remove_member(old.id, nodes=live)
        self.wait_for("voters without node %d" % old.id,
                      lambda: sorted(self.status(live)[self.leader(live).client]["voters"])
                      == sorted(n.id for n in live))
        self.assert_out_for_good(old)
        old.stop()

        # Node 4 leads for a while: the clients, given nodes 1 to 3 only, reach it by the
        # leader's redirect.
        self.under_load("moving leadership to node 4")
        self.transfer_to(fourth, live)

        # Replace a lost one: a follower's disk is lost (kill -9, its data dir deleted). It is
        # removed, and a new node with a new id (a reused id would vote again with a forgotten
        # log) and an empty data dir takes its addresses, so clients need no new list.
        self.under_load("losing a follower's disk")
        lost = next(n for n in live if n is not self.leader(live) and n is not fourth)
        lost.kill9()
        live.remove(lost)
        shutil.rmtree(os.path.join(self.data, "db-%d" % lost.id))
        self.remove_member(lost.id, nodes=live)
        self.wait_for("voters without node %d" % lost.id,
                      lambda: lost.id not in self.status(live)[self.leader(live).client]["voters"])
        self.under_load("adding node 5 in place of node %d" % lost.id)
        fifth = Node(5, lost.raft, lost.client, self.data)
        fifth.start(live + [fifth], "--join")
        self.nodes.append(fifth)
        live.append(fifth)
        self.ok("cluster", "add", fifth.spec(), nodes=live)
        self.wait_ready(fifth)
        self.assertEqual(sorted(self.status(live)[self.leader(live).client]["voters"]),
                         sorted(n.id for n in live))
        self.under_load("the end")
        self.check(live)


if __name__ == "__main__":
    unittest.main()
