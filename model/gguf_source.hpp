// A GGUF file as a ModelSource (model/model_source.hpp): the planner and prefetcher stream it as
// they stream a pack, reading the tensor bytes in place (no conversion, nothing mapped).
//
//  - Units: one per extent of block_read_ranges (gguf_split.hpp): the embedding, each block, the
//    head, the rest; each the extent's ranges (ReadUnit::ranges: usually one; several when a
//    block spans two shards of a split model or another extent's tensors lie between its own),
//    each range in its shard's file, its offset rounded down to 4 KiB (to 1 MiB with an index),
//    its end rounded up and clamped to the end of that file. The ranges' bytes lie back to back
//    in the unit's raw bytes; a tensor sits at its range's start there plus its offset in the
//    range (32-byte aligned, as in the GGUF).
//  - Frames: raw 1 MiB pieces of a unit. With the model's index sidecar (gguf_index.hpp) the
//    frames are exactly its chunks and carry its XXH3 as their checksums, which is the pack's
//    frame convention (XXH3-64 seeded with the frame's file offset): the prefetcher verifies GGUF
//    reads with the code that verifies a pack's. Without a sidecar frames carry no checksum and
//    verified() is false: the caller must turn frame verification off and say reads are
//    unverified.
//  - Split models: files() lists every shard; the prefetcher reads each range from its own
//    shard's file, and every error names that shard.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "io/file.hpp"
#include "model/gguf_index.hpp"
#include "model/gguf_split.hpp"
#include "model/model_source.hpp"

namespace sluice {

class GgufSource final : public ModelSource {
 public:
  // Frames of a source without an index: nothing to verify, so they only set where a read may
  // start and end. 64 KiB: a block streamed in pieces (engine/block_pieces.hpp) reads a frame
  // twice where two of its tensor runs meet (llama.cpp's GGUFs hold a block's tensors in another
  // order than the pass uses them): Qwen2.5-1.5B re-read 18% of its streamed bytes with 1 MiB.
  static constexpr std::uint32_t kUnverifiedFrameBytes = 64u << 10;
  // Reads of read_whole_unit: a multiple of any index chunk size `sluice index` writes (1 MiB).
  static constexpr std::uint32_t kDirectReadBytes = 8u << 20;

  // Opens `path` (a GGUF, or any shard of a split model: every shard is opened), checks its
  // config against its tensors, loads its sidecar when there is one (a stale sidecar is an
  // error: re-run `sluice index`). `file_options` open the file read_frame reads (tests: a fault
  // plan). Throws gguf::GgufError / std::runtime_error naming the file and the fault.
  // `experts_apart` (a MoE model streamed expert by expert, engine/expert_store.hpp): each
  // block's ffn_*_exps tensors leave the block's unit for a unit "blk.N.exps" of their own, which
  // is never read whole.
  static std::unique_ptr<GgufSource> open(const std::string& path, const io::FileOptions& file_options = {},
                                          bool experts_apart = false);

  GgufSource(const GgufSource&) = delete;
  GgufSource& operator=(const GgufSource&) = delete;

  // Whether frames carry checksums (an index sidecar was found and matches).
  bool verified() const { return index_.has_value(); }
  const gguf::ShardSet& shards() const { return set_; }
  const std::optional<gguf::GgufIndex>& index() const { return index_; }
  // The options read_frame's files were opened with (a fault plan in tests, the retry policy).
  const io::FileOptions& file_options() const { return file_options_; }

  const std::string& path() const override { return set_.shards().front().path; }
  std::vector<std::string> files() const override;
  std::unique_ptr<Metadata> metadata() const override;
  void erase_metadata_key(const std::string& key) override { set_.erase_metadata_key(key); }
  ModelConfig checked_config() const override;
  const std::vector<SourceTensor>& tensors() const override { return tensors_; }
  const SourceTensor* find_tensor(std::string_view name) const override;
  const std::vector<ReadUnit>& units() const override { return units_; }
  // pread of the frame's bytes; with an index, verified against it (the error names the file,
  // the chunk's offset and the tensors in it). A file that shrank since it was opened is an I/O
  // error naming the file and offset.
  Result<std::vector<std::byte>> read_frame(std::uint32_t unit, std::size_t frame) const override;
  // O_DIRECT straight into the buffer, kDirectReadBytes per read with the backend's queue depth
  // in flight, each read verified against the index as it lands: the disk's speed, where reading
  // frame by frame (one synchronous 1 MiB read at a time) ran at a tenth of it.
  AlignedBuffer read_whole_unit(std::uint32_t unit) const override;
  void release_page_cache(std::uint32_t unit) const override;
  std::string tensors_at(const std::string& file, std::uint64_t offset, std::uint64_t bytes) const override;
  bool frames_checksummed() const override { return verified(); }
  // "gguf (1 file), reads verified by SIDECAR" or "..., reads unverified (no sidecar: run
  // `sluice index MODEL`)".
  std::string describe() const override;

 private:
  GgufSource(gguf::ShardSet set, std::optional<gguf::GgufIndex> index, io::FileOptions file_options)
      : set_(std::move(set)), index_(std::move(index)), file_options_(file_options) {}
  void build_units(std::int64_t n_layer, bool experts_apart);

  gguf::ShardSet set_;
  std::optional<gguf::GgufIndex> index_;
  io::FileOptions file_options_;
  std::vector<std::unique_ptr<io::File>> files_;  // by shard
  std::vector<ReadUnit> units_;
  std::vector<SourceTensor> tensors_;
  std::unordered_map<std::string, std::size_t> tensor_index_;
};

}  // namespace sluice
