// Pack write/read round trips: tensor placement, metadata, frame boundaries at odd sizes, and the
// writer's codec choice (none / zstd / auto with min_saving).
#include <gtest/gtest.h>

#include <filesystem>

#include <algorithm>
#include <numeric>

#include "model/pack_reader.hpp"
#include "model/pack_writer.hpp"
#include "tests/model/pack_test_util.hpp"

namespace sluice::pack {
namespace {

using testing::partly_zero_bytes;
using testing::random_bytes;
using testing::TempDir;
using Compress = WriterOptions::Compress;

std::vector<std::byte> must_read(const Pack& pack, std::size_t index) {
  Result<std::vector<std::byte>> result = pack.read_extent(index);
  EXPECT_TRUE(result.ok()) << (result.ok() ? "" : result.error().message);
  return result.ok() ? std::move(result).value() : std::vector<std::byte>{};
}

std::size_t count_codec(const ExtentInfo& extent, Codec codec) {
  return static_cast<std::size_t>(std::count_if(extent.frames.begin(), extent.frames.end(),
                                                [&](const FrameInfo& f) { return f.codec == codec; }));
}

TEST(PackRoundTrip, TensorsAreAlignedAndMetadataSurvives) {
  TempDir dir;
  const std::string path = dir.file("tensors.sluice");
  // Sizes around the 64-byte alignment edge (even: Pack::open wants type x shape = bytes, and
  // every ggml type's rows are whole 2-byte units), each with a type and row length that give it.
  struct Sized {
    std::uint32_t type;  // ggml: 0 F32, 1 F16
    std::uint64_t elements;
    std::size_t bytes;
  };
  const std::vector<Sized> tensors = {{1, 1, 2}, {1, 31, 62}, {0, 16, 64}, {1, 33, 66}, {0, 25, 100}, {1, 2049, 4098}};
  std::vector<std::size_t> sizes;
  for (const Sized& t : tensors) sizes.push_back(t.bytes);
  std::vector<std::vector<std::byte>> data;
  {
    PackWriter writer(path, {});
    writer.set_metadata({{"arch", "llama"}, {"n_layer", 2}});
    for (int e = 0; e < 2; ++e) {
      writer.begin_extent("blk." + std::to_string(e));
      for (std::size_t i = 0; i < sizes.size(); ++i) {
        data.push_back(random_bytes(sizes[i], 100 * e + i));
        writer.add_tensor("blk." + std::to_string(e) + ".t" + std::to_string(i), tensors[i].type,
                          {tensors[i].elements, 1}, data.back());
      }
      writer.end_extent();
    }
    writer.finish();
    EXPECT_EQ(writer.stats().tensors, 2 * sizes.size());
    EXPECT_EQ(writer.stats().extents, 2u);
  }
  const Pack pack = Pack::open(path);
  EXPECT_EQ(pack.version(), kMinVersion) << "a pack without expert extents stays version 1";
  EXPECT_EQ(pack.metadata()["arch"], "llama");
  EXPECT_EQ(pack.metadata()["n_layer"], 2);
  ASSERT_EQ(pack.extents().size(), 2u);
  ASSERT_EQ(pack.tensors().size(), 2 * sizes.size());
  EXPECT_EQ(pack.find_tensor("missing"), nullptr);
  for (std::size_t e = 0; e < 2; ++e) {
    const std::vector<std::byte> raw = must_read(pack, e);
    ASSERT_EQ(raw.size(), pack.extents()[e].raw_bytes);
    std::uint64_t expected_offset = 0;
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      const TensorInfo* t = pack.find_tensor("blk." + std::to_string(e) + ".t" + std::to_string(i));
      ASSERT_NE(t, nullptr);
      EXPECT_EQ(t->extent, e);
      EXPECT_EQ(t->type, tensors[i].type);
      EXPECT_EQ(t->shape, (std::vector<std::uint64_t>{tensors[i].elements, 1}));
      EXPECT_EQ(t->offset % kTensorAlign, 0u);
      EXPECT_EQ(t->offset, expected_offset);
      EXPECT_EQ(t->bytes, sizes[i]);
      const auto& want = data[e * sizes.size() + i];
      EXPECT_TRUE(std::equal(want.begin(), want.end(), raw.begin() + static_cast<std::ptrdiff_t>(t->offset)));
      // The gap up to the next aligned offset is zero padding.
      const std::uint64_t end = t->offset + t->bytes;
      expected_offset = (end + kTensorAlign - 1) / kTensorAlign * kTensorAlign;
      if (i + 1 < sizes.size()) {
        for (std::uint64_t b = end; b < expected_offset; ++b) ASSERT_EQ(raw[b], std::byte{0}) << "padding byte " << b;
      }
    }
  }
}

class PackFrames : public ::testing::TestWithParam<Compress> {};

TEST_P(PackFrames, OddFrameBoundariesRoundTrip) {
  TempDir dir;
  const std::string path = dir.file("frames.sluice");
  WriterOptions options;
  options.frame_bytes = 1000;  // deliberately not a power of two
  options.compress = GetParam();
  // Extent sizes at and around frame multiples, including empty and one-byte extents.
  const std::vector<std::size_t> extent_sizes = {3001, 2000, 0, 1, 999, 1001, 4096 + 17};
  std::vector<std::vector<std::byte>> data;
  std::uint64_t file_bytes = 0;
  {
    PackWriter writer(path, options);
    for (std::size_t e = 0; e < extent_sizes.size(); ++e) {
      data.push_back(partly_zero_bytes(extent_sizes[e], 0.5, e));
      writer.begin_extent(std::string("e") + std::to_string(e));
      writer.add_bytes(data.back());
      writer.end_extent();
    }
    writer.finish();
    file_bytes = writer.stats().file_bytes;
    EXPECT_EQ(writer.stats().frames_raw + writer.stats().frames_zstd, 4 + 2 + 0 + 1 + 1 + 2 + 5u);
  }
  const Pack pack = Pack::open(path);
  EXPECT_EQ(pack.file_size(), file_bytes);
  EXPECT_EQ(pack.frame_bytes(), 1000u);
  EXPECT_EQ(pack.manifest_offset() % kExtentAlign, 0u);
  ASSERT_EQ(pack.extents().size(), extent_sizes.size());
  for (std::size_t e = 0; e < extent_sizes.size(); ++e) {
    const ExtentInfo& extent = pack.extents()[e];
    EXPECT_EQ(extent.offset % kExtentAlign, 0u);
    EXPECT_EQ(extent.raw_bytes, extent_sizes[e]);
    ASSERT_EQ(extent.frames.size(), (extent_sizes[e] + 999) / 1000);
    for (std::size_t i = 0; i < extent.frames.size(); ++i) {
      const std::size_t want = std::min<std::size_t>(1000, extent_sizes[e] - i * 1000);
      EXPECT_EQ(extent.frames[i].raw_bytes, want) << "extent " << e << " frame " << i;
    }
    if (GetParam() == Compress::none) {
      EXPECT_TRUE(extent.all_raw());
    }
    EXPECT_EQ(must_read(pack, e), data[e]) << "extent " << e;
  }
  EXPECT_TRUE(pack.verify_all().empty());
}

INSTANTIATE_TEST_SUITE_P(AllCodecs, PackFrames, ::testing::Values(Compress::none, Compress::zstd, Compress::auto_),
                         [](const auto& info) {
                           switch (info.param) {
                             case Compress::none: return std::string("none");
                             case Compress::zstd: return std::string("zstd");
                             case Compress::auto_: return std::string("auto");
                           }
                           return std::string("unknown");
                         });

// Writes one extent of `data` and returns the opened pack.
Pack write_one(const std::string& path, const std::vector<std::byte>& data, WriterOptions options) {
  PackWriter writer(path, options);
  writer.begin_extent("x");
  writer.add_bytes(data);
  writer.end_extent();
  writer.finish();
  return Pack::open(path);
}

TEST(PackCodecChoice, AutoStoresRandomDataRaw) {
  TempDir dir;
  WriterOptions options;
  options.frame_bytes = 64 * 1024;
  const auto data = random_bytes(5 * options.frame_bytes + 7, 1);
  const Pack pack = write_one(dir.file("p"), data, options);
  EXPECT_TRUE(pack.extents()[0].all_raw());
  EXPECT_EQ(must_read(pack, 0), data);
}

TEST(PackCodecChoice, AutoCompressesCompressibleData) {
  TempDir dir;
  WriterOptions options;
  options.frame_bytes = 64 * 1024;
  const auto data = partly_zero_bytes(5 * options.frame_bytes, 0.75, 2);
  const Pack pack = write_one(dir.file("p"), data, options);
  const ExtentInfo& extent = pack.extents()[0];
  EXPECT_EQ(count_codec(extent, Codec::zstd), extent.frames.size());
  EXPECT_LT(extent.disk_bytes, extent.raw_bytes / 2);
  EXPECT_EQ(must_read(pack, 0), data);
}

TEST(PackCodecChoice, MinSavingIsRespected) {
  TempDir dir;
  WriterOptions options;
  options.frame_bytes = 64 * 1024;
  // zstd saves about 30% on this data: below a 50% threshold, above a 10% one.
  const auto data = partly_zero_bytes(4 * options.frame_bytes, 0.3, 3);
  options.min_saving = 0.5;
  EXPECT_TRUE(write_one(dir.file("high"), data, options).extents()[0].all_raw());
  options.min_saving = 0.1;
  const Pack low = write_one(dir.file("low"), data, options);
  EXPECT_EQ(count_codec(low.extents()[0], Codec::zstd), low.extents()[0].frames.size());
  // Compress::zstd ignores min_saving ...
  options.compress = Compress::zstd;
  options.min_saving = 0.9;
  const Pack forced = write_one(dir.file("forced"), data, options);
  EXPECT_EQ(count_codec(forced.extents()[0], Codec::zstd), forced.extents()[0].frames.size());
  // ... but still stores raw when zstd output would not be smaller.
  const Pack random = write_one(dir.file("random"), random_bytes(2 * options.frame_bytes, 4), options);
  EXPECT_TRUE(random.extents()[0].all_raw());
  // Compress::none never compresses.
  options.compress = Compress::none;
  const auto compressible = partly_zero_bytes(options.frame_bytes, 0.9, 5);
  EXPECT_TRUE(write_one(dir.file("none"), compressible, options).extents()[0].all_raw());
}

TEST(PackCodecChoice, StatsMatchTheFile) {
  TempDir dir;
  WriterOptions options;
  options.frame_bytes = 4096;
  const std::string path = dir.file("p");
  PackWriter writer(path, options);
  writer.begin_extent("a");
  writer.add_bytes(random_bytes(3 * 4096, 6));
  writer.add_bytes(partly_zero_bytes(3 * 4096, 0.9, 7));
  writer.end_extent();
  writer.finish();
  const WriterStats& stats = writer.stats();
  const Pack pack = Pack::open(path);
  EXPECT_EQ(stats.file_bytes, pack.file_size());
  EXPECT_EQ(stats.raw_bytes, pack.extents()[0].raw_bytes);
  EXPECT_EQ(stats.stored_bytes, pack.extents()[0].disk_bytes);
  EXPECT_EQ(stats.frames_raw, count_codec(pack.extents()[0], Codec::raw));
  EXPECT_EQ(stats.frames_zstd, count_codec(pack.extents()[0], Codec::zstd));
  EXPECT_EQ(stats.frames_raw, 3u);
  EXPECT_EQ(stats.frames_zstd, 3u);
}

TEST(PackWriterErrors, DuplicateTensorNameThrows) {
  TempDir dir;
  PackWriter writer(dir.file("p"), {});
  writer.begin_extent("a");
  const auto bytes = random_bytes(10, 1);
  writer.add_tensor("w", 0, {10}, bytes);
  EXPECT_THROW(writer.add_tensor("w", 0, {10}, bytes), std::runtime_error);
}

TEST(PackWriterErrors, UnwritablePathNamesThePath) {
  try {
    PackWriter writer("/nonexistent-dir/x.sluice", {});
    FAIL() << "expected a throw";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent-dir/x.sluice"), std::string::npos) << e.what();
  }
}

TEST(PackWriterErrors, BadOptionsThrow) {
  TempDir dir;
  WriterOptions options;
  options.frame_bytes = 0;
  EXPECT_THROW(PackWriter(dir.file("a"), options), std::invalid_argument);
  options = {};
  options.min_saving = 1.5;
  EXPECT_THROW(PackWriter(dir.file("b"), options), std::invalid_argument);
  options = {};
  options.zstd_level = 1000;
  EXPECT_THROW(PackWriter(dir.file("c"), options), std::invalid_argument);
}

TEST(PackWriterErrors, UnfinishedPackIsRejected) {
  TempDir dir;
  const std::string path = dir.file("p");
  {
    PackWriter writer(path, {});
    writer.begin_extent("a");
    writer.add_bytes(random_bytes(100, 1));
    writer.end_extent();
  }  // destroyed without finish(): nothing was ever written under `path`
  EXPECT_THROW(Pack::open(path), PackError);
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

}  // namespace
}  // namespace sluice::pack
