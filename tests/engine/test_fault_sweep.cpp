// An engine-wide fault sweep (SQLite's ioerr tests): a short greedy generation on a small
// synthetic streamed model, with the N-th I/O of the whole run failed, for N = 1 .. every I/O
// the run does. One FaultPlan with a shared counter numbers every read and write: the pack's
// own reads (header, manifest, resident extents, embedding rows on demand), the prefetcher's
// block and head reads and, in the spilled configuration, the KV scratch file's reads and writes.
//
// Per path, what a fault must give (every path retries through the io/ policy, Reader or File):
//  - transient (one EINTR): the retry hides it; tokens and logits are bit-identical to the
//    fault-free run.
//  - persistent (EIO from the N-th I/O on): a std::runtime_error naming the file and the offset,
//    never a crash and never different output. The one read that may fail unnoticed is the spilled
//    cache's read-ahead of the next pass's first layer after the last pass, which nothing consumes;
//    a run that completes must then still give identical output.
#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "cache/kv_cache.hpp"
#include "engine/generate.hpp"
#include "engine/sampling.hpp"
#include "engine/session.hpp"
#include "engine/streamed_model.hpp"
#include "io/fault_backend.hpp"
#include "model/convert.hpp"
#include "tests/support/temp_dir.hpp"
#include "tools/synth.hpp"

namespace sluice {
namespace {

constexpr std::int32_t kDecodeSteps = 2;
constexpr std::size_t kPasses = 1 + kDecodeSteps;  // the prompt's pass, then one per decoded token

struct SweepModel {
  sluice::testing::TempDir dir;
  std::string pack;
  SweepModel() {
    SynthOptions synth;
    synth.shape = synth_shape("tiny");
    synth.shape.n_layer = 2;
    synth.type = GgmlType::Q8_0;
    synth.embedding_type = GgmlType::F16;  // compresses: zstd frames on the embedding-row path
    synth.vocab_from.clear();              // the built-in vocabulary: no ../shared needed
    const std::string gguf = dir.file("m.gguf");
    pack = dir.file("m.sluice");
    write_synthetic_gguf(gguf, synth);
    pack::WriterOptions writer;
    writer.frame_bytes = 64 * 1024;  // several frames per extent: rows come from single frames
    convert_gguf_to_pack(gguf, pack, writer);
  }
};

const SweepModel& sweep_model() {
  static const SweepModel model;
  return model;
}

struct Outcome {
  std::vector<std::int32_t> tokens;
  std::vector<float> logits;  // every pass's, one after another
};

// Streams every block and the head, reads embedding rows on demand, and (spill) keeps the KV
// cache in a scratch file in `spill_dir`. `plan` numbers every I/O of the run.
Outcome run(io::FaultPlan& plan, bool spill, const std::string& spill_dir) {
  StreamOptions options;
  options.prefetch.slots = 2;
  options.fault = &plan;  // the pack's own reads and the prefetcher's
  options.prefetch.retry.eagain_backoff = std::chrono::microseconds(1);
  options.read_ahead = false;  // the ring reads exactly this run's passes, nothing ahead
  options.stream_head = true;
  options.embed_on_demand = true;
  StreamedModel model(sweep_model().pack, options);
  const ModelConfig& c = model.config();
  cache::KvShape shape{c.n_layer, c.n_head_kv * c.head_dim, 16, 1, cpu::KvType::f16};
  auto kv = spill ? cache::make_spilled_kv_cache(shape, spill_dir, cache::KvSpillOptions{&plan})
                  : cache::make_resident_kv_cache(shape);
  Transformer transformer(c, std::move(kv), cpu::Threading{});

  Outcome out;
  std::vector<std::int32_t> tokens = {1, 403, 407, 261, 378};
  std::int64_t pos = 0;
  std::vector<float> logits;
  for (std::size_t pass = 0; pass < kPasses; ++pass) {
    model.evaluate(transformer, tokens, pos, false, logits);
    out.logits.insert(out.logits.end(), logits.begin(), logits.end());
    pos += std::int64_t(tokens.size());
    tokens = {argmax(std::span(logits).last(std::size_t(c.n_vocab)))};
    out.tokens.push_back(tokens[0]);
  }
  EXPECT_EQ(model.stats().passes, kPasses);
  EXPECT_GT(model.stats().embedding_bytes, 0u);  // rows were read on demand
  EXPECT_GT(model.stats().bytes_streamed, 0u);   // blocks and head came through the ring
  if (spill) {
    EXPECT_GT(transformer.kv_cache().stats().bytes_read, 0u);
  }
  return out;
}

bool same(const Outcome& a, const Outcome& b) {
  return a.tokens == b.tokens && a.logits.size() == b.logits.size() &&
         std::memcmp(a.logits.data(), b.logits.data(), a.logits.size() * sizeof(float)) == 0;
}

class EngineFaultSweep : public ::testing::TestWithParam<bool> {};

TEST_P(EngineFaultSweep, TransientFaultsChangeNothingAndPersistentOnesFailCleanly) {
  const bool spill = GetParam();
  sluice::testing::TempDir spill_dir;
  std::atomic<std::uint64_t> operations{0};
  io::FaultPlan clean;
  clean.shared_operations = &operations;
  const Outcome expected = run(clean, spill, spill_dir.path());
  const std::uint64_t total = operations.load();
  // Header, manifest, resident extents, embedding rows, blocks and head of every pass (and KV).
  ASSERT_GT(total, 3 * kPasses);
  std::cout << "fault sweep (" << (spill ? "KV spilled" : "KV resident") << "): " << total << " I/Os per run\n";

  std::uint64_t persistent_unnoticed = 0;
  // Which reader reported the persistent faults: each path must be reached by the sweep.
  std::uint64_t by_pack = 0, by_prefetcher = 0, by_kv_spill = 0;
  for (std::uint64_t n = 1; n <= total; ++n) {
    for (bool persistent : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "I/O " << n << " of " << total << (persistent ? ", persistent EIO" : ", one EINTR"));
      operations = 0;
      io::FaultPlan plan;
      plan.fail_op = n;
      plan.persistent = persistent;
      plan.fail_errno = persistent ? EIO : EINTR;
      plan.shared_operations = &operations;
      try {
        const Outcome got = run(plan, spill, spill_dir.path());
        EXPECT_TRUE(same(got, expected)) << "output differs from the fault-free run";
        if (persistent) ++persistent_unnoticed;
      } catch (const std::runtime_error& e) {
        const std::string what = e.what();
        EXPECT_TRUE(persistent) << "a transient fault was not retried: " << what;
        const bool names_file = what.find(sweep_model().pack) != std::string::npos || what.find("sluice-kv-") != std::string::npos;
        EXPECT_TRUE(names_file) << what;
        EXPECT_NE(what.find("offset"), std::string::npos) << what;
        EXPECT_NE(what.find(std::strerror(EIO)), std::string::npos) << what;
        if (what.find("sluice-kv-") != std::string::npos) {
          ++by_kv_spill;
        } else if (what.find("error in extent") != std::string::npos) {
          ++by_prefetcher;
        } else if (what.rfind("pack read of " + sweep_model().pack, 0) == 0) {
          ++by_pack;
        } else {
          ADD_FAILURE() << "an error from an unexpected reader: " << what;
        }
      }
    }
  }
  // Only the spilled cache's last read-ahead (two planes of one layer) goes unconsumed.
  EXPECT_LE(persistent_unnoticed, spill ? 2u : 0u);
  // Which reader notices first depends on how the threads interleave, except: N = 1 (the header)
  // is always the pack's; with the KV resident the run's last I/O is always the prefetcher's
  // (the last pass's head, read once a ring slot frees); the first KV write-back always fails
  // in end_layer before anything else is consumed.
  EXPECT_GT(by_pack, 0u);
  if (!spill) {
    EXPECT_GT(by_prefetcher, 0u);
  }
  EXPECT_EQ(by_kv_spill > 0, spill);
  std::cout << "persistent faults reported by the pack " << by_pack << ", the prefetcher " << by_prefetcher
            << ", the KV spill " << by_kv_spill << "; unnoticed " << persistent_unnoticed << "\n";
}

// SessionOptions::fault reaches the session's own reads too (the planner's Pack::open among them).
TEST(EngineFaults, SessionPassesItsFaultPlanToEveryReader) {
  for (bool persistent : {false, true}) {
    SCOPED_TRACE(persistent ? "persistent EIO" : "one EINTR");
    std::atomic<std::uint64_t> operations{0};
    io::FaultPlan plan;
    plan.fail_op = 1;  // the first read of the run: the planner's read of the pack's header
    plan.persistent = persistent;
    plan.fail_errno = persistent ? EIO : EINTR;
    plan.shared_operations = &operations;
    SessionOptions o;
    o.model = sweep_model().pack;
    o.budget = 256ull << 20;
    o.n_ctx = 64;
    o.stream = StreamMode::always;
    o.disk_gbps = 2.0;  // no measuring read
    o.fault = &plan;
    if (!persistent) {
      Session session(o);
      std::vector<float> logits;
      const std::int32_t bos = 1;
      session.forward().forward(session.transformer(), single_sequence_batch(std::span(&bos, 1), 0, false), logits);
      EXPECT_GT(operations.load(), 3u);  // the session's later reads were numbered by the same plan
      continue;
    }
    try {
      Session session(o);
      FAIL() << "a session opened a pack whose every read fails";
    } catch (const std::runtime_error& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find(sweep_model().pack), std::string::npos) << what;
      EXPECT_NE(what.find("at offset 0"), std::string::npos) << what;
      EXPECT_NE(what.find(std::strerror(EIO)), std::string::npos) << what;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(KvResidentAndSpilled, EngineFaultSweep, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) { return info.param ? "KvSpilled" : "KvResident"; });

}  // namespace
}  // namespace sluice
