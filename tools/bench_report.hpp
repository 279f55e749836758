// `sluice bench`'s results in the formats llama-bench users paste and parse (-o md|csv|json|jsonl):
// the md table has llama-bench's columns (model, size, params, backend, threads, test, t/s) with
// sluice's own after them only where they say something (batch when -b is not 1, the streaming
// columns when a run streams, tok/step and accept with --draft / --lookup). csv, json and jsonl
// carry llama-bench's field names (model_type, model_size, model_n_params, n_threads, n_prompt,
// n_gen, avg_ts, stddev_ts, ...) plus sluice's.
#pragma once

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

namespace sluice {

enum class BenchFormat { md, csv, json, jsonl };
// "md" | "csv" | "json" | "jsonl"; nullopt otherwise.
std::optional<BenchFormat> parse_bench_format(const std::string& name);

struct BenchModelInfo {
  std::string filename;
  std::string type;          // "llama 1.10B Q4_K" (arch, parameters, the type most weight bytes have)
  std::uint64_t size = 0;    // weight bytes
  std::uint64_t n_params = 0;
  std::string backend;       // "CPU"
  int n_threads = 0;
};

struct BenchRow {
  std::string test;  // "pp512", "tg128", "gen24", "spec24"
  int n_prompt = 0, n_gen = 0;
  std::int32_t n_seq = 1;       // sequences sharing each pass (-b)
  std::vector<double> samples_ts;  // tokens/s of each repetition
  double tokens_per_sample = 0;     // tokens each repetition processed (summed over the batch)
  // Streaming: "in RAM" or "stream R/N res"; the others < 0 when the row did not stream.
  std::string mode;
  bool streamed = false;
  double s_per_pass = -1, read_gbps = -1, overlap = -1, io_busy = -1;  // io_busy: fraction of the passes' wall
  std::optional<double> tokens_per_step, acceptance;             // speculative rows
};

struct BenchReport {
  BenchModelInfo model;
  std::vector<BenchRow> rows;
  bool speculative = false;
  std::string test_time;  // ISO 8601, UTC
  std::string build_commit, version;  // sluice's (llama-bench reports its own build_commit)
};

// Mean and sample standard deviation (0 with one sample).
double bench_mean(const std::vector<double>& v);
double bench_stddev(const std::vector<double>& v);

// "1.10 B" / "24.52 M" as llama-bench prints parameters; "0.06 GiB" its size.
std::string format_params(std::uint64_t n);
std::string format_gib(std::uint64_t bytes);

void print_bench_report(const BenchReport& report, BenchFormat format, std::ostream& out);

}  // namespace sluice
