"""Membership changes (issue 4, item 5) on real brokers on 127.0.0.1: a fourth node started
with --join is added with `kyu cluster add`, catches up and becomes a voter; a follower and
then the leader are removed with `kyu cluster remove` (leadership moves, sends keep working);
every acknowledged message is received exactly once. Bad input changes nothing, and a second
change while one runs is BUSY.
Every wait is bounded by a deadline; processes are stopped by their PID only."""
import json
import subprocess
import time
import unittest

from harness import CLI, Members, Node, free_port


class Membership(Members, unittest.TestCase):
    def send(self, prefix, count, nodes=None):
        out = self.ok("--json", "send", "orders", "--lines", nodes=nodes,
                      input="".join("%s-%05d\n" % (prefix, i) for i in range(count)).encode())
        ids = [json.loads(l)["MessageId"] for l in out.splitlines() if l]
        self.assertEqual(len(ids), count)
        return ids

    def drain(self, nodes):
        got = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            out = self.ok("--json", "receive", "orders", "--max", "10", "--visibility-timeout",
                          "600", nodes=nodes)
            batch = [json.loads(l) for l in out.splitlines() if l]
            if not batch:
                return got
            got.extend(batch)
        raise AssertionError("queue did not drain within 120 s")

    def test_add_a_joining_node_then_remove_a_follower_and_the_leader(self):
        self.make_cluster(3)
        self.leader()
        self.ok("create-queue", "orders", "--visibility-timeout", "600")
        acked = self.send("before", 300)

        # A fourth node joins: it knows itself and the members, and waits to be added.
        fourth = Node(4, "127.0.0.1:%d" % free_port(), "tcp://127.0.0.1:%d" % free_port(), self.data)
        fourth.start(self.nodes + [fourth], "--join")
        self.nodes.append(fourth)
        # It does not bootstrap a cluster of its own: it answers, but is no member yet.
        self.wait_for("node 4 answers",
                      lambda: self.status([fourth])[fourth.client]["role"] != "unreachable", 30)
        st = self.status([fourth])[fourth.client]
        self.assertEqual((st["role"], st["membership"], st["voters"]), ("follower", "none", []))
        self.ok("cluster", "add", fourth.spec(), nodes=self.nodes[:3])

        def fourth_caught_up():
            st = self.status()
            lead = [s for s in st.values() if s["role"] == "leader"]
            me = st.get(fourth.client, {})
            return (lead and me.get("membership") == "voter"
                    and me.get("applied_index", 0) >= lead[0]["commit_index"]
                    and 4 in lead[0]["voters"])
        self.wait_for("node 4 a voter that caught up", fourth_caught_up)
        leader = self.leader()
        self.assertEqual(sorted(self.status()[leader.client]["voters"]), [1, 2, 3, 4])
        acked += self.send("after-add", 300)

        # The new node restarts from its data directory (still with --join: it does not
        # bootstrap); an original follower restarts with the original --peer list, without
        # node 4: the replicated address book tells it where node 4 is.
        fourth.stop()
        fourth.start(self.nodes, "--join")
        keeper = next(n for n in self.nodes[:3] if n is not leader)
        keeper.stop()
        keeper.start(self.nodes[:3])
        self.wait_for("nodes 4 and %d caught up" % keeper.id, fourth_caught_up)
        self.wait_for("node %d caught up" % keeper.id,
                      lambda: self.status([keeper])[keeper.client].get("applied_index", 0) >=
                      self.status([leader])[leader.client]["commit_index"])

        # Remove a follower (not the new node): the others go on without it.
        follower = next(n for n in self.nodes if n not in (leader, fourth, keeper))
        self.remove_member(follower.id)
        rest = [n for n in self.nodes if n is not follower]
        self.wait_for("voters without node %d" % follower.id,
                      lambda: sorted(self.status([leader])[leader.client]["voters"]) ==
                      sorted(n.id for n in rest))
        self.assert_out_for_good(follower)
        follower.stop()
        acked += self.send("after-remove-follower", 300, nodes=rest)

        # Remove the leader: it hands leadership over first; sends keep working.
        self.remove_member(leader.id, nodes=rest)
        rest = [n for n in rest if n is not leader]
        new_leader = self.leader(rest)
        self.assertIsNot(new_leader, leader)
        self.wait_for("voters without node %d" % leader.id,
                      lambda: sorted(self.status([new_leader])[new_leader.client]["voters"]) ==
                      sorted(n.id for n in rest))
        # The removed leader no longer leads and does not campaign its way back.
        self.assert_out_for_good(leader)
        acked += self.send("after-remove-leader", 300, nodes=rest)
        leader.stop()

        # Two voters left, the keeper and node 4: the keeper leads, and can only commit with
        # node 4, whose address it has from the book alone.
        if self.leader(rest) is not keeper:
            self.ok("cluster", "transfer", str(keeper.id), nodes=rest)
        self.wait_for("node %d leads" % keeper.id, lambda: self.leader(rest) is keeper)
        acked += self.send("keeper-leads", 100, nodes=rest)

        received = self.drain(rest)
        ids = [m["MessageId"] for m in received]
        self.assertEqual(set(acked) - set(ids), set(), "acknowledged messages lost")
        self.assertEqual(len(ids), len(set(ids)), "a message was delivered twice")
        self.assertEqual(len(ids), len(acked), "every acknowledged message exactly once")

    def test_a_node_added_after_compaction_gets_a_snapshot_with_the_address_book(self):
        self.make_cluster(3, env={"KYU_LOG_WINDOW": "20"})
        self.leader()
        self.ok("create-queue", "orders", "--visibility-timeout", "600")
        acked = []
        for i in range(40):  # one entry each: the log is compacted past index 1
            acked += self.send("m%d" % i, 5)
        fourth = Node(4, "127.0.0.1:%d" % free_port(), "tcp://127.0.0.1:%d" % free_port(), self.data,
                      {"KYU_LOG_WINDOW": "20"})
        fourth.start(self.nodes + [fourth], "--join")
        self.nodes.append(fourth)
        self.ok("cluster", "add", fourth.spec(), nodes=self.nodes[:3])
        self.assertIn("installed a snapshot", fourth.read_log())
        # A fifth node knows only itself and node 4; the book in node 4's snapshot names the
        # rest, and every node learns node 5's address from the log.
        self.ok("cluster", "transfer", "4")
        self.wait_for("node 4 leads", lambda: self.leader() is fourth)
        fifth = Node(5, "127.0.0.1:%d" % free_port(), "tcp://127.0.0.1:%d" % free_port(), self.data)
        fifth.start([fourth, fifth], "--join")
        self.nodes.append(fifth)
        self.ok("cluster", "add", fifth.spec())
        acked += self.send("after", 50)
        self.ok("cluster", "transfer", "5")
        self.wait_for("node 5 leads", lambda: self.leader() is fifth)
        self.assertEqual(sorted(self.status([fifth])[fifth.client]["voters"]), [1, 2, 3, 4, 5])
        ids = [m["MessageId"] for m in self.drain(self.nodes)]
        self.assertEqual(sorted(ids), sorted(acked), "every acknowledged message exactly once")

    def test_bad_changes_are_refused_and_change_nothing_and_a_second_change_is_busy(self):
        self.make_cluster(3, env={"KYU_MEMBERSHIP_TIMEOUT_MS": "4000"})
        leader = self.leader()
        before = self.status()[leader.client]["voters"]
        usage = [
            ["cluster", "add"],
            ["cluster", "add", "0,127.0.0.1:1,tcp://127.0.0.1:2"],
            ["cluster", "add", "x,127.0.0.1:1,tcp://127.0.0.1:2"],
            ["cluster", "add", "5,127.0.0.1,tcp://127.0.0.1:2"],
            ["cluster", "add", "5,127.0.0.1:1"],
            ["cluster", "add", "5,127.0.0.1:1,tcp://a:2,extra"],
            ["cluster", "add", "5," + "h" * 300 + ":1,tcp://127.0.0.1:2"],
            ["cluster", "remove"],
            ["cluster", "remove", "0"],
            ["cluster", "remove", "-1"],
            ["cluster", "remove", "99999999999999999999"],
        ]
        for args in usage:
            r = self.cli(*args)
            self.assertEqual(r.returncode, 2, "%s: %s" % (args, r.stderr.decode()))
        refused = [
            (["cluster", "add", "5,127.0.0.1:99999,tcp://127.0.0.1:2"], "bad peer"),
            (["cluster", "add", "5,127.0.0.1:x1,tcp://127.0.0.1:2"], "bad peer"),
            (["cluster", "add", "5,127.0.0.1:1,nowhere"], "bad peer"),
            (["cluster", "add", "2,127.0.0.1:1,tcp://127.0.0.1:2"], "already a voter"),
            (["cluster", "add", "5,%s,tcp://127.0.0.1:2" % self.nodes[1].raft], "already uses"),
            (["cluster", "remove", "99"], "not a member"),
        ]
        for args, text in refused:
            r = self.cli(*args)
            self.assertEqual(r.returncode, 1, "%s: %s" % (args, r.stderr.decode()))
            self.assertIn(text, r.stderr.decode())
        self.assertEqual(self.status()[leader.client]["voters"], before)

        # Node 5 is never started: its add times out (it stays a learner) and, while it runs,
        # a second change is BUSY.
        spec5 = "5,127.0.0.1:%d,tcp://127.0.0.1:%d" % (free_port(), free_port())
        first = subprocess.Popen([CLI, "--broker", self.endpoints(), "cluster", "add", spec5],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.wait_for("node 5 a learner",
                      lambda: 5 in self.status([leader])[leader.client]["learners"], 30)
        r = self.cli("cluster", "remove", "2")
        self.assertEqual(r.returncode, 1)
        self.assertIn("BUSY", r.stderr.decode())
        _, err = first.communicate(timeout=60)
        self.assertEqual(first.returncode, 1)
        self.assertIn("not done within", err.decode())
        self.assertIn("learner", err.decode())
        self.assertEqual(self.status()[leader.client]["voters"], before)
        # The learner is removed like any member.
        self.ok("cluster", "remove", "5")
        self.wait_for("no learners", lambda: self.status([leader])[leader.client]["learners"] == [])

    def test_a_retried_add_or_remove_succeeds_and_another_address_is_refused(self):
        # A client that timed out or met a leader change asks again (libkyu retries too):
        # the same change, already done, is its own success.
        self.make_cluster(3)
        self.leader()
        fourth = Node(4, "127.0.0.1:%d" % free_port(), "tcp://127.0.0.1:%d" % free_port(), self.data)
        fourth.start(self.nodes + [fourth], "--join")
        self.nodes.append(fourth)
        self.ok("cluster", "add", fourth.spec(), nodes=self.nodes[:3])
        self.ok("cluster", "add", fourth.spec(), nodes=self.nodes[:3])
        other = "4,127.0.0.1:%d,%s" % (free_port(), fourth.client)
        r = self.cli("cluster", "add", other, nodes=self.nodes[:3])
        self.assertEqual(r.returncode, 1, r.stderr.decode())
        self.assertIn("already a voter", r.stderr.decode())
        self.ok("cluster", "remove", "4", nodes=self.nodes[:3])
        self.ok("cluster", "remove", "4", nodes=self.nodes[:3])
        r = self.cli("cluster", "remove", "99", nodes=self.nodes[:3])
        self.assertEqual(r.returncode, 1, r.stderr.decode())
        self.assertIn("not a member", r.stderr.decode())
        leader = self.leader(self.nodes[:3])
        self.assertEqual(sorted(self.status([leader])[leader.client]["voters"]), [1, 2, 3])

    def test_the_last_voter_cannot_be_removed(self):
        self.make_cluster(1)
        self.leader()
        r = self.cli("cluster", "remove", "1")
        self.assertEqual(r.returncode, 1)
        self.assertIn("last voter", r.stderr.decode())
        self.ok("create-queue", "orders")


if __name__ == "__main__":
    unittest.main()
