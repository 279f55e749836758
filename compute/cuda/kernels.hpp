// Host-side launchers of the CUDA kernels (kernels_*.cu), with no CUDA type in sight: device
// pointers are plain pointers (d_*), the stream is a StreamRef, the cuBLAS handle a void*.
// CudaKernels (cuda_backend.hpp) is the engine's entry point and owns the scratch and handles;
// these are the pieces it and the device tests call. Defined only in builds with CUDA.
//
// Every launcher queues work on `stream` and returns the launch status (cudaGetLastError). Shapes
// follow compute/cpu: activations are row-major [rows][n] fp32; weights are row-major rows of
// ggml blocks; a token's q/k/v row holds its heads contiguously.
#pragma once

#include <cstddef>
#include <cstdint>

#include "compute/cuda/cuda_status.hpp"
#include "model/ggml_types.hpp"

namespace sluice::cuda {

// Largest batch the fused dequantize-GEMV handles; larger batches go through cuBLAS. At 8 the
// GEMV still reads each weight once and its per-row accumulators fit in registers; past it a
// tensor-core GEMM on dequantized fp16 weights wins (llama.cpp's CUDA backend switches from its
// MMVQ kernels at the same batch size).
inline constexpr int kMaxGemvBatch = 8;

// Rows of weights dequantized to fp16 at a time on the cuBLAS path are bounded by this many
// bytes of scratch: at 64 MiB a stripe is >= 2048 rows for rows up to 16384 columns, enough for
// cuBLAS to run at full rate, and small next to a GPU's memory.
inline constexpr std::size_t kGemmStripeBytes = std::size_t{64} << 20;

// Largest head_dim the attention kernel supports (each of its 128 threads keeps 4 output dims in
// registers); compute/cpu's attention has the same limit.
inline constexpr int kMaxHeadDim = 512;

enum class OutputFormat { f32, f16 };

enum class RopeMode {
  adjacent,  // llama ("norm"): rotates pairs (2i, 2i+1)
  neox,      // qwen2, gemma3 ("neox"): rotates pairs (i, i + n_rot/2)
};

struct RopeConfig {
  RopeMode mode = RopeMode::adjacent;
  std::int32_t n_rot = 0;      // rotated dims per head (pairs beyond it are left alone)
  float freq_base = 10000.0f;
  float freq_scale = 1.0f;     // linear position scaling (1 = none)
  const float* d_freq_factors = nullptr;  // n_rot/2 device floats (llama 3 rope_freqs), or null
};

// One layer's fp16 KV cache of one sequence on the device: [ctx][row_floats] halves for K and V,
// row_floats = n_head_kv * head_dim (compute/cpu's KvLayerView with KvType::f16).
struct DeviceKvView {
  std::uint16_t* d_k = nullptr;
  std::uint16_t* d_v = nullptr;
  std::int64_t ctx = 0;
  std::int64_t row_floats = 0;
};

struct AttentionConfig {
  std::int32_t n_head = 0;
  std::int32_t n_head_kv = 0;
  std::int32_t head_dim = 0;
  float scale = 0.0f;        // usually 1/sqrt(head_dim)
  std::int32_t window = 0;   // sliding window (0: none): key j visible iff pos - j < window
  float softcap = 0.0f;      // logit soft-capping (0: none)
};

// Bytes of one row of n elements of `type` (weights, or an activation type); n a multiple of
// the block size.
std::size_t type_row_bytes(GgmlType type, std::int64_t n);
// The activation type the fused GEMV for `type` consumes (ggml's vec_dot_type).
GgmlType gemv_activation_type(GgmlType type);

// ---- quantization ------------------------------------------------------------------------------

// rows x cols floats -> rows rows of act_type (F32, F16, BF16, Q8_0, Q8_1, Q8_K), each of
// type_row_bytes(act_type, cols) bytes, byte-identical to cpu::quantize_activation_row.
CudaStatus quantize_activations(GgmlType act_type, const float* d_x, std::int64_t rows, std::int64_t cols,
                                void* d_dst, StreamRef stream);
// n elements of `type` (weight types, Q8_0/Q8_1/Q8_K) -> fp32 (bit-identical to
// cpu::dequantize_row) or fp16 (that value rounded to nearest even).
CudaStatus dequantize(GgmlType type, const void* d_src, std::int64_t n, OutputFormat format, void* d_dst,
                      StreamRef stream);

// ---- matmul --------------------------------------------------------------------------------------

// d_y[b * rows + r] = dot(weight row r, activation row b) for b < batch <= kMaxGemvBatch, with the
// activations already in gemv_activation_type(type) (d_acts: batch rows of
// type_row_bytes(act, cols)). One warp per weight row.
CudaStatus gemv(GgmlType type, const void* d_weights, std::int64_t rows, std::int64_t cols,
                const void* d_acts, std::int64_t batch, float* d_y, StreamRef stream);

// Scratch the cuBLAS path needs for these shapes (activations converted to the GEMM input type,
// plus one dequantized weight stripe).
std::size_t gemm_workspace_bytes(GgmlType type, std::int64_t rows, std::int64_t cols, std::int64_t batch);
// The same product for any batch via cuBLAS: activations converted to fp16 (bf16 for bf16
// weights; f32 weights stay f32), quantized weights dequantized to fp16 a stripe at a time,
// fp32 accumulation. `blas` is a cublasHandle_t; its stream is set to `stream`.
CudaStatus gemm_dequant(GgmlType type, const void* d_weights, std::int64_t rows, std::int64_t cols,
                        const float* d_x, std::int64_t batch, float* d_y, void* d_workspace,
                        std::size_t workspace_bytes, void* blas, StreamRef stream);

// ---- row ops -------------------------------------------------------------------------------------

CudaStatus rms_norm(const float* d_x, const float* d_weight, float* d_out, std::int64_t rows, std::int64_t n,
                    float eps, StreamRef stream);
CudaStatus rope(float* d_x, std::int64_t rows, std::int32_t n_heads, std::int32_t head_dim,
                const std::int32_t* d_positions, const RopeConfig& config, StreamRef stream);
CudaStatus softmax(float* d_x, std::int64_t rows, std::int64_t n, StreamRef stream);
CudaStatus swiglu(const float* d_gate, const float* d_up, float* d_out, std::int64_t n, StreamRef stream);
CudaStatus geglu(const float* d_gate, const float* d_up, float* d_out, std::int64_t n, StreamRef stream);
CudaStatus argmax(const float* d_logits, std::int64_t rows, std::int64_t n, std::int32_t* d_out, StreamRef stream);

// ---- attention -------------------------------------------------------------------------------------

CudaStatus kv_store(const DeviceKvView& kv, std::int64_t first_pos, std::int64_t n_tokens, const float* d_k,
                    const float* d_v, StreamRef stream);
// n_queries rows of n_head * head_dim floats, query i at position first_pos + i; d_out the same
// shape. Keys/values of KV head h / (n_head / n_head_kv); q and the softmax weights meet the
// fp16 cache as compute/cpu's attend rounds them.
CudaStatus attend(const float* d_q, std::int64_t n_queries, const DeviceKvView& kv, std::int64_t first_pos,
                  const AttentionConfig& config, float* d_out, StreamRef stream);

}  // namespace sluice::cuda
