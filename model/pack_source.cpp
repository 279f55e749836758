#include "model/pack_source.hpp"

#include <fcntl.h>

#include "common/assert.hpp"
#include "model/tensor_check.hpp"

namespace sluice {

PackSource::PackSource(pack::Pack pack) : owned_(std::move(pack)), pack_(&*owned_) {}

std::unique_ptr<PackSource> PackSource::open(const std::string& path, const pack::PackOptions& options) {
  return std::make_unique<PackSource>(pack::Pack::open(path, options));
}

std::unique_ptr<Metadata> PackSource::metadata() const { return metadata_of(pack_->metadata(), pack_->path()); }

void PackSource::erase_metadata_key(const std::string& key) {
  SLUICE_ASSERT_MSG(owned_.has_value(), "a borrowed pack's metadata is its owner's");
  owned_->erase_metadata_key(key);
}

ModelConfig PackSource::checked_config() const { return sluice::checked_config(*pack_); }

void PackSource::release_page_cache(std::uint32_t unit) const {
  const ReadUnit& u = pack_->extents().at(unit);
  // To the end of the file, not just the unit: the kernel's read-ahead past the unit's end left
  // pages nothing uses (see GgufSource::release_page_cache).
  ::posix_fadvise(pack_->fd(), off_t(u.offset), 0, POSIX_FADV_DONTNEED);
}

}  // namespace sluice
