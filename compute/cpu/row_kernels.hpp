// Kernels over float rows that are not matrix products, per instruction-set level (kernels.hpp's
// KernelTable holds the active level's): attention's two inner loops over an fp16 KV cache, and
// GeGLU and SwiGLU. ops.cpp keeps the softmax, the masking and the head bookkeeping. Each level computes a
// key's score, and a value's contribution, with the same operations whatever the number of keys
// in the call, so a row attended in a prefill pass gets the same bits as the same row decoded
// alone.
#pragma once

#include <cstdint>

namespace sluice::cpu {

struct KernelTable;

// scores[j] = sum_d fp16(q[d]) * key_j[d] for j in [0, n), key_j = keys + j * key_stride (halves),
// head_dim <= kMaxAttentionHeadDim: q is rounded to fp16 first (round to nearest even), as
// llama.cpp's f16 mul_mat converts it.
using AttentionScoresF16Fn = void (*)(const float* q, const std::uint16_t* keys, std::int64_t key_stride,
                                      std::int64_t n, std::int32_t head_dim, float* scores);
// out[d] += sum_j fp16(weights[j]) * value_j[d] for d in [0, head_dim), j in order: each weight is
// rounded to fp16 first, as llama.cpp's f16 mul_mat rounds the softmax.
using AttentionValuesF16Fn = void (*)(const float* weights, const std::uint16_t* values,
                                      std::int64_t value_stride, std::int64_t n, std::int32_t head_dim,
                                      float* out);
inline constexpr std::int32_t kMaxAttentionHeadDim = 512;

// out[i] = gelu(gate[i]) * up[i] as ggml's GELU_FP16 (ops.hpp geglu): 0 for gate <= -10, gate
// itself for gate >= 10, else fp16_to_fp32(table[fp32_to_fp16(gate[i])]). `table` holds 65536
// halves and one more (SIMD levels read 4 bytes at each entry). out may alias gate.
using GegluFn = void (*)(const float* gate, const float* up, float* out, std::int64_t n, const std::uint16_t* table);
// ggml's bounds: outside (-10, 10) GELU is 0 or the identity to fp16 precision anyway.
inline constexpr float kGeluTableLimit = 10.0f;

// out[i] = silu(gate[i]) * up[i] = gate[i] / (1 + exp(-gate[i])) * up[i], as ggml's
// ggml_vec_swiglu_f32 on a CPU of the same level: the scalar level calls std::exp (ggml_silu_f32);
// the SIMD levels use ggml's ggml_v_expf of their width (Arm optimized-routines expf, <= 1.45 +
// 0.5 ulp; exp flushes to 0 below about -103.97 and to infinity above 88.38) and one division.
// Tails take the vector path too (ggml's take the scalar one), so an element's bits do not depend
// on where it falls in the call: a batch of rows gets the bits of each row alone. out may alias gate.
using SwigluFn = void (*)(const float* gate, const float* up, float* out, std::int64_t n);

namespace scalar {
// The references: one float sum per key in d order; per value dimension, a multiply then an add
// per key (no fused multiply-add), as the scalar attention always did.
void attention_scores_f16(const float* q, const std::uint16_t* keys, std::int64_t key_stride, std::int64_t n,
                          std::int32_t head_dim, float* scores);
void attention_values_f16(const float* weights, const std::uint16_t* values, std::int64_t value_stride,
                          std::int64_t n, std::int32_t head_dim, float* out);
void geglu(const float* gate, const float* up, float* out, std::int64_t n, const std::uint16_t* table);
void swiglu(const float* gate, const float* up, float* out, std::int64_t n);
}  // namespace scalar

// Registration hooks of row_kernels_avx2.cpp / row_kernels_avx512.cpp (after the CPU check only).
void register_avx2_row_kernels(KernelTable& table);
void register_avx512_row_kernels(KernelTable& table);

}  // namespace sluice::cpu
