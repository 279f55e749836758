// Pack::open validation, verify_all and read_extent (see pack_reader.hpp).
#include "model/pack_reader.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <optional>
#include <utility>

#include <fmt/format.h>
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include "io/file.hpp"
#include "model/tensor_check.hpp"
#include "model/tensor_names.hpp"

namespace sluice::pack {
namespace {

using nlohmann::json;

std::uint64_t load_le(const std::vector<std::byte>& in, std::size_t at, std::size_t width) {
  std::uint64_t value = 0;
  for (std::size_t i = 0; i < width; ++i) {
    value |= static_cast<std::uint64_t>(in[at + i]) << (8 * i);
  }
  return value;
}

// True when [offset, offset + bytes) lies within [0, limit); overflow-safe.
bool range_within(std::uint64_t offset, std::uint64_t bytes, std::uint64_t limit) {
  return offset + bytes >= offset && offset + bytes <= limit;
}


// Maximum bracket nesting of a JSON text, ignoring brackets inside strings; stops counting once
// past `limit`. Lets us refuse absurd nesting before handing the text to the parser.
std::size_t json_depth(std::span<const std::byte> text, std::size_t limit) {
  std::size_t depth = 0;
  std::size_t max_depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (std::byte b : text) {
    const char c = static_cast<char>(b);
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      max_depth = std::max(max_depth, ++depth);
      if (max_depth > limit) break;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return max_depth;
}

std::string frame_where(const Pack& pack, std::size_t extent, std::size_t frame) {
  const ExtentInfo& e = pack.extents()[extent];
  const FrameInfo& f = e.frames[frame];
  return fmt::format("pack {}: extent {} '{}' frame {} at offset {} ({} bytes)", pack.path(), extent, e.name, frame,
                     f.offset, f.disk_bytes);
}

// Checks and decodes one frame whose stored bytes are in memory. `raw` receives the decoded
// bytes (zstd only; for raw frames the stored bytes are the raw bytes).
std::optional<Error> check_frame(const Pack& pack, std::size_t extent, std::size_t frame,
                                 std::span<const std::byte> stored, std::span<std::byte> raw) {
  const FrameInfo& f = pack.extents()[extent].frames[frame];
  if (!frame_checksum_ok(f, stored)) {
    return Error{ErrorKind::checksum, 0,
                 fmt::format("{}: checksum mismatch (recorded {:#018x}, computed {:#018x})",
                             frame_where(pack, extent, frame), f.checksum, frame_checksum(f.offset, stored))};
  }
  if (f.codec == Codec::raw) return std::nullopt;
  Status status = decode_frame(f, stored, raw);
  if (!status.ok()) {
    return Error{status.error().kind, 0,
                 fmt::format("{}: {}", frame_where(pack, extent, frame), status.error().message)};
  }
  return std::nullopt;
}

// Walks the manifest JSON with typed accessors whose errors name the field ("extents[2].offset").
class ManifestParser {
 public:
  explicit ManifestParser(const std::string& path) : path_(path) {}

  [[noreturn]] void fail(const std::string& field, const std::string& what) const {
    throw PackError(fmt::format("pack {}: manifest field {}: {}", path_, field, what));
  }

  const json& member(const json& object, const char* key, const std::string& where) const {
    const std::string field = where.empty() ? key : where + "." + key;
    if (!object.is_object()) fail(where.empty() ? "(top level)" : where, "not a JSON object");
    auto it = object.find(key);
    if (it == object.end()) fail(field, "missing");
    return *it;
  }

  std::uint64_t u64(const json& object, const char* key, const std::string& where) const {
    const json& value = member(object, key, where);
    if (!value.is_number_unsigned()) {
      fail(join(where, key), fmt::format("expected an unsigned integer, found {}", brief(value)));
    }
    return value.get<std::uint64_t>();
  }

  std::uint64_t u64_max(const json& object, const char* key, const std::string& where, std::uint64_t max) const {
    const std::uint64_t value = u64(object, key, where);
    if (value > max) fail(join(where, key), fmt::format("{} exceeds the limit of {}", value, max));
    return value;
  }

  std::string string(const json& object, const char* key, const std::string& where) const {
    const json& value = member(object, key, where);
    if (!value.is_string()) fail(join(where, key), fmt::format("expected a string, found {}", brief(value)));
    std::string text = value.get<std::string>();
    if (text.size() > kMaxNameBytes) {
      fail(join(where, key), fmt::format("string of {} bytes exceeds the limit of {}", text.size(), kMaxNameBytes));
    }
    return text;
  }

  const json& array(const json& object, const char* key, const std::string& where) const {
    const json& value = member(object, key, where);
    if (!value.is_array()) fail(join(where, key), fmt::format("expected an array, found {}", brief(value)));
    return value;
  }

  static std::string join(const std::string& where, const char* key) { return where.empty() ? key : where + "." + key; }

 private:
  // A short rendering of a wrong value for messages (a hostile value may be huge).
  static std::string brief(const json& value) {
    constexpr std::size_t kShownChars = 40;
    std::string text = value.dump(-1, ' ', false, json::error_handler_t::replace);
    if (text.size() > kShownChars) text = text.substr(0, kShownChars) + "...";
    return fmt::format("{} {}", value.type_name(), text);
  }

  const std::string& path_;
};

// An expert extent (pack_format.hpp item 5): version 2, expert_bytes a non-zero multiple of
// kExtentAlign dividing raw_bytes, frames raw with a boundary at every expert's end, so that each
// expert reads O_DIRECT, whole and alone.
void check_expert_extent(const ManifestParser& p, const json& item, const std::string& where, std::uint32_t version,
                         ExtentInfo& extent) {
  if (version < kExpertsVersion) {
    p.fail(where + ".expert_bytes", fmt::format("expert extents need version {}, the pack is version {}", kExpertsVersion, version));
  }
  const std::uint64_t expert_bytes = p.u64(item, "expert_bytes", where);
  if (expert_bytes == 0 || expert_bytes % kExtentAlign != 0 || extent.raw_bytes % expert_bytes != 0) {
    p.fail(where + ".expert_bytes", fmt::format("{} is not a non-zero multiple of {} dividing the extent's {} raw bytes", expert_bytes,
                                                kExtentAlign, extent.raw_bytes));
  }
  std::uint64_t raw = 0;
  for (std::size_t i = 0; i < extent.frames.size(); ++i) {
    const FrameInfo& frame = extent.frames[i];
    if (frame.codec != Codec::raw) p.fail(fmt::format("{}.frames[{}].codec", where, i), "an expert extent's frames must be raw");
    // A frame that starts in one expert must end in it.
    if (raw / expert_bytes != (raw + frame.raw_bytes - 1) / expert_bytes) {
      p.fail(fmt::format("{}.frames[{}]", where, i), fmt::format("frame of raw bytes [{}, {}) straddles two experts of {} bytes", raw,
                                                                raw + frame.raw_bytes, expert_bytes));
    }
    raw += frame.raw_bytes;
  }
  extent.expert_bytes = expert_bytes;
}

// A tensor of an expert extent: its stride is the extent's expert_bytes, its last dimension the
// extent's expert count, and each expert's slice lies inside that expert's bytes.
void check_expert_tensor(const ManifestParser& p, const json& item, const std::string& where, const ExtentInfo& extent,
                         TensorInfo& tensor) {
  const std::uint64_t stride = p.u64(item, "expert_stride", where);
  if (stride == 0) return;  // contiguous
  if (stride != extent.expert_bytes) {
    p.fail(where + ".expert_stride", fmt::format("{} differs from its extent's expert_bytes {} (an expert tensor lies in an expert "
                                                 "extent)", stride, extent.expert_bytes));
  }
  const std::uint64_t n_expert = extent.raw_bytes / stride;
  if (tensor.shape.empty() || tensor.shape.back() != n_expert || tensor.bytes % n_expert != 0 ||
      tensor.offset + tensor.bytes / n_expert > stride) {
    p.fail(where, fmt::format("expert tensor '{}' at offset {} of {} bytes is not {} slices each inside {} bytes", tensor.name,
                              tensor.offset, tensor.bytes, n_expert, stride));
  }
  tensor.expert_stride = stride;
}

}  // namespace

Pack::Pack(Pack&& other) noexcept { *this = std::move(other); }

Pack& Pack::operator=(Pack&& other) noexcept {
  if (this != &other) {
    path_ = std::move(other.path_);
    file_ = std::move(other.file_);
    file_size_ = other.file_size_;
    version_ = other.version_;
    frame_bytes_ = other.frame_bytes_;
    manifest_offset_ = other.manifest_offset_;
    manifest_bytes_ = other.manifest_bytes_;
    manifest_checksum_ = other.manifest_checksum_;
    metadata_ = std::move(other.metadata_);
    compression_policy_ = std::move(other.compression_policy_);
    extents_ = std::move(other.extents_);
    tensors_ = std::move(other.tensors_);
    tensor_index_ = std::move(other.tensor_index_);
  }
  return *this;
}

Pack::~Pack() = default;

int Pack::fd() const { return file_ ? file_->fd() : -1; }

Status Pack::read_at(std::span<std::byte> bytes, std::uint64_t offset) const {
  Status st = file_->read_at(bytes, offset);
  if (!st) return Error{st.error().kind, st.error().sys_errno, fmt::format("pack {}", st.error().message)};
  return st;
}

void Pack::fail(const std::string& what) const { throw PackError(fmt::format("pack {}: {}", path_, what)); }

Pack Pack::open(const std::string& path, const PackOptions& options) {
  Pack pack;
  pack.path_ = path;
  // Checked before opening: open() on a FIFO or a device would block or read forever.
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) pack.fail(fmt::format("cannot open: {}", std::strerror(errno)));
  if (!S_ISREG(st.st_mode)) pack.fail("not a regular file");
  io::FileOptions file_options;
  file_options.fault = options.fault;
  try {
    pack.file_ = io::File::open(path, file_options);
  } catch (const std::exception& e) {
    pack.fail(e.what());
  }
  pack.file_size_ = pack.file_->size();
  if (pack.file_size_ < kHeaderBytes) {
    pack.fail(fmt::format("file is {} bytes, shorter than the {}-byte header", pack.file_size_, kHeaderBytes));
  }

  std::vector<std::byte> header(kHeaderBytes);
  if (Status s = pack.read_at(header, 0); !s.ok()) throw PackError(s.error().message);
  pack.parse_header(header);

  std::vector<std::byte> manifest(pack.manifest_bytes_);
  if (Status s = pack.read_at(manifest, pack.manifest_offset_); !s.ok()) {
    throw PackError(s.error().message);
  }
  const std::uint64_t checksum = manifest_checksum(manifest);
  if (checksum != pack.manifest_checksum_) {
    pack.fail(fmt::format("manifest checksum mismatch (header offset {}): recorded {:#018x}, computed {:#018x} "
                          "over {} bytes at offset {}",
                          kHeaderManifestChecksumOffset, pack.manifest_checksum_, checksum, pack.manifest_bytes_,
                          pack.manifest_offset_));
  }
  pack.parse_manifest(manifest);
  return pack;
}

void Pack::parse_header(const std::vector<std::byte>& header) {
  if (std::memcmp(header.data(), kMagic, sizeof(kMagic)) != 0) {
    std::string found;
    for (std::size_t i = 0; i < sizeof(kMagic); ++i) found += fmt::format("{:02x}", static_cast<unsigned>(header[i]));
    fail(fmt::format("bad magic at offset 0: expected \"SLUICEPK\", found bytes {}", found));
  }
  // Version before the checksum: a future version may lay out (and checksum) its header differently.
  version_ = static_cast<std::uint32_t>(load_le(header, kHeaderVersionOffset, sizeof(std::uint32_t)));
  if (version_ < kMinVersion || version_ > kVersion) {
    fail(fmt::format("unsupported version {} at offset {} (this build reads versions {} to {})", version_,
                     kHeaderVersionOffset, kMinVersion, kVersion));
  }
  const std::uint64_t stored = load_le(header, kHeaderChecksumOffset, sizeof(std::uint64_t));
  Header fields;
  fields.version = version_;
  fields.flags = static_cast<std::uint32_t>(load_le(header, kHeaderFlagsOffset, sizeof(std::uint32_t)));
  fields.manifest_offset = load_le(header, kHeaderManifestOffsetOffset, sizeof(std::uint64_t));
  fields.manifest_bytes = load_le(header, kHeaderManifestBytesOffset, sizeof(std::uint64_t));
  fields.manifest_checksum = load_le(header, kHeaderManifestChecksumOffset, sizeof(std::uint64_t));
  // Re-encoding the decoded fields reproduces the header's first 40 bytes exactly, so its
  // checksum is the checksum of those bytes.
  const std::uint64_t expected = load_le(encode_header(fields), kHeaderChecksumOffset, sizeof(std::uint64_t));
  if (stored != expected) {
    fail(fmt::format("header checksum mismatch at offset {}: recorded {:#018x}, computed {:#018x}",
                     kHeaderChecksumOffset, stored, expected));
  }
  if (fields.flags != 0) {
    fail(fmt::format("unsupported flags {:#x} at offset {} (version {} defines none)", fields.flags,
                     kHeaderFlagsOffset, version_));
  }
  manifest_offset_ = fields.manifest_offset;
  manifest_bytes_ = fields.manifest_bytes;
  manifest_checksum_ = fields.manifest_checksum;
  if (manifest_offset_ < kHeaderBytes) {
    fail(fmt::format("manifest offset {} (header offset {}) overlaps the {}-byte header", manifest_offset_,
                     kHeaderManifestOffsetOffset, kHeaderBytes));
  }
  if (manifest_offset_ % kExtentAlign != 0) {
    fail(fmt::format("manifest offset {} (header offset {}) is not {}-aligned", manifest_offset_,
                     kHeaderManifestOffsetOffset, kExtentAlign));
  }
  if (manifest_bytes_ == 0 || manifest_bytes_ > kMaxManifestBytes) {
    fail(fmt::format("manifest size {} (header offset {}) is outside [1, {}]", manifest_bytes_,
                     kHeaderManifestBytesOffset, kMaxManifestBytes));
  }
  if (!range_within(manifest_offset_, manifest_bytes_, file_size_)) {
    fail(fmt::format("manifest at offset {} of {} bytes (header offsets {}, {}) lies outside the file of {} bytes",
                     manifest_offset_, manifest_bytes_, kHeaderManifestOffsetOffset, kHeaderManifestBytesOffset,
                     file_size_));
  }
}

void Pack::parse_manifest(const std::vector<std::byte>& manifest) {
  if (json_depth(manifest, kMaxManifestDepth) > kMaxManifestDepth) {
    fail(fmt::format("manifest at offset {} nests deeper than {} levels", manifest_offset_, kMaxManifestDepth));
  }
  json root;
  try {
    const char* text = reinterpret_cast<const char*>(manifest.data());
    root = json::parse(text, text + manifest.size());
  } catch (const json::exception& e) {
    fail(fmt::format("manifest at offset {} is not valid JSON: {}", manifest_offset_, e.what()));
  }
  const ManifestParser p(path_);
  if (!root.is_object()) p.fail("(top level)", "the manifest is not a JSON object");
  const std::string format = p.string(root, "format", "");
  if (format != "sluice-pack") p.fail("format", fmt::format("\"{}\" is not \"sluice-pack\"", format));
  const std::uint64_t version = p.u64(root, "version", "");
  if (version != version_) p.fail("version", fmt::format("{} differs from the header's version {}", version, version_));
  frame_bytes_ = static_cast<std::uint32_t>(p.u64_max(root, "frame_bytes", "", kMaxFrameBytes));
  if (frame_bytes_ == 0) p.fail("frame_bytes", "must be > 0");
  metadata_ = p.member(root, "metadata", "");
  if (!metadata_.is_object()) p.fail("metadata", "not a JSON object");
  if (const auto it = root.find("compression_policy"); it != root.end() && it->is_object()) compression_policy_ = *it;

  const json& extents = p.array(root, "extents", "");
  extents_.reserve(extents.size());
  // Extents lie in file order between the header and the manifest, without overlapping.
  std::uint64_t previous_end = kHeaderBytes;
  for (std::size_t e = 0; e < extents.size(); ++e) {
    const std::string where = fmt::format("extents[{}]", e);
    const json& item = extents[e];
    ExtentInfo extent;
    extent.name = p.string(item, "name", where);
    // Streaming code indexes blocks by the N of "blk.N": it must parse (its range against the
    // model's block_count is check_model_tensors' part).
    if (is_block_name(extent.name) && !block_extent_index(extent.name) && !names::experts_extent_index(extent.name)) {
      p.fail(where + ".name", fmt::format("\"{}\" starts with \"blk.\" but is not blk.N with N at most {} digits",
                                          extent.name, kMaxBlockIndexDigits));
    }
    extent.offset = p.u64(item, "offset", where);
    extent.disk_bytes = p.u64(item, "disk_bytes", where);
    extent.raw_bytes = p.u64(item, "raw_bytes", where);
    if (extent.offset % kExtentAlign != 0) {
      p.fail(where + ".offset", fmt::format("{} is not {}-aligned", extent.offset, kExtentAlign));
    }
    if (!range_within(extent.offset, extent.disk_bytes, file_size_)) {
      p.fail(where, fmt::format("extent at offset {} of {} bytes lies outside the file of {} bytes", extent.offset,
                                extent.disk_bytes, file_size_));
    }
    if (extent.offset < previous_end || extent.offset + extent.disk_bytes > manifest_offset_) {
      p.fail(where, fmt::format("extent at offset {} of {} bytes overlaps the header, a previous extent or the "
                                "manifest (allowed range [{}, {}))",
                                extent.offset, extent.disk_bytes, previous_end, manifest_offset_));
    }
    previous_end = extent.offset + extent.disk_bytes;

    const json& frames = p.array(item, "frames", where);
    extent.frames.reserve(frames.size());
    std::uint64_t next_offset = extent.offset;
    std::uint64_t raw_sum = 0;
    for (std::size_t i = 0; i < frames.size(); ++i) {
      const std::string fwhere = fmt::format("{}.frames[{}]", where, i);
      const json& fitem = frames[i];
      FrameInfo frame;
      frame.offset = p.u64(fitem, "offset", fwhere);
      const std::uint64_t disk_bytes = p.u64(fitem, "disk_bytes", fwhere);
      const std::uint64_t raw_bytes = p.u64(fitem, "raw_bytes", fwhere);
      const std::string codec = p.string(fitem, "codec", fwhere);
      frame.checksum = p.u64(fitem, "checksum", fwhere);
      if (frame.offset != next_offset) {
        p.fail(fwhere + ".offset", fmt::format("{} is not contiguous: expected {} (frames run back to back from "
                                               "the extent offset)",
                                               frame.offset, next_offset));
      }
      if (disk_bytes == 0 || disk_bytes > kMaxFrameBytes) {
        p.fail(fwhere + ".disk_bytes", fmt::format("frame size {} is outside [1, {}]", disk_bytes, kMaxFrameBytes));
      }
      if (raw_bytes == 0 || raw_bytes > frame_bytes_) {
        p.fail(fwhere + ".raw_bytes",
               fmt::format("frame size {} is outside [1, frame_bytes = {}]", raw_bytes, frame_bytes_));
      }
      if (!range_within(frame.offset, disk_bytes, file_size_)) {
        p.fail(fwhere, fmt::format("frame at offset {} of {} bytes lies outside the file of {} bytes", frame.offset,
                                   disk_bytes, file_size_));
      }
      if (codec == "raw") {
        frame.codec = Codec::raw;
        if (disk_bytes != raw_bytes) {
          p.fail(fwhere, fmt::format("raw frame with disk_bytes {} != raw_bytes {}", disk_bytes, raw_bytes));
        }
      } else if (codec == "zstd") {
        frame.codec = Codec::zstd;
      } else {
        p.fail(fwhere + ".codec", fmt::format("unknown codec \"{}\" (expected \"raw\" or \"zstd\")", codec));
      }
      frame.disk_bytes = static_cast<std::uint32_t>(disk_bytes);
      frame.raw_bytes = static_cast<std::uint32_t>(raw_bytes);
      next_offset = frame.offset + disk_bytes;
      raw_sum += raw_bytes;  // cannot overflow: each frame adds <= 64 MiB and there are < 2^28 frames
      extent.frames.push_back(frame);
    }
    if (next_offset - extent.offset != extent.disk_bytes) {
      p.fail(where + ".disk_bytes", fmt::format("{} differs from the sum of its frames' disk_bytes, {}",
                                                extent.disk_bytes, next_offset - extent.offset));
    }
    if (raw_sum != extent.raw_bytes) {
      p.fail(where + ".raw_bytes",
             fmt::format("{} differs from the sum of its frames' raw_bytes, {}", extent.raw_bytes, raw_sum));
    }
    if (item.contains("expert_bytes")) check_expert_extent(p, item, where, version_, extent);
    extents_.push_back(std::move(extent));
  }

  const json& tensors = p.array(root, "tensors", "");
  tensors_.reserve(tensors.size());
  for (std::size_t t = 0; t < tensors.size(); ++t) {
    const std::string where = fmt::format("tensors[{}]", t);
    const json& item = tensors[t];
    TensorInfo tensor;
    tensor.name = p.string(item, "name", where);
    tensor.type = static_cast<std::uint32_t>(p.u64_max(item, "type", where, std::numeric_limits<std::uint32_t>::max()));
    const json& shape = p.array(item, "shape", where);
    if (shape.size() > kMaxTensorDims) {
      p.fail(where + ".shape", fmt::format("{} dimensions exceed the limit of {}", shape.size(), kMaxTensorDims));
    }
    for (std::size_t d = 0; d < shape.size(); ++d) {
      if (!shape[d].is_number_unsigned()) p.fail(fmt::format("{}.shape[{}]", where, d), "expected an unsigned integer");
      tensor.shape.push_back(shape[d].get<std::uint64_t>());
    }
    const std::uint64_t extent = p.u64(item, "extent", where);
    if (extent >= extents_.size()) {
      p.fail(where + ".extent", fmt::format("extent index {} out of range (the pack has {} extents)", extent,
                                            extents_.size()));
    }
    tensor.extent = static_cast<std::uint32_t>(extent);
    tensor.offset = p.u64(item, "offset", where);
    tensor.bytes = p.u64(item, "bytes", where);
    if (tensor.offset % kTensorAlign != 0) {
      p.fail(where + ".offset", fmt::format("{} is not {}-byte aligned", tensor.offset, kTensorAlign));
    }
    const std::uint64_t raw_bytes = extents_[extent].raw_bytes;
    if (!range_within(tensor.offset, tensor.bytes, raw_bytes)) {
      p.fail(where, fmt::format("tensor '{}' at offset {} of {} bytes lies beyond extent {}'s {} raw bytes",
                                tensor.name, tensor.offset, tensor.bytes, extent, raw_bytes));
    }
    // After the range check: offset + bytes cannot overflow there.
    if (item.contains("expert_stride")) check_expert_tensor(p, item, where, extents_[extent], tensor);
    if (extents_[extent].expert_bytes != 0 && tensor.expert_stride == 0) {
      p.fail(where, fmt::format("tensor '{}' lies in expert extent {} without an expert_stride", tensor.name, extent));
    }
    // Kernels read type x shape bytes from the offset, so the recorded size must be exactly that.
    if (auto why = tensor_bytes_error(tensor.type, tensor.shape, tensor.bytes)) {
      p.fail(where, fmt::format("tensor '{}': {}", tensor.name, *why));
    }
    auto [it, inserted] = tensor_index_.emplace(tensor.name, t);
    if (!inserted) {
      p.fail(where + ".name", fmt::format("duplicate tensor name '{}' (also tensors[{}])", tensor.name, it->second));
    }
    tensors_.push_back(std::move(tensor));
  }
}

const TensorInfo* Pack::find_tensor(std::string_view name) const {
  auto it = tensor_index_.find(std::string(name));
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

std::vector<Error> Pack::verify_all(std::function<void(std::size_t extents_done)> progress) const {
  std::vector<Error> errors;
  std::vector<std::byte> stored;
  for (std::size_t e = 0; e < extents_.size(); ++e) {
    const ExtentInfo& extent = extents_[e];
    std::size_t first = 0;
    while (first < extent.frames.size()) {
      // A batch: contiguous frames up to kVerifyBatchBytes (at least one), read with one read.
      std::size_t end = first;
      std::uint64_t batch_bytes = 0;
      while (end < extent.frames.size() &&
             (end == first || batch_bytes + extent.frames[end].disk_bytes <= kVerifyBatchBytes)) {
        batch_bytes += extent.frames[end].disk_bytes;
        ++end;
      }
      const std::uint64_t batch_offset = extent.frames[first].offset;
      stored.resize(batch_bytes);
      if (Status s = read_at(stored, batch_offset); !s.ok()) {
        for (std::size_t i = first; i < end; ++i) {
          errors.push_back(Error{s.error().kind, s.error().sys_errno,
                                 fmt::format("{}: {}", frame_where(*this, e, i), s.error().message)});
        }
        first = end;
        continue;
      }
      std::vector<std::optional<Error>> results(end - first);
      tbb::parallel_for(tbb::blocked_range<std::size_t>(first, end), [&](const tbb::blocked_range<std::size_t>& r) {
        std::vector<std::byte> raw;
        for (std::size_t i = r.begin(); i != r.end(); ++i) {
          const FrameInfo& frame = extent.frames[i];
          try {
            raw.resize(frame.codec == Codec::zstd ? frame.raw_bytes : 0);
            const std::span<const std::byte> frame_stored{stored.data() + (frame.offset - batch_offset),
                                                          frame.disk_bytes};
            results[i - first] = check_frame(*this, e, i, frame_stored, raw);
          } catch (const std::exception& ex) {  // bad_alloc: report it, never throw out of a task
            results[i - first] = Error{ErrorKind::io, 0, fmt::format("{}: {}", frame_where(*this, e, i), ex.what())};
          }
        }
      });
      for (auto& result : results) {
        if (result) errors.push_back(std::move(*result));
      }
      first = end;
    }
    if (progress) progress(e + 1);
  }
  return errors;
}

Result<std::vector<std::byte>> Pack::read_extent(std::size_t index) const {
  if (index >= extents_.size()) {
    return Error{ErrorKind::invalid, 0,
                 fmt::format("pack {}: extent index {} out of range (the pack has {} extents)", path_, index,
                             extents_.size())};
  }
  const ExtentInfo& extent = extents_[index];
  std::vector<std::byte> raw(extent.raw_bytes);
  // All-raw extents are read straight into the result; others through a staging buffer.
  std::vector<std::byte> staging(extent.all_raw() ? 0 : extent.disk_bytes);
  std::span<std::byte> stored = extent.all_raw() ? std::span<std::byte>(raw) : std::span<std::byte>(staging);
  if (Status s = read_at(stored, extent.offset); !s.ok()) return s.error();

  std::vector<std::uint64_t> raw_offsets(extent.frames.size());
  for (std::size_t i = 1; i < extent.frames.size(); ++i) {
    raw_offsets[i] = raw_offsets[i - 1] + extent.frames[i - 1].raw_bytes;
  }
  std::vector<std::optional<Error>> results(extent.frames.size());
  const tbb::blocked_range<std::size_t> all_frames(0, extent.frames.size());
  tbb::parallel_for(all_frames, [&](const tbb::blocked_range<std::size_t>& r) {
    for (std::size_t i = r.begin(); i != r.end(); ++i) {
      const FrameInfo& frame = extent.frames[i];
      const std::uint64_t raw_offset = raw_offsets[i];
      try {
        const std::span<const std::byte> frame_stored{stored.data() + (frame.offset - extent.offset), frame.disk_bytes};
        results[i] = check_frame(*this, index, i, frame_stored, {raw.data() + raw_offset, frame.raw_bytes});
        if (!results[i] && frame.codec == Codec::raw && !extent.all_raw()) {
          std::memcpy(raw.data() + raw_offset, frame_stored.data(), frame.raw_bytes);
        }
      } catch (const std::exception& ex) {  // never throw out of a task
        results[i] = Error{ErrorKind::io, 0, fmt::format("{}: {}", frame_where(*this, index, i), ex.what())};
      }
    }
  });
  for (auto& result : results) {
    if (result) return std::move(*result);
  }
  return raw;
}

Result<std::vector<std::byte>> Pack::read_frame(std::size_t index, std::size_t frame_index) const {
  if (index >= extents_.size() || frame_index >= extents_[index].frames.size()) {
    return Error{ErrorKind::invalid, 0, fmt::format("pack {}: no frame {} in extent {}", path_, frame_index, index)};
  }
  const FrameInfo& frame = extents_[index].frames[frame_index];
  std::vector<std::byte> stored(frame.disk_bytes);
  if (Status s = read_at(stored, frame.offset); !s.ok()) return s.error();
  std::vector<std::byte> raw(frame.raw_bytes);
  try {
    if (auto error = check_frame(*this, index, frame_index, stored, raw)) return std::move(*error);
  } catch (const std::exception& ex) {
    return Error{ErrorKind::io, 0, fmt::format("{}: {}", frame_where(*this, index, frame_index), ex.what())};
  }
  if (frame.codec == Codec::raw) return stored;
  return raw;
}

}  // namespace sluice::pack
