"""Helpers for integration tests: real kyu-broker processes on 127.0.0.1 with temporary data
directories, driven through the kyu CLI. Every wait is bounded by a deadline; processes are
stopped by their PID only."""
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time

BIN_DIR = os.environ.get("KYU_BIN_DIR", os.path.join(os.path.dirname(__file__), "../../build"))
BROKER = os.path.join(BIN_DIR, "broker", "kyu-broker")
CLI = os.path.join(BIN_DIR, "client", "kyu")


_PICKED = set()


def free_port():
    """A port no process is listening on, chosen below the kernel's ephemeral range
    (net.ipv4.ip_local_port_range, 32768 and up by default) so that no outgoing connection (a
    node dialling its peers, a CLI) can take it between this pick and the broker's bind; never
    the same port twice in one test process."""
    low = 10000
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            high = int(f.read().split()[0]) - 1
    except (OSError, ValueError, IndexError):
        high = 32767
    rng = random.SystemRandom()
    for _ in range(1000):
        port = rng.randint(low, max(low, high))
        if port in _PICKED:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _PICKED.add(port)
        return port
    raise AssertionError("no free port found below the ephemeral range")


class Broker:
    """A kyu-broker process; restartable on the same data directory and port."""

    def __init__(self, *extra_args):
        self.data = tempfile.mkdtemp(prefix="kyu-it-")
        self.endpoint = "tcp://127.0.0.1:%d" % free_port()
        self.extra = list(extra_args)
        self.proc = None
        self.log = open(os.path.join(self.data, "broker.log"), "ab")

    def start(self):
        self.proc = subprocess.Popen(
            [BROKER, "--data", os.path.join(self.data, "db"), "--listen", self.endpoint] + self.extra,
            stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("kyu-broker exited with %s; log:\n%s" % (self.proc.returncode, self.read_log()))
            if self.cli("list-queues", timeout=5).returncode == 0:
                return self
            time.sleep(0.05)
        raise AssertionError("kyu-broker did not answer within 30 s")

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
                raise AssertionError("kyu-broker did not stop on SIGTERM within 30 s")
        return self.proc.returncode if self.proc else None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def read_log(self):
        self.log.flush()
        with open(os.path.join(self.data, "broker.log"), "rb") as f:
            return f.read().decode(errors="replace")

    def cleanup(self):
        try:
            if self.proc and self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=30)
        finally:
            self.log.close()
            shutil.rmtree(self.data, ignore_errors=True)

    def cli(self, *args, input=None, timeout=60):
        return subprocess.run([CLI, "--broker", self.endpoint] + list(args), input=input,
                              capture_output=True, timeout=timeout)

    def ok(self, *args, input=None):
        r = self.cli(*args, input=input)
        if r.returncode != 0:
            raise AssertionError("kyu %s failed (%d): %s" % (" ".join(args), r.returncode, r.stderr.decode()))
        return r.stdout.decode()

    def json_lines(self, *args, input=None):
        return [json.loads(l) for l in self.ok("--json", *args, input=input).splitlines() if l]

    def attributes(self, queue):
        """Numbers as ints; RedrivePolicy, RedriveAllowPolicy (JSON text) and Tags as given."""
        return {k: int(v) if isinstance(v, str) and v.lstrip("-").isdigit() else v
                for k, v in self.json_lines("get-queue-attributes", queue)[0].items()}

    def drain(self, queue, vt=600):
        """Receives until the queue returns nothing; returns every message received."""
        got = []
        for _ in range(100000):
            batch = self.json_lines("receive", queue, "--max", "10", "--visibility-timeout", str(vt))
            if not batch:
                return got
            got.extend(batch)
        raise AssertionError("queue did not drain")
