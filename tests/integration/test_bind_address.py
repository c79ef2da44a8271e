"""A node behind NAT (issue 16): it binds --bind-client and --bind-raft while its --peer entry
advertises other addresses, which a relay (here a TCP forwarder per address, standing for the
NAT or a container's published port) carries to the bound ones. Peers and clients reach the
nodes only through the advertised addresses: the cluster must elect, replicate and redirect
clients there."""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

from harness import BROKER, CLI, free_port, sanitizer_report


class Forwarder:
    """Listens on 127.0.0.1:port and relays each connection to 127.0.0.1:to, both ways."""

    def __init__(self, port, to):
        self.to = to
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(64)
        self.conns = []
        self.relayed = 0
        self.closed = False
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while not self.closed:
            try:
                a, _ = self.sock.accept()
            except OSError:
                return
            try:
                b = socket.create_connection(("127.0.0.1", self.to), timeout=5)
                b.settimeout(None)
            except OSError:
                a.close()
                continue
            self.conns += [a, b]
            for src, dst in ((a, b), (b, a)):
                threading.Thread(target=self.pipe, args=(src, dst), daemon=True).start()

    def pipe(self, src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                self.relayed += len(data)
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self.closed = True
        self.sock.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass


class BindAddress(unittest.TestCase):
    def setUp(self):
        self.data = tempfile.mkdtemp(prefix="kyu-bind-")
        self.forwarders = []
        self.procs = []
        self.logs = []
        nodes = []
        for i in (1, 2, 3):
            adv_raft, adv_client, bind_raft, bind_client = (free_port() for _ in range(4))
            self.forwarders += [Forwarder(adv_raft, bind_raft), Forwarder(adv_client, bind_client)]
            nodes.append((i, adv_raft, adv_client, bind_raft, bind_client))
        peers = []
        for i, adv_raft, adv_client, _, _ in nodes:
            peers += ["--peer", "%d,127.0.0.1:%d,tcp://127.0.0.1:%d" % (i, adv_raft, adv_client)]
        for i, _, _, bind_raft, bind_client in nodes:
            log = open(os.path.join(self.data, "broker-%d.log" % i), "ab")
            self.logs.append(log)
            self.procs.append(subprocess.Popen(
                [BROKER, "--node-id", str(i), "--data", os.path.join(self.data, "db-%d" % i),
                 "--bind-raft", "127.0.0.1:%d" % bind_raft,
                 "--bind-client", "tcp://127.0.0.1:%d" % bind_client] + peers,
                stdout=log, stderr=log))
        self.advertised = ["tcp://127.0.0.1:%d" % n[2] for n in nodes]

    def tearDown(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(timeout=30)
        for f in self.forwarders:
            f.close()
        for log in self.logs:
            log.close()
        reports = [sanitizer_report(log.name) for log in self.logs]
        shutil.rmtree(self.data, ignore_errors=True)
        if any(reports):
            raise AssertionError("a kyu-broker's log has a sanitizer report:\n%s" % "\n".join(reports))

    def cli(self, *args, endpoint=None, timeout=60):
        return subprocess.run([CLI, "--broker", endpoint or ",".join(self.advertised)] + list(args),
                              capture_output=True, timeout=timeout)

    def ok(self, *args, endpoint=None):
        r = self.cli(*args, endpoint=endpoint)
        if r.returncode != 0:
            raise AssertionError("kyu %s failed (%d): %s" % (" ".join(args), r.returncode,
                                                             r.stderr.decode()))
        return r.stdout.decode()

    def status(self):
        r = self.cli("--json", "cluster", "status")
        return [json.loads(l) for l in r.stdout.decode().splitlines() if l]

    def test_a_cluster_behind_relays_elects_replicates_and_redirects_by_advertised_address(self):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.cli("create-queue", "jobs", timeout=10).returncode == 0:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("no leader through the relays within 60 s:\n%s" % self.status())
        bodies = ["job-%d" % i for i in range(20)]
        for b in bodies:
            self.ok("send", "jobs", b)
        # Every node applies every entry: the raft traffic went through the advertised
        # addresses (the only ones a peer knows), and each reports its advertised endpoint.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            st = self.status()
            lead = [s for s in st if s["role"] == "leader"]
            if (len(st) == 3 and lead and
                    all(s["applied_index"] >= lead[0]["commit_index"] for s in st)):
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the nodes did not converge within 60 s: %s" % self.status())
        self.assertEqual(sorted(s["endpoint"] for s in st), sorted(self.advertised))
        # A client given only a follower's advertised endpoint is sent to the leader's.
        follower = next(s["endpoint"] for s in st if s["role"] != "leader")
        got = []
        deadline = time.monotonic() + 60
        while len(got) < len(bodies) and time.monotonic() < deadline:
            out = self.ok("--json", "receive", "jobs", "--max", "10", "--visibility-timeout",
                          "600", endpoint=follower)
            got += [json.loads(l)["Body"] for l in out.splitlines() if l]
        self.assertEqual(sorted(got), sorted(bodies))
        self.assertTrue(all(f.relayed > 0 for f in self.forwarders),
                        "every advertised address carried traffic")

    def test_a_bad_bind_address_is_refused(self):
        for args, says in ((["--bind-raft", "nope"], "--bind-raft must be HOST:PORT"),
                           (["--bind-raft", "127.0.0.1:5"], "--bind-raft needs a cluster")):
            r = subprocess.run([BROKER, "--data", os.path.join(self.data, "x")] + args,
                               capture_output=True, timeout=30)
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn(says, r.stderr.decode())


if __name__ == "__main__":
    unittest.main()
