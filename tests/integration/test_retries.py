"""Retries and receipt handles over the raw protocol: a request resent with its request key
(proto/PROTOCOL.md, field rq) is answered as its first attempt was; a receipt handle cannot be
made by anyone but the broker, and stays valid across a restart."""
import unittest

import msgpack
import zmq

from harness import Broker

OK, RECEIPT_INVALID = 0, 10


class Retries(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.b = Broker().start()
        cls.ctx = zmq.Context()

    @classmethod
    def tearDownClass(cls):
        cls.ctx.destroy(linger=0)
        cls.b.cleanup()

    def setUp(self):
        self.s = self.ctx.socket(zmq.DEALER)
        self.s.setsockopt(zmq.LINGER, 0)
        self.s.setsockopt(zmq.RCVTIMEO, 10000)
        self.s.connect(self.b.endpoint)

    def tearDown(self):
        self.s.close()

    def req(self, header, *bodies):
        self.s.send_multipart([msgpack.packb(header), *bodies])
        reply = self.s.recv_multipart()
        return msgpack.unpackb(reply[0]), reply[1:]

    def test_retried_receive_gets_the_leases_of_its_first_attempt(self):
        # The first attempt leases the only message: the queue then has nothing visible, and
        # the retry (same key, as after a lost reply) must still get that message and handle.
        self.b.ok("create-queue", "only")
        self.b.ok("send", "only", "the only message")
        receive = {"op": 7, "id": 1, "q": "only", "max": 10, "vt": 600, "rq": [77, 1]}
        first, first_bodies = self.req(receive)
        self.assertEqual(first["st"], OK, first)
        self.assertEqual(len(first["msgs"]), 1, first)
        self.assertEqual(first_bodies, [b"the only message"])
        receive["id"] = 2
        again, again_bodies = self.req(receive)
        self.assertEqual(again["st"], OK, again)
        self.assertEqual(len(again.get("msgs", [])), 1,
                         "the retry got %r, expected the first attempt's message" % again)
        self.assertEqual(again["msgs"][0]["mid"], first["msgs"][0]["mid"])
        self.assertEqual(again["msgs"][0]["rh"], first["msgs"][0]["rh"])
        self.assertEqual(again_bodies, first_bodies)
        # A new key on the empty queue is still answered empty, and leases nothing.
        receive.update(id=3, rq=[77, 2])
        other, bodies = self.req(receive)
        self.assertEqual((other["st"], other.get("msgs", []), bodies), (OK, [], []))
        a = self.b.attributes("only")
        self.assertEqual(a["ApproximateNumberOfMessagesNotVisible"], 1)

    def test_a_handle_guessed_by_counting_deletes_nothing(self):
        self.b.ok("create-queue", "counted")
        self.b.ok("send", "counted", "a")
        self.b.ok("send", "counted", "b")
        receive = {"op": 7, "id": 1, "q": "counted", "vt": 600}
        mine, _ = self.req(receive)
        theirs, _ = self.req(dict(receive, id=2))
        h = mine["msgs"][0]["rh"]
        self.assertEqual(len(h), 56, h)
        # The other consumer's handle, guessed: the sequence number (first 16 hex digits) + 1.
        guess = "%016x" % (int(h[:16], 16) + 1) + h[16:]
        self.assertNotEqual(guess, theirs["msgs"][0]["rh"])
        rep, _ = self.req({"op": 8, "id": 3, "q": "counted", "rh": [guess, h[:24]]})
        self.assertEqual((rep["st"], rep["res"]), (OK, [RECEIPT_INVALID, RECEIPT_INVALID]), rep)
        a = self.b.attributes("counted")
        self.assertEqual(a["ApproximateNumberOfMessagesNotVisible"], 2)
        # The handle key is replicated state: after a restart the real handles still delete.
        self.s.close()
        self.b.stop()
        self.b.start()
        self.setUp()
        rep, _ = self.req({"op": 8, "id": 4, "q": "counted", "rh": [h, theirs["msgs"][0]["rh"]]})
        self.assertEqual((rep["st"], rep["res"]), (OK, [OK, OK]), rep)


if __name__ == "__main__":
    unittest.main()
