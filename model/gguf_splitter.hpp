// `sluice split`: cuts a GGUF model (a single file, or a gguf-split set re-split as a whole) into
// llama.cpp gguf-split shards PREFIX-00001-of-0000N.gguf ... (conventions in gguf_split.hpp).
// The planning and shard writing also serve `sluice synth --split-max-size`, which writes the
// shards of a model generated on the fly (SplitModel, write_split): the same shards, no unsplit copy.
//
// What the shards hold, as llama.cpp's gguf-split writes them (tools/gguf-split/gguf-split.cpp):
//   - The first: every metadata key of the input (its split.* keys replaced), then split.no (u16,
//     0), split.count (u16, N), split.tensors.count (i32, all tensors of the model).
//   - Each later one: only split.no, split.count, split.tensors.count. (gguf-split writes no
//     general.alignment there; here a non-default alignment is written on every shard, so that
//     every shard is laid out with the input's alignment and reads correctly on its own.)
//   - Tensors in the input's order, each whole in one shard, at offsets padded to the alignment.
//
// Limits: a shard closes before the tensor that would take its file past max_bytes (the whole
// file: header, metadata and padding, not only tensor data as gguf-split counts) or past
// max_tensors tensors. A tensor that alone (with the header) exceeds max_bytes gets a shard of
// its own, which is then larger than max_bytes: SplitPlan::oversized names it.
//
// Atomic and bounded: tensor bytes are copied in 4 MiB reads (io::Reader, O_DIRECT where the
// filesystem takes it), every shard is written and flushed under a temporary name, and only then
// are all renamed onto their names. A failure before that removes every temporary file: no shard
// appears. (A process killed outright leaves PREFIX-...gguf.tmp files, never a shard; the next
// run replaces them. Only a kill between the renames, which take microseconds, can leave part of
// a set, and ShardSet::open then names the missing shards. Shards of an earlier split into a
// different count have other names and are left alone.)
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "io/backend.hpp"
#include "model/gguf_split.hpp"

namespace sluice::gguf {

struct SplitOptions {
  std::uint64_t max_bytes = 0;    // per shard file; 0: no size limit
  std::uint64_t max_tensors = 0;  // per shard; 0: no count limit (one of the two must be set)
  bool force = false;             // replace existing shards of the same names
  // Called after each copied piece with the tensor bytes copied so far and the total.
  std::function<void(std::uint64_t, std::uint64_t)> progress;
  // Tests: called after shard i is written under its temporary name (a throw is a failure there),
  // and a layer over the readers of the input (io::fault_wrapper).
  std::function<void(std::uint32_t)> after_shard_written;
  io::BackendWrapper read_wrapper;
};

struct PlannedShard {
  std::string path;
  std::size_t first_tensor = 0;  // index into ShardSet::tensors()
  std::size_t tensor_count = 0;
  std::uint64_t file_bytes = 0;  // the shard file's exact size
};

struct SplitPlan {
  std::vector<PlannedShard> shards;
  std::vector<std::size_t> oversized;  // shards larger than max_bytes (one tensor too big alone)
};

// One tensor of a model to be split: what its shard's header says of it.
struct SplitTensor {
  std::string name;
  std::uint32_t type = 0;           // ggml type id
  std::vector<std::uint64_t> dims;  // ggml order
  std::uint64_t bytes = 0;
};

// A model to be cut into shards, whatever its tensors come from: a GGUF on disk (split_gguf) or
// tensors made while the shards are written (`sluice synth --split-max-size`), so that both write
// the same shards from the same metadata and tensor table.
struct SplitModel {
  std::string source;  // named in errors: the input's path, or what makes the tensors
  // The model's keys in order (the first shard gets them all); general.alignment and split.* are
  // skipped (the alignment below and the new split keys take their place). Must outlive the model.
  std::span<const std::pair<std::string, Value>> metadata;
  std::uint64_t alignment = kDefaultAlignment;
  std::vector<SplitTensor> tensors;  // in the order the shards hold them
};

// The shards `model` is cut into under `prefix`. Throws GgufError when neither limit is set,
// when the prefix cannot name shards, or when the cut needs more than kMaxShards shards.
SplitPlan plan_split(const SplitModel& model, const std::string& prefix, const SplitOptions& options);

// Writes the shards of `plan` (made by plan_split for `model`): for each shard a Writer with the
// split metadata, to which add_tensor(writer, i) adds model.tensors[i] (add_tensor_streamed or
// add_tensor_generated, with its type and dims). Every shard is written and flushed under its
// temporary name and checked against its planned size, then all are renamed into place; any
// failure leaves no shard. Existing files of the shards' names are replaced: callers that must
// not do so check first. Uses options.after_shard_written only.
void write_split(const SplitModel& model, const SplitPlan& plan,
                 const std::function<void(Writer&, std::size_t)>& add_tensor, const SplitOptions& options);

// The model of a GGUF on disk (a view: `input` must outlive it).
SplitModel split_model_of(const ShardSet& input);

// The shards `input` is cut into under `prefix`. Throws GgufError when neither limit is set,
// when the prefix cannot name shards, or when the cut needs more than kMaxShards shards.
SplitPlan plan_split(const ShardSet& input, const std::string& prefix, const SplitOptions& options);

// Plans and writes the shards of the model at `input_path` (any shard of a split input).
// Refuses (GgufError, nothing written) an output name that exists (unless options.force) or
// that is one of the input's files. Throws GgufError or std::runtime_error naming the file and
// offset on any failure, leaving no shard behind.
SplitPlan split_gguf(const std::string& input_path, const std::string& prefix, const SplitOptions& options);

}  // namespace sluice::gguf
