#!/usr/bin/env bash
# Installs what wengert needs from Debian 12 packages, and nothing that is already there.
# Idempotent; run as root. Usage: scripts/setup.sh [build] [test] [train] [bench]
#   build        compiler, CMake and the library's dependencies (always included), OpenMPI
#                (wengert::dist's MPI half and its tests; scripts/mpirun.sh runs them)
#   test         GoogleTest; clang 14 with its sanitizer/libFuzzer runtimes (the fuzz target);
#                valgrind (memcheck over the engine tests); clang-format (the format check);
#                python3 (extracts README.md's C++ examples, which the tests compile)
#   train        the Fashion-MNIST data set and gnuplot (for the main job's plot)
#   bench        Google Benchmark (+ compare.py tools); the optional benchmark peers too:
#                libtorch-dev if WENGERT_BENCH_TORCH=1, libdlib-dev if WENGERT_BENCH_DLIB=1
set -euo pipefail

pkgs=(g++ make cmake pkg-config libxtensor-dev xtl-dev libxtensor-blas-dev libopenblas-dev
      libxsimd-dev zlib1g-dev libcli11-dev libopenmpi-dev openmpi-bin)
for profile in "$@"; do
  case "$profile" in
    build) ;;
    test) pkgs+=(libgtest-dev clang-14 libclang-rt-14-dev valgrind clang-format python3) ;;
    train) pkgs+=(dataset-fashion-mnist gnuplot-nox) ;;
    bench) pkgs+=(libbenchmark-dev libbenchmark-tools python3 python3-scipy gnuplot-nox)
           if [ "${WENGERT_BENCH_TORCH:-0}" = 1 ]; then pkgs+=(libtorch-dev); fi
           if [ "${WENGERT_BENCH_DLIB:-0}" = 1 ]; then pkgs+=(libdlib-dev); fi ;;
    *) echo "setup.sh: unknown profile '$profile' (build, test, train, bench)" >&2
       exit 2 ;;
  esac
done
# Benchmarks are part of the default build, so their library is always needed.
pkgs+=(libbenchmark-dev)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup.sh: all packages present"
  exit 0
fi
echo "setup.sh: installing ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh: need root to install packages (run as root, or install: ${missing[*]})" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup.sh: done"
