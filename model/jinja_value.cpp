// model/jinja_value.cpp: Jinja values (model/jinja_ast.hpp) as Python sees them: truth, equality,
// str() and repr(), JSON; and strings that keep which of their bytes the template wrote.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

#include "model/jinja_ast.hpp"

namespace sluice::jinja {

Str Str::of_markup(std::string text) {
  Str s;
  s.s = std::move(text);
  if (!s.s.empty()) s.markup.emplace_back(0, s.s.size());
  return s;
}
Str Str::of_data(std::string text) {
  Str s;
  s.s = std::move(text);
  return s;
}
void Str::append_markup(std::string_view text) {
  if (text.empty()) return;
  const std::size_t at = s.size();
  s += text;
  if (!markup.empty() && markup.back().first + markup.back().second == at) {
    markup.back().second += text.size();
  } else {
    markup.emplace_back(at, text.size());
  }
}
void Str::append_data(std::string_view text) { s += text; }
void Str::append(const Str& other) {
  const std::size_t base = s.size();
  s += other.s;
  for (const auto& [off, len] : other.markup) {
    if (!markup.empty() && markup.back().first + markup.back().second == base + off) {
      markup.back().second += len;
    } else {
      markup.emplace_back(base + off, len);
    }
  }
}
Str Str::substr(std::size_t pos, std::size_t n) const {
  Str out;
  if (pos >= s.size()) return out;
  n = std::min(n, s.size() - pos);
  out.s = s.substr(pos, n);
  for (const auto& [off, len] : markup) {
    const std::size_t lo = std::max(off, pos), hi = std::min(off + len, pos + n);
    if (lo < hi) out.markup.emplace_back(lo - pos, hi - lo);
  }
  return out;
}
bool Str::all_markup() const { return s.empty() || (markup.size() == 1 && markup[0].second == s.size()); }

Value Value::undefined(std::string what) {
  Value v;
  v.name = std::move(what);
  return v;
}
Value Value::none() {
  Value v;
  v.type = Type::none;
  return v;
}
Value Value::boolean(bool x) {
  Value v;
  v.type = Type::boolean;
  v.b = x;
  return v;
}
Value Value::integer(std::int64_t x) {
  Value v;
  v.type = Type::integer;
  v.i = x;
  return v;
}
Value Value::real(double x) {
  Value v;
  v.type = Type::real;
  v.d = x;
  return v;
}
Value Value::string(Str x) {
  Value v;
  v.type = Type::string;
  v.str = std::move(x);
  return v;
}
Value Value::new_list(List x) {
  Value v;
  v.type = Type::list;
  v.list = std::make_shared<List>(std::move(x));
  return v;
}
Value Value::new_dict(Dict x) {
  Value v;
  v.type = Type::dict;
  v.dict = std::make_shared<Dict>(std::move(x));
  return v;
}
const Value* Value::find(std::string_view key) const {
  if ((type != Type::dict && type != Type::ns) || !dict) return nullptr;
  for (const auto& [k, v] : *dict)
    if (k == key) return &v;
  return nullptr;
}

bool truthy(const Value& v) {
  switch (v.type) {
    case Value::Type::undefined:
    case Value::Type::none: return false;
    case Value::Type::boolean: return v.b;
    case Value::Type::integer: return v.i != 0;
    case Value::Type::real: return v.d != 0;
    case Value::Type::string: return !v.str.s.empty();
    case Value::Type::list: return !v.list->empty();
    case Value::Type::dict: return !v.dict->empty();
    case Value::Type::ns:
    case Value::Type::function: return true;
  }
  return false;
}

namespace {
double number(const Value& v) { return v.type == Value::Type::real ? v.d : v.type == Value::Type::boolean ? v.b : double(v.i); }

// Python's repr of a float: the shortest text that reads back the same, exponent outside 1e-4..1e16.
std::string float_repr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d < 0 ? "-inf" : "inf";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, d);  // shortest round trip
  std::string s(buf, end);
  const std::size_t e = s.find('e');
  int exp10 = 0;
  std::string digits = s;
  if (e != std::string::npos) {
    exp10 = std::stoi(s.substr(e + 1));
    digits = s.substr(0, e);
  }
  // Recompute the decimal exponent of the leading digit to pick Python's notation.
  const double a = std::fabs(d);
  const int lead = a == 0 ? 0 : static_cast<int>(std::floor(std::log10(a)));
  if (a != 0 && (lead < -4 || lead >= 16)) {
    std::snprintf(buf, sizeof buf, "%.17g", d);
    for (int prec = 1; prec <= 17; ++prec) {
      std::snprintf(buf, sizeof buf, "%.*e", prec - 1, d);
      if (std::strtod(buf, nullptr) == d) break;
    }
    std::string r(buf);  // d.ddde+XX: Python writes e+16, e-05 alike
    return r;
  }
  (void)exp10;
  if (s.find('.') == std::string::npos && e == std::string::npos) s += ".0";
  if (e != std::string::npos) {  // to_chars chose an exponent Python would not: print fixed
    std::snprintf(buf, sizeof buf, "%.17f", d);
    for (int prec = 1; prec <= 17; ++prec) {
      std::snprintf(buf, sizeof buf, "%.*f", prec, d);
      if (std::strtod(buf, nullptr) == d) break;
    }
    s = buf;
  }
  return s;
}

std::string quote_repr(const std::string& s) {
  const char q = s.find('\'') != std::string::npos && s.find('"') == std::string::npos ? '"' : '\'';
  std::string out(1, q);
  for (const unsigned char c : s) {
    if (c == '\\') out += "\\\\";
    else if (c == static_cast<unsigned char>(q)) out += std::string("\\") + q;
    else if (c == '\n') out += "\\n";
    else if (c == '\r') out += "\\r";
    else if (c == '\t') out += "\\t";
    else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else out += static_cast<char>(c);
  }
  return out + q;
}
}  // namespace

std::string repr(const Value& v) {
  switch (v.type) {
    case Value::Type::string: return quote_repr(v.str.s);
    case Value::Type::list: {
      std::string out = "[";
      for (std::size_t k = 0; k < v.list->size(); ++k) out += (k ? ", " : "") + repr((*v.list)[k]);
      return out + "]";
    }
    case Value::Type::dict: {
      std::string out = "{";
      bool first = true;
      for (const auto& [k, x] : *v.dict) {
        out += (first ? "" : ", ") + quote_repr(k) + ": " + repr(x);
        first = false;
      }
      return out + "}";
    }
    default: return to_str(v).s;
  }
}

Str to_str(const Value& v) {
  switch (v.type) {
    case Value::Type::undefined: return {};
    case Value::Type::none: return Str::of_data("None");
    case Value::Type::boolean: return Str::of_data(v.b ? "True" : "False");
    case Value::Type::integer: return Str::of_data(std::to_string(v.i));
    case Value::Type::real: return Str::of_data(float_repr(v.d));
    case Value::Type::string: return v.str;
    case Value::Type::list:
    case Value::Type::dict: return Str::of_data(repr(v));
    case Value::Type::ns: return Str::of_data("<Namespace>");
    case Value::Type::function: return Str::of_data("<function>");
  }
  return {};
}

bool equal(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.type != Value::Type::real && b.type != Value::Type::real) return number(a) == number(b) && (a.type == Value::Type::boolean ? a.b : a.i) == (b.type == Value::Type::boolean ? b.b : b.i);
    return number(a) == number(b);
  }
  if (a.type != b.type) return false;
  switch (a.type) {
    case Value::Type::undefined:
    case Value::Type::none: return true;
    case Value::Type::string: return a.str.s == b.str.s;
    case Value::Type::list:
      if (a.list->size() != b.list->size()) return false;
      for (std::size_t k = 0; k < a.list->size(); ++k)
        if (!equal((*a.list)[k], (*b.list)[k])) return false;
      return true;
    case Value::Type::dict:
      if (a.dict->size() != b.dict->size()) return false;
      for (const auto& [k, x] : *a.dict) {
        const Value* y = b.find(k);
        if (!y || !equal(x, *y)) return false;
      }
      return true;
    default: return a.dict == b.dict && a.fn == b.fn;
  }
}

std::string type_name(const Value& v) {
  switch (v.type) {
    case Value::Type::undefined: return "Undefined";
    case Value::Type::none: return "NoneType";
    case Value::Type::boolean: return "bool";
    case Value::Type::integer: return "int";
    case Value::Type::real: return "float";
    case Value::Type::string: return "str";
    case Value::Type::list: return "list";
    case Value::Type::dict: return "dict";
    case Value::Type::ns: return "Namespace";
    case Value::Type::function: return "function";
  }
  return "?";
}

namespace {
std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (const unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}
}  // namespace

std::string to_json(const Value& v, int indent, int depth) {
  if (depth > 100) throw JinjaError("tojson: nested more than 100 deep");
  // A newline then the indent, built in place ("\n" + std::string&& trips GCC 12's -Wrestrict, PR105329).
  auto newline_indent = [&](int levels) {
    std::string s(1 + std::size_t(indent) * std::size_t(levels), ' ');
    s[0] = '\n';
    return s;
  };
  const std::string nl = indent >= 0 ? newline_indent(depth + 1) : "";
  const std::string close = indent >= 0 ? newline_indent(depth) : "";
  const std::string sep = indent >= 0 ? "," : ", ";
  switch (v.type) {
    case Value::Type::none:
    case Value::Type::undefined: return "null";
    case Value::Type::boolean: return v.b ? "true" : "false";
    case Value::Type::integer: return std::to_string(v.i);
    case Value::Type::real: return std::isfinite(v.d) ? float_repr(v.d) : std::isnan(v.d) ? "NaN" : v.d < 0 ? "-Infinity" : "Infinity";
    case Value::Type::string: return json_string(v.str.s);
    case Value::Type::list: {
      if (v.list->empty()) return "[]";
      std::string out = "[";
      for (std::size_t k = 0; k < v.list->size(); ++k) out += (k ? sep : "") + nl + to_json((*v.list)[k], indent, depth + 1);
      return out + close + "]";
    }
    case Value::Type::dict:
    case Value::Type::ns: {
      if (v.dict->empty()) return "{}";
      std::string out = "{";
      bool first = true;
      for (const auto& [k, x] : *v.dict) {
        out += (first ? "" : sep) + nl + json_string(k) + ": " + to_json(x, indent, depth + 1);
        first = false;
      }
      return out + close + "}";
    }
    case Value::Type::function: throw JinjaError("tojson: a function is not JSON serializable");
  }
  return "null";
}

}  // namespace sluice::jinja
