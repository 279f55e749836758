// The small MoE models the MoE tests share (test_moe.cpp, test_expert_stream.cpp): qwen3moe
// (head length 32 != embd / heads, 8 experts of ff 64, 2 per token), Mixtral (llama, 4 experts
// of ff 128, 2 per token) or gpt-oss (8 experts of ff 64, 2 per token, MXFP4 experts whatever
// `type` says, a sliding window of 4 on layers 0 and 2), the built-in vocabulary.
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
  if (arch == "qwen3moe" || arch == "gpt-oss") {
    o.head_dim = 32;
    o.shape.n_expert = 8;
    o.shape.n_ff_exp = 64;
  } else {
    o.shape.n_expert = 4;
  }
  o.shape.n_expert_used = 2;
  o.type = arch == "gpt-oss" ? GgmlType::MXFP4 : type;  // gpt-oss's experts as shipped (Q8_0 elsewhere)
  if (arch == "gpt-oss") o.sliding_window = 4;
  o.embedding_type = GgmlType::Q8_0;
  o.vocab_from.clear();
  o.router_skew = skew;
  return o;
}

// A test name for a parameter: gtest takes letters, digits and underscores.
inline std::string moe_test_name(const std::string& arch) {
  std::string name = arch;
  for (char& ch : name) {
    if (ch == '-') ch = '_';
  }
  return name;
}

}  // namespace sluice
