// The tokenizer's fuzz entry, shared by the libFuzzer target (fuzz_tokenizer.cpp, clang only)
// and the TokenizerFuzzSmoke gtest, plus the two small hand-made vocabularies both use (and the
// unit tests in tests/model/test_tokenizer.cpp).
//
// Input: byte 0 picks the tokenizer (bits 0-2: SentencePiece, or byte-level BPE with the
// default / gpt-2 / llama3 / qwen2 / gpt-4o pre-tokenizer) and the flags (bit 3: add_special,
// bit 4: parse_special); the rest is the text. Checked on every input (a violation aborts):
//   - ids are inside the vocabulary, decode and the streaming Detokenizer do not throw;
//   - the Detokenizer's pushes + flush concatenate to the concatenated pieces, and after each
//     push at most the start of one UTF-8 character is held back;
//   - text round-trips exactly where it should: strictly valid UTF-8, through SentencePiece when
//     no special token was cut out and the text has no U+2581, and through qwen2 and gpt-4o BPE.
//     (Invalid UTF-8 need not: a bad lead byte can swallow the escaped space after it, in
//     llama.cpp too.)
//   - every pre-tokenizer's words are non-empty and, decoded, concatenate to the text (for
//     strictly valid UTF-8).
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "model/tokenizer.hpp"
#include "model/unicode.hpp"

namespace sluice::tok::fuzz {

inline constexpr std::size_t kByteTokens = 256;

// SentencePiece-style: <unk> <s> </s>, 256 byte tokens <0x00>..<0xFF> (ids 3..258), then pieces
// whose scores favour "▁the" / "▁hello" / "▁world", one control and one user-defined token.
inline Vocab tiny_spm_vocab() {
  Vocab v;
  v.model = "llama";
  const auto add = [&](std::string text, float score, TokenType type) {
    v.tokens.push_back(std::move(text));
    v.scores.push_back(score);
    v.types.push_back(static_cast<std::int32_t>(type));
  };
  add("<unk>", 0, TokenType::kUnknown);
  add("<s>", 0, TokenType::kControl);
  add("</s>", 0, TokenType::kControl);
  for (std::size_t b = 0; b < kByteTokens; ++b) {
    char hex[8];
    std::snprintf(hex, sizeof(hex), "<0x%02X>", static_cast<unsigned>(b));
    add(hex, 0, TokenType::kByte);
  }
  const std::string sp = "\xE2\x96\x81";  // U+2581
  struct Piece {
    std::string text;
    float score;
  };
  const std::vector<Piece> pieces = {
      {sp, -1}, {"t", -2}, {"h", -2}, {"e", -2}, {"l", -2}, {"o", -2}, {"w", -2}, {"r", -2}, {"d", -2},
      {"a", -2}, {sp + "t", -3}, {"he", -3}, {sp + "the", -1.5F}, {sp + "th", -4}, {"ll", -3},
      {"llo", -3.5F}, {"hello", -2.5F}, {sp + "hello", -1}, {"or", -3}, {"ld", -3}, {"orld", -3}, {sp + "w", -3},
      {sp + "world", -1}, {"wor", -5}, {"world", -2}, {sp + "a", -3}, {"\xC3\xA9", -3} /* é */};
  for (const Piece& p : pieces) add(p.text, p.score, TokenType::kNormal);
  add("<start_of_turn>", 0, TokenType::kControl);
  add("<tool>", 0, TokenType::kUserDefined);
  v.bos = 1;
  v.eos = 2;
  v.unk = 0;
  return v;
}

// Byte-level BPE: the 256 byte stand-ins (id = byte value), merged words for "hello world",
// <|endoftext|> and <|im_start|> (control) and <tool> (user-defined). `pre` is
// tokenizer.ggml.pre.
inline Vocab tiny_bpe_vocab(const std::string& pre) {
  Vocab v;
  v.model = "gpt2";
  v.pre = pre;
  for (std::size_t b = 0; b < kByteTokens; ++b) {
    v.tokens.push_back(unicode::byte_to_unicode(static_cast<std::uint8_t>(b)));
    v.types.push_back(static_cast<std::int32_t>(TokenType::kNormal));
  }
  const std::string g = "\xC4\xA0";  // "Ġ", the stand-in for ' '
  const std::vector<std::pair<std::string, std::string>> merges = {
      {"h", "e"}, {"l", "l"}, {"he", "ll"}, {"hell", "o"}, {g, "w"}, {"o", "r"}, {g + "w", "or"},
      {g + "wor", "l"}, {g + "worl", "d"}, {g, "h"}, {g + "h", "e"}, {"1", "2"}, {g, g}};
  for (const auto& [l, r] : merges) {
    v.merges.push_back(l + " " + r);
    v.tokens.push_back(l + r);
    v.types.push_back(static_cast<std::int32_t>(TokenType::kNormal));
  }
  for (const auto& [text, type] : {std::pair<std::string, TokenType>{"<|endoftext|>", TokenType::kControl},
                                   {"<|im_start|>", TokenType::kControl},
                                   {"<tool>", TokenType::kUserDefined}}) {
    v.tokens.push_back(text);
    v.types.push_back(static_cast<std::int32_t>(type));
  }
  v.bos = v.eos = static_cast<std::int32_t>(v.tokens.size()) - 3;  // <|endoftext|>
  return v;
}

// Strict UTF-8 (no overlongs, surrogates or values past U+10FFFF): the inputs that byte-level
// BPE reproduces exactly.
inline bool is_strict_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<std::uint8_t>(s[i]);
    std::size_t len = 0;
    std::uint32_t min = 0;
    if (c < 0x80) { ++i; continue; }
    if (c >= 0xC2 && c <= 0xDF) { len = 2; min = 0x80; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; min = 0x800; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; min = 0x10000; }
    else return false;
    if (i + len > s.size()) return false;
    std::uint32_t cpt = c & (0x7F >> len);
    for (std::size_t k = 1; k < len; ++k) {
      const auto cc = static_cast<std::uint8_t>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cpt = (cpt << 6) | (cc & 0x3F);
    }
    if (cpt < min || cpt > 0x10FFFF || (cpt >= 0xD800 && cpt <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

inline constexpr int kTokenizerKinds = 6;  // spm, bpe default, gpt-2, llama3, qwen2, gpt-4o

inline const Tokenizer& fuzz_tokenizer(int kind) {
  static const Tokenizer spm(tiny_spm_vocab());
  static const Tokenizer bpe_default(tiny_bpe_vocab("default"));
  static const Tokenizer bpe_gpt2(tiny_bpe_vocab("gpt-2"));
  static const Tokenizer bpe_llama3(tiny_bpe_vocab("llama3"));
  static const Tokenizer bpe_qwen2(tiny_bpe_vocab("qwen2"));
  static const Tokenizer bpe_gpt4o(tiny_bpe_vocab("gpt-4o"));
  switch (kind) {
    case 0: return spm;
    case 1: return bpe_default;
    case 2: return bpe_gpt2;
    case 3: return bpe_llama3;
    case 4: return bpe_qwen2;
    default: return bpe_gpt4o;
  }
}

// The pre-tokenizer of each BPE kind of fuzz_tokenizer (kind 0, SentencePiece, has none).
inline PreTokenizer fuzz_pre_tokenizer(int kind) {
  switch (kind) {
    case 1: return PreTokenizer::kDefault;
    case 2: return PreTokenizer::kGpt2;
    case 3: return PreTokenizer::kLlama3;
    case 4: return PreTokenizer::kQwen2;
    default: return PreTokenizer::kGpt4o;
  }
}

// Reports the broken invariant with the whole input in hex (selector byte first), then aborts.
[[noreturn]] inline void violation(const char* what, const std::uint8_t* data, std::size_t size) {
  std::fprintf(stderr, "tokenizer fuzz: %s; input:", what);
  for (std::size_t i = 0; i < size; ++i) std::fprintf(stderr, " %02x", data[i]);
  std::fprintf(stderr, "\n");
  std::abort();
}

inline void run_tokenizer_input(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return;
  constexpr std::uint8_t kKindMask = 0x07;
  constexpr std::uint8_t kAddSpecialBit = 0x08;
  constexpr std::uint8_t kParseSpecialBit = 0x10;
  const int kind = (data[0] & kKindMask) % kTokenizerKinds;
  const bool add_special = (data[0] & kAddSpecialBit) != 0;
  const bool parse_special = (data[0] & kParseSpecialBit) != 0;
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  const Tokenizer& tok = fuzz_tokenizer(kind);

  const std::vector<std::int32_t> ids = tok.encode(text, add_special, parse_special);
  bool any_special = false;
  std::string pieces;
  Detokenizer stream(tok, /*render_special=*/true);
  std::string streamed;
  for (const std::int32_t id : ids) {
    if (id < 0 || static_cast<std::size_t>(id) >= tok.size()) violation("id outside the vocabulary", data, size);
    const std::string& t = tok.token_text(id);
    any_special = any_special || t == "<s>" || t == "</s>" || t == "<unk>" || t == "<start_of_turn>" ||
                  t == "<tool>" || t == "<|endoftext|>" || t == "<|im_start|>";
    pieces += tok.token_to_piece(id, true);
    streamed += stream.push(id);
    // What is held back must be the start of one UTF-8 character, nothing else.
    if (pieces.compare(0, streamed.size(), streamed) != 0) violation("streamed text is not a prefix of the pieces", data, size);
    const std::string_view held = std::string_view(pieces).substr(streamed.size());
    constexpr std::size_t kMaxHeld = 3;
    if (held.size() > kMaxHeld || (!held.empty() && unicode::complete_utf8_prefix(held) != 0)) {
      violation("held back more than a partial character", data, size);
    }
  }
  streamed += stream.flush();
  if (streamed != pieces) violation("streamed text differs from the pieces", data, size);

  if (kind != 0 && is_strict_utf8(text)) {
    std::string joined;
    for (const std::string& word : pre_tokenize(text, fuzz_pre_tokenizer(kind))) {
      if (word.empty()) violation("empty pre-tokenizer word", data, size);
      std::size_t off = 0;
      while (off < word.size()) {
        const auto byte = unicode::unicode_to_byte(unicode::decode_utf8(word, off));
        if (!byte) violation("pre-tokenizer word is not byte-level encoded", data, size);
        joined.push_back(static_cast<char>(*byte));
      }
    }
    if (joined != text) violation("pre-tokenizer words do not concatenate to the text", data, size);
  }

  const std::string decoded = tok.decode(ids, /*render_special=*/true);
  if (add_special) return;  // BOS/EOS text would be part of the decode
  if (kind == 0 && !any_special && is_strict_utf8(text) && text.find("\xE2\x96\x81") == std::string_view::npos &&
      decoded != text) {
    violation("SentencePiece text did not round-trip", data, size);
  }
  if ((kind == 4 || kind == 5) && is_strict_utf8(text) && decoded != text) {
    violation("qwen2 / gpt-4o BPE text did not round-trip", data, size);
  }
}

}  // namespace sluice::tok::fuzz
