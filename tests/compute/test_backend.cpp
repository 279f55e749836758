// The compute-backend seam (compute/backend.hpp):
//  - the CPU backend reports what the CPU kernels can do (every weight type they compute with,
//    both KV types, host memory);
//  - each of its ops gives the bits of the direct compute/cpu call it stands for (seeded inputs,
//    several shapes), so moving the forward pass onto the interface changed no result;
//  - a forward pass runs entirely through the interface: a counting decorator around the CPU
//    backend sees the expected number of each op per layer (it would see none of them if the
//    transformer called compute/cpu itself) and the logits equal the default backend's;
//  - a session makes the backend and lends it to its Transformer;
//  - a backend the forward pass cannot use (device memory, a KV type it lacks) is refused at
//    construction with its name in the message.
#include <gtest/gtest.h>
#include <oneapi/tbb/info.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "compute/backend.hpp"
#include "compute/cpu/cpu_backend.hpp"
#include "compute/cpu/matmul.hpp"
#include "compute/cpu/ops.hpp"
#include "compute/cpu/quants.hpp"
#include "engine/generate.hpp"
#include "engine/session.hpp"
#include "tests/compute/kernel_test_util.hpp"
#include "tests/support/temp_dir.hpp"
#include "tools/synth.hpp"

namespace sluice {
namespace {

constexpr std::uint64_t kSeed = 20261205;

// Threads an executor of "every core" gets here (TBB's default: the affinity mask's cores).
int all_cores() { return tbb::info::default_concurrency(); }

std::vector<float> seeded(std::mt19937_64& rng, std::int64_t n, float scale = 1.0f) {
  return cpu::test::random_row(rng, n, scale);
}

// Bit equality of two float arrays, naming the first element that differs.
::testing::AssertionResult same_bits(const std::vector<float>& want, const std::vector<float>& got) {
  if (want.size() != got.size()) return ::testing::AssertionFailure() << "sizes " << want.size() << " vs " << got.size();
  for (std::size_t i = 0; i < want.size(); ++i) {
    if (std::memcmp(&want[i], &got[i], sizeof(float)) != 0) {
      return ::testing::AssertionFailure() << "element " << i << ": direct " << want[i] << ", backend " << got[i] << " (seed "
                                           << kSeed << ")";
    }
  }
  return ::testing::AssertionSuccess();
}

compute::WeightView view_of(GgmlType type, std::int64_t rows, std::int64_t cols, const std::vector<std::uint8_t>& bytes) {
  compute::WeightView w;
  w.type = type;
  w.dims = {cols, rows};
  w.data = reinterpret_cast<const std::byte*>(bytes.data());
  w.bytes = bytes.size();
  return w;
}

// rows x cols weights of `type`, reference-quantized from seeded floats.
std::vector<std::uint8_t> seeded_weights(std::mt19937_64& rng, GgmlType type, std::int64_t rows, std::int64_t cols) {
  std::vector<std::uint8_t> bytes;
  for (std::int64_t r = 0; r < rows; ++r) {
    const std::vector<std::uint8_t> row = cpu::test::quantize(type, seeded(rng, cols, 0.5f));
    bytes.insert(bytes.end(), row.begin(), row.end());
  }
  return bytes;
}

TEST(CpuBackend, ReportsWhatTheCpuKernelsDo) {
  cpu::CpuBackend backend;
  const compute::BackendCapabilities& caps = backend.capabilities();
  EXPECT_EQ(backend.name(), "cpu");
  EXPECT_EQ(caps.memory, compute::MemorySpace::host);
  // Every type id the kernel table indexes: supported exactly when the kernels compute with it.
  for (int id = 0; id < cpu::kTypeSlots; ++id) {
    const auto type = static_cast<GgmlType>(id);
    EXPECT_EQ(caps.supports(type), cpu::is_weight_type(type)) << "type id " << id;
  }
  for (GgmlType type : cpu::test::kWeightTypes) EXPECT_TRUE(caps.supports(type)) << cpu::test::type_name(type);
  EXPECT_FALSE(caps.supports(GgmlType::Q8_K));  // an activation type only
  EXPECT_TRUE(caps.supports(compute::KvType::f16));
  EXPECT_TRUE(caps.supports(compute::KvType::q8_0));
  // The engine's default backend is this one.
  auto made = compute::make_cpu_backend(compute::Threading{2});
  EXPECT_EQ(made->name(), "cpu");
  EXPECT_EQ(dynamic_cast<cpu::CpuBackend&>(*made).executor().concurrency(), std::min(2, all_cores()));
}

TEST(CpuBackend, MatmulDequantizeAndGetRowsEqualTheKernels) {
  cpu::CpuBackend backend(compute::Threading{3});
  for (GgmlType type : cpu::test::kWeightTypes) {
    SCOPED_TRACE(cpu::test::type_name(type));
    std::mt19937_64 rng(kSeed + std::uint64_t(type));
    const std::int64_t rows = 37, cols = 512;  // rows: not a multiple of the 16-row strip
    const std::vector<std::uint8_t> bytes = seeded_weights(rng, type, rows, cols);
    const compute::WeightView w = view_of(type, rows, cols, bytes);
    for (std::int64_t batch : {1, 5}) {
      const std::vector<float> x = seeded(rng, batch * cols);
      std::vector<float> want(std::size_t(batch * rows)), got(want.size());
      cpu::matmul(type, bytes.data(), rows, cols, x.data(), batch, want.data());
      backend.matmul(w, x.data(), batch, got.data());
      EXPECT_TRUE(same_bits(want, got)) << "matmul batch " << batch;
    }
    std::vector<float> want(std::size_t(rows * cols)), got(want.size());
    cpu::dequantize_row(type, bytes.data(), want.data(), rows * cols);
    backend.dequantize(w, got.data());
    EXPECT_TRUE(same_bits(want, got)) << "dequantize";

    const std::vector<std::int32_t> ids = {5, 0, 36, 5};
    std::vector<float> rows_want, rows_got(ids.size() * std::size_t(cols));
    const std::size_t row_bytes = cpu::row_bytes(type, cols);
    for (std::int32_t id : ids) {
      const std::vector<float> r = cpu::test::dequantize(type, bytes.data() + row_bytes * std::size_t(id), cols);
      rows_want.insert(rows_want.end(), r.begin(), r.end());
    }
    backend.get_rows(w, ids, rows_got.data());
    EXPECT_TRUE(same_bits(rows_want, rows_got)) << "get_rows";
  }
}

// Every row op of the backend against the kernel called row by row. Rows of n_heads x 32.
void expect_row_ops_equal_the_kernels(std::int64_t rows, std::int32_t n_heads) {
  cpu::CpuBackend backend;
  std::mt19937_64 rng(kSeed);
  const std::int64_t n = std::int64_t(n_heads) * 32;
  const std::vector<float> x = seeded(rng, rows * n, 3.0f), y = seeded(rng, rows * n), weight = seeded(rng, n);

  for (const float* w : {weight.data(), static_cast<const float*>(nullptr)}) {
    std::vector<float> want(x.size()), got(x.size());
    for (std::int64_t r = 0; r < rows; ++r) cpu::rms_norm(x.data() + r * n, w, want.data() + r * n, n, 1e-6f);
    backend.rms_norm(x.data(), w, got.data(), rows, n, 1e-6f);
    EXPECT_TRUE(same_bits(want, got)) << "rms_norm, weight " << (w ? "given" : "null");
    got = x;  // in place
    backend.rms_norm(got.data(), w, got.data(), rows, n, 1e-6f);
    EXPECT_TRUE(same_bits(want, got)) << "rms_norm in place";
  }

  const std::int32_t head_dim = 32;
  const std::vector<float> factors = [&] {
    std::vector<float> f(head_dim / 2);
    for (std::size_t i = 0; i < f.size(); ++i) f[i] = 1.0f + float(i) * 0.25f;
    return f;
  }();
  for (auto kind : {compute::RopeKind::adjacent, compute::RopeKind::neox}) {
    for (const float* ff : {static_cast<const float*>(nullptr), factors.data()}) {
      compute::RopeParams p;
      p.kind = kind;
      p.n_rot = head_dim;
      p.freq_base = 10000.0f;
      p.freq_scale = 0.5f;
      p.freq_factors = ff;
      std::vector<float> want = x, got = x;
      for (std::int64_t r = 0; r < rows; ++r) cpu::rope(want.data() + r * n, n_heads, head_dim, 17 + r, p);
      backend.rope(got.data(), rows, n_heads, head_dim, 17, p);
      EXPECT_TRUE(same_bits(want, got)) << "rope kind " << int(kind) << (ff ? " with factors" : "");
    }
  }

  {
    std::vector<float> want = x, got = x;
    for (std::int64_t r = 0; r < rows; ++r) cpu::softmax(want.data() + r * n, n);
    backend.softmax(got.data(), rows, n);
    EXPECT_TRUE(same_bits(want, got)) << "softmax";
  }
  {
    // As the forward pass computed them before the seam (engine/transformer.cpp's loops).
    std::vector<float> want(x.size()), got(x.size());
    cpu::swiglu(x.data(), y.data(), want.data(), std::int64_t(x.size()));
    backend.swiglu(x.data(), y.data(), got.data(), std::int64_t(x.size()));
    EXPECT_TRUE(same_bits(want, got)) << "swiglu";
    got = x;
    backend.swiglu(got.data(), y.data(), got.data(), std::int64_t(x.size()));  // out aliases gate
    EXPECT_TRUE(same_bits(want, got)) << "swiglu in place";

    cpu::geglu(x.data(), y.data(), want.data(), std::int64_t(x.size()));
    backend.geglu(x.data(), y.data(), got.data(), std::int64_t(x.size()));
    EXPECT_TRUE(same_bits(want, got)) << "geglu";

    want = x;
    got = x;
    for (std::size_t i = 0; i < x.size(); ++i) want[i] += y[i];
    backend.add(got.data(), y.data(), std::int64_t(x.size()));
    EXPECT_TRUE(same_bits(want, got)) << "add";

    want = x;
    got = x;
    for (std::int64_t t = 0; t < rows; ++t)
      for (std::int64_t i = 0; i < n; ++i) want[std::size_t(t * n + i)] += weight[std::size_t(i)];
    backend.add_rows(got.data(), weight.data(), rows, n);
    EXPECT_TRUE(same_bits(want, got)) << "add_rows";

    want = x;
    got = x;
    for (auto& v : want) v *= 0.0625f * 3.0f;
    backend.scale(got.data(), std::int64_t(x.size()), 0.0625f * 3.0f);
    EXPECT_TRUE(same_bits(want, got)) << "scale";

    const float cap = 30.0f, inv_cap = 1.0f / cap;
    want = x;
    got = x;
    for (auto& v : want) v = cap * std::tanh(v * 20.0f * inv_cap);
    for (auto& v : got) v *= 20.0f;
    backend.softcap(got.data(), std::int64_t(x.size()), cap);
    EXPECT_TRUE(same_bits(want, got)) << "softcap";
  }
}

TEST(CpuBackend, RowOpsEqualTheKernels) { expect_row_ops_equal_the_kernels(5, 3); }

// Big enough that the backend splits rows and elements over its threads (a batch of decode rows):
// 37 rows of 288, 10656 floats, which is no multiple of the element chunk.
TEST(CpuBackend, RowOpsSplitOverThreadsEqualTheKernels) { expect_row_ops_equal_the_kernels(37, 9); }

TEST(CpuBackend, KvStoreAndAttentionEqualTheKernels) {
  cpu::CpuBackend backend;
  const std::int32_t n_head = 4, n_head_kv = 2, head_dim = 64;
  const std::int64_t row_floats = n_head_kv * head_dim, q_dim = n_head * head_dim, ctx = 40;
  for (auto type : {compute::KvType::f16, compute::KvType::q8_0}) {
    SCOPED_TRACE(compute::to_string(type));
    std::mt19937_64 rng(kSeed + std::uint64_t(type));
    const std::int64_t row_bytes = compute::kv_row_bytes(type, row_floats);
    std::vector<std::byte> k_want(std::size_t(ctx * row_bytes)), v_want(k_want.size()), k_got(k_want.size()), v_got(k_want.size());
    const compute::KvLayerView want{k_want.data(), v_want.data(), ctx, type, row_bytes};
    const compute::KvLayerView got{k_got.data(), v_got.data(), ctx, type, row_bytes};
    // Fill positions 0..ctx-1 in two calls (a prompt, then more), as two passes would.
    const std::vector<float> k = seeded(rng, ctx * row_floats), v = seeded(rng, ctx * row_floats);
    for (std::int64_t pos = 0; pos < ctx; ++pos) {
      cpu::kv_store(want, pos, row_floats, k.data() + pos * row_floats, v.data() + pos * row_floats);
    }
    backend.kv_store(got, 0, 25, row_floats, k.data(), v.data());
    backend.kv_store(got, 25, ctx - 25, row_floats, k.data() + 25 * row_floats, v.data() + 25 * row_floats);
    EXPECT_EQ(std::memcmp(k_want.data(), k_got.data(), k_want.size()), 0) << "kv_store K";
    EXPECT_EQ(std::memcmp(v_want.data(), v_got.data(), v_want.size()), 0) << "kv_store V";

    const std::int64_t rows = 9, pos0 = ctx - rows;
    const std::vector<float> q = seeded(rng, rows * q_dim);
    for (auto [window, softcap] : {std::pair{0, 0.0f}, std::pair{7, 0.0f}, std::pair{0, 50.0f}}) {
      const compute::AttentionShape shape{n_head, n_head_kv, head_dim, 1.0f / std::sqrt(float(head_dim)), window, softcap};
      std::vector<float> out_want(std::size_t(rows * q_dim)), out_got(out_want.size());
      for (std::int64_t r = 0; r < rows; ++r) cpu::attend(q.data() + r * q_dim, want, pos0 + r, shape, out_want.data() + r * q_dim);
      backend.attend(q.data(), rows, got, pos0, shape, out_got.data());
      EXPECT_TRUE(same_bits(out_want, out_got)) << "attend window " << window << " softcap " << softcap;
    }
  }
}

// Mixture-of-experts routing against a scalar reference written here: softmax in double, the k
// largest probabilities (equal ones: lower id first), renormalised to sum 1 (clamped sum).
struct Route {
  std::vector<std::int32_t> ids;
  std::vector<double> weights;
};
Route reference_route(const float* logits, std::int64_t n_expert, std::int32_t k, bool normalize) {
  double max = logits[0];
  for (std::int64_t e = 1; e < n_expert; ++e) max = std::max(max, double(logits[e]));
  std::vector<double> p(static_cast<std::size_t>(n_expert));
  double sum = 0;
  for (std::int64_t e = 0; e < n_expert; ++e) sum += p[std::size_t(e)] = std::exp(double(logits[e]) - max);
  for (double& v : p) v /= sum;
  Route r;
  std::vector<bool> taken(p.size(), false);
  for (std::int32_t j = 0; j < k; ++j) {
    std::int32_t best = -1;
    for (std::int32_t e = 0; e < n_expert; ++e) {
      if (!taken[std::size_t(e)] && (best < 0 || p[std::size_t(e)] > p[std::size_t(best)])) best = e;
    }
    taken[std::size_t(best)] = true;
    r.ids.push_back(best);
    r.weights.push_back(p[std::size_t(best)]);
  }
  if (normalize) {
    double total = 0;
    for (double w : r.weights) total += w;
    total = std::max(total, 6.103515625e-5);
    for (double& w : r.weights) w /= total;
  }
  return r;
}

TEST(CpuBackend, MoeRouteIsSoftmaxTopKRenormalised) {
  cpu::CpuBackend backend;
  std::mt19937_64 rng(kSeed);
  // Expert counts at and around the real ones (8 of Mixtral, 128 of Qwen3-30B-A3B), k from 1 to all.
  for (auto [n_expert, k] : {std::pair<std::int64_t, std::int32_t>{1, 1}, {4, 2}, {8, 2}, {8, 8}, {60, 4}, {128, 8}}) {
    for (bool normalize : {true, false}) {
      const std::int64_t rows = 7;
      const std::vector<float> logits = seeded(rng, rows * n_expert, 3.0f);
      std::vector<std::int32_t> ids(std::size_t(rows * k), -1);
      std::vector<float> weights(std::size_t(rows * k), -1.0f);
      backend.moe_route(logits.data(), rows, n_expert, k, normalize, ids.data(), weights.data());
      for (std::int64_t r = 0; r < rows; ++r) {
        const Route want = reference_route(logits.data() + r * n_expert, n_expert, k, normalize);
        double sum = 0;
        for (std::int32_t j = 0; j < k; ++j) {
          const std::size_t at = std::size_t(r * k + j);
          EXPECT_EQ(ids[at], want.ids[std::size_t(j)]) << n_expert << " experts, k " << k << ", row " << r << ", slot " << j
                                                       << " (seed " << kSeed << ")";
          EXPECT_NEAR(weights[at], want.weights[std::size_t(j)], 2e-6 * want.weights[std::size_t(j)] + 1e-9)
              << n_expert << " experts, k " << k << ", row " << r << ", slot " << j;
          sum += weights[at];
        }
        if (normalize) {
          EXPECT_NEAR(sum, 1.0, 1e-6);
        }
      }
    }
  }
}

TEST(CpuBackend, MoeRouteEdges) {
  cpu::CpuBackend backend;
  std::int32_t ids[2];
  float weights[2];
  // Equal probabilities: the lower id first; two equal winners share the weight evenly.
  const float ties[4] = {0.0f, 2.0f, 1.0f, 2.0f};
  backend.moe_route(ties, 1, 4, 2, true, ids, weights);
  EXPECT_EQ(ids[0], 1);
  EXPECT_EQ(ids[1], 3);
  EXPECT_EQ(weights[0], 0.5f);
  EXPECT_EQ(weights[1], 0.5f);
  // One dominant expert: its weight is ~1, the other's ~0, and nothing is NaN.
  const float dominant[3] = {-100.0f, 100.0f, -100.0f};
  backend.moe_route(dominant, 1, 3, 2, true, ids, weights);
  EXPECT_EQ(ids[0], 1);
  EXPECT_EQ(ids[1], 0);
  EXPECT_EQ(weights[0], 1.0f);
  EXPECT_TRUE(weights[1] >= 0.0f && weights[1] < 1e-30f);
}

TEST(CpuBackend, GatherAndScatterAddRows) {
  cpu::CpuBackend backend;
  std::mt19937_64 rng(kSeed);
  const std::int64_t n = 37, total = 9;  // a row length off every SIMD width
  const std::vector<float> x = seeded(rng, total * n);
  const std::vector<std::int32_t> rows = {7, 0, 3, 8};
  std::vector<float> gathered(rows.size() * n);
  backend.gather_rows(x.data(), n, rows, gathered.data());
  for (std::size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(0, std::memcmp(gathered.data() + i * n, x.data() + rows[i] * n, n * sizeof(float))) << "row " << i;
  }
  std::vector<float> y = seeded(rng, total * n), want = y;
  const std::vector<float> src = seeded(rng, std::int64_t(rows.size()) * n), w = {0.25f, 0.5f, 0.125f, 0.7f};
  for (std::size_t i = 0; i < rows.size(); ++i) {
    for (std::int64_t j = 0; j < n; ++j) {
      const float weighted = w[i] * src[i * n + j];
      want[rows[i] * n + j] += weighted;
    }
  }
  backend.scatter_add_rows(y.data(), n, rows, w.data(), src.data());
  EXPECT_TRUE(same_bits(want, y));
}

// Counts every call, then hands it to the CPU backend. Every op of the interface is pure
// virtual, so this decorator cannot miss one.
class CountingBackend final : public compute::ComputeBackend {
 public:
  explicit CountingBackend(compute::ComputeBackend& inner) : inner_(inner) {}
  std::map<std::string, std::int64_t> calls;
  std::int64_t count(const std::string& op) const {
    auto it = calls.find(op);
    return it == calls.end() ? 0 : it->second;
  }

  std::string_view name() const override { return "counting"; }
  const compute::BackendCapabilities& capabilities() const override { return inner_.capabilities(); }
  void matmul(const compute::WeightView& w, const float* x, std::int64_t batch, float* y) override {
    ++calls["matmul"];
    inner_.matmul(w, x, batch, y);
  }
  void dequantize(const compute::WeightView& w, float* out) override {
    ++calls["dequantize"];
    inner_.dequantize(w, out);
  }
  void get_rows(const compute::WeightView& w, std::span<const std::int32_t> ids, float* out) override {
    ++calls["get_rows"];
    inner_.get_rows(w, ids, out);
  }
  void rms_norm(const float* x, const float* weight, float* out, std::int64_t rows, std::int64_t n, float eps) override {
    ++calls["rms_norm"];
    inner_.rms_norm(x, weight, out, rows, n, eps);
  }
  void rope(float* x, std::int64_t rows, std::int32_t n_heads, std::int32_t head_dim, std::int64_t pos0,
            const compute::RopeParams& params) override {
    ++calls["rope"];
    inner_.rope(x, rows, n_heads, head_dim, pos0, params);
  }
  void softmax(float* x, std::int64_t rows, std::int64_t n) override {
    ++calls["softmax"];
    inner_.softmax(x, rows, n);
  }
  void swiglu(const float* gate, const float* up, float* out, std::int64_t n) override {
    ++calls["swiglu"];
    inner_.swiglu(gate, up, out, n);
  }
  void geglu(const float* gate, const float* up, float* out, std::int64_t n) override {
    ++calls["geglu"];
    inner_.geglu(gate, up, out, n);
  }
  void swiglu_oai(const float* gate, const float* up, float* out, std::int64_t n,
                  const compute::SwigluOaiParams& params) override {
    ++calls["swiglu_oai"];
    inner_.swiglu_oai(gate, up, out, n, params);
  }
  void add(float* x, const float* y, std::int64_t n) override {
    ++calls["add"];
    inner_.add(x, y, n);
  }
  void add_rows(float* x, const float* bias, std::int64_t rows, std::int64_t n) override {
    ++calls["add_rows"];
    inner_.add_rows(x, bias, rows, n);
  }
  void scale(float* x, std::int64_t n, float s) override {
    ++calls["scale"];
    inner_.scale(x, n, s);
  }
  void softcap(float* x, std::int64_t n, float cap) override {
    ++calls["softcap"];
    inner_.softcap(x, n, cap);
  }
  void moe_route(const float* logits, std::int64_t rows, std::int64_t n_expert, std::int32_t k, bool normalize,
                 std::int32_t* ids, float* weights) override {
    ++calls["moe_route"];
    inner_.moe_route(logits, rows, n_expert, k, normalize, ids, weights);
  }
  void moe_route_topk_softmax(const float* logits, std::int64_t rows, std::int64_t n_expert, std::int32_t k,
                              std::int32_t* ids, float* weights) override {
    ++calls["moe_route_topk_softmax"];
    inner_.moe_route_topk_softmax(logits, rows, n_expert, k, ids, weights);
  }
  void gather_rows(const float* x, std::int64_t n, std::span<const std::int32_t> rows, float* out) override {
    ++calls["gather_rows"];
    inner_.gather_rows(x, n, rows, out);
  }
  void scatter_add_rows(float* y, std::int64_t n, std::span<const std::int32_t> rows, const float* weights,
                        const float* src) override {
    ++calls["scatter_add_rows"];
    inner_.scatter_add_rows(y, n, rows, weights, src);
  }
  void kv_store(const compute::KvLayerView& kv, std::int64_t pos0, std::int64_t rows, std::int64_t row_floats, const float* k,
                const float* v) override {
    ++calls["kv_store"];
    inner_.kv_store(kv, pos0, rows, row_floats, k, v);
  }
  void attend(const float* q, std::int64_t rows, const compute::KvLayerView& kv, std::int64_t pos0,
              const compute::AttentionShape& shape, float* out) override {
    ++calls["attend"];
    inner_.attend(q, rows, kv, pos0, shape, out);
  }

 private:
  compute::ComputeBackend& inner_;
};

struct ArchCase {
  std::string arch;
  bool llama3_rope = false;  // rope_freqs.weight
};
void PrintTo(const ArchCase& c, std::ostream* os) { *os << c.arch << (c.llama3_rope ? " (llama3 rope)" : ""); }

class ForwardThroughBackend : public ::testing::TestWithParam<ArchCase> {};

// One pass of 2 sequences (spans) over a synthetic model, logits of each sequence's last row: the
// counting backend sees each op the expected number of times per layer, and the logits are the
// default (CPU) backend's, bit for bit.
TEST_P(ForwardThroughBackend, EveryOpGoesThroughTheInterface) {
  const ArchCase& param = GetParam();
  sluice::testing::TempDir dir;
  SynthOptions o;
  o.arch = param.arch;
  o.shape = synth_shape("tiny");
  o.shape.n_layer = 3;
  o.type = GgmlType::Q4_K;
  o.llama3_rope = param.llama3_rope;
  o.vocab_from.clear();
  if (param.arch == "gemma3") {
    o.head_dim = 64;
    o.sliding_window = 4;
    o.swa_pattern = 2;  // local and global layers
    o.final_softcap = 30.0f;
  }
  write_synthetic_gguf(dir.file("m.gguf"), o);
  auto model = Model::open(dir.file("m.gguf"));
  const ModelConfig& c = model->config();
  const std::int64_t L = c.n_layer;

  Batch batch;
  const std::vector<std::int32_t> a = {1, 40, 41, 42, 43, 44, 45}, b = {1, 50, 51};
  batch.add(0, 0, a, true);
  batch.add(1, 0, b, true);
  const std::int64_t spans = 2, logit_rows = 2;

  cache::KvShape shape{L, c.n_head_kv * c.head_dim, 32, 2};
  cpu::CpuBackend cpu_backend;
  CountingBackend counting(cpu_backend);
  Transformer through(c, cache::make_resident_kv_cache(shape), counting);
  Transformer plain(c, cache::make_resident_kv_cache(shape), compute::Threading{});
  EXPECT_EQ(&through.backend(), &counting);
  InRamForward forward(*model);
  std::vector<float> got, want;
  forward.forward(through, batch, got);
  forward.forward(plain, batch, want);
  EXPECT_TRUE(same_bits(want, got));

  const bool gemma = param.arch == "gemma3";
  EXPECT_EQ(counting.count("matmul"), 7 * L + 1);  // q k v o gate up down per layer, and the head
  EXPECT_EQ(counting.count("get_rows"), 1);
  // attn and ffn norms (gemma3: also q, k, and both post-norms) per layer, one per head row.
  EXPECT_EQ(counting.count("rms_norm"), (gemma ? 6 : 2) * L + logit_rows);
  EXPECT_EQ(counting.count("rope"), 2 * spans * L);
  EXPECT_EQ(counting.count("kv_store"), spans * L);
  EXPECT_EQ(counting.count("attend"), spans * L);
  EXPECT_EQ(counting.count("add"), 2 * L);  // the attention and FFN branches join the residual
  EXPECT_EQ(counting.count(gemma ? "geglu" : "swiglu"), L);
  EXPECT_EQ(counting.count(gemma ? "swiglu" : "geglu"), 0);
  EXPECT_EQ(counting.count("add_rows"), param.arch == "qwen2" ? 3 * L : 0);  // q/k/v biases
  // gemma3: the embedding scale, then q's attention scale per span per layer.
  EXPECT_EQ(counting.count("scale"), gemma ? 1 + spans * L : 0);
  EXPECT_EQ(counting.count("softcap"), gemma ? 1 : 0);
  std::int64_t total = 0;
  for (const auto& [op, n] : counting.calls) total += n;
  EXPECT_GT(total, 0);
}

INSTANTIATE_TEST_SUITE_P(Archs, ForwardThroughBackend,
                         ::testing::Values(ArchCase{"llama", true}, ArchCase{"qwen2", false}, ArchCase{"gemma3", false}),
                         [](const auto& info) { return info.param.arch; });

// A mixture of experts (qwen3moe: 8 experts, 2 per token) through the counting backend: one
// routing per layer, each expert computed at most once per layer (a gather, three matmuls, a
// SwiGLU and a scatter-add for each expert some row chose), and the default backend's logits.
TEST(ForwardThroughBackendMoe, EachExpertRunsOncePerLayerOnItsRows) {
  sluice::testing::TempDir dir;
  SynthOptions o;
  o.arch = "qwen3moe";
  o.shape = synth_shape("tiny");
  o.shape.n_layer = 3;
  o.shape.n_expert = 8;
  o.shape.n_expert_used = 2;
  o.shape.n_ff_exp = 64;
  o.head_dim = 32;
  o.type = GgmlType::Q8_0;
  o.vocab_from.clear();
  write_synthetic_gguf(dir.file("m.gguf"), o);
  auto model = Model::open(dir.file("m.gguf"));
  const ModelConfig& c = model->config();
  ASSERT_TRUE(c.is_moe() && c.qk_norm);
  const std::int64_t L = c.n_layer;

  Batch batch;
  const std::vector<std::int32_t> a = {1, 40, 41, 42, 43, 44, 45}, b = {1, 50, 51};
  batch.add(0, 0, a, true);
  batch.add(1, 0, b, true);
  cache::KvShape shape{L, c.n_head_kv * c.head_dim, 32, 2};
  cpu::CpuBackend cpu_backend;
  CountingBackend counting(cpu_backend);
  Transformer through(c, cache::make_resident_kv_cache(shape), counting);
  Transformer plain(c, cache::make_resident_kv_cache(shape), compute::Threading{});
  InRamForward forward(*model);
  std::vector<float> got, want;
  forward.forward(through, batch, got);
  forward.forward(plain, batch, want);
  EXPECT_TRUE(same_bits(want, got));

  EXPECT_EQ(counting.count("moe_route"), L);
  const std::int64_t experts_run = counting.count("gather_rows");
  EXPECT_EQ(counting.count("scatter_add_rows"), experts_run);
  EXPECT_EQ(counting.count("swiglu"), experts_run);
  EXPECT_GE(experts_run, 2 * L);  // at least k distinct experts per layer
  EXPECT_LE(experts_run, 8 * L);  // never one expert twice in a layer
  EXPECT_EQ(counting.count("matmul"), 5 * L + 3 * experts_run + 1);  // q k v o router; gate up down; head
  EXPECT_EQ(counting.count("rms_norm"), 4 * L + 2);  // attn, q heads, k heads, ffn per layer; head rows
  EXPECT_EQ(counting.count("add"), 2 * L);
}

TEST(SessionBackend, TheSessionMakesTheBackendItsTransformerComputesOn) {
  sluice::testing::TempDir dir;
  SynthOptions o;
  o.shape = synth_shape("tiny");
  o.shape.n_layer = 2;
  o.vocab_from.clear();
  write_synthetic_gguf(dir.file("m.gguf"), o);
  SessionOptions options;
  options.model = dir.file("m.gguf");
  options.n_ctx = 64;
  options.threads = 1;
  Session session(options);
  EXPECT_EQ(session.backend().name(), "cpu");
  EXPECT_EQ(session.backend().capabilities().memory, compute::MemorySpace::host);
  EXPECT_EQ(&session.transformer().backend(), &session.backend());
  EXPECT_EQ(&dynamic_cast<cpu::CpuBackend&>(session.backend()).executor(), &session.executor());
  EXPECT_EQ(session.executor().concurrency(), 1);
}

// A backend whose memory is on a device, or that lacks the cache's KV type, cannot run the
// host-buffer forward pass: refused up front, naming the backend.
class NarrowBackend final : public compute::ComputeBackend {
 public:
  explicit NarrowBackend(compute::BackendCapabilities caps) : caps_(std::move(caps)) {}
  std::string_view name() const override { return "narrow"; }
  const compute::BackendCapabilities& capabilities() const override { return caps_; }
  void matmul(const compute::WeightView&, const float*, std::int64_t, float*) override { FAIL(); }
  void dequantize(const compute::WeightView&, float*) override { FAIL(); }
  void get_rows(const compute::WeightView&, std::span<const std::int32_t>, float*) override { FAIL(); }
  void rms_norm(const float*, const float*, float*, std::int64_t, std::int64_t, float) override { FAIL(); }
  void rope(float*, std::int64_t, std::int32_t, std::int32_t, std::int64_t, const compute::RopeParams&) override { FAIL(); }
  void softmax(float*, std::int64_t, std::int64_t) override { FAIL(); }
  void swiglu(const float*, const float*, float*, std::int64_t) override { FAIL(); }
  void geglu(const float*, const float*, float*, std::int64_t) override { FAIL(); }
  void swiglu_oai(const float*, const float*, float*, std::int64_t, const compute::SwigluOaiParams&) override { FAIL(); }
  void add(float*, const float*, std::int64_t) override { FAIL(); }
  void add_rows(float*, const float*, std::int64_t, std::int64_t) override { FAIL(); }
  void scale(float*, std::int64_t, float) override { FAIL(); }
  void softcap(float*, std::int64_t, float) override { FAIL(); }
  void moe_route(const float*, std::int64_t, std::int64_t, std::int32_t, bool, std::int32_t*, float*) override { FAIL(); }
  void moe_route_topk_softmax(const float*, std::int64_t, std::int64_t, std::int32_t, std::int32_t*, float*) override {
    FAIL();
  }
  void gather_rows(const float*, std::int64_t, std::span<const std::int32_t>, float*) override { FAIL(); }
  void scatter_add_rows(float*, std::int64_t, std::span<const std::int32_t>, const float*, const float*) override { FAIL(); }
  void kv_store(const compute::KvLayerView&, std::int64_t, std::int64_t, std::int64_t, const float*, const float*) override {
    FAIL();
  }
  void attend(const float*, std::int64_t, const compute::KvLayerView&, std::int64_t, const compute::AttentionShape&,
              float*) override {
    FAIL();
  }

 private:
  compute::BackendCapabilities caps_;
};

TEST(BackendRefusal, RefusesABackendItCannotUse) {
  ModelConfig c;
  c.n_layer = 2;
  c.n_embd = 64;
  c.n_head = 2;
  c.n_head_kv = 2;
  c.head_dim = 32;
  c.n_ff = 128;
  const cache::KvShape f16{2, 64, 8, 1, compute::KvType::f16};
  const cache::KvShape q8{2, 64, 8, 1, compute::KvType::q8_0};
  auto expect_refused = [&](const compute::BackendCapabilities& caps, const cache::KvShape& shape, const std::string& why) {
    NarrowBackend backend(caps);
    try {
      Transformer t(c, cache::make_resident_kv_cache(shape), backend);
      ADD_FAILURE() << "expected a refusal: " << why;
    } catch (const std::invalid_argument& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("'narrow'"), std::string::npos) << msg;
      EXPECT_NE(msg.find(why), std::string::npos) << msg;
    }
  };
  compute::BackendCapabilities device;
  device.memory = compute::MemorySpace::device;
  device.kv_types = {compute::KvType::f16, compute::KvType::q8_0};
  expect_refused(device, f16, "device memory");
  compute::BackendCapabilities f16_only;
  f16_only.kv_types = {compute::KvType::f16};
  expect_refused(f16_only, q8, "q8_0 KV cache");
  NarrowBackend fine(f16_only);
  EXPECT_NO_THROW({ Transformer t(c, cache::make_resident_kv_cache(f16), fine); });
}

}  // namespace
}  // namespace sluice
