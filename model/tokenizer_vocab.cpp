// model/tokenizer_vocab.cpp: building a Tokenizer from a Vocab (validation, defaults, special
// tokens, end-of-generation set) and the id -> text direction (token_to_piece, decode,
// Detokenizer). The text -> id direction is in model/tokenizer_encode.cpp.
#include <algorithm>
#include <functional>
#include <iterator>
#include <stdexcept>

#include <fmt/format.h>

#include "model/tokenizer.hpp"
#include "model/unicode.hpp"

namespace sluice::tok {
namespace {

// Longest token text accepted. Real vocabularies top out at a few hundred bytes (runs of spaces,
// HTML tags); anything far longer is a corrupt file, and special-token matching scans the text
// once per token, so the bound also bounds that work.
constexpr std::size_t kMaxTokenBytes = 64 * 1024;
// Most tokens accepted: ids are int32 and the largest real vocabularies have ~262k entries.
constexpr std::size_t kMaxTokens = std::size_t{1} << 24;

// llama.cpp's defaults when the file names no special ids.
constexpr std::int32_t kSpmDefaultBos = 1;
constexpr std::int32_t kSpmDefaultEos = 2;
constexpr std::int32_t kSpmDefaultUnk = 0;
constexpr std::int32_t kBpeDefaultBosEos = 11;  // Falcon's <|endoftext|>, llama.cpp's BPE default

// U+2581 LOWER ONE EIGHTH BLOCK: SentencePiece's visible space.
constexpr std::string_view kSpmSpace = "\xE2\x96\x81";

// Token texts llama.cpp treats as end of generation (and as control tokens) whatever their type.
constexpr std::string_view kEogTexts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>",
    "<|calls|>", "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>",
    "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>", "<end_of_utterance>", "<eos>",
    "<turn|>", "<|tool_response>", "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>",
    "[e~["};

struct PreInfo {
  std::string_view name;
  PreTokenizer kind;
  bool clean_spaces;
};
// tokenizer.ggml.pre values understood, with llama.cpp's clean_up_tokenization_spaces setting.
constexpr PreInfo kPreTokenizers[] = {
    {"", PreTokenizer::kDefault, true},
    {"default", PreTokenizer::kDefault, true},
    {"gpt-2", PreTokenizer::kGpt2, true},
    {"llama3", PreTokenizer::kLlama3, true},
    {"llama-v3", PreTokenizer::kLlama3, true},
    {"llama-bpe", PreTokenizer::kLlama3, true},
    {"qwen2", PreTokenizer::kQwen2, false},
    {"deepseek-r1-qwen", PreTokenizer::kQwen2, false},
    {"gpt-4o", PreTokenizer::kGpt4o, false},  // gpt-oss
    // Names llama.cpp (llama-cpp-python 0.3.36) tokenizes exactly as gpt-4o: checked on ids and
    // decoded text of the llama-bpe vocabulary with each name (tools/gen_tokenizer_expected.py's
    // gpt-4o strings).
    {"llama4", PreTokenizer::kGpt4o, false},
    {"kanana2", PreTokenizer::kGpt4o, false},
    {"talkie", PreTokenizer::kGpt4o, false},
    {"minimax-m2", PreTokenizer::kGpt4o, false},
};

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  std::string out;
  out.reserve(s.size());
  std::size_t pos = 0;
  for (std::size_t hit; (hit = s.find(from, pos)) != std::string::npos; pos = hit + from.size()) {
    out.append(s, pos, hit - pos);
    out.append(to);
  }
  out.append(s, pos);
  s = std::move(out);
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// "<0xHH>" -> the byte; nullopt for any other text.
std::optional<std::uint8_t> parse_byte_token(std::string_view text) {
  constexpr std::size_t kByteTokenLen = 6;
  if (text.size() != kByteTokenLen || text.substr(0, 3) != "<0x" || text.back() != '>') return std::nullopt;
  const int hi = hex_digit(text[3]);
  const int lo = hex_digit(text[4]);
  if (hi < 0 || lo < 0) return std::nullopt;
  return static_cast<std::uint8_t>(hi * 16 + lo);
}

// llama.cpp's clean_up_tokenization_spaces, three passes over the decoded text, ported as is
// (in place, including reading the buffer it rewrites).
void clean_spaces(std::string& text) {
  std::size_t n = text.size();
  // " ?", " !", " .", " ," lose their space.
  std::size_t total = n ? 1 : 0;
  for (std::size_t i = 1; i < n; ++i) {
    const char x = text[i];
    if (text[i - 1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ',')) --total;
    text[total++] = x;
  }
  // " ' " loses both spaces.
  n = total;
  total = n ? 1 : 0;
  for (std::size_t i = 1; i < n; ++i) {
    const char x = text[i];
    if (x == '\'' && i + 1 < n && text[i - 1] == ' ' && text[i + 1] == ' ') {
      --total;
      text[++i] = '\0';
    }
    text[total++] = x;
  }
  // " 's", " 'm", " 're", " 've" lose their space (" 't", " 'd", " 'll" keep it).
  n = total;
  total = n ? 1 : 0;
  for (std::size_t i = 1; i < n; ++i) {
    const char x = text[i];
    if (text[i - 1] == ' ' && x == '\'' && i + 1 < n) {
      const char x1 = text[i + 1];
      if (x1 == 's' || x1 == 'm') {
        --total;
      } else if (i + 2 < n) {
        const char x2 = text[i + 2];
        if ((x1 == 'r' && x2 == 'e') || (x1 == 'v' && x2 == 'e')) --total;
      }
    }
    text[total++] = x;
  }
  text.resize(total);
}

}  // namespace

std::size_t Tokenizer::PairHash::operator()(const std::pair<std::string, std::string>& p) const {
  const std::size_t h1 = std::hash<std::string>{}(p.first);
  const std::size_t h2 = std::hash<std::string>{}(p.second);
  return h1 ^ (h2 + 0x9E3779B97F4A7C15ULL + (h1 << 6) + (h1 >> 2));
}

Tokenizer::Tokenizer(Vocab vocab) {
  if (vocab.model == "llama") {
    is_spm_ = true;
    add_space_prefix_ = true;
    add_bos_ = true;
  } else if (vocab.model == "gpt2") {
    is_spm_ = false;
    const auto* it = std::find_if(std::begin(kPreTokenizers), std::end(kPreTokenizers),
                                 [&](const PreInfo& p) { return p.name == vocab.pre; });
    if (it == std::end(kPreTokenizers)) {
      throw std::invalid_argument(fmt::format(
          "tokenizer.ggml.pre '{}' is not supported (supported: default, gpt-2, llama3, llama-v3, llama-bpe, "
          "qwen2, deepseek-r1-qwen, gpt-4o, llama4, kanana2, talkie, minimax-m2)", vocab.pre));
    }
    pre_ = it->kind;
    clean_spaces_ = it->clean_spaces;
    ignore_merges_ = add_bos_ = pre_ == PreTokenizer::kLlama3;
  } else {
    throw std::invalid_argument(
        fmt::format("tokenizer.ggml.model '{}' is not supported (supported: llama, gpt2)", vocab.model));
  }

  const std::size_t n = vocab.tokens.size();
  if (n == 0) throw std::invalid_argument("tokenizer.ggml.tokens is empty");
  if (n > kMaxTokens) {
    throw std::invalid_argument(fmt::format("tokenizer.ggml.tokens has {} entries, more than {}", n, kMaxTokens));
  }
  if (!vocab.scores.empty() && vocab.scores.size() != n) {
    throw std::invalid_argument(
        fmt::format("tokenizer.ggml.scores has {} entries but tokenizer.ggml.tokens has {}", vocab.scores.size(), n));
  }
  if (!vocab.types.empty() && vocab.types.size() != n) {
    throw std::invalid_argument(fmt::format(
        "tokenizer.ggml.token_type has {} entries but tokenizer.ggml.tokens has {}", vocab.types.size(), n));
  }
  if (!is_spm_ && vocab.merges.empty()) throw std::invalid_argument("tokenizer.ggml.merges is missing or empty");

  if (!is_spm_) index_merges(vocab.merges);
  index_tokens(vocab);  // moves vocab.tokens out
  resolve_specials(vocab);
}

void Tokenizer::index_tokens(Vocab& vocab) {
  const std::size_t n = vocab.tokens.size();
  tokens_ = std::move(vocab.tokens);
  scores_ = vocab.scores.empty() ? std::vector<float>(n, 0.0F) : vocab.scores;
  attrs_.assign(n, kAttrNormal);
  token_to_id_.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    std::string& text = tokens_[i];
    // llama.cpp renames empty tokens so that every text maps back to one id.
    if (text.empty()) text = fmt::format("[EMPTY_{}]", i);
    if (text.size() > kMaxTokenBytes) {
      throw std::invalid_argument(
          fmt::format("tokenizer.ggml.tokens[{}] is {} bytes long, more than {}", i, text.size(), kMaxTokenBytes));
    }
    token_to_id_[text] = static_cast<std::int32_t>(i);  // a duplicate text maps to its last id
    if (vocab.types.empty()) continue;
    switch (static_cast<TokenType>(vocab.types[i])) {
      case TokenType::kNormal: attrs_[i] = kAttrNormal; break;
      case TokenType::kUnknown: attrs_[i] = kAttrUnknown; break;
      case TokenType::kControl: attrs_[i] = kAttrControl; break;
      case TokenType::kUserDefined: attrs_[i] = kAttrUserDefined; break;
      case TokenType::kUnused: attrs_[i] = kAttrUnused; break;
      case TokenType::kByte: attrs_[i] = kAttrByte; break;
      default: attrs_[i] = kAttrUndefined; break;
    }
  }
}

void Tokenizer::index_merges(const std::vector<std::string>& merges) {
  merge_ranks_.reserve(merges.size());
  for (std::size_t i = 0; i < merges.size(); ++i) {
    const std::string& line = merges[i];
    // The separator is the first space after the first character, so a left side may start
    // with a space (llama.cpp splits the same way).
    const std::size_t space = line.size() > 1 ? line.find(' ', 1) : std::string::npos;
    if (space == std::string::npos || space + 1 >= line.size()) {
      throw std::invalid_argument(fmt::format("tokenizer.ggml.merges[{}] '{}' is not 'left right'", i, line));
    }
    // The first occurrence of a pair keeps its rank.
    merge_ranks_.emplace(std::make_pair(line.substr(0, space), line.substr(space + 1)), static_cast<int>(i));
  }
}

void Tokenizer::resolve_specials(const Vocab& vocab) {
  const auto n = static_cast<std::int32_t>(tokens_.size());
  const auto pick = [n](std::int32_t given, std::int32_t fallback) {
    if (given >= 0 && given < n) return given;
    return fallback >= 0 && fallback < n ? fallback : -1;
  };
  bos_ = pick(vocab.bos, is_spm_ ? kSpmDefaultBos : kBpeDefaultBosEos);
  eos_ = pick(vocab.eos, is_spm_ ? kSpmDefaultEos : kBpeDefaultBosEos);
  unk_ = pick(vocab.unk, is_spm_ ? kSpmDefaultUnk : -1);
  eot_ = pick(vocab.eot, -1);
  add_bos_ = vocab.add_bos.value_or(add_bos_);
  add_eos_ = vocab.add_eos.value_or(add_eos_);
  add_space_prefix_ = vocab.add_space_prefix.value_or(add_space_prefix_);
  if (add_bos_ && bos_ < 0) throw std::invalid_argument("tokenizer.ggml.add_bos_token is set but there is no bos token");
  if (add_eos_ && eos_ < 0) throw std::invalid_argument("tokenizer.ggml.add_eos_token is set but there is no eos token");

  // End of generation: eos, eot, and tokens recognised by text, which also become control tokens
  // (so that they render as special and are matched by parse_special), as in llama.cpp.
  for (std::int32_t id = 0; id < n; ++id) {
    const std::string& text = tokens_[static_cast<std::size_t>(id)];
    if (std::find(std::begin(kEogTexts), std::end(kEogTexts), text) == std::end(kEogTexts)) continue;
    if (token_to_id_.at(text) != id) continue;  // only the id the text maps to
    eog_ids_.push_back(id);
    attrs_[static_cast<std::size_t>(id)] |= kAttrControl;
  }
  for (const std::int32_t id : {eos_, eot_}) {
    if (id >= 0) eog_ids_.push_back(id);
  }
  std::sort(eog_ids_.begin(), eog_ids_.end());
  eog_ids_.erase(std::unique(eog_ids_.begin(), eog_ids_.end()), eog_ids_.end());

  // Tokens matched in the text before normal tokenization, longest first so that a token wins
  // over any token it contains; ties keep id order.
  for (std::int32_t id = 0; id < n; ++id) {
    if (attrs_[static_cast<std::size_t>(id)] & (kAttrControl | kAttrUserDefined | kAttrUnknown)) {
      special_tokens_.push_back(id);
    }
  }
  std::stable_sort(special_tokens_.begin(), special_tokens_.end(), [&](std::int32_t a, std::int32_t b) {
    return tokens_[static_cast<std::size_t>(a)].size() > tokens_[static_cast<std::size_t>(b)].size();
  });

  pieces_.resize(tokens_.size());
  for (std::int32_t id = 0; id < n; ++id) pieces_[static_cast<std::size_t>(id)] = render_piece(id);
}

// llama.cpp's token_to_piece with special = true: what the token stands for.
std::string Tokenizer::render_piece(std::int32_t id) const {
  const std::string& text = tokens_[static_cast<std::size_t>(id)];
  const std::uint32_t attr = attrs_[static_cast<std::size_t>(id)];
  if (attr & (kAttrUnknown | kAttrControl | kAttrUserDefined)) return text;
  if (attr & kAttrNormal) {
    std::string piece = text;
    if (is_spm_) {
      replace_all(piece, kSpmSpace, " ");
      return piece;
    }
    // Byte-level BPE: every code point of the text stands for one byte.
    piece.clear();
    std::size_t offset = 0;
    while (offset < text.size()) {
      const std::uint32_t cpt = unicode::decode_utf8(text, offset);
      if (const auto byte = unicode::unicode_to_byte(cpt)) {
        piece.push_back(static_cast<char>(*byte));
        continue;
      }
      // Not a byte stand-in: llama.cpp writes a marker with the offending UTF-8 and the text.
      piece += "[UNK_BYTE_0x";
      std::string utf8;
      unicode::append_utf8(utf8, cpt);
      for (const char c : utf8) piece += fmt::format("{:02x}", static_cast<std::uint8_t>(c));
      piece += text + "]";
    }
    return piece;
  }
  if (attr & kAttrByte) {
    if (const auto byte = parse_byte_token(text)) return std::string(1, static_cast<char>(*byte));
    return text;  // a byte token not written <0xHH>: its text is all there is
  }
  return {};  // unused and undefined tokens render as nothing
}

void Tokenizer::check_id(std::int32_t id) const {
  if (id < 0 || static_cast<std::size_t>(id) >= tokens_.size()) {
    throw std::out_of_range(fmt::format("token id {} is outside the vocabulary of {} tokens", id, tokens_.size()));
  }
}

std::string Tokenizer::token_to_piece(std::int32_t id, bool render_special) const {
  check_id(id);
  if (!render_special && (attrs_[static_cast<std::size_t>(id)] & (kAttrUnknown | kAttrControl))) return {};
  return pieces_[static_cast<std::size_t>(id)];
}

std::string Tokenizer::decode(std::span<const std::int32_t> ids, bool render_special) const {
  std::string text;
  bool strip_space = add_space_prefix_;  // only ever the first token's
  for (const std::int32_t id : ids) {
    std::string piece = token_to_piece(id, render_special);
    if (strip_space && !piece.empty() && piece.front() == ' ') piece.erase(0, 1);
    strip_space = false;
    text += piece;
  }
  if (clean_spaces_) clean_spaces(text);
  return text;
}

bool Tokenizer::is_eog(std::int32_t id) const { return std::binary_search(eog_ids_.begin(), eog_ids_.end(), id); }

std::string Detokenizer::push(std::int32_t id) {
  pending_ += tokenizer_.token_to_piece(id, render_special_);
  const std::size_t complete = unicode::complete_utf8_prefix(pending_);
  std::string out = pending_.substr(0, complete);
  pending_.erase(0, complete);
  return out;
}

std::string Detokenizer::flush() {
  std::string out;
  out.swap(pending_);
  return out;
}

}  // namespace sluice::tok
