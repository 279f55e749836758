// AVX-512 (F, BW, VL, DQ, VNNI) kernels of the K-quants (Q2_K..Q6_K x Q8_K). Compiled with the
// AVX-512 flag set; only reached after the CPU check.
//
// Same arithmetic as the AVX2 file, two 32-element chunks (64 quants) per 512-bit register:
// Q2_K/Q3_K multiply unsigned quants x int8 activations with vpmaddubsw (pairs into int16; no
// saturation for quants <= 63), then VNNI vpdpwssd multiplies the int16 pair sums by the group
// scales and accumulates into int32 in one instruction; Q4_K..Q6_K use vpdpbusd (see below).
// Offsets and mins come from Q8_K's bsums.
#include "compute/cpu/interleave_avx512.hpp"
#include "compute/cpu/simd_x86.hpp"

namespace sluice::cpu {
namespace {

inline __m512i load512(const void* p) { return _mm512_loadu_si512(p); }
inline __m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

inline __m512i concat256(__m256i lo, __m256i hi) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

// 32 int16 lanes, 8 each of per_group[first], [first + 1], [first + 2], [first + 3]: the scales of
// four consecutive 16-element groups (64 elements), picked in-register from 16 int16 per_group.
inline __m512i scales_x4(__m256i per_group, int first) {
  const __m512i lane_group = _mm512_set_epi64(0x0003000300030003, 0x0003000300030003, 0x0002000200020002,
                                              0x0002000200020002, 0x0001000100010001, 0x0001000100010001, 0, 0);
  const __m512i index = _mm512_add_epi16(lane_group, _mm512_set1_epi16(static_cast<short>(first)));
  return _mm512_permutexvar_epi16(index, _mm512_zextsi256_si512(per_group));
}

// 32 int16 lanes: 16 x lo, then 16 x hi (per-lane shift counts for the two 256-bit halves).
inline __m512i shift_pair(int lo, int hi) {
  return _mm512_inserti64x4(_mm512_set1_epi16(static_cast<short>(lo)), _mm256_set1_epi16(static_cast<short>(hi)), 1);
}

// acc += scale16 * (pairs of u8 quants x int8 activations)
inline __m512i chunk_dot(__m512i acc, __m512i quants, __m512i acts, __m512i scale16) {
  return _mm512_dpwssd_epi32(acc, _mm512_maddubs_epi16(quants, acts), scale16);
}

inline float hsum512(__m512 acc) { return _mm512_reduce_add_ps(acc); }

// madd of 16 int16 coefficients with a Q8_K block's bsums: 8 int32 partial sums.
inline __m256i bsums_dot(const BlockQ8_K& y, __m256i coeff16) { return _mm256_madd_epi16(coeff16, load256(y.bsums)); }

// acc += d * sumi: one super-block's integer sums into the float accumulator.
inline __m512 add_block(__m512 acc, float d, __m512i sumi) {
  return _mm512_fmadd_ps(_mm512_set1_ps(d), _mm512_cvtepi32_ps(sumi), acc);
}

// The int32 lanes of a super-block are the sum over 64-element chunks j of scale(j, l) * P(j, l),
// P(j, l) the sum of the four products of elements 64j + 4l..4l+3 (the GEMMs of
// matmul_k16_avx512.cpp only need their exact total, see the recipes above k4_tile and
// q6_k_tile). Q4_K, Q5_K and Q6_K get them with one vpdpbusd
// per chunk (P exactly: |P| <= 4 * 63 * 127 < 2^15), the P of chunks 2m and 2m+1 interleaved as
// the int16 halves of each lane, and one vpdpwssd with the interleaved scales per chunk pair:
// fewer multiplies and no per-chunk scale permute (the decode is port-bound, not memory-bound).


// vpshufb indices into k4_scales_mins (broadcast to every 128-bit lane): for chunk pair m, int16
// lanes 2l, 2l + 1 get the scales of lane l in chunks 2m and 2m + 1, i.e. of 16-element groups
// 8m + l / 4 and 8m + 4 + l / 4, whose sub-blocks are 4m + k / 2 and 4m + 2 + k / 2 in 128-bit lane
// k = l / 4; the high bytes are zeroed (index 0x80).
struct K4ScalePairIndex {
  alignas(64) std::int8_t index[2][64];
  constexpr K4ScalePairIndex() : index{} {
    for (int m = 0; m < 2; ++m) {
      for (int b = 0; b < 64; ++b) {
        const int k = b / 16;
        const int word = (b % 16) / 2;
        const int sub_block = word % 2 == 0 ? 4 * m + k / 2 : 4 * m + 2 + k / 2;
        index[m][b] = b % 2 == 1 ? static_cast<std::int8_t>(0x80) : static_cast<std::int8_t>(sub_block);
      }
    }
  }
};
constexpr K4ScalePairIndex kK4ScalePairIndex;

// vpshufb indices into k4_scales_mins (in both 128-bit lanes): int16 lane g = min of sub-block g / 2.
struct K4MinsIndex {
  alignas(32) std::int8_t index[32];
  constexpr K4MinsIndex() : index{} {
    for (int b = 0; b < 32; ++b) index[b] = b % 2 == 1 ? static_cast<std::int8_t>(0x80) : static_cast<std::int8_t>(8 + b / 4);
  }
};
constexpr K4MinsIndex kK4MinsIndex;

// The two fp16 at `d` (d, dmin) as fp32, times da: the same IEEE products as h2f(d) * da.
inline __m128 d_dmin_times(const Half* d, float da) {
  std::uint32_t both;
  std::memcpy(&both, d, sizeof both);
  return _mm_mul_ps(_mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(both))), _mm_set1_ps(da));
}

// ---- Q4_K / Q5_K --------------------------------------------------------------------------------

// The per-super-block recipe shared with the GEMM of matmul_k16_avx512.cpp (each output equals
// it bit for bit): isum = sum over sub-blocks s of scale_s * (q . y over s) and msum = sum over s
// of min_s * (sum of y over s), both exact int32 whatever the order of their integer steps (for
// Q5_K |isum| <= 8 * 63 * 32 * 31 * 128 < 2^26, |msum| <= 8 * 63 * 32 * 128 < 2^21); then, in
// super-block order, two scalar chains
//   acc = fma(d * da, float(isum), acc);  acc_min = fma(-(dmin * da), float(msum), acc_min)
// with d * da and dmin * da single IEEE products (da: the Q8_K block's scale), and the output
// acc + acc_min. Here the lanes of isum are the vpdpbusd + interleaved-pair sums below, reduced to
// one int32 together with msum's 8 lanes (isum_msum), and the two chains are lanes 0 and 1 of one
// register: one fma per super-block.

// Lanes 0 and 2: the sum of isum's 16 int32 lanes; lanes 1 and 3: the sum of msum's 8 (exact).
inline __m128i isum_msum(__m512i isum, __m256i msum) {
  const __m256i s = _mm256_add_epi32(_mm512_castsi512_si256(isum), _mm512_extracti64x4_epi64(isum, 1));
  const __m256i t = _mm256_hadd_epi32(s, msum);  // per 128 bits: s01 s23 m01 m23
  const __m128i u = _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
  return _mm_hadd_epi32(u, u);
}

template <bool kHasHighBit, typename Block, int NA>
void k4_tile(std::int64_t n, const void* w, const void* acts, std::size_t act_row_bytes, float* out,
             std::size_t out_stride) {
  static_assert(offsetof(Block, dmin) == offsetof(Block, d) + sizeof(Half), "d_dmin_times reads d, dmin");
  const Block* x = static_cast<const Block*>(w);
  const BlockQ8_K* y[NA];
  for (int a = 0; a < NA; ++a) y[a] = act_row<BlockQ8_K>(acts, act_row_bytes, a);
  __m128 acc[NA];  // lane 0: acc, lane 1: acc_min
  for (int a = 0; a < NA; ++a) acc[a] = _mm_setzero_ps();
  const __m128 negate_lane1 = _mm_setr_ps(0.0f, -0.0f, 0.0f, 0.0f);
  const __m512i m4 = _mm512_set1_epi8(0x0f);
  const __m512i bit4 = _mm512_set1_epi8(0x10);
  const __m512i scale_index[2] = {_mm512_load_si512(kK4ScalePairIndex.index[0]),
                                  _mm512_load_si512(kK4ScalePairIndex.index[1])};
  const __m256i mins_index = _mm256_load_si256(reinterpret_cast<const __m256i*>(kK4MinsIndex.index));
  const std::int64_t nb = n / kQK_K;
  for (std::int64_t i = 0; i < nb; ++i) {
    prefetch_ahead(x + i);
    const __m512i scales_mins = _mm512_broadcast_i32x4(k4_scales_mins(x[i].scales));
    // Per 16-element group g (= bsums group g): the min of sub-block g / 2.
    const __m256i mins16 = _mm256_shuffle_epi8(_mm512_castsi512_si256(scales_mins), mins_index);
    __m512i hbits = _mm512_setzero_si512();
    if constexpr (kHasHighBit) hbits = _mm512_broadcast_i64x4(load256(x[i].qh));
    __m512i sumi[NA];
    for (int a = 0; a < NA; ++a) sumi[a] = _mm512_setzero_si512();
    for (int m = 0; m < kQK_K / 128; ++m) {
      const __m512i scale = _mm512_shuffle_epi8(scales_mins, scale_index[m]);
      __m512i q[2];
      for (int c = 0; c < 2; ++c) {
        // Chunk j: low nibbles of qs[32j..32j+31] are elements 64j..+31 (sub-block 2j), the high
        // nibbles 64j+32..+63 (2j+1): shift only the upper copy of the broadcast bytes.
        const int j = 2 * m + c;
        const __m512i q4bits = _mm512_broadcast_i64x4(load256(x[i].qs + 32 * j));
        q[c] = _mm512_and_si512(_mm512_mask_srli_epi16(q4bits, 0xffff0000u, q4bits, 4), m4);
        if constexpr (kHasHighBit) {
          const __m512i high = _mm512_slli_epi16(_mm512_srlv_epi16(hbits, shift_pair(2 * j, 2 * j + 1)), 4);
          q[c] = _mm512_ternarylogic_epi32(q[c], high, bit4, 0xf8);  // q | (high & bit4)
        }
      }
      for (int a = 0; a < NA; ++a) {
        const __m512i p0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q[0], load512(y[a][i].qs + 128 * m));
        const __m512i p1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q[1], load512(y[a][i].qs + 128 * m + 64));
        sumi[a] = _mm512_dpwssd_epi32(sumi[a], interleave_pair(p0, p1), scale);
      }
    }
    for (int a = 0; a < NA; ++a) {
      // d * da, -(dmin * da) (the sign flip is exact), times float(isum), float(msum).
      const __m128 coeff = _mm_xor_ps(d_dmin_times(&x[i].d, y[a][i].d), negate_lane1);
      acc[a] = _mm_fmadd_ps(coeff, _mm_cvtepi32_ps(isum_msum(sumi[a], bsums_dot(y[a][i], mins16))), acc[a]);
    }
  }
  for (int a = 0; a < NA; ++a) out[a * out_stride] = _mm_cvtss_f32(_mm_add_ss(acc[a], _mm_movehdup_ps(acc[a])));
}

template <int NA>
void q4_k_tile(std::int64_t n, const void* w, const void* a, std::size_t s, float* o, std::size_t os) {
  k4_tile<false, BlockQ4_K, NA>(n, w, a, s, o, os);
}
template <int NA>
void q5_k_tile(std::int64_t n, const void* w, const void* a, std::size_t s, float* o, std::size_t os) {
  k4_tile<true, BlockQ5_K, NA>(n, w, a, s, o, os);
}

// ---- Q6_K ---------------------------------------------------------------------------------------

// The per-super-block recipe shared with the GEMM of matmul_k16_avx512.cpp (each output equals it
// bit for bit): isum = sum over 16-element sub-blocks s of scale_s * (q . y over s), less
// 32 * sum_s scale_s * bsum_s for the quants' +32, exact in int32 whatever the order of its
// integer steps (|isum| <= 16 * 128 * 16 * 32 * 128 < 2^28); then, in super-block order, one
// scalar chain acc = fma(d * da, float(isum), acc), d * da a single IEEE product.

template <int NA>
void q6_k_tile(std::int64_t n, const void* w, const void* acts, std::size_t act_row_bytes, float* out,
               std::size_t out_stride) {
  const BlockQ6_K* x = static_cast<const BlockQ6_K*>(w);
  const BlockQ8_K* y[NA];
  for (int a = 0; a < NA; ++a) y[a] = act_row<BlockQ8_K>(acts, act_row_bytes, a);
  __m128 acc[NA];  // lane 0: the output's chain (the recipe above q6_k_tile)
  for (int a = 0; a < NA; ++a) acc[a] = _mm_setzero_ps();
  const __m512i m4 = _mm512_set1_epi8(0x0f);
  const __m512i bits45 = _mm512_set1_epi8(0x30);
  // qh bits 2k, 2k+1 of element piece k -> bits 4, 5: left by 4, 2 (pieces 0, 1), right by 0, 2 (2, 3).
  const __m512i shl_01 = shift_pair(4, 2);
  const __m512i shr_23 = shift_pair(0, 2);
  const __m512i scale_index[2] = {_mm512_load_si512(kScalePairIndex.index[0]),
                                  _mm512_load_si512(kScalePairIndex.index[1])};
  const std::int64_t nb = n / kQK_K;
  for (std::int64_t i = 0; i < nb; ++i) {
    prefetch_ahead(x + i);
    const std::int8_t* sc = x[i].scales;
    const __m256i scales16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(sc)));
    __m512i sumi[NA];
    for (int a = 0; a < NA; ++a) sumi[a] = _mm512_setzero_si512();
    for (int half = 0; half < 2; ++half) {
      // ql[64h..64h+63]: low nibbles are chunk 2h (elements 128h..+63), high nibbles chunk 2h+1.
      const __m512i bits = load512(x[i].ql + 64 * half);
      const __m512i hb = _mm512_broadcast_i64x4(load256(x[i].qh + 32 * half));
      // 16-bit shifts carry bits across bytes; the 0x30 mask keeps each byte's own two.
      const __m512i high01 = _mm512_and_si512(_mm512_sllv_epi16(hb, shl_01), bits45);
      const __m512i high23 = _mm512_and_si512(_mm512_srlv_epi16(hb, shr_23), bits45);
      const __m512i q01 = _mm512_ternarylogic_epi32(bits, m4, high01, 0xea);  // (bits & m4) | high
      const __m512i q23 = _mm512_ternarylogic_epi32(_mm512_srli_epi16(bits, 4), m4, high23, 0xea);
      const __m512i scale = _mm512_permutexvar_epi16(scale_index[half], _mm512_zextsi256_si512(scales16));
      for (int a = 0; a < NA; ++a) {
        const __m512i p0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q01, load512(y[a][i].qs + 128 * half));
        const __m512i p1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q23, load512(y[a][i].qs + 128 * half + 64));
        sumi[a] = _mm512_dpwssd_epi32(sumi[a], interleave_pair(p0, p1), scale);
      }
    }
    const float dx = h2f(x[i].d);
    for (int a = 0; a < NA; ++a) {
      // The quants carry +32: remove 32 * sum_j scale_j * bsum_j (into the low 8 int32 lanes).
      const __m256i offset = _mm256_slli_epi32(bsums_dot(y[a][i], scales16), 5);
      const int isum = _mm512_reduce_add_epi32(_mm512_sub_epi32(sumi[a], _mm512_zextsi256_si512(offset)));
      acc[a] = _mm_fmadd_ss(_mm_set_ss(dx * y[a][i].d), _mm_cvtsi32_ss(_mm_setzero_ps(), isum), acc[a]);
    }
  }
  for (int a = 0; a < NA; ++a) out[a * out_stride] = _mm_cvtss_f32(acc[a]);
}

// ---- Q2_K / Q3_K ----------------------------------------------------------------------------------

template <int NA>
void q2_k_tile(std::int64_t n, const void* w, const void* acts, std::size_t act_row_bytes, float* out,
               std::size_t out_stride) {
  const BlockQ2_K* x = static_cast<const BlockQ2_K*>(w);
  const BlockQ8_K* y[NA];
  for (int a = 0; a < NA; ++a) y[a] = act_row<BlockQ8_K>(acts, act_row_bytes, a);
  __m512 acc[NA];
  __m256 acc_min[NA];
  for (int a = 0; a < NA; ++a) {
    acc[a] = _mm512_setzero_ps();
    acc_min[a] = _mm256_setzero_ps();
  }
  const __m512i m2 = _mm512_set1_epi8(3);
  const std::int64_t nb = n / kQK_K;
  for (std::int64_t i = 0; i < nb; ++i) {
    prefetch_ahead(x + i);
    const std::uint8_t* sc = x[i].scales;
    const __m256i sc16 = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(sc)));
    const __m256i scales16 = _mm256_and_si256(sc16, _mm256_set1_epi16(0x0f));
    const __m256i mins16 = _mm256_srli_epi16(sc16, 4);
    __m512i sumi[NA];
    for (int a = 0; a < NA; ++a) sumi[a] = _mm512_setzero_si512();
    for (int half = 0; half < 2; ++half) {
      const __m512i bits = _mm512_broadcast_i64x4(load256(x[i].qs + 32 * half));
      for (int k = 0; k < 4; k += 2) {
        const int chunk = 4 * half + k;  // chunks `chunk` and `chunk + 1`: 64 contiguous elements
        const __m512i q = _mm512_and_si512(_mm512_srlv_epi16(bits, shift_pair(2 * k, 2 * k + 2)), m2);
        const __m512i scale = scales_x4(scales16, 2 * chunk);
        for (int a = 0; a < NA; ++a) sumi[a] = chunk_dot(sumi[a], q, load512(y[a][i].qs + 32 * chunk), scale);
      }
    }
    const float dx = h2f(x[i].d);
    const float dminx = h2f(x[i].dmin);
    for (int a = 0; a < NA; ++a) {
      acc[a] = add_block(acc[a], y[a][i].d * dx, sumi[a]);
      const __m256 mins_f = _mm256_cvtepi32_ps(bsums_dot(y[a][i], mins16));
      acc_min[a] = _mm256_fmadd_ps(_mm256_set1_ps(-(y[a][i].d * dminx)), mins_f, acc_min[a]);
    }
  }
  for (int a = 0; a < NA; ++a) out[a * out_stride] = hsum512(acc[a]) + hsum_ps(acc_min[a]);
}

template <int NA>
void q3_k_tile(std::int64_t n, const void* w, const void* acts, std::size_t act_row_bytes, float* out,
               std::size_t out_stride) {
  const BlockQ3_K* x = static_cast<const BlockQ3_K*>(w);
  const BlockQ8_K* y[NA];
  for (int a = 0; a < NA; ++a) y[a] = act_row<BlockQ8_K>(acts, act_row_bytes, a);
  __m512 acc[NA];
  for (int a = 0; a < NA; ++a) acc[a] = _mm512_setzero_ps();
  const __m512i m2 = _mm512_set1_epi8(3);
  const __m512i one = _mm512_set1_epi8(1);
  const std::int64_t nb = n / kQK_K;
  for (std::int64_t i = 0; i < nb; ++i) {
    prefetch_ahead(x + i);
    const __m256i scales16 = _mm256_cvtepi8_epi16(q3_k_scales(x[i].scales));
    const __m512i hmask = _mm512_broadcast_i64x4(load256(x[i].hmask));
    __m512i sumi[NA];
    for (int a = 0; a < NA; ++a) sumi[a] = _mm512_setzero_si512();
    for (int half = 0; half < 2; ++half) {
      const __m512i bits = _mm512_broadcast_i64x4(load256(x[i].qs + 32 * half));
      for (int k = 0; k < 4; k += 2) {
        const int chunk = 4 * half + k;
        // Unsigned 3-bit quant (value + 4): two low bits, plus 4 where hmask bit `chunk` is set.
        const __m512i low = _mm512_and_si512(_mm512_srlv_epi16(bits, shift_pair(2 * k, 2 * k + 2)), m2);
        const __m512i high = _mm512_and_si512(_mm512_srlv_epi16(hmask, shift_pair(chunk, chunk + 1)), one);
        const __m512i q = _mm512_or_si512(low, _mm512_slli_epi16(high, 2));
        const __m512i scale = scales_x4(scales16, 2 * chunk);
        for (int a = 0; a < NA; ++a) sumi[a] = chunk_dot(sumi[a], q, load512(y[a][i].qs + 32 * chunk), scale);
      }
    }
    const float dx = h2f(x[i].d);
    for (int a = 0; a < NA; ++a) {
      const __m256i offset = _mm256_slli_epi32(bsums_dot(y[a][i], scales16), 2);  // 4 * sum scale * bsum
      const __m512i total = _mm512_sub_epi32(sumi[a], _mm512_zextsi256_si512(offset));
      acc[a] = add_block(acc[a], dx * y[a][i].d, total);
    }
  }
  for (int a = 0; a < NA; ++a) out[a * out_stride] = hsum512(acc[a]);
}

SLUICE_DEFINE_TILE_ENTRY_POINTS(q2_k, q2_k_tile)
SLUICE_DEFINE_TILE_ENTRY_POINTS(q3_k, q3_k_tile)
SLUICE_DEFINE_TILE_ENTRY_POINTS(q4_k, q4_k_tile)
SLUICE_DEFINE_TILE_ENTRY_POINTS(q5_k, q5_k_tile)
SLUICE_DEFINE_TILE_ENTRY_POINTS(q6_k, q6_k_tile)

}  // namespace

void register_avx512_k_kernels(KernelTable& t) {
  t.vec_dot[type_slot(GgmlType::Q2_K)] = q2_k_vec_dot;
  t.vec_dot_multi[type_slot(GgmlType::Q2_K)] = q2_k_multi;
  t.vec_dot[type_slot(GgmlType::Q3_K)] = q3_k_vec_dot;
  t.vec_dot_multi[type_slot(GgmlType::Q3_K)] = q3_k_multi;
  t.vec_dot[type_slot(GgmlType::Q4_K)] = q4_k_vec_dot;
  t.vec_dot_multi[type_slot(GgmlType::Q4_K)] = q4_k_multi;
  t.vec_dot[type_slot(GgmlType::Q5_K)] = q5_k_vec_dot;
  t.vec_dot_multi[type_slot(GgmlType::Q5_K)] = q5_k_multi;
  t.vec_dot[type_slot(GgmlType::Q6_K)] = q6_k_vec_dot;
  t.vec_dot_multi[type_slot(GgmlType::Q6_K)] = q6_k_multi;
}

}  // namespace sluice::cpu
