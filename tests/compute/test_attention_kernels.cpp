// The attention kernels (attention_kernels.hpp) of each SIMD level against the scalar reference,
// at head sizes that are and are not multiples of the vector width and key counts around the
// four-key step; and the properties attend() relies on for batch == sequential: a key's score
// does not depend on how many keys share the call, a value sum split across calls is the same
// bits, and the weights are rounded to fp16 inside the kernel.
#include <gtest/gtest.h>

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

class AttentionKernels : public ::testing::TestWithParam<CpuIsa> {};

TEST_P(AttentionKernels, MatchTheScalarReference) {
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

TEST_P(AttentionKernels, BitsDoNotDependOnHowKeysAreGrouped) {
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

TEST_P(AttentionKernels, RoundTheWeightsToHalf) {
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

INSTANTIATE_TEST_SUITE_P(Isa, AttentionKernels, ::testing::Values(CpuIsa::scalar, CpuIsa::avx2, CpuIsa::avx512),
                         [](const auto& info) { return std::string(to_string(info.param)); });

}  // namespace
}  // namespace sluice::cpu
