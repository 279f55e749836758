// The heads of Q4_K / Q5_K super-blocks (d, dmin and the 12 bytes of 6-bit scales and mins) of
// 16 weight rows decoded at once, one zmm lane per row: what the AVX-512 one-lane-per-row GEMM
// (matmul_k16_avx512.cpp) and the AMX GEMM (matmul_amx.cpp) pack from. Include only from files
// compiled with the AVX-512 flags (internal linkage, as simd_x86.hpp).
#pragma once

#include <cstddef>
#include <cstdint>

#include "compute/cpu/blocks.hpp"
#include "compute/cpu/simd_x86.hpp"

namespace sluice::cpu {
namespace {  // NOLINT(google-build-namespaces): internal linkage per SIMD file, see simd_x86.hpp

// vpshufb control: in every dword, bytes (b0, 0, b1, 0) of that dword as two int16.
inline __m512i byte_pair_index(int b0, int b1) {
  auto word = [&](int j) { return static_cast<int>((4 * j + b0) | 0x8000 | ((4 * j + b1) << 16) | 0x80000000u); };
  return _mm512_set4_epi32(word(3), word(2), word(1), word(0));
}

// Q4_K (kHasHighBit false) / Q5_K block layouts: d, dmin, 12 scale bytes, [qh 32,] qs 128.
template <bool kHasHighBit>
struct K16Layout {
  static constexpr std::size_t kBlockBytes = kHasHighBit ? sizeof(BlockQ5_K) : sizeof(BlockQ4_K);
  static constexpr std::size_t kQhAt = 16;
  static constexpr std::size_t kQsAt = kHasHighBit ? 48 : 16;
};

// The 16 bytes at rows[r] + at, r < n_rows, as dword lanes: head[q] lane r = dword q of row r
// (zero past n_rows). Four 128-bit loads per register, then a 16 x 4 transpose as two-register
// permutes and a blend.
inline void transpose_heads(const std::byte* const* rows, int n_rows, std::size_t at, __m512i head[4]) {
  __m512i z[4];  // z[k] lane block h = row 4k + h
  for (int k = 0; k < 4; ++k) {
    z[k] = _mm512_setzero_si512();
    for (int h = 0; h < 4; ++h) {
      const int r = 4 * k + h;
      if (r >= n_rows) break;
      const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[r] + at));
      // A masked broadcast, not _mm512_inserti32x4: its lane must be an immediate, which h is
      // only once the loop is unrolled (not at -O1, the sanitizer build).
      z[k] = _mm512_mask_broadcast_i32x4(z[k], static_cast<__mmask16>(0xfu << (4 * h)), v);
    }
  }
  for (int q = 0; q < 4; ++q) {
    alignas(64) std::int32_t index[16];
    for (int r = 0; r < 16; ++r) index[r] = 4 * (r % 4) + q + 16 * ((r / 4) % 2);
    const __m512i idx = _mm512_load_si512(index);
    head[q] = _mm512_mask_blend_epi32(0xff00, _mm512_permutex2var_epi32(z[0], idx, z[1]),
                                      _mm512_permutex2var_epi32(z[2], idx, z[3]));
  }
}

// Lane r = row r (zero past n_rows) of super-block heads at rows[r] + at: d and -dmin as floats;
// scales[0] bytes 4r..4r+3 = scales 0..3 of row r, scales[1] = scales 4..7; mins likewise
// (ggml's get_scale_min_k4, lane-wise).
struct K4Heads {
  __m512 d, neg_dmin;
  __m512i scales[2], mins[2];
};

inline K4Heads decode_k4_heads(const std::byte* const* rows, int n_rows, std::size_t at) {
  // Head dwords: (d, dmin), u0, u1, u2 (the 12 scale bytes) as lanes of head[0..3].
  __m512i head[4];
  transpose_heads(rows, n_rows, at, head);
  K4Heads h;
  h.d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(head[0]));
  const __m512 dmin = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(head[0], 16)));
  h.neg_dmin = _mm512_xor_ps(dmin, _mm512_set1_ps(-0.0f));
  const __m512i u0 = head[1], u1 = head[2], u2 = head[3];
  const __m512i six = _mm512_set1_epi8(0x3f), four = _mm512_set1_epi8(0x0f), top = _mm512_set1_epi8(0x30);
  h.scales[0] = _mm512_and_si512(u0, six);
  h.scales[1] = _mm512_ternarylogic_epi32(_mm512_and_si512(u2, four), _mm512_srli_epi32(u0, 2), top, 0xf8);
  h.mins[0] = _mm512_and_si512(u1, six);
  h.mins[1] = _mm512_ternarylogic_epi32(_mm512_and_si512(_mm512_srli_epi32(u2, 4), four), _mm512_srli_epi32(u1, 2), top, 0xf8);
  return h;
}

}  // namespace
}  // namespace sluice::cpu
