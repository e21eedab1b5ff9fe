// wengert — internal: the file parsers over bytes in memory, and the save fault hook.
//
// Not installed, not part of the API. nn::load_all and nn::load_state read a file and call the
// same parsers; the loader fuzzer (tests/fuzz/fuzz_load.cpp) calls them on arbitrary bytes. The
// crash tests (tests/nn/test_checkpoint.cpp) use the hook to SIGKILL a process mid-save.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include <wengert/nn/state.hpp>
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

/// As nn::load_state, over bytes in memory.
StateDict load_state_from_bytes(const unsigned char* data, std::size_t size,
                                const std::string& shown);

/// The stages of a save (nn::save, nn::save_state) at which the hook is called: after half a
/// megabyte of the temporary file has been written (files that large only), after the whole
/// temporary file is written, after it is fsync'ed and closed, after the rename.
enum class SaveStage { kMidData, kWritten, kSynced, kRenamed };
/// Installs a function called at each stage (null: none). Process-wide; for tests only.
void set_save_hook(void (*hook)(SaveStage));

}  // namespace wengert::nn::detail
