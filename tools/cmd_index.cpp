// `sluice index MODEL.gguf`: hash every 1 MiB (--chunk-size; 64 KiB for a MoE model) of a GGUF model (every shard of a split one) into
// the sidecar FIRST.gguf.sluice-index that streaming reads are verified against
// (model/gguf_index.hpp); `--verify` checks the model against an existing sidecar instead.
#include <CLI/CLI.hpp>
#include <chrono>
#include <fmt/format.h>
#include <iostream>
#include <memory>
#include <string>

#include "common/units.hpp"
#include "model/gguf_index.hpp"
#include "model/gguf_split.hpp"
#include "tools/cli_util.hpp"
#include "tools/commands.hpp"

namespace sluice {
namespace {

struct IndexOptions {
  std::string model;
  std::string sidecar;  // empty: beside the first shard
  std::string chunk_size;  // empty: 64 KiB for a mixture-of-experts model, else 1 MiB
  bool verify = false;
};

// Experts are read one by one, each rounded out to whole chunks: a small chunk keeps that near
// the slice (gguf::kMoeIndexChunkBytes says why).
bool has_experts(const gguf::ShardSet& set) {
  for (const auto& t : set.tensors()) {
    if (t.name.ends_with("_exps.weight")) return true;
  }
  return false;
}

// Progress lines only for models that take a while to read: under 256 MiB an index takes well
// under a second.
constexpr std::uint64_t kProgressMinBytes = 256 * MiB;


void run_index(const IndexOptions& o) {
  const gguf::ShardSet set = gguf::ShardSet::open(o.model);
  const std::string sidecar = o.sidecar.empty() ? gguf::sidecar_path_for(set.shards().front().path) : o.sidecar;
  const auto started = std::chrono::steady_clock::now();
  if (o.verify) {
    const gguf::GgufIndex index = gguf::GgufIndex::load(sidecar, set);
    const std::vector<std::string> errors = gguf::verify_gguf_files(index, set, 16, progress_printer("verify", kProgressMinBytes));
    for (const std::string& e : errors) std::cout << "MISMATCH " << e << '\n';
    if (!errors.empty()) {
      std::cout << fmt::format("{}: {}{} chunk(s) do not match {}\n", o.model, errors.size() == 16 ? "at least " : "",
                               errors.size(), sidecar);
      throw CLI::RuntimeError(1);
    }
    std::cout << fmt::format("{}: OK, {} shard(s) match {}\n", o.model, set.shards().size(), sidecar);
    return;
  }
  std::uint32_t chunk_bytes = has_experts(set) ? gguf::kMoeIndexChunkBytes : gguf::kIndexChunkBytes;
  if (!o.chunk_size.empty()) {
    const std::uint64_t asked = parse_size_option("--chunk-size", o.chunk_size);
    if (asked < gguf::kMinIndexChunkBytes || asked > gguf::kMaxIndexChunkBytes || (asked & (asked - 1)) != 0) {
      throw CLI::ValidationError("--chunk-size", fmt::format("{} is not a power of two from {} to {}", o.chunk_size,
                                                             format_bytes(gguf::kMinIndexChunkBytes),
                                                             format_bytes(gguf::kMaxIndexChunkBytes)));
    }
    chunk_bytes = std::uint32_t(asked);
  }
  const gguf::IndexStats s = gguf::write_gguf_index(set, sidecar, progress_printer("index", kProgressMinBytes), chunk_bytes);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::cout << fmt::format("{}: {} shard(s), {} in {} chunks of {} -> {} ({}) in {:.1f} s\n", o.model, s.shards,
                           format_bytes(s.bytes_hashed), s.chunks, format_bytes(chunk_bytes), sidecar,
                           format_bytes(s.sidecar_bytes), seconds);
}

}  // namespace

void add_index_command(CLI::App& app) {
  auto o = std::make_shared<IndexOptions>();
  CLI::App* cmd = app.add_subcommand(
      "index",
      "Write a GGUF model's integrity sidecar (MODEL.gguf.sluice-index: XXH3 of every 1 MiB of each shard, 64 KiB for a mixture-of-experts model, with "
      "each file's size, mtime and header hash), against which streaming reads are verified. For a split model give "
      "any shard; the sidecar covers them all and sits beside the first. Re-run after the model file changes.");
  cmd->add_option("MODEL", o->model, "GGUF file, or any shard of a gguf-split model")->required();
  cmd->add_option("-o,--output", o->sidecar, "Sidecar path (default: FIRST_SHARD.sluice-index)");
  cmd->add_option("--chunk-size", o->chunk_size,
                  "Bytes per checksum, a power of two from 4KiB to 8MiB (default: 1MiB; 64KiB for a mixture-of-experts "
                  "model, whose experts are read one by one and each read is rounded out to whole chunks)");
  cmd->add_flag("--verify", o->verify,
                "Check the model against its existing sidecar instead of writing one: reads every byte, reports each "
                "mismatching chunk with shard, tensor and offset, exits 1 if any (or if the sidecar is stale)");
  cmd->callback([o] { run_index(*o); });
}

}  // namespace sluice
