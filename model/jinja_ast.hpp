// model/jinja_ast.hpp: the values and syntax tree of the Jinja subset (model/jinja.hpp), shared by
// the parser (jinja_parse.cpp), the interpreter (jinja_eval.cpp) and the built-ins
// (jinja_builtins.cpp). Internal to model/.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "model/jinja.hpp"

namespace sluice::jinja {

// A string and the byte ranges of it the template wrote (sorted, disjoint, merged).
struct Str {
  std::string s;
  std::vector<std::pair<std::size_t, std::size_t>> markup;  // (offset, length)

  static Str of_markup(std::string text);
  static Str of_data(std::string text);
  void append(const Str& other);
  void append_data(std::string_view text);
  void append_markup(std::string_view text);
  Str substr(std::size_t pos, std::size_t n) const;  // markup clipped to the piece
  bool all_markup() const;
};

struct Value;
using List = std::vector<Value>;
using Dict = std::vector<std::pair<std::string, Value>>;  // insertion order, as Python's dict
struct Context;
struct Pos {
  std::uint32_t line = 1, column = 1;
};
using Args = std::vector<Value>;
using Kwargs = std::vector<std::pair<std::string, Value>>;
using Function = std::function<Value(Context&, Args&, Kwargs&, Pos)>;

struct Value {
  enum class Type { undefined, none, boolean, integer, real, string, list, dict, ns, function };
  Type type = Type::undefined;
  bool b = false;
  std::int64_t i = 0;
  double d = 0;
  Str str;
  std::shared_ptr<List> list;     // list (tuples too)
  std::shared_ptr<Dict> dict;     // dict, namespace
  std::shared_ptr<Function> fn;   // function, macro
  std::string name;               // undefined: what was missing, for the error message

  static Value undefined(std::string what = {});
  static Value none();
  static Value boolean(bool v);
  static Value integer(std::int64_t v);
  static Value real(double v);
  static Value string(Str v);
  static Value markup(std::string v) { return string(Str::of_markup(std::move(v))); }
  static Value data(std::string v) { return string(Str::of_data(std::move(v))); }
  static Value new_list(List v = {});
  static Value new_dict(Dict v = {});

  bool is_undefined() const { return type == Type::undefined; }
  bool is_number() const { return type == Type::integer || type == Type::real || type == Type::boolean; }
  const Value* find(std::string_view key) const;  // dict / namespace item, or null
};

struct Expr;
using ExprP = std::unique_ptr<Expr>;
struct Expr {
  enum class Kind { literal, name, attr, index, slice, call, filter, test, unary, binary, cond, list, dict };
  Kind kind;
  Pos pos;
  Value value;                                    // literal
  std::string name;                               // name, attr, filter, test; unary/binary operator
  bool negate = false;                            // test: `is not`
  std::vector<ExprP> kids;                        // operands / arguments (null where a slice bound is absent)
  std::vector<std::pair<std::string, ExprP>> kwargs;  // call, filter, test keyword arguments
};

struct Node;
using Body = std::vector<std::unique_ptr<Node>>;
struct Node {
  enum class Kind { text, output, if_, for_, set, macro, break_, continue_ };
  Kind kind;
  Pos pos;
  std::string text;                            // text
  ExprP expr;                                  // output, set value, for iterable
  std::vector<std::pair<ExprP, Body>> branches;  // if: (condition, body) ...; else has a null condition
  std::vector<std::string> targets;            // for / set names; set ns.attr: {ns, attr} with `attr_target`
  bool attr_target = false;
  ExprP filter;                                // for ... if filter
  Body body, else_body;                        // for, macro
  std::string name;                            // macro
  std::vector<std::pair<std::string, ExprP>> params;  // macro parameters and defaults (null: none)
};

struct Program {
  Body body;
};

// The parser (jinja_parse.cpp): trim_blocks and lstrip_blocks on, as HF renders.
std::unique_ptr<Program> parse(std::string_view source);

// Built-ins (jinja_builtins.cpp). Each throws JinjaError naming `pos`.
Value apply_filter(Context& ctx, const std::string& name, Value& input, Args& args, Kwargs& kwargs, Pos pos);
bool apply_test(Context& ctx, const std::string& name, const Value& input, Args& args, Pos pos);
// A method of a string, dict or list (`s.strip()`, `d.items()`); false when `object` has none so named.
bool call_method(Context& ctx, const Value& object, const std::string& name, Args& args, Kwargs& kwargs, Pos pos, Value& out);

// Helpers shared by the interpreter and the built-ins (jinja_eval.cpp).
[[noreturn]] void fail(Pos pos, const std::string& why);
bool truthy(const Value& v);
Str to_str(const Value& v);           // str(v) as Python prints it; a string keeps its provenance
std::string repr(const Value& v);     // repr(v), for lists and dicts printed whole
bool equal(const Value& a, const Value& b);
std::string type_name(const Value& v);
std::string to_json(const Value& v, int indent, int depth);  // json.dumps(ensure_ascii=False)
List iterate(const Value& v, Pos pos);  // for x in v: a list's items, a dict's keys, a string's characters
Value call_value(Context& ctx, const Value& fn, Args& args, Kwargs& kwargs, Pos pos);
void count_step(Context& ctx, Pos pos);

}  // namespace sluice::jinja
