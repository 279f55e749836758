// Scalar reference kernels of the float types (F32, F16, BF16) and the 32-element block types
// (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1): dequantization, ggml's reference quantizers, and ggml's
// generic dot products. Written to follow ggml-quants.c / ggml-cpu/quants.c operation for
// operation (same casts, same rounding, same summation order), so the bytes written and the sums
// computed are the ones llama.cpp writes and computes.
#include <cmath>
#include <cstring>

#include "compute/cpu/quants.hpp"

namespace sluice::cpu::scalar {
namespace {

template <typename Block>
const Block* blocks_of(const void* p) {
  return static_cast<const Block*>(p);
}
template <typename Block>
Block* blocks_of(void* p) {
  return static_cast<Block*>(p);
}

// Largest |v| in a block and the signed value that has it (first one on ties), as ggml's
// quantizers of the symmetric types pick their scale.
struct SignedMax {
  float amax = 0.0f;
  float max = 0.0f;
};
SignedMax signed_max(const float* x, int n) {
  SignedMax r;
  for (int j = 0; j < n; ++j) {
    if (r.amax < std::fabs(x[j])) {
      r.amax = std::fabs(x[j]);
      r.max = x[j];
    }
  }
  return r;
}

struct MinMax {
  float min;
  float max;
};
MinMax min_max(const float* x, int n) {
  MinMax r{x[0], x[0]};
  // ggml starts from +-FLT_MAX; starting from x[0] gives the same result for finite input.
  for (int j = 1; j < n; ++j) {
    if (x[j] < r.min) r.min = x[j];
    if (x[j] > r.max) r.max = x[j];
  }
  return r;
}

std::uint32_t load_u32(const std::uint8_t* p) {
  std::uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

}  // namespace

// ---- float types --------------------------------------------------------------------------------

void quantize_f16(const float* x, void* y, std::int64_t n) {
  Half* out = static_cast<Half*>(y);
  for (std::int64_t i = 0; i < n; ++i) out[i] = fp32_to_fp16(x[i]);
}

void quantize_bf16(const float* x, void* y, std::int64_t n) {
  BHalf* out = static_cast<BHalf*>(y);
  for (std::int64_t i = 0; i < n; ++i) out[i] = fp32_to_bf16(x[i]);
}

// ggml's scalar ggml_vec_dot_f32/f16/bf16: each product in float, the sum in double.
float vec_dot_f32(std::int64_t n, const void* w, const void* a) {
  const float* x = static_cast<const float*>(w);
  const float* y = static_cast<const float*>(a);
  double sum = 0.0;
  for (std::int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i] * y[i]);
  return static_cast<float>(sum);
}

float vec_dot_f16(std::int64_t n, const void* w, const void* a) {
  const Half* x = static_cast<const Half*>(w);
  const Half* y = static_cast<const Half*>(a);
  double sum = 0.0;
  for (std::int64_t i = 0; i < n; ++i) sum += static_cast<double>(fp16_to_fp32(x[i]) * fp16_to_fp32(y[i]));
  return static_cast<float>(sum);
}

float vec_dot_bf16(std::int64_t n, const void* w, const void* a) {
  const BHalf* x = static_cast<const BHalf*>(w);
  const BHalf* y = static_cast<const BHalf*>(a);
  double sum = 0.0;
  for (std::int64_t i = 0; i < n; ++i) sum += static_cast<double>(bf16_to_fp32(x[i]) * bf16_to_fp32(y[i]));
  return static_cast<float>(sum);
}

// ---- Q4_0 ---------------------------------------------------------------------------------------

void quantize_q4_0(const float* x, void* vy, std::int64_t n) {
  BlockQ4_0* y = blocks_of<BlockQ4_0>(vy);
  const std::int64_t nb = n / kQK4_0;
  for (std::int64_t i = 0; i < nb; ++i, x += kQK4_0) {
    const SignedMax sm = signed_max(x, kQK4_0);
    const float d = sm.max / -8;  // the extreme value maps to -8, the one level without a +8 twin
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    for (int j = 0; j < kQK4_0 / 2; ++j) {
      const float x0 = x[j] * id;
      const float x1 = x[kQK4_0 / 2 + j] * id;
      const int i0 = static_cast<std::int8_t>(x0 + 8.5f);
      const int i1 = static_cast<std::int8_t>(x1 + 8.5f);
      const std::uint8_t q0 = static_cast<std::uint8_t>(i0 < 15 ? i0 : 15);
      const std::uint8_t q1 = static_cast<std::uint8_t>(i1 < 15 ? i1 : 15);
      y[i].qs[j] = static_cast<std::uint8_t>(q0 | (q1 << 4));
    }
  }
}

void dequantize_q4_0(const void* vx, float* y, std::int64_t n) {
  const BlockQ4_0* x = blocks_of<BlockQ4_0>(vx);
  const std::int64_t nb = n / kQK4_0;
  for (std::int64_t i = 0; i < nb; ++i, y += kQK4_0) {
    const float d = fp16_to_fp32(x[i].d);
    for (int j = 0; j < kQK4_0 / 2; ++j) {
      const int x0 = (x[i].qs[j] & 0x0f) - 8;
      const int x1 = (x[i].qs[j] >> 4) - 8;
      y[j] = static_cast<float>(x0) * d;
      y[j + kQK4_0 / 2] = static_cast<float>(x1) * d;
    }
  }
}

float vec_dot_q4_0(std::int64_t n, const void* w, const void* a) {
  const BlockQ4_0* x = blocks_of<BlockQ4_0>(w);
  const BlockQ8_0* y = blocks_of<BlockQ8_0>(a);
  const std::int64_t nb = n / kQK8_0;
  float sumf = 0.0f;
  for (std::int64_t ib = 0; ib < nb; ++ib) {
    int sumi0 = 0;
    int sumi1 = 0;
    for (int j = 0; j < kQK4_0 / 2; ++j) {
      const int v0 = (x[ib].qs[j] & 0x0f) - 8;
      const int v1 = (x[ib].qs[j] >> 4) - 8;
      sumi0 += v0 * y[ib].qs[j];
      sumi1 += v1 * y[ib].qs[j + kQK4_0 / 2];
    }
    const int sumi = sumi0 + sumi1;
    sumf += static_cast<float>(sumi) * fp16_to_fp32(x[ib].d) * fp16_to_fp32(y[ib].d);
  }
  return sumf;
}

// ---- Q4_1 ---------------------------------------------------------------------------------------

void quantize_q4_1(const float* x, void* vy, std::int64_t n) {
  BlockQ4_1* y = blocks_of<BlockQ4_1>(vy);
  const std::int64_t nb = n / kQK4_1;
  for (std::int64_t i = 0; i < nb; ++i, x += kQK4_1) {
    const MinMax mm = min_max(x, kQK4_1);
    const float d = (mm.max - mm.min) / ((1 << 4) - 1);
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    y[i].m = fp32_to_fp16(mm.min);
    for (int j = 0; j < kQK4_1 / 2; ++j) {
      const float x0 = (x[j] - mm.min) * id;
      const float x1 = (x[kQK4_1 / 2 + j] - mm.min) * id;
      const int i0 = static_cast<std::int8_t>(x0 + 0.5f);
      const int i1 = static_cast<std::int8_t>(x1 + 0.5f);
      const std::uint8_t q0 = static_cast<std::uint8_t>(i0 < 15 ? i0 : 15);
      const std::uint8_t q1 = static_cast<std::uint8_t>(i1 < 15 ? i1 : 15);
      y[i].qs[j] = static_cast<std::uint8_t>(q0 | (q1 << 4));
    }
  }
}

void dequantize_q4_1(const void* vx, float* y, std::int64_t n) {
  const BlockQ4_1* x = blocks_of<BlockQ4_1>(vx);
  const std::int64_t nb = n / kQK4_1;
  for (std::int64_t i = 0; i < nb; ++i, y += kQK4_1) {
    const float d = fp16_to_fp32(x[i].d);
    const float m = fp16_to_fp32(x[i].m);
    for (int j = 0; j < kQK4_1 / 2; ++j) {
      y[j] = static_cast<float>(x[i].qs[j] & 0x0f) * d + m;
      y[j + kQK4_1 / 2] = static_cast<float>(x[i].qs[j] >> 4) * d + m;
    }
  }
}

float vec_dot_q4_1(std::int64_t n, const void* w, const void* a) {
  const BlockQ4_1* x = blocks_of<BlockQ4_1>(w);
  const BlockQ8_1* y = blocks_of<BlockQ8_1>(a);
  const std::int64_t nb = n / kQK8_1;
  float sumf = 0.0f;
  for (std::int64_t ib = 0; ib < nb; ++ib) {
    int sumi0 = 0;
    int sumi1 = 0;
    for (int j = 0; j < kQK4_1 / 2; ++j) {
      sumi0 += (x[ib].qs[j] & 0x0f) * y[ib].qs[j];
      sumi1 += (x[ib].qs[j] >> 4) * y[ib].qs[j + kQK4_1 / 2];
    }
    const int sumi = sumi0 + sumi1;
    sumf += (fp16_to_fp32(x[ib].d) * fp16_to_fp32(y[ib].d)) * static_cast<float>(sumi) +
            fp16_to_fp32(x[ib].m) * fp16_to_fp32(y[ib].s);
  }
  return sumf;
}

// ---- Q5_0 ---------------------------------------------------------------------------------------

void quantize_q5_0(const float* x, void* vy, std::int64_t n) {
  BlockQ5_0* y = blocks_of<BlockQ5_0>(vy);
  const std::int64_t nb = n / kQK5_0;
  for (std::int64_t i = 0; i < nb; ++i, x += kQK5_0) {
    const SignedMax sm = signed_max(x, kQK5_0);
    const float d = sm.max / -16;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    std::uint32_t qh = 0;
    for (int j = 0; j < kQK5_0 / 2; ++j) {
      const float x0 = x[j] * id;
      const float x1 = x[kQK5_0 / 2 + j] * id;
      const int i0 = static_cast<std::int8_t>(x0 + 16.5f);
      const int i1 = static_cast<std::int8_t>(x1 + 16.5f);
      const std::uint8_t q0 = static_cast<std::uint8_t>(i0 < 31 ? i0 : 31);
      const std::uint8_t q1 = static_cast<std::uint8_t>(i1 < 31 ? i1 : 31);
      y[i].qs[j] = static_cast<std::uint8_t>((q0 & 0x0f) | ((q1 & 0x0f) << 4));
      qh |= ((q0 & 0x10u) >> 4) << (j + 0);
      qh |= ((q1 & 0x10u) >> 4) << (j + kQK5_0 / 2);
    }
    std::memcpy(y[i].qh, &qh, sizeof qh);
  }
}

void dequantize_q5_0(const void* vx, float* y, std::int64_t n) {
  const BlockQ5_0* x = blocks_of<BlockQ5_0>(vx);
  const std::int64_t nb = n / kQK5_0;
  for (std::int64_t i = 0; i < nb; ++i, y += kQK5_0) {
    const float d = fp16_to_fp32(x[i].d);
    const std::uint32_t qh = load_u32(x[i].qh);
    for (int j = 0; j < kQK5_0 / 2; ++j) {
      const std::uint8_t xh0 = static_cast<std::uint8_t>(((qh >> (j + 0)) << 4) & 0x10);
      const std::uint8_t xh1 = static_cast<std::uint8_t>((qh >> (j + 12)) & 0x10);
      const int x0 = ((x[i].qs[j] & 0x0f) | xh0) - 16;
      const int x1 = ((x[i].qs[j] >> 4) | xh1) - 16;
      y[j] = static_cast<float>(x0) * d;
      y[j + kQK5_0 / 2] = static_cast<float>(x1) * d;
    }
  }
}

float vec_dot_q5_0(std::int64_t n, const void* w, const void* a) {
  const BlockQ5_0* x = blocks_of<BlockQ5_0>(w);
  const BlockQ8_0* y = blocks_of<BlockQ8_0>(a);
  const std::int64_t nb = n / kQK8_0;
  float sumf = 0.0f;
  for (std::int64_t ib = 0; ib < nb; ++ib) {
    const std::uint32_t qh = load_u32(x[ib].qh);
    int sumi0 = 0;
    int sumi1 = 0;
    for (int j = 0; j < kQK5_0 / 2; ++j) {
      const int xh0 = static_cast<int>(((qh >> j) & 1u) << 4);
      const int xh1 = static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
      const int x0 = ((x[ib].qs[j] & 0x0f) | xh0) - 16;
      const int x1 = ((x[ib].qs[j] >> 4) | xh1) - 16;
      sumi0 += x0 * y[ib].qs[j];
      sumi1 += x1 * y[ib].qs[j + kQK5_0 / 2];
    }
    const int sumi = sumi0 + sumi1;
    sumf += (fp16_to_fp32(x[ib].d) * fp16_to_fp32(y[ib].d)) * static_cast<float>(sumi);
  }
  return sumf;
}

// ---- Q5_1 ---------------------------------------------------------------------------------------

void quantize_q5_1(const float* x, void* vy, std::int64_t n) {
  BlockQ5_1* y = blocks_of<BlockQ5_1>(vy);
  const std::int64_t nb = n / kQK5_1;
  for (std::int64_t i = 0; i < nb; ++i, x += kQK5_1) {
    const MinMax mm = min_max(x, kQK5_1);
    const float d = (mm.max - mm.min) / ((1 << 5) - 1);
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    y[i].m = fp32_to_fp16(mm.min);
    std::uint32_t qh = 0;
    for (int j = 0; j < kQK5_1 / 2; ++j) {
      const float x0 = (x[j] - mm.min) * id;
      const float x1 = (x[kQK5_1 / 2 + j] - mm.min) * id;
      const std::uint8_t q0 = static_cast<std::uint8_t>(x0 + 0.5f);
      const std::uint8_t q1 = static_cast<std::uint8_t>(x1 + 0.5f);
      y[i].qs[j] = static_cast<std::uint8_t>((q0 & 0x0f) | ((q1 & 0x0f) << 4));
      qh |= ((q0 & 0x10u) >> 4) << (j + 0);
      qh |= ((q1 & 0x10u) >> 4) << (j + kQK5_1 / 2);
    }
    std::memcpy(y[i].qh, &qh, sizeof qh);
  }
}

void dequantize_q5_1(const void* vx, float* y, std::int64_t n) {
  const BlockQ5_1* x = blocks_of<BlockQ5_1>(vx);
  const std::int64_t nb = n / kQK5_1;
  for (std::int64_t i = 0; i < nb; ++i, y += kQK5_1) {
    const float d = fp16_to_fp32(x[i].d);
    const float m = fp16_to_fp32(x[i].m);
    const std::uint32_t qh = load_u32(x[i].qh);
    for (int j = 0; j < kQK5_1 / 2; ++j) {
      const std::uint8_t xh0 = static_cast<std::uint8_t>(((qh >> (j + 0)) << 4) & 0x10);
      const std::uint8_t xh1 = static_cast<std::uint8_t>((qh >> (j + 12)) & 0x10);
      const int x0 = (x[i].qs[j] & 0x0f) | xh0;
      const int x1 = (x[i].qs[j] >> 4) | xh1;
      y[j] = static_cast<float>(x0) * d + m;
      y[j + kQK5_1 / 2] = static_cast<float>(x1) * d + m;
    }
  }
}

float vec_dot_q5_1(std::int64_t n, const void* w, const void* a) {
  const BlockQ5_1* x = blocks_of<BlockQ5_1>(w);
  const BlockQ8_1* y = blocks_of<BlockQ8_1>(a);
  const std::int64_t nb = n / kQK8_1;
  float sumf = 0.0f;
  for (std::int64_t ib = 0; ib < nb; ++ib) {
    const std::uint32_t qh = load_u32(x[ib].qh);
    int sumi0 = 0;
    int sumi1 = 0;
    for (int j = 0; j < kQK5_1 / 2; ++j) {
      const int xh0 = static_cast<int>(((qh >> (j + 0)) << 4) & 0x10);
      const int xh1 = static_cast<int>((qh >> (j + 12)) & 0x10);
      sumi0 += ((x[ib].qs[j] & 0x0f) | xh0) * y[ib].qs[j];
      sumi1 += ((x[ib].qs[j] >> 4) | xh1) * y[ib].qs[j + kQK5_1 / 2];
    }
    const int sumi = sumi0 + sumi1;
    sumf += (fp16_to_fp32(x[ib].d) * fp16_to_fp32(y[ib].d)) * static_cast<float>(sumi) +
            fp16_to_fp32(x[ib].m) * fp16_to_fp32(y[ib].s);
  }
  return sumf;
}

// ---- Q8_0 / Q8_1 --------------------------------------------------------------------------------

// quantize_row_q8_0_ref: also the activation quantizer of Q4_0/Q5_0/Q8_0 (ggml's generic
// quantize_row_q8_0 calls the reference). The scale is stored as fp16 but the quants are computed
// with the unrounded scale, as ggml does.
void quantize_q8_0(const float* x, void* vy, std::int64_t n) {
  BlockQ8_0* y = blocks_of<BlockQ8_0>(vy);
  const std::int64_t nb = n / kQK8_0;
  for (std::int64_t i = 0; i < nb; ++i, x += kQK8_0) {
    float amax = 0.0f;
    for (int j = 0; j < kQK8_0; ++j) amax = std::fmax(amax, std::fabs(x[j]));
    const float d = amax / ((1 << 7) - 1);
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    for (int j = 0; j < kQK8_0; ++j) y[i].qs[j] = static_cast<std::int8_t>(std::round(x[j] * id));
  }
}

// ggml-cpu's x86 quantize_row_q8_0 (arch/x86/quants.c), what llama.cpp quantizes activations
// and a q8_0 KV cache with on this machine: id = 127 / amax instead of 1 / (amax / 127), and
// round to nearest even instead of roundf. The two quantizers disagree on a few values per
// thousand, which real models (Gemma 3) amplify into visibly different logits.
void quantize_q8_0_act(const float* x, void* vy, std::int64_t n) {
  BlockQ8_0* y = blocks_of<BlockQ8_0>(vy);
  const std::int64_t nb = n / kQK8_0;
  for (std::int64_t i = 0; i < nb; ++i, x += kQK8_0) {
    float amax = 0.0f;
    for (int j = 0; j < kQK8_0; ++j) amax = std::fmax(amax, std::fabs(x[j]));
    const float id = amax != 0.0f ? 127.f / amax : 0.0f;
    y[i].d = fp32_to_fp16(amax / 127.f);
    for (int j = 0; j < kQK8_0; ++j) y[i].qs[j] = static_cast<std::int8_t>(std::nearbyint(x[j] * id));
  }
}

void quantize_q8_1_act(const float* x, void* vy, std::int64_t n) {
  BlockQ8_1* y = blocks_of<BlockQ8_1>(vy);
  const std::int64_t nb = n / kQK8_1;
  for (std::int64_t i = 0; i < nb; ++i, x += kQK8_1) {
    float amax = 0.0f;
    for (int j = 0; j < kQK8_1; ++j) amax = std::fmax(amax, std::fabs(x[j]));
    const float d = amax / 127.f;
    const float id = amax != 0.0f ? 127.f / amax : 0.0f;
    y[i].d = fp32_to_fp16(d);
    int sum = 0;
    for (int j = 0; j < kQK8_1; ++j) {
      y[i].qs[j] = static_cast<std::int8_t>(std::nearbyint(x[j] * id));
      sum += y[i].qs[j];
    }
    y[i].s = fp32_to_fp16(d * static_cast<float>(sum));
  }
}

void quantize_q8_1(const float* x, void* vy, std::int64_t n) {
  BlockQ8_1* y = blocks_of<BlockQ8_1>(vy);
  const std::int64_t nb = n / kQK8_1;
  for (std::int64_t i = 0; i < nb; ++i, x += kQK8_1) {
    float amax = 0.0f;
    for (int j = 0; j < kQK8_1; ++j) amax = std::fmax(amax, std::fabs(x[j]));
    const float d = amax / ((1 << 7) - 1);
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    int sum = 0;
    for (int j = 0; j < kQK8_1 / 2; ++j) {
      y[i].qs[j] = static_cast<std::int8_t>(std::round(x[j] * id));
      y[i].qs[kQK8_1 / 2 + j] = static_cast<std::int8_t>(std::round(x[kQK8_1 / 2 + j] * id));
      sum += y[i].qs[j];
      sum += y[i].qs[kQK8_1 / 2 + j];
    }
    y[i].s = fp32_to_fp16(static_cast<float>(sum) * d);
  }
}

void dequantize_q8_0(const void* vx, float* y, std::int64_t n) {
  const BlockQ8_0* x = blocks_of<BlockQ8_0>(vx);
  const std::int64_t nb = n / kQK8_0;
  for (std::int64_t i = 0; i < nb; ++i, y += kQK8_0) {
    const float d = fp16_to_fp32(x[i].d);
    for (int j = 0; j < kQK8_0; ++j) y[j] = static_cast<float>(x[i].qs[j]) * d;
  }
}

void dequantize_q8_1(const void* vx, float* y, std::int64_t n) {
  const BlockQ8_1* x = blocks_of<BlockQ8_1>(vx);
  const std::int64_t nb = n / kQK8_1;
  for (std::int64_t i = 0; i < nb; ++i, y += kQK8_1) {
    const float d = fp16_to_fp32(x[i].d);
    for (int j = 0; j < kQK8_1; ++j) y[j] = static_cast<float>(x[i].qs[j]) * d;
  }
}

float vec_dot_q8_0(std::int64_t n, const void* w, const void* a) {
  const BlockQ8_0* x = blocks_of<BlockQ8_0>(w);
  const BlockQ8_0* y = blocks_of<BlockQ8_0>(a);
  const std::int64_t nb = n / kQK8_0;
  float sumf = 0.0f;
  for (std::int64_t ib = 0; ib < nb; ++ib) {
    int sumi = 0;
    for (int j = 0; j < kQK8_0; ++j) sumi += x[ib].qs[j] * y[ib].qs[j];
    sumf += static_cast<float>(sumi) * (fp16_to_fp32(x[ib].d) * fp16_to_fp32(y[ib].d));
  }
  return sumf;
}

}  // namespace sluice::cpu::scalar
