#!/usr/bin/env bash
# Builds kyu and runs every test: once in a normal build, once under ASan + UBSan.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
echo "== normal build =="
scripts/build.sh build
(cd build && ctest --output-on-failure --timeout 600)
echo "== AddressSanitizer + UndefinedBehaviorSanitizer build =="
scripts/build.sh build-asan -DKYU_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --output-on-failure --timeout 900)
echo "all tests passed"
