#!/usr/bin/env python3
"""Sends orders to the order service of examples/orders (Python 3 standard library only).

    send_orders.py URL [--count N] [--prefix P] [--threads T] [--poison-every K]
                       [--flaky-every K] [--unpaid-every K] [--interval SEC]
                       [--accepted FILE]

Order i (0..N-1) has order_id PREFIX-i (zero-padded), is unpaid when i % unpaid-every == 1,
from customer "poison" when i % poison-every == poison-every - 1, "flaky" when
i % flaky-every == 2 (the handlers' demonstration knobs, handler.py), else "customer-<i%7>".
Each order is POSTed to URL/orders until the service answers 202 (a 503, a timeout or a
refused connection is retried with the same order_id, for up to a minute: the consumers
process an order once whatever number of times it was published). Prints one line per
order not accepted, then a summary; --accepted FILE gets each accepted order as a JSON line.
Exit 0 when every order was accepted."""
import argparse
import json
import sys
import threading
import time
import urllib.error
import urllib.request


def make_order(i, prefix, poison_every=50, flaky_every=20, unpaid_every=3):
    customer = "customer-%d" % (i % 7)
    if poison_every and i % poison_every == poison_every - 1:
        customer = "poison"
    elif flaky_every and i % flaky_every == 2:
        customer = "flaky"
    return {"order_id": "%s-%05d" % (prefix, i), "customer": customer,
            "items": [{"sku": "sku-%d" % (i % 13), "qty": 1 + i % 4}],
            "total": round(9.99 + (i % 40) * 2.5, 2),
            "paid": not (unpaid_every and i % unpaid_every == 1)}


def post(url, body, timeout=60):
    """(status, parsed JSON reply) of one POST; status 0 when no HTTP answer came."""
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")
    except (urllib.error.URLError, OSError) as e:
        return 0, {"error": str(e)}


def place(base_url, order, deadline_s=60):
    """POSTs order until it is accepted (202) or refused (4xx) or deadline_s passed; returns
    (final status, reply, number of attempts)."""
    body = json.dumps(order).encode()
    end = time.monotonic() + deadline_s
    attempts = 0
    while True:
        attempts += 1
        status, rep = post(base_url.rstrip("/") + "/orders", body)
        if status == 202 or 400 <= status < 500 or time.monotonic() >= end:
            return status, rep, attempts
        time.sleep(0.2)


def send_all(base_url, orders, threads=4, on_result=None, interval=0.0):
    """Places every order from `threads` threads, each pausing interval seconds after each
    order; on_result(order, status, reply, attempts) is called for each (from those
    threads)."""
    lock = threading.Lock()
    todo = list(reversed(orders))

    def run():
        while True:
            with lock:
                if not todo:
                    return
                order = todo.pop()
            status, rep, attempts = place(base_url, order)
            if on_result:
                on_result(order, status, rep, attempts)
            time.sleep(interval)

    ts = [threading.Thread(target=run) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("url")
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--prefix", default="order-%d" % int(time.time()))
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--poison-every", type=int, default=50)
    p.add_argument("--flaky-every", type=int, default=20)
    p.add_argument("--unpaid-every", type=int, default=3)
    p.add_argument("--interval", type=float, default=0.0,
                   help="seconds each thread pauses after each order (default 0)")
    p.add_argument("--accepted")
    a = p.parse_args()
    orders = [make_order(i, a.prefix, a.poison_every, a.flaky_every, a.unpaid_every)
              for i in range(a.count)]
    lock = threading.Lock()
    out = open(a.accepted, "a") if a.accepted else None
    counts = {"accepted": 0, "not accepted": 0, "retried": 0}

    def on_result(order, status, rep, attempts):
        with lock:
            counts["retried"] += attempts > 1
            if status == 202:
                counts["accepted"] += 1
                if out:
                    out.write(json.dumps(order) + "\n")
                    out.flush()
            else:
                counts["not accepted"] += 1
                print("order %s: %s %s" % (order["order_id"], status, rep.get("error")),
                      file=sys.stderr)

    start = time.monotonic()
    send_all(a.url, orders, a.threads, on_result, a.interval)
    print("%d orders: %d accepted (%d after a retry), %d not accepted, in %.1f s" % (
        a.count, counts["accepted"], counts["retried"], counts["not accepted"],
        time.monotonic() - start))
    return 0 if counts["not accepted"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
