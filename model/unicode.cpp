// model/unicode.cpp: UTF-8 decode/encode, class lookup in the generated range table and the
// GPT-2 byte mapping. See model/unicode.hpp for the contracts.
#include "model/unicode.hpp"

#include <algorithm>
#include <array>

namespace sluice::tok::unicode {
namespace {

constexpr std::uint32_t kAsciiLimit = 0x80;
constexpr std::size_t kByteCount = 256;
// GPT-2 maps the 68 unprintable bytes to code points from here on, in byte order.
constexpr std::uint32_t kGpt2ShiftBase = 0x100;

bool is_continuation(char c) { return (static_cast<std::uint8_t>(c) & 0xC0) == 0x80; }

// ASCII classes, looked up on every character of typical text: a flat copy of the table's head.
const std::array<std::uint16_t, kAsciiLimit>& ascii_flags() {
  static const std::array<std::uint16_t, kAsciiLimit> table = [] {
    std::array<std::uint16_t, kAsciiLimit> t{};
    std::size_t row = 0;
    for (std::uint32_t c = 0; c < kAsciiLimit; ++c) {
      while (kCategoryRanges[row + 1].first <= c) ++row;
      t[c] = kCategoryRanges[row].flags;
    }
    return t;
  }();
  return table;
}

// Printable bytes GPT-2 keeps as themselves: '!'..'~', U+00A1..U+00AC, U+00AE..U+00FF.
bool gpt2_keeps_byte(std::uint32_t b) {
  return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

struct ByteMap {
  std::array<std::string, kByteCount> to_unicode;
  std::array<std::uint32_t, kByteCount> cpt_of_byte{};
};

const ByteMap& byte_map() {
  static const ByteMap map = [] {
    ByteMap m;
    std::uint32_t shifted = 0;
    for (std::uint32_t b = 0; b < kByteCount; ++b) {
      const std::uint32_t cpt = gpt2_keeps_byte(b) ? b : kGpt2ShiftBase + shifted++;
      m.cpt_of_byte[b] = cpt;
      append_utf8(m.to_unicode[b], cpt);
    }
    return m;
  }();
  return map;
}

}  // namespace

std::uint16_t cpt_flags(std::uint32_t cpt) {
  if (cpt < kAsciiLimit) return ascii_flags()[cpt];
  if (cpt > kMaxCodePoint) return kUndefined;
  // Last row whose first <= cpt; the sentinel row (0x110000) keeps upper_bound in range.
  const CategoryRange* end = kCategoryRanges + kCategoryRangeCount;
  const CategoryRange* it = std::upper_bound(
      kCategoryRanges, end, cpt, [](std::uint32_t c, const CategoryRange& r) { return c < r.first; });
  return (it - 1)->flags;
}

std::size_t utf8_len(char lead) {
  static constexpr std::array<std::uint8_t, 16> kLenByHighNibble = {1, 1, 1, 1, 1, 1, 1, 1,
                                                                     1, 1, 1, 1, 2, 2, 3, 4};
  return kLenByHighNibble[static_cast<std::uint8_t>(lead) >> 4];
}

std::uint32_t decode_utf8(std::string_view text, std::size_t& offset) {
  const auto byte = [&](std::size_t i) { return static_cast<std::uint32_t>(static_cast<std::uint8_t>(text[i])); };
  const std::uint32_t lead = byte(offset);
  const std::size_t avail = text.size() - offset;
  std::size_t len = 0;
  std::uint32_t cpt = 0;
  if (lead < 0x80) {
    offset += 1;
    return lead;
  } else if ((lead & 0xE0) == 0xC0) {
    len = 2;
    cpt = lead & 0x1F;
  } else if ((lead & 0xF0) == 0xE0) {
    len = 3;
    cpt = lead & 0x0F;
  } else if ((lead & 0xF8) == 0xF0) {
    len = 4;
    cpt = lead & 0x07;
  }
  // len == 0: a stray continuation byte or 0xF8..0xFF.
  bool ok = len != 0 && avail >= len;
  for (std::size_t i = 1; ok && i < len; ++i) {
    ok = is_continuation(text[offset + i]);
    cpt = (cpt << 6) | (byte(offset + i) & 0x3F);
  }
  // llama.cpp decodes values past U+10FFFF but then throws when re-encoding them; they are
  // invalid here instead.
  if (!ok || cpt > kMaxCodePoint) {
    offset += 1;
    return kReplacementChar;
  }
  offset += len;
  return cpt;
}

std::vector<std::uint32_t> decode_utf8_all(std::string_view text) {
  std::vector<std::uint32_t> cpts;
  cpts.reserve(text.size());
  std::size_t offset = 0;
  while (offset < text.size()) cpts.push_back(decode_utf8(text, offset));
  return cpts;
}

void append_utf8(std::string& out, std::uint32_t cpt) {
  if (cpt > kMaxCodePoint) cpt = kReplacementChar;
  if (cpt < 0x80) {
    out.push_back(static_cast<char>(cpt));
  } else if (cpt < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cpt >> 6)));
    out.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
  } else if (cpt < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cpt >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cpt >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cpt >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cpt >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cpt >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
  }
}

const std::string& byte_to_unicode(std::uint8_t byte) { return byte_map().to_unicode[byte]; }

std::optional<std::uint8_t> unicode_to_byte(std::uint32_t cpt) {
  // Kept bytes map to themselves; the 68 shifted ones are found by a scan of the table.
  if (cpt < kByteCount) {
    if (gpt2_keeps_byte(cpt)) return static_cast<std::uint8_t>(cpt);
    return std::nullopt;
  }
  const auto& map = byte_map();
  for (std::uint32_t b = 0; b < kByteCount; ++b) {
    if (map.cpt_of_byte[b] == cpt) return static_cast<std::uint8_t>(b);
  }
  return std::nullopt;
}

std::size_t complete_utf8_prefix(std::string_view bytes) {
  // A truncated sequence is at most 3 bytes long: look for its lead byte among the last three.
  constexpr std::size_t kMaxTail = 3;
  const std::size_t n = bytes.size();
  for (std::size_t back = 1; back <= std::min(kMaxTail, n); ++back) {
    const std::size_t pos = n - back;
    const char c = bytes[pos];
    if (is_continuation(c)) continue;
    const auto lead = static_cast<std::uint8_t>(c);
    // Only well-formed lead bytes (C2..F4) start a sequence worth waiting for.
    const bool valid_lead = lead >= 0xC2 && lead <= 0xF4;
    if (valid_lead && utf8_len(c) > back) return pos;  // continuation bytes so far all valid
    return n;
  }
  return n;
}

}  // namespace sluice::tok::unicode
