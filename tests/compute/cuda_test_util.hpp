// Shared pieces of the CUDA compute tests (test_cuda_host, test_cuda_device): the weight types
// the CUDA kernels cover, seeded random blocks that exercise every bit pattern of a block (not
// only what the reference quantizers write), and the named error bounds of the parallel dot
// products. Plain C++: used by the host-compiled tests in both builds.
#pragma once

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "compute/cpu/quants.hpp"
#include "tests/compute/kernel_test_util.hpp"

namespace sluice::cuda::test {

using cpu::test::type_name;

// Every weight type the CUDA backend computes with (all of compute/cpu's).
inline constexpr GgmlType kCudaWeightTypes[] = {
    GgmlType::F32,  GgmlType::F16,  GgmlType::BF16, GgmlType::Q4_0, GgmlType::Q4_1,
    GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0, GgmlType::Q2_K, GgmlType::Q3_K,
    GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K,
};

// Random fp16 bits of a finite value of magnitude around `scale` (a block scale or min).
inline std::uint16_t random_half(std::mt19937_64& rng, float scale) {
  std::normal_distribution<float> normal(0.0f, scale);
  return cpu::fp32_to_fp16(normal(rng));
}

// n elements' worth of blocks of `type` filled with random bytes, then every fp16/fp32 scale field
// overwritten with a finite random value: covers quant patterns (e.g. Q4_K scales above what the
// search picks, Q3_K hmask combinations, negative Q6_K scales) the reference quantizers never
// produce. Float types get random finite values.
inline std::vector<std::uint8_t> random_blocks(GgmlType type, std::int64_t n, std::mt19937_64& rng) {
  std::vector<std::uint8_t> bytes(cpu::row_bytes(type, n));
  std::uniform_int_distribution<int> byte(0, 255);
  for (auto& b : bytes) b = static_cast<std::uint8_t>(byte(rng));
  const std::int64_t blocks = n / cpu::block_elements(type);
  constexpr float kScale = 0.01f;  // typical of weight-block scales in real models
  auto fix = [&](auto* blocks_ptr, auto&& fix_one) {
    for (std::int64_t i = 0; i < blocks; ++i) fix_one(blocks_ptr[i]);
  };
  void* p = bytes.data();
  switch (type) {
    case GgmlType::F32: {
      std::normal_distribution<float> normal(0.0f, 1.0f);
      auto* f = static_cast<float*>(p);
      for (std::int64_t i = 0; i < n; ++i) f[i] = normal(rng);
      break;
    }
    case GgmlType::F16:
    case GgmlType::BF16: {
      std::normal_distribution<float> normal(0.0f, 1.0f);
      auto* h = static_cast<std::uint16_t*>(p);
      for (std::int64_t i = 0; i < n; ++i) h[i] = type == GgmlType::F16 ? cpu::fp32_to_fp16(normal(rng)) : cpu::fp32_to_bf16(normal(rng));
      break;
    }
    case GgmlType::Q4_0: fix(static_cast<cpu::BlockQ4_0*>(p), [&](auto& b) { b.d = random_half(rng, kScale); }); break;
    case GgmlType::Q5_0: fix(static_cast<cpu::BlockQ5_0*>(p), [&](auto& b) { b.d = random_half(rng, kScale); }); break;
    case GgmlType::Q8_0: fix(static_cast<cpu::BlockQ8_0*>(p), [&](auto& b) { b.d = random_half(rng, kScale); }); break;
    case GgmlType::Q4_1: fix(static_cast<cpu::BlockQ4_1*>(p), [&](auto& b) { b.d = random_half(rng, kScale); b.m = random_half(rng, kScale); }); break;
    case GgmlType::Q5_1: fix(static_cast<cpu::BlockQ5_1*>(p), [&](auto& b) { b.d = random_half(rng, kScale); b.m = random_half(rng, kScale); }); break;
    case GgmlType::Q8_1: fix(static_cast<cpu::BlockQ8_1*>(p), [&](auto& b) { b.d = random_half(rng, kScale); b.s = random_half(rng, kScale); }); break;
    case GgmlType::Q2_K: fix(static_cast<cpu::BlockQ2_K*>(p), [&](auto& b) { b.d = random_half(rng, kScale); b.dmin = random_half(rng, kScale); }); break;
    case GgmlType::Q3_K: fix(static_cast<cpu::BlockQ3_K*>(p), [&](auto& b) { b.d = random_half(rng, kScale); }); break;
    case GgmlType::Q4_K: fix(static_cast<cpu::BlockQ4_K*>(p), [&](auto& b) { b.d = random_half(rng, kScale); b.dmin = random_half(rng, kScale); }); break;
    case GgmlType::Q5_K: fix(static_cast<cpu::BlockQ5_K*>(p), [&](auto& b) { b.d = random_half(rng, kScale); b.dmin = random_half(rng, kScale); }); break;
    case GgmlType::Q6_K: fix(static_cast<cpu::BlockQ6_K*>(p), [&](auto& b) { b.d = random_half(rng, kScale); }); break;
    case GgmlType::MXFP4:
      // Half-scales 2^-11..2^-6, so weights up to 12 x 2^-6 ~ 0.19: of kScale's order.
      fix(static_cast<cpu::BlockMXFP4*>(p), [&](auto& b) { b.e = static_cast<std::uint8_t>(std::uniform_int_distribution<int>(117, 122)(rng)); });
      break;
    case GgmlType::Q8_K:
      // Activation blocks: quants in [-127, 127] as every quantizer writes, bsums consistent.
      fix(static_cast<cpu::BlockQ8_K*>(p), [&](auto& b) {
        std::uniform_int_distribution<int> q(-127, 127);
        b.d = std::fabs(std::normal_distribution<float>(0.0f, kScale)(rng));
        for (auto& v : b.qs) v = static_cast<std::int8_t>(q(rng));
        for (int g = 0; g < 16; ++g) {
          int s = 0;
          for (int i = 0; i < 16; ++i) s += b.qs[16 * g + i];
          b.bsums[g] = static_cast<std::int16_t>(s);
        }
      });
      break;
  }
  return bytes;
}

// ---- bounds -------------------------------------------------------------------------------------

// Dequantized row of any weight or activation type (F32 rows are copied).
inline std::vector<double> values_of(GgmlType type, const void* row, std::int64_t n) {
  std::vector<float> f(static_cast<std::size_t>(n));
  if (type == GgmlType::F32) {
    std::memcpy(f.data(), row, f.size() * sizeof(float));
  } else {
    cpu::dequantize_row(type, row, f.data(), n);
  }
  return {f.begin(), f.end()};
}

// Whether the type stores a min (value = d * q - min, or + m): its dot terms include a min term.
inline bool has_min(GgmlType t) {
  return t == GgmlType::Q4_1 || t == GgmlType::Q5_1 || t == GgmlType::Q2_K || t == GgmlType::Q4_K ||
         t == GgmlType::Q5_K;
}

// Bytes of the quants (not scales) of a block-type row zeroed, so dequantizing gives each
// element's min term alone. Only for has_min types.
inline std::vector<std::uint8_t> zero_quants(GgmlType t, const std::uint8_t* row, std::int64_t n) {
  std::vector<std::uint8_t> out(row, row + cpu::row_bytes(t, n));
  const std::int64_t blocks = n / cpu::block_elements(t);
  for (std::int64_t i = 0; i < blocks; ++i) {
    void* b = out.data() + i * cpu::row_bytes(t, cpu::block_elements(t));
    switch (t) {
      case GgmlType::Q4_1: std::memset(static_cast<cpu::BlockQ4_1*>(b)->qs, 0, 16); break;
      case GgmlType::Q5_1: {
        auto* q = static_cast<cpu::BlockQ5_1*>(b);
        std::memset(q->qs, 0, 16);
        std::memset(q->qh, 0, 4);
        break;
      }
      case GgmlType::Q2_K: std::memset(static_cast<cpu::BlockQ2_K*>(b)->qs, 0, 64); break;
      case GgmlType::Q4_K: std::memset(static_cast<cpu::BlockQ4_K*>(b)->qs, 0, 128); break;
      case GgmlType::Q5_K: {
        auto* q = static_cast<cpu::BlockQ5_K*>(b);
        std::memset(q->qs, 0, 128);
        std::memset(q->qh, 0, 32);
        break;
      }
      default: break;
    }
  }
  return out;
}

// An upper bound of sum|terms| over the float terms any of the dot kernels forms for this row
// pair: sum_i (|w_i| + 2 |min_i|) * |a_i| on the dequantized values the integer sums stand for
// (a term d * sumi - dmin * summs is at most sum |d q a| + sum |min a|, and |d q| <= |w| + |min|).
inline double dot_terms_magnitude(GgmlType type, const void* w, GgmlType act_type, const void* a, std::int64_t n) {
  const std::vector<double> wv = values_of(type, w, n);
  const std::vector<double> av = values_of(act_type, a, n);
  std::vector<double> mv(static_cast<std::size_t>(n), 0.0);
  if (has_min(type)) mv = values_of(type, zero_quants(type, static_cast<const std::uint8_t*>(w), n).data(), n);
  double mag = 0.0;
  for (std::size_t i = 0; i < wv.size(); ++i) mag += (std::fabs(wv[i]) + 2.0 * std::fabs(mv[i])) * std::fabs(av[i]);
  return mag;
}

// A weight row's dot as the GEMV kernels compute it (unit terms summed per lane, then a 5-level
// warp tree) vs compute/cpu's scalar vec_dot (block terms summed serially; 8 lane sums for the
// K-quants). The integer sums are exact in both; each float term carries at most 4 roundings
// (scale products, the min term), and a float sum of k terms errs by at most k * eps * sum|terms|.
// The CPU adds at most n/32 terms into one float, the GPU at most n/32/32 + 5; the bound is their
// total plus the per-term roundings, on cpu::test::dot_magnitude (which bounds sum|terms|).
inline double gemv_dot_bound(std::int64_t n, double magnitude) {
  constexpr double kTermRoundings = 4.0;
  constexpr double kWarpTreeLevels = 5.0;
  const double terms = static_cast<double>(n) / 32.0 + 1.0;
  return (terms + terms / 32.0 + kWarpTreeLevels + kTermRoundings) * FLT_EPSILON * magnitude;
}

// The sum of `terms` in the GEMV kernels' order: lane l adds terms l, l + 32, ... in float, then
// lanes combine by butterfly (__shfl_xor_sync with offsets 16, 8, 4, 2, 1); lane 0's value.
inline float warp_order_sum(const std::vector<float>& terms) {
  constexpr int kLanes = 32;
  float lane[kLanes] = {};
  for (std::size_t i = 0; i < terms.size(); ++i) lane[i % kLanes] += terms[i];
  for (int offset = kLanes / 2; offset > 0; offset /= 2) {
    float next[kLanes];
    for (int l = 0; l < kLanes; ++l) next[l] = lane[l] + lane[l ^ offset];
    std::memcpy(lane, next, sizeof lane);
  }
  return lane[0];
}

// |gpu - cpu| for one output of the large-batch path. The CPU multiplies the weights w with the
// activations quantized to vec_dot_type (Q8: error <= amax/254 from rounding plus amax/2048 from
// the fp16 scale, per block of 32, or 256 for Q8_K; f16/bf16/f32 activations: the same rounding
// on both sides). The GPU multiplies w rounded to fp16 (quantized types: <= |w| 2^-11) with the
// activations rounded to fp16 (<= |a| 2^-11; bf16/f32 weights: bf16/f32, as the CPU). Both then
// accumulate in fp32 in their own order: <= (n + 64) eps sum(|w| + 2|min|)|a| each (cuBLAS's
// order is unspecified, so the sequential worst case).
inline double gemm_bound(GgmlType t, const std::uint8_t* w_row, const float* x, std::int64_t cols) {
  const std::vector<double> w = test::values_of(t, w_row, cols);
  std::vector<double> mins(static_cast<std::size_t>(cols), 0.0);
  if (test::has_min(t)) mins = test::values_of(t, test::zero_quants(t, w_row, cols).data(), cols);
  const GgmlType act = cpu::vec_dot_type(t);
  const bool quantized_acts = act == GgmlType::Q8_0 || act == GgmlType::Q8_1 || act == GgmlType::Q8_K;
  const std::int64_t act_block = act == GgmlType::Q8_K ? 256 : 32;
  constexpr double kHalfUlp16 = 1.0 / 2048;  // fp16 rounding, relative
  double bound = 0.0;
  double magnitude = 0.0;
  for (std::int64_t c0 = 0; c0 < cols; c0 += act_block) {
    double amax = 0.0;
    for (std::int64_t i = c0; i < std::min(cols, c0 + act_block); ++i) amax = std::max(amax, double(std::fabs(x[i])));
    for (std::int64_t i = c0; i < std::min(cols, c0 + act_block); ++i) {
      const double aw = std::fabs(w[i]);
      const double aa = std::fabs(x[i]);
      if (quantized_acts) {
        bound += aw * (amax / 254 + amax * kHalfUlp16 + aa * kHalfUlp16);  // CPU Q8 vs GPU fp16 activations
        bound += aw * kHalfUlp16 * (aa + amax / 254);                       // GPU's fp16 weights
      }
      magnitude += (aw + 2 * std::fabs(mins[i])) * (aa + amax / 254 + amax * kHalfUlp16);
    }
  }
  return bound + 2 * (static_cast<double>(cols) + 64) * FLT_EPSILON * magnitude;
}

// The cuBLAS path's product in exact arithmetic: weights as the GPU feeds them (dequantized and
// rounded to fp16; f16/bf16/f32 weights as stored) times activations converted the same way
// (fp16; bf16 for bf16 weights; f32 for f32), summed in double. *magnitude gets sum |w a| of
// those operands, which scales the fp32 accumulation error: any summation order of n terms errs
// by at most (n - 1) eps sum|terms| (+ the product roundings for f32), so a GEMM result must lie
// within gemm_accumulation_bound of this value.
inline double gemm_fp16_reference(GgmlType t, const std::uint8_t* w_row, const float* x, std::int64_t cols, double* magnitude) {
  const std::vector<double> w = values_of(t, w_row, cols);
  double sum = 0.0;
  double mag = 0.0;
  for (std::int64_t i = 0; i < cols; ++i) {
    double wi = w[i];
    double ai = x[i];
    if (t == GgmlType::BF16) {
      ai = cpu::bf16_to_fp32(cpu::fp32_to_bf16(x[i]));
    } else if (t != GgmlType::F32) {
      wi = cpu::fp16_to_fp32(cpu::fp32_to_fp16(static_cast<float>(w[i])));
      ai = cpu::fp16_to_fp32(cpu::fp32_to_fp16(x[i]));
    }
    sum += wi * ai;
    mag += std::fabs(wi * ai);
  }
  *magnitude = mag;
  return sum;
}
inline double gemm_accumulation_bound(std::int64_t cols, double magnitude) {
  return (static_cast<double>(cols) + 2.0) * FLT_EPSILON * magnitude;
}

// The device's expf/sinf/cosf/tanhf are within 2 ulp of the true value, the CPU's libm within 1:
// two results of the same function differ by at most 3 ulp, i.e. 3 * 2^-23 relative.
inline constexpr double kLibmUlps = 3.0;

struct AttnCase {
  std::int32_t n_head;
  std::int32_t n_head_kv;
  std::int32_t head_dim;
  std::int32_t window;
  float softcap;
  std::int64_t first_pos;
  std::int64_t n_queries;
};

// Attention: the GPU keeps the softmax weights unrounded where the CPU rounds them to fp16
// (<= 2^-11 relative each, so <= 2^-11 max|v| on the output); the logits differ by their float
// summation order, <= (head_dim + 5) eps scale sum_d |q_d k_d| (plus tanh's ulps under a
// softcap), and softmax moves the output by at most 2 max|dlogit| max|v|; plus the exp ulps.
inline double attention_bound(const AttnCase& c, const std::vector<float>& q_row, const std::vector<std::uint16_t>& keys,
                       const std::vector<std::uint16_t>& values, std::int64_t row_floats, std::int64_t pos, int h) {
  const std::int64_t kv_off = static_cast<std::int64_t>(h / (c.n_head / c.n_head_kv)) * c.head_dim;
  const std::int64_t first = c.window > 0 ? std::max<std::int64_t>(0, pos - c.window + 1) : 0;
  const float scale = 1.0f / std::sqrt(float(c.head_dim));
  double max_dlogit = 0.0;
  double vmax = 0.0;
  for (std::int64_t j = first; j <= pos; ++j) {
    double qk = 0.0;
    for (int d = 0; d < c.head_dim; ++d) {
      qk += std::fabs(q_row[h * c.head_dim + d] * cpu::fp16_to_fp32(keys[j * row_floats + kv_off + d]));
      vmax = std::max(vmax, double(std::fabs(cpu::fp16_to_fp32(values[j * row_floats + kv_off + d]))));
    }
    double dlogit = (c.head_dim + 5) * FLT_EPSILON * scale * qk;
    if (c.softcap > 0) dlogit += kLibmUlps * FLT_EPSILON * c.softcap;
    max_dlogit = std::max(max_dlogit, dlogit);
  }
  return (1.0 / 2048 + 2 * max_dlogit + 4 * kLibmUlps * FLT_EPSILON) * vmax;
}

}  // namespace sluice::cuda::test
