// The row kernels (row_kernels.hpp) of each SIMD level against the scalar reference,
// at head sizes that are and are not multiples of the vector width and key counts around the
// four-key step; and the properties attend() relies on for batch == sequential: a key's score
// does not depend on how many keys share the call, a value sum split across calls is the same
// bits, and the weights are rounded to fp16 inside the kernel.
#include <gtest/gtest.h>

#include <bit>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "compute/cpu/blocks.hpp"
#include "compute/cpu/kernels.hpp"

namespace sluice::cpu {
namespace {

constexpr std::int32_t kHeadDims[] = {8, 16, 40, 64, 80, 128, 200, 256};
constexpr std::int64_t kKeyCounts[] = {1, 3, 4, 5, 17, 64};

struct Cache {
  std::int64_t stride;               // halves between consecutive keys (a row of 3 heads)
  std::vector<std::uint16_t> rows;   // n rows of `stride` halves; the head at offset `stride / 3`
  std::vector<float> q;              // head_dim floats, fp16 values
  std::vector<float> weights;        // n floats, not fp16 values
};

Cache make_cache(std::int32_t head_dim, std::int64_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  Cache c;
  c.stride = 3 * std::int64_t(head_dim);
  c.rows.resize(std::size_t(n * c.stride));
  for (auto& h : c.rows) h = fp32_to_fp16(dist(rng));
  for (std::int32_t d = 0; d < head_dim; ++d) c.q.push_back(fp16_to_fp32(fp32_to_fp16(dist(rng))));
  for (std::int64_t j = 0; j < n; ++j) c.weights.push_back(std::fabs(dist(rng)) / float(n) + 1e-3f);
  return c;
}

// |a . b| can be far below sum |a_i b_i|; a float sum's error is bounded by the latter.
double rounding_bound(std::int32_t terms, double magnitude) { return 2.0 * terms * FLT_EPSILON * magnitude + 1e-30; }

class RowKernels : public ::testing::TestWithParam<CpuIsa> {};

TEST_P(RowKernels, MatchTheScalarReference) {
  const KernelTable* k = kernels_for(GetParam());
  if (k == nullptr) GTEST_SKIP() << "CPU lacks " << to_string(GetParam());
  for (std::int32_t hd : kHeadDims) {
    for (std::int64_t n : kKeyCounts) {
      SCOPED_TRACE("head_dim " + std::to_string(hd) + " keys " + std::to_string(n));
      const Cache c = make_cache(hd, n, std::uint64_t(hd * 1000 + n));
      const std::uint16_t* head = c.rows.data() + c.stride / 3;
      std::vector<float> want(static_cast<std::size_t>(n)), got(static_cast<std::size_t>(n));
      scalar::attention_scores_f16(c.q.data(), head, c.stride, n, hd, want.data());
      k->attention_scores_f16(c.q.data(), head, c.stride, n, hd, got.data());
      for (std::int64_t j = 0; j < n; ++j) {
        double magnitude = 0;
        for (std::int32_t d = 0; d < hd; ++d) magnitude += std::fabs(c.q[d] * fp16_to_fp32(head[j * c.stride + d]));
        ASSERT_NEAR(got[j], want[j], rounding_bound(hd, magnitude)) << "key " << j;
      }
      std::vector<float> out_want(static_cast<std::size_t>(hd), 0.25f), out_got(static_cast<std::size_t>(hd), 0.25f);
      scalar::attention_values_f16(c.weights.data(), head, c.stride, n, hd, out_want.data());
      k->attention_values_f16(c.weights.data(), head, c.stride, n, hd, out_got.data());
      for (std::int32_t d = 0; d < hd; ++d) {
        double magnitude = 0.25;
        for (std::int64_t j = 0; j < n; ++j) magnitude += std::fabs(c.weights[j] * fp16_to_fp32(head[j * c.stride + d]));
        ASSERT_NEAR(out_got[d], out_want[d], rounding_bound(std::int32_t(n) + 1, magnitude)) << "dim " << d;
      }
    }
  }
}

TEST_P(RowKernels, BitsDoNotDependOnHowKeysAreGrouped) {
  const KernelTable* k = kernels_for(GetParam());
  if (k == nullptr) GTEST_SKIP() << "CPU lacks " << to_string(GetParam());
  for (std::int32_t hd : kHeadDims) {
    constexpr std::int64_t n = 17;
    SCOPED_TRACE("head_dim " + std::to_string(hd));
    const Cache c = make_cache(hd, n, std::uint64_t(hd));
    std::vector<float> together(n), alone(n);
    k->attention_scores_f16(c.q.data(), c.rows.data(), c.stride, n, hd, together.data());
    for (std::int64_t j = 0; j < n; ++j) k->attention_scores_f16(c.q.data(), c.rows.data() + j * c.stride, c.stride, 1, hd, &alone[j]);
    for (std::int64_t j = 0; j < n; ++j) ASSERT_EQ(float_bits(together[j]), float_bits(alone[j])) << "key " << j;

    std::vector<float> whole(static_cast<std::size_t>(hd), 0.0f), split(static_cast<std::size_t>(hd), 0.0f);
    k->attention_values_f16(c.weights.data(), c.rows.data(), c.stride, n, hd, whole.data());
    k->attention_values_f16(c.weights.data(), c.rows.data(), c.stride, 5, hd, split.data());
    k->attention_values_f16(c.weights.data() + 5, c.rows.data() + 5 * c.stride, c.stride, n - 5, hd, split.data());
    for (std::int32_t d = 0; d < hd; ++d) ASSERT_EQ(float_bits(whole[d]), float_bits(split[d])) << "dim " << d;
  }
}

TEST_P(RowKernels, RoundTheWeightsToHalf) {
  const KernelTable* k = kernels_for(GetParam());
  if (k == nullptr) GTEST_SKIP() << "CPU lacks " << to_string(GetParam());
  constexpr std::int32_t hd = 64;
  constexpr std::int64_t n = 9;
  const Cache c = make_cache(hd, n, 7);
  std::vector<float> rounded;
  bool any_changed = false;
  for (float w : c.weights) {
    rounded.push_back(fp16_to_fp32(fp32_to_fp16(w)));
    any_changed = any_changed || rounded.back() != w;
  }
  ASSERT_TRUE(any_changed);  // otherwise the test proves nothing
  std::vector<float> a(hd, 0.0f), b(hd, 0.0f);
  k->attention_values_f16(c.weights.data(), c.rows.data(), c.stride, n, hd, a.data());
  k->attention_values_f16(rounded.data(), c.rows.data(), c.stride, n, hd, b.data());
  for (std::int32_t d = 0; d < hd; ++d) ASSERT_EQ(float_bits(a[d]), float_bits(b[d])) << "dim " << d;
}

TEST_P(RowKernels, RoundTheQueryToHalf) {
  const KernelTable* k = kernels_for(GetParam());
  if (k == nullptr) GTEST_SKIP() << "CPU lacks " << to_string(GetParam());
  for (std::int32_t hd : kHeadDims) {
    constexpr std::int64_t n = 5;
    const Cache c = make_cache(hd, n, 11);
    std::vector<float> raw, rounded;  // q with bits below fp16's precision, and q rounded
    bool any_changed = false;
    for (float x : c.q) {
      raw.push_back(x + x * 1e-4f);
      rounded.push_back(fp16_to_fp32(fp32_to_fp16(raw.back())));
      any_changed = any_changed || rounded.back() != raw.back();
    }
    ASSERT_TRUE(any_changed);
    std::vector<float> from_raw(n), from_rounded(n);
    k->attention_scores_f16(raw.data(), c.rows.data(), c.stride, n, hd, from_raw.data());
    k->attention_scores_f16(rounded.data(), c.rows.data(), c.stride, n, hd, from_rounded.data());
    for (std::int64_t j = 0; j < n; ++j) {
      ASSERT_EQ(float_bits(from_raw[j]), float_bits(from_rounded[j])) << "head_dim " << hd << " key " << j;
    }
  }
}

// GeGLU: every level equal to the scalar kernel bit for bit (one fp16 rounding, one table read,
// one multiply), at the +-10 bounds, through the table's whole range and at odd lengths.
TEST_P(RowKernels, GegluEqualsScalarExactly) {
  const KernelTable* k = kernels_for(GetParam());
  if (k == nullptr) GTEST_SKIP() << "CPU lacks " << to_string(GetParam());
  std::vector<std::uint16_t> table(65537);
  for (std::uint32_t h = 0; h < 65536; ++h) table[h] = fp32_to_fp16(float(h % 2000) / 100.0f - 10.0f);  // any finite halves
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<float> wide(-12.0f, 12.0f);
  std::vector<float> gate, up;
  for (float edge : {-10.0f, 10.0f, std::nextafter(-10.0f, 0.0f), std::nextafter(10.0f, 0.0f), -0.0f, 0.0f, 65504.0f, -70000.0f}) {
    gate.push_back(edge);
  }
  while (gate.size() < 1003) gate.push_back(wide(rng));
  for (std::size_t i = 0; i < gate.size(); ++i) up.push_back(wide(rng));
  for (std::int64_t n : {std::int64_t(1), std::int64_t(7), std::int64_t(16), std::int64_t(1003)}) {
    std::vector<float> want(std::size_t(n), 0.0f), got(std::size_t(n), 0.0f);
    scalar::geglu(gate.data(), up.data(), want.data(), n, table.data());
    k->geglu(gate.data(), up.data(), got.data(), n, table.data());
    for (std::int64_t i = 0; i < n; ++i) {
      ASSERT_EQ(float_bits(got[i]), float_bits(want[i])) << "n " << n << " gate " << gate[i] << " up " << up[i];
    }
  }
}

// ggml's expf of each level (ggml-cpu/vec.h ggml_v_expf) transcribed one lane at a time, fmaf for
// each fused multiply-add: the SIMD kernels must give exactly these bits.
std::uint32_t bits_of(float x) { return std::bit_cast<std::uint32_t>(x); }
float from_bits(std::uint32_t b) { return std::bit_cast<float>(b); }
constexpr float kExpC[5] = {0x1.ffffecp-1f, 0x1.fffdb6p-2f, 0x1.555e66p-3f, 0x1.573e2ep-5f, 0x1.0e4020p-7f};

float expf_avx512_lane(float x) {
  const float r = 0x1.8p23f;
  const float n = std::fmaf(x, 0x1.715476p+0f, r) - r;
  const float b = std::fmaf(-n, 0x1.7f7d1cp-20f, std::fmaf(-n, 0x1.62e4p-1f, x));
  const float u = b * b;
  const float j = std::fmaf(std::fmaf(std::fmaf(kExpC[4], b, kExpC[3]), u, std::fmaf(kExpC[2], b, kExpC[1])), u,
                            std::fmaf(kExpC[0], b, 1.0f));
  if (std::fabs(n) > 192) return n <= 0 ? 0.0f : INFINITY;
  return std::ldexp(j, int(n));  // vscalefps: j * 2^n, rounded once
}

float expf_avx2_lane(float x) {
  const float r = 0x1.8p23f;
  const float z = std::fmaf(x, 0x1.715476p+0f, r);
  const float n = z - r;
  const float b = std::fmaf(-n, 0x1.7f7d1cp-20f, std::fmaf(-n, 0x1.62e4p-1f, x));
  const std::uint32_t e = bits_of(z) << 23;
  const float k = from_bits(e + bits_of(1.0f));
  const float u = b * b;
  const float j = std::fmaf(std::fmaf(std::fmaf(kExpC[4], b, kExpC[3]), u, std::fmaf(kExpC[2], b, kExpC[1])), u, kExpC[0] * b);
  if (std::fabs(n) <= 126) return std::fmaf(j, k, k);
  const std::uint32_t g = n <= 0 ? 0x82000000u : 0u;
  const float s1 = from_bits(g + 0x7f000000u);
  const float s2 = from_bits(e - g);
  if (std::fabs(n) > 192) return s1 * s1;
  return std::fmaf(s2, j, s2) * s1;
}

float swiglu_lane(CpuIsa isa, float x, float up) {
  const float e = isa == CpuIsa::avx512 ? expf_avx512_lane(-x) : isa == CpuIsa::avx2 ? expf_avx2_lane(-x) : std::exp(-x);
  return x / (1.0f + e) * up;
}

std::vector<float> swiglu_gates() {
  std::vector<float> gate = {0.0f, -0.0f, 1e-30f, -1e-30f, 1.0f, -1.0f, 20.0f, -20.0f, 87.0f, -87.0f, 88.5f, -88.5f,
                             88.8f, -88.8f, 103.5f, -103.5f, 104.5f, -104.5f, 126.0f * 0.6931472f, -126.0f * 0.6931472f,
                             127.5f * 0.6931472f, -127.5f * 0.6931472f, 150.0f, -150.0f, 1e4f, -1e4f, 3e38f, -3e38f};
  std::mt19937_64 rng(11);
  std::uniform_real_distribution<float> wide(-140.0f, 140.0f);
  std::normal_distribution<float> typical(0.0f, 3.0f);
  while (gate.size() < 2000) gate.push_back(gate.size() % 2 ? wide(rng) : typical(rng));
  return gate;
}

// SwiGLU: every level gives its ggml expf's bits (the scalar level std::exp's), element by element
// whatever the call's length (tails included), through the ranges where exp flushes to 0 or
// overflows and where the AVX2 expf splits its scale.
TEST_P(RowKernels, SwigluEqualsTheLevelsExpfExactly) {
  const KernelTable* k = kernels_for(GetParam());
  if (k == nullptr) GTEST_SKIP() << "CPU lacks " << to_string(GetParam());
  const std::vector<float> gate = swiglu_gates();
  std::mt19937_64 rng(12);
  std::normal_distribution<float> dist(0.0f, 2.0f);
  std::vector<float> up;
  for (std::size_t i = 0; i < gate.size(); ++i) up.push_back(dist(rng));
  for (std::int64_t n : {std::int64_t(1), std::int64_t(7), std::int64_t(16), std::int64_t(37), std::int64_t(2000)}) {
    for (std::int64_t offset : {std::int64_t(0), std::int64_t(2000) - n}) {
      std::vector<float> got(std::size_t(n), 0.0f);
      k->swiglu(gate.data() + offset, up.data() + offset, got.data(), n);
      for (std::int64_t i = 0; i < n; ++i) {
        const float g = gate[std::size_t(offset + i)], u = up[std::size_t(offset + i)];
        ASSERT_EQ(float_bits(got[std::size_t(i)]), float_bits(swiglu_lane(GetParam(), g, u)))
            << "n " << n << " gate " << g << " up " << u << " got " << got[std::size_t(i)];
      }
    }
  }
  std::vector<float> in_place(gate.begin(), gate.end()), apart(gate.size());
  k->swiglu(gate.data(), up.data(), apart.data(), std::int64_t(gate.size()));
  k->swiglu(in_place.data(), up.data(), in_place.data(), std::int64_t(in_place.size()));
  for (std::size_t i = 0; i < gate.size(); ++i) ASSERT_EQ(float_bits(in_place[i]), float_bits(apart[i])) << i;
}

// And the transcriptions are SiLU: within 4 ulps of the double-precision value (expf's 1.95 ulps,
// then the sum, the division and the product) wherever exp(-x) is finite in float.
TEST_P(RowKernels, SwigluIsWithinFourUlpsOfExactSilu) {
  const KernelTable* k = kernels_for(GetParam());
  if (k == nullptr) GTEST_SKIP() << "CPU lacks " << to_string(GetParam());
  std::vector<float> gate;
  for (float x = -88.0f; x <= 88.0f; x += 0.01953125f) gate.push_back(x);
  const std::vector<float> up(gate.size(), 1.0f);
  std::vector<float> got(gate.size());
  k->swiglu(gate.data(), up.data(), got.data(), std::int64_t(gate.size()));
  for (std::size_t i = 0; i < gate.size(); ++i) {
    const double x = gate[i], want = x / (1.0 + std::exp(-x));
    ASSERT_LE(std::fabs(got[i] - want), 4.0 * FLT_EPSILON * std::fabs(want) + 1e-44) << "gate " << gate[i];
  }
}

INSTANTIATE_TEST_SUITE_P(Isa, RowKernels, ::testing::Values(CpuIsa::scalar, CpuIsa::avx2, CpuIsa::avx512),
                         [](const auto& info) { return std::string(to_string(info.param)); });

}  // namespace
}  // namespace sluice::cpu
