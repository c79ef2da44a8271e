"""scripts/docker_image.sh --context: the build context deploy/Dockerfile is built from, for
both bases, assembled without docker.
- scratch (the empty root): the five programs, every library they load, /bin/sh, python3 with
  its sqlite3 module and the library that module loads, the orders handler and the health
  checks; no package list (nothing to install).
- a Debian base image (--base debian:bookworm-slim): kyu's files only, and the list of the
  Debian packages that provide the libraries the programs load, with python3; no library
  copied. (Building that image needs a registry to pull the base from: not done here.)"""
import os
import shutil
import subprocess
import tempfile
import unittest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../..")
BIN_DIR = os.environ.get("KYU_BIN_DIR", os.path.join(ROOT, "build"))
PROGRAMS = ("kyu-broker", "kyu", "kyu-bench", "kyu-worker", "orders-service")


class ImageContext(unittest.TestCase):
    def setUp(self):
        if not os.path.exists(os.path.join(BIN_DIR, "examples/orders/orders-service")):
            self.skipTest("orders-service is not built (libmicrohttpd-dev)")
        self.tmp = tempfile.mkdtemp(prefix="kyu-image-context-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def context(self, *args):
        ctx = os.path.join(self.tmp, "ctx")
        r = subprocess.run([os.path.join(ROOT, "scripts", "docker_image.sh"), "--context", ctx] +
                           list(args) + [BIN_DIR], capture_output=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        return ctx

    def libraries(self, *files):
        out = subprocess.run(["ldd"] + list(files), capture_output=True, text=True).stdout
        return {p[2] for p in (l.split() for l in out.splitlines())
                if len(p) > 2 and p[1] == "=>" and p[2].startswith("/")}

    def test_the_empty_root_holds_every_program_and_what_it_loads(self):
        ctx = self.context()
        root = os.path.join(ctx, "root")
        with open(os.path.join(ctx, "Dockerfile")) as f:
            self.assertIn("FROM ${BASE}", f.read())
        for p in PROGRAMS:
            self.assertTrue(os.access(os.path.join(root, "usr/local/bin", p), os.X_OK), p)
        for f in ("bin/sh", "usr/bin/python3", "usr/local/lib/kyu/image-setup.sh",
                  "usr/local/lib/kyu/health.py", "usr/local/share/kyu/orders/handler.py"):
            self.assertTrue(os.path.exists(os.path.join(root, f)), f)
        progs = [os.path.join(root, "usr/local/bin", p) for p in PROGRAMS]
        for lib in self.libraries(*progs):
            self.assertTrue(os.path.exists(root + lib), "%s not in the image" % lib)
        sqlite = [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(root, "usr/lib"))
                  for f in fs if f.startswith("_sqlite3.") and f.endswith(".so")]
        self.assertEqual(len(sqlite), 1, "python3's sqlite3 module")
        for lib in self.libraries(sqlite[0]):
            self.assertTrue(os.path.exists(root + lib), "%s not in the image" % lib)
        self.assertFalse(os.path.exists(os.path.join(root, "usr/local/lib/kyu/packages")))
        self.assertFalse(os.path.exists(os.path.join(root, "usr/lib/python3.11/test")))

    def test_a_debian_base_gets_the_packages_instead_of_the_libraries(self):
        if not shutil.which("dpkg"):
            self.skipTest("not a Debian machine (dpkg)")
        ctx = self.context("--base", "debian:bookworm-slim")
        root = os.path.join(ctx, "root")
        with open(os.path.join(root, "usr/local/lib/kyu/packages")) as f:
            packages = f.read().split()
        for want in ("libzmq5", "libjansson4", "python3"):
            self.assertIn(want, packages)
        for prefix in ("librocksdb", "libmicrohttpd", "libcurl"):
            self.assertTrue([p for p in packages if p.startswith(prefix)], prefix)
        for p in PROGRAMS:
            self.assertTrue(os.access(os.path.join(root, "usr/local/bin", p), os.X_OK), p)
        copied = [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs]
        self.assertEqual([f for f in copied if ".so" in f or f.endswith("/sh")], [])


if __name__ == "__main__":
    unittest.main()
