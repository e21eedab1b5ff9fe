// wengert — learning-rate schedulers: constant, step decay, cosine with linear warmup, one-cycle.
//
// A scheduler is a function of the step count t = 0, 1, 2, … (one step per optimizer step) and
// its own count of steps taken. Call step(opt) once before each optimizer step: it sets the
// optimizer's learning rate for that step to lr_at(t) and advances t.
//
//   nn::CosineWarmup sched(/*base_lr=*/1e-3, /*warmup=*/500, /*total=*/epochs * batches);
//   for (…) { sched.step(opt); forward; backward; opt.step(); opt.zero_grad(); }
//
// Its state — the step count, with the hyperparameters to check a resumed run against — is
// saved and restored with state_dict / load_state_dict (checkpoint.hpp). Every lr_at is
// computed in double from t alone, so a resumed run sets bit-identical learning rates.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <wengert/nn/optim.hpp>
#include <wengert/nn/state.hpp>

namespace wengert::nn {

class LRScheduler {
 public:
  virtual ~LRScheduler() = default;
  /// The learning rate of step t (0-based).
  virtual double lr_at(std::uint64_t t) const = 0;
  /// The scheduler's name, for messages ("cosine_warmup").
  virtual const char* kind() const = 0;

  /// Sets opt's learning rate to lr_at(steps()) and advances. Allocates nothing.
  template <class T>
  void step(Optimizer<T>& opt) {
    opt.set_lr(T(lr_at(t_)));
    ++t_;
  }
  /// The learning rate the next step() will set.
  double current_lr() const { return lr_at(t_); }
  std::uint64_t steps() const { return t_; }

  /// Saves "<prefix>.step" and the hyperparameters ("<prefix>.<name>", float64).
  void state_dict(StateDict& sd, const std::string& prefix = "scheduler") const;
  /// Restores the step count. The saved hyperparameters must equal this scheduler's (a resumed
  /// run with another schedule would not continue the same run): ValueError naming the one
  /// that differs.
  void load_state_dict(const StateDict& sd, const std::string& prefix = "scheduler");

 protected:
  /// Hyperparameters by name, for state_dict's check.
  virtual std::vector<std::pair<const char*, double>> hyper() const = 0;
  std::uint64_t t_ = 0;
};

/// lr(t) = lr.
class ConstantLR final : public LRScheduler {
 public:
  explicit ConstantLR(double lr);
  double lr_at(std::uint64_t) const override { return lr_; }
  const char* kind() const override { return "constant"; }

 private:
  std::vector<std::pair<const char*, double>> hyper() const override { return {{"lr", lr_}}; }
  double lr_;
};

/// lr(t) = base_lr · gamma^⌊t / step_size⌋.
class StepLR final : public LRScheduler {
 public:
  StepLR(double base_lr, std::uint64_t step_size, double gamma = 0.1);
  double lr_at(std::uint64_t t) const override;
  const char* kind() const override { return "step"; }

 private:
  std::vector<std::pair<const char*, double>> hyper() const override {
    return {{"base_lr", base_lr_}, {"step_size", double(step_size_)}, {"gamma", gamma_}};
  }
  double base_lr_;
  std::uint64_t step_size_;
  double gamma_;
};

/// Linear warmup from base_lr / warmup to base_lr over the first `warmup` steps (step t sets
/// base_lr · (t + 1) / warmup), then cosine decay to min_lr at step `total`:
///   lr(t) = min_lr + (base_lr − min_lr) · ½(1 + cos(π · (t − warmup) / (total − warmup)))
/// and min_lr from step `total` on. warmup = 0 is pure cosine decay (wengert-train's schedule).
class CosineWarmup final : public LRScheduler {
 public:
  CosineWarmup(double base_lr, std::uint64_t warmup, std::uint64_t total, double min_lr = 0);
  double lr_at(std::uint64_t t) const override;
  const char* kind() const override { return "cosine_warmup"; }

 private:
  std::vector<std::pair<const char*, double>> hyper() const override {
    return {{"base_lr", base_lr_},
            {"warmup", double(warmup_)},
            {"total", double(total_)},
            {"min_lr", min_lr_}};
  }
  double base_lr_;
  std::uint64_t warmup_, total_;
  double min_lr_;
};

/// One-cycle (Smith & Topin 2019), PyTorch's OneCycleLR with cosine annealing and three_phase
/// off: from max_lr / div_factor at step 0 up to max_lr at step p = pct_start · total − 1, then
/// down to max_lr / (div_factor · final_div_factor) at step total − 1, each half a cosine
/// interpolation ½(1 + cos(π·x)) in x = the fraction of the half done; the last value from then
/// on. p must lie strictly between 0 and total − 1.
class OneCycle final : public LRScheduler {
 public:
  OneCycle(double max_lr, std::uint64_t total, double pct_start = 0.3, double div_factor = 25,
           double final_div_factor = 1e4);
  double lr_at(std::uint64_t t) const override;
  const char* kind() const override { return "one_cycle"; }

 private:
  std::vector<std::pair<const char*, double>> hyper() const override {
    return {{"max_lr", max_lr_},
            {"total", double(total_)},
            {"pct_start", pct_start_},
            {"div_factor", div_factor_},
            {"final_div_factor", final_div_factor_}};
  }
  double max_lr_;
  std::uint64_t total_;
  double pct_start_, div_factor_, final_div_factor_;
};

}  // namespace wengert::nn
