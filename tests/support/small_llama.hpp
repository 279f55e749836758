// Test support: a synthetic stand-in for stories260K (../shared/models) written in the test tree,
// so core tests that need "a small llama with a real tokenizer" run in any checkout. Same shape
// as stories260K (64 wide, 5 layers, 8 heads of 8, 4 KV heads, FFN 172, trained context 128,
// every tensor F32, untied head) and the built-in 512-token vocabulary (tools/synth_vocab.hpp:
// byte tokens, so every text tokenizes). Random weights: tests compare the engine with itself
// (batched vs alone, streamed vs in RAM, planned sizes), never with llama.cpp's text.
#pragma once

#include <string>

#include "tools/synth.hpp"

namespace sluice::testing {

inline SynthOptions small_llama_options(std::int64_t n_layer = 5) {
  SynthOptions o;
  o.arch = "llama";
  o.shape = SynthShape{64, n_layer, 8, 4, 172, 128};
  o.type = GgmlType::F32;
  o.embedding_type = GgmlType::F32;
  o.vocab_from.clear();  // the built-in vocabulary
  o.vocab_size = 512;
  return o;
}

// Writes the model to `path` (a GGUF) and returns the path.
inline std::string write_small_llama(const std::string& path) {
  write_synthetic_gguf(path, small_llama_options());
  return path;
}

}  // namespace sluice::testing
