// Prefetcher behaviour on healthy packs: plan order, byte identity, back-pressure,
// cancellation, and memory bounded by the ring.
#include <fstream>
#include <sstream>
#include <thread>

#include "common/memory.hpp"
#include "common/units.hpp"
#include "prefetch/stream_pass.hpp"
#include "tests/prefetch/prefetch_fixture.hpp"

namespace sluice::prefetch::testing {
namespace {

using Compress = pack::WriterOptions::Compress;
using sluice::testing::TempDir;

struct Param {
  io::BackendKind backend;
  Compress compress;
};

std::string param_name(const ::testing::TestParamInfo<Param>& info) {
  static const char* const kCodec[] = {"auto", "none", "zstd"};
  std::string backend = info.param.backend == io::BackendKind::uring ? "uring" : "pread";
  return backend + "_" + kCodec[static_cast<int>(info.param.compress)];
}

class PrefetchSuite : public ::testing::TestWithParam<Param> {
 protected:
  PrefetchOptions options(unsigned slots = 3) {
    PrefetchOptions o;
    o.slots = slots;
    o.read_bytes = 128 * 1024;
    o.io.kind = GetParam().backend;
    o.io.queue_depth = 8;
    return o;
  }
  TempDir dir;
};

TEST_P(PrefetchSuite, DeliversPlanInOrderWithIdenticalBytes) {
  TestPack tp = write_test_pack(dir.file("p.sluice"), 6, 300 * 1024, GetParam().compress);
  pack::Pack pack = pack::Pack::open(tp.path);
  // Repeats and jumps: a plan is any sequence of extents.
  std::vector<std::uint32_t> plan = {0, 1, 2, 1, 5, 3, 4, 0, 5};
  Prefetcher prefetcher(tp.path, pack.extents(), plan, options());
  for (std::size_t pos = 0; pos < plan.size(); ++pos) {
    ASSERT_FALSE(prefetcher.done());
    auto next = prefetcher.next();
    ASSERT_TRUE(next) << next.error().message;
    ExtentHandle handle = std::move(next).value();
    EXPECT_EQ(handle.plan_position(), pos);
    EXPECT_EQ(handle.extent(), plan[pos]);
    EXPECT_TRUE(same_bytes(handle.bytes(), tp.contents[plan[pos]])) << "extent " << plan[pos];
  }
  EXPECT_TRUE(prefetcher.done());
  auto after = prefetcher.next();
  ASSERT_FALSE(after);
  EXPECT_EQ(after.error().kind, ErrorKind::cancelled);
  PrefetchStats stats = prefetcher.stats();
  EXPECT_EQ(stats.extents_read, plan.size());
  EXPECT_EQ(stats.extents_delivered, plan.size());
  EXPECT_GT(stats.frames_verified, 0u);
}

TEST_P(PrefetchSuite, StreamPassRunsComputeOverEveryExtent) {
  TestPack tp = write_test_pack(dir.file("p.sluice"), 5, 200 * 1024, GetParam().compress);
  pack::Pack pack = pack::Pack::open(tp.path);
  Prefetcher prefetcher(tp.path, pack.extents(), sequential_plan(5), options(2));
  std::vector<std::uint32_t> seen;
  auto pass = stream_pass(prefetcher, [&](std::span<const std::byte> bytes, std::uint32_t extent) {
    EXPECT_TRUE(same_bytes(bytes, tp.contents[extent]));
    seen.push_back(extent);
  });
  ASSERT_TRUE(pass) << pass.error().message;
  EXPECT_EQ(seen, sequential_plan(5));
  EXPECT_EQ(pass.value().extents, 5u);
  EXPECT_GT(pass.value().bytes_read, 0u);
  EXPECT_GT(pass.value().overlap(), 0.0);
}

TEST_P(PrefetchSuite, BackPressureBoundsReadAhead) {
  TestPack tp = write_test_pack(dir.file("p.sluice"), 10, 100 * 1024, GetParam().compress);
  pack::Pack pack = pack::Pack::open(tp.path);
  constexpr unsigned kSlots = 2;
  Prefetcher prefetcher(tp.path, pack.extents(), sequential_plan(10), options(kSlots));
  for (std::size_t consumed = 0; consumed < 10; ++consumed) {
    auto next = prefetcher.next();
    ASSERT_TRUE(next);
    // A slow consumer: give the I/O thread every chance to run ahead. It must not get further
    // than the ring allows: the extent held plus kSlots - 1 others.
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    PrefetchStats stats = prefetcher.stats();
    EXPECT_LE(stats.extents_read, consumed + kSlots);
    EXPECT_LE(stats.max_slots_in_use, kSlots);
  }
}

TEST_P(PrefetchSuite, CancelMidPassReleasesEverything) {
  TestPack tp = write_test_pack(dir.file("p.sluice"), 12, 200 * 1024, GetParam().compress);
  pack::Pack pack = pack::Pack::open(tp.path);
  for (std::size_t stop_after = 0; stop_after < 6; ++stop_after) {
    Prefetcher prefetcher(tp.path, pack.extents(), sequential_plan(12), options(3));
    ExtentHandle held;
    for (std::size_t i = 0; i < stop_after; ++i) {
      auto next = prefetcher.next();
      ASSERT_TRUE(next);
      held = std::move(next).value();  // the previous handle is released by the move
    }
    prefetcher.cancel();
    auto after = prefetcher.next();
    ASSERT_FALSE(after);
    EXPECT_EQ(after.error().kind, ErrorKind::cancelled);
    // A handle held across cancel stays valid until released.
    if (held) {
      EXPECT_TRUE(same_bytes(held.bytes(), tp.contents[held.extent()]));
    }
  }
}

// Destroyed while reads are outstanding (completions are held back by the fault wrapper's reap
// delay, and the I/O thread is seen waiting on reads in flight before the destructor runs): the
// destructor must drain them before the ring goes (ASan would see a read into freed memory).
TEST_P(PrefetchSuite, DestroyWithReadsInFlight) {
  TestPack tp = write_test_pack(dir.file("p.sluice"), 8, 400 * 1024, GetParam().compress);
  pack::Pack pack = pack::Pack::open(tp.path);
  for (int i = 0; i < 5; ++i) {
    io::FaultPlan slow;
    slow.reap_delay = std::chrono::milliseconds(20);
    PrefetchOptions o = options(4);
    const auto started = std::chrono::steady_clock::now();
    {
      Prefetcher prefetcher(tp.path, pack.extents(), sequential_plan(8), o, io::fault_wrapper(slow));
      PrefetchStats st;
      for (int wait = 0; wait < 500; ++wait) {
        st = prefetcher.stats();
        if (st.in_flight_at_wait > 0) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      ASSERT_GT(st.in_flight_at_wait, 0u) << "no read was seen in flight";
      ASSERT_LT(st.extents_read, 8u) << "every read completed before the destructor ran";
    }
    // The destructor waited for the held-back completions rather than abandoning them.
    EXPECT_GE(std::chrono::steady_clock::now() - started, std::chrono::milliseconds(20));
  }
}

TEST_P(PrefetchSuite, EmptyPlanIsDoneAtOnce) {
  TestPack tp = write_test_pack(dir.file("p.sluice"), 1, 10000, GetParam().compress);
  pack::Pack pack = pack::Pack::open(tp.path);
  Prefetcher prefetcher(tp.path, pack.extents(), {}, options());
  EXPECT_TRUE(prefetcher.done());
  EXPECT_FALSE(prefetcher.next());
}

INSTANTIATE_TEST_SUITE_P(Backends, PrefetchSuite,
                         ::testing::Values(Param{io::BackendKind::uring, Compress::none},
                                           Param{io::BackendKind::uring, Compress::zstd},
                                           Param{io::BackendKind::uring, Compress::auto_},
                                           Param{io::BackendKind::pread, Compress::none},
                                           Param{io::BackendKind::pread, Compress::zstd}),
                         param_name);

TEST(PrefetchMemory, StreamingFourTimesTheRingKeepsRssWithinRingPlus64MiB) {
  TempDir dir;
  // 8 extents of 8 MiB = 64 MiB streamed through a 2-slot ring of 8 MiB slots (16 MiB): 4x.
  std::string path = dir.file("big.sluice");
  {
    pack::PackWriter writer(path, pack::WriterOptions{1u << 20, pack::WriterOptions::Compress::none, 3, 0.05});
    std::vector<std::byte> bytes(8 * MiB);
    for (int i = 0; i < 8; ++i) {
      std::memset(bytes.data(), i + 1, bytes.size());
      writer.begin_extent("blk." + std::to_string(i));
      writer.add_bytes(bytes);
      writer.end_extent();
    }
    writer.finish();
  }
  pack::Pack pack = pack::Pack::open(path);
  if (!reset_peak_rss()) GTEST_SKIP() << "cannot reset VmHWM (/proc/self/clear_refs not writable)";
  std::uint64_t baseline = current_rss_bytes();
  PrefetchOptions options;
  options.slots = 2;
  std::uint64_t ring = 0;
  std::uint64_t streamed = 0;
  {
    Prefetcher prefetcher(path, pack.extents(), sequential_plan(8), options);
    ring = prefetcher.ring_bytes();
    auto pass = stream_pass(prefetcher, [&](std::span<const std::byte> b, std::uint32_t) { streamed += b.size(); });
    ASSERT_TRUE(pass) << pass.error().message;
  }
  std::uint64_t peak = peak_rss_bytes();
  EXPECT_GE(streamed, 4 * ring);
  EXPECT_LE(peak, baseline + ring + 64 * MiB) << "baseline " << baseline << " ring " << ring << " peak " << peak;
}

// Bytes of [begin, begin + bytes) that /proc/self/smaps says are backed by transparent huge
// pages (AnonHugePages of every mapping inside the range; the ring's madvise gives it its own).
std::uint64_t huge_page_bytes_in(const std::byte* begin, std::size_t bytes) {
  const auto lo = reinterpret_cast<std::uintptr_t>(begin), hi = lo + bytes;
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  bool inside = false;
  std::uint64_t total = 0;
  while (std::getline(smaps, line)) {
    std::uintptr_t start = 0, end = 0;
    char dash = 0;
    std::istringstream head(line);
    if (head >> std::hex >> start >> dash >> end && dash == '-') {
      inside = start >= lo && end <= hi;
      continue;
    }
    std::uint64_t kib = 0;
    if (inside && std::sscanf(line.c_str(), "AnonHugePages: %lu kB", &kib) == 1) total += kib * 1024;
  }
  return total;
}

// O_DIRECT reads into 4 KiB pages ran at half the speed of huge-page reads on a virtio disk, and
// slots mapped one by one got huge pages only for whole 2 MiB spans of each slot (none for
// slots under 2 MiB): the ring is one mapping, huge wherever a plain buffer of its size is.
TEST(PrefetchRing, SlotsSmallerThanAHugePageStillLandInHugePages) {
  std::ifstream thp("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string modes;
  std::getline(thp, modes);
  if (modes.empty() || modes.find("[never]") != std::string::npos) GTEST_SKIP() << "transparent huge pages off here";
  TempDir dir;
  TestPack tp = write_test_pack(dir.file("p.sluice"), 8, 1536 * 1024, Compress::none);
  pack::Pack pack = pack::Pack::open(tp.path);
  PrefetchOptions options;
  options.slots = 8;  // 8 slots of about 1.6 MiB: 12 MiB of ring, no slot a whole huge page
  Prefetcher prefetcher(tp.path, pack.extents(), RingFor(sequential_plan(8)), options);
  const std::span<const std::byte> ring = prefetcher.ring_memory();
  ASSERT_GE(ring.size(), 12 * MiB);
  // What the kernel gives a plain buffer of the same size now (compaction may be short of
  // huge pages on a busy machine): the ring must get as much, less one huge page of slack.
  numa::PinnedBuffer control = numa::PinnedBuffer::allocate(numa::Topology::load_this_system(), 0, ring.size());
  const std::uint64_t control_huge = huge_page_bytes_in(control.data(), control.size());
  if (control_huge < 4 * MiB) GTEST_SKIP() << "the kernel gave a plain buffer only " << control_huge << " bytes of huge pages";
  EXPECT_GE(huge_page_bytes_in(ring.data(), ring.size()) + 2 * MiB, control_huge)
      << "ring of " << ring.size() << " bytes; a plain buffer of that size got " << control_huge << " bytes of huge pages";
}

}  // namespace
}  // namespace sluice::prefetch::testing
