// Neural-network ops, forward and backward timed separately, each beside a hand-written
// baseline in the same binary (nn_baseline.cpp: raw cblas_sgemm with transpose flags, plain
// xsimd loops). float32. Sizes:
//   matmul, linear      small: [32,64]·[64,64]          large: [256,1024]·[1024,1024]
//   bias_add            small: [32,64] + [64]           large: [256,1024] + [1024]
//   sigmoid, tanh       small: [32,64]                  large: [256,1024]
//   softmax             small: [32,64] (rows of 64)     large: [256,1024]
//   softmax CE (labels) small: logits [32,64]           large: [256,1024]
//   sigmoid BCE, mse    small: [32,64]                  large: [256,1024]
//
// What is timed:
//   fwd/wengert   tape.clear(), the inputs as leaves (parameters: they need gradients, as in
//                 training, so the op also allocates its adjoint and keeps what backward needs)
//                 and the op — one recorded step of that op.
//   bwd/wengert   tape.backward(...) on a graph recorded once: the sweep zeroes the tape-owned
//                 adjoints (here the output's), adds the seed (an [m,n] upstream gradient, or 1
//                 for a loss) and runs the op's closure. Parameter gradients accumulate.
//   fwd/baseline  the same math, written by hand into preallocated buffers.
//   bwd/baseline  the hand-written gradient, given the upstream gradient.
//   sweep/...     the bwd/wengert graph with the op replaced by a custom op whose backward does
//                 nothing: the sweep's own cost for an [m,n] seeded output, to be read against
//                 the elementwise ops' bwd figures (for a loss the seed is one scalar).
//   linear        fused linear(x, W, b) (wengert), matmul + bias_add (wengert_unfused), and
//                 GEMM + bias loop by hand (baseline).
//
// After the runs a table gives wengert/baseline for every pair (median when repetitions are
// asked for). Run with OPENBLAS_NUM_THREADS=1 (the context block prints the BLAS setup), e.g.
//   OPENBLAS_NUM_THREADS=1 bench_nn_ops --benchmark_repetitions=5 --benchmark_min_time=0.2
#include <wengert/ops.hpp>
#include <wengert/tape.hpp>

#include <benchmark/benchmark.h>

#include <xsimd/xsimd.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "nn_baseline.hpp"

namespace {

using namespace wengert;
namespace base = nn_baseline;

struct Size {
  const char* name;
  std::size_t m, k, n;  // matmul [m,k]·[k,n]; elementwise ops and losses use [m,k]
};
const Size kSizes[] = {{"small", 32, 64, 64}, {"large", 256, 1024, 1024}};

std::vector<float> random_vector(std::size_t n, std::uint64_t seed, float lo = -1, float hi = 1) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

std::vector<std::int32_t> random_labels(std::size_t m, std::size_t c, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::int32_t> l(m);
  for (auto& v : l) v = std::int32_t(rng() % c);
  return l;
}

Parameter<float> make_param(const Shape& s, std::uint64_t seed, float lo = -1, float hi = 1) {
  Parameter<float> p(s);
  const auto v = random_vector(s.size(), seed, lo, hi);
  std::copy(v.begin(), v.end(), p.data());
  return p;
}

// A custom op with the shape of its input whose backward does nothing: isolates the sweep.
Var<float> noop(const Var<float>& x) {
  auto op = x.tape().begin_op("noop", {x}, x.shape());
  std::copy(op.input_data(0), op.input_data(0) + op.input_size(0), op.out_data());
  return op.finish([](const BackwardContext<float>& c) { benchmark::DoNotOptimize(c.out_grad_data()); });
}

void label(benchmark::State& state, std::size_t flops_per_iter = 0) {
  if (flops_per_iter)
    state.counters["GFLOP/s"] = benchmark::Counter(double(flops_per_iter) * 1e-9,
                                                   benchmark::Counter::kIsIterationInvariantRate);
}

// ---- matmul ----------------------------------------------------------------------------------

void matmul_fwd_wengert(benchmark::State& state, Size s) {
  auto A = make_param({s.m, s.k}, 1), Bp = make_param({s.k, s.n}, 2);
  Tape<float> tape;
  for (auto _ : state) {
    tape.clear();
    auto c = matmul(tape.param(A), tape.param(Bp));
    benchmark::DoNotOptimize(c.data());
  }
  label(state, 2 * s.m * s.k * s.n);
}

void matmul_fwd_baseline(benchmark::State& state, Size s) {
  auto A = random_vector(s.m * s.k, 1), Bv = random_vector(s.k * s.n, 2);
  std::vector<float> C(s.m * s.n);
  for (auto _ : state) {
    base::gemm(false, false, s.m, s.n, s.k, A.data(), s.k, Bv.data(), s.n, 0.0f, C.data(), s.n);
    benchmark::DoNotOptimize(C.data());
    benchmark::ClobberMemory();
  }
  label(state, 2 * s.m * s.k * s.n);
}

void matmul_bwd_wengert(benchmark::State& state, Size s) {
  auto A = make_param({s.m, s.k}, 1), Bp = make_param({s.k, s.n}, 2);
  const auto G = random_vector(s.m * s.n, 3);
  Tape<float> tape;
  auto c = matmul(tape.param(A), tape.param(Bp));
  for (auto _ : state) {
    tape.backward(c, G.data(), nullptr, 0);
    benchmark::DoNotOptimize(A.grad_data());
    benchmark::DoNotOptimize(Bp.grad_data());
  }
  label(state, 4 * s.m * s.k * s.n);
}

void matmul_bwd_baseline(benchmark::State& state, Size s) {
  auto A = random_vector(s.m * s.k, 1), Bv = random_vector(s.k * s.n, 2);
  const auto G = random_vector(s.m * s.n, 3);
  std::vector<float> dA(s.m * s.k), dB(s.k * s.n);
  for (auto _ : state) {
    // dA [m,k] += G [m,n]·Bᵀ;  dB [k,n] += Aᵀ·G — transposes by flag, beta = 1.
    base::gemm(false, true, s.m, s.k, s.n, G.data(), s.n, Bv.data(), s.n, 1.0f, dA.data(), s.k);
    base::gemm(true, false, s.k, s.n, s.m, A.data(), s.k, G.data(), s.n, 1.0f, dB.data(), s.n);
    benchmark::DoNotOptimize(dA.data());
    benchmark::DoNotOptimize(dB.data());
    benchmark::ClobberMemory();
  }
  label(state, 4 * s.m * s.k * s.n);
}

// ---- linear: fused, unfused, by hand ----------------------------------------------------------

void linear_fwd_wengert(benchmark::State& state, Size s, bool fused) {
  auto X = make_param({s.m, s.k}, 1), W = make_param({s.k, s.n}, 2), b = make_param({s.n}, 4);
  Tape<float> tape;
  for (auto _ : state) {
    tape.clear();
    auto x = tape.param(X), w = tape.param(W), bv = tape.param(b);
    auto y = fused ? linear(x, w, bv) : bias_add(matmul(x, w), bv);
    benchmark::DoNotOptimize(y.data());
  }
  label(state, 2 * s.m * s.k * s.n);
}

void linear_fwd_baseline(benchmark::State& state, Size s) {
  auto X = random_vector(s.m * s.k, 1), W = random_vector(s.k * s.n, 2), b = random_vector(s.n, 4);
  std::vector<float> Y(s.m * s.n);
  for (auto _ : state) {
    base::gemm(false, false, s.m, s.n, s.k, X.data(), s.k, W.data(), s.n, 0.0f, Y.data(), s.n);
    base::bias_add_forward(Y.data(), b.data(), Y.data(), s.m, s.n);
    benchmark::DoNotOptimize(Y.data());
    benchmark::ClobberMemory();
  }
  label(state, 2 * s.m * s.k * s.n);
}

void linear_bwd_wengert(benchmark::State& state, Size s, bool fused) {
  auto X = make_param({s.m, s.k}, 1), W = make_param({s.k, s.n}, 2), b = make_param({s.n}, 4);
  const auto G = random_vector(s.m * s.n, 3);
  Tape<float> tape;
  auto x = tape.param(X), w = tape.param(W), bv = tape.param(b);
  auto y = fused ? linear(x, w, bv) : bias_add(matmul(x, w), bv);
  for (auto _ : state) {
    tape.backward(y, G.data(), nullptr, 0);
    benchmark::DoNotOptimize(W.grad_data());
  }
  label(state, 4 * s.m * s.k * s.n);
}

void linear_bwd_baseline(benchmark::State& state, Size s) {
  auto X = random_vector(s.m * s.k, 1), W = random_vector(s.k * s.n, 2);
  const auto G = random_vector(s.m * s.n, 3);
  std::vector<float> dX(s.m * s.k), dW(s.k * s.n), db(s.n);
  for (auto _ : state) {
    base::gemm(false, true, s.m, s.k, s.n, G.data(), s.n, W.data(), s.n, 1.0f, dX.data(), s.k);
    base::gemm(true, false, s.k, s.n, s.m, X.data(), s.k, G.data(), s.n, 1.0f, dW.data(), s.n);
    for (std::size_t i = 0; i < s.m; ++i)
      for (std::size_t j = 0; j < s.n; ++j) db[j] += G[i * s.n + j];
    benchmark::DoNotOptimize(dX.data());
    benchmark::DoNotOptimize(db.data());
    benchmark::ClobberMemory();
  }
  label(state, 4 * s.m * s.k * s.n);
}

// ---- one-input elementwise-shaped ops: bias_add, sigmoid, tanh, softmax ----------------------

enum class Unary { kBiasAdd, kSigmoid, kTanh, kSoftmax, kNoop };

Var<float> record_unary(Unary u, Tape<float>& tape, Parameter<float>& x, Parameter<float>& b) {
  switch (u) {
    case Unary::kBiasAdd: return bias_add(tape.param(x), tape.param(b));
    case Unary::kSigmoid: return sigmoid(tape.param(x));
    case Unary::kTanh: return tanh(tape.param(x));
    case Unary::kSoftmax: return softmax(tape.param(x));
    case Unary::kNoop: return noop(tape.param(x));
  }
  return {};
}

void unary_fwd_wengert(benchmark::State& state, Size s, Unary u) {
  auto X = make_param({s.m, s.k}, 1, -3, 3), b = make_param({s.k}, 4);
  Tape<float> tape;
  for (auto _ : state) {
    tape.clear();
    auto y = record_unary(u, tape, X, b);
    benchmark::DoNotOptimize(y.data());
  }
}

void unary_bwd_wengert(benchmark::State& state, Size s, Unary u) {
  auto X = make_param({s.m, s.k}, 1, -3, 3), b = make_param({s.k}, 4);
  const auto G = random_vector(s.m * s.k, 3);
  Tape<float> tape;
  auto y = record_unary(u, tape, X, b);
  for (auto _ : state) {
    tape.backward(y, G.data(), nullptr, 0);
    benchmark::DoNotOptimize(X.grad_data());
  }
}

void unary_fwd_baseline(benchmark::State& state, Size s, Unary u) {
  const std::size_t n = s.m * s.k;
  auto X = random_vector(n, 1, -3, 3), b = random_vector(s.k, 4);
  std::vector<float> Y(n);
  for (auto _ : state) {
    switch (u) {
      case Unary::kBiasAdd: base::bias_add_forward(X.data(), b.data(), Y.data(), s.m, s.k); break;
      case Unary::kSigmoid: base::sigmoid_forward(X.data(), Y.data(), n); break;
      case Unary::kTanh: base::tanh_forward(X.data(), Y.data(), n); break;
      case Unary::kSoftmax: base::softmax_forward(X.data(), Y.data(), s.m, s.k); break;
      case Unary::kNoop: break;
    }
    benchmark::DoNotOptimize(Y.data());
    benchmark::ClobberMemory();
  }
}

void unary_bwd_baseline(benchmark::State& state, Size s, Unary u) {
  const std::size_t n = s.m * s.k;
  auto X = random_vector(n, 1, -3, 3), Y = X;
  const auto G = random_vector(n, 3);
  std::vector<float> dX(n), db(s.k);
  if (u == Unary::kSigmoid) base::sigmoid_forward(X.data(), Y.data(), n);
  if (u == Unary::kTanh) base::tanh_forward(X.data(), Y.data(), n);
  if (u == Unary::kSoftmax) base::softmax_forward(X.data(), Y.data(), s.m, s.k);
  for (auto _ : state) {
    switch (u) {
      case Unary::kBiasAdd: base::bias_add_backward(G.data(), dX.data(), db.data(), s.m, s.k); break;
      case Unary::kSigmoid: base::sigmoid_backward(Y.data(), G.data(), dX.data(), n); break;
      case Unary::kTanh: base::tanh_backward(Y.data(), G.data(), dX.data(), n); break;
      case Unary::kSoftmax: base::softmax_backward(Y.data(), G.data(), dX.data(), s.m, s.k); break;
      case Unary::kNoop: break;
    }
    benchmark::DoNotOptimize(dX.data());
    benchmark::ClobberMemory();
  }
}

// ---- losses ----------------------------------------------------------------------------------

enum class Loss { kSoftmaxCE, kSigmoidBCE, kMse };

struct LossData {
  Parameter<float> z;
  std::vector<float> y;
  std::vector<std::int32_t> labels;
  LossData(Size s) : z(make_param({s.m, s.k}, 1, -4, 4)), y(random_vector(s.m * s.k, 5, 0, 1)),
                     labels(random_labels(s.m, s.k, 6)) {}
};

Var<float> record_loss(Loss l, Tape<float>& tape, LossData& d, Size s) {
  auto z = tape.param(d.z);
  switch (l) {
    case Loss::kSoftmaxCE: return softmax_cross_entropy(z, d.labels.data(), d.labels.size());
    case Loss::kSigmoidBCE:
      return sigmoid_binary_cross_entropy(z, tape.constant_view(d.y.data(), Shape{s.m, s.k}));
    case Loss::kMse: return mse(z, tape.constant_view(d.y.data(), Shape{s.m, s.k}));
  }
  return {};
}

void loss_fwd_wengert(benchmark::State& state, Size s, Loss l) {
  LossData d(s);
  Tape<float> tape;
  for (auto _ : state) {
    tape.clear();
    auto L = record_loss(l, tape, d, s);
    benchmark::DoNotOptimize(L.data());
  }
}

void loss_bwd_wengert(benchmark::State& state, Size s, Loss l) {
  LossData d(s);
  Tape<float> tape;
  auto L = record_loss(l, tape, d, s);
  for (auto _ : state) {
    tape.backward(L);
    benchmark::DoNotOptimize(d.z.grad_data());
  }
}

void loss_fwd_baseline(benchmark::State& state, Size s, Loss l) {
  LossData d(s);
  const float* z = d.z.data();
  const std::size_t n = s.m * s.k;
  std::vector<float> stats(2 * s.m);
  for (auto _ : state) {
    float L = 0;
    switch (l) {
      case Loss::kSoftmaxCE: L = base::softmax_ce_forward(z, d.labels.data(), s.m, s.k, stats.data()); break;
      case Loss::kSigmoidBCE: L = base::sigmoid_bce_forward(z, d.y.data(), n); break;
      case Loss::kMse: L = base::mse_forward(z, d.y.data(), n); break;
    }
    benchmark::DoNotOptimize(L);
    benchmark::ClobberMemory();
  }
}

void loss_bwd_baseline(benchmark::State& state, Size s, Loss l) {
  LossData d(s);
  const float* z = d.z.data();
  const std::size_t n = s.m * s.k;
  std::vector<float> stats(2 * s.m), dz(n);
  base::softmax_ce_forward(z, d.labels.data(), s.m, s.k, stats.data());
  for (auto _ : state) {
    switch (l) {
      case Loss::kSoftmaxCE:
        base::softmax_ce_backward(z, d.labels.data(), stats.data(), s.m, s.k, 1.0f, dz.data());
        break;
      case Loss::kSigmoidBCE: base::sigmoid_bce_backward(z, d.y.data(), n, 1.0f, dz.data()); break;
      case Loss::kMse: base::mse_backward(z, d.y.data(), n, 1.0f, dz.data()); break;
    }
    benchmark::DoNotOptimize(dz.data());
    benchmark::ClobberMemory();
  }
}

// ---- registration ----------------------------------------------------------------------------

template <class F>
void reg(const std::string& name, F f) {
  benchmark::RegisterBenchmark(name.c_str(), f)->Unit(benchmark::kMicrosecond);
}

void register_all() {
  for (const Size s : kSizes) {
    const std::string sz = s.name;
    reg("matmul/fwd/" + sz + "/wengert", [s](benchmark::State& st) { matmul_fwd_wengert(st, s); });
    reg("matmul/fwd/" + sz + "/baseline", [s](benchmark::State& st) { matmul_fwd_baseline(st, s); });
    reg("matmul/bwd/" + sz + "/wengert", [s](benchmark::State& st) { matmul_bwd_wengert(st, s); });
    reg("matmul/bwd/" + sz + "/baseline", [s](benchmark::State& st) { matmul_bwd_baseline(st, s); });
    for (const char* dir : {"fwd", "bwd"}) {
      const bool fwd = dir[0] == 'f';
      const std::string p = "linear/" + std::string(dir) + "/" + sz;
      reg(p + "/wengert", [s, fwd](benchmark::State& st) {
        fwd ? linear_fwd_wengert(st, s, true) : linear_bwd_wengert(st, s, true);
      });
      reg(p + "/wengert_unfused", [s, fwd](benchmark::State& st) {
        fwd ? linear_fwd_wengert(st, s, false) : linear_bwd_wengert(st, s, false);
      });
      reg(p + "/baseline", [s, fwd](benchmark::State& st) {
        fwd ? linear_fwd_baseline(st, s) : linear_bwd_baseline(st, s);
      });
    }
    const std::pair<const char*, Unary> unary[] = {{"bias_add", Unary::kBiasAdd},
                                                   {"sigmoid", Unary::kSigmoid},
                                                   {"tanh", Unary::kTanh},
                                                   {"softmax", Unary::kSoftmax}};
    for (auto [name, u] : unary) {
      const std::string p = std::string(name) + "/";
      reg(p + "fwd/" + sz + "/wengert", [s, u = u](benchmark::State& st) { unary_fwd_wengert(st, s, u); });
      reg(p + "fwd/" + sz + "/baseline", [s, u = u](benchmark::State& st) { unary_fwd_baseline(st, s, u); });
      reg(p + "bwd/" + sz + "/wengert", [s, u = u](benchmark::State& st) { unary_bwd_wengert(st, s, u); });
      reg(p + "bwd/" + sz + "/baseline", [s, u = u](benchmark::State& st) { unary_bwd_baseline(st, s, u); });
    }
    reg("sweep/bwd/" + sz + "/wengert_noop", [s](benchmark::State& st) { unary_bwd_wengert(st, s, Unary::kNoop); });
    const std::pair<const char*, Loss> losses[] = {{"softmax_ce", Loss::kSoftmaxCE},
                                                   {"sigmoid_bce", Loss::kSigmoidBCE},
                                                   {"mse", Loss::kMse}};
    for (auto [name, l] : losses) {
      const std::string p = std::string(name) + "/";
      reg(p + "fwd/" + sz + "/wengert", [s, l = l](benchmark::State& st) { loss_fwd_wengert(st, s, l); });
      reg(p + "fwd/" + sz + "/baseline", [s, l = l](benchmark::State& st) { loss_fwd_baseline(st, s, l); });
      reg(p + "bwd/" + sz + "/wengert", [s, l = l](benchmark::State& st) { loss_bwd_wengert(st, s, l); });
      reg(p + "bwd/" + sz + "/baseline", [s, l = l](benchmark::State& st) { loss_bwd_baseline(st, s, l); });
    }
  }
}

// Console output as usual, then a table of wengert/baseline per pair: for a benchmark named
// "<op>/<dir>/<size>/wengert[_variant]", its baseline is "<op>/<dir>/<size>/baseline". Uses
// the median when repetitions were asked for, the single run otherwise.
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& r : runs) {
      const bool median = r.run_type == Run::RT_Aggregate && r.aggregate_name == "median";
      if (r.run_type == Run::RT_Aggregate && !median) continue;
      if (r.error_occurred) continue;
      const double us = r.GetAdjustedRealTime() / benchmark::GetTimeUnitMultiplier(r.time_unit) * 1e6;
      auto& slot = times_[r.run_name.str()];
      if (median || !slot.from_median) slot = {us, median};
      if (std::find(order_.begin(), order_.end(), r.run_name.str()) == order_.end())
        order_.push_back(r.run_name.str());
    }
  }
  // For the backward of an op with an [m,n] output (not a loss), also (wengert − sweep) /
  // baseline: the op's closure against the hand-written gradient, without the sweep's zeroing
  // and seeding of the output adjoint (sweep/bwd/<size>/wengert_noop).
  void Finalize() override {
    ConsoleReporter::Finalize();
    std::printf("\n%-36s %12s %12s %8s %10s\n", "wengert / baseline", "wengert us",
                "baseline us", "ratio", "net ratio");
    for (const std::string& name : order_) {
      const auto slash = name.rfind('/');
      if (name.compare(slash + 1, 7, "wengert") != 0) continue;
      const std::string stem = name.substr(0, slash);  // <op>/<dir>/<size>
      const auto b = times_.find(stem + "/baseline");
      if (b == times_.end()) continue;
      const double w = times_[name].us, base_us = b->second.us;
      std::printf("%-36s %12.3f %12.3f %8.3f", name.c_str(), w, base_us, w / base_us);
      const std::string op = stem.substr(0, stem.find('/'));
      const bool loss = op == "softmax_ce" || op == "sigmoid_bce" || op == "mse";
      const auto size_at = stem.rfind('/');
      const auto sweep = times_.find("sweep/bwd/" + stem.substr(size_at + 1) + "/wengert_noop");
      if (stem.find("/bwd/") != std::string::npos && !loss && sweep != times_.end())
        std::printf(" %10.3f", (w - sweep->second.us) / base_us);
      std::printf("\n");
    }
    for (const std::string& name : order_)
      if (name.rfind("sweep/", 0) == 0) std::printf("%-36s %12.3f\n", name.c_str(), times_[name].us);
  }

 private:
  struct Time {
    double us = 0;
    bool from_median = false;
  };
  std::map<std::string, Time> times_;
  std::vector<std::string> order_;
};

}  // namespace

int main(int argc, char** argv) {
  const char* core = std::getenv("OPENBLAS_CORETYPE");
  const char* threads = std::getenv("OPENBLAS_NUM_THREADS");
  benchmark::AddCustomContext("blas", base::blas_config());
  benchmark::AddCustomContext("OPENBLAS_CORETYPE", core ? core : "(unset)");
  benchmark::AddCustomContext("OPENBLAS_NUM_THREADS", threads ? threads : "(unset)");
  benchmark::AddCustomContext("xsimd_arch", xsimd::default_arch::name());
  register_all();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  return 0;
}
