"""Bad input over the wire: every malformed request gets an error reply
with a stable code, changes nothing, and the broker keeps serving."""
import unittest

import msgpack
import zmq

from harness import Broker, dealer, request_frames

MALFORMED, UNKNOWN_OP, VERSION, INVALID_ARGUMENT, INVALID_NAME, NO_SUCH_QUEUE = 1, 2, 3, 4, 5, 6
TOO_LARGE, EMPTY_BODY, RECEIPT_INVALID = 8, 9, 10


class BadInput(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.b = Broker("--max-message-size", "4096").start()
        cls.b.ok("create-queue", "orders")
        cls.b.ok("send", "orders", "the only message")
        cls.ctx = zmq.Context()

    @classmethod
    def tearDownClass(cls):
        cls.ctx.destroy(linger=0)
        cls.b.cleanup()

    def setUp(self):
        self.s = dealer(self.ctx, self.b.endpoint)  # for pipelining and the oversized frame

    def tearDown(self):
        self.s.close()
        # Whatever happened, the broker is alive and its state unchanged.
        self.assertTrue(self.b.alive(), self.b.read_log())
        self.assertEqual(self.b.ok("list-queues").split(), ["orders"])
        self.assertEqual(self.b.counts("orders", ("visible", "in_flight")), (1, 0))

    def raw(self, *frames):
        reply = request_frames(self.b.endpoint, *frames)
        return msgpack.unpackb(reply[0]), reply[1:]

    def req(self, header, *bodies):
        return self.raw(msgpack.packb(header), *bodies)

    def expect(self, code, header_or_frames, *bodies):
        if isinstance(header_or_frames, dict):
            rep, _ = self.req(header_or_frames, *bodies)
        else:
            rep, _ = self.raw(*header_or_frames)
        self.assertEqual(rep["st"], code, rep)
        self.assertTrue(rep.get("err"), "an error reply carries a text")
        return rep

    def test_headers_that_are_not_msgpack_maps(self):
        for frame in [b"", b"garbage", b"\xc1", b"\xdf\xff\xff\xff\xff", b"\xdd\x7f\xff\xff\xff",
                      b"\x91" * 100 + b"\x01", msgpack.packb([1, 2, 3]), msgpack.packb("op"),
                      msgpack.packb({"op": 4, "id": 1}) + b"\x00"]:
            rep = self.expect(MALFORMED, [frame])
            self.assertEqual(rep["id"], 0)

    def test_unknown_op_and_version(self):
        rep = self.expect(UNKNOWN_OP, {"op": 99, "id": 5})
        self.assertEqual(rep["id"], 5)
        self.expect(UNKNOWN_OP, {"op": 2**64 - 1, "id": 6})
        self.expect(VERSION, {"op": 1, "id": 7, "v": 2})
        rep, _ = self.req({"op": 1, "id": 8, "v": 1})
        self.assertEqual((rep["st"], rep["v"], rep["maxbody"]), (0, 1, 4096))

    def test_wrong_shapes_and_extra_fields(self):
        self.expect(MALFORMED, {"op": 4})  # no id
        self.expect(MALFORMED, {"op": 4, "id": -1})
        self.expect(MALFORMED, {"op": "4", "id": 1})
        self.expect(MALFORMED, {"op": 4, "id": 1, "extra": 1})
        self.expect(MALFORMED, {"op": 4, "id": 1, "q": "orders"})  # list takes no queue
        self.expect(INVALID_ARGUMENT, {"op": 7, "id": 1})  # receive needs a queue
        self.expect(INVALID_ARGUMENT, {"op": 7, "id": 1, "q": "orders", "max": 0})
        self.expect(INVALID_ARGUMENT, {"op": 7, "id": 1, "q": "orders", "max": 11})
        self.expect(INVALID_ARGUMENT, {"op": 7, "id": 1, "q": "orders", "vt": 43201})
        self.expect(INVALID_ARGUMENT, {"op": 7, "id": 1, "q": "orders", "vt": -(2**63)})
        self.expect(INVALID_ARGUMENT, {"op": 7, "id": 1, "q": "orders", "max": 2**64 - 1})
        self.expect(INVALID_ARGUMENT, {"op": 8, "id": 1, "q": "orders", "rh": []})
        self.expect(INVALID_ARGUMENT, {"op": 8, "id": 1, "q": "orders", "rh": ["x"] * 11})
        self.expect(INVALID_ARGUMENT, {"op": 8, "id": 1, "q": "orders", "rh": ["x" * 129]})

    def test_frame_counts(self):
        self.expect(MALFORMED, {"op": 6, "id": 1, "q": "orders"})  # send without a body
        self.expect(MALFORMED, {"op": 6, "id": 1, "q": "orders"}, *[b"x"] * 11)
        self.expect(MALFORMED, {"op": 4, "id": 1}, b"unexpected body")
        self.expect(MALFORMED, {"op": 7, "id": 1, "q": "orders"}, b"x")

    def test_invalid_names(self):
        for name in ["", "a b", "a" * 81, "../etc", "a/b", "a\x00b", "caf\u00e9", "a.b"]:
            self.expect(INVALID_NAME, {"op": 2, "id": 1, "q": name})
        self.expect(INVALID_ARGUMENT, {"op": 2, "id": 1, "q": 5})

    def test_bodies_empty_or_too_large(self):
        self.expect(EMPTY_BODY, {"op": 6, "id": 1, "q": "orders"}, b"")
        self.expect(EMPTY_BODY, {"op": 6, "id": 1, "q": "orders"}, b"ok", b"")
        self.expect(TOO_LARGE, {"op": 6, "id": 1, "q": "orders"}, b"x" * 4097)
        rep, _ = self.req({"op": 2, "id": 2, "q": "orders"})  # still fine
        self.assertEqual(rep["st"], 0)

    def test_frame_over_the_transport_limit_drops_only_that_peer(self):
        self.s.send_multipart([msgpack.packb({"op": 6, "id": 1, "q": "orders"}), b"x" * (3 * 4096 + 65536)])
        # libzmq closes this connection; the broker goes on serving everyone else.
        self.assertEqual(self.b.ok("list-queues").split(), ["orders"])

    def test_unknown_queue_and_bad_handles(self):
        self.expect(NO_SUCH_QUEUE, {"op": 6, "id": 1, "q": "nope"}, b"x")
        self.expect(NO_SUCH_QUEUE, {"op": 5, "id": 1, "q": "nope"})
        self.expect(NO_SUCH_QUEUE, {"op": 3, "id": 1, "q": "nope"})
        rep, _ = self.req({"op": 8, "id": 1, "q": "orders",
                           "rh": ["", "forged", "000000000000000100000009", "ffffffffffffffff00000001"]})
        self.assertEqual(rep["st"], 0)
        self.assertEqual(rep["res"], [RECEIPT_INVALID] * 4)

    def test_pipelined_requests_are_answered_by_id(self):
        for i in range(200):
            self.s.send_multipart([msgpack.packb({"op": 5, "id": 1000 + i, "q": "orders"})])
        ids = set()
        for _ in range(200):
            rep = msgpack.unpackb(self.s.recv_multipart()[0])
            self.assertEqual(rep["st"], 0)
            ids.add(rep["id"])
        self.assertEqual(ids, set(range(1000, 1200)))


if __name__ == "__main__":
    unittest.main()
