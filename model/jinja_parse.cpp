// model/jinja_parse.cpp: the recursive-descent parser of the Jinja subset (model/jinja.hpp), over
// the tokens of its lexer (model/jinja_lex.hpp).

#include "model/jinja_lex.hpp"

namespace sluice::jinja {
namespace {

constexpr std::size_t kSourceBytesMax = 1 << 20;  // real chat templates are under 20 KiB
constexpr int kDepthMax = 200;                    // nesting of expressions and blocks

class Parser {
 public:
  Parser(std::string_view src) : lexer_(src), toks_(lexer_.run()) {}

  std::unique_ptr<Program> program() {
    auto p = std::make_unique<Program>();
    std::string end;
    p->body = body({}, end);
    return p;
  }

 private:
  const Token& peek(std::size_t ahead = 0) const { return toks_[std::min(at_ + ahead, toks_.size() - 1)]; }
  Pos pos() const { return lexer_.pos_of(peek().offset); }
  [[noreturn]] void error(const std::string& why) const { lexer_.error(peek().offset, why); }
  bool is_op(const char* op, std::size_t ahead = 0) const { return peek(ahead).type == Tok::op && peek(ahead).text == op; }
  bool is_name(const char* n, std::size_t ahead = 0) const { return peek(ahead).type == Tok::name && peek(ahead).text == n; }
  void expect_op(const char* op) {
    if (!is_op(op)) error(std::string("expected '") + op + "', found " + describe());
    ++at_;
  }
  std::string expect_name() {
    if (peek().type != Tok::name) error("expected a name, found " + describe());
    return toks_[at_++].text;
  }
  void expect_block_end() {
    if (peek().type != Tok::block_end) error("expected '%}', found " + describe());
    ++at_;
  }
  std::string describe() const {
    switch (peek().type) {
      case Tok::eof: return "the end of the template";
      case Tok::block_end: return "'%}'";
      case Tok::var_end: return "'}}'";
      case Tok::string: return "a string";
      default: return "'" + peek().text + "'";
    }
  }
  struct Depth {
    explicit Depth(Parser& p) : p_(p) {
      if (++p_.depth_ > kDepthMax) p_.error("nested more than " + std::to_string(kDepthMax) + " deep");
    }
    ~Depth() { --p_.depth_; }
    Parser& p_;
  };
  ExprP make(Expr::Kind kind, Pos p) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->pos = p;
    return e;
  }

  // Statements up to one of `ends` (a block tag's first name); the one found goes in `found`.
  Body body(std::initializer_list<const char*> ends, std::string& found) {
    Depth depth(*this);
    Body out;
    while (true) {
      const Token& t = peek();
      if (t.type == Tok::eof) {
        if (ends.size() != 0) error(std::string("missing {% ") + *(ends.end() - 1) + " %}");
        return out;
      }
      if (t.type == Tok::text) {
        auto n = std::make_unique<Node>();
        n->kind = Node::Kind::text;
        n->text = t.text;
        ++at_;
        out.push_back(std::move(n));
      } else if (t.type == Tok::var_begin) {
        auto n = std::make_unique<Node>();
        n->kind = Node::Kind::output;
        n->pos = pos();
        ++at_;
        n->expr = expression();
        if (peek().type != Tok::var_end) error("expected '}}', found " + describe());
        ++at_;
        out.push_back(std::move(n));
      } else if (t.type == Tok::block_begin) {
        const Pos p = pos();
        ++at_;
        const std::string word = expect_name();
        for (const char* e : ends) {
          if (word == e) {
            found = word;
            return out;
          }
        }
        out.push_back(statement(word, p));
      } else {
        error("unexpected " + describe());
      }
    }
  }

  std::unique_ptr<Node> statement(const std::string& word, Pos p) {
    auto n = std::make_unique<Node>();
    n->pos = p;
    std::string found;
    if (word == "if") {
      n->kind = Node::Kind::if_;
      ExprP cond = expression();
      expect_block_end();
      while (true) {
        Body b = body({"elif", "else", "endif"}, found);
        n->branches.emplace_back(std::move(cond), std::move(b));
        if (found == "endif") break;
        if (found == "else") {
          expect_block_end();
          Body e = body({"endif"}, found);
          n->branches.emplace_back(nullptr, std::move(e));
          break;
        }
        cond = expression();
        expect_block_end();
      }
      expect_block_end();
    } else if (word == "for") {
      n->kind = Node::Kind::for_;
      n->targets.push_back(expect_name());
      while (is_op(",")) {
        ++at_;
        n->targets.push_back(expect_name());
      }
      if (!is_name("in")) error("expected 'in', found " + describe());
      ++at_;
      n->expr = ternary_free();
      if (is_name("if")) {
        ++at_;
        n->filter = ternary_free();
      }
      expect_block_end();
      n->body = body({"else", "endfor"}, found);
      if (found == "else") {
        expect_block_end();
        n->else_body = body({"endfor"}, found);
      }
      expect_block_end();
    } else if (word == "set") {
      n->kind = Node::Kind::set;
      n->targets.push_back(expect_name());
      if (is_op(".")) {
        ++at_;
        n->targets.push_back(expect_name());
        n->attr_target = true;
      } else {
        while (is_op(",")) {
          ++at_;
          n->targets.push_back(expect_name());
        }
      }
      if (!is_op("=")) error("expected '=' ({% set %} blocks are not supported), found " + describe());
      ++at_;
      n->expr = expression();
      expect_block_end();
    } else if (word == "macro") {
      n->kind = Node::Kind::macro;
      n->name = expect_name();
      expect_op("(");
      while (!is_op(")")) {
        std::string param = expect_name();
        ExprP def;
        if (is_op("=")) {
          ++at_;
          def = expression();
        }
        n->params.emplace_back(std::move(param), std::move(def));
        if (!is_op(",")) break;
        ++at_;
      }
      expect_op(")");
      expect_block_end();
      n->body = body({"endmacro"}, found);
      if (peek().type == Tok::name) ++at_;  // {% endmacro name %}
      expect_block_end();
    } else if (word == "break" || word == "continue") {
      n->kind = word == "break" ? Node::Kind::break_ : Node::Kind::continue_;
      expect_block_end();
    } else {
      lexer_.error(toks_[at_ - 1].offset, "unsupported tag '" + word + "'");
    }
    return n;
  }

  // expr: or_expr ["if" or_expr ["else" expr]]
  ExprP expression() {
    Depth depth(*this);
    ExprP e = or_expr();
    if (is_name("if")) {
      auto c = make(Expr::Kind::cond, pos());
      ++at_;
      ExprP cond = or_expr();
      ExprP other;
      if (is_name("else")) {
        ++at_;
        other = expression();
      }
      c->kids.push_back(std::move(cond));
      c->kids.push_back(std::move(e));
      c->kids.push_back(std::move(other));
      return c;
    }
    return e;
  }
  // For `for x in EXPR if COND`: no ternary, as jinja2 parses it.
  ExprP ternary_free() { return or_expr(); }

  ExprP binary(ExprP left, const char* op, ExprP right, Pos p) {
    auto e = make(Expr::Kind::binary, p);
    e->name = std::string(op);  // not operator=(const char*): GCC 12 -Wrestrict false positive (PR105329)
    e->kids.push_back(std::move(left));
    e->kids.push_back(std::move(right));
    return e;
  }
  ExprP or_expr() {
    ExprP e = and_expr();
    while (is_name("or")) {
      const Pos p = pos();
      ++at_;
      e = binary(std::move(e), "or", and_expr(), p);
    }
    return e;
  }
  ExprP and_expr() {
    ExprP e = not_expr();
    while (is_name("and")) {
      const Pos p = pos();
      ++at_;
      e = binary(std::move(e), "and", not_expr(), p);
    }
    return e;
  }
  ExprP not_expr() {
    if (is_name("not")) {
      Depth depth(*this);
      auto e = make(Expr::Kind::unary, pos());
      ++at_;
      e->name = "not";
      e->kids.push_back(not_expr());
      return e;
    }
    return compare();
  }
  ExprP compare() {
    ExprP e = math1();
    while (true) {
      const Pos p = pos();
      static const char* const kCmp[] = {"==", "!=", "<=", ">=", "<", ">"};
      const char* op = nullptr;
      for (const char* c : kCmp)
        if (is_op(c)) op = c;
      if (op) {
        ++at_;
        e = binary(std::move(e), op, math1(), p);
      } else if (is_name("in")) {
        ++at_;
        e = binary(std::move(e), "in", math1(), p);
      } else if (is_name("not") && is_name("in", 1)) {
        at_ += 2;
        e = binary(std::move(e), "not in", math1(), p);
      } else {
        return e;
      }
    }
  }
  ExprP math1() {
    ExprP e = concat();
    while (is_op("+") || is_op("-")) {
      const Pos p = pos();
      const char* op = is_op("+") ? "+" : "-";
      ++at_;
      e = binary(std::move(e), op, concat(), p);
    }
    return e;
  }
  ExprP concat() {
    ExprP e = math2();
    while (is_op("~")) {
      const Pos p = pos();
      ++at_;
      e = binary(std::move(e), "~", math2(), p);
    }
    return e;
  }
  ExprP math2() {
    ExprP e = power();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      const Pos p = pos();
      const std::string op = peek().text;
      ++at_;
      auto b = binary(std::move(e), "", power(), p);
      b->name = op;
      e = std::move(b);
    }
    return e;
  }
  ExprP power() {
    ExprP e = unary();
    while (is_op("**")) {
      const Pos p = pos();
      ++at_;
      e = binary(std::move(e), "**", unary(), p);
    }
    return e;
  }
  ExprP unary() {
    if (is_op("-") || is_op("+")) {
      Depth depth(*this);
      auto e = make(Expr::Kind::unary, pos());
      e->name = peek().text;
      ++at_;
      e->kids.push_back(unary());
      return e;
    }
    return postfix(primary());
  }

  ExprP primary() {
    Depth depth(*this);
    const Token& t = peek();
    const Pos p = pos();
    if (t.type == Tok::name) {
      ++at_;
      auto e = make(Expr::Kind::literal, p);
      if (t.text == "true" || t.text == "True") e->value = Value::boolean(true);
      else if (t.text == "false" || t.text == "False") e->value = Value::boolean(false);
      else if (t.text == "none" || t.text == "None") e->value = Value::none();
      else {
        e->kind = Expr::Kind::name;
        e->name = t.text;
      }
      return e;
    }
    if (t.type == Tok::string) {
      std::string s;
      while (peek().type == Tok::string) s += toks_[at_++].text;  // adjacent literals join
      auto e = make(Expr::Kind::literal, p);
      e->value = Value::markup(std::move(s));
      return e;
    }
    if (t.type == Tok::integer || t.type == Tok::real) {
      ++at_;
      auto e = make(Expr::Kind::literal, p);
      try {
        e->value = t.type == Tok::integer ? Value::integer(std::stoll(t.text)) : Value::real(std::stod(t.text));
      } catch (const std::exception&) {
        lexer_.error(t.offset, "number out of range: " + t.text);
      }
      return e;
    }
    if (is_op("(")) {
      ++at_;
      ExprP e = expression();
      if (is_op(",")) {  // a tuple: a list here
        auto l = make(Expr::Kind::list, p);
        l->kids.push_back(std::move(e));
        while (is_op(",")) {
          ++at_;
          if (is_op(")")) break;
          l->kids.push_back(expression());
        }
        e = std::move(l);
      }
      expect_op(")");
      return e;
    }
    if (is_op("[")) {
      ++at_;
      auto e = make(Expr::Kind::list, p);
      while (!is_op("]")) {
        e->kids.push_back(expression());
        if (!is_op(",")) break;
        ++at_;
      }
      expect_op("]");
      return e;
    }
    if (is_op("{")) {
      ++at_;
      auto e = make(Expr::Kind::dict, p);
      while (!is_op("}")) {
        e->kids.push_back(expression());
        expect_op(":");
        e->kids.push_back(expression());
        if (!is_op(",")) break;
        ++at_;
      }
      expect_op("}");
      return e;
    }
    error("expected an expression, found " + describe());
  }

  void call_args(Expr& e) {
    expect_op("(");
    while (!is_op(")")) {
      if (peek().type == Tok::name && is_op("=", 1)) {
        std::string key = toks_[at_].text;
        at_ += 2;
        e.kwargs.emplace_back(std::move(key), expression());
      } else {
        if (!e.kwargs.empty()) error("a positional argument after a keyword argument");
        e.kids.push_back(expression());
      }
      if (!is_op(",")) break;
      ++at_;
    }
    expect_op(")");
  }

  ExprP postfix(ExprP e) {
    int links = 0;
    while (true) {
      if (++links > kDepthMax) error("more than " + std::to_string(kDepthMax) + " postfix operations in a row");
      const Pos p = pos();
      if (is_op(".")) {
        ++at_;
        auto a = make(Expr::Kind::attr, p);
        if (peek().type == Tok::integer) a->name = toks_[at_++].text;  // x.0 is x[0] in jinja2
        else a->name = expect_name();
        a->kids.push_back(std::move(e));
        e = std::move(a);
      } else if (is_op("[")) {
        ++at_;
        ExprP start, stop, step;
        bool slice = false;
        if (!is_op(":")) start = expression();
        if (is_op(":")) {
          slice = true;
          ++at_;
          if (!is_op("]") && !is_op(":")) stop = expression();
          if (is_op(":")) {
            ++at_;
            if (!is_op("]")) step = expression();
          }
        }
        expect_op("]");
        auto s = make(slice ? Expr::Kind::slice : Expr::Kind::index, p);
        s->kids.push_back(std::move(e));
        s->kids.push_back(std::move(start));
        if (slice) {
          s->kids.push_back(std::move(stop));
          s->kids.push_back(std::move(step));
        }
        e = std::move(s);
      } else if (is_op("(")) {
        auto c = make(Expr::Kind::call, p);
        c->kids.push_back(std::move(e));
        call_args(*c);
        e = std::move(c);
      } else if (is_op("|")) {
        ++at_;
        auto f = make(Expr::Kind::filter, pos());
        f->name = expect_name();
        while (is_op(".")) {  // dotted filter names are not jinja2's; refuse clearly
          error("unknown filter '" + f->name + ".'");
        }
        f->kids.push_back(std::move(e));
        if (is_op("(")) call_args(*f);
        e = std::move(f);
      } else if (is_name("is")) {
        ++at_;
        auto t = make(Expr::Kind::test, pos());
        if (is_name("not")) {
          ++at_;
          t->negate = true;
        }
        t->name = expect_name();
        t->kids.push_back(std::move(e));
        if (is_op("(")) {
          call_args(*t);
        } else if (peek().type == Tok::string || peek().type == Tok::integer || peek().type == Tok::real ||
                   (peek().type == Tok::name && !is_name("and") && !is_name("or") && !is_name("else") && !is_name("if") &&
                    !is_name("is") && !is_name("in") && !is_name("not"))) {
          t->kids.push_back(primary());  // `x is equalto 'y'`, `x is sameas none`
        }
        e = std::move(t);
      } else {
        return e;
      }
    }
  }

  Lexer lexer_;
  std::vector<Token> toks_;
  std::size_t at_ = 0;
  int depth_ = 0;
};

}  // namespace

std::unique_ptr<Program> parse(std::string_view source) {
  if (source.size() > kSourceBytesMax)
    throw JinjaError("template of " + std::to_string(source.size()) + " bytes, more than the " + std::to_string(kSourceBytesMax) +
                     " allowed");
  return Parser(source).program();
}

}  // namespace sluice::jinja
