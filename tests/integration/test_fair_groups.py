"""Fair message groups on standard queues (issue 15, item 3, beyond SQS): a noisy tenant's
10,000 queued messages do not delay a quiet tenant's message, through receives of one and of
ten and through a worker session's pushes; a receive gives no group more than its share;
replies carry the MessageGroupId; a kill -9 keeps the groups' turns.

Only causality and generous bounds are asserted, never how fast. Every wait is bounded;
processes are stopped by their PID only."""
import time
import unittest

from harness import BrokerCase
from test_workers import OK, Worker


def gid(m):
    """A received message's MessageGroupId ("" for none), from its SQS-shaped Attributes."""
    return m["Attributes"].get("MessageGroupId", "")


class FairGroups(BrokerCase):
    def send_lines(self, queue, group, bodies):
        self.b.ok("send", queue, "--lines", "--group", group,
                  input="".join(b + "\n" for b in bodies).encode())

    def receive(self, queue, n, *args):
        return self.b.json_lines("receive", queue, "--max", str(n), "--visibility-timeout",
                                 "600", *args)

    def test_a_quiet_tenant_is_served_before_a_noisy_tenants_backlog(self):
        self.b.ok("create-queue", "q")
        self.send_lines("q", "noisy", ["n%05d" % i for i in range(10000)])
        first = self.receive("q", 1)
        self.assertEqual(gid(first[0]), "noisy")
        self.b.ok("send", "q", "hello", "--group", "quiet")
        # a receive of one: the tenant served least recently (never) goes first
        got = self.receive("q", 1)
        self.assertEqual([(m["Body"], gid(m)) for m in got], [("hello", "quiet")])
        # a receive of ten: the quiet tenant's next message is among them
        self.b.ok("send", "q", "again", "--group", "quiet")
        got = self.receive("q", 10)
        self.assertEqual(len(got), 10)
        self.assertEqual([m["Body"] for m in got if gid(m) == "quiet"],
                         ["again"])

    def test_no_group_takes_more_than_its_share_of_a_receive(self):
        self.b.ok("create-queue", "s")
        for g in ("a", "b", "c"):
            self.send_lines("s", g, ["%s%d" % (g, i) for i in range(20)])
        self.b.ok("send", "s", "plain")  # no group: a group of its own
        got = self.receive("s", 10)
        self.assertEqual(len(got), 10)
        per = {}
        for m in got:
            per[gid(m)] = per.get(gid(m), 0) + 1
        self.assertEqual(per.get(""), 1)
        for g in ("a", "b", "c"):
            self.assertIn(per.get(g), (3,), per)  # 9 left for three groups: 3 each

    def test_a_worker_s_pushes_are_fair_too(self):
        self.b.ok("create-queue", "w")
        self.send_lines("w", "noisy", ["n%05d" % i for i in range(10000)])
        w = Worker(self.b.endpoint)
        try:
            self.assertEqual(w.open("w", 1)["st"], OK)
            self.assertTrue(w.wait_for(lambda: len(w.msgs()) == 1, 30, 300))
            self.assertEqual(w.msgs()[0][0].get("gid"), "noisy")
            self.b.ok("send", "w", "hello", "--group", "quiet")
            self.assertEqual(w.req({"op": 8, "q": "w", "rh": [w.msgs()[0][0]["rh"]]})["st"], OK)
            self.assertEqual(w.heartbeat(cr=1)["st"], OK)
            # the next push is the quiet tenant's message, not the noisy one's next
            self.assertTrue(w.wait_for(lambda: len(w.msgs()) == 2, 30, 300))
            meta, body = w.msgs()[1]
            self.assertEqual((body, meta.get("gid")), (b"hello", "quiet"))
        finally:
            w.close()

    def test_kill_9_keeps_the_groups_turns(self):
        self.b.ok("create-queue", "k")
        for g in ("a", "b", "c"):
            self.send_lines("k", g, ["%s%d" % (g, i) for i in range(5)])
        self.assertEqual(gid(self.receive("k", 1)[0]), "a")
        self.assertEqual(gid(self.receive("k", 1)[0]), "b")
        self.b.kill9()
        self.b.start()
        # c has waited longest: it goes next, then a and b again
        turns = [gid(self.receive("k", 1)[0]) for _ in range(3)]
        self.assertEqual(turns, ["c", "a", "b"])
        got = self.receive("k", 10)
        self.assertEqual(len(got), 10)  # 15 - 5 in flight; no group locked


if __name__ == "__main__":
    unittest.main()
