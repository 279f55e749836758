// The one exception type the engine throws for operating errors (I/O, checksum, corrupt file,
// decode, cancelled, bad input), so every front-end (run, batch, bench, server) catches one type
// and can act on what failed: the kind, the file, the extent and frame, the file offset, errno.
// Programming errors stay assertions (common/assert.hpp); Result<T> (common/result.hpp) is for
// errors a caller handles on the spot, and becomes an Exception where it crosses the engine.
//
// The model readers' GgufError and PackError derive from it, so a catch of sluice::Exception
// also sees a bad model file.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>

#include "common/result.hpp"

namespace sluice {

// Where an error happened; every field but `kind` is optional (empty / -1 / 0: not known).
struct ErrorContext {
  ErrorKind kind = ErrorKind::invalid;
  std::string file;          // the file read or written
  std::string extent;        // the extent (pack) or tensor / read range (GGUF) being read
  std::int64_t frame = -1;   // frame within the extent
  std::int64_t offset = -1;  // byte offset in `file`
  int sys_errno = 0;         // for ErrorKind::io
};

class Exception : public std::runtime_error {
 public:
  // `message` is the full human-readable text (it already names the file and offset); `context`
  // the same facts as fields, for code that acts on them.
  Exception(ErrorContext context, const std::string& message)
      : std::runtime_error(message), context_(std::move(context)) {}
  explicit Exception(const Error& error, std::string file = {})
      : std::runtime_error(error.message), context_{error.kind, std::move(file), {}, -1, -1, error.sys_errno} {}

  const ErrorContext& context() const { return context_; }
  ErrorKind kind() const { return context_.kind; }

 private:
  ErrorContext context_;
};

}  // namespace sluice
