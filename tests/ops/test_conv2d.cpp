// Tests for ops/wengert/ops/conv2d.hpp: conv2d through the shared op-test helper (forward
// against a direct 7-loop convolution in double, gradcheck, float32, constants, fan-out, shape
// errors, allocation-free replay) with stride 2, padding, dilation, 1×1 kernels, a kernel as
// large as the padded input, batch 1 and non-square images; then the errors' messages (the
// computed output size) and the no-grad path.
#include <wengert/ops/conv2d.hpp>

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <xtensor/xbuilder.hpp>

#include "op_test.hpp"

using namespace wengert;
using wengert::testing::op_test;
using wengert::testing::ShapeCase;
using wengert::testing::Values;

namespace {

// The definition, loop by loop: y[n,o,oh,ow] = b[o] + Σ W[o,c,i,j]·x[n,c,oh·s−p+i·d,ow·s−p+j·d].
xt::xarray<double> conv_ref(const Values& v, const Conv2dOptions& o) {
  const auto& x = v[0];
  const auto& W = v[1];
  const auto& b = v[2];
  const long N = long(x.shape(0)), C = long(x.shape(1)), H = long(x.shape(2)),
             Wd = long(x.shape(3));
  const long O = long(W.shape(0)), kh = long(W.shape(2)), kw = long(W.shape(3));
  const long s = long(o.stride), p = long(o.padding), d = long(o.dilation);
  const long Ho = (H + 2 * p - d * (kh - 1) - 1) / s + 1,
             Wo = (Wd + 2 * p - d * (kw - 1) - 1) / s + 1;
  xt::xarray<double> y =
      xt::zeros<double>({std::size_t(N), std::size_t(O), std::size_t(Ho), std::size_t(Wo)});
  for (long n = 0; n < N; ++n)
    for (long oc = 0; oc < O; ++oc)
      for (long oh = 0; oh < Ho; ++oh)
        for (long ow = 0; ow < Wo; ++ow) {
          double acc = b(oc);
          for (long c = 0; c < C; ++c)
            for (long i = 0; i < kh; ++i)
              for (long j = 0; j < kw; ++j) {
                const long ih = oh * s - p + i * d, iw = ow * s - p + j * d;
                if (ih >= 0 && ih < H && iw >= 0 && iw < Wd)
                  acc += W(oc, c, i, j) * x(n, c, ih, iw);
              }
          y(n, oc, oh, ow) = acc;
        }
  return y;
}

// One op test per set of options: cases are {x, W, b} shapes; wrong ones at least the channel
// mismatch.
void run_conv(const std::string& label, Conv2dOptions o, std::vector<ShapeCase> cases,
              std::vector<ShapeCase> bad = {}) {
  bad.push_back({{1, 2, 4, 4}, {1, 3, 1, 1}, {1}});
  op_test<3>("conv2d " + label, [o](auto&& x, auto&& W, auto&& b) { return conv2d(x, W, b, o); })
      .shapes(wengert::testing::shapes::fixed(std::move(cases)))
      .bad_shapes(std::move(bad))
      .reference([o](const Values& v) { return conv_ref(v, o); })
      .error_token("conv2d")
      .run();
}

}  // namespace

TEST(Conv2d, OpTestPlain) {
  run_conv("3x3", {},
           {{{1, 1, 4, 4}, {2, 1, 3, 3}, {2}},    // batch 1
            {{2, 2, 5, 3}, {3, 2, 3, 3}, {3}},    // non-square image
            {{2, 3, 4, 5}, {2, 3, 2, 3}, {2}},    // non-square kernel
            {{1, 2, 3, 4}, {2, 2, 3, 4}, {2}}},   // a kernel as large as the input: 1×1 out
           {{{2, 2, 4, 4}, {3, 3, 3, 3}, {3}},    // channels differ
            {{2, 2, 4, 4}, {3, 2, 3, 3}, {2}},    // b is not [O]
            {{2, 2, 4}, {3, 2, 3, 3}, {3}},       // x is not 4-D
            {{2, 2, 4, 4}, {3, 2, 3}, {3}},       // W is not 4-D
            {{1, 1, 2, 2}, {1, 1, 3, 3}, {1}},    // kernel larger than the image
            {{1, 1, 3, 3}, {1, 1, 0, 2}, {1}}});  // empty kernel
}

TEST(Conv2d, OpTestStride2Padding) {
  run_conv("stride 2 padding 1", {2, 1, 1},
           {{{2, 2, 5, 5}, {3, 2, 3, 3}, {3}},
            {{1, 1, 6, 4}, {2, 1, 3, 3}, {2}},
            {{1, 2, 3, 3}, {2, 2, 5, 5}, {2}}},   // a kernel as large as the padded input
           {{{1, 1, 1, 1}, {1, 1, 4, 4}, {1}}});  // 1 + 2 < 4
}

TEST(Conv2d, OpTestDilation) {
  run_conv("dilation 2 padding 2", {1, 2, 2},
           {{{1, 2, 4, 5}, {2, 2, 3, 3}, {2}}, {{2, 1, 3, 3}, {1, 1, 2, 3}, {1}}});
  run_conv("stride 2 dilation 2", {2, 0, 2}, {{{1, 1, 7, 6}, {2, 1, 2, 2}, {2}}},
           {{{1, 1, 4, 4}, {1, 1, 3, 3}, {1}}});  // dilated extent 5 > 4
}

TEST(Conv2d, OpTestOneByOne) {
  // The direct path (no im2col) and the 1×1 kernel with stride or padding (im2col).
  run_conv("1x1", {}, {{{2, 3, 3, 4}, {2, 3, 1, 1}, {2}}, {{1, 1, 1, 1}, {1, 1, 1, 1}, {1}}});
  run_conv("1x1 stride 2 padding 1", {2, 1, 1}, {{{2, 2, 3, 4}, {3, 2, 1, 1}, {3}}});
}

TEST(Conv2d, ErrorsGiveTheComputedOutputSize) {
  Tape<double> tape;
  auto x = tape.variable(xt::xarray<double>(xt::zeros<double>({1, 1, 3, 3})));
  auto W = tape.variable(xt::xarray<double>(xt::zeros<double>({2, 1, 5, 5})));
  auto b = tape.variable(xt::xarray<double>(xt::zeros<double>({2})));
  std::string msg;
  try {
    conv2d(x, W, b);
  } catch (const ShapeError& e) {
    msg = e.what();
  }
  EXPECT_NE(msg.find("conv2d: x is [1,1,3,3] and W is [2,1,5,5] with stride 1, padding 0, "
                     "dilation 1"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("output height would be (3 + 2·0 − 5)/1 + 1 = -1"), std::string::npos) << msg;
  EXPECT_THROW(conv2d(x, W, b, {0, 2, 1}), ValueError);  // stride 0
  EXPECT_THROW(conv2d(x, W, b, {1, 2, 0}), ValueError);  // dilation 0
  const std::size_t before = tape.size();
  EXPECT_THROW(conv2d(x, W, b, {1, 0, 2}), ShapeError);                // dilated extent 9 > 3
  EXPECT_EQ(tape.size(), before);                                      // the tape as it was
  EXPECT_EQ(conv2d(x, W, b, {1, 1, 1}).shape(), (Shape{1, 2, 1, 1}));  // (3 + 2 − 5)/1 + 1 = 1
}

TEST(Conv2d, NoGradComputesTheSameValues) {
  // Under no-grad one image's im2col buffer serves the whole batch (nothing is kept).
  Tape<float> tape;
  xt::xarray<float> xv = xt::ones<float>({3, 4, 8, 8});
  xv(2, 1, 3, 3) = 5.0f;
  auto x = tape.constant(xv);
  auto W = tape.variable(xt::xarray<float>(xt::ones<float>({4, 4, 3, 3})));
  auto b = tape.constant(xt::xarray<float>(xt::zeros<float>({4})));
  auto with_grad = conv2d(x, W, b, {1, 1, 1});
  NoGradGuard ng;
  auto y = conv2d(x, W, b, {1, 1, 1});
  EXPECT_FALSE(y.requires_grad());
  EXPECT_EQ(y.value()(0, 0, 3, 3), 4.0f * 9.0f);  // an interior pixel: 4 channels × 9 taps
  EXPECT_EQ(y.value()(0, 0, 0, 0), 4.0f * 4.0f);  // a corner: 4 taps inside the image
  EXPECT_EQ(y.value()(2, 3, 2, 2), 4.0f * 9.0f + 4.0f);
  for (std::size_t i = 0; i < y.size(); ++i) EXPECT_EQ(y.data()[i], with_grad.data()[i]) << i;
}
