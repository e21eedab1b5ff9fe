#!/usr/bin/env bash
# The README's test command: installs what is missing, builds, and runs every test.
#   1. Release build: unit, op, seed, example and packaging tests (ctest).
#   2. The same suite under AddressSanitizer + UndefinedBehaviorSanitizer.
# Run as root on Debian 12 (root is needed only to install missing packages).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh build test train
export OPENBLAS_NUM_THREADS=1

echo "== release build and tests"
cmake --preset release >/dev/null
cmake --build --preset release
ctest --preset release

echo "== AddressSanitizer + UndefinedBehaviorSanitizer"
cmake --preset sanitize >/dev/null
cmake --build --preset sanitize
ctest --preset sanitize
