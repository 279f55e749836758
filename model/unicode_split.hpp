// model/unicode_split.hpp: the pre-tokenizers of GPT-2-style byte-level BPE vocabularies. They
// split text into words (BPE merges never cross a word boundary) the way the vocabulary's
// original regex does, written by hand over code point classes instead of with a regex engine,
// following llama.cpp's src/unicode.cpp (unicode_regex_split and its custom gpt2/llama3/qwen2
// splitters, and for gpt-4o the std::regex it runs over category-collapsed text) so that the
// words, and hence the tokens, match llama.cpp's.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace sluice::tok {

// Which regex set splits the text (tokenizer.ggml.pre names in the comments).
enum class PreTokenizer {
  // "default" or absent: [\p{P}\$\+<=>\^~\|]+ , then the GPT-2 regex, then \p{N}+ , then
  // [0-9][0-9][0-9], each applied to the pieces the previous one left.
  kDefault,
  // "gpt-2": 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  kGpt2,
  // "llama3", "llama-v3", "llama-bpe": (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|
  //   \p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
  kLlama3,
  // "qwen2", "deepseek-r1-qwen": as kLlama3 but \p{N} (one digit per word).
  kQwen2,
  // "gpt-4o", "llama4", "kanana2", "talkie", "minimax-m2" (o200k, gpt-oss): the regex llama.cpp runs in place of o200k's
  //   [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|...)?|
  //   [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|...)?|
  //   \p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+
  // with "upper" = (?=\p{L})[^a-z] and "lower" = (?=\p{L})[^A-Z]: only ASCII letters have a
  // case (every other letter is both upper and lower) and marks are not letters. sluice follows
  // llama.cpp, not the ideal regex, so ids match llama.cpp's (details in unicode_split.cpp).
  kGpt4o,
};

// Splits `text` into words and returns each word byte-level encoded (every UTF-8 byte replaced
// by unicode::byte_to_unicode). Invalid UTF-8 is read as U+FFFD per bad byte, as llama.cpp does.
// Thread-safe; allocates only the result.
std::vector<std::string> pre_tokenize(std::string_view text, PreTokenizer kind);

}  // namespace sluice::tok
