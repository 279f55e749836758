// A GGUF model as a set of shard files: llama.cpp's gguf-split layout, where a big model is cut
// into `PREFIX-00001-of-0000N.gguf` ... `PREFIX-0000N-of-0000N.gguf`, the first holding all the
// model's metadata, each holding some of the tensors with their data. A single unsplit file is a
// set of one. ShardSet finds the shards from any one's name, reads each header without mapping
// the data (gguf::File::open_header), checks that they belong together, and presents one tensor
// table with absolute file offsets, from which block_read_ranges() gives each block's reads.
//
// gguf-split conventions (llama.cpp examples/gguf-split/gguf-split.cpp, src/llama-model-loader.cpp):
//   - File names: "%s-%05d-of-%05d.gguf" with the shard number counted from 1 (llama_split_path).
//   - Keys on every shard: "split.no" (u16, counted from 0), "split.count" (u16, the number of
//     shards), "split.tensors.count" (i32, the model's tensor count over all shards).
//   - llama.cpp requires split.no on each shard to equal its position and the tensors found over
//     all shards to equal split.tensors.count, and refuses a tensor name seen twice.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "model/gguf.hpp"

namespace sluice::gguf {

inline constexpr std::string_view kSplitNoKey = "split.no";
inline constexpr std::string_view kSplitCountKey = "split.count";
inline constexpr std::string_view kSplitTensorsCountKey = "split.tensors.count";
// split.count is a u16 in llama.cpp, and the name spells it in 5 digits.
inline constexpr std::uint32_t kMaxShards = 65535;

// What a gguf-split file name says: "dir/model-00002-of-00004.gguf" -> {"dir/model", 2, 4}.
struct SplitName {
  std::string prefix;
  std::uint32_t number = 0;  // from 1, as in the name
  std::uint32_t count = 0;
};
// nullopt when `path` is not in gguf-split naming (or says shard 0, or a number past the count).
std::optional<SplitName> parse_split_name(std::string_view path);
// llama_split_path: the name of shard `number` (from 1) of `count`.
std::string split_path(std::string_view prefix, std::uint32_t number, std::uint32_t count);

struct Shard {
  std::string path;
  // When its header was read. A reader that opens the shard later checks the size it finds
  // against this one (a file replaced in between is then refused rather than misread).
  std::uint64_t file_size = 0;
  std::uint64_t data_offset = 0;  // of the data section: the header is [0, data_offset)
  std::uint64_t alignment = 0;
  std::uint64_t tensor_count = 0;
};

// One tensor of the model and where its bytes are.
struct ShardTensor {
  std::string name;
  std::uint32_t shard = 0;   // index into ShardSet::shards()
  std::uint64_t offset = 0;  // absolute byte offset of its data in the shard's file
  std::uint64_t bytes = 0;
  std::uint32_t type = 0;            // ggml type id
  std::vector<std::uint64_t> dims;   // ggml order
  std::uint64_t elements = 0;
};

// Move-only; all const methods thread-safe.
class ShardSet {
 public:
  // Opens the model at `path`: a single file, or any shard of a gguf-split set (all shards are
  // then opened, the first by name holding the metadata). Reads headers only. Throws GgufError
  // naming the shard file and the fault: a missing shard (all missing ones named), split.no,
  // split.count or split.tensors.count that disagree with the names or each other, a duplicate
  // tensor (both shards named), a shard whose general.architecture differs from the first's, a
  // single file whose split.count says it is part of a set.
  static ShardSet open(const std::string& path);

  const std::vector<Shard>& shards() const { return shards_; }
  // The first shard's header: the model's metadata (general.*, hyper-parameters, tokenizer).
  // Its tensors() are only the first shard's; use tensors() here for the whole model.
  const File& metadata() const { return *first_; }
  void erase_metadata_key(std::string_view key) { first_->erase_key(key); }
  const std::vector<ShardTensor>& tensors() const { return tensors_; }  // shard order, then file order
  const ShardTensor* find_tensor(std::string_view name) const;
  std::uint64_t tensor_bytes() const;  // the sum over tensors()

 private:
  ShardSet() = default;
  std::optional<File> first_;  // always set once open() returns
  std::vector<Shard> shards_;
  std::vector<ShardTensor> tensors_;
  std::unordered_map<std::string, std::size_t> tensor_index_;  // name -> index into tensors_
};

// One read of a shard, rounded out to the read granularity (4 KiB for O_DIRECT; whole index
// chunks when the reads are to be verified against a GgufIndex). The end may lie past the end
// of the file: io::Reader then reads the file's tail.
struct ReadRange {
  std::uint32_t shard = 0;
  std::uint64_t offset = 0;  // a multiple of the granularity
  std::uint64_t length = 0;  // a multiple of the granularity; may exceed a u32: split it to read
};

// A tensor inside the buffer an extent's ranges are read into, back to back in ranges order.
struct RangeTensor {
  std::size_t tensor = 0;              // index into ShardSet::tensors()
  std::size_t range = 0;               // which of the ranges holds it
  std::uint64_t buffer_offset = 0;     // of its first byte in the buffer
};

// The reads of one extent: a transformer block ("blk.N"), the embedding ("token_embd"), the
// head ("output": output_norm.weight and output.weight) or the rest ("misc": rope_freqs, ...).
struct ExtentRanges {
  std::string name;
  std::vector<ReadRange> ranges;     // by shard, then offset; never overlapping
  std::vector<RangeTensor> tensors;  // in file order
  std::uint64_t buffer_bytes = 0;    // sum of range lengths: the buffer to read them into
  std::uint64_t tensor_bytes = 0;    // sum of the tensors' bytes
};

struct ModelRanges {
  std::vector<ExtentRanges> blocks;  // n_layer entries, blocks[i].name == "blk.i"
  ExtentRanges token_embd;           // empty (no ranges) if absent
  ExtentRanges output;               // output_norm and output (absent when tied to the embedding)
  ExtentRanges misc;                 // any other tensor outside the blocks
  // experts_apart: each block's stacked expert tensors (ffn_{gate,up,down}_exps), "blk.N.exps",
  // out of the block's own extent (empty otherwise, and for a block without experts).
  std::vector<ExtentRanges> block_experts;
};

// Groups `set`'s tensors into extents and gives each its reads. A block's tensors make one range
// when they lie together in one shard (the usual layout); they make several when another extent's
// tensors lie between them or the block spans two shards. Tensors whose rounded ranges touch or
// overlap are read as one range. `granularity` is a power of two, at least 4096. Throws
// GgufError for a "blk.N" tensor with N >= n_layer or a block without tensors.
// `experts_apart`: a block's ffn_*_exps tensors leave its extent for block_experts (streamed
// models that read experts one by one, engine/expert_store.hpp).
ModelRanges block_read_ranges(const ShardSet& set, std::int64_t n_layer, std::uint64_t granularity = 4096,
                              bool experts_apart = false);

}  // namespace sluice::gguf
