#include "trainer.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>

namespace wengert::train {

namespace {

// The CNN's image side S from sizes = {S², c1, c2, hidden, classes}; S must be a multiple of 4
// (two 2×2 poolings).
std::size_t cnn_side(const std::vector<std::size_t>& sizes) {
  if (sizes.size() != 5)
    throw ShapeError("CNN: sizes must be {pixels, channels 1, channels 2, hidden, classes}, got " +
                     std::to_string(sizes.size()) + " numbers");
  const auto side = std::size_t(std::lround(std::sqrt(double(sizes[0]))));
  if (side * side != sizes[0] || side == 0 || side % 4 != 0)
    throw ShapeError("CNN: the images must be square with a side divisible by 4, got " +
                     std::to_string(sizes[0]) + " pixels");
  return side;
}

// Layer k's seed: one stream per layer from the model's seed (splitmix64).
std::uint64_t layer_seed(std::uint64_t seed, std::uint64_t k) {
  std::uint64_t z = seed + 0x9e3779b97f4a7c15ull * (k + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

}  // namespace

CNN::CNN(const std::vector<std::size_t>& sizes, std::uint64_t seed)
    : side_(cnn_side(sizes)),
      conv1_(1, sizes[1], 3, 3, {1, 1, 1}, layer_seed(seed, 0), nn::Init::kHeUniform, "conv1"),
      conv2_(sizes[1], sizes[2], 3, 3, {1, 1, 1}, layer_seed(seed, 1), nn::Init::kHeUniform,
             "conv2"),
      fc1_(sizes[2] * (side_ / 4) * (side_ / 4), sizes[3], layer_seed(seed, 2),
           nn::Init::kHeUniform, "fc1"),
      fc2_(sizes[3], sizes[4], layer_seed(seed, 3), nn::Init::kXavierUniform, "fc2") {}

Var<float> CNN::forward(Tape<float>& tape, const Var<float>& x, SourceLoc loc) {
  Var<float> h = max_pool2d(relu(conv1_.forward(tape, x, loc), loc), {2}, loc);  // [m,c1,S/2,S/2]
  h = max_pool2d(relu(conv2_.forward(tape, h, loc), loc), {2}, loc);             // [m,c2,S/4,S/4]
  h = relu(fc1_.forward(tape, flatten(h, 1, -1, loc), loc), loc);                // [m,hidden]
  return fc2_.forward(tape, h, loc);                                             // [m,classes]
}

void CNN::visit(nn::ModuleVisitor<float>& v) {
  v.module("conv1", conv1_);
  v.module("conv2", conv2_);
  v.module("fc1", fc1_);
  v.module("fc2", fc2_);
}

Net::Net(const Architecture& arch, std::uint64_t seed) : arch_(arch) {
  if (arch.cnn)
    cnn_.emplace(arch.sizes, seed);
  else
    mlp_.emplace(arch.sizes, arch.activation, seed);
}

Var<float> Net::forward(Tape<float>& tape, const Var<float>& x, SourceLoc loc) {
  return cnn_ ? cnn_->forward(tape, x, loc) : mlp_->forward(tape, x, loc);
}

Shape Net::input_shape(std::size_t m) const {
  if (cnn_) return Shape{m, 1, cnn_->side(), cnn_->side()};
  return Shape{m, in_features()};
}

void Net::visit(nn::ModuleVisitor<float>& v) {
  // The model's own members, at the top level: the MLP's names stay "fc0.weight", ….
  if (cnn_)
    cnn_->visit(v);
  else
    mlp_->visit(v);
}

Classifier::Classifier(const Architecture& arch, std::uint64_t seed, double lr,
                       std::uint64_t total_steps)
    : model_(arch, seed), activation_(arch.activation), opt_(model_.parameters(), float(lr)) {
  if (total_steps > 0)
    sched_ = std::make_unique<nn::CosineWarmup>(lr, 0, total_steps);
  else
    sched_ = std::make_unique<nn::ConstantLR>(lr);
}

nn::StateDict Classifier::weights() const {
  nn::StateDict sd = model_.state_dict();
  const float norm[2] = {input_mean_, input_std_};
  sd.set("input.norm", Shape{2}, norm);
  sd.set("model.activation", std::uint64_t{activation_ == nn::Activation::kTanh ? 1u : 0u});
  return sd;
}

void Classifier::load_weights(const std::string& path) {
  const nn::StateDict sd = nn::load_state(path);
  const float* norm = sd.get<float>("input.norm", Shape{2}, "eval: '" + path + "'");
  try {
    model_.load_state_dict(sd, /*strict=*/false);
  } catch (const ValueError& e) {
    throw ValueError("eval: '" + path + "': " + e.what());
  }
  input_mean_ = norm[0];
  input_std_ = norm[1];
}

void Classifier::save_checkpoint(const std::string& path, const nn::TrainingPosition& at,
                                 const nn::StateDict& extra) const {
  nn::StateDict all = extra;
  const float norm[2] = {input_mean_, input_std_};
  all.set("input.norm", Shape{2}, norm);
  nn::save_checkpoint(path, model_, opt_, sched_.get(), at, nullptr, &all);
}

nn::TrainingPosition Classifier::load_checkpoint(const std::string& path, nn::StateDict& extra) {
  const nn::TrainingPosition at =
      nn::load_checkpoint(path, model_, opt_, sched_.get(), nullptr, &extra);
  const float* norm = extra.get<float>("input.norm", Shape{2}, "resume: '" + path + "'");
  input_mean_ = norm[0];
  input_std_ = norm[1];
  return at;
}

Architecture read_architecture(const std::string& path) {
  const nn::StateDict sd = nn::load_state(path);
  Architecture a;
  if (sd.find("conv1.weight")) {  // the CNN: its sizes from the shapes of its four layers
    auto shape = [&](const char* name, std::size_t rank) {
      const nn::StateDict::Entry* e = sd.find(name);
      if (!e || e->shape.rank() != rank)
        throw ValueError("eval: '" + path + "' holds conv1.weight but " + name +
                         (e ? " has shape " + e->shape.str() : std::string(" is missing")) +
                         ": not a wengert-train CNN");
      return e->shape;
    };
    const Shape c1 = shape("conv1.weight", 4), c2 = shape("conv2.weight", 4);
    const Shape f1 = shape("fc1.weight", 2), f2 = shape("fc2.weight", 2);
    const std::size_t cells = c2[0] ? f1[0] / c2[0] : 0, q = std::size_t(std::sqrt(double(cells)));
    if (c1[1] != 1 || c2[1] != c1[0] || cells * c2[0] != f1[0] || q * q != cells || q == 0 ||
        f2[0] != f1[1])
      throw ValueError("eval: '" + path + "': the shapes of conv1 " + c1.str() + ", conv2 " +
                       c2.str() + ", fc1 " + f1.str() + " and fc2 " + f2.str() +
                       " do not chain into wengert-train's CNN");
    a.cnn = true;
    a.sizes = {16 * cells, c1[0], c2[0], f1[1], f2[1]};
    return a;
  }
  for (std::size_t k = 0;; ++k) {
    const std::string name = "fc" + std::to_string(k) + ".weight";
    const nn::StateDict::Entry* W = sd.find(name);
    if (!W) break;
    if (W->shape.rank() != 2 || (!a.sizes.empty() && a.sizes.back() != W->shape[0]))
      throw ValueError("eval: '" + path + "': tensor " + name + " has shape " + W->shape.str() +
                       ", which does not continue the layers before it");
    if (a.sizes.empty()) a.sizes.push_back(W->shape[0]);
    a.sizes.push_back(W->shape[1]);
  }
  const nn::StateDict::Entry* act = sd.find("model.activation");
  if (a.sizes.empty() && sd.find("fc0.W"))
    throw ValueError("eval: '" + path +
                     "' is a weights file of an earlier wengert-train (parameters fc<k>.W and "
                     "fc<k>.b in a version-1 file), which this version does not read: train "
                     "again to get one with fc<k>.weight");
  if (a.sizes.size() < 2 || !act)
    throw ValueError("eval: '" + path +
                     "' is a wengert state file but not a wengert-train "
                     "weights file (it lacks fc0.weight or model.activation)");
  const std::uint64_t c = sd.get_u64("model.activation", "eval: '" + path + "'");
  if (c > 1)
    throw ValueError("eval: '" + path + "': model.activation is " + std::to_string(c) +
                     ", not 0 (relu) or 1 (tanh)");
  a.activation = c == 1 ? nn::Activation::kTanh : nn::Activation::kRelu;
  return a;
}

Var<float> Classifier::logits(const float* x, std::size_t m) {
  tape_.clear();
  return model_.forward(tape_, tape_.constant_view(x, model_.input_shape(m)));
}

std::size_t argmax(const float* v, std::size_t n) {
  std::size_t best = 0;
  for (std::size_t j = 1; j < n; ++j)
    if (v[j] > v[best]) best = j;
  return best;
}

void Classifier::set_threads(std::size_t threads) {
  if (threads == 0) throw UsageError("set_threads: at least 1 thread");
  dp_.reset();
  if (threads > 1) dp_ = std::make_unique<dist::ThreadDataParallel<float, Net>>(model_, threads);
}

std::pair<std::size_t, std::size_t> Classifier::my_rows(std::size_t m) const {
#if WENGERT_HAVE_MPI
  if (sync_) {
    const auto P = std::size_t(sync_->size()), r = std::size_t(sync_->rank());
    return {dist::shard_begin(m, P, r), dist::shard_begin(m, P, r + 1)};
  }
#endif
  return {0, m};
}

void Classifier::sum_over_ranks(double* v, std::size_t n) {
#if WENGERT_HAVE_MPI
  if (sync_) sync_->sum(v, n);
#else
  (void)v;
  (void)n;
#endif
}

float Classifier::step(const float* x, const std::int32_t* labels, std::size_t m,
                       std::size_t* correct, io::Batcher<float>* lazy) {
  bool distributed = dp_ != nullptr;
#if WENGERT_HAVE_MPI
  distributed = distributed || sync_ != nullptr;
#endif
  if (!distributed) {  // the plain step
    if (lazy) lazy->gather(0, m);
    Var<float> z = logits(x, m);
    Var<float> loss = softmax_cross_entropy(z, labels, m);
    sched_->step(opt_);
    tape_.backward(loss);
    opt_.step();
    opt_.zero_grad();
    if (correct) {
      const std::size_t c = model_.out_features();
      const float* zv = z.data();
      for (std::size_t i = 0; i < m; ++i)
        *correct += argmax(zv + i * c, c) == static_cast<std::size_t>(labels[i]);
    }
    return loss.item();
  }
  const auto [first, last] = my_rows(m);
  const std::size_t rows = last - first, in = model_.in_features(), c = model_.out_features();
  const std::size_t offset = first;  // (a structured binding cannot be captured in C++17)
  x += first * in;
  labels += first;
  if (hits_.size() < rows) hits_.resize(rows);  // grows once, to the largest shard
  sched_->step(opt_);
  float loss = 0;
  // Logits of rows [b, e) of this rank's shard, recorded on `tape` with `model`; marks hits_.
  auto shard = [&](Net& model, Tape<float>& tape, std::size_t b, std::size_t e) {
    if (lazy) lazy->gather(offset + b, offset + e);  // this thread's rows, in parallel
    Var<float> z = model.forward(tape, tape.constant_view(x + b * in, model.input_shape(e - b)));
    const float* zv = z.data();
    for (std::size_t i = b; i < e; ++i)
      hits_[i] = argmax(zv + (i - b) * c, c) == static_cast<std::size_t>(labels[i]);
    return softmax_cross_entropy(z, labels + b, e - b);
  };
  bool stepped = false;  // the threads did the optimizer's step too
  if (rows > 0 && dp_ && rows >= dp_->threads()) {
#if WENGERT_HAVE_MPI
    const bool fuse = sync_ == nullptr;  // under MPI the allreduce comes before the step
#else
    const bool fuse = true;
#endif
    if (fuse)
      loss = dp_->step(rows, shard, opt_);
    else
      loss = dp_->backward(rows, shard);
    stepped = fuse;
  } else if (rows > 0) {  // one thread, or fewer rows than threads: this thread alone
    const auto t0 = std::chrono::steady_clock::now();
    tape_.clear();
    Var<float> l = shard(model_, tape_, 0, rows);
    tape_.backward(l);
    loss = l.item();
    compute_seconds_ +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  std::size_t hits = 0;
  for (std::size_t i = 0; i < rows; ++i) hits += hits_[i];
#if WENGERT_HAVE_MPI
  if (sync_) {
    float count = float(hits);  // exact: a batch has at most 2^16 rows
    loss = sync_->allreduce(float(rows), loss, &count);
    hits = std::size_t(count);
  }
#endif
  const auto t0 = std::chrono::steady_clock::now();
  if (!stepped) {
    opt_.step();
    opt_.zero_grad();
  }
  optimizer_seconds_ +=
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (correct) *correct += hits;
  return loss;
}

dist::StepTimes Classifier::step_times() const {
  dist::StepTimes t;
  if (dp_) t = dp_->times();
#if WENGERT_HAVE_MPI
  if (sync_) {
    t.steps = sync_->times().steps;
    t.pack = sync_->times().pack;
    t.allreduce = sync_->times().allreduce;
  }
#endif
  t.compute += compute_seconds_;
  t.optimizer = optimizer_seconds_;
  return t;
}

void Classifier::predict(const float* x, std::size_t m, std::int32_t* out) {
  NoGradGuard no_grad;
  Var<float> z = logits(x, m);
  const std::size_t c = model_.out_features();
  for (std::size_t i = 0; i < m; ++i)
    out[i] = static_cast<std::int32_t>(argmax(z.data() + i * c, c));
}

double Classifier::evaluate(const io::Dataset<float>& data, std::vector<std::size_t>* confusion) {
  const std::size_t c = model_.out_features(), n = data.size(), d = data.features();
  if (d != model_.in_features())
    throw ShapeError("evaluate: the data has " + std::to_string(d) +
                     " features but the model takes " + std::to_string(model_.in_features()));
  if (confusion) confusion->assign(c * c, 0);
  // Under MPI each rank evaluates its shard of the examples, and with --threads each thread its
  // part of that shard; the counts are summed.
  const auto [first, last] = my_rows(n);
  const std::size_t rows = last - first;
  std::vector<std::int32_t> pred(rows);
  // Predictions for rows [b, e) of the shard, 1000 at a time, with `model` on `tape`.
  auto predict_rows = [&](Net& model, Tape<float>& tape, std::size_t b, std::size_t e) {
    NoGradGuard no_grad;  // grad mode is per thread
    for (std::size_t s = b; s < e; s += 1000) {
      const std::size_t m = std::min<std::size_t>(1000, e - s);
      tape.clear();
      Var<float> z = model.forward(
          tape, tape.constant_view(data.images.image(first + s), model.input_shape(m)));
      for (std::size_t i = 0; i < m; ++i)
        pred[s + i] = static_cast<std::int32_t>(argmax(z.data() + i * c, c));
    }
  };
  if (dp_ && rows >= dp_->threads())
    dp_->for_each_shard(rows, predict_rows);
  else
    predict_rows(model_, tape_, 0, rows);
  std::size_t right = 0;
  for (std::size_t i = 0; i < rows; ++i) {
    const std::int32_t truth = data.labels[first + i];
    right += pred[i] == truth;
    if (confusion && truth >= 0 && static_cast<std::size_t>(truth) < c)
      (*confusion)[static_cast<std::size_t>(truth) * c + static_cast<std::size_t>(pred[i])]++;
  }
  if (last - first != n) {
    std::vector<double> counts(1 + (confusion ? c * c : 0));
    counts[0] = double(right);
    for (std::size_t k = 1; k < counts.size(); ++k) counts[k] = double((*confusion)[k - 1]);
    sum_over_ranks(counts.data(), counts.size());
    right = std::size_t(counts[0]);
    for (std::size_t k = 1; k < counts.size(); ++k) (*confusion)[k - 1] = std::size_t(counts[k]);
  }
  return n ? double(right) / double(n) : 0.0;
}

void Classifier::fit_input_norm(const io::Dataset<float>& data, std::size_t limit) {
  double sum = 0, sq = 0;
  const std::size_t examples = limit ? std::min(limit, data.size()) : data.size();
  const std::size_t n = std::min(data.images.pixels.size(), examples * data.features());
  const float* px = data.images.pixels.data();
  for (std::size_t i = 0; i < n; ++i) sum += px[i];
  const double mean = n == 0 ? 0.0 : sum / double(n);
  for (std::size_t i = 0; i < n; ++i) sq += (px[i] - mean) * (px[i] - mean);
  const double sd = n == 0 ? 1.0 : std::sqrt(sq / double(n));
  input_mean_ = float(mean);
  input_std_ = float(sd > 0 ? sd : 1.0);
}

void Classifier::normalize(io::Dataset<float>& data) const {
  const float mean = input_mean_, inv = 1.0f / input_std_;
  for (float& v : data.images.pixels) v = (v - mean) * inv;
}

void make_seed004_data(std::size_t m, std::uint64_t seed, std::vector<float>& x,
                       std::vector<float>& y) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> N(0.0, 1.0);
  x.resize(m * 3);
  y.resize(m);
  // Radius threshold √(χ²₃ median) ≈ 1.5382: the two classes are balanced.
  for (std::size_t i = 0; i < m; ++i) {
    double r2 = 0;
    for (std::size_t k = 0; k < 3; ++k) {
      double v = N(rng);
      x[i * 3 + k] = float(v);
      r2 += v * v;
    }
    y[i] = std::sqrt(r2) > 1.5382 ? 1.0f : 0.0f;
  }
}

}  // namespace wengert::train
