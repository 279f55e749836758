// model/jinja_builtins.cpp: the filters, tests and methods of the Jinja subset (model/jinja.hpp),
// with Python's meaning. Strings keep provenance through them: trim of data is data, a join's
// separator keeps its own; anything else computed is data unless every input was markup.
#include <algorithm>

#include "model/jinja_ast.hpp"

namespace sluice::jinja {
namespace {

// Python's str.isspace for ASCII bytes (UTF-8 whitespace beyond ASCII is kept: rare in chats).
bool py_space(unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f); }

Str strip(const Str& s, bool left, bool right, const std::string* chars) {
  auto is_strip = [&](unsigned char c) { return chars ? chars->find(static_cast<char>(c)) != std::string::npos : py_space(c); };
  std::size_t a = 0, b = s.s.size();
  if (left)
    while (a < b && is_strip(static_cast<unsigned char>(s.s[a]))) ++a;
  if (right)
    while (b > a && is_strip(static_cast<unsigned char>(s.s[b - 1]))) --b;
  return s.substr(a, b - a);
}

Str map_bytes(const Str& s, int (*f)(int)) {
  Str out = s;
  for (char& c : out.s)
    if (static_cast<unsigned char>(c) < 0x80) c = static_cast<char>(f(c));
  return out;
}

Value from(const Value& input, std::string text) {
  return input.type == Value::Type::string && input.str.all_markup() ? Value::markup(std::move(text)) : Value::data(std::move(text));
}

const Value* kwarg(Kwargs& kwargs, const char* name) {
  for (auto& [k, v] : kwargs)
    if (k == name) return &v;
  return nullptr;
}

void need_string(const Value& v, const std::string& what, Pos pos) {
  if (v.type != Value::Type::string) fail(pos, what + " needs a string, got '" + type_name(v) + "'" + (v.is_undefined() && !v.name.empty() ? " (" + v.name + ")" : ""));
}

Value replace(const Str& s, const std::string& from_text, const Str& to, std::int64_t count) {
  Str out;
  std::size_t at = 0;
  std::int64_t done = 0;
  if (from_text.empty()) return Value::string(s);  // Python inserts between characters; no template relies on it
  while (count < 0 || done < count) {
    const std::size_t k = s.s.find(from_text, at);
    if (k == std::string::npos) break;
    out.append(s.substr(at, k - at));
    out.append(to);
    at = k + from_text.size();
    ++done;
  }
  out.append(s.substr(at, std::string::npos));
  return Value::string(std::move(out));
}

Value split(const Str& s, const Value* sep, std::int64_t maxsplit) {
  List parts;
  if (!sep || sep->type == Value::Type::none) {  // runs of whitespace, no empty parts
    std::size_t k = 0;
    while (true) {
      while (k < s.s.size() && py_space(static_cast<unsigned char>(s.s[k]))) ++k;
      if (k >= s.s.size()) break;
      if (maxsplit >= 0 && std::int64_t(parts.size()) == maxsplit) {
        parts.push_back(Value::string(strip(s.substr(k, std::string::npos), false, true, nullptr)));
        break;
      }
      std::size_t e = k;
      while (e < s.s.size() && !py_space(static_cast<unsigned char>(s.s[e]))) ++e;
      parts.push_back(Value::string(s.substr(k, e - k)));
      k = e;
    }
    return Value::new_list(std::move(parts));
  }
  const std::string& d = sep->str.s;
  std::size_t at = 0;
  while (maxsplit < 0 || std::int64_t(parts.size()) < maxsplit) {
    const std::size_t k = s.s.find(d, at);
    if (k == std::string::npos) break;
    parts.push_back(Value::string(s.substr(at, k - at)));
    at = k + d.size();
  }
  parts.push_back(Value::string(s.substr(at, std::string::npos)));
  return Value::new_list(std::move(parts));
}

// An attribute path "a.b" of a value (for selectattr, map(attribute=)), Undefined where missing.
Value attribute(const Value& v, const std::string& path) {
  Value cur = v;
  std::size_t at = 0;
  while (at <= path.size()) {
    const std::size_t dot = path.find('.', at);
    const std::string part = path.substr(at, dot == std::string::npos ? std::string::npos : dot - at);
    const Value* next = cur.find(part);
    if (!next) return Value::undefined(part);
    cur = *next;
    if (dot == std::string::npos) break;
    at = dot + 1;
  }
  return cur;
}

std::int64_t length(const Value& v, Pos pos) {
  switch (v.type) {
    case Value::Type::undefined: return 0;
    case Value::Type::string: {  // characters, as Python counts them
      std::int64_t n = 0;
      for (const unsigned char c : v.str.s) n += (c & 0xC0) != 0x80;
      return n;
    }
    case Value::Type::list: return std::int64_t(v.list->size());
    case Value::Type::dict:
    case Value::Type::ns: return std::int64_t(v.dict->size());
    default: fail(pos, "object of type '" + type_name(v) + "' has no len()");
  }
}

}  // namespace

Value apply_filter(Context& ctx, const std::string& name, Value& input, Args& args, Kwargs& kwargs, Pos pos) {
  auto arg = [&](std::size_t k, const char* key) -> const Value* {
    if (k < args.size()) return &args[k];
    return kwarg(kwargs, key);
  };
  if (name == "trim" || name == "strip") {
    need_string(input, "trim", pos);
    const Value* chars = arg(0, "chars");
    return Value::string(strip(input.str, true, true, chars && chars->type == Value::Type::string ? &chars->str.s : nullptr));
  }
  if (name == "length" || name == "count") return Value::integer(length(input, pos));
  if (name == "tojson") {
    const Value* indent = arg(0, "indent");
    const int n = indent && indent->type == Value::Type::integer ? int(std::clamp<std::int64_t>(indent->i, 0, 16)) : -1;
    return Value::data(to_json(input, n, 0));
  }
  if (name == "upper" || name == "lower") {
    need_string(input, name, pos);
    return Value::string(map_bytes(input.str, name == "upper" ? ::toupper : ::tolower));
  }
  if (name == "capitalize" || name == "title") {
    need_string(input, name, pos);
    Str s = map_bytes(input.str, ::tolower);
    bool start = true;
    for (char& c : s.s) {
      if (start && std::isalpha(static_cast<unsigned char>(c))) c = static_cast<char>(std::toupper(c));
      start = name == "title" ? !std::isalnum(static_cast<unsigned char>(c)) : false;
    }
    return Value::string(std::move(s));
  }
  if (name == "default" || name == "d") {
    const Value* def = arg(0, "default_value");
    const Value* boolean = arg(1, "boolean");
    const bool use = input.is_undefined() || (boolean && truthy(*boolean) && !truthy(input));
    return use ? (def ? *def : Value::markup("")) : input;
  }
  if (name == "join") {
    const Value* sep = arg(0, "d");
    const Value* attr = arg(1, "attribute");
    Str out;
    bool first = true;
    for (const Value& x : iterate(input, pos)) {
      count_step(ctx, pos);
      if (!first && sep) out.append(to_str(*sep));
      first = false;
      out.append(to_str(attr ? attribute(x, to_str(*attr).s) : x));
    }
    return Value::string(std::move(out));
  }
  if (name == "first" || name == "last") {
    List items = iterate(input, pos);
    if (items.empty()) return Value::undefined("no " + name + " item");
    return name == "first" ? items.front() : items.back();
  }
  if (name == "string") return Value::string(to_str(input));
  if (name == "safe" || name == "e" || name == "escape") {
    if (name != "safe") fail(pos, "filter '" + name + "' is not supported (autoescape is off in chat templates)");
    return input;
  }
  if (name == "list") return Value::new_list(iterate(input, pos));
  if (name == "items") {
    if (input.is_undefined()) return Value::new_list();
    if (input.type != Value::Type::dict) fail(pos, "items needs a mapping, got '" + type_name(input) + "'");
    List l;
    for (const auto& [k, v] : *input.dict) l.push_back(Value::new_list({Value::data(k), v}));
    return Value::new_list(std::move(l));
  }
  if (name == "replace") {
    need_string(input, "replace", pos);
    if (args.size() < 2 || args[0].type != Value::Type::string || args[1].type != Value::Type::string) fail(pos, "replace(old, new) takes two strings");
    return replace(input.str, args[0].str.s, args[1].str, args.size() > 2 && args[2].type == Value::Type::integer ? args[2].i : -1);
  }
  if (name == "int") {
    if (input.type == Value::Type::integer) return input;
    if (input.type == Value::Type::real) return Value::integer(std::int64_t(input.d));
    if (input.type == Value::Type::boolean) return Value::integer(input.b);
    if (input.type == Value::Type::string) {
      try {
        return Value::integer(std::stoll(input.str.s));
      } catch (const std::exception&) {
      }
    }
    return Value::integer(0);
  }
  if (name == "float") {
    if (input.is_number()) return Value::real(input.type == Value::Type::real ? input.d : input.type == Value::Type::boolean ? input.b : double(input.i));
    try {
      if (input.type == Value::Type::string) return Value::real(std::stod(input.str.s));
    } catch (const std::exception&) {
    }
    return Value::real(0);
  }
  if (name == "abs") {
    if (input.type == Value::Type::integer) return Value::integer(input.i < 0 ? -input.i : input.i);
    if (input.type == Value::Type::real) return Value::real(input.d < 0 ? -input.d : input.d);
    fail(pos, "abs needs a number");
  }
  if (name == "select" || name == "reject" || name == "selectattr" || name == "rejectattr") {
    const bool by_attr = name == "selectattr" || name == "rejectattr";
    const bool keep_when = name == "select" || name == "selectattr";
    std::size_t k = 0;
    std::string attr;
    if (by_attr) {
      if (args.empty() || args[0].type != Value::Type::string) fail(pos, name + " needs an attribute name");
      attr = args[0].str.s;
      k = 1;
    }
    std::string test = k < args.size() ? to_str(args[k]).s : "";
    Args test_args(args.begin() + std::ptrdiff_t(std::min(args.size(), k + 1)), args.end());
    List out;
    for (const Value& x : iterate(input, pos)) {
      count_step(ctx, pos);
      const Value subject = by_attr ? attribute(x, attr) : x;
      const bool pass = test.empty() ? truthy(subject) : apply_test(ctx, test, subject, test_args, pos);
      if (pass == keep_when) out.push_back(x);
    }
    return Value::new_list(std::move(out));
  }
  if (name == "map") {
    const Value* attr = kwarg(kwargs, "attribute");
    List out;
    for (const Value& x : iterate(input, pos)) {
      count_step(ctx, pos);
      if (attr) {
        out.push_back(attribute(x, to_str(*attr).s));
      } else {
        if (args.empty()) fail(pos, "map needs a filter name or attribute=");
        Value item = x;
        Args rest(args.begin() + 1, args.end());
        Kwargs none;
        out.push_back(apply_filter(ctx, to_str(args[0]).s, item, rest, none, pos));
      }
    }
    return Value::new_list(std::move(out));
  }
  if (name == "unique") {
    List out;
    for (const Value& x : iterate(input, pos)) {
      bool seen = false;
      for (const Value& y : out) seen = seen || equal(x, y);
      if (!seen) out.push_back(x);
    }
    return Value::new_list(std::move(out));
  }
  if (name == "reverse") {
    if (input.type == Value::Type::string) {
      List chars = iterate(input, pos);
      Str s;
      for (auto it = chars.rbegin(); it != chars.rend(); ++it) s.append(it->str);
      return Value::string(std::move(s));
    }
    List l = iterate(input, pos);
    std::reverse(l.begin(), l.end());
    return Value::new_list(std::move(l));
  }
  fail(pos, "unknown filter '" + name + "'");
}

bool apply_test(Context&, const std::string& name, const Value& v, Args& args, Pos pos) {
  using T = Value::Type;
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "none") return v.type == T::none;
  if (name == "string") return v.type == T::string;
  if (name == "number") return v.type == T::integer || v.type == T::real;
  if (name == "integer") return v.type == T::integer;
  if (name == "float") return v.type == T::real;
  if (name == "boolean") return v.type == T::boolean;
  if (name == "true") return v.type == T::boolean && v.b;
  if (name == "false") return v.type == T::boolean && !v.b;
  if (name == "mapping") return v.type == T::dict;
  if (name == "iterable") return v.type == T::string || v.type == T::list || v.type == T::dict;
  if (name == "sequence") return v.type == T::string || v.type == T::list || v.type == T::dict;
  if (name == "callable") return v.type == T::function;
  if (name == "odd" || name == "even") {
    if (v.type != T::integer) fail(pos, "test '" + name + "' needs an integer");
    return (v.i % 2 != 0) == (name == "odd");
  }
  if (args.empty() && (name == "equalto" || name == "eq" || name == "==" || name == "ne" || name == "divisibleby" ||
                       name == "in" || name == "sameas"))
    fail(pos, "test '" + name + "' needs an argument");
  if (name == "equalto" || name == "eq" || name == "==" || name == "sameas") return equal(v, args[0]);
  if (name == "ne" || name == "!=") return !equal(v, args[0]);
  if (name == "divisibleby") {
    if (v.type != T::integer || args[0].type != T::integer || args[0].i == 0) fail(pos, "divisibleby needs integers");
    return v.i % args[0].i == 0;
  }
  if (name == "in") {
    const Value& c = args[0];
    if (c.type == T::list) return std::any_of(c.list->begin(), c.list->end(), [&](const Value& x) { return equal(x, v); });
    if (c.type == T::string && v.type == T::string) return c.str.s.find(v.str.s) != std::string::npos;
    if (c.type == T::dict) return v.type == T::string && c.find(v.str.s);
    fail(pos, "test 'in' needs a container");
  }
  fail(pos, "unknown test '" + name + "'");
}

bool call_method(Context& ctx, const Value& obj, const std::string& name, Args& args, Kwargs& kwargs, Pos pos, Value& out) {
  using T = Value::Type;
  auto string_arg = [&](std::size_t k) -> const std::string* {
    return k < args.size() && args[k].type == T::string ? &args[k].str.s : nullptr;
  };
  if (obj.type == T::string) {
    const Str& s = obj.str;
    if (name == "strip" || name == "lstrip" || name == "rstrip") {
      out = Value::string(strip(s, name != "rstrip", name != "lstrip", string_arg(0)));
      return true;
    }
    if (name == "upper" || name == "lower" || name == "title" || name == "capitalize") {
      Value in = obj;
      Args none;
      Kwargs nokw;
      out = apply_filter(ctx, name, in, none, nokw, pos);
      return true;
    }
    if (name == "startswith" || name == "endswith") {
      const std::string* p = string_arg(0);
      if (!p) fail(pos, name + " needs a string");
      const bool r = name == "startswith" ? s.s.compare(0, p->size(), *p) == 0 && s.s.size() >= p->size()
                                          : s.s.size() >= p->size() && s.s.compare(s.s.size() - p->size(), p->size(), *p) == 0;
      out = Value::boolean(r);
      return true;
    }
    if (name == "split") {
      const Value* sep = args.empty() ? kwarg(kwargs, "sep") : &args[0];
      const Value* maxsplit = args.size() > 1 ? &args[1] : kwarg(kwargs, "maxsplit");
      if (sep && sep->type == T::string && sep->str.s.empty()) fail(pos, "split: empty separator");
      out = split(s, sep, maxsplit && maxsplit->type == T::integer ? maxsplit->i : -1);
      return true;
    }
    if (name == "replace") {
      if (args.size() < 2 || args[0].type != T::string || args[1].type != T::string) fail(pos, "replace(old, new) takes two strings");
      out = replace(s, args[0].str.s, args[1].str, args.size() > 2 && args[2].type == T::integer ? args[2].i : -1);
      return true;
    }
    if (name == "find") {
      const std::string* p = string_arg(0);
      if (!p) fail(pos, "find needs a string");
      const std::size_t k = s.s.find(*p);
      out = Value::integer(k == std::string::npos ? -1 : std::int64_t(k));
      return true;
    }
    (void)from;
    return false;
  }
  if (obj.type == T::dict) {
    if (name == "get") {
      if (args.empty() || args[0].type != T::string) fail(pos, "get needs a string key");
      const Value* v = obj.find(args[0].str.s);
      out = v ? *v : args.size() > 1 ? args[1] : Value::none();
      return true;
    }
    if (name == "items" || name == "keys" || name == "values") {
      List l;
      for (const auto& [k, v] : *obj.dict) {
        if (name == "items") l.push_back(Value::new_list({Value::data(k), v}));
        else l.push_back(name == "keys" ? Value::data(k) : v);
      }
      out = Value::new_list(std::move(l));
      return true;
    }
    return false;
  }
  if (obj.type == T::list && (name == "append" || name == "pop" || name == "insert" || name == "extend"))
    fail(pos, "lists are immutable in chat templates (" + name + ")");
  return false;
}

}  // namespace sluice::jinja
