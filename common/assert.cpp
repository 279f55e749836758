#include "common/assert.hpp"

#include <cstdio>
#include <cstdlib>

namespace sluice::detail {
void assert_failed(const char* expr, const char* file, int line, const char* msg) {
  std::fprintf(stderr, "sluice: assertion failed: %s at %s:%d %s\n", expr, file, line, msg);
  std::fflush(stderr);
  std::abort();
}
}  // namespace sluice::detail
