// Learning-rate schedulers (wengert/nn/schedule.hpp).
#include <wengert/nn/schedule.hpp>

#include <cmath>

namespace wengert::nn {

namespace {

constexpr double kPi = 3.141592653589793;

void check_rate(const char* who, const char* what, double x, bool positive) {
  if (!std::isfinite(x) || x < 0 || (positive && x == 0))
    throw ValueError(std::string(who) + ": " + what + " = " + std::to_string(x) + " must be " +
                     (positive ? "finite and > 0" : "finite and >= 0"));
}

// a at p = 0 to b at p = 1 along half a cosine.
double cosine_between(double a, double b, double p) {
  return b + (a - b) * 0.5 * (1.0 + std::cos(kPi * p));
}

}  // namespace

void LRScheduler::state_dict(StateDict& sd, const std::string& prefix) const {
  sd.set(prefix + ".step", std::uint64_t{t_});
  for (auto& [name, value] : hyper()) sd.set(prefix + "." + name, value);
}

void LRScheduler::load_state_dict(const StateDict& sd, const std::string& prefix) {
  const std::string who = std::string(kind()) + " scheduler load_state_dict";
  const std::uint64_t t = sd.get_u64(prefix + ".step", who);
  for (auto& [name, value] : hyper()) {
    const double saved = sd.get_f64(prefix + "." + name, who);
    if (saved != value)
      throw ValueError(who + ": the state was saved with " + name + " = " + std::to_string(saved) +
                       " but this scheduler has " + name + " = " + std::to_string(value));
  }
  t_ = t;
}

ConstantLR::ConstantLR(double lr) : lr_(lr) { check_rate("ConstantLR", "lr", lr, false); }

StepLR::StepLR(double base_lr, std::uint64_t step_size, double gamma)
    : base_lr_(base_lr), step_size_(step_size), gamma_(gamma) {
  check_rate("StepLR", "base_lr", base_lr, false);
  check_rate("StepLR", "gamma", gamma, false);
  if (step_size == 0) throw ValueError("StepLR: step_size must be > 0");
}

double StepLR::lr_at(std::uint64_t t) const {
  return base_lr_ * std::pow(gamma_, double(t / step_size_));
}

CosineWarmup::CosineWarmup(double base_lr, std::uint64_t warmup, std::uint64_t total, double min_lr)
    : base_lr_(base_lr), warmup_(warmup), total_(total), min_lr_(min_lr) {
  check_rate("CosineWarmup", "base_lr", base_lr, false);
  check_rate("CosineWarmup", "min_lr", min_lr, false);
  if (min_lr > base_lr)
    throw ValueError("CosineWarmup: min_lr = " + std::to_string(min_lr) +
                     " exceeds base_lr = " + std::to_string(base_lr));
  if (total == 0 || warmup > total)
    throw ValueError("CosineWarmup: needs 0 <= warmup <= total and total > 0, got warmup = " +
                     std::to_string(warmup) + ", total = " + std::to_string(total));
}

double CosineWarmup::lr_at(std::uint64_t t) const {
  if (t < warmup_) return base_lr_ * double(t + 1) / double(warmup_);
  if (t >= total_) return min_lr_;
  // With warmup = 0 and min_lr = 0 this is base · ½(1 + cos(π·t / T)), evaluated in the same
  // order as wengert-train's original cosine decay (π·t first), so the rates are the same bits.
  const double angle = kPi * double(t - warmup_) / double(total_ - warmup_);
  return min_lr_ + (base_lr_ - min_lr_) * 0.5 * (1 + std::cos(angle));
}

OneCycle::OneCycle(double max_lr, std::uint64_t total, double pct_start, double div_factor,
                   double final_div_factor)
    : max_lr_(max_lr),
      total_(total),
      pct_start_(pct_start),
      div_factor_(div_factor),
      final_div_factor_(final_div_factor) {
  check_rate("OneCycle", "max_lr", max_lr, false);
  if (total < 2) throw ValueError("OneCycle: total must be >= 2, got " + std::to_string(total));
  if (!(pct_start > 0 && pct_start < 1))
    throw ValueError("OneCycle: pct_start = " + std::to_string(pct_start) + " must be in (0, 1)");
  const double peak = pct_start * double(total) - 1;
  if (!(peak > 0 && peak < double(total - 1)))
    throw ValueError("OneCycle: pct_start · total − 1 = " + std::to_string(peak) +
                     " (the step of the peak) must lie strictly between 0 and total − 1 = " +
                     std::to_string(total - 1));
  check_rate("OneCycle", "div_factor", div_factor, true);
  check_rate("OneCycle", "final_div_factor", final_div_factor, true);
}

double OneCycle::lr_at(std::uint64_t t) const {
  const double initial = max_lr_ / div_factor_;
  const double final_lr = initial / final_div_factor_;
  const double last = double(total_ - 1);
  const double peak = pct_start_ * double(total_) - 1;  // PyTorch's end of the first phase
  const double s = std::min(double(t), last);
  if (s <= peak) return cosine_between(initial, max_lr_, s / peak);
  return cosine_between(max_lr_, final_lr, (s - peak) / (last - peak));
}

}  // namespace wengert::nn
