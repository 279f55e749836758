// A model opened for in-RAM inference: a GGUF (memory-mapped) or a pack (every extent read,
// verified and decoded into memory). Gives the architecture config, the metadata, and the
// tensor views the forward pass binds. The streaming engine (issue 4) replaces the pack path
// with the prefetcher; the config/metadata/tensor-table parts stay the same.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/weights.hpp"
#include "model/metadata.hpp"
#include "model/model_config.hpp"

namespace sluice {

namespace gguf {
class File;
}
namespace pack {
class Pack;
}

class Model {
 public:
  // Detects the kind by magic ("GGUF" or "SLUICEPK"). Throws std::runtime_error naming the file.
  static std::unique_ptr<Model> open(const std::string& path);
  ~Model();

  const std::string& path() const { return path_; }
  bool is_pack() const { return pack_ != nullptr; }
  const Metadata& metadata() const { return *metadata_; }
  const ModelConfig& config() const { return config_; }
  TensorView tensor(std::string_view name) const;
  TensorLookup lookup() const {
    return [this](std::string_view name) { return tensor(name); };
  }
  const GlobalWeights& globals() const { return globals_; }
  const std::vector<BlockWeights>& blocks() const { return blocks_; }
  std::uint64_t weight_bytes() const { return weight_bytes_; }

 private:
  Model() = default;
  void bind();

  std::string path_;
  std::unique_ptr<gguf::File> gguf_;
  std::unique_ptr<pack::Pack> pack_;
  std::vector<std::vector<std::byte>> extents_;  // pack: decoded extents
  // pack: the expert tensors of expert extents (expert_stride != 0), gathered contiguous by name
  std::map<std::string, std::vector<std::byte>, std::less<>> gathered_;
  std::unique_ptr<Metadata> metadata_;
  ModelConfig config_;
  GlobalWeights globals_;
  std::vector<BlockWeights> blocks_;
  std::uint64_t weight_bytes_ = 0;
};

}  // namespace sluice
