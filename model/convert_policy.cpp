// plan_compression: per-type compression choice from samples of the model (convert_policy.hpp).
#include "model/convert_policy.hpp"

#include <algorithm>
#include <cstdlib>
#include <map>
#include <memory>
#include <stdexcept>
#include <thread>

#include <fmt/format.h>

#include "common/units.hpp"
#include "io/reader.hpp"
#include "model/ggml_types.hpp"
#include "model/gguf_split.hpp"

namespace sluice {
namespace {

// Frames sampled per type: enough to average over a tensor's parts (a K-quant's scales differ
// from its codes little across a tensor), few enough that planning takes well under a second.
constexpr std::uint64_t kSampleFramesPerType = 8;
// Disk probe: a short sustained read, like the run's own probe but smaller (convert is not timed).
constexpr std::uint64_t kDiskProbeBytes = 128 * MiB;

struct FreeDeleter {
  void operator()(std::byte* p) const { std::free(p); }
};

}  // namespace

unsigned default_decode_cores() { return std::max(1u, std::thread::hardware_concurrency() / 2); }

CompressionPlan plan_compression(const std::string& gguf_path, pack::WriterOptions& options, const PolicyInputs& inputs) {
  const gguf::ShardSet in = gguf::ShardSet::open(gguf_path);
  io::ReaderOptions read_options;
  read_options.backend.kind = io::BackendKind::pread;
  read_options.backend.queue_depth = 1;
  std::vector<std::unique_ptr<io::Reader>> readers;
  for (const gguf::Shard& shard : in.shards()) readers.push_back(io::Reader::open(shard.path, read_options));

  CompressionPlan plan;
  plan.cost.min_saving = options.min_saving;
  plan.cost.decode_cores = inputs.decode_cores > 0 ? inputs.decode_cores : default_decode_cores();
  plan.cost.disk_bytes_per_s = inputs.disk_bytes_per_s;
  if (plan.cost.disk_bytes_per_s <= 0) {
    plan.cost.disk_bytes_per_s = pack::measure_disk_bytes_per_s(in.shards().front().path, kDiskProbeBytes);
    plan.disk_measured = true;
    if (plan.cost.disk_bytes_per_s <= 0) {
      throw std::runtime_error(fmt::format("convert: {}: could not measure the disk's read bandwidth; give --disk-gbps", gguf_path));
    }
  }

  std::map<std::uint32_t, std::vector<const gguf::ShardTensor*>> by_type;
  for (const auto& t : in.tensors()) by_type[t.type].push_back(&t);

  const std::uint64_t frame = options.frame_bytes;
  // Room for one frame read as whole aligned blocks, whatever its alignment in the file.
  const std::uint64_t buffer_bytes = (frame + 2 * kDirectAlign - 1) / kDirectAlign * kDirectAlign;
  std::unique_ptr<std::byte, FreeDeleter> buffer{static_cast<std::byte*>(std::aligned_alloc(kDirectAlign, buffer_bytes))};
  if (!buffer) throw std::bad_alloc();

  std::uint64_t all_sample_bytes = 0;
  double all_decode_s = 0;
  for (const auto& [type, tensors] : by_type) {
    TypePolicy row;
    row.type_id = type;
    const auto traits = ggml_type_traits(type);
    row.type = traits ? std::string(traits->name) : fmt::format("type{}", type);
    for (const auto* t : tensors) row.raw_bytes += t->bytes;
    // Sample frames at evenly spaced points of the type's bytes laid end to end, each cut at its
    // tensor's end.
    std::vector<std::byte> sample;
    const std::uint64_t frames = std::min<std::uint64_t>(kSampleFramesPerType, (row.raw_bytes + frame - 1) / frame);
    for (std::uint64_t k = 0; k < frames; ++k) {
      std::uint64_t at = row.raw_bytes / frames * k;
      const gguf::ShardTensor* t = nullptr;
      for (const auto* c : tensors) {
        if (at < c->bytes) { t = c; break; }
        at -= c->bytes;
      }
      if (t == nullptr) break;
      const std::uint64_t start = t->offset + at, bytes = std::min(frame, t->bytes - at);
      const std::uint64_t block = start / kDirectAlign * kDirectAlign;
      const auto length = static_cast<std::uint32_t>((start + bytes - block + kDirectAlign - 1) / kDirectAlign * kDirectAlign);
      std::uint64_t got = 0;
      Status status = readers[t->shard]->read_sync(buffer.get(), block, length, &got);
      if (!status) throw std::runtime_error(fmt::format("convert: sampling tensor '{}': {}", t->name, status.error().message));
      if (block + got < start + bytes) {
        throw std::runtime_error(fmt::format("convert: {}: tensor '{}' ends at byte {} but the file ends at {}",
                                             readers[t->shard]->path(), t->name, start + bytes, block + got));
      }
      const std::byte* p = buffer.get() + (start - block);
      sample.insert(sample.end(), p, p + bytes);
    }
    const pack::ZstdSample z = pack::measure_zstd(sample, options.frame_bytes, options.zstd_level);
    row.sample_bytes = z.raw_bytes;
    row.zstd_ratio = z.zstd_bytes > 0 ? double(z.raw_bytes) / double(z.zstd_bytes) : 1.0;
    row.decode_bytes_per_s_per_core =
        inputs.decode_bytes_per_s_per_core > 0 ? inputs.decode_bytes_per_s_per_core : z.decode_bytes_per_s();
    all_sample_bytes += z.raw_bytes;
    all_decode_s += z.decode_s;
    pack::CompressionCost cost = plan.cost;
    cost.decode_bytes_per_s_per_core = row.decode_bytes_per_s_per_core;
    const auto zstd_bytes = static_cast<std::uint64_t>(double(row.raw_bytes) / row.zstd_ratio);
    row.decision = pack::decide_compression(row.raw_bytes, zstd_bytes, cost);
    plan.types.push_back(std::move(row));
  }
  plan.cost.decode_bytes_per_s_per_core =
      inputs.decode_bytes_per_s_per_core > 0 ? inputs.decode_bytes_per_s_per_core
                                             : (all_decode_s > 0 ? double(all_sample_bytes) / all_decode_s : 0.0);
  std::stable_sort(plan.types.begin(), plan.types.end(), [](const TypePolicy& a, const TypePolicy& b) { return a.raw_bytes > b.raw_bytes; });

  options.cost = plan.cost;
  options.raw_types.clear();
  nlohmann::json types = nlohmann::json::array();
  for (const TypePolicy& row : plan.types) {
    if (!row.decision.zstd) options.raw_types.insert(row.type_id);
    types.push_back({{"type", row.type},
                     {"raw_bytes", row.raw_bytes},
                     {"zstd_ratio", row.zstd_ratio},
                     {"decode_bytes_per_s_per_core", row.decode_bytes_per_s_per_core},
                     {"saved_s", row.decision.saved_s},
                     {"decode_s", row.decision.decode_s},
                     {"choice", row.decision.zstd ? "zstd" : "raw"}});
  }
  options.policy_record = {{"rule", "zstd iff saving >= min_saving and (raw-zstd)/disk > raw/(decode per core x cores)"},
                           {"per", "ggml type, then each frame of a zstd type"},
                           {"disk_bytes_per_s", plan.cost.disk_bytes_per_s},
                           {"disk_measured", plan.disk_measured},
                           {"decode_cores", plan.cost.decode_cores},
                           {"min_saving", plan.cost.min_saving},
                           {"types", std::move(types)}};
  return plan;
}

std::string format_compression_plan(const CompressionPlan& plan) {
  std::string out = fmt::format(
      "compression policy (per tensor type): disk {:.4g} GB/s ({}), {} decode core{}, min saving {:.0f}%\n"
      "  {:<6} {:>9} {:>6} {:>12} {:>9} {:>9}  {}\n",
      plan.cost.disk_bytes_per_s / 1e9, plan.disk_measured ? "measured" : "given", plan.cost.decode_cores,
      plan.cost.decode_cores == 1 ? "" : "s", plan.cost.min_saving * 100, "type", "raw MiB", "ratio", "decode GB/s", "saved ms",
      "decode ms", "choice");
  for (const TypePolicy& r : plan.types) {
    out += fmt::format("  {:<6} {:>9.1f} {:>6.3f} {:>12.2f} {:>9.2f} {:>9.2f}  {}\n", r.type, double(r.raw_bytes) / double(MiB),
                       r.zstd_ratio, r.decode_bytes_per_s_per_core / 1e9, r.decision.saved_s * 1e3, r.decision.decode_s * 1e3,
                       r.decision.zstd ? "zstd" : "raw");
  }
  return out;
}

}  // namespace sluice
