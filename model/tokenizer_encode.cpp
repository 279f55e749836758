// model/tokenizer_encode.cpp: text -> token ids. Special tokens written in the text are cut out
// first (partition_special); each remaining piece of raw text is then tokenized on its own, by
// SentencePiece-style score merging (encode_spm) or byte-level BPE rank merging (encode_bpe).
// Both merge loops follow llama.cpp's llm_tokenizer_spm_session / llm_tokenizer_bpe_session,
// including their priority-queue tie-breaking, so the ids match llama.cpp's.
#include <array>
#include <queue>

#include <fmt/format.h>

#include "model/tokenizer.hpp"
#include "model/unicode.hpp"
#include "model/unicode_split.hpp"

namespace sluice::tok {
namespace {

constexpr std::string_view kSpmSpace = "\xE2\x96\x81";  // U+2581, SentencePiece's space

// A run of the text being merged: symbols start as single UTF-8 characters and absorb their
// right neighbours; a symbol with n == 0 has been absorbed. prev/next link the live ones.
struct Symbol {
  int prev;
  int next;
  std::size_t offset;  // into the text being merged
  std::size_t n;       // bytes
};

// Splits `text` into one symbol per UTF-8 character (by lead byte, clipped at the end: invalid
// bytes become symbols of their own or swallow the next byte, as in llama.cpp).
std::vector<Symbol> split_chars(std::string_view text) {
  std::vector<Symbol> symbols;
  symbols.reserve(text.size());
  std::size_t offset = 0;
  int index = 0;
  while (offset < text.size()) {
    const std::size_t n = std::min(unicode::utf8_len(text[offset]), text.size() - offset);
    offset += n;
    symbols.push_back({index - 1, offset == text.size() ? -1 : index + 1, offset - n, n});
    ++index;
  }
  return symbols;
}

struct SpmBigram {
  int left;
  int right;
  float score;
  std::size_t size;
};
// Highest score first; on a tie the leftmost pair.
struct SpmBigramOrder {
  bool operator()(const SpmBigram& l, const SpmBigram& r) const {
    return l.score < r.score || (l.score == r.score && l.left > r.left);
  }
};

struct BpeBigram {
  int left;
  int right;
  std::string text;
  int rank;
  std::size_t size;
};
// Lowest merge rank first; on a tie the leftmost pair.
struct BpeBigramOrder {
  bool operator()(const BpeBigram& l, const BpeBigram& r) const {
    return l.rank > r.rank || (l.rank == r.rank && l.left > r.left);
  }
};

constexpr std::size_t kByteValues = 256;

}  // namespace

std::int32_t Tokenizer::find_token(std::string_view text) const {
  const auto it = token_to_id_.find(std::string(text));
  return it == token_to_id_.end() ? -1 : it->second;
}

int Tokenizer::find_merge_rank(const std::string& left, const std::string& right) const {
  const auto it = merge_ranks_.find(std::make_pair(left, right));
  return it == merge_ranks_.end() ? -1 : it->second;
}

// The token for one raw byte: <0xHH>, else a token whose text is the byte itself, else unk
// (llama.cpp would throw here; no real SentencePiece vocabulary lacks byte tokens).
std::int32_t Tokenizer::spm_byte_token(std::uint8_t byte) const {
  const std::int32_t id = find_token(fmt::format("<0x{:02X}>", byte));
  if (id >= 0) return id;
  const std::int32_t raw = find_token(std::string(1, static_cast<char>(byte)));
  return raw >= 0 ? raw : unk_;
}

std::vector<Tokenizer::Fragment> Tokenizer::partition_special(std::string_view text, bool parse_special,
                                                             std::span<const std::pair<std::size_t, std::size_t>> special_ranges,
                                                             bool restrict_to_ranges) const {
  // Whether [at, at + n) lies inside one range (ranges are few: a chat's markers).
  const auto allowed = [&](std::size_t at, std::size_t n) {
    for (const auto& [offset, length] : special_ranges) {
      if (at >= offset && at - offset <= length && n <= length - (at - offset)) return true;
    }
    return false;
  };
  std::vector<Fragment> fragments = {{-1, 0, text.size()}};
  // Tokens whose first byte is nowhere in the text cannot match: skip them without a scan.
  std::array<bool, kByteValues> present{};
  for (const char c : text) present[static_cast<std::uint8_t>(c)] = true;

  std::vector<Fragment> next;
  for (const std::int32_t id : special_tokens_) {
    const std::uint32_t attr = attrs_[static_cast<std::size_t>(id)];
    // Without parse_special only user-defined tokens are cut out (as Hugging Face's tokenizers
    // and llama.cpp do); control and unknown tokens are then ordinary text.
    if (!parse_special && (attr & (kAttrControl | kAttrUnknown))) continue;
    const std::string& special = tokens_[static_cast<std::size_t>(id)];
    if (!present[static_cast<std::uint8_t>(special[0])]) continue;
    const bool ranged = restrict_to_ranges && (attr & (kAttrControl | kAttrUnknown));

    next.clear();
    bool found = false;
    for (const Fragment& frag : fragments) {
      if (frag.token >= 0) {
        next.push_back(frag);
        continue;
      }
      std::size_t begin = frag.offset;
      const std::size_t end = frag.offset + frag.length;
      const std::string_view window = text.substr(0, end);
      std::size_t search = begin;
      for (std::size_t hit; (hit = window.find(special, search)) != std::string_view::npos;) {
        if (ranged && !allowed(hit, special.size())) {  // in a message's text: stays text
          search = hit + 1;
          continue;
        }
        found = true;
        if (hit > begin) next.push_back({-1, begin, hit - begin});
        next.push_back({id, hit, special.size()});
        begin = search = hit + special.size();
      }
      if (begin < end) next.push_back({-1, begin, end - begin});
    }
    if (found) fragments.swap(next);
  }
  return fragments;
}

std::vector<std::int32_t> Tokenizer::encode(std::string_view text, bool add_special, bool parse_special) const {
  return encode_fragments(text, text.empty() ? std::vector<Fragment>{} : partition_special(text, parse_special), add_special);
}

std::vector<std::int32_t> Tokenizer::encode(std::string_view text, bool add_special,
                                            std::span<const std::pair<std::size_t, std::size_t>> special_ranges) const {
  return encode_fragments(text, text.empty() ? std::vector<Fragment>{} : partition_special(text, true, special_ranges, true),
                          add_special);
}

std::vector<std::int32_t> Tokenizer::encode_fragments(std::string_view text, const std::vector<Fragment>& fragments,
                                                      bool add_special) const {
  std::vector<std::int32_t> out;
  if (add_special && add_bos_) out.push_back(bos_);

  // SentencePiece: the text at the start and after every special token gets the space prefix.
  bool after_special = true;
  for (const Fragment& frag : fragments) {
    if (frag.token >= 0) {
      out.push_back(frag.token);
      after_special = true;
      continue;
    }
    const std::string_view raw = text.substr(frag.offset, frag.length);
    if (is_spm_) {
      std::string escaped = add_space_prefix_ && after_special ? " " : "";
      escaped += raw;
      std::string spaced;
      spaced.reserve(escaped.size() + 2 * kSpmSpace.size());
      for (const char c : escaped) {
        if (c == ' ') {
          spaced += kSpmSpace;
        } else {
          spaced += c;
        }
      }
      encode_spm(spaced, out);
    } else {
      encode_bpe(raw, out);
    }
    after_special = false;
  }

  if (add_special && add_eos_) out.push_back(eos_);
  return out;
}

void Tokenizer::encode_spm(std::string_view text, std::vector<std::int32_t>& out) const {
  std::vector<Symbol> symbols = split_chars(text);
  std::priority_queue<SpmBigram, std::vector<SpmBigram>, SpmBigramOrder> queue;
  const auto try_add_bigram = [&](int left, int right) {
    if (left < 0 || right < 0) return;
    const Symbol& l = symbols[static_cast<std::size_t>(left)];
    const Symbol& r = symbols[static_cast<std::size_t>(right)];
    const std::size_t size = l.n + r.n;
    const std::int32_t id = find_token(text.substr(l.offset, size));
    if (id < 0) return;
    queue.push({left, right, scores_[static_cast<std::size_t>(id)], size});
  };
  for (int i = 1; i < static_cast<int>(symbols.size()); ++i) try_add_bigram(i - 1, i);

  // Merge the best-scoring adjacent pair that is a token until none is left.
  while (!queue.empty()) {
    const SpmBigram bigram = queue.top();
    queue.pop();
    Symbol& left = symbols[static_cast<std::size_t>(bigram.left)];
    Symbol& right = symbols[static_cast<std::size_t>(bigram.right)];
    // Stale: one side has been merged away or grown since the pair was queued.
    if (left.n == 0 || right.n == 0 || left.n + right.n != bigram.size) continue;
    left.n += right.n;
    right.n = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[static_cast<std::size_t>(right.next)].prev = bigram.left;
    try_add_bigram(left.prev, bigram.left);
    try_add_bigram(bigram.left, left.next);
  }

  // Every multi-character symbol is a token by construction; a single character that is not
  // one falls back to its bytes.
  for (int i = symbols.empty() ? -1 : 0; i != -1; i = symbols[static_cast<std::size_t>(i)].next) {
    const Symbol& sym = symbols[static_cast<std::size_t>(i)];
    const std::string_view piece = text.substr(sym.offset, sym.n);
    if (const std::int32_t id = find_token(piece); id >= 0) {
      out.push_back(id);
      continue;
    }
    for (const char c : piece) {
      if (const std::int32_t id = spm_byte_token(static_cast<std::uint8_t>(c)); id >= 0) out.push_back(id);
    }
  }
}

void Tokenizer::encode_bpe(std::string_view text, std::vector<std::int32_t>& out) const {
  for (const std::string& word : pre_tokenize(text, pre_)) encode_bpe_word(word, out);
}

void Tokenizer::encode_bpe_word(const std::string& word, std::vector<std::int32_t>& out) const {
  if (ignore_merges_) {
    if (const std::int32_t id = find_token(word); id >= 0) {
      out.push_back(id);
      return;
    }
  }
  std::vector<Symbol> symbols = split_chars(word);
  const auto text_of = [&](const Symbol& s) { return word.substr(s.offset, s.n); };
  std::priority_queue<BpeBigram, std::vector<BpeBigram>, BpeBigramOrder> queue;
  const auto add_bigram = [&](int left, int right) {
    if (left < 0 || right < 0) return;
    std::string l = text_of(symbols[static_cast<std::size_t>(left)]);
    std::string r = text_of(symbols[static_cast<std::size_t>(right)]);
    const int rank = find_merge_rank(l, r);
    if (rank < 0) return;
    const std::size_t size = l.size() + r.size();
    queue.push({left, right, std::move(l) + r, rank, size});
  };
  for (int i = 1; i < static_cast<int>(symbols.size()); ++i) add_bigram(i - 1, i);

  // Apply the lowest-ranked merge among adjacent pairs until none applies.
  while (!queue.empty()) {
    const BpeBigram bigram = queue.top();
    queue.pop();
    Symbol& left = symbols[static_cast<std::size_t>(bigram.left)];
    Symbol& right = symbols[static_cast<std::size_t>(bigram.right)];
    if (left.n == 0 || right.n == 0) continue;
    if (text_of(left) + text_of(right) != bigram.text) continue;  // stale pair
    left.n += right.n;
    right.n = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[static_cast<std::size_t>(right.next)].prev = bigram.left;
    add_bigram(left.prev, bigram.left);
    add_bigram(bigram.left, left.next);
  }

  for (const Symbol& sym : symbols) {
    if (sym.n == 0) continue;
    const std::string piece = text_of(sym);
    if (const std::int32_t id = find_token(piece); id >= 0) {
      out.push_back(id);
      continue;
    }
    // No token for the merged piece: fall back to tokens for its single bytes, dropping bytes
    // that have none (llama.cpp does the same).
    for (const char c : piece) {
      if (const std::int32_t id = find_token(std::string_view(&c, 1)); id >= 0) out.push_back(id);
    }
  }
}

}  // namespace sluice::tok
