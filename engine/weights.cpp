#include "engine/weights.hpp"

#include <fmt/format.h>
#include <stdexcept>

#include "common/assert.hpp"
#include "common/error.hpp"
#include "model/tensor_names.hpp"

namespace sluice {
namespace {
TensorView require(const TensorLookup& lookup, std::string_view name, const std::string& source) {
  TensorView v = lookup(name);
  if (!v)
    throw Exception(ErrorContext{ErrorKind::corrupt, source, std::string(name)}, fmt::format("{}: tensor '{}' is missing", source, name));
  return v;
}
}  // namespace

BlockWeights bind_block(const TensorLookup& lookup, const ModelConfig& config, std::int64_t il, const std::string& source,
                        bool experts_apart) {
  using namespace names;
  auto p = [il](std::string_view tensor) { return block_tensor(il, tensor); };
  BlockWeights w;
  w.attn_norm = require(lookup, p(kAttnNorm), source);
  w.wq = require(lookup, p(kAttnQ), source);
  w.wk = require(lookup, p(kAttnK), source);
  w.wv = require(lookup, p(kAttnV), source);
  w.wo = require(lookup, p(kAttnOutput), source);
  w.bq = lookup(p(kAttnQBias));
  w.bk = lookup(p(kAttnKBias));
  w.bv = lookup(p(kAttnVBias));
  w.bo = lookup(p(kAttnOutputBias));
  w.ffn_norm = require(lookup, p(config.ffn_norm_is_post_attn ? kPostAttnNorm : kFfnNorm), source);
  if (config.attn_sinks) w.attn_sinks = require(lookup, p(kAttnSinks), source);
  if (config.is_moe()) {
    w.router = require(lookup, p(kFfnGateInp), source);
    if (config.moe_biases) {
      w.router_bias = require(lookup, p(kFfnGateInpBias), source);
      w.gate_exps_bias = require(lookup, p(kFfnGateExpsBias), source);
      w.up_exps_bias = require(lookup, p(kFfnUpExpsBias), source);
      w.down_exps_bias = require(lookup, p(kFfnDownExpsBias), source);
    }
    if (!experts_apart) {
      w.gate_exps = require(lookup, p(kFfnGateExps), source);
      w.up_exps = require(lookup, p(kFfnUpExps), source);
      w.down_exps = require(lookup, p(kFfnDownExps), source);
    }
  } else {
    w.w_gate = require(lookup, p(kFfnGate), source);
    w.w_up = require(lookup, p(kFfnUp), source);
    w.w_down = require(lookup, p(kFfnDown), source);
  }
  if (config.arch == Arch::qwen2 && !(w.bq && w.bk && w.bv)) {
    throw Exception(ErrorContext{ErrorKind::corrupt, source, fmt::format("blk.{}", il)},
                    fmt::format("{}: qwen2 block {} lacks its q/k/v biases", source, il));
  }
  if (config.qk_norm) {
    w.q_norm = require(lookup, p(kAttnQNorm), source);
    w.k_norm = require(lookup, p(kAttnKNorm), source);
  }
  if (config.arch == Arch::gemma3) {
    w.post_attn_norm = require(lookup, p(kPostAttnNorm), source);
    w.post_ffn_norm = require(lookup, p(kPostFfnNorm), source);
  }
  return w;
}

TensorView expert_slice(const TensorView& stacked, std::int64_t e) {
  SLUICE_ASSERT(stacked.dims.size() >= 3 && e >= 0 && e < stacked.dims[2]);
  const std::int64_t n_expert = stacked.dims[2];
  // checked_config made bytes = type x shape, so each expert's share is whole rows.
  SLUICE_ASSERT(stacked.bytes % std::uint64_t(n_expert) == 0);
  const std::uint64_t expert_bytes = stacked.bytes / std::uint64_t(n_expert);
  TensorView v;
  v.type = stacked.type;
  v.dims = {stacked.dims[0], stacked.dims[1]};
  v.data = stacked.data + expert_bytes * std::uint64_t(e);
  v.bytes = expert_bytes;
  return v;
}

GlobalWeights bind_globals(const TensorLookup& lookup, const ModelConfig&, const std::string& source) {
  GlobalWeights g;
  g.tok_embd = require(lookup, names::kTokenEmbd, source);
  g.output_norm = require(lookup, names::kOutputNorm, source);
  g.output = lookup(names::kOutput);
  if (!g.output) g.output = g.tok_embd;  // tied embeddings
  g.rope_freqs = lookup(names::kRopeFreqs);
  return g;
}

}  // namespace sluice
