# Compiler settings of wengert's own targets. Warnings apply to the code in this source tree
# only (directory scope): a project that adds wengert with add_subdirectory keeps its own flags.
include(CheckCXXCompilerFlag)

if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
  add_compile_options(-Wall -Wextra)
  if(WENGERT_WERROR)
    add_compile_options(-Werror)
  endif()
endif()
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  # gcc 12 reports -Wmaybe-uninitialized inside its own AVX-512 intrinsics (avx512fintrin.h)
  # wherever xsimd's kernels are inlined into our code; the reports are false positives, and
  # being inlined they escape the system-header exemption.
  add_compile_options(-Wno-maybe-uninitialized)
  # The same false positives as -Wuninitialized, which stays on for our code: a prelude read
  # first in every source ignores it for the intrinsics headers only (see the prelude).
  if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64|i.86")
    add_compile_options("SHELL:-include ${CMAKE_CURRENT_LIST_DIR}/gcc_intrinsics_prelude.hpp")
  endif()
endif()

# -march=native: xsimd then uses AVX-512 where the CPU has it. Added to the engine's PUBLIC
# options, because xsimd's batch types (and so the layout of what the headers inline) follow it.
set(WENGERT_ARCH_FLAGS "")
if(WENGERT_NATIVE)
  check_cxx_compiler_flag(-march=native WENGERT_HAVE_MARCH_NATIVE)
  if(WENGERT_HAVE_MARCH_NATIVE)
    set(WENGERT_ARCH_FLAGS -march=native)
  else()
    message(WARNING "wengert: ${CMAKE_CXX_COMPILER_ID} does not take -march=native; building for the default target")
  endif()
endif()

# One layer: a static library wengert_<layer> (exported as wengert::<layer>, alias of the same
# name in the build) whose headers are <layer>/wengert/..., included as <wengert/...> both in
# the tree and once installed. Links and definitions are the caller's.
function(wengert_add_layer layer)
  set(target wengert_${layer})
  add_library(${target} STATIC ${ARGN})
  add_library(wengert::${layer} ALIAS ${target})
  set_target_properties(${target} PROPERTIES EXPORT_NAME ${layer} OUTPUT_NAME ${target}
    POSITION_INDEPENDENT_CODE ON)
  target_include_directories(${target} PUBLIC
    $<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    # xsimd 8's AVX-512 kernels (exp, log, select) do not compile without optimisation: gcc's
    # intrinsics are macros with narrower casts when __OPTIMIZE__ is not defined. A Debug build
    # of the libraries therefore uses -Og (debuggable, and it defines __OPTIMIZE__).
    target_compile_options(${target} PRIVATE $<$<CONFIG:Debug>:-Og>)
  endif()
endfunction()
