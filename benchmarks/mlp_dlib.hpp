// MLP training-step benchmark: the dlib contender (compiled only when WENGERT_BENCH_DLIB is on
// and find_package(dlib) succeeds; WENGERT_BENCH_HAVE_DLIB is then defined for bench_mlp.cpp).
//
// The same step as the floor (mlp_floor.hpp), written the way a dlib user would: a net_type
// loss_multiclass_log<fc<htan<fc<htan<fc<input>>>>>> (S0: loss_binary_log on ±1 labels), one
// sgd(0, 0) solver per layer (no weight decay, no momentum), and per step
// compute_parameter_gradients then update_parameters with the same learning rate — the
// net driven directly, without dnn_trainer (its thread, its loss averaging and its learning-rate
// schedule are not part of a step). fc stores W [in, out] and the bias row together as one
// [in + 1, out] tensor; the floor's W0 and b0 are copied there.
//
// No dlib header is included here: Debian's libdlib is built for baseline x86-64 and dlib's
// SIMD types change layout with -mavx, so only mlp_dlib.cpp includes dlib, compiled without
// -march=native (benchmarks/CMakeLists.txt).
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "mlp_floor.hpp"

namespace wengert_bench {

/// "dlib 19.24.0 (Debian build, baseline x86-64; BLAS: ...)".
std::string dlib_info();

class DlibMLP {
 public:
  /// Throws std::invalid_argument unless the workload has two hidden layers (S0–S3 do): the
  /// layer stack is a compile-time type in dlib.
  explicit DlibMLP(const Problem& p);
  ~DlibMLP();
  DlibMLP(const DlibMLP&) = delete;
  DlibMLP& operator=(const DlibMLP&) = delete;

  /// One step; returns the loss of the forward pass (before the update).
  float step();
  /// Layer l's parameters and the gradients of the last step, as the floor lays them out.
  std::vector<float> weight(std::size_t l) const;  // [in, out]
  std::vector<float> bias(std::size_t l) const;    // [out]
  std::vector<float> grad_weight(std::size_t l) const;
  std::vector<float> grad_bias(std::size_t l) const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace wengert_bench
