# Finds wengert's dependencies; used by the build and (via find_dependency) by the installed
# package config. All are Debian 12 packages: xtl-dev, libxsimd-dev (8.x), libxtensor-dev,
# libopenblas-dev, zlib1g-dev.
find_package(xtl REQUIRED)
find_package(xsimd REQUIRED)
if(xsimd_VERSION VERSION_LESS 8 OR xsimd_VERSION VERSION_GREATER_EQUAL 9)
  # xtensor 0.24 is written against xsimd 8's API; xsimd 10 and later do not compile with it.
  message(FATAL_ERROR "wengert needs xsimd 8.x (Debian 12: libxsimd-dev); found ${xsimd_VERSION}")
endif()
find_package(xtensor REQUIRED)
# OpenBLAS: the ops call CBLAS directly (sgemm/dgemm with transpose flags and beta = 1).
set(BLA_VENDOR OpenBLAS)
find_package(BLAS REQUIRED)
set(THREADS_PREFER_PTHREAD_FLAG ON)
find_package(Threads REQUIRED)
# zlib (zlib1g-dev): gzip-compressed IDX datasets (io) and the parameter-file checksum (nn).
find_package(ZLIB REQUIRED)
