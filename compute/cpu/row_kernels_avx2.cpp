// AVX2 (+FMA, F16C) row kernels (row_kernels_simd.hpp): 8 floats per vector; tails go
// through a zeroed stack buffer (AVX2 has no masked 16-bit loads).
#include <algorithm>
#include <cstring>

#include "compute/cpu/row_kernels_simd.hpp"

namespace sluice::cpu {
namespace {

struct Avx2 {
  using F = __m256;
  static constexpr int kWidth = 8;
  static F zero() { return _mm256_setzero_ps(); }
  static F set1_rounded_to_half(float x) {
    const __m128i h = _mm_cvtps_ph(_mm_set_ss(x), _MM_FROUND_TO_NEAREST_INT);
    return _mm256_broadcastss_ps(_mm_cvtph_ps(h));
  }
  static F load(const float* p) { return _mm256_loadu_ps(p); }
  static F load_tail(const float* p, int n) {
    alignas(32) float buf[kWidth] = {};
    std::memcpy(buf, p, sizeof(float) * std::size_t(n));
    return _mm256_load_ps(buf);
  }
  static F load_half(const std::uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
  static F load_half_tail(const std::uint16_t* p, int n) {
    alignas(16) std::uint16_t buf[kWidth] = {};
    std::memcpy(buf, p, sizeof(std::uint16_t) * std::size_t(n));
    return _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(buf)));
  }
  static void store(float* p, F x) { _mm256_storeu_ps(p, x); }
  static void store_tail(float* p, F x, int n) {
    alignas(32) float buf[kWidth];
    _mm256_store_ps(buf, x);
    std::memcpy(p, buf, sizeof(float) * std::size_t(n));
  }
  static F fma(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
  static F round_to_half(F x) { return _mm256_cvtph_ps(_mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT)); }
  static F geglu(F x, F up, const std::uint16_t* table) {
    const __m256i index = _mm256_cvtepu16_epi32(_mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT));
    const __m256i entries = _mm256_i32gather_epi32(reinterpret_cast<const int*>(table), index, 2);
    const __m256i halves = _mm256_and_si256(entries, _mm256_set1_epi32(0xffff));
    const __m256 gelu = _mm256_cvtph_ps(_mm_packus_epi32(_mm256_castsi256_si128(halves), _mm256_extracti128_si256(halves, 1)));
    __m256 r = _mm256_mul_ps(gelu, up);
    r = _mm256_blendv_ps(r, _mm256_mul_ps(x, up), _mm256_cmp_ps(x, _mm256_set1_ps(kGeluTableLimit), _CMP_GE_OQ));
    return _mm256_blendv_ps(r, _mm256_setzero_ps(), _mm256_cmp_ps(x, _mm256_set1_ps(-kGeluTableLimit), _CMP_LE_OQ));
  }
  static F mul(F a, F b) { return _mm256_mul_ps(a, b); }
  // ggml_v_expf (ggml-cpu/vec.h, AVX2): exp(x) = k (1 + p(b)) with k = 2^n built in the exponent
  // bits; |n| > 126 splits the scale in two (s1 s2) so 2^n under- or overflows only in the last
  // product, and |n| > 192 gives 0 or infinity.
  static F exp(F x) {
    const F r = _mm256_set1_ps(0x1.8p23f);
    const F z = _mm256_fmadd_ps(x, _mm256_set1_ps(0x1.715476p+0f), r);
    const F n = _mm256_sub_ps(z, r);
    const F b = _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.7f7d1cp-20f), _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.62e4p-1f), x));
    const __m256i e = _mm256_slli_epi32(_mm256_castps_si256(z), 23);
    const F k = _mm256_castsi256_ps(_mm256_add_epi32(e, _mm256_castps_si256(_mm256_set1_ps(1.0f))));
    const F abs_n = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), n);
    const F large = _mm256_cmp_ps(abs_n, _mm256_set1_ps(126), _CMP_GT_OQ);
    const F u = _mm256_mul_ps(b, b);
    const F j = _mm256_fmadd_ps(
        _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_set1_ps(0x1.0e4020p-7f), b, _mm256_set1_ps(0x1.573e2ep-5f)), u,
                        _mm256_fmadd_ps(_mm256_set1_ps(0x1.555e66p-3f), b, _mm256_set1_ps(0x1.fffdb6p-2f))),
        u, _mm256_mul_ps(_mm256_set1_ps(0x1.ffffecp-1f), b));
    if (_mm256_movemask_ps(large) == 0) return _mm256_fmadd_ps(j, k, k);
    const __m256i g = _mm256_and_si256(_mm256_castps_si256(_mm256_cmp_ps(n, _mm256_setzero_ps(), _CMP_LE_OQ)),
                                       _mm256_set1_epi32(int(0x82000000u)));
    const F s1 = _mm256_castsi256_ps(_mm256_add_epi32(g, _mm256_set1_epi32(0x7f000000)));
    const F s2 = _mm256_castsi256_ps(_mm256_sub_epi32(e, g));
    const F huge = _mm256_cmp_ps(abs_n, _mm256_set1_ps(192), _CMP_GT_OQ);
    const F split = _mm256_blendv_ps(_mm256_fmadd_ps(k, j, k), _mm256_mul_ps(_mm256_fmadd_ps(s2, j, s2), s1), large);
    return _mm256_blendv_ps(split, _mm256_mul_ps(s1, s1), huge);
  }
  // ggml_v_silu: x / (1 + exp(-x)).
  static F silu(F x) {
    const F e = exp(_mm256_sub_ps(_mm256_setzero_ps(), x));
    return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
  }
  static float reduce(F x) { return hsum_ps(x); }
};

}  // namespace

void register_avx2_row_kernels(KernelTable& t) {
  fill_row_kernels<Avx2>(t);
}

}  // namespace sluice::cpu
