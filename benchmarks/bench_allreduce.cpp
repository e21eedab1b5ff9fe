// MPI_Allreduce time against message size, and the cost of MpiGradients around it, for the
// README's cluster section: the extrapolation to many nodes starts from these measurements.
//
//   scripts/mpirun.sh -np 2 build/release/benchmarks/bench_allreduce [max_log2_floats, 24]
//
// For each size n = 2^k floats (k = 0 … max), every rank runs `reps` in-place MPI_SUM
// allreduces, each after an MPI_Barrier so that no rank waits for another inside the timed call;
// the time of a rep is the slowest rank's, and the median over reps is printed, with the
// algorithm bandwidth (bytes / time) and the bus bandwidth (2·(P−1)/P · bytes / time: what
// each rank moves in a ring allreduce, comparable across P). Then MpiGradients::allreduce on
// the default wengert-train MLP (784-256-128-10): packing and unpacking beside the same-size
// MPI_Allreduce. The last column sends sizes above MpiGradients::kChunkBytes in pieces of
// that size, as MpiGradients does (see mpi.hpp for why). Only rank 0 prints.
#include <mpi.h>

#include <wengert/dist/mpi.hpp>
#include <wengert/nn/linear.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

// Median over reps of the slowest rank's time of fn(), in seconds; fn runs after a barrier.
template <class F>
double median_time(int reps, F&& fn) {
  std::vector<double> t(std::size_t(reps), 0.0);
  for (int r = 0; r < reps; ++r) {
    MPI_Barrier(MPI_COMM_WORLD);
    const auto t0 = Clock::now();
    fn();
    double mine = std::chrono::duration<double>(Clock::now() - t0).count(), slowest = 0;
    MPI_Allreduce(&mine, &slowest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    t[std::size_t(r)] = slowest;
  }
  std::nth_element(t.begin(), t.begin() + reps / 2, t.end());
  return t[std::size_t(reps / 2)];
}

}  // namespace

int main(int argc, char** argv) {
  wengert::dist::MpiSession mpi(&argc, &argv);
  const int max_log2 = argc > 1 ? std::atoi(argv[1]) : 24;
  const int P = mpi.size();
  const bool root = mpi.rank() == 0;
  if (root) {
    std::printf(
        "MPI_Allreduce (in place, MPI_SUM, float) on %d ranks; median of reps, each rep "
        "the slowest rank's time after a barrier\n",
        P);
    std::printf("%12s %12s %8s %12s %14s %14s %16s\n", "floats", "bytes", "reps", "time us",
                "algo GB/s", "bus GB/s", "in 16 MiB us");
  }
  std::vector<float> buf(std::size_t(1) << max_log2, 1.0f);
  for (int k = 0; k <= max_log2; ++k) {
    const std::size_t n = std::size_t(1) << k;
    const double bytes = double(n) * sizeof(float);
    // Enough reps for a stable median, fewer for the large sizes.
    const int reps = bytes < 1e5 ? 200 : bytes < 4e6 ? 50 : 11;
    for (int w = 0; w < 3; ++w)  // warm-up: connections, buffers, pages
      MPI_Allreduce(MPI_IN_PLACE, buf.data(), int(n), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    const double t = median_time(reps, [&] {
      MPI_Allreduce(MPI_IN_PLACE, buf.data(), int(n), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    });
    // The same buffer in pieces of MpiGradients::kChunkBytes, as MpiGradients sends it (one
    // piece, the same call, below that size).
    const std::size_t piece = wengert::dist::MpiGradients<float>::kChunkBytes / sizeof(float);
    const double tc = n <= piece ? t : median_time(reps, [&] {
      for (std::size_t at = 0; at < n; at += piece)
        MPI_Allreduce(MPI_IN_PLACE, buf.data() + at, int(std::min(piece, n - at)), MPI_FLOAT,
                      MPI_SUM, MPI_COMM_WORLD);
    });
    if (root)
      std::printf("%12zu %12.0f %8d %12.2f %14.3f %14.3f %16.2f\n", n, bytes, reps, t * 1e6,
                  bytes / t * 1e-9, 2.0 * (P - 1) / P * bytes / t * 1e-9, tc * 1e6);
  }

  // MpiGradients on the default MLP: one allreduce of every gradient, the weight and the loss.
  wengert::nn::MLP<float> model({784, 256, 128, 10}, wengert::nn::Activation::kRelu, 1);
  wengert::dist::MpiGradients<float> sync(model);
  for (auto* p : model.parameters())
    for (std::size_t i = 0; i < p->size(); ++i) p->grad_data()[i] = 1e-3f * float(i % 7);
  const int reps = 101;
  for (int w = 0; w < 5; ++w) sync.allreduce(64.0f, 0.5f);
  sync.reset_times();
  const double whole = median_time(reps, [&] { sync.allreduce(64.0f, 0.5f); });
  const auto& tm = sync.times();
  const std::size_t n = sync.buffer_size();
  std::vector<float> raw(n, 1.0f);
  const double bare = median_time(reps, [&] {
    MPI_Allreduce(MPI_IN_PLACE, raw.data(), int(n), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
  });
  if (root)
    std::printf(
        "\nMpiGradients::allreduce, MLP 784-256-128-10 (%zu floats, %.2f MB): median "
        "%.1f us; rank 0's mean pack+unpack %.1f us, inside MPI_Allreduce %.1f us; a "
        "bare MPI_Allreduce of the same size: median %.1f us\n",
        n, double(n) * 4e-6, whole * 1e6, tm.pack / double(tm.steps) * 1e6,
        tm.allreduce / double(tm.steps) * 1e6, bare * 1e6);
  return 0;
}
