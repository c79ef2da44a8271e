"""Bounded receives and members-only snapshots on a three-node cluster (issue 11, 3e).

ZMQ_MAXMSGSIZE bounds each frame of a ZeroMQ message, not how many frames it has: a message
of thousands of frames sent to the client port or the raft port is received frame by frame up
to the port's bound and the rest drained and dropped; a client gets TOO_LARGE with its
request id. A snapshot FETCH is served only to a member of the cluster. After each, the
cluster still serves. Raw frames come from python3-zmq; every wait is bounded."""
import unittest

import msgpack
import zmq

import test_cluster

SEND, CLUSTER_STATUS = 6, 10
TOO_LARGE = 8
SNAP_FORMAT, SNAP_FETCH, SNAP_MANIFEST = 2, 1, 2
FRAMES = 5000


class FrameBounds(test_cluster.Cluster):
    def setUp(self):
        super().setUp()
        self.ctx = zmq.Context()
        self.lead = self.leader()
        self.ok("create-queue", "orders")

    def tearDown(self):
        self.ctx.destroy(linger=0)
        try:
            # Whatever was sent, every node is alive and the cluster still takes writes.
            for n in self.nodes:
                self.assertIsNone(n.proc.poll(), "node %d exited\n%s" % (n.id, self.logs()))
            self.ok("send", "orders", "still serving")
            self.assertEqual([m["Body"] for m in self.drain("orders")], ["still serving"])
        finally:
            super().tearDown()

    def dealer(self, endpoint):
        s = self.ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.RCVTIMEO, 20000)
        s.connect(endpoint)
        return s

    def raft_endpoint(self, node):
        st = next(s for s in self.status() if s["endpoint"] == node.client)
        addr = st["raft_address"]
        return addr if "://" in addr else "tcp://" + addr

    def fetch(self, sender, to):
        return msgpack.packb([SNAP_FORMAT, SNAP_FETCH, sender, to, 0, 0, 0, 0, None])

    def test_a_request_of_thousands_of_frames_gets_too_large_with_its_id(self):
        s = self.dealer(self.lead.client)
        header = msgpack.packb({"op": SEND, "id": 77, "q": "orders"})
        s.send_multipart([header] + [b"x"] * FRAMES)
        rep = msgpack.unpackb(s.recv_multipart()[0])
        self.assertEqual((rep["st"], rep["id"]), (TOO_LARGE, 77), rep)
        self.assertTrue(rep.get("err"))
        # An unreadable header: still TOO_LARGE, with id 0.
        s.send_multipart([b"\xc1garbage"] + [b""] * FRAMES)
        rep = msgpack.unpackb(s.recv_multipart()[0])
        self.assertEqual((rep["st"], rep["id"]), (TOO_LARGE, 0), rep)
        # The next request on the same connection is served normally.
        s.send_multipart([msgpack.packb({"op": CLUSTER_STATUS, "id": 78})])
        rep = msgpack.unpackb(s.recv_multipart()[0])
        self.assertEqual((rep["st"], rep["id"]), (0, 78), rep)
        s.close()

    def test_a_peer_message_of_thousands_of_frames_is_dropped(self):
        follower = next(n for n in self.nodes if n is not self.lead)
        member = next(n for n in self.nodes if n is not follower)
        s = self.dealer(self.raft_endpoint(follower))
        s.send_multipart([self.fetch(member.id, follower.id)] + [b"y"] * FRAMES)
        # A well-formed fetch right after it is answered, and only it: the oversized one was
        # dropped whole (its first frame was a valid fetch too).
        s.send(self.fetch(member.id, follower.id))
        rep = msgpack.unpackb(s.recv())
        self.assertEqual(rep[:4], [SNAP_FORMAT, SNAP_MANIFEST, follower.id, member.id], rep)
        s.setsockopt(zmq.RCVTIMEO, 0)
        with self.assertRaises(zmq.Again):
            s.recv()
        s.close()
        self.wait_caught_up(follower)

    def test_a_snapshot_fetch_from_a_non_member_is_refused(self):
        node = self.lead
        member = next(n for n in self.nodes if n is not node)
        s = self.dealer(self.raft_endpoint(node))
        s.send(self.fetch(99, node.id))  # node 99 is not in the cluster
        s.send(self.fetch(member.id, node.id))
        # Answers come in order on one connection: the first answer is the member's.
        rep = msgpack.unpackb(s.recv())
        self.assertEqual(rep[:4], [SNAP_FORMAT, SNAP_MANIFEST, node.id, member.id], rep)
        s.setsockopt(zmq.RCVTIMEO, 0)
        with self.assertRaises(zmq.Again):
            s.recv()
        s.close()


def load_tests(loader, tests, pattern):
    # Only this file's tests: the base class's run in test_cluster.py.
    return unittest.TestSuite(
        [FrameBounds(name) for name in loader.getTestCaseNames(FrameBounds)
         if name in FrameBounds.__dict__])


if __name__ == "__main__":
    unittest.main()
