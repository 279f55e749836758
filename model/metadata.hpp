// Read-only access to a model's key/value metadata, whether it comes from a GGUF file or from a
// pack's manifest (which carries the GGUF's metadata as JSON). The architecture config and the
// tokenizer are built from this view, so both file kinds load through one path.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace sluice {

namespace gguf {
class File;
}

class Metadata {
 public:
  virtual ~Metadata() = default;
  virtual std::string source() const = 0;  // file path, for error messages
  virtual std::optional<std::string> get_string(std::string_view key) const = 0;
  virtual std::optional<std::uint64_t> get_uint(std::string_view key) const = 0;
  virtual std::optional<double> get_float(std::string_view key) const = 0;
  virtual std::optional<bool> get_bool(std::string_view key) const = 0;
  virtual std::optional<std::vector<std::string>> get_string_array(std::string_view key) const = 0;
  virtual std::optional<std::vector<float>> get_float_array(std::string_view key) const = 0;
  virtual std::optional<std::vector<std::int64_t>> get_int_array(std::string_view key) const = 0;

  // Required values: throw std::runtime_error naming the source and the key when absent.
  std::string require_string(std::string_view key) const;
  std::uint64_t require_uint(std::string_view key) const;
};

// A view over a GGUF file's metadata (the File must outlive it).
std::unique_ptr<Metadata> metadata_of(const gguf::File& file);
// A view over a JSON object mapping GGUF keys to values (pack manifests); `json` must outlive it.
std::unique_ptr<Metadata> metadata_of(const nlohmann::json& json, std::string source);
// The GGUF's whole metadata as a JSON object, for a pack's manifest (arrays kept as arrays).
nlohmann::json metadata_to_json(const gguf::File& file);

}  // namespace sluice
