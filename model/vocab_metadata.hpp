// Builds a tokenizer vocabulary from model metadata (tokenizer.ggml.* keys of a GGUF or pack).
#pragma once

#include "model/metadata.hpp"
#include "model/tokenizer.hpp"

namespace sluice {

// Throws std::runtime_error naming the source and key when the vocabulary is missing or malformed.
tok::Vocab vocab_from_metadata(const Metadata& metadata);

}  // namespace sluice
