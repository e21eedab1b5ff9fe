// wengert — batched matmul (see bmm.hpp).
#include <wengert/ops/bmm.hpp>

#include <string>

#include "detail/gemm.hpp"
#include "detail/record.hpp"

namespace wengert {
namespace {

using detail::gemm;

// The matrices of one operand: `count` of them (1 for a broadcast rank-2 operand), each
// rows × cols as stored, `stride` elements apart (0 when broadcast).
struct Operand {
  std::size_t count, rows, cols, stride;
};

Operand operand(const Shape& s) {
  if (s.rank() == 2) return {1, s[0], s[1], 0};
  return {s[0], s[1], s[2], s[1] * s[2]};
}

}  // namespace

template <class T>
Var<T> bmm(const Var<T>& a, const Var<T>& b, bool ta, bool tb, SourceLoc loc) {
  constexpr const char* name = "bmm";
  detail::check_handle(name, "a", a);
  detail::check_handle(name, "b", b);
  const Shape sa = a.shape(), sb = b.shape();
  auto fail = [&](const std::string& why) {
    throw ShapeError(std::string(name) + ": a is " + sa.str() + (ta ? " (transposed)" : "") +
                     " and b is " + sb.str() + (tb ? " (transposed)" : "") + ": " + why);
  };
  if (sa.rank() < 2 || sa.rank() > 3 || sb.rank() < 2 || sb.rank() > 3)
    fail("each must be [batch, rows, cols] or a matrix [rows, cols]");
  if (sa.rank() == 2 && sb.rank() == 2) fail("neither is batched; use matmul for two matrices");
  const Operand A = operand(sa), B = operand(sb);
  if (sa.rank() == 3 && sb.rank() == 3 && sa[0] != sb[0])
    fail("batch sizes " + std::to_string(sa[0]) + " and " + std::to_string(sb[0]) + " differ");
  const std::size_t batch = sa.rank() == 3 ? sa[0] : sb[0];
  const std::size_t m = ta ? A.cols : A.rows, k = ta ? A.rows : A.cols;
  const std::size_t kb = tb ? B.cols : B.rows, n = tb ? B.rows : B.cols;
  if (k != kb)
    fail("inner dimensions " + std::to_string(k) + " and " + std::to_string(kb) + " differ");
  for (std::size_t d : {batch * m, n, k})
    if (d > detail::kMaxGemmDim) fail("a dimension exceeds the BLAS integer range");

  auto op = a.tape().begin_op(name, {a, b}, Shape{batch, m, n}, loc);
  // A [batch·m, k] untransposed times one matrix B: a single GEMM.
  const bool flat = sa.rank() == 3 && !ta && sb.rank() == 2;
  // Run now and again by replay.
  auto forward = [A, B, ta, tb, batch, m, n, k, flat](const T* pa, const T* pb, T* C) {
    if (flat) {
      gemm<T>(false, tb, batch * m, n, k, pa, A.cols, pb, B.cols, T(0), C, n);
    } else {
      for (std::size_t i = 0; i < batch; ++i)  // C[i] [m,n] = op(A[i])·op(B[i])
        gemm<T>(ta, tb, m, n, k, pa + i * A.stride, A.cols, pb + i * B.stride, B.cols, T(0),
                C + i * m * n, n);
    }
  };
  return op.finish(
      [forward](const ForwardContext<T>& c) {
        forward(c.input_data(0), c.input_data(1), c.out_data());
      },
      [A, B, ta, tb, batch, m, n, k, flat](const BackwardContext<T>& c) {
        const T* G = c.out_grad_data();  // [batch, m, n]
        const T* pa = c.input_data(0);
        const T* pb = c.input_data(1);
        if (c.needs_grad(0)) {
          T* dA = c.grad_data(0);
          if (flat) {  // dA [batch·m, k] += G [batch·m, n] · op(B)ᵀ
            gemm<T>(false, !tb, batch * m, k, n, G, n, pb, B.cols, T(1), dA, A.cols);
          } else {
            for (std::size_t i = 0; i < batch; ++i) {
              const T* Gi = G + i * m * n;
              const T* Bi = pb + i * B.stride;
              T* dAi = dA + i * A.stride;  // the same matrix for every i when a is broadcast
              if (!ta)                     // dA [m,k] += G [m,n] · op(B)ᵀ [n,k]
                gemm<T>(false, !tb, m, k, n, Gi, n, Bi, B.cols, T(1), dAi, A.cols);
              else  // dA [k,m] += op(B) [k,n] · Gᵀ [n,m]
                gemm<T>(tb, true, k, m, n, Bi, B.cols, Gi, n, T(1), dAi, A.cols);
            }
          }
        }
        if (c.needs_grad(1)) {
          T* dB = c.grad_data(1);
          if (flat) {
            if (!tb)  // dB [k,n] += Aᵀ [k, batch·m] · G [batch·m, n]
              gemm<T>(true, false, k, n, batch * m, pa, A.cols, G, n, T(1), dB, B.cols);
            else  // dB [n,k] += Gᵀ [n, batch·m] · A [batch·m, k]
              gemm<T>(true, false, n, k, batch * m, G, n, pa, A.cols, T(1), dB, B.cols);
          } else {
            for (std::size_t i = 0; i < batch; ++i) {
              const T* Gi = G + i * m * n;
              const T* Ai = pa + i * A.stride;
              T* dBi = dB + i * B.stride;
              if (!tb)  // dB [k,n] += op(A)ᵀ [k,m] · G [m,n]
                gemm<T>(!ta, false, k, n, m, Ai, A.cols, Gi, n, T(1), dBi, B.cols);
              else  // dB [n,k] += Gᵀ [n,m] · op(A) [m,k]
                gemm<T>(true, ta, n, k, m, Gi, n, Ai, A.cols, T(1), dBi, B.cols);
            }
          }
        }
      });
}

template Var<float> bmm<float>(const Var<float>&, const Var<float>&, bool, bool, SourceLoc);
template Var<double> bmm<double>(const Var<double>&, const Var<double>&, bool, bool, SourceLoc);

}  // namespace wengert
