#!/usr/bin/env python3
"""Health checks of the kyu image's services in deploy/docker-compose.yml (Python 3 standard
library only; the image has no curl or grep).

    health.py http URL            exit 0 when GET URL answers 200 within 5 s
    health.py worker QUEUE NAME   exit 0 when the cluster's leader holds a session of the
                                  kyu-worker named NAME on QUEUE (`kyu workers QUEUE`: the
                                  worker is connected, registered and heartbeating)
Otherwise exit 1, printing why (docker inspect shows it)."""
import json
import subprocess
import sys
import urllib.request


def http(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            if r.status == 200:
                return 0
            print("%s: HTTP %d" % (url, r.status))
    except OSError as e:
        print("%s: %s" % (url, e))
    return 1


def worker(queue, name):
    try:
        r = subprocess.run(["kyu", "--json", "workers", queue], capture_output=True, text=True,
                           timeout=10)
    except subprocess.TimeoutExpired:
        print("kyu workers %s: no answer within 10 s" % queue)
        return 1
    if r.returncode != 0:
        print("kyu workers %s: %s" % (queue, r.stderr.strip()))
        return 1
    sessions = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
    if any(s.get("name") == name for s in sessions):
        return 0
    print("no session of worker %s on queue %s (%d sessions)" % (name, queue, len(sessions)))
    return 1


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "http":
        sys.exit(http(sys.argv[2]))
    if len(sys.argv) == 4 and sys.argv[1] == "worker":
        sys.exit(worker(sys.argv[2], sys.argv[3]))
    sys.exit(__doc__)
