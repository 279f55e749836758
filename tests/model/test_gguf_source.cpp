// GgufSource (model/gguf_source.hpp): a synthetic GGUF's units hold every tensor byte for byte
// and agree with the pack convert makes of it; with an index sidecar every frame carries the
// chunk's checksum (the pack convention, checked with pack::frame_checksum_ok) and a rotten byte
// is a named checksum error; without one frames are unverified; a file truncated under the
// source is an I/O error naming it; split models and non-contiguous blocks are refused.
#include <gtest/gtest.h>

#include <cstring>
#include <set>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include <fmt/format.h>

#include "common/units.hpp"

#include "model/convert.hpp"
#include "model/gguf_source.hpp"
#include "model/pack_source.hpp"
#include "tests/support/rot_byte.hpp"
#include "tests/model/gguf_split_test_util.hpp"
#include "tools/synth.hpp"

namespace sluice {
namespace {

using gguf::testing::TempDir;
using sluice::testing::rot_byte;

// ~2.6 MiB: the embedding (Q8_0), 3 blocks of Q4_0 matrices, the head; several index chunks.
std::string write_model(const TempDir& dir, const std::string& name) {
  SynthOptions o;
  o.shape = SynthShape{256, 3, 8, 4, 768, 128};
  o.vocab_size = 2000;
  const std::string path = dir.file(name);
  write_synthetic_gguf(path, o);
  return path;
}

// `read` must throw the index's checksum error for the rotten byte at `bad` of `path`, naming the
// file and the chunk (a 1 MiB chunk of these small models holds many tensors: the message names
// the span) and mentioning `tensor_text`.
template <typename Read>
void expect_rotten_chunk_error(Read read, const std::string& path, std::uint64_t bad, const std::string& tensor_text) {
  try {
    read();
    FAIL() << "a rotten byte was read without an error";
  } catch (const Exception& e) {
    EXPECT_EQ(e.kind(), ErrorKind::checksum);
    const std::string what = e.what();
    EXPECT_NE(what.find(path), std::string::npos) << what;
    EXPECT_NE(what.find("damaged data in"), std::string::npos) << what;
    EXPECT_NE(what.find(tensor_text), std::string::npos) << what;
    EXPECT_NE(what.find(fmt::format("[{}, +", bad / gguf::kIndexChunkBytes * gguf::kIndexChunkBytes)), std::string::npos) << what;
  }
}

void expect_units_hold_tensors(const GgufSource& source, const std::string& path) {
  const gguf::File mapped = gguf::File::open(path);
  ASSERT_EQ(source.tensors().size(), mapped.tensors().size());
  std::vector<std::vector<std::byte>> units;
  for (std::uint32_t u = 0; u < source.units().size(); ++u) {
    const ReadUnit& unit = source.units()[u];
    EXPECT_EQ(unit.offset % kDirectAlign, 0u) << unit.name;
    EXPECT_EQ(unit.offset, unit.frames.front().offset);
    units.push_back(read_unit(source, u));
  }
  for (const SourceTensor& t : source.tensors()) {
    const auto want = mapped.tensor_data(*mapped.find_tensor(t.name));
    const std::vector<std::byte>& raw = units.at(t.extent);
    ASSERT_LE(t.offset + t.bytes, raw.size()) << t.name;
    EXPECT_TRUE(std::equal(want.begin(), want.end(), raw.begin() + static_cast<std::ptrdiff_t>(t.offset))) << t.name;
    EXPECT_EQ(source.find_tensor(t.name), &t);
  }
}

TEST(GgufSource, UnitsHoldEveryTensorAndMatchThePack) {
  TempDir dir;
  const std::string path = write_model(dir, "m.gguf");
  const auto source = GgufSource::open(path);
  EXPECT_FALSE(source->verified()) << "no sidecar";
  std::vector<std::string> names;
  for (const ReadUnit& u : source->units()) names.push_back(u.name);
  EXPECT_EQ(names, (std::vector<std::string>{"token_embd", "blk.0", "blk.1", "blk.2", "output"}));
  EXPECT_EQ(source->checked_config().n_layer, 3);
  expect_units_hold_tensors(*source, path);
  // The pack of the same model: the same tensors, the same bytes through the same reader.
  convert_gguf_to_pack(path, dir.file("m.sluice"), {});
  const auto pack = PackSource::open(dir.file("m.sluice"));
  ASSERT_EQ(pack->tensors().size(), source->tensors().size());
  for (const SourceTensor& t : source->tensors()) {
    const SourceTensor* p = pack->find_tensor(t.name);
    ASSERT_NE(p, nullptr) << t.name;
    EXPECT_EQ(p->type, t.type);
    EXPECT_EQ(p->shape, t.shape);
    std::vector<std::byte> a(t.bytes), b(t.bytes);
    read_unit_range(*source, t.extent, t.offset, a);
    read_unit_range(*pack, p->extent, p->offset, b);
    EXPECT_TRUE(a == b) << t.name;
  }
  EXPECT_EQ(source->metadata()->get_string("general.architecture"), "llama");
}

TEST(GgufSource, WithAnIndexFramesAreTheChunksWithTheirChecksums) {
  TempDir dir;
  const std::string path = write_model(dir, "m.gguf");
  (void)gguf::write_gguf_index(gguf::ShardSet::open(path), gguf::sidecar_path_for(path));
  const auto source = GgufSource::open(path);
  ASSERT_TRUE(source->verified());
  const std::vector<std::byte> whole = gguf::testing::read_file(path);
  std::size_t frames = 0;
  for (const ReadUnit& u : source->units()) {
    EXPECT_EQ(u.offset % gguf::kIndexChunkBytes, 0u) << u.name;
    for (const pack::FrameInfo& f : u.frames) {
      EXPECT_EQ(f.offset % gguf::kIndexChunkBytes, 0u);
      // The prefetcher's check, on the file's bytes.
      EXPECT_TRUE(pack::frame_checksum_ok(f, std::span(whole).subspan(f.offset, f.disk_bytes))) << u.name;
      ++frames;
    }
  }
  EXPECT_GT(frames, source->units().size());
  expect_units_hold_tensors(*source, path);

  const SourceTensor* t = source->find_tensor("blk.1.ffn_down.weight");
  ASSERT_NE(t, nullptr);
  const ReadUnit& unit = source->units()[t->extent];
  const std::uint64_t bad = unit.offset + t->offset + 100;
  rot_byte(path, bad, std::byte{0x04});
  const auto reopened = GgufSource::open(path);  // size, mtime and header unchanged: accepted
  std::vector<std::byte> out(t->bytes);
  expect_rotten_chunk_error([&] { read_unit_range(*reopened, t->extent, t->offset, out); }, path, bad, "'blk.1.");
}

TEST(GgufSource, AFileTruncatedUnderTheSourceIsANamedReadError) {
  TempDir dir;
  const std::string path = write_model(dir, "m.gguf");
  const auto source = GgufSource::open(path);
  const ReadUnit& last = source->units().back();
  std::filesystem::resize_file(path, last.offset + 10);
  auto frame = source->read_frame(static_cast<std::uint32_t>(source->units().size() - 1), 0);
  ASSERT_FALSE(frame.ok());
  EXPECT_EQ(frame.error().kind, ErrorKind::io);
  EXPECT_NE(frame.error().message.find(path), std::string::npos) << frame.error().message;
  EXPECT_NE(frame.error().message.find(std::to_string(last.offset)), std::string::npos) << frame.error().message;
}

// A split model opens from any shard, its units' ranges naming the shard they lie in; a block
// whose tensors lie in two ranges of one file is one unit of two ranges, each tensor at its
// range's start in the unit's raw bytes plus its offset in the range, and read_frame gives its
// bytes exactly.
TEST(GgufSource, SplitModelsAndScatteredBlocksAreUnitsOfSeveralRanges) {
  TempDir dir;
  const std::string path = write_model(dir, "m.gguf");
  const gguf::File whole = gguf::File::open(path);
  const auto shards = gguf::testing::split_file(whole, dir.file("s"), 2);
  for (const std::string& shard : shards) {
    const auto split = GgufSource::open(shard);
    ASSERT_EQ(split->files(), shards);
    std::set<std::uint32_t> files;
    for (const ReadUnit& u : split->units()) {
      for (const pack::ExtentRange& r : u.ranges) files.insert(r.file);
    }
    EXPECT_EQ(files, (std::set<std::uint32_t>{0, 1}));
    for (const SourceTensor& t : split->tensors()) {
      std::vector<std::byte> got(t.bytes);
      read_unit_range(*split, t.extent, t.offset, got);
      const gguf::TensorInfo* info = whole.find_tensor(t.name);
      ASSERT_NE(info, nullptr) << t.name;
      const auto want = whole.tensor_data(*info);
      ASSERT_EQ(std::memcmp(got.data(), want.data(), got.size()), 0) << t.name << " read from " << shard;
    }
  }

  // blk.0's last tensor moved to the end of the file: blk.0 is two ranges.
  gguf::Writer w;
  for (const auto& [key, value] : whole.metadata()) {
    if (key != gguf::kAlignmentKey) w.set(key, value);
  }
  const gguf::TensorInfo* moved = nullptr;
  for (const gguf::TensorInfo& t : whole.tensors()) {
    if (t.name == "blk.0.ffn_up.weight") {
      moved = &t;
      continue;
    }
    w.add_tensor_ref(t.name, t.type, t.dims, whole.tensor_data(t));
  }
  ASSERT_NE(moved, nullptr);
  w.add_tensor_ref(moved->name, moved->type, moved->dims, whole.tensor_data(*moved));
  w.write(dir.file("scattered.gguf"));
  const auto scattered = GgufSource::open(dir.file("scattered.gguf"));
  const SourceTensor* up = scattered->find_tensor("blk.0.ffn_up.weight");
  ASSERT_NE(up, nullptr);
  EXPECT_EQ(scattered->units()[up->extent].name, "blk.0");
  EXPECT_EQ(scattered->units()[up->extent].ranges.size(), 2u);
  std::vector<std::byte> got(up->bytes);
  read_unit_range(*scattered, up->extent, up->offset, got);
  const auto want = whole.tensor_data(*moved);
  EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size()), 0);
}

// read_whole_unit (resident weights: O_DIRECT straight into an aligned buffer, several reads in
// flight) gives every unit's raw bytes exactly as the frame-by-frame reader does: without an
// index, with one, and for a split model whose units have ranges in two files.
TEST(GgufSource, ReadWholeUnitMatchesTheFrameReader) {
  TempDir dir;
  const std::string path = write_model(dir, "m.gguf");
  const auto shards = gguf::testing::split_file(gguf::File::open(path), dir.file("s"), 2);
  auto expect_same = [](const GgufSource& source) {
    for (std::uint32_t u = 0; u < source.units().size(); ++u) {
      const AlignedBuffer whole = source.read_whole_unit(u);
      EXPECT_EQ(reinterpret_cast<std::uintptr_t>(whole.data()) % kDirectAlign, 0u);
      const std::vector<std::byte> framed = read_unit(source, u);
      ASSERT_EQ(whole.size(), framed.size()) << source.units()[u].name;
      EXPECT_EQ(std::memcmp(whole.data(), framed.data(), framed.size()), 0) << source.units()[u].name;
    }
  };
  expect_same(*GgufSource::open(path));
  expect_same(*GgufSource::open(shards.front()));
  (void)gguf::write_gguf_index(gguf::ShardSet::open(path), gguf::sidecar_path_for(path));
  const auto indexed = GgufSource::open(path);
  ASSERT_TRUE(indexed->verified());
  expect_same(*indexed);
}

// A rotten byte under read_whole_unit is the index's checksum error naming the file, the chunk
// and the tensors in it; a file cut short is an I/O error saying where the file ends.
TEST(GgufSource, ReadWholeUnitVerifiesAndNamesATruncatedFile) {
  TempDir dir;
  const std::string path = write_model(dir, "m.gguf");
  (void)gguf::write_gguf_index(gguf::ShardSet::open(path), gguf::sidecar_path_for(path));
  const auto before = GgufSource::open(path);
  const SourceTensor* t = before->find_tensor("blk.2.ffn_gate.weight");
  ASSERT_NE(t, nullptr);
  const std::uint64_t bad = before->units()[t->extent].offset + t->offset + 7;
  rot_byte(path, bad, std::byte{0x40});
  const auto source = GgufSource::open(path);
  expect_rotten_chunk_error([&] { (void)source->read_whole_unit(t->extent); }, path, bad, "'blk.");
  rot_byte(path, bad, std::byte{0x40});  // back as it was
  const auto whole = GgufSource::open(path);
  const std::uint32_t last = static_cast<std::uint32_t>(whole->units().size() - 1);
  const std::uint64_t cut = whole->units()[last].offset + 5000;
  std::filesystem::resize_file(path, cut);
  try {
    (void)whole->read_whole_unit(last);
    FAIL() << "a truncated file was read without an error";
  } catch (const Exception& e) {
    EXPECT_EQ(e.kind(), ErrorKind::io);
    const std::string what = e.what();
    EXPECT_NE(what.find(path), std::string::npos) << what;
    EXPECT_NE(what.find(fmt::format("file ends at byte {}", cut)), std::string::npos) << what;
  }
}

TEST(GgufSource, EraseMetadataKeyFreesIt) {
  TempDir dir;
  const auto source = GgufSource::open(write_model(dir, "m.gguf"));
  ASSERT_TRUE(source->metadata()->get_string_array("tokenizer.ggml.tokens").has_value());
  source->erase_metadata_key("tokenizer.ggml.tokens");
  EXPECT_FALSE(source->metadata()->get_string_array("tokenizer.ggml.tokens").has_value());
  EXPECT_EQ(source->metadata()->get_string("general.architecture"), "llama") << "the other keys are still found";
}

}  // namespace
}  // namespace sluice
