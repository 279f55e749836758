// The memory planner: sums its items, fits the ring to the budget, and refuses a budget below the
// minimum with a message that names the minimum.
#include <gtest/gtest.h>

#include "common/units.hpp"
#include "engine/planner.hpp"
#include "model/convert.hpp"
#include "tools/synth.hpp"
#include "model/metadata.hpp"
#include "tests/support/small_llama.hpp"
#include "tests/support/temp_dir.hpp"

namespace sluice {
namespace {

// A stories260K-shaped synthetic model (tests/support/small_llama.hpp) as a pack, or (layers > 0)
// a synthetic Q8_0 model with that many layers in a raw pack, where a ring slot is the size of a
// block. Both carry the built-in vocabulary: no ../shared needed.
struct Fixture {
  sluice::testing::TempDir dir;
  std::string path;
  std::unique_ptr<pack::Pack> pack;
  ModelConfig config;
  explicit Fixture(std::int64_t layers = 0) {
    path = dir.file("s.sluice");
    if (layers == 0) {
      convert_gguf_to_pack(sluice::testing::write_small_llama(dir.file("m.gguf")), path, pack::WriterOptions{});
    } else {
      SynthOptions synth;
      synth.shape = synth_shape("tiny");
      synth.shape.n_layer = layers;
      synth.type = GgmlType::Q8_0;
      synth.vocab_from.clear();
      write_synthetic_gguf(dir.file("m.gguf"), synth);
      pack::WriterOptions raw;
      raw.compress = pack::WriterOptions::Compress::none;
      convert_gguf_to_pack(dir.file("m.gguf"), path, raw);
    }
    pack = std::make_unique<pack::Pack>(pack::Pack::open(path));
    config = config_from_metadata(*metadata_of(pack->metadata(), path));
  }
};

std::uint64_t parts(const MemoryPlan& p) {
  return p.small_bytes + (p.head_resident ? p.head_bytes : 0) + (p.embedding_resident ? p.embedding_bytes : 0) +
         p.resident_block_bytes + p.ring_bytes + p.kv_bytes + p.activation_bytes + p.overhead_bytes;
}

TEST(Planner, RoomyBudgetKeepsEverythingResidentAndStreamsNothing) {
  Fixture f;
  PlanRequest r;
  r.budget = 1ull << 30;
  r.n_ctx = 128;
  r.pass_tokens = 8;
  r.disk_gbps = 2.0;
  MemoryPlan p = plan_memory(*f.pack, f.config, r);
  EXPECT_EQ(p.resident_blocks.size(), 5u);
  EXPECT_EQ(p.streamed_per_pass, 0u);
  EXPECT_EQ(p.ring_bytes, 0u);
  EXPECT_TRUE(p.head_resident);
  EXPECT_FALSE(p.kv_spilled);
  EXPECT_EQ(p.kv_bytes, 2ull * 5 * 128 * 4 * 8 * 2);  // K and V, 5 layers, 128 positions, 4 kv heads x 8 dims, fp16
  EXPECT_EQ(p.total, parts(p));
  EXPECT_LE(p.total, r.budget);

  r.allow_resident_blocks = false;  // --stream on: every block streams through a ring
  MemoryPlan streaming = plan_memory(*f.pack, f.config, r);
  EXPECT_TRUE(streaming.resident_blocks.empty());
  EXPECT_EQ(streaming.slots, 4u);
  EXPECT_GT(streaming.streamed_per_pass, 0u);
  EXPECT_GT(streaming.predicted_seconds_per_pass(), 0.0);
}

TEST(Planner, BudgetBetweenMinimumAndAllDecidesTheResidentSet) {
  Fixture f(12);
  PlanRequest r;
  r.n_ctx = 128;
  r.pass_tokens = 8;
  r.kv_spill = SpillMode::never;  // at the minimum the planner would otherwise spill the KV cache
  r.budget = 1ull << 30;
  const MemoryPlan all = plan_memory(*f.pack, f.config, r);
  r.budget = all.minimum;
  const MemoryPlan tight = plan_memory(*f.pack, f.config, r);
  EXPECT_EQ(tight.slots, 2u);
  EXPECT_TRUE(tight.resident_blocks.empty());
  EXPECT_EQ(tight.total, parts(tight));
  EXPECT_LE(tight.total, r.budget);
  std::uint64_t blocks_disk = 0;
  for (const auto& e : f.pack->extents()) blocks_disk += e.name.rfind("blk.", 0) == 0 ? e.disk_bytes : 0;
  // At the minimum the (small) head streams too: resident it would cost more than a slot.
  EXPECT_EQ(tight.streamed_per_pass > blocks_disk, !tight.head_resident);
  EXPECT_GE(tight.streamed_per_pass, blocks_disk);
  // Room for two more slots and two and a half blocks: four slots and a fixed set of two, spread out.
  const std::uint64_t block = blocks_disk / 12;
  r.budget = tight.total + tight.head_bytes + 2 * tight.slot_bytes + 2 * block + block / 2;
  const MemoryPlan some = plan_memory(*f.pack, f.config, r);
  EXPECT_EQ(some.slots, 4u);
  EXPECT_TRUE(some.head_resident);
  EXPECT_EQ(some.resident_blocks, (std::vector<std::int64_t>{0, 6}));
  EXPECT_EQ(some.total, parts(some));
  EXPECT_LE(some.total, r.budget);
  EXPECT_LT(some.streamed_per_pass, tight.streamed_per_pass);
}

TEST(Planner, SpillsTheKvCacheOnlyWhenItMustAndRefusesWithTheMinimum) {
  Fixture f(12);
  PlanRequest r;
  r.n_ctx = 2048;
  r.n_seq = 16;
  r.pass_tokens = 16;
  r.budget = 4ull << 30;
  const MemoryPlan resident = plan_memory(*f.pack, f.config, r);
  EXPECT_FALSE(resident.kv_spilled);
  EXPECT_EQ(resident.kv_bytes, resident.kv_full_bytes);
  // One byte below what the resident cache needs with a 2-slot ring (even with the head streamed).
  r.budget = resident.small_bytes + resident.kv_full_bytes + resident.activation_bytes +
             resident.overhead_bytes + 2 * resident.slot_bytes - 1;
  const MemoryPlan spilled = plan_memory(*f.pack, f.config, r);
  EXPECT_TRUE(spilled.kv_spilled);
  EXPECT_EQ(spilled.kv_bytes * 6, spilled.kv_full_bytes);  // two of twelve layers in RAM
  EXPECT_GT(spilled.resident_blocks.size(), 0u) << "the room the KV cache left goes to blocks";
  EXPECT_LE(spilled.total, r.budget);
  r.kv_spill = SpillMode::never;
  try {
    plan_memory(*f.pack, f.config, r);
    FAIL() << "expected the budget to be refused without spilling";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("--kv-spill"), std::string::npos) << e.what();
  }
  r.kv_spill = SpillMode::automatic;
  r.budget = spilled.minimum - 1;
  try {
    plan_memory(*f.pack, f.config, r);
    FAIL() << "expected the budget to be refused";
  } catch (const std::runtime_error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("too small"), std::string::npos) << msg;
    EXPECT_NE(msg.find("the minimum is " + format_bytes(spilled.minimum)), std::string::npos) << msg;
    EXPECT_NE(msg.find("--mem-budget"), std::string::npos) << msg;
  }
  r.budget = spilled.minimum;
  EXPECT_NO_THROW(plan_memory(*f.pack, f.config, r));
}

TEST(Planner, Q8KvHalvesTheCacheAndIsRefusedForRowsThatAreNotWholeBlocks) {
  Fixture f;
  PlanRequest r;
  r.n_ctx = 256;
  r.budget = 1ull << 30;
  const MemoryPlan f16 = plan_memory(*f.pack, f.config, r);
  r.kv_type = cpu::KvType::q8_0;
  const MemoryPlan q8 = plan_memory(*f.pack, f.config, r);
  EXPECT_EQ(q8.kv_bytes * 32, f16.kv_bytes * 17);
  ModelConfig odd = f.config;
  odd.head_dim = 6;  // 4 x 6 = 24 values per row
  EXPECT_THROW(plan_memory(*f.pack, odd, r), std::invalid_argument);
}

}  // namespace
}  // namespace sluice
