// wengert — conv2d (see conv2d.hpp).
#include <wengert/ops/conv2d.hpp>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <string>

#include "detail/gemm.hpp"
#include "detail/record.hpp"
#include "detail/window.hpp"

namespace wengert {

namespace {

using detail::gemm;
using Index = std::int64_t;  // signed pixel coordinates: a tap may fall into the padding

// Sizes of one convolution. Trivially destructible: the backward closure keeps a copy.
struct Geometry {
  std::size_t N, C, H, W, O, kh, kw, s, p, d, Ho, Wo;
  std::size_t K() const { return C * kh * kw; }  // rows of an im2col matrix
  std::size_t P() const { return Ho * Wo; }      // its columns: output pixels per channel
  // A 1×1 kernel at stride 1 without padding reads every pixel once, in order: col_n is x_n.
  bool direct() const { return kh == 1 && kw == 1 && s == 1 && p == 0; }
};

// For kernel column j: the output columns [lo, hi) whose tap iw = ow·s + j·d − p lies inside
// [0, W); the others read padding.
struct Span {
  std::size_t lo, hi;
};
inline Span valid_columns(const Geometry& g, std::size_t j) {
  const Index off = Index(j * g.d) - Index(g.p), s = Index(g.s), W = Index(g.W);
  const Index lo = off >= 0 ? 0 : (-off + s - 1) / s;         // first ow with iw ≥ 0
  const Index hi = W - off <= 0 ? 0 : (W - off + s - 1) / s;  // first ow with iw ≥ W
  const Index wo = Index(g.Wo);
  const Index l = std::min(lo, wo), h = std::max(l, std::min(hi, wo));
  return {std::size_t(l), std::size_t(h)};
}

// col [K, P] = im2col(x_n), x_n [C,H,W]: row (c,i,j), column (oh,ow).
template <class T>
void im2col(const T* __restrict x, const Geometry& g, T* __restrict col) {
  const std::size_t P = g.P();
  for (std::size_t c = 0; c < g.C; ++c)
    for (std::size_t i = 0; i < g.kh; ++i)
      for (std::size_t j = 0; j < g.kw; ++j) {
        T* row = col + ((c * g.kh + i) * g.kw + j) * P;
        const Span sp = valid_columns(g, j);
        const Index jo = Index(j * g.d) - Index(g.p);
        for (std::size_t oh = 0; oh < g.Ho; ++oh, row += g.Wo) {
          const Index ih = Index(oh * g.s + i * g.d) - Index(g.p);
          if (ih < 0 || ih >= Index(g.H)) {
            std::fill(row, row + g.Wo, T(0));
            continue;
          }
          const T* xr = x + (c * g.H + std::size_t(ih)) * g.W;
          std::fill(row, row + sp.lo, T(0));
          if (g.s == 1) {
            std::copy(xr + (Index(sp.lo) + jo), xr + (Index(sp.hi) + jo), row + sp.lo);
          } else {
            for (std::size_t ow = sp.lo; ow < sp.hi; ++ow) row[ow] = xr[Index(ow * g.s) + jo];
          }
          std::fill(row + sp.hi, row + g.Wo, T(0));
        }
      }
}

// dx_n [C,H,W] += col2im(dcol), dcol [K,P]: each column entry back onto the pixel it was read
// from (padding taps are dropped).
template <class T>
void col2im_add(const T* __restrict dcol, const Geometry& g, T* __restrict dx) {
  const std::size_t P = g.P();
  for (std::size_t c = 0; c < g.C; ++c)
    for (std::size_t i = 0; i < g.kh; ++i)
      for (std::size_t j = 0; j < g.kw; ++j) {
        const T* row = dcol + ((c * g.kh + i) * g.kw + j) * P;
        const Span sp = valid_columns(g, j);
        const Index jo = Index(j * g.d) - Index(g.p);
        for (std::size_t oh = 0; oh < g.Ho; ++oh, row += g.Wo) {
          const Index ih = Index(oh * g.s + i * g.d) - Index(g.p);
          if (ih < 0 || ih >= Index(g.H)) continue;
          T* xr = dx + (c * g.H + std::size_t(ih)) * g.W;
          if (g.s == 1) {
            T* out = xr + (Index(sp.lo) + jo);
            for (std::size_t ow = sp.lo; ow < sp.hi; ++ow) out[ow - sp.lo] += row[ow];
          } else {
            for (std::size_t ow = sp.lo; ow < sp.hi; ++ow) xr[Index(ow * g.s) + jo] += row[ow];
          }
        }
      }
}

std::string describe(const Shape& sx, const Shape& sw, const Conv2dOptions& o) {
  return "x is " + sx.str() + " and W is " + sw.str() + " with stride " + std::to_string(o.stride) +
         ", padding " + std::to_string(o.padding) + ", dilation " + std::to_string(o.dilation);
}

}  // namespace

template <class T>
Var<T> conv2d(const Var<T>& x, const Var<T>& W, const Var<T>& b, Conv2dOptions o, SourceLoc loc) {
  constexpr const char* name = "conv2d";
  detail::check_handle(name, "x", x);
  detail::check_handle(name, "W", W);
  detail::check_handle(name, "b", b);
  const Shape& sx = x.shape();
  const Shape& sw = W.shape();
  const Shape& sb = b.shape();
  if (sx.rank() != 4 || sw.rank() != 4)
    throw ShapeError(std::string(name) + ": x is " + sx.str() + " and W is " + sw.str() + ": " +
                     (sx.rank() != 4 ? "x" : "W") +
                     " is not 4-D; conv2d takes x [N,C,H,W] and W [O,C,kh,kw] (NCHW)");
  if (sx[1] != sw[1])
    throw ShapeError(std::string(name) + ": x is " + sx.str() + " but W is " + sw.str() +
                     ": x has " + std::to_string(sx[1]) + " channels and W expects " +
                     std::to_string(sw[1]));
  if (sb.rank() != 1 || sb[0] != sw[0])
    throw ShapeError(std::string(name) + ": W is " + sw.str() + " but b is " + sb.str() +
                     ": b must be [" + std::to_string(sw[0]) + "] (one bias per output channel)");
  if (o.stride == 0 || o.dilation == 0)
    throw ValueError(std::string(name) + ": " + describe(sx, sw, o) + ": " +
                     (o.stride == 0 ? "stride" : "dilation") + " must be at least 1");
  if (o.stride > INT_MAX || o.padding > INT_MAX || o.dilation > INT_MAX)
    throw ValueError(std::string(name) + ": " + describe(sx, sw, o) +
                     ": stride, padding and dilation must be at most " + std::to_string(INT_MAX));
  if (sw[2] == 0 || sw[3] == 0)
    throw ShapeError(std::string(name) + ": W is " + sw.str() + ": the kernel is empty");
  auto what = [&] { return describe(sx, sw, o); };  // built for a message only
  Geometry g{sx[0], sx[1],    sx[2],     sx[3],      sw[0], sw[2],
             sw[3], o.stride, o.padding, o.dilation, 0,     0};
  g.Ho = detail::window_count(name, what, "height", g.H, g.p,
                              detail::dilated_extent(name, what, g.kh, g.d), g.s);
  g.Wo = detail::window_count(name, what, "width", g.W, g.p,
                              detail::dilated_extent(name, what, g.kw, g.d), g.s);
  const Shape out{g.N, g.O, g.Ho, g.Wo};  // checks the output's size
  std::size_t col_size = 0;               // N·K·P: every image's im2col, kept for backward
  if (__builtin_mul_overflow(g.C, g.kh, &col_size) ||
      __builtin_mul_overflow(col_size, g.kw, &col_size) ||
      __builtin_mul_overflow(g.Ho, g.Wo, &col_size) ||
      __builtin_mul_overflow(g.K(), g.P(), &col_size) ||
      __builtin_mul_overflow(col_size, std::max<std::size_t>(g.N, 1), &col_size) ||
      col_size > Shape::kMaxSize)
    throw ShapeError(std::string(name) + ": " + what() +
                     ": the im2col matrices would have more elements than can be addressed");
  for (std::size_t dim : {g.O, g.K(), g.P()})
    if (dim > detail::kMaxGemmDim)
      throw ShapeError(std::string(name) + ": " + what() +
                       ": a GEMM dimension exceeds the BLAS integer range");
  const bool x_grad = x.requires_grad();

  auto op = x.tape().begin_op(name, {x, W, b}, out, loc);
  const std::size_t K = g.K(), P = g.P(), img = g.C * g.H * g.W;
  const bool keep = op.requires_grad() && !g.direct();  // im2col kept for dW
  T* cols = g.direct() ? nullptr : op.scratch(keep ? g.N * K * P : K * P);
  T* dcol = keep && x_grad ? op.scratch(K * P) : nullptr;  // dx's GEMM output, one image
  // Run now and again by replay, which refills the im2col scratch that dW reads.
  auto forward = [g, cols, keep, K, P, img](const T* xv, const T* Wv /* [O,K] */, const T* bv,
                                            T* y) {
    for (std::size_t n = 0; n < g.N; ++n) {
      const T* col = xv + n * img;
      if (!g.direct()) {
        T* c = cols + (keep ? n * K * P : 0);
        im2col(xv + n * img, g, c);
        col = c;
      }
      T* yn = y + n * g.O * P;
      gemm<T>(false, false, g.O, P, K, Wv, K, col, P, T(0), yn,
              P);  // y_n [O,P] = W [O,K]·col [K,P]
      for (std::size_t oc = 0; oc < g.O; ++oc) {
        T* r = yn + oc * P;
        const T bias = bv[oc];
        for (std::size_t q = 0; q < P; ++q) r[q] += bias;
      }
    }
  };
  return op.finish(
      [forward](const ForwardContext<T>& c) {
        forward(c.input_data(0), c.input_data(1), c.input_data(2), c.out_data());
      },
      [g, cols, dcol](const BackwardContext<T>& c) {
        const std::size_t K = g.K(), P = g.P(), img = g.C * g.H * g.W;
        const T* G = c.out_grad_data();  // [N,O,P]
        if (c.needs_grad(2)) {           // db[o] += Σ_{n,q} G[n,o,q]
          T* db = c.grad_data(2);
          for (std::size_t n = 0; n < g.N; ++n)
            for (std::size_t oc = 0; oc < g.O; ++oc) {
              const T* r = G + (n * g.O + oc) * P;
              T s = 0;
              for (std::size_t q = 0; q < P; ++q) s += r[q];
              db[oc] += s;
            }
        }
        if (c.needs_grad(1)) {  // dW [O,K] += G_n [O,P] · col_nᵀ [P,K]
          T* dW = c.grad_data(1);
          for (std::size_t n = 0; n < g.N; ++n) {
            const T* col = g.direct() ? c.input_data(0) + n * img : cols + n * K * P;
            gemm<T>(false, true, g.O, K, P, G + n * g.O * P, P, col, P, T(1), dW, K);
          }
        }
        if (c.needs_grad(0)) {
          const T* Wv = c.input_data(1);
          T* dx = c.grad_data(0);
          for (std::size_t n = 0; n < g.N; ++n) {
            const T* Gn = G + n * g.O * P;
            if (g.direct()) {  // dx_n [C,P] += Wᵀ [K=C,O] · G_n [O,P]
              gemm<T>(true, false, K, P, g.O, Wv, K, Gn, P, T(1), dx + n * img, P);
            } else {  // dcol [K,P] = Wᵀ [K,O] · G_n [O,P], then scattered back onto the pixels
              gemm<T>(true, false, K, P, g.O, Wv, K, Gn, P, T(0), dcol, P);
              col2im_add(dcol, g, dx + n * img);
            }
          }
        }
      });
}

template Var<float> conv2d<float>(const Var<float>&, const Var<float>&, const Var<float>&,
                                  Conv2dOptions, SourceLoc);
template Var<double> conv2d<double>(const Var<double>&, const Var<double>&, const Var<double>&,
                                    Conv2dOptions, SourceLoc);

}  // namespace wengert
