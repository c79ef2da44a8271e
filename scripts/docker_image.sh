#!/usr/bin/env bash
# Builds the docker image kyu:local (or $KYU_IMAGE) from this machine's build: the binaries
# and the shared libraries they load, on an empty root (FROM scratch), so no base image or
# registry is needed. Usage: scripts/docker_image.sh [BUILD_DIR (default build)]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
tag=${KYU_IMAGE:-kyu:local}
bins=("$build/broker/kyu-broker" "$build/client/kyu" "$build/client/kyu-bench")
for b in "${bins[@]}"; do
    [ -x "$b" ] || { echo "docker_image: $b not built (scripts/build.sh $build)" >&2; exit 1; }
done
ctx=$(mktemp -d /tmp/kyu-image-XXXXXX)
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/root/usr/local/bin" "$ctx/root/data" "$ctx/root/tmp"
chmod 1777 "$ctx/root/tmp"
cp "${bins[@]}" "$ctx/root/usr/local/bin/"
# Every library the binaries load, at the path the loader looks for it (and the loader).
for lib in $(ldd "${bins[@]}" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// && $1 !~ /:$/ {print $1}' | sort -u); do
    mkdir -p "$ctx/root$(dirname "$lib")"
    cp -L "$lib" "$ctx/root$lib"
done
cp deploy/Dockerfile "$ctx/"
docker build -q -t "$tag" "$ctx" >/dev/null
echo "$tag"
