// tests/model/mini_gguf_vocab.hpp: a minimal GGUF metadata reader for the tokenizer tests. It
// reads the key/value section only (tensor infos and data are never touched) and fills a
// sluice::tok::Vocab from the tokenizer.ggml.* keys, so the tests do not depend on the model
// library. Layout read (little-endian, GGUF v2/v3):
//   1. magic "GGUF", u32 version, u64 tensor count, u64 key/value count
//   2. per key/value: string key, u32 type, value; string = u64 length + bytes;
//      array = u32 element type + u64 count + elements
#pragma once

#include <cstdint>
#include <fstream>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "model/tokenizer.hpp"

namespace sluice::tok::testing {

class MiniGgufReader {
 public:
  explicit MiniGgufReader(const std::string& path) : in_(path, std::ios::binary), path_(path) {
    if (!in_) fail("cannot open");
  }

  // Reads every key/value and keeps the tokenizer ones in `vocab`.
  Vocab read_vocab() {
    constexpr std::uint32_t kMagic = 0x46554747;  // "GGUF" read as little-endian u32
    constexpr std::uint32_t kMinVersion = 2;
    constexpr std::uint64_t kMaxKeyValues = 1 << 20;
    if (read_pod<std::uint32_t>() != kMagic) fail("bad magic");
    if (read_pod<std::uint32_t>() < kMinVersion) fail("GGUF version < 2 not supported");
    read_pod<std::uint64_t>();  // tensor count
    const auto n_kv = read_pod<std::uint64_t>();
    if (n_kv > kMaxKeyValues) fail("too many key/values");
    Vocab vocab;
    for (std::uint64_t i = 0; i < n_kv; ++i) {
      const std::string key = read_string();
      const auto type = read_pod<std::uint32_t>();
      if (key == "tokenizer.ggml.model") vocab.model = read_string_value(type, key);
      else if (key == "tokenizer.ggml.pre") vocab.pre = read_string_value(type, key);
      else if (key == "tokenizer.ggml.tokens") vocab.tokens = read_string_array(type, key);
      else if (key == "tokenizer.ggml.merges") vocab.merges = read_string_array(type, key);
      else if (key == "tokenizer.ggml.scores") vocab.scores = read_number_array<float>(type, key);
      else if (key == "tokenizer.ggml.token_type") vocab.types = read_number_array<std::int32_t>(type, key);
      else if (key == "tokenizer.ggml.bos_token_id") vocab.bos = read_id(type);
      else if (key == "tokenizer.ggml.eos_token_id") vocab.eos = read_id(type);
      else if (key == "tokenizer.ggml.unknown_token_id") vocab.unk = read_id(type);
      else if (key == "tokenizer.ggml.padding_token_id") vocab.pad = read_id(type);
      else if (key == "tokenizer.ggml.eot_token_id") vocab.eot = read_id(type);
      else if (key == "tokenizer.ggml.add_bos_token") vocab.add_bos = read_bool(type);
      else if (key == "tokenizer.ggml.add_eos_token") vocab.add_eos = read_bool(type);
      else if (key == "tokenizer.ggml.add_space_prefix") vocab.add_space_prefix = read_bool(type);
      else skip_value(type);
    }
    return vocab;
  }

 private:
  enum Type : std::uint32_t { kU8, kI8, kU16, kI16, kU32, kI32, kF32, kBool, kString, kArray, kU64, kI64, kF64 };
  static constexpr std::uint64_t kMaxStringBytes = 1 << 24;  // chat templates can be large
  static constexpr std::uint64_t kMaxArrayCount = 1 << 26;

  [[noreturn]] void fail(const std::string& why) const { throw std::runtime_error(path_ + ": " + why); }

  template <typename T>
  T read_pod() {
    T v{};
    if (!in_.read(reinterpret_cast<char*>(&v), sizeof(T))) fail("truncated");
    return v;
  }

  std::string read_string() {
    const auto n = read_pod<std::uint64_t>();
    if (n > kMaxStringBytes) fail("string too long");
    std::string s(n, '\0');
    if (n > 0 && !in_.read(s.data(), static_cast<std::streamsize>(n))) fail("truncated string");
    return s;
  }

  static std::uint64_t scalar_size(std::uint32_t type) {
    switch (type) {
      case kU8: case kI8: case kBool: return 1;
      case kU16: case kI16: return 2;
      case kU32: case kI32: case kF32: return 4;
      case kU64: case kI64: case kF64: return 8;
      default: return 0;
    }
  }

  void skip_value(std::uint32_t type) {
    if (type == kString) {
      read_string();
    } else if (type == kArray) {
      const auto elem = read_pod<std::uint32_t>();
      const auto n = read_pod<std::uint64_t>();
      if (n > kMaxArrayCount) fail("array too long");
      for (std::uint64_t i = 0; i < n; ++i) skip_value(elem);
    } else if (const std::uint64_t size = scalar_size(type)) {
      in_.seekg(static_cast<std::streamoff>(size), std::ios::cur);
    } else {
      fail("unknown value type " + std::to_string(type));
    }
  }

  std::string read_string_value(std::uint32_t type, const std::string& key) {
    if (type != kString) fail(key + " is not a string");
    return read_string();
  }

  std::vector<std::string> read_string_array(std::uint32_t type, const std::string& key) {
    if (type != kArray || read_pod<std::uint32_t>() != kString) fail(key + " is not a string array");
    const auto n = read_pod<std::uint64_t>();
    if (n > kMaxArrayCount) fail(key + " too long");
    std::vector<std::string> out(n);
    for (auto& s : out) s = read_string();
    return out;
  }

  template <typename T>
  std::vector<T> read_number_array(std::uint32_t type, const std::string& key) {
    if (type != kArray) fail(key + " is not an array");
    const auto elem = read_pod<std::uint32_t>();
    const auto n = read_pod<std::uint64_t>();
    if (n > kMaxArrayCount) fail(key + " too long");
    std::vector<T> out(n);
    for (auto& v : out) {
      if (elem == kF32) v = static_cast<T>(read_pod<float>());
      else if (elem == kI32) v = static_cast<T>(read_pod<std::int32_t>());
      else fail(key + " has an unexpected element type");
    }
    return out;
  }

  // Special ids are u32 in practice; values that do not fit an int32 id (0xFFFFFFFF is used
  // for "none") become -1.
  std::int32_t read_id(std::uint32_t type) {
    std::int64_t v = -1;
    if (type == kU32) v = read_pod<std::uint32_t>();
    else if (type == kI32) v = read_pod<std::int32_t>();
    else if (type == kU64) v = static_cast<std::int64_t>(read_pod<std::uint64_t>() & 0x7FFFFFFF'FFFFFFFF);
    else if (type == kI64) v = read_pod<std::int64_t>();
    else skip_value(type);
    return (v >= 0 && v <= INT32_MAX) ? static_cast<std::int32_t>(v) : -1;
  }

  std::optional<bool> read_bool(std::uint32_t type) {
    if (type != kBool) {
      skip_value(type);
      return std::nullopt;
    }
    return read_pod<std::uint8_t>() != 0;
  }

  std::ifstream in_;
  std::string path_;
};

inline Vocab load_gguf_vocab(const std::string& path) { return MiniGgufReader(path).read_vocab(); }

}  // namespace sluice::tok::testing
