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
  float rope_base_local = 10000.0f;  // gemma3 sliding-window layers
  float rope_freq_scale = 1.0f;      // 1 / linear scaling factor
  std::int64_t n_rot = 0;
  bool rope_neox = false;            // pairing: neox (i, i+n/2) vs adjacent (2i, 2i+1)
  std::int64_t sliding_window = 0;   // gemma3
  std::int64_t sliding_window_pattern = 0;  // gemma3: every Nth layer is global
  float attn_softcap = 0.0f;
  float final_softcap = 0.0f;

  // Is layer `il` a sliding-window (local) layer? (gemma3: all but every pattern-th)
  bool is_local_layer(std::int64_t il) const {
    return sliding_window > 0 && sliding_window_pattern > 0 && (il + 1) % sliding_window_pattern != 0;
  }
};

// Throws std::runtime_error naming the file and key for unsupported architectures or missing keys.
ModelConfig config_from_metadata(const Metadata& metadata);

}  // namespace sluice
