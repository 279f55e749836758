// model/jinja_eval.cpp: the interpreter of the Jinja subset (model/jinja.hpp): scopes as jinja2
// keeps them (a for loop's sets stay inside it; namespace() objects carry state out), Undefined as
// jinja2's default (printing it writes nothing; reading an attribute of it raises), output that
// remembers which bytes the template wrote.
#include <cmath>
#include <ctime>
#include <unordered_map>

#include "model/jinja_ast.hpp"

namespace sluice::jinja {

constexpr std::size_t kStepsMax = 1'000'000;      // evaluation steps per render
constexpr std::size_t kOutputBytesMax = 16 << 20;  // rendered bytes
constexpr int kCallDepthMax = 64;                   // macro calls in flight

struct Context {
  std::vector<std::unordered_map<std::string, Value>> scopes;
  std::size_t steps = 0;
  int call_depth = 0;
};

[[noreturn]] void fail(Pos pos, const std::string& why) {
  throw JinjaError("line " + std::to_string(pos.line) + ", column " + std::to_string(pos.column) + ": " + why);
}

void count_step(Context& ctx, Pos pos) {
  if (++ctx.steps > kStepsMax) fail(pos, "more than " + std::to_string(kStepsMax) + " evaluation steps");
}

List iterate(const Value& v, Pos pos) {
  switch (v.type) {
    case Value::Type::undefined: return {};
    case Value::Type::list: return *v.list;
    case Value::Type::dict: {
      List keys;
      for (const auto& kv : *v.dict) keys.push_back(Value::data(kv.first));
      return keys;
    }
    case Value::Type::string: {  // characters (UTF-8 sequences), provenance kept
      List chars;
      const std::string& s = v.str.s;
      for (std::size_t k = 0; k < s.size();) {
        std::size_t n = 1;
        while (k + n < s.size() && (static_cast<unsigned char>(s[k + n]) & 0xC0) == 0x80) ++n;
        chars.push_back(Value::string(v.str.substr(k, n)));
        k += n;
      }
      return chars;
    }
    default: fail(pos, "'" + type_name(v) + "' object is not iterable");
  }
}

Value call_value(Context& ctx, const Value& fn, Args& args, Kwargs& kwargs, Pos pos) {
  if (fn.type != Value::Type::function) fail(pos, "'" + type_name(fn) + "' object is not callable" + (fn.is_undefined() && !fn.name.empty() ? " ('" + fn.name + "' is undefined)" : ""));
  if (++ctx.call_depth > kCallDepthMax) fail(pos, "calls nested more than " + std::to_string(kCallDepthMax) + " deep");
  struct Leave {
    Context& c;
    ~Leave() { --c.call_depth; }
  } leave{ctx};
  return (*fn.fn)(ctx, args, kwargs, pos);
}

namespace {

struct BreakLoop {};
struct ContinueLoop {};

class Interpreter {
 public:
  Interpreter(Context& ctx, Str& out) : ctx_(ctx), out_(out) {}

  void run(const Body& body) {
    for (const auto& n : body) exec(*n);
  }

 private:
  Value lookup(const std::string& name) const {
    for (auto it = ctx_.scopes.rbegin(); it != ctx_.scopes.rend(); ++it) {
      const auto found = it->find(name);
      if (found != it->end()) return found->second;
    }
    return Value::undefined(name);
  }

  void emit(const Str& s, Pos pos) {
    out_.append(s);
    if (out_.s.size() > kOutputBytesMax) fail(pos, "output larger than " + std::to_string(kOutputBytesMax) + " bytes");
  }

  void exec(const Node& n) {
    count_step(ctx_, n.pos);
    switch (n.kind) {
      case Node::Kind::text: {
        out_.append_markup(n.text);
        if (out_.s.size() > kOutputBytesMax) fail(n.pos, "output too large");
        return;
      }
      case Node::Kind::output: emit(to_str(eval(*n.expr)), n.pos); return;
      case Node::Kind::if_:
        for (const auto& [cond, body] : n.branches) {
          if (!cond || truthy(eval(*cond))) {
            run(body);
            return;
          }
        }
        return;
      case Node::Kind::for_: exec_for(n); return;
      case Node::Kind::set: {
        Value v = eval(*n.expr);
        if (n.attr_target) {
          Value ns = lookup(n.targets[0]);
          if (ns.type != Value::Type::ns) fail(n.pos, "cannot assign attribute on non-namespace object '" + n.targets[0] + "'");
          for (auto& kv : *ns.dict) {
            if (kv.first == n.targets[1]) {
              kv.second = std::move(v);
              return;
            }
          }
          ns.dict->emplace_back(n.targets[1], std::move(v));
        } else if (n.targets.size() == 1) {
          ctx_.scopes.back()[n.targets[0]] = std::move(v);
        } else {
          List items = iterate(v, n.pos);
          if (items.size() != n.targets.size()) fail(n.pos, "cannot unpack " + std::to_string(items.size()) + " values into " + std::to_string(n.targets.size()));
          for (std::size_t k = 0; k < items.size(); ++k) ctx_.scopes.back()[n.targets[k]] = items[k];
        }
        return;
      }
      case Node::Kind::macro: define_macro(n); return;
      case Node::Kind::break_: throw BreakLoop{};
      case Node::Kind::continue_: throw ContinueLoop{};
    }
  }

  void exec_for(const Node& n) {
    const Value seq = eval(*n.expr);
    List items = iterate(seq, n.pos);
    ctx_.scopes.emplace_back();
    struct Pop {
      Context& c;
      ~Pop() { c.scopes.pop_back(); }
    } pop{ctx_};
    auto bind = [&](const Value& item) {
      if (n.targets.size() == 1) {
        ctx_.scopes.back()[n.targets[0]] = item;
        return;
      }
      List parts = iterate(item, n.pos);
      if (parts.size() != n.targets.size()) fail(n.pos, "cannot unpack " + std::to_string(parts.size()) + " values into " + std::to_string(n.targets.size()));
      for (std::size_t k = 0; k < parts.size(); ++k) ctx_.scopes.back()[n.targets[k]] = parts[k];
    };
    if (n.filter) {
      List kept;
      for (const Value& item : items) {
        count_step(ctx_, n.pos);
        bind(item);
        if (truthy(eval(*n.filter))) kept.push_back(item);
      }
      items = std::move(kept);
    }
    const std::int64_t length = static_cast<std::int64_t>(items.size());
    for (std::int64_t k = 0; k < length; ++k) {
      count_step(ctx_, n.pos);
      Dict loop{{"index0", Value::integer(k)},
                {"index", Value::integer(k + 1)},
                {"revindex0", Value::integer(length - k - 1)},
                {"revindex", Value::integer(length - k)},
                {"first", Value::boolean(k == 0)},
                {"last", Value::boolean(k == length - 1)},
                {"length", Value::integer(length)},
                {"previtem", k > 0 ? items[std::size_t(k - 1)] : Value::undefined("previtem")},
                {"nextitem", k + 1 < length ? items[std::size_t(k + 1)] : Value::undefined("nextitem")}};
      ctx_.scopes.back()["loop"] = Value::new_dict(std::move(loop));
      bind(items[std::size_t(k)]);
      try {
        run(n.body);
      } catch (const ContinueLoop&) {
      } catch (const BreakLoop&) {
        break;
      }
    }
    if (length == 0) run(n.else_body);
  }

  void define_macro(const Node& n) {
    const Node* node = &n;
    auto fn = std::make_shared<Function>([node](Context& ctx, Args& args, Kwargs& kwargs, Pos pos) -> Value {
      if (args.size() > node->params.size()) fail(pos, "macro '" + node->name + "' takes " + std::to_string(node->params.size()) + " arguments");
      std::unordered_map<std::string, Value> scope;
      for (std::size_t k = 0; k < node->params.size(); ++k) {
        const auto& [pname, def] = node->params[k];
        Value v = k < args.size() ? args[k] : Value::undefined(pname);
        for (auto& [key, val] : kwargs)
          if (key == pname) v = val;
        if (v.is_undefined() && def && k >= args.size()) {
          Str sink;
          Interpreter inner(ctx, sink);
          v = inner.eval(*def);
        }
        scope[pname] = std::move(v);
      }
      // A macro sees the template's globals and its own parameters, as in jinja2.
      std::vector<std::unordered_map<std::string, Value>> saved(ctx.scopes.begin() + 1, ctx.scopes.end());
      ctx.scopes.resize(1);
      ctx.scopes.push_back(std::move(scope));
      Str out;
      try {
        Interpreter inner(ctx, out);
        inner.run(node->body);
      } catch (...) {
        ctx.scopes.resize(1);
        for (auto& s : saved) ctx.scopes.push_back(std::move(s));
        throw;
      }
      ctx.scopes.resize(1);
      for (auto& s : saved) ctx.scopes.push_back(std::move(s));
      return Value::string(std::move(out));
    });
    Value v;
    v.type = Value::Type::function;
    v.fn = std::move(fn);
    ctx_.scopes.back()[n.name] = std::move(v);
  }

 public:
  Value eval(const Expr& e) {
    count_step(ctx_, e.pos);
    switch (e.kind) {
      case Expr::Kind::literal: return e.value;
      case Expr::Kind::name: return lookup(e.name);
      case Expr::Kind::attr: return get_attr(eval(*e.kids[0]), e.name, e.pos);
      case Expr::Kind::index: return get_item(eval(*e.kids[0]), eval(*e.kids[1]), e.pos);
      case Expr::Kind::slice: return slice(e);
      case Expr::Kind::list: {
        List l;
        for (const auto& k : e.kids) l.push_back(eval(*k));
        return Value::new_list(std::move(l));
      }
      case Expr::Kind::dict: {
        Dict d;
        for (std::size_t k = 0; k + 1 < e.kids.size(); k += 2) {
          Value key = eval(*e.kids[k]);
          if (key.type != Value::Type::string) fail(e.kids[k]->pos, "dict keys other than strings are not supported");
          Value val = eval(*e.kids[k + 1]);
          bool replaced = false;
          for (auto& kv : d)
            if (kv.first == key.str.s) kv.second = val, replaced = true;
          if (!replaced) d.emplace_back(key.str.s, std::move(val));
        }
        return Value::new_dict(std::move(d));
      }
      case Expr::Kind::cond:
        if (truthy(eval(*e.kids[0]))) return eval(*e.kids[1]);
        return e.kids[2] ? eval(*e.kids[2]) : Value::undefined();
      case Expr::Kind::unary: {
        Value v = eval(*e.kids[0]);
        if (e.name == "not") return Value::boolean(!truthy(v));
        if (v.type == Value::Type::integer || v.type == Value::Type::boolean) return Value::integer(e.name == "-" ? -(v.type == Value::Type::boolean ? std::int64_t(v.b) : v.i) : v.i);
        if (v.type == Value::Type::real) return Value::real(e.name == "-" ? -v.d : v.d);
        fail(e.pos, "bad operand type for unary " + e.name + ": '" + type_name(v) + "'");
      }
      case Expr::Kind::binary: return binary(e);
      case Expr::Kind::call: return call(e);
      case Expr::Kind::filter: {
        Value input = eval(*e.kids[0]);
        Args args;
        Kwargs kwargs;
        eval_args(e, 1, args, kwargs);
        return apply_filter(ctx_, e.name, input, args, kwargs, e.pos);
      }
      case Expr::Kind::test: {
        Value input;
        if (e.name == "defined" || e.name == "undefined") {
          input = eval(*e.kids[0]);
        } else {
          input = eval(*e.kids[0]);
        }
        Args args;
        Kwargs kwargs;
        eval_args(e, 1, args, kwargs);
        return Value::boolean(apply_test(ctx_, e.name, input, args, e.pos) != e.negate);
      }
    }
    fail(e.pos, "unsupported expression");
  }

 private:
  void eval_args(const Expr& e, std::size_t first, Args& args, Kwargs& kwargs) {
    for (std::size_t k = first; k < e.kids.size(); ++k) args.push_back(eval(*e.kids[k]));
    for (const auto& [key, x] : e.kwargs) kwargs.emplace_back(key, eval(*x));
  }

  static Value get_attr(const Value& obj, const std::string& name, Pos pos) {
    if (obj.is_undefined()) fail(pos, "'" + (obj.name.empty() ? std::string("value") : obj.name) + "' is undefined (reading ." + name + ")");
    if (const Value* v = obj.find(name)) return *v;
    if (obj.type == Value::Type::list && !name.empty() && std::isdigit(static_cast<unsigned char>(name[0])))
      return get_item(obj, Value::integer(std::stoll(name)), pos);
    return Value::undefined("'" + type_name(obj) + " object' has no attribute '" + name + "'");
  }

  static Value get_item(const Value& obj, const Value& key, Pos pos) {
    if (obj.is_undefined()) fail(pos, "'" + (obj.name.empty() ? std::string("value") : obj.name) + "' is undefined (subscripted)");
    if (key.type == Value::Type::string) {
      if (const Value* v = obj.find(key.str.s)) return *v;
      return Value::undefined("'" + type_name(obj) + " object' has no attribute '" + key.str.s + "'");
    }
    if ((key.type == Value::Type::integer || key.type == Value::Type::boolean) &&
        (obj.type == Value::Type::list || obj.type == Value::Type::string)) {
      const std::int64_t size = obj.type == Value::Type::list ? std::int64_t(obj.list->size()) : std::int64_t(obj.str.s.size());
      std::int64_t k = key.type == Value::Type::boolean ? key.b : key.i;
      if (k < 0) k += size;
      if (k < 0 || k >= size) return Value::undefined("index out of range");
      if (obj.type == Value::Type::list) return (*obj.list)[std::size_t(k)];
      return Value::string(obj.str.substr(std::size_t(k), 1));
    }
    return Value::undefined("no item");
  }

  Value slice(const Expr& e) {
    const Value obj = eval(*e.kids[0]);
    if (obj.type != Value::Type::list && obj.type != Value::Type::string) fail(e.pos, "cannot slice '" + type_name(obj) + "'");
    const std::int64_t size = obj.type == Value::Type::list ? std::int64_t(obj.list->size()) : std::int64_t(obj.str.s.size());
    auto bound = [&](const ExprP& x, std::int64_t def) -> std::optional<std::int64_t> {
      if (!x) return std::nullopt;
      const Value v = eval(*x);
      if (v.type == Value::Type::none) return std::nullopt;
      if (v.type != Value::Type::integer) fail(x->pos, "slice indices must be integers");
      (void)def;
      return v.i;
    };
    const auto a = bound(e.kids[1], 0), b = bound(e.kids[2], size), c = bound(e.kids[3], 1);
    const std::int64_t step = c.value_or(1);
    if (step == 0) fail(e.pos, "slice step cannot be zero");
    auto clamp = [&](std::int64_t v, bool neg_step) {
      if (v < 0) v += size;
      if (v < 0) v = neg_step ? -1 : 0;
      if (v >= size) v = neg_step ? size - 1 : size;
      return v;
    };
    std::int64_t start = a ? clamp(*a, step < 0) : (step < 0 ? size - 1 : 0);
    std::int64_t stop = b ? clamp(*b, step < 0) : (step < 0 ? -1 : size);
    List items;
    Str s;
    for (std::int64_t k = start; step > 0 ? k < stop : k > stop; k += step) {
      count_step(ctx_, e.pos);
      if (obj.type == Value::Type::list) items.push_back((*obj.list)[std::size_t(k)]);
      else s.append(obj.str.substr(std::size_t(k), 1));
    }
    return obj.type == Value::Type::list ? Value::new_list(std::move(items)) : Value::string(std::move(s));
  }

  Value call(const Expr& e) {
    const Expr& callee = *e.kids[0];
    Args args;
    Kwargs kwargs;
    if (callee.kind == Expr::Kind::attr) {
      Value obj = eval(*callee.kids[0]);
      eval_args(e, 1, args, kwargs);
      Value out;
      if (!obj.is_undefined() && obj.type != Value::Type::ns && call_method(ctx_, obj, callee.name, args, kwargs, e.pos, out)) return out;
      return call_value(ctx_, get_attr(obj, callee.name, callee.pos), args, kwargs, e.pos);
    }
    Value fn = eval(callee);
    eval_args(e, 1, args, kwargs);
    return call_value(ctx_, fn, args, kwargs, e.pos);
  }

  Value binary(const Expr& e) {
    if (e.name == "and") {
      Value a = eval(*e.kids[0]);
      return truthy(a) ? eval(*e.kids[1]) : a;
    }
    if (e.name == "or") {
      Value a = eval(*e.kids[0]);
      return truthy(a) ? a : eval(*e.kids[1]);
    }
    const Value a = eval(*e.kids[0]);
    const Value b = eval(*e.kids[1]);
    const std::string& op = e.name;
    if (op == "==") return Value::boolean(equal(a, b));
    if (op == "!=") return Value::boolean(!equal(a, b));
    if (op == "~") {
      Str s = to_str(a);
      s.append(to_str(b));
      return Value::string(std::move(s));
    }
    if (op == "in" || op == "not in") {
      bool found = false;
      if (b.type == Value::Type::string) {
        if (a.type != Value::Type::string) fail(e.pos, "'in <string>' requires string as left operand, not " + type_name(a));
        found = b.str.s.find(a.str.s) != std::string::npos;
      } else if (b.type == Value::Type::list) {
        for (const Value& x : *b.list) found = found || equal(x, a);
      } else if (b.type == Value::Type::dict) {
        found = a.type == Value::Type::string && b.find(a.str.s) != nullptr;
      } else {
        fail(e.pos, "argument of type '" + type_name(b) + "' is not iterable");
      }
      return Value::boolean(found != (op == "not in"));
    }
    if (a.type == Value::Type::string && b.type == Value::Type::string) {
      if (op == "+") {
        Str s = a.str;
        s.append(b.str);
        return Value::string(std::move(s));
      }
      const int c = a.str.s.compare(b.str.s);
      if (op == "<") return Value::boolean(c < 0);
      if (op == ">") return Value::boolean(c > 0);
      if (op == "<=") return Value::boolean(c <= 0);
      if (op == ">=") return Value::boolean(c >= 0);
    }
    if (a.type == Value::Type::list && b.type == Value::Type::list && op == "+") {
      List l = *a.list;
      l.insert(l.end(), b.list->begin(), b.list->end());
      return Value::new_list(std::move(l));
    }
    if (op == "*" && a.type == Value::Type::string && b.type == Value::Type::integer) {
      if (b.i > 0 && a.str.s.size() * std::size_t(b.i) > kOutputBytesMax) fail(e.pos, "string repetition too large");
      Str s;
      for (std::int64_t k = 0; k < b.i; ++k) s.append(a.str);
      return Value::string(std::move(s));
    }
    if (a.is_number() && b.is_number()) return arithmetic(op, a, b, e.pos);
    fail(e.pos, "unsupported operand types for " + op + ": '" + type_name(a) + "' and '" + type_name(b) + "'");
  }

  static Value arithmetic(const std::string& op, const Value& a, const Value& b, Pos pos) {
    const bool ints = a.type != Value::Type::real && b.type != Value::Type::real;
    const std::int64_t x = a.type == Value::Type::boolean ? a.b : a.i, y = b.type == Value::Type::boolean ? b.b : b.i;
    const double p = a.type == Value::Type::real ? a.d : double(x), q = b.type == Value::Type::real ? b.d : double(y);
    if (op == "<") return Value::boolean(p < q);
    if (op == ">") return Value::boolean(p > q);
    if (op == "<=") return Value::boolean(p <= q);
    if (op == ">=") return Value::boolean(p >= q);
    if ((op == "/" || op == "//" || op == "%") && q == 0) fail(pos, "division by zero");
    if (op == "/") return Value::real(p / q);
    if (ints) {
      if (op == "+") return Value::integer(x + y);
      if (op == "-") return Value::integer(x - y);
      if (op == "*") return Value::integer(x * y);
      if (op == "//") return Value::integer(x / y - ((x % y != 0) && ((x < 0) != (y < 0))));
      if (op == "%") return Value::integer(((x % y) + y) % y);
      if (op == "**" && y >= 0 && y < 64) {
        std::int64_t r = 1;
        for (std::int64_t k = 0; k < y; ++k) r *= x;
        return Value::integer(r);
      }
    }
    if (op == "+") return Value::real(p + q);
    if (op == "-") return Value::real(p - q);
    if (op == "*") return Value::real(p * q);
    if (op == "//") return Value::real(std::floor(p / q));
    if (op == "%") return Value::real(p - q * std::floor(p / q));
    if (op == "**") return Value::real(std::pow(p, q));
    fail(pos, "unsupported operator " + op);
  }

  Context& ctx_;
  Str& out_;
};

Value native(Function f) {
  Value v;
  v.type = Value::Type::function;
  v.fn = std::make_shared<Function>(std::move(f));
  return v;
}

}  // namespace

Template::Template(std::string_view source) : program_(parse(source)) {}
Template::~Template() = default;
Template::Template(Template&&) noexcept = default;
Template& Template::operator=(Template&&) noexcept = default;

RenderedChat Template::render_chat(std::span<const ChatMessage> messages, bool add_generation_prompt, const std::string& bos_token,
                                   const std::string& eos_token) const {
  Context ctx;
  ctx.scopes.emplace_back();
  auto& g = ctx.scopes.back();
  List list;
  for (const ChatMessage& m : messages)
    list.push_back(Value::new_dict({{"role", Value::data(m.role)}, {"content", Value::data(m.content)}}));
  g["messages"] = Value::new_list(std::move(list));
  g["add_generation_prompt"] = Value::boolean(add_generation_prompt);
  g["tools"] = Value::none();  // apply_chat_template passes tools and documents, None when absent
  g["documents"] = Value::none();
  g["bos_token"] = Value::markup(bos_token);
  g["eos_token"] = Value::markup(eos_token);
  g["raise_exception"] = native([](Context&, Args& args, Kwargs&, Pos) -> Value {
    throw JinjaError(args.empty() ? std::string("the template raised an exception") : to_str(args[0]).s, true);
  });
  g["namespace"] = native([](Context&, Args& args, Kwargs& kwargs, Pos pos) -> Value {
    Value ns = Value::new_dict();
    ns.type = Value::Type::ns;
    if (!args.empty()) {
      if (args[0].type != Value::Type::dict) fail(pos, "namespace() takes keyword arguments or a dict");
      *ns.dict = *args[0].dict;
    }
    for (auto& kv : kwargs) ns.dict->push_back(kv);
    return ns;
  });
  g["strftime_now"] = native([](Context&, Args& args, Kwargs&, Pos pos) -> Value {
    if (args.size() != 1 || args[0].type != Value::Type::string) fail(pos, "strftime_now(format) takes one string");
    const std::time_t now = std::time(nullptr);
    std::tm tm{};
    localtime_r(&now, &tm);
    char buf[256];
    const std::size_t n = std::strftime(buf, sizeof buf, args[0].str.s.c_str(), &tm);
    return Value::markup(std::string(buf, n));
  });
  Str out;
  Interpreter interp(ctx, out);
  try {
    interp.run(program_->body);
  } catch (const BreakLoop&) {
    throw JinjaError("{% break %} outside a loop");
  } catch (const ContinueLoop&) {
    throw JinjaError("{% continue %} outside a loop");
  }
  RenderedChat r;
  r.text = std::move(out.s);
  r.markup = std::move(out.markup);
  return r;
}

}  // namespace sluice::jinja

namespace sluice {

std::optional<RenderedChat> render_model_template(std::string_view jinja, std::span<const ChatMessage> messages,
                                                  bool add_generation_prompt, const std::string& bos_token,
                                                  const std::string& eos_token, std::string* reason) {
  try {
    const jinja::Template t(jinja);
    return t.render_chat(messages, add_generation_prompt, bos_token, eos_token);
  } catch (const jinja::JinjaError& e) {
    if (e.raised()) throw std::invalid_argument(std::string("the model's chat template refuses these messages: ") + e.what());
    if (reason) *reason = e.what();
  } catch (const std::bad_alloc&) {
    if (reason) *reason = "out of memory while rendering the template";
  }
  return std::nullopt;
}

}  // namespace sluice
