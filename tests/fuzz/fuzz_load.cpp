// libFuzzer target over the file parsers (nn::load / nn::load_all, and nn::load_state, which
// reads checkpoints and state dicts): arbitrary bytes are parsed as a whole file, as float32
// and as float64 parameters and as a state dict, through the same internal entry points the
// file loaders use (nn/src/serialize_bytes.hpp).
//
// The contract checked: a file either loads, or the loader throws a wengert::ValueError whose
// message names the operation and the file and is one line; nothing else escapes (no
// ShapeError, no std::bad_alloc, no crash, no sanitizer report), and what loads is consistent:
// every Parameter's size is its shape's size and all their values fit in the input.
// A ResourceError is a finding too: every size is checked against the input's bytes before
// anything is allocated, so no input can ask for more memory than its own size.
//
// Built with libFuzzer by the fuzz preset (scripts/fuzz.sh runs it); replayed without libFuzzer
// by ctest (fuzz_load_corpus: tests/fuzz/load_corpus/) in every build.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <variant>

#include <wengert/tape.hpp>

#include "serialize_bytes.hpp"

namespace {

[[noreturn]] void finding(const std::string& what) {
  std::fprintf(stderr, "fuzz_load finding: %s\n", what.c_str());
  std::abort();
}

template <class T>
void parse(const std::uint8_t* data, std::size_t size) {
  const std::string name = "fuzz input";
  try {
    const auto ps = wengert::nn::detail::load_all_from_bytes<T>(data, size, name);
    std::size_t bytes = 0;
    for (const auto& p : ps) {
      if (p.size() != p.shape().size()) finding("a parameter's size is not its shape's");
      bytes += p.size() * sizeof(T);
    }
    if (bytes > size) finding("loaded more values than the input holds");
  } catch (const wengert::ValueError& e) {
    const std::string m = e.what();
    if (m.rfind("load_all: '" + name + "': ", 0) != 0)
      finding("a ValueError that does not start with the operation and the file: " + m);
    if (m.find('\n') != std::string::npos) finding("a message of more than one line: " + m);
  } catch (const wengert::Error& e) {
    finding(std::string("not a ValueError: ") + e.what());
  }
  // Anything else (std::bad_alloc, std::length_error, ...) escapes: libFuzzer reports it.
}

void parse_state(const std::uint8_t* data, std::size_t size) {
  const std::string name = "fuzz input";
  try {
    const wengert::nn::StateDict sd = wengert::nn::detail::load_state_from_bytes(data, size, name);
    std::size_t bytes = 0;
    for (const auto& e : sd.entries()) {
      const std::size_t n = std::visit([](const auto& v) { return v.size(); }, e.values);
      if (n != e.shape.size()) finding("a state entry's size is not its shape's");
      bytes += n * (e.dtype() == wengert::nn::DType::kFloat32 ? 4 : 8);
      if (sd.find(e.name) != &e) finding("a name that does not find its own entry");
    }
    if (bytes > size) finding("loaded more values than the input holds");
  } catch (const wengert::ValueError& e) {
    const std::string m = e.what();
    if (m.rfind("load_state: '" + name + "': ", 0) != 0)
      finding("a ValueError that does not start with the operation and the file: " + m);
    if (m.find('\n') != std::string::npos) finding("a message of more than one line: " + m);
  } catch (const wengert::Error& e) {
    finding(std::string("not a ValueError: ") + e.what());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  parse<float>(data, size);
  parse<double>(data, size);
  parse_state(data, size);
  return 0;
}
