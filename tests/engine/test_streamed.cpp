// The streamed forward pass (blocks read through the prefetcher every pass) gives bit-identical
// logits to the in-RAM pass, for every supported weight type, across several passes that reuse
// the ring.
#include <gtest/gtest.h>

#include <cstring>
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

#include "engine/generate.hpp"
#include "engine/streamed_model.hpp"
#include "model/convert.hpp"
#include "common/trace.hpp"
#include "tests/support/small_llama.hpp"
#include "tests/support/streamed_parity.hpp"
#include "tests/support/temp_dir.hpp"
#include "tools/synth.hpp"

namespace sluice {
namespace {


class StreamedParity : public ::testing::TestWithParam<const char*> {};

TEST_P(StreamedParity, LogitsBitIdenticalToInRam) {
  sluice::testing::TempDir dir;
  const SynthOptions synth = sluice::testing::tiny_typed_options(GetParam());
  const std::string gguf = dir.file("m.gguf"), pack_path = dir.file("m.sluice");
  write_synthetic_gguf(gguf, synth);
  pack::WriterOptions writer;
  writer.frame_bytes = 64 * 1024;  // several frames per block, some zstd, some raw
  convert_gguf_to_pack(gguf, pack_path, writer);

  auto in_ram = Model::open(gguf);
  StreamOptions options;
  options.prefetch.slots = 2;  // fewer slots than a pass streams: the ring turns over every pass
  StreamedModel streamed(pack_path, options);
  ASSERT_GT(streamed.streamed_bytes_per_pass(), 0u);

  const std::vector<std::int32_t> prompt = {1, 403, 407, 261, 378};
  sluice::testing::expect_streamed_matches_in_ram(*in_ram, streamed, prompt);
  EXPECT_EQ(streamed.stats().passes, 4u);
}

INSTANTIATE_TEST_SUITE_P(AllTypes, StreamedParity,
                         ::testing::Values("F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K",
                                           "Q4_K", "Q5_K", "Q6_K", "MXFP4"));

}  // namespace
}  // namespace sluice

namespace sluice {
namespace {

TEST(StreamedTrace, TraceParsesWithIoDecompressAndComputeLanes) {
  sluice::testing::TempDir dir;
  const std::string gguf = dir.file("m.gguf"), pack_path = dir.file("s.sluice"), trace_path = dir.file("trace.json");
  SynthOptions synth;
  synth.shape = synth_shape("tiny");
  synth.shape.n_layer = 3;
  synth.type = GgmlType::F16;  // fp16 weights compress, so the decompress lane has work
  synth.vocab_from.clear();
  write_synthetic_gguf(gguf, synth);
  pack::WriterOptions writer;
  writer.compress = pack::WriterOptions::Compress::zstd;
  convert_gguf_to_pack(gguf, pack_path, writer);
  TraceRecorder trace(true);
  StreamOptions options;
  options.prefetch.trace = &trace;
  {
    StreamedModel streamed(pack_path, options);
    Transformer t(streamed.config(), 16, cpu::Threading{});
    std::vector<std::int32_t> prompt = {1, 403, 407};
    std::vector<float> logits;
    streamed.evaluate(t, prompt, 0, false, logits);
  }
  trace.write(trace_path);
  std::ifstream in(trace_path);
  nlohmann::json doc = nlohmann::json::parse(in);
  std::set<std::string> lanes;
  for (const auto& e : doc["traceEvents"]) {
    if (e["ph"] == "M" && e["name"] == "thread_name") lanes.insert(e["args"]["name"].get<std::string>());
  }
  EXPECT_TRUE(lanes.count("io")) << "lanes: " << doc.dump().substr(0, 200);
  EXPECT_TRUE(lanes.count("compute"));
  EXPECT_TRUE(std::any_of(lanes.begin(), lanes.end(), [](const std::string& l) { return l.rfind("decompress", 0) == 0; }));
}

}  // namespace
}  // namespace sluice

namespace sluice {
namespace {

// Where a streamed pass's CPU goes: checksums and zstd counted apart (a raw pack decompresses
// nothing), the process's CPU time counted, and both named in the trace.
TEST(StreamedStats, TheCpuBreakdownCountsChecksumsAndZstdApart) {
  sluice::testing::TempDir dir;
  const std::string gguf = dir.file("m.gguf");
  SynthOptions synth;
  synth.shape = synth_shape("tiny");
  synth.shape.n_layer = 3;
  synth.type = GgmlType::F16;  // fp16 weights compress, so zstd keeps frames
  synth.vocab_from.clear();
  write_synthetic_gguf(gguf, synth);
  for (const auto compress : {pack::WriterOptions::Compress::zstd, pack::WriterOptions::Compress::none}) {
    const bool zstd = compress == pack::WriterOptions::Compress::zstd;
    const std::string pack_path = dir.file(zstd ? "z.sluice" : "r.sluice");
    pack::WriterOptions writer;
    writer.compress = compress;
    convert_gguf_to_pack(gguf, pack_path, writer);
    TraceRecorder trace(true);
    StreamOptions options;
    options.prefetch.trace = &trace;
    StreamStats stats;
    {
      StreamedModel streamed(pack_path, options);
      Transformer t(streamed.config(), 16, cpu::Threading{});
      std::vector<std::int32_t> prompt = {1, 403, 407};
      std::vector<float> logits;
      streamed.evaluate(t, prompt, 0, false, logits);
      stats = streamed.stats();
    }
    EXPECT_GT(stats.verify_busy.count(), 0) << (zstd ? "zstd" : "raw");
    EXPECT_EQ(stats.decode_busy.count() > 0, zstd);
    EXPECT_EQ(stats.copy_busy.count(), 0);  // whole extents are used where they landed
    EXPECT_GT(stats.cpu_seconds, 0.0);
    std::set<std::string> kinds;
    const std::string trace_path = dir.file("trace.json");
    trace.write(trace_path);
    std::ifstream in(trace_path);
    nlohmann::json doc = nlohmann::json::parse(in);
    for (const auto& e : doc["traceEvents"]) {
      if (e["ph"] != "X") continue;
      const std::string name = e["name"].get<std::string>();
      kinds.insert(name.substr(0, name.find(' ')));
    }
    EXPECT_TRUE(kinds.count("verify"));
    EXPECT_EQ(kinds.count("decompress") == 1, zstd);
  }
}

}  // namespace
}  // namespace sluice
