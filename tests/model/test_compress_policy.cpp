// The --compress auto policy: the pure decision (given bandwidths, ratios and cores, edges
// included), the writer applying it per frame and per tensor type, and convert's per-type plan.
// No assertion depends on timing: measured numbers are only checked to be positive and finite.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "model/compress_policy.hpp"
#include "model/convert.hpp"
#include "model/convert_policy.hpp"
#include "model/ggml_types.hpp"
#include "model/pack_reader.hpp"
#include "model/pack_writer.hpp"
#include "tests/model/pack_test_util.hpp"
#include "tools/synth.hpp"

namespace sluice::pack {
namespace {

using testing::partly_zero_bytes;
using testing::TempDir;

constexpr double kGB = 1e9;
constexpr std::uint64_t kRaw = 1000000;

CompressionCost cost(double disk_gbps, double decode_gbps_per_core, unsigned cores, double min_saving = 0.05) {
  return {disk_gbps * kGB, decode_gbps_per_core * kGB, cores, min_saving};
}

TEST(CompressionDecision, SavedAndDecodeTimesFollowTheFormula) {
  // 1 MB shrinking by 10% at 1 GB/s saves 0.1 ms; decoding it at 2 GB/s x 4 cores costs 0.125 ms.
  const CompressionDecision d = decide_compression(kRaw, 900000, cost(1, 2, 4));
  EXPECT_DOUBLE_EQ(d.saved_s, 100000 / (1 * kGB));
  EXPECT_DOUBLE_EQ(d.decode_s, kRaw / (8 * kGB));
  EXPECT_FALSE(d.zstd);
  // The same frame on a disk half as fast: 0.2 ms saved > 0.125 ms decoding.
  EXPECT_TRUE(decide_compression(kRaw, 900000, cost(0.5, 2, 4)).zstd);
  // ... or with twice the cores: 0.1 ms > 0.0625 ms.
  EXPECT_TRUE(decide_compression(kRaw, 900000, cost(1, 2, 8)).zstd);
}

TEST(CompressionDecision, AKQuantSavingDoesNotPayOnAFastDisk) {
  // Gemma 3 270M's embedding: zstd saves ~6%; NVMe at 3 GB/s, decode 1.5 GB/s on 1 free core.
  EXPECT_FALSE(decide_compression(kRaw, 940000, cost(3, 1.5, 1)).zstd);
  // On a 50 MB/s disk (a network share, a USB stick) the same saving pays.
  EXPECT_TRUE(decide_compression(kRaw, 940000, cost(0.05, 1.5, 1)).zstd);
}

TEST(CompressionDecision, TieStaysRaw) {
  // Break-even: saving x decode rate = disk. 25% of 1 MB at 1 GB/s = 0.25 ms = 1 MB at 4 GB/s.
  const CompressionCost at = cost(1, 4, 1, 0.0);
  EXPECT_DOUBLE_EQ(break_even_disk_bytes_per_s(0.25, at), 1 * kGB);
  const CompressionDecision d = decide_compression(kRaw, 750000, at);
  EXPECT_DOUBLE_EQ(d.saved_s, d.decode_s);
  EXPECT_FALSE(d.zstd);
  EXPECT_TRUE(decide_compression(kRaw, 749999, at).zstd);
}

TEST(CompressionDecision, MinSavingIsAFloor) {
  // A very slow disk would take any saving, but 4% is below a 5% floor.
  EXPECT_FALSE(decide_compression(kRaw, 960000, cost(0.001, 1, 1, 0.05)).zstd);
  EXPECT_TRUE(decide_compression(kRaw, 950000, cost(0.001, 1, 1, 0.05)).zstd);
  EXPECT_TRUE(decide_compression(kRaw, 960000, cost(0.001, 1, 1, 0.0)).zstd);
}

TEST(CompressionDecision, DegenerateInputsStayRaw) {
  EXPECT_FALSE(decide_compression(0, 0, cost(0.001, 1, 1, 0)).zstd);             // nothing to read
  EXPECT_FALSE(decide_compression(kRaw, kRaw, cost(0.001, 1, 1, 0)).zstd);       // no saving
  EXPECT_FALSE(decide_compression(kRaw, kRaw + 9, cost(0.001, 1, 1, 0)).zstd);   // zstd grows it
  EXPECT_FALSE(decide_compression(kRaw, 1, cost(0, 1, 1, 0)).zstd);              // disk unknown
  EXPECT_FALSE(decide_compression(kRaw, 1, cost(1, 0, 1, 0)).zstd);              // decode unknown
  EXPECT_FALSE(decide_compression(kRaw, 1, cost(1, 1, 0, 0)).zstd);              // no core
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  EXPECT_FALSE(decide_compression(kRaw, 1, {nan, kGB, 1, 0}).zstd);
  EXPECT_FALSE(decide_compression(kRaw, 1, {inf, kGB, 1, 0}).zstd);
  EXPECT_FALSE(decide_compression(kRaw, 1, {kGB, nan, 1, 0}).zstd);
}

std::size_t zstd_frames(const Pack& pack) {
  std::size_t n = 0;
  for (const ExtentInfo& e : pack.extents()) {
    n += static_cast<std::size_t>(std::count_if(e.frames.begin(), e.frames.end(), [](const FrameInfo& f) { return f.codec == Codec::zstd; }));
  }
  return n;
}

std::size_t frames(const Pack& pack) {
  std::size_t n = 0;
  for (const ExtentInfo& e : pack.extents()) n += e.frames.size();
  return n;
}

TEST(CompressionPolicyWriter, CompressibleDataIsZstdOnASlowDiskAndRawOnAFastOne) {
  TempDir dir;
  WriterOptions options;
  options.frame_bytes = 256 << 10;
  // 90% compressible: a frame saves ~0.9 x 256 KiB. Decode given as 1 GB/s on one core.
  options.cost = cost(0.1, 1, 1);  // 100 MB/s: ~2.4 ms saved per frame against 0.26 ms decoding
  write_synthetic_pack(dir.file("slow"), 4 << 20, 2 << 20, options, 7, 0.9);
  const Pack slow = Pack::open(dir.file("slow"));
  EXPECT_EQ(zstd_frames(slow), frames(slow));
  options.cost = cost(100, 1, 1);  // 100 GB/s: ~2.4 us saved per frame against 0.26 ms decoding
  write_synthetic_pack(dir.file("fast"), 4 << 20, 2 << 20, options, 7, 0.9);
  const Pack fast = Pack::open(dir.file("fast"));
  EXPECT_EQ(zstd_frames(fast), 0u);
  EXPECT_GT(frames(fast), 0u);
  // Without a cost model auto keeps its min_saving rule: the same data is compressed.
  options.cost = {};
  write_synthetic_pack(dir.file("floor"), 4 << 20, 2 << 20, options, 7, 0.9);
  EXPECT_EQ(zstd_frames(Pack::open(dir.file("floor"))), frames(slow));
}

TEST(CompressionPolicyWriter, RawTypesAreNotCompressed) {
  TempDir dir;
  WriterOptions options;
  options.frame_bytes = 64 << 10;
  options.raw_types = {static_cast<std::uint32_t>(GgmlType::F16)};
  const auto data = partly_zero_bytes(4 * options.frame_bytes, 0.9, 11);
  PackWriter writer(dir.file("p"), options);
  writer.begin_extent("e");
  writer.add_tensor("a.f16", static_cast<std::uint32_t>(GgmlType::F16), {data.size() / 2}, data);
  writer.add_tensor("b.f32", static_cast<std::uint32_t>(GgmlType::F32), {data.size() / 4}, data);
  writer.end_extent();
  writer.finish();
  const Pack pack = Pack::open(dir.file("p"));
  const ExtentInfo& e = pack.extents()[0];
  ASSERT_EQ(e.frames.size(), 8u);
  for (std::size_t i = 0; i < 4; ++i) EXPECT_EQ(e.frames[i].codec, Codec::raw) << i;
  for (std::size_t i = 4; i < 8; ++i) EXPECT_EQ(e.frames[i].codec, Codec::zstd) << i;
}

TEST(CompressionMeasure, MeasuredNumbersArePositiveAndFinite) {
  const auto data = partly_zero_bytes(4 << 20, 0.5, 13);
  const ZstdSample z = measure_zstd(data, 1 << 20, 3);
  EXPECT_EQ(z.raw_bytes, data.size());
  EXPECT_GT(z.zstd_bytes, 0u);
  EXPECT_LT(z.zstd_bytes, z.raw_bytes);
  EXPECT_TRUE(std::isfinite(z.decode_bytes_per_s()) && z.decode_bytes_per_s() > 0);
  TempDir dir;
  write_synthetic_pack(dir.file("d"), 2 << 20, 1 << 20, {}, 1, 0.0);
  const double disk = measure_disk_bytes_per_s(dir.file("d"), 1 << 20);
  EXPECT_TRUE(std::isfinite(disk) && disk > 0);
}

}  // namespace
}  // namespace sluice::pack

namespace sluice {
namespace {

TEST(ConvertPolicy, GivenAFastDiskEveryTypeIsRawAndThePackHasNoZstdFrame) {
  pack::testing::TempDir dir;
  SynthOptions o;
  o.shape = SynthShape{64, 2, 4, 2, 256, 128};
  o.type = GgmlType::Q8_0;
  o.embedding_type = GgmlType::F32;
  o.vocab_from.clear();
  const std::string gguf_path = dir.file("m.gguf");
  write_synthetic_gguf(gguf_path, o);
  pack::WriterOptions options;
  options.frame_bytes = 16 << 10;
  // 1 PB/s: no saving pays; decode left to measure (only its sign is checked).
  const CompressionPlan plan = plan_compression(gguf_path, options, {1e15, 0, 2});
  ASSERT_FALSE(plan.types.empty());
  for (const TypePolicy& row : plan.types) {
    EXPECT_GT(row.raw_bytes, 0u) << row.type;
    EXPECT_TRUE(std::isfinite(row.decode_bytes_per_s_per_core) && row.decode_bytes_per_s_per_core > 0) << row.type;
    EXPECT_FALSE(row.decision.zstd) << row.type;
    EXPECT_TRUE(options.raw_types.contains(row.type_id)) << row.type;
  }
  EXPECT_EQ(options.policy_record["types"].size(), plan.types.size());
  EXPECT_NE(format_compression_plan(plan).find("choice"), std::string::npos);
  convert_gguf_to_pack(gguf_path, dir.file("m.sluice"), options);
  EXPECT_EQ(pack::zstd_frames(pack::Pack::open(dir.file("m.sluice"))), 0u);
  // 1 byte/s with no floor: every type zstd shrinks at all is chosen zstd.
  pack::WriterOptions slow_options = options;
  slow_options.min_saving = 0;
  const CompressionPlan slow = plan_compression(gguf_path, slow_options, {1, 1e9, 1});
  for (const TypePolicy& row : slow.types) EXPECT_EQ(row.decision.zstd, row.zstd_ratio > 1.0) << row.type;
}

}  // namespace
}  // namespace sluice
