#!/bin/sh
# Runs once while the image is built (deploy/Dockerfile). On a base image with a package
# manager it installs the packages root/usr/local/lib/kyu/packages lists; on the empty root
# (scratch) that list is absent and everything is in root/ already. Then it checks that every
# program starts (the loader finds its libraries) and that python3 imports sqlite3 (the
# orders example's handler needs it).
set -eu
list=/usr/local/lib/kyu/packages
if [ -s "$list" ]; then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "image-setup: $list names Debian packages but the base image has no apt-get" >&2
        exit 1
    fi
    apt-get update
    # shellcheck disable=SC2046
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(cat "$list")
    rm -rf /var/lib/apt/lists/*
fi
for p in kyu-broker kyu kyu-bench kyu-worker orders-service; do
    if ! "/usr/local/bin/$p" --help >/dev/null 2>&1; then
        echo "image-setup: /usr/local/bin/$p does not start:" >&2
        "/usr/local/bin/$p" --help >/dev/null || true
        exit 1
    fi
done
python3 -c 'import sqlite3, json, urllib.request; sqlite3.connect(":memory:").execute("SELECT 1")'
echo "image-setup: kyu-broker, kyu, kyu-bench, kyu-worker, orders-service and python3 (sqlite3) start"
