// Device tests of the row ops and attention against compute/cpu/ops: RMSNorm, RoPE (adjacent,
// NEOX, partial rotation, llama 3 frequency factors), softmax, SwiGLU, GeGLU, the fp16 KV store,
// causal attention with GQA / sliding window / soft-capping, and argmax. Each bound is named and
// derived next to its constant. Each test skips with "SKIPPED: no CUDA device" without one.
#include <gtest/gtest.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "compute/cpu/ops.hpp"
#include "compute/cuda/kernels.hpp"
#include "tests/compute/cuda_device_fixture.hpp"
#include "tests/compute/cuda_test_util.hpp"

namespace sluice::cuda {
namespace {

using test::CudaDeviceTest;

constexpr std::uint64_t kSeed = 31;

using test::kLibmUlps;

std::vector<float> normal_floats(std::mt19937_64& rng, std::size_t n, float sigma) {
  std::normal_distribution<float> normal(0.0f, sigma);
  std::vector<float> v(n);
  for (auto& x : v) x = normal(rng);
  return v;
}

class CudaDeviceOps : public CudaDeviceTest {};

// RMSNorm: the same float squares summed in double (order aside), so float(mean) agrees unless the
// double sums straddle a float rounding boundary: then the scale moves by 1 ulp, and the two
// products round on each side (4 half-ulps): <= 3 ulp relative.
constexpr double kRmsNormUlps = 3.0;

TEST_F(CudaDeviceOps, RmsNorm) {
  std::mt19937_64 rng(kSeed);
  for (std::int64_t n : {1, 4096, 5000}) {
    for (bool with_weight : {false, true}) {
      constexpr std::int64_t kRows = 3;
      SCOPED_TRACE("n=" + std::to_string(n) + " weight=" + std::to_string(with_weight));
      const std::vector<float> x = normal_floats(rng, static_cast<std::size_t>(kRows * n), 3.0f);
      const std::vector<float> weight = normal_floats(rng, static_cast<std::size_t>(n), 1.0f);
      DeviceBuffer dx = upload(x);
      DeviceBuffer dw = upload(weight);
      DeviceBuffer dy = zeros(x.size() * 4);
      SLUICE_EXPECT_OK(k().rms_norm(dx.as<float>(), with_weight ? dw.as<float>() : nullptr, dy.as<float>(), kRows, n, 1e-6f));
      const std::vector<float> got = download<float>(dy, x.size());
      std::vector<float> want(x.size());
      for (std::int64_t r = 0; r < kRows; ++r) {
        cpu::rms_norm(x.data() + r * n, with_weight ? weight.data() : nullptr, want.data() + r * n, n, 1e-6f);
      }
      for (std::size_t i = 0; i < x.size(); ++i) {
        ASSERT_LE(std::fabs(double(got[i]) - want[i]), kRmsNormUlps * FLT_EPSILON * std::fabs(want[i])) << "element " << i;
      }
    }
  }
}

// RoPE: the angles are built with the CPU's float steps (bit-identical), so outputs differ only by
// sin/cos (kLibmUlps each, on values <= 1: 3 * 2^-24 absolute) times the rotated pair, plus the
// rounding of the two products and the sum: <= (3 * 2^-24 + 2 * 2^-24) * (|x0| + |x1|) + 1 ulp.
constexpr double kRopeAbsPerUnit = 6.0 / (1 << 24);

TEST_F(CudaDeviceOps, RopeBothPairingsPartialAndFactors) {
  std::mt19937_64 rng(kSeed + 1);
  struct Case {
    RopeMode mode;
    std::int32_t head_dim;
    std::int32_t n_rot;
    float freq_scale;
    bool factors;
  };
  const Case cases[] = {{RopeMode::adjacent, 128, 128, 1.0f, false},
                        {RopeMode::neox, 128, 128, 1.0f, false},
                        {RopeMode::neox, 256, 64, 0.25f, false},
                        {RopeMode::adjacent, 64, 64, 1.0f, true}};
  constexpr std::int32_t kHeads = 4;
  const std::vector<std::int32_t> positions = {0, 1, 17, 4095, 100000};
  const std::int64_t rows = static_cast<std::int64_t>(positions.size());
  for (const Case& c : cases) {
    SCOPED_TRACE("mode=" + std::to_string(int(c.mode)) + " head_dim=" + std::to_string(c.head_dim) + " n_rot=" + std::to_string(c.n_rot));
    const std::size_t row_floats = static_cast<std::size_t>(kHeads * c.head_dim);
    const std::vector<float> x = normal_floats(rng, row_floats * positions.size(), 1.0f);
    std::vector<float> factors(static_cast<std::size_t>(c.n_rot / 2));
    for (std::size_t i = 0; i < factors.size(); ++i) factors[i] = 1.0f + static_cast<float>(i % 7);
    DeviceBuffer dx = upload(x);
    DeviceBuffer dpos = upload(positions);
    DeviceBuffer dfactors = upload(factors);
    RopeConfig config;
    config.mode = c.mode;
    config.n_rot = c.n_rot;
    config.freq_base = 500000.0f;
    config.freq_scale = c.freq_scale;
    config.d_freq_factors = c.factors ? dfactors.as<float>() : nullptr;
    SLUICE_EXPECT_OK(k().rope(dx.as<float>(), rows, kHeads, c.head_dim, dpos.as<std::int32_t>(), config));
    const std::vector<float> got = download<float>(dx, x.size());
    std::vector<float> want = x;
    cpu::RopeParams p;
    p.kind = c.mode == RopeMode::adjacent ? cpu::RopeKind::adjacent : cpu::RopeKind::neox;
    p.n_rot = c.n_rot;
    p.freq_base = config.freq_base;
    p.freq_scale = c.freq_scale;
    p.freq_factors = c.factors ? factors.data() : nullptr;
    for (std::int64_t r = 0; r < rows; ++r) cpu::rope(want.data() + r * row_floats, kHeads, c.head_dim, positions[r], p);
    for (std::size_t i = 0; i < x.size(); ++i) {
      // Bound on the pair through element i: at most the head's two largest |x|.
      const std::size_t head0 = i / c.head_dim * c.head_dim;
      double amax = 0.0;
      for (std::size_t j = head0; j < head0 + c.head_dim; ++j) amax = std::max(amax, double(std::fabs(x[j])));
      const double bound = kRopeAbsPerUnit * 2 * amax + FLT_EPSILON * std::fabs(want[i]);
      ASSERT_LE(std::fabs(double(got[i]) - want[i]), bound) << "element " << i << " (row " << i / row_floats << ")";
    }
  }
}

// Softmax: each exp within kLibmUlps, the double sum as close, then two float roundings (the
// inverse and the product): <= (2 * kLibmUlps + 2) ulp relative.
constexpr double kSoftmaxUlps = 2 * kLibmUlps + 2;

TEST_F(CudaDeviceOps, Softmax) {
  std::mt19937_64 rng(kSeed + 2);
  for (std::int64_t n : {1, 7, 1000, 50000}) {
    constexpr std::int64_t kRows = 3;
    SCOPED_TRACE("n=" + std::to_string(n));
    std::vector<float> x = normal_floats(rng, static_cast<std::size_t>(kRows * n), 4.0f);
    if (n > 7) {
      for (std::int64_t i = 0; i < n; i += 5) x[static_cast<std::size_t>(n + i)] = -std::numeric_limits<float>::infinity();  // masked
    }
    DeviceBuffer dx = upload(x);
    SLUICE_EXPECT_OK(k().softmax(dx.as<float>(), kRows, n));
    const std::vector<float> got = download<float>(dx, x.size());
    std::vector<float> want = x;
    for (std::int64_t r = 0; r < kRows; ++r) cpu::softmax(want.data() + r * n, n);
    for (std::size_t i = 0; i < x.size(); ++i) {
      ASSERT_LE(std::fabs(double(got[i]) - want[i]), kSoftmaxUlps * FLT_EPSILON * want[i] + std::numeric_limits<float>::denorm_min())
          << "element " << i;
    }
  }
}

// SwiGLU: silu(g) * u with exp within kLibmUlps; 1 + e carries that error at most, then the sum,
// the division and the product round once on each side (1 ulp each).
constexpr double kSwigluUlps = kLibmUlps + 3;

TEST_F(CudaDeviceOps, SwigluAndGeglu) {
  std::mt19937_64 rng(kSeed + 3);
  constexpr std::size_t kN = 100003;
  std::vector<float> gate = normal_floats(rng, kN, 4.0f);
  gate[0] = -10.0f;  // GeGLU's table bounds and beyond
  gate[1] = 10.0f;
  gate[2] = -120.0f;
  gate[3] = 95.0f;
  gate[4] = 0.0f;
  const std::vector<float> up = normal_floats(rng, kN, 1.0f);
  DeviceBuffer dg = upload(gate);
  DeviceBuffer du = upload(up);
  DeviceBuffer dy = zeros(kN * 4);

  SLUICE_EXPECT_OK(k().swiglu(dg.as<float>(), du.as<float>(), dy.as<float>(), static_cast<std::int64_t>(kN)));
  std::vector<float> got = download<float>(dy, kN);
  for (std::size_t i = 0; i < kN; ++i) {
    const float want = cpu::silu(gate[i]) * up[i];
    ASSERT_LE(std::fabs(double(got[i]) - want), kSwigluUlps * FLT_EPSILON * std::fabs(want) + std::numeric_limits<float>::denorm_min())
        << "element " << i << " gate=" << gate[i];
  }

  // GeGLU: the GELU of the fp16-rounded gate, rounded to fp16. tanh differing by ulps can move the
  // GELU across an fp16 rounding boundary: one fp16 ulp of the GELU (<= 2^-10 relative, or 2^-24
  // absolute in fp16's subnormal range), times |up|; plus the product's rounding on each side.
  SLUICE_EXPECT_OK(k().geglu(dg.as<float>(), du.as<float>(), dy.as<float>(), static_cast<std::int64_t>(kN)));
  got = download<float>(dy, kN);
  std::vector<float> want(kN);
  std::vector<float> gelu(kN);
  const std::vector<float> ones(kN, 1.0f);
  cpu::geglu(gate.data(), up.data(), want.data(), static_cast<std::int64_t>(kN));
  cpu::geglu(gate.data(), ones.data(), gelu.data(), static_cast<std::int64_t>(kN));
  std::size_t exact = 0;
  for (std::size_t i = 0; i < kN; ++i) {
    const double bound = (std::fabs(gelu[i]) / 1024 + 0x1p-24) * std::fabs(up[i]) + 2 * FLT_EPSILON * std::fabs(want[i]);
    ASSERT_LE(std::fabs(double(got[i]) - want[i]), bound) << "element " << i << " gate=" << gate[i];
    exact += got[i] == want[i];
  }
  // The fp16 rounding hides tanh's ulps almost always.
  EXPECT_GE(exact, kN * 99 / 100) << "GeGLU agreed exactly on only " << exact << " of " << kN;
}

TEST_F(CudaDeviceOps, Argmax) {
  std::mt19937_64 rng(kSeed + 4);
  constexpr std::int64_t kN = 50257;
  std::vector<float> logits = normal_floats(rng, 4 * kN, 3.0f);
  // Row 1: a tie between two maxima, the first must win. Row 2: all -inf (index 0). Row 3: the
  // maximum in the last element.
  logits[kN + 100] = 50.0f;
  logits[kN + 40000] = 50.0f;
  std::fill(logits.begin() + 2 * kN, logits.begin() + 3 * kN, -std::numeric_limits<float>::infinity());
  logits[4 * kN - 1] = 60.0f;
  DeviceBuffer dl = upload(logits);
  DeviceBuffer dout = zeros(4 * sizeof(std::int32_t));
  SLUICE_EXPECT_OK(k().argmax(dl.as<float>(), 4, kN, dout.as<std::int32_t>()));
  const std::vector<std::int32_t> got = download<std::int32_t>(dout, 4);
  for (std::int64_t r = 0; r < 4; ++r) {
    std::int64_t best = 0;
    for (std::int64_t i = 1; i < kN; ++i) {
      if (logits[r * kN + i] > logits[r * kN + best]) best = i;
    }
    EXPECT_EQ(got[r], best) << "row " << r;
  }
  EXPECT_EQ(got[1], 100);
  EXPECT_EQ(got[2], 0);
  EXPECT_EQ(got[3], kN - 1);
}

// ---- attention -----------------------------------------------------------------------------------------

TEST_F(CudaDeviceOps, KvStoreAndAttention) {
  const test::AttnCase cases[] = {
      {8, 2, 64, 0, 0.0f, 300, 1},      // decode, GQA 4:1, several tiles
      {4, 4, 128, 50, 30.0f, 200, 1},   // sliding window + softcap (Gemma-style), MHA
      {16, 2, 256, 0, 0.0f, 70, 5},     // prefill chunk of 5 queries, head_dim 256 (Gemma 3)
      {6, 3, 80, 0, 0.0f, 0, 130},      // head_dim not a multiple of 32; prefill from 0
  };
  std::mt19937_64 rng(kSeed + 5);
  for (const test::AttnCase& c : cases) {
    SCOPED_TRACE("n_head=" + std::to_string(c.n_head) + " n_head_kv=" + std::to_string(c.n_head_kv) + " head_dim=" +
                 std::to_string(c.head_dim) + " window=" + std::to_string(c.window) + " first_pos=" + std::to_string(c.first_pos));
    const std::int64_t row_floats = static_cast<std::int64_t>(c.n_head_kv) * c.head_dim;
    const std::int64_t ctx = c.first_pos + c.n_queries + 3;
    const std::int64_t tokens = c.first_pos + c.n_queries;
    const std::vector<float> k_rows = normal_floats(rng, static_cast<std::size_t>(tokens * row_floats), 1.0f);
    const std::vector<float> v_rows = normal_floats(rng, static_cast<std::size_t>(tokens * row_floats), 1.0f);
    const std::vector<float> q = normal_floats(rng, static_cast<std::size_t>(c.n_queries * c.n_head * c.head_dim), 1.0f);

    // CPU cache, written by compute/cpu's kv_store.
    std::vector<std::uint16_t> k_cache(static_cast<std::size_t>(ctx * row_floats));
    std::vector<std::uint16_t> v_cache(k_cache.size());
    cpu::KvLayerView view;
    view.k = reinterpret_cast<std::byte*>(k_cache.data());
    view.v = reinterpret_cast<std::byte*>(v_cache.data());
    view.ctx = ctx;
    view.type = cpu::KvType::f16;
    view.row_bytes = cpu::kv_row_bytes(cpu::KvType::f16, row_floats);
    for (std::int64_t t = 0; t < tokens; ++t) {
      cpu::kv_store(view, t, row_floats, k_rows.data() + t * row_floats, v_rows.data() + t * row_floats);
    }

    // Device cache, written by the device kv_store in two calls: it must equal the CPU's bytes.
    DeviceBuffer dk = zeros(k_cache.size() * 2);
    DeviceBuffer dv = zeros(v_cache.size() * 2);
    DeviceKvView dview{dk.as<std::uint16_t>(), dv.as<std::uint16_t>(), ctx, row_floats};
    DeviceBuffer dk_rows = upload(k_rows);
    DeviceBuffer dv_rows = upload(v_rows);
    const std::int64_t split = tokens / 2;
    SLUICE_EXPECT_OK(k().kv_store(dview, 0, split, dk_rows.as<float>(), dv_rows.as<float>()));
    SLUICE_EXPECT_OK(k().kv_store(dview, split, tokens - split, dk_rows.as<float>() + split * row_floats,
                                  dv_rows.as<float>() + split * row_floats));
    const std::vector<std::uint16_t> got_k = download<std::uint16_t>(dk, k_cache.size());
    const std::vector<std::uint16_t> got_v = download<std::uint16_t>(dv, v_cache.size());
    for (std::size_t i = 0; i < k_cache.size(); ++i) {
      ASSERT_EQ(got_k[i], k_cache[i]) << "K half " << i << " (position " << i / row_floats << ")";
      ASSERT_EQ(got_v[i], v_cache[i]) << "V half " << i << " (position " << i / row_floats << ")";
    }

    AttentionConfig config;
    config.n_head = c.n_head;
    config.n_head_kv = c.n_head_kv;
    config.head_dim = c.head_dim;
    config.scale = 1.0f / std::sqrt(float(c.head_dim));
    config.window = c.window;
    config.softcap = c.softcap;
    DeviceBuffer dq = upload(q);
    DeviceBuffer dout = zeros(q.size() * 4);
    SLUICE_EXPECT_OK(k().attend(dq.as<float>(), c.n_queries, dview, c.first_pos, config, dout.as<float>()));
    const std::vector<float> got = download<float>(dout, q.size());

    cpu::AttentionShape shape;
    shape.n_head = c.n_head;
    shape.n_head_kv = c.n_head_kv;
    shape.head_dim = c.head_dim;
    shape.scale = config.scale;
    shape.window = c.window;
    shape.softcap = c.softcap;
    const std::int64_t q_floats = static_cast<std::int64_t>(c.n_head) * c.head_dim;
    for (std::int64_t i = 0; i < c.n_queries; ++i) {
      const std::int64_t pos = c.first_pos + i;
      std::vector<float> want(static_cast<std::size_t>(q_floats));
      cpu::attend(q.data() + i * q_floats, view, pos, shape, want.data());
      const std::vector<float> q_row(q.begin() + i * q_floats, q.begin() + (i + 1) * q_floats);
      for (int h = 0; h < c.n_head; ++h) {
        const double bound = test::attention_bound(c, q_row, k_cache, v_cache, row_floats, pos, h);
        for (int d = 0; d < c.head_dim; ++d) {
          const std::size_t at = static_cast<std::size_t>(i * q_floats + h * c.head_dim + d);
          ASSERT_LE(std::fabs(double(got[at]) - want[static_cast<std::size_t>(h * c.head_dim + d)]), bound)
              << "query " << i << " head " << h << " dim " << d;
        }
      }
    }
  }
}

}  // namespace
}  // namespace sluice::cuda
