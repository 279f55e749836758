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
//   PrefetchRawPaired the prefetcher on raw frames with a RawDirect read just before and just
//                   after every pass, so its ratio compares reads seconds apart: this VM's disk
//                   drifts by 1.5x within a run, which skews vs_raw from one RawDirect row
// The Prefetch* rows run twice: on whole 64 MiB extents in a 4-slot ring, and on the extents in
// pieces of 4 MiB in an 8-slot ring (32 MiB), as the engine streams blocks larger than that
// (engine/block_pieces.hpp): the `piece` argument, in MiB (0: whole extents).
// Counters: bytes_per_second, vs_raw (bandwidth / RawDirect's in this run), vs_raw_ring (/
// RawDirectRing's), vs_raw_before / vs_raw_after and raw_before_gbps / raw_after_gbps
// (PrefetchRawPaired: each pass against its neighbouring raw reads, averaged), io_busy,
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
Result<io::SequentialRead> cold_read(const std::string& path, bool direct, std::uint32_t request_bytes,
                                     unsigned ring_slots) {
  io::BackendOptions options = direct ? io::BackendOptions{io::BackendKind::uring, true, 32}
                                      : io::BackendOptions{io::BackendKind::pread, false, 1};
  cold(path);
  return io::read_file_sequential(path, options, request_bytes, 0, std::uint64_t{ring_slots} * config().extent);
}

void sequential_read(benchmark::State& state, bool direct, unsigned ring_slots = 0) {
  std::string path = test_pack(false);
  for (auto _ : state) {
    state.PauseTiming();
    auto r = cold_read(path, direct, static_cast<std::uint32_t>(state.range(0)), ring_slots);
    state.ResumeTiming();
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

// A pack's extents as the prefetcher is given them: whole, or in pieces of `piece_bytes`.
struct StreamPlan {
  std::string path;
  std::vector<pack::ExtentInfo> table;
  std::vector<std::uint32_t> order;
};

StreamPlan stream_plan(bool zstd, std::uint64_t piece_bytes) {
  StreamPlan plan{test_pack(zstd), {}, {}};
  pack::Pack pack = pack::Pack::open(plan.path);
  plan.table = pack.extents();
  for (std::uint32_t i = 0; i < pack.extents().size(); ++i) {
    if (piece_bytes == 0) {
      plan.order.push_back(i);
      continue;
    }
    // As the engine cuts a block: whole frames within a slot of the piece plus a block's slack.
    for (pack::ExtentInfo& piece : prefetch::extent_pieces(pack.extents()[i], piece_bytes + kDirectAlign)) {
      plan.order.push_back(std::uint32_t(plan.table.size()));
      plan.table.push_back(std::move(piece));
    }
  }
  return plan;
}

// One pass from a cold cache; `peak_delta` grows to the pass's peak RSS above the RSS before it.
Result<prefetch::PassStats, prefetch::PrefetchError> cold_pass(const StreamPlan& plan, unsigned slots,
                                                               double seconds_per_byte, std::uint64_t& ring,
                                                               std::uint64_t& peak_delta) {
  cold(plan.path);
  reset_peak_rss();
  std::uint64_t rss_before = current_rss_bytes();
  prefetch::PrefetchOptions options;
  options.slots = slots;
  prefetch::Prefetcher prefetcher(plan.path, plan.table, plan.order, options);
  prefetch::SyntheticCompute compute(seconds_per_byte);
  auto pass = prefetch::stream_pass(prefetcher, seconds_per_byte > 0 ? prefetch::ComputeStage(std::ref(compute))
                                                                     : prefetch::ComputeStage());
  ring = prefetcher.ring_bytes();
  peak_delta = std::max(peak_delta, peak_rss_bytes() > rss_before ? peak_rss_bytes() - rss_before : 0);
  return pass;
}

void add(prefetch::PassStats& total, const prefetch::PassStats& p) {
  total.wall += p.wall;
  total.io_busy += p.io_busy;
  total.decode_busy += p.decode_busy;
  total.compute_busy += p.compute_busy;
  total.bytes_read += p.bytes_read;
}

// One pass's iteration time and bytes, added to `total`; false (the benchmark skipped with the
// prefetcher's error) when the pass failed.
bool record_pass(benchmark::State& state, Result<prefetch::PassStats, prefetch::PrefetchError>& pass,
                 prefetch::PassStats& total) {
  if (!pass) {
    state.SkipWithError(pass.error().message.c_str());
    return false;
  }
  state.SetIterationTime(pass.value().seconds());
  state.SetBytesProcessed(state.bytes_processed() + static_cast<std::int64_t>(pass.value().bytes_read));
  add(total, pass.value());
  return true;
}

void pass_counters(benchmark::State& state, const prefetch::PassStats& total, std::uint64_t ring,
                   std::uint64_t peak_delta) {
  auto seconds = [&](std::chrono::nanoseconds ns) {
    return std::chrono::duration<double>(ns).count() / double(state.iterations());
  };
  state.counters["io_busy"] = seconds(total.io_busy);
  state.counters["decompress_busy"] = seconds(total.decode_busy);
  state.counters["compute_busy"] = seconds(total.compute_busy);
  state.counters["overlap"] = total.overlap();
  state.counters["ring_bytes"] = double(ring);
  state.counters["peak_rss_delta"] = double(peak_delta);
}

// Streams a pack through the prefetcher; compute_ratio x raw I/O time of synthetic compute.
void prefetch_pass(benchmark::State& state, bool zstd, double compute_ratio, std::uint64_t piece_bytes) {
  StreamPlan plan = stream_plan(zstd, piece_bytes);
  if (compute_ratio > 0 && raw_gbps() <= 0) {
    state.SkipWithError("run BM_RawDirect first (it measures the I/O time the compute stage mirrors)");
    return;
  }
  double seconds_per_byte = compute_ratio > 0 ? compute_ratio / (raw_gbps() * 1e9) : 0;
  prefetch::PassStats total;
  std::uint64_t ring = 0, peak_delta = 0;
  for (auto _ : state) {
    auto pass = cold_pass(plan, static_cast<unsigned>(state.range(0)), seconds_per_byte, ring, peak_delta);
    if (!record_pass(state, pass, total)) return;
  }
  pass_counters(state, total, ring, peak_delta);
  if (raw_gbps() > 0) state.counters["vs_raw"] = total.read_gbps() / raw_gbps();
  if (raw_ring_gbps() > 0) state.counters["vs_raw_ring"] = total.read_gbps() / raw_ring_gbps();
}

// Raw frames, each pass between two RawDirect reads of the same file (the one after a pass is
// the one before the next): vs_raw_before / vs_raw_after average each pass's ratio to them.
void BM_PrefetchRawPaired(benchmark::State& state) {
  StreamPlan plan = stream_plan(false, std::uint64_t(state.range(1)) * MiB);
  auto raw = [&]() -> double {
    auto r = cold_read(plan.path, true, 1 << 20, 0);
    if (!r) state.SkipWithError(r.error().message.c_str());
    return r ? r.value().gbps() : 0.0;
  };
  double before = raw(), sum_before = 0, sum_after = 0, ratio_before = 0, ratio_after = 0;
  if (before <= 0) return;
  prefetch::PassStats total;
  std::uint64_t ring = 0, peak_delta = 0;
  for (auto _ : state) {
    auto pass = cold_pass(plan, static_cast<unsigned>(state.range(0)), 0, ring, peak_delta);
    if (!record_pass(state, pass, total)) return;
    state.PauseTiming();
    double after = raw();
    state.ResumeTiming();
    if (after <= 0) return;
    sum_before += before;
    sum_after += after;
    ratio_before += pass.value().read_gbps() / before;
    ratio_after += pass.value().read_gbps() / after;
    before = after;
  }
  pass_counters(state, total, ring, peak_delta);
  double n = double(state.iterations());
  state.counters["raw_before_gbps"] = sum_before / n;
  state.counters["raw_after_gbps"] = sum_after / n;
  state.counters["vs_raw_before"] = ratio_before / n;
  state.counters["vs_raw_after"] = ratio_after / n;
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
// Args: ring slots, piece MiB; three passes, four raw reads.
BENCHMARK(BM_PrefetchRawPaired)->Args({8, 4})->Args({4, 0})->Iterations(3)->UseManualTime()->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
