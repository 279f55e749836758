// `sluice synth` at real size: the 100b shape's exact parameter count (worked out by hand from the
// shape), the predicted file size equal to the written one (one file and gguf-split shards), and
// shards written straight away equal, byte for byte, to the unsplit file cut by split_gguf.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "model/gguf_splitter.hpp"
#include "tests/support/temp_dir.hpp"
#include "tools/synth.hpp"

namespace sluice {
namespace {

std::uint64_t file_size(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return static_cast<std::uint64_t>(st.st_size);
}

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

SynthOptions small_options(const std::string& arch, GgmlType type) {
  SynthOptions o;
  o.arch = arch;
  o.shape = synth_shape("tiny");
  o.shape.n_layer = 2;
  o.type = type;
  o.vocab_size = 1000;
  return o;
}

TEST(SynthLayout, Shape100bHasTheExpectedParameterCount) {
  SynthOptions o;
  o.shape = synth_shape("100b");
  o.vocab_size = 128256;
  const SynthShape& s = o.shape;
  EXPECT_EQ(s.n_layer, 80);
  EXPECT_EQ(s.n_embd, 10240);
  EXPECT_EQ(s.n_head, 80);
  EXPECT_EQ(s.n_head_kv, 8);
  EXPECT_EQ(s.n_ff, 32768);
  EXPECT_EQ(s.n_ctx, 4096);
  // By hand: head dim 128, so k and v are 8 x 128 = 1024 wide.
  const std::uint64_t E = 10240, F = 32768, V = 128256, KV = 8 * 128;
  const std::uint64_t per_layer = E * E        // attn_q
                                  + E * KV     // attn_k
                                  + E * KV     // attn_v
                                  + E * E      // attn_output
                                  + E * F * 3  // ffn_gate, ffn_up, ffn_down
                                  + E * 2;     // attn_norm, ffn_norm
  const std::uint64_t expected = 80 * per_layer + V * E /* token_embd */ + V * E /* output */ + E /* output_norm */;
  EXPECT_EQ(expected, 101'613'905'920u);
  const SynthLayout layout = plan_synthetic_gguf("unused.gguf", o);
  EXPECT_EQ(layout.parameters, expected);
  ASSERT_EQ(layout.files.size(), 1u);
  // Q4_0 matrices (18 bytes per 32), a Q8_0 embedding (34 per 32), F32 norms; each tensor padded
  // to 32 bytes (all are already multiples of 32 here) after a header of a few MB.
  const std::uint64_t tensor_bytes = 80 * ((per_layer - 2 * E) / 32 * 18 + 2 * E * 4) + V * E / 32 * 34 +
                                     V * E / 32 * 18 + E * 4;
  EXPECT_EQ(layout.tensor_bytes, tensor_bytes);
  EXPECT_GT(layout.file_bytes, tensor_bytes);
  EXPECT_LT(layout.file_bytes, tensor_bytes + 8 * 1024 * 1024) << "the header holds 128256 tokens, not more";
}

// The mixtures of experts at real size, by hand: Qwen3-30B-A3B (30.5B parameters, 3.3B active)
// and Mixtral 8x7B (46.7B), the counts their model cards give.
TEST(SynthLayout, MoeShapesHaveTheRealModelsParameterCounts) {
  {
    SynthOptions o;
    o.shape = synth_shape("qwen3-30b-a3b");
    o.arch = o.shape.arch;
    o.vocab_size = o.shape.n_vocab;
    EXPECT_EQ(o.arch, "qwen3moe");
    const std::uint64_t E = 2048, V = 151936, Q = 32 * 128, KV = 4 * 128, X = 128, FX = 768, D = 128;
    const std::uint64_t per_layer = E * Q + 2 * E * KV + Q * E  // attn_q, attn_k, attn_v, attn_output
                                    + 2 * D                     // attn_q_norm, attn_k_norm
                                    + E * X                     // ffn_gate_inp (router)
                                    + 3 * E * FX * X            // ffn_gate_exps, ffn_up_exps, ffn_down_exps
                                    + 2 * E;                    // attn_norm, ffn_norm
    const std::uint64_t expected = 48 * per_layer + 2 * V * E + E;
    EXPECT_EQ(expected, 30'532'122'624u);
    EXPECT_EQ(plan_synthetic_gguf("unused.gguf", o).parameters, expected);
  }
  {
    SynthOptions o;
    o.shape = synth_shape("mixtral-8x7b");
    o.arch = o.shape.arch;
    o.vocab_size = o.shape.n_vocab;
    EXPECT_EQ(o.arch, "llama");
    const std::uint64_t E = 4096, V = 32000, KV = 8 * 128, X = 8, F = 14336;
    const std::uint64_t per_layer = 2 * E * E + 2 * E * KV + E * X + 3 * E * F * X + 2 * E;
    const std::uint64_t expected = 32 * per_layer + 2 * V * E + E;
    EXPECT_EQ(expected, 46'702'792'704u);
    EXPECT_EQ(plan_synthetic_gguf("unused.gguf", o).parameters, expected);
  }
}

// Experts and a skewed router: the planned size is the written one, and the same options write
// the same bytes (the per-layer permutations are seeded).
TEST(SynthLayout, MoeModelsAreSizedAsPlannedAndReproducible) {
  sluice::testing::TempDir dir;
  for (const char* arch : {"qwen3moe", "llama"}) {
    SCOPED_TRACE(arch);
    SynthOptions o = small_options(arch, GgmlType::Q8_0);
    o.shape.n_expert = 4;
    o.shape.n_expert_used = 2;
    if (std::string(arch) == "qwen3moe") o.shape.n_ff_exp = 128;
    o.router_skew = 1.0f;
    const std::string a = dir.file(std::string(arch) + "-a.gguf"), b = dir.file(std::string(arch) + "-b.gguf");
    const SynthLayout planned = plan_synthetic_gguf(a, o);
    EXPECT_EQ(write_synthetic_gguf(a, o).file_bytes, planned.file_bytes);
    EXPECT_EQ(file_size(a), planned.file_bytes);
    write_synthetic_gguf(b, o);
    EXPECT_TRUE(read_all(a) == read_all(b)) << "two writes of the same options differ";
  }
}

TEST(SynthLayout, PredictedSizeIsTheWrittenSize) {
  sluice::testing::TempDir dir;
  for (const auto& [arch, type] : {std::pair{"llama", GgmlType::Q4_0}, std::pair{"qwen2", GgmlType::Q4_K},
                                   std::pair{"gemma3", GgmlType::Q8_0}}) {
    SCOPED_TRACE(arch);
    const SynthOptions o = small_options(arch, type);
    const std::string path = dir.file(std::string(arch) + ".gguf");
    const SynthLayout planned = plan_synthetic_gguf(path, o);
    const SynthLayout written = write_synthetic_gguf(path, o);
    EXPECT_EQ(planned.file_bytes, written.file_bytes);
    EXPECT_EQ(file_size(path), planned.file_bytes);
  }
}

TEST(SynthLayout, ShardsWrittenDirectlyEqualASplitOfTheUnsplitFile) {
  sluice::testing::TempDir dir;
  const SynthOptions o = small_options("llama", GgmlType::Q4_K);
  constexpr std::uint64_t kMaxBytes = 300 * 1024;
  const std::string whole = dir.file("whole.gguf");
  write_synthetic_gguf(whole, o);
  const gguf::SplitPlan reference = gguf::split_gguf(whole, dir.file("cut"), {.max_bytes = kMaxBytes});
  ASSERT_GT(reference.shards.size(), 2u);

  std::uint64_t progress_done = 0, progress_total = 0;
  SynthWriteOptions w;
  w.split_max_bytes = kMaxBytes;
  w.progress = [&](std::uint64_t done, std::uint64_t total) {
    EXPECT_GE(done, progress_done);
    progress_done = done;
    progress_total = total;
  };
  const std::string out = dir.file("direct.gguf");
  const SynthLayout planned = plan_synthetic_gguf(out, o, kMaxBytes);
  const SynthLayout written = write_synthetic_gguf(out, o, w);
  EXPECT_EQ(progress_done, progress_total);
  EXPECT_EQ(progress_total, planned.tensor_bytes);
  ASSERT_EQ(written.files.size(), reference.shards.size());
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < written.files.size(); ++i) {
    SCOPED_TRACE(written.files[i].path);
    EXPECT_EQ(written.files[i].path, gguf::split_path(dir.file("direct"), i + 1, reference.shards.size()));
    EXPECT_EQ(file_size(written.files[i].path), written.files[i].file_bytes);
    EXPECT_EQ(planned.files[i].file_bytes, written.files[i].file_bytes);
    EXPECT_TRUE(read_all(written.files[i].path) == read_all(reference.shards[i].path)) << "differs from " << reference.shards[i].path;
    total += file_size(written.files[i].path);
  }
  EXPECT_EQ(total, planned.file_bytes);
  struct stat st {};
  EXPECT_NE(::stat(out.c_str(), &st), 0) << "no unsplit file is written";
}

}  // namespace
}  // namespace sluice
