// Per-type traits over quant_common.cuh for templated kernels (block struct, activation block,
// geometry), and row-level routines built from the block routines: dequantize a row, quantize an
// activation row, and the scalar dot product of a weight row with an activation row that
// reproduces compute/cpu's generic vec_dot exactly (summation order included).
//
// The row routines are __host__ __device__ like everything here, but their job is to be the
// readable reference that tests compare against compute/cpu: the kernels parallelize the unit
// terms instead (kernels_quant.cu).
#pragma once

#include "compute/cuda/quant_common.cuh"

namespace sluice::cuda::quant {

// Float "blocks" of one element, so every type has a distinct block type for overloading.
struct F32Elem {
  float v;
};
struct F16Elem {
  std::uint16_t bits;
};
struct BF16Elem {
  std::uint16_t bits;
};
static_assert(sizeof(F32Elem) == 4 && sizeof(F16Elem) == 2 && sizeof(BF16Elem) == 2);

SLUICE_HDI float dequant_value(const F32Elem& b, int) { return b.v; }
SLUICE_HDI float dequant_value(const F16Elem& b, int) { return fp16_to_fp32(b.bits); }
SLUICE_HDI float dequant_value(const BF16Elem& b, int) { return bf16_to_fp32(b.bits); }
// A float weight times an activation of the same type: the product ggml's scalar f32/f16/bf16
// dot products form (in float) before they accumulate.
SLUICE_HDI float unit_dot(const F32Elem& w, const F32Elem& a, int) { return mul_rn(w.v, a.v); }
SLUICE_HDI float unit_dot(const F16Elem& w, const F16Elem& a, int) { return mul_rn(fp16_to_fp32(w.bits), fp16_to_fp32(a.bits)); }
SLUICE_HDI float unit_dot(const BF16Elem& w, const BF16Elem& a, int) { return mul_rn(bf16_to_fp32(w.bits), bf16_to_fp32(a.bits)); }

// TypeTraits<T>: Block (the weight block), ActBlock (a block of vec_dot_type(T)), kActType,
// kBlockElems, kUnitsPerBlock (dot units per block; a unit is 32 elements for block types and
// one element for the float types) and kUnitElems.
template <GgmlType T>
struct TypeTraits;

#define SLUICE_TYPE_TRAITS(TYPE, BLOCK, ACT_TYPE, ACT_BLOCK, BLOCK_ELEMS, UNITS) \
  template <>                                                                    \
  struct TypeTraits<GgmlType::TYPE> {                                            \
    using Block = BLOCK;                                                         \
    using ActBlock = ACT_BLOCK;                                                  \
    static constexpr GgmlType kActType = GgmlType::ACT_TYPE;                     \
    static constexpr int kBlockElems = BLOCK_ELEMS;                              \
    static constexpr int kUnitsPerBlock = UNITS;                                 \
    static constexpr int kUnitElems = BLOCK_ELEMS / UNITS;                       \
  }

SLUICE_TYPE_TRAITS(F32, F32Elem, F32, F32Elem, 1, 1);
SLUICE_TYPE_TRAITS(F16, F16Elem, F16, F16Elem, 1, 1);
SLUICE_TYPE_TRAITS(BF16, BF16Elem, BF16, BF16Elem, 1, 1);
SLUICE_TYPE_TRAITS(Q4_0, BlockQ4_0, Q8_0, BlockQ8_0, 32, 1);
SLUICE_TYPE_TRAITS(Q4_1, BlockQ4_1, Q8_1, BlockQ8_1, 32, 1);
SLUICE_TYPE_TRAITS(Q5_0, BlockQ5_0, Q8_0, BlockQ8_0, 32, 1);
SLUICE_TYPE_TRAITS(Q5_1, BlockQ5_1, Q8_1, BlockQ8_1, 32, 1);
SLUICE_TYPE_TRAITS(Q8_0, BlockQ8_0, Q8_0, BlockQ8_0, 32, 1);
SLUICE_TYPE_TRAITS(Q2_K, BlockQ2_K, Q8_K, BlockQ8_K, 256, 8);
SLUICE_TYPE_TRAITS(Q3_K, BlockQ3_K, Q8_K, BlockQ8_K, 256, 8);
SLUICE_TYPE_TRAITS(Q4_K, BlockQ4_K, Q8_K, BlockQ8_K, 256, 8);
SLUICE_TYPE_TRAITS(Q5_K, BlockQ5_K, Q8_K, BlockQ8_K, 256, 8);
SLUICE_TYPE_TRAITS(Q6_K, BlockQ6_K, Q8_K, BlockQ8_K, 256, 8);
#undef SLUICE_TYPE_TRAITS

// Calls f.template run<T>() for the runtime weight type T (a functor with a templated member,
// since the CUDA build is C++17: no templated lambdas); false for a type without traits.
template <typename F>
inline bool dispatch_weight_type(GgmlType type, F&& f) {
  switch (type) {
    case GgmlType::F32: f.template run<GgmlType::F32>(); return true;
    case GgmlType::F16: f.template run<GgmlType::F16>(); return true;
    case GgmlType::BF16: f.template run<GgmlType::BF16>(); return true;
    case GgmlType::Q4_0: f.template run<GgmlType::Q4_0>(); return true;
    case GgmlType::Q4_1: f.template run<GgmlType::Q4_1>(); return true;
    case GgmlType::Q5_0: f.template run<GgmlType::Q5_0>(); return true;
    case GgmlType::Q5_1: f.template run<GgmlType::Q5_1>(); return true;
    case GgmlType::Q8_0: f.template run<GgmlType::Q8_0>(); return true;
    case GgmlType::Q2_K: f.template run<GgmlType::Q2_K>(); return true;
    case GgmlType::Q3_K: f.template run<GgmlType::Q3_K>(); return true;
    case GgmlType::Q4_K: f.template run<GgmlType::Q4_K>(); return true;
    case GgmlType::Q5_K: f.template run<GgmlType::Q5_K>(); return true;
    case GgmlType::Q6_K: f.template run<GgmlType::Q6_K>(); return true;
    default: return false;
  }
}

// ---- rows ----------------------------------------------------------------------------------------

// dst[0..n) = the row's values; n a multiple of the block size. Bit-exact with cpu::dequantize_row.
template <typename Block, int kBlockElems>
SLUICE_HD inline void dequantize_blocks(const void* src, float* dst, std::int64_t n) {
  const Block* blocks = static_cast<const Block*>(src);
  for (std::int64_t i = 0; i < n; ++i) dst[i] = dequant_value(blocks[i / kBlockElems], static_cast<int>(i % kBlockElems));
}

template <GgmlType T>
SLUICE_HD inline void dequantize_row(const void* src, float* dst, std::int64_t n) {
  dequantize_blocks<typename TypeTraits<T>::Block, TypeTraits<T>::kBlockElems>(src, dst, n);
}

// The float-type dot: each product in float, the sum in double (ggml's scalar f32/f16/bf16).
template <typename Elem>
SLUICE_HD inline float vec_dot_float_row(std::int64_t n, const void* w, const void* a) {
  const Elem* x = static_cast<const Elem*>(w);
  const Elem* y = static_cast<const Elem*>(a);
  double sum = 0.0;
  for (std::int64_t i = 0; i < n; ++i) sum += static_cast<double>(unit_dot(x[i], y[i], 0));
  return static_cast<float>(sum);
}

// The 32-element types: block terms added in order into one float.
template <typename Block, typename ActBlock>
SLUICE_HD inline float vec_dot_legacy_row(std::int64_t n, const void* w, const void* a) {
  const Block* x = static_cast<const Block*>(w);
  const ActBlock* y = static_cast<const ActBlock*>(a);
  float sumf = 0.0f;
  for (std::int64_t i = 0; i < n / 32; ++i) sumf = add_rn(sumf, unit_dot(x[i], y[i], 0));
  return sumf;
}

SLUICE_HD inline float vec_dot_q2_k_row(std::int64_t n, const void* w, const void* a) {
  const BlockQ2_K* x = static_cast<const BlockQ2_K*>(w);
  const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
  float sumf = 0.0f;
  for (std::int64_t i = 0; i < n / kQK_K; ++i) {
    int summs = 0;
    int isum = 0;
    for (int g = 0; g < 16; ++g) {
      summs += y[i].bsums[g] * (x[i].scales[g] >> 4);
      isum += (x[i].scales[g] & 0xf) * group16_dot(x[i], y[i], g);
    }
    const float dall = mul_rn(y[i].d, fp16_to_fp32(x[i].d));
    const float dmin = mul_rn(y[i].d, fp16_to_fp32(x[i].dmin));
    sumf = add_rn(sumf, sub_rn(mul_rn(dall, static_cast<float>(isum)), mul_rn(dmin, static_cast<float>(summs))));
  }
  return sumf;
}

// Q3_K and Q6_K: ggml's generic kernels keep 8 integer lanes (element e goes to lane e % 8), scale
// each lane's sum per super-block into 8 float sums, and add those at the end.
SLUICE_HDI int k16_scale(const BlockQ3_K& b, int g) { return scale_q3_k(g, b.scales); }
SLUICE_HDI int k16_scale(const BlockQ6_K& b, int g) { return b.scales[g]; }

template <typename Block>
SLUICE_HD inline float vec_dot_k16_row(std::int64_t n, const void* w, const void* a) {
  const Block* x = static_cast<const Block*>(w);
  const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
  float sums[8] = {};
  for (std::int64_t i = 0; i < n / kQK_K; ++i) {
    int aux32[8] = {};
    // |q8 * q| <= 128 * 32 fits the int16 ggml narrows each product to.
    for (int e = 0; e < kQK_K; ++e) aux32[e % 8] += k16_scale(x[i], e / 16) * (y[i].qs[e] * quant_value(x[i], e));
    const float d = mul_rn(fp16_to_fp32(x[i].d), y[i].d);
    for (int l = 0; l < 8; ++l) sums[l] = add_rn(sums[l], mul_rn(d, static_cast<float>(aux32[l])));
  }
  float sumf = 0.0f;
  for (int l = 0; l < 8; ++l) sumf = add_rn(sumf, sums[l]);
  return sumf;
}

// Q4_K and Q5_K: the same 8 lanes with 32-element scales, and the min term subtracted per
// super-block from the running sum.
template <typename Block>
SLUICE_HD inline float vec_dot_k32_row(std::int64_t n, const void* w, const void* a) {
  const Block* x = static_cast<const Block*>(w);
  const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
  float sums[8] = {};
  float sumf = 0.0f;
  for (std::int64_t i = 0; i < n / kQK_K; ++i) {
    int scales[8];
    int mins[8];
    for (int j = 0; j < 8; ++j) scale_min_k4(j, x[i].scales, scales[j], mins[j]);
    int sumi = 0;
    for (int g = 0; g < 16; ++g) sumi += y[i].bsums[g] * mins[g / 2];
    int aux32[8] = {};
    for (int e = 0; e < kQK_K; ++e) aux32[e % 8] += scales[e / 32] * (y[i].qs[e] * quant_value(x[i], e));
    const float d = mul_rn(fp16_to_fp32(x[i].d), y[i].d);
    for (int l = 0; l < 8; ++l) sums[l] = add_rn(sums[l], mul_rn(d, static_cast<float>(aux32[l])));
    const float dmin = mul_rn(fp16_to_fp32(x[i].dmin), y[i].d);
    sumf = sub_rn(sumf, mul_rn(dmin, static_cast<float>(sumi)));
  }
  for (int l = 0; l < 8; ++l) sumf = add_rn(sumf, sums[l]);
  return sumf;
}

// Scalar dot of a weight row of T with an activation row in TypeTraits<T>::kActType; equal, bit
// for bit, to cpu::vec_dot(T, ...) (the generic kernels), given the same compiler rounding rules.
template <GgmlType T>
SLUICE_HD inline float vec_dot_row(std::int64_t n, const void* w, const void* a) {
  using Tr = TypeTraits<T>;
  if constexpr (T == GgmlType::F32 || T == GgmlType::F16 || T == GgmlType::BF16) {
    return vec_dot_float_row<typename Tr::Block>(n, w, a);
  } else if constexpr (T == GgmlType::Q2_K) {
    return vec_dot_q2_k_row(n, w, a);
  } else if constexpr (T == GgmlType::Q3_K || T == GgmlType::Q6_K) {
    return vec_dot_k16_row<typename Tr::Block>(n, w, a);
  } else if constexpr (T == GgmlType::Q4_K || T == GgmlType::Q5_K) {
    return vec_dot_k32_row<typename Tr::Block>(n, w, a);
  } else {
    return vec_dot_legacy_row<typename Tr::Block, typename Tr::ActBlock>(n, w, a);
  }
}

// Sum of a row's unit terms in unit order: what a GEMV with a single lane would compute. Differs
// from vec_dot_row only in float rounding (the K-quants fold scales per unit, not per lane).
template <GgmlType T>
SLUICE_HD inline float unit_sum_row(std::int64_t n, const void* w, const void* a) {
  using Tr = TypeTraits<T>;
  const auto* x = static_cast<const typename Tr::Block*>(w);
  const auto* y = static_cast<const typename Tr::ActBlock*>(a);
  float sum = 0.0f;
  for (std::int64_t u = 0; u < n / Tr::kUnitElems; ++u) {
    sum = add_rn(sum, unit_dot(x[u / Tr::kUnitsPerBlock], y[u / Tr::kUnitsPerBlock], static_cast<int>(u % Tr::kUnitsPerBlock)));
  }
  return sum;
}

// Quantize n floats of activations to act_type (F32, F16, BF16, Q8_0, Q8_1, Q8_K); equal, byte for
// byte, to cpu::quantize_activation_row. Host-side dispatcher (the device quantizes warp-wide).
inline bool quantize_activation_row(GgmlType act_type, const float* x, void* dst, std::int64_t n) {
  switch (act_type) {
    case GgmlType::F32:
      std::memcpy(dst, x, static_cast<std::size_t>(n) * sizeof(float));
      return true;
    case GgmlType::F16:
      for (std::int64_t i = 0; i < n; ++i) static_cast<std::uint16_t*>(dst)[i] = fp32_to_fp16(x[i]);
      return true;
    case GgmlType::BF16:
      for (std::int64_t i = 0; i < n; ++i) static_cast<std::uint16_t*>(dst)[i] = fp32_to_bf16(x[i]);
      return true;
    case GgmlType::Q8_0:
      for (std::int64_t b = 0; b < n / 32; ++b) quantize_block_q8_0_act(x + 32 * b, static_cast<BlockQ8_0*>(dst)[b]);
      return true;
    case GgmlType::Q8_1:
      for (std::int64_t b = 0; b < n / 32; ++b) quantize_block_q8_1_act(x + 32 * b, static_cast<BlockQ8_1*>(dst)[b]);
      return true;
    case GgmlType::Q8_K:
      for (std::int64_t b = 0; b < n / kQK_K; ++b) quantize_block_q8_k(x + kQK_K * b, static_cast<BlockQ8_K*>(dst)[b]);
      return true;
    default:
      return false;
  }
}

// Host-side dispatchers over the templates above; false for a type they do not cover.
namespace detail {
struct DequantizeRun {
  const void* src;
  float* dst;
  std::int64_t n;
  template <GgmlType T>
  void run() { quant::dequantize_row<T>(src, dst, n); }
};
struct VecDotRun {
  std::int64_t n;
  const void* w;
  const void* a;
  float* out;
  template <GgmlType T>
  void run() { *out = quant::vec_dot_row<T>(n, w, a); }
};
struct UnitSumRun {
  std::int64_t n;
  const void* w;
  const void* a;
  float* out;
  template <GgmlType T>
  void run() { *out = quant::unit_sum_row<T>(n, w, a); }
};
}  // namespace detail

inline bool dequantize_row(GgmlType type, const void* src, float* dst, std::int64_t n) {
  if (type == GgmlType::Q8_1) return dequantize_blocks<BlockQ8_1, 32>(src, dst, n), true;
  if (type == GgmlType::Q8_K) return dequantize_blocks<BlockQ8_K, kQK_K>(src, dst, n), true;
  return dispatch_weight_type(type, detail::DequantizeRun{src, dst, n});
}

inline bool vec_dot_row(GgmlType type, std::int64_t n, const void* w, const void* a, float* out) {
  return dispatch_weight_type(type, detail::VecDotRun{n, w, a, out});
}

inline bool unit_sum_row(GgmlType type, std::int64_t n, const void* w, const void* a, float* out) {
  return dispatch_weight_type(type, detail::UnitSumRun{n, w, a, out});
}

}  // namespace sluice::cuda::quant
