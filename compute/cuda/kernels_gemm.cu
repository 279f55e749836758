// The large-batch matmul: activations converted to the GEMM input type, quantized weights
// dequantized to fp16 a stripe of rows at a time (kGemmStripeBytes of scratch), and cuBLAS
// GemmEx with fp32 accumulation. Weights already in f16/bf16/f32 go to cuBLAS as they are.
//
// Layout: cuBLAS is column-major. The row-major weights (rows x cols) read as a column-major
// cols x rows matrix A with leading dimension cols; the row-major activations (batch x cols) as a
// column-major cols x batch matrix B; the row-major output y (batch x rows) as a column-major
// rows x batch matrix C with leading dimension rows. So C = A^T * B (transa = T, transb = N), and
// a stripe of weight rows [r0, r0 + m) writes rows [r0, r0 + m) of C, i.e. C + r0, same ldc.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <climits>
#include <string>

#include "compute/cuda/cuda_util.cuh"
#include "compute/cuda/kernels.hpp"

namespace sluice::cuda {
namespace {

// Alignment of each scratch region (cuBLAS prefers 256-byte aligned operands for tensor cores).
constexpr std::size_t kScratchAlign = 256;

constexpr std::size_t align_up(std::size_t n) { return (n + kScratchAlign - 1) / kScratchAlign * kScratchAlign; }

bool is_float_type(GgmlType t) { return t == GgmlType::F32 || t == GgmlType::F16 || t == GgmlType::BF16; }

// The type activations are converted to for the GEMM: the weights' own float type, or fp16 for
// quantized weights (dequantized to fp16).
GgmlType gemm_input_type(GgmlType weights) { return is_float_type(weights) ? weights : GgmlType::F16; }

cudaDataType_t cuda_data_type(GgmlType t) {
  switch (t) {
    case GgmlType::F32: return CUDA_R_32F;
    case GgmlType::BF16: return CUDA_R_16BF;
    default: return CUDA_R_16F;
  }
}

// Rows of weights per dequantized stripe.
std::int64_t stripe_rows(std::int64_t rows, std::int64_t cols) {
  const std::int64_t fit = static_cast<std::int64_t>(kGemmStripeBytes / (static_cast<std::size_t>(cols) * 2));
  const std::int64_t r = fit < 1 ? 1 : fit;
  return r < rows ? r : rows;
}

const char* cublas_error_name(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "cuBLAS error";
  }
}

CudaStatus blas_status(cublasStatus_t status, const char* what) {
  if (status == CUBLAS_STATUS_SUCCESS) return CudaStatus::success();
  return CudaStatus::failure(std::string(what) + ": " + cublas_error_name(status) + " (" +
                             std::to_string(static_cast<int>(status)) + ")");
}

}  // namespace

std::size_t gemm_workspace_bytes(GgmlType type, std::int64_t rows, std::int64_t cols, std::int64_t batch) {
  SLUICE_CUDA_ASSERT(rows >= 0 && cols >= 0 && batch >= 0);
  (void)type_row_bytes(type, cols);
  std::size_t bytes = 0;
  if (type != GgmlType::F32) bytes += align_up(static_cast<std::size_t>(batch * cols) * 2);  // activations
  if (!is_float_type(type) && rows > 0) {
    bytes += align_up(static_cast<std::size_t>(stripe_rows(rows, cols) * cols) * 2);       // weight stripe
  }
  return bytes;
}

CudaStatus gemm_dequant(GgmlType type, const void* d_weights, std::int64_t rows, std::int64_t cols,
                        const float* d_x, std::int64_t batch, float* d_y, void* d_workspace,
                        std::size_t workspace_bytes, void* blas, StreamRef stream) {
  SLUICE_CUDA_ASSERT(rows >= 0 && cols >= 0 && batch >= 0);
  // cuBLAS takes int dimensions and leading dimensions.
  SLUICE_CUDA_ASSERT(rows <= INT_MAX && cols <= INT_MAX && batch <= INT_MAX);
  SLUICE_CUDA_ASSERT(workspace_bytes >= gemm_workspace_bytes(type, rows, cols, batch));
  SLUICE_CUDA_ASSERT(blas != nullptr);
  if (rows == 0 || batch == 0) return CudaStatus::success();
  if (cols == 0) {
    return detail::status_of(cudaMemsetAsync(d_y, 0, static_cast<std::size_t>(rows * batch) * sizeof(float),
                                             detail::native(stream)), "gemm_dequant: zero output");
  }
  auto handle = static_cast<cublasHandle_t>(blas);
  if (CudaStatus s = blas_status(cublasSetStream(handle, detail::native(stream)), "cublasSetStream"); !s) return s;

  const GgmlType input = gemm_input_type(type);
  auto* scratch = static_cast<std::uint8_t*>(d_workspace);
  const void* b = d_x;
  if (input != GgmlType::F32) {
    if (CudaStatus s = quantize_activations(input, d_x, batch, cols, scratch, stream); !s) return s;
    b = scratch;
    scratch += align_up(static_cast<std::size_t>(batch * cols) * 2);
  }

  const float alpha = 1.0f;
  const float beta = 0.0f;
  const cudaDataType_t data_type = cuda_data_type(input);
  const std::int64_t stripe = is_float_type(type) ? rows : stripe_rows(rows, cols);
  const std::size_t weight_row_bytes = type_row_bytes(type, cols);
  for (std::int64_t r0 = 0; r0 < rows; r0 += stripe) {
    const std::int64_t m = rows - r0 < stripe ? rows - r0 : stripe;
    const auto* stripe_src = static_cast<const std::uint8_t*>(d_weights) + static_cast<std::size_t>(r0) * weight_row_bytes;
    const void* a = stripe_src;
    if (!is_float_type(type)) {
      if (CudaStatus s = dequantize(type, stripe_src, m * cols, OutputFormat::f16, scratch, stream); !s) return s;
      a = scratch;
    }
    // Exact fp32 accumulation (no TF32) for f32 weights; fp16/bf16 products on tensor cores with
    // fp32 accumulation otherwise.
    const cublasStatus_t status = cublasGemmEx(
        handle, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(m), static_cast<int>(batch), static_cast<int>(cols), &alpha,
        a, data_type, static_cast<int>(cols), b, data_type, static_cast<int>(cols), &beta, d_y + r0, CUDA_R_32F,
        static_cast<int>(rows), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (CudaStatus s = blas_status(status, "cublasGemmEx"); !s) return s;
  }
  return detail::launch_status("gemm_dequant");
}

}  // namespace sluice::cuda
