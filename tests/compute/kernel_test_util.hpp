// Shared pieces of the compute/cpu kernel tests: the type lists, seeded inputs, and the named
// error bounds (each with the reasoning that sizes it).
#pragma once

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "compute/cpu/kernels.hpp"
#include "compute/cpu/quants.hpp"

namespace sluice::cpu {
// GoogleTest prints parameters through this (found by argument-dependent lookup).
inline void PrintTo(CpuIsa isa, std::ostream* os) { *os << to_string(isa); }
}  // namespace sluice::cpu

namespace sluice::cpu::test {

inline constexpr GgmlType kWeightTypes[] = {
    GgmlType::F32,  GgmlType::F16,  GgmlType::BF16, GgmlType::Q4_0, GgmlType::Q4_1,
    GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0, GgmlType::Q2_K, GgmlType::Q3_K,
    GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K, GgmlType::MXFP4,
};

inline const char* type_name(GgmlType t) {
  switch (t) {
    case GgmlType::F32: return "F32";
    case GgmlType::F16: return "F16";
    case GgmlType::BF16: return "BF16";
    case GgmlType::Q4_0: return "Q4_0";
    case GgmlType::Q4_1: return "Q4_1";
    case GgmlType::Q5_0: return "Q5_0";
    case GgmlType::Q5_1: return "Q5_1";
    case GgmlType::Q8_0: return "Q8_0";
    case GgmlType::Q8_1: return "Q8_1";
    case GgmlType::Q2_K: return "Q2_K";
    case GgmlType::Q3_K: return "Q3_K";
    case GgmlType::Q4_K: return "Q4_K";
    case GgmlType::Q5_K: return "Q5_K";
    case GgmlType::Q6_K: return "Q6_K";
    case GgmlType::Q8_K: return "Q8_K";
    case GgmlType::MXFP4: return "MXFP4";
  }
  return "?";
}

// Row lengths at block-alignment edges: odd multiples of the block, one just past 4096.
inline std::vector<std::int64_t> test_lengths(GgmlType t) {
  const std::uint32_t block = block_elements(t);
  if (block == 1) return {1, 7, 33, 1000, 4099};
  if (block == 32) return {32 * 7, 32 * 37, 4096 + 32 * 5};
  return {256, 512 + 256, 4096 + 256};
}

// Gaussian rows with a per-row scale spread over decades, a few outliers and the odd all-zero
// block: the shapes real weights and activations take.
inline std::vector<float> random_row(std::mt19937_64& rng, std::int64_t n, float scale = 1.0f) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  std::vector<float> x(static_cast<std::size_t>(n));
  for (auto& v : x) v = scale * normal(rng);
  if (n >= 64) {
    constexpr float kOutlierGain = 12.0f;
    for (int k = 0; k < 2; ++k) x[static_cast<std::size_t>(unit(rng) * static_cast<float>(n - 1))] *= kOutlierGain;
    if (unit(rng) < 0.3f) {
      for (std::int64_t i = 0; i < 32; ++i) x[static_cast<std::size_t>(i)] = 0.0f;
    }
  }
  return x;
}

inline std::vector<std::uint8_t> quantize(GgmlType t, const std::vector<float>& x) {
  std::vector<std::uint8_t> q(row_bytes(t, static_cast<std::int64_t>(x.size())));
  quantize_row_reference(t, x.data(), q.data(), static_cast<std::int64_t>(x.size()));
  return q;
}

inline std::vector<std::uint8_t> quantize_act(GgmlType act_type, const std::vector<float>& x) {
  if (act_type == GgmlType::F32) {
    std::vector<std::uint8_t> q(x.size() * sizeof(float));
    std::memcpy(q.data(), x.data(), q.size());
    return q;
  }
  std::vector<std::uint8_t> q(row_bytes(act_type, static_cast<std::int64_t>(x.size())));
  quantize_activation_row(act_type, x.data(), q.data(), static_cast<std::int64_t>(x.size()));
  return q;
}

inline std::vector<float> dequantize(GgmlType t, const void* q, std::int64_t n) {
  std::vector<float> y(static_cast<std::size_t>(n));
  dequantize_row(t, q, y.data(), n);
  return y;
}

// ---- bounds -------------------------------------------------------------------------------------

// Magnitude that float rounding in a dot product scales with: per 32-element chunk,
// 4 * max|w| * sum|a|. Every partial term the kernels form (d*sum, min*s, d*sumi - dmin*summs)
// is bounded by it: a quantized weight's d*q is at most |w| + |min| and |min| <= max|w| (plus
// slack for the K-quant fitted mins, hence 4 rather than 3).
inline double dot_magnitude(const std::vector<float>& w, const std::vector<float>& a) {
  constexpr std::size_t kChunk = 32;
  constexpr double kTermFactor = 4.0;
  double mag = 0.0;
  for (std::size_t c = 0; c < w.size(); c += kChunk) {
    double wmax = 0.0, asum = 0.0;
    for (std::size_t i = c; i < std::min(w.size(), c + kChunk); ++i) {
      wmax = std::max(wmax, static_cast<double>(std::fabs(w[i])));
      asum += std::fabs(a[i]);
    }
    mag += kTermFactor * wmax * asum;
  }
  return mag;
}

// SIMD vs scalar dot products: the integer block sums are exact in both; only the float
// accumulation order differs. A float sum of k terms errs by at most k * eps * sum|terms|; no
// kernel here adds more than n/16 terms into one accumulator (AVX2 float types: 16 per step),
// plus a horizontal reduction and the scale products (the +32).
inline double dot_rounding_bound(std::int64_t n, double magnitude) {
  return (static_cast<double>(n) / 16.0 + 32.0) * FLT_EPSILON * magnitude;
}

// Quantize -> dequantize round trip on random_row inputs (with their 12x outliers and zero
// blocks). max_rel_block: the largest error of an element relative to the largest |x| of its
// block (32 elements, or the 256-element super-block for K-quants); for the float types relative
// to |x| itself, floored at the smallest normal. Analytic for the float types and the 32-element
// types: half a quantization step, a full step where the top level is clamped (Q4_0/Q5_0), plus
// the fp16 rounding of scale and min (the 1/512 term). Measured over 40 seeds x 3 lengths with
// ~20% headroom for the K-quants, whose scale searches trade max error for RMS error.
// rms_rel: sqrt(mean err^2 / mean x^2) over the row; measured the same way for every type (the
// outliers inflate it well above the textbook values for Gaussian data).
struct RoundTripBound {
  GgmlType type;
  double max_rel_block;
  double rms_rel;
};

inline constexpr RoundTripBound kRoundTripBounds[] = {
    {GgmlType::F32, 0.0, 0.0},
    {GgmlType::F16, 1.0 / 2048, 1.0 / 2048},        // round to nearest: 2^-11 relative
    {GgmlType::BF16, 1.0 / 256, 1.0 / 256},         // 2^-8 relative
    {GgmlType::Q4_0, 1.0 / 8 + 1.0 / 512, 0.22},    // d = max/-8: the level +8 clamps to +7
    {GgmlType::Q4_1, 2.0 / 30 + 1.0 / 512, 0.14},   // (max-min)/15 steps, range <= 2 amax
    {GgmlType::Q5_0, 1.0 / 16 + 1.0 / 512, 0.11},   // d = max/-16: +16 clamps to +15
    {GgmlType::Q5_1, 2.0 / 62 + 1.0 / 512, 0.07},   // (max-min)/31 steps
    {GgmlType::Q8_0, 1.0 / 254 + 1.0 / 512, 0.014}, // amax/127 steps
    {GgmlType::Q2_K, 0.42, 0.53},                   // measured 0.348, 0.443
    {GgmlType::Q3_K, 0.25, 0.28},                   // measured 0.202, 0.233
    {GgmlType::Q4_K, 0.105, 0.14},                  // measured 0.085, 0.114
    {GgmlType::Q5_K, 0.055, 0.062},                 // measured 0.045, 0.051
    {GgmlType::Q6_K, 0.02, 0.042},                  // measured 0.016, 0.035
    // amax in [8, 16) half-scales d: the top level 12d clamps up to 4d below 16d (a quarter of
    // amax), and the widest gap (8d..12d) errs 2d <= amax / 5. No fp16 rounding: d is exact.
    {GgmlType::MXFP4, 0.25, 0.27},                  // measured 0.2498, 0.224
};

inline const RoundTripBound& round_trip_bound(GgmlType t) {
  for (const auto& b : kRoundTripBounds) {
    if (b.type == t) return b;
  }
  return kRoundTripBounds[0];
}

inline std::string case_label(GgmlType t, std::int64_t n, std::uint64_t seed) {
  return std::string(type_name(t)) + " n=" + std::to_string(n) + " seed=" + std::to_string(seed);
}

}  // namespace sluice::cpu::test
