// Internal helpers of the CUDA translation units: runtime errors as CudaStatus, the StreamRef ->
// cudaStream_t cast, launch geometry, and warp/block reductions. Included only by .cu files.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "compute/cuda/cuda_status.hpp"

namespace sluice::cuda::detail {

inline constexpr int kWarpSize = 32;
inline constexpr unsigned kFullMask = 0xffffffffu;
// Threads of the 1-D elementwise kernels, and the grid cap of their grid-stride loops: 16384
// blocks of 256 threads keep every SM of an H200 (132 SMs x 2048 threads) busy many times over.
inline constexpr int kElementwiseThreads = 256;
inline constexpr std::int64_t kMaxElementwiseBlocks = 16384;

inline CudaStatus status_of(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return CudaStatus::success();
  return CudaStatus::failure(std::string(what) + ": " + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")");
}

// The status of the kernel launch just made (bad configuration, or an earlier asynchronous
// failure that is sticky).
inline CudaStatus launch_status(const char* kernel) { return status_of(cudaGetLastError(), kernel); }

inline cudaStream_t native(StreamRef stream) { return static_cast<cudaStream_t>(stream.handle); }

inline unsigned elementwise_blocks(std::int64_t n) {
  std::int64_t blocks = (n + kElementwiseThreads - 1) / kElementwiseThreads;
  if (blocks > kMaxElementwiseBlocks) blocks = kMaxElementwiseBlocks;
  return static_cast<unsigned>(blocks < 1 ? 1 : blocks);
}

__device__ __forceinline__ std::int64_t global_thread() {
  return static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ std::int64_t grid_threads() {
  return static_cast<std::int64_t>(gridDim.x) * blockDim.x;
}

// Butterfly reductions: every lane ends with the result, combined in the same order in every
// lane (v_l + v_{l ^ offset} for offsets 16, 8, 4, 2, 1).
template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(kFullMask, v, offset);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, offset));
  return v;
}

// Block-wide sum/max for blocks of up to 1024 threads (a multiple of 32); every thread gets the
// result. `scratch` holds 32 values; the call synchronizes the block twice.
template <typename T>
__device__ T block_sum(T v, T* scratch) {
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  const int warps = blockDim.x / kWarpSize;
  v = warp_sum(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  T total = lane < warps ? scratch[lane] : T(0);
  total = warp_sum(total);
  __syncthreads();  // scratch may be reused right after
  return total;
}

__device__ inline float block_max(float v, float* scratch) {
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  const int warps = blockDim.x / kWarpSize;
  v = warp_max(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float total = lane < warps ? scratch[lane] : -INFINITY;
  total = warp_max(total);
  __syncthreads();
  return total;
}

}  // namespace sluice::cuda::detail
