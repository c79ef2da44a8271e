"""kyu-worker processes for integration tests, and the --exec handler they run.

The handler (HANDLER below, a Python script) reads Lambda's SQS event from stdin and appends
one JSON line per record to $KYU_TEST_OUT: {"id", "body", "rc" (receive count), "pid",
"phase": "start" | "done"}. $KYU_TEST_SLOW seconds of sleep per batch (after the "start"
lines) make it slow; a body starting with "poison" fails: with $KYU_TEST_REPORT it is named
in batchItemFailures, else the handler exits 1. Every wait is bounded; processes are stopped
by their PID only."""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from harness import BIN_DIR

WORKER = os.path.join(BIN_DIR, "worker", "kyu-worker")

HANDLER = r'''
import json, os, sys, time
ev = json.load(sys.stdin)
out = os.environ["KYU_TEST_OUT"]
recs = ev["Records"]
def note(phase):
    with open(out, "a") as f:
        for r in recs:
            f.write(json.dumps({"id": r["messageId"], "body": r["body"], "phase": phase,
                                "rc": int(r["attributes"]["ApproximateReceiveCount"]),
                                "pid": os.getpid(), "n": len(recs)}) + "\n")
note("start")
time.sleep(float(os.environ.get("KYU_TEST_SLOW", "0")))
failed = [r["messageId"] for r in recs if r["body"].startswith("poison")]
note("done")
if os.environ.get("KYU_TEST_REPORT"):
    print(json.dumps({"batchItemFailures": [{"itemIdentifier": i} for i in failed]}))
    sys.exit(0)
sys.exit(1 if failed else 0)
'''


def write_handler(tmp):
    path = os.path.join(tmp, "handler.py")
    with open(path, "w") as f:
        f.write(HANDLER)
    return "%s %s" % (sys.executable, path)


def records(out):
    """The handler's lines so far."""
    try:
        with open(out) as f:
            return [json.loads(l) for l in f if l.strip()]
    except FileNotFoundError:
        return []


def wait_until(what, cond, deadline_s, interval=0.05):
    """Polls cond until it is true (returns its value) or deadline_s passed; what (a text, or
    a function giving one, called on failure) says what was awaited."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError("not within %s s: %s" % (deadline_s, what() if callable(what) else what))


class Worker:
    """A kyu-worker process; its stderr goes to a log file."""

    def __init__(self, tmp, name, broker, queue, *args, env=None):
        self.log_path = os.path.join(tmp, "worker-%s.log" % name)
        self.log = open(self.log_path, "ab")
        e = dict(os.environ)
        e.update(env or {})
        self.proc = subprocess.Popen([WORKER, "--broker", broker, "--queue", queue,
                                      "--name", name] + list(args),
                                     stdout=self.log, stderr=self.log, env=e)

    def text(self):
        self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def wait_log(self, needle, deadline_s=30):
        return wait_until("%r in the worker's log:\n%s" % (needle, self.text()[-3000:]),
                          lambda: needle in self.text(), deadline_s)

    def signal(self, sig):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout=30):
        return self.proc.wait(timeout=timeout)

    def cleanup(self):
        """Stops the worker; returns its log, and fails when a sanitizer reported in it."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(timeout=30)
        text = self.text()
        self.log.close()
        for bad in ("Sanitizer", "runtime error:"):
            if bad in text:
                raise AssertionError("kyu-worker's log reports a sanitizer error:\n%s" % text[-6000:])
        return text


def kill_pids(pids, handler):
    """Stops handler processes a killed worker left behind (by their PID), only those still
    running the handler: the PID of one that ended may be another process's by now."""
    for pid in set(pids):
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                if handler.split()[-1].encode() not in f.read():
                    continue
            os.kill(pid, signal.SIGKILL)
        except (OSError, TypeError):
            pass


class WorkerFixture:
    """A test's temporary dir, handler, output file and kyu-worker processes: open_workers()
    in setUp, close_workers() in tearDown (stops every worker and the handlers they left, and
    fails when a worker's log reports a sanitizer error)."""

    def open_workers(self, prefix):
        self.tmp = tempfile.mkdtemp(prefix=prefix)
        self.handler = write_handler(self.tmp)
        self.out = os.path.join(self.tmp, "out.jsonl")
        self.workers = []

    def close_workers(self):
        errors = []
        for w in self.workers:
            try:
                w.cleanup()
            except AssertionError as e:
                errors.append(str(e))
        kill_pids((r["pid"] for r in records(self.out)), self.handler)
        return errors

    def remove_workers_dir(self, errors):
        shutil.rmtree(self.tmp, ignore_errors=True)
        if errors:
            raise AssertionError("\n".join(errors))
