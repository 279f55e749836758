// Writes pack files (format v1, pack_format.hpp): extents of tensors or plain bytes, framed and
// compressed in parallel, then the manifest and the header. Used by `sluice convert`, tests and
// the synthetic packs of benchmarks and demos.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <unordered_set>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/pack_format.hpp"

namespace sluice::pack {

struct WriterOptions {
  // Raw bytes per frame: 1 MiB keeps per-frame decode latency well under a millisecond while
  // leaving enough frames per extent to decompress in parallel.
  std::uint32_t frame_bytes = 1u << 20;
  // auto_: try zstd per frame and keep it only if it saves at least min_saving of the frame;
  // none: store raw always; zstd: keep zstd whenever its output is smaller than the frame.
  enum class Compress { auto_, none, zstd } compress = Compress::auto_;
  int zstd_level = 3;  // zstd's default: ~300 MB/s per core, most of the ratio of higher levels
  // Below a 5% saving the decode cost outweighs the I/O saved at NVMe speeds.
  double min_saving = 0.05;
};

struct WriterStats {
  std::uint64_t file_bytes = 0;    // bytes the file occupies so far (header, extents, padding, manifest)
  std::uint64_t raw_bytes = 0;     // sum of the extents' raw bytes
  std::uint64_t stored_bytes = 0;  // sum of the frames' stored bytes (no padding)
  std::uint64_t frames_raw = 0;
  std::uint64_t frames_zstd = 0;
  std::uint64_t extents = 0;
  std::uint64_t tensors = 0;
};

// Not thread-safe: one thread drives a writer (it uses TBB internally for compression). Calls
// must follow: [set_metadata] (begin_extent (add_tensor|add_bytes)* end_extent)* finish.
// Calling out of order is a programmer error (assertion). I/O failures and bad input throw
// std::runtime_error naming the file. A writer destroyed before finish() leaves a file with a
// zero header, which every reader rejects.
class PackWriter {
 public:
  // Creates or truncates `path`. Throws std::runtime_error (path + strerror) if it cannot, and
  // std::invalid_argument for out-of-range options.
  PackWriter(std::string path, WriterOptions options);
  ~PackWriter();
  PackWriter(const PackWriter&) = delete;
  PackWriter& operator=(const PackWriter&) = delete;

  // Sets the manifest's free-form "metadata" object (architecture, tokenizer, ...).
  void set_metadata(nlohmann::json metadata);

  // Starts a new extent named `name` (names need not be unique; tensor names must be).
  void begin_extent(std::string name);

  // Appends a tensor at the next kTensorAlign-aligned offset of the current extent's raw bytes
  // (zero padding before it). `bytes` is copied. Throws std::runtime_error on a duplicate name.
  void add_tensor(std::string name, std::uint32_t ggml_type, std::vector<std::uint64_t> shape,
                  std::span<const std::byte> bytes);

  // Appends untyped bytes to the current extent, unaligned (synthetic extents, padding).
  void add_bytes(std::span<const std::byte> bytes);

  // Frames the current extent, compresses frames in parallel, writes them with one pwrite and
  // pads the file to the next kExtentAlign boundary.
  void end_extent();

  // Writes the manifest (kExtentAlign-aligned, after the last extent), then the header, fsyncs
  // and closes the file. The writer accepts no more calls afterwards.
  void finish();

  const WriterStats& stats() const { return stats_; }
  const std::string& path() const { return path_; }

 private:
  void pwrite_all(std::span<const std::byte> bytes, std::uint64_t offset);
  // Chooses a codec per frame and fills `frames` (offsets relative to the extent) and `stored`.
  void encode_frames(std::vector<FrameInfo>& frames, std::vector<std::byte>& stored);

  std::string path_;
  WriterOptions options_;
  int fd_ = -1;
  bool in_extent_ = false;
  bool finished_ = false;
  std::uint64_t next_offset_ = kHeaderBytes;  // where the next extent starts
  nlohmann::json metadata_ = nlohmann::json::object();
  std::vector<ExtentInfo> extents_;
  std::vector<TensorInfo> tensors_;
  std::unordered_set<std::string> tensor_names_;
  std::vector<std::byte> raw_;  // the current extent's raw bytes (capacity reused across extents)
  std::string extent_name_;
  WriterStats stats_;
};

// Writes a pack of ceil(total_bytes / extent_bytes) extents named "synthetic.N" (the last one
// shorter if needed) holding pseudo-random bytes from `seed`. In every 4 KiB chunk the first
// `compressible_fraction` (clamped to [0, 1]) of the bytes repeat an 8-byte pattern and the rest
// are random, so zstd removes roughly that fraction. No tensors; metadata records the parameters.
// Deterministic for a given seed. Throws like PackWriter.
void write_synthetic_pack(const std::string& path, std::uint64_t total_bytes, std::uint64_t extent_bytes,
                          WriterOptions options, std::uint64_t seed, double compressible_fraction);

}  // namespace sluice::pack
