// Step-interleaved timing, shared by the benchmarks that compare wengert with a baseline.
//
// The contenders live side by side and take turns, a batch of steps each (≥ 50 µs, so the
// clock's cost is negligible), the order rotating every round. Each batch's time per step is
// one sample; the result is each contender's median. A load change on the machine then hits
// every contender within the same round, which makes their ratios steady on a shared machine
// where separate benchmarks move by tens of percent from run to run.
#pragma once

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <functional>
#include <string>
#include <vector>

namespace wengert_bench {

inline double thread_cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

inline double median_of(std::vector<double> v) {
  if (v.empty()) return 0;
  std::nth_element(v.begin(), v.begin() + std::ptrdiff_t(v.size() / 2), v.end());
  return v[v.size() / 2];
}

struct Turn {
  std::string name;
  std::function<float()> step;
};

struct TurnMedians {
  std::vector<double> wall, cpu;  // seconds per step, per contender, in the order given
  int steps_per_batch = 1;
};

/// Runs `cs` in turns for as long as `state` asks (each benchmark iteration is one round) after
/// `warmup` steps of each, and returns the per-contender medians.
inline TurnMedians take_turns(benchmark::State& state, std::vector<Turn>& cs, int warmup) {
  for (Turn& c : cs)
    for (int i = 0; i < warmup; ++i) benchmark::DoNotOptimize(c.step());
  const auto t0 = std::chrono::steady_clock::now();
  benchmark::DoNotOptimize(cs[0].step());
  const double est = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const int k = std::max(1, int(50e-6 / std::max(est, 1e-9)));
  std::vector<std::vector<double>> wall(cs.size()), cpu(cs.size());
  std::size_t round = 0;
  for (auto _ : state) {
    for (std::size_t j = 0; j < cs.size(); ++j) {
      const std::size_t c = (j + round) % cs.size();
      const double c0 = thread_cpu_seconds();
      const auto w0 = std::chrono::steady_clock::now();
      for (int i = 0; i < k; ++i) benchmark::DoNotOptimize(cs[c].step());
      const auto w1 = std::chrono::steady_clock::now();
      cpu[c].push_back((thread_cpu_seconds() - c0) / k);
      wall[c].push_back(std::chrono::duration<double>(w1 - w0).count() / k);
    }
    ++round;
  }
  TurnMedians m;
  m.steps_per_batch = k;
  for (std::size_t c = 0; c < cs.size(); ++c) {
    m.wall.push_back(median_of(wall[c]));
    m.cpu.push_back(median_of(cpu[c]));
  }
  return m;
}

}  // namespace wengert_bench
