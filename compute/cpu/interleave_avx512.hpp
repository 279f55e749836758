// What the AVX-512 K-quant vec_dots (quants_k_avx512.cpp) and GEMM tiles (matmul_k_avx512.cpp)
// share to form their int32 lanes: two chunks' 4-product sums P (each fits int16) interleaved as
// the low and high int16 halves of each lane, and the scale lanes for the one vpdpwssd that
// multiplies them. Include only from files compiled with the AVX-512 flags (internal linkage,
// as simd_x86.hpp).
#pragma once

#include "compute/cpu/simd_x86.hpp"

namespace sluice::cpu {
namespace {  // NOLINT(google-build-namespaces): internal linkage per SIMD file, see simd_x86.hpp

// Bytes 2 and 3 of every int32 lane (its high int16 half).
constexpr __mmask64 kHighHalfBytes = 0xccccccccccccccccull;

// Lane l of P(2m, l) and P(2m + 1, l) as the low and high int16 of lane l: one masked vpshufb
// (each lane's bytes 0 and 1 of p_odd copied to its bytes 2 and 3) where a shift and a blend did
// the same; the shift ran on the port the three multiplies per 128 products need (Intel runs
// 512-bit shifts on port 0 only), the shuffle does not. 8-11% faster Q4_K GEMM, same bits.
inline __m512i interleave_pair(__m512i p_even, __m512i p_odd) {
  const __m512i low_half_up = _mm512_set4_epi32(0x0d0c8080, 0x09088080, 0x05048080, 0x01008080);
  return _mm512_mask_shuffle_epi8(p_even, kHighHalfBytes, p_odd, low_half_up);
}

// Scale pairs for vpdpwssd over interleaved P: for chunk pair m = 0, 1, int16 lanes 2l and 2l + 1
// of index[m] pick the scales of lane l in chunks 2m and 2m + 1, i.e. of 16-element groups
// 8m + l / 4 and 8m + 4 + l / 4 (vpermw indices into the 16 group scales).
struct ScalePairIndex {
  alignas(64) std::int16_t index[2][32];
  constexpr ScalePairIndex() : index{} {
    for (int m = 0; m < 2; ++m) {
      for (int l = 0; l < 16; ++l) {
        index[m][2 * l] = static_cast<std::int16_t>(8 * m + l / 4);
        index[m][2 * l + 1] = static_cast<std::int16_t>(8 * m + 4 + l / 4);
      }
    }
  }
};
constexpr ScalePairIndex kScalePairIndex;

}  // namespace
}  // namespace sluice::cpu
