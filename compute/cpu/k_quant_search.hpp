// Helpers shared by the scalar K-quant kernels (quants_scalar_k.cpp, quants_scalar_k4.cpp): ggml's
// scale searches (make_qx_quants, make_q3_quants, make_qkx2_quants), its nearest_int rounding
// trick, and the packing of K-quant scales and 2-bit quants. Internal to compute/cpu.
#pragma once

#include <cstdint>
#include <cstring>

#include "compute/cpu/blocks.hpp"

namespace sluice::cpu::scalar::detail {

// Groups whose largest |x| is below this are treated as all zero (GROUP_MAX_EPS in ggml).
inline constexpr float kGroupMaxEps = 1e-15f;

// Round to nearest, ties to even, by adding 1.5 * 2^23 and reading the low mantissa bits; valid
// for |fval| <= 4194303 (ggml's nearest_int: the exact trick matters for bit-identical output).
inline int nearest_int(float fval) {
  const float val = fval + 12582912.f;
  std::int32_t i;
  std::memcpy(&i, &val, sizeof i);
  return (i & 0x007fffff) - 0x00400000;
}

inline int clamp_int(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

// Symmetric scale search (ggml make_qx_quants, rmse_type 1: weights qw, or x^2 when qw is null):
// L[i] in [0, 2*nmax); returns the scale.
float make_qx_quants(int n, int nmax, const float* x, std::int8_t* L, const float* qw);

// ggml make_q3_quants with do_rmse = true: iterative refinement of one level at a time.
float make_q3_quants(int n, int nmax, const float* x, std::int8_t* L);

// Asymmetric (scale, min) search (ggml make_qkx2_quants): L[i] in [0, nmax]; returns the scale
// and stores -min in *the_min.
float make_qkx2_quants(int n, int nmax, const float* x, const float* weights, std::uint8_t* L,
                       float* the_min, std::uint8_t* Laux, float rmin, float rdelta, int nstep,
                       bool use_mad);

// The scale/min search of one Q4_K/Q5_K super-block: for each of its 8 sub-blocks j of 32
// elements of x (with per-element weights), scales[j], mins[j] (-min) and L[32j..32j+32) as
// make_qkx2_quants(32, nmax, ..., rmin, rdelta, nstep, use_mad = false) gives them. The reference
// loops over the sub-blocks; a SIMD kernel (k_quant_search_avx2.cpp) does all 8 in one go and
// must give the same bits.
using K4SearchFn = void (*)(const float* x, const float* weights, int nmax, float rmin, float rdelta, int nstep,
                            float* scales, float* mins, std::uint8_t* L);
void search_k4_scales_reference(const float* x, const float* weights, int nmax, float rmin, float rdelta, int nstep,
                                float* scales, float* mins, std::uint8_t* L);
// ggml's Q4_K / Q5_K reference quantizers with `search` in place of the reference search.
void quantize_q4_k_with(const float* x, void* y, std::int64_t n, K4SearchFn search);
void quantize_q5_k_with(const float* x, void* y, std::int64_t n, K4SearchFn search);

// 6-bit scale and min of sub-block j from the 12 packed bytes of Q4_K/Q5_K.
void get_scale_min_k4(int j, const std::uint8_t* q, std::uint8_t* d, std::uint8_t* m);

// Q3_K's 12 scale bytes -> 16 signed 6-bit scales, still offset by 32 (ggml's kmask dance).
void unpack_q3_k_scales(const std::uint8_t* packed, std::int8_t* scales16);

// Pack 2-bit quants L (0..3) of a 256 super-block: byte l of each 32-byte group holds elements
// l, l+32, l+64, l+96 of its 128-element half (Q2_K, and Q3_K's low bits).
void pack_2bit(const std::uint8_t* L, std::uint8_t* qs);

}  // namespace sluice::cpu::scalar::detail
