// Helpers shared by the GGUF tests: a hand encoder for GGUF files (so tests can write v2 files
// and every kind of corruption the Writer refuses to produce), the sample file the round-trip,
// interop and fuzz tests start from, and where the real test model lives.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "model/ggml_types.hpp"
#include "model/gguf.hpp"
#include "tests/model/pack_test_util.hpp"

namespace sluice::gguf::testing {

using pack::testing::random_bytes;
using pack::testing::read_file;
using pack::testing::TempDir;
using pack::testing::write_file;

// Little-endian byte appender.
struct Bytes {
  std::vector<std::byte> out;

  template <typename T>
  Bytes& put(T v) {
    const std::size_t at = out.size();
    out.resize(at + sizeof(T));
    std::memcpy(out.data() + at, &v, sizeof(T));
    return *this;
  }
  Bytes& u32(std::uint32_t v) { return put(v); }
  Bytes& u64(std::uint64_t v) { return put(v); }
  Bytes& raw(std::string_view s) {
    for (char c : s) out.push_back(static_cast<std::byte>(c));
    return *this;
  }
  Bytes& str(std::string_view s) { return u64(s.size()).raw(s); }
  Bytes& append(const std::vector<std::byte>& b) {
    out.insert(out.end(), b.begin(), b.end());
    return *this;
  }
  Bytes& pad_to(std::uint64_t alignment) {
    out.resize((out.size() + alignment - 1) / alignment * alignment, std::byte{0});
    return *this;
  }
};

// One key-value pair as it will be encoded: the key, the type id and the encoded value.
struct SpecKv {
  std::string key;
  std::uint32_t type = 0;
  std::vector<std::byte> value;
};

// One tensor info; n_dims defaults to dims.size().
struct SpecTensor {
  std::string name;
  std::vector<std::uint64_t> dims;
  std::uint32_t type = 0;
  std::uint64_t offset = 0;
  std::optional<std::uint32_t> n_dims;
};

// A GGUF file described field by field, so a test can set any field to any value.
struct Spec {
  std::string magic = "GGUF";
  std::uint32_t version = 3;
  std::optional<std::uint64_t> n_tensors;  // default: tensors.size()
  std::optional<std::uint64_t> n_kv;       // default: kvs.size()
  std::vector<SpecKv> kvs;
  std::vector<SpecTensor> tensors;
  std::uint64_t alignment = kDefaultAlignment;  // padding after the infos
  std::uint64_t data_bytes = 0;                 // zero-filled data section
};

inline std::vector<std::byte> encode(const Spec& s) {
  Bytes b;
  b.raw(s.magic).u32(s.version).u64(s.n_tensors.value_or(s.tensors.size())).u64(s.n_kv.value_or(s.kvs.size()));
  for (const SpecKv& kv : s.kvs) b.str(kv.key).u32(kv.type).append(kv.value);
  for (const SpecTensor& t : s.tensors) {
    b.str(t.name).u32(t.n_dims.value_or(static_cast<std::uint32_t>(t.dims.size())));
    for (std::uint64_t d : t.dims) b.u64(d);
    b.u32(t.type).u64(t.offset);
  }
  b.pad_to(s.alignment);
  b.out.resize(b.out.size() + s.data_bytes, std::byte{0});
  return b.out;
}

inline SpecKv kv_u32(std::string key, std::uint32_t v) {
  return {std::move(key), static_cast<std::uint32_t>(ValueType::u32), Bytes{}.u32(v).out};
}
inline SpecKv kv_string(std::string key, std::string_view v) {
  return {std::move(key), static_cast<std::uint32_t>(ValueType::string), Bytes{}.str(v).out};
}

// A small valid file: two keys and two tensors (F32 [8, 2] at 0, Q8_0 [32] at 64).
inline Spec valid_spec() {
  Spec s;
  s.kvs.push_back(kv_string("general.architecture", "llama"));
  s.kvs.push_back(kv_u32("llama.block_count", 2));
  s.tensors.push_back({"a.weight", {8, 2}, static_cast<std::uint32_t>(GgmlType::F32), 0, std::nullopt});
  s.tensors.push_back({"b.weight", {32}, static_cast<std::uint32_t>(GgmlType::Q8_0), 64, std::nullopt});
  s.data_bytes = 64 + 34;
  return s;
}

// Every value type, nested arrays and both tensor kinds: the sample for round trips and fuzzing.
inline Writer sample_writer() {
  Writer w;
  w.set_string("general.architecture", "llama");
  w.set("t.u8", Value::unsigned_int(ValueType::u8, 255));
  w.set("t.i8", Value::signed_int(ValueType::i8, -128));
  w.set("t.u16", Value::unsigned_int(ValueType::u16, 65535));
  w.set("t.i16", Value::signed_int(ValueType::i16, -32768));
  w.set_u32("t.u32", 4294967295u);
  w.set_i32("t.i32", std::numeric_limits<std::int32_t>::min());
  w.set_f32("t.f32", 1.5f);
  w.set_bool("t.bool", true);
  w.set_string("t.string", "h\xc3\xa9llo");
  w.set_u64("t.u64", std::numeric_limits<std::uint64_t>::max());
  w.set("t.i64", Value::signed_int(ValueType::i64, std::numeric_limits<std::int64_t>::min()));
  w.set("t.f64", Value::f64(3.141592653589793));
  w.set_string_array("t.strings", {"<unk>", "", "a b"});
  const std::vector<float> floats = {0.5f, -2.0f};
  w.set_float_array("t.floats", floats);
  const std::vector<std::int32_t> ints = {1, -1, 7};
  w.set_i32_array("t.ints", ints);
  w.set("t.bools", Value::bool_array({true, false, true}));
  const std::vector<std::uint16_t> inner = {1, 2};
  w.set("t.nested", Value::array_of_arrays({Value::array(std::span<const std::uint16_t>(inner)),
                                            Value::string_array({"x"})}));
  w.add_tensor("a.weight", static_cast<std::uint32_t>(GgmlType::F32), {8, 2}, random_bytes(64, 1));
  w.add_tensor("b.weight", static_cast<std::uint32_t>(GgmlType::Q8_0), {32, 2}, random_bytes(68, 2));
  w.add_tensor("c.weight", static_cast<std::uint32_t>(GgmlType::Q4_K), {256}, random_bytes(144, 3));
  return w;
}

// The real test model (shared/models/stories260K.gguf, beside the repository; see its README),
// or $SLUICE_MODELS_DIR/stories260K.gguf.
inline std::string stories260k_path() {
  const char* dir = std::getenv("SLUICE_MODELS_DIR");
  if (dir != nullptr && *dir != '\0') return std::string(dir) + "/stories260K.gguf";
  std::string here = __FILE__;  // <repo>/tests/model/gguf_test_util.hpp
  const std::string suffix = "/tests/model/gguf_test_util.hpp";
  const std::string repo = here.size() > suffix.size() ? here.substr(0, here.size() - suffix.size()) : ".";
  return repo + "/../shared/models/stories260K.gguf";
}

}  // namespace sluice::gguf::testing
