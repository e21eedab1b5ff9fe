// Tests for ops/wengert/ops/indexing.hpp: index_select (int32 and int64 indices, 1-D and 2-D,
// repeated, along every axis) and embedding, through the shared op-test helper; the scatter-add
// with repeated indices in closed form; out-of-range indices (ValueError naming the position and
// the value, the tape unchanged); the container overloads.
#include <wengert/ops/indexing.hpp>

#include <wengert/ops/elementwise.hpp>
#include <wengert/ops/reduce.hpp>

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include <xtensor/xtensor.hpp>

#include "nn_test_util.hpp"
#include "op_test.hpp"

using namespace wengert;
using wengert::testing::op_test;
using wengert::testing::Values;
namespace shapes = wengert::testing::shapes;

namespace {

using Arr = xt::xarray<double>;

// numpy.take(x, idx, axis) by loops: x as [outer, n, inner], the output [outer, m, inner].
template <class I>
Arr take_ref(const Arr& x, std::size_t axis, const std::vector<I>& idx,
             const std::vector<std::size_t>& ishape) {
  std::vector<std::size_t> s;
  std::size_t outer = 1, inner = 1;
  for (std::size_t d = 0; d < axis; ++d) s.push_back(x.shape(d)), outer *= x.shape(d);
  for (std::size_t d : ishape) s.push_back(d);
  for (std::size_t d = axis + 1; d < x.dimension(); ++d)
    s.push_back(x.shape(d)), inner *= x.shape(d);
  const std::size_t n = x.shape(axis), m = idx.size();
  Arr y = Arr::from_shape(s);
  for (std::size_t o = 0; o < outer; ++o)
    for (std::size_t j = 0; j < m; ++j)
      for (std::size_t i = 0; i < inner; ++i)
        y.data()[(o * m + j) * inner + i] = x.data()[(o * n + std::size_t(idx[j])) * inner + i];
  return y;
}

const std::vector<std::int32_t> kIdx32 = {2, 0, 2, 1, 2};  // 2 three times
const std::vector<std::int64_t> kIdx64 = {1, 1, 0, 1};     // as [2,2]

}  // namespace

TEST(Indexing, IndexSelectThroughOpTest) {
  op_test<1>("index_select", [](auto&& x) { return index_select(x, 1, kIdx32); })
      .shapes(shapes::fixed({{{2, 3}}, {{1, 3, 4}}, {{0, 3, 2}}, {{4, 5, 1}}}))
      .bad_shapes({{{}}, {{3}}})  // a scalar; a rank-1 x has no axis 1
      .reference([](const Values& v) { return take_ref(v[0], 1, kIdx32, {kIdx32.size()}); })
      .run();
  // Along the last axis (counted from the end), with 2-D int64 indices.
  op_test<1>("index_select",
             [](auto&& x) {
               return index_select(x, -1, kIdx64.data(), Shape{2, 2});
             })
      .shapes(shapes::fixed({{{2}}, {{3, 2}}, {{2, 1, 5}}}))
      .bad_shapes({{{}}})
      .reference([](const Values& v) {
        return take_ref(v[0], v[0].dimension() - 1, kIdx64, {2, 2});
      })
      .run();
  // Along axis 0, no indices at all: an empty output, a zero gradient.
  op_test<1>("index_select",
             [](auto&& x) { return index_select(x, 0, std::vector<std::int64_t>{}); })
      .shapes(shapes::fixed({{{3, 2}}, {{1}}}))
      .bad_shapes({{{}}})
      .reference([](const Values& v) { return take_ref(v[0], 0, std::vector<int>{}, {0}); })
      .run();
}

TEST(Indexing, EmbeddingThroughOpTest) {
  op_test<1>("embedding", [](auto&& t) { return embedding(t, kIdx32.data(), Shape{5}); })
      .shapes(shapes::fixed({{{3, 4}}, {{3, 1}}, {{5, 17}}, {{3, 0}}}))
      .bad_shapes({{{3}}, {{3, 4, 1}}, {{}}})
      .reference([](const Values& v) { return take_ref(v[0], 0, kIdx32, {5}); })
      .run();
  op_test<1>("embedding",
             [](auto&& t) {
               return embedding(t, kIdx64.data(), Shape{2, 2});
             })
      .shapes(shapes::fixed({{{2, 3}}, {{4, 2}}}))
      .bad_shapes({{{2}}})
      .reference([](const Values& v) {
        return take_ref(v[0], 0, kIdx64, {2, 2});
      })
      .run();
}

TEST(Indexing, RepeatedIndicesAccumulate) {
  // dtable[k] = Σ over the positions holding id k of G at that position.
  Tape<double> tape;
  auto table = tape.variable(Arr{{1, 2}, {3, 4}, {5, 6}});
  const xt::xtensor<std::int64_t, 2> ids{{2, 0}, {2, 2}};
  auto y = embedding(table, ids);
  ASSERT_EQ(y.shape(), (Shape{2, 2, 2}));
  EXPECT_EQ(y.value()(1, 1, 0), 5);
  const Arr G{{{1, 10}, {100, 1000}}, {{2, 20}, {3, 30}}};
  tape.backward(y, G);
  EXPECT_EQ(Arr(table.grad()), (Arr{{100, 1000}, {0, 0}, {1 + 2 + 3, 10 + 20 + 30}}));
}

TEST(Indexing, OutOfRangeIndexIsAValueErrorNamingPositionAndValue) {
  using nntest::message_of;
  Tape<double> tape;
  auto x = tape.variable(Arr::from_shape({2, 3}));
  const std::size_t before = tape.size();
  EXPECT_EQ(message_of<ValueError>([&] {
              index_select(x, 1, std::vector<std::int32_t>{0, 2, 3});
            }),
            "index_select: indices[2] = 3 is out of range for axis 1 of x [2,3], of length 3");
  EXPECT_EQ(message_of<ValueError>([&] { index_select(x, 0, std::vector<std::int64_t>{-1}); }),
            "index_select: indices[0] = -1 is out of range for axis 0 of x [2,3], of length 2");
  const xt::xtensor<std::int32_t, 2> ids{{0, 1}, {7, 0}};
  EXPECT_EQ(message_of<ValueError>([&] { embedding(x, ids); }),
            "embedding: ids[1,0] = 7 is out of range for axis 0 of the table [2,3], of length 2");
  EXPECT_EQ(message_of<ShapeError>([&] {
              embedding(tape.variable(Arr{1, 2}), ids);
            }),
            "embedding: table is [2], not 2-D [V, d]");
  EXPECT_EQ(message_of<ShapeError>([&] { index_select(x, 2, kIdx32); }),
            "index_select: axis 2 is out of range for x of shape [2,3] (valid axes are -2 to 1)");
  EXPECT_EQ(tape.size(), before + 1);  // only the [2] table leaf: every refusal left no trace
}

TEST(Indexing, IndicesAreCopiedAtRecordTime) {
  Tape<double> tape;
  auto x = tape.variable(Arr{10, 20, 30});
  std::vector<std::int32_t> idx{2, 2};
  auto y = index_select(x, 0, idx);
  idx = {0, 0};  // the caller's buffer changes before backward
  tape.backward(sum(y));
  EXPECT_EQ(Arr(x.grad()), (Arr{0, 0, 2}));
}
