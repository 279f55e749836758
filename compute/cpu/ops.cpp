#include "compute/cpu/ops.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

namespace sluice::cpu {

void rms_norm(const float* x, const float* weight, float* out, std::int64_t n, float eps) {
  // Accumulate in double: ggml sums in ggml_float (double) too, and it keeps long rows exact.
  double sum = 0.0;
  for (std::int64_t i = 0; i < n; ++i) sum += double(x[i]) * double(x[i]);
  const float scale = 1.0f / std::sqrt(float(sum / double(n)) + eps);
  for (std::int64_t i = 0; i < n; ++i) out[i] = x[i] * scale * (weight ? weight[i] : 1.0f);
}

void rope(float* x, std::int32_t n_heads, std::int32_t head_dim, std::int64_t pos, const RopeParams& p) {
  const std::int32_t half = p.n_rot / 2;
  const float theta_scale = std::pow(p.freq_base, -2.0f / float(p.n_rot));
  for (std::int32_t h = 0; h < n_heads; ++h) {
    float* head = x + std::int64_t(h) * head_dim;
    float theta = float(pos) * p.freq_scale;
    for (std::int32_t i = 0; i < half; ++i) {
      float t = p.freq_factors ? theta / p.freq_factors[i] : theta;
      const float c = std::cos(t), s = std::sin(t);
      std::int32_t a = p.kind == RopeKind::adjacent ? 2 * i : i;
      std::int32_t b = p.kind == RopeKind::adjacent ? 2 * i + 1 : i + half;
      const float x0 = head[a], x1 = head[b];
      head[a] = x0 * c - x1 * s;
      head[b] = x0 * s + x1 * c;
      theta *= theta_scale;
    }
  }
}

void softmax(float* x, std::int64_t n) {
  float max = -std::numeric_limits<float>::infinity();
  for (std::int64_t i = 0; i < n; ++i) max = std::max(max, x[i]);
  double sum = 0.0;
  for (std::int64_t i = 0; i < n; ++i) {
    x[i] = x[i] == -std::numeric_limits<float>::infinity() ? 0.0f : std::exp(x[i] - max);
    sum += x[i];
  }
  const float inv = float(1.0 / sum);
  for (std::int64_t i = 0; i < n; ++i) x[i] *= inv;
}

float silu(float x) { return x / (1.0f + std::exp(-x)); }

float gelu_tanh(float x) {
  constexpr float kSqrt2OverPi = 0.79788456080286535587989211986876f;
  constexpr float kCoef = 0.044715f;
  return 0.5f * x * (1.0f + std::tanh(kSqrt2OverPi * x * (1.0f + kCoef * x * x)));
}

std::uint16_t fp32_to_fp16(float f) {
  std::uint32_t x;
  std::memcpy(&x, &f, 4);
  const std::uint32_t sign = (x >> 16) & 0x8000u;
  std::uint32_t mag = x & 0x7fffffffu;
  if (mag >= 0x7f800000u) return static_cast<std::uint16_t>(sign | (mag > 0x7f800000u ? 0x7e00u : 0x7c00u));
  if (mag >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // rounds to inf
  if (mag < 0x38800000u) {  // subnormal half (or zero): shift the mantissa with rounding
    if (mag < 0x33000000u) return static_cast<std::uint16_t>(sign);
    const std::uint32_t exp = mag >> 23;
    const std::uint32_t mant = (mag & 0x7fffffu) | 0x800000u;
    const std::uint32_t shift = 126 - exp;  // 14 + (112 - exp) ... places the value in half's subnormal range
    std::uint32_t h = mant >> (shift);
    const std::uint32_t rem = mant & ((1u << shift) - 1);
    const std::uint32_t halfway = 1u << (shift - 1);
    if (rem > halfway || (rem == halfway && (h & 1))) ++h;
    return static_cast<std::uint16_t>(sign | h);
  }
  // Normal: rebias exponent, round mantissa to nearest even.
  std::uint32_t h = ((mag - 0x38000000u) >> 13);
  const std::uint32_t rem = mag & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) ++h;
  return static_cast<std::uint16_t>(sign | h);
}

float fp16_to_fp32(std::uint16_t h) {
  const std::uint32_t sign = std::uint32_t(h & 0x8000u) << 16;
  std::uint32_t exp = (h >> 10) & 0x1fu;
  std::uint32_t mant = h & 0x3ffu;
  std::uint32_t x;
  if (exp == 0) {
    if (mant == 0) {
      x = sign;
    } else {  // subnormal: normalise
      exp = 127 - 15 + 1;
      while ((mant & 0x400u) == 0) {
        mant <<= 1;
        --exp;
      }
      mant &= 0x3ffu;
      x = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 31) {
    x = sign | 0x7f800000u | (mant << 13);
  } else {
    x = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}

void kv_store(const KvLayerView& kv, std::int64_t pos, std::int64_t row_floats, const float* k, const float* v) {
  std::uint16_t* kd = kv.k + pos * row_floats;
  std::uint16_t* vd = kv.v + pos * row_floats;
  for (std::int64_t i = 0; i < row_floats; ++i) {
    kd[i] = fp32_to_fp16(k[i]);
    vd[i] = fp32_to_fp16(v[i]);
  }
}

void attend(const float* q, const KvLayerView& kv, std::int64_t pos, const AttentionShape& s, float* out,
            float* scratch) {
  const std::int32_t group = s.n_head / s.n_head_kv;
  const std::int64_t kv_row = std::int64_t(s.n_head_kv) * s.head_dim;
  const std::int64_t first = s.window > 0 ? std::max<std::int64_t>(0, pos - s.window + 1) : 0;
  // llama.cpp's default (non flash) attention multiplies the fp16 cache with q and with the
  // softmax weights converted to fp16 (ggml's vec_dot_type for f16): round them the same way so
  // the two engines' logits differ only by summation order.
  std::vector<float> q16(std::size_t(s.head_dim));
  for (std::int32_t h = 0; h < s.n_head; ++h) {
    for (std::int32_t d = 0; d < s.head_dim; ++d) q16[std::size_t(d)] = fp16_to_fp32(fp32_to_fp16(q[std::int64_t(h) * s.head_dim + d]));
    const float* qh = q16.data();
    const std::int64_t kv_head = h / group;
    for (std::int64_t j = 0; j <= pos; ++j) {
      if (j < first) {
        scratch[j] = -std::numeric_limits<float>::infinity();
        continue;
      }
      const std::uint16_t* kj = kv.k + j * kv_row + kv_head * s.head_dim;
      float dot = 0.0f;
      for (std::int32_t d = 0; d < s.head_dim; ++d) dot += qh[d] * fp16_to_fp32(kj[d]);
      float logit = dot * s.scale;
      if (s.softcap > 0.0f) logit = s.softcap * std::tanh(logit / s.softcap);
      scratch[j] = logit;
    }
    softmax(scratch, pos + 1);
    float* oh = out + std::int64_t(h) * s.head_dim;
    std::fill(oh, oh + s.head_dim, 0.0f);
    for (std::int64_t j = first; j <= pos; ++j) {
      const std::uint16_t* vj = kv.v + j * kv_row + kv_head * s.head_dim;
      const float w = fp16_to_fp32(fp32_to_fp16(scratch[j]));
      for (std::int32_t d = 0; d < s.head_dim; ++d) oh[d] += w * fp16_to_fp32(vj[d]);
    }
  }
}

}  // namespace sluice::cpu
