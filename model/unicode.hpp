// model/unicode.hpp: the Unicode pieces the tokenizer needs: UTF-8 decoding that never throws,
// code point classes (letter, number, whitespace, ...) from the generated range table in
// model/unicode_tables.cpp, and GPT-2's byte <-> printable-code-point mapping. Decoding and the
// class table follow llama.cpp's src/unicode.cpp so that pre-tokenization matches it exactly.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::tok::unicode {

// Class bits of one code point. The categories are General_Category groups (exactly one is set);
// kWhitespace is the White_Space property and comes on top of a category (U+0020 is
// kSeparator | kWhitespace, '\t' is kControl | kWhitespace). Bit values are fixed by the
// generator tools/gen_unicode_tables.py.
enum CptFlag : std::uint16_t {
  kUndefined = 0x0001,    // unassigned (Cn); also anything past U+10FFFF
  kNumber = 0x0002,       // \p{N}
  kLetter = 0x0004,       // \p{L}
  kSeparator = 0x0008,    // \p{Z}
  kMark = 0x0010,         // \p{M}
  kPunctuation = 0x0020,  // \p{P}
  kSymbol = 0x0040,       // \p{S}
  kControl = 0x0080,      // \p{C} less Cn
  kWhitespace = 0x0100,   // \s (White_Space)
};

// One row of the generated table: the class flags of the code points from `first` up to the
// next row's `first` - 1.
struct CategoryRange {
  std::uint32_t first;
  std::uint16_t flags;
};

extern const CategoryRange kCategoryRanges[];  // sorted by first; last row starts at 0x110000
extern const std::size_t kCategoryRangeCount;
extern const char kUnicodeVersion[];  // version of the Unicode data in the table, e.g. "15.1.0"

inline constexpr std::uint32_t kMaxCodePoint = 0x10FFFF;
inline constexpr std::uint32_t kReplacementChar = 0xFFFD;  // what invalid UTF-8 decodes to

// Class flags of a code point; never 0. Thread-safe (reads constant tables only).
std::uint16_t cpt_flags(std::uint32_t cpt);

// Length of the UTF-8 sequence a lead byte announces (1 for stray continuation bytes and for
// ASCII), by the lead byte's high nibble alone, as llama.cpp's unicode_len_utf8.
std::size_t utf8_len(char lead);

// Decodes one code point at `offset` and advances it. Invalid input (a stray continuation byte,
// a truncated or malformed sequence, a value past U+10FFFF) yields U+FFFD and advances one byte.
// Overlong forms and surrogates are decoded, not rejected, as llama.cpp does.
std::uint32_t decode_utf8(std::string_view text, std::size_t& offset);

// The whole text decoded with decode_utf8.
std::vector<std::uint32_t> decode_utf8_all(std::string_view text);

// Appends the UTF-8 encoding of `cpt` (<= U+10FFFF; larger values append U+FFFD).
void append_utf8(std::string& out, std::uint32_t cpt);

// GPT-2 byte-level BPE: each byte maps to a printable code point (printable Latin-1 bytes to
// themselves, the other 68 to U+0100...), returned UTF-8 encoded.
const std::string& byte_to_unicode(std::uint8_t byte);

// Inverse of byte_to_unicode for one code point; nullopt if it is not in the mapping.
std::optional<std::uint8_t> unicode_to_byte(std::uint32_t cpt);

// Length of the longest prefix of `bytes` that ends on a UTF-8 sequence boundary, treating
// invalid bytes as complete one-byte units; only a valid but truncated sequence at the very end
// is left out. Used by the streaming detokenizer to hold back partial characters.
std::size_t complete_utf8_prefix(std::string_view bytes);

}  // namespace sluice::tok::unicode
