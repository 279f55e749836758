// The small MoE models the MoE tests share (test_moe.cpp, test_expert_stream.cpp): qwen3moe
// (head length 32 != embd / heads, 8 experts of ff 64, 2 per token) or Mixtral (llama, 4 experts
// of ff 128, 2 per token), the built-in vocabulary.
#pragma once

#include <string>

#include "tools/synth.hpp"

namespace sluice {

inline SynthOptions moe_options(const std::string& arch, GgmlType type, float skew = 0.0f) {
  SynthOptions o;
  o.arch = arch == "mixtral" ? "llama" : arch;
  o.shape = synth_shape("tiny");
  o.shape.n_embd = 128;
  o.shape.n_layer = 3;
  o.shape.n_head = 4;
  o.shape.n_head_kv = 2;
  o.shape.n_ff = 128;
  if (arch == "qwen3moe") {
    o.head_dim = 32;
    o.shape.n_expert = 8;
    o.shape.n_ff_exp = 64;
  } else {
    o.shape.n_expert = 4;
  }
  o.shape.n_expert_used = 2;
  o.type = type;
  o.embedding_type = GgmlType::Q8_0;
  o.vocab_from.clear();
  o.router_skew = skew;
  return o;
}

}  // namespace sluice
