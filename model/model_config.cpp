#include "model/model_config.hpp"

#include <algorithm>
#include <cmath>
#include <fmt/format.h>
#include <limits>
#include <optional>
#include <stdexcept>

namespace sluice {

const char* to_string(Arch arch) {
  switch (arch) {
    case Arch::llama: return "llama";
    case Arch::qwen2: return "qwen2";
    case Arch::gemma3: return "gemma3";
    case Arch::qwen3moe: return "qwen3moe";
    case Arch::gpt_oss: return "gpt-oss";
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

namespace {

// Reads keys and refuses values that would crash or corrupt memory later, naming the key and
// the value it had.
class KeyReader {
 public:
  KeyReader(const Metadata& md, std::string prefix) : md_(md), prefix_(std::move(prefix)) {}

  [[noreturn]] void fail(std::string_view key, const std::string& value, std::string_view why) const {
    throw std::runtime_error(fmt::format("{}: {}{} = {}: {}", md_.source(), prefix_, key, value, why));
  }

  // An integer in [lo, hi]; `fallback` when absent (nullopt: the key is required).
  std::int64_t count(std::string_view key, std::uint64_t lo, std::uint64_t hi, std::optional<std::uint64_t> fallback) const {
    const std::string full = prefix_ + std::string(key);
    std::optional<std::uint64_t> v = md_.get_uint(full);
    if (!v && !fallback) v = md_.require_uint(full);  // throws "missing"
    const std::uint64_t value = v.value_or(*fallback);
    if (value < lo) fail(key, std::to_string(value), fmt::format("must be at least {}", lo));
    if (value > hi) fail(key, std::to_string(value), fmt::format("exceeds the limit of {}", hi));
    return std::int64_t(value);
  }

  // A finite number > 0 (>= 0 when `zero_ok`); `fallback` when absent.
  double positive(std::string_view key, double fallback, bool zero_ok = false) const {
    const double value = md_.get_float(prefix_ + std::string(key)).value_or(fallback);
    if (!std::isfinite(value) || value < 0 || (value == 0 && !zero_ok)) {
      fail(key, fmt::format("{}", value), zero_ok ? "must be a finite number >= 0" : "must be a finite number > 0");
    }
    return value;
  }

  bool has(std::string_view key) const { return md_.get_uint(prefix_ + std::string(key)).has_value(); }

  // A number (float or integer) the architecture needs: "missing", naming it and `why`, when absent.
  void require_number(std::string_view key, std::string_view why) const {
    const std::string full = prefix_ + std::string(key);
    if (md_.get_float(full) || md_.get_uint(full)) return;
    throw std::runtime_error(fmt::format("{}: required metadata key '{}' is missing ({})", md_.source(), full, why));
  }

 private:
  const Metadata& md_;
  std::string prefix_;
};

// rope.scaling.type "yarn": the factor (required), the optional YaRN keys llama.cpp reads, and the
// magnitude factor llama.cpp's context derives (llama_context's constructor: get_mscale(factor)
// cancelled by 1 / (1 + 0.1 ln factor), which ggml's rope multiplies back in), in its float order.
void read_yarn(const Metadata& md, const KeyReader& key, ModelConfig& c) {
  const std::string a = c.arch_name + ".";
  key.require_number("rope.scaling.factor", "rope.scaling.type is yarn");
  const float factor = float(key.positive("rope.scaling.factor", 1.0));
  if (factor < 1.0f) key.fail("rope.scaling.factor", fmt::format("{}", factor), "must be at least 1 for YaRN");
  c.rope_freq_scale = 1.0f / factor;
  c.yarn_ext_factor = float(key.positive("rope.scaling.yarn_ext_factor", 1.0, /*zero_ok=*/true));
  c.yarn_beta_fast = float(key.positive("rope.scaling.yarn_beta_fast", 32.0));
  c.yarn_beta_slow = float(key.positive("rope.scaling.yarn_beta_slow", 1.0));
  c.n_ctx_orig_yarn = key.count("rope.scaling.original_context_length", 1, kMaxContext, std::uint64_t(c.n_ctx_train));
  if (key.positive("rope.scaling.yarn_log_multiplier", 0.0, true) != 0.0) {
    key.fail("rope.scaling.yarn_log_multiplier", fmt::format("{}", *md.get_float(a + "rope.scaling.yarn_log_multiplier")),
             "not supported (sluice's YaRN has no separate attention temperature)");
  }
  c.yarn_attn_factor = 1.0f;
  if (c.yarn_ext_factor != 0.0f) {
    const float f = 1.0f / c.rope_freq_scale;
    c.yarn_attn_factor = f <= 1.0f ? 1.0f : 0.1f * 1.0f * std::log(f) + 1.0f;
    c.yarn_attn_factor *= 1.0f / (1.0f + 0.1f * std::log(f));
  }
  c.yarn_attn_factor *= float(key.positive("rope.scaling.attn_factor", 1.0));
}

// gpt-oss, as llama.cpp's llama_model_openai_moe::load_arch_hparams and its graph.
void read_gpt_oss(const KeyReader& key, ModelConfig& c) {
  c.rope_neox = true;
  c.attn_sinks = true;
  c.moe_biases = true;
  c.ffn_norm_is_post_attn = true;
  c.moe_select_then_softmax = true;
  c.ffn_swiglu_oai = true;
  // Alternate sliding-window and full layers: with period P (sliding_window_pattern, default 2)
  // layer il is local iff il % P < P - 1 (so layers 0, 2, 4, ... slide); P 0: every layer local.
  c.sliding_window = key.count("attention.sliding_window", 1, std::numeric_limits<std::int32_t>::max(), std::nullopt);
  const std::uint64_t pattern = key.count("attention.sliding_window_pattern", 0, kMaxBlockCount, 2);
  c.local_layers.resize(std::size_t(c.n_layer));
  for (std::int64_t il = 0; il < c.n_layer; ++il) {
    c.local_layers[std::size_t(il)] = pattern == 0 || std::uint64_t(il) % pattern < pattern - 1;
  }
  // The local layers rotate as the others (rope.freq_base_swa when given), scaled alike.
  c.rope_base_local = float(key.positive("rope.freq_base_swa", double(c.rope_base)));
  c.rope_freq_scale_local = c.rope_freq_scale;
}

}  // namespace

ModelConfig config_from_metadata(const Metadata& md) {
  ModelConfig c;
  c.arch_name = md.require_string("general.architecture");
  if (c.arch_name == "llama") c.arch = Arch::llama;
  else if (c.arch_name == "qwen2") c.arch = Arch::qwen2;
  else if (c.arch_name == "gemma3") c.arch = Arch::gemma3;
  else if (c.arch_name == "qwen3moe") c.arch = Arch::qwen3moe;
  else if (c.arch_name == "gpt-oss") c.arch = Arch::gpt_oss;
  else {
    throw std::runtime_error(fmt::format("{}: general.architecture = '{}': not supported (sluice runs llama, qwen2, gemma3, "
                                         "qwen3moe, gpt-oss)",
                                         md.source(), c.arch_name));
  }
  const std::string a = c.arch_name + ".";
  const KeyReader key(md, a);
  c.n_embd = key.count("embedding_length", 1, kMaxEmbedding, std::nullopt);
  c.n_layer = key.count("block_count", 1, kMaxBlockCount, std::nullopt);
  c.n_head = key.count("attention.head_count", 1, kMaxHeads, std::nullopt);
  c.n_head_kv = key.count("attention.head_count_kv", 1, kMaxHeads, std::uint64_t(c.n_head));
  if (c.n_head % c.n_head_kv != 0) {
    key.fail("attention.head_count_kv", std::to_string(c.n_head_kv),
             fmt::format("must divide {}attention.head_count = {} (each KV head serves a whole group)", a, c.n_head));
  }
  const bool gpt_oss = c.arch == Arch::gpt_oss;
  // gpt-oss has no dense FFN: llama.cpp does not need feed_forward_length there.
  c.n_ff = gpt_oss && !key.has("feed_forward_length")
               ? key.count("expert_feed_forward_length", 1, kMaxFeedForward, std::nullopt)
               : key.count("feed_forward_length", 1, kMaxFeedForward, std::nullopt);
  c.n_ctx_train = key.count("context_length", 1, kMaxContext, 2048);
  if (key.has("attention.key_length")) {
    c.head_dim = key.count("attention.key_length", 1, kMaxHeadDim, std::nullopt);
  } else {
    // Derived as llama.cpp does: n_embd / n_head, which must then be whole.
    if (c.n_embd % c.n_head != 0) {
      key.fail("embedding_length", std::to_string(c.n_embd),
               fmt::format("must be a multiple of {}attention.head_count = {} when {}attention.key_length is absent", a,
                           c.n_head, a));
    }
    c.head_dim = c.n_embd / c.n_head;
  }
  // The engine keeps one head length for keys and values.
  if (key.has("attention.value_length")) {
    const std::int64_t value_length = key.count("attention.value_length", 1, kMaxHeadDim, std::nullopt);
    if (value_length != c.head_dim) {
      key.fail("attention.value_length", std::to_string(value_length),
               fmt::format("differs from the key length {}; sluice needs them equal", c.head_dim));
    }
  }
  c.n_rot = key.count("rope.dimension_count", 2, std::uint64_t(c.head_dim), std::uint64_t(c.head_dim));
  if (c.n_rot % 2 != 0) key.fail("rope.dimension_count", std::to_string(c.n_rot), "must be even (RoPE rotates pairs)");
  if (gpt_oss) key.require_number("attention.layer_norm_rms_epsilon", "gpt-oss has no default epsilon");
  c.rms_eps = float(key.positive("attention.layer_norm_rms_epsilon", 1e-5));
  c.rope_base = float(key.positive("rope.freq_base", 10000.0));
  // llama.cpp: the scaling type defaults to linear, and the factor (rope.scaling.factor, or the
  // older rope.scale_linear) applies whenever it is present and nonzero.
  if (auto type = md.get_string(a + "rope.scaling.type"); !type || *type == "linear") {
    double factor = key.positive("rope.scaling.factor", key.positive("rope.scale_linear", 0.0, true), true);
    if (factor > 0) c.rope_freq_scale = float(1.0 / factor);
  } else if (*type == "yarn") {
    read_yarn(md, key, c);
  }
  if (md.get_uint(a + "vocab_size")) {
    c.n_vocab = key.count("vocab_size", 1, kMaxVocabulary, std::nullopt);
    c.n_vocab_key = a + "vocab_size";
    // The embedding may have spare rows, but every id the tokenizer makes needs one.
    if (auto tokens = md.get_string_array("tokenizer.ggml.tokens"); tokens && tokens->size() > std::uint64_t(c.n_vocab)) {
      key.fail("vocab_size", std::to_string(c.n_vocab),
               fmt::format("fewer than the {} entries of tokenizer.ggml.tokens (every token needs an embedding row)",
                           tokens->size()));
    }
  } else if (auto tokens = md.get_string_array("tokenizer.ggml.tokens")) {
    if (tokens->empty() || tokens->size() > kMaxVocabulary) {
      throw std::runtime_error(fmt::format("{}: tokenizer.ggml.tokens has {} entries: must be 1 to {}", md.source(),
                                           tokens->size(), kMaxVocabulary));
    }
    c.n_vocab = std::int64_t(tokens->size());
    c.n_vocab_key = "tokenizer.ggml.tokens";
  }
  // Experts, as llama.cpp's load_hparams reads them: qwen3moe always has them; llama (Mixtral)
  // when expert_count > 0. An expert's width: qwen3moe's expert_feed_forward_length (absent:
  // feed_forward_length / expert_used_count); llama's experts are feed_forward_length wide.
  if (gpt_oss || c.arch == Arch::qwen3moe || (c.arch == Arch::llama && md.get_uint(a + "expert_count").value_or(0) != 0)) {
    c.n_expert = key.count("expert_count", 1, kMaxExperts, std::nullopt);
    c.n_expert_used = key.count("expert_used_count", 1, std::uint64_t(c.n_expert), std::nullopt);
    c.n_ff_exp = c.n_ff;
    c.n_ff_exp_key = a + "feed_forward_length";
    if (gpt_oss) {
      c.n_ff_exp = key.count("expert_feed_forward_length", 1, kMaxFeedForward, std::nullopt);
      c.n_ff_exp_key = a + "expert_feed_forward_length";
    } else if (c.arch == Arch::qwen3moe) {
      const std::uint64_t fallback = std::max<std::uint64_t>(std::uint64_t(c.n_ff / c.n_expert_used), 1);
      c.n_ff_exp_key = key.has("expert_feed_forward_length")
                           ? a + "expert_feed_forward_length"
                           : fmt::format("{}feed_forward_length / {}expert_used_count ({}expert_feed_forward_length absent)",
                                         a, a, a);
      c.n_ff_exp = key.count("expert_feed_forward_length", 1, kMaxFeedForward, fallback);
    }
  } else if (md.get_uint(a + "expert_used_count").value_or(0) != 0) {
    key.fail("expert_used_count", std::to_string(*md.get_uint(a + "expert_used_count")),
             fmt::format("needs {}expert_count > 0 (a dense model routes to no experts)", a));
  }
  // llama pairs adjacent dims (the converter permutes Q/K for it); qwen2 and gemma3 use NEOX.
  c.rope_neox = c.arch != Arch::llama;
  // qwen3moe (llama.cpp's src/models/qwen3moe.cpp): RMSNorm of each head of q and k before RoPE.
  if (c.arch == Arch::qwen3moe) c.qk_norm = true;
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
    c.sliding_window = key.count("attention.sliding_window", 0, std::numeric_limits<std::int32_t>::max(), 0);
    if (c.sliding_window > 0) {
      // Pattern 6: five local layers, then one global (layer il is local iff il % 6 < 5).
      // Pattern 0 makes every layer local, as in llama.cpp's set_swa_pattern.
      const std::uint64_t pattern = md.get_uint(a + "attention.sliding_window_pattern").value_or(6);
      c.local_layers.resize(std::size_t(c.n_layer));
      for (std::int64_t il = 0; il < c.n_layer; ++il) {
        c.local_layers[std::size_t(il)] = pattern == 0 || std::uint64_t(il) % pattern < pattern - 1;
      }
      c.rope_base_local = float(key.positive("rope.freq_base_swa", 10000.0));
      c.rope_freq_scale_local = 1.0f;  // llama.cpp scales only the global layers' positions
    }
    c.final_softcap = float(key.positive("final_logit_softcapping", 0.0, true));
  }
  if (gpt_oss) read_gpt_oss(key, c);
  return c;
}

}  // namespace sluice
