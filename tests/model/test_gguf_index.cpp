// The GGUF index sidecar (model/gguf_index.hpp): index then verify clean; a flipped byte named
// with shard, tensor and offset; sidecars refused when their file changed (size, mtime, header)
// or belong to another file; split sets; partial chunks; and a seeded mutation loop over the
// sidecar parser: every mutated sidecar is refused with a message or decodes to exactly itself.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <random>
#include <vector>

#include "common/units.hpp"
#include "model/fast_hash.hpp"
#include "model/gguf_index.hpp"
#include "tests/support/rot_byte.hpp"
#include "tests/support/error_of.hpp"
#include "tests/model/gguf_split_test_util.hpp"

#include <fmt/format.h>
#include <xxhash.h>

namespace sluice::gguf {
namespace {

using sluice::testing::error_of;
using sluice::testing::expect_words;
using sluice::testing::rot_byte;
using testing::TempDir;
using testing::TestTensor;


// ~3.3 MiB in 4 chunks, the last one short; two blocks so block ranges have something to do.
std::vector<TestTensor> multi_chunk_model() {
  return {{"token_embd.weight", 200000, 1},  {"blk.0.attn_q.weight", 150000, 2}, {"blk.0.ffn_up.weight", 100000, 3},
          {"blk.1.attn_q.weight", 150000, 4}, {"blk.1.ffn_up.weight", 100000, 5}, {"output_norm.weight", 64, 6},
          {"output.weight", 160000, 7}};
}

void touch(const std::string& path) {
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  struct timespec times[2] = {st.st_atim, st.st_mtim};
  times[1].tv_sec += 1;  // a later mtime, whatever the clock's resolution
  ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), times, 0), 0);
}

struct Indexed {
  TempDir dir;
  std::string path;
  std::string sidecar;
  Indexed() : path(dir.file("model.gguf")), sidecar(sidecar_path_for(path)) {
    testing::write_single(path, multi_chunk_model());
    (void)write_gguf_index(ShardSet::open(path), sidecar);
  }
};

TEST(GgufIndex, IndexThenVerifyClean) {
  Indexed m;
  const ShardSet set = ShardSet::open(m.path);
  EXPECT_EQ(m.sidecar, m.path + ".sluice-index");
  EXPECT_FALSE(std::filesystem::exists(m.sidecar + ".tmp")) << "written atomically";
  const GgufIndex index = GgufIndex::load(m.sidecar, set);
  const std::uint64_t size = set.shards()[0].file_size;
  ASSERT_EQ(index.contents().shards.size(), 1u);
  EXPECT_EQ(index.contents().shards[0].chunk_hashes.size(), (size + kIndexChunkBytes - 1) / kIndexChunkBytes);
  EXPECT_NE(size % kIndexChunkBytes, 0u) << "the last chunk is shorter";
  const std::vector<std::byte> whole = testing::read_file(m.path);
  auto all = index.verify(0, 0, whole);
  ASSERT_TRUE(all.ok()) << all.error().message;
  EXPECT_EQ(all.value(), size);
  // Reads rounded out to whole chunks are verified entirely, tail past the end of file included.
  const ModelRanges ranges = block_read_ranges(set, 2, index.chunk_bytes());
  for (const ExtentRanges& e : ranges.blocks) {
    for (const ReadRange& r : e.ranges) {
      const std::uint64_t in_file = std::min(r.length, size - r.offset);
      auto v = index.verify(0, r.offset, std::span(whole).subspan(r.offset, in_file));
      ASSERT_TRUE(v.ok()) << v.error().message;
      EXPECT_EQ(v.value(), in_file) << e.name;
    }
  }
}

// `sluice index --chunk-size` (64 KiB by default for MoE models): any power of two from 4 KiB to
// 8 MiB is written, loaded and verified; a flipped byte is named in a chunk of that size.
TEST(GgufIndex, SmallerChunksAreWrittenAndVerified) {
  TempDir dir;
  const std::string path = dir.file("model.gguf"), sidecar = sidecar_path_for(path);
  testing::write_single(path, multi_chunk_model());
  for (std::uint32_t chunk : {kMinIndexChunkBytes, kMoeIndexChunkBytes, kMaxIndexChunkBytes}) {
    const ShardSet set = ShardSet::open(path);
    const IndexStats stats = write_gguf_index(set, sidecar, {}, chunk);
    const std::uint64_t size = set.shards()[0].file_size;
    EXPECT_EQ(stats.chunks, (size + chunk - 1) / chunk) << chunk;
    const GgufIndex index = GgufIndex::load(sidecar, set);
    EXPECT_EQ(index.chunk_bytes(), chunk);
    const std::vector<std::byte> whole = testing::read_file(path);
    auto v = index.verify(0, 0, whole);
    ASSERT_TRUE(v.ok()) << v.error().message;
    EXPECT_EQ(v.value(), size);
    EXPECT_TRUE(verify_gguf_files(index, set).empty()) << chunk;
  }
  const ShardSet set = ShardSet::open(path);
  (void)write_gguf_index(set, sidecar, {}, kMoeIndexChunkBytes);
  const GgufIndex index = GgufIndex::load(sidecar, set);
  const ShardTensor* t = set.find_tensor("blk.1.ffn_up.weight");
  std::vector<std::byte> whole = testing::read_file(path);
  whole[t->offset + 70000] ^= std::byte{0x40};
  const std::uint64_t chunk_at = (t->offset + 70000) / kMoeIndexChunkBytes * kMoeIndexChunkBytes;
  const auto v = index.verify(0, chunk_at, std::span(whole).subspan(chunk_at, kMoeIndexChunkBytes), "blk.1.ffn_up.weight");
  ASSERT_FALSE(v.ok());
  expect_words(v.error().message, {path, "blk.1.ffn_up.weight", fmt::format("{}", chunk_at)});
  for (std::uint32_t bad : {0u, 2048u, 3u * 4096u, 16u << 20}) {
    expect_words(error_of<std::invalid_argument>([&] { (void)write_gguf_index(set, dir.file("bad.idx"), {}, bad); }),
                 {"chunk size", "power of two"});
    EXPECT_FALSE(std::filesystem::exists(dir.file("bad.idx")));
  }
}

TEST(GgufIndex, LoadIfPresentFindsTheModelsOwnSidecar) {
  Indexed m;
  EXPECT_TRUE(GgufIndex::load_if_present(ShardSet::open(m.path)).has_value());
  std::filesystem::remove(m.sidecar);
  EXPECT_FALSE(GgufIndex::load_if_present(ShardSet::open(m.path)).has_value());
  (void)write_gguf_index(ShardSet::open(m.path), m.sidecar);
  touch(m.path);
  expect_words(error_of<GgufError>([&] { (void)GgufIndex::load_if_present(ShardSet::open(m.path)); }), {"modification time"});
}

TEST(GgufIndex, PartialChunksAreSkippedNotFailed) {
  Indexed m;
  const GgufIndex index = GgufIndex::load(m.sidecar, ShardSet::open(m.path));
  const std::vector<std::byte> whole = testing::read_file(m.path);
  const std::uint64_t chunk = index.chunk_bytes();
  // Half a chunk: nothing is covered whole.
  auto v = index.verify(0, 100, std::span(whole).subspan(100, chunk / 2));
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v.value(), 0u);
  // From the middle of chunk 0 to the end of chunk 2: chunks 1 and 2.
  v = index.verify(0, chunk / 2, std::span(whole).subspan(chunk / 2, 2 * chunk + chunk / 2));
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v.value(), 2 * chunk);
  // A rotten byte in a partly covered chunk goes unseen by that read; the whole-chunk read sees it.
  rot_byte(m.path, chunk / 4);
  const std::vector<std::byte> rotten = testing::read_file(m.path);
  v = index.verify(0, chunk / 2, std::span(rotten).subspan(chunk / 2, chunk));
  EXPECT_TRUE(v.ok());
  EXPECT_FALSE(index.verify(0, 0, std::span(rotten).first(chunk)).ok());
}

TEST(GgufIndex, AFlippedByteIsNamedWithShardTensorAndOffset) {
  Indexed m;
  const ShardSet set = ShardSet::open(m.path);
  const ShardTensor* t = set.find_tensor("blk.1.attn_q.weight");
  const std::uint64_t bad = t->offset + 1000;
  rot_byte(m.path, bad);
  const GgufIndex index = GgufIndex::load(m.sidecar, set);  // the header and mtime are unchanged
  const std::vector<std::byte> whole = testing::read_file(m.path);
  const auto v = index.verify(0, 0, whole);
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.error().kind, ErrorKind::checksum);
  const std::uint64_t chunk_at = bad / kIndexChunkBytes * kIndexChunkBytes;
  expect_words(v.error().message, {m.path, "shard 1 of 1", fmt::format("[{}, +", chunk_at), "'blk.1.attn_q.weight'",
                                   m.sidecar, "damaged"});
  // The caller's own tensor name wins when given.
  const auto named = index.verify(0, 0, whole, "blk.1.attn_q.weight");
  ASSERT_FALSE(named.ok());
  expect_words(named.error().message, {"tensor 'blk.1.attn_q.weight'"});
}

TEST(GgufIndex, ASidecarIsRefusedWhenItsFileChanged) {
  {
    Indexed m;
    touch(m.path);
    expect_words(error_of<GgufError>([&] { (void)GgufIndex::load(m.sidecar, ShardSet::open(m.path)); }),
                 {m.sidecar, m.path, "modification time", "sluice index"});
  }
  {
    Indexed m;
    std::filesystem::resize_file(m.path, std::filesystem::file_size(m.path) + 4096);
    expect_words(error_of<GgufError>([&] { (void)GgufIndex::load(m.sidecar, ShardSet::open(m.path)); }),
                 {m.sidecar, m.path, "size"});
  }
  {
    Indexed m;
    rot_byte(m.path, 35);  // inside the first key's name: the header parses, its hash differs
    expect_words(error_of<GgufError>([&] { (void)GgufIndex::load(m.sidecar, ShardSet::open(m.path)); }),
                 {m.sidecar, m.path, "header"});
  }
}

TEST(GgufIndex, ASidecarOfAnotherFileIsRefused) {
  Indexed m;
  const std::string other = m.dir.file("other.gguf");
  testing::write_single(other, multi_chunk_model());
  expect_words(error_of<GgufError>([&] { (void)GgufIndex::load(m.sidecar, ShardSet::open(other)); }),
               {m.sidecar, other, "made for the file 'model.gguf'"});
}

TEST(GgufIndex, ADamagedSidecarIsRefused) {
  Indexed m;
  std::vector<std::byte> bytes = testing::read_file(m.sidecar);
  bytes[40] ^= std::byte{1};
  testing::write_file(m.sidecar, bytes);
  expect_words(error_of<GgufError>([&] { (void)GgufIndex::load(m.sidecar, ShardSet::open(m.path)); }),
               {m.sidecar, "checksum of the sidecar"});
  testing::write_file(m.sidecar, std::vector<std::byte>(10));
  expect_words(error_of<GgufError>([&] { (void)GgufIndex::load(m.sidecar, ShardSet::open(m.path)); }), {m.sidecar, "too short"});
}

TEST(GgufIndex, ASplitSetIndexesEveryShard) {
  TempDir dir;
  const std::vector<std::vector<TestTensor>> shards = {
      {{"token_embd.weight", 200000, 1}, {"blk.0.attn_q.weight", 150000, 2}},
      {{"blk.0.ffn_up.weight", 100000, 3}, {"blk.1.attn_q.weight", 150000, 4}},
      {{"blk.1.ffn_up.weight", 100000, 5}, {"output_norm.weight", 64, 6}, {"output.weight", 160000, 7}}};
  const auto paths = testing::write_split(dir.file("m"), shards);
  const ShardSet set = ShardSet::open(paths[1]);
  const std::string sidecar = sidecar_path_for(set.shards()[0].path);
  EXPECT_EQ(sidecar, paths[0] + ".sluice-index");
  const IndexStats stats = write_gguf_index(set, sidecar);
  EXPECT_EQ(stats.shards, 3u);
  const GgufIndex index = GgufIndex::load(sidecar, set);
  for (std::uint32_t i = 0; i < 3; ++i) {
    const std::vector<std::byte> whole = testing::read_file(paths[i]);
    auto v = index.verify(i, 0, whole);
    ASSERT_TRUE(v.ok()) << v.error().message;
    EXPECT_EQ(v.value(), whole.size());
  }
  const ShardTensor* t = set.find_tensor("blk.1.attn_q.weight");
  ASSERT_EQ(t->shard, 1u);
  rot_byte(paths[1], t->offset + 5);
  const auto v = index.verify(1, 0, testing::read_file(paths[1]));
  ASSERT_FALSE(v.ok());
  expect_words(v.error().message, {paths[1], "shard 2 of 3", "'blk.1.attn_q.weight'"});
  // One shard touched: the whole sidecar is refused, naming that shard.
  touch(paths[2]);
  expect_words(error_of<GgufError>([&] { (void)GgufIndex::load(sidecar, set); }), {sidecar, paths[2], "modification time"});
}

// The parser under seeded mutations. Raw mutations must be caught by the trailer (or decode to
// the original); resealed mutations (trailer recomputed) reach the field checks and must be
// refused with a message naming the sidecar, or decode to contents that encode back to exactly
// the mutated bytes.
TEST(GgufIndexFuzz, MutatedSidecarsAreRefusedOrIdentical) {
  constexpr std::uint64_t kSeed = 20261205;
  constexpr int kMutations = 2000;
  std::printf("GgufIndexFuzz seed %llu\n", static_cast<unsigned long long>(kSeed));
  SidecarContents c;
  c.chunk_bytes = 1u << 16;
  for (int s = 0; s < 2; ++s) {
    IndexedShard shard;
    shard.name = fmt::format("m-0000{}-of-00002.gguf", s + 1);
    shard.file_size = 3 * c.chunk_bytes + 100 + static_cast<std::uint64_t>(s);
    shard.mtime_ns = 1700000000123456789 + s;
    shard.header_bytes = 4096;
    shard.header_hash = 0x1234 + static_cast<std::uint64_t>(s);
    for (int k = 0; k < 4; ++k) shard.chunk_hashes.push_back(0x9e3779b97f4a7c15ull * static_cast<std::uint64_t>(k + s + 1));
    c.shards.push_back(shard);
  }
  const std::vector<std::byte> original = encode_sidecar(c);
  ASSERT_EQ(decode_sidecar(original, "seed"), c);
  std::mt19937_64 rng(kSeed);
  int accepted_raw = 0, accepted_sealed = 0;
  for (int i = 0; i < kMutations; ++i) {
    std::vector<std::byte> m = original;
    const int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits && !m.empty(); ++e) {
      const std::size_t pos = rng() % m.size();
      switch (rng() % 5) {
        case 0: m[pos] ^= static_cast<std::byte>(1u << (rng() % 8)); break;
        case 1: m.resize(pos); break;
        case 2: m.insert(m.begin() + static_cast<std::ptrdiff_t>(pos), static_cast<std::byte>(rng())); break;
        case 3: m.erase(m.begin() + static_cast<std::ptrdiff_t>(pos)); break;
        default: m[pos] = static_cast<std::byte>(rng()); break;
      }
    }
    const bool reseal = (i % 2) == 1 && m.size() >= 8;
    if (reseal) {
      const std::uint64_t h = XXH3_64bits_withSeed(m.data(), m.size() - 8, kIndexTrailerSeed);
      std::memcpy(m.data() + m.size() - 8, &h, 8);
    }
    SCOPED_TRACE(::testing::Message() << "mutation " << i << (reseal ? " (resealed)" : ""));
    try {
      const SidecarContents d = decode_sidecar(m, "fuzz.sluice-index");
      if (reseal) {
        EXPECT_EQ(encode_sidecar(d), m);
        ++accepted_sealed;
      } else {
        EXPECT_EQ(m, original);
        ++accepted_raw;
      }
    } catch (const GgufError& e) {
      EXPECT_NE(std::string(e.what()).find("fuzz.sluice-index"), std::string::npos) << e.what();
    }
  }
  std::printf("accepted: %d raw, %d resealed of %d each\n", accepted_raw, accepted_sealed, kMutations / 2);
  // Most resealed edits break a count, a length or the chunk arithmetic; an accept-all parser
  // would pass the checks above alone.
  EXPECT_LT(accepted_sealed, kMutations / 2 / 2);
}

}  // namespace
}  // namespace sluice::gguf

// The run-time-dispatched XXH3 (AVX2 where the CPU has it) gives libxxhash's value for every
// length class of XXH3 (0, 1-3, 4-8, 9-16, 17-128, 129-240, and the long loop with its stripes,
// blocks and tail), any alignment and any seed, so sidecars and packs stay readable everywhere.
TEST(FastHash, EqualsLibxxhashAtEveryLengthAlignmentAndSeed) {
  std::mt19937_64 rng(7);
  std::vector<unsigned char> buf((1u << 20) + 4096 + 64);
  for (auto& b : buf) b = static_cast<unsigned char>(rng());
  std::vector<std::size_t> lengths;
  for (std::size_t n = 0; n <= 300; ++n) lengths.push_back(n);
  for (std::size_t n : {511u, 512u, 1023u, 1024u, 1025u, 4095u, 4096u, 65536u, 65537u, 1048576u, 1048576u + 4096u + 3u}) {
    lengths.push_back(n);
  }
  for (std::size_t n : lengths) {
    for (std::size_t align : {0u, 1u, 7u, 32u, 61u}) {
      if (align + n > buf.size()) continue;
      const std::uint64_t seed = rng();
      for (std::uint64_t s : {std::uint64_t{0}, seed}) {
        ASSERT_EQ(sluice::pack::xxh3_64_seeded(buf.data() + align, n, s), XXH3_64bits_withSeed(buf.data() + align, n, s))
            << "length " << n << " alignment " << align << " seed " << s;
      }
    }
  }
}
