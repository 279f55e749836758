// model/jinja_lex.hpp: the lexer of the Jinja subset (model/jinja.hpp), for its parser
// (model/jinja_parse.cpp) only.
// Whitespace follows jinja2's lexer with trim_blocks and lstrip_blocks: "-" strips all whitespace
// on that side of a tag; a block or comment tag eats one "\n" after it; spaces and tabs between a
// line's start and a block or comment tag go, unless the tag opens with "+".
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "model/jinja_ast.hpp"

namespace sluice::jinja {

enum class Tok { text, var_begin, var_end, block_begin, block_end, name, string, integer, real, op, eof };
struct Token {
  Tok type;
  std::string text;
  std::size_t offset;
};

class Lexer {
 public:
  explicit Lexer(std::string_view src) : src_(src) {}
  Pos pos_of(std::size_t offset) const;
  [[noreturn]] void error(std::size_t offset, const std::string& why) const { fail(pos_of(offset), why); }
  std::vector<Token> run();

 private:
  void push_text(std::string text, std::size_t offset);
  // After a tag's close at j: "-" strips the next text's whitespace; trim_blocks eats one "\n".
  void finish_tag(std::size_t& j, bool strip, bool block, bool& strip_next, bool& line_starting);
  // Tokens of one tag's expression, up to its close (returns the close's offset).
  std::size_t lex_tag(std::size_t j, const char* close, bool& strip);
  // A quoted string with Python's escapes (jinja2 unescapes string literals that way).
  std::string lex_string(std::size_t& j);

  std::string_view src_;
  std::vector<Token> tokens_;
};

}  // namespace sluice::jinja
