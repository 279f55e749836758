// The __host__ __device__ block routines of compute/cuda/quant_common.cuh, run on the CPU against
// compute/cpu's scalar reference: dequantization, activation quantization and the row dot
// products bit for bit; the GEMV kernels' unit decomposition (and their warp summation order)
// within gemv_dot_bound. Compiled by the host compiler, so it runs in every build, GPU or not.
// Inputs are seeded (the seed is in every failure message): reference-quantized rows with the
// shapes of real weights, and random raw blocks that reach bit patterns quantizers never write.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "compute/cpu/quants.hpp"
#include "compute/cuda/quant_traits.cuh"
#include "tests/compute/cuda_test_util.hpp"
#include "tests/compute/kernel_test_util.hpp"

namespace sluice::cuda {
namespace {

using cpu::test::random_row;
using test::kCudaWeightTypes;
using test::random_blocks;
using test::type_name;

constexpr std::uint64_t kSeeds[] = {11, 12, 13, 14};

std::uint32_t bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

// Row lengths at block-alignment edges (one block, odd block counts, past 4096).
std::vector<std::int64_t> lengths(GgmlType t) {
  const std::uint32_t block = cpu::block_elements(t);
  if (block == 1) return {1, 31, 33, 1000, 4099};
  if (block == 32) return {32, 32 * 7, 32 * 37, 4096 + 32 * 5};
  return {256, 256 * 3, 4096 + 256};
}

std::string label(GgmlType t, std::int64_t n, std::uint64_t seed, const char* source) {
  return std::string(type_name(t)) + " n=" + std::to_string(n) + " seed=" + std::to_string(seed) + " " + source;
}

// Weight rows of a type from two sources: the reference quantizer and random raw blocks.
struct WeightRow {
  const char* source;
  std::vector<std::uint8_t> bytes;
};
std::vector<WeightRow> weight_rows(GgmlType t, std::int64_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  const std::vector<float> x = random_row(rng, n, 0.02f);
  std::vector<WeightRow> rows;
  rows.push_back({"quantized", cpu::test::quantize(t, x)});
  rows.push_back({"raw", random_blocks(t, n, rng)});
  return rows;
}

// ---- conversions ---------------------------------------------------------------------------------

TEST(CudaHostConversions, Fp16ToFp32EveryHalf) {
  for (std::uint32_t h = 0; h < 65536; ++h) {
    const float want = cpu::fp16_to_fp32(static_cast<std::uint16_t>(h));
    const float got = quant::fp16_to_fp32(static_cast<std::uint16_t>(h));
    ASSERT_EQ(bits(got), bits(want)) << "half 0x" << std::hex << h;
  }
}

TEST(CudaHostConversions, Fp32ToHalfAndBf16) {
  std::mt19937_64 rng(kSeeds[0]);
  std::uniform_int_distribution<std::uint32_t> any_bits;
  std::vector<float> inputs = {0.0f, -0.0f, 1.0f, 65504.0f, 65520.0f, 0x1p-24f, 0x1p-25f, 0x1.8p-25f,
                               std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                               std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::denorm_min()};
  constexpr int kRandomInputs = 200000;
  for (int i = 0; i < kRandomInputs; ++i) {
    const std::uint32_t u = any_bits(rng);
    float f;
    std::memcpy(&f, &u, sizeof f);
    inputs.push_back(f);
  }
  for (float f : inputs) {
    ASSERT_EQ(quant::fp32_to_fp16(f), cpu::fp32_to_fp16(f)) << "bits 0x" << std::hex << bits(f);
    ASSERT_EQ(quant::fp32_to_bf16(f), cpu::fp32_to_bf16(f)) << "bits 0x" << std::hex << bits(f);
  }
  for (std::uint32_t h = 0; h < 65536; ++h) {
    ASSERT_EQ(bits(quant::bf16_to_fp32(static_cast<std::uint16_t>(h))), bits(cpu::bf16_to_fp32(static_cast<std::uint16_t>(h))));
  }
}

TEST(CudaHostConversions, RoundToIntIsNearestEven) {
  const float cases[] = {0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -2.5f, 126.5f, -127.49f, 127.0f, 0.49999997f};
  for (float x : cases) EXPECT_EQ(quant::round_to_int(x), static_cast<int>(std::nearbyint(x))) << x;
}

// ---- dequantization ------------------------------------------------------------------------------

TEST(CudaHostDequantize, BitExactWithCpu) {
  for (GgmlType t : kCudaWeightTypes) {
    for (std::int64_t n : lengths(t)) {
      for (std::uint64_t seed : kSeeds) {
        for (const WeightRow& row : weight_rows(t, n, seed)) {
          SCOPED_TRACE(label(t, n, seed, row.source));
          std::vector<float> want(static_cast<std::size_t>(n)), got(static_cast<std::size_t>(n), -1.0f);
          cpu::dequantize_row(t, row.bytes.data(), want.data(), n);
          ASSERT_TRUE(quant::dequantize_row(t, row.bytes.data(), got.data(), n));
          for (std::size_t i = 0; i < want.size(); ++i) {
            ASSERT_EQ(bits(got[i]), bits(want[i])) << "element " << i << ": " << got[i] << " vs " << want[i];
            // The fp16 the dequantize-for-cuBLAS path writes.
            ASSERT_EQ(quant::fp32_to_fp16(got[i]), cpu::fp32_to_fp16(want[i])) << "element " << i;
          }
        }
      }
    }
  }
}

TEST(CudaHostDequantize, ActivationTypesBitExact) {
  for (GgmlType t : {GgmlType::Q8_0, GgmlType::Q8_1, GgmlType::Q8_K}) {
    for (std::uint64_t seed : kSeeds) {
      constexpr std::int64_t n = 1024;
      SCOPED_TRACE(label(t, n, seed, "raw"));
      std::mt19937_64 rng(seed);
      const auto bytes = random_blocks(t, n, rng);
      std::vector<float> want(n), got(n);
      cpu::dequantize_row(t, bytes.data(), want.data(), n);
      ASSERT_TRUE(quant::dequantize_row(t, bytes.data(), got.data(), n));
      for (std::int64_t i = 0; i < n; ++i) ASSERT_EQ(bits(got[i]), bits(want[i])) << "element " << i;
    }
  }
}

// ---- activation quantization ---------------------------------------------------------------------

// Rows with the corner cases of the scale choice: zero blocks, a +-amax tie (Q8_K takes the sign
// of the first), a block whose largest value is negative, subnormals and large values.
std::vector<float> activation_row(std::mt19937_64& rng, std::int64_t n) {
  std::vector<float> x = random_row(rng, n, 1.0f);
  if (n >= 512) {
    for (int i = 0; i < 256; ++i) x[i] = 0.0f;         // a zero Q8_K block
    x[300] = -7.5f;                                     // ties in the second super-block:
    x[301] = 7.5f;                                      // -7.5 comes first and sets the sign
    x[260] = 1e-40f;                                    // subnormal
    x[400] = 3.0e4f;                                    // a large activation (Gemma-style)
  }
  return x;
}

TEST(CudaHostActivations, QuantizeBitExactWithCpu) {
  for (GgmlType act : {GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0, GgmlType::Q8_1, GgmlType::Q8_K}) {
    for (std::int64_t n : {256, 512 + 256, 4096 + 256}) {
      for (std::uint64_t seed : kSeeds) {
        SCOPED_TRACE(label(act, n, seed, "activations"));
        std::mt19937_64 rng(seed);
        const std::vector<float> x = activation_row(rng, n);
        const std::vector<std::uint8_t> want = cpu::test::quantize_act(act, x);
        std::vector<std::uint8_t> got(want.size(), 0xAB);
        ASSERT_TRUE(quant::quantize_activation_row(act, x.data(), got.data(), n));
        for (std::size_t i = 0; i < want.size(); ++i) ASSERT_EQ(got[i], want[i]) << "byte " << i;
      }
    }
  }
}

// ---- dot products ----------------------------------------------------------------------------------

// The unit terms of a row, in unit order (what the GEMV lanes pick up).
struct UnitTerms {
  std::int64_t n;
  const void* w;
  const void* a;
  std::vector<float>* out;
  template <GgmlType T>
  void run() {
    using Tr = quant::TypeTraits<T>;
    const auto* x = static_cast<const typename Tr::Block*>(w);
    const auto* y = static_cast<const typename Tr::ActBlock*>(a);
    for (std::int64_t u = 0; u < n / Tr::kUnitElems; ++u) {
      out->push_back(quant::unit_dot(x[u / Tr::kUnitsPerBlock], y[u / Tr::kUnitsPerBlock],
                                     static_cast<int>(u % Tr::kUnitsPerBlock)));
    }
  }
};

struct DotCase {
  std::vector<std::uint8_t> w;
  std::vector<std::uint8_t> a;
  const char* source;
};

std::vector<DotCase> dot_cases(GgmlType t, std::int64_t n, std::uint64_t seed) {
  const GgmlType act = cpu::vec_dot_type(t);
  std::vector<DotCase> cases;
  for (WeightRow& row : weight_rows(t, n, seed)) {
    std::mt19937_64 rng(seed * 7919 + 1);
    const std::vector<float> x = activation_row(rng, n);
    cases.push_back({std::move(row.bytes), cpu::test::quantize_act(act, x), row.source});
  }
  return cases;
}

TEST(CudaHostDot, RowDotBitExactWithCpu) {
  for (GgmlType t : kCudaWeightTypes) {
    for (std::int64_t n : lengths(t)) {
      for (std::uint64_t seed : kSeeds) {
        for (const DotCase& c : dot_cases(t, n, seed)) {
          SCOPED_TRACE(label(t, n, seed, c.source));
          const float want = cpu::vec_dot(t, n, c.w.data(), c.a.data());
          float got = 0.0f;
          ASSERT_TRUE(quant::vec_dot_row(t, n, c.w.data(), c.a.data(), &got));
          ASSERT_EQ(bits(got), bits(want)) << got << " vs " << want;
        }
      }
    }
  }
}

// The decomposition the GEMV kernels use (unit terms; warp order) against the CPU within the
// named bound; also that the bound is not vacuous (it is a small fraction of the magnitude).
TEST(CudaHostDot, UnitTermsWithinBound) {
  for (GgmlType t : kCudaWeightTypes) {
    double worst = 0.0;  // largest error / bound seen, printed to show the bound's headroom
    for (std::int64_t n : lengths(t)) {
      for (std::uint64_t seed : kSeeds) {
        for (const DotCase& c : dot_cases(t, n, seed)) {
          SCOPED_TRACE(label(t, n, seed, c.source));
          const GgmlType act = cpu::vec_dot_type(t);
          const float want = cpu::vec_dot(t, n, c.w.data(), c.a.data());
          const double magnitude = test::dot_terms_magnitude(t, c.w.data(), act, c.a.data(), n);
          const double bound = test::gemv_dot_bound(n, magnitude);
          ASSERT_LT(bound, 1e-3 * magnitude + 1e-30);

          float serial = 0.0f;
          ASSERT_TRUE(quant::unit_sum_row(t, n, c.w.data(), c.a.data(), &serial));
          EXPECT_LE(std::fabs(double(serial) - want), bound) << "serial unit sum " << serial << " vs " << want;

          // The same terms in the warp order.
          std::vector<float> terms;
          ASSERT_TRUE(quant::dispatch_weight_type(t, UnitTerms{n, c.w.data(), c.a.data(), &terms}));
          const float warp = test::warp_order_sum(terms);
          EXPECT_LE(std::fabs(double(warp) - want), bound) << "warp-order sum " << warp << " vs " << want;
          if (bound > 0) worst = std::max({worst, std::fabs(double(serial) - want) / bound, std::fabs(double(warp) - want) / bound});
        }
      }
    }
    std::printf("%-5s unit-term dots: worst error / gemv_dot_bound = %.4f\n", type_name(t), worst);
  }
}

// The legacy types' unit term is the CPU's block term exactly, so a one-block row agrees bit for bit.
TEST(CudaHostDot, LegacyUnitIsTheCpuBlockTerm) {
  for (GgmlType t : {GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0}) {
    for (std::uint64_t seed : kSeeds) {
      for (const DotCase& c : dot_cases(t, 32, seed)) {
        SCOPED_TRACE(label(t, 32, seed, c.source));
        float got = 0.0f;
        ASSERT_TRUE(quant::unit_sum_row(t, 32, c.w.data(), c.a.data(), &got));
        ASSERT_EQ(bits(got), bits(cpu::vec_dot(t, 32, c.w.data(), c.a.data())));
      }
    }
  }
}

}  // namespace
}  // namespace sluice::cuda
