// The matrix kernel (matmul.hpp): quantize the activation rows once, then compute blocks of
// weight rows in parallel over TBB (in the caller's task arena), each block against tiles of
// activation rows.
#include "compute/cpu/matmul.hpp"

#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/partitioner.h>
#include <oneapi/tbb/task_arena.h>

#include <algorithm>
#include <cstddef>
#include <vector>

#include "compute/cpu/check.hpp"
#include "compute/cpu/quants.hpp"
#include "compute/executor.hpp"  // note_task

namespace sluice::cpu {
namespace {

// Weight rows per cache block: the block is re-read from cache once per tile of activation rows,
// so it should stay in L2. 16 rows of a 4096-column Q8_0 matrix are 70 KB; of F32, 256 KB.
constexpr std::int64_t kRowsPerCacheBlock = 16;
// Smallest range of rows a TBB task takes: below this, scheduling costs more than the rows.
constexpr std::int64_t kRowGrain = 16;
// Activation rows quantized per TBB task when the batch is large (prefill).
constexpr std::int64_t kActGrain = 4;
// One thread (an arena of one, e.g. `-t 1`): skip TBB's tasks and run every loop on the caller.
bool single_threaded() { return tbb::this_task_arena::max_concurrency() == 1; }

struct Problem {
  const KernelTable* kernels;
  GgmlType type;
  const std::byte* weights;
  std::size_t weight_row_bytes;
  std::int64_t rows;
  std::int64_t cols;
  const std::byte* acts;
  std::size_t act_row_bytes;
  std::int64_t batch;
  float* y;
};

// Rows [r0, r1) against every activation row, cache block by cache block.
void compute_rows(const Problem& p, std::int64_t r0, std::int64_t r1) {
  compute::note_task();
  const int slot = type_slot(p.type);
  const VecDotFn dot = p.kernels->vec_dot[slot];
  const VecDotMultiFn multi = p.kernels->vec_dot_multi[slot];
  for (std::int64_t rb = r0; rb < r1; rb += kRowsPerCacheBlock) {
    const std::int64_t rb_end = std::min(r1, rb + kRowsPerCacheBlock);
    for (std::int64_t b = 0; b < p.batch; b += kMaxTileActs) {
      const int n_acts = static_cast<int>(std::min<std::int64_t>(kMaxTileActs, p.batch - b));
      const std::byte* act = p.acts + static_cast<std::size_t>(b) * p.act_row_bytes;
      float* out = p.y + b * p.rows;
      for (std::int64_t r = rb; r < rb_end; ++r) {
        const std::byte* w = p.weights + static_cast<std::size_t>(r) * p.weight_row_bytes;
        if (multi != nullptr && n_acts > 1) {
          multi(p.cols, w, act, p.act_row_bytes, n_acts, out + r, static_cast<std::size_t>(p.rows));
        } else {
          for (int c = 0; c < n_acts; ++c) {
            out[c * p.rows + r] = dot(p.cols, w, act + static_cast<std::size_t>(c) * p.act_row_bytes);
          }
        }
      }
    }
  }
}

}  // namespace

std::uint64_t matmul_scratch_bytes(GgmlType type, std::int64_t cols, std::int64_t batch) {
  const GgmlType act_type = vec_dot_type(type);
  return act_type == GgmlType::F32 ? 0 : std::uint64_t(row_bytes(act_type, cols)) * std::uint64_t(batch);
}

void matmul(GgmlType type, const void* weights, std::int64_t rows, std::int64_t cols,
            const float* x, std::int64_t batch, float* y) {
  matmul(type, weights, rows, cols, x, batch, y, active_isa());
}

void matmul(GgmlType type, const void* weights, std::int64_t rows, std::int64_t cols,
            const float* x, std::int64_t batch, float* y, CpuIsa isa) {
  SLUICE_CPU_CHECK(is_weight_type(type));
  SLUICE_CPU_CHECK(rows >= 0 && cols >= 0 && batch >= 0);
  SLUICE_CPU_CHECK(cols % block_elements(type) == 0);
  const KernelTable* kernels = kernels_for(isa);
  SLUICE_CPU_CHECK(kernels != nullptr);
  if (rows == 0 || batch == 0) return;

  const GgmlType act_type = vec_dot_type(type);
  SLUICE_CPU_CHECK(cols % block_elements(act_type) == 0);
  const std::size_t act_row_bytes = row_bytes(act_type, cols);

  // F32 weights dot the fp32 activations as they are; every other type needs them converted.
  std::vector<std::byte> act_buffer;
  const std::byte* acts = reinterpret_cast<const std::byte*>(x);
  const QuantizeFn quantize = act_type == GgmlType::F32 ? nullptr : kernels->quantize_activation[type_slot(act_type)];
  if (act_type != GgmlType::F32) {
    SLUICE_CPU_CHECK(quantize != nullptr);
    act_buffer.resize(act_row_bytes * static_cast<std::size_t>(batch));
    acts = act_buffer.data();
  }

  const Problem problem{kernels, type, static_cast<const std::byte*>(weights), row_bytes(type, cols),
                        rows, cols, acts, act_row_bytes, batch, y};
  std::byte* act_out = act_buffer.data();
  const MatmulRowsFn rows_fn =
      batch >= kernels->matmul_rows_min_batch[type_slot(type)] ? kernels->matmul_rows[type_slot(type)] : nullptr;

  const bool serial = single_threaded();
  if (quantize != nullptr) {
    auto quantize_range = [&](std::int64_t b0, std::int64_t b1) {
      compute::note_task();
      for (std::int64_t b = b0; b < b1; ++b) {
        quantize(x + b * cols, act_out + static_cast<std::size_t>(b) * act_row_bytes, cols);
      }
    };
    if (batch > kActGrain && !serial) {
      tbb::parallel_for(tbb::blocked_range<std::int64_t>(0, batch, kActGrain),
                        [&](const tbb::blocked_range<std::int64_t>& r) { quantize_range(r.begin(), r.end()); });
    } else {
      quantize_range(0, batch);
    }
  }
  if (rows_fn != nullptr) {
    // GEMM micro-kernel over strips of rows; a static split (one range per thread) keeps the
    // per-call scheduling cost of decode (hundreds of matmuls per token) low.
    const std::size_t w_row_bytes = problem.weight_row_bytes;
    auto run_strips = [&](std::int64_t s0, std::int64_t s1) {
      compute::note_task();
      rows_fn(cols, weights, w_row_bytes, s0 * kMatmulRowsStrip, std::min(rows, s1 * kMatmulRowsStrip), acts,
              act_row_bytes, batch, y, static_cast<std::size_t>(rows));
    };
    const std::int64_t strips = (rows + kMatmulRowsStrip - 1) / kMatmulRowsStrip;
    if (serial || strips == 1) {
      run_strips(0, strips);
      return;
    }
    tbb::parallel_for(tbb::blocked_range<std::int64_t>(0, strips),
                      [&](const tbb::blocked_range<std::int64_t>& r) { run_strips(r.begin(), r.end()); },
                      tbb::static_partitioner());
    return;
  }
  if (serial || rows <= kRowGrain) {
    compute_rows(problem, 0, rows);
    return;
  }
  tbb::parallel_for(tbb::blocked_range<std::int64_t>(0, rows, kRowGrain),
                    [&](const tbb::blocked_range<std::int64_t>& r) { compute_rows(problem, r.begin(), r.end()); });
}

}  // namespace sluice::cpu
