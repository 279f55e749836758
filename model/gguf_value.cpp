// GGUF metadata values (gguf.hpp): value-type traits, the Value factories, views and the
// consistency check the writer runs on values built by hand.
#include <bit>
#include <cstring>
#include <limits>
#include <type_traits>

#include <fmt/format.h>

#include "common/assert.hpp"
#include "model/gguf.hpp"

namespace sluice::gguf {

// Numeric arrays are kept as their file bytes and read with memcpy.
static_assert(std::endian::native == std::endian::little, "GGUF readers here assume a little-endian host");

std::string_view value_type_name(ValueType type) {
  switch (type) {
    case ValueType::u8: return "u8";
    case ValueType::i8: return "i8";
    case ValueType::u16: return "u16";
    case ValueType::i16: return "i16";
    case ValueType::u32: return "u32";
    case ValueType::i32: return "i32";
    case ValueType::f32: return "f32";
    case ValueType::boolean: return "bool";
    case ValueType::string: return "string";
    case ValueType::array: return "array";
    case ValueType::u64: return "u64";
    case ValueType::i64: return "i64";
    case ValueType::f64: return "f64";
  }
  return "unknown";
}

std::size_t value_type_bytes(ValueType type) {
  switch (type) {
    case ValueType::u8:
    case ValueType::i8:
    case ValueType::boolean: return 1;
    case ValueType::u16:
    case ValueType::i16: return 2;
    case ValueType::u32:
    case ValueType::i32:
    case ValueType::f32: return 4;
    case ValueType::u64:
    case ValueType::i64:
    case ValueType::f64: return 8;
    case ValueType::string:
    case ValueType::array: return 0;
  }
  return 0;
}

bool is_unsigned_type(ValueType type) {
  return type == ValueType::u8 || type == ValueType::u16 || type == ValueType::u32 || type == ValueType::u64;
}
bool is_signed_type(ValueType type) {
  return type == ValueType::i8 || type == ValueType::i16 || type == ValueType::i32 || type == ValueType::i64;
}
bool is_float_type(ValueType type) { return type == ValueType::f32 || type == ValueType::f64; }

namespace {

bool fits_unsigned(ValueType type, std::uint64_t v) {
  const std::size_t bits = value_type_bytes(type) * 8;
  return bits == 64 || v < (std::uint64_t{1} << bits);
}

bool fits_signed(ValueType type, std::int64_t v) {
  const std::size_t bits = value_type_bytes(type) * 8;
  if (bits == 64) return true;
  const std::int64_t max = (std::int64_t{1} << (bits - 1)) - 1;
  return v >= -max - 1 && v <= max;
}

template <typename T>
constexpr ValueType value_type_of() {
  if constexpr (std::is_same_v<T, std::uint8_t>) return ValueType::u8;
  if constexpr (std::is_same_v<T, std::int8_t>) return ValueType::i8;
  if constexpr (std::is_same_v<T, std::uint16_t>) return ValueType::u16;
  if constexpr (std::is_same_v<T, std::int16_t>) return ValueType::i16;
  if constexpr (std::is_same_v<T, std::uint32_t>) return ValueType::u32;
  if constexpr (std::is_same_v<T, std::int32_t>) return ValueType::i32;
  if constexpr (std::is_same_v<T, float>) return ValueType::f32;
  if constexpr (std::is_same_v<T, std::uint64_t>) return ValueType::u64;
  if constexpr (std::is_same_v<T, std::int64_t>) return ValueType::i64;
  if constexpr (std::is_same_v<T, double>) return ValueType::f64;
}

template <typename T>
T load(const std::byte* at) {
  T v;
  std::memcpy(&v, at, sizeof(T));
  return v;
}

// Element i of a numeric array's bytes, widened like scalars are.
std::variant<std::uint64_t, std::int64_t, double> element(ValueType type, const std::byte* bytes, std::size_t i) {
  switch (type) {
    case ValueType::u8: return std::uint64_t{load<std::uint8_t>(bytes + i)};
    case ValueType::u16: return std::uint64_t{load<std::uint16_t>(bytes + 2 * i)};
    case ValueType::u32: return std::uint64_t{load<std::uint32_t>(bytes + 4 * i)};
    case ValueType::u64: return load<std::uint64_t>(bytes + 8 * i);
    case ValueType::i8: return std::int64_t{load<std::int8_t>(bytes + i)};
    case ValueType::i16: return std::int64_t{load<std::int16_t>(bytes + 2 * i)};
    case ValueType::i32: return std::int64_t{load<std::int32_t>(bytes + 4 * i)};
    case ValueType::i64: return load<std::int64_t>(bytes + 8 * i);
    case ValueType::f32: return double{load<float>(bytes + 4 * i)};
    case ValueType::f64: return load<double>(bytes + 8 * i);
    default: break;
  }
  SLUICE_ASSERT_MSG(false, "element() called for a non-numeric array");
  return std::uint64_t{0};
}

std::string describe(const Value& v) {
  if (!v.is_array()) return std::string(value_type_name(v.type));
  return fmt::format("array of {}", value_type_name(v.array_type));
}

// invalid_reason() with the nesting depth of `v` (1 for a top-level array).
std::optional<std::string> check_value(const Value& v, std::uint32_t depth) {
  const auto wrong = [&] { return fmt::format("{} value holds the wrong kind of data", describe(v)); };
  switch (v.type) {
    case ValueType::u8:
    case ValueType::u16:
    case ValueType::u32:
    case ValueType::u64: {
      const auto* x = std::get_if<std::uint64_t>(&v.data);
      if (x == nullptr) return wrong();
      if (!fits_unsigned(v.type, *x)) return fmt::format("{} does not fit in {}", *x, value_type_name(v.type));
      return std::nullopt;
    }
    case ValueType::i8:
    case ValueType::i16:
    case ValueType::i32:
    case ValueType::i64: {
      const auto* x = std::get_if<std::int64_t>(&v.data);
      if (x == nullptr) return wrong();
      if (!fits_signed(v.type, *x)) return fmt::format("{} does not fit in {}", *x, value_type_name(v.type));
      return std::nullopt;
    }
    case ValueType::f32:
    case ValueType::f64:
      if (!std::holds_alternative<double>(v.data)) return wrong();
      return std::nullopt;
    case ValueType::boolean:
      if (!std::holds_alternative<bool>(v.data)) return wrong();
      return std::nullopt;
    case ValueType::string:
      if (!std::holds_alternative<std::string>(v.data)) return wrong();
      return std::nullopt;
    case ValueType::array:
      break;
    default:
      return fmt::format("unknown value type {}", static_cast<std::uint32_t>(v.type));
  }
  if (depth > kMaxArrayNesting) return fmt::format("arrays nested deeper than {}", kMaxArrayNesting);
  if (v.array_type == ValueType::string) {
    if (!std::holds_alternative<Value::Strings>(v.data)) return wrong();
    return std::nullopt;
  }
  if (v.array_type == ValueType::array) {
    const auto* elements = std::get_if<Value::Arrays>(&v.data);
    if (elements == nullptr) return wrong();
    for (const Value& e : *elements) {
      if (!e.is_array()) return fmt::format("array of arrays holds a {}", describe(e));
      if (auto why = check_value(e, depth + 1)) return why;
    }
    return std::nullopt;
  }
  const std::size_t width = value_type_bytes(v.array_type);
  if (width == 0) return fmt::format("unknown array element type {}", static_cast<std::uint32_t>(v.array_type));
  const auto* bytes = std::get_if<Value::Bytes>(&v.data);
  if (bytes == nullptr) return wrong();
  if (bytes->size() % width != 0) {
    return fmt::format("{} bytes are not a whole number of {} elements", bytes->size(), value_type_name(v.array_type));
  }
  if (v.array_type == ValueType::boolean) {
    for (std::byte b : *bytes) {
      if (b != std::byte{0} && b != std::byte{1}) {
        return fmt::format("bool element {} is neither 0 nor 1", static_cast<unsigned>(b));
      }
    }
  }
  return std::nullopt;
}

}  // namespace

Value Value::unsigned_int(ValueType type, std::uint64_t v) {
  SLUICE_ASSERT_MSG(is_unsigned_type(type) && fits_unsigned(type, v), "unsigned_int: not an unsigned type or out of range");
  return Value{type, ValueType::u8, v};
}

Value Value::signed_int(ValueType type, std::int64_t v) {
  SLUICE_ASSERT_MSG(is_signed_type(type) && fits_signed(type, v), "signed_int: not a signed type or out of range");
  return Value{type, ValueType::u8, v};
}

Value Value::f32(float v) { return Value{ValueType::f32, ValueType::u8, double{v}}; }
Value Value::f64(double v) { return Value{ValueType::f64, ValueType::u8, v}; }
Value Value::boolean(bool v) { return Value{ValueType::boolean, ValueType::u8, v}; }
Value Value::string(std::string v) { return Value{ValueType::string, ValueType::u8, std::move(v)}; }

template <typename T>
Value Value::array(std::span<const T> elements) {
  Bytes bytes(elements.size_bytes());
  if (!bytes.empty()) std::memcpy(bytes.data(), elements.data(), bytes.size());
  return Value{ValueType::array, value_type_of<T>(), std::move(bytes)};
}
template Value Value::array<std::uint8_t>(std::span<const std::uint8_t>);
template Value Value::array<std::int8_t>(std::span<const std::int8_t>);
template Value Value::array<std::uint16_t>(std::span<const std::uint16_t>);
template Value Value::array<std::int16_t>(std::span<const std::int16_t>);
template Value Value::array<std::uint32_t>(std::span<const std::uint32_t>);
template Value Value::array<std::int32_t>(std::span<const std::int32_t>);
template Value Value::array<float>(std::span<const float>);
template Value Value::array<std::uint64_t>(std::span<const std::uint64_t>);
template Value Value::array<std::int64_t>(std::span<const std::int64_t>);
template Value Value::array<double>(std::span<const double>);

Value Value::bool_array(const std::vector<bool>& elements) {
  Bytes bytes(elements.size());
  for (std::size_t i = 0; i < elements.size(); ++i) bytes[i] = std::byte{elements[i] ? std::uint8_t{1} : std::uint8_t{0}};
  return Value{ValueType::array, ValueType::boolean, std::move(bytes)};
}

Value Value::string_array(std::vector<std::string> elements) {
  return Value{ValueType::array, ValueType::string, std::move(elements)};
}

Value Value::array_of_arrays(std::vector<Value> elements) {
  for (const Value& e : elements) SLUICE_ASSERT_MSG(e.is_array(), "array_of_arrays: an element is not an array");
  return Value{ValueType::array, ValueType::array, std::move(elements)};
}

Value Value::raw_array(ValueType element_type, Bytes bytes) {
  const std::size_t width = value_type_bytes(element_type);
  SLUICE_ASSERT_MSG(width != 0 && bytes.size() % width == 0, "raw_array: not a fixed-width type or a partial element");
  return Value{ValueType::array, element_type, std::move(bytes)};
}

std::uint64_t Value::array_size() const {
  if (!is_array()) return 0;
  if (const auto* s = std::get_if<Strings>(&data)) return s->size();
  if (const auto* a = std::get_if<Arrays>(&data)) return a->size();
  if (const auto* b = std::get_if<Bytes>(&data)) {
    const std::size_t width = value_type_bytes(array_type);
    return width == 0 ? 0 : b->size() / width;
  }
  return 0;
}

std::optional<std::uint64_t> Value::as_uint() const {
  if (is_unsigned_type(type)) {
    if (const auto* v = std::get_if<std::uint64_t>(&data)) return *v;
  }
  if (is_signed_type(type)) {
    if (const auto* v = std::get_if<std::int64_t>(&data); v != nullptr && *v >= 0) return static_cast<std::uint64_t>(*v);
  }
  return std::nullopt;
}

std::optional<std::int64_t> Value::as_int() const {
  if (is_signed_type(type)) {
    if (const auto* v = std::get_if<std::int64_t>(&data)) return *v;
  }
  if (is_unsigned_type(type)) {
    const auto* v = std::get_if<std::uint64_t>(&data);
    if (v != nullptr && *v <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
      return static_cast<std::int64_t>(*v);
    }
  }
  return std::nullopt;
}

std::optional<double> Value::as_float() const {
  if (is_float_type(type)) {
    if (const auto* v = std::get_if<double>(&data)) return *v;
  }
  if (is_unsigned_type(type)) {
    if (const auto* v = std::get_if<std::uint64_t>(&data)) return static_cast<double>(*v);
  }
  if (is_signed_type(type)) {
    if (const auto* v = std::get_if<std::int64_t>(&data)) return static_cast<double>(*v);
  }
  return std::nullopt;
}

std::optional<bool> Value::as_bool() const {
  if (type != ValueType::boolean) return std::nullopt;
  if (const auto* v = std::get_if<bool>(&data)) return *v;
  return std::nullopt;
}

const std::string* Value::as_string() const {
  return type == ValueType::string ? std::get_if<std::string>(&data) : nullptr;
}

const Value::Strings* Value::strings() const {
  static const Strings kEmpty;
  if (!is_array()) return nullptr;
  if (array_type == ValueType::string) return std::get_if<Strings>(&data);
  return array_size() == 0 ? &kEmpty : nullptr;
}

const Value::Arrays* Value::arrays() const {
  static const Arrays kEmpty;
  if (!is_array()) return nullptr;
  if (array_type == ValueType::array) return std::get_if<Arrays>(&data);
  return array_size() == 0 ? &kEmpty : nullptr;
}

const Value::Bytes* Value::array_bytes() const {
  static const Bytes kEmpty;
  if (!is_array()) return nullptr;
  if (const auto* b = std::get_if<Bytes>(&data)) return b;
  return array_size() == 0 ? &kEmpty : nullptr;
}

std::optional<std::vector<double>> Value::float_elements() const {
  if (!is_array()) return std::nullopt;
  if (array_size() == 0) return std::vector<double>{};
  const auto* bytes = std::get_if<Bytes>(&data);
  if (bytes == nullptr || array_type == ValueType::boolean) return std::nullopt;
  std::vector<double> out(array_size());
  for (std::size_t i = 0; i < out.size(); ++i) {
    std::visit([&](auto x) { out[i] = static_cast<double>(x); }, element(array_type, bytes->data(), i));
  }
  return out;
}

std::optional<std::vector<std::int64_t>> Value::int_elements() const {
  if (!is_array()) return std::nullopt;
  if (array_size() == 0) return std::vector<std::int64_t>{};
  const auto* bytes = std::get_if<Bytes>(&data);
  if (bytes == nullptr || !(is_signed_type(array_type) || is_unsigned_type(array_type))) return std::nullopt;
  std::vector<std::int64_t> out(array_size());
  for (std::size_t i = 0; i < out.size(); ++i) {
    const auto e = element(array_type, bytes->data(), i);
    if (const auto* u = std::get_if<std::uint64_t>(&e)) {
      if (*u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) return std::nullopt;
      out[i] = static_cast<std::int64_t>(*u);
    } else {
      out[i] = std::get<std::int64_t>(e);
    }
  }
  return out;
}

std::optional<std::vector<std::uint64_t>> Value::uint_elements() const {
  if (!is_array()) return std::nullopt;
  if (array_size() == 0) return std::vector<std::uint64_t>{};
  const auto* bytes = std::get_if<Bytes>(&data);
  if (bytes == nullptr || !(is_signed_type(array_type) || is_unsigned_type(array_type))) return std::nullopt;
  std::vector<std::uint64_t> out(array_size());
  for (std::size_t i = 0; i < out.size(); ++i) {
    const auto e = element(array_type, bytes->data(), i);
    if (const auto* s = std::get_if<std::int64_t>(&e)) {
      if (*s < 0) return std::nullopt;
      out[i] = static_cast<std::uint64_t>(*s);
    } else {
      out[i] = std::get<std::uint64_t>(e);
    }
  }
  return out;
}

std::optional<std::string> Value::invalid_reason() const { return check_value(*this, is_array() ? 1 : 0); }

}  // namespace sluice::gguf
