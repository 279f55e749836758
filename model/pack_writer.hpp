// Writes pack files (format v1, or v2 with expert extents: pack_format.hpp): extents of tensors or plain bytes, framed and
// compressed in parallel, then the manifest and the header; atomically, in bounded memory. Used by `sluice convert`, tests and
// the synthetic packs of benchmarks and demos.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <unordered_set>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/compress_policy.hpp"
#include "model/output_file.hpp"
#include "model/pack_format.hpp"

namespace sluice::pack {

struct WriterOptions {
  // Raw bytes per frame: 1 MiB keeps per-frame decode latency well under a millisecond while
  // leaving enough frames per extent to decompress in parallel.
  std::uint32_t frame_bytes = 1u << 20;
  // auto_: try zstd per frame and keep it only if it saves at least min_saving of the frame and,
  // when `cost` is set, only if decide_compression(frame, cost) says the read time saved exceeds
  // the decode time; none: store raw always; zstd: keep zstd whenever its output is smaller.
  enum class Compress { auto_, none, zstd } compress = Compress::auto_;
  int zstd_level = 3;  // zstd's default: ~300 MB/s per core, most of the ratio of higher levels
  // Below a 5% saving the decode cost outweighs the I/O saved at NVMe speeds.
  double min_saving = 0.05;
  // convert_gguf_to_pack only: a mixture-of-experts block's ffn_{gate,up,down}_exps go to an
  // expert extent "blk.N.exps" of their own (format v2), so each expert reads alone; false: they
  // stay in the block's extent (v1; the pack then streams every expert with its block).
  bool expert_extents = true;
  // auto_ only: the measured (or given) cost model; unset (disk_bytes_per_s == 0): min_saving alone.
  CompressionCost cost{};
  // auto_ only: tensors of these GGML types are stored raw without trying zstd (the policy found
  // that zstd does not pay for the type). A frame follows the tensor its first byte belongs to.
  std::unordered_set<std::uint32_t> raw_types;
  // Written to the manifest as "compression_policy" when not null (what was decided and why).
  nlohmann::json policy_record;
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
// must follow: [set_metadata] (begin_extent (add_tensor | begin_tensor add_bytes* | add_bytes)*
// end_extent | begin_expert_extent add_bytes* end_extent)* finish. Calling out of order is a programmer error (assertion). I/O failures and
// bad input throw std::runtime_error naming the file.
//
// The file is written under a temporary name (OutputFile) and renamed onto `path` by finish():
// a writer destroyed before finish(), or killed, leaves nothing under `path` (an existing file
// there is untouched). Memory is bounded by the frame size, not by tensor or extent size: bytes
// are framed, compressed and written a batch of frames at a time (about 2 x frames_per_batch x
// frame_bytes of buffers), and written ranges leave the page cache as the file grows. The
// manifest (a few hundred bytes per frame and tensor) is the only part that grows with the model.
class PackWriter {
 public:
  // Creates the temporary file next to `path` (replacing a stale one). Throws std::runtime_error
  // (path + strerror) if it cannot, and std::invalid_argument for out-of-range options.
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

  // Streams a tensor of `bytes` bytes: starts it like add_tensor, then exactly `bytes` bytes must
  // follow through add_bytes (in pieces of any size) before the next tensor or end_extent.
  void begin_tensor(std::string name, std::uint32_t ggml_type, std::vector<std::uint64_t> shape,
                    std::uint64_t bytes);

  // Appends bytes to the current extent: the open tensor's next bytes, or untyped bytes
  // (unaligned; synthetic extents, padding) when no tensor is open.
  void add_bytes(std::span<const std::byte> bytes);

  // One stacked expert tensor of an expert extent: shape [.., .., n_expert] (the expert the
  // slowest dimension, as in GGUF), `bytes` for all experts together.
  struct ExpertTensor {
    std::string name;
    std::uint32_t ggml_type = 0;
    std::vector<std::uint64_t> shape;
    std::uint64_t bytes = 0;
  };
  // Starts an expert extent (pack_format.hpp item 5): the tensors' slices laid expert-major,
  // each expert 4096-aligned, frames raw and cut at every expert's end. Then add_bytes must
  // deliver expert 0's slice of tensors[0], of tensors[1], ..., then expert 1's, ... (pieces of
  // any size, no padding: the writer pads), and end_extent follows the last. Throws
  // std::invalid_argument when the tensors disagree on n_expert or do not split into whole
  // experts, std::runtime_error on a duplicate name. Marks the pack version 2.
  void begin_expert_extent(std::string name, std::vector<ExpertTensor> tensors);

  // Writes the extent's last frames and pads the file to the next kExtentAlign boundary.
  void end_extent();

  // Writes the manifest (kExtentAlign-aligned, after the last extent), then the header, fsyncs
  // the file and renames it onto path(). The writer accepts no more calls afterwards.
  void finish();

  const WriterStats& stats() const { return stats_; }
  const std::string& path() const { return path_; }
  // Frames compressed and written together: enough to keep every TBB worker busy.
  std::size_t frames_per_batch() const { return frames_per_batch_; }

 private:
  // Frames, compresses (in parallel), checksums and writes the staged raw bytes: whole frames,
  // plus the short last frame and the extent's padding when `last` is true.
  void flush_frames(bool last);
  // Stages raw bytes of the current extent, flushing whole batches of frames.
  void stage(std::span<const std::byte> bytes);
  // Stages zeros up to raw offset `to` of the current extent.
  void pad_to(std::uint64_t to);
  // An expert extent's bytes: routed to the open slice, padding between slices and experts.
  void add_expert_bytes(std::span<const std::byte> bytes);
  // Chooses a codec per frame of `raw_` and fills `frames` (offsets relative to the batch) and
  // `encoded_`.
  void encode_frames(std::span<FrameInfo> frames);

  std::string path_;
  WriterOptions options_;
  std::unique_ptr<OutputFile> out_;
  std::size_t frames_per_batch_ = 1;
  bool in_extent_ = false;
  bool finished_ = false;
  std::uint64_t next_offset_ = kHeaderBytes;  // where the next frame (or extent) starts
  nlohmann::json metadata_ = nlohmann::json::object();
  std::vector<ExtentInfo> extents_;
  std::vector<TensorInfo> tensors_;
  std::unordered_set<std::string> tensor_names_;
  // The current extent's tensors as (raw offset, stored raw by raw_types), in offset order.
  std::vector<std::pair<std::uint64_t, bool>> raw_zones_;
  // The current extent: its raw bytes so far (written and staged), and the open tensor's bytes
  // still to come.
  ExtentInfo extent_;
  std::uint64_t extent_raw_bytes_ = 0;
  std::uint64_t tensor_bytes_left_ = 0;
  std::vector<std::byte> raw_;      // staged raw bytes: up to frames_per_batch frames
  std::vector<std::byte> encoded_;  // a batch's stored bytes when compressing
  WriterStats stats_;
  // The open expert extent (begin_expert_extent): each slice's offset within an expert and its
  // bytes, bytes per expert, the expert and slice being added and that slice's bytes still due.
  bool expert_extent_ = false;
  bool any_expert_extent_ = false;  // the pack is version 2
  std::vector<std::uint64_t> slice_offset_, slice_bytes_;
  std::uint64_t expert_bytes_ = 0, n_expert_ = 0, expert_ = 0, slice_left_ = 0;
  std::size_t slice_ = 0;
};

// Writes a pack of ceil(total_bytes / extent_bytes) extents named "synthetic.N" (the last one
// shorter if needed) holding pseudo-random bytes from `seed`. In every 4 KiB chunk the first
// `compressible_fraction` (clamped to [0, 1]) of the bytes repeat an 8-byte pattern and the rest
// are random, so zstd removes roughly that fraction. No tensors; metadata records the parameters.
// Deterministic for a given seed. Throws like PackWriter.
void write_synthetic_pack(const std::string& path, std::uint64_t total_bytes, std::uint64_t extent_bytes,
                          WriterOptions options, std::uint64_t seed, double compressible_fraction);

}  // namespace sluice::pack
