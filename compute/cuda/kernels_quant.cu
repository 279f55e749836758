// Quantized-weight kernels: activation quantization (byte-identical to compute/cpu's
// quantize_activation_row), dequantization to fp32/fp16 (bit-identical values), and the fused
// dequantize-GEMV for batch 1..kMaxGemvBatch. The per-block arithmetic is quant_common.cuh's,
// shared with the host tests.
#include <cuda_runtime.h>

#include "compute/cuda/cuda_util.cuh"
#include "compute/cuda/kernels.hpp"
#include "compute/cuda/quant_traits.cuh"

namespace sluice::cuda {

using detail::kFullMask;
using detail::kWarpSize;

std::size_t type_row_bytes(GgmlType type, std::int64_t n) {
  const cpu::BlockGeometry* g = cpu::block_geometry(type);
  SLUICE_CUDA_ASSERT(g != nullptr);
  SLUICE_CUDA_ASSERT(n >= 0 && n % g->block_elements == 0);
  return cpu::row_bytes(*g, n);
}

namespace {

struct ActTypeOf {
  GgmlType* out;
  template <GgmlType T>
  void run() { *out = quant::TypeTraits<T>::kActType; }
};

// ---- activation quantization -------------------------------------------------------------------

// Q8_0 / Q8_1: one warp per 32-element block, one element per lane. The block's amax is a max
// (exact in any order); the scale math is quant_common.cuh's.
template <bool kWithSum>
__global__ void quantize_q8_32_kernel(const float* x, std::int64_t blocks_per_row, std::int64_t total_blocks,
                                      std::uint8_t* dst, std::size_t dst_row_bytes) {
  const std::int64_t warp = detail::global_thread() / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  if (warp >= total_blocks) return;  // uniform per warp
  const std::int64_t row = warp / blocks_per_row;
  const std::int64_t block = warp % blocks_per_row;
  const float v = x[row * blocks_per_row * 32 + block * 32 + lane];
  float amax = quant::fabs_hd(v);
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) amax = quant::fmax_hd(amax, __shfl_xor_sync(kFullMask, amax, offset));
  const float id = quant::q8_act_inverse_scale(amax);
  const std::int8_t q = quant::q8_act_quant(v, id);
  std::uint8_t* out = dst + row * dst_row_bytes;
  if constexpr (kWithSum) {
    auto* b = reinterpret_cast<quant::BlockQ8_1*>(out) + block;
    b->qs[lane] = q;
    const int sum = detail::warp_sum(static_cast<int>(q));
    if (lane == 0) {
      const float d = quant::q8_act_scale(amax);
      b->d = quant::fp32_to_fp16(d);
      b->s = quant::fp32_to_fp16(quant::mul_rn(d, static_cast<float>(sum)));
    }
  } else {
    auto* b = reinterpret_cast<quant::BlockQ8_0*>(out) + block;
    b->qs[lane] = q;
    if (lane == 0) b->d = quant::fp32_to_fp16(quant::q8_act_scale(amax));
  }
}

// Q8_K: one warp per 256-element super-block, 8 consecutive elements per lane (so lanes 2g and
// 2g+1 hold bsums group g). The scale comes from the value of largest magnitude, the first one
// on ties: reduced as (amax, index) pairs, larger amax first, then smaller index.
__global__ void quantize_q8_k_kernel(const float* x, std::int64_t blocks_per_row, std::int64_t total_blocks,
                                     std::uint8_t* dst, std::size_t dst_row_bytes) {
  constexpr int kPerLane = quant::kQK_K / kWarpSize;
  const std::int64_t warp = detail::global_thread() / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  if (warp >= total_blocks) return;
  const std::int64_t row = warp / blocks_per_row;
  const std::int64_t block = warp % blocks_per_row;
  const float* src = x + row * blocks_per_row * quant::kQK_K + block * quant::kQK_K + lane * kPerLane;
  float v[kPerLane];
  float amax = 0.0f;
  float max = 0.0f;
  int index = quant::kQK_K;  // none yet: loses every tie
  for (int i = 0; i < kPerLane; ++i) {
    v[i] = src[i];
    const float ax = quant::fabs_hd(v[i]);
    if (ax > amax) {
      amax = ax;
      max = v[i];
      index = lane * kPerLane + i;
    }
  }
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    const float o_amax = __shfl_xor_sync(kFullMask, amax, offset);
    const float o_max = __shfl_xor_sync(kFullMask, max, offset);
    const int o_index = __shfl_xor_sync(kFullMask, index, offset);
    if (o_amax > amax || (o_amax == amax && o_index < index)) {
      amax = o_amax;
      max = o_max;
      index = o_index;
    }
  }
  auto* b = reinterpret_cast<quant::BlockQ8_K*>(dst + row * dst_row_bytes) + block;
  if (amax == 0.0f) {
    for (int i = 0; i < kPerLane; ++i) b->qs[lane * kPerLane + i] = 0;
    if (lane % 2 == 0) b->bsums[lane / 2] = 0;
    if (lane == 0) b->d = 0.0f;
    return;
  }
  const float iscale = quant::q8_k_inverse_scale(max);
  int sum = 0;
  for (int i = 0; i < kPerLane; ++i) {
    const std::int8_t q = quant::q8_k_quant(v[i], iscale);
    b->qs[lane * kPerLane + i] = q;
    sum += q;
  }
  sum += __shfl_xor_sync(kFullMask, sum, 1);
  if (lane % 2 == 0) b->bsums[lane / 2] = static_cast<std::int16_t>(sum);
  if (lane == 0) b->d = quant::q8_k_scale(iscale);
}

template <GgmlType kAct>
__global__ void convert_floats_kernel(const float* x, std::int64_t n, void* dst) {
  for (std::int64_t i = detail::global_thread(); i < n; i += detail::grid_threads()) {
    if constexpr (kAct == GgmlType::F32) {
      static_cast<float*>(dst)[i] = x[i];
    } else if constexpr (kAct == GgmlType::F16) {
      static_cast<std::uint16_t*>(dst)[i] = quant::fp32_to_fp16(x[i]);
    } else {
      static_cast<std::uint16_t*>(dst)[i] = quant::fp32_to_bf16(x[i]);
    }
  }
}

// ---- dequantization ----------------------------------------------------------------------------

template <typename Block, int kBlockElems, OutputFormat kFormat>
__global__ void dequantize_kernel(const Block* src, std::int64_t n, void* dst) {
  for (std::int64_t i = detail::global_thread(); i < n; i += detail::grid_threads()) {
    const float v = quant::dequant_value(src[i / kBlockElems], static_cast<int>(i % kBlockElems));
    if constexpr (kFormat == OutputFormat::f16) {
      static_cast<std::uint16_t*>(dst)[i] = quant::fp32_to_fp16(v);
    } else {
      static_cast<float*>(dst)[i] = v;
    }
  }
}

template <typename Block, int kBlockElems>
CudaStatus launch_dequantize(const void* src, std::int64_t n, OutputFormat format, void* dst, StreamRef stream) {
  const auto* blocks = static_cast<const Block*>(src);
  const unsigned grid = detail::elementwise_blocks(n);
  if (format == OutputFormat::f16) {
    dequantize_kernel<Block, kBlockElems, OutputFormat::f16><<<grid, detail::kElementwiseThreads, 0, detail::native(stream)>>>(blocks, n, dst);
  } else {
    dequantize_kernel<Block, kBlockElems, OutputFormat::f32><<<grid, detail::kElementwiseThreads, 0, detail::native(stream)>>>(blocks, n, dst);
  }
  return detail::launch_status("dequantize");
}

struct DequantizeLaunch {
  const void* src;
  std::int64_t n;
  OutputFormat format;
  void* dst;
  StreamRef stream;
  CudaStatus* status;
  template <GgmlType T>
  void run() {
    using Tr = quant::TypeTraits<T>;
    *status = launch_dequantize<typename Tr::Block, Tr::kBlockElems>(src, n, format, dst, stream);
  }
};

// ---- fused dequantize-GEMV ---------------------------------------------------------------------

// Warps per thread block of the GEMV: one weight row per warp. 4 warps (128 threads) give each SM
// enough independent rows in flight to hide load latency without cutting occupancy.
constexpr int kGemvWarps = 4;

// Lane l of row r's warp adds the unit terms l, l + 32, ... of the row for every activation row,
// then the warp reduces: the order test::warp_order_sum emulates on the host.
template <GgmlType T>
__global__ void __launch_bounds__(kGemvWarps * kWarpSize)
    gemv_kernel(const std::uint8_t* weights, std::size_t weight_row_bytes, std::int64_t rows, std::int64_t units,
                const std::uint8_t* acts, std::size_t act_row_bytes, int batch, float* y) {
  using Tr = quant::TypeTraits<T>;
  using Block = typename Tr::Block;
  using ActBlock = typename Tr::ActBlock;
  const int lane = threadIdx.x % kWarpSize;
  const std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * kGemvWarps + threadIdx.x / kWarpSize;
  if (row >= rows) return;
  const Block* w = reinterpret_cast<const Block*>(weights + row * weight_row_bytes);
  float acc[kMaxGemvBatch];
#pragma unroll
  for (int b = 0; b < kMaxGemvBatch; ++b) acc[b] = 0.0f;
  for (std::int64_t u = lane; u < units; u += kWarpSize) {
    const std::int64_t block = u / Tr::kUnitsPerBlock;
    const int sub = static_cast<int>(u % Tr::kUnitsPerBlock);
    const Block& wb = w[block];
#pragma unroll
    for (int b = 0; b < kMaxGemvBatch; ++b) {
      if (b < batch) {
        const ActBlock* a = reinterpret_cast<const ActBlock*>(acts + b * act_row_bytes);
        acc[b] += quant::unit_dot(wb, a[block], sub);
      }
    }
  }
#pragma unroll
  for (int b = 0; b < kMaxGemvBatch; ++b) {
    if (b < batch) {
      const float sum = detail::warp_sum(acc[b]);
      if (lane == 0) y[b * rows + row] = sum;
    }
  }
}

struct GemvLaunch {
  const void* weights;
  std::int64_t rows;
  std::int64_t cols;
  const void* acts;
  std::int64_t batch;
  float* y;
  StreamRef stream;
  CudaStatus* status;
  template <GgmlType T>
  void run() {
    using Tr = quant::TypeTraits<T>;
    const std::int64_t units = cols / Tr::kUnitElems;
    const unsigned grid = static_cast<unsigned>((rows + kGemvWarps - 1) / kGemvWarps);
    gemv_kernel<T><<<grid, kGemvWarps * kWarpSize, 0, detail::native(stream)>>>(
        static_cast<const std::uint8_t*>(weights), type_row_bytes(T, cols), rows, units,
        static_cast<const std::uint8_t*>(acts), type_row_bytes(Tr::kActType, cols), static_cast<int>(batch), y);
    *status = detail::launch_status("gemv");
  }
};

}  // namespace

GgmlType gemv_activation_type(GgmlType type) {
  GgmlType act = GgmlType::F32;
  const bool known = quant::dispatch_weight_type(type, ActTypeOf{&act});
  SLUICE_CUDA_ASSERT(known);
  return act;
}

CudaStatus quantize_activations(GgmlType act_type, const float* d_x, std::int64_t rows, std::int64_t cols,
                                void* d_dst, StreamRef stream) {
  SLUICE_CUDA_ASSERT(rows >= 0 && cols >= 0);
  if (rows == 0 || cols == 0) return CudaStatus::success();
  const cudaStream_t s = detail::native(stream);
  auto* dst = static_cast<std::uint8_t*>(d_dst);
  const std::size_t dst_row_bytes = type_row_bytes(act_type, cols);
  switch (act_type) {
    case GgmlType::F32:
      convert_floats_kernel<GgmlType::F32><<<detail::elementwise_blocks(rows * cols), detail::kElementwiseThreads, 0, s>>>(d_x, rows * cols, d_dst);
      break;
    case GgmlType::F16:
      convert_floats_kernel<GgmlType::F16><<<detail::elementwise_blocks(rows * cols), detail::kElementwiseThreads, 0, s>>>(d_x, rows * cols, d_dst);
      break;
    case GgmlType::BF16:
      convert_floats_kernel<GgmlType::BF16><<<detail::elementwise_blocks(rows * cols), detail::kElementwiseThreads, 0, s>>>(d_x, rows * cols, d_dst);
      break;
    case GgmlType::Q8_0:
    case GgmlType::Q8_1:
    case GgmlType::Q8_K: {
      const int block_elems = act_type == GgmlType::Q8_K ? quant::kQK_K : 32;
      const std::int64_t per_row = cols / block_elems;
      const std::int64_t total = rows * per_row;
      constexpr int kWarpsPerBlock = 8;  // 256 threads: one warp per quant block
      const unsigned grid = static_cast<unsigned>((total + kWarpsPerBlock - 1) / kWarpsPerBlock);
      const int threads = kWarpsPerBlock * kWarpSize;
      if (act_type == GgmlType::Q8_0) {
        quantize_q8_32_kernel<false><<<grid, threads, 0, s>>>(d_x, per_row, total, dst, dst_row_bytes);
      } else if (act_type == GgmlType::Q8_1) {
        quantize_q8_32_kernel<true><<<grid, threads, 0, s>>>(d_x, per_row, total, dst, dst_row_bytes);
      } else {
        quantize_q8_k_kernel<<<grid, threads, 0, s>>>(d_x, per_row, total, dst, dst_row_bytes);
      }
      break;
    }
    default:
      SLUICE_CUDA_ASSERT(!"quantize_activations: not an activation type");
  }
  return detail::launch_status("quantize_activations");
}

CudaStatus dequantize(GgmlType type, const void* d_src, std::int64_t n, OutputFormat format, void* d_dst,
                      StreamRef stream) {
  SLUICE_CUDA_ASSERT(n >= 0);
  (void)type_row_bytes(type, n);  // checks the type and that n is whole blocks
  if (n == 0) return CudaStatus::success();
  if (type == GgmlType::Q8_1) return launch_dequantize<quant::BlockQ8_1, 32>(d_src, n, format, d_dst, stream);
  if (type == GgmlType::Q8_K) return launch_dequantize<quant::BlockQ8_K, quant::kQK_K>(d_src, n, format, d_dst, stream);
  CudaStatus status;
  const bool known = quant::dispatch_weight_type(type, DequantizeLaunch{d_src, n, format, d_dst, stream, &status});
  SLUICE_CUDA_ASSERT(known);
  return status;
}

CudaStatus gemv(GgmlType type, const void* d_weights, std::int64_t rows, std::int64_t cols, const void* d_acts,
                std::int64_t batch, float* d_y, StreamRef stream) {
  SLUICE_CUDA_ASSERT(rows >= 0 && cols >= 0 && batch >= 0 && batch <= kMaxGemvBatch);
  (void)type_row_bytes(type, cols);
  if (rows == 0 || batch == 0) return CudaStatus::success();
  CudaStatus status;
  const bool known = quant::dispatch_weight_type(type, GemvLaunch{d_weights, rows, cols, d_acts, batch, d_y, stream, &status});
  SLUICE_CUDA_ASSERT(known);
  return status;
}

}  // namespace sluice::cuda
