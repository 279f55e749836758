// Attention's inner loops over an fp16 KV cache, per instruction-set level (kernels.hpp's
// KernelTable holds the active level's). ops.cpp's attend() keeps the softmax, the masking and
// the head bookkeeping; these only multiply. Each level computes a key's score, and a value's
// contribution, with the same operations whatever the number of keys in the call, so a row
// attended in a prefill pass gets the same bits as the same row decoded alone.
#pragma once

#include <cstdint>

namespace sluice::cpu {

struct KernelTable;

// scores[j] = sum_d q[d] * key_j[d] for j in [0, n), key_j = keys + j * key_stride (halves);
// head_dim floats of q (already rounded to fp16 values by the caller, as llama.cpp's f16 mul_mat).
using AttentionScoresF16Fn = void (*)(const float* q, const std::uint16_t* keys, std::int64_t key_stride,
                                      std::int64_t n, std::int32_t head_dim, float* scores);
// out[d] += sum_j fp16(weights[j]) * value_j[d] for d in [0, head_dim), j in order: each weight is
// rounded to fp16 first (round to nearest even), as llama.cpp's f16 mul_mat rounds the softmax.
using AttentionValuesF16Fn = void (*)(const float* weights, const std::uint16_t* values,
                                      std::int64_t value_stride, std::int64_t n, std::int32_t head_dim,
                                      float* out);

namespace scalar {
// The references: one float sum per key in d order; per value dimension, a multiply then an add
// per key (no fused multiply-add), as the scalar attention always did.
void attention_scores_f16(const float* q, const std::uint16_t* keys, std::int64_t key_stride, std::int64_t n,
                          std::int32_t head_dim, float* scores);
void attention_values_f16(const float* weights, const std::uint16_t* values, std::int64_t value_stride,
                          std::int64_t n, std::int32_t head_dim, float* out);
}  // namespace scalar

// Registration hooks of attention_avx2.cpp / attention_avx512.cpp (after the CPU check only).
void register_avx2_attention(KernelTable& table);
void register_avx512_attention(KernelTable& table);

}  // namespace sluice::cpu
