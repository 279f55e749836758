// AVX2 (+FMA, F16C) kernels of the K-quants (Q2_K..Q6_K, activations Q8_K) and the AVX2 Q8_K
// activation quantizer. Compiled with -mavx2 -mfma -mf16c; only reached after the CPU check.
//
// Per 256-element super-block everything up to one int32 vector is exact integer arithmetic:
// unsigned quants x int8 activations (maddubs), times the sub-block scales (madd), and the
// offset or min terms taken from Q8_K's 16-element bsums. Only the final float combination
// (d * sum - dmin * mins, into 8 float lanes) differs in order from the scalar reference.
#include "compute/cpu/simd_x86.hpp"

namespace sluice::cpu {
namespace {

inline __m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// Scales of the 16 sub-blocks (16 elements each) of a super-block, prepared once per
// super-block so that each 32-element chunk's scale vector is a single byte shuffle.
struct SubBlockScales {
  __m256i low_both;   // sub-block scales 0..7 as int16, in both 128-bit lanes
  __m256i high_both;  // sub-block scales 8..15 as int16, in both 128-bit lanes
  explicit SubBlockScales(__m256i scales16)
      : low_both(_mm256_permute2x128_si256(scales16, scales16, 0x00)),
        high_both(_mm256_permute2x128_si256(scales16, scales16, 0x11)) {}

  // Chunk c (elements 32c..32c+31): 8 lanes of scale 2c, then 8 lanes of scale 2c+1.
  __m256i chunk(int c) const {
    const __m256i pick = _mm256_load_si256(reinterpret_cast<const __m256i*>(kPick[c % 4]));
    return _mm256_shuffle_epi8(c < 4 ? low_both : high_both, pick);
  }

  // Byte shuffles: for the pair k of a group of 8 int16 scales, scale 2k (bytes 4k, 4k+1) into
  // the low 128-bit lane, scale 2k+1 (bytes 4k+2, 4k+3) into the high lane.
  alignas(32) static constexpr std::int8_t kPick[4][32] = {
      {0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3},
      {4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7},
      {8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 10, 11, 10, 11, 10, 11, 10, 11, 10, 11, 10, 11, 10, 11, 10, 11},
      {12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13,
       14, 15, 14, 15, 14, 15, 14, 15, 14, 15, 14, 15, 14, 15, 14, 15},
  };
};

// sum_k scale16[k] * (pairs of u8 quants x int8 activations) for one 32-element chunk.
inline __m256i chunk_dot(__m256i quants, __m256i acts, __m256i scale16) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(quants, acts), scale16);
}

// madd of 16 int16 coefficients with a Q8_K block's 16 bsums: 8 int32 partial sums.
inline __m256i bsums_dot(const BlockQ8_K& y, __m256i coeff16) {
  return _mm256_madd_epi16(coeff16, load256(y.bsums));
}

// 2-bit field `shift` of each byte (Q2_K/Q3_K low bits).
inline __m256i two_bits(__m256i q, int shift) {
  return _mm256_and_si256(_mm256_srli_epi16(q, shift), _mm256_set1_epi8(3));
}

// ---- Q4_K / Q5_K --------------------------------------------------------------------------------

template <bool kHasHighBit, typename Block, int NA>
void k4_tile(std::int64_t n, const void* w, const void* acts, std::size_t act_row_bytes, float* out,
             std::size_t out_stride) {
  const Block* x = static_cast<const Block*>(w);
  const BlockQ8_K* y[NA];
  for (int a = 0; a < NA; ++a) y[a] = act_row<BlockQ8_K>(acts, act_row_bytes, a);
  __m256 acc[NA];
  for (int a = 0; a < NA; ++a) acc[a] = _mm256_setzero_ps();
  const __m256i m4 = _mm256_set1_epi8(0x0f);
  const __m256i bit4 = _mm256_set1_epi8(0x10);
  const std::int64_t nb = n / kQK_K;
  for (std::int64_t i = 0; i < nb; ++i) {
    prefetch_ahead(x + i);
    const __m128i scales_mins = k4_scales_mins(x[i].scales);
    // Per 16-element group g (= bsums group g): the scale and min of sub-block g / 2.
    const SubBlockScales chunk_scales(per_group_of_pairs(scales_mins));
    const __m256i mins16 = per_group_of_pairs(_mm_unpackhi_epi64(scales_mins, scales_mins));
    __m256i hbits = _mm256_setzero_si256();
    if constexpr (kHasHighBit) hbits = load256(x[i].qh);
    __m256i sumi[NA];
    for (int a = 0; a < NA; ++a) sumi[a] = _mm256_setzero_si256();
    for (int j = 0; j < kQK_K / 64; ++j) {
      const __m256i q4bits = load256(x[i].qs + 32 * j);
      __m256i ql = _mm256_and_si256(q4bits, m4);
      __m256i qh = _mm256_and_si256(_mm256_srli_epi16(q4bits, 4), m4);
      if constexpr (kHasHighBit) {
        // Bit 2j of qh[l] is the fifth bit of element 64j + l, bit 2j+1 that of 64j + 32 + l.
        ql = _mm256_or_si256(ql, _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(hbits, 2 * j), 4), bit4));
        qh = _mm256_or_si256(qh, _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(hbits, 2 * j + 1), 4), bit4));
      }
      const __m256i scale_l = chunk_scales.chunk(2 * j);  // sub-block 2j in all 16 lanes
      const __m256i scale_h = chunk_scales.chunk(2 * j + 1);
      for (int a = 0; a < NA; ++a) {
        const __m256i pl = chunk_dot(ql, load256(y[a][i].qs + 64 * j), scale_l);
        const __m256i ph = chunk_dot(qh, load256(y[a][i].qs + 64 * j + 32), scale_h);
        sumi[a] = _mm256_add_epi32(sumi[a], _mm256_add_epi32(pl, ph));
      }
    }
    const float dx = h2f(x[i].d);
    const float dminx = h2f(x[i].dmin);
    for (int a = 0; a < NA; ++a) {
      const __m256i min_sums = bsums_dot(y[a][i], mins16);
      acc[a] = _mm256_fmadd_ps(_mm256_set1_ps(dx * y[a][i].d), _mm256_cvtepi32_ps(sumi[a]), acc[a]);
      acc[a] = _mm256_fmadd_ps(_mm256_set1_ps(-(dminx * y[a][i].d)), _mm256_cvtepi32_ps(min_sums), acc[a]);
    }
  }
  for (int a = 0; a < NA; ++a) out[a * out_stride] = hsum_ps(acc[a]);
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

template <int NA>
void q6_k_tile(std::int64_t n, const void* w, const void* acts, std::size_t act_row_bytes, float* out,
               std::size_t out_stride) {
  const BlockQ6_K* x = static_cast<const BlockQ6_K*>(w);
  const BlockQ8_K* y[NA];
  for (int a = 0; a < NA; ++a) y[a] = act_row<BlockQ8_K>(acts, act_row_bytes, a);
  __m256 acc[NA];
  for (int a = 0; a < NA; ++a) acc[a] = _mm256_setzero_ps();
  const __m256i m4 = _mm256_set1_epi8(0x0f);
  const std::int64_t nb = n / kQK_K;
  for (std::int64_t i = 0; i < nb; ++i) {
    prefetch_ahead(x + i);
    const std::int8_t* sc = x[i].scales;  // 16 signed 8-bit sub-block scales
    const __m256i scales16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(sc)));
    const SubBlockScales chunk_scales(scales16);
    __m256i sumi[NA];
    for (int a = 0; a < NA; ++a) sumi[a] = _mm256_setzero_si256();
    for (int half = 0; half < 2; ++half) {
      const __m256i bits1 = load256(x[i].ql + 64 * half);
      const __m256i bits2 = load256(x[i].ql + 64 * half + 32);
      const __m256i hb = load256(x[i].qh + 32 * half);
      // Unsigned 6-bit quants (value + 32) of the four 32-element chunks of this half.
      __m256i q[4];
      q[0] = _mm256_or_si256(_mm256_and_si256(bits1, m4), _mm256_slli_epi16(two_bits(hb, 0), 4));
      q[1] = _mm256_or_si256(_mm256_and_si256(bits2, m4), _mm256_slli_epi16(two_bits(hb, 2), 4));
      q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(bits1, 4), m4), _mm256_slli_epi16(two_bits(hb, 4), 4));
      q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(bits2, 4), m4), _mm256_slli_epi16(two_bits(hb, 6), 4));
      for (int k = 0; k < 4; ++k) {
        const int chunk = 4 * half + k;
        const __m256i scale = chunk_scales.chunk(chunk);
        for (int a = 0; a < NA; ++a) {
          sumi[a] = _mm256_add_epi32(sumi[a], chunk_dot(q[k], load256(y[a][i].qs + 32 * chunk), scale));
        }
      }
    }
    const float dx = h2f(x[i].d);
    for (int a = 0; a < NA; ++a) {
      // The quants above carry +32: remove 32 * sum_j scale_j * bsum_j.
      const __m256i offset = _mm256_slli_epi32(bsums_dot(y[a][i], scales16), 5);
      acc[a] = _mm256_fmadd_ps(_mm256_set1_ps(dx * y[a][i].d), _mm256_cvtepi32_ps(_mm256_sub_epi32(sumi[a], offset)), acc[a]);
    }
  }
  for (int a = 0; a < NA; ++a) out[a * out_stride] = hsum_ps(acc[a]);
}

// ---- Q2_K / Q3_K ----------------------------------------------------------------------------------

template <int NA>
void q2_k_tile(std::int64_t n, const void* w, const void* acts, std::size_t act_row_bytes, float* out,
               std::size_t out_stride) {
  const BlockQ2_K* x = static_cast<const BlockQ2_K*>(w);
  const BlockQ8_K* y[NA];
  for (int a = 0; a < NA; ++a) y[a] = act_row<BlockQ8_K>(acts, act_row_bytes, a);
  __m256 acc[NA];
  for (int a = 0; a < NA; ++a) acc[a] = _mm256_setzero_ps();
  const std::int64_t nb = n / kQK_K;
  for (std::int64_t i = 0; i < nb; ++i) {
    prefetch_ahead(x + i);
    const std::uint8_t* sc = x[i].scales;
    const __m256i sc16 = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(sc)));
    const __m256i mins16 = _mm256_srli_epi16(sc16, 4);
    const SubBlockScales chunk_scales(_mm256_and_si256(sc16, _mm256_set1_epi16(0x0f)));
    __m256i sumi[NA];
    for (int a = 0; a < NA; ++a) sumi[a] = _mm256_setzero_si256();
    for (int half = 0; half < 2; ++half) {
      const __m256i bits = load256(x[i].qs + 32 * half);
      for (int k = 0; k < 4; ++k) {
        const int chunk = 4 * half + k;
        const __m256i q = two_bits(bits, 2 * k);
        const __m256i scale = chunk_scales.chunk(chunk);
        for (int a = 0; a < NA; ++a) {
          sumi[a] = _mm256_add_epi32(sumi[a], chunk_dot(q, load256(y[a][i].qs + 32 * chunk), scale));
        }
      }
    }
    const float dx = h2f(x[i].d);
    const float dminx = h2f(x[i].dmin);
    for (int a = 0; a < NA; ++a) {
      const __m256i min_sums = bsums_dot(y[a][i], mins16);
      acc[a] = _mm256_fmadd_ps(_mm256_set1_ps(y[a][i].d * dx), _mm256_cvtepi32_ps(sumi[a]), acc[a]);
      acc[a] = _mm256_fmadd_ps(_mm256_set1_ps(-(y[a][i].d * dminx)), _mm256_cvtepi32_ps(min_sums), acc[a]);
    }
  }
  for (int a = 0; a < NA; ++a) out[a * out_stride] = hsum_ps(acc[a]);
}

template <int NA>
void q3_k_tile(std::int64_t n, const void* w, const void* acts, std::size_t act_row_bytes, float* out,
               std::size_t out_stride) {
  const BlockQ3_K* x = static_cast<const BlockQ3_K*>(w);
  const BlockQ8_K* y[NA];
  for (int a = 0; a < NA; ++a) y[a] = act_row<BlockQ8_K>(acts, act_row_bytes, a);
  __m256 acc[NA];
  for (int a = 0; a < NA; ++a) acc[a] = _mm256_setzero_ps();
  const __m256i one = _mm256_set1_epi8(1);
  const std::int64_t nb = n / kQK_K;
  for (std::int64_t i = 0; i < nb; ++i) {
    prefetch_ahead(x + i);
    const __m256i scales16 = _mm256_cvtepi8_epi16(q3_k_scales(x[i].scales));
    const SubBlockScales chunk_scales(scales16);
    const __m256i hmask = load256(x[i].hmask);
    __m256i sumi[NA];
    for (int a = 0; a < NA; ++a) sumi[a] = _mm256_setzero_si256();
    for (int half = 0; half < 2; ++half) {
      const __m256i bits = load256(x[i].qs + 32 * half);
      for (int k = 0; k < 4; ++k) {
        const int chunk = 4 * half + k;
        // Unsigned 3-bit quant (value + 4): low two bits, plus 4 where hmask bit `chunk` is set.
        const __m256i high = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hmask, chunk), one), 2);
        const __m256i q = _mm256_or_si256(two_bits(bits, 2 * k), high);
        const __m256i scale = chunk_scales.chunk(chunk);
        for (int a = 0; a < NA; ++a) {
          sumi[a] = _mm256_add_epi32(sumi[a], chunk_dot(q, load256(y[a][i].qs + 32 * chunk), scale));
        }
      }
    }
    const float dx = h2f(x[i].d);
    for (int a = 0; a < NA; ++a) {
      const __m256i offset = _mm256_slli_epi32(bsums_dot(y[a][i], scales16), 2);  // 4 * sum scale * bsum
      acc[a] = _mm256_fmadd_ps(_mm256_set1_ps(dx * y[a][i].d), _mm256_cvtepi32_ps(_mm256_sub_epi32(sumi[a], offset)), acc[a]);
    }
  }
  for (int a = 0; a < NA; ++a) out[a * out_stride] = hsum_ps(acc[a]);
}

SLUICE_DEFINE_TILE_ENTRY_POINTS(q2_k, q2_k_tile)
SLUICE_DEFINE_TILE_ENTRY_POINTS(q3_k, q3_k_tile)
SLUICE_DEFINE_TILE_ENTRY_POINTS(q4_k, q4_k_tile)
SLUICE_DEFINE_TILE_ENTRY_POINTS(q5_k, q5_k_tile)
SLUICE_DEFINE_TILE_ENTRY_POINTS(q6_k, q6_k_tile)

// ---- Q8_K activation quantizer ------------------------------------------------------------------

// As scalar quantize_q8_k: iscale = -127 / (the signed value of largest magnitude, first on ties),
// q = round-to-nearest-even(iscale * x) (cvtps under the default MXCSR, like ggml's nearest_int),
// bsums from the quants.
void quantize_q8_k(const float* x, void* vy, std::int64_t n) {
  BlockQ8_K* y = static_cast<BlockQ8_K*>(vy);
  const std::int64_t nb = n / kQK_K;
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  for (std::int64_t i = 0; i < nb; ++i, x += kQK_K) {
    __m256 m = _mm256_setzero_ps();
    for (int k = 0; k < kQK_K; k += 8) m = _mm256_max_ps(m, _mm256_and_ps(_mm256_loadu_ps(x + k), abs_mask));
    __m128 r = _mm_max_ps(_mm256_extractf128_ps(m, 1), _mm256_castps256_ps128(m));
    r = _mm_max_ps(r, _mm_movehl_ps(r, r));
    r = _mm_max_ss(r, _mm_movehdup_ps(r));
    const float amax = _mm_cvtss_f32(r);
    if (amax == 0.0f) {
      std::memset(&y[i], 0, sizeof(BlockQ8_K));
      continue;
    }
    float max = 0.0f;
    const __m256 vamax = _mm256_set1_ps(amax);
    for (int k = 0; k < kQK_K; k += 8) {
      const int hits = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_and_ps(_mm256_loadu_ps(x + k), abs_mask), vamax, _CMP_EQ_OQ));
      if (hits != 0) {
        max = x[k + __builtin_ctz(static_cast<unsigned>(hits))];
        break;
      }
    }
    const float iscale = -127.f / max;
    const __m256 vscale = _mm256_set1_ps(iscale);
    const __m256i q_max = _mm256_set1_epi32(127);
    for (int k = 0; k < kQK_K; k += 32) {
      __m256i q[4];
      for (int u = 0; u < 4; ++u) {
        q[u] = _mm256_min_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + k + 8 * u), vscale)), q_max);
      }
      const __m256i packed = pack_32_i8(q[0], q[1], q[2], q[3]);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(y[i].qs + k), packed);
      // Sums of 16 signed bytes: bias to unsigned, SAD against zero per 8 bytes, remove the bias.
      const __m256i sad = _mm256_sad_epu8(_mm256_xor_si256(packed, _mm256_set1_epi8(static_cast<char>(0x80))),
                                          _mm256_setzero_si256());
      constexpr int kBias16 = 16 * 128;
      y[i].bsums[k / 16] = static_cast<std::int16_t>(_mm256_extract_epi64(sad, 0) + _mm256_extract_epi64(sad, 1) - kBias16);
      y[i].bsums[k / 16 + 1] = static_cast<std::int16_t>(_mm256_extract_epi64(sad, 2) + _mm256_extract_epi64(sad, 3) - kBias16);
    }
    y[i].d = 1 / iscale;
  }
}

}  // namespace

void register_avx2_k_kernels(KernelTable& t) {
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
  t.quantize_activation[type_slot(GgmlType::Q8_K)] = quantize_q8_k;
}

}  // namespace sluice::cpu
