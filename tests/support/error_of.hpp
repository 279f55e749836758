// Test support: the message of the exception f() throws, so a test can check in one expression
// that an error names its file, offset, tensor or key.
#pragma once

#include <exception>
#include <string>
#include <utility>

namespace sluice::testing {

// e.what() of the std::exception f() throws; "(no error)" when it returns normally (which no
// expected message contains, so a find() of the expected words fails and prints it).
template <typename F>
std::string error_of(F&& f) {
  try {
    std::forward<F>(f)();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace sluice::testing
