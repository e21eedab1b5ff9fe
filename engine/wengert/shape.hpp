// wengert — tensor shapes.
//
// A Shape is a small fixed-capacity value (rank ≤ kMaxRank) so that recording an op never
// allocates for its shape. Its element count is checked (≤ kMaxSize) wherever it is built or
// grown, and its dimensions cannot be written in place, so size() never wraps. Dimensions are
// row-major; a rank-0 shape is a scalar of size 1.
#pragma once

#include <array>
#include <cstddef>
#include <initializer_list>
#include <string>

#include <wengert/errors.hpp>

namespace wengert {

class Shape {
 public:
  static constexpr std::size_t kMaxRank = 6;

  Shape() = default;
  Shape(std::initializer_list<std::size_t> dims) { assign(dims.begin(), dims.size()); }
  /// From any container of integers with begin()/size(), e.g. an xtensor shape.
  template <class C, class = decltype(std::declval<const C&>().begin())>
  explicit Shape(const C& dims) {
    assign_range(dims.begin(), static_cast<std::size_t>(dims.size()));
  }

  std::size_t rank() const { return rank_; }
  /// Dimension i (read-only: a Shape's dimensions are checked where it is built, so none can be
  /// written afterwards; build a changed shape with with_dim or push_back).
  std::size_t operator[](std::size_t i) const { return dims_[i]; }
  /// A copy with dimension i set to n; throws ShapeError if i ≥ rank() or if the new shape
  /// has more elements than kMaxSize.
  Shape with_dim(std::size_t i, std::size_t n) const {
    if (i >= rank_)
      throw ShapeError("Shape: with_dim(" + std::to_string(i) + ", " + std::to_string(n) + ") on " +
                       str() + ", of rank " + std::to_string(rank_));
    Shape s = *this;
    s.dims_[i] = n;
    s.check_size();
    return s;
  }
  const std::size_t* begin() const { return dims_.data(); }
  const std::size_t* end() const { return dims_.data() + rank_; }
  /// Number of elements (1 for a scalar).
  std::size_t size() const {
    std::size_t n = 1;
    for (std::size_t i = 0; i < rank_; ++i) n *= dims_[i];
    return n;
  }
  /// Last dimension, or 1 for a scalar.
  std::size_t back() const { return rank_ ? dims_[rank_ - 1] : 1; }

  /// Appends a dimension; throws ShapeError (leaving the shape as it was) if the rank would
  /// exceed kMaxRank or the size kMaxSize.
  void push_back(std::size_t d) {
    if (rank_ == kMaxRank) throw ShapeError("Shape: rank above " + std::to_string(kMaxRank));
    dims_[rank_++] = d;
    try {
      check_size();
    } catch (...) {
      --rank_;  // a refused dimension leaves the shape as it was
      throw;
    }
  }

  /// Most elements a shape may have: their bytes (for double, twice over) fit in a size_t, so
  /// size() and every allocation size computed from it are exact.
  static constexpr std::size_t kMaxSize = ~std::size_t{0} >> 4;

  friend bool operator==(const Shape& a, const Shape& b) {
    if (a.rank_ != b.rank_) return false;
    for (std::size_t i = 0; i < a.rank_; ++i)
      if (a.dims_[i] != b.dims_[i]) return false;
    return true;
  }
  friend bool operator!=(const Shape& a, const Shape& b) { return !(a == b); }

  /// "[3,4]"; "[]" for a scalar.
  std::string str() const {
    std::string s = "[";
    for (std::size_t i = 0; i < rank_; ++i) {
      if (i) s += ',';
      s += std::to_string(dims_[i]);
    }
    return s + "]";
  }

 private:
  template <class It>
  void assign_range(It first, std::size_t n) {
    if (n > kMaxRank)
      throw ShapeError("Shape: rank " + std::to_string(n) + " is above the maximum " +
                       std::to_string(kMaxRank));
    rank_ = static_cast<unsigned char>(n);
    for (std::size_t i = 0; i < n; ++i, ++first) dims_[i] = static_cast<std::size_t>(*first);
    check_size();
  }
  // A shape like [2^32, 2^32] would wrap size() to 0: an op would allocate nothing and then
  // walk the dimensions out of bounds. Such a shape is refused where it is built.
  void check_size() const {
    std::size_t n = 1;
    bool overflow = false;
    for (std::size_t i = 0; i < rank_; ++i) {
      if (dims_[i] == 0) return;  // no elements, whatever the other dimensions
      overflow |= __builtin_mul_overflow(n, dims_[i], &n);
    }
    if (overflow || n > kMaxSize)
      throw ShapeError("Shape: " + str() + " has more elements than can be addressed (at most " +
                       std::to_string(kMaxSize) + ")");
  }
  void assign(const std::size_t* d, std::size_t n) { assign_range(d, n); }

  std::array<std::size_t, kMaxRank> dims_{};
  unsigned char rank_ = 0;
};

/// numpy broadcasting of two shapes; throws ShapeError naming `op` and both shapes.
Shape broadcast_shapes(const char* op, const Shape& a, const Shape& b);

}  // namespace wengert
