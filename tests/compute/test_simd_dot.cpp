// Every SIMD dot product against the scalar reference: within dot_rounding_bound (integer block
// sums are exact; only the float accumulation order differs), at odd row counts and every test
// length; and each level's tile kernel (several activation rows) equal, bit for bit, to its
// single-row kernel. On failure the type, length, seed and row are printed.
#include <gtest/gtest.h>

#include "tests/compute/kernel_test_util.hpp"

namespace sluice::cpu {
namespace {

using test::case_label;
using test::kWeightTypes;
using test::type_name;

constexpr int kRows = 13;  // odd, and not a multiple of any tile or cache block
constexpr std::uint64_t kSeeds[] = {101, 102};

struct DotCase {
  std::vector<std::vector<std::uint8_t>> weights;  // kRows quantized rows
  std::vector<std::vector<std::uint8_t>> acts;     // activation rows in the vec_dot type
  std::vector<std::vector<float>> w_values;        // dequantized, for the magnitude
  std::vector<std::vector<float>> a_values;
};

DotCase make_case(GgmlType t, std::int64_t n, std::uint64_t seed, int n_acts) {
  std::mt19937_64 rng(seed);
  DotCase c;
  const GgmlType act_type = vec_dot_type(t);
  for (int r = 0; r < kRows; ++r) {
    const auto w = test::random_row(rng, n, 0.02f);
    c.weights.push_back(test::quantize(t, w));
    c.w_values.push_back(test::dequantize(t, c.weights.back().data(), n));
  }
  for (int a = 0; a < n_acts; ++a) {
    const auto x = test::random_row(rng, n, 1.5f);
    c.acts.push_back(test::quantize_act(act_type, x));
    c.a_values.push_back(act_type == GgmlType::F32 ? x : test::dequantize(act_type, c.acts.back().data(), n));
  }
  return c;
}

class SimdDot : public ::testing::TestWithParam<CpuIsa> {};

TEST_P(SimdDot, MatchesScalarWithinBound) {
  const CpuIsa isa = GetParam();
  const KernelTable* k = kernels_for(isa);
  if (k == nullptr) GTEST_SKIP() << "CPU lacks " << to_string(isa);
  for (GgmlType t : kWeightTypes) {
    EXPECT_TRUE(has_native_vec_dot(isa, t)) << type_name(t) << " falls back to scalar at " << to_string(isa);
    for (std::int64_t n : test::test_lengths(t)) {
      for (std::uint64_t seed : kSeeds) {
        SCOPED_TRACE(case_label(t, n, seed) + " isa=" + to_string(isa));
        const DotCase c = make_case(t, n, seed, 2);
        for (int r = 0; r < kRows; ++r) {
          for (std::size_t a = 0; a < c.acts.size(); ++a) {
            const float want = vec_dot(t, n, c.weights[r].data(), c.acts[a].data());  // scalar reference
            const float got = k->vec_dot[type_slot(t)](n, c.weights[r].data(), c.acts[a].data());
            const double bound = test::dot_rounding_bound(n, test::dot_magnitude(c.w_values[r], c.a_values[a]));
            ASSERT_LE(std::fabs(static_cast<double>(got) - want), bound)
                << "row " << r << " act " << a << " want " << want << " got " << got;
          }
        }
      }
    }
  }
}

TEST_P(SimdDot, TileEqualsSingleRowExactly) {
  const CpuIsa isa = GetParam();
  const KernelTable* k = kernels_for(isa);
  if (k == nullptr) GTEST_SKIP() << "CPU lacks " << to_string(isa);
  for (GgmlType t : kWeightTypes) {
    const VecDotMultiFn multi = k->vec_dot_multi[type_slot(t)];
    if (multi == nullptr) continue;  // the matmul then loops over the single-row kernel
    const std::int64_t n = test::test_lengths(t).back();
    SCOPED_TRACE(case_label(t, n, kSeeds[0]) + " isa=" + to_string(isa));
    const DotCase c = make_case(t, n, kSeeds[0], kMaxTileActs);
    const std::size_t act_bytes = c.acts[0].size();
    std::vector<std::uint8_t> packed;
    for (const auto& a : c.acts) packed.insert(packed.end(), a.begin(), a.end());
    for (int n_acts = 1; n_acts <= kMaxTileActs; ++n_acts) {
      constexpr std::size_t kOutStride = 3;  // outputs strided, as in the matmul's y layout
      std::vector<float> out(kOutStride * kMaxTileActs, -1.0f);
      multi(n, c.weights[0].data(), packed.data(), act_bytes, n_acts, out.data(), kOutStride);
      for (int a = 0; a < n_acts; ++a) {
        const float single = k->vec_dot[type_slot(t)](n, c.weights[0].data(), c.acts[a].data());
        ASSERT_EQ(out[a * kOutStride], single) << "n_acts " << n_acts << " act " << a;
      }
    }
  }
}

// MXFP4 blocks as no quantizer writes them: every code in every position (code 8, -0, which the
// quantizer never picks, among them) and exponents over a wide range, against the scalar kernel.
TEST_P(SimdDot, MXFP4RawBlocksMatchScalar) {
  const CpuIsa isa = GetParam();
  const KernelTable* k = kernels_for(isa);
  if (k == nullptr) GTEST_SKIP() << "CPU lacks " << to_string(isa);
  constexpr std::int64_t n = 32 * 37;
  // 2^(e - 128) from 2^-28 to 2^12: products with the activations stay far from overflow.
  constexpr int kMinExponent = 100, kMaxExponent = 140;
  for (std::uint64_t seed : kSeeds) {
    SCOPED_TRACE(case_label(GgmlType::MXFP4, n, seed) + " isa=" + to_string(isa));
    std::mt19937_64 rng(seed);
    std::uniform_int_distribution<int> exponent(kMinExponent, kMaxExponent);
    for (int r = 0; r < kRows; ++r) {
      std::vector<BlockMXFP4> w(n / kQK_MXFP4);
      for (BlockMXFP4& b : w) {
        b.e = static_cast<std::uint8_t>(exponent(rng));
        for (auto& q : b.qs) q = static_cast<std::uint8_t>(rng());
      }
      const auto x = test::random_row(rng, n, 1.5f);
      const auto act = test::quantize_act(GgmlType::Q8_0, x);
      const float want = vec_dot(GgmlType::MXFP4, n, w.data(), act.data());
      const float got = k->vec_dot[type_slot(GgmlType::MXFP4)](n, w.data(), act.data());
      const double bound = test::dot_rounding_bound(
          n, test::dot_magnitude(test::dequantize(GgmlType::MXFP4, w.data(), n), test::dequantize(GgmlType::Q8_0, act.data(), n)));
      ASSERT_LE(std::fabs(static_cast<double>(got) - want), bound) << "row " << r << " want " << want << " got " << got;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Isa, SimdDot, ::testing::Values(CpuIsa::avx2, CpuIsa::avx512),
                         [](const auto& info) { return std::string(to_string(info.param)); });

}  // namespace
}  // namespace sluice::cpu
