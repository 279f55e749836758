// File::open for GGUF files (gguf.hpp): maps the file read-only, parses the header, metadata
// and tensor infos with every length, count and offset checked against the bytes that are
// actually there, and serves the typed getters. File::open_header runs the same parser over the
// header alone, read with pread through io::File (a prefix first, more when the parser asks).
//
// Reading rules, beyond the layout in gguf.hpp:
//   - Versions 2 and 3 are read; version 1 and any other version are rejected.
//   - Counts: each key-value pair takes at least kMinKvBytes and each tensor info at least
//     kMinTensorInfoBytes, so counts the rest of the file cannot hold are rejected up front.
//   - Strings and arrays may not claim more bytes than remain in the file, and vectors grow
//     with the elements actually read, so a corrupt length or count can never make the reader
//     allocate more than a small multiple of the bytes it has read.
//   - Keys and tensor names are non-empty and unique; bools are 0 or 1; arrays nest at most
//     kMaxArrayNesting deep.
//   - general.alignment, when present, is a u32 nonzero power of two.
//   - Tensors: 1..kMaxDims dims, each nonzero and <= INT64_MAX; element and byte counts must
//     not overflow; a known ggml type; a row length that is a whole number of blocks.
//   - Tensor data: each offset is a multiple of the alignment, each tensor lies inside the file
//     and no two tensors overlap. Order and gaps are free: the spec asks for no more, although
//     llama.cpp's own reader insists on offset == running padded offset (our writer does that).
//   - The data section starts at the end of the tensor infos rounded up to the alignment; a
//     file without tensors may end before that point (data_offset() is then the file size).
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "common/assert.hpp"
#include "io/file.hpp"
#include "model/ggml_types.hpp"
#include "model/gguf.hpp"

namespace sluice::gguf {

static_assert(sizeof(std::size_t) == 8, "offsets are held in size_t: a 64-bit host is required");

namespace {

constexpr std::uint64_t kStringLengthBytes = 8;
// Smallest encodings: a 1-byte key, its type and a 1-byte value; a 1-byte name, one dim, the
// type and the offset. Used to reject counts the file cannot hold before looping over them.
constexpr std::uint64_t kMinKvBytes = kStringLengthBytes + 1 + 4 + 1;
constexpr std::uint64_t kMinTensorInfoBytes = kStringLengthBytes + 1 + 4 + 8 + 4 + 8;
constexpr std::uint64_t kArrayHeaderBytes = 4 + 8;  // element type, count
constexpr std::uint64_t kMaxDim = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
// Elements reserved before any is read: covers a 262k-token vocabulary in one allocation.
// Beyond it vectors grow as elements actually arrive, so a corrupt count in a multi-GiB model
// costs no more memory than the bytes that are really behind it.
constexpr std::uint64_t kMaxUpfrontReserve = 1u << 18;

// Header-only opens read this much first: a typical model's whole header (a 32k vocabulary is
// ~0.5 MiB) in one read; bigger headers (262k-token vocabularies, ~10 MiB) take a few doublings.
constexpr std::uint64_t kFirstHeaderReadBytes = 1ull << 20;
// The most a header-only open reads. Real headers stay under ~20 MiB; the limit bounds the
// memory a corrupt length can make us read into before the data section.
constexpr std::uint64_t kMaxHeaderBytes = 256ull << 20;

bool is_power_of_two(std::uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

// Smallest encoding of one element of `type` (for bounding array counts).
std::uint64_t min_element_bytes(ValueType type) {
  if (type == ValueType::string) return kStringLengthBytes;
  if (type == ValueType::array) return kArrayHeaderBytes;
  return value_type_bytes(type);
}

std::string printable(std::string_view bytes) {
  std::string out;
  for (char c : bytes) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  return out;
}

}  // namespace

// Thrown by Parser::take when the header runs past the bytes read so far (header-only opens):
// File::open_header reads at least `bytes` and parses again.
struct NeedMoreHeader {
  std::uint64_t bytes = 0;
};

// Parses a file's first `available` bytes (the whole mapped file, or the header read so far)
// into a File; `size` is the whole file's, which every bound is checked against. One use:
// construct, then parse().
class Parser {
 public:
  explicit Parser(File& file) : Parser(file, file.map_, file.file_size_) {}
  Parser(File& file, const std::byte* base, std::uint64_t available)
      : file_(file), base_(base), available_(available), size_(file.file_size_) {}

  void parse() {
    parse_header();
    parse_metadata();
    parse_alignment();
    parse_tensor_infos();
    place_data();
  }

 private:
  [[noreturn]] void fail(std::uint64_t at, const std::string& what) const {
    throw GgufError(fmt::format("gguf {}: {} (at byte offset {})", file_.path_, what, at));
  }
  [[noreturn]] void fail(const std::string& what) const {
    throw GgufError(fmt::format("gguf {}: {}", file_.path_, what));
  }

  std::uint64_t remaining() const { return size_ - pos_; }

  // Reads `n` bytes, failing with `what` if fewer remain.
  const std::byte* take(std::uint64_t n, std::string_view what) {
    if (n > remaining()) {
      fail(pos_, fmt::format("file truncated: {} needs {} bytes, {} left", what, n, remaining()));
    }
    // In the file but not yet read (header-only open): no overflow, pos_ + n <= size_.
    if (pos_ + n > available_) throw NeedMoreHeader{pos_ + n};
    const std::byte* at = base_ + pos_;
    pos_ += n;
    return at;
  }
  template <typename T>
  T read(std::string_view what) {
    T v;
    std::memcpy(&v, take(sizeof(T), what), sizeof(T));
    return v;
  }
  // A string of at most `max_bytes` (0: only the remaining file bounds it).
  std::string_view read_string(std::string_view what, std::uint64_t max_bytes = 0) {
    const std::uint64_t at = pos_;
    const auto length = read<std::uint64_t>(what);
    if (max_bytes != 0 && length > max_bytes) {
      fail(at, fmt::format("{} is {} bytes, more than the limit of {}", what, length, max_bytes));
    }
    if (length > remaining()) {
      fail(at, fmt::format("{}: string of {} bytes is longer than the remaining file ({} bytes)", what, length,
                           remaining()));
    }
    const auto* chars = reinterpret_cast<const char*>(take(length, what));
    return {chars, static_cast<std::size_t>(length)};
  }
  ValueType read_value_type(std::string_view key, std::string_view what) {
    const std::uint64_t at = pos_;
    const auto id = read<std::uint32_t>(what);
    if (id >= kValueTypeCount) fail(at, fmt::format("key '{}' has unknown {} {}", key, what, id));
    return static_cast<ValueType>(id);
  }

  void parse_header() {
    const std::string_view magic = read_string_raw(4, "magic");
    if (magic != "GGUF") fail(0, fmt::format("bad magic '{}', expected 'GGUF'", printable(magic)));
    const auto version = read<std::uint32_t>("version");
    if (version == 1) fail(4, "GGUF version 1 is unsupported (versions 2 and 3 are read)");
    if (version < kMinVersion || version > kVersion) {
      // A big-endian v2/v3 file reads as 0x02000000/0x03000000 here.
      const bool swapped = version != 0 && (version & 0xffffu) == 0;
      fail(4, fmt::format("unsupported GGUF version {}{} (versions 2 and 3 are read)", version,
                          swapped ? ", a big-endian file?" : ""));
    }
    file_.version_ = version;
    n_tensors_ = read<std::uint64_t>("tensor count");
    n_kv_ = read<std::uint64_t>("key-value count");
    const std::uint64_t rest = remaining();
    if (n_kv_ > rest / kMinKvBytes) {
      fail(16, fmt::format("key-value count {} is more than the file could hold ({} bytes after the header)", n_kv_, rest));
    }
    if (n_tensors_ > rest / kMinTensorInfoBytes) {
      fail(8, fmt::format("tensor count {} is more than the file could hold ({} bytes after the header)", n_tensors_,
                          rest));
    }
    if (n_kv_ * kMinKvBytes > rest - n_tensors_ * kMinTensorInfoBytes) {  // no overflow: both bounded above
      fail(8, fmt::format("tensor count {} and key-value count {} are more than the file could hold ({} bytes after "
                          "the header)",
                          n_tensors_, n_kv_, rest));
    }
  }
  std::string_view read_string_raw(std::uint64_t n, std::string_view what) {
    return {reinterpret_cast<const char*>(take(n, what)), static_cast<std::size_t>(n)};
  }

  void parse_metadata() {
    for (std::uint64_t i = 0; i < n_kv_; ++i) {
      const std::uint64_t at = pos_;
      const std::string what = fmt::format("key of key-value pair #{}", i);
      const std::string_view key = read_string(what, kMaxKeyBytes);
      if (key.empty()) fail(at, fmt::format("key-value pair #{} has an empty key", i));
      if (const auto it = file_.key_index_.find(key); it != file_.key_index_.end()) {
        fail(at, fmt::format("duplicate key '{}' (key-value pairs #{} and #{})", key, it->second, i));
      }
      const ValueType type = read_value_type(key, "value type");
      Value value = read_value(key, type, 0);
      file_.key_index_.emplace(std::string(key), file_.metadata_.size());
      file_.metadata_.emplace_back(std::string(key), std::move(value));
    }
  }

  // The value of `type` at the cursor; `depth` counts the arrays around it.
  Value read_value(std::string_view key, ValueType type, std::uint32_t depth) {
    const std::uint64_t at = pos_;
    const std::string what = fmt::format("value of key '{}'", key);
    switch (type) {
      case ValueType::u8: return Value{type, ValueType::u8, std::uint64_t{read<std::uint8_t>(what)}};
      case ValueType::u16: return Value{type, ValueType::u8, std::uint64_t{read<std::uint16_t>(what)}};
      case ValueType::u32: return Value{type, ValueType::u8, std::uint64_t{read<std::uint32_t>(what)}};
      case ValueType::u64: return Value{type, ValueType::u8, read<std::uint64_t>(what)};
      case ValueType::i8: return Value{type, ValueType::u8, std::int64_t{read<std::int8_t>(what)}};
      case ValueType::i16: return Value{type, ValueType::u8, std::int64_t{read<std::int16_t>(what)}};
      case ValueType::i32: return Value{type, ValueType::u8, std::int64_t{read<std::int32_t>(what)}};
      case ValueType::i64: return Value{type, ValueType::u8, read<std::int64_t>(what)};
      case ValueType::f32: return Value{type, ValueType::u8, double{read<float>(what)}};
      case ValueType::f64: return Value{type, ValueType::u8, read<double>(what)};
      case ValueType::boolean: {
        const auto b = read<std::uint8_t>(what);
        if (b > 1) fail(at, fmt::format("key '{}': bool value {} is neither 0 nor 1", key, b));
        return Value{type, ValueType::u8, b == 1};
      }
      case ValueType::string: return Value{type, ValueType::u8, std::string(read_string(what))};
      case ValueType::array: return read_array(key, depth + 1);
    }
    fail(at, fmt::format("key '{}' has unknown value type {}", key, static_cast<std::uint32_t>(type)));
  }

  Value read_array(std::string_view key, std::uint32_t depth) {
    const std::uint64_t at = pos_;
    if (depth > kMaxArrayNesting) fail(at, fmt::format("key '{}': arrays nested deeper than {}", key, kMaxArrayNesting));
    const ValueType element_type = read_value_type(key, "array element type");
    const auto count = read<std::uint64_t>(fmt::format("array length of key '{}'", key));
    if (count > remaining() / min_element_bytes(element_type)) {
      fail(at, fmt::format("key '{}': array of {} {} elements is longer than the remaining file ({} bytes)", key, count,
                           value_type_name(element_type), remaining()));
    }
    Value out{ValueType::array, element_type, Value::Bytes{}};
    if (element_type == ValueType::string) {
      Value::Strings strings;
      strings.reserve(std::min(count, kMaxUpfrontReserve));
      const std::string what = fmt::format("element of key '{}'", key);
      for (std::uint64_t i = 0; i < count; ++i) strings.emplace_back(read_string(what));
      out.data = std::move(strings);
    } else if (element_type == ValueType::array) {
      Value::Arrays arrays;
      arrays.reserve(std::min(count, kMaxUpfrontReserve));
      for (std::uint64_t i = 0; i < count; ++i) arrays.push_back(read_array(key, depth + 1));
      out.data = std::move(arrays);
    } else {
      const std::uint64_t n = count * value_type_bytes(element_type);  // bounded by remaining()
      const std::byte* bytes = take(n, fmt::format("array of key '{}'", key));
      if (element_type == ValueType::boolean) {
        for (std::uint64_t i = 0; i < n; ++i) {
          if (bytes[i] != std::byte{0} && bytes[i] != std::byte{1}) {
            fail(pos_ - n + i, fmt::format("key '{}': bool element {} is {}, neither 0 nor 1", key, i,
                                           static_cast<unsigned>(bytes[i])));
          }
        }
      }
      out.data = Value::Bytes(bytes, bytes + n);
    }
    return out;
  }

  void parse_alignment() {
    const Value* v = file_.find(kAlignmentKey);
    if (v == nullptr) return;
    if (v->type != ValueType::u32) {
      fail(fmt::format("key '{}' has type {}, expected u32", kAlignmentKey, value_type_name(v->type)));
    }
    const std::uint64_t alignment = std::get<std::uint64_t>(v->data);
    if (!is_power_of_two(alignment)) {
      fail(fmt::format("key '{}' is {}: the alignment must be a nonzero power of two", kAlignmentKey, alignment));
    }
    file_.alignment_ = alignment;
  }

  void parse_tensor_infos() {
    file_.tensors_.reserve(std::min(n_tensors_, kMaxUpfrontReserve));
    for (std::uint64_t i = 0; i < n_tensors_; ++i) {
      const std::uint64_t at = pos_;
      TensorInfo t;
      t.name = std::string(read_string(fmt::format("name of tensor #{}", i), kMaxTensorNameBytes));
      if (t.name.empty()) fail(at, fmt::format("tensor #{} has an empty name", i));
      if (const auto it = file_.tensor_index_.find(t.name); it != file_.tensor_index_.end()) {
        fail(at, fmt::format("duplicate tensor name '{}' (tensors #{} and #{})", t.name, it->second, i));
      }
      const std::uint64_t dims_at = pos_;
      const auto n_dims = read<std::uint32_t>(fmt::format("dimension count of tensor '{}'", t.name));
      if (n_dims == 0 || n_dims > kMaxDims) {
        fail(dims_at, fmt::format("tensor '{}' has {} dimensions, expected 1 to {}", t.name, n_dims, kMaxDims));
      }
      for (std::uint32_t d = 0; d < n_dims; ++d) {
        t.dims.push_back(read<std::uint64_t>(fmt::format("dimension {} of tensor '{}'", d, t.name)));
      }
      const std::uint64_t type_at = pos_;
      t.type = read<std::uint32_t>(fmt::format("type of tensor '{}'", t.name));
      t.offset = read<std::uint64_t>(fmt::format("data offset of tensor '{}'", t.name));
      check_shape(t, dims_at, type_at);
      file_.tensor_index_.emplace(t.name, file_.tensors_.size());
      file_.tensors_.push_back(std::move(t));
    }
  }

  // Dims, element and byte counts, type and block size of `t`; fills elements and bytes.
  void check_shape(TensorInfo& t, std::uint64_t dims_at, std::uint64_t type_at) const {
    std::uint64_t elements = 1;
    for (std::size_t d = 0; d < t.dims.size(); ++d) {
      const std::uint64_t n = t.dims[d];
      if (n == 0) fail(dims_at, fmt::format("tensor '{}': dimension {} is zero", t.name, d));
      if (n > kMaxDim) {
        fail(dims_at, fmt::format("tensor '{}': dimension {} is {}, negative as the int64 ggml holds it", t.name, d, n));
      }
      if (elements > kMaxDim / n) {
        fail(dims_at, fmt::format("tensor '{}': element count of dims [{}] overflows int64", t.name,
                                  fmt::join(t.dims, ", ")));
      }
      elements *= n;
    }
    const auto traits = ggml_type_traits(t.type);
    if (!traits) fail(type_at, fmt::format("tensor '{}' has unknown ggml type {}", t.name, t.type));
    if (t.dims[0] % traits->block_elements != 0) {
      fail(dims_at, fmt::format("tensor '{}' of type {}: row length {} is not a multiple of the block size {}", t.name,
                                traits->name, t.dims[0], traits->block_elements));
    }
    const std::uint64_t blocks = elements / traits->block_elements;
    if (blocks > std::numeric_limits<std::uint64_t>::max() / traits->block_bytes) {
      fail(dims_at, fmt::format("tensor '{}' of type {}: byte count of dims [{}] overflows", t.name, traits->name,
                                fmt::join(t.dims, ", ")));
    }
    t.elements = elements;
    t.bytes = blocks * traits->block_bytes;
  }

  void place_data() {
    const std::uint64_t alignment = file_.alignment_;
    const std::uint64_t infos_end = pos_;
    // No overflow: pos_ <= file size < 2^63 and alignment <= 2^31.
    const std::uint64_t data_offset = (infos_end + alignment - 1) / alignment * alignment;
    if (data_offset > size_) {
      if (!file_.tensors_.empty()) {
        fail(infos_end, fmt::format("data section would start at byte offset {}, past the end of the file ({} bytes)",
                                    data_offset, size_));
      }
      file_.data_offset_ = size_;
      return;
    }
    file_.data_offset_ = data_offset;
    const std::uint64_t data_bytes = size_ - data_offset;
    for (const TensorInfo& t : file_.tensors_) {
      if (t.offset % alignment != 0) {
        fail(fmt::format("tensor '{}': data offset {} is not a multiple of the alignment {}", t.name, t.offset,
                         alignment));
      }
      if (t.offset > data_bytes || t.bytes > data_bytes - t.offset) {
        fail(fmt::format("tensor '{}': data [{}, +{}) lies outside the file's data section ({} bytes at byte offset {})",
                         t.name, t.offset, t.bytes, data_bytes, data_offset));
      }
    }
    std::vector<const TensorInfo*> by_offset;
    by_offset.reserve(file_.tensors_.size());
    for (const TensorInfo& t : file_.tensors_) by_offset.push_back(&t);
    std::sort(by_offset.begin(), by_offset.end(),
              [](const TensorInfo* a, const TensorInfo* b) { return a->offset < b->offset; });
    for (std::size_t i = 1; i < by_offset.size(); ++i) {
      const TensorInfo& prev = *by_offset[i - 1];
      const TensorInfo& next = *by_offset[i];
      if (prev.offset + prev.bytes > next.offset) {  // in bounds, so no overflow
        fail(fmt::format("tensors '{}' and '{}' overlap: data [{}, +{}) and [{}, +{})", prev.name, next.name,
                         prev.offset, prev.bytes, next.offset, next.bytes));
      }
    }
  }

  File& file_;
  const std::byte* base_;
  std::uint64_t available_;  // bytes at base_: the whole file when mapped, a prefix otherwise
  std::uint64_t size_;
  std::uint64_t pos_ = 0;
  std::uint64_t n_tensors_ = 0;
  std::uint64_t n_kv_ = 0;
};

File File::open(const std::string& path) {
  File file;
  file.path_ = path;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    throw GgufError(fmt::format("gguf {}: cannot open: {}", path, std::strerror(err)));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    throw GgufError(fmt::format("gguf {}: cannot stat: {}", path, std::strerror(err)));
  }
  if (!S_ISREG(st.st_mode)) {
    // mmap needs a file with a size; a pipe or directory is a usage error worth naming.
    ::close(fd);
    throw GgufError(fmt::format("gguf {}: not a regular file", path));
  }
  file.file_size_ = static_cast<std::uint64_t>(st.st_size);
  if (file.file_size_ > 0) {
    // MAP_PRIVATE + PROT_READ: the engine only reads weights; pages stay clean and the kernel
    // may drop them under memory pressure and fault them back from the file.
    void* addr = ::mmap(nullptr, file.file_size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (addr == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      throw GgufError(fmt::format("gguf {}: mmap of {} bytes failed: {}", path, file.file_size_, std::strerror(err)));
    }
    file.map_ = static_cast<const std::byte*>(addr);
    file.map_bytes_ = file.file_size_;
  }
  ::close(fd);  // the mapping keeps the file
  Parser(file).parse();
  return file;
}

File File::open_header(io::File& source) {
  const std::uint64_t size = source.size();
  std::uint64_t want = std::min(size, kFirstHeaderReadBytes);
  std::vector<std::byte> header;
  for (;;) {
    header.resize(want);
    if (Status st = source.read_at(header, 0); !st) {
      throw GgufError(fmt::format("gguf {}: reading the header: {}", source.path(), st.error().message), ErrorKind::io);
    }
    File file;
    file.path_ = source.path();
    file.file_size_ = size;
    try {
      Parser(file, header.data(), want).parse();
      return file;
    } catch (const NeedMoreHeader& more) {
      // Parser bounds every length by the file's size, so `more.bytes` <= size.
      if (more.bytes > kMaxHeaderBytes) {
        throw GgufError(fmt::format("gguf {}: the header (metadata and tensor infos) runs past {} bytes, more than "
                                    "the limit of {} bytes for a header read without mapping the file",
                                    source.path(), more.bytes, kMaxHeaderBytes));
      }
      // Doubling bounds the re-parses at log2(header / first read) for a big vocabulary.
      want = std::min(size, std::max(more.bytes, std::min(want * 2, kMaxHeaderBytes)));
    }
  }
}

File File::open_header(const std::string& path) {
  std::unique_ptr<io::File> source;
  try {
    source = io::File::open(path);
  } catch (const std::exception& e) {
    throw GgufError(fmt::format("gguf {}: cannot open: {}", path, e.what()), ErrorKind::io);
  }
  return open_header(*source);
}

File::File(File&& other) noexcept
    : path_(std::move(other.path_)),
      version_(other.version_),
      alignment_(other.alignment_),
      data_offset_(other.data_offset_),
      file_size_(other.file_size_),
      metadata_(std::move(other.metadata_)),
      key_index_(std::move(other.key_index_)),
      tensors_(std::move(other.tensors_)),
      tensor_index_(std::move(other.tensor_index_)),
      map_(std::exchange(other.map_, nullptr)),
      map_bytes_(std::exchange(other.map_bytes_, 0)) {}

File& File::operator=(File&& other) noexcept {
  if (this != &other) {
    File moved(std::move(other));
    std::swap(path_, moved.path_);
    std::swap(version_, moved.version_);
    std::swap(alignment_, moved.alignment_);
    std::swap(data_offset_, moved.data_offset_);
    std::swap(file_size_, moved.file_size_);
    std::swap(metadata_, moved.metadata_);
    std::swap(key_index_, moved.key_index_);
    std::swap(tensors_, moved.tensors_);
    std::swap(tensor_index_, moved.tensor_index_);
    std::swap(map_, moved.map_);
    std::swap(map_bytes_, moved.map_bytes_);
  }
  return *this;
}

File::~File() {
  if (map_ != nullptr) ::munmap(const_cast<std::byte*>(map_), map_bytes_);
}

const Value* File::find(std::string_view key) const {
  const auto it = key_index_.find(key);
  return it == key_index_.end() ? nullptr : &metadata_[it->second].second;
}

void File::erase_key(std::string_view key) {
  const auto it = key_index_.find(key);
  if (it == key_index_.end()) return;
  const std::size_t at = it->second;
  key_index_.erase(it);
  metadata_.erase(metadata_.begin() + static_cast<std::ptrdiff_t>(at));
  for (auto& [name, index] : key_index_) {
    if (index > at) --index;
  }
}

const TensorInfo* File::find_tensor(std::string_view name) const {
  const auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

std::span<const std::byte> File::tensor_data(const TensorInfo& tensor) const {
  SLUICE_ASSERT_MSG(map_ != nullptr || tensor.bytes == 0, "tensor_data: the File was opened header-only");
  SLUICE_ASSERT_MSG(tensor.offset <= map_bytes_ - data_offset_ && tensor.bytes <= map_bytes_ - data_offset_ - tensor.offset,
                    "tensor_data: not a tensor of this file");
  return {map_ + data_offset_ + tensor.offset, static_cast<std::size_t>(tensor.bytes)};
}

void File::fail_key(std::string_view key, const Value& value, std::string_view wanted) const {
  const std::string type = value.is_array() ? fmt::format("array of {}", value_type_name(value.array_type))
                                            : std::string(value_type_name(value.type));
  throw GgufError(fmt::format("gguf {}: key '{}' of type {} cannot be read as {}", path_, key, type, wanted));
}

std::optional<std::string> File::get_string(std::string_view key) const {
  const Value* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (const std::string* s = v->as_string()) return *s;
  fail_key(key, *v, "a string");
}

std::optional<std::uint64_t> File::get_uint(std::string_view key) const {
  const Value* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (auto x = v->as_uint()) return x;
  fail_key(key, *v, "a non-negative integer");
}

std::optional<std::int64_t> File::get_int(std::string_view key) const {
  const Value* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (auto x = v->as_int()) return x;
  fail_key(key, *v, "an int64");
}

std::optional<double> File::get_float(std::string_view key) const {
  const Value* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (auto x = v->as_float()) return x;
  fail_key(key, *v, "a number");
}

std::optional<bool> File::get_bool(std::string_view key) const {
  const Value* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (auto x = v->as_bool()) return x;
  fail_key(key, *v, "a bool");
}

const std::vector<std::string>* File::get_string_array(std::string_view key) const {
  const Value* v = find(key);
  if (v == nullptr) return nullptr;
  if (const auto* s = v->strings()) return s;
  fail_key(key, *v, "an array of strings");
}

std::optional<std::vector<float>> File::get_float_array(std::string_view key) const {
  const Value* v = find(key);
  if (v == nullptr) return std::nullopt;
  auto wide = v->float_elements();
  if (!wide) fail_key(key, *v, "an array of numbers");
  return std::vector<float>(wide->begin(), wide->end());
}

std::optional<std::vector<std::int64_t>> File::get_int_array(std::string_view key) const {
  const Value* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (auto x = v->int_elements()) return x;
  fail_key(key, *v, "an array of int64");
}

}  // namespace sluice::gguf
