// model/tokenizer.hpp: text <-> token ids from a GGUF file's tokenizer.* metadata, matching
// llama.cpp (src/llama-vocab.cpp) for two vocabulary kinds:
//   - "llama": SentencePiece-style; scores drive bigram merging, bytes without a piece fall back
//     to <0xXX> tokens, a space is prepended (tokenizer.ggml.add_space_prefix, default true) and
//     spaces are written as U+2581.
//   - "gpt2": byte-level BPE; a pre-tokenizer (tokenizer.ggml.pre: default, gpt-2, llama3 /
//     llama-bpe, qwen2, gpt-4o / llama4) splits the text into words, whose bytes are mapped to printable code
//     points and merged by merge rank.
// Control and user-defined tokens written in the text can be recognised as such (parse_special).
// Filling a Vocab from a GGUF file is the caller's job (tools/dump_vocab.py and
// tests/model/mini_gguf_vocab.hpp show which keys go where).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "model/unicode_split.hpp"

namespace sluice::tok {

// tokenizer.ggml.token_type values.
enum class TokenType : std::int32_t {
  kUndefined = 0,
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};

// The tokenizer.* metadata of a model. Special ids are -1 when the file does not name them (ids
// out of range count as absent); the optionals are empty when the key is absent. Defaults then
// follow llama.cpp: "llama": bos 1, eos 2, unk 0, add_bos; "gpt2": bos = eos = 11, add_bos only
// for the llama3 pre-tokenizer.
struct Vocab {
  std::string model;  // tokenizer.ggml.model: "llama" | "gpt2"
  std::string pre;    // tokenizer.ggml.pre ("" if absent)
  std::vector<std::string> tokens;    // tokenizer.ggml.tokens
  std::vector<float> scores;          // tokenizer.ggml.scores (empty: all 0)
  std::vector<std::int32_t> types;    // tokenizer.ggml.token_type (empty: all normal)
  std::vector<std::string> merges;    // tokenizer.ggml.merges, "left right", rank = index
  std::int32_t bos = -1, eos = -1, unk = -1, pad = -1, eot = -1;
  std::optional<bool> add_bos, add_eos, add_space_prefix;
};

class Tokenizer {
 public:
  // Validates and indexes the vocabulary. Throws std::invalid_argument naming the problem: an
  // unsupported tokenizer.ggml.model or tokenizer.ggml.pre, array sizes that disagree, a bad
  // merge line, an over-long token, add_bos/add_eos without a usable bos/eos id.
  explicit Tokenizer(Vocab vocab);

  // Text to ids. add_special: add BOS/EOS as the vocabulary asks (adds_bos()). parse_special:
  // control tokens written in the text (e.g. "<start_of_turn>") become their ids; user-defined
  // tokens are always matched. Any bytes are accepted (invalid UTF-8 included). Thread-safe.
  std::vector<std::int32_t> encode(std::string_view text, bool add_special, bool parse_special) const;
  // As encode(text, add_special, true), except that control tokens are recognised only where they
  // lie wholly inside one of `special_ranges` ((offset, length) into text; e.g. a chat template's
  // own markup, model/chat_template.hpp render_chat_marked); elsewhere their text is plain text.
  // User-defined tokens are matched everywhere, as with parse_special = false. Thread-safe.
  std::vector<std::int32_t> encode(std::string_view text, bool add_special,
                                   std::span<const std::pair<std::size_t, std::size_t>> special_ranges) const;

  // The bytes one token stands for (may be part of a UTF-8 character). Control and unknown
  // tokens give "" unless render_special. Throws std::out_of_range for an id outside [0, size()).
  std::string token_to_piece(std::int32_t id, bool render_special = false) const;

  // Ids to text as llama.cpp's llama_detokenize(remove_special = false): pieces concatenated;
  // with add_space_prefix the first token's leading space is dropped (only the first token's:
  // after a leading BOS nothing is dropped, as in llama.cpp); gpt-2/llama3/default vocabularies
  // then undo the " ," / " 's" spacing (clean_up_tokenization_spaces). Throws like token_to_piece.
  std::string decode(std::span<const std::int32_t> ids, bool render_special = false) const;

  std::int32_t bos() const { return bos_; }  // -1 if none
  std::int32_t eos() const { return eos_; }  // -1 if none
  bool adds_bos() const { return add_bos_; }
  bool adds_eos() const { return add_eos_; }
  std::size_t size() const { return tokens_.size(); }
  // End of generation: eos, eot and the tokens llama.cpp recognises by text (<|eot_id|>,
  // <|im_end|>, <end_of_turn>, <|endoftext|>, ...).
  bool is_eog(std::int32_t id) const;
  // The vocabulary entry itself (e.g. "▁the", "<0x0A>"); throws std::out_of_range like token_to_piece.
  const std::string& token_text(std::int32_t id) const { return tokens_.at(static_cast<std::size_t>(id)); }

 private:
  // Token attributes as llama.cpp keeps them (bit set, from the token type).
  enum Attr : std::uint32_t {
    kAttrUndefined = 0,
    kAttrUnknown = 1 << 0,
    kAttrUnused = 1 << 1,
    kAttrNormal = 1 << 2,
    kAttrControl = 1 << 3,
    kAttrUserDefined = 1 << 4,
    kAttrByte = 1 << 5,
  };
  struct Fragment {  // a piece of the input: raw text, or a special token matched in it
    std::int32_t token;  // -1 for raw text
    std::size_t offset;
    std::size_t length;
  };
  struct PairHash {
    std::size_t operator()(const std::pair<std::string, std::string>& p) const;
  };

  void index_tokens(Vocab& vocab);
  void index_merges(const std::vector<std::string>& merges);
  void resolve_specials(const Vocab& vocab);
  std::vector<Fragment> partition_special(std::string_view text, bool parse_special,
                                          std::span<const std::pair<std::size_t, std::size_t>> special_ranges = {},
                                          bool restrict_to_ranges = false) const;
  std::vector<std::int32_t> encode_fragments(std::string_view text, const std::vector<Fragment>& fragments, bool add_special) const;
  void encode_spm(std::string_view text, std::vector<std::int32_t>& out) const;
  void encode_bpe(std::string_view text, std::vector<std::int32_t>& out) const;
  void encode_bpe_word(const std::string& word, std::vector<std::int32_t>& out) const;
  std::int32_t find_token(std::string_view text) const;
  int find_merge_rank(const std::string& left, const std::string& right) const;
  std::int32_t spm_byte_token(std::uint8_t byte) const;
  std::string render_piece(std::int32_t id) const;
  void check_id(std::int32_t id) const;

  bool is_spm_ = true;
  PreTokenizer pre_ = PreTokenizer::kDefault;
  std::vector<std::string> tokens_;
  std::vector<float> scores_;
  std::vector<std::uint32_t> attrs_;
  std::unordered_map<std::string, std::int32_t> token_to_id_;
  std::unordered_map<std::pair<std::string, std::string>, int, PairHash> merge_ranks_;
  std::vector<std::int32_t> special_tokens_;  // control/user-defined/unknown, longest text first
  std::vector<std::string> pieces_;           // token_to_piece(id, render_special = true)
  std::vector<std::int32_t> eog_ids_;         // sorted
  std::int32_t bos_ = -1, eos_ = -1, unk_ = -1, eot_ = -1;
  bool add_bos_ = false, add_eos_ = false, add_space_prefix_ = false;
  bool ignore_merges_ = false;  // llama3: a word that is a whole token is not merged
  bool clean_spaces_ = false;   // decode: undo tokenization spaces

  friend class Detokenizer;
};

// Streams token pieces as text: push() returns only whole UTF-8 characters and keeps the bytes
// of a character split across tokens (byte-fallback tokens) until the rest arrives. Bytes that
// can never become valid UTF-8 are passed through as they are, so the concatenated output equals
// the concatenated pieces. No leading-space stripping: meant for generated tokens. Not
// thread-safe; the Tokenizer must outlive it.
class Detokenizer {
 public:
  explicit Detokenizer(const Tokenizer& tokenizer, bool render_special = false)
      : tokenizer_(tokenizer), render_special_(render_special) {}

  // Throws std::out_of_range for an id outside the vocabulary.
  std::string push(std::int32_t id);
  // Returns whatever is held back (an incomplete character) and resets.
  std::string flush();

 private:
  const Tokenizer& tokenizer_;
  bool render_special_;
  std::string pending_;
};

}  // namespace sluice::tok
