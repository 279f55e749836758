// Expert extents (pack format v2, pack_format.hpp item 5): the writer lays stacked expert tensors
// expert-major, each expert 4 KiB aligned and cut into raw frames of its own; the reader reads
// them back (version 2) and refuses manifests that break the layout, naming the field.
#include <gtest/gtest.h>

#include <functional>
#include <sstream>

#include "model/pack_inspect.hpp"
#include "model/pack_reader.hpp"
#include "model/pack_writer.hpp"
#include "tests/model/pack_test_util.hpp"

namespace sluice::pack {
namespace {

using nlohmann::json;
using testing::PackImage;
using testing::random_bytes;
using testing::TempDir;

constexpr std::uint64_t kExperts = 5;
// F32 [4, 3, 5] (48 bytes per expert) and F32 [7, 100, 5] (2800 per expert, 64-aligned after the first).
const std::vector<std::uint64_t> kGateShape = {4, 3, kExperts}, kDownShape = {7, 100, kExperts};
constexpr std::uint64_t kGateBytes = 4 * 3 * 4 * kExperts, kDownBytes = 7 * 100 * 4 * kExperts;

// A dense extent, then an expert extent of two tensors, streamed in odd-sized pieces; frames of
// 2 KiB, so each 4 KiB expert is two frames.
void write_expert_pack(const std::string& path, const std::vector<std::byte>& gate, const std::vector<std::byte>& down) {
  WriterOptions options;
  options.frame_bytes = 2048;
  options.compress = WriterOptions::Compress::zstd;  // the expert extent stays raw regardless
  PackWriter writer(path, options);
  writer.begin_extent("blk.0");
  writer.add_tensor("blk.0.attn", 0, {100}, std::vector<std::byte>(400, std::byte{0}));
  writer.end_extent();
  writer.begin_expert_extent("blk.0.exps", {{"blk.0.gate", 0, kGateShape, kGateBytes}, {"blk.0.down", 0, kDownShape, kDownBytes}});
  for (std::uint64_t e = 0; e < kExperts; ++e) {
    const std::span<const std::byte> g(gate.data() + e * (kGateBytes / kExperts), kGateBytes / kExperts);
    const std::span<const std::byte> d(down.data() + e * (kDownBytes / kExperts), kDownBytes / kExperts);
    writer.add_bytes(g.first(5));
    writer.add_bytes(g.subspan(5));
    writer.add_bytes(d.first(1000));
    writer.add_bytes(d.subspan(1000));
  }
  writer.end_extent();
  writer.finish();
}

TEST(PackExperts, WrittenExpertMajorAlignedAndRawAndReadBack) {
  TempDir dir;
  const std::string path = dir.file("e.sluice");
  const auto gate = random_bytes(kGateBytes, 1), down = random_bytes(kDownBytes, 2);
  write_expert_pack(path, gate, down);
  const Pack pack = Pack::open(path);
  EXPECT_EQ(pack.version(), 2u);
  ASSERT_EQ(pack.extents().size(), 2u);
  EXPECT_EQ(pack.extents()[0].expert_bytes, 0u);
  const ExtentInfo& e = pack.extents()[1];
  EXPECT_EQ(e.name, "blk.0.exps");
  EXPECT_EQ(e.expert_bytes, 4096u);  // 48 + pad to 64 + 2800 = 2864, rounded up to 4 KiB
  EXPECT_EQ(e.raw_bytes, kExperts * 4096);
  EXPECT_EQ(e.offset % 4096, 0u);
  EXPECT_TRUE(e.all_raw());
  ASSERT_EQ(e.frames.size(), 2 * kExperts);
  for (std::size_t f = 0; f < e.frames.size(); f += 2) EXPECT_EQ(e.frames[f].offset, e.offset + f / 2 * 4096);
  const TensorInfo& g = *pack.find_tensor("blk.0.gate");
  const TensorInfo& d = *pack.find_tensor("blk.0.down");
  EXPECT_EQ(g.offset, 0u);
  EXPECT_EQ(d.offset, 64u);
  EXPECT_EQ(g.expert_stride, 4096u);
  EXPECT_EQ(d.expert_stride, 4096u);
  EXPECT_EQ(pack.find_tensor("blk.0.attn")->expert_stride, 0u);
  auto bytes = pack.read_extent(1);
  ASSERT_TRUE(bytes);
  for (std::uint64_t x = 0; x < kExperts; ++x) {
    EXPECT_EQ(std::memcmp(bytes.value().data() + x * 4096, gate.data() + x * 48, 48), 0) << x;
    EXPECT_EQ(std::memcmp(bytes.value().data() + x * 4096 + 64, down.data() + x * 2800, 2800), 0) << x;
  }
  EXPECT_TRUE(pack.verify_all().empty());
  std::ostringstream out;
  EXPECT_EQ(inspect_pack(path, false, out), 0);
  EXPECT_NE(out.str().find("5 experts of 4096 bytes, each one read"), std::string::npos) << out.str();
  EXPECT_NE(out.str().find("expert stride 4096"), std::string::npos) << out.str();
}

TEST(PackExperts, TensorsThatAreNotWholeExpertsAreRefused) {
  TempDir dir;
  PackWriter writer(dir.file("bad.sluice"), {});
  EXPECT_THROW(writer.begin_expert_extent("blk.0.exps", {{"a", 0, {4, 3, 5}, 240}, {"b", 0, {4, 3, 4}, 192}}), std::invalid_argument);
}

struct ExpertCorruptCase {
  std::string name;
  std::function<void(json&)> edit;
  std::vector<std::string> words;
};

std::vector<ExpertCorruptCase> expert_corrupt_cases() {
  return {
      {"expert_bytes_unaligned", [](json& m) { m["extents"][1]["expert_bytes"] = 2048; }, {"extents[1].expert_bytes", "multiple of 4096"}},
      {"expert_bytes_zero", [](json& m) { m["extents"][1]["expert_bytes"] = 0; }, {"extents[1].expert_bytes"}},
      {"expert_bytes_not_dividing", [](json& m) { m["extents"][1]["expert_bytes"] = 3 * 4096; }, {"extents[1].expert_bytes", "dividing"}},
      {"frame_straddles_experts",
       [](json& m) {
         // Move 1024 raw bytes of expert 0's second frame into expert 1's first frame.
         json& frames = m["extents"][1]["frames"];
         frames[1]["raw_bytes"] = 1024;
         frames[1]["disk_bytes"] = 1024;
         frames[2]["offset"] = frames[2]["offset"].get<std::uint64_t>() - 1024;
         frames[2]["raw_bytes"] = 3072;
         frames[2]["disk_bytes"] = 3072;
         m["frame_bytes"] = 4096;
       },
       {"extents[1].frames[2]", "straddles"}},
      {"expert_frame_compressed", [](json& m) { m["extents"][1]["frames"][0]["codec"] = "zstd"; }, {"extents[1].frames[0].codec", "raw"}},
      {"expert_extent_in_version_1",
       [](json& m) { m["version"] = 1; },
       {"expert_bytes", "version 2"}},
      {"stride_differs", [](json& m) { m["tensors"][1]["expert_stride"] = 8192; }, {"tensors[1].expert_stride", "expert_bytes"}},
      {"slice_outside_its_expert", [](json& m) { m["tensors"][2]["offset"] = 4096 - 64; }, {"tensors[2]", "slices"}},
      {"dense_tensor_in_expert_extent", [](json& m) { m["tensors"][1].erase("expert_stride"); }, {"tensors[1]", "without an expert_stride"}},
  };
}

class PackExpertsCorrupt : public ::testing::TestWithParam<ExpertCorruptCase> {};

TEST_P(PackExpertsCorrupt, OpenRejectsNamingTheField) {
  TempDir dir;
  const std::string base = dir.file("base.sluice");
  write_expert_pack(base, random_bytes(kGateBytes, 1), random_bytes(kDownBytes, 2));
  PackImage image = PackImage::load(base);
  GetParam().edit(image.manifest);
  if (image.manifest["version"] == 1) {
    image.header.version = 1;
    image.write_header();
  }
  image.commit_manifest();
  const std::string bad = dir.file("bad.sluice");
  image.save(bad);
  try {
    Pack::open(bad);
    FAIL() << "expected PackError";
  } catch (const PackError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find(bad), std::string::npos) << message;
    for (const std::string& word : GetParam().words) EXPECT_NE(message.find(word), std::string::npos) << "'" << word << "' in: " << message;
  }
}

INSTANTIATE_TEST_SUITE_P(Table, PackExpertsCorrupt, ::testing::ValuesIn(expert_corrupt_cases()),
                         [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace sluice::pack
