// `sluice bench -m MODEL`: llama-bench-style throughput table, in RAM or streamed under a memory
// budget (a pack is planned exactly as `sluice run` plans it). For each batch size B:
//   pp<P>  prompt processing: B prompts of P tokens, one pass per --pass-tokens chunk;
//   tg<N>  generation: B sequences each take N tokens, one token per sequence per pass;
// each repeated -r times; t/s is tokens (summed over the batch) per second, mean ± stdev. The
// streaming columns give seconds per pass, the read rate over the run, the overlap and the share
// of the passes' time the disk was busy. Printed as llama-bench prints (-o md|csv|json|jsonl,
// tools/bench_report.hpp); --json FILE also writes sluice's own detailed report.
#include <CLI/CLI.hpp>
#include <chrono>
#include <cmath>
#include <fmt/format.h>
#include <array>
#include <ctime>
#include <map>
#include <iostream>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/error.hpp"
#include "common/units.hpp"
#include "engine/session.hpp"
#include "model/ggml_types.hpp"
#include "model/model_source.hpp"
#include "tools/bench_report.hpp"
#include "tools/build_info.hpp"
#include "io/sequential.hpp"
#include "tools/cli_util.hpp"
#include "tools/session_flags.hpp"
#include "tools/speculative_flags.hpp"
#include "engine/engine.hpp"
#include "tools/commands.hpp"

namespace sluice {
namespace {

struct BenchOptions {
  // llama-bench's pp512 / tg128; fewer repetitions than its 5, as a streamed model reads the
  // whole file each pass.
  int n_prompt = 512, n_gen = 128, repetitions = 3;
  bool raw_read = false;
  bool warmup = true;
  std::string batches = "1", json_out, output_format = "md";
  SessionFlags flags;
  SpeculativeFlags speculative;
  // With --draft / --lookup: the text every sequence continues in the gen / spec tests.
  std::string spec_prompt = "# Python: sort a list of numbers, then find one in it\ndef binary_search(items, target):\n";
};

// One generation through the engine (gen / spec tests): B sequences continue the same prompt,
// greedily, n tokens each.
struct GenResult {
  double tokens_per_s = 0;
  BatchRunStats stats;
};

GenResult generate_all(Session& session, const BatchOptions& options, const std::vector<std::int32_t>& prompt, std::int32_t b, int n) {
  std::int32_t next = 0;
  Engine engine(session, options);
  const BatchRunStats stats = engine.run(
      [&]() -> std::optional<SeqRequest> {
        if (next == b) return std::nullopt;
        ++next;
        SeqRequest r;
        r.prompt = prompt;
        r.options.n_predict = n;
        r.options.stop_at_eog = false;
        r.options.sampling.temperature = 0;
        return r;
      },
      [](SeqResult&&) {});
  const double seconds = std::chrono::duration<double>(stats.wall).count();
  return {seconds > 0 ? double(stats.generated_tokens) / seconds : 0.0, stats};
}

struct Sample {
  double mean = 0, stdev = 0;
};

Sample summarize(const std::vector<double>& v) {
  Sample s;
  for (double x : v) s.mean += x;
  s.mean /= double(v.size());
  for (double x : v) s.stdev += (x - s.mean) * (x - s.mean);
  s.stdev = v.size() > 1 ? std::sqrt(s.stdev / double(v.size() - 1)) : 0.0;
  return s;
}

std::vector<std::int32_t> parse_batches(const std::string& text) {
  std::vector<std::int32_t> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    try {
      const int b = std::stoi(item);
      if (b < 1 || b > 4096) throw std::out_of_range("batch");
      out.push_back(b);
    } catch (const std::exception&) {
      throw CLI::ValidationError("-b,--batch", "expected a comma-separated list of batch sizes 1..4096, got '" + text + "'");
    }
  }
  if (out.empty()) throw CLI::ValidationError("-b,--batch", "no batch sizes given");
  return out;
}

// Streaming counters summed over the phases between start() and stop() (one test's passes).
struct PassCounters {
  StreamStats before;
  double wall = 0, io = 0, compute = 0;
  // The CPU breakdown (engine/session.hpp stream_cpu_line): process CPU, the pass thread blocked,
  // the prefetch workers' checksums, zstd and copies.
  StreamStats cpu;
  std::uint64_t passes = 0, bytes = 0;
  // Experts read one by one (a streamed MoE GGUF): uses, hits, reads and their bytes.
  std::uint64_t expert_uses = 0, expert_hits = 0, expert_reads = 0, expert_bytes = 0;
  double expert_wait = 0, expert_verify = 0;
  std::uint64_t guess_reads = 0, guess_used = 0;  // experts read ahead on the next layer's early router, and used  // of the pass's time: blocked on expert reads, verifying them
  void start(Session& s) {
    if (s.streamed()) before = s.streamed()->stats();
  }
  void stop(Session& s) {
    if (!s.streamed()) return;
    const StreamStats now = s.streamed()->stats();
    wall += std::chrono::duration<double>(now.wall - before.wall).count();
    io += std::chrono::duration<double>(now.io_busy - before.io_busy).count();
    compute += std::chrono::duration<double>(now.compute_busy - before.compute_busy).count();
    cpu.wall += now.wall - before.wall;
    cpu.compute_busy += now.compute_busy - before.compute_busy;
    cpu.wait += now.wait - before.wait;
    cpu.verify_busy += now.verify_busy - before.verify_busy;
    cpu.decode_busy += now.decode_busy - before.decode_busy;
    cpu.copy_busy += now.copy_busy - before.copy_busy;
    cpu.cpu_seconds += now.cpu_seconds - before.cpu_seconds;
    cpu.passes += now.passes - before.passes;
    passes += now.passes - before.passes;
    bytes += now.bytes_streamed - before.bytes_streamed;
    expert_uses += now.expert_accesses - before.expert_accesses;
    expert_hits += now.expert_hits - before.expert_hits;
    expert_reads += now.expert_reads - before.expert_reads;
    expert_bytes += now.expert_bytes - before.expert_bytes;
    expert_wait += std::chrono::duration<double>(now.expert_wait - before.expert_wait).count();
    expert_verify += std::chrono::duration<double>(now.expert_verify - before.expert_verify).count();
    guess_reads += now.expert_guess_reads - before.expert_guess_reads;
    guess_used += now.expert_guess_used - before.expert_guess_used;
  }
  // Everything read from the disk: blocks streamed and experts read one by one.
  std::uint64_t bytes_read() const { return bytes + expert_bytes; }
  // The row's streaming columns: s/pass, read GB/s (bytes / forward wall), overlap, io busy
  // (-1: not measured).
  void fill(Session& s, BenchRow& row) const {
    row.streamed = s.streamed() != nullptr;
    if (!row.streamed) return;
    if (passes) row.s_per_pass = wall / double(passes);
    if (wall > 0) {
      row.read_gbps = double(bytes_read()) / wall / 1e9;
      row.io_busy = io / wall;
    }
    if (std::max(io, compute) > 0) row.overlap = wall / std::max(io, compute);
  }
};

// What the table's model columns say, from the model's tensor table (no weight read): llama-bench's
// model_type is "arch size type"; here the type is the one most weight bytes have.
BenchModelInfo model_info(const std::string& path) {
  BenchModelInfo info;
  info.filename = path;
  const std::unique_ptr<ModelSource> source = open_model_source(path);
  std::map<std::uint32_t, std::uint64_t> bytes_by_type;
  for (const SourceTensor& t : source->tensors()) {
    std::uint64_t n = 1;
    for (std::uint64_t d : t.shape) n *= d;
    info.n_params += n;
    info.size += t.bytes;
    bytes_by_type[t.type] += t.bytes;
  }
  std::string type = "?";
  std::uint64_t most = 0;
  for (const auto& [id, b] : bytes_by_type) {
    if (b <= most) continue;
    most = b;
    const auto traits = ggml_type_traits(id);
    type = traits ? std::string(traits->name) : fmt::format("type {}", id);
  }
  const ModelConfig c = source->checked_config();
  const std::string params = info.n_params >= 1'000'000'000 ? fmt::format("{:.1f}B", double(info.n_params) / 1e9)
                                                             : fmt::format("{:.0f}M", double(info.n_params) / 1e6);
  info.type = fmt::format("{} {} {}", to_string(c.arch), params, type);
  return info;
}

std::string utc_now_iso() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

void bench(BenchOptions o) {
  double raw_gbps = 0;
  SessionOptions session_opts = session_options(o.flags);
  const std::vector<std::int32_t> batches = parse_batches(o.batches);
  // The yardstick, measured in this run: the whole file through io_uring with O_DIRECT. The disk's
  // speed changes from minute to minute, so it is read again after the tests and both are quoted.
  auto raw_read = [&](const char* when, std::uint64_t pool_bytes = 0) {
    io::BackendOptions io;
    auto read = io::read_file_sequential(session_opts.model, io, 1u << 20, 0, pool_bytes);
    if (!read) throw Exception(read.error(), session_opts.model);
    const std::string into =
        pool_bytes > 0 ? fmt::format(" into {} of buffers reused in order, as the ring", format_bytes(read.value().buffer_bytes)) : "";
    std::cerr << fmt::format("raw O_DIRECT read of {} {}{}: {} at {:.2f} GB/s\n", session_opts.model, when, into,
                             format_bytes(read.value().bytes), read.value().gbps());
    return read.value().gbps();
  };
  auto options_for = [&](std::int32_t b) {
    SessionOptions so = session_opts;
    so.n_seq = b;
    so.n_ctx = o.n_prompt + o.n_gen + 1;
    // Activations for the largest pass this bench runs, not the default prompt chunk: the
    // planner gives what is left to resident blocks.
    so.pass_tokens = std::min<std::int64_t>(session_opts.pass_tokens, std::int64_t(o.n_prompt) * b);
    so.log = b == batches.front() ? &std::cerr : nullptr;
    if (o.speculative.any()) so.n_ctx += 512 + o.speculative.draft_max;  // the gen / spec tests' prompt and drafts
    return so;
  };
  if (o.flags.plan_only) {  // each batch size's plan; no weight read, no pass
    for (std::int32_t b : batches) print_plan_only(options_for(b), std::cout);
    return;
  }
  if (o.raw_read) {
    raw_gbps = raw_read("before the tests");
    session_opts.disk_gbps = raw_gbps;
  }
  nlohmann::json report = {{"model", session_opts.model}, {"raw_gbps_before", raw_gbps}, {"tests", nlohmann::json::array()}};
  std::uint64_t first_bytes_per_pass = 0, first_ring_bytes = 0;
  BenchReport out;
  out.model = model_info(session_opts.model);
  out.speculative = o.speculative.any();
  out.test_time = utc_now_iso();
  out.build_commit = build_info::kGitCommit;
  out.version = build_info::kVersion;
  for (std::int32_t b : batches) {
    SessionOptions so = options_for(b);
    std::unique_ptr<Speculation> speculation = Speculation::prepare(o.speculative, so);
    const auto opening = std::chrono::steady_clock::now();
    Session session(so);
    const double open_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - opening).count();
    const ModelConfig& c = session.config();
    out.model.size = session.weight_bytes();
    out.model.n_threads = session.executor().concurrency();
    out.model.backend = session.backend().name() == "cpu" ? "CPU" : std::string(session.backend().name());
    const std::uint64_t bytes_per_pass = session.streamed() ? session.streamed()->streamed_bytes_per_pass() : 0;
    if (b == batches.front()) {
      first_bytes_per_pass = bytes_per_pass;
      first_ring_bytes = session.plan() && bytes_per_pass > 0 ? session.plan()->ring_bytes : 0;
    }
    if (raw_gbps > 0 && session.streamed() && b == batches.front()) {
      std::cerr << fmt::format("disk bound: {} streamed per pass / {:.2f} GB/s = {:.3f} s/pass\n",
                               format_bytes(session.streamed()->streamed_bytes_per_pass()), raw_gbps,
                               double(session.streamed()->streamed_bytes_per_pass()) / (raw_gbps * 1e9));
    }
    // Token ids cycle through the vocabulary past the first few (special) entries: the work does
    // not depend on which tokens they are.
    constexpr std::int32_t kFirstOrdinaryToken = 10;
    auto token = [&](int i) { return static_cast<std::int32_t>(kFirstOrdinaryToken + i % (c.n_vocab - kFirstOrdinaryToken)); };
    std::vector<double> pp, tg;
    PassCounters pp_counters, tg_counters;
    std::vector<float> logits;
    double first_prompt_seconds = 0;
    // r = -1: llama-bench's warmup (the prompt and one generated token), not counted, so the first
    // repetition is not the one that finds caches and pages cold; its prompt is the cold start's.
    const int first = o.warmup ? -1 : 0;
    for (int r = first; r < o.repetitions; ++r) {
      const bool warmup = r < 0;
      for (std::int32_t s = 0; s < b; ++s) session.transformer().kv_cache().clear(s);
      // pp: every sequence's prompt, chunked to --pass-tokens per pass.
      if (!warmup) pp_counters.start(session);
      auto started = std::chrono::steady_clock::now();
      std::vector<std::int64_t> done(std::size_t(b), 0);
      for (std::int32_t s = 0; s < b;) {
        Batch batch;
        std::int64_t room = session_opts.pass_tokens;
        while (s < b && room > 0) {
          const std::int64_t take = std::min<std::int64_t>(room, o.n_prompt - done[std::size_t(s)]);
          std::vector<std::int32_t> ids;
          for (std::int64_t i = 0; i < take; ++i) ids.push_back(token(int(done[std::size_t(s)] + i) + s));
          batch.add(s, done[std::size_t(s)], ids, done[std::size_t(s)] + take == o.n_prompt);
          done[std::size_t(s)] += take;
          room -= take;
          if (done[std::size_t(s)] == o.n_prompt) ++s;
        }
        session.forward().forward(session.transformer(), batch, logits);
      }
      if (!warmup) pp_counters.stop(session);
      const double prompt_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
      if (r == first) first_prompt_seconds = prompt_seconds;
      if (!warmup) pp.push_back(double(o.n_prompt) * b / prompt_seconds);
      // tg: one token per sequence per pass.
      if (!warmup) tg_counters.start(session);
      started = std::chrono::steady_clock::now();
      for (int i = 0; i < (warmup ? 1 : o.n_gen); ++i) {
        Batch batch;
        for (std::int32_t s = 0; s < b; ++s) {
          const std::int32_t next = token(o.n_prompt + i + s);
          batch.add(s, o.n_prompt + i, std::span(&next, 1), true);
        }
        session.forward().forward(session.transformer(), batch, logits);
      }
      if (warmup) continue;
      tg_counters.stop(session);
      tg.push_back(double(o.n_gen) * b / std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
    }
    const std::string mode = session.streamed() ? fmt::format("stream {}/{} res", session.streamed()->resident_block_count(), c.n_layer)
                                                : "in RAM";
    auto add_row = [&](std::string test, int n_prompt, int n_gen, const std::vector<double>& samples, const PassCounters& k) -> BenchRow& {
      BenchRow row;
      row.test = std::move(test);
      row.n_prompt = n_prompt;
      row.n_gen = n_gen;
      row.n_seq = b;
      row.samples_ts = samples;
      row.tokens_per_sample = double(n_prompt + n_gen) * b;
      row.mode = mode;
      k.fill(session, row);
      out.rows.push_back(std::move(row));
      return out.rows.back();
    };
    Sample p = summarize(pp), g = summarize(tg);
    add_row(fmt::format("pp{}", o.n_prompt), o.n_prompt, 0, pp, pp_counters);
    add_row(fmt::format("tg{}", o.n_gen), 0, o.n_gen, tg, tg_counters);
    // The first token of a cold start: opening the model (plan, resident blocks, head) and the
    // first repetition's prompt, whose last pass gives the first token's logits.
    if (session.streamed()) {
      if (pp_counters.passes) std::cerr << fmt::format("batch {} pp{}: {}\n", b, o.n_prompt, stream_cpu_line(pp_counters.cpu));
      if (tg_counters.passes) std::cerr << fmt::format("batch {} tg{}: {}\n", b, o.n_gen, stream_cpu_line(tg_counters.cpu));
    }
    std::cerr << fmt::format("batch {}: time to first token {:.2f} s (open {:.2f} s + prompt {:.2f} s)\n", b,
                             open_seconds + first_prompt_seconds, open_seconds, first_prompt_seconds);
    auto test_json = [&](const char* test, const Sample& sample, const PassCounters& k) {
      return nlohmann::json{{"batch", b},
                            {"test", test},
                            {"tokens_per_s", sample.mean},
                            {"tokens_per_s_stdev", sample.stdev},
                            {"passes", k.passes},
                            {"s_per_pass", k.passes ? k.wall / double(k.passes) : 0.0},
                            {"bytes_read", k.bytes_read()},
                            {"io_busy_s", k.io},
                            {"compute_busy_s", k.compute},
                            {"wall_s", k.wall},
                            {"cpu_s", k.cpu.cpu_seconds},
                            {"wait_s", std::chrono::duration<double>(k.cpu.wait).count()},
                            {"verify_s", std::chrono::duration<double>(k.cpu.verify_busy).count()},
                            {"decompress_s", std::chrono::duration<double>(k.cpu.decode_busy).count()},
                            {"copy_s", std::chrono::duration<double>(k.cpu.copy_busy).count()},
                            {"expert_uses", k.expert_uses},
                            {"expert_hits", k.expert_hits},
                            {"expert_hit_rate", k.expert_uses ? double(k.expert_hits) / double(k.expert_uses) : 0.0},
                            {"expert_reads", k.expert_reads},
                            {"expert_bytes", k.expert_bytes},
                            {"expert_wait_s", k.expert_wait},
                            {"expert_verify_s", k.expert_verify},
                            {"expert_guess_reads", k.guess_reads},
                            {"expert_guess_used", k.guess_used},
                            {"streamed_bytes_per_pass", bytes_per_pass},
                            {"resident_blocks", session.streamed() ? session.streamed()->resident_block_count() : c.n_layer},
                            {"blocks", c.n_layer},
                            {"open_s", open_seconds},
                            {"first_prompt_s", first_prompt_seconds}};
    };
    report["tests"].push_back(test_json("pp", p, pp_counters));
    report["tests"].push_back(test_json("tg", g, tg_counters));
    if (speculation) {
      // gen: the engine's greedy generation on --spec-prompt; spec: the same with drafts. The same
      // tokens come out of both (speculation never changes the output), so t/s compare directly.
      const std::vector<std::int32_t> prompt = session.tokenizer().encode(o.spec_prompt, true, false);
      BatchOptions plain;
      plain.n_parallel = b;
      plain.max_pass_tokens = so.pass_tokens;
      BatchOptions drafted = plain;
      speculation->attach(session, so.model, drafted, nullptr);
      for (bool with_drafts : {false, true}) {
        PassCounters counters;
        std::vector<double> rates;
        BatchRunStats last;
        counters.start(session);
        for (int r = 0; r < o.repetitions; ++r) {
          const GenResult got = generate_all(session, with_drafts ? drafted : plain, prompt, b, o.n_gen);
          rates.push_back(got.tokens_per_s);
          last = got.stats;
        }
        counters.stop(session);
        const Sample rate = summarize(rates);
        const char* test = with_drafts ? "spec" : "gen";
        BenchRow& row = add_row(fmt::format("{}{}", test, o.n_gen), 0, o.n_gen, rates, counters);
        row.tokens_per_step = last.tokens_per_step();
        if (with_drafts) row.acceptance = last.acceptance();
        nlohmann::json j = test_json(test, rate, counters);
        j["tokens_per_step"] = last.tokens_per_step();
        j["drafted"] = last.drafted_tokens;
        j["accepted"] = last.accepted_tokens;
        j["acceptance"] = last.acceptance();
        report["tests"].push_back(j);
      }
      if (b == batches.front()) std::cerr << "speculative: " << speculation->describe() << ", draft length now " << speculation->length().next() << "\n";
    }
  }
  print_bench_report(out, *parse_bench_format(o.output_format), std::cout);
  if (o.raw_read) {
    const double after = raw_read("after the tests");
    report["raw_gbps_after"] = after;
    // Experts read one by one: the yardstick per test, s/pass against the bytes each pass
    // read over the raw speed (before and after) plus the compute measured in the same passes.
    for (const nlohmann::json& t : report["tests"]) {
      const double passes = t["passes"].get<double>();
      if (t["expert_bytes"].get<std::uint64_t>() == 0 || passes == 0) continue;
      const double per_pass = t["bytes_read"].get<double>() / passes, compute = t["compute_busy_s"].get<double>() / passes;
      const double before = per_pass / (raw_gbps * 1e9), after_s = per_pass / (after * 1e9);
      const double measured = t["s_per_pass"].get<double>();
      std::cerr << fmt::format(
          "batch {} {}: {} read per pass / raw {:.2f} | {:.2f} GB/s = {:.3f} | {:.3f} s, compute {:.3f} s; measured {:.3f} s/pass = "
          "{:.2f} | {:.2f} x read + compute (1.15 x read + compute = {:.3f} | {:.3f} s)\n",
          t["batch"].get<int>(), t["test"].get<std::string>(), format_bytes(std::uint64_t(per_pass)), raw_gbps, after, before, after_s,
          compute, measured, (measured - compute) / before, (measured - compute) / after_s, 1.15 * before + compute, 1.15 * after_s + compute);
    }
    if (first_bytes_per_pass > 0) {
      std::cerr << fmt::format("disk bound of batch {}: {:.3f} s/pass at the speed before, {:.3f} s/pass after\n", batches.front(),
                               double(first_bytes_per_pass) / (raw_gbps * 1e9), double(first_bytes_per_pass) / (after * 1e9));
    }
    // The same file into as much memory as the ring, cycled as its slots are: on a virtual disk
    // the host may fill a few MiB of buffers that stay in its caches faster than hundreds of MiB
    // (README, "A model larger than RAM"). Quoted beside the yardstick, never instead of it.
    if (first_ring_bytes > 0) {
      const double pooled = raw_read("after the tests", first_ring_bytes);
      report["raw_gbps_ring_pool"] = pooled;
      std::cerr << fmt::format("disk bound of batch {} at that speed: {:.3f} s/pass\n", batches.front(),
                               double(first_bytes_per_pass) / (pooled * 1e9));
    }
  }
  if (!o.json_out.empty()) {
    std::ofstream out(o.json_out);
    out << report.dump(2) << '\n';
    if (!out) throw Exception(ErrorContext{ErrorKind::io, o.json_out}, fmt::format("{}: cannot write the bench report", o.json_out));
  }
}

}  // namespace

void add_bench_command(CLI::App& app) {
  auto o = std::make_shared<BenchOptions>();
  CLI::App* cmd = app.add_subcommand(
      "bench",
      "Throughput table in llama-bench's style (pp = prompt batch, tg = generation), in RAM or streamed from a\n"
      "GGUF or pack under --mem-budget; -b 1,16 compares batch sizes (sequences sharing each pass).");
  // No -c: the context is what the test needs (-p + -n).
  add_session_flags(cmd, o->flags, kOmitCtx);
  cmd->add_option("-p,--n-prompt", o->n_prompt, "Prompt tokens per sequence (pp test)")->capture_default_str()->check(CLI::Range(1, 65536));
  cmd->add_option("-n,--n-gen", o->n_gen, "Generated tokens per sequence (tg test)")->capture_default_str()->check(CLI::Range(1, 65536));
  cmd->add_option("-b,--batch", o->batches, "Batch sizes, comma-separated (sequences per pass)")->capture_default_str();
  cmd->add_option("-r,--repetitions", o->repetitions, "Repetitions")->capture_default_str()->check(CLI::Range(1, 100));
  cmd->add_flag("!--no-warmup", o->warmup,
                "No warmup run (by default the prompt and one token run once, uncounted, before the repetitions, as in "
                "llama-bench; the time to first token is that cold run's)");
  cmd->add_flag("--raw-read", o->raw_read,
                "Read the whole file with O_DIRECT before and after the tests (the disk's speed in this run) and print the "
                "disk-bound s/pass; when the model streams, once more into as much memory as the ring (a virtual disk can "
                "fill a few MiB faster than hundreds)");
  cmd->add_option("-o,--output,--output-format", o->output_format,
                  "Results on stdout as llama-bench prints them: md (a markdown table), csv, json (an array of objects with "
                  "llama-bench's fields model_type, model_size, model_n_params, n_threads, n_prompt, n_gen, avg_ts, stddev_ts, "
                  "... and sluice's), jsonl")
      ->capture_default_str()
      ->check(CLI::IsMember({"md", "csv", "json", "jsonl"}));
  cmd->add_option("--json", o->json_out, "Also write the results (per test: tokens/s, passes, bytes read, io and compute busy, expert uses/hits/reads/bytes, "
                                         "time to first token; the raw read speeds) to this JSON file");
  add_speculative_flags(cmd, o->speculative);
  cmd->add_option("--spec-prompt", o->spec_prompt,
                  "With --draft / --lookup: the text each sequence continues in the gen<N> (plain) and spec<N> (speculative) "
                  "tests, which add the columns tok/step (generated tokens per sequence step) and accept (drafts accepted)")
      ->capture_default_str();
  cmd->callback([o] { bench(*o); });
}

}  // namespace sluice
