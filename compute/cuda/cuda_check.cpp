// The parts of compute/cuda that are the same in every build: the always-on assertion
// (SLUICE_CUDA_ASSERT), the choice of matmul path, and names for reports.
#include <cstdio>
#include <cstdlib>

#include "compute/cuda/cuda_backend.hpp"
#include "compute/cuda/cuda_status.hpp"

namespace sluice::cuda {

MatmulPath choose_matmul_path(bool weight_type_supported, std::int64_t batch) {
  if (!weight_type_supported) return MatmulPath::unsupported;
  return batch <= kMaxGemvBatch ? MatmulPath::fused_gemv : MatmulPath::dequant_gemm;
}

MatmulPath matmul_path(GgmlType type, std::int64_t batch) { return choose_matmul_path(supports_weight_type(type), batch); }

const char* to_string(MatmulPath path) {
  switch (path) {
    case MatmulPath::unsupported: return "unsupported";
    case MatmulPath::fused_gemv: return "fused_gemv";
    case MatmulPath::dequant_gemm: return "dequant_gemm";
  }
  return "?";
}

namespace detail {

void check_failed(const char* expr, const char* file, int line) {
  std::fprintf(stderr, "sluice: compute/cuda check failed: %s (%s:%d)\n", expr, file, line);
  std::fflush(stderr);
  std::abort();
}

}  // namespace detail
}  // namespace sluice::cuda
