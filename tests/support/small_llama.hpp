// Test support: a synthetic stand-in for stories260K (../shared/models) written in the test tree,
// so core tests that need "a small llama with a real tokenizer" run in any checkout. Same shape
// as stories260K (64 wide, 5 layers, 8 heads of 8, 4 KV heads, FFN 172, trained context 128,
// every tensor F32, untied head) and the built-in 512-token vocabulary (tools/synth_vocab.hpp:
// byte tokens, so every text tokenizes). Random weights: tests compare the engine with itself
// (batched vs alone, streamed vs in RAM, planned sizes), never with llama.cpp's text.
#pragma once

#include <string>

#include "model/ggml_types.hpp"
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

// The "tiny" synthetic shape with `n_layer` blocks, every matrix and the embedding in the ggml
// type named `type` (F32 ... Q6_K), the built-in vocabulary: the model the per-type parity tests
// (streamed vs in RAM, GGUF vs pack, split vs unsplit) write.
inline SynthOptions tiny_typed_options(const char* type, std::int64_t n_layer = 3) {
  SynthOptions o;
  o.shape = synth_shape("tiny");
  o.shape.n_layer = n_layer;
  o.type = *ggml_type_from_name(type);
  o.embedding_type = o.type;
  o.vocab_from.clear();  // the built-in vocabulary: no ../shared needed
  return o;
}

// Writes the model to `path` (a GGUF) and returns the path.
inline std::string write_small_llama(const std::string& path) {
  write_synthetic_gguf(path, small_llama_options());
  return path;
}

}  // namespace sluice::testing
