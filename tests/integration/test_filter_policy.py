"""Subscription filter policies (issue 15, item 2): `kyu subscribe TOPIC QUEUE --filter JSON
[--filter-scope attributes|body]` with SNS's FilterPolicy syntax. One publish reaches only the
queues whose policy matches it (still one command); policies survive a kill -9 and a clean
restart; bad policies are refused with INVALID_ARGUMENT naming the problem and change
nothing. The engine's operators are tested one by one in tests/unit/test_filter.c."""
import json
import unittest

from harness import BrokerCase

OP_SUBSCRIBE = 29
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
        marks = [line.split()[2:] for line in before.splitlines()]
        self.assertEqual(marks, [["ship", "raw", "filter:attributes"],
                                 ["bill", "raw", "filter:attributes"], ["audit", "raw"],
                                 ["eu", "raw", "filter:body"]])
        subs = self.b.json_lines("list-subscriptions")
        self.assertEqual([s.get("FilterPolicyScope") for s in subs],
                         ["MessageAttributes", "MessageAttributes", None, "MessageBody"])
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


if __name__ == "__main__":
    unittest.main()
