#include "tools/synth_vocab.hpp"

#include <fmt/format.h>

#include <stdexcept>
#include <unordered_set>

namespace sluice {
namespace {

// Common English words first: the tiny models' prompts ("Once upon a time") then tokenize into
// a few pieces rather than bytes, as with a trained vocabulary.
const char* const kWords[] = {
    "the", "a", "and", "to", "was", "he", "she", "it", "of", "in", "on", "with", "her", "his", "they", "said",
    "Once", "upon", "time", "there", "little", "girl", "boy", "named", "Lily", "Tom", "Tim", "Sue", "day", "One",
    "The", "She", "He", "They", "cat", "dog", "big", "red", "park", "play", "ball", "happy", "because", "had",
    "toy", "car", "went", "sat", "loved", "saw", "very", "friend", "mom", "dad", "tree", "sun", "fun", "run",
    "is", "are", "be", "not", "for", "you", "I", "we", "that", "this", "what", "all", "so", "but", "up", "out",
    "capital", "France", "Paris", "water", "boils", "at", "def", "return", "if", "else", "for", "import",
    "quick", "brown", "fox", "jumps", "over", "lazy", "land", "far", "away", "lived", "king", "three", "daughters",
};
const char* const kConsonants[] = {"b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z",
                                   "ch", "sh", "th"};
const char* const kVowels[] = {"a", "e", "i", "o", "u"};
constexpr const char* kSpace = "\xe2\x96\x81";  // U+2581, SentencePiece's word boundary

// The i-th made-up syllable word: base-105 digits of i (+1 so every word has a syllable).
std::string syllable_word(std::uint64_t i) {
  std::string w;
  std::uint64_t n = i + 1;
  constexpr std::uint64_t kSyllables = std::size(kConsonants) * std::size(kVowels);
  while (n > 0) {
    const std::uint64_t d = (n - 1) % kSyllables;
    w += kConsonants[d / std::size(kVowels)];
    w += kVowels[d % std::size(kVowels)];
    n = (n - 1) / kSyllables;
  }
  return w;
}

}  // namespace

std::vector<std::pair<std::string, gguf::Value>> builtin_vocab_metadata(std::int64_t n_vocab) {
  if (n_vocab < kMinBuiltinVocab || n_vocab > kMaxBuiltinVocab) {
    throw std::invalid_argument(fmt::format("synth: the built-in vocabulary takes {}..{} tokens, not {}", kMinBuiltinVocab,
                                            kMaxBuiltinVocab, n_vocab));
  }
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<std::int32_t> types;  // llama.cpp's token types: 1 normal, 2 unknown, 3 control, 6 byte
  tokens.reserve(std::size_t(n_vocab));
  auto add = [&](std::string t, std::int32_t type) {
    scores.push_back(type == 1 ? -float(tokens.size()) : 0.0f);
    tokens.push_back(std::move(t));
    types.push_back(type);
  };
  add("<unk>", 2);
  add("<s>", 3);
  add("</s>", 3);
  for (int b = 0; b < 256; ++b) add(fmt::format("<0x{:02X}>", b), 6);
  std::unordered_set<std::string> seen(tokens.begin(), tokens.end());
  // SentencePiece merges adjacent pieces pairwise, so a word is reachable only through its
  // prefixes: each piece comes with every prefix of two or more characters, shortest first.
  auto add_piece = [&](const std::string& piece) {
    for (std::size_t end = 1; end <= piece.size(); ++end) {
      if (end < piece.size() && (static_cast<unsigned char>(piece[end]) & 0xC0) == 0x80) continue;  // inside a UTF-8 char
      const std::string prefix = piece.substr(0, end);
      if (std::int64_t(tokens.size()) < n_vocab && seen.insert(prefix).second) add(prefix, 1);
    }
  };
  for (const char* w : kWords) add_piece(std::string(kSpace) + w);
  add_piece(kSpace);
  for (char c = 'a'; c <= 'z'; ++c) add_piece(std::string(1, c)), add_piece(std::string(kSpace) + c);
  for (char c = 'A'; c <= 'Z'; ++c) add_piece(std::string(1, c)), add_piece(std::string(kSpace) + c);
  for (char c = '0'; c <= '9'; ++c) add_piece(std::string(1, c));
  for (const char* p : {".", ",", "!", "?", "'", "\"", ":", ";", "(", ")", "-"}) add_piece(p);
  for (std::uint64_t i = 0; std::int64_t(tokens.size()) < n_vocab; ++i) {
    const std::string w = syllable_word(i);
    add_piece(std::string(kSpace) + w);
    add_piece(w);
  }
  std::vector<std::pair<std::string, gguf::Value>> md;
  md.emplace_back("tokenizer.ggml.model", gguf::Value::string("llama"));
  md.emplace_back("tokenizer.ggml.tokens", gguf::Value::string_array(std::move(tokens)));
  md.emplace_back("tokenizer.ggml.scores", gguf::Value::array(std::span<const float>(scores)));
  md.emplace_back("tokenizer.ggml.token_type", gguf::Value::array(std::span<const std::int32_t>(types)));
  md.emplace_back("tokenizer.ggml.unknown_token_id", gguf::Value::unsigned_int(gguf::ValueType::u32, 0));
  md.emplace_back("tokenizer.ggml.bos_token_id", gguf::Value::unsigned_int(gguf::ValueType::u32, 1));
  md.emplace_back("tokenizer.ggml.eos_token_id", gguf::Value::unsigned_int(gguf::ValueType::u32, 2));
  md.emplace_back("tokenizer.ggml.add_bos_token", gguf::Value::boolean(true));
  return md;
}

}  // namespace sluice
