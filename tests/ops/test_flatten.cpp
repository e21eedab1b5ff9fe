// Tests for ops/wengert/ops/flatten.hpp: flatten through the shared op-test helper (forward,
// gradcheck, float32, constants, fan-out, shape errors, allocation-free replay).
#include <wengert/ops/flatten.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "op_test.hpp"

using namespace wengert;
using wengert::testing::op_test;
using wengert::testing::Values;

TEST(Flatten, OpTest) {
  op_test<1>("flatten", [](auto&& x) { return flatten(x); })
      .shapes(wengert::testing::shapes::fixed(
          {{{2, 3, 2, 2}}, {{1, 4}}, {{3}}, {{2, 1, 5}}, {{0, 3, 2}}}))
      .bad_shapes({{{}}})
      .reference([](const Values& v) {
        const auto& x = v[0];
        std::vector<std::size_t> shape{x.shape(0), 1};  // [N, product of the other axes]
        for (std::size_t d = 1; d < x.dimension(); ++d) shape[1] *= x.shape(d);
        xt::xarray<double> y = xt::zeros<double>(shape);
        std::copy(x.begin(), x.end(), y.begin());
        return y;
      })
      .run();
}
