// wengert — a thin model layer: Linear (x·W + b) and a multi-layer perceptron.
//
// Both are nn::Modules (module.hpp): their parameters are named by path ("fc0.weight"), they
// have state_dict() / load_state_dict(), and they can be moved or copied at any time — an
// optimizer built from their parameters() follows the move (parameter.hpp, "Stable storage").
//
// Initialisation is explicit and reproducible: every layer is drawn from a std::mt19937_64
// with a caller-given seed, through our own uniform and normal transforms (the std::
// distributions are not the same across standard libraries). Schemes, with fan_in = in and
// fan_out = out of W [in, out]; the bias starts at 0:
//   Xavier/Glorot uniform  U(−a, a),  a = √(6 / (fan_in + fan_out))   — for tanh / sigmoid
//   Xavier/Glorot normal   N(0, σ²),  σ = √(2 / (fan_in + fan_out))
//   He/Kaiming uniform     U(−a, a),  a = √(6 / fan_in)                — for ReLU
//   He/Kaiming normal      N(0, σ²),  σ = √(2 / fan_in)
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <wengert/nn/module.hpp>
#include <wengert/ops/activations.hpp>
#include <wengert/ops/bias_add.hpp>
#include <wengert/ops/linear.hpp>
#include <wengert/tape.hpp>

namespace wengert::nn {

enum class Init { kXavierUniform, kXavierNormal, kHeUniform, kHeNormal };

/// Fills `p` by `scheme` for a layer with the given fans, drawing from `rng`.
template <class T>
void initialize(Parameter<T>& p, Init scheme, std::size_t fan_in, std::size_t fan_out,
                std::mt19937_64& rng) {
  // A double in [0, 1) from the top 53 bits (fully determined by the engine's output).
  auto uniform01 = [&rng] { return double(rng() >> 11) * 0x1.0p-53; };
  const double fan_sum = double(fan_in + fan_out);
  T* w = p.data();
  const std::size_t n = p.size();
  switch (scheme) {
    case Init::kXavierUniform:
    case Init::kHeUniform: {
      const double a = std::sqrt(6.0 / (scheme == Init::kHeUniform ? double(fan_in) : fan_sum));
      for (std::size_t i = 0; i < n; ++i) w[i] = T(a * (2.0 * uniform01() - 1.0));
      break;
    }
    case Init::kXavierNormal:
    case Init::kHeNormal: {
      const double sigma = std::sqrt(2.0 / (scheme == Init::kHeNormal ? double(fan_in) : fan_sum));
      const double two_pi = 6.283185307179586;
      for (std::size_t i = 0; i < n; i += 2) {  // Box–Muller: two normals per pair of draws
        const double r = std::sqrt(-2.0 * std::log(1.0 - uniform01()));  // 1 − u ∈ (0, 1]
        const double t = two_pi * uniform01();
        w[i] = T(sigma * r * std::cos(t));
        if (i + 1 < n) w[i + 1] = T(sigma * r * std::sin(t));
      }
      break;
    }
  }
}

/// A fully connected layer: y = x·W + b with x [batch, in], W [in, out], b [out].
template <class T>
class Linear : public Module<T> {
 public:
  /// Initialises W by `scheme` from std::mt19937_64(seed); b = 0. As a module its parameters
  /// are "weight" (W) and "bias" (b); the Parameters themselves are named "<name>.weight" and
  /// "<name>.bias" (what error messages show).
  Linear(std::size_t in, std::size_t out, std::uint64_t seed, Init scheme = Init::kXavierUniform,
         const std::string& name = "linear")
      : Linear(Uninit{}, in, out, name) {
    std::mt19937_64 rng(seed);
    initialize(W_, scheme, in, out, rng);
  }
  /// As above, drawing from a caller's generator (layers of one model share one stream).
  Linear(std::size_t in, std::size_t out, std::mt19937_64& rng, Init scheme = Init::kXavierUniform,
         const std::string& name = "linear")
      : Linear(Uninit{}, in, out, name) {
    initialize(W_, scheme, in, out, rng);
  }

  std::size_t in_features() const { return W_.shape()[0]; }
  std::size_t out_features() const { return W_.shape()[1]; }

  /// x [batch, in] → x·W + b [batch, out], recorded on `tape` (x must be on it) as one
  /// "linear" op whose backward accumulates into W's and b's gradients. `loc` is the caller's
  /// line, reported by anomaly mode.
  Var<T> forward(Tape<T>& tape, const Var<T>& x, SourceLoc loc = SourceLoc::current()) {
    check_input(tape, x);  // before W and b are recorded: a bad x leaves the tape as it was
    return wengert::linear(x, tape.param(W_), tape.param(b_), loc);
  }

  Parameter<T>& weight() { return W_; }
  const Parameter<T>& weight() const { return W_; }
  Parameter<T>& bias() { return b_; }
  const Parameter<T>& bias() const { return b_; }

  void visit(ModuleVisitor<T>& v) override {
    v.parameter("weight", W_);
    v.parameter("bias", b_);
  }

 private:
  struct Uninit {};
  Linear(Uninit, std::size_t in, std::size_t out, const std::string& name)
      : W_(check_dims(in, out, name), name + ".weight"), b_(Shape{out}, name + ".bias") {}

  // x must be a live handle on `tape` (this thread's) of shape [m, in]; messages as linear's.
  void check_input(Tape<T>& tape, const Var<T>& x) const {
    x.check_thread("linear");
    if (!x.valid()) throw UsageError("linear: argument x is " + x.invalid_reason());
    if (&x.tape() != &tape)
      throw UsageError("linear: argument x (node #" + std::to_string(x.index()) +
                       ") belongs to another tape than the one passed to forward()");
    const Shape& sx = x.shape();
    if (sx.rank() != 2 || sx[1] != in_features())
      throw ShapeError("linear: x is " + sx.str() + " but W ('" + W_.name() + "') is " +
                       W_.shape().str() + ": x must be [m," + std::to_string(in_features()) +
                       "], one row of " + std::to_string(in_features()) + " features per example");
  }

  static Shape check_dims(std::size_t in, std::size_t out, const std::string& name) {
    if (in == 0 || out == 0)
      throw ShapeError("Linear '" + name + "': in and out must be > 0, got in = " +
                       std::to_string(in) + ", out = " + std::to_string(out));
    return Shape{in, out};
  }

  Parameter<T> W_;
  Parameter<T> b_;
};

/// Hidden-layer activation of an MLP.
enum class Activation { kTanh, kRelu };

/// The scheme that suits an activation: Xavier uniform for tanh, He uniform for ReLU.
inline Init default_init(Activation a) {
  return a == Activation::kRelu ? Init::kHeUniform : Init::kXavierUniform;
}

/// A multi-layer perceptron: Linear → activation → … → Linear. The last layer has no
/// activation (it returns logits, e.g. for softmax_cross_entropy). sizes = {in, hidden…, out};
/// layer k is the child module "fc<k>" (parameters "fc0.weight", "fc0.bias", "fc1.weight", …).
template <class T>
class MLP : public Module<T> {
 public:
  MLP(const std::vector<std::size_t>& sizes, Activation activation, std::uint64_t seed)
      : MLP(sizes, activation, seed, default_init(activation)) {}
  MLP(const std::vector<std::size_t>& sizes, Activation activation, std::uint64_t seed, Init scheme)
      : activation_(activation) {
    if (sizes.size() < 2)
      throw ShapeError("MLP: sizes needs at least {in, out}, got " + std::to_string(sizes.size()) +
                       " entries");
    std::mt19937_64 rng(seed);
    layers_.reserve(sizes.size() - 1);
    for (std::size_t k = 0; k + 1 < sizes.size(); ++k)
      layers_.emplace_back(sizes[k], sizes[k + 1], rng, scheme, "fc" + std::to_string(k));
  }

  /// x [batch, in] → logits [batch, out]: each layer, then the activation after every layer
  /// but the last.
  Var<T> forward(Tape<T>& tape, const Var<T>& x, SourceLoc loc = SourceLoc::current()) {
    Var<T> h = x;
    for (std::size_t k = 0; k < layers_.size(); ++k) {
      h = layers_[k].forward(tape, h, loc);
      if (k + 1 < layers_.size())
        h = activation_ == Activation::kRelu ? wengert::relu(h, loc) : wengert::tanh(h, loc);
    }
    return h;
  }

  void visit(ModuleVisitor<T>& v) override {
    for (std::size_t k = 0; k < layers_.size(); ++k) v.module("fc" + std::to_string(k), layers_[k]);
  }

  std::vector<Linear<T>>& layers() { return layers_; }
  const std::vector<Linear<T>>& layers() const { return layers_; }
  Activation activation() const { return activation_; }
  std::size_t in_features() const { return layers_.front().in_features(); }
  std::size_t out_features() const { return layers_.back().out_features(); }

 private:
  std::vector<Linear<T>> layers_;
  Activation activation_;
};

}  // namespace wengert::nn
