// AVX-512 row kernels (row_kernels_simd.hpp): 16 floats per vector, tails by mask.
#include <algorithm>

#include "compute/cpu/row_kernels_simd.hpp"

namespace sluice::cpu {
namespace {

struct Avx512 {
  using F = __m512;
  static constexpr int kWidth = 16;
  static __mmask16 mask(int n) { return static_cast<__mmask16>((1u << n) - 1); }
  static F zero() { return _mm512_setzero_ps(); }
  static F set1_rounded_to_half(float x) {
    const __m128i h = _mm_cvtps_ph(_mm_set_ss(x), _MM_FROUND_TO_NEAREST_INT);
    return _mm512_broadcastss_ps(_mm_cvtph_ps(h));
  }
  static F load(const float* p) { return _mm512_loadu_ps(p); }
  static F load_tail(const float* p, int n) { return _mm512_maskz_loadu_ps(mask(n), p); }
  static F load_half(const std::uint16_t* p) { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
  static F load_half_tail(const std::uint16_t* p, int n) { return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask(n), p)); }
  static void store(float* p, F x) { _mm512_storeu_ps(p, x); }
  static void store_tail(float* p, F x, int n) { _mm512_mask_storeu_ps(p, mask(n), x); }
  static F fma(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
  static F round_to_half(F x) { return _mm512_cvtph_ps(_mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT)); }
  static F geglu(F x, F up, const std::uint16_t* table) {
    const __m512i index = _mm512_cvtepu16_epi32(_mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT));
    const __m512i entries = _mm512_i32gather_epi32(index, table, 2);  // the half in each low 16 bits
    const __m512 gelu = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(entries));
    __m512 r = _mm512_mul_ps(gelu, up);
    r = _mm512_mask_mov_ps(r, _mm512_cmp_ps_mask(x, _mm512_set1_ps(kGeluTableLimit), _CMP_GE_OQ), _mm512_mul_ps(x, up));
    return _mm512_mask_mov_ps(r, _mm512_cmp_ps_mask(x, _mm512_set1_ps(-kGeluTableLimit), _CMP_LE_OQ), _mm512_setzero_ps());
  }
  static float reduce(F x) { return _mm512_reduce_add_ps(x); }
};

}  // namespace

void register_avx512_row_kernels(KernelTable& t) {
  fill_row_kernels<Avx512>(t);
}

}  // namespace sluice::cpu
