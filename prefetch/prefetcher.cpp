#include "prefetch/prefetcher.hpp"

#include <algorithm>
#include <filesystem>
#include <fmt/format.h>
#include <limits>
#include <stdexcept>

#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>

#include "common/assert.hpp"
#include "common/units.hpp"

namespace sluice::prefetch {

using Clock = std::chrono::steady_clock;

ExtentHandle& ExtentHandle::operator=(ExtentHandle&& other) noexcept {
  if (this != &other) {
    reset();
    owner_ = std::exchange(other.owner_, nullptr);
    slot_ = other.slot_;
    extent_ = other.extent_;
    plan_position_ = other.plan_position_;
    bytes_ = std::exchange(other.bytes_, {});
  }
  return *this;
}

void ExtentHandle::reset() {
  if (owner_ != nullptr) std::exchange(owner_, nullptr)->release(slot_);
  bytes_ = {};
}

Exception to_exception(const PrefetchError& error, const std::string& file) {
  return Exception(ErrorContext{error.kind, error.file.empty() ? file : error.file, error.extent_name, error.frame,
                                error.file_offset > 0 || error.frame >= 0 ? std::int64_t(error.file_offset) : -1,
                                error.sys_errno},
                   error.message);
}

namespace {
// The stored bytes land where decode reads them in place: one range (or none) of raw frames.
bool zero_copy(const pack::ExtentInfo& e) { return e.all_raw() && e.ranges.size() <= 1; }

std::uint64_t disk_slot_bytes(const pack::ExtentInfo& e) {
  if (e.ranges.empty()) return align_up(e.disk_bytes, kDirectAlign);
  std::uint64_t bytes = 0;
  for (const pack::ExtentRange& r : e.ranges) bytes += align_up(r.bytes, kDirectAlign);
  return bytes;
}
}  // namespace

std::uint64_t extent_slot_bytes(const pack::ExtentInfo& e) {
  return disk_slot_bytes(e) + (zero_copy(e) ? 0 : align_up(e.raw_bytes, kDirectAlign));
}

std::uint64_t Prefetcher::frame_slot_offset(const pack::ExtentInfo& e, std::size_t f) {
  const pack::FrameInfo& frame = e.frames[f];
  if (e.ranges.empty()) return frame.offset - e.offset;
  std::uint64_t at = 0;
  for (std::uint32_t r = 0; r < frame.range; ++r) at += align_up(e.ranges[r].bytes, kDirectAlign);
  return at + (frame.offset - e.ranges[frame.range].offset);
}

std::vector<ExtentPiece> extent_range_pieces(const pack::ExtentInfo& e, std::uint64_t raw_begin, std::uint64_t raw_end,
                                             std::uint64_t max_slot_bytes) {
  std::vector<ExtentPiece> pieces;
  std::size_t f = 0;
  std::uint64_t raw = 0;  // first raw byte of frame f
  for (; f < e.frames.size() && raw + e.frames[f].raw_bytes <= raw_begin; ++f) raw += e.frames[f].raw_bytes;
  while (f < e.frames.size() && raw < raw_end) {
    ExtentPiece piece;
    piece.raw_begin = raw;
    pack::ExtentInfo& info = piece.info;
    info.name = fmt::format("{}[frames {}..", e.name, f);
    info.offset = align_down(e.frames[f].offset, kDirectAlign);
    const std::uint32_t range = e.frames[f].range;
    for (; f < e.frames.size() && raw < raw_end && e.frames[f].range == range; ++f) {
      // Grown by frame f, in place; taken back when that overflows the slot.
      const std::uint64_t disk_before = info.disk_bytes;
      info.frames.push_back(e.frames[f]);
      info.frames.back().range = 0;
      info.disk_bytes = e.frames[f].offset + e.frames[f].disk_bytes - info.offset;
      info.raw_bytes += e.frames[f].raw_bytes;
      if (info.frames.size() > 1 && extent_slot_bytes(info) > max_slot_bytes) {
        info.frames.pop_back();
        info.disk_bytes = disk_before;
        info.raw_bytes -= e.frames[f].raw_bytes;
        break;
      }
      raw += e.frames[f].raw_bytes;
    }
    info.name += fmt::format("{}]", f - 1);
    if (!e.ranges.empty()) info.ranges = {pack::ExtentRange{e.ranges[range].file, info.offset, info.disk_bytes}};
    pieces.push_back(std::move(piece));
  }
  return pieces;
}

std::vector<pack::ExtentInfo> extent_pieces(const pack::ExtentInfo& e, std::uint64_t max_slot_bytes) {
  std::vector<pack::ExtentInfo> pieces;
  for (ExtentPiece& piece : extent_range_pieces(e, 0, e.raw_bytes, max_slot_bytes)) pieces.push_back(std::move(piece.info));
  return pieces;
}

Prefetcher::Prefetcher(std::string path, std::vector<pack::ExtentInfo> extents, const RingFor& ring_for,
                       PrefetchOptions options, io::BackendWrapper wrap)
    : Prefetcher(std::vector<std::string>{std::move(path)}, std::move(extents), ring_for, options, std::move(wrap)) {}

Prefetcher::Prefetcher(std::vector<std::string> paths, std::vector<pack::ExtentInfo> extents, const RingFor& ring_for,
                       PrefetchOptions options, io::BackendWrapper wrap)
    : paths_(std::move(paths)), extents_(std::move(extents)), options_(options), wrap_(std::move(wrap)) {
  SLUICE_ASSERT_MSG(!paths_.empty(), "a prefetcher needs a file");
  path_ = paths_.front();
  SLUICE_ASSERT_MSG(options_.slots >= 1, "a ring needs at least one slot");
  SLUICE_ASSERT_MSG(options_.read_bytes % kDirectAlign == 0 && options_.read_bytes > 0, "read size must be 4096-aligned");
  std::uint64_t disk_capacity = 0, staging_capacity = 0;
  fits_ring_.assign(extents_.size(), false);
  for (std::uint32_t index : ring_for.extents) {
    SLUICE_ASSERT_MSG(index < extents_.size(), "the ring is sized for an extent that does not exist");
    const pack::ExtentInfo& e = extents_[index];
    SLUICE_ASSERT_MSG(e.offset % kDirectAlign == 0, "extent not 4096-aligned (Pack::open checks this)");
    for (const pack::ExtentRange& r : e.ranges) {
      SLUICE_ASSERT_MSG(r.file < paths_.size() && r.offset % kDirectAlign == 0, "extent range in no file or not 4096-aligned");
    }
    disk_capacity = std::max(disk_capacity, disk_slot_bytes(e));
    if (!zero_copy(e)) staging_capacity = std::max(staging_capacity, e.raw_bytes);
    fits_ring_[index] = true;
  }
  disk_capacity = std::max<std::uint64_t>(disk_capacity, kDirectAlign);

  auto topology = options_.topology ? options_.topology : numa::Topology::load_this_system();
  const std::uint64_t slot_bytes = disk_capacity + align_up(staging_capacity, kDirectAlign);
  // One mapping for the whole ring, not one per slot: PinnedBuffer backs whole 2 MiB-aligned
  // spans of a mapping with huge pages, so a slot of 3.8 MiB alone got one huge page and 1.8 MiB
  // of 4 KiB pages, and a slot of 1 MiB none; O_DIRECT reads into 4 KiB pages ran at half speed
  // on a virtio disk (the quickstart's 4 slots streamed at 0.65 of the raw read, 32 slots of
  // 1 MiB at 0.5). In one mapping only the ring's last partial 2 MiB is in small pages.
  ring_memory_ = numa::PinnedBuffer::allocate(topology, options_.numa_node, slot_bytes * options_.slots);
  slots_.resize(options_.slots);
  for (unsigned i = 0; i < options_.slots; ++i) {
    Slot& slot = slots_[i];
    slot.disk = ring_memory_.data() + std::uint64_t(i) * slot_bytes;
    slot.staging = slot.disk + disk_capacity;
    regions_.push_back(iovec{slot.disk, disk_capacity});
  }
  readers_.resize(paths_.size());
  for (std::size_t file = 0; file < paths_.size(); ++file) open_reader(file);
  start_io_thread();
}

Prefetcher::Prefetcher(std::string path, std::vector<pack::ExtentInfo> extents, const std::vector<std::uint32_t>& plan,
                       PrefetchOptions options, io::BackendWrapper wrap)
    : Prefetcher(std::move(path), std::move(extents), RingFor(plan), options, std::move(wrap)) {
  for (std::uint32_t index : plan) append(index);
}

void Prefetcher::open_reader(std::size_t file) {
  std::unique_ptr<io::Reader>& reader = readers_[file];
  reader = io::Reader::open(paths_[file], io::ReaderOptions{options_.io, options_.retry}, wrap_);
  // Fixed buffers spare the kernel pinning pages on every read; unregistered reads still work.
  if (Status st = reader->register_buffers(regions_); !st) {
    reader->set_fallback_note(reader->fallback_note() + (reader->fallback_note().empty() ? "" : "; ") +
                              "buffers not registered: " + st.error().message);
  }
}

unsigned Prefetcher::in_flight() const {
  unsigned n = 0;
  for (const auto& reader : readers_) n += reader->in_flight();
  return n;
}

void Prefetcher::start_io_thread() { io_thread_ = std::thread([this] { io_loop(); }); }

Prefetcher::~Prefetcher() {
  cancel();
  std::unique_lock lock(mutex_);
  SLUICE_ASSERT_MSG(handles_alive_ == 0, "Prefetcher destroyed while an ExtentHandle is alive");
}

const char* Prefetcher::backend_name() const { return readers_.front()->backend_name(); }
const std::string& Prefetcher::io_note() const { return readers_.front()->fallback_note(); }

PrefetchError Prefetcher::make_error(ErrorKind kind, std::uint32_t extent, std::uint32_t file, std::uint64_t file_offset,
                                     int sys_errno, const std::string& cause) const {
  const pack::ExtentInfo& e = extents_[extent];
  PrefetchError error{kind, extent, e.name, -1, file_offset, sys_errno, {}, paths_[file]};
  for (std::size_t f = 0; f < e.frames.size(); ++f) {
    const bool in_file = e.ranges.empty() ? file == 0 : e.ranges[e.frames[f].range].file == file;
    if (in_file && file_offset >= e.frames[f].offset && file_offset < e.frames[f].offset + e.frames[f].disk_bytes) {
      error.frame = static_cast<std::int64_t>(f);
    }
  }
  error.message = fmt::format("{}: {} error in extent {} ({}), frame {}, file offset {}: {}", paths_[file], to_string(kind),
                              extent, e.name, error.frame, file_offset, cause);
  return error;
}

bool Prefetcher::assign_free_slots() {
  bool assigned = false;
  for (unsigned i = 0; i < slots_.size() && assign_position_ < plan_base_ + plan_.size() && !io_failed_; ++i) {
    Slot& slot = slots_[i];
    if (slot.state != SlotState::free) continue;
    slot.extent = scheduled_at(assign_position_);
    const pack::ExtentInfo& e = extents_[slot.extent];
    slot.state = SlotState::reading;
    slot.plan_position = assign_position_++;
    // The slot remembers its extent: the schedule no longer needs the entry.
    while (plan_base_ < assign_position_) {
      plan_.pop_front();
      ++plan_base_;
    }
    // Each range (or the extent's one span) in reads of at most read_bytes, back to back.
    slot.chunks.clear();
    slot.read_length = 0;
    auto add_range = [&](std::uint32_t file, std::uint64_t offset, std::uint64_t bytes) {
      const std::uint64_t length = align_up(bytes, kDirectAlign);
      for (std::uint64_t at = 0; at < length; at += options_.read_bytes) {
        const auto n = static_cast<std::uint32_t>(std::min<std::uint64_t>(options_.read_bytes, length - at));
        slot.chunks.push_back(Chunk{file, offset + at, slot.read_length + at, n, std::min<std::uint64_t>(n, bytes - std::min(at, bytes))});
      }
      slot.read_length += length;
    };
    if (e.ranges.empty()) add_range(0, e.offset, e.disk_bytes);
    for (const pack::ExtentRange& r : e.ranges) add_range(r.file, r.offset, r.bytes);
    slot.chunks_total = static_cast<std::uint32_t>(slot.chunks.size());
    slot.chunks_issued = slot.chunks_done = 0;
    slot.read_started = Clock::now();
    slot.decoded = {};
    assigned = true;
    std::uint64_t in_use = 0;
    for (const Slot& s : slots_) in_use += s.state != SlotState::free;
    stats_.max_slots_in_use = std::max(stats_.max_slots_in_use, in_use);
  }
  return assigned;
}

void Prefetcher::issue_reads() {
  // Earliest plan position first: the consumer needs it soonest. A slot whose next read's file
  // has a full queue waits; slots behind it may read other files.
  for (;;) {
    Slot* best = nullptr;
    unsigned best_index = 0;
    for (unsigned i = 0; i < slots_.size(); ++i) {
      Slot& s = slots_[i];
      if (s.state == SlotState::reading && s.chunks_issued < s.chunks_total &&
          readers_[s.chunks[s.chunks_issued].file]->can_submit() &&
          (best == nullptr || s.plan_position < best->plan_position)) {
        best = &s;
        best_index = i;
      }
    }
    if (best == nullptr) return;
    const Chunk& chunk = best->chunks[best->chunks_issued];
    std::uint64_t user_data = (std::uint64_t(best_index) << 32) | best->chunks_issued;
    readers_[chunk.file]->submit(io::ReadRequest{best->disk + chunk.slot_offset, chunk.file_offset, chunk.length,
                                                 static_cast<int>(best_index), user_data});
    ++best->chunks_issued;
  }
}

void Prefetcher::io_loop() {
  std::vector<io::ReadCompletion> completions(readers_.front()->queue_depth());
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      while (!cancelled_) {
        assign_free_slots();
        issue_reads();
        if (in_flight() > 0) break;
        note_io_busy();
        // Every slot busy with decoded or consumed extents, nothing scheduled, or stopped by an
        // error: wait for a slot, an append, or cancel()/reset().
        io_cv_.wait(lock);
      }
      note_io_busy();
      if (cancelled_ && in_flight() == 0) return;
    }
    // Block for completions without the lock so the consumer and decoders are never stalled.
    // With several files: take what any reader has finished without blocking, else block on the
    // first reader with reads in flight (a read of another file that lands meanwhile waits for
    // the next round; every reader's queued reads were handed to the kernel first).
    const unsigned depth = in_flight();
    Result<std::size_t> got = std::size_t{0};
    if (readers_.size() == 1) {
      got = readers_.front()->wait(completions, 1);
    } else {
      for (auto& reader : readers_) {
        if (!got) break;
        if (reader->in_flight() > 0) {
          if (Status st = reader->flush(); !st) got = st.error();
        }
      }
      for (auto& reader : readers_) {
        if (!got || got.value() > 0 || reader->in_flight() == 0) continue;
        got = reader->wait(completions, 0);
      }
      for (auto& reader : readers_) {
        if (!got || got.value() > 0 || reader->in_flight() == 0) continue;
        got = reader->wait(completions, 1);
      }
    }
    std::unique_lock lock(mutex_);
    note_io_busy();
    ++stats_.waits;
    stats_.in_flight_at_wait += depth;
    if (!got) {
      // The ring itself failed (not a single read): fail every extent being read and stop.
      for (Slot& slot : slots_) {
        if (slot.state != SlotState::reading) continue;
        slot.error = make_error(ErrorKind::io, slot.extent, slot.chunks.front().file, slot.chunks.front().file_offset,
                                got.error().sys_errno, got.error().message);
        slot.state = SlotState::failed;
      }
      io_failed_ = true;
      consumer_cv_.notify_all();
      return;
    }
    for (std::size_t i = 0; i < got.value(); ++i) on_read_complete(completions[i]);
  }
}

void Prefetcher::on_read_complete(const io::ReadCompletion& completion) {
  auto index = static_cast<unsigned>(completion.user_data >> 32);
  auto chunk = static_cast<std::uint32_t>(completion.user_data & 0xffffffffu);
  Slot& slot = slots_[index];
  stats_.bytes_read += completion.bytes;
  if (slot.state != SlotState::reading) return;  // its extent already failed
  const Chunk& read = slot.chunks[chunk];
  if (!completion.status) {
    const Error& e = completion.status.error();
    slot.error = make_error(e.kind, slot.extent, read.file, read.file_offset, e.sys_errno, e.message);
    slot.state = SlotState::failed;
    io_failed_ = true;
    consumer_cv_.notify_all();
    return;
  }
  // The extent's stored bytes must all be in the file; a read clamped at EOF means the file was
  // truncated after it was opened.
  if (completion.bytes < read.needed) {
    slot.error = make_error(ErrorKind::io, slot.extent, read.file, read.file_offset + completion.bytes, 0,
                            fmt::format("file ends early: read {} of {} bytes (truncated since it was opened?)",
                                        completion.bytes, read.needed));
    slot.state = SlotState::failed;
    io_failed_ = true;
    consumer_cv_.notify_all();
    return;
  }
  if (++slot.chunks_done == slot.chunks_total) {
    ++stats_.extents_read;
    if (options_.trace) {
      options_.trace->complete("io", extents_[slot.extent].name, slot.read_started, Clock::now(),
                               {{"extent", slot.extent}, {"bytes", slot.read_length}, {"pass_position", slot.plan_position}});
    }
    if (cancelled_) {
      slot.state = SlotState::free;
      return;
    }
    start_decode(index);
  }
}

void Prefetcher::start_decode(unsigned index) {
  slots_[index].state = SlotState::decoding;
  ++decodes_running_;
  arena_.enqueue([this, index] { decode_slot(index); });
}

void Prefetcher::decode_slot(unsigned index) {
  Slot& slot = slots_[index];
  const pack::ExtentInfo& e = extents_[slot.extent];
  const bool in_place = zero_copy(e);
  // An extent piece (extent_pieces) starts at a block boundary before its first frame.
  std::byte* out = in_place ? slot.disk + (e.frames.empty() ? 0 : frame_slot_offset(e, 0)) : slot.staging;
  std::vector<std::uint64_t> raw_offsets(e.frames.size() + 1, 0);
  for (std::size_t f = 0; f < e.frames.size(); ++f) raw_offsets[f + 1] = raw_offsets[f] + e.frames[f].raw_bytes;

  std::mutex error_mutex;
  std::int64_t bad_frame = std::numeric_limits<std::int64_t>::max();
  PrefetchError first_error;
  // Never throw out of a TBB task: every failure is recorded and carried to the consumer.
  tbb::parallel_for(std::size_t{0}, e.frames.size(), [&](std::size_t f) {
    const auto started = Clock::now();
    // One trace lane per TBB worker, so overlapping frames do not stack on one track.
    const std::string lane = options_.trace ? fmt::format("decompress/worker {}", tbb::this_task_arena::current_thread_index()) : "";
    const pack::FrameInfo& frame = e.frames[f];
    std::span<const std::byte> stored(slot.disk + frame_slot_offset(e, f), frame.disk_bytes);
    std::optional<PrefetchError> error;
    if (options_.verify && !pack::frame_checksum_ok(frame, stored)) {
      error = make_error(ErrorKind::checksum, slot.extent, e.ranges.empty() ? 0 : e.ranges[frame.range].file, frame.offset, 0,
                         fmt::format("checksum mismatch in {} stored bytes", frame.disk_bytes));
    }
    const auto verified = Clock::now();
    if (!error && !in_place) {
      Status st = pack::decode_frame(frame, stored, std::span(out + raw_offsets[f], frame.raw_bytes));
      if (!st) {
        error = make_error(st.error().kind, slot.extent, e.ranges.empty() ? 0 : e.ranges[frame.range].file, frame.offset, 0,
                           st.error().message);
      }
    }
    const auto finished = Clock::now();
    if (error) {
      std::lock_guard guard(error_mutex);
      if (static_cast<std::int64_t>(f) < bad_frame) {
        bad_frame = static_cast<std::int64_t>(f);
        first_error = std::move(*error);
      }
    }
    if (options_.verify) frames_verified_.fetch_add(1, std::memory_order_relaxed);
    // The CPU breakdown (PrefetchStats): checksums, then zstd or a raw frame's copy out of place.
    auto ns = [](Clock::duration d) { return std::chrono::duration_cast<std::chrono::nanoseconds>(d).count(); };
    if (options_.verify) verify_busy_ns_.fetch_add(ns(verified - started), std::memory_order_relaxed);
    if (!in_place) {
      (frame.codec == pack::Codec::raw ? copy_busy_ns_ : decode_busy_ns_).fetch_add(ns(finished - verified), std::memory_order_relaxed);
    }
    if (options_.trace) {
      if (options_.verify) options_.trace->complete(lane, "verify " + e.name, started, verified, {{"frame", f}});
      if (!in_place) {
        options_.trace->complete(lane, (frame.codec == pack::Codec::raw ? "copy " : "decompress ") + e.name, verified, finished,
                                 {{"frame", f}});
      }
    }
  });

  std::lock_guard lock(mutex_);
  if (bad_frame != std::numeric_limits<std::int64_t>::max()) {
    slot.error = std::move(first_error);
    slot.state = SlotState::failed;
    io_failed_ = true;
    io_cv_.notify_all();
  } else {
    slot.decoded = std::span<const std::byte>(out, e.raw_bytes);
    slot.state = SlotState::ready;
  }
  --decodes_running_;
  consumer_cv_.notify_all();
  decode_cv_.notify_all();
}

Result<ExtentHandle, PrefetchError> Prefetcher::next() {
  std::unique_lock lock(mutex_);
  auto stopped = [&](const std::string& why) {
    PrefetchError error;
    error.kind = ErrorKind::cancelled;
    error.message = fmt::format("{}: {}", path_, why);
    return error;
  };
  if (next_position_ >= plan_base_ + plan_.size() && next_position_ >= assign_position_) {
    return stopped("the schedule has no more extents");
  }
  // After a failed extent the pass is broken: extents behind it are not delivered.
  if (error_delivered_) return stopped("prefetch stopped after an earlier error");
  auto started = Clock::now();
  Slot* found = nullptr;
  unsigned found_index = 0;
  for (;;) {
    if (cancelled_) return stopped("prefetch cancelled");
    for (unsigned i = 0; i < slots_.size(); ++i) {
      Slot& s = slots_[i];
      if ((s.state == SlotState::ready || s.state == SlotState::failed) && s.plan_position == next_position_) {
        found = &s;
        found_index = i;
      }
    }
    if (found != nullptr) break;
    if (io_failed_ && assign_position_ <= next_position_) {
      ++next_position_;
      return stopped("prefetch stopped after an earlier error");
    }
    consumer_cv_.wait(lock);
  }
  stats_.consumer_wait += Clock::now() - started;
  ++next_position_;
  if (found->state == SlotState::failed) {
    error_delivered_ = true;
    return found->error;  // the slot stays parked: its reads may still be in flight
  }
  found->state = SlotState::consumed;
  ++handles_alive_;
  stats_.bytes_decoded += found->decoded.size();
  return ExtentHandle(this, found_index, found->extent, found->plan_position, found->decoded);
}

void Prefetcher::release(unsigned index) {
  std::lock_guard lock(mutex_);
  SLUICE_ASSERT(slots_[index].state == SlotState::consumed);
  slots_[index].state = SlotState::free;
  --handles_alive_;
  ++stats_.extents_delivered;
  io_cv_.notify_all();
}

void Prefetcher::append(std::uint32_t extent) {
  SLUICE_ASSERT_MSG(extent < extents_.size() && fits_ring_[extent], "append: the ring was not sized for this extent");
  {
    std::lock_guard lock(mutex_);
    plan_.push_back(extent);
  }
  io_cv_.notify_all();
}

bool Prefetcher::done() const { return pending() == 0; }

std::size_t Prefetcher::pending() const {
  std::lock_guard lock(mutex_);
  const std::size_t end = plan_base_ + plan_.size();
  return end > next_position_ ? end - next_position_ : 0;
}

void Prefetcher::stop_io_thread() {
  {
    std::lock_guard lock(mutex_);
    cancelled_ = true;
  }
  io_cv_.notify_all();
  consumer_cv_.notify_all();
  if (io_thread_.joinable()) io_thread_.join();  // returns once no read is in flight
  std::unique_lock lock(mutex_);
  decode_cv_.wait(lock, [&] { return decodes_running_ == 0; });
}

void Prefetcher::cancel() { stop_io_thread(); }

void Prefetcher::reset() {
  stop_io_thread();
  {
    std::lock_guard lock(mutex_);
    // Slots lent out stay lent (their handles release them); every other slot is free again,
    // whatever it held: a read cut short by cancel, a decoded extent never asked for, an error.
    for (Slot& slot : slots_) {
      if (slot.state == SlotState::consumed) continue;
      slot.state = SlotState::free;
      slot.decoded = {};
      slot.error = {};
    }
    // New positions start past every old one, so no old slot can be mistaken for a new extent.
    const std::size_t start = std::max(assign_position_, plan_base_ + plan_.size());
    plan_.clear();
    plan_base_ = assign_position_ = next_position_ = start;
    cancelled_ = io_failed_ = error_delivered_ = false;
  }
  // A wait that failed in the backend itself (not one read) may leave reads the old reader
  // never reaped: a fresh reader starts from a clean queue.
  for (std::size_t file = 0; file < readers_.size(); ++file) {
    if (readers_[file]->in_flight() > 0) open_reader(file);
  }
  start_io_thread();
}

// The reader is only touched by the I/O thread; it copies its busy time here under the mutex,
// with the start of a busy period still open, so stats() can count a disk that never goes idle.
// With several files the readers' busy times are summed (reads of two shards at once count
// twice): an upper bound, exact for one file.
void Prefetcher::note_io_busy() {
  stats_.io_busy = {};
  io_busy_open_since_ = {};
  for (const auto& reader : readers_) {
    stats_.io_busy += reader->stats().busy;
    const auto since = reader->busy_since();
    if (since != std::chrono::steady_clock::time_point{} &&
        (io_busy_open_since_ == std::chrono::steady_clock::time_point{} || since < io_busy_open_since_)) {
      io_busy_open_since_ = since;
    }
  }
}

PrefetchStats Prefetcher::stats() const {
  std::lock_guard lock(mutex_);
  PrefetchStats s = stats_;
  if (io_busy_open_since_ != std::chrono::steady_clock::time_point{}) {
    s.io_busy += std::chrono::steady_clock::now() - io_busy_open_since_;
  }
  s.decode_busy = std::chrono::nanoseconds(decode_busy_ns_.load());
  s.verify_busy = std::chrono::nanoseconds(verify_busy_ns_.load());
  s.copy_busy = std::chrono::nanoseconds(copy_busy_ns_.load());
  s.frames_verified = frames_verified_.load();
  return s;
}

}  // namespace sluice::prefetch
