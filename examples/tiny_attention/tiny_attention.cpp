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

using namespace wengert;

namespace {

struct Block {
  std::size_t V, T, d, f;
  Parameter<float> tok, pos, g1, b1, Wq, Wk, Wv, Wo, g2, b2, W1, c1, W2, c2, g3, b3, Wout;
  Block(std::size_t v, std::size_t t, std::size_t dim, std::mt19937_64& rng)
      : V(v),
        T(t),
        d(dim),
        f(4 * dim),
        tok(Shape{v, dim}),
        pos(Shape{t, dim}),
        g1(Shape{dim}),
        b1(Shape{dim}),
        Wq(Shape{dim, dim}),
        Wk(Shape{dim, dim}),
        Wv(Shape{dim, dim}),
        Wo(Shape{dim, dim}),
        g2(Shape{dim}),
        b2(Shape{dim}),
        W1(Shape{dim, 4 * dim}),
        c1(Shape{4 * dim}),
        W2(Shape{4 * dim, dim}),
        c2(Shape{dim}),
        g3(Shape{dim}),
        b3(Shape{dim}),
        Wout(Shape{dim, v}) {
    text::init_uniform(tok, 0.1, rng);
    text::init_uniform(pos, 0.1, rng);
    const double s = 1 / std::sqrt(double(dim));
    for (Parameter<float>* p : {&Wq, &Wk, &Wv, &Wo, &W1, &Wout}) text::init_uniform(*p, s, rng);
    text::init_uniform(W2, 1 / std::sqrt(double(f)), rng);
    for (Parameter<float>* p : {&g1, &g2, &g3}) std::fill(p->data(), p->data() + dim, 1.0f);
  }
  std::vector<Parameter<float>*> params() {
    return {&tok, &pos, &g1, &b1, &Wq, &Wk, &Wv, &Wo,  &g2,
            &b2,  &W1,  &c1, &W2, &c2, &g3, &b3, &Wout};
  }
};

// The mean next-character cross-entropy (nats) of x [B,T] against y [B,T] (batch first).
Var<float> block_loss(Tape<float>& tape, Block& m, const std::vector<std::int32_t>& x,
                      const std::vector<std::int32_t>& y, std::size_t B,
                      const xt::xarray<bool>& causal, const std::vector<std::int32_t>& positions) {
  const std::size_t T = m.T, d = m.d;
  auto P = [&](Parameter<float>& p) { return tape.param(p); };
  auto h = add(embedding(P(m.tok), x.data(), Shape{B, T}),        // [B,T,d]
               embedding(P(m.pos), positions.data(), Shape{T}));  // + [T,d], broadcast
  // Attention: q, k, v [B,T,d]; scores [B,T,T], causal (row t sees columns ≤ t).
  auto n1 = layer_norm(h, P(m.g1), P(m.b1));
  auto q = bmm(n1, P(m.Wq)), k = bmm(n1, P(m.Wk)), v = bmm(n1, P(m.Wv));
  auto scores = mul(bmm(q, k, false, true), 1.0f / std::sqrt(float(d)));
  scores = wengert::where(causal, scores, tape.constant(-1e9f));
  h = add(h, bmm(bmm(softmax(scores, -1), v), P(m.Wo)));
  // MLP.
  auto n2 = layer_norm(h, P(m.g2), P(m.b2));
  auto hidden = gelu(add(bmm(n2, P(m.W1)), P(m.c1)));
  h = add(h, add(bmm(hidden, P(m.W2)), P(m.c2)));
  auto logits = bmm(layer_norm(h, P(m.g3), P(m.b3)), P(m.Wout));  // [B,T,V]
  return softmax_cross_entropy(reshape(logits, Shape{B * T, m.V}), y);
}

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

  Block m(vocab.size(), T, d, rng);
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
