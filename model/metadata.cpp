// Metadata views over GGUF files and pack manifests, and the GGUF -> JSON conversion the pack
// converter stores in a manifest.
#include "model/metadata.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "model/gguf.hpp"

namespace sluice {
namespace {

class GgufMetadata final : public Metadata {
 public:
  explicit GgufMetadata(const gguf::File& file) : file_(file) {}
  std::string source() const override { return file_.path(); }
  std::optional<std::string> get_string(std::string_view key) const override { return file_.get_string(key); }
  std::optional<std::uint64_t> get_uint(std::string_view key) const override { return file_.get_uint(key); }
  std::optional<double> get_float(std::string_view key) const override { return file_.get_float(key); }
  std::optional<bool> get_bool(std::string_view key) const override { return file_.get_bool(key); }
  std::optional<std::vector<std::string>> get_string_array(std::string_view key) const override {
    const auto* strings = file_.get_string_array(key);
    if (!strings) return std::nullopt;
    return *strings;
  }
  std::optional<std::vector<float>> get_float_array(std::string_view key) const override { return file_.get_float_array(key); }
  std::optional<std::vector<std::int64_t>> get_int_array(std::string_view key) const override { return file_.get_int_array(key); }

 private:
  const gguf::File& file_;
};

// Like the GGUF getters, scalars: nullopt for an absent key; a present key whose value is not
// of the kind asked for (a NaN the manifest stored as null, a negative count) throws naming it.
// Arrays of the wrong kind read as absent, as before (a vocabulary's scores may hold an
// infinity, which JSON stores as null; the tokenizer then does without them).
class JsonMetadata final : public Metadata {
 public:
  JsonMetadata(const nlohmann::json& json, std::string source) : json_(json), source_(std::move(source)) {}
  std::string source() const override { return source_; }
  std::optional<std::string> get_string(std::string_view key) const override {
    const auto* v = find(key);
    if (!v) return std::nullopt;
    if (!v->is_string()) fail(key, *v, "a string");
    return v->get<std::string>();
  }
  std::optional<std::uint64_t> get_uint(std::string_view key) const override {
    const auto* v = find(key);
    if (!v) return std::nullopt;
    if (!(v->is_number_unsigned() || (v->is_number_integer() && v->get<std::int64_t>() >= 0))) {
      fail(key, *v, "a non-negative integer");
    }
    return v->get<std::uint64_t>();
  }
  std::optional<double> get_float(std::string_view key) const override {
    const auto* v = find(key);
    if (!v) return std::nullopt;
    if (!v->is_number()) fail(key, *v, "a number");
    return v->get<double>();
  }
  std::optional<bool> get_bool(std::string_view key) const override {
    const auto* v = find(key);
    if (!v) return std::nullopt;
    if (!v->is_boolean()) fail(key, *v, "a bool");
    return v->get<bool>();
  }
  std::optional<std::vector<std::string>> get_string_array(std::string_view key) const override {
    const auto* v = find(key);
    if (!v || !v->is_array()) return std::nullopt;
    std::vector<std::string> out;
    out.reserve(v->size());
    for (const auto& e : *v) {
      if (!e.is_string()) return std::nullopt;
      out.push_back(e.get<std::string>());
    }
    return out;
  }
  std::optional<std::vector<float>> get_float_array(std::string_view key) const override {
    const auto* v = find(key);
    if (!v || !v->is_array()) return std::nullopt;
    std::vector<float> out;
    out.reserve(v->size());
    for (const auto& e : *v) {
      if (!e.is_number()) return std::nullopt;
      out.push_back(e.get<float>());
    }
    return out;
  }
  std::optional<std::vector<std::int64_t>> get_int_array(std::string_view key) const override {
    const auto* v = find(key);
    if (!v || !v->is_array()) return std::nullopt;
    std::vector<std::int64_t> out;
    out.reserve(v->size());
    for (const auto& e : *v) {
      if (!e.is_number_integer()) return std::nullopt;
      out.push_back(e.get<std::int64_t>());
    }
    return out;
  }

 private:
  const nlohmann::json* find(std::string_view key) const {
    auto it = json_.find(std::string(key));
    return it == json_.end() ? nullptr : &*it;
  }
  [[noreturn]] void fail(std::string_view key, const nlohmann::json& value, std::string_view wanted) const {
    // A short rendering: the value may be a 262k-entry array.
    constexpr std::size_t kShownChars = 40;
    std::string text = value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    if (text.size() > kShownChars) text = text.substr(0, kShownChars) + "...";
    throw std::runtime_error(fmt::format("{}: {} = {}: cannot be read as {}", source_, key, text, wanted));
  }
  const nlohmann::json& json_;
  std::string source_;
};

nlohmann::json value_to_json(const gguf::Value& v) {
  using gguf::ValueType;
  if (!v.is_array()) {
    switch (v.type) {
      case ValueType::string: return *v.as_string();
      case ValueType::boolean: return *v.as_bool();
      case ValueType::f32:
      case ValueType::f64: return *v.as_float();
      case ValueType::i8:
      case ValueType::i16:
      case ValueType::i32:
      case ValueType::i64: return *v.as_int();
      default: return *v.as_uint();
    }
  }
  if (const auto* strings = v.strings()) return *strings;
  if (const auto* arrays = v.arrays()) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& a : *arrays) out.push_back(value_to_json(a));
    return out;
  }
  switch (v.array_type) {
    case ValueType::f32:
    case ValueType::f64: return *v.float_elements();
    case ValueType::boolean: {
      nlohmann::json out = nlohmann::json::array();
      for (std::byte b : *v.array_bytes()) out.push_back(b != std::byte{0});
      return out;
    }
    case ValueType::i8:
    case ValueType::i16:
    case ValueType::i32:
    case ValueType::i64: return *v.int_elements();
    default: return *v.uint_elements();
  }
}

}  // namespace

std::unique_ptr<Metadata> metadata_of(const gguf::File& file) { return std::make_unique<GgufMetadata>(file); }

std::unique_ptr<Metadata> metadata_of(const nlohmann::json& json, std::string source) {
  return std::make_unique<JsonMetadata>(json, std::move(source));
}

nlohmann::json metadata_to_json(const gguf::File& file) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [key, value] : file.metadata()) out[key] = value_to_json(value);
  return out;
}

}  // namespace sluice
