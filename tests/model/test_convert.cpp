// Atomic, bounded-memory writing of packs and GGUFs (model/output_file.hpp): convert refuses an
// output that is its input, a writer that stops early leaves nothing under the final name and an
// existing file there untouched, a stale temp file is replaced (never written through), streamed
// tensors give the same bytes as whole ones, and a writer's memory does not grow with an extent.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/memory.hpp"
#include "model/convert.hpp"
#include "tools/synth.hpp"
#include "model/ggml_types.hpp"
#include "model/gguf.hpp"
#include "model/output_file.hpp"
#include "model/pack_reader.hpp"
#include "model/pack_writer.hpp"
#include "pack_test_util.hpp"
#include "tests/model/gguf_split_test_util.hpp"
#include "tests/support/error_of.hpp"

namespace sluice {
namespace {

using pack::PackWriter;
using pack::WriterOptions;
using pack::testing::partly_zero_bytes;
using pack::testing::random_bytes;
using pack::testing::read_file;
using pack::testing::TempDir;
using pack::testing::write_file;

constexpr auto kF32 = static_cast<std::uint32_t>(GgmlType::F32);
constexpr auto kQ8_0 = static_cast<std::uint32_t>(GgmlType::Q8_0);

using sluice::testing::error_of;

bool exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

// A real (synthetic, checked) F32 model whose ffn tensors straddle convert's 4 MiB reads:
// 64 x 20481 floats = 5 MiB + 256 bytes (two reads, the second short), next to small norms at
// 32-byte-aligned offsets, the embedding, two blocks and the head.
std::string write_test_gguf(const TempDir& dir, const std::string& name) {
  SynthOptions o;
  o.shape = SynthShape{64, 2, 4, 2, 20481, 128};
  o.type = GgmlType::F32;
  o.embedding_type = GgmlType::F32;
  o.vocab_from.clear();  // the built-in vocabulary
  const std::string path = dir.file(name);
  write_synthetic_gguf(path, o);
  return path;
}

// Every frame's checksum and codec checks out.
void expect_verifies(const std::string& path) {
  const std::vector<Error> errors = pack::Pack::open(path).verify_all();
  EXPECT_TRUE(errors.empty()) << path << ": " << (errors.empty() ? "" : errors.front().message);
}

TEST(Convert, StreamedReadsGiveTheSamePackAsWholeTensors) {
  TempDir dir;
  const std::string gguf_path = write_test_gguf(dir, "m.gguf");
  WriterOptions options;
  options.frame_bytes = 64 << 10;  // many frames, many batches per extent
  const std::string out = dir.file("m.sluice");
  convert_gguf_to_pack(gguf_path, out, options);
  pack::Pack pack = pack::Pack::open(out);
  gguf::File in = gguf::File::open(gguf_path);
  ASSERT_EQ(pack.tensors().size(), in.tensors().size());
  for (const auto& t : in.tensors()) {
    const pack::TensorInfo* p = pack.find_tensor(t.name);
    ASSERT_NE(p, nullptr) << t.name;
    auto extent = pack.read_extent(p->extent);
    ASSERT_TRUE(extent.ok()) << extent.error().message;
    const std::vector<std::byte>& raw = extent.value();
    ASSERT_LE(p->offset + p->bytes, raw.size()) << t.name;
    const auto want = in.tensor_data(t);
    EXPECT_TRUE(std::equal(want.begin(), want.end(), raw.begin() + static_cast<std::ptrdiff_t>(p->offset)))
        << t.name << " differs";
  }
  EXPECT_FALSE(exists(temp_path_for(out)));
}

// A split model converts from any of its shards to the very pack its unsplit file gives (the
// split.* keys are left out); a missing shard is refused naming it and writes nothing. Before
// ShardSet, the first of three shards converted alone to a third of the model, exit 0.
TEST(Convert, ASplitModelGivesThePackOfTheWholeFile) {
  TempDir dir;
  const std::string gguf_path = write_test_gguf(dir, "m.gguf");
  convert_gguf_to_pack(gguf_path, dir.file("whole.sluice"), {});
  const gguf::File whole = gguf::File::open(gguf_path);
  const std::vector<std::string> shards = gguf::testing::split_file(whole, dir.file("s"), 3);
  for (const std::string& given : {shards[0], shards[2]}) {
    const std::string out = dir.file("split.sluice");
    convert_gguf_to_pack(given, out, {});
    EXPECT_TRUE(read_file(out) == read_file(dir.file("whole.sluice"))) << "from " << given;
    std::filesystem::remove(out);
  }
  std::filesystem::remove(shards[1]);
  const std::string what = error_of([&] { convert_gguf_to_pack(shards[0], dir.file("split.sluice"), {}); });
  EXPECT_NE(what.find("s-00002-of-00003.gguf"), std::string::npos) << what;
  EXPECT_NE(what.find("missing"), std::string::npos) << what;
  EXPECT_FALSE(exists(dir.file("split.sluice")));
  EXPECT_FALSE(exists(temp_path_for(dir.file("split.sluice"))));
}

TEST(Convert, RefusesAnOutputThatIsTheInputAndLeavesItUnchanged) {
  TempDir dir;
  const std::string gguf_path = write_test_gguf(dir, "m.gguf");
  const std::vector<std::byte> before = read_file(gguf_path);
  ASSERT_EQ(::link(gguf_path.c_str(), dir.file("hard.gguf").c_str()), 0);
  ASSERT_EQ(::symlink("m.gguf", dir.file("soft.gguf").c_str()), 0);
  const std::string dotted = dir.path() + "/./m.gguf";
  for (const std::string& out : {gguf_path, dotted, dir.file("hard.gguf"), dir.file("soft.gguf")}) {
    const std::string what = error_of([&] { convert_gguf_to_pack(gguf_path, out, {}); });
    EXPECT_NE(what.find("is the input"), std::string::npos) << out << ": " << what;
    EXPECT_NE(what.find(out), std::string::npos) << what;
    EXPECT_EQ(read_file(gguf_path), before) << out;
    EXPECT_FALSE(exists(temp_path_for(out))) << out;
  }
  // The other way round: the input reached through a symlink.
  EXPECT_NE(error_of([&] { convert_gguf_to_pack(dir.file("soft.gguf"), gguf_path, {}); }).find("is the input"),
            std::string::npos);
  EXPECT_EQ(read_file(gguf_path), before);
}

TEST(Convert, RefusesAnInputThatIsTheOutputsTemporaryName) {
  TempDir dir;
  const std::string out = dir.file("m.sluice");
  const std::string gguf_path = write_test_gguf(dir, "m.sluice.tmp");
  const std::vector<std::byte> before = read_file(gguf_path);
  const std::string what = error_of([&] { convert_gguf_to_pack(gguf_path, out, {}); });
  EXPECT_NE(what.find("temporary name"), std::string::npos) << what;
  EXPECT_EQ(read_file(gguf_path), before);
  EXPECT_FALSE(exists(out));
}

TEST(Convert, ReplacesAnExistingOutputOnlyWhenDone) {
  TempDir dir;
  const std::string gguf_path = write_test_gguf(dir, "m.gguf");
  const std::string out = dir.file("m.sluice");
  write_file(out, random_bytes(100, 7));
  // A hard link to the old output keeps its inode reachable: rename must not have written into it.
  ASSERT_EQ(::link(out.c_str(), dir.file("old").c_str()), 0);
  convert_gguf_to_pack(gguf_path, out, {});
  EXPECT_EQ(read_file(dir.file("old")), random_bytes(100, 7));
  expect_verifies(out);
}

TEST(PackWriterAtomic, NothingUnderThePathUntilFinish) {
  TempDir dir;
  const std::string path = dir.file("p.sluice");
  const auto old_bytes = random_bytes(5000, 3);
  write_file(path, old_bytes);
  {
    PackWriter writer(path, {});
    writer.begin_extent("a");
    writer.add_bytes(random_bytes(3 << 20, 1));
    writer.end_extent();
    EXPECT_EQ(read_file(path), old_bytes) << "the old file must stay whole while the new one is written";
    EXPECT_TRUE(exists(temp_path_for(path)));
  }  // destroyed without finish(): as if the run had failed
  EXPECT_EQ(read_file(path), old_bytes);
  EXPECT_FALSE(exists(temp_path_for(path))) << "the temporary file must be removed";
}

TEST(PackWriterAtomic, AStaleTemporaryFileIsReplacedNotWrittenThrough) {
  TempDir dir;
  const std::string path = dir.file("p.sluice");
  const std::string temp = temp_path_for(path);
  const auto stale = random_bytes(10000, 9);
  write_file(temp, stale);
  // If the writer truncated and reused the stale file, this other name for it would change.
  ASSERT_EQ(::link(temp.c_str(), dir.file("other").c_str()), 0);
  {
    PackWriter writer(path, {});
    writer.begin_extent("a");
    writer.add_bytes(random_bytes(100, 1));
    writer.end_extent();
    writer.finish();
  }
  EXPECT_EQ(read_file(dir.file("other")), stale);
  EXPECT_FALSE(exists(temp));
  expect_verifies(path);
}

TEST(PackWriterAtomic, AnUncreatableTemporaryFileIsNamedInTheError) {
  TempDir dir;
  const std::string path = dir.file("p.sluice");
  std::filesystem::create_directory(temp_path_for(path));  // in the way, and not removable by unlink
  std::filesystem::create_directory(temp_path_for(path) + "/x");
  const std::string what = error_of([&] { PackWriter writer(path, {}); });
  EXPECT_NE(what.find(path), std::string::npos) << what;
  EXPECT_FALSE(exists(path));
}

// Tensors streamed in odd pieces across batch and frame boundaries give the very bytes that
// whole add_tensor calls give, with every codec choice.
TEST(PackWriterStreaming, PiecesGiveTheSameFileAsWholeTensors) {
  for (auto compress : {WriterOptions::Compress::none, WriterOptions::Compress::auto_, WriterOptions::Compress::zstd}) {
    TempDir dir;
    WriterOptions options;
    options.frame_bytes = 4096;
    options.compress = compress;
    const auto a = partly_zero_bytes(100000, 0.5, 1);
    const auto b = random_bytes(2288 * 34, 2);  // 2288 Q8_0 blocks: not a multiple of the frame
    const auto c = partly_zero_bytes(4096 * 9, 0.9, 3);
    {
      PackWriter whole(dir.file("whole"), options);
      whole.begin_extent("e0");
      whole.add_tensor("a", kF32, {25000}, a);
      whole.add_bytes(random_bytes(13, 4));
      whole.add_tensor("b", kQ8_0, {2288 * 32}, b);
      whole.end_extent();
      whole.begin_extent("e1");
      whole.end_extent();
      whole.begin_extent("e2");
      whole.add_tensor("c", kF32, {4096 * 9 / 4}, c);
      whole.end_extent();
      whole.finish();
    }
    {
      PackWriter pieces(dir.file("pieces"), options);
      auto stream = [&](const std::string& name, std::uint32_t type, std::uint64_t elements,
                        const std::vector<std::byte>& bytes, std::size_t piece) {
        pieces.begin_tensor(name, type, {elements}, bytes.size());
        for (std::size_t at = 0; at < bytes.size(); at += piece) {
          pieces.add_bytes(std::span(bytes).subspan(at, std::min(piece, bytes.size() - at)));
        }
      };
      pieces.begin_extent("e0");
      stream("a", kF32, 25000, a, 999);
      pieces.add_bytes(random_bytes(13, 4));
      stream("b", kQ8_0, 2288 * 32, b, 4096 * 5 + 1);
      pieces.end_extent();
      pieces.begin_extent("e1");
      pieces.end_extent();
      pieces.begin_extent("e2");
      stream("c", kF32, 4096 * 9 / 4, c, 1);
      pieces.end_extent();
      pieces.finish();
    }
    EXPECT_EQ(read_file(dir.file("whole")), read_file(dir.file("pieces"))) << "compress " << int(compress);
    expect_verifies(dir.file("pieces"));
  }
}

// The writer holds a batch of frames, not an extent: writing a 192 MiB extent grows the
// process's resident memory by the batch buffers only. (The old writer held the whole extent.)
TEST(PackWriterMemory, AnExtentLargerThanTheBuffersDoesNotGrowMemory) {
  if (!reset_peak_rss()) GTEST_SKIP() << "cannot reset the peak RSS (/proc/self/clear_refs not writable)";
  TempDir dir;
  WriterOptions options;
  options.compress = WriterOptions::Compress::none;
  const auto piece = random_bytes(1 << 20, 5);
  const std::uint64_t before = current_rss_bytes();
  ASSERT_TRUE(reset_peak_rss());
  {
    PackWriter writer(dir.file("big"), options);
    writer.begin_extent("big");
    constexpr std::uint64_t kPieces = 192;
    writer.begin_tensor("t", 0, {kPieces << 20}, kPieces << 20);
    for (std::uint64_t i = 0; i < kPieces; ++i) writer.add_bytes(piece);
    writer.end_extent();
    writer.finish();
  }
  const std::uint64_t growth = peak_rss_bytes() - before;
  // Batch buffers: at most 32 MiB raw (compression off: no encoded copy); 64 MiB of headroom for
  // allocator slack and TBB's threads, still a third of the extent.
  EXPECT_LT(growth, 64ull << 20) << "peak RSS grew by " << growth << " bytes writing a 192 MiB extent";
}

TEST(GgufWriterAtomic, GeneratedTensorsAndNothingLeftOnFailure) {
  TempDir dir;
  const std::string path = dir.file("g.gguf");
  const auto bytes = random_bytes(64, 1);
  {
    gguf::Writer w;
    w.add_tensor_generated("t", kF32, {16}, [&] { return bytes; });
    w.write(path);
    gguf::File f = gguf::File::open(path);
    const auto got = f.tensor_data(*f.find_tensor("t"));
    EXPECT_TRUE(std::equal(got.begin(), got.end(), bytes.begin()));
  }
  const std::vector<std::byte> good = read_file(path);
  // A generator that fails (or makes the wrong size) leaves the old file in place and no temp.
  gguf::Writer bad;
  bad.add_tensor("first", kF32, {16}, bytes);
  bad.add_tensor_generated("t", kF32, {16}, [] { return std::vector<std::byte>(12); });
  EXPECT_NE(error_of([&] { bad.write(path); }).find("12 bytes"), std::string::npos);
  gguf::Writer throws;
  throws.add_tensor_generated("t", kF32, {16}, []() -> std::vector<std::byte> { throw std::runtime_error("boom"); });
  EXPECT_EQ(error_of([&] { throws.write(path); }), "boom");
  EXPECT_EQ(read_file(path), good);
  EXPECT_FALSE(exists(temp_path_for(path)));
  // Dims that do not match the type are refused when the tensor is added, before any file exists.
  gguf::Writer shape;
  EXPECT_THROW(shape.add_tensor_generated("q", static_cast<std::uint32_t>(GgmlType::Q8_0), {16}, [] {
    return std::vector<std::byte>();
  }), std::invalid_argument);
}

}  // namespace
}  // namespace sluice
