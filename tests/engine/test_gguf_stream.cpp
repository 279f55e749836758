// A GGUF streamed in place (model/gguf_source.hpp) gives bit-identical logits to the in-RAM pass
// for every supported weight type: without an index sidecar (frames unverified, the prefetcher
// told so) and with one (every frame checked against its chunk's XXH3). A ring of two slots
// turns over every pass.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "engine/generate.hpp"
#include "engine/streamed_model.hpp"
#include "model/gguf_index.hpp"
#include "model/gguf_source.hpp"
#include "tests/model/gguf_split_test_util.hpp"
#include "tests/support/rot_byte.hpp"
#include "tests/support/small_llama.hpp"
#include "tests/support/temp_dir.hpp"
#include "tools/synth.hpp"

namespace sluice {
namespace {

class GgufStreamParity : public ::testing::TestWithParam<const char*> {};

TEST_P(GgufStreamParity, LogitsBitIdenticalToInRam) {
  sluice::testing::TempDir dir;
  const SynthOptions synth = sluice::testing::tiny_typed_options(GetParam());
  const std::string gguf = dir.file("m.gguf");
  write_synthetic_gguf(gguf, synth);
  auto in_ram = Model::open(gguf);
  Transformer a(in_ram->config(), 32, cpu::Threading{});
  const std::vector<std::int32_t> prompt = {1, 403, 407, 261, 378};
  std::vector<float> la;
  evaluate(a, *in_ram, prompt, 0, true, la);

  for (bool indexed : {false, true}) {
    SCOPED_TRACE(indexed ? "with an index sidecar" : "without an index sidecar");
    if (indexed) (void)gguf::write_gguf_index(gguf::ShardSet::open(gguf), gguf::sidecar_path_for(gguf));
    auto source = GgufSource::open(gguf);
    ASSERT_EQ(source->verified(), indexed);
    StreamOptions options;
    options.prefetch.slots = 2;
    options.prefetch.verify = source->verified();
    StreamedModel streamed(std::move(source), options);
    ASSERT_GT(streamed.streamed_bytes_per_pass(), 0u);
    Transformer b(streamed.config(), 32, cpu::Threading{});
    std::vector<float> lb, ra = la;
    streamed.evaluate(b, prompt, 0, true, lb);
    ASSERT_EQ(ra.size(), lb.size());
    ASSERT_EQ(std::memcmp(ra.data(), lb.data(), ra.size() * sizeof(float)), 0) << "prefill logits differ";
    Transformer a2(in_ram->config(), 32, cpu::Threading{});
    evaluate(a2, *in_ram, prompt, 0, true, ra);
    for (std::int32_t step = 0; step < 3; ++step) {
      std::int32_t token = argmax(std::span(ra).last(std::size_t(in_ram->config().n_vocab)));
      evaluate(a2, *in_ram, std::span(&token, 1), std::int64_t(prompt.size()) + step, false, ra);
      streamed.evaluate(b, std::span(&token, 1), std::int64_t(prompt.size()) + step, false, lb);
      ASSERT_EQ(std::memcmp(ra.data(), lb.data(), ra.size() * sizeof(float)), 0) << "decode step " << step;
    }
    EXPECT_EQ(streamed.stats().passes, 4u);
  }
}

// A byte rotted after indexing (mtime kept, so the sidecar still loads) stops the streamed pass
// with a checksum error naming the file; the in-place read never hands bad weights to compute.
TEST(GgufStream, ARottenByteStopsThePassWithANamedChecksumError) {
  sluice::testing::TempDir dir;
  SynthOptions synth;
  // ~3.5 MiB of Q8_0 blocks: the chunk rotted in blk.2 holds only block data, which only the
  // prefetcher reads (its frame check, not a load-time read, must catch it).
  synth.shape = SynthShape{256, 4, 8, 4, 768, 128};
  synth.type = GgmlType::Q8_0;
  synth.vocab_from.clear();
  const std::string gguf = dir.file("m.gguf");
  write_synthetic_gguf(gguf, synth);
  (void)gguf::write_gguf_index(gguf::ShardSet::open(gguf), gguf::sidecar_path_for(gguf));
  const gguf::ShardSet set = gguf::ShardSet::open(gguf);
  const std::uint64_t bad = set.find_tensor("blk.2.ffn_down.weight")->offset + 7;
  sluice::testing::rot_byte(gguf, bad, std::byte{0x80});
  auto source = GgufSource::open(gguf);
  ASSERT_TRUE(source->verified());
  StreamOptions options;
  options.prefetch.slots = 2;
  StreamedModel streamed(std::move(source), options);
  Transformer b(streamed.config(), 32, cpu::Threading{});
  const std::vector<std::int32_t> prompt = {1, 403, 407};
  std::vector<float> logits;
  try {
    streamed.evaluate(b, prompt, 0, true, logits);
    FAIL() << "a rotten byte was streamed without an error";
  } catch (const Exception& e) {
    EXPECT_EQ(e.kind(), ErrorKind::checksum) << e.what();
    EXPECT_NE(std::string(e.what()).find(gguf), std::string::npos) << e.what();
    std::printf("error: %s\n", e.what());
  }
}

// A 3-shard split (cut as gguf-split cuts, blocks spanning shards) streams from any shard's name
// with logits bit-identical to the unsplit file streamed and to the in-RAM pass: each unit's
// ranges are read from their own shard, one reader per file, with and without an index.
class GgufSplitStreamParity : public ::testing::TestWithParam<const char*> {};

TEST_P(GgufSplitStreamParity, LogitsBitIdenticalToUnsplitAndInRam) {
  sluice::testing::TempDir dir;
  const SynthOptions synth = sluice::testing::tiny_typed_options(GetParam());
  const std::string gguf = dir.file("m.gguf");
  write_synthetic_gguf(gguf, synth);
  const gguf::File whole = gguf::File::open(gguf);
  const std::vector<std::string> shards = gguf::testing::split_file(whole, dir.file("s"), 3);
  {  // the cut puts some block in two shards: one unit read from two files
    auto split = GgufSource::open(shards[0]);
    bool spans_shards = false;
    for (const ReadUnit& u : split->units()) {
      spans_shards |= u.ranges.size() > 1 && u.ranges.front().file != u.ranges.back().file;
    }
    ASSERT_TRUE(spans_shards);
  }
  auto in_ram = Model::open(gguf);
  const std::vector<std::int32_t> prompt = {1, 403, 407, 261, 378};
  std::vector<float> expected;
  {
    Transformer a(in_ram->config(), 32, cpu::Threading{});
    evaluate(a, *in_ram, prompt, 0, true, expected);
  }
  auto streamed_logits = [&](const std::string& path, bool want_verified) {
    auto source = GgufSource::open(path);
    EXPECT_EQ(source->verified(), want_verified);
    StreamOptions options;
    options.prefetch.slots = 2;
    options.prefetch.verify = source->verified();
    options.stream_head = true;  // the head's pieces through the ring too, each from its shard
    options.embed_on_demand = true;
    StreamedModel streamed(std::move(source), options);
    Transformer b(streamed.config(), 32, cpu::Threading{});
    std::vector<float> logits;
    streamed.evaluate(b, prompt, 0, true, logits);
    return logits;
  };
  for (bool indexed : {false, true}) {
    SCOPED_TRACE(indexed ? "with index sidecars" : "without index sidecars");
    if (indexed) {
      (void)gguf::write_gguf_index(gguf::ShardSet::open(gguf), gguf::sidecar_path_for(gguf));
      (void)gguf::write_gguf_index(gguf::ShardSet::open(shards[0]), gguf::sidecar_path_for(shards[0]));
    }
    const std::vector<float> unsplit = streamed_logits(gguf, indexed);
    ASSERT_EQ(unsplit.size(), expected.size());
    ASSERT_EQ(std::memcmp(unsplit.data(), expected.data(), expected.size() * sizeof(float)), 0) << "unsplit differs from RAM";
    for (const std::string& shard : shards) {
      const std::vector<float> split = streamed_logits(shard, indexed);
      ASSERT_EQ(split.size(), expected.size());
      ASSERT_EQ(std::memcmp(split.data(), expected.data(), expected.size() * sizeof(float)), 0) << "split via " << shard;
    }
  }
}

// The 14 weight types sluice computes, on single files and on 3-shard splits.
const auto kAllTypes = ::testing::Values("F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K",
                                         "Q5_K", "Q6_K", "MXFP4");
INSTANTIATE_TEST_SUITE_P(AllTypes, GgufSplitStreamParity, kAllTypes);
INSTANTIATE_TEST_SUITE_P(AllTypes, GgufStreamParity, kAllTypes);

}  // namespace
}  // namespace sluice
