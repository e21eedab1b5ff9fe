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
  Var<T> in[3];
  for (int k = 0; k < s.op->arity; ++k) in[k] = v[std::size_t(s.in[k])];
  return s.op->record(in, s.args);
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
  Generator(std::uint64_t seed, const RandomGraphOptions& o) : rng_(seed), o_(o) { g_.seed = seed; }

  RandomGraph run() {
    NoGradGuard no_grad;  // generation only looks at values
    const int n_start = 1 + int(below(2));
    for (int i = 0; i < n_start; ++i) commit_leaf_now(random_shape(), i == 0);
    const int target = o_.min_ops + int(below(std::uint64_t(o_.max_ops - o_.min_ops + 1)));
    int ops = 0;
    bool planted = !o_.plant_bug;
    const std::vector<OpEntry>& registry = op_registry();
    const OpEntry& bug = planted_bug_op();
    // The planted op (plant_bug) is the last one drawn, so that nothing reads its output but
    // the final sum: its derivative always reaches the output (an op reading it might not pass
    // it on: sum(softmax(x)) is 1 for any x, and x − x is 0).
    for (int attempt = 0; ops < target && attempt < 40 * target; ++attempt) {
      const OpEntry& op = !planted && ops == target - 1 ? bug : registry[below(registry.size())];
      if (try_op(op)) {
        ++ops;
        planted |= &op == &bug;
      }
    }
    if (!planted) force(bug, 0);
    if (ops == 0) force(find_op("neg"), 0);
    // The last op is the output; everything nothing reads is summed into it.
    int out = int(g_.slots.size()) - 1;
    for (int i = 0; i < int(g_.slots.size()) - 1; ++i) {
      if (uses_[std::size_t(i)] > 0) continue;
      const int s = force(find_op("sum"), i);
      GraphStep step;
      step.op = &find_op("add");
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
  double uniform(double lo, double hi) {
    return std::uniform_real_distribution<double>(lo, hi)(rng_);
  }

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
  /// Whether every value of slot i lies in `d`.
  bool in_domain(int i, const OpDomain& d) const {
    return size(i) == 0 || (min_value(i) >= d.lo && max_value(i) <= d.hi &&
                            (d.min_abs == 0 || min_abs(i) >= d.min_abs));
  }

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

  /// A value in `d` (and in [−2, 2]), uniform over that range.
  double draw(const OpDomain& d) {
    const double lo = std::max(d.lo, -2.0), hi = std::min(d.hi, 2.0);
    for (int attempt = 0; attempt < 1000; ++attempt) {
      const double x = uniform(lo, hi);
      if (d.contains(x)) return x;
    }
    return hi;  // (not reached for the registry's domains)
  }

  /// A leaf for the current candidate (kept only if the candidate is accepted), with values in
  /// `d` (and in [−2, 2]).
  int new_leaf(const Shape& s, const OpDomain& d = anything()) {
    GraphSlot slot;
    slot.kind = random_kind();
    slot.shape = s;
    slot.value = xt::xarray<double>::from_shape(dims(s));
    for (auto& x : slot.value) x = draw(d);
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
    for (int k = 0; k < step.op->arity; ++k) ++uses_[std::size_t(step.in[k])];
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

  int force(const OpEntry& op, int in) {
    GraphStep step;
    step.op = &op;
    step.in[0] = in;
    return commit_step(step);
  }

  // ---- broadcasting ----
  /// A shape that broadcasts with s (possibly s itself, a suffix, with 1s, or larger).
  Shape partner(const Shape& s) {
    const std::size_t r = s.rank();
    switch (below(5)) {
      case 0:
        return s;
      case 1:
        return Shape{};
      case 2: {  // a suffix of s, some dimensions 1
        Shape p;
        for (std::size_t i = below(r + 1); i < r; ++i) p.push_back(chance(0.4) ? 1 : s[i]);
        return p;
      }
      case 3: {  // s with 1s turned into larger dimensions, and maybe a new leading one
        Shape p;
        if (r < 3 && chance(0.5)) p.push_back(1 + below(3));
        for (std::size_t i = 0; i < r; ++i)
          p.push_back(s[i] == 1 && chance(0.7) ? 1 + below(4) : s[i]);
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

  /// A small image [N,C,H,W] (N, C in 1..2, H, W in 1..4, at most max_elements values): an
  /// earlier rank-4 slot with values in `d` (if `reuse`), or a new leaf.
  int image_input(const OpDomain& d, bool reuse) {
    const int i =
        reuse && chance(0.7)
            ? pick([&](int k) { return shape(k).rank() == 4 && size(k) > 0 && in_domain(k, d); })
            : -1;
    if (i >= 0) return i;
    for (;;) {
      const Shape s{1 + below(2), 1 + below(2), 1 + below(4), 1 + below(4)};
      if (s.size() <= o_.max_elements) return new_leaf(s, d);
    }
  }

  // ---- candidates, one per shape rule ----
  /// Draws the step's parameters and inputs for `op` (its rule, ranks and domains) and keeps it
  /// if its result is acceptable.
  bool try_op(const OpEntry& op) {
    GraphStep s;
    s.op = &op;
    OpArgs& a = s.args;
    a.spelling = int(below(op.spellings.size()));
    if (op.takes_scalar)
      a.scalar = op.scalar_values.empty() ? draw(op.scalar_domain)
                                          : op.scalar_values[below(op.scalar_values.size())];
    if (&op == &planted_bug_op()) {  // on a variable or parameter, so that its gradient matters
      s.in[0] = pick([&](int i) {
        return i < int(g_.slots.size()) && g_.slots[std::size_t(i)].is_leaf &&
               g_.slots[std::size_t(i)].kind != LeafKind::kConstant;
      });
      return s.in[0] >= 0 && accept(s);
    }
    const OpDomain d0 = op.input_domain(0, a);
    const OpDomain d1 = op.arity > 1 ? op.input_domain(1, a) : anything();
    const std::size_t hi_rank = std::min<std::size_t>(op.max_rank, 3);
    const std::size_t lo_rank = std::min(op.min_rank, hi_rank);
    auto fits0 = [&](int i) {
      const std::size_t r = shape(i).rank();
      return r >= lo_rank && r <= hi_rank && in_domain(i, d0);
    };
    /// Input 0: an earlier slot of a fitting rank with values in the domain, or a new leaf.
    auto first_input = [&] {
      const int i = pick(fits0);
      return i >= 0 ? i : new_leaf(random_shape(lo_rank, hi_rank), d0);
    };
    switch (op.rule) {
      case ShapeRule::kElementwise:
      case ShapeRule::kReduceAll:
        s.in[0] = first_input();
        return accept(s);
      case ShapeRule::kReduceAxis: {
        s.in[0] = first_input();
        const int r = int(shape(s.in[0]).rank());
        a.axis = int(below(std::uint64_t(2 * r))) - r;  // [−r, r)
        a.keepdims = chance(0.5);
        return accept(s);
      }
      case ShapeRule::kLabels: {
        s.in[0] = first_input();
        const std::size_t m = shape(s.in[0])[0], c = shape(s.in[0])[1];
        for (std::size_t r = 0; r < m; ++r) a.labels.push_back(std::int32_t(below(c)));
        return accept(s);
      }
      case ShapeRule::kBroadcast: {
        int x = chance(0.15) ? new_leaf(random_shape(lo_rank, hi_rank), d0) : pick(fits0);
        if (x < 0) x = new_leaf(random_shape(lo_rank, hi_rank), d0);
        int y;
        if (chance(0.2)) {
          y = x;  // a reused input: x·x, x + x
        } else if (chance(0.45)) {
          y = pick([&](int i) {
            return i != x && broadcastable(shape(x), shape(i)) && in_domain(i, d1);
          });
          if (y < 0) y = new_leaf(partner(shape(x)), d1);
        } else {
          y = new_leaf(partner(shape(x)), d1);
        }
        if (!in_domain(y, d1)) return reject(), false;
        if (y != x && d0 == d1 && chance(0.5)) std::swap(x, y);
        s.in[0] = x;
        s.in[1] = y;
        return accept(s);
      }
      case ShapeRule::kLoss: {
        const int x = first_input();
        int y = -1;
        if (chance(0.15) && in_domain(x, d1))
          y = x;  // reused
        else
          y = pick([&](int i) { return i != x && shape(i) == shape(x) && in_domain(i, d1); });
        if (y < 0 || chance(0.4)) y = new_leaf(shape(x), d1);
        s.in[0] = x;
        s.in[1] = y;
        return accept(s);
      }
      case ShapeRule::kMatmul: {
        const int x = first_input();
        a.transpose_a = chance(0.4);
        a.transpose_b = chance(0.4);
        const std::size_t k = a.transpose_a ? shape(x)[0] : shape(x)[1];
        const bool tb = a.transpose_b;
        int y = pick([&](int i) {
          return shape(i).rank() == 2 && shape(i)[tb ? 1 : 0] == k && in_domain(i, d1);
        });
        if (y < 0 || chance(0.4)) {
          const std::size_t n = 1 + below(4);
          y = new_leaf(tb ? Shape{n, k} : Shape{k, n}, d1);
        }
        s.in[0] = x;
        s.in[1] = y;
        return accept(s);
      }
      case ShapeRule::kBiasAdd: {
        const int x = first_input();
        const std::size_t n = shape(x).back();
        int b = pick([&](int i) { return shape(i) == Shape{n} && in_domain(i, d1); });
        if (b < 0 || chance(0.5)) b = new_leaf(Shape{n}, d1);
        s.in[0] = x;
        s.in[1] = b;
        return accept(s);
      }
      case ShapeRule::kConv2d: {
        const int x = image_input(d0, true);
        const std::size_t C = shape(x)[1], O = 1 + below(2);
        a.stride = 1 + below(2);
        a.padding = below(2);
        a.dilation = 1 + below(2);
        s.in[0] = x;
        s.in[1] = new_leaf(Shape{O, C, 1 + below(2), 1 + below(3)}, op.input_domain(1, a));
        s.in[2] = new_leaf(Shape{O}, op.input_domain(2, a));
        return accept(s);
      }
      case ShapeRule::kPool2d: {
        // Max pooling on a new leaf only: its random values have no ties, where the maximum
        // has a kink (an earlier relu's zeros would).
        s.in[0] = image_input(d0, op.name != "max_pool2d");
        a.kernel = 1 + below(3);
        a.stride = below(3);  // 0: the kernel
        a.padding = below(a.kernel / 2 + 1);
        return accept(s);
      }
      case ShapeRule::kGlobalPool:
        s.in[0] = image_input(d0, true);
        return accept(s);
      case ShapeRule::kBatchNorm: {
        const int x = image_input(d0, true);
        const std::size_t C = shape(x)[1];
        s.in[0] = x;
        s.in[1] = new_leaf(Shape{C}, op.input_domain(1, a));
        s.in[2] = new_leaf(Shape{C}, op.input_domain(2, a));
        return accept(s);
      }
      case ShapeRule::kLinear: {
        const int x = first_input();
        const OpDomain d2 = op.input_domain(2, a);
        const std::size_t k = shape(x)[1];
        int W = pick(
            [&](int i) { return shape(i).rank() == 2 && shape(i)[0] == k && in_domain(i, d1); });
        if (W < 0 || chance(0.5)) W = new_leaf(Shape{k, 1 + below(4)}, d1);
        const std::size_t n = shape(W)[1];
        int b = pick([&](int i) { return shape(i) == Shape{n} && in_domain(i, d2); });
        if (b < 0 || chance(0.5)) b = new_leaf(Shape{n}, d2);
        s.in[0] = x;
        s.in[1] = W;
        s.in[2] = b;
        return accept(s);
      }
      case ShapeRule::kCustom1:
      case ShapeRule::kCustom2:
      case ShapeRule::kCustom3: {
        s.in[0] = first_input();
        const int r = int(shape(s.in[0]).rank());
        if (op.uses_axis && r > 0) {
          a.axis = int(below(std::uint64_t(2 * r))) - r;  // [−r, r)
          a.keepdims = chance(0.5);
        }
        std::vector<Shape> shapes{shape(s.in[0])};
        for (int k = 1; k < op.arity; ++k) {
          const Shape want = op.partner_fn(shape(s.in[0]), k, a);
          if (want.size() == 0) return reject(), false;  // the graphs hold no empty tensors
          const OpDomain dk = op.input_domain(k, a);
          int y = pick([&](int i) { return shape(i) == want && in_domain(i, dk); });
          if (y < 0 || chance(0.5)) y = new_leaf(want, dk);
          s.in[k] = y;
          shapes.push_back(want);
        }
        const std::optional<Shape> out = op.shape_fn(shapes, a);
        if (!out || out->size() == 0) return reject(), false;
        return accept(s);
      }
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
  return k == LeafKind::kConstant   ? "constant"
         : k == LeafKind::kVariable ? "variable"
                                    : "parameter";
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
          case LeafKind::kConstant:
            return tape.constant(cast<T>(s.value));
          case LeafKind::kVariable:
            return tape.variable(cast<T>(s.value));
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

const OpEntry& planted_bug_op() {
  static const OpEntry bug = Op("planted_bug", [](auto v, auto&) { return planted_bug(v[0]); });
  return bug;
}

std::string RandomGraph::str() const {
  std::ostringstream os;
  for (std::size_t i = 0; i < slots.size(); ++i) {
    const GraphSlot& s = slots[i];
    os << '#' << i << ' ';
    if (s.is_leaf) {
      os << kind_name(s.kind) << ' ' << s.shape.str();
    } else {
      const GraphStep& t = s.step;
      const OpEntry& op = *t.op;
      const OpArgs& a = t.args;
      os << op.label() << '(';
      for (int k = 0; k < op.arity; ++k) os << (k ? ", #" : "#") << t.in[k];
      os << ')';
      if (op.takes_scalar) os << " scalar " << a.scalar;
      if (op.rule == ShapeRule::kReduceAxis || op.uses_axis)
        os << " axis " << a.axis << (a.keepdims ? " keepdims" : "");
      if (op.rule == ShapeRule::kMatmul) os << " ta " << a.transpose_a << " tb " << a.transpose_b;
      if (op.rule == ShapeRule::kConv2d)
        os << " stride " << a.stride << " padding " << a.padding << " dilation " << a.dilation;
      if (op.rule == ShapeRule::kPool2d)
        os << " kernel " << a.kernel << " stride " << a.stride << " padding " << a.padding;
      if (op.rule == ShapeRule::kLabels) {
        os << " labels";
        for (std::int32_t l : a.labels) os << ' ' << l;
      }
      if (op.spellings.size() > 1) os << " as " << op.spellings[std::size_t(a.spelling)];
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
    ++ops[t.op->label()];
    ++spellings[t.op->label() + " as " + t.op->spellings[std::size_t(t.args.spelling)]];
    const int n = t.op->arity;
    for (int k = 0; k < n; ++k) ++uses[std::size_t(t.in[k])];
    if (n >= 2 && t.in[0] == t.in[1]) ++reused_input;
    if (t.op->rule == ShapeRule::kBroadcast &&
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
