// `sluice convert IN.gguf OUT.sluice`: build the streaming pack of a GGUF model.
#include <CLI/CLI.hpp>
#include <chrono>
#include <fmt/format.h>
#include <iostream>
#include <stdexcept>

#include "common/units.hpp"
#include "model/convert.hpp"
#include "model/convert_policy.hpp"
#include "tools/cli_util.hpp"
#include "tools/commands.hpp"

namespace sluice {
namespace {

struct ConvertOptions {
  std::string input, output, compress = "auto";
  std::string frame = "1MiB";
  double min_saving = 0.05;
  std::string experts = "apart";
  // auto's cost model; 0: measured at convert time.
  double disk_gbps = 0, decode_gbps = 0;
  unsigned decode_cores = 0;
};

pack::WriterOptions writer_options(const ConvertOptions& o) {
  pack::WriterOptions w;
  w.min_saving = o.min_saving;
  auto frame = parse_bytes(o.frame);
  if (!frame || *frame == 0 || *frame > 64 * MiB) throw CLI::ValidationError("--frame", "expected a size up to 64MiB");
  w.frame_bytes = static_cast<std::uint32_t>(*frame);
  if (o.compress == "none") {
    w.compress = pack::WriterOptions::Compress::none;
  } else if (o.compress == "auto") {
    w.compress = pack::WriterOptions::Compress::auto_;
  } else if (o.compress.rfind("zstd", 0) == 0) {
    w.compress = pack::WriterOptions::Compress::zstd;
    if (o.compress.size() > 5 && o.compress[4] == ':') {
      const std::string level = o.compress.substr(5);
      std::size_t used = 0;
      try {
        w.zstd_level = std::stoi(level, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != level.size()) throw CLI::ValidationError("--compress", "zstd:LEVEL needs an integer level, got '" + level + "'");
    }
  } else {
    throw CLI::ValidationError("--compress", "expected auto, none, zstd or zstd:LEVEL, got '" + o.compress + "'");
  }
  if (o.experts != "apart" && o.experts != "whole") throw CLI::ValidationError("--experts", "expected apart or whole, got '" + o.experts + "'");
  w.expert_extents = o.experts == "apart";
  return w;
}

void convert(const ConvertOptions& o) {
  auto started = std::chrono::steady_clock::now();
  pack::WriterOptions w = writer_options(o);
  if (w.compress == pack::WriterOptions::Compress::auto_) {
    const CompressionPlan plan = plan_compression(o.input, w, {o.disk_gbps * 1e9, o.decode_gbps * 1e9, o.decode_cores});
    std::cout << format_compression_plan(plan) << std::flush;
  }
  ConvertStats s = convert_gguf_to_pack(o.input, o.output, w, [](std::size_t done, std::size_t total) {
    std::cerr << fmt::format("\rconvert: extent {}/{}", done, total) << std::flush;
  });
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::cerr << '\n';
  std::cout << fmt::format("{} -> {}: {} tensors in {} extents, {} raw -> {} file ({} raw frames, {} zstd frames) in {:.1f} s\n",
                           o.input, o.output, s.tensors, s.extents, format_bytes(s.raw_bytes), format_bytes(s.file_bytes),
                           s.frames_raw, s.frames_zstd, seconds);
}

}  // namespace

void add_convert_command(CLI::App& app) {
  auto o = std::make_shared<ConvertOptions>();
  CLI::App* cmd = app.add_subcommand("convert", "Convert a GGUF model into a .sluice pack built for streaming.");
  cmd->add_option("input", o->input, "Input GGUF file")->required()->check(CLI::ExistingFile);
  cmd->add_option("output", o->output, "Output pack (.sluice)")->required();
  cmd->add_option("--compress", o->compress,
                  "Frame compression: auto (zstd per tensor type and frame only where the read time saved exceeds the decode "
                  "time, and it saves >= --min-saving), none, zstd or zstd:LEVEL")
      ->capture_default_str();
  cmd->add_option("--min-saving", o->min_saving, "auto: least fraction a frame must shrink to stay compressed")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--disk-gbps", o->disk_gbps, "auto: disk read bandwidth in GB/s the pack will stream from (0: measure on the input)")
      ->capture_default_str()
      ->check(finite_number(0.0, 1e6, false, "a bandwidth in GB/s"));
  cmd->add_option("--decode-gbps", o->decode_gbps, "auto: zstd decode GB/s per core (0: measure on samples of each tensor type)")
      ->capture_default_str()
      ->check(finite_number(0.0, 1e6, false, "a throughput in GB/s"));
  cmd->add_option("--decode-cores", o->decode_cores, "auto: cores free to decode at run time (0: half of this machine's)")
      ->capture_default_str()
      ->check(CLI::Range(0u, 4096u));
  cmd->add_option("--experts", o->experts,
                  "Mixture-of-experts layout: apart (each expert one aligned read, pack v2) or whole (with its block, v1)")
      ->capture_default_str();
  cmd->add_option("--frame", o->frame, "Frame size (raw bytes per checksummed frame)")->capture_default_str();
  cmd->callback([o] { convert(*o); });
}

}  // namespace sluice
