// Small vocabulary shared by the CUDA backend's headers, free of CUDA types so plain C++ can
// include it: the status value of CUDA calls, an opaque stream reference, and the always-on
// assertion for programmer errors (compute/ links no other sluice library, as compute/cpu's
// check.hpp explains).
#pragma once

#include <string>
#include <utility>

namespace sluice::cuda {

// nvcc's front end warns on every assignment of a [[nodiscard]] class (`status = f();`, whose
// result is a reference), which no host compiler does; so the attribute is what host compilers
// see, the engine's code included, and .cu files go without.
#if defined(__CUDACC__)
#define SLUICE_CUDA_NODISCARD
#else
#define SLUICE_CUDA_NODISCARD [[nodiscard]]
#endif

// Success, or the failed CUDA/cuBLAS call with the runtime's message. [[nodiscard]]: a failure
// the caller drops is a compile warning.
class SLUICE_CUDA_NODISCARD CudaStatus {
 public:
  CudaStatus() = default;
  static CudaStatus success() { return {}; }
  static CudaStatus failure(std::string message) {
    CudaStatus s;
    s.ok_ = false;
    s.message_ = std::move(message);
    return s;
  }
  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const std::string& message() const { return message_; }

 private:
  bool ok_ = true;
  std::string message_;
};

// A cudaStream_t without the CUDA headers; nullptr is the legacy default stream.
struct StreamRef {
  void* handle = nullptr;
};

namespace detail {
[[noreturn, gnu::cold]] void check_failed(const char* expr, const char* file, int line);
}  // namespace detail

}  // namespace sluice::cuda

#define SLUICE_CUDA_ASSERT(expr)                                                  \
  do {                                                                            \
    if (!(expr)) ::sluice::cuda::detail::check_failed(#expr, __FILE__, __LINE__); \
  } while (0)
