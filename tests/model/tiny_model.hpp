// A tiny model of each architecture sluice runs (llama, qwen2, gemma3), described key by key and
// tensor by tensor so a test can change one thing, then written as a GGUF or as a pack. It
// carries its own small SentencePiece vocabulary (no ../shared). The pack is written the way
// `sluice convert` lays it out but without its checks, so a bad model can be packed too.
// Also the table of bad models the loader and converter tests share (bad_model_cases()).
#pragma once

#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <ostream>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "model/convert.hpp"
#include "model/ggml_types.hpp"
#include "model/gguf.hpp"
#include "model/metadata.hpp"
#include "model/pack_writer.hpp"

namespace sluice::testing {

struct TinyTensor {
  std::string name;
  GgmlType type = GgmlType::F32;
  std::vector<std::uint64_t> dims;  // ggml order: dims[0] = row length
};

struct TinyModel {
  std::string arch;
  std::vector<std::pair<std::string, gguf::Value>> metadata;
  std::vector<TinyTensor> tensors;

  void set(const std::string& key, gguf::Value value) {
    for (auto& [k, v] : metadata) {
      if (k == key) {
        v = std::move(value);
        return;
      }
    }
    metadata.emplace_back(key, std::move(value));
  }
  void set_u32(const std::string& key, std::uint32_t v) { set(key, gguf::Value::unsigned_int(gguf::ValueType::u32, v)); }
  void set_f32(const std::string& key, float v) { set(key, gguf::Value::f32(v)); }
  TinyTensor& tensor(const std::string& name) {
    for (auto& t : tensors) {
      if (t.name == name) return t;
    }
    throw std::logic_error("tiny model has no tensor " + name);
  }
  void erase_tensor(const std::string& name) {
    std::erase_if(tensors, [&](const TinyTensor& t) { return t.name == name; });
  }
};

// Vocabulary: <unk>, <s>, </s>, the 256 byte tokens, the SentencePiece space and a few pieces.
inline constexpr std::uint32_t kTinyVocab = 3 + 256 + 29;
inline constexpr std::uint32_t kTinyEmbd = 64, kTinyLayers = 2, kTinyHeads = 4, kTinyHeadsKv = 2, kTinyFf = 96;
inline constexpr std::uint32_t kTinyGemmaHeadDim = 32;  // gemma3: head length != n_embd / n_head

// Mixtures of experts: "qwen3moe", and "mixtral" (a GGUF of architecture llama with experts).
inline constexpr std::uint32_t kTinyExperts = 4, kTinyExpertsUsed = 2, kTinyQwenExpertFf = 32;
inline constexpr std::uint32_t kTinyQwenHeadDim = 32;  // qwen3moe: head length != n_embd / n_head
// "gpt-oss": heads of 32 (as qwen3moe), experts of 32, a window of 16, YaRN 32 over 64 positions.

inline TinyModel tiny_model(const std::string& arch = "llama") {
  TinyModel m;
  m.arch = arch;
  const bool gemma = arch == "gemma3", qwen3moe = arch == "qwen3moe", mixtral = arch == "mixtral", gpt_oss = arch == "gpt-oss";
  const bool moe = qwen3moe || mixtral || gpt_oss;
  const std::string gguf_arch = mixtral ? "llama" : arch;
  const std::string a = gguf_arch + ".";
  m.set("general.architecture", gguf::Value::string(gguf_arch));
  m.set_u32(a + "context_length", 128);
  m.set_u32(a + "embedding_length", kTinyEmbd);
  m.set_u32(a + "block_count", kTinyLayers);
  m.set_u32(a + "feed_forward_length", kTinyFf);
  m.set_u32(a + "attention.head_count", kTinyHeads);
  m.set_u32(a + "attention.head_count_kv", kTinyHeadsKv);
  m.set_f32(a + "attention.layer_norm_rms_epsilon", 1e-5f);
  m.set_f32(a + "rope.freq_base", 10000.0f);
  const std::uint32_t head_dim = gemma ? kTinyGemmaHeadDim : (qwen3moe || gpt_oss) ? kTinyQwenHeadDim : kTinyEmbd / kTinyHeads;
  if (gemma || qwen3moe || gpt_oss) {
    m.set_u32(a + "attention.key_length", head_dim);
    m.set_u32(a + "attention.value_length", head_dim);
  }
  if (gemma) m.set_u32(a + "attention.sliding_window", 16);
  if (moe) {
    m.set_u32(a + "expert_count", kTinyExperts);
    m.set_u32(a + "expert_used_count", kTinyExpertsUsed);
  }
  if (qwen3moe || gpt_oss) m.set_u32(a + "expert_feed_forward_length", kTinyQwenExpertFf);
  if (gpt_oss) {
    m.set_u32(a + "attention.sliding_window", 16);
    m.set(a + "rope.scaling.type", gguf::Value::string("yarn"));
    m.set_f32(a + "rope.scaling.factor", 32.0f);
    m.set_u32(a + "rope.scaling.original_context_length", 64);
  }
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
  std::vector<std::int32_t> types = {2, 3, 3};  // unknown, control, control
  for (int b = 0; b < 256; ++b) {
    tokens.push_back(fmt::format("<0x{:02X}>", b));
    types.push_back(6);  // byte
  }
  tokens.push_back("\xE2\x96\x81");
  for (char c = 'a'; c <= 'z'; ++c) tokens.push_back(std::string(1, c));
  tokens.push_back("\xE2\x96\x81the");
  tokens.push_back(".");
  types.resize(tokens.size(), 1);  // normal
  std::vector<float> scores(tokens.size());
  for (std::size_t i = 0; i < scores.size(); ++i) scores[i] = -float(i);
  m.set("tokenizer.ggml.model", gguf::Value::string("llama"));
  m.set("tokenizer.ggml.tokens", gguf::Value::string_array(tokens));
  m.set("tokenizer.ggml.scores", gguf::Value::array(std::span<const float>(scores)));
  m.set("tokenizer.ggml.token_type", gguf::Value::array(std::span<const std::int32_t>(types)));
  m.set_u32("tokenizer.ggml.bos_token_id", 1);
  m.set_u32("tokenizer.ggml.eos_token_id", 2);
  m.set_u32("tokenizer.ggml.unknown_token_id", 0);

  const std::uint64_t E = kTinyEmbd, V = kTinyVocab, F = kTinyFf, Q = kTinyHeads * head_dim, K = kTinyHeadsKv * head_dim;
  const GgmlType mat = GgmlType::Q8_0;
  m.tensors.push_back({"token_embd.weight", mat, {E, V}});
  for (std::uint32_t il = 0; il < kTinyLayers; ++il) {
    const std::string p = fmt::format("blk.{}.", il);
    m.tensors.push_back({p + "attn_norm.weight", GgmlType::F32, {E}});
    m.tensors.push_back({p + "attn_q.weight", mat, {E, Q}});
    m.tensors.push_back({p + "attn_k.weight", mat, {E, K}});
    m.tensors.push_back({p + "attn_v.weight", mat, {E, K}});
    if (arch == "qwen2" || gpt_oss) {
      m.tensors.push_back({p + "attn_q.bias", GgmlType::F32, {Q}});
      m.tensors.push_back({p + "attn_k.bias", GgmlType::F32, {K}});
      m.tensors.push_back({p + "attn_v.bias", GgmlType::F32, {K}});
    }
    if (gpt_oss) {
      m.tensors.push_back({p + "attn_output.bias", GgmlType::F32, {E}});
      m.tensors.push_back({p + "attn_sinks.weight", GgmlType::F32, {kTinyHeads}});
    }
    if (gemma || qwen3moe) {
      m.tensors.push_back({p + "attn_q_norm.weight", GgmlType::F32, {head_dim}});
      m.tensors.push_back({p + "attn_k_norm.weight", GgmlType::F32, {head_dim}});
    }
    m.tensors.push_back({p + "attn_output.weight", mat, {Q, E}});
    if (gemma) m.tensors.push_back({p + "post_attention_norm.weight", GgmlType::F32, {E}});
    m.tensors.push_back({p + (gpt_oss ? "post_attention_norm.weight" : "ffn_norm.weight"), GgmlType::F32, {E}});
    if (moe) {
      const std::uint64_t X = kTinyExperts, FX = (qwen3moe || gpt_oss) ? kTinyQwenExpertFf : kTinyFf;
      if (gpt_oss) {
        m.tensors.push_back({p + "ffn_gate_inp.bias", GgmlType::F32, {X}});
        m.tensors.push_back({p + "ffn_gate_exps.bias", GgmlType::F32, {FX, X}});
        m.tensors.push_back({p + "ffn_up_exps.bias", GgmlType::F32, {FX, X}});
        m.tensors.push_back({p + "ffn_down_exps.bias", GgmlType::F32, {E, X}});
      }
      m.tensors.push_back({p + "ffn_gate_inp.weight", GgmlType::F32, {E, X}});
      m.tensors.push_back({p + "ffn_gate_exps.weight", mat, {E, FX, X}});
      m.tensors.push_back({p + "ffn_up_exps.weight", mat, {E, FX, X}});
      m.tensors.push_back({p + "ffn_down_exps.weight", mat, {FX, E, X}});
    } else {
      m.tensors.push_back({p + "ffn_gate.weight", mat, {E, F}});
      m.tensors.push_back({p + "ffn_up.weight", mat, {E, F}});
      m.tensors.push_back({p + "ffn_down.weight", mat, {F, E}});
    }
    if (gemma) m.tensors.push_back({p + "post_ffw_norm.weight", GgmlType::F32, {E}});
  }
  m.tensors.push_back({"output_norm.weight", GgmlType::F32, {E}});
  if (!gemma) m.tensors.push_back({"output.weight", mat, {E, V}});  // gemma3 ties its head
  return m;
}

// Bytes for a tensor: F32 vectors near 1 (norms), F32 matrices small, Q8_0 blocks with scale
// 1/256 and small quants; other types zero (their tests never compute). Seeded by the name.
inline std::vector<std::byte> tiny_tensor_bytes(const TinyTensor& t) {
  auto traits = ggml_type_traits(static_cast<std::uint32_t>(t.type));
  if (!traits) throw std::logic_error("tiny model: unknown type");
  std::uint64_t elements = 1;
  for (auto d : t.dims) elements *= d;
  const std::uint64_t bytes = elements / traits->block_elements * traits->block_bytes;
  std::vector<std::byte> out(bytes);
  std::mt19937 rng(std::uint32_t(std::hash<std::string>{}(t.name)));
  if (t.type == GgmlType::F32) {
    const bool vector = t.dims.size() == 1;
    std::uniform_real_distribution<float> u(-0.1f, 0.1f);
    for (std::uint64_t i = 0; i < elements; ++i) {
      const float v = vector ? 1.0f + u(rng) : u(rng);
      std::memcpy(out.data() + i * 4, &v, 4);
    }
  } else if (t.type == GgmlType::Q8_0) {
    constexpr std::uint16_t kHalfOneOver256 = 0x1C00;  // fp16 1/256
    std::uniform_int_distribution<int> q(-40, 40);
    for (std::uint64_t b = 0; b < bytes; b += traits->block_bytes) {
      std::memcpy(out.data() + b, &kHalfOneOver256, 2);
      for (std::uint32_t i = 0; i < 32; ++i) out[b + 2 + i] = std::byte(std::uint8_t(std::int8_t(q(rng))));
    }
  }
  return out;
}

inline void write_gguf(const TinyModel& m, const std::string& path) {
  gguf::Writer w;
  for (const auto& [key, value] : m.metadata) w.set(key, value);
  for (const auto& t : m.tensors) w.add_tensor(t.name, static_cast<std::uint32_t>(t.type), t.dims, tiny_tensor_bytes(t));
  w.write(path);
}

// A pack with convert's extents (one per block, token_embd, output, misc) from a GGUF written
// beside it, without convert's model checks.
inline void write_pack(const TinyModel& m, const std::string& path) {
  const std::string gguf_path = path + ".src.gguf";
  write_gguf(m, gguf_path);
  const gguf::File in = gguf::File::open(gguf_path);
  std::vector<std::string> order;
  std::map<std::string, std::vector<const gguf::TensorInfo*>> groups;
  for (const auto& t : in.tensors()) {
    const std::string extent = extent_of_tensor(t.name);
    if (groups[extent].empty()) order.push_back(extent);
    groups[extent].push_back(&t);
  }
  pack::WriterOptions options;
  options.frame_bytes = 4096;  // several frames per extent: the streamed paths see frame edges
  pack::PackWriter writer(path, options);
  writer.set_metadata(metadata_to_json(in));
  for (const auto& extent : order) {
    writer.begin_extent(extent);
    for (const gguf::TensorInfo* t : groups[extent]) writer.add_tensor(t->name, t->type, t->dims, in.tensor_data(*t));
    writer.end_extent();
  }
  writer.finish();
  std::remove(gguf_path.c_str());
}

// One bad model: the change, and words its error message must contain (the key or tensor named).
struct BadModelCase {
  std::string name;  // a gtest parameter name: [A-Za-z0-9_]
  std::string arch;
  std::function<void(TinyModel&)> mutate;
  std::vector<std::string> words;
};

// gtest prints the parameter of a failing case with this.
inline void PrintTo(const BadModelCase& c, std::ostream* os) { *os << c.name; }

inline std::string param_name(std::string s) {
  for (char& c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return s;
}

// Metadata a loader must refuse before sizing anything from it, named by key and value.
inline std::vector<BadModelCase> bad_metadata_cases() {
  std::vector<BadModelCase> cases;
  auto u32 = [&](std::string arch, std::string key, std::uint32_t v, std::vector<std::string> words) {
    const std::string full = arch + "." + key;
    words.insert(words.begin(), fmt::format("{} = {}", full, v));
    cases.push_back({param_name(arch + "_" + key + "_" + std::to_string(v)), arch,
                     [full, v](TinyModel& m) { m.set_u32(full, v); }, words});
  };
  for (std::string arch : {"llama", "qwen2", "gemma3"}) {
    u32(arch, "attention.head_count", 0, {"at least 1"});
    u32(arch, "attention.head_count_kv", 0, {"at least 1"});
    u32(arch, "context_length", 0, {"at least 1"});
    u32(arch, "block_count", 0, {"at least 1"});
    u32(arch, "embedding_length", 0, {"at least 1"});
    u32(arch, "feed_forward_length", 0, {"at least 1"});
    u32(arch, "block_count", 1u << 30, {"limit"});
  }
  u32("llama", "attention.head_count_kv", 3, {"must divide"});
  u32("llama", "attention.head_count", 6, {"must divide"});  // kv heads 2 do divide 6: then n_embd 64 % 6
  cases.back().words = {"llama.embedding_length = 64", "attention.head_count = 6"};
  cases.back().mutate = [](TinyModel& m) {
    m.set_u32("llama.attention.head_count", 6);
    m.set_u32("llama.attention.head_count_kv", 6);
  };
  u32("gemma3", "attention.value_length", 16, {"key length 32"});
  u32("llama", "rope.dimension_count", 15, {"even"});
  u32("llama", "rope.dimension_count", 64, {"limit of 16"});
  u32("llama", "vocab_size", 100, {"288 entries of tokenizer.ggml.tokens"});
  u32("llama", "vocab_size", 300, {});  // metadata fine; token_embd then disagrees
  cases.back().words = {"token_embd.weight", "[64, 288]", "[64, 300]", "n_vocab from llama.vocab_size"};
  for (const char* key : {"rope.freq_base", "attention.layer_norm_rms_epsilon"}) {
    const std::string full = std::string("llama.") + key;
    // A pack's JSON keeps NaN as null, which is refused as "not a number" instead.
    cases.push_back({param_name(std::string("llama_") + key + "_nan"), "llama",
                     [full](TinyModel& m) { m.set_f32(full, std::nanf("")); }, {full + " = "}});
  }
  cases.push_back({"qwen2_rope_freq_base_negative", "qwen2", [](TinyModel& m) { m.set_f32("qwen2.rope.freq_base", -1.0f); },
                   {"qwen2.rope.freq_base = -1", "finite"}});
  // Mixtures of experts: counts out of range, and counts the tensors disagree with (named by key).
  u32("qwen3moe", "expert_count", 0, {"at least 1"});
  u32("qwen3moe", "expert_count", 1000, {"limit of 512"});
  u32("qwen3moe", "expert_used_count", 0, {"at least 1"});
  u32("qwen3moe", "expert_used_count", 5, {"limit of 4"});
  u32("qwen3moe", "expert_feed_forward_length", 64, {"ffn_gate_exps.weight", "[64, 32, 4]", "[64, 64, 4]"});
  cases.push_back({"qwen3moe_expert_width_from_the_dense_width", "qwen3moe",
                   [](TinyModel& m) { std::erase_if(m.metadata, [](auto& kv) { return kv.first == "qwen3moe.expert_feed_forward_length"; }); },
                   {"blk.0.ffn_gate_exps.weight", "[64, 48, 4]",
                    "qwen3moe.feed_forward_length / qwen3moe.expert_used_count (qwen3moe.expert_feed_forward_length absent) = 48"}});
  // gpt-oss: the keys llama.cpp requires for it, its window, and YaRN's factor.
  auto erase = [&](std::string arch, std::string key, std::vector<std::string> words) {
    cases.push_back({param_name(arch + "_no_" + key), arch,
                     [full = arch + "." + key](TinyModel& m) { std::erase_if(m.metadata, [&](auto& kv) { return kv.first == full; }); },
                     words});
  };
  erase("gpt-oss", "expert_feed_forward_length", {"gpt-oss.expert_feed_forward_length", "missing"});
  erase("gpt-oss", "attention.sliding_window", {"gpt-oss.attention.sliding_window", "missing"});
  erase("gpt-oss", "attention.layer_norm_rms_epsilon", {"gpt-oss.attention.layer_norm_rms_epsilon", "missing"});
  erase("gpt-oss", "rope.scaling.factor", {"gpt-oss.rope.scaling.factor", "missing", "yarn"});
  erase("gpt-oss", "expert_count", {"gpt-oss.expert_count", "missing"});
  u32("gpt-oss", "attention.sliding_window", 0, {"at least 1"});
  u32("gpt-oss", "expert_used_count", 5, {"limit of 4"});
  cases.push_back({"gpt_oss_yarn_factor_below_1", "gpt-oss", [](TinyModel& m) { m.set_f32("gpt-oss.rope.scaling.factor", 0.5f); },
                   {"gpt-oss.rope.scaling.factor = 0.5", "at least 1"}});
  cases.push_back({"gpt_oss_yarn_log_multiplier", "gpt-oss",
                   [](TinyModel& m) { m.set_f32("gpt-oss.rope.scaling.yarn_log_multiplier", 0.1f); },
                   {"gpt-oss.rope.scaling.yarn_log_multiplier", "not supported"}});
  cases.push_back({"mixtral_wrong_expert_count", "mixtral", [](TinyModel& m) { m.set_u32("llama.expert_count", 8); },
                   {"blk.0.ffn_gate_inp.weight", "[64, 4]", "[64, 8]", "llama.expert_count = 8"}});
  cases.push_back({"mixtral_expert_used_past_count", "mixtral", [](TinyModel& m) { m.set_u32("llama.expert_used_count", 5); },
                   {"llama.expert_used_count = 5", "limit of 4"}});
  cases.push_back({"llama_experts_used_without_experts", "llama",
                   [](TinyModel& m) { m.set_u32("llama.expert_used_count", 2); },
                   {"llama.expert_used_count = 2", "needs llama.expert_count"}});
  cases.push_back({"unknown_architecture", "llama",
                   [](TinyModel& m) { m.set("general.architecture", gguf::Value::string("mamba")); },
                   {"general.architecture = 'mamba'", "not supported"}});
  return cases;
}

// Every tensor the engine binds (the globals and block 1), with its rows or columns doubled or
// halved, or its type changed to one the engine cannot use for it; plus blocks out of range.
inline std::vector<BadModelCase> bad_tensor_cases() {
  std::vector<BadModelCase> cases;
  for (std::string arch : {"llama", "qwen2", "gemma3", "qwen3moe", "mixtral", "gpt-oss"}) {
    const TinyModel base = tiny_model(arch);
    for (const TinyTensor& t : base.tensors) {
      if (t.name.rfind("blk.0.", 0) == 0) continue;  // block 1 stands for every block
      struct Change {
        const char* what;
        std::size_t dim;
        double factor;
      };
      std::vector<Change> changes = {{"cols_x2", 0, 2.0}, {"cols_half", 0, 0.5}};
      if (t.dims.size() > 1) {
        changes.push_back({"rows_x2", 1, 2.0});
        changes.push_back({"rows_half", 1, 0.5});
      }
      for (const Change& c : changes) {
        TinyTensor changed = t;
        changed.dims[c.dim] = std::uint64_t(double(t.dims[c.dim]) * c.factor);
        // A row that is no longer whole Q8_0 blocks cannot even be written: store it as F32
        // (the shape is checked before the type, so the error is still the shape's).
        if (changed.dims[0] % 32 != 0) changed.type = GgmlType::F32;
        cases.push_back({param_name(arch + "_" + t.name + "_" + c.what), arch,
                         [changed](TinyModel& m) { m.tensor(changed.name) = changed; },
                         {"tensor " + t.name, "has shape", "expected"}});
      }
      // A vector in a quantized type and a matrix in a type no kernel multiplies with.
      const GgmlType wrong = t.dims.size() == 1 ? GgmlType::Q8_0 : GgmlType::Q8_1;
      const std::uint64_t row = t.dims[0];
      if (row % 32 == 0) {
        cases.push_back({param_name(arch + "_" + t.name + "_type"), arch,
                         [name = t.name, wrong](TinyModel& m) { m.tensor(name).type = wrong; },
                         {"tensor " + t.name, "has type", "expected one of"}});
      }
    }
    cases.push_back({param_name(arch + "_missing_block"), arch,
                     [](TinyModel& m) { std::erase_if(m.tensors, [](const TinyTensor& t) { return t.name.rfind("blk.1.", 0) == 0; }); },
                     {"blk.1.", "missing", "block_count 2"}});
    cases.push_back({param_name(arch + "_extra_block"), arch,
                     [](TinyModel& m) {
                       std::vector<TinyTensor> extra;
                       for (const TinyTensor& t : m.tensors) {
                         if (t.name.rfind("blk.1.", 0) == 0) extra.push_back({"blk.2." + t.name.substr(6), t.type, t.dims});
                       }
                       m.tensors.insert(m.tensors.end(), extra.begin(), extra.end());
                     },
                     {"blk.2", "block 2", "block_count is 2"}});
    cases.push_back({param_name(arch + "_missing_output_norm"), arch, [](TinyModel& m) { m.erase_tensor("output_norm.weight"); },
                     {"output_norm.weight", "missing"}});
  }
  cases.push_back({"gpt_oss_missing_sinks", "gpt-oss", [](TinyModel& m) { m.erase_tensor("blk.1.attn_sinks.weight"); },
                   {"blk.1.attn_sinks.weight", "missing", "gpt-oss vector"}});
  cases.push_back({"gpt_oss_missing_expert_bias", "gpt-oss", [](TinyModel& m) { m.erase_tensor("blk.0.ffn_down_exps.bias"); },
                   {"blk.0.ffn_down_exps.bias", "missing", "expert_count 4"}});
  cases.push_back({"gpt_oss_missing_output_bias", "gpt-oss", [](TinyModel& m) { m.erase_tensor("blk.0.attn_output.bias"); },
                   {"blk.0.attn_output.bias", "missing"}});
  cases.push_back({"gpt_oss_ffn_norm_under_the_llama_name", "gpt-oss",
                   [](TinyModel& m) { m.tensor("blk.1.post_attention_norm.weight").name = "blk.1.ffn_norm.weight"; },
                   {"blk.1.post_attention_norm.weight", "missing"}});
  cases.push_back({"qwen2_missing_bias", "qwen2", [](TinyModel& m) { m.erase_tensor("blk.1.attn_k.bias"); },
                   {"blk.1.attn_k.bias", "missing"}});
  cases.push_back({"gemma3_missing_q_norm", "gemma3", [](TinyModel& m) { m.erase_tensor("blk.0.attn_q_norm.weight"); },
                   {"blk.0.attn_q_norm.weight", "missing"}});
  cases.push_back({"qwen3moe_missing_gate_exps", "qwen3moe", [](TinyModel& m) { m.erase_tensor("blk.1.ffn_gate_exps.weight"); },
                   {"blk.1.ffn_gate_exps.weight", "missing", "qwen3moe weight", "expert_count 4"}});
  cases.push_back({"qwen3moe_missing_router", "qwen3moe", [](TinyModel& m) { m.erase_tensor("blk.0.ffn_gate_inp.weight"); },
                   {"blk.0.ffn_gate_inp.weight", "missing"}});
  cases.push_back({"qwen3moe_missing_k_norm", "qwen3moe", [](TinyModel& m) { m.erase_tensor("blk.0.attn_k_norm.weight"); },
                   {"blk.0.attn_k_norm.weight", "missing"}});
  cases.push_back({"mixtral_missing_down_exps", "mixtral", [](TinyModel& m) { m.erase_tensor("blk.0.ffn_down_exps.weight"); },
                   {"blk.0.ffn_down_exps.weight", "missing", "llama weight", "expert_count 4"}});
  cases.push_back({"mixtral_experts_of_the_wrong_count", "mixtral",
                   [](TinyModel& m) { m.tensor("blk.1.ffn_up_exps.weight").dims[2] = 3; },
                   {"blk.1.ffn_up_exps.weight", "[64, 96, 3]", "[64, 96, 4]", "llama.expert_count = 4"}});
  cases.push_back({"llama_bias_wrong_length", "llama",
                   [](TinyModel& m) { m.tensors.push_back({"blk.0.attn_q.bias", GgmlType::F32, {32}}); },
                   {"blk.0.attn_q.bias", "[32]", "[64]"}});
  cases.push_back({"llama_rope_freqs_wrong_length", "llama",
                   [](TinyModel& m) { m.tensors.push_back({"rope_freqs.weight", GgmlType::F32, {16}}); },
                   {"rope_freqs.weight", "[16]", "[8]", "n_rot/2"}});
  cases.push_back({"llama_block_name_not_a_number", "llama",
                   [](TinyModel& m) { m.tensors.push_back({"blk.x.attn_q.weight", GgmlType::F32, {8}}); },
                   {"blk.x"}});
  return cases;
}

}  // namespace sluice::testing
