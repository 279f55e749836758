// The CPU ops gpt-oss added (compute/backend.hpp), each against a scalar reference written here
// in double from the formula (seeded inputs; the seed is printed by the failure messages):
//  - SwiGLU-OAI: both clamps and the sigmoid's alpha;
//  - softmax with a sink logit in the denominator, and attention with per-head sinks (f16 and
//    q8_0 caches, a sliding window): the weights sum to less than 1 by the sink's share;
//  - "select, then softmax" routing: the top-k logits, softmax over those k;
//  - YaRN RoPE (gpt-oss's factor 32 over 4096, base 150000, beta 32 / 1): ramped blend of
//    interpolated and extrapolated angles and the magnitude factor; plain RoPE unchanged.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "compute/cpu/blocks.hpp"
#include "compute/cpu/cpu_backend.hpp"
#include "compute/cpu/ops.hpp"

namespace sluice {
namespace {

constexpr std::uint64_t kSeed = 20261206;

std::vector<float> seeded(std::mt19937_64& rng, std::int64_t n, float scale = 1.0f) {
  std::uniform_real_distribution<float> dist(-scale, scale);
  std::vector<float> v(static_cast<std::size_t>(n));
  for (float& x : v) x = dist(rng);
  return v;
}

TEST(GptOssOps, SwigluOaiMatchesTheFormula) {
  cpu::CpuBackend backend;
  std::mt19937_64 rng(kSeed);
  // Values past the limit of 7 on both sides, so both clamps act.
  const std::vector<float> gate = seeded(rng, 4096, 12.0f), up = seeded(rng, 4096, 12.0f);
  const compute::SwigluOaiParams p;  // gpt-oss: alpha 1.702, limit 7
  std::vector<float> out(gate.size());
  backend.swiglu_oai(gate.data(), up.data(), out.data(), std::int64_t(gate.size()), p);
  int clamped_gate = 0, clamped_up = 0;
  for (std::size_t i = 0; i < gate.size(); ++i) {
    const double g = std::min<double>(gate[i], 7.0), u = std::clamp<double>(up[i], -7.0, 7.0);
    clamped_gate += gate[i] > 7.0f;
    clamped_up += std::fabs(up[i]) > 7.0f;
    const double want = g / (1.0 + std::exp(-1.702 * g)) * (u + 1.0);
    ASSERT_NEAR(out[i], want, 1e-5 * (1.0 + std::fabs(want))) << "gate " << gate[i] << " up " << up[i] << " (seed " << kSeed << ")";
  }
  EXPECT_GT(clamped_gate, 100);
  EXPECT_GT(clamped_up, 100);
  std::vector<float> in_place = gate;  // out may alias gate
  backend.swiglu_oai(in_place.data(), up.data(), in_place.data(), std::int64_t(gate.size()), p);
  EXPECT_EQ(in_place, out);
}

// sum_j w_j v_j with w = softmax over the scores and, when given, the sink.
std::vector<double> reference_attention(const std::vector<double>& scores, const std::vector<std::vector<double>>& values,
                                        const double* sink) {
  double max = sink ? *sink : -std::numeric_limits<double>::infinity();
  for (double s : scores) max = std::max(max, s);
  double sum = sink ? std::exp(*sink - max) : 0.0;
  for (double s : scores) sum += std::exp(s - max);
  std::vector<double> out(values.front().size(), 0.0);
  for (std::size_t j = 0; j < scores.size(); ++j) {
    const double w = std::exp(scores[j] - max) / sum;
    for (std::size_t d = 0; d < out.size(); ++d) out[d] += w * values[j][d];
  }
  return out;
}

TEST(GptOssOps, SoftmaxWithSink) {
  std::mt19937_64 rng(kSeed);
  const std::vector<float> x = seeded(rng, 37, 4.0f);
  for (float sink : {-3.0f, 0.0f, 2.5f, 9.0f}) {
    std::vector<float> got = x;
    cpu::softmax_with_sink(got.data(), std::int64_t(got.size()), sink);
    double max = sink, sum = std::exp(double(sink) - max);
    for (float v : x) max = std::max(max, double(v));
    sum = std::exp(double(sink) - max);
    for (float v : x) sum += std::exp(double(v) - max);
    double total = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
      EXPECT_NEAR(got[i], std::exp(double(x[i]) - max) / sum, 1e-6) << "sink " << sink;
      total += got[i];
    }
    EXPECT_NEAR(total, 1.0 - std::exp(double(sink) - max) / sum, 1e-6) << "the sink takes its share";
  }
  // A sink of -inf takes nothing: the plain softmax, bit for bit.
  std::vector<float> plain = x, none = x;
  cpu::softmax(plain.data(), std::int64_t(x.size()));
  cpu::softmax_with_sink(none.data(), std::int64_t(x.size()), -std::numeric_limits<float>::infinity());
  EXPECT_EQ(plain, none);
}

TEST(GptOssOps, AttentionWithSinks) {
  cpu::CpuBackend backend;
  const std::int32_t n_head = 4, n_head_kv = 2, head_dim = 64;
  const std::int64_t row_floats = n_head_kv * head_dim, q_dim = n_head * head_dim, ctx = 24;
  const std::vector<float> sinks = {-1.5f, 0.0f, 1.0f, 3.0f};
  for (auto type : {compute::KvType::f16, compute::KvType::q8_0}) {
    SCOPED_TRACE(compute::to_string(type));
    std::mt19937_64 rng(kSeed + std::uint64_t(type));
    const std::int64_t row_bytes = compute::kv_row_bytes(type, row_floats);
    std::vector<std::byte> kb(std::size_t(ctx * row_bytes)), vb(kb.size());
    const compute::KvLayerView kv{kb.data(), vb.data(), ctx, type, row_bytes};
    const std::vector<float> k = seeded(rng, ctx * row_floats), v = seeded(rng, ctx * row_floats);
    backend.kv_store(kv, 0, ctx, row_floats, k.data(), v.data());
    // What the cache holds, as doubles (the reference reads the same rounded keys and values).
    auto cached = [&](const std::vector<float>& src, const std::byte* base, std::int64_t j, std::int64_t at) {
      if (type == compute::KvType::f16) {
        return double(cpu::fp16_to_fp32(reinterpret_cast<const std::uint16_t*>(base + j * row_bytes)[at]));
      }
      const auto* blocks = reinterpret_cast<const cpu::BlockQ8_0*>(base + j * row_bytes);
      const cpu::BlockQ8_0& b = blocks[at / cpu::kQK8_0];
      (void)src;
      return double(cpu::fp16_to_fp32(b.d)) * double(b.qs[at % cpu::kQK8_0]);
    };
    const std::int64_t rows = 6, pos0 = ctx - rows;
    const std::vector<float> q = seeded(rng, rows * q_dim, 2.0f);
    for (std::int32_t window : {0, 5}) {
      compute::AttentionShape shape{n_head, n_head_kv, head_dim, 1.0f / std::sqrt(float(head_dim)), window, 0.0f};
      shape.sinks = sinks.data();
      std::vector<float> out(std::size_t(rows * q_dim)), plain(out.size());
      backend.attend(q.data(), rows, kv, pos0, shape, out.data());
      shape.sinks = nullptr;
      backend.attend(q.data(), rows, kv, pos0, shape, plain.data());
      double moved = 0;
      for (std::int64_t r = 0; r < rows; ++r) {
        const std::int64_t pos = pos0 + r, first = window > 0 ? std::max<std::int64_t>(0, pos - window + 1) : 0;
        for (std::int32_t h = 0; h < n_head; ++h) {
          const std::int64_t kv_at = std::int64_t(h / (n_head / n_head_kv)) * head_dim;
          std::vector<double> scores;
          std::vector<std::vector<double>> values;
          for (std::int64_t j = first; j <= pos; ++j) {
            double dot = 0;
            std::vector<double> value(static_cast<std::size_t>(head_dim), 0.0);
            for (std::int32_t d = 0; d < head_dim; ++d) {
              dot += double(q[std::size_t(r * q_dim + h * head_dim + d)]) * cached(k, kb.data(), j, kv_at + d);
              value[std::size_t(d)] = cached(v, vb.data(), j, kv_at + d);
            }
            scores.push_back(dot / std::sqrt(double(head_dim)));
            values.push_back(std::move(value));
          }
          const double sink = sinks[std::size_t(h)];
          const std::vector<double> want = reference_attention(scores, values, &sink);
          for (std::int32_t d = 0; d < head_dim; ++d) {
            const std::size_t at = std::size_t(r * q_dim + h * head_dim + d);
            // f16: q and the weights are rounded to fp16 as llama.cpp does (~1e-3 relative).
            EXPECT_NEAR(out[at], want[std::size_t(d)], 4e-3) << "row " << r << " head " << h << " window " << window;
            moved = std::max(moved, double(std::fabs(out[at] - plain[at])));
          }
        }
      }
      EXPECT_GT(moved, 0.05) << "the sinks changed nothing";
    }
  }
}

TEST(GptOssOps, RouteTopKThenSoftmax) {
  cpu::CpuBackend backend;
  std::mt19937_64 rng(kSeed);
  for (auto [n_expert, k] : {std::pair<std::int64_t, std::int32_t>{1, 1}, {8, 2}, {32, 4}, {128, 4}, {16, 16}}) {
    const std::int64_t rows = 9;
    const std::vector<float> logits = seeded(rng, rows * n_expert, 3.0f);
    std::vector<std::int32_t> ids(std::size_t(rows * k));
    std::vector<float> weights(ids.size());
    backend.moe_route_topk_softmax(logits.data(), rows, n_expert, k, ids.data(), weights.data());
    for (std::int64_t r = 0; r < rows; ++r) {
      const float* row = logits.data() + r * n_expert;
      std::vector<std::int32_t> order(static_cast<std::size_t>(n_expert));
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](std::int32_t a, std::int32_t b) { return row[a] > row[b]; });
      double sum = 0;
      for (std::int32_t j = 0; j < k; ++j) sum += std::exp(double(row[order[std::size_t(j)]]) - double(row[order[0]]));
      for (std::int32_t j = 0; j < k; ++j) {
        const std::size_t at = std::size_t(r * k + j);
        EXPECT_EQ(ids[at], order[std::size_t(j)]) << n_expert << " experts, k " << k << ", row " << r << " (seed " << kSeed << ")";
        const double want = std::exp(double(row[order[std::size_t(j)]]) - double(row[order[0]])) / sum;
        EXPECT_NEAR(weights[at], want, 2e-7 + 2e-6 * want) << n_expert << " experts, k " << k << ", row " << r;
      }
    }
  }
  // Equal logits: the lower id first, equal weights.
  const float ties[4] = {0.5f, 2.0f, 1.0f, 2.0f};
  std::int32_t ids[2];
  float weights[2];
  backend.moe_route_topk_softmax(ties, 1, 4, 2, ids, weights);
  EXPECT_EQ(ids[0], 1);
  EXPECT_EQ(ids[1], 3);
  EXPECT_EQ(weights[0], 0.5f);
  EXPECT_EQ(weights[1], 0.5f);
}

// YaRN as the formula (ggml's rope_yarn, in double): pair i's extrapolated angle pos * base^(-2i/n),
// its interpolated angle that times freq_scale, mixed by a ramp that is 1 below the low correction
// dim and 0 above the high one; cos and sin scaled by attn_factor * (1 + 0.1 ln(1 / freq_scale)).
std::vector<double> reference_yarn(const std::vector<float>& x, std::int32_t n_heads, std::int32_t head_dim, std::int64_t pos,
                                   const compute::RopeParams& p) {
  const double n = p.n_rot;
  auto corr_dim = [&](double turns) { return n * std::log(p.n_ctx_orig / (turns * 2 * M_PI)) / (2 * std::log(double(p.freq_base))); };
  const double low = std::max(0.0, std::floor(corr_dim(p.beta_fast))), high = std::min(n - 1, std::ceil(corr_dim(p.beta_slow)));
  const double mscale = p.attn_factor * (1.0 + 0.1 * std::log(1.0 / p.freq_scale));
  std::vector<double> out(x.begin(), x.end());
  const std::int32_t half = p.n_rot / 2;
  for (std::int32_t h = 0; h < n_heads; ++h) {
    for (std::int32_t i = 0; i < half; ++i) {
      const double extrap = double(pos) * std::pow(double(p.freq_base), -2.0 * i / n);
      const double interp = p.freq_scale * extrap;
      const double ramp = 1.0 - std::min(1.0, std::max(0.0, (i - low) / std::max(0.001, high - low)));
      const double mix = ramp * p.ext_factor;
      const double angle = interp * (1 - mix) + extrap * mix;
      const std::size_t a = std::size_t(h * head_dim + i), b = a + std::size_t(half);
      const double x0 = x[a], x1 = x[b];
      out[a] = (x0 * std::cos(angle) - x1 * std::sin(angle)) * mscale;
      out[b] = (x0 * std::sin(angle) + x1 * std::cos(angle)) * mscale;
    }
  }
  return out;
}

TEST(GptOssOps, YarnRopeMatchesTheFormula) {
  std::mt19937_64 rng(kSeed);
  const std::int32_t n_heads = 3, head_dim = 64;
  const std::vector<float> x = seeded(rng, n_heads * head_dim);
  compute::RopeParams p;
  p.kind = compute::RopeKind::neox;
  p.n_rot = head_dim;
  p.freq_base = 150000.0f;
  p.freq_scale = 1.0f / 32.0f;
  p.n_ctx_orig = 4096;
  p.ext_factor = 1.0f;
  p.attn_factor = 1.0f / (1.0f + 0.1f * std::log(32.0f));  // llama.cpp's context cancels ggml's mscale ...
  for (float attn_factor : {p.attn_factor, 1.0f}) {
    p.attn_factor = attn_factor;
    for (std::int64_t pos : {0, 1, 7, 100, 1000}) {
      std::vector<float> got = x;
      cpu::rope(got.data(), n_heads, head_dim, pos, p);
      const std::vector<double> want = reference_yarn(x, n_heads, head_dim, pos, p);
      for (std::size_t i = 0; i < got.size(); ++i) {
        // float angles: pos * theta accumulates ~pos x 1e-7 of error by the last pair.
        ASSERT_NEAR(got[i], want[i], 2e-5 + 5e-7 * double(pos)) << "pos " << pos << " element " << i << " attn_factor " << attn_factor;
      }
    }
  }
  // ... so its net magnitude is ~1 (the rotation keeps each pair's length).
  p.attn_factor = 1.0f / (1.0f + 0.1f * std::log(32.0f));
  std::vector<float> got = x;
  cpu::rope(got.data(), n_heads, head_dim, 77, p);
  for (std::int32_t i = 0; i < head_dim / 2; ++i) {
    const double before = std::hypot(x[std::size_t(i)], x[std::size_t(i + 32)]);
    const double after = std::hypot(got[std::size_t(i)], got[std::size_t(i + 32)]);
    EXPECT_NEAR(after, before, 1e-5);
  }
  // Without YaRN (ext_factor 0, attn_factor 1) the plain RoPE path, bit for bit as before.
  compute::RopeParams plain;
  plain.kind = compute::RopeKind::neox;
  plain.n_rot = head_dim;
  plain.freq_base = 150000.0f;
  compute::RopeParams same = plain;
  same.beta_fast = 7.0f;  // YaRN's other fields are ignored when it is off
  same.n_ctx_orig = 4096;
  std::vector<float> a = x, b = x;
  cpu::rope(a.data(), n_heads, head_dim, 33, plain);
  cpu::rope(b.data(), n_heads, head_dim, 33, same);
  EXPECT_EQ(a, b);
}

}  // namespace
}  // namespace sluice
