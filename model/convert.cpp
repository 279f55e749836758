#include "model/convert.hpp"

#include <filesystem>
#include <fmt/format.h>
#include <map>
#include <stdexcept>

#include "model/gguf.hpp"
#include "model/metadata.hpp"
#include "model/tensor_check.hpp"

namespace sluice {

std::string extent_of_tensor(const std::string& name) {
  if (name.rfind("blk.", 0) == 0) {
    std::size_t dot = name.find('.', 4);
    if (dot != std::string::npos) return name.substr(0, dot);
  }
  if (name.rfind("token_embd.", 0) == 0) return "token_embd";
  if (name.rfind("output", 0) == 0) return "output";  // output.weight, output_norm.weight
  return "misc";
}

ConvertStats convert_gguf_to_pack(const std::string& gguf_path, const std::string& pack_path, pack::WriterOptions options,
                                  const std::function<void(std::size_t, std::size_t)>& progress) {
  gguf::File in = gguf::File::open(gguf_path);
  (void)checked_config(in);  // a pack is only made of a model the engine can run
  // Stream order: the embedding, blocks in layer order, the head, then the rest.
  std::vector<std::string> order;
  std::map<std::string, std::vector<const gguf::TensorInfo*>> groups;
  auto rank = [](const std::string& extent) -> std::pair<int, long> {
    if (extent == "token_embd") return {0, 0};
    if (extent.rfind("blk.", 0) == 0) return {1, std::stol(extent.substr(4))};
    if (extent == "output") return {2, 0};
    return {3, 0};
  };
  for (const auto& t : in.tensors()) {
    std::string extent = extent_of_tensor(t.name);
    if (groups[extent].empty()) order.push_back(extent);
    groups[extent].push_back(&t);
  }
  std::stable_sort(order.begin(), order.end(), [&](const auto& a, const auto& b) { return rank(a) < rank(b); });

  ConvertStats stats;
  try {
    pack::PackWriter writer(pack_path, options);
    writer.set_metadata(metadata_to_json(in));
    for (std::size_t i = 0; i < order.size(); ++i) {
      writer.begin_extent(order[i]);
      for (const gguf::TensorInfo* t : groups[order[i]]) {
        writer.add_tensor(t->name, t->type, t->dims, in.tensor_data(*t));
        ++stats.tensors;
      }
      writer.end_extent();
      if (progress) progress(i + 1, order.size());
    }
    writer.finish();
    const auto& w = writer.stats();
    stats.extents = w.extents;
    stats.raw_bytes = w.raw_bytes;
    stats.file_bytes = w.file_bytes;
    stats.frames_raw = w.frames_raw;
    stats.frames_zstd = w.frames_zstd;
  } catch (...) {
    std::error_code ec;
    std::filesystem::remove(pack_path, ec);
    throw;
  }
  return stats;
}

}  // namespace sluice
