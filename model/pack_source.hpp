// The pack as a ModelSource (model/model_source.hpp): units are the pack's extents, frames its
// checksummed, possibly zstd-compressed frames.
#pragma once

#include <optional>

#include "model/model_source.hpp"
#include "model/pack_reader.hpp"

namespace sluice {

class PackSource final : public ModelSource {
 public:
  // Owns an open pack.
  explicit PackSource(pack::Pack pack);
  // Opens `path` (throws pack::PackError naming the file and what is wrong).
  static std::unique_ptr<PackSource> open(const std::string& path, const pack::PackOptions& options = {});
  // Borrows a pack that outlives the source (erase_metadata_key is then refused).
  static PackSource borrow(const pack::Pack& pack) { return PackSource(&pack); }

  PackSource(const PackSource&) = delete;
  PackSource& operator=(const PackSource&) = delete;

  const pack::Pack& pack() const { return *pack_; }

  const std::string& path() const override { return pack_->path(); }
  std::unique_ptr<Metadata> metadata() const override;
  void erase_metadata_key(const std::string& key) override;
  ModelConfig checked_config() const override;
  const std::vector<SourceTensor>& tensors() const override { return pack_->tensors(); }
  const SourceTensor* find_tensor(std::string_view name) const override { return pack_->find_tensor(name); }
  const std::vector<ReadUnit>& units() const override { return pack_->extents(); }
  Result<std::vector<std::byte>> read_frame(std::uint32_t unit, std::size_t frame) const override {
    return pack_->read_frame(unit, frame);
  }
  void release_page_cache(std::uint32_t unit) const override;
  std::string describe() const override { return "pack, checksummed"; }

 private:
  explicit PackSource(const pack::Pack* borrowed) : pack_(borrowed) {}
  std::optional<pack::Pack> owned_;
  const pack::Pack* pack_ = nullptr;
};

}  // namespace sluice
