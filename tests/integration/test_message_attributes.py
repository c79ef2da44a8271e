"""Message attributes, MD5s, system attributes and send batches (issue 13, item 2): `kyu send --attr
NAME=TYPE:VALUE` (String, Number, Binary in base64, custom type suffixes), returned by
`kyu receive` and `kyu --json receive` as SQS shows them, kept across a kill -9 and a clean
restart; MD5OfMessageBody and MD5OfMessageAttributes as SQS computes them (AWS's documented
vectors, and hashlib over SQS's encoding here); bad attributes refused by the CLI and, in raw
frames, by the broker, changing nothing. Send batches (`kyu send-batch`, SEND with entry ids):
a bad entry fails alone with its code, the others are sent; a retry with the same request key
answers every entry as the first attempt did, across a restart and a leader failover on
three nodes (attributes too)."""
import base64
import hashlib
import json
import struct
import time
import unittest

import msgpack

import test_cluster
from harness import BrokerCase, request

OK = 0
MALFORMED = 1
INVALID_ARGUMENT = 4
TOO_LARGE = 8
OP_SEND = 6
OP_RECEIVE = 7


def md5_of_attributes(attrs):
    """SQS's MD5OfMessageAttributes, computed independently of kyu: attrs is
    {name: (type, value)} with bytes values for Binary types, str otherwise."""
    buf = b""
    for name in sorted(attrs, key=lambda n: n.encode()):
        typ, value = attrs[name]
        raw = value if isinstance(value, bytes) else value.encode()
        buf += struct.pack(">I", len(name.encode())) + name.encode()
        buf += struct.pack(">I", len(typ.encode())) + typ.encode()
        buf += bytes([2 if typ.startswith("Binary") else 1])
        buf += struct.pack(">I", len(raw)) + raw
    return hashlib.md5(buf).hexdigest()


class MessageAttributes(BrokerCase):
    queues = ("jobs",)

    def raw_send(self, attrs_per_body, *bodies):
        return self.raw({"op": OP_SEND, "q": "jobs", "ma": attrs_per_body}, *bodies)

    def count(self):
        a = self.b.attributes("jobs")
        return a["ApproximateNumberOfMessages"] + a["ApproximateNumberOfMessagesDelayed"]

    def test_pipelined_sends_each_get_their_bodies_md5(self):
        """Many SENDs in flight at once, of bodies of every length around MD5's block and
        padding edges, one to three bodies each: every reply carries each of its bodies' own
        MD5OfMessageBody, in order (requests received together are handled together)."""
        import zmq
        from harness import dealer
        lengths = [1, 2, 55, 56, 57, 63, 64, 65, 119, 120, 128, 1000, 1024, 1025, 4096, 9000]
        reqs = []
        for i in range(60):
            n = 1 + i % 3
            reqs.append([(b"%d-%d." % (i, j)) * 4000 for j in range(n)])
            reqs[-1] = [b[: lengths[(i * 3 + j) % len(lengths)]] for j, b in enumerate(reqs[-1])]
        ctx = zmq.Context()
        s = dealer(ctx, self.b.endpoint, 20000)
        try:
            for i, bodies in enumerate(reqs):  # all sent before any reply is read
                s.send_multipart([msgpack.packb({"op": OP_SEND, "id": 100 + i, "q": "jobs"})]
                                 + bodies)
            got = {}
            for _ in reqs:
                rep = msgpack.unpackb(s.recv_multipart()[0])
                self.assertEqual(rep["st"], OK, rep)
                got[rep["id"]] = rep["mdb"]
        finally:
            s.close()
            ctx.destroy(linger=0)
        for i, bodies in enumerate(reqs):
            self.assertEqual(got[100 + i], [hashlib.md5(b).hexdigest() for b in bodies],
                             "request %d" % i)
        self.assertEqual(self.count(), sum(len(b) for b in reqs))

    def test_aws_documented_md5_vectors(self):
        """The values of REFERENCE.md (AWS's own examples), through the CLI."""
        cases = [
            (["attribName1=String:attribValue 1"], "19e27d4e946b072f3f58da80d94fd778"),
            (["customNumberTypeAttrib=Number.float:4563442423554324324264524243.32543234"],
             "9fe1b90bbd9965bdf77bac517c7d2495"),
            (["binaryAttribute=Binary:" + base64.b64encode(b"Hello binary world!").decode()],
             "31a92b15d92f8db860eda32aceb656c3"),
        ]
        everything = []
        for attrs, expected in cases:
            everything += attrs
            args = ["send", "jobs", "hello"]
            for a in attrs:
                args += ["--attr", a]
            sent = self.b.json_lines(*args)[0]
            self.assertEqual(sent["MD5OfMessageAttributes"], expected, attrs)
            self.assertEqual(sent["MD5OfMessageBody"], "5d41402abc4b2a76b9719d911017c592")
        args = ["send", "jobs", "hello"]
        for a in reversed(everything):  # the order given does not matter
            args += ["--attr", a]
        self.assertEqual(self.b.json_lines(*args)[0]["MD5OfMessageAttributes"],
                         "c932db14a896c663f83c260297d594ff")
        got = self.b.json_lines("receive", "jobs", "--max", "10")
        self.assertEqual([m["MD5OfMessageAttributes"] for m in got],
                         ["19e27d4e946b072f3f58da80d94fd778", "9fe1b90bbd9965bdf77bac517c7d2495",
                          "31a92b15d92f8db860eda32aceb656c3", "c932db14a896c663f83c260297d594ff"])
        self.assertTrue(all(m["MD5OfBody"] == "5d41402abc4b2a76b9719d911017c592" for m in got))

    def test_receive_returns_the_attributes_as_sqs_shows_them(self):
        blob = bytes(range(256))
        sent = self.b.json_lines("send", "jobs", "body text",
                                 "--attr", "color=String:deep blue",
                                 "--attr", "weight=Number:-12.5e3",
                                 "--attr", "blob=Binary." + "raw:" + base64.b64encode(blob).decode(),
                                 "--attr", "a.b-c_d=String.custom:x:y=z")[0]
        expected = {"color": ("String", "deep blue"), "weight": ("Number", "-12.5e3"),
                    "blob": ("Binary.raw", blob), "a.b-c_d": ("String.custom", "x:y=z")}
        self.assertEqual(sent["MD5OfMessageAttributes"], md5_of_attributes(expected))
        self.assertEqual(sent["MD5OfMessageBody"], hashlib.md5(b"body text").hexdigest())
        m = self.b.json_lines("receive", "jobs")[0]
        self.assertEqual(m["MessageId"], sent["MessageId"])
        self.assertEqual(m["MessageAttributes"], {
            "color": {"DataType": "String", "StringValue": "deep blue"},
            "weight": {"DataType": "Number", "StringValue": "-12.5e3"},
            "blob": {"DataType": "Binary.raw", "BinaryValue": base64.b64encode(blob).decode()},
            "a.b-c_d": {"DataType": "String.custom", "StringValue": "x:y=z"},
        })
        self.assertEqual(m["MD5OfMessageAttributes"], sent["MD5OfMessageAttributes"])
        self.assertEqual(m["MD5OfBody"], sent["MD5OfMessageBody"])
        # System attributes beside them (SQS's strings, epoch ms).
        sysattrs = m["Attributes"]
        self.assertEqual(sysattrs["ApproximateReceiveCount"], "1")
        self.assertGreater(int(sysattrs["SentTimestamp"]), 1600000000000)
        self.assertGreaterEqual(int(sysattrs["ApproximateFirstReceiveTimestamp"]),
                                int(sysattrs["SentTimestamp"]))

    def test_system_attributes_follow_the_receives(self):
        """ApproximateReceiveCount counts every receive, this one included; SentTimestamp and
        ApproximateFirstReceiveTimestamp stay what the first send and receive set, also
        across a restart."""
        before = int(time.time() * 1000)
        self.b.ok("send", "jobs", "again", "--attr", "k=String:v")
        first = self.b.json_lines("receive", "jobs", "--visibility-timeout", "0")[0]
        a1 = first["Attributes"]
        self.assertEqual(a1["ApproximateReceiveCount"], "1")
        self.assertGreaterEqual(int(a1["SentTimestamp"]), before - 60000)  # the broker's clock
        self.assertGreaterEqual(int(a1["ApproximateFirstReceiveTimestamp"]),
                                int(a1["SentTimestamp"]))
        second = self.b.json_lines("receive", "jobs", "--visibility-timeout", "0")[0]
        self.assertEqual(second["MessageId"], first["MessageId"])
        self.assertEqual(second["Attributes"]["ApproximateReceiveCount"], "2")
        self.assertEqual(second["Attributes"]["SentTimestamp"], a1["SentTimestamp"])
        self.assertEqual(second["Attributes"]["ApproximateFirstReceiveTimestamp"],
                         a1["ApproximateFirstReceiveTimestamp"])
        self.assertNotEqual(second["ReceiptHandle"], first["ReceiptHandle"])
        self.assertEqual(second["MessageAttributes"], first["MessageAttributes"])
        self.assertEqual(self.b.stop(), 0)
        self.b.start()
        third = self.b.json_lines("receive", "jobs")[0]
        self.assertEqual(third["Attributes"]["ApproximateReceiveCount"], "3")
        self.assertEqual(third["Attributes"]["SentTimestamp"], a1["SentTimestamp"])
        self.assertEqual(third["Attributes"]["ApproximateFirstReceiveTimestamp"],
                         a1["ApproximateFirstReceiveTimestamp"])

    def test_plain_receive_prints_attributes_and_digests(self):
        self.b.ok("send", "jobs", "hi", "--attr", "k=String:v", "--attr", "b=Binary:AAE=")
        out = self.b.ok("receive", "jobs")
        self.assertIn("MessageAttribute b Binary AAE=\n", out)
        self.assertIn("MessageAttribute k String v\n", out)
        self.assertIn("MD5OfBody %s\n" % hashlib.md5(b"hi").hexdigest(), out)
        self.assertIn("MD5OfMessageAttributes %s\n" % md5_of_attributes(
            {"k": ("String", "v"), "b": ("Binary", b"\x00\x01")}), out)

    def test_a_message_without_attributes_has_none(self):
        sent = self.b.json_lines("send", "jobs", "plain")[0]
        self.assertNotIn("MD5OfMessageAttributes", sent)
        m = self.b.json_lines("receive", "jobs")[0]
        self.assertNotIn("MessageAttributes", m)
        self.assertNotIn("MD5OfMessageAttributes", m)
        self.assertEqual(m["MD5OfBody"], hashlib.md5(b"plain").hexdigest())

    def test_send_lines_carries_the_attributes_on_every_line(self):
        out = self.b.json_lines("send", "jobs", "--lines", "--attr", "n=Number:7",
                                input=b"one\ntwo\n")
        self.assertEqual(len(out), 2)
        got = self.b.json_lines("receive", "jobs", "--max", "10")
        self.assertEqual(sorted(m["Body"] for m in got), ["one", "two"])
        for m in got:
            self.assertEqual(m["MessageAttributes"], {"n": {"DataType": "Number",
                                                            "StringValue": "7"}})

    def test_attributes_survive_kill9_and_restart(self):
        self.b.ok("send", "jobs", "kept", "--attr", "trace=String:abc",
                  "--attr", "bin=Binary:" + base64.b64encode(b"\xff\x00").decode())
        self.b.kill9()
        self.b.start()
        self.b.ok("send", "jobs", "second", "--attr", "x=Number:1")
        self.assertEqual(self.b.stop(), 0)
        self.b.start()
        got = self.b.json_lines("receive", "jobs", "--max", "10")
        self.assertEqual([m["Body"] for m in got], ["kept", "second"])
        self.assertEqual(got[0]["MessageAttributes"]["trace"]["StringValue"], "abc")
        self.assertEqual(got[0]["MessageAttributes"]["bin"]["BinaryValue"],
                         base64.b64encode(b"\xff\x00").decode())
        self.assertEqual(got[0]["MD5OfMessageAttributes"], md5_of_attributes(
            {"trace": ("String", "abc"), "bin": ("Binary", b"\xff\x00")}))
        self.assertEqual(got[1]["MessageAttributes"], {"x": {"DataType": "Number",
                                                             "StringValue": "1"}})

    def test_cli_refuses_bad_attributes(self):
        cases = [
            ("nameonly", "NAME=TYPE:VALUE"),
            ("AWS.trace=String:x", "reserved"),
            ("amazon.x=String:x", "reserved"),
            ("a..b=String:x", "'..'"),
            (".a=String:x", "'.'"),
            ("a b=String:x", "character"),
            ("k=Text:x", "DataType"),
            ("k=String.:x", "DataType"),
            ("k=Number:12abc", "Number value"),
            ("k=Number:nan", "Number value"),
            ("k=Number:1e200", "Number value"),
            ("k=String:", "empty value"),
            ("k=Binary:not base64!", "base64"),
            ("%s=String:x" % ("n" * 257), "1 to 256"),
        ]
        for attr, text in cases:
            self.fails(2, text, "send", "jobs", "body", "--attr", attr)
        self.fails(2, "given twice", "send", "jobs", "body", "--attr", "k=String:a",
                   "--attr", "k=Number:1")
        args = ["send", "jobs", "body"]
        for i in range(11):
            args += ["--attr", "k%d=String:v" % i]
        self.fails(2, "at most 10", *args)
        self.assertEqual(self.count(), 0)

    def test_attributes_count_toward_the_maximum_message_size(self):
        self.b.ok("create-queue", "small", "--max-message-size", "1024")
        self.b.ok("send", "small", "x" * 1000, "--attr", "k=String:" + "v" * 17)  # 1000+1+6+17
        self.fails(1, "TOO_LARGE", "send", "small", "x" * 1000, "--attr", "k=String:" + "v" * 18)
        self.assertEqual(self.b.attributes("small")["ApproximateNumberOfMessages"], 1)

    # ---- raw frames: the broker's own checks ----

    def test_broker_refuses_bad_attributes_and_stores_nothing(self):
        bad = [
            (["AWS.x", "String", "v"], "reserved"),
            (["k", "Stringy", "v"], "DataType"),
            (["k", "Binary", "v"], "bin"),           # a Binary value sent as str
            (["k", "String", b"v"], "str"),          # a String value sent as bin
            (["k", "Number", "1.2.3"], "Number value"),
            (["k", "String", ""], "empty value"),
            (["k", "String", "a\x00b"], "control character"),
            (["k", "String", "a", "k", "String", "b"], "twice"),
        ]
        for attrs, text in bad:
            rep = self.raw_send([attrs], b"body")
            self.assertEqual(rep["st"], INVALID_ARGUMENT, (attrs, rep))
            self.assertIn(text, rep["err"])
            self.assertIn("message 1", rep["err"])
        # One bad message makes the whole SEND fail: the good one beside it is not stored.
        rep = self.raw_send([["k", "String", "ok"], ["AWS.k", "String", "no"]], b"a", b"b")
        self.assertEqual(rep["st"], INVALID_ARGUMENT)
        self.assertIn("message 2", rep["err"])
        shapes = [
            {"op": OP_SEND, "q": "jobs", "ma": [["k", "String"]]},             # not triples
            {"op": OP_SEND, "q": "jobs", "ma": [[1, "String", "v"]]},          # a name not str
            {"op": OP_SEND, "q": "jobs", "ma": [["k%d" % i, "String", "v"]
                                                for i in range(11)]},          # 2 lists, 1 body
            {"op": OP_SEND, "q": "jobs", "ma": [sum((["k%d" % i, "String", "v"]
                                                     for i in range(11)), [])]},  # 11 attributes
            {"op": OP_SEND, "q": "jobs", "ma": "k"},
        ]
        for header in shapes:
            rep = self.raw(header, b"body")
            self.assertEqual(rep["st"], INVALID_ARGUMENT, (header, rep))
        self.assertEqual(self.count(), 0)
        self.assertTrue(self.b.alive())

    def test_raw_send_and_receive_carry_attributes_and_digests(self):
        rep = self.raw_send([["z", "String", "last", "a", "Binary.x", b"\x00\x01"]], b"hello")
        self.assertEqual(rep["st"], OK, rep)
        self.assertEqual(rep["mdb"], ["5d41402abc4b2a76b9719d911017c592"])
        self.assertEqual(rep["mda"], [md5_of_attributes({"z": ("String", "last"),
                                                         "a": ("Binary.x", b"\x00\x01")})])
        frames = self.raw({"op": OP_RECEIVE, "q": "jobs"}, frames=True)
        r = msgpack.unpackb(frames[0], raw=False)
        self.assertEqual(frames[1], b"hello")
        # Stored and returned sorted by name; a Binary value as bin.
        self.assertEqual(r["ma"], [["a", "Binary.x", b"\x00\x01", "z", "String", "last"]])
        self.assertEqual(r["msgs"][0]["mdb"], rep["mdb"][0])
        self.assertEqual(r["msgs"][0]["mda"], rep["mda"][0])



class SendBatches(BrokerCase):
    queues = ("jobs",)
    count_states = ("visible", "delayed")

    def batch(self, entries, *args):
        text = "".join(json.dumps(e) + "\n" for e in entries).encode()
        return self.b.cli(*args, "send-batch", "jobs", input=text)

    MIXED = [
        {"Id": "a", "MessageBody": "one"},
        {"Id": "b", "MessageBody": ""},
        {"Id": "c", "MessageBody": "three", "DelaySeconds": 901},
        {"Id": "d", "MessageBody": "four",
         "MessageAttributes": {"AWS.x": {"DataType": "String", "StringValue": "v"}}},
        {"Id": "e", "MessageBody": "five",
         "MessageAttributes": {"k": {"DataType": "Binary", "BinaryValue": "AAE="}}},
        {"Id": "f", "MessageBody": "six", "DelaySeconds": 600},
    ]

    def test_a_bad_entry_fails_alone(self):
        r = self.batch(self.MIXED)
        self.assertEqual(r.returncode, 1, r.stderr)
        out = dict(line.split(" ") for line in r.stdout.decode().splitlines())
        self.assertEqual(sorted(out), ["a", "e", "f"])
        err = r.stderr.decode()
        self.assertIn("kyu: send-batch: entry b: EMPTY_BODY: ", err)
        self.assertIn("kyu: send-batch: entry c: INVALID_ARGUMENT: message 3: DelaySeconds must "
                      "be 0 to 900 seconds, not 901", err)
        self.assertIn("kyu: send-batch: entry d: INVALID_ARGUMENT: message 4: message attribute "
                      "name 'AWS.x' is reserved", err)
        self.assertEqual(len(err.splitlines()), 3)
        self.assertEqual(self.counts("jobs"), (2, 1))  # f waits for its own delay
        got = {m["MessageId"]: m for m in self.b.json_lines("receive", "jobs", "--max", "10")}
        self.assertEqual(sorted(m["Body"] for m in got.values()), ["five", "one"])
        self.assertEqual(got[out["e"]]["MessageAttributes"],
                         {"k": {"DataType": "Binary", "BinaryValue": "AAE="}})

    def test_json_answers_as_sqs_send_message_batch(self):
        r = self.batch(self.MIXED, "--json")
        self.assertEqual(r.returncode, 1, r.stderr)
        [answer] = [json.loads(l) for l in r.stdout.decode().splitlines()]
        ok = {e["Id"]: e for e in answer["Successful"]}
        failed = {e["Id"]: e for e in answer["Failed"]}
        self.assertEqual(sorted(ok), ["a", "e", "f"])
        self.assertEqual(sorted(failed), ["b", "c", "d"])
        self.assertEqual(ok["a"]["MD5OfMessageBody"], hashlib.md5(b"one").hexdigest())
        self.assertNotIn("MD5OfMessageAttributes", ok["a"])
        self.assertEqual(ok["e"]["MD5OfMessageAttributes"],
                         md5_of_attributes({"k": ("Binary", b"\x00\x01")}))
        self.assertEqual(failed["b"]["Code"], "EMPTY_BODY")
        self.assertEqual(failed["c"]["Code"], "INVALID_ARGUMENT")
        self.assertTrue(failed["d"]["SenderFault"])
        self.assertIn("reserved", failed["d"]["Message"])

    def test_more_than_ten_lines_go_in_several_batches(self):
        entries = [{"Id": "e%d" % i, "MessageBody": "m%d" % i} for i in range(23)]
        r = self.batch(entries, "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        answers = [json.loads(l) for l in r.stdout.decode().splitlines()]
        self.assertEqual([len(a["Successful"]) for a in answers], [10, 10, 3])
        self.assertEqual(self.counts("jobs"), (23, 0))

    def test_request_level_errors_change_nothing(self):
        r = self.batch([{"Id": "x", "MessageBody": "1"}, {"Id": "x", "MessageBody": "2"}])
        self.assertEqual(r.returncode, 1)
        self.assertIn("BatchEntryIdsNotDistinct", r.stderr.decode())
        r = self.batch([{"Id": "bad id", "MessageBody": "1"}])
        self.assertIn("InvalidBatchEntryId", r.stderr.decode())
        r = self.batch([{"Id": "ok", "MessageBody": "1"}, {"MessageBody": 5}])
        self.assertEqual(r.returncode, 1)
        self.assertIn("line 2: MessageBody must be a string", r.stderr.decode())
        self.assertEqual(self.counts("jobs"), (1, 0))  # the line before the bad one was sent
        for header, text in [
            ({"eid": ["a", "a"]}, "BatchEntryIdsNotDistinct"),
            ({"eid": ["a", "b c"]}, "InvalidBatchEntryId"),
            ({"eid": ["a" * 81, "b"]}, "InvalidBatchEntryId"),
            ({"eid": ["a"]}, "1 entry ids for 2 messages"),
            ({"eds": [1, 2]}, "give eid too"),
            ({"eid": ["a", "b"], "eds": [1]}, "1 delays for 2"),
            ({"eid": ["a", "b"], "eds": [1, None], "ds": 3}, "not both"),
        ]:
            rep = self.raw(dict({"op": OP_SEND, "q": "jobs"}, **header), b"x", b"y")
            self.assertEqual(rep["st"], INVALID_ARGUMENT, (header, rep))
            self.assertIn(text, rep["err"])
        self.assertEqual(self.counts("jobs"), (1, 0))

    def test_raw_batch_reply_lists_every_entry(self):
        rep = self.raw({"op": OP_SEND, "q": "jobs", "eid": ["ok", "empty", "late"],
                        "eds": [None, None, 5]}, b"x", b"", b"z")
        self.assertEqual(rep["st"], OK, rep)
        self.assertEqual(len(rep["ids"]), 3)
        self.assertEqual(rep["ids"][1], "")
        self.assertEqual(rep["res"], [OK, 9, OK])  # EMPTY_BODY
        self.assertEqual(rep["errs"][0], "")
        self.assertIn("empty body", rep["errs"][1])
        self.assertEqual(rep["mdb"][2], hashlib.md5(b"z").hexdigest())
        self.assertEqual(self.counts("jobs"), (1, 1))
        # every entry good: the reply of a plain SEND
        rep = self.raw({"op": OP_SEND, "q": "jobs", "eid": ["a", "b"]}, b"1", b"2")
        self.assertEqual(rep["st"], OK, rep)
        self.assertNotIn("res", rep)
        self.assertEqual(len(rep["ids"]), 2)

    def test_delete_answers_a_failed_handle_as_a_batch_answers_a_failed_entry(self):
        self.raw({"op": OP_SEND, "q": "jobs"}, b"x")
        got = self.b.json_lines("receive", "jobs")
        rep = self.raw({"op": 8, "q": "jobs", "rh": [got[0]["ReceiptHandle"], "forged"]})
        self.assertEqual(rep["st"], OK, rep)
        self.assertEqual(rep["res"], [OK, 10])  # RECEIPT_INVALID
        self.assertEqual(rep["errs"][0], "")
        self.assertIn("not a receipt handle", rep["errs"][1])
        rep = self.raw({"op": 8, "q": "jobs", "rh": [got[0]["ReceiptHandle"]]})
        self.assertEqual(rep["res"], [10])  # deleted already
        self.raw({"op": OP_SEND, "q": "jobs"}, b"y")
        got = self.b.json_lines("receive", "jobs")
        rep = self.raw({"op": 9, "q": "jobs", "vt": 0, "rh": [got[0]["ReceiptHandle"]]})
        self.assertEqual(rep["res"], [OK])
        self.assertNotIn("errs", rep)  # every handle held: no texts

    def test_a_send_of_several_bodies_answers_every_id_whole(self):
        """(A SEND of several bodies used to answer the second and later ids cut short: the
        reply's id slots are wider than the state machine's.)"""
        rep = self.raw({"op": OP_SEND, "q": "jobs"}, *[b"m%d" % i for i in range(10)])
        self.assertEqual(rep["st"], OK, rep)
        self.assertTrue(all(len(i) == 36 for i in rep["ids"]), rep["ids"])
        got = self.b.json_lines("receive", "jobs", "--max", "10")
        self.assertEqual(sorted(m["MessageId"] for m in got), sorted(rep["ids"]))

    def test_a_retry_answers_every_entry_as_the_first_attempt(self):
        self.b.ok("create-queue", "small", "--max-message-size", "1024")
        header = {"op": OP_SEND, "q": "small", "eid": ["fits", "big", "empty"],
                  "rq": [4242, 17]}
        bodies = (b"x", b"y" * 2000, b"")
        first = self.raw(header, *bodies)
        self.assertEqual(first["st"], OK, first)
        self.assertEqual(first["res"], [OK, TOO_LARGE, 9])
        # The queue's limit changes; the retry still answers as the first attempt did.
        self.b.ok("set-queue-attributes", "small", "--max-message-size", "4096")
        again = self.raw(header, *bodies)
        self.assertEqual(again["ids"], first["ids"])
        self.assertEqual(again["res"], first["res"])
        self.assertIn("first attempt", again["errs"][1])
        self.assertEqual(again["errs"][2], first["errs"][2])
        self.b.kill9()
        self.b.start()
        after = self.raw(header, *bodies)
        self.assertEqual(after["ids"], first["ids"])
        self.assertEqual(after["res"], first["res"])
        self.assertEqual(self.counts("small"), (1, 0))



class HandleBatches(BrokerCase):
    """DELETE and CHANGE_VISIBILITY as batches with entry ids (SQS's DeleteMessageBatch and
    ChangeMessageVisibilityBatch): `kyu delete-batch` and `kyu change-visibility-batch` read
    SQS-shaped JSON lines; a handle that fails fails alone; bad or repeated ids fail the
    request and change nothing."""
    queues = ("jobs",)

    def leased(self, n):
        self.b.ok("send", "jobs", "--lines", input=b"".join(b"m%d\n" % i for i in range(n)))
        got = self.b.json_lines("receive", "jobs", "--max", "10", "--visibility-timeout", "600")
        self.assertEqual(len(got), n)
        return [m["ReceiptHandle"] for m in got]

    def run_batch(self, cmd, entries, *args):
        text = "".join(json.dumps(e) + "\n" for e in entries).encode()
        return self.b.cli(*args, cmd, "jobs", input=text)

    def test_delete_batch_a_bad_handle_fails_alone(self):
        h = self.leased(3)
        r = self.run_batch("delete-batch", [{"Id": "a", "ReceiptHandle": h[0]},
                                            {"Id": "b", "ReceiptHandle": "forged"},
                                            {"Id": "c", "ReceiptHandle": h[2]}])
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertEqual(r.stdout.decode().split(), ["a", "c"])
        self.assertIn("kyu: delete-batch: entry b: RECEIPT_INVALID: ", r.stderr.decode())
        self.assertEqual(self.counts("jobs"), (0, 1, 0))
        r = self.run_batch("delete-batch", [{"Id": "again", "ReceiptHandle": h[0]},
                                            {"Id": "last", "ReceiptHandle": h[1]}], "--json")
        self.assertEqual(r.returncode, 1, r.stderr)
        answer = json.loads(r.stdout)
        self.assertEqual(answer["Successful"], [{"Id": "last"}])
        self.assertEqual([(f["Id"], f["Code"], f["SenderFault"]) for f in answer["Failed"]],
                         [("again", "RECEIPT_INVALID", True)])
        self.assertEqual(self.counts("jobs"), (0, 0, 0))

    def test_change_visibility_batch_a_timeout_per_entry_in_one_request(self):
        h = self.leased(5)
        entries = [{"Id": "now1", "ReceiptHandle": h[0], "VisibilityTimeout": 0},
                   {"Id": "later", "ReceiptHandle": h[2], "VisibilityTimeout": 900},
                   {"Id": "now2", "ReceiptHandle": h[1], "VisibilityTimeout": 0},
                   {"Id": "bad", "ReceiptHandle": "forged", "VisibilityTimeout": 900},
                   {"Id": "toolong", "ReceiptHandle": h[4], "VisibilityTimeout": 43201}]
        r = self.run_batch("change-visibility-batch", entries, "--json")
        self.assertEqual(r.returncode, 1, r.stderr)
        answers = [json.loads(l) for l in r.stdout.decode().splitlines()]
        self.assertEqual(len(answers), 1, answers)  # one request for every timeout
        self.assertEqual([s["Id"] for s in answers[0]["Successful"]], ["now1", "later", "now2"])
        self.assertEqual([(f["Id"], f["Code"]) for f in answers[0]["Failed"]],
                         [("bad", "RECEIPT_INVALID"), ("toolong", "INVALID_ARGUMENT")])
        self.assertIn("0 to 43200", answers[0]["Failed"][1]["Message"])
        self.assertEqual(self.counts("jobs"), (2, 3, 0))  # h[4] keeps its 600 s lease
        # Raw: evt with eid, one per handle; not with vt; DELETE does not take it.
        got = self.b.json_lines("receive", "jobs", "--max", "10", "--visibility-timeout", "600")
        self.assertEqual(len(got), 2)
        hs = [m["ReceiptHandle"] for m in got]
        rep = self.raw({"op": 9, "q": "jobs", "rh": hs, "eid": ["a", "b"], "evt": [0, 43200]})
        self.assertEqual((rep["st"], rep["res"]), (OK, [OK, OK]), rep)
        self.assertEqual(self.counts("jobs"), (1, 4, 0))
        for header, code, text in [
                ({"rh": hs, "eid": ["a", "b"], "evt": [0, 0], "vt": 0}, INVALID_ARGUMENT, "not both"),
                ({"rh": hs, "evt": [0, 0]}, INVALID_ARGUMENT, "give eid too"),
                ({"rh": hs, "eid": ["a", "b"], "evt": [0]}, INVALID_ARGUMENT, "evt has 1"),
                ({"rh": hs, "eid": ["a", "b"], "evt": [0, -1]}, INVALID_ARGUMENT, "evt"),
                ({"rh": hs, "eid": ["a", "b"]}, INVALID_ARGUMENT, "needs field vt")]:
            rep = self.raw(dict(header, op=9, q="jobs"))
            self.assertEqual(rep["st"], code, (header, rep))
            self.assertIn(text, rep["err"])
        rep = self.raw({"op": 8, "q": "jobs", "rh": hs, "eid": ["a", "b"], "evt": [0, 0]})
        self.assertEqual(rep["st"], MALFORMED, rep)
        self.assertEqual(self.counts("jobs"), (1, 4, 0))
        r = self.run_batch("change-visibility-batch", [{"Id": "x", "ReceiptHandle": h[3]}])
        self.assertEqual(r.returncode, 1)
        self.assertIn("line 1: VisibilityTimeout must be a number of seconds from 0 to 43200",
                      r.stderr.decode())
        r = self.run_batch("delete-batch", [{"Id": "x"}])
        self.assertIn("line 1: ReceiptHandle must be a string", r.stderr.decode())
        self.assertEqual(self.counts("jobs"), (1, 4, 0))

    def test_request_level_errors_change_nothing(self):
        h = self.leased(2)
        for op in (8, 9):
            for eid, text in [(["x", "x"], "BatchEntryIdsNotDistinct"),
                              (["x", "b c"], "InvalidBatchEntryId"),
                              (["x"], "eid has 1 entry ids for 2 receipt handles")]:
                header = {"op": op, "q": "jobs", "rh": h, "eid": eid}
                if op == 9:
                    header["vt"] = 0
                rep = self.raw(header)
                self.assertEqual(rep["st"], INVALID_ARGUMENT, (header, rep))
                self.assertIn(text, rep["err"])
        self.assertEqual(self.counts("jobs"), (0, 2, 0))
        r = self.run_batch("delete-batch", [{"Id": "x", "ReceiptHandle": h[0]},
                                            {"Id": "x", "ReceiptHandle": h[1]}])
        self.assertEqual(r.returncode, 1)
        self.assertIn("BatchEntryIdsNotDistinct", r.stderr.decode())
        self.assertEqual(self.counts("jobs"), (0, 2, 0))
        # With good ids, the raw reply is DELETE's: a result per handle, in order.
        rep = self.raw({"op": 8, "q": "jobs", "rh": [h[1], "forged"], "eid": ["p", "q"]})
        self.assertEqual((rep["st"], rep["res"]), (OK, [OK, 10]))
        self.assertEqual(self.counts("jobs"), (0, 1, 0))


class BatchRequestTooLong(BrokerCase):
    """SQS's BatchRequestTooLong: a batch whose entries together (bodies and attributes) are
    larger than the maximum message size is refused whole; nothing is stored."""
    broker_args = ("--max-message-size", "4096")
    queues = ("jobs",)
    count_states = ("visible", "delayed")

    def test_a_batch_over_the_maximum_together_is_refused_whole(self):
        rep = self.raw({"op": OP_SEND, "q": "jobs", "eid": ["a", "b"]}, b"x" * 2048, b"y" * 2049)
        self.assertEqual(rep["st"], TOO_LARGE, rep)
        self.assertIn("BatchRequestTooLong: the batch's 2 entries have 4097 bytes together", rep["err"])
        self.assertIn("at most 4096", rep["err"])
        self.assertNotIn("ids", rep)
        # The attributes count too.
        rep = self.raw({"op": OP_SEND, "q": "jobs", "eid": ["a", "b"], "ma": [["k", "String", "v"], []]},
                       b"x" * 2048, b"y" * 2046)
        self.assertEqual(rep["st"], TOO_LARGE, rep)
        self.assertIn("4102 bytes together (bodies and attributes)", rep["err"])  # k, String, v
        # A bad entry among them does not matter: the whole batch is refused.
        rep = self.raw({"op": OP_SEND, "q": "jobs", "eid": ["a", "b", "c"]}, b"x" * 4000, b"", b"y" * 100)
        self.assertEqual(rep["st"], TOO_LARGE, rep)
        self.assertEqual(self.counts("jobs"), (0, 0))
        # Exactly the maximum together: sent.
        rep = self.raw({"op": OP_SEND, "q": "jobs", "eid": ["a", "b"]}, b"x" * 2048, b"y" * 2048)
        self.assertEqual(rep["st"], OK, rep)
        self.assertEqual(self.counts("jobs"), (2, 0))
        # kyu's own SEND of several bodies (no entry ids) is not a batch: each body alone.
        rep = self.raw({"op": OP_SEND, "q": "jobs"}, b"x" * 4096, b"y" * 4096)
        self.assertEqual(rep["st"], OK, rep)
        self.assertEqual(self.counts("jobs"), (4, 0))

    def test_send_batch_cuts_its_requests_to_fit(self):
        entries = [{"Id": "e%d" % i, "MessageBody": chr(97 + i) * 1500} for i in range(7)]
        text = "".join(json.dumps(e) + "\n" for e in entries).encode()
        r = self.b.cli("--json", "send-batch", "jobs", input=text)
        self.assertEqual(r.returncode, 0, r.stderr)
        answers = [json.loads(l) for l in r.stdout.decode().splitlines()]
        self.assertEqual([len(a["Successful"]) for a in answers], [2, 2, 2, 1])  # 3000 B each
        self.assertEqual(self.counts("jobs"), (7, 0))


class AcrossFailover(test_cluster.ClusterFixture, unittest.TestCase):
    """Three nodes: attributes and a batch's answers survive a kill -9 of the leader."""

    def test_attributes_and_batch_answers_survive_a_leader_failover(self):
        leader = self.leader()
        self.ok("create-queue", "jobs")
        sent = json.loads(self.ok("--json", "send", "jobs", "kept", "--attr", "k=String:v",
                                  "--attr", "b=Binary:AAE="))
        header = {"op": OP_SEND, "q": "jobs", "eid": ["good", "empty"], "rq": [777, 1],
                  "ma": [["n", "Number", "3"], []]}
        first = request(leader.client, header, b"batched", b"", timeout_ms=20000)
        self.assertEqual(first["st"], OK, first)
        self.assertEqual(first["res"], [OK, 9])
        for n in self.nodes:  # every node holds both before the leader dies
            if n is not leader:
                self.wait_caught_up(n)
        leader.kill9()
        new_leader = self.leader()
        self.assertIsNot(new_leader, leader)
        again = request(new_leader.client, header, b"batched", b"", timeout_ms=20000)
        self.assertEqual(again["ids"], first["ids"])
        self.assertEqual(again["res"], first["res"])
        self.assertEqual(again["mdb"], first["mdb"])
        self.assertEqual(again["mda"], first["mda"])
        leader.start()
        out = self.ok("--json", "receive", "jobs", "--max", "10")
        got = {m["Body"]: m for m in (json.loads(l) for l in out.splitlines())}
        self.assertEqual(sorted(got), ["batched", "kept"])  # the retry stored nothing
        self.assertEqual(got["kept"]["MessageId"], sent["MessageId"])
        self.assertEqual(got["kept"]["MessageAttributes"],
                         {"k": {"DataType": "String", "StringValue": "v"},
                          "b": {"DataType": "Binary", "BinaryValue": "AAE="}})
        self.assertEqual(got["kept"]["MD5OfMessageAttributes"], sent["MD5OfMessageAttributes"])
        self.assertEqual(got["batched"]["MessageId"], first["ids"][0])
        self.assertEqual(got["batched"]["MD5OfMessageAttributes"], first["mda"][0])
        self.wait_caught_up(leader)


if __name__ == "__main__":
    unittest.main()
