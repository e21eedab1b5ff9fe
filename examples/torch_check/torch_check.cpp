// Both sequence examples against libtorch: the same models (examples/char_lstm/model.hpp,
// examples/tiny_attention/model.hpp) in float64 from identical initial parameters, on one batch
// of the licence text: the loss before and after one Adam step must agree to 1e-5 (they agree
// to about 1e-12: the two differ only in the order of floating-point operations).
// Built when the benchmark-peer switch is on (-DWENGERT_BENCH_TORCH=ON) and libtorch is found.
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "../char_lstm/model.hpp"
#include "../tiny_attention/model.hpp"
#include "torch_peer.hpp"

using namespace wengert;

namespace {

std::vector<std::vector<double>> values(const std::vector<Parameter<double>*>& ps) {
  std::vector<std::vector<double>> v;
  for (auto* p : ps) v.emplace_back(p->data(), p->data() + p->size());
  return v;
}

bool report(const char* what, double a0, double a1, torch_peer::Losses t) {
  const double d = std::max(std::abs(a0 - t.before), std::abs(a1 - t.after));
  const bool ok = d <= 1e-5;
  std::printf("%s: wengert %.12f -> %.12f, libtorch %.12f -> %.12f, max difference %.2e %s\n", what,
              a0, a1, t.before, t.after, d, ok ? "(ok)" : "(FAILED: above 1e-5)");
  return ok;
}

}  // namespace

int main() {
  const std::string corpus = text::read_corpus();
  const text::Vocab vocab(corpus);
  const std::vector<std::int32_t> all = vocab.encode(corpus);
  const double lr = 1e-2;
  bool ok = true;
  {  // tiny_attention: d = 16, L = 12, B = 3; x, y [B,L] from three windows of the text
    const std::size_t d = 16, L = 12, B = 3;
    std::mt19937_64 rng(5);
    tiny_attention::Block<double> m(vocab.size(), L, d, rng);
    std::vector<std::int32_t> x(B * L), y(B * L), pos(L);
    for (std::size_t b = 0; b < B; ++b)
      for (std::size_t t = 0; t < L; ++t) {
        x[b * L + t] = all[1000 * b + t];
        y[b * L + t] = all[1000 * b + t + 1];
      }
    for (std::size_t t = 0; t < L; ++t) pos[t] = std::int32_t(t);
    xt::xarray<bool> causal = xt::xarray<bool>::from_shape({L, L});
    for (std::size_t i = 0; i < L; ++i)
      for (std::size_t j = 0; j < L; ++j) causal(i, j) = j <= i;
    const auto init = values(m.params());
    nn::Adam<double> opt(m.params(), lr);
    Tape<double> tape;
    auto loss = tiny_attention::block_loss(tape, m, x, y, B, causal, pos);
    const double l0 = loss.item();
    tape.backward(loss);
    opt.step();
    tape.clear();
    const double l1 = tiny_attention::block_loss(tape, m, x, y, B, causal, pos).item();
    ok &= report("tiny_attention", l0, l1,
                 torch_peer::attention(init, vocab.size(), L, d, B, x, y, lr));
  }
  {  // char_lstm: E = 8, H = 16, L = 10, B = 4; x, y [L,B]
    const std::size_t E = 8, H = 16, L = 10, B = 4;
    std::mt19937_64 rng(6);
    char_lstm::Lstm<double> m(vocab.size(), E, H, rng);
    std::vector<std::int32_t> x(L * B), y(L * B);
    for (std::size_t t = 0; t < L; ++t)
      for (std::size_t b = 0; b < B; ++b) {
        x[t * B + b] = all[5000 * b + t];
        y[t * B + b] = all[5000 * b + t + 1];
      }
    const auto init = values(m.params());
    nn::Adam<double> opt(m.params(), lr);
    std::vector<double> h(B * H, 0.0), c(B * H, 0.0);
    std::vector<Var<double>> hs;
    Tape<double> tape;
    auto loss = char_lstm::chunk_loss(tape, m, x, y, L, B, h, c, hs);
    const double l0 = loss.item();
    tape.backward(loss);
    opt.step();
    tape.clear();
    std::fill(h.begin(), h.end(), 0.0);
    std::fill(c.begin(), c.end(), 0.0);
    const double l1 = char_lstm::chunk_loss(tape, m, x, y, L, B, h, c, hs).item();
    ok &= report("char_lstm", l0, l1, torch_peer::lstm(init, vocab.size(), E, H, L, B, x, y, lr));
  }
  return ok ? 0 : 1;
}
