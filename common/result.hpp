// Error values for operating errors (I/O, corrupt data, bad input): a Result<T> holds a T or an
// Error the caller must look at. C++20 has no std::expected, so this is the small subset we use.
#pragma once

#include <string>
#include <utility>
#include <variant>

#include "common/assert.hpp"

namespace sluice {

enum class ErrorKind {
  io,          // the OS refused or failed a read/write (errno in Error::sys_errno)
  checksum,    // bytes read do not match their recorded checksum
  corrupt,     // a file's structure is invalid (bad magic, truncated, out of bounds)
  decompress,  // a codec rejected a frame
  cancelled,   // the operation was cancelled by its owner
  invalid,     // bad argument or configuration from the user
};

const char* to_string(ErrorKind kind);

struct Error {
  ErrorKind kind = ErrorKind::invalid;
  int sys_errno = 0;    // errno for ErrorKind::io, else 0
  std::string message;  // full human-readable context: file, offset, length, what failed
};

// Result<T, E>: either a value or an error. [[nodiscard]] so an ignored failure is a compile
// warning. E defaults to Error; modules with richer error context (prefetch) pass their own.
template <typename T, typename E = Error>
class [[nodiscard]] Result {
 public:
  Result(T value) : state_(std::move(value)) {}  // NOLINT: implicit by design
  Result(E error) : state_(std::move(error)) {}  // NOLINT

  bool ok() const { return state_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & {
    SLUICE_ASSERT_MSG(ok(), "Result::value() on an error");
    return std::get<0>(state_);
  }
  T&& value() && {
    SLUICE_ASSERT_MSG(ok(), "Result::value() on an error");
    return std::get<0>(std::move(state_));
  }
  const E& error() const {
    SLUICE_ASSERT_MSG(!ok(), "Result::error() on a value");
    return std::get<1>(state_);
  }

 private:
  std::variant<T, E> state_;
};

// Status: a Result with no value.
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT
  static Status success() { return {}; }
  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const {
    SLUICE_ASSERT_MSG(!ok_, "Status::error() on success");
    return error_;
  }

 private:
  Error error_;
  bool ok_ = true;
};

inline const char* to_string(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::io: return "io";
    case ErrorKind::checksum: return "checksum";
    case ErrorKind::corrupt: return "corrupt";
    case ErrorKind::decompress: return "decompress";
    case ErrorKind::cancelled: return "cancelled";
    case ErrorKind::invalid: return "invalid";
  }
  return "unknown";
}

}  // namespace sluice
