// `sluice inspect` output and exit codes, and write_synthetic_pack sizes, determinism and
// compressibility.
#include <gtest/gtest.h>

#include <sstream>

#include "model/pack_inspect.hpp"
#include "model/pack_reader.hpp"
#include "model/pack_writer.hpp"
#include "tests/model/pack_test_util.hpp"

namespace sluice::pack {
namespace {

using testing::PackImage;
using testing::random_bytes;
using testing::TempDir;

bool contains(const std::string& text, const std::string& word) { return text.find(word) != std::string::npos; }

// Ten tensors in two extents (more than inspect lists) and some metadata.
void write_model_pack(const std::string& path) {
  WriterOptions options;
  options.frame_bytes = 4096;
  PackWriter writer(path, options);
  writer.set_metadata({{"arch", "llama"}, {"tokenizer", {{"model", "gpt2"}}}});
  for (int e = 0; e < 2; ++e) {
    writer.begin_extent("blk." + std::to_string(e));
    for (int t = 0; t < 5; ++t) {
      writer.add_tensor("blk." + std::to_string(e) + ".w" + std::to_string(t), 1, {20, 25},  // F16: 1000 bytes
                        random_bytes(1000, static_cast<std::uint64_t>(10 * e + t)));
    }
    writer.end_extent();
  }
  writer.finish();
}

TEST(PackInspect, PrintsHeaderExtentsTensorsAndMetadata) {
  TempDir dir;
  const std::string path = dir.file("model.sluice");
  write_model_pack(path);
  std::ostringstream out;
  EXPECT_EQ(inspect_pack(path, false, out), 0);
  const std::string text = out.str();
  const Pack pack = Pack::open(path);
  EXPECT_TRUE(contains(text, "pack " + path)) << text;
  EXPECT_TRUE(contains(text, "version      1")) << text;
  EXPECT_TRUE(contains(text, "file size    " + std::to_string(pack.file_size()))) << text;
  EXPECT_TRUE(contains(text, "manifest     offset " + std::to_string(pack.manifest_offset()))) << text;
  EXPECT_TRUE(contains(text, "extents: 2")) << text;
  EXPECT_TRUE(contains(text, "blk.1")) << text;
  EXPECT_TRUE(contains(text, "tensors: 10")) << text;
  EXPECT_TRUE(contains(text, "blk.0.w0  type 1  shape [20, 25]  extent 0  offset 0  bytes 1000")) << text;
  EXPECT_TRUE(contains(text, "... and 2 more")) << text;
  EXPECT_TRUE(contains(text, "metadata keys: arch, tokenizer")) << text;
  EXPECT_FALSE(contains(text, "verified")) << text;
}

TEST(PackInspect, VerifyReportsOkOrBadFrames) {
  TempDir dir;
  const std::string path = dir.file("model.sluice");
  write_model_pack(path);
  std::size_t frames = 0;
  std::uint64_t damaged_offset = 0;
  {
    const Pack pack = Pack::open(path);
    for (const auto& extent : pack.extents()) frames += extent.frames.size();
    damaged_offset = pack.extents()[1].frames[0].offset;
  }
  std::ostringstream ok;
  EXPECT_EQ(inspect_pack(path, true, ok), 0);
  EXPECT_TRUE(contains(ok.str(), "verified " + std::to_string(frames) + " frames: OK")) << ok.str();

  PackImage image = PackImage::load(path);
  image.bytes[damaged_offset] ^= std::byte{0x80};
  image.save(path);
  std::ostringstream unverified;
  EXPECT_EQ(inspect_pack(path, false, unverified), 0);  // the manifest is fine; frames unchecked
  std::ostringstream bad;
  EXPECT_EQ(inspect_pack(path, true, bad), 1);
  EXPECT_TRUE(contains(bad.str(), "bad frame: ")) << bad.str();
  EXPECT_TRUE(contains(bad.str(), "extent 1 'blk.1' frame 0 at offset " + std::to_string(damaged_offset))) << bad.str();
  EXPECT_TRUE(contains(bad.str(), "1 bad frames")) << bad.str();
}

TEST(PackInspect, CorruptOrMissingFileReturnsOne) {
  TempDir dir;
  const std::string path = dir.file("model.sluice");
  write_model_pack(path);
  PackImage image = PackImage::load(path);
  image.bytes[1] = std::byte{'?'};
  image.save(path);
  std::ostringstream out;
  EXPECT_EQ(inspect_pack(path, true, out), 1);
  EXPECT_TRUE(contains(out.str(), "error: pack " + path)) << out.str();
  EXPECT_TRUE(contains(out.str(), "magic")) << out.str();
  std::ostringstream missing;
  EXPECT_EQ(inspect_pack(dir.file("missing.sluice"), false, missing), 1);
  EXPECT_TRUE(contains(missing.str(), "cannot open")) << missing.str();
}

TEST(PackSynthetic, SizesAndNames) {
  TempDir dir;
  const std::string path = dir.file("synthetic.sluice");
  WriterOptions options;
  options.compress = WriterOptions::Compress::none;
  options.frame_bytes = 64 * 1024;
  const std::uint64_t extent_bytes = 256 * 1024;
  const std::uint64_t total = 4 * extent_bytes + 123;
  write_synthetic_pack(path, total, extent_bytes, options, 42, 0.5);
  const Pack pack = Pack::open(path);
  ASSERT_EQ(pack.extents().size(), 5u);
  std::uint64_t raw = 0;
  for (std::size_t e = 0; e < pack.extents().size(); ++e) {
    const ExtentInfo& extent = pack.extents()[e];
    EXPECT_EQ(extent.name, "synthetic." + std::to_string(e));
    EXPECT_EQ(extent.raw_bytes, e < 4 ? extent_bytes : 123u);
    EXPECT_TRUE(extent.all_raw());
    raw += extent.raw_bytes;
  }
  EXPECT_EQ(raw, total);
  EXPECT_TRUE(pack.tensors().empty());
  EXPECT_EQ(pack.metadata()["seed"], 42);
  EXPECT_TRUE(pack.verify_all().empty());
}

TEST(PackSynthetic, DeterministicPerSeed) {
  TempDir dir;
  WriterOptions options;
  options.compress = WriterOptions::Compress::none;
  write_synthetic_pack(dir.file("a"), 100000, 30000, options, 7, 0.3);
  write_synthetic_pack(dir.file("b"), 100000, 30000, options, 7, 0.3);
  write_synthetic_pack(dir.file("c"), 100000, 30000, options, 8, 0.3);
  const Pack a = Pack::open(dir.file("a"));
  const Pack b = Pack::open(dir.file("b"));
  const Pack c = Pack::open(dir.file("c"));
  for (std::size_t e = 0; e < a.extents().size(); ++e) {
    const auto ra = a.read_extent(e).value();
    EXPECT_EQ(ra, b.read_extent(e).value());
    EXPECT_NE(ra, c.read_extent(e).value());
  }
  // Extents of one pack differ from each other too (no repeated chunks).
  EXPECT_NE(a.read_extent(0).value(), a.read_extent(1).value());
}

TEST(PackSynthetic, CompressibleFractionControlsSaving) {
  TempDir dir;
  WriterOptions options;  // auto_, 1 MiB frames
  const std::uint64_t total = 4ull << 20;
  const auto stored_share = [&](double fraction) {
    const std::string path = dir.file(std::string("f") + std::to_string(fraction));
    write_synthetic_pack(path, total, 1ull << 20, options, 1, fraction);
    const Pack pack = Pack::open(path);
    std::uint64_t disk = 0;
    for (const auto& extent : pack.extents()) disk += extent.disk_bytes;
    EXPECT_TRUE(pack.verify_all().empty());
    return static_cast<double>(disk) / static_cast<double>(total);
  };
  EXPECT_DOUBLE_EQ(stored_share(0.0), 1.0);  // random: every frame stays raw
  const double half = stored_share(0.5);
  EXPECT_GT(half, 0.45);
  EXPECT_LT(half, 0.6);
  const double most = stored_share(0.9);
  EXPECT_GT(most, 0.05);
  EXPECT_LT(most, 0.2);
}

TEST(PackSynthetic, CodecsDecodeToTheSameBytes) {
  TempDir dir;
  WriterOptions none;
  none.compress = WriterOptions::Compress::none;
  WriterOptions zstd;
  zstd.compress = WriterOptions::Compress::zstd;
  zstd.frame_bytes = 10000;
  write_synthetic_pack(dir.file("none"), 300000, 100000, none, 3, 0.6);
  write_synthetic_pack(dir.file("zstd"), 300000, 100000, zstd, 3, 0.6);
  const Pack a = Pack::open(dir.file("none"));
  const Pack b = Pack::open(dir.file("zstd"));
  ASSERT_EQ(a.extents().size(), b.extents().size());
  for (std::size_t e = 0; e < a.extents().size(); ++e) {
    EXPECT_FALSE(b.extents()[e].all_raw());
    EXPECT_EQ(a.read_extent(e).value(), b.read_extent(e).value());
  }
}

}  // namespace
}  // namespace sluice::pack
