// Neural-network ops, forward and backward timed separately, each beside a hand-written
// baseline in the same binary (nn_baseline.cpp: raw cblas_sgemm with transpose flags, plain
// xsimd loops). float32. Sizes:
//   matmul, linear      small: [32,64]·[64,64]          large: [256,1024]·[1024,1024]
//   bias_add            small: [32,64] + [64]           large: [256,1024] + [1024]
//   sigmoid, tanh       small: [32,64]                  large: [256,1024]
//   softmax             small: [32,64] (rows of 64)     large: [256,1024]
//   softmax CE (labels) small: logits [32,64]           large: [256,1024]
//   sigmoid BCE, mse    small: [32,64]                  large: [256,1024]
//   conv2d (3×3, pad 1) cnn: x [64,32,14,14], W [64,32,3,3] — the second convolution of
//                       wengert-train's CNN at batch 64 (baseline: im2col + cblas_sgemm per
//                       image, cnn_floor.cpp)
//
// One benchmark per op, direction and size, "<op>/<fwd|bwd>/<size>", in which the contenders
// take turns (turns.hpp). Its counters are each contender's median time per call (µs) and the
// ratios below. Every backward is timed as a training step pays for it: from a scalar loss.
//   fwd/wengert     tape.clear(), the inputs as leaves (parameters: they need gradients, as in
//                   training, so the op also allocates its adjoint and keeps what backward
//                   needs) and the op — one recorded step of that op.
//   fwd/baseline    the same math, written by hand into preallocated buffers.
//   bwd/wengert     tape.backward(L) on a graph recorded once, L a scalar: for the losses the
//                   loss itself; for an op with a tensor output y, L = ⟨y, C⟩ (dot_loss: a
//                   custom op after it, C a fixed random tensor of y's shape). So y's upstream
//                   gradient C arrives as in training: the sweep zeroes y's adjoint and the
//                   consumer's closure accumulates into it (dy += dL·C), then the op's closure
//                   runs. Parameter gradients accumulate.
//   bwd/baseline    the same by hand: the loss's backward (for dot_loss, C written into the
//                   step's own upstream buffer: a copy, as dL/dL = 1), then the op's
//                   hand-written backward reading that buffer (accumulating, +=, into the
//                   gradients as wengert's closures do).
//   wengert/baseline  the headline ratio ("wengert/by hand" in the table).
// For an op with a tensor output, three more contenders isolate the op's closure:
//   bwd/op_baseline the op's hand-written backward alone, handed C as its upstream gradient;
//   bwd/seeded      tape.backward(y, C): the sweep copies C into y's adjoint as the seed, then
//                   runs the op's closure (this was the headline before issue 15);
//   bwd/sweep       the seeded sweep over a custom op of y's shape whose backward does nothing.
//   "closure alone" = (seeded − sweep) / op_baseline; "seeded/op by hand" = seeded / op_baseline.
//   linear          fused linear(x, W, b) (wengert), matmul + bias_add (unfused, also from L),
//                   and GEMM + bias loop by hand (baseline).
//
// After the runs a table gives every ratio and the targets: matmul backward ≤ 1.03 of
// the two raw GEMMs; bias_add, sigmoid, tanh and the cross-entropies ≤ 1.2 of the loops.
//   OPENBLAS_NUM_THREADS=1 bench_nn_ops [--benchmark_filter=tanh]
#include <wengert/ops.hpp>
#include <wengert/tape.hpp>

#include <benchmark/benchmark.h>

#include <xsimd/xsimd.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "cnn_floor.hpp"
#include "nn_baseline.hpp"
#include "turns.hpp"

namespace {

using namespace wengert;
using wengert_bench::Turn;
namespace base = nn_baseline;

constexpr int kWarmup = 3;

struct Size {
  const char* name;
  std::size_t m, k, n;  // matmul [m,k]·[k,n]; elementwise ops and losses use [m,k]
};
const Size kSizes[] = {{"small", 32, 64, 64}, {"large", 256, 1024, 1024}};

// Every buffer, the baselines' too, comes from the allocator wengert's parameters use (64-byte
// aligned; 2 MiB and more on huge pages), so that no contender has a TLB advantage.
using Buf = std::vector<float, AlignedAllocator<float>>;

Buf random_vector(std::size_t n, std::uint64_t seed, float lo = -1, float hi = 1) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  Buf v(n);
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
  return op.finish(
      [](const BackwardContext<float>& c) { benchmark::DoNotOptimize(c.out_grad_data()); });
}

// ---- the backward of an op with a tensor output, timed from a scalar loss --------------------
//
// In a training step the upstream gradient of an op's output y arrives through the closure of
// the op that consumed y, accumulating into y's adjoint, which the sweep has zeroed. The cheapest
// such consumer that ends in a scalar: L = ⟨y, C⟩ for a fixed tensor C of y's shape (random
// values, so the gradient reaching the op is C, as non-uniform as a real one). It is a custom op
// whose backward is dy += dL·C — one plain loop, written as the library's loss closures are.

Var<float> dot_loss(const Var<float>& y, const float* C) {
  auto op = y.tape().begin_op("dot_loss", {y}, Shape{});
  const float* v = op.input_data(0);
  float s = 0;
  for (std::size_t i = 0; i < op.input_size(0); ++i) s += v[i] * C[i];
  op.out_data()[0] = s;
  return op.finish([C](const BackwardContext<float>& c) {
    if (!c.needs_grad(0)) return;
    const std::size_t n = c.input_size(0);
    const float g = c.out_grad_data()[0];
    const float* __restrict cv = C;
    float* __restrict dy = c.grad_data(0);
    for (std::size_t i = 0; i < n; ++i) dy[i] += g * cv[i];
  });
}

// The same loss's backward by hand: dL/dy = dL/dL · C with dL/dL = 1, written into the upstream
// buffer the step owns (a hand-written step writes it rather than zeroing and accumulating).
void dot_loss_backward_by_hand(const float* C, float* up, std::size_t n) {
  std::copy(C, C + n, up);
}

// The backward contenders of an op with a tensor output (see the comment at the top). `keep`
// holds whatever the rest point into; `tape` holds y, recorded once, and L = dot_loss(y, C)
// after it; `by_hand(g)` is the op's hand-written backward given the upstream gradient g
// (accumulating into its own gradient buffers), `up` the baseline's upstream buffer.
template <class ByHand>
std::vector<Turn> tensor_bwd(std::shared_ptr<void> keep, Tape<float>* tape, Var<float> y,
                             Var<float> L, const float* C, float* up, ByHand by_hand) {
  struct NoopGraph {
    Parameter<float> p;
    Tape<float> tape;
    Var<float> y;
  };
  auto z = std::make_shared<NoopGraph>();
  z->p = make_param(y.shape(), 21);
  z->y = noop(z->tape.param(z->p));
  const std::size_t n = y.size();
  return {{"baseline",
           [keep, C, up, n, by_hand] {
             dot_loss_backward_by_hand(C, up, n);
             const float r = by_hand(static_cast<const float*>(up));
             benchmark::ClobberMemory();
             return r;
           }},
          {"wengert",
           [keep, tape, y, L] {
             tape->backward(L);
             return y.grad_data()[0];
           }},
          {"op_baseline",
           [keep, C, by_hand] {
             const float r = by_hand(C);
             benchmark::ClobberMemory();
             return r;
           }},
          {"seeded",
           [keep, tape, y, C] {
             tape->backward(y, C, nullptr, 0);
             return y.grad_data()[0];
           }},
          {"sweep", [z, C] {
             z->tape.backward(z->y, C, nullptr, 0);
             return z->p.grad_data()[0];
           }}};
}

// ---- matmul and linear -----------------------------------------------------------------------

struct MatmulData {
  explicit MatmulData(Size s)
      : s(s),
        X(make_param({s.m, s.k}, 1)),
        W(make_param({s.k, s.n}, 2)),
        b(make_param({s.n}, 4)),
        G(random_vector(s.m * s.n, 3)),
        x(X.data(), X.data() + X.size()),
        w(W.data(), W.data() + W.size()),
        bv(b.data(), b.data() + b.size()),
        Y(s.m * s.n),
        dX(s.m * s.k),
        dW(s.k * s.n),
        db(s.n),
        up(s.m * s.n) {}
  Size s;
  Parameter<float> X, W, b;         // wengert's leaves
  Buf G;                            // the loss's constant C = the upstream gradient [m,n]
  Buf x, w, bv, Y, dX, dW, db, up;  // the baseline's buffers (same values)
  Tape<float> tape;
};

enum class Mm { kMatmul, kLinear, kUnfused };

Var<float> record_mm(Mm kind, MatmulData& d) {
  auto x = d.tape.param(d.X), w = d.tape.param(d.W);
  if (kind == Mm::kMatmul) return matmul(x, w);
  auto b = d.tape.param(d.b);
  return kind == Mm::kLinear ? linear(x, w, b) : bias_add(matmul(x, w), b);
}

// Forward: baseline GEMM (+ bias loop), wengert recording the op(s) on a rewound tape.
std::vector<Turn> mm_fwd(Size s, bool with_bias) {
  auto d = std::make_shared<MatmulData>(s);
  std::vector<Turn> t;
  t.push_back({"baseline", [d, with_bias] {
                 const Size& s = d->s;
                 base::gemm(false, false, s.m, s.n, s.k, d->x.data(), s.k, d->w.data(), s.n, 0.0f,
                            d->Y.data(), s.n);
                 if (with_bias)
                   base::bias_add_forward(d->Y.data(), d->bv.data(), d->Y.data(), s.m, s.n);
                 benchmark::ClobberMemory();
                 return d->Y[0];
               }});
  auto rec = [d](Mm kind) {
    return [d, kind] {
      d->tape.clear();
      return record_mm(kind, *d).data()[0];
    };
  };
  if (!with_bias) {
    t.push_back({"wengert", rec(Mm::kMatmul)});
  } else {
    t.push_back({"wengert", rec(Mm::kLinear)});
    t.push_back({"unfused", rec(Mm::kUnfused)});
  }
  return t;
}

// Backward from L = ⟨y, C⟩: by hand, the loss's backward into the upstream buffer G, then the two
// GEMMs dX += G·Wᵀ, dW += Xᵀ·G (+ the bias column sums), against wengert's sweep over a graph
// recorded once (and the fused linear's graph also unfused, matmul + bias_add).
std::vector<Turn> mm_bwd(Size s, bool with_bias) {
  auto d = std::make_shared<MatmulData>(s);  // the baseline's buffers; d->G is C
  auto by_hand = [d = d.get(), with_bias](const float* G) {
    const Size& s = d->s;
    base::gemm(false, true, s.m, s.k, s.n, G, s.n, d->w.data(), s.n, 1.0f, d->dX.data(), s.k);
    base::gemm(true, false, s.k, s.n, s.m, d->x.data(), s.k, G, s.n, 1.0f, d->dW.data(), s.n);
    if (with_bias)
      for (std::size_t i = 0; i < s.m; ++i)
        for (std::size_t j = 0; j < s.n; ++j) d->db[j] += G[i * s.n + j];
    return d->dW[0];
  };
  auto w = std::make_shared<MatmulData>(s);
  const Var<float> y = record_mm(with_bias ? Mm::kLinear : Mm::kMatmul, *w);
  const Var<float> L = dot_loss(y, d->G.data());
  std::vector<Turn> t = tensor_bwd(
      std::make_shared<std::pair<std::shared_ptr<MatmulData>, std::shared_ptr<MatmulData>>>(d, w),
      &w->tape, y, L, d->G.data(), d->up.data(), by_hand);
  if (with_bias) {
    auto u = std::make_shared<MatmulData>(s);
    auto Lu = std::make_shared<Var<float>>(dot_loss(record_mm(Mm::kUnfused, *u), d->G.data()));
    t.push_back({"unfused", [d, u, Lu] {
                   u->tape.backward(*Lu);
                   return u->W.grad_data()[0];
                 }});
  }
  return t;
}

// ---- one-input elementwise-shaped ops: bias_add, sigmoid, tanh, softmax ----------------------

enum class Unary { kBiasAdd, kSigmoid, kTanh, kSoftmax, kNoop };

struct UnaryData {
  explicit UnaryData(Size s)
      : s(s),
        n(s.m * s.k),
        X(make_param({s.m, s.k}, 1, -3, 3)),
        b(make_param({s.k}, 4)),
        G(random_vector(n, 3)),
        x(X.data(), X.data() + n),
        bv(b.data(), b.data() + s.k),
        Y(n),
        dX(n),
        db(s.k),
        up(n) {}
  Size s;
  std::size_t n;
  Parameter<float> X, b;
  Buf G, x, bv, Y, dX, db, up;  // G: the loss's constant C; up: the baseline's upstream buffer
  Tape<float> tape;
};

Var<float> record_unary(Unary u, UnaryData& d) {
  auto x = d.tape.param(d.X);
  switch (u) {
    case Unary::kBiasAdd:
      return bias_add(x, d.tape.param(d.b));
    case Unary::kSigmoid:
      return sigmoid(x);
    case Unary::kTanh:
      return tanh(x);
    case Unary::kSoftmax:
      return softmax(x);
    case Unary::kNoop:
      return noop(x);
  }
  return {};
}

std::vector<Turn> unary_fwd(Size s, Unary u) {
  auto d = std::make_shared<UnaryData>(s);
  return {{"baseline",
           [d, u] {
             const Size& s = d->s;
             switch (u) {
               case Unary::kBiasAdd:
                 base::bias_add_forward(d->x.data(), d->bv.data(), d->Y.data(), s.m, s.k);
                 break;
               case Unary::kSigmoid:
                 base::sigmoid_forward(d->x.data(), d->Y.data(), d->n);
                 break;
               case Unary::kTanh:
                 base::tanh_forward(d->x.data(), d->Y.data(), d->n);
                 break;
               case Unary::kSoftmax:
                 base::softmax_forward(d->x.data(), d->Y.data(), s.m, s.k);
                 break;
               case Unary::kNoop:
                 break;
             }
             benchmark::ClobberMemory();
             return d->Y[0];
           }},
          {"wengert", [d, u] {
             d->tape.clear();
             return record_unary(u, *d).data()[0];
           }}};
}

std::vector<Turn> unary_bwd(Size s, Unary u) {
  auto d = std::make_shared<UnaryData>(s);  // the baseline's buffers; d->G is C
  if (u == Unary::kSigmoid) base::sigmoid_forward(d->x.data(), d->Y.data(), d->n);
  if (u == Unary::kTanh) base::tanh_forward(d->x.data(), d->Y.data(), d->n);
  if (u == Unary::kSoftmax) base::softmax_forward(d->x.data(), d->Y.data(), s.m, s.k);
  auto by_hand = [d = d.get(), u](const float* G) {
    const Size& s = d->s;
    switch (u) {
      case Unary::kBiasAdd:
        base::bias_add_backward(G, d->dX.data(), d->db.data(), s.m, s.k);
        break;
      case Unary::kSigmoid:
        base::sigmoid_backward(d->Y.data(), G, d->dX.data(), d->n);
        break;
      case Unary::kTanh:
        base::tanh_backward(d->Y.data(), G, d->dX.data(), d->n);
        break;
      case Unary::kSoftmax:
        base::softmax_backward(d->Y.data(), G, d->dX.data(), s.m, s.k);
        break;
      case Unary::kNoop:
        break;
    }
    return d->dX[0];
  };
  auto w = std::make_shared<UnaryData>(s);
  const Var<float> y = record_unary(u, *w);
  const Var<float> L = dot_loss(y, d->G.data());
  return tensor_bwd(
      std::make_shared<std::pair<std::shared_ptr<UnaryData>, std::shared_ptr<UnaryData>>>(d, w),
      &w->tape, y, L, d->G.data(), d->up.data(), by_hand);
}

// ---- losses ----------------------------------------------------------------------------------

enum class Loss { kSoftmaxCE, kSigmoidBCE, kMse };

struct LossData {
  explicit LossData(Size s)
      : s(s),
        n(s.m * s.k),
        z(make_param({s.m, s.k}, 1, -4, 4)),
        y(random_vector(n, 5, 0, 1)),
        labels(random_labels(s.m, s.k, 6)),
        stats(2 * s.m),
        dz(n) {}
  Size s;
  std::size_t n;
  Parameter<float> z;
  Buf y;
  std::vector<std::int32_t> labels;
  Buf stats, dz;
  Tape<float> tape;
};

Var<float> record_loss(Loss l, LossData& d) {
  auto z = d.tape.param(d.z);
  switch (l) {
    case Loss::kSoftmaxCE:
      return softmax_cross_entropy(z, d.labels.data(), d.labels.size());
    case Loss::kSigmoidBCE:
      return sigmoid_binary_cross_entropy(z, d.tape.constant_view(d.y.data(), Shape{d.s.m, d.s.k}));
    case Loss::kMse:
      return mse(z, d.tape.constant_view(d.y.data(), Shape{d.s.m, d.s.k}));
  }
  return {};
}

float loss_forward_by_hand(Loss l, LossData& d) {
  const float* z = d.z.data();
  switch (l) {
    case Loss::kSoftmaxCE:
      return base::softmax_ce_forward(z, d.labels.data(), d.s.m, d.s.k, d.stats.data());
    case Loss::kSigmoidBCE:
      return base::sigmoid_bce_forward(z, d.y.data(), d.n);
    case Loss::kMse:
      return base::mse_forward(z, d.y.data(), d.n);
  }
  return 0;
}

std::vector<Turn> loss_fwd(Size s, Loss l) {
  auto d = std::make_shared<LossData>(s);
  return {{"baseline", [d, l] { return loss_forward_by_hand(l, *d); }},
          {"wengert", [d, l] {
             d->tape.clear();
             return record_loss(l, *d).item();
           }}};
}

std::vector<Turn> loss_bwd(Size s, Loss l) {
  auto d = std::make_shared<LossData>(s);
  loss_forward_by_hand(l, *d);  // the kept row statistics for softmax CE's backward
  auto w = std::make_shared<LossData>(s);
  auto L = std::make_shared<Var<float>>(record_loss(l, *w));
  return {{"baseline",
           [d, l] {
             const float* z = d->z.data();
             switch (l) {
               case Loss::kSoftmaxCE:
                 base::softmax_ce_backward(z, d->labels.data(), d->stats.data(), d->s.m, d->s.k,
                                           1.0f, d->dz.data());
                 break;
               case Loss::kSigmoidBCE:
                 base::sigmoid_bce_backward(z, d->y.data(), d->n, 1.0f, d->dz.data());
                 break;
               case Loss::kMse:
                 base::mse_backward(z, d->y.data(), d->n, 1.0f, d->dz.data());
                 break;
             }
             benchmark::ClobberMemory();
             return d->dz[0];
           }},
          {"wengert", [w, L] {
             w->tape.backward(*L);
             return w->z.grad_data()[0];
           }}};
}

// ---- conv2d: the CNN's second convolution --------------------------------------------------

struct ConvData {
  static constexpr std::size_t N = 64, C = 32, S = 14, O = 64, K = C * 9, P = S * S;
  ConvData()
      : X(make_param({N, C, S, S}, 11)),
        W(make_param({O, C, 3, 3}, 12, -0.1f, 0.1f)),
        b(make_param({O}, 13)),
        G(random_vector(N * O * P, 14)),
        x(X.data(), X.data() + X.size()),
        w(W.data(), W.data() + W.size()),
        bv(b.data(), b.data() + O),
        col(N * K * P),
        Y(N * O * P),
        dX(N * C * P),
        dW(O * K),
        db(O),
        dcol(K * P),
        up(N * O * P) {}
  Parameter<float> X, W, b;
  Buf G, x, w, bv, col, Y, dX, dW, db, dcol, up;  // G: the loss's constant C
  Tape<float> tape;
  Var<float> record() {
    return conv2d(tape.param(X), tape.param(W), tape.param(b), Conv2dOptions{1, 1, 1});
  }
};

std::vector<Turn> conv_fwd() {
  auto d = std::make_shared<ConvData>();
  using D = ConvData;
  return {{"baseline",
           [d] {
             wengert_bench::conv3x3_forward(d->x.data(), d->w.data(), d->bv.data(), D::N, D::C,
                                            D::S, D::O, d->col.data(), d->Y.data());
             benchmark::ClobberMemory();
             return d->Y[0];
           }},
          {"wengert", [d] {
             d->tape.clear();
             return d->record().data()[0];
           }}};
}

std::vector<Turn> conv_bwd() {
  auto d = std::make_shared<ConvData>();
  using D = ConvData;
  wengert_bench::conv3x3_forward(d->x.data(), d->w.data(), d->bv.data(), D::N, D::C, D::S, D::O,
                                 d->col.data(), d->Y.data());
  auto by_hand = [d = d.get()](const float* G) {
    wengert_bench::conv3x3_backward(G, d->col.data(), d->w.data(), D::N, D::C, D::S, D::O,
                                    d->dW.data(), d->db.data(), d->dX.data(), d->dcol.data());
    return d->dW[0];
  };
  const Var<float> y = d->record();
  const Var<float> L = dot_loss(y, d->G.data());
  return tensor_bwd(d, &d->tape, y, L, d->G.data(), d->up.data(), by_hand);
}

// ---- registration and the ratio table --------------------------------------------------------

struct Pair {
  std::string name;  // <op>/<dir>/<size>
  double target;     // 0: no target
};
std::vector<Pair>& pairs() {
  static std::vector<Pair> p;
  return p;
}

void reg(const std::string& name, double target, std::function<std::vector<Turn>()> make) {
  pairs().push_back({name, target});
  benchmark::RegisterBenchmark(name.c_str(), [make](benchmark::State& state) {
    std::vector<Turn> cs = make();
    const wengert_bench::TurnMedians m = wengert_bench::take_turns(state, cs, kWarmup);
    std::map<std::string, double> t;  // contender → median seconds per call
    for (std::size_t c = 0; c < cs.size(); ++c) {
      t[cs[c].name] = m.wall[c];
      state.counters[cs[c].name + "_us"] = m.wall[c] * 1e6;
    }
    state.counters["wengert/baseline"] = t["wengert"] / t["baseline"];
    if (t.count("unfused")) state.counters["unfused/baseline"] = t["unfused"] / t["baseline"];
    if (t.count("sweep")) {
      state.counters["net/op_baseline"] = (t["seeded"] - t["sweep"]) / t["op_baseline"];
      state.counters["seeded/op_baseline"] = t["seeded"] / t["op_baseline"];
    }
    state.counters["calls_per_turn"] = m.steps_per_batch;
  })->Unit(benchmark::kMicrosecond);
}

// ---- issue 11 ops: bmm, layer_norm, embedding, concat, slice, max along an axis ---------------
//
// Sizes: bmm small [4,8,64]·[4,64,64], large [8,32,1024]·[8,1024,128] (256 rows of 1024 in all);
// layer_norm, concat (two halves along the last axis), slice (the middle half of each row) and
// max (along the last axis) small
// [32,64], large [256,1024]; embedding: small 32 ids into a [64,64] table, large 256 ids into a
// [1024,1024] table (ids drawn with repeats). Baselines: a loop of cblas_sgemm calls (bmm),
// plain loops (the rest), into preallocated buffers.

struct Ops11Data {
  explicit Ops11Data(Size s)
      : s(s),
        batch(s.m == 32 ? 4 : 8),
        rows(s.m / batch),
        A(make_param({batch, rows, s.k}, 11)),
        B(make_param({batch, s.k, s.n / (s.m == 32 ? 1 : 8)}, 12)),
        X(make_param({s.m, s.k}, 13)),
        gamma(make_param({s.k}, 14, 0.5f, 1.5f)),
        beta(make_param({s.k}, 15)),
        H1(make_param({s.m, s.k / 2}, 16)),
        H2(make_param({s.m, s.k / 2}, 17)),
        table(make_param({s.k, s.k}, 18)),
        ids(random_labels(s.m, s.k, 19)),
        G(random_vector(s.m * s.k * 8, 20)),
        out(s.m * s.k * 8),
        dA(A.size()),
        dB(B.size()),
        dX(X.size()),
        dtable(table.size()),
        stats(2 * s.m),
        arg(s.m),
        up(s.m * s.k * 8) {}
  std::size_t n() const { return B.shape()[2]; }
  Size s;
  std::size_t batch, rows;
  Parameter<float> A, B, X, gamma, beta, H1, H2, table;
  std::vector<std::int32_t> ids;
  Buf G, out, dA, dB, dX, dtable, stats;  // G: the loss's constant C (its first out_size values)
  std::vector<std::size_t> arg;
  Buf up;  // the baseline's upstream buffer
  Tape<float> tape;
};

enum class Op11 { kBmm, kLayerNorm, kEmbedding, kConcat, kSlice, kMax };

Var<float> record11(Op11 op, Ops11Data& d) {
  Tape<float>& t = d.tape;
  switch (op) {
    case Op11::kBmm:
      return bmm(t.param(d.A), t.param(d.B));
    case Op11::kLayerNorm:
      return layer_norm(t.param(d.X), t.param(d.gamma), t.param(d.beta));
    case Op11::kEmbedding:
      return embedding(t.param(d.table), d.ids);
    case Op11::kConcat:
      return concat({t.param(d.H1), t.param(d.H2)}, 1);
    case Op11::kSlice:  // the middle half of each row: a copy
      return slice(t.param(d.X), 1, (long long)d.s.k / 4, (long long)(3 * d.s.k / 4));
    case Op11::kMax:
      return max(t.param(d.X), 1);
  }
  return {};
}

// The hand-written forward of each op.
float baseline11_fwd(Op11 op, Ops11Data& d) {
  const std::size_t m = d.s.m, k = d.s.k;
  float* y = d.out.data();
  switch (op) {
    case Op11::kBmm:
      for (std::size_t i = 0; i < d.batch; ++i)
        base::gemm(false, false, d.rows, d.n(), k, d.A.data() + i * d.rows * k, k,
                   d.B.data() + i * k * d.n(), d.n(), 0.0f, y + i * d.rows * d.n(), d.n());
      break;
    case Op11::kLayerNorm:
      for (std::size_t r = 0; r < m; ++r) {
        const float* x = d.X.data() + r * k;
        float mu = 0, v = 0;
        for (std::size_t j = 0; j < k; ++j) mu += x[j];
        mu /= float(k);
        for (std::size_t j = 0; j < k; ++j) v += (x[j] - mu) * (x[j] - mu);
        const float rstd = 1.0f / std::sqrt(v / float(k) + 1e-5f);
        d.stats[2 * r] = mu;
        d.stats[2 * r + 1] = rstd;
        for (std::size_t j = 0; j < k; ++j)
          y[r * k + j] = (x[j] - mu) * rstd * d.gamma.data()[j] + d.beta.data()[j];
      }
      break;
    case Op11::kEmbedding:
      for (std::size_t r = 0; r < m; ++r)
        std::copy(d.table.data() + std::size_t(d.ids[r]) * k,
                  d.table.data() + std::size_t(d.ids[r] + 1) * k, y + r * k);
      break;
    case Op11::kConcat:
      for (std::size_t r = 0; r < m; ++r) {
        std::copy(d.H1.data() + r * k / 2, d.H1.data() + (r + 1) * k / 2, y + r * k);
        std::copy(d.H2.data() + r * k / 2, d.H2.data() + (r + 1) * k / 2, y + r * k + k / 2);
      }
      break;
    case Op11::kSlice:
      for (std::size_t r = 0; r < m; ++r)
        std::copy(d.X.data() + r * k + k / 4, d.X.data() + r * k + 3 * k / 4, y + r * k / 2);
      break;
    case Op11::kMax:
      for (std::size_t r = 0; r < m; ++r) {
        const float* x = d.X.data() + r * k;
        std::size_t a = 0;
        for (std::size_t j = 1; j < k; ++j) a = x[j] > x[a] ? j : a;
        d.arg[r] = a;
        y[r] = x[a];
      }
      break;
  }
  benchmark::ClobberMemory();
  return y[0];
}

// The hand-written backward given the upstream gradient g, accumulating (+=) as wengert's
// closures do.
float baseline11_bwd(Op11 op, Ops11Data& d, const float* g) {
  const std::size_t m = d.s.m, k = d.s.k;
  switch (op) {
    case Op11::kBmm:
      for (std::size_t i = 0; i < d.batch; ++i) {
        const float* Gi = g + i * d.rows * d.n();
        base::gemm(false, true, d.rows, k, d.n(), Gi, d.n(), d.B.data() + i * k * d.n(), d.n(),
                   1.0f, d.dA.data() + i * d.rows * k, k);
        base::gemm(true, false, k, d.n(), d.rows, d.A.data() + i * d.rows * k, k, Gi, d.n(), 1.0f,
                   d.dB.data() + i * k * d.n(), d.n());
      }
      return d.dB[0];
    case Op11::kLayerNorm:
      for (std::size_t r = 0; r < m; ++r) {
        const float* x = d.X.data() + r * k;
        const float* gr = g + r * k;
        const float mu = d.stats[2 * r], rstd = d.stats[2 * r + 1];
        float a = 0, b = 0;
        for (std::size_t j = 0; j < k; ++j) {
          const float gh = gr[j] * d.gamma.data()[j];
          a += gh;
          b += gh * (x[j] - mu) * rstd;
        }
        a /= float(k);
        b /= float(k);
        for (std::size_t j = 0; j < k; ++j) {
          const float xh = (x[j] - mu) * rstd;
          d.dX[r * k + j] += rstd * (gr[j] * d.gamma.data()[j] - a - xh * b);
          d.out[j] += gr[j] * xh;  // dγ
          d.out[k + j] += gr[j];   // dβ
        }
      }
      return d.dX[0];
    case Op11::kEmbedding:
      for (std::size_t r = 0; r < m; ++r) {
        float* dst = d.dtable.data() + std::size_t(d.ids[r]) * k;
        for (std::size_t j = 0; j < k; ++j) dst[j] += g[r * k + j];
      }
      return d.dtable[0];
    case Op11::kConcat:
      for (std::size_t r = 0; r < m; ++r)
        for (std::size_t j = 0; j < k / 2; ++j) {
          d.dX[r * k / 2 + j] += g[r * k + j];
          d.dA[r * k / 2 + j] += g[r * k + k / 2 + j];
        }
      return d.dX[0];
    case Op11::kSlice:
      for (std::size_t r = 0; r < m; ++r)
        for (std::size_t j = 0; j < k / 2; ++j) d.dX[r * k + k / 4 + j] += g[r * k / 2 + j];
      return d.dX[0];
    case Op11::kMax:
      for (std::size_t r = 0; r < m; ++r) d.dX[r * k + d.arg[r]] += g[r];
      return d.dX[0];
  }
  return 0;
}

std::vector<Turn> ops11_fwd(Size s, Op11 op) {
  auto d = std::make_shared<Ops11Data>(s);
  return {{"baseline", [d, op] { return baseline11_fwd(op, *d); }},
          {"wengert", [d, op] {
             d->tape.clear();
             return record11(op, *d).data()[0];
           }}};
}

// Backward from L = ⟨y, C⟩, as the other ops with a tensor output (tensor_bwd).
std::vector<Turn> ops11_bwd(Size s, Op11 op) {
  auto d = std::make_shared<Ops11Data>(s);
  baseline11_fwd(op, *d);  // the statistics and arg-maxima the baseline's backward reads
  const Var<float> y = record11(op, *d);
  const Var<float> L = dot_loss(y, d->G.data());
  auto by_hand = [d = d.get(), op](const float* g) { return baseline11_bwd(op, *d, g); };
  return tensor_bwd(d, &d->tape, y, L, d->G.data(), d->up.data(), by_hand);
}

void register_ops11(Size s) {
  const std::string sz = std::string("/") + s.name;
  const std::pair<const char*, Op11> ops[] = {
      {"bmm", Op11::kBmm},       {"layer_norm", Op11::kLayerNorm}, {"embedding", Op11::kEmbedding},
      {"concat", Op11::kConcat}, {"slice", Op11::kSlice},          {"max_axis", Op11::kMax}};
  for (auto [name, op] : ops) {
    reg(std::string(name) + "/fwd" + sz, 1.2, [s, op = op] { return ops11_fwd(s, op); });
    reg(std::string(name) + "/bwd" + sz, op == Op11::kBmm ? 1.05 : 1.2,
        [s, op = op] { return ops11_bwd(s, op); });
  }
}

void register_all() {
  for (const Size s : kSizes) {
    const std::string sz = std::string("/") + s.name;
    reg("matmul/fwd" + sz, 0, [s] { return mm_fwd(s, false); });
    reg("matmul/bwd" + sz, 1.03, [s] { return mm_bwd(s, false); });
    reg("linear/fwd" + sz, 0, [s] { return mm_fwd(s, true); });
    reg("linear/bwd" + sz, 0, [s] { return mm_bwd(s, true); });
    const std::pair<const char*, Unary> unary[] = {{"bias_add", Unary::kBiasAdd},
                                                   {"sigmoid", Unary::kSigmoid},
                                                   {"tanh", Unary::kTanh},
                                                   {"softmax", Unary::kSoftmax}};
    for (auto [name, u] : unary) {
      const double target = u == Unary::kSoftmax ? 0 : 1.2;
      reg(std::string(name) + "/fwd" + sz, target, [s, u = u] { return unary_fwd(s, u); });
      reg(std::string(name) + "/bwd" + sz, target, [s, u = u] { return unary_bwd(s, u); });
    }
    const std::pair<const char*, Loss> losses[] = {
        {"softmax_ce", Loss::kSoftmaxCE}, {"sigmoid_bce", Loss::kSigmoidBCE}, {"mse", Loss::kMse}};
    for (auto [name, l] : losses) {
      const double target = l == Loss::kMse ? 0 : 1.2;
      reg(std::string(name) + "/fwd" + sz, target, [s, l = l] { return loss_fwd(s, l); });
      reg(std::string(name) + "/bwd" + sz, target, [s, l = l] { return loss_bwd(s, l); });
    }
    register_ops11(s);  // issue 11's ops (the block above)
  }
  reg("conv2d/fwd/cnn", 0, conv_fwd);
  reg("conv2d/bwd/cnn", 0, conv_bwd);
}

// Console output as usual, then one table of every pair's figures (the median aggregate's
// counters when repetitions were asked for, the single run's otherwise).
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& r : runs) {
      const bool median = r.run_type == Run::RT_Aggregate && r.aggregate_name == "median";
      if ((r.run_type == Run::RT_Aggregate && !median) || r.error_occurred) continue;
      const std::string name = r.run_name.function_name;
      auto& slot = rows_[name];
      if (!median && slot.from_median) continue;
      slot.from_median = median;
      slot.counters.clear();
      for (const auto& [k, v] : r.counters) slot.counters[k] = v.value;
    }
  }
  void Finalize() override {
    ConsoleReporter::Finalize();
    std::printf(
        "\nwengert/by hand: fwd — recording the op (tape.clear(), leaves, op) against the same "
        "math by hand;\nbwd — tape.backward(L) from a scalar loss against the same loss's and "
        "op's backward by hand: L is\nthe loss itself for the losses, else L = <y, C> (a fixed C "
        "of y's shape) after the op.\nclosure alone = (seeded sweep - noop sweep) / the op's "
        "backward by hand, given the upstream gradient;\nseeded/op by hand = tape.backward(y, C), "
        "which copies C into y's adjoint, against the same.\n");
    std::printf(
        "\n| op/direction/size | by hand µs | wengert µs | wengert/by hand (bwd: from a scalar "
        "loss) | target | bwd closure alone | bwd seeded/op by hand | other |\n"
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n");
    for (const Pair& p : pairs()) {
      const auto it = rows_.find(p.name);
      if (it == rows_.end()) continue;
      auto& c = it->second.counters;
      const double ratio = c["wengert/baseline"];
      std::printf("| %s | %.3f | %.3f | **%.3f** | ", p.name.c_str(), c["baseline_us"],
                  c["wengert_us"], ratio);
      if (p.target > 0)
        std::printf("≤ %.2f %s | ", p.target, ratio <= p.target ? "✓" : "✗");
      else
        std::printf(" | ");
      if (c.count("net/op_baseline"))
        std::printf("%.3f | %.3f | ", c["net/op_baseline"], c["seeded/op_baseline"]);
      else
        std::printf(" |  | ");
      if (c.count("unfused/baseline"))
        std::printf("matmul + bias_add: %.3f", c["unfused/baseline"]);
      if (c.count("sweep_us"))
        std::printf("%sop by hand %.3f µs, noop sweep %.3f µs",
                    c.count("unfused/baseline") ? "; " : "", c["op_baseline_us"], c["sweep_us"]);
      std::printf(" |\n");
    }
  }

 private:
  struct Row {
    bool from_median = false;
    std::map<std::string, double> counters;
  };
  std::map<std::string, Row> rows_;
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
