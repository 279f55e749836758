// GgufSource: a GGUF's extents as read units, its index chunks as checksummed raw frames.
#include "model/gguf_source.hpp"

#include <fcntl.h>

#include <algorithm>

#include <fmt/format.h>

#include "common/assert.hpp"
#include "io/fault_backend.hpp"
#include "io/reader.hpp"
#include "common/units.hpp"
#include "model/metadata.hpp"
#include "model/tensor_check.hpp"

namespace sluice {

std::unique_ptr<GgufSource> GgufSource::open(const std::string& path, const io::FileOptions& file_options, bool experts_apart) {
  gguf::ShardSet set = gguf::ShardSet::open(path);
  const ModelConfig config = sluice::checked_config(set);
  std::optional<gguf::GgufIndex> index = gguf::GgufIndex::load_if_present(set);
  std::unique_ptr<GgufSource> source(new GgufSource(std::move(set), std::move(index), file_options));
  source->build_units(config.n_layer, experts_apart);
  for (const gguf::Shard& shard : source->set_.shards()) {
    try {
      source->files_.push_back(io::File::open(shard.path, file_options));
    } catch (const std::exception& e) {
      throw gguf::GgufError(fmt::format("gguf {}: cannot open: {}", shard.path, e.what()), ErrorKind::io);
    }
    if (source->files_.back()->size() != shard.file_size) {
      // Replaced or rewritten between reading the header and opening it for the tensors.
      throw gguf::GgufError(fmt::format("gguf {}: the file is {} bytes now, {} when its header was read", shard.path,
                                        source->files_.back()->size(), shard.file_size),
                            ErrorKind::io);
    }
    // Reading the header in large pieces (and the kernel's read-ahead after it) brought tensor
    // data into the page cache; the tensors are read again through the ring, O_DIRECT, or per
    // unit with their own release, so those pages only take memory a capped run needs. A hint.
    (void)::posix_fadvise(source->files_.back()->fd(), static_cast<off_t>(shard.data_offset), 0, POSIX_FADV_DONTNEED);
  }
  return source;
}

void GgufSource::build_units(std::int64_t n_layer, bool experts_apart) {
  const std::uint64_t granularity = index_ ? index_->chunk_bytes() : kDirectAlign;
  const std::uint64_t frame_bytes = index_ ? index_->chunk_bytes() : kUnverifiedFrameBytes;
  const gguf::ModelRanges ranges = gguf::block_read_ranges(set_, n_layer, granularity, experts_apart);
  // Stream order, as convert writes a pack: the embedding, blocks by number, the head, the rest.
  std::vector<const gguf::ExtentRanges*> order;
  order.push_back(&ranges.token_embd);
  for (const gguf::ExtentRanges& b : ranges.blocks) order.push_back(&b);
  order.push_back(&ranges.output);
  order.push_back(&ranges.misc);
  for (const gguf::ExtentRanges& e : ranges.block_experts) order.push_back(&e);
  for (const gguf::ExtentRanges* extent : order) {
    if (extent->tensors.empty()) continue;
    ReadUnit unit;
    unit.name = extent->name;
    unit.offset = extent->ranges.front().offset;
    // Each range's bytes lie back to back in the unit's raw bytes, cut at the end of its file.
    std::vector<std::uint64_t> raw_begin;
    for (const gguf::ReadRange& r : extent->ranges) {
      const std::uint64_t file_size = set_.shards()[r.shard].file_size;
      const std::uint64_t end = std::min(r.offset + r.length, file_size);
      raw_begin.push_back(unit.raw_bytes);
      const auto range_index = static_cast<std::uint32_t>(unit.ranges.size());
      for (std::uint64_t at = r.offset; at < end; at += frame_bytes) {
        pack::FrameInfo frame;
        frame.offset = at;
        frame.disk_bytes = frame.raw_bytes = static_cast<std::uint32_t>(std::min(frame_bytes, end - at));
        frame.codec = pack::Codec::raw;
        frame.range = range_index;
        // With an index: this frame is exactly chunk at / chunk_bytes of its shard (ranges start
        // on a chunk boundary and end on one or at the end of the file).
        frame.checksum = index_ ? index_->contents().shards[r.shard].chunk_hashes[at / frame_bytes] : 0;
        unit.frames.push_back(frame);
      }
      unit.ranges.push_back(pack::ExtentRange{r.shard, r.offset, end - r.offset});
      unit.raw_bytes += end - r.offset;
    }
    unit.disk_bytes = unit.raw_bytes;
    const auto unit_index = static_cast<std::uint32_t>(units_.size());
    for (const gguf::RangeTensor& placed : extent->tensors) {
      const gguf::ShardTensor& t = set_.tensors()[placed.tensor];
      const gguf::ReadRange& r = extent->ranges[placed.range];
      tensor_index_.emplace(t.name, tensors_.size());
      tensors_.push_back({t.name, t.type, t.dims, unit_index, raw_begin[placed.range] + (t.offset - r.offset), t.bytes});
    }
    units_.push_back(std::move(unit));
  }
}

std::vector<std::string> GgufSource::files() const {
  std::vector<std::string> paths;
  for (const gguf::Shard& shard : set_.shards()) paths.push_back(shard.path);
  return paths;
}

std::unique_ptr<Metadata> GgufSource::metadata() const { return metadata_of(set_.metadata()); }

ModelConfig GgufSource::checked_config() const { return sluice::checked_config(set_); }

const SourceTensor* GgufSource::find_tensor(std::string_view name) const {
  const auto it = tensor_index_.find(std::string(name));
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

Result<std::vector<std::byte>> GgufSource::read_frame(std::uint32_t unit, std::size_t frame) const {
  SLUICE_ASSERT_MSG(unit < units_.size() && frame < units_[unit].frames.size(), "GgufSource::read_frame: no such frame");
  const pack::FrameInfo& f = units_[unit].frames[frame];
  const std::uint32_t shard = units_[unit].ranges[f.range].file;
  std::vector<std::byte> bytes(f.disk_bytes);
  if (Status st = files_[shard]->read_at(bytes, f.offset); !st) return st.error();
  if (index_) {
    auto verified = index_->verify(shard, f.offset, bytes);
    if (!verified) return verified.error();
    // Frames are whole chunks, so all of it was checked.
    SLUICE_ASSERT_MSG(verified.value() == bytes.size(), "GgufSource: a frame that is not a whole index chunk");
  }
  return bytes;
}

AlignedBuffer GgufSource::read_whole_unit(std::uint32_t unit) const {
  const ReadUnit& u = units_.at(unit);
  // Each range lands at its place in the raw bytes; a read rounded up past a range's end (the
  // file's unaligned tail) would overwrite the next range's first bytes, so only the last range
  // may end off a page boundary (the buffer's capacity holds that page).
  for (std::size_t r = 0; r + 1 < u.ranges.size(); ++r) {
    if (u.ranges[r].bytes % kDirectAlign != 0) return ModelSource::read_whole_unit(unit);
  }
  for (const pack::ExtentRange& r : u.ranges) {
    if (r.offset % kDirectAlign != 0) return ModelSource::read_whole_unit(unit);
  }
  // Whole index chunks per read, so each is verified as it lands.
  const std::uint64_t chunk = index_ ? index_->chunk_bytes() : kDirectAlign;
  const std::uint64_t request_bytes = std::max<std::uint64_t>(chunk, kDirectReadBytes / chunk * chunk);
  if (request_bytes > UINT32_MAX) return ModelSource::read_whole_unit(unit);
  AlignedBuffer raw(u.raw_bytes);
  std::uint64_t range_begin = 0;  // in the raw bytes
  for (const pack::ExtentRange& range : u.ranges) {
    const std::string& file = set_.shards()[range.file].path;
    io::ReaderOptions options;
    options.retry = file_options_.retry;
    auto reader = io::Reader::open(file, options, file_options_.fault ? io::fault_wrapper(*file_options_.fault) : io::BackendWrapper{});
    std::uint64_t next = 0;  // next byte of the range to request
    auto fail = [&](const Error& e, std::uint64_t offset) {
      throw Exception(ErrorContext{e.kind, file, u.name, -1, std::int64_t(offset), e.sys_errno}, e.message);
    };
    std::vector<io::ReadCompletion> done(reader->queue_depth());
    while (next < range.bytes || reader->in_flight() > 0) {
      while (next < range.bytes && reader->can_submit()) {
        const std::uint64_t length = std::min<std::uint64_t>(request_bytes, align_up(range.bytes - next, kDirectAlign));
        reader->submit({raw.data() + range_begin + next, range.offset + next, static_cast<std::uint32_t>(length), -1, next});
        next += length;
      }
      if (Status st = reader->flush(); !st) fail(st.error(), range.offset + next);
      auto finished = reader->wait(done, 1);
      if (!finished) fail(finished.error(), range.offset);
      for (std::size_t i = 0; i < finished.value(); ++i) {
        const io::ReadCompletion& c = done[i];
        const std::uint64_t at = range.offset + c.user_data;
        if (!c.status) fail(c.status.error(), at);
        const std::uint64_t wanted = std::min<std::uint64_t>(request_bytes, range.bytes - c.user_data);
        if (c.bytes < wanted) {
          fail(Error{ErrorKind::io, 0, fmt::format("{}: file ends at byte {}, but {} needs bytes [{}, {}) (truncated since it was opened?)",
                                                   file, at + c.bytes, u.name, at, at + wanted)},
               at + c.bytes);
        }
        if (index_) {
          auto verified = index_->verify(range.file, at, std::span<const std::byte>(raw.data() + range_begin + c.user_data, wanted));
          if (!verified) fail(verified.error(), at);
          SLUICE_ASSERT_MSG(verified.value() == wanted, "GgufSource: a direct read that is not whole index chunks");
        }
      }
    }
    range_begin += range.bytes;
  }
  return raw;
}

std::string GgufSource::describe() const {
  const std::size_t n = set_.shards().size();
  const std::string files = n == 1 ? "gguf (1 file)" : fmt::format("gguf ({} shards)", n);
  if (index_) return fmt::format("{}, reads verified by {}", files, index_->path());
  return fmt::format("{}, reads unverified (no sidecar: run `sluice index {}`)", files, path());
}

void GgufSource::release_page_cache(std::uint32_t unit) const {
  // Only a hint: a kernel that refuses it leaves clean pages the kernel may drop anyway. From the
  // range's start to the end of its file (length 0), not just the range: reading the unit
  // sequentially made the kernel read ahead past its end (read_ahead_kb, 8 MiB on virtio here),
  // pages nothing will use (the streamed blocks after it are read O_DIRECT) that would stay in
  // the page cache, one window per resident unit (166 MiB on a 13B model with 14 resident
  // blocks).
  for (const pack::ExtentRange& r : units_.at(unit).ranges) {
    (void)::posix_fadvise(files_[r.file]->fd(), static_cast<off_t>(r.offset), 0, POSIX_FADV_DONTNEED);
  }
}

std::string GgufSource::tensors_at(const std::string& file, std::uint64_t offset, std::uint64_t bytes) const {
  std::string names;
  const auto& shards = set_.shards();
  for (const gguf::ShardTensor& t : set_.tensors()) {
    if (shards[t.shard].path != file || t.offset >= offset + bytes || t.offset + t.bytes <= offset) continue;
    names += (names.empty() ? "" : ", ") + t.name;
  }
  return names;
}

}  // namespace sluice
