// `sluice demo`: the main job until a model runs. Writes a synthetic pack of a few GiB, drops it
// from the page cache, measures the raw O_DIRECT bandwidth of the file, then streams it through
// the prefetcher with a synthetic compute stage and prints how well I/O and compute overlapped.

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <filesystem>
#include <fmt/format.h>
#include <iostream>
#include <stdexcept>

#include "common/disk_space.hpp"
#include "common/memory.hpp"
#include "common/table.hpp"
#include "common/units.hpp"
#include "io/sequential.hpp"
#include "model/pack_reader.hpp"
#include "model/pack_writer.hpp"
#include "prefetch/stream_pass.hpp"
#include "tools/commands.hpp"
#include "tools/cli_util.hpp"

namespace sluice {
namespace {

struct DemoOptions {
  std::string size = "4GiB";
  std::string extent = "64MiB";
  std::string dir;
  double compute_ratio = 1.0;
  unsigned slots = 4;
  unsigned queue_depth = 32;
  std::string io = "auto";
  std::string compress = "none";
  bool keep = false;
};

std::string default_demo_dir() {
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg) return std::string(xdg) + "/sluice";
  if (const char* home = std::getenv("HOME"); home && *home) return std::string(home) + "/.cache/sluice";
  return "sluice-demo";
}

// Reuses a previous demo pack of the same shape; otherwise writes one.
std::string prepare_pack(const DemoOptions& o, std::uint64_t size, std::uint64_t extent) {
  std::filesystem::create_directories(o.dir);
  std::string path = fmt::format("{}/demo-{}-{}-{}.sluice", o.dir, size >> 20, extent >> 20, o.compress);
  std::error_code ec;
  if (std::filesystem::exists(path, ec)) {
    try {
      pack::Pack existing = pack::Pack::open(path);
      std::cerr << fmt::format("reusing demo pack {} ({})\n", path, format_bytes(existing.file_size()));
      return path;
    } catch (const pack::PackError& e) {
      std::cerr << fmt::format("rewriting demo pack: {}\n", e.what());
    }
  }
  if (const auto free_bytes = free_disk_bytes(o.dir); free_bytes && *free_bytes < size + 256 * MiB) {
    throw std::runtime_error(fmt::format("sluice demo: {} has {} free, the demo pack needs {} (use --dir or --size)",
                                         o.dir, format_bytes(*free_bytes), format_bytes(size)));
  }
  std::cerr << fmt::format("writing demo pack {} ({} in {} extents; once)...\n", path, format_bytes(size),
                           (size + extent - 1) / extent);
  pack::WriterOptions writer;
  writer.compress = parse_compress(o.compress);
  auto started = std::chrono::steady_clock::now();
  // 0.4 compressible: roughly what zstd finds in 4-bit weights, so zstd has real work.
  pack::write_synthetic_pack(path, size, extent, writer, /*seed=*/42, /*compressible_fraction=*/0.4);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::cerr << fmt::format("  wrote {} in {:.1f} s\n", format_bytes(size), seconds);
  return path;
}

std::string pct(std::chrono::nanoseconds part, std::chrono::nanoseconds whole) {
  return whole.count() > 0 ? fmt::format("{:.0f}%", 100.0 * double(part.count()) / double(whole.count())) : "-";
}

void run_demo(const DemoOptions& o) {
  auto size = parse_size_option("--size", o.size);
  auto extent = parse_size_option("--extent", o.extent);
  io::BackendOptions io{parse_backend(o.io), true, o.queue_depth};
  std::string path = prepare_pack(o, size, extent);
  // The pack is gigabytes of a user's cache: gone at the end, whatever the end, unless --keep.
  struct RemoveAtEnd {
    const std::string& path;
    bool keep;
    ~RemoveAtEnd() {
      std::error_code ec;
      const auto bytes = std::filesystem::file_size(path, ec);
      if (keep) {
        std::cerr << fmt::format("the demo pack stays at {} ({}) for the next run; delete it when done\n", path,
                                 format_bytes(ec ? 0 : bytes));
      } else if (std::filesystem::remove(path, ec)) {
        std::cerr << fmt::format("removed the demo pack {} ({}); --keep keeps it for the next run\n", path,
                                 format_bytes(bytes));
      }
    }
  } remove_at_end{path, o.keep};
  pack::Pack pack = pack::Pack::open(path);

  if (!io::drop_file_cache(path)) std::cerr << "warning: could not drop the pack from the page cache\n";
  std::cerr << "measuring raw O_DIRECT bandwidth of the file...\n";
  auto raw = io::read_file_sequential(path, io, 1u << 20);
  if (!raw) throw std::runtime_error("sluice demo: " + raw.error().message);
  double raw_gbps = raw.value().gbps();

  // The synthetic compute costs `ratio` x the time the disk needs for the same bytes.
  double seconds_per_byte = o.compute_ratio / (raw_gbps * 1e9);
  prefetch::PrefetchOptions options;
  options.slots = o.slots;
  options.io = io;
  std::vector<std::uint32_t> plan(pack.extents().size());
  for (std::uint32_t i = 0; i < plan.size(); ++i) plan[i] = i;

  if (!io::drop_file_cache(path)) std::cerr << "warning: could not drop the pack from the page cache\n";
  std::cerr << fmt::format("streaming {} extents through a {}-slot ring with compute = {:.2f} x I/O time...\n",
                           plan.size(), o.slots, o.compute_ratio);
  reset_peak_rss();
  std::uint64_t rss_before = current_rss_bytes();
  prefetch::Prefetcher prefetcher(path, pack.extents(), plan, options);
  prefetch::SyntheticCompute compute(seconds_per_byte);
  auto pass = prefetch::stream_pass(prefetcher, std::ref(compute));
  if (!pass) throw std::runtime_error("sluice demo: " + pass.error().message);
  const prefetch::PassStats& p = pass.value();

  Table table({"stage", "bytes", "seconds", "GB/s", "vs raw", "io busy", "decode busy", "compute busy", "overlap"});
  table.add_row({"raw O_DIRECT read", format_bytes(raw.value().bytes),
                 fmt::format("{:.2f}", std::chrono::duration<double>(raw.value().wall).count()),
                 fmt::format("{:.2f}", raw_gbps), "100%", "100%", "-", "-", "-"});
  table.add_row({"prefetch + compute", format_bytes(p.bytes_read), fmt::format("{:.2f}", p.seconds()),
                 fmt::format("{:.2f}", p.read_gbps()), fmt::format("{:.0f}%", 100.0 * p.read_gbps() / raw_gbps),
                 pct(p.io_busy, p.wall), pct(p.decode_busy, p.wall), pct(p.compute_busy, p.wall),
                 fmt::format("{:.3f}", p.overlap())});
  std::cout << fmt::format("\nsluice demo: {} ({} backend{}), ring {} ({} slots), peak RSS +{}\n\n", path,
                           prefetcher.backend_name(), prefetcher.io_note().empty() ? "" : "; " + prefetcher.io_note(),
                           format_bytes(prefetcher.ring_bytes()), o.slots,
                           format_bytes(peak_rss_bytes() > rss_before ? peak_rss_bytes() - rss_before : 0));
  table.print(std::cout);
  std::cout << fmt::format(
      "\noverlap = wall / max(io busy, compute busy) = {:.3f}: 1.000 means disk and compute fully overlapped,\n"
      "2.000 would mean they ran one after the other. Overlap efficiency: {:.1f}%.\n",
      p.overlap(), p.overlap() > 0 ? 100.0 / p.overlap() : 0.0);
}

}  // namespace

void add_demo_command(CLI::App& app) {
  auto options = std::make_shared<DemoOptions>();
  options->dir = default_demo_dir();
  CLI::App* cmd = app.add_subcommand(
      "demo",
      "Stream a synthetic multi-GiB pack through the prefetcher with a synthetic compute stage and report\n"
      "achieved bandwidth vs the raw O_DIRECT bandwidth of the same file, and I/O/compute overlap.");
  cmd->add_option("--size", options->size, "Size of the demo pack (e.g. 4GiB, 512MiB)")->capture_default_str();
  cmd->add_option("--extent", options->extent, "Extent size: the unit streamed (like one transformer block)")
      ->capture_default_str();
  cmd->add_option("--dir", options->dir, "Where the demo pack is written")->capture_default_str();
  cmd->add_flag("--keep", options->keep, "Keep the demo pack for the next run (by default it is removed at the end)");
  cmd->add_option("--compute", options->compute_ratio, "Synthetic compute cost per extent, as a multiple of its I/O time")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 100.0));
  cmd->add_option("--slots", options->slots, "Ring depth (extents read ahead)")->capture_default_str()->check(CLI::Range(1, 1024));
  cmd->add_option("--queue-depth", options->queue_depth, "Reads in flight")->capture_default_str()->check(CLI::Range(1, 4096));
  cmd->add_option("--io", options->io, "I/O backend: auto, uring or pread")->capture_default_str()
      ->check(CLI::IsMember({"auto", "uring", "pread"}));
  cmd->add_option("--compress", options->compress, "Frame compression of the demo pack: none, auto or zstd")
      ->capture_default_str()
      ->check(CLI::IsMember({"none", "auto", "zstd"}));
  cmd->callback([options] { run_demo(*options); });
}

}  // namespace sluice
