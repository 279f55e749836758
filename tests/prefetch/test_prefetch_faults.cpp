// Prefetcher under corruption and I/O faults: a corrupt frame or failed read reaches the
// consumer as a typed error naming extent, frame and file offset; transient faults anywhere in
// a pass leave the delivered bytes identical; persistent faults never hang.
#include <fcntl.h>
#include <unistd.h>

#include "io/fault_backend.hpp"
#include "prefetch/stream_pass.hpp"
#include "tests/prefetch/prefetch_fixture.hpp"

namespace sluice::prefetch::testing {
namespace {

using Compress = pack::WriterOptions::Compress;
using sluice::testing::TempDir;

void flip_byte_at(const std::string& path, std::uint64_t offset) {
  int fd = ::open(path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  unsigned char b = 0;
  ASSERT_EQ(::pread(fd, &b, 1, static_cast<off_t>(offset)), 1);
  b ^= 0x10;
  ASSERT_EQ(::pwrite(fd, &b, 1, static_cast<off_t>(offset)), 1);
  ::close(fd);
}

PrefetchOptions small_ring(unsigned depth = 8) {
  PrefetchOptions o;
  o.slots = 3;
  o.read_bytes = 64 * 1024;
  o.io.queue_depth = depth;
  o.retry.eagain_backoff = std::chrono::microseconds(1);
  return o;
}

// Reads the prefetcher issues for a sequential pass (no retries): one per read_bytes chunk.
std::uint64_t read_operations(const pack::Pack& pack, std::uint32_t read_bytes) {
  std::uint64_t ops = 0;
  for (const auto& e : pack.extents()) ops += ((e.disk_bytes + 4095) / 4096 * 4096 + read_bytes - 1) / read_bytes;
  return ops;
}

class CorruptFrame : public ::testing::TestWithParam<Compress> {};

TEST_P(CorruptFrame, ErrorNamesExtentFrameAndOffset) {
  TempDir dir;
  TestPack tp = write_test_pack(dir.file("c.sluice"), 5, 300 * 1024, GetParam());
  pack::Pack pack = pack::Pack::open(tp.path);
  const std::uint32_t bad_extent = 3;
  const std::size_t bad_frame = 2;
  const pack::FrameInfo& frame = pack.extents()[bad_extent].frames[bad_frame];
  flip_byte_at(tp.path, frame.offset + frame.disk_bytes / 2);

  Prefetcher prefetcher(tp.path, pack.extents(), sequential_plan(5), small_ring());
  for (std::uint32_t i = 0; i < bad_extent; ++i) {
    auto next = prefetcher.next();
    ASSERT_TRUE(next) << next.error().message;
    EXPECT_TRUE(same_bytes(next.value().bytes(), tp.contents[i]));
  }
  auto bad = prefetcher.next();
  ASSERT_FALSE(bad);
  const PrefetchError& e = bad.error();
  EXPECT_EQ(e.kind, ErrorKind::checksum);
  EXPECT_EQ(e.extent, bad_extent);
  EXPECT_EQ(e.extent_name, "blk.3");
  EXPECT_EQ(e.frame, static_cast<std::int64_t>(bad_frame));
  EXPECT_EQ(e.file_offset, frame.offset);
  EXPECT_NE(e.message.find(tp.path), std::string::npos) << e.message;
  EXPECT_NE(e.message.find("frame 2"), std::string::npos) << e.message;
  EXPECT_NE(e.message.find("file offset " + std::to_string(frame.offset)), std::string::npos) << e.message;
  // Nothing after the failure is delivered, and asking again does not hang.
  EXPECT_FALSE(prefetcher.next());
}

INSTANTIATE_TEST_SUITE_P(Codecs, CorruptFrame, ::testing::Values(Compress::none, Compress::zstd));

TEST(PrefetchFaults, InjectedBitFlipIsCaughtByTheChecksum) {
  TempDir dir;
  TestPack tp = write_test_pack(dir.file("f.sluice"), 4, 200 * 1024, Compress::none);
  pack::Pack pack = pack::Pack::open(tp.path);
  io::FaultPlan plan;
  plan.flip_op = 5;
  PrefetchOptions options = small_ring();
  Prefetcher prefetcher(tp.path, pack.extents(), sequential_plan(4), options, io::fault_wrapper(plan));
  auto pass = stream_pass(prefetcher, {});
  ASSERT_FALSE(pass);
  EXPECT_EQ(pass.error().kind, ErrorKind::checksum);
  EXPECT_GE(pass.error().frame, 0);
}

TEST(PrefetchFaults, TransientFaultSweepKeepsBytesIdentical) {
  TempDir dir;
  TestPack tp = write_test_pack(dir.file("t.sluice"), 4, 150 * 1024, Compress::auto_);
  pack::Pack pack = pack::Pack::open(tp.path);
  std::uint64_t reads = read_operations(pack, small_ring().read_bytes);
  for (int err : {EAGAIN, EINTR}) {
    for (std::uint64_t n = 1; n <= reads; ++n) {
      SCOPED_TRACE("errno " + std::to_string(err) + " at operation " + std::to_string(n));
      io::FaultPlan plan;
      plan.fail_op = n;
      plan.fail_errno = err;
      PrefetchOptions options = small_ring();
      Prefetcher prefetcher(tp.path, pack.extents(), sequential_plan(4), options, io::fault_wrapper(plan));
      auto pass = stream_pass(prefetcher, [&](std::span<const std::byte> bytes, std::uint32_t extent) {
        EXPECT_TRUE(same_bytes(bytes, tp.contents[extent]));
      });
      ASSERT_TRUE(pass) << pass.error().message;
      EXPECT_EQ(pass.value().extents, 4u);
    }
  }
}

TEST(PrefetchFaults, PersistentFaultSweepFailsCleanly) {
  TempDir dir;
  TestPack tp = write_test_pack(dir.file("p.sluice"), 4, 150 * 1024, Compress::none);
  pack::Pack pack = pack::Pack::open(tp.path);
  std::uint64_t reads = read_operations(pack, small_ring().read_bytes);
  ASSERT_GT(reads, 8u);
  for (std::uint64_t n = 1; n <= reads; ++n) {
    SCOPED_TRACE("EIO from operation " + std::to_string(n));
    io::FaultPlan plan;
    plan.fail_op = n;
    plan.fail_errno = EIO;
    plan.persistent = true;
    PrefetchOptions options = small_ring();
    Prefetcher prefetcher(tp.path, pack.extents(), sequential_plan(4), options, io::fault_wrapper(plan));
    auto pass = stream_pass(prefetcher, {});
    ASSERT_FALSE(pass);
    const PrefetchError& e = pass.error();
    EXPECT_EQ(e.kind, ErrorKind::io);
    EXPECT_EQ(e.sys_errno, EIO);
    EXPECT_NE(e.message.find("Input/output error"), std::string::npos) << e.message;
    EXPECT_NE(e.message.find("extent " + std::to_string(e.extent)), std::string::npos) << e.message;
    EXPECT_GE(e.file_offset, pack.extents()[e.extent].offset);
  }
}

TEST(PrefetchFaults, ShortReadsAreInvisibleToTheConsumer) {
  TempDir dir;
  TestPack tp = write_test_pack(dir.file("s.sluice"), 4, 250 * 1024, Compress::zstd);
  pack::Pack pack = pack::Pack::open(tp.path);
  io::FaultPlan plan;
  plan.seed = 1234;
  plan.short_read_probability = 0.3;
  PrefetchOptions options = small_ring();
  Prefetcher prefetcher(tp.path, pack.extents(), sequential_plan(4), options, io::fault_wrapper(plan));
  auto pass = stream_pass(prefetcher, [&](std::span<const std::byte> bytes, std::uint32_t extent) {
    EXPECT_TRUE(same_bytes(bytes, tp.contents[extent]));
  });
  ASSERT_TRUE(pass) << pass.error().message;
}

TEST(PrefetchFaults, TruncatedPackFileGivesAnIoErrorNotAHang) {
  TempDir dir;
  TestPack tp = write_test_pack(dir.file("x.sluice"), 4, 200 * 1024, Compress::none);
  pack::Pack pack = pack::Pack::open(tp.path);
  auto extents = pack.extents();
  ASSERT_EQ(::truncate(tp.path.c_str(), static_cast<off_t>(extents[2].offset + 4096)), 0);
  Prefetcher prefetcher(tp.path, extents, sequential_plan(4), small_ring());
  auto pass = stream_pass(prefetcher, {});
  ASSERT_FALSE(pass);
  EXPECT_EQ(pass.error().extent, 2u);
}

}  // namespace
}  // namespace sluice::prefetch::testing
