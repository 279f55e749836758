// On-disk block layouts of the ggml quantization types sluice computes with, exactly as ggml lays
// them out (ggml/src/ggml-common.h), plus the scalar fp16/bf16 <-> fp32 conversions and a
// constexpr table of block geometry keyed by GgmlType.
//
// Every block struct is pinned with static_assert(sizeof == N): the bytes in a GGUF file are these
// structs, so a padding change would silently misread every model.
//
// Layout summary (element counts per block; "d"/"m" are fp16 unless noted):
//   Q4_0  32: d, qs[16]            x = d * (nibble - 8)
//   Q4_1  32: d, m, qs[16]         x = d * nibble + m
//   Q5_0  32: d, qh[4], qs[16]     x = d * ((nibble | bit << 4) - 16)
//   Q5_1  32: d, m, qh[4], qs[16]  x = d * (nibble | bit << 4) + m
//   Q8_0  32: d, qs[32] int8       x = d * q
//   Q8_1  32: d, s, qs[32]         s = d * sum(q)  (activation type for Q4_1/Q5_1)
//   Q2_K 256: scales[16] (4-bit scale | 4-bit min), qs[64], d, dmin
//   Q3_K 256: hmask[32], qs[64], scales[12] (16 x 6-bit), d
//   Q4_K 256: d, dmin, scales[12] (8 x 6-bit scale + 8 x 6-bit min), qs[128]
//   Q5_K 256: d, dmin, scales[12], qh[32], qs[128]
//   Q6_K 256: ql[128], qh[64], scales[16] int8, d
//   Q8_K 256: d (fp32), qs[256] int8, bsums[16] int16 (activation type for all K-quants)
//   MXFP4 32: e (E8M0 exponent byte), qs[16]  x = kvalues_mxfp4[nibble] * 2^(e - 128)
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "model/ggml_types.hpp"

namespace sluice::cpu {

// Elements per block of the 32-element ("legacy") types and of the K-quant super-blocks.
inline constexpr int kQK4_0 = 32;
inline constexpr int kQK4_1 = 32;
inline constexpr int kQK5_0 = 32;
inline constexpr int kQK5_1 = 32;
inline constexpr int kQK8_0 = 32;
inline constexpr int kQK8_1 = 32;
inline constexpr int kQK_MXFP4 = 32;
inline constexpr int kQK_K = static_cast<int>(sluice::kQK_K);  // 256
// Bytes of the packed 6-bit scales/mins of Q3_K/Q4_K/Q5_K (K_SCALE_SIZE in ggml).
inline constexpr int kKScaleBytes = 12;

using Half = std::uint16_t;  // IEEE binary16 bits (ggml_half)
using BHalf = std::uint16_t; // bfloat16 bits (ggml_bf16_t)

struct BlockQ4_0 {
  Half d;
  std::uint8_t qs[kQK4_0 / 2];
};
static_assert(sizeof(BlockQ4_0) == 18, "Q4_0 block layout");

struct BlockQ4_1 {
  Half d;
  Half m;
  std::uint8_t qs[kQK4_1 / 2];
};
static_assert(sizeof(BlockQ4_1) == 20, "Q4_1 block layout");

struct BlockQ5_0 {
  Half d;
  std::uint8_t qh[4];  // fifth bit of each quant, little-endian uint32 (bit j = element j)
  std::uint8_t qs[kQK5_0 / 2];
};
static_assert(sizeof(BlockQ5_0) == 22, "Q5_0 block layout");

struct BlockQ5_1 {
  Half d;
  Half m;
  std::uint8_t qh[4];
  std::uint8_t qs[kQK5_1 / 2];
};
static_assert(sizeof(BlockQ5_1) == 24, "Q5_1 block layout");

struct BlockQ8_0 {
  Half d;
  std::int8_t qs[kQK8_0];
};
static_assert(sizeof(BlockQ8_0) == 34, "Q8_0 block layout");

struct BlockQ8_1 {
  Half d;
  Half s;  // d * sum(qs), so a min term needs no pass over the quants
  std::int8_t qs[kQK8_1];
};
static_assert(sizeof(BlockQ8_1) == 36, "Q8_1 block layout");

struct BlockQ2_K {
  std::uint8_t scales[kQK_K / 16];  // low nibble: scale, high nibble: min (16 sub-blocks of 16)
  std::uint8_t qs[kQK_K / 4];
  Half d;
  Half dmin;
};
static_assert(sizeof(BlockQ2_K) == 84, "Q2_K block layout");

struct BlockQ3_K {
  std::uint8_t hmask[kQK_K / 8];
  std::uint8_t qs[kQK_K / 4];
  std::uint8_t scales[kKScaleBytes];
  Half d;
};
static_assert(sizeof(BlockQ3_K) == 110, "Q3_K block layout");

struct BlockQ4_K {
  Half d;
  Half dmin;
  std::uint8_t scales[kKScaleBytes];
  std::uint8_t qs[kQK_K / 2];
};
static_assert(sizeof(BlockQ4_K) == 144, "Q4_K block layout");

struct BlockQ5_K {
  Half d;
  Half dmin;
  std::uint8_t scales[kKScaleBytes];
  std::uint8_t qh[kQK_K / 8];
  std::uint8_t qs[kQK_K / 2];
};
static_assert(sizeof(BlockQ5_K) == 176, "Q5_K block layout");

struct BlockQ6_K {
  std::uint8_t ql[kQK_K / 2];
  std::uint8_t qh[kQK_K / 4];
  std::int8_t scales[kQK_K / 16];
  Half d;
};
static_assert(sizeof(BlockQ6_K) == 210, "Q6_K block layout");

struct BlockQ8_K {
  float d;
  std::int8_t qs[kQK_K];
  std::int16_t bsums[kQK_K / 16];  // sums of qs in groups of 16, for the K-quant min terms
};
static_assert(sizeof(BlockQ8_K) == 292, "Q8_K block layout");

// MXFP4 (OCP microscaling, as gpt-oss stores its experts): one shared power-of-two scale per 32
// weights and a 4-bit E2M1 code per weight; low nibbles are elements 0..15, high nibbles 16..31,
// as in Q4_0. Its dot products take Q8_0 activations.
struct BlockMXFP4 {
  std::uint8_t e;  // E8M0: the scale is 2^(e - 127); no sign, no mantissa
  std::uint8_t qs[kQK_MXFP4 / 2];
};
static_assert(sizeof(BlockMXFP4) == 17, "MXFP4 block layout");

// The 16 E2M1 values {0, 0.5, 1, 1.5, 2, 3, 4, 6} and their negatives, doubled so that they are
// integers (kvalues_mxfp4 in ggml-common.h); the scale is halved to match (e8m0_to_fp32_half).
// Code 8 is -0, which doubles to 0.
inline constexpr std::int8_t kValuesMXFP4[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

// Block geometry of every type sluice computes with. The traits in model/ggml_types.cpp live in
// another library (sluice_model), which compute/ must not link; this table is checked against
// the structs above at compile time.
struct BlockGeometry {
  GgmlType type;
  std::uint32_t block_elements;
  std::uint32_t block_bytes;
};

inline constexpr BlockGeometry kBlockGeometry[] = {
    {GgmlType::F32, 1, 4},
    {GgmlType::F16, 1, 2},
    {GgmlType::BF16, 1, 2},
    {GgmlType::Q4_0, kQK4_0, sizeof(BlockQ4_0)},
    {GgmlType::Q4_1, kQK4_1, sizeof(BlockQ4_1)},
    {GgmlType::Q5_0, kQK5_0, sizeof(BlockQ5_0)},
    {GgmlType::Q5_1, kQK5_1, sizeof(BlockQ5_1)},
    {GgmlType::Q8_0, kQK8_0, sizeof(BlockQ8_0)},
    {GgmlType::Q8_1, kQK8_1, sizeof(BlockQ8_1)},
    {GgmlType::Q2_K, kQK_K, sizeof(BlockQ2_K)},
    {GgmlType::Q3_K, kQK_K, sizeof(BlockQ3_K)},
    {GgmlType::Q4_K, kQK_K, sizeof(BlockQ4_K)},
    {GgmlType::Q5_K, kQK_K, sizeof(BlockQ5_K)},
    {GgmlType::Q6_K, kQK_K, sizeof(BlockQ6_K)},
    {GgmlType::Q8_K, kQK_K, sizeof(BlockQ8_K)},
    {GgmlType::MXFP4, kQK_MXFP4, sizeof(BlockMXFP4)},
};

// Nullptr for a type not in the table.
constexpr const BlockGeometry* block_geometry(GgmlType type) {
  for (const BlockGeometry& g : kBlockGeometry) {
    if (g.type == type) return &g;
  }
  return nullptr;
}

// The on-disk sizes ggml documents (bits per weight x elements / 8), independent of the structs.
static_assert(block_geometry(GgmlType::Q4_0)->block_bytes == 2 + 16);
static_assert(block_geometry(GgmlType::Q4_1)->block_bytes == 4 + 16);
static_assert(block_geometry(GgmlType::Q5_0)->block_bytes == 2 + 4 + 16);
static_assert(block_geometry(GgmlType::Q5_1)->block_bytes == 4 + 4 + 16);
static_assert(block_geometry(GgmlType::Q8_0)->block_bytes == 2 + 32);
static_assert(block_geometry(GgmlType::Q8_1)->block_bytes == 4 + 32);
static_assert(block_geometry(GgmlType::Q2_K)->block_bytes == 256 / 16 + 256 / 4 + 4);
static_assert(block_geometry(GgmlType::Q3_K)->block_bytes == 256 / 8 + 256 / 4 + 12 + 2);
static_assert(block_geometry(GgmlType::Q4_K)->block_bytes == 4 + 12 + 256 / 2);
static_assert(block_geometry(GgmlType::Q5_K)->block_bytes == 4 + 12 + 256 / 8 + 256 / 2);
static_assert(block_geometry(GgmlType::Q6_K)->block_bytes == 256 / 2 + 256 / 4 + 16 + 2);
static_assert(block_geometry(GgmlType::Q8_K)->block_bytes == 4 + 256 + 16 * 2);
static_assert(block_geometry(GgmlType::MXFP4)->block_bytes == 1 + 32 / 2);

// Bytes of a row of n elements; n must be a multiple of the block size (checked by callers).
constexpr std::size_t row_bytes(const BlockGeometry& g, std::int64_t n) {
  return static_cast<std::size_t>(n) / g.block_elements * g.block_bytes;
}

// ---- scalar conversions ------------------------------------------------------------------------
// These are always_inline so that no out-of-line copy is emitted: the SIMD translation units
// (compiled with -mavx2 / -mavx512f) include this header too, and a shared out-of-line copy built
// there could be picked by the linker for scalar code running on a CPU without those features.

[[gnu::always_inline]] inline std::uint32_t float_bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

[[gnu::always_inline]] inline float bits_float(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// fp16 -> fp32, exact for every half (normals, subnormals, +-0, +-inf); a NaN keeps its sign and
// payload and comes out quiet, as x86's VCVTPH2PS (what ggml uses on F16C CPUs) does.
[[gnu::always_inline]] inline float fp16_to_fp32(Half h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exponent = (h >> 10) & 0x1fu;
  std::uint32_t mantissa = h & 0x3ffu;
  if (exponent == 0x1f) {  // inf or NaN
    const std::uint32_t quiet = mantissa != 0 ? 0x00400000u : 0u;
    return bits_float(sign | 0x7f800000u | quiet | (mantissa << 13));
  }
  if (exponent == 0) {
    if (mantissa == 0) return bits_float(sign);
    // Subnormal: value = mantissa * 2^-24, exact in fp32.
    int shift = 0;
    while ((mantissa & 0x400u) == 0) {
      mantissa <<= 1;
      ++shift;
    }
    mantissa &= 0x3ffu;
    const std::uint32_t exp32 = static_cast<std::uint32_t>(127 - 15 + 1 - shift);
    return bits_float(sign | (exp32 << 23) | (mantissa << 13));
  }
  return bits_float(sign | ((exponent + (127 - 15)) << 23) | (mantissa << 13));
}

// fp32 -> fp16 with IEEE round-to-nearest-even, including the subnormal range and overflow to
// inf; bit-identical to VCVTPS2PH (imm 0) and to ggml's scalar fallback for every non-NaN input.
// A NaN becomes sign | 0x7e00 (ggml's scalar rule).
[[gnu::always_inline]] inline Half fp32_to_fp16(float f) {
  const std::uint32_t x = float_bits(f);
  const std::uint32_t sign = (x >> 16) & 0x8000u;
  const std::uint32_t abs = x & 0x7fffffffu;
  if (abs > 0x7f800000u) return static_cast<Half>(sign | 0x7e00u);
  if (abs >= 0x477ff000u) return static_cast<Half>(sign | 0x7c00u);  // rounds to >= 65520: inf
  if (abs < 0x38800000u) {
    // Result is subnormal (or zero): shift the full 24-bit significand right and round to even.
    if (abs < 0x33000000u) return static_cast<Half>(sign);  // below half the smallest subnormal
    const std::uint32_t e = abs >> 23;
    const std::uint32_t m = (abs & 0x7fffffu) | 0x800000u;
    const std::uint32_t shift = 126 - e;  // (113 - e) to reach 2^-14 scale, + 13 mantissa bits
    const std::uint32_t kept = m >> shift;
    const std::uint32_t rest = m & ((1u << shift) - 1u);
    const std::uint32_t half = 1u << (shift - 1);
    const std::uint32_t rounded = kept + ((rest > half || (rest == half && (kept & 1u))) ? 1u : 0u);
    return static_cast<Half>(sign | rounded);
  }
  // Normal: rebias the exponent and round the 13 dropped mantissa bits to even; a carry into the
  // exponent field is the correct result (also for the largest finite values, checked above).
  const std::uint32_t rebased = abs - ((127u - 15u) << 23);
  const std::uint32_t kept = rebased >> 13;
  const std::uint32_t rest = rebased & 0x1fffu;
  const std::uint32_t rounded = kept + ((rest > 0x1000u || (rest == 0x1000u && (kept & 1u))) ? 1u : 0u);
  return static_cast<Half>(sign | rounded);
}

[[gnu::always_inline]] inline float bf16_to_fp32(BHalf h) {
  return bits_float(static_cast<std::uint32_t>(h) << 16);
}

// fp32 -> bf16, round-to-nearest-even; a NaN stays NaN (forced quiet). Subnormals are rounded,
// not flushed: ggml_compute_fp32_to_bf16 as in current ggml and gguf-py's BF16.quantize.
[[gnu::always_inline]] inline BHalf fp32_to_bf16(float f) {
  const std::uint32_t u = float_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<BHalf>((u >> 16) | 64u);
  return static_cast<BHalf>((u + (0x7fffu + ((u >> 16) & 1u))) >> 16);
}

// Half the scale of an E8M0 exponent byte, 2^(e - 128), as ggml_e8m0_to_fp32_half (ggml-impl.h):
// exact for every byte. e = 0 and 1 give the subnormals 2^-128 and 2^-127; e = 255, which the
// OCP spec reserves for NaN, gives 2^127 here, as in ggml and gguf-py (no NaN is ever produced).
[[gnu::always_inline]] inline float e8m0_to_fp32_half(std::uint8_t e) {
  // The fp32 with biased exponent e - 1 is 2^(e - 128); below that the value is a subnormal,
  // whose single mantissa bit 21 + e (2^-149 * 2^(21 + e)) is again 2^(e - 128).
  const std::uint32_t bits = e < 2 ? 0x00200000u << e : static_cast<std::uint32_t>(e - 1) << 23;
  return bits_float(bits);
}

}  // namespace sluice::cpu
