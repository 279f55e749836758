// Reference quantizers and dequantizers: round-trip error within each type's named bound
// (kernel_test_util.hpp), degenerate inputs stay finite, and every level's activation quantizer
// writes exactly the scalar reference's bytes.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "tests/compute/kernel_test_util.hpp"

namespace sluice::cpu {
namespace {

using test::case_label;
using test::dequantize;
using test::kWeightTypes;
using test::quantize;
using test::random_row;
using test::type_name;

constexpr std::uint64_t kRoundTripSeeds[] = {1, 2, 3};
// Below 2^-14 fp16 is subnormal: its error is absolute (<= 2^-25), so relative errors are taken
// against at least this magnitude.
constexpr double kSmallestNormalHalf = 0x1p-14;

// Largest |x| of the block around element i (the super-block for K-quants).
double block_amax(const std::vector<float>& x, std::size_t i, std::size_t block) {
  const std::size_t b0 = i / block * block;
  double m = 0.0;
  for (std::size_t k = b0; k < std::min(x.size(), b0 + block); ++k) m = std::max(m, static_cast<double>(std::fabs(x[k])));
  return m;
}

TEST(Quants, RoundTripWithinBounds) {
  for (GgmlType t : kWeightTypes) {
    const auto& bound = test::round_trip_bound(t);
    const std::size_t block = block_elements(t) == 1 ? 1 : block_elements(t);
    for (std::int64_t n : test::test_lengths(t)) {
      for (std::uint64_t seed : kRoundTripSeeds) {
        SCOPED_TRACE(case_label(t, n, seed));
        std::mt19937_64 rng(seed);
        const std::vector<float> x = random_row(rng, n, 0.02f);
        const auto q = quantize(t, x);
        const std::vector<float> y = dequantize(t, q.data(), n);
        double worst_rel = 0.0, err2 = 0.0, x2 = 0.0;
        for (std::size_t i = 0; i < x.size(); ++i) {
          ASSERT_TRUE(std::isfinite(y[i])) << "element " << i;
          const double err = std::fabs(static_cast<double>(x[i]) - y[i]);
          const double scale = block == 1 ? std::max(static_cast<double>(std::fabs(x[i])), kSmallestNormalHalf)
                                          : block_amax(x, i, block);
          if (scale > 0) worst_rel = std::max(worst_rel, err / scale);
          else ASSERT_EQ(err, 0.0) << "element " << i << " of an all-zero block";
          err2 += err * err;
          x2 += static_cast<double>(x[i]) * x[i];
        }
        const double rms_rel = std::sqrt(err2 / x2);
        EXPECT_LE(worst_rel, bound.max_rel_block) << type_name(t);
        EXPECT_LE(rms_rel, bound.rms_rel) << type_name(t);
      }
    }
  }
}

TEST(Quants, DegenerateBlocksStayFinite) {
  for (GgmlType t : kWeightTypes) {
    const std::int64_t n = block_elements(t) == 1 ? 256 : std::max<std::int64_t>(256, block_elements(t));
    const float kTiny = 1e-30f;  // below every fp16 scale: scales flush to zero
    std::vector<std::vector<float>> cases = {
        std::vector<float>(static_cast<std::size_t>(n), 0.0f),
        std::vector<float>(static_cast<std::size_t>(n), 0.75f),
        std::vector<float>(static_cast<std::size_t>(n), -3.0f),
        std::vector<float>(static_cast<std::size_t>(n), kTiny),
    };
    std::vector<float> spike(static_cast<std::size_t>(n), 0.0f);
    spike[5] = 1000.0f;
    cases.push_back(spike);
    for (std::size_t c = 0; c < cases.size(); ++c) {
      SCOPED_TRACE(std::string(type_name(t)) + " case " + std::to_string(c));
      const auto q = quantize(t, cases[c]);
      const auto y = dequantize(t, q.data(), n);
      for (std::size_t i = 0; i < y.size(); ++i) ASSERT_TRUE(std::isfinite(y[i])) << "element " << i;
      if (c == 0) {
        for (float v : y) ASSERT_EQ(v, 0.0f);
      }
    }
  }
}

TEST(Quants, ReferenceQuantizationIsDeterministic) {
  for (GgmlType t : kWeightTypes) {
    std::mt19937_64 rng(7);
    const auto x = random_row(rng, 512, 0.5f);
    EXPECT_EQ(quantize(t, x), quantize(t, x)) << type_name(t);
  }
}

// A few bytes pinned by hand from ggml's formulas, so a change of convention cannot pass
// silently through the symmetric tests above.
TEST(Quants, KnownBlocks) {
  std::vector<float> x(32);
  for (int i = 0; i < 32; ++i) x[static_cast<std::size_t>(i)] = static_cast<float>(i - 16);  // -16..15
  {
    const auto q = quantize(GgmlType::Q8_0, x);
    BlockQ8_0 b;
    std::memcpy(&b, q.data(), sizeof b);
    EXPECT_EQ(b.d, fp32_to_fp16(16.0f / 127));
    EXPECT_EQ(b.qs[0], -127);  // -16 * 127/16
    EXPECT_EQ(b.qs[16], 0);
    EXPECT_EQ(b.qs[31], 119);  // roundf(15 * 7.9375) = roundf(119.06)
  }
  {
    const auto q = quantize(GgmlType::Q4_0, x);
    BlockQ4_0 b;
    std::memcpy(&b, q.data(), sizeof b);
    EXPECT_EQ(fp16_to_fp32(b.d), 2.0f);  // max = -16 -> d = -16 / -8
    EXPECT_EQ(b.qs[0] & 0x0f, 0);        // -16 / 2 + 8.5 -> 0
    EXPECT_EQ(b.qs[0] >> 4, 8);          // element 16: 0 -> 8
    EXPECT_EQ(b.qs[15] >> 4, 15);        // element 31: 15 / 2 + 8.5 = 16 -> clamped 15
  }
  {
    // amax 16: e = floor(log2 16) - 2 + 127 = 129, d = 2^(129 - 128) = 2, so the levels are
    // 2 x {0, 1, 2, 3, 4, 6, 8, 12}: 0, 2, 4, 6, 8, 12, 16, 24 and their negatives.
    const auto q = quantize(GgmlType::MXFP4, x);
    BlockMXFP4 b;
    std::memcpy(&b, q.data(), sizeof b);
    EXPECT_EQ(b.e, 129);
    EXPECT_EQ(b.qs[0] & 0x0f, 14);  // element 0: -16 = 2 * -8 (code 14)
    EXPECT_EQ(b.qs[0] >> 4, 0);     // element 16: 0 is code 0, not code 8 (-0): first on ties
    EXPECT_EQ(b.qs[2] & 0x0f, 13);  // element 2: -14 ties -12 (code 13) and -16 (code 14): first
    EXPECT_EQ(b.qs[10] >> 4, 4);    // element 26: 10 ties 8 (code 4) and 12 (code 5): first
    EXPECT_EQ(b.qs[15] >> 4, 6);    // element 31: 15 -> 16 (code 6); 24 is further
    const auto y = dequantize(GgmlType::MXFP4, q.data(), 32);
    EXPECT_EQ(y[0], -16.0f);
    EXPECT_EQ(y[2], -12.0f);
    EXPECT_EQ(y[26], 8.0f);
    EXPECT_EQ(y[31], 16.0f);
  }
  {
    // amax below 2^-125: floor(log2 amax) - 2 + 127 is negative, and ggml's float -> uint8_t
    // cast keeps the low byte on x86 (gguf-py's numpy cast too): 1e-40 gives -8 -> 248. The
    // block then decodes to zeros; pinned so that the convention cannot drift from theirs.
    const auto q = quantize(GgmlType::MXFP4, std::vector<float>(32, 1e-40f));
    EXPECT_EQ(q[0], 248);
    const auto zero = quantize(GgmlType::MXFP4, std::vector<float>(32, 0.0f));
    EXPECT_EQ(zero[0], 0);
  }
}

class ActivationQuantizer : public ::testing::TestWithParam<CpuIsa> {};

TEST_P(ActivationQuantizer, MatchesScalarBytes) {
  const CpuIsa isa = GetParam();
  const KernelTable* k = kernels_for(isa);
  if (k == nullptr) GTEST_SKIP() << "CPU lacks " << to_string(isa);
  const KernelTable& ref = *kernels_for(CpuIsa::scalar);
  for (GgmlType act : {GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0, GgmlType::Q8_1, GgmlType::Q8_K}) {
    const std::int64_t block = block_elements(act);
    for (std::int64_t n : {block * 1, block * 3, block * 17, std::max<std::int64_t>(block, 256) * 17 + (block == 1 ? 5 : 0)}) {
      for (std::uint64_t seed : {11u, 12u}) {
        SCOPED_TRACE(case_label(act, n, seed) + " isa=" + to_string(isa));
        std::mt19937_64 rng(seed);
        std::vector<float> x = random_row(rng, n, seed == 11 ? 1.0f : 3e-3f);
        // Exact ties for roundf and for round-to-even: multiples of half a step.
        if (n >= 64) {
          for (int i = 32; i < 48; ++i) x[static_cast<std::size_t>(i)] = static_cast<float>(i - 40) * 0.5f;
        }
        std::vector<std::uint8_t> want(row_bytes(act, n)), got(row_bytes(act, n));
        ref.quantize_activation[type_slot(act)](x.data(), want.data(), n);
        k->quantize_activation[type_slot(act)](x.data(), got.data(), n);
        ASSERT_EQ(got, want);
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Isa, ActivationQuantizer, ::testing::Values(CpuIsa::avx2, CpuIsa::avx512),
                         [](const auto& info) { return std::string(to_string(info.param)); });

// Activations go through llama.cpp's x86 quantizer, not ggml's reference: id = 127 / amax and
// round half to even (the reference rounds half away from zero). amax 127 gives id 1 exactly,
// so 2.5 and -3.5 are ties: 2 and -4 here, 3 and -4 for the weight quantizer.
TEST(Quants, ActivationQuantizerIsLlamaCppsX86) {
  std::vector<float> x(32, 0.0f);
  x[0] = 127.0f;
  x[1] = 2.5f;
  x[2] = -3.5f;
  for (const KernelTable* k : {kernels_for(CpuIsa::scalar), kernels_for(CpuIsa::avx2), kernels_for(CpuIsa::avx512)}) {
    if (k == nullptr) continue;
    BlockQ8_0 b;
    k->quantize_activation[type_slot(GgmlType::Q8_0)](x.data(), &b, 32);
    EXPECT_EQ(b.qs[0], 127) << to_string(k->isa);
    EXPECT_EQ(b.qs[1], 2) << to_string(k->isa);
    EXPECT_EQ(b.qs[2], -4) << to_string(k->isa);
    BlockQ8_1 b1;
    k->quantize_activation[type_slot(GgmlType::Q8_1)](x.data(), &b1, 32);
    EXPECT_EQ(b1.qs[1], 2) << to_string(k->isa);
    EXPECT_EQ(b1.s, fp32_to_fp16(1.0f * float(127 + 2 - 4))) << to_string(k->isa);
  }
  const auto weights = quantize(GgmlType::Q8_0, x);
  BlockQ8_0 w;
  std::memcpy(&w, weights.data(), sizeof w);
  EXPECT_EQ(w.qs[1], 3);
}

// Rows that reach every branch of the Q4_K/Q5_K scale search, one 32-element sub-block at a
// time: random rows at several magnitudes, then constant (positive, negative, zero), a single
// spike, all-positive ramps, subnormals and near-overflow values mixed into super-blocks.
std::vector<float> k4_search_rows(std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<float> x;
  for (float scale : {1e-3f, 0.02f, 1.0f, 3e4f}) {
    const auto r = random_row(rng, 4096, scale);
    x.insert(x.end(), r.begin(), r.end());
  }
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (int pattern = 0; pattern < 64; ++pattern) {
    for (int sub = 0; sub < 8; ++sub) {
      const int kind = (pattern + sub * 3) % 9;
      for (int i = 0; i < 32; ++i) {
        float v = u(rng);
        switch (kind) {
          case 0: v = 0.75f; break;                        // constant positive
          case 1: v = -2.5f; break;                        // constant negative: max == min
          case 2: v = 0.0f; break;                         // all zero
          case 3: v = i == 7 ? 5.0f : 0.0f; break;         // one spike
          case 4: v = 1.0f + 0.01f * float(i); break;      // all positive
          case 5: v *= 1e-40f; break;                      // subnormal
          case 6: v *= 1e30f; break;                       // huge
          case 7: v = float(i % 4) - 1.5f; break;          // few levels
          default: break;                                  // uniform, as synth makes
        }
        x.push_back(v);
      }
    }
  }
  return x;
}

class WeightQuantizer : public ::testing::TestWithParam<CpuIsa> {};

TEST_P(WeightQuantizer, SameBytesAsTheReference) {
  const KernelTable* k = kernels_for(GetParam());
  if (k == nullptr) GTEST_SKIP() << "CPU lacks " << to_string(GetParam());
  for (GgmlType t : {GgmlType::Q4_K, GgmlType::Q5_K}) {
    const QuantizeFn fast = k->quantize_weights[type_slot(t)];
    ASSERT_NE(fast, nullptr) << type_name(t) << " has no " << to_string(GetParam()) << " weight quantizer";
    for (std::uint64_t seed : {1, 2}) {
      const std::vector<float> x = k4_search_rows(seed);
      const auto n = static_cast<std::int64_t>(x.size());
      const auto want = quantize(t, x);
      std::vector<std::uint8_t> got(want.size());
      fast(x.data(), got.data(), n);
      const std::size_t block_bytes = row_bytes(t, kQK_K);
      for (std::size_t b = 0; b < want.size() / block_bytes; ++b) {
        ASSERT_EQ(0, std::memcmp(want.data() + b * block_bytes, got.data() + b * block_bytes, block_bytes))
            << type_name(t) << " seed " << seed << ": super-block " << b << " (elements " << b * kQK_K << "..)";
      }
    }
  }
  // The public entry point gives the reference's bytes whatever level is active.
  const std::vector<float> x = k4_search_rows(3);
  const auto want = quantize(GgmlType::Q4_K, x);
  std::vector<std::uint8_t> got(want.size());
  quantize_row_weights(GgmlType::Q4_K, x.data(), got.data(), static_cast<std::int64_t>(x.size()));
  EXPECT_EQ(want, got);
}

INSTANTIATE_TEST_SUITE_P(Isa, WeightQuantizer, ::testing::Values(CpuIsa::avx2, CpuIsa::avx512),
                         [](const auto& info) { return std::string(to_string(info.param)); });

TEST(Quants, ActivationRoundTrip) {
  // Q8_0/Q8_1: half a step of amax/127 plus the fp16 scale; Q8_K: half a step, fp32 scale.
  constexpr double kQ8BlockBound = 0.5 / 127 + 1.0 / 1024;
  for (GgmlType act : {GgmlType::Q8_0, GgmlType::Q8_1, GgmlType::Q8_K}) {
    std::mt19937_64 rng(21);
    const std::int64_t n = 4096 + 256;
    const auto x = random_row(rng, n);
    const auto q = test::quantize_act(act, x);
    const auto y = dequantize(act, q.data(), n);
    const std::size_t block = block_elements(act);
    for (std::size_t i = 0; i < x.size(); ++i) {
      ASSERT_LE(std::fabs(static_cast<double>(x[i]) - y[i]), kQ8BlockBound * block_amax(x, i, block))
          << type_name(act) << " element " << i;
    }
  }
}

}  // namespace
}  // namespace sluice::cpu
