// Micro-benchmark behind KernelTable::matmul_rows_min_batch of the packed GEMMs: GEMM
// (matmul_rows) against row by row (vec_dot / vec_dot_multi) through cpu::matmul, per type,
// level, thread count and batch. Row by row is forced by raising the table's
// matmul_rows_min_batch (bench only: the table is const to the engine). Usage:
// bench_gemm_min_batch [type index 0..8: Q4_1 Q5_1 Q5_0 Q2_K Q3_K Q4_K Q6_K MXFP4 Q5_K]; prints ms and GFLOP/s
// per level, thread count (1, 2) and batch (1..512) for 2048 x 4096 weights. Optional filters:
// bench_gemm_min_batch 5 avx512 2 (Q4_K, the AVX-512 level, 2 threads only).
#include <oneapi/tbb/task_arena.h>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <limits>
#include <random>
#include <string>
#include <vector>
#include "compute/cpu/kernels.hpp"
#include "compute/cpu/matmul.hpp"
#include "compute/cpu/quants.hpp"
using namespace sluice;
int main(int argc, char** argv) {
  const std::int64_t rows = 2048, cols = 4096;
  const char* tn[] = {"Q4_1", "Q5_1", "Q5_0", "Q2_K", "Q3_K", "Q4_K", "Q6_K", "MXFP4", "Q5_K"};
  const GgmlType ts[] = {GgmlType::Q4_1, GgmlType::Q5_1, GgmlType::Q5_0, GgmlType::Q2_K, GgmlType::Q3_K,
                         GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::MXFP4, GgmlType::Q5_K};
  const std::int64_t batches[] = {1, 2, 4, 6, 8, 12, 16, 24, 32, 64, 128, 256, 512};
  const int type_filter = argc > 1 ? std::atoi(argv[1]) : -1;
  const char* isa_filter = argc > 2 ? argv[2] : nullptr;  // avx512 or avx2
  const int threads_filter = argc > 3 ? std::atoi(argv[3]) : 0;  // 1 or 2
  std::mt19937_64 rng(42);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  std::vector<float> x(512 * cols);
  for (float& v : x) v = normal(rng) * 50;
  std::vector<float> y(512 * rows);
  for (int ti = 0; ti < int(std::size(ts)); ++ti) {
    if (type_filter >= 0 && ti != type_filter) continue;
    const GgmlType t = ts[ti];
    const std::size_t rb = cpu::row_bytes(t, cols);
    std::vector<std::uint8_t> w(rb * rows);
    std::vector<float> row(cols);
    for (std::int64_t r = 0; r < rows; ++r) {
      for (float& v : row) v = normal(rng);
      cpu::quantize_row_reference(t, row.data(), w.data() + r * rb, cols);
    }
    for (cpu::CpuIsa isa : {cpu::CpuIsa::avx512, cpu::CpuIsa::avx2}) {
      if (isa_filter != nullptr && std::string(isa_filter) != cpu::to_string(isa)) continue;
      auto* k = const_cast<cpu::KernelTable*>(cpu::kernels_for(isa));
      const std::int64_t saved = k->matmul_rows_min_batch[cpu::type_slot(t)];
      for (int threads : {1, 2}) {
        if (threads_filter > 0 && threads != threads_filter) continue;
        tbb::task_arena arena(threads);
        for (std::int64_t batch : batches) {
          double best[2] = {1e30, 1e30};
          const int reps = batch <= 16 ? 7 : 3;
          for (int rep = 0; rep < reps; ++rep) {
            for (int mode = 0; mode < 2; ++mode) {  // 0 GEMM, 1 row by row
              k->matmul_rows_min_batch[cpu::type_slot(t)] = mode == 0 ? 0 : std::numeric_limits<std::int64_t>::max();
              const auto t0 = std::chrono::steady_clock::now();
              arena.execute([&] { cpu::matmul(t, w.data(), rows, cols, x.data(), batch, y.data(), isa); });
              const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
              best[mode] = std::min(best[mode], s);
            }
          }
          const double flop = 2.0 * rows * cols * batch;
          std::printf("%s %s t=%d batch=%3ld gemm %7.3f ms %6.1f GFLOP/s  rows %7.3f ms %6.1f GFLOP/s  ratio %.2f\n",
                      tn[ti], cpu::to_string(isa), threads, static_cast<long>(batch), best[0] * 1e3, flop / best[0] / 1e9,
                      best[1] * 1e3, flop / best[1] / 1e9, best[1] / best[0]);
          std::fflush(stdout);
        }
      }
      k->matmul_rows_min_batch[cpu::type_slot(t)] = saved;
    }
  }
}
