// model/jinja_lex.cpp: the Jinja subset's lexer (model/jinja_lex.hpp).
#include "model/jinja_lex.hpp"

#include <cstring>

namespace sluice::jinja {
namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

}  // namespace

Pos Lexer::pos_of(std::size_t offset) const {
  Pos p;
  for (std::size_t i = 0; i < offset && i < src_.size(); ++i) {
    if (src_[i] == '\n') {
      ++p.line;
      p.column = 1;
    } else {
      ++p.column;
    }
  }
  return p;
}

std::vector<Token> Lexer::run() {
  bool line_starting = true;
  std::size_t i = 0;
  bool strip_next = false;  // the previous tag ended with "-"
  while (i < src_.size()) {
    std::size_t tag = i;
    while (true) {
      tag = src_.find('{', tag);
      if (tag == std::string_view::npos || tag + 1 >= src_.size()) {
        tag = std::string_view::npos;
        break;
      }
      const char c = src_[tag + 1];
      if (c == '{' || c == '%' || c == '#') break;
      ++tag;
    }
    std::string text(src_.substr(i, tag == std::string_view::npos ? std::string_view::npos : tag - i));
    if (strip_next) {
      std::size_t k = 0;
      while (k < text.size() && is_space(text[k])) ++k;
      text.erase(0, k);
    }
    if (tag == std::string_view::npos) {
      push_text(std::move(text), i);
      break;
    }
    const char kind = src_[tag + 1];
    const char mod = tag + 2 < src_.size() ? src_[tag + 2] : '\0';
    if (mod == '-') {
      while (!text.empty() && is_space(text.back())) text.pop_back();
    } else if (mod != '+' && kind != '{') {
      // lstrip_blocks: only whitespace between the line's start and the tag.
      const std::size_t nl = text.rfind('\n');
      const std::size_t l_pos = nl == std::string::npos ? 0 : nl + 1;
      if (l_pos > 0 || line_starting) {
        bool blank = l_pos < text.size();
        for (std::size_t k = l_pos; k < text.size() && blank; ++k) blank = is_space(text[k]);
        if (blank) text.resize(l_pos);
      }
    }
    push_text(std::move(text), i);
    std::size_t j = tag + 2 + ((mod == '-' || mod == '+') ? 1 : 0);
    if (kind == '#') {
      const std::size_t end = src_.find("#}", j);
      if (end == std::string_view::npos) error(tag, "unterminated comment (no #})");
      const bool strip = end > j && src_[end - 1] == '-';
      j = end + 2;
      finish_tag(j, strip, true, strip_next, line_starting);
      i = j;
      continue;
    }
    tokens_.push_back({kind == '{' ? Tok::var_begin : Tok::block_begin, "", tag});
    const char* close = kind == '{' ? "}}" : "%}";
    bool strip = false;
    j = lex_tag(j, close, strip);
    tokens_.push_back({kind == '{' ? Tok::var_end : Tok::block_end, "", j});
    j += 2;
    finish_tag(j, strip, kind == '%', strip_next, line_starting);
    i = j;
  }
  tokens_.push_back({Tok::eof, "", src_.size()});
  return std::move(tokens_);
}

void Lexer::push_text(std::string text, std::size_t offset) {
  if (!text.empty()) tokens_.push_back({Tok::text, std::move(text), offset});
}

// After a tag's close at j: "-" strips the next text's whitespace; trim_blocks eats one "\n".
void Lexer::finish_tag(std::size_t& j, bool strip, bool block, bool& strip_next, bool& line_starting) {
  strip_next = strip;
  if (strip) {
    std::size_t k = j;
    while (k < src_.size() && is_space(src_[k])) ++k;
    line_starting = k > j ? src_[k - 1] == '\n' : false;
    j = k;
    strip_next = false;
    return;
  }
  if (block && j < src_.size() && src_[j] == '\n') {
    ++j;
    line_starting = true;
    return;
  }
  line_starting = false;
}

// Tokens of one tag's expression, up to its close (returns the close's offset).
std::size_t Lexer::lex_tag(std::size_t j, const char* close, bool& strip) {
  while (true) {
    while (j < src_.size() && is_space(src_[j])) ++j;
    if (j >= src_.size()) error(j, std::string("unterminated tag (no ") + close + ")");
    if (src_[j] == '-' && src_.substr(j + 1, 2) == close) {
      strip = true;
      return j + 1;
    }
    if (src_.substr(j, 2) == close) return j;
    const char c = src_[j];
    const std::size_t start = j;
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      while (j < src_.size() && (std::isalnum(static_cast<unsigned char>(src_[j])) || src_[j] == '_')) ++j;
      tokens_.push_back({Tok::name, std::string(src_.substr(start, j - start)), start});
    } else if (std::isdigit(static_cast<unsigned char>(c))) {
      bool real = false;
      while (j < src_.size() && (std::isdigit(static_cast<unsigned char>(src_[j])) || src_[j] == '_')) ++j;
      if (j + 1 < src_.size() && src_[j] == '.' && std::isdigit(static_cast<unsigned char>(src_[j + 1]))) {
        real = true;
        ++j;
        while (j < src_.size() && std::isdigit(static_cast<unsigned char>(src_[j]))) ++j;
      }
      std::string digits;
      for (std::size_t k = start; k < j; ++k)
        if (src_[k] != '_') digits += src_[k];
      tokens_.push_back({real ? Tok::real : Tok::integer, digits, start});
    } else if (c == '"' || c == '\'') {
      tokens_.push_back({Tok::string, lex_string(j), start});
    } else {
      static const char* const kOps[] = {"==", "!=", "<=", ">=", "//", "**", "+", "-", "*", "/", "%", "~", "<", ">", "=",
                                         "(", ")", "[", "]", "{", "}", ".", ",", ":", "|"};
      bool found = false;
      for (const char* op : kOps) {
        const std::size_t n = std::strlen(op);
        if (src_.substr(j, n) == op) {
          tokens_.push_back({Tok::op, op, start});
          j += n;
          found = true;
          break;
        }
      }
      if (!found) error(j, std::string("unexpected character '") + c + "'");
    }
  }
}

// A quoted string with Python's escapes (jinja2 unescapes string literals that way).
std::string Lexer::lex_string(std::size_t& j) {
  const char quote = src_[j];
  const std::size_t start = j++;
  std::string out;
  while (true) {
    if (j >= src_.size()) error(start, "unterminated string literal");
    const char c = src_[j++];
    if (c == quote) return out;
    if (c != '\\') {
      out += c;
      continue;
    }
    if (j >= src_.size()) error(start, "unterminated string literal");
    const char e = src_[j++];
    switch (e) {
      case 'n': out += '\n'; break;
      case 't': out += '\t'; break;
      case 'r': out += '\r'; break;
      case '0': out += '\0'; break;
      case 'a': out += '\a'; break;
      case 'b': out += '\b'; break;
      case 'f': out += '\f'; break;
      case 'v': out += '\v'; break;
      case '\\': out += '\\'; break;
      case '\'': out += '\''; break;
      case '"': out += '"'; break;
      case '\n': break;  // a backslash-newline continues the line
      case 'x': case 'u': case 'U': {
        const int n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
        if (j + n > src_.size()) error(j, "truncated \\" + std::string(1, e) + " escape");
        std::uint32_t cp = 0;
        for (int k = 0; k < n; ++k) {
          const char h = src_[j++];
          if (!std::isxdigit(static_cast<unsigned char>(h))) error(j - 1, "bad hex digit in escape");
          cp = cp * 16 + static_cast<std::uint32_t>(std::isdigit(static_cast<unsigned char>(h)) ? h - '0' : (std::tolower(h) - 'a' + 10));
        }
        if (cp > 0x10FFFF) error(j, "escape beyond U+10FFFF");
        if (cp < 0x80) {
          out += static_cast<char>(cp);
        } else if (cp < 0x800) {
          out += static_cast<char>(0xC0 | (cp >> 6));
          out += static_cast<char>(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
          out += static_cast<char>(0xE0 | (cp >> 12));
          out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
          out += static_cast<char>(0x80 | (cp & 0x3F));
        } else {
          out += static_cast<char>(0xF0 | (cp >> 18));
          out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
          out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
          out += static_cast<char>(0x80 | (cp & 0x3F));
        }
        break;
      }
      default: out += '\\'; out += e;  // Python keeps an unknown escape as written
    }
  }
}

}  // namespace sluice::jinja
