#!/usr/bin/env bash
# Builds the docker image kyu:local (or $KYU_IMAGE) from this machine's build (deploy/Dockerfile):
# kyu-broker (the entrypoint), kyu, kyu-bench, kyu-worker, orders-service and the orders
# example's handler.py with python3.
#
#   scripts/docker_image.sh [--base IMAGE] [--context DIR] [BUILD_DIR (default build)]
#
# --base scratch (the default, or $KYU_BASE): an empty root. The binaries, every shared library
#   they load, /bin/sh and python3 (with its standard library and the libraries of its
#   extension modules) are copied from this machine: no base image or registry is needed.
# --base IMAGE (e.g. debian:bookworm-slim): the usual base image, pulled by docker build; it
#   must be a Debian of this machine's release (the binaries are this machine's). Only kyu's
#   files are copied; the Debian packages providing the libraries they load (dpkg -S here)
#   and python3 are installed in the image by apt-get (deploy/image-setup.sh).
# --context DIR: assemble the build context in DIR (which must not exist) and stop there,
#   without docker (to look at it, or to build it elsewhere: docker build --build-arg BASE=...).
set -euo pipefail
cd "$(dirname "$0")/.."
base=${KYU_BASE:-scratch}
build=build
ctx_only=""
while [ $# -gt 0 ]; do
    case "$1" in
    --base) base=${2:?--base needs an image}; shift 2 ;;
    --context) ctx_only=${2:?--context needs a directory}; shift 2 ;;
    -h | --help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "docker_image: unknown option $1 (--help)" >&2; exit 2 ;;
    *) build=$1; shift ;;
    esac
done
tag=${KYU_IMAGE:-kyu:local}
bins=("$build/broker/kyu-broker" "$build/client/kyu" "$build/client/kyu-bench"
      "$build/worker/kyu-worker" "$build/examples/orders/orders-service")
for b in "${bins[@]}"; do
    [ -x "$b" ] || { echo "docker_image: $b not built (scripts/build.sh $build; orders-service \
needs libmicrohttpd-dev, scripts/deps.sh installs it)" >&2; exit 1; }
done
if [ -n "$ctx_only" ]; then
    [ ! -e "$ctx_only" ] || { echo "docker_image: $ctx_only exists" >&2; exit 1; }
    mkdir -p "$ctx_only"
    ctx=$(cd "$ctx_only" && pwd)
else
    ctx=$(mktemp -d /tmp/kyu-image-XXXXXX)
    trap 'rm -rf "$ctx"' EXIT
fi
root=$ctx/root
mkdir -p "$root/usr/local/bin" "$root/usr/local/lib/kyu" "$root/usr/local/share/kyu/orders"
cp "${bins[@]}" "$root/usr/local/bin/"
cp deploy/image-setup.sh deploy/health.py "$root/usr/local/lib/kyu/"
cp examples/orders/handler.py examples/orders/send_orders.py "$root/usr/local/share/kyu/orders/"

# The shared libraries the files named load (and the loader), by the path the loader uses.
libs_of() {
    ldd "$@" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// && $1 !~ /:$/ {print $1}' |
        sort -u
}
copy_libs() {
    local lib
    for lib in $(libs_of "$@"); do
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done
}

if [ "$base" = scratch ]; then
    copy_libs "${bins[@]}"
    # /bin/sh (kyu-worker runs --exec handlers with /bin/sh -c) and python3 with its standard
    # library (no tests, no GUI, no installer) and the libraries its extension modules load.
    mkdir -p "$root/bin" "$root/usr/bin" "$root/tmp" "$root/data" "$root/records"
    chmod 1777 "$root/tmp"
    cp -L /bin/sh "$root/bin/sh"
    # The system's python3 (the distribution's, not a pyenv or venv one found first on PATH).
    python=${KYU_PYTHON:-/usr/bin/python3}
    [ -x "$python" ] || { echo "docker_image: $python not found (KYU_PYTHON=...)" >&2; exit 1; }
    py=$(readlink -f "$python")
    pyver=$("$python" -c 'import sys; print("python%d.%d" % sys.version_info[:2])')
    cp "$py" "$root/usr/bin/$pyver"
    ln -s "$pyver" "$root/usr/bin/python3"
    stdlib=$("$python" -c 'import sysconfig; print(sysconfig.get_path("stdlib"))')
    mkdir -p "$root$stdlib"
    tar -C "$stdlib" --exclude=./test --exclude=./idlelib --exclude=./tkinter \
        --exclude=./turtledemo --exclude=./ensurepip --exclude=./lib2to3 \
        --exclude=./site-packages --exclude=./dist-packages --exclude='./lib-dynload/_test*' \
        -cf - . | tar -C "$root$stdlib" -xf -
    copy_libs "$root/usr/bin/$pyver" "$root$stdlib"/lib-dynload/*.so /bin/sh
else
    command -v dpkg >/dev/null ||
        { echo "docker_image: --base $base needs a Debian build machine (dpkg)" >&2; exit 1; }
    # The package of each library (one dpkg -S for all); with merged /usr, dpkg may know a
    # library by the other path, or by the file its link names.
    libs=$(libs_of "${bins[@]}")
    query=()
    for lib in $libs; do
        query+=("$lib" "$(readlink -f "$lib")" "/usr$lib")
    done
    found=$(dpkg -S "${query[@]}" 2>/dev/null | grep ': /' || true)
    for lib in $libs; do
        grep -q "/$(basename "$lib")\$" <<<"$found" ||
            { echo "docker_image: no Debian package provides $lib" >&2; exit 1; }
    done
    awk -F: '{print $1}' <<<"$found" | sort -u >"$root/usr/local/lib/kyu/packages"
    echo python3 >>"$root/usr/local/lib/kyu/packages"
fi
cp deploy/Dockerfile "$ctx/"
if [ -n "$ctx_only" ]; then
    echo "$ctx (docker build --build-arg BASE=$base -t $tag $ctx)"
    exit 0
fi
docker build -q --force-rm --build-arg "BASE=$base" -t "$tag" "$ctx" >/dev/null
echo "$tag"
