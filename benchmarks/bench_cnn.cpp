// CNN training step: wengert side by side with a hand-written im2col + cblas_sgemm step (the
// floor, cnn_floor.hpp) and libtorch, in one binary and one run. The network is wengert-train's
// --model cnn (conv 32 → pool → conv 64 → pool → linear 128 → linear 10), batch 64 of 28×28,
// float32, SGD. scripts/bench.sh runs it with 1 and 2 threads and appends its table to
// benchmarks/RESULTS.md.
//
// Benchmarks (real time per iteration):
//   CNN/<floor|wengert|libtorch>  one training step, with allocs_per_step (heap allocations per
//                                 step after warm-up, all threads) and rss_peak_MiB
//   CNN/paired                    the contenders taking turns (turns.hpp): median ms per step
//                                 and the ratios wengert/floor and wengert/libtorch, measured in
//                                 the same run, as counters
// Before them a check runs one step of every contender from the same parameters: same loss,
// gradients and updated weights as the floor (PASS/FAIL; exit status 2 on FAIL).
// After them one markdown row per CNN/paired repetition is printed (the median of the ratios).
//
// `bench_cnn --profile=<floor|wengert|libtorch> [--steps=N]` runs N steps of one contender only,
// for perf. Threads: WENGERT_BENCH_THREADS (default 1) sets libtorch's intra-op threads;
// OpenBLAS reads OPENBLAS_NUM_THREADS (scripts/bench.sh sets both).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "alloc_count.hpp"
#include "cnn_floor.hpp"
#include "cnn_wengert.hpp"
#include "turns.hpp"
#ifdef WENGERT_BENCH_HAVE_TORCH
#include "cnn_torch.hpp"
#endif

extern "C" char* openblas_get_corename();
extern "C" int openblas_get_num_threads();

namespace wengert_bench {
namespace {

constexpr int kWarmup = 3, kCountSteps = 5;

int bench_threads() {
  const char* s = std::getenv("WENGERT_BENCH_THREADS");
  const int n = s ? std::atoi(s) : 1;
  return n > 0 ? n : 1;
}

const CnnProblem& problem() {
  static const CnnProblem p = make_cnn_problem();
  return p;
}

double peak_rss_mib() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::atof(line.c_str() + 6) / 1024.0;
  return 0;
}

template <class C>
void run_steps(benchmark::State& state) {
  { std::ofstream("/proc/self/clear_refs") << "5"; }  // reset the peak RSS
  alloc::start();
  C c(problem());
  for (int i = 0; i < kWarmup; ++i) benchmark::DoNotOptimize(c.step());
  const std::uint64_t before = alloc::count();
  for (int i = 0; i < kCountSteps; ++i) benchmark::DoNotOptimize(c.step());
  const double per_step = double(alloc::count() - before) / kCountSteps;
  alloc::stop();
  for (auto _ : state) benchmark::DoNotOptimize(c.step());
  state.counters["allocs_per_step"] = per_step;
  state.counters["rss_peak_MiB"] = peak_rss_mib();
}

struct PairedRow {
  double floor_ms, wengert_ms, torch_ms;
  std::int64_t iterations;  // Google Benchmark's first, 1-iteration call is only an estimate
};
std::vector<PairedRow> g_rows;

void run_paired(benchmark::State& state) {
  FloorCNN floor(problem());
  WengertCNN weng(problem());
  std::vector<Turn> cs = {{"floor", [&] { return floor.step(); }},
                          {"wengert", [&] { return weng.step(); }}};
#ifdef WENGERT_BENCH_HAVE_TORCH
  TorchCNN torch(problem());
  cs.push_back({"libtorch", [&] { return torch.step(); }});
#endif
  const TurnMedians m = take_turns(state, cs, kWarmup);
  for (std::size_t c = 0; c < cs.size(); ++c) state.counters[cs[c].name + "_ms"] = m.wall[c] * 1e3;
  state.counters["wengert/floor"] = m.wall[1] / m.wall[0];
  state.counters["wengert/floor_cpu"] = m.cpu[1] / m.cpu[0];
  if (cs.size() > 2) state.counters["wengert/libtorch"] = m.wall[1] / m.wall[2];
  g_rows.push_back({m.wall[0] * 1e3, m.wall[1] * 1e3, cs.size() > 2 ? m.wall[2] * 1e3 : NAN,
                    std::int64_t(state.iterations())});
}

double rel_err(const float* a, const float* b, std::size_t n) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < n; ++i) {
    num = std::max(num, std::fabs(double(a[i]) - double(b[i])));
    den = std::max(den, std::fabs(double(b[i])));
  }
  return den > 0 ? num / den : num;
}

bool check() {
  FloorCNN floor(problem());
  WengertCNN weng(problem());
  const float lf = floor.step(), lw = weng.step();
  double gw = 0, ww = 0;
  for (int l = 0; l < 4; ++l) {
    gw = std::max(gw,
                  rel_err(weng.weight(l).grad_data(), floor.grad_weight(l), floor.weight_size(l)));
    gw = std::max(gw, rel_err(weng.bias(l).grad_data(), floor.grad_bias(l), floor.bias_size(l)));
    ww = std::max(ww, rel_err(weng.weight(l).data(), floor.weight(l), floor.weight_size(l)));
  }
  const double lerr = std::fabs(double(lw) - lf) / std::fabs(double(lf));
  bool ok = lerr < 1e-4 && gw < 1e-4 && ww < 1e-4;
  char line[512];
  int n = std::snprintf(line, sizeof line,
                        "check CNN: loss %.6f; wengert vs floor: loss %.1e, grads %.1e, updated W "
                        "%.1e (rel) %s",
                        double(lf), lerr, gw, ww, ok ? "PASS" : "FAIL");
#ifdef WENGERT_BENCH_HAVE_TORCH
  TorchCNN torch(problem());
  torch.keep_grads(true);
  const float lt = torch.step();
  double gt = 0;
  for (int l = 0; l < 4; ++l) {
    gt = std::max(gt,
                  rel_err(torch.grad_weight(l).data(), floor.grad_weight(l), floor.weight_size(l)));
    gt = std::max(gt, rel_err(torch.grad_bias(l).data(), floor.grad_bias(l), floor.bias_size(l)));
  }
  const double lt_err = std::fabs(double(lt) - lf) / std::fabs(double(lf));
  const bool tok = lt_err < 1e-4 && gt < 1e-3;  // (its own conv kernels sum in another order)
  ok = ok && tok;
  std::snprintf(line + n, sizeof line - std::size_t(n), "; libtorch: loss %.1e, grads %.1e %s",
                lt_err, gt, tok ? "PASS" : "FAIL");
#else
  (void)n;
#endif
  std::printf("%s\n", line);
  benchmark::AddCustomContext("check_CNN", line);
  return ok;
}

std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown";
}

int profile(const std::string& who, long steps) {
  double sink = 0;
  auto loop = [&](auto&& c) {
    for (long i = 0; i < steps; ++i) sink += c.step();
  };
  if (who == "floor")
    loop(FloorCNN(problem()));
  else if (who == "wengert")
    loop(WengertCNN(problem()));
#ifdef WENGERT_BENCH_HAVE_TORCH
  else if (who == "libtorch")
    loop(TorchCNN(problem()));
#endif
  else
    return std::fprintf(stderr, "unknown contender '%s'\n", who.c_str()), 1;
  std::printf("%s: %ld steps, checksum %g\n", who.c_str(), steps, sink);
  return 0;
}

}  // namespace
}  // namespace wengert_bench

int main(int argc, char** argv) {
  using namespace wengert_bench;
  const int threads = bench_threads();
#ifdef WENGERT_BENCH_HAVE_TORCH
  cnn_torch_set_threads(threads);
#endif
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--profile=", 0) == 0) {
      long steps = 100;
      for (int j = 1; j < argc; ++j)
        if (std::string(argv[j]).rfind("--steps=", 0) == 0) steps = std::atol(argv[j] + 8);
      return profile(a.substr(10), steps);
    }
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  const char* core = std::getenv("OPENBLAS_CORETYPE");
  const std::string machine = cpu_model() + ", OpenBLAS " + openblas_get_corename() +
                              " kernels (OPENBLAS_CORETYPE=" + (core ? core : "unset") + "), " +
                              std::to_string(openblas_get_num_threads()) + " BLAS thread(s)";
  benchmark::AddCustomContext("machine", machine);
#ifdef WENGERT_BENCH_HAVE_TORCH
  benchmark::AddCustomContext("torch", cnn_torch_info());
#else
  benchmark::AddCustomContext("torch", "(not built: WENGERT_BENCH_TORCH off or no libtorch)");
#endif
  const bool ok = check();
  auto reg = [](const char* name, void (*fn)(benchmark::State&)) {
    benchmark::RegisterBenchmark(name, fn)->UseRealTime()->Unit(benchmark::kMillisecond);
  };
  reg("CNN/floor", run_steps<FloorCNN>);
  reg("CNN/wengert", run_steps<WengertCNN>);
#ifdef WENGERT_BENCH_HAVE_TORCH
  reg("CNN/libtorch", run_steps<TorchCNN>);
#endif
  reg("CNN/paired", run_paired);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  if (!g_rows.empty()) {  // medians over the paired repetitions
    auto med = [](std::vector<double> v) { return median_of(std::move(v)); };
    std::vector<double> f, w, t, wf, wt;
    std::int64_t most = 0;
    for (const PairedRow& r : g_rows) most = std::max(most, r.iterations);
    std::size_t used = 0;
    for (const PairedRow& r : g_rows) {
      if (most > 1 && r.iterations == 1) continue;  // the estimate run
      ++used;
      f.push_back(r.floor_ms);
      w.push_back(r.wengert_ms);
      t.push_back(r.torch_ms);
      wf.push_back(r.wengert_ms / r.floor_ms);
      wt.push_back(r.wengert_ms / r.torch_ms);
    }
    std::printf(
        "\n| threads | floor ms/step | wengert ms/step | libtorch ms/step | wengert/floor | "
        "wengert/libtorch |\n|---:|---:|---:|---:|---:|---:|\n| %d | %.2f | %.2f | %.2f | %.3f | "
        "%.3f |\n",
        threads, med(f), med(w), med(t), med(wf), med(wt));
    std::printf("(%s; medians of %zu paired runs)\n", machine.c_str(), used);
  }
  return ok ? 0 : 2;
}
