#!/usr/bin/env bash
# Builds and runs the libFuzzer target fuzz_tape (tests/fuzz/fuzz_tape.cpp): clang 14 with
# -fsanitize=fuzzer,address,undefined, the whole library included (preset fuzz, build/fuzz).
#   scripts/fuzz.sh [seconds]      fuzz for that long (default 60; CI runs 60; 0: build and
#                                  replay the regressions only)
#   FUZZ_JOBS=2 scripts/fuzz.sh 3600   the long run: an hour, two fuzzing processes (-fork)
# Steps: replay every saved regression input (tests/fuzz/regressions/), then fuzz, starting from
# the committed seed corpus tests/fuzz/corpus/ (read only) and the working corpus
# build/fuzz/corpus/ (new inputs go there). A crash, leak, sanitizer report or harness finding
# stops the run, saves the input as build/fuzz/artifacts/crash-<sha1> (or leak-, timeout-, oom-)
# and exits non-zero; reproduce with build/fuzz/tests/fuzz/fuzz_tape <that file>.
# Run as root on Debian 12 only to install missing packages.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
jobs="${FUZZ_JOBS:-1}"
case "$secs" in ''|*[!0-9]*) echo "fuzz.sh: seconds must be a number, not '$secs'" >&2; exit 2 ;; esac
bash scripts/setup.sh build test
export OPENBLAS_NUM_THREADS=1
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

cmake --preset fuzz >/dev/null
cmake --build --preset fuzz --target fuzz_tape
bin=build/fuzz/tests/fuzz/fuzz_tape
mkdir -p build/fuzz/corpus build/fuzz/artifacts

shopt -s nullglob
regressions=()
for f in tests/fuzz/regressions/*; do
  case "$f" in *.md) ;; *) regressions+=("$f") ;; esac
done
if [ ${#regressions[@]} -gt 0 ]; then
  echo "== fuzz_tape: replaying ${#regressions[@]} regression input(s)"
  "$bin" "${regressions[@]}"
fi

if [ "$secs" -eq 0 ]; then
  echo "== fuzz_tape: built; regressions replayed; no fuzzing (0 s)"
  exit 0
fi
echo "== fuzz_tape: fuzzing for ${secs} s (${jobs} process(es))"
flags=(-max_total_time="$secs" -max_len=1024 -timeout=30 -rss_limit_mb=2048
       -print_final_stats=1 -artifact_prefix=build/fuzz/artifacts/)
if [ "$jobs" -gt 1 ]; then flags+=(-fork="$jobs"); fi
start=$(date +%s)
"$bin" "${flags[@]}" build/fuzz/corpus tests/fuzz/corpus
echo "== fuzz_tape: no finding in $(( $(date +%s) - start )) s;" \
     "working corpus: $(ls build/fuzz/corpus | wc -l) inputs"
