// The per-pass schedule of the streamed model: each delivered unit is checked against the unit
// the pass binds, and a pass that throws midway (a failed read, a compute error) leaves the
// schedule reset, so the next pass reads its own blocks and gives the clean run's logits.
#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "engine/generate.hpp"
#include "engine/pass_schedule.hpp"
#include "engine/streamed_model.hpp"
#include "io/fault_backend.hpp"
#include "model/convert.hpp"
#include "tests/prefetch/prefetch_fixture.hpp"
#include "tests/support/temp_dir.hpp"
#include "tools/synth.hpp"

namespace sluice {
namespace {

// A unit other than the one the pass binds arrives (here a prefetcher whose queue already held
// blk.1 when the schedule appended blk.0, as a reader whose order disagrees with the plan would
// deliver): the pass gets a named error instead of binding blk.1's bytes as blk.0.
TEST(PassSchedule, DeliveredUnitOtherThanTheBoundOneIsANamedError) {
  sluice::testing::TempDir dir;
  const auto tp = prefetch::testing::write_test_pack(dir.file("o.sluice"), 3, 100 * 1024, pack::WriterOptions::Compress::none);
  pack::Pack pack = pack::Pack::open(tp.path);
  auto prefetcher = std::make_unique<prefetch::Prefetcher>(tp.path, pack.extents(), prefetch::RingFor({0, 1, 2}));
  prefetcher->append(1);  // behind the schedule's back
  PassSchedule schedule(std::move(prefetcher));
  schedule.append(0);
  try {
    schedule.take(0);
    FAIL() << "blk.1 was delivered as blk.0 without an error";
  } catch (const Exception& e) {
    const std::string what = e.what();
    EXPECT_EQ(e.kind(), ErrorKind::corrupt);
    EXPECT_EQ(e.context().file, tp.path);
    EXPECT_EQ(e.context().extent, "blk.0");
    EXPECT_NE(what.find(tp.path), std::string::npos) << what;
    EXPECT_NE(what.find("delivered unit 1 (blk.1"), std::string::npos) << what;
    EXPECT_NE(what.find("binds unit 0 (blk.0)"), std::string::npos) << what;
  }
  // The schedule recovers: reset, and the unit asked for is the unit delivered.
  schedule.reset();
  schedule.append(2);
  auto handle = schedule.take(2);
  EXPECT_EQ(handle.extent(), 2u);
  EXPECT_TRUE(prefetch::testing::same_bytes(handle.bytes(), tp.contents[2]));
}

struct Model {
  sluice::testing::TempDir dir;
  std::string pack;
  Model() {
    SynthOptions synth;
    synth.shape = synth_shape("tiny");
    synth.shape.n_layer = 3;
    synth.type = GgmlType::Q8_0;
    synth.vocab_from.clear();  // the built-in vocabulary: no ../shared needed
    const std::string gguf = dir.file("m.gguf");
    pack = dir.file("m.sluice");
    write_synthetic_gguf(gguf, synth);
    pack::WriterOptions writer;
    writer.frame_bytes = 64 * 1024;
    convert_gguf_to_pack(gguf, pack, writer);
  }
};

const Model& model() {
  static const Model m;
  return m;
}

// Every block and the head stream through a 2-slot ring, reading ahead across passes.
StreamOptions streaming(const io::FaultPlan* fault) {
  StreamOptions o;
  o.prefetch.slots = 2;
  o.prefetch.retry.eagain_backoff = std::chrono::microseconds(1);
  o.stream_head = true;
  o.head_piece_slot_bytes = 1;  // one frame per piece: several head reads per pass
  o.fault = fault;
  return o;
}

const std::vector<std::int32_t> kPrompt = {1, 403, 407, 261, 378};
constexpr int kPasses = 4;  // the prompt, then decode steps

// Logits of each pass of a greedy run; a pass that throws `Exception` is retried once (which
// must succeed), and `failures` counts them.
std::vector<std::vector<float>> run(StreamedModel& m, int& failures) {
  Transformer t(m.config(), 32, cpu::Threading{});
  std::vector<std::vector<float>> out;
  std::vector<std::int32_t> tokens = kPrompt;
  std::int64_t pos = 0;
  for (int pass = 0; pass < kPasses; ++pass) {
    std::vector<float> logits;
    try {
      m.evaluate(t, tokens, pos, false, logits);
    } catch (const Exception& e) {
      ++failures;
      EXPECT_EQ(e.kind(), ErrorKind::io) << e.what();
      EXPECT_EQ(e.context().file, model().pack) << e.what();
      EXPECT_EQ(e.context().sys_errno, EIO) << e.what();
      EXPECT_FALSE(e.context().extent.empty()) << e.what();
      EXPECT_GE(e.context().offset, 0) << e.what();
      m.evaluate(t, tokens, pos, false, logits);  // the next pass starts clean
    }
    out.push_back(logits);
    pos += std::int64_t(tokens.size());
    tokens = {argmax(std::span(logits).last(std::size_t(m.config().n_vocab)))};
  }
  return out;
}

bool bit_identical(const std::vector<std::vector<float>>& a, const std::vector<std::vector<float>>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i].size() != b[i].size() || std::memcmp(a[i].data(), b[i].data(), a[i].size() * sizeof(float)) != 0) return false;
  }
  return true;
}

// One read of the run fails (EIO, not retried), for each read the passes make: the pass that
// needs it throws a sluice::Exception naming the file, extent, offset and errno, and the same
// pass run again, and every pass after it, gives the clean run's logits bit for bit.
TEST(StreamedRecovery, PassAfterAFailedReadIsBitIdentical) {
  std::atomic<std::uint64_t> operations{0};
  io::FaultPlan clean;
  clean.shared_operations = &operations;
  std::uint64_t opened = 0;
  std::vector<std::vector<float>> expected;
  {
    StreamedModel m(model().pack, streaming(&clean));
    opened = operations.load();  // the source's reads: header, manifest, resident units
    int failures = 0;
    expected = run(m, failures);
    ASSERT_EQ(failures, 0);
  }
  const std::uint64_t total = operations.load();
  ASSERT_GT(total, opened + 3 * kPasses) << "the passes read too little to sweep";
  int failed_runs = 0;
  for (std::uint64_t n = opened + 1; n <= total; ++n) {
    SCOPED_TRACE("EIO at I/O " + std::to_string(n) + " of " + std::to_string(total));
    operations = 0;
    io::FaultPlan plan;
    plan.fail_op = n;
    plan.fail_errno = EIO;
    plan.shared_operations = &operations;
    StreamedModel m(model().pack, streaming(&plan));
    int failures = 0;
    const auto got = run(m, failures);
    EXPECT_TRUE(bit_identical(got, expected)) << "logits differ from the clean run's";
    EXPECT_LE(failures, 1);
    failed_runs += failures;
  }
  // Every read but the last pass's read-ahead is consumed by some pass.
  EXPECT_GE(failed_runs, int(total - opened) / 2);
}

// A compute error midway (the context is full at block 0, after blk.0 was delivered): the next
// pass binds blk.0 again, not blk.1, and its logits are the clean run's.
TEST(StreamedRecovery, PassAfterAComputeErrorIsBitIdentical) {
  std::vector<float> expected;
  {
    StreamedModel m(model().pack, streaming(nullptr));
    Transformer t(m.config(), 32, cpu::Threading{});
    m.evaluate(t, kPrompt, 0, true, expected);
  }
  StreamedModel m(model().pack, streaming(nullptr));
  Transformer t(m.config(), 32, cpu::Threading{});
  std::vector<float> logits;
  EXPECT_THROW(m.evaluate(t, kPrompt, 30, true, logits), std::length_error);  // positions 30..34 of 32
  m.evaluate(t, kPrompt, 0, true, logits);
  ASSERT_EQ(logits.size(), expected.size());
  EXPECT_EQ(std::memcmp(logits.data(), expected.data(), logits.size() * sizeof(float)), 0);
  EXPECT_EQ(m.stats().passes, 1u);
}

// A pass that wants no logits (a prompt chunk before the last) appends no head: it reads only its
// blocks, and the pass after it, which wants logits, still reads and computes the whole head.
TEST(StreamedRecovery, PassWithoutLogitsReadsNoHead) {
  StreamOptions o = streaming(nullptr);
  o.read_ahead = false;  // each pass's bytes are its own
  StreamedModel m(model().pack, o);
  Transformer t(m.config(), 32, cpu::Threading{});
  Batch chunk = single_sequence_batch(std::span(kPrompt).first(3), 0, false);
  chunk.logit_rows.clear();
  std::vector<float> logits;
  m.forward(t, chunk, logits);
  const std::uint64_t without_head = m.stats().bytes_streamed;
  m.evaluate(t, std::span(kPrompt).subspan(3), 3, false, logits);
  const std::uint64_t with_head = m.stats().bytes_streamed - without_head;
  const SourceTensor* head = m.source().find_tensor("output.weight");
  if (!head) head = m.source().find_tensor("token_embd.weight");  // tied
  ASSERT_NE(head, nullptr);
  EXPECT_GE(with_head, without_head + m.source().units()[head->extent].disk_bytes);

  // The same two passes with logits wanted from both agree bit for bit.
  std::vector<float> expected;
  StreamedModel whole(model().pack, streaming(nullptr));
  Transformer tw(whole.config(), 32, cpu::Threading{});
  whole.evaluate(tw, std::span(kPrompt).first(3), 0, false, expected);
  whole.evaluate(tw, std::span(kPrompt).subspan(3), 3, false, expected);
  ASSERT_EQ(logits.size(), expected.size());
  EXPECT_EQ(std::memcmp(logits.data(), expected.data(), logits.size() * sizeof(float)), 0);
}

}  // namespace
}  // namespace sluice
