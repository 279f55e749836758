// Scalar reference kernels of the K-quants with 16-element sub-blocks (Q2_K, Q3_K, Q6_K) and of
// the K-quant activation type Q8_K: dequantization, ggml's reference quantizers
// (quantize_row_q*_K_ref) and ggml's generic dot products. Operation order, casts and rounding
// follow ggml-quants.c and ggml-cpu/quants.c so that files written here quantize bit-identically
// to llama.cpp's reference and dot products accumulate as its generic kernels do. Q4_K and Q5_K
// live in quants_scalar_k4.cpp; the scale searches in k_quant_search.cpp.
#include <cmath>
#include <cstring>

#include "compute/cpu/k_quant_search.hpp"
#include "compute/cpu/quants.hpp"

namespace sluice::cpu::scalar {

using detail::clamp_int;
using detail::kGroupMaxEps;
using detail::make_q3_quants;
using detail::make_qkx2_quants;
using detail::make_qx_quants;
using detail::nearest_int;
using detail::pack_2bit;
using detail::unpack_q3_k_scales;

// ---- Q2_K ---------------------------------------------------------------------------------------

void quantize_q2_k(const float* x, void* vy, std::int64_t n) {
  BlockQ2_K* y = static_cast<BlockQ2_K*>(vy);
  const std::int64_t nb = n / kQK_K;
  std::uint8_t L[kQK_K];
  std::uint8_t Laux[16];
  float weights[16];
  float mins[kQK_K / 16];
  float scales[kQK_K / 16];
  constexpr float kQ4Scale = 15.f;  // sub-block scales and mins are 4-bit
  for (std::int64_t i = 0; i < nb; ++i, x += kQK_K) {
    float max_scale = 0;
    float max_min = 0;
    for (int j = 0; j < kQK_K / 16; ++j) {
      for (int l = 0; l < 16; ++l) weights[l] = std::fabs(x[16 * j + l]);
      scales[j] = make_qkx2_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f,
                                   0.1f, 15, true);
      if (scales[j] > max_scale) max_scale = scales[j];
      if (mins[j] > max_min) max_min = mins[j];
    }
    if (max_scale > 0) {
      const float iscale = kQ4Scale / max_scale;
      for (int j = 0; j < kQK_K / 16; ++j) {
        y[i].scales[j] = static_cast<std::uint8_t>(nearest_int(iscale * scales[j]));
      }
      y[i].d = fp32_to_fp16(max_scale / kQ4Scale);
    } else {
      for (int j = 0; j < kQK_K / 16; ++j) y[i].scales[j] = 0;
      y[i].d = fp32_to_fp16(0.f);
    }
    if (max_min > 0) {
      const float iscale = kQ4Scale / max_min;
      for (int j = 0; j < kQK_K / 16; ++j) {
        y[i].scales[j] |= static_cast<std::uint8_t>(nearest_int(iscale * mins[j]) << 4);
      }
      y[i].dmin = fp32_to_fp16(max_min / kQ4Scale);
    } else {
      y[i].dmin = fp32_to_fp16(0.f);
    }
    for (int j = 0; j < kQK_K / 16; ++j) {
      const float d = fp16_to_fp32(y[i].d) * static_cast<float>(y[i].scales[j] & 0xf);
      if (d == 0.0f) continue;
      const float dm = fp16_to_fp32(y[i].dmin) * static_cast<float>(y[i].scales[j] >> 4);
      for (int ii = 0; ii < 16; ++ii) {
        L[16 * j + ii] = static_cast<std::uint8_t>(clamp_int(nearest_int((x[16 * j + ii] + dm) / d), 0, 3));
      }
    }
    pack_2bit(L, y[i].qs);
  }
}

void dequantize_q2_k(const void* vx, float* y, std::int64_t n) {
  const BlockQ2_K* x = static_cast<const BlockQ2_K*>(vx);
  const std::int64_t nb = n / kQK_K;
  for (std::int64_t i = 0; i < nb; ++i) {
    const float d = fp16_to_fp32(x[i].d);
    const float min = fp16_to_fp32(x[i].dmin);
    const std::uint8_t* q = x[i].qs;
    int is = 0;
    for (int half = 0; half < kQK_K; half += 128) {
      for (int shift = 0; shift < 8; shift += 2) {
        for (int part = 0; part < 2; ++part) {
          const std::uint8_t sc = x[i].scales[is++];
          const float dl = d * static_cast<float>(sc & 0xf);
          const float ml = min * static_cast<float>(sc >> 4);
          for (int l = 0; l < 16; ++l) *y++ = dl * static_cast<float>((q[l + 16 * part] >> shift) & 3) - ml;
        }
      }
      q += 32;
    }
  }
}

float vec_dot_q2_k(std::int64_t n, const void* w, const void* a) {
  const BlockQ2_K* x = static_cast<const BlockQ2_K*>(w);
  const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
  const std::int64_t nb = n / kQK_K;
  float sumf = 0;
  for (std::int64_t i = 0; i < nb; ++i) {
    const std::uint8_t* q2 = x[i].qs;
    const std::int8_t* q8 = y[i].qs;
    const std::uint8_t* sc = x[i].scales;
    int summs = 0;
    for (int j = 0; j < 16; ++j) summs += y[i].bsums[j] * (sc[j] >> 4);
    const float dall = y[i].d * fp16_to_fp32(x[i].d);
    const float dmin = y[i].d * fp16_to_fp32(x[i].dmin);
    int isum = 0;
    int is = 0;
    for (int k = 0; k < kQK_K / 128; ++k) {
      for (int shift = 0; shift < 8; shift += 2) {
        int d = sc[is++] & 0xf;
        int isuml = 0;
        for (int l = 0; l < 16; ++l) isuml += q8[l] * ((q2[l] >> shift) & 3);
        isum += d * isuml;
        d = sc[is++] & 0xf;
        isuml = 0;
        for (int l = 16; l < 32; ++l) isuml += q8[l] * ((q2[l] >> shift) & 3);
        isum += d * isuml;
        q8 += 32;
      }
      q2 += 32;
    }
    sumf += dall * static_cast<float>(isum) - dmin * static_cast<float>(summs);
  }
  return sumf;
}

// ---- Q3_K ---------------------------------------------------------------------------------------

void quantize_q3_k(const float* x, void* vy, std::int64_t n) {
  BlockQ3_K* y = static_cast<BlockQ3_K*>(vy);
  const std::int64_t nb = n / kQK_K;
  std::int8_t L[kQK_K];
  float scales[kQK_K / 16];
  for (std::int64_t i = 0; i < nb; ++i, x += kQK_K) {
    float max_scale = 0;
    float amax = 0;
    for (int j = 0; j < kQK_K / 16; ++j) {
      scales[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j);
      const float scale = std::fabs(scales[j]);
      if (scale > amax) {
        amax = scale;
        max_scale = scales[j];
      }
    }
    std::memset(y[i].scales, 0, kKScaleBytes);
    if (max_scale != 0.0f) {
      const float iscale = -32.f / max_scale;
      for (int j = 0; j < kQK_K / 16; ++j) {
        std::int8_t l = static_cast<std::int8_t>(nearest_int(iscale * scales[j]));
        l = static_cast<std::int8_t>(clamp_int(l, -32, 31) + 32);
        if (j < 8) {
          y[i].scales[j] = static_cast<std::uint8_t>(l & 0xf);
        } else {
          y[i].scales[j - 8] |= static_cast<std::uint8_t>((l & 0xf) << 4);
        }
        l = static_cast<std::int8_t>(l >> 4);
        y[i].scales[j % 4 + 8] |= static_cast<std::uint8_t>(l << (2 * (j / 4)));
      }
      y[i].d = fp32_to_fp16(1 / iscale);
    } else {
      y[i].d = fp32_to_fp16(0.f);
    }
    for (int j = 0; j < kQK_K / 16; ++j) {
      std::int8_t sc = static_cast<std::int8_t>(j < 8 ? y[i].scales[j] & 0xf : y[i].scales[j - 8] >> 4);
      sc = static_cast<std::int8_t>((sc | (((y[i].scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32);
      const float d = fp16_to_fp32(y[i].d) * static_cast<float>(sc);
      if (d == 0.0f) continue;
      for (int ii = 0; ii < 16; ++ii) {
        L[16 * j + ii] = static_cast<std::int8_t>(clamp_int(nearest_int(x[16 * j + ii] / d), -4, 3) + 4);
      }
    }
    // High bit of element j goes to hmask[j % 32], bit j / 32.
    std::memset(y[i].hmask, 0, kQK_K / 8);
    int m = 0;
    std::uint8_t hm = 1;
    for (int j = 0; j < kQK_K; ++j) {
      if (L[j] > 3) {
        y[i].hmask[m] |= hm;
        L[j] = static_cast<std::int8_t>(L[j] - 4);
      }
      if (++m == kQK_K / 8) {
        m = 0;
        hm = static_cast<std::uint8_t>(hm << 1);
      }
    }
    pack_2bit(reinterpret_cast<const std::uint8_t*>(L), y[i].qs);
  }
}

void dequantize_q3_k(const void* vx, float* y, std::int64_t n) {
  const BlockQ3_K* x = static_cast<const BlockQ3_K*>(vx);
  const std::int64_t nb = n / kQK_K;
  std::int8_t scales[16];
  for (std::int64_t i = 0; i < nb; ++i) {
    const float d_all = fp16_to_fp32(x[i].d);
    const std::uint8_t* q = x[i].qs;
    const std::uint8_t* hm = x[i].hmask;
    std::uint8_t m = 1;
    unpack_q3_k_scales(x[i].scales, scales);
    int is = 0;
    for (int half = 0; half < kQK_K; half += 128) {
      for (int shift = 0; shift < 8; shift += 2) {
        for (int part = 0; part < 2; ++part) {
          const float dl = d_all * static_cast<float>(scales[is++] - 32);
          for (int l = 16 * part; l < 16 * part + 16; ++l) {
            const int v = ((q[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4);
            *y++ = dl * static_cast<float>(v);
          }
        }
        m = static_cast<std::uint8_t>(m << 1);
      }
      q += 32;
    }
  }
}

float vec_dot_q3_k(std::int64_t n, const void* w, const void* a) {
  const BlockQ3_K* x = static_cast<const BlockQ3_K*>(w);
  const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
  const std::int64_t nb = n / kQK_K;
  std::int8_t aux8[kQK_K];
  std::int8_t scales[16];
  float sums[8] = {};
  for (std::int64_t i = 0; i < nb; ++i) {
    const std::uint8_t* q3 = x[i].qs;
    const std::uint8_t* hm = x[i].hmask;
    const std::int8_t* q8 = y[i].qs;
    std::int32_t aux32[8] = {};
    std::int8_t* a8 = aux8;
    std::uint8_t m = 1;
    for (int j = 0; j < kQK_K; j += 128) {
      for (int shift = 0; shift < 8; shift += 2) {
        for (int l = 0; l < 32; ++l) a8[l] = static_cast<std::int8_t>(((q3[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4));
        a8 += 32;
        m = static_cast<std::uint8_t>(m << 1);
      }
      q3 += 32;
    }
    unpack_q3_k_scales(x[i].scales, scales);
    a8 = aux8;
    for (int j = 0; j < kQK_K / 16; ++j) {
      for (int half = 0; half < 2; ++half) {
        for (int l = 0; l < 8; ++l) {
          const std::int16_t p = static_cast<std::int16_t>(q8[l] * a8[l]);
          aux32[l] += (scales[j] - 32) * p;
        }
        q8 += 8;
        a8 += 8;
      }
    }
    const float d = fp16_to_fp32(x[i].d) * y[i].d;
    for (int l = 0; l < 8; ++l) sums[l] += d * static_cast<float>(aux32[l]);
  }
  float sumf = 0;
  for (int l = 0; l < 8; ++l) sumf += sums[l];
  return sumf;
}

// ---- Q6_K ---------------------------------------------------------------------------------------

void quantize_q6_k(const float* x, void* vy, std::int64_t n) {
  BlockQ6_K* y = static_cast<BlockQ6_K*>(vy);
  const std::int64_t nb = n / kQK_K;
  std::int8_t L[kQK_K];
  float scales[kQK_K / 16];
  for (std::int64_t i = 0; i < nb; ++i, x += kQK_K) {
    float max_scale = 0;
    float max_abs_scale = 0;
    for (int ib = 0; ib < kQK_K / 16; ++ib) {
      const float scale = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib, nullptr);
      scales[ib] = scale;
      if (std::fabs(scale) > max_abs_scale) {
        max_abs_scale = std::fabs(scale);
        max_scale = scale;
      }
    }
    if (max_abs_scale < kGroupMaxEps) {
      std::memset(&y[i], 0, sizeof(BlockQ6_K));
      y[i].d = fp32_to_fp16(0.f);
      continue;
    }
    const float iscale = -128.f / max_scale;
    y[i].d = fp32_to_fp16(1 / iscale);
    for (int ib = 0; ib < kQK_K / 16; ++ib) {
      const int l = nearest_int(iscale * scales[ib]);
      y[i].scales[ib] = static_cast<std::int8_t>(l < 127 ? l : 127);
    }
    for (int j = 0; j < kQK_K / 16; ++j) {
      const float d = fp16_to_fp32(y[i].d) * static_cast<float>(y[i].scales[j]);
      if (d == 0.0f) continue;
      for (int ii = 0; ii < 16; ++ii) {
        L[16 * j + ii] = static_cast<std::int8_t>(clamp_int(nearest_int(x[16 * j + ii] / d), -32, 31) + 32);
      }
    }
    std::uint8_t* ql = y[i].ql;
    std::uint8_t* qh = y[i].qh;
    for (int j = 0; j < kQK_K; j += 128) {
      for (int l = 0; l < 32; ++l) {
        const std::uint8_t q1 = L[j + l + 0] & 0xf;
        const std::uint8_t q2 = L[j + l + 32] & 0xf;
        const std::uint8_t q3 = L[j + l + 64] & 0xf;
        const std::uint8_t q4 = L[j + l + 96] & 0xf;
        ql[l + 0] = static_cast<std::uint8_t>(q1 | (q3 << 4));
        ql[l + 32] = static_cast<std::uint8_t>(q2 | (q4 << 4));
        qh[l] = static_cast<std::uint8_t>((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) |
                                          ((L[j + l + 64] >> 4) << 4) | ((L[j + l + 96] >> 4) << 6));
      }
      ql += 64;
      qh += 32;
    }
  }
}

void dequantize_q6_k(const void* vx, float* y, std::int64_t n) {
  const BlockQ6_K* x = static_cast<const BlockQ6_K*>(vx);
  const std::int64_t nb = n / kQK_K;
  for (std::int64_t i = 0; i < nb; ++i) {
    const float d = fp16_to_fp32(x[i].d);
    const std::uint8_t* ql = x[i].ql;
    const std::uint8_t* qh = x[i].qh;
    const std::int8_t* sc = x[i].scales;
    for (int nn = 0; nn < kQK_K; nn += 128) {
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l + 0] & 0xf) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l + 0] = d * static_cast<float>(sc[is + 0]) * static_cast<float>(q1);
        y[l + 32] = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q2);
        y[l + 64] = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q3);
        y[l + 96] = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q4);
      }
      y += 128;
      ql += 64;
      qh += 32;
      sc += 8;
    }
  }
}

float vec_dot_q6_k(std::int64_t n, const void* w, const void* a) {
  const BlockQ6_K* x = static_cast<const BlockQ6_K*>(w);
  const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
  const std::int64_t nb = n / kQK_K;
  std::int8_t aux8[kQK_K];
  float sums[8] = {};
  for (std::int64_t i = 0; i < nb; ++i) {
    const std::uint8_t* q4 = x[i].ql;
    const std::uint8_t* qh = x[i].qh;
    const std::int8_t* q8 = y[i].qs;
    std::int32_t aux32[8] = {};
    std::int8_t* a8 = aux8;
    for (int j = 0; j < kQK_K; j += 128) {
      for (int l = 0; l < 32; ++l) {
        a8[l + 0] = static_cast<std::int8_t>(((q4[l + 0] & 0xf) | (((qh[l] >> 0) & 3) << 4)) - 32);
        a8[l + 32] = static_cast<std::int8_t>(((q4[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) - 32);
        a8[l + 64] = static_cast<std::int8_t>(((q4[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
        a8[l + 96] = static_cast<std::int8_t>(((q4[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
      }
      a8 += 128;
      q4 += 64;
      qh += 32;
    }
    a8 = aux8;
    for (int j = 0; j < kQK_K / 16; ++j) {
      const int scale = x[i].scales[j];
      for (int half = 0; half < 2; ++half) {
        for (int l = 0; l < 8; ++l) {
          const std::int16_t p = static_cast<std::int16_t>(q8[l] * a8[l]);
          aux32[l] += scale * p;
        }
        q8 += 8;
        a8 += 8;
      }
    }
    const float d = fp16_to_fp32(x[i].d) * y[i].d;
    for (int l = 0; l < 8; ++l) sums[l] += d * static_cast<float>(aux32[l]);
  }
  float sumf = 0;
  for (int l = 0; l < 8; ++l) sumf += sums[l];
  return sumf;
}

// ---- Q8_K (activations) ------------------------------------------------------------------------

void quantize_q8_k(const float* x, void* vy, std::int64_t n) {
  BlockQ8_K* y = static_cast<BlockQ8_K*>(vy);
  const std::int64_t nb = n / kQK_K;
  for (std::int64_t i = 0; i < nb; ++i, x += kQK_K) {
    float max = 0;
    float amax = 0;
    for (int j = 0; j < kQK_K; ++j) {
      const float ax = std::fabs(x[j]);
      if (ax > amax) {
        amax = ax;
        max = x[j];
      }
    }
    if (amax == 0.0f) {
      // ggml leaves bsums untouched here; zeroing them keeps the block fully defined.
      std::memset(&y[i], 0, sizeof(BlockQ8_K));
      continue;
    }
    // -127 rather than -128 keeps every quant in [-127, 127] (ggml: needed by its AVX kernels;
    // ours rely on it for the sign trick too).
    const float iscale = -127.f / max;
    for (int j = 0; j < kQK_K; ++j) {
      const int v = nearest_int(iscale * x[j]);
      y[i].qs[j] = static_cast<std::int8_t>(v < 127 ? v : 127);
    }
    for (int j = 0; j < kQK_K / 16; ++j) {
      int sum = 0;
      for (int ii = 0; ii < 16; ++ii) sum += y[i].qs[j * 16 + ii];
      y[i].bsums[j] = static_cast<std::int16_t>(sum);
    }
    y[i].d = 1 / iscale;
  }
}

void dequantize_q8_k(const void* vx, float* y, std::int64_t n) {
  const BlockQ8_K* x = static_cast<const BlockQ8_K*>(vx);
  const std::int64_t nb = n / kQK_K;
  for (std::int64_t i = 0; i < nb; ++i, y += kQK_K) {
    for (int j = 0; j < kQK_K; ++j) y[j] = x[i].d * static_cast<float>(x[i].qs[j]);
  }
}

}  // namespace sluice::cpu::scalar
