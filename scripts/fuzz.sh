#!/usr/bin/env bash
# Builds and runs the libFuzzer targets (clang 14 with -fsanitize=fuzzer,address,undefined, the
# whole library included; preset fuzz, build/fuzz):
#   fuzz_tape (tests/fuzz/fuzz_tape.cpp)  random programs of ops on tapes
#   fuzz_load (tests/fuzz/fuzz_load.cpp)  the parameter-file parser (nn::load / load_all)
#   scripts/fuzz.sh [seconds [load_seconds]]   fuzz the tape for `seconds` (default 60; CI 60),
#                                  then the loader for `load_seconds` (default half of it; CI 30);
#                                  0: build and replay the regressions and corpora only
#   FUZZ_JOBS=2 scripts/fuzz.sh 3600   the long run: an hour, two fuzzing processes (-fork)
# Steps: replay every saved regression input (tests/fuzz/regressions/), then fuzz, starting from
# the committed seed corpus (tests/fuzz/corpus/, tests/fuzz/load_corpus/; read only) and the
# working corpus build/fuzz/corpus/ (build/fuzz/load_corpus/; new inputs go there). A crash, leak,
# sanitizer report or harness finding stops the run, saves the input as
# build/fuzz/artifacts/crash-<sha1> (or leak-, timeout-, oom-; the loader's are prefixed load-)
# and exits non-zero; reproduce with build/fuzz/tests/fuzz/fuzz_tape (or fuzz_load) <that file>.
# Run as root on Debian 12 only to install missing packages.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
case "$secs" in ''|*[!0-9]*) echo "fuzz.sh: seconds must be a number, not '$secs'" >&2; exit 2 ;; esac
load_secs="${2:-$(( secs / 2 ))}"
case "$load_secs" in ''|*[!0-9]*) echo "fuzz.sh: seconds must be a number, not '$load_secs'" >&2; exit 2 ;; esac
jobs="${FUZZ_JOBS:-1}"
bash scripts/setup.sh build test
export OPENBLAS_NUM_THREADS=1
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

cmake --preset fuzz >/dev/null
cmake --build --preset fuzz --target fuzz_tape fuzz_load
bin=build/fuzz/tests/fuzz/fuzz_tape
load_bin=build/fuzz/tests/fuzz/fuzz_load
mkdir -p build/fuzz/corpus build/fuzz/load_corpus build/fuzz/artifacts

shopt -s nullglob
regressions=()
for f in tests/fuzz/regressions/*; do
  case "$f" in *.md) ;; *) regressions+=("$f") ;; esac
done
if [ ${#regressions[@]} -gt 0 ]; then
  echo "== fuzz_tape: replaying ${#regressions[@]} regression input(s)"
  "$bin" "${regressions[@]}"
fi

echo "== fuzz_load: replaying the seed corpus"
"$load_bin" -runs=0 tests/fuzz/load_corpus

if [ "$secs" -eq 0 ]; then
  echo "== fuzz: built; regressions and corpora replayed; no fuzzing (0 s)"
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

if [ "$load_secs" -gt 0 ]; then
  echo "== fuzz_load: fuzzing for ${load_secs} s (${jobs} process(es))"
  # Files of a few KiB reach every branch of the format; -malloc_limit_mb: no input may make
  # the loader allocate more than the input's size, far below it.
  lflags=(-max_total_time="$load_secs" -max_len=4096 -timeout=30 -rss_limit_mb=2048
          -malloc_limit_mb=64 -print_final_stats=1 -artifact_prefix=build/fuzz/artifacts/load-)
  if [ "$jobs" -gt 1 ]; then lflags+=(-fork="$jobs"); fi
  start=$(date +%s)
  "$load_bin" "${lflags[@]}" build/fuzz/load_corpus tests/fuzz/load_corpus
  echo "== fuzz_load: no finding in $(( $(date +%s) - start )) s;" \
       "working corpus: $(ls build/fuzz/load_corpus | wc -l) inputs"
fi
