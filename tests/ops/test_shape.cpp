// Tests for ops/wengert/ops/shape.hpp: reshape, flatten, squeeze, unsqueeze, transpose, permute,
// broadcast_to, concat, stack, slice, split — each through the shared op-test helper (forward
// against xtensor's own reshape/transpose/concatenate/stack/broadcast/strided_view, gradcheck,
// float32, constants, fan-out, shape errors, replay without allocation), then the views' "no
// copy", numpy's slice bounds and the error messages.
#include <wengert/ops/shape.hpp>

#include <wengert/ops/elementwise.hpp>
#include <wengert/ops/reduce.hpp>

#include <gtest/gtest.h>

#include <xtensor/xbroadcast.hpp>
#include <xtensor/xmanipulation.hpp>
#include <xtensor/xstrided_view.hpp>

#include "nn_test_util.hpp"
#include "op_test.hpp"

using namespace wengert;
using wengert::testing::op_test;
using wengert::testing::Values;
namespace shapes = wengert::testing::shapes;

namespace {

using Arr = xt::xarray<double>;

Arr reshaped(const Arr& a, std::vector<std::size_t> s) {
  Arr r = Arr::from_shape(s);
  std::copy(a.begin(), a.end(), r.begin());
  return r;
}

// numpy's a[..., b:e, ...] along `axis` (b ≤ e already clamped).
Arr sliced(const Arr& a, std::size_t axis, std::size_t b, std::size_t e) {
  xt::xstrided_slice_vector sv(a.dimension(), xt::all());
  sv[axis] = xt::range(b, e);
  return xt::eval(xt::strided_view(a, sv));
}

// xs joined along `axis` by blocks (xtensor's concatenate and stack trip gcc 12's -Warray-bounds).
Arr concat_ref(const std::vector<Arr>& xs, std::size_t axis) {
  std::vector<std::size_t> s(xs[0].shape().begin(), xs[0].shape().end());
  std::size_t outer = 1, total = 0;
  for (std::size_t d = 0; d < axis; ++d) outer *= s[d];
  for (const Arr& x : xs) total += x.shape(axis);
  s[axis] = total;
  Arr out = Arr::from_shape(s);
  double* y = out.data();
  for (std::size_t o = 0; o < outer; ++o)
    for (const Arr& x : xs) {
      const std::size_t w = x.size() / outer;
      y = std::copy(x.data() + o * w, x.data() + (o + 1) * w, y);
    }
  return out;
}

Arr stack_ref(std::vector<Arr> xs, std::size_t axis) {
  for (Arr& x : xs) {
    std::vector<std::size_t> s(x.shape().begin(), x.shape().end());
    s.insert(s.begin() + std::ptrdiff_t(axis), 1);
    x = reshaped(x, s);
  }
  return concat_ref(xs, axis);
}

}  // namespace

TEST(Shape, ReshapeThroughOpTest) {
  op_test<1>("reshape",
             [](auto&& x) {
               return reshape(x, Shape{3, 2});
             })
      .shapes(shapes::fixed({{{2, 3}}, {{6}}, {{1, 6, 1}}}))
      .bad_shapes({{{2, 2}}, {{7}}, {{}}})
      .reference([](const Values& v) {
        return reshaped(v[0], {3, 2});
      })
      .run();
  op_test<1>("reshape",
             [](auto&& x) {
               return reshape(x, Shape{0, 5});
             })
      .shapes(shapes::fixed({{{0}}, {{5, 0}}}))
      .bad_shapes({{{5}}})
      .reference([](const Values&) {
        return Arr::from_shape({0, 5});
      })
      .run();
}

TEST(Shape, FlattenSqueezeUnsqueezeThroughOpTest) {
  op_test<1>("flatten", [](auto&& x) { return flatten(x, 1); })
      .shapes(shapes::fixed({{{2, 3, 4}}, {{3, 1}}, {{2, 0, 5}}}))
      .bad_shapes({{{4}}})  // start axis 1 of a rank-1 x
      .reference([](const Values& v) {
        return reshaped(v[0],
                        {v[0].shape(0), v[0].size() / std::max<std::size_t>(1, v[0].shape(0))});
      })
      .run();
  op_test<1>("flatten", [](auto&& x) { return flatten(x, 0, -2); })
      .shapes(shapes::fixed({{{2, 3, 4}}, {{5, 1}}, {{}}}))
      .bad_shapes({{{4}}})
      .reference([](const Values& v) {
        if (v[0].dimension() == 0) return reshaped(v[0], {1});  // a scalar becomes [1]
        const std::size_t last = v[0].shape().back();
        return reshaped(v[0], {v[0].size() / last, last});
      })
      .run();
  op_test<1>("squeeze", [](auto&& x) { return squeeze(x, -2); })
      .shapes(shapes::fixed({{{3, 1, 2}}, {{1, 4}}, {{0, 1, 1}}}))
      .bad_shapes({{{3, 2}}, {{2}}})
      .reference([](const Values& v) {
        std::vector<std::size_t> s(v[0].shape().begin(), v[0].shape().end());
        s.erase(s.end() - 2);
        return reshaped(v[0], s);
      })
      .run();
  op_test<1>("unsqueeze", [](auto&& x) { return unsqueeze(x, -1); })
      .shapes(shapes::fixed({{{3, 2}}, {{}}, {{0}}}))
      .bad_shapes({{{1, 1, 1, 1, 1, 1}}})
      .reference([](const Values& v) {
        std::vector<std::size_t> s(v[0].shape().begin(), v[0].shape().end());
        s.push_back(1);
        return reshaped(v[0], s);
      })
      .run();
}

TEST(Shape, TransposeAndPermuteThroughOpTest) {
  op_test<1>("transpose", [](auto&& x) { return transpose(x); })
      .shapes(shapes::fixed({{{2, 3}}, {{1, 5}}, {{33, 40}}, {{0, 3}}}))
      .bad_shapes({{{3}}, {{2, 3, 4}}})
      .reference([](const Values& v) { return Arr(xt::transpose(v[0])); })
      .run();
  op_test<1>("permute",
             [](auto&& x) {
               return permute(x, {2, 0, -2});
             })
      .shapes(shapes::fixed({{{2, 3, 4}}, {{1, 5, 2}}, {{3, 0, 2}}}))
      .bad_shapes({{{2, 3}}, {{2, 3, 4, 5}}})
      .reference([](const Values& v) {
        return Arr(xt::transpose(v[0], {2, 0, 1}));
      })
      .run();
}

TEST(Shape, BroadcastToThroughOpTest) {
  op_test<1>("broadcast_to",
             [](auto&& x) {
               return broadcast_to(x, Shape{2, 3, 4});
             })
      .shapes(shapes::fixed({{{3, 1}}, {{4}}, {{}}, {{1, 3, 4}}, {{2, 1, 1}}}))
      .bad_shapes({{{2, 4}}, {{3, 2}}, {{1, 2, 3, 4}}})
      .reference([](const Values& v) {
        return Arr(xt::broadcast(v[0], {2, 3, 4}));
      })
      .run();
}

TEST(Shape, ConcatAndStackThroughOpTest) {
  op_test<3>("concat",
             [](auto&& a, auto&& b, auto&& c) {
               return concat({a, b, c}, -1);
             })
      .shapes(shapes::fixed(
          {{{2, 3}, {2, 1}, {2, 0}}, {{4}, {2}, {1}}, {{2, 1, 2}, {2, 1, 3}, {2, 1, 1}}}))
      .bad_shapes({{{2, 3}, {3, 3}, {2, 3}}, {{2}, {2, 1}, {2}}, {{}, {}, {}}})
      .reference([](const Values& v) { return concat_ref(v, v[0].dimension() - 1); })
      .run();
  op_test<2>("concat",
             [](auto&& a, auto&& b) {
               return concat({a, b}, 0);
             })
      .shapes(shapes::fixed({{{2, 3}, {1, 3}}, {{0, 2}, {3, 2}}}))
      .bad_shapes({{{2, 3}, {2, 4}}})
      .reference([](const Values& v) { return concat_ref(v, 0); })
      .run();
  op_test<3>("stack",
             [](auto&& a, auto&& b, auto&& c) {
               return stack({a, b, c}, 1);
             })
      .shapes(shapes::fixed({{{2, 3}, {2, 3}, {2, 3}}, {{4}, {4}, {4}}, {{0, 2}, {0, 2}, {0, 2}}}))
      .bad_shapes({{{2, 3}, {2, 3}, {3, 2}}, {{}, {}, {}}})
      .reference([](const Values& v) { return stack_ref(v, 1); })
      .run();
  op_test<2>("stack",
             [](auto&& a, auto&& b) {
               return stack({a, b}, -1);
             })
      .shapes(shapes::fixed({{{2, 3}, {2, 3}}, {{}, {}}}))
      .bad_shapes({{{2}, {3}}})
      .reference([](const Values& v) { return stack_ref(v, v[0].dimension()); })
      .run();
}

TEST(Shape, SliceThroughOpTest) {
  // Along a middle axis (a copy), negative bounds, and along axis 0 (a view).
  op_test<1>("slice", [](auto&& x) { return slice(x, 1, 1, -1); })
      .shapes(shapes::fixed({{{2, 4}}, {{3, 5, 2}}, {{2, 1}}, {{0, 4}}}))
      .bad_shapes({{{4}}, {{}}})
      .reference([](const Values& v) {
        const std::size_t n = v[0].shape(1);
        return sliced(v[0], 1, std::min<std::size_t>(1, n),
                      std::max<std::size_t>(std::min<std::size_t>(1, n), n ? n - 1 : 0));
      })
      .run();
  op_test<1>("slice", [](auto&& x) { return slice(x, 0, -3, 100); })
      .shapes(shapes::fixed({{{5, 2}}, {{2}}, {{4, 3, 2}}}))
      .bad_shapes({{{}}})
      .reference([](const Values& v) {
        const std::size_t n = v[0].shape(0);
        return sliced(v[0], 0, n > 3 ? n - 3 : 0, n);
      })
      .run();
}

TEST(Shape, SplitThroughOpTest) {
  // Each part's gradient: the parts are combined with different weights.
  op_test<1>("split",
             [](auto&& x) {
               auto p = split(x, 3, -1);
               return add(add(p[0], mul(p[1], 2.0)), mul(p[2], 3.0));
             })
      .shapes(shapes::fixed({{{2, 6}}, {{3}}, {{0, 3}}}))
      .bad_shapes({{{2, 4}}, {{}}})
      .reference([](const Values& v) {
        const std::size_t n = v[0].shape().back() / 3, ax = v[0].dimension() - 1;
        return Arr(sliced(v[0], ax, 0, n) + 2.0 * sliced(v[0], ax, n, 2 * n) +
                   3.0 * sliced(v[0], ax, 2 * n, 3 * n));
      })
      .skip(wengert::testing::Check::kReplay,
            "split returns a std::vector (the Var* form is checked below)")
      .run();
  op_test<1>("split",
             [](auto&& x) {
               auto p = split(x, std::vector<std::size_t>{1, 0, 2}, 0);
               return concat({p[2], p[1], p[0]}, 0);
             })
      .shapes(shapes::fixed({{{3}}, {{3, 2}}}))
      .bad_shapes({{{4}}, {{2, 3}}})
      .reference([](const Values& v) {
        const std::size_t n = v[0].shape(0);
        return concat_ref({sliced(v[0], 0, 1, n), sliced(v[0], 0, 0, 1)}, 0);
      })
      .skip(wengert::testing::Check::kReplay, "split returns a std::vector")
      .run();
}

TEST(Shape, SplitIntoHandlesAllocatesNothing) {
  op_test<1>("split",
             [](auto&& x) {
               using V = std::decay_t<decltype(x)>;
               V p[2];
               split(x, 2, 0, p);
               return mul(p[0], p[1]);
             })
      .shapes(shapes::fixed({{{4, 3}}, {{2}}}))
      .bad_shapes({{{3}}})
      .reference([](const Values& v) {
        const std::size_t n = v[0].shape(0) / 2;
        return Arr(sliced(v[0], 0, 0, n) * sliced(v[0], 0, n, 2 * n));
      })
      .run();
}

// ---- views, bounds, messages
// ---------------------------------------------------------------------

TEST(Shape, ViewsShareTheInputsMemory) {
  Tape<double> tape;
  auto x = tape.variable(Arr{{1, 2, 3}, {4, 5, 6}});
  EXPECT_EQ(reshape(x, Shape{3, 2}).data(), x.data());
  EXPECT_EQ(flatten(x).data(), x.data());
  EXPECT_EQ(unsqueeze(x, 0).data(), x.data());
  EXPECT_EQ(squeeze(unsqueeze(x, 1), 1).data(), x.data());
  EXPECT_EQ(slice(x, 0, 1, 2).data(), x.data() + 3);                // row 1: contiguous
  EXPECT_NE(slice(x, 1, 1, 2).data(), x.data() + 1);                // column 1: a copy
  EXPECT_EQ(slice(unsqueeze(x, 0), 1, 1, 2).data(), x.data() + 3);  // [1,2,3]: still a view
  // Values, and gradients into the aliased input.
  auto y = reshape(x, Shape{3, 2});
  EXPECT_EQ(y.value()(2, 1), 6);
  tape.backward(sum(mul(y, y)));
  EXPECT_EQ(x.grad()(1, 2), 12);
}

TEST(Shape, SliceBoundsFollowNumpy) {
  Tape<double> tape;
  auto x = tape.constant(Arr{0, 1, 2, 3, 4});
  auto vals = [](const Var<double>& v) { return Arr(v.value()); };
  EXPECT_EQ(vals(slice(x, 0, -2, 5)), (Arr{3, 4}));
  EXPECT_EQ(vals(slice(x, 0, 1, -1)), (Arr{1, 2, 3}));
  EXPECT_EQ(vals(slice(x, 0, -100, 2)), (Arr{0, 1}));
  EXPECT_EQ(slice(x, 0, 3, 1).shape(), Shape{0});
  EXPECT_EQ(slice(x, 0, 7, 9).shape(), Shape{0});
  EXPECT_EQ(vals(slice(x, -1, 4, 1LL << 40)), (Arr{4}));
}

TEST(Shape, ErrorsNameTheOpTheArgumentAndTheShapes) {
  using nntest::message_of;
  Tape<double> tape;
  auto x = tape.variable(Arr::from_shape({2, 3}));
  auto z = tape.variable(Arr::from_shape({3, 3}));
  EXPECT_EQ(message_of<ShapeError>([&] {
              reshape(x, Shape{4, 2});
            }),
            "reshape: x is [2,3] (6 elements) but the new shape [4,2] has 8");
  EXPECT_EQ(message_of<ShapeError>([&] { squeeze(x, 0); }),
            "squeeze: axis 0 of x [2,3] has length 2, not 1");
  EXPECT_EQ(message_of<ShapeError>([&] { slice(x, 2, 0, 1); }),
            "slice: axis 2 is out of range for x of shape [2,3] (valid axes are -2 to 1)");
  EXPECT_EQ(message_of<ShapeError>([&] {
              concat({x, z}, 1);
            }),
            "concat: xs[0] is [2,3] but xs[1] is [3,3]: along axis 1 all must have the same rank "
            "and the same other dimensions");
  EXPECT_EQ(message_of<ShapeError>([&] {
              stack({x, z}, 0);
            }),
            "stack: xs[0] is [2,3] but xs[1] is [3,3]; stack needs tensors of one shape");
  EXPECT_EQ(message_of<ShapeError>([&] {
              permute(x, {0, 0});
            }),
            "permute: the permutation (0, 0) of x [2,3] repeats an axis at position 1; it must "
            "hold each of 0..1 once");
  EXPECT_EQ(message_of<ShapeError>([&] {
              broadcast_to(x, Shape{3, 3});
            }),
            "broadcast_to: x [2,3] cannot be broadcast to [3,3]");
  EXPECT_EQ(message_of<ShapeError>([&] { split(x, 2, 1); }),
            "split: axis 1 of x [2,3] has length 3, which 2 parts cannot divide equally");
  EXPECT_EQ(message_of<ShapeError>([&] {
              split(x, std::vector<std::size_t>{1, 1}, 1);
            }),
            "split: the sizes (1, 1) add up to 2 but axis 1 of x [2,3] has length 3");
  EXPECT_EQ(message_of<ShapeError>([&] { concat(std::vector<Var<double>>{}, 0); }),
            "concat: xs is empty; it needs at least one tensor");
  EXPECT_EQ(tape.size(), 2u);  // every refusal left the tape as it was
  Var<double> stale;
  EXPECT_NE(message_of<UsageError>([&] {
              concat({x, stale}, 0);
            }).find("concat: argument xs[1]"),
            std::string::npos);
}
