// wengert — matmul (see matmul.hpp).
#include <wengert/ops/matmul.hpp>

#include <string>

#include "detail/gemm.hpp"
#include "detail/record.hpp"

namespace wengert {

namespace {

using detail::gemm;

const char* matmul_name(bool ta, bool tb) {
  return ta ? (tb ? "matmul_tt" : "matmul_tn") : (tb ? "matmul_nt" : "matmul");
}

// "[5,2] (transposed: [2,5])" when the operand is read transposed, else "[5,2]".
std::string operand_str(const Shape& s, bool transposed) {
  if (!transposed) return s.str();
  return s.str() + " (transposed: " + Shape{s[1], s[0]}.str() + ")";
}

}  // namespace

template <class T>
Var<T> matmul(const Var<T>& a, const Var<T>& b, bool ta, bool tb, SourceLoc loc) {
  const char* name = matmul_name(ta, tb);
  detail::check_handle(name, "a", a);
  detail::check_handle(name, "b", b);
  const Shape& sa = a.shape();
  const Shape& sb = b.shape();
  if (sa.rank() != 2 || sb.rank() != 2)
    throw ShapeError(std::string(name) + ": a is " + sa.str() + " and b is " + sb.str() + ": " +
                     (sa.rank() != 2 ? "a" : "b") + " is not 2-D; " + name +
                     " multiplies matrices, [m,k]·[k,n]");
  // op(A) is [m,k], op(B) is [k,n].
  const std::size_t m = ta ? sa[1] : sa[0], k = ta ? sa[0] : sa[1];
  const std::size_t kb = tb ? sb[1] : sb[0], n = tb ? sb[0] : sb[1];
  if (k != kb)
    throw ShapeError(std::string(name) + ": a is " + operand_str(sa, ta) + " but b is " +
                     operand_str(sb, tb) + ": inner dimensions " + std::to_string(k) + " and " +
                     std::to_string(kb) + " differ");
  for (std::size_t d : {m, n, k})
    if (d > detail::kMaxGemmDim)
      throw ShapeError(std::string(name) + ": a is " + sa.str() + " and b is " + sb.str() +
                       ": a dimension exceeds the BLAS integer range");

  const std::size_t lda = sa[1], ldb = sb[1];
  auto op = a.tape().begin_op(name, {a, b}, Shape{m, n}, loc);
  // C [m,n] = op(A)·op(B): one GEMM into tape memory, by the forward kernel (finish runs it).
  return op.finish(
      [ta, tb, k, lda, ldb](const ForwardContext<T>& c) {
        gemm<T>(ta, tb, c.out_shape()[0], c.out_shape()[1], k, c.input_data(0), lda,
                c.input_data(1), ldb, T(0), c.out_data(), c.out_shape()[1]);
      },
      [ta, tb](const BackwardContext<T>& c) {
        const Shape& sa = c.input_shape(0);
        const Shape& sb = c.input_shape(1);
        const std::size_t m = c.out_shape()[0], n = c.out_shape()[1];
        const std::size_t k = ta ? sa[0] : sa[1];
        const T* G = c.out_grad_data();  // [m,n]
        const T* A = c.input_data(0);
        const T* B = c.input_data(1);
        if (c.needs_grad(0)) {
          T* dA = c.grad_data(0);
          if (!ta)  // dA [m,k] += G [m,n] · op(B)ᵀ [n,k]
            gemm<T>(false, !tb, m, k, n, G, n, B, sb[1], T(1), dA, sa[1]);
          else  // dA [k,m] += op(B) [k,n] · Gᵀ [n,m]
            gemm<T>(tb, true, k, m, n, B, sb[1], G, n, T(1), dA, sa[1]);
        }
        if (c.needs_grad(1)) {
          T* dB = c.grad_data(1);
          if (!tb)  // dB [k,n] += op(A)ᵀ [k,m] · G [m,n]
            gemm<T>(!ta, false, k, n, m, A, sa[1], G, n, T(1), dB, sb[1]);
          else  // dB [n,k] += Gᵀ [n,m] · op(A) [m,k]
            gemm<T>(true, ta, n, k, m, G, n, A, sa[1], T(1), dB, sb[1]);
        }
      });
}

template Var<float> matmul<float>(const Var<float>&, const Var<float>&, bool, bool, SourceLoc);
template Var<double> matmul<double>(const Var<double>&, const Var<double>&, bool, bool, SourceLoc);

}  // namespace wengert
