// Fault sweeps (SQLite ioerr.test style): fail the N-th read for every N across a whole pass,
// transient and persistent, for every errno class; short reads and bit flips. A pass either
// completes with identical bytes or fails cleanly with a message naming path, offset and length.
#include <cstdio>

#include "tests/io/io_fixture.hpp"

namespace sluice::io::testing {
namespace {

using sluice::testing::TempDir;
using sluice::testing::write_pattern_file;

constexpr std::uint64_t kSize = 1 * MiB + 3 * 4096 + 77;  // unaligned tail on purpose
constexpr std::uint32_t kChunk = 64 * 1024;
constexpr std::uint64_t kChunks = (kSize + kChunk - 1) / kChunk;

class FaultSweep : public ::testing::TestWithParam<BackendParam> {
 protected:
  void SetUp() override {
    path = dir.file("sweep.bin");
    write_pattern_file(path, kSize, 42);
  }
  TempDir dir;
  std::string path;
};

TEST_P(FaultSweep, TransientErrnosAreRetriedAndThePassCompletes) {
  for (int err : {EAGAIN, EINTR, ECANCELED}) {
    for (std::uint64_t n = 1; n <= kChunks + 1; ++n) {
      SCOPED_TRACE("errno " + std::to_string(err) + ", failing operation " + std::to_string(n));
      FaultBackend* fault = nullptr;
      FaultPlan plan;
      plan.fail_op = n;
      plan.fail_errno = err;
      auto reader = open_faulty(path, GetParam(), plan, &fault);
      PassResult pass = read_pass(*reader, kChunk);
      ASSERT_TRUE(pass.errors.empty()) << pass.errors[0].message;
      EXPECT_TRUE(matches_pattern(pass.data, 42));
      EXPECT_EQ(fault->stats().injected_errors, n <= kChunks ? 1u : 0u);
      EXPECT_EQ(reader->stats().retries, n <= kChunks ? 1u : 0u);
    }
  }
}

TEST_P(FaultSweep, PersistentErrorsFailCleanlyAtEveryOperation) {
  // Persistent transient errnos exhaust the retry budget; EIO and the rest fail at once.
  for (int err : {EIO, EAGAIN, EINTR, ECANCELED, EINVAL, EBADF, EFAULT, ENOMEM, ENXIO}) {
    for (std::uint64_t n = 1; n <= kChunks; ++n) {
      SCOPED_TRACE("errno " + std::to_string(err) + ", failing from operation " + std::to_string(n));
      FaultBackend* fault = nullptr;
      FaultPlan plan;
      plan.fail_op = n;
      plan.fail_errno = err;
      plan.persistent = true;
      auto reader = open_faulty(path, GetParam(), plan, &fault);
      PassResult pass = read_pass(*reader, kChunk);  // must return: no hang
      ASSERT_FALSE(pass.errors.empty());
      const Error& e = pass.errors.front();
      EXPECT_EQ(e.kind, ErrorKind::io);
      EXPECT_EQ(e.sys_errno, err);
      EXPECT_NE(e.message.find(path), std::string::npos) << e.message;
      EXPECT_NE(e.message.find("offset"), std::string::npos) << e.message;
      EXPECT_NE(e.message.find("length 65536"), std::string::npos) << e.message;
      EXPECT_NE(e.message.find(std::strerror(err)), std::string::npos) << e.message;
      bool transient = err == EAGAIN || err == EINTR || err == ECANCELED;
      if (transient) {
        EXPECT_NE(e.message.find("after 8 retries"), std::string::npos) << e.message;
      }
      EXPECT_EQ(reader->in_flight(), 0u);
    }
  }
}

TEST_P(FaultSweep, TransientEioIsNotRetried) {
  FaultBackend* fault = nullptr;
  FaultPlan plan;
  plan.fail_op = 3;
  plan.fail_errno = EIO;
  auto reader = open_faulty(path, GetParam(), plan, &fault);
  PassResult pass = read_pass(*reader, kChunk);
  ASSERT_EQ(pass.errors.size(), 1u);
  EXPECT_EQ(pass.errors[0].sys_errno, EIO);
  EXPECT_EQ(reader->stats().retries, 0u);
}

TEST_P(FaultSweep, ShortReadsAreAdvancedAndResubmitted) {
  for (std::uint64_t seed = 1; seed <= 20; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    FaultBackend* fault = nullptr;
    FaultPlan plan;
    plan.seed = seed;
    plan.short_read_probability = 0.5;
    auto reader = open_faulty(path, GetParam(), plan, &fault);
    PassResult pass = read_pass(*reader, kChunk);
    ASSERT_TRUE(pass.errors.empty()) << pass.errors[0].message;
    EXPECT_TRUE(matches_pattern(pass.data, 42));
    EXPECT_GT(fault->stats().short_reads, 0u);
    EXPECT_EQ(reader->stats().short_reads, fault->stats().short_reads);
  }
}

TEST_P(FaultSweep, EndlessShortReadsAreBounded) {
  FaultBackend* fault = nullptr;
  FaultPlan plan;
  plan.short_read_probability = 1.0;
  RetryPolicy retry;
  retry.max_short_resubmits = 2;
  auto reader = open_faulty(path, GetParam(), plan, &fault, 8, retry);
  PassResult pass = read_pass(*reader, kChunk);
  ASSERT_FALSE(pass.errors.empty());
  EXPECT_NE(pass.errors[0].message.find("short reads in a row"), std::string::npos) << pass.errors[0].message;
  // The file is whole: the reader must not blame its end.
  EXPECT_EQ(pass.errors[0].message.find("file ends at byte"), std::string::npos) << pass.errors[0].message;
}

// Short reads injected at random and the file cut after open: the reads that reach the new end
// fail saying where the file ends (not that the device is stuck); the injected ones before it
// are still ridden out.
TEST_P(FaultSweep, AFileCutAfterOpenSaysWhereItEndsAmidInjectedShortReads) {
  constexpr std::uint64_t kCut = 5 * kChunk + 1000;
  for (std::uint64_t seed = 1; seed <= 10; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    FaultBackend* fault = nullptr;
    FaultPlan plan;
    plan.seed = seed;
    plan.short_read_probability = 0.5;
    auto reader = open_faulty(path, GetParam(), plan, &fault);
    ASSERT_EQ(::truncate(path.c_str(), kCut), 0);
    PassResult pass = read_pass(*reader, kChunk);
    ASSERT_FALSE(pass.errors.empty());
    for (const Error& e : pass.errors) {
      EXPECT_EQ(e.kind, ErrorKind::io);
      EXPECT_NE(e.message.find(path + ": file ends at byte " + std::to_string(kCut) + ", but the read needs bytes"),
                std::string::npos)
          << e.message;
      EXPECT_EQ(e.message.find("short reads in a row"), std::string::npos) << e.message;
    }
    EXPECT_EQ(reader->in_flight(), 0u);
    write_pattern_file(path, kSize, 42);  // whole again for the next seed
  }
}

TEST_P(FaultSweep, BitFlipsReachTheCaller) {
  // The reader cannot know bytes are wrong: the checksum layer above it (prefetch) must catch
  // this. Here we check the wrapper really corrupts exactly one bit.
  FaultBackend* fault = nullptr;
  FaultPlan plan;
  plan.flip_op = 4;
  auto reader = open_faulty(path, GetParam(), plan, &fault);
  PassResult pass = read_pass(*reader, kChunk);
  ASSERT_TRUE(pass.errors.empty());
  EXPECT_EQ(fault->stats().bit_flips, 1u);
  int flipped_bits = 0;
  for (std::uint64_t i = 0; i < pass.data.size(); ++i) {
    flipped_bits += __builtin_popcount(pass.data[i] ^ sluice::testing::pattern_byte(i, 42));
  }
  EXPECT_EQ(flipped_bits, 1);
}

INSTANTIATE_TEST_SUITE_P(Backends, FaultSweep, ::testing::ValuesIn(kAllBackends), param_name);

}  // namespace
}  // namespace sluice::io::testing
