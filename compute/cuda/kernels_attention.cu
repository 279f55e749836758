// Attention over a device fp16 KV cache: storing a token's K/V rows, and causal attention with
// GQA, an optional sliding window and logit soft-capping.
//
// One thread block per (query, head) walks the visible keys in tiles of kAttnTile with an online
// softmax (running max and sum, the accumulator rescaled when the max grows), so memory is O(1)
// in the context length. As compute/cpu's attend, q is rounded to fp16 before it meets the fp16
// keys; unlike it, the softmax weights multiply the values unrounded and unnormalized (the CPU
// rounds the normalized weights to fp16): the outputs differ by at most ~2^-11 relative to the
// largest visible value, which test_cuda_device bounds.
#include <cuda_runtime.h>

#include <cstdint>

#include "compute/cuda/cuda_util.cuh"
#include "compute/cuda/kernels.hpp"
#include "compute/cuda/quant_common.cuh"

namespace sluice::cuda {
namespace {

// 4 warps per (query, head): each thread owns head_dim / 128 <= 4 output dims (kMaxHeadDim).
constexpr int kAttnThreads = 128;
constexpr int kAttnWarps = kAttnThreads / detail::kWarpSize;
constexpr int kDimsPerThread = kMaxHeadDim / kAttnThreads;
static_assert(kDimsPerThread * kAttnThreads == kMaxHeadDim);
// Keys per tile: their logits live in shared memory; 64 keeps every warp busy with 16 keys per
// tile and makes the per-tile synchronization cheap next to the 64 value rows read.
constexpr int kAttnTile = 64;

__global__ void kv_store_kernel(std::uint16_t* k_cache, std::uint16_t* v_cache, std::int64_t offset,
                                std::int64_t n, const float* k, const float* v) {
  for (std::int64_t i = detail::global_thread(); i < n; i += detail::grid_threads()) {
    k_cache[offset + i] = quant::fp32_to_fp16(k[i]);
    v_cache[offset + i] = quant::fp32_to_fp16(v[i]);
  }
}

__global__ void __launch_bounds__(kAttnThreads)
    attend_kernel(const float* q, const std::uint16_t* keys, const std::uint16_t* values, std::int64_t row_floats,
                  std::int64_t first_pos, AttentionConfig cfg, float* out) {
  __shared__ float q_half[kMaxHeadDim];  // q rounded to fp16, as the CPU rounds it
  __shared__ float weights[kAttnTile];   // the tile's logits, then their exp(logit - max)
  const int h = blockIdx.x;
  const std::int64_t query = blockIdx.y;
  const std::int64_t pos = first_pos + query;
  const int lane = threadIdx.x % detail::kWarpSize;
  const int warp = threadIdx.x / detail::kWarpSize;
  const int head_dim = cfg.head_dim;
  const std::int64_t kv_offset = static_cast<std::int64_t>(h / (cfg.n_head / cfg.n_head_kv)) * head_dim;
  const std::int64_t q_row = query * cfg.n_head * head_dim + static_cast<std::int64_t>(h) * head_dim;

  for (int d = threadIdx.x; d < head_dim; d += kAttnThreads) {
    q_half[d] = quant::fp16_to_fp32(quant::fp32_to_fp16(q[q_row + d]));
  }
  __syncthreads();

  const std::int64_t first = cfg.window > 0 && pos - cfg.window + 1 > 0 ? pos - cfg.window + 1 : 0;
  float running_max = -INFINITY;
  float running_sum = 0.0f;
  float acc[kDimsPerThread] = {};
  for (std::int64_t tile = first; tile <= pos; tile += kAttnTile) {
    const int n_tile = static_cast<int>(pos + 1 - tile < kAttnTile ? pos + 1 - tile : kAttnTile);
    // Logits: one warp per key, lanes over the head dims.
    for (int j = warp; j < n_tile; j += kAttnWarps) {
      const std::uint16_t* k = keys + (tile + j) * row_floats + kv_offset;
      float dot = 0.0f;
      for (int d = lane; d < head_dim; d += detail::kWarpSize) dot += q_half[d] * quant::fp16_to_fp32(k[d]);
      dot = detail::warp_sum(dot);
      if (lane == 0) {
        float logit = dot * cfg.scale;
        if (cfg.softcap > 0.0f) logit = cfg.softcap * tanhf(logit / cfg.softcap);
        weights[j] = logit;
      }
    }
    __syncthreads();
    float tile_max = -INFINITY;
    for (int j = 0; j < n_tile; ++j) tile_max = fmaxf(tile_max, weights[j]);
    const float new_max = fmaxf(running_max, tile_max);
    const float correction = running_max == -INFINITY ? 0.0f : expf(running_max - new_max);
    __syncthreads();  // every thread has read the logits before they become weights
    if (threadIdx.x < n_tile) weights[threadIdx.x] = expf(weights[threadIdx.x] - new_max);
    __syncthreads();
    running_sum *= correction;
#pragma unroll
    for (int k = 0; k < kDimsPerThread; ++k) acc[k] *= correction;
    for (int j = 0; j < n_tile; ++j) {
      const float w = weights[j];
      running_sum += w;
      const std::uint16_t* v = values + (tile + j) * row_floats + kv_offset;
#pragma unroll
      for (int k = 0; k < kDimsPerThread; ++k) {
        const int d = threadIdx.x + k * kAttnThreads;
        if (d < head_dim) acc[k] += w * quant::fp16_to_fp32(v[d]);
      }
    }
    running_max = new_max;
    __syncthreads();  // the next tile overwrites weights
  }
  const float inv = 1.0f / running_sum;
#pragma unroll
  for (int k = 0; k < kDimsPerThread; ++k) {
    const int d = threadIdx.x + k * kAttnThreads;
    if (d < head_dim) out[q_row + d] = acc[k] * inv;
  }
}

}  // namespace

CudaStatus kv_store(const DeviceKvView& kv, std::int64_t first_pos, std::int64_t n_tokens, const float* d_k,
                    const float* d_v, StreamRef stream) {
  SLUICE_CUDA_ASSERT(first_pos >= 0 && n_tokens >= 0 && first_pos + n_tokens <= kv.ctx);
  if (n_tokens == 0) return CudaStatus::success();
  const std::int64_t n = n_tokens * kv.row_floats;
  kv_store_kernel<<<detail::elementwise_blocks(n), detail::kElementwiseThreads, 0, detail::native(stream)>>>(
      kv.d_k, kv.d_v, first_pos * kv.row_floats, n, d_k, d_v);
  return detail::launch_status("kv_store");
}

CudaStatus attend(const float* d_q, std::int64_t n_queries, const DeviceKvView& kv, std::int64_t first_pos,
                  const AttentionConfig& config, float* d_out, StreamRef stream) {
  SLUICE_CUDA_ASSERT(config.n_head > 0 && config.n_head_kv > 0 && config.n_head % config.n_head_kv == 0);
  SLUICE_CUDA_ASSERT(config.head_dim > 0 && config.head_dim <= kMaxHeadDim);
  SLUICE_CUDA_ASSERT(kv.row_floats == static_cast<std::int64_t>(config.n_head_kv) * config.head_dim);
  // gridDim.y is limited to 65535 queries per call.
  SLUICE_CUDA_ASSERT(first_pos >= 0 && n_queries >= 0 && n_queries <= 65535 && first_pos + n_queries <= kv.ctx);
  if (n_queries == 0) return CudaStatus::success();
  const dim3 grid(static_cast<unsigned>(config.n_head), static_cast<unsigned>(n_queries));
  attend_kernel<<<grid, kAttnThreads, 0, detail::native(stream)>>>(d_q, kv.d_k, kv.d_v, kv.row_floats, first_pos,
                                                                   config, d_out);
  return detail::launch_status("attend");
}

}  // namespace sluice::cuda
