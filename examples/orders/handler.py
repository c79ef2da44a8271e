#!/usr/bin/env python3
"""The shipping and accounting services of examples/orders: kyu-worker --exec handlers
(Python 3 standard library only).

    handler.py init DB                 creates DB's tables (run.sh does it once)
    handler.py shipping|accounting DB  handles one batch: Lambda's SQS event on stdin, the
                                       failed items as {"batchItemFailures": [...]} on stdout
                                       (kyu-worker --report-batch-item-failures)

Each order is processed at most once per service, however often it is delivered: a record is
delivered again when its handler failed after its effect (a crash before kyu-worker deleted
the message), when a lease ran out, or when the order service published an order twice (a
publish retried after a timeout). The processed-order record is what makes this safe: in
one SQLite transaction the handler inserts the order id into `processed` (order_id is its
primary key) and does the order's effect (a row in `shipments` or `ledger`); when the order
id is there already, it does nothing but note the redelivery in `absorbed`.

Demonstration knobs, by the order's customer:
  "poison": the order fails every time: after maxReceiveCount (3) receives the queue's
            RedrivePolicy moves it to the dead-letter queue.
  "flaky":  on its first delivery the handler commits the order and then reports it failed,
            as if it had crashed before the message was deleted: the redelivery is absorbed.
"""
import json
import sqlite3
import sys
import time

SCHEMA = """
CREATE TABLE IF NOT EXISTS processed (
    order_id TEXT PRIMARY KEY,      -- the processed-order record: one row per order, ever
    message_id TEXT NOT NULL,       -- the queue message that carried it first
    receive_count INTEGER NOT NULL, -- its ApproximateReceiveCount then
    processed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS absorbed (  -- deliveries of orders already processed
    order_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    receive_count INTEGER NOT NULL,
    at REAL NOT NULL
);
-- The effects. No unique constraint here on purpose: an order handled twice would show as
-- two rows (run.sh report and the test count them).
CREATE TABLE IF NOT EXISTS shipments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id TEXT NOT NULL,
    customer TEXT NOT NULL,
    items TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ledger (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id TEXT NOT NULL,
    customer TEXT NOT NULL,
    amount TEXT NOT NULL,
    paid INTEGER NOT NULL
);
"""


def connect(path):
    # isolation_level None: transactions are the explicit BEGIN IMMEDIATE below. Several
    # batches run at once (kyu-worker --max-concurrency): WAL and a busy timeout let them
    # take turns; synchronous FULL: a committed order survives a power cut.
    db = sqlite3.connect(path, timeout=60, isolation_level=None)
    db.execute("PRAGMA synchronous=FULL")
    return db


def init(path):
    db = connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(SCHEMA)
    db.close()


class Failed(Exception):
    pass


def order_of(record):
    """The order a record carries: its body (a raw subscription) or the Message of SNS's
    envelope (a subscription without --raw)."""
    try:
        body = json.loads(record["body"])
        if isinstance(body, dict) and body.get("Type") == "Notification":
            body = json.loads(body["Message"])
        if not isinstance(body, dict) or not isinstance(body.get("order_id"), str):
            raise ValueError("no order_id")
        missing = [k for k in ("customer", "items", "total", "paid") if k not in body]
        if missing:
            raise ValueError("no %s" % ", ".join(missing))
        return body
    except (ValueError, KeyError, TypeError) as e:
        raise Failed("not an order (%s)" % e)


def effect(service, db, order):
    if service == "shipping":
        db.execute("INSERT INTO shipments (order_id, customer, items) VALUES (?, ?, ?)",
                   (order["order_id"], order["customer"], json.dumps(order["items"])))
    else:
        db.execute("INSERT INTO ledger (order_id, customer, amount, paid) VALUES (?, ?, ?, ?)",
                   (order["order_id"], order["customer"], str(order["total"]),
                    1 if order["paid"] else 0))


def process(service, db, record):
    """Handles one record; raises Failed when it must be retried."""
    order = order_of(record)
    oid = order["order_id"]
    rc = int(record["attributes"]["ApproximateReceiveCount"])
    if order.get("customer") == "poison":
        raise Failed("order %s is poison" % oid)
    db.execute("BEGIN IMMEDIATE")
    try:
        cur = db.execute("INSERT OR IGNORE INTO processed VALUES (?, ?, ?, ?)",
                         (oid, record["messageId"], rc, time.time()))
        fresh = cur.rowcount == 1
        if fresh:
            effect(service, db, order)
        else:
            db.execute("INSERT INTO absorbed VALUES (?, ?, ?, ?)",
                       (oid, record["messageId"], rc, time.time()))
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    if fresh and order.get("customer") == "flaky" and rc == 1:
        raise Failed("order %s is flaky: committed, then failed before its delete" % oid)


def handle(service, path):
    event = json.load(sys.stdin)
    db = connect(path)
    failures = []
    for record in event["Records"]:
        try:
            process(service, db, record)
        except Failed as e:
            print("%s: message %s: %s" % (service, record["messageId"], e), file=sys.stderr)
            failures.append({"itemIdentifier": record["messageId"]})
    db.close()
    json.dump({"batchItemFailures": failures}, sys.stdout)


def main(argv):
    if len(argv) == 3 and argv[1] == "init":
        init(argv[2])
    elif len(argv) == 3 and argv[1] in ("shipping", "accounting"):
        handle(argv[1], argv[2])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
