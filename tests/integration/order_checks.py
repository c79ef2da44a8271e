"""What the orders example's kill tests share (tests/integration/test_orders_example.py, and
tests/deploy/test_compose.py in containers): the orders sent on a thread while a node is
killed, every one accepted, and what each must come to: shipped unless poison, booked by
accounting when paid and not poison, the poison ones dead-lettered. The caller puts
examples/orders on sys.path first (send_orders is the example's own order maker and HTTP
client)."""
import threading

import send_orders


class OrderFlow:
    """orders POSTed to url by send_orders.send_all on a thread; accepted: the order ids
    answered 202 with their own id, refused: the others (order id, status, reply)."""

    def __init__(self, url, orders, threads=4, interval=0.1):
        self.orders = orders
        self.poison = {o["order_id"] for o in orders if o["customer"] == "poison"}
        self.flaky = {o["order_id"] for o in orders if o["customer"] == "flaky"}
        self.paid = {o["order_id"] for o in orders if o["paid"]}
        self.accepted, self.refused = set(), []
        self._lock = threading.Lock()
        self._sender = threading.Thread(target=send_orders.send_all,
                                        args=(url, orders, threads, self._on_result, interval))

    def _on_result(self, order, status, rep, attempts):
        with self._lock:
            if status == 202 and rep.get("order_id") == order["order_id"]:
                self.accepted.add(order["order_id"])
            else:
                self.refused.append((order["order_id"], status, rep))

    def start(self):
        self._sender.start()

    def sending(self):
        return self._sender.is_alive()

    def join(self, timeout=300):
        self._sender.join(timeout=timeout)

    def check_all_accepted(self, test):
        """send_orders.place retries an order (same order_id) until it is accepted: every
        order must be, the cluster kept a majority."""
        test.assertFalse(self._sender.is_alive(), "the sender did not finish within 300 s")
        test.assertEqual(self.refused, [])
        test.assertEqual(self.accepted, {o["order_id"] for o in self.orders})

    def wants(self):
        """The orders shipping and accounting must process (each once)."""
        return self.accepted - self.poison, (self.accepted & self.paid) - self.poison

    def settled(self, processed, counts):
        """Every order processed or dead-lettered: processed(queue) is the set of orders its
        worker processed, counts(queue) its (visible, in flight, delayed) counts."""
        ship_want, acct_want = self.wants()
        return (processed("shipping") >= ship_want and processed("accounting") >= acct_want and
                counts("shipping") == (0, 0, 0) and counts("accounting") == (0, 0, 0) and
                counts("shipping-dlq")[0] >= len(self.poison) and
                counts("accounting-dlq")[0] >= len(self.poison & self.paid))
