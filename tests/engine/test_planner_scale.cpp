// The planner at full scale without a 57 GB file: synthetic GGUFs of the 100B and 70B shapes
// written with no tensor data (tools/synth.hpp no_data: the data section is a hole), opened as
// the real GgufSource, and planned under the budgets the team runs them in (20 GiB / 16 GiB) at
// batch 1 x 4096, 16 x 2048 and 64 x 2048. Every byte count past 4 GiB (a 700 MB block, a 43 GB
// KV cache, a 57 GB model) is checked exactly, so a 32-bit count anywhere on the way shows.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <sstream>

#include <fmt/format.h>

#include "cache/kv_cache.hpp"
#include "common/units.hpp"
#include "engine/planner.hpp"
#include "engine/transformer.hpp"
#include "model/gguf_source.hpp"
#include "model/tensor_names.hpp"
#include "tests/support/temp_dir.hpp"
#include "tools/synth.hpp"

namespace sluice {
namespace {

struct Shape {
  const char* name;
  SynthShape shape;
  std::uint64_t budget;
};

// n_embd, n_layer, n_head, n_head_kv, n_ff, n_ctx (trained)
const Shape k100b{"100b", {10240, 80, 80, 8, 32768, 8192}, 20 * GiB};
const Shape k70b{"70b", {8192, 80, 64, 8, 28672, 8192}, 16 * GiB};
constexpr std::int64_t kVocab = 128256;  // Llama 3's
// Fixed, so the per-thread scratch the plan counts does not depend on the machine.
constexpr int kThreads = 16;

// One no-data GGUF per shape for the whole suite: the built-in vocabulary of 128256 tokens takes
// a moment to build, and the file is a few MB of header in front of a hole.
class PlannerScale : public ::testing::TestWithParam<const Shape*> {
 protected:
  static sluice::testing::TempDir* dir_;
  static void SetUpTestSuite() { dir_ = new sluice::testing::TempDir(); }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static const GgufSource& source(const Shape& s) {
    static std::map<std::string, std::unique_ptr<GgufSource>> sources;
    auto& src = sources[s.name];
    if (!src) {
      SynthOptions o;
      o.shape = s.shape;
      o.type = GgmlType::Q4_0;
      o.embedding_type = GgmlType::Q4_0;
      o.vocab_from.clear();
      o.vocab_size = kVocab;
      o.no_data = true;
      const std::string path = dir_->file(std::string(s.name) + ".gguf");
      write_synthetic_gguf(path, o);
      src = GgufSource::open(path);
    }
    return *src;
  }
};
sluice::testing::TempDir* PlannerScale::dir_ = nullptr;

std::uint64_t parts(const MemoryPlan& p) {
  return p.small_bytes + (p.head_resident ? p.head_bytes : 0) + (p.embedding_resident ? p.embedding_bytes : 0) +
         p.resident_block_bytes + p.ring_bytes + p.kv_bytes + p.activation_bytes + p.overhead_bytes;
}

PlanRequest request(std::uint64_t budget, std::int32_t n_seq, std::int64_t n_ctx) {
  PlanRequest r;
  r.budget = budget;
  r.n_seq = n_seq;
  r.n_ctx = n_ctx;
  r.pass_tokens = 512;  // the session's default
  r.compute_threads = kThreads;
  r.kv_spill_dir = "/spill";
  return r;
}

TEST_P(PlannerScale, TheSourceDescribesTheWholeModelWithoutData) {
  const Shape& s = *GetParam();
  const GgufSource& src = source(s);
  const ModelConfig c = src.checked_config();
  EXPECT_EQ(c.n_layer, 80);
  EXPECT_EQ(c.n_vocab, kVocab);
  std::uint64_t weights = 0;
  for (const auto& t : src.tensors()) weights += t.bytes;
  // Q4_0: 18 bytes per 32 weights. Per block: q and o (embd^2), k and v (embd x kv), gate, up,
  // down (embd x ff); embedding and head (embd x vocab); norms in F32.
  const std::uint64_t E = std::uint64_t(s.shape.n_embd), F = std::uint64_t(s.shape.n_ff), K = 8 * 128;
  const std::uint64_t block = (2 * E * E + 2 * E * K + 3 * E * F) / 32 * 18 + 2 * E * 4;
  const std::uint64_t expected = 80 * block + 2 * E * std::uint64_t(kVocab) / 32 * 18 + E * 4;
  EXPECT_EQ(weights, expected);
  EXPECT_GT(weights, 4 * GiB);  // past 32 bits
  std::uint64_t largest_block = 0;
  for (const auto& u : src.units()) {
    if (names::block_extent_index(u.name, c.n_layer)) largest_block = std::max(largest_block, u.raw_bytes);
  }
  EXPECT_GE(largest_block, block);  // a unit holds its block's tensors (padding included)
  if (s.shape.n_embd == 10240) {
    EXPECT_GT(weights, 56'000'000'000ull);  // the ~57 GB of a 100B at Q4_0
    EXPECT_GT(largest_block, 690'000'000ull);  // ~700 MB per block
  }
}

TEST_P(PlannerScale, EveryBatchPlansWithinTheBudget) {
  const Shape& s = *GetParam();
  const GgufSource& src = source(s);
  const ModelConfig c = src.checked_config();
  std::uint64_t largest_block = 0;
  std::vector<std::uint64_t> block_disk(80, 0);
  for (const auto& u : src.units()) {
    if (const auto il = names::block_extent_index(u.name, c.n_layer)) {
      largest_block = std::max(largest_block, u.raw_bytes);
      block_disk[std::size_t(*il)] = u.disk_bytes;
    }
  }
  struct Case {
    std::int32_t n_seq;
    std::int64_t n_ctx;
  };
  for (const Case cs : {Case{1, 4096}, Case{16, 2048}, Case{64, 2048}}) {
    SCOPED_TRACE(::testing::Message() << s.name << " " << cs.n_seq << " x " << cs.n_ctx);
    const PlanRequest r = request(s.budget, cs.n_seq, cs.n_ctx);
    MemoryPlan p;
    ASSERT_NO_THROW(p = plan_memory(src, c, r));
    std::ostringstream table;
    print_plan(p, table);
    SCOPED_TRACE(table.str());
    EXPECT_LE(p.total, r.budget);
    EXPECT_EQ(p.total, parts(p));
    EXPECT_LE(p.minimum, p.total);
    // The model does not fit: blocks stream through a ring whose slot holds the largest block.
    EXPECT_TRUE(p.streams());
    EXPECT_GE(p.slots, 2u);
    EXPECT_GE(p.slot_bytes, largest_block);
    EXPECT_EQ(p.ring_bytes, std::uint64_t(p.slots) * p.slot_bytes);
    std::uint64_t streamed = p.head_resident ? 0 : src.units()[src.find_tensor(names::kOutput)->extent].disk_bytes;
    for (std::int64_t il = 0; il < 80; ++il) {
      if (!std::binary_search(p.resident_blocks.begin(), p.resident_blocks.end(), il)) streamed += block_disk[std::size_t(il)];
    }
    EXPECT_EQ(p.streamed_per_pass, streamed);
    EXPECT_LT(p.resident_blocks.size(), 80u);
    EXPECT_LE(p.resident_block_bytes + p.ring_bytes, r.budget);
    // The KV cache, exactly: layers x K and V x kv heads x head dim x positions x sequences x f16.
    const std::uint64_t kv = 80ull * 2 * 8 * 128 * std::uint64_t(cs.n_ctx) * std::uint64_t(cs.n_seq) * 2;
    EXPECT_EQ(p.kv_full_bytes, kv);
    // Spilled exactly when the resident cache with the least else (2 slots, head streamed, one
    // token per pass) would not fit.
    const bool must_spill = kv + p.small_bytes + p.overhead_bytes + 2 * p.slot_bytes > r.budget;
    if (must_spill) {
      EXPECT_TRUE(p.kv_spilled);
    }
    if (p.kv_spilled) {
      EXPECT_EQ(p.kv_bytes, 2 * kv / 80);  // two layers in RAM
      cache::KvShape shape{80, 8 * 128, cs.n_ctx, cs.n_seq, compute::KvType::f16};
      EXPECT_EQ(p.kv_spill_file_bytes, cache::spilled_kv_file_bytes(shape));
      EXPECT_GE(p.kv_spill_file_bytes, kv);
      EXPECT_NE(table.str().find("KV spill file"), std::string::npos);
    } else {
      EXPECT_EQ(p.kv_bytes, kv);
    }
    // Activations: every row of a pass (at least one per sequence) at the per-row cost, which
    // covers the block's scratch and the residual row.
    EXPECT_EQ(p.pass_tokens, 512);
    EXPECT_EQ(p.pass.tokens, std::max<std::int64_t>(512, cs.n_seq));
    EXPECT_GE(p.pass.per_token, Transformer::scratch_bytes(c, 1) + std::uint64_t(c.n_embd) * sizeof(float));
    EXPECT_EQ(p.pass.token_bytes, std::uint64_t(p.pass.tokens) * p.pass.per_token);
    EXPECT_GE(p.pass.logits_bytes, std::uint64_t(cs.n_seq) * std::uint64_t(kVocab) * sizeof(float));
    EXPECT_EQ(p.activation_bytes, p.pass.total());
  }
}

TEST_P(PlannerScale, Batch64SpillsAndSaysWhenTheSpillDirectoryIsShort) {
  const Shape& s = *GetParam();
  const GgufSource& src = source(s);
  const ModelConfig c = src.checked_config();
  PlanRequest r = request(s.budget, 64, 2048);
  // 43 GB of KV does not fit 16-20 GiB: spilled, 2 layers in RAM.
  r.kv_spill_free_bytes = 100 * GiB;
  const MemoryPlan roomy = plan_memory(src, c, r);
  ASSERT_TRUE(roomy.kv_spilled);
  EXPECT_GT(roomy.kv_spill_file_bytes, 40'000'000'000ull);
  EXPECT_FALSE(roomy.kv_spill_disk_short);
  std::ostringstream roomy_table;
  print_plan(roomy, roomy_table);
  EXPECT_EQ(roomy_table.str().find("WARNING"), std::string::npos) << roomy_table.str();
  EXPECT_NE(roomy_table.str().find("in /spill (" + format_bytes(100 * GiB) + " free)"), std::string::npos) << roomy_table.str();
  // 15 GB free (the dev machine's disk): the sparse file would fill it a third of the way.
  r.kv_spill_free_bytes = 15'000'000'000ull;
  const MemoryPlan short_disk = plan_memory(src, c, r);
  EXPECT_TRUE(short_disk.kv_spill_disk_short);
  EXPECT_EQ(short_disk.kv_spill_positions_fit, std::int64_t(15'000'000'000ull / (short_disk.kv_spill_file_bytes / 2048)));
  EXPECT_GT(short_disk.kv_spill_positions_fit, 0);
  EXPECT_LT(short_disk.kv_spill_positions_fit, 2048);
  std::ostringstream table;
  print_plan(short_disk, table);
  const std::string text = table.str();
  EXPECT_NE(text.find("WARNING: the KV spill file needs " + format_bytes(short_disk.kv_spill_file_bytes) +
                      " at full context x sequences, and only " + format_bytes(15'000'000'000ull) + " is free in /spill"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find(fmt::format("~{} of 2048 positions each", short_disk.kv_spill_positions_fit)), std::string::npos) << text;
  // A pass holds at least one row per sequence however small --pass-tokens is, and a prefill
  // pass of 64 x 32 prompt tokens is counted whole (2048 rows of activations).
  r.kv_spill_free_bytes.reset();
  r.pass_tokens = 16;
  const MemoryPlan rows64 = plan_memory(src, c, r);
  EXPECT_EQ(rows64.pass.tokens, 64);
  EXPECT_EQ(rows64.pass.token_bytes, 64 * rows64.pass.per_token);
  r.pass_tokens = 64 * 32;
  const MemoryPlan prefill = plan_memory(src, c, r);
  EXPECT_EQ(prefill.pass_tokens, 64 * 32);
  EXPECT_EQ(prefill.pass.token_bytes, std::uint64_t(64 * 32) * prefill.pass.per_token);
  EXPECT_GT(prefill.pass.token_bytes, 64 * 32 * Transformer::scratch_bytes(c, 1));
  EXPECT_LE(prefill.total, r.budget);
  EXPECT_EQ(prefill.total, parts(prefill));
  // The rows' bytes come out of the resident blocks, not out of the budget's margin.
  EXPECT_LE(prefill.resident_block_bytes, rows64.resident_block_bytes);
  r.pass_tokens = 512;
  // Refused the spill, the budget cannot hold the cache: the error says how to get one.
  r.kv_spill = SpillMode::never;
  try {
    plan_memory(src, c, r);
    FAIL() << "a 43 GB resident KV cache was planned within " << format_bytes(r.budget);
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("--kv-spill"), std::string::npos) << e.what();
  }
}

TEST_P(PlannerScale, ABudgetBelowTheMinimumIsRefusedWithTheMinimum) {
  const Shape& s = *GetParam();
  const GgufSource& src = source(s);
  const ModelConfig c = src.checked_config();
  PlanRequest r = request(s.budget, 64, 2048);
  const MemoryPlan p = plan_memory(src, c, r);
  r.budget = p.minimum - 1;
  try {
    plan_memory(src, c, r);
    FAIL() << "planned below the minimum";
  } catch (const std::runtime_error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("the minimum is " + format_bytes(p.minimum)), std::string::npos) << msg;
  }
  // The minimum holds two slots of a ~700 MB block: a 1 GiB budget is physically impossible.
  r.budget = 1 * GiB;
  EXPECT_THROW(plan_memory(src, c, r), std::runtime_error);
}

INSTANTIATE_TEST_SUITE_P(Shapes, PlannerScale, ::testing::Values(&k100b, &k70b),
                         [](const ::testing::TestParamInfo<const Shape*>& info) { return std::string("llama_") + info.param->name; });

}  // namespace
}  // namespace sluice
