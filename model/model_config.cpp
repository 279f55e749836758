#include "model/model_config.hpp"

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
  if (auto type = md.get_string(a + "rope.scaling.type"); type && *type == "linear") {
    double factor = md.get_float(a + "rope.scaling.factor").value_or(1.0);
    if (factor > 0) c.rope_freq_scale = float(1.0 / factor);
  }
  if (auto vocab = md.get_uint(a + "vocab_size")) c.n_vocab = std::int64_t(*vocab);
  else if (auto tokens = md.get_string_array("tokenizer.ggml.tokens")) c.n_vocab = std::int64_t(tokens->size());
  // llama pairs adjacent dims (the converter permutes Q/K for it); qwen2 and gemma3 use NEOX.
  c.rope_neox = c.arch != Arch::llama;
  if (c.arch == Arch::gemma3) {
    c.rms_eps = float(md.get_float(a + "attention.layer_norm_rms_epsilon").value_or(1e-6));
    c.rope_base_local = 10000.0f;  // llama.cpp: gemma3 local layers use a fixed 10k base
    c.rope_base = float(md.get_float(a + "rope.freq_base").value_or(1000000.0));
    c.sliding_window = std::int64_t(md.get_uint(a + "attention.sliding_window").value_or(512));
    c.sliding_window_pattern = 6;  // 5 local layers, then 1 global (Gemma 3 paper, llama.cpp)
    c.attn_softcap = float(md.get_float(a + "attn_logit_softcapping").value_or(0.0));
    c.final_softcap = float(md.get_float(a + "final_logit_softcapping").value_or(0.0));
  }
  if (c.n_embd <= 0 || c.n_layer <= 0 || c.n_head <= 0 || c.n_head_kv <= 0 || c.n_head % c.n_head_kv != 0 ||
      c.head_dim <= 0 || c.n_rot <= 0 || c.n_rot > c.head_dim || c.n_rot % 2 != 0) {
    throw std::runtime_error(fmt::format("{}: inconsistent attention shape (embd {}, heads {}, kv heads {}, head dim {}, rot {})",
                                         md.source(), c.n_embd, c.n_head, c.n_head_kv, c.head_dim, c.n_rot));
  }
  return c;
}

}  // namespace sluice
