// wengert — thread-local modes: gradient recording and anomaly detection.
//
// Both are per thread (thread_local), so threads recording on their own tapes never see each
// other's settings. There is no other global mutable state in wengert.
#pragma once

namespace wengert {

namespace detail {
inline bool& grad_enabled_flag() {
  thread_local bool enabled = true;
  return enabled;
}
inline bool& anomaly_flag() {
  thread_local bool enabled = false;
  return enabled;
}
}  // namespace detail

/// Whether ops record backward entries on this thread (true unless a NoGradGuard is alive).
inline bool grad_enabled() { return detail::grad_enabled_flag(); }

/// RAII: while alive, ops on this thread compute values but record no backward; their outputs
/// need no gradient (like constants).
class NoGradGuard {
 public:
  NoGradGuard() : prev_(detail::grad_enabled_flag()) { detail::grad_enabled_flag() = false; }
  ~NoGradGuard() { detail::grad_enabled_flag() = prev_; }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

/// Whether anomaly detection is on for this thread: each op's output (forward) and each
/// adjoint it produces (backward) is checked for NaN/Inf, and a ValueError names the op and
/// the file:line where it was recorded. Off by default; when off it costs one branch per op.
inline bool anomaly_mode() { return detail::anomaly_flag(); }
inline void set_anomaly_mode(bool on) { detail::anomaly_flag() = on; }

/// RAII form of set_anomaly_mode.
class AnomalyModeGuard {
 public:
  explicit AnomalyModeGuard(bool on = true) : prev_(detail::anomaly_flag()) {
    detail::anomaly_flag() = on;
  }
  ~AnomalyModeGuard() { detail::anomaly_flag() = prev_; }
  AnomalyModeGuard(const AnomalyModeGuard&) = delete;
  AnomalyModeGuard& operator=(const AnomalyModeGuard&) = delete;

 private:
  bool prev_;
};

/// Where an op was recorded: filled in at the call site by default arguments.
struct SourceLoc {
  const char* file = "";
  unsigned line = 0;
  static constexpr SourceLoc current(const char* f = __builtin_FILE(),
                                     unsigned l = __builtin_LINE()) {
    return SourceLoc{f, l};
  }
};

}  // namespace wengert
