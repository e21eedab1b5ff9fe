// wengert::dist over MPI, run by ctest under scripts/mpirun.sh -np 2 (tests/CMakeLists.txt):
//   equivalence  5 SGD and 5 Adam steps of an MLP, in float32 and float64, on shards of each
//                global batch (equal shards: allreduce(); unequal: allreduce(rows)) equal
//                training on the whole batch in one process (rtol 1e-5 / 1e-12); rank 1 starts
//                from other initial values, so the broadcast from rank 0 is checked too; the
//                steps after the first allocate nothing (operator new: wengert's C++ code);
//   mismatch     ranks with different models (another shape; the same sizes under other names)
//                are refused by MpiGradients' constructor with a ValueError on every rank;
//   throw        rank 1 throws at step 3; main catches it and calls MpiSession::abort;
//   kill         rank 1 kills itself (SIGKILL) at step 3.
// Exit status 0 = the checks passed (for throw and kill, mpirun's non-zero status and message
// are what tests/dist/mpi_failure.cmake checks).
#include <wengert/dist/mpi.hpp>
#include <wengert/wengert.hpp>

#include <alloc_counter.hpp>

#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "classify_data.hpp"

using namespace wengert;

namespace {

template <class T>
using Data = wengert::testing::ClassifyData<T>;
constexpr std::size_t kIn = Data<float>::kIn, kClasses = Data<float>::kClasses;

template <class T>
std::unique_ptr<nn::Optimizer<T>> make_opt(nn::MLP<T>& m, bool adam) {
  if (!adam) return std::make_unique<nn::SGD<T>>(m.parameters(), nn::SGDOptions{0.5});
  return std::make_unique<nn::Adam<T>>(m.parameters(), nn::AdamOptions{0.05});
}

template <class T>
std::vector<T> flat(nn::MLP<T>& m) {
  std::vector<T> v;
  for (Parameter<T>* p : m.parameters()) v.insert(v.end(), p->data(), p->data() + p->size());
  return v;
}

// Mean loss of rows [first, first + n).
template <class T>
Var<T> loss_of(nn::MLP<T>& m, Tape<T>& tape, const Data<T>& d, std::size_t first, std::size_t n) {
  auto x = tape.constant_view(&d.x[first * kIn], Shape{n, kIn});
  return softmax_cross_entropy(m.forward(tape, x), &d.y[first], n);
}

int failures = 0;
void fail(const dist::MpiSession& mpi, const std::string& what) {
  std::fprintf(stderr, "rank %d: FAILED: %s\n", mpi.rank(), what.c_str());
  ++failures;
}

// `fault`: 0 none, 1 throw at step 3 on rank 1, 2 SIGKILL at step 3 on rank 1.
template <class T>
// `chunk`: if nonzero, MpiGradients sends its buffer in pieces of this many elements.
void equivalence(const dist::MpiSession& mpi, bool adam, std::size_t rows, bool weighted,
                 double rtol, int fault = 0, std::size_t chunk = 0) {
  constexpr std::size_t steps = 5;
  const Data<T> d(rows * steps, 11);
  // The reference: the whole batch in this process.
  nn::MLP<T> ref({kIn, 16, 16, kClasses}, nn::Activation::kTanh, 3);
  const std::vector<T> init = flat(ref);
  auto ref_opt = make_opt(ref, adam);
  std::vector<T> ref_losses;
  Tape<T> tape;
  for (std::size_t s = 0; s < steps; ++s) {
    tape.clear();
    Var<T> l = loss_of(ref, tape, d, s * rows, rows);
    tape.backward(l);
    ref_opt->step();
    ref_opt->zero_grad();
    ref_losses.push_back(l.item());
  }
  // Data parallel: rank r starts from seed 3 + r (rank 0's values are broadcast).
  nn::MLP<T> model({kIn, 16, 16, kClasses}, nn::Activation::kTanh, 3 + std::uint64_t(mpi.rank()));
  dist::MpiGradients<T> sync(model);
  if (chunk) {
    sync.set_chunk(chunk);
    sync.broadcast();  // again, in pieces
  }
  auto opt = make_opt(model, adam);
  const std::size_t P = std::size_t(mpi.size()), r = std::size_t(mpi.rank());
  const std::size_t b = dist::shard_begin(rows, P, r), e = dist::shard_begin(rows, P, r + 1);
  wengert::testing::AllocCounter allocs;
  for (std::size_t s = 0; s < steps; ++s) {
    if (s == 1) allocs.reset();  // the first step grows the tape
    if (fault && s == 3 && mpi.rank() == 1) {
      if (fault == 1) throw std::runtime_error("injected failure at step 3 on rank 1");
      std::raise(SIGKILL);
    }
    tape.clear();
    Var<T> l = loss_of(model, tape, d, s * rows + b, e - b);
    tape.backward(l);
    const T global = weighted ? sync.allreduce(T(e - b), l.item()) : sync.allreduce(T(1), l.item());
    opt->step();
    opt->zero_grad();
    if (std::abs(double(global) - double(ref_losses[s])) > rtol * std::abs(double(ref_losses[s])))
      fail(mpi, "step " + std::to_string(s) + " loss " + std::to_string(global) + " vs " +
                    std::to_string(ref_losses[s]));
  }
  if (allocs.count() != 0)
    fail(mpi, std::to_string(allocs.count()) + " allocations in steps 2 to 5");
  const std::vector<T> got = flat(model), want = flat(ref);
  double scale = 0, moved = 0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    scale += double(want[i]) * double(want[i]);
    moved = std::max(moved, std::abs(double(want[i]) - double(init[i])));
  }
  scale = std::sqrt(scale / double(want.size()));
  std::size_t bad = 0;
  for (std::size_t i = 0; i < got.size(); ++i)
    if (std::abs(double(got[i]) - double(want[i])) > rtol * (std::abs(double(want[i])) + scale))
      if (bad++ < 5)
        fail(mpi, std::string(adam ? "Adam " : "SGD ") + (sizeof(T) == 4 ? "float " : "double ") +
                      "element " + std::to_string(i) + ": " + std::to_string(got[i]) + " vs " +
                      std::to_string(want[i]));
  if (moved < 1e3 * rtol) fail(mpi, "training did not move the parameters");
  if (mpi.rank() == 0)
    std::printf("%s %s rows %zu %s%s: %s\n", adam ? "Adam" : "SGD",
                sizeof(T) == 4 ? "float" : "double", rows, weighted ? "weighted" : "mean",
                chunk ? (", in pieces of " + std::to_string(chunk)).c_str() : "",
                bad ? "DIFFERENT" : "equal");
}

// Two parameters of fixed shapes; the second one's name is the constructor's.
struct Named : nn::Module<float> {
  explicit Named(std::string n) : second(std::move(n)) {}
  Parameter<float> w{Shape{3, 2}}, b{Shape{2}};
  std::string second;
  void visit(nn::ModuleVisitor<float>& v) override {
    v.parameter("weight", w);
    v.parameter(second, b);
  }
};

// Batch norm's running statistics: buffers, broadcast from rank 0 with the parameters at
// construction and by broadcast_buffers(); allreduce() sends the parameters' gradients only.
struct BnNet : nn::Module<float> {
  nn::Conv2d<float> conv{1, 2, 3, 3, {1, 1, 1}, std::uint64_t{5}, nn::Init::kHeUniform, "conv"};
  nn::BatchNorm2d<float> bn{2, 0.25, 1e-5, "bn"};
  void visit(nn::ModuleVisitor<float>& v) override {
    v.module("conv", conv);
    v.module("bn", bn);
  }
};

void buffers(const dist::MpiSession& mpi) {
  const float r = float(mpi.rank());
  BnNet model;
  float* mean = model.bn.running_mean().data();
  float* var = model.bn.running_var().data();
  auto set = [&](float base) {
    for (int c = 0; c < 2; ++c) {
      mean[c] = base + float(c);
      var[c] = 2 * base + float(c) + 1;
    }
  };
  auto expect = [&](float base, const char* when) {
    for (int c = 0; c < 2; ++c)
      if (mean[c] != base + float(c) || var[c] != 2 * base + float(c) + 1)
        fail(mpi, std::string("buffers ") + when + ": channel " + std::to_string(c) + " has " +
                      std::to_string(mean[c]) + ", " + std::to_string(var[c]));
  };
  set(10 * r + 1);  // rank 0: 1, rank 1: 11
  dist::MpiGradients<float> sync(model);
  expect(1, "after construction");
  set(10 * r + 3);
  sync.broadcast_buffers();
  expect(3, "after broadcast_buffers");
  set(10 * r + 5);
  sync.broadcast();
  expect(5, "after broadcast");
  // The buffers are not part of the reduction: only the 2·1·3·3 + 2 + 2 + 2 parameters' values.
  if (sync.buffer_size() != 24 + 3) fail(mpi, "buffer_size " + std::to_string(sync.buffer_size()));
  for (Parameter<float>* p : model.parameters())
    for (std::size_t i = 0; i < p->size(); ++i) p->grad_data()[i] = r + 1;
  const float loss = sync.allreduce(1.0f, r + 1);  // the mean of 1, 2, … over the ranks
  const float want = (float(mpi.size()) + 1) / 2;
  if (loss != want) fail(mpi, "allreduce with buffers: loss " + std::to_string(loss));
  for (Parameter<float>* p : model.parameters())
    for (std::size_t i = 0; i < p->size(); ++i)
      if (p->grad_data()[i] != want) fail(mpi, "allreduce with buffers: a gradient is wrong");
  expect(5, "after allreduce");
  if (mpi.rank() == 0) std::printf("buffers: broadcast from rank 0, not reduced\n");
}

// Every rank must see the same refusal.
void expect_refused(const dist::MpiSession& mpi, nn::Module<float>& model, const char* what) {
  try {
    dist::MpiGradients<float> sync(model);
    fail(mpi, std::string("a mismatched model was accepted: ") + what);
  } catch (const ValueError& e) {
    if (!std::strstr(e.what(), "models differ"))
      fail(mpi, std::string("wrong message: ") + e.what());
    if (mpi.rank() == 0) std::printf("refused (%s): %s\n", what, e.what());
  }
}

}  // namespace

int main(int argc, char** argv) {
  dist::MpiSession mpi(&argc, &argv);
  const std::string mode = argc > 1 ? argv[1] : "";
  try {
    if (mpi.size() < 2) fail(mpi, "run under mpirun -np 2 (or more)");
    if (mode == "equivalence") {
      for (bool adam : {false, true}) {
        equivalence<float>(mpi, adam, 16, false, 1e-5);
        equivalence<double>(mpi, adam, 16, false, 1e-12);
        equivalence<float>(mpi, adam, 13, true, 1e-5);  // 7 + 6 rows with 2 ranks
        equivalence<double>(mpi, adam, 13, true, 1e-12);
        // The buffer (16·6 + 16 + 16·16 + 16 + 16·3 + 3 + 3 = 438 elements) in 63 pieces of 7.
        equivalence<float>(mpi, adam, 13, true, 1e-5, 0, 7);
        equivalence<double>(mpi, adam, 13, true, 1e-12, 0, 7);
      }
      buffers(mpi);
    } else if (mode == "mismatch") {
      // A different shape; the same parameter count and number of values in other shapes
      // ({2,3,2}: [2,3] [3] [3,2] [2] and {3,2,3}: [3,2] [2] [2,3] [3], 17 values each); the same
      // shapes under other names. Then equal models, accepted.
      nn::MLP<float> hidden({kIn, mpi.rank() == 1 ? 12u : 16u, kClasses}, nn::Activation::kTanh, 1);
      expect_refused(mpi, hidden, "a different hidden size");
      nn::MLP<float> shapes(
          mpi.rank() == 1 ? std::vector<std::size_t>{3, 2, 3} : std::vector<std::size_t>{2, 3, 2},
          nn::Activation::kTanh, 1);
      expect_refused(mpi, shapes, "the same sizes in other shapes");
      Named named(mpi.rank() == 1 ? "beta" : "bias");
      expect_refused(mpi, named, "the same shapes under other names");
      nn::MLP<float> equal({kIn, 5, kClasses}, nn::Activation::kTanh, 1);
      try {
        dist::MpiGradients<float> ok(equal);
        if (mpi.rank() == 0) std::printf("accepted: equal models\n");
      } catch (const Error& e) {
        fail(mpi, std::string("equal models refused: ") + e.what());
      }
    } else if (mode == "throw") {
      equivalence<float>(mpi, false, 16, false, 1e-5, 1);
      fail(mpi, "rank 1 did not throw");
    } else if (mode == "kill") {
      equivalence<float>(mpi, false, 16, false, 1e-5, 2);
      fail(mpi, "rank 1 was not killed");
    } else {
      fail(mpi, "unknown mode '" + mode + "' (equivalence, mismatch, throw, kill)");
    }
  } catch (const std::exception& e) {
    mpi.abort(e.what());
  }
  return failures ? 1 : 0;
}
