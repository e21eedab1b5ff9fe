// The model of tiny_attention.cpp (and of the libtorch check, examples/text/torch_check.cpp):
// one causal pre-norm transformer block over characters, float or double.
#pragma once

#include <cmath>
#include <random>
#include <vector>

#include "../text/text_data.hpp"

namespace tiny_attention {

using namespace wengert;

template <class T>
struct Block {
  std::size_t V, T_, d, f;
  Parameter<T> tok, pos, g1, b1, Wq, Wk, Wv, Wo, g2, b2, W1, c1, W2, c2, g3, b3, Wout;
  Block(std::size_t v, std::size_t t, std::size_t dim, std::mt19937_64& rng)
      : V(v),
        T_(t),
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
    for (Parameter<T>* p : {&Wq, &Wk, &Wv, &Wo, &W1, &Wout}) text::init_uniform(*p, s, rng);
    text::init_uniform(W2, 1 / std::sqrt(double(f)), rng);
    for (Parameter<T>* p : {&g1, &g2, &g3}) std::fill(p->data(), p->data() + dim, T(1));
  }
  std::vector<Parameter<T>*> params() {
    return {&tok, &pos, &g1, &b1, &Wq, &Wk, &Wv, &Wo,  &g2,
            &b2,  &W1,  &c1, &W2, &c2, &g3, &b3, &Wout};
  }
};

// The mean next-character cross-entropy (nats) of x [B,T] against y [B,T] (batch first).
template <class T>
Var<T> block_loss(Tape<T>& tape, Block<T>& m, const std::vector<std::int32_t>& x,
                  const std::vector<std::int32_t>& y, std::size_t B, const xt::xarray<bool>& causal,
                  const std::vector<std::int32_t>& positions) {
  const std::size_t L = m.T_, d = m.d;
  auto P = [&](Parameter<T>& p) { return tape.param(p); };
  auto h = add(embedding(P(m.tok), x.data(), Shape{B, L}),        // [B,T,d]
               embedding(P(m.pos), positions.data(), Shape{L}));  // + [T,d], broadcast
  // Attention: q, k, v [B,T,d]; scores [B,T,T], causal (row t sees columns ≤ t).
  auto n1 = layer_norm(h, P(m.g1), P(m.b1));
  auto q = bmm(n1, P(m.Wq)), k = bmm(n1, P(m.Wk)), v = bmm(n1, P(m.Wv));
  auto scores = mul(bmm(q, k, false, true), T(1) / std::sqrt(T(d)));
  scores = wengert::where(causal, scores, tape.constant(T(-1e9)));
  h = add(h, bmm(bmm(softmax(scores, -1), v), P(m.Wo)));
  // MLP.
  auto n2 = layer_norm(h, P(m.g2), P(m.b2));
  auto hidden = gelu(add(bmm(n2, P(m.W1)), P(m.c1)));
  h = add(h, add(bmm(hidden, P(m.W2)), P(m.c2)));
  auto logits = bmm(layer_norm(h, P(m.g3), P(m.b3)), P(m.Wout));  // [B,T,V]
  return softmax_cross_entropy(reshape(logits, Shape{B * L, m.V}), y);
}

}  // namespace tiny_attention
