// Google Benchmark suite for the CPU matmul kernels: a 4096 x 4096 weight matrix in every weight
// type (and 11008 x 4096 in Q4_0 and Q8_0), times one activation row (decode: memory-bound,
// reported as weight GB/s) and 64 rows (prefill: compute-bound, also reported as multiply-adds
// per second), at every instruction-set level this CPU supports. Run from the build tree:
//   ./bench/bench_kernels [--benchmark_filter=Q4_K] [--benchmark_format=json]
// Threads: every core (an Executor of 0 threads); set SLUICE_BENCH_THREADS=1 for one core.
// Batches: SLUICE_BENCH_BATCHES=1,4,8,64 for others than 1 and 64.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <map>
#include <utility>
#include <random>
#include <string>
#include <vector>

#include "compute/cpu/matmul.hpp"
#include "compute/cpu/quants.hpp"
#include "compute/executor.hpp"

namespace {

using sluice::GgmlType;
namespace cpu = sluice::cpu;

constexpr std::int64_t kRows = 4096;
constexpr std::int64_t kCols = 4096;
// A 7B model's feed-forward shape (Q4_0 and Q8_0 only): larger than the last-level cache, so
// batch 1 measures the DRAM stream.
constexpr std::int64_t kFfnRows = 11008;
constexpr std::int64_t kDecodeBatch = 1;
constexpr std::int64_t kPrefillBatch = 64;
constexpr std::uint64_t kSeed = 42;

struct TypeName {
  GgmlType type;
  const char* name;
};
constexpr TypeName kTypes[] = {
    {GgmlType::Q4_0, "Q4_0"}, {GgmlType::Q8_0, "Q8_0"}, {GgmlType::Q4_K, "Q4_K"}, {GgmlType::Q6_K, "Q6_K"},
    {GgmlType::Q5_0, "Q5_0"}, {GgmlType::Q4_1, "Q4_1"}, {GgmlType::Q5_1, "Q5_1"}, {GgmlType::Q2_K, "Q2_K"},
    {GgmlType::Q3_K, "Q3_K"}, {GgmlType::Q5_K, "Q5_K"}, {GgmlType::F16, "F16"},   {GgmlType::BF16, "BF16"},
    {GgmlType::F32, "F32"},   {GgmlType::MXFP4, "MXFP4"},
};

// Weights are quantized once per type (the reference quantizers take seconds for 16M values).
const std::vector<std::uint8_t>& weights_for(GgmlType t, std::int64_t rows) {
  static std::map<std::pair<GgmlType, std::int64_t>, std::vector<std::uint8_t>> cache;
  auto it = cache.find({t, rows});
  if (it != cache.end()) return it->second;
  std::mt19937_64 rng(kSeed);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  std::vector<float> row(kCols);
  const std::size_t row_bytes = cpu::row_bytes(t, kCols);
  std::vector<std::uint8_t> bytes(row_bytes * rows);
  for (std::int64_t r = 0; r < rows; ++r) {
    for (float& v : row) v = normal(rng);
    cpu::quantize_row_reference(t, row.data(), bytes.data() + r * row_bytes, kCols);
  }
  return cache.emplace(std::make_pair(t, rows), std::move(bytes)).first->second;
}

int bench_threads() {
  const char* env = std::getenv("SLUICE_BENCH_THREADS");
  return env != nullptr ? std::atoi(env) : 0;
}

void bm_matmul(benchmark::State& state, GgmlType type, cpu::CpuIsa isa, std::int64_t batch, std::int64_t rows) {
  const auto& w = weights_for(type, rows);
  std::mt19937_64 rng(kSeed + 1);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(static_cast<std::size_t>(batch * kCols));
  for (float& v : x) v = normal(rng);
  std::vector<float> y(static_cast<std::size_t>(batch * rows));
  sluice::compute::Executor executor(bench_threads());
  for (auto _ : state) {
    executor.run([&] { cpu::matmul(type, w.data(), rows, kCols, x.data(), batch, y.data(), isa); });
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(w.size()));
  state.counters["MAC/s"] = benchmark::Counter(static_cast<double>(state.iterations()) * rows * kCols * batch,
                                               benchmark::Counter::kIsRate);
}

}  // namespace

// The batches to run: SLUICE_BENCH_BATCHES="1,8,64" (default: decode and prefill).
std::vector<std::int64_t> bench_batches() {
  const char* env = std::getenv("SLUICE_BENCH_BATCHES");
  if (env == nullptr) return {kDecodeBatch, kPrefillBatch};
  std::vector<std::int64_t> out;
  for (const char* p = env; *p != 0;) {
    char* end = nullptr;
    const long v = std::strtol(p, &end, 10);
    if (end == p) break;
    if (v > 0) out.push_back(v);
    p = *end == ',' ? end + 1 : end;
  }
  return out;
}

int main(int argc, char** argv) {
  const std::vector<std::int64_t> batches = bench_batches();
  for (const TypeName& t : kTypes) {
    for (cpu::CpuIsa isa : {cpu::CpuIsa::scalar, cpu::CpuIsa::avx2, cpu::CpuIsa::avx512}) {
      if (!cpu::isa_supported(isa)) continue;
      for (std::int64_t rows : {kRows, kFfnRows}) {
        if (rows == kFfnRows && t.type != GgmlType::Q4_0 && t.type != GgmlType::Q8_0) continue;
        for (std::int64_t batch : batches) {
          const std::string name = "matmul_" + std::to_string(rows) + "x" + std::to_string(kCols) + "/" + t.name +
                                   "/" + cpu::to_string(isa) + "/batch:" + std::to_string(batch);
          benchmark::RegisterBenchmark(name.c_str(), bm_matmul, t.type, isa, batch, rows)
              ->Unit(benchmark::kMillisecond)
              ->UseRealTime();
        }
      }
    }
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
