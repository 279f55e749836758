// Row-level quantization API of the CPU backend: dequantize, reference-quantize (as ggml's
// quantize_row_*_ref, for writing models), quantize activations to a weight type's "vec dot type",
// and dot one weight row with one quantized activation row.
//
// The scalar functions here are the reference ("generic") kernels, written after ggml's
// ggml-quants.c and ggml-cpu/quants.c: integer block sums, then scales, in ggml's order, so results
// track llama.cpp's. SIMD kernels (compute/cpu/kernels.hpp) are tested against them.
//
// All functions are thread-safe (no shared state) and need no alignment. n is the number of
// elements and must be a multiple of the type's block size (block_elements); a violation is a
// programmer error and aborts with file and line.
#pragma once

#include <cstddef>
#include <cstdint>

#include "compute/cpu/blocks.hpp"

namespace sluice::cpu {

// The weight types sluice computes with: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K,
// MXFP4.
bool is_weight_type(GgmlType type);

// Elements per block and bytes per block of any type in kBlockGeometry (aborts for others).
std::uint32_t block_elements(GgmlType type);
std::size_t row_bytes(GgmlType type, std::int64_t n);

// The activation type a weight type's dot product consumes (ggml's vec_dot_type): F32 -> F32,
// F16 -> F16, BF16 -> BF16, Q4_0/Q5_0/Q8_0/MXFP4 -> Q8_0, Q4_1/Q5_1 -> Q8_1, K-quants -> Q8_K.
GgmlType vec_dot_type(GgmlType weight_type);

// dst[0..n) = values of the row src (any weight type, or Q8_0/Q8_1/Q8_K).
void dequantize_row(GgmlType type, const void* src, float* dst, std::int64_t n);

// Quantize a float row as ggml's reference quantizers do (quantize_row_*_ref: no importance
// matrix), for every weight type; dst receives row_bytes(type, n) bytes. Deterministic.
void quantize_row_reference(GgmlType type, const float* src, void* dst, std::int64_t n);

// Quantize a float row of activations to `act_type` (F32, F16, BF16, Q8_0, Q8_1 or Q8_K) as
// llama.cpp's CPU backend does on x86 (scalar code; Q8_0/Q8_1: quantize_q8_0_act/q8_1_act, Q8_K:
// ggml's reference). Quants lie in [-127, 127], which the SIMD dot products rely on.
void quantize_activation_row(GgmlType act_type, const float* src, void* dst, std::int64_t n);

// Scalar reference dot product of a weight row of `type` with an activation row already in
// vec_dot_type(type), computed as ggml's generic vec_dot (F32/F16/BF16 accumulate in double, as
// ggml's scalar ggml_vec_dot_f32/f16/bf16 do).
float vec_dot(GgmlType type, std::int64_t n, const void* weights_row, const void* activation_row);

namespace scalar {
// Per-type entry points, used by the dispatcher and the tests. Signatures follow the generic
// pointer shapes of KernelTable (compute/cpu/kernels.hpp).
float vec_dot_f32(std::int64_t n, const void* w, const void* a);
float vec_dot_f16(std::int64_t n, const void* w, const void* a);
float vec_dot_bf16(std::int64_t n, const void* w, const void* a);
float vec_dot_q4_0(std::int64_t n, const void* w, const void* a);
float vec_dot_q4_1(std::int64_t n, const void* w, const void* a);
float vec_dot_q5_0(std::int64_t n, const void* w, const void* a);
float vec_dot_q5_1(std::int64_t n, const void* w, const void* a);
float vec_dot_q8_0(std::int64_t n, const void* w, const void* a);
float vec_dot_q2_k(std::int64_t n, const void* w, const void* a);
float vec_dot_q3_k(std::int64_t n, const void* w, const void* a);
float vec_dot_q4_k(std::int64_t n, const void* w, const void* a);
float vec_dot_q5_k(std::int64_t n, const void* w, const void* a);
float vec_dot_q6_k(std::int64_t n, const void* w, const void* a);
float vec_dot_mxfp4(std::int64_t n, const void* w, const void* a);

void quantize_f16(const float* x, void* y, std::int64_t n);
void quantize_bf16(const float* x, void* y, std::int64_t n);
void quantize_q8_0(const float* x, void* y, std::int64_t n);
void quantize_q8_1(const float* x, void* y, std::int64_t n);
// Activation (and q8_0 KV cache) quantizers as llama.cpp's CPU backend runs them on x86
// (quantize_q8_0/q8_1 above are ggml's reference quantizers, used for weights).
void quantize_q8_0_act(const float* x, void* y, std::int64_t n);
void quantize_q8_1_act(const float* x, void* y, std::int64_t n);
void quantize_q8_k(const float* x, void* y, std::int64_t n);

void quantize_q4_0(const float* x, void* y, std::int64_t n);
void quantize_q4_1(const float* x, void* y, std::int64_t n);
void quantize_q5_0(const float* x, void* y, std::int64_t n);
void quantize_q5_1(const float* x, void* y, std::int64_t n);
void quantize_q2_k(const float* x, void* y, std::int64_t n);
void quantize_q3_k(const float* x, void* y, std::int64_t n);
void quantize_q4_k(const float* x, void* y, std::int64_t n);
void quantize_q5_k(const float* x, void* y, std::int64_t n);
void quantize_q6_k(const float* x, void* y, std::int64_t n);
void quantize_mxfp4(const float* x, void* y, std::int64_t n);

void dequantize_q4_0(const void* x, float* y, std::int64_t n);
void dequantize_q4_1(const void* x, float* y, std::int64_t n);
void dequantize_q5_0(const void* x, float* y, std::int64_t n);
void dequantize_q5_1(const void* x, float* y, std::int64_t n);
void dequantize_q8_0(const void* x, float* y, std::int64_t n);
void dequantize_q8_1(const void* x, float* y, std::int64_t n);
void dequantize_q2_k(const void* x, float* y, std::int64_t n);
void dequantize_q3_k(const void* x, float* y, std::int64_t n);
void dequantize_q4_k(const void* x, float* y, std::int64_t n);
void dequantize_q5_k(const void* x, float* y, std::int64_t n);
void dequantize_q6_k(const void* x, float* y, std::int64_t n);
void dequantize_q8_k(const void* x, float* y, std::int64_t n);
void dequantize_mxfp4(const void* x, float* y, std::int64_t n);
}  // namespace scalar

}  // namespace sluice::cpu
