// The append-style schedule: a Prefetcher whose ring lives across passes takes extents as the
// consumer decides them, and reset() after an error or an abandoned pass leaves it delivering
// the next schedule correctly on the same ring.
#include <cerrno>

#include "tests/prefetch/prefetch_fixture.hpp"

namespace sluice::prefetch::testing {
namespace {

using Compress = pack::WriterOptions::Compress;
using sluice::testing::TempDir;

PrefetchOptions small_ring() {
  PrefetchOptions o;
  o.slots = 2;
  o.read_bytes = 64 * 1024;
  o.io.queue_depth = 4;
  o.retry.eagain_backoff = std::chrono::microseconds(1);
  return o;
}

RingFor every_extent(const pack::Pack& pack) { return RingFor(sequential_plan(pack.extents().size())); }

void expect_delivers(Prefetcher& prefetcher, const TestPack& tp, std::uint32_t extent) {
  auto next = prefetcher.next();
  ASSERT_TRUE(next) << next.error().message;
  EXPECT_EQ(next.value().extent(), extent);
  EXPECT_TRUE(same_bytes(next.value().bytes(), tp.contents[extent])) << "extent " << extent;
}

TEST(PrefetchSchedule, ExtentsAppendedLateAreDeliveredInAppendOrder) {
  TempDir dir;
  TestPack tp = write_test_pack(dir.file("a.sluice"), 4, 150 * 1024, Compress::auto_);
  pack::Pack pack = pack::Pack::open(tp.path);
  Prefetcher prefetcher(tp.path, pack.extents(), every_extent(pack), small_ring());
  EXPECT_TRUE(prefetcher.done());
  EXPECT_GT(prefetcher.ring_bytes(), 0u);
  prefetcher.append(2);
  expect_delivers(prefetcher, tp, 2);
  EXPECT_TRUE(prefetcher.done());  // nothing queued: the consumer decides what comes next
  for (std::uint32_t e : {0u, 3u, 0u}) prefetcher.append(e);
  EXPECT_EQ(prefetcher.pending(), 3u);
  for (std::uint32_t e : {0u, 3u, 0u}) expect_delivers(prefetcher, tp, e);
  prefetcher.append(1);  // after the queue ran dry the I/O thread still takes appends
  expect_delivers(prefetcher, tp, 1);
  auto after = prefetcher.next();
  ASSERT_FALSE(after);
  EXPECT_EQ(after.error().kind, ErrorKind::cancelled);
  EXPECT_EQ(prefetcher.stats().extents_read, 5u);
}

// One failed read (EIO, not retried) stops the schedule; reset() forgets it, and the same
// ring delivers a new schedule with identical bytes. Without reset every later next() fails.
TEST(PrefetchSchedule, ResetAfterAnErrorDeliversTheNextScheduleCorrectly) {
  TempDir dir;
  TestPack tp = write_test_pack(dir.file("r.sluice"), 4, 150 * 1024, Compress::zstd);
  pack::Pack pack = pack::Pack::open(tp.path);
  for (std::uint64_t failing = 1; failing <= 4; ++failing) {
    SCOPED_TRACE("EIO at read " + std::to_string(failing));
    io::FaultPlan plan;
    plan.fail_op = failing;
    plan.fail_errno = EIO;
    Prefetcher prefetcher(tp.path, pack.extents(), every_extent(pack), small_ring(), io::fault_wrapper(plan));
    const std::uint64_t ring = prefetcher.ring_bytes();
    for (std::uint32_t e = 0; e < 4; ++e) prefetcher.append(e);
    bool failed = false;
    for (std::uint32_t e = 0; e < 4 && !failed; ++e) {
      auto next = prefetcher.next();
      if (!next) {
        failed = true;
        EXPECT_EQ(next.error().kind, ErrorKind::io) << next.error().message;
        EXPECT_EQ(next.error().sys_errno, EIO);
      }
    }
    ASSERT_TRUE(failed) << "the injected fault was never delivered";
    EXPECT_FALSE(prefetcher.next()) << "a schedule that failed delivers nothing more";
    prefetcher.reset();
    EXPECT_TRUE(prefetcher.done());
    for (std::uint32_t e : {3u, 1u, 2u, 0u}) prefetcher.append(e);
    for (std::uint32_t e : {3u, 1u, 2u, 0u}) expect_delivers(prefetcher, tp, e);
    EXPECT_EQ(prefetcher.ring_bytes(), ring);  // the same ring, not a new one
  }
}

// A consumer that gives up mid-schedule (an exception in its compute) with reads in flight and
// decoded extents waiting: reset() drops them, and the next schedule starts at its own first
// extent rather than at the abandoned schedule's next one.
TEST(PrefetchSchedule, ResetMidScheduleDropsWhatWasQueuedAndInFlight) {
  TempDir dir;
  TestPack tp = write_test_pack(dir.file("m.sluice"), 5, 200 * 1024, Compress::none);
  pack::Pack pack = pack::Pack::open(tp.path);
  io::FaultPlan slow;
  slow.reap_delay = std::chrono::milliseconds(2);  // keeps reads in flight when reset() runs
  Prefetcher prefetcher(tp.path, pack.extents(), every_extent(pack), small_ring(), io::fault_wrapper(slow));
  for (std::uint32_t e = 0; e < 5; ++e) prefetcher.append(e);
  {
    auto first = prefetcher.next();
    ASSERT_TRUE(first) << first.error().message;
    prefetcher.reset();  // a handle still alive across reset stays valid
    EXPECT_TRUE(same_bytes(first.value().bytes(), tp.contents[0]));
  }
  EXPECT_EQ(prefetcher.pending(), 0u);
  for (std::uint32_t e : {4u, 2u}) prefetcher.append(e);
  for (std::uint32_t e : {4u, 2u}) expect_delivers(prefetcher, tp, e);
  EXPECT_TRUE(prefetcher.done());
}

}  // namespace
}  // namespace sluice::prefetch::testing
