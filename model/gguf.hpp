// GGUF files (ggml's model format, versions 2 and 3): a validating reader that maps the tensor
// data read-only, and a writer of v3 files that llama.cpp loads. Used to import models and by
// tests that need small real-format models.
//
// The file layout (all integers little-endian; spec: ggml docs/gguf.md):
//
//   1. Magic "GGUF" (4 bytes).
//   2. Version (u32): 2 or 3 (v1, with u32 counts, is rejected; v2 and v3 share one layout).
//   3. Tensor count (u64).
//   4. Metadata key-value count (u64).
//   5. For each key-value pair:
//      1. The key (string): non-empty, at most kMaxKeyBytes.
//      2. The value type (u32, ValueType).
//      3a. If the type is array:
//          1. The element type (u32, ValueType; may itself be array: arrays nest).
//          2. The element count (u64).
//          3. Each element, encoded as in 3a/3b for the element type.
//      3b. Otherwise the value: fixed-width integers and floats, bool as one byte (0 or 1),
//          strings as a string.
//   6. For each tensor:
//      1. The name (string): non-empty, at most kMaxTensorNameBytes.
//      2. The number of dimensions (u32), 1 to kMaxDims.
//      3. Each dimension (u64, ggml order: the first is the row length), nonzero, at most
//         INT64_MAX (ggml holds them as int64).
//      4. The ggml type (u32, GgmlType in ggml_types.hpp).
//      5. The data offset (u64), relative to the data section, a multiple of the alignment.
//   7. Zero padding up to the next multiple of the alignment.
//   8. The data section: each tensor's bytes at its offset, padded to the alignment.
//
// A string is its byte length (u64) followed by that many bytes, no terminator.
// The alignment is the u32 key "general.alignment" when present (a nonzero power of two), else
// kDefaultAlignment.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "common/error.hpp"

namespace sluice::io {
class File;
}
namespace sluice {
class OutputFile;
}

namespace sluice::gguf {

inline constexpr std::uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian u32
inline constexpr std::uint32_t kVersion = 3;         // what the writer writes
inline constexpr std::uint32_t kMinVersion = 2;      // v1 had u32 counts; llama.cpp dropped it too
inline constexpr std::uint64_t kDefaultAlignment = 32;
inline constexpr std::string_view kAlignmentKey = "general.alignment";

// Limits on what a file may contain. Keys: the spec caps them at 2^16-1 bytes. Tensor names:
// the spec caps them at 64 bytes, which the reader accepts; ggml keeps names in a 64-byte
// char array with a terminator (GGML_MAX_NAME), so llama.cpp rejects 64-byte names and the
// writer stops at kMaxWriterTensorNameBytes. Dims: ggml tensors have 4 (GGML_MAX_DIMS).
inline constexpr std::size_t kMaxKeyBytes = 65535;
inline constexpr std::size_t kMaxTensorNameBytes = 64;
inline constexpr std::size_t kMaxWriterTensorNameBytes = 63;
inline constexpr std::uint32_t kMaxDims = 4;
// Array nesting: gguf-py writes one level and llama.cpp reads none; the limit bounds the
// parser's recursion on hostile input (a 12-byte array header per level would otherwise let a
// small file overflow the stack).
inline constexpr std::uint32_t kMaxArrayNesting = 8;

enum class ValueType : std::uint32_t {
  u8 = 0,
  i8 = 1,
  u16 = 2,
  i16 = 3,
  u32 = 4,
  i32 = 5,
  f32 = 6,
  boolean = 7,
  string = 8,
  array = 9,
  u64 = 10,
  i64 = 11,
  f64 = 12,
};
inline constexpr std::uint32_t kValueTypeCount = 13;

// "u32", "string", ... as llama.cpp prints them; "unknown" for ids outside the enum.
std::string_view value_type_name(ValueType type);
// Encoded bytes of one value of a fixed-width type (1 for bool); 0 for string and array.
std::size_t value_type_bytes(ValueType type);
bool is_unsigned_type(ValueType type);  // u8, u16, u32, u64
bool is_signed_type(ValueType type);    // i8, i16, i32, i64
bool is_float_type(ValueType type);     // f32, f64

// A metadata value. Scalars are held widened (u8..u64 as uint64, i8..i64 as int64, f32/f64 as
// double) with `type` keeping the width on disk. Arrays keep the file's compact form so that a
// 262k-token vocabulary costs what it weighs: numeric and bool arrays as their little-endian
// bytes (`array_type` says how to read them), string arrays as strings, arrays of arrays as
// Values. Build values with the factories, which keep `data` consistent with the types.
struct Value {
  using Bytes = std::vector<std::byte>;
  using Strings = std::vector<std::string>;
  using Arrays = std::vector<Value>;
  using Data = std::variant<std::uint64_t, std::int64_t, double, bool, std::string, Bytes, Strings, Arrays>;

  ValueType type = ValueType::u8;
  ValueType array_type = ValueType::u8;  // the element type when type == array
  Data data = std::uint64_t{0};

  // Scalars. unsigned_int/signed_int assert that `type` has that signedness and that the value
  // fits its width.
  static Value unsigned_int(ValueType type, std::uint64_t v);
  static Value signed_int(ValueType type, std::int64_t v);
  static Value f32(float v);
  static Value f64(double v);
  static Value boolean(bool v);
  static Value string(std::string v);
  // Arrays. T is one of uint8_t..uint64_t, int8_t..int64_t, float, double (the element type
  // follows from T); bools have their own factory.
  template <typename T>
  static Value array(std::span<const T> elements);
  static Value bool_array(const std::vector<bool>& elements);
  static Value string_array(std::vector<std::string> elements);
  static Value array_of_arrays(std::vector<Value> elements);  // each element must be an array
  // A numeric or bool array from its encoded bytes (size a multiple of the element width).
  static Value raw_array(ValueType element_type, Bytes bytes);

  bool is_array() const { return type == ValueType::array; }
  std::uint64_t array_size() const;  // elements; 0 for scalars

  // Scalar views; nullopt/nullptr when the value is not of that kind.
  std::optional<std::uint64_t> as_uint() const;  // any integer type holding a value >= 0
  std::optional<std::int64_t> as_int() const;    // any integer type holding a value <= INT64_MAX
  std::optional<double> as_float() const;        // f32, f64 and integers
  std::optional<bool> as_bool() const;
  const std::string* as_string() const;

  // Array views; nullopt/nullptr when the value is not such an array. An empty array of any
  // element type reads as an empty array of every kind.
  const Strings* strings() const;
  const Arrays* arrays() const;
  const Bytes* array_bytes() const;                              // numeric and bool arrays
  std::optional<std::vector<double>> float_elements() const;     // float and integer arrays
  std::optional<std::vector<std::int64_t>> int_elements() const;  // integer arrays (<= INT64_MAX)
  std::optional<std::vector<std::uint64_t>> uint_elements() const;  // integer arrays (>= 0)

  // Why the value is inconsistent (data alternative vs type, integer out of its width, bool
  // bytes other than 0/1, an element that is not an array, nesting deeper than
  // kMaxArrayNesting), or nullopt when it can be written. Values from File and from the
  // factories are always consistent; the writer checks values built by hand.
  std::optional<std::string> invalid_reason() const;

  bool operator==(const Value&) const = default;
};

// What the header says about one tensor, after validation.
struct TensorInfo {
  std::string name;
  std::uint32_t type = 0;            // ggml type id (GgmlType)
  std::vector<std::uint64_t> dims;   // ggml order: dims[0] = row length; 1..kMaxDims entries
  std::uint64_t offset = 0;          // of its data, relative to the data section
  std::uint64_t bytes = 0;           // of its data
  std::uint64_t elements = 0;
};

// Thrown by File::open and the typed getters. The message names the file and the byte offset,
// key or tensor that is wrong.
class GgufError : public Exception {
 public:
  explicit GgufError(const std::string& message, ErrorKind kind = ErrorKind::corrupt) : Exception(ErrorContext{kind}, message) {}
};

// An open, validated GGUF file. Move-only: owns a read-only mapping of the file, which
// tensor_data() spans point into (valid while the File lives). All const methods are
// thread-safe. If another process truncates the file while it is mapped, touching the lost
// pages raises SIGBUS: model files are not expected to change under a running engine.
class File {
 public:
  // Opens, parses and validates `path` (see gguf_reader.cpp for the rules). Throws GgufError.
  static File open(const std::string& path);
  // The same parse and checks, reading only the header (metadata and tensor infos) with
  // positional reads through io::File and mapping nothing: for streaming readers, which must not
  // touch the data section through the page cache, and for split shards. tensor_data() may not
  // be called on the result (mapped() is false). Throws GgufError (ErrorKind::io for a failed
  // read) naming the file; a header over 256 MiB is refused.
  static File open_header(io::File& source);
  static File open_header(const std::string& path);

  File(File&& other) noexcept;
  File& operator=(File&& other) noexcept;
  File(const File&) = delete;
  File& operator=(const File&) = delete;
  ~File();

  const std::string& path() const { return path_; }
  std::uint32_t version() const { return version_; }
  std::uint64_t alignment() const { return alignment_; }
  std::uint64_t data_offset() const { return data_offset_; }  // of the data section in the file
  std::uint64_t file_size() const { return file_size_; }
  bool mapped() const { return map_ != nullptr; }  // false for open_header (and empty files)

  // Typed getters: nullopt (nullptr) if the key is absent; GgufError naming the key if it is
  // present with an incompatible type or a value the result cannot hold.
  std::optional<std::string> get_string(std::string_view key) const;
  std::optional<std::uint64_t> get_uint(std::string_view key) const;  // any integer type, >= 0
  std::optional<std::int64_t> get_int(std::string_view key) const;    // any integer type
  std::optional<double> get_float(std::string_view key) const;        // f32, f64, integers
  std::optional<bool> get_bool(std::string_view key) const;
  const std::vector<std::string>* get_string_array(std::string_view key) const;
  std::optional<std::vector<float>> get_float_array(std::string_view key) const;  // float/int arrays
  std::optional<std::vector<std::int64_t>> get_int_array(std::string_view key) const;

  const Value* find(std::string_view key) const;  // nullptr if absent
  // Drops a key and its value (the vocabulary arrays, once a tokenizer holds them); no-op when
  // absent. Not thread-safe against readers of the metadata.
  void erase_key(std::string_view key);
  const std::vector<std::pair<std::string, Value>>& metadata() const { return metadata_; }  // file order

  const std::vector<TensorInfo>& tensors() const { return tensors_; }  // file order
  const TensorInfo* find_tensor(std::string_view name) const;          // nullptr if absent
  // The tensor's bytes in the mapping. `tensor` must be one of tensors(), and the File opened
  // with open() (not open_header()).
  std::span<const std::byte> tensor_data(const TensorInfo& tensor) const;

 private:
  File() = default;
  friend class Parser;
  [[noreturn]] void fail_key(std::string_view key, const Value& value, std::string_view wanted) const;

  // Heterogeneous lookup so find(string_view) does not build a std::string.
  struct NameHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  using NameIndex = std::unordered_map<std::string, std::size_t, NameHash, std::equal_to<>>;

  std::string path_;
  std::uint32_t version_ = 0;
  std::uint64_t alignment_ = kDefaultAlignment;
  std::uint64_t data_offset_ = 0;
  std::uint64_t file_size_ = 0;
  std::vector<std::pair<std::string, Value>> metadata_;
  NameIndex key_index_;
  std::vector<TensorInfo> tensors_;
  NameIndex tensor_index_;
  const std::byte* map_ = nullptr;  // the whole file, read-only; nullptr for an empty mapping
  std::size_t map_bytes_ = 0;
};

// Builds a GGUF v3 file in memory and writes it. Not thread-safe. Tensors are written in the
// order added, each at the running offset padded to the alignment (as llama.cpp's reader
// requires), and the data section ends padded too.
class Writer {
 public:
  // Adds or replaces (in place) a key. Throws std::invalid_argument for an empty or over-long
  // key, an inconsistent Value (see Value), or general.alignment (pass it to write() instead).
  void set(std::string key, Value v);
  void set_string(std::string key, std::string v) { set(std::move(key), Value::string(std::move(v))); }
  void set_u32(std::string key, std::uint32_t v) { set(std::move(key), Value::unsigned_int(ValueType::u32, v)); }
  void set_u64(std::string key, std::uint64_t v) { set(std::move(key), Value::unsigned_int(ValueType::u64, v)); }
  void set_i32(std::string key, std::int32_t v) { set(std::move(key), Value::signed_int(ValueType::i32, v)); }
  void set_f32(std::string key, float v) { set(std::move(key), Value::f32(v)); }
  void set_bool(std::string key, bool v) { set(std::move(key), Value::boolean(v)); }
  void set_string_array(std::string key, std::vector<std::string> v) {
    set(std::move(key), Value::string_array(std::move(v)));
  }
  void set_float_array(std::string key, std::span<const float> v) { set(std::move(key), Value::array(v)); }
  void set_i32_array(std::string key, std::span<const std::int32_t> v) { set(std::move(key), Value::array(v)); }

  // Adds a tensor and copies its bytes. add_tensor_ref keeps only a view: `bytes` must stay
  // valid until the last write() (for large models already in memory). Both throw
  // std::invalid_argument naming the tensor for a duplicate or over-long name, an unknown type,
  // 0 or more than kMaxDims dims, a zero dim, a row length that is not a multiple of the type's
  // block, or a byte count that does not match dims and type.
  void add_tensor(std::string name, std::uint32_t ggml_type, std::vector<std::uint64_t> dims,
                  std::span<const std::byte> bytes);
  void add_tensor_ref(std::string name, std::uint32_t ggml_type, std::vector<std::uint64_t> dims,
                      std::span<const std::byte> bytes);
  // Adds a tensor whose bytes `generate` makes when write() reaches it (write() then holds one
  // generated tensor at a time: models larger than memory). Throws like add_tensor; write()
  // throws std::runtime_error if the generator's byte count does not match dims and type.
  void add_tensor_generated(std::string name, std::uint32_t ggml_type, std::vector<std::uint64_t> dims,
                            std::function<std::vector<std::byte>()> generate);

  // Adds a tensor whose bytes `copy` hands to the sink it is given, in pieces of any size, when
  // write() reaches it: a tensor copied from another file in bounded memory (`sluice split`).
  // Throws like add_tensor; write() throws std::runtime_error naming the tensor if the pieces do
  // not add up to its byte count, and lets whatever `copy` throws through.
  using ByteSink = std::function<void(std::span<const std::byte>)>;
  void add_tensor_streamed(std::string name, std::uint32_t ggml_type, std::vector<std::uint64_t> dims,
                           std::function<void(const ByteSink&)> copy);

  // Bytes of the header write() would write with this alignment (magic to the last tensor info),
  // before the padding that starts the data section at the next multiple of the alignment.
  std::uint64_t header_bytes(std::uint64_t alignment = kDefaultAlignment) const;
  // The exact size of the file write() would write with this alignment: the header padded to the
  // alignment, then every tensor padded to it (the last one too). Throws as write() does for a
  // bad alignment.
  std::uint64_t file_bytes(std::uint64_t alignment = kDefaultAlignment) const;

  // Writes the file (general.alignment is added when `alignment` != kDefaultAlignment; it must
  // be a power of two that fits in u32, else std::invalid_argument) under a temporary name and
  // renames it onto `path` (output_file.hpp). Throws std::runtime_error naming `path` on I/O
  // failure, leaving nothing new under `path`.
  void write(const std::string& path, std::uint64_t alignment = kDefaultAlignment) const;
  // The same header, but no tensor bytes: the data section is a hole (ftruncate), so the file has
  // its full size and reads as zeros there while taking only the header's blocks on disk. A
  // model of any shape for what reads only headers and tensor tables (planning a 100B model in
  // a test); generators and streamed tensors are never called. Throws as write().
  void write_without_data(const std::string& path, std::uint64_t alignment = kDefaultAlignment) const;
  // The same, but the file is left written and flushed under its temporary name: the caller
  // publishes it with commit() (several files written first, then published together), and
  // destroying the result uncommitted removes it.
  std::unique_ptr<OutputFile> write_unpublished(const std::string& path,
                                                std::uint64_t alignment = kDefaultAlignment) const;

 private:
  struct PendingTensor {
    std::string name;
    std::uint32_t type = 0;
    std::vector<std::uint64_t> dims;
    std::vector<std::byte> owned;           // the copy (add_tensor); empty for add_tensor_ref
    std::span<const std::byte> referenced;  // the caller's bytes (add_tensor_ref)
    std::function<std::vector<std::byte>()> generate;  // add_tensor_generated
    std::function<void(const ByteSink&)> stream;       // add_tensor_streamed
    std::uint64_t generated_bytes = 0;                 // what generate() or stream() must give
    // Tensors are never empty (zero dims are rejected), so an empty copy means a reference.
    std::span<const std::byte> bytes() const { return owned.empty() ? referenced : std::span<const std::byte>(owned); }
    std::uint64_t size() const { return generate || stream ? generated_bytes : bytes().size(); }
  };
  PendingTensor& add_deferred(std::string name, std::uint32_t ggml_type, std::vector<std::uint64_t> dims);
  void add_tensor_impl(std::string name, std::uint32_t ggml_type, std::vector<std::uint64_t> dims,
                       std::span<const std::byte> bytes, bool copy);
  // Validates a new tensor (name, type, dims) and returns its byte count; throws as add_tensor.
  std::uint64_t tensor_bytes(const std::string& name, std::uint32_t ggml_type,
                             const std::vector<std::uint64_t>& dims) const;

  // The header's bytes and the data section's length (every tensor padded), checking `alignment`.
  std::vector<std::byte> encode_header(std::uint64_t alignment) const;

  std::vector<std::pair<std::string, Value>> metadata_;
  std::vector<PendingTensor> tensors_;
};

// Encoded bytes of one tensor info in the header (name, dims, type, offset): what a tensor adds to
// a header besides its data (`sluice split` sizes shards before writing them).
constexpr std::uint64_t tensor_info_bytes(std::uint64_t name_bytes, std::uint64_t n_dims) {
  return 8 + name_bytes + 4 + 8 * n_dims + 4 + 8;
}

}  // namespace sluice::gguf
