// Corrupt and damaged packs: one table case per rejection in Pack::open (each message must name
// the file and the offending offset or field), truncations, position-seeded frame checksums, and
// verify_all / read_extent reporting of damaged frames.
#include <gtest/gtest.h>

#include <functional>
#include <limits>

#include "common/units.hpp"
#include "model/pack_reader.hpp"
#include "model/pack_writer.hpp"
#include "tests/model/pack_test_util.hpp"

namespace sluice::pack {
namespace {

using testing::PackImage;
using testing::partly_zero_bytes;
using testing::random_bytes;
using testing::TempDir;
using nlohmann::json;

constexpr std::uint32_t kTestFrameBytes = 4096;

// Two extents, three tensors, frames of 4 KiB, a mix of raw and zstd frames.
void write_base_pack(const std::string& path) {
  WriterOptions options;
  options.frame_bytes = kTestFrameBytes;
  PackWriter writer(path, options);
  writer.set_metadata({{"arch", "test"}});
  writer.begin_extent("blk.0");
  writer.add_tensor("tok_embd", 0, {25, 50}, random_bytes(5000, 1));  // F32: 5000 bytes
  writer.add_tensor("blk.0.attn", 1, {1500}, partly_zero_bytes(3000, 0.8, 2));  // F16
  writer.end_extent();
  writer.begin_extent("blk.1");
  writer.add_tensor("blk.1.ffn", 1, {4500}, random_bytes(9000, 3));
  writer.end_extent();
  writer.finish();
}

struct CorruptCase {
  std::string name;
  std::function<void(PackImage&)> mutate;
  std::vector<std::string> words;  // each must appear in the PackError message
};

void set_u32(PackImage& image, std::size_t at, std::uint32_t v) {
  for (std::size_t i = 0; i < 4; ++i) image.bytes[at + i] = static_cast<std::byte>((v >> (8 * i)) & 0xff);
}

// Shorthand for manifest edits: mutate the JSON, then write it back with valid checksums.
std::function<void(PackImage&)> edit(std::function<void(json&)> f) {
  return [f](PackImage& image) {
    f(image.manifest);
    image.commit_manifest();
  };
}

std::function<void(PackImage&)> edit_header(std::function<void(Header&, const PackImage&)> f) {
  return [f](PackImage& image) {
    f(image.header, image);
    image.write_header();
  };
}

// Adds `delta` to an unsigned manifest number.
void add(json& value, std::int64_t delta) { value = value.get<std::uint64_t>() + static_cast<std::uint64_t>(delta); }

constexpr std::uint64_t kU64Max = std::numeric_limits<std::uint64_t>::max();

std::vector<CorruptCase> corrupt_cases() {
  return {
      {"empty_file", [](PackImage& i) { i.bytes.clear(); }, {"0 bytes", "shorter than", "header"}},
      {"short_file", [](PackImage& i) { i.bytes.resize(100); }, {"100 bytes", "shorter than"}},
      {"bad_magic", [](PackImage& i) { i.bytes[0] = std::byte{'X'}; }, {"magic", "offset 0"}},
      {"bad_version", edit_header([](Header& h, const PackImage&) { h.version = kVersion + 1; }), {"version 3", "offset 8"}},
      {"version_zero", edit_header([](Header& h, const PackImage&) { h.version = 0; }), {"version 0", "offset 8"}},
      {"bad_version_bad_checksum", [](PackImage& i) { set_u32(i, kHeaderVersionOffset, 7); }, {"version 7"}},
      {"header_checksum",
       [](PackImage& i) { i.bytes[kHeaderManifestChecksumOffset] ^= std::byte{1}; },
       {"header checksum", "offset 40"}},
      {"flags", edit_header([](Header& h, const PackImage&) { h.flags = 4; }), {"flags", "offset 12"}},
      {"manifest_in_header", edit_header([](Header& h, const PackImage&) { h.manifest_offset = 0; }),
       {"manifest offset 0", "header"}},
      {"manifest_unaligned", edit_header([](Header& h, const PackImage&) { h.manifest_offset += 8; }),
       {"manifest offset", "4096-aligned", "offset 16"}},
      {"manifest_beyond_file",
       edit_header([](Header& h, const PackImage& i) {
         h.manifest_offset = align_up(i.bytes.size() + 1, kExtentAlign);
       }),
       {"manifest", "outside the file"}},
      {"manifest_size_zero", edit_header([](Header& h, const PackImage&) { h.manifest_bytes = 0; }),
       {"manifest size 0", "offset 24"}},
      {"manifest_too_large", edit_header([](Header& h, const PackImage&) { h.manifest_bytes = kMaxManifestBytes + 1; }),
       {"manifest size 268435457", "offset 24"}},
      {"manifest_past_end", edit_header([](Header& h, const PackImage&) { h.manifest_bytes += 8192; }),
       {"manifest", "outside the file"}},
      {"manifest_offset_overflow",
       edit_header([](Header& h, const PackImage&) {
         h.manifest_offset = kU64Max - kExtentAlign + 1;  // aligned, and offset + bytes wraps
         h.manifest_bytes = 2 * kExtentAlign;
       }),
       {"manifest", "outside the file"}},
      {"manifest_checksum",
       [](PackImage& i) { i.bytes[i.header.manifest_offset + 3] ^= std::byte{0x20}; },
       {"manifest checksum", "offset 32"}},
      {"manifest_not_json", [](PackImage& i) { i.set_manifest_text("{\"format\": not json"); }, {"not valid JSON"}},
      {"manifest_not_object", [](PackImage& i) { i.set_manifest_text("[1, 2, 3]"); }, {"not a JSON object"}},
      {"manifest_too_deep",
       [](PackImage& i) { i.set_manifest_text(std::string(100, '[') + std::string(100, ']')); },
       {"nests deeper"}},
      {"wrong_format", edit([](json& m) { m["format"] = "gguf"; }), {"format", "gguf", "sluice-pack"}},
      {"manifest_version_mismatch", edit([](json& m) { m["version"] = 3; }), {"version", "header"}},
      {"missing_extents", edit([](json& m) { m.erase("extents"); }), {"extents", "missing"}},
      {"metadata_not_object", edit([](json& m) { m["metadata"] = 5; }), {"metadata", "not a JSON object"}},
      {"frame_bytes_zero", edit([](json& m) { m["frame_bytes"] = 0; }), {"frame_bytes"}},
      {"frame_bytes_too_large", edit([](json& m) { m["frame_bytes"] = kMaxFrameBytes + 1; }),
       {"frame_bytes", "limit"}},
      {"negative_offset", edit([](json& m) { m["extents"][0]["offset"] = -4096; }),
       {"extents[0].offset", "unsigned integer"}},
      {"float_offset", edit([](json& m) { m["extents"][0]["offset"] = 4096.5; }),
       {"extents[0].offset", "unsigned integer"}},
      {"extent_outside_file", edit([](json& m) { m["extents"][1]["offset"] = 1ull << 40; }),
       {"extents[1]", "offset 1099511627776", "outside the file"}},
      {"extent_offset_overflow", edit([](json& m) { m["extents"][1]["offset"] = kU64Max - kExtentAlign + 1; }),
       {"extents[1]", "outside the file"}},
      {"extent_unaligned", edit([](json& m) { add(m["extents"][1]["offset"], 64); }),
       {"extents[1].offset", "4096-aligned"}},
      {"extents_overlap", edit([](json& m) { m["extents"][1]["offset"] = m["extents"][0]["offset"]; }),
       {"extents[1]", "overlaps"}},
      {"frame_not_at_extent_start",
       edit([](json& m) {
         add(m["extents"][0]["frames"][0]["offset"], 4096);
       }),
       {"extents[0].frames[0].offset", "contiguous"}},
      {"frames_not_contiguous",
       edit([](json& m) { add(m["extents"][1]["frames"][1]["offset"], 1); }),
       {"extents[1].frames[1].offset", "contiguous"}},
      {"frame_size_zero", edit([](json& m) { m["extents"][0]["frames"][0]["disk_bytes"] = 0; }),
       {"extents[0].frames[0].disk_bytes", "frame size 0"}},
      {"frame_size_too_large",
       edit([](json& m) { m["extents"][0]["frames"][0]["disk_bytes"] = kMaxFrameBytes + 1; }),
       {"extents[0].frames[0].disk_bytes", "67108865"}},
      {"frame_raw_size_too_large",
       edit([](json& m) { m["extents"][0]["frames"][0]["raw_bytes"] = kTestFrameBytes + 1; }),
       {"extents[0].frames[0].raw_bytes", "frame_bytes"}},
      {"frame_outside_file",
       edit([](json& m) {
         auto& f = m["extents"][1]["frames"][2];
         f["codec"] = "zstd";
         f["disk_bytes"] = 16ull << 20;
       }),
       {"extents[1].frames[2]", "outside the file"}},
      {"raw_frame_size_mismatch",
       edit([](json& m) { add(m["extents"][1]["frames"][2]["raw_bytes"], 1); }),
       {"extents[1].frames[2]", "raw frame"}},
      {"disk_sum_mismatch",
       edit([](json& m) { add(m["extents"][1]["disk_bytes"], -1); }),
       {"extents[1].disk_bytes", "sum"}},
      {"raw_sum_mismatch",
       edit([](json& m) { add(m["extents"][0]["raw_bytes"], 1); }),
       {"extents[0].raw_bytes", "sum"}},
      {"unknown_codec", edit([](json& m) { m["extents"][0]["frames"][1]["codec"] = "lz4"; }),
       {"extents[0].frames[1].codec", "lz4"}},
      {"tensor_extent_out_of_range", edit([](json& m) { m["tensors"][0]["extent"] = 7; }),
       {"tensors[0].extent", "7", "out of range"}},
      {"tensor_beyond_extent",
       edit([](json& m) { add(m["tensors"][2]["bytes"], 1); }),
       {"tensors[2]", "blk.1.ffn", "beyond extent 1"}},
      {"tensor_offset_overflow",
       edit([](json& m) {
         m["tensors"][1]["offset"] = kU64Max - kTensorAlign + 1;
         m["tensors"][1]["bytes"] = 2 * kTensorAlign;
       }),
       {"tensors[1]", "beyond extent 0"}},
      {"tensor_unaligned", edit([](json& m) { add(m["tensors"][1]["offset"], 1); }),
       {"tensors[1].offset", "64-byte aligned"}},
      {"duplicate_tensor", edit([](json& m) { m["tensors"][2]["name"] = "tok_embd"; }),
       {"tensors[2].name", "duplicate", "tok_embd"}},
      {"tensor_type_too_large", edit([](json& m) { m["tensors"][0]["type"] = 1ull << 32; }),
       {"tensors[0].type", "limit"}},
      {"tensor_too_many_dims",
       edit([](json& m) { m["tensors"][0]["shape"] = json::array({1, 1, 1, 1, 1, 1, 1, 1, 1}); }),
       {"tensors[0].shape", "dimensions"}},
      {"name_too_long", edit([](json& m) { m["tensors"][0]["name"] = std::string(kMaxNameBytes + 1, 'n'); }),
       {"tensors[0].name", "limit"}},
  };
}

class PackCorrupt : public ::testing::TestWithParam<CorruptCase> {};

TEST_P(PackCorrupt, OpenRejectsWithContext) {
  TempDir dir;
  const std::string base = dir.file("base.sluice");
  write_base_pack(base);
  ASSERT_NO_THROW(Pack::open(base));
  PackImage image = PackImage::load(base);
  GetParam().mutate(image);
  const std::string bad = dir.file("corrupt-" + GetParam().name + ".sluice");
  image.save(bad);
  try {
    Pack::open(bad);
    FAIL() << "expected PackError for " << GetParam().name;
  } catch (const PackError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find(bad), std::string::npos) << "message does not name the file: " << message;
    for (const std::string& word : GetParam().words) {
      EXPECT_NE(message.find(word), std::string::npos) << "missing '" << word << "' in: " << message;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Table, PackCorrupt, ::testing::ValuesIn(corrupt_cases()),
                         [](const auto& info) { return info.param.name; });

TEST(PackTruncated, EveryCutIsRejected) {
  TempDir dir;
  const std::string base = dir.file("base.sluice");
  write_base_pack(base);
  const PackImage image = PackImage::load(base);
  const std::uint64_t manifest_end = image.header.manifest_offset + image.header.manifest_bytes;
  const std::vector<std::uint64_t> cuts = {0,
                                           1,
                                           kHeaderBytes - 1,
                                           kHeaderBytes,
                                           kHeaderBytes + 1,
                                           kHeaderBytes + 5000,
                                           image.header.manifest_offset,
                                           image.header.manifest_offset + image.header.manifest_bytes / 2,
                                           manifest_end - 1};
  for (std::uint64_t cut : cuts) {
    const std::string path = dir.file("cut-" + std::to_string(cut));
    testing::write_file(path, std::span(image.bytes).first(cut));
    try {
      Pack::open(path);
      ADD_FAILURE() << "cut at " << cut << " was accepted";
    } catch (const PackError& e) {
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
  }
  // The manifest's trailing block padding is not needed to open.
  const std::string path = dir.file("cut-padding");
  testing::write_file(path, std::span(image.bytes).first(manifest_end));
  EXPECT_NO_THROW(Pack::open(path));
}

TEST(PackChecksum, SeededByPosition) {
  TempDir dir;
  const std::string path = dir.file("p.sluice");
  WriterOptions options;
  options.frame_bytes = kTestFrameBytes;
  options.compress = WriterOptions::Compress::none;
  {
    PackWriter writer(path, options);
    writer.begin_extent("only");
    writer.add_bytes(random_bytes(3 * kTestFrameBytes, 9));
    writer.end_extent();
    writer.finish();
  }
  PackImage image = PackImage::load(path);
  const Pack pack = Pack::open(path);
  const ExtentInfo& extent = pack.extents()[0];
  ASSERT_EQ(extent.frames.size(), 3u);
  const FrameInfo& f0 = extent.frames[0];
  const FrameInfo& f1 = extent.frames[1];
  ASSERT_EQ(f0.disk_bytes, f1.disk_bytes);
  // The same bytes at another offset do not pass: a frame copied over another is caught.
  const std::span<const std::byte> f0_bytes(image.bytes.data() + f0.offset, f0.disk_bytes);
  EXPECT_TRUE(frame_checksum_ok(f0, f0_bytes));
  EXPECT_FALSE(frame_checksum_ok(f1, f0_bytes));
  std::copy(f0_bytes.begin(), f0_bytes.end(), image.bytes.begin() + static_cast<std::ptrdiff_t>(f1.offset));
  image.save(path);
  const Pack copied = Pack::open(path);  // the manifest is intact, so open succeeds
  const std::vector<Error> errors = copied.verify_all();
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].kind, ErrorKind::checksum);
  EXPECT_NE(errors[0].message.find("frame 1 at offset " + std::to_string(f1.offset)), std::string::npos)
      << errors[0].message;
  const Result<std::vector<std::byte>> read = copied.read_extent(0);
  ASSERT_FALSE(read.ok());
  EXPECT_EQ(read.error().kind, ErrorKind::checksum);
}

TEST(PackVerify, FlippedBitIsReportedWithExtentFrameAndOffset) {
  TempDir dir;
  const std::string path = dir.file("p.sluice");
  write_base_pack(path);
  std::size_t progress_calls = 0;
  {
    const Pack pack = Pack::open(path);
    EXPECT_TRUE(pack.verify_all([&](std::size_t done) { progress_calls = done; }).empty());
    EXPECT_EQ(progress_calls, pack.extents().size());
  }
  PackImage image = PackImage::load(path);
  const Pack before = Pack::open(path);
  // Damage one frame of each codec: extent 1 frame 2 (raw) and extent 0 frame 1 (zstd).
  const FrameInfo raw_frame = before.extents()[1].frames[2];
  ASSERT_EQ(raw_frame.codec, Codec::raw);
  const FrameInfo zstd_frame = before.extents()[0].frames[1];
  ASSERT_EQ(zstd_frame.codec, Codec::zstd);
  image.bytes[raw_frame.offset + raw_frame.disk_bytes / 2] ^= std::byte{0x10};
  image.bytes[zstd_frame.offset + 3] ^= std::byte{0x01};
  image.save(path);
  const Pack pack = Pack::open(path);
  const std::vector<Error> errors = pack.verify_all();
  ASSERT_EQ(errors.size(), 2u);
  EXPECT_NE(errors[0].message.find("extent 0 'blk.0' frame 1 at offset " + std::to_string(zstd_frame.offset)),
            std::string::npos)
      << errors[0].message;
  EXPECT_NE(errors[1].message.find("extent 1 'blk.1' frame 2 at offset " + std::to_string(raw_frame.offset)),
            std::string::npos)
      << errors[1].message;
  for (const Error& e : errors) EXPECT_NE(e.message.find(path), std::string::npos);
  EXPECT_FALSE(pack.read_extent(0).ok());
  EXPECT_FALSE(pack.read_extent(1).ok());
  EXPECT_FALSE(pack.read_extent(2).ok());  // out of range
}

TEST(PackVerify, DecodeFrameRejectsGarbage) {
  FrameInfo frame;
  frame.offset = 12345;
  frame.codec = Codec::zstd;
  frame.disk_bytes = 16;
  frame.raw_bytes = 100;
  const auto stored = random_bytes(16, 1);
  std::vector<std::byte> raw(100);
  const Status status = decode_frame(frame, stored, raw);
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.error().kind, ErrorKind::decompress);
  EXPECT_NE(status.error().message.find("12345"), std::string::npos) << status.error().message;
  std::vector<std::byte> wrong_size(99);
  const Status size_status = decode_frame(frame, stored, wrong_size);
  ASSERT_FALSE(size_status.ok());
  EXPECT_EQ(size_status.error().kind, ErrorKind::invalid);
}

}  // namespace
}  // namespace sluice::pack
