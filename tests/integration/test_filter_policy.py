"""Subscription filter policies (issue 15, item 2): `kyu subscribe TOPIC QUEUE --filter JSON
[--filter-scope attributes|body]` with SNS's FilterPolicy syntax. One publish reaches only the
queues whose policy matches it (still one command); policies survive a kill -9 and a clean
restart; bad policies are refused with INVALID_ARGUMENT naming the problem and change
nothing. The engine's operators are tested one by one in tests/unit/test_filter.c."""
import json
import unittest

from harness import BrokerCase

OP_SUBSCRIBE = 29
OP_SET_SUB_ATTRS = 33
INVALID_ARGUMENT = 4


class FilterPolicies(BrokerCase):
    queues = ("ship", "bill", "audit", "eu")

    def subscribe(self, topic, queue, *opts):
        return self.b.ok("subscribe", topic, queue, "--raw", *opts).strip()

    def bodies(self, queue):
        return sorted(m["Body"] for m in self.b.drain(queue))

    def setup_orders(self):
        self.b.ok("create-topic", "orders")
        self.subscribe("orders", "ship", "--filter", json.dumps({"event": ["order_placed"]}))
        self.subscribe("orders", "bill", "--filter", json.dumps(
            {"event": ["order_placed", "order_refunded"],
             "price": [{"numeric": [">=", 100]}]}))
        self.subscribe("orders", "audit")  # no policy: every message
        self.subscribe("orders", "eu", "--filter-scope", "body", "--filter", json.dumps(
            {"order": {"region": [{"prefix": "eu-"}]}}))

    def publish(self, body, *attrs):
        args = ["publish", "orders", body]
        for a in attrs:
            args += ["--attr", a]
        self.b.ok(*args)

    def check_routing(self, tag):
        self.publish(tag + "1", "event=String:order_placed", "price=Number:150")
        self.publish(tag + "2", "event=String:order_placed", "price=Number:20")
        self.publish(tag + "3", "event=String:order_refunded", "price=Number:100")
        self.publish(tag + "4", "event=String:order_cancelled")
        self.publish(json.dumps({"order": {"region": "eu-west-1"}}))
        self.publish(json.dumps({"order": {"region": "us-east-1"}}), "event=String:order_placed")
        self.assertEqual(self.bodies("ship"),
                         sorted([tag + "1", tag + "2",
                                 json.dumps({"order": {"region": "us-east-1"}})]))
        self.assertEqual(self.bodies("bill"), [tag + "1", tag + "3"])
        self.assertEqual(len(self.bodies("audit")), 6)
        self.assertEqual(self.bodies("eu"), [json.dumps({"order": {"region": "eu-west-1"}})])

    def test_one_publish_reaches_only_the_matching_queues(self):
        self.setup_orders()
        self.check_routing("a")
        # A message that matches nothing is no error: it lands nowhere but in audit.
        self.publish("nobody", "event=String:other")
        self.assertEqual(self.bodies("audit"), ["nobody"])
        for q in ("ship", "bill", "eu"):
            self.assertEqual(self.bodies(q), [])

    def test_policies_survive_restarts(self):
        self.setup_orders()
        before = self.b.ok("list-subscriptions")
        marks = [line.split(" ", 5)[2:] for line in before.splitlines()]
        self.assertEqual(marks, [["ship", "raw", "filter:attributes",
                                  '{"event":["order_placed"]}'],
                                 ["bill", "raw", "filter:attributes",
                                  '{"event":["order_placed","order_refunded"],'
                                  '"price":[{"numeric":[">=",100]}]}'],
                                 ["audit", "raw"],
                                 ["eu", "raw", "filter:body",
                                  '{"order":{"region":[{"prefix":"eu-"}]}}']])
        subs = self.b.json_lines("list-subscriptions")
        self.assertEqual([s.get("FilterPolicyScope") for s in subs],
                         ["MessageAttributes", "MessageAttributes", None, "MessageBody"])
        self.assertEqual([json.loads(s["FilterPolicy"]) if "FilterPolicy" in s else None
                          for s in subs],
                         [{"event": ["order_placed"]},
                          {"event": ["order_placed", "order_refunded"],
                           "price": [{"numeric": [">=", 100]}]},
                          None, {"order": {"region": [{"prefix": "eu-"}]}}])
        self.b.kill9()
        self.b.start()
        self.check_routing("b")
        self.assertEqual(self.b.ok("list-subscriptions"), before)
        self.b.stop()
        self.b.start()
        self.check_routing("c")
        self.assertEqual(self.b.ok("list-subscriptions"), before)

    def test_same_subscription_again_and_a_different_policy(self):
        self.b.ok("create-topic", "t")
        p = '{"a": ["x"], "b": [1]}'
        s = self.subscribe("t", "ship", "--filter", p)
        # The same policy (keys in another order, other spacing) answers the same id.
        self.assertEqual(self.subscribe("t", "ship", "--filter", '{"b":[1],"a":["x"]}'), s)
        self.fails(1, "a filter policy", "subscribe", "t", "ship", "--raw", "--filter",
                   '{"a": ["y"]}')
        self.fails(1, "a filter policy", "subscribe", "t", "ship", "--raw")
        self.fails(1, "a filter policy", "subscribe", "t", "ship", "--raw", "--filter", p,
                   "--filter-scope", "body")

    def test_bad_policies_change_nothing(self):
        self.b.ok("create-topic", "t")
        bad = [
            ("{", "not JSON"),
            ("[]", "non-empty JSON object"),
            ('{"a": "x"}', "key 'a': its value must be a non-empty list"),
            ('{"a": [{"wildcard": "x*"}]}', "unknown operator 'wildcard'"),
            ('{"a": [{"numeric": [">", 5, "<", 1]}]}', "greater number"),
            ('{"a": {"b": ["x"]}}', "nested keys need the body scope"),
            (json.dumps({k: ["x"] for k in "abcdef"}), "6 keys, more than 5"),
            (json.dumps({"a": list(range(10)), "b": list(range(10)), "c": [1, 2]}),
             "200 value combinations, more than 150"),
        ]
        for policy, why in bad:
            self.fails(1, why, "subscribe", "t", "ship", "--filter", policy)
        self.fails(2, "--filter-scope is attributes or body", "subscribe", "t", "ship",
                   "--filter", '{"a":["x"]}', "--filter-scope", "headers")
        self.fails(2, "give --filter too", "subscribe", "t", "ship", "--filter-scope", "body")
        # Past 256 KB (too long for one command-line argument).
        big = ('{"a": ["' + "x" * (256 * 1024) + '"]}').encode()
        r = self.raw({"op": OP_SUBSCRIBE, "tp": "t", "q": "ship", "flt": True}, big)
        self.assertEqual(r["st"], INVALID_ARGUMENT, r)
        self.assertIn("more than 262144 (256 KB)", r["err"])
        # Raw frames: a policy without flt, flt without a policy, a bad scope.
        r = self.raw({"op": OP_SUBSCRIBE, "tp": "t", "q": "ship"}, b'{"a":["x"]}')
        self.assertEqual(r["st"], INVALID_ARGUMENT, r)
        r = self.raw({"op": OP_SUBSCRIBE, "tp": "t", "q": "ship", "flt": True})
        self.assertEqual(r["st"], INVALID_ARGUMENT, r)
        r = self.raw({"op": OP_SUBSCRIBE, "tp": "t", "q": "ship", "flt": True, "fsc": "x"},
                     b'{"a":["x"]}')
        self.assertEqual(r["st"], INVALID_ARGUMENT, r)
        self.assertIn("fsc", r["err"])
        r = self.raw({"op": OP_SUBSCRIBE, "tp": "t", "q": "ship", "flt": True, "fsc": "body"},
                     b'{"a":{"b":["x"]}}')
        self.assertEqual(r["st"], 0, r)
        self.assertEqual(self.b.ok("list-subscriptions").count("\n"), 1)


    def attrs(self, sub):
        out = self.b.ok("get-subscription-attributes", sub)
        plain = dict(line.split(" ", 1) for line in out.splitlines())
        self.assertEqual(self.b.json_lines("get-subscription-attributes", sub), [plain])
        return plain

    def test_set_subscription_attributes_in_place(self):
        """SNS's SetSubscriptionAttributes: the policy, its scope and raw delivery change in
        place (same id); publishes after the change see it; it survives kill -9."""
        self.b.ok("create-topic", "t")
        s = self.subscribe("t", "ship", "--filter", '{"event": ["a"]}')
        self.assertEqual(self.attrs(s), {
            "SubscriptionId": s, "TopicName": "t", "QueueName": "ship",
            "RawMessageDelivery": "true", "FilterPolicyScope": "MessageAttributes",
            "FilterPolicy": '{"event":["a"]}'})
        self.b.ok("publish", "t", "m1", "--attr", "event=String:a")
        self.b.ok("publish", "t", "m2", "--attr", "event=String:b")
        self.assertEqual(self.bodies("ship"), ["m1"])
        # A new policy: the same subscription, now b only.
        self.b.ok("set-subscription-attributes", s, "--filter", '{"event": ["b"]}')
        self.b.ok("publish", "t", "m3", "--attr", "event=String:a")
        self.b.ok("publish", "t", "m4", "--attr", "event=String:b")
        self.assertEqual(self.bodies("ship"), ["m4"])
        self.assertEqual(self.attrs(s)["FilterPolicy"], '{"event":["b"]}')
        # The scope alone: the present policy now reads the JSON body.
        self.b.ok("set-subscription-attributes", s, "--filter-scope", "body")
        self.assertEqual(self.attrs(s)["FilterPolicyScope"], "MessageBody")
        self.b.ok("publish", "t", '{"event": "b"}')
        self.b.ok("publish", "t", "m5", "--attr", "event=String:b")
        self.assertEqual(self.bodies("ship"), ['{"event": "b"}'])
        # A new policy keeps the body scope (SNS keeps FilterPolicyScope).
        self.b.ok("set-subscription-attributes", s, "--filter", '{"x": {"y": [1]}}')
        self.assertEqual(self.attrs(s)["FilterPolicyScope"], "MessageBody")
        # Raw delivery off: the envelope.
        self.b.ok("set-subscription-attributes", s, "--no-raw")
        self.b.ok("publish", "t", '{"x": {"y": 1}}')
        [m] = self.b.drain("ship")
        self.assertEqual(json.loads(json.loads(m["Body"])["Message"]), {"x": {"y": 1}})
        self.b.kill9()
        self.b.start()
        before = self.attrs(s)
        self.assertEqual(before["RawMessageDelivery"], "false")
        self.assertEqual(before["FilterPolicy"], '{"x":{"y":[1]}}')
        # No policy: every message again; raw again.
        self.b.ok("set-subscription-attributes", s, "--no-filter", "--raw")
        after = self.attrs(s)
        self.assertNotIn("FilterPolicy", after)
        self.assertNotIn("FilterPolicyScope", after)
        self.assertEqual(after["RawMessageDelivery"], "true")
        self.b.ok("publish", "t", "m6")
        self.assertEqual(self.bodies("ship"), ["m6"])
        self.assertEqual(self.b.ok("list-subscriptions").split(), [s, "t", "ship", "raw"])

    def test_bad_subscription_attributes_change_nothing(self):
        self.b.ok("create-topic", "t")
        s = self.subscribe("t", "ship", "--filter", '{"a": ["x"]}')
        before = self.attrs(s)
        self.fails(1, "not JSON", "set-subscription-attributes", s, "--filter", "{")
        self.fails(1, "nested keys need the body scope", "set-subscription-attributes", s,
                   "--filter", '{"a": {"b": ["x"]}}')
        self.fails(1, "6 keys, more than 5", "set-subscription-attributes", s, "--filter",
                   json.dumps({k: ["x"] for k in "abcdef"}))
        self.fails(2, "give at least one", "set-subscription-attributes", s)
        self.fails(2, "not both", "set-subscription-attributes", s, "--filter", "{}",
                   "--no-filter")
        self.fails(2, "not both", "set-subscription-attributes", s, "--raw", "--no-raw")
        self.fails(2, "does not take option", "subscribe", "t", "ship", "--no-filter")
        missing = "00000000-0000-4000-8000-000000000000"
        self.fails(1, "NO_SUCH_SUBSCRIPTION", "set-subscription-attributes", missing, "--raw")
        self.fails(1, "NO_SUCH_SUBSCRIPTION", "get-subscription-attributes", missing)
        self.assertEqual(self.attrs(s), before)
        # A body-scoped policy cannot go back to the attributes scope.
        s2 = self.subscribe("t", "bill", "--filter", '{"a": {"b": ["x"]}}', "--filter-scope",
                            "body")
        self.fails(1, "nested keys need the body scope", "set-subscription-attributes", s2,
                   "--filter-scope", "attributes")
        # No policy to scope.
        s3 = self.subscribe("t", "audit")
        self.fails(1, "no filter policy to scope", "set-subscription-attributes", s3,
                   "--filter-scope", "body")
        # Raw frames: nflt with flt, nothing to change, a policy frame without flt.
        r = self.raw({"op": OP_SET_SUB_ATTRS, "sub": s, "nflt": True, "flt": True}, b'{"a":["y"]}')
        self.assertEqual(r["st"], INVALID_ARGUMENT, r)
        r = self.raw({"op": OP_SET_SUB_ATTRS, "sub": s})
        self.assertEqual(r["st"], INVALID_ARGUMENT, r)
        r = self.raw({"op": OP_SET_SUB_ATTRS, "sub": s, "rd": True}, b'{"a":["y"]}')
        self.assertEqual(r["st"], INVALID_ARGUMENT, r)
        r = self.raw({"op": OP_SET_SUB_ATTRS, "sub": s, "rd": 1})
        self.assertEqual(r["st"], INVALID_ARGUMENT, r)
        self.assertEqual(self.attrs(s), before)
        self.assertEqual(self.attrs(s2)["FilterPolicyScope"], "MessageBody")


if __name__ == "__main__":
    unittest.main()
