// wengert — error types.
//
// Every error wengert throws derives from wengert::Error (itself a std::runtime_error), so a
// caller can catch one type. The kinds say whose fault it is and what to fix:
//   ShapeError — an op was given tensors whose shapes do not fit together;
//   ValueError — a value is out of the op's domain (a label outside [0, c), NaN under anomaly
//                mode, a corrupt file);
//   UsageError — the tape was misused (stale handle, handle from another tape, wrong thread,
//                backward from a non-scalar without a seed).
//   ResourceError — memory could not be allocated (a tape's arena block, a Parameter's
//                storage): the message names what was being allocated (op or parameter and
//                shape) and the bytes asked for. Nothing was changed; a smaller request may work.
// std::bad_alloc does not escape from wengert's own allocations: it becomes a ResourceError.
// Messages always name the op (or tape call), the argument, and the shapes or values involved.
#pragma once

#include <stdexcept>
#include <string>

namespace wengert {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class ShapeError : public Error {
 public:
  using Error::Error;
};

class ValueError : public Error {
 public:
  using Error::Error;
};

class UsageError : public Error {
 public:
  using Error::Error;
};

class ResourceError : public Error {
 public:
  using Error::Error;
};

}  // namespace wengert
