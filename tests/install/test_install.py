#!/usr/bin/env python3
"""install_libkyu: libkyu installs as other C libraries do, and a program builds against the
installed copy with `pkg-config --cflags --libs libkyu` alone.

Installs the build (cmake --install) into a temporary prefix and checks what is there: the
shared library and its SONAME, the headers (self-contained: each includes only installed
headers and standard C ones, and kyu.h alone compiles with -std=c11 -pedantic), the exported
symbols (exactly the functions the installed headers declare, under the version node
LIBKYU_0) and libkyu.pc. Then builds each example program given on the command line with
`cc -Wall -Wextra -Werror EXAMPLE $(pkg-config --cflags --libs libkyu)` and runs it against
a real kyu-broker, after creating QUEUE and sending it 3 messages:

    EXAMPLE ENDPOINT QUEUE

An example either exits by itself, or serves the queue until SIGTERM (a consumer: the test
sends it SIGTERM once QUEUE is empty, within 60 s); either way it must exit 0 within 120 s
in all and leave QUEUE empty (it received and deleted every message).

Usage: test_install.py --build-dir DIR --cmake CMAKE --libdir LIBDIR --version V
       [--cc CC] [--cflags FLAGS] EXAMPLE.c...
KYU_BIN_DIR (for tests/integration/harness.py) names the build directory's broker and CLI."""
import argparse
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import harness  # noqa: E402

# The C library headers (C11) an installed header may include besides its own.
STANDARD_HEADERS = {
    "assert.h", "complex.h", "ctype.h", "errno.h", "fenv.h", "float.h", "inttypes.h",
    "iso646.h", "limits.h", "locale.h", "math.h", "setjmp.h", "signal.h", "stdalign.h",
    "stdarg.h", "stdatomic.h", "stdbool.h", "stddef.h", "stdint.h", "stdio.h", "stdlib.h",
    "stdnoreturn.h", "string.h", "tgmath.h", "threads.h", "time.h", "uchar.h", "wchar.h",
    "wctype.h",
}
VERSION_NODE = "LIBKYU_0"
SONAME = "libkyu.so.0"


def step(what):
    print("install_libkyu: " + what, flush=True)


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=kw.pop("timeout", 300), **kw)
    if r.returncode != 0:
        raise AssertionError("%s failed (%d):\n%s%s" % (" ".join(cmd), r.returncode, r.stdout, r.stderr))
    return r.stdout


def declared_functions(header_dir):
    """The kyu_* functions the installed headers declare (a lowercase kyu_ name followed by
    "(" outside comments)."""
    names = set()
    for name in os.listdir(header_dir):
        with open(os.path.join(header_dir, name)) as f:
            code = re.sub(r"/\*.*?\*/", "", f.read(), flags=re.S)
        code = re.sub(r"//[^\n]*", "", code)
        code = re.sub(r"typedef[^;{]*;", "", code)  # a function type is no symbol
        names.update(re.findall(r"\b(kyu_[a-z0-9_]+)\s*\(", code))
    return names


def check_library(libdir):
    for f in ("libkyu.so", SONAME):
        if not os.path.islink(os.path.join(libdir, f)):
            raise AssertionError("%s/%s is missing or not a symbolic link" % (libdir, f))
    real = os.path.realpath(os.path.join(libdir, "libkyu.so"))
    if os.path.dirname(real) != os.path.realpath(libdir) or not os.path.basename(real).startswith(SONAME + "."):
        raise AssertionError("libkyu.so points to %s, not to %s.*" % (real, SONAME))
    dyn = run(["readelf", "-d", real])
    m = re.search(r"\(SONAME\)\s+Library soname: \[([^\]]+)\]", dyn)
    if not m or m.group(1) != SONAME:
        raise AssertionError("SONAME of %s is %s, expected %s" % (real, m and m.group(1), SONAME))
    return real


def check_headers(incdir):
    kyudir = os.path.join(incdir, "kyu")
    if not os.path.isfile(os.path.join(kyudir, "kyu.h")):
        raise AssertionError("include/kyu/kyu.h is not installed")
    for name in sorted(os.listdir(kyudir)):
        with open(os.path.join(kyudir, name)) as f:
            text = f.read()
        if "@kyu-internal" in text:
            raise AssertionError("include/kyu/%s kept an internal section marker" % name)
        for kind, inc in re.findall(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', text, flags=re.M):
            if kind == '"' and not os.path.isfile(os.path.join(kyudir, inc)):
                raise AssertionError('include/kyu/%s includes "%s", which is not installed' % (name, inc))
            if kind == "<" and inc not in STANDARD_HEADERS:
                raise AssertionError("include/kyu/%s includes <%s>, not a standard C header" % (name, inc))
    return kyudir


def check_symbols(lib, kyudir):
    out = run(["nm", "-D", "--defined-only", lib])
    exported = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        sym = parts[2]
        name, _, version = sym.partition("@@")
        if parts[1] == "A" and name == VERSION_NODE:
            continue
        exported[name] = version
    declared = declared_functions(kyudir)
    if not declared:
        raise AssertionError("no function declared in the installed headers")
    extra = sorted(set(exported) - declared)
    missing = sorted(declared - set(exported))
    unversioned = sorted(n for n, v in exported.items() if v != VERSION_NODE)
    if extra:
        raise AssertionError("libkyu exports symbols its headers do not declare: %s" % ", ".join(extra))
    if missing:
        raise AssertionError("functions declared in include/kyu/ but not exported by libkyu: %s"
                             % ", ".join(missing))
    if unversioned:
        raise AssertionError("symbols not under %s: %s" % (VERSION_NODE, ", ".join(unversioned)))
    return len(exported)


def check_pkgconfig(prefix, libdir, lib, version):
    pc = os.path.join(libdir, "pkgconfig", "libkyu.pc")
    if not os.path.isfile(pc):
        raise AssertionError("lib/pkgconfig/libkyu.pc is not installed")
    env = dict(os.environ, PKG_CONFIG_PATH=os.path.dirname(pc))
    env.pop("PKG_CONFIG_LIBDIR", None)
    got = run(["pkg-config", "--modversion", "libkyu"], env=env).strip()
    if got != version:
        raise AssertionError("pkg-config --modversion libkyu: %s, expected %s" % (got, version))
    pc_prefix = run(["pkg-config", "--variable=prefix", "libkyu"], env=env).strip()
    if os.path.realpath(pc_prefix) != os.path.realpath(prefix):
        raise AssertionError("libkyu.pc's prefix is %s, installed in %s" % (pc_prefix, prefix))
    # Requires.private must name modules that exist (--static resolves them), and with
    # Libs.private cover every library libkyu.so needs (but the C and compiler runtimes).
    static = run(["pkg-config", "--static", "--libs", "libkyu"], env=env).split()
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[lib([^.\]]+)\.so", run(["readelf", "-d", lib]))
    runtime = {"c", "pthread", "dl", "rt", "gcc_s", "asan", "ubsan", "stdc++"}
    uncovered = sorted(n for n in needed if n not in runtime and "-l" + n not in static)
    if uncovered:
        raise AssertionError("libkyu.so needs %s, which libkyu.pc's Requires.private/Libs.private "
                             "do not give (pkg-config --static --libs: %s)"
                             % (", ".join(uncovered), " ".join(static)))
    return shlex.split(run(["pkg-config", "--cflags", "--libs", "libkyu"], env=env))


def check_header_alone(cc, cflags, flags, outdir):
    """kyu.h alone, in strict C11: it must not lean on what a program includes before it."""
    src = os.path.join(outdir, "kyu_h_alone.c")
    with open(src, "w") as f:
        f.write("#include <kyu.h>\nint main(void) { kyu_err_t e; kyu_err_clear(&e); return (int)e.code; }\n")
    run([cc, "-std=c11", "-pedantic", "-Wall", "-Wextra", "-Werror"] + cflags
        + [src, "-o", os.path.join(outdir, "kyu_h_alone")] + flags)


def build_example(cc, cflags, src, flags, outdir):
    exe = os.path.join(outdir, os.path.splitext(os.path.basename(src))[0])
    run([cc, "-Wall", "-Wextra", "-Werror"] + cflags + [src, "-o", exe] + flags)
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", run(["readelf", "-d", exe]))
    if SONAME not in needed:
        raise AssertionError("%s does not link %s (NEEDED: %s)" % (exe, SONAME, ", ".join(needed)))
    return exe


def queue_left(broker, queue):
    a = broker.attributes(queue)
    return {k: a[k] for k in ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                              "ApproximateNumberOfMessagesDelayed") if a.get(k)}


def run_example(broker, exe, libdir, queue, outdir):
    broker.ok("create-queue", queue)
    for i in range(3):
        broker.ok("send", queue, "install-test-%d" % i)
    step("running %s %s %s" % (os.path.basename(exe), broker.endpoint, queue))
    env = dict(os.environ, LD_LIBRARY_PATH=libdir)
    out_path = os.path.join(outdir, os.path.basename(exe) + ".out")
    with open(out_path, "w") as out:
        proc = subprocess.Popen([exe, broker.endpoint, queue], stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            # Until it exits, or has emptied the queue (a consumer, stopped then with SIGTERM).
            deadline = time.monotonic() + 60
            while proc.poll() is None and time.monotonic() < deadline and queue_left(broker, queue):
                time.sleep(0.2)
            # A program that stops by itself (example_roundtrip) may have emptied the queue and
            # not exited yet (its last receive, its exit: slow under ASan): a SIGTERM then would
            # fail it with -15. Give it a few seconds to exit before stopping it as a consumer.
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGTERM)
            rc = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
    with open(out_path) as f:
        output = f.read()
    sys.stdout.write(output)
    if rc != 0:
        raise AssertionError("%s exited %d:\n%s" % (exe, rc, output))
    left = queue_left(broker, queue)
    if left:
        raise AssertionError("%s left messages in %s: %s" % (exe, queue, left))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--cmake", default="cmake")
    ap.add_argument("--libdir", default="lib")
    ap.add_argument("--includedir", default="include")
    ap.add_argument("--version", required=True)
    ap.add_argument("--cc", default=os.environ.get("CC", "cc"))
    ap.add_argument("--cflags", default="", help="extra flags for the examples (the build's sanitizers)")
    ap.add_argument("examples", nargs="+")
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="kyu-install-test-")
    broker = None
    try:
        prefix = os.path.join(tmp, "prefix")
        step("cmake --install %s --prefix %s" % (args.build_dir, prefix))
        run([args.cmake, "--install", args.build_dir, "--prefix", prefix])
        libdir = os.path.join(prefix, args.libdir)
        lib = check_library(libdir)
        kyudir = check_headers(os.path.join(prefix, args.includedir))
        n = check_symbols(lib, kyudir)
        flags = check_pkgconfig(prefix, libdir, lib, args.version)
        print("installed: %s (%s, %d symbols under %s); pkg-config: %s"
              % (lib, SONAME, n, VERSION_NODE, " ".join(flags)))
        step("building kyu.h alone and %d example(s)" % len(args.examples))
        check_header_alone(args.cc, shlex.split(args.cflags), flags, tmp)
        exes = [build_example(args.cc, shlex.split(args.cflags), src, flags, tmp) for src in args.examples]
        broker = harness.Broker().start()
        step("kyu-broker on %s" % broker.endpoint)
        for i, exe in enumerate(exes):
            run_example(broker, exe, libdir, "install-example-%d" % i, tmp)
            print("ok: %s" % os.path.basename(exe))
    finally:
        if broker:
            broker.stop()
            broker.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
