// Read first in every translation unit of wengert's own targets built by gcc on x86 (the
// compiler's -include option; see cmake/wengertCompiler.cmake). Not installed, not part of the API.
//
// gcc 12 reports "'__Y' is used uninitialized" (-Wuninitialized) inside its own avx512fintrin.h
// wherever xsimd's AVX-512 kernels (exp, log, log1p, integer shifts) are inlined into our code:
// _mm512_undefined_epi32() and friends initialise a variable with itself on purpose, to produce
// an undefined register without an instruction. It is a false positive, and as the intrinsics
// are inlined it escapes the system-header exemption. A middle-end warning follows the pragma
// state at its own location — lines of avx512fintrin.h — so the warning is ignored while
// <immintrin.h> is read, and only then: the same warning in our own code is still reported.
// Including it here, before anything else, makes that hold in every source, whichever header
// (xtensor, xsimd, a kernel) would have read <immintrin.h> first.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
