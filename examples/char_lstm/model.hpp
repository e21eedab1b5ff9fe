// The model of char_lstm.cpp (and of the libtorch check, examples/text/torch_check.cpp): an
// LSTM over characters, float or double.
#pragma once

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "../text/text_data.hpp"

namespace char_lstm {

using namespace wengert;

template <class T>
struct Lstm {
  std::size_t V, E, H;
  Parameter<T> table, Wx, b, Wh, Wo, bo;
  Lstm(std::size_t v, std::size_t e, std::size_t h, std::mt19937_64& rng)
      : V(v),
        E(e),
        H(h),
        table(Shape{v, e}, "table"),
        Wx(Shape{e, 4 * h}, "Wx"),
        b(Shape{4 * h}, "b"),
        Wh(Shape{h, 4 * h}, "Wh"),
        Wo(Shape{h, v}, "Wo"),
        bo(Shape{v}, "bo") {
    text::init_uniform(table, 0.1, rng);
    text::init_uniform(Wx, 1 / std::sqrt(double(e)), rng);
    text::init_uniform(Wh, 1 / std::sqrt(double(h)), rng);
    text::init_uniform(Wo, 1 / std::sqrt(double(h)), rng);
    for (std::size_t j = h; j < 2 * h; ++j) b.data()[j] = T(1);  // forget gate bias 1
  }
  std::vector<Parameter<T>*> params() { return {&table, &Wx, &b, &Wh, &Wo, &bo}; }
};

// One LSTM step: gates [B,4H] = xw_t + h·Wh, split as input, forget, candidate, output.
template <class T>
void cell(const Var<T>& xw_t, const Var<T>& Wh, Var<T>& h, Var<T>& c) {
  Var<T> g[4];
  split(add(xw_t, matmul(h, Wh)), 4, 1, g);
  c = add(mul(sigmoid(g[1]), c), mul(sigmoid(g[0]), tanh(g[2])));
  h = mul(sigmoid(g[3]), tanh(c));
}

// The mean cross-entropy (nats) of a chunk: x, y [T,B] (time first); h0, c0 [B,H] carried in and
// out.
template <class T>
Var<T> chunk_loss(Tape<T>& tape, Lstm<T>& m, const std::vector<std::int32_t>& x,
                  const std::vector<std::int32_t>& y, std::size_t L, std::size_t B,
                  std::vector<T>& h0, std::vector<T>& c0, std::vector<Var<T>>& hs) {
  auto xw = linear(embedding(tape.param(m.table), x.data(), Shape{L * B}), tape.param(m.Wx),
                   tape.param(m.b));  // [T·B, 4H]
  auto Wh = tape.param(m.Wh);
  Var<T> h = tape.constant(h0.data(), Shape{B, m.H});
  Var<T> c = tape.constant(c0.data(), Shape{B, m.H});
  hs.resize(L);
  for (std::size_t t = 0; t < L; ++t) {
    cell(slice(xw, 0, (long long)(t * B), (long long)((t + 1) * B)), Wh, h, c);
    hs[t] = h;
  }
  std::copy(h.data(), h.data() + h.size(), h0.begin());
  std::copy(c.data(), c.data() + c.size(), c0.begin());
  auto logits = linear(concat(hs, 0), tape.param(m.Wo), tape.param(m.bo));  // [T·B, V]
  return softmax_cross_entropy(logits, y);
}

}  // namespace char_lstm
