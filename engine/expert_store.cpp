// ExpertStore: experts read slice by slice into the expert cache (see expert_store.hpp).
#include "engine/expert_store.hpp"

#include <algorithm>
#include <fmt/format.h>
#include <limits>
#include <stdexcept>

#include "common/assert.hpp"
#include "common/error.hpp"
#include "common/units.hpp"
#include "io/fault_backend.hpp"
#include "model/gguf_source.hpp"
#include "model/tensor_names.hpp"

namespace sluice {

namespace {
constexpr std::array<std::string_view, 3> kPartTensors = {names::kFfnGateExps, names::kFfnUpExps, names::kFfnDownExps};

// The granularity reads are rounded to: the sidecar's chunk, so every byte read is verified, or
// the direct-I/O block. (Rounding costs at most one granule on each side of each slice: with the
// default 1 MiB chunks and a qwen3-30b-a3b Q4_K expert slice of ~0.6-0.8 MiB that is up to 3-4x
// the slice; `sluice index --chunk` smaller for MoE files keeps it near 1 + 2 x chunk / slice.)
const gguf::GgufIndex* index_of(const ModelSource& source) {
  const auto* gguf = dynamic_cast<const GgufSource*>(&source);
  return gguf && gguf->index() ? &*gguf->index() : nullptr;
}

std::uint64_t granularity_of(const ModelSource& source) {
  const gguf::GgufIndex* index = index_of(source);
  return index ? std::max<std::uint64_t>(kDirectAlign, index->chunk_bytes()) : kDirectAlign;
}

struct Located {
  std::uint32_t file = 0;
  std::uint64_t offset = 0;
};

// The file and offset of a tensor's first byte, from its unit's ranges (laid back to back in the
// unit's raw bytes).
Located locate(const ModelSource& source, const SourceTensor& t) {
  const ReadUnit& u = source.units()[t.extent];
  if (u.ranges.empty()) return {0, u.offset + t.offset};  // a pack's expert extent: raw frames, raw offset = file offset - u.offset
  std::uint64_t raw = 0;
  for (const pack::ExtentRange& r : u.ranges) {
    if (t.offset >= raw && t.offset + t.bytes <= raw + r.bytes) return {r.file, r.offset + (t.offset - raw)};
    raw += r.bytes;
  }
  throw Exception(ErrorContext{ErrorKind::corrupt, source.path(), t.name},
                  fmt::format("{}: tensor '{}' does not lie in one range of its unit '{}'", source.path(), t.name, u.name));
}
}  // namespace

std::uint64_t ExpertStore::slot_bytes_for(const ModelSource& source, const ModelConfig& config) {
  const std::uint64_t g = granularity_of(source);
  std::uint64_t slot = 0;
  for (std::int64_t il = 0; il < config.n_layer; ++il) {
    std::uint64_t layer = 0;
    for (std::string_view name : kPartTensors) {
      const SourceTensor* t = source.find_tensor(names::block_tensor(il, name));
      if (!t) throw std::invalid_argument(fmt::format("{}: no tensor '{}'", source.path(), names::block_tensor(il, name)));
      if (t->expert_stride != 0) {  // a pack's expert extent: the expert's bytes, read whole
        layer = t->expert_stride;
        break;
      }
      const std::uint64_t offset = locate(source, *t).offset, slice = t->bytes / std::uint64_t(config.n_expert);
      std::uint64_t span = 0;
      for (std::int64_t e = 0; e < config.n_expert; ++e) {
        const std::uint64_t begin = offset + slice * std::uint64_t(e);
        span = std::max(span, align_up(begin + slice, g) - align_down(begin, g));
      }
      layer += span;
    }
    slot = std::max(slot, layer);
  }
  return slot;
}

namespace {
// The cache's slot count for each layer: options.layer_slots when given (one per layer), else
// options.slots_per_layer for every layer.
std::vector<std::int32_t> layer_slots_of(const ModelSource& source, const ModelConfig& config, const ExpertStoreOptions& options) {
  const std::size_t n_layer = std::size_t(std::max<std::int64_t>(config.n_layer, 1));
  if (options.layer_slots.empty()) return std::vector<std::int32_t>(n_layer, std::max(options.slots_per_layer, 0));
  if (options.layer_slots.size() != n_layer) {
    throw std::invalid_argument(fmt::format("{}: expert cache slots given for {} layers, the model has {}", source.path(),
                                            options.layer_slots.size(), n_layer));
  }
  std::vector<std::int32_t> slots = options.layer_slots;
  for (auto& s : slots) s = std::max(s, 0);
  return slots;
}
}  // namespace

ExpertStore::ExpertStore(const ModelSource& source, const ModelConfig& config, ExpertStoreOptions options)
    : source_(source), index_(index_of(source)), config_(config), options_(options), granularity_(granularity_of(source)),
      slot_bytes_(config.is_moe() ? slot_bytes_for(source, config) : 0),
      cache_(std::int32_t(std::max<std::int64_t>(config.n_expert, 1)), layer_slots_of(source, config, options),
             std::size_t(std::max<std::uint64_t>(slot_bytes_, 1))),
      transient_(slot_bytes_) {
  if (!config.is_moe()) throw std::invalid_argument(fmt::format("{}: not a mixture-of-experts model", source.path()));
  for (std::int64_t il = 0; il < config.n_layer; ++il) {
    Layer layer;
    std::uint64_t slot_offset = 0;
    for (std::size_t p = 0; p < 3; ++p) {
      const std::string name = names::block_tensor(il, kPartTensors[p]);
      const SourceTensor& t = *source.find_tensor(name);  // slot_bytes_for checked it
      const ReadUnit& unit = source.units()[t.extent];
      if (names::block_extent_index(unit.name)) {
        throw std::invalid_argument(fmt::format("{}: '{}' lies in its block's unit; open the source with experts apart", source.path(), name));
      }
      if (p > 0 && ((t.expert_stride != 0) != layer.packed || (layer.packed && t.extent != layer.unit))) {
        throw std::invalid_argument(fmt::format("{}: '{}' is not laid out like '{}'", source.path(), name, layer.parts[0].tensor));
      }
      const Located at = locate(source, t);
      Part& part = layer.parts[p];
      part.tensor = name;
      part.file = at.file;
      part.file_offset = at.offset;
      part.slice_bytes = t.bytes / std::uint64_t(config.n_expert);
      part.shape.type = static_cast<GgmlType>(t.type);
      part.shape.dims = {std::int64_t(t.shape.at(0)), std::int64_t(t.shape.at(1))};
      part.shape.bytes = part.slice_bytes;
      if (t.expert_stride != 0) {
        // A pack's expert extent (checked by Pack::open: raw frames, none straddling two experts).
        layer.packed = true;
        layer.unit = t.extent;
        layer.extent_offset = unit.offset;
        layer.expert_bytes = t.expert_stride;
        part.expert_stride = t.expert_stride;
        part.slot_offset = t.offset;
        continue;
      }
      part.expert_stride = part.slice_bytes;
      part.slot_offset = slot_offset;
      std::uint64_t span = 0;
      for (std::int32_t e = 0; e < config.n_expert; ++e) span = std::max(span, read_length(part, e));
      if (span > UINT32_MAX) throw std::invalid_argument(fmt::format("{}: an expert slice of '{}' over 4 GiB", source.path(), name));
      slot_offset += span;
    }
    if (layer.packed) {
      if (layer.expert_bytes > UINT32_MAX) throw std::invalid_argument(fmt::format("{}: an expert of layer {} over 4 GiB", source.path(), il));
      // Each expert's first frame: frames never straddle experts, so they split at multiples of expert_bytes.
      const ReadUnit& unit = source.units()[layer.unit];
      std::uint64_t raw = 0;
      for (std::size_t f = 0; f < unit.frames.size(); ++f) {
        if (raw % layer.expert_bytes == 0) layer.first_frame.push_back(f);
        raw += unit.frames[f].raw_bytes;
      }
      layer.first_frame.push_back(unit.frames.size());
      if (layer.first_frame.size() != std::size_t(config.n_expert) + 1) {
        throw std::invalid_argument(fmt::format("{}: extent '{}' holds {} experts, the model has {}", source.path(), unit.name,
                                                layer.first_frame.size() - 1, config.n_expert));
      }
    }
    layers_.push_back(std::move(layer));
  }
  const std::vector<std::string> files = source.files();
  const auto* gguf = dynamic_cast<const GgufSource*>(&source);
  for (const std::string& file : files) {
    io::ReaderOptions ro;
    ro.backend = options_.backend;
    if (gguf) ro.retry = gguf->file_options().retry;
    readers_.push_back(io::Reader::open(file, ro, options_.fault ? io::fault_wrapper(*options_.fault) : io::BackendWrapper{}));
  }
}

ExpertStore::~ExpertStore() { drain(); }

std::uint64_t ExpertStore::read_begin(const Part& p, std::int32_t expert) const {
  return align_down(p.file_offset + p.expert_stride * std::uint64_t(expert), granularity_);
}

std::uint64_t ExpertStore::read_length(const Part& p, std::int32_t expert) const {
  const std::uint64_t begin = p.file_offset + p.expert_stride * std::uint64_t(expert);
  return align_up(begin + p.slice_bytes, granularity_) - align_down(begin, granularity_);
}

std::uint64_t ExpertStore::start_read(cache::ExpertKey key, std::optional<cache::ExpertCache::Fill> fill, std::byte* dest, bool guess) {
  const std::uint64_t id = next_id_++;
  Read& r = reads_[id];
  r.key = key;
  r.guess = guess;
  r.wanted = !guess;
  if (guess) {
    ++stats_.guess_reads;
    guessed_.insert({key.layer, key.expert});
  }
  if (fill) r.fill.emplace(std::move(*fill));
  r.dest = dest;
  r.started = std::chrono::steady_clock::now();
  if (reads_landing_++ == 0) busy_since_ = r.started;
  read_of_[{key.layer, key.expert}] = id;
  const Layer& layer = layers_[std::size_t(key.layer)];
  if (layer.packed) {  // the expert's three slices together: one read
    r.parts_left = 1;
    const std::uint64_t begin = layer.extent_offset + layer.expert_bytes * std::uint64_t(key.expert);
    (guess ? queued_guesses_ : queued_)
        .push_back({0, io::ReadRequest{dest, begin, static_cast<std::uint32_t>(layer.expert_bytes), -1, id * 4}});
    stats_.bytes_read += layer.expert_bytes;
    ++stats_.expert_reads;
    return id;
  }
  const std::array<Part, 3>& parts = layer.parts;
  for (std::size_t p = 0; p < 3; ++p) {
    const std::uint64_t length = read_length(parts[p], key.expert);
    (guess ? queued_guesses_ : queued_)
        .push_back({parts[p].file, io::ReadRequest{dest + parts[p].slot_offset, read_begin(parts[p], key.expert),
                                                   static_cast<std::uint32_t>(length), -1, id * 4 + p}});
    stats_.bytes_read += length;
  }
  ++stats_.expert_reads;
  return id;
}

void ExpertStore::pump() {
  for (std::deque<Queued>* queue : {&queued_, &queued_guesses_}) {
    for (auto it = queue->begin(); it != queue->end();) {
      io::Reader& reader = *readers_[it->file];
      if (!reader.can_submit()) {
        ++it;
        continue;
      }
      reader.submit(it->request);
      it = queue->erase(it);
    }
  }
  for (std::size_t f = 0; f < readers_.size(); ++f) {
    if (Status st = readers_[f]->flush(); !st) {
      drain();
      const Error& e = st.error();
      throw Exception(ErrorContext{e.kind, readers_[f]->path(), "experts", -1, -1, e.sys_errno},
                      fmt::format("{}: cannot submit expert reads: {}", readers_[f]->path(), e.message));
    }
  }
}

void ExpertStore::promote(std::uint64_t id) {
  for (auto it = queued_guesses_.begin(); it != queued_guesses_.end();) {
    if (it->request.user_data / 4 == id) {
      queued_.push_back(*it);
      it = queued_guesses_.erase(it);
    } else {
      ++it;
    }
  }
}

void ExpertStore::complete(const io::ReadCompletion& c) {
  const auto it = reads_.find(c.user_data / 4);
  SLUICE_ASSERT(it != reads_.end());
  Read& r = it->second;
  if (layers_[std::size_t(r.key.layer)].packed) {
    complete_packed(r, c);
  } else {
    complete_slice(r, c);
  }
  if (r.parts_left == 0) {
    const auto landed = std::chrono::steady_clock::now();
    if (--reads_landing_ == 0) stats_.io_busy += landed - busy_since_;
    if (options_.trace) {
      options_.trace->complete("io", fmt::format("expert {}.{}", r.key.layer, r.key.expert), r.started, landed,
                               {{"layer", std::int64_t(r.key.layer)}, {"expert", std::int64_t(r.key.expert)}, {"transient", std::int64_t(!r.fill)},
                                {"guess", std::int64_t(r.guess)}});
    }
    if (!r.failed && r.fill) r.pin.emplace(std::move(*r.fill).commit());
    if (r.fill) r.fill.reset();  // failed: the slot is emptied
    if (!r.wanted) {
      // A guess nobody has asked for: it stays in the cache unpinned (a failed one is simply
      // dropped; the demand read that may follow reports the error).
      read_of_.erase({r.key.layer, r.key.expert});
      reads_.erase(it);
    }
  }
}

void ExpertStore::complete_packed(Read& r, const io::ReadCompletion& c) {
  const Layer& layer = layers_[std::size_t(r.key.layer)];
  const ReadUnit& unit = source_.units()[layer.unit];
  const std::string& file = readers_[0]->path();
  const std::uint64_t begin = layer.extent_offset + layer.expert_bytes * std::uint64_t(r.key.expert);
  auto note = [&](ErrorKind kind, int err, std::uint64_t offset, const std::string& why) {
    r.failed = true;
    r.error = ErrorContext{kind, file, unit.name, r.key.expert, std::int64_t(offset), err};
    r.message = fmt::format("{}: expert {} of layer {} ({} bytes [{}, {})) at offset {}: {}", file, r.key.expert, r.key.layer, unit.name,
                            begin, begin + layer.expert_bytes, offset, why);
  };
  --r.parts_left;
  if (!c.status) {
    note(c.status.error().kind, c.status.error().sys_errno, begin, c.status.error().message);
    return;
  }
  if (c.bytes < layer.expert_bytes) {
    note(ErrorKind::io, 0, begin + c.bytes, fmt::format("the file ends at byte {} (truncated since it was opened?)", begin + c.bytes));
    return;
  }
  // Every frame of the expert against its own checksum: the pack's integrity, one expert at a time.
  const auto verifying = std::chrono::steady_clock::now();
  for (std::size_t f = layer.first_frame[std::size_t(r.key.expert)]; f < layer.first_frame[std::size_t(r.key.expert) + 1]; ++f) {
    const pack::FrameInfo& frame = unit.frames[f];
    if (!pack::frame_checksum_ok(frame, std::span<const std::byte>(r.dest + (frame.offset - begin), frame.disk_bytes))) {
      note(ErrorKind::corrupt, 0, frame.offset,
           fmt::format("checksum mismatch in frame {} ({} bytes at offset {})", f, frame.disk_bytes, frame.offset));
      break;
    }
  }
  stats_.verify += std::chrono::steady_clock::now() - verifying;
}

void ExpertStore::complete_slice(Read& r, const io::ReadCompletion& c) {
  const Part& part = layers_[std::size_t(r.key.layer)].parts[c.user_data % 4];
  const std::string& file = readers_[part.file]->path();
  const std::uint64_t begin = read_begin(part, r.key.expert);
  const std::uint64_t slice_at = part.file_offset + part.expert_stride * std::uint64_t(r.key.expert);
  auto note = [&](ErrorKind kind, int err, std::uint64_t offset, const std::string& why) {
    if (r.failed) return;  // the first error of the expert is the one reported
    r.failed = true;
    r.error = ErrorContext{kind, file, part.tensor, r.key.expert, std::int64_t(offset), err};
    r.message = fmt::format("{}: expert {} of layer {} ({} bytes [{}, {})) at offset {}: {}", file, r.key.expert, r.key.layer,
                            part.tensor, slice_at, slice_at + part.slice_bytes, offset, why);
  };
  --r.parts_left;
  if (!c.status) {
    note(c.status.error().kind, c.status.error().sys_errno, begin, c.status.error().message);
  } else if (c.bytes < slice_at + part.slice_bytes - begin) {
    note(ErrorKind::io, 0, begin + c.bytes, fmt::format("the file ends at byte {} (truncated since it was opened?)", begin + c.bytes));
  } else if (index_) {
    const auto verifying = std::chrono::steady_clock::now();
    auto verified = index_->verify(part.file, begin, std::span<const std::byte>(r.dest + part.slot_offset, c.bytes), part.tensor);
    stats_.verify += std::chrono::steady_clock::now() - verifying;
    if (!verified) {
      note(verified.error().kind, 0, begin, verified.error().message);
    } else if (verified.value() != c.bytes) {
      note(ErrorKind::corrupt, 0, begin, "the read is not whole index chunks");
    }
  }
}

void ExpertStore::reap(bool block) {
  std::array<io::ReadCompletion, 16> done;
  bool waited = false;
  for (std::size_t f = 0; f < readers_.size(); ++f) {
    io::Reader& reader = *readers_[f];
    if (reader.in_flight() == 0) continue;
    const bool blocking = block && !waited;
    const auto waiting = std::chrono::steady_clock::now();
    auto finished = reader.wait(done, blocking ? 1 : 0);
    if (blocking) stats_.wait += std::chrono::steady_clock::now() - waiting;
    if (!finished) {
      const Error e = finished.error();
      drain();
      throw Exception(ErrorContext{e.kind, reader.path(), "experts", -1, -1, e.sys_errno},
                      fmt::format("{}: waiting for expert reads: {}", reader.path(), e.message));
    }
    if (finished.value() > 0) waited = true;
    for (std::size_t i = 0; i < finished.value(); ++i) complete(done[i]);
  }
  pump();
}

void ExpertStore::drain() {
  queued_.clear();
  queued_guesses_.clear();
  guessed_.clear();
  pending_.clear();
  std::array<io::ReadCompletion, 16> done;
  for (auto& reader : readers_) {
    // The reads write into our slots: they must land before the slots are given back. A wait
    // that fails leaves nothing more to wait for from that backend.
    while (reader->in_flight() > 0) {
      if (!reader->wait(done, 1)) break;
    }
  }
  if (reads_landing_ > 0) stats_.io_busy += std::chrono::steady_clock::now() - busy_since_;
  reads_landing_ = 0;
  reads_.clear();  // unfinished Fills empty their slots; finished Pins unpin
  read_of_.clear();
  held_.clear();
}

void ExpertStore::fail(const Read& r) {
  const ErrorContext context = r.error;
  const std::string message = r.message;
  drain();
  throw Exception(context, message);
}

void ExpertStore::reset() { drain(); }

void ExpertStore::request(std::int64_t layer, std::span<const std::int32_t> experts) {
  SLUICE_ASSERT(layer >= 0 && layer < config_.n_layer);
  // Judge this layer's guesses: those requested now were worth their read.
  for (const std::int32_t e : experts) stats_.guess_used += guessed_.count({layer, e});
  guessed_.erase(guessed_.lower_bound({layer, std::numeric_limits<std::int32_t>::min()}),
                 guessed_.lower_bound({layer + 1, std::numeric_limits<std::int32_t>::min()}));
  // Pin the ready ones first, so that reserving slots for the absent ones cannot evict them.
  for (const std::int32_t e : experts) {
    const cache::ExpertKey key{std::int32_t(layer), e};
    cache_.record_access(key);
    if (std::optional<cache::ExpertCache::Pin> pin = cache_.pin(key)) held_.emplace(std::pair{layer, e}, std::move(*pin));
  }
  for (const std::int32_t e : experts) {
    if (held_.count({layer, e})) continue;
    if (const auto guessed = read_of_.find({layer, e}); guessed != read_of_.end()) {
      // A guess still being read: now demanded, kept pinned for acquire() when it lands.
      reads_.at(guessed->second).wanted = true;
      promote(guessed->second);
      continue;
    }
    // Absent: read it into a slot when one can be freed now; otherwise once earlier experts have
    // been computed and released (start_pending), or at its acquire() at the latest.
    const cache::ExpertKey key{std::int32_t(layer), e};
    if (!pending_.empty()) {
      pending_.push_back(key);
    } else if (std::optional<cache::ExpertCache::Fill> fill = cache_.reserve(key, cache::FillReason::demand)) {
      std::byte* dest = fill->bytes().data();
      start_read(key, std::move(fill), dest);
    } else {
      pending_.push_back(key);
    }
  }
  pump();
}

bool ExpertStore::ready(std::int64_t layer, std::int32_t expert) {
  if (held_.count({layer, expert})) return true;
  const auto it = read_of_.find({layer, expert});
  if (it == read_of_.end()) return false;
  reap(false);
  return reads_.at(it->second).parts_left == 0;
}

void ExpertStore::start_pending() {
  while (!pending_.empty()) {
    std::optional<cache::ExpertCache::Fill> fill = cache_.reserve(pending_.front(), cache::FillReason::demand);
    if (!fill) break;
    std::byte* dest = fill->bytes().data();
    start_read(pending_.front(), std::move(fill), dest);
    pending_.pop_front();
  }
}

ExpertWeights ExpertStore::acquire(std::int64_t layer, std::int32_t expert) {
  const std::pair key{layer, expert};
  // Not read yet: read below, first in line for a slot.
  if (auto p = std::find_if(pending_.begin(), pending_.end(), [&](const cache::ExpertKey& k) { return k.layer == layer && k.expert == expert; });
      p != pending_.end()) {
    pending_.erase(p);
  }
  std::shared_ptr<void> hold;
  const std::byte* slot = nullptr;
  if (auto h = held_.find(key); h != held_.end()) {
    auto pin = std::make_shared<cache::ExpertCache::Pin>(std::move(h->second));
    held_.erase(h);
    // The expert computed before this call has been released: its slot can take a pending read.
    start_pending();
    pump();
    slot = pin->bytes().data();
    hold = std::move(pin);
  } else {
    auto it = read_of_.find(key);
    if (it == read_of_.end()) {
      // Not started at request(): every slot of the layer was held then. Try again now (the
      // experts computed since have been released), else read into the transient buffer.
      const cache::ExpertKey ck{std::int32_t(layer), expert};
      std::optional<cache::ExpertCache::Fill> fill = cache_.reserve(ck, cache::FillReason::demand);
      std::byte* dest = fill ? fill->bytes().data() : transient_.data();
      if (!fill) ++stats_.transient_reads;
      start_read(ck, std::move(fill), dest);
      it = read_of_.find(key);
    }
    start_pending();
    pump();
    while (reads_.at(it->second).parts_left > 0) reap(true);
    Read& r = reads_.at(it->second);
    if (r.failed) fail(r);
    slot = r.dest;
    if (r.pin) hold = std::make_shared<cache::ExpertCache::Pin>(std::move(*r.pin));
    reads_.erase(it->second);
    read_of_.erase(it);
  }
  ExpertWeights w;
  const Layer& l = layers_[std::size_t(layer)];
  TensorView* out[3] = {&w.gate, &w.up, &w.down};
  for (std::size_t p = 0; p < 3; ++p) {
    const Part& part = l.parts[p];
    *out[p] = part.shape;
    const std::uint64_t slice_at = part.file_offset + part.expert_stride * std::uint64_t(expert);
    // A pack's expert is read whole from its first byte: each slice sits at its offset in the expert.
    out[p]->data = slot + part.slot_offset + (l.packed ? 0 : slice_at - read_begin(part, expert));
  }
  w.hold = std::move(hold);
  return w;
}

void ExpertStore::guess(std::int64_t layer, std::span<const std::int32_t> experts) {
  SLUICE_ASSERT(layer >= 0 && layer < config_.n_layer);
  if (!options_.guesses) return;
  for (const std::int32_t e : experts) {
    const cache::ExpertKey key{std::int32_t(layer), e};
    if (read_of_.count({layer, e}) || cache_.state(key) != cache::ExpertState::absent) continue;
    // The cache refuses a guess that would evict an expert used more often.
    if (std::optional<cache::ExpertCache::Fill> fill = cache_.reserve(key, cache::FillReason::guess)) {
      std::byte* dest = fill->bytes().data();
      start_read(key, std::move(fill), dest, /*guess=*/true);
    }
  }
  pump();
}

ExpertStoreStats ExpertStore::stats() const {
  ExpertStoreStats s = stats_;
  s.cache = cache_.stats();
  return s;
}

}  // namespace sluice
