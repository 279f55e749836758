// Block layouts and the scalar fp16/bf16 conversions: sizes pinned against ggml's numbers, every
// one of the 65536 half and bfloat16 values converted both ways, round-to-nearest-even checked at
// every midpoint, and fp16 checked bit for bit against the F16C instructions ggml uses on x86.
#include <gtest/gtest.h>
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <random>

#include "compute/cpu/blocks.hpp"
#include "compute/cpu/quants.hpp"

namespace sluice::cpu {
namespace {

constexpr std::uint32_t kHalfCount = 1u << 16;

TEST(Blocks, SizesMatchGgml) {
  // ggml-common.h sizes (bytes per block).
  EXPECT_EQ(sizeof(BlockQ4_0), 18u);
  EXPECT_EQ(sizeof(BlockQ4_1), 20u);
  EXPECT_EQ(sizeof(BlockQ5_0), 22u);
  EXPECT_EQ(sizeof(BlockQ5_1), 24u);
  EXPECT_EQ(sizeof(BlockQ8_0), 34u);
  EXPECT_EQ(sizeof(BlockQ8_1), 36u);
  EXPECT_EQ(sizeof(BlockQ2_K), 84u);
  EXPECT_EQ(sizeof(BlockQ3_K), 110u);
  EXPECT_EQ(sizeof(BlockQ4_K), 144u);
  EXPECT_EQ(sizeof(BlockQ5_K), 176u);
  EXPECT_EQ(sizeof(BlockQ6_K), 210u);
  EXPECT_EQ(sizeof(BlockQ8_K), 292u);
  EXPECT_EQ(sizeof(BlockMXFP4), 17u);
  // Offsets that readers of raw bytes depend on.
  EXPECT_EQ(offsetof(BlockQ2_K, d), 80u);
  EXPECT_EQ(offsetof(BlockQ3_K, d), 108u);
  EXPECT_EQ(offsetof(BlockQ4_K, qs), 16u);
  EXPECT_EQ(offsetof(BlockQ5_K, qs), 48u);
  EXPECT_EQ(offsetof(BlockQ6_K, d), 208u);
  EXPECT_EQ(offsetof(BlockQ8_K, bsums), 260u);
  EXPECT_EQ(offsetof(BlockMXFP4, qs), 1u);
}

TEST(Blocks, RowBytesAndVecDotTypes) {
  EXPECT_EQ(row_bytes(GgmlType::Q4_0, 4096), 4096u / 32 * 18);
  EXPECT_EQ(row_bytes(GgmlType::Q6_K, 4096), 4096u / 256 * 210);
  EXPECT_EQ(row_bytes(GgmlType::F16, 7), 14u);
  EXPECT_EQ(row_bytes(GgmlType::BF16, 7), 14u);
  EXPECT_EQ(row_bytes(GgmlType::MXFP4, 2880), 2880u / 32 * 17);  // a gpt-oss expert row
  EXPECT_EQ(vec_dot_type(GgmlType::F32), GgmlType::F32);
  EXPECT_EQ(vec_dot_type(GgmlType::F16), GgmlType::F16);
  EXPECT_EQ(vec_dot_type(GgmlType::BF16), GgmlType::BF16);
  EXPECT_EQ(vec_dot_type(GgmlType::Q4_0), GgmlType::Q8_0);
  EXPECT_EQ(vec_dot_type(GgmlType::Q5_0), GgmlType::Q8_0);
  EXPECT_EQ(vec_dot_type(GgmlType::Q8_0), GgmlType::Q8_0);
  EXPECT_EQ(vec_dot_type(GgmlType::Q4_1), GgmlType::Q8_1);
  EXPECT_EQ(vec_dot_type(GgmlType::Q5_1), GgmlType::Q8_1);
  EXPECT_EQ(vec_dot_type(GgmlType::MXFP4), GgmlType::Q8_0);  // as ggml's type_traits_cpu
  for (GgmlType t : {GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K}) {
    EXPECT_EQ(vec_dot_type(t), GgmlType::Q8_K);
  }
  EXPECT_FALSE(is_weight_type(GgmlType::Q8_K));
  EXPECT_FALSE(is_weight_type(GgmlType::Q8_1));
  EXPECT_TRUE(is_weight_type(GgmlType::Q6_K));
  EXPECT_TRUE(is_weight_type(GgmlType::MXFP4));
}

// Every E8M0 byte against 2^(e - 128) computed with ldexp, the subnormal (e = 0, 1) and top
// (e = 254, 255) bytes among them; ggml and gguf-py read 255 as 2^127, not as the spec's NaN.
TEST(Blocks, E8M0HalfScaleIsExactForEveryByte) {
  for (int e = 0; e < 256; ++e) {
    const float want = std::ldexp(1.0f, e - 128);
    ASSERT_EQ(e8m0_to_fp32_half(static_cast<std::uint8_t>(e)), want) << "e = " << e;
  }
  EXPECT_EQ(e8m0_to_fp32_half(0), 0x1p-128f);
  EXPECT_EQ(e8m0_to_fp32_half(127), 0.5f);
  EXPECT_EQ(e8m0_to_fp32_half(128), 1.0f);
  EXPECT_EQ(e8m0_to_fp32_half(255), 0x1p127f);
}

// The value of a finite half computed independently of the converter under test.
double half_value(std::uint16_t h) {
  const int sign = (h & 0x8000) ? -1 : 1;
  const int exponent = (h >> 10) & 0x1f;
  const int mantissa = h & 0x3ff;
  if (exponent == 0) return sign * std::ldexp(static_cast<double>(mantissa), -24);
  return sign * std::ldexp(static_cast<double>(1024 + mantissa), exponent - 25);
}

TEST(Fp16, ExhaustiveToFloat) {
  for (std::uint32_t h = 0; h < kHalfCount; ++h) {
    const std::uint16_t bits = static_cast<std::uint16_t>(h);
    const float f = fp16_to_fp32(bits);
    const int exponent = (h >> 10) & 0x1f;
    const int mantissa = h & 0x3ff;
    if (exponent == 0x1f && mantissa != 0) {
      ASSERT_TRUE(std::isnan(f)) << "half 0x" << std::hex << h;
      ASSERT_EQ(std::signbit(f), (h & 0x8000) != 0) << "half 0x" << std::hex << h;
      ASSERT_EQ((float_bits(f) >> 13) & 0x1ff, static_cast<std::uint32_t>(mantissa & 0x1ff)) << "payload, half 0x" << std::hex << h;
    } else if (exponent == 0x1f) {
      ASSERT_TRUE(std::isinf(f)) << "half 0x" << std::hex << h;
      ASSERT_EQ(std::signbit(f), (h & 0x8000) != 0);
    } else {
      ASSERT_EQ(static_cast<double>(f), half_value(bits)) << "half 0x" << std::hex << h;
      ASSERT_EQ(std::signbit(f), (h & 0x8000) != 0) << "half 0x" << std::hex << h;
    }
  }
}

TEST(Fp16, ExhaustiveRoundTripAndMidpoints) {
  for (std::uint32_t h = 0; h < kHalfCount; ++h) {
    const std::uint16_t bits = static_cast<std::uint16_t>(h);
    const float f = fp16_to_fp32(bits);
    if (std::isnan(f)) {
      ASSERT_EQ(fp32_to_fp16(f), static_cast<std::uint16_t>((h & 0x8000) | 0x7e00)) << "half 0x" << std::hex << h;
      continue;
    }
    ASSERT_EQ(fp32_to_fp16(f), bits) << "half 0x" << std::hex << h;
    // Midpoint to the next half of larger magnitude (exact in fp32): ties go to the even one,
    // anything above or below goes to the nearer.
    if ((h & 0x7fff) >= 0x7bff) continue;  // 65504 and inf: no finite successor
    const std::uint16_t next = static_cast<std::uint16_t>(bits + 1);
    const float mid = static_cast<float>((static_cast<double>(f) + static_cast<double>(fp16_to_fp32(next))) / 2);
    const std::uint16_t even = (bits & 1) ? next : bits;
    ASSERT_EQ(fp32_to_fp16(mid), even) << "midpoint after half 0x" << std::hex << h;
    ASSERT_EQ(fp32_to_fp16(std::nextafter(mid, 0.0f)), bits) << "below midpoint after 0x" << std::hex << h;
    ASSERT_EQ(fp32_to_fp16(std::nextafter(mid, 2 * mid)), next) << "above midpoint after 0x" << std::hex << h;
  }
  // Overflow: 65520 is the midpoint between 65504 and the next power of two: rounds to inf.
  EXPECT_EQ(fp32_to_fp16(65519.996f), 0x7bff);
  EXPECT_EQ(fp32_to_fp16(65520.0f), 0x7c00);
  EXPECT_EQ(fp32_to_fp16(-1e30f), 0xfc00);
  // Below half the smallest subnormal: zero (with sign).
  EXPECT_EQ(fp32_to_fp16(std::ldexp(1.0f, -25)), 0x0000);
  EXPECT_EQ(fp32_to_fp16(std::nextafter(std::ldexp(1.0f, -25), 1.0f)), 0x0001);
  EXPECT_EQ(fp32_to_fp16(-1e-30f), 0x8000);
}

[[gnu::target("f16c")]] std::uint16_t hw_fp32_to_fp16(float f) {
  return static_cast<std::uint16_t>(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT));
}
[[gnu::target("f16c")]] float hw_fp16_to_fp32(std::uint16_t h) { return _cvtsh_ss(h); }

TEST(Fp16, MatchesF16cInstructions) {
  if (!__builtin_cpu_supports("f16c")) GTEST_SKIP() << "CPU lacks F16C";
  for (std::uint32_t h = 0; h < kHalfCount; ++h) {
    const std::uint16_t bits = static_cast<std::uint16_t>(h);
    ASSERT_EQ(float_bits(fp16_to_fp32(bits)), float_bits(hw_fp16_to_fp32(bits))) << "half 0x" << std::hex << h;
  }
  constexpr std::uint64_t kSeed = 0x5eed16;
  constexpr int kSamples = 2'000'000;
  std::mt19937_64 rng(kSeed);
  std::uniform_int_distribution<std::uint32_t> any_bits;
  for (int i = 0; i < kSamples; ++i) {
    // Random bit patterns, biased to exponents near the half range where rounding is subtle.
    std::uint32_t u = any_bits(rng);
    if (i % 2 == 0) u = (u & 0x807fffffu) | ((96u + (u >> 23) % 48u) << 23);
    const float f = bits_float(u);
    if (std::isnan(f)) continue;
    ASSERT_EQ(fp32_to_fp16(f), hw_fp32_to_fp16(f)) << "float bits 0x" << std::hex << u << " seed " << std::dec << kSeed;
  }
}

TEST(Bf16, ExhaustiveRoundTripAndMidpoints) {
  for (std::uint32_t h = 0; h < kHalfCount; ++h) {
    const std::uint16_t bits = static_cast<std::uint16_t>(h);
    const float f = bf16_to_fp32(bits);
    ASSERT_EQ(float_bits(f), h << 16);
    if (std::isnan(f)) {
      ASSERT_EQ(fp32_to_bf16(f), static_cast<std::uint16_t>(bits | 0x40)) << "bf16 0x" << std::hex << h;
      continue;
    }
    ASSERT_EQ(fp32_to_bf16(f), bits) << "bf16 0x" << std::hex << h;
    if ((h & 0x7fff) >= 0x7f7f) continue;  // largest finite and inf
    const std::uint16_t next = static_cast<std::uint16_t>(bits + 1);
    const std::uint32_t mid = (h << 16) | 0x8000u;
    const std::uint16_t even = (bits & 1) ? next : bits;
    ASSERT_EQ(fp32_to_bf16(bits_float(mid)), even) << "midpoint after bf16 0x" << std::hex << h;
    ASSERT_EQ(fp32_to_bf16(bits_float(mid - 1)), bits) << "below midpoint after 0x" << std::hex << h;
    ASSERT_EQ(fp32_to_bf16(bits_float(mid + 1)), next) << "above midpoint after 0x" << std::hex << h;
  }
  // Rounding up from the largest finite bf16 gives inf, as IEEE rounding does.
  EXPECT_EQ(fp32_to_bf16(bits_float(0x7f7f8000u)), 0x7f80);
  // Subnormals round (not flushed), as current ggml and gguf-py do.
  EXPECT_EQ(fp32_to_bf16(bits_float(0x00018000u)), 0x0002);
}

}  // namespace
}  // namespace sluice::cpu
