// Test support: the op-test helper (see op_test.hpp).
#include "op_test.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <sstream>

#include <xtensor/xmath.hpp>

#include <wengert/errors.hpp>
#include <wengert/ops/elementwise.hpp>  // add: joins the two uses in the fan-out check

#include "alloc_counter.hpp"

namespace wengert::testing {

const char* check_name(Check c) {
  switch (c) {
    case Check::kForward:
      return "forward";
    case Check::kGradcheck:
      return "gradcheck";
    case Check::kFloat32:
      return "float32";
    case Check::kConstant:
      return "constant";
    case Check::kFanOut:
      return "fan-out";
    case Check::kShapeError:
      return "shape-error";
    case Check::kReplay:
      return "replay";
    case Check::kTapeReplay:
      return "tape-replay";
  }
  return "?";
}

namespace {

constexpr std::size_t at(Check c) { return static_cast<std::size_t>(c); }

constexpr Check kAllChecks[kNumChecks] = {Check::kForward,  Check::kGradcheck, Check::kFloat32,
                                          Check::kConstant, Check::kFanOut,    Check::kShapeError,
                                          Check::kReplay,   Check::kTapeReplay};

std::string dims_str(const Dims& d) {
  std::string s = "[";
  for (std::size_t i = 0; i < d.size(); ++i) s += (i ? "," : "") + std::to_string(d[i]);
  return s + "]";
}

std::string case_str(const ShapeCase& c) {
  std::string s;
  for (std::size_t i = 0; i < c.size(); ++i) s += (i ? ", " : "") + dims_str(c[i]);
  return s;
}

std::string hex(std::uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

std::uint64_t fnv1a(const std::string& s) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ULL;
  return h;
}

// splitmix64 of (a, b): independent seeds for the cases of one op.
std::uint64_t mix(std::uint64_t a, std::uint64_t b) {
  std::uint64_t z = a + 0x9e3779b97f4a7c15ULL * (b + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

std::uint64_t env_seed() {
  const char* e = std::getenv("WENGERT_OP_TEST_SEED");
  return e ? std::strtoull(e, nullptr, 0) : 0;
}

// A value of the domain, rounded to float so that float and double tapes see the same input.
double draw(const Domain& d, std::mt19937_64& rng) {
  std::uniform_real_distribution<double> U(d.lo, d.hi);
  double v = 0;
  for (int k = 0; k < 1000; ++k) {
    v = static_cast<double>(static_cast<float>(U(rng)));
    if (!(std::abs(v) < d.away)) return v;
  }
  return v < 0 ? -d.away : d.away;
}

xt::xarray<double> draw_array(const Dims& shape, const Domain& d, std::mt19937_64& rng) {
  xt::xarray<double> a = xt::xarray<double>::from_shape(shape);
  for (auto& v : a) v = draw(d, rng);
  return a;
}

// The VJP seed of an output of shape s: N(0,1), float-representable, a function of `seed`.
xt::xarray<double> vjp_seed(const Shape& s, std::uint64_t seed) {
  std::mt19937_64 rng(mix(seed, 0x5eed));
  std::normal_distribution<double> N(0.0, 1.0);
  xt::xarray<double> u = xt::xarray<double>::from_shape(Dims(s.begin(), s.end()));
  for (auto& v : u) v = static_cast<double>(static_cast<float>(N(rng)));
  return u;
}

template <class T>
xt::xarray<double> read(const T* p, const Shape& s) {
  xt::xarray<double> a = xt::xarray<double>::from_shape(Dims(s.begin(), s.end()));
  for (std::size_t i = 0; i < a.size(); ++i) a.data()[i] = static_cast<double>(p[i]);
  return a;
}

template <class T>
Var<T> leaf(Tape<T>& tape, const xt::xarray<double>& v, bool constant) {
  std::vector<T> buf(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) buf[i] = static_cast<T>(v.data()[i]);
  const Shape s(v.shape());
  return constant ? tape.constant(buf.data(), s) : tape.variable(buf.data(), s);
}

// "" if got matches want elementwise to |got − want| ≤ rtol·|want| + atol·max(1, max|want|)
// (NaN only against NaN, ±inf only against itself); otherwise the worst element.
std::string compare(const xt::xarray<double>& got, const xt::xarray<double>& want, double rtol,
                    double atol) {
  if (Shape(got.shape()) != Shape(want.shape()))
    return "shape " + Shape(got.shape()).str() + ", expected " + Shape(want.shape()).str();
  double scale = 1;
  for (double w : want)
    if (std::isfinite(w)) scale = std::max(scale, std::abs(w));
  double worst = 0;
  std::size_t wi = 0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    const double g = got.data()[i], w = want.data()[i];
    double ratio;
    if (std::isnan(g) || std::isnan(w))
      ratio = std::isnan(g) && std::isnan(w) ? 0 : INFINITY;
    else if (std::isinf(g) || std::isinf(w))
      ratio = g == w ? 0 : INFINITY;
    else
      ratio = std::abs(g - w) / (rtol * std::abs(w) + atol * scale);
    if (ratio > worst) {
      worst = ratio;
      wi = i;
    }
  }
  if (worst <= 1) return "";
  std::ostringstream os;
  os.precision(17);
  os << "element " << wi << " is " << got.data()[wi] << ", expected " << want.data()[wi]
     << " (|diff| " << std::abs(got.data()[wi] - want.data()[wi]) << " is " << worst
     << " times the tolerance rtol " << rtol << ", atol " << atol << "·" << scale << ")";
  return os.str();
}

// Output value and input gradients of one recording with a VJP seed drawn from `seed`.
struct Result {
  xt::xarray<double> value;
  std::vector<xt::xarray<double>> grads;   // empty arrays for constant inputs
  std::vector<bool> constant_grad_throws;  // for constant inputs: grad() threw UsageError
  bool requires_grad = false;
};

template <class T>
Result evaluate(const OpFn<T>& f, const Values& in, const std::vector<bool>& constant,
                std::uint64_t seed) {
  Tape<T> tape;
  std::vector<Var<T>> vars;
  for (std::size_t i = 0; i < in.size(); ++i) vars.push_back(leaf(tape, in[i], constant[i]));
  Var<T> y = f(vars);
  Result r;
  r.value = read(y.data(), y.shape());
  r.requires_grad = y.requires_grad();
  r.grads.resize(in.size());
  r.constant_grad_throws.assign(in.size(), false);
  if (r.requires_grad) {
    const xt::xarray<double> u = vjp_seed(y.shape(), seed);
    tape.backward(y, xt::xarray<T>(xt::cast<T>(u)));
  }
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (!constant[i]) {
      if (r.requires_grad) r.grads[i] = read(vars[i].grad_data(), vars[i].shape());
      continue;
    }
    try {
      vars[i].grad();
    } catch (const UsageError&) {
      r.constant_grad_throws[i] = true;
    }
  }
  return r;
}

const char* error_kind(const std::exception& e) {
  if (dynamic_cast<const ShapeError*>(&e)) return "ShapeError";
  if (dynamic_cast<const ValueError*>(&e)) return "ValueError";
  if (dynamic_cast<const UsageError*>(&e)) return "UsageError";
  return "an exception";
}

std::string leading_identifier(const std::string& s) {
  std::size_t n = 0;
  while (n < s.size() && (std::isalnum(static_cast<unsigned char>(s[n])) || s[n] == '_')) ++n;
  return s.substr(0, n);
}

}  // namespace

// ---- shape families
// ------------------------------------------------------------------------------

namespace shapes {

ShapeFamily same(std::size_t arity, std::size_t min_rank, std::size_t max_rank, bool allow_empty) {
  ShapeFamily f;
  f.name = "same(" + std::to_string(arity) + ", rank " + std::to_string(min_rank) + ".." +
           std::to_string(max_rank) + (allow_empty ? ", empty dims" : "") + ")";
  std::vector<Dims> edge = {{},     {1},       {1, 1}, {7},  {1, 5},      {5, 1},
                            {3, 4}, {2, 3, 4}, {17},   {33}, {2, 1, 3, 1}};
  if (allow_empty) edge.insert(edge.end(), {{0}, {2, 0}, {0, 3}, {1, 0, 2}});
  for (const Dims& d : edge)
    if (d.size() >= min_rank && d.size() <= max_rank) f.fixed.push_back(ShapeCase(arity, d));
  f.random = [arity, min_rank, max_rank](std::mt19937_64& rng) {
    std::uniform_int_distribution<std::size_t> rank(min_rank, std::max(min_rank, max_rank)),
        dim(1, 4);
    Dims d(rank(rng));
    for (auto& x : d) x = dim(rng);
    return ShapeCase(arity, d);
  };
  for (std::size_t r = 0; r < min_rank; ++r) f.bad.push_back(ShapeCase(arity, Dims(r, 3)));
  if (max_rank < 4) f.bad.push_back(ShapeCase(arity, Dims(max_rank + 1, 3)));
  const std::size_t r = std::min(std::max<std::size_t>(2, min_rank), max_rank);
  if (arity >= 2 && r > 0) {  // (with only scalars valid, unequal shapes cannot be built)
    Dims a(r, 3), b(r, 3);
    a.back() = 4;
    b.back() = 5;
    for (std::size_t i = 0; i < arity; ++i) {  // input i unlike the others
      ShapeCase c(arity, a);
      c[i] = b;
      f.bad.push_back(c);
    }
  }
  if (arity == 1 && min_rank == 0 && max_rank >= 4)
    f.any_shape_reason = allow_empty ? "every shape is valid"
                                     : "every non-empty shape is valid; an empty one is a "
                                       "ValueError, not a shape error";
  return f;
}

ShapeFamily broadcast() {
  ShapeFamily f;
  f.name = "broadcast";
  f.fixed = {{{3, 1}, {4}},       {{}, {2, 3}},     {{2, 3}, {}},     {{2, 1, 3}, {4, 1}},
             {{4, 1}, {2, 1, 3}}, {{1}, {1, 1}},    {{1, 4}, {4, 1}}, {{4, 1}, {1, 4}},
             {{1, 5}, {5}},       {{5, 1}, {5, 1}}, {{2, 3}, {2, 3}}, {{}, {}},
             {{3}, {2, 1}},       {{17}, {17}},     {{2, 17}, {17}},  {{0, 3}, {3}},
             {{2, 0}, {1}},       {{0}, {}},        {{3, 1}, {1, 0}}};
  // A common output shape of rank ≤ 3; each input takes its trailing dimensions, some set to 1.
  f.random = [](std::mt19937_64& rng) {
    std::uniform_int_distribution<std::size_t> rank(0, 3), dim(1, 4), coin(0, 2);
    const std::size_t ra = rank(rng), rb = rank(rng);
    Dims o(std::max(ra, rb));
    for (auto& d : o) d = dim(rng);
    auto take = [&](std::size_t k) {
      Dims s(o.end() - static_cast<std::ptrdiff_t>(k), o.end());
      for (auto& d : s)
        if (coin(rng) == 0) d = 1;
      return s;
    };
    Dims a = take(ra);
    return ShapeCase{a, take(rb)};
  };
  f.random_count = 12;
  f.bad = {{{3, 4}, {5, 4}}, {{2}, {3}}, {{2, 3}, {3, 2}}};
  return f;
}

ShapeFamily fixed(std::vector<ShapeCase> cases) {
  ShapeFamily f;
  f.name = "fixed";
  f.fixed = std::move(cases);
  return f;
}

ShapeFamily product(std::string name,
                    std::function<ShapeCase(std::size_t, std::size_t, std::size_t)> make) {
  ShapeFamily f;
  f.name = std::move(name);
  const std::size_t mkn[][3] = {{2, 3, 4},  {1, 1, 1}, {1, 5, 1}, {5, 1, 5}, {3, 3, 3},
                                {4, 17, 3}, {2, 0, 3}, {0, 4, 2}, {3, 4, 0}};
  for (const auto& d : mkn) f.fixed.push_back(make(d[0], d[1], d[2]));
  f.random = [make](std::mt19937_64& rng) {
    std::uniform_int_distribution<std::size_t> d(1, 6);
    const std::size_t m = d(rng), k = d(rng);
    return make(m, k, d(rng));
  };
  return f;
}

}  // namespace shapes

// ---- report ----------------------------------------------------------------------------------

std::string OpTestReport::str() const {
  std::string s = op + " (seed " + hex(seed) + "):";
  for (std::size_t c = 0; c < kNumChecks; ++c) {
    s += c ? ", " : " ";
    s += check_name(kAllChecks[c]);
    if (!skipped[c].empty())
      s += " off (" + skipped[c] + ")";
    else
      s += " " + std::to_string(cases[c]);
    if (kAllChecks[c] == Check::kFanOut && shared_argument_cases)
      s += " (" + std::to_string(shared_argument_cases) + " with one variable as 2+ arguments)";
  }
  if (failures) s += "; " + std::to_string(failures) + " FAILED";
  return s;
}

// ---- configuration ---------------------------------------------------------------------------

OpTest::OpTest(std::string name, std::size_t arity, OpFn<float> f32, OpFn<double> f64)
    : name_(std::move(name)),
      arity_(arity),
      f32_(std::move(f32)),
      f64_(std::move(f64)),
      family_(shapes::same(arity)),
      domains_(arity),
      seed_(fnv1a(name_)),
      token_(leading_identifier(name_)) {}

OpTest& OpTest::shapes(ShapeFamily family) {
  family_ = std::move(family);
  return *this;
}
OpTest& OpTest::bad_shapes(std::vector<ShapeCase> cases) {
  extra_bad_.insert(extra_bad_.end(), cases.begin(), cases.end());
  return *this;
}
OpTest& OpTest::domain(Domain d) {
  domains_.assign(arity_, d);
  return *this;
}
OpTest& OpTest::domain(std::size_t input, Domain d) {
  if (input < arity_)
    domains_[input] = d;
  else
    config_errors_.push_back("domain(" + std::to_string(input) + ", ...): the op has " +
                             std::to_string(arity_) + " inputs");
  return *this;
}
OpTest& OpTest::values(ValuesFn f) {
  values_ = std::move(f);
  return *this;
}
OpTest& OpTest::prepare(PrepareFn f) {
  prepare_ = std::move(f);
  return *this;
}
OpTest& OpTest::reference(ReferenceFn f) {
  reference_ = std::move(f);
  return *this;
}
OpTest& OpTest::elementwise_reference(std::function<double(double)> f) {
  return reference([f = std::move(f)](const Values& v) {
    xt::xarray<double> y = v[0];
    for (auto& e : y) e = f(e);
    return y;
  });
}
OpTest& OpTest::seed(std::uint64_t s) {
  seed_ = s;
  return *this;
}
OpTest& OpTest::gradcheck_options(const GradcheckOptions& o) {
  gradcheck_ = o;
  return *this;
}
OpTest& OpTest::forward_tolerance(double rtol, double atol) {
  fwd_rtol_ = rtol;
  fwd_atol_ = atol;
  return *this;
}
OpTest& OpTest::float_tolerance(double rtol, double atol) {
  f32_rtol_ = rtol;
  f32_atol_ = atol;
  return *this;
}
OpTest& OpTest::error_token(std::string token) {
  token_ = std::move(token);
  return *this;
}
OpTest& OpTest::skip(Check c, std::string reason) {
  if (reason.empty())
    config_errors_.push_back(std::string("skip(") + check_name(c) + "): give the reason");
  else
    skip_[at(c)] = std::move(reason);
  return *this;
}
OpTest& OpTest::cannot_replay(std::string reason) {
  if (reason.empty())
    config_errors_.push_back("cannot_replay(): give the reason");
  else
    cannot_replay_ = std::move(reason);
  return *this;
}

// ---- the checks ------------------------------------------------------------------------------

struct OpTest::Case {
  std::size_t index = 0;
  bool edge = true;
  ShapeCase shapes;
  std::uint64_t seed = 0;
  Values values;
};

namespace {

// Runs the checks of one op; holds what every failure message needs.
class Runner {
 public:
  Runner(const std::string& name, OpTestReport& report, SourceLoc loc)
      : name_(name), report_(report), loc_(loc) {}

  // A failure of check c on the current case, reported at the line that called run().
  void fail(Check c, const std::string& what) {
    ++report_.failures;
    ADD_FAILURE_AT(loc_.file, static_cast<int>(loc_.line))
        << "op_test '" << name_ << "', check " << check_name(c) << ", seed " << hex(report_.seed)
        << ", " << where_ << ": " << what;
  }
  // A configuration error (no case involved).
  void config(const std::string& what) {
    ++report_.failures;
    ADD_FAILURE_AT(loc_.file, static_cast<int>(loc_.line)) << "op_test '" << name_ << "': " << what;
  }
  void at_case(const std::string& where) { where_ = where; }

  // Runs fn as check c, counting it and turning an unexpected exception into a failure.
  template <class F>
  void run(Check c, F&& fn) {
    if (!report_.skipped[at(c)].empty()) return;
    ++report_.cases[at(c)];
    try {
      fn();
    } catch (const std::exception& e) {
      fail(c, std::string("threw ") + error_kind(e) + ": " + e.what());
    }
  }

  const std::string& name_;
  OpTestReport& report_;
  SourceLoc loc_;
  std::string where_;
};

std::vector<bool> none_constant(std::size_t n) { return std::vector<bool>(n, false); }

// Record + backward, clear, record + backward twice more: the replays must not allocate.
template <class T>
void check_replay(Runner& r, const OpFn<T>& f, const Values& in, std::uint64_t seed) {
  const char* type = sizeof(T) == 4 ? "float" : "double";
  const std::size_t n_in = in.size();
  std::vector<std::vector<T>> data(n_in);
  std::vector<Shape> shapes;
  for (std::size_t i = 0; i < n_in; ++i) {
    data[i].assign(in[i].begin(), in[i].end());
    shapes.emplace_back(in[i].shape());
  }
  Tape<T> tape;
  std::vector<Var<T>> vars(n_in);
  auto record = [&]() -> Var<T> {
    tape.clear();
    for (std::size_t i = 0; i < n_in; ++i) vars[i] = tape.variable(data[i].data(), shapes[i]);
    return f(vars);
  };
  Var<T> y = record();
  const Shape out_shape = y.shape();
  const std::size_t n = y.size();
  const xt::xarray<double> u0 = vjp_seed(out_shape, seed);
  std::vector<T> u(std::max<std::size_t>(n, 1), T(0));  // non-null even for an empty output
  std::copy(u0.begin(), u0.end(), u.begin());
  auto step = [&]() -> Var<T> {
    Var<T> out = record();
    tape.backward(out, u.data(), nullptr, 0);
    return out;
  };
  // The first sweep after recording: what the replays must reproduce.
  y = step();
  std::vector<T> value(y.data(), y.data() + n);
  std::vector<std::vector<T>> grads(n_in);
  for (std::size_t i = 0; i < n_in; ++i)
    grads[i].assign(vars[i].grad_data(), vars[i].grad_data() + vars[i].size());
  const std::size_t capacity = tape.arena_capacity();

  AllocCounter counter;
  step();
  y = step();
  const std::size_t allocations = counter.count(), blas = counter.blas_count();

  if (allocations != 0)
    r.fail(Check::kReplay, std::string(type) + ": " + std::to_string(allocations) +
                               " heap allocation(s) in two clear-and-replay steps (OpenBLAS's "
                               "own, not counted: " +
                               std::to_string(blas) + ")");
  if (tape.arena_capacity() != capacity)
    r.fail(Check::kReplay, std::string(type) + ": the arena grew from " + std::to_string(capacity) +
                               " to " + std::to_string(tape.arena_capacity()) + " bytes on replay");
  // (memcmp of an empty tensor would pass a null pointer: undefined behaviour, found by UBSan)
  if (y.shape() != out_shape || (n && std::memcmp(y.data(), value.data(), n * sizeof(T)) != 0))
    r.fail(Check::kReplay, std::string(type) + ": the replayed value differs from the first");
  for (std::size_t i = 0; i < n_in; ++i)
    if (!grads[i].empty() &&
        std::memcmp(vars[i].grad_data(), grads[i].data(), grads[i].size() * sizeof(T)) != 0)
      r.fail(Check::kReplay, std::string(type) + ": the replayed gradient of input " +
                                 std::to_string(i) + " differs from the first");
}

// Tape::replay: recorded with `in`, a backward, then the inputs given `in2` and the tape replayed
// must give what a fresh recording with `in2` gives, bit for bit. `refused`: the op cannot replay
// (cannot_replay), and replay() must say so with UsageError and change nothing.
template <class T>
void check_tape_replay(Runner& r, const OpFn<T>& f, const Values& in, const Values& in2,
                       std::uint64_t seed, const std::string& refused) {
  const std::string type = sizeof(T) == 4 ? "float" : "double";
  const std::size_t n_in = in.size();
  // Buffers of at least one element: an empty tensor's data() would be null.
  std::vector<std::vector<T>> before(n_in), after(n_in);
  std::vector<Shape> shapes;
  for (std::size_t i = 0; i < n_in; ++i) {
    before[i].assign(std::max<std::size_t>(in[i].size(), 1), T(0));
    after[i].assign(std::max<std::size_t>(in2[i].size(), 1), T(0));
    std::copy(in[i].begin(), in[i].end(), before[i].begin());
    std::copy(in2[i].begin(), in2[i].end(), after[i].begin());
    shapes.emplace_back(in[i].shape());
  }
  auto same_bits = [](const T* a, const T* b, std::size_t n) {
    return n == 0 || std::memcmp(a, b, n * sizeof(T)) == 0;
  };

  // (1) Variables given new values with set_input; the value and every gradient compared.
  Tape<T> tape;
  std::vector<Var<T>> vars(n_in);
  for (std::size_t i = 0; i < n_in; ++i) vars[i] = tape.variable(before[i].data(), shapes[i]);
  Var<T> y = f(vars);
  const Shape out_shape = y.shape();
  const std::size_t n = y.size();
  const xt::xarray<double> u0 = vjp_seed(out_shape, seed);
  std::vector<T> u(std::max<std::size_t>(n, 1), T(0));
  std::copy(u0.begin(), u0.end(), u.begin());
  // A sweep first: replay must zero the adjoints it wrote.
  if (y.requires_grad()) tape.backward(y, u.data(), nullptr, 0);
  for (std::size_t i = 0; i < n_in; ++i) tape.set_input(vars[i], after[i].data(), shapes[i]);

  if (!refused.empty()) {
    const std::vector<T> kept(y.data(), y.data() + n);
    try {
      tape.replay();
      r.fail(Check::kTapeReplay,
             type + ": replay() did not refuse an op that cannot replay (" + refused + ")");
    } catch (const UsageError& e) {
      if (std::string(e.what()).find("without a forward kernel") == std::string::npos)
        r.fail(Check::kTapeReplay, type +
                                       ": replay() refused, but not for want of a forward "
                                       "kernel: " +
                                       e.what());
    }
    if (!same_bits(y.data(), kept.data(), n))
      r.fail(Check::kTapeReplay, type + ": the refused replay changed the output");
    return;
  }

  AllocCounter counter;
  tape.replay();
  const std::size_t allocations = counter.count();
  if (allocations != 0)
    r.fail(Check::kTapeReplay, type + ": replay() made " + std::to_string(allocations) +
                                   " heap allocation(s) (OpenBLAS's own, not counted: " +
                                   std::to_string(counter.blas_count()) + ")");
  if (y.requires_grad()) tape.backward(y, u.data(), nullptr, 0);

  Tape<T> fresh;
  std::vector<Var<T>> fvars(n_in);
  for (std::size_t i = 0; i < n_in; ++i) fvars[i] = fresh.variable(after[i].data(), shapes[i]);
  Var<T> fy = f(fvars);
  if (fy.requires_grad()) fresh.backward(fy, u.data(), nullptr, 0);
  if (fy.shape() != out_shape || !same_bits(y.data(), fy.data(), n))
    r.fail(Check::kTapeReplay,
           type +
               ": variables given new values: the replayed value differs from a fresh "
               "recording's");
  if (y.requires_grad() != fy.requires_grad())
    r.fail(Check::kTapeReplay, type + ": the replayed output's requires_grad differs");
  else if (y.requires_grad())
    for (std::size_t i = 0; i < n_in; ++i)
      if (!same_bits(vars[i].grad_data(), fvars[i].grad_data(), vars[i].size()))
        r.fail(Check::kTapeReplay, type + ": variables given new values: the gradient of input " +
                                       std::to_string(i) +
                                       " after replay differs from a fresh recording's");

  // (2) constant_view inputs rewritten in place: nothing needs a gradient (no backward scratch).
  std::vector<std::vector<T>> mem = before;
  Tape<T> ctape;
  std::vector<Var<T>> cvars(n_in);
  for (std::size_t i = 0; i < n_in; ++i) cvars[i] = ctape.constant_view(mem[i].data(), shapes[i]);
  Var<T> cy = f(cvars);
  for (std::size_t i = 0; i < n_in; ++i)
    std::copy(after[i].begin(), after[i].end(), mem[i].begin());
  ctape.replay();
  Tape<T> cfresh;
  std::vector<Var<T>> cfvars(n_in);
  for (std::size_t i = 0; i < n_in; ++i)
    cfvars[i] = cfresh.constant_view(after[i].data(), shapes[i]);
  Var<T> cfy = f(cfvars);
  if (cfy.shape() != cy.shape() || !same_bits(cy.data(), cfy.data(), cy.size()))
    r.fail(Check::kTapeReplay, type +
                                   ": constant_view memory rewritten: the replayed value "
                                   "differs from a fresh recording's");
}

// A wrong-shape call: ShapeError naming the op, and the tape exactly as it was.
template <class T>
void check_shape_error(Runner& r, const OpFn<T>& f, const ShapeCase& shapes,
                       const std::vector<Domain>& domains, std::mt19937_64& rng,
                       const std::string& token) {
  const char* type = sizeof(T) == 4 ? "float" : "double";
  Tape<T> tape;
  std::vector<Var<T>> vars;
  for (std::size_t i = 0; i < shapes.size(); ++i)
    vars.push_back(leaf(tape, draw_array(shapes[i], domains[i], rng), false));
  const std::size_t size = tape.size(), capacity = tape.arena_capacity();
  const std::string listing = tape.str();
  try {
    Var<T> y = f(vars);
    r.fail(Check::kShapeError, std::string(type) + ": no error; recorded '" + y.op_name() +
                                   "' with output " + y.shape().str());
    return;  // a recorded op changes the tape, rightly
  } catch (const ShapeError& e) {
    if (std::string(e.what()).find(token) == std::string::npos)
      r.fail(Check::kShapeError, std::string(type) + ": the ShapeError does not name the op ('" +
                                     token + "'): " + e.what());
  } catch (const std::exception& e) {
    r.fail(Check::kShapeError,
           std::string(type) + ": threw " + error_kind(e) + ", not ShapeError: " + e.what());
  }
  if (tape.size() != size)
    r.fail(Check::kShapeError, std::string(type) + ": the tape has " + std::to_string(tape.size()) +
                                   " nodes after the error, " + std::to_string(size) + " before");
  if (tape.arena_capacity() != capacity)
    r.fail(Check::kShapeError, std::string(type) + ": the arena grew from " +
                                   std::to_string(capacity) + " to " +
                                   std::to_string(tape.arena_capacity()) + " bytes");
  if (tape.str() != listing)
    r.fail(Check::kShapeError, std::string(type) + ": the listing changed:\nbefore:\n" + listing +
                                   "after:\n" + tape.str());
}

}  // namespace

OpTestReport OpTest::run(SourceLoc where) const {
  OpTestReport report;
  report.op = name_;
  report.seed = seed_ ^ env_seed();
  report.skipped = skip_;
  Runner r(name_, report, where);

  // ---- configuration: every check is on, or off with a reason.
  for (const std::string& e : config_errors_) r.config(e);
  std::vector<ShapeCase> bad = family_.bad;
  bad.insert(bad.end(), extra_bad_.begin(), extra_bad_.end());
  if (!reference_ && skip_[at(Check::kForward)].empty()) {
    r.config("no closed-form reference; give reference(...) or skip(Check::kForward, reason)");
    report.skipped[at(Check::kForward)] = "no reference";
  }
  if (bad.empty() && skip_[at(Check::kShapeError)].empty()) {
    if (!family_.any_shape_reason.empty()) {
      report.skipped[at(Check::kShapeError)] = family_.any_shape_reason;
    } else {
      r.config("no wrong-shape cases; give bad_shapes(...) or skip(Check::kShapeError, reason)");
      report.skipped[at(Check::kShapeError)] = "no cases";
    }
  }

  // ---- the cases: the family's edge cases, then seeded random ones.
  std::vector<Case> cases;
  for (const ShapeCase& s : family_.fixed) {
    Case c;
    c.shapes = s;
    cases.push_back(c);
  }
  if (family_.random) {
    std::mt19937_64 shape_rng(mix(report.seed, 0x5a9e));
    for (int k = 0; k < family_.random_count; ++k) {
      Case c;
      c.edge = false;
      c.shapes = family_.random(shape_rng);
      cases.push_back(c);
    }
  }
  if (cases.empty()) r.config("the shape family '" + family_.name + "' has no cases");

  for (std::size_t k = 0; k < cases.size(); ++k) {
    Case& c = cases[k];
    c.index = k;
    c.seed = mix(report.seed, k);
    r.at_case("case " + std::to_string(k) + (c.edge ? " (edge)" : " (random)") + ", shapes " +
              case_str(c.shapes));
    if (c.shapes.size() != arity_) {
      r.config("case " + std::to_string(k) + " has " + std::to_string(c.shapes.size()) +
               " shapes for an op of " + std::to_string(arity_) + " inputs");
      continue;
    }
    std::mt19937_64 rng(c.seed);
    if (prepare_) prepare_(c.shapes, rng);
    if (values_) {
      c.values = values_(c.shapes, rng);
      for (auto& a : c.values)
        for (auto& v : a) v = static_cast<double>(static_cast<float>(v));
    } else {
      for (std::size_t i = 0; i < arity_; ++i)
        c.values.push_back(draw_array(c.shapes[i], domains_[i], rng));
    }
    const Values& in = c.values;

    r.run(Check::kForward, [&] {
      Tape<double> tape;
      std::vector<Var<double>> vars;
      for (const auto& v : in) vars.push_back(leaf(tape, v, false));
      Var<double> y = f64_(vars);
      const std::string d =
          compare(read(y.data(), y.shape()), reference_(in), fwd_rtol_, fwd_atol_);
      if (!d.empty()) r.fail(Check::kForward, "against the reference: " + d);
    });

    r.run(Check::kGradcheck, [&] {
      GradcheckOptions o = gradcheck_;
      o.seed = c.seed;
      const GradcheckResult g = gradcheck(f64_, in, o);
      if (!g.ok) r.fail(Check::kGradcheck, g.message);
    });

    r.run(Check::kFloat32, [&] {
      const Result d = evaluate(f64_, in, none_constant(arity_), c.seed);
      const Result f = evaluate(f32_, in, none_constant(arity_), c.seed);
      std::string e = compare(f.value, d.value, f32_rtol_, f32_atol_);
      if (!e.empty()) r.fail(Check::kFloat32, "value, float against double: " + e);
      if (!d.requires_grad || !f.requires_grad) {
        r.fail(Check::kFloat32, "the output needs no gradient although every input is a variable");
        return;
      }
      for (std::size_t i = 0; i < arity_; ++i) {
        e = compare(f.grads[i], d.grads[i], f32_rtol_, f32_atol_);
        if (!e.empty())
          r.fail(Check::kFloat32,
                 "gradient of input " + std::to_string(i) + ", float against double: " + e);
      }
    });

    // The all-variable double run that the constant and fan-out checks compare against.
    Result full;
    const bool need_full =
        report.skipped[at(Check::kConstant)].empty() || report.skipped[at(Check::kFanOut)].empty();
    if (need_full) {
      try {
        full = evaluate(f64_, in, none_constant(arity_), c.seed);
      } catch (const std::exception& e) {
        r.fail(report.skipped[at(Check::kConstant)].empty() ? Check::kConstant : Check::kFanOut,
               std::string("the all-variable run threw ") + error_kind(e) + ": " + e.what());
        continue;
      }
    }
    constexpr double kTight = 1e-13;  // the same arithmetic, perhaps in another order

    r.run(Check::kConstant, [&] {
      for (std::size_t i = 0; i < arity_; ++i) {
        std::vector<bool> mask = none_constant(arity_);
        mask[i] = true;
        const Result g = evaluate(f64_, in, mask, c.seed);
        const std::string which = "input " + std::to_string(i) + " constant";
        if (!g.constant_grad_throws[i])
          r.fail(Check::kConstant, which + ": its grad() did not throw UsageError");
        const std::string e = compare(g.value, full.value, kTight, kTight);
        if (!e.empty()) r.fail(Check::kConstant, which + ": the value differs: " + e);
        if (arity_ == 1) {
          if (g.requires_grad)
            r.fail(Check::kConstant, which + ": the output of a constant needs a gradient");
          continue;
        }
        if (!g.requires_grad) {
          r.fail(Check::kConstant, which + ": the output needs no gradient, yet other inputs do");
          continue;
        }
        for (std::size_t j = 0; j < arity_; ++j) {
          if (j == i) continue;
          const std::string d = compare(g.grads[j], full.grads[j], kTight, kTight);
          if (!d.empty())
            r.fail(Check::kConstant, which + ": the gradient of input " + std::to_string(j) +
                                         " differs from the all-variable one: " + d);
        }
      }
      if (arity_ >= 2) {
        const Result g = evaluate(f64_, in, std::vector<bool>(arity_, true), c.seed);
        if (g.requires_grad)
          r.fail(Check::kConstant, "every input constant: the output needs a gradient");
      }
    });

    r.run(Check::kFanOut, [&] {
      // (a) Each input feeds the op twice: y1 = f(x…), y2 = f(x…), z = y1 + y2.
      {
        Tape<double> tape;
        std::vector<Var<double>> vars;
        for (const auto& v : in) vars.push_back(leaf(tape, v, false));
        Var<double> y1 = f64_(vars);
        Var<double> y2 = f64_(vars);
        Var<double> z = add(y1, y2);
        tape.backward(z, vjp_seed(z.shape(), c.seed));
        for (std::size_t i = 0; i < arity_; ++i) {
          const std::string d = compare(read(vars[i].grad_data(), vars[i].shape()),
                                        xt::xarray<double>(2.0 * full.grads[i]), kTight, kTight);
          if (!d.empty())
            r.fail(Check::kFanOut, "op recorded twice: input " + std::to_string(i) +
                                       "'s gradient is not twice the single one: " + d);
        }
      }
      // (b) One variable passed for every argument of its shape.
      std::vector<std::size_t> leader(arity_);
      bool shares = false;
      for (std::size_t i = 0; i < arity_; ++i) {
        leader[i] = i;
        for (std::size_t j = 0; j < i; ++j)
          if (leader[j] == j && c.shapes[j] == c.shapes[i]) {
            leader[i] = j;
            break;
          }
      }
      Values shared = in;
      std::mt19937_64 rng2(mix(c.seed, 0xfa0));
      for (std::size_t g = 0; g < arity_; ++g) {
        std::vector<std::size_t> members;
        for (std::size_t i = g + 1; i < arity_; ++i)
          if (leader[i] == g) members.push_back(i);
        if (members.empty()) continue;
        if (!values_) {  // a value every member's domain allows
          Domain d = domains_[g];
          for (std::size_t i : members) {
            d.lo = std::max(d.lo, domains_[i].lo);
            d.hi = std::min(d.hi, domains_[i].hi);
            d.away = std::max(d.away, domains_[i].away);
          }
          if (d.lo > d.hi || std::max(std::abs(d.lo), std::abs(d.hi)) < d.away) {
            for (std::size_t i : members) leader[i] = i;  // no common domain: keep them apart
            continue;
          }
          shared[g] = draw_array(c.shapes[g], d, rng2);
        }
        for (std::size_t i : members) shared[i] = shared[g];
        shares = true;
      }
      if (!shares) return;
      ++report.shared_argument_cases;
      const Result apart = evaluate(f64_, shared, none_constant(arity_), c.seed);
      Tape<double> tape;
      std::vector<Var<double>> vars(arity_);
      for (std::size_t i = 0; i < arity_; ++i)
        vars[i] = leader[i] == i ? leaf(tape, shared[i], false) : vars[leader[i]];
      Var<double> y = f64_(vars);
      std::string e = compare(read(y.data(), y.shape()), apart.value, kTight, kTight);
      if (!e.empty()) r.fail(Check::kFanOut, "one variable as several arguments: value: " + e);
      tape.backward(y, vjp_seed(y.shape(), c.seed));
      for (std::size_t g = 0; g < arity_; ++g) {
        if (leader[g] != g) continue;
        xt::xarray<double> sum = apart.grads[g], mag = xt::abs(apart.grads[g]);
        std::string args = std::to_string(g);
        for (std::size_t i = g + 1; i < arity_; ++i)
          if (leader[i] == g) {
            sum += apart.grads[i];
            mag += xt::abs(apart.grads[i]);
            args += "," + std::to_string(i);
          }
        if (args == std::to_string(g)) continue;
        const xt::xarray<double> got = read(vars[g].grad_data(), vars[g].shape());
        for (std::size_t k2 = 0; k2 < got.size(); ++k2) {
          const double diff = std::abs(got.data()[k2] - sum.data()[k2]);
          if (!(diff <= 1e-12 * mag.data()[k2] + 1e-300)) {
            std::ostringstream os;
            os.precision(17);
            os << "one variable as arguments " << args << ": element " << k2
               << " of its gradient is " << got.data()[k2]
               << ", but the arguments' gradients as distinct variables sum to " << sum.data()[k2];
            r.fail(Check::kFanOut, os.str());
            break;
          }
        }
      }
    });

    r.run(Check::kReplay, [&] {
      check_replay(r, f32_, in, c.seed);
      check_replay(r, f64_, in, c.seed);
    });

    r.run(Check::kTapeReplay, [&] {
      // New values of the same kind (the same values(...) or domains, another seed); data the
      // callable captured (labels, indices) stays as prepare(...) left it.
      std::mt19937_64 rng2(mix(c.seed, 0x7e91a7));
      Values in2;
      if (values_) {
        in2 = values_(c.shapes, rng2);
        for (auto& a : in2)
          for (auto& v : a) v = static_cast<double>(static_cast<float>(v));
      } else {
        for (std::size_t i = 0; i < arity_; ++i)
          in2.push_back(draw_array(c.shapes[i], domains_[i], rng2));
      }
      for (std::size_t i = 0; i < arity_; ++i)
        if (in2[i].shape() != in[i].shape()) {
          r.fail(Check::kTapeReplay,
                 "values(...) gave input " + std::to_string(i) + " another shape on a second draw");
          return;
        }
      check_tape_replay(r, f32_, in, in2, c.seed, cannot_replay_);
      check_tape_replay(r, f64_, in, in2, c.seed, cannot_replay_);
    });
  }

  // ---- wrong shapes
  for (std::size_t k = 0; k < bad.size(); ++k) {
    if (!report.skipped[at(Check::kShapeError)].empty()) break;
    r.at_case("wrong-shape case " + std::to_string(k) + ", shapes " + case_str(bad[k]));
    if (bad[k].size() != arity_) {
      r.fail(Check::kShapeError, "has " + std::to_string(bad[k].size()) + " shapes for an op of " +
                                     std::to_string(arity_) + " inputs");
      continue;
    }
    std::mt19937_64 rng(mix(report.seed, 0xbad0 + k));
    r.run(Check::kShapeError, [&] {
      if (prepare_) prepare_(bad[k], rng);
      check_shape_error(r, f32_, bad[k], domains_, rng, token_);
      check_shape_error(r, f64_, bad[k], domains_, rng, token_);
    });
  }

  std::printf("[  op_test ] %s\n", report.str().c_str());
  std::fflush(stdout);
  return report;
}

}  // namespace wengert::testing
