// check_model_tensors and its helpers (see tensor_check.hpp).
#include "model/tensor_check.hpp"

#include <algorithm>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <iterator>
#include <limits>
#include <map>
#include <stdexcept>
#include <unordered_map>

#include "model/ggml_types.hpp"
#include "model/gguf.hpp"
#include "model/gguf_split.hpp"
#include "model/metadata.hpp"
#include "model/pack_reader.hpp"

namespace sluice {
namespace {

// What a tensor is for decides which types the engine can compute with. Matrices go through
// cpu::matmul (and the embedding through dequantize_row): every weight type of
// cpu::is_weight_type (tests/engine checks the two lists agree). Vectors (norms, biases, rope
// factors) are read as floats; ggml models always store them F32, and the half types are cheap
// to allow.
enum class Role { matrix, vector };

constexpr GgmlType kMatrixTypes[] = {GgmlType::F32,  GgmlType::F16,  GgmlType::BF16, GgmlType::Q4_0,
                                     GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0,
                                     GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K,
                                     GgmlType::Q6_K, GgmlType::MXFP4};
constexpr GgmlType kVectorTypes[] = {GgmlType::F32, GgmlType::F16, GgmlType::BF16};

std::span<const GgmlType> types_for(Role role) {
  if (role == Role::matrix) return kMatrixTypes;
  return kVectorTypes;
}

std::string type_name(std::uint32_t type) {
  auto traits = ggml_type_traits(type);
  return traits ? std::string(traits->name) : fmt::format("unknown type {}", type);
}

std::string shape_text(std::span<const std::uint64_t> dims) { return fmt::format("[{}]", fmt::join(dims, ", ")); }

// One tensor the engine binds: its name, the shape the hyper-parameters give it (with the
// formula, for the message), its role, and whether it must be there.
struct Expected {
  std::string name;
  std::vector<std::uint64_t> dims;
  std::string formula;
  Role role = Role::matrix;
  bool required = true;
};

// The shape as the engine reads it: trailing 1s beyond the expected rank carry no elements
// (ggml pads every tensor to 4 dims with 1s, and llama.cpp compares shapes that way).
bool same_shape(std::span<const std::uint64_t> actual, const std::vector<std::uint64_t>& expected) {
  if (actual.size() < expected.size()) return false;
  for (std::size_t i = 0; i < actual.size(); ++i) {
    if (actual[i] != (i < expected.size() ? expected[i] : 1)) return false;
  }
  return true;
}

std::vector<Expected> expected_tensors(const ModelConfig& c) {
  const auto E = std::uint64_t(c.n_embd), V = std::uint64_t(c.n_vocab), F = std::uint64_t(c.n_ff);
  const auto Q = std::uint64_t(c.n_head * c.head_dim), K = std::uint64_t(c.n_head_kv * c.head_dim);
  const auto D = std::uint64_t(c.head_dim);
  const auto X = std::uint64_t(c.n_expert), FX = std::uint64_t(c.n_ff_exp);
  std::vector<Expected> out;
  using namespace names;
  const std::string embd(kTokenEmbd), output(kOutput);
  out.push_back({embd, {E, V}, "n_embd x n_vocab", Role::matrix, true});
  out.push_back({std::string(kOutputNorm), {E}, "n_embd", Role::vector, true});
  out.push_back({output, {E, V}, "n_embd x n_vocab; absent: tied to token_embd", Role::matrix, false});
  out.push_back({std::string(kRopeFreqs), {std::uint64_t(c.n_rot / 2)}, "n_rot/2", Role::vector, false});
  const bool qwen2 = c.arch == Arch::qwen2, gemma3 = c.arch == Arch::gemma3, gpt_oss = c.arch == Arch::gpt_oss;
  for (std::int64_t il = 0; il < c.n_layer; ++il) {
    auto block = [&](std::string_view tensor, std::vector<std::uint64_t> dims, std::string formula, Role role, bool required) {
      out.push_back({block_tensor(il, tensor), std::move(dims), std::move(formula), role, required});
    };
    block(kAttnNorm, {E}, "n_embd", Role::vector, true);
    block(kAttnQ, {E, Q}, "n_embd x n_head*head_dim", Role::matrix, true);
    block(kAttnK, {E, K}, "n_embd x n_head_kv*head_dim", Role::matrix, true);
    block(kAttnV, {E, K}, "n_embd x n_head_kv*head_dim", Role::matrix, true);
    block(kAttnOutput, {Q, E}, "n_head*head_dim x n_embd", Role::matrix, true);
    // Biases: qwen2 and gpt-oss have them; the engine adds them for any architecture when present.
    block(kAttnQBias, {Q}, "n_head*head_dim", Role::vector, qwen2 || gpt_oss);
    block(kAttnKBias, {K}, "n_head_kv*head_dim", Role::vector, qwen2 || gpt_oss);
    block(kAttnVBias, {K}, "n_head_kv*head_dim", Role::vector, qwen2 || gpt_oss);
    block(kAttnOutputBias, {E}, "n_embd", Role::vector, gpt_oss);
    if (c.attn_sinks) block(kAttnSinks, {std::uint64_t(c.n_head)}, "n_head", Role::vector, true);
    // gpt-oss's FFN norm is named post_attention_norm (llama.cpp's attn_post_norm).
    block(c.ffn_norm_is_post_attn ? kPostAttnNorm : kFfnNorm, {E}, "n_embd", Role::vector, true);
    if (c.is_moe()) {
      // The keys by name: a shape that disagrees says which key gave the expected size.
      const std::string count = fmt::format("{}.expert_count = {}", c.arch_name, c.n_expert);
      const std::string width = fmt::format("{} = {}", c.n_ff_exp_key, c.n_ff_exp);
      block(kFfnGateInp, {E, X}, fmt::format("n_embd x {}", count), Role::matrix, true);
      block(kFfnGateExps, {E, FX, X}, fmt::format("n_embd x {} x {}", width, count), Role::matrix, true);
      block(kFfnUpExps, {E, FX, X}, fmt::format("n_embd x {} x {}", width, count), Role::matrix, true);
      block(kFfnDownExps, {FX, E, X}, fmt::format("{} x n_embd x {}", width, count), Role::matrix, true);
      if (c.moe_biases) {
        block(kFfnGateInpBias, {X}, count, Role::vector, true);
        block(kFfnGateExpsBias, {FX, X}, fmt::format("{} x {}", width, count), Role::vector, true);
        block(kFfnUpExpsBias, {FX, X}, fmt::format("{} x {}", width, count), Role::vector, true);
        block(kFfnDownExpsBias, {E, X}, fmt::format("n_embd x {}", count), Role::vector, true);
      }
    } else {
      block(kFfnGate, {E, F}, "n_embd x n_ff", Role::matrix, true);
      block(kFfnUp, {E, F}, "n_embd x n_ff", Role::matrix, true);
      block(kFfnDown, {F, E}, "n_ff x n_embd", Role::matrix, true);
    }
    if (c.qk_norm) {
      block(kAttnQNorm, {D}, "head_dim", Role::vector, true);
      block(kAttnKNorm, {D}, "head_dim", Role::vector, true);
    }
    if (gemma3) {
      block(kPostAttnNorm, {E}, "n_embd", Role::vector, true);
      block(kPostFfnNorm, {E}, "n_embd", Role::vector, true);
    }
  }
  return out;
}

void check_one(const TensorDesc& t, const Expected& e, const std::string& source) {
  if (!same_shape(t.dims, e.dims)) {
    throw std::runtime_error(fmt::format("{}: tensor {} has shape {}, expected {} ({})", source, t.name, shape_text(t.dims),
                                         shape_text(e.dims), e.formula));
  }
  const auto allowed = types_for(e.role);
  if (std::find(allowed.begin(), allowed.end(), static_cast<GgmlType>(t.type)) == allowed.end()) {
    std::vector<std::string_view> names;
    for (GgmlType a : allowed) names.push_back(ggml_type_traits(static_cast<std::uint32_t>(a))->name);
    throw std::runtime_error(fmt::format("{}: tensor {} has type {}, expected one of {} (a {})", source, t.name,
                                         type_name(t.type), fmt::join(names, ", "),
                                         e.role == Role::matrix ? "weight matrix" : "norm, bias or factor vector"));
  }
  if (auto why = tensor_bytes_error(t.type, t.dims, t.bytes)) {
    throw std::runtime_error(fmt::format("{}: tensor {}: {}", source, t.name, *why));
  }
}

}  // namespace

bool is_matrix_weight_type(GgmlType type) {
  return std::find(std::begin(kMatrixTypes), std::end(kMatrixTypes), type) != std::end(kMatrixTypes);
}

std::optional<std::string> tensor_bytes_error(std::uint32_t type, std::span<const std::uint64_t> dims, std::uint64_t bytes) {
  auto traits = ggml_type_traits(type);
  if (!traits) return fmt::format("unknown ggml type {}", type);
  if (dims.empty()) return std::string("has no dimensions");
  std::uint64_t elements = 1;
  for (std::uint64_t d : dims) {
    if (d == 0) return fmt::format("shape {} has a zero dimension", shape_text(dims));
    if (elements > std::numeric_limits<std::uint64_t>::max() / d) {
      return fmt::format("shape {} has more elements than 64 bits count", shape_text(dims));
    }
    elements *= d;
  }
  if (dims[0] % traits->block_elements != 0) {
    return fmt::format("type {}: row length {} is not a multiple of the block size {}", traits->name, dims[0],
                       traits->block_elements);
  }
  const std::uint64_t blocks = elements / traits->block_elements;
  if (blocks > std::numeric_limits<std::uint64_t>::max() / traits->block_bytes) {
    return fmt::format("type {} x shape {} overflows a 64-bit byte count", traits->name, shape_text(dims));
  }
  const std::uint64_t expected = blocks * traits->block_bytes;
  if (expected != bytes) {
    return fmt::format("type {} x shape {} takes {} bytes, but the file gives it {}", traits->name, shape_text(dims),
                       expected, bytes);
  }
  return std::nullopt;
}

void check_model_tensors(ModelConfig& config, std::span<const TensorDesc> tensors, const std::string& source,
                         std::span<const std::string> extent_names) {
  std::unordered_map<std::string_view, const TensorDesc*> by_name;
  for (const TensorDesc& t : tensors) by_name.emplace(t.name, &t);

  // Block indices first: a name past block_count means metadata and tensors disagree, and is
  // reported as such rather than as whichever tensor of the last block happens to be missing.
  std::map<std::int64_t, std::size_t> block_extents;  // block -> extent index
  std::map<std::int64_t, std::size_t> expert_extents;  // block -> its "blk.N.exps" extent (a pack's expert extent)
  for (std::size_t e = 0; e < extent_names.size(); ++e) {
    const std::string& name = extent_names[e];
    if (!is_block_name(name)) continue;
    if (const auto il = names::experts_extent_index(name)) {
      if (*il >= config.n_layer) {
        throw std::runtime_error(fmt::format("{}: extent {} '{}' names block {}, but block_count is {}", source, e, name, *il,
                                             config.n_layer));
      }
      auto [it, added] = expert_extents.emplace(*il, e);
      if (!added) throw std::runtime_error(fmt::format("{}: extents {} and {} are both named '{}'", source, it->second, e, name));
      continue;
    }
    const auto il = block_extent_index(name);
    if (!il) {
      throw std::runtime_error(fmt::format("{}: extent {} '{}': a block extent is named blk.N, N a block number", source, e, name));
    }
    if (*il >= config.n_layer) {
      throw std::runtime_error(fmt::format("{}: extent {} '{}' names block {}, but block_count is {}", source, e, name, *il,
                                           config.n_layer));
    }
    auto [it, added] = block_extents.emplace(*il, e);
    if (!added) throw std::runtime_error(fmt::format("{}: extents {} and {} are both named '{}'", source, it->second, e, name));
  }
  for (const TensorDesc& t : tensors) {
    if (!is_block_name(t.name)) continue;
    const auto il = block_index_of(t.name);
    if (!il) throw std::runtime_error(fmt::format("{}: tensor {}: block number does not parse (blk.N.name)", source, t.name));
    if (*il >= config.n_layer) {
      throw std::runtime_error(fmt::format("{}: tensor {} belongs to block {}, but block_count is {}", source, t.name, *il,
                                           config.n_layer));
    }
    if (!extent_names.empty()) {
      auto it = block_extents.find(*il);
      auto experts = expert_extents.find(*il);
      const bool in_experts = experts != expert_extents.end() && t.extent == std::int64_t(experts->second) &&
                              names::is_expert_matrix(t.name);
      if (!in_experts && (it == block_extents.end() || t.extent != std::int64_t(it->second))) {
        throw std::runtime_error(fmt::format("{}: tensor {} does not lie in extent 'blk.{}' (streaming reads a block's "
                                             "tensors from its extent)",
                                             source, t.name, *il));
      }
    }
  }

  const auto embd = by_name.find(names::kTokenEmbd);
  if (config.n_vocab == 0 && embd != by_name.end() && embd->second->dims.size() >= 2) {
    config.n_vocab = std::int64_t(std::min<std::uint64_t>(embd->second->dims[1], kMaxVocabulary + 1));
    if (std::uint64_t(config.n_vocab) > kMaxVocabulary) {
      throw std::runtime_error(fmt::format("{}: tensor token_embd.weight has {} rows, more than the limit of {} tokens", source,
                                           embd->second->dims[1], kMaxVocabulary));
    }
  }
  for (const Expected& e : expected_tensors(config)) {
    auto it = by_name.find(e.name);
    if (it == by_name.end()) {
      if (!e.required) continue;
      throw std::runtime_error(fmt::format("{}: tensor {} is missing ({} {}, block_count {}{})", source, e.name,
                                           config.arch_name, e.role == Role::matrix ? "weight" : "vector", config.n_layer,
                                           config.is_moe() ? fmt::format(", expert_count {}", config.n_expert) : ""));
    }
    Expected named = e;
    if (e.name == names::kTokenEmbd || e.name == names::kOutput) {
      named.formula += config.n_vocab_key.empty() ? "" : fmt::format("; n_vocab from {}", config.n_vocab_key);
    }
    check_one(*it->second, named, source);
  }
}

std::vector<TensorDesc> tensor_table(const gguf::File& file) {
  std::vector<TensorDesc> out;
  out.reserve(file.tensors().size());
  for (const auto& t : file.tensors()) out.push_back({t.name, t.type, t.dims, t.bytes, -1});
  return out;
}

std::vector<TensorDesc> tensor_table(const pack::Pack& pack) {
  std::vector<TensorDesc> out;
  out.reserve(pack.tensors().size());
  for (const auto& t : pack.tensors()) out.push_back({t.name, t.type, t.shape, t.bytes, std::int64_t(t.extent)});
  return out;
}

ModelConfig checked_config(const gguf::File& file) {
  ModelConfig config = config_from_metadata(*metadata_of(file));
  check_model_tensors(config, tensor_table(file), file.path());
  return config;
}

std::vector<TensorDesc> tensor_table(const gguf::ShardSet& set) {
  std::vector<TensorDesc> out;
  out.reserve(set.tensors().size());
  for (const auto& t : set.tensors()) out.push_back({t.name, t.type, t.dims, t.bytes, -1});
  return out;
}

ModelConfig checked_config(const gguf::ShardSet& set) {
  // The metadata is the first shard's; the tensors are every shard's.
  ModelConfig config = config_from_metadata(*metadata_of(set.metadata()));
  check_model_tensors(config, tensor_table(set), set.shards().front().path);
  return config;
}

ModelConfig checked_config(const pack::Pack& pack) {
  ModelConfig config = config_from_metadata(*metadata_of(pack.metadata(), pack.path()));
  std::vector<std::string> extent_names;
  for (const auto& e : pack.extents()) extent_names.push_back(e.name);
  check_model_tensors(config, tensor_table(pack), pack.path(), extent_names);
  return config;
}

}  // namespace sluice
