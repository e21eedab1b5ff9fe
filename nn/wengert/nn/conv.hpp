// wengert — image layers: Conv2d (the conv2d op with its weight and bias) and BatchNorm2d
// (batch_norm2d with γ, β and running statistics). Both are nn::Modules, as Linear is
// (linear.hpp): parameters by name, state dicts, copies and moves at any time.
//
// Conv2d's parameters are "weight" [O,C,kh,kw] and "bias" [O]; the weight is drawn as
// Linear's, with fan_in = C·kh·kw and fan_out = O·kh·kw, the bias starts at 0.
// BatchNorm2d's parameters are "weight" (γ, starts at 1) and "bias" (β, 0); its buffers
// "running_mean" (0) and "running_var" (1) are saved and loaded with them (module.hpp) but no
// optimizer sees them. In training mode (Module::train(), the default) forward() normalises by
// the batch's statistics and moves the running ones by `momentum`; in eval mode (eval()) it
// normalises by the running ones and changes nothing.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <random>
#include <string>

#include <wengert/nn/linear.hpp>
#include <wengert/nn/module.hpp>
#include <wengert/ops/batch_norm.hpp>
#include <wengert/ops/conv2d.hpp>
#include <wengert/tape.hpp>

namespace wengert::nn {

/// A 2-D convolution layer: x [N,C,H,W] → conv2d(x, W, b, options) [N,O,Ho,Wo].
template <class T>
class Conv2d : public Module<T> {
 public:
  /// `in` channels to `out` channels with a kh × kw kernel; W drawn by `scheme` from `rng`.
  Conv2d(std::size_t in, std::size_t out, std::size_t kh, std::size_t kw, Conv2dOptions options,
         std::mt19937_64& rng, Init scheme = Init::kHeUniform, const std::string& name = "conv")
      : W_(check_dims(in, out, kh, kw, name), name + ".weight"),
        b_(Shape{out}, name + ".bias"),
        options_(options) {
    initialize(W_, scheme, in * kh * kw, out * kh * kw, rng);
  }
  Conv2d(std::size_t in, std::size_t out, std::size_t kh, std::size_t kw, Conv2dOptions options,
         std::uint64_t seed, Init scheme = Init::kHeUniform, const std::string& name = "conv")
      : W_(check_dims(in, out, kh, kw, name), name + ".weight"),
        b_(Shape{out}, name + ".bias"),
        options_(options) {
    std::mt19937_64 rng(seed);
    initialize(W_, scheme, in * kh * kw, out * kh * kw, rng);
  }

  /// x [N, in, H, W] → [N, out, Ho, Wo], recorded on `tape` (x must be on it) as one "conv2d"
  /// op whose backward accumulates into W's and b's gradients.
  Var<T> forward(Tape<T>& tape, const Var<T>& x, SourceLoc loc = SourceLoc::current()) {
    // A bad x throws from conv2d itself; W and b are leaves recorded just before it.
    x.check_thread("conv2d");
    if (x.valid() && &x.tape() != &tape)
      throw UsageError("conv2d: argument x (node #" + std::to_string(x.index()) +
                       ") belongs to another tape than the one passed to forward()");
    return wengert::conv2d(x, tape.param(W_), tape.param(b_), options_, loc);
  }

  std::size_t in_channels() const { return W_.shape()[1]; }
  std::size_t out_channels() const { return W_.shape()[0]; }
  const Conv2dOptions& options() const { return options_; }
  Parameter<T>& weight() { return W_; }
  Parameter<T>& bias() { return b_; }

  void visit(ModuleVisitor<T>& v) override {
    v.parameter("weight", W_);
    v.parameter("bias", b_);
  }

 private:
  static Shape check_dims(std::size_t in, std::size_t out, std::size_t kh, std::size_t kw,
                          const std::string& name) {
    if (in == 0 || out == 0 || kh == 0 || kw == 0)
      throw ShapeError("Conv2d '" + name + "': channels and kernel sizes must be > 0, got in = " +
                       std::to_string(in) + ", out = " + std::to_string(out) + ", kernel " +
                       std::to_string(kh) + "x" + std::to_string(kw));
    return Shape{out, in, kh, kw};
  }

  Parameter<T> W_;
  Parameter<T> b_;
  Conv2dOptions options_;
};

/// Batch normalisation of `channels` channels of NCHW images, with running statistics.
template <class T>
class BatchNorm2d : public Module<T> {
 public:
  explicit BatchNorm2d(std::size_t channels, double momentum = 0.1, double eps = 1e-5,
                       const std::string& name = "bn")
      : gamma_(Shape{channels}, name + ".weight"),
        beta_(Shape{channels}, name + ".bias"),
        mean_(Shape{channels}, name + ".running_mean"),
        var_(Shape{channels}, name + ".running_var"),
        momentum_(momentum),
        eps_(eps) {
    std::fill(gamma_.data(), gamma_.data() + channels, T(1));
    std::fill(var_.data(), var_.data() + channels, T(1));
  }

  /// x [N, channels, H, W] → batch_norm2d(x, γ, β) in this module's mode (training(): batch
  /// statistics, running ones updated; else the running ones).
  Var<T> forward(Tape<T>& tape, const Var<T>& x, SourceLoc loc = SourceLoc::current()) {
    x.check_thread("batch_norm2d");
    if (x.valid() && &x.tape() != &tape)
      throw UsageError("batch_norm2d: argument x (node #" + std::to_string(x.index()) +
                       ") belongs to another tape than the one passed to forward()");
    BatchNormOptions<T> o;
    o.training = this->training();
    o.running_mean = mean_.data();
    o.running_var = var_.data();
    o.momentum = momentum_;
    o.eps = eps_;
    return wengert::batch_norm2d(x, tape.param(gamma_), tape.param(beta_), o, loc);
  }

  Parameter<T>& weight() { return gamma_; }
  Parameter<T>& bias() { return beta_; }
  Parameter<T>& running_mean() { return mean_; }
  Parameter<T>& running_var() { return var_; }

  void visit(ModuleVisitor<T>& v) override {
    v.parameter("weight", gamma_);
    v.parameter("bias", beta_);
    v.buffer("running_mean", mean_);
    v.buffer("running_var", var_);
  }

 private:
  Parameter<T> gamma_, beta_;
  Parameter<T> mean_, var_;  // buffers: saved, never trained
  double momentum_, eps_;
};

}  // namespace wengert::nn
