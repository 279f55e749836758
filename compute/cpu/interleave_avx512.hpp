// The one step the AVX-512 K-quant vec_dots (quants_k_avx512.cpp) and GEMM tiles
// (matmul_k_avx512.cpp) share to form their int32 lanes: two chunks' 4-product sums P (each fits
// int16) interleaved as the low and high int16 halves of each lane, for one vpdpwssd with the
// interleaved scales. Include only from files compiled with the AVX-512 flags (internal linkage,
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

}  // namespace
}  // namespace sluice::cpu
