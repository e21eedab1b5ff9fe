// Tape overhead: a chain of 1,000 elementwise ops (alternating tanh and mul by a parameter),
// recorded and then backpropagated, the tape cleared and reused every iteration — against the
// same math written as plain C++ loops (forward, then the hand-written reverse pass).
// The parameter is 1 (kW): with a multiplier below 1 the values decay geometrically to ~1e-23,
// where the square in tanh's polynomial is a float subnormal and every op pays microcode
// assists (xsimd's float tanh: 10 ns per batch at 0.5, 44 ns at 1e-23) — a cost of the FPU that
// the plain SIMD loop pays too, and not what this benchmark is about. With 1, the values stay
// above 0.05 and the gradient near 1e-3 (tests/bench/test_mlp_floor.cpp checks that chain).
//
// Baselines:
//   Plain      — scalar loops with std::tanh: what one would write by hand.
//   PlainSimd  — the same loops, tanh through the same xsimd kernel wengert uses, so that
//                Wengert − PlainSimd is the cost of the tape itself (recording, the sweep,
//                closures), not of the arithmetic.
// At [1,1] the arithmetic is negligible and the figure is the per-op cost of the tape; at
// [8,8] the kernels start to matter. per_op = time per iteration / 1,000.
//
// Run with OPENBLAS_NUM_THREADS=1; the BLAS configuration is printed in the context block.
#include "detail/kernels.hpp"  // first of all: see its note on gcc 12

#include <wengert/wengert.hpp>

#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

extern "C" char* openblas_get_config();

namespace {

using namespace wengert;

constexpr int kOps = 1000;
constexpr double kW = 1.0;

void set_counters(benchmark::State& state, std::size_t side) {
  // kOps per iteration as a rate, inverted: seconds per op (printed as e.g. "41.2ns").
  state.counters["per_op"] = benchmark::Counter(
      kOps, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
  state.SetLabel("[" + std::to_string(side) + "," + std::to_string(side) + "]");
}

template <class T>
void Wengert(benchmark::State& state) {
  const std::size_t side = static_cast<std::size_t>(state.range(0)), n = side * side;
  const Shape shape{side, side};
  std::vector<T> x0(n, T(0.5)), seed(n, T(1));
  Parameter<T> w(shape);
  std::fill(w.data(), w.data() + n, T(kW));
  Tape<T> tape;
  for (auto _ : state) {
    tape.clear();
    auto x = tape.variable(x0.data(), shape);
    w.zero_grad();
    auto wv = tape.param(w);
    Var<T> y = x;
    for (int i = 0; i < kOps; ++i) y = (i % 2 == 0) ? tanh(y) : y * wv;
    tape.backward(y, seed.data(), nullptr, 0);
    benchmark::DoNotOptimize(x.grad_data()[0]);
  }
  set_counters(state, side);
}

// tanh through std::tanh (Simd = false) or the xsimd kernel wengert's tanh uses (Simd = true).
template <class T, bool Simd>
void Plain(benchmark::State& state) {
  const std::size_t side = static_cast<std::size_t>(state.range(0)), n = side * side;
  std::vector<T> v((kOps + 1) * n), w(n, T(kW)), gw(n), g(n);
  std::vector<T> x0(n, T(0.5));
  for (auto _ : state) {
    std::copy(x0.begin(), x0.end(), v.begin());
    for (int i = 0; i < kOps; ++i) {  // forward, every value kept for the reverse pass
      const T* in = v.data() + i * n;
      T* out = v.data() + (i + 1) * n;
      if (i % 2 == 0) {
        if constexpr (Simd)
          detail::simd_map(in, out, n, [](auto b) { return xsimd::tanh(b); });
        else
          for (std::size_t k = 0; k < n; ++k) out[k] = std::tanh(in[k]);
      } else {
        for (std::size_t k = 0; k < n; ++k) out[k] = in[k] * w[k];
      }
    }
    std::fill(g.begin(), g.end(), T(1));  // reverse pass
    std::fill(gw.begin(), gw.end(), T(0));
    for (int i = kOps; i-- > 0;) {
      const T* in = v.data() + i * n;
      const T* out = v.data() + (i + 1) * n;
      if (i % 2 == 0) {
        for (std::size_t k = 0; k < n; ++k) g[k] *= T(1) - out[k] * out[k];
      } else {
        for (std::size_t k = 0; k < n; ++k) {
          gw[k] += g[k] * in[k];
          g[k] *= w[k];
        }
      }
    }
    benchmark::DoNotOptimize(g.data());
    benchmark::DoNotOptimize(gw.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, side);
}

void ChainWengertFloat(benchmark::State& s) { Wengert<float>(s); }
void ChainPlainFloat(benchmark::State& s) { Plain<float, false>(s); }
void ChainPlainSimdFloat(benchmark::State& s) { Plain<float, true>(s); }
void ChainWengertDouble(benchmark::State& s) { Wengert<double>(s); }
void ChainPlainDouble(benchmark::State& s) { Plain<double, false>(s); }
void ChainPlainSimdDouble(benchmark::State& s) { Plain<double, true>(s); }

BENCHMARK(ChainWengertFloat)->Arg(1)->Arg(8);
BENCHMARK(ChainPlainFloat)->Arg(1)->Arg(8);
BENCHMARK(ChainPlainSimdFloat)->Arg(1)->Arg(8);
BENCHMARK(ChainWengertDouble)->Arg(1)->Arg(8);
BENCHMARK(ChainPlainDouble)->Arg(1)->Arg(8);
BENCHMARK(ChainPlainSimdDouble)->Arg(1)->Arg(8);

}  // namespace

int main(int argc, char** argv) {
  const char* core = std::getenv("OPENBLAS_CORETYPE");
  const char* threads = std::getenv("OPENBLAS_NUM_THREADS");
  benchmark::AddCustomContext("blas", openblas_get_config());
  benchmark::AddCustomContext("OPENBLAS_CORETYPE", core ? core : "(unset)");
  benchmark::AddCustomContext("OPENBLAS_NUM_THREADS", threads ? threads : "(unset)");
  benchmark::AddCustomContext("xsimd_arch", xsimd::default_arch::name());
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
