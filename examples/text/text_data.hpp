// The text both sequence examples (char_lstm, tiny_attention) train on: the licence texts every
// Debian system ships in /usr/share/common-licenses (about 260 KB of English), read as bytes.
// Symbolic links (GPL → GPL-3, ...) are skipped, so no text is counted twice. Every tenth block
// of 2,000 characters is held out, so both parts sample every licence.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <wengert/wengert.hpp>

namespace text {

/// Every regular file of `dir`, in name order, concatenated.
inline std::string read_corpus(const std::string& dir = "/usr/share/common-licenses") {
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.is_regular_file() && !e.is_symlink()) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  std::string all;
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    all.append(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  if (all.empty()) throw std::runtime_error("no text found in " + dir);
  return all;
}

/// ids cut into blocks of 2,000: every tenth block to `held`, the others to `train`.
inline void split_text(const std::vector<std::int32_t>& ids, std::vector<std::int32_t>& train,
                       std::vector<std::int32_t>& held) {
  constexpr std::size_t kBlock = 2000;
  for (std::size_t b = 0; b * kBlock < ids.size(); ++b) {
    auto first = ids.begin() + std::ptrdiff_t(b * kBlock);
    auto last = ids.begin() + std::ptrdiff_t(std::min(ids.size(), (b + 1) * kBlock));
    (b % 10 == 9 ? held : train).insert((b % 10 == 9 ? held : train).end(), first, last);
  }
}

/// The bytes that occur, numbered 0..size()−1.
struct Vocab {
  std::array<std::int32_t, 256> id{};
  std::vector<unsigned char> chars;
  explicit Vocab(const std::string& s) {
    std::array<bool, 256> seen{};
    for (unsigned char c : s) seen[c] = true;
    for (int c = 0; c < 256; ++c)
      if (seen[std::size_t(c)]) {
        id[std::size_t(c)] = std::int32_t(chars.size());
        chars.push_back(static_cast<unsigned char>(c));
      }
  }
  std::size_t size() const { return chars.size(); }
  std::vector<std::int32_t> encode(const std::string& s) const {
    std::vector<std::int32_t> out;
    out.reserve(s.size());
    for (unsigned char c : s) out.push_back(id[c]);
    return out;
  }
};

/// Bits per character of the unigram model fitted on `train`, scored on `test`: the baseline.
inline double unigram_bits(const std::vector<std::int32_t>& train,
                           const std::vector<std::int32_t>& test, std::size_t v) {
  std::vector<double> count(v, 1.0);  // add-one smoothing
  for (auto c : train) count[std::size_t(c)] += 1;
  const double total = double(train.size() + v);
  double bits = 0;
  for (auto c : test) bits -= std::log2(count[std::size_t(c)] / total);
  return bits / double(test.size());
}

/// B streams over `ids`, each a contiguous stretch; next() fills [T,B] inputs and the [T,B]
/// next characters (row-major, time first) and moves every stream T on, wrapping to its start.
struct Streams {
  const std::vector<std::int32_t>& ids;
  std::size_t B, T, len;
  std::vector<std::size_t> pos;
  Streams(const std::vector<std::int32_t>& data, std::size_t batch, std::size_t steps)
      : ids(data), B(batch), T(steps), len(data.size() / batch), pos(batch, 0) {
    if (len < T + 1) throw std::runtime_error("text too short for the batch and sequence length");
  }
  /// Returns true when the streams wrapped (an epoch ended): carried state should be reset.
  bool next(std::vector<std::int32_t>& x, std::vector<std::int32_t>& y) {
    x.resize(T * B);
    y.resize(T * B);
    bool wrapped = false;
    if (pos[0] + T + 1 > len) {
      std::fill(pos.begin(), pos.end(), 0);
      wrapped = true;
    }
    for (std::size_t b = 0; b < B; ++b) {
      const std::size_t base = b * len + pos[b];
      for (std::size_t t = 0; t < T; ++t) {
        x[t * B + b] = ids[base + t];
        y[t * B + b] = ids[base + t + 1];
      }
      pos[b] += T;
    }
    return wrapped;
  }
};

/// Uniform(−a, a) values for a weight.
template <class T>
void init_uniform(wengert::Parameter<T>& p, double a, std::mt19937_64& rng) {
  std::uniform_real_distribution<double> U(-a, a);
  T* d = p.data();
  for (std::size_t i = 0; i < p.size(); ++i) d[i] = static_cast<T>(U(rng));
}

/// The value of a command-line option "--name value", or `fallback`.
inline double arg(int argc, char** argv, const std::string& name, double fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (argv[i] == "--" + name) return std::stod(argv[i + 1]);
  return fallback;
}

}  // namespace text
