// Blocks streamed in pieces (engine/block_pieces.hpp): the logits equal the in-RAM pass bit for bit
// for every weight type and each dense architecture, with rows split between pieces and with a GGUF
// whose tensors lie in another order than the pass uses them (several runs per block, frames
// read twice where runs meet); a corrupt byte is named with its tensor; the planner rings them in
// ~32 MiB and keeps more blocks resident than a ring of whole blocks would.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>

#include "common/error.hpp"
#include "common/units.hpp"
#include "engine/block_pieces.hpp"
#include "engine/generate.hpp"
#include "engine/planner.hpp"
#include "engine/streamed_model.hpp"
#include "model/convert.hpp"
#include "model/gguf.hpp"
#include "model/gguf_index.hpp"
#include "model/gguf_source.hpp"
#include "tests/support/rot_byte.hpp"
#include "tests/support/small_llama.hpp"
#include "tests/support/streamed_parity.hpp"
#include "tests/support/temp_dir.hpp"
#include "tools/synth.hpp"

namespace sluice {
namespace {

// Prefill (5 rows: each piece's products go through the scatter buffer) and three decode steps
// (1 row: straight into place), against the model in RAM.
void expect_bit_identical(const std::string& gguf, StreamedModel& streamed) {
  auto in_ram = Model::open(gguf);
  const std::vector<std::int32_t> prompt = {1, 403, 407, 261, 378};
  sluice::testing::expect_streamed_matches_in_ram(*in_ram, streamed, prompt);
}

class PiecedTypes : public ::testing::TestWithParam<const char*> {};

TEST_P(PiecedTypes, LogitsBitIdenticalToInRam) {
  sluice::testing::TempDir dir;
  const std::string gguf = dir.file("m.gguf"), pack_path = dir.file("m.sluice");
  write_synthetic_gguf(gguf, sluice::testing::tiny_typed_options(GetParam()));
  pack::WriterOptions writer;
  writer.frame_bytes = 64 * 1024;  // 64 KiB frames: most rows of 256 columns end up split between two
  convert_gguf_to_pack(gguf, pack_path, writer);
  for (std::uint64_t slot : {std::uint64_t{1}, std::uint64_t{200 * 1024}}) {  // one frame per piece; a few
    SCOPED_TRACE("piece slot " + std::to_string(slot));
    StreamOptions options;
    options.prefetch.slots = 3;
    options.block_piece_slot_bytes = slot;
    options.stream_head = true;
    options.head_piece_slot_bytes = slot;
    StreamedModel streamed(pack_path, options);
    const std::uint64_t whole_block = prefetch::extent_slot_bytes(streamed.source().units()[streamed.source().find_tensor("blk.0.attn_q.weight")->extent]);
    EXPECT_LT(streamed.ring_bytes(), 3 * whole_block) << "the ring holds pieces, not blocks";
    expect_bit_identical(gguf, streamed);
    EXPECT_EQ(streamed.stats().passes, 4u);
  }
}

INSTANTIATE_TEST_SUITE_P(AllTypes, PiecedTypes,
                         ::testing::Values("F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K",
                                           "Q4_K", "Q5_K", "Q6_K", "MXFP4"));

class PiecedArchs : public ::testing::TestWithParam<const char*> {};

// qwen2's biases and gemma3's q/k and post norms stay in RAM beside the pieced matrices.
TEST_P(PiecedArchs, LogitsBitIdenticalToInRam) {
  sluice::testing::TempDir dir;
  const std::string gguf = dir.file("m.gguf");
  SynthOptions synth = sluice::testing::tiny_typed_options("Q4_K");
  synth.arch = GetParam();
  write_synthetic_gguf(gguf, synth);
  (void)gguf::write_gguf_index(gguf::ShardSet::open(gguf), gguf::sidecar_path_for(gguf), {}, 16 * 1024);
  StreamOptions options;
  options.prefetch.slots = 2;
  options.block_piece_slot_bytes = 40 * 1024;
  StreamedModel streamed(GgufSource::open(gguf), options);
  expect_bit_identical(gguf, streamed);
}

INSTANTIATE_TEST_SUITE_P(Dense, PiecedArchs, ::testing::Values("llama", "qwen2", "gemma3"));

// The synthetic GGUF rewritten with each block's tensors sorted by name (attn_k before attn_q,
// ffn_down before ffn_up; Qwen2.5's GGUF has yet another order): the pass multiplies by them in
// another order than they lie.
std::string write_name_sorted_gguf(const std::string& from, const std::string& to) {
  const gguf::File whole = gguf::File::open(from);
  gguf::Writer w;
  for (const auto& [key, value] : whole.metadata()) {
    if (key != gguf::kAlignmentKey) w.set(key, value);
  }
  std::vector<const gguf::TensorInfo*> tensors;
  for (const gguf::TensorInfo& t : whole.tensors()) tensors.push_back(&t);
  auto key = [](const gguf::TensorInfo* t) {  // globals first (-1), then blocks by number, by name within each
    const std::int64_t block = t->name.starts_with("blk.") ? std::stoll(t->name.substr(4)) : -1;
    return std::pair(block, block < 0 ? std::string() : t->name);
  };
  std::stable_sort(tensors.begin(), tensors.end(), [&](const gguf::TensorInfo* a, const gguf::TensorInfo* b) { return key(a) < key(b); });
  for (const gguf::TensorInfo* t : tensors) w.add_tensor_ref(t->name, t->type, t->dims, whole.tensor_data(*t));
  w.write(to);
  return to;
}

// A Q8_0 model in name order, indexed in 8 KiB chunks.
std::string write_sorted_indexed(const sluice::testing::TempDir& dir) {
  const std::string synth_path = dir.file("synth.gguf");
  write_synthetic_gguf(synth_path, sluice::testing::tiny_typed_options("Q8_0"));
  const std::string gguf = write_name_sorted_gguf(synth_path, dir.file("sorted.gguf"));
  (void)gguf::write_gguf_index(gguf::ShardSet::open(gguf), gguf::sidecar_path_for(gguf), {}, 8 * 1024);
  return gguf;
}

TEST(PiecedOrder, ABlockInAnotherOrderReadsSeveralRunsAndStaysBitIdentical) {
  sluice::testing::TempDir dir;
  const std::string gguf = write_sorted_indexed(dir);
  auto source = GgufSource::open(gguf);
  const SourceTensor& q = *source->find_tensor("blk.1.attn_q.weight");
  const SourceTensor& k = *source->find_tensor("blk.1.attn_k.weight");
  const SourceTensor& down = *source->find_tensor("blk.1.ffn_down.weight");
  const SourceTensor& up = *source->find_tensor("blk.1.ffn_up.weight");
  ASSERT_LT(k.offset, q.offset) << "the rewrite did not reorder the block";
  ASSERT_LT(down.offset, up.offset);
  const UnitPieces cut = cut_block_pieces(*source, q.extent, 1, 24 * 1024);
  ASSERT_EQ(cut.segments.size(), 7u);
  std::size_t runs = 1;
  for (std::size_t s = 1; s < cut.segments.size(); ++s) {
    if (cut.segments[s].tensor->offset < cut.segments[s - 1].tensor->offset) ++runs;
  }
  EXPECT_GE(runs, 3u);
  EXPECT_GT(cut.disk_bytes, 0u);
  EXPECT_EQ(cut.small.size(), 2u) << "attn_norm and ffn_norm stay in RAM";
  StreamOptions options;
  options.prefetch.slots = 2;
  options.block_piece_slot_bytes = 24 * 1024;
  StreamedModel streamed(std::move(source), options);
  expect_bit_identical(gguf, streamed);
}

TEST(PiecedOrder, ACorruptByteIsNamedWithItsTensor) {
  sluice::testing::TempDir dir;
  const std::string gguf = write_sorted_indexed(dir);
  std::uint64_t at = 0;
  {
    auto probe = GgufSource::open(gguf);
    const SourceTensor& up = *probe->find_tensor("blk.2.ffn_up.weight");
    const pack::ExtentInfo& unit = probe->units()[up.extent];
    ASSERT_TRUE(unit.ranges.size() == 1);
    at = unit.ranges[0].offset + up.offset + up.bytes / 2;
  }
  sluice::testing::rot_byte(gguf, at);  // in the middle of blk.2.ffn_up, the index still stamping the file
  StreamOptions options;
  options.prefetch.slots = 2;
  options.block_piece_slot_bytes = 24 * 1024;
  StreamedModel streamed(GgufSource::open(gguf), options);
  Transformer t(streamed.config(), 16, cpu::Threading{});
  std::vector<std::int32_t> prompt = {1, 403, 407};
  std::vector<float> logits;
  try {
    streamed.evaluate(t, prompt, 0, false, logits);
    FAIL() << "a corrupt byte went unnoticed";
  } catch (const Exception& e) {
    EXPECT_EQ(e.context().kind, ErrorKind::checksum) << e.what();
    EXPECT_NE(std::string(e.what()).find("blk.2.ffn_up.weight"), std::string::npos) << e.what();
  }
  // The next pass starts clean (and fails the same way: the byte is still wrong).
  EXPECT_THROW(streamed.evaluate(t, prompt, 0, false, logits), Exception);
}

// Blocks of ~29 MiB (a no-data GGUF: the planner reads only the header) with 1 MiB pieces: the ring
// is a full queue of reads (~32 MiB) instead of 4 whole blocks, and that room keeps more blocks resident.
TEST(PiecedPlan, TheRingHoldsAQueueOfPiecesAndMoreBlocksStayResident) {
  sluice::testing::TempDir dir;
  const std::string gguf = dir.file("big.gguf");
  SynthOptions synth;
  synth.shape = SynthShape{2048, 12, 16, 16, 2048, 128};
  synth.type = GgmlType::Q8_0;
  synth.vocab_from.clear();
  synth.no_data = true;
  write_synthetic_gguf(gguf, synth);
  auto source = GgufSource::open(gguf);
  const ModelConfig config = source->checked_config();
  PlanRequest r;
  r.n_ctx = 128;
  r.budget = 300 * MiB;
  r.disk_gbps = 2;
  const MemoryPlan whole = plan_memory(*source, config, r);
  ASSERT_GT(whole.slot_bytes, 4 * MiB);
  ASSERT_EQ(whole.block_piece_slot_bytes, 0u);
  r.block_piece_bytes = 1 * MiB;
  const MemoryPlan pieced = plan_memory(*source, config, r);
  EXPECT_EQ(pieced.block_piece_slot_bytes, 1 * MiB + kDirectAlign);
  EXPECT_LE(pieced.slot_bytes, pieced.block_piece_slot_bytes);
  EXPECT_LE(pieced.ring_bytes, kPiecedRingBytes + pieced.slot_bytes);
  EXPECT_GE(pieced.ring_bytes, kPiecedRingBytes - pieced.slot_bytes);
  EXPECT_LT(pieced.minimum, whole.minimum) << "two small slots instead of two whole blocks";
  ASSERT_LT(whole.resident_blocks.size(), std::size_t(config.n_layer)) << "choose a budget where whole blocks stream";
  EXPECT_GT(pieced.resident_blocks.size(), whole.resident_blocks.size());
  EXPECT_LT(pieced.streamed_per_pass, whole.streamed_per_pass);
  EXPECT_LE(pieced.total, r.budget);
  // Small blocks (a ring of them within a queue of reads) stay whole.
  r.block_piece_bytes = 64 * MiB;
  EXPECT_EQ(plan_memory(*source, config, r).block_piece_slot_bytes, 0u);
}

}  // namespace
}  // namespace sluice
