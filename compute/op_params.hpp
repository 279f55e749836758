// Parameters of the transformer ops every compute backend implements (compute/backend.hpp):
// RoPE, attention, and how many CPU threads a backend's own executor has. Shapes follow
// llama.cpp: a row is one token's vector; heads are contiguous slices of a row.
#pragma once

#include <cstdint>

namespace sluice::compute {

// How many threads a backend that makes its own executor (compute/executor.hpp) gives it.
struct Threading {
  int threads = 0;  // 0: every core this process may run on
};

enum class RopeKind {
  adjacent,  // llama ("norm"): rotates pairs (2i, 2i+1)
  neox,      // qwen2, gemma3 ("neox"): rotates pairs (i, i + n_rot/2)
};

struct RopeParams {
  RopeKind kind = RopeKind::adjacent;
  std::int32_t n_rot = 0;       // rotated dims per head (= head_dim for every model we run)
  float freq_base = 10000.0f;
  float freq_scale = 1.0f;      // linear position scaling (1 = none)
  const float* freq_factors = nullptr;  // llama 3 "rope_freqs.weight": theta_i /= factors[i]
  // YaRN (gpt-oss), as ggml's rope_yarn: with ext_factor != 0 each pair's angle blends the
  // interpolated (freq_scale * theta) and extrapolated (theta) angles by a ramp over the pairs
  // between the correction dims of beta_fast and beta_slow rotations in n_ctx_orig positions, and
  // cos/sin are multiplied by attn_factor * (1 + 0.1 ln(1 / freq_scale)). ext_factor 0 and
  // attn_factor 1: plain RoPE, computed as before.
  float ext_factor = 0.0f;
  float attn_factor = 1.0f;
  float beta_fast = 32.0f;
  float beta_slow = 1.0f;
  std::int32_t n_ctx_orig = 0;
};

struct AttentionShape {
  std::int32_t n_head = 0;
  std::int32_t n_head_kv = 0;
  std::int32_t head_dim = 0;
  float scale = 0.0f;           // usually 1/sqrt(head_dim)
  std::int32_t window = 0;      // sliding window (0: none): key j visible iff pos - j < window
  float softcap = 0.0f;         // attention logit soft-capping (0: none)
  // Attention sinks (gpt-oss): n_head learned logits, head h's joining each row's softmax
  // denominator (exp(sinks[h] - max) added to the sum, no value row); null: none.
  const float* sinks = nullptr;
};

// SwiGLU-OAI (gpt-oss): out = g * sigmoid(alpha * g) * (u + 1), g = min(gate, limit),
// u = clamp(up, -limit, limit) (ggml_swiglu_oai; the real model: alpha 1.702, limit 7).
struct SwigluOaiParams {
  float alpha = 1.702f;
  float limit = 7.0f;
};

}  // namespace sluice::compute

// Transition: the cpu:: spellings of these names (they lived in compute/cpu/ops.hpp and
// matmul.hpp), kept for tools/ and tests that still write cpu::Threading. New code says compute::.
namespace sluice::cpu {
using compute::AttentionShape;
using compute::RopeKind;
using compute::RopeParams;
using compute::Threading;
}  // namespace sluice::cpu
