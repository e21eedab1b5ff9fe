// One pre-norm transformer block, causal, trained as a character-level language model on the
// licence texts in /usr/share/common-licenses, with public wengert ops only:
//
//   x = embedding(tokens) + embedding(positions)                       [B,T,d]
//   a = softmax(where(causal, q·kᵀ/√d, −1e9)) · v,  q, k, v = LN(x)·Wq, ·Wk, ·Wv   (bmm)
//   x = x + a·Wo
//   x = x + gelu(LN(x)·W1 + b1)·W2 + b2
//   logits = LN(x)·Wout → softmax cross-entropy against the next character
//
// Prints the loss before and after training (nats, and bits per character) and the held-out
// bits per character.
//
//   tiny_attention [--steps 600] [--dim 64] [--seq 64] [--batch 16] [--lr 0.003] [--seed 1]
//                  [--threshold NATS]
// With --threshold, exits 1 unless the final training loss is below it (the ctest run).
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "../text/text_data.hpp"
#include "model.hpp"

using namespace wengert;
using tiny_attention::Block;
using tiny_attention::block_loss;

namespace {

// B windows of T + 1 characters at random offsets: x = the first T, y = the next T.
void batch(const std::vector<std::int32_t>& ids, std::size_t B, std::size_t T, std::mt19937_64& rng,
           std::vector<std::int32_t>& x, std::vector<std::int32_t>& y) {
  std::uniform_int_distribution<std::size_t> start(0, ids.size() - T - 1);
  x.resize(B * T);
  y.resize(B * T);
  for (std::size_t b = 0; b < B; ++b) {
    const std::size_t s = start(rng);
    for (std::size_t t = 0; t < T; ++t) {
      x[b * T + t] = ids[s + t];
      y[b * T + t] = ids[s + t + 1];
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  const auto steps = std::size_t(text::arg(argc, argv, "steps", 600));
  const auto d = std::size_t(text::arg(argc, argv, "dim", 64));
  const auto T = std::size_t(text::arg(argc, argv, "seq", 64));
  const auto B = std::size_t(text::arg(argc, argv, "batch", 16));
  const double lr = text::arg(argc, argv, "lr", 3e-3);
  const double threshold = text::arg(argc, argv, "threshold", 0);
  std::mt19937_64 rng(std::uint64_t(text::arg(argc, argv, "seed", 1)));

  const std::string corpus = text::read_corpus();
  const text::Vocab vocab(corpus);
  const std::vector<std::int32_t> all = vocab.encode(corpus);
  std::vector<std::int32_t> train, held;
  text::split_text(all, train, held);

  Block<float> m(vocab.size(), T, d, rng);
  nn::Adam<float> opt(m.params(), float(lr));
  xt::xarray<bool> causal = xt::xarray<bool>::from_shape({T, T});
  for (std::size_t i = 0; i < T; ++i)
    for (std::size_t j = 0; j < T; ++j) causal(i, j) = j <= i;
  std::vector<std::int32_t> positions(T);
  for (std::size_t t = 0; t < T; ++t) positions[t] = std::int32_t(t);

  // The held-out loss over fixed windows, no gradients.
  std::mt19937_64 eval_rng(99);
  std::vector<std::int32_t> ex, ey;
  batch(held, 64, T, eval_rng, ex, ey);
  auto held_out = [&] {
    NoGradGuard no_grad;
    Tape<float> t;
    return double(block_loss(t, m, ex, ey, 64, causal, positions).item());
  };

  std::vector<std::int32_t> x, y;
  Tape<float> tape;
  const double before = held_out();
  double recent = 0, first = 0;
  for (std::size_t step = 1; step <= steps; ++step) {
    tape.clear();
    batch(train, B, T, rng, x, y);
    auto loss = block_loss(tape, m, x, y, B, causal, positions);
    if (step == 1) first = loss.item();
    opt.zero_grad();
    tape.backward(loss);
    nn::clip_grad_norm(m.params(), 1.0);
    opt.step();
    recent = step == 1 ? loss.item() : recent + (loss.item() - recent) / 20.0;
    if (step == 1 || step % 100 == 0 || step == steps)
      std::printf("step %5zu  train loss %.3f nats (%.3f bits/char)\n", step, recent,
                  recent / std::log(2.0));
  }
  const double after = held_out();
  std::printf(
      "tiny_attention: loss before training %.3f nats (first step %.3f), after %zu steps: "
      "train %.3f, held out %.3f nats = %.3f bits/char (unigram: %.3f)\n",
      before, first, steps, recent, after, after / std::log(2.0),
      text::unigram_bits(train, held, vocab.size()));
  if (threshold > 0 && !(recent < threshold)) {
    std::printf("FAILED: the training loss %.3f is not below %.3f\n", recent, threshold);
    return 1;
  }
  return 0;
}
