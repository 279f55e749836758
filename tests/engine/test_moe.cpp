// Mixture-of-experts models (qwen3moe, llama with experts = Mixtral), written by synth:
//  - expert_slice cuts expert e's rows out of a stacked expert tensor, and a pass's scratch (what
//    the planner counts per row) holds the expert buffers;
//  - a GGUF streamed block by block (every block read whole, all its experts) gives the in-RAM
//    logits bit for bit, prefill and decode, with a ring that turns over every pass;
//  - a sequence's logits do not depend on the other sequences of its pass (experts run on the
//    rows routed to them, gathered from the whole pass);
//  - synth's router skew makes a few experts popular (more than uniform routing would).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <numeric>

#include "compute/cpu/cpu_backend.hpp"
#include "engine/forward.hpp"
#include "engine/generate.hpp"
#include "engine/streamed_model.hpp"
#include "engine/weights.hpp"
#include "model/gguf_source.hpp"
#include "tests/engine/moe_models.hpp"
#include "tests/support/temp_dir.hpp"
#include "tests/support/streamed_parity.hpp"
#include "tools/synth.hpp"

namespace sluice {
namespace {

TEST(Moe, ExpertSliceIsTheExpertsRows) {
  std::vector<std::byte> bytes(3 * 5 * 64 * 4);
  compute::WeightView stacked;
  stacked.type = GgmlType::F32;
  stacked.dims = {64, 5, 3};
  stacked.data = bytes.data();
  stacked.bytes = bytes.size();
  for (std::int64_t e = 0; e < 3; ++e) {
    const compute::WeightView v = expert_slice(stacked, e);
    EXPECT_EQ(v.dims, (std::vector<std::int64_t>{64, 5}));
    EXPECT_EQ(v.rows(), 5);
    EXPECT_EQ(v.bytes, 5u * 64 * 4);
    EXPECT_EQ(v.data, bytes.data() + e * 5 * 64 * 4);
  }
}

// The planner counts a pass's rows with Transformer::scratch_bytes: with experts a row holds one
// expert's activations (n_ff_exp, not the dense feed_forward_length a qwen3moe file also
// carries), the gathered input and the expert's output, the router logits and its routes.
TEST(Moe, ScratchBytesCountTheExpertBuffers) {
  ModelConfig c;
  c.n_embd = 128;
  c.n_head = 4;
  c.n_head_kv = 2;
  c.head_dim = 32;
  c.n_ff = 6144;  // unused by a MoE layer
  c.n_expert = 128;
  c.n_expert_used = 8;
  c.n_ff_exp = 64;
  const std::uint64_t row = 2 * 128      // xn, proj
                            + 2 * 128    // q, att
                            + 2 * 64     // k, v
                            + 2 * 64     // gate, up: one expert's width
                            + 2 * 128    // moe_x, moe_out
                            + 128        // router logits
                            + 4 * 8;     // route ids and weights, by row and by expert
  EXPECT_EQ(Transformer::scratch_bytes(c, 1), row * sizeof(float));
  EXPECT_EQ(Transformer::scratch_bytes(c, 512), 512 * row * sizeof(float));
}

class MoeStreamParity : public ::testing::TestWithParam<std::string> {};

TEST_P(MoeStreamParity, StreamedGgufLogitsBitIdenticalToInRam) {
  sluice::testing::TempDir dir;
  const std::string gguf = dir.file("m.gguf");
  write_synthetic_gguf(gguf, moe_options(GetParam(), GgmlType::Q4_0));
  auto in_ram = Model::open(gguf);
  ASSERT_TRUE(in_ram->config().is_moe());
  auto source = GgufSource::open(gguf);
  StreamOptions options;
  options.prefetch.slots = 2;  // fewer slots than blocks: the ring turns over every pass
  options.prefetch.verify = source->verified();  // no index sidecar: nothing to verify against
  StreamedModel streamed(std::move(source), options);
  // Every block streams whole, experts and all.
  ASSERT_GT(streamed.streamed_bytes_per_pass(), 0u);

  const std::vector<std::int32_t> prompt = {1, 403, 407, 261, 378, 300, 301, 302};
  sluice::testing::expect_streamed_matches_in_ram(*in_ram, streamed, prompt);
}

// The same sequence alone, and beside another whose rows route to other experts: its logits
// are the same bits (an expert's rows are gathered from the pass; each row's sum runs over its
// own experts in id order).
TEST_P(MoeStreamParity, ASequencesLogitsDoNotDependOnItsBatch) {
  sluice::testing::TempDir dir;
  write_synthetic_gguf(dir.file("m.gguf"), moe_options(GetParam(), GgmlType::Q8_0));
  auto model = Model::open(dir.file("m.gguf"));
  const ModelConfig& c = model->config();
  InRamForward forward(*model);
  const std::vector<std::int32_t> a = {1, 40, 41, 42, 43, 44, 45}, b = {1, 50, 51, 52, 300, 301};
  cache::KvShape shape{c.n_layer, c.n_head_kv * c.head_dim, 32, 2};
  Transformer alone(c, cache::make_resident_kv_cache(shape), compute::Threading{});
  Transformer together(c, cache::make_resident_kv_cache(shape), compute::Threading{});
  Batch one, two;
  one.add(0, 0, a, std::int64_t(a.size()));
  two.add(1, 0, b, std::int64_t(b.size()));
  two.add(0, 0, a, std::int64_t(a.size()));
  std::vector<float> want, got;
  forward.forward(alone, one, want);
  forward.forward(together, two, got);
  const std::size_t n = a.size() * std::size_t(c.n_vocab);
  ASSERT_EQ(got.size(), (a.size() + b.size()) * std::size_t(c.n_vocab));
  EXPECT_EQ(std::memcmp(want.data(), got.data() + b.size() * std::size_t(c.n_vocab), n * sizeof(float)), 0);
}

INSTANTIATE_TEST_SUITE_P(Archs, MoeStreamParity, ::testing::Values("qwen3moe", "mixtral", "gpt-oss"),
                         [](const auto& info) { return moe_test_name(info.param); });

// Routing through a recording backend: how often each expert of layer 0 is chosen over a
// 64-token prompt. Uniform routers spread the 128 choices; skew 2 gives the most popular expert
// far more than its share, and two skewed layers favour different experts.
std::vector<std::map<std::int32_t, int>> expert_counts(float skew, const std::string& arch = "qwen3moe") {
  sluice::testing::TempDir dir;
  write_synthetic_gguf(dir.file("m.gguf"), moe_options(arch, GgmlType::F32, skew));
  auto model = Model::open(dir.file("m.gguf"));
  const ModelConfig& c = model->config();

  struct Recording final : compute::ComputeBackend {
    cpu::CpuBackend inner;
    std::vector<std::map<std::int32_t, int>> layers;
    std::string_view name() const override { return "recording"; }
    const compute::BackendCapabilities& capabilities() const override { return inner.capabilities(); }
    void matmul(const compute::WeightView& w, const float* x, std::int64_t b, float* y) override { inner.matmul(w, x, b, y); }
    void dequantize(const compute::WeightView& w, float* out) override { inner.dequantize(w, out); }
    void get_rows(const compute::WeightView& w, std::span<const std::int32_t> ids, float* out) override {
      inner.get_rows(w, ids, out);
    }
    void rms_norm(const float* x, const float* w, float* out, std::int64_t r, std::int64_t n, float eps) override {
      inner.rms_norm(x, w, out, r, n, eps);
    }
    void rope(float* x, std::int64_t r, std::int32_t h, std::int32_t d, std::int64_t p, const compute::RopeParams& rp) override {
      inner.rope(x, r, h, d, p, rp);
    }
    void softmax(float* x, std::int64_t r, std::int64_t n) override { inner.softmax(x, r, n); }
    void swiglu(const float* g, const float* u, float* o, std::int64_t n) override { inner.swiglu(g, u, o, n); }
    void geglu(const float* g, const float* u, float* o, std::int64_t n) override { inner.geglu(g, u, o, n); }
    void swiglu_oai(const float* g, const float* u, float* o, std::int64_t n, const compute::SwigluOaiParams& p) override {
      inner.swiglu_oai(g, u, o, n, p);
    }
    void add(float* x, const float* y, std::int64_t n) override { inner.add(x, y, n); }
    void add_rows(float* x, const float* b, std::int64_t r, std::int64_t n) override { inner.add_rows(x, b, r, n); }
    void scale(float* x, std::int64_t n, float s) override { inner.scale(x, n, s); }
    void softcap(float* x, std::int64_t n, float cap) override { inner.softcap(x, n, cap); }
    void moe_route(const float* logits, std::int64_t rows, std::int64_t n_expert, std::int32_t k, bool normalize,
                   std::int32_t* ids, float* weights) override {
      inner.moe_route(logits, rows, n_expert, k, normalize, ids, weights);
      auto& counts = layers.emplace_back();
      for (std::int64_t i = 0; i < rows * k; ++i) ++counts[ids[i]];
    }
    void moe_route_topk_softmax(const float* logits, std::int64_t rows, std::int64_t n_expert, std::int32_t k,
                                std::int32_t* ids, float* weights) override {
      inner.moe_route_topk_softmax(logits, rows, n_expert, k, ids, weights);
      auto& counts = layers.emplace_back();
      for (std::int64_t i = 0; i < rows * k; ++i) ++counts[ids[i]];
    }
    void gather_rows(const float* x, std::int64_t n, std::span<const std::int32_t> rows, float* out) override {
      inner.gather_rows(x, n, rows, out);
    }
    void scatter_add_rows(float* y, std::int64_t n, std::span<const std::int32_t> rows, const float* w,
                          const float* src) override {
      inner.scatter_add_rows(y, n, rows, w, src);
    }
    void kv_store(const compute::KvLayerView& kv, std::int64_t p, std::int64_t r, std::int64_t f, const float* k,
                  const float* v) override {
      inner.kv_store(kv, p, r, f, k, v);
    }
    void attend(const float* q, std::int64_t r, const compute::KvLayerView& kv, std::int64_t p,
                const compute::AttentionShape& s, float* out) override {
      inner.attend(q, r, kv, p, s, out);
    }
  } recording;
  Transformer t(c, cache::make_resident_kv_cache(cache::KvShape{c.n_layer, c.n_head_kv * c.head_dim, 64, 1}), recording);
  std::vector<std::int32_t> prompt(64);
  for (std::size_t i = 0; i < prompt.size(); ++i) prompt[i] = std::int32_t(300 + 3 * i);
  std::vector<float> logits;
  evaluate(t, *model, prompt, 0, false, logits);
  return recording.layers;
}

int most_chosen(const std::map<std::int32_t, int>& counts) {
  return std::max_element(counts.begin(), counts.end(), [](auto& a, auto& b) { return a.second < b.second; })->first;
}

class MoeRouterSkew : public ::testing::TestWithParam<std::string> {};

// gpt-oss routes on the raw logits (top-k, then softmax over those k): the skew's bias orders them alike.
TEST_P(MoeRouterSkew, MakesAFewExpertsPopular) {
  const auto uniform = expert_counts(0.0f, GetParam()), skewed = expert_counts(2.0f, GetParam());
  ASSERT_EQ(uniform.size(), 3u);
  ASSERT_EQ(skewed.size(), 3u);
  // 64 tokens x 2 choices over 8 experts: 16 each on average.
  const auto top = [](const std::map<std::int32_t, int>& m) {
    int best = 0;
    for (const auto& [e, n] : m) best = std::max(best, n);
    return best;
  };
  for (std::size_t il = 0; il < 3; ++il) {
    SCOPED_TRACE(il);
    EXPECT_LT(top(uniform[il]), 40) << "uniform routing piles onto one expert";
    EXPECT_GE(top(skewed[il]), 48) << "skew 2: the favourite takes most tokens (P ~ 1 / (r + 1)^2)";
  }
  // A permutation of its own per layer: not every layer favours the same expert.
  const int f0 = most_chosen(skewed[0]), f1 = most_chosen(skewed[1]), f2 = most_chosen(skewed[2]);
  EXPECT_FALSE(f0 == f1 && f1 == f2) << "every layer favours expert " << f0;
}

INSTANTIATE_TEST_SUITE_P(Archs, MoeRouterSkew, ::testing::Values("qwen3moe", "gpt-oss"),
                         [](const auto& info) { return moe_test_name(info.param); });

}  // namespace
}  // namespace sluice
