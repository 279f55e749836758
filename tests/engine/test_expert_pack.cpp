// Experts read one by one from a pack (issue 15, expert extents: model/pack_format.hpp item 5):
//  - `convert` lays each MoE block's experts in an extent "blk.N.exps", expert-major, every
//    expert 4 KiB aligned and its frames raw and its own; the pack is version 2;
//  - streamed from the pack with a small expert cache, the logits are bit-identical to the model
//    in RAM (the GGUF, and the pack itself in RAM) and to streaming the GGUF with experts apart;
//  - the store issues exactly one read per expert, of the expert's aligned bytes;
//  - a byte flipped inside one expert's bytes is a sluice::Exception naming the file, the expert
//    and the offset, and the other experts still read;
//  - a Session streams such a pack with experts apart (automatic and --experts apart) and refuses
//    --experts whole; a pack converted with the experts whole (version 1) still loads and runs.
#include <gtest/gtest.h>

#include <atomic>
#include <fmt/format.h>
#include <cstdio>
#include <fstream>

#include "common/units.hpp"
#include "engine/expert_store.hpp"
#include "engine/forward.hpp"
#include "engine/generate.hpp"
#include "engine/model.hpp"
#include "engine/sampling.hpp"
#include "engine/session.hpp"
#include "engine/streamed_model.hpp"
#include "io/fault_backend.hpp"
#include "model/convert.hpp"
#include "model/gguf_source.hpp"
#include "model/pack_reader.hpp"
#include "model/pack_source.hpp"
#include "model/tensor_check.hpp"
#include "model/tensor_names.hpp"
#include "tests/engine/moe_models.hpp"
#include "tests/engine/moe_run.hpp"
#include "tests/support/fault_sweep.hpp"
#include "tests/support/temp_dir.hpp"
#include "tools/synth.hpp"

namespace sluice {
namespace {

// A synthetic MoE GGUF and its pack (expert extents unless `whole`).
struct Converted {
  sluice::testing::TempDir dir;
  std::string gguf, pack;
  Converted(const std::string& arch, bool whole = false) : gguf(dir.file("m.gguf")), pack(dir.file("m.sluice")) {
    write_synthetic_gguf(gguf, moe_options(arch, GgmlType::Q8_0));
    pack::WriterOptions w;
    w.expert_extents = !whole;
    w.frame_bytes = 16 * 1024;  // several frames per expert at these sizes (qwen3moe: ~25 KiB each)
    convert_gguf_to_pack(gguf, pack, w);
  }
};

std::unique_ptr<StreamedModel> open_streamed(std::unique_ptr<ModelSource> source, std::int32_t expert_slots) {
  StreamOptions o;
  o.prefetch.slots = 2;
  o.prefetch.verify = source->frames_checksummed();
  o.read_ahead = false;
  o.expert_slots_per_layer = expert_slots;
  return std::make_unique<StreamedModel>(std::move(source), o);
}

class ExpertPack : public ::testing::TestWithParam<std::string> {};

TEST_P(ExpertPack, ConvertLaysEachExpertInOneAlignedRangeOfItsOwnFrames) {
  const Converted m(GetParam());
  const pack::Pack p = pack::Pack::open(m.pack);
  EXPECT_EQ(p.version(), 2u) << "expert extents are version 2";
  const ModelConfig c = checked_config(p);
  const auto gguf = Model::open(m.gguf);
  for (std::int64_t il = 0; il < c.n_layer; ++il) {
    SCOPED_TRACE(il);
    const std::uint32_t unit = p.find_tensor(names::block_tensor(il, names::kFfnGateExps))->extent;
    const pack::ExtentInfo& e = p.extents()[unit];
    EXPECT_EQ(e.name, names::experts_extent_name(il));
    ASSERT_GT(e.expert_bytes, 0u);
    EXPECT_EQ(e.offset % 4096, 0u);
    EXPECT_EQ(e.expert_bytes % 4096, 0u);
    EXPECT_EQ(e.raw_bytes, e.expert_bytes * std::uint64_t(c.n_expert));
    EXPECT_TRUE(e.all_raw());
    // Every expert starts a frame (4 KiB aligned in the file) and no frame crosses into the next.
    std::uint64_t raw = 0;
    std::int64_t starts = 0;
    for (const pack::FrameInfo& f : e.frames) {
      if (raw % e.expert_bytes == 0) {
        ++starts;
        EXPECT_EQ(f.offset % 4096, 0u);
      }
      EXPECT_EQ(raw / e.expert_bytes, (raw + f.raw_bytes - 1) / e.expert_bytes);
      raw += f.raw_bytes;
    }
    EXPECT_EQ(starts, c.n_expert);
    // Each slice is the GGUF's, byte for byte, at its offset within its expert.
    auto bytes = p.read_extent(unit);
    ASSERT_TRUE(bytes);
    const BlockWeights& w = gguf->blocks()[std::size_t(il)];
    for (auto [name, stacked] : {std::pair{names::kFfnGateExps, &w.gate_exps}, std::pair{names::kFfnUpExps, &w.up_exps},
                                 std::pair{names::kFfnDownExps, &w.down_exps}}) {
      const pack::TensorInfo& t = *p.find_tensor(names::block_tensor(il, name));
      EXPECT_EQ(t.extent, unit);
      EXPECT_EQ(t.expert_stride, e.expert_bytes);
      for (std::int64_t x = 0; x < c.n_expert; ++x) {
        const TensorView slice = expert_slice(*stacked, x);
        EXPECT_EQ(std::memcmp(bytes.value().data() + t.offset + std::uint64_t(x) * t.expert_stride, slice.data, slice.bytes), 0)
            << name << " expert " << x;
      }
    }
  }
}

TEST_P(ExpertPack, StreamedFromThePackWithASmallCacheIsBitIdentical) {
  const Converted m(GetParam());
  auto gguf = Model::open(m.gguf);
  InRamForward in_ram(*gguf);
  std::vector<std::int32_t> tokens;
  const int steps = 6;
  const PassLogits want = run_batch(in_ram, gguf->config(), steps, &tokens);
  {
    auto pack_in_ram = Model::open(m.pack);  // the strided expert tensors gathered again
    InRamForward forward(*pack_in_ram);
    expect_same(want, run_batch(forward, gguf->config(), steps, &tokens));
  }
  auto from_gguf = open_streamed(GgufSource::open(m.gguf, {}, /*experts_apart=*/true), 1);
  expect_same(want, run_batch(*from_gguf, gguf->config(), steps, &tokens));
  for (std::int32_t slots : {1, 2}) {
    SCOPED_TRACE(slots);
    auto streamed = open_streamed(PackSource::open(m.pack), slots);
    ASSERT_NE(streamed->expert_store(), nullptr);
    expect_same(want, run_batch(*streamed, gguf->config(), steps, &tokens));
    const ExpertStoreStats s = streamed->expert_store()->stats();
    EXPECT_GT(s.expert_reads, 0u);
    EXPECT_GT(s.cache.hits, 0u);
    EXPECT_EQ(s.bytes_read % 4096, 0u);
    EXPECT_EQ(s.bytes_read, s.expert_reads * streamed->expert_store()->slot_bytes()) << "one aligned range per expert";
  }
}

INSTANTIATE_TEST_SUITE_P(Archs, ExpertPack, ::testing::Values("qwen3moe", "mixtral", "gpt-oss"),
                         [](const auto& info) { return moe_test_name(info.param); });

// Every read the store issues is counted by a fault plan with no fault: one per expert.
TEST(ExpertPackReads, OneReadPerExpert) {
  const Converted m("qwen3moe");
  auto source = PackSource::open(m.pack);
  const ModelConfig c = source->checked_config();
  std::atomic<std::uint64_t> operations{0};
  io::FaultPlan counting;
  counting.shared_operations = &operations;
  ExpertStoreOptions o;
  o.slots_per_layer = std::int32_t(c.n_expert);
  o.fault = &counting;
  ExpertStore store(*source, c, o);
  std::vector<std::int32_t> all;
  for (std::int32_t e = 0; e < c.n_expert; ++e) all.push_back(e);
  for (std::int64_t il = 0; il < c.n_layer; ++il) {
    store.request(il, all);
    for (std::int32_t e : all) (void)store.acquire(il, e);
  }
  const std::uint64_t experts = std::uint64_t(c.n_layer * c.n_expert);
  EXPECT_EQ(store.stats().expert_reads, experts);
  EXPECT_EQ(operations.load(), experts) << "one O_DIRECT read per expert, its three slices together";
  EXPECT_EQ(store.stats().bytes_read, experts * store.slot_bytes());
}

void flip_byte(const std::string& path, std::uint64_t offset) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(std::streamoff(offset));
  char ch = 0;
  f.read(&ch, 1);
  ch = char(ch ^ 0x20);
  f.seekp(std::streamoff(offset));
  f.write(&ch, 1);
}

TEST(ExpertPackCorrupt, AFlippedByteInOneExpertNamesTheFileTheExpertAndTheOffset) {
  const Converted m("qwen3moe");
  const std::int64_t layer = 1;
  const std::int32_t bad = 3;
  std::uint64_t expert_at = 0, expert_bytes = 0, flipped = 0;
  {
    const pack::Pack p = pack::Pack::open(m.pack);
    const pack::ExtentInfo& e = p.extents()[p.find_tensor(names::block_tensor(layer, names::kFfnUpExps))->extent];
    expert_bytes = e.expert_bytes;
    expert_at = e.offset + std::uint64_t(bad) * expert_bytes;
    flipped = expert_at + expert_bytes / 2;  // in its up slice, or its down slice
  }
  flip_byte(m.pack, flipped);
  auto source = PackSource::open(m.pack);  // the manifest is untouched: it opens
  const ModelConfig c = source->checked_config();
  ExpertStoreOptions o;
  o.slots_per_layer = 2;
  ExpertStore store(*source, c, o);
  const std::int32_t ids[] = {bad};
  store.request(layer, ids);
  try {
    (void)store.acquire(layer, bad);
    FAIL() << "no error";
  } catch (const Exception& e) {
    const std::string what = e.what();
    EXPECT_EQ(e.context().kind, ErrorKind::corrupt) << what;
    EXPECT_EQ(e.context().file, m.pack);
    EXPECT_EQ(e.context().extent, names::experts_extent_name(layer));
    EXPECT_EQ(e.context().frame, bad) << "the expert";
    EXPECT_GE(std::uint64_t(e.context().offset), expert_at);
    EXPECT_LE(std::uint64_t(e.context().offset), flipped) << "the bad frame's offset, at or before the flipped byte";
    EXPECT_NE(what.find(m.pack), std::string::npos) << what;
    EXPECT_NE(what.find(fmt::format("expert {} of layer {}", bad, layer)), std::string::npos) << what;
    EXPECT_NE(what.find(fmt::format("offset {}", e.context().offset)), std::string::npos) << what;
    EXPECT_NE(what.find("checksum"), std::string::npos) << what;
  }
  // The failed expert left nothing behind; its neighbours read and verify alone.
  store.reset();
  const std::int32_t good[] = {bad - 1, bad + 1};
  store.request(layer, good);
  for (std::int32_t e : good) EXPECT_NE(store.acquire(layer, e).up.data, nullptr);
}

// An I/O error on an expert's one read: an Exception naming the pack, the expert extent and the
// expert; nothing half-read stays cached, and the next pass reads it again and is right.
TEST(ExpertPackFaults, AFailedExpertReadThrowsAndTheNextPassIsRight) {
  const Converted m("qwen3moe");
  auto model = Model::open(m.gguf);
  InRamForward in_ram(*model);
  const ModelConfig& c = model->config();
  const std::vector<std::int32_t>& prompt = kFaultPrompt;
  const std::vector<float> want = in_ram_logits(*model, prompt);
  std::vector<float> got;
  for (std::uint64_t fail_op : {1, 2, 7}) {
    SCOPED_TRACE(fail_op);
    io::FaultPlan plan;
    plan.fail_op = fail_op;
    auto source = PackSource::open(m.pack);
    StreamOptions o;
    o.prefetch.slots = 2;
    o.read_ahead = false;
    o.expert_slots_per_layer = 2;
    o.fault = &plan;  // numbers the expert reads only: every block is resident (read before, without it)
    for (std::int64_t il = 0; il < c.n_layer; ++il) o.resident_blocks.push_back(il);
    StreamedModel streamed(std::move(source), o);
    Transformer t(c, 32, compute::Threading{});
    try {
      streamed.evaluate(t, prompt, 0, true, got);
      FAIL() << "no error";
    } catch (const Exception& e) {
      EXPECT_EQ(e.context().kind, ErrorKind::io) << e.what();
      EXPECT_EQ(e.context().file, m.pack);
      EXPECT_TRUE(names::experts_extent_index(e.context().extent)) << e.what();
      EXPECT_GE(e.context().frame, 0) << "the expert";
      EXPECT_GT(e.context().offset, 0);
      EXPECT_EQ(std::uint64_t(e.context().offset) % 4096, 0u) << "the expert's aligned start";
    }
    streamed.evaluate(t, prompt, 0, true, got);
    ASSERT_EQ(want.size(), got.size());
    EXPECT_EQ(std::memcmp(want.data(), got.data(), want.size() * sizeof(float)), 0);
  }
}

// The N-th-fault sweep (tests/support/fault_sweep.hpp) over a short greedy run streaming a MoE
// pack's blocks and its experts apart: one plan numbers the pack's own reads, the ring's and the
// expert store's. A transient fault changes nothing; a persistent one fails cleanly, naming the
// pack and an offset, and the sweep reaches the expert reads.
std::vector<float> sweep_run(const std::string& pack, io::FaultPlan& plan) {
  StreamOptions o;
  o.prefetch.slots = 2;
  o.prefetch.retry.eagain_backoff = std::chrono::microseconds(1);
  o.read_ahead = false;
  o.expert_slots_per_layer = 1;
  o.fault = &plan;
  StreamedModel model(pack, o);
  const ModelConfig& c = model.config();
  Transformer t(c, 16, compute::Threading{});
  std::vector<std::int32_t> tokens = {1, 403, 407, 261, 378};
  std::vector<float> all, logits;
  std::int64_t pos = 0;
  for (int pass = 0; pass < 3; ++pass) {
    model.evaluate(t, tokens, pos, false, logits);
    all.insert(all.end(), logits.begin(), logits.end());
    pos += std::int64_t(tokens.size());
    tokens = {argmax(std::span(logits).last(std::size_t(c.n_vocab)))};
  }
  EXPECT_GT(model.stats().expert_reads, 0u);
  return all;
}

TEST(ExpertPackFaults, EveryNthIoFaultIsRetriedOrFailsCleanly) {
  const Converted m("qwen3moe");
  std::atomic<std::uint64_t> operations{0};
  io::FaultPlan clean;
  clean.shared_operations = &operations;
  const std::vector<float> want = sweep_run(m.pack, clean);
  const std::uint64_t total = operations.load();
  std::uint64_t by_experts = 0;
  sluice::testing::sweep_nth_fault(total, operations, [&](io::FaultPlan& plan, bool persistent) {
    try {
      const std::vector<float> got = sweep_run(m.pack, plan);
      ASSERT_EQ(got.size(), want.size());
      EXPECT_EQ(std::memcmp(got.data(), want.data(), want.size() * sizeof(float)), 0);
      EXPECT_FALSE(persistent) << "a persistent fault went unnoticed";
    } catch (const std::runtime_error& e) {
      const std::string what = e.what();
      EXPECT_TRUE(persistent) << "a transient fault was not retried: " << what;
      EXPECT_NE(what.find(m.pack), std::string::npos) << what;
      EXPECT_NE(what.find("offset"), std::string::npos) << what;
      by_experts += what.find(".exps bytes [") != std::string::npos;
    }
  });
  EXPECT_GT(by_experts, 0u) << "no persistent fault hit an expert read first";
  std::printf("fault sweep over a MoE pack: %llu I/Os per run, %llu persistent faults reported by the expert store\n",
              (unsigned long long)total, (unsigned long long)by_experts);
}

SessionOptions session_options(const std::string& model) {
  SessionOptions o;
  o.model = model;
  o.n_ctx = 32;
  o.pass_tokens = 16;
  o.slots = 2;
  o.disk_gbps = 2.0;  // no disk probe
  o.threads = 1;
  o.budget = 256 * MiB;
  return o;
}

TEST(ExpertPackSession, APackWithExpertExtentsStreamsItsExpertsApart) {
  const Converted m("mixtral");
  for (ExpertsMode mode : {ExpertsMode::automatic, ExpertsMode::apart}) {
    SessionOptions o = session_options(m.pack);
    o.experts = mode;
    Session session(o);
    ASSERT_NE(session.plan(), nullptr);
    EXPECT_TRUE(session.plan()->experts_apart);
    EXPECT_GT(session.plan()->expert_slot_bytes, 0u);
    EXPECT_EQ(session.plan()->expert_slot_bytes % 4096, 0u);
    ASSERT_NE(session.streamed()->expert_store(), nullptr);
    // The planner counts a pack's expert like a GGUF's: one slot of its aligned bytes.
    SessionOptions g = session_options(m.gguf);
    g.experts = ExpertsMode::apart;
    g.stream = StreamMode::always;
    const Session from_gguf(g);
    EXPECT_TRUE(from_gguf.plan()->experts_apart);
    EXPECT_EQ(session.plan()->n_expert, from_gguf.plan()->n_expert);
  }
  SessionOptions whole = session_options(m.pack);
  whole.experts = ExpertsMode::whole;
  try {
    const Session session(whole);
    FAIL() << "no error";
  } catch (const Exception& e) {
    EXPECT_NE(std::string(e.what()).find("--experts whole"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(m.pack), std::string::npos) << e.what();
  }
}

// A pack converted with the experts in their blocks is version 1, as every pack before expert
// extents was: it loads, streams whole blocks, and gives the in-RAM logits.
TEST(ExpertPackSession, APackWithoutExpertExtentsStillLoadsAndStreamsWholeBlocks) {
  const Converted m("qwen3moe", /*whole=*/true);
  const pack::Pack p = pack::Pack::open(m.pack);
  EXPECT_EQ(p.version(), 1u);
  for (const pack::ExtentInfo& e : p.extents()) EXPECT_EQ(e.expert_bytes, 0u) << e.name;
  auto gguf = Model::open(m.gguf);
  InRamForward in_ram(*gguf);
  std::vector<std::int32_t> tokens;
  const PassLogits want = run_batch(in_ram, gguf->config(), 3, &tokens);
  auto streamed = open_streamed(PackSource::open(m.pack), -1);
  EXPECT_EQ(streamed->expert_store(), nullptr);
  expect_same(want, run_batch(*streamed, gguf->config(), 3, &tokens));
  SessionOptions o = session_options(m.pack);
  const Session session(o);
  EXPECT_FALSE(session.plan()->experts_apart);
}

}  // namespace
}  // namespace sluice
