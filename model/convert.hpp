// GGUF -> pack conversion (`sluice convert`): one extent per transformer block ("blk.N"), one for
// the token embedding ("token_embd"), one for the output norm and head ("output"), and one for
// anything else ("misc", e.g. rope_freqs); for a mixture-of-experts block, unless
// WriterOptions::expert_extents is off, its ffn_{gate,up,down}_exps.weight in an expert extent
// "blk.N.exps" right after "blk.N" (expert-major, each expert 4 KiB aligned, raw: pack v2). The GGUF's metadata goes into the manifest as JSON;
// tensor bytes are copied unchanged (ggml block formats), framed and optionally compressed.
#pragma once

#include <functional>
#include <string>

#include "model/pack_writer.hpp"

namespace sluice {

struct ConvertStats {
  std::uint64_t tensors = 0;
  std::uint64_t extents = 0;
  std::uint64_t raw_bytes = 0;
  std::uint64_t file_bytes = 0;
  std::uint64_t frames_raw = 0;
  std::uint64_t frames_zstd = 0;
};

// `gguf_path` may be a single file or any shard of a gguf-split model: every shard is read
// (gguf_split.hpp), and a missing or mismatched shard is refused naming it; the split.* keys are
// left out of the pack's metadata. Throws std::runtime_error naming the input or output file on
// failure. The pack is written under
// a temporary name and renamed onto `pack_path` at the end (output_file.hpp): a failed or killed
// conversion leaves nothing new under `pack_path`, and an output that is the input (same file,
// symlink, hard link) is refused before anything is opened for writing. Memory is bounded by the
// frame batch and a 4 MiB read buffer (plus the manifest), whatever the model's size: tensors are
// read in pieces with O_DIRECT where the filesystem allows it. `progress(done, total)` is called
// after each extent.
ConvertStats convert_gguf_to_pack(const std::string& gguf_path, const std::string& pack_path, pack::WriterOptions options,
                                  const std::function<void(std::size_t, std::size_t)>& progress = {});

// Which extent a GGUF tensor belongs to.
std::string extent_of_tensor(const std::string& tensor_name);

}  // namespace sluice
