#!/usr/bin/env bash
# Installs kyu's build and test dependencies (Debian packages) when any is missing.
set -euo pipefail
pkgs=(build-essential cmake pkg-config clang clang-format libclang-rt-14-dev
      libzmq3-dev libczmq-dev libmsgpack-dev librocksdb-dev libcmocka-dev libjansson-dev
      libsodium-dev libssl-dev libcurl4-openssl-dev libmicrohttpd-dev faketime iproute2 iptables
      python3 python3-zmq python3-msgpack)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "deps: installing ${missing[*]}"
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo_cmd apt-get update -qq
    $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi
