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

class ResidentKvCache final : public KvCache {
 public:
  explicit ResidentKvCache(const KvShape& shape) : KvCache(shape) {
    (void)shape.row_bytes();  // throws for a q8_0 row that is not whole blocks
    storage_.assign(shape.total_bytes(), std::byte{0});
  }
  void begin_layer(std::int64_t) override {}
  compute::KvLayerView view(std::int64_t il, std::int32_t seq) override {
    const std::uint64_t plane = std::uint64_t(shape_.n_ctx) * std::uint64_t(shape_.row_bytes());
    std::byte* base = storage_.data() + std::uint64_t(il) * shape_.layer_bytes() + std::uint64_t(seq) * 2 * plane;
    return {base, base + plane, shape_.n_ctx, shape_.type, shape_.row_bytes()};
  }
  void end_layer(std::int64_t, std::span<const KvWrite>) override {}
  void clear(std::int32_t) override {}  // positions are always written before they are read
  void truncate(std::int32_t, std::int64_t) override {}
  std::uint64_t memory_bytes() const override { return storage_.size(); }
  bool spilled() const override { return false; }

 private:
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

// Scratch-file layout: layer-major, then sequence, then K and V, each plane n_ctx rows padded
// to 4096 bytes so every read and write-back can go through O_DIRECT (no page cache to count
// against a memory cap). A layer's planes are contiguous in the file and in the buffer.
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
        plane_bytes_(align_up(std::uint64_t(shape.n_ctx) * std::uint64_t(shape.row_bytes()), kDirectAlign)),
        layer_span_(plane_bytes_ * 2 * std::uint64_t(shape.n_seq)),
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
    SLUICE_ASSERT(file_bytes == layer_span_ * std::uint64_t(shape.n_layer));
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
    for (auto& b : buffers_) b = std::make_unique<Mapping>(layer_span_);
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
    std::byte* base = buffers_[active_]->data + std::uint64_t(seq) * 2 * plane_bytes_;
    return {base, base + plane_bytes_, shape_.n_ctx, shape_.type, shape_.row_bytes()};
  }

  void end_layer(std::int64_t il, std::span<const KvWrite> writes) override {
    SLUICE_ASSERT(active_ >= 0 && holds_[active_] == il);
    const std::uint64_t rb = std::uint64_t(shape_.row_bytes());
    last_ = active_;
    active_ = -1;
    for (const KvWrite& w : writes) {
      if (w.n <= 0) continue;
      // The 4096-aligned window around the new rows: bytes before them are valid (earlier
      // positions), bytes after are beyond what any pass reads.
      const std::uint64_t from = std::uint64_t(w.pos0) * rb / kDirectAlign * kDirectAlign;
      const std::uint64_t to = std::min(plane_bytes_, align_up(std::uint64_t(w.pos0 + w.n) * rb, kDirectAlign));
      for (int plane = 0; plane < 2; ++plane) {
        const std::uint64_t at = (std::uint64_t(w.seq) * 2 + std::uint64_t(plane)) * plane_bytes_;
        Status st = file_->write_at({buffers_[last_]->data + at + from, to - from}, file_offset(il) + at + from);
        if (!st) {
          // The file now lacks these positions: forget this layer's copy in RAM too, so nothing
          // reads a half-persisted layer as if it were whole; the caller abandons the pass.
          holds_[last_] = -1;
          throw Exception(st.error(), file_->path());
        }
        bytes_written_ += to - from;
      }
      std::int64_t& filled = written_[std::size_t(il) * std::size_t(shape_.n_seq) + std::size_t(w.seq)];
      filled = std::max(filled, w.pos0 + w.n);
    }
  }

  void clear(std::int32_t seq) override { truncate(seq, 0); }
  void truncate(std::int32_t seq, std::int64_t length) override {
    SLUICE_ASSERT(seq >= 0 && seq < shape_.n_seq && length >= 0);
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
  }
  std::uint64_t memory_bytes() const override { return 2 * layer_span_; }
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

  std::uint64_t file_offset(std::int64_t il) const { return std::uint64_t(il) * layer_span_; }

  // Reads the written prefix of every sequence's K and V planes of layer il into buffer b.
  Status read_layer(std::int64_t il, int b) {
    const std::uint64_t rb = std::uint64_t(shape_.row_bytes());
    for (std::int32_t s = 0; s < shape_.n_seq; ++s) {
      const std::int64_t filled = written_[std::size_t(il) * std::size_t(shape_.n_seq) + std::size_t(s)];
      if (filled == 0) continue;
      const std::uint64_t len = std::min(plane_bytes_, align_up(std::uint64_t(filled) * rb, kDirectAlign));
      for (int plane = 0; plane < 2; ++plane) {
        const std::uint64_t at = (std::uint64_t(s) * 2 + std::uint64_t(plane)) * plane_bytes_;
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

  std::uint64_t plane_bytes_, layer_span_;
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
  return 2 * align_up(std::uint64_t(shape.n_ctx) * std::uint64_t(shape.row_bytes()), kDirectAlign) * 2 * std::uint64_t(shape.n_seq);
}

std::uint64_t spilled_kv_file_bytes(const KvShape& shape) {
  // SpilledKvCache's layout: plane_bytes_ x 2 x n_seq per layer (layer_span_), n_layer layers.
  return align_up(std::uint64_t(shape.n_ctx) * std::uint64_t(shape.row_bytes()), kDirectAlign) * 2 * std::uint64_t(shape.n_seq) *
         std::uint64_t(shape.n_layer);
}

}  // namespace sluice::cache
