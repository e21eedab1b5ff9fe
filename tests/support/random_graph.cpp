// Test support: random computation graphs (see random_graph.hpp).
#include "random_graph.hpp"

#include <wengert/gradcheck.hpp>
#include <wengert/ops.hpp>
#include <wengert/tape.hpp>

#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <random>
#include <sstream>

namespace wengert::testing {

namespace {

constexpr double kMaxMagnitude = 50;  // larger op results are refused

const char* const kOpNames[] = {
    "add", "sub", "mul", "div",
    "add_scalar", "sub_scalar", "rsub_scalar", "mul_scalar", "div_scalar", "rdiv_scalar",
    "neg", "square", "pow", "exp", "log", "sigmoid", "tanh", "relu",
    "sum", "mean", "sum_axis", "mean_axis",
    "matmul", "bias_add", "linear", "softmax", "log_softmax",
    "softmax_cross_entropy_labels", "softmax_cross_entropy_targets",
    "sigmoid_binary_cross_entropy", "binary_cross_entropy", "mse",
    "planted_bug"};
static_assert(sizeof(kOpNames) / sizeof(kOpNames[0]) == std::size_t(GraphOp::kCount));

/// The checker's own test: x² recorded with the derivative x instead of 2x.
template <class T>
Var<T> planted_bug(const Var<T>& x) {
  auto op = x.tape().begin_op("broken_square", {x}, x.shape());
  for (std::size_t i = 0; i < op.out_size(); ++i)
    op.out_data()[i] = op.input_data(0)[i] * op.input_data(0)[i];
  return op.finish([](const BackwardContext<T>& c) {
    if (!c.needs_grad(0)) return;
    for (std::size_t i = 0; i < c.out_size(); ++i)
      c.grad_data(0)[i] += c.out_grad_data()[i] * c.input_data(0)[i];  // wrong: 2x is right
  });
}

/// Applies one step to the slot values `v`.
template <class T>
Var<T> apply(const GraphStep& s, const std::vector<Var<T>>& v) {
  const Var<T>& a = v[s.in[0]];
  auto b = [&]() -> const Var<T>& { return v[s.in[1]]; };
  const T c = T(s.scalar);
  const bool op = s.use_operator, first = s.scalar_first;
  switch (s.op) {
    case GraphOp::kAdd: return op ? a + b() : add(a, b());
    case GraphOp::kSub: return op ? a - b() : sub(a, b());
    case GraphOp::kMul: return op ? a * b() : mul(a, b());
    case GraphOp::kDiv: return op ? a / b() : div(a, b());
    case GraphOp::kAddScalar:
      return op ? (first ? c + a : a + c) : (first ? add(c, a) : add(a, c));
    case GraphOp::kSubScalar: return op ? a - c : sub(a, c);
    case GraphOp::kRsubScalar: return op ? c - a : sub(c, a);
    case GraphOp::kMulScalar:
      return op ? (first ? c * a : a * c) : (first ? mul(c, a) : mul(a, c));
    case GraphOp::kDivScalar: return op ? a / c : div(a, c);
    case GraphOp::kRdivScalar: return op ? c / a : div(c, a);
    case GraphOp::kNeg: return op ? -a : neg(a);
    case GraphOp::kSquare: return square(a);
    case GraphOp::kPow: return pow(a, c);
    case GraphOp::kExp: return exp(a);
    case GraphOp::kLog: return log(a);
    case GraphOp::kSigmoid: return sigmoid(a);
    case GraphOp::kTanh: return tanh(a);
    case GraphOp::kRelu: return relu(a);
    case GraphOp::kSum: return sum(a);
    case GraphOp::kMean: return mean(a);
    case GraphOp::kSumAxis: return sum(a, s.axis, s.keepdims);
    case GraphOp::kMeanAxis: return mean(a, s.axis, s.keepdims);
    case GraphOp::kMatmul: return matmul(a, b(), s.transpose_a, s.transpose_b);
    case GraphOp::kBiasAdd: return bias_add(a, b());
    case GraphOp::kLinear: return linear(a, b(), v[s.in[2]]);
    case GraphOp::kSoftmax: return softmax(a);
    case GraphOp::kLogSoftmax: return log_softmax(a);
    case GraphOp::kSoftmaxCrossEntropyLabels: return softmax_cross_entropy(a, s.labels);
    case GraphOp::kSoftmaxCrossEntropyTargets: return softmax_cross_entropy(a, b());
    case GraphOp::kSigmoidBinaryCrossEntropy: return sigmoid_binary_cross_entropy(a, b());
    case GraphOp::kBinaryCrossEntropy: return binary_cross_entropy(a, b());
    case GraphOp::kMse: return mse(a, b());
    case GraphOp::kPlantedBug: return planted_bug(a);
    case GraphOp::kCount: break;
  }
  throw UsageError("random graph: unknown op");
}

int arity(GraphOp op) {
  switch (op) {
    case GraphOp::kAdd: case GraphOp::kSub: case GraphOp::kMul: case GraphOp::kDiv:
    case GraphOp::kMatmul: case GraphOp::kBiasAdd: case GraphOp::kSoftmaxCrossEntropyTargets:
    case GraphOp::kSigmoidBinaryCrossEntropy: case GraphOp::kBinaryCrossEntropy:
    case GraphOp::kMse:
      return 2;
    case GraphOp::kLinear:
      return 3;
    default:
      return 1;
  }
}

/// Records `g` on `tape`; `leaf(i, slot)` makes the Var of leaf slot i.
template <class T, class LeafFn>
Var<T> record(const RandomGraph& g, LeafFn&& leaf, std::vector<Var<T>>* all = nullptr) {
  std::vector<Var<T>> v;
  v.reserve(g.slots.size());
  for (std::size_t i = 0; i < g.slots.size(); ++i)
    v.push_back(g.slots[i].is_leaf ? leaf(i, g.slots[i]) : apply<T>(g.slots[i].step, v));
  Var<T> out = v[std::size_t(g.output)];
  if (all) *all = std::move(v);
  return out;
}

template <class T>
xt::xarray<T> cast(const xt::xarray<double>& a) {
  xt::xarray<T> r = xt::xarray<T>::from_shape(a.shape());
  for (std::size_t i = 0; i < a.size(); ++i) r.data()[i] = T(a.data()[i]);
  return r;
}

template <class E>
xt::xarray<double> to_double(const E& e) {
  xt::xarray<double> r = xt::xarray<double>::from_shape(e.shape());
  std::size_t i = 0;
  for (auto it = e.begin(); it != e.end(); ++it) r.data()[i++] = double(*it);
  return r;
}

std::vector<std::size_t> dims(const Shape& s) { return {s.begin(), s.end()}; }

// ---- generation --------------------------------------------------------------------------------

class Generator {
 public:
  Generator(std::uint64_t seed, const RandomGraphOptions& o) : rng_(seed), o_(o) {
    g_.seed = seed;
  }

  RandomGraph run() {
    NoGradGuard no_grad;  // generation only looks at values
    const int n_start = 1 + int(below(2));
    for (int i = 0; i < n_start; ++i) commit_leaf_now(random_shape(), i == 0);
    const int target = o_.min_ops + int(below(std::uint64_t(o_.max_ops - o_.min_ops + 1)));
    int ops = 0;
    bool planted = !o_.plant_bug;
    for (int attempt = 0; ops < target && attempt < 40 * target; ++attempt) {
      GraphOp op = !planted && ops == target / 2
                       ? GraphOp::kPlantedBug
                       : GraphOp(below(std::uint64_t(GraphOp::kPlantedBug)));
      if (try_op(op)) {
        ++ops;
        planted |= op == GraphOp::kPlantedBug;
      }
    }
    if (!planted) force(GraphOp::kPlantedBug, 0);
    if (ops == 0) force(GraphOp::kNeg, 0);
    // The last op is the output; everything nothing reads is summed into it.
    int out = int(g_.slots.size()) - 1;
    for (int i = 0; i < int(g_.slots.size()) - 1; ++i) {
      if (uses_[std::size_t(i)] > 0) continue;
      const int s = force(GraphOp::kSum, i);
      GraphStep step;
      step.op = GraphOp::kAdd;
      step.in[0] = out;
      step.in[1] = s;
      out = commit_step(step);
    }
    g_.output = out;
    return std::move(g_);
  }

 private:
  // ---- randomness ----
  std::uint64_t below(std::uint64_t n) { return n ? rng_() % n : 0; }
  bool chance(double p) { return std::uniform_real_distribution<double>(0, 1)(rng_) < p; }
  double uniform(double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(rng_); }

  Shape random_shape(std::size_t min_rank = 0, std::size_t max_rank = 3) {
    for (;;) {
      static const int weights[] = {1, 3, 5, 2};  // ranks 0..3
      int total = 0;
      for (std::size_t r = min_rank; r <= max_rank; ++r) total += weights[r];
      int pick = int(below(std::uint64_t(total)));
      std::size_t rank = min_rank;
      while (pick >= weights[rank]) pick -= weights[rank++];
      Shape s;
      for (std::size_t i = 0; i < rank; ++i) s.push_back(1 + below(4));
      if (s.size() <= o_.max_elements) return s;
    }
  }

  // ---- slots ----
  Shape shape(int i) const { return vars_[std::size_t(i)].shape(); }
  const double* data(int i) const { return vars_[std::size_t(i)].data(); }
  std::size_t size(int i) const { return vars_[std::size_t(i)].size(); }
  double min_value(int i) const { return *std::min_element(data(i), data(i) + size(i)); }
  double max_value(int i) const { return *std::max_element(data(i), data(i) + size(i)); }
  double min_abs(int i) const {
    double m = INFINITY;
    for (std::size_t k = 0; k < size(i); ++k) m = std::min(m, std::abs(data(i)[k]));
    return m;
  }
  bool within(int i, double lo, double hi) const { return min_value(i) >= lo && max_value(i) <= hi; }

  /// A random slot satisfying `ok` (recent slots twice as likely), or −1.
  int pick(const std::function<bool(int)>& ok) {
    std::vector<int> c;
    const int n = int(vars_.size());
    for (int i = 0; i < n; ++i)
      if (ok(i)) {
        c.push_back(i);
        if (i >= n - 3) c.push_back(i);
      }
    return c.empty() ? -1 : c[below(c.size())];
  }

  LeafKind random_kind() {
    const double u = uniform(0, 1);
    return u < 0.3 ? LeafKind::kConstant : u < 0.7 ? LeafKind::kVariable : LeafKind::kParameter;
  }

  /// A leaf for the current candidate (kept only if the candidate is accepted). Values are
  /// uniform in [lo, hi), or in ±[lo, hi) when `signed_away` (kept away from 0).
  int new_leaf(const Shape& s, double lo = -2, double hi = 2, bool signed_away = false) {
    GraphSlot slot;
    slot.kind = random_kind();
    slot.shape = s;
    slot.value = xt::xarray<double>::from_shape(dims(s));
    for (auto& x : slot.value) {
      x = uniform(lo, hi);
      if (signed_away && chance(0.5)) x = -x;
    }
    vars_.push_back(tape_.constant(slot.value));
    pending_.push_back(std::move(slot));
    return int(vars_.size()) - 1;
  }

  void commit_leaf_now(const Shape& s, bool differentiable) {
    new_leaf(s);
    if (differentiable && pending_.back().kind == LeafKind::kConstant)
      pending_.back().kind = LeafKind::kVariable;
    commit_pending();
  }

  void commit_pending() {
    for (GraphSlot& s : pending_) {
      g_.slots.push_back(std::move(s));
      uses_.push_back(0);
    }
    pending_.clear();
  }

  void reject() {
    vars_.resize(g_.slots.size());  // drop the candidate's leaves (their tape nodes stay unused)
    pending_.clear();
  }

  /// Applies `step` to the current values; keeps it (and its new leaves) if its result is
  /// finite, small and not too large.
  bool accept(const GraphStep& step, bool forced = false) {
    Var<double> y;
    try {
      y = apply<double>(step, vars_);
    } catch (const Error&) {  // the domain checks should prevent this; refuse, to be safe
      reject();
      return false;
    }
    bool ok = forced || y.size() <= o_.max_elements;
    for (std::size_t k = 0; ok && k < y.size(); ++k)
      ok = std::isfinite(y.data()[k]) && (forced || std::abs(y.data()[k]) <= kMaxMagnitude);
    if (!ok) {
      reject();
      return false;
    }
    commit_pending();
    for (int k = 0; k < arity(step.op); ++k) ++uses_[std::size_t(step.in[k])];
    GraphSlot slot;
    slot.is_leaf = false;
    slot.step = step;
    slot.shape = y.shape();
    g_.slots.push_back(std::move(slot));
    uses_.push_back(0);
    vars_.push_back(y);
    return true;
  }

  int commit_step(const GraphStep& step) {
    if (!accept(step, true)) throw UsageError("random graph: a forced step was refused");
    return int(g_.slots.size()) - 1;
  }

  int force(GraphOp op, int in) {
    GraphStep step;
    step.op = op;
    step.in[0] = in;
    return commit_step(step);
  }

  // ---- broadcasting ----
  /// A shape that broadcasts with s (possibly s itself, a suffix, with 1s, or larger).
  Shape partner(const Shape& s) {
    const std::size_t r = s.rank();
    switch (below(5)) {
      case 0: return s;
      case 1: return Shape{};
      case 2: {  // a suffix of s, some dimensions 1
        Shape p;
        for (std::size_t i = below(r + 1); i < r; ++i) p.push_back(chance(0.4) ? 1 : s[i]);
        return p;
      }
      case 3: {  // s with 1s turned into larger dimensions, and maybe a new leading one
        Shape p;
        if (r < 3 && chance(0.5)) p.push_back(1 + below(3));
        for (std::size_t i = 0; i < r; ++i) p.push_back(s[i] == 1 && chance(0.7) ? 1 + below(4) : s[i]);
        return p;
      }
      default: {  // same rank, some dimensions of either side 1
        Shape p;
        for (std::size_t i = 0; i < r; ++i) p.push_back(chance(0.5) ? 1 : s[i]);
        return p;
      }
    }
  }

  static bool broadcastable(const Shape& a, const Shape& b) {
    const std::size_t r = std::max(a.rank(), b.rank());
    for (std::size_t i = 0; i < r; ++i) {
      const std::size_t da = i + a.rank() >= r ? a[i + a.rank() - r] : 1;
      const std::size_t db = i + b.rank() >= r ? b[i + b.rank() - r] : 1;
      if (da != db && da != 1 && db != 1) return false;
    }
    return true;
  }

  // ---- candidates, one per op ----
  bool try_op(GraphOp op) {
    GraphStep s;
    s.op = op;
    auto any = [](int) { return true; };
    switch (op) {
      case GraphOp::kAdd:
      case GraphOp::kSub:
      case GraphOp::kMul:
      case GraphOp::kDiv: {
        const bool div = op == GraphOp::kDiv;
        int a = chance(0.15) ? new_leaf(random_shape()) : pick(any);
        int b;
        if (chance(0.2)) {
          b = a;  // a reused input: x·x, x + x
        } else if (chance(0.45)) {
          b = pick([&](int i) {
            return i != a && broadcastable(shape(a), shape(i)) && (!div || min_abs(i) >= 0.3);
          });
          if (b < 0) b = new_leaf(partner(shape(a)), 0.5, 2, div);
        } else {
          b = div ? new_leaf(partner(shape(a)), 0.5, 2, true) : new_leaf(partner(shape(a)));
        }
        if (div && min_abs(b) < 0.3) return reject(), false;
        if (b != a && chance(0.5) && !div) std::swap(a, b);
        s.in[0] = a;
        s.in[1] = b;
        s.use_operator = chance(0.3);
        return accept(s);
      }
      case GraphOp::kAddScalar:
      case GraphOp::kSubScalar:
      case GraphOp::kRsubScalar:
      case GraphOp::kMulScalar:
      case GraphOp::kDivScalar:
      case GraphOp::kRdivScalar: {
        s.in[0] = op == GraphOp::kRdivScalar ? pick([&](int i) { return min_abs(i) >= 0.3; })
                                             : pick(any);
        if (s.in[0] < 0) s.in[0] = new_leaf(random_shape(), 0.5, 2, true);
        s.scalar = op == GraphOp::kDivScalar ? (chance(0.5) ? -1 : 1) * uniform(0.5, 2)
                                             : uniform(-2, 2);
        s.scalar_first = chance(0.5);
        s.use_operator = chance(0.3);
        return accept(s);
      }
      case GraphOp::kPow: {
        static const double exponents[] = {0, 1, 2, 3, -1, -2, 0.5, 1.5, 2.5, -0.5};
        s.scalar = exponents[below(std::size(exponents))];
        const bool fractional = s.scalar != std::trunc(s.scalar), negative = s.scalar < 0;
        auto ok = [&](int i) {
          return (!fractional || min_value(i) >= 0.2) && (!negative || min_abs(i) >= 0.3) &&
                 (!(fractional && negative) || min_value(i) >= 0.3);
        };
        s.in[0] = pick(ok);
        if (s.in[0] < 0)
          s.in[0] = fractional ? new_leaf(random_shape(), 0.3, 2)
                               : new_leaf(random_shape(), 0.4, 2, negative);
        return accept(s);
      }
      case GraphOp::kLog:
        s.in[0] = pick([&](int i) { return min_value(i) >= 0.2; });
        if (s.in[0] < 0) s.in[0] = new_leaf(random_shape(), 0.3, 2);
        return accept(s);
      case GraphOp::kExp:
        s.in[0] = pick([&](int i) { return max_value(i) <= 3; });
        if (s.in[0] < 0) s.in[0] = new_leaf(random_shape());
        return accept(s);
      case GraphOp::kRelu:
        s.in[0] = pick([&](int i) { return min_abs(i) >= 0.05; });
        if (s.in[0] < 0) s.in[0] = new_leaf(random_shape(), 0.1, 2, true);
        return accept(s);
      case GraphOp::kNeg:
        s.use_operator = chance(0.3);
        [[fallthrough]];
      case GraphOp::kSquare:
      case GraphOp::kSigmoid:
      case GraphOp::kTanh:
      case GraphOp::kSum:
      case GraphOp::kMean:
        s.in[0] = pick(any);
        return accept(s);
      case GraphOp::kPlantedBug:  // on a variable or parameter, so that its gradient matters
        s.in[0] = pick([&](int i) {
          return i < int(g_.slots.size()) && g_.slots[std::size_t(i)].is_leaf &&
                 g_.slots[std::size_t(i)].kind != LeafKind::kConstant;
        });
        return s.in[0] >= 0 && accept(s);
      case GraphOp::kSumAxis:
      case GraphOp::kMeanAxis:
      case GraphOp::kSoftmax:
      case GraphOp::kLogSoftmax: {
        s.in[0] = pick([&](int i) { return shape(i).rank() >= 1; });
        if (s.in[0] < 0) s.in[0] = new_leaf(random_shape(1));
        const int r = int(shape(s.in[0]).rank());
        s.axis = int(below(std::uint64_t(2 * r))) - r;  // [−r, r)
        s.keepdims = chance(0.5);
        return accept(s);
      }
      case GraphOp::kMatmul: {
        int a = pick([&](int i) { return shape(i).rank() == 2; });
        if (a < 0) a = new_leaf(random_shape(2, 2));
        s.transpose_a = chance(0.4);
        s.transpose_b = chance(0.4);
        const std::size_t k = s.transpose_a ? shape(a)[0] : shape(a)[1];
        const bool tb = s.transpose_b;
        int b = pick([&](int i) { return shape(i).rank() == 2 && shape(i)[tb ? 1 : 0] == k; });
        if (b < 0 || chance(0.4)) {
          const std::size_t n = 1 + below(4);
          b = new_leaf(tb ? Shape{n, k} : Shape{k, n});
        }
        s.in[0] = a;
        s.in[1] = b;
        return accept(s);
      }
      case GraphOp::kBiasAdd: {
        int x = pick([&](int i) { return shape(i).rank() >= 1; });
        if (x < 0) x = new_leaf(random_shape(1));
        const std::size_t n = shape(x).back();
        int b = pick([&](int i) { return shape(i) == Shape{n}; });
        if (b < 0 || chance(0.5)) b = new_leaf(Shape{n});
        s.in[0] = x;
        s.in[1] = b;
        return accept(s);
      }
      case GraphOp::kLinear: {
        int x = pick([&](int i) { return shape(i).rank() == 2; });
        if (x < 0) x = new_leaf(random_shape(2, 2));
        const std::size_t k = shape(x)[1];
        int W = pick([&](int i) { return shape(i).rank() == 2 && shape(i)[0] == k; });
        if (W < 0 || chance(0.5)) W = new_leaf(Shape{k, 1 + below(4)});
        const std::size_t n = shape(W)[1];
        int b = pick([&](int i) { return shape(i) == Shape{n}; });
        if (b < 0 || chance(0.5)) b = new_leaf(Shape{n});
        s.in[0] = x;
        s.in[1] = W;
        s.in[2] = b;
        return accept(s);
      }
      case GraphOp::kSoftmaxCrossEntropyLabels: {
        int z = pick([&](int i) { return shape(i).rank() == 2; });
        if (z < 0) z = new_leaf(random_shape(2, 2));
        const std::size_t m = shape(z)[0], c = shape(z)[1];
        for (std::size_t r = 0; r < m; ++r) s.labels.push_back(std::int32_t(below(c)));
        s.in[0] = z;
        return accept(s);
      }
      case GraphOp::kSoftmaxCrossEntropyTargets: {
        int z = pick([&](int i) { return shape(i).rank() == 2; });
        if (z < 0) z = new_leaf(random_shape(2, 2));
        int y = chance(0.15) ? z : pick([&](int i) { return i != z && shape(i) == shape(z); });
        if (y < 0 || chance(0.4)) y = new_leaf(shape(z), 0, 1);
        s.in[0] = z;
        s.in[1] = y;
        return accept(s);
      }
      case GraphOp::kSigmoidBinaryCrossEntropy:
      case GraphOp::kBinaryCrossEntropy:
      case GraphOp::kMse: {
        const bool probabilities = op == GraphOp::kBinaryCrossEntropy;
        const bool targets = op != GraphOp::kMse;
        int a = probabilities ? pick([&](int i) { return within(i, 0.02, 0.98); }) : pick(any);
        if (a < 0) a = new_leaf(random_shape(), 0.05, 0.95);
        int b = -1;
        if (chance(0.15) && (!targets || within(a, 0.02, 0.98)))
          b = a;  // reused
        else
          b = pick([&](int i) {
            return i != a && shape(i) == shape(a) && (!targets || within(i, 0.02, 0.98));
          });
        if (b < 0 || chance(0.4))
          b = targets ? new_leaf(shape(a), 0.05, 0.95) : new_leaf(shape(a));
        s.in[0] = a;
        s.in[1] = b;
        return accept(s);
      }
      case GraphOp::kCount:
        break;
    }
    return false;
  }

  std::mt19937_64 rng_;
  RandomGraphOptions o_;
  RandomGraph g_;
  Tape<double> tape_;
  std::vector<Var<double>> vars_;  // values of the slots, then of the candidate's new leaves
  std::vector<GraphSlot> pending_;
  std::vector<int> uses_;
};

// ---- checking ----------------------------------------------------------------------------------

std::string kind_name(LeafKind k) {
  return k == LeafKind::kConstant ? "constant" : k == LeafKind::kVariable ? "variable" : "parameter";
}

/// Leaves as the graph declares them (Parameters live in `params`).
template <class T>
Var<T> record_declared(const RandomGraph& g, Tape<T>& tape,
                       std::vector<std::unique_ptr<Parameter<T>>>& params,
                       std::vector<Var<T>>* all = nullptr) {
  params.clear();
  params.resize(g.slots.size());  // (assign would copy a unique_ptr)
  return record<T>(
      g,
      [&](std::size_t i, const GraphSlot& s) {
        switch (s.kind) {
          case LeafKind::kConstant: return tape.constant(cast<T>(s.value));
          case LeafKind::kVariable: return tape.variable(cast<T>(s.value));
          case LeafKind::kParameter:
            params[i] = std::make_unique<Parameter<T>>(cast<T>(s.value));
            return tape.param(*params[i]);
        }
        return Var<T>{};
      },
      all);
}

/// The gradient of leaf slot i after a sweep: the variable's or the Parameter's.
template <class T>
xt::xarray<double> leaf_grad(const GraphSlot& s, const Var<T>& v, const Parameter<T>* p) {
  return s.kind == LeafKind::kParameter ? to_double(p->grad()) : to_double(v.grad());
}

double max_abs_diff(const xt::xarray<double>& a, const xt::xarray<double>& b) {
  double m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a.data()[i] - b.data()[i]));
  return std::isnan(m) ? INFINITY : m;
}

double max_abs(const xt::xarray<double>& a) {
  double m = 0;
  for (double x : a) m = std::max(m, std::abs(x));
  return m;
}

}  // namespace

const char* graph_op_name(GraphOp op) { return kOpNames[std::size_t(op)]; }

std::string RandomGraph::str() const {
  std::ostringstream os;
  for (std::size_t i = 0; i < slots.size(); ++i) {
    const GraphSlot& s = slots[i];
    os << '#' << i << ' ';
    if (s.is_leaf) {
      os << kind_name(s.kind) << ' ' << s.shape.str();
    } else {
      const GraphStep& t = s.step;
      os << graph_op_name(t.op) << '(';
      for (int k = 0; k < arity(t.op); ++k) os << (k ? ", #" : "#") << t.in[k];
      os << ')';
      if (t.op == GraphOp::kPow || (t.op >= GraphOp::kAddScalar && t.op <= GraphOp::kRdivScalar))
        os << " scalar " << t.scalar << (t.scalar_first ? " first" : "");
      if (t.op == GraphOp::kSumAxis || t.op == GraphOp::kMeanAxis)
        os << " axis " << t.axis << (t.keepdims ? " keepdims" : "");
      if (t.op == GraphOp::kMatmul) os << " ta " << t.transpose_a << " tb " << t.transpose_b;
      if (t.use_operator) os << " (operator)";
      os << " -> " << s.shape.str();
    }
    if (int(i) == output) os << "  [output]";
    os << '\n';
  }
  return os.str();
}

RandomGraph generate_random_graph(std::uint64_t seed, const RandomGraphOptions& options) {
  return Generator(seed, options).run();
}

void GraphStats::add(const RandomGraph& g) {
  ++graphs;
  std::vector<int> uses(g.slots.size(), 0);
  for (const GraphSlot& s : g.slots) {
    if (s.is_leaf) {
      constants += s.kind == LeafKind::kConstant;
      variables += s.kind == LeafKind::kVariable;
      parameters += s.kind == LeafKind::kParameter;
      continue;
    }
    const GraphStep& t = s.step;
    ++ops[graph_op_name(t.op)];
    const int n = arity(t.op);
    for (int k = 0; k < n; ++k) ++uses[std::size_t(t.in[k])];
    if (n >= 2 && t.in[0] == t.in[1]) ++reused_input;
    if (n == 2 && t.op <= GraphOp::kDiv &&
        g.slots[std::size_t(t.in[0])].shape != g.slots[std::size_t(t.in[1])].shape)
      ++broadcast;
  }
  for (int u : uses) fan_out += u >= 2;
  non_scalar_outputs += g.slots[std::size_t(g.output)].shape.rank() > 0;
}

GraphCheck check_random_graph(const RandomGraph& g) {
  GraphCheck result;
  std::ostringstream why;
  auto fail = [&](const std::string& what) {
    result.ok = false;
    why << what << '\n';
  };
  std::vector<std::size_t> diff;  // differentiable leaves, in slot order
  for (std::size_t i = 0; i < g.slots.size(); ++i)
    if (g.slots[i].is_leaf && g.slots[i].kind != LeafKind::kConstant) diff.push_back(i);

  try {
    // 1. Jacobians against central differences (every differentiable leaf as a variable).
    std::vector<xt::xarray<double>> inputs;
    for (std::size_t i : diff) inputs.push_back(g.slots[i].value);
    GradcheckFn f = [&g](const std::vector<Var<double>>& vars) {
      Tape<double>& tape = vars.front().tape();
      std::size_t next = 0;
      return record<double>(g, [&](std::size_t, const GraphSlot& s) {
        return s.kind == LeafKind::kConstant ? tape.constant(s.value) : vars[next++];
      });
    };
    GradcheckOptions options;
    options.rtol = 1e-4;
    options.atol = 1e-5;
    options.seed = g.seed;
    if (!diff.empty()) {
      const GradcheckResult r = gradcheck(f, inputs, options);
      if (!r.ok) {
        std::ostringstream os;
        os << "gradients differ from finite differences: " << r.message << "(input " << r.input
           << " is slot #" << diff[r.input] << ")";
        fail(os.str());
      }
    }

    // 2. The Parameter path against the variable path, repeated and restricted sweeps.
    std::mt19937_64 rng(g.seed ^ 0x9e3779b97f4a7c15ull);
    std::normal_distribution<double> N(0, 1);
    Tape<double> tp, tv;
    std::vector<std::unique_ptr<Parameter<double>>> params;
    std::vector<Var<double>> vp, vv;
    Var<double> yp = record_declared(g, tp, params, &vp);
    Var<double> yv = record<double>(
        g,
        [&](std::size_t, const GraphSlot& s) {
          return s.kind == LeafKind::kConstant ? tv.constant(s.value) : tv.variable(s.value);
        },
        &vv);
    xt::xarray<double> u = xt::xarray<double>::from_shape(dims(yp.shape()));
    for (double& x : u) x = N(rng);
    if (yp.requires_grad() && !diff.empty()) {
      tp.backward(yp, u);
      tv.backward(yv, u);
      std::vector<xt::xarray<double>> first;
      for (std::size_t i : diff) {
        first.push_back(leaf_grad(g.slots[i], vp[i], params[i].get()));
        const xt::xarray<double> want = to_double(vv[i].grad());
        if (!(first.back() == want))
          fail("slot #" + std::to_string(i) + " (" + kind_name(g.slots[i].kind) +
               "): the declared leaves' VJP differs from the all-variables VJP by " +
               std::to_string(max_abs_diff(first.back(), want)));
      }
      tp.backward(yp, u);  // again: tape adjoints restart, parameter adjoints accumulate
      for (std::size_t k = 0; k < diff.size(); ++k) {
        const std::size_t i = diff[k];
        const xt::xarray<double> again = leaf_grad(g.slots[i], vp[i], params[i].get());
        const bool param = g.slots[i].kind == LeafKind::kParameter;
        const xt::xarray<double> want = param ? xt::xarray<double>(2.0 * first[k]) : first[k];
        if (max_abs_diff(again, want) > 1e-12 * (1 + max_abs(want)))
          fail("slot #" + std::to_string(i) + " (" + kind_name(g.slots[i].kind) +
               "): a second sweep " + (param ? "did not double" : "changed") + " its gradient");
      }
      // A sweep restricted to a random nonempty subset of the leaves.
      for (auto& p : params)
        if (p) p->zero_grad();
      std::vector<Var<double>> wrt;
      std::vector<bool> chosen(g.slots.size(), false);
      for (std::size_t i : diff)
        if (rng() % 2) chosen[i] = true;
      chosen[diff[rng() % diff.size()]] = true;
      for (std::size_t i : diff)
        if (chosen[i]) wrt.push_back(vp[i]);
      tp.backward(yp, u.data(), wrt.data(), wrt.size());
      for (std::size_t k = 0; k < diff.size(); ++k) {
        const std::size_t i = diff[k];
        const xt::xarray<double> got = leaf_grad(g.slots[i], vp[i], params[i].get());
        xt::xarray<double> want = first[k];
        if (!chosen[i]) want.fill(0.0);
        if (!(got == want))
          fail("slot #" + std::to_string(i) + " (" + kind_name(g.slots[i].kind) + ", " +
               (chosen[i] ? "chosen" : "not chosen") +
               "): a sweep restricted to a subset of the leaves gave another gradient");
      }
      // 3. float32 against float64: value and VJP.
      Tape<float> tf;
      std::vector<std::unique_ptr<Parameter<float>>> pf;
      std::vector<Var<float>> vf;
      Var<float> yf = record_declared(g, tf, pf, &vf);
      const xt::xarray<double> yd = to_double(yp.value());
      const double scale = 1 + max_abs(yd);
      if (max_abs_diff(to_double(yf.value()), yd) > 1e-4 * scale)
        fail("float32 value differs from float64 by " +
             std::to_string(max_abs_diff(to_double(yf.value()), yd)));
      tf.backward(yf, cast<float>(u));
      for (std::size_t k = 0; k < diff.size(); ++k) {
        const std::size_t i = diff[k];
        const xt::xarray<double> gf = leaf_grad(g.slots[i], vf[i], pf[i].get());
        const double err = max_abs_diff(gf, first[k]);
        if (err > 2e-3 * (1 + max_abs(first[k])))
          fail("slot #" + std::to_string(i) + ": float32 gradient differs from float64 by " +
               std::to_string(err));
      }
    }
  } catch (const std::exception& e) {
    fail(std::string("threw: ") + e.what());
  }

  if (!result.ok) {
    std::ostringstream os;
    os << "random graph, seed " << g.seed << ":\n" << why.str() << "program:\n" << g.str();
    try {
      Tape<double> tape;
      std::vector<std::unique_ptr<Parameter<double>>> params;
      record_declared(g, tape, params);
      os << "tape:\n" << tape.str();
    } catch (const std::exception& e) {
      os << "(recording the tape listing threw: " << e.what() << ")\n";
    }
    result.message = os.str();
  }
  return result;
}

}  // namespace wengert::testing
