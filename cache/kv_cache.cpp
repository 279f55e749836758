#include "cache/kv_cache.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fmt/format.h>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

#include "common/error.hpp"
#include "common/assert.hpp"
#include "common/result.hpp"
#include "common/units.hpp"
#include "io/file.hpp"

namespace sluice::cache {
namespace {

// Each layer's offset in a layout of `layers` layers of `layer_bytes(il)` bytes, and the end.
template <typename LayerBytes>
std::vector<std::uint64_t> layer_offsets(std::int64_t layers, LayerBytes layer_bytes) {
  std::vector<std::uint64_t> at(std::size_t(layers) + 1, 0);
  for (std::int64_t il = 0; il < layers; ++il) at[std::size_t(il) + 1] = at[std::size_t(il)] + layer_bytes(il);
  return at;
}

class ResidentKvCache final : public KvCache {
 public:
  explicit ResidentKvCache(const KvShape& shape)
      : KvCache(shape), layer_at_(layer_offsets(shape.n_layer, [&](std::int64_t il) { return shape.layer_bytes(il); })) {
    (void)shape.row_bytes();  // throws for a q8_0 row that is not whole blocks
    storage_.assign(layer_at_.back(), std::byte{0});
  }
  void begin_layer(std::int64_t) override {}
  compute::KvLayerView view(std::int64_t il, std::int32_t seq) override {
    const std::uint64_t plane = shape_.plane_bytes(il);
    std::byte* base = storage_.data() + layer_at_[std::size_t(il)] + std::uint64_t(seq) * 2 * plane;
    return {base, base + plane, shape_.rows(il), shape_.type, shape_.row_bytes(), shape_.ring(il)};
  }
  void end_layer(std::int64_t, std::span<const KvWrite> writes) override { note_writes(writes); }
  // Positions are always written before they are read: only the ring's window needs a check.
  std::int64_t truncate(std::int32_t seq, std::int64_t length) override { return keep(seq, length); }
  std::uint64_t memory_bytes() const override { return storage_.size(); }
  bool spilled() const override { return false; }

 private:
  std::vector<std::uint64_t> layer_at_;
  std::vector<std::byte> storage_;
};

// An anonymous mapping: page-aligned, as O_DIRECT needs, and returned to the kernel on free.
struct Mapping {
  std::byte* data = nullptr;
  std::size_t bytes = 0;
  explicit Mapping(std::size_t n) : bytes(n) {
    void* p = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      throw Exception(ErrorContext{ErrorKind::io, {}, {}, -1, -1, err},
                      fmt::format("cannot map {} for the KV cache: {}", format_bytes(n), std::strerror(err)));
    }
    data = static_cast<std::byte*>(p);
  }
  ~Mapping() {
    if (data) munmap(data, bytes);
  }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
};

// Bytes of one layer in a spilled cache's file and buffers: every sequence's K and V planes, each
// padded to 4 KiB (O_DIRECT).
std::uint64_t spilled_layer_span(const KvShape& shape, std::int64_t il) {
  return align_up(shape.plane_bytes(il), kDirectAlign) * 2 * std::uint64_t(shape.n_seq);
}

// A ring layer's rows [pos0, pos0 + n) mod rows as at most two row ranges [first, last).
struct RowRange {
  std::int64_t first = 0, last = 0;
};
int ring_ranges(std::int64_t pos0, std::int64_t n, std::int64_t rows, bool ring, RowRange out[2]) {
  if (!ring) {
    out[0] = {pos0, pos0 + n};
    return 1;
  }
  if (n >= rows) {
    out[0] = {0, rows};
    return 1;
  }
  const std::int64_t first = pos0 % rows, last = first + n;
  if (last <= rows) {
    out[0] = {first, last};
    return 1;
  }
  out[0] = {first, rows};
  out[1] = {0, last - rows};
  return 2;
}

// Scratch-file layout: layer-major, then sequence, then K and V, each plane the layer's rows
// (n_ctx, or a ring layer's ring) padded to 4096 bytes so every read and write-back can go
// through O_DIRECT (no page cache to count against a memory cap). A layer's planes are
// contiguous in the file and in the buffer; the two buffers hold the largest layer.
//
// Threads: the forward pass's thread calls every method; one reader thread, started with the
// cache, reads the next layer while the current one computes. They share written_ (the reader
// reads the entries of the layer it reads, which the forward thread does not write meanwhile),
// the buffer being read into (the forward thread touches it only after wait_for_read()), and
// file_ (thread-safe). The read's outcome comes back as a Status under mutex_.
class SpilledKvCache final : public KvCache {
 public:
  SpilledKvCache(const KvShape& shape, const std::string& dir, const KvSpillOptions& options)
      : KvCache(shape),
        layer_at_(layer_offsets(shape.n_layer, [&](std::int64_t il) { return spilled_layer_span(shape, il); })),
        written_(std::size_t(shape.n_layer) * std::size_t(shape.n_seq), 0) {
    std::string path = dir + "/sluice-kv-XXXXXX";
    std::vector<char> name(path.begin(), path.end());
    name.push_back('\0');
    const int fd = mkstemp(name.data());
    if (fd < 0) {
      const int err = errno;
      throw Exception(ErrorContext{ErrorKind::io, dir, {}, -1, -1, err},
                      fmt::format("cannot create the KV spill file in {}: {}", dir, std::strerror(err)));
    }
    path = name.data();
    unlink(path.c_str());  // the file lives as long as the descriptor: nothing left after a crash
    // Sparse: blocks are taken as positions are written back (the plan warns when the directory
    // cannot hold the whole file).
    const std::uint64_t file_bytes = spilled_kv_file_bytes(shape);
    SLUICE_ASSERT(file_bytes == layer_at_.back());
    if (ftruncate(fd, off_t(file_bytes)) != 0) {
      const int err = errno;
      close(fd);
      throw Exception(ErrorContext{ErrorKind::io, path, {}, -1, -1, err},
                      fmt::format("cannot size the KV spill file {} to {}: {}", path, format_bytes(file_bytes), std::strerror(err)));
    }
    const int flags = fcntl(fd, F_GETFL);
    io::FileOptions file_options;
    file_options.writable = true;
    file_options.direct = flags >= 0 && fcntl(fd, F_SETFL, flags | O_DIRECT) == 0;
    file_options.fault = options.fault;
    file_ = io::File::adopt(fd, path + " (KV spill file, unlinked)", file_options);
    for (auto& b : buffers_) b = std::make_unique<Mapping>(spilled_kv_memory_bytes(shape) / 2);
    reader_ = std::thread([this] { reader_loop(); });
  }

  ~SpilledKvCache() override {
    {
      std::unique_lock lock(mutex_);
      done_.wait(lock, [this] { return !job_; });
      stop_ = true;
    }
    job_ready_.notify_one();
    reader_.join();
  }

  void begin_layer(std::int64_t il) override {
    SLUICE_ASSERT(il >= 0 && il < shape_.n_layer && active_ < 0);
    if (read_started_) {
      auto started = std::chrono::steady_clock::now();
      Status st = wait_for_read();
      read_wait_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
      if (!st) throw Exception(st.error(), file_->path());
    }
    int b = holds_[0] == il ? 0 : holds_[1] == il ? 1 : -1;
    if (b < 0) {  // first layer ever, a pass that was abandoned half-way, or a failed read
      b = last_ == 0 ? 1 : 0;
      holds_[b] = -1;
      if (Status st = read_layer(il, b); !st) throw Exception(st.error(), file_->path());
      holds_[b] = il;
    }
    active_ = b;
    // Read the next layer into the other buffer while this one computes. Its newest positions
    // were written back when it last ended, before this begin: the read cannot be stale.
    const std::int64_t next = (il + 1) % shape_.n_layer;
    if (next != il) start_read(next, 1 - b);
  }

  compute::KvLayerView view(std::int64_t il, std::int32_t seq) override {
    SLUICE_ASSERT(active_ >= 0 && holds_[active_] == il);
    const std::uint64_t plane = plane_bytes(il);
    std::byte* base = buffers_[active_]->data + std::uint64_t(seq) * 2 * plane;
    return {base, base + plane, shape_.rows(il), shape_.type, shape_.row_bytes(), shape_.ring(il)};
  }

  void end_layer(std::int64_t il, std::span<const KvWrite> writes) override {
    SLUICE_ASSERT(active_ >= 0 && holds_[active_] == il);
    const std::uint64_t rb = std::uint64_t(shape_.row_bytes());
    last_ = active_;
    active_ = -1;
    const std::uint64_t plane_bytes = this->plane_bytes(il);
    for (const KvWrite& w : writes) {
      if (w.n <= 0) continue;
      RowRange ranges[2];
      const int n_ranges = ring_ranges(w.pos0, w.n, shape_.rows(il), shape_.ring(il), ranges);
      for (int r = 0; r < n_ranges; ++r) {
        // The 4096-aligned window around the new rows: bytes before and after them are earlier
        // positions (the buffer holds what the file holds) or beyond what any pass reads.
        const std::uint64_t from = std::uint64_t(ranges[r].first) * rb / kDirectAlign * kDirectAlign;
        const std::uint64_t to = std::min(plane_bytes, align_up(std::uint64_t(ranges[r].last) * rb, kDirectAlign));
        for (int plane = 0; plane < 2; ++plane) {
          const std::uint64_t at = (std::uint64_t(w.seq) * 2 + std::uint64_t(plane)) * plane_bytes;
          Status st = file_->write_at({buffers_[last_]->data + at + from, to - from}, file_offset(il) + at + from);
          if (!st) {
            // The file now lacks these positions: forget this layer's copy in RAM too, so nothing
            // reads a half-persisted layer as if it were whole; the caller abandons the pass.
            holds_[last_] = -1;
            throw Exception(st.error(), file_->path());
          }
          bytes_written_ += to - from;
        }
      }
      std::int64_t& filled = written_[std::size_t(il) * std::size_t(shape_.n_seq) + std::size_t(w.seq)];
      filled = std::max(filled, w.pos0 + w.n);
    }
    note_writes(writes);
  }

  std::int64_t truncate(std::int32_t seq, std::int64_t length) override {
    SLUICE_ASSERT(seq >= 0 && seq < shape_.n_seq && length >= 0);
    length = keep(seq, length);
    if (read_started_) {
      // The background read uses written_. Its outcome is kept for the next begin_layer().
      std::unique_lock lock(mutex_);
      done_.wait(lock, [this] { return !job_; });
    }
    // Later reads fetch only the prefix that is kept.
    for (std::int64_t il = 0; il < shape_.n_layer; ++il) {
      std::int64_t& filled = written_[std::size_t(il) * std::size_t(shape_.n_seq) + std::size_t(seq)];
      filled = std::min(filled, length);
    }
    // A layer read before the clear may hold the forgotten positions; harmless (they are
    // rewritten before they are read), as in the resident cache.
    return length;
  }
  std::uint64_t memory_bytes() const override { return 2 * buffers_[0]->bytes; }
  bool spilled() const override { return true; }
  KvStats stats() const override {
    KvStats s;
    s.bytes_read = bytes_read_.load();
    s.bytes_written = bytes_written_.load();
    s.read_wait_seconds = read_wait_seconds_;
    return s;
  }

 private:
  struct ReadJob {
    std::int64_t layer = -1;
    int buffer = -1;
  };

  std::uint64_t plane_bytes(std::int64_t il) const { return align_up(shape_.plane_bytes(il), kDirectAlign); }
  std::uint64_t file_offset(std::int64_t il) const { return layer_at_[std::size_t(il)]; }

  // Reads the written prefix of every sequence's K and V planes of layer il into buffer b (a
  // ring layer: its rows written so far, all of them once the ring has wrapped).
  Status read_layer(std::int64_t il, int b) {
    const std::uint64_t rb = std::uint64_t(shape_.row_bytes());
    const std::uint64_t plane_bytes = this->plane_bytes(il);
    for (std::int32_t s = 0; s < shape_.n_seq; ++s) {
      const std::int64_t filled = std::min(written_[std::size_t(il) * std::size_t(shape_.n_seq) + std::size_t(s)], shape_.rows(il));
      if (filled == 0) continue;
      const std::uint64_t len = std::min(plane_bytes, align_up(std::uint64_t(filled) * rb, kDirectAlign));
      for (int plane = 0; plane < 2; ++plane) {
        const std::uint64_t at = (std::uint64_t(s) * 2 + std::uint64_t(plane)) * plane_bytes;
        if (Status st = file_->read_at({buffers_[b]->data + at, len}, file_offset(il) + at); !st) return st;
        bytes_read_ += len;
      }
    }
    return {};
  }

  // Forward thread: hands layer il -> buffer b to the reader thread (which must be idle).
  void start_read(std::int64_t il, int b) {
    holds_[b] = -1;
    {
      std::lock_guard lock(mutex_);
      SLUICE_ASSERT(!job_);
      job_ = ReadJob{il, b};
    }
    read_started_ = true;
    job_ready_.notify_one();
  }

  // Forward thread: waits for the read start_read() began; on success its buffer holds the layer.
  Status wait_for_read() {
    std::unique_lock lock(mutex_);
    done_.wait(lock, [this] { return !job_; });
    read_started_ = false;
    if (read_status_) holds_[read_buffer_] = read_layer_;
    return std::exchange(read_status_, Status{});
  }

  void reader_loop() {
    std::unique_lock lock(mutex_);
    while (true) {
      job_ready_.wait(lock, [this] { return stop_ || job_; });
      if (stop_) return;
      const ReadJob job = *job_;
      lock.unlock();
      Status st;
      try {
        st = read_layer(job.layer, job.buffer);
      } catch (const std::exception& e) {  // never let an exception end the thread (bad_alloc)
        st = Error{ErrorKind::io, 0, fmt::format("KV spill read of layer {}: {}", job.layer, e.what())};
      }
      lock.lock();
      read_status_ = std::move(st);
      read_layer_ = job.layer;
      read_buffer_ = job.buffer;
      job_.reset();
      done_.notify_all();
    }
  }

  std::vector<std::uint64_t> layer_at_;  // each layer's offset in the file
  std::vector<std::int64_t> written_;  // [layer][seq]: positions persisted
  std::unique_ptr<io::File> file_;
  std::unique_ptr<Mapping> buffers_[2];
  std::int64_t holds_[2] = {-1, -1};  // layer each buffer holds (-1: none or being read)
  int active_ = -1, last_ = -1;
  bool read_started_ = false;  // forward thread: a read was started and its outcome not yet taken
  std::atomic<std::uint64_t> bytes_read_{0}, bytes_written_{0};  // the reader thread adds too
  double read_wait_seconds_ = 0;

  std::mutex mutex_;  // guards job_, stop_ and the read_* outcome
  std::condition_variable job_ready_, done_;
  std::optional<ReadJob> job_;  // the read in progress (set by start_read, reset by the reader)
  bool stop_ = false;
  Status read_status_;
  std::int64_t read_layer_ = -1;
  int read_buffer_ = -1;
  std::thread reader_;  // last: started once everything it uses exists
};

}  // namespace

std::unique_ptr<KvCache> make_resident_kv_cache(const KvShape& shape) { return std::make_unique<ResidentKvCache>(shape); }

std::unique_ptr<KvCache> make_spilled_kv_cache(const KvShape& shape, const std::string& dir,
                                               const KvSpillOptions& options) {
  (void)shape.row_bytes();
  return std::make_unique<SpilledKvCache>(shape, dir, options);
}

std::uint64_t spilled_kv_memory_bytes(const KvShape& shape) {
  std::uint64_t largest = 0;
  for (std::int64_t il = 0; il < shape.n_layer; ++il) largest = std::max(largest, spilled_layer_span(shape, il));
  return 2 * largest;
}

std::uint64_t spilled_kv_file_bytes(const KvShape& shape) {
  std::uint64_t bytes = 0;  // SpilledKvCache's layout: layer after layer
  for (std::int64_t il = 0; il < shape.n_layer; ++il) bytes += spilled_layer_span(shape, il);
  return bytes;
}

// ---- KvShape and KvCache ------------------------------------------------------------------------

bool KvShape::any_ring() const {
  for (std::int64_t il = 0; il < n_layer; ++il) {
    if (ring(il)) return true;
  }
  return false;
}

std::uint64_t KvShape::total_bytes() const {
  std::uint64_t bytes = 0;
  for (std::int64_t il = 0; il < n_layer; ++il) bytes += layer_bytes(il);
  return bytes;
}

std::uint64_t KvShape::largest_layer_bytes() const {
  std::uint64_t bytes = 0;
  for (std::int64_t il = 0; il < n_layer; ++il) bytes = std::max(bytes, layer_bytes(il));
  return bytes;
}

void KvCache::note_writes(std::span<const KvWrite> writes) {
  for (const KvWrite& w : writes) {
    if (w.n <= 0) continue;
    SLUICE_ASSERT(w.seq >= 0 && w.seq < shape_.n_seq);
    std::int64_t& end = written_end_[std::size_t(w.seq)];
    end = std::max(end, w.pos0 + w.n);
  }
}

std::int64_t KvCache::keep(std::int32_t seq, std::int64_t length) {
  SLUICE_ASSERT(seq >= 0 && seq < shape_.n_seq && length >= 0);
  std::int64_t& end = written_end_[std::size_t(seq)];
  const std::int64_t rows = shape_.any_ring() ? shape_.ring_rows() : 0;
  // A ring holds positions [end - rows, end); position `length` attends to
  // [length - window + 1, length).
  if (length < end && rows > 0 && end > rows && length - shape_.window + 1 < end - rows) length = 0;
  end = std::min(end, length);
  return length;
}

}  // namespace sluice::cache
