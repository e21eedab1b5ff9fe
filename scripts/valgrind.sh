#!/usr/bin/env bash
# valgrind memcheck over the engine tests: test_tape, test_gradcheck, test_errors and
# test_random_graphs (the normal run's 2,000 graphs; WENGERT_VALGRIND_GRAPHS=n runs n), built
# with the valgrind preset (build/valgrind: RelWithDebInfo, malloc counting off). Any memcheck
# error, and any definite or indirect leak, fails the run (--error-exitcode=1). About 30 s.
#   scripts/valgrind.sh            all four binaries
#   scripts/valgrind.sh test_tape  only the named ones
# valgrind does not decode AVX-512, so this build is not -march=native: WENGERT_NATIVE is off
# and, where the CPU has them, AVX2 + FMA are used (-march=x86-64-v3); OpenBLAS is held to
# its Haswell kernels (OPENBLAS_CORETYPE) for the same reason.
# Skipped: Tape.TheAllocationCounterSeesAllocations, a test of the test harness's own counting
# operator new, which valgrind replaces with its own (the zero-allocation tests then pass
# vacuously; they are checked in the release and sanitizer runs). The 1,000,000-op chain runs.
# tests/valgrind.supp holds suppressions for third-party noise only (never for wengert code).
# Run as root on Debian 12 only to install missing packages.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh build test
export OPENBLAS_NUM_THREADS=1 OPENBLAS_CORETYPE=Haswell
export WENGERT_RANDOM_GRAPHS="${WENGERT_VALGRIND_GRAPHS:-2000}"

flags=()
if grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo; then
  flags=(-DCMAKE_CXX_FLAGS=-march=x86-64-v3)
fi
tests=("$@")
[ ${#tests[@]} -gt 0 ] || tests=(test_tape test_gradcheck test_errors test_random_graphs)
cmake --preset valgrind "${flags[@]}" >/dev/null
cmake --build --preset valgrind --target "${tests[@]}"

vg=(valgrind --tool=memcheck --error-exitcode=1 --leak-check=full
    --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect
    --num-callers=40 --suppressions=tests/valgrind.supp)
status=0
for t in "${tests[@]}"; do
  start=$(date +%s)
  echo "== valgrind memcheck: $t"
  filter=()
  [ "$t" != test_tape ] || filter=(--gtest_filter=-Tape.TheAllocationCounterSeesAllocations)
  # Requests of 2^62 bytes and more, made on purpose to see a ResourceError, are "fishy"
  # arguments to valgrind, which counts them as errors; the sanitizer stage runs that test.
  [ "$t" != test_errors ] || filter=(--gtest_filter=-Errors.AllocationFailureIsAResourceErrorNamingWhatAndHowMuch)
  if "${vg[@]}" "build/valgrind/tests/$t" --gtest_brief=1 "${filter[@]}"; then
    echo "== $t: clean ($(( $(date +%s) - start )) s)"
  else
    echo "== $t: FAILED under valgrind ($(( $(date +%s) - start )) s)" >&2
    status=1
  fi
done
exit $status
