// AVX2 form of the Q4_K/Q5_K reference scale search (ggml make_qkx2_quants), for writing K-quant
// models fast (`sluice synth --type Q4_K`): the same bytes as quantize_row_reference, 5-8x faster.
//
// Bit-identical by construction: the 8 float lanes hold the 8 sub-blocks of one super-block, and
// each lane runs exactly the reference's sequence of IEEE operations on its sub-block (same
// order of sums, no fused multiply-adds: -ffp-contract=off on the whole library, and no FMA
// intrinsic here), with ggml's nearest_int magic-number rounding done in integer lanes. The
// reference's branches become lane masks: min > 0, max == min, D > 0, this_min > 0, and
// cur_error < best_error (all false for NaN, as the scalar comparisons are).
// tests/compute/test_quants.cpp compares the bytes with the reference on edge-case rows.
#include "compute/cpu/k_quant_search.hpp"
#include "compute/cpu/quants.hpp"
#include "compute/cpu/simd_x86.hpp"

namespace sluice::cpu {
namespace {

constexpr int kSubBlocks = kQK_K / 32;  // = 8, one per float lane
constexpr int kSubBlockElements = 32;
static_assert(kSubBlocks == 8, "one AVX2 float lane per Q4_K sub-block");

// ggml's nearest_int on 8 lanes: add 1.5 * 2^23, read the mantissa bits (k_quant_search.hpp).
inline __m256i nearest_int8(__m256 v) {
  const __m256 shifted = _mm256_add_ps(v, _mm256_set1_ps(12582912.f));
  const __m256i bits = _mm256_castps_si256(shifted);
  return _mm256_sub_epi32(_mm256_and_si256(bits, _mm256_set1_epi32(0x007fffff)), _mm256_set1_epi32(0x00400000));
}

// clamp_int(v, 0, nmax) on 8 lanes.
inline __m256i clamp8(__m256i v, __m256i nmax) { return _mm256_max_epi32(_mm256_min_epi32(v, nmax), _mm256_setzero_si256()); }

// Lane mask as float bits: blendv picks `b` where the mask is set.
inline __m256 select(__m256 mask, __m256 a, __m256 b) { return _mm256_blendv_ps(a, b, mask); }
inline __m256i select(__m256 mask, __m256i a, __m256i b) {
  return _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(a), _mm256_castsi256_ps(b), mask));
}

// detail::K4SearchFn. make_qkx2_quants(32, nmax, x + 32j, weights + 32j, L + 32j, &mins[j], ...,
// rmin, rdelta, nstep, false) for j = 0..7, one sub-block per lane. Comments quote the scalar.
void search_k4_scales_avx2(const float* x, const float* weights, int nmax, float rmin, float rdelta, int nstep,
                           float* scales_out, float* mins_out, std::uint8_t* L) {
  // Transposed: xt[i] holds element i of every sub-block.
  alignas(32) float xt_mem[kSubBlockElements][kSubBlocks];
  alignas(32) float wt_mem[kSubBlockElements][kSubBlocks];
  for (int j = 0; j < kSubBlocks; ++j) {
    for (int i = 0; i < kSubBlockElements; ++i) {
      xt_mem[i][j] = x[kSubBlockElements * j + i];
      wt_mem[i][j] = weights[kSubBlockElements * j + i];
    }
  }
  __m256 xt[kSubBlockElements];
  __m256 wt[kSubBlockElements];
  for (int i = 0; i < kSubBlockElements; ++i) {
    xt[i] = _mm256_load_ps(xt_mem[i]);
    wt[i] = _mm256_load_ps(wt_mem[i]);
  }
  const __m256 zero = _mm256_setzero_ps();
  const __m256i nmax_i = _mm256_set1_epi32(nmax);

  // float min = x[0], max = x[0], sum_w = weights[0], sum_x = sum_w * x[0];
  __m256 min = xt[0];
  __m256 max = xt[0];
  __m256 sum_w = wt[0];
  __m256 sum_x = _mm256_mul_ps(sum_w, xt[0]);
  for (int i = 1; i < kSubBlockElements; ++i) {
    min = _mm256_min_ps(xt[i], min);  // if (x[i] < min) min = x[i];  (min_ps(a, b) = a < b ? a : b)
    max = _mm256_max_ps(xt[i], max);  // if (x[i] > max) max = x[i];
    sum_w = _mm256_add_ps(sum_w, wt[i]);
    sum_x = _mm256_add_ps(sum_x, _mm256_mul_ps(wt[i], xt[i]));
  }
  min = select(_mm256_cmp_ps(min, zero, _CMP_GT_OQ), min, zero);  // if (min > 0) min = 0;
  // if (max == min) { L = 0; the_min = -min; return 0; }: applied to these lanes at the end.
  const __m256 flat = _mm256_cmp_ps(max, min, _CMP_EQ_OQ);
  const __m256 flat_min = min;

  __m256 iscale = _mm256_div_ps(_mm256_set1_ps(static_cast<float>(nmax)), _mm256_sub_ps(max, min));
  __m256 scale = _mm256_div_ps(_mm256_set1_ps(1.0f), iscale);
  __m256 best_error = zero;
  __m256i best_l[kSubBlockElements];
  for (int i = 0; i < kSubBlockElements; ++i) {
    // L[i] = clamp(nearest_int(iscale * (x[i] - min)), 0, nmax);
    best_l[i] = clamp8(nearest_int8(_mm256_mul_ps(iscale, _mm256_sub_ps(xt[i], min))), nmax_i);
    // diff = scale * L[i] + min - x[i]; best_error += weights[i] * diff * diff;
    __m256 diff = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(scale, _mm256_cvtepi32_ps(best_l[i])), min), xt[i]);
    diff = _mm256_mul_ps(diff, diff);
    best_error = _mm256_add_ps(best_error, _mm256_mul_ps(wt[i], diff));
  }
  if (nstep >= 1) {
    __m256i aux_l[kSubBlockElements];
    for (int is = 0; is <= nstep; ++is) {
      // iscale = (rmin + rdelta * is + nmax) / (max - min): the numerator is one scalar for all
      // lanes; min is the best one so far, which the search moves.
      const float numerator = rmin + rdelta * static_cast<float>(is) + static_cast<float>(nmax);
      iscale = _mm256_div_ps(_mm256_set1_ps(numerator), _mm256_sub_ps(max, min));
      __m256 sum_l = zero, sum_l2 = zero, sum_xl = zero;
      for (int i = 0; i < kSubBlockElements; ++i) {
        aux_l[i] = clamp8(nearest_int8(_mm256_mul_ps(iscale, _mm256_sub_ps(xt[i], min))), nmax_i);
        const __m256 fl = _mm256_cvtepi32_ps(aux_l[i]);
        const __m256 w_fl = _mm256_mul_ps(wt[i], fl);
        sum_l = _mm256_add_ps(sum_l, w_fl);                          // sum_l += w * fl;
        sum_l2 = _mm256_add_ps(sum_l2, _mm256_mul_ps(w_fl, fl));     // sum_l2 += w * fl * fl;
        sum_xl = _mm256_add_ps(sum_xl, _mm256_mul_ps(w_fl, xt[i]));  // sum_xl += w * fl * x[i];
      }
      // D = sum_w * sum_l2 - sum_l * sum_l;  if (D > 0) { ... }
      const __m256 D = _mm256_sub_ps(_mm256_mul_ps(sum_w, sum_l2), _mm256_mul_ps(sum_l, sum_l));
      const __m256 d_positive = _mm256_cmp_ps(D, zero, _CMP_GT_OQ);
      __m256 this_scale = _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(sum_w, sum_xl), _mm256_mul_ps(sum_x, sum_l)), D);
      __m256 this_min = _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(sum_l2, sum_x), _mm256_mul_ps(sum_l, sum_xl)), D);
      // if (this_min > 0) { this_min = 0; this_scale = sum_xl / sum_l2; }
      const __m256 min_positive = _mm256_cmp_ps(this_min, zero, _CMP_GT_OQ);
      this_min = select(min_positive, this_min, zero);
      this_scale = select(min_positive, this_scale, _mm256_div_ps(sum_xl, sum_l2));
      __m256 cur_error = zero;
      for (int i = 0; i < kSubBlockElements; ++i) {
        __m256 diff = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(this_scale, _mm256_cvtepi32_ps(aux_l[i])), this_min), xt[i]);
        diff = _mm256_mul_ps(diff, diff);
        cur_error = _mm256_add_ps(cur_error, _mm256_mul_ps(wt[i], diff));
      }
      // if (cur_error < best_error) { L = Laux; best_error = cur_error; scale = this_scale; min = this_min; }
      const __m256 better = _mm256_and_ps(d_positive, _mm256_cmp_ps(cur_error, best_error, _CMP_LT_OQ));
      for (int i = 0; i < kSubBlockElements; ++i) best_l[i] = select(better, best_l[i], aux_l[i]);
      best_error = select(better, best_error, cur_error);
      scale = select(better, scale, this_scale);
      min = select(better, min, this_min);
    }
  }
  // The flat lanes: L = 0, scale 0, the_min = -min as it was before the search.
  scale = select(flat, scale, zero);
  min = select(flat, min, flat_min);
  const __m256 sign = _mm256_set1_ps(-0.0f);
  _mm256_storeu_ps(scales_out, scale);
  _mm256_storeu_ps(mins_out, _mm256_xor_ps(min, sign));  // *the_min = -min;
  alignas(32) std::int32_t lanes[kSubBlocks];
  for (int i = 0; i < kSubBlockElements; ++i) {
    _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), select(flat, best_l[i], _mm256_setzero_si256()));
    for (int j = 0; j < kSubBlocks; ++j) L[kSubBlockElements * j + i] = static_cast<std::uint8_t>(lanes[j]);
  }
}

void quantize_q4_k_weights(const float* x, void* y, std::int64_t n) {
  scalar::detail::quantize_q4_k_with(x, y, n, search_k4_scales_avx2);
}

void quantize_q5_k_weights(const float* x, void* y, std::int64_t n) {
  scalar::detail::quantize_q5_k_with(x, y, n, search_k4_scales_avx2);
}

}  // namespace

void register_avx2_weight_quantizers(KernelTable& t) {
  t.quantize_weights[type_slot(GgmlType::Q4_K)] = quantize_q4_k_weights;
  t.quantize_weights[type_slot(GgmlType::Q5_K)] = quantize_q5_k_weights;
}

}  // namespace sluice::cpu
