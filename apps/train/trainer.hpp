// wengert-train's core: a classifier (an MLP or a small CNN) trained with Adam on softmax
// cross-entropy, and the two small seed problems. Split from main.cpp so tests can run real
// training steps.
//
// One training step records the whole forward pass on a tape that is cleared and reused, runs
// one backward sweep into the Parameters' gradients, and takes one optimizer step: after the
// first step of a given batch shape it allocates nothing.
//
// Data parallelism (wengert::dist): with set_threads(N), N ≥ 2, a step splits its rows over N
// threads; with set_mpi(sync), under mpirun, every rank takes its shard of each (global) batch
// and the gradients are reduced over the ranks before the optimizer step. Either way the step
// follows the gradient of the mean loss over the whole batch. With one thread and no MPI, the
// step is the plain one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include <wengert/dist/threads.hpp>
#include <wengert/io/batches.hpp>
#include <wengert/wengert.hpp>
#if WENGERT_HAVE_MPI
#include <wengert/dist/mpi.hpp>
#endif

namespace wengert::train {

/// The model a weights file was saved from. An MLP: layer sizes {in, hidden…, out} from the
/// shapes of its "fc<k>.weight" tensors and the activation from "model.activation". The CNN
/// (cnn = true, when the file holds "conv1.weight"): sizes = {in, channels 1, channels 2,
/// hidden, out} from the shapes of conv1, conv2, fc1 and fc2. Throws ValueError naming the file
/// if it is not a wengert-train weights file.
struct Architecture {
  std::vector<std::size_t> sizes;
  nn::Activation activation = nn::Activation::kRelu;
  bool cnn = false;
};
Architecture read_architecture(const std::string& path);

/// wengert-train's CNN for square grey images of side S (S divisible by 4; Fashion-MNIST: 28):
///   conv1 3×3, c1 channels, padding 1 → relu → max_pool2d 2 →
///   conv2 3×3, c2 channels, padding 1 → relu → max_pool2d 2 → flatten →
///   fc1 linear (c2·(S/4)² → hidden) → relu → fc2 linear (hidden → classes).
/// Modules "conv1", "conv2", "fc1", "fc2"; input x [m, 1, S, S].
class CNN : public nn::Module<float> {
 public:
  /// sizes = {S², c1, c2, hidden, classes}.
  CNN(const std::vector<std::size_t>& sizes, std::uint64_t seed);
  Var<float> forward(Tape<float>& tape, const Var<float>& x, SourceLoc loc = SourceLoc::current());
  void visit(nn::ModuleVisitor<float>& v) override;
  std::size_t side() const { return side_; }
  std::size_t out_features() const { return fc2_.out_features(); }

 private:
  std::size_t side_;
  nn::Conv2d<float> conv1_, conv2_;
  nn::Linear<float> fc1_, fc2_;
};

/// The model a Classifier trains: an MLP or the CNN, both reading rows of in_features() pixels.
/// Its state dict is the model's own (an MLP's "fc0.weight", …; the CNN's "conv1.weight", …).
class Net : public nn::Module<float> {
 public:
  Net(const Architecture& arch, std::uint64_t seed);
  /// x of input_shape(m) → logits [m, out_features()].
  Var<float> forward(Tape<float>& tape, const Var<float>& x, SourceLoc loc = SourceLoc::current());
  /// How m rows of pixels are read: [m, in] for the MLP, [m, 1, S, S] images for the CNN.
  Shape input_shape(std::size_t m) const;
  std::size_t in_features() const { return arch_.sizes.front(); }
  std::size_t out_features() const { return arch_.sizes.back(); }
  const Architecture& architecture() const { return arch_; }
  void visit(nn::ModuleVisitor<float>& v) override;

 private:
  Architecture arch_;
  std::optional<nn::MLP<float>> mlp_;
  std::optional<CNN> cnn_;
};

/// A classifier: logits from a Net (an MLP or the CNN), softmax cross-entropy, Adam, and a
/// learning-rate schedule (cosine decay to 0 over `total_steps`, or constant when total_steps
/// is 0).
class Classifier {
 public:
  Classifier(const Architecture& arch, std::uint64_t seed, double lr,
             std::uint64_t total_steps = 0);
  /// An MLP of these sizes.
  Classifier(const std::vector<std::size_t>& sizes, nn::Activation activation, std::uint64_t seed,
             double lr, std::uint64_t total_steps = 0)
      : Classifier(Architecture{sizes, activation, false}, seed, lr, total_steps) {}

  /// One step on a batch of m rows (x [m, in], labels m class indices): the schedule sets the
  /// step's learning rate, then forward, backward and Adam. Returns the batch's mean loss and
  /// adds the number of correctly classified rows to *correct if not null. Under MPI, m is the
  /// global batch (every rank passes the same rows and trains its shard of them), and the loss
  /// and the count are the whole batch's.
  float train_step(const float* x, const std::int32_t* labels, std::size_t m,
                   std::size_t* correct = nullptr) {
    return step(x, labels, m, correct, nullptr);
  }
  /// The same on the batch `batches.advance()` moved to, whose rows are not gathered yet: each
  /// thread (and rank) gathers the rows it trains, in parallel, instead of one thread all.
  float train_step(io::Batcher<float>& batches, std::size_t* correct = nullptr) {
    return step(batches.features(), batches.labels(), batches.size(), correct, &batches);
  }

  /// Class predictions for m rows, computed under no-grad.
  void predict(const float* x, std::size_t m, std::int32_t* out);

  /// Accuracy over a dataset (batches of 1000 under no-grad). If `confusion` is given it is
  /// resized to classes×classes and filled: confusion[true·classes + predicted] counts.
  double evaluate(const io::Dataset<float>& data, std::vector<std::size_t>* confusion = nullptr);

  /// Splits every training step over `threads` threads (1: no threads, the plain step).
  void set_threads(std::size_t threads);
  std::size_t threads() const { return dp_ ? dp_->threads() : 1; }
#if WENGERT_HAVE_MPI
  /// Trains this rank's shard of every batch and reduces through `sync` (built on this
  /// classifier's model; it must outlive the training). Evaluation is sharded too.
  void set_mpi(dist::MpiGradients<float>* sync) { sync_ = sync; }
#endif

  /// Where the data-parallel steps' time went (dist::StepTimes): the threads' and MPI's figures,
  /// and the optimizer's step. All zero after plain (one thread, one rank) steps.
  dist::StepTimes step_times() const;

  Net& model() { return model_; }
  /// What a weights file holds: the model's state dict ("fc0.weight", … or "conv1.weight", …),
  /// the input standardisation ("input.norm" = {mean, std}, so --eval sees inputs exactly as
  /// training did) and "model.activation" (uint64: 0 = relu, 1 = tanh): with the layers'
  /// shapes, a weights file describes its model, and --eval rebuilds it from the file.
  nn::StateDict weights() const;
  /// Loads a weights file written from weights() into this (same-architecture) classifier.
  void load_weights(const std::string& path);

  /// A checkpoint: the model, Adam's state, the schedule, the data position, input.norm, and the
  /// caller's `extra` entries (its configuration and progress counters).
  void save_checkpoint(const std::string& path, const nn::TrainingPosition& at,
                       const nn::StateDict& extra) const;
  /// Restores a checkpoint written by save_checkpoint; returns the position and fills `extra`.
  nn::TrainingPosition load_checkpoint(const std::string& path, nn::StateDict& extra);

  /// Sets input.norm from the mean and standard deviation of the pixels of `data`'s first
  /// `limit` examples (0: all), the ones training sees.
  void fit_input_norm(const io::Dataset<float>& data, std::size_t limit = 0);
  /// Standardises `data` in place with input.norm: x ← (x − mean) / std.
  void normalize(io::Dataset<float>& data) const;
  nn::Adam<float>& optimizer() { return opt_; }
  const nn::LRScheduler* scheduler() const { return sched_.get(); }
  const Tape<float>& tape() const { return tape_; }

 private:
  Var<float> logits(const float* x, std::size_t m);
  // train_step; with `lazy`, x is lazy's features() and rows are gathered where they are used.
  float step(const float* x, const std::int32_t* labels, std::size_t m, std::size_t* correct,
             io::Batcher<float>* lazy);
  // This rank's rows [first, second) of a global batch of m rows (all of them without MPI).
  std::pair<std::size_t, std::size_t> my_rows(std::size_t m) const;
  // Sums n values over the ranks (no-op without MPI).
  void sum_over_ranks(double* v, std::size_t n);

  Net model_;
  nn::Activation activation_;
  nn::Adam<float> opt_;
  std::unique_ptr<nn::LRScheduler> sched_;
  float input_mean_ = 0, input_std_ = 1;
  Tape<float> tape_;
  std::unique_ptr<dist::ThreadDataParallel<float, Net>> dp_;
  std::vector<unsigned char> hits_;  // per row of a step: classified correctly
  double optimizer_seconds_ = 0;     // in data-parallel steps
  double compute_seconds_ = 0;       // forward and backward of data-parallel steps without dp_
#if WENGERT_HAVE_MPI
  dist::MpiGradients<float>* sync_ = nullptr;
#endif
};

/// Index of the largest of n values (the first on ties).
std::size_t argmax(const float* v, std::size_t n);

/// A full-batch binary classification run (seed 004's network, XOR): hidden tanh layers, a
/// sigmoid output and binary cross-entropy on probabilities, trained with plain gradient
/// descent. `progress(step, loss)` is called every `report_every` steps.
struct BinaryRun {
  std::vector<float> losses;  // one per report
  double final_loss = 0;
  double accuracy = 0;  // on the training points, threshold 0.5
};
template <class Report>
BinaryRun train_binary(const std::vector<std::size_t>& sizes, const std::vector<float>& x,
                       const std::vector<float>& y, std::size_t steps, double lr,
                       std::uint64_t seed, std::size_t report_every, Report&& progress);

/// Seed 004's problem: m points in 3-D, class 1 when they lie outside a sphere of radius ~1
/// (a boundary no single linear unit can draw). x is [m, 3], y is [m, 1].
void make_seed004_data(std::size_t m, std::uint64_t seed, std::vector<float>& x,
                       std::vector<float>& y);

// ---- template definition -------------------------------------------------------------------

template <class Report>
BinaryRun train_binary(const std::vector<std::size_t>& sizes, const std::vector<float>& x,
                       const std::vector<float>& y, std::size_t steps, double lr,
                       std::uint64_t seed, std::size_t report_every, Report&& progress) {
  const std::size_t in = sizes.front(), m = x.size() / in;
  nn::MLP<float> net(sizes, nn::Activation::kTanh, seed);
  nn::SGD<float> sgd(net.parameters(), float(lr));
  Tape<float> tape;
  BinaryRun run;
  // Hidden tanh layers from the MLP, then the sigmoid output seed 004 puts on its last layer.
  auto forward = [&] {
    tape.clear();
    return sigmoid(net.forward(tape, tape.constant_view(x.data(), Shape{m, in})));
  };
  for (std::size_t step = 1; step <= steps; ++step) {
    Var<float> p = forward();
    Var<float> loss = binary_cross_entropy(p, tape.constant_view(y.data(), Shape{m, 1}));
    tape.backward(loss);
    sgd.step();
    sgd.zero_grad();
    run.final_loss = loss.item();
    if (step % report_every == 0 || step == 1 || step == steps) {
      run.losses.push_back(loss.item());
      progress(step, double(loss.item()));
    }
  }
  NoGradGuard no_grad;
  Var<float> p = forward();
  std::size_t right = 0;
  for (std::size_t i = 0; i < m; ++i) right += (p.data()[i] >= 0.5f) == (y[i] >= 0.5f);
  run.accuracy = double(right) / double(m);
  return run;
}

}  // namespace wengert::train
