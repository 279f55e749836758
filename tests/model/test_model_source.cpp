// The model source seam: the pack as a ModelSource, the one reader of a unit's byte range
// (frames stitched, verified, each frame read once with a cache), and the bounded block parser
// of the tensor-name table.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <unistd.h>

#include "common/error.hpp"
#include "model/pack_source.hpp"
#include "model/tensor_names.hpp"
#include "tests/prefetch/prefetch_fixture.hpp"

namespace sluice {
namespace {

using prefetch::testing::TestPack;
using prefetch::testing::write_test_pack;

TEST(ModelSource, RangesAcrossFramesMatchTheUnitsBytes) {
  sluice::testing::TempDir dir;
  const TestPack tp = write_test_pack(dir.file("r.sluice"), 2, 300 * 1024, pack::WriterOptions::Compress::auto_);
  auto source = PackSource::open(tp.path);
  ASSERT_EQ(source->units().size(), 2u);
  ASSERT_GE(source->units()[1].frames.size(), 4u);  // 64 KiB frames
  EXPECT_EQ(read_unit(*source, 1), tp.contents[1]);
  // Ascending ranges, one straddling a frame boundary, through one cache: each frame once.
  const std::uint64_t frame = 64 * 1024;
  FrameCache cache;
  std::vector<std::byte> a(100), b(frame), c(10);
  read_unit_range(*source, 1, frame - 50, a, &cache);
  read_unit_range(*source, 1, frame + 10, b, &cache);
  read_unit_range(*source, 1, 2 * frame + 20, c, &cache);
  EXPECT_TRUE(std::equal(a.begin(), a.end(), tp.contents[1].begin() + std::ptrdiff_t(frame - 50)));
  EXPECT_TRUE(std::equal(b.begin(), b.end(), tp.contents[1].begin() + std::ptrdiff_t(frame + 10)));
  EXPECT_TRUE(std::equal(c.begin(), c.end(), tp.contents[1].begin() + std::ptrdiff_t(2 * frame + 20)));
  std::uint64_t three_frames = 0;
  for (std::size_t f = 0; f < 3; ++f) three_frames += source->units()[1].frames[f].disk_bytes;
  EXPECT_EQ(cache.stored_bytes_read, three_frames);
}

TEST(ModelSource, RangePastTheUnitIsANamedError) {
  sluice::testing::TempDir dir;
  const TestPack tp = write_test_pack(dir.file("e.sluice"), 1, 100 * 1024, pack::WriterOptions::Compress::none);
  auto source = PackSource::open(tp.path);
  std::vector<std::byte> out(16);
  try {
    read_unit_range(*source, 0, source->units()[0].raw_bytes - 8, out);
    FAIL() << "a range past the unit's end was read";
  } catch (const Exception& e) {
    EXPECT_EQ(e.kind(), ErrorKind::corrupt);
    EXPECT_EQ(e.context().extent, "blk.0");
    EXPECT_NE(std::string(e.what()).find(tp.path), std::string::npos) << e.what();
  }
}

TEST(ModelSource, CorruptFrameNamesFileUnitFrameAndOffset) {
  sluice::testing::TempDir dir;
  const TestPack tp = write_test_pack(dir.file("c.sluice"), 1, 200 * 1024, pack::WriterOptions::Compress::none);
  auto source = PackSource::open(tp.path);
  const pack::FrameInfo frame = source->units()[0].frames[2];
  source.reset();
  {
    const int fd = ::open(tp.path.c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    unsigned char byte = 0;
    ASSERT_EQ(::pread(fd, &byte, 1, off_t(frame.offset + 5)), 1);
    byte ^= 0x40;
    ASSERT_EQ(::pwrite(fd, &byte, 1, off_t(frame.offset + 5)), 1);
    ::close(fd);
  }
  source = PackSource::open(tp.path);
  try {
    (void)read_unit(*source, 0);
    FAIL() << "a corrupt frame was read";
  } catch (const Exception& e) {
    EXPECT_EQ(e.kind(), ErrorKind::checksum) << e.what();
    EXPECT_EQ(e.context().file, tp.path);
    EXPECT_EQ(e.context().extent, "blk.0");
    EXPECT_EQ(e.context().frame, 2);
    EXPECT_EQ(e.context().offset, std::int64_t(frame.offset));
  }
}

TEST(TensorNames, BlockParserIsBoundedByTheBlockCount) {
  EXPECT_EQ(names::block_extent_index("blk.3", 4), 3);
  EXPECT_FALSE(names::block_extent_index("blk.4", 4));  // one past the last block
  EXPECT_FALSE(names::block_extent_index("blk.999999999", 4));
  EXPECT_FALSE(names::block_extent_index("blk.1.attn_q.weight", 4));  // a tensor, not a unit
  EXPECT_EQ(names::block_name(7), "blk.7");
  EXPECT_EQ(names::block_tensor(7, names::kAttnQ), "blk.7.attn_q.weight");
  EXPECT_EQ(names::block_index_of(names::block_tensor(12, names::kFfnDown)), 12);
}

}  // namespace
}  // namespace sluice
