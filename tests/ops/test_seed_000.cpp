// Seed 000 (MiniFlow, part 9: backpropagation): MiniFlow's nodes, each with a gradients dict
// that backward fills, and training by the update rule w_i ← w_i − η·∂C/∂w_i (likewise b_i).
// Its Linear backward, for each outbound node n with G = n.gradients[self]:
//   dX += G·Wᵀ,  dW += Xᵀ·G,  db += Σ_rows G
// (layout X [m,n] with one example per row, W [n,k], Z [m,k], as the post lists). The post
// says its scalar form z_il = Σ_j x_ij·w_jl + b_l is "the dot product of row i of X and column
// j of W"; that is column l (j is the summed index) — the tests follow the math. Sigmoid's
// backward is MiniFlow's dS += σ(1 − σ)·G and its MSE is C = mean((y − a)²) with ∂C/∂a =
// −2(y − a)/m, ∂C/∂y = 2(y − a)/m: wengert's sigmoid and mse (target second).
//
// The network is MiniFlow's: Linear → Sigmoid → Linear → MSE, trained by SGD on random
// minibatches drawn with replacement (MiniFlow's resample), updating each trainable by hand as
// the post's rule (and MiniFlow's sgd_update: t.value -= learning_rate * t.gradients[t]) does.
// The post's text gives no data set, sizes or numbers (its formulas were images). MiniFlow's
// lesson trains on Boston housing with 10 hidden units and batches of 11; Boston housing is not
// available, so the data is a seeded synthetic regression problem, with hidden size 10 and
// batches of 11 (the lesson's η = 0.01 is raised to 0.1, so that 300 epochs converge in
// milliseconds). The lesson's own small worked examples — a Linear forward, an MSE forward,
// and the gradients of Linear → Sigmoid → MSE it prints — are reproduced below; they are
// quoted from the lesson, not from the post, and are each checked against a closed form too.
#include <wengert/wengert.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <initializer_list>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <xtensor/xarray.hpp>

using namespace wengert;

namespace {

double sigma(double z) { return 1.0 / (1.0 + std::exp(-z)); }

// A column [n, 1] (a braced {{1}, {2}} is ambiguous to xtensor).
xt::xarray<double> column(std::initializer_list<double> v) {
  xt::xarray<double> c = xt::xarray<double>::from_shape({v.size(), 1});
  std::copy(v.begin(), v.end(), c.begin());
  return c;
}

// ---- MiniFlow's lesson examples ---------------------------------------------------------

TEST(Seed000, LessonLinearForwardExample) {
  // X = [[-1, -2], [-1, -2]], W = [[2, -3], [2, -3]], b = [-3, -5]  →  [[-9, 4], [-9, 4]].
  Tape<double> tape;
  auto X = tape.constant(xt::xarray<double>{{-1, -2}, {-1, -2}});
  auto W = tape.constant(xt::xarray<double>{{2, -3}, {2, -3}});
  auto b = tape.constant(xt::xarray<double>{-3, -5});
  EXPECT_EQ(xt::xarray<double>(linear(X, W, b).value()), (xt::xarray<double>{{-9, 4}, {-9, 4}}));
  EXPECT_EQ(xt::xarray<double>(bias_add(matmul(X, W), b).value()),
            (xt::xarray<double>{{-9, 4}, {-9, 4}}));
}

TEST(Seed000, LessonMseForwardExample) {
  // y = [1, 2, 3], a = [4.5, 5, 10]: C = (3.5² + 3² + 7²)/3 = 70.25/3, printed 23.4166666667.
  Tape<double> tape;
  auto y = tape.constant(column({1, 2, 3}));
  auto a = tape.constant(column({4.5, 5, 10}));
  const double C = mse(a, y).item();
  EXPECT_DOUBLE_EQ(C, 70.25 / 3);
  EXPECT_NEAR(C, 23.4166666667, 0.5e-10);
}

TEST(Seed000, LessonBackpropExample) {
  // X = [[-1, -2], [-1, -2]], W = [[2], [3]], b = [-3], y = [1, 2]; l1 = Linear(X, W, b),
  // s = Sigmoid(l1), cost = MSE(y, s). Then z = −11 in both rows, s = σ(−11), and with
  // dz_i = σ'(−11)·(−2/m)(y_i − s), m = 2:
  //   ∂C/∂X = dz·Wᵀ, ∂C/∂y = (2/m)(y − s), ∂C/∂W = Xᵀ·dz, ∂C/∂b = Σ dz,
  // which the lesson prints (in that order) as
  //   [[-3.34017280e-05, -5.01025919e-05], [-6.68040138e-05, -1.00206021e-04]]
  //   [[0.9999833], [1.9999833]]
  //   [[5.01028709e-05], [1.00205742e-04]]
  //   [-5.01028709e-05]
  Tape<double> tape;
  auto X = tape.variable(xt::xarray<double>{{-1, -2}, {-1, -2}});
  auto W = tape.variable(column({2, 3}));
  auto b = tape.variable(xt::xarray<double>{-3.0});
  auto y = tape.variable(column({1, 2}));  // MiniFlow reshapes y to (-1, 1)
  auto s = sigmoid(linear(X, W, b));
  auto cost = mse(s, y);
  tape.backward(cost);

  // Printed digits: each value within half a unit of its last printed digit.
  struct Printed {
    double value, half_ulp;
  };
  auto expect_printed = [](double got, Printed p, const char* what) {
    EXPECT_NEAR(got, p.value, p.half_ulp) << what;
  };
  expect_printed(X.grad()(0, 0), {-3.34017280e-05, 0.5e-13}, "dX[0,0]");
  expect_printed(X.grad()(0, 1), {-5.01025919e-05, 0.5e-13}, "dX[0,1]");
  expect_printed(X.grad()(1, 0), {-6.68040138e-05, 0.5e-13}, "dX[1,0]");
  expect_printed(X.grad()(1, 1), {-1.00206021e-04, 0.5e-12}, "dX[1,1]");
  expect_printed(y.grad()(0, 0), {0.9999833, 0.5e-7}, "dy[0]");
  expect_printed(y.grad()(1, 0), {1.9999833, 0.5e-7}, "dy[1]");
  expect_printed(W.grad()(0, 0), {5.01028709e-05, 0.5e-13}, "dW[0]");
  expect_printed(W.grad()(1, 0), {1.00205742e-04, 0.5e-12}, "dW[1]");
  expect_printed(b.grad()(0), {-5.01028709e-05, 0.5e-13}, "db");

  // And the closed forms, to round-off.
  const double sv = sigma(-11.0), sp = sv * (1 - sv);
  const double y0 = 1, y1 = 2, dz0 = -sp * (y0 - sv), dz1 = -sp * (y1 - sv);
  auto rel = [](double got, double want, const char* what) {
    EXPECT_NEAR(got, want, 1e-13 * std::abs(want)) << what;
  };
  rel(s.value()(0, 0), sv, "s");
  rel(X.grad()(0, 0), 2 * dz0, "dX[0,0]");
  rel(X.grad()(0, 1), 3 * dz0, "dX[0,1]");
  rel(X.grad()(1, 0), 2 * dz1, "dX[1,0]");
  rel(X.grad()(1, 1), 3 * dz1, "dX[1,1]");
  rel(y.grad()(0, 0), y0 - sv, "dy[0]");
  rel(y.grad()(1, 0), y1 - sv, "dy[1]");
  rel(W.grad()(0, 0), -dz0 - dz1, "dW[0]");
  rel(W.grad()(1, 0), -2 * dz0 - 2 * dz1, "dW[1]");
  rel(b.grad()(0), dz0 + dz1, "db");
}

// ---- the network, trained ---------------------------------------------------------------

constexpr std::size_t kSamples = 200, kFeatures = 8, kHidden = 10, kBatch = 11;
// MiniFlow's steps_per_epoch = m // batch_size.
constexpr std::size_t kStepsPerEpoch = kSamples / kBatch;

using Mat = std::vector<double>;  // row-major

struct Data {
  Mat X, y;  // X [kSamples, kFeatures], y [kSamples]
};

// Features standard normal (MiniFlow standardises Boston's); a smooth nonlinear target of four
// of them, plus noise of standard deviation 0.05 (variance 0.0025, the floor for the loss).
Data make_data(std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> N(0, 1);
  Data d;
  d.X.resize(kSamples * kFeatures);
  d.y.resize(kSamples);
  for (double& v : d.X) v = N(rng);
  for (std::size_t i = 0; i < kSamples; ++i) {
    const double* x = &d.X[i * kFeatures];
    d.y[i] =
        2 + 1.5 * std::tanh(x[0] - 0.5 * x[1]) + 2 * sigma(3 * x[2]) - 0.5 * x[3] + 0.05 * N(rng);
  }
  return d;
}

// MiniFlow's initial values: W ~ N(0, 1), b = 0.
struct Params {
  Mat W1, b1, W2, b2;  // [kFeatures, kHidden], [kHidden], [kHidden, 1], [1]
};

Params initial_params(std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> N(0, 1);
  Params p;
  p.W1.resize(kFeatures * kHidden);
  p.W2.resize(kHidden);
  for (double& v : p.W1) v = N(rng);
  for (double& v : p.W2) v = N(rng);
  p.b1.assign(kHidden, 0.0);
  p.b2.assign(1, 0.0);
  return p;
}

// The seed's network in plain loops: forward, then each node's backward as MiniFlow writes it,
// then w ← w − η·∂C/∂w. Returns the batch cost before the update.
double reference_step(Params& p, const Mat& X, const Mat& y, std::size_t m, double lr) {
  Mat Z1(m * kHidden), S(m * kHidden), A(m);
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t l = 0; l < kHidden; ++l) {
      double z = p.b1[l];
      for (std::size_t j = 0; j < kFeatures; ++j) z += X[i * kFeatures + j] * p.W1[j * kHidden + l];
      Z1[i * kHidden + l] = z;
      S[i * kHidden + l] = sigma(z);
    }
  for (std::size_t i = 0; i < m; ++i) {
    double a = p.b2[0];
    for (std::size_t l = 0; l < kHidden; ++l) a += S[i * kHidden + l] * p.W2[l];
    A[i] = a;
  }
  double C = 0;
  Mat dA(m);
  for (std::size_t i = 0; i < m; ++i) {
    const double diff = y[i] - A[i];
    C += diff * diff / double(m);
    dA[i] = -2.0 * diff / double(m);  // MSE: ∂C/∂a = −2(y − a)/m
  }
  // Linear 2: dS = G·W2ᵀ, dW2 = Sᵀ·G, db2 = Σ_rows G.
  Mat dS(m * kHidden), dW2(kHidden, 0.0), db2(1, 0.0);
  for (std::size_t i = 0; i < m; ++i) {
    db2[0] += dA[i];
    for (std::size_t l = 0; l < kHidden; ++l) {
      dS[i * kHidden + l] = dA[i] * p.W2[l];
      dW2[l] += S[i * kHidden + l] * dA[i];
    }
  }
  // Sigmoid: dZ1 = σ(1 − σ)·dS.
  Mat dZ1(m * kHidden);
  for (std::size_t q = 0; q < m * kHidden; ++q) dZ1[q] = S[q] * (1 - S[q]) * dS[q];
  // Linear 1: dW1 = Xᵀ·dZ1, db1 = Σ_rows dZ1 (dX is not needed: X is data).
  Mat dW1(kFeatures * kHidden, 0.0), db1(kHidden, 0.0);
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t l = 0; l < kHidden; ++l) {
      db1[l] += dZ1[i * kHidden + l];
      for (std::size_t j = 0; j < kFeatures; ++j)
        dW1[j * kHidden + l] += X[i * kFeatures + j] * dZ1[i * kHidden + l];
    }
  for (auto [w, g] : {std::pair{&p.W1, &dW1}, {&p.b1, &db1}, {&p.W2, &dW2}, {&p.b2, &db2}})
    for (std::size_t q = 0; q < w->size(); ++q) (*w)[q] -= lr * (*g)[q];
  return C;
}

// Full-data MSE of the plain-loop network.
double reference_cost(const Params& p, const Data& d) {
  double C = 0;
  for (std::size_t i = 0; i < kSamples; ++i) {
    double a = p.b2[0];
    for (std::size_t l = 0; l < kHidden; ++l) {
      double z = p.b1[l];
      for (std::size_t j = 0; j < kFeatures; ++j)
        z += d.X[i * kFeatures + j] * p.W1[j * kHidden + l];
      a += sigma(z) * p.W2[l];
    }
    C += (d.y[i] - a) * (d.y[i] - a) / double(kSamples);
  }
  return C;
}

// The mean squared error of the best affine fit y ≈ X·β + β0 (least squares, normal equations
// by Gaussian elimination with partial pivoting): what a network without its sigmoid layer
// could at best reach.
double best_linear_cost(const Data& d) {
  constexpr std::size_t n = kFeatures + 1;
  double A[n][n + 1] = {};
  for (std::size_t i = 0; i < kSamples; ++i) {
    double row[n];
    for (std::size_t j = 0; j < kFeatures; ++j) row[j] = d.X[i * kFeatures + j];
    row[kFeatures] = 1;
    for (std::size_t r = 0; r < n; ++r) {
      for (std::size_t c = 0; c < n; ++c) A[r][c] += row[r] * row[c];
      A[r][n] += row[r] * d.y[i];
    }
  }
  for (std::size_t c = 0; c < n; ++c) {
    std::size_t piv = c;
    for (std::size_t r = c + 1; r < n; ++r)
      if (std::abs(A[r][c]) > std::abs(A[piv][c])) piv = r;
    for (std::size_t k = 0; k <= n; ++k) std::swap(A[c][k], A[piv][k]);
    for (std::size_t r = 0; r < n; ++r)
      if (r != c) {
        const double f = A[r][c] / A[c][c];
        for (std::size_t k = c; k <= n; ++k) A[r][k] -= f * A[c][k];
      }
  }
  double C = 0;
  for (std::size_t i = 0; i < kSamples; ++i) {
    double a = A[kFeatures][n] / A[kFeatures][kFeatures];
    for (std::size_t j = 0; j < kFeatures; ++j) a += d.X[i * kFeatures + j] * A[j][n] / A[j][j];
    C += (d.y[i] - a) * (d.y[i] - a) / double(kSamples);
  }
  return C;
}

double variance(const Mat& y) {
  double mean = 0, v = 0;
  for (double t : y) mean += t / double(y.size());
  for (double t : y) v += (t - mean) * (t - mean) / double(y.size());
  return v;
}

xt::xarray<double> to_xt(const Mat& v, std::vector<std::size_t> shape) {
  xt::xarray<double> a = xt::xarray<double>::from_shape(shape);
  std::copy(v.begin(), v.end(), a.begin());
  return a;
}

struct Engine {
  Parameter<double> W1, b1, W2, b2;
  explicit Engine(const Params& p)
      : W1(to_xt(p.W1, {kFeatures, kHidden}), "W1"),
        b1(to_xt(p.b1, {kHidden}), "b1"),
        W2(to_xt(p.W2, {kHidden, 1}), "W2"),
        b2(to_xt(p.b2, {1}), "b2") {}
  std::vector<Parameter<double>*> trainables() { return {&W1, &b1, &W2, &b2}; }
  // MiniFlow's graph: l1 = Linear(X, W1, b1), s1 = Sigmoid(l1), l2 = Linear(s1, W2, b2),
  // cost = MSE(y, l2).
  Var<double> cost(Tape<double>& tape, const double* X, const double* y, std::size_t m) {
    auto x = tape.constant_view(X, Shape{m, kFeatures});
    auto t = tape.constant_view(y, Shape{m, 1});
    auto s1 = sigmoid(linear(x, tape.param(W1), tape.param(b1)));
    auto l2 = linear(s1, tape.param(W2), tape.param(b2));
    return mse(l2, t);
  }
};

// Parameters of the engine against the plain-loop reference, elementwise relative.
::testing::AssertionResult same_params(Engine& e, const Params& p, double rtol) {
  const std::pair<Parameter<double>*, const Mat*> pairs[] = {
      {&e.W1, &p.W1}, {&e.b1, &p.b1}, {&e.W2, &p.W2}, {&e.b2, &p.b2}};
  for (auto [param, ref] : pairs)
    for (std::size_t q = 0; q < ref->size(); ++q) {
      const double g = param->data()[q], w = (*ref)[q];
      if (!(std::abs(g - w) <= rtol * (1 + std::abs(w))))
        return ::testing::AssertionFailure()
               << param->name() << "[" << q << "]: engine " << g << ", reference " << w;
    }
  return ::testing::AssertionSuccess();
}

enum class Update { kByHand, kNnSgd };

struct TrainResult {
  double first_epoch_loss, last_epoch_loss, final_cost, reference_final_cost;
  double worst_step_loss_mismatch;  // max over steps of |engine − reference| / (1 + reference)
};

// MiniFlow's training loop: each epoch, steps_per_epoch minibatches of kBatch rows drawn with
// replacement; forward and backward; update; the epoch's loss is the mean batch cost. The same
// batches also drive the plain-loop reference, whose parameters must stay with the engine's.
TrainResult train(Update update, std::size_t epochs, double lr, Engine& e, Params& ref,
                  const Data& d, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<std::size_t> pick(0, kSamples - 1);
  nn::SGD<double> sgd(e.trainables(), lr);
  Tape<double> tape;
  Mat Xb(kBatch * kFeatures), yb(kBatch);
  TrainResult r{0, 0, 0, 0, 0};
  for (std::size_t epoch = 0; epoch < epochs; ++epoch) {
    double loss = 0;
    for (std::size_t step = 0; step < kStepsPerEpoch; ++step) {
      for (std::size_t i = 0; i < kBatch; ++i) {
        const std::size_t k = pick(rng);
        std::copy_n(&d.X[k * kFeatures], kFeatures, &Xb[i * kFeatures]);
        yb[i] = d.y[k];
      }
      tape.clear();
      auto cost = e.cost(tape, Xb.data(), yb.data(), kBatch);
      tape.backward(cost);
      if (update == Update::kByHand) {
        for (Parameter<double>* t : e.trainables())  // t.value -= learning_rate * t.gradients[t]
          for (std::size_t q = 0; q < t->size(); ++q) t->data()[q] -= lr * t->grad_data()[q];
      } else {
        sgd.step();
      }
      for (Parameter<double>* t : e.trainables()) t->zero_grad();
      const double ref_cost = reference_step(ref, Xb, yb, kBatch, lr);
      r.worst_step_loss_mismatch =
          std::max(r.worst_step_loss_mismatch, std::abs(cost.item() - ref_cost) / (1 + ref_cost));
      loss += cost.item() / double(kStepsPerEpoch);
    }
    if (epoch == 0) r.first_epoch_loss = loss;
    r.last_epoch_loss = loss;
  }
  tape.clear();
  r.final_cost = e.cost(tape, d.X.data(), d.y.data(), kSamples).item();
  r.reference_final_cost = reference_cost(ref, d);
  return r;
}

constexpr std::size_t kEpochs = 300;
constexpr double kLr = 0.1;

TEST(Seed000, TrainingStepsMatchThePlainLoopNetwork) {
  // Gradient and update of every step, through 20 epochs, against the seed's formulas in loops.
  const Data d = make_data(7);
  Params ref = initial_params(8);
  Engine e(ref);
  const TrainResult r = train(Update::kByHand, 20, kLr, e, ref, d, 9);
  EXPECT_LT(r.worst_step_loss_mismatch, 1e-13);
  EXPECT_TRUE(same_params(e, ref, 1e-12));
}

// Thresholds, on this data: the targets' variance is 1.90 (the cost of predicting the mean),
// the best affine fit reaches 0.119 and the noise floor is 0.0025. 300 epochs of 18 batches at
// η = 0.1 bring the full-data cost to 0.0043 — trained to 0.02 is a sixth of what the best
// linear model can do, so it needs working gradients for both layers. Checked by breaking
// them: a flipped update sign diverges (NaN); leaving W1 at its initial values (a lost
// first-layer gradient) ends at 0.47; the plain-loop network trained without σ' in Sigmoid's
// backward ends at 0.71.
constexpr double kTrainedCost = 0.02;

TEST(Seed000, SgdTrainsTheNetworkBelowTheBestLinearFit) {
  const Data d = make_data(7);
  const double linear_cost = best_linear_cost(d);
  ASSERT_GT(variance(d.y), 1.5);
  ASSERT_GT(linear_cost, 5 * kTrainedCost) << "the data no longer separates a trained network";
  for (Update update : {Update::kByHand, Update::kNnSgd}) {
    SCOPED_TRACE(update == Update::kByHand ? "update by hand" : "nn::SGD");
    Params ref = initial_params(8);
    Engine e(ref);
    const double initial_cost = reference_cost(ref, d);
    const TrainResult r = train(update, kEpochs, kLr, e, ref, d, 9);
    const std::string facts = "initial cost " + std::to_string(initial_cost) + ", first epoch " +
                              std::to_string(r.first_epoch_loss) + ", last epoch " +
                              std::to_string(r.last_epoch_loss) + ", best affine fit " +
                              std::to_string(linear_cost);
    EXPECT_LT(r.final_cost, kTrainedCost) << facts;
    EXPECT_LT(r.last_epoch_loss, r.first_epoch_loss / 20) << facts;
    // And every step was the seed's: same batch costs and, at the end, the same parameters.
    EXPECT_LT(r.worst_step_loss_mismatch, 1e-13);
    EXPECT_TRUE(same_params(e, ref, 1e-10));
    EXPECT_NEAR(r.final_cost, r.reference_final_cost, 1e-12);
  }
}

}  // namespace
