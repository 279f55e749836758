#include "model/model_config.hpp"

#include <cmath>
#include <fmt/format.h>
#include <stdexcept>

namespace sluice {

const char* to_string(Arch arch) {
  switch (arch) {
    case Arch::llama: return "llama";
    case Arch::qwen2: return "qwen2";
    case Arch::gemma3: return "gemma3";
  }
  return "?";
}

std::string Metadata::require_string(std::string_view key) const {
  auto v = get_string(key);
  if (!v) throw std::runtime_error(fmt::format("{}: required metadata key '{}' is missing", source(), key));
  return *v;
}

std::uint64_t Metadata::require_uint(std::string_view key) const {
  auto v = get_uint(key);
  if (!v) throw std::runtime_error(fmt::format("{}: required metadata key '{}' is missing", source(), key));
  return *v;
}

ModelConfig config_from_metadata(const Metadata& md) {
  ModelConfig c;
  c.arch_name = md.require_string("general.architecture");
  if (c.arch_name == "llama") c.arch = Arch::llama;
  else if (c.arch_name == "qwen2") c.arch = Arch::qwen2;
  else if (c.arch_name == "gemma3") c.arch = Arch::gemma3;
  else {
    throw std::runtime_error(fmt::format("{}: architecture '{}' is not supported (sluice runs llama, qwen2, gemma3)",
                                         md.source(), c.arch_name));
  }
  const std::string a = c.arch_name + ".";
  c.n_embd = std::int64_t(md.require_uint(a + "embedding_length"));
  c.n_layer = std::int64_t(md.require_uint(a + "block_count"));
  c.n_head = std::int64_t(md.require_uint(a + "attention.head_count"));
  c.n_head_kv = std::int64_t(md.get_uint(a + "attention.head_count_kv").value_or(std::uint64_t(c.n_head)));
  c.n_ff = std::int64_t(md.require_uint(a + "feed_forward_length"));
  c.n_ctx_train = std::int64_t(md.get_uint(a + "context_length").value_or(2048));
  c.head_dim = std::int64_t(md.get_uint(a + "attention.key_length").value_or(std::uint64_t(c.n_embd / c.n_head)));
  c.n_rot = std::int64_t(md.get_uint(a + "rope.dimension_count").value_or(std::uint64_t(c.head_dim)));
  c.rms_eps = float(md.get_float(a + "attention.layer_norm_rms_epsilon").value_or(1e-5));
  c.rope_base = float(md.get_float(a + "rope.freq_base").value_or(10000.0));
  // llama.cpp: the scaling type defaults to linear, and the factor (rope.scaling.factor, or the
  // older rope.scale_linear) applies whenever it is present and nonzero.
  if (auto type = md.get_string(a + "rope.scaling.type"); !type || *type == "linear") {
    double factor = md.get_float(a + "rope.scaling.factor").value_or(md.get_float(a + "rope.scale_linear").value_or(0.0));
    if (factor > 0) c.rope_freq_scale = float(1.0 / factor);
  }
  if (auto vocab = md.get_uint(a + "vocab_size")) c.n_vocab = std::int64_t(*vocab);
  else if (auto tokens = md.get_string_array("tokenizer.ggml.tokens")) c.n_vocab = std::int64_t(tokens->size());
  // llama pairs adjacent dims (the converter permutes Q/K for it); qwen2 and gemma3 use NEOX.
  c.rope_neox = c.arch != Arch::llama;
  if (c.n_embd <= 0 || c.n_layer <= 0 || c.n_head <= 0 || c.n_head_kv <= 0 || c.n_head % c.n_head_kv != 0 ||
      c.head_dim <= 0 || c.n_rot <= 0 || c.n_rot > c.head_dim || c.n_rot % 2 != 0) {
    throw std::runtime_error(fmt::format("{}: inconsistent attention shape (embd {}, heads {}, kv heads {}, head dim {}, rot {})",
                                         md.source(), c.n_embd, c.n_head, c.n_head_kv, c.head_dim, c.n_rot));
  }
  if (c.arch == Arch::gemma3) {
    // As llama.cpp's llama_model_gemma3::load_arch_hparams and its graph (src/models/gemma3.cpp).
    c.embedding_scale = std::sqrt(float(c.n_embd));
    c.qk_norm = true;
    c.post_norms = true;
    c.ffn_gelu = true;
    // Gemma 3 27B (62 layers) scales by 1/sqrt(n_embd / n_head), every other size by
    // 1/sqrt(key length) (gemma_pytorch config.py, which llama.cpp follows by layer count).
    const std::int64_t scale_dim = c.n_layer == 62 ? c.n_embd / c.n_head : c.head_dim;
    c.attention_scale = 1.0f / std::sqrt(float(scale_dim));
    c.sliding_window = std::int64_t(md.get_uint(a + "attention.sliding_window").value_or(0));
    if (c.sliding_window > 0) {
      // Pattern 6: five local layers, then one global (layer il is local iff il % 6 < 5).
      // Pattern 0 makes every layer local, as in llama.cpp's set_swa_pattern.
      const std::uint64_t pattern = md.get_uint(a + "attention.sliding_window_pattern").value_or(6);
      c.local_layers.resize(std::size_t(c.n_layer));
      for (std::int64_t il = 0; il < c.n_layer; ++il) {
        c.local_layers[std::size_t(il)] = pattern == 0 || std::uint64_t(il) % pattern < pattern - 1;
      }
      c.rope_base_local = float(md.get_float(a + "rope.freq_base_swa").value_or(10000.0));
      c.rope_freq_scale_local = 1.0f;  // llama.cpp scales only the global layers' positions
    }
    c.final_softcap = float(md.get_float(a + "final_logit_softcapping").value_or(0.0));
  }
  return c;
}

}  // namespace sluice
