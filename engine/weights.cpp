#include "engine/weights.hpp"

#include <fmt/format.h>
#include <stdexcept>

#include "common/error.hpp"

namespace sluice {
namespace {
TensorView require(const TensorLookup& lookup, const std::string& name, const std::string& source) {
  TensorView v = lookup(name);
  if (!v)
    throw Exception(ErrorContext{ErrorKind::corrupt, source, name}, fmt::format("{}: tensor '{}' is missing", source, name));
  return v;
}
}  // namespace

BlockWeights bind_block(const TensorLookup& lookup, const ModelConfig& config, std::int64_t il, const std::string& source) {
  const std::string p = fmt::format("blk.{}.", il);
  BlockWeights w;
  w.attn_norm = require(lookup, p + "attn_norm.weight", source);
  w.wq = require(lookup, p + "attn_q.weight", source);
  w.wk = require(lookup, p + "attn_k.weight", source);
  w.wv = require(lookup, p + "attn_v.weight", source);
  w.wo = require(lookup, p + "attn_output.weight", source);
  w.bq = lookup(p + "attn_q.bias");
  w.bk = lookup(p + "attn_k.bias");
  w.bv = lookup(p + "attn_v.bias");
  w.ffn_norm = require(lookup, p + "ffn_norm.weight", source);
  w.w_gate = require(lookup, p + "ffn_gate.weight", source);
  w.w_up = require(lookup, p + "ffn_up.weight", source);
  w.w_down = require(lookup, p + "ffn_down.weight", source);
  if (config.arch == Arch::qwen2 && !(w.bq && w.bk && w.bv)) {
    throw Exception(ErrorContext{ErrorKind::corrupt, source, fmt::format("blk.{}", il)},
                    fmt::format("{}: qwen2 block {} lacks its q/k/v biases", source, il));
  }
  if (config.arch == Arch::gemma3) {
    w.q_norm = require(lookup, p + "attn_q_norm.weight", source);
    w.k_norm = require(lookup, p + "attn_k_norm.weight", source);
    w.post_attn_norm = require(lookup, p + "post_attention_norm.weight", source);
    w.post_ffn_norm = require(lookup, p + "post_ffw_norm.weight", source);
  }
  return w;
}

GlobalWeights bind_globals(const TensorLookup& lookup, const ModelConfig&, const std::string& source) {
  GlobalWeights g;
  g.tok_embd = require(lookup, "token_embd.weight", source);
  g.output_norm = require(lookup, "output_norm.weight", source);
  g.output = lookup("output.weight");
  if (!g.output) g.output = g.tok_embd;  // tied embeddings
  g.rope_freqs = lookup("rope_freqs.weight");
  return g;
}

}  // namespace sluice
