// The tape fuzzer's findings (regressions/README.md), checked without the fuzzer, so that they
// stay covered whatever the fuzzer's byte-to-op mapping becomes:
//   * double-log-subnormal: double log of a subnormal was wrong (log(4.9e-324) gave −746.52
//     instead of −744.44);
//   * double-exp-float-cast-overflow: double exp of −inf, NaN or |x| ≳ 6e18 converted an
//     out-of-range value to int64 inside xsimd (undefined behaviour, which clang's UBSan
//     reports: build with clang and -fsanitize=undefined to see it); every double op built on
//     exp: exp, sigmoid, tanh, softmax, log_softmax, the cross-entropies.
// And, over the op registry (tests/support/op_registry.hpp), every elementwise op with a
// reference agrees with it on extreme finite values, float and double: an op added to the
// registry is checked here too.
#include <wengert/wengert.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "op_registry.hpp"

namespace {

using namespace wengert;
using wengert::testing::op_registry;
using wengert::testing::OpArgs;
using wengert::testing::OpEntry;
using wengert::testing::ShapeRule;

constexpr double kInf = std::numeric_limits<double>::infinity();
const double kNaN = std::numeric_limits<double>::quiet_NaN();

/// As the fuzzer compares: NaN matches NaN; values at the edge of overflow (≥ max/4) match
/// values there of the same sign; others within tol.
template <class T>
bool close(double got, double want, double tol) {
  const double big = 0.25 * double(std::numeric_limits<T>::max());
  if (std::isnan(want)) return std::isnan(got);
  if (std::isnan(got)) return false;
  if (std::abs(want) >= big || std::abs(got) >= big)
    return std::signbit(got) == std::signbit(want) && std::abs(got) >= big && std::abs(want) >= big;
  return std::abs(got - want) <= tol;
}

xt::xarray<double> array(const std::vector<double>& v) {
  xt::xarray<double> a = xt::xarray<double>::from_shape({v.size()});
  std::copy(v.begin(), v.end(), a.begin());
  return a;
}

template <class T>
std::vector<double> values_of(const Var<T>& y) {
  return std::vector<double>(y.data(), y.data() + y.size());
}

TEST(FuzzFindings, DoubleLogOfSubnormalsIsRight) {
  const std::vector<double> x = {std::numeric_limits<double>::denorm_min(),
                                 1e-310,
                                 1e-320,
                                 std::numeric_limits<double>::min() / 4,
                                 std::numeric_limits<double>::min(),
                                 1.0};
  Tape<double> tape;
  const Var<double> y = log(tape.variable(array(x)));
  const std::vector<double> got = values_of(y);
  for (std::size_t i = 0; i < x.size(); ++i)
    EXPECT_NEAR(got[i], std::log(x[i]), 8e-16 * std::abs(std::log(x[i])) + 1e-300)
        << "log(" << x[i] << ")";
  EXPECT_NEAR(got[0], -744.44007192138122, 1e-12);  // the finding: it gave −746.52
  EXPECT_NEAR(got[1], -713.80137882815420, 1e-12);  // it gave −746.52
  // float, for completeness (it was right)
  Tape<float> tf;
  const Var<float> yf = log(tf.variable(xt::xarray<float>{1e-45f, 1e-40f, 1.0f}));
  EXPECT_NEAR(yf.value()(0), std::log(1e-45f), 1e-4);
  EXPECT_NEAR(yf.value()(1), std::log(1e-40f), 1e-4);
}

TEST(FuzzFindings, DoubleExpOfExtremeValuesIsDefined) {
  // Every double op built on exp, on −inf, inf, NaN and |x| around and above 6e18. (The
  // undefined behaviour itself shows only under clang's UBSan; the values show in any build.)
  const std::vector<double> x = {-kInf, kInf, kNaN, -1e19, 1e19, -6e18, 6e18, -745, 710, 0};
  Tape<double> tape;
  const Var<double> v = tape.variable(array(x));
  const std::vector<double> e = values_of(exp(v)), s = values_of(sigmoid(v)),
                            t = values_of(tanh(v));
  for (std::size_t i = 0; i < x.size(); ++i) {
    SCOPED_TRACE("x = " + std::to_string(x[i]));
    EXPECT_TRUE(close<double>(e[i], std::exp(x[i]), 1e-300)) << "exp " << e[i];
    EXPECT_TRUE(close<double>(s[i], 1 / (1 + std::exp(-x[i])), 1e-15)) << "sigmoid " << s[i];
    EXPECT_TRUE(close<double>(t[i], std::tanh(x[i]), 1e-15)) << "tanh " << t[i];
  }
  // The saved input: softmax of [−inf, −5.5].
  const Var<double> z = tape.constant(xt::xarray<double>{-kInf, -5.5});
  EXPECT_EQ(values_of(softmax(z)), (std::vector<double>{0.0, 1.0}));
  EXPECT_EQ(values_of(log_softmax(z)), (std::vector<double>{-kInf, 0.0}));
  const Var<double> big = tape.constant(xt::xarray<double>{{1e19, 0.0}, {-1e19, 0.0}});
  EXPECT_EQ(values_of(softmax(big)), (std::vector<double>{1.0, 0.0, 0.0, 1.0}));
  EXPECT_EQ(softmax_cross_entropy(big, std::vector<std::int32_t>{0, 1}).item(), 0.0);
  EXPECT_TRUE(std::isnan(softmax(tape.constant(xt::xarray<double>{kNaN, 0.0})).value()(1)));
  const Var<double> targets = tape.constant(xt::xarray<double>{{1.0, 0.0}, {0.0, 1.0}});
  // ±1e19 against their targets cost 0 (no exp overflows); the two zeros log(2) each.
  EXPECT_NEAR(sigmoid_binary_cross_entropy(big, targets).item(), std::log(2.0) / 2, 1e-15);
}

/// Extreme finite values of T: subnormals, the edges of exp's range, huge magnitudes.
template <class T>
std::vector<double> extremes() {
  if (std::is_same_v<T, float>)
    return {1e-45, -1e-45, 1e-40, 1e-38, 88, 89, -104, 1e30, -1e30, 3e38, -3e38, 0.02, 0.98};
  return {4.9e-324, -4.9e-324, 1e-310, 1e-300, 709,    710,  -745, 6e18,
          -6e18,    1e19,      -1e19,  1e300,  -1e300, 0.02, 0.98};
}

template <class T>
void check_registry_references() {
  const double eps = std::numeric_limits<T>::epsilon(),
               tiny = 4 * double(std::numeric_limits<T>::min());
  int checked = 0;
  for (const OpEntry& op : op_registry()) {
    if (!op.reference || op.rule != ShapeRule::kElementwise) continue;
    std::vector<double> scalars{0.0};
    if (op.takes_scalar)
      scalars = op.scalar_values.empty() ? std::vector<double>{2.0, -0.5} : op.scalar_values;
    for (double c : scalars)
      for (double x : extremes<T>())
        for (int s = 0; s < int(op.spellings.size()); ++s) {
          OpArgs a;
          a.scalar = double(T(c));
          a.spelling = s;
          Tape<T> tape;
          const Var<T> in = tape.constant(xt::xarray<T>{T(x)});
          Var<T> y;
          try {
            y = op.record(&in, a);
          } catch (const Error&) {  // refused for its value (log of a negative number): fine
            continue;
          }
          const double xv = double(T(x)), want = op.reference(xv, a.scalar);
          EXPECT_TRUE(
              close<T>(double(y.value()(0)), want, op.ref_eps * eps * std::abs(want) + tiny))
              << op.label() << " as " << op.spellings[std::size_t(s)] << " ("
              << (std::is_same_v<T, float> ? "float" : "double") << ") of " << xv
              << (op.takes_scalar ? " and " + std::to_string(a.scalar) : "") << ": got "
              << double(y.value()(0)) << ", the reference " << want;
          ++checked;
        }
  }
  EXPECT_GT(checked, 100);
}

TEST(FuzzFindings, EveryElementwiseOpOfTheRegistryMatchesItsReferenceOnExtremeValues) {
  check_registry_references<double>();
  check_registry_references<float>();
}

}  // namespace
