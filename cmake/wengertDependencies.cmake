# Finds wengert's dependencies; used by the build and (via find_dependency) by the installed
# package config. All are Debian 12 packages: xtl-dev, libxsimd-dev (8.x), libxtensor-dev,
# libxtensor-blas-dev, libopenblas-dev.
find_package(xtl REQUIRED)
find_package(xsimd REQUIRED)
find_package(xtensor REQUIRED)
find_package(xtensor-blas REQUIRED)
set(BLA_VENDOR OpenBLAS)
find_package(BLAS REQUIRED)
set(THREADS_PREFER_PTHREAD_FLAG ON)
find_package(Threads REQUIRED)
# zlib (zlib1g-dev): gzip-compressed IDX datasets and the parameter-file checksum.
find_package(ZLIB REQUIRED)
