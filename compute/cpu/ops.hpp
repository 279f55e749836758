// Transformer building blocks on float rows (CPU): RMSNorm, RoPE (both pairings), softmax,
// activations, and causal attention with GQA over an fp16 KV cache. Scalar and readable: these
// are O(n) or O(n * ctx) next to the O(n^2) matrix products, which live in matmul.hpp. The
// exception is attention's two inner loops over the cache (q . k_j, and sum_j w_j v_j): over a
// 512-token prefill they were half of Gemma 3 270M's time when scalar, so they are per-level
// kernels (row_kernels.hpp) and attend() keeps the softmax and the bookkeeping.
// Shapes follow llama.cpp: a row is one token's vector; heads are contiguous slices of a row.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "compute/cpu/blocks.hpp"
#include "compute/op_params.hpp"
#include "compute/views.hpp"

namespace sluice::cpu {

// out[i] = x[i] / sqrt(mean(x^2) + eps) * weight[i]   (weight may be null: no scaling)
void rms_norm(const float* x, const float* weight, float* out, std::int64_t n, float eps);

// Rotates `n_heads` heads of `head_dim` floats at position `pos`, in place. With YaRN
// (p.ext_factor != 0 or p.attn_factor != 1) the angles and magnitudes are ggml's rope_yarn's,
// computed in its order (ggml_rope_cache_init).
void rope(float* x, std::int32_t n_heads, std::int32_t head_dim, std::int64_t pos, const RopeParams& p);

void softmax(float* x, std::int64_t n);
// softmax with one more logit, `sink`, in the denominator only (ggml's soft_max with sinks):
// x[i] = exp(x[i] - m) / (sum_j exp(x[j] - m) + exp(sink - m)), m = max(max x, sink).
void softmax_with_sink(float* x, std::int64_t n, float sink);
// SwiGLU-OAI (compute/op_params.hpp) as ggml_compute_forward_swiglu_oai_f32; out may alias gate.
void swiglu_oai(const float* gate, const float* up, float* out, std::int64_t n, const compute::SwigluOaiParams& p);
float silu(float x);  // x / (1 + std::exp(-x)): the scalar level's SiLU
// out[i] = silu(gate[i]) * up[i] with the active level's kernel (row_kernels.hpp: ggml's
// vectorised expf on AVX2 and AVX-512, as llama.cpp on the same CPU). out may alias gate.
void swiglu(const float* gate, const float* up, float* out, std::int64_t n);
float gelu_tanh(float x);  // GELU, tanh approximation (Gemma's GeGLU)
// out[i] = gelu_tanh(gate[i]) * up[i] the way ggml's CPU backend computes it (GGML_GELU_FP16):
// for |gate| < 10 the GELU is read from a table over fp16 inputs (gate rounded to fp16, result
// rounded to fp16); below -10 it is 0, above 10 the identity. Matching that rounding keeps
// Gemma's FFN within float noise of llama.cpp's. out may alias gate.
void geglu(const float* gate, const float* up, float* out, std::int64_t n);

// fp16 storage for the KV cache uses fp32_to_fp16 / fp16_to_fp32 from blocks.hpp (IEEE half,
// round to nearest even), as llama.cpp's default f16 cache. KvType, KvLayerView and
// AttentionShape live in compute/ (views.hpp, op_params.hpp), shared with every backend.

// Causal attention of one query row at position `pos` against cache positions [0, pos]:
// out (n_head * head_dim) = sum_j softmax_j(q . k_j * scale) v_j, head h using KV head
// h / (n_head / n_head_kv) (and, with shape.sinks, head h's sink in its softmax's denominator). q and the softmax weights are rounded to fp16 before they meet the
// fp16 cache, as llama.cpp does. With a q8_0 cache, q and the weights stay fp32 and each key
// and value is dequantized as it is read. Heads run in parallel (TBB, in the caller's task arena:
// CpuBackend calls it inside its compute::Executor) when the context is long enough to pay for
// it. Thread-safe for distinct `out`.
void attend(const float* q, const KvLayerView& kv, std::int64_t pos, const AttentionShape& shape, float* out);

// Scratch attend() may hold on one thread for a context of n_ctx positions: one head's scores
// (n_ctx floats, allocated per task and freed with it; a thread runs one such task at a time),
// and as many again for the allocator's slack (a freed vector of this size stays in the thread's
// malloc arena for the next). Nothing in attention grows with the number of rows in a pass: each
// row is attended on its own.
std::uint64_t attention_scratch_bytes(std::int64_t n_ctx);

// Writes one token's k and v rows (n_head_kv * head_dim floats each) into the cache at `pos`.
void kv_store(const KvLayerView& kv, std::int64_t pos, std::int64_t row_floats, const float* k, const float* v);

}  // namespace sluice::cpu
