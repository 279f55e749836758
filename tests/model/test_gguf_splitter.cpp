// `sluice split` (model/gguf_splitter.hpp): shards reopen as one ShardSet with the input's
// tensors (names, types, dims, order) and bytes, the metadata where gguf-split puts it, every shard
// within --max-size unless one tensor alone is larger, re-splitting a split set, refusals of
// existing outputs and of outputs that are inputs, and failures (after any shard, on any read of a
// fault sweep) that leave no shard and no temporary file behind.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <stdexcept>

#include <fmt/format.h>

#include "common/units.hpp"
#include "io/fault_backend.hpp"
#include "model/gguf_split.hpp"
#include "model/gguf_splitter.hpp"
#include "tests/model/gguf_split_test_util.hpp"
#include "tests/support/error_of.hpp"

namespace sluice::gguf {
namespace {

using sluice::testing::error_of;
using sluice::testing::expect_words;
using testing::TempDir;
using testing::TestTensor;

std::vector<std::byte> read_range(const std::string& path, std::uint64_t offset, std::uint64_t bytes) {
  std::ifstream in(path, std::ios::binary);
  in.seekg(static_cast<std::streamoff>(offset));
  std::vector<std::byte> out(bytes);
  in.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(bytes));
  EXPECT_EQ(static_cast<std::uint64_t>(in.gcount()), bytes) << path << " at " << offset;
  return out;
}

std::string file_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

// The names in `dir`, sorted.
std::set<std::string> names_in(const std::string& dir) {
  std::set<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) out.insert(e.path().filename().string());
  return out;
}

// The shards hold the input's tensors in its order with the same types, dims and bytes; the
// first holds the input's metadata and the split keys, the others only the split keys.
void expect_same_model(const std::string& input_path, const SplitPlan& plan) {
  const ShardSet in = ShardSet::open(input_path);
  const ShardSet out = ShardSet::open(plan.shards.front().path);
  ASSERT_EQ(out.shards().size(), plan.shards.size());
  ASSERT_EQ(out.tensors().size(), in.tensors().size());
  for (std::size_t i = 0; i < in.tensors().size(); ++i) {
    const ShardTensor& a = in.tensors()[i];
    const ShardTensor& b = out.tensors()[i];
    EXPECT_EQ(a.name, b.name);
    EXPECT_EQ(a.type, b.type) << a.name;
    EXPECT_EQ(a.dims, b.dims) << a.name;
    ASSERT_EQ(a.bytes, b.bytes) << a.name;
    EXPECT_TRUE(read_range(in.shards()[a.shard].path, a.offset, a.bytes) ==
                read_range(out.shards()[b.shard].path, b.offset, b.bytes))
        << "tensor " << a.name << " differs";
  }
  for (std::uint32_t s = 0; s < out.shards().size(); ++s) {
    const File f = File::open_header(out.shards()[s].path);
    EXPECT_EQ(f.alignment(), in.metadata().alignment()) << f.path();
    EXPECT_EQ(f.get_uint(kSplitNoKey), s);
    EXPECT_EQ(f.get_uint(kSplitCountKey), out.shards().size());
    EXPECT_EQ(f.get_uint(kSplitTensorsCountKey), in.tensors().size());
    EXPECT_EQ(f.find(kSplitNoKey)->type, ValueType::u16);
    EXPECT_EQ(f.find(kSplitCountKey)->type, ValueType::u16);
    EXPECT_EQ(f.find(kSplitTensorsCountKey)->type, ValueType::i32);
    EXPECT_EQ(f.file_size(), plan.shards[s].file_bytes) << f.path();
    EXPECT_EQ(f.tensors().size(), plan.shards[s].tensor_count) << f.path();
    std::set<std::string> keys;
    for (const auto& [key, value] : f.metadata()) keys.insert(key);
    if (s == 0) {
      for (const auto& [key, value] : in.metadata().metadata()) {
        if (key == kSplitNoKey || key == kSplitCountKey || key == kSplitTensorsCountKey) continue;
        const Value* v = f.find(key);
        ASSERT_NE(v, nullptr) << key << " missing from the first shard";
        EXPECT_TRUE(*v == value) << key;
      }
    } else {
      keys.erase(std::string(kAlignmentKey));
      EXPECT_EQ(keys, (std::set<std::string>{std::string(kSplitNoKey), std::string(kSplitCountKey),
                                              std::string(kSplitTensorsCountKey)}))
          << f.path();
    }
  }
}

std::vector<TestTensor> model_tensors() { return testing::two_block_model(); }

TEST(GgufSplitter, ShardsReopenAsTheSameModelWithinMaxSize) {
  TempDir dir;
  const std::string input = dir.file("m.gguf");
  testing::write_single(input, model_tensors());
  for (const std::uint64_t max_bytes : {14000u, 20000u, 40000u, 1000000u}) {
    SCOPED_TRACE(fmt::format("max_bytes {}", max_bytes));
    const std::string prefix = dir.file(fmt::format("out{}", max_bytes));
    const SplitPlan plan = split_gguf(input, prefix, {.max_bytes = max_bytes});
    expect_same_model(input, plan);
    for (std::size_t s = 0; s < plan.shards.size(); ++s) {
      const bool oversized = std::find(plan.oversized.begin(), plan.oversized.end(), s) != plan.oversized.end();
      if (oversized) {
        EXPECT_EQ(plan.shards[s].tensor_count, 1u) << plan.shards[s].path;
      } else {
        EXPECT_LE(plan.shards[s].file_bytes, max_bytes) << plan.shards[s].path;
      }
      // A shard is as full as the limit allows: the next tensor would not have fit.
      if (s + 1 < plan.shards.size() && !oversized) {
        const ShardSet set = ShardSet::open(plan.shards.front().path);
        const ShardTensor& next = set.tensors()[plan.shards[s + 1].first_tensor];
        EXPECT_GT(plan.shards[s].file_bytes + align_up(next.bytes, 32), max_bytes) << plan.shards[s].path;
      }
    }
    if (max_bytes == 1000000u) {
      EXPECT_EQ(plan.shards.size(), 1u);
    } else if (max_bytes == 14000u) {
      EXPECT_GE(plan.shards.size(), 5u);
    }
  }
}

TEST(GgufSplitter, KeepsANonDefaultAlignmentOnEveryShard) {
  TempDir dir;
  const std::string input = dir.file("m.gguf");
  Writer w;
  w.set_string("general.architecture", "llama");
  testing::add_test_tensors(w, model_tensors());
  w.write(input, 256);
  const SplitPlan plan = split_gguf(input, dir.file("out"), {.max_tensors = 3});
  ASSERT_EQ(plan.shards.size(), 3u);
  expect_same_model(input, plan);
}

TEST(GgufSplitter, MaxTensorsCutsLikeGgufSplit) {
  TempDir dir;
  const std::string input = dir.file("m.gguf");
  testing::write_single(input, model_tensors());  // 7 tensors
  const SplitPlan plan = split_gguf(input, dir.file("out"), {.max_tensors = 2});
  ASSERT_EQ(plan.shards.size(), 4u);
  EXPECT_EQ(plan.shards[0].path, dir.file("out-00001-of-00004.gguf"));
  for (std::size_t s = 0; s < 4; ++s) EXPECT_EQ(plan.shards[s].tensor_count, s < 3 ? 2u : 1u);
  expect_same_model(input, plan);
  // Both limits: whichever is reached first closes a shard.
  const SplitPlan both = split_gguf(input, dir.file("both"), {.max_bytes = 14000, .max_tensors = 1});
  EXPECT_EQ(both.shards.size(), 7u);
  expect_same_model(input, both);
}

TEST(GgufSplitter, ATensorLargerThanMaxSizeGetsAShardOfItsOwn) {
  TempDir dir;
  const std::string input = dir.file("m.gguf");
  testing::write_single(input, model_tensors());
  // token_embd and output (12000 bytes each) exceed 8000 alone.
  const SplitPlan plan = split_gguf(input, dir.file("out"), {.max_bytes = 8000});
  expect_same_model(input, plan);
  ASSERT_FALSE(plan.oversized.empty());
  for (std::size_t s : plan.oversized) {
    EXPECT_EQ(plan.shards[s].tensor_count, 1u);
    EXPECT_GT(plan.shards[s].file_bytes, 8000u);
  }
  EXPECT_EQ(plan.oversized.front(), 0u);  // token_embd is the first tensor
}

TEST(GgufSplitter, ResplitsASplitModelFromAnyShard) {
  TempDir dir;
  const std::string input = dir.file("m.gguf");
  testing::write_single(input, model_tensors());
  const SplitPlan first = split_gguf(input, dir.file("a"), {.max_tensors = 2});
  // From its third shard, into 3 shards by size: the same model, the old split keys replaced.
  const SplitPlan again = split_gguf(first.shards[2].path, dir.file("b"), {.max_bytes = 30000});
  EXPECT_NE(again.shards.size(), first.shards.size());
  expect_same_model(input, again);
  expect_same_model(first.shards[0].path, again);
}

TEST(GgufSplitter, RefusesExistingShardsUnlessForced) {
  TempDir dir;
  const std::string input = dir.file("m.gguf");
  testing::write_single(input, model_tensors());
  const SplitPlan plan = split_gguf(input, dir.file("out"), {.max_tensors = 3});
  const std::string before = file_text(plan.shards[1].path);
  std::filesystem::remove(plan.shards[0].path);
  std::filesystem::remove(plan.shards[2].path);
  const std::string e = error_of([&] { split_gguf(input, dir.file("out"), {.max_tensors = 3}); });
  expect_words(e, {"1 of the 3 output shard(s) already exist", plan.shards[1].path, "--force"});
  EXPECT_EQ(file_text(plan.shards[1].path), before);
  EXPECT_FALSE(std::filesystem::exists(plan.shards[0].path));  // nothing written
  EXPECT_EQ(names_in(dir.path()).size(), 2u);
  // --force replaces it (here with the same bytes) and writes the rest.
  expect_same_model(input, split_gguf(input, dir.file("out"), {.max_tensors = 3, .force = true}));
}

TEST(GgufSplitter, RefusesToWriteOverItsInputEvenWhenForced) {
  TempDir dir;
  const std::string input = dir.file("m.gguf");
  testing::write_single(input, model_tensors());
  const SplitPlan plan = split_gguf(input, dir.file("out"), {.max_tensors = 3});
  const std::string before = file_text(plan.shards[1].path);
  const std::string e =
      error_of([&] { split_gguf(plan.shards[1].path, dir.file("out"), {.max_tensors = 3, .force = true}); });
  expect_words(e, {"split", "is the input", "refusing"});
  EXPECT_EQ(file_text(plan.shards[1].path), before);
  expect_same_model(input, plan);
}

TEST(GgufSplitter, AFailureAfterAnyShardLeavesNoShard) {
  TempDir dir;
  const std::string input = dir.file("m.gguf");
  testing::write_single(input, model_tensors());
  const std::set<std::string> before = names_in(dir.path());
  for (std::uint32_t fail_at = 0; fail_at < 4; ++fail_at) {
    SplitOptions options{.max_tensors = 2};
    options.after_shard_written = [&](std::uint32_t s) {
      if (s == fail_at) throw std::runtime_error(fmt::format("injected failure after shard {}", s));
    };
    const std::string e = error_of([&] { split_gguf(input, dir.file("out"), options); });
    expect_words(e, {fmt::format("injected failure after shard {}", fail_at)});
    EXPECT_EQ(names_in(dir.path()), before) << "after a failure at shard " << fail_at;
  }
}

TEST(GgufSplitter, AReadFaultAnywhereLeavesNoShard) {
  TempDir dir;
  const std::string input = dir.file("m.gguf");
  testing::write_single(input, model_tensors());
  const std::set<std::string> before = names_in(dir.path());
  bool succeeded = false;
  // Fail the n-th read of the input, n = 1, 2, ... until a run has fewer reads than n.
  for (std::uint64_t n = 1; n < 100 && !succeeded; ++n) {
    SCOPED_TRACE(fmt::format("failing read {}", n));
    io::FaultPlan fault{.fail_op = n, .fail_errno = EIO};
    SplitOptions options{.max_bytes = 20000};
    options.read_wrapper = io::fault_wrapper(fault);
    try {
      const SplitPlan plan = split_gguf(input, dir.file("out"), options);
      succeeded = true;
      expect_same_model(input, plan);
    } catch (const std::exception& e) {
      expect_words(e.what(), {input, "tensor"});
      EXPECT_EQ(names_in(dir.path()), before);
    }
  }
  EXPECT_TRUE(succeeded) << "every run failed: the fault plan never ran out";
}

TEST(GgufSplitter, BadArgumentsAndInputsAreNamedErrors) {
  TempDir dir;
  const std::string input = dir.file("m.gguf");
  testing::write_single(input, model_tensors());
  expect_words(error_of([&] { split_gguf(input, dir.file("out"), {}); }), {"--max-size", "--max-tensors"});
  expect_words(error_of([&] { split_gguf(input, "", {.max_tensors = 1}); }), {"cannot prefix shard names"});
  expect_words(error_of([&] { split_gguf(input, dir.path() + "/", {.max_tensors = 1}); }), {"cannot prefix shard names"});
  expect_words(error_of([&] { split_gguf(dir.file("none.gguf"), dir.file("out"), {.max_tensors = 1}); }),
               {dir.file("none.gguf")});
  {
    std::ofstream(dir.file("text.gguf")) << "not a gguf at all, just some text";
  }
  expect_words(error_of([&] { split_gguf(dir.file("text.gguf"), dir.file("out"), {.max_tensors = 1}); }),
               {dir.file("text.gguf")});
  // A missing output directory: the error names the shard; nothing is left.
  expect_words(error_of([&] { split_gguf(input, dir.file("no/such/dir/out"), {.max_tensors = 3}); }),
               {dir.file("no/such/dir/out-00001-of-00003.gguf")});
  EXPECT_EQ(names_in(dir.path()), (std::set<std::string>{"m.gguf", "text.gguf"}));
}

}  // namespace
}  // namespace sluice::gguf
