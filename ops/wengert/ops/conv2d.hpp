// wengert — 2-D convolution, conv2d(x, W, b, stride, padding, dilation), as GEMMs on im2col.
//
// Layout: NCHW (x [N,C,H,W], W [O,C,kh,kw], y [N,O,Ho,Wo]), as PyTorch. With one image per
// GEMM, NCHW is what makes the GEMM's output already the image's output: y_n [O, Ho·Wo] =
// W [O, C·kh·kw] · col_n [C·kh·kw, Ho·Wo], where col_n is image n unfolded (im2col: row
// (c,i,j), column (oh,ow) holds x[n, c, oh·s − p + i·d, ow·s − p + j·d], 0 outside the image).
// No transpose of the output is needed, and W is the row-major [O,K] matrix as it is stored.
// NHWC would make the output a [Ho·Wo, O] matrix per image that the next NCHW-free layer could
// read as is, but every op here (pooling, batch norm, the flatten before a linear layer) then
// walks channels as the innermost axis; the profile of the CNN step (benchmarks/RESULTS.md)
// shows the GEMMs dominate either way, so the layout PyTorch users expect is kept.
//
// Memory: when the op needs a gradient, the im2col matrices of all N images stay in tape
// scratch (N·K·Ho·Wo values) for dW's GEMMs, plus one K×Ho·Wo buffer for dcol when x needs a
// gradient. Without a gradient (no-grad, evaluation) one image's buffer is reused. A 1×1
// kernel with stride 1 and no padding needs no im2col at all: col_n is x_n itself.
#pragma once

#include <cstddef>

#include <wengert/grad_mode.hpp>
#include <wengert/tape.hpp>

namespace wengert {

/// Stride, padding and dilation of a convolution, the same along both spatial axes.
struct Conv2dOptions {
  std::size_t stride = 1;    ///< ≥ 1
  std::size_t padding = 0;   ///< zeros added on every side of each image
  std::size_t dilation = 1;  ///< ≥ 1: the kernel taps are `dilation` pixels apart
};

/// y[n,o,oh,ow] = b[o] + Σ_{c,i,j} W[o,c,i,j] · x[n, c, oh·s − p + i·d, ow·s − p + j·d]
/// (x read as 0 outside the image), with Ho = ⌊(H + 2p − d·(kh − 1) − 1) / s⌋ + 1, likewise Wo.
///
/// Derivatives, with G the adjoint of y, G_n = G[n] read as [O, Ho·Wo] and col_n the im2col
/// matrix [K = C·kh·kw, Ho·Wo] of image n:
///   dW [O,K] += Σ_n G_n · col_nᵀ          (one beta = 1 GEMM per image)
///   dx_n     += col2im(Wᵀ · G_n)          (a GEMM, then a scatter-add back to the pixels)
///   db[o]    += Σ_{n,oh,ow} G[n,o,oh,ow]
///
/// @param x [N,C,H,W]
/// @param W [O,C,kh,kw], kh, kw ≥ 1
/// @param b [O]
/// @return  [N,O,Ho,Wo], recorded as "conv2d"
/// @throws ShapeError if a rank or the channel count C differs, b is not [O], or the padded
///         image is smaller than the dilated kernel (the message gives the computed output
///         size); ValueError if stride or dilation is 0
template <class T>
Var<T> conv2d(const Var<T>& x, const Var<T>& W, const Var<T>& b, Conv2dOptions options = {},
              SourceLoc loc = SourceLoc::current());

}  // namespace wengert
