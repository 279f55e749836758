// Architecture hyper-parameters of a decoder-only transformer, read from GGUF metadata
// (`{arch}.embedding_length` etc., the names llama.cpp writes and reads).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/metadata.hpp"

namespace sluice {

enum class Arch { llama, qwen2, gemma3 };
const char* to_string(Arch arch);

struct ModelConfig {
  Arch arch = Arch::llama;
  std::string arch_name;
  std::int64_t n_vocab = 0;
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

  // Is layer `il` a sliding-window (local) layer?
  bool is_local_layer(std::int64_t il) const {
    return sliding_window > 0 && il >= 0 && il < std::int64_t(local_layers.size()) && local_layers[std::size_t(il)];
  }
};

// Throws std::runtime_error naming the file and key for unsupported architectures or missing keys.
ModelConfig config_from_metadata(const Metadata& metadata);

}  // namespace sluice
