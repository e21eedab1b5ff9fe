// MLP training step and tape overhead: wengert side by side with a hand-written OpenBLAS step
// (the floor), libtorch and dlib (each optional), in one binary and one run. scripts/bench.sh runs
// it (1 and 2 threads) and scripts/bench_report.py turns the JSON into the ratio tables of
// benchmarks/RESULTS.md.
//
// Benchmarks (real time per iteration):
//   MLP/<S0..S3>/<floor|wengert|libtorch|dlib>  one training step (forward, loss, backward,
//                        SGD)
//   MLP/<S0..S3>/paired  the same steps taken in turns (see run_paired): medians and ratios as
//                        counters; the iteration time itself is not a figure of interest
//   OP/<1x1|8x8>/<plain|wengert|libtorch>  a chain of 1,000 tanh ops (kOpChainMixed in
//                        mlp_floor.hpp: tanh and ·w alternating), recorded then backpropagated
//   OP/<1x1|8x8>/paired  the same in turns, ns per op as counters
// Counters: allocs_per_step (heap allocation calls per step after warm-up, all threads),
// heap_peak_MiB (high-water mark of net heap growth from the benchmark's start, setup included),
// rss_peak_MiB (the process's peak resident set, reset at the benchmark's start).
//
// Before the benchmarks, a check runs one step of every contender from the same parameters and
// prints PASS/FAIL per workload: same loss, gradients and updated weights as the floor within
// float32 tolerance, and for wengert and dlib the same losses over 5 steps and the same weights
// after them. The results also go into the JSON context ("check_S0", ...).
//
// `bench_mlp --profile=S1/wengert --steps=N` runs N steps of one contender and nothing else
// (contenders: floor, wengert, libtorch, dlib; OP1x1/OP8x8 with plain, wengert, libtorch), for
// perf. dlib has no counterpart of the OP chain (its layers are whole-tensor network layers).
//
// Threads: WENGERT_BENCH_THREADS (default 1) sets libtorch's intra-op threads; OpenBLAS reads
// OPENBLAS_NUM_THREADS itself (scripts/bench.sh sets both to the same value).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <xsimd/xsimd.hpp>

#include "alloc_count.hpp"
#include "mlp_floor.hpp"
#include "mlp_wengert.hpp"
#include "turns.hpp"
#ifdef WENGERT_BENCH_HAVE_TORCH
#include "mlp_torch.hpp"
#endif
#ifdef WENGERT_BENCH_HAVE_DLIB
#include "mlp_dlib.hpp"
#endif

extern "C" char* openblas_get_config();
extern "C" char* openblas_get_corename();
extern "C" int openblas_get_num_threads();

namespace wengert_bench {
namespace {

constexpr int kWarmup = 3;      // steps before counting: the tape and buffers reach steady state
constexpr int kCountSteps = 5;  // steps over which allocations are counted
constexpr int kChainOps = 1000;

int bench_threads() {
  const char* s = std::getenv("WENGERT_BENCH_THREADS");
  const int n = s ? std::atoi(s) : 1;
  return n > 0 ? n : 1;
}

// ---- memory probes ---------------------------------------------------------------------------

// Linux ≥ 4.0: writing 5 to /proc/self/clear_refs resets the peak RSS (VmHWM) to the current RSS.
void reset_peak_rss() {
  std::ofstream f("/proc/self/clear_refs");
  f << "5";
}
double peak_rss_mib() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::atof(line.c_str() + 6) / 1024.0;
  return 0;
}

// Runs `step` kWarmup times, counts allocations over kCountSteps more, then times it; setup
// (making the contender) happens inside `make` with the heap probe already on.
template <class Make>
void run_steps(benchmark::State& state, Make make) {
  reset_peak_rss();
  alloc::start();
  auto contender = make();
  for (int i = 0; i < kWarmup; ++i) benchmark::DoNotOptimize(contender->step());
  const std::uint64_t before = alloc::count();
  for (int i = 0; i < kCountSteps; ++i) benchmark::DoNotOptimize(contender->step());
  const double per_step = double(alloc::count() - before) / kCountSteps;
  const double heap = double(alloc::peak_bytes()) / (1024.0 * 1024.0);
  alloc::stop();
  for (auto _ : state) benchmark::DoNotOptimize(contender->step());
  state.counters["allocs_per_step"] = per_step;
  state.counters["heap_peak_MiB"] = heap;
  state.counters["rss_peak_MiB"] = peak_rss_mib();
}

// ---- contenders ------------------------------------------------------------------------------

const Problem& problem(const std::string& name) {
  static std::map<std::string, Problem> problems;
  auto it = problems.find(name);
  if (it == problems.end()) it = problems.emplace(name, make_problem(workload(name))).first;
  return it->second;
}

struct PlainChain {
  PlainChain(std::size_t side, int ops)
      : n(side * side), ops(ops), x(n, 0.5f), w(n, kOpChainW), buf((ops + 1) * n), g(n), gw(n) {}
  float step() {
    return plain_op_chain(x.data(), w.data(), n, ops, buf.data(), g.data(), gw.data());
  }
  std::size_t n;
  int ops;
  std::vector<float> x, w, buf, g, gw;
};
struct WengertChain {
  WengertChain(std::size_t side, int ops, bool replay = false) : c(side, ops, replay) {}
  float step() { return c.run(); }
  WengertOpChain c;
};
#ifdef WENGERT_BENCH_HAVE_TORCH
struct TorchChain {
  TorchChain(std::size_t side, int ops) : c(side, ops) {}
  float step() { return c.run(); }
  TorchOpChain c;
};
#endif

// Runs the contenders `cs` in turns (turns.hpp) and sets, per contender, the median time per
// step as counter "<name><unit>" (scaled by `scale`, e.g. 1e6 for µs), and the ratios of the
// second contender (wengert) to the first and to each further one ("wengert/libtorch", ...).
void take_turns(benchmark::State& state, std::vector<Turn>& cs, double scale, const char* unit) {
  const TurnMedians m = wengert_bench::take_turns(state, cs, kWarmup);
  for (std::size_t c = 0; c < cs.size(); ++c) {
    state.counters[cs[c].name + unit] = m.wall[c] * scale;
    state.counters[cs[c].name + unit + "_cpu"] = m.cpu[c] * scale;
  }
  const std::string base = cs[0].name;
  state.counters["wengert/" + base] = m.wall[1] / m.wall[0];
  state.counters["wengert/" + base + "_cpu"] = m.cpu[1] / m.cpu[0];
  for (std::size_t c = 2; c < cs.size(); ++c) {
    state.counters["wengert/" + cs[c].name] = m.wall[1] / m.wall[c];
    state.counters["wengert/" + cs[c].name + "_cpu"] = m.cpu[1] / m.cpu[c];
  }
  state.counters["steps_per_batch"] = m.steps_per_batch;
}

void run_paired(benchmark::State& state, const std::string& name) {
  const Problem& p = problem(name);
  FloorMLP floor(p);
  WengertMLP weng(p), replay(p, true);
  std::vector<Turn> cs = {{"floor", [&] { return floor.step(); }},
                          {"wengert", [&] { return weng.step(); }},
                          {"replay", [&] { return replay.step(); }}};
#ifdef WENGERT_BENCH_HAVE_TORCH
  TorchMLP torch(p);
  cs.push_back({"libtorch", [&] { return torch.step(); }});
#endif
#ifdef WENGERT_BENCH_HAVE_DLIB
  DlibMLP dl(p);
  cs.push_back({"dlib", [&] { return dl.step(); }});
#endif
  take_turns(state, cs, 1e6, "_us");
  state.counters["replay/floor"] =
      state.counters["replay_us"].value / state.counters["floor_us"].value;
}

// The OP chain in turns; times per op in ns.
void run_paired_chain(benchmark::State& state, std::size_t side) {
  PlainChain plain(side, kChainOps);
  WengertChain weng(side, kChainOps), replay(side, kChainOps, true);
  std::vector<Turn> cs = {{"plain", [&] { return plain.step(); }},
                          {"wengert", [&] { return weng.step(); }},
                          {"replay", [&] { return replay.step(); }}};
#ifdef WENGERT_BENCH_HAVE_TORCH
  TorchChain torch(side, kChainOps);
  cs.push_back({"libtorch", [&] { return torch.step(); }});
#endif
  take_turns(state, cs, 1e9 / kChainOps, "_ns_per_op");
  state.counters["replay/plain"] =
      state.counters["replay_ns_per_op"].value / state.counters["plain_ns_per_op"].value;
}

void register_all() {
  for (const Workload& w : workloads()) {
    const std::string name = w.name;
    auto reg = [&](const char* who, std::function<void(benchmark::State&)> fn) {
      benchmark::RegisterBenchmark(("MLP/" + name + "/" + who).c_str(),
                                   [fn](benchmark::State& s) { fn(s); })
          ->UseRealTime()
          ->Unit(benchmark::kMicrosecond);
    };
    reg("floor", [name](benchmark::State& s) {
      run_steps(s, [&] { return std::make_unique<FloorMLP>(problem(name)); });
    });
    reg("wengert", [name](benchmark::State& s) {
      run_steps(s, [&] { return std::make_unique<WengertMLP>(problem(name)); });
    });
#ifdef WENGERT_BENCH_HAVE_TORCH
    reg("libtorch", [name](benchmark::State& s) {
      run_steps(s, [&] { return std::make_unique<TorchMLP>(problem(name)); });
    });
#endif
#ifdef WENGERT_BENCH_HAVE_DLIB
    reg("dlib", [name](benchmark::State& s) {
      run_steps(s, [&] { return std::make_unique<DlibMLP>(problem(name)); });
    });
#endif
    reg("paired", [name](benchmark::State& s) { run_paired(s, name); });
  }
  for (std::size_t side : {1, 8}) {
    const std::string sz = std::to_string(side) + "x" + std::to_string(side);
    auto reg = [&](const char* who, std::function<void(benchmark::State&)> fn) {
      benchmark::RegisterBenchmark(("OP/" + sz + "/" + who).c_str(),
                                   [fn](benchmark::State& s) { fn(s); })
          ->UseRealTime()
          ->Unit(benchmark::kMicrosecond);
    };
    reg("plain", [side](benchmark::State& s) {
      run_steps(s, [&] { return std::make_unique<PlainChain>(side, kChainOps); });
    });
    reg("wengert", [side](benchmark::State& s) {
      run_steps(s, [&] { return std::make_unique<WengertChain>(side, kChainOps); });
    });
#ifdef WENGERT_BENCH_HAVE_TORCH
    reg("libtorch", [side](benchmark::State& s) {
      run_steps(s, [&] { return std::make_unique<TorchChain>(side, kChainOps); });
    });
#endif
    reg("paired", [side](benchmark::State& s) { run_paired_chain(s, side); });
  }
}

// ---- correctness check -----------------------------------------------------------------------

// max |a − b| / max |ref|: an error relative to the tensor's scale (float32 sums of up to
// 1,024 products agree to a few 1e-7 of it).
double rel_err(const float* a, const float* b, std::size_t n) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < n; ++i) {
    num = std::max(num, std::fabs(double(a[i]) - double(b[i])));
    den = std::max(den, std::fabs(double(b[i])));
  }
  return den > 0 ? num / den : num;
}

constexpr double kTolerance = 1e-4;

// loss5 and weights5 (< 0: not checked): the largest loss difference over steps 1–5 and the
// parameters after step 5, for contenders whose later steps are plain SGD steps (libtorch's are
// not: keep_grads makes its step 2 accumulate into step 1's gradients).
struct CheckResult {
  double loss = 0, grads = 0, weights = 0, loss2 = 0, loss5 = -1, weights5 = -1;
  bool pass() const {
    return loss <= kTolerance && grads <= kTolerance && weights <= kTolerance &&
           loss2 <= kTolerance && loss5 <= kTolerance && weights5 <= kTolerance;
  }
  std::string str(const char* who) const {
    char b[320];
    int n = std::snprintf(b, sizeof b,
                          "%s vs floor: loss %.1e, grads %.1e, updated W %.1e, step-2 loss %.1e",
                          who, loss, grads, weights, loss2);
    if (loss5 >= 0)
      n += std::snprintf(b + n, sizeof b - std::size_t(n), ", steps 1-5 loss %.1e, W after 5 %.1e",
                         loss5, weights5);
    std::snprintf(b + n, sizeof b - std::size_t(n), " (rel) %s", pass() ? "PASS" : "FAIL");
    return b;
  }
};

double rel_scalar(float a, float b) {
  return std::fabs(double(a) - double(b)) / std::max(1e-30, std::fabs(double(b)));
}

bool check_all() {
  bool ok = true;
  for (const Workload& w : workloads()) {
    const Problem& p = problem(w.name);
    FloorMLP floor(p);
    WengertMLP weng(p);
    const float lf = floor.step(), lw = weng.step();
    CheckResult cw;
    cw.loss = rel_scalar(lw, lf);
    for (std::size_t l = 0; l < w.layers(); ++l) {
      const std::size_t nW = w.sizes[l] * w.sizes[l + 1], nb = w.sizes[l + 1];
      cw.grads = std::max(cw.grads, rel_err(weng.weight(l).grad_data(), floor.grad_weight(l), nW));
      cw.grads = std::max(cw.grads, rel_err(weng.bias(l).grad_data(), floor.grad_bias(l), nb));
      cw.weights = std::max(cw.weights, rel_err(weng.weight(l).data(), floor.weight(l), nW));
      cw.weights = std::max(cw.weights, rel_err(weng.bias(l).data(), floor.bias(l), nb));
    }
    auto wengert_weights = [&] {
      double e = 0;
      for (std::size_t l = 0; l < w.layers(); ++l) {
        const std::size_t nW = w.sizes[l] * w.sizes[l + 1], nb = w.sizes[l + 1];
        e = std::max(e, rel_err(weng.weight(l).data(), floor.weight(l), nW));
        e = std::max(e, rel_err(weng.bias(l).data(), floor.bias(l), nb));
      }
      return e;
    };
#ifdef WENGERT_BENCH_HAVE_DLIB
    DlibMLP dl(p);
    CheckResult cd;
    cd.loss = rel_scalar(dl.step(), lf);
    auto dlib_weights = [&] {
      double e = 0;
      for (std::size_t l = 0; l < w.layers(); ++l) {
        const std::size_t nW = w.sizes[l] * w.sizes[l + 1], nb = w.sizes[l + 1];
        e = std::max(e, rel_err(dl.weight(l).data(), floor.weight(l), nW));
        e = std::max(e, rel_err(dl.bias(l).data(), floor.bias(l), nb));
      }
      return e;
    };
    for (std::size_t l = 0; l < w.layers(); ++l) {
      const std::size_t nW = w.sizes[l] * w.sizes[l + 1], nb = w.sizes[l + 1];
      cd.grads = std::max(cd.grads, rel_err(dl.grad_weight(l).data(), floor.grad_weight(l), nW));
      cd.grads = std::max(cd.grads, rel_err(dl.grad_bias(l).data(), floor.grad_bias(l), nb));
    }
    cd.weights = dlib_weights();
#endif
#ifdef WENGERT_BENCH_HAVE_TORCH
    TorchMLP torch(p);
    torch.keep_grads(true);
    const float lt = torch.step();
    CheckResult ct;
    ct.loss = rel_scalar(lt, lf);
    for (std::size_t l = 0; l < w.layers(); ++l) {
      const std::size_t nW = w.sizes[l] * w.sizes[l + 1], nb = w.sizes[l + 1];
      ct.grads = std::max(ct.grads, rel_err(torch.grad_weight(l).data(), floor.grad_weight(l), nW));
      ct.grads = std::max(ct.grads, rel_err(torch.grad_bias(l).data(), floor.grad_bias(l), nb));
      ct.weights = std::max(ct.weights, rel_err(torch.weight(l).data(), floor.weight(l), nW));
    }
#endif
    const float lf2 = floor.step();
    cw.loss2 = rel_scalar(weng.step(), lf2);
#ifdef WENGERT_BENCH_HAVE_DLIB
    cd.loss2 = rel_scalar(dl.step(), lf2);
    cd.loss5 = std::max(cd.loss, cd.loss2);
#endif
    // Steps 3–5: the losses along the way and the parameters after step 5.
    cw.loss5 = std::max(cw.loss, cw.loss2);
    float lf5 = lf2;
    for (int s = 3; s <= 5; ++s) {
      lf5 = floor.step();
      cw.loss5 = std::max(cw.loss5, rel_scalar(weng.step(), lf5));
#ifdef WENGERT_BENCH_HAVE_DLIB
      cd.loss5 = std::max(cd.loss5, rel_scalar(dl.step(), lf5));
#endif
    }
    cw.weights5 = wengert_weights();
#ifdef WENGERT_BENCH_HAVE_DLIB
    cd.weights5 = dlib_weights();
#endif
    std::string line = std::string(w.name) + " (" + w.describe() + "): loss " + std::to_string(lf) +
                       ", after 5 steps " + std::to_string(lf5) + "; " + cw.str("wengert");
    ok = ok && cw.pass();
#ifdef WENGERT_BENCH_HAVE_TORCH
    ct.loss2 = rel_scalar(torch.step(), lf2);
    line += "; " + ct.str("libtorch");
    ok = ok && ct.pass();
#endif
#ifdef WENGERT_BENCH_HAVE_DLIB
    line += "; " + cd.str("dlib");
    ok = ok && cd.pass();
#endif
    {  // Record once and replay: the same losses and parameters as recording every step.
      WengertMLP recorded(p), replayed(p, true);
      bool same = true;
      for (int s = 0; s < 5; ++s) {
        const float a = recorded.step(), b = replayed.step();
        same = same && std::memcmp(&a, &b, sizeof a) == 0;
      }
      for (std::size_t l = 0; l < w.layers(); ++l) {
        const auto &Wa = recorded.weight(l), &Wb = replayed.weight(l);
        const auto &ba = recorded.bias(l), &bb = replayed.bias(l);
        same = same && std::memcmp(Wa.data(), Wb.data(), Wa.size() * sizeof(float)) == 0 &&
               std::memcmp(ba.data(), bb.data(), ba.size() * sizeof(float)) == 0;
      }
      line += same ? "; replay: 5 steps bit-identical to recording PASS"
                   : "; replay: differs from recording FAIL";
      ok = ok && same;
    }
    std::printf("check %s\n", line.c_str());
    benchmark::AddCustomContext(std::string("check_") + w.name, line);
  }
  // The OP chain: dx of wengert's chain against the plain loop.
  for (std::size_t side : {1, 8}) {
    PlainChain plain(side, kChainOps);
    WengertChain weng(side, kChainOps), replay(side, kChainOps, true);
    const float gp = plain.step(), gw = weng.step();
    replay.step();                   // records
    const float gr = replay.step();  // replays
    const double e = rel_scalar(gw, gp);
    const bool same = std::memcmp(&gw, &gr, sizeof gw) == 0;
    char b[200];
    std::snprintf(b, sizeof b,
                  "OP %zux%zu: dx[0] plain %.6g, wengert %.6g (rel %.1e), replayed %s %s", side,
                  side, double(gp), double(gw), e, same ? "identical" : "DIFFERENT",
                  e <= kTolerance && same ? "PASS" : "FAIL");
    ok = ok && e <= kTolerance && same;
    std::printf("check %s\n", b);
    benchmark::AddCustomContext("check_OP_" + std::to_string(side), b);
  }
  std::fflush(stdout);
  return ok;
}

// ---- machine facts ---------------------------------------------------------------------------

std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) {
      auto pos = line.find(':');
      return pos == std::string::npos ? line : line.substr(pos + 2);
    }
  return "unknown";
}

void add_context(int threads) {
  const char* core = std::getenv("OPENBLAS_CORETYPE");
  const char* obt = std::getenv("OPENBLAS_NUM_THREADS");
  benchmark::AddCustomContext("cpu_model", cpu_model());
  benchmark::AddCustomContext("blas_config", openblas_get_config());
  benchmark::AddCustomContext("blas_core", openblas_get_corename());
  benchmark::AddCustomContext("OPENBLAS_CORETYPE", core ? core : "(unset)");
  benchmark::AddCustomContext("OPENBLAS_NUM_THREADS", obt ? obt : "(unset)");
  benchmark::AddCustomContext("blas_threads", std::to_string(openblas_get_num_threads()));
  const char* omp_wait = std::getenv("OMP_WAIT_POLICY");
  benchmark::AddCustomContext("OMP_WAIT_POLICY", omp_wait ? omp_wait : "(unset)");
  benchmark::AddCustomContext("bench_threads", std::to_string(threads));
  benchmark::AddCustomContext("xsimd_arch", xsimd::default_arch::name());
  benchmark::AddCustomContext("compiler", "g++ " __VERSION__);
#ifdef WENGERT_BENCH_HAVE_TORCH
  benchmark::AddCustomContext("torch", torch_info());
#else
  benchmark::AddCustomContext("torch", "(not built: find_package(Torch) failed)");
#endif
#ifdef WENGERT_BENCH_HAVE_DLIB
  benchmark::AddCustomContext("dlib", dlib_info());
#else
  benchmark::AddCustomContext("dlib", "(not built: WENGERT_BENCH_DLIB off or dlib not found)");
#endif
  double load[3] = {0, 0, 0};
  if (getloadavg(load, 3) == 3) {
    char b[64];
    std::snprintf(b, sizeof b, "%.2f %.2f %.2f", load[0], load[1], load[2]);
    benchmark::AddCustomContext("loadavg_at_start", b);
  }
}

// `bench_mlp --profile=S1/wengert [--steps=N]` runs N steps (default 10,000) of one contender
// and exits, without the check or the benchmark harness: a clean target for perf and callgrind.
int profile(const std::string& what, long steps) {
  const auto slash = what.find('/');
  const std::string wl = what.substr(0, slash),
                    who = slash == std::string::npos ? "" : what.substr(slash + 1);
  double sink = 0;
  auto loop = [&](auto&& c) {
    for (long i = 0; i < steps; ++i) sink += c.step();
  };
  if (wl == "OP1x1" || wl == "OP8x8") {
    const std::size_t side = wl == "OP1x1" ? 1 : 8;
    if (who == "plain")
      loop(PlainChain(side, kChainOps));
    else if (who == "wengert")
      loop(WengertChain(side, kChainOps));
#ifdef WENGERT_BENCH_HAVE_TORCH
    else if (who == "libtorch")
      loop(TorchChain(side, kChainOps));
#endif
    else
      return std::fprintf(stderr, "unknown contender '%s'\n", who.c_str()), 1;
  } else {
    const Problem& p = problem(wl);
    if (who == "floor")
      loop(FloorMLP(p));
    else if (who == "wengert")
      loop(WengertMLP(p));
#ifdef WENGERT_BENCH_HAVE_TORCH
    else if (who == "libtorch")
      loop(TorchMLP(p));
#endif
#ifdef WENGERT_BENCH_HAVE_DLIB
    else if (who == "dlib")
      loop(DlibMLP(p));
#endif
    else
      return std::fprintf(stderr, "unknown contender '%s'\n", who.c_str()), 1;
  }
  std::printf("%s: %ld steps, checksum %g\n", what.c_str(), steps, sink);
  return 0;
}

}  // namespace
}  // namespace wengert_bench

int main(int argc, char** argv) {
  using namespace wengert_bench;
  const int threads = bench_threads();
#ifdef WENGERT_BENCH_HAVE_TORCH
  torch_set_threads(threads);
#endif
  {
    std::string what;
    long steps = 10000;
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      if (a.rfind("--profile=", 0) == 0) what = a.substr(10);
      if (a.rfind("--steps=", 0) == 0) steps = std::atol(a.c_str() + 8);
    }
    if (!what.empty()) return profile(what, steps);
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  add_context(threads);
  const bool ok = check_all();
  benchmark::AddCustomContext("check", ok ? "PASS" : "FAIL");
  register_all();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return ok ? 0 : 2;
}
