// Always-on checks for programmer errors inside compute/cpu (wrong type, misaligned row length).
// compute/ links no other sluice library, so it carries its own one-line assertion rather than
// common/assert.hpp.
#pragma once

namespace sluice::cpu::detail {
[[noreturn, gnu::cold]] void check_failed(const char* expr, const char* file, int line);
}

#define SLUICE_CPU_CHECK(expr)                                                   \
  do {                                                                           \
    if (!(expr)) ::sluice::cpu::detail::check_failed(#expr, __FILE__, __LINE__); \
  } while (0)
