// bench_io: how close the prefetcher gets to the disk. On one test file, with a cold page cache
// before every pass, it measures (all in the same run, so ratios are meaningful on a noisy,
// shared machine):
//   RawDirect       io_uring O_DIRECT sequential read of the whole file: the limit
//   RawDirectRing   the same into as much memory as the prefetcher's 4-slot ring, cycled in order
//                   (on a virtual disk the host can fill a few MiB faster than hundreds: README)
//   Buffered        the same through the page cache (pread, 1 MiB requests)
//   PrefetchRaw     the prefetcher streaming the pack's raw frames (verify on)
//   PrefetchZstd    the prefetcher on a zstd-compressed pack of the same raw size
//   PrefetchCompute the prefetcher plus a synthetic compute stage costing `ratio` x the raw I/O
//                   time per extent
// The Prefetch* rows run twice: on whole 64 MiB extents in a 4-slot ring, and on the extents in
// pieces of 4 MiB in an 8-slot ring (32 MiB), as the engine streams blocks larger than that
// (engine/block_pieces.hpp): the `piece` argument, in MiB (0: whole extents).
// Counters: bytes_per_second, vs_raw (bandwidth / RawDirect's in this run), vs_raw_ring (/
// RawDirectRing's), io_busy,
// decompress_busy, compute_busy (seconds), overlap = wall / max(io_busy, compute_busy),
// ring_bytes and peak_rss_delta (bytes above the pre-pass RSS).
//
// Environment: SLUICE_BENCH_DIR (default /var/tmp/sluice-bench), SLUICE_BENCH_BYTES (default
// 4GiB), SLUICE_BENCH_EXTENT (default 64MiB). Test files are made once and reused.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <fmt/format.h>
#include <iostream>

#include "common/memory.hpp"
#include "common/units.hpp"
#include "io/sequential.hpp"
#include "model/pack_reader.hpp"
#include "model/pack_writer.hpp"
#include "prefetch/stream_pass.hpp"

namespace {

using namespace sluice;

struct Config {
  std::string dir = "/var/tmp/sluice-bench";
  std::uint64_t bytes = 4 * GiB;
  std::uint64_t extent = 64 * MiB;
};

Config& config() {
  static Config c = [] {
    Config c;
    if (const char* d = std::getenv("SLUICE_BENCH_DIR"); d && *d) c.dir = d;
    if (const char* b = std::getenv("SLUICE_BENCH_BYTES"); b && *b) c.bytes = parse_bytes(b).value_or(c.bytes);
    if (const char* e = std::getenv("SLUICE_BENCH_EXTENT"); e && *e) c.extent = parse_bytes(e).value_or(c.extent);
    return c;
  }();
  return c;
}

// Writes (once) a pack of config().bytes raw bytes; compressed packs use zstd level 1 so making
// them does not dominate the run.
std::string test_pack(bool zstd) {
  const Config& c = config();
  std::filesystem::create_directories(c.dir);
  std::string path = fmt::format("{}/bench-{}-{}-{}.sluice", c.dir, c.bytes >> 20, c.extent >> 20, zstd ? "zstd" : "raw");
  if (!std::filesystem::exists(path)) {
    std::cerr << "bench_io: writing " << path << " (once)\n";
    pack::WriterOptions options;
    options.compress = zstd ? pack::WriterOptions::Compress::zstd : pack::WriterOptions::Compress::none;
    options.zstd_level = 1;
    pack::write_synthetic_pack(path, c.bytes, c.extent, options, 7, 0.4);
  }
  return path;
}

double& raw_gbps() {
  static double value = 0;
  return value;
}
double& raw_ring_gbps() {
  static double value = 0;
  return value;
}

void cold(const std::string& path) {
  if (!io::drop_file_cache(path)) std::cerr << "bench_io: warning: cannot drop " << path << " from the page cache\n";
}

// One whole-file sequential read per iteration, cold cache; `direct` = io_uring O_DIRECT at queue
// depth 32 (the limit), otherwise pread through the page cache. ring_slots > 0: into that many
// extents' worth of buffers (the prefetcher's ring), not the 32 in flight.
void sequential_read(benchmark::State& state, bool direct, unsigned ring_slots = 0) {
  std::string path = test_pack(false);
  io::BackendOptions options = direct ? io::BackendOptions{io::BackendKind::uring, true, 32}
                                      : io::BackendOptions{io::BackendKind::pread, false, 1};
  for (auto _ : state) {
    state.PauseTiming();
    cold(path);
    state.ResumeTiming();
    auto r = io::read_file_sequential(path, options, static_cast<std::uint32_t>(state.range(0)), 0,
                                      std::uint64_t{ring_slots} * config().extent);
    if (!r) {
      state.SkipWithError(r.error().message.c_str());
      return;
    }
    state.SetIterationTime(std::chrono::duration<double>(r.value().wall).count());
    state.SetBytesProcessed(state.bytes_processed() + static_cast<std::int64_t>(r.value().bytes));
    if (direct && ring_slots > 0) {
      raw_ring_gbps() = r.value().gbps();
      if (raw_gbps() > 0) state.counters["vs_raw"] = r.value().gbps() / raw_gbps();
    } else if (direct) {
      raw_gbps() = r.value().gbps();
      state.counters["io_busy"] = std::chrono::duration<double>(r.value().wall).count();
    } else if (raw_gbps() > 0) {
      state.counters["vs_raw"] = r.value().gbps() / raw_gbps();
    }
  }
  if (!direct) cold(path);  // leave no cached copy for the next benchmark
}

void BM_RawDirect(benchmark::State& state) { sequential_read(state, true); }
void BM_RawDirectRing(benchmark::State& state) { sequential_read(state, true, static_cast<unsigned>(state.range(1))); }
void BM_Buffered(benchmark::State& state) { sequential_read(state, false); }

// Streams a pack through the prefetcher; compute_ratio x raw I/O time of synthetic compute.
void prefetch_pass(benchmark::State& state, bool zstd, double compute_ratio, std::uint64_t piece_bytes) {
  std::string path = test_pack(zstd);
  pack::Pack pack = pack::Pack::open(path);
  std::vector<pack::ExtentInfo> table = pack.extents();
  std::vector<std::uint32_t> plan;
  for (std::uint32_t i = 0; i < pack.extents().size(); ++i) {
    if (piece_bytes == 0) {
      plan.push_back(i);
      continue;
    }
    // As the engine cuts a block: whole frames within a slot of the piece plus a block's slack.
    for (pack::ExtentInfo& piece : prefetch::extent_pieces(pack.extents()[i], piece_bytes + kDirectAlign)) {
      plan.push_back(std::uint32_t(table.size()));
      table.push_back(std::move(piece));
    }
  }
  if (compute_ratio > 0 && raw_gbps() <= 0) {
    state.SkipWithError("run BM_RawDirect first (it measures the I/O time the compute stage mirrors)");
    return;
  }
  prefetch::PrefetchOptions options;
  options.slots = static_cast<unsigned>(state.range(0));
  double seconds_per_byte = compute_ratio > 0 ? compute_ratio / (raw_gbps() * 1e9) : 0;
  prefetch::PassStats total;
  std::uint64_t ring = 0, peak_delta = 0;
  for (auto _ : state) {
    state.PauseTiming();
    cold(path);
    reset_peak_rss();
    std::uint64_t rss_before = current_rss_bytes();
    state.ResumeTiming();
    prefetch::Prefetcher prefetcher(path, table, plan, options);
    prefetch::SyntheticCompute compute(seconds_per_byte);
    auto pass = prefetch::stream_pass(prefetcher, compute_ratio > 0 ? prefetch::ComputeStage(std::ref(compute))
                                                                    : prefetch::ComputeStage());
    if (!pass) {
      state.SkipWithError(pass.error().message.c_str());
      return;
    }
    const prefetch::PassStats& p = pass.value();
    state.SetIterationTime(p.seconds());
    state.SetBytesProcessed(state.bytes_processed() + static_cast<std::int64_t>(p.bytes_read));
    total.wall += p.wall;
    total.io_busy += p.io_busy;
    total.decode_busy += p.decode_busy;
    total.compute_busy += p.compute_busy;
    total.bytes_read += p.bytes_read;
    ring = prefetcher.ring_bytes();
    peak_delta = std::max(peak_delta, peak_rss_bytes() > rss_before ? peak_rss_bytes() - rss_before : 0);
  }
  auto seconds = [&](std::chrono::nanoseconds ns) {
    return std::chrono::duration<double>(ns).count() / double(state.iterations());
  };
  state.counters["io_busy"] = seconds(total.io_busy);
  state.counters["decompress_busy"] = seconds(total.decode_busy);
  state.counters["compute_busy"] = seconds(total.compute_busy);
  state.counters["overlap"] = total.overlap();
  state.counters["ring_bytes"] = double(ring);
  state.counters["peak_rss_delta"] = double(peak_delta);
  if (raw_gbps() > 0) state.counters["vs_raw"] = total.read_gbps() / raw_gbps();
  if (raw_ring_gbps() > 0) state.counters["vs_raw_ring"] = total.read_gbps() / raw_ring_gbps();
}

// Args: ring slots, piece MiB (0: whole extents); PrefetchCompute: slots, compute %, piece MiB.
void BM_PrefetchRaw(benchmark::State& state) { prefetch_pass(state, false, 0, std::uint64_t(state.range(1)) * MiB); }
void BM_PrefetchZstd(benchmark::State& state) { prefetch_pass(state, true, 0, std::uint64_t(state.range(1)) * MiB); }
void BM_PrefetchCompute(benchmark::State& state) {
  prefetch_pass(state, false, double(state.range(1)) / 100.0, std::uint64_t(state.range(2)) * MiB);
}

// One pass per iteration: each pass reads the whole file (GiBs), so a few iterations suffice.
constexpr int kIterations = 2;
BENCHMARK(BM_RawDirect)->Arg(1 << 20)->Iterations(kIterations)->UseManualTime()->Unit(benchmark::kMillisecond);
// Args: request bytes, ring slots (as the prefetch benchmarks' rings).
BENCHMARK(BM_RawDirectRing)->Args({1 << 20, 4})->Iterations(kIterations)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Buffered)->Arg(1 << 20)->Iterations(kIterations)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_PrefetchRaw)->Args({4, 0})->Args({8, 4})->Iterations(kIterations)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_PrefetchZstd)->Args({4, 0})->Args({8, 4})->Iterations(kIterations)->UseManualTime()->Unit(benchmark::kMillisecond);
// Args: ring slots, compute cost in percent of the raw I/O time per extent, piece MiB.
BENCHMARK(BM_PrefetchCompute)->Args({4, 100, 0})->Args({8, 100, 4})->Iterations(kIterations)->UseManualTime()->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
