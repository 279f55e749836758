// A GGUF through Session, as `sluice run` opens it: memory-mapped in RAM when it fits with room
// to spare, planned and streamed through GgufSource under a budget it does not fit (logits
// bit-identical to the in-RAM run); frames verified only with an index sidecar (the plan says
// which); a file truncated while it streams, or a byte rotted in an indexed one, stops the pass
// with a sluice::Exception naming the file and offset (nothing is mapped, so never SIGBUS).
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <linux/magic.h>
#include <sstream>

#include <fmt/format.h>

#include "common/units.hpp"
#include "engine/generate.hpp"
#include "engine/session.hpp"
#include "model/gguf_index.hpp"
#include "model/gguf_source.hpp"
#include "tests/model/gguf_split_test_util.hpp"
#include "tests/support/rot_byte.hpp"
#include "tests/support/temp_dir.hpp"
#include "tools/synth.hpp"

namespace sluice {
namespace {

// 4 blocks of ~0.9 MiB Q8_0 each, the built-in vocabulary: no ../shared needed.
std::string write_model(const sluice::testing::TempDir& dir, GgmlType type = GgmlType::Q8_0) {
  SynthOptions synth;
  synth.shape = SynthShape{256, 4, 8, 4, 768, 128};
  synth.type = type;
  synth.vocab_from.clear();
  const std::string gguf = dir.file("m.gguf");
  write_synthetic_gguf(gguf, synth);
  return gguf;
}

SessionOptions options_for(const std::string& gguf, std::uint64_t budget) {
  SessionOptions o;
  o.model = gguf;
  o.budget = budget;
  o.n_ctx = 64;
  o.pass_tokens = 16;
  o.slots = 2;
  o.disk_gbps = 2.0;  // no disk probe
  o.threads = 1;
  return o;
}

// What options_for asks of the planner, at `budget`.
PlanRequest plan_request(std::uint64_t budget) {
  PlanRequest r;
  r.budget = budget;
  r.n_ctx = 64;
  r.pass_tokens = 16;
  r.wanted_slots = 2;
  r.compute_threads = 1;
  r.disk_gbps = 2.0;
  return r;
}

// The smallest budget the planner takes for this model: every block then streams.
std::uint64_t minimum_budget(const std::string& gguf) {
  auto source = GgufSource::open(gguf);
  return plan_memory(*source, source->checked_config(), plan_request(1ull << 30)).minimum;
}

std::vector<float> logits_of(Session& s, std::span<const std::int32_t> tokens, std::int64_t pos0) {
  std::vector<float> logits;
  s.forward().forward(s.transformer(), single_sequence_batch(tokens, pos0, true), logits);
  return logits;
}

const std::vector<std::int32_t> kPrompt = {1, 403, 407, 261, 378};

// Without -c the context is what the run says it needs, rounded up to 256, within the trained
// context and the 4096 cap; -c wins; and the smaller KV cache leaves room for blocks.
TEST(GgufSession, TheContextIsWhatTheRunNeedsUnlessGiven) {
  sluice::testing::TempDir dir;
  SynthOptions synth;
  synth.shape = SynthShape{256, 8, 8, 4, 768, 8192};
  synth.type = GgmlType::Q8_0;
  synth.vocab_from.clear();
  const std::string gguf = dir.file("long.gguf");
  write_synthetic_gguf(gguf, synth);
  SessionOptions o = options_for(gguf, 1ull << 30);
  o.n_ctx = 0;
  EXPECT_EQ(plan_session(o).plan.request.n_ctx, 4096);  // nothing known: the cap
  o.ctx_needed = 100;
  EXPECT_EQ(plan_session(o).plan.request.n_ctx, 256);
  o.ctx_needed = 257;
  EXPECT_EQ(plan_session(o).plan.request.n_ctx, 512);
  o.ctx_needed = 100000;
  EXPECT_EQ(plan_session(o).plan.request.n_ctx, 4096);
  o.ctx_needed = 0;
  const std::string short_gguf = write_model(dir);  // trained on 128
  o.model = short_gguf;
  EXPECT_EQ(plan_session(o).plan.request.n_ctx, 128);
  o.ctx_needed = 100;
  EXPECT_EQ(plan_session(o).plan.request.n_ctx, 128);
  o.model = gguf;
  o.n_ctx = 96;
  o.ctx_needed = 100;
  EXPECT_EQ(plan_session(o).plan.request.n_ctx, 96);
  // Under a budget that streams: the sized context keeps more blocks resident than the default.
  SessionOptions tight = options_for(gguf, 1ull << 30);
  tight.n_ctx = 0;
  tight.n_seq = 4;
  tight.kv_spill = SpillMode::never;  // the KV cache in RAM: what it takes, blocks lose
  tight.budget = plan_session(tight).plan.minimum + (2ull << 20);  // the full context's minimum, and a little
  const MemoryPlan full = plan_session(tight).plan;
  tight.ctx_needed = 40;
  const MemoryPlan sized = plan_session(tight).plan;
  EXPECT_LT(sized.kv_bytes, full.kv_bytes);
  EXPECT_GT(sized.resident_blocks.size(), full.resident_blocks.size());
}

// The plan says when a smaller context would keep more blocks resident, and by how many.
TEST(GgufSession, ThePlanSaysWhenASmallerContextKeepsMoreBlocks) {
  sluice::testing::TempDir dir;
  SynthOptions synth;
  synth.shape = SynthShape{256, 8, 8, 4, 768, 8192};
  synth.type = GgmlType::Q8_0;
  synth.vocab_from.clear();
  const std::string gguf = dir.file("long.gguf");
  write_synthetic_gguf(gguf, synth);
  SessionOptions tight = options_for(gguf, 1ull << 30);
  tight.n_ctx = 4096;
  tight.n_seq = 4;
  tight.kv_spill = SpillMode::never;
  tight.budget = plan_session(tight).plan.minimum + (2ull << 20);
  const SessionPlan full = plan_session(tight);
  ASSERT_TRUE(full.plan.streams());
  EXPECT_NE(full.context_note.find(fmt::format("{} of 8 blocks are resident at -c 4096", full.plan.resident_blocks.size())),
            std::string::npos)
      << full.context_note;
  tight.n_ctx = 256;
  const std::size_t at_256 = plan_session(tight).plan.resident_blocks.size();
  ASSERT_GT(at_256, full.plan.resident_blocks.size());
  EXPECT_NE(full.context_note.find(fmt::format("-c 256: {}", at_256)), std::string::npos) << full.context_note;
  // Everything resident: nothing to say.
  tight.budget = 1ull << 30;
  tight.n_ctx = 4096;
  EXPECT_EQ(plan_session(tight).context_note, "");
}

TEST(GgufSession, StreamsUnderABudgetItDoesNotFitWithLogitsBitIdenticalToInRam) {
  sluice::testing::TempDir dir;
  const std::string gguf = write_model(dir);
  Session in_ram(options_for(gguf, 512 * MiB));
  ASSERT_EQ(in_ram.streamed(), nullptr) << in_ram.describe();
  EXPECT_NE(in_ram.describe().find("in RAM (gguf"), std::string::npos) << in_ram.describe();
  const std::vector<float> expected = logits_of(in_ram, kPrompt, 0);
  const std::int32_t next = argmax(std::span(expected).last(std::size_t(in_ram.config().n_vocab)));
  const std::vector<float> expected_next = logits_of(in_ram, std::span(&next, 1), std::int64_t(kPrompt.size()));

  for (bool indexed : {false, true}) {
    SCOPED_TRACE(indexed ? "with an index sidecar" : "without an index sidecar");
    if (indexed) (void)gguf::write_gguf_index(gguf::ShardSet::open(gguf), gguf::sidecar_path_for(gguf));
    // Indexed units are rounded out to whole 1 MiB chunks: larger slots, a larger minimum.
    const std::uint64_t budget = minimum_budget(gguf) + 64 * KiB;
    std::ostringstream log;
    SessionOptions o = options_for(gguf, budget);
    o.log = &log;
    Session streamed(o);
    ASSERT_NE(streamed.streamed(), nullptr) << streamed.describe();
    ASSERT_NE(streamed.plan(), nullptr);
    EXPECT_TRUE(streamed.plan()->resident_blocks.empty());
    EXPECT_GT(streamed.streamed()->streamed_bytes_per_pass(), 0u);
    const std::string said = indexed ? "reads verified by " + gguf::sidecar_path_for(gguf) : "reads unverified (no sidecar";
    EXPECT_NE(log.str().find("gguf (1 file), " + said), std::string::npos) << log.str();
    EXPECT_NE(streamed.describe().find(said), std::string::npos) << streamed.describe();
    const std::vector<float> got = logits_of(streamed, kPrompt, 0);
    ASSERT_EQ(got.size(), expected.size());
    ASSERT_EQ(std::memcmp(got.data(), expected.data(), got.size() * sizeof(float)), 0) << "prefill logits differ";
    const std::vector<float> got_next = logits_of(streamed, std::span(&next, 1), std::int64_t(kPrompt.size()));
    ASSERT_EQ(std::memcmp(got_next.data(), expected_next.data(), got_next.size() * sizeof(float)), 0) << "decode logits differ";
    EXPECT_GE(streamed.streamed()->stats().passes, 2u);  // the prompt may run in several passes
  }
}

// Pages of [offset, offset + bytes) of `path` in the page cache (mincore over a mapping, which
// faults nothing in).
std::uint64_t cached_pages(const std::string& path, std::uint64_t offset, std::uint64_t bytes) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  EXPECT_GE(fd, 0) << path;
  struct stat st {};
  EXPECT_EQ(::fstat(fd, &st), 0);
  void* map = ::mmap(nullptr, std::size_t(st.st_size), PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  EXPECT_NE(map, MAP_FAILED);
  const std::uint64_t page = std::uint64_t(::sysconf(_SC_PAGESIZE));
  std::vector<unsigned char> in_core((std::uint64_t(st.st_size) + page - 1) / page);
  EXPECT_EQ(::mincore(map, std::size_t(st.st_size), in_core.data()), 0);
  ::munmap(map, std::size_t(st.st_size));
  std::uint64_t n = 0;
  for (std::uint64_t p = offset / page; p < in_core.size() && p * page < offset + bytes; ++p) n += in_core[p] & 1;
  return n;
}

// Resident blocks are read through the page cache and handed back; the kernel's read-ahead past
// each one's end (pages of the streamed blocks after it, which are read O_DIRECT) must go too,
// or a large model leaves one read-ahead window per resident block in the cache.
TEST(GgufSession, LoadingResidentBlocksLeavesNoStreamedBlockInThePageCache) {
  sluice::testing::TempDir dir;
  struct statfs fs {};
  ASSERT_EQ(::statfs(dir.path().c_str(), &fs), 0);
  if (fs.f_type == TMPFS_MAGIC) GTEST_SKIP() << dir.path() << " is a tmpfs: every page of a file there is cached";
  // Blocks of ~4.5 MiB, indexed: each resident block is read as several 1 MiB chunks in a row,
  // the pattern on which the kernel reads ahead past the block's end.
  SynthOptions synth;
  synth.shape = SynthShape{512, 4, 8, 4, 2048, 128};
  synth.type = GgmlType::Q8_0;
  synth.vocab_from.clear();
  const std::string gguf = dir.file("big.gguf");
  write_synthetic_gguf(gguf, synth);
  (void)gguf::write_gguf_index(gguf::ShardSet::open(gguf), gguf::sidecar_path_for(gguf));
  // The smallest budget above the minimum at which the plan holds some blocks resident, not all.
  std::uint64_t budget = 0;
  {
    auto probe = GgufSource::open(gguf);
    PlanRequest r = plan_request(1ull << 30);
    r.block_piece_bytes = SessionOptions{}.block_piece_bytes;  // as the session plans
    const std::uint64_t minimum = plan_memory(*probe, probe->checked_config(), r).minimum;
    for (std::uint64_t extra = 512 * KiB; extra <= 32 * MiB && budget == 0; extra += 512 * KiB) {
      r.budget = minimum + extra;
      const MemoryPlan plan = plan_memory(*probe, probe->checked_config(), r);
      if (!plan.resident_blocks.empty() && plan.resident_blocks.size() < std::size_t(plan.blocks)) budget = r.budget;
    }
  }
  ASSERT_GT(budget, 0u) << "no budget gives a plan with both resident and streamed blocks";
  {  // written just now: flush it and drop its pages, as a cold cache
    const int fd = ::open(gguf.c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::fsync(fd), 0);
    ASSERT_EQ(::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
    ::close(fd);
  }
  ASSERT_EQ(cached_pages(gguf, 0, UINT64_MAX / 2), 0u) << "the cache was not dropped";
  Session s(options_for(gguf, budget));
  ASSERT_NE(s.streamed(), nullptr) << s.describe();
  const auto& resident = s.plan()->resident_blocks;
  ASSERT_FALSE(resident.empty());
  ASSERT_LT(resident.size(), std::size_t(s.config().n_layer));
  auto source = GgufSource::open(gguf);
  std::uint64_t streamed_ranges = 0;
  for (std::int64_t il = 0; il < s.config().n_layer; ++il) {
    if (std::find(resident.begin(), resident.end(), il) != resident.end()) continue;
    const SourceTensor* t = source->find_tensor(fmt::format("blk.{}.attn_q.weight", il));
    ASSERT_NE(t, nullptr);
    for (const pack::ExtentRange& r : source->units()[t->extent].ranges) {
      ++streamed_ranges;
      EXPECT_EQ(cached_pages(gguf, r.offset, r.bytes), 0u) << "streamed block " << il << " at offset " << r.offset;
    }
  }
  EXPECT_GT(streamed_ranges, 0u);
}

// A split GGUF, named by any shard, runs through GgufSource whatever the budget (the in-RAM
// model maps one file), with the in-RAM logits of the unsplit file, and the plan says "3 shards".
TEST(GgufSession, ASplitGgufRunsFromAnyShardWithTheUnsplitLogits) {
  sluice::testing::TempDir dir;
  const std::string gguf = write_model(dir);
  Session in_ram(options_for(gguf, 512 * MiB));
  const std::vector<float> expected = logits_of(in_ram, kPrompt, 0);
  const gguf::File whole = gguf::File::open(gguf);
  const std::vector<std::string> shards = gguf::testing::split_file(whole, dir.file("s"), 3);
  for (std::uint64_t budget : {std::uint64_t{512 * MiB}, std::uint64_t{0}}) {
    SessionOptions o = options_for(shards[1], budget == 0 ? minimum_budget(shards[1]) + 64 * KiB : budget);
    std::ostringstream log;
    o.log = &log;
    Session s(o);
    ASSERT_NE(s.streamed(), nullptr) << s.describe();
    EXPECT_NE(log.str().find("gguf (3 shards), reads unverified"), std::string::npos) << log.str();
    const std::vector<float> got = logits_of(s, kPrompt, 0);
    ASSERT_EQ(got.size(), expected.size());
    ASSERT_EQ(std::memcmp(got.data(), expected.data(), got.size() * sizeof(float)), 0) << "budget " << budget;
  }
}

TEST(GgufSession, StreamOnStreamsAGgufThatFits) {
  sluice::testing::TempDir dir;
  const std::string gguf = write_model(dir);
  SessionOptions o = options_for(gguf, 512 * MiB);
  o.stream = StreamMode::always;
  Session s(o);
  ASSERT_NE(s.streamed(), nullptr);
  EXPECT_EQ(s.streamed()->resident_block_count(), 0);
}

// The file is cut to half while the session streams it: the next pass's reads past the new end
// fail with an Exception naming the file and the offset where the data ends.
TEST(GgufSession, AFileTruncatedWhileItStreamsStopsThePassNamingFileAndOffset) {
  sluice::testing::TempDir dir;
  const std::string gguf = write_model(dir);
  Session s(options_for(gguf, minimum_budget(gguf) + 64 * KiB));
  ASSERT_NE(s.streamed(), nullptr);
  ASSERT_TRUE(s.plan()->resident_blocks.empty());
  (void)logits_of(s, kPrompt, 0);
  struct stat st {};
  ASSERT_EQ(::stat(gguf.c_str(), &st), 0);
  ASSERT_EQ(::truncate(gguf.c_str(), st.st_size / 2), 0);
  try {
    // Blocks read ahead before the cut may still be in the ring; the last ones are not.
    for (int pass = 0; pass < 3; ++pass) (void)logits_of(s, std::span(&kPrompt[1], 1), std::int64_t(kPrompt.size()) + pass);
    FAIL() << "a truncated GGUF streamed without an error";
  } catch (const Exception& e) {
    std::printf("error: %s\n", e.what());
    EXPECT_EQ(e.context().file, gguf) << e.what();
    EXPECT_GE(e.context().offset, 0) << e.what();
    EXPECT_NE(std::string(e.what()).find(gguf), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("offset"), std::string::npos) << e.what();
    // In plain words: where the file ends now, and that it was cut or replaced.
    EXPECT_NE(std::string(e.what()).find(gguf + ": file ends at byte " + std::to_string(st.st_size / 2) + ", but the read needs bytes"),
              std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("truncated or replaced while reading"), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find("short reads in a row"), std::string::npos) << e.what();
  }
}

// A byte rotted after indexing (mtime kept, so the sidecar still loads) stops a Session's pass
// with a checksum error naming the file, the block's extent, the offset of the bad chunk and the
// tensor in it.
TEST(GgufSession, ARottenByteInAnIndexedGgufNamesFileExtentAndOffset) {
  sluice::testing::TempDir dir;
  const std::string gguf = write_model(dir);
  (void)gguf::write_gguf_index(gguf::ShardSet::open(gguf), gguf::sidecar_path_for(gguf));
  const std::uint64_t bad = gguf::ShardSet::open(gguf).find_tensor("blk.2.ffn_down.weight")->offset + 7;
  sluice::testing::rot_byte(gguf, bad, std::byte{0x80});
  Session s(options_for(gguf, minimum_budget(gguf) + 64 * KiB));
  ASSERT_NE(s.streamed(), nullptr);
  try {
    (void)logits_of(s, kPrompt, 0);
    FAIL() << "a rotten byte was streamed without an error";
  } catch (const Exception& e) {
    std::printf("error: %s\n", e.what());
    EXPECT_EQ(e.kind(), ErrorKind::checksum) << e.what();
    EXPECT_EQ(e.context().file, gguf) << e.what();
    EXPECT_EQ(e.context().extent, "blk.2") << e.what();
    const std::uint64_t chunk = bad / gguf::kIndexChunkBytes * gguf::kIndexChunkBytes;
    EXPECT_EQ(e.context().offset, std::int64_t(chunk)) << e.what();
    EXPECT_NE(std::string(e.what()).find(fmt::format("file offset {}", chunk)), std::string::npos) << e.what();
    const std::string what = e.what();
    const std::size_t listed = what.find("tensors in that chunk: ");
    ASSERT_NE(listed, std::string::npos) << what;
    EXPECT_NE(what.find("blk.2.ffn_down.weight", listed), std::string::npos) << what;
  }
}

}  // namespace
}  // namespace sluice
