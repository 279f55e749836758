// Writer for GGUF v3 files (gguf.hpp). The header (metadata and tensor infos) is built in
// memory; tensor data is written straight from the caller's (or the copied, or the generated)
// bytes, into a temporary file renamed onto the final name at the end (output_file.hpp). The layout
// follows what llama.cpp's gguf writer produces, so llama.cpp, gguf-py and File::open all read
// the result: tensors in the order added, each at the running offset padded to the alignment,
// zero padding after the tensor infos and after every tensor.
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <stdexcept>

#include <fmt/format.h>

#include "model/ggml_types.hpp"
#include "model/gguf.hpp"
#include "model/output_file.hpp"

namespace sluice::gguf {
namespace {

// Zero bytes for padding; the largest alignment written is bounded by u32, so padding is
// written in chunks of this size.
constexpr std::size_t kZeroChunkBytes = 4096;

std::uint64_t align_up(std::uint64_t v, std::uint64_t alignment) { return (v + alignment - 1) / alignment * alignment; }

// Appends little-endian encodings to an in-memory header.
class Encoder {
 public:
  template <typename T>
  void put(T v) {
    put_raw(&v, sizeof(T));
  }
  void put_bytes(std::span<const std::byte> bytes) { put_raw(bytes.data(), bytes.size()); }
  void put_string(std::string_view s) {
    put<std::uint64_t>(s.size());
    put_raw(s.data(), s.size());
  }
  // The value without its type tag (the caller wrote it); arrays as element type, count, elements.
  void put_value(const Value& v) {
    switch (v.type) {
      case ValueType::u8: put(static_cast<std::uint8_t>(std::get<std::uint64_t>(v.data))); return;
      case ValueType::u16: put(static_cast<std::uint16_t>(std::get<std::uint64_t>(v.data))); return;
      case ValueType::u32: put(static_cast<std::uint32_t>(std::get<std::uint64_t>(v.data))); return;
      case ValueType::u64: put(std::get<std::uint64_t>(v.data)); return;
      case ValueType::i8: put(static_cast<std::int8_t>(std::get<std::int64_t>(v.data))); return;
      case ValueType::i16: put(static_cast<std::int16_t>(std::get<std::int64_t>(v.data))); return;
      case ValueType::i32: put(static_cast<std::int32_t>(std::get<std::int64_t>(v.data))); return;
      case ValueType::i64: put(std::get<std::int64_t>(v.data)); return;
      case ValueType::f32: put(static_cast<float>(std::get<double>(v.data))); return;
      case ValueType::f64: put(std::get<double>(v.data)); return;
      case ValueType::boolean: put(static_cast<std::uint8_t>(std::get<bool>(v.data) ? 1 : 0)); return;
      case ValueType::string: put_string(std::get<std::string>(v.data)); return;
      case ValueType::array: break;
    }
    put(static_cast<std::uint32_t>(v.array_type));
    put<std::uint64_t>(v.array_size());
    if (const auto* strings = std::get_if<Value::Strings>(&v.data)) {
      for (const std::string& s : *strings) put_string(s);
    } else if (const auto* arrays = std::get_if<Value::Arrays>(&v.data)) {
      for (const Value& a : *arrays) put_value(a);
    } else {
      put_bytes(std::get<Value::Bytes>(v.data));
    }
  }
  void pad_to(std::uint64_t alignment) { out_.resize(align_up(out_.size(), alignment), std::byte{0}); }
  const std::vector<std::byte>& bytes() const { return out_; }

 private:
  // resize + memcpy rather than insert: GCC 12 warns (-Wstringop-overflow, a false positive)
  // on small fixed-size inserts into a vector.
  void put_raw(const void* p, std::size_t n) {
    if (n == 0) return;
    const std::size_t at = out_.size();
    out_.resize(at + n);
    std::memcpy(out_.data() + at, p, n);
  }

  std::vector<std::byte> out_;
};

// Writes zero padding after `out`'s cursor up to the next multiple of `alignment`.
void pad_to(OutputFile& out, std::uint64_t alignment) {
  static const std::vector<std::byte> kZeros(kZeroChunkBytes);
  std::uint64_t pad = align_up(out.write_offset(), alignment) - out.write_offset();
  while (pad > 0) {
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(pad, kZeroChunkBytes));
    out.write({kZeros.data(), n});
    pad -= n;
  }
}

}  // namespace

void Writer::set(std::string key, Value v) {
  if (key.empty()) throw std::invalid_argument("gguf writer: empty key");
  if (key.size() > kMaxKeyBytes) {
    throw std::invalid_argument(fmt::format("gguf writer: key of {} bytes is longer than the limit of {}", key.size(),
                                            kMaxKeyBytes));
  }
  if (key == kAlignmentKey) {
    throw std::invalid_argument(fmt::format("gguf writer: set {} through write()'s alignment argument", kAlignmentKey));
  }
  if (auto why = v.invalid_reason()) throw std::invalid_argument(fmt::format("gguf writer: key '{}': {}", key, *why));
  const auto it = std::find_if(metadata_.begin(), metadata_.end(), [&](const auto& kv) { return kv.first == key; });
  if (it != metadata_.end()) {
    it->second = std::move(v);
  } else {
    metadata_.emplace_back(std::move(key), std::move(v));
  }
}

void Writer::add_tensor(std::string name, std::uint32_t ggml_type, std::vector<std::uint64_t> dims,
                        std::span<const std::byte> bytes) {
  add_tensor_impl(std::move(name), ggml_type, std::move(dims), bytes, /*copy=*/true);
}

void Writer::add_tensor_ref(std::string name, std::uint32_t ggml_type, std::vector<std::uint64_t> dims,
                            std::span<const std::byte> bytes) {
  add_tensor_impl(std::move(name), ggml_type, std::move(dims), bytes, /*copy=*/false);
}

// A tensor whose bytes come at write time (generated or streamed): its size checked now.
Writer::PendingTensor& Writer::add_deferred(std::string name, std::uint32_t ggml_type, std::vector<std::uint64_t> dims) {
  const std::uint64_t bytes = tensor_bytes(name, ggml_type, dims);
  PendingTensor t;
  t.name = std::move(name);
  t.type = ggml_type;
  t.dims = std::move(dims);
  t.generated_bytes = bytes;
  tensors_.push_back(std::move(t));
  return tensors_.back();
}

void Writer::add_tensor_generated(std::string name, std::uint32_t ggml_type, std::vector<std::uint64_t> dims,
                                  std::function<std::vector<std::byte>()> generate) {
  add_deferred(std::move(name), ggml_type, std::move(dims)).generate = std::move(generate);
}

void Writer::add_tensor_streamed(std::string name, std::uint32_t ggml_type, std::vector<std::uint64_t> dims,
                                 std::function<void(const ByteSink&)> copy) {
  add_deferred(std::move(name), ggml_type, std::move(dims)).stream = std::move(copy);
}

void Writer::add_tensor_impl(std::string name, std::uint32_t ggml_type, std::vector<std::uint64_t> dims,
                             std::span<const std::byte> bytes, bool copy) {
  const std::uint64_t expected = tensor_bytes(name, ggml_type, dims);
  if (expected != bytes.size()) {
    throw std::invalid_argument(fmt::format("gguf writer: tensor '{}': {} bytes given, the {} dims of type {} need {}",
                                            name, bytes.size(), dims.size(), ggml_type_traits(ggml_type)->name,
                                            expected));
  }
  PendingTensor t;
  t.name = std::move(name);
  t.type = ggml_type;
  t.dims = std::move(dims);
  if (copy) {
    t.owned.assign(bytes.begin(), bytes.end());
  } else {
    t.referenced = bytes;
  }
  tensors_.push_back(std::move(t));
}

std::uint64_t Writer::tensor_bytes(const std::string& name, std::uint32_t ggml_type,
                                   const std::vector<std::uint64_t>& dims) const {
  const auto bad = [&](const std::string& what) {
    return std::invalid_argument(fmt::format("gguf writer: tensor '{}': {}", name, what));
  };
  if (name.empty()) throw bad("empty name");
  if (name.size() > kMaxWriterTensorNameBytes) {
    throw bad(fmt::format("name of {} bytes is longer than llama.cpp accepts ({})", name.size(),
                          kMaxWriterTensorNameBytes));
  }
  for (const PendingTensor& t : tensors_) {
    if (t.name == name) throw bad("duplicate tensor name");
  }
  const auto traits = ggml_type_traits(ggml_type);
  if (!traits) throw bad(fmt::format("unknown ggml type {}", ggml_type));
  if (dims.empty() || dims.size() > kMaxDims) throw bad(fmt::format("{} dims, expected 1 to {}", dims.size(), kMaxDims));
  constexpr auto kMaxDim = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  std::uint64_t elements = 1;
  for (std::uint64_t d : dims) {
    if (d == 0 || d > kMaxDim || elements > kMaxDim / d) throw bad("a dim is zero or the element count overflows int64");
    elements *= d;
  }
  if (dims[0] % traits->block_elements != 0) {
    throw bad(fmt::format("row length {} is not a multiple of the {} block size {}", dims[0], traits->name,
                          traits->block_elements));
  }
  const std::uint64_t blocks = elements / traits->block_elements;
  if (blocks > std::numeric_limits<std::uint64_t>::max() / traits->block_bytes) {
    throw bad(fmt::format("{} blocks of type {} overflow a byte count", blocks, traits->name));
  }
  return blocks * traits->block_bytes;
}

std::vector<std::byte> Writer::encode_header(std::uint64_t alignment) const {
  if (alignment == 0 || (alignment & (alignment - 1)) != 0 || alignment > std::numeric_limits<std::uint32_t>::max()) {
    throw std::invalid_argument(fmt::format("gguf writer: alignment {} is not a power of two that fits in u32", alignment));
  }
  const bool write_alignment = alignment != kDefaultAlignment;
  Encoder header;
  header.put(kMagic);
  header.put(kVersion);
  header.put<std::uint64_t>(tensors_.size());
  header.put<std::uint64_t>(metadata_.size() + (write_alignment ? 1 : 0));
  for (const auto& [key, value] : metadata_) {
    header.put_string(key);
    header.put(static_cast<std::uint32_t>(value.type));
    header.put_value(value);
  }
  if (write_alignment) {
    header.put_string(kAlignmentKey);
    header.put(static_cast<std::uint32_t>(ValueType::u32));
    header.put(static_cast<std::uint32_t>(alignment));
  }
  std::uint64_t offset = 0;
  for (const PendingTensor& t : tensors_) {
    header.put_string(t.name);
    header.put(static_cast<std::uint32_t>(t.dims.size()));
    for (std::uint64_t d : t.dims) header.put(d);
    header.put(t.type);
    header.put(offset);
    offset += align_up(t.size(), alignment);
  }
  return header.bytes();
}

std::uint64_t Writer::header_bytes(std::uint64_t alignment) const { return encode_header(alignment).size(); }

// The same sums write_unpublished() writes: header, padding, then each tensor and its padding.
std::uint64_t Writer::file_bytes(std::uint64_t alignment) const {
  std::uint64_t bytes = align_up(header_bytes(alignment), alignment);
  for (const PendingTensor& t : tensors_) bytes += align_up(t.size(), alignment);
  return bytes;
}

void Writer::write(const std::string& path, std::uint64_t alignment) const { write_unpublished(path, alignment)->commit(); }

void Writer::write_without_data(const std::string& path, std::uint64_t alignment) const {
  std::vector<std::byte> header = encode_header(alignment);
  header.resize(align_up(header.size(), alignment), std::byte{0});
  std::uint64_t data_bytes = 0;
  for (const PendingTensor& t : tensors_) data_bytes += align_up(t.size(), alignment);
  OutputFile out(path, "gguf");
  out.write(header);
  out.truncate(header.size() + data_bytes);  // a hole: no block of it is written
  out.commit();
}

std::unique_ptr<OutputFile> Writer::write_unpublished(const std::string& path, std::uint64_t alignment) const {
  std::vector<std::byte> header = encode_header(alignment);
  header.resize(align_up(header.size(), alignment), std::byte{0});

  // Written under a temporary name and renamed by commit(): a failed or killed write leaves
  // nothing new under `path`.
  auto out = std::make_unique<OutputFile>(path, "gguf");
  out->write(header);
  for (const PendingTensor& t : tensors_) {
    if (t.generate) {
      // One generated tensor in memory at a time: a 70B synthetic model needs its largest tensor.
      const std::vector<std::byte> bytes = t.generate();
      if (bytes.size() != t.generated_bytes) {
        throw std::runtime_error(fmt::format("gguf {}: tensor '{}': the generator made {} bytes, {} expected", path,
                                             t.name, bytes.size(), t.generated_bytes));
      }
      out->write(bytes);
    } else if (t.stream) {
      const std::uint64_t start = out->write_offset();
      t.stream([&](std::span<const std::byte> piece) {
        if (out->write_offset() - start + piece.size() > t.generated_bytes) {
          throw std::runtime_error(fmt::format("gguf {}: tensor '{}': more than the {} bytes expected were copied",
                                               path, t.name, t.generated_bytes));
        }
        out->write(piece);
        out->written_through(out->write_offset());
      });
      if (out->write_offset() - start != t.generated_bytes) {
        throw std::runtime_error(fmt::format("gguf {}: tensor '{}': {} bytes were copied, {} expected", path, t.name,
                                             out->write_offset() - start, t.generated_bytes));
      }
    } else {
      out->write(t.bytes());
    }
    pad_to(*out, alignment);
    out->written_through(out->write_offset());
  }
  out->sync();
  return out;
}

}  // namespace sluice::gguf
