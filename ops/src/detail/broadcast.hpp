// wengert — walking two broadcast inputs alongside their output, without allocating.
//
// numpy broadcasting aligns shapes at their trailing dimensions; an input whose dimension is 1
// (or missing) is repeated along it. Seen from the contiguous row-major output, each input is
// then a strided array whose stride is 0 along its broadcast dimensions. A BroadcastMap holds
// exactly that — the output dimensions and the two inputs' element strides — after
//   * dropping output dimensions of size 1 (they contribute nothing to any offset), and
//   * merging neighbouring dimensions along which both inputs stay contiguous (or both stay
//     broadcast), so [2,3]+[2,3] is one run of 6 and [4,5]+[] one run of 20.
// The innermost stride of each input is then 0 or 1, and for_each_broadcast runs the innermost
// dimension as a loop whose strides are compile-time constants, which gcc vectorises.
//
// Forward kernels write out[o] from a[ia], b[ib]; backward kernels accumulate into the adjoint
// of one input at ia (or ib) from the output adjoint at o — the same walk, so broadcast axes are
// summed over (reduced into the smaller input) for free.
#pragma once

#include <cstddef>

#include <wengert/shape.hpp>

namespace wengert::detail {

struct BroadcastMap {
  std::size_t rank = 0;  // dimensions left after dropping and merging (0: one element)
  std::size_t dims[Shape::kMaxRank] = {};
  std::size_t stride[2][Shape::kMaxRank] = {};  // element strides of input 0 and input 1
  bool empty = false;                           // the output has no elements
};

/// Maps `out` = broadcast_shapes(a, b) onto the inputs `a` and `b`. Shapes must broadcast.
inline BroadcastMap make_broadcast_map(const Shape& out, const Shape& a, const Shape& b) {
  BroadcastMap m;
  const std::size_t r = out.rank();
  // Row-major strides of each input, aligned to the output's trailing dimensions; 0 where the
  // input has size 1 or lacks the dimension.
  std::size_t st[2][Shape::kMaxRank] = {};
  const Shape* in[2] = {&a, &b};
  for (int k = 0; k < 2; ++k) {
    const Shape& s = *in[k];
    const std::size_t lead = r - s.rank();  // missing leading dimensions
    std::size_t acc = 1;
    for (std::size_t i = r; i-- > lead;) {
      const std::size_t d = s[i - lead];
      st[k][i] = d == 1 ? 0 : acc;
      acc *= d;
    }
  }
  for (std::size_t i = 0; i < r; ++i) {
    const std::size_t d = out[i];
    if (d == 0) m.empty = true;
    if (d == 1) continue;
    if (m.rank > 0) {
      const std::size_t p = m.rank - 1;
      if (m.stride[0][p] == st[0][i] * d && m.stride[1][p] == st[1][i] * d) {
        m.dims[p] *= d;
        m.stride[0][p] = st[0][i];
        m.stride[1][p] = st[1][i];
        continue;
      }
    }
    m.dims[m.rank] = d;
    m.stride[0][m.rank] = st[0][i];
    m.stride[1][m.rank] = st[1][i];
    ++m.rank;
  }
  return m;
}

template <std::size_t SA, std::size_t SB, class F>
inline void broadcast_run(std::size_t o, std::size_t ia, std::size_t ib, std::size_t n, F& f) {
  for (std::size_t k = 0; k < n; ++k) f(o + k, ia + SA * k, ib + SB * k);
}

/// Calls f(o, ia, ib) for every output element o = 0, 1, ... in order, with ia and ib the
/// offsets of the input elements that broadcast onto it.
template <class F>
void for_each_broadcast(const BroadcastMap& m, F&& f) {
  if (m.empty) return;
  if (m.rank == 0) {
    f(std::size_t{0}, std::size_t{0}, std::size_t{0});
    return;
  }
  const std::size_t last = m.rank - 1;
  const std::size_t n = m.dims[last];
  const std::size_t sa = m.stride[0][last], sb = m.stride[1][last];
  std::size_t idx[Shape::kMaxRank] = {};  // odometer over the outer dimensions
  std::size_t o = 0, ia = 0, ib = 0;
  for (;;) {
    if (sa && sb)
      broadcast_run<1, 1>(o, ia, ib, n, f);
    else if (sa)
      broadcast_run<1, 0>(o, ia, ib, n, f);
    else if (sb)
      broadcast_run<0, 1>(o, ia, ib, n, f);
    else
      broadcast_run<0, 0>(o, ia, ib, n, f);
    o += n;
    std::size_t d = last;
    for (;;) {
      if (d == 0) return;
      --d;
      ia += m.stride[0][d];
      ib += m.stride[1][d];
      if (++idx[d] < m.dims[d]) break;
      ia -= idx[d] * m.stride[0][d];
      ib -= idx[d] * m.stride[1][d];
      idx[d] = 0;
    }
  }
}

}  // namespace wengert::detail
