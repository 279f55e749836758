// Run-time kernel selection for the CPU backend. Each instruction-set level (scalar, AVX2,
// AVX-512) fills a KernelTable of function pointers; a missing entry falls back to the scalar
// kernel, so a level only has to provide what it speeds up. The level is picked once from the CPU
// (__builtin_cpu_supports), or forced with the environment variable SLUICE_CPU_ISA=scalar|avx2|
// avx512 (tests, benchmarks); a forced level the CPU lacks falls back to the best it has, with one
// line on stderr. No #ifdef selects code paths: the SIMD files are always built, with per-file
// compiler flags, and only ever called after the CPU check.
#pragma once

#include <cstddef>
#include <cstdint>

#include "compute/cpu/blocks.hpp"
#include "compute/cpu/row_kernels.hpp"

namespace sluice::cpu {

enum class CpuIsa : int { scalar = 0, avx2 = 1, avx512 = 2 };
const char* to_string(CpuIsa isa);

// Dot product of one weight row with one activation row in the type's vec_dot_type.
using VecDotFn = float (*)(std::int64_t n, const void* weights_row, const void* activation_row);

// out[c * out_stride] = dot(weights_row, acts + c * act_row_bytes) for c in [0, n_acts), with
// n_acts <= kMaxTileActs. Equal, bit for bit, to n_acts calls of the same level's VecDotFn; it
// exists so that a weight block is decoded once for several activation rows (prefill).
using VecDotMultiFn = void (*)(std::int64_t n, const void* weights_row, const void* acts,
                               std::size_t act_row_bytes, int n_acts, float* out,
                               std::size_t out_stride);
inline constexpr int kMaxTileActs = 4;

// Rows [r0, r1) of the weights against every activation row: y[b * y_stride + r] for b in
// [0, batch), each element equal, bit for bit, to the same level's VecDotFn. A GEMM micro-kernel
// (weight rows decoded once per strip and reused for every activation row); optional per type.
using MatmulRowsFn = void (*)(std::int64_t cols, const void* weights, std::size_t weight_row_bytes,
                              std::int64_t r0, std::int64_t r1, const void* acts,
                              std::size_t act_row_bytes, std::int64_t batch, float* y,
                              std::size_t y_stride);
// Row-range granularity the matmul hands to a MatmulRowsFn (one strip of weight rows).
inline constexpr std::int64_t kMatmulRowsStrip = 16;

// Float row -> activation row (F16, BF16, Q8_0, Q8_1, Q8_K). Every level's quantizer produces the
// same bytes as the scalar reference.
using QuantizeFn = void (*)(const float* src, void* dst, std::int64_t n);

// Index by the GgmlType id (MXFP4 = 39 is the largest id sluice uses).
inline constexpr int kTypeSlots = 40;
constexpr int type_slot(GgmlType t) { return static_cast<int>(t); }
static_assert(type_slot(GgmlType::MXFP4) < kTypeSlots && type_slot(GgmlType::BF16) < kTypeSlots);

struct KernelTable {
  CpuIsa isa = CpuIsa::scalar;
  VecDotFn vec_dot[kTypeSlots] = {};
  VecDotMultiFn vec_dot_multi[kTypeSlots] = {};
  MatmulRowsFn matmul_rows[kTypeSlots] = {};
  // Smallest batch for which the matmul calls matmul_rows (0: any); below it the matmul runs the
  // vec_dot and vec_dot_multi row by row. Set per type from measurements where a GEMM kernel only
  // pays at larger batches; the kernel itself is correct at every batch (the tests call it so).
  std::int64_t matmul_rows_min_batch[kTypeSlots] = {};
  QuantizeFn quantize_activation[kTypeSlots] = {};
  // Float row -> weight row, the same bytes as quantize_row_reference, where the level has a
  // faster kernel (Q4_K, Q5_K on AVX2); nullptr elsewhere (quantize_row_weights then uses the
  // reference). Not filled in from the scalar level.
  QuantizeFn quantize_weights[kTypeSlots] = {};
  // Row kernels (row_kernels.hpp); every level has them.
  AttentionScoresF16Fn attention_scores_f16 = nullptr;
  AttentionValuesF16Fn attention_values_f16 = nullptr;
  GegluFn geglu = nullptr;
  SwigluFn swiglu = nullptr;
};

// Best level this CPU (and OS) supports, ignoring SLUICE_CPU_ISA.
CpuIsa detected_isa();
// Level in use: detected_isa(), or SLUICE_CPU_ISA where set and supported. Read once.
CpuIsa active_isa();
bool isa_supported(CpuIsa isa);

// The complete table of a level (missing entries filled from the scalar level), or nullptr when
// the CPU lacks the level. Built once; thread-safe.
const KernelTable* kernels_for(CpuIsa isa);
// kernels_for(active_isa()), never nullptr.
const KernelTable& active_kernels();

// What the level itself implements, before the scalar fill-in (for tests and reports): true when
// `type`'s vec_dot at `isa` is a SIMD kernel rather than the scalar fallback.
bool has_native_vec_dot(CpuIsa isa, GgmlType type);

// Registration hooks of the SIMD files (defined in quants_*_avx2.cpp / quants_*_avx512.cpp). Only
// called after the CPU check: their code is compiled for the level.
void register_avx2_kernels(KernelTable& table);
void register_avx2_weight_quantizers(KernelTable& table);  // k_quant_search_avx2.cpp
void register_avx512_kernels(KernelTable& table);

// quantize_row_reference(type, src, dst, n), the same bytes, with the active level's weight
// quantizer where it has one: for writing large models (`sluice synth`). Thread-safe.
void quantize_row_weights(GgmlType type, const float* src, void* dst, std::int64_t n);

}  // namespace sluice::cpu
