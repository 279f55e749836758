#include "engine/weights.hpp"

#include <fmt/format.h>
#include <stdexcept>

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

BlockWeights bind_block(const TensorLookup& lookup, const ModelConfig& config, std::int64_t il, const std::string& source) {
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
  w.ffn_norm = require(lookup, p(kFfnNorm), source);
  w.w_gate = require(lookup, p(kFfnGate), source);
  w.w_up = require(lookup, p(kFfnUp), source);
  w.w_down = require(lookup, p(kFfnDown), source);
  if (config.arch == Arch::qwen2 && !(w.bq && w.bk && w.bv)) {
    throw Exception(ErrorContext{ErrorKind::corrupt, source, fmt::format("blk.{}", il)},
                    fmt::format("{}: qwen2 block {} lacks its q/k/v biases", source, il));
  }
  if (config.arch == Arch::gemma3) {
    w.q_norm = require(lookup, p(kAttnQNorm), source);
    w.k_norm = require(lookup, p(kAttnKNorm), source);
    w.post_attn_norm = require(lookup, p(kPostAttnNorm), source);
    w.post_ffn_norm = require(lookup, p(kPostFfnNorm), source);
  }
  return w;
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
