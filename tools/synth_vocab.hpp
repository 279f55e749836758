// A built-in SentencePiece-style ("llama") vocabulary for synthetic models, so `sluice synth`
// and the core tests need no GGUF to borrow one from: <unk>, <s>, </s>, the 256 byte tokens
// <0x00>..<0xFF> (so every text tokenizes), then "▁"-prefixed English words, single letters
// and digits, then made-up syllable words up to the size asked (128256 for a Llama 3-size
// embedding and head). Scores fall with the index, so the tokenizer prefers earlier pieces.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "model/gguf.hpp"

namespace sluice {

inline constexpr std::int64_t kMinBuiltinVocab = 259 + 64;  // specials + bytes + a few pieces
inline constexpr std::int64_t kMaxBuiltinVocab = 1 << 20;

// The tokenizer.* metadata of a vocabulary of `n_vocab` tokens (kMinBuiltinVocab..kMaxBuiltinVocab;
// throws std::invalid_argument outside). Deterministic: the same size gives the same tokens.
std::vector<std::pair<std::string, gguf::Value>> builtin_vocab_metadata(std::int64_t n_vocab);

}  // namespace sluice
