// Scalar reference kernels of MXFP4 (the OCP microscaling 4-bit float type gpt-oss stores its
// experts in): dequantization, ggml's reference quantizer and ggml's generic dot product with Q8_0
// activations. Written after ggml-quants.c (dequantize_row_mxfp4, quantize_row_mxfp4_ref) and
// ggml-cpu/quants.c (ggml_vec_dot_mxfp4_q8_0_generic), operation for operation, so the bytes and
// floats are the ones llama.cpp and gguf-py produce.
#include <cmath>

#include "compute/cpu/quants.hpp"

namespace sluice::cpu::scalar {
namespace {

// The code whose value kValuesMXFP4[code] * d is nearest x; the first such code on ties, so that
// 0 is code 0, never 8 (best_index_mxfp4 in ggml; gguf-py's argmin breaks ties the same way).
std::uint8_t best_code_mxfp4(float x, float d) {
  int best = 0;
  float best_err = std::fabs(static_cast<float>(kValuesMXFP4[0]) * d - x);
  for (int i = 1; i < 16; ++i) {
    const float err = std::fabs(static_cast<float>(kValuesMXFP4[i]) * d - x);
    if (err < best_err) {
      best = i;
      best_err = err;
    }
  }
  return static_cast<std::uint8_t>(best);
}

// ggml's exponent: floor(log2(amax)) - 2 + 127, so amax lands in [8, 16) half-scales and the
// largest code (12) covers it up to 1.5 x 2^floor(log2 amax); larger values of the block clamp to
// it. ggml casts the float to uint8_t directly, which C leaves undefined below 0 (amax under
// 2^-125); x86 code converts through a 32-bit int and keeps the low byte, which this does
// explicitly. Zero blocks get e = 0.
std::uint8_t exponent_mxfp4(float amax) {
  if (!(amax > 0.0f)) return 0;
  const int e = static_cast<int>(std::floor(std::log2(amax)) - 2 + 127);
  return static_cast<std::uint8_t>(static_cast<unsigned>(e) & 0xffu);
}

}  // namespace

void quantize_mxfp4(const float* x, void* vy, std::int64_t n) {
  BlockMXFP4* y = static_cast<BlockMXFP4*>(vy);
  const std::int64_t nb = n / kQK_MXFP4;
  for (std::int64_t i = 0; i < nb; ++i, x += kQK_MXFP4) {
    float amax = 0.0f;
    for (int j = 0; j < kQK_MXFP4; ++j) {
      if (amax < std::fabs(x[j])) amax = std::fabs(x[j]);
    }
    const std::uint8_t e = exponent_mxfp4(amax);
    const float d = e8m0_to_fp32_half(e);
    y[i].e = e;
    for (int j = 0; j < kQK_MXFP4 / 2; ++j) {
      const std::uint8_t lo = best_code_mxfp4(x[j], d);
      const std::uint8_t hi = best_code_mxfp4(x[kQK_MXFP4 / 2 + j], d);
      y[i].qs[j] = static_cast<std::uint8_t>(lo | (hi << 4));
    }
  }
}

void dequantize_mxfp4(const void* vx, float* y, std::int64_t n) {
  const BlockMXFP4* x = static_cast<const BlockMXFP4*>(vx);
  const std::int64_t nb = n / kQK_MXFP4;
  for (std::int64_t i = 0; i < nb; ++i, y += kQK_MXFP4) {
    const float d = e8m0_to_fp32_half(x[i].e);
    for (int j = 0; j < kQK_MXFP4 / 2; ++j) {
      y[j] = static_cast<float>(kValuesMXFP4[x[i].qs[j] & 0x0f]) * d;
      y[j + kQK_MXFP4 / 2] = static_cast<float>(kValuesMXFP4[x[i].qs[j] >> 4]) * d;
    }
  }
}

float vec_dot_mxfp4(std::int64_t n, const void* w, const void* a) {
  const BlockMXFP4* x = static_cast<const BlockMXFP4*>(w);
  const BlockQ8_0* y = static_cast<const BlockQ8_0*>(a);
  const std::int64_t nb = n / kQK_MXFP4;
  float sumf = 0.0f;
  for (std::int64_t ib = 0; ib < nb; ++ib) {
    const float d = fp16_to_fp32(y[ib].d) * e8m0_to_fp32_half(x[ib].e);
    int sumi0 = 0;
    int sumi1 = 0;
    for (int j = 0; j < kQK_MXFP4 / 2; ++j) {
      sumi0 += y[ib].qs[j] * kValuesMXFP4[x[ib].qs[j] & 0x0f];
      sumi1 += y[ib].qs[j + kQK_MXFP4 / 2] * kValuesMXFP4[x[ib].qs[j] >> 4];
    }
    sumf += d * static_cast<float>(sumi0 + sumi1);
  }
  return sumf;
}

}  // namespace sluice::cpu::scalar
