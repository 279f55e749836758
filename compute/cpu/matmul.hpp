// Matrix kernel of the CPU backend: y = W x for a batch of activation rows, W quantized in any
// weight type (compute/cpu/quants.hpp), x in fp32.
//
//   weights: rows x cols, row-major; row r starts at r * row_bytes(type, cols)
//   x:       batch x cols fp32, row-major (activation b at x + b * cols)
//   y:       batch x rows fp32, row-major: y[b * rows + r] = dot(W row r, x row b)
//
// Each x row is quantized once to the type's vec_dot_type; rows of W are then computed in
// parallel over TBB, in blocks of rows, several activation rows per weight block for batch > 1.
// The parallel loops run in the calling thread's task arena: call matmul inside a
// compute::Executor (compute/executor.hpp; CpuBackend does) to bound its threads. In an arena of
// one thread it runs every loop on the caller, with no tasks.
#pragma once

#include <cstdint>

#include "compute/cpu/kernels.hpp"
#include "model/ggml_types.hpp"

namespace sluice::cpu {

// Contract: cols is a multiple of the type's block size; rows, batch >= 0; y does not alias x or
// the weights. Thread-safe (concurrent calls share no state but the kernel table). Never throws
// from worker threads; an invalid type or shape is a programmer error (abort with file and line).
void matmul(GgmlType type, const void* weights, std::int64_t rows, std::int64_t cols,
            const float* x, std::int64_t batch, float* y);

// Bytes matmul() allocates for a call (the activation rows converted to vec_dot_type; freed on
// return): 0 for F32 weights.
std::uint64_t matmul_scratch_bytes(GgmlType type, std::int64_t cols, std::int64_t batch);

// As above with an explicit kernel level (tests, benchmarks); the level must be supported.
void matmul(GgmlType type, const void* weights, std::int64_t rows, std::int64_t cols,
            const float* x, std::int64_t batch, float* y, CpuIsa isa);

}  // namespace sluice::cpu
