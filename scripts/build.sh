#!/usr/bin/env bash
# Configures and builds kyu into DIR (default build/), passing extra arguments to cmake.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build}
shift || true
cmake -S . -B "$dir" "$@" >/dev/null
cmake --build "$dir" -j "$(nproc)"
