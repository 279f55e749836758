// CPU ops against direct formulas: RMSNorm, RoPE in both pairings, softmax, fp16 storage,
// attention with GQA and a sliding window.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "compute/cpu/ops.hpp"
#include "compute/cpu/quants.hpp"

namespace sluice::cpu {
namespace {

std::vector<float> random_vector(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

TEST(Ops, RmsNormMatchesFormula) {
  auto x = random_vector(257, 1);
  auto w = random_vector(257, 2);
  std::vector<float> out(257);
  rms_norm(x.data(), w.data(), out.data(), 257, 1e-5f);
  double ss = 0;
  for (float v : x) ss += double(v) * v;
  double inv = 1.0 / std::sqrt(ss / 257 + 1e-5);
  for (int i = 0; i < 257; ++i) EXPECT_NEAR(out[i], x[i] * inv * w[i], 1e-5);
}

// Rotating by theta_i = pos * base^(-2i/n_rot) the pair the architecture names.
void check_rope(RopeKind kind) {
  const int heads = 3, hd = 16;
  auto x = random_vector(heads * hd, 3);
  auto y = x;
  RopeParams p;
  p.kind = kind;
  p.n_rot = hd;
  p.freq_base = 10000.0f;
  const std::int64_t pos = 7;
  rope(y.data(), heads, hd, pos, p);
  for (int h = 0; h < heads; ++h) {
    for (int i = 0; i < hd / 2; ++i) {
      int a = kind == RopeKind::adjacent ? 2 * i : i;
      int b = kind == RopeKind::adjacent ? 2 * i + 1 : i + hd / 2;
      double theta = pos * std::pow(10000.0, -2.0 * i / hd);
      double x0 = x[h * hd + a], x1 = x[h * hd + b];
      EXPECT_NEAR(y[h * hd + a], x0 * std::cos(theta) - x1 * std::sin(theta), 1e-4) << "head " << h << " pair " << i;
      EXPECT_NEAR(y[h * hd + b], x0 * std::sin(theta) + x1 * std::cos(theta), 1e-4) << "head " << h << " pair " << i;
    }
  }
}

TEST(Ops, RopeAdjacentPairsRotate2iWith2iPlus1) { check_rope(RopeKind::adjacent); }
TEST(Ops, RopeNeoxPairsRotateIWithIPlusHalf) { check_rope(RopeKind::neox); }

TEST(Ops, RopePairingsDiffer) {
  auto x = random_vector(16, 4);
  auto a = x, b = x;
  RopeParams p;
  p.n_rot = 16;
  p.kind = RopeKind::adjacent;
  rope(a.data(), 1, 16, 5, p);
  p.kind = RopeKind::neox;
  rope(b.data(), 1, 16, 5, p);
  double diff = 0;
  for (int i = 0; i < 16; ++i) diff += std::abs(a[i] - b[i]);
  EXPECT_GT(diff, 0.1);
}

TEST(Ops, RopeFreqFactorsDivideTheta) {
  auto x = random_vector(8, 5);
  auto y = x;
  std::vector<float> factors = {1.0f, 2.0f, 4.0f, 8.0f};
  RopeParams p;
  p.n_rot = 8;
  p.freq_factors = factors.data();
  rope(y.data(), 1, 8, 3, p);
  for (int i = 0; i < 4; ++i) {
    double theta = 3 * std::pow(10000.0, -2.0 * i / 8) / factors[i];
    EXPECT_NEAR(y[2 * i], x[2 * i] * std::cos(theta) - x[2 * i + 1] * std::sin(theta), 1e-5);
  }
}

TEST(Ops, SoftmaxSumsToOneAndHandlesMasked) {
  std::vector<float> x = {1.0f, 2.0f, -INFINITY, 3.0f};
  softmax(x.data(), 4);
  EXPECT_FLOAT_EQ(x[2], 0.0f);
  EXPECT_NEAR(x[0] + x[1] + x[3], 1.0, 1e-6);
  EXPECT_GT(x[3], x[1]);
}

TEST(Ops, Fp16RoundTripsEveryHalfValue) {
  for (std::uint32_t h = 0; h < 65536; ++h) {
    std::uint16_t half = static_cast<std::uint16_t>(h);
    bool nan = (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0;
    if (nan) continue;
    ASSERT_EQ(fp32_to_fp16(fp16_to_fp32(half)), half) << "half 0x" << std::hex << h;
  }
}

TEST(Ops, Fp16RoundsToNearestEven) {
  // 1 + 2^-11 is halfway between 1 and 1 + 2^-10: ties go to the even mantissa (1.0).
  EXPECT_EQ(fp32_to_fp16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);
  EXPECT_EQ(fp32_to_fp16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);
  EXPECT_EQ(fp32_to_fp16(65520.0f), 0x7c00);  // rounds up to infinity
  EXPECT_EQ(fp32_to_fp16(std::ldexp(1.0f, -25)), 0x0000);  // halfway to the smallest subnormal: even
  EXPECT_EQ(fp32_to_fp16(std::ldexp(1.5f, -25)), 0x0001);
}

TEST(Ops, AttentionMatchesDirectComputationWithGqaAndWindow) {
  const int n_head = 4, n_kv = 2, hd = 8, ctx = 6;
  const int kv_row = n_kv * hd;
  std::vector<std::uint16_t> k(ctx * kv_row), v(ctx * kv_row);
  KvLayerView kv{reinterpret_cast<std::byte*>(k.data()), reinterpret_cast<std::byte*>(v.data()), ctx, KvType::f16,
                 kv_row_bytes(KvType::f16, kv_row)};
  std::vector<std::vector<float>> ks, vs;
  for (int p = 0; p < ctx; ++p) {
    ks.push_back(random_vector(kv_row, 10 + p));
    vs.push_back(random_vector(kv_row, 100 + p));
    kv_store(kv, p, kv_row, ks.back().data(), vs.back().data());
  }
  auto q = random_vector(n_head * hd, 7);
  for (int window : {0, 3}) {
    AttentionShape s{n_head, n_kv, hd, 1.0f / std::sqrt(float(hd)), window, 0.0f};
    std::vector<float> out(n_head * hd);
    const int pos = ctx - 1;
    attend(q.data(), kv, pos, s, out.data());
    for (int h = 0; h < n_head; ++h) {
      int g = h / (n_head / n_kv);
      std::vector<double> w(pos + 1, 0.0);
      double max = -1e30, sum = 0;
      int first = window > 0 ? pos - window + 1 : 0;
      for (int j = first; j <= pos; ++j) {
        double d = 0;
        for (int i = 0; i < hd; ++i) d += fp16_to_fp32(fp32_to_fp16(q[h * hd + i])) * fp16_to_fp32(fp32_to_fp16(ks[j][g * hd + i]));
        w[j] = d * s.scale;
        max = std::max(max, w[j]);
      }
      for (int j = first; j <= pos; ++j) sum += w[j] = std::exp(w[j] - max);
      for (int i = 0; i < hd; ++i) {
        double o = 0;
        for (int j = first; j <= pos; ++j) o += fp16_to_fp32(fp32_to_fp16(float(w[j] / sum))) * fp16_to_fp32(fp32_to_fp16(vs[j][g * hd + i]));
        EXPECT_NEAR(out[h * hd + i], o, 1e-4) << "head " << h << " dim " << i << " window " << window;
      }
    }
  }
}

TEST(Ops, Q8KvCacheAttentionMatchesDirectComputationOnItsDequantizedRows) {
  // head_dim 16 < 32: a q8_0 block spans two KV heads, which load_q8_0 must split correctly.
  for (int hd : {16, 64}) {
    const int n_head = 4, n_kv = 2, ctx = 9;
    const int kv_row = n_kv * hd;
    const std::int64_t rb = kv_row_bytes(KvType::q8_0, kv_row);
    ASSERT_EQ(rb, kv_row / 32 * 34);
    std::vector<std::byte> k(std::size_t(ctx * rb)), v(std::size_t(ctx * rb));
    KvLayerView kv{k.data(), v.data(), ctx, KvType::q8_0, rb};
    std::vector<std::vector<float>> ks, vs;  // what the cache holds, dequantized
    for (int p = 0; p < ctx; ++p) {
      auto kr = random_vector(kv_row, 30 + p), vr = random_vector(kv_row, 300 + p);
      kv_store(kv, p, kv_row, kr.data(), vr.data());
      std::vector<float> kd(kv_row), vd(kv_row);
      dequantize_row(GgmlType::Q8_0, k.data() + p * rb, kd.data(), kv_row);
      dequantize_row(GgmlType::Q8_0, v.data() + p * rb, vd.data(), kv_row);
      float amax = 0;
      for (float x : kr) amax = std::max(amax, std::fabs(x));
      for (int i = 0; i < kv_row; ++i) {
        EXPECT_NEAR(kd[i], kr[i], amax / 127) << "q8_0 storage of position " << p;  // within one step of amax/127
      }
      ks.push_back(kd);
      vs.push_back(vd);
    }
    auto q = random_vector(n_head * hd, 77);
    AttentionShape s{n_head, n_kv, hd, 1.0f / std::sqrt(float(hd)), 0, 0.0f};
    std::vector<float> out(n_head * hd);
    const int pos = ctx - 1;
    attend(q.data(), kv, pos, s, out.data());
    for (int h = 0; h < n_head; ++h) {
      const int g = h / (n_head / n_kv);
      std::vector<double> w(pos + 1);
      double max = -1e30, sum = 0;
      for (int j = 0; j <= pos; ++j) {
        double d = 0;
        for (int i = 0; i < hd; ++i) d += double(q[h * hd + i]) * ks[j][g * hd + i];
        max = std::max(max, w[j] = d * s.scale);
      }
      for (int j = 0; j <= pos; ++j) sum += w[j] = std::exp(w[j] - max);
      for (int i = 0; i < hd; ++i) {
        double o = 0;
        for (int j = 0; j <= pos; ++j) o += w[j] / sum * vs[j][g * hd + i];
        EXPECT_NEAR(out[h * hd + i], o, 1e-5) << "hd " << hd << " head " << h << " dim " << i;
      }
    }
  }
}

TEST(Ops, Q8KvCacheRefusesRowsThatAreNotWholeBlocks) {
  EXPECT_THROW(kv_row_bytes(KvType::q8_0, 48), std::invalid_argument);
  EXPECT_EQ(kv_row_bytes(KvType::f16, 48), 96);
}

}  // namespace
}  // namespace sluice::cpu
