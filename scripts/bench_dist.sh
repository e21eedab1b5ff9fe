#!/usr/bin/env bash
# Data-parallel throughput of wengert-train on Fashion-MNIST, the default MLP (784-256-128-10
# ReLU, batch 128 = the global batch), all in one run for comparable figures:
#   1 process, 1 BLAS thread | --threads 2 | mpirun -np 2 (1 BLAS thread per rank) |
#   1 process, 2 BLAS threads
# Prints, for each, the mean training examples/s over the epochs (test evaluation excluded), the
# final test accuracy, and for the data-parallel runs where each step's time went (compute,
# waiting for the other worker, reduction, MPI packing and allreduce, optimizer, rest).
# Usage: scripts/bench_dist.sh [EPOCHS, default 10] [BUILD_DIR]
# Needs a build with wengert-train (preset release or train) and, for the MPI line, OpenMPI.
set -euo pipefail
cd "$(dirname "$0")/.."
epochs="${1:-10}"
build="${2:-build/release}"
train="$build/apps/train/wengert-train"
[ -x "$train" ] || { echo "bench_dist.sh: build $train first" >&2; exit 2; }
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; OpenBLAS core: $(
  OPENBLAS_VERBOSE=2 OPENBLAS_NUM_THREADS=1 "$train" --mode xor --steps 1 2>&1 |
  sed -n 's/^Core: *//p' | head -1)${OPENBLAS_CORETYPE:+ (OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE)}"
run() {  # name, BLAS threads, command…
  local name="$1" blas="$2"
  shift 2
  local log="$out/$name.log"
  OPENBLAS_NUM_THREADS="$blas" "$@" --epochs "$epochs" --out "$out/$name" >"$log" 2>&1 ||
    { cat "$log" >&2; exit 1; }
  local rate acc
  rate=$(tr '\r' '\n' <"$log" | sed -n 's/.*(\([0-9]*\) ex\/s training).*/\1/p' |
    awk '{s += $1; n++} END {if (n) printf "%.0f", s / n}')
  acc=$(sed -n 's/^final test accuracy \([0-9.]*\).*/\1/p' "$log")
  printf '%-34s %10s ex/s   test accuracy %s\n' "$name" "$rate" "$acc"
  # Data-parallel runs: where rank 0's calling thread spent each step.
  sed -n 's/^time per step (rank 0, calling thread): /    per step: /p' "$log"
}
run "1 process, 1 BLAS thread" 1 "$train"
run "--threads 2, 1 BLAS thread each" 1 "$train" --threads 2
if command -v mpirun >/dev/null; then
  OPENBLAS_NUM_THREADS=1 run "mpirun -np 2, 1 BLAS thread each" 1 \
    bash scripts/mpirun.sh -np 2 "$train"
fi
run "1 process, 2 BLAS threads" 2 "$train"
