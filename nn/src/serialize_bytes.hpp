// wengert — internal: the parameter-file parser over bytes in memory.
//
// Not installed, not part of the API. nn::load_all reads a file and calls the same parser; the
// loader fuzzer (tests/fuzz/fuzz_load.cpp) calls it on arbitrary bytes.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include <wengert/tape.hpp>

namespace wengert::nn::detail {

/// As nn::load_all, over `size` bytes at `data` (a whole file's contents); messages name the
/// file as `shown`.
template <class T>
std::vector<Parameter<T>> load_all_from_bytes(const unsigned char* data, std::size_t size,
                                              const std::string& shown);

extern template std::vector<Parameter<float>> load_all_from_bytes<float>(const unsigned char*,
                                                                         std::size_t,
                                                                         const std::string&);
extern template std::vector<Parameter<double>> load_all_from_bytes<double>(const unsigned char*,
                                                                           std::size_t,
                                                                           const std::string&);

}  // namespace wengert::nn::detail
