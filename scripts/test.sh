#!/usr/bin/env bash
# The README's test command: installs what is missing, builds, and runs every test.
#   0. Formatting: every C++ file as .clang-format says (scripts/format.sh).
#   1. Release build, warnings in wengert's own code being errors: unit, op, seed, example,
#      README-snippet, packaging, long-run and data-parallel tests (ctest; the 10,000-graph
#      random-graph run, label `long`, and the MPI tests, label `mpi`, run under
#      scripts/mpirun.sh -np 2, included).
#   2. The same suite under AddressSanitizer + UndefinedBehaviorSanitizer (label `long`, the
#      packaging tests and MPI excluded).
#   3. ThreadSanitizer: the threading tests (two threads training their own MLPs included).
#   4. valgrind memcheck over the engine tests (scripts/valgrind.sh).
#   5. Only with WENGERT_FUZZ_SECONDS=N > 0: libFuzzer runs, the tape fuzzer for N s, then the
#      loader fuzzer for half as long (scripts/fuzz.sh). Off by default: its clang build and
#      runs took 3 minutes of the 30 CI may take; stages 1 and 2 replay the fuzz corpora and
#      every saved finding (tests/fuzz/regressions) under both compilers' sanitizers.
# Each stage prints its wall time. Run as root on Debian 12 (root is needed only to install
# missing packages).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh build test train
export OPENBLAS_NUM_THREADS=1

stage_start=$SECONDS
stage_name=""
stage() {  # ends the previous stage (printing its time) and starts the next
  if [ -n "$stage_name" ]; then
    echo "== ${stage_name}: $(( SECONDS - stage_start )) s"
  fi
  stage_name="$1"
  stage_start=$SECONDS
  [ -z "$1" ] || echo "== $1"
}

stage "format check (clang-format)"
bash scripts/format.sh

stage "release build and tests"
cmake --preset release >/dev/null
cmake --build --preset release
ctest --preset release

stage "AddressSanitizer + UndefinedBehaviorSanitizer"
cmake --preset sanitize >/dev/null
cmake --build --preset sanitize
ctest --preset sanitize

stage "ThreadSanitizer (threading tests)"
cmake --preset tsan >/dev/null
cmake --build --preset tsan
ctest --preset tsan

stage "valgrind memcheck (engine tests)"
bash scripts/valgrind.sh

if [ "${WENGERT_FUZZ_SECONDS:-0}" -gt 0 ]; then
  stage "libFuzzer: fuzz_tape for ${WENGERT_FUZZ_SECONDS} s, fuzz_load for half that"
  bash scripts/fuzz.sh "${WENGERT_FUZZ_SECONDS}"
fi

stage ""
echo "== all stages passed in ${SECONDS} s"
