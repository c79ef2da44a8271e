"""Serving in the publish's entry (docs/ARCHITECTURE.md "Topics" and "Long polling"): a PUBLISH
whose copies meet parked long polls or idle worker sessions on the subscribed queues takes
their RECEIVEs into its own Raft entry, so a published message reaches its consumers in one
entry (one fsync, one replication round), not two. Counted with the leader's commit index
(CLUSTER_STATUS), which counts entries, as tests/integration/test_long_poll.py does for a
send; on one node and on three.

The leader's count is a guess from the state at the proposal; where a copy is not receivable
at once (a filter policy refuses the message, a FIFO queue's group has a message in flight, a
queue with DelaySeconds) no receive is proposed for it, and a guess made wrong by a command
pipelined before the publish costs one receive that finds nothing and parks again: the long
poll still gets its message.

Only causality is asserted, never how fast. Every wait is bounded; processes are stopped by
their PID only."""
import json
import time
import unittest

import msgpack

from harness import CLI, Broker, ThreeNodes
from test_long_poll import QUIET_MS, Client
from test_workers import Worker

OP_DELETE_QUEUE, OP_CLUSTER_STATUS, OP_SET_QUEUE_ATTRIBUTES = 3, 10, 14
OP_UNSUBSCRIBE, OP_PUBLISH = 30, 32
OK, NO_SUCH_QUEUE = 0, 6


class PublishWaiters(unittest.TestCase):
    def setUp(self):
        self.b = Broker().start()
        self.socks = []

    def tearDown(self):
        for s in self.socks:
            s.close()
        self.b.cleanup()

    def client(self):
        c = Client(self.b.endpoint)
        self.socks.append(c)
        return c

    def worker(self):
        w = Worker(self.b.endpoint)
        self.socks.append(w)
        return w

    def commit(self):
        """The leader's commit index: how many Raft entries it committed."""
        c = self.client()
        c.s.send_multipart([msgpack.packb(dict(op=OP_CLUSTER_STATUS, id=1))])
        r = c.reply(10000)
        self.assertIsNotNone(r, "no reply to CLUSTER_STATUS")
        return r[0]["node"]["commit"]

    def topic(self, name, *subs, delays=None):
        """A topic with each (queue, subscribe options...) created and subscribed; delays:
        queue -> its DelaySeconds."""
        fifo = ["--fifo", "--content-based-dedup"]
        self.b.ok("create-topic", name, *(fifo if name.endswith(".fifo") else []))
        for queue, *opts in subs:
            delay = (delays or {}).get(queue)
            self.b.ok("create-queue", queue, *(fifo if queue.endswith(".fifo") else []),
                      *(["--delay", str(delay)] if delay else []))
            self.b.ok("subscribe", name, queue, *opts)

    def parked(self, c, queue, wait=20, **fields):
        rid = c.receive(queue, wait, **fields)
        self.assertIsNone(c.reply(QUIET_MS), "a long poll on an empty queue was answered at once")
        return rid

    def woken(self, c, rid, started):
        r = c.reply(max(1, int((started + 19 - time.monotonic()) * 1000)))
        self.assertIsNotNone(r, "the long poll was not answered before its deadline")
        header, bodies = r
        self.assertEqual((header["id"], header["st"]), (rid, OK), header)
        return header, bodies

    def test_a_publish_and_the_long_polls_it_wakes_share_one_raft_entry(self):
        self.topic("orders", ("ship", "--raw"), ("bill",))  # bill gets SNS's envelope
        ship, bill = self.client(), self.client()
        started = time.monotonic()
        rids = self.parked(ship, "ship"), self.parked(bill, "bill")
        before = self.commit()
        mid = self.b.ok("publish", "orders", "order-1").strip()
        _, bodies = self.woken(ship, rids[0], started)
        self.assertEqual(bodies, [b"order-1"])
        _, bodies = self.woken(bill, rids[1], started)
        env = json.loads(bodies[0])
        self.assertEqual((env["Message"], env["MessageId"]), ("order-1", mid))
        self.assertEqual(self.commit() - before, 1, "the woken receives took an entry of their own")
        # Again, with the waiters parked behind nothing: each publish one entry.
        for n in range(2):
            rids = ship.receive("ship", 20), bill.receive("bill", 20)
            self.assertIsNone(bill.reply(QUIET_MS))
            before = self.commit()
            self.b.ok("publish", "orders", "o%d" % n)
            self.assertEqual(self.woken(ship, rids[0], started)[1], [b"o%d" % n])
            self.assertEqual(json.loads(self.woken(bill, rids[1], started)[1][0])["Message"],
                             "o%d" % n)
            self.assertEqual(self.commit() - before, 1)

    def test_a_publish_serves_a_worker_session_and_a_long_poll_in_its_entry(self):
        self.topic("orders", ("ship", "--raw"), ("bill", "--raw"))
        w = self.worker()
        self.assertEqual(w.open("ship", 5)["st"], OK)
        w.pump(0.3, 300)
        bill = self.client()
        started = time.monotonic()
        for n in range(2):
            rid = self.parked(bill, "bill")
            before = w.req(dict(op=OP_CLUSTER_STATUS))["node"]["commit"]
            self.b.ok("publish", "orders", "order-%d" % n)
            self.assertTrue(w.wait_for(lambda: len(w.msgs()) == n + 1, 10, 300), w.pushes)
            self.assertEqual(w.msgs()[n][1], b"order-%d" % n)
            self.assertEqual(self.woken(bill, rid, started)[1], [b"order-%d" % n])
            after = w.req(dict(op=OP_CLUSTER_STATUS))["node"]["commit"]
            self.assertEqual(after - before, 1, "a push or a receive took an entry of its own")

    def test_a_publish_batch_serves_several_long_polls_of_each_queue(self):
        self.topic("orders", ("ship", "--raw"), ("bill", "--raw"))
        ships = [self.client() for _ in range(3)]
        bill = self.client()
        started = time.monotonic()
        sids = [c.receive("ship", 20) for c in ships]
        bid = self.parked(bill, "bill", max=10)
        before = self.commit()
        p = self.client()
        p.s.send_multipart([msgpack.packb(dict(op=OP_PUBLISH, id=1, tp="orders",
                                               eid=["a", "b", "c"])), b"a", b"b", b"c"])
        r = p.reply(10000)
        self.assertEqual(r[0]["st"], OK, r[0])
        got = sorted(self.woken(c, rid, started)[1][0] for c, rid in zip(ships, sids))
        self.assertEqual(got, [b"a", b"b", b"c"])
        self.assertEqual(sorted(self.woken(bill, bid, started)[1]), [b"a", b"b", b"c"])
        self.assertEqual(self.commit() - before, 1)

    # Copies not receivable at once: no receive is proposed for them (the counts are as
    # before this branch), and the long polls get them when they are.

    def test_a_filter_policy_that_refuses_the_message_wakes_no_long_poll(self):
        self.topic("orders", ("ship", "--raw", "--filter", json.dumps({"event": ["placed"]})),
                   ("audit", "--raw"))
        ship, audit = self.client(), self.client()
        started = time.monotonic()
        sid, aid = self.parked(ship, "ship"), self.parked(audit, "audit")
        before = self.commit()
        self.b.ok("publish", "orders", "refund", "--attr", "event=String:refunded")
        self.assertEqual(self.woken(audit, aid, started)[1], [b"refund"])
        self.assertIsNone(ship.reply(QUIET_MS), "a filtered-out message woke the long poll")
        self.assertEqual(self.commit() - before, 1, "not one entry: the publish and audit's "
                         "receive (none for ship, whose policy refuses the message)")
        aid = audit.receive("audit", 20)
        self.b.ok("publish", "orders", "order", "--attr", "event=String:placed")
        self.assertEqual(self.woken(ship, sid, started)[1], [b"order"])
        self.assertEqual(self.woken(audit, aid, started)[1], [b"order"])
        self.assertEqual(self.commit() - before, 2)

    def test_a_fifo_queue_whose_group_is_in_flight_wakes_no_long_poll(self):
        self.topic("t.fifo", ("q.fifo", "--raw"), ("r.fifo", "--raw"))
        self.b.ok("publish", "t.fifo", "first", "--group", "g")
        first = self.b.json_lines("receive", "q.fifo", "--visibility-timeout", "600")[0]
        self.b.ok("purge-queue", "r.fifo")
        q, r = self.client(), self.client()
        started = time.monotonic()
        qid, rid = self.parked(q, "q.fifo"), self.parked(r, "r.fifo")
        before = self.commit()
        self.b.ok("publish", "t.fifo", "second", "--group", "g")  # g in flight in q.fifo only
        self.assertEqual(self.woken(r, rid, started)[1], [b"second"])
        self.assertIsNone(q.reply(QUIET_MS), "a message behind one in flight was received")
        self.assertEqual(self.commit() - before, 1, "not one entry: the publish and r.fifo's "
                         "receive (none for q.fifo, whose group g is in flight)")
        self.b.ok("publish", "t.fifo", "other", "--group", "h")  # another group: at once
        self.assertEqual(self.woken(q, qid, started)[1], [b"other"])
        self.assertEqual(self.commit() - before, 2)
        qid = q.receive("q.fifo", 20)
        self.assertIsNone(q.reply(QUIET_MS))
        self.b.ok("delete", "q.fifo", first["ReceiptHandle"])  # g's next one is free now
        self.assertEqual(self.woken(q, qid, started)[1], [b"second"])

    def test_a_queue_with_delay_seconds_gets_its_copy_when_the_delay_ends(self):
        self.topic("orders", ("later", "--raw"), ("now", "--raw"), delays={"later": 2})
        later, now = self.client(), self.client()
        started = time.monotonic()
        lid, nid = self.parked(later, "later"), self.parked(now, "now")
        before = self.commit()
        self.b.ok("publish", "orders", "m")
        self.assertEqual(self.woken(now, nid, started)[1], [b"m"])
        self.assertIsNone(later.reply(QUIET_MS), "a delayed copy was received before its delay")
        self.assertEqual(self.commit() - before, 1, "not one entry: the publish and now's "
                         "receive (none for later, whose copy is delayed)")
        self.assertEqual(self.woken(later, lid, started)[1], [b"m"])
        self.assertEqual(self.commit() - before, 2)

    def test_a_wrong_guess_is_parked_again_and_served_later(self):
        # DelaySeconds set on a subscribed queue and a publish right behind it, pipelined: the
        # publish may be proposed before the new delay is applied, and a receive served in its
        # entry then finds nothing. The long poll waits on and gets its copy when the delay ends.
        self.topic("orders", ("ship", "--raw"), ("bill", "--raw"))
        ship, bill = self.client(), self.client()
        started = time.monotonic()
        sid, bid = self.parked(ship, "ship"), self.parked(bill, "bill")
        p = self.client()
        p.s.send_multipart([msgpack.packb(dict(op=OP_SET_QUEUE_ATTRIBUTES, id=1, q="ship", ds=2))])
        p.s.send_multipart([msgpack.packb(dict(op=OP_PUBLISH, id=2, tp="orders")), b"delayed"])
        self.assertEqual([p.reply(10000)[0]["st"] for _ in range(2)], [OK, OK])
        self.assertEqual(self.woken(bill, bid, started)[1], [b"delayed"])
        self.assertIsNone(ship.reply(QUIET_MS), "a delayed copy was received before its delay")
        self.assertEqual(self.woken(ship, sid, started)[1], [b"delayed"])


    def test_a_subscription_removed_right_before_a_publish_gives_its_long_poll_nothing(self):
        # UNSUBSCRIBE and a PUBLISH pipelined: the publish may be counted for ship before the
        # unsubscribe is applied; a receive served in its entry then finds nothing and parks
        # again. ship gets no copy; a message sent to it later still wakes its long poll.
        self.topic("orders", ("ship", "--raw"), ("bill", "--raw"))
        subs = [l.split() for l in self.b.ok("list-subscriptions", "orders").splitlines()]
        sub_id = next(f[0] for f in subs if f[2] == "ship")
        ship, bill = self.client(), self.client()
        started = time.monotonic()
        sid, bid = self.parked(ship, "ship"), self.parked(bill, "bill")
        p = self.client()
        p.s.send_multipart([msgpack.packb(dict(op=OP_UNSUBSCRIBE, id=1, sub=sub_id))])
        p.s.send_multipart([msgpack.packb(dict(op=OP_PUBLISH, id=2, tp="orders")), b"m"])
        self.assertEqual([p.reply(10000)[0]["st"] for _ in range(2)], [OK, OK])
        self.assertEqual(self.woken(bill, bid, started)[1], [b"m"])
        self.assertIsNone(ship.reply(QUIET_MS), "an unsubscribed queue's long poll got a copy")
        self.b.ok("send", "ship", "direct")
        self.assertEqual(self.woken(ship, sid, started)[1], [b"direct"])

    def test_a_queue_deleted_right_before_a_publish_answers_its_long_poll(self):
        # DELETE_QUEUE and a PUBLISH pipelined: whichever way they meet, ship's waiter learns
        # that its queue is gone, and bill's gets its copy.
        self.topic("orders", ("ship", "--raw"), ("bill", "--raw"))
        ship, bill = self.client(), self.client()
        started = time.monotonic()
        sid, bid = self.parked(ship, "ship"), self.parked(bill, "bill")
        p = self.client()
        p.s.send_multipart([msgpack.packb(dict(op=OP_DELETE_QUEUE, id=1, q="ship"))])
        p.s.send_multipart([msgpack.packb(dict(op=OP_PUBLISH, id=2, tp="orders")), b"m"])
        self.assertEqual([p.reply(10000)[0]["st"] for _ in range(2)], [OK, OK])
        self.assertEqual(self.woken(bill, bid, started)[1], [b"m"])
        r = ship.reply(max(1, int((started + 19 - time.monotonic()) * 1000)))
        self.assertIsNotNone(r)
        self.assertEqual((r[0]["id"], r[0]["st"]), (sid, NO_SUCH_QUEUE), r[0])


class ClusterPublishWaiters(ThreeNodes, unittest.TestCase):
    """Three nodes: the publish and the receives of the long polls it wakes are one entry,
    so one replication round."""

    def setUp(self):
        self.start_nodes("kyu-pubw-cluster-")
        self.socks = []

    def tearDown(self):
        for s in self.socks:
            s.close()
        self.stop_nodes()

    def status(self, endpoint):
        c = Client(endpoint)
        self.socks.append(c)
        c.s.send_multipart([msgpack.packb(dict(op=OP_CLUSTER_STATUS, id=1))])
        r = c.reply(10000)
        self.assertIsNotNone(r, "no reply to CLUSTER_STATUS")
        return r[0]["node"]

    def test_a_publish_and_the_long_polls_it_wakes_share_one_entry_on_three_nodes(self):
        self.ok("create-topic", "orders")  # the CLI finds the leader (and waits for one)
        for q in ("ship", "bill"):
            self.ok("create-queue", q)
            self.ok("subscribe", "orders", q, "--raw")
        lead = next(ep for ep in self.procs if self.status(ep)["role"] == "leader")
        cs = [Client(lead) for _ in range(2)]
        self.socks += cs
        started = time.monotonic()
        rids = [c.receive(q, 20) for c, q in zip(cs, ("ship", "bill"))]
        self.assertIsNone(cs[1].reply(QUIET_MS), "a long poll on an empty queue was answered")
        before = self.status(lead)["commit"]
        self.ok("publish", "orders", "order-1")
        for c, rid in zip(cs, rids):
            r = c.reply(max(1, int((started + 19 - time.monotonic()) * 1000)))
            self.assertIsNotNone(r, "the long poll was not answered before its deadline")
            self.assertEqual((r[0]["id"], r[0]["st"], r[1]), (rid, OK, [b"order-1"]), r[0])
        self.assertEqual(self.status(lead)["commit"] - before, 1,
                         "the woken receives took an entry of their own")

if __name__ == "__main__":
    unittest.main()
