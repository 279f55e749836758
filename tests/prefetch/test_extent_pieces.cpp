// extent_pieces (prefetcher.hpp): an extent split into runs of whole frames that fit a smaller
// ring slot. The pieces cover the frames in order, respect the slot bound, and read through the
// Prefetcher they give back the extent's bytes, including raw frames that follow a compressed one
// at an offset that is not block-aligned (read from the block before, delivered without a copy).
#include <cstring>
#include <random>

#include "common/units.hpp"
#include "tests/prefetch/prefetch_fixture.hpp"

namespace sluice::prefetch::testing {
namespace {

using sluice::testing::TempDir;

// Frames alternate between compressible (one repeated byte) and random, so with auto
// compression zstd frames of odd sizes push the raw frames after them off block boundaries.
TestPack write_mixed_pack(const std::string& path) {
  pack::WriterOptions options;
  options.frame_bytes = 64 * 1024;
  options.compress = pack::WriterOptions::Compress::auto_;
  pack::PackWriter writer(path, options);
  TestPack result{path, {}};
  std::mt19937_64 rng(7);
  for (int e = 0; e < 2; ++e) {
    std::vector<std::byte> bytes(7 * options.frame_bytes + 1234);
    for (std::size_t i = 0; i < bytes.size(); ++i) {
      const bool random_frame = (i / options.frame_bytes) % 2 == 1;
      bytes[i] = random_frame ? std::byte(rng() & 0xff) : std::byte(e + 1);
    }
    writer.begin_extent("blk." + std::to_string(e));
    writer.add_bytes(bytes);
    writer.end_extent();
    result.contents.push_back(std::move(bytes));
  }
  writer.finish();
  return result;
}

TEST(ExtentPieces, CoverTheFramesWithinTheSlotBound) {
  TempDir dir;
  TestPack tp = write_mixed_pack(dir.file("p.sluice"));
  pack::Pack pack = pack::Pack::open(tp.path);
  for (std::uint64_t max_slot : {std::uint64_t{1}, std::uint64_t{150 * 1024}, std::uint64_t{400 * 1024}, UINT64_MAX}) {
    SCOPED_TRACE("max slot " + std::to_string(max_slot));
    const pack::ExtentInfo& e = pack.extents()[0];
    const auto pieces = extent_pieces(e, max_slot);
    std::size_t frame = 0;
    std::uint64_t raw = 0;
    for (const auto& p : pieces) {
      ASSERT_FALSE(p.frames.empty());
      EXPECT_EQ(p.offset % kDirectAlign, 0u);
      EXPECT_LE(p.offset, p.frames[0].offset);
      EXPECT_TRUE(p.frames.size() == 1 || extent_slot_bytes(p) <= max_slot);
      for (const auto& f : p.frames) EXPECT_EQ(f.offset, e.frames[frame++].offset);
      raw += p.raw_bytes;
    }
    EXPECT_EQ(frame, e.frames.size());
    EXPECT_EQ(raw, e.raw_bytes);
    if (max_slot == 1) {
      EXPECT_EQ(pieces.size(), e.frames.size());
    }
    if (max_slot == UINT64_MAX) {
      EXPECT_EQ(pieces.size(), 1u);
    }
  }
}

TEST(ExtentPieces, PrefetchedPiecesGiveBackTheExtent) {
  TempDir dir;
  TestPack tp = write_mixed_pack(dir.file("p.sluice"));
  pack::Pack pack = pack::Pack::open(tp.path);
  std::size_t unaligned_raw = 0;
  for (std::uint64_t max_slot : {std::uint64_t{1}, std::uint64_t{150 * 1024}}) {
    std::vector<pack::ExtentInfo> table = pack.extents();
    std::vector<std::uint32_t> plan;
    std::vector<std::uint32_t> owner;  // original extent of each planned piece
    for (std::uint32_t e = 0; e < pack.extents().size(); ++e) {
      for (auto& p : extent_pieces(pack.extents()[e], max_slot)) {
        if (p.all_raw() && p.frames[0].offset % kDirectAlign != 0) ++unaligned_raw;
        plan.push_back(std::uint32_t(table.size()));
        owner.push_back(e);
        table.push_back(std::move(p));
      }
    }
    PrefetchOptions options;
    options.slots = 2;
    options.read_bytes = 128 * 1024;
    Prefetcher prefetcher(tp.path, table, plan, options);
    std::vector<std::vector<std::byte>> joined(pack.extents().size());
    for (std::size_t i = 0; i < plan.size(); ++i) {
      auto next = prefetcher.next();
      ASSERT_TRUE(next) << next.error().message;
      auto bytes = next.value().bytes();
      joined[owner[i]].insert(joined[owner[i]].end(), bytes.begin(), bytes.end());
    }
    for (std::size_t e = 0; e < joined.size(); ++e) {
      EXPECT_TRUE(same_bytes(joined[e], tp.contents[e])) << "extent " << e << ", max slot " << max_slot;
    }
  }
  EXPECT_GT(unaligned_raw, 0u) << "no raw piece at an unaligned offset: the zero-copy offset path went untested";
}

}  // namespace
}  // namespace sluice::prefetch::testing
