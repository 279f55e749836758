// Host models of the two device paths whose arithmetic is not compute/cpu's, checked against
// compute/cpu within the very bounds test_cuda_device applies to the real kernels: the cuBLAS
// path (fp16 weights and activations, fp32 accumulation) and the online-softmax attention kernel
// (tiles of 64 keys, unrounded weights). A bound too tight for the arithmetic would fail here, on
// any machine, instead of on a GPU; a kernel that strays from its model fails there.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "compute/cpu/matmul.hpp"
#include "compute/cpu/ops.hpp"
#include "compute/cpu/quants.hpp"
#include "tests/compute/cuda_test_util.hpp"
#include "tests/compute/kernel_test_util.hpp"

namespace sluice::cuda {
namespace {

using test::kCudaWeightTypes;
using test::type_name;

// One output of the cuBLAS path: the weights as fp16 (dequantized and rounded; bf16 and f32
// weights as they are), the activations in the same format, products exact in fp32 (fp16 and
// bf16 products are), summed in fp32 in row order.
float gemm_model(GgmlType t, const std::uint8_t* w_row, const float* x, std::int64_t cols) {
  std::vector<float> w(static_cast<std::size_t>(cols));
  if (t == GgmlType::F32) std::memcpy(w.data(), w_row, w.size() * 4);
  else cpu::dequantize_row(t, w_row, w.data(), cols);
  float sum = 0.0f;
  for (std::int64_t i = 0; i < cols; ++i) {
    float wi = w[i];
    float ai = x[i];
    if (t == GgmlType::BF16) {
      ai = cpu::bf16_to_fp32(cpu::fp32_to_bf16(ai));
    } else if (t != GgmlType::F32) {
      wi = cpu::fp16_to_fp32(cpu::fp32_to_fp16(wi));
      ai = cpu::fp16_to_fp32(cpu::fp32_to_fp16(ai));
    }
    sum += wi * ai;
  }
  return sum;
}

TEST(CudaHostModels, GemmPathWithinDeviceBound) {
  constexpr std::int64_t kRows = 6;
  constexpr std::int64_t kBatch = 3;
  for (GgmlType t : kCudaWeightTypes) {
    const std::int64_t cols = cpu::block_elements(t) == 256 ? 4096 + 256 : 4096 + 32 * 5;
    std::mt19937_64 rng(41);
    SCOPED_TRACE(std::string(type_name(t)) + " seed=41");
    std::vector<std::uint8_t> w;
    for (std::int64_t r = 0; r < kRows; ++r) {
      const auto row = r % 2 ? test::random_blocks(t, cols, rng) : cpu::test::quantize(t, cpu::test::random_row(rng, cols, 0.02f));
      w.insert(w.end(), row.begin(), row.end());
    }
    std::vector<float> x;
    for (std::int64_t b = 0; b < kBatch; ++b) {
      const auto row = cpu::test::random_row(rng, cols, 1.0f);
      x.insert(x.end(), row.begin(), row.end());
    }
    std::vector<float> want(static_cast<std::size_t>(kRows * kBatch));
    cpu::matmul(t, w.data(), kRows, cols, x.data(), kBatch, want.data());
    const std::size_t w_row = cpu::row_bytes(t, cols);
    double worst = 0.0;
    for (std::int64_t b = 0; b < kBatch; ++b) {
      for (std::int64_t r = 0; r < kRows; ++r) {
        const float model = gemm_model(t, w.data() + r * w_row, x.data() + b * cols, cols);
        double magnitude = 0.0;
        const double exact = test::gemm_fp16_reference(t, w.data() + r * w_row, x.data() + b * cols, cols, &magnitude);
        EXPECT_LE(std::fabs(double(model) - exact), test::gemm_accumulation_bound(cols, magnitude)) << "b=" << b << " r=" << r;
        const double bound = test::gemm_bound(t, w.data() + r * w_row, x.data() + b * cols, cols);
        const double err = std::fabs(double(model) - want[static_cast<std::size_t>(b * kRows + r)]);
        EXPECT_LE(err, bound) << "b=" << b << " r=" << r;
        worst = std::max(worst, err / bound);
      }
    }
    std::printf("%-5s gemm model: worst error / bound = %.3f\n", type_name(t), worst);
  }
}

// The attention kernel's arithmetic for one (query, head), tile by tile.
void attention_model(const test::AttnCase& c, const float* q_row, const std::vector<std::uint16_t>& keys,
                     const std::vector<std::uint16_t>& values, std::int64_t row_floats, std::int64_t pos, int h,
                     float* out) {
  constexpr int kTile = 64;
  const std::int64_t kv_off = static_cast<std::int64_t>(h / (c.n_head / c.n_head_kv)) * c.head_dim;
  const float scale = 1.0f / std::sqrt(float(c.head_dim));
  std::vector<float> q(static_cast<std::size_t>(c.head_dim));
  for (int d = 0; d < c.head_dim; ++d) q[d] = cpu::fp16_to_fp32(cpu::fp32_to_fp16(q_row[h * c.head_dim + d]));
  const std::int64_t first = c.window > 0 ? std::max<std::int64_t>(0, pos - c.window + 1) : 0;
  float running_max = -INFINITY;
  float running_sum = 0.0f;
  std::vector<float> acc(static_cast<std::size_t>(c.head_dim), 0.0f);
  for (std::int64_t tile = first; tile <= pos; tile += kTile) {
    const int n = static_cast<int>(std::min<std::int64_t>(kTile, pos + 1 - tile));
    float w[kTile];
    float tile_max = -INFINITY;
    for (int j = 0; j < n; ++j) {
      float dot = 0.0f;
      for (int d = 0; d < c.head_dim; ++d) dot += q[d] * cpu::fp16_to_fp32(keys[(tile + j) * row_floats + kv_off + d]);
      float logit = dot * scale;
      if (c.softcap > 0.0f) logit = c.softcap * std::tanh(logit / c.softcap);
      w[j] = logit;
      tile_max = std::max(tile_max, logit);
    }
    const float new_max = std::max(running_max, tile_max);
    const float correction = running_max == -INFINITY ? 0.0f : std::exp(running_max - new_max);
    running_sum *= correction;
    for (float& a : acc) a *= correction;
    for (int j = 0; j < n; ++j) {
      const float p = std::exp(w[j] - new_max);
      running_sum += p;
      for (int d = 0; d < c.head_dim; ++d) acc[d] += p * cpu::fp16_to_fp32(values[(tile + j) * row_floats + kv_off + d]);
    }
    running_max = new_max;
  }
  for (int d = 0; d < c.head_dim; ++d) out[d] = acc[d] * (1.0f / running_sum);
}

TEST(CudaHostModels, AttentionWithinDeviceBound) {
  const test::AttnCase cases[] = {
      {8, 2, 64, 0, 0.0f, 300, 1},
      {4, 4, 128, 50, 30.0f, 200, 1},
      {16, 2, 256, 0, 0.0f, 70, 5},
      {6, 3, 80, 0, 0.0f, 0, 130},
  };
  std::mt19937_64 rng(42);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (const test::AttnCase& c : cases) {
    SCOPED_TRACE("head_dim=" + std::to_string(c.head_dim) + " window=" + std::to_string(c.window) + " seed=42");
    const std::int64_t row_floats = static_cast<std::int64_t>(c.n_head_kv) * c.head_dim;
    const std::int64_t ctx = c.first_pos + c.n_queries;
    std::vector<std::uint16_t> k_cache(static_cast<std::size_t>(ctx * row_floats));
    std::vector<std::uint16_t> v_cache(k_cache.size());
    for (auto& h : k_cache) h = cpu::fp32_to_fp16(normal(rng));
    for (auto& h : v_cache) h = cpu::fp32_to_fp16(normal(rng));
    cpu::KvLayerView view;
    view.k = reinterpret_cast<std::byte*>(k_cache.data());
    view.v = reinterpret_cast<std::byte*>(v_cache.data());
    view.ctx = ctx;
    view.type = cpu::KvType::f16;
    view.row_bytes = cpu::kv_row_bytes(cpu::KvType::f16, row_floats);
    cpu::AttentionShape shape;
    shape.n_head = c.n_head;
    shape.n_head_kv = c.n_head_kv;
    shape.head_dim = c.head_dim;
    shape.scale = 1.0f / std::sqrt(float(c.head_dim));
    shape.window = c.window;
    shape.softcap = c.softcap;
    const std::int64_t q_floats = static_cast<std::int64_t>(c.n_head) * c.head_dim;
    double worst = 0.0;
    for (std::int64_t i = 0; i < c.n_queries; ++i) {
      const std::int64_t pos = c.first_pos + i;
      std::vector<float> q(static_cast<std::size_t>(q_floats));
      for (auto& v : q) v = normal(rng);
      std::vector<float> want(q.size());
      cpu::attend(q.data(), view, pos, shape, want.data());
      for (int h = 0; h < c.n_head; ++h) {
        std::vector<float> got(static_cast<std::size_t>(c.head_dim));
        attention_model(c, q.data(), k_cache, v_cache, row_floats, pos, h, got.data());
        const double bound = test::attention_bound(c, q, k_cache, v_cache, row_floats, pos, h);
        for (int d = 0; d < c.head_dim; ++d) {
          const double err = std::fabs(double(got[d]) - want[static_cast<std::size_t>(h * c.head_dim + d)]);
          ASSERT_LE(err, bound) << "query " << i << " head " << h << " dim " << d;
          worst = std::max(worst, err / bound);
        }
      }
    }
    std::printf("attention model head_dim=%d: worst error / bound = %.3f\n", c.head_dim, worst);
  }
}

}  // namespace
}  // namespace sluice::cuda
