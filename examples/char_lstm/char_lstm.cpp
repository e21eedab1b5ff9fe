// A character-level LSTM language model, trained with truncated backpropagation through time on
// the licence texts in /usr/share/common-licenses, with public wengert ops only:
//
//   embedding → x·Wx + b for all T steps at once (one linear) → per step: slice (a view) +
//   h·Wh, split into the four gates, sigmoid/tanh/mul/add → concat the T hidden states →
//   linear → softmax cross-entropy.
//
// The hidden and cell states are carried from one chunk of T characters to the next as
// constants (truncated BPTT: gradients stop at the chunk's start). Prints the train and
// held-out bits per character against a unigram model's, then a sample.
//
//   char_lstm [--steps 1500] [--hidden 128] [--embed 32] [--seq 64] [--batch 32] [--lr 0.003]
//             [--seed 1] [--sample 300] [--threshold BPC]
// With --threshold, exits 1 unless the held-out bits per character end below it (the ctest run).
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "../text/text_data.hpp"
#include "model.hpp"

using namespace wengert;
using char_lstm::cell;
using char_lstm::chunk_loss;
using Lstm = char_lstm::Lstm<float>;

namespace {

// Bits per character over `ids`, B streams of chunks of T, no gradients.
double evaluate(Lstm& m, const std::vector<std::int32_t>& ids, std::size_t T, std::size_t B) {
  NoGradGuard no_grad;
  text::Streams s(ids, B, T);
  std::vector<float> h(B * m.H, 0.0f), c(B * m.H, 0.0f);
  std::vector<std::int32_t> x, y;
  std::vector<Var<float>> hs;
  Tape<float> tape;
  double nats = 0;
  const std::size_t chunks = (s.len - 1) / T;
  for (std::size_t k = 0; k < chunks; ++k) {
    tape.clear();
    s.next(x, y);
    nats += chunk_loss(tape, m, x, y, T, B, h, c, hs).item();
  }
  return nats / double(chunks) / std::log(2.0);
}

std::string sample(Lstm& m, const text::Vocab& vocab, std::size_t n, std::mt19937_64& rng) {
  NoGradGuard no_grad;
  std::vector<float> h(m.H, 0.0f), c(m.H, 0.0f);
  std::string out = "The ";
  Tape<float> tape;
  const std::size_t prompt = out.size();
  std::int32_t next = 0;
  for (std::size_t i = 0; i < prompt + n; ++i) {
    const std::int32_t cur = i < prompt ? vocab.id[(unsigned char)out[i]] : next;
    if (i >= prompt) out += char(vocab.chars[std::size_t(cur)]);
    tape.clear();
    auto xw =
        linear(embedding(tape.param(m.table), &cur, Shape{1}), tape.param(m.Wx), tape.param(m.b));
    Var<float> hv = tape.constant(h.data(), Shape{1, m.H}),
               cv = tape.constant(c.data(), Shape{1, m.H});
    cell(xw, tape.param(m.Wh), hv, cv);
    std::copy(hv.data(), hv.data() + m.H, h.begin());
    std::copy(cv.data(), cv.data() + m.H, c.begin());
    // Sample from softmax(logits / 0.7).
    auto p = softmax(mul(linear(hv, tape.param(m.Wo), tape.param(m.bo)), 1.0f / 0.7f));
    std::discrete_distribution<std::int32_t> d(p.data(), p.data() + p.size());
    next = d(rng);
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  const auto steps = std::size_t(text::arg(argc, argv, "steps", 1500));
  const auto H = std::size_t(text::arg(argc, argv, "hidden", 128));
  const auto E = std::size_t(text::arg(argc, argv, "embed", 32));
  const auto T = std::size_t(text::arg(argc, argv, "seq", 64));
  const auto B = std::size_t(text::arg(argc, argv, "batch", 32));
  const double lr = text::arg(argc, argv, "lr", 3e-3);
  const auto n_sample = std::size_t(text::arg(argc, argv, "sample", 300));
  const double threshold = text::arg(argc, argv, "threshold", 0);
  std::mt19937_64 rng(std::uint64_t(text::arg(argc, argv, "seed", 1)));

  const std::string corpus = text::read_corpus();
  const text::Vocab vocab(corpus);
  const std::vector<std::int32_t> all = vocab.encode(corpus);
  std::vector<std::int32_t> train, held;
  text::split_text(all, train, held);
  std::printf(
      "char_lstm: %zu characters (%zu train, %zu held out), %zu symbols; unigram model: "
      "%.3f bits/char held out\n",
      all.size(), train.size(), held.size(), vocab.size(),
      text::unigram_bits(train, held, vocab.size()));

  Lstm m(vocab.size(), E, H, rng);
  nn::Adam<float> opt(m.params(), float(lr));
  text::Streams streams(train, B, T);
  std::vector<float> h(B * H, 0.0f), c(B * H, 0.0f);
  std::vector<std::int32_t> x, y;
  std::vector<Var<float>> hs;
  Tape<float> tape;
  double recent = 0;  // train bits per char, mean of the last 50 steps
  for (std::size_t step = 1; step <= steps; ++step) {
    tape.clear();
    if (streams.next(x, y)) {  // an epoch ended: the streams start over, so does the state
      std::fill(h.begin(), h.end(), 0.0f);
      std::fill(c.begin(), c.end(), 0.0f);
    }
    auto loss = chunk_loss(tape, m, x, y, T, B, h, c, hs);
    opt.zero_grad();
    tape.backward(loss);
    nn::clip_grad_norm(m.params(), 5.0);
    opt.step();
    const double bits = loss.item() / std::log(2.0);
    recent = step == 1 ? bits : recent + (bits - recent) / double(std::min<std::size_t>(step, 50));
    if (step == 1 || step % 100 == 0 || step == steps)
      std::printf("step %5zu  train %.3f bits/char\n", step, recent);
  }
  const double held_bits = evaluate(m, held, T, B / 4 ? B / 4 : 1);
  std::printf("after %zu steps: train %.3f bits/char (last 50 steps), held out %.3f bits/char\n",
              steps, recent, held_bits);
  if (n_sample) std::printf("sample:\n%s\n", sample(m, vocab, n_sample, rng).c_str());
  if (threshold > 0 && !(held_bits < threshold)) {
    std::printf("FAILED: held-out %.3f bits/char is not below %.3f\n", held_bits, threshold);
    return 1;
  }
  return 0;
}
