// bench_overlap: how well the streaming engine hides disk reads behind real compute. A synthetic
// Llama pack (Q4_0 matrices) streams block by block from disk (O_DIRECT, so every pass reads the
// device) through StreamedModel on every decode pass, over a grid of
//   batch  B in {1, 4, 16}   sequences decoded together (one token each per pass): the same
//                            bytes serve B tokens, so compute per pass grows with B, I/O does not
//   zstd   0 | 1 | 2         raw frames; zstd frames (less to read, decompression to do); or what
//                            `convert --compress auto`'s policy picks for this disk and CPU (its
//                            per-type table is printed). Random synthetic weights barely
//                            compress, so the label counts the block frames actually stored zstd
//                            (0 means zstd runs repeat raw)
//   slots  2 | 4             ring depth: extents read ahead of the block being computed
// Each run prefills B sequences with an 8-token prompt and decodes one warm-up pass, untimed,
// then times decode passes (one Batch holding one token of every sequence). The ring is let fill
// (reader idle) before the first timed pass and after the last, so the I/O counters cover
// exactly the timed passes' reads; the reads the first pass finds done are charged to it, so
// pass_s is the steady-state pass time.
//
// Counters, averaged per pass: pass_s (wall seconds), io_busy_s, decode_busy_s (decompression),
// compute_busy_s, wait_s (compute blocked on the ring), overlap = wall / max(io_busy,
// compute_busy) (1.0: the smaller of the two is completely hidden; 2.0: fully serialised),
// tokens_per_second = B / pass_s, read_GBps = bytes streamed / pass_s / 1e9, bytes_per_token
// = bytes streamed per pass / B. Expect tokens_per_second to grow with B while I/O dominates,
// and overlap near 1 whenever one of io_busy and compute_busy dominates the other.
//
// Environment: SLUICE_BENCH_DIR (default /var/tmp/sluice-bench), SLUICE_OVERLAP_SHAPE (a
// synth_shape name, default "1b": 16 blocks of ~34 MiB, a ~0.55 GB pack; larger shapes make
// files of their full size), SLUICE_OVERLAP_MODEL (a real GGUF instead of the synthetic one:
// real weights, whose K-quant and Q8_0 bytes compress differently from random ones). The GGUF
// and the packs are made once and reused. The synthetic model's vocabulary comes from
// stories260K.gguf; without it (and without SLUICE_OVERLAP_MODEL) the benchmark prints SKIPPED.
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <fmt/format.h>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <thread>
#include <utility>

#include "cache/kv_cache.hpp"
#include "engine/forward.hpp"
#include "engine/sampling.hpp"
#include "engine/streamed_model.hpp"
#include "model/tensor_names.hpp"
#include "engine/transformer.hpp"
#include "io/sequential.hpp"
#include "model/convert.hpp"
#include "model/convert_policy.hpp"
#include "tools/synth.hpp"

namespace {

using namespace sluice;
using Clock = std::chrono::steady_clock;

const char* kVocab = SLUICE_SHARED_MODELS "/stories260K.gguf";

// Prompt tokens per sequence: enough that attention reads a few cached positions, few enough
// that prefill stays a small part of the run.
constexpr std::int64_t kPromptTokens = 8;
// Context per sequence: prompt + warm-up + timed passes, with room to spare. Limits the KV cache
// to 16 sequences x 64 positions (a few MiB at 1b).
constexpr std::int64_t kContext = 64;
// Each pass reads the whole pack (hundreds of MB from disk), so a few passes per run suffice;
// five keep the per-run noise of a shared disk visible but small.
constexpr int kIterations = 5;

struct Config {
  std::string dir = "/var/tmp/sluice-bench";
  std::string shape = "1b";
  std::string model;  // a real GGUF, or empty for the synthetic `shape`
  // What names the packs and labels: the model's file stem, or the shape.
  std::string tag() const { return model.empty() ? shape + "-q4_0" : std::filesystem::path(model).stem().string(); }
};

enum class Frames { raw = 0, zstd = 1, policy = 2 };
const char* frames_name(Frames f) { return f == Frames::raw ? "raw" : f == Frames::zstd ? "zstd" : "auto"; }

Config& config() {
  static Config c = [] {
    Config c;
    if (const char* d = std::getenv("SLUICE_BENCH_DIR"); d && *d) c.dir = d;
    if (const char* s = std::getenv("SLUICE_OVERLAP_SHAPE"); s && *s) c.shape = s;
    if (const char* m = std::getenv("SLUICE_OVERLAP_MODEL"); m && *m) c.model = m;
    return c;
  }();
  return c;
}

// Writes (once) the synthetic GGUF and its packs; files appear under their final name only when
// complete (written to a .tmp name, then renamed), so an interrupted run is not reused. The
// policy pack keeps its decision table beside it (.policy.txt), printed once per run.
std::string test_pack(Frames frames) {
  const Config& c = config();
  std::filesystem::create_directories(c.dir);
  std::string gguf = c.model;
  if (gguf.empty()) {
    gguf = fmt::format("{}/overlap-{}-q4_0.gguf", c.dir, c.shape);
    if (!std::filesystem::exists(gguf)) {
      std::cerr << "bench_overlap: writing " << gguf << " (once)\n";
      SynthOptions synth;
      synth.shape = synth_shape(c.shape);
      synth.type = GgmlType::Q4_0;
      synth.vocab_from = kVocab;
      write_synthetic_gguf(gguf + ".tmp", synth);
      std::filesystem::rename(gguf + ".tmp", gguf);
    }
  }
  const std::string path = fmt::format("{}/overlap-{}-{}.sluice", c.dir, c.tag(), frames_name(frames));
  const std::string table = path + ".policy.txt";
  if (!std::filesystem::exists(path)) {
    std::cerr << "bench_overlap: writing " << path << " (once)\n";
    pack::WriterOptions options;
    if (frames == Frames::policy) {
      const CompressionPlan plan = plan_compression(gguf, options, PolicyInputs{});
      std::ofstream(table) << format_compression_plan(plan);
    } else {
      options.compress = frames == Frames::zstd ? pack::WriterOptions::Compress::zstd : pack::WriterOptions::Compress::none;
    }
    convert_gguf_to_pack(gguf, path + ".tmp", options);
    std::filesystem::rename(path + ".tmp", path);
  }
  static bool table_printed = false;  // once per run, not once per benchmark case
  if (frames == Frames::policy && !std::exchange(table_printed, true)) {
    std::ifstream in(table);
    std::cerr << "bench_overlap: the policy's choice for " << path << ":\n" << in.rdbuf();
  }
  return path;
}

double seconds(std::chrono::nanoseconds ns) { return std::chrono::duration<double>(ns).count(); }

// Waits until the prefetcher has read all it can (the ring is full and the reader idle, so
// io_busy is up to date); returns how long reads went on after the call. Idle = no byte arrived
// for kQuietTime; gives up after kSettleLimit (a warning: the I/O counters may then be short).
std::chrono::nanoseconds settle(const StreamedModel& model) {
  // One 1 MiB read takes well under a millisecond at NVMe speeds; 50 ms without one is idle.
  constexpr auto kQuietTime = std::chrono::milliseconds(50);
  constexpr auto kSettleLimit = std::chrono::seconds(10);
  const auto called = Clock::now();
  auto last_change = called;
  std::uint64_t bytes = model.stats().bytes_streamed;
  for (;;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    const auto now = Clock::now();
    if (const std::uint64_t b = model.stats().bytes_streamed; b != bytes) {
      bytes = b;
      last_change = now;
    } else if (now - last_change >= kQuietTime) {
      break;
    }
    if (now - called >= kSettleLimit) {
      std::cerr << "bench_overlap: warning: reads still arriving after " << kSettleLimit.count() << " s\n";
      break;
    }
  }
  return last_change - called;
}

// Args: batch (sequences), frames (0 raw, 1 zstd, 2 the policy's choice), ring slots.
void BM_StreamDecode(benchmark::State& state) {
  const auto n_seq = static_cast<std::int32_t>(state.range(0));
  const auto frames = static_cast<Frames>(state.range(1));
  std::unique_ptr<StreamedModel> model;
  std::unique_ptr<Transformer> transformer;
  std::int64_t n_vocab = 0;
  try {
    const std::string path = test_pack(frames);
    StreamOptions options;
    options.prefetch.slots = static_cast<unsigned>(state.range(2));
    model = std::make_unique<StreamedModel>(path, options);
    const ModelConfig& c = model->config();
    n_vocab = c.n_vocab;
    cache::KvShape shape{c.n_layer, c.n_head_kv * c.head_dim, kContext, n_seq, cpu::KvType::f16};
    transformer = std::make_unique<Transformer>(c, cache::make_resident_kv_cache(shape), cpu::Threading{});
    if (!io::drop_file_cache(path)) std::cerr << "bench_overlap: warning: cannot drop " << path << " from the page cache\n";
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
    return;
  }

  // The batch for the next pass: one token per sequence at `pos`, the greedy pick from `logits`
  // (one row per sequence, in sequence order).
  std::vector<float> logits;
  std::vector<std::int32_t> next(static_cast<std::size_t>(n_seq));
  Batch batch;
  std::int64_t pos = kPromptTokens;
  auto next_batch = [&] {
    for (std::int32_t s = 0; s < n_seq; ++s) {
      next[std::size_t(s)] = argmax(std::span<const float>(logits).subspan(std::size_t(s) * std::size_t(n_vocab), std::size_t(n_vocab)));
    }
    batch.clear();
    for (std::int32_t s = 0; s < n_seq; ++s) batch.add(s, pos, std::span(&next[std::size_t(s)], 1), true);
  };

  // Untimed: prefill every sequence (one batch), then one decode pass, so the timed passes start
  // with the ring in its steady state.
  try {
    for (std::int32_t s = 0; s < n_seq; ++s) {
      std::vector<std::int32_t> prompt(kPromptTokens);
      for (std::int64_t i = 0; i < kPromptTokens; ++i) prompt[std::size_t(i)] = std::int32_t(10 + i + s);
      batch.add(s, 0, prompt, true);
    }
    model->forward(*transformer, batch, logits);
    next_batch();
    model->forward(*transformer, batch, logits);
    pos += 1;
    next_batch();
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
    return;
  }

  // The reader credits io_busy when it goes idle, not while reads are in flight, so exact I/O
  // deltas need idle points: let the ring fill before the first timed pass and after the last.
  // The I/O the first pass finds already done (`head`) is charged to it, so every pass costs what
  // a pass costs in steady state, and the window [start, end] holds exactly the timed passes' reads.
  const std::chrono::nanoseconds head = settle(*model);
  const StreamStats start = model->stats();
  double pass_total_s = 0;
  bool first = true;
  for (auto _ : state) {
    if (pos >= kContext) {
      state.SkipWithError("context full: raise kContext");
      break;
    }
    const auto started = Clock::now();
    try {
      model->forward(*transformer, batch, logits);
    } catch (const std::exception& e) {
      state.SkipWithError(e.what());
      break;
    }
    double pass_s = seconds(Clock::now() - started);
    if (first) pass_s += seconds(head);
    first = false;
    state.SetIterationTime(pass_s);
    pass_total_s += pass_s;
    pos += 1;
    next_batch();
  }
  if (state.error_occurred()) return;
  settle(*model);
  const StreamStats end = model->stats();

  StreamStats window;  // the timed passes
  window.bytes_streamed = end.bytes_streamed - start.bytes_streamed;
  window.wall = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::duration<double>(pass_total_s));
  window.wait = end.wait - start.wait;
  window.compute_busy = end.compute_busy - start.compute_busy;
  window.io_busy = end.io_busy - start.io_busy;
  window.decode_busy = end.decode_busy - start.decode_busy;
  const double passes = double(state.iterations());
  const double pass_s = pass_total_s / passes;
  const double bytes_per_pass = double(window.bytes_streamed) / passes;
  state.counters["pass_s"] = pass_s;
  state.counters["io_busy_s"] = seconds(window.io_busy) / passes;
  state.counters["decode_busy_s"] = seconds(window.decode_busy) / passes;
  state.counters["compute_busy_s"] = seconds(window.compute_busy) / passes;
  state.counters["wait_s"] = seconds(window.wait) / passes;
  state.counters["overlap"] = window.overlap();
  state.counters["tokens_per_second"] = double(n_seq) / pass_s;
  state.counters["read_GBps"] = bytes_per_pass / pass_s / 1e9;
  state.counters["bytes_per_token"] = bytes_per_pass / double(n_seq);
  std::size_t n_frames = 0, n_zstd = 0;
  for (const auto& extent : model->source().units()) {
    if (!names::is_block_name(extent.name)) continue;
    n_frames += extent.frames.size();
    for (const auto& f : extent.frames) n_zstd += f.codec != pack::Codec::raw;
  }
  state.SetLabel(fmt::format("{} {}: {}/{} block frames zstd", config().tag(), frames_name(frames), n_zstd, n_frames));
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  if (config().model.empty() && !std::filesystem::exists(kVocab)) {
    std::cerr << "bench_overlap: SKIPPED: " << kVocab << " (vocabulary source) not found\n";
    return 0;
  }
  try {
    (void)synth_shape(config().shape);
  } catch (const std::invalid_argument& e) {
    std::cerr << "bench_overlap: SLUICE_OVERLAP_SHAPE: " << e.what() << "\n";
    return 1;
  }
  benchmark::RegisterBenchmark("BM_StreamDecode", BM_StreamDecode)
      ->ArgNames({"batch", "frames", "slots"})
      ->ArgsProduct({{1, 4, 16}, {0, 1, 2}, {2, 4}})
      ->Iterations(kIterations)
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
