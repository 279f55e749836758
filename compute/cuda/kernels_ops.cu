// Row ops of the transformer block on the device: RMSNorm, RoPE (adjacent pairs and NEOX), softmax,
// SwiGLU, GeGLU and argmax. Each follows compute/cpu/ops.cpp operation for operation (same
// casts, fp32 products and sums in double where the CPU uses them) so the only differences left
// are the summation order of the reductions and the device's expf/sinf/cosf/tanhf, which are
// within 2 ulp of the CPU's libm (CUDA C Programming Guide, "Mathematical Functions": maximum
// ulp errors of the single-precision functions without -use_fast_math).
#include <cuda_runtime.h>

#include <cmath>

#include "compute/cuda/cuda_util.cuh"
#include "compute/cuda/kernels.hpp"
#include "compute/cuda/quant_common.cuh"

namespace sluice::cuda {
namespace {

using quant::add_rn;
using quant::div_rn;
using quant::mul_rn;
using quant::sub_rn;

// Threads per row of the row-reduction kernels (RMSNorm, softmax, argmax): rows are 1k..256k
// floats, so 256 threads give each thread 4..1000 elements and a two-level reduction.
constexpr int kRowThreads = 256;

// ---- RMSNorm -------------------------------------------------------------------------------------

// As compute/cpu: each square rounded to float, summed in double; scale = 1 / sqrt(float(mean) +
// eps) in float; out = x * scale * weight. Only the double summation order differs.
__global__ void __launch_bounds__(kRowThreads)
    rms_norm_kernel(const float* x, const float* weight, float* out, std::int64_t n, float eps) {
  __shared__ double scratch[detail::kWarpSize];
  const float* xr = x + static_cast<std::int64_t>(blockIdx.x) * n;
  float* yr = out + static_cast<std::int64_t>(blockIdx.x) * n;
  double sum = 0.0;
  for (std::int64_t i = threadIdx.x; i < n; i += blockDim.x) sum += static_cast<double>(mul_rn(xr[i], xr[i]));
  sum = detail::block_sum(sum, scratch);
  const float mean = static_cast<float>(sum / static_cast<double>(n));
  const float scale = div_rn(1.0f, __fsqrt_rn(add_rn(mean, eps)));
  for (std::int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    yr[i] = mul_rn(mul_rn(xr[i], scale), weight ? weight[i] : 1.0f);
  }
}

// ---- RoPE ----------------------------------------------------------------------------------------

// One thread per rotated pair. theta_i is built as the CPU builds it: theta_0 = pos * freq_scale,
// theta_{i+1} = theta_i * theta_scale in float (i multiplications, at most head_dim / 2), so the
// angles are bit-identical and only sinf/cosf differ.
__global__ void rope_kernel(float* x, std::int64_t rows, int n_heads, int head_dim, const std::int32_t* positions,
                            RopeMode mode, int n_rot, float theta_scale, float freq_scale, const float* freq_factors) {
  const int half = n_rot / 2;
  const std::int64_t total = rows * n_heads * half;
  for (std::int64_t idx = detail::global_thread(); idx < total; idx += detail::grid_threads()) {
    const int i = static_cast<int>(idx % half);
    const std::int64_t head = idx / half;  // row * n_heads + h
    const std::int64_t row = head / n_heads;
    float theta = mul_rn(static_cast<float>(positions[row]), freq_scale);
    for (int k = 0; k < i; ++k) theta = mul_rn(theta, theta_scale);
    const float t = freq_factors ? div_rn(theta, freq_factors[i]) : theta;
    float s, c;
    sincosf(t, &s, &c);
    float* h = x + head * head_dim;
    const int a = mode == RopeMode::adjacent ? 2 * i : i;
    const int b = mode == RopeMode::adjacent ? 2 * i + 1 : i + half;
    const float x0 = h[a];
    const float x1 = h[b];
    h[a] = sub_rn(mul_rn(x0, c), mul_rn(x1, s));
    h[b] = add_rn(mul_rn(x0, s), mul_rn(x1, c));
  }
}

// ---- softmax -------------------------------------------------------------------------------------

// As compute/cpu: max, exp(x - max) (-inf -> 0), sum in double, times float(1 / sum).
__global__ void __launch_bounds__(kRowThreads) softmax_kernel(float* x, std::int64_t n) {
  __shared__ float max_scratch[detail::kWarpSize];
  __shared__ double sum_scratch[detail::kWarpSize];
  float* xr = x + static_cast<std::int64_t>(blockIdx.x) * n;
  float max = -INFINITY;
  for (std::int64_t i = threadIdx.x; i < n; i += blockDim.x) max = fmaxf(max, xr[i]);
  max = detail::block_max(max, max_scratch);
  double sum = 0.0;
  for (std::int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const float e = xr[i] == -INFINITY ? 0.0f : expf(sub_rn(xr[i], max));
    xr[i] = e;
    sum += static_cast<double>(e);
  }
  sum = detail::block_sum(sum, sum_scratch);
  const float inv = static_cast<float>(1.0 / sum);
  for (std::int64_t i = threadIdx.x; i < n; i += blockDim.x) xr[i] = mul_rn(xr[i], inv);
}

// ---- gated activations ---------------------------------------------------------------------------

__device__ __forceinline__ float silu(float x) { return div_rn(x, add_rn(1.0f, expf(-x))); }

// compute/cpu's gelu_tanh: 0.5 * x * (1 + tanh(sqrt(2/pi) * x * (1 + 0.044715 * x^2))), in its
// evaluation order.
__device__ __forceinline__ float gelu_tanh(float x) {
  constexpr float kSqrt2OverPi = 0.79788456080286535587989211986876f;
  constexpr float kCoef = 0.044715f;
  const float inner = mul_rn(mul_rn(kSqrt2OverPi, x), add_rn(1.0f, mul_rn(mul_rn(kCoef, x), x)));
  return mul_rn(mul_rn(0.5f, x), add_rn(1.0f, tanhf(inner)));
}

__global__ void swiglu_kernel(const float* gate, const float* up, float* out, std::int64_t n) {
  for (std::int64_t i = detail::global_thread(); i < n; i += detail::grid_threads()) out[i] = mul_rn(silu(gate[i]), up[i]);
}

// compute/cpu's geglu (ggml's GGML_GELU_FP16): for |gate| < 10 the GELU of gate rounded to fp16,
// itself rounded to fp16; 0 at or below -10; the identity at or above 10.
__global__ void geglu_kernel(const float* gate, const float* up, float* out, std::int64_t n) {
  constexpr float kGeluTableLimit = 10.0f;
  for (std::int64_t i = detail::global_thread(); i < n; i += detail::grid_threads()) {
    const float x = gate[i];
    float g;
    if (x <= -kGeluTableLimit) {
      out[i] = 0.0f;
      continue;
    } else if (x >= kGeluTableLimit) {
      g = x;
    } else {
      g = quant::fp16_to_fp32(quant::fp32_to_fp16(gelu_tanh(quant::fp16_to_fp32(quant::fp32_to_fp16(x)))));
    }
    out[i] = mul_rn(g, up[i]);
  }
}

// ---- argmax --------------------------------------------------------------------------------------

// Per row: the largest value, the first index on ties (engine/sampling.cpp's argmax). NaNs never
// win (a row of NaNs and -inf gives 0, as the CPU for a NaN-free row of -inf).
__global__ void __launch_bounds__(kRowThreads) argmax_kernel(const float* logits, std::int64_t n, std::int32_t* out) {
  __shared__ float best_values[kRowThreads / detail::kWarpSize];
  __shared__ std::int64_t best_indices[kRowThreads / detail::kWarpSize];
  const float* row = logits + static_cast<std::int64_t>(blockIdx.x) * n;
  float best = -INFINITY;
  std::int64_t best_index = n;  // none
  for (std::int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    if (row[i] > best || (best_index == n && row[i] == best)) {
      best = row[i];
      best_index = i;
    }
  }
  // (value desc, index asc) is a total order over the candidates, so the butterfly is consistent.
  for (int offset = detail::kWarpSize / 2; offset > 0; offset /= 2) {
    const float v = __shfl_xor_sync(detail::kFullMask, best, offset);
    const std::int64_t j = __shfl_xor_sync(detail::kFullMask, best_index, offset);
    if (v > best || (v == best && j < best_index)) {
      best = v;
      best_index = j;
    }
  }
  const int lane = threadIdx.x % detail::kWarpSize;
  const int warp = threadIdx.x / detail::kWarpSize;
  if (lane == 0) {
    best_values[warp] = best;
    best_indices[warp] = best_index;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kRowThreads / detail::kWarpSize; ++w) {
      if (best_values[w] > best || (best_values[w] == best && best_indices[w] < best_index)) {
        best = best_values[w];
        best_index = best_indices[w];
      }
    }
    out[blockIdx.x] = static_cast<std::int32_t>(best_index == n ? 0 : best_index);
  }
}

}  // namespace

CudaStatus rms_norm(const float* d_x, const float* d_weight, float* d_out, std::int64_t rows, std::int64_t n,
                    float eps, StreamRef stream) {
  SLUICE_CUDA_ASSERT(rows >= 0 && rows <= INT32_MAX && n > 0);
  if (rows == 0) return CudaStatus::success();
  rms_norm_kernel<<<static_cast<unsigned>(rows), kRowThreads, 0, detail::native(stream)>>>(d_x, d_weight, d_out, n, eps);
  return detail::launch_status("rms_norm");
}

CudaStatus rope(float* d_x, std::int64_t rows, std::int32_t n_heads, std::int32_t head_dim,
                const std::int32_t* d_positions, const RopeConfig& config, StreamRef stream) {
  SLUICE_CUDA_ASSERT(rows >= 0 && n_heads > 0 && head_dim > 0);
  SLUICE_CUDA_ASSERT(config.n_rot > 0 && config.n_rot % 2 == 0 && config.n_rot <= head_dim);
  if (rows == 0) return CudaStatus::success();
  // The CPU's expression, evaluated by the same host libm: the angle steps agree bit for bit.
  const float theta_scale = std::pow(config.freq_base, -2.0f / float(config.n_rot));
  const std::int64_t pairs = rows * n_heads * (config.n_rot / 2);
  rope_kernel<<<detail::elementwise_blocks(pairs), detail::kElementwiseThreads, 0, detail::native(stream)>>>(
      d_x, rows, n_heads, head_dim, d_positions, config.mode, config.n_rot, theta_scale, config.freq_scale,
      config.d_freq_factors);
  return detail::launch_status("rope");
}

CudaStatus softmax(float* d_x, std::int64_t rows, std::int64_t n, StreamRef stream) {
  SLUICE_CUDA_ASSERT(rows >= 0 && rows <= INT32_MAX && n > 0);
  if (rows == 0) return CudaStatus::success();
  softmax_kernel<<<static_cast<unsigned>(rows), kRowThreads, 0, detail::native(stream)>>>(d_x, n);
  return detail::launch_status("softmax");
}

CudaStatus swiglu(const float* d_gate, const float* d_up, float* d_out, std::int64_t n, StreamRef stream) {
  SLUICE_CUDA_ASSERT(n >= 0);
  if (n == 0) return CudaStatus::success();
  swiglu_kernel<<<detail::elementwise_blocks(n), detail::kElementwiseThreads, 0, detail::native(stream)>>>(d_gate, d_up, d_out, n);
  return detail::launch_status("swiglu");
}

CudaStatus geglu(const float* d_gate, const float* d_up, float* d_out, std::int64_t n, StreamRef stream) {
  SLUICE_CUDA_ASSERT(n >= 0);
  if (n == 0) return CudaStatus::success();
  geglu_kernel<<<detail::elementwise_blocks(n), detail::kElementwiseThreads, 0, detail::native(stream)>>>(d_gate, d_up, d_out, n);
  return detail::launch_status("geglu");
}

CudaStatus argmax(const float* d_logits, std::int64_t rows, std::int64_t n, std::int32_t* d_out, StreamRef stream) {
  SLUICE_CUDA_ASSERT(rows >= 0 && rows <= INT32_MAX && n > 0 && n <= INT32_MAX);
  if (rows == 0) return CudaStatus::success();
  argmax_kernel<<<static_cast<unsigned>(rows), kRowThreads, 0, detail::native(stream)>>>(d_logits, n, d_out);
  return detail::launch_status("argmax");
}

}  // namespace sluice::cuda
