// Always-on assertions for programmer errors (never for file contents or user input: those are
// operating errors and travel as sluice::Error values or exceptions with context).
#pragma once

namespace sluice::detail {
[[noreturn]] void assert_failed(const char* expr, const char* file, int line, const char* msg);
}

#define SLUICE_ASSERT(expr)                                                    \
  do {                                                                         \
    if (!(expr)) ::sluice::detail::assert_failed(#expr, __FILE__, __LINE__, ""); \
  } while (0)

#define SLUICE_ASSERT_MSG(expr, msg)                                              \
  do {                                                                            \
    if (!(expr)) ::sluice::detail::assert_failed(#expr, __FILE__, __LINE__, msg); \
  } while (0)
