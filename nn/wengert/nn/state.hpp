// wengert — state dicts: named tensors of any of three dtypes, and the file that holds them.
//
// A StateDict is an ordered list of named tensors, each a copy of float32, float64 or uint64
// values with a shape. It is what a model's state_dict() returns (its parameters by name,
// "fc0.weight"), what an optimizer and a scheduler add their state to, and what a checkpoint
// is: one StateDict saved as one file (nn/checkpoint.hpp).
//
//   nn::StateDict sd = model.state_dict();         // "fc0.weight", "fc0.bias", …
//   sd.set("epoch", std::uint64_t{3});
//   nn::save_state("run/model.wgrt", sd);          // atomic: temp file, fsync, rename, fsync dir
//   nn::StateDict back = nn::load_state("run/model.wgrt");
//   model.load_state_dict(back);                   // by name; ValueError listing any mismatch
//
// File format, version 2 (version 1, written by nn::save, is described in serialize.hpp and is
// read by load_state too). Integers are unsigned little-endian, no padding:
//
//   0       4          magic 'W' 'G' 'R' 'T'
//   4       4          format version (uint32) = 2
//   8       4          0 (uint32; version 1's file-wide dtype: in version 2 each tensor has one)
//   12      8          tensor count N (uint64)
//   20      …          N records: name length L (uint32), L bytes of name (UTF-8),
//                        dtype (uint32: 1 = float32, 2 = float64, 3 = uint64),
//                        rank R (uint32, ≤ 6), R dimensions (uint64 each),
//                        product(dims) values of the dtype, little-endian
//   end − 4 4          CRC-32 (zlib's) of every preceding byte
//
// Names are unique within a file. Reading is as strict as nn::load: only regular files, never
// more bytes than their size, every length checked before use, the checksum verified; every
// error is a ValueError naming the file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <variant>
#include <vector>

#include <wengert/tape.hpp>

namespace wengert::nn {

/// The element types a state dict holds.
enum class DType : std::uint32_t { kFloat32 = 1, kFloat64 = 2, kUInt64 = 3 };
const char* dtype_name(DType d);

template <class V>
constexpr DType dtype_of() {
  static_assert(
      std::is_same_v<V, float> || std::is_same_v<V, double> || std::is_same_v<V, std::uint64_t>,
      "a state dict holds float, double or std::uint64_t values");
  return std::is_same_v<V, float>    ? DType::kFloat32
         : std::is_same_v<V, double> ? DType::kFloat64
                                     : DType::kUInt64;
}

/// Ordered named tensors (copies). Setting an existing name replaces its tensor in place.
class StateDict {
 public:
  struct Entry {
    std::string name;
    Shape shape;
    std::variant<std::vector<float>, std::vector<double>, std::vector<std::uint64_t>> values;

    DType dtype() const { return static_cast<DType>(values.index() + 1); }
    std::size_t size() const { return shape.size(); }
    /// The values as V; V must be the entry's dtype (UsageError otherwise).
    template <class V>
    const std::vector<V>& as() const;
  };

  /// Adds or replaces `name`: shape.size() values copied from `data`.
  template <class V>
  void set(const std::string& name, const Shape& shape, const V* data);
  /// Adds or replaces `name` with a copy of p's value (its shape and values; not its gradient).
  template <class T>
  void set(const std::string& name, const Parameter<T>& p) {
    set(name, p.shape(), p.data());
  }
  /// Scalars, stored as rank-0 tensors.
  void set(const std::string& name, std::uint64_t v) { set(name, Shape{}, &v); }
  void set(const std::string& name, double v) { set(name, Shape{}, &v); }

  bool contains(const std::string& name) const { return index_.count(name) != 0; }
  /// The entry of that name, or null.
  const Entry* find(const std::string& name) const;
  /// The values of `name`, which must exist, hold V and have `shape`; otherwise a ValueError
  /// starting with `who` that says which of these fails.
  template <class V>
  const V* get(const std::string& name, const Shape& shape, const std::string& who) const;
  /// A rank-0 uint64 / float64 entry's value; ValueError as get().
  std::uint64_t get_u64(const std::string& name, const std::string& who) const;
  double get_f64(const std::string& name, const std::string& who) const;

  /// Removes `name` if present.
  void erase(const std::string& name);
  /// The entries whose names start with prefix + ".", that prefix removed.
  StateDict sub(const std::string& prefix) const;
  /// Adds every entry of `other` as prefix + "." + its name (replacing same-named ones).
  void merge(const std::string& prefix, const StateDict& other);

  const std::vector<Entry>& entries() const { return entries_; }
  void swap(StateDict& other) noexcept {
    entries_.swap(other.entries_);
    index_.swap(other.index_);
  }
  std::size_t size() const { return entries_.size(); }
  bool empty() const { return entries_.empty(); }

 private:
  Entry& slot(const std::string& name);
  std::vector<Entry> entries_;
  std::unordered_map<std::string, std::size_t> index_;
};

/// Writes `sd` to `path` in format version 2, atomically: a temporary file "<path>.tmp" is
/// written and fsync'ed, renamed over `path`, and the directory is fsync'ed. A crash or SIGKILL
/// at any moment leaves either the old file or the new one under `path` (and at most a stray
/// "<path>.tmp", which the next save replaces). ValueError naming the file on any failure.
void save_state(const std::string& path, const StateDict& sd);

/// Reads a state file (version 2, or a version 1 parameter file). All validation of nn::load;
/// errors are ValueErrors starting "load_state: '<path>': ".
StateDict load_state(const std::string& path);

}  // namespace wengert::nn
