// model/unicode_split.cpp: hand-written pre-tokenizer regexes over code point classes. Each
// splitter takes the text as code points plus a list of segment lengths (the pieces earlier
// splitters left) and splits every segment further; a segment's words never reach past it, which
// is why the lookups below return "nothing" outside [seg_begin, seg_end). The branch order in
// each splitter is the regex's alternation order, as in llama.cpp's unicode.cpp.
#include "model/unicode_split.hpp"

#include <cstddef>
#include <cstdint>

#include "model/unicode.hpp"

namespace sluice::tok {
namespace {

using unicode::CptFlag;
using Segments = std::vector<std::size_t>;  // consecutive segment lengths in code points

// What a lookup outside the current segment returns: no code point and no class bits, so no
// class test matches there (this is how the regexes' "end of input" behaves per segment).
constexpr std::uint32_t kNoCpt = 0xFFFFFFFF;

// Longest run of digits the llama3 and gpt-4o regexes take as one word (\p{N}{1,3}).
constexpr std::size_t kLlama3DigitRun = 3;
// The default pre-tokenizer's last regex isolates runs of exactly this many ASCII digits.
constexpr std::size_t kDefaultDigitGroup = 3;

class Segment {
 public:
  Segment(const std::vector<std::uint32_t>& cpts, std::size_t begin, std::size_t end, Segments& out)
      : cpts_(cpts), begin_(begin), end_(end), prev_end_(begin), out_(out) {}

  std::uint32_t cpt(std::size_t pos) const { return inside(pos) ? cpts_[pos] : kNoCpt; }
  std::uint16_t flags(std::size_t pos) const { return inside(pos) ? unicode::cpt_flags(cpts_[pos]) : 0; }
  std::size_t end() const { return end_; }

  // Ends the current word at `pos` (a no-op for an empty word); returns the word's length.
  std::size_t emit(std::size_t pos) {
    const std::size_t len = pos - prev_end_;
    if (len > 0) out_.push_back(len);
    prev_end_ = pos;
    return len;
  }

 private:
  bool inside(std::size_t pos) const { return pos >= begin_ && pos < end_; }

  const std::vector<std::uint32_t>& cpts_;
  std::size_t begin_;
  std::size_t end_;
  std::size_t prev_end_;
  Segments& out_;
};

// Runs `split_one` on every segment of `segs` and returns the finer segmentation.
template <typename SplitOne>
Segments split_each(const std::vector<std::uint32_t>& cpts, const Segments& segs, SplitOne split_one) {
  Segments out;
  out.reserve(segs.size());
  std::size_t begin = 0;
  for (const std::size_t len : segs) {
    Segment seg(cpts, begin, begin + len, out);
    split_one(seg, begin);
    begin += len;
  }
  return out;
}

bool has(std::uint16_t flags, std::uint16_t bits) { return (flags & bits) != 0; }

// ASCII-only lowering is exact here: no other code point lowercases to one of the letters the
// contraction alternatives compare against (s t m d r e v l).
std::uint32_t ascii_lower(std::uint32_t c) { return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c; }

// 's 't 'm 'd 're 've 'll at `pos`: the word's length (2 or 3), or 0. `fold` lowers letters for
// the case-insensitive (?i:...) variant.
std::size_t contraction_len(const Segment& seg, std::size_t pos, bool fold) {
  if (seg.cpt(pos) != '\'' || pos + 1 >= seg.end()) return 0;
  const auto low = [&](std::uint32_t c) { return fold ? ascii_lower(c) : c; };
  const std::uint32_t c1 = low(seg.cpt(pos + 1));
  if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return 2;
  if (pos + 2 >= seg.end()) return 0;
  const std::uint32_t c2 = low(seg.cpt(pos + 2));
  if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) return 3;
  return 0;
}

// The whitespace alternatives shared by all three regexes: \s+(?!\S) then \s+ (and, for
// llama3/qwen2, \s*[\r\n]+ first). Returns the new position; always advances.
std::size_t split_whitespace(Segment& seg, std::size_t pos, bool newline_rule) {
  std::size_t n = 0;
  std::size_t last_newline_end = 0;  // one past the last \r or \n in the run; 0 if none
  while (has(seg.flags(pos + n), unicode::kWhitespace)) {
    const std::uint32_t c = seg.cpt(pos + n);
    if (c == '\r' || c == '\n') last_newline_end = pos + n + 1;
    ++n;
  }
  if (newline_rule && last_newline_end > 0) {  // \s*[\r\n]+
    seg.emit(last_newline_end);
    return last_newline_end;
  }
  if (n > 1 && seg.cpt(pos + n) != kNoCpt) {  // \s+(?!\S): leave the last space to the next word
    seg.emit(pos + n - 1);
    return pos + n - 1;
  }
  if (n > 0) {  // \s+
    seg.emit(pos + n);
    return pos + n;
  }
  seg.emit(pos + 1);  // no alternative matched: the character stands alone
  return pos + 1;
}

// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
void split_gpt2_segment(Segment& seg, std::size_t pos) {
  constexpr std::uint16_t kWordClasses = unicode::kWhitespace | unicode::kLetter | unicode::kNumber;
  while (pos < seg.end()) {
    if (const std::size_t len = contraction_len(seg, pos, /*fold=*/false)) {
      pos += seg.emit(pos + len);
      continue;
    }
    const std::uint32_t c = seg.cpt(pos);
    // The optional leading space joins the run the next character starts.
    std::uint16_t next = c == ' ' ? seg.flags(pos + 1) : seg.flags(pos);
    const auto take_run = [&](auto in_run) {
      pos += c == ' ';
      while (in_run(next)) next = seg.flags(++pos);
      seg.emit(pos);
    };
    if (has(next, unicode::kLetter)) {
      take_run([](std::uint16_t f) { return has(f, unicode::kLetter); });
    } else if (has(next, unicode::kNumber)) {
      take_run([](std::uint16_t f) { return has(f, unicode::kNumber); });
    } else if (!has(next, kWordClasses) && next != 0) {
      take_run([](std::uint16_t f) { return !has(f, kWordClasses) && f != 0; });
    } else {
      pos = split_whitespace(seg, pos, /*newline_rule=*/false);
    }
  }
}

// (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,max_digits}|
// ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
void split_llama3_segment(Segment& seg, std::size_t pos, std::size_t max_digits) {
  constexpr std::uint16_t kWordClasses = unicode::kWhitespace | unicode::kLetter | unicode::kNumber;
  while (pos < seg.end()) {
    if (const std::size_t len = contraction_len(seg, pos, /*fold=*/true)) {
      pos += seg.emit(pos + len);
      continue;
    }
    const std::uint32_t c = seg.cpt(pos);
    const std::uint16_t flags = seg.flags(pos);
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if (!(c == '\r' || c == '\n' || has(flags, unicode::kNumber)) &&
        (has(flags, unicode::kLetter) || has(seg.flags(pos + 1), unicode::kLetter))) {
      ++pos;
      while (has(seg.flags(pos), unicode::kLetter)) ++pos;
      seg.emit(pos);
      continue;
    }
    // \p{N}{1,max_digits}: a long digit run becomes several words
    if (has(flags, unicode::kNumber)) {
      std::size_t run_begin = pos;
      while (has(seg.flags(pos), unicode::kNumber)) {
        if (++pos - run_begin >= max_digits) {
          seg.emit(pos);
          run_begin = pos;
        }
      }
      seg.emit(pos);
      continue;
    }
    // ' ?[^\s\p{L}\p{N}]+[\r\n]*'. llama.cpp tests the current character's flags (not the
    // next one's) for being defined here; kept, as it only differs at a segment's last space.
    std::uint16_t next = c == ' ' ? seg.flags(pos + 1) : flags;
    if (!has(next, kWordClasses) && flags != 0) {
      pos += c == ' ';
      while (!has(next, kWordClasses) && next != 0) next = seg.flags(++pos);
      while (seg.cpt(pos) == '\r' || seg.cpt(pos) == '\n') ++pos;
      seg.emit(pos);
      continue;
    }
    pos = split_whitespace(seg, pos, /*newline_rule=*/true);
  }
}

// gpt-4o (o200k). llama.cpp has no hand-written splitter for it: it runs this std::regex over
// the text with every code point >= 0x80 collapsed to one byte per class (letter, number,
// punctuation, mark, symbol, other; 0x0B for any whitespace):
//   [^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|
//   [^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*(?:'[sS]|...|'[dD])?|
//   \p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+
// So an "upper" letter is A-Z or any non-ASCII letter, a "lower" one a-z or any non-ASCII letter,
// and marks are not letters (o200k's own regex puts \p{M} in both letter sets and uses Lu/Ll:
// "e\u0301t" is one word there, "e" "\u0301t" here). What ECMAScript backtracking makes of the two
// letter alternatives is written out in gpt4o_letter_word_end.

bool is_ascii_upper(std::uint32_t c) { return c >= 'A' && c <= 'Z'; }
bool is_ascii_lower(std::uint32_t c) { return c >= 'a' && c <= 'z'; }

// Where the letter word starting at `begin` (a letter) ends, contraction not included. The first
// alternative, upper* lower+, backtracks upper* (greedy) to the longest run after which a lower
// letter follows: the whole upper run if an a-z letter follows it, else up to its last non-ASCII
// letter (both upper and lower); failing both (an A-Z run before a non-letter), the second
// alternative, upper+ lower*, takes the A-Z run.
std::size_t gpt4o_letter_word_end(const Segment& seg, std::size_t begin) {
  const auto is_letter = [&](std::size_t p) { return has(seg.flags(p), unicode::kLetter); };
  std::size_t end = begin;
  std::size_t last_non_ascii = begin;  // one past the last non-ASCII letter of the upper run
  while (is_letter(end) && !is_ascii_lower(seg.cpt(end))) {
    if (!is_ascii_upper(seg.cpt(end))) last_non_ascii = end + 1;
    ++end;
  }
  if (is_ascii_lower(seg.cpt(end))) {  // lower+ from there: a-z and non-ASCII letters
    while (is_letter(end) && !is_ascii_upper(seg.cpt(end))) ++end;
    return end;
  }
  return last_non_ascii > begin ? last_non_ascii : end;
}

void split_gpt4o_segment(Segment& seg, std::size_t pos) {
  constexpr std::uint16_t kWordClasses = unicode::kWhitespace | unicode::kLetter | unicode::kNumber;
  const auto is_other = [&](std::size_t p) {  // [^\s\p{L}\p{N}] inside the segment
    const std::uint16_t f = seg.flags(p);
    return f != 0 && !has(f, kWordClasses);
  };
  while (pos < seg.end()) {
    const std::uint32_t c = seg.cpt(pos);
    const std::uint16_t flags = seg.flags(pos);
    // [^\r\n\p{L}\p{N}]? then the letter word and an optional contraction
    const bool lead = !(c == '\r' || c == '\n' || has(flags, unicode::kLetter | unicode::kNumber)) &&
                      has(seg.flags(pos + 1), unicode::kLetter);
    if (has(flags, unicode::kLetter) || lead) {
      std::size_t end = gpt4o_letter_word_end(seg, pos + (lead ? 1 : 0));
      end += contraction_len(seg, end, /*fold=*/true);
      pos += seg.emit(end);
      continue;
    }
    // \p{N}{1,3}
    if (has(flags, unicode::kNumber)) {
      std::size_t end = pos;
      while (end - pos < kLlama3DigitRun && has(seg.flags(end), unicode::kNumber)) ++end;
      pos += seg.emit(end);
      continue;
    }
    // ' ?[^\s\p{L}\p{N}]+[\r\n/]*'
    const std::size_t run = c == ' ' ? pos + 1 : pos;
    if (is_other(run)) {
      std::size_t end = run;
      while (is_other(end)) ++end;
      while (seg.cpt(end) == '\r' || seg.cpt(end) == '\n' || seg.cpt(end) == '/') ++end;
      pos += seg.emit(end);
      continue;
    }
    pos = split_whitespace(seg, pos, /*newline_rule=*/true);
  }
}

// Splits every segment into maximal runs of characters for which `in_set` holds and runs for
// which it does not: what a regex "[set]+" does when its matches and the gaps between them are
// both kept as words.
template <typename InSet>
Segments split_runs(const std::vector<std::uint32_t>& cpts, const Segments& segs, InSet in_set) {
  return split_each(cpts, segs, [&](Segment& seg, std::size_t pos) {
    while (pos < seg.end()) {
      const bool inside = in_set(cpts[pos]);
      while (pos < seg.end() && in_set(cpts[pos]) == inside) ++pos;
      seg.emit(pos);
    }
  });
}

bool is_ascii_digit(std::uint32_t c) { return c >= '0' && c <= '9'; }

// [0-9][0-9][0-9]: leftmost non-overlapping groups of three ASCII digits become words; the text
// between groups stays as it is.
Segments split_digit_groups(const std::vector<std::uint32_t>& cpts, const Segments& segs) {
  return split_each(cpts, segs, [&](Segment& seg, std::size_t pos) {
    while (pos < seg.end()) {
      bool group = pos + kDefaultDigitGroup <= seg.end();
      for (std::size_t i = 0; group && i < kDefaultDigitGroup; ++i) group = is_ascii_digit(cpts[pos + i]);
      if (!group) {
        ++pos;
        continue;
      }
      seg.emit(pos);
      pos += kDefaultDigitGroup;
      seg.emit(pos);
    }
    seg.emit(seg.end());
  });
}

// [\p{P}\$\+<=>\^~\|]: punctuation plus the ASCII symbols the default regex lists.
bool is_default_punct(std::uint32_t c) {
  const std::uint16_t f = unicode::cpt_flags(c);
  if (has(f, unicode::kPunctuation) && !has(f, unicode::kWhitespace)) return true;
  return c == '$' || c == '+' || c == '<' || c == '=' || c == '>' || c == '^' || c == '~' || c == '|';
}

Segments split_gpt2(const std::vector<std::uint32_t>& cpts, const Segments& segs) {
  return split_each(cpts, segs, [](Segment& seg, std::size_t pos) { split_gpt2_segment(seg, pos); });
}

}  // namespace

std::vector<std::string> pre_tokenize(std::string_view text, PreTokenizer kind) {
  const std::vector<std::uint32_t> cpts = unicode::decode_utf8_all(text);
  if (cpts.empty()) return {};
  Segments segs = {cpts.size()};
  switch (kind) {
    case PreTokenizer::kDefault:
      segs = split_runs(cpts, segs, is_default_punct);
      segs = split_gpt2(cpts, segs);
      segs = split_runs(cpts, segs, [](std::uint32_t c) { return has(unicode::cpt_flags(c), unicode::kNumber); });
      segs = split_digit_groups(cpts, segs);
      break;
    case PreTokenizer::kGpt2:
      segs = split_gpt2(cpts, segs);
      break;
    case PreTokenizer::kLlama3:
    case PreTokenizer::kQwen2: {
      const std::size_t max_digits = kind == PreTokenizer::kLlama3 ? kLlama3DigitRun : 1;
      segs = split_each(cpts, segs, [&](Segment& seg, std::size_t pos) { split_llama3_segment(seg, pos, max_digits); });
      break;
    }
    case PreTokenizer::kGpt4o:
      segs = split_each(cpts, segs, [](Segment& seg, std::size_t pos) { split_gpt4o_segment(seg, pos); });
      break;
  }

  // Byte-level encoding: every UTF-8 byte of the word becomes its printable stand-in.
  std::vector<std::string> words;
  words.reserve(segs.size());
  std::string utf8;
  std::size_t begin = 0;
  for (const std::size_t len : segs) {
    utf8.clear();
    for (std::size_t i = begin; i < begin + len; ++i) unicode::append_utf8(utf8, cpts[i]);
    std::string& word = words.emplace_back();
    for (const char b : utf8) word += unicode::byte_to_unicode(static_cast<std::uint8_t>(b));
    begin += len;
  }
  return words;
}

}  // namespace sluice::tok
