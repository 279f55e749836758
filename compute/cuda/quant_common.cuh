// Block dequantization, activation quantization and dot-product routines of the ggml block types
// as __host__ __device__ functions: the CUDA kernels (kernels_*.cu) call them on the device, and
// tests/compute/test_cuda_host.cpp calls the very same code on the CPU against compute/cpu's
// scalar reference. Without nvcc (SLUICE_HD expands to nothing) this is a plain C++ header.
//
// Block layouts are compute/cpu/blocks.hpp's structs (plain aggregates of integers, pinned there
// with static_assert on their size; alignment pinned below), so no byte is reinterpreted here.
//
// Arithmetic contract:
//   * Every float operation that the CPU reference performs is spelled with mul_rn/add_rn/sub_rn/
//     div_rn. On the device those are __fmul_rn & co., which nvcc never contracts into an FMA;
//     on the host they are plain operators, and callers that want bit-exactness compile with
//     -ffp-contract=off, as compute/cpu does. So dequantization, activation quantization and the
//     per-block dot terms equal the CPU's bit for bit.
//   * fp16 -> fp32 is compute/cpu's exact conversion on the host and the hardware conversion
//     (__half2float, also exact) on the device; fp32 -> fp16 is round-to-nearest-even on both.
//     They differ only in the payload of a NaN.
//   * vec_dot_row_* reproduce the CPU's generic vec_dot exactly, summation order included. The
//     GEMV kernels instead sum per-unit terms (unit_dot) in a warp-parallel order; the difference
//     is float rounding only (tests name the bound).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "compute/cpu/blocks.hpp"

#if defined(__CUDACC__)
#include <cuda_fp16.h>
#define SLUICE_HD __host__ __device__
#define SLUICE_HDI __host__ __device__ __forceinline__
#else
#define SLUICE_HD
#define SLUICE_HDI inline
#endif

namespace sluice::cuda::quant {

using cpu::BlockQ2_K;
using cpu::BlockQ3_K;
using cpu::BlockQ4_0;
using cpu::BlockQ4_1;
using cpu::BlockQ4_K;
using cpu::BlockQ5_0;
using cpu::BlockQ5_1;
using cpu::BlockQ5_K;
using cpu::BlockQ6_K;
using cpu::BlockQ8_0;
using cpu::BlockQ8_1;
using cpu::BlockQ8_K;
using cpu::kQK_K;

// Device loads of the fp16 fields need the natural alignment; row starts keep it because every
// block size is a multiple of its alignment.
static_assert(alignof(BlockQ4_0) == 2 && alignof(BlockQ4_1) == 2 && alignof(BlockQ5_0) == 2 &&
              alignof(BlockQ5_1) == 2 && alignof(BlockQ8_0) == 2 && alignof(BlockQ8_1) == 2);
static_assert(alignof(BlockQ2_K) == 2 && alignof(BlockQ3_K) == 2 && alignof(BlockQ4_K) == 2 &&
              alignof(BlockQ5_K) == 2 && alignof(BlockQ6_K) == 2 && alignof(BlockQ8_K) == 4);
static_assert(sizeof(BlockQ4_0) == 18 && sizeof(BlockQ8_0) == 34 && sizeof(BlockQ4_K) == 144 &&
              sizeof(BlockQ6_K) == 210 && sizeof(BlockQ8_K) == 292, "ggml block layouts");

// ---- scalar arithmetic ---------------------------------------------------------------------------

SLUICE_HDI float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
SLUICE_HDI float add_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
SLUICE_HDI float sub_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
SLUICE_HDI float div_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}

SLUICE_HDI std::uint32_t float_as_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
#endif
}
SLUICE_HDI float bits_as_float(std::uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
#endif
}

// Round to nearest, ties to even (ggml's nearest_int and std::nearbyint in the default mode);
// valid for |x| < 2^22, which every caller guarantees (|x| <= 128 here).
SLUICE_HDI int round_to_int(float x) {
#if defined(__CUDA_ARCH__)
  return __float2int_rn(x);
#else
  const float v = x + 12582912.f;  // 1.5 * 2^23: the low mantissa bits then hold round(x)
  return static_cast<int>(float_as_bits(v) & 0x007fffffu) - 0x00400000;
#endif
}

SLUICE_HDI float fabs_hd(float x) { return bits_as_float(float_as_bits(x) & 0x7fffffffu); }
// fmax as C's: a NaN operand loses to a number.
SLUICE_HDI float fmax_hd(float a, float b) {
  if (a != a) return b;
  if (b != b) return a;
  return a > b ? a : b;
}

// ---- fp16 / bf16 ---------------------------------------------------------------------------------

SLUICE_HDI float fp16_to_fp32(std::uint16_t h) {
#if defined(__CUDA_ARCH__)
  return __half2float(__ushort_as_half(h));
#else
  return cpu::fp16_to_fp32(h);
#endif
}

SLUICE_HDI std::uint16_t fp32_to_fp16(float f) {
#if defined(__CUDA_ARCH__)
  return __half_as_ushort(__float2half_rn(f));
#else
  return cpu::fp32_to_fp16(f);
#endif
}

SLUICE_HDI float bf16_to_fp32(std::uint16_t h) { return bits_as_float(static_cast<std::uint32_t>(h) << 16); }

// Round to nearest even; a NaN stays NaN (forced quiet), as cpu::fp32_to_bf16.
SLUICE_HDI std::uint16_t fp32_to_bf16(float f) {
  const std::uint32_t u = float_as_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 64u);
  return static_cast<std::uint16_t>((u + (0x7fffu + ((u >> 16) & 1u))) >> 16);
}

// Little-endian uint32 from 4 bytes (the qh field of Q5_0/Q5_1 is only 2-byte aligned).
SLUICE_HDI std::uint32_t load_u32_le(const std::uint8_t* p) {
  return static_cast<std::uint32_t>(p[0]) | (static_cast<std::uint32_t>(p[1]) << 8) |
         (static_cast<std::uint32_t>(p[2]) << 16) | (static_cast<std::uint32_t>(p[3]) << 24);
}

// ---- K-quant scale unpacking -------------------------------------------------------------------

// 6-bit scale and min of 32-element sub-block j (0..7) of Q4_K/Q5_K (ggml get_scale_min_k4).
SLUICE_HDI void scale_min_k4(int j, const std::uint8_t* q, int& sc, int& m) {
  if (j < 4) {
    sc = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    sc = (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4);
    m = (q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4);
  }
}

// Signed scale of 16-element group j (0..15) of Q3_K: 4 low bits from bytes 0..7, 2 high bits
// from bytes 8..11, minus 32 (the same values as ggml's kmask unpacking).
SLUICE_HDI int scale_q3_k(int j, const std::uint8_t* s) {
  const int low = j < 8 ? (s[j] & 0xf) : (s[j - 8] >> 4);
  const int high = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
  return (low | (high << 4)) - 32;
}

// ---- per-element quant values --------------------------------------------------------------------
// quant_value(block, e): the integer quant of element e, in the form the CPU dot products
// multiply with the q8 activations (offset already removed for the symmetric types).

SLUICE_HDI int quant_value(const BlockQ4_0& b, int e) {
  return (e < 16 ? (b.qs[e] & 0x0f) : (b.qs[e - 16] >> 4)) - 8;
}
SLUICE_HDI int quant_value(const BlockQ4_1& b, int e) { return e < 16 ? (b.qs[e] & 0x0f) : (b.qs[e - 16] >> 4); }
SLUICE_HDI int quant_value(const BlockQ5_0& b, int e) {
  const int hi = static_cast<int>((load_u32_le(b.qh) >> e) & 1u) << 4;
  return ((e < 16 ? (b.qs[e] & 0x0f) : (b.qs[e - 16] >> 4)) | hi) - 16;
}
SLUICE_HDI int quant_value(const BlockQ5_1& b, int e) {
  const int hi = static_cast<int>((load_u32_le(b.qh) >> e) & 1u) << 4;
  return (e < 16 ? (b.qs[e] & 0x0f) : (b.qs[e - 16] >> 4)) | hi;
}
// Q2_K: element e sits in 2-bit field (e % 128) / 32 of byte (e / 128) * 32 + e % 32.
SLUICE_HDI int quant_value(const BlockQ2_K& b, int e) {
  return (b.qs[(e / 128) * 32 + e % 32] >> (((e % 128) / 32) * 2)) & 3;
}
// Q3_K: the same 2-bit layout, minus 4 unless bit e / 32 of hmask[e % 32] is set.
SLUICE_HDI int quant_value(const BlockQ3_K& b, int e) {
  const int low = (b.qs[(e / 128) * 32 + e % 32] >> (((e % 128) / 32) * 2)) & 3;
  return low - ((b.hmask[e % 32] & (1u << (e / 32))) ? 0 : 4);
}
// Q4_K: 64-element groups of 32 bytes, low nibbles first.
SLUICE_HDI int quant_value(const BlockQ4_K& b, int e) {
  const std::uint8_t byte = b.qs[(e / 64) * 32 + e % 32];
  return (e % 64) < 32 ? (byte & 0xf) : (byte >> 4);
}
SLUICE_HDI int quant_value(const BlockQ5_K& b, int e) {
  const std::uint8_t byte = b.qs[(e / 64) * 32 + e % 32];
  const int low = (e % 64) < 32 ? (byte & 0xf) : (byte >> 4);
  return low + ((b.qh[e % 32] & (1u << (e / 32))) ? 16 : 0);
}
// Q6_K: per 128-element half, ql holds four 32-element quarters as nibbles (quarters 0,1 low,
// 2,3 high) and qh their 2-bit tops; minus 32.
SLUICE_HDI int quant_value(const BlockQ6_K& b, int e) {
  const int half = e / 128;
  const int quarter = (e % 128) / 32;
  const int l = e % 32;
  const std::uint8_t lo = b.ql[half * 64 + l + (quarter & 1) * 32];
  const int nibble = quarter < 2 ? (lo & 0xf) : (lo >> 4);
  const int top = (b.qh[half * 32 + l] >> (2 * quarter)) & 3;
  return (nibble | (top << 4)) - 32;
}

// ---- dequantization of one element (bit-exact with compute/cpu's dequantize_row) --------------
// dequant_value(block, e): element e (0 .. block elements - 1) of the block as a float.

SLUICE_HDI float dequant_value(const BlockQ4_0& b, int e) { return mul_rn(static_cast<float>(quant_value(b, e)), fp16_to_fp32(b.d)); }
SLUICE_HDI float dequant_value(const BlockQ4_1& b, int e) {
  return add_rn(mul_rn(static_cast<float>(quant_value(b, e)), fp16_to_fp32(b.d)), fp16_to_fp32(b.m));
}
SLUICE_HDI float dequant_value(const BlockQ5_0& b, int e) { return mul_rn(static_cast<float>(quant_value(b, e)), fp16_to_fp32(b.d)); }
SLUICE_HDI float dequant_value(const BlockQ5_1& b, int e) {
  return add_rn(mul_rn(static_cast<float>(quant_value(b, e)), fp16_to_fp32(b.d)), fp16_to_fp32(b.m));
}
SLUICE_HDI float dequant_value(const BlockQ8_0& b, int e) { return mul_rn(static_cast<float>(b.qs[e]), fp16_to_fp32(b.d)); }
SLUICE_HDI float dequant_value(const BlockQ8_1& b, int e) { return mul_rn(static_cast<float>(b.qs[e]), fp16_to_fp32(b.d)); }
SLUICE_HDI float dequant_value(const BlockQ8_K& b, int e) { return mul_rn(b.d, static_cast<float>(b.qs[e])); }

SLUICE_HDI float dequant_value(const BlockQ2_K& b, int e) {
  const std::uint8_t sc = b.scales[e / 16];
  const float dl = mul_rn(fp16_to_fp32(b.d), static_cast<float>(sc & 0xf));
  const float ml = mul_rn(fp16_to_fp32(b.dmin), static_cast<float>(sc >> 4));
  return sub_rn(mul_rn(dl, static_cast<float>(quant_value(b, e))), ml);
}
SLUICE_HDI float dequant_value(const BlockQ3_K& b, int e) {
  const float dl = mul_rn(fp16_to_fp32(b.d), static_cast<float>(scale_q3_k(e / 16, b.scales)));
  return mul_rn(dl, static_cast<float>(quant_value(b, e)));
}
SLUICE_HDI float dequant_value(const BlockQ4_K& b, int e) {
  int sc, m;
  scale_min_k4(e / 32, b.scales, sc, m);
  const float d1 = mul_rn(fp16_to_fp32(b.d), static_cast<float>(sc));
  const float m1 = mul_rn(fp16_to_fp32(b.dmin), static_cast<float>(m));
  return sub_rn(mul_rn(d1, static_cast<float>(quant_value(b, e))), m1);
}
SLUICE_HDI float dequant_value(const BlockQ5_K& b, int e) {
  int sc, m;
  scale_min_k4(e / 32, b.scales, sc, m);
  const float d1 = mul_rn(fp16_to_fp32(b.d), static_cast<float>(sc));
  const float m1 = mul_rn(fp16_to_fp32(b.dmin), static_cast<float>(m));
  return sub_rn(mul_rn(d1, static_cast<float>(quant_value(b, e))), m1);
}
SLUICE_HDI float dequant_value(const BlockQ6_K& b, int e) {
  const float ds = mul_rn(fp16_to_fp32(b.d), static_cast<float>(b.scales[e / 16]));
  return mul_rn(ds, static_cast<float>(quant_value(b, e)));
}

// ---- activation quantizers (bit-exact with compute/cpu's quantize_activation_row) -------------
// The scale math is split out so the warp-parallel device quantizers share it with these serial
// block versions.

// Q8_0/Q8_1 activations (llama.cpp's x86 quantize_row_q8_0/q8_1): id = 127/amax, d = amax/127.
SLUICE_HDI float q8_act_inverse_scale(float amax) { return amax != 0.0f ? div_rn(127.f, amax) : 0.0f; }
SLUICE_HDI float q8_act_scale(float amax) { return div_rn(amax, 127.f); }
SLUICE_HDI std::int8_t q8_act_quant(float x, float id) { return static_cast<std::int8_t>(round_to_int(mul_rn(x, id))); }

SLUICE_HD inline void quantize_block_q8_0_act(const float* x, BlockQ8_0& y) {
  float amax = 0.0f;
  for (int j = 0; j < 32; ++j) amax = fmax_hd(amax, fabs_hd(x[j]));
  const float id = q8_act_inverse_scale(amax);
  y.d = fp32_to_fp16(q8_act_scale(amax));
  for (int j = 0; j < 32; ++j) y.qs[j] = q8_act_quant(x[j], id);
}

SLUICE_HD inline void quantize_block_q8_1_act(const float* x, BlockQ8_1& y) {
  float amax = 0.0f;
  for (int j = 0; j < 32; ++j) amax = fmax_hd(amax, fabs_hd(x[j]));
  const float d = q8_act_scale(amax);
  const float id = q8_act_inverse_scale(amax);
  y.d = fp32_to_fp16(d);
  int sum = 0;
  for (int j = 0; j < 32; ++j) {
    y.qs[j] = q8_act_quant(x[j], id);
    sum += y.qs[j];
  }
  y.s = fp32_to_fp16(mul_rn(d, static_cast<float>(sum)));
}

// Q8_K (ggml quantize_row_q8_K_ref): the scale comes from the signed value of largest magnitude
// (the first one on ties), iscale = -127/max; quants clamp at 127. An all-zero block is zero.
SLUICE_HDI float q8_k_inverse_scale(float max) { return div_rn(-127.f, max); }
SLUICE_HDI std::int8_t q8_k_quant(float x, float iscale) {
  const int v = round_to_int(mul_rn(iscale, x));
  return static_cast<std::int8_t>(v < 127 ? v : 127);
}
SLUICE_HDI float q8_k_scale(float iscale) { return div_rn(1.0f, iscale); }

SLUICE_HD inline void quantize_block_q8_k(const float* x, BlockQ8_K& y) {
  float max = 0.0f;
  float amax = 0.0f;
  for (int j = 0; j < kQK_K; ++j) {
    const float ax = fabs_hd(x[j]);
    if (ax > amax) {
      amax = ax;
      max = x[j];
    }
  }
  if (amax == 0.0f) {
    y.d = 0.0f;
    for (int j = 0; j < kQK_K; ++j) y.qs[j] = 0;
    for (int j = 0; j < kQK_K / 16; ++j) y.bsums[j] = 0;
    return;
  }
  const float iscale = q8_k_inverse_scale(max);
  for (int j = 0; j < kQK_K; ++j) y.qs[j] = q8_k_quant(x[j], iscale);
  for (int j = 0; j < kQK_K / 16; ++j) {
    int sum = 0;
    for (int i = 0; i < 16; ++i) sum += y.qs[j * 16 + i];
    y.bsums[j] = static_cast<std::int16_t>(sum);
  }
  y.d = q8_k_scale(iscale);
}

// ---- dot-product terms ------------------------------------------------------------------------
// unit_dot(w, a, unit): the contribution of one 32-element unit of a weight row against the activation
// row, as a float. For the 32-element types a unit is a block and the term is exactly the one the
// CPU adds per block; for the K-quants a unit is a 32-element slice (0..7) of a super-block,
// holding its integer sums and both its scale and its min term. Summing the units of a row in
// any order gives the row's dot product up to float rounding.

SLUICE_HDI float unit_dot(const BlockQ4_0& w, const BlockQ8_0& a, int /*unit*/) {
  int sumi = 0;
  for (int j = 0; j < 32; ++j) sumi += quant_value(w, j) * a.qs[j];
  return mul_rn(mul_rn(static_cast<float>(sumi), fp16_to_fp32(w.d)), fp16_to_fp32(a.d));
}
SLUICE_HDI float unit_dot(const BlockQ4_1& w, const BlockQ8_1& a, int /*unit*/) {
  int sumi = 0;
  for (int j = 0; j < 32; ++j) sumi += quant_value(w, j) * a.qs[j];
  return add_rn(mul_rn(mul_rn(fp16_to_fp32(w.d), fp16_to_fp32(a.d)), static_cast<float>(sumi)),
                mul_rn(fp16_to_fp32(w.m), fp16_to_fp32(a.s)));
}
SLUICE_HDI float unit_dot(const BlockQ5_0& w, const BlockQ8_0& a, int /*unit*/) {
  int sumi = 0;
  for (int j = 0; j < 32; ++j) sumi += quant_value(w, j) * a.qs[j];
  return mul_rn(mul_rn(fp16_to_fp32(w.d), fp16_to_fp32(a.d)), static_cast<float>(sumi));
}
SLUICE_HDI float unit_dot(const BlockQ5_1& w, const BlockQ8_1& a, int /*unit*/) {
  int sumi = 0;
  for (int j = 0; j < 32; ++j) sumi += quant_value(w, j) * a.qs[j];
  return add_rn(mul_rn(mul_rn(fp16_to_fp32(w.d), fp16_to_fp32(a.d)), static_cast<float>(sumi)),
                mul_rn(fp16_to_fp32(w.m), fp16_to_fp32(a.s)));
}
SLUICE_HDI float unit_dot(const BlockQ8_0& w, const BlockQ8_0& a, int /*unit*/) {
  int sumi = 0;
  for (int j = 0; j < 32; ++j) sumi += w.qs[j] * a.qs[j];
  return mul_rn(static_cast<float>(sumi), mul_rn(fp16_to_fp32(w.d), fp16_to_fp32(a.d)));
}

// Integer sum over the 16-element group g of a K-quant block.
template <typename Block>
SLUICE_HDI int group16_dot(const Block& w, const BlockQ8_K& a, int g) {
  int sum = 0;
  for (int i = 16 * g; i < 16 * g + 16; ++i) sum += quant_value(w, i) * a.qs[i];
  return sum;
}

SLUICE_HDI float unit_dot(const BlockQ2_K& w, const BlockQ8_K& a, int unit) {
  int isum = 0;
  int summs = 0;
  for (int g = 2 * unit; g < 2 * unit + 2; ++g) {
    isum += (w.scales[g] & 0xf) * group16_dot(w, a, g);
    summs += a.bsums[g] * (w.scales[g] >> 4);
  }
  const float dall = mul_rn(a.d, fp16_to_fp32(w.d));
  const float dmin = mul_rn(a.d, fp16_to_fp32(w.dmin));
  return sub_rn(mul_rn(dall, static_cast<float>(isum)), mul_rn(dmin, static_cast<float>(summs)));
}
SLUICE_HDI float unit_dot(const BlockQ3_K& w, const BlockQ8_K& a, int unit) {
  int isum = 0;
  for (int g = 2 * unit; g < 2 * unit + 2; ++g) isum += scale_q3_k(g, w.scales) * group16_dot(w, a, g);
  return mul_rn(mul_rn(fp16_to_fp32(w.d), a.d), static_cast<float>(isum));
}
SLUICE_HDI float unit_dot(const BlockQ4_K& w, const BlockQ8_K& a, int unit) {
  int sc, m;
  scale_min_k4(unit, w.scales, sc, m);
  const int isum = sc * (group16_dot(w, a, 2 * unit) + group16_dot(w, a, 2 * unit + 1));
  const int summ = m * (a.bsums[2 * unit] + a.bsums[2 * unit + 1]);
  return sub_rn(mul_rn(mul_rn(fp16_to_fp32(w.d), a.d), static_cast<float>(isum)),
                mul_rn(mul_rn(fp16_to_fp32(w.dmin), a.d), static_cast<float>(summ)));
}
SLUICE_HDI float unit_dot(const BlockQ5_K& w, const BlockQ8_K& a, int unit) {
  int sc, m;
  scale_min_k4(unit, w.scales, sc, m);
  const int isum = sc * (group16_dot(w, a, 2 * unit) + group16_dot(w, a, 2 * unit + 1));
  const int summ = m * (a.bsums[2 * unit] + a.bsums[2 * unit + 1]);
  return sub_rn(mul_rn(mul_rn(fp16_to_fp32(w.d), a.d), static_cast<float>(isum)),
                mul_rn(mul_rn(fp16_to_fp32(w.dmin), a.d), static_cast<float>(summ)));
}
SLUICE_HDI float unit_dot(const BlockQ6_K& w, const BlockQ8_K& a, int unit) {
  int isum = 0;
  for (int g = 2 * unit; g < 2 * unit + 2; ++g) isum += w.scales[g] * group16_dot(w, a, g);
  return mul_rn(mul_rn(fp16_to_fp32(w.d), a.d), static_cast<float>(isum));
}

}  // namespace sluice::cuda::quant

