// AVX-512 row kernels (row_kernels_simd.hpp): 16 floats per vector, tails by mask.
#include <algorithm>
#include <cmath>

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
  static F mul(F a, F b) { return _mm512_mul_ps(a, b); }
  // ggml_v_expf (ggml-cpu/vec.h, AVX-512): exp(x) = 2^n (1 + p(b)), n = round(x / ln 2),
  // b = x - n ln 2 in two steps; |n| > 192 gives 0 or infinity.
  static F exp(F x) {
    const F r = _mm512_set1_ps(0x1.8p23f);
    const F z = _mm512_fmadd_ps(x, _mm512_set1_ps(0x1.715476p+0f), r);
    const F n = _mm512_sub_ps(z, r);
    const F b = _mm512_fnmadd_ps(n, _mm512_set1_ps(0x1.7f7d1cp-20f), _mm512_fnmadd_ps(n, _mm512_set1_ps(0x1.62e4p-1f), x));
    const __mmask16 out_of_range = _mm512_cmp_ps_mask(_mm512_abs_ps(n), _mm512_set1_ps(192), _CMP_GT_OQ);
    const F u = _mm512_mul_ps(b, b);
    const F j = _mm512_fmadd_ps(
        _mm512_fmadd_ps(_mm512_fmadd_ps(_mm512_set1_ps(0x1.0e4020p-7f), b, _mm512_set1_ps(0x1.573e2ep-5f)), u,
                        _mm512_fmadd_ps(_mm512_set1_ps(0x1.555e66p-3f), b, _mm512_set1_ps(0x1.fffdb6p-2f))),
        u, _mm512_fmadd_ps(_mm512_set1_ps(0x1.ffffecp-1f), b, _mm512_set1_ps(1.0f)));
    const F res = _mm512_scalef_ps(j, n);
    if (out_of_range == 0) return res;
    const F zero = _mm512_setzero_ps();
    const F limit = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(n, zero, _CMP_LE_OQ), _mm512_set1_ps(INFINITY), zero);
    return _mm512_mask_blend_ps(out_of_range, res, limit);
  }
  // ggml_v_silu: x / (1 + exp(-x)).
  static F silu(F x) {
    const F e = exp(_mm512_sub_ps(_mm512_setzero_ps(), x));
    return _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
  }
  static float reduce(F x) { return _mm512_reduce_add_ps(x); }
};

}  // namespace

void register_avx512_row_kernels(KernelTable& t) {
  fill_row_kernels<Avx512>(t);
}

}  // namespace sluice::cpu
