// Tests for nn/wengert/nn/module.hpp and the stable Parameter storage it relies on
// (engine/wengert/parameter.hpp): named nested parameters, train/eval reaching every child,
// state dicts by name with every mismatch listed, and optimizers that keep updating the right
// memory when modules move (a std::vector of layers that grows after Adam was built).
#include <wengert/nn/module.hpp>

#include <wengert/nn/linear.hpp>
#include <wengert/nn/optim.hpp>
#include <wengert/ops/losses.hpp>

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

using namespace wengert;

namespace {

// A module with children and a parameter of its own, nested twice below.
template <class T>
struct Block : nn::Module<T> {
  nn::Linear<T> fc1, fc2;
  Parameter<T> scale{Shape{1}, "scale"};
  Block(std::size_t in, std::size_t hidden, std::uint64_t seed)
      : fc1(in, hidden, seed, nn::Init::kXavierUniform, "fc1"),
        fc2(hidden, in, seed + 1, nn::Init::kXavierUniform, "fc2") {
    scale.data()[0] = T(1.5);
  }
  void visit(nn::ModuleVisitor<T>& v) override {
    v.module("fc1", fc1);
    v.module("fc2", fc2);
    v.parameter("scale", scale);
  }
};

template <class T>
struct Net : nn::Module<T> {
  Block<T> enc, dec;
  nn::Linear<T> head;
  Net(std::uint64_t seed) : enc(4, 6, seed), dec(4, 3, seed + 10), head(4, 2, seed + 20) {}
  void visit(nn::ModuleVisitor<T>& v) override {
    v.module("enc", enc);
    v.module("dec", dec);
    v.module("head", head);
  }
};

// A module that names two members alike, or uses a dot: both are usage errors.
struct BadNames : nn::Module<float> {
  Parameter<float> a{Shape{1}}, b{Shape{1}};
  bool dot = false;
  void visit(nn::ModuleVisitor<float>& v) override {
    v.parameter("a", a);
    v.parameter(dot ? "b.c" : "a", b);
  }
};

template <class T>
bool same_bits(const Parameter<T>& a, const Parameter<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

template <class T>
void expect_same_state(nn::Module<T>& a, nn::Module<T>& b) {
  auto pa = a.named_parameters(), pb = b.named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (std::size_t i = 0; i < pa.size(); ++i) {
    EXPECT_EQ(pa[i].first, pb[i].first);
    EXPECT_TRUE(same_bits(*pa[i].second, *pb[i].second)) << pa[i].first;
  }
}

}  // namespace

TEST(Module, NamedNestedParametersInVisitOrder) {
  Net<float> net(1);
  const auto named = net.named_parameters();
  const std::vector<std::string> want = {"enc.fc1.weight", "enc.fc1.bias",   "enc.fc2.weight",
                                         "enc.fc2.bias",   "enc.scale",      "dec.fc1.weight",
                                         "dec.fc1.bias",   "dec.fc2.weight", "dec.fc2.bias",
                                         "dec.scale",      "head.weight",    "head.bias"};
  ASSERT_EQ(named.size(), want.size());
  for (std::size_t i = 0; i < want.size(); ++i) EXPECT_EQ(named[i].first, want[i]);
  EXPECT_EQ(named[4].second, &net.enc.scale);
  EXPECT_EQ(named[5].second, &net.dec.fc1.weight());
  EXPECT_EQ(named[4].second->shape(), Shape{1});
  const auto ps = net.parameters();
  ASSERT_EQ(ps.size(), want.size());
  for (std::size_t i = 0; i < ps.size(); ++i) EXPECT_EQ(ps[i], named[i].second);
  const auto mods = net.named_modules();
  std::vector<std::string> names;
  for (auto& [n, m] : mods) names.push_back(n);
  EXPECT_EQ(names, (std::vector<std::string>{"enc", "enc.fc1", "enc.fc2", "dec", "dec.fc1",
                                             "dec.fc2", "head"}));
}

TEST(Module, DuplicateOrDottedNamesAreUsageErrors) {
  BadNames m;
  try {
    m.named_parameters();
    ADD_FAILURE() << "duplicate name accepted";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("two members are named 'a'"), std::string::npos)
        << e.what();
  }
  m.dot = true;
  EXPECT_THROW(m.named_parameters(), UsageError);
}

TEST(Module, TrainAndEvalReachEveryChild) {
  Net<float> net(1);
  EXPECT_TRUE(net.training());
  net.eval();
  EXPECT_FALSE(net.training());
  EXPECT_FALSE(net.enc.training());
  EXPECT_FALSE(net.enc.fc2.training());
  EXPECT_FALSE(net.head.training());
  net.enc.train();  // a subtree alone
  EXPECT_TRUE(net.enc.fc1.training());
  EXPECT_FALSE(net.dec.fc1.training());
  EXPECT_FALSE(net.training());
  net.train(true);
  for (auto& [name, m] : net.named_modules()) EXPECT_TRUE(m->training()) << name;
}

TEST(Module, StateDictRoundTripsThroughAFile) {
  Net<double> a(1), b(99);
  EXPECT_FALSE(same_bits(a.head.weight(), b.head.weight()));
  const nn::StateDict sd = a.state_dict();
  ASSERT_EQ(sd.size(), 12u);
  EXPECT_EQ(sd.entries()[0].name, "enc.fc1.weight");
  EXPECT_EQ(sd.entries()[0].dtype(), nn::DType::kFloat64);
  const auto dir = std::filesystem::temp_directory_path() /
                   ("wengert_test_module_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string f = (dir / "net.wgrt").string();
  nn::save_state(f, sd);
  b.load_state_dict(nn::load_state(f));
  expect_same_state<double>(a, b);
  // A copy of the state is a copy: changing the model afterwards does not change it.
  a.head.bias().data()[0] = 42;
  EXPECT_NE(sd.find("head.bias")->as<double>()[0], 42.0);
  std::filesystem::remove_all(dir);
}

TEST(Module, LoadStateDictListsEveryMismatchAndWritesNothing) {
  Net<float> a(1), b(2);
  nn::StateDict sd = a.state_dict();
  sd.erase("dec.scale");  // missing
  std::vector<float> big(12, 1.0f);
  sd.set("head.bias", Shape{12}, big.data());                            // wrong shape
  sd.set("enc.fc3.weight", Shape{2}, big.data());                        // unexpected
  sd.set("dec.fc1.bias", Shape{3}, std::vector<double>(3, 0.5).data());  // wrong dtype
  const Net<float> before = b;                                           // a deep copy
  try {
    b.load_state_dict(sd);
    ADD_FAILURE() << "a mismatched state was loaded";
  } catch (const ValueError& e) {
    const std::string m = e.what();
    for (const char* needle : {"missing: dec.scale", "unexpected: enc.fc3.weight",
                               "head.bias (float32 [12] in the state", "float32 [2] in the model",
                               "dec.fc1.bias (float64 [3]"})
      EXPECT_NE(m.find(needle), std::string::npos) << needle << " not in: " << m;
  }
  Net<float> after_copy = b;
  expect_same_state<float>(after_copy, const_cast<Net<float>&>(before));
  // Non-strict: unexpected entries are ignored, the rest must still fit.
  nn::StateDict ok = a.state_dict();
  ok.set("extra.thing", std::uint64_t{7});
  EXPECT_THROW(b.load_state_dict(ok), ValueError);
  b.load_state_dict(ok, /*strict=*/false);
  expect_same_state<float>(a, b);
}

TEST(Module, CopiesAreDeepAndOptimizersFollowMoves) {
  Net<float> a(1);
  Net<float> copy = a;
  copy.head.weight().data()[0] += 1.0f;
  EXPECT_NE(copy.head.weight().data()[0], a.head.weight().data()[0]);
  // SGD built from a, then a is moved into another object: SGD updates the new owner.
  nn::SGD<float> sgd(a.parameters(), 0.5f);
  Net<float> moved = std::move(a);
  for (Parameter<float>* p : moved.parameters())
    std::fill(p->grad_data(), p->grad_data() + p->size(), 1.0f);
  const float w0 = moved.head.weight().data()[0];
  sgd.step();
  EXPECT_EQ(moved.head.weight().data()[0], w0 - 0.5f);
  // The moved-from object holds nothing: using it is a clear error, not undefined behaviour,
  // and a tape it is recorded on is left as it was.
  EXPECT_FALSE(a.head.weight().valid());
  EXPECT_THROW(a.head.weight().data(), UsageError);
  EXPECT_THROW(a.parameters().front()->size(), UsageError);
  Tape<float> tape;
  Var<float> x = tape.variable(xt::xarray<float>{{1, 2, 3, 4}});
  const std::size_t before = tape.size();
  EXPECT_THROW(tape.param(a.head.weight()), UsageError);
  EXPECT_THROW(a.head.forward(tape, x), UsageError);
  EXPECT_EQ(tape.size(), before);
  EXPECT_THROW(nn::SGD<float>(a.parameters(), 0.1f), UsageError);
  // Assigning to a moved-from Parameter revives it.
  a.head.weight() = Parameter<float>(Shape{4, 2}, "w");
  EXPECT_EQ(a.head.weight().size(), 8u);
}

// The hostile user's case: Linear layers in a std::vector, Adam built, then the vector grows
// (every layer is moved to new memory). Training must go on exactly as if it had not grown.
TEST(Module, LayersInAGrowingVectorKeepTheirOptimizer) {
  auto train = [](bool grow) {
    std::vector<nn::Linear<float>> layers;
    std::mt19937_64 rng(7);
    layers.emplace_back(3, 5, rng, nn::Init::kXavierUniform, "l0");
    layers.emplace_back(5, 2, rng, nn::Init::kXavierUniform, "l1");
    std::vector<Parameter<float>*> ps;
    for (auto& l : layers)
      for (Parameter<float>* p : l.parameters()) ps.push_back(p);
    nn::Adam<float> adam(ps, nn::AdamOptions{0.05});
    const float* before = layers[0].weight().data();
    if (grow) {
      for (int k = 0; k < 20; ++k) layers.emplace_back(2, 2, rng);  // reallocates, moves l0, l1
      EXPECT_EQ(layers[0].weight().data(), before);                 // the storage did not move
    }
    const std::vector<float> x = {0.5f, -1.0f, 2.0f, 1.0f, 0.0f, -0.5f};
    const std::int64_t y[] = {1, 0};
    Tape<float> tape;
    for (int step = 0; step < 10; ++step) {
      tape.clear();
      Var<float> h = tanh(layers[0].forward(tape, tape.constant_view(x.data(), Shape{2, 3})));
      Var<float> loss = softmax_cross_entropy(layers[1].forward(tape, h), y, 2);
      adam.zero_grad();
      tape.backward(loss);
      adam.step();
    }
    std::vector<float> out;
    for (int k = 0; k < 2; ++k)
      for (Parameter<float>* p : layers[k].parameters())
        out.insert(out.end(), p->data(), p->data() + p->size());
    return out;
  };
  const std::vector<float> still = train(false), grown = train(true);
  ASSERT_EQ(still.size(), grown.size());
  EXPECT_EQ(std::memcmp(still.data(), grown.data(), still.size() * sizeof(float)), 0);
  // And the training did move the weights (the comparison is not between two untouched sets).
  std::mt19937_64 rng(7);
  nn::Linear<float> fresh(3, 5, rng, nn::Init::kXavierUniform, "l0");
  EXPECT_NE(std::memcmp(fresh.weight().data(), still.data(), 15 * sizeof(float)), 0);
}

// Erasing from the vector moves the later layers down by move-assignment: the optimizer follows
// each layer's values to its new slot, and the erased layer's block is orphaned.
TEST(Module, ErasingALayerOrphansOnlyItsParameters) {
  std::vector<nn::Linear<float>> layers;
  std::mt19937_64 rng(3);
  for (int k = 0; k < 3; ++k)
    layers.emplace_back(2, 2, rng, nn::Init::kXavierUniform, "l" + std::to_string(k));
  nn::SGD<float> keep(layers[2].parameters(), 1.0f);  // the last layer only
  nn::SGD<float> gone(layers[0].parameters(), 1.0f);  // the first layer only
  layers.erase(layers.begin());
  ASSERT_EQ(layers[1].weight().name(), "l2.weight");
  std::fill(layers[1].weight().grad_data(), layers[1].weight().grad_data() + 4, 1.0f);
  const float w = layers[1].weight().data()[0];
  keep.step();
  EXPECT_EQ(layers[1].weight().data()[0], w - 1.0f);
  try {
    gone.step();
    ADD_FAILURE() << "an optimizer of an erased layer stepped silently";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("'l0.weight') no longer belongs to any Parameter"),
              std::string::npos)
        << e.what();
  }
}

// Replacing the model, or destroying it, orphans the optimizer's parameters: its next step is
// a UsageError, not silent training of memory nobody reads (and not a use-after-free: the
// optimizer keeps the blocks alive, which ASan checks in the sanitizer stage).
TEST(Module, AnOptimizerOfAReplacedOrDestroyedModelSaysSo) {
  nn::MLP<float> mlp({4, 3, 2}, nn::Activation::kRelu, 1);
  nn::Adam<float> adam(mlp.parameters());
  adam.step();
  mlp = nn::MLP<float>({4, 3, 2}, nn::Activation::kRelu, 2);
  EXPECT_THROW(adam.step(), UsageError);
  auto model = std::make_unique<Net<float>>(3);
  nn::Adam<float> other(model->parameters());
  const auto& storage = other.parameter(0);
  model.reset();
  other.zero_grad();  // harmless
  EXPECT_THROW(other.step(), UsageError);
  EXPECT_EQ(storage.value.size(), 4u * 6u);
}

TEST(Module, CopyAssigningAParameterKeepsItsOptimizerView) {
  nn::Linear<float> l(2, 2, 1);
  nn::SGD<float> sgd(l.parameters(), 1.0f);
  // Copy-assignment, same shape: the optimizer updates the new values.
  const Parameter<float> values(xt::xarray<float>{{1, 2}, {3, 4}}, "w");
  l.weight() = values;
  std::fill(l.weight().grad_data(), l.weight().grad_data() + 4, 1.0f);
  sgd.step();
  EXPECT_EQ(l.weight().data()[3], 3.0f);
  EXPECT_EQ(values.data()[3], 4.0f);  // the source is a separate block
  // Another size: the optimizer's state no longer fits, a UsageError at the next step.
  const Parameter<float> bigger(Shape{3, 2}, "w");
  l.weight() = bigger;
  EXPECT_THROW(sgd.step(), UsageError);
}
