"""Durability of a single broker: kill -9 at any moment loses no acknowledged send, never
brings back an acknowledged delete, and keeps leases (issue 2, items 5 and 6)."""
import subprocess
import threading
import time
import unittest

import msgpack
import zmq

from harness import CLI, Broker


class Durability(unittest.TestCase):
    def setUp(self):
        self.b = Broker().start()

    def tearDown(self):
        self.b.cleanup()

    def test_kill9_during_a_stream_of_sends_loses_no_acknowledged_message(self):
        b = self.b
        b.ok("create-queue", "orders")
        lines = "".join("order-%05d\n" % i for i in range(4000)).encode()
        producer = subprocess.Popen([CLI, "--broker", b.endpoint, "--json", "send", "orders", "--lines"],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        acked = []
        ready = threading.Event()

        def read_acks():
            for line in producer.stdout:
                acked.append(line)
                if len(acked) >= 300:
                    ready.set()
            ready.set()

        reader = threading.Thread(target=read_acks)
        reader.start()
        feeder = threading.Thread(target=lambda: (producer.stdin.write(lines), producer.stdin.close()))
        feeder.start()
        self.assertTrue(ready.wait(60), "the producer got no acknowledgements")
        b.kill9()  # mid-stream: some sends are acknowledged, others in flight
        producer.wait(timeout=120)
        reader.join(timeout=60)
        feeder.join(timeout=60)
        import json
        acked_ids = [json.loads(l)["MessageId"] for l in acked]
        self.assertGreaterEqual(len(acked_ids), 300)

        b.start()
        received = b.drain("orders")
        ids = [m["MessageId"] for m in received]
        self.assertEqual(len(ids), len(set(ids)), "a message was delivered twice")
        missing = set(acked_ids) - set(ids)
        self.assertEqual(missing, set(), "%d acknowledged messages lost" % len(missing))
        # Bodies arrive intact.
        for m in received:
            self.assertRegex(m["Body"], r"^order-\d{5}$")

    def test_acknowledged_deletes_never_come_back_after_kill9(self):
        b = self.b
        b.ok("create-queue", "orders", "--visibility-timeout", "1")
        b.ok("send", "orders", "--lines", input="".join("m%d\n" % i for i in range(40)).encode())
        got = b.drain("orders", vt=1)
        self.assertEqual(len(got), 40)
        deleted = got[:20]
        for i in range(0, 20, 10):
            b.ok("delete", "orders", *[m["ReceiptHandle"] for m in deleted[i:i + 10]])
        b.kill9()
        b.start()
        # The 20 undeleted come back once their 1 s leases run out; the deleted never do.
        deleted_ids = {m["MessageId"] for m in deleted}
        seen = set()
        deadline = time.monotonic() + 60
        while len(seen) < 20 and time.monotonic() < deadline:
            for m in b.json_lines("receive", "orders", "--max", "10", "--visibility-timeout", "600"):
                self.assertNotIn(m["MessageId"], deleted_ids, "a deleted message came back")
                seen.add(m["MessageId"])
            time.sleep(0.05)
        self.assertEqual(seen, {m["MessageId"] for m in got[20:]})
        a = b.attributes("orders")
        self.assertEqual(a["ApproximateNumberOfMessages"] + a["ApproximateNumberOfMessagesNotVisible"], 20)

    def test_leases_survive_a_restart(self):
        """A lease is durable once its receive's entry is applied. A receive is answered
        before that (docs/ARCHITECTURE.md, "Receive"); a read of the queue after it waits
        for it, so the lease is durable once the read answered (test_early_receive.py
        kills the broker right after the receive instead)."""
        b = self.b
        b.ok("create-queue", "orders")
        b.ok("send", "orders", "one")
        [m] = b.json_lines("receive", "orders", "--visibility-timeout", "600")
        self.assertEqual(b.attributes("orders")["ApproximateNumberOfMessagesNotVisible"], 1)
        b.kill9()
        b.start()
        self.assertEqual(b.json_lines("receive", "orders"), [])
        a = b.attributes("orders")
        self.assertEqual((a["ApproximateNumberOfMessages"], a["ApproximateNumberOfMessagesNotVisible"]), (0, 1))
        b.ok("delete", "orders", m["ReceiptHandle"])
        a = b.attributes("orders")
        self.assertEqual((a["ApproximateNumberOfMessages"], a["ApproximateNumberOfMessagesNotVisible"]), (0, 0))

    def test_a_request_resent_with_its_key_after_a_restart_is_applied_once(self):
        """What a client does when a reply is lost (kill -9 after the commit, before the
        answer): it resends the request with the same key, and gets the first answer."""
        b = self.b
        b.ok("create-queue", "orders")
        ctx = zmq.Context()
        try:
            def call(header, *bodies):
                s = ctx.socket(zmq.DEALER)
                s.setsockopt(zmq.LINGER, 0)
                s.setsockopt(zmq.RCVTIMEO, 10000)
                s.connect(b.endpoint)
                s.send_multipart([msgpack.packb(header)] + list(bodies))
                reply = s.recv_multipart()
                s.close()
                rep = msgpack.unpackb(reply[0])
                self.assertEqual(rep["st"], 0, rep)
                return rep

            send = {"op": 6, "id": 1, "q": "orders", "rq": [77, 1]}
            ids = call(send, b"a", b"b")["ids"]
            b.kill9()
            b.start()
            self.assertEqual(call(send, b"a", b"b")["ids"], ids)
            receive = {"op": 7, "id": 2, "q": "orders", "max": 1, "vt": 600, "rq": [77, 2]}
            [first] = call(receive)["msgs"]
            b.attributes("orders")  # waits for the receive's entry (answered before it)
            b.kill9()
            b.start()
            [again] = call(receive)["msgs"]
            self.assertEqual(again, first)
            delete = {"op": 8, "id": 3, "q": "orders", "rh": [first["rh"]], "rq": [77, 3]}
            self.assertEqual(call(delete)["res"], [0])
            b.kill9()
            b.start()
            self.assertEqual(call(delete)["res"], [0])  # not RECEIPT_INVALID
            a = b.attributes("orders")
            # One of two messages stored once, leased once, deleted: the other is visible.
            self.assertEqual((a["ApproximateNumberOfMessages"], a["ApproximateNumberOfMessagesNotVisible"]), (1, 0))
        finally:
            ctx.destroy(linger=0)

    def test_sigterm_stops_cleanly_and_state_persists(self):
        b = self.b
        b.ok("create-queue", "orders")
        b.ok("create-queue", "billing", "--visibility-timeout", "45")
        b.ok("send", "orders", "kept")
        self.assertEqual(b.stop(), 0)
        b.start()
        self.assertEqual(b.ok("list-queues").split(), ["billing", "orders"])
        self.assertEqual(b.attributes("billing")["VisibilityTimeout"], 45)
        [m] = b.json_lines("receive", "orders")
        self.assertEqual(m["Body"], "kept")

    def test_sigterm_always_stops_the_broker(self):
        # The signal may land on any of the broker's threads (RocksDB's, libzmq's): the event
        # loop must notice it all the same.
        b = self.b
        b.ok("create-queue", "orders")
        for i in range(15):
            b.ok("send", "orders", "m%d" % i)
            self.assertEqual(b.stop(), 0, "cycle %d" % i)
            b.start()
        self.assertEqual(b.attributes("orders")["ApproximateNumberOfMessages"], 15)

    def test_deleted_queue_stays_deleted_after_kill9(self):
        b = self.b
        b.ok("create-queue", "orders")
        b.ok("send", "orders", "old")
        b.ok("delete-queue", "orders")
        b.kill9()
        b.start()
        self.assertEqual(b.ok("list-queues").split(), [])
        b.ok("create-queue", "orders")
        self.assertEqual(b.json_lines("receive", "orders"), [])


if __name__ == "__main__":
    unittest.main()
