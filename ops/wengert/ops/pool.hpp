// wengert — pooling over the spatial axes of NCHW images: max_pool2d, avg_pool2d and
// global_avg_pool.
//
// Layout NCHW, as conv2d (see conv2d.hpp for why): every (n, c) plane [H,W] is pooled on its
// own, so the kernels walk contiguous rows. Windows are square (kernel × kernel, the same
// stride and padding along both axes); the images need not be. The output size along an axis
// is ⌊(n + 2·padding − kernel) / stride⌋ + 1, as in PyTorch (floor mode).
//
// max_pool2d keeps, per output element, the index of the winning pixel in its plane (a uint32 in
// tape scratch, only when a gradient is needed): backward is then one scatter-add, without
// reading x again. Padding is −∞ for max pooling and may be at most kernel / 2, so that every
// window holds a pixel. avg_pool2d divides by kernel² whether or not the window overlaps the
// padding (PyTorch's count_include_pad = true): it is then one linear map, the same in every
// window. global_avg_pool averages each whole plane: [N,C,H,W] → [N,C], ready for a linear layer.
#pragma once

#include <cstddef>

#include <wengert/grad_mode.hpp>
#include <wengert/tape.hpp>

namespace wengert {

/// A square pooling window: kernel × kernel pixels, moved by `stride` (0: the kernel size, so
/// that windows do not overlap), `padding` pixels added on every side.
struct Pool2dOptions {
  std::size_t kernel = 2;   ///< ≥ 1
  std::size_t stride = 0;   ///< 0 means kernel
  std::size_t padding = 0;  ///< ≤ kernel / 2
};

/// y[n,c,oh,ow] = max over the window at (oh·s − p, ow·s − p) of x[n,c,·,·] (padding = −∞).
/// A NaN in a window wins it (the NaN propagates).
///
/// Derivative: dx[n,c,h,w] += G[n,c,oh,ow] for every output whose window's maximum is at (h,w)
/// (the first maximum in row-major order on ties); the other pixels get nothing.
///
/// @param x [N,C,H,W]
/// @return  [N,C,Ho,Wo], recorded as "max_pool2d"
/// @throws ShapeError if x is not 4-D, a plane has more than 2³² pixels, or the padded image is
///         smaller than the window (the message gives the computed output size); ValueError if
///         the kernel is 0 or the padding exceeds kernel / 2
template <class T>
Var<T> max_pool2d(const Var<T>& x, Pool2dOptions options = {},
                  SourceLoc loc = SourceLoc::current());

/// y[n,c,oh,ow] = (1 / kernel²) · Σ over the window of x[n,c,·,·] (padding counts as 0).
///
/// Derivative: dx[n,c,h,w] += Σ over the windows that hold (h,w) of G[n,c,oh,ow] / kernel².
///
/// @param x [N,C,H,W]
/// @return  [N,C,Ho,Wo], recorded as "avg_pool2d"
/// @throws as max_pool2d
template <class T>
Var<T> avg_pool2d(const Var<T>& x, Pool2dOptions options = {},
                  SourceLoc loc = SourceLoc::current());

/// y[n,c] = (1 / (H·W)) · Σ_{h,w} x[n,c,h,w].   Derivative: dx[n,c,h,w] += G[n,c] / (H·W).
///
/// @param x [N,C,H,W] with H·W ≥ 1
/// @return  [N,C], recorded as "global_avg_pool"
/// @throws ShapeError if x is not 4-D or its planes are empty
template <class T>
Var<T> global_avg_pool(const Var<T>& x, SourceLoc loc = SourceLoc::current());

}  // namespace wengert
