// Architecture hyper-parameters of a decoder-only transformer, read from GGUF metadata
// (`{arch}.embedding_length` etc., the names llama.cpp writes and reads).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/metadata.hpp"

namespace sluice {

enum class Arch { llama, qwen2, gemma3, qwen3moe, gpt_oss };
const char* to_string(Arch arch);

// Limits on hyper-parameters read from a file, each well above any released model (largest
// today: 126 blocks, embedding 16384, feed-forward 53248, 262144 tokens, 128 heads), so a corrupt
// value is refused before anything is sized from it. Heads, head length and window also fit the
// int32 the kernels take.
inline constexpr std::uint64_t kMaxBlockCount = 4096;
inline constexpr std::uint64_t kMaxEmbedding = 1u << 20;
inline constexpr std::uint64_t kMaxFeedForward = 1u << 22;
inline constexpr std::uint64_t kMaxHeads = 1u << 14;
inline constexpr std::uint64_t kMaxHeadDim = 1u << 14;
inline constexpr std::uint64_t kMaxVocabulary = 1u << 24;
inline constexpr std::uint64_t kMaxContext = 1u << 30;
// Experts per MoE layer: llama.cpp's LLAMA_MAX_EXPERTS (the largest released models have 384).
inline constexpr std::uint64_t kMaxExperts = 512;

struct ModelConfig {
  Arch arch = Arch::llama;
  std::string arch_name;
  std::int64_t n_vocab = 0;        // 0 until known: from token_embd's rows when no key gives it
  std::string n_vocab_key;         // the key n_vocab came from; empty when from token_embd
  std::int64_t n_embd = 0;
  std::int64_t n_layer = 0;
  std::int64_t n_head = 0;
  std::int64_t n_head_kv = 0;
  std::int64_t head_dim = 0;       // key/value length per head
  std::int64_t n_ff = 0;
  std::int64_t n_ctx_train = 0;
  float rms_eps = 1e-5f;
  float rope_base = 10000.0f;
  float rope_freq_scale = 1.0f;      // 1 / linear scaling factor
  std::int64_t n_rot = 0;
  bool rope_neox = false;            // pairing: neox (i, i+n/2) vs adjacent (2i, 2i+1)
  // YaRN (rope.scaling.type "yarn"; gpt-oss): rope_freq_scale = 1 / factor, and ggml's blend of
  // interpolated and extrapolated angles (compute::RopeParams), with the magnitude factor
  // llama.cpp's context computes (its own mscale, cancelled, times ggml's 1 + 0.1 ln factor).
  float yarn_ext_factor = 0.0f;      // 0: no YaRN
  float yarn_attn_factor = 1.0f;
  float yarn_beta_fast = 32.0f;
  float yarn_beta_slow = 1.0f;
  std::int64_t n_ctx_orig_yarn = 0;  // rope.scaling.original_context_length (else context_length)
  // Sliding-window (local) attention, gemma3: local layers see the last `sliding_window`
  // positions and rotate with their own base and no scaling; the others are global.
  std::int64_t sliding_window = 0;   // 0: every layer is global
  std::vector<bool> local_layers;    // n_layer entries when sliding_window > 0
  float rope_base_local = 10000.0f;
  float rope_freq_scale_local = 1.0f;
  // gemma3 (llama.cpp's graph): embedding rows scaled by embedding_scale, per-head RMSNorm of
  // Q and K, Q multiplied by attention_scale before attention (which then scales by 1), norms
  // after attention and after the FFN, GeGLU instead of SwiGLU.
  float embedding_scale = 1.0f;
  float attention_scale = 0.0f;      // 0: 1/sqrt(head_dim), applied to q.k inside attention
  bool qk_norm = false;
  bool post_norms = false;
  bool ffn_gelu = false;             // GeGLU (tanh GELU) instead of SwiGLU
  float final_softcap = 0.0f;        // logits <- cap * tanh(logits / cap); 0: none
  // Mixture of experts (qwen3moe; llama with {arch}.expert_count > 0, i.e. Mixtral): every
  // layer's FFN is n_expert SwiGLU experts of width n_ff_exp, of which a router (softmax over
  // ffn_gate_inp's logits) picks n_expert_used per token, weighted by their probabilities
  // renormalised to sum 1 (llama.cpp's build_moe_ffn with norm_w). 0 experts: a dense FFN.
  std::int64_t n_expert = 0;
  std::int64_t n_expert_used = 0;
  std::int64_t n_ff_exp = 0;         // one expert's feed-forward length
  std::string n_ff_exp_key;          // where n_ff_exp came from (for messages)
  // gpt-oss (llama.cpp's LLM_ARCH_OPENAI_MOE graph): learned attention sinks per head, biases on
  // the attention output, the router and every expert's three matrices, the FFN's norm named
  // post_attention_norm, routing by "select, then softmax" (the top-k logits, softmax over those
  // k; no renormalisation), and SwiGLU-OAI experts (compute/op_params.hpp).
  bool attn_sinks = false;
  bool moe_biases = false;
  bool ffn_norm_is_post_attn = false;
  bool moe_select_then_softmax = false;
  bool ffn_swiglu_oai = false;
  float swiglu_oai_alpha = 1.702f;  // gpt-oss's constants (llama.cpp's build_moe_ffn)
  float swiglu_oai_limit = 7.0f;

  bool is_moe() const { return n_expert > 0; }

  // Is layer `il` a sliding-window (local) layer?
  bool is_local_layer(std::int64_t il) const {
    return sliding_window > 0 && il >= 0 && il < std::int64_t(local_layers.size()) && local_layers[std::size_t(il)];
  }
};

// Throws std::runtime_error naming the file, the key and its value for an unsupported
// architecture, a missing key, or a value out of range or inconsistent with the others
// ("model.gguf: llama.attention.head_count = 0: must be at least 1"). The tensors are checked
// against the result by check_model_tensors (model/tensor_check.hpp).
ModelConfig config_from_metadata(const Metadata& metadata);

}  // namespace sluice
