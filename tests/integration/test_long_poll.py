"""Long polling (issue 13, item 3): a RECEIVE with a wait ("wt", `kyu receive --wait SEC`) that
finds nothing is held by the leader and answered as soon as a message becomes visible: woken
by a send, a lease that runs out, a change-visibility to 0, a delay that ends; several waiters
share the messages in order of arrival; at its deadline the answer is empty; a deleted queue
answers NO_SUCH_QUEUE, a shutdown answers at once, a leadership change answers NOT_LEADER and
the client asks the new leader; past the broker's bound a long poll is refused with BUSY; a
thousand idle long polls cost no measurable CPU.

Only causality is asserted (a reply comes after what caused it, and not before; "before the
20 s deadline" as a generous bound), never how fast. Every wait is bounded; processes are
stopped by their PID only."""
import json
import os
import signal
import subprocess
import time
import unittest

import msgpack
import zmq

from harness import CLI, Broker, ThreeNodes

OP_DELETE_QUEUE, OP_SEND, OP_RECEIVE, OP_CLUSTER_STATUS, OP_SET_QUEUE_ATTRIBUTES = 3, 6, 7, 10, 14
OK, INVALID_ARGUMENT, NO_SUCH_QUEUE, BUSY, NOT_LEADER = 0, 4, 6, 12, 14
QUIET_MS = 300  # "no reply yet": a parked receive is not answered within this


class Client:
    """A raw DEALER socket: long polls sent by hand, replies matched by id."""

    def __init__(self, endpoint):
        self.ctx = zmq.Context()
        self.s = self.ctx.socket(zmq.DEALER)
        self.s.setsockopt(zmq.LINGER, 0)
        self.s.connect(endpoint)
        self.next_id = 0

    def receive(self, queue, wait, **fields):
        self.next_id += 1
        self.s.send_multipart([msgpack.packb(dict(op=OP_RECEIVE, id=self.next_id, q=queue, wt=wait, **fields))])
        return self.next_id

    def reply(self, timeout_ms):
        """The next reply as (header, bodies), or None when none comes within timeout_ms."""
        if not self.s.poll(timeout_ms):
            return None
        frames = self.s.recv_multipart()
        return msgpack.unpackb(frames[0]), frames[1:]

    def close(self):
        self.s.close()
        self.ctx.destroy(linger=0)


class LongPoll(unittest.TestCase):
    def setUp(self):
        self.b = Broker().start()
        self.clients = []
        self.b.ok("create-queue", "jobs")

    def tearDown(self):
        for c in self.clients:
            c.close()
        self.b.cleanup()

    def client(self):
        c = Client(self.b.endpoint)
        self.clients.append(c)
        return c

    def parked(self, c, queue="jobs", wait=20, **fields):
        """Sends a long poll and checks that it is held (no answer yet); returns its id."""
        rid = c.receive(queue, wait, **fields)
        self.assertIsNone(c.reply(QUIET_MS), "a long poll on an empty queue was answered at once")
        return rid

    def woken(self, c, rid, started):
        """The long poll's answer, which must come before its 20 s deadline."""
        r = c.reply(max(1, int((started + 19 - time.monotonic()) * 1000)))
        self.assertIsNotNone(r, "the long poll was not answered before its deadline")
        header, bodies = r
        self.assertEqual(header["id"], rid)
        self.assertEqual(header["st"], OK, header)
        return header, bodies

    def test_a_send_wakes_a_waiting_receive(self):
        c = self.client()
        started = time.monotonic()
        rid = self.parked(c)
        mid = self.b.ok("send", "jobs", "hello").strip()
        header, bodies = self.woken(c, rid, started)
        self.assertEqual(bodies, [b"hello"])
        self.assertEqual(header["msgs"][0]["mid"], mid)

    def test_a_queues_receive_wait_makes_a_receive_without_wait_wait(self):
        # ReceiveMessageWaitTimeSeconds: the wait of a receive that gives none (SQS).
        self.b.ok("create-queue", "waits", "--receive-wait", "4")
        p = subprocess.Popen([CLI, "--broker", self.b.endpoint, "--json", "receive", "waits"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            with self.assertRaises(subprocess.TimeoutExpired):
                p.wait(timeout=1)
            self.b.ok("send", "waits", "late")
            out, err = p.communicate(timeout=60)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)
        self.assertEqual(p.returncode, 0, err.decode())
        self.assertEqual(json.loads(out)["Body"], "late")
        # --wait 0 overrides it: answered at once, empty.
        r = self.b.cli("receive", "waits", "--wait", "0")
        self.assertEqual((r.returncode, r.stdout), (0, b""))

    def test_the_cli_waits_for_a_message_sent_after_it_started(self):
        started = time.monotonic()
        p = subprocess.Popen([CLI, "--broker", self.b.endpoint, "--json", "receive", "jobs", "--wait", "20"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            # Still waiting (the queue is empty): it did not return an empty answer at once.
            with self.assertRaises(subprocess.TimeoutExpired):
                p.wait(timeout=1)
            self.b.ok("send", "jobs", "late")
            out, err = p.communicate(timeout=60)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)
        self.assertEqual(p.returncode, 0, err.decode())
        self.assertEqual(json.loads(out)["Body"], "late")
        self.assertLess(time.monotonic() - started, 19, "answered by the deadline, not the send")

    def test_a_lease_that_runs_out_wakes_a_waiting_receive(self):
        self.b.ok("send", "jobs", "again")
        first = self.b.json_lines("receive", "jobs", "--visibility-timeout", "1")[0]
        c = self.client()
        started = time.monotonic()
        rid = c.receive("jobs", 20)
        header, bodies = self.woken(c, rid, started)
        self.assertEqual(bodies, [b"again"])
        self.assertEqual(header["msgs"][0]["mid"], first["MessageId"])
        self.assertEqual(header["msgs"][0]["rc"], 2)

    def test_change_visibility_to_zero_wakes_a_waiting_receive(self):
        self.b.ok("send", "jobs", "released")
        first = self.b.json_lines("receive", "jobs", "--visibility-timeout", "600")[0]
        c = self.client()
        started = time.monotonic()
        rid = self.parked(c)
        self.b.ok("change-visibility", "jobs", first["ReceiptHandle"], "--visibility-timeout", "0")
        header, bodies = self.woken(c, rid, started)
        self.assertEqual(bodies, [b"released"])
        self.assertEqual(header["msgs"][0]["rc"], 2)

    def test_a_delay_that_ends_wakes_a_waiting_receive(self):
        self.b.ok("send", "jobs", "delayed", "--delay", "2")
        c = self.client()
        started = time.monotonic()
        rid = self.parked(c)
        header, bodies = self.woken(c, rid, started)
        self.assertEqual(bodies, [b"delayed"])

    def test_waiters_share_the_messages_in_order_of_arrival(self):
        c = self.client()
        started = time.monotonic()
        ids = [c.receive("jobs", 20) for _ in range(3)]
        self.assertIsNone(c.reply(QUIET_MS))
        for n, body in enumerate(["m1", "m2", "m3"]):
            self.b.ok("send", "jobs", body)
            header, bodies = self.woken(c, ids[n], started)  # the earliest waiter left, each time
            self.assertEqual(bodies, [body.encode()])
            if n < 2:
                self.assertIsNone(c.reply(QUIET_MS), "a later waiter was answered too")

    def test_several_waiters_each_get_a_distinct_message(self):
        cs = [self.client() for _ in range(5)]
        started = time.monotonic()
        ids = [self.parked(c) if i == 0 else c.receive("jobs", 20) for i, c in enumerate(cs)]
        self.b.ok("send", "jobs", "--lines", input=b"a\nb\nc\nd\ne\n")
        got = []
        for c, rid in zip(cs, ids):
            header, bodies = self.woken(c, rid, started)
            self.assertEqual(len(bodies), 1, header)
            got.append(bodies[0])
        self.assertEqual(sorted(got), [b"a", b"b", b"c", b"d", b"e"])

    # Serving in the send's entry (docs/ARCHITECTURE.md "Long polling"): the RECEIVE of a long
    # poll that a send wakes goes into the send's own Raft entry, so a message that meets a
    # waiting receive costs one entry (one fsync, one replication round), not two. Counted
    # with the leader's commit index, which counts entries.

    def commit(self):
        """The leader's commit index (CLUSTER_STATUS): how many Raft entries it committed."""
        c = self.client()
        c.s.send_multipart([msgpack.packb(dict(op=OP_CLUSTER_STATUS, id=1))])
        r = c.reply(10000)
        self.assertIsNotNone(r, "no reply to CLUSTER_STATUS")
        return r[0]["node"]["commit"]

    def test_a_send_and_the_long_poll_it_wakes_share_one_raft_entry(self):
        c = self.client()
        started = time.monotonic()
        rid = self.parked(c)
        before = self.commit()
        mid = self.b.ok("send", "jobs", "hello").strip()
        header, bodies = self.woken(c, rid, started)
        self.assertEqual((bodies, header["msgs"][0]["mid"]), ([b"hello"], mid))
        self.assertEqual(self.commit() - before, 1, "the woken receive took an entry of its own")
        # Two waiters, two sends: each send wakes the first waiter left, in its own entry.
        ids = [c.receive("jobs", 20) for _ in range(2)]
        self.assertIsNone(c.reply(QUIET_MS))
        for n, body in enumerate(["m1", "m2"]):
            before = self.commit()
            self.b.ok("send", "jobs", body)
            header, bodies = self.woken(c, ids[n], started)
            self.assertEqual(bodies, [body.encode()])
            self.assertEqual(self.commit() - before, 1)
            if n == 0:
                self.assertIsNone(c.reply(QUIET_MS), "the second waiter was answered too")

    def test_a_batch_serves_several_long_polls_in_its_entry(self):
        cs = [self.client() for _ in range(3)]
        started = time.monotonic()
        ids = [self.parked(c) if i == 0 else c.receive("jobs", 20) for i, c in enumerate(cs)]
        self.assertIsNone(cs[-1].reply(QUIET_MS))
        before = self.commit()
        p = self.client()  # one SEND of three messages
        p.s.send_multipart([msgpack.packb(dict(op=OP_SEND, id=1, q="jobs")), b"a", b"b", b"c"])
        self.assertEqual(p.reply(10000)[0]["st"], OK)
        got = sorted(self.woken(c, rid, started)[1][0] for c, rid in zip(cs, ids))
        self.assertEqual(got, [b"a", b"b", b"c"])
        self.assertEqual(self.commit() - before, 1)

    def test_a_delayed_send_wakes_the_long_poll_when_its_delay_ends(self):
        # Not served in the send's entry: the message is not visible then (the receive gets
        # an entry of its own when the delay ends, and nothing before).
        c = self.client()
        started = time.monotonic()
        rid = self.parked(c)
        before = self.commit()
        self.b.ok("send", "jobs", "later", "--delay", "2")
        self.assertIsNone(c.reply(QUIET_MS), "a delayed message was received before its delay")
        header, bodies = self.woken(c, rid, started)
        self.assertEqual(bodies, [b"later"])
        self.assertEqual(self.commit() - before, 2, "a receive was proposed that found nothing")

    def test_a_fifo_send_behind_a_message_in_flight_wakes_no_long_poll(self):
        self.b.ok("create-queue", "q.fifo", "--fifo", "--content-based-dedup")
        self.b.ok("send", "q.fifo", "first", "--group", "g")
        first = self.b.json_lines("receive", "q.fifo", "--visibility-timeout", "600")[0]
        c = self.client()
        started = time.monotonic()
        rid = self.parked(c, queue="q.fifo")
        before = self.commit()
        self.b.ok("send", "q.fifo", "second", "--group", "g")  # its group is in flight
        self.assertIsNone(c.reply(QUIET_MS), "a message behind one in flight was received")
        self.assertEqual(self.commit() - before, 1, "a receive was proposed that found nothing")
        self.b.ok("send", "q.fifo", "other", "--group", "h")  # another group: served at once
        header, bodies = self.woken(c, rid, started)
        self.assertEqual(bodies, [b"other"])
        self.assertEqual(self.commit() - before, 2)
        rid = c.receive("q.fifo", 20)
        self.assertIsNone(c.reply(QUIET_MS))
        self.b.ok("delete", "q.fifo", first["ReceiptHandle"])  # g's next one is free now
        header, bodies = self.woken(c, rid, started)
        self.assertEqual(bodies, [b"second"])

    def test_a_long_poll_that_comes_right_after_a_send_gets_its_message(self):
        # A long poll pipelined right behind a send (it may come while the send is in flight,
        # not applied yet, and park, or after) gets the message.
        c = self.client()
        started = time.monotonic()
        self.parked(c, wait=1)  # the queue is one long polls wait on
        self.assertEqual(c.reply(5000)[0]["st"], OK)  # its deadline: answered empty
        for n in range(3):
            c.s.send_multipart([msgpack.packb(dict(op=OP_SEND, id=100 + n, q="jobs")), b"m%d" % n])
            rid = c.receive("jobs", 20)
            replies = {}
            while len(replies) < 2:
                r = c.reply(max(1, int((started + 19 - time.monotonic()) * 1000)))
                self.assertIsNotNone(r, "no answer before the deadline")
                replies[r[0]["id"]] = r
            self.assertEqual(replies[100 + n][0]["st"], OK)
            self.assertEqual(replies[rid][1], [b"m%d" % n])

    def test_a_wrong_guess_is_parked_again_and_served_later(self):
        # The queue's DelaySeconds set and a send right behind it, pipelined: the send may be
        # proposed before the new delay is applied, and a receive served in its entry then finds
        # nothing. The long poll waits on, and gets the message when the delay ends.
        c = self.client()
        started = time.monotonic()
        rid = self.parked(c)
        p = self.client()
        p.s.send_multipart([msgpack.packb(dict(op=OP_SET_QUEUE_ATTRIBUTES, id=1, q="jobs", ds=2))])
        p.s.send_multipart([msgpack.packb(dict(op=OP_SEND, id=2, q="jobs")), b"delayed"])
        self.assertEqual([p.reply(10000)[0]["st"] for _ in range(2)], [OK, OK])
        self.assertIsNone(c.reply(QUIET_MS), "a delayed message was received before its delay")
        header, bodies = self.woken(c, rid, started)
        self.assertEqual(bodies, [b"delayed"])

    def test_a_queue_deleted_right_before_a_send_answers_its_waiter(self):
        # DELETE_QUEUE and a SEND pipelined: whichever way they meet, the waiter learns that its
        # queue is gone (a receive served in the send's entry fails as the send does).
        c = self.client()
        started = time.monotonic()
        rid = self.parked(c)
        p = self.client()
        p.s.send_multipart([msgpack.packb(dict(op=OP_DELETE_QUEUE, id=1, q="jobs"))])
        p.s.send_multipart([msgpack.packb(dict(op=OP_SEND, id=2, q="jobs")), b"lost"])
        self.assertEqual(p.reply(10000)[0]["st"], OK)
        self.assertEqual(p.reply(10000)[0]["st"], NO_SUCH_QUEUE)
        r = c.reply(max(1, int((started + 19 - time.monotonic()) * 1000)))
        self.assertIsNotNone(r)
        self.assertEqual((r[0]["id"], r[0]["st"]), (rid, NO_SUCH_QUEUE), r[0])

    def test_a_long_poll_with_max_gets_several_messages(self):
        c = self.client()
        started = time.monotonic()
        rid = self.parked(c, max=10)
        self.b.ok("send", "jobs", "--lines", input=b"1\n2\n3\n")
        got = []
        while len(got) < 3:  # one send request per line: the first may wake it alone
            header, bodies = self.woken(c, rid, started)
            got += bodies
            if len(got) < 3:
                rid = c.receive("jobs", 20, max=10)
        self.assertEqual(sorted(got), [b"1", b"2", b"3"])

    def test_the_deadline_gives_an_empty_answer(self):
        c = self.client()
        started = time.monotonic()
        rid = c.receive("jobs", 1)
        r = c.reply(19000)
        self.assertIsNotNone(r, "no answer at the deadline")
        self.assertEqual(r[0]["id"], rid)
        self.assertEqual(r[0]["st"], OK)
        self.assertNotIn("msgs", r[0])
        self.assertEqual(r[1], [])
        self.assertGreaterEqual(time.monotonic() - started, 0.9, "answered before its wait ended")
        r = self.b.cli("receive", "jobs", "--wait", "1")
        self.assertEqual((r.returncode, r.stdout), (0, b""))

    def test_wait_zero_answers_at_once(self):
        c = self.client()
        rid = c.receive("jobs", 0)
        r = c.reply(19000)
        self.assertEqual((r[0]["id"], r[0]["st"], r[1]), (rid, OK, []))

    def test_deleting_the_queue_answers_its_waiters(self):
        c = self.client()
        started = time.monotonic()
        rid = self.parked(c)
        self.b.ok("delete-queue", "jobs")
        r = c.reply(max(1, int((started + 19 - time.monotonic()) * 1000)))
        self.assertIsNotNone(r, "the waiter of a deleted queue was not answered")
        self.assertEqual((r[0]["id"], r[0]["st"]), (rid, NO_SUCH_QUEUE))
        # A queue of the same name created meanwhile is another queue: its waiters too.
        self.b.ok("create-queue", "jobs")
        rid = self.parked(c)
        self.b.ok("delete-queue", "jobs")
        self.b.ok("create-queue", "jobs")
        r = c.reply(19000)
        self.assertEqual((r[0]["id"], r[0]["st"]), (rid, NO_SUCH_QUEUE))

    def test_bad_wait_times_are_refused(self):
        c = self.client()
        for wt in (21, -1, "5", 2**64 - 1):
            c.receive("jobs", wt)
            r = c.reply(10000)
            self.assertEqual(r[0]["st"], INVALID_ARGUMENT, (wt, r[0]))
        r = self.b.cli("receive", "jobs", "--wait", "21")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--wait", r.stderr.decode())
        self.assertEqual(self.b.attributes("jobs")["ApproximateNumberOfMessages"], 0)

    def test_a_shutdown_answers_the_waiters(self):
        c = self.client()
        rid = self.parked(c)
        self.b.proc.send_signal(signal.SIGTERM)
        r = c.reply(19000)
        self.assertIsNotNone(r, "a waiter was left hanging by the shutdown")
        self.assertEqual((r[0]["id"], r[0]["st"], r[1]), (rid, OK, []))
        self.b.proc.wait(timeout=30)


class Bounds(unittest.TestCase):
    def setUp(self):
        os.environ["KYU_MAX_WAITING"] = "3"
        try:
            self.b = Broker().start()
        finally:
            del os.environ["KYU_MAX_WAITING"]
        self.b.ok("create-queue", "jobs")
        self.c = Client(self.b.endpoint)

    def tearDown(self):
        self.c.close()
        self.b.cleanup()

    def test_long_polls_past_the_bound_are_refused_with_busy(self):
        for _ in range(3):
            self.c.receive("jobs", 20)
        self.assertIsNone(self.c.reply(QUIET_MS))
        rid = self.c.receive("jobs", 20)
        r = self.c.reply(10000)
        self.assertEqual((r[0]["id"], r[0]["st"]), (rid, BUSY))
        self.assertIn("waiting", r[0]["err"])
        # A receive without a wait is still served, and the waiters still are.
        self.assertEqual(self.b.cli("receive", "jobs").returncode, 0)
        self.b.ok("send", "jobs", "x")
        r = self.c.reply(19000)
        self.assertEqual((r[0]["st"], r[1]), (OK, [b"x"]))


def cpu_seconds(pid):
    """utime + stime of a process, from /proc/PID/stat."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class IdleCost(unittest.TestCase):
    """A thousand idle long polls cost no measurable CPU: the broker's CPU time over 3 s with
    them parked stays within 0.3 s of its CPU time over 3 s without them (an idle broker runs
    its 10 ms Raft tick either way; a broker that polled the parked receives, or woke on a
    short timer, would spend far more). The bound is generous for a shared, loaded machine,
    and is not a duration of the thing tested."""

    def setUp(self):
        self.b = Broker().start()
        self.b.ok("create-queue", "idle")
        self.clients = []

    def tearDown(self):
        for c in self.clients:
            c.close()
        self.b.cleanup()

    def test_a_thousand_idle_long_polls_cost_no_measurable_cpu(self):
        pid = self.b.proc.pid
        t0 = cpu_seconds(pid)
        time.sleep(3)
        idle = cpu_seconds(pid) - t0
        for _ in range(10):  # 10 connections of 100 long polls each
            c = Client(self.b.endpoint)
            self.clients.append(c)
            for _ in range(100):
                c.receive("idle", 20)
        time.sleep(1)  # parked by now
        t1 = cpu_seconds(pid)
        time.sleep(3)
        waiting = cpu_seconds(pid) - t1
        for c in self.clients:
            self.assertIsNone(c.reply(0), "a long poll was answered while the queue was empty")
        self.assertLess(waiting, idle + 0.3,
                        "1000 idle long polls cost %.2f s of CPU in 3 s (%.2f s without)" % (waiting, idle))
        # Still all there: one message wakes one of them.
        self.b.ok("send", "idle", "one")
        deadline = time.monotonic() + 15
        answered = []
        while time.monotonic() < deadline and not answered:
            for c in self.clients:
                r = c.reply(0)
                if r:
                    answered.append(r)
            time.sleep(0.01)
        self.assertEqual(len(answered), 1)
        self.assertEqual(answered[0][1], [b"one"])


class ClusterLongPoll(ThreeNodes, unittest.TestCase):
    """Three nodes: a follower answers a long poll NOT_LEADER at once; a long poll held by the
    leader ends when leadership moves (NOT_LEADER at once on a transfer; the CLI asks the new
    leader for the rest of its wait and gets a message sent there; the new leader wakes a long
    poll when a lease taken under the old one runs out), and after a kill -9 of the leader the
    CLI's call still ends."""

    def setUp(self):
        self.start_nodes("kyu-lp-cluster-")
        self.clients = []

    def tearDown(self):
        for c in self.clients:
            c.close()
        self.stop_nodes()

    def test_a_transfer_ends_the_long_poll_and_the_client_retries_at_the_new_leader(self):
        lead = self.leader()
        self.ok("create-queue", "jobs")
        # A follower redirects a long poll at once, as any request.
        follower = next(ep for ep in self.procs if ep != lead)
        f = Client(follower)
        self.clients.append(f)
        rid = f.receive("jobs", 20)
        r = f.reply(10000)
        self.assertIsNotNone(r, "a follower held a long poll")
        self.assertEqual((r[0]["id"], r[0]["st"], r[0].get("leader")), (rid, NOT_LEADER, lead))
        # A message leased under this leader, for 15 s: its lease runs out under the next one.
        self.ok("create-queue", "held")
        self.ok("send", "held", "leased")
        leased = json.loads(self.ok("--json", "receive", "held", "--visibility-timeout", "15"))
        leased_at = time.monotonic()
        c = Client(lead)
        self.clients.append(c)
        started = time.monotonic()
        rid = c.receive("jobs", 20)
        self.assertIsNone(c.reply(QUIET_MS))
        p = subprocess.Popen([CLI, "--broker", self.endpoints, "--json", "receive", "jobs", "--wait", "20"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            with self.assertRaises(subprocess.TimeoutExpired):
                p.wait(timeout=1)
            new = None
            for _ in range(6):  # a transfer may be abandoned on a loaded machine: ask again
                self.cli("cluster", "transfer", endpoint=lead)
                try:
                    new = self.leader(not_this=lead, deadline_s=5)
                    break
                except AssertionError:
                    continue
            self.assertIsNotNone(new, "leadership did not move")
            r = c.reply(max(1, int((started + 19 - time.monotonic()) * 1000)))
            self.assertIsNotNone(r, "the raw long poll was left hanging by the transfer")
            self.assertEqual((r[0]["id"], r[0]["st"]), (rid, NOT_LEADER))
            self.ok("send", "jobs", "after")
            out, err = p.communicate(timeout=90)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)
        self.assertEqual(p.returncode, 0, err.decode())
        # The CLI asked the new leader again; the message came either to that retry or, when
        # the retry's wait had run out, it is still in the queue.
        got = [json.loads(l)["Body"] for l in out.decode().splitlines() if l]
        if not got:
            got = [json.loads(l)["Body"] for l in self.ok("--json", "receive", "jobs").splitlines() if l]
        self.assertEqual(got, ["after"])
        # The new leader wakes a long poll when the lease taken under the old one runs out.
        n = Client(new)
        self.clients.append(n)
        started = time.monotonic()
        rid = n.receive("held", 20)
        if started - leased_at < 14:  # still leased (on a loaded machine the above may be slow)
            self.assertIsNone(n.reply(QUIET_MS), "answered while the message was leased")
        r = n.reply(max(1, int((started + 19 - time.monotonic()) * 1000)))
        self.assertIsNotNone(r, "the lease's end did not wake the long poll at the new leader")
        self.assertEqual((r[0]["id"], r[0]["st"]), (rid, OK), r[0])
        self.assertEqual(r[1], [b"leased"])
        self.assertEqual(r[0]["msgs"][0]["mid"], leased["MessageId"])
        self.assertEqual(r[0]["msgs"][0]["rc"], 2)

    def test_a_kill9_of_the_leader_ends_the_cli_long_poll(self):
        lead = self.leader()
        self.ok("create-queue", "jobs")
        p = subprocess.Popen([CLI, "--broker", self.endpoints, "--timeout", "3", "--json", "receive", "jobs",
                              "--wait", "5"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            with self.assertRaises(subprocess.TimeoutExpired):
                p.wait(timeout=1)
            self.procs[lead].kill()
            self.procs[lead].wait(timeout=30)
            out, err = p.communicate(timeout=90)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)
        # It ended: empty (the wait ran out at the new leader), or NOT_LEADER/TIMEOUT when no
        # leader was found within its timeout; never left hanging.
        self.assertIn(p.returncode, (0, 1), err.decode())
        new = self.leader(not_this=lead)
        self.ok("send", "jobs", "x")
        r = self.cli("--json", "receive", "jobs", "--wait", "20", endpoint=self.endpoints)
        self.assertEqual([json.loads(l)["Body"] for l in r.stdout.decode().splitlines() if l], ["x"])
        self.assertTrue(new)


if __name__ == "__main__":
    unittest.main()
