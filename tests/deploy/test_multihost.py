"""The multi-host layout (docs/OPERATIONS.md "Several hosts"): deploy/docker-compose.host.yml
run as three compose projects, one broker per "host", each host a network namespace of its
own on a docker network of its own (10.S.1.0/24, 10.S.2.0/24, 10.S.3.0/24). A router
container sits on the three networks with IP forwarding on; each host's namespace routes the
other two networks through it (the docker networks themselves are not joined: docker drops
traffic between bridges). Each broker advertises its host's address (KYU_PEERS) and binds
every interface of its namespace (KYU_BIND_*); clients run in one host's namespace and list
the three advertised endpoints: deploy/docker-compose.workers.yml (the orders example's setup,
orders-service and two kyu-workers) in host 2's, the CLI and the order sender in others'.
The test shows the cluster forms (a leader, each broker's health check healthy), serves
(messages sent from host 1's namespace, orders POSTed from host 1 to the service on host 2),
survives the leader's host's broker being killed (docker kill: SIGKILL; sends and orders go
on through the two others), that the killed broker comes back from its volume and catches up,
and that no acknowledged message is lost, none delivered twice, every order processed once.
Needs a docker engine and docker-compose; skipped without them. Every wait is bounded; the
test removes the containers, networks, volumes and images it creates."""
import json
import os
import random
import shutil
import subprocess
import tempfile
import time
import unittest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../..")
BIN_DIR = os.environ.get("KYU_BIN_DIR", os.path.join(ROOT, "build"))
HOST_COMPOSE = os.path.join(ROOT, "deploy", "docker-compose.host.yml")
WORKERS_COMPOSE = os.path.join(ROOT, "deploy", "docker-compose.workers.yml")
WORKERS_HOST = 2  # the host whose namespace the orders-service and the workers run in
TAG = "kyumh%d" % os.getpid()
IMAGE = "kyu:%s" % TAG
NETUTIL = "kyu-netutil:%s" % TAG  # ip, sh and sleep from this machine, on an empty root
HOSTS = (1, 2, 3)
ENV = dict(os.environ, KYU_IMAGE=IMAGE)


def run(args, timeout=120, env=ENV, input=None):
    return subprocess.run(args, capture_output=True, timeout=timeout, env=env, input=input)


def must(args, timeout=120, env=ENV):
    r = run(args, timeout=timeout, env=env)
    if r.returncode != 0:
        raise AssertionError("%s: %s" % (" ".join(args), (r.stderr or r.stdout).decode()[-2000:]))
    return r.stdout.decode()


def build_netutil():
    """A small image of this machine's ip, sh and sleep and the libraries they load."""
    ctx = tempfile.mkdtemp(prefix="kyu-netutil-")
    try:
        bins = [shutil.which("ip") or "/usr/sbin/ip", "/bin/sh", shutil.which("sleep")]
        libs = set()
        for line in must(["ldd"] + bins).splitlines():
            parts = line.split()
            if "=>" in parts and len(parts) > 2 and parts[2].startswith("/"):
                libs.add(parts[2])
            elif parts and parts[0].startswith("/") and not parts[0].endswith(":"):
                libs.add(parts[0])
        for f, dest in [(b, "/bin/" + os.path.basename(b)) for b in bins] + [(l, l) for l in libs]:
            os.makedirs(os.path.dirname(ctx + "/root" + dest), exist_ok=True)
            shutil.copy(os.path.realpath(f), ctx + "/root" + dest)
        with open(ctx + "/Dockerfile", "w") as f:
            f.write("FROM scratch\nCOPY root/ /\nENV PATH=/bin\n")
        must(["docker", "build", "-q", "-t", NETUTIL, ctx], timeout=300)
    finally:
        shutil.rmtree(ctx, ignore_errors=True)


class MultiHost(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not shutil.which("docker") or not shutil.which("docker-compose"):
            raise unittest.SkipTest("docker and docker-compose are needed for the deployment test")
        if run(["docker", "info"], timeout=60).returncode != 0:
            raise unittest.SkipTest("no docker engine answers")
        cls.created = {"networks": [], "containers": [], "projects": []}
        try:
            cls.setUpHosts()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def setUpHosts(cls):
        must([os.path.join(ROOT, "scripts", "docker_image.sh"), BIN_DIR], timeout=300)
        build_netutil()
        # Three networks of their own; a second octet that no docker network uses.
        used = must(["docker", "network", "inspect", "-f",
                     "{{range .IPAM.Config}}{{.Subnet}} {{end}}"] +
                    must(["docker", "network", "ls", "-q"]).split()).split()
        octets = [o for o in range(200, 250) if not any(u.startswith("10.%d." % o) for u in used)]
        cls.s = random.choice(octets)
        cls.net = {h: "%s-host%d" % (TAG, h) for h in HOSTS}
        cls.addr = {h: "10.%d.%d.10" % (cls.s, h) for h in HOSTS}
        for h in HOSTS:
            must(["docker", "network", "create", "--subnet", "10.%d.%d.0/24" % (cls.s, h),
                  cls.net[h]])
            cls.created["networks"].append(cls.net[h])
        # The router: on every network (address .254), forwarding between them.
        router = TAG + "-router"
        cls.created["containers"].append(router)
        must(["docker", "run", "-d", "--name", router, "--network", cls.net[1],
              "--ip", "10.%d.1.254" % cls.s, "--sysctl", "net.ipv4.ip_forward=1",
              NETUTIL, "sleep", "100000"])
        for h in HOSTS[1:]:
            must(["docker", "network", "connect", "--ip", "10.%d.%d.254" % (cls.s, h),
                  cls.net[h], router])
        # Each host: a network namespace (a container holding it) with the host's address and
        # routes to the other hosts' networks through the router.
        cls.ns = {h: "%s-ns%d" % (TAG, h) for h in HOSTS}
        for h in HOSTS:
            routes = " && ".join("ip route add 10.%d.%d.0/24 via 10.%d.%d.254" % (cls.s, o, cls.s, h)
                                 for o in HOSTS if o != h)
            cls.created["containers"].append(cls.ns[h])
            must(["docker", "run", "-d", "--name", cls.ns[h], "--network", cls.net[h],
                  "--ip", cls.addr[h], "--cap-add", "NET_ADMIN", NETUTIL, "sh", "-c",
                  routes + " && exec sleep 100000"])
        # The brokers: deploy/docker-compose.host.yml once per host, a compose project each.
        cls.endpoints = ",".join("tcp://%s:7700" % cls.addr[h] for h in HOSTS)
        for h in HOSTS:
            cls.created["projects"].append(h)
            cls.compose(h, "up", "-d")
        # The orders example's clients, in another host's namespace (they wait for the setup,
        # which waits for the cluster to answer).
        cls.created["projects"].insert(0, "workers")
        cls.compose("workers", "up", "-d")

    @classmethod
    def host_env(cls, h):
        if h == "workers":
            return dict(ENV, KYU_NETWORK_MODE="container:" + cls.ns[WORKERS_HOST],
                        KYU_BROKERS=cls.endpoints, KYU_ORDERS_LISTEN="0.0.0.0:8080")
        return dict(ENV, KYU_NODE_ID=str(h), KYU_NETWORK_MODE="container:" + cls.ns[h],
                    KYU_RESTART="no",  # the test kills a broker and starts it again itself
                    KYU_PEERS=";".join("%d,%s:7701,tcp://%s:7700" % (o, cls.addr[o], cls.addr[o])
                                       for o in HOSTS))

    @classmethod
    def compose_args(cls, h):
        if h == "workers":
            return ["docker-compose", "-p", TAG + "-workers", "-f", WORKERS_COMPOSE]
        return ["docker-compose", "-p", "%s-h%d" % (TAG, h), "-f", HOST_COMPOSE]

    @classmethod
    def compose(cls, h, *args, timeout=180):
        return must(cls.compose_args(h) + list(args), timeout=timeout, env=cls.host_env(h))

    @classmethod
    def tearDownClass(cls):
        created = getattr(cls, "created", None)
        if created is None:
            return
        for h in created["projects"]:
            run(cls.compose_args(h) + ["down", "-v", "-t", "30"], timeout=180, env=cls.host_env(h))
        for c in reversed(created["containers"]):
            run(["docker", "rm", "-f", c], timeout=60)
        for n in created["networks"]:
            run(["docker", "network", "rm", n], timeout=60)
        run(["docker", "rmi", "-f", IMAGE, NETUTIL], timeout=120)

    def broker_container(self, h):
        return "%s-h%d_broker_1" % (TAG, h)

    def kyu(self, *args, host=1, input=None, timeout=120):
        """The kyu CLI in a throwaway container in host's network namespace."""
        return run(["docker", "run", "--rm"] + (["-i"] if input else []) +
                   ["--network", "container:" + self.ns[host], "--entrypoint", "/usr/local/bin/kyu",
                    IMAGE, "--broker", self.endpoints] + list(args), timeout=timeout, input=input)

    def ok(self, *args, host=1, input=None):
        r = self.kyu(*args, host=host, input=input)
        if r.returncode != 0:
            raise AssertionError("kyu %s failed (%d): %s" % (" ".join(args), r.returncode,
                                                            r.stderr.decode()))
        return r.stdout.decode()

    def status(self, host=1):
        r = self.kyu("--json", "cluster", "status", host=host, timeout=60)
        return [json.loads(l) for l in r.stdout.decode().splitlines() if l.strip()]

    def leader(self, host=1, deadline_s=90):
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            lead = [s for s in self.status(host) if s["role"] == "leader"]
            if lead and self.kyu("list-queues", host=host, timeout=30).returncode == 0:
                return lead[0]
            time.sleep(0.5)
        raise AssertionError("no leader within %d s: %s" % (deadline_s, self.status(host)))

    def wait_healthy(self, hosts, deadline_s=180):
        """Bounded wait until the brokers of hosts (or these containers) report healthy."""
        deadline = time.monotonic() + deadline_s
        health = {}
        while time.monotonic() < deadline:
            for h in hosts:
                c = self.broker_container(h) if isinstance(h, int) else h
                health[h] = run(["docker", "inspect", "-f", "{{.State.Health.Status}}", c],
                                timeout=30).stdout.decode().strip()
            if all(v == "healthy" for v in health.values()):
                return
            time.sleep(1)
        raise AssertionError("brokers not healthy within %d s: %s" % (deadline_s, health))

    def send(self, prefix, n, host=1):
        out = self.ok("--json", "send", "mh", "--lines", host=host,
                      input="".join("%s-%d\n" % (prefix, i) for i in range(n)).encode())
        return [json.loads(l)["MessageId"] for l in out.splitlines() if l.strip()]

    def place_orders(self, prefix, n, host):
        """Orders POSTed from a container in host's namespace to the service on WORKERS_HOST's
        (send_orders.py retries each until it is accepted); the accepted ones."""
        r = run(["docker", "run", "--rm", "--network", "container:" + self.ns[host],
                 "--entrypoint", "python3", IMAGE, "/usr/local/share/kyu/orders/send_orders.py",
                 "http://%s:8080" % self.addr[WORKERS_HOST], "--count", str(n), "--prefix", prefix,
                 "--threads", "2", "--accepted", "/dev/stdout"], timeout=300)
        self.assertEqual(r.returncode, 0, (r.stdout + r.stderr).decode()[-2000:])
        return [json.loads(l) for l in r.stdout.decode().splitlines() if l.startswith("{")]

    def records(self, service):
        """The order ids the handler of service processed, and its effects' count."""
        r = run(["docker", "exec", "%s-workers_worker-%s_1" % (TAG, service), "python3", "-c",
                 "import json, sqlite3, sys; db = sqlite3.connect('file:/records/%s.db?mode=ro', "
                 "uri=True, timeout=30); print(json.dumps([[r[0] for r in db.execute("
                 "'SELECT order_id FROM processed')], db.execute('SELECT COUNT(*) FROM %s')"
                 ".fetchone()[0]]))" % (service, {"shipping": "shipments",
                                                  "accounting": "ledger"}[service])], timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        return json.loads(r.stdout)

    def queue_empty(self, queue):
        a = dict(l.split(" ", 1) for l in self.ok("get-queue-attributes", queue).splitlines())
        return all(a[k] == "0" for k in ("ApproximateNumberOfMessages",
                                         "ApproximateNumberOfMessagesNotVisible",
                                         "ApproximateNumberOfMessagesDelayed"))

    def test_three_hosts_form_a_cluster_that_survives_a_killed_host_broker(self):
        lead = self.leader()
        self.wait_healthy(HOSTS)
        # Every node knows the others by their advertised addresses, the hosts' own.
        st = {s["id"]: s for s in self.status()}
        self.assertEqual(sorted(st), list(HOSTS), st)
        # The traffic between hosts goes through the router: each namespace's route to the
        # other hosts' networks names it.
        for h in HOSTS:
            other = HOSTS[h % 3]
            route = must(["docker", "exec", self.ns[h], "ip", "route", "get", self.addr[other]])
            self.assertIn("via 10.%d.%d.254" % (self.s, h), route)
        # Clients anywhere: a client in host 3's namespace reaches the cluster too.
        self.assertEqual(self.kyu("list-queues", host=3).returncode, 0)

        for c in ("orders-service", "worker-shipping", "worker-accounting"):
            self.wait_healthy(("%s-workers_%s_1" % (TAG, c),))
        orders = self.place_orders("mh1", 40, host=1)

        self.ok("create-queue", "mh", "--visibility-timeout", "600")
        acked = self.send("a", 150)
        gone = [json.loads(l) for l in self.ok("--json", "receive", "mh", "--max", "10").splitlines()
                if l.strip()]
        self.assertEqual(len(gone), 10)
        self.ok("delete", "mh", *[m["ReceiptHandle"] for m in gone])

        # The leader's host loses its broker (SIGKILL); the two other hosts go on, clients
        # of host 1 and of another host alike.
        lead = self.leader()
        dead = lead["id"]
        must(["docker", "kill", "-s", "KILL", self.broker_container(dead)])
        alive = [h for h in HOSTS if h != dead]
        acked += self.send("b", 100, host=alive[0])
        acked += self.send("c", 50, host=alive[1])
        self.assertEqual(len(acked), 300)
        orders += self.place_orders("mh2", 40, host=alive[0])
        self.assertNotEqual(self.leader(host=alive[0])["id"], dead)

        # The killed broker comes back from its volume and catches up.
        must(["docker", "start", self.broker_container(dead)])
        deadline = time.monotonic() + 90
        while True:
            st = {s["id"]: s for s in self.status(host=alive[0])}
            back, now = st.get(dead), [s for s in st.values() if s["role"] == "leader"]
            if back and now and back["role"] == "follower" and \
                    back["applied_index"] >= now[0]["commit_index"]:
                break
            self.assertLess(time.monotonic(), deadline, "node %d did not catch up: %s" % (dead, st))
            time.sleep(0.5)
        self.wait_healthy((dead,))

        # Nothing acknowledged lost, nothing deleted back, nothing twice (read from the host
        # whose broker was killed).
        got = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            batch = [json.loads(l) for l in self.ok("--json", "receive", "mh", "--max", "10",
                                                    host=dead).splitlines() if l.strip()]
            if not batch:
                break
            got += batch
        ids = [m["MessageId"] for m in got]
        self.assertEqual(len(ids), len(set(ids)), "a message was delivered twice")
        self.assertEqual(set(ids), set(acked) - {m["MessageId"] for m in gone},
                         "every acknowledged message, and no deleted one, is there")

        # Every accepted order processed once by shipping, the paid ones by accounting (the
        # poison ones go to the dead-letter queues).
        self.assertEqual(len(orders), 80)
        ok = {o["order_id"] for o in orders if o["customer"] != "poison"}
        paid = {o["order_id"] for o in orders if o["paid"]} & ok
        deadline = time.monotonic() + 120
        while True:
            ship, acct = self.records("shipping"), self.records("accounting")
            if set(ship[0]) >= ok and set(acct[0]) >= paid and self.queue_empty("shipping") and \
                    self.queue_empty("accounting"):
                break
            self.assertLess(time.monotonic(), deadline, "orders not processed: shipping %d of %d, "
                            "accounting %d of %d" % (len(ship[0]), len(ok), len(acct[0]), len(paid)))
            time.sleep(1)
        self.assertEqual((set(ship[0]), ship[1]), (ok, len(ok)))
        self.assertEqual((set(acct[0]), acct[1]), (paid, len(paid)))


if __name__ == "__main__":
    unittest.main()
