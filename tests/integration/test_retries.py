"""Retried writes over the raw protocol (proto/PROTOCOL.md, field rq): a request resent with
its request key is answered as its first attempt was."""
import unittest

import msgpack
import zmq

from harness import Broker

OK = 0


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


if __name__ == "__main__":
    unittest.main()
