#include "model/convert.hpp"

#include <algorithm>
#include <cstdlib>
#include <fmt/format.h>
#include <map>
#include <memory>
#include <new>
#include <optional>
#include <stdexcept>

#include "common/units.hpp"
#include "io/reader.hpp"
#include "model/gguf.hpp"
#include "model/gguf_split.hpp"
#include "model/metadata.hpp"
#include "model/tensor_check.hpp"
#include "model/tensor_names.hpp"
#include "model/output_file.hpp"

namespace sluice {

std::string extent_of_tensor(const std::string& name) {
  if (names::is_block_name(name)) {
    std::size_t dot = name.find('.', names::kBlockPrefix.size());
    if (dot != std::string::npos) return name.substr(0, dot);
  }
  if (name.rfind("token_embd.", 0) == 0) return "token_embd";
  if (name.rfind("output", 0) == 0) return "output";  // output.weight, output_norm.weight
  return "misc";
}

namespace {

// Bytes read from the GGUF per request: big enough that O_DIRECT reads run at disk speed, small
// enough to be one of the "few MiB" convert holds whatever the model's size.
constexpr std::uint32_t kReadChunkBytes = 4u << 20;

struct FreeDeleter {
  void operator()(std::byte* p) const { std::free(p); }
};

// Copies one tensor's bytes from the GGUF into the writer, kReadChunkBytes at a time, reading
// whole aligned blocks (the reader may be O_DIRECT) and keeping the part inside the tensor.
void copy_tensor(io::Reader& reader, std::byte* buffer, std::uint64_t start, std::uint64_t bytes,
                 const std::string& tensor_name, pack::PackWriter& writer) {
  if (bytes == 0) return;
  const std::uint64_t end = start + bytes;  // the header parse checked it lies inside the file
  std::uint64_t block = start / kDirectAlign * kDirectAlign;
  while (block < end) {
    const auto length = static_cast<std::uint32_t>(
        std::min<std::uint64_t>(kReadChunkBytes, (end - block + kDirectAlign - 1) / kDirectAlign * kDirectAlign));
    std::uint64_t got = 0;
    Status status = reader.read_sync(buffer, block, length, &got);
    if (!status) {
      throw std::runtime_error(fmt::format("convert: reading tensor '{}': {}", tensor_name, status.error().message));
    }
    const std::uint64_t from = std::max(block, start);
    const std::uint64_t to = std::min(block + got, end);
    if (to <= from || (to < end && got < length)) {
      // The file shrank since it was opened: what the header promised is gone.
      throw std::runtime_error(fmt::format("convert: {}: tensor '{}' ends at byte {} but the file ends at {}",
                                           reader.path(), tensor_name, end, block + got));
    }
    writer.add_bytes({buffer + (from - block), static_cast<std::size_t>(to - from)});
    block += length;
  }
}

// A block's stacked expert matrices, gate, up and down, when it has all three (a MoE block);
// else none.
std::vector<const gguf::ShardTensor*> expert_matrices(const std::string& extent, const std::vector<const gguf::ShardTensor*>& block) {
  const std::optional<std::int64_t> il = names::block_extent_index(extent);
  if (!il) return {};
  std::vector<const gguf::ShardTensor*> out;
  for (std::string_view part : {names::kFfnGateExps, names::kFfnUpExps, names::kFfnDownExps}) {
    const std::string name = names::block_tensor(*il, part);
    const auto it = std::find_if(block.begin(), block.end(), [&](const gguf::ShardTensor* t) { return t->name == name; });
    if (it == block.end()) return {};
    out.push_back(*it);
  }
  return out;
}

// The expert extent of one block (pack_format.hpp item 5): expert by expert, its gate, up and
// down slices, each a contiguous range of the GGUF (the expert is the slowest dimension).
// checked_config made every expert tensor's bytes a whole number of experts.
void write_expert_extent(pack::PackWriter& writer, std::string name, const std::vector<const gguf::ShardTensor*>& experts,
                         const std::vector<std::unique_ptr<io::Reader>>& readers, std::byte* buffer) {
  std::vector<pack::PackWriter::ExpertTensor> tensors;
  for (const gguf::ShardTensor* t : experts) tensors.push_back({t->name, t->type, t->dims, t->bytes});
  writer.begin_expert_extent(std::move(name), std::move(tensors));
  const std::uint64_t n_expert = experts.front()->dims.back();
  for (std::uint64_t e = 0; e < n_expert; ++e) {
    for (const gguf::ShardTensor* t : experts) {
      const std::uint64_t slice = t->bytes / n_expert;
      copy_tensor(*readers[t->shard], buffer, t->offset + e * slice, slice, t->name, writer);
    }
  }
  writer.end_extent();
}

}  // namespace

ConvertStats convert_gguf_to_pack(const std::string& gguf_path, const std::string& pack_path, pack::WriterOptions options,
                                  const std::function<void(std::size_t, std::size_t)>& progress) {
  // Every shard of a split model, found from whichever one was given (a missing shard is an
  // error naming it); headers only, nothing mapped, so a file truncated under us is a read
  // error naming it rather than a SIGBUS.
  const gguf::ShardSet in = gguf::ShardSet::open(gguf_path);
  // Before anything is opened for writing: replacing an input would destroy the model it is
  // being read from.
  for (const gguf::Shard& shard : in.shards()) refuse_output_that_is_input("convert", shard.path, pack_path);
  (void)checked_config(in);  // a pack is only made of a model the engine can run
  // Stream order: the embedding, blocks in layer order, the head, then the rest.
  std::vector<std::string> order;
  std::map<std::string, std::vector<const gguf::ShardTensor*>> groups;
  auto rank = [](const std::string& extent) -> std::pair<int, long> {
    if (extent == "token_embd") return {0, 0};
    // checked_config above has bounded every block number.
    if (const auto il = names::block_extent_index(extent)) return {1, long(*il)};
    if (extent == "output") return {2, 0};
    return {3, 0};
  };
  for (const auto& t : in.tensors()) {
    std::string extent = extent_of_tensor(t.name);
    if (groups[extent].empty()) order.push_back(extent);
    groups[extent].push_back(&t);
  }
  std::stable_sort(order.begin(), order.end(), [&](const auto& a, const auto& b) { return rank(a) < rank(b); });

  // Tensor bytes are read, never mapped: O_DIRECT reads of bounded pieces leave nothing in the
  // page cache, where a mapped model's pages would be charged to the caller's memory cgroup.
  io::ReaderOptions read_options;
  read_options.backend.kind = io::BackendKind::pread;
  read_options.backend.queue_depth = 1;
  std::vector<std::unique_ptr<io::Reader>> readers;
  for (const gguf::Shard& shard : in.shards()) readers.push_back(io::Reader::open(shard.path, read_options));
  std::unique_ptr<std::byte, FreeDeleter> buffer{static_cast<std::byte*>(std::aligned_alloc(kDirectAlign, kReadChunkBytes))};
  if (!buffer) throw std::bad_alloc();

  // The pack is one file: the split bookkeeping keys describe the GGUF shards, not it.
  nlohmann::json metadata = metadata_to_json(in.metadata());
  for (std::string_view key : {gguf::kSplitNoKey, gguf::kSplitCountKey, gguf::kSplitTensorsCountKey}) {
    metadata.erase(std::string(key));
  }

  ConvertStats stats;
  // An exception unwinds the writer, which removes its temporary file; pack_path is untouched.
  pack::PackWriter writer(pack_path, options);
  writer.set_metadata(metadata);
  for (std::size_t i = 0; i < order.size(); ++i) {
    std::vector<const gguf::ShardTensor*> experts = options.expert_extents ? expert_matrices(order[i], groups[order[i]]) : std::vector<const gguf::ShardTensor*>{};
    writer.begin_extent(order[i]);
    for (const gguf::ShardTensor* t : groups[order[i]]) {
      if (std::find(experts.begin(), experts.end(), t) != experts.end()) continue;
      writer.begin_tensor(t->name, t->type, t->dims, t->bytes);
      copy_tensor(*readers[t->shard], buffer.get(), t->offset, t->bytes, t->name, writer);
      ++stats.tensors;
    }
    writer.end_extent();
    if (!experts.empty()) {
      write_expert_extent(writer, names::experts_extent_name(*names::block_extent_index(order[i])), experts, readers, buffer.get());
      stats.tensors += experts.size();
    }
    if (progress) progress(i + 1, order.size());
  }
  writer.finish();
  const auto& w = writer.stats();
  stats.extents = w.extents;
  stats.raw_bytes = w.raw_bytes;
  stats.file_bytes = w.file_bytes;
  stats.frames_raw = w.frames_raw;
  stats.frames_zstd = w.frames_zstd;
  return stats;
}

}  // namespace sluice
