// Test support: the message of the exception f() throws, so a test can check in one expression
// that an error names its file, offset, tensor or key.
#pragma once

#include <exception>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

namespace sluice::testing {

// e.what() of the exception of type E f() throws; "(no error)" when it returns normally (which
// no expected message contains, so a find() of the expected words fails and prints it). Any
// other exception propagates and fails the test.
template <typename E = std::exception, typename F>
std::string error_of(F&& f) {
  try {
    std::forward<F>(f)();
  } catch (const E& e) {
    return e.what();
  }
  return "(no error)";
}

// Every word of `words` appears in `what`.
inline void expect_words(const std::string& what, const std::vector<std::string>& words) {
  for (const std::string& w : words) EXPECT_NE(what.find(w), std::string::npos) << "'" << w << "' in: " << what;
}

}  // namespace sluice::testing
