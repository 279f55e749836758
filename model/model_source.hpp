// What the planner and the streamed forward pass need of a model file, whatever its format: the
// metadata, the tensor table, the read units and how to read them. A pack implements it today
// (model/pack_source.hpp), and a GGUF, split or not (model/gguf_source.hpp).
//
//  - Tensors: name, ggml type, shape, byte count, the read unit holding the tensor and its raw
//    (decoded) offset within that unit (pack::TensorInfo).
//  - Read units: what the prefetcher reads whole into a ring slot (pack::ExtentInfo): a range of
//    the file with its stored and raw sizes, cut into frames, each read, verified and decoded on
//    its own. A pack's unit is an extent (a block, the embedding, the head) and its frames carry
//    checksums and a codec. A GGUF unit would be one range of raw bytes (a block's tensors are
//    contiguous), its offset rounded down to the direct-I/O block as prefetch::extent_pieces
//    does, with frames as 1 MiB raw chunks: verification needs a sidecar index of checksums
//    (or none: frames_checksummed() is then false). A GGUF unit whose tensors lie in several
//    ranges (a block split over shards, or interleaved with another extent's tensors) lists
//    them in ReadUnit::ranges, each naming its file in files(); a pack's units lie in path().
//  - Small reads: read_frame (one frame of a unit, verified and decoded), on which
//    read_unit_range builds every read of a byte range the engine makes outside the ring
//    (resident units, embedding rows on demand, small globals).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/aligned_buffer.hpp"
#include "common/error.hpp"
#include "common/result.hpp"
#include "model/metadata.hpp"
#include "model/model_config.hpp"
#include "model/pack_format.hpp"

namespace sluice {
namespace io {
struct FaultPlan;
}  // namespace io

using ReadUnit = pack::ExtentInfo;
using SourceTensor = pack::TensorInfo;

// Thread safety: const methods may be called from several threads (reads are serialised inside).
class ModelSource {
 public:
  virtual ~ModelSource() = default;

  // The model's (first) file; errors that concern no one unit name it.
  virtual const std::string& path() const = 0;
  // The files read units lie in (ExtentRange::file indexes it): path() alone for a pack, every
  // shard of a split GGUF.
  virtual std::vector<std::string> files() const { return {path()}; }
  // A view of the model's key/value metadata (valid while the source lives).
  virtual std::unique_ptr<Metadata> metadata() const = 0;
  // Frees one metadata key (the vocabulary arrays once a tokenizer holds them).
  virtual void erase_metadata_key(const std::string& key) = 0;
  // The config from the metadata, checked against the tensor table (model/tensor_check.hpp):
  // throws naming the file and the key or tensor at fault.
  virtual ModelConfig checked_config() const = 0;

  virtual const std::vector<SourceTensor>& tensors() const = 0;
  // The tensor named `name`, or nullptr.
  virtual const SourceTensor* find_tensor(std::string_view name) const = 0;
  virtual const std::vector<ReadUnit>& units() const = 0;

  // Reads one frame of a unit, verified and decoded: its raw_bytes bytes. The error names the
  // file, the unit, the frame and the offset.
  virtual Result<std::vector<std::byte>> read_frame(std::uint32_t unit, std::size_t frame) const = 0;
  // The whole unit, raw, verified, in a buffer aligned for O_DIRECT (resident weights). By default
  // frame by frame through read_frame; a source may read it straight into the buffer with many
  // reads in flight (GgufSource). Throws sluice::Exception as read_unit_range does.
  virtual AlignedBuffer read_whole_unit(std::uint32_t unit) const;
  // Hints that a unit read whole will not be read again through the page cache (best effort).
  virtual void release_page_cache(std::uint32_t unit) const { (void)unit; }
  // The tensors whose bytes lie in [offset, offset + bytes) of `file` (one of files()), in file
  // order, comma-separated; empty when the source cannot say. Errors about a read range (a
  // checksum chunk of a GGUF sidecar holds several tensors) name them with it.
  virtual std::string tensors_at(const std::string& file, std::uint64_t offset, std::uint64_t bytes) const {
    (void)file, (void)offset, (void)bytes;
    return {};
  }
  // Whether every frame carries a checksum the prefetcher can verify (a pack's always do; a
  // GGUF's only with its index sidecar): the caller sets PrefetchOptions::verify from it.
  virtual bool frames_checksummed() const { return true; }
  // What the plan table says of the source: its format and how its reads are verified.
  virtual std::string describe() const = 0;
};

// Frames held between calls of read_unit_range, so reads that share a frame read it once (the
// embedding rows of a batch, in ascending order). Holds at most the frames of one unit.
struct FrameCache {
  std::uint32_t unit = UINT32_MAX;
  std::map<std::size_t, std::vector<std::byte>> frames;  // by frame index
  std::uint64_t stored_bytes_read = 0;                   // stored bytes of every frame read
};

// Raw bytes [from, from + out.size()) of `unit`, read frame by frame through `source` (each frame
// verified and decoded). With `cache`, frames before the one holding `from` are dropped and the
// rest kept for the next call. Throws sluice::Exception (the frame's error kind; the context
// names the file, unit, frame and offset) on a failed read or a range past the unit's end.
void read_unit_range(const ModelSource& source, std::uint32_t unit, std::uint64_t from, std::span<std::byte> out,
                     FrameCache* cache = nullptr);
// The whole unit, raw.
std::vector<std::byte> read_unit(const ModelSource& source, std::uint32_t unit);

// The source for a model file, by its magic (detect_model_format): a PackSource or a GgufSource
// (any shard of a split model). `fault` (tests) numbers every read of it. Throws as their open does.
std::unique_ptr<ModelSource> open_model_source(const std::string& path, const io::FaultPlan* fault = nullptr);

}  // namespace sluice
