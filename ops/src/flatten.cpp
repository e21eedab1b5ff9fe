// wengert — flatten (see flatten.hpp).
#include <wengert/ops/flatten.hpp>

#include <algorithm>
#include <string>

#include "detail/record.hpp"
#include "detail/rows.hpp"

namespace wengert {

template <class T>
Var<T> flatten(const Var<T>& x, SourceLoc loc) {
  detail::check_handle("flatten", "x", x);
  const Shape& sx = x.shape();
  if (sx.rank() == 0)
    throw ShapeError("flatten: x is " + sx.str() +
                     " (a scalar): flatten keeps the first axis, so x needs one");
  std::size_t rest = 1;  // (can overflow only when x is empty: [0, 2^40, 2^40])
  for (std::size_t d = 1; d < sx.rank(); ++d)
    if (__builtin_mul_overflow(rest, sx[d], &rest))
      throw ShapeError("flatten: x is " + sx.str() +
                       ": its trailing axes hold more elements than can be addressed");
  auto op = x.tape().begin_op("flatten", &x, 1, Shape{sx[0], rest}, loc);
  std::copy(op.input_data(0), op.input_data(0) + op.out_size(), op.out_data());
  return op.finish([](const BackwardContext<T>& c) {
    if (c.needs_grad(0)) detail::accumulate(c.out_grad_data(), c.grad_data(0), c.out_size());
  });
}

template Var<float> flatten<float>(const Var<float>&, SourceLoc);
template Var<double> flatten<double>(const Var<double>&, SourceLoc);

}  // namespace wengert
