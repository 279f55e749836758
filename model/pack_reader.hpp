// Opens and validates pack files (format v1, pack_format.hpp): header, manifest, extent and
// frame tables, tensor table. After open() every offset and size in the tables is known to lie
// inside the file, every tensor's byte count equals its ggml type x shape, and every "blk.N"
// extent name parses, so streaming code can use them without re-checking. Also whole-file
// verification (`sluice inspect --verify`) and a simple whole-extent read path.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "common/result.hpp"
#include "model/pack_format.hpp"

namespace sluice::io {
struct FaultPlan;
class File;
}  // namespace sluice::io

namespace sluice::pack {

// Thrown by Pack::open for a file that cannot be opened or is not a valid pack. The message names
// the file and the offset or manifest field that is wrong.
class PackError : public Exception {
 public:
  explicit PackError(const std::string& message, ErrorKind kind = ErrorKind::corrupt) : Exception(ErrorContext{kind}, message) {}
};

// Limits on what a manifest may contain beyond those in pack_format.hpp. Every name a person will
// read is short (ggml caps tensor names at 64 bytes); 1 KiB leaves room for descriptive names.
inline constexpr std::size_t kMaxNameBytes = 1024;
inline constexpr std::size_t kMaxTensorDims = 8;  // ggml uses 4
// Deeper JSON nesting than any manifest needs; bounds the parser's work on hostile input.
inline constexpr std::size_t kMaxManifestDepth = 64;
// Batch size for verify_all: enough frames to keep every core decoding, small enough to stay
// well inside any memory budget.
inline constexpr std::uint64_t kVerifyBatchBytes = 64ull << 20;

struct PackOptions {
  // Tests: number every read of the pack (header, manifest, frames, extents) with this plan
  // (io/fault_backend.hpp). Must outlive the Pack.
  const io::FaultPlan* fault = nullptr;
};

// An open, validated pack. Move-only (owns the file). All const methods are thread-safe: reads
// go through one io::File (io/file.hpp: the io/ retry and error policy; serialised).
class Pack {
 public:
  // Opens and validates `path`. Throws PackError (file + offset/field) on any problem, a read
  // failure included (the message names the file, offset and errno).
  static Pack open(const std::string& path, const PackOptions& options = {});

  Pack(Pack&& other) noexcept;
  Pack& operator=(Pack&& other) noexcept;
  Pack(const Pack&) = delete;
  Pack& operator=(const Pack&) = delete;
  ~Pack();

  const std::string& path() const { return path_; }
  int fd() const;  // owned by the Pack; valid while it lives
  std::uint64_t file_size() const { return file_size_; }
  std::uint32_t version() const { return version_; }
  std::uint32_t frame_bytes() const { return frame_bytes_; }
  const nlohmann::json& metadata() const { return metadata_; }
  // Frees one metadata key (e.g. the vocabulary arrays once a tokenizer holds them).
  void erase_metadata_key(const std::string& key) { metadata_.erase(key); }
  // What `convert --compress auto` decided and why (convert_policy.cpp writes it); null if absent.
  // Informational: nothing reading the pack depends on it, so its contents are not checked.
  const nlohmann::json& compression_policy() const { return compression_policy_; }
  const std::vector<ExtentInfo>& extents() const { return extents_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  std::uint64_t manifest_offset() const { return manifest_offset_; }
  std::uint64_t manifest_bytes() const { return manifest_bytes_; }

  // The tensor named `name`, or nullptr.
  const TensorInfo* find_tensor(std::string_view name) const;

  // Reads every frame (pread), checks its checksum and decodes it. Returns one Error per bad
  // frame, naming extent index and name, frame index and file offset; empty means all good.
  // `progress` (optional) is called after each extent with the number of extents done.
  // Memory: at most ~kVerifyBatchBytes of buffers at a time.
  std::vector<Error> verify_all(std::function<void(std::size_t extents_done)> progress = {}) const;

  // Reads extent `index` whole, verifies and decodes it: its raw_bytes bytes. Simple path for
  // tests, inspect and small tools (the streaming engine reads frames itself).
  Result<std::vector<std::byte>> read_extent(std::size_t index) const;
  // Reads, verifies and decodes one frame of an extent: its raw_bytes bytes. For reading a few
  // rows of a tensor (embedding rows on demand) without the whole extent.
  Result<std::vector<std::byte>> read_frame(std::size_t extent, std::size_t frame) const;

 private:
  Pack() = default;
  void parse_header(const std::vector<std::byte>& header);
  void parse_manifest(const std::vector<std::byte>& manifest);
  [[noreturn]] void fail(const std::string& what) const;

  // Reads exactly bytes.size() bytes at `offset`; the error names the pack, offset and errno.
  Status read_at(std::span<std::byte> bytes, std::uint64_t offset) const;

  std::string path_;
  std::unique_ptr<io::File> file_;
  std::uint64_t file_size_ = 0;
  std::uint32_t version_ = 0;
  std::uint32_t frame_bytes_ = 0;
  std::uint64_t manifest_offset_ = 0;
  std::uint64_t manifest_bytes_ = 0;
  std::uint64_t manifest_checksum_ = 0;
  nlohmann::json metadata_;
  nlohmann::json compression_policy_;
  std::vector<ExtentInfo> extents_;
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string, std::size_t> tensor_index_;
};

}  // namespace sluice::pack
