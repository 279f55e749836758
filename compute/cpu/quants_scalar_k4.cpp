// Scalar reference kernels of Q4_K and Q5_K, the K-quants with 32-element sub-blocks and a 6-bit
// scale and min per sub-block: dequantization, ggml's reference quantizers (make_qkx2_quants
// search, then requantization with the rounded scales) and ggml's generic dot products, in
// ggml's operation order (see quants_scalar_k.cpp).
#include <cmath>
#include <cstring>

#include "compute/cpu/k_quant_search.hpp"
#include "compute/cpu/quants.hpp"

namespace sluice::cpu::scalar {

using detail::clamp_int;
using detail::get_scale_min_k4;
using detail::make_qkx2_quants;
using detail::nearest_int;

namespace {

// Pack 8 (scale, min) 6-bit pairs into Q4_K/Q5_K's 12 bytes.
void pack_scale_min_k4(const std::uint8_t* ls, const std::uint8_t* lm, std::uint8_t* scales) {
  for (int j = 0; j < kQK_K / 32; ++j) {
    if (j < 4) {
      scales[j] = ls[j];
      scales[j + 4] = lm[j];
    } else {
      scales[j + 4] = static_cast<std::uint8_t>((ls[j] & 0xf) | ((lm[j] & 0xf) << 4));
      scales[j - 4] |= static_cast<std::uint8_t>((ls[j] >> 4) << 6);
      scales[j - 0] |= static_cast<std::uint8_t>((lm[j] >> 4) << 6);
    }
  }
}

}  // namespace

// ---- Q4_K / Q5_K (shared 6-bit scale+min layout) -------------------------------------------------

namespace detail {

void search_k4_scales_reference(const float* x, const float* weights, int nmax, float rmin, float rdelta, int nstep,
                                float* scales, float* mins, std::uint8_t* L) {
  std::uint8_t Laux[32];
  for (int j = 0; j < kQK_K / 32; ++j) {
    scales[j] = make_qkx2_quants(32, nmax, x + 32 * j, weights + 32 * j, L + 32 * j, &mins[j], Laux, rmin, rdelta,
                                 nstep, false);
  }
}

}  // namespace detail

namespace {

// The reference scale/min search of Q4_K (nmax 15) and Q5_K (nmax 31), then the requantization
// with the 6-bit-rounded scales. L receives 0..nmax per element. `search` is the reference's
// per-sub-block make_qkx2_quants, or a kernel that gives the same results.
void quantize_k4_scales(const float* x, int nmax, float rmin, float rdelta, int nstep, detail::K4SearchFn search,
                        Half* d_out, Half* dmin_out, std::uint8_t* scales_out, std::uint8_t* L) {
  float weights[kQK_K];
  float mins[kQK_K / 32];
  float scales[kQK_K / 32];
  for (int j = 0; j < kQK_K / 32; ++j) {
    float sum_x2 = 0;
    for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
    const float av_x = std::sqrt(sum_x2 / 32);
    for (int l = 0; l < 32; ++l) weights[32 * j + l] = av_x + std::fabs(x[32 * j + l]);
  }
  search(x, weights, nmax, rmin, rdelta, nstep, scales, mins, L);
  float max_scale = 0;
  float max_min = 0;
  for (int j = 0; j < kQK_K / 32; ++j) {
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  constexpr float kSixBitMax = 63.f;
  const float inv_scale = max_scale > 0 ? kSixBitMax / max_scale : 0.f;
  const float inv_min = max_min > 0 ? kSixBitMax / max_min : 0.f;
  std::uint8_t ls[kQK_K / 32];
  std::uint8_t lm[kQK_K / 32];
  for (int j = 0; j < kQK_K / 32; ++j) {
    const std::uint8_t s = static_cast<std::uint8_t>(nearest_int(inv_scale * scales[j]));
    const std::uint8_t m = static_cast<std::uint8_t>(nearest_int(inv_min * mins[j]));
    ls[j] = s < 63 ? s : 63;
    lm[j] = m < 63 ? m : 63;
  }
  std::memset(scales_out, 0, kKScaleBytes);
  pack_scale_min_k4(ls, lm, scales_out);
  *d_out = fp32_to_fp16(max_scale / kSixBitMax);
  *dmin_out = fp32_to_fp16(max_min / kSixBitMax);
  for (int j = 0; j < kQK_K / 32; ++j) {
    std::uint8_t sc, m;
    get_scale_min_k4(j, scales_out, &sc, &m);
    const float d = fp16_to_fp32(*d_out) * static_cast<float>(sc);
    if (d == 0.0f) continue;
    const float dm = fp16_to_fp32(*dmin_out) * static_cast<float>(m);
    for (int ii = 0; ii < 32; ++ii) {
      L[32 * j + ii] = static_cast<std::uint8_t>(clamp_int(nearest_int((x[32 * j + ii] + dm) / d), 0, nmax));
    }
  }
}

}  // namespace

void quantize_q4_k(const float* x, void* vy, std::int64_t n) {
  detail::quantize_q4_k_with(x, vy, n, detail::search_k4_scales_reference);
}

void detail::quantize_q4_k_with(const float* x, void* vy, std::int64_t n, K4SearchFn search) {
  BlockQ4_K* y = static_cast<BlockQ4_K*>(vy);
  const std::int64_t nb = n / kQK_K;
  std::uint8_t L[kQK_K];
  for (std::int64_t i = 0; i < nb; ++i, x += kQK_K) {
    quantize_k4_scales(x, 15, -1.f, 0.1f, 20, search, &y[i].d, &y[i].dmin, y[i].scales, L);
    std::uint8_t* q = y[i].qs;
    for (int j = 0; j < kQK_K; j += 64, q += 32) {
      for (int l = 0; l < 32; ++l) q[l] = static_cast<std::uint8_t>(L[j + l] | (L[j + l + 32] << 4));
    }
  }
}

void dequantize_q4_k(const void* vx, float* y, std::int64_t n) {
  const BlockQ4_K* x = static_cast<const BlockQ4_K*>(vx);
  const std::int64_t nb = n / kQK_K;
  for (std::int64_t i = 0; i < nb; ++i) {
    const std::uint8_t* q = x[i].qs;
    const float d = fp16_to_fp32(x[i].d);
    const float min = fp16_to_fp32(x[i].dmin);
    int is = 0;
    std::uint8_t sc, m;
    for (int j = 0; j < kQK_K; j += 64) {
      get_scale_min_k4(is + 0, x[i].scales, &sc, &m);
      const float d1 = d * static_cast<float>(sc);
      const float m1 = min * static_cast<float>(m);
      get_scale_min_k4(is + 1, x[i].scales, &sc, &m);
      const float d2 = d * static_cast<float>(sc);
      const float m2 = min * static_cast<float>(m);
      for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>(q[l] & 0xf) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>(q[l] >> 4) - m2;
      q += 32;
      is += 2;
    }
  }
}

namespace {

// Shared tail of ggml's generic Q4_K/Q5_K dot: aux8 holds the 256 unsigned quants.
void dot_k4_superblock(const std::int8_t* aux8, const std::uint8_t* packed_scales, const BlockQ8_K& y,
                       float d_x, float dmin_x, float* sums, float* sumf) {
  constexpr std::uint32_t kmask1 = 0x3f3f3f3f;
  constexpr std::uint32_t kmask2 = 0x0f0f0f0f;
  constexpr std::uint32_t kmask3 = 0x03030303;
  std::uint32_t utmp[4];
  std::memcpy(utmp, packed_scales, kKScaleBytes);
  utmp[3] = ((utmp[2] >> 4) & kmask2) | (((utmp[1] >> 6) & kmask3) << 4);
  const std::uint32_t uaux = utmp[1] & kmask1;
  utmp[1] = (utmp[2] & kmask2) | (((utmp[0] >> 6) & kmask3) << 4);
  utmp[2] = uaux;
  utmp[0] &= kmask1;
  std::uint8_t scales[8];
  std::uint8_t mins[8];
  std::memcpy(scales, &utmp[0], 8);
  std::memcpy(mins, &utmp[2], 8);

  int sumi = 0;
  for (int j = 0; j < kQK_K / 16; ++j) sumi += y.bsums[j] * mins[j / 2];
  std::int32_t aux32[8] = {};
  const std::int8_t* q8 = y.qs;
  const std::int8_t* a8 = aux8;
  for (int j = 0; j < kQK_K / 32; ++j) {
    const std::int32_t scale = scales[j];
    for (int quarter = 0; quarter < 4; ++quarter) {
      for (int l = 0; l < 8; ++l) {
        const std::int16_t p = static_cast<std::int16_t>(q8[l] * a8[l]);
        aux32[l] += scale * p;
      }
      q8 += 8;
      a8 += 8;
    }
  }
  const float d = d_x * y.d;
  for (int l = 0; l < 8; ++l) sums[l] += d * static_cast<float>(aux32[l]);
  const float dmin = dmin_x * y.d;
  *sumf -= dmin * static_cast<float>(sumi);
}

}  // namespace

float vec_dot_q4_k(std::int64_t n, const void* w, const void* a) {
  const BlockQ4_K* x = static_cast<const BlockQ4_K*>(w);
  const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
  const std::int64_t nb = n / kQK_K;
  std::int8_t aux8[kQK_K];
  float sums[8] = {};
  float sumf = 0;
  for (std::int64_t i = 0; i < nb; ++i) {
    const std::uint8_t* q4 = x[i].qs;
    std::int8_t* a8 = aux8;
    for (int j = 0; j < kQK_K / 64; ++j, q4 += 32) {
      for (int l = 0; l < 32; ++l) a8[l] = static_cast<std::int8_t>(q4[l] & 0xf);
      a8 += 32;
      for (int l = 0; l < 32; ++l) a8[l] = static_cast<std::int8_t>(q4[l] >> 4);
      a8 += 32;
    }
    dot_k4_superblock(aux8, x[i].scales, y[i], fp16_to_fp32(x[i].d), fp16_to_fp32(x[i].dmin), sums, &sumf);
  }
  for (int l = 0; l < 8; ++l) sumf += sums[l];
  return sumf;
}

void quantize_q5_k(const float* x, void* vy, std::int64_t n) {
  detail::quantize_q5_k_with(x, vy, n, detail::search_k4_scales_reference);
}

void detail::quantize_q5_k_with(const float* x, void* vy, std::int64_t n, K4SearchFn search) {
  BlockQ5_K* y = static_cast<BlockQ5_K*>(vy);
  const std::int64_t nb = n / kQK_K;
  std::uint8_t L[kQK_K];
  for (std::int64_t i = 0; i < nb; ++i, x += kQK_K) {
    quantize_k4_scales(x, 31, -0.5f, 0.1f, 15, search, &y[i].d, &y[i].dmin, y[i].scales, L);
    std::uint8_t* qh = y[i].qh;
    std::uint8_t* ql = y[i].qs;
    std::memset(qh, 0, kQK_K / 8);
    std::uint8_t m1 = 1, m2 = 2;
    for (int nn = 0; nn < kQK_K; nn += 64) {
      for (int j = 0; j < 32; ++j) {
        int l1 = L[nn + j];
        if (l1 > 15) {
          l1 -= 16;
          qh[j] |= m1;
        }
        int l2 = L[nn + j + 32];
        if (l2 > 15) {
          l2 -= 16;
          qh[j] |= m2;
        }
        ql[j] = static_cast<std::uint8_t>(l1 | (l2 << 4));
      }
      m1 = static_cast<std::uint8_t>(m1 << 2);
      m2 = static_cast<std::uint8_t>(m2 << 2);
      ql += 32;
    }
  }
}

void dequantize_q5_k(const void* vx, float* y, std::int64_t n) {
  const BlockQ5_K* x = static_cast<const BlockQ5_K*>(vx);
  const std::int64_t nb = n / kQK_K;
  for (std::int64_t i = 0; i < nb; ++i) {
    const std::uint8_t* ql = x[i].qs;
    const std::uint8_t* qh = x[i].qh;
    const float d = fp16_to_fp32(x[i].d);
    const float min = fp16_to_fp32(x[i].dmin);
    int is = 0;
    std::uint8_t sc, m;
    std::uint8_t u1 = 1, u2 = 2;
    for (int j = 0; j < kQK_K; j += 64) {
      get_scale_min_k4(is + 0, x[i].scales, &sc, &m);
      const float d1 = d * static_cast<float>(sc);
      const float m1 = min * static_cast<float>(m);
      get_scale_min_k4(is + 1, x[i].scales, &sc, &m);
      const float d2 = d * static_cast<float>(sc);
      const float m2 = min * static_cast<float>(m);
      for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>((ql[l] & 0xf) + (qh[l] & u1 ? 16 : 0)) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
      ql += 32;
      is += 2;
      u1 = static_cast<std::uint8_t>(u1 << 2);
      u2 = static_cast<std::uint8_t>(u2 << 2);
    }
  }
}

float vec_dot_q5_k(std::int64_t n, const void* w, const void* a) {
  const BlockQ5_K* x = static_cast<const BlockQ5_K*>(w);
  const BlockQ8_K* y = static_cast<const BlockQ8_K*>(a);
  const std::int64_t nb = n / kQK_K;
  std::int8_t aux8[kQK_K];
  float sums[8] = {};
  float sumf = 0;
  for (std::int64_t i = 0; i < nb; ++i) {
    const std::uint8_t* q4 = x[i].qs;
    const std::uint8_t* hm = x[i].qh;
    std::int8_t* a8 = aux8;
    std::uint8_t m = 1;
    for (int j = 0; j < kQK_K / 64; ++j, q4 += 32) {
      for (int l = 0; l < 32; ++l) a8[l] = static_cast<std::int8_t>((q4[l] & 0xf) + (hm[l] & m ? 16 : 0));
      a8 += 32;
      m = static_cast<std::uint8_t>(m << 1);
      for (int l = 0; l < 32; ++l) a8[l] = static_cast<std::int8_t>((q4[l] >> 4) + (hm[l] & m ? 16 : 0));
      a8 += 32;
      m = static_cast<std::uint8_t>(m << 1);
    }
    dot_k4_superblock(aux8, x[i].scales, y[i], fp16_to_fp32(x[i].d), fp16_to_fp32(x[i].dmin), sums, &sumf);
  }
  for (int l = 0; l < 8; ++l) sumf += sums[l];
  return sumf;
}

}  // namespace sluice::cpu::scalar
