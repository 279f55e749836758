// GEMM driver shared by the K-quant micro-kernels (MatmulRowsFn, kernels.hpp) of
// matmul_k_avx2.cpp and matmul_k_avx512.cpp. Include only from files compiled with at least
// -mavx2 -mfma -mf16c; like simd_x86.hpp everything here has internal linkage per SIMD file.
//
// The K-quant vec_dots (quants_k_avx2.cpp, quants_k_avx512.cpp) decode each 256-element
// super-block (nibbles, high bits, 6-bit scales) for every activation row they meet: with
// vec_dot_multi, once per 4 activation rows. Here a pass of weight rows is decoded once per
// matmul into PackedKBlocks, and every tile of activation rows then reads the decoded quants and
// scale vectors directly. The integer block sums are exact whatever the decode; the level's tile
// kernel repeats its vec_dot's float steps (lanes, fma order, horizontal sum) so that every output
// equals that vec_dot bit for bit (tests/compute/test_matmul.cpp checks it).
#pragma once

#include <algorithm>
#include <vector>

#include "compute/cpu/simd_x86.hpp"

namespace sluice::cpu {
namespace {  // NOLINT(google-build-namespaces): internal linkage per SIMD file, see simd_x86.hpp

// One super-block of one weight row, decoded. The layout is the same for both levels: the
// AVX2 tiles read it 32 quants (and 16 scale lanes) at a time, the AVX-512 tiles 64 (32 lanes).
struct alignas(64) PackedKBlock {
  // Unsigned quants in element order: Q4_K 0..15, Q5_K 0..31, Q6_K 0..63 (value + 32).
  std::uint8_t q[kQK_K];
  // int16 lane k multiplies the maddubs pair sum of elements 2k, 2k+1: the scale of 16-element
  // group k / 8 (the lanes the vec_dots build with their scale shuffles).
  std::int16_t scale[kQK_K / 2];
  // Per 16-element group, the coefficient of Q8_K's bsums: Q4_K/Q5_K the sub-block mins, Q6_K the
  // group scales (for the +32 offset).
  std::int16_t coeff[kQK_K / 16];
  float d;     // fp16 d, as fp32
  float dmin;  // fp16 dmin, as fp32 (0 for Q6_K)
};
static_assert(sizeof(PackedKBlock) == 576, "256 quants + 128 scale lanes + 16 coefficients + d, dmin");

// Decoded rows kept per pass: the tiles re-read them once per tile of activation rows, so they
// should stay in L2 (half of a Zen 4 core's 1 MiB; 16 rows of a 4096-column matrix are 147 KB).
constexpr std::size_t kPackBytes = 256 * 1024;

inline void store256(void* p, __m256i v) { _mm256_storeu_si256(static_cast<__m256i*>(p), v); }
inline __m256i loadu256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// Scale lanes: 16 groups of 16 elements, 8 int16 lanes each.
inline void store_group_scales(const std::int16_t* group, std::int16_t* lanes) {
  for (int g = 0; g < kQK_K / 16; ++g) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(lanes + 8 * g), _mm_set1_epi16(group[g]));
  }
}

template <bool kHasHighBit, typename Block>
void pack_k4(const Block& x, PackedKBlock& p) {
  const __m128i scales_mins = k4_scales_mins(x.scales);
  alignas(32) std::int16_t group[kQK_K / 16];
  store256(group, per_group_of_pairs(scales_mins));
  store_group_scales(group, p.scale);
  store256(p.coeff, per_group_of_pairs(_mm_unpackhi_epi64(scales_mins, scales_mins)));
  const __m256i m4 = _mm256_set1_epi8(0x0f);
  const __m256i bit4 = _mm256_set1_epi8(0x10);
  __m256i hbits = _mm256_setzero_si256();
  if constexpr (kHasHighBit) hbits = loadu256(x.qh);
  for (int j = 0; j < kQK_K / 64; ++j) {
    // Low nibbles: elements 64j..64j+31; high nibbles: 64j+32..64j+63.
    const __m256i q4bits = loadu256(x.qs + 32 * j);
    __m256i ql = _mm256_and_si256(q4bits, m4);
    __m256i qh = _mm256_and_si256(_mm256_srli_epi16(q4bits, 4), m4);
    if constexpr (kHasHighBit) {
      // Bit 2j of qh[l] is the fifth bit of element 64j + l, bit 2j+1 that of 64j + 32 + l.
      ql = _mm256_or_si256(ql, _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(hbits, 2 * j), 4), bit4));
      qh = _mm256_or_si256(qh, _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(hbits, 2 * j + 1), 4), bit4));
    }
    store256(p.q + 64 * j, ql);
    store256(p.q + 64 * j + 32, qh);
  }
  p.d = h2f(x.d);
  p.dmin = h2f(x.dmin);
}

void pack_q4_k(const void* x, PackedKBlock& p) { pack_k4<false>(*static_cast<const BlockQ4_K*>(x), p); }
void pack_q5_k(const void* x, PackedKBlock& p) { pack_k4<true>(*static_cast<const BlockQ5_K*>(x), p); }

void pack_q6_k(const void* vx, PackedKBlock& p) {
  const BlockQ6_K& x = *static_cast<const BlockQ6_K*>(vx);
  const __m256i scales16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x.scales)));
  alignas(32) std::int16_t group[kQK_K / 16];
  store256(group, scales16);
  store_group_scales(group, p.scale);
  store256(p.coeff, scales16);
  const __m256i m4 = _mm256_set1_epi8(0x0f);
  const __m256i m2 = _mm256_set1_epi8(3);
  for (int half = 0; half < 2; ++half) {
    // Elements 128h + 32k + l: low bits from ql[64h + 32(k % 2) + l] (nibble k / 2), high bits
    // from bits 2k, 2k+1 of qh[32h + l].
    const __m256i bits1 = loadu256(x.ql + 64 * half);
    const __m256i bits2 = loadu256(x.ql + 64 * half + 32);
    const __m256i hb = loadu256(x.qh + 32 * half);
    const __m256i low[4] = {_mm256_and_si256(bits1, m4), _mm256_and_si256(bits2, m4),
                            _mm256_and_si256(_mm256_srli_epi16(bits1, 4), m4),
                            _mm256_and_si256(_mm256_srli_epi16(bits2, 4), m4)};
    for (int k = 0; k < 4; ++k) {
      const __m256i high = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2 * k), m2), 4);
      store256(p.q + 128 * half + 32 * k, _mm256_or_si256(low[k], high));
    }
  }
  p.d = h2f(x.d);
  p.dmin = 0.0f;
}

using PackKFn = void (*)(const void* block, PackedKBlock& out);
// Rows of a tile of n_acts (<= the level's tile width) activation rows against one packed weight
// row of nb super-blocks: out[a * out_stride] for a in [0, n_acts).
using KTileFn = void (*)(int n_acts, const PackedKBlock* row, std::int64_t nb, const BlockQ8_K* const* acts,
                         float* out, std::size_t out_stride);

// The MatmulRowsFn body (kernels.hpp contract). Batch 1 (decode) has nothing to reuse a decoded
// block for: it calls the level's vec_dot row by row, as the matmul did before.
template <int kTileActs>
void matmul_rows_k(PackKFn pack, KTileFn tile, std::size_t block_bytes, VecDotFn vec_dot, std::int64_t cols,
                   const void* weights, std::size_t weight_row_bytes, std::int64_t r0, std::int64_t r1,
                   const void* acts, std::size_t act_row_bytes, std::int64_t batch, float* y, std::size_t y_stride) {
  if (r1 <= r0 || batch <= 0) return;
  const std::byte* w = static_cast<const std::byte*>(weights);
  if (batch == 1) {
    for (std::int64_t r = r0; r < r1; ++r) y[r] = vec_dot(cols, w + static_cast<std::size_t>(r) * weight_row_bytes, acts);
    return;
  }
  const std::int64_t nb = cols / kQK_K;
  const std::int64_t pass_rows = std::clamp<std::int64_t>(
      static_cast<std::int64_t>(kPackBytes / (static_cast<std::size_t>(nb) * sizeof(PackedKBlock))), 1,
      kMatmulRowsStrip);
  thread_local std::vector<PackedKBlock> packed;
  if (packed.size() < static_cast<std::size_t>(pass_rows * nb)) packed.resize(static_cast<std::size_t>(pass_rows * nb));
  for (std::int64_t s = r0; s < r1; s += pass_rows) {
    const std::int64_t n_rows = std::min(pass_rows, r1 - s);
    for (std::int64_t r = 0; r < n_rows; ++r) {
      const std::byte* row = w + static_cast<std::size_t>(s + r) * weight_row_bytes;
      for (std::int64_t ib = 0; ib < nb; ++ib) pack(row + static_cast<std::size_t>(ib) * block_bytes, packed[r * nb + ib]);
    }
    for (std::int64_t b = 0; b < batch; b += kTileActs) {
      const int n_acts = static_cast<int>(std::min<std::int64_t>(kTileActs, batch - b));
      const BlockQ8_K* act[kTileActs];
      for (int a = 0; a < n_acts; ++a) act[a] = act_row<BlockQ8_K>(acts, act_row_bytes, static_cast<int>(b + a));
      for (std::int64_t r = 0; r < n_rows; ++r) {
        tile(n_acts, packed.data() + r * nb, nb, act, y + static_cast<std::size_t>(b) * y_stride + s + r, y_stride);
      }
    }
  }
}

}  // namespace
}  // namespace sluice::cpu
