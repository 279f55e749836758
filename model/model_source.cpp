// read_unit_range: the one reader of a byte range of a unit outside the ring.
#include "model/model_source.hpp"

#include <algorithm>
#include <fmt/format.h>

#include "model/gguf_source.hpp"
#include "model/model_format.hpp"
#include "model/pack_source.hpp"

namespace sluice {

void read_unit_range(const ModelSource& source, std::uint32_t unit, std::uint64_t from, std::span<std::byte> out,
                     FrameCache* cache) {
  const ReadUnit& u = source.units().at(unit);
  const std::uint64_t n = out.size();
  if (from > u.raw_bytes || n > u.raw_bytes - from) {
    throw Exception(ErrorContext{ErrorKind::corrupt, source.path(), u.name, -1, -1, 0},
                    fmt::format("{}: read of raw bytes [{}, {}) past the end of unit {} ({}, {} raw bytes)", source.path(),
                                from, from + n, unit, u.name, u.raw_bytes));
  }
  FrameCache local;
  FrameCache& held = cache ? *cache : local;
  if (held.unit != unit) {
    held.frames.clear();
    held.unit = unit;
  }
  std::uint64_t frame_begin = 0, done = 0;
  for (std::size_t f = 0; f < u.frames.size() && done < n; ++f) {
    const std::uint64_t frame_end = frame_begin + u.frames[f].raw_bytes;
    if (frame_end <= from + done) {
      frame_begin = frame_end;
      continue;
    }
    // Reads come in ascending order: frames before this one are not needed again.
    held.frames.erase(held.frames.begin(), held.frames.lower_bound(f));
    auto [it, added] = held.frames.try_emplace(f);
    if (added) {
      auto bytes = source.read_frame(unit, f);
      if (!bytes) {
        held.frames.erase(it);
        const Error& e = bytes.error();
        throw Exception(ErrorContext{e.kind, source.path(), u.name, std::int64_t(f), std::int64_t(u.frames[f].offset), e.sys_errno},
                        e.message);
      }
      it->second = std::move(bytes).value();
      held.stored_bytes_read += u.frames[f].disk_bytes;
    }
    const std::uint64_t in_frame = from + done - frame_begin;
    const std::uint64_t take = std::min(n - done, u.frames[f].raw_bytes - in_frame);
    std::copy_n(it->second.data() + in_frame, take, out.data() + done);
    done += take;
    frame_begin = frame_end;
    if (!cache) held.frames.erase(it);  // a whole unit read holds one frame at a time beside it
  }
  if (done != n) {
    throw Exception(ErrorContext{ErrorKind::corrupt, source.path(), u.name, -1, -1, 0},
                    fmt::format("{}: unit {} ({}) has fewer raw bytes in its frames than its table says", source.path(),
                                unit, u.name));
  }
}

AlignedBuffer ModelSource::read_whole_unit(std::uint32_t unit) const {
  AlignedBuffer raw(units().at(unit).raw_bytes);
  read_unit_range(*this, unit, 0, raw.span());
  return raw;
}

std::vector<std::byte> read_unit(const ModelSource& source, std::uint32_t unit) {
  std::vector<std::byte> raw(source.units().at(unit).raw_bytes);
  read_unit_range(source, unit, 0, raw);
  return raw;
}

std::unique_ptr<ModelSource> open_model_source(const std::string& path, const io::FaultPlan* fault) {
  if (detect_model_format(path) == ModelFormat::pack) return PackSource::open(path, pack::PackOptions{fault});
  io::FileOptions file_options;
  file_options.fault = fault;
  return GgufSource::open(path, file_options);
}

}  // namespace sluice
